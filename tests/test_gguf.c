/*
 * tests/test_gguf.c — GGUF reader and writer.
 *
 * Round trips every value type through the writer and the reader (v2 and
 * v3, several alignments, nested arrays, streamed tensors, sparse
 * header-only files); rejects a corpus of corrupt files built here, each
 * with its own message; opens the default model and llama.cpp's vocab files
 * from the cache.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/gguf.h"
#include "runtime/gguf_write.h"
#include "runtime/quant.h"

#define OK(expr)                                                                   \
    do {                                                                           \
        loom_status s_ = (expr);                                                   \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_));       \
    } while (0)

/* Opens a private copy of exactly n bytes (so ASan sees any over-read). */
static loom_status open_copy(const void *p, size_t n, const char *name, loom_gguf **g, void **copy) {
    *copy = malloc(n ? n : 1);
    cr_assert_not_null(*copy);
    if (n) memcpy(*copy, p, n);
    return loom_gguf_open_memory(*copy, n, name, g);
}

static void expect_reject_at(const void *p, size_t n, const char *what, int line) {
    loom_gguf *g = (loom_gguf *)&g;
    void *copy;
    loom_status st = open_copy(p, n, "bad.gguf", &g, &copy);
    cr_assert_not_null(st, "line %d: a file that should fail with '%s' was accepted", line, what);
    cr_assert_null(g, "line %d: *out must be NULL on error", line);
    const char *m = loom_status_message(st);
    cr_assert(strstr(m, "bad.gguf: offset ") == m, "line %d: message '%s' does not start with the name and offset",
              line, m);
    cr_assert(strstr(m, what), "line %d: message '%s' lacks '%s'", line, m, what);
    loom_status_free(st);
    free(copy);
}
#define expect_reject(p, n, what) expect_reject_at(p, n, what, __LINE__)

/* ---- a raw little-endian builder for hand-made (often corrupt) files ---- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} rb;

static void rb_put(rb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        cr_assert_not_null(b->p);
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void rb_u8(rb *b, uint8_t v) { rb_put(b, &v, 1); }
static void rb_u32(rb *b, uint32_t v) { rb_put(b, &v, 4); }
static void rb_u64(rb *b, uint64_t v) { rb_put(b, &v, 8); }
static void rb_str(rb *b, const char *s) {
    rb_u64(b, strlen(s));
    rb_put(b, s, strlen(s));
}
static rb rb_header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    rb b = {0};
    rb_put(&b, "GGUF", 4);
    rb_u32(&b, version);
    rb_u64(&b, n_tensors);
    rb_u64(&b, n_kv);
    return b;
}
static void rb_kv_u32(rb *b, const char *key, uint32_t v) {
    rb_str(b, key);
    rb_u32(b, LOOM_GGUF_U32);
    rb_u32(b, v);
}
static void rb_tensor(rb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off) {
    rb_str(b, name);
    rb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++) rb_u64(b, (uint64_t)ne[i]);
    rb_u32(b, type);
    rb_u64(b, off);
}
/* Pads to `align` and appends `data` zero bytes. */
static void rb_finish(rb *b, uint32_t align, size_t data) {
    while (b->n % align) rb_u8(b, 0);
    for (size_t i = 0; i < data; i++) rb_u8(b, 0);
}

/* ---- a small valid file made by the writer ---- */

static const float small_w[4 * 3] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

static loom_gguf_writer *small_writer(void) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_add_str(w, "general.architecture", "llama"));
    OK(loom_gguf_writer_add_uint(w, "llama.block_count", LOOM_GGUF_U32, 2));
    const char *toks[] = {"<unk>", "a", "bc"};
    OK(loom_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 3));
    int32_t types[] = {2, 1, 1};
    OK(loom_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types, 3));
    OK(loom_gguf_writer_add_tensor(w, "w", LOOM_TYPE_F32, 2, (int64_t[]){4, 3}, small_w));
    OK(loom_gguf_writer_add_tensor(w, "n", LOOM_TYPE_F32, 1, (int64_t[]){8}, NULL));
    return w;
}

static void *small_file(size_t *n) {
    loom_gguf_writer *w = small_writer();
    void *buf;
    OK(loom_gguf_writer_write_memory(w, &buf, n));
    loom_gguf_writer_free(w);
    return buf;
}

/* ---- round trips ---- */

static const uint8_t u8s[] = {0, 1, 255};
static const int8_t i8s[] = {-128, 0, 127};
static const uint16_t u16s[] = {0, 65535};
static const int16_t i16s[] = {-32768, 32767};
static const uint32_t u32s[] = {0, 4294967295u, 7};
static const int32_t i32s[] = {INT32_MIN, -1, INT32_MAX};
static const float f32s[] = {-1.5f, 0.0f, 3.25e10f};
static const uint8_t bools[] = {1, 0, 1, 1};
static const uint64_t u64s[] = {UINT64_MAX, 0};
static const int64_t i64s[] = {INT64_MIN, INT64_MAX};
static const double f64s[] = {-2.5e300, 1.0 / 3.0};

static void build_all_types(loom_gguf_writer *w) {
    OK(loom_gguf_writer_add_uint(w, "s.u8", LOOM_GGUF_U8, 200));
    OK(loom_gguf_writer_add_int(w, "s.i8", LOOM_GGUF_I8, -100));
    OK(loom_gguf_writer_add_uint(w, "s.u16", LOOM_GGUF_U16, 60000));
    OK(loom_gguf_writer_add_int(w, "s.i16", LOOM_GGUF_I16, -30000));
    OK(loom_gguf_writer_add_uint(w, "s.u32", LOOM_GGUF_U32, 4000000000u));
    OK(loom_gguf_writer_add_int(w, "s.i32", LOOM_GGUF_I32, -2000000000));
    OK(loom_gguf_writer_add_float(w, "s.f32", LOOM_GGUF_F32, 0.15625));
    OK(loom_gguf_writer_add_bool(w, "s.bool", true));
    OK(loom_gguf_writer_add_strn(w, "s.str", "h\xc3\xa9llo\0x", 8)); /* UTF-8 and an inner NUL */
    OK(loom_gguf_writer_add_uint(w, "s.u64", LOOM_GGUF_U64, UINT64_MAX));
    OK(loom_gguf_writer_add_int(w, "s.i64", LOOM_GGUF_I64, INT64_MIN));
    OK(loom_gguf_writer_add_float(w, "s.f64", LOOM_GGUF_F64, 1e-300));
    OK(loom_gguf_writer_add_str(w, "s.empty", ""));
    OK(loom_gguf_writer_add_arr(w, "a.u8", LOOM_GGUF_U8, u8s, 3));
    OK(loom_gguf_writer_add_arr(w, "a.i8", LOOM_GGUF_I8, i8s, 3));
    OK(loom_gguf_writer_add_arr(w, "a.u16", LOOM_GGUF_U16, u16s, 2));
    OK(loom_gguf_writer_add_arr(w, "a.i16", LOOM_GGUF_I16, i16s, 2));
    OK(loom_gguf_writer_add_arr(w, "a.u32", LOOM_GGUF_U32, u32s, 3));
    OK(loom_gguf_writer_add_arr(w, "a.i32", LOOM_GGUF_I32, i32s, 3));
    OK(loom_gguf_writer_add_arr(w, "a.f32", LOOM_GGUF_F32, f32s, 3));
    OK(loom_gguf_writer_add_arr(w, "a.bool", LOOM_GGUF_BOOL, bools, 4));
    OK(loom_gguf_writer_add_arr(w, "a.u64", LOOM_GGUF_U64, u64s, 2));
    OK(loom_gguf_writer_add_arr(w, "a.i64", LOOM_GGUF_I64, i64s, 2));
    OK(loom_gguf_writer_add_arr(w, "a.f64", LOOM_GGUF_F64, f64s, 2));
    OK(loom_gguf_writer_add_arr(w, "a.empty", LOOM_GGUF_U32, NULL, 0));
    const char *strs[] = {"x", "", "\xe2\x96\x81the"};
    OK(loom_gguf_writer_add_arr_str(w, "a.str", strs, 3));

    /* [["a", "bb"], [], ["ccc"]] */
    loom_str s0[] = {{1, "a"}, {2, "bb"}}, s2[] = {{3, "ccc"}};
    loom_gguf_value inner[3] = {{.type = LOOM_GGUF_ARRAY}, {.type = LOOM_GGUF_ARRAY}, {.type = LOOM_GGUF_ARRAY}};
    inner[0].v.arr.elem = LOOM_GGUF_STRING, inner[0].v.arr.n = 2, inner[0].v.arr.strs = s0;
    inner[1].v.arr.elem = LOOM_GGUF_STRING, inner[1].v.arr.n = 0;
    inner[2].v.arr.elem = LOOM_GGUF_STRING, inner[2].v.arr.n = 1, inner[2].v.arr.strs = s2;
    loom_gguf_value outer = {.type = LOOM_GGUF_ARRAY};
    outer.v.arr.elem = LOOM_GGUF_ARRAY, outer.v.arr.n = 3, outer.v.arr.items = inner;
    OK(loom_gguf_writer_add_value(w, "n.strs", &outer));

    /* [[[1, 2], [3]]] : three levels, u32 leaves */
    static const uint32_t l0[] = {1, 2}, l1[] = {3};
    loom_gguf_value leaves[2] = {{.type = LOOM_GGUF_ARRAY}, {.type = LOOM_GGUF_ARRAY}};
    leaves[0].v.arr.elem = LOOM_GGUF_U32, leaves[0].v.arr.n = 2, leaves[0].v.arr.raw = l0;
    leaves[1].v.arr.elem = LOOM_GGUF_U32, leaves[1].v.arr.n = 1, leaves[1].v.arr.raw = l1;
    loom_gguf_value mid = {.type = LOOM_GGUF_ARRAY};
    mid.v.arr.elem = LOOM_GGUF_ARRAY, mid.v.arr.n = 2, mid.v.arr.items = leaves;
    loom_gguf_value top = {.type = LOOM_GGUF_ARRAY};
    top.v.arr.elem = LOOM_GGUF_ARRAY, top.v.arr.n = 1, top.v.arr.items = &mid;
    OK(loom_gguf_writer_add_value(w, "n.deep", &top));
}

