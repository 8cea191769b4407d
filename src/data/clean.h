/* clean.h — heuristic document cleaning for `lamina prep --clean` (issue 18):
 * Unicode normalisation, then quality rules in the style of Gopher
 * (Rae et al. 2021, "MassiveText" quality and repetition filters) and
 * RefinedWeb, each with a threshold, per category.
 *
 * Normalisation (clean_normalise, and the first step of clean_doc):
 *   - invalid UTF-8: each maximal invalid subpart (Unicode ch. 3, "U+FFFD
 *     substitution of maximal subparts") becomes U+FFFD; the invalid bytes
 *     are counted for rule max_invalid_utf8_frac;
 *   - control characters (Unicode category Cc) other than \n and \t are
 *     removed; CR LF and a lone CR become \n (so do NEL, U+0085); U+FEFF
 *     (a byte-order mark or a zero-width no-break space) is removed; so is
 *     a whole ANSI terminal sequence ESC [ ... (colours in captured
 *     terminal text: ESC [ 0x20-0x3F* 0x40-0x7E);
 *   - a run of more than 30 combining marks is cut to 30 (UAX #15's
 *     stream-safe limit): it bounds the canonical reordering, which is
 *     quadratic in the length of such a run;
 *   - NFKC with utf8proc (COMPOSE | COMPAT | STABLE): fullwidth letters to
 *     ASCII, ligatures split (U+FB01 "fi"), U+2026 to "...", no-break and
 *     ideographic spaces to U+0020, and (NFKC's own choice) fullwidth CJK
 *     punctuation such as U+FF0C and U+FF08 to ASCII "," and "(".
 * Normalised text is a fixed point: normalising it again changes nothing.
 *
 * Text units the rules count (over the normalised text):
 *   characters  Unicode code points.
 *   whitespace  \n, \t, and categories Zs, Zl, Zp.
 *   letters     categories L* and M* (letters and marks of any script, so
 *               Devanagari vowel signs and Han ideographs are alphabetic).
 *   digits      categories N*.   punctuation  categories P* and S*.
 *   CJK         letters/numbers/marks in the Han (incl. extensions and
 *               compatibility ideographs), Hiragana, Katakana, Bopomofo and
 *               Hangul blocks.
 *   words       whitespace-separated tokens with leading and trailing
 *               punctuation trimmed (a token of punctuation only is no word);
 *               every Han, kana or Bopomofo character is a word by itself
 *               (Chinese and Japanese put no spaces between words). A word's
 *               length is its characters. A word with a CJK character is a
 *               CJK word (Hangul words stay whitespace-separated).
 *   lines       the text split at \n, each trimmed of whitespace; empty lines
 *               are not counted.
 * A fraction with an empty denominator is 0: a min_ rule rejects the
 * document, a max_ rule keeps it.
 *
 * The rules, in report order (clean_rule_name(r) is the rules-file key).
 * A document is rejected by the first rule whose value is below a min_
 * threshold or above a max_ threshold (equal passes). Every threshold set to
 * 0 or `off` disables its rule. Defaults are for web and book text:
 *
 *  max_invalid_utf8_frac  0.01   invalid UTF-8 bytes / input bytes. A few
 *          stray Latin-1 bytes are replaced and kept; a text in another
 *          encoding (Latin-1 throughout, GBK) is mojibake and goes.
 *  min_chars              off    characters. min_words already bounds the
 *          length; for a character limit independent of the script.
 *  max_chars         10000000    characters: 10 M, above the longest books
 *          (War and Peace: 3.2 M); catches concatenated dumps.
 *  min_words              50     words (Gopher: 50). Shorter texts carry too
 *          little context to learn from.
 *  max_words         1000000     words. Gopher uses 100 000 for web pages;
 *          books run to 600 000 words, so the default admits them (set
 *          100000 in a web category).
 *  min_mean_word_len      3      mean length of the non-CJK words (Gopher:
 *  max_mean_word_len      10     3..10): below, lists of initials and
 *          tokens; above, URLs, hashes, base64, run-together text. Not
 *          applied when fewer than half of the words are non-CJK (a CJK
 *          word is one or a few characters by construction).
 *  min_alpha_frac         0.6    letters / non-whitespace characters (Gopher
 *          asks 80% of words to hold a letter; English prose has 75-85%
 *          letters among its non-space characters, tables and code less).
 *  max_digit_frac         0.25   digits / non-whitespace characters: tables
 *          of numbers, logs, phone lists.
 *  max_punct_frac         0.25   punctuation and symbols / non-whitespace
 *          characters: markup, code, ASCII art (prose: 2-8%).
 *  min_cjk_frac           off    CJK characters / non-whitespace characters:
 *          for a zh/ja/ko category, e.g. 0.3, to drop misfiled text.
 *  max_ellipsis_line_frac 0.3    lines ending in "..." or U+2026 / lines
 *          (Gopher: 0.3): truncated previews and teasers.
 *  max_bullet_line_frac   0.9    lines starting with a bullet / lines
 *          (Gopher: 0.9): link lists and navigation. Bullets: U+2022,
 *          U+2023, U+2043, U+25A0, U+25A1, U+25AA, U+25AB, U+25B6, U+25B8,
 *          U+25BA, U+25CB, U+25CF, U+25E6, U+27A2, U+27A4, U+00B7, and
 *          '-', '*', '+' when a space (or the end of the line) follows.
 *  max_dup_line_frac      0.3    lines equal to an earlier line / lines
 *          (Gopher: 0.3): boilerplate, repeated menus.
 *  max_dup_line_char_frac 0.2    characters in those repeated lines /
 *          characters in all lines (Gopher: 0.2).
 *  max_top_ngram_frac     0.2    for n = 2, 3, 4: characters of the most
 *          frequent word n-gram (count x its characters; only an n-gram that
 *          occurs twice or more; ties: the one with more characters) / the
 *          characters of all words. The value is the 2-gram threshold; 3- and
 *          4-grams get 0.9 and 0.8 of it (Gopher: 0.20, 0.18, 0.16).
 *  max_dup_ngram_frac     0.15   for n = 5..10: characters of the words
 *          covered by some word n-gram that occurs more than once (every
 *          occurrence, overlaps counted once) / the characters of all words.
 *          The value is the 5-gram threshold; n = 6..10 get 14/15, 13/15 ...
 *          10/15 of it (Gopher: 0.15, 0.14, ... 0.10).
 *
 * The rules file (INI, core/lm_ini.h): a [default] section and
 * [category.NAME] sections (NAME: 1..40 characters, no whitespace or ']'),
 * each with any of the keys above. [default] overrides the built-in values;
 * a category section overrides [default] in the keys it sets only. Values:
 * a number (counts: a whole number; fractions: in [0, 1]) or `off`.
 * Unknown sections and keys, a malformed value, a key set twice in one
 * section: NULL and an input error (exit 2) naming FILE:LINE and the key.
 *
 * Lines and n-grams are compared by 64-bit hashes (lm_mix64 chained over a
 * word's or line's bytes, words combined into n-grams by a polynomial hash):
 * a collision, about 2^-64 per pair, could only raise a repetition value.
 * Every step is linear in the document's length (hash tables, no sorting). */
