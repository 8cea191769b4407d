/* test_dedup.c — exact and near-duplicate detection (src/data/dedup.h).
 *
 * The near-duplicate tests plant pairs of KNOWN Jaccard similarity: a base
 * text of random characters (or words) whose shingles are all distinct,
 * and a copy with m single-unit substitutions spaced at least n units
 * apart and away from the ends, each by a unit that occurs nowhere else.
 * Each substitution replaces exactly n of the S = units - n + 1 shingles by
 * n new ones, so J = (S - m n) / (S + m n) exactly; the test also computes
 * J directly from the two shingle sets (a reference implementation here)
 * and checks that the construction gives it. MinHash estimates are binomial
 * with standard deviation sigma = sqrt(J (1 - J) / perm): each estimate must
 * lie within 4 sigma, and the mean of P estimates within 4 sigma / sqrt(P)
 * (an unbiasedness check). Catch rates follow the table in dedup.h: a pair
 * at J 0.9 is missed with probability 4.7e-4 (we allow 1 miss in 50, which
 * fails with probability 2.7e-4), one at J 0.5 is caught with 1e-12. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"
#include "hash.h"

/* "hello world" at minhash_default(0): sig[0], sig[1], sig[127], and its
 * exact hash, as computed by a separate Python transcription of the
 * formulas in dedup.c (span_hash over 5-code-point spans, a_k and b_k from
 * the splitmix64 stream, bits 32..63 of a_k x + b_k; mix64(FNV-1a ^ len
 * phi)), not read back from this code. */
#define PINNED_SIG "01468e80 262b9d20 451fe107"
#define PINNED_EXACT "c48c23f82cde4010"

/* ------------------------------------------------ test helpers */

static uint64_t rnd_state;
static uint64_t rnd(void) {
    rnd_state += LM_PHI64;
    return lm_mix64(rnd_state);
}
static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

