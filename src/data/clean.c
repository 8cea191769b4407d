/* clean.c — document cleaning: normalisation, one pass of counts, the
 * Gopher-style rules and the rules file (see clean.h for every definition).
 *
 * Work per document, all linear in its length:
 *   1. sanitise: UTF-8 validated byte by byte (invalid subparts to U+FFFD),
 *      control characters and ANSI sequences dropped, CR/CRLF to LF,
 *      combining runs capped;
 *   2. NFKC: utf8proc_decompose + utf8proc_reencode, the two halves of
 *      utf8proc_map (so the result lands in an lm_alloc block), on the
 *      stretches between characters NFKC cannot touch (ASCII, Han, Hangul
 *      syllables: copied as they are); nothing at all for printable ASCII;
 *   3. one pass over the normalised text: character classes, words (hash and
 *      length of each) and lines (hash, length, ellipsis/bullet flags);
 *   4. only as far as needed (clean_doc stops at the first rule that fails):
 *      duplicated lines (a hash set), then word n-grams (n = 2..10, one
 *      counting hash table, each pass over the positions whose shorter
 *      n-gram repeated). */
#include "clean.h"
#include "common.h"
#include "hash.h"
#include "lm_ini.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

/* ---- the rules ---- */

enum { K_COUNT, K_LEN, K_FRAC };

static const struct {
    const char *name;
    int kind, is_min;
    double def; /* 0: off */
} RULES[CLEAN_NRULES] = {
    [CLEAN_INVALID_UTF8] = {"max_invalid_utf8_frac", K_FRAC, 0, 0.01},
    [CLEAN_MIN_CHARS] = {"min_chars", K_COUNT, 1, 0},
    [CLEAN_MAX_CHARS] = {"max_chars", K_COUNT, 0, 10000000},
    [CLEAN_MIN_WORDS] = {"min_words", K_COUNT, 1, 50},
    [CLEAN_MAX_WORDS] = {"max_words", K_COUNT, 0, 1000000},
    [CLEAN_MIN_MEAN_WORD_LEN] = {"min_mean_word_len", K_LEN, 1, 3},
    [CLEAN_MAX_MEAN_WORD_LEN] = {"max_mean_word_len", K_LEN, 0, 10},
    [CLEAN_MIN_ALPHA_FRAC] = {"min_alpha_frac", K_FRAC, 1, 0.6},
    [CLEAN_MAX_DIGIT_FRAC] = {"max_digit_frac", K_FRAC, 0, 0.25},
    [CLEAN_MAX_PUNCT_FRAC] = {"max_punct_frac", K_FRAC, 0, 0.25},
    [CLEAN_MIN_CJK_FRAC] = {"min_cjk_frac", K_FRAC, 1, 0},
    [CLEAN_MAX_ELLIPSIS_LINE_FRAC] = {"max_ellipsis_line_frac", K_FRAC, 0, 0.3},
    [CLEAN_MAX_BULLET_LINE_FRAC] = {"max_bullet_line_frac", K_FRAC, 0, 0.9},
    [CLEAN_MAX_DUP_LINE_FRAC] = {"max_dup_line_frac", K_FRAC, 0, 0.3},
    [CLEAN_MAX_DUP_LINE_CHAR_FRAC] = {"max_dup_line_char_frac", K_FRAC, 0, 0.2},
    [CLEAN_MAX_TOP_NGRAM_FRAC] = {"max_top_ngram_frac", K_FRAC, 0, 0.2},
    [CLEAN_MAX_DUP_NGRAM_FRAC] = {"max_dup_ngram_frac", K_FRAC, 0, 0.15},
};

int clean_n_rules(void) { return CLEAN_NRULES; }

const char *clean_rule_name(int r) { return r >= 0 && r < CLEAN_NRULES ? RULES[r].name : "?"; }

/* Does value v break threshold t of rule r? t = 0 is off; NaN (a rule that
 * does not apply to this document) never breaks one. */
static int breaks(int r, double v, double t) {
    if (t == 0) return 0;
    return RULES[r].is_min ? v < t : v > t;
}

/* ---- 1. sanitise ---- */

/* Combining marks in a row kept at most (UAX #15 stream-safe text). */
#define MAX_MARK_RUN 30

/* Length of a valid UTF-8 sequence at s (n bytes left) with its code point
 * in *cp, or 0 with *sub = the length of the maximal invalid subpart (>= 1).
 * The ranges are Unicode's Table 3-7 (no overlongs, no surrogates, <= 10FFFF). */
static size_t utf8_decode(const uint8_t *s, size_t n, int32_t *cp, size_t *sub) {
    uint8_t c = s[0];
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;
    int32_t v;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *sub = 1;
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        uint8_t b = i < n ? s[i] : 0;
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) {
            *sub = i;
            return 0;
        }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return len;
}

/* Step 1 into dst (room for 3 bytes per input byte): returns the bytes
 * written; *bad gets the invalid input bytes, *ascii whether dst is ASCII. */
