/* lm_ini.h — strict INI files through a schema of keys.
 *
 * One parser for lamina's INI inputs (the deck, the cluster files, the
 * calibration file): a schema lists every key (section, name, type, range,
 * default, and where in a struct its value goes); a file and command-line
 * overrides `section.key=value` are checked against it with one grammar.
 * Unknown sections and keys, a key given twice in a file, a malformed or
 * out-of-range value: each is exit code 2 (LM_ERR_INPUT) with a message
 * that names FILE:LINE (or "override"), `section.key` and the rule broken.
 *
 * Numbered sections: a `sections` entry (and a key's `sec`) "NAME.#"
 * stands for the sections [NAME.1], [NAME.2], ... (N a decimal number >= 1
 * without leading zeros; [NAME.0] or [NAME.01] is an error naming the
 * section). Their keys' offsets are within one element struct, not the
 * schema's: a destination naming "NAME.#" holds `count` such elements
 * `stride` bytes apart (N > count is an error), the key lines of element N
 * at line + (N-1)*nkeys, and in header[N-1] the line of the first [NAME.N]
 * header (INI_BY_OVERRIDE when only an override named it; 0: absent):
 * lm_ini_numbered, given to lm_ini_parse_n / lm_ini_override_n. Numbered
 * sections no lm_ini_numbered names are only checked.
 * An override NAME.N.key=value goes there too. lm_ini_defaults and
 * lm_ini_to_text leave numbered keys out; lm_ini_section_defaults and
 * lm_ini_section_to_text handle one element.
 *
 * libinih splits the lines; a reader in front of it lifts inih's line
 * limit (Debian's build truncates at 200 bytes), strips comments (`;` or
 * `#` first on a line or after whitespace) and counts lines. */
#ifndef LAMINA_LM_INI_H
#define LAMINA_LM_INI_H
#include <stddef.h>

enum ini_type {
    INI_INT,    /* int, range [ilo, ihi]; with INI_AUTO also "auto" (stored as 0) */
    INI_LONG,   /* long, range [ilo, ihi] */
    INI_U64,    /* uint64_t, any */
    INI_DOUBLE, /* double, finite, range per INI_LO_OPEN / INI_HAS_HI / INI_HI_OPEN */
    INI_BOOL,   /* int 0/1: true/false, yes/no, on/off, 1/0 (any case) */
    INI_ENUM,   /* one of `choices` "a|b|c" (any case): the canonical spelling in a
                 * char field, or with INI_INDEX its index in an int */
    INI_STRING, /* char field: no control characters or comment markers */
    INI_BYTES,  /* uint64_t byte count: digits with an optional K, M, G or T suffix
                 * (powers of 1024, any case); written back as plain digits */
    INI_PATH    /* a string whose path (each path of a comma list with INI_LIST)
                 * is at most ihi bytes; `choices` says why that is the limit */
};

enum {
    INI_LO_OPEN = 1 << 0,  /* double: x > dlo (else x >= dlo) */
    INI_HI_OPEN = 1 << 1,  /* double: x < dhi (else x <= dhi) */
    INI_HAS_HI = 1 << 2,   /* double: dhi applies */
    INI_EMPTY_OK = 1 << 3, /* string: may be empty */
    INI_AUTO = 1 << 4,     /* int: "auto" means 0 */
    INI_INDEX = 1 << 5,    /* enum: store the index (int) */
    INI_LIST = 1 << 6,     /* path: a comma-separated list */
    INI_REQUIRED = 1 << 7, /* lm_ini_missing reports it when unset */
    INI_USER = 1 << 8      /* bits from here on are the caller's own */
};

typedef struct {
    const char *sec;     /* section; NULL: the key is valid in every section */
    const char *name;
    int type;            /* enum ini_type */
    size_t off, size;    /* the field in the destination struct */
    long long ilo, ihi;  /* integer range (inclusive); path: longest path */
    double dlo, dhi;     /* double range */
    int flags;
    const char *choices; /* enum: "a|b|c"; path: why ihi is the limit */
    const char *def;     /* default as text (NULL: zero / empty) */
    /* an extra rule for a string value: NULL, or the rule broken (may be
     * written into why) */
    const char *(*check)(const char *v, char *why, size_t wn);
} lm_ini_key;

