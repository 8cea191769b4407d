/* ini.c — strict INI files through a schema (see lm_ini.h).
 *
 * The text reaches inih through our own line reader, which (a) counts lines
 * for the messages (inih's handler has no line number), (b) strips comments
 * itself (`;` or `#` at the start of a line, or after whitespace inside a
 * line), so inih's compile-time options never matter, (c) checks section
 * headers (an empty unknown section is still an error), and (d) hands over a
 * value too long for inih's line buffer by reference: the line becomes
 * `key=\x01` and the handler takes the value from the reader's state. */
#include "lm_ini.h"
#include "common.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- value conversion: each returns NULL or the rule the value broke ---- */

/* A decimal integer in [lo, hi]; small ranges are spelt out in full. */
static const char *conv_ll(const char *v, long long lo, long long hi, long long *out, char *why, size_t wn) {
    char *e;
    errno = 0;
    long long x = strtoll(v, &e, 10);
    if (!*v || isspace((unsigned char)*v) || *e) return "not an integer";
    if (errno == ERANGE || x < lo || x > hi) {
        if (hi <= 1000000) snprintf(why, wn, "must be between %lld and %lld", lo, hi);
        else if (errno != ERANGE && x < lo) snprintf(why, wn, "must be >= %lld", lo);
        else snprintf(why, wn, "out of range (must be >= %lld and <= %lld)", lo, hi);
        return why;
    }
    *out = x;
    return NULL;
}

/* A finite double within the key's bounds (open or closed at each end). */
static const char *conv_double(const lm_ini_key *k, const char *v, double *out, char *why, size_t wn) {
    char *e;
    errno = 0;
    double x = strtod(v, &e);
    if (!*v || isspace((unsigned char)*v) || *e) return "not a number";
    if (!isfinite(x)) return "must be finite";
    if (errno == ERANGE) return "out of the range of a double";
    int lo_ok = (k->flags & INI_LO_OPEN) ? x > k->dlo : x >= k->dlo;
    int hi_ok = !(k->flags & INI_HAS_HI) || ((k->flags & INI_HI_OPEN) ? x < k->dhi : x <= k->dhi);
    if (!lo_ok || !hi_ok) {
        if (k->flags & INI_HAS_HI)
            snprintf(why, wn, "must be in %c%g, %g%c", (k->flags & INI_LO_OPEN) ? '(' : '[', k->dlo, k->dhi,
                     (k->flags & INI_HI_OPEN) ? ')' : ']');
        else snprintf(why, wn, "must be %s %g", (k->flags & INI_LO_OPEN) ? ">" : ">=", k->dlo);
        return why;
    }
    *out = x;
    return NULL;
}

static const char *conv_u64(const char *v, uint64_t *out) {
    if (!isdigit((unsigned char)v[0])) return "not an unsigned 64-bit integer";
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (*e) return "not an unsigned 64-bit integer";
    if (errno == ERANGE) return "out of range (must be <= 18446744073709551615)";
    *out = (uint64_t)x;
    return NULL;
}

/* A byte count: digits and an optional K/M/G/T suffix (powers of 1024). */
static const char *conv_bytes(const char *v, uint64_t *out) {
    const char *bad = "not a byte count (digits with an optional K, M, G or T suffix)";
    if (!isdigit((unsigned char)v[0])) return bad;
    char *e;
    errno = 0;
    unsigned long long x = strtoull(v, &e, 10);
    if (errno == ERANGE) return "out of range (must be < 16 EiB)";
    int shift = 0;
    if (*e) {
        const char *u = "KMGT", *q = strchr(u, toupper((unsigned char)*e));
        if (!q || e[1]) return bad;
        shift = 10 * (int)(q - u + 1);
    }
    if (shift && x > (UINT64_MAX >> shift)) return "out of range (must be < 16 EiB)";
    *out = (uint64_t)x << shift;
    return NULL;
}

/* The one boolean grammar of lamina's INI files. */
static const char *conv_bool(const char *v, int *out) {
    static const char *const T[] = {"true", "1", "yes", "on"}, *const F[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, T[i])) { *out = 1; return NULL; }
        if (!strcasecmp(v, F[i])) { *out = 0; return NULL; }
    }
    return "not a boolean (true/false, yes/no, on/off, 1/0)";
}

