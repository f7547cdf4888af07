/*
 * runtime/gguf_write.h — builds GGUF files (the format is described in gguf.h).
 *
 * A writer collects metadata and a tensor index, then writes the file in one
 * pass: header, KVs in the order added, tensor index in the order added,
 * padding to the alignment, and the data section with each tensor at the
 * next multiple of the alignment (the layout ggml's gguf.cpp writes and
 * insists on when it reads).
 *
 * Metadata values are serialised when added, so the writer borrows nothing
 * from them. Tensor data is borrowed: a `data` pointer must stay valid until
 * the file is written; NULL writes zeros; a fill callback produces the bytes
 * in chunks while writing (so a large model is streamed, never held whole).
 *
 * Every add_ function checks its arguments (non-empty key without duplicates,
 * known value and tensor types, 1..4 dims >= 0 whose product fits, ne[0] a
 * multiple of the block size, unique tensor names) and on error returns a
 * status and leaves the writer unaltered. The writer produces only files the
 * reader accepts; tests build corrupt files by patching bytes.
 *
 * Adding "general.alignment" (u32, a nonzero power of two) sets the
 * alignment (default 32); loom_gguf_writer_set_alignment() adds that key.
 * Offsets are assigned when writing, so the order of calls does not matter.
 * Version 3 is the default; 2 differs only in the version field.
 */
#ifndef LOOM_GGUF_WRITE_H
#define LOOM_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/types.h"

typedef struct loom_gguf_writer loom_gguf_writer;

/* Produces bytes [offset, offset + n) of a tensor's data into dst. Called in
 * order of increasing offset, once per chunk; offset and n are multiples of
 * the type's block bytes (type_size). An error stops the write and is
 * returned from it. */
typedef loom_status (*loom_gguf_fill_fn)(void *user, const loom_gguf_tensor *t, uint64_t offset,
                                         void *dst, size_t n);

loom_status loom_gguf_writer_create(loom_gguf_writer **out) LOOM_MUST_USE;
void loom_gguf_writer_free(loom_gguf_writer *w);

/* 2 or 3. */
loom_status loom_gguf_writer_set_version(loom_gguf_writer *w, uint32_t version) LOOM_MUST_USE;
/* Adds general.alignment = alignment (a nonzero power of two). */
loom_status loom_gguf_writer_set_alignment(loom_gguf_writer *w, uint32_t alignment) LOOM_MUST_USE;

/* ---- metadata ---- */

/* Any value, including nested arrays, as the reader represents it (so a
 * file's KVs can be copied from a loom_gguf): scalar integers in v.u64 /
 * v.i64, floats in v.f64, numeric array elements packed little-endian in
 * arr.raw, string elements in arr.strs, nested arrays in arr.items. */
loom_status loom_gguf_writer_add_value(loom_gguf_writer *w, const char *key,
                                       const loom_gguf_value *v) LOOM_MUST_USE;

/* Scalars: `type` picks the width; the value must fit in it. */
loom_status loom_gguf_writer_add_uint(loom_gguf_writer *w, const char *key, loom_gguf_vtype type,
                                      uint64_t v) LOOM_MUST_USE; /* U8, U16, U32, U64 */
loom_status loom_gguf_writer_add_int(loom_gguf_writer *w, const char *key, loom_gguf_vtype type,
                                     int64_t v) LOOM_MUST_USE; /* I8, I16, I32, I64 */
loom_status loom_gguf_writer_add_float(loom_gguf_writer *w, const char *key, loom_gguf_vtype type,
                                       double v) LOOM_MUST_USE; /* F32, F64 */
loom_status loom_gguf_writer_add_bool(loom_gguf_writer *w, const char *key, bool v) LOOM_MUST_USE;
loom_status loom_gguf_writer_add_str(loom_gguf_writer *w, const char *key, const char *s) LOOM_MUST_USE;
loom_status loom_gguf_writer_add_strn(loom_gguf_writer *w, const char *key, const char *s,
                                      size_t len) LOOM_MUST_USE;

/* Array of n numeric or bool elements of type `elem`, packed in host
 * (little-endian) layout: uint8_t for U8, int32_t for I32, float for F32,
 * uint8_t 0/1 for BOOL, ... */
loom_status loom_gguf_writer_add_arr(loom_gguf_writer *w, const char *key, loom_gguf_vtype elem,
                                     const void *data, uint64_t n) LOOM_MUST_USE;
/* Array of n NUL-terminated strings. */
loom_status loom_gguf_writer_add_arr_str(loom_gguf_writer *w, const char *key,
                                         const char *const *strs, uint64_t n) LOOM_MUST_USE;

/* ---- tensors ---- */

/* ne[0..n_dims) as in loom_gguf_tensor (ne[0] innermost). data: nbytes of
 * the tensor, borrowed until written; NULL for zeros. */
loom_status loom_gguf_writer_add_tensor(loom_gguf_writer *w, const char *name, loom_type type,
                                        uint32_t n_dims, const int64_t *ne,
                                        const void *data) LOOM_MUST_USE;
/* Same, the bytes produced by fill(user, ...) while writing. */
loom_status loom_gguf_writer_add_tensor_fill(loom_gguf_writer *w, const char *name, loom_type type,
                                             uint32_t n_dims, const int64_t *ne, loom_gguf_fill_fn fill,
                                             void *user) LOOM_MUST_USE;

int64_t loom_gguf_writer_n_tensors(const loom_gguf_writer *w);
/* Bytes of the header (up to the data section) and of the whole file. */
uint64_t loom_gguf_writer_header_size(const loom_gguf_writer *w);
uint64_t loom_gguf_writer_file_size(const loom_gguf_writer *w);

/* ---- output ---- */

enum {
    /* Write the header only, then extend the file with ftruncate() to its
     * full size: a sparse file whose tensor data reads as zeros. Needs a
     * regular file. */
    LOOM_GGUF_WRITE_HEADER_ONLY = 1u << 0,
};

/* Writes the file at the current position of `f` (which must be at offset 0
 * for HEADER_ONLY). `name` names f in messages. */
loom_status loom_gguf_writer_write(loom_gguf_writer *w, FILE *f, const char *name,
                                   unsigned flags) LOOM_MUST_USE;
/* Creates or truncates `path` and writes the file; on error the partial
 * file is removed. */
loom_status loom_gguf_writer_write_path(loom_gguf_writer *w, const char *path,
                                        unsigned flags) LOOM_MUST_USE;
/* Writes the whole file to a malloc'd buffer (*out, *size); the caller
 * frees it. On error *out is NULL. */
loom_status loom_gguf_writer_write_memory(loom_gguf_writer *w, void **out,
                                          size_t *size) LOOM_MUST_USE;

#endif