/* UTF-8 encoding of cp into s; returns bytes. */
static int put_utf8(char *s, uint32_t cp) {
    if (cp < 0x80) {
        s[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    s[0] = (char)(0xF0 | (cp >> 18));
    s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    s[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Code points of valid UTF-8 (the reference decoder, independent of dedup.c). */
static int decode(const char *s, size_t len, uint32_t *out) {
    const unsigned char *p = (const unsigned char *)s;
    int n = 0;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        int k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        uint32_t v = k == 1 ? c : c & (0xFF >> (k + 1));
        for (int j = 1; j < k; j++) v = (v << 6) | (p[i + j] & 0x3F);
        out[n++] = v;
        i += (size_t)k;
    }
    return n;
}

/* Reference shingle sets: each shingle a sorted-unique string key. A
 * shingle is ngram units joined with a separator no unit contains. */
typedef struct {
    char **s;
    int n;
} shset;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* units[i] as strings -> the set of n-grams (one shingle for 0 < count < n). */
static shset make_set(char **units, int count, int n) {
    shset r = {malloc(sizeof(char *) * (size_t)(count + 1)), 0};
    int nsh = count >= n ? count - n + 1 : (count > 0);
    for (int i = 0; i < nsh; i++) {
        int w = count >= n ? n : count;
        size_t len = 1;
        for (int j = 0; j < w; j++) len += strlen(units[i + j]) + 1;
        char *k = calloc(len, 1);
        for (int j = 0; j < w; j++) {
            strcat(k, units[i + j]);
            strcat(k, "\x01");
        }
        r.s[r.n++] = k;
    }
    qsort(r.s, (size_t)r.n, sizeof(char *), cmp_str);
    int u = 0;
    for (int i = 0; i < r.n; i++) {
        if (u > 0 && !strcmp(r.s[u - 1], r.s[i])) {
            free(r.s[i]);
            continue;
        }
        r.s[u++] = r.s[i];
    }
    r.n = u;
    return r;
}

static void free_units(char **u, int n) {
    for (int i = 0; i < n; i++) free(u[i]);
    free(u);
}

/* Code-point shingles of a text. */
static shset cp_set(const char *t, int n) {
    size_t len = strlen(t);
    uint32_t *cp = malloc(sizeof(uint32_t) * (len + 1));
    int c = decode(t, len, cp);
    char **u = malloc(sizeof(char *) * (size_t)(c + 1));
    for (int i = 0; i < c; i++) {
        u[i] = calloc(8, 1);
        put_utf8(u[i], cp[i]);
    }
    shset r = make_set(u, c, n);
    free_units(u, c);
    free(cp);
    return r;
}

/* Byte shingles of a text (what a byte-level shingler would see). */
static shset byte_set(const char *t, int n) {
    int c = (int)strlen(t);
    char **u = malloc(sizeof(char *) * (size_t)(c + 1));
    for (int i = 0; i < c; i++) {
        u[i] = calloc(2, 1);
        u[i][0] = t[i];
    }
    shset r = make_set(u, c, n);
    free_units(u, c);
    return r;
}

/* Word shingles of a text of ASCII words separated by single spaces. */
static shset word_set(const char *t, int n) {
    char *dup = strdup(t), *save = NULL;
    char **u = malloc(sizeof(char *) * (strlen(t) + 1));
    int c = 0;
    for (char *w = strtok_r(dup, " ", &save); w; w = strtok_r(NULL, " ", &save)) u[c++] = strdup(w);
    shset r = make_set(u, c, n);
    free_units(u, c);
    free(dup);
    return r;
}

static double set_jaccard(shset a, shset b) {
    int i = 0, j = 0, inter = 0;
    while (i < a.n && j < b.n) {
        int c = strcmp(a.s[i], b.s[j]);
        if (c == 0) inter++, i++, j++;
        else if (c < 0) i++;
        else j++;
    }
    int uni = a.n + b.n - inter;
    return uni ? (double)inter / uni : 1.0;
}

static void free_set(shset s) {
    for (int i = 0; i < s.n; i++) free(s.s[i]);
    free(s.s);
}

static double true_cp_jaccard(const char *a, const char *b, int n) {
    shset x = cp_set(a, n), y = cp_set(b, n);
    double j = set_jaccard(x, y);
    free_set(x);
    free_set(y);
    return j;
}

static double est(const lm_minhash_cfg *c, const char *a, const char *b) {
    uint32_t *sa = malloc(sizeof(uint32_t) * (size_t)c->perm), *sb = malloc(sizeof(uint32_t) * (size_t)c->perm);
    minhash_sig(c, a, strlen(a), sa);
    minhash_sig(c, b, strlen(b), sb);
    double j = minhash_jaccard(sa, sb, c->perm);
    free(sa);
    free(sb);
    return j;
}

/* A planted pair of code-point texts: `units` random unified ideographs
 * (U+4E00..U+9FFF), then a copy with m substitutions at positions
 * n + i*gap (i < m) by characters of extension A (U+3400..U+4DBF), which
 * the base never contains. */
static void cjk_pair(int units, int m, int gap, int n, char **a, char **b) {
    *a = malloc((size_t)units * 4 + 1);
    *b = malloc((size_t)units * 4 + 1);
    size_t la = 0, lb = 0;
    int next_sub = n, subs = 0;
    for (int i = 0; i < units; i++) {
        uint32_t cp = 0x4E00 + (uint32_t)rnd_below(0x9FFF - 0x4E00 + 1);
        la += (size_t)put_utf8(*a + la, cp);
        if (i == next_sub && subs < m) {
            cp = 0x3400 + (uint32_t)rnd_below(0x4DBF - 0x3400 + 1);
            next_sub += gap;
            subs++;
        }
        lb += (size_t)put_utf8(*b + lb, cp);
    }
    (*a)[la] = (*b)[lb] = 0;
    assert_int_equal(subs, m);
}

/* The same with words: `units` random 6-letter lowercase words, m of
 * them replaced by 7-letter uppercase words. */
static void word_pair(int units, int m, int gap, int n, char **a, char **b) {
    *a = malloc((size_t)units * 8 + 1);
    *b = malloc((size_t)units * 8 + 1);
    size_t la = 0, lb = 0;
    int next_sub = n, subs = 0;
    for (int i = 0; i < units; i++) {
        char w[8], v[8];
        for (int k = 0; k < 6; k++) w[k] = (char)('a' + rnd_below(26));
        w[6] = 0;
        strcpy(v, w);
        if (i == next_sub && subs < m) {
            for (int k = 0; k < 7; k++) v[k] = (char)('A' + rnd_below(26));
            v[7] = 0;
            next_sub += gap;
            subs++;
        }
        la += (size_t)sprintf(*a + la, "%s%s", i ? " " : "", w);
        lb += (size_t)sprintf(*b + lb, "%s%s", i ? " " : "", v);
    }
    assert_int_equal(subs, m);
}

static double planted_j(int units, int m, int n) {
    int s = units - n + 1;
    return (double)(s - m * n) / (double)(s + m * n);
}

/* ------------------------------------------------ exact */

static void test_exact(void **st) {
    (void)st;
    const char *t = "The quick brown fox.";
    assert_true(dedup_exact_hash(t, strlen(t)) == dedup_exact_hash("The quick brown fox.", 20));
    assert_true(dedup_exact_hash(t, 20) != dedup_exact_hash(t, 19));
    assert_true(dedup_exact_hash("abc", 4) != dedup_exact_hash("abc", 3)); /* the NUL counts */
    assert_true(dedup_exact_hash("", 0) != dedup_exact_hash("\0", 1));
    /* 20000 distinct texts: 20000 distinct hashes, each new once */
    lm_hashset *S = hashset_new(1); /* grows */
    char buf[64];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(buf, sizeof buf, "document %d", i);
        assert_int_equal(hashset_insert(S, dedup_exact_hash(buf, (size_t)n)), 1);
    }
    assert_int_equal(hashset_count(S), 20000);
    for (int i = 0; i < 20000; i++) { /* exact duplicates: all found */
        int n = snprintf(buf, sizeof buf, "document %d", i);
        assert_int_equal(hashset_insert(S, dedup_exact_hash(buf, (size_t)n)), 0);
    }
    assert_int_equal(hashset_count(S), 20000);
    /* raw values, 0 among them */
    assert_int_equal(hashset_insert(S, 0), 1);
    assert_int_equal(hashset_insert(S, 0), 0);
    assert_int_equal(hashset_insert(S, UINT64_MAX), 1);
    assert_int_equal(hashset_insert(S, UINT64_MAX), 0);
    assert_int_equal(hashset_count(S), 20002);
    hashset_free(S);
    /* colliding home positions: values equal in every high bit */
    S = hashset_new(100);
    for (uint64_t v = 1; v <= 1000; v++) assert_int_equal(hashset_insert(S, v), 1);
    for (uint64_t v = 1; v <= 1000; v++) assert_int_equal(hashset_insert(S, v), 0);
    hashset_free(S);
}

/* ------------------------------------------------ planted Jaccard */

/* Estimates of P planted pairs at J: each within 4 sigma, the mean within
 * 4 sigma / sqrt(P). */
static void check_estimates(const double *e, int P, double J, int perm) {
    double sigma = sqrt(J * (1 - J) / perm), mean = 0;
    for (int i = 0; i < P; i++) {
        assert_true(fabs(e[i] - J) <= 4 * sigma);
        mean += e[i];
    }
    mean /= P;
    assert_true(fabs(mean - J) <= 4 * sigma / sqrt((double)P));
}

#define NPAIR 50

static void test_planted_chars(void **st) {
    (void)st;
    rnd_state = 11;
    lm_minhash_cfg c = minhash_default(42);
    const int n = c.ngram;
    /* J 0.9: S = 950 shingles (954 units), 10 substitutions 10 apart; J 0.5:
     * S = 150 (154 units), 10 substitutions 14 apart */
    const int u9 = 954, u5 = 154;
    assert_true(fabs(planted_j(u9, 10, n) - 0.9) < 1e-12);
    assert_true(fabs(planted_j(u5, 10, n) - 0.5) < 1e-12);
    char *a9[NPAIR], *b9[NPAIR], *a5[NPAIR], *b5[NPAIR];
    double e9[NPAIR], e5[NPAIR];
    for (int i = 0; i < NPAIR; i++) {
        cjk_pair(u9, 10, 10, n, &a9[i], &b9[i]);
        cjk_pair(u5, 10, 14, n, &a5[i], &b5[i]);
        /* the construction holds: every base shingle distinct, J exact */
        shset s = cp_set(a9[i], n);
        assert_int_equal(s.n, u9 - n + 1);
        free_set(s);
        assert_true(fabs(true_cp_jaccard(a9[i], b9[i], n) - 0.9) < 1e-12);
        assert_true(fabs(true_cp_jaccard(a5[i], b5[i], n) - 0.5) < 1e-12);
        e9[i] = est(&c, a9[i], b9[i]);
        e5[i] = est(&c, a5[i], b5[i]);
    }
    check_estimates(e9, NPAIR, 0.9, c.perm);
    check_estimates(e5, NPAIR, 0.5, c.perm);

    /* One index: the bases (ids 0..99) are all kept (unrelated: J ~ 0),
     * then each J 0.9 copy is found as its own base's duplicate and no
     * J 0.5 copy is. */
    lm_lsh *L = lsh_new(&c, 0);
    uint32_t *sig = malloc(sizeof(uint32_t) * (size_t)c.perm);
    for (int i = 0; i < NPAIR; i++) {
        minhash_sig(&c, a9[i], strlen(a9[i]), sig);
        assert_int_equal(lsh_offer(L, sig, i, 0.8), -1);
        minhash_sig(&c, a5[i], strlen(a5[i]), sig);
        assert_int_equal(lsh_offer(L, sig, NPAIR + i, 0.8), -1);
    }
    int missed = 0;
    for (int i = 0; i < NPAIR; i++) {
        minhash_sig(&c, b9[i], strlen(b9[i]), sig);
        int64_t r = lsh_offer(L, sig, 1000 + i, 0.8);
        if (r == -1) missed++;
        else assert_int_equal(r, i);
        minhash_sig(&c, b5[i], strlen(b5[i]), sig);
        assert_int_equal(lsh_offer(L, sig, 2000 + i, 0.8), -1);
    }
    assert_true(missed <= 1);
    assert_int_equal(lsh_count(L), 3 * NPAIR + missed);
    lsh_free(L);
    free(sig);
    for (int i = 0; i < NPAIR; i++) free(a9[i]), free(b9[i]), free(a5[i]), free(b5[i]);
}

static void test_planted_words(void **st) {
    (void)st;
    rnd_state = 12;
    lm_minhash_cfg c = minhash_default(7);
    c.words = 1;
    c.ngram = 3;
    /* J 0.9: S = 570 (572 words), 10 substitutions 5 apart; J 0.5: S = 90
     * (92 words), 10 substitutions 4 apart */
    const int u9 = 572, u5 = 92, n = c.ngram;
    assert_true(fabs(planted_j(u9, 10, n) - 0.9) < 1e-12);
    assert_true(fabs(planted_j(u5, 10, n) - 0.5) < 1e-12);
    double e9[NPAIR], e5[NPAIR];
    lm_lsh *L = lsh_new(&c, 4 * NPAIR);
    uint32_t *sa = malloc(sizeof(uint32_t) * (size_t)c.perm), *sb = malloc(sizeof(uint32_t) * (size_t)c.perm);
    int missed = 0;
    for (int i = 0; i < NPAIR; i++) {
        char *a, *b;
        word_pair(u9, 10, 5, n, &a, &b);
        shset x = word_set(a, n), y = word_set(b, n);
        assert_int_equal(x.n, u9 - n + 1);
        assert_true(fabs(set_jaccard(x, y) - 0.9) < 1e-12);
        free_set(x);
        free_set(y);
        minhash_sig(&c, a, strlen(a), sa);
        minhash_sig(&c, b, strlen(b), sb);
        e9[i] = minhash_jaccard(sa, sb, c.perm);
        assert_int_equal(lsh_offer(L, sa, 4 * i, 0.8), -1);
        int64_t r = lsh_offer(L, sb, 4 * i + 1, 0.8);
        if (r == -1) missed++;
        else assert_int_equal(r, 4 * i);
        free(a);
        free(b);
        word_pair(u5, 10, 4, n, &a, &b);
        x = word_set(a, n);
        y = word_set(b, n);
        assert_true(fabs(set_jaccard(x, y) - 0.5) < 1e-12);
        free_set(x);
        free_set(y);
        minhash_sig(&c, a, strlen(a), sa);
        minhash_sig(&c, b, strlen(b), sb);
        e5[i] = minhash_jaccard(sa, sb, c.perm);
        assert_int_equal(lsh_offer(L, sa, 4 * i + 2, 0.8), -1);
        assert_int_equal(lsh_offer(L, sb, 4 * i + 3, 0.8), -1);
        free(a);
        free(b);
    }
    assert_true(missed <= 1);
    check_estimates(e9, NPAIR, 0.9, c.perm);
    check_estimates(e5, NPAIR, 0.5, c.perm);
    lsh_free(L);
    free(sa);
    free(sb);
}

/* ------------------------------------------------ code points, words, short texts */

static void test_cjk_code_points(void **st) {
    (void)st;
    lm_minhash_cfg c = minhash_default(3);
    c.perm = 1024; /* sigma 0.0156 at J 0.5 */
    c.bands = 128;
    c.ngram = 4;
    /* code-point 4-grams: {中文字典} vs {中文字典, 文字典中}: J 1/2; byte
     * 4-grams would give 9/12 */
    const char *x = "中文字典", *y = "中文字典中";
    assert_true(fabs(true_cp_jaccard(x, y, 4) - 0.5) < 1e-12);
    shset bx = byte_set(x, 4), by = byte_set(y, 4);
    assert_true(fabs(set_jaccard(bx, by) - 0.75) < 1e-12);
    free_set(bx);
    free_set(by);
    double e = est(&c, x, y);
    assert_true(fabs(e - 0.5) <= 4 * sqrt(0.25 / c.perm));
    /* 4 CJK characters are one shingle; so are 4 ASCII ones */
    assert_true(est(&c, "中文字典", "中文字典") == 1.0);
    assert_true(est(&c, "中文字典", "中文字兴") < 0.05);
    /* 2-grams of "中文中" and "文中文" are the same set {中文, 文中} */
    c.ngram = 2;
    assert_true(est(&c, "中文中", "文中文") == 1.0);
    /* words mode: each CJK character is a word, spaces or not */
    c.words = 1;
    c.ngram = 1;
    assert_true(est(&c, "中文字典", "中 文 字 典") == 1.0);
    assert_true(est(&c, "中文字典", "典字文中") == 1.0); /* a set of 1-grams */
    c.ngram = 2;
    assert_true(est(&c, "中文字典", "中 文\n字\t典 ") == 1.0);
    assert_true(est(&c, "hello world 中文", "hello  world\n中 文") == 1.0);
    assert_true(est(&c, "hello world", "hello worlds") < 0.05);
    /* U+3000 (ideographic space) is white space, U+3002 (。) a word */
    assert_true(est(&c, "中文\xE3\x80\x80字", "中文 字") == 1.0);
    assert_true(est(&c, "中文。字", "中文 字") < 1.0);
}

static void test_short_and_empty(void **st) {
    (void)st;
    lm_minhash_cfg c = minhash_default(5);
    uint32_t sig[128], sig2[128];
    /* empty: no shingle, all UINT32_MAX */
    minhash_sig(&c, "", 0, sig);
    for (int k = 0; k < 128; k++) assert_true(sig[k] == UINT32_MAX);
    assert_true(minhash_jaccard(sig, sig, 128) == 1.0);
    minhash_sig(&c, "a", 1, sig2); /* one unit: one shingle */
    int any = 0;
    for (int k = 0; k < 128; k++) any |= sig2[k] != UINT32_MAX;
    assert_true(any);
    assert_true(minhash_jaccard(sig, sig2, 128) == 0.0);
    /* shorter than n: the whole text is the one shingle */
    assert_true(est(&c, "abc", "abc") == 1.0);
    assert_true(est(&c, "abc", "abcd") < 0.05);
    assert_true(est(&c, "abcd", "abcde") < 0.05);
    /* exactly n units, and n + 1: {abcde} vs {abcde, bcdef}, J 1/2 */
    c.perm = 1024;
    c.bands = 64;
    assert_true(fabs(est(&c, "abcde", "abcdef") - 0.5) <= 4 * sqrt(0.25 / 1024));
    /* words: white space only is empty; fewer words than n is one shingle */
    c = minhash_default(5);
    c.words = 1;
    minhash_sig(&c, " \n\t ", 4, sig);
    for (int k = 0; k < 128; k++) assert_true(sig[k] == UINT32_MAX);
    assert_true(est(&c, "two words", " two  words\n") == 1.0);
    assert_true(est(&c, "two words", "two words more") < 0.05);
    /* invalid UTF-8: each bad byte a unit; no crash, deterministic */
    c.words = 0;
    c.ngram = 2;
    const char bad[] = "a\xff\xfe\xc3(b\xed\xa0\x80z\xf4\x90\x80\x80";
    minhash_sig(&c, bad, sizeof bad - 1, sig);
    minhash_sig(&c, bad, sizeof bad - 1, sig2);
    assert_memory_equal(sig, sig2, sizeof sig);
    /* a bad byte is a unit of its own: "x\xc3(" is 3 units, its 2-grams
     * {x\xc3, \xc3(}; "x\xc3" (a truncated sequence) is 2 units: J 1/2 */
    c.perm = 1024;
    c.bands = 64;
    assert_true(fabs(est(&c, "x\xc3(", "x\xc3") - 0.5) <= 4 * sqrt(0.25 / 1024));
    /* an encoded surrogate (ED A0 80) is 3 units, not one */
    c.ngram = 3;
    assert_true(est(&c, "\xed\xa0\x80", "\xed\xa0\x80") == 1.0);
    assert_true(fabs(est(&c, "\xed\xa0\x80z", "\xed\xa0\x80") - 0.5) <= 4 * sqrt(0.25 / 1024));
}

static void test_cfg(void **st) {
    (void)st;
    char err[256];
    lm_minhash_cfg c = minhash_default(1);
    assert_int_equal(c.perm, 128);
    assert_int_equal(c.bands, 16);
    assert_int_equal(c.ngram, 5);
    assert_int_equal(c.words, 0);
    assert_int_equal(minhash_cfg_check(&c, err, sizeof err), 0);
    c.bands = 12; /* 128 % 12 != 0 */
    assert_int_equal(minhash_cfg_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "bands"));
    c = minhash_default(1);
    c.perm = 0;
    assert_int_equal(minhash_cfg_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "perm"));
    c = minhash_default(1);
    c.ngram = MINHASH_MAX_NGRAM + 1;
    assert_int_equal(minhash_cfg_check(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "ngram"));
    c = minhash_default(1);
    c.words = 2;
    assert_int_equal(minhash_cfg_check(&c, err, sizeof err), -1);
    /* seeds matter; perm blocks: the first 128 functions of a 600-function
     * signature are the 128-function signature (coefficient blocks of 256) */
    const char *t = "a short text for the seed test";
    uint32_t s1[600], s2[600];
    c = minhash_default(1);
    minhash_sig(&c, t, strlen(t), s1);
    c.seed = 2;
    minhash_sig(&c, t, strlen(t), s2);
    assert_true(minhash_jaccard(s1, s2, 128) < 0.1);
    c.seed = 1;
    c.perm = 600;
    c.bands = 600;
    minhash_sig(&c, t, strlen(t), s2);
    assert_memory_equal(s1, s2, 128 * sizeof(uint32_t));
    /* and the functions of the later blocks are different ones */
    assert_true(minhash_jaccard(s2, s2 + 300, 300) < 0.1);
}

