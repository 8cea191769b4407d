/* testutil.h — small fixtures shared by the unit tests (header only). */
#ifndef LAMINA_TESTUTIL_H
#define LAMINA_TESTUTIL_H
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* stderr captured into DIR/stderr.txt: damaged files must make nothing
 * (HDF5's error stack in particular) appear on stderr. capture_end returns
 * the bytes written meanwhile, or -1. */
static int tu_saved_fd = -1;
static char tu_errfile[256];
static inline void capture_begin_in(const char *dir) {
    fflush(stderr);
    snprintf(tu_errfile, sizeof tu_errfile, "%s/stderr.txt", dir);
    int fd = open(tu_errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    tu_saved_fd = dup(2);
    dup2(fd, 2);
    close(fd);
}
static inline long capture_end(void) {
    fflush(stderr);
    dup2(tu_saved_fd, 2);
    close(tu_saved_fd);
    struct stat st;
    return stat(tu_errfile, &st) ? -1 : (long)st.st_size;
}
#endif