static size_t sanitise(const uint8_t *s, size_t n, uint8_t *dst, size_t *bad, int *ascii) {
    size_t o = 0, nbad = 0;
    int marks = 0, high = 0;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            marks = 0;
            if (c >= 0x20 && c != 0x7F) dst[o++] = c;
            else if (c == '\n' || c == '\t') dst[o++] = c;
            else if (c == '\r') {
                dst[o++] = '\n';
                if (i < n && s[i] == '\n') i++;
            } else if (c == 0x1B && i < n && s[i] == '[') { /* an ANSI CSI sequence: ESC [ params final */
                size_t j = i + 1;
                while (j < n && s[j] >= 0x20 && s[j] <= 0x3F) j++;
                if (j < n && s[j] >= 0x40 && s[j] <= 0x7E) i = j + 1;
            }
            continue;
        }
        int32_t cp;
        size_t sub, len = utf8_decode(s + i, n - i, &cp, &sub);
        if (!len) { /* U+FFFD for the maximal invalid subpart */
            nbad += sub;
            i += sub;
            memcpy(dst + o, "\xEF\xBF\xBD", 3);
            o += 3;
            high = 1;
            marks = 0;
            continue;
        }
        if (cp <= 0x9F || cp == 0xFEFF) { /* C1 controls (NEL is a newline), BOM */
            if (cp == 0x85) dst[o++] = '\n', marks = 0;
            i += len;
            continue;
        }
        if (utf8proc_get_property(cp)->combining_class) {
            if (++marks > MAX_MARK_RUN) {
                i += len;
                continue;
            }
        } else marks = 0;
        memcpy(dst + o, s + i, len);
        o += len;
        i += len;
        high = 1;
    }
    *bad = nbad;
    *ascii = !high;
    return o;
}

/* A code point that NFKC leaves alone in any context: no decomposition,
 * combining class 0, and never the second of a composition pair: ASCII, the
 * CJK Unified Ideographs block, precomposed Hangul syllables. *len gets the
 * UTF-8 length at s[i] (valid UTF-8). */
static int nfkc_inert(const uint8_t *s, size_t i, size_t *len) {
    uint8_t b = s[i];
    if (b < 0x80) {
        *len = 1;
        return 1;
    }
    if (b < 0xE0 || b >= 0xF0) {
        *len = b < 0xE0 ? 2 : 4;
        return 0;
    }
    *len = 3;
    uint32_t cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
    return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3);
}

/* Runs of combining marks cut to MAX_MARK_RUN again after NFKC, in place
 * in valid UTF-8 p[0, n): a decomposition can lengthen a run (U+0344 is two
 * marks), and the result must be a fixed point of normalise. Dropping the
 * end of a run leaves NFKC text NFKC (what stays keeps its order and its
 * starter). Returns the new length. */
static size_t cap_marks(char *p, size_t n) {
    size_t o = 0;
    int marks = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp = (unsigned char)p[i];
        size_t len = 1, sub;
        if (cp >= 0x80 && !(len = utf8_decode((const uint8_t *)p + i, n - i, &cp, &sub))) len = sub;
        int keep = 1;
        if (cp >= 0x80 && utf8proc_get_property(cp)->combining_class) keep = ++marks <= MAX_MARK_RUN;
        else marks = 0;
        if (keep) {
            memmove(p + o, p + i, len);
            o += len;
        }
        i += len;
    }
    return o;
}

/* Step 2: NFKC of valid UTF-8 s[0, n) into *outlen bytes of an lm_alloc
 * block. NFKC works on stretches between "inert" characters (above): a
 * composition, a reordering or a decomposition never reaches across a
 * character that is its own NFKC, never combines with what precedes it and
 * has class 0, so the text is NFKC(stretch) and the inert runs copied as they
 * are. Each stretch takes the character before it along (it may be the
 * first of a composition, as 'e' before U+0301). utf8proc_decompose and
 * utf8proc_reencode are the two halves of utf8proc_map. */
static char *nfkc(const uint8_t *s, size_t n, size_t *outlen) {
    const utf8proc_option_t opt = UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_STABLE;
    size_t cap = n + n / 4 + 16, o = 0, bcap = 64;
    char *out = lm_alloc(cap);
    utf8proc_int32_t *buf = lm_alloc((bcap + 1) * sizeof *buf);
    for (size_t i = 0; i < n;) {
        size_t j = i, len;
        while (j < n && nfkc_inert(s, j, &len)) j += len;
        size_t k = j; /* the stretch starts at the character before j */
        if (j < n && j > i)
            for (k = j - 1; (s[k] & 0xC0) == 0x80; k--) {}
        size_t e = j;
        while (e < n && !nfkc_inert(s, e, &len)) e += len;
        /* copy [i, k), then NFKC of [k, e) */
        size_t r = 0;
        if (e > k) {
            utf8proc_ssize_t m;
            while ((m = utf8proc_decompose(s + k, (utf8proc_ssize_t)(e - k), buf, (utf8proc_ssize_t)bcap, opt)) >
                   (utf8proc_ssize_t)bcap) {
                bcap = (size_t)m;
                lm_free(buf);
                buf = lm_alloc((bcap + 1) * sizeof *buf);
            }
            if (m < 0) lm_abort(LM_ERR_RUNTIME, "clean: utf8proc_decompose: %s", utf8proc_errmsg(m));
            utf8proc_ssize_t b = utf8proc_reencode(buf, m, opt);
            if (b < 0) lm_abort(LM_ERR_RUNTIME, "clean: utf8proc_reencode: %s", utf8proc_errmsg(b));
            r = (size_t)b;
            if (m > MAX_MARK_RUN) r = cap_marks((char *)buf, r);
        }
        size_t need = (k - i) + r;
        if (o + need + 1 > cap) {
            cap = 2 * (o + need + 1);
            out = lm_realloc(out, cap);
        }
        memcpy(out + o, s + i, k - i);
        if (r) memcpy(out + o + (k - i), buf, r);
        o += need;
        i = e;
    }
    lm_free(buf);
    out[o] = 0;
    *outlen = o;
    return out;
}

