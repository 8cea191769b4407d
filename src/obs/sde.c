/* sde.c — lamina's software-defined events (sde.h): registration with
 * libsde, the hook papi_native_avail calls, and the reader through PAPI.
 * Built with -DLM_SDE_HOOK_ONLY it is build/liblamina-sde.so: the hook and a
 * load-time registration of placeholder counters, nothing else. */
#include "sde_events.h"
#include <sde_lib.h>
#include <stddef.h>
#include <stdint.h>

static const struct {
    const char *name, *desc;
    int type;
} g_ev[] = {
#define LM_SDE_ROW(id, type, desc) {#id, desc, type},
    LM_SDE_EVENTS(LM_SDE_ROW)
#undef LM_SDE_ROW
};
#define N_EV ((int)(sizeof g_ev / sizeof g_ev[0]))

/* Registers every event through f (libsde's own entry points, or the ones
 * papi_native_avail hands to the hook): counter i reads addr[i], or calls
 * cb(param[i]) where addr[i] is NULL. */
static papi_handle_t register_all(papi_sde_fptr_struct_t *f, void *const *addr, papi_sde_fptr_t cb,
                                  void *const *param) {
    papi_handle_t h = f->init("LAMINA");
    for (int i = 0; i < N_EV; i++) {
        int mode = PAPI_SDE_RO | PAPI_SDE_DELTA;
        if (addr[i])
            f->register_counter(h, g_ev[i].name, mode, g_ev[i].type, addr[i]);
        else
            f->register_counter_cb(h, g_ev[i].name, mode, g_ev[i].type, cb, param[i]);
        f->describe_counter(h, g_ev[i].name, g_ev[i].desc);
    }
    return h;
}

#ifdef LM_SDE_HOOK_ONLY
/* ------------------------------------------- build/liblamina-sde.so only */

static long long g_placeholder[N_EV];

/* papi_native_avail -sde FILE dlopens FILE and calls this to learn the
 * library's events (their values are never read). */
papi_handle_t papi_sde_hook_list_events(papi_sde_fptr_struct_t *f);
papi_handle_t papi_sde_hook_list_events(papi_sde_fptr_struct_t *f) {
    void *addr[N_EV];
    for (int i = 0; i < N_EV; i++) addr[i] = &g_placeholder[i];
    return register_all(f, addr, NULL, addr);
}

/* Under LD_PRELOAD the tool's own libsde holds the events from load time,
 * and PAPI's SDE component lists what libsde holds. */
__attribute__((constructor)) static void register_at_load(void) {
    papi_sde_fptr_struct_t f;
    POPULATE_SDE_FPTR_STRUCT(f);
    papi_sde_hook_list_events(&f);
}

#else
/* ------------------------------------------------------------ the binary */
#include "comm.h"
#include "common.h"
#include "papi_lib.h"
#include "sde.h"
#include <math.h>
#include <papi.h>
#include <string.h>

_Static_assert(N_EV == LM_SDE_N, "sde_events.h and sde.h disagree");

long long lm_sde_count[LM_SDE_N];
double lm_sde_flops;
static int g_registered;

/* Communication bytes straight from the comm layer's totals. */
static long long comm_field(void *off) {
    lm_comm_stats s;
    comm_stats(&s);
    return (long long)*(const double *)((const char *)&s + (size_t)(uintptr_t)off);
}

void sde_init(void) {
    if (g_registered) return;
    g_registered = 1;
    void *addr[LM_SDE_N], *param[LM_SDE_N];
    for (int i = 0; i < LM_SDE_N; i++) {
        addr[i] = &lm_sde_count[i];
        param[i] = NULL;
    }
    addr[LM_SDE_MODEL_FLOPS] = &lm_sde_flops;
    struct {
        lm_sde_id id;
        size_t off;
    } cb[] = {
        {LM_SDE_BYTES_ALLREDUCE, offsetof(lm_comm_stats, allreduce_bytes)},
        {LM_SDE_BYTES_REDUCE_SCATTER, offsetof(lm_comm_stats, reduce_scatter_bytes)},
        {LM_SDE_BYTES_ALLGATHER, offsetof(lm_comm_stats, allgather_bytes)},
        {LM_SDE_BYTES_P2P, offsetof(lm_comm_stats, p2p_bytes)},
    };
    for (size_t k = 0; k < sizeof cb / sizeof cb[0]; k++) {
        addr[cb[k].id] = NULL;
        param[cb[k].id] = (void *)(uintptr_t)cb[k].off;
    }
    papi_sde_fptr_struct_t f;
    POPULATE_SDE_FPTR_STRUCT(f);
    register_all(&f, addr, comm_field, param);
}