static void check_all_types(const loom_gguf *g) {
    int64_t i;
    double f;
    bool b;
    loom_str s;
    cr_assert(loom_gguf_get_int(g, "s.u8", &i) && i == 200);
    cr_assert(loom_gguf_get_int(g, "s.i8", &i) && i == -100);
    cr_assert(loom_gguf_get_int(g, "s.u16", &i) && i == 60000);
    cr_assert(loom_gguf_get_int(g, "s.i16", &i) && i == -30000);
    cr_assert(loom_gguf_get_int(g, "s.u32", &i) && i == 4000000000ll);
    cr_assert(loom_gguf_get_int(g, "s.i32", &i) && i == -2000000000);
    cr_assert(loom_gguf_get_float(g, "s.f32", &f) && f == 0.15625);
    cr_assert(loom_gguf_get_bool(g, "s.bool", &b) && b);
    cr_assert(loom_gguf_get_str(g, "s.str", &s) && s.len == 8 && !memcmp(s.ptr, "h\xc3\xa9llo\0x", 8));
    cr_assert(loom_gguf_get_str(g, "s.empty", &s) && s.len == 0);
    i = 42;
    cr_assert(!loom_gguf_get_int(g, "s.u64", &i) && i == 42, "u64 max does not fit int64: false, *out untouched");
    cr_assert_eq(loom_gguf_get(g, "s.u64")->v.u64, UINT64_MAX);
    cr_assert_eq(loom_gguf_get(g, "s.u64")->type, LOOM_GGUF_U64);
    cr_assert(loom_gguf_get_int(g, "s.i64", &i) && i == INT64_MIN);
    cr_assert(loom_gguf_get_float(g, "s.f64", &f) && f == 1e-300);
    /* type mismatches and absent keys */
    cr_assert(!loom_gguf_get_int(g, "s.f32", &i));
    cr_assert(!loom_gguf_get_float(g, "s.u8", &f));
    cr_assert(!loom_gguf_get_bool(g, "s.u8", &b));
    cr_assert(!loom_gguf_get_str(g, "s.u8", &s));
    cr_assert(!loom_gguf_get_int(g, "no.such.key", &i));
    cr_assert_null(loom_gguf_get(g, "s.u"));
    cr_assert_null(loom_gguf_get_arr(g, "s.u8", -1));

    const loom_gguf_value *a;
    a = loom_gguf_get_arr(g, "a.u8", LOOM_GGUF_U8);
    cr_assert(a && a->v.arr.n == 3 && loom_gguf_arr_int(a, 2) == 255);
    cr_assert_null(loom_gguf_get_arr(g, "a.u8", LOOM_GGUF_I8));
    a = loom_gguf_get_arr(g, "a.i8", -1);
    cr_assert(a && loom_gguf_arr_int(a, 0) == -128 && loom_gguf_arr_int(a, 2) == 127);
    a = loom_gguf_get_arr(g, "a.u16", LOOM_GGUF_U16);
    cr_assert(a && loom_gguf_arr_int(a, 1) == 65535);
    a = loom_gguf_get_arr(g, "a.i16", LOOM_GGUF_I16);
    cr_assert(a && loom_gguf_arr_int(a, 0) == -32768);
    a = loom_gguf_get_arr(g, "a.u32", LOOM_GGUF_U32);
    cr_assert(a && loom_gguf_arr_int(a, 1) == 4294967295ll && loom_gguf_arr_float(a, 2) == 7.0);
    a = loom_gguf_get_arr(g, "a.i32", LOOM_GGUF_I32);
    cr_assert(a && loom_gguf_arr_int(a, 0) == INT32_MIN && loom_gguf_arr_int(a, 1) == -1);
    a = loom_gguf_get_arr(g, "a.f32", LOOM_GGUF_F32);
    cr_assert(a && loom_gguf_arr_float(a, 0) == -1.5 && loom_gguf_arr_float(a, 2) == 3.25e10f);
    cr_assert_eq(loom_gguf_arr_int(a, 0), 0, "arr_int of a float array is 0");
    a = loom_gguf_get_arr(g, "a.bool", LOOM_GGUF_BOOL);
    cr_assert(a && a->v.arr.n == 4 && loom_gguf_arr_int(a, 0) == 1 && loom_gguf_arr_int(a, 1) == 0);
    a = loom_gguf_get_arr(g, "a.u64", LOOM_GGUF_U64);
    cr_assert(a && (uint64_t)loom_gguf_arr_int(a, 0) == UINT64_MAX);
    a = loom_gguf_get_arr(g, "a.i64", LOOM_GGUF_I64);
    cr_assert(a && loom_gguf_arr_int(a, 0) == INT64_MIN && loom_gguf_arr_int(a, 1) == INT64_MAX);
    cr_assert_eq(loom_gguf_arr_int(a, 2), 0, "index out of range yields 0");
    a = loom_gguf_get_arr(g, "a.f64", LOOM_GGUF_F64);
    cr_assert(a && loom_gguf_arr_float(a, 0) == -2.5e300 && loom_gguf_arr_float(a, 1) == 1.0 / 3.0);
    a = loom_gguf_get_arr(g, "a.empty", LOOM_GGUF_U32);
    cr_assert(a && a->v.arr.n == 0);
    a = loom_gguf_get_arr(g, "a.str", LOOM_GGUF_STRING);
    cr_assert(a && a->v.arr.n == 3 && a->v.arr.strs[1].len == 0);
    cr_assert(a->v.arr.strs[2].len == 6 && !memcmp(a->v.arr.strs[2].ptr, "\xe2\x96\x81the", 6));

    a = loom_gguf_get_arr(g, "n.strs", LOOM_GGUF_ARRAY);
    cr_assert(a && a->v.arr.n == 3);
    const loom_gguf_value *it = a->v.arr.items;
    cr_assert(it[0].type == LOOM_GGUF_ARRAY && it[0].v.arr.elem == LOOM_GGUF_STRING && it[0].v.arr.n == 2);
    cr_assert(it[0].v.arr.strs[1].len == 2 && !memcmp(it[0].v.arr.strs[1].ptr, "bb", 2));
    cr_assert(it[1].v.arr.n == 0 && it[1].v.arr.elem == LOOM_GGUF_STRING);
    cr_assert(it[2].v.arr.n == 1 && !memcmp(it[2].v.arr.strs[0].ptr, "ccc", 3));
    a = loom_gguf_get_arr(g, "n.deep", LOOM_GGUF_ARRAY);
    cr_assert(a && a->v.arr.n == 1);
    const loom_gguf_value *m = &a->v.arr.items[0];
    cr_assert(m->v.arr.elem == LOOM_GGUF_ARRAY && m->v.arr.n == 2);
    cr_assert(m->v.arr.items[0].v.arr.elem == LOOM_GGUF_U32 && m->v.arr.items[0].v.arr.n == 2);
    cr_assert_eq(loom_gguf_arr_int(&m->v.arr.items[0], 1), 2);
    cr_assert_eq(loom_gguf_arr_int(&m->v.arr.items[1], 0), 3);
}

/* tensors of the round trip: (name, type, dims) and deterministic bytes */
static uint8_t q8_data[34 * 4], f16_data[2 * 8 * 2 * 3 * 2];

static void fill_pattern(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i * 131 + seed * 7 + (i >> 8));
}

static void add_tensors(loom_gguf_writer *w) {
    fill_pattern(q8_data, sizeof q8_data, 1);
    fill_pattern(f16_data, sizeof f16_data, 2);
    OK(loom_gguf_writer_add_tensor(w, "blk.0.w", LOOM_TYPE_F32, 2, (int64_t[]){4, 3}, small_w));
    OK(loom_gguf_writer_add_tensor(w, "blk.0.q8", LOOM_TYPE_Q8_0, 2, (int64_t[]){64, 2}, q8_data));
    OK(loom_gguf_writer_add_tensor(w, "zeros.q4k", LOOM_TYPE_Q4_K, 1, (int64_t[]){256}, NULL));
    OK(loom_gguf_writer_add_tensor(w, "four.d", LOOM_TYPE_F16, 4, (int64_t[]){8, 2, 3, 2}, f16_data));
    OK(loom_gguf_writer_add_tensor(w, "empty", LOOM_TYPE_F32, 2, (int64_t[]){0, 4}, NULL));
}

