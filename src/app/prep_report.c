/* prep_report.c — what `lamina prep` tells: the per-category log, the
 * --stats JSON (documents and bytes into and out of every stage, per
 * category) and the --rejected JSONL (every dropped document with the rule
 * that dropped it). See prep.h and src/app/CLI.md.
 *
 * Bytes are the UTF-8 bytes of a document's text as it is tokenized (after
 * normalisation with --clean). The stages run in order: a document reaches
 * stage s only if no earlier stage dropped it, so a stage's documents out
 * are its documents in less those it dropped. */
#include "clean.h"
#include "common.h"
#include "prep.h"
#include <errno.h>
#include <jansson.h>
#include <string.h>

int prep_n_stages(void) { return clean_n_rules() + 2; }

const char *prep_stage_name(int s) {
    if (s < clean_n_rules()) return clean_rule_name(s);
    return s == clean_n_rules() ? "dedup_exact" : "dedup_near";
}

/* Is stage s in use in this run? */
static int stage_on(const prep_run *r, int s) {
    if (s < clean_n_rules()) return r->rules_set != NULL;
    return s == clean_n_rules() ? r->dedup != PREP_DEDUP_NONE : r->dedup == PREP_DEDUP_NEAR;
}

static double pct(int64_t a, int64_t b) { return b > 0 ? 100.0 * (double)a / (double)b : 0.0; }

void prep_report_log(const prep_run *r, const prep_catstat *cs, int valid, const char *path) {
    int64_t maxlen = r->seq_len + 1;
    prep_catstat t = {0};
    for (int c = 0; c < r->ncats; c++) {
        const prep_catstat *x = &cs[c];
        t.docs += x->docs;
        t.tokens += x->tokens;
        t.samples += x->samples;
        t.bytes += x->bytes;
        t.split += x->split;
        t.concat_samples += x->concat_samples;
        lm_log("prep: %s category %s: %lld documents, %lld tokens, %lld samples, %lld padding, packing %.2f%% "
               "(concatenate-and-split %.2f%%)\n",
               valid ? "validation" : "training", r->cats[c], (long long)x->docs, (long long)x->tokens,
               (long long)x->samples, (long long)(x->samples * maxlen - x->tokens), pct(x->tokens, x->samples * maxlen),
               pct(x->tokens, x->concat_samples * maxlen));
    }
    lm_log("prep: %s%lld documents (%lld bytes, %lld split at %ld+1 tokens) -> %lld tokens in %lld samples of <= %ld+1 "
           "(packing %.1f%%, %s tokenizer, vocab %d) -> %s\n",
           valid ? "validation: " : "", (long long)t.docs, (long long)t.bytes, (long long)t.split, r->seq_len, (long long)t.tokens,
           (long long)t.samples, r->seq_len, pct(t.tokens, t.samples * maxlen), r->spm ? r->tokpath : r->tok->name,
           r->tok->vocab_size, path);
    if (!valid && r->bins > 1 && r->group_samples) { /* the bucket layout: samples per bucket and category */
        for (int64_t b = 0; b < r->bins && b < 16; b++) {
            char line[512];
            int64_t n = 0;
            size_t at = 0;
            for (int c = 0; c < r->ncats; c++) n += r->group_samples[b * r->ncats + c];
            for (int c = 0; c < r->ncats && at < sizeof line - 64; c++)
                at += (size_t)snprintf(line + at, sizeof line - at, "%s%s %lld", c ? ", " : "", r->cats[c],
                                       (long long)r->group_samples[b * r->ncats + c]);
            lm_log("prep: bucket %lld: %lld samples (%s)\n", (long long)b, (long long)n, line);
        }
        if (r->bins > 16) lm_log("prep: ... %lld buckets in all (bin b of every category)\n", (long long)r->bins);
    }
}

/* Per category and stage: documents and bytes dropped; per category: in. */
static void tally(const prep_run *r, int64_t *drop_d, int64_t *drop_b, int64_t *in_d, int64_t *in_b) {
    int C = r->ncats, NS = prep_n_stages();
    for (int64_t i = 0; i < r->ndocs; i++) {
        const prep_doc *d = &r->docs[i];
        in_d[d->cat]++;
        in_b[d->cat] += (int64_t)d->len;
        if (d->status != PREP_KEPT) {
            drop_d[(size_t)d->cat * (size_t)NS + (size_t)d->status]++;
            drop_b[(size_t)d->cat * (size_t)NS + (size_t)d->status] += (int64_t)d->len;
        }
    }
    comm_allreduce_sum_i64(r->g, drop_d, (size_t)C * (size_t)NS);
    comm_allreduce_sum_i64(r->g, drop_b, (size_t)C * (size_t)NS);
    comm_allreduce_sum_i64(r->g, in_d, (size_t)C);
    comm_allreduce_sum_i64(r->g, in_b, (size_t)C);
}