const char *sde_name(int i) { return i >= 0 && i < LM_SDE_N ? g_ev[i].name : "?"; }
int sde_is_double(int i) { return i >= 0 && i < LM_SDE_N && g_ev[i].type == PAPI_SDE_double; }

int sde_index(const char *event) {
    if (!strncmp(event, "sde:::", 6)) event += 6;
    if (strncmp(event, "LAMINA::", 8)) return -1;
    event += 8;
    for (int i = 0; i < LM_SDE_N; i++)
        if (!strcmp(event, g_ev[i].name)) return i;
    return -1;
}

/* ---- reader ---- */

static struct {
    int on, tried;
    int eventset;
    long long last[LM_SDE_N];
} r = {.eventset = PAPI_NULL};

int sde_reader_start(void) {
    if (r.tried) return r.on;
    r.tried = 1;
    sde_init();
    if (papi_init() != 1) return 0; /* papi_lib.c said why */
    int rc = PAPI_create_eventset(&r.eventset);
    for (int i = 0; rc == PAPI_OK && i < LM_SDE_N; i++) {
        char name[64];
        snprintf(name, sizeof name, "sde:::LAMINA::%s", g_ev[i].name);
        rc = PAPI_add_named_event(r.eventset, name);
    }
    if (rc == PAPI_OK) rc = PAPI_start(r.eventset);
    if (rc != PAPI_OK) {
        lm_log("PAPI: lamina's software-defined events cannot be read back (%s); the JSONL has no `sde`\n",
               PAPI_strerror(rc));
        if (r.eventset != PAPI_NULL) {
            PAPI_cleanup_eventset(r.eventset);
            PAPI_destroy_eventset(&r.eventset);
        }
        r.eventset = PAPI_NULL;
        return 0;
    }
    r.on = 1;
    memset(r.last, 0, sizeof r.last);
    return 1;
}

int sde_reader_on(void) { return r.on; }

/* PAPI returns every value as 64 bits; a double counter's are the double's. */
static double as_double(int i, long long v) {
    if (!sde_is_double(i)) return (double)v;
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

static int read_now(long long *v) {
    if (!r.on || PAPI_read(r.eventset, v) != PAPI_OK) return -1;
    return 0;
}

int sde_read_raw(long long *vals) {
    long long v[LM_SDE_N];
    if (read_now(v)) return -1;
    for (int i = 0; i < LM_SDE_N; i++) vals[i] = sde_is_double(i) ? llround(as_double(i, v[i])) : v[i];
    return 0;
}

int sde_read_delta(double *vals) {
    long long v[LM_SDE_N];
    if (read_now(v)) return -1;
    for (int i = 0; i < LM_SDE_N; i++) {
        vals[i] = as_double(i, v[i]) - as_double(i, r.last[i]);
        r.last[i] = v[i];
    }
    return 0;
}

int sde_read_total(double *vals) {
    long long v[LM_SDE_N];
    if (read_now(v)) return -1;
    for (int i = 0; i < LM_SDE_N; i++) vals[i] = as_double(i, v[i]);
    return 0;
}

void sde_reader_stop(void) {
    if (r.on) {
        long long v[LM_SDE_N];
        PAPI_stop(r.eventset, v);
        PAPI_cleanup_eventset(r.eventset);
        PAPI_destroy_eventset(&r.eventset);
    }
    r.eventset = PAPI_NULL;
    r.on = r.tried = 0;
}
#endif
