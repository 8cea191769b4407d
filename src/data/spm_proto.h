/* spm_proto.h — our own reader and writer of SentencePiece's ModelProto
 * (sentencepiece_model.proto; there is no C header for it), pure C.
 *
 * The reader walks the protobuf wire format (varint, 64-bit,
 * length-delimited, 32-bit; groups and wire types 6-7 are rejected, as are
 * varints over 10 bytes, field number 0 and lengths past the end) of the
 * model and of its known nested messages: pieces (field 1: piece = 1
 * string, score = 2 float, type = 3 enum), TrainerSpec (2), NormalizerSpec
 * (3), self-test data (4) and the denormalizer (5). Repeated messages merge
 * as protobuf merges them (a later scalar wins). Every error names the
 * source (`what`) and the byte offset, or the piece. spm_load runs it
 * before SentencePiece ever sees the bytes. */
#ifndef LAMINA_SPM_PROTO_H
#define LAMINA_SPM_PROTO_H
#include <stddef.h>

/* ModelProto.SentencePiece.Type and TrainerSpec.ModelType */
enum { SPM_NORMAL = 1, SPM_UNKNOWN = 2, SPM_CONTROL = 3, SPM_USER_DEFINED = 4, SPM_UNUSED = 5, SPM_BYTE = 6 };
enum { SPM_UNIGRAM = 1, SPM_BPE = 2, SPM_WORD = 3, SPM_CHAR = 4 };

typedef struct {
    char *piece; /* NUL-terminated copy (pieces hold no NUL byte) */
    size_t len;
    float score;
    int type;    /* SPM_NORMAL... (absent: NORMAL) */
} spm_piece;

typedef struct {
    spm_piece *pieces;
    int n_pieces;
    int has_trainer_spec, has_normalizer_spec;
    /* TrainerSpec (proto defaults when absent) */
    int model_type, vocab_size, byte_fallback, split_digits;
    int unk_id, bos_id, eos_id, pad_id;
    /* NormalizerSpec */
    int add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    size_t charsmap_len;     /* precompiled_charsmap bytes (0: identity) */
    int max_norm_chars;      /* the most characters one normalization rule writes (1 without a charsmap) */
} spm_model_info;

/* Parse and check a serialized ModelProto: 0, or 2 (LM_ERR_INPUT) with err
 * "WHAT: not a SentencePiece model: byte N: ...". m is filled on success
 * (free with spm_proto_free) and zeroed on failure. */
int spm_proto_read(const void *buf, size_t len, const char *what, spm_model_info *m, char *err, size_t errlen);
void spm_proto_free(spm_model_info *m);

/* A new serialized model: buf with pieces[0..n-1] appended as field-1
 * records (piece, score 0; type absent = NORMAL, as Colossal-LLaMA-2's merge
 * writes them), and every TrainerSpec record rewritten with vocab_size =
 * the new piece count (other fields, unknown ones included, kept as they
 * are). *out is lm_alloc'ed. buf must pass spm_proto_read. Returns 0, or 2
 * with err for an empty piece or one holding a NUL byte. */
int spm_proto_append(const void *buf, size_t len, const char *what, const char *const *pieces, int n, void **out,
                     size_t *outlen, char *err, size_t errlen);

#endif