static json_t *inout(int64_t di, int64_t bi, int64_t dd, int64_t bd) {
    return json_pack("{sIsIsIsIsIsI}", "documents_in", (json_int_t)di, "bytes_in", (json_int_t)bi, "documents_dropped",
                     (json_int_t)dd, "bytes_dropped", (json_int_t)bd, "documents_out", (json_int_t)(di - dd), "bytes_out",
                     (json_int_t)(bi - bd));
}

static json_t *setstat(const prep_run *r, const prep_catstat *x) {
    int64_t slots = x->samples * (r->seq_len + 1);
    return json_pack("{sIsIsIsIsIsIsfsf}", "documents", (json_int_t)x->docs, "bytes", (json_int_t)x->bytes, "tokens",
                     (json_int_t)x->tokens, "samples", (json_int_t)x->samples, "padding", (json_int_t)(slots - x->tokens),
                     "split_documents", (json_int_t)x->split, "packing_efficiency",
                     slots ? (double)x->tokens / (double)slots : 0.0, "concat_split_efficiency",
                     x->concat_samples ? (double)x->tokens / (double)(x->concat_samples * (r->seq_len + 1)) : 0.0);
}

int prep_report_stats(const prep_run *r, const prep_catstat *train, const prep_catstat *valid, char *err,
                      size_t errlen) {
    int C = r->ncats, NS = prep_n_stages(), rc = 0;
    int64_t *dd = lm_calloc((size_t)C * (size_t)NS, sizeof(int64_t)), *db = lm_calloc((size_t)C * (size_t)NS, sizeof(int64_t));
    int64_t *id = lm_calloc((size_t)C, sizeof(int64_t)), *ib = lm_calloc((size_t)C, sizeof(int64_t));
    tally(r, dd, db, id, ib);
    if (r->g->rank == 0) {
        json_t *root = json_object(), *cats = json_object(), *rules = json_object(), *stages = json_array();
        int64_t tin = 0, tbin = 0, tdrop = 0, tbdrop = 0;
        for (int c = 0; c < C; c++) {
            tin += id[c];
            tbin += ib[c];
        }
        /* totals per stage over categories */
        int64_t din = tin, bin = tbin;
        for (int s = 0; s < NS; s++) {
            if (!stage_on(r, s)) continue;
            int64_t sd = 0, sb = 0;
            for (int c = 0; c < C; c++) {
                sd += dd[(size_t)c * (size_t)NS + (size_t)s];
                sb += db[(size_t)c * (size_t)NS + (size_t)s];
            }
            json_array_append_new(stages, json_string(prep_stage_name(s)));
            json_object_set_new(rules, prep_stage_name(s), inout(din, bin, sd, sb));
            din -= sd;
            bin -= sb;
            tdrop += sd;
            tbdrop += sb;
        }
        for (int c = 0; c < C; c++) {
            json_t *cr = json_object();
            int64_t ci = id[c], cb = ib[c], cd = 0, cbd = 0;
            for (int s = 0; s < NS; s++) {
                if (!stage_on(r, s)) continue;
                int64_t sd = dd[(size_t)c * (size_t)NS + (size_t)s], sb = db[(size_t)c * (size_t)NS + (size_t)s];
                json_object_set_new(cr, prep_stage_name(s), inout(ci, cb, sd, sb));
                ci -= sd;
                cb -= sb;
                cd += sd;
                cbd += sb;
            }
            json_t *co = inout(id[c], ib[c], cd, cbd);
            json_object_set_new(co, "rules", cr);
            json_object_set_new(co, "train", setstat(r, &train[c]));
            if (valid) json_object_set_new(co, "valid", setstat(r, &valid[c]));
            json_object_set_new(cats, r->cats[c], co);
        }
        json_object_set_new(root, "documents_in", json_integer((json_int_t)tin));
        json_object_set_new(root, "bytes_in", json_integer((json_int_t)tbin));
        json_object_set_new(root, "documents_out", json_integer((json_int_t)(tin - tdrop)));
        json_object_set_new(root, "bytes_out", json_integer((json_int_t)(tbin - tbdrop)));
        json_object_set_new(root, "stages", stages);
        json_object_set_new(root, "rules", rules);
        json_object_set_new(root, "categories", cats);
        json_object_set_new(root, "seq_len", json_integer(r->seq_len));
        json_object_set_new(root, "bins", json_integer((json_int_t)r->bins));
        json_object_set_new(root, "seed", json_integer((json_int_t)r->seed));
        json_object_set_new(root, "dedup", json_string(r->dedup == PREP_DEDUP_NONE ? "none" : r->dedup == PREP_DEDUP_EXACT ? "exact" : "near"));
        if (r->dedup == PREP_DEDUP_NEAR) json_object_set_new(root, "dedup_threshold", json_real(r->threshold));
        json_object_set_new(root, "clean", r->rules_set ? json_string(r->rules ? r->rules : "default") : json_null());
        if (r->valid_fraction > 0) json_object_set_new(root, "valid_fraction", json_real(r->valid_fraction));
        if (json_dump_file(root, r->stats, JSON_INDENT(1) | JSON_PRESERVE_ORDER))
            rc = lm_err(err, errlen, LM_ERR_RUNTIME, "prep: --stats %s: cannot write (%s)", r->stats, strerror(errno));
        json_decref(root);
    }
    lm_free(dd);
    lm_free(db);
    lm_free(id);
    lm_free(ib);
    return comm_agree(r->g, rc, err, errlen);
}