/* ------------------------------------------------ the LSH index */

/* Signatures crafted row by row: the confirmation step drops band matches
 * whose estimate is below the threshold, and accepts exactly at it. */
static void test_band_false_positives(void **st) {
    (void)st;
    lm_minhash_cfg c = minhash_default(9); /* 16 bands x 8 rows */
    rnd_state = 99;
    uint32_t a[128], b[128];
    for (int k = 0; k < 128; k++) a[k] = (uint32_t)rnd();
    lm_lsh *L = lsh_new(&c, 16);
    assert_int_equal(lsh_offer(L, a, 5, 0.8), -1);
    /* equal in band 0 only: a candidate, estimate 8/128: kept */
    for (int k = 0; k < 128; k++) b[k] = k < 8 ? a[k] : (uint32_t)rnd();
    assert_true(minhash_jaccard(a, b, 128) < 0.8);
    assert_int_equal(lsh_offer(L, b, 6, 0.8), -1);
    assert_int_equal(lsh_count(L), 2);
    /* equal in 102 rows (bands 0..11 and 6 rows of band 12): 0.797 < 0.8 */
    for (int k = 0; k < 128; k++) b[k] = k < 102 ? a[k] : (uint32_t)rnd();
    assert_int_equal(lsh_offer(L, b, 7, 0.8), -1);
    /* 103 rows: 0.805 >= 0.8: the first kept that passes, id 5 */
    for (int k = 0; k < 128; k++) b[k] = k < 103 ? a[k] : (uint32_t)rnd();
    assert_int_equal(lsh_offer(L, b, 8, 0.8), 5);
    /* equal everywhere except one row in each band: 112/128 = 0.875, but no
     * band is shared: banding misses it (as documented) */
    for (int k = 0; k < 128; k++) b[k] = k % 8 == 0 ? (uint32_t)rnd() : a[k];
    assert_int_equal(lsh_offer(L, b, 9, 0.8), -1);
    /* lsh_insert: kept without a check, found afterwards */
    uint32_t d[128];
    for (int k = 0; k < 128; k++) d[k] = (uint32_t)rnd();
    lsh_insert(L, d, 77);
    assert_int_equal(lsh_offer(L, d, 10, 0.8), 77);
    assert_int_equal(lsh_count(L), 5);
    lsh_free(L);
}

