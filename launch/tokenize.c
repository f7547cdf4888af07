/* launch/tokenize.c — `loom tokenize` (placeholder until the tokenizer lands). */
#include <stdio.h>
#include "commands.h"
int cmd_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "loom tokenize: not implemented yet\n");
    return 1;
}