#ifndef LAMINA_CLEAN_H
#define LAMINA_CLEAN_H
#include <stddef.h>

typedef struct lm_clean lm_clean; /* a rule set: defaults + per-category overrides */

enum {
    CLEAN_INVALID_UTF8,
    CLEAN_MIN_CHARS,
    CLEAN_MAX_CHARS,
    CLEAN_MIN_WORDS,
    CLEAN_MAX_WORDS,
    CLEAN_MIN_MEAN_WORD_LEN,
    CLEAN_MAX_MEAN_WORD_LEN,
    CLEAN_MIN_ALPHA_FRAC,
    CLEAN_MAX_DIGIT_FRAC,
    CLEAN_MAX_PUNCT_FRAC,
    CLEAN_MIN_CJK_FRAC,
    CLEAN_MAX_ELLIPSIS_LINE_FRAC,
    CLEAN_MAX_BULLET_LINE_FRAC,
    CLEAN_MAX_DUP_LINE_FRAC,
    CLEAN_MAX_DUP_LINE_CHAR_FRAC,
    CLEAN_MAX_TOP_NGRAM_FRAC,
    CLEAN_MAX_DUP_NGRAM_FRAC,
    CLEAN_NRULES
};

/* Parse a rules file. path NULL or "default": the built-in thresholds.
 * NULL + err (input error class, exit 2) naming FILE:LINE and the key. */
lm_clean *clean_load(const char *path, char *err, size_t errlen);
/* The same from INI text in memory (`name` stands for the file in messages). */
lm_clean *clean_load_text(const char *text, const char *name, char *err, size_t errlen);
void clean_free(lm_clean *c);

int clean_n_rules(void);            /* CLEAN_NRULES */
const char *clean_rule_name(int r); /* the rules-file key, e.g. "min_words" */
/* The threshold of rule r for `category` (NULL or a category the file does
 * not name: the defaults); 0 = off. */
double clean_threshold(const lm_clean *c, const char *category, int r);

/* Normalise (above) into *out (lm_alloc'ed, NUL-terminated, *outlen bytes),
 * then apply the category's thresholds. Returns -1 (kept) or the index of the
 * first rule that rejects it. Thread-safe. category NULL: the defaults. */
int clean_doc(const lm_clean *c, const char *category, const char *text, size_t len, char **out, size_t *outlen);

/* The value of every rule for a document (vals[CLEAN_NRULES]), after
 * normalising it into *out as clean_doc does; for reports and tests. The
 * n-gram values are computed only when `ngrams` is non-zero (else 0). */
void clean_measure(const char *text, size_t len, int ngrams, double *vals, char **out, size_t *outlen);

/* Normalisation only (used when --clean is off, so dedup hashes normalised text). */
void clean_normalise(const char *text, size_t len, char **out, size_t *outlen);

#endif