/* Case-insensitive match against "a|b|c": the index of the choice, or -1
 * with the rule in why. */
static int enum_index(const lm_ini_key *k, const char *v, char *why, size_t wn) {
    const char *s = k->choices;
    for (int i = 0; *s; i++) {
        size_t n = strcspn(s, "|");
        if (strlen(v) == n && !strncasecmp(v, s, n)) return i;
        s += n + (s[n] == '|');
    }
    snprintf(why, wn, "must be one of %s", k->choices);
    for (char *q = why; *q; q++)
        if (*q == '|') *q = '/';
    return -1;
}

/* The i-th choice of "a|b|c" (length in *n). */
static const char *enum_name(const char *choices, int i, size_t *n) {
    const char *s = choices;
    for (; i > 0 && *s; i--) s += strcspn(s, "|") + (s[strcspn(s, "|")] == '|');
    *n = strcspn(s, "|");
    return s;
}

/* A string value must survive lm_ini_to_text and a re-parse: no control
 * characters, no leading `;`/`#` and no whitespace before `;`/`#` (those
 * would start a comment), and it must fit the field. */
static const char *check_string(const lm_ini_key *k, const char *v, char *why, size_t wn) {
    size_t n = strlen(v);
    if (!n && !(k->flags & INI_EMPTY_OK)) return "must not be empty";
    if (n >= k->size) {
        snprintf(why, wn, "too long (%zu characters, at most %zu)", n, k->size - 1);
        return why;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch < 0x20 || ch == 0x7f) return "contains a control character";
        if ((ch == ';' || ch == '#') && (i == 0 || isspace((unsigned char)v[i - 1])))
            return "contains a comment marker (';' or '#' first or after a space)";
    }
    if (n && (isspace((unsigned char)v[0]) || isspace((unsigned char)v[n - 1])))
        return "has leading or trailing whitespace";
    return NULL;
}

/* A path (or each path of a comma list) no longer than the key allows. */
static const char *check_path(const lm_ini_key *k, const char *v, char *why, size_t wn) {
    size_t n = strlen(v), longest = 0;
    for (const char *p = v; p < v + n;) {
        const char *e = (k->flags & INI_LIST) ? memchr(p, ',', (size_t)(v + n - p)) : NULL;
        if (!e) e = v + n;
        if ((size_t)(e - p) > longest) longest = (size_t)(e - p);
        p = e + 1;
    }
    if (longest <= (size_t)k->ihi) return NULL;
    snprintf(why, wn, "%s %zu bytes long; the longest usable is %lld bytes (%s)",
             (k->flags & INI_LIST) ? "a path in the list is" : "the path is", longest, k->ihi,
             k->choices ? k->choices : "PATH_MAX");
    return why;
}

/* Convert `v` for key k into its field of `base`: NULL, or the rule broken. */
static const char *convert(const lm_ini_key *k, const char *v, void *base, char *why, size_t wn) {
    char *dst = (char *)base + k->off;
    const char *bad = NULL;
    long long ll = 0;
    int i;
    switch (k->type) {
    case INI_INT:
        if ((k->flags & INI_AUTO) && !strcasecmp(v, "auto")) *(int *)dst = 0;
        else if (!(bad = conv_ll(v, k->ilo, k->ihi, &ll, why, wn))) *(int *)dst = (int)ll;
        else if (k->flags & INI_AUTO) {
            snprintf(why, wn, "must be auto or an integer >= %lld", k->ilo);
            bad = why;
        }
        return bad;
    case INI_LONG:
        if (!(bad = conv_ll(v, k->ilo, k->ihi, &ll, why, wn))) *(long *)dst = (long)ll;
        return bad;
    case INI_U64: return conv_u64(v, (uint64_t *)dst);
    case INI_BYTES: return conv_bytes(v, (uint64_t *)dst);
    case INI_DOUBLE: return conv_double(k, v, (double *)dst, why, wn);
    case INI_BOOL: return conv_bool(v, (int *)dst);
    case INI_ENUM:
        if (!(k->flags & INI_INDEX) && strlen(v) >= k->size) return "too long";
        if ((i = enum_index(k, v, why, wn)) < 0) return why;
        if (k->flags & INI_INDEX) *(int *)dst = i;
        else {
            size_t n;
            const char *s = enum_name(k->choices, i, &n);
            memcpy(dst, s, n);
            dst[n] = 0;
        }
        return NULL;
    default: /* INI_STRING, INI_PATH */
        if ((bad = check_string(k, v, why, wn))) return bad;
        if (k->type == INI_PATH && (bad = check_path(k, v, why, wn))) return bad;
        if (k->check && (bad = k->check(v, why, wn))) return bad;
        memset(dst, 0, k->size);
        memcpy(dst, v, strlen(v));
        return NULL;
    }
}