/* Steps 1 and 2: the normalised text in an lm_alloc block. */
static char *normalise(const char *text, size_t len, size_t *outlen, size_t *bad) {
    const uint8_t *s = (const uint8_t *)text;
    /* the common case: printable ASCII, \n and \t only; NFKC is the identity */
    size_t i = 0;
    while (i < len && ((s[i] >= 0x20 && s[i] < 0x7F) || s[i] == '\n' || s[i] == '\t')) i++;
    if (i == len) {
        char *out = lm_alloc(len + 1);
        if (len) memcpy(out, text, len);
        *outlen = len;
        *bad = 0;
        return out;
    }
    if (len > ((size_t)1 << 40)) lm_abort(LM_ERR_RUNTIME, "clean: a document of %zu bytes", len);
    uint8_t *tmp = lm_alloc(3 * len + 4);
    int ascii;
    size_t n = sanitise(s, len, tmp, bad, &ascii);
    char *out;
    if (ascii) {
        out = lm_alloc(n + 1);
        if (n) memcpy(out, tmp, n);
        *outlen = n;
    } else
        out = nfkc(tmp, n, outlen);
    lm_free(tmp);
    return out;
}

void clean_normalise(const char *text, size_t len, char **out, size_t *outlen) {
    size_t bad;
    *out = normalise(text, len, outlen, &bad);
}

/* ---- 3. character classes, words, lines ---- */

enum { C_WS = 1, C_ALPHA = 2, C_DIGIT = 4, C_PUNCT = 8, C_CJK = 16, C_CJKWORD = 32 };

/* Han (with extensions, radicals, compatibility ideographs, 々 〇 and the
 * Hangzhou numerals), kana, Bopomofo: C_CJK | C_CJKWORD; Hangul: C_CJK. */
static int cjk_block(int32_t c) {
    if ((c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x3134F) ||
        (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2E80 && c <= 0x2FDF) || (c >= 0x3005 && c <= 0x3007) ||
        (c >= 0x3021 && c <= 0x3029) || (c >= 0x3038 && c <= 0x303B) || (c >= 0x3040 && c <= 0x30FF) ||
        (c >= 0x3100 && c <= 0x312F) || (c >= 0x31A0 && c <= 0x31FF) || (c >= 0x1B000 && c <= 0x1B16F))
        return C_CJK | C_CJKWORD;
    if ((c >= 0xAC00 && c <= 0xD7FF) || (c >= 0x1100 && c <= 0x11FF) || (c >= 0x3130 && c <= 0x318F) ||
        (c >= 0xA960 && c <= 0xA97F))
        return C_CJK;
    return 0;
}

static int classify(int32_t c) {
    if (c == '\n' || c == '\t') return C_WS;
    utf8proc_category_t k = utf8proc_category(c);
    int cl = 0;
    if (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) cl = C_ALPHA;
    else if (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO) cl = C_DIGIT;
    else if (k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_SO) return C_PUNCT;
    else if (k >= UTF8PROC_CATEGORY_ZS && k <= UTF8PROC_CATEGORY_ZP) return C_WS;
    else return 0;
    return cl | cjk_block(c);
}

/* The classes of the ASCII characters, filled once (pthread_once: clean_doc
 * runs in OpenMP loops). */
static unsigned char g_ascii[128];
static pthread_once_t g_ascii_once = PTHREAD_ONCE_INIT;
static void ascii_fill(void) {
    for (int c = 0; c < 128; c++) g_ascii[c] = (unsigned char)classify(c);
}
static void ascii_table(void) { pthread_once(&g_ascii_once, ascii_fill); }

/* Hash of n bytes for words and lines: lm_mix64 chained over 8-byte
 * chunks in native byte order (the last one zero-padded; the values only
 * meet each other inside one process), seeded with the length
 * so that padding cannot collide; 8 bytes per mix instead of FNV-1a's one
 * multiply per byte. */
static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = lm_mix64(LM_PHI64 * (n + 1));
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = lm_mix64(h ^ w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = lm_mix64(h ^ w);
    }
    return h;
}

typedef struct {
    uint64_t h;   /* hash of the trimmed line */
    uint32_t len; /* its characters */
} line_rec;

typedef struct {
    /* counts */
    size_t chars, nonws, alpha, digit, punct, cjk;
    size_t words, noncjk_words, noncjk_chars;
    size_t lines, ellipsis, bullet, line_chars;
    /* per word (when kept): hash and characters */
    uint64_t *wh;
    uint32_t *wl;
    size_t wcap;
    line_rec *ln;
    size_t lcap;
} doc_stats;

