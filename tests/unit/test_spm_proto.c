/* test_spm_proto.c — our ModelProto reader and appender (src/data/spm_proto.c)
 * and the SentencePiece loader over it (src/data/spm.c): the committed tiny
 * model (tests/data/spm_tiny.model: python3-sentencepiece, LLaMA-2 settings,
 * 400 pieces; `tests/ref/spm_parity.py tiny` remakes it) read field by
 * field, appended to, hand-made malformed protobuf refused with the byte
 * named, and a deterministic mutation fuzz: the reader answers an error or a
 * valid piece list, and spm_load_bytes never crashes (ASan + UBSan build:
 * build/san/tests/test_spm_proto). Run from the repository root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "common.h"
#include "spm.h"
#include "spm_proto.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TINY "tests/data/spm_tiny.model"

static char *g_model;
static size_t g_len;

static int setup(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    g_model = lm_read_file(TINY, &g_len, err, sizeof err);
    if (!g_model) fprintf(stderr, "run from the repository root: %s\n", err);
    return g_model ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    lm_free(g_model);
    return 0;
}

static int find(const spm_model_info *m, const char *p) {
    for (int i = 0; i < m->n_pieces; i++)
        if (!strcmp(m->pieces[i].piece, p)) return i;
    return -1;
}

static void test_read_tiny(void **state) {
    (void)state;
    spm_model_info m;
    char err[LM_ERRLEN];
    assert_int_equal(spm_proto_read(g_model, g_len, TINY, &m, err, sizeof err), 0);
    assert_int_equal(m.n_pieces, 400);
    assert_int_equal(m.vocab_size, 400);
    assert_int_equal(m.model_type, SPM_BPE);
    assert_int_equal(m.byte_fallback, 1);
    assert_int_equal(m.split_digits, 1);
    assert_int_equal(m.unk_id, 0);
    assert_int_equal(m.bos_id, 1);
    assert_int_equal(m.eos_id, 2);
    assert_int_equal(m.pad_id, -1);
    assert_int_equal(m.add_dummy_prefix, 1);
    assert_int_equal(m.remove_extra_whitespaces, 0);
    assert_int_equal(m.charsmap_len, 0); /* identity */
    assert_string_equal(m.pieces[0].piece, "<unk>");
    assert_int_equal(m.pieces[0].type, SPM_UNKNOWN);
    assert_int_equal(m.pieces[1].type, SPM_CONTROL);
    assert_int_equal(m.pieces[2].type, SPM_CONTROL);
    assert_int_equal(m.pieces[find(&m, "<ctl>")].type, SPM_CONTROL);
    assert_int_equal(m.pieces[find(&m, "<sep>")].type, SPM_USER_DEFINED);
    int b0 = find(&m, "<0x00>");
    assert_true(b0 > 0);
    for (int i = 0; i < 256; i++) assert_int_equal(m.pieces[b0 + i].type, SPM_BYTE);
    assert_int_equal(m.pieces[b0 + 255].len, 6);
    /* BPE scores: minus the merge rank, decreasing */
    int nrm = b0 + 256;
    assert_int_equal(m.pieces[nrm].type, SPM_NORMAL);
    assert_true(m.pieces[nrm].score > m.pieces[nrm + 5].score);
    spm_proto_free(&m);
}

static void test_load_encode(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    lm_spm *s = spm_load(TINY, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spm_vocab_size(s), 400);
    assert_int_equal(spm_bos_id(s), 1);
    assert_int_equal(spm_eos_id(s), 2);
    assert_int_equal(spm_unk_id(s), 0);
    assert_int_equal(spm_pad_id(s), -1);
    int sep = spm_piece_to_id(s, "<sep>");
    assert_true(sep > 2);
    assert_string_equal(spm_id_to_piece(s, sep), "<sep>");
    assert_int_equal(spm_piece_to_id(s, "no such piece"), -1);
    assert_null(spm_id_to_piece(s, 400));
    assert_null(spm_id_to_piece(s, -1));
    const char *text = "The way that can be told is not the eternal Way. 42 \xe4\xb8\xad";
    int32_t *ids;
    size_t n;
    assert_int_equal(spm_encode(s, text, strlen(text), &ids, &n, err, sizeof err), 0);
    assert_true(n > 5);
    char *back;
    size_t bl;
    assert_int_equal(spm_decode(s, ids, n, &back, &bl, err, sizeof err), 0);
    assert_int_equal(bl, strlen(text));
    assert_memory_equal(back, text, bl);
    lm_free(back);
    /* the tokenizer view */
    const lm_tokenizer *t = spm_tokenizer(s);
    assert_int_equal(t->vocab_size, 400);
    assert_int_equal(t->bos, 1);
    size_t cap = t->max_tokens(t, strlen(text));
    assert_true(cap >= n);
    uint32_t *u = lm_alloc(cap * sizeof(uint32_t));
    assert_int_equal(t->encode(t, text, strlen(text), u, cap), n);
    for (size_t i = 0; i < n; i++) assert_int_equal(u[i], (uint32_t)ids[i]);
    char out[256];
    assert_int_equal(t->decode(t, u, n, out, sizeof out), strlen(text));
    assert_string_equal(out, text);
    lm_free(u);
    /* an id outside the vocabulary is named */
    ids[1] = 400;
    assert_int_equal(spm_decode(s, ids, n, &back, &bl, err, sizeof err), LM_ERR_INPUT);
    assert_non_null(strstr(err, "id 400"));
    lm_free(ids);
    spm_free(s);
}

