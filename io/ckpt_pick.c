/* ckpt_pick.c — choosing the checkpoint to restart from (SPEC §5): what
 * `latest` names, then the step files newest first, the same list on every
 * rank. Shared helpers: ckpt.c (ckpt_int.h). */
#include "ckpt_int.h"
#include "ckpt_piece.h"
#include "h5attr.h"
#include "common.h"
#include "agree.h"
#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <fcntl.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

/* `latest` is a text file naming the checkpoint (what ckpt_save writes), or
 * a symbolic link to a step_*.h5 file (what a person may make by hand). A
 * dangling link, a FIFO, a directory, an empty file or a name that is
 * missing is reported (-1), never read as "no checkpoint". */
int ckpt_find_latest(const char *dir, char *path, size_t pathlen, char *err, size_t errlen) {
    char lf[4096 + 16], name[512] = {0};
    snprintf(lf, sizeof lf, "%s/latest", dir);
    struct stat st;
    if (lstat(lf, &st)) {
        if (errno == ENOENT || errno == ENOTDIR) return 0;
        return lm_err(err, errlen, -1, "%s: unreadable (%s)", lf, strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
        char to[512];
        ssize_t k = readlink(lf, to, sizeof to - 1);
        if (k < 0) return lm_err(err, errlen, -1, "%s: unreadable symbolic link (%s)", lf, strerror(errno));
        to[k] = 0;
        const char *base = strrchr(to, '/') ? strrchr(to, '/') + 1 : to;
        if (stat(lf, &st))
            return lm_err(err, errlen, -1, "%s: a symbolic link to %s, which is missing (%s)", lf, to, strerror(errno));
        if (ck_parse_step(base, ".h5") >= 0) { /* a link to the checkpoint itself */
            if ((size_t)snprintf(path, pathlen, "%s%s%s", to[0] == '/' ? "" : dir, to[0] == '/' ? "" : "/", to) >= pathlen)
                return lm_err(err, errlen, -1, "%s: path too long", lf);
            if (ck_regular_file(path, -1, err, errlen)) {
                char why[LM_ERRLEN];
                snprintf(why, sizeof why, "%s", err);
                return lm_err(err, errlen, -1, "%s: a symbolic link to %s", lf, why);
            }
            return 1;
        }
    }
    if (!S_ISREG(st.st_mode))
        return lm_err(err, errlen, -1, "%s: not a regular file (%s)", lf, ck_file_kind(st.st_mode));
    FILE *fp = fopen(lf, "r");
    if (!fp) return lm_err(err, errlen, -1, "%s: unreadable (%s)", lf, strerror(errno));
    size_t got = fread(name, 1, sizeof name - 1, fp);
    fclose(fp);
    name[got] = 0;
    size_t len = strcspn(name, "\r\n");
    name[len] = 0;
    if (len == 0 || strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, ".."))
        return lm_err(err, errlen, -1, "%s: does not name a checkpoint file", lf);
    if ((size_t)snprintf(path, pathlen, "%s/%s", dir, name) >= pathlen)
        return lm_err(err, errlen, -1, "%s: path too long", lf);
    if (stat(path, &st) || access(path, R_OK))
        return lm_err(err, errlen, -1, "%s names %s, which is missing or unreadable", lf, name);
    if (!S_ISREG(st.st_mode))
        return lm_err(err, errlen, -1, "%s names %s, which is not a regular file (%s)", lf, name, ck_file_kind(st.st_mode));
    return 1;
}

/* Restart candidates (see ckpt.h): rank 0 reads `latest` and lists the
 * directory; the list travels to every rank as one block of
 * newline-separated paths, so that all ranks try the same files in the same
 * order even where a file system shows a directory late to some nodes. */
int ckpt_candidates(MPI_Comm comm, const char *dir, char ***paths, char *note, size_t notelen) {
    int rank;
    MPI_Comm_rank(comm, &rank);
    struct { int n, rc; long long len; char note[LM_ERRLEN]; } h;
    memset(&h, 0, sizeof h);
    char *buf = NULL;
    if (rank == 0) {
        size_t cap = 4096, len = 0;
        buf = lm_alloc(cap);
        char first[4096 + 512] = {0};
        int r = ckpt_find_latest(dir, first, sizeof first, h.note, sizeof h.note);
        if (r != -1) h.note[0] = 0;
        ck_entry *e = NULL;
        size_t ne = 0, ecap = 0;
        DIR *dh = opendir(dir);
        if (!dh && errno != ENOENT && errno != ENOTDIR) {
            h.rc = -1;
            snprintf(h.note, sizeof h.note, "%s: cannot list the checkpoint directory (%s)", dir, strerror(errno));
        }
        struct dirent *de;
        while (dh && (de = readdir(dh))) ck_entry_add(&e, &ne, &ecap, de->d_name);
        if (dh) closedir(dh);
        if (ne) qsort(e, ne, sizeof *e, ck_by_step_desc);
        for (long i = r == 1 ? -1 : 0; i < (long)ne && !h.rc; i++) {
            char p[4096 + 512];
            if (i < 0) snprintf(p, sizeof p, "%s", first);
            else snprintf(p, sizeof p, "%s/%s", dir, e[i].name);
            if (i >= 0 && r == 1 && !strcmp(p, first)) continue; /* already first */
            size_t k = strlen(p) + 1;
            if (len + k > cap) {
                buf = lm_realloc(buf, cap = 2 * (len + k));
            }
            memcpy(buf + len, p, k);
            buf[len + k - 1] = '\n';
            len += k;
            h.n++;
        }
        lm_free(e);
        h.len = (long long)len;
    }
    MPI_Bcast(&h, (int)sizeof h, MPI_BYTE, 0, comm);
    snprintf(note, notelen, "%s", h.note);
    *paths = NULL;
    if (h.rc) {
        lm_free(buf);
        return -1;
    }
    /* one block: n+1 pointers, then the text with each '\n' made a '\0' */
    char **out = malloc(sizeof(char *) * (size_t)(h.n + 1) + (size_t)h.len + 1);
    if (!out) lm_abort(LM_ERR_RUNTIME, "out of memory");
    char *text = (char *)(out + h.n + 1);
    if (rank == 0) memcpy(text, buf, (size_t)h.len);
    lm_free(buf);
    if (h.len) MPI_Bcast(text, (int)h.len, MPI_CHAR, 0, comm);
    text[h.len] = 0;
    for (int i = 0; i < h.n; i++) {
        out[i] = text;
        text = strchr(text, '\n');
        *text++ = 0;
    }
    out[h.n] = NULL;
    *paths = out;
    return h.n;
}

