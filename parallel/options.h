/*
 * parallel/options.h — what every rank's engine is sized for. One struct
 * travels from the command line into the plan (which sizes each rank's
 * memory from it) and into the engine (which allocates it), so the two can
 * never disagree.
 */
#ifndef LOOM_OPTIONS_H
#define LOOM_OPTIONS_H

#include <stdbool.h>

#include "runtime/device.h"
#include "runtime/types.h"

typedef struct {
    int n_threads;     /* per rank */
    int ctx_size;      /* positions per sequence */
    int max_seqs;      /* sequences running at once (KV slots) */
    loom_type kv_type; /* F16 (default), F32 or Q8_0 (kv_cache.h) */
    int batch_rows;    /* rows per forward call at most (prefill chunk) */
    int block_tokens;  /* KV block size */
    bool prefix_cache; /* coordinator: full KV blocks are found again by their tokens */
    int kv_blocks;     /* KV blocks per rank; 0: every sequence can fill its context */
    loom_device_kind device; /* per rank (never sent with the plan): AUTO is CUDA when a GPU is visible */
    int device_ordinal;      /* the GPU this rank takes (parallel/placement.h picks it under MPI) */
    int host_ranks;          /* per rank: the ranks on its host, itself included (0: 1) */
} loom_engine_options;

/* The KV blocks an engine with options o holds. */
static inline int loom_engine_kv_blocks(const loom_engine_options *o) {
    if (o->kv_blocks > 0) return o->kv_blocks;
    return o->max_seqs * ((o->ctx_size + o->block_tokens - 1) / o->block_tokens);
}

/* The CPUs this process may use, context 4096, 8 sequences, F16 KV cache in
 * blocks of 16 positions, 256 rows per forward call, prefix cache on. */
loom_engine_options loom_engine_defaults(void);

#endif
