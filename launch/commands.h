/* launch/commands.h — entry points of loom's subcommands; each returns the
 * process exit code (0 ok, 1 runtime error, 2 usage error). */
#ifndef LOOM_COMMANDS_H
#define LOOM_COMMANDS_H
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_embed(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench_comm(int argc, char **argv); /* `bench comm`, dispatched by cmd_bench */
int cmd_predict(int argc, char **argv);
#endif
