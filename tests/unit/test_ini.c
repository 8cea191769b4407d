/* test_ini.c — the INI schema parser (src/core/lm_ini.h) and the getopt
 * helper (src/core/opts.h): every value type and its range, defaults, the
 * boolean grammar, lines longer than inih's 200-byte buffer, unknown and
 * duplicate keys and sections, FILE:LINE and section.key in every message,
 * overrides, sections stored elsewhere or only checked, the text form, and
 * unknown options / missing values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common.h"
#include "lm_ini.h"
#include "opts.h"
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int i, dp, b, e_idx;
    long l;
    uint64_t u;
    double d, h;
    char e[8], s[300], p[64];
} rec;

#define F(f) offsetof(rec, f), sizeof(((rec *)0)->f)
static const char *no_x(const char *v, char *why, size_t wn) {
    (void)why, (void)wn;
    return strchr(v, 'x') ? "must not contain x" : NULL;
}
static const lm_ini_key KEYS[] = {
    {"a", "i", INI_INT, F(i), -3, 7, 0, 0, INI_REQUIRED, NULL, "5", NULL},
    {"a", "dp", INI_INT, F(dp), 1, INT_MAX, 0, 0, INI_AUTO, NULL, "auto", NULL},
    {"a", "l", INI_LONG, F(l), 0, LONG_MAX, 0, 0, 0, NULL, NULL, NULL},
    {"a", "u", INI_U64, F(u), 0, 0, 0, 0, 0, NULL, "42", NULL},
    {"b", "d", INI_DOUBLE, F(d), 0, 0, 0, 1, INI_LO_OPEN | INI_HAS_HI, NULL, "0.5", NULL},
    {"b", "h", INI_DOUBLE, F(h), 0, 0, 2, 0, 0, NULL, NULL, NULL},
    {"b", "b", INI_BOOL, F(b), 0, 0, 0, 0, 0, NULL, "on", NULL},
    {"b", "e", INI_ENUM, F(e), 0, 0, 0, 0, 0, "red|green", "green", NULL},
    {"b", "k", INI_ENUM, F(e_idx), 0, 0, 0, 0, INI_INDEX, "bf16|fp32", NULL, NULL},
    {"c", "s", INI_STRING, F(s), 0, 0, 0, 0, INI_EMPTY_OK, NULL, NULL, no_x},
    {"c", "p", INI_PATH, F(p), 0, 8, 0, 0, INI_LIST, "test limit", "a,b", NULL},
};
#define NK ((int)(sizeof KEYS / sizeof KEYS[0]))
static const char *const SECS[] = {"a", "b", "c"};
static const lm_ini_schema S = {"conf", KEYS, NK, SECS, 3, sizeof(rec)};

static rec R;
static int LINE[NK];
static char ERR[LM_ERRLEN];

/* Parse `text` as t.ini on top of the defaults; returns the code. */
static int parse(const char *text) {
    lm_ini_defaults(&S, &R);
    memset(LINE, 0, sizeof LINE);
    lm_ini_dest d = {NULL, &R, LINE};
    return lm_ini_parse(&S, text, "t.ini", &d, 1, ERR, sizeof ERR);
}

/* The text fails with code 2 and a message holding both parts. */
static void bad(const char *text, const char *a, const char *b) {
    assert_int_equal(parse(text), LM_ERR_INPUT);
    if (!strstr(ERR, a) || (b && !strstr(ERR, b))) fail_msg("'%s' lacks '%s' / '%s'", ERR, a, b ? b : "");
}

