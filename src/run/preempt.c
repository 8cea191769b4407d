/* preempt.c — signals and the wall-clock budget that stop a run early. */
#include "preempt.h"
#include "common.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static volatile sig_atomic_t g_caught;

/* Async-signal-safe: records the first signal and nothing else; the training
 * loop polls it between steps so that no collective is left half done. */
static void on_signal(int sig) {
    if (!g_caught) g_caught = sig;
}

/* The handler on SIGUSR1 and SIGTERM, unless it is there already. */
static void install(int sig) {
    struct sigaction old;
    if (sigaction(sig, NULL, &old) == 0 && !(old.sa_flags & SA_SIGINFO) && old.sa_handler == on_signal) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking reads and MPI progress resume after the handler */
    sigaction(sig, &sa, NULL);
}

void preempt_install(void) {
    install(SIGUSR1);
    install(SIGTERM);
}

/* Before main: a batch system's warning may come within milliseconds of the
 * start (a requeued job that is preempted again at once), while the dynamic
 * libraries' own start-up and MPI_Init are still running; with the default
 * action the rank would die (exit 138) and nothing would be written. From
 * here on the signal is only recorded. main() installs again first thing
 * and again after MPI_Init, in case the MPI library replaced the handler. */
__attribute__((constructor)) static void preempt_early(void) { preempt_install(); }

void preempt_uninstall(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int sig = (int)g_caught;
    g_caught = 0;
    if (sig) raise(sig);
}

int preempt_any(const lm_group *world, char *why, size_t len) {
    int sig = preempt_caught();
    double v = sig ? -(64.0 * world->rank + sig) : -1e300;
    comm_allreduce_max_f64(world, &v, 1);
    if (v < -1e299) return 0;
    long code = (long)-v;
    snprintf(why, len, "%s received on rank %ld", code % 64 == SIGUSR1 ? "SIGUSR1" : "SIGTERM", code / 64);
    return 1;
}

void preempt_exit_before_step(long next_step, const char *why) {
    lm_log("stopped before step %ld: %s; nothing written (no step ran in this run; any checkpoint already in "
           "checkpoint.dir is untouched): resubmit the same job (checkpoint.restart = auto) to continue (exit 3)\n",
           next_step, why);
    comm_finalize();
    exit(LM_STOPPED);
}

int preempt_caught(void) { return (int)g_caught; }

void budget_init(lm_budget *b, double max_minutes) {
    memset(b, 0, sizeof *b);
    b->t0 = lm_now();
    b->budget_s = max_minutes * 60.0;
}

void budget_step(lm_budget *b, double step_s, double save_s) {
    if (step_s > b->step_s) b->step_s = step_s;
    if (save_s > b->save_s) b->save_s = save_s;
}

/* A run must end before t0 + budget. After step k it may start step k+1 only
 * if that step and a checkpoint after it (each as long as the longest seen so
 * far) still end within the budget; otherwise it saves now. The ranks' clocks
 * and step times differ slightly: the largest wins, and so does the lowest
 * rank that caught a signal. */
int preempt_should_stop(const lm_group *world, const lm_budget *b, char *why, size_t len) {
    double elapsed = lm_now() - b->t0;
    double need = elapsed + b->step_s + b->save_s;
    int sig = preempt_caught();
    /* v[0]: -(64 rank + signal) on a rank that caught one, so that the max is
     * the lowest such rank; v[1]: projected end of the next step and save. */
    double v[2] = {sig ? -(64.0 * world->rank + sig) : -1e300, need};
    comm_allreduce_max_f64(world, v, 2);
    if (v[0] > -1e299) {
        long code = (long)-v[0];
        snprintf(why, len, "%s received on rank %ld", code % 64 == SIGUSR1 ? "SIGUSR1" : "SIGTERM", code / 64);
        return 1;
    }
    if (b->budget_s > 0 && v[1] > b->budget_s) {
        snprintf(why, len,
                 "train.max_minutes = %g: %.1f s elapsed, and one more step (%.1f s) and a checkpoint (%.1f s) "
                 "would end past the budget",
                 b->budget_s / 60.0, elapsed, b->step_s, b->save_s);
        return 1;
    }
    return 0;
}
