/* spm_proto.c — the ModelProto reader and piece appender (spm_proto.h). */
#include "spm_proto.h"
#include "common.h"
#include <stdint.h>
#include <string.h>

/* Protobuf wire types (the two group types, 3 and 4, are refused). */
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
    const uint8_t *b; /* the whole buffer: offsets in messages are absolute */
    const char *what;
    char *err;
    size_t errlen;
} pb;

/* One field of a message: its number, wire type, and value (a varint or
 * fixed value in v; a length-delimited payload at [lo, lo+n)). */
typedef struct {
    uint32_t num;
    int wt;
    uint64_t v;
    size_t lo, n, at; /* at: where the field's key starts */
} pb_field;

static int bad(pb *p, size_t at, const char *why) {
    return lm_err(p->err, p->errlen, LM_ERR_INPUT, "%s: not a SentencePiece model: byte %zu: %s", p->what, at, why);
}

/* Base-128 varint: 7 bits a byte, low group first, high bit = more. At
 * most 10 bytes, and the 10th may only carry the 64th bit. */
static int varint(pb *p, size_t *pos, size_t end, uint64_t *v) {
    uint64_t x = 0;
    size_t start = *pos;
    for (int i = 0;; i++) {
        if (*pos >= end) return bad(p, start, "varint runs past the end");
        uint8_t c = p->b[(*pos)++];
        if (i == 9 && c > 1) return bad(p, start, "varint longer than 64 bits");
        x |= (uint64_t)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) break;
    }
    *v = x;
    return 0;
}

/* The next field of the message ending at `end`: 1 with f, 0 at the end,
 * 2 with err. Key = (field number << 3) | wire type. */
static int next_field(pb *p, size_t *pos, size_t end, pb_field *f) {
    if (*pos >= end) return 0;
    uint64_t key;
    f->at = *pos;
    if (varint(p, pos, end, &key)) return LM_ERR_INPUT;
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffff) return bad(p, f->at, "field number 0 or above 2^29-1");
    f->v = 0;
    f->lo = f->n = 0;
    switch (f->wt) {
    case WT_VARINT: return varint(p, pos, end, &f->v) ? LM_ERR_INPUT : 1;
    case WT_I64:
    case WT_I32: {
        size_t w = f->wt == WT_I64 ? 8 : 4;
        if (end - *pos < w) return bad(p, f->at, "fixed-size value runs past the end");
        for (size_t i = 0; i < w; i++) f->v |= (uint64_t)p->b[*pos + i] << (8 * i);
        *pos += w;
        return 1;
    }
    case WT_LEN: {
        uint64_t n;
        if (varint(p, pos, end, &n)) return LM_ERR_INPUT;
        if (n > end - *pos) return bad(p, f->at, "length-delimited field runs past the end of its message");
        f->lo = *pos;
        f->n = (size_t)n;
        *pos += (size_t)n;
        return 1;
    }
    default: {
        char why[96];
        snprintf(why, sizeof why, "field %u has wire type %d (groups and types 6-7 are not allowed)", f->num, f->wt);
        return bad(p, f->at, why);
    }
    }
}

/* A known field must come with its wire type. */
static int want(pb *p, const pb_field *f, int wt, const char *msg) {
    if (f->wt == wt) return 0;
    char why[128];
    snprintf(why, sizeof why, "%s field %u has wire type %d, expected %d", msg, f->num, f->wt, wt);
    return bad(p, f->at, why);
}

/* Walk a message whose fields we do not interpret: well-formed wire format
 * only. */
static int walk(pb *p, size_t lo, size_t n) {
    size_t pos = lo, end = lo + n;
    pb_field f;
    int r;
    while ((r = next_field(p, &pos, end, &f)) == 1) {}
    return r;
}

static int as_int32(uint64_t v) { return (int)(int32_t)(uint32_t)v; }