static void push_word(doc_stats *st, int keep, const char *t, size_t a, size_t b, size_t nch, int cjk) {
    st->words++;
    if (!cjk) {
        st->noncjk_words++;
        st->noncjk_chars += nch;
    }
    if (!keep) return;
    if (st->words > st->wcap) {
        st->wcap = 2 * st->wcap + 16;
        st->wh = lm_realloc(st->wh, st->wcap * sizeof *st->wh);
        st->wl = lm_realloc(st->wl, st->wcap * sizeof *st->wl);
    }
    st->wh[st->words - 1] = hash_bytes(t + a, b - a);
    st->wl[st->words - 1] = (uint32_t)(nch > UINT32_MAX ? UINT32_MAX : nch);
}

static int is_bullet(int32_t c) {
    switch (c) {
    case 0x2022: case 0x2023: case 0x2043: case 0x25A0: case 0x25A1: case 0x25AA: case 0x25AB: case 0x25B6:
    case 0x25B8: case 0x25BA: case 0x25CB: case 0x25CF: case 0x25E6: case 0x27A2: case 0x27A4: case 0x00B7:
        return 1;
    default: return 0;
    }
}

/* The line t[a, b) (trimmed, non-empty, nch characters). */
static void push_line(doc_stats *st, int keep, const char *t, size_t a, size_t b, size_t nch) {
    st->lines++;
    st->line_chars += nch;
    size_t n = b - a;
    if ((n >= 3 && !memcmp(t + b - 3, "...", 3)) || (n >= 3 && !memcmp(t + b - 3, "\xE2\x80\xA6", 3))) st->ellipsis++;
    unsigned char c = (unsigned char)t[a];
    if (c == '-' || c == '*' || c == '+') {
        if (n == 1 || t[a + 1] == ' ' || t[a + 1] == '\t') st->bullet++;
    } else if (c >= 0x80) {
        int32_t cp;
        size_t sub;
        if (utf8_decode((const uint8_t *)t + a, n, &cp, &sub) && is_bullet(cp)) st->bullet++;
    }
    if (!keep) return;
    if (st->lines > st->lcap) {
        st->lcap = 2 * st->lcap + 8;
        st->ln = lm_realloc(st->ln, st->lcap * sizeof *st->ln);
    }
    st->ln[st->lines - 1] = (line_rec){hash_bytes(t + a, n), (uint32_t)(nch > UINT32_MAX ? UINT32_MAX : nch)};
}

/* Step 3 over the normalised (valid UTF-8) text; words and lines kept in
 * arrays when keep_words / keep_lines. A run of non-space ASCII bytes (most
 * of most text) goes through a tight inner loop with branch-free counts;
 * every other character through the general path. */
static void scan(const char *t, size_t n, int keep_words, int keep_lines, doc_stats *st) {
    ascii_table();
    memset(st, 0, sizeof *st);
    const unsigned char *u = (const unsigned char *)t;
    if (keep_words) {
        st->wcap = n / 6 + 16;
        st->wh = lm_alloc(st->wcap * sizeof *st->wh);
        st->wl = lm_alloc(st->wcap * sizeof *st->wl);
    }
    if (keep_lines) {
        st->lcap = n / 40 + 8;
        st->ln = lm_alloc(st->lcap * sizeof *st->ln);
    }
    size_t nonws = 0, alpha = 0, digit = 0, punct = 0, cjk = 0;
    /* the current token; its core (punctuation trimmed) is bytes
     * [core_a, core_b) and characters [core_c0, core_c1) */
    int in_tok = 0, has_core = 0, tok_cjk = 0;
    size_t core_a = 0, core_b = 0, core_c0 = 0, core_c1 = 0;
    /* the current line: first and last non-space character likewise */
    int line_has = 0;
    size_t line_a = 0, line_b = 0, line_c0 = 0, line_c1 = 0;
    size_t chars = 0;
    for (size_t i = 0; i < n;) {
        unsigned char b = u[i];
        if (b < 0x80 && !(g_ascii[b] & C_WS)) { /* an ASCII run */
            size_t j = i, fa = SIZE_MAX, lb = 0, al = 0, di = 0, pu = 0;
            do {
                unsigned k = g_ascii[b];
                al += (k >> 1) & 1;
                di += (k >> 2) & 1;
                pu += (k >> 3) & 1;
                if (!(k & C_PUNCT)) {
                    fa = fa == SIZE_MAX ? j : fa;
                    lb = j + 1;
                }
                j++;
            } while (j < n && (b = u[j]) < 0x80 && !(g_ascii[b] & C_WS));
            size_t m = j - i;
            nonws += m, alpha += al, digit += di, punct += pu;
            if (!in_tok) {
                in_tok = 1;
                has_core = 0;
                tok_cjk = 0;
            }
            if (fa != SIZE_MAX) {
                if (!has_core) {
                    has_core = 1;
                    core_a = fa;
                    core_c0 = chars + (fa - i);
                }
                core_b = lb;
                core_c1 = chars + (lb - i);
            }
            if (!line_has) {
                line_has = 1;
                line_a = i;
                line_c0 = chars;
            }
            line_b = j;
            line_c1 = chars + m;
            chars += m;
            i = j;
            continue;
        }
        int32_t cp;
        size_t len;
        int cl;
        if (b < 0x80) {
            cp = b;
            len = 1;
            cl = g_ascii[b];
        } else {
            size_t sub;
            len = utf8_decode(u + i, n - i, &cp, &sub);
            if (!len) { /* cannot happen on normalised text; count it as other */
                len = sub;
                cp = 0xFFFD;
            }
            cl = classify(cp);
        }
        if (cl & C_WS) {
            if (in_tok && has_core) push_word(st, keep_words, t, core_a, core_b, core_c1 - core_c0, tok_cjk);
            in_tok = 0;
            if (cp == '\n') {
                if (line_has) push_line(st, keep_lines, t, line_a, line_b, line_c1 - line_c0);
                line_has = 0;
            }
        } else {
            nonws++;
            alpha += (cl & C_ALPHA) != 0;
            digit += (cl & C_DIGIT) != 0;
            punct += (cl & C_PUNCT) != 0;
            cjk += (cl & C_CJK) != 0;
            if (!line_has) {
                line_has = 1;
                line_a = i;
                line_c0 = chars;
            }
            line_b = i + len;
            line_c1 = chars + 1;
            if (cl & C_CJKWORD) { /* a word by itself */
                if (in_tok && has_core) push_word(st, keep_words, t, core_a, core_b, core_c1 - core_c0, tok_cjk);
                in_tok = 0;
                push_word(st, keep_words, t, i, i + len, 1, 1);
            } else {
                if (!in_tok) {
                    in_tok = 1;
                    has_core = 0;
                    tok_cjk = 0;
                }
                if (!(cl & C_PUNCT)) {
                    if (!has_core) {
                        has_core = 1;
                        core_a = i;
                        core_c0 = chars;
                    }
                    core_b = i + len;
                    core_c1 = chars + 1;
                    if (cl & C_CJK) tok_cjk = 1;
                }
            }
        }
        chars++;
        i += len;
    }
    if (in_tok && has_core) push_word(st, keep_words, t, core_a, core_b, core_c1 - core_c0, tok_cjk);
    if (line_has) push_line(st, keep_lines, t, line_a, line_b, line_c1 - line_c0);
    st->chars = chars;
    st->nonws = nonws, st->alpha = alpha, st->digit = digit, st->punct = punct, st->cjk = cjk;
}