static void test_defaults_and_types(void **st) {
    (void)st;
    assert_int_equal(parse(""), 0);
    assert_true(R.i == 5 && R.dp == 0 && R.l == 0 && R.u == 42 && R.d == 0.5 && R.b == 1 && R.e_idx == 0);
    assert_string_equal(R.e, "green");
    assert_string_equal(R.p, "a,b");
    assert_int_equal(parse("[a]\ni = -3\ndp = 4\nl = 9000000000\nu = 18446744073709551615\n[b]\nd = 1\nh = 2\n"
                           "b = No\ne = RED\nk = fp32\n[c]\ns = hello world\np = ab,cd\n"), 0);
    assert_true(R.i == -3 && R.dp == 4 && R.l == 9000000000L && R.u == UINT64_MAX && R.d == 1 && R.h == 2);
    assert_true(R.b == 0 && R.e_idx == 1);
    assert_string_equal(R.e, "red"); /* the canonical spelling */
    assert_string_equal(R.s, "hello world");
    assert_int_equal(LINE[0], 2);
    assert_int_equal(LINE[1], 3);
    assert_int_equal(LINE[4], 7);
    assert_int_equal(parse("[a]\ndp = AUTO\n"), 0);
    assert_int_equal(R.dp, 0);
}

static void test_ranges(void **st) {
    (void)st;
    bad("[a]\ni = 8\n", "conf t.ini:2: a.i = '8': must be between -3 and 7", NULL);
    bad("[a]\ni = 1.5\n", "a.i = '1.5': not an integer", NULL);
    bad("[a]\ni = 99999999999999999999\n", "a.i", "between -3 and 7");
    bad("[a]\ndp = 0\n", "a.dp = '0': must be auto or an integer >= 1", NULL);
    bad("[a]\nl = -1\n", "a.l = '-1': must be >= 0", NULL);
    bad("[a]\nu = -1\n", "a.u", "not an unsigned 64-bit integer");
    bad("[a]\nu = 18446744073709551616\n", "a.u", "out of range");
    bad("[b]\nd = 0\n", "b.d = '0': must be in (0, 1]", NULL);
    bad("[b]\nd = 1.0001\n", "b.d", "must be in (0, 1]");
    bad("[b]\nd = nan\n", "b.d", "must be finite");
    bad("[b]\nd = 1e400\n", "b.d", "must be finite");
    bad("[b]\nd = 0.5x\n", "b.d = '0.5x': not a number", NULL);
    bad("[b]\nh = 1.99\n", "b.h = '1.99': must be >= 2", NULL);
    bad("[b]\ne = blue\n", "b.e = 'blue': must be one of red/green", NULL);
    bad("[b]\nk = fp64\n", "b.k", "must be one of bf16/fp32");
    bad("[c]\ns = axb\n", "c.s = 'axb': must not contain x", NULL);
    bad("[c]\np = abcdefghi\n", "c.p", "a path in the list is 9 bytes long; the longest usable is 8 bytes (test limit)");
    assert_int_equal(parse("[c]\np = abcdefgh,abcdefgh\n"), 0); /* each path of the list counts alone */
}

static void test_booleans(void **st) {
    (void)st;
    const char *t[] = {"true", "TRUE", "1", "yes", "Yes", "on"}, *f[] = {"false", "False", "0", "no", "off", "OFF"};
    char buf[64];
    for (int i = 0; i < 6; i++) {
        snprintf(buf, sizeof buf, "[b]\nb = %s\n", t[i]);
        assert_int_equal(parse(buf), 0);
        assert_int_equal(R.b, 1);
        snprintf(buf, sizeof buf, "[b]\nb = %s\n", f[i]);
        assert_int_equal(parse(buf), 0);
        assert_int_equal(R.b, 0);
    }
    bad("[b]\nb = 2\n", "b.b = '2': not a boolean (true/false, yes/no, on/off, 1/0)", NULL);
    bad("[b]\nb = y\n", "not a boolean", NULL);
}

static void test_structure_errors(void **st) {
    (void)st;
    bad("[a]\ni = 1\n[zz]\n", "conf t.ini:3: unknown section [zz] (known: a, b, c)", NULL);
    bad("[a]\nnope = 1\n", "conf t.ini:2: unknown key a.nope (known: i, dp, l, u)", NULL);
    bad("[a]\ni = 1\n[b]\nd = 0.1\n[a]\ni = 2\n", "conf t.ini:6: duplicate key a.i (first set at line 2)", NULL);
    bad("i = 1\n", "conf t.ini:1: key 'i' outside any [section]", NULL);
    bad("[a]\n\ni\n", "conf t.ini:3: syntax error", NULL);
    bad("[a\n", "t.ini:1: syntax error", NULL);
    lm_ini_dest d = {NULL, &R, LINE};
    assert_int_equal(parse("[b]\nd = 0.1\n"), 0);
    assert_int_equal(lm_ini_missing(&S, &d, "t.ini", ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "conf t.ini: a.i is required"));
    assert_int_equal(parse("[a]\ni = 0\n"), 0);
    assert_int_equal(lm_ini_missing(&S, &d, "t.ini", ERR, sizeof ERR), 0);
}