typedef struct {
    const char *what;             /* "deck", "cluster file": message prefix */
    const lm_ini_key *keys;
    int nkeys;
    const char *const *sections;  /* the known sections; NULL: any section */
    int nsections;
    size_t size;                  /* size of the destination struct */
} lm_ini_schema;

/* Where the values of a section go. `line` has one entry per key: the file
 * line that set it (> 0), INI_BY_OVERRIDE, or 0 (unset). A section that no
 * destination names is checked into scratch space, not stored. */
typedef struct {
    const char *section; /* NULL: every section but numbered ones */
    void *base;
    int *line;
} lm_ini_dest;

/* Where the values of numbered sections [NAME.1] .. [NAME.count] go. */
typedef struct {
    const char *family;  /* "NAME.#" */
    void *base;          /* element N at base + (N-1) * stride */
    size_t stride;
    int count;
    int *line;           /* [count * nkeys]: element N's at line + (N-1) * nkeys */
    int *header;         /* [count]: the line of the first [NAME.N], INI_BY_OVERRIDE, or 0 */
} lm_ini_numbered;

#define INI_BY_OVERRIDE (-1)

/* Fill every field of `base` from the keys' defaults. */
void lm_ini_defaults(const lm_ini_schema *s, void *base);

/* The index of key sec.name (a NULL-section key matches any known section),
 * or -1. */
int lm_ini_find(const lm_ini_schema *s, const char *sec, const char *name);

/* Parse INI text (`name` in messages). Returns 0, or 2 with err. */
int lm_ini_parse(const lm_ini_schema *s, const char *text, const char *name, const lm_ini_dest *d, int nd, char *err,
              size_t errlen);
/* The same with numbered sections' destinations. */
int lm_ini_parse_n(const lm_ini_schema *s, const char *text, const char *name, const lm_ini_dest *d, int nd,
                   const lm_ini_numbered *num, int nnum, char *err, size_t errlen);

/* Apply one override "section.key=value" to dests[0] (value trimmed);
 * a later one replaces an earlier one. Returns 0, or 2 with err. */
int lm_ini_override(const lm_ini_schema *s, const char *ov, const lm_ini_dest *d, char *err, size_t errlen);
/* The same, into the destination of the key's section (as lm_ini_parse_n
 * chooses; none: dests[0]); "NAME.N.key=value" reaches a numbered section. */
int lm_ini_override_n(const lm_ini_schema *s, const char *ov, const lm_ini_dest *d, int nd,
                      const lm_ini_numbered *num, int nnum, char *err, size_t errlen);

/* 2 with "<what> NAME: sec.key is required" for the first INI_REQUIRED key
 * that `d` did not set (sec as named by d for NULL-section keys), else 0. */
int lm_ini_missing(const lm_ini_schema *s, const lm_ini_dest *d, const char *name, char *err, size_t errlen);

/* Read a whole regular file (at most 16 MiB, no NUL bytes) into a
 * NUL-terminated lm_alloc'ed buffer. Returns 0, or 2 with
 * "cannot read <what> PATH: ..." in err. */
int lm_ini_read_file(const char *path, const char *what, char **text, char *err, size_t errlen);

/* Every key of the schema from `base` as INI text, in schema order (it
 * parses back to the same values). Returns bytes written (excluding NUL),
 * or the size needed if it does not fit (like snprintf). */
size_t lm_ini_to_text(const lm_ini_schema *s, const void *base, char *buf, size_t len);

/* The defaults of the keys of section `sec` (e.g. "stage.#") into `base`
 * (one element; other bytes untouched). */
void lm_ini_section_defaults(const lm_ini_schema *s, const char *sec, void *base);

/* "[header]" and the keys of section `sec` from `base` (one element), as
 * lm_ini_to_text writes them. */
size_t lm_ini_section_to_text(const lm_ini_schema *s, const char *sec, const char *header, const void *base,
                              char *buf, size_t len);

#endif
