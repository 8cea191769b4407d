/* hf.h — Hugging Face LlamaForCausalLM folders (SPEC §7): config.json,
 * safetensors weights (one model.safetensors, or shards listed in
 * model.safetensors.index.json), generation_config.json.
 *
 * Reading (hf_config_read, hf_open, hf_load) refuses what lamina cannot
 * express and every inconsistency, each an input error (LM_ERR_INPUT, exit
 * 2) naming the file and the key or tensor:
 *   config.json: not a JSON object; model_type other than "llama";
 *   architectures without LlamaForCausalLM; a required key (hidden_size,
 *   intermediate_size, num_attention_heads, num_hidden_layers, vocab_size)
 *   missing; a size not an integer in [1, INT_MAX]; rms_norm_eps or
 *   rope_theta not a finite number > 0; rope_scaling not null;
 *   attention_bias or mlp_bias true; hidden_act (or hidden_activation)
 *   other than "silu"; attention_dropout > 0; hidden_size not divisible by
 *   num_attention_heads; head_dim other than hidden_size /
 *   num_attention_heads; num_attention_heads not divisible by
 *   num_key_value_heads. Defaults as transformers' LlamaConfig:
 *   num_key_value_heads = num_attention_heads, rms_norm_eps 1e-6,
 *   rope_theta 10000, max_position_embeddings 2048, tie_word_embeddings
 *   false.
 *   weights: exactly the tensors of SPEC §5 for that config, no more, no
 *   fewer (lm_head.weight present iff tie_word_embeddings is false: HF's
 *   save_pretrained drops a tied lm_head, so a tied folder that carries one
 *   is refused as an extra tensor rather than silently ignored), each of its
 *   shape and of dtype F32, BF16 or F16; every safetensors file valid
 *   (safetensors.h); with an index, weight_map an object of file names
 *   (plain names inside the folder), each listed file present, each tensor
 *   in the file the map names, and no file holding a tensor the map does
 *   not list. model.safetensors is used when present (as transformers
 *   does), else the index.
 *
 * Writing (hf_write_folder) makes DIR as DIR.tmp, then renames it: nothing
 * is left behind on failure, and an existing non-empty DIR is refused. */
#ifndef LAMINA_HF_H
#define LAMINA_HF_H
#include "ckpt.h"
#include "safetensors.h"
#include <jansson.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int dim, n_layers, n_heads, n_kv_heads, ffn_dim, vocab_size, max_seq_len, tie_embeddings;
    double norm_eps, rope_theta;
    int bos_id, eos_id;    /* -1: absent */
    char torch_dtype[16];  /* "" when absent */
} hf_config;

/* A JSON file of the folder (config.json, the index), read whole and parsed
 * with duplicate keys refused; NULL with err naming the file (and the line
 * of a syntax error) on failure, an input error (LM_ERR_INPUT). */
json_t *hf_json_read(const char *path, char *err, size_t errlen);

/* DIR holds a config.json (train.init / eval accept such a folder)? */
int hf_is_folder(const char *dir);

/* Parse and check DIR/config.json (rules above). 0 or LM_ERR_INPUT. */
int hf_config_read(const char *dir, hf_config *c, char *err, size_t errlen);

/* The tensors of SPEC §5 for a config, in model order: names (lm_alloc'd
 * strings) and shapes (cols = 1 for 1-D). Returns their number; free with
 * hf_names_free. */
typedef struct {
    char *name;
    int ndim;
    int64_t rows, cols;
} hf_shape;
int hf_expected(const hf_config *c, hf_shape **out);
void hf_names_free(hf_shape *s, int n);

/* An open, validated folder: the config, the files, and for each expected
 * tensor (hf_expected order) its file and header entry. */
typedef struct {
    char *dir;
    hf_config cfg;
    int nfiles;
    st_file *files;
    int n;
    hf_shape *shape;
    int *file_of;              /* index into files */
    const st_tensor **st;
    char weights_desc[64];     /* "model.safetensors" or "N shards" */
} hf_model;

/* Open DIR and validate config and weights (no tensor data read). Rank
 * local. 0 or LM_ERR_INPUT with err; nothing stays open on failure. */
int hf_open(const char *dir, hf_model *m, char *err, size_t errlen);
void hf_close(hf_model *m);
/* Index of tensor `name` in m->shape, or -1. */
int hf_index(const hf_model *m, const char *name);
/* Rows [r0, r1) of tensor i (1-D: elements) as float32 into out. */
int hf_read_rows(const hf_model *m, int i, int64_t r0, int64_t r1, float *out, char *err, size_t errlen);

/* Load the pieces of `model` (n tensors, ckpt.h's piece semantics: flat
 * ranges, row and column slices) from the folder DIR, each rank reading
 * only the rows its pieces touch, in blocks of at most 4 Mi floats. Also
 * returns the config. Checks as hf_open, plus: every requested name is a
 * tensor of the folder with the piece's shape, and every value read is
 * finite. Collective over comm (errors agreed: every rank returns the same
 * code and message). progress (may be NULL) is told after each tensor with
 * this rank's float32 bytes so far. 0 or LM_ERR_INPUT. */
typedef void (*hf_progress_fn)(void *ctx, int tensors_done, uint64_t bytes_done);
int hf_load(MPI_Comm comm, const char *dir, ckpt_tensor *model, int n, hf_config *cfg, hf_progress_fn progress, void *ctx,
            char *err, size_t errlen);

/* Writing a folder. The tensors come from a callback, one at a time in
 * hf_expected order: fetch(ctx, i, shape, buf) fills buf (rows*cols
 * floats, lm_alloc'd by the writer, freed after the tensor is written) or
 * returns an error code with err set. `dtype` is ST_F32, ST_BF16 or ST_F16;
 * shard_bytes > 0 caps a shard's tensor bytes (transformers' rule: a
 * tensor that would take a non-empty shard over the cap starts the next;
 * one shard is named model.safetensors and has no index, several are
 * model-0000K-of-0000N.safetensors with model.safetensors.index.json).
 * extra(ctx, tmpdir) runs last, before the rename, to add files (the
 * tokenizer: the integrator's hook; NULL for none). progress (may be NULL)
 * is told after each tensor. Rank local. 0, or the code with err; on
 * failure DIR.tmp is removed and DIR does not exist. */
typedef int (*hf_fetch_fn)(void *ctx, int i, const hf_shape *s, float *buf, char *err, size_t errlen);
typedef int (*hf_extra_fn)(void *ctx, const char *tmpdir, char *err, size_t errlen);
int hf_write_folder(const char *dir, const hf_config *c, st_dtype dtype, uint64_t shard_bytes, hf_fetch_fn fetch,
                    hf_extra_fn extra, hf_progress_fn progress, void *ctx, char *err, size_t errlen);

/* config.json and generation_config.json of c into the folder tmpdir
 * (dtype: torch_dtype). 0 or LM_ERR_RUNTIME. */
int hf_config_write(const char *tmpdir, const hf_config *c, st_dtype dtype, char *err, size_t errlen);

#endif
