/* hf_config.c — config.json of a LlamaForCausalLM folder: read and check
 * (rules in hf.h), write, and the tensor list a config implies. */
#include "hf.h"
#include "common.h"
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

json_t *hf_json_read(const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = lm_read_file(path, &len, err, errlen);
    if (!text) return NULL;
    json_error_t je;
    json_t *r = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    lm_free(text);
    if (!r) lm_err(err, errlen, LM_ERR_INPUT, "%s: not valid JSON: %s (line %d)", path, je.text, je.line);
    return r;
}

int hf_is_folder(const char *dir) {
    struct stat st;
    char p[LM_ERRLEN + 64];
    if (stat(dir, &st) || !S_ISDIR(st.st_mode)) return 0;
    snprintf(p, sizeof p, "%s/config.json", dir);
    return stat(p, &st) == 0;
}

/* Integer key in [1, INT_MAX]; `def` when absent or null (def < 0:
 * required). 0 or LM_ERR_INPUT. */
static int get_int(json_t *root, const char *path, const char *key, int def, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return lm_err(err, errlen, LM_ERR_INPUT, "%s: key %s: missing (required)", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key %s: must be an integer in [1, %d]", path, key, INT_MAX);
    *out = (int)json_integer_value(v);
    return 0;
}

/* A finite number > 0; `def` when absent. */
static int get_pos(json_t *root, const char *path, const char *key, double def, double *out, char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    double x = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x > 0) || !isfinite(x)) return lm_err(err, errlen, LM_ERR_INPUT, "%s: key %s: must be a finite number > 0", path, key);
    *out = x;
    return 0;
}

/* A token id: an integer >= 0, or a list whose first element is one (newer
 * configs list several eos ids); -1 when absent or null. */
static int get_id(json_t *root, const char *path, const char *key, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(root, key);
    *out = -1;
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT_MAX)
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key %s: must be a token id (an integer >= 0)", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

/* What lamina's model cannot express (hf.h): each refusal names the key. */
static int check_unsupported(json_t *r, const char *path, char *err, size_t errlen) {
    json_t *v;
    if ((v = json_object_get(r, "model_type")) && !(json_is_string(v) && !strcmp(json_string_value(v), "llama")))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key model_type: \"%.40s\"; lamina reads llama models only", path,
                      json_is_string(v) ? json_string_value(v) : "(not a string)");
    if ((v = json_object_get(r, "architectures")) && !json_is_null(v)) {
        int found = 0;
        size_t i;
        json_t *a;
        if (json_is_array(v)) json_array_foreach(v, i, a) found |= json_is_string(a) && !strcmp(json_string_value(a), "LlamaForCausalLM");
        if (!found) return lm_err(err, errlen, LM_ERR_INPUT, "%s: key architectures: must list LlamaForCausalLM", path);
    }
    if ((v = json_object_get(r, "rope_scaling")) && !json_is_null(v))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key rope_scaling: must be null; lamina's RoPE has no scaling (SPEC §3)", path);
    const char *bias[2] = {"attention_bias", "mlp_bias"};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(r, bias[i])) && !json_is_false(v) && !json_is_null(v))
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: key %s: must be false; lamina's projections have no bias", path, bias[i]);
    const char *act[2] = {"hidden_act", "hidden_activation"};
    for (int i = 0; i < 2; i++)
        if ((v = json_object_get(r, act[i])) && !json_is_null(v) && !(json_is_string(v) && !strcmp(json_string_value(v), "silu")))
            return lm_err(err, errlen, LM_ERR_INPUT, "%s: key %s: must be \"silu\" (SwiGLU, SPEC §3)", path, act[i]);
    if ((v = json_object_get(r, "attention_dropout")) && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key attention_dropout: must be 0; lamina has no dropout", path);
    if ((v = json_object_get(r, "tie_word_embeddings")) && !json_is_boolean(v) && !json_is_null(v))
        return lm_err(err, errlen, LM_ERR_INPUT, "%s: key tie_word_embeddings: must be true or false", path);
    return 0;
}

int hf_config_read(const char *dir, hf_config *c, char *err, size_t errlen) {
    char path[LM_ERRLEN];
    snprintf(path, sizeof path, "%s/config.json", dir);
    memset(c, 0, sizeof *c);
    json_t *r = hf_json_read(path, err, errlen);
    if (!r) return LM_ERR_INPUT;
    int rc = 0, head_dim = 0;
    if (!json_is_object(r)) rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: not a JSON object", path);
    if (!rc) rc = check_unsupported(r, path, err, errlen);
    if (!rc) rc = get_int(r, path, "hidden_size", -1, &c->dim, err, errlen);
    if (!rc) rc = get_int(r, path, "intermediate_size", -1, &c->ffn_dim, err, errlen);
    if (!rc) rc = get_int(r, path, "num_attention_heads", -1, &c->n_heads, err, errlen);
    if (!rc) rc = get_int(r, path, "num_hidden_layers", -1, &c->n_layers, err, errlen);
    if (!rc) rc = get_int(r, path, "vocab_size", -1, &c->vocab_size, err, errlen);
    if (!rc) rc = get_int(r, path, "num_key_value_heads", c->n_heads, &c->n_kv_heads, err, errlen);
    if (!rc) rc = get_int(r, path, "max_position_embeddings", 2048, &c->max_seq_len, err, errlen);
    if (!rc) rc = get_pos(r, path, "rms_norm_eps", 1e-6, &c->norm_eps, err, errlen);
    if (!rc) rc = get_pos(r, path, "rope_theta", 10000, &c->rope_theta, err, errlen);
    if (!rc) rc = get_id(r, path, "bos_token_id", &c->bos_id, err, errlen);
    if (!rc) rc = get_id(r, path, "eos_token_id", &c->eos_id, err, errlen);
    if (!rc) c->tie_embeddings = json_is_true(json_object_get(r, "tie_word_embeddings"));
    json_t *td = json_object_get(r, "torch_dtype");
    if (!rc && json_is_string(td)) snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", json_string_value(td));
    if (!rc && c->dim % c->n_heads)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: key hidden_size: %d is not divisible by num_attention_heads = %d", path,
                    c->dim, c->n_heads);
    if (!rc) rc = get_int(r, path, "head_dim", c->dim / c->n_heads, &head_dim, err, errlen);
    if (!rc && head_dim != c->dim / c->n_heads)
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: key head_dim: %d; lamina's head_dim is hidden_size / num_attention_heads = %d",
                    path, head_dim, c->dim / c->n_heads);
    if (!rc && (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads))
        rc = lm_err(err, errlen, LM_ERR_INPUT, "%s: key num_key_value_heads: %d must divide num_attention_heads = %d", path,
                    c->n_kv_heads, c->n_heads);
    json_decref(r);
    return rc;
}

