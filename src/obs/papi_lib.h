/* papi_lib.h — the PAPI library itself: initialisation once per process and
 * its version. Both lamina's counter lists (papi_counters.h) and its SDE
 * reader (sde.h) start from here, so neither needs the other to get PAPI. */
#ifndef LAMINA_PAPI_LIB_H
#define LAMINA_PAPI_LIB_H

/* PAPI_library_init once per process: 1 when PAPI works, -1 when not (said
 * once on rank 0). */
int papi_init(void);

/* PAPI library version string, for --version. */
const char *papi_version_string(void);

#endif
