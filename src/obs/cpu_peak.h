/* cpu_peak.h — the peak fp32 FLOP/s of the CPU a rank runs on, the MFU
 * denominator of CPU runs (mfu.h). */
#ifndef LAMINA_CPU_PEAK_H
#define LAMINA_CPU_PEAK_H
#include <stddef.h>

/* Peak fp32 FLOP/s of the CPU this rank runs on: threads x clock x FLOP/cycle
 * of the vector unit (AVX-512: 64, AVX2+FMA: 32, AVX: 16, SSE2: 8), clock from
 * cpufreq's cpuinfo_max_freq or /proc/cpuinfo. Writes a one-line description
 * (e.g. "2 threads x 2.445 GHz x 32 FLOP/cycle (AVX2+FMA)") into desc. */
double metrics_cpu_peak_flops(int threads, char *desc, size_t desclen);

#endif
