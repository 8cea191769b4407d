/* test_clean.c — document cleaning (src/data/clean.h): every rule on crafted
 * documents just inside and just outside its threshold (the rule alone
 * switched on, so that no other rule decides), the rule values against hand
 * computation, the normalisation (NFKC, control characters, ANSI sequences,
 * invalid UTF-8, combining runs), per-category thresholds, rules-file errors
 * naming FILE:LINE and the key, clean_doc from several threads against the
 * serial answers, and a deterministic mutation fuzz of the rules parser and
 * of clean_doc (never a crash, always valid UTF-8 out; run it under ASan +
 * UBSan: build/san/tests/test_clean). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clean.h"
#include "common.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <utf8proc.h>

static char g_dir[64];

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/lamina_clean_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ---- */

/* xorshift64: the tests' fixed-seed generator */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static int rndn_(int n) { return (int)(rnd() % (uint64_t)n); }

/* A growing text buffer. */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)w + 1 > b->cap) {
        b->cap = 2 * (b->n + (size_t)w + 1);
        b->p = realloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)w + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)w;
}

static void rep(sbuf *b, const char *s, int times) {
    for (int i = 0; i < times; i++) put(b, "%s", s);
}

static void reset(sbuf *b) {
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

/* The i-th distinct word of `len` letters from f..y (never "ab", "cd", "x"). */
static const char *uword(int i, int len) {
    static char w[16];
    for (int k = len - 1; k >= 0; k--) {
        w[k] = (char)('f' + i % 20);
        i /= 20;
    }
    w[len] = 0;
    return w;
}

/* A rule set with only rule r on, at threshold v. */
static lm_clean *only(int r, const char *v) {
    sbuf b = {0};
    put(&b, "[default]\n");
    for (int k = 0; k < clean_n_rules(); k++) put(&b, "%s = %s\n", clean_rule_name(k), k == r ? v : "off");
    char err[LM_ERRLEN];
    lm_clean *c = clean_load_text(b.p, "only", err, sizeof err);
    if (!c) fprintf(stderr, "%s\n", err);
    assert_non_null(c);
    free(b.p);
    return c;
}

/* clean_doc's verdict on s (NUL-terminated) for category NULL. */
static int judge(const lm_clean *c, const char *s) {
    char *out;
    size_t n;
    int r = clean_doc(c, NULL, s, strlen(s), &out, &n);
    lm_free(out);
    return r;
}

/* The value of rule r for s. */
static double value(const char *s, int r) {
    double v[CLEAN_NRULES];
    char *out;
    size_t n;
    clean_measure(s, strlen(s), 1, v, &out, &n);
    lm_free(out);
    return v[r];
}

static char *norm(const char *s, size_t len, size_t *n) {
    char *out;
    clean_normalise(s, len, &out, n);
    return out;
}

/* Valid UTF-8 (utf8proc's decoder), no NUL inside: the code points, or -1. */
static long valid_utf8(const char *s, size_t n) {
    long cps = 0;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0 || cp == 0) return -1;
        i += (size_t)k;
        cps++;
    }
    return cps;
}

/* ---- the rule list and the defaults ---- */

static void test_builtin(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    assert_int_equal(clean_n_rules(), CLEAN_NRULES);
    for (int r = 0; r < CLEAN_NRULES; r++)
        for (int k = r + 1; k < CLEAN_NRULES; k++) assert_string_not_equal(clean_rule_name(r), clean_rule_name(k));
    assert_string_equal(clean_rule_name(CLEAN_MIN_WORDS), "min_words");
    assert_string_equal(clean_rule_name(CLEAN_MAX_DUP_LINE_FRAC), "max_dup_line_frac");
    assert_string_equal(clean_rule_name(-1), "?");
    lm_clean *a = clean_load(NULL, err, sizeof err), *b = clean_load("default", err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    for (int r = 0; r < CLEAN_NRULES; r++) assert_true(clean_threshold(a, NULL, r) == clean_threshold(b, "x", r));
    assert_true(clean_threshold(a, NULL, CLEAN_MIN_WORDS) == 50);
    assert_true(clean_threshold(a, NULL, CLEAN_MAX_DUP_LINE_FRAC) == 0.3);
    assert_true(clean_threshold(a, NULL, CLEAN_MIN_CJK_FRAC) == 0);
    /* an ordinary paragraph passes every default rule */
    const char *para =
        "The committee met on Tuesday to discuss the new library. After a long debate about the budget, the\n"
        "members agreed that the reading room should open in the spring, and that the old building would be\n"
        "repaired rather than replaced. Several residents spoke in favour of longer opening hours, especially\n"
        "on weekends, when families have more time to visit. The chair thanked everyone for their patience\n"
        "and promised a full report at the next meeting, which will take place early in March.\n";
    assert_int_equal(judge(a, para), -1);
    /* the first rule broken is the one reported: too short AND full of digits */
    assert_int_equal(judge(a, "1234 5678 9012 word"), CLEAN_MIN_WORDS);
    /* the same paragraph ten times: repetition */
    sbuf s = {0};
    rep(&s, para, 10);
    assert_int_equal(judge(a, s.p), CLEAN_MAX_DUP_LINE_FRAC);
    free(s.p);
    clean_free(a);
    clean_free(b);
    clean_free(NULL);
}

/* ---- normalisation ---- */

static void expect_norm(const char *in, size_t inlen, const char *want) {
    size_t n;
    char *out = norm(in, inlen, &n);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], 0);
    /* idempotent */
    size_t n2;
    char *again = norm(out, n, &n2);
    assert_int_equal(n2, n);
    assert_memory_equal(again, out, n);
    lm_free(again);
    lm_free(out);
}

/* a literal's bytes (with any NUL inside) */
#define EXPECT_NORM(lit, want) expect_norm(lit, sizeof(lit) - 1, want)

