/* cmds.h — the subcommands of the lamina executable. Each returns the exit
 * code (or exits collectively through lm_fail). */
#ifndef LAMINA_CMDS_H
#define LAMINA_CMDS_H

int cmd_train(int argc, char **argv);
int cmd_prep(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_vocab(int argc, char **argv);
int cmd_eval(int argc, char **argv);

#endif