static void check_tensors(const loom_gguf *g, uint32_t align) {
    cr_assert_eq(loom_gguf_n_tensors(g), 5);
    const char *names[] = {"blk.0.w", "blk.0.q8", "zeros.q4k", "four.d", "empty"};
    for (int i = 0; i < 5; i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
        cr_assert_str_eq(t->name, names[i]);
        cr_assert_eq(loom_gguf_find_tensor(g, names[i]), t);
        cr_assert_eq(t->offset % align, 0);
        cr_assert_eq((uintptr_t)((const uint8_t *)t->data - loom_gguf_base(g)),
                     loom_gguf_data_offset(g) + t->offset);
    }
    cr_assert_null(loom_gguf_tensor_at(g, 5));
    cr_assert_null(loom_gguf_find_tensor(g, "blk.0"));
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "blk.0.w");
    cr_assert(t->type == LOOM_TYPE_F32 && t->n_dims == 2 && t->ne[0] == 4 && t->ne[1] == 3 && t->ne[2] == 1);
    cr_assert(t->nbytes == sizeof small_w && !memcmp(t->data, small_w, sizeof small_w));
    t = loom_gguf_find_tensor(g, "blk.0.q8");
    cr_assert(t->type == LOOM_TYPE_Q8_0 && t->nbytes == sizeof q8_data && !memcmp(t->data, q8_data, t->nbytes));
    t = loom_gguf_find_tensor(g, "zeros.q4k");
    cr_assert(t->type == LOOM_TYPE_Q4_K && t->nbytes == 144);
    for (size_t i = 0; i < t->nbytes; i++) cr_assert_eq(((const uint8_t *)t->data)[i], 0);
    t = loom_gguf_find_tensor(g, "four.d");
    cr_assert(t->n_dims == 4 && t->ne[3] == 2 && loom_gguf_tensor_nelements(t) == 96);
    cr_assert(t->nbytes == sizeof f16_data && !memcmp(t->data, f16_data, t->nbytes));
    t = loom_gguf_find_tensor(g, "empty");
    cr_assert(t->ne[0] == 0 && t->nbytes == 0 && loom_gguf_tensor_nelements(t) == 0);
}

Test(gguf, round_trip_every_type_version_and_alignment) {
    const uint32_t versions[] = {2, 3};
    const uint32_t aligns[] = {0 /* default, no key */, 32, 64, 16, 1, 4096};
    for (int vi = 0; vi < 2; vi++)
        for (int ai = 0; ai < 6; ai++) {
            loom_gguf_writer *w;
            OK(loom_gguf_writer_create(&w));
            OK(loom_gguf_writer_set_version(w, versions[vi]));
            add_tensors(w); /* before the alignment: offsets are assigned at write time */
            if (aligns[ai]) OK(loom_gguf_writer_set_alignment(w, aligns[ai]));
            build_all_types(w);
            void *buf;
            size_t n;
            OK(loom_gguf_writer_write_memory(w, &buf, &n));
            cr_assert_eq(n, loom_gguf_writer_file_size(w));
            uint32_t align = aligns[ai] ? aligns[ai] : 32;
            loom_gguf *g;
            void *copy;
            OK(open_copy(buf, n, "rt.gguf", &g, &copy));
            cr_assert_eq(loom_gguf_version(g), versions[vi]);
            cr_assert_eq(loom_gguf_alignment(g), align);
            cr_assert_eq(loom_gguf_data_offset(g) % align, 0);
            cr_assert_eq(loom_gguf_data_offset(g), loom_gguf_writer_header_size(w));
            cr_assert_eq(loom_gguf_file_size(g), n);
            cr_assert_str_eq(loom_gguf_path(g), "rt.gguf");
            cr_assert_eq(loom_gguf_n_kv(g), 28 + (aligns[ai] != 0));
            cr_assert_str_eq(loom_gguf_kv_at(g, 0)->key, aligns[ai] ? "general.alignment" : "s.u8");
            cr_assert_null(loom_gguf_kv_at(g, loom_gguf_n_kv(g)));
            check_all_types(g);
            check_tensors(g, align);
            loom_gguf_free(g);
            free(copy);
            free(buf);
            loom_gguf_writer_free(w);
        }
}

/* Copying every KV and tensor of a file through add_value reproduces it. */
Test(gguf, copy_through_reader_values_is_byte_identical) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_set_alignment(w, 64));
    build_all_types(w);
    add_tensors(w);
    void *a;
    size_t na;
    OK(loom_gguf_writer_write_memory(w, &a, &na));
    loom_gguf_writer_free(w);

    loom_gguf *g;
    OK(loom_gguf_open_memory(a, na, "a.gguf", &g));
    OK(loom_gguf_writer_create(&w));
    for (int64_t i = 0; i < loom_gguf_n_kv(g); i++)
        OK(loom_gguf_writer_add_value(w, loom_gguf_kv_at(g, i)->key, &loom_gguf_kv_at(g, i)->value));
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
        OK(loom_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data));
    }
    void *b;
    size_t nb;
    OK(loom_gguf_writer_write_memory(w, &b, &nb));
    cr_assert_eq(nb, na);
    cr_assert(!memcmp(a, b, na), "the copy differs from the original");

    /* the header hash covers the header: same bytes, same hash; one changed
     * value byte, another hash; tensor data does not enter it */
    loom_gguf *g2;
    OK(loom_gguf_open_memory(b, nb, "b.gguf", &g2));
    cr_assert_eq(loom_gguf_header_hash(g), loom_gguf_header_hash(g2));
    loom_gguf_free(g2);
    ((uint8_t *)b)[nb - 1 - 40] ^= 1; /* inside the data section */
    OK(loom_gguf_open_memory(b, nb, "b.gguf", &g2));
    cr_assert_eq(loom_gguf_header_hash(g), loom_gguf_header_hash(g2));
    loom_gguf_free(g2);
    const loom_gguf_value *v = loom_gguf_get(g, "s.u32");
    size_t at = (size_t)((const uint8_t *)loom_gguf_get_arr(g, "a.u32", -1)->v.arr.raw - (const uint8_t *)a);
    (void)v;
    ((uint8_t *)b)[at] ^= 1;
    OK(loom_gguf_open_memory(b, nb, "b.gguf", &g2));
    cr_assert_neq(loom_gguf_header_hash(g), loom_gguf_header_hash(g2));
    cr_assert_eq(loom_gguf_arr_int(loom_gguf_get_arr(g2, "a.u32", -1), 0), 1);
    loom_gguf_free(g2);
    loom_gguf_free(g);
    loom_gguf_writer_free(w);
    free(a);
    free(b);
}

/* ---- streaming, files, sparse header-only files ---- */

static loom_status fill_counter(void *user, const loom_gguf_tensor *t, uint64_t offset, void *dst, size_t n) {
    int *calls = user;
    (*calls)++;
    size_t bs = loom_type_info((uint32_t)t->type)->type_size;
    cr_assert_eq(offset % bs, 0);
    cr_assert_eq(n % bs, 0);
    for (size_t i = 0; i < n; i++) ((uint8_t *)dst)[i] = (uint8_t)((offset + i) * 2654435761u >> 13);
    return NULL;
}

static loom_status fill_fails(void *user, const loom_gguf_tensor *t, uint64_t offset, void *dst, size_t n) {
    (void)user, (void)t, (void)dst, (void)n;
    return loom_error(LOOM_ERR_INVALID, "no bytes at %llu", (unsigned long long)offset);
}

static char *tmp_path(const char *stem) {
    char *p = malloc(256);
    snprintf(p, 256, "/tmp/loom-test-gguf-%s-%d.gguf", stem, (int)getpid());
    return p;
}

Test(gguf, streamed_tensors_and_files) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    int calls_a = 0, calls_b = 0;
    /* 2.5 MiB of F32 and 40000 Q8_0 blocks: several chunks each, the Q8_0
     * chunks rounded to whole 34-byte blocks */
    OK(loom_gguf_writer_add_tensor_fill(w, "big.f32", LOOM_TYPE_F32, 2, (int64_t[]){1024, 640}, fill_counter,
                                        &calls_a));
    OK(loom_gguf_writer_add_tensor_fill(w, "big.q8", LOOM_TYPE_Q8_0, 2, (int64_t[]){1280, 1000}, fill_counter,
                                        &calls_b));
    char *path = tmp_path("stream");
    OK(loom_gguf_writer_write_path(w, path, 0));
    cr_assert(calls_a >= 3 && calls_b >= 2, "chunks: %d %d", calls_a, calls_b);
    loom_gguf *g;
    OK(loom_gguf_open(path, &g));
    cr_assert_str_eq(loom_gguf_path(g), path);
    for (int i = 0; i < 2; i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
        const uint8_t *d = t->data;
        for (size_t k = 0; k < t->nbytes; k++)
            if (d[k] != (uint8_t)(k * 2654435761u >> 13)) cr_assert_fail("tensor %s byte %zu differs", t->name, k);
    }
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq((uint64_t)sb.st_size, loom_gguf_writer_file_size(w));
    loom_gguf_free(g);

    /* a failing callback fails the write, names the tensor, removes the file */
    OK(loom_gguf_writer_add_tensor_fill(w, "bad", LOOM_TYPE_F32, 1, (int64_t[]){32}, fill_fails, NULL));
    loom_status st = loom_gguf_writer_write_path(w, path, 0);
    cr_assert_not_null(st);
    cr_assert(strstr(loom_status_message(st), "tensor 'bad'") && strstr(loom_status_message(st), "no bytes at 0"),
              "%s", loom_status_message(st));
    loom_status_free(st);
    cr_assert_neq(access(path, F_OK), 0, "a failed write leaves no file");
    free(path);
    loom_gguf_writer_free(w);

    st = loom_gguf_open("/nonexistent/dir/model.gguf", &g);
    cr_assert(st && g == NULL && strstr(loom_status_message(st), "/nonexistent/dir/model.gguf: cannot open"));
    loom_status_free(st);
}

