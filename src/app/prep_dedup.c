/* prep_dedup.c — exact and near-duplicate removal across all ranks, in
 * global document order (SPEC §9; see prep.h).
 *
 * The decisions must equal those of one serial pass over all documents
 * (the first occurrence is kept), whatever the number of ranks: rank 0
 * takes the ranks' surviving documents (after cleaning) one rank after the
 * other, their exact hashes and MinHash signatures (computed in parallel
 * where the documents are), and decides:
 *   exact  the hash equals that of a kept document (an earlier one, or one
 *          of a --dedup-against file): dropped as dedup_exact;
 *   near   else (with --dedup near) the LSH index finds a kept document
 *          with estimated Jaccard >= threshold: dropped as dedup_near;
 *   else   kept: its hash and signature join the indexes.
 * It answers each rank with each document's verdict and the kept document
 * it duplicates (input file and line, or --dedup-against file and index).
 * Rank 0 holds the indexes (dedup.h states their bytes per document), the
 * location of every document (12 bytes), and one rank's records at a time. */
#include "common.h"
#include "dedup.h"
#include "hash.h"
#include "prep.h"
#include "tokfile.h"
#include <string.h>

/* hash -> id of the kept document (open addressing; the table doubles at half load) */
typedef struct {
    uint64_t *key;
    int64_t *val; /* -1: empty */
    size_t cap, n;
} idmap;

static void map_put(idmap *m, uint64_t k, int64_t v);

static void map_grow(idmap *m) {
    idmap u = {lm_alloc(sizeof(uint64_t) * (m->cap ? 2 * m->cap : 1024)), lm_alloc(sizeof(int64_t) * (m->cap ? 2 * m->cap : 1024)),
               m->cap ? 2 * m->cap : 1024, 0};
    for (size_t i = 0; i < u.cap; i++) u.val[i] = -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->val[i] >= 0) map_put(&u, m->key[i], m->val[i]);
    lm_free(m->key);
    lm_free(m->val);
    *m = u;
}

static int64_t map_get(const idmap *m, uint64_t k) {
    if (!m->cap) return -1;
    for (size_t i = lm_mix64(k) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->val[i] < 0) return -1;
        if (m->key[i] == k) return m->val[i];
    }
}

static void map_put(idmap *m, uint64_t k, int64_t v) {
    if (2 * (m->n + 1) > m->cap) map_grow(m);
    size_t i = lm_mix64(k) & (m->cap - 1);
    while (m->val[i] >= 0 && m->key[i] != k) i = (i + 1) & (m->cap - 1);
    if (m->val[i] < 0) m->n++;
    m->key[i] = k;
    m->val[i] = v;
}

/* One rank's surviving documents, as sent to rank 0. */
typedef struct {
    uint64_t hash;
    int64_t line;
    int32_t file, pad;
} rec;

/* The verdict sent back. */
typedef struct {
    int32_t status, dup_file;
    int64_t dup_line;
} verdict;

enum { TAG_N = 181, TAG_REC, TAG_SIG, TAG_VERDICT };

typedef struct {
    const prep_run *r;
    idmap map;
    lm_lsh *lsh;
    int32_t *loc_file; /* input documents' locations, by global index among the survivors */
    int64_t *loc_line;
    int64_t nloc;
    int64_t against_base;     /* ids of --dedup-against documents: against_base + k */
    int64_t *against_start;   /* [n_against + 1]: first k of each such file */
} judge;