/* Families of signatures: a base and members that redraw each row with
 * probability q, giving estimates all over [0, 1]. */
static uint32_t *family_sigs(int n, int perm, uint64_t seed) {
    rnd_state = seed;
    uint32_t *s = malloc(sizeof(uint32_t) * (size_t)n * (size_t)perm);
    static const double q[] = {0.02, 0.1, 0.2, 0.3, 0.5, 0.9};
    for (int i = 0; i < n; i++) {
        int base = i < 40 ? -1 : (int)rnd_below(40);
        double qi = q[rnd_below(6)];
        for (int k = 0; k < perm; k++) {
            int fresh = base < 0 || (double)(rnd() >> 11) / 9007199254740992.0 < qi;
            /* a small value range, so that unrelated rows also meet */
            s[(size_t)i * perm + k] = fresh ? (uint32_t)rnd_below(1u << 20) : s[(size_t)base * perm + k];
        }
    }
    return s;
}

/* The index against a direct computation: for each offer, the expected
 * answer is the first (band j, kept doc in kept order) such that the two
 * signatures agree on every row of band j and the estimate passes; -1 when
 * none. Also with a grown index, and with another band shape. */
static void check_brute(const lm_minhash_cfg *c, int n, double thr, int64_t expect) {
    uint32_t *s = family_sigs(n, c->perm, 1234 + (uint64_t)c->bands);
    int rows = c->perm / c->bands;
    int64_t *kept = malloc(sizeof(int64_t) * (size_t)n);
    int nk = 0, ndup = 0;
    lm_lsh *L = lsh_new(c, expect);
    for (int i = 0; i < n; i++) {
        const uint32_t *x = s + (size_t)i * c->perm;
        int64_t want = -1;
        for (int j = 0; j < c->bands && want < 0; j++)
            for (int t = 0; t < nk && want < 0; t++) {
                const uint32_t *y = s + (size_t)kept[t] * c->perm;
                if (!memcmp(x + j * rows, y + j * rows, sizeof(uint32_t) * (size_t)rows) &&
                    minhash_jaccard(x, y, c->perm) >= thr)
                    want = kept[t] + 1000;
            }
        int64_t got = lsh_offer(L, x, i + 1000, thr);
        assert_int_equal(got, want);
        if (want < 0) kept[nk++] = i;
        else ndup++;
    }
    assert_int_equal(lsh_count(L), nk);
    assert_true(ndup > n / 10 && nk > 40); /* the test has both kinds */
    lsh_free(L);
    free(kept);
    free(s);
}