static void test_lines_and_comments(void **st) {
    (void)st;
    /* a 290-byte value: beyond inih's 200-byte line buffer */
    char big[400], text[512], want[300];
    memset(want, 'q', 290);
    want[290] = 0;
    snprintf(big, sizeof big, "%s", want);
    snprintf(text, sizeof text, "\xEF\xBB\xBF; comment\n# another\n[c] ; after a header\n  s =   %s   ; inline\n", big);
    assert_int_equal(parse(text), 0);
    assert_string_equal(R.s, want);
    assert_int_equal(LINE[9], 4);
    /* a long bad value still names its line */
    snprintf(text, sizeof text, "[c]\n\ns = %sx\n", big);
    bad(text, "conf t.ini:3: c.s = 'qqqq", "...': must not contain x");
    /* a long line that is not key = value */
    snprintf(text, sizeof text, "[c]\n%s\n", big);
    bad(text, "conf t.ini:2: line too long and not a key = value line", NULL);
    /* `;` inside a word is part of the value; after a space it starts a comment */
    assert_int_equal(parse("[c]\ns = a;b #c\n"), 0);
    assert_string_equal(R.s, "a;b");
}

static void test_overrides(void **st) {
    (void)st;
    lm_ini_dest d = {NULL, &R, LINE};
    assert_int_equal(parse("[a]\ni = 1\n"), 0);
    assert_int_equal(lm_ini_override(&S, " a.i = 7 ", &d, ERR, sizeof ERR), 0);
    assert_true(R.i == 7 && LINE[0] == INI_BY_OVERRIDE);
    assert_int_equal(lm_ini_override(&S, "a.i=8", &d, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "override: a.i = '8': must be between -3 and 7"));
    assert_int_equal(lm_ini_override(&S, "a.zz=1", &d, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "override 'a.zz=1': unknown key a.zz"));
    assert_int_equal(lm_ini_override(&S, "ai=1", &d, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "expected section.key=value"));
    assert_int_equal(lm_ini_override(&S, "b.b=off", &d, ERR, sizeof ERR), 0);
    assert_int_equal(R.b, 0);
}

/* Keys valid in any section; two sections stored, the others only checked. */
static void test_any_section(void **st) {
    (void)st;
    static const lm_ini_key K[] = {{NULL, "x", INI_INT, F(i), 0, 9, 0, 0, INI_REQUIRED, NULL, "1", NULL}};
    const lm_ini_schema A = {"cal", K, 1, NULL, 0, sizeof(rec)};
    rec r1, r2;
    int l1[1] = {0}, l2[1] = {0};
    lm_ini_defaults(&A, &r1);
    lm_ini_defaults(&A, &r2);
    lm_ini_dest d[2] = {{"one", &r1, l1}, {"two", &r2, l2}};
    assert_int_equal(lm_ini_parse(&A, "[zero]\nx = 5\n[two]\nx = 2\n[other]\nx = 3\n", "c", d, 2, ERR, sizeof ERR), 0);
    assert_true(r1.i == 1 && l1[0] == 0 && r2.i == 2 && l2[0] == 4);
    assert_int_equal(lm_ini_missing(&A, &d[0], "c", ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "cal c: one.x is required"));
    /* unstored sections are checked too, each on its own */
    assert_int_equal(lm_ini_parse(&A, "[zero]\nx = 10\n", "c", d, 2, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "cal c:2: zero.x = '10': must be between 0 and 9"));
    assert_int_equal(lm_ini_parse(&A, "[p]\nx = 1\n[q]\nx = 1\n[q]\nx = 2\n", "c", d, 2, ERR, sizeof ERR),
                     LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "c:6: duplicate key q.x (first set at line 4)"));
}