static void test_normalise(void **state) {
    (void)state;
    EXPECT_NORM("", "");
    EXPECT_NORM("plain ASCII\n\twith tab", "plain ASCII\n\twith tab");
    /* NFKC: fullwidth letters and digits, ligatures, ellipsis, superscripts,
     * no-break space, ideographic space, halfwidth katakana, a composed é
     * from e + U+0301, Kangxi radical to the unified ideograph */
    EXPECT_NORM("\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3\xEF\xBC\x91\xEF\xBC\x92", "ABC12");
    EXPECT_NORM("\xEF\xAC\x81nd \xEF\xAC\x82ow", "find flow");
    EXPECT_NORM("wait\xE2\x80\xA6", "wait...");
    EXPECT_NORM("x\xC2\xB2 a\xC2\xA0" "b\xE3\x80\x80" "c", "x2 a b c");
    EXPECT_NORM("\xEF\xBD\xB6", "\xE3\x82\xAB");
    EXPECT_NORM("caf" "e\xCC\x81", "caf\xC3\xA9");
    EXPECT_NORM("\xE2\xBC\x80", "\xE4\xB8\x80");
    /* compositions whose first character NFKC leaves alone (ASCII, Han,
     * Hangul syllables are copied in runs; the character before a stretch
     * that needs utf8proc goes with it) */
    EXPECT_NORM("abce\xCC\x81\xCC\xA3 x", "abc\xE1\xBA\xB9\xCC\x81 x"); /* e acute dot-below: reordered, U+1EB9 U+0301 */
    EXPECT_NORM("가\xE1\x86\xA8", "각");                            /* LV syllable + final jamo */
    EXPECT_NORM("中\xEF\xA4\x80文", "中\xE8\xB1\x88文");               /* U+F900 -> U+8C48 */
    EXPECT_NORM("か\xE3\x82\x99", "が");                             /* kana + voiced mark */
    EXPECT_NORM("\xEF\xBD\xB6\xEF\xBE\x9E", "ガ");                  /* halfwidth ｶﾞ */
    EXPECT_NORM("中文，（注）：", "中文,(注):");                          /* fullwidth punctuation */
    /* control characters: C0 (not \n \t), DEL, NUL, C1; CR LF and CR to LF,
     * NEL to LF; BOM gone; ANSI colour sequences gone whole */
    EXPECT_NORM("a\x01" "b\x7f" "c\r\nd\re\xC2\x85" "f\xC2\x80g", "abc\nd\ne\nfg");
    EXPECT_NORM("n\0ul", "nul");
    EXPECT_NORM("\xEF\xBB\xBFstart", "start");
    EXPECT_NORM("\x1b[31;1mred\x1b[0m and \x1b[mplain\x1b", "red and plain");
    /* invalid UTF-8: one U+FFFD per maximal invalid subpart */
    EXPECT_NORM("a\xFF" "b", "a\xEF\xBF\xBD" "b");
    EXPECT_NORM("a\xE4\xB8", "a\xEF\xBF\xBD");                                  /* truncated */
    EXPECT_NORM("\xC0\xAF", "\xEF\xBF\xBD\xEF\xBF\xBD");                        /* overlong */
    EXPECT_NORM("\xED\xA0\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");        /* surrogate */
    EXPECT_NORM("\xF4\x90\x80\x80", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* > 10FFFF */
    EXPECT_NORM("\xE4\xB8\xAD\xE6\x96", "\xE4\xB8\xAD\xEF\xBF\xBD");
    /* the invalid bytes are what rule max_invalid_utf8_frac measures */
    assert_true(fabs(value("ok\xFF\xFE" "fine", CLEAN_INVALID_UTF8) - 2.0 / 8.0) < 1e-12);
    assert_true(value("clean text", CLEAN_INVALID_UTF8) == 0);
    /* a run of 200000 combining marks: cut to 30, in linear time */
    size_t big = 1 + 2 * 200000;
    char *z = malloc(big);
    z[0] = 'a';
    for (size_t i = 1; i < big; i += 2) z[i] = '\xCC', z[i + 1] = '\x81';
    size_t n;
    char *out = norm(z, big, &n);
    assert_int_equal(valid_utf8(out, n), 30); /* U+00E1 and 29 more U+0301 */
    assert_memory_equal(out, "\xC3\xA1\xCC\x81", 4);
    lm_free(out);
    free(z);
    /* 40 x U+0344, each two marks after NFKC: cut again after NFKC, so
     * that normalised text stays a fixed point (expect_norm checks it) */
    sbuf b = {0};
    put(&b, "a");
    rep(&b, "\xCD\x84", 40);
    sbuf w = {0};
    put(&w, "\xC3\xA4\xCC\x81"); /* a + U+0308 composes; then U+0301, and 29 more marks */
    for (int i = 0; i < 29; i++) put(&w, i % 2 ? "\xCC\x81" : "\xCC\x88");
    expect_norm(b.p, b.n, w.p);
    free(b.p);
    free(w.p);
}

/* NFKC by stretches (clean.c copies ASCII, Han and Hangul syllables as they
 * are) against utf8proc_map's NFKC of the whole, on random strings from a
 * pool of characters that compose, decompose, reorder or stay. */
static void test_nfkc_stretches(void **state) {
    (void)state;
    static const int32_t pool[] = {
        'a', 'e', 'o', 'A', ' ', '\n', '1', '.',              /* ASCII (e, o, A compose with marks) */
        0x4E2D, 0x6587, 0x8C48,                            /* Han */
        0xAC00, 0xAC01, 0xB098,                            /* Hangul LV, LVT, LV syllables */
        0x1100, 0x1161, 0x11A8, 0x3131,                    /* jamo L, V, T; compatibility jamo */
        0x0301, 0x0300, 0x0323, 0x0308, 0x0344, 0x0345, 0x031B, 0x05B0, 0x0E38, /* marks, classes 220-240 */
        0x304B, 0x3099, 0x309A, 0x30AB, 0xFF76, 0xFF9E,    /* kana, voiced marks, halfwidth */
        0xFF21, 0xFF0C, 0xFB01, 0xFDFA, 0xF900, 0x2F00,    /* fullwidth, ligature, long, compat ideographs */
        0x00C5, 0x212B, 0x1E9B, 0x0958, 0x00BD, 0x2126,    /* singletons and exclusions */
        0x1F600, 0x00E9, 0x0065,
    };
    const int np = (int)(sizeof pool / sizeof *pool);
    char s[400];
    int diff = 0;
    for (int it = 0; it < 5000; it++) {
        size_t n = 0;
        int len = 1 + rndn_(40);
        for (int k = 0; k < len; k++) n += (size_t)utf8proc_encode_char(pool[rndn_(np)], (utf8proc_uint8_t *)s + n);
        utf8proc_uint8_t *ref;
        utf8proc_ssize_t rn = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &ref,
                                           UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_STABLE);
        assert_true(rn >= 0);
        size_t on;
        char *out = norm(s, n, &on);
        if (on != (size_t)rn || memcmp(out, ref, on)) {
            if (diff++ < 3) fprintf(stderr, "differs: %.*s -> %s, utf8proc_map %s\n", (int)n, s, out, ref);
        }
        lm_free(out);
        free(ref);
    }
    assert_int_equal(diff, 0);
}

