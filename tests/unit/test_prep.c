/* test_prep.c — prep's input model (src/app/prep_read.c, prep_doc.c):
 *   - prep_scan over any cut of a file into rank ranges, read in growing
 *     pieces as prep_read does, finds exactly the documents (and line
 *     numbers) of one pass over the whole file, and those equal the former
 *     serial splitter's (kept here as the reference): text with a
 *     separator (CR LF, blank and empty documents, a separator first or
 *     last, no final newline), whole-file text, JSONL;
 *   - prep_doc_parse on JSONL: text, SFT source/target, category, and the
 *     errors; a mutation fuzz loop over JSONL lines (it must answer, never
 *     crash: run it under ASan via build/san/tests/test_prep). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "prep.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the reference: the serial splitter prep used before ranks ---- */
typedef struct {
    int64_t at[4096], len[4096], line[4096];
    int n;
} refdocs;

static int64_t line_of(const char *buf, int64_t at) {
    int64_t l = 1;
    for (int64_t i = 0; i < at; i++) l += buf[i] == '\n';
    return l;
}

static int blank(const char *s, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (s[k] != ' ' && s[k] != '\n' && s[k] != '\r' && s[k] != '\t') return 0;
    return 1;
}

static void ref_push(refdocs *d, const char *buf, int64_t at, int64_t len, int jsonl) {
    if (!jsonl && (len == 0 || blank(buf + at, len))) return; /* prep drops blank text documents */
    d->at[d->n] = at;
    d->len[d->n] = len;
    d->line[d->n++] = line_of(buf, at);
}

