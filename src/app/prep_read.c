/* prep_read.c — prep's input: the files' checks, each rank's byte range,
 * the documents that start in it (see prep.h).
 *
 * The inputs, concatenated in command-line order, are cut into p equal byte
 * ranges; a document belongs to the rank whose range holds its first byte,
 * so the ranks' documents are contiguous runs of the global document order
 * and each rank reads only its range (plus the end of its last document,
 * and a few bytes before its range to see where a document starts). Line
 * numbers need the newlines before a rank's range: each rank counts those
 * of its own range in every file, and an all-reduce gives the prefix. */
#include "clean.h"
#include "common.h"
#include "prep.h"
#include "progress.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

size_t prep_scan_back(const char *sep, int jsonl) {
    /* JSONL: the byte before a (is a line start there?); text: the separator
     * line (with \r) and the newline before it, ending at the first line
     * start >= a, and the byte before that line */
    return jsonl ? 1 : sep ? strlen(sep) + 3 : 0;
}

typedef struct {
    prep_span *v;
    int64_t n, cap;
} spanv;

static void span_add(spanv *s, int64_t at, int64_t len, int64_t line) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = lm_realloc(s->v, sizeof(prep_span) * (size_t)s->cap);
    }
    s->v[s->n++] = (prep_span){at, len, line};
}

/* Line numbers of positions >= a, asked in increasing order: newlines are
 * counted once from the last position asked. */
typedef struct {
    const char *buf;
    int64_t at, pos, line;
} liner;

static int64_t line_at(liner *l, int64_t p) {
    for (; l->pos < p; l->pos++) l->line += l->buf[l->pos - l->at] == '\n';
    return l->line;
}

/* The first '\n' at or after p in the buffer, or -1. */
static int64_t next_nl(const char *buf, int64_t at, int64_t end, int64_t p) {
    if (p >= end) return -1;
    const char *q = memchr(buf + (p - at), '\n', (size_t)(end - p));
    return q ? at + (q - buf) : -1;
}

int64_t prep_scan(const char *buf, int64_t at, int64_t n, int eof, int64_t a, int64_t b, const char *sep, int jsonl,
                  int64_t line0, prep_span **spans, int *more) {
    spanv s = {0};
    int64_t end = at + n;
    liner ln = {buf, at, a, line0};
    *more = 0;
    if (!jsonl && !sep) { /* the whole file is one document, owned by the range that holds byte 0 */
        if (a == 0 && b > 0) {
            if (!eof) *more = 1;
            else span_add(&s, 0, end, 1);
        }
    } else if (jsonl) {
        int64_t q = 0;
        if (a > 0) { /* the first line start >= a */
            int64_t e = next_nl(buf, at, end, a - 1);
            if (e < 0) q = eof ? end : -1;
            else q = e + 1;
        }
        if (q < 0) *more = 1;
        while (!*more && q < b && q < end) {
            int64_t e = next_nl(buf, at, end, q);
            if (e < 0 && !eof) {
                *more = 1;
                break;
            }
            if (e < 0) e = end;
            int64_t k = q;
            while (k < e && (buf[k - at] == ' ' || buf[k - at] == '\t' || buf[k - at] == '\r')) k++;
            if (k < e) span_add(&s, q, e - q, line_at(&ln, q));
            q = e + 1;
        }
    } else {
        /* Documents start at byte 0 and after each line equal to sep (a
         * trailing \r ignored), and end where the next such line starts. */
        int64_t seplen = (int64_t)strlen(sep), open = a == 0 ? 0 : -1, openline = line0;
        int64_t L = a - seplen - 2 > 0 ? a - seplen - 2 : 0;
        if (L > 0 && buf[L - 1 - at] != '\n') {
            int64_t e = next_nl(buf, at, end, L);
            L = e < 0 ? -1 : e + 1;
            if (e < 0 && !eof) *more = 1;
            if (e < 0 && eof) L = end + 1;
        }
        while (!*more && L <= end) {
            if (L >= b && open < 0) break;
            int64_t e = next_nl(buf, at, end, L);
            if (e < 0 && !eof) {
                *more = 1;
                break;
            }
            if (e < 0) e = end;
            int64_t le = e;
            if (le > L && buf[le - 1 - at] == '\r') le--;
            if (le - L == seplen && memcmp(buf + (L - at), sep, (size_t)seplen) == 0) {
                if (open >= 0) span_add(&s, open, L - open, openline);
                open = -1;
                int64_t d = e + 1;
                if (d >= b) break;
                if (d >= a && (!eof || d < end)) {
                    open = d;
                    openline = line_at(&ln, d);
                }
            }
            L = e + 1;
        }
        if (!*more && open >= 0 && L > end) span_add(&s, open, end - open, openline);
    }
    if (*more) {
        lm_free(s.v);
        s.v = NULL;
        s.n = 0;
    }
    *spans = s.v;
    return s.n;
}