static int is_family(const char *sec);

void lm_ini_defaults(const lm_ini_schema *s, void *base) {
    memset(base, 0, s->size);
    char why[256];
    for (int k = 0; k < s->nkeys; k++)
        if (s->keys[k].def && !is_family(s->keys[k].sec) && convert(&s->keys[k], s->keys[k].def, base, why, sizeof why))
            lm_abort(LM_ERR_RUNTIME, "ini: bad default '%s' of %s.%s", s->keys[k].def,
                     s->keys[k].sec ? s->keys[k].sec : "*", s->keys[k].name);
}

/* "NAME.#": a family of numbered sections (see lm_ini.h). */
static int is_family(const char *sec) {
    size_t n = sec ? strlen(sec) : 0;
    return n >= 2 && sec[n - 2] == '.' && sec[n - 1] == '#';
}

/* The numbered family that section name[0..n) belongs to: its index in
 * s->sections, with *num = N, 0 when the number is malformed (0 or a
 * leading zero) and INT_MAX when huge; -1 when it is none's. */
static int family_of(const lm_ini_schema *s, const char *name, size_t n, long *num) {
    *num = 0;
    for (int i = 0; s->sections && i < s->nsections; i++) {
        const char *f = s->sections[i];
        size_t pl = strlen(f) - 1; /* "NAME." */
        if (!is_family(f) || n <= pl || memcmp(f, name, pl)) continue;
        size_t d = pl;
        while (d < n && isdigit((unsigned char)name[d])) d++;
        if (d != n) continue;
        long v = 0;
        for (size_t j = pl; j < n; j++) v = v < INT_MAX / 10 ? v * 10 + (name[j] - '0') : INT_MAX;
        *num = name[pl] == '0' ? 0 : v;
        return i;
    }
    return -1;
}

static int section_known(const lm_ini_schema *s, const char *name, size_t n) {
    if (!s->sections) return 1;
    long num;
    if (family_of(s, name, n, &num) >= 0) return 1;
    for (int i = 0; i < s->nsections; i++)
        if (strlen(s->sections[i]) == n && !memcmp(s->sections[i], name, n)) return 1;
    return 0;
}

/* Key k belongs to section sec (a family's member or the family's own
 * "NAME.#"); keys of no section belong to every section but numbered ones. */
static int key_in(const lm_ini_schema *s, int k, const char *sec) {
    const char *ks = s->keys[k].sec;
    long num;
    int fam = family_of(s, sec, strlen(sec), &num);
    if (!ks) return fam < 0 && !is_family(sec);
    return !strcmp(ks, fam >= 0 ? s->sections[fam] : sec);
}

int lm_ini_find(const lm_ini_schema *s, const char *sec, const char *name) {
    if (!section_known(s, sec, strlen(sec))) return -1;
    for (int k = 0; k < s->nkeys; k++)
        if (key_in(s, k, sec) && !strcmp(s->keys[k].name, name)) return k;
    return -1;
}

/* "a, b, c": the known sections (a family as NAME.N), or the keys of
 * section `sec`. */
static void known_list(const lm_ini_schema *s, const char *sec, char *out, size_t n) {
    size_t w = 0;
    out[0] = 0;
    int cnt = sec ? s->nkeys : s->nsections;
    for (int i = 0; i < cnt && w < n; i++) {
        const char *item = sec ? s->keys[i].name : s->sections[i];
        if (sec && !key_in(s, i, sec)) continue;
        int fam = !sec && is_family(item), r = snprintf(out + w, n - w, "%s%.*s%s", w ? ", " : "",
                                                        fam ? (int)strlen(item) - 1 : (int)strlen(item), item,
                                                        fam ? "N" : "");
        if (r > 0) w += (size_t)r;
    }
}

