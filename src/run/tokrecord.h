/* tokrecord.h — which tokenizer a training run records in its checkpoints
 * (SPEC §4, §5): the one its data.train files carry (they must agree), or,
 * when the data carries none, the one of the checkpoint the run starts from
 * (a restart or train.init). The model is opaque bytes here (tokrec.h). */
#ifndef LAMINA_TOKRECORD_H
#define LAMINA_TOKRECORD_H
#include "deck.h"
#include "session.h"
#include "spm.h"
#include "tokenizer.h"
#include "tokrec.h"
#include <stddef.h>

/* The tokenizer of the data.train files into *out (out->model NULL when no
 * file has one) and the first file holding it into from. Files without a
 * tokenizer are allowed beside ones with it. Rules, each exit-2 class with
 * err naming the files: every file that records a tokenizer records the
 * same bytes, bos_id and eos_id; model.vocab_size >= the vocabulary of the
 * tokenizer (the vocab_size of the token file that records it: LLaMA decks
 * may pad the embedding above it, never below). A file that does not open is
 * left to the data loader's own message. Per rank (no MPI): every rank gets
 * the same answer. Returns 0, or 2 (1 on a failed read) with err. */
int tokrecord_from_data(const lm_config *c, lm_tokrec *out, char *from, size_t fromlen, char *err, size_t errlen);

/* The tokenizer recorded in checkpoint `path` into *out (none: model NULL),
 * with the same vocabulary rule when the checkpoint says its size. Serial
 * (ckpt_tokenizer). Returns 0, or 2 / 1 with err. */
int tokrecord_from_ckpt(const lm_config *c, const char *path, lm_tokrec *out, char *err, size_t errlen);

/* The tokenizer of what a run's weights start from: a checkpoint file
 * (tokrecord_from_ckpt) or a Hugging Face folder (its tokenizer.model,
 * loaded and checked as a SentencePiece model; bos/eos and vocabulary from
 * it); none for NULL or anything else. Serial. Returns 0, or 2 / 1 with err. */
int tokrecord_from_start(const lm_config *c, const char *from, lm_tokrec *out, char *err, size_t errlen);

/* The tokenizer a command that reads a session's weights (generate, eval)
 * encodes with: the SentencePiece model at `path` when given, else the one
 * recorded where the weights came from (the resumed checkpoint or
 * train.init: tokrecord_from_start), else the bytes tokenizer. Every rank
 * reads it itself and they agree on errors; a failure, or a tokenizer larger
 * than model.vocab_size, is exit 2 on all ranks, the message prefixed with
 * `cmd`. *sp holds a SentencePiece model to free (NULL for the bytes one). */
const lm_tokenizer *tokrecord_session_tokenizer(const lm_session *S, const char *path, const char *cmd, lm_spm **sp);

#endif