static void test_lsh_brute(void **st) {
    (void)st;
    lm_minhash_cfg c = minhash_default(4);
    check_brute(&c, 1500, 0.8, 1500);
    check_brute(&c, 1500, 0.8, 0); /* grown */
    check_brute(&c, 1500, 0.5, 3);
    c.perm = 60;
    c.bands = 20; /* 3 rows */
    check_brute(&c, 1500, 0.7, 0);
    c.perm = 63;
    c.bands = 21; /* odd rows */
    check_brute(&c, 800, 0.6, 100);
}

/* Memory: the reported bytes per kept document against dedup.h's formula. */
static void test_bytes_per_doc(void **st) {
    (void)st;
    lm_minhash_cfg c = minhash_default(2);
    const int N = 5000;
    uint32_t *s = family_sigs(N, c.perm, 5);
    lm_lsh *L = lsh_new(&c, N);
    for (int i = 0; i < N; i++) lsh_insert(L, s + (size_t)i * c.perm, i);
    size_t b = lsh_bytes_per_doc(L);
    double lo = 4 * 128 + 12 + 8 * 16 / 0.7, hi = 4 * 128 + 12 + 8 * 16 / 0.35 + 1;
    assert_true((double)b >= lo && (double)b <= hi);
    lsh_free(L);
    /* grown: at most twice the per-doc arrays plus the tables at 0.35 */
    L = lsh_new(&c, 0);
    for (int i = 0; i < N; i++) lsh_insert(L, s + (size_t)i * c.perm, i);
    b = lsh_bytes_per_doc(L);
    assert_true((double)b >= lo && (double)b <= 2 * (4 * 128 + 12) + 8 * 16 / 0.35 + 1);
    lsh_free(L);
    free(s);
}

