/* opts.c — see opts.h. */
#include "opts.h"
#include "common.h"
#include <stdio.h>
#include <string.h>

void lm_opts_begin(lm_opts *o, const char *cmd, const char *usage, int argc, char **argv, const char *shortopts,
                   const struct option *longopts) {
    /* getopt_long wants a program name first; ':' first in the short
     * options makes a missing argument ':' (not '?') and silences getopt's
     * own messages */
    static char prog[] = "lamina";
    size_t n = strlen(shortopts);
    char *so = lm_alloc(n + 2);
    so[0] = ':';
    memcpy(so + 1, shortopts, n + 1);
    *o = (lm_opts){.cmd = cmd, .usage = usage, .shortopts = so, .longopts = longopts, .ac = argc + 1};
    o->av = lm_alloc(sizeof(char *) * (size_t)(argc + 2));
    o->av[0] = prog;
    for (int i = 0; i < argc; i++) o->av[i + 1] = argv[i];
    o->av[argc + 1] = NULL;
    optind = 0; /* glibc: start afresh (another subcommand or test may have run getopt) */
    opterr = 0;
}

int lm_opts_next(lm_opts *o, const char **arg, char *err, size_t errlen) {
    int c = getopt_long(o->ac, o->av, o->shortopts, o->longopts, NULL);
    *arg = optarg;
    if (c == -1) {
        o->pos = o->av + optind;
        o->npos = o->ac - optind;
        return -1;
    }
    if (c != '?' && c != ':') return c;
    /* the option as written: the argument getopt just passed (a long
     * option, without any =value), else the short letter */
    const char *w = o->av[optind - 1];
    char name[80];
    if (optind > 0 && !strncmp(w, "--", 2)) snprintf(name, sizeof name, "%.*s", (int)strcspn(w, "="), w);
    else snprintf(name, sizeof name, "-%c", optopt ? optopt : '?');
    if (c == '?') lm_err(err, errlen, LM_ERR_INPUT, "%s: unknown option %s (usage: %s)", o->cmd, name, o->usage);
    else lm_err(err, errlen, LM_ERR_INPUT, "%s: %s needs a value (usage: %s)", o->cmd, name, o->usage);
    return '?';
}

void lm_opts_end(lm_opts *o) {
    lm_free((void *)o->shortopts);
    lm_free(o->av);
    o->av = NULL;
}
