/* spm_lib.h — the C face of SentencePiece's C++ processor (spm_lib.cc, the
 * one C++ file): load from serialized bytes, encode, decode, vocabulary
 * queries. No C++ exception crosses it; failures come back as return codes
 * with the library's message in err. Callers go through spm.h, which
 * validates the bytes (spm_proto.h) before this layer sees them. */
#ifndef LAMINA_SPM_LIB_H
#define LAMINA_SPM_LIB_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct spm_lib spm_lib;

/* NULL with err (SentencePiece's status message) when it refuses the model. */
spm_lib *spm_lib_load(const void *buf, size_t len, char *err, size_t errlen);
void spm_lib_free(spm_lib *s);

/* Ids of n bytes of text into *ids (lm_alloc'ed; at least one element):
 * 0, or 1 with err. */
int spm_lib_encode(const spm_lib *s, const char *text, size_t n, int32_t **ids, size_t *n_ids, char *err,
                   size_t errlen);
/* Text of ids (in range: the caller checks) into *text (lm_alloc'ed,
 * NUL-terminated): 0, or 1 with err. */
int spm_lib_decode(const spm_lib *s, const int32_t *ids, size_t n, char **text, size_t *len, char *err,
                   size_t errlen);

int spm_lib_piece_size(const spm_lib *s);
int spm_lib_piece_to_id(const spm_lib *s, const char *piece, size_t len); /* unk_id when absent */
int spm_lib_bos_id(const spm_lib *s);
int spm_lib_eos_id(const spm_lib *s);
int spm_lib_unk_id(const spm_lib *s);
int spm_lib_pad_id(const spm_lib *s);

#ifdef __cplusplus
}
#endif
#endif