/* ---- each rule just inside and just outside its threshold ---- */

static void test_rule_invalid_utf8(void **state) {
    (void)state;
    lm_clean *c = only(CLEAN_INVALID_UTF8, "0.01");
    sbuf s = {0};
    rep(&s, "a", 99);
    put(&s, "\xFF"); /* 1 of 100 bytes */
    assert_int_equal(judge(c, s.p), -1);
    reset(&s);
    rep(&s, "a", 98);
    put(&s, "\xFF"); /* 1 of 99 */
    assert_int_equal(judge(c, s.p), CLEAN_INVALID_UTF8);
    free(s.p);
    clean_free(c);
}

static void test_rule_chars(void **state) {
    (void)state;
    lm_clean *lo = only(CLEAN_MIN_CHARS, "100"), *hi = only(CLEAN_MAX_CHARS, "100");
    sbuf s = {0};
    rep(&s, "\xC3\xA9", 100); /* 100 characters, 200 bytes: characters count */
    assert_int_equal(judge(lo, s.p), -1);
    assert_int_equal(judge(hi, s.p), -1);
    reset(&s);
    rep(&s, "\xC3\xA9", 99);
    assert_int_equal(judge(lo, s.p), CLEAN_MIN_CHARS);
    reset(&s);
    rep(&s, "ab \n", 25);
    put(&s, "x");
    assert_int_equal(judge(hi, s.p), CLEAN_MAX_CHARS); /* 101, whitespace included */
    /* characters are counted after normalisation: 100 CR LF pairs are 100 */
    reset(&s);
    rep(&s, "\r\n", 100);
    assert_int_equal(judge(hi, s.p), -1);
    free(s.p);
    clean_free(lo);
    clean_free(hi);
}

static void test_rule_words(void **state) {
    (void)state;
    lm_clean *lo = only(CLEAN_MIN_WORDS, "50"), *hi = only(CLEAN_MAX_WORDS, "50");
    sbuf s = {0};
    for (int i = 0; i < 50; i++) put(&s, "%s%s", uword(i, 3), i % 7 == 6 ? ",\n" : " ");
    assert_int_equal(judge(lo, s.p), -1);
    assert_int_equal(judge(hi, s.p), -1);
    put(&s, "extra");
    assert_int_equal(judge(hi, s.p), CLEAN_MAX_WORDS);
    /* punctuation-only tokens are no words */
    reset(&s);
    for (int i = 0; i < 49; i++) put(&s, "%s -- ", uword(i, 3));
    put(&s, "... !!! (\"\")");
    assert_int_equal(judge(lo, s.p), CLEAN_MIN_WORDS);
    /* each Han character or kana is a word; a Hangul token is one word */
    reset(&s);
    rep(&s, "\xE4\xB8\xAD", 30);   /* 30 x 中 */
    rep(&s, "\xE3\x81\x82", 19);   /* 19 x あ */
    put(&s, " \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4"); /* 한국어: 1 word */
    assert_int_equal(judge(lo, s.p), -1);
    assert_true(value(s.p, CLEAN_MIN_WORDS) == 50);
    reset(&s);
    rep(&s, "\xE4\xB8\xAD\xE3\x80\x82", 49); /* 中。 x 49: the full stop is no word */
    assert_int_equal(judge(lo, s.p), CLEAN_MIN_WORDS);
    free(s.p);
    clean_free(lo);
    clean_free(hi);
}

static void test_rule_mean_word_len(void **state) {
    (void)state;
    lm_clean *lo = only(CLEAN_MIN_MEAN_WORD_LEN, "3"), *hi = only(CLEAN_MAX_MEAN_WORD_LEN, "10");
    sbuf s = {0};
    for (int i = 0; i < 10; i++) put(&s, "(%s), ", uword(i, 3)); /* trimmed to 3 */
    assert_int_equal(judge(lo, s.p), -1);
    assert_true(value(s.p, CLEAN_MIN_MEAN_WORD_LEN) == 3);
    reset(&s);
    for (int i = 0; i < 9; i++) put(&s, "%s ", uword(i, 3));
    put(&s, "ab");
    assert_true(fabs(value(s.p, CLEAN_MIN_MEAN_WORD_LEN) - 2.9) < 1e-12);
    assert_int_equal(judge(lo, s.p), CLEAN_MIN_MEAN_WORD_LEN);
    reset(&s);
    for (int i = 0; i < 10; i++) put(&s, "%s ", uword(i, 10));
    assert_int_equal(judge(hi, s.p), -1);
    put(&s, "%s", uword(10, 11));
    assert_true(fabs(value(s.p, CLEAN_MAX_MEAN_WORD_LEN) - 111.0 / 11.0) < 1e-12);
    assert_int_equal(judge(hi, s.p), CLEAN_MAX_MEAN_WORD_LEN);
    /* mostly CJK words: not applied */
    reset(&s);
    rep(&s, "\xE4\xB8\xAD", 20);
    rep(&s, " ab", 19);
    assert_true(isnan(value(s.p, CLEAN_MIN_MEAN_WORD_LEN)));
    assert_int_equal(judge(lo, s.p), -1);
    put(&s, " ab"); /* 20 non-CJK words of 40: applied, mean 2 */
    assert_int_equal(judge(lo, s.p), CLEAN_MIN_MEAN_WORD_LEN);
    free(s.p);
    clean_free(lo);
    clean_free(hi);
}

/* A document of `a` characters of kind A and `b` of kind B, spread over
 * words and lines (whitespace does not count). */
static void mix(sbuf *s, const char *A, int a, const char *B, int b) {
    reset(s);
    for (int i = 0; i < a + b; i++) {
        put(s, "%s", i < a ? A : B);
        if (i % 5 == 4) put(s, i % 20 == 19 ? "\n" : " ");
    }
}

