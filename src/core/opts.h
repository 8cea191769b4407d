/* opts.h — the options of a subcommand through getopt_long (glibc), with
 * one wording for its errors: an unknown option or a missing argument is
 * exit code 2 (LM_ERR_INPUT) with "CMD: ..." naming the option and the
 * subcommand's usage.
 *
 *   lm_opts o;
 *   lm_opts_begin(&o, "prep", PREP_USAGE, argc, argv, "o:h", LONGOPTS);
 *   for (int c; (c = lm_opts_next(&o, &arg, err, sizeof err)) != -1;)
 *       switch (c) { case '?': ...error in err...; case 'o': ... }
 *   ...o.pos[0 .. o.npos-1]: the positional arguments, in order...
 *   lm_opts_end(&o);
 *
 * `argv` is a subcommand's argument vector: argv[0] is its first argument
 * (not a program name). Options and positionals may mix (GNU order); "--"
 * ends the options; --name=value and --name value both work. */
#ifndef LAMINA_OPTS_H
#define LAMINA_OPTS_H
#include <getopt.h>
#include <stddef.h>

typedef struct {
    const char *cmd, *usage, *shortopts;
    const struct option *longopts;
    char **av; /* "lamina CMD", then the arguments (getopt permutes this copy) */
    int ac;
    char **pos; /* after the last lm_opts_next: the positional arguments */
    int npos;
} lm_opts;

void lm_opts_begin(lm_opts *o, const char *cmd, const char *usage, int argc, char **argv, const char *shortopts,
                   const struct option *longopts);

/* The next option's value (its short letter, or the long option's `val`)
 * with its argument in *arg; -1 at the end (o->pos is then set); '?' for
 * an unknown option or a missing argument, with the message in err. */
int lm_opts_next(lm_opts *o, const char **arg, char *err, size_t errlen);

void lm_opts_end(lm_opts *o);

#endif