static void test_append(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    const char *add[] = {"\xe4\xb8\xad\xe6\x96\x87", "eternalway"}; /* 中文 */
    void *out;
    size_t ol;
    assert_int_equal(spm_proto_append(g_model, g_len, TINY, add, 2, &out, &ol, err, sizeof err), 0);
    spm_model_info m;
    assert_int_equal(spm_proto_read(out, ol, "merged", &m, err, sizeof err), 0);
    assert_int_equal(m.n_pieces, 402);
    assert_int_equal(m.vocab_size, 402);
    assert_int_equal(m.byte_fallback, 1); /* the rest of trainer_spec kept */
    assert_int_equal(m.pad_id, -1);
    assert_string_equal(m.pieces[400].piece, add[0]);
    assert_string_equal(m.pieces[401].piece, add[1]);
    assert_int_equal(m.pieces[401].type, SPM_NORMAL);
    assert_true(m.pieces[401].score == 0.0f);
    spm_proto_free(&m);
    lm_spm *s = spm_load_bytes(out, ol, "merged", err, sizeof err);
    assert_non_null(s);
    assert_int_equal(spm_vocab_size(s), 402);
    assert_int_equal(spm_piece_to_id(s, add[0]), 400);
    /* the merged piece is used: BPE merges 中 + 文 into the new piece */
    int32_t *ids;
    size_t n;
    assert_int_equal(spm_encode(s, add[0], strlen(add[0]), &ids, &n, err, sizeof err), 0);
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= ids[i] == 400;
    assert_true(found);
    lm_free(ids);
    spm_free(s);
    /* a duplicate of a base piece: written, but SentencePiece refuses it */
    const char *dup[] = {"<sep>"};
    void *o2;
    size_t l2;
    assert_int_equal(spm_proto_append(g_model, g_len, TINY, dup, 1, &o2, &l2, err, sizeof err), 0);
    assert_null(spm_load_bytes(o2, l2, "dup.model", err, sizeof err));
    assert_non_null(strstr(err, "dup.model"));
    lm_free(o2);
    const char *empty[] = {""};
    assert_int_equal(spm_proto_append(g_model, g_len, TINY, empty, 1, &o2, &l2, err, sizeof err), LM_ERR_INPUT);
    lm_free(out);
}

/* Hand-made malformed protobuf: each refused with the byte named. */
static void test_malformed(void **state) {
    (void)state;
    struct { const char *bytes; size_t n; const char *want; } c[] = {
        {"", 0, "no pieces"},
        {"\x0a\x06\x0a\x03" "abc", 7, "byte 0: length-delimited"}, /* length 6 past the end */
        {"\x0a\x05\x0a\x04" "abc", 7, "byte 2: length-delimited"}, /* inside the piece */
        {"\x0b", 1, "wire type 3"},                                 /* group start */
        {"\x0e\x00", 2, "wire type 6"},
        {"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f", 11, "longer than 64 bits"},
        {"\x08\x80", 2, "past the end"},                            /* truncated varint */
        {"\x00\x00", 2, "field number 0"},
        {"\x08\x01", 2, "wire type 0, expected 2"},                 /* pieces as a varint */
        {"\x0a\x05\x0a\x01" "a\x18\x09", 7, "type 9"},             /* piece type 9 */
        {"\x0a\x02\x18\x01", 4, "no piece string"},
        {"\x0a\x03\x0a\x01\x00", 5, "NUL"},
        {"\x0a\x03\x0a\x01" "a\x12\x02\x18\x07", 9, "model_type"},
        {"\x0a\x03\x0a\x01" "a\x1a\x03\x12\x01\x00", 10, "precompiled_charsmap"},
        {"\x0a\x03\x0a\x01" "a\x15\x00\x00", 8, "fixed-size"},
    };
    char err[LM_ERRLEN];
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        spm_model_info m;
        int rc = spm_proto_read(c[i].bytes, c[i].n, "bad.model", &m, err, sizeof err);
        if (rc != LM_ERR_INPUT || !strstr(err, c[i].want) || !strstr(err, "bad.model"))
            fail_msg("case %zu: rc %d, err '%s' (want '%s')", i, rc, err, c[i].want);
        assert_null(spm_load_bytes(c[i].bytes, c[i].n, "bad.model", err, sizeof err));
    }
    /* well-formed but not a tokenizer SentencePiece accepts: one piece */
    assert_null(spm_load_bytes("\x0a\x03\x0a\x01" "a", 5, "one.model", err, sizeof err));
    assert_non_null(strstr(err, "one.model"));
    /* not a file */
    assert_null(spm_load("tests/data/no-such.model", err, sizeof err));
    assert_non_null(strstr(err, "no-such.model"));
}