static void test_rule_char_fractions(void **state) {
    (void)state;
    sbuf s = {0};
    lm_clean *c = only(CLEAN_MIN_ALPHA_FRAC, "0.6");
    mix(&s, "k", 60, "7", 40);
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "k", 59, "7", 41);
    assert_int_equal(judge(c, s.p), CLEAN_MIN_ALPHA_FRAC);
    mix(&s, "\xD0\x96", 60, "!", 40); /* Cyrillic letters are letters */
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "\xE0\xA4\x95\xE0\xA4\xBE", 30, "1", 40); /* का: a letter and a vowel sign (mark): 60 of 100 */
    assert_int_equal(judge(c, s.p), -1);
    clean_free(c);

    c = only(CLEAN_MAX_DIGIT_FRAC, "0.25");
    mix(&s, "7", 25, "k", 75);
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "7", 26, "k", 74);
    assert_int_equal(judge(c, s.p), CLEAN_MAX_DIGIT_FRAC);
    mix(&s, "\xD9\xA3", 26, "k", 74); /* Arabic-Indic digit three: NFKC keeps it, a digit */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_DIGIT_FRAC);
    clean_free(c);

    c = only(CLEAN_MAX_PUNCT_FRAC, "0.25");
    mix(&s, "!", 25, "k", 75);
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "$", 26, "k", 74); /* symbols count with punctuation */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_PUNCT_FRAC);
    mix(&s, "\xE3\x80\x82", 26, "k", 74); /* 。 */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_PUNCT_FRAC);
    clean_free(c);

    c = only(CLEAN_MIN_CJK_FRAC, "0.3");
    mix(&s, "\xE4\xB8\xAD", 30, "k", 70);
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "\xE4\xB8\xAD", 29, "k", 71);
    assert_int_equal(judge(c, s.p), CLEAN_MIN_CJK_FRAC);
    mix(&s, "\xE3\x82\xAB", 30, "k", 70); /* katakana */
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "\xED\x95\x9C", 30, "k", 70); /* Hangul */
    assert_int_equal(judge(c, s.p), -1);
    mix(&s, "\xE3\x80\x82", 30, "k", 70); /* CJK punctuation is not CJK text */
    assert_int_equal(judge(c, s.p), CLEAN_MIN_CJK_FRAC);
    clean_free(c);
    free(s.p);
}

/* n lines, the first k of them made by `special`, the rest plain text;
 * empty and blank lines between them do not count. */
static void lines(sbuf *s, int n, int k, const char *special) {
    reset(s);
    for (int i = 0; i < n; i++) {
        if (i < k) put(s, special, uword(i, 4));
        else put(s, "plain line %s here", uword(i, 4));
        put(s, i % 3 ? "\n" : "\n\n  \t\n");
    }
}

static void test_rule_line_shapes(void **state) {
    (void)state;
    sbuf s = {0};
    lm_clean *c = only(CLEAN_MAX_ELLIPSIS_LINE_FRAC, "0.3");
    lines(&s, 10, 3, "and then %s ...");
    assert_int_equal(judge(c, s.p), -1);
    lines(&s, 10, 4, "and then %s\xE2\x80\xA6  "); /* U+2026, trailing spaces */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_ELLIPSIS_LINE_FRAC);
    lines(&s, 10, 4, "... %s at the start");
    assert_int_equal(judge(c, s.p), -1);
    clean_free(c);

    c = only(CLEAN_MAX_BULLET_LINE_FRAC, "0.9");
    lines(&s, 10, 9, "  - item %s");
    assert_int_equal(judge(c, s.p), -1);
    lines(&s, 10, 10, "\xE2\x80\xA2 item %s");
    assert_int_equal(judge(c, s.p), CLEAN_MAX_BULLET_LINE_FRAC);
    lines(&s, 10, 10, "* %s");
    assert_int_equal(judge(c, s.p), CLEAN_MAX_BULLET_LINE_FRAC);
    lines(&s, 10, 10, "-5 degrees %s"); /* a minus sign, no bullet */
    assert_int_equal(judge(c, s.p), -1);
    lines(&s, 10, 10, "*emphasis* %s");
    assert_int_equal(judge(c, s.p), -1);
    clean_free(c);
    free(s.p);
}

static void test_rule_dup_lines(void **state) {
    (void)state;
    sbuf s = {0};
    lm_clean *c = only(CLEAN_MAX_DUP_LINE_FRAC, "0.3");
    /* 10 lines, 3 repeat an earlier one (leading/trailing space ignored) */
    reset(&s);
    for (int i = 0; i < 7; i++) put(&s, "line %s\n", uword(i, 4));
    put(&s, "  line %s\nline %s \n\n\nline %s\n", uword(0, 4), uword(0, 4), uword(5, 4));
    assert_true(fabs(value(s.p, CLEAN_MAX_DUP_LINE_FRAC) - 0.3) < 1e-12);
    assert_int_equal(judge(c, s.p), -1);
    put(&s, "line %s\n", uword(6, 4)); /* 4 of 11 */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_DUP_LINE_FRAC);
    clean_free(c);

    c = only(CLEAN_MAX_DUP_LINE_CHAR_FRAC, "0.2");
    /* a 20-character line twice and 60 other characters: 20 / 100 */
    reset(&s);
    put(&s, "aaaaaaaaaaaaaaaaaaaa\n");      /* 20 */
    rep(&s, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n", 1); /* 29 */
    put(&s, "ccccccccccccccccccccccccccccccc\n"); /* 31 */
    put(&s, "aaaaaaaaaaaaaaaaaaaa\n");
    assert_true(fabs(value(s.p, CLEAN_MAX_DUP_LINE_CHAR_FRAC) - 0.2) < 1e-12);
    assert_int_equal(judge(c, s.p), -1);
    reset(&s);
    put(&s, "aaaaaaaaaaaaaaaaaaaa\nbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\nccccccccccccccccccccccccccccc\n"
            "aaaaaaaaaaaaaaaaaaaa\n"); /* 20 / 98 */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_DUP_LINE_CHAR_FRAC);
    clean_free(c);
    free(s.p);
}