/* ---- 4. repetition ---- */

static double frac(size_t a, size_t b) { return b ? (double)a / (double)b : 0.0; }

/* Open-addressing table of 64-bit keys (0 = empty) with a count and a
 * length per slot, in one block; capacity a power of two >= 2 x the keys
 * it will hold (load <= 1/2: short linear probes). */
typedef struct {
    uint64_t key;
    uint32_t cnt, len;
} hslot;

typedef struct {
    hslot *s;
    size_t mask;
} htab;

static void htab_init(htab *t, size_t keys) {
    size_t cap = 16;
    while (cap < 2 * keys) cap *= 2;
    t->s = lm_alloc(cap * sizeof *t->s);
    t->mask = cap - 1;
}

static void htab_clear(htab *t) { memset(t->s, 0, (t->mask + 1) * sizeof *t->s); }

static void htab_free(htab *t) { lm_free(t->s); }

/* The slot of key k, inserted (count 0, length len) when new. */
static hslot *htab_slot(htab *t, uint64_t k, uint32_t len) {
    if (!k) k = 1;
    size_t i = (size_t)(k ^ (k >> 29)) & t->mask;
    while (t->s[i].key && t->s[i].key != k) i = (i + 1) & t->mask;
    hslot *h = &t->s[i];
    if (!h->key) {
        h->key = k;
        h->len = len;
    }
    return h;
}

/* Duplicated lines: lines equal to an earlier line, and their characters. */
static void dup_lines(const doc_stats *st, double *v_lines, double *v_chars) {
    htab t;
    htab_init(&t, st->lines);
    size_t dup = 0, dchars = 0;
    for (size_t i = 0; i < st->lines; i++) {
        if (htab_slot(&t, st->ln[i].h, st->ln[i].len)->cnt++) {
            dup++;
            dchars += st->ln[i].len;
        }
    }
    htab_free(&t);
    *v_lines = frac(dup, st->lines);
    *v_chars = frac(dchars, st->line_chars);
}

/* Multiplier of the polynomial hash over word hashes (odd). */
#define POLY_B 0x100000001B3ull

/* The n-gram rules. Gram (i, n) covers words [i, i+n); its polynomial hash
 * g(i, n) = sum_j wh[i+j] B^(n-1-j) (mod 2^64) extends by one word as
 * g(i, n+1) = g(i, n) B + wh[i+n], and its table key is lm_mix64(g + n).
 * P[] are prefix sums of the word lengths.
 * top: for n = 2..4, (count x chars) of the most frequent gram (count >= 2)
 *      over all word characters, divided by the rule's factor for n;
 * dup: for n = 5..10, the characters of the union of every occurrence of a
 *      gram that occurs twice or more (swept left to right: each occurrence
 *      adds the part beyond the furthest word covered so far), likewise.
 * The values are the maxima over n, comparable with the 2-gram / 5-gram
 * threshold.
 * Gram (i, n+1) can occur twice only where gram (i, n) does, so pass n+1
 * visits only the positions whose n-gram repeated (the candidates): natural
 * text repeats few 3-grams and fewer 5-grams, and the passes shrink fast;
 * each pass is at most linear in the words. */