/* One ModelProto.SentencePiece record (index k). */
static int read_piece(pb *p, size_t lo, size_t n, int k, spm_piece *out) {
    size_t pos = lo, end = lo + n;
    pb_field f;
    int r;
    char why[160];
    out->type = SPM_NORMAL;
    int have = 0;
    while ((r = next_field(p, &pos, end, &f)) == 1) {
        if (f.num == 1) {
            if (want(p, &f, WT_LEN, "piece")) return LM_ERR_INPUT;
            if (memchr(p->b + f.lo, 0, f.n)) {
                snprintf(why, sizeof why, "piece %d holds a NUL byte", k);
                return bad(p, f.at, why);
            }
            lm_free(out->piece);
            out->piece = lm_alloc(f.n + 1);
            memcpy(out->piece, p->b + f.lo, f.n);
            out->len = f.n;
            have = 1;
        } else if (f.num == 2) {
            if (want(p, &f, WT_I32, "piece")) return LM_ERR_INPUT;
            uint32_t u = (uint32_t)f.v;
            memcpy(&out->score, &u, sizeof u);
        } else if (f.num == 3) {
            if (want(p, &f, WT_VARINT, "piece")) return LM_ERR_INPUT;
            if (f.v < SPM_NORMAL || f.v > SPM_BYTE) {
                snprintf(why, sizeof why, "piece %d has type %llu (1-6 expected)", k, (unsigned long long)f.v);
                return bad(p, f.at, why);
            }
            out->type = (int)f.v;
        } else if (f.wt == WT_LEN && walk(p, f.lo, f.n)) return LM_ERR_INPUT;
    }
    if (r) return r;
    if (!have || out->len == 0) {
        snprintf(why, sizeof why, "piece %d has no piece string (or an empty one)", k);
        return bad(p, lo, why);
    }
    return 0;
}

static int read_trainer(pb *p, size_t lo, size_t n, spm_model_info *m) {
    size_t pos = lo, end = lo + n;
    pb_field f;
    int r;
    while ((r = next_field(p, &pos, end, &f)) == 1) {
        int *dst = NULL;
        switch (f.num) {
        case 3: dst = &m->model_type; break;
        case 4: dst = &m->vocab_size; break;
        case 25: dst = &m->split_digits; break;
        case 35: dst = &m->byte_fallback; break;
        case 40: dst = &m->unk_id; break;
        case 41: dst = &m->bos_id; break;
        case 42: dst = &m->eos_id; break;
        case 43: dst = &m->pad_id; break;
        default: break;
        }
        if (dst) {
            if (want(p, &f, WT_VARINT, "trainer_spec")) return LM_ERR_INPUT;
            if (f.num == 3 && (f.v < SPM_UNIGRAM || f.v > SPM_CHAR)) return bad(p, f.at, "trainer_spec.model_type not 1-4");
            *dst = f.num == 25 || f.num == 35 ? f.v != 0 : as_int32(f.v);
        }
    }
    return r;
}

/* The characters (UTF-8 lead bytes) of the longest string in the
 * charsmap's replacement blob: [u32 trie bytes][trie][NUL-ended strings]. */
static int read_charsmap(pb *p, const pb_field *f, spm_model_info *m) {
    const uint8_t *c = p->b + f->lo;
    size_t n = f->n;
    m->charsmap_len = n;
    if (n == 0) return 0;
    if (n < 4) return bad(p, f->at, "normalizer_spec.precompiled_charsmap shorter than its 4-byte header");
    uint32_t tn = (uint32_t)c[0] | (uint32_t)c[1] << 8 | (uint32_t)c[2] << 16 | (uint32_t)c[3] << 24;
    if (tn > n - 4 || tn % 4 || tn == 0 || c[n - 1] != 0)
        return bad(p, f->at, "normalizer_spec.precompiled_charsmap: trie size out of range, or the strings not NUL-ended");
    /* The double-array trie (darts-clone): a node unit u (bit 31 clear)
     * sends byte b to unit (i ^ offset(u)) ^ b, its leaf to i ^ offset(u);
     * a leaf unit (bit 31 set) holds an offset into the strings. Every
     * index the search can compute must lie inside the trie, every value
     * inside the strings. */
    size_t nu = tn / 4, slen = n - 4 - tn;
    const uint8_t *s = c + 4 + tn;
    for (size_t i = 0; i < nu; i++) {
        const uint8_t *q = c + 4 + 4 * i;
        uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
        if (u >> 31) {
            if ((u & 0x7fffffffu) >= slen) return bad(p, f->at, "normalizer_spec.precompiled_charsmap: a value outside the strings");
        } else {
            size_t off = (size_t)(u >> 10) << ((u & (1u << 9)) >> 6);
            if (((i ^ off) | 0xff) >= nu) return bad(p, f->at, "normalizer_spec.precompiled_charsmap: a trie index out of range");
        }
    }
    int best = 1, cur = 0;
    for (size_t i = 0; i < slen; i++) {
        if (!s[i]) cur = 0;
        else if ((s[i] & 0xc0) != 0x80 && ++cur > best) best = cur;
    }
    if (best > m->max_norm_chars) m->max_norm_chars = best;
    return 0;
}

