/* file.c — whole-file reading and fsync by path, written once (common.h). */
#include "common.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read all of `path` into one lm_alloc block, NUL-terminated; *len (if not
 * NULL) gets the byte count. The block starts at the size fstat reports and
 * doubles while more bytes come (a pipe or a growing file), so there is no
 * size limit and a short read is never taken for the end: a read error is an
 * error. NULL with "PATH: cannot read (REASON)" in err on failure. */
char *lm_read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    size_t cap = 4096, n = 0, got;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) cap = (size_t)st.st_size + 1;
    char *buf = lm_alloc(cap + 1);
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) buf = lm_realloc(buf, (cap *= 2) + 1);
    }
    int bad = ferror(f), e = errno;
    fclose(f);
    if (bad) {
        lm_free(buf);
        lm_err(err, errlen, LM_ERR_INPUT, "%s: cannot read (%s)", path, strerror(e));
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* fsync a file or a directory by path: the data before a rename, the
 * directory after it, so that a crash leaves the old or the new file. */
int lm_fsync_path(const char *path, int is_dir) {
    int fd = open(path, O_RDONLY | (is_dir ? O_DIRECTORY : 0));
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}