static void ngrams(const doc_stats *st, double *v_top, double *v_dup) {
    size_t W = st->words;
    *v_top = *v_dup = 0;
    if (W < 2) return;
    uint64_t *P = lm_alloc((W + 1) * sizeof *P);
    for (size_t i = 0; i < W; i++) P[i + 1] = P[i] + st->wl[i];
    uint64_t total = P[W];
    size_t nc = W - 1; /* candidates: the start positions of 2-grams */
    size_t *cand = lm_alloc(nc * sizeof *cand);
    uint64_t *gh = lm_alloc(nc * sizeof *gh);
    hslot **slot = lm_alloc(nc * sizeof *slot);
    for (size_t i = 0; i < nc; i++) {
        cand[i] = i;
        gh[i] = st->wh[i];
    }
    htab t;
    htab_init(&t, nc);
    const size_t full_mask = t.mask;
    for (size_t n = 2; n <= 10 && nc; n++) {
        /* a table for nc keys (the block allocated for the first pass) */
        size_t cap = 16;
        while (cap < 2 * nc) cap *= 2;
        t.mask = cap - 1 < full_mask ? cap - 1 : full_mask;
        htab_clear(&t);
        uint32_t best_c = 0;
        uint64_t best_len = 0;
        for (size_t c = 0; c < nc; c++) {
            size_t i = cand[c];
            gh[c] = gh[c] * POLY_B + st->wh[i + n - 1];
            uint64_t glen = P[i + n] - P[i];
            hslot *h = htab_slot(&t, lm_mix64(gh[c] + n), (uint32_t)(glen > UINT32_MAX ? UINT32_MAX : glen));
            uint32_t k = ++h->cnt;
            slot[c] = h;
            if (k > best_c || (k == best_c && glen > best_len)) {
                best_c = k;
                best_len = glen;
            }
        }
        if (n <= 4) {
            double f = best_c >= 2 ? (double)best_c * (double)best_len / (double)total : 0.0;
            double factor = 1.0 - 0.1 * (double)(n - 2); /* 1, 0.9, 0.8 */
            if (total && f / factor > *v_top) *v_top = f / factor;
        } else {
            uint64_t covered = 0;
            size_t reach = 0; /* words [0, reach) are accounted for */
            for (size_t c = 0; c < nc; c++) {
                size_t i = cand[c];
                if (slot[c]->cnt >= 2 && i + n > reach) {
                    covered += P[i + n] - P[i > reach ? i : reach];
                    reach = i + n;
                }
            }
            double f = frac(covered, total);
            double factor = (double)(15 - (n - 5)) / 15.0; /* 1, 14/15, ... 10/15 */
            if (f / factor > *v_dup) *v_dup = f / factor;
        }
        /* the next candidates: repeated here, and room for one more word */
        size_t m = 0;
        for (size_t c = 0; c < nc; c++)
            if (slot[c]->cnt >= 2 && cand[c] + n < W) {
                cand[m] = cand[c];
                gh[m++] = gh[c];
            }
        nc = m;
    }
    t.mask = full_mask;
    htab_free(&t);
    lm_free(slot);
    lm_free(gh);
    lm_free(cand);
    lm_free(P);
}

/* ---- measuring and judging ---- */

/* Rule values vals[0 .. upto) from the counts (rules before the repetition
 * ones). */
static void basic_values(const doc_stats *st, size_t inlen, size_t bad, double *v) {
    v[CLEAN_INVALID_UTF8] = frac(bad, inlen);
    v[CLEAN_MIN_CHARS] = v[CLEAN_MAX_CHARS] = (double)st->chars;
    v[CLEAN_MIN_WORDS] = v[CLEAN_MAX_WORDS] = (double)st->words;
    double mwl;
    if (!st->words) mwl = 0;
    else if (2 * st->noncjk_words < st->words) mwl = NAN; /* mostly CJK: not applied */
    else mwl = (double)st->noncjk_chars / (double)st->noncjk_words;
    v[CLEAN_MIN_MEAN_WORD_LEN] = v[CLEAN_MAX_MEAN_WORD_LEN] = mwl;
    v[CLEAN_MIN_ALPHA_FRAC] = frac(st->alpha, st->nonws);
    v[CLEAN_MAX_DIGIT_FRAC] = frac(st->digit, st->nonws);
    v[CLEAN_MAX_PUNCT_FRAC] = frac(st->punct, st->nonws);
    v[CLEAN_MIN_CJK_FRAC] = frac(st->cjk, st->nonws);
    v[CLEAN_MAX_ELLIPSIS_LINE_FRAC] = frac(st->ellipsis, st->lines);
    v[CLEAN_MAX_BULLET_LINE_FRAC] = frac(st->bullet, st->lines);
}

static void stats_free(doc_stats *st) {
    lm_free(st->wh);
    lm_free(st->wl);
    lm_free(st->ln);
}

/* Normalise, measure and judge: with thr, stop at the first rule broken and
 * return it (-1: none); without, fill every value (n-grams if `ngr`). */