/* ---- parse state ---- */

typedef struct {
    const lm_ini_schema *s;
    const lm_ini_dest *d;
    int nd;
    const lm_ini_numbered *num;
    int nnum;
    const char *name;
    char *err;
    size_t errlen;
    int failed, fail_line;
    /* line reader over the text */
    const char *p, *end;
    int lineno;
    const char *longval; /* value handed over by reference (see top) */
    size_t longlen;
    int long_pending;
    /* sections no destination names: checked here, not stored */
    char *scratch;
    int *scratch_line;
    char scratch_sec[128];
} ini_state;

static int fail(ini_state *st, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(ini_state *st, int line, const char *fmt, ...) {
    if (st->failed) return LM_ERR_INPUT;
    st->failed = 1;
    st->fail_line = line;
    if (st->err && st->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->err, st->errlen, fmt, ap);
        va_end(ap);
    }
    return LM_ERR_INPUT;
}

/* Convert and store one value; `where` prefixes the message. */
static int assign(ini_state *st, int k, const char *sec, const char *value, void *base, const char *where, int line) {
    char why[4200];
    const char *bad = convert(&st->s->keys[k], value, base, why, sizeof why);
    if (!bad) return 0;
    int n = (int)strlen(value);
    return fail(st, line, "%s: %s.%s = '%.*s%s': %s", where, sec, st->s->keys[k].name, n > 80 ? 80 : n, value,
                n > 80 ? "..." : "", bad);
}

/* The section name is a family's own "NAME.#" (not a section of a file). */
static int is_family_name(const lm_ini_schema *s, const char *name, size_t n) {
    for (int i = 0; s->sections && i < s->nsections; i++)
        if (is_family(s->sections[i]) && strlen(s->sections[i]) == n && !memcmp(s->sections[i], name, n)) return 1;
    return 0;
}

/* The destination of numbered family `fam` (NULL: none). */
static const lm_ini_numbered *family_dest(const lm_ini_schema *s, int fam, const lm_ini_numbered *d, int nd) {
    for (int i = 0; i < nd; i++)
        if (d[i].family && !strcmp(d[i].family, s->sections[fam])) return &d[i];
    return NULL;
}

/* A header [name] (line `line`, or INI_BY_OVERRIDE): for a numbered
 * section, N must be >= 1 and within its destination's count; the first
 * header's line is recorded. Returns 0, or 2 with err (prefixed by where). */
static int numbered_header(const lm_ini_schema *s, const lm_ini_numbered *d, int nd, const char *name, size_t n,
                           int line, const char *where, char *err, size_t errlen) {
    long num;
    int fam = family_of(s, name, n, &num);
    if (fam < 0) return 0;
    int pl = (int)strlen(s->sections[fam]) - 2, nn = n > 64 ? 64 : (int)n;
    if (num < 1)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: section [%.*s]: numbered sections are [%.*s.1], [%.*s.2], ... "
                      "(a number >= 1 without leading zeros)", where, nn, name, pl, name, pl, name);
    const lm_ini_numbered *fd = family_dest(s, fam, d, nd);
    if (!fd) return 0;
    if (num > fd->count)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: section [%.*s]: at most %d [%.*s.N] sections", where, nn, name,
                      fd->count, pl, name);
    if (fd->header && !fd->header[num - 1]) fd->header[num - 1] = line;
    return 0;
}

/* Reader for ini_parse_stream: one line per call, normalised (see the
 * comment at the top). Returns NULL at the end or after an error. */