Test(gguf, header_only_writes_a_sparse_file) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_add_str(w, "general.architecture", "llama"));
    /* 80 layers of 70B-shaped F16 matrices: ~100 GiB of data, none on disk */
    char name[64];
    for (int l = 0; l < 80; l++) {
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l);
        OK(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F16, 2, (int64_t[]){8192, 28672}, NULL));
    }
    OK(loom_gguf_writer_add_tensor(w, "token_embd.weight", LOOM_TYPE_Q6_K, 2, (int64_t[]){8192, 128256}, NULL));
    char *path = tmp_path("sparse");
    OK(loom_gguf_writer_write_path(w, path, LOOM_GGUF_WRITE_HEADER_ONLY));
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq((uint64_t)sb.st_size, loom_gguf_writer_file_size(w));
    cr_assert_gt((uint64_t)sb.st_size, 80ull * 8192 * 28672 * 2);
    cr_assert_lt((uint64_t)sb.st_blocks * 512, 1u << 20, "header-only file uses %lld bytes of disk",
                 (long long)sb.st_blocks * 512);
    loom_gguf *g;
    OK(loom_gguf_open(path, &g));
    cr_assert_eq(loom_gguf_n_tensors(g), 81);
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "token_embd.weight");
    cr_assert(t && t->nbytes == 8192ull / 256 * 210 * 128256);
    cr_assert_eq(loom_gguf_data_offset(g) + t->offset + t->nbytes, loom_gguf_file_size(g));
    loom_gguf_free(g);
    unlink(path);
    free(path);
    loom_gguf_writer_free(w);
}

