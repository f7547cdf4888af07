/*
 * launch/main.c — the `loom` executable: dispatches to subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "launch/commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} commands[] = {
    {"generate", cmd_generate, "generate text from a prompt (or many, one per line)"},
    {"chat", cmd_chat, "a conversation with the model through its chat template, turn by turn"},
    {"serve", cmd_serve, "serve the model over HTTP (OpenAI's API), on one rank or a cluster"},
    {"perplexity", cmd_perplexity, "a model's perplexity over a text, as llama.cpp's llama-perplexity computes it"},
    {"embed", cmd_embed, "print the embedding of a text by an encoder model (bert)"},
    {"tokenize", cmd_tokenize, "print the token ids of a text"},
    {"template", cmd_template, "print the prompt a chat template makes of a conversation"},
    {"synth", cmd_synth, "write a random-weight model (GGUF) for tests and planning"},
    {"bench", cmd_bench, "measure prefill and decode speed, memory bandwidth and communication (bench comm: the links)"},
    {"plan", cmd_plan, "print which part of a model each of tp x pp ranks holds, and its memory"},
    {"predict", cmd_predict, "predict speed and memory of a model split tp x pp on a described cluster"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: loom <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n`loom <command> --help` lists a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "loom: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