static void test_rule_top_ngram(void **state) {
    (void)state;
    sbuf s = {0};
    lm_clean *c = only(CLEAN_MAX_TOP_NGRAM_FRAC, "0.2");
    /* "ab cd" twice (8 characters) among unique words: 8 / 40 */
    reset(&s);
    put(&s, "ab cd ");
    for (int i = 0; i < 4; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "ab, cd. ");
    for (int i = 4; i < 8; i++) put(&s, "%s ", uword(i, 4));
    assert_true(fabs(value(s.p, CLEAN_MAX_TOP_NGRAM_FRAC) - 0.2) < 1e-12);
    assert_int_equal(judge(c, s.p), -1);
    reset(&s);
    put(&s, "ab cd ");
    for (int i = 0; i < 4; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "ab cd ");
    for (int i = 4; i < 7; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "fff"); /* 8 / 39 */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_TOP_NGRAM_FRAC);
    /* a 3-gram twice: its 12 characters against 0.9 of the threshold */
    reset(&s);
    put(&s, "ab cd ee ");
    for (int i = 0; i < 10; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "ab cd ee ");
    for (int i = 10; i < 20; i++) put(&s, "%s ", uword(i, 4));
    double T = 12 + 80;
    assert_true(fabs(value(s.p, CLEAN_MAX_TOP_NGRAM_FRAC) - 12.0 / T / 0.9) < 1e-12);
    /* the most frequent wins over a longer one seen twice: "x y" 3 times */
    reset(&s);
    for (int i = 0; i < 3; i++) put(&s, "x y %s ", uword(i, 4));
    put(&s, "longword another %s longword another", uword(3, 4));
    assert_true(fabs(value(s.p, CLEAN_MAX_TOP_NGRAM_FRAC) - 6.0 / (6 + 16 + 2 * 15)) < 1e-12);
    clean_free(c);
    free(s.p);
}

static void test_rule_dup_ngram(void **state) {
    (void)state;
    sbuf s = {0};
    lm_clean *c = only(CLEAN_MAX_DUP_NGRAM_FRAC, "0.15");
    /* a 5-gram of 4-letter words twice (40 characters) in 67 words (268) */
    reset(&s);
    const char *five = "when this goes down fast ";
    put(&s, "%s", five);
    for (int i = 0; i < 28; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "%s", five);
    for (int i = 28; i < 57; i++) put(&s, "%s\n", uword(i, 4));
    assert_true(fabs(value(s.p, CLEAN_MAX_DUP_NGRAM_FRAC) - 40.0 / 268) < 1e-12);
    assert_int_equal(judge(c, s.p), -1);
    reset(&s);
    put(&s, "%s", five);
    for (int i = 0; i < 28; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "%s", five);
    for (int i = 28; i < 56; i++) put(&s, "%s ", uword(i, 4)); /* 40 / 264 */
    assert_int_equal(judge(c, s.p), CLEAN_MAX_DUP_NGRAM_FRAC);
    /* 6 words repeated: the 5-grams overlap (48 characters once each) and
     * the 6-gram repeats too, against 14/15 of the threshold */
    reset(&s);
    const char *six = "when this goes down fast then ";
    put(&s, "%s", six);
    for (int i = 0; i < 40; i++) put(&s, "%s ", uword(i, 4));
    put(&s, "%s", six);
    double T = 48 + 160;
    assert_true(fabs(value(s.p, CLEAN_MAX_DUP_NGRAM_FRAC) - 48.0 / T * 15 / 14) < 1e-12);
    /* a 5-gram three times, two of them overlapping by one word */
    reset(&s);
    put(&s, "a b c d a b c d a ");
    for (int i = 0; i < 20; i++) put(&s, "%s ", uword(i, 4));
    /* only the 5-gram "a b c d a" repeats (at words 0 and 4): the union of
     * its occurrences is words 0..8, 9 characters of 89 */
    assert_true(fabs(value(s.p, CLEAN_MAX_DUP_NGRAM_FRAC) - 9.0 / 89) < 1e-12);
    clean_free(c);
    free(s.p);
}

/* The two n-gram values against a direct computation (every pair of
 * positions compared, no hashing) on random texts over a small vocabulary,
 * so that n-grams of every size repeat, overlap and tie. */
static void test_ngram_reference(void **state) {
    (void)state;
    static const char *const vocab[] = {"a", "bb", "ccc", "dddd", "eeeee", "ffffff"};
    enum { MAXW = 160 };
    int w[MAXW];
    sbuf s = {0};
    for (int it = 0; it < 400; it++) {
        int W = 2 + rndn_(MAXW - 1), V = 2 + rndn_(5);
        reset(&s);
        double total = 0;
        for (int i = 0; i < W; i++) {
            w[i] = rndn_(V);
            put(&s, "%s%s", vocab[w[i]], rndn_(9) ? " " : "\n");
            total += (double)strlen(vocab[w[i]]);
        }
        double top = 0, dup = 0;
        for (int n = 2; n <= 10; n++) {
            int best_c = 0;
            double best_len = 0, covered = 0;
            int cov[MAXW] = {0};
            for (int i = 0; i + n <= W; i++) {
                int cnt = 0;
                for (int j = 0; j + n <= W; j++) cnt += !memcmp(w + i, w + j, (size_t)n * sizeof *w);
                double len = 0;
                for (int k = 0; k < n; k++) len += (double)strlen(vocab[w[i + k]]);
                if (cnt > best_c || (cnt == best_c && len > best_len)) best_c = cnt, best_len = len;
                if (cnt >= 2)
                    for (int k = 0; k < n; k++) cov[i + k] = 1;
            }
            for (int i = 0; i < W; i++) covered += cov[i] ? (double)strlen(vocab[w[i]]) : 0;
            if (n <= 4 && best_c >= 2) top = fmax(top, best_c * best_len / total / (1.0 - 0.1 * (n - 2)));
            if (n >= 5) dup = fmax(dup, covered / total / ((15.0 - (n - 5)) / 15.0));
        }
        double vt = value(s.p, CLEAN_MAX_TOP_NGRAM_FRAC), vd = value(s.p, CLEAN_MAX_DUP_NGRAM_FRAC);
        if (fabs(vt - top) > 1e-12 || fabs(vd - dup) > 1e-12)
            fprintf(stderr, "W %d V %d: top %g want %g, dup %g want %g\n", W, V, vt, top, vd, dup);
        assert_true(fabs(vt - top) < 1e-12);
        assert_true(fabs(vd - dup) < 1e-12);
    }
    free(s.p);
}

