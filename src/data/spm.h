/* spm.h — SentencePiece tokenizers (SPEC §8): a `tokenizer.model` file (a
 * serialized protobuf ModelProto, as LLaMA-2 ships it) loaded from a file or
 * from bytes (the copy recorded in a token file or checkpoint), encoding and
 * decoding exactly as SentencePiece does (ids and text), and the model's
 * pieces and special ids.
 *
 * Every loader validates: a file that is not a ModelProto, or that
 * SentencePiece rejects, is an input error (2) naming the file.
 * An lm_spm is also an lm_tokenizer (spm_tokenizer), so prep and generate
 * take either the byte tokenizer or a SentencePiece one. */
#ifndef LAMINA_SPM_H
#define LAMINA_SPM_H
#include <stddef.h>
#include <stdint.h>
#include "tokenizer.h"

typedef struct lm_spm lm_spm;

/* Load from a file / from bytes (copied). `what` names the source in
 * messages (a path, or "FILE.h5:/tokenizer/model"). Returns NULL with err. */
lm_spm *spm_load(const char *path, char *err, size_t errlen);
lm_spm *spm_load_bytes(const void *buf, size_t len, const char *what, char *err, size_t errlen);
void spm_free(lm_spm *s);

/* The serialized model (as loaded): to record it in a token file or a
 * checkpoint, or to write it out as tokenizer.model. */
const void *spm_model_bytes(const lm_spm *s, size_t *len);

int spm_vocab_size(const lm_spm *s);
int spm_bos_id(const lm_spm *s); /* -1 when the model has none */
int spm_eos_id(const lm_spm *s);
int spm_unk_id(const lm_spm *s);
int spm_pad_id(const lm_spm *s);
const char *spm_id_to_piece(const lm_spm *s, int id); /* NULL outside [0, vocab) */
int spm_piece_to_id(const lm_spm *s, const char *piece); /* -1 when absent */

/* Encode n bytes of text (no BOS/EOS added): *ids is lm_alloc'ed (free with
 * lm_free), *n_ids its length. Returns 0, or 1 with err. */
int spm_encode(const lm_spm *s, const char *text, size_t n, int32_t **ids, size_t *n_ids, char *err, size_t errlen);
/* Decode ids to text: *text lm_alloc'ed and NUL-terminated. Returns 0, or 2
 * with err for an id outside the vocabulary (named). */
int spm_decode(const lm_spm *s, const int32_t *ids, size_t n, char **text, size_t *len, char *err, size_t errlen);

/* The lm_tokenizer view of s (valid while s lives). */
const lm_tokenizer *spm_tokenizer(const lm_spm *s);

#endif