static int read_normalizer(pb *p, size_t lo, size_t n, spm_model_info *m, int denorm) {
    size_t pos = lo, end = lo + n;
    pb_field f;
    int r;
    while ((r = next_field(p, &pos, end, &f)) == 1) {
        if (f.num == 2) {
            if (want(p, &f, WT_LEN, "normalizer_spec") || read_charsmap(p, &f, m)) return LM_ERR_INPUT;
            if (denorm) m->charsmap_len = 0;
        } else if (f.num >= 3 && f.num <= 5) {
            if (want(p, &f, WT_VARINT, "normalizer_spec")) return LM_ERR_INPUT;
            if (!denorm) *(f.num == 3 ? &m->add_dummy_prefix : f.num == 4 ? &m->remove_extra_whitespaces : &m->escape_whitespaces) = f.v != 0;
        } else if ((f.num == 1 || f.num == 6) && want(p, &f, WT_LEN, "normalizer_spec")) return LM_ERR_INPUT;
    }
    return r;
}

/* SelfTestData: repeated Sample (field 1) {input = 1, expected = 2}. */
static int read_selftest(pb *p, size_t lo, size_t n) {
    size_t pos = lo, end = lo + n;
    pb_field f;
    int r;
    while ((r = next_field(p, &pos, end, &f)) == 1)
        if (f.num == 1 && (want(p, &f, WT_LEN, "self_test_data") || walk(p, f.lo, f.n))) return LM_ERR_INPUT;
    return r;
}

void spm_proto_free(spm_model_info *m) {
    if (!m) return;
    for (int i = 0; i < m->n_pieces; i++) lm_free(m->pieces[i].piece);
    lm_free(m->pieces);
    memset(m, 0, sizeof *m);
}

int spm_proto_read(const void *buf, size_t len, const char *what, spm_model_info *m, char *err, size_t errlen) {
    pb p = {buf, what, err, errlen};
    memset(m, 0, sizeof *m);
    /* proto2 defaults */
    m->model_type = SPM_UNIGRAM;
    m->vocab_size = 8000;
    m->unk_id = 0, m->bos_id = 1, m->eos_id = 2, m->pad_id = -1;
    m->add_dummy_prefix = m->remove_extra_whitespaces = m->escape_whitespaces = 1;
    m->max_norm_chars = 1;
    size_t pos = 0;
    int cap = 0, r;
    pb_field f;
    while ((r = next_field(&p, &pos, len, &f)) == 1) {
        int rc = 0;
        switch (f.num) {
        case 1:
            if ((rc = want(&p, &f, WT_LEN, "model"))) break;
            if (m->n_pieces == INT32_MAX - 1) { rc = bad(&p, f.at, "too many pieces"); break; }
            if (m->n_pieces == cap) {
                cap = cap ? 2 * cap : 256;
                m->pieces = lm_realloc(m->pieces, sizeof(spm_piece) * (size_t)cap);
            }
            memset(&m->pieces[m->n_pieces], 0, sizeof(spm_piece));
            rc = read_piece(&p, f.lo, f.n, m->n_pieces, &m->pieces[m->n_pieces]);
            m->n_pieces++;
            break;
        case 2:
            if (!(rc = want(&p, &f, WT_LEN, "model"))) rc = read_trainer(&p, f.lo, f.n, m);
            m->has_trainer_spec = 1;
            break;
        case 3:
        case 5:
            if (!(rc = want(&p, &f, WT_LEN, "model"))) rc = read_normalizer(&p, f.lo, f.n, m, f.num == 5);
            if (f.num == 3) m->has_normalizer_spec = 1;
            break;
        case 4:
            if (!(rc = want(&p, &f, WT_LEN, "model"))) rc = read_selftest(&p, f.lo, f.n);
            break;
        default: break;
        }
        if (rc) {
            r = rc;
            break;
        }
    }
    if (!r && m->n_pieces == 0) r = lm_err(err, errlen, LM_ERR_INPUT, "%s: not a SentencePiece model: no pieces", what);
    if (r) {
        spm_proto_free(m);
        return LM_ERR_INPUT;
    }
    return 0;
}

