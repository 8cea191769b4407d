/* hf_tokenizer.h — the tokenizer files of a Hugging Face LLaMA folder, as
 * transformers' LlamaTokenizer reads them: tokenizer.model (the
 * SentencePiece model's bytes, unchanged), tokenizer_config.json and
 * special_tokens_map.json (the BOS/EOS/UNK piece strings of that model). */
#ifndef LAMINA_HF_TOKENIZER_H
#define LAMINA_HF_TOKENIZER_H
#include "spm.h"
#include <stddef.h>

/* Write the three files into dir (an existing folder). model_max_length:
 * the model's max_seq_len. Returns 0, or 1 with err naming the file. */
int hf_tokenizer_write(const char *dir, const lm_spm *sp, int model_max_length, char *err, size_t errlen);

#endif
