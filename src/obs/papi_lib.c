/* papi_lib.c — PAPI_library_init once per process, and the version string
 * (papi_lib.h). */
#include "papi_lib.h"
#include "common.h"
#include <papi.h>
#include <stdio.h>

/* 0: not tried, 1: initialised, -1: failed (reported once). */
static int g_papi_state;

int papi_init(void) {
    if (g_papi_state != 0) return g_papi_state;
    int rc = PAPI_is_initialized() != PAPI_NOT_INITED ? (int)PAPI_VER_CURRENT : PAPI_library_init(PAPI_VER_CURRENT);
    if (rc == PAPI_VER_CURRENT) {
        g_papi_state = 1;
    } else {
        g_papi_state = -1;
        if (rc > 0)
            lm_log("PAPI: unavailable (library version %d.%d differs from header %d.%d)\n",
                   PAPI_VERSION_MAJOR(rc), PAPI_VERSION_MINOR(rc),
                   PAPI_VERSION_MAJOR(PAPI_VERSION), PAPI_VERSION_MINOR(PAPI_VERSION));
        else
            lm_log("PAPI: unavailable (%s)\n", PAPI_strerror(rc));
    }
    return g_papi_state;
}


const char *papi_version_string(void) {
    static char buf[32];
    if (PAPI_VERSION_INCREMENT(PAPI_VERSION))
        snprintf(buf, sizeof buf, "%d.%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION),
                 PAPI_VERSION_MINOR(PAPI_VERSION), PAPI_VERSION_REVISION(PAPI_VERSION),
                 PAPI_VERSION_INCREMENT(PAPI_VERSION));
    else
        snprintf(buf, sizeof buf, "%d.%d.%d", PAPI_VERSION_MAJOR(PAPI_VERSION),
                 PAPI_VERSION_MINOR(PAPI_VERSION), PAPI_VERSION_REVISION(PAPI_VERSION));
    return buf;
}