/* Protobuf writing: a varint, and a key (field << 3 | wire type). */
static size_t put_varint(uint8_t *o, uint64_t v) {
    size_t k = 0;
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        o[k++] = c | (v ? 0x80 : 0);
    } while (v);
    return k;
}

/* Rewrite: every top-level field copied in order, TrainerSpec records
 * without their vocab_size, and the last one with vocab_size = the new
 * count (protobuf merges the records, so one vocab_size is enough);
 * then one record per new piece. */
int spm_proto_append(const void *buf, size_t len, const char *what, const char *const *pieces, int n, void **out,
                     size_t *outlen, char *err, size_t errlen) {
    spm_model_info m;
    if (spm_proto_read(buf, len, what, &m, err, errlen)) return LM_ERR_INPUT;
    int total = m.n_pieces + n;
    spm_proto_free(&m);
    size_t need = len + 16;
    for (int i = 0; i < n; i++) {
        size_t k = strlen(pieces[i]);
        if (!k) return lm_err(err, errlen, LM_ERR_INPUT, "%s: new piece %d is empty", what, i);
        need += k + 32;
    }
    uint8_t *o = lm_alloc(need + 64);
    const uint8_t *b = buf;
    pb p = {b, what, err, errlen};
    size_t pos = 0, k = 0, last_trainer = (size_t)-1;
    pb_field f;
    while (next_field(&p, &pos, len, &f) == 1)
        if (f.num == 2) last_trainer = f.at;
    pos = 0;
    while (next_field(&p, &pos, len, &f) == 1) {
        if (f.num != 2) {
            memcpy(o + k, b + f.at, pos - f.at);
            k += pos - f.at;
            continue;
        }
        /* the TrainerSpec payload without field 4, into a scratch area at the end */
        uint8_t *t = lm_alloc(f.n + 16);
        size_t tk = 0, tp = f.lo;
        pb_field g;
        while (next_field(&p, &tp, f.lo + f.n, &g) == 1) {
            if (g.num == 4) continue;
            memcpy(t + tk, b + g.at, tp - g.at);
            tk += tp - g.at;
        }
        if (f.at == last_trainer) {
            t[tk++] = 4 << 3 | WT_VARINT;
            tk += put_varint(t + tk, (uint64_t)(uint32_t)total);
        }
        o[k++] = 2 << 3 | WT_LEN;
        k += put_varint(o + k, tk);
        memcpy(o + k, t, tk);
        k += tk;
        lm_free(t);
    }
    for (int i = 0; i < n; i++) {
        size_t pl = strlen(pieces[i]);
        uint8_t rec[32];
        size_t rk = 0;
        rec[rk++] = 1 << 3 | WT_LEN;
        rk += put_varint(rec + rk, pl);
        size_t body = rk + pl + 5; /* + score: key and 4 zero bytes */
        o[k++] = 1 << 3 | WT_LEN;
        k += put_varint(o + k, body);
        memcpy(o + k, rec, rk);
        k += rk;
        memcpy(o + k, pieces[i], pl);
        k += pl;
        o[k++] = 2 << 3 | WT_I32;
        memset(o + k, 0, 4);
        k += 4;
    }
    *out = o;
    *outlen = k;
    return 0;
}