/* ---- checks (rank 0), then broadcast the sizes ---- */

int prep_check_inputs(prep_run *r, char *err, size_t errlen) {
    int rc = 0;
    int64_t *size = lm_calloc((size_t)r->nfiles, sizeof(int64_t));
    if (r->g->rank == 0) {
        /* Inputs must be regular files (a FIFO would block, a directory would
         * read as nothing), and the outputs must not be one of them: the same
         * device and inode, whatever the spelling or symlink. */
        const char *outs[2] = {r->out, r->valid_fraction > 0 ? r->valid_out : NULL};
        struct stat ost[2];
        int oex[2] = {0, 0};
        for (int k = 0; k < 2 && !rc; k++) {
            if (!outs[k]) continue;
            oex[k] = stat(outs[k], &ost[k]) == 0;
            if (oex[k] && S_ISDIR(ost[k].st_mode))
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: %s %s is a directory: give the token file's path",
                            k ? "--valid-out" : "-o", outs[k]);
        }
        for (int i = 0; i < r->nfiles && !rc; i++) {
            const char *in = r->files[i].path, *why = NULL;
            struct stat st;
            if (stat(in, &st)) {
                int e = errno;
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: cannot read %s: %s", in, strerror(e));
                break;
            }
            if (S_ISDIR(st.st_mode)) why = "is a directory (give the files inside it)";
            else if (!S_ISREG(st.st_mode)) why = S_ISFIFO(st.st_mode) ? "is not a regular file (a FIFO)" : "is not a regular file";
            for (int k = 0; k < 2 && !why; k++)
                if (oex[k] && st.st_dev == ost[k].st_dev && st.st_ino == ost[k].st_ino)
                    why = k ? "is the validation output (--valid-out): refusing to overwrite an input"
                            : "is the output file (-o): refusing to overwrite an input";
            if (why) {
                rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: input %s %s", in, why);
                break;
            }
            size[i] = (int64_t)st.st_size;
            if (size[i] == 0) { /* procfs and the like report 0: read it whole to know (and to fail here) */
                size_t n;
                char *buf = lm_read_file(in, &n, err, errlen);
                if (!buf) {
                    rc = LM_ERR_INPUT;
                    break;
                }
                size[i] = (int64_t)n;
                lm_free(buf);
            }
        }
    }
    rc = comm_agree(r->g, rc, err, errlen);
    if (!rc) comm_bcast(r->g, size, sizeof(int64_t) * (size_t)r->nfiles, 0);
    int64_t base = 0;
    for (int i = 0; i < r->nfiles; i++) {
        r->files[i].size = size[i];
        r->files[i].base = base;
        base += size[i];
    }
    lm_free(size);
    return rc;
}

/* ---- reading this rank's range ---- */

/* Bytes [lo, hi) of a file into a buffer: 0, or an input error (exit 2). */
static int read_at(int fd, const char *path, char *buf, int64_t lo, int64_t hi, char *err, size_t errlen) {
    while (lo < hi) {
        ssize_t k = pread(fd, buf, (size_t)(hi - lo), (off_t)lo);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return lm_err(err, errlen, LM_ERR_INPUT, "prep: %s: cannot read (%s)", path,
                          k < 0 ? strerror(errno) : "the file became shorter while prep read it");
        buf += k;
        lo += k;
    }
    return 0;
}

