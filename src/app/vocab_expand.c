/* vocab_expand.c — `lamina vocab expand` (SPEC §8): Colossal-LLaMA-2's
 * tokenizer merge (init_tokenizer.py). The candidates — lines of a file, or
 * the NORMAL pieces of another model in its id order — are deduplicated
 * keeping the first, stably sorted by length in Unicode characters
 * (shortest first), and those not already in BASE are appended to BASE
 * with score 0 and type NORMAL (--max-new N: the first N of them). BASE's
 * ids are unchanged: its bytes are kept and the new pieces are written as
 * field-1 records after them (spm_proto_append). */
#include "common.h"
#include "hash.h"
#include "opts.h"
#include "spm.h"
#include "spm_proto.h"
#include "vocab.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char *s;
    size_t len, chars, order;
} cand;

/* Stable order: characters, then first appearance. */
static int by_chars(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->chars != y->chars) return x->chars < y->chars ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Longest first, then first appearance (the report's 10 longest). */
static int by_chars_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->chars != y->chars) return x->chars > y->chars ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Well-formed UTF-8 (no overlongs, surrogates or code points past
 * U+10FFFF): Python reads a piece file as UTF-8 text. */
static int utf8_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!k || i + k > n) return 0;
        uint32_t cp = k == 1 ? c : c & (0x7f >> k);
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xc0) != 0x80) return 0;
            cp = cp << 6 | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x80) || (k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k;
    }
    return 1;
}

/* A set of strings by open addressing over their hash (dedup). */
typedef struct {
    const cand **slot;
    size_t cap;
} strset;

/* 1 if s was already present, else inserted and 0. */
static int set_add(strset *t, const cand *c) {
    uint64_t h = lm_mix64(lm_fnv1a(LM_FNV1A_INIT, c->s, c->len));
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slot[i]) {
            t->slot[i] = c;
            return 0;
        }
        if (t->slot[i]->len == c->len && !memcmp(t->slot[i]->s, c->s, c->len)) return 1;
    }
}

static const struct option EXPAND_OPTS[] = {
    {"base", required_argument, NULL, 'b'},    {"pieces", required_argument, NULL, 'p'},
    {"from", required_argument, NULL, 'f'},    {"max-new", required_argument, NULL, 'm'},
    {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
};

#define EXPAND_USAGE "lamina vocab expand --base BASE.model (--pieces FILE | --from NEW.model) [--max-new N] -o MERGED.model"

/* The candidates of a piece file: one per line (without '\n'; empty lines
 * skipped), each valid UTF-8 without NUL. */
static int read_pieces(const char *path, cand **out, size_t *n, char *err, size_t errlen) {
    size_t len;
    char *buf = lm_read_file(path, &len, err, errlen);
    if (!buf) return LM_ERR_INPUT;
    size_t cap = 0, lineno = 0;
    *out = NULL;
    *n = 0;
    for (size_t a = 0; a < len;) {
        char *nl = memchr(buf + a, '\n', len - a);
        size_t b = nl ? (size_t)(nl - buf) : len;
        lineno++;
        if (b > a) {
            if (memchr(buf + a, 0, b - a) || !utf8_ok((const unsigned char *)buf + a, b - a)) {
                lm_free(buf);
                return lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: %s:%zu: not a valid UTF-8 piece (or holds a NUL byte)",
                              path, lineno);
            }
            if (*n == cap) *out = lm_realloc(*out, sizeof(cand) * (cap = cap ? 2 * cap : 1024));
            cand *c = &(*out)[(*n)++];
            c->s = lm_alloc(b - a + 1);
            memcpy(c->s, buf + a, b - a);
            c->len = b - a;
        }
        a = b + 1;
    }
    lm_free(buf);
    return 0;
}

static int write_model(const char *out, const void *buf, size_t len, char *err, size_t errlen) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out) >= (int)sizeof tmp) return lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: -o path too long");
    FILE *f = fopen(tmp, "wb");
    int ok = f && fwrite(buf, 1, len, f) == len;
    if (f && fflush(f)) ok = 0;
    if (f && fsync(fileno(f))) ok = 0;
    if (f && fclose(f)) ok = 0;
    if (!ok || rename(tmp, out)) {
        int e = errno;
        unlink(tmp);
        return lm_err(err, errlen, LM_ERR_RUNTIME, "vocab expand: cannot write %s: %s", out, strerror(e));
    }
    return 0;
}

