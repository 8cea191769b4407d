/* prep_doc.c — one document of `lamina prep`: parse it, clean or normalise
 * it, and compute its dedup keys (see prep.h). Everything here runs inside
 * OpenMP loops, one document per call. */
#include "clean.h"
#include "common.h"
#include "dedup.h"
#include "prep.h"
#include <jansson.h>
#include <string.h>

static int blank(const char *s, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (s[k] != ' ' && s[k] != '\n' && s[k] != '\r' && s[k] != '\t') return 0;
    return 1;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = lm_alloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A JSONL line: {"text": ...} or {"source": ..., "target": ...}, and
 * optionally "category". */
static int parse_json(const char *s, size_t n, prep_doc *d, char *why, size_t whylen) {
    json_error_t je;
    json_t *o = json_loadb(s, n, 0, &je);
    int rc = -1;
    if (!o) {
        snprintf(why, whylen, "%s", je.text);
        return -1;
    }
    json_t *text = json_is_object(o) ? json_object_get(o, "text") : NULL;
    json_t *src = json_is_object(o) ? json_object_get(o, "source") : NULL;
    json_t *tgt = json_is_object(o) ? json_object_get(o, "target") : NULL;
    json_t *cat = json_is_object(o) ? json_object_get(o, "category") : NULL;
    if (!json_is_object(o) || (text ? !json_is_string(text) : !json_is_string(src) || !json_is_string(tgt)))
        snprintf(why, whylen, "expected a JSON object with a string field \"text\", or string fields \"source\" and \"target\"");
    else if (cat && !json_is_null(cat) &&
             (!json_is_string(cat) || json_string_length(cat) == 0 || json_string_length(cat) > 200 ||
              strpbrk(json_string_value(cat), "\n\r") || strlen(json_string_value(cat)) != json_string_length(cat)))
        snprintf(why, whylen, "\"category\" must be a string of 1 to 200 bytes without line breaks");
    else {
        if (text) {
            d->len = json_string_length(text);
            d->text = dup_bytes(json_string_value(text), d->len);
            d->src = -1;
        } else { /* SFT: source then target in one buffer, the split remembered */
            size_t ns = json_string_length(src), nt = json_string_length(tgt);
            d->len = ns + nt;
            d->text = lm_alloc(d->len + 1);
            memcpy(d->text, json_string_value(src), ns);
            memcpy(d->text + ns, json_string_value(tgt), nt);
            d->text[d->len] = 0;
            d->src = (int64_t)ns;
        }
        if (cat && json_is_string(cat)) d->catname = dup_bytes(json_string_value(cat), json_string_length(cat));
        rc = 0;
    }
    json_decref(o);
    return rc;
}

int prep_doc_parse(const char *s, size_t n, int jsonl, prep_doc *d, char *why, size_t whylen) {
    if (jsonl) {
        if (parse_json(s, n, d, why, whylen)) return -1;
        return blank(d->text, d->len) ? 1 : 0;
    }
    if (blank(s, n)) return 1;
    d->text = dup_bytes(s, n);
    d->len = n;
    d->src = -1;
    return 0;
}

void prep_doc_process(const prep_run *r, prep_doc *d, const char *category, uint32_t *sig) {
    d->status = PREP_KEPT;
    char *norm = NULL;
    size_t nlen = 0;
    if (r->rules_set) {
        /* the cleaned (normalised) text is what is tokenized; an SFT pair is
         * normalised part by part so that the split stays where it was */
        char *out = NULL;
        size_t olen = 0;
        if (d->src >= 0) {
            char *a, *b;
            size_t na, nb;
            clean_normalise(d->text, (size_t)d->src, &a, &na);
            clean_normalise(d->text + d->src, d->len - (size_t)d->src, &b, &nb);
            lm_free(d->text);
            d->text = lm_alloc(na + nb + 1);
            memcpy(d->text, a, na);
            memcpy(d->text + na, b, nb);
            d->len = na + nb;
            d->src = (int64_t)na;
            lm_free(a);
            lm_free(b);
        }
        int rule = clean_doc(r->rules_set, category, d->text, d->len, &out, &olen);
        if (d->src < 0) {
            lm_free(d->text);
            d->text = out;
            d->len = olen;
        } else lm_free(out);
        d->status = rule < 0 ? PREP_KEPT : rule;
        norm = d->text;
        nlen = d->len;
    } else if (r->dedup != PREP_DEDUP_NONE) clean_normalise(d->text, d->len, &norm, &nlen);
    if (d->status == PREP_KEPT && r->dedup != PREP_DEDUP_NONE) {
        d->hash = dedup_exact_hash(norm, nlen);
        if (sig) minhash_sig(&r->mh, norm, nlen, sig);
    }
    if (norm != d->text) lm_free(norm);
}

void prep_doc_free(prep_doc *d) {
    lm_free(d->text);
    lm_free(d->catname);
    d->text = d->catname = NULL;
}
