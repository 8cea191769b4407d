/* prep_pack.c — the token file of one set of documents (SPEC §4, §9; see
 * prep.h): tokenize, cut into pieces, pack, lay out, exchange, write.
 *
 * 1. Each rank tokenizes its documents of the set (OpenMP): [BOS] text
 *    [EOS]; an SFT document is [BOS] source target [EOS] with loss mask 0 on
 *    BOS and the source, 1 on the target and EOS. A document longer than
 *    seq_len+1 tokens is cut into pieces of seq_len+1 (nothing dropped).
 *    A piece's bytes are those of its tokens' text (decoded), the last
 *    piece's the rest of the document's, so a document's pieces sum to its
 *    UTF-8 bytes (BOS and EOS count 0).
 * 2. Every rank gathers every piece's (length, group, bytes), in global
 *    order, and computes the same layout: group (bin b, category c) =
 *    b * n_categories + c; each group packed by exact first-fit decreasing
 *    (pack_docs, window 0: no token lost; ties in input order, so one
 *    category and one bin give exactly the former single-stream file);
 *    samples group after group, so bucket b is bin b of every category in
 *    category order, and within a sample the pieces in placement order.
 * 3. Rank r writes the samples whose starts fall in [r T/p, (r+1) T/p) of
 *    the T tokens: the ranks send each other the pieces' tokens (and masks)
 *    point to point (an all-to-all: every rank knows where every piece
 *    goes), then tokfile_write_par writes the file collectively. */
#include "common.h"
#include "pack.h"
#include "prep.h"
#include "progress.h"
#include "spm.h"
#include "tokfile.h"
#include "tokrec.h"
#include <string.h>

void *prep_allgatherv(const lm_group *g, const void *mine, size_t bytes, size_t *sizes) {
    int p = g->size;
    int64_t *n = lm_calloc((size_t)p, sizeof(int64_t));
    n[g->rank] = (int64_t)bytes;
    comm_allreduce_sum_i64(g, n, (size_t)p);
    size_t tot = 0;
    for (int q = 0; q < p; q++) tot += (size_t)n[q];
    char *all = lm_alloc(tot ? tot : 1), *at = all;
    for (int q = 0; q < p; q++) {
        sizes[q] = (size_t)n[q];
        if (q == g->rank && bytes) memcpy(at, mine, bytes);
        if (n[q]) comm_bcast(g, at, (size_t)n[q], q);
        at += n[q];
    }
    lm_free(n);
    return all;
}

typedef struct {
    int32_t len, group;
    int64_t bytes;
} piece;

typedef struct {
    uint32_t *tok;
    uint8_t *mask;
    int64_t ntok;
} doc_tokens;

/* [BOS] source target [EOS] and its mask (mask NULL: none wanted). */
static doc_tokens encode(const lm_tokenizer *t, const prep_doc *d, int want_mask) {
    doc_tokens x = {0};
    size_t cap = d->src >= 0 ? t->max_tokens(t, (size_t)d->src) + t->max_tokens(t, d->len - (size_t)d->src) + 2
                             : t->max_tokens(t, d->len) + 2;
    x.tok = lm_alloc(sizeof(uint32_t) * cap);
    if (want_mask) x.mask = lm_alloc(cap);
    int64_t n = 0, src_end = 0;
    if (t->bos >= 0) x.tok[n++] = (uint32_t)t->bos;
    if (d->src >= 0) {
        n += (int64_t)t->encode(t, d->text, (size_t)d->src, x.tok + n, cap - (size_t)n - 1);
        src_end = n;
        n += (int64_t)t->encode(t, d->text + d->src, d->len - (size_t)d->src, x.tok + n, cap - (size_t)n - 1);
    } else n += (int64_t)t->encode(t, d->text, d->len, x.tok + n, cap - (size_t)n - 1);
    if (t->eos >= 0) x.tok[n++] = (uint32_t)t->eos;
    if (x.mask)
        for (int64_t k = 0; k < n; k++) x.mask[k] = k >= src_end; /* src_end 0 for plain: all 1 */
    x.ntok = n;
    return x;
}

