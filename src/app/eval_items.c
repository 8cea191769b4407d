/* eval_items.c — multiple-choice items (SPEC §10): reading and checking the
 * JSONL file, the language of a subject, rendering the prompts. */
#include "eval.h"
#include "common.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A string field of item object o, non-empty; else exit 2 naming FILE:LINE. */
static const char *str_field(json_t *o, const char *key, const char *path, int line) {
    json_t *v = json_object_get(o, key);
    if (!v) lm_fail(LM_ERR_INPUT, "%s:%d: missing \"%s\"", path, line, key);
    if (!json_is_string(v)) lm_fail(LM_ERR_INPUT, "%s:%d: \"%s\" must be a string", path, line, key);
    if (!json_string_length(v)) lm_fail(LM_ERR_INPUT, "%s:%d: \"%s\" is empty", path, line, key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        lm_fail(LM_ERR_INPUT, "%s:%d: \"%s\" holds a NUL character", path, line, key);
    return json_string_value(v);
}

static int subject_index(mc_set *s, const char *name) {
    for (int i = 0; i < s->n_subjects; i++)
        if (!strcmp(s->subjects[i], name)) return i;
    s->subjects = lm_realloc(s->subjects, sizeof(char *) * (size_t)(s->n_subjects + 1));
    s->subjects[s->n_subjects] = lm_strdup(name);
    return s->n_subjects++;
}

/* One item from the JSON text of line `line`. */
static void parse_item(mc_set *s, const char *text, const char *path, int line, mc_item *it) {
    json_error_t je;
    json_t *o = json_loads(text, JSON_REJECT_DUPLICATES, &je);
    if (!o) lm_fail(LM_ERR_INPUT, "%s:%d: not JSON: %s", path, line, je.text);
    if (!json_is_object(o)) lm_fail(LM_ERR_INPUT, "%s:%d: not a JSON object", path, line);
    memset(it, 0, sizeof *it);
    it->line = line;
    it->subject = subject_index(s, str_field(o, "subject", path, line));
    it->question = lm_strdup(str_field(o, "question", path, line));
    const char *split = str_field(o, "split", path, line);
    if (!strcmp(split, "dev")) it->dev = 1;
    else if (strcmp(split, "test"))
        lm_fail(LM_ERR_INPUT, "%s:%d: \"split\" is '%s': expected dev or test", path, line, split);
    json_t *ch = json_object_get(o, "choices");
    if (!ch) lm_fail(LM_ERR_INPUT, "%s:%d: missing \"choices\"", path, line);
    if (!json_is_array(ch)) lm_fail(LM_ERR_INPUT, "%s:%d: \"choices\" must be a list of strings", path, line);
    size_t n = json_array_size(ch);
    if (n == 0) lm_fail(LM_ERR_INPUT, "%s:%d: \"choices\" is an empty list", path, line);
    if (n > MC_MAX_CHOICES)
        lm_fail(LM_ERR_INPUT, "%s:%d: %zu choices: at most %d (letters A to Z)", path, line, n, MC_MAX_CHOICES);
    it->n_choices = (int)n;
    it->choices = lm_alloc(sizeof(char *) * n);
    for (size_t i = 0; i < n; i++) {
        json_t *c = json_array_get(ch, i);
        if (!json_is_string(c) || !json_string_length(c) || strlen(json_string_value(c)) != json_string_length(c))
            lm_fail(LM_ERR_INPUT, "%s:%d: choice %zu (%c) must be a non-empty string", path, line, i + 1,
                    (char)('A' + i));
        it->choices[i] = lm_strdup(json_string_value(c));
    }
    const char *a = str_field(o, "answer", path, line);
    if (strlen(a) != 1 || a[0] < 'A' || a[0] >= 'A' + (int)n)
        lm_fail(LM_ERR_INPUT, "%s:%d: \"answer\" is '%s': expected one of the letters A to %c of its %zu choices",
                path, line, a, (char)('A' + n - 1), n);
    it->answer = a[0] - 'A';
    json_decref(o);
}

void mc_read(const char *path, mc_set *s) {
    memset(s, 0, sizeof *s);
    FILE *f = fopen(path, "rb");
    if (!f) lm_fail(LM_ERR_INPUT, "--task mc:%s: cannot open the file", path);
    char *buf = NULL;
    size_t cap = 0;
    int line = 0, cap_items = 0;
    int *dev_line = NULL, *n_test = NULL; /* per subject: its first dev item's line, test items */
    for (ssize_t len; (len = getline(&buf, &cap, f)) >= 0;) {
        line++;
        if ((size_t)len != strlen(buf)) lm_fail(LM_ERR_INPUT, "%s:%d: a NUL byte in the line", path, line);
        while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) buf[--len] = 0;
        const char *p = buf;
        while (*p == ' ' || *p == '\t') p++;
        if (!*p) continue; /* blank lines are allowed */
        if (s->n == cap_items) s->items = lm_realloc(s->items, sizeof(mc_item) * (size_t)(cap_items = cap_items ? 2 * cap_items : 64));
        int before = s->n_subjects;
        parse_item(s, p, path, line, &s->items[s->n]);
        if (s->n_subjects > before) {
            dev_line = lm_realloc(dev_line, sizeof(int) * (size_t)s->n_subjects);
            n_test = lm_realloc(n_test, sizeof(int) * (size_t)s->n_subjects);
            dev_line[before] = 0, n_test[before] = 0;
        }
        mc_item *it = &s->items[s->n++];
        if (it->dev && !dev_line[it->subject]) dev_line[it->subject] = line;
        if (!it->dev) n_test[it->subject]++;
    }
    free(buf);
    fclose(f);
    if (!s->n) lm_fail(LM_ERR_INPUT, "--task mc:%s: no items", path);
    for (int k = 0; k < s->n_subjects; k++)
        if (!n_test[k])
            lm_fail(LM_ERR_INPUT, "%s:%d: subject '%s' has dev items but no test items", path, dev_line[k],
                    s->subjects[k]);
    lm_free(dev_line);
    lm_free(n_test);
    s->zh = lm_calloc((size_t)s->n_subjects, sizeof(int));
}