/* ---- categories ---- */

static void test_categories(void **state) {
    (void)state;
    const char *text = "; per-category thresholds\n"
                       "[category.zh]\n"
                       "min_cjk_frac = 0.5   ; a comment\n"
                       "min_mean_word_len = off\n"
                       "[default]\n"
                       "min_words = 10\n"
                       "max_digit_frac = 0.5\n"
                       "[category.web]\n"
                       "min_words = 100\n"
                       "max_words = 100000\n";
    char err[LM_ERRLEN];
    lm_clean *c = clean_load_text(text, "cat.ini", err, sizeof err);
    if (!c) fprintf(stderr, "%s\n", err);
    assert_non_null(c);
    /* [default] over the built-ins; a category over [default], only where it says */
    assert_true(clean_threshold(c, NULL, CLEAN_MIN_WORDS) == 10);
    assert_true(clean_threshold(c, NULL, CLEAN_MAX_DIGIT_FRAC) == 0.5);
    assert_true(clean_threshold(c, NULL, CLEAN_MAX_PUNCT_FRAC) == 0.25);
    assert_true(clean_threshold(c, "zh", CLEAN_MIN_WORDS) == 10);
    assert_true(clean_threshold(c, "zh", CLEAN_MAX_DIGIT_FRAC) == 0.5);
    assert_true(clean_threshold(c, "zh", CLEAN_MIN_CJK_FRAC) == 0.5);
    assert_true(clean_threshold(c, "zh", CLEAN_MIN_MEAN_WORD_LEN) == 0);
    assert_true(clean_threshold(c, "zh", CLEAN_MAX_MEAN_WORD_LEN) == 10);
    assert_true(clean_threshold(c, "web", CLEAN_MIN_WORDS) == 100);
    assert_true(clean_threshold(c, "web", CLEAN_MAX_WORDS) == 100000);
    assert_true(clean_threshold(c, "web", CLEAN_MIN_CJK_FRAC) == 0);
    assert_true(clean_threshold(c, "books", CLEAN_MIN_WORDS) == 10); /* not in the file: defaults */
    sbuf s = {0};
    for (int i = 0; i < 20; i++) put(&s, "%s ", uword(i, 5));
    char *out;
    size_t n;
    assert_int_equal(clean_doc(c, NULL, s.p, s.n, &out, &n), -1);
    lm_free(out);
    assert_int_equal(clean_doc(c, "books", s.p, s.n, &out, &n), -1);
    lm_free(out);
    assert_int_equal(clean_doc(c, "zh", s.p, s.n, &out, &n), CLEAN_MIN_CJK_FRAC);
    lm_free(out);
    assert_int_equal(clean_doc(c, "web", s.p, s.n, &out, &n), CLEAN_MIN_WORDS);
    lm_free(out);
    /* a Chinese text: fine for zh (the mean word length rule is off there) */
    reset(&s);
    put(&s, "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。\n床前明月光，疑是地上霜。举头望明月，低头思故乡。\n"
            "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。\n");
    assert_int_equal(clean_doc(c, "zh", s.p, s.n, &out, &n), -1);
    lm_free(out);
    assert_true(value(s.p, CLEAN_MIN_WORDS) == 60);
    free(s.p);
    clean_free(c);
    /* the same from a file */
    char path[128];
    snprintf(path, sizeof path, "%s/cat.ini", g_dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    c = clean_load(path, err, sizeof err);
    assert_non_null(c);
    assert_true(clean_threshold(c, "web", CLEAN_MIN_WORDS) == 100);
    clean_free(c);
}

/* ---- rules-file errors: NULL, and the message names FILE:LINE and the key ---- */

static void expect_error(const char *text, const char *line, const char *what) {
    char path[128], err[LM_ERRLEN], want[160];
    snprintf(path, sizeof path, "%s/bad.ini", g_dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    err[0] = 0;
    lm_clean *c = clean_load(path, err, sizeof err);
    if (c || !strstr(err, what) || (line && !strstr(err, line)))
        fprintf(stderr, "text:\n%s\nerror: %s\nwanted %s and %s\n", text, err, line ? line : "", what);
    assert_null(c);
    snprintf(want, sizeof want, "%s%s", path, line ? line : "");
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, what));
}