/* ------------------------------------------------ determinism */

static void test_determinism(void **st) {
    (void)st;
    /* a corpus of near and far texts */
    enum { N = 300 };
    char *docs[N];
    rnd_state = 77;
    for (int i = 0; i < N; i += 3) {
        char *a, *b, *x, *y;
        cjk_pair(200 + (int)rnd_below(200), 3, 9, 5, &a, &b);
        word_pair(40, 2, 6, 3, &x, &y);
        docs[i] = a;
        docs[i + 1] = b;
        docs[i + 2] = x;
        free(y);
    }
    lm_minhash_cfg c = minhash_default(31);
    uint32_t *s1 = malloc(sizeof(uint32_t) * N * 128), *s2 = malloc(sizeof(uint32_t) * N * 128);
    for (int i = 0; i < N; i++) minhash_sig(&c, docs[i], strlen(docs[i]), s1 + (size_t)i * 128);
    /* signatures do not depend on threads */
#pragma omp parallel for schedule(dynamic, 1) num_threads(4)
    for (int i = N - 1; i >= 0; i--) minhash_sig(&c, docs[i], strlen(docs[i]), s2 + (size_t)i * 128);
    assert_memory_equal(s1, s2, sizeof(uint32_t) * N * 128);
    /* decisions depend only on the offer order (not on expect_docs) */
    int64_t r1[N], r2[N];
    lm_lsh *L1 = lsh_new(&c, N), *L2 = lsh_new(&c, 1);
    int dups = 0;
    for (int i = 0; i < N; i++) {
        r1[i] = lsh_offer(L1, s1 + (size_t)i * 128, i, 0.8);
        r2[i] = lsh_offer(L2, s2 + (size_t)i * 128, i, 0.8);
        dups += r1[i] >= 0;
    }
    assert_memory_equal(r1, r2, sizeof r1);
    assert_true(dups > 0);
    lsh_free(L1);
    lsh_free(L2);
    /* pinned values: the hash functions must not change, signatures stored
     * in token files (/docs/minhash) are compared across versions */
    uint32_t sig[128];
    lm_minhash_cfg d = minhash_default(0);
    minhash_sig(&d, "hello world", 11, sig);
    char got[64];
    snprintf(got, sizeof got, "%08x %08x %08x", sig[0], sig[1], sig[127]);
    assert_string_equal(got, PINNED_SIG);
    snprintf(got, sizeof got, "%016llx", (unsigned long long)dedup_exact_hash("hello world", 11));
    assert_string_equal(got, PINNED_EXACT);
    free(s1);
    free(s2);
    for (int i = 0; i < N; i++) free(docs[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact),           cmocka_unit_test(test_planted_chars),
        cmocka_unit_test(test_planted_words),   cmocka_unit_test(test_cjk_code_points),
        cmocka_unit_test(test_short_and_empty), cmocka_unit_test(test_cfg),
        cmocka_unit_test(test_band_false_positives), cmocka_unit_test(test_lsh_brute),
        cmocka_unit_test(test_bytes_per_doc),   cmocka_unit_test(test_determinism),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