static char *reader(char *str, int num, void *stream) {
    ini_state *st = stream;
    if (st->failed || st->p >= st->end || num < 8) return NULL;
    const char *line = st->p;
    const char *nl = memchr(line, '\n', (size_t)(st->end - line));
    const char *s = line, *e = nl ? nl : st->end;
    const char *what = st->s->what;
    st->p = nl ? nl + 1 : st->end;
    st->lineno++;
    if (st->lineno == 1 && e - s >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3; /* UTF-8 BOM */
    while (s < e && isspace((unsigned char)*s)) s++;
    /* A comment starts the line, or follows whitespace (inih's rule, with `#` too). */
    for (const char *q = s; q < e; q++)
        if ((*q == ';' || *q == '#') && (q == s || isspace((unsigned char)q[-1]))) {
            e = q;
            break;
        }
    while (e > s && isspace((unsigned char)e[-1])) e--;
    size_t len = (size_t)(e - s), room = (size_t)num - 2; /* '\n' + NUL */
    if (len && *s == '[') {
        const char *rb = memchr(s, ']', len);
        if (rb) {
            int n = (int)(rb - s - 1);
            if (!section_known(st->s, s + 1, (size_t)n) || (n && is_family_name(st->s, s + 1, (size_t)n))) {
                char known[512];
                known_list(st->s, NULL, known, sizeof known);
                fail(st, st->lineno, "%s %s:%d: unknown section [%.*s%s] (known: %s)", what, st->name, st->lineno,
                     n > 64 ? 64 : n, s + 1, n > 64 ? "..." : "", known);
                return NULL;
            }
            char where[LM_ERRLEN];
            snprintf(where, sizeof where, "%s %.900s:%d", what, st->name, st->lineno);
            if (numbered_header(st->s, st->num, st->nnum, s + 1, (size_t)n, st->lineno, where, st->err, st->errlen)) {
                st->failed = 1;
                st->fail_line = st->lineno;
                return NULL;
            }
            len = (size_t)(rb - s + 1); /* drop anything after ']' as inih does */
        }
    } else if (len > room) {
        const char *sep = s;
        while (sep < e && *sep != '=' && *sep != ':') sep++;
        if (sep == e || (size_t)(sep - s) + 3 > room) {
            fail(st, st->lineno, "%s %s:%d: line too long and not a key = value line", what, st->name, st->lineno);
            return NULL;
        }
        const char *v = sep + 1;
        while (v < e && isspace((unsigned char)*v)) v++;
        st->longval = v;
        st->longlen = (size_t)(e - v);
        st->long_pending = 1;
        size_t kn = (size_t)(sep - s);
        memcpy(str, s, kn);
        memcpy(str + kn, "=\x01\n", 4);
        return str;
    }
    if (len > room) {
        fail(st, st->lineno, "%s %s:%d: line too long", what, st->name, st->lineno);
        return NULL;
    }
    memcpy(str, s, len);
    str[len] = '\n';
    str[len + 1] = 0;
    return str;
}

/* The destination of a section's values: a named one, else scratch space
 * (its duplicate tracking restarts with each new section). */
static void dest_of(ini_state *st, const char *section, void **base, int **line) {
    long num;
    int fam = family_of(st->s, section, strlen(section), &num);
    if (fam >= 0) {
        const lm_ini_numbered *fd = family_dest(st->s, fam, st->num, st->nnum);
        if (fd && num >= 1 && num <= fd->count) { /* numbered_header checked the number */
            *base = (char *)fd->base + (size_t)(num - 1) * fd->stride;
            *line = fd->line + (size_t)(num - 1) * (size_t)st->s->nkeys;
            return;
        }
    } else {
        for (int i = 0; i < st->nd; i++)
            if (!st->d[i].section || !strcmp(st->d[i].section, section)) {
                *base = st->d[i].base;
                *line = st->d[i].line;
                return;
            }
    }
    if (strcmp(st->scratch_sec, section)) {
        snprintf(st->scratch_sec, sizeof st->scratch_sec, "%s", section);
        memset(st->scratch_line, 0, sizeof(int) * (size_t)st->s->nkeys);
    }
    *base = st->scratch;
    *line = st->scratch_line;
}

static int handler(void *user, const char *section, const char *name, const char *value) {
    ini_state *st = user;
    if (st->failed) return 0;
    char *longv = NULL;
    if (st->long_pending) {
        st->long_pending = 0;
        if (!strcmp(value, "\x01")) {
            longv = lm_alloc(st->longlen + 1);
            memcpy(longv, st->longval, st->longlen);
            value = longv;
        }
    }
    int line = st->lineno, rc = 0;
    char where[LM_ERRLEN];
    snprintf(where, sizeof where, "%s %.900s:%d", st->s->what, st->name, line);
    int k = *section ? lm_ini_find(st->s, section, name) : -1;
    void *base = NULL;
    int *seen = NULL;
    if (k >= 0) dest_of(st, section, &base, &seen);
    if (!*section)
        rc = fail(st, line, "%s: key '%.64s' outside any [section]", where, name);
    else if (!section_known(st->s, section, strlen(section)))
        rc = fail(st, line, "%s: unknown section [%.64s]", where, section);
    else if (k < 0) {
        char known[512];
        known_list(st->s, section, known, sizeof known);
        rc = fail(st, line, "%s: unknown key %.64s.%.64s (known: %s)", where, section, name, known);
    } else if (seen[k] > 0)
        rc = fail(st, line, "%s: duplicate key %s.%s (first set at line %d)", where, section, name, seen[k]);
    else if (!(rc = assign(st, k, section, value, base, where, line)))
        seen[k] = line;
    lm_free(longv);
    return rc == 0;
}

/* Room for the schema's struct and for any key's field (a numbered
 * section's keys lie in an element struct of their own). */
static size_t scratch_size(const lm_ini_schema *s) {
    size_t n = s->size;
    for (int k = 0; k < s->nkeys; k++)
        if (s->keys[k].off + s->keys[k].size > n) n = s->keys[k].off + s->keys[k].size;
    return n;
}

int lm_ini_parse(const lm_ini_schema *s, const char *text, const char *name, const lm_ini_dest *d, int nd, char *err,
              size_t errlen) {
    return lm_ini_parse_n(s, text, name, d, nd, NULL, 0, err, errlen);
}

int lm_ini_parse_n(const lm_ini_schema *s, const char *text, const char *name, const lm_ini_dest *d, int nd,
                   const lm_ini_numbered *num, int nnum, char *err, size_t errlen) {
    ini_state st = {.s = s, .d = d, .nd = nd, .num = num, .nnum = nnum, .name = name, .err = err, .errlen = errlen};
    if (err && errlen) err[0] = 0;
    st.p = text;
    st.end = text + strlen(text);
    st.scratch = lm_alloc(scratch_size(s));
    st.scratch_line = lm_alloc(sizeof(int) * (size_t)s->nkeys);
    memset(st.scratch_line, 0, sizeof(int) * (size_t)s->nkeys);
    int r = ini_parse_stream(reader, &st, handler, &st);
    lm_free(st.scratch);
    lm_free(st.scratch_line);
    if (r > 0 && (!st.failed || r < st.fail_line)) {
        st.failed = 0;
        return fail(&st, r, "%s %s:%d: syntax error: expected [section] or key = value", s->what, name, r);
    }
    if (st.failed) return LM_ERR_INPUT;
    if (r < 0) return fail(&st, 0, "%s %s: inih failed (%d)", s->what, name, r);
    return 0;
}

int lm_ini_override(const lm_ini_schema *s, const char *ov, const lm_ini_dest *d, char *err, size_t errlen) {
    return lm_ini_override_n(s, ov, d, 1, NULL, 0, err, errlen);
}

/* section.key=value: the section is everything before the last '.' ahead
 * of '=' (a numbered section's name has a dot of its own). */
int lm_ini_override_n(const lm_ini_schema *s, const char *ov, const lm_ini_dest *d, int nd,
                      const lm_ini_numbered *nums, int nnum, char *err, size_t errlen) {
    ini_state st = {.s = s, .err = err, .errlen = errlen};
    const char *eq = strchr(ov, '=');
    const char *dot = NULL;
    for (const char *q = ov; eq && q < eq; q++)
        if (*q == '.') dot = q;
    int n = (int)strlen(ov);
    if (!eq || !dot || dot == ov || dot + 1 == eq)
        return fail(&st, 0, "override '%.*s%s': expected section.key=value", n > 80 ? 80 : n, ov, n > 80 ? "..." : "");
    char sec[64], key[64];
    const char *s0 = ov, *s1 = dot, *k0 = dot + 1, *k1 = eq;
    while (s0 < s1 && isspace((unsigned char)*s0)) s0++;
    while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
    int k = -1;
    if (s1 - s0 < (long)sizeof sec && k1 - k0 < (long)sizeof key) {
        memcpy(sec, s0, (size_t)(s1 - s0));
        sec[s1 - s0] = 0;
        memcpy(key, k0, (size_t)(k1 - k0));
        key[k1 - k0] = 0;
        if (!is_family(sec)) k = lm_ini_find(s, sec, key);
    }
    if (k < 0) {
        int kn = (int)(eq - ov);
        return fail(&st, 0, "override '%.*s%s': unknown key %.*s", n > 80 ? 80 : n, ov, n > 80 ? "..." : "",
                    kn > 64 ? 64 : kn, ov);
    }
    char where[LM_ERRLEN];
    snprintf(where, sizeof where, "override '%.*s%s'", n > 80 ? 80 : n, ov, n > 80 ? "..." : "");
    if (numbered_header(s, nums, nnum, sec, strlen(sec), INI_BY_OVERRIDE, where, err, errlen)) return LM_ERR_INPUT;
    /* the destination: as lm_ini_parse picks it; none: dests[0] (a numbered
     * section without one is only checked) */
    void *base = d[0].base;
    int *line = d[0].line;
    char *scratch = NULL;
    int *scratch_line = NULL;
    long num;
    int fam = family_of(s, sec, strlen(sec), &num);
    const lm_ini_numbered *fd = fam >= 0 ? family_dest(s, fam, nums, nnum) : NULL;
    if (fd) {
        base = (char *)fd->base + (size_t)(num - 1) * fd->stride;
        line = fd->line + (size_t)(num - 1) * (size_t)s->nkeys;
    } else if (fam >= 0) {
        base = scratch = lm_alloc(scratch_size(s));
        line = scratch_line = lm_calloc((size_t)s->nkeys, sizeof(int));
    } else {
        for (int i = 0; i < nd; i++)
            if (!d[i].section || !strcmp(d[i].section, sec)) {
                base = d[i].base;
                line = d[i].line;
                break;
            }
    }
    /* trim the value like a file's value */
    const char *v0 = eq + 1, *v1 = ov + n;
    while (v0 < v1 && isspace((unsigned char)*v0)) v0++;
    while (v1 > v0 && isspace((unsigned char)v1[-1])) v1--;
    char *v = lm_alloc((size_t)(v1 - v0) + 1);
    memcpy(v, v0, (size_t)(v1 - v0));
    v[v1 - v0] = 0;
    int rc = assign(&st, k, sec, v, base, "override", 0);
    lm_free(v);
    if (!rc) line[k] = INI_BY_OVERRIDE;
    lm_free(scratch);
    lm_free(scratch_line);
    return rc;
}

int lm_ini_missing(const lm_ini_schema *s, const lm_ini_dest *d, const char *name, char *err, size_t errlen) {
    for (int k = 0; k < s->nkeys; k++)
        if ((s->keys[k].flags & INI_REQUIRED) && !d->line[k] && !is_family(s->keys[k].sec))
            return lm_err(err, errlen, LM_ERR_INPUT, "%s %s: %s.%s is required (not set)", s->what, name,
                          d->section ? d->section : s->keys[k].sec, s->keys[k].name);
    return 0;
}

/* ---- files ---- */

int lm_ini_read_file(const char *path, const char *what, char **text, char *err, size_t errlen) {
    *text = NULL;
    /* Only a regular file: opening a FIFO (or a tty) for reading would block
     * until a writer comes, possibly forever. O_NONBLOCK makes the open itself
     * return at once; fstat then tells what it is. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return lm_err(err, errlen, LM_ERR_INPUT, "cannot read %s %s: %s", what, path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        const char *it = S_ISFIFO(sb.st_mode) ? "a FIFO" : S_ISDIR(sb.st_mode) ? "a directory"
                       : S_ISCHR(sb.st_mode) ? "a character device" : S_ISSOCK(sb.st_mode) ? "a socket"
                       : "not a regular file";
        close(fd);
        return lm_err(err, errlen, LM_ERR_INPUT, "cannot read %s %s: it is %s; the %s must be a regular file", what,
                      path, it, what);
    }
    close(fd);
    /* the one whole-file reader (core/file.c); INI files are small, and
     * 16 MiB is a sanity cap */
    char rerr[LM_ERRLEN];
    size_t n = 0;
    char *buf = lm_read_file(path, &n, rerr, sizeof rerr);
    if (!buf) return lm_err(err, errlen, LM_ERR_INPUT, "cannot read %s %s", what, rerr);
    int rc = 0;
    if (n > ((size_t)16 << 20)) rc = lm_err(err, errlen, LM_ERR_INPUT, "cannot read %s %s: larger than 16 MiB", what, path);
    else if (memchr(buf, 0, n))
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s %s: contains a NUL byte (not a text file)", what, path);
    if (rc) {
        lm_free(buf);
        return rc;
    }
    *text = buf;
    return 0;
}

/* ---- the values as text ---- */

typedef struct {
    char *buf;
    size_t len, n;
} outbuf;

static void put(outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(outbuf *o, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(o->n < o->len ? o->buf + o->n : NULL, o->n < o->len ? o->len - o->n : 0, fmt, ap);
    va_end(ap);
    if (w > 0) o->n += (size_t)w;
}

/* Shortest text that strtod reads back to the same double: integral values
 * below 2^53 as integers, else the fewest %g digits (at most 17) that
 * round-trip. */
static void fmt_double(double v, char *out, size_t n) {
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        snprintf(out, n, "%.0f", v);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(out, n, "%.*g", p, v);
        if (strtod(out, NULL) == v) return;
    }
}

/* One key's "name = value" line from base. */
static void key_line(outbuf *o, const lm_ini_key *kd, const void *base) {
    const char *p = (const char *)base + kd->off;
    char num[64];
    const char *v = num;
    size_t nn;
    int prec = 64;
    switch (kd->type) {
    case INI_INT:
        if (!*(const int *)p && (kd->flags & INI_AUTO)) v = "auto";
        else snprintf(num, sizeof num, "%d", *(const int *)p);
        break;
    case INI_LONG: snprintf(num, sizeof num, "%ld", *(const long *)p); break;
    case INI_U64:
    case INI_BYTES: snprintf(num, sizeof num, "%" PRIu64, *(const uint64_t *)p); break;
    case INI_DOUBLE: fmt_double(*(const double *)p, num, sizeof num); break;
    case INI_BOOL: v = *(const int *)p ? "true" : "false"; break;
    case INI_ENUM:
        if (kd->flags & INI_INDEX) {
            v = enum_name(kd->choices, *(const int *)p, &nn);
            prec = (int)nn;
            break;
        }
        /* the spelling is in the field */
        /* fall through */
    default: /* strings: NUL-terminated within the field */
        v = p;
        prec = (int)strnlen(p, kd->size);
    }
    if (*v && prec) put(o, "%s = %.*s\n", kd->name, prec, v);
    else put(o, "%s =\n", kd->name);
}

size_t lm_ini_to_text(const lm_ini_schema *s, const void *base, char *buf, size_t len) {
    outbuf o = {buf, len, 0};
    if (buf && len) buf[0] = 0;
    const char *sec = "";
    for (int k = 0; k < s->nkeys; k++) {
        const lm_ini_key *kd = &s->keys[k];
        if (is_family(kd->sec)) continue; /* lm_ini_section_to_text */
        if (kd->sec && strcmp(sec, kd->sec)) {
            put(&o, "%s[%s]\n", o.n ? "\n" : "", kd->sec);
            sec = kd->sec;
        }
        key_line(&o, kd, base);
    }
    return o.n;
}

void lm_ini_section_defaults(const lm_ini_schema *s, const char *sec, void *base) {
    char why[256];
    for (int k = 0; k < s->nkeys; k++) {
        const lm_ini_key *kd = &s->keys[k];
        if (!kd->sec || strcmp(kd->sec, sec)) continue;
        memset((char *)base + kd->off, 0, kd->size);
        if (kd->def && convert(kd, kd->def, base, why, sizeof why))
            lm_abort(LM_ERR_RUNTIME, "ini: bad default '%s' of %s.%s", kd->def, sec, kd->name);
    }
}

size_t lm_ini_section_to_text(const lm_ini_schema *s, const char *sec, const char *header, const void *base,
                              char *buf, size_t len) {
    outbuf o = {buf, len, 0};
    if (buf && len) buf[0] = 0;
    put(&o, "[%s]\n", header);
    for (int k = 0; k < s->nkeys; k++)
        if (s->keys[k].sec && !strcmp(s->keys[k].sec, sec)) key_line(&o, &s->keys[k], base);
    return o.n;
}