static void test_file_errors(void **state) {
    (void)state;
    expect_error("[default]\nmin_words = 10\nmin_wordz = 3\n", ":3:", "min_wordz");
    expect_error("[default]\nmin_words = many\n", ":2:", "default.min_words");
    expect_error("[default]\nmin_words = 2.5\n", ":2:", "whole number");
    expect_error("[default]\nmin_words = -1\n", ":2:", "min_words");
    expect_error("[category.zh]\n\nmin_cjk_frac = 1.5\n", ":3:", "category.zh.min_cjk_frac");
    expect_error("[default]\nmax_dup_line_frac = 0.3x\n", ":2:", "max_dup_line_frac");
    expect_error("[default]\nmax_dup_line_frac =\n", ":2:", "max_dup_line_frac");
    expect_error("[default]\nmin_mean_word_len = nan\n", ":2:", "min_mean_word_len");
    expect_error("[default]\nmin_words = 0x10\n", ":2:", "min_words");
    expect_error("[default]\n\n\nmax_chars = 1e16\n", ":4:", "max_chars");
    expect_error("[default]\nmin_words = 1\nmin_words = 2\n", ":3:", "duplicate key default.min_words");
    expect_error("[default]\nmin_words = 1\n[rules]\nmin_words = 2\n", ":3:", "unknown section [rules]");
    expect_error("[default]\n[category.]\n", ":2:", "[category.]");
    expect_error("[category.a b]\n", ":1:", "[category.a b]");
    expect_error("[category.an_extremely_long_category_name_of_more_than_forty]\n", ":1:", "longer than 40");
    expect_error("min_words = 5\n", ":1:", "outside any [section]");
    expect_error("[default]\nmin_words 5\n", ":2:", "syntax error");
    /* a missing file names it */
    char err[LM_ERRLEN];
    assert_null(clean_load("/nonexistent/rules.ini", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/rules.ini"));
    /* an empty file, comments only, `off` in any case, a BOM: fine */
    lm_clean *c = clean_load_text("", "empty", err, sizeof err);
    assert_non_null(c);
    clean_free(c);
    c = clean_load_text("\xEF\xBB\xBF; nothing\n# at all\n[default]\nmin_words = OFF\nmax_chars = 0\n", "x", err,
                        sizeof err);
    assert_non_null(c);
    assert_true(clean_threshold(c, NULL, CLEAN_MIN_WORDS) == 0);
    assert_true(clean_threshold(c, NULL, CLEAN_MAX_CHARS) == 0);
    assert_int_equal(judge(c, "short"), -1); /* min_words is off */
    clean_free(c);
}

/* ---- threads: clean_doc from an OpenMP loop equals the serial answers ---- */

static void test_threads(void **state) {
    (void)state;
    enum { N = 400 };
    char *docs[N];
    int want[N];
    size_t want_len[N];
    char err[LM_ERRLEN];
    lm_clean *c = clean_load_text("[default]\nmin_words = 20\n[category.zh]\nmin_cjk_frac = 0.2\n", "t", err,
                                  sizeof err);
    assert_non_null(c);
    uint64_t x = 12345;
    for (int d = 0; d < N; d++) {
        sbuf s = {0};
        int words = 5 + d % 60;
        for (int i = 0; i < words; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            int k = (int)(x >> 60);
            put(&s, "%s%s", k < 3 ? "\xE4\xB8\xAD\xE6\x96\x87" : k < 5 ? "caf\xC3\xA9" : uword((int)(x >> 40) % 50, 4),
                k == 7 ? "\n- " : k == 8 ? "...\n" : " ");
        }
        docs[d] = s.p;
        char *out;
        want[d] = clean_doc(c, d % 2 ? "zh" : NULL, docs[d], strlen(docs[d]), &out, &want_len[d]);
        lm_free(out);
    }
    int bad = 0;
    omp_set_num_threads(4);
#pragma omp parallel for schedule(dynamic, 1) reduction(+ : bad)
    for (int d = 0; d < N; d++)
        for (int r = 0; r < 3; r++) {
            char *out;
            size_t n;
            int got = clean_doc(c, d % 2 ? "zh" : NULL, docs[d], strlen(docs[d]), &out, &n);
            bad += got != want[d] || n != want_len[d];
            lm_free(out);
        }
    assert_int_equal(bad, 0);
    int kept = 0;
    for (int d = 0; d < N; d++) kept += want[d] < 0, free(docs[d]);
    assert_true(kept > 10 && kept < N - 10); /* the mix exercises both answers */
    clean_free(c);
}

/* ---- fuzz ---- */

static int rndn(int n) { return rndn_(n); }

/* One mutation of buf (n bytes, room for cap): flip, insert, delete, a
 * token from toks. NUL bytes only when nul_ok. */
static size_t mutate(char *buf, size_t n, size_t cap, const char *const *toks, int ntok, int nul_ok) {
    size_t pos = n ? (size_t)rndn((int)n + 1) : 0;
    switch (rndn(6)) {
    case 0:
        if (n) buf[pos % n] = (char)(nul_ok ? rndn(256) : 1 + rndn(255));
        break;
    case 1:
        if (n + 1 < cap) {
            memmove(buf + pos + 1, buf + pos, n - pos);
            buf[pos] = (char)(nul_ok ? rndn(256) : 1 + rndn(255));
            n++;
        }
        break;
    case 2:
        if (n) {
            size_t k = 1 + (size_t)rndn(8);
            if (pos + k > n) k = n - pos;
            memmove(buf + pos, buf + pos + k, n - pos - k);
            n -= k;
        }
        break;
    case 3:
        n = pos;
        break;
    default: {
        const char *tk = toks[rndn(ntok)];
        size_t k = strlen(tk);
        if (n + k < cap) {
            memmove(buf + pos + k, buf + pos, n - pos);
            memcpy(buf + pos, tk, k);
            n += k;
        }
    }
    }
    buf[n] = 0;
    return n;
}

static const char *RULE_TOKENS[] = {"=", "\n", "[", "]", ";", "#", " ", "\r\n", "default", "category.", ".", "off",
                                    "0", "1", "0.5", "-1", "1e999", "nan", "99999999999999999999", "min_words",
                                    "max_dup_ngram_frac", "\n[category.zh]\nmin_cjk_frac = 0.3\n",
                                    "\n[default]\nmax_chars = 7\n", "\xEF\xBB\xBF", "\x01", "\xE4\xB8\xAD"};

static void test_fuzz_rules(void **state) {
    (void)state;
    const char *seed = "; rules\n[default]\nmin_words = 50\nmax_words = 100000\nmin_alpha_frac = 0.6\n"
                       "max_dup_ngram_frac = off\n[category.zh]\nmin_cjk_frac = 0.3\nmin_mean_word_len = off\n"
                       "[category.web]\nmax_top_ngram_frac = 0.25  # Gopher's own\n";
    size_t cap = 1 << 16;
    char *buf = malloc(cap), err[LM_ERRLEN];
    int accepted = 0, rejected = 0;
    for (int it = 0; it < 3000; it++) {
        size_t n = strlen(seed);
        if (it % 10 == 9) { /* random bytes, no NUL (a text has none) */
            n = (size_t)rndn(400);
            for (size_t i = 0; i < n; i++) buf[i] = (char)(1 + rndn(255));
            buf[n] = 0;
        } else {
            memcpy(buf, seed, n + 1);
            int nmut = 1 + rndn(3);
            for (int m = 0; m < nmut; m++)
                n = mutate(buf, n, cap, RULE_TOKENS, (int)(sizeof RULE_TOKENS / sizeof *RULE_TOKENS), 0);
        }
        err[0] = 0;
        lm_clean *c = clean_load_text(buf, "fuzz.ini", err, sizeof err);
        if (!c) {
            assert_true(err[0] != 0);
            assert_non_null(strstr(err, "fuzz.ini"));
            rejected++;
            if (getenv("FUZZ_SHOW")) fprintf(stderr, "%s\n", err);
            continue;
        }
        accepted++;
        for (int r = 0; r < CLEAN_NRULES; r++) {
            double t = clean_threshold(c, "zh", r);
            assert_true(isfinite(t) && t >= 0);
        }
        clean_free(c);
    }
    fprintf(stderr, "# fuzz rules: %d accepted, %d rejected\n", accepted, rejected);
    assert_true(accepted > 100 && rejected > 100);
    free(buf);
}

static const char *DOC_TOKENS[] = {"\xE2\x80\xA6", "\x1b[", "\x1b[31m", "\r", "\xCC\x81\xCC\x81\xCC\x81", "\xF0\x9F",
                                   "\xF0\x9F\x98\x80", "...", "\n- ", "\n\xE2\x80\xA2 ", "\xE4\xB8\xAD", "\xEF\xAC\x81",
                                   "\xEF\xBC\xA1", "\xED\xA0\x80", "\xC2\x85", "\xEF\xBB\xBF", "\xEF\xBF\xBD",
                                   "the the the the the ", "\n\n", "\xE1\x84\x80\xE1\x85\xA1", "\xCD\x84"};

static void test_fuzz_docs(void **state) {
    (void)state;
    const char *seeds[] = {
        "The committee met on Tuesday to discuss the new library.\nAfter a long debate, the members agreed.\n"
        "- first point\n- second point...\n",
        "\xE6\x98\xA5\xE7\x9C\xA0\xE4\xB8\x8D\xE8\xA7\x89\xE6\x99\x93\xEF\xBC\x8C\xE5\xA4\x84\xE5\xA4\x84\xE9\x97\xBB"
        "\xE5\x95\xBC\xE9\xB8\x9F\xE3\x80\x82\n\xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4 \xE3\x81\x8B\xE3\x81\xAA",
        "caf\xC3\xA9 na\xC3\xAFve \xEF\xAC\x81le \xEF\xBC\xA1\xEF\xBC\xA2 \x1b[1mbold\x1b[0m\r\n\tend\xE2\x80\xA6",
    };
    char err[LM_ERRLEN];
    lm_clean *c = clean_load_text("[default]\nmin_words = 3\n", "f", err, sizeof err);
    assert_non_null(c);
    size_t cap = 1 << 14;
    char *buf = malloc(cap);
    int kept = 0, idem_fail = 0, mismatch = 0;
    for (int it = 0; it < 4000; it++) {
        size_t n;
        if (it % 10 == 9) { /* pure random bytes */
            n = (size_t)rndn(600);
            for (size_t i = 0; i < n; i++) buf[i] = (char)rndn(256);
        } else {
            const char *s = seeds[it % 3];
            n = strlen(s);
            memcpy(buf, s, n);
            int nmut = 1 + rndn(6);
            for (int m = 0; m < nmut; m++)
                n = mutate(buf, n, cap - 1, DOC_TOKENS, (int)(sizeof DOC_TOKENS / sizeof *DOC_TOKENS), 1);
        }
        char *out;
        size_t on;
        int r = clean_doc(c, it % 2 ? "zh" : NULL, buf, n, &out, &on);
        assert_true(r >= -1 && r < CLEAN_NRULES);
        kept += r < 0;
        assert_int_equal(out[on], 0);
        assert_true(valid_utf8(out, on) >= 0);
        double v[CLEAN_NRULES];
        char *out2;
        size_t on2;
        clean_measure(buf, n, 1, v, &out2, &on2);
        assert_int_equal(on2, on);
        assert_memory_equal(out2, out, on);
        for (int k = 0; k < CLEAN_NRULES; k++) assert_true(isnan(v[k]) || (isfinite(v[k]) && v[k] >= 0));
        lm_free(out2);
        /* on text that needs no sanitising (valid, no control characters, no
         * BOM, combining runs of at most 20), the result is utf8proc_map's
         * NFKC of the whole */
        {
            char *y = malloc(n + 1);
            size_t yn = 0;
            int run = 0;
            for (size_t i = 0; i < n;) {
                utf8proc_int32_t cp;
                utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)buf + i, (utf8proc_ssize_t)(n - i), &cp);
                if (k <= 0) {
                    i++;
                    continue;
                }
                int cc = utf8proc_get_property(cp)->combining_class;
                run = cc ? run + 1 : 0;
                int drop = (utf8proc_category(cp) == UTF8PROC_CATEGORY_CC && cp != '\n' && cp != '\t') ||
                           cp == 0xFEFF || run > 20;
                if (!drop) memcpy(y + yn, buf + i, (size_t)k), yn += (size_t)k;
                i += (size_t)k;
            }
            utf8proc_uint8_t *ref;
            utf8proc_ssize_t rn = utf8proc_map((const utf8proc_uint8_t *)y, (utf8proc_ssize_t)yn, &ref,
                                               UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_STABLE);
            assert_true(rn >= 0);
            clean_normalise(y, yn, &out2, &on2);
            if (on2 != (size_t)rn || memcmp(out2, ref, on2)) mismatch++;
            lm_free(out2);
            free(ref);
            free(y);
        }
        /* normalising normalised text changes nothing */
        clean_normalise(out, on, &out2, &on2);
        idem_fail += on2 != on || memcmp(out2, out, on);
        lm_free(out2);
        lm_free(out);
    }
    fprintf(stderr, "# fuzz docs: %d kept of 4000, %d not idempotent, %d unlike utf8proc_map\n", kept, idem_fail,
            mismatch);
    assert_int_equal(idem_fail, 0);
    assert_int_equal(mismatch, 0);
    assert_true(kept > 100);
    free(buf);
    clean_free(c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin),          cmocka_unit_test(test_normalise),
        cmocka_unit_test(test_nfkc_stretches),
        cmocka_unit_test(test_rule_invalid_utf8), cmocka_unit_test(test_rule_chars),
        cmocka_unit_test(test_rule_words),       cmocka_unit_test(test_rule_mean_word_len),
        cmocka_unit_test(test_rule_char_fractions), cmocka_unit_test(test_rule_line_shapes),
        cmocka_unit_test(test_rule_dup_lines),   cmocka_unit_test(test_rule_top_ngram),
        cmocka_unit_test(test_rule_dup_ngram),   cmocka_unit_test(test_ngram_reference),
        cmocka_unit_test(test_categories),
        cmocka_unit_test(test_file_errors),      cmocka_unit_test(test_threads),
        cmocka_unit_test(test_fuzz_rules),       cmocka_unit_test(test_fuzz_docs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
