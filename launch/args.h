/*
 * launch/args.h — the command-line options of loom's subcommands.
 *
 * Each subcommand declares a table of options; loom_args_parse() fills the
 * destinations, prints `--help` from the same table (so every flag is
 * documented) and reports unknown flags, missing values and malformed
 * numbers. Destinations keep their defaults when an option is absent.
 */
#ifndef LOOM_ARGS_H
#define LOOM_ARGS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    LOOM_ARG_FLAG,   /* bool *: set to true when present */
    LOOM_ARG_STR,    /* const char **: the next argument */
    LOOM_ARG_INT,    /* int64_t * */
    LOOM_ARG_FLOAT,  /* double * */
    LOOM_ARG_BYTES,  /* int64_t *: a size with optional K/M/G/T suffix (powers of 1024) */
    LOOM_ARG_STRS,   /* loom_arg_strs *: each occurrence appended, with the option's name */
} loom_arg_kind;

#define LOOM_ARG_STRS_MAX 32
typedef struct {
    const char *v[LOOM_ARG_STRS_MAX];
    const char *opt[LOOM_ARG_STRS_MAX]; /* the option that gave v[i] (several options may share a list) */
    int n;
} loom_arg_strs;

typedef struct {
    const char *name;     /* "--max-tokens" */
    loom_arg_kind kind;
    void *dst;
    const char *metavar;  /* "N"; NULL for flags */
    const char *help;     /* one line; the default is printed from *dst */
} loom_arg;

typedef enum { LOOM_ARGS_OK = 0, LOOM_ARGS_HELP = 1, LOOM_ARGS_ERROR = 2 } loom_args_result;

/* Parses argv[1..argc-1] (argv[0] is the subcommand name). `synopsis` is the
 * usage line after "loom", `about` a paragraph printed under it. On
 * LOOM_ARGS_HELP the help was printed to stdout; on LOOM_ARGS_ERROR a message
 * and the usage line were printed to stderr. */
loom_args_result loom_args_parse(const char *synopsis, const char *about, const loom_arg *args,
                                 int nargs, int argc, char **argv);

#endif