static void ref_split(refdocs *d, const char *buf, int64_t n, const char *sep, int jsonl) {
    d->n = 0;
    if (jsonl) {
        for (int64_t line = 0; line < n;) {
            int64_t e = line;
            while (e < n && buf[e] != '\n') e++;
            int64_t k = line;
            while (k < e && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r')) k++;
            if (k < e) ref_push(d, buf, line, e - line, 1);
            line = e + 1;
        }
        return;
    }
    if (!sep) {
        ref_push(d, buf, 0, n, 0);
        return;
    }
    int64_t seplen = (int64_t)strlen(sep), doc = 0, line = 0;
    while (line <= n) {
        int64_t e = line;
        while (e < n && buf[e] != '\n') e++;
        int64_t le = e;
        if (le > line && buf[le - 1] == '\r') le--;
        if (le - line == seplen && memcmp(buf + line, sep, (size_t)seplen) == 0) {
            ref_push(d, buf, doc, line - doc, 0);
            doc = e + 1;
        }
        line = e + 1;
    }
    if (doc < n) ref_push(d, buf, doc, n - doc, 0);
}

/* ---- prep_scan over a cut into ranges, as prep_read reads ---- */
static void ranged(refdocs *d, const char *buf, int64_t n, const char *sep, int jsonl, const int64_t *cut, int k,
                   unsigned *seed) {
    d->n = 0;
    int64_t back = (int64_t)prep_scan_back(sep, jsonl);
    for (int r = 0; r < k; r++) {
        int64_t a = cut[r], b = cut[r + 1];
        if (a >= b) continue;
        int64_t at = !jsonl && !sep ? 0 : a > back ? a - back : 0, end = !jsonl && !sep ? (a == 0 ? n : 0) : b;
        int more = 1;
        prep_span *sp = NULL;
        int64_t ns = 0;
        while (more) {
            /* the bytes read so far alone, between guards of junk: a read outside them shows */
            static char held[4096 + 64];
            for (int g = 0; g < 32; g++) held[g] = held[32 + (end - at) + g] = "%\nx"[rand_r(seed) % 3];
            memcpy(held + 32, buf + at, (size_t)(end - at));
            ns = prep_scan(held + 32, at, end - at, end == n, a, b, sep, jsonl, 1, &sp, &more);
            if (more) { /* read on by a random step */
                assert_true(end < n);
                end += 1 + (int64_t)(rand_r(seed) % 7);
                if (end > n) end = n;
            }
        }
        int64_t before = line_of(buf, a) - 1;
        for (int64_t i = 0; i < ns; i++) {
            if (!jsonl && blank(buf + sp[i].at, sp[i].len)) continue;
            assert_true(sp[i].at >= a && sp[i].at < b);
            d->at[d->n] = sp[i].at;
            d->len[d->n] = sp[i].len;
            d->line[d->n++] = sp[i].line + (jsonl || sep ? before : 0);
        }
        lm_free(sp);
    }
}

static void same(const refdocs *x, const refdocs *y, const char *what) {
    if (x->n != y->n) fail_msg("%s: %d documents, want %d", what, y->n, x->n);
    for (int i = 0; i < x->n; i++)
        if (x->at[i] != y->at[i] || x->len[i] != y->len[i] || x->line[i] != y->line[i])
            fail_msg("%s: document %d at %lld+%lld line %lld, want %lld+%lld line %lld", what, i, (long long)y->at[i],
                     (long long)y->len[i], (long long)y->line[i], (long long)x->at[i], (long long)x->len[i],
                     (long long)x->line[i]);
}

/* A random text of lines drawn from a small alphabet of line kinds. */
static int64_t random_text(char *buf, int64_t cap, const char *sep, int jsonl, unsigned *seed) {
    static const char *kinds[] = {"alpha beta", "", "  ", "x", "\r", "%%", "%", "%x", " %", "\t", "{\"text\": \"a\"}", "gamma\r"};
    int64_t n = 0;
    int lines = 1 + (int)(rand_r(seed) % 40);
    for (int l = 0; l < lines; l++) {
        const char *k = rand_r(seed) % 4 == 0 && sep ? sep : kinds[rand_r(seed) % (sizeof kinds / sizeof kinds[0])];
        if (jsonl && rand_r(seed) % 3 == 0) k = "{\"text\": \"doc\"}";
        int64_t m = (int64_t)strlen(k);
        if (n + m + 2 >= cap) break;
        memcpy(buf + n, k, (size_t)m);
        n += m;
        if (rand_r(seed) % 5 == 0 && n + 1 < cap) buf[n++] = '\r';
        if (l + 1 < lines || rand_r(seed) % 2) buf[n++] = '\n';
    }
    return n;
}

static void test_scan_splits(void **state) {
    (void)state;
    static char buf[4096];
    static refdocs want, got;
    const char *seps[] = {"%", "%%", "", NULL, NULL};
    unsigned seed = 12345;
    int checked = 0;
    for (int it = 0; it < 3000; it++) {
        int mode = it % 5, jsonl = mode == 4;
        const char *sep = seps[mode];
        int64_t n = random_text(buf, (int64_t)sizeof buf, sep, jsonl, &seed);
        ref_split(&want, buf, n, sep, jsonl);
        /* one range, then random cuts into 2..6 ranges (some empty) */
        for (int k = 1; k <= 6; k++) {
            int64_t cut[8];
            cut[0] = 0;
            cut[k] = n;
            for (int r = 1; r < k; r++) cut[r] = n ? (int64_t)(rand_r(&seed) % (unsigned)(n + 1)) : 0;
            for (int r = 1; r < k; r++) /* sort */
                for (int q = r; q > 1 && cut[q] < cut[q - 1]; q--) {
                    int64_t t = cut[q];
                    cut[q] = cut[q - 1];
                    cut[q - 1] = t;
                }
            ranged(&got, buf, n, sep, jsonl, cut, k, &seed);
            char what[64];
            snprintf(what, sizeof what, "iteration %d, mode %d, %d ranges", it, mode, k);
            same(&want, &got, what);
            checked++;
        }
    }
    /* every single cut point of one text with each separator, and a text without a final newline */
    const char *fixed = "%\nfirst\r\n%\r\n\n%\nsecond doc\nline two\n%\n%\n  \n%\nlast";
    for (int mode = 0; mode < 5; mode++) {
        int64_t n = (int64_t)strlen(fixed);
        memcpy(buf, fixed, (size_t)n);
        ref_split(&want, buf, n, seps[mode], mode == 4);
        for (int64_t c = 0; c <= n; c++) {
            int64_t cut[3] = {0, c, n};
            ranged(&got, buf, n, seps[mode], mode == 4, cut, 2, &seed);
            same(&want, &got, "fixed text");
            checked++;
        }
    }
    fprintf(stderr, "# %d cuts checked against the serial splitter\n", checked);
}

static void test_parse(void **state) {
    (void)state;
    char why[200];
    prep_doc d;
    const char *l1 = "{\"text\": \"h\\u00e9llo\", \"category\": \"web\", \"x\": [1]}";
    d = (prep_doc){.src = -1};
    assert_int_equal(prep_doc_parse(l1, strlen(l1), 1, &d, why, sizeof why), 0);
    assert_string_equal(d.text, "h\xc3\xa9llo");
    assert_int_equal(d.len, 6);
    assert_int_equal(d.src, -1);
    assert_string_equal(d.catname, "web");
    prep_doc_free(&d);
    const char *l2 = "{\"source\": \"Q: 2+2?\", \"target\": \" 4\"}";
    d = (prep_doc){.src = -1};
    assert_int_equal(prep_doc_parse(l2, strlen(l2), 1, &d, why, sizeof why), 0);
    assert_string_equal(d.text, "Q: 2+2? 4");
    assert_int_equal(d.src, 7);
    assert_null(d.catname);
    prep_doc_free(&d);
    const char *blankdoc = "{\"text\": \" \\n\\t \"}";
    d = (prep_doc){.src = -1};
    assert_int_equal(prep_doc_parse(blankdoc, strlen(blankdoc), 1, &d, why, sizeof why), 1);
    prep_doc_free(&d);
    const char *bad[] = {"{\"txt\": 3}", "{\"text\": 3}", "[1]", "{\"text\": \"a\"", "{\"source\": \"a\"}",
                         "{\"text\": \"a\", \"category\": 3}", "{\"text\": \"a\", \"category\": \"\"}",
                         "{\"text\": \"a\", \"category\": \"a\\nb\"}", "{\"text\": \"a\", \"category\": \"a\\u0000b\"}",
                         "{\"text\": \"\xff\"}", "{} {}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = (prep_doc){.src = -1};
        why[0] = 0;
        if (prep_doc_parse(bad[i], strlen(bad[i]), 1, &d, why, sizeof why) != -1) fail_msg("accepted: %s", bad[i]);
        assert_true(why[0] != 0);
        prep_doc_free(&d);
    }
    /* text: the bytes as they are; blank is no document */
    d = (prep_doc){.src = -1};
    assert_int_equal(prep_doc_parse("a\0b", 3, 0, &d, why, sizeof why), 0);
    assert_int_equal(d.len, 3);
    assert_memory_equal(d.text, "a\0b", 3);
    prep_doc_free(&d);
    assert_int_equal(prep_doc_parse(" \r\n", 3, 0, &d, why, sizeof why), 1);
}

/* Mutations of valid lines: byte flips, cuts, insertions of JSON's special
 * characters and of invalid UTF-8. Every answer is -1 (with a reason), 0 (a
 * consistent document) or 1. */
static void test_fuzz(void **state) {
    (void)state;
    static const char *seeds[] = {
        "{\"text\": \"hello world\"}",
        "{\"source\": \"Translate: chat\", \"target\": \"cat\", \"category\": \"sft\"}",
        "{\"text\": \"\\u5e8a\\u524d \\\"quoted\\\" \\\\ tab\\t\", \"category\": \"zh\", \"meta\": {\"a\": [1, 2.5e3, null, true]}}",
        "{\"category\": \"web\", \"text\": \"x\"}",
    };
    static const char ins[] = "{}[]\",:\\u0 \x80\xff\xc3\n";
    json_object_seed(0);
    unsigned seed = 777;
    int n_ok = 0, n_bad = 0, n_blank = 0;
    char line[512], why[200];
    for (int it = 0; it < 200000; it++) {
        const char *s = seeds[it % 4];
        size_t n = strlen(s);
        memcpy(line, s, n);
        int muts = 1 + (int)(rand_r(&seed) % 4);
        for (int m = 0; m < muts; m++) {
            int kind = (int)(rand_r(&seed) % 4);
            size_t at = n ? (size_t)rand_r(&seed) % n : 0;
            if (kind == 0 && n) line[at] = (char)(rand_r(&seed) & 0xff);
            else if (kind == 1 && n) n = at;
            else if (n + 1 < sizeof line) {
                memmove(line + at + 1, line + at, n - at);
                line[at] = ins[rand_r(&seed) % (sizeof ins - 1)];
                n++;
            }
        }
        prep_doc d = {.src = -1};
        why[0] = 0;
        int rc = prep_doc_parse(line, n, 1, &d, why, sizeof why);
        if (rc == -1) {
            assert_true(why[0] != 0);
            n_bad++;
        } else if (rc == 0) {
            assert_non_null(d.text);
            assert_true(d.src >= -1 && d.src <= (int64_t)d.len);
            if (d.catname) assert_true(strlen(d.catname) >= 1 && strlen(d.catname) <= 200 && !strpbrk(d.catname, "\r\n"));
            n_ok++;
        } else {
            assert_int_equal(rc, 1);
            n_blank++;
        }
        prep_doc_free(&d);
    }
    fprintf(stderr, "# fuzz: %d parsed, %d blank, %d refused\n", n_ok, n_blank, n_bad);
    assert_true(n_ok > 1000 && n_bad > 1000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scan_splits),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
