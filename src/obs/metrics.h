/* metrics.h — the step metrics of SPEC §6 in one include: FLOPs per token
 * and the MFU peak (mfu.h), the CPU's peak (cpu_peak.h), the PAPI library
 * and counters (papi_lib.h, papi_counters.h) and the JSONL log (jsonl.h).
 * Each part has its own file; include the one you need. */
#ifndef LAMINA_METRICS_H
#define LAMINA_METRICS_H
#include "cpu_peak.h"
#include "jsonl.h"
#include "mfu.h"
#include "papi_counters.h"
#include "papi_lib.h"
#endif
