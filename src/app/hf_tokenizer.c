/* hf_tokenizer.c — see hf_tokenizer.h. */
#include "hf_tokenizer.h"
#include "common.h"
#include "deck.h"
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A special token as a JSON string (its piece), or null when the model has
 * none. */
static json_t *piece_or_null(const lm_spm *sp, int id) {
    const char *p = id >= 0 ? spm_id_to_piece(sp, id) : NULL;
    return p ? json_string(p) : json_null();
}

static int dump(json_t *o, const char *dir, const char *name, char *err, size_t errlen) {
    char path[LM_PATHLEN + 64];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = json_dump_file(o, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return rc ? lm_err(err, errlen, LM_ERR_RUNTIME, "convert: cannot write %s", path) : 0;
}

int hf_tokenizer_write(const char *dir, const lm_spm *sp, int model_max_length, char *err, size_t errlen) {
    char path[LM_PATHLEN + 64];
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    size_t n;
    const void *b = spm_model_bytes(sp, &n);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(b, 1, n, f) != n || fflush(f) || fsync(fileno(f))) {
        int e = errno;
        if (f) fclose(f);
        return lm_err(err, errlen, LM_ERR_RUNTIME, "convert: cannot write %s: %s", path, strerror(e));
    }
    if (fclose(f)) return lm_err(err, errlen, LM_ERR_RUNTIME, "convert: cannot write %s: %s", path, strerror(errno));
    int bos = spm_bos_id(sp), eos = spm_eos_id(sp), unk = spm_unk_id(sp), pad = spm_pad_id(sp);
    /* LlamaTokenizer: BOS added, EOS not, the SentencePiece model's own
     * normalisation (legacy = true keeps the behaviour LLaMA-2 shipped with). */
    json_t *cfg = json_object();
    json_object_set_new(cfg, "tokenizer_class", json_string("LlamaTokenizer"));
    json_object_set_new(cfg, "add_bos_token", json_boolean(bos >= 0));
    json_object_set_new(cfg, "add_eos_token", json_false());
    json_object_set_new(cfg, "bos_token", piece_or_null(sp, bos));
    json_object_set_new(cfg, "eos_token", piece_or_null(sp, eos));
    json_object_set_new(cfg, "unk_token", piece_or_null(sp, unk));
    json_object_set_new(cfg, "pad_token", piece_or_null(sp, pad));
    json_object_set_new(cfg, "clean_up_tokenization_spaces", json_false());
    json_object_set_new(cfg, "legacy", json_true());
    json_object_set_new(cfg, "model_max_length", json_integer(model_max_length));
    json_object_set_new(cfg, "sp_model_kwargs", json_object());
    int rc = dump(cfg, dir, "tokenizer_config.json", err, errlen);
    if (rc) return rc;
    json_t *map = json_object();
    if (bos >= 0) json_object_set_new(map, "bos_token", piece_or_null(sp, bos));
    if (eos >= 0) json_object_set_new(map, "eos_token", piece_or_null(sp, eos));
    if (unk >= 0) json_object_set_new(map, "unk_token", piece_or_null(sp, unk));
    if (pad >= 0) json_object_set_new(map, "pad_token", piece_or_null(sp, pad));
    return dump(map, dir, "special_tokens_map.json", err, errlen);
}