int hf_expected(const hf_config *c, hf_shape **out) {
    int n = 2 + 9 * c->n_layers + (c->tie_embeddings ? 0 : 1), k = 0;
    hf_shape *s = lm_calloc((size_t)n, sizeof *s);
    int64_t D = c->dim, F = c->ffn_dim, KV = (int64_t)c->n_kv_heads * (c->dim / c->n_heads);
    char name[160];
#define ADD(nm, nd, r, cc) (s[k].name = lm_strdup(nm), s[k].ndim = (nd), s[k].rows = (r), s[k].cols = (cc), k++)
    ADD("model.embed_tokens.weight", 2, c->vocab_size, D);
    for (int i = 0; i < c->n_layers; i++) {
        struct { const char *n; int nd; int64_t r, c; } L[9] = {
            {"input_layernorm", 1, D, 1},       {"self_attn.q_proj", 2, D, D},
            {"self_attn.k_proj", 2, KV, D},     {"self_attn.v_proj", 2, KV, D},
            {"self_attn.o_proj", 2, D, D},      {"post_attention_layernorm", 1, D, 1},
            {"mlp.gate_proj", 2, F, D},         {"mlp.up_proj", 2, F, D},
            {"mlp.down_proj", 2, D, F},
        };
        for (int j = 0; j < 9; j++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", i, L[j].n);
            ADD(name, L[j].nd, L[j].r, L[j].c);
        }
    }
    ADD("model.norm.weight", 1, D, 1);
    if (!c->tie_embeddings) ADD("lm_head.weight", 2, c->vocab_size, D);
#undef ADD
    *out = s;
    return k;
}

void hf_names_free(hf_shape *s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) lm_free(s[i].name);
    lm_free(s);
}

/* Shortest %.Ng (N <= 17) that reads back as x. */
static int digits_for(double x) {
    char b[40];
    for (int p = 1; p < 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, x);
        if (strtod(b, NULL) == x) return p;
    }
    return 17;
}

/* Write obj as PATH (indented, as transformers writes it). */
static int dump_json(json_t *obj, const char *path, int prec, char *err, size_t errlen) {
    int rc = json_dump_file(obj, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(prec));
    json_decref(obj);
    return rc ? lm_err(err, errlen, LM_ERR_RUNTIME, "%s: cannot write (%s)", path, strerror(errno)) : 0;
}

static json_t *id_or_null(int id) { return id >= 0 ? json_integer(id) : json_null(); }

int hf_config_write(const char *tmpdir, const hf_config *c, st_dtype dtype, char *err, size_t errlen) {
    const char *td = dtype == ST_BF16 ? "bfloat16" : dtype == ST_F16 ? "float16" : "float32";
    json_t *o = json_object(), *arch = json_array();
    json_array_append_new(arch, json_string("LlamaForCausalLM"));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string("llama"));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "hidden_size", json_integer(c->dim));
    json_object_set_new(o, "intermediate_size", json_integer(c->ffn_dim));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(o, "head_dim", json_integer(c->dim / c->n_heads));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "rms_norm_eps", json_real(c->norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_seq_len));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(o, "attention_bias", json_false());
    json_object_set_new(o, "mlp_bias", json_false());
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    json_object_set_new(o, "initializer_range", json_real(0.02));
    json_object_set_new(o, "pretraining_tp", json_integer(1));
    json_object_set_new(o, "use_cache", json_true());
    json_object_set_new(o, "bos_token_id", id_or_null(c->bos_id));
    json_object_set_new(o, "eos_token_id", id_or_null(c->eos_id));
    json_object_set_new(o, "torch_dtype", json_string(td));
    json_object_set_new(o, "transformers_version", json_string("4.40.0"));
    int p1 = digits_for(c->norm_eps), p2 = digits_for(c->rope_theta), p = p1 > p2 ? p1 : p2;
    char path[LM_ERRLEN];
    snprintf(path, sizeof path, "%s/config.json", tmpdir);
    int rc = dump_json(o, path, p < 2 ? 2 : p, err, errlen);
    if (rc) return rc;
    json_t *g = json_object();
    json_object_set_new(g, "bos_token_id", id_or_null(c->bos_id));
    json_object_set_new(g, "eos_token_id", id_or_null(c->eos_id));
    json_object_set_new(g, "transformers_version", json_string("4.40.0"));
    snprintf(path, sizeof path, "%s/generation_config.json", tmpdir);
    return dump_json(g, path, 17, err, errlen);
}