/* The documents of file f starting in [a, b): read, scan, then parse and
 * process them in batches (OpenMP). Lines are relative to byte a (line0 1):
 * prep_read adds the newlines before a. The first bad document (lowest) is
 * the error: *bad_line and why. */
static int read_file_range(prep_run *r, int f, int64_t a, int64_t b, int64_t *nl, int64_t *bad_line, char *why,
                           size_t whylen, lm_progress *pr, int64_t done0, char *err, size_t errlen) {
    const prep_file *pf = &r->files[f];
    const char *sep = pf->jsonl ? NULL : r->sep;
    int64_t back = (int64_t)prep_scan_back(sep, pf->jsonl);
    int64_t at = !pf->jsonl && !sep ? 0 : a > back ? a - back : 0;
    int64_t end = b, cap = 0;
    if (!pf->jsonl && !sep) end = a == 0 ? pf->size : 0;
    int fd = open(pf->path, O_RDONLY);
    if (fd < 0) return lm_err(err, errlen, LM_ERR_INPUT, "prep: %s: cannot read (%s)", pf->path, strerror(errno));
    char *buf = NULL;
    prep_span *sp = NULL;
    int64_t ns = 0, got = at;
    int more = 1, rc = 0;
    while (more && !rc) {
        if (end - at + 1 > cap) {
            cap = end - at + 1;
            buf = lm_realloc(buf, (size_t)cap);
        }
        rc = read_at(fd, pf->path, buf + (got - at), got, end, err, errlen);
        if (rc) break;
        got = end;
        ns = prep_scan(buf, at, end - at, end == pf->size, a, b, sep, pf->jsonl, 1, &sp, &more);
        if (more) { /* read on: double what is held, 1 MiB at least */
            int64_t step = end - at > (1 << 20) ? end - at : (1 << 20);
            end = end + step < pf->size ? end + step : pf->size;
        }
    }
    close(fd);
    /* newlines of the range [a, b) (text without separators has no lines to name) */
    *nl = 0;
    if (!rc && (pf->jsonl || sep))
        for (int64_t i = a; i < b && i < got; i++) *nl += buf[i - at] == '\n';
    enum { BATCH = 4096 };
    for (int64_t b0 = 0; b0 < ns && !rc && *bad_line < 0; b0 += BATCH) {
        int64_t b1 = b0 + BATCH < ns ? b0 + BATCH : ns;
        if (r->ndocs + (b1 - b0) > r->doc_cap) {
            while (r->ndocs + (b1 - b0) > r->doc_cap) r->doc_cap = r->doc_cap ? 2 * r->doc_cap : 4096;
            r->docs = lm_realloc(r->docs, sizeof(prep_doc) * (size_t)r->doc_cap);
            if (r->perm) r->sig = lm_realloc(r->sig, sizeof(uint32_t) * (size_t)r->perm * (size_t)r->doc_cap);
        }
        prep_doc *d = r->docs + r->ndocs;
        int *st = lm_calloc((size_t)(b1 - b0), sizeof(int));
        int64_t bad = b1;
#pragma omp parallel for schedule(dynamic, 8)
        for (int64_t i = b0; i < b1; i++) {
            prep_doc *x = &d[i - b0];
            char w[200];
            *x = (prep_doc){.file = f, .line = sp[i].line, .cat = -1, .bin = -1, .src = -1};
            st[i - b0] = prep_doc_parse(buf + (sp[i].at - at), (size_t)sp[i].len, pf->jsonl, x, w, sizeof w);
            if (st[i - b0] < 0) {
#pragma omp critical(prep_bad)
                if (i < bad) {
                    bad = i;
                    snprintf(why, whylen, "%s", w);
                }
                continue;
            }
            if (st[i - b0] == 0)
                prep_doc_process(r, x, x->catname ? x->catname : pf->category,
                                 r->perm ? r->sig + (size_t)r->perm * (size_t)(r->ndocs + (i - b0)) : NULL);
        }
        if (bad < b1) *bad_line = sp[bad].line;
        /* keep the documents in order, dropping the blank ones */
        int64_t k = 0;
        for (int64_t i = 0; i < b1 - b0; i++) {
            if (st[i] != 0 || bad < b1) {
                prep_doc_free(&d[i]);
                continue;
            }
            if (k != i) {
                d[k] = d[i];
                if (r->perm)
                    memcpy(r->sig + (size_t)r->perm * (size_t)(r->ndocs + k),
                           r->sig + (size_t)r->perm * (size_t)(r->ndocs + i), sizeof(uint32_t) * (size_t)r->perm);
            }
            k++;
        }
        r->ndocs += k;
        lm_free(st);
        lm_progress_set(pr, f, done0 + (sp[b1 - 1].at + sp[b1 - 1].len - a));
    }
    lm_free(sp);
    lm_free(buf);
    return rc;
}