void mc_free(mc_set *s) {
    for (int i = 0; i < s->n; i++) {
        for (int c = 0; c < s->items[i].n_choices; c++) lm_free(s->items[i].choices[c]);
        lm_free(s->items[i].choices);
        lm_free(s->items[i].question);
    }
    for (int k = 0; k < s->n_subjects; k++) lm_free(s->subjects[k]);
    lm_free(s->subjects);
    lm_free(s->items);
    lm_free(s->zh);
    memset(s, 0, sizeof *s);
}

/* CJK characters (the unified ideographs, extension A, CJK punctuation,
 * full-width forms) minus ASCII letters of UTF-8 text. */
static long cjk_minus_latin(const char *t) {
    long d = 0;
    for (const unsigned char *p = (const unsigned char *)t; *p;) {
        unsigned c = *p;
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
        if (n == 1) {
            if ((c | 32) >= 'a' && (c | 32) <= 'z') d--;
            p++;
            continue;
        }
        unsigned cp = c & (0x7f >> n);
        int k = 1;
        for (; k < n && (p[k] & 0xc0) == 0x80; k++) cp = cp << 6 | (p[k] & 0x3f);
        if (k == n && ((cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) ||
                       (cp >= 0x3000 && cp <= 0x303f) || (cp >= 0xff00 && cp <= 0xffef)))
            d++;
        p += k;
    }
    return d;
}

void mc_set_lang(mc_set *s, const char *lang) {
    int *zh = lm_calloc((size_t)s->n_subjects, sizeof(int)), *all = lm_calloc((size_t)s->n_subjects, sizeof(int));
    for (int i = 0; i < s->n; i++) {
        const mc_item *it = &s->items[i];
        long d = cjk_minus_latin(it->question);
        for (int c = 0; c < it->n_choices; c++) d += cjk_minus_latin(it->choices[c]);
        zh[it->subject] += d > 0;
        all[it->subject]++;
    }
    for (int k = 0; k < s->n_subjects; k++)
        s->zh[k] = !strcmp(lang, "zh") ? 1 : !strcmp(lang, "en") ? 0 : 2 * zh[k] > all[k];
    lm_free(zh);
    lm_free(all);
}

/* A growing string. */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s) {
    size_t k = strlen(s);
    if (b->n + k + 1 > b->cap) b->p = lm_realloc(b->p, b->cap = 2 * (b->n + k + 1));
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

/* Item it rendered (SPEC §10): the question, the lettered choices, the
 * answer cue; a worked example adds its answer and a blank line. */
static void render_item(sbuf *b, const mc_item *it, int zh, int worked) {
    put(b, zh ? "题目：" : "Question: ");
    put(b, it->question);
    put(b, "\n");
    for (int c = 0; c < it->n_choices; c++) {
        char l[4] = {(char)('A' + c), '.', ' ', 0};
        put(b, l);
        put(b, it->choices[c]);
        put(b, "\n");
    }
    put(b, zh ? "答案：" : "Answer: ");
    if (worked) {
        char a[4] = {(char)('A' + it->answer), '\n', '\n', 0};
        put(b, a);
    }
}

char *mc_render(const mc_set *s, const mc_item *t, const mc_item *const *dev, int ndev, int loglik) {
    int zh = s->zh[t->subject];
    sbuf b = {0};
    put(&b, "");
    if (zh) {
        put(&b, "以下是关于");
        put(&b, s->subjects[t->subject]);
        put(&b, "的单项选择题，请直接给出正确答案的选项。\n\n");
    } else {
        put(&b, "The following are multiple choice questions (with answers) about ");
        put(&b, s->subjects[t->subject]);
        put(&b, ".\n\n");
    }
    for (int i = 0; i < ndev; i++) render_item(&b, dev[i], zh, 1);
    if (!loglik) render_item(&b, t, zh, 0);
    else {
        put(&b, zh ? "题目：" : "Question: ");
        put(&b, t->question);
        put(&b, zh ? "\n答案：" : "\nAnswer:");
    }
    return b.p;
}

char *mc_continuation(const mc_set *s, const mc_item *t, int choice) {
    sbuf b = {0};
    put(&b, s->zh[t->subject] ? "" : " ");
    put(&b, t->choices[choice]);
    return b.p;
}