/* xorshift64*: the fuzz's deterministic stream. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 2685821657736338717ull;
}

/* 3000 mutants of the tiny model (byte and bit flips, truncation, inserted
 * and deleted runs, varint-looking bytes): the reader returns 0 with a
 * valid piece list or 2 naming the source; the loader never crashes, and
 * a model it accepts encodes and decodes. */
static void test_fuzz(void **state) {
    (void)state;
    char err[LM_ERRLEN];
    int accepted = 0, loaded = 0;
    unsigned char *b = lm_alloc(g_len + 64);
    for (int it = 0; it < 3000; it++) {
        memcpy(b, g_model, g_len);
        size_t n = g_len;
        int muts = 1 + (int)(rnd() % 4);
        for (int k = 0; k < muts; k++) {
            size_t at = (size_t)(rnd() % n);
            switch (rnd() % 6) {
            case 0: b[at] ^= (unsigned char)(1u << (rnd() % 8)); break;
            case 1: b[at] = (unsigned char)rnd(); break;
            case 2: n = at + 1; break;
            case 3: b[at] = (unsigned char)(0x80 | rnd()); break;
            case 4: { /* insert up to 8 bytes */
                size_t m = 1 + rnd() % 8;
                if (n + m > g_len + 64) break;
                memmove(b + at + m, b + at, n - at);
                for (size_t j = 0; j < m; j++) b[at + j] = (unsigned char)rnd();
                n += m;
                break;
            }
            default: { /* delete up to 8 bytes */
                size_t m = 1 + rnd() % 8;
                if (at + m > n) m = n - at;
                memmove(b + at, b + at + m, n - at - m);
                n -= m;
                break;
            }
            }
            if (!n) n = 1;
        }
        spm_model_info m;
        int rc = spm_proto_read(b, n, "mutant", &m, err, sizeof err);
        if (rc == 0) {
            accepted++;
            assert_true(m.n_pieces > 0);
            for (int i = 0; i < m.n_pieces; i++) {
                assert_true(m.pieces[i].len > 0 && strlen(m.pieces[i].piece) == m.pieces[i].len);
                assert_true(m.pieces[i].type >= SPM_NORMAL && m.pieces[i].type <= SPM_BYTE);
            }
            spm_proto_free(&m);
        } else {
            assert_int_equal(rc, LM_ERR_INPUT);
            assert_non_null(strstr(err, "mutant"));
        }
        lm_spm *s = spm_load_bytes(b, n, "mutant", err, sizeof err);
        if (!s) {
            assert_non_null(strstr(err, "mutant"));
            continue;
        }
        loaded++;
        const char *text = "Hello, \xe4\xb8\x96\xe7\x95\x8c 123 <sep> \xff";
        int32_t *ids;
        size_t k;
        char *back;
        size_t bl;
        assert_int_equal(spm_encode(s, text, strlen(text), &ids, &k, err, sizeof err), 0);
        assert_int_equal(spm_decode(s, ids, k, &back, &bl, err, sizeof err), 0);
        lm_free(back);
        lm_free(ids);
        spm_free(s);
    }
    lm_free(b);
    print_message("fuzz: 3000 mutants, %d parsed, %d loaded by SentencePiece\n", accepted, loaded);
    assert_true(accepted > 0 && accepted < 3000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_tiny), cmocka_unit_test(test_load_encode), cmocka_unit_test(test_append),
        cmocka_unit_test(test_malformed), cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