/* A JSON string of text that may hold invalid UTF-8 (jansson refuses it):
 * then its normalised form (invalid sequences as U+FFFD). */
static json_t *text_json(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    char *o;
    size_t on;
    clean_normalise(s, n, &o, &on);
    j = json_stringn(o, on);
    lm_free(o);
    return j ? j : json_string("");
}

/* This rank's dropped documents as JSONL, in order. */
static char *rejected_lines(const prep_run *r, size_t *len) {
    char *out = NULL;
    size_t n = 0, cap = 0;
    for (int64_t i = 0; i < r->ndocs; i++) {
        const prep_doc *d = &r->docs[i];
        if (d->status == PREP_KEPT) continue;
        json_t *o = json_object();
        json_object_set_new(o, "file", json_string(r->files[d->file].path));
        json_object_set_new(o, "line", json_integer((json_int_t)d->line));
        json_object_set_new(o, "category", json_string(r->cats[d->cat]));
        json_object_set_new(o, "rule", json_string(prep_stage_name(d->status)));
        if (d->status == PREP_ST_EXACT || d->status == PREP_ST_NEAR) {
            json_t *k = d->dup_file >= 0 ? json_pack("{sssI}", "file", r->files[d->dup_file].path, "line", (json_int_t)d->dup_line)
                                         : json_pack("{sssI}", "file", r->against[-1 - d->dup_file], "document",
                                                     (json_int_t)d->dup_line);
            json_object_set_new(o, "duplicate_of", k);
        }
        if (d->src >= 0) {
            json_object_set_new(o, "source", text_json(d->text, (size_t)d->src));
            json_object_set_new(o, "target", text_json(d->text + d->src, d->len - (size_t)d->src));
        } else json_object_set_new(o, "text", text_json(d->text, d->len));
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(o);
        size_t m = strlen(s);
        if (n + m + 1 > cap) {
            cap = 2 * (n + m + 1);
            out = lm_realloc(out, cap);
        }
        memcpy(out + n, s, m);
        out[n + m] = '\n';
        n += m + 1;
        free(s);
    }
    *len = n;
    return out;
}

int prep_report_rejected(const prep_run *r, char *err, size_t errlen) {
    const lm_group *g = r->g;
    size_t n;
    char *mine = rejected_lines(r, &n);
    int rc = 0;
    if (g->rank == 0) {
        FILE *f = fopen(r->rejected, "wb");
        if (!f) rc = lm_err(err, errlen, LM_ERR_RUNTIME, "prep: --rejected %s: cannot write (%s)", r->rejected, strerror(errno));
        if (f && n && fwrite(mine, 1, n, f) != n) rc = 1;
        for (int q = 1; q < g->size; q++) { /* one rank at a time, in rank order = document order */
            int64_t m;
            comm_recv(g, &m, sizeof m, q, 401);
            char *b = lm_alloc((size_t)m + 1);
            if (m) comm_recv(g, b, (size_t)m, q, 402);
            if (f && m && fwrite(b, 1, (size_t)m, f) != (size_t)m) rc = 1;
            lm_free(b);
        }
        if (f && fclose(f)) rc = 1;
        if (rc == 1) lm_err(err, errlen, LM_ERR_RUNTIME, "prep: --rejected %s: cannot write (%s)", r->rejected, strerror(errno));
    } else {
        int64_t m = (int64_t)n;
        comm_send(g, &m, sizeof m, 0, 401);
        if (m) comm_send(g, mine, n, 0, 402);
    }
    lm_free(mine);
    return comm_agree(g, rc, err, errlen);
}
