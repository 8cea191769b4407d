/* gpu_harness.h — what the GPU test programs share: TAP lines, the device
 * under test, and running each group of checks in a child process.
 *
 * A child (this program re-executed with FLAG ARG, its own CUDA context)
 * prints unnumbered "ok - ..." / "not ok - ..." lines and finally
 * "# KIND ... done: ..."; the parent numbers the lines into one TAP stream,
 * so a group that crashes or aborts (a faulting kernel, an op the backend
 * rejects) fails alone and the other groups still run. */
#ifndef LAMINA_GPU_HARNESS_H
#define LAMINA_GPU_HARNESS_H
#include "common.h"
#include "device.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int n_checks, n_failed;

static void tap(int pass, const char *detail, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tap(int pass, const char *detail, const char *fmt, ...) {
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    n_checks++;
    if (!pass) n_failed++;
    /* unnumbered: the parent process numbers the lines of every child */
    printf("%s - %s %s\n", pass ? "ok" : "not ok", name, detail);
    fflush(stdout);
}

/* The device under test: CUDA GPU 0; with LAMINA_GPU_TEST_EMULATE=1 the
 * CPU bf16 emulation stands in for it (a check of the test program itself
 * on a machine without a GPU). */
static lm_device *open_gpu(char *why, size_t len) {
    const char *e = getenv("LAMINA_GPU_TEST_EMULATE");
    if (e && !strcmp(e, "1")) return device_cpu_bf16_create(0);
    return device_cuda_create(0, why, len);
}

/* Is there a usable GPU at all? -1: yes (its description printed); else the
 * exit code: 0 with a TAP skip when LAMINA_GPU_OPTIONAL=1, 1 otherwise. */
static int probe_gpu(const char *what) {
    char why[LM_ERRLEN] = {0};
    lm_device *probe = open_gpu(why, sizeof why);
    if (!probe) {
        const char *opt = getenv("LAMINA_GPU_OPTIONAL");
        if (opt && !strcmp(opt, "1")) {
            printf("1..0 # SKIP no usable GPU: %s\n", why);
            return 0;
        }
        printf("1..1\nnot ok 1 - CUDA device: %s\n", why);
        printf("# no usable GPU (set LAMINA_GPU_OPTIONAL=1 to skip on machines without one)\n");
        return 1;
    }
    printf("# %s on CUDA device '%s' (compute %s) against the CPU reference (float32)\n", what, probe->name,
           lm_dtype_name(probe->dtype));
    device_destroy(probe);
    return -1;
}

/* Run `prog FLAG ARG` as a child and renumber its lines; a child that ends
 * without its "# KIND ... done: " line is one more failure. */
static void spawn_child(const char *prog, const char *flag, const char *arg, const char *kind, const char *label) {
    int fd[2];
    if (pipe(fd)) {
        perror("pipe");
        exit(1);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        execl("/proc/self/exe", prog, flag, arg, (char *)NULL);
        perror("exec /proc/self/exe");
        _exit(127);
    }
    close(fd[1]);
    FILE *f = fdopen(fd[0], "r");
    char line[8192], last[8192] = "", mark[64];
    snprintf(mark, sizeof mark, "# %s ", kind);
    int done = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "ok - ", 5)) {
            printf("ok %d - %s", ++n_checks, line + 5);
        } else if (!strncmp(line, "not ok - ", 9)) {
            n_failed++;
            printf("not ok %d - %s", ++n_checks, line + 9);
        } else {
            if (!strncmp(line, mark, strlen(mark)) && strstr(line, " done: ")) done = 1;
            fputs(line, stdout);
        }
        snprintf(last, sizeof last, "%s", line);
        fflush(stdout);
    }
    fclose(f);
    int st = 0;
    waitpid(pid, &st, 0);
    if (!done) {
        char how[64];
        if (WIFSIGNALED(st)) snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(st));
        else snprintf(how, sizeof how, "exit %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        size_t l = strlen(last);
        if (l && last[l - 1] == '\n') last[l - 1] = 0;
        n_failed++;
        printf("not ok %d - %s %s: the test process died before finishing (%s; its stderr is above; last line: "
               "%s)\n",
               ++n_checks, kind, label, how, last);
    }
    fflush(stdout);
}

#endif