Test(gguf, writer_rejects_bad_input_and_stays_usable) {
    loom_gguf_writer *w = small_writer();
    size_t before = (size_t)loom_gguf_writer_header_size(w);
    struct {
        loom_status st;
        const char *what;
    } cases[] = {
        {loom_gguf_writer_add_uint(w, "llama.block_count", LOOM_GGUF_U32, 3), "duplicate key 'llama.block_count'"},
        {loom_gguf_writer_add_str(w, "", "x"), "empty key"},
        {loom_gguf_writer_add_uint(w, "x", LOOM_GGUF_U8, 256), "does not fit"},
        {loom_gguf_writer_add_int(w, "x", LOOM_GGUF_I16, -40000), "does not fit"},
        {loom_gguf_writer_add_int(w, "x", LOOM_GGUF_U32, 1), "not a signed type"},
        {loom_gguf_writer_add_arr(w, "x", LOOM_GGUF_BOOL, (uint8_t[]){0, 2}, 2), "bool element"},
        {loom_gguf_writer_set_alignment(w, 48), "expected a nonzero power of two"},
        {loom_gguf_writer_add_int(w, "general.alignment", LOOM_GGUF_I32, 32), "expected u32"},
        {loom_gguf_writer_set_version(w, 1), "expected 2 or 3"},
        {loom_gguf_writer_add_tensor(w, "w", LOOM_TYPE_F32, 1, (int64_t[]){4}, NULL), "duplicate tensor name 'w'"},
        {loom_gguf_writer_add_tensor(w, "t5", LOOM_TYPE_F32, 5, (int64_t[]){1, 1, 1, 1, 1}, NULL), "n_dims 5"},
        {loom_gguf_writer_add_tensor(w, "t0", LOOM_TYPE_F32, 0, (int64_t[]){1}, NULL), "n_dims 0"},
        {loom_gguf_writer_add_tensor(w, "tq", LOOM_TYPE_Q4_K, 2, (int64_t[]){576, 2}, NULL), "block size 256"},
        {loom_gguf_writer_add_tensor(w, "tu", (loom_type)4, 1, (int64_t[]){32}, NULL), "unknown type 4"},
        {loom_gguf_writer_add_tensor(w, "tn", LOOM_TYPE_F32, 2, (int64_t[]){4, -1}, NULL), "ne[1] = -1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cr_assert_not_null(cases[i].st, "case %zu (%s) was accepted", i, cases[i].what);
        cr_assert(strstr(loom_status_message(cases[i].st), cases[i].what), "case %zu: '%s' lacks '%s'", i,
                  loom_status_message(cases[i].st), cases[i].what);
        loom_status_free(cases[i].st);
    }
    cr_assert_eq(loom_gguf_writer_header_size(w), before, "failed adds leave the writer unaltered");
    cr_assert_eq(loom_gguf_writer_n_tensors(w), 2);
    void *buf;
    size_t n;
    OK(loom_gguf_writer_write_memory(w, &buf, &n));
    loom_gguf *g;
    OK(loom_gguf_open_memory(buf, n, "small.gguf", &g));
    cr_assert_eq(loom_gguf_n_kv(g), 4);
    cr_assert_eq(loom_gguf_alignment(g), 32);
    loom_gguf_free(g);
    free(buf);
    loom_gguf_writer_free(w);
}

/* ---- corrupt files ---- */

Test(gguf, truncated_at_every_offset) {
    size_t n;
    uint8_t *buf = small_file(&n);
    loom_gguf *g;
    OK(loom_gguf_open_memory(buf, n, "small.gguf", &g));
    const loom_gguf_tensor *last = loom_gguf_find_tensor(g, "n");
    size_t end = (size_t)(loom_gguf_data_offset(g) + last->offset + last->nbytes);
    size_t header = (size_t)loom_gguf_data_offset(g);
    loom_gguf_free(g);
    cr_assert_gt(header, 100);
    for (size_t k = 0; k < end; k++) {
        void *copy;
        loom_status st = open_copy(buf, k, "cut.gguf", &g, &copy);
        cr_assert_not_null(st, "a file cut to %zu of %zu bytes was accepted", k, n);
        cr_assert_null(g);
        const char *m = loom_status_message(st);
        cr_assert(strncmp(m, "cut.gguf: offset ", 17) == 0, "cut at %zu: '%s'", k, m);
        /* before the data section: every cut is a truncation of some field;
         * after it: the tensor data is out of range */
        if (k < header)
            cr_assert(strstr(m, "truncated") || strstr(m, "cannot fit") || strstr(m, "beyond the end"),
                      "cut at %zu: '%s'", k, m);
        else
            cr_assert(strstr(m, "out of range"), "cut at %zu: '%s'", k, m);
        loom_status_free(st);
        free(copy);
    }
    free(buf);
}

Test(gguf, bad_magic_and_versions) {
    size_t n;
    uint8_t *buf = small_file(&n);
    buf[0] = 'G', buf[1] = 'G', buf[2] = 'M', buf[3] = 'L';
    expect_reject(buf, n, "offset 0: bad magic 'GGML' (47 47 4d 4c), expected 'GGUF'");
    memcpy(buf, "GGUF", 4);
    uint32_t versions[] = {1, 4, 0, 0x03000000};
    const char *want[] = {"offset 4: version 1, expected 2 or 3 (version 1 is obsolete)",
                          "offset 4: version 4, expected 2 or 3", "offset 4: version 0, expected 2 or 3",
                          "big-endian"};
    for (int i = 0; i < 4; i++) {
        memcpy(buf + 4, &versions[i], 4);
        expect_reject(buf, n, want[i]);
    }
    free(buf);
    expect_reject("GGU", 3, "offset 0: file truncated: expected 4 bytes of magic, found 3 bytes left");
    expect_reject("", 0, "offset 0: file truncated");
}

Test(gguf, absurd_counts_and_lengths) {
    rb b = rb_header(3, UINT64_MAX, 0);
    rb_finish(&b, 32, 1200);
    expect_reject(b.p, b.n, "offset 8: tensor count 18446744073709551615 cannot fit in the");
    free(b.p);

    b = rb_header(3, 0, 1ull << 40);
    rb_finish(&b, 32, 64);
    expect_reject(b.p, b.n, "offset 16: KV count 1099511627776 cannot fit in the");
    free(b.p);

    /* a key length far beyond the file */
    b = rb_header(3, 0, 1);
    size_t at = b.n;
    rb_u64(&b, 1ull << 62);
    rb_finish(&b, 32, 64);
    char want[128];
    snprintf(want, sizeof want, "offset %zu: key length 4611686018427387904 cannot fit", at);
    expect_reject(b.p, b.n, want);
    free(b.p);

    /* a string value length of UINT64_MAX */
    b = rb_header(3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, LOOM_GGUF_STRING);
    rb_u64(&b, UINT64_MAX);
    rb_finish(&b, 32, 64);
    expect_reject(b.p, b.n, "string value length 18446744073709551615 cannot fit");
    free(b.p);

    /* array counts whose byte size overflows 64 bits */
    const uint32_t elems[] = {LOOM_GGUF_U32, LOOM_GGUF_U64, LOOM_GGUF_STRING, LOOM_GGUF_ARRAY};
    const char *names[] = {"of u32 cannot fit", "of u64 cannot fit", "of string cannot fit", "of array cannot fit"};
    for (int i = 0; i < 4; i++) {
        b = rb_header(3, 0, 1);
        rb_str(&b, "k");
        rb_u32(&b, LOOM_GGUF_ARRAY);
        rb_u32(&b, elems[i]);
        rb_u64(&b, (1ull << 62) + 1);
        rb_finish(&b, 32, 64);
        expect_reject(b.p, b.n, names[i]);
        free(b.p);
    }
    /* a string inside an array that claims more than is left */
    b = rb_header(3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, LOOM_GGUF_ARRAY);
    rb_u32(&b, LOOM_GGUF_STRING);
    rb_u64(&b, 2);
    rb_str(&b, "ok");
    rb_u64(&b, 1000);
    expect_reject(b.p, b.n, "array string length 1000 cannot fit in the 0 bytes left");
    free(b.p);
}

Test(gguf, bad_value_types_keys_and_nesting) {
    rb b = rb_header(3, 0, 1);
    rb_str(&b, "k");
    size_t at = b.n;
    rb_u32(&b, 13);
    rb_u32(&b, 0);
    char want[128];
    snprintf(want, sizeof want, "offset %zu: key 'k' has value type 13, expected 0..12", at);
    expect_reject(b.p, b.n, want);
    free(b.p);

    b = rb_header(3, 0, 1);
    rb_str(&b, "k");
    rb_u32(&b, LOOM_GGUF_ARRAY);
    rb_u32(&b, 0xffffffffu);
    rb_u64(&b, 0);
    expect_reject(b.p, b.n, "array element type 4294967295, expected a value type 0..12");
    free(b.p);

    b = rb_header(3, 0, 2);
    rb_kv_u32(&b, "a.b", 1);
    rb_kv_u32(&b, "a.b", 2);
    expect_reject(b.p, b.n, "duplicate key 'a.b' (KV 1)");
    free(b.p);

    b = rb_header(3, 0, 1);
    rb_kv_u32(&b, "", 1);
    expect_reject(b.p, b.n, "offset 24: key is empty");
    free(b.p);

    b = rb_header(3, 0, 1);
    rb_u64(&b, 3);
    rb_put(&b, "a\0b", 3);
    rb_u32(&b, LOOM_GGUF_U8);
    rb_u8(&b, 0);
    expect_reject(b.p, b.n, "key contains a NUL byte at position 1");
    free(b.p);

    b = rb_header(3, 0, 1);
    rb_str(&b, "flag");
    rb_u32(&b, LOOM_GGUF_BOOL);
    rb_u8(&b, 2);
    expect_reject(b.p, b.n, "bool value 2, expected 0 or 1");
    free(b.p);

    /* depth: nested exactly LOOM_GGUF_MAX_DEPTH deep is fine, one more is not */
    for (int depth = LOOM_GGUF_MAX_DEPTH; depth <= LOOM_GGUF_MAX_DEPTH + 1; depth++) {
        b = rb_header(3, 0, 1);
        rb_str(&b, "deep");
        rb_u32(&b, LOOM_GGUF_ARRAY);
        for (int d = 1; d < depth; d++) {
            rb_u32(&b, LOOM_GGUF_ARRAY);
            rb_u64(&b, 1);
        }
        rb_u32(&b, LOOM_GGUF_U8);
        rb_u64(&b, 1);
        rb_u8(&b, 7);
        if (depth == LOOM_GGUF_MAX_DEPTH) {
            loom_gguf *g;
            OK(loom_gguf_open_memory(b.p, b.n, "deep.gguf", &g));
            const loom_gguf_value *v = loom_gguf_get(g, "deep");
            for (int d = 1; d < depth; d++) v = &v->v.arr.items[0];
            cr_assert_eq(loom_gguf_arr_int(v, 0), 7);
            loom_gguf_free(g);
        } else {
            expect_reject(b.p, b.n, "arrays nested 9 deep, expected at most 8");
        }
        free(b.p);
    }
}

Test(gguf, bad_alignment) {
    const char *want[] = {"general.alignment is 0, expected a nonzero power of two",
                          "general.alignment is 3, expected a nonzero power of two",
                          "general.alignment is 2147483649, expected"};
    const uint32_t vals[] = {0, 3, 0x80000001u};
    for (int i = 0; i < 3; i++) {
        rb b = rb_header(3, 0, 1);
        rb_kv_u32(&b, "general.alignment", vals[i]);
        expect_reject(b.p, b.n, want[i]);
        free(b.p);
    }
    rb b = rb_header(3, 0, 1);
    rb_str(&b, "general.alignment");
    size_t at = b.n;
    rb_u32(&b, LOOM_GGUF_U64);
    rb_u64(&b, 32);
    char w[128];
    snprintf(w, sizeof w, "offset %zu: general.alignment has type u64, expected u32", at);
    expect_reject(b.p, b.n, w);
    free(b.p);
    b = rb_header(3, 0, 1);
    rb_str(&b, "general.alignment");
    rb_u32(&b, LOOM_GGUF_I32);
    rb_u32(&b, 32);
    expect_reject(b.p, b.n, "general.alignment has type i32, expected u32");
    free(b.p);
}

/* One tensor "t" with the given shape/type/offset, 64 bytes of data. */
static rb one_tensor(uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t off, size_t data) {
    rb b = rb_header(3, 1, 0);
    rb_tensor(&b, "t", n_dims, ne, type, off);
    rb_finish(&b, 32, data);
    return b;
}

Test(gguf, bad_tensor_shapes_and_types) {
    rb b = one_tensor(0, NULL, LOOM_TYPE_F32, 0, 64);
    expect_reject(b.p, b.n, "offset 33: tensor 't' has n_dims 0, expected 1 to 4");
    free(b.p);
    b = one_tensor(5, (int64_t[]){1, 1, 1, 1, 1}, LOOM_TYPE_F32, 0, 64);
    expect_reject(b.p, b.n, "tensor 't' has n_dims 5, expected 1 to 4");
    free(b.p);
    b = one_tensor(2, (int64_t[]){4, -5}, LOOM_TYPE_F32, 0, 64);
    expect_reject(b.p, b.n, "offset 45: tensor 't' dimension 1 is -5, expected >= 0");
    free(b.p);
    b = one_tensor(3, (int64_t[]){1ll << 32, 1ll << 30, 4}, LOOM_TYPE_F32, 0, 64);
    expect_reject(b.p, b.n, "tensor 't' shape overflows: the product of its dimensions up to ne[2]");
    free(b.p);
    b = one_tensor(2, (int64_t[]){1ll << 31, 1ll << 31}, LOOM_TYPE_F64, 0, 64); /* 2^62 elements * 8 bytes */
    expect_reject(b.p, b.n, "tensor 't' size in bytes overflows");
    free(b.p);
    b = one_tensor(1, (int64_t[]){32}, 1000, 0, 64);
    expect_reject(b.p, b.n, "offset 45: tensor 't' has unknown type 1000");
    free(b.p);
    b = one_tensor(1, (int64_t[]){32}, 4 /* Q4_2, removed from ggml */, 0, 64);
    expect_reject(b.p, b.n, "tensor 't' has unknown type 4");
    free(b.p);
    b = one_tensor(2, (int64_t[]){48, 2}, LOOM_TYPE_Q4_0, 0, 64);
    expect_reject(b.p, b.n, "tensor 't' of type Q4_0 has ne[0] = 48, expected a multiple of the block size 32");
    free(b.p);
    b = one_tensor(1, (int64_t[]){576}, LOOM_TYPE_Q4_K, 0, 512);
    expect_reject(b.p, b.n, "of type Q4_K has ne[0] = 576, expected a multiple of the block size 256");
    free(b.p);

    /* a dimension of 0 is a zero-element tensor (as in ggml's gguf.cpp) */
    b = one_tensor(2, (int64_t[]){0, 7}, LOOM_TYPE_Q8_0, 0, 0);
    loom_gguf *g;
    OK(loom_gguf_open_memory(b.p, b.n, "zero.gguf", &g));
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "t");
    cr_assert(t && t->ne[0] == 0 && t->ne[1] == 7 && t->nbytes == 0);
    loom_gguf_free(g);
    free(b.p);
}