/* The rank whose pieces [p0[q], p0[q+1]) hold piece i. */
static int owner(const int64_t *p0, int p, int64_t i) {
    int lo = 0, hi = p - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (p0[mid] <= i) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* The UTF-8 bytes of n tokens' text (special tokens: none). */
static int64_t text_bytes(const lm_tokenizer *t, const uint32_t *tok, int64_t n) {
    size_t cap = (size_t)n * 64 + 16;
    char *buf = lm_alloc(cap);
    int64_t k = (int64_t)t->decode(t, tok, (size_t)n, buf, cap);
    lm_free(buf);
    return k;
}

int prep_write_set(prep_run *r, int valid, const char *path, prep_catstat *cs, char *err, size_t errlen) {
    const lm_group *g = r->g;
    int p = g->size, me = g->rank, C = r->ncats;
    int64_t maxlen = r->seq_len + 1, K = valid ? 1 : r->bins, G = K * C;
    /* ---- 1. this rank's documents of the set, tokenized, into pieces ---- */
    int64_t nd = 0;
    for (int64_t i = 0; i < r->ndocs; i++) nd += r->docs[i].status == PREP_KEPT && (r->docs[i].bin < 0) == valid;
    int64_t *di = lm_alloc(sizeof(int64_t) * (size_t)(nd ? nd : 1));
    nd = 0;
    for (int64_t i = 0; i < r->ndocs; i++)
        if (r->docs[i].status == PREP_KEPT && (r->docs[i].bin < 0) == valid) di[nd++] = i;
    int sft = 0;
    for (int64_t k = 0; k < nd && !sft; k++) sft = r->docs[di[k]].src >= 0;
    comm_allreduce_max_i32(g, &sft, 1);
    doc_tokens *dt = lm_calloc((size_t)(nd ? nd : 1), sizeof(doc_tokens));
    int64_t *npieces = lm_calloc((size_t)(nd ? nd : 1), sizeof(int64_t));
    double c0 = lm_now();
    int64_t nbytes = 0, done = 0;
    for (int64_t k = 0; k < nd; k++) nbytes += (int64_t)r->docs[di[k]].len;
    lm_progress pr;
    lm_progress_begin(&pr, valid ? "prep: tokenize (validation)" : "prep: tokenize", "documents", nd, nbytes);
    for (int64_t b0 = 0; b0 < nd; b0 += 8192) { /* in batches, for the progress line */
        int64_t b1 = b0 + 8192 < nd ? b0 + 8192 : nd;
#pragma omp parallel for schedule(dynamic, 16)
        for (int64_t k = b0; k < b1; k++) {
            dt[k] = encode(r->tok, &r->docs[di[k]], sft);
            npieces[k] = (dt[k].ntok + maxlen - 1) / maxlen;
        }
        for (int64_t k = b0; k < b1; k++) done += (int64_t)r->docs[di[k]].len;
        lm_progress_set(&pr, b1, done);
    }
    lm_progress_end(&pr);
    r->secs[PREP_T_TOKENIZE] += lm_now() - c0;
    c0 = lm_now();
    int64_t np = 0, ntok = 0;
    for (int64_t k = 0; k < nd; k++) {
        np += npieces[k];
        ntok += dt[k].ntok;
    }
    piece *mine = lm_alloc(sizeof(piece) * (size_t)(np ? np : 1));
    int64_t *pstart = lm_alloc(sizeof(int64_t) * (size_t)(nd + 1)); /* first piece of each document */
    pstart[0] = 0;
    for (int64_t k = 0; k < nd; k++) pstart[k + 1] = pstart[k] + npieces[k];
    int64_t *split = lm_calloc((size_t)C, sizeof(int64_t)), *docs = lm_calloc((size_t)C, sizeof(int64_t));
#pragma omp parallel for schedule(dynamic, 16)
    for (int64_t k = 0; k < nd; k++) {
        const prep_doc *d = &r->docs[di[k]];
        int64_t rest = (int64_t)d->len;
        int32_t grp = (int32_t)((valid ? 0 : d->bin) * C + d->cat);
        for (int64_t j = 0; j < npieces[k]; j++) {
            int64_t o = j * maxlen, len = dt[k].ntok - o < maxlen ? dt[k].ntok - o : maxlen, by = rest;
            if (j + 1 < npieces[k]) {
                by = text_bytes(r->tok, dt[k].tok + o, len);
                if (by > rest) by = rest;
            }
            rest -= by;
            mine[pstart[k] + j] = (piece){(int32_t)len, grp, by};
        }
    }
    for (int64_t k = 0; k < nd; k++) {
        const prep_doc *d = &r->docs[di[k]];
        docs[d->cat]++;
        split[d->cat] += npieces[k] > 1;
    }
    comm_allreduce_sum_i64(g, docs, (size_t)C);
    comm_allreduce_sum_i64(g, split, (size_t)C);
    /* ---- 2. every piece, every rank: the layout ---- */
    size_t *sz = lm_calloc((size_t)p, sizeof(size_t));
    piece *pc = prep_allgatherv(g, mine, sizeof(piece) * (size_t)np, sz);
    int64_t *p0 = lm_calloc((size_t)p + 1, sizeof(int64_t)); /* pieces of rank q: [p0[q], p0[q+1]) */
    for (int q = 0; q < p; q++) p0[q + 1] = p0[q] + (int64_t)(sz[q] / sizeof(piece));
    int64_t P = p0[p];
    /* the pieces of each group in global order (a counting sort) */
    int64_t *gs = lm_calloc((size_t)G + 1, sizeof(int64_t)), *gp = lm_alloc(sizeof(int64_t) * (size_t)(P ? P : 1));
    for (int64_t i = 0; i < P; i++) gs[pc[i].group + 1]++;
    for (int64_t k = 0; k < G; k++) gs[k + 1] += gs[k];
    {
        int64_t *fill = lm_calloc((size_t)G, sizeof(int64_t));
        for (int64_t i = 0; i < P; i++) gp[gs[pc[i].group] + fill[pc[i].group]++] = i;
        lm_free(fill);
    }
    /* pack each group: bin_of and placement order, indices local to the group */
    int64_t *bin_of = lm_alloc(sizeof(int64_t) * (size_t)(P ? P : 1)), *order = lm_alloc(sizeof(int64_t) * (size_t)(P ? P : 1));
    int64_t *lens = lm_alloc(sizeof(int64_t) * (size_t)(P ? P : 1)), *gsamp = lm_calloc((size_t)G + 1, sizeof(int64_t));
    for (int64_t i = 0; i < P; i++) lens[i] = pc[gp[i]].len;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t k = 0; k < G; k++)
        gsamp[k + 1] = pack_docs(lens + gs[k], gs[k + 1] - gs[k], maxlen, 0, bin_of + gs[k], order + gs[k]);
    for (int64_t k = 0; k < G; k++) gsamp[k + 1] += gsamp[k];
    int64_t S = gsamp[G];
    if (!valid) {
        lm_free(r->group_samples);
        r->group_samples = lm_alloc(sizeof(int64_t) * (size_t)G);
        for (int64_t k = 0; k < G; k++) r->group_samples[k] = gsamp[k + 1] - gsamp[k];
    }
    /* samples: tokens, category, bytes; lay = pieces in file order; pos = each piece's first token */
    int64_t *start = lm_calloc((size_t)S + 1, sizeof(int64_t)), *sbytes = lm_calloc((size_t)(S ? S : 1), sizeof(int64_t));
    int32_t *scat = lm_alloc(sizeof(int32_t) * (size_t)(S ? S : 1));
    int64_t *lay = lm_alloc(sizeof(int64_t) * (size_t)(P ? P : 1)), *pos = lm_alloc(sizeof(int64_t) * (size_t)(P ? P : 1));
    int64_t *slay = lm_calloc((size_t)S + 1, sizeof(int64_t)); /* first lay index of each sample */
    for (int64_t k = 0; k < G; k++)
        for (int64_t j = gs[k]; j < gs[k + 1]; j++) {
            int64_t s = gsamp[k] + bin_of[j];
            start[s + 1] += lens[j];
            sbytes[s] += pc[gp[j]].bytes;
            slay[s + 1]++;
        }
    for (int64_t k = 0; k < G; k++)
        for (int64_t s = gsamp[k]; s < gsamp[k + 1]; s++) scat[s] = (int32_t)(k % C);
    for (int64_t s = 0; s < S; s++) {
        start[s + 1] += start[s];
        slay[s + 1] += slay[s];
    }
    {
        int64_t *fill = lm_calloc((size_t)(S ? S : 1), sizeof(int64_t)), *ftok = lm_calloc((size_t)(S ? S : 1), sizeof(int64_t));
        for (int64_t k = 0; k < G; k++)
            for (int64_t j = gs[k]; j < gs[k + 1]; j++) {
                int64_t i = gs[k] + order[j], s = gsamp[k] + bin_of[i];
                lay[slay[s] + fill[s]++] = gp[i];
                pos[gp[i]] = start[s] + ftok[s];
                ftok[s] += lens[i];
            }
        lm_free(fill);
        lm_free(ftok);
    }
    int64_t T = start[S];
    /* per category: tokens, samples, bytes, and concatenate-and-split's samples */
    for (int c = 0; c < C; c++) cs[c] = (prep_catstat){.docs = docs[c], .split = split[c]};
    for (int64_t s = 0; s < S; s++) {
        cs[scat[s]].samples++;
        cs[scat[s]].tokens += start[s + 1] - start[s];
        cs[scat[s]].bytes += sbytes[s];
    }
    for (int64_t k = 0; k < G; k++) {
        int64_t tk = 0;
        for (int64_t s = gsamp[k]; s < gsamp[k + 1]; s++) tk += start[s + 1] - start[s];
        cs[k % C].concat_samples += (tk + maxlen - 1) / maxlen;
    }
    /* ---- 3. each rank's samples, the exchange, the write ---- */
    int64_t *rs = lm_calloc((size_t)p + 1, sizeof(int64_t)); /* samples of rank q: [rs[q], rs[q+1]) */
    for (int q = 1; q < p; q++) {
        int64_t want = (int64_t)((__int128)T * q / p), lo = rs[q - 1], hi = S;
        while (lo < hi) { /* first sample starting at or after `want` */
            int64_t mid = lo + (hi - lo) / 2;
            if (start[mid] < want) lo = mid + 1;
            else hi = mid;
        }
        rs[q] = lo;
    }
    rs[p] = S;
    int64_t t0 = start[rs[me]], nt = start[rs[me + 1]] - t0;
    uint32_t *otok = lm_alloc(sizeof(uint32_t) * (size_t)(nt ? nt : 1));
    uint8_t *omask = sft ? lm_alloc((size_t)(nt ? nt : 1)) : NULL;
    /* my pieces' tokens: piece i of mine (global p0[me] + i) is document k's j-th */
    int64_t *pdoc = lm_alloc(sizeof(int64_t) * (size_t)(np ? np : 1));
    for (int64_t k = 0; k < nd; k++)
        for (int64_t j = pstart[k]; j < pstart[k + 1]; j++) pdoc[j] = k;
    int64_t *sendn = lm_calloc((size_t)p, sizeof(int64_t)), *recvn = lm_calloc((size_t)p, sizeof(int64_t));
    for (int q = 0; q < p; q++)
        for (int64_t l = slay[rs[q]]; l < slay[rs[q + 1]]; l++) {
            int64_t i = lay[l];
            int src = owner(p0, p, i);
            if (src == me) sendn[q] += pc[i].len;
            if (q == me) recvn[src] += pc[i].len;
        }
    uint32_t **sb = lm_calloc((size_t)p, sizeof(uint32_t *)), **rb = lm_calloc((size_t)p, sizeof(uint32_t *));
    uint8_t **sm = lm_calloc((size_t)p, sizeof(uint8_t *)), **rm = lm_calloc((size_t)p, sizeof(uint8_t *));
    lm_req *req = lm_calloc((size_t)(4 * p), sizeof(lm_req));
    int nreq = 0;
    for (int q = 0; q < p; q++) {
        if (q == me || !recvn[q]) continue;
        rb[q] = lm_alloc(sizeof(uint32_t) * (size_t)recvn[q]);
        comm_irecv(g, rb[q], sizeof(uint32_t) * (size_t)recvn[q], q, 301, &req[nreq++]);
        if (sft) {
            rm[q] = lm_alloc((size_t)recvn[q]);
            comm_irecv(g, rm[q], (size_t)recvn[q], q, 302, &req[nreq++]);
        }
    }
    for (int q = 0; q < p; q++) {
        if (!sendn[q]) continue;
        sb[q] = lm_alloc(sizeof(uint32_t) * (size_t)sendn[q]);
        if (sft) sm[q] = lm_alloc((size_t)sendn[q]);
        int64_t o = 0;
        for (int64_t l = slay[rs[q]]; l < slay[rs[q + 1]]; l++) {
            int64_t i = lay[l];
            if (i < p0[me] || i >= p0[me + 1]) continue;
            int64_t j = i - p0[me], k = pdoc[j], from = (j - pstart[k]) * maxlen;
            memcpy(sb[q] + o, dt[k].tok + from, sizeof(uint32_t) * (size_t)pc[i].len);
            if (sft) memcpy(sm[q] + o, dt[k].mask + from, (size_t)pc[i].len);
            o += pc[i].len;
        }
        if (q == me) {
            rb[q] = sb[q];
            rm[q] = sm[q];
            continue;
        }
        comm_isend(g, sb[q], sizeof(uint32_t) * (size_t)sendn[q], q, 301, &req[nreq++]);
        if (sft) comm_isend(g, sm[q], (size_t)sendn[q], q, 302, &req[nreq++]);
    }
    for (int k = 0; k < nreq; k++) comm_wait(&req[k]);
    {
        int64_t *cur = lm_calloc((size_t)p, sizeof(int64_t));
        for (int64_t l = slay[rs[me]]; l < slay[rs[me + 1]]; l++) {
            int64_t i = lay[l];
            int src = owner(p0, p, i);
            memcpy(otok + (pos[i] - t0), rb[src] + cur[src], sizeof(uint32_t) * (size_t)pc[i].len);
            if (sft) memcpy(omask + (pos[i] - t0), rm[src] + cur[src], (size_t)pc[i].len);
            cur[src] += pc[i].len;
        }
        lm_free(cur);
    }
    for (int q = 0; q < p; q++) {
        if (rb[q] != sb[q]) lm_free(rb[q]);
        if (rm[q] != sm[q]) lm_free(rm[q]);
        lm_free(sb[q]);
        lm_free(sm[q]);
    }
    /* this rank's samples, relative to its tokens; the documents' dedup keys */
    int64_t ns = rs[me + 1] - rs[me];
    int64_t *ostart = lm_alloc(sizeof(int64_t) * (size_t)(ns ? ns : 1));
    for (int64_t s = 0; s < ns; s++) ostart[s] = start[rs[me] + s] - t0;
    int64_t *bucket = lm_calloc((size_t)K + 1, sizeof(int64_t));
    for (int64_t b = 0; b <= K; b++) bucket[b] = gsamp[b * C];
    uint64_t *dh = lm_alloc(sizeof(uint64_t) * (size_t)(nd ? nd : 1));
    uint32_t *dm = r->perm ? lm_alloc(sizeof(uint32_t) * (size_t)r->perm * (size_t)(nd ? nd : 1)) : NULL;
    for (int64_t k = 0; k < nd; k++) {
        dh[k] = r->docs[di[k]].hash;
        if (dm) memcpy(dm + (size_t)k * (size_t)r->perm, r->sig + (size_t)di[k] * (size_t)r->perm, sizeof(uint32_t) * (size_t)r->perm);
    }
    tokfile_extra x = {
        .n_categories = C,
        .categories = (const char *const *)r->cats,
        .n_buckets = valid ? 0 : K,
        .bucket_offsets = valid ? NULL : bucket,
        .sample_category = scat + rs[me],
        .sample_bytes = sbytes + rs[me],
        .loss_mask = omask,
        .n_docs_local = r->dedup != PREP_DEDUP_NONE ? nd : 0,
        .doc_hash = r->dedup != PREP_DEDUP_NONE ? dh : NULL,
        .doc_minhash = dm,
        .minhash_perm = r->perm ? r->mh.perm : 0,
        .minhash_bands = r->perm ? r->mh.bands : 0,
        .minhash_ngram = r->perm ? r->mh.ngram : 0,
        .minhash_words = r->perm ? r->mh.words : 0,
        .minhash_seed = r->perm ? r->mh.seed : 0,
    };
    const char *names[] = {"seq_len"};
    int64_t vals[] = {r->seq_len};
    lm_tokrec rec = {0};
    if (r->spm) {
        rec.model = (unsigned char *)spm_model_bytes(r->spm, &rec.len);
        rec.bos_id = spm_bos_id(r->spm);
        rec.eos_id = spm_eos_id(r->spm);
    }
    r->secs[PREP_T_PACK] += lm_now() - c0;
    c0 = lm_now();
    int rc = 0;
    if (S == 0) rc = lm_err(err, errlen, LM_ERR_INPUT, "prep: no document is left for %s", path);
    else if (tokfile_write_par(comm_mpi(g), path, otok, nt, ostart, ns, r->tok->vocab_size, 1, names, vals,
                               r->spm ? &rec : NULL, &x, err, errlen))
        rc = LM_ERR_RUNTIME;
    r->secs[PREP_T_WRITE] += lm_now() - c0;
    for (int64_t k = 0; k < nd; k++) {
        lm_free(dt[k].tok);
        lm_free(dt[k].mask);
    }
    void *fr[] = {di, dt, npieces, mine, pstart, split, docs, sz, pc, p0, gs, gp, bin_of, order, lens, gsamp,
                  start, sbytes, scat, lay, pos, slay, rs, otok, omask, pdoc, sendn, recvn, sb, rb, sm, rm,
                  req, ostart, bucket, dh, dm};
    for (size_t k = 0; k < sizeof fr / sizeof fr[0]; k++) lm_free(fr[k]);
    return rc;
}
