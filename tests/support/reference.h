/*
 * tests/support/reference.h — fixtures recorded from llama.cpp by
 * tests/fixtures/gen_reference.py, and the teacher-forced comparison of
 * DESIGN.md: feed the reference's tokens, require the same argmax at every
 * position except where the reference's top-2 logits are within eps.
 */
#ifndef LOOM_TEST_REFERENCE_H
#define LOOM_TEST_REFERENCE_H

#include <stdint.h>

#include "runtime/status.h"

#define LOOM_DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

typedef struct {
    char *name;
    int chat;
    int32_t *ids;        /* (n_prompt + n_gen) prompt then greedy tokens */
    int n_prompt, n_gen;
    int32_t (*top_id)[5]; /* (n_prompt + n_gen) reference top-5 per position */
    float (*top_logit)[5];
    float *last_logits;  /* (vocab) logits at position n_prompt - 1 */
    int vocab;
    float *embedding;    /* (dim) encoders: llama.cpp's pooled embedding (not normalised), else NULL */
    int dim;
} loom_ref_case;

typedef struct {
    loom_ref_case *cases;
    int n;
    char *synth_args;   /* `loom synth` arguments that rebuild the model, or NULL */
    uint64_t fnv1a64;   /* FNV-1a of the model file */
    int pooling;        /* encoders: llama.cpp's pooling type (-1 when absent) */
    char *lora_args;    /* `loom synth --lora-of MODEL` arguments that rebuild the LoRA adapter applied, or NULL */
    uint64_t lora_fnv1a64;
    double lora_scale;
} loom_ref;

loom_status loom_ref_load(const char *path, loom_ref *out);
void loom_ref_free(loom_ref *r);

typedef struct {
    int positions;
    int mismatches;       /* argmax differs and the reference top-2 gap >= eps */
    int near_tie_flips;   /* argmax differs inside a near tie */
    int first_mismatch;   /* position, -1 if none */
    float worst_gap;      /* largest reference top-2 gap at a differing argmax */
    float last_max_dev;   /* last prompt position: max |Δ − mean Δ| over the reference top-40 */
    float last_rms_dev;   /* ... root mean square over the whole vocabulary */
    float last_std;       /* standard deviation of the reference's last-position logits */
    float top5_max_dev;   /* every position: max |(l_k − l_1) − (ref_k − ref_1)| over the reference top-5
                           * (k = 2..5, shift-free; the last position's σ is the unit) */
} loom_ref_report;

/* logits: (n_prompt + n_gen, vocab) computed by loom for c->ids. */
void loom_ref_compare(const loom_ref_case *c, const float *logits, float eps, loom_ref_report *rep);

/* FNV-1a (64-bit) of a file's bytes; 0 if it cannot be read. */
uint64_t loom_test_fnv1a_file(const char *path);

/* Runs `loom synth <args> --out <path>`; returns the exit status. */
int loom_test_synth(const char *args, const char *path);

/* A file the tests need: fails the calling test with `how` when absent. */
int loom_test_file_exists(const char *path);

#endif