Test(gguf, bad_tensor_data) {
    /* 64 bytes of F32 [16] with 32 bytes of data */
    rb b = one_tensor(1, (int64_t[]){16}, LOOM_TYPE_F32, 0, 32);
    expect_reject(b.p, b.n, "tensor 't' data [0, +64) is out of range: the data section at 64 holds 32 bytes");
    free(b.p);
    b = one_tensor(1, (int64_t[]){8}, LOOM_TYPE_F32, UINT64_MAX - 31, 64);
    expect_reject(b.p, b.n, "is out of range");
    free(b.p);
    b = one_tensor(1, (int64_t[]){8}, LOOM_TYPE_F32, 16, 64);
    expect_reject(b.p, b.n, "offset 49: tensor 't' data offset 16 is misaligned, expected a multiple of 32");
    free(b.p);

    /* misaligned against a larger general.alignment */
    b = rb_header(3, 1, 1);
    rb_kv_u32(&b, "general.alignment", 64);
    rb_tensor(&b, "t", 1, (int64_t[]){8}, LOOM_TYPE_F32, 32);
    rb_finish(&b, 64, 128);
    expect_reject(b.p, b.n, "data offset 32 is misaligned, expected a multiple of 64");
    free(b.p);

    /* duplicate tensor names */
    b = rb_header(3, 2, 0);
    rb_tensor(&b, "w", 1, (int64_t[]){8}, LOOM_TYPE_F32, 0);
    rb_tensor(&b, "w", 1, (int64_t[]){8}, LOOM_TYPE_F32, 32);
    rb_finish(&b, 32, 64);
    expect_reject(b.p, b.n, "duplicate tensor name 'w' (tensor 1)");
    free(b.p);

    /* overlapping tensors (listed out of order: the check sorts) */
    b = rb_header(3, 3, 0);
    rb_tensor(&b, "c", 1, (int64_t[]){8}, LOOM_TYPE_F32, 128);
    rb_tensor(&b, "a", 1, (int64_t[]){24}, LOOM_TYPE_F32, 0);
    rb_tensor(&b, "b", 1, (int64_t[]){8}, LOOM_TYPE_F32, 64);
    rb_finish(&b, 32, 160);
    expect_reject(b.p, b.n, "tensor 'b' data [64, +32) overlaps tensor 'a' data [0, +96)");
    free(b.p);
    /* the same without overlap, out of order and with a gap, is fine */
    b = rb_header(3, 3, 0);
    rb_tensor(&b, "c", 1, (int64_t[]){8}, LOOM_TYPE_F32, 128);
    rb_tensor(&b, "a", 1, (int64_t[]){8}, LOOM_TYPE_F32, 0);
    rb_tensor(&b, "b", 1, (int64_t[]){8}, LOOM_TYPE_F32, 64);
    rb_finish(&b, 32, 160);
    loom_gguf *g;
    OK(loom_gguf_open_memory(b.p, b.n, "gaps.gguf", &g));
    cr_assert_eq(loom_gguf_find_tensor(g, "c")->offset, 128);
    loom_gguf_free(g);
    free(b.p);

    /* a file with tensors that ends inside the padding before the data */
    b = rb_header(3, 1, 0);
    rb_tensor(&b, "t", 1, (int64_t[]){0}, LOOM_TYPE_F32, 0);
    expect_reject(b.p, b.n, "data section would start at 64 (padded to 32), beyond the end of the 57-byte file");
    free(b.p);
    /* without tensors that is fine (llama.cpp's vocab files end that way) */
    b = rb_header(2, 0, 1);
    rb_kv_u32(&b, "x", 5);
    OK(loom_gguf_open_memory(b.p, b.n, "vocab.gguf", &g));
    cr_assert_eq(loom_gguf_data_offset(g), b.n);
    cr_assert_eq(loom_gguf_version(g), 2);
    loom_gguf_free(g);
    free(b.p);
}

/* Deterministic byte mutations of a valid header never crash the reader
 * (ASan build), and an accepted mutant's tensors stay inside the buffer. */
Test(gguf, mutations_fail_cleanly_or_parse) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    build_all_types(w);
    add_tensors(w);
    void *buf;
    size_t n;
    OK(loom_gguf_writer_write_memory(w, &buf, &n));
    size_t header = (size_t)loom_gguf_writer_header_size(w);
    loom_gguf_writer_free(w);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    int rejected = 0, iters = 4000;
    for (int iter = 0; iter < iters; iter++) {
        uint8_t *m = malloc(n);
        memcpy(m, buf, n);
        for (int k = 0; k <= iter % 3; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            m[(x >> 8) % header] = (uint8_t)x;
        }
        loom_gguf *g;
        loom_status st = loom_gguf_open_memory(m, n, "mut.gguf", &g);
        if (st) {
            cr_assert_null(g);
            cr_assert(strncmp(loom_status_message(st), "mut.gguf: offset ", 17) == 0);
            rejected++;
            loom_status_free(st);
        } else {
            for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
                const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
                cr_assert((const uint8_t *)t->data + t->nbytes <= m + n);
            }
            loom_gguf_free(g);
        }
        free(m);
    }
    cr_assert(rejected > iters / 4 && rejected < iters, "%d of %d mutants rejected", rejected, iters);
    free(buf);
}

/* ---- real files from the cache ---- */

#define MODEL_PATH LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

Test(gguf, default_model) {
    if (access(MODEL_PATH, R_OK) != 0)
        cr_assert_fail("%s is missing: run launch/fetch-model.sh to download the default model", MODEL_PATH);
    loom_gguf *g;
    OK(loom_gguf_open(MODEL_PATH, &g));
    loom_str s;
    cr_assert(loom_gguf_get_str(g, "general.architecture", &s) && s.len == 5 && !memcmp(s.ptr, "llama", 5));
    cr_assert_eq(loom_gguf_n_tensors(g), 272);
    int64_t v;
    cr_assert(loom_gguf_get_int(g, "llama.block_count", &v) && v == 30);
    cr_assert(loom_gguf_get_int(g, "llama.embedding_length", &v) && v == 576);
    cr_assert(loom_gguf_get_int(g, "llama.attention.head_count_kv", &v) && v == 3);
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "token_embd.weight");
    cr_assert(t && t->type == LOOM_TYPE_Q8_0 && t->n_dims == 2 && t->ne[0] == 576 && t->ne[1] == 49152);
    cr_assert_eq(t->nbytes, 576 / 32 * 34 * 49152);
    t = loom_gguf_find_tensor(g, "blk.29.ffn_down.weight");
    cr_assert(t && t->type == LOOM_TYPE_Q4_1 && t->ne[0] == 1536 && t->ne[1] == 576);
    cr_assert(loom_gguf_get_arr(g, "tokenizer.ggml.tokens", LOOM_GGUF_STRING)->v.arr.n == 49152);
    cr_assert(loom_gguf_get_arr(g, "tokenizer.ggml.merges", LOOM_GGUF_STRING)->v.arr.n == 48900);
    const loom_gguf_value *tt = loom_gguf_get_arr(g, "tokenizer.ggml.token_type", LOOM_GGUF_I32);
    cr_assert(tt && tt->v.arr.n == 49152);
    cr_assert_eq(loom_gguf_alignment(g), 32);
    cr_assert_eq(loom_gguf_data_offset(g), 1785664);
    loom_gguf_free(g);
}

Test(gguf, llama_cpp_vocab_files) {
    const char *dir = LOOM_CACHE_DIR "/vocab";
    DIR *d = opendir(dir);
    if (!d) cr_assert_fail("%s is missing: run launch/fetch-model.sh --vocab", dir);
    int opened = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 5, ".gguf")) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        loom_gguf *g;
        loom_status st = loom_gguf_open(path, &g);
        cr_assert_null(st, "%s", loom_status_message(st));
        const loom_gguf_value *toks = loom_gguf_get_arr(g, "tokenizer.ggml.tokens", LOOM_GGUF_STRING);
        cr_assert(toks && toks->v.arr.n > 1000, "%s: no token list", path);
        cr_assert_eq(loom_gguf_n_tensors(g), 0);
        loom_gguf_free(g);
        opened++;
    }
    closedir(d);
    cr_assert_geq(opened, 10, "only %d vocab files in %s: run launch/fetch-model.sh --vocab", opened, dir);
}

/* ---- the fuzzer's seed corpus ---- */

/* The seeds in tests/fuzz/gguf/ are exactly what these builders write;
 * `LOOM_REGEN_FUZZ_SEEDS=1 test_gguf --filter 'gguf/fuzz_seeds*'` rewrites them. */
static loom_gguf_writer *seed_small(void) { return small_writer(); }

static loom_gguf_writer *seed_all_types(void) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    build_all_types(w);
    add_tensors(w);
    return w;
}

static loom_gguf_writer *seed_v2_align64(void) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_set_version(w, 2));
    OK(loom_gguf_writer_set_alignment(w, 64));
    OK(loom_gguf_writer_add_str(w, "general.architecture", "qwen2"));
    OK(loom_gguf_writer_add_float(w, "qwen2.rope.freq_base", LOOM_GGUF_F32, 1e6));
    OK(loom_gguf_writer_add_tensor(w, "blk.0.attn_q.bias", LOOM_TYPE_F32, 1, (int64_t[]){8}, small_w));
    OK(loom_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", LOOM_TYPE_Q8_0, 2, (int64_t[]){32, 4}, q8_data));
    return w;
}

static loom_gguf_writer *seed_vocab(void) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    OK(loom_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"));
    const char *toks[64], *merges[32];
    char tok_buf[64][8], merge_buf[32][8];
    float scores[64];
    int32_t types[64];
    for (int i = 0; i < 64; i++) {
        snprintf(tok_buf[i], sizeof tok_buf[i], "%c%c", 'a' + i % 26, 'a' + i / 26);
        toks[i] = tok_buf[i];
        scores[i] = (float)-i;
        types[i] = i < 3 ? 3 : 1;
    }
    for (int i = 0; i < 32; i++) {
        snprintf(merge_buf[i], sizeof merge_buf[i], "%c %c", 'a' + i % 26, 'b' + i % 20);
        merges[i] = merge_buf[i];
    }
    OK(loom_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, 64));
    OK(loom_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LOOM_GGUF_F32, scores, 64));
    OK(loom_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types, 64));
    OK(loom_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, 32));
    OK(loom_gguf_writer_add_uint(w, "tokenizer.ggml.bos_token_id", LOOM_GGUF_U32, 1));
    OK(loom_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true));
    return w;
}

