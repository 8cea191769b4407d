/* spm_train.h — SentencePiece's trainer (SentencePieceTrainer::Train) from
 * C (spm_lib.cc). */
#ifndef LAMINA_SPM_TRAIN_H
#define LAMINA_SPM_TRAIN_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Train a model of vocab_size pieces on the lines of files[0..n_files-1]
 * (each line one sentence, without its newline) and write the serialized
 * model to model_out (as model_out.tmp, then renamed). extra_options:
 * space-separated key=value trainer flags (SentencePiece's names, e.g.
 * "model_type=bpe byte_fallback=true"), or NULL. Returns 0; 2 with err for
 * an unreadable input or options the trainer refuses; 1 for a failed write.
 * progress (may be NULL) is told the bytes of input read so far, about
 * every MiB, while the trainer loads its sentences. */
typedef void (*spm_train_progress_fn)(void *ctx, int64_t bytes_read);
int spm_train(const char *const *files, int n_files, int vocab_size, const char *model_out, const char *extra_options,
              spm_train_progress_fn progress, void *ctx, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