int prep_read(prep_run *r, char *err, size_t errlen) {
    int p = r->g->size, me = r->g->rank, nf = r->nfiles;
    int64_t total = nf ? r->files[nf - 1].base + r->files[nf - 1].size : 0;
    int64_t lo = (int64_t)((__int128)total * me / p), hi = (int64_t)((__int128)total * (me + 1) / p);
    int64_t *nl = lm_calloc((size_t)p * (size_t)nf, sizeof(int64_t));
    int64_t *first = lm_calloc((size_t)nf + 1, sizeof(int64_t)); /* this rank's first document of each file */
    int64_t bad_line = -1;
    int bad_file = -1, rc = 0;
    char why[200] = "";
    lm_progress pr;
    lm_progress_begin(&pr, r->rules_set ? "prep: read and clean" : "prep: read", "files", nf, hi - lo);
    json_object_seed(0); /* jansson: seed its hash tables before threads parse */
    for (int f = 0; f < nf && !rc; f++) {
        const prep_file *pf = &r->files[f];
        int64_t a = lo > pf->base ? lo - pf->base : 0, b = hi < pf->base + pf->size ? hi - pf->base : pf->size;
        first[f] = r->ndocs;
        if (a >= b) continue;
        int64_t done0 = pf->base + a - lo;
        rc = read_file_range(r, f, a, b, &nl[(size_t)me * (size_t)nf + (size_t)f], &bad_line, why, sizeof why, &pr,
                             done0, err, errlen);
        if (!rc && bad_line >= 0) bad_file = f;
        if (rc || bad_line >= 0) break;
        lm_progress_set(&pr, f + 1, pf->base + b - lo);
    }
    first[nf] = r->ndocs;
    rc = comm_agree(r->g, rc, err, errlen);
    if (rc) goto done;
    /* lines: add the newlines of the lower ranks' ranges of each file */
    comm_allreduce_sum_i64(r->g, nl, (size_t)p * (size_t)nf);
    for (int f = 0; f < nf; f++) {
        int64_t add = 0;
        for (int q = 0; q < me; q++) add += nl[(size_t)q * (size_t)nf + (size_t)f];
        for (int64_t i = first[f]; i < first[f + 1] && i < r->ndocs; i++) r->docs[i].line += add;
        if (f == bad_file) bad_line += add;
    }
    if (bad_file >= 0)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: %s:%lld: %s", r->files[bad_file].path, (long long)bad_line, why);
    rc = comm_agree(r->g, rc, err, errlen);
    if (rc) goto done;
    lm_progress_end(&pr);
    /* global document indices */
    int64_t *cnt = lm_calloc((size_t)p, sizeof(int64_t));
    cnt[me] = r->ndocs;
    comm_allreduce_sum_i64(r->g, cnt, (size_t)p);
    r->gdoc0 = r->gdocs = 0;
    for (int q = 0; q < p; q++) {
        if (q < me) r->gdoc0 += cnt[q];
        r->gdocs += cnt[q];
    }
    int sft = 0;
    for (int64_t i = 0; i < r->ndocs && !sft; i++) sft = r->docs[i].src >= 0;
    comm_allreduce_max_i32(r->g, &sft, 1);
    r->any_sft = sft;
    lm_free(cnt);
    if (r->gdocs == 0) rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: the input holds no documents");
done:
    lm_free(nl);
    lm_free(first);
    return rc;
}