static int run(const double *thr, int ngr, const char *text, size_t len, double *v, char **out, size_t *outlen) {
    size_t bad, n;
    char *t = normalise(text, len, &n, &bad);
    *out = t;
    *outlen = n;
    int need_lines = !thr || thr[CLEAN_MAX_DUP_LINE_FRAC] || thr[CLEAN_MAX_DUP_LINE_CHAR_FRAC];
    int need_words = thr ? (thr[CLEAN_MAX_TOP_NGRAM_FRAC] || thr[CLEAN_MAX_DUP_NGRAM_FRAC]) : ngr;
    doc_stats st;
    scan(t, n, need_words, need_lines, &st);
    basic_values(&st, len, bad, v);
    int rej = -1;
    for (int r = 0; r < CLEAN_MAX_DUP_LINE_FRAC && thr && rej < 0; r++)
        if (breaks(r, v[r], thr[r])) rej = r;
    if (rej < 0 && need_lines) {
        dup_lines(&st, &v[CLEAN_MAX_DUP_LINE_FRAC], &v[CLEAN_MAX_DUP_LINE_CHAR_FRAC]);
        for (int r = CLEAN_MAX_DUP_LINE_FRAC; r <= CLEAN_MAX_DUP_LINE_CHAR_FRAC && thr && rej < 0; r++)
            if (breaks(r, v[r], thr[r])) rej = r;
    } else v[CLEAN_MAX_DUP_LINE_FRAC] = v[CLEAN_MAX_DUP_LINE_CHAR_FRAC] = 0;
    if (rej < 0 && need_words) {
        ngrams(&st, &v[CLEAN_MAX_TOP_NGRAM_FRAC], &v[CLEAN_MAX_DUP_NGRAM_FRAC]);
        for (int r = CLEAN_MAX_TOP_NGRAM_FRAC; r <= CLEAN_MAX_DUP_NGRAM_FRAC && thr && rej < 0; r++)
            if (breaks(r, v[r], thr[r])) rej = r;
    } else v[CLEAN_MAX_TOP_NGRAM_FRAC] = v[CLEAN_MAX_DUP_NGRAM_FRAC] = 0;
    stats_free(&st);
    return rej;
}

void clean_measure(const char *text, size_t len, int ngrams_too, double *vals, char **out, size_t *outlen) {
    run(NULL, ngrams_too, text, len, vals, out, outlen);
}

/* ---- rule sets and the rules file ---- */

struct lm_clean {
    double def[CLEAN_NRULES];
    int ncat;
    char **cat;
    double (*cv)[CLEAN_NRULES];
};

static const double *thresholds(const lm_clean *c, const char *category) {
    if (category)
        for (int i = 0; i < c->ncat; i++)
            if (!strcmp(c->cat[i], category)) return c->cv[i];
    return c->def;
}

double clean_threshold(const lm_clean *c, const char *category, int r) {
    return r >= 0 && r < CLEAN_NRULES ? thresholds(c, category)[r] : 0;
}

int clean_doc(const lm_clean *c, const char *category, const char *text, size_t len, char **out, size_t *outlen) {
    double v[CLEAN_NRULES];
    return run(thresholds(c, category), 1, text, len, v, out, outlen);
}

/* A value as text in the rules file: a number of the key's kind, or "off". */
static const char *parse_value(int kind, const char *v, double *out) {
    if (!strcasecmp(v, "off")) {
        *out = 0;
        return NULL;
    }
    static const char *const why[] = {"must be a whole number >= 0, or off", "must be a number >= 0, or off",
                                      "must be a number in [0, 1], or off"};
    if (!*v || v[strspn(v, "0123456789.eE+-")]) return why[kind]; /* decimal only: no hex, inf, nan */
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    if (*e || errno == ERANGE || !isfinite(x) || x < 0) return why[kind];
    if (kind == K_COUNT && (x != floor(x) || x > 1e15)) return why[kind];
    if (kind == K_LEN && x > 1e6) return why[kind];
    if (kind == K_FRAC && x > 1) return why[kind];
    *out = x;
    return NULL;
}

static const char *check_count(const char *v, char *why, size_t wn) {
    double x;
    (void)why, (void)wn;
    return parse_value(K_COUNT, v, &x);
}
static const char *check_len(const char *v, char *why, size_t wn) {
    double x;
    (void)why, (void)wn;
    return parse_value(K_LEN, v, &x);
}
static const char *check_frac(const char *v, char *why, size_t wn) {
    double x;
    (void)why, (void)wn;
    return parse_value(K_FRAC, v, &x);
}

/* Each key's value is kept as text (VALW bytes) and converted after the
 * parse, so that `off` and the per-kind rules get one message format. */
#define VALW 32
#define KEY(r, chk)                                                                                          \
    {.sec = NULL, .type = INI_STRING, .off = (r) * VALW, .size = VALW, .check = chk}

static void init_keys(lm_ini_key *k) {
    for (int r = 0; r < CLEAN_NRULES; r++) {
        k[r] = (lm_ini_key)KEY(r, RULES[r].kind == K_COUNT ? check_count : RULES[r].kind == K_LEN ? check_len
                                                                                                   : check_frac);
        k[r].name = RULES[r].name;
    }
}

#define CAT_PREFIX "category."
#define CAT_MAX 40 /* inih keeps 49 bytes of a section name */

/* The section headers of the text, found as core/ini.c's reader finds them
 * (BOM, leading space, comments), so that the schema can list them. Returns
 * 0 with the distinct names in *names (lm_alloc'ed), or 2 with err for a
 * section other than [default] and [category.NAME]. */