static loom_gguf_writer *seed_quant_types(void) {
    loom_gguf_writer *w;
    OK(loom_gguf_writer_create(&w));
    static const loom_type types[] = {LOOM_TYPE_F16, LOOM_TYPE_BF16, LOOM_TYPE_Q4_0, LOOM_TYPE_Q4_1,
                                      LOOM_TYPE_Q5_0, LOOM_TYPE_Q5_1, LOOM_TYPE_Q8_0, LOOM_TYPE_Q4_K,
                                      LOOM_TYPE_Q5_K, LOOM_TYPE_Q6_K};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const loom_type_traits *tt = loom_type_info(types[i]);
        char name[32];
        snprintf(name, sizeof name, "t.%s", tt->name);
        int64_t ne[2] = {tt->block_size == 1 ? 32 : tt->block_size, 1};
        OK(loom_gguf_writer_add_tensor(w, name, types[i], 2, ne, NULL));
    }
    return w;
}

static const struct {
    const char *name;
    loom_gguf_writer *(*build)(void);
} seeds[] = {
    {"small.gguf", seed_small},         {"all_types.gguf", seed_all_types}, {"v2_align64.gguf", seed_v2_align64},
    {"vocab.gguf", seed_vocab},         {"quant_types.gguf", seed_quant_types},
};

Test(gguf, fuzz_seeds_are_current) {
    bool regen = getenv("LOOM_REGEN_FUZZ_SEEDS") != NULL;
    fill_pattern(q8_data, sizeof q8_data, 1);
    fill_pattern(f16_data, sizeof f16_data, 2);
    for (size_t i = 0; i < sizeof seeds / sizeof seeds[0]; i++) {
        loom_gguf_writer *w = seeds[i].build();
        void *buf;
        size_t n;
        OK(loom_gguf_writer_write_memory(w, &buf, &n));
        loom_gguf_writer_free(w);
        cr_assert_leq(n, 4096, "seed %s is %zu bytes; the fuzzer runs with -max_len=4096", seeds[i].name, n);
        loom_gguf *g;
        OK(loom_gguf_open_memory(buf, n, seeds[i].name, &g));
        loom_gguf_free(g);
        char path[1024];
        snprintf(path, sizeof path, "%s/fuzz/gguf/%s", LOOM_TEST_DATA, seeds[i].name);
        if (regen) {
            FILE *f = fopen(path, "wb");
            cr_assert_not_null(f, "cannot write %s", path);
            cr_assert_eq(fwrite(buf, 1, n, f), n);
            cr_assert_eq(fclose(f), 0);
        }
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s is missing: run LOOM_REGEN_FUZZ_SEEDS=1 test_gguf", path);
        uint8_t *disk = malloc(n + 1);
        size_t got = fread(disk, 1, n + 1, f);
        fclose(f);
        cr_assert(got == n && !memcmp(disk, buf, n),
                  "%s differs from what the writer produces now: run LOOM_REGEN_FUZZ_SEEDS=1 test_gguf", path);
        free(disk);
        free(buf);
    }
}

/* ---- loom synth (runs the loom executable next to the tests' directory) ---- */

static const char *loom_exe(void) {
    static char path[4096];
    char self[4000];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    cr_assert_gt(n, 0);
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0; /* <build>/tests */
    snprintf(path, sizeof path, "%s/../loom", self);
    cr_assert_eq(access(path, X_OK), 0, "%s is missing: build the loom target", path);
    return path;
}

/* Runs `loom synth <args>`; returns the exit code, output in out. */
static int run_synth(const char *args, char *out, size_t cap) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' synth %s 2>&1", loom_exe(), args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void synth_ok(const char *path, const char *args) {
    char cmd[4096], out[4096];
    snprintf(cmd, sizeof cmd, "--out '%s' %s", path, args);
    int rc = run_synth(cmd, out, sizeof out);
    cr_assert_eq(rc, 0, "loom synth %s failed (%d): %s", cmd, rc, out);
    cr_assert(strstr(out, path) && strstr(out, "parameters"), "summary line: %s", out);
}

static uint64_t file_fnv(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    uint64_t h = 0xcbf29ce484222325ull;
    int c;
    while ((c = getc(f)) != EOF) h = (h ^ (uint8_t)c) * 0x100000001b3ull;
    fclose(f);
    return h;
}

static bool tensor_type_is(const loom_gguf *g, const char *name, loom_type type) {
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, name);
    cr_assert_not_null(t, "tensor %s is missing", name);
    return t->type == type;
}

Test(synth, llama_q4_k_m_layout_metadata_and_determinism) {
    char *a = tmp_path("synth-a"), *b = tmp_path("synth-b");
    const char *args = "--type Q4_K_M --seed 7 --layers 8 --dim 256 --heads 4 --kv-heads 2 --ffn 512 --vocab 400";
    synth_ok(a, args);
    synth_ok(b, args);
    uint64_t h = file_fnv(a);
    cr_assert_eq(h, file_fnv(b), "same arguments, different bytes");
    /* the bytes are fixed across machines and compilers; if synth changes on
     * purpose, update this constant */
    cr_assert_eq(h, 0x162d0127abbf8a77ull, "synth output hash is 0x%016llx", (unsigned long long)h);

    loom_gguf *g;
    OK(loom_gguf_open(a, &g));
    loom_str s;
    int64_t v;
    cr_assert(loom_gguf_get_str(g, "general.architecture", &s) && s.len == 5 && !memcmp(s.ptr, "llama", 5));
    cr_assert(loom_gguf_get_int(g, "llama.block_count", &v) && v == 8);
    cr_assert(loom_gguf_get_int(g, "llama.embedding_length", &v) && v == 256);
    cr_assert(loom_gguf_get_int(g, "llama.feed_forward_length", &v) && v == 512);
    cr_assert(loom_gguf_get_int(g, "llama.attention.head_count", &v) && v == 4);
    cr_assert(loom_gguf_get_int(g, "llama.attention.head_count_kv", &v) && v == 2);
    cr_assert(loom_gguf_get_int(g, "llama.rope.dimension_count", &v) && v == 64);
    cr_assert(loom_gguf_get_int(g, "llama.context_length", &v) && v == 2048);
    cr_assert(loom_gguf_get_int(g, "general.file_type", &v) && v == 15);
    double f;
    cr_assert(loom_gguf_get_float(g, "llama.rope.freq_base", &f) && f == 10000.0);
    cr_assert(loom_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &f) && fabs(f - 1e-5) < 1e-9);
    cr_assert(loom_gguf_get_str(g, "tokenizer.ggml.model", &s) && s.len == 5 && !memcmp(s.ptr, "llama", 5));
    const loom_gguf_value *toks = loom_gguf_get_arr(g, "tokenizer.ggml.tokens", LOOM_GGUF_STRING);
    const loom_gguf_value *types = loom_gguf_get_arr(g, "tokenizer.ggml.token_type", LOOM_GGUF_I32);
    const loom_gguf_value *scores = loom_gguf_get_arr(g, "tokenizer.ggml.scores", LOOM_GGUF_F32);
    cr_assert(toks && types && scores && toks->v.arr.n == 400 && types->v.arr.n == 400 && scores->v.arr.n == 400);
    const char *expect[] = {"<unk>", "<s>", "</s>", "<0x00>"};
    for (int i = 0; i < 4; i++)
        cr_assert(toks->v.arr.strs[i].len == strlen(expect[i]) && !memcmp(toks->v.arr.strs[i].ptr, expect[i], strlen(expect[i])));
    cr_assert(toks->v.arr.strs[258].len == 6 && !memcmp(toks->v.arr.strs[258].ptr, "<0xFF>", 6));
    cr_assert(loom_gguf_arr_int(types, 0) == 2 && loom_gguf_arr_int(types, 1) == 3 && loom_gguf_arr_int(types, 3) == 6 &&
              loom_gguf_arr_int(types, 258) == 6 && loom_gguf_arr_int(types, 259) == 1);
    cr_assert(loom_gguf_arr_float(scores, 260) < loom_gguf_arr_float(scores, 259));
    for (uint64_t i = 1; i < toks->v.arr.n; i++) /* all pieces distinct (spot check against the previous) */
        cr_assert(toks->v.arr.strs[i].len != toks->v.arr.strs[i - 1].len ||
                  memcmp(toks->v.arr.strs[i].ptr, toks->v.arr.strs[i - 1].ptr, toks->v.arr.strs[i].len));
    cr_assert(loom_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) && v == 1);
    cr_assert(loom_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) && v == 2);

    cr_assert_eq(loom_gguf_n_tensors(g), 1 + 8 * 9 + 2);
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "blk.5.attn_k.weight");
    cr_assert(t && t->ne[0] == 256 && t->ne[1] == 128);
    t = loom_gguf_find_tensor(g, "blk.5.attn_output.weight");
    cr_assert(t && t->ne[0] == 256 && t->ne[1] == 256);
    t = loom_gguf_find_tensor(g, "blk.5.ffn_down.weight");
    cr_assert(t && t->ne[0] == 512 && t->ne[1] == 256);
    t = loom_gguf_find_tensor(g, "token_embd.weight");
    cr_assert(t && t->ne[0] == 256 && t->ne[1] == 400 && t->type == LOOM_TYPE_Q4_K);
    cr_assert(tensor_type_is(g, "output.weight", LOOM_TYPE_Q6_K));
    cr_assert(tensor_type_is(g, "output_norm.weight", LOOM_TYPE_F32));
    /* use_more_bits(i, 8): layers 0, 3, 6, 7 */
    for (int l = 0; l < 8; l++) {
        char name[64];
        loom_type want = (l == 0 || l == 3 || l == 6 || l == 7) ? LOOM_TYPE_Q6_K : LOOM_TYPE_Q4_K;
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l);
        cr_assert(tensor_type_is(g, name, want), "%s", name);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l);
        cr_assert(tensor_type_is(g, name, want), "%s", name);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l);
        cr_assert(tensor_type_is(g, name, LOOM_TYPE_Q4_K), "%s", name);
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        cr_assert(tensor_type_is(g, name, LOOM_TYPE_F32), "%s", name);
    }
    loom_gguf_free(g);

    /* another seed: other weights */
    synth_ok(b, "--type Q4_K_M --seed 8 --layers 8 --dim 256 --heads 4 --kv-heads 2 --ffn 512 --vocab 400");
    cr_assert_neq(file_fnv(b), h);
    unlink(a), unlink(b);
    free(a), free(b);
}