/* Numbered sections [g.1] .. [g.count]: keys into an element struct of
 * their own, the header lines, overrides g.N.key=value, the range of N,
 * an unstored family only checked, the section's text and defaults. */
static void test_numbered(void **st) {
    (void)st;
    typedef struct { int n; char s[16]; } el;
    static const lm_ini_key K[] = {
        {"top", "x", INI_INT, F(i), 0, 9, 0, 0, 0, NULL, "1", NULL},
        {"g.#", "n", INI_INT, offsetof(el, n), sizeof(int), 1, 99, 0, 0, 0, NULL, "5", NULL},
        {"g.#", "s", INI_STRING, offsetof(el, s), 16, 0, 0, 0, 0, INI_EMPTY_OK, NULL, NULL, NULL},
    };
    static const char *const SS[] = {"top", "g.#"};
    const lm_ini_schema A = {"cfg", K, 3, SS, 2, sizeof(rec)};
    rec r;
    el e[3];
    int lt[3] = {0}, le[3][3], hd[3];
    memset(e, 0, sizeof e);
    memset(le, 0, sizeof le);
    memset(hd, 0, sizeof hd);
    lm_ini_defaults(&A, &r);
    assert_int_equal(r.i, 1);
    lm_ini_dest d = {NULL, &r, lt};
    lm_ini_numbered nd = {"g.#", e, sizeof(el), 3, &le[0][0], hd};
    assert_int_equal(lm_ini_parse_n(&A, "[top]\nx = 2\n[g.2]\nn = 7\n[g.1]\n[g.3]\ns = hi\n", "c", &d, 1, &nd, 1, ERR,
                                    sizeof ERR), 0);
    assert_true(r.i == 2 && e[1].n == 7 && le[1][1] == 4 && e[0].n == 0 && !strcmp(e[2].s, "hi"));
    assert_true(hd[0] == 5 && hd[1] == 3 && hd[2] == 6);
    assert_int_equal(lm_ini_override_n(&A, "g.1.n=9", &d, 1, &nd, 1, ERR, sizeof ERR), 0);
    assert_true(e[0].n == 9 && le[0][1] == INI_BY_OVERRIDE);
    assert_int_equal(lm_ini_override_n(&A, "top.x=3", &d, 1, &nd, 1, ERR, sizeof ERR), 0);
    assert_int_equal(r.i, 3);
    /* errors name the section or key and the line */
    assert_int_equal(lm_ini_parse_n(&A, "[g.4]\nn = 1\n", "c", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "cfg c:1: section [g.4]: at most 3 [g.N] sections"));
    assert_int_equal(lm_ini_parse_n(&A, "[g.0]\n", "c", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "c:1: section [g.0]: numbered sections are [g.1], [g.2]"));
    assert_int_equal(lm_ini_parse_n(&A, "[g.1]\nx = 1\n", "c", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "c:2: unknown key g.1.x (known: n, s)"));
    memset(le, 0, sizeof le); /* a fresh parse: no key set yet */
    assert_int_equal(lm_ini_parse_n(&A, "[g.2]\nn = 100\n", "c", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "c:2: g.2.n = '100': must be between 1 and 99"));
    assert_int_equal(lm_ini_parse_n(&A, "[g.#]\n", "c", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "unknown section [g.#] (known: top, g.N)"));
    assert_int_equal(lm_ini_parse_n(&A, "[top]\nn = 1\n", "c", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "unknown key top.n"));
    assert_int_equal(lm_ini_override_n(&A, "g.9.n=1", &d, 1, &nd, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "override 'g.9.n=1': section [g.9]: at most 3"));
    /* without a destination for the family: checked, not stored */
    assert_int_equal(lm_ini_parse(&A, "[g.12]\nn = 4\n", "c", &d, 1, ERR, sizeof ERR), 0);
    assert_int_equal(lm_ini_parse(&A, "[g.12]\nn = 0\n", "c", &d, 1, ERR, sizeof ERR), LM_ERR_INPUT);
    /* text: the family's keys only in their own sections */
    char buf[256];
    lm_ini_to_text(&A, &r, buf, sizeof buf);
    assert_string_equal(buf, "[top]\nx = 3\n");
    assert_int_equal(lm_ini_section_to_text(&A, "g.#", "g.3", &e[2], buf, sizeof buf), strlen("[g.3]\nn = 0\ns = hi\n"));
    assert_string_equal(buf, "[g.3]\nn = 0\ns = hi\n");
    lm_ini_section_defaults(&A, "g.#", &e[2]);
    assert_true(e[2].n == 5 && e[2].s[0] == 0);
}

