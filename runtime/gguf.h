/*
 * runtime/gguf.h — reader for GGUF model files (versions 2 and 3).
 *
 * File format (all integers little-endian):
 *
 *   u32  magic "GGUF" (bytes 47 47 55 46)
 *   u32  version (2 or 3; version 1 used 32-bit counts and is rejected)
 *   u64  tensor_count
 *   u64  kv_count
 *   kv_count × { string key; u32 value_type; value }
 *   tensor_count × { string name; u32 n_dims (1..4); u64 ne[n_dims];
 *                    u32 ggml_type; u64 offset (from the data section) }
 *   padding to `general.alignment` (u32 metadata key, default 32)
 *   data section: each tensor at its offset, offsets aligned
 *
 *   string = u64 length + that many bytes (not NUL-terminated)
 *   value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
 *                8 string, 9 array (u32 elem_type, u64 count, items),
 *                10 u64, 11 i64, 12 f64. Arrays may nest.
 *
 * The reader maps the file read-only (or borrows a memory buffer), checks
 * every length, count, offset, dimension and type against the bytes left
 * and against overflow before using it, rejects duplicate keys and tensor
 * names, misaligned or out-of-range tensor data and unknown types. On any
 * failure it frees what it built and returns a status naming the file, the
 * byte offset and what was expected. It never crashes on a bad file.
 *
 * What it accepts, precisely:
 *   - keys are non-empty; keys and tensor names contain no NUL byte; a
 *     tensor name may be empty (as in ggml's gguf.cpp);
 *   - arrays nest at most LOOM_GGUF_MAX_DEPTH deep (a top-level array is
 *     depth 1); bool values are 0 or 1;
 *   - `general.alignment`, when present, is a u32 nonzero power of two;
 *   - n_dims is 1..4; every dimension is >= 0 (ggml's gguf.cpp allows a
 *     zero-element tensor, so loom does too: its nbytes is 0) and their
 *     product fits in int64; ne[0] is a multiple of the type's block size;
 *   - each tensor's offset is a multiple of the alignment, its bytes lie in
 *     the data section, and no two tensors' bytes overlap (checked; unlike
 *     gguf.cpp, tensors need not be stored in index order or back to back);
 *   - the data section starts at the end of the tensor index padded to the
 *     alignment; a file without tensors may end before that padding.
 *
 * Everything returned points into the loom_gguf object or the mapping and
 * lives until loom_gguf_free(). Strings in the file are not NUL-terminated;
 * keys and tensor names are copied and NUL-terminated for convenience.
 */
#ifndef LOOM_GGUF_H
#define LOOM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/types.h"

#define LOOM_GGUF_DEFAULT_ALIGNMENT 32u
#define LOOM_GGUF_MAX_DEPTH 8 /* deepest accepted array nesting */

typedef enum {
    LOOM_GGUF_U8 = 0,
    LOOM_GGUF_I8 = 1,
    LOOM_GGUF_U16 = 2,
    LOOM_GGUF_I16 = 3,
    LOOM_GGUF_U32 = 4,
    LOOM_GGUF_I32 = 5,
    LOOM_GGUF_F32 = 6,
    LOOM_GGUF_BOOL = 7,
    LOOM_GGUF_STRING = 8,
    LOOM_GGUF_ARRAY = 9,
    LOOM_GGUF_U64 = 10,
    LOOM_GGUF_I64 = 11,
    LOOM_GGUF_F64 = 12,
} loom_gguf_vtype;

typedef struct {
    uint64_t len;
    const char *ptr; /* into the mapping; not NUL-terminated */
} loom_str;

typedef struct loom_gguf_value loom_gguf_value;
struct loom_gguf_value {
    loom_gguf_vtype type;
    union {
        uint64_t u64;  /* U8, U16, U32, U64 */
        int64_t i64;   /* I8, I16, I32, I64 */
        double f64;    /* F32, F64 */
        bool b;        /* BOOL */
        loom_str str;  /* STRING */
        struct {
            loom_gguf_vtype elem; /* type of every element */
            uint64_t n;           /* element count */
            /* Numeric and bool elements: packed little-endian bytes in the
             * file (possibly unaligned; read with the accessors below). */
            const void *raw;
            /* STRING elements: n loom_str; ARRAY elements: n values. */
            const loom_str *strs;
            const loom_gguf_value *items;
        } arr;
    } v;
};