/* Every weight type: dequantized projections have std ~ 1/sqrt(fan_in) and
 * mean ~ 0, the embedding std ~ 1, norms are exactly 1. */
Test(synth, weights_have_the_intended_scale) {
    const char *types[] = {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                           "Q4_K", "Q5_K", "Q6_K", "Q4_K_M", "Q5_K_M"};
    char *path = tmp_path("synth-scale");
    float *y = malloc(256 * sizeof *y);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        char args[256];
        snprintf(args, sizeof args, "--type %s --layers 2 --dim 512 --heads 8 --kv-heads 4 --ffn 1024 --vocab 1000",
                 types[ti]);
        synth_ok(path, args);
        loom_gguf *g;
        OK(loom_gguf_open(path, &g));
        for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
            const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
            const loom_type_traits *tt = loom_type_info((uint32_t)t->type);
            double sum = 0, sq = 0;
            int64_t n = 0;
            for (size_t off = 0; off < t->nbytes; off += tt->type_size) {
                int k = loom_dequant_block(t->type, (const uint8_t *)t->data + off, y);
                cr_assert_gt(k, 0);
                for (int j = 0; j < k; j++) sum += y[j], sq += (double)y[j] * y[j];
                n += k;
            }
            cr_assert_eq(n, loom_gguf_tensor_nelements(t));
            double mean = sum / n, sd = sqrt(sq / n - mean * mean);
            if (strstr(t->name, "norm")) {
                cr_assert(mean == 1.0 && sd == 0.0, "%s %s: norm weights must be 1", types[ti], t->name);
                continue;
            }
            double want = !strcmp(t->name, "token_embd.weight") ? 1.0 : 1.0 / sqrt((double)t->ne[0]);
            cr_assert(fabs(sd / want - 1) < 0.03 && fabs(mean) < 0.03 * want,
                      "%s %s (%s): std %.5f (want %.5f), mean %.5f", types[ti], t->name, tt->name, sd, want, mean);
        }
        loom_gguf_free(g);
    }
    free(y);
    unlink(path);
    free(path);
}

Test(synth, qwen2_tied_has_biases_and_no_output) {
    char *path = tmp_path("synth-qwen");
    synth_ok(path, "--arch qwen2 --tied --type Q8_0 --layers 3 --dim 128 --heads 4 --kv-heads 1 --ffn 256 "
                   "--vocab 300 --rope-theta 1000000 --ctx 4096");
    loom_gguf *g;
    OK(loom_gguf_open(path, &g));
    int64_t v;
    double f;
    cr_assert(loom_gguf_get_int(g, "qwen2.block_count", &v) && v == 3);
    cr_assert(loom_gguf_get_int(g, "qwen2.context_length", &v) && v == 4096);
    cr_assert(loom_gguf_get_float(g, "qwen2.rope.freq_base", &f) && f == 1e6);
    cr_assert_null(loom_gguf_find_tensor(g, "output.weight"));
    cr_assert_eq(loom_gguf_n_tensors(g), 1 + 3 * 12 + 1);
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "blk.2.attn_k.bias");
    cr_assert(t && t->type == LOOM_TYPE_F32 && t->n_dims == 1 && t->ne[0] == 32);
    t = loom_gguf_find_tensor(g, "blk.0.attn_q.bias");
    cr_assert(t && t->ne[0] == 128);
    cr_assert(tensor_type_is(g, "token_embd.weight", LOOM_TYPE_Q8_0));
    loom_gguf_free(g);
    unlink(path);
    free(path);
}

Test(synth, rejects_bad_options_with_clear_messages) {
    char out[4096];
    struct {
        const char *args, *what;
    } cases[] = {
        {"--out /tmp/x.gguf --type Q4_K --dim 576 --heads 9 --kv-heads 3 --ffn 1536",
         "--type Q4_K stores rows in blocks of 256, so --dim must be a multiple of 256 (it is 576)"},
        {"--out /tmp/x.gguf --type Q4_K_M --dim 512 --heads 8 --ffn 1000", "--ffn must be a multiple of 256"},
        {"--out /tmp/x.gguf --heads 6 --kv-heads 4 --dim 384", "--kv-heads 4 must divide --heads 6"},
        {"--out /tmp/x.gguf --type IQ2_XXS", "--type IQ2_XXS: expected one of"},
        {"--out /tmp/x.gguf --arch gpt3", "--arch gpt3: expected llama, smollm3, granite, ernie4_5, mistral3"},
        {"--out /tmp/x.gguf --arch phi3 --dim 256 --heads 4 --head-dim 32", "phi3 needs heads * head_dim"},
        {"--out /tmp/x.gguf --rope-dim 7", "--rope-dim 7: expected an even number"},
        {"--out /tmp/x.gguf --arch bert --pooling max", "--pooling max: expected none, mean, cls, last or rank"},
        {"--out /tmp/x.gguf --vocab 100", "--vocab 100 is out of range"},
        {"--out /tmp/x.gguf --arch qwen2 --dim 256 --heads 4 --head-dim 32", "qwen2 needs heads * head_dim"},
        {"--out /tmp/x.gguf --arch gemma2 --experts 4", "--experts: only llama, qwen2moe, qwen3moe, gpt-oss, glm4moe, deepseek2 and nomic-bert-moe"},
        {"--out /tmp/x.gguf --arch llama --experts 4 --dense-lead 1", "--groups-used are glm4moe's and deepseek2's"},
        {"--out /tmp/x.gguf --arch glm4moe --expert-groups 3 --groups-used 1", "--expert-groups G dividing --experts"},
        {"--out /tmp/x.gguf --arch glm4moe --ffn 512 --shared-ffn 768", "--shared-ffn a multiple of --ffn"},
        {"--out /tmp/x.gguf --arch llama --kv-lora 64", "--legacy-kv-b are deepseek2's"},
        {"--out /tmp/x.gguf --arch deepseek2 --head-dim 48 --rope-dim 48", "--rope-dim below --head-dim"},
        {"--out /tmp/x.gguf --arch qwen3moe --experts 4 --experts-used 5", "--experts 4 --experts-used 5: expected"},
        {"--out /tmp/x.gguf --arch qwen3moe --shared-ffn 512", "--shared-ffn: only qwen2moe, glm4moe and deepseek2 models"},
        {"--type F32", "--out PATH is required"},
        {"--out /nonexistent/dir/x.gguf", "/nonexistent/dir/x.gguf: cannot create"},
        {"--out /tmp/x.gguf --vocab-from /nonexistent.gguf", "--vocab-from: /nonexistent.gguf: cannot open"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_synth(cases[i].args, out, sizeof out);
        cr_assert_neq(rc, 0, "loom synth %s succeeded", cases[i].args);
        cr_assert(strstr(out, cases[i].what), "loom synth %s: '%s' lacks '%s'", cases[i].args, out, cases[i].what);
    }
}

/* A 70B-shaped header-only file: full size, a few MiB of disk, readable. */
Test(synth, header_only_70b) {
    char *path = tmp_path("synth-70b");
    synth_ok(path, "--header-only --layers 80 --dim 8192 --heads 64 --kv-heads 8 --ffn 28672 --vocab 128256 "
                   "--type Q4_K_M --rope-theta 500000");
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_gt((uint64_t)sb.st_size, 40000000000ull);
    cr_assert_lt((uint64_t)sb.st_blocks * 512, 16u << 20, "uses %lld bytes of disk", (long long)sb.st_blocks * 512);
    loom_gguf *g;
    OK(loom_gguf_open(path, &g));
    cr_assert_eq(loom_gguf_n_tensors(g), 1 + 80 * 9 + 2);
    cr_assert_eq(loom_gguf_get_arr(g, "tokenizer.ggml.tokens", LOOM_GGUF_STRING)->v.arr.n, 128256);
    /* llama.cpp's 70B rule: attn_v outside use_more_bits layers is Q5_K */
    cr_assert(tensor_type_is(g, "blk.0.attn_v.weight", LOOM_TYPE_Q6_K));
    cr_assert(tensor_type_is(g, "blk.11.attn_v.weight", LOOM_TYPE_Q5_K));
    cr_assert(tensor_type_is(g, "blk.11.ffn_down.weight", LOOM_TYPE_Q4_K));
    cr_assert(tensor_type_is(g, "blk.12.ffn_down.weight", LOOM_TYPE_Q6_K)); /* (12 - 10) % 3 == 2 */
    const loom_gguf_tensor *t = loom_gguf_find_tensor(g, "output.weight");
    cr_assert_eq(loom_gguf_data_offset(g) + t->offset + t->nbytes, loom_gguf_file_size(g));
    loom_gguf_free(g);
    unlink(path);
    free(path);
}