static void test_to_text(void **st) {
    (void)st;
    assert_int_equal(parse("[a]\ni = 3\nl = 77\n[b]\nd = 0.1\nh = 2.5\nb = off\ne = red\nk = fp32\n[c]\ns = s t\n"), 0);
    rec first = R;
    size_t n = lm_ini_to_text(&S, &R, NULL, 0);
    char *buf = malloc(n + 1);
    assert_int_equal(lm_ini_to_text(&S, &R, buf, n + 1), n);
    assert_non_null(strstr(buf, "[a]\ni = 3\ndp = auto\n"));
    assert_non_null(strstr(buf, "k = fp32\n"));
    assert_int_equal(parse(buf), 0);
    assert_memory_equal(&first, &R, sizeof R);
    free(buf);
}

static void test_read_file(void **st) {
    (void)st;
    char *text;
    assert_int_equal(lm_ini_read_file("/nonexistent/x.ini", "conf", &text, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "cannot read conf /nonexistent/x.ini"));
    assert_int_equal(lm_ini_read_file("/tmp", "conf", &text, ERR, sizeof ERR), LM_ERR_INPUT);
    assert_non_null(strstr(ERR, "it is a directory; the conf must be a regular file"));
}

static void test_opts(void **st) {
    (void)st;
    static const struct option L[] = {{"num", required_argument, NULL, 'n'}, {"flag", no_argument, NULL, 'f'},
                                      {NULL, 0, NULL, 0}};
    char *av[] = {"pos1", "--num", "3", "-o", "x", "pos2", "--flag", "--num=4", NULL};
    lm_opts o;
    const char *v;
    char seen[16] = "";
    lm_opts_begin(&o, "cmd", "lamina cmd ...", 8, av, "o:", L);
    for (int c; (c = lm_opts_next(&o, &v, ERR, sizeof ERR)) != -1;) {
        size_t k = strlen(seen);
        seen[k] = (char)c;
        seen[k + 1] = c == 'f' ? '-' : v[0];
        seen[k + 2] = 0;
    }
    assert_string_equal(seen, "n3oxf-n4");
    assert_int_equal(o.npos, 2);
    assert_string_equal(o.pos[0], "pos1");
    assert_string_equal(o.pos[1], "pos2");
    lm_opts_end(&o);
    char *bad1[] = {"--bogus=1", NULL}, *bad2[] = {"a", "--num", NULL}, *bad3[] = {"-z", NULL}, *bad4[] = {"-o", NULL};
    struct { char **av; int ac; const char *want; } cases[] = {
        {bad1, 1, "cmd: unknown option --bogus (usage: lamina cmd ...)"},
        {bad2, 2, "cmd: --num needs a value (usage: lamina cmd ...)"},
        {bad3, 1, "cmd: unknown option -z"},
        {bad4, 1, "cmd: -o needs a value"},
    };
    for (int i = 0; i < 4; i++) {
        lm_opts_begin(&o, "cmd", "lamina cmd ...", cases[i].ac, cases[i].av, "o:", L);
        int c;
        while ((c = lm_opts_next(&o, &v, ERR, sizeof ERR)) != -1 && c != '?') {}
        assert_int_equal(c, '?');
        if (!strstr(ERR, cases[i].want)) fail_msg("'%s' lacks '%s'", ERR, cases[i].want);
        lm_opts_end(&o);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_types), cmocka_unit_test(test_ranges),
        cmocka_unit_test(test_booleans),           cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_lines_and_comments), cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_any_section),        cmocka_unit_test(test_to_text), cmocka_unit_test(test_numbered),
        cmocka_unit_test(test_read_file),          cmocka_unit_test(test_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
