/*
 * tests/gpu/synth_model.h — a random-weight llama model written as GGUF in
 * process (the device check cannot carry a model file to the GPU machine,
 * and `loom synth` lives in launch/, which needs MPI to build). The weights
 * are random blocks whose scales make every weight matrix's elements have
 * standard deviation 1/sqrt(fan-in), as launch/cmd_synth.c does; the norms
 * are ones. No tokenizer: the check feeds token ids.
 */
#ifndef LOOM_GPU_SYNTH_MODEL_H
#define LOOM_GPU_SYNTH_MODEL_H

#include <stdint.h>

#include "runtime/status.h"
#include "runtime/types.h"

typedef struct {
    int layers, dim, heads, kv_heads, ffn, vocab;
    loom_type type; /* every weight matrix (and the embedding) */
    uint64_t seed;
} gpu_synth;

/* Writes the model to path; the GGUF writer's status on failure. */
loom_status gpu_synth_write(const gpu_synth *s, const char *path) LOOM_MUST_USE;

/* Fills n bytes of rows of type t (n a multiple of its block bytes) with
 * random blocks of element standard deviation std (the same generator). */
void gpu_synth_fill(loom_type t, uint64_t seed, double std, uint8_t *dst, size_t n);

#endif