static int scan_sections(const char *text, const char *name, char ***names, int *count, char *err, size_t errlen) {
    int n = 0, cap = 8;
    char **v = lm_alloc((size_t)cap * sizeof *v);
    const char *p = text, *end = text + strlen(text);
    for (int lineno = 1; p < end; lineno++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *e = nl ? nl : end;
        p = nl ? nl + 1 : end;
        if (lineno == 1 && e - s >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3;
        while (s < e && isspace((unsigned char)*s)) s++;
        for (const char *q = s; q < e; q++)
            if ((*q == ';' || *q == '#') && (q == s || isspace((unsigned char)q[-1]))) {
                e = q;
                break;
            }
        if (s >= e || *s != '[') continue;
        const char *rb = memchr(s, ']', (size_t)(e - s));
        if (!rb) continue; /* inih reports the syntax error */
        const char *a = s + 1;
        size_t len = (size_t)(rb - a), pl = strlen(CAT_PREFIX);
        int ok = (len == 7 && !memcmp(a, "default", 7));
        const char *bad = "unknown section";
        if (!ok && len > pl && !memcmp(a, CAT_PREFIX, pl)) {
            ok = len - pl <= CAT_MAX;
            for (size_t i = pl; i < len && ok; i++)
                if ((unsigned char)a[i] <= ' ' || a[i] == 0x7f) ok = 0;
            bad = len - pl > CAT_MAX ? "category name longer than " "40" " characters in section"
                                     : "whitespace or a control character in the category name of section";
        }
        if (!ok) {
            int k = len > 64 ? 64 : (int)len;
            for (int i = 0; i < n; i++) lm_free(v[i]);
            lm_free(v);
            return lm_err(err, errlen, LM_ERR_INPUT,
                          "clean rules %s:%d: %s [%.*s%s] (known: [default], [category.NAME])", name, lineno, bad, k,
                          a, len > 64 ? "..." : "");
        }
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = strlen(v[i]) == len && !memcmp(v[i], a, len);
        if (dup) continue;
        if (n == cap) v = lm_realloc(v, (size_t)(cap *= 2) * sizeof *v);
        v[n] = lm_alloc(len + 1);
        memcpy(v[n], a, len);
        n++;
    }
    *names = v;
    *count = n;
    return 0;
}

static lm_clean *builtin(void) {
    lm_clean *c = lm_alloc(sizeof *c);
    for (int r = 0; r < CLEAN_NRULES; r++) c->def[r] = RULES[r].def;
    return c;
}

lm_clean *clean_load_text(const char *text, const char *name, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    char **sec = NULL;
    int nsec = 0;
    if (scan_sections(text, name, &sec, &nsec, err, errlen)) return NULL;
    lm_ini_key keys[CLEAN_NRULES];
    init_keys(keys);
    lm_ini_schema schema = {.what = "clean rules", .keys = keys, .nkeys = CLEAN_NRULES,
                            .sections = (const char *const *)sec, .nsections = nsec,
                            .size = CLEAN_NRULES * VALW};
    lm_ini_dest *d = lm_alloc((size_t)(nsec ? nsec : 1) * sizeof *d);
    for (int i = 0; i < nsec; i++) {
        d[i].section = sec[i];
        d[i].base = lm_alloc(schema.size);
        d[i].line = lm_alloc(CLEAN_NRULES * sizeof(int));
    }
    lm_clean *c = NULL;
    if (!lm_ini_parse(&schema, text, name, d, nsec, err, errlen)) {
        c = builtin();
        /* [default] first, then each category over it */
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < nsec; i++) {
                int is_def = !strcmp(sec[i], "default");
                if (is_def != (pass == 0)) continue;
                double *dst = c->def;
                if (!is_def) {
                    c->cat = lm_realloc(c->cat, (size_t)(c->ncat + 1) * sizeof *c->cat);
                    c->cv = lm_realloc(c->cv, (size_t)(c->ncat + 1) * sizeof *c->cv);
                    c->cat[c->ncat] = lm_strdup(sec[i] + strlen(CAT_PREFIX));
                    memcpy(c->cv[c->ncat], c->def, sizeof c->def);
                    dst = c->cv[c->ncat++];
                }
                for (int r = 0; r < CLEAN_NRULES; r++)
                    if (d[i].line[r] > 0 &&
                        parse_value(RULES[r].kind, (const char *)d[i].base + r * VALW, &dst[r]))
                        lm_abort(LM_ERR_RUNTIME, "clean: %s passed its check but not its conversion", RULES[r].name);
            }
    }
    for (int i = 0; i < nsec; i++) {
        lm_free(d[i].base);
        lm_free(d[i].line);
        lm_free(sec[i]);
    }
    lm_free(d);
    lm_free(sec);
    return c;
}

lm_clean *clean_load(const char *path, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!path || !strcmp(path, "default")) return builtin();
    char *text;
    if (lm_ini_read_file(path, "clean rules", &text, err, errlen)) return NULL;
    lm_clean *c = clean_load_text(text, path, err, errlen);
    lm_free(text);
    return c;
}

void clean_free(lm_clean *c) {
    if (!c) return;
    for (int i = 0; i < c->ncat; i++) lm_free(c->cat[i]);
    lm_free(c->cat);
    lm_free(c->cv);
    lm_free(c);
}
