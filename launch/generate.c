/* launch/generate.c — `loom generate` (placeholder until the engine lands). */
#include <stdio.h>
#include "commands.h"
int cmd_generate(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "loom generate: not implemented yet\n");
    return 1;
}