/* Rank 0: preload the kept documents of the --dedup-against files. */
static int preload(judge *J, char *err, size_t errlen) {
    const prep_run *r = J->r;
    int64_t k = 0;
    J->against_start = lm_calloc((size_t)r->n_against + 1, sizeof(int64_t));
    for (int a = 0; a < r->n_against; a++) {
        J->against_start[a] = k;
        tokfile *f = tokfile_open(r->against[a], err, errlen);
        if (!f) return LM_ERR_INPUT;
        int64_t n = tokfile_n_docs(f);
        int perm = 0, bands = 0, ngram = 0, words = 0, rc = 0;
        uint64_t seed = 0;
        int has_mh = tokfile_minhash_cfg(f, &perm, &bands, &ngram, &words, &seed) == 1 && perm > 0;
        if (n <= 0)
            rc = lm_err(err, errlen, LM_ERR_INPUT,
                        "prep: --dedup-against %s: the file has no /docs (made with --dedup none, or by an older prep)",
                        r->against[a]);
        else if (r->dedup == PREP_DEDUP_NEAR &&
                 (!has_mh || perm != r->mh.perm || bands != r->mh.bands || ngram != r->mh.ngram ||
                  words != r->mh.words || seed != r->mh.seed))
            rc = has_mh ? lm_err(err, errlen, LM_ERR_INPUT,
                                 "prep: --dedup-against %s: its MinHash configuration (perm %d, bands %d, ngram %d, "
                                 "words %d, seed %llu) differs from this run's (perm %d, bands %d, ngram %d, words %d, seed %llu)",
                                 r->against[a], perm, bands, ngram, words, (unsigned long long)seed, r->mh.perm,
                                 r->mh.bands, r->mh.ngram, r->mh.words, (unsigned long long)r->mh.seed)
                        : lm_err(err, errlen, LM_ERR_INPUT,
                                 "prep: --dedup-against %s: the file has no /docs/minhash (made with --dedup exact): "
                                 "--dedup near needs it",
                                 r->against[a]);
        enum { CH = 65536 };
        uint64_t *h = lm_alloc(sizeof(uint64_t) * CH);
        uint32_t *s = r->perm ? lm_alloc(sizeof(uint32_t) * (size_t)CH * (size_t)r->perm) : NULL;
        for (int64_t lo = 0; lo < n && !rc; lo += CH) {
            int64_t m = n - lo < CH ? n - lo : CH;
            if (tokfile_read_docs(f, lo, m, h, s, err, errlen)) {
                rc = LM_ERR_INPUT;
                break;
            }
            for (int64_t i = 0; i < m; i++) {
                if (map_get(&J->map, h[i]) < 0) map_put(&J->map, h[i], J->against_base + k + lo + i);
                if (s) lsh_insert(J->lsh, s + (size_t)i * (size_t)r->perm, J->against_base + k + lo + i);
            }
        }
        lm_free(h);
        lm_free(s);
        tokfile_close(f);
        if (rc) return rc;
        k += n;
    }
    J->against_start[r->n_against] = k;
    return 0;
}

/* Rank 0: the verdicts of n records (one rank's), in order. */
static void decide(judge *J, const rec *x, const uint32_t *sig, int64_t n, verdict *v) {
    const prep_run *r = J->r;
    for (int64_t i = 0; i < n; i++) {
        int64_t id = J->nloc++, dup = map_get(&J->map, x[i].hash);
        J->loc_file[id] = x[i].file;
        J->loc_line[id] = x[i].line;
        v[i] = (verdict){PREP_KEPT, 0, 0};
        if (dup >= 0) v[i].status = PREP_ST_EXACT;
        else if (J->lsh && (dup = lsh_offer(J->lsh, sig + (size_t)i * (size_t)r->perm, id, r->threshold)) >= 0)
            v[i].status = PREP_ST_NEAR;
        else map_put(&J->map, x[i].hash, id);
        if (v[i].status == PREP_KEPT) continue;
        if (dup < J->against_base) {
            v[i].dup_file = J->loc_file[dup];
            v[i].dup_line = J->loc_line[dup];
        } else {
            int64_t k = dup - J->against_base;
            int a = 0;
            while (a + 1 < r->n_against && J->against_start[a + 1] <= k) a++;
            v[i].dup_file = -1 - a;
            v[i].dup_line = k - J->against_start[a];
        }
    }
}

