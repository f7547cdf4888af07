/*
 * runtime/types.h — tensor element types and their storage traits.
 *
 * The numeric values are GGML's type ids, so a GGUF tensor's type field maps
 * onto this enum directly. A type is stored as blocks: `block_size` elements
 * packed into `type_size` bytes (1 and sizeof(element) for plain types).
 * `loom_type_info()` knows every id GGUF files use today, including ones loom
 * cannot compute with (so a file can be indexed and planned); `can_compute`
 * says whether the kernels handle it.
 */
#ifndef LOOM_TYPES_H
#define LOOM_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    LOOM_TYPE_F32 = 0,
    LOOM_TYPE_F16 = 1,
    LOOM_TYPE_Q4_0 = 2,
    LOOM_TYPE_Q4_1 = 3,
    LOOM_TYPE_Q5_0 = 6,
    LOOM_TYPE_Q5_1 = 7,
    LOOM_TYPE_Q8_0 = 8,
    LOOM_TYPE_Q8_1 = 9,
    LOOM_TYPE_Q2_K = 10,
    LOOM_TYPE_Q3_K = 11,
    LOOM_TYPE_Q4_K = 12,
    LOOM_TYPE_Q5_K = 13,
    LOOM_TYPE_Q6_K = 14,
    LOOM_TYPE_Q8_K = 15,
    LOOM_TYPE_IQ2_XXS = 16,
    LOOM_TYPE_IQ2_XS = 17,
    LOOM_TYPE_IQ3_XXS = 18,
    LOOM_TYPE_IQ1_S = 19,
    LOOM_TYPE_IQ4_NL = 20,
    LOOM_TYPE_IQ3_S = 21,
    LOOM_TYPE_IQ2_S = 22,
    LOOM_TYPE_IQ4_XS = 23,
    LOOM_TYPE_I8 = 24,
    LOOM_TYPE_I16 = 25,
    LOOM_TYPE_I32 = 26,
    LOOM_TYPE_I64 = 27,
    LOOM_TYPE_F64 = 28,
    LOOM_TYPE_IQ1_M = 29,
    LOOM_TYPE_BF16 = 30,
    LOOM_TYPE_TQ1_0 = 34,
    LOOM_TYPE_TQ2_0 = 35,
    LOOM_TYPE_MXFP4 = 39,
    LOOM_TYPE_COUNT = 40,
} loom_type;

typedef struct {
    const char *name;     /* "Q4_K"; NULL for ids no GGUF writer uses */
    uint32_t block_size;  /* elements per block */
    uint32_t type_size;   /* bytes per block */
    bool can_compute;     /* loom has kernels for it as a weight type */
} loom_type_traits;

/* Traits of `type`, or NULL if the id is unknown (out of range or unused). */
const loom_type_traits *loom_type_info(uint32_t type);

/* Name of a type, "unknown(N)" style names are not produced: returns "?" for
 * unknown ids. */
const char *loom_type_name(uint32_t type);

/* Bytes of `n` elements of a known type; n must be a multiple of the block
 * size (returns 0 otherwise, or on overflow). */
size_t loom_type_row_bytes(loom_type type, int64_t n);

#endif
