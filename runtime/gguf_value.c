/*
 * runtime/gguf_value.c — GGUF metadata values: the size and name of each
 * value type, decoding one scalar, and the typed getters of gguf.h (the
 * reader and the writer share the first two).
 */
#include <string.h>

#include "runtime/gguf.h"

size_t loom_gguf_vtype_size(loom_gguf_vtype t) {
    switch (t) {
    case LOOM_GGUF_U8: case LOOM_GGUF_I8: case LOOM_GGUF_BOOL: return 1;
    case LOOM_GGUF_U16: case LOOM_GGUF_I16: return 2;
    case LOOM_GGUF_U32: case LOOM_GGUF_I32: case LOOM_GGUF_F32: return 4;
    case LOOM_GGUF_U64: case LOOM_GGUF_I64: case LOOM_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *loom_gguf_vtype_name(loom_gguf_vtype t) {
    static const char *const names[] = {"u8",  "i8",   "u16",  "i16",   "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < sizeof names / sizeof names[0] ? names[t] : "?";
}

void loom_gguf_scalar_decode(loom_gguf_vtype t, const uint8_t *p, loom_gguf_value *v) {
    v->type = t;
    switch (t) {
    case LOOM_GGUF_U8: v->v.u64 = p[0]; break;
    case LOOM_GGUF_I8: v->v.i64 = (int8_t)p[0]; break;
    case LOOM_GGUF_BOOL: v->v.b = p[0] != 0; break;
    case LOOM_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); v->v.u64 = x; break; }
    case LOOM_GGUF_I16: { int16_t x; memcpy(&x, p, 2); v->v.i64 = x; break; }
    case LOOM_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); v->v.u64 = x; break; }
    case LOOM_GGUF_I32: { int32_t x; memcpy(&x, p, 4); v->v.i64 = x; break; }
    case LOOM_GGUF_F32: { float x; memcpy(&x, p, 4); v->v.f64 = x; break; }
    case LOOM_GGUF_U64: { uint64_t x; memcpy(&x, p, 8); v->v.u64 = x; break; }
    case LOOM_GGUF_I64: { int64_t x; memcpy(&x, p, 8); v->v.i64 = x; break; }
    case LOOM_GGUF_F64: { double x; memcpy(&x, p, 8); v->v.f64 = x; break; }
    default: break;
    }
}

static bool value_int(const loom_gguf_value *v, int64_t *out) {
    switch (v->type) {
    case LOOM_GGUF_U8: case LOOM_GGUF_U16: case LOOM_GGUF_U32: case LOOM_GGUF_U64:
        if (v->v.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v->v.u64;
        return true;
    case LOOM_GGUF_I8: case LOOM_GGUF_I16: case LOOM_GGUF_I32: case LOOM_GGUF_I64:
        *out = v->v.i64;
        return true;
    default: return false;
    }
}

bool loom_gguf_get_int(const loom_gguf *g, const char *key, int64_t *out) {
    const loom_gguf_value *v = loom_gguf_get(g, key);
    return v && value_int(v, out);
}

bool loom_gguf_get_float(const loom_gguf *g, const char *key, double *out) {
    const loom_gguf_value *v = loom_gguf_get(g, key);
    if (!v || (v->type != LOOM_GGUF_F32 && v->type != LOOM_GGUF_F64)) return false;
    *out = v->v.f64;
    return true;
}

bool loom_gguf_get_bool(const loom_gguf *g, const char *key, bool *out) {
    const loom_gguf_value *v = loom_gguf_get(g, key);
    if (!v || v->type != LOOM_GGUF_BOOL) return false;
    *out = v->v.b;
    return true;
}

bool loom_gguf_get_str(const loom_gguf *g, const char *key, loom_str *out) {
    const loom_gguf_value *v = loom_gguf_get(g, key);
    if (!v || v->type != LOOM_GGUF_STRING) return false;
    *out = v->v.str;
    return true;
}

const loom_gguf_value *loom_gguf_get_arr(const loom_gguf *g, const char *key, int elem) {
    const loom_gguf_value *v = loom_gguf_get(g, key);
    if (!v || v->type != LOOM_GGUF_ARRAY) return NULL;
    if (elem >= 0 && (int)v->v.arr.elem != elem) return NULL;
    return v;
}

int64_t loom_gguf_arr_int(const loom_gguf_value *arr, uint64_t i) {
    if (!arr || arr->type != LOOM_GGUF_ARRAY || i >= arr->v.arr.n) return 0;
    size_t es = loom_gguf_vtype_size(arr->v.arr.elem);
    if (!es || arr->v.arr.elem == LOOM_GGUF_F32 || arr->v.arr.elem == LOOM_GGUF_F64) return 0;
    loom_gguf_value v;
    loom_gguf_scalar_decode(arr->v.arr.elem, (const uint8_t *)arr->v.arr.raw + i * es, &v);
    switch (v.type) {
    case LOOM_GGUF_BOOL: return v.v.b;
    case LOOM_GGUF_U8: case LOOM_GGUF_U16: case LOOM_GGUF_U32: case LOOM_GGUF_U64:
        return (int64_t)v.v.u64;
    default: return v.v.i64;
    }
}

double loom_gguf_arr_float(const loom_gguf_value *arr, uint64_t i) {
    if (!arr || arr->type != LOOM_GGUF_ARRAY || i >= arr->v.arr.n) return 0;
    size_t es = loom_gguf_vtype_size(arr->v.arr.elem);
    if (!es) return 0;
    loom_gguf_value v;
    loom_gguf_scalar_decode(arr->v.arr.elem, (const uint8_t *)arr->v.arr.raw + i * es, &v);
    switch (v.type) {
    case LOOM_GGUF_F32: case LOOM_GGUF_F64: return v.v.f64;
    case LOOM_GGUF_BOOL: return v.v.b;
    case LOOM_GGUF_U8: case LOOM_GGUF_U16: case LOOM_GGUF_U32: case LOOM_GGUF_U64:
        return (double)v.v.u64;
    default: return (double)v.v.i64;
    }
}