int prep_dedup(prep_run *r, char *err, size_t errlen) {
    if (r->dedup == PREP_DEDUP_NONE) return 0;
    const lm_group *g = r->g;
    int p = g->size, me = g->rank, rc = 0;
    /* this rank's survivors */
    int64_t n = 0;
    for (int64_t i = 0; i < r->ndocs; i++) n += r->docs[i].status == PREP_KEPT;
    rec *x = lm_alloc(sizeof(rec) * (size_t)(n ? n : 1));
    uint32_t *sig = r->perm ? lm_alloc(sizeof(uint32_t) * (size_t)r->perm * (size_t)(n ? n : 1)) : NULL;
    verdict *v = lm_alloc(sizeof(verdict) * (size_t)(n ? n : 1));
    int64_t k = 0;
    for (int64_t i = 0; i < r->ndocs; i++) {
        const prep_doc *d = &r->docs[i];
        if (d->status != PREP_KEPT) continue;
        x[k] = (rec){d->hash, d->line, d->file, 0};
        if (sig) memcpy(sig + (size_t)k * (size_t)r->perm, r->sig + (size_t)i * (size_t)r->perm, sizeof(uint32_t) * (size_t)r->perm);
        k++;
    }
    int64_t *cnt = lm_calloc((size_t)p, sizeof(int64_t));
    cnt[me] = n;
    comm_allreduce_sum_i64(g, cnt, (size_t)p);
    int64_t all = 0;
    for (int q = 0; q < p; q++) all += cnt[q];
    if (me == 0) {
        judge J = {.r = r};
        J.against_base = all;
        J.loc_file = lm_alloc(sizeof(int32_t) * (size_t)(all ? all : 1));
        J.loc_line = lm_alloc(sizeof(int64_t) * (size_t)(all ? all : 1));
        if (r->dedup == PREP_DEDUP_NEAR) J.lsh = lsh_new(&r->mh, all);
        rc = preload(&J, err, errlen);
        rc = comm_agree(g, rc, err, errlen);
        for (int q = 0; q < p && !rc; q++) {
            rec *qx = x;
            uint32_t *qs = sig;
            verdict *qv = v;
            if (q > 0 && cnt[q]) {
                qx = lm_alloc(sizeof(rec) * (size_t)cnt[q]);
                qs = r->perm ? lm_alloc(sizeof(uint32_t) * (size_t)r->perm * (size_t)cnt[q]) : NULL;
                qv = lm_alloc(sizeof(verdict) * (size_t)cnt[q]);
                comm_recv(g, qx, sizeof(rec) * (size_t)cnt[q], q, TAG_REC);
                if (qs) comm_recv(g, qs, sizeof(uint32_t) * (size_t)r->perm * (size_t)cnt[q], q, TAG_SIG);
            }
            decide(&J, qx, qs, cnt[q], qv);
            if (q > 0 && cnt[q]) {
                comm_send(g, qv, sizeof(verdict) * (size_t)cnt[q], q, TAG_VERDICT);
                lm_free(qx);
                lm_free(qs);
                lm_free(qv);
            }
        }
        if (!rc && J.lsh)
            lm_log("prep: dedup index on rank 0: %zu bytes per document (LSH), %lld documents held\n",
                   lsh_bytes_per_doc(J.lsh), (long long)lsh_count(J.lsh));
        lsh_free(J.lsh);
        lm_free(J.map.key);
        lm_free(J.map.val);
        lm_free(J.loc_file);
        lm_free(J.loc_line);
        lm_free(J.against_start);
    } else {
        rc = comm_agree(g, 0, err, errlen);
        if (!rc && n) {
            comm_send(g, x, sizeof(rec) * (size_t)n, 0, TAG_REC);
            if (sig) comm_send(g, sig, sizeof(uint32_t) * (size_t)r->perm * (size_t)n, 0, TAG_SIG);
            comm_recv(g, v, sizeof(verdict) * (size_t)n, 0, TAG_VERDICT);
        }
    }
    if (!rc) {
        k = 0;
        for (int64_t i = 0; i < r->ndocs; i++) {
            prep_doc *d = &r->docs[i];
            if (d->status != PREP_KEPT) continue;
            d->status = v[k].status;
            d->dup_file = v[k].dup_file;
            d->dup_line = v[k].dup_line;
            k++;
        }
    }
    lm_free(x);
    lm_free(sig);
    lm_free(v);
    lm_free(cnt);
    return rc;
}
