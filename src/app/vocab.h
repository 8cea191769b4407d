/* vocab.h — the parts of `lamina vocab` (vocab*.c), shared among them. */
#ifndef LAMINA_VOCAB_H
#define LAMINA_VOCAB_H
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

void vocab_usage(FILE *f);
/* One line of f without its '\n' (getline's buffer): length, -1 at the end. */
ssize_t vocab_getline(char **buf, size_t *cap, FILE *f);
/* Characters of UTF-8 text (bytes that are not 10xxxxxx). */
size_t vocab_utf8_chars(const char *s, size_t n);

/* Rank 0's subcommands: 0, -1 (help printed) or an exit code with err. */
int vocab_train(int argc, char **argv, char *err, size_t errlen);
int vocab_expand(int argc, char **argv, char *err, size_t errlen);
/* Collective (every rank): returns 0 or exits through lm_fail. */
int vocab_resize(int argc, char **argv);

#endif