typedef struct {
    const char *key; /* NUL-terminated copy */
    loom_gguf_value value;
} loom_gguf_kv;

typedef struct {
    const char *name;   /* NUL-terminated copy */
    uint32_t n_dims;    /* 1..4 */
    int64_t ne[4];      /* ne[0] is the contiguous (innermost) dimension; unused dims are 1 */
    loom_type type;
    uint64_t offset;    /* from the start of the data section */
    size_t nbytes;      /* storage size */
    const void *data;   /* into the mapping */
} loom_gguf_tensor;

typedef struct loom_gguf loom_gguf;

/* Maps `path` and parses it. On error *out is NULL. */
loom_status loom_gguf_open(const char *path, loom_gguf **out) LOOM_MUST_USE;

/* Parses a buffer the caller keeps alive until loom_gguf_free(); `name`
 * names it in messages. Used by tests and the fuzzer. */
loom_status loom_gguf_open_memory(const void *data, size_t size, const char *name,
                                  loom_gguf **out) LOOM_MUST_USE;

void loom_gguf_free(loom_gguf *g);

const char *loom_gguf_path(const loom_gguf *g);
uint32_t loom_gguf_version(const loom_gguf *g);
size_t loom_gguf_file_size(const loom_gguf *g);
const uint8_t *loom_gguf_base(const loom_gguf *g);  /* start of the mapping */
uint64_t loom_gguf_data_offset(const loom_gguf *g); /* file offset of the data section */
uint32_t loom_gguf_alignment(const loom_gguf *g);
/* True when the bytes are a read-only private mapping of the file (not a
 * caller's buffer), so pages may be dropped and re-read at will. */
bool loom_gguf_is_mapped(const loom_gguf *g);

/* A 64-bit hash of the header and tensor index (bytes before the data
 * section): two ranks with equal hashes read the same model layout. */
uint64_t loom_gguf_header_hash(const loom_gguf *g);

/* Metadata. */
int64_t loom_gguf_n_kv(const loom_gguf *g);
const loom_gguf_kv *loom_gguf_kv_at(const loom_gguf *g, int64_t i);
const loom_gguf_value *loom_gguf_get(const loom_gguf *g, const char *key); /* NULL if absent */

/* Typed getters: return false (leaving *out untouched) when the key is
 * absent or of an incompatible type. Integers of any width convert when the
 * value fits; floats accept F32 and F64. */
bool loom_gguf_get_int(const loom_gguf *g, const char *key, int64_t *out);
bool loom_gguf_get_float(const loom_gguf *g, const char *key, double *out);
bool loom_gguf_get_bool(const loom_gguf *g, const char *key, bool *out);
bool loom_gguf_get_str(const loom_gguf *g, const char *key, loom_str *out);
/* An array value of the given element type (any type when elem < 0). */
const loom_gguf_value *loom_gguf_get_arr(const loom_gguf *g, const char *key, int elem);

/* Element i of a numeric/bool array (index checked by the caller; an index
 * out of range or a non-numeric array yields 0). arr_int reads integer and
 * bool elements (0 for float elements); arr_float reads any numeric or bool
 * element. */
int64_t loom_gguf_arr_int(const loom_gguf_value *arr, uint64_t i);
double loom_gguf_arr_float(const loom_gguf_value *arr, uint64_t i);

/* Tensors. */
int64_t loom_gguf_n_tensors(const loom_gguf *g);
const loom_gguf_tensor *loom_gguf_tensor_at(const loom_gguf *g, int64_t i);
const loom_gguf_tensor *loom_gguf_find_tensor(const loom_gguf *g, const char *name); /* NULL if absent */
int64_t loom_gguf_tensor_nelements(const loom_gguf_tensor *t); /* ne[0]*ne[1]*ne[2]*ne[3] (fits in int64) */

const char *loom_gguf_vtype_name(loom_gguf_vtype t);
/* Bytes of one value of a fixed-size type; 0 for string, array, unknown. */
size_t loom_gguf_vtype_size(loom_gguf_vtype t);
/* Reads one little-endian scalar of fixed-size type t at p into *v. */
void loom_gguf_scalar_decode(loom_gguf_vtype t, const uint8_t *p, loom_gguf_value *v);

#endif