int vocab_expand(int argc, char **argv, char *err, size_t errlen) {
    const char *base = NULL, *pieces = NULL, *from = NULL, *out = NULL, *v;
    long max_new = -1;
    lm_opts o;
    lm_opts_begin(&o, "vocab expand", EXPAND_USAGE, argc, argv, "o:h", EXPAND_OPTS);
    int rc = 0;
    for (int c; !rc && (c = lm_opts_next(&o, &v, err, errlen)) != -1;) {
        char *end;
        switch (c) {
        case 'h': vocab_usage(stdout); lm_opts_end(&o); return -1;
        case 'o': out = v; break;
        case 'b': base = v; break;
        case 'p': pieces = v; break;
        case 'f': from = v; break;
        case 'm':
            errno = 0;
            max_new = strtol(v, &end, 10);
            if (errno || *end || !*v || max_new < 0)
                rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: --max-new '%s': expected an integer >= 0", v);
            break;
        default: rc = LM_ERR_INPUT; break;
        }
    }
    if (!rc && o.npos) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: unexpected argument '%s'", o.pos[0]);
    lm_opts_end(&o);
    if (!rc && (!base || !out)) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: --base BASE.model and -o MERGED.model are required");
    if (!rc && !pieces == !from) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: give one of --pieces FILE or --from NEW.model");
    if (rc) return rc;
    lm_spm *sb = spm_load(base, err, errlen);
    if (!sb) return LM_ERR_INPUT;
    cand *cs = NULL;
    size_t nc = 0;
    if (pieces) rc = read_pieces(pieces, &cs, &nc, err, errlen);
    else {
        lm_spm *sf = spm_load(from, err, errlen);
        if (!sf) rc = LM_ERR_INPUT;
        else {
            size_t fl;
            const void *fb = spm_model_bytes(sf, &fl);
            spm_model_info fi;
            rc = spm_proto_read(fb, fl, from, &fi, err, errlen);
            if (!rc) {
                cs = lm_calloc((size_t)fi.n_pieces + 1, sizeof(cand));
                for (int i = 0; i < fi.n_pieces; i++)
                    if (fi.pieces[i].type == SPM_NORMAL) {
                        cs[nc].s = lm_strdup(fi.pieces[i].piece);
                        cs[nc++].len = fi.pieces[i].len;
                    }
                spm_proto_free(&fi);
            }
            spm_free(sf);
        }
    }
    if (rc) {
        for (size_t i = 0; i < nc; i++) lm_free(cs[i].s);
        lm_free(cs);
        spm_free(sb);
        return rc;
    }
    /* dedup keeping the first; sort by characters; drop BASE's own */
    strset seen = {0};
    for (seen.cap = 16; seen.cap < 2 * nc + 2;) seen.cap *= 2;
    seen.slot = lm_calloc(seen.cap, sizeof(*seen.slot));
    size_t nu = 0;
    for (size_t i = 0; !rc && i < nc; i++) {
        cs[i].chars = vocab_utf8_chars(cs[i].s, cs[i].len);
        cs[i].order = i;
        if (set_add(&seen, &cs[i])) {
            lm_free(cs[i].s);
            continue;
        }
        cs[nu++] = cs[i];
    }
    lm_free(seen.slot);
    if (!rc) qsort(cs, nu, sizeof(cand), by_chars);
    size_t na = 0;
    for (size_t i = 0; !rc && i < nu; i++) {
        if (spm_piece_to_id(sb, cs[i].s) >= 0 || (max_new >= 0 && na == (size_t)max_new)) {
            lm_free(cs[i].s);
            continue;
        }
        cs[na++] = cs[i];
    }
    size_t bl, ml = 0;
    const void *bb = spm_model_bytes(sb, &bl);
    void *merged = NULL;
    const char **names = lm_calloc(na + 1, sizeof(char *));
    for (size_t i = 0; i < na; i++) names[i] = cs[i].s;
    if (!rc && (int64_t)na + spm_vocab_size(sb) > INT32_MAX - 1)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: too many pieces");
    if (!rc) rc = spm_proto_append(bb, bl, base, names, (int)na, &merged, &ml, err, errlen);
    lm_spm *sm = NULL;
    if (!rc) {
        char why[LM_ERRLEN];
        sm = spm_load_bytes(merged, ml, out, why, sizeof why);
        if (!sm) rc = lm_err(err, errlen, LM_ERR_INPUT, "vocab expand: the merged model does not load: %s", why);
    }
    if (!rc) rc = write_model(out, merged, ml, err, errlen);
    if (!rc) {
        /* new pieces BASE can only spell with byte fallback (a BYTE piece
         * among the ids of the piece's string) */
        size_t nbyte = 0;
        spm_model_info bi;
        rc = spm_proto_read(bb, bl, base, &bi, err, errlen);
        for (size_t i = 0; !rc && i < na; i++) {
            int32_t *ids;
            size_t k;
            if (spm_encode(sb, cs[i].s, cs[i].len, &ids, &k, err, errlen)) {
                rc = LM_ERR_RUNTIME;
                break;
            }
            for (size_t j = 0; j < k; j++) {
                if (bi.pieces[ids[j]].type == SPM_BYTE) {
                    nbyte++;
                    break;
                }
            }
            lm_free(ids);
        }
        spm_proto_free(&bi);
        if (!rc) {
            printf("vocab expand: %zu candidates (%zu distinct), %zu new pieces added: %d -> %d pieces -> %s\n", nc, nu, na,
                   spm_vocab_size(sb), spm_vocab_size(sm), out);
            printf("vocab expand: %zu of the new pieces need byte fallback in %s\n", nbyte, base);
            qsort(cs, na, sizeof(cand), by_chars_desc);
            printf("vocab expand: longest new pieces:");
            for (size_t i = 0; i < na && i < 10; i++) printf(" %s", cs[i].s);
            printf("\n");
        }
    }
    for (size_t i = 0; i < na; i++) lm_free(cs[i].s);
    lm_free(names);
    lm_free(cs);
    lm_free(merged);
    spm_free(sm);
    spm_free(sb);
    return rc;
}
