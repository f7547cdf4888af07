/*
 * runtime/gguf_write.c — GGUF writer (see gguf_write.h).
 */
#include "runtime/gguf_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "loom's GGUF writer assumes a little-endian host"
#endif

#define FILL_CHUNK (1u << 20) /* bytes per fill callback, rounded to whole blocks */

/* ---- growable byte buffer ---- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} bytes;

static bool bytes_put(bytes *b, const void *src, size_t n) {
    if (n > SIZE_MAX - b->len) return false;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) {
            if (cap > SIZE_MAX / 2) return false;
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
    return true;
}

static bool put_u32(bytes *b, uint32_t v) { return bytes_put(b, &v, 4); }
static bool put_u64(bytes *b, uint64_t v) { return bytes_put(b, &v, 8); }
static bool put_str(bytes *b, const char *s, uint64_t len) {
    return put_u64(b, len) && bytes_put(b, s, (size_t)len);
}

/* ---- set of owned names (keys, tensor names) ---- */

typedef struct {
    char **slots;
    size_t cap, n;
} name_set;

static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static bool set_has(const name_set *s, const char *name) {
    if (!s->cap) return false;
    for (size_t i = (size_t)hash_str(name) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i]) return false;
        if (!strcmp(s->slots[i], name)) return true;
    }
}

static void set_place(name_set *s, char *owned) {
    size_t i = (size_t)hash_str(owned) & (s->cap - 1);
    while (s->slots[i]) i = (i + 1) & (s->cap - 1);
    s->slots[i] = owned;
    s->n++;
}

/* Adds a copy of name (known to be absent); returns the copy or NULL. */
static char *set_add(name_set *s, const char *name) {
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        char **slots = calloc(cap, sizeof *slots);
        if (!slots) return NULL;
        name_set grown = {slots, cap, 0};
        for (size_t i = 0; i < s->cap; i++)
            if (s->slots[i]) set_place(&grown, s->slots[i]);
        free(s->slots);
        *s = grown;
    }
    char *copy = strdup(name);
    if (!copy) return NULL;
    set_place(s, copy);
    return copy;
}

static void set_free(name_set *s) {
    for (size_t i = 0; i < s->cap; i++) free(s->slots[i]);
    free(s->slots);
    memset(s, 0, sizeof *s);
}

/* ---- the writer ---- */

typedef struct {
    loom_gguf_tensor t; /* name (owned by the name set), n_dims, ne, type, nbytes; offset at write */
    const void *data;   /* borrowed; NULL with fill == NULL: zeros */
    loom_gguf_fill_fn fill;
    void *user;
} wtensor;

struct loom_gguf_writer {
    uint32_t version;
    uint32_t alignment;
    bytes kv;       /* serialised KVs, in order */
    int64_t n_kv;
    name_set keys;
    wtensor *tensors; /* (n_tensors) */
    int64_t n_tensors, cap_tensors;
    name_set names;
};

loom_status loom_gguf_writer_create(loom_gguf_writer **out) {
    *out = calloc(1, sizeof **out);
    if (!*out) return loom_error(LOOM_ERR_NOMEM, "gguf writer: out of memory");
    (*out)->version = 3;
    (*out)->alignment = LOOM_GGUF_DEFAULT_ALIGNMENT;
    return NULL;
}

void loom_gguf_writer_free(loom_gguf_writer *w) {
    if (!w) return;
    free(w->kv.p);
    set_free(&w->keys);
    free(w->tensors);
    set_free(&w->names);
    free(w);
}

loom_status loom_gguf_writer_set_version(loom_gguf_writer *w, uint32_t version) {
    if (version != 2 && version != 3)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: version %u, expected 2 or 3", version);
    w->version = version;
    return NULL;
}

loom_status loom_gguf_writer_set_alignment(loom_gguf_writer *w, uint32_t alignment) {
    return loom_gguf_writer_add_uint(w, "general.alignment", LOOM_GGUF_U32, alignment);
}

/* ---- metadata ---- */

/* Appends the body of v (no type tag); false with *why set on a bad value. */
static bool put_value(bytes *b, const loom_gguf_value *v, int depth, const char **why) {
    uint8_t tmp[8];
    switch (v->type) {
    case LOOM_GGUF_U8: case LOOM_GGUF_U16: case LOOM_GGUF_U32: case LOOM_GGUF_U64: {
        size_t n = loom_gguf_vtype_size(v->type);
        if (n < 8 && v->v.u64 >> (8 * n)) return *why = "value does not fit its type", false;
        memcpy(tmp, &v->v.u64, 8);
        return bytes_put(b, tmp, n) || (*why = "out of memory", false);
    }
    case LOOM_GGUF_I8: case LOOM_GGUF_I16: case LOOM_GGUF_I32: case LOOM_GGUF_I64: {
        size_t n = loom_gguf_vtype_size(v->type);
        int64_t lim = n < 8 ? (int64_t)1 << (8 * n - 1) : 0;
        if (n < 8 && (v->v.i64 < -lim || v->v.i64 >= lim)) return *why = "value does not fit its type", false;
        memcpy(tmp, &v->v.i64, 8);
        return bytes_put(b, tmp, n) || (*why = "out of memory", false);
    }
    case LOOM_GGUF_F32: {
        float f = (float)v->v.f64;
        return bytes_put(b, &f, 4) || (*why = "out of memory", false);
    }
    case LOOM_GGUF_F64: return bytes_put(b, &v->v.f64, 8) || (*why = "out of memory", false);
    case LOOM_GGUF_BOOL: {
        uint8_t x = v->v.b ? 1 : 0;
        return bytes_put(b, &x, 1) || (*why = "out of memory", false);
    }
    case LOOM_GGUF_STRING:
        if (v->v.str.len && !v->v.str.ptr) return *why = "NULL string", false;
        return put_str(b, v->v.str.ptr, v->v.str.len) || (*why = "out of memory", false);
    case LOOM_GGUF_ARRAY: break;
    default: return *why = "unknown value type", false;
    }
    if (depth >= LOOM_GGUF_MAX_DEPTH) return *why = "arrays nested too deep", false;
    loom_gguf_vtype elem = v->v.arr.elem;
    uint64_t n = v->v.arr.n;
    if ((unsigned)elem > LOOM_GGUF_F64) return *why = "unknown array element type", false;
    if (!put_u32(b, elem) || !put_u64(b, n)) return *why = "out of memory", false;
    size_t es = loom_gguf_vtype_size(elem);
    if (es) {
        if (n && !v->v.arr.raw) return *why = "NULL array data", false;
        if (n > SIZE_MAX / es) return *why = "array too large", false;
        if (elem == LOOM_GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (((const uint8_t *)v->v.arr.raw)[i] > 1) return *why = "bool element is not 0 or 1", false;
        return bytes_put(b, v->v.arr.raw, (size_t)(n * es)) || (*why = "out of memory", false);
    }
    if (elem == LOOM_GGUF_STRING) {
        if (n && !v->v.arr.strs) return *why = "NULL string array", false;
        for (uint64_t i = 0; i < n; i++) {
            const loom_str *s = &v->v.arr.strs[i];
            if (s->len && !s->ptr) return *why = "NULL string", false;
            if (!put_str(b, s->ptr, s->len)) return *why = "out of memory", false;
        }
        return true;
    }
    if (n && !v->v.arr.items) return *why = "NULL nested array items", false;
    for (uint64_t i = 0; i < n; i++) {
        if (v->v.arr.items[i].type != LOOM_GGUF_ARRAY) return *why = "nested item is not an array", false;
        if (!put_value(b, &v->v.arr.items[i], depth + 1, why)) return false;
    }
    return true;
}

loom_status loom_gguf_writer_add_value(loom_gguf_writer *w, const char *key, const loom_gguf_value *v) {
    if (!key || !*key) return loom_error(LOOM_ERR_INVALID, "gguf writer: empty key");
    if (set_has(&w->keys, key))
        return loom_error(LOOM_ERR_INVALID, "gguf writer: duplicate key '%s'", key);
    uint32_t align = w->alignment;
    if (!strcmp(key, "general.alignment")) {
        if (v->type != LOOM_GGUF_U32)
            return loom_error(LOOM_ERR_INVALID, "gguf writer: general.alignment has type %s, expected u32",
                              loom_gguf_vtype_name(v->type));
        if (!v->v.u64 || v->v.u64 > UINT32_MAX || (v->v.u64 & (v->v.u64 - 1)))
            return loom_error(LOOM_ERR_INVALID,
                              "gguf writer: general.alignment %llu, expected a nonzero power of two",
                              (unsigned long long)v->v.u64);
        align = (uint32_t)v->v.u64;
    }
    size_t mark = w->kv.len;
    const char *why = "out of memory";
    bool ok = put_str(&w->kv, key, strlen(key)) && put_u32(&w->kv, (uint32_t)v->type) &&
              put_value(&w->kv, v, 0, &why);
    if (ok && !set_add(&w->keys, key)) ok = false, why = "out of memory";
    if (!ok) {
        w->kv.len = mark;
        return loom_error(!strcmp(why, "out of memory") ? LOOM_ERR_NOMEM : LOOM_ERR_INVALID,
                          "gguf writer: key '%s': %s", key, why);
    }
    w->n_kv++;
    w->alignment = align;
    return NULL;
}

loom_status loom_gguf_writer_add_uint(loom_gguf_writer *w, const char *key, loom_gguf_vtype type,
                                      uint64_t x) {
    if (type != LOOM_GGUF_U8 && type != LOOM_GGUF_U16 && type != LOOM_GGUF_U32 && type != LOOM_GGUF_U64)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: key '%s': %s is not an unsigned type",
                          key ? key : "", loom_gguf_vtype_name(type));
    loom_gguf_value v = {.type = type, .v.u64 = x};
    return loom_gguf_writer_add_value(w, key, &v);
}

loom_status loom_gguf_writer_add_int(loom_gguf_writer *w, const char *key, loom_gguf_vtype type, int64_t x) {
    if (type != LOOM_GGUF_I8 && type != LOOM_GGUF_I16 && type != LOOM_GGUF_I32 && type != LOOM_GGUF_I64)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: key '%s': %s is not a signed type",
                          key ? key : "", loom_gguf_vtype_name(type));
    loom_gguf_value v = {.type = type, .v.i64 = x};
    return loom_gguf_writer_add_value(w, key, &v);
}

loom_status loom_gguf_writer_add_float(loom_gguf_writer *w, const char *key, loom_gguf_vtype type, double x) {
    if (type != LOOM_GGUF_F32 && type != LOOM_GGUF_F64)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: key '%s': %s is not a float type",
                          key ? key : "", loom_gguf_vtype_name(type));
    loom_gguf_value v = {.type = type, .v.f64 = x};
    return loom_gguf_writer_add_value(w, key, &v);
}

loom_status loom_gguf_writer_add_bool(loom_gguf_writer *w, const char *key, bool x) {
    loom_gguf_value v = {.type = LOOM_GGUF_BOOL, .v.b = x};
    return loom_gguf_writer_add_value(w, key, &v);
}

loom_status loom_gguf_writer_add_strn(loom_gguf_writer *w, const char *key, const char *s, size_t len) {
    loom_gguf_value v = {.type = LOOM_GGUF_STRING, .v.str = {len, s}};
    return loom_gguf_writer_add_value(w, key, &v);
}

loom_status loom_gguf_writer_add_str(loom_gguf_writer *w, const char *key, const char *s) {
    return loom_gguf_writer_add_strn(w, key, s, s ? strlen(s) : 0);
}

loom_status loom_gguf_writer_add_arr(loom_gguf_writer *w, const char *key, loom_gguf_vtype elem,
                                     const void *data, uint64_t n) {
    if (!loom_gguf_vtype_size(elem))
        return loom_error(LOOM_ERR_INVALID, "gguf writer: key '%s': %s arrays need add_arr_str or add_value",
                          key ? key : "", loom_gguf_vtype_name(elem));
    loom_gguf_value v = {.type = LOOM_GGUF_ARRAY};
    v.v.arr.elem = elem;
    v.v.arr.n = n;
    v.v.arr.raw = data;
    return loom_gguf_writer_add_value(w, key, &v);
}

loom_status loom_gguf_writer_add_arr_str(loom_gguf_writer *w, const char *key, const char *const *strs,
                                         uint64_t n) {
    if (n > SIZE_MAX / sizeof(loom_str))
        return loom_error(LOOM_ERR_INVALID, "gguf writer: key '%s': array too large", key ? key : "");
    loom_str *s = malloc(n ? (size_t)n * sizeof *s : 1);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "gguf writer: key '%s': out of memory", key ? key : "");
    for (uint64_t i = 0; i < n; i++) {
        s[i].ptr = strs[i];
        s[i].len = strs[i] ? strlen(strs[i]) : 0;
    }
    loom_gguf_value v = {.type = LOOM_GGUF_ARRAY};
    v.v.arr.elem = LOOM_GGUF_STRING;
    v.v.arr.n = n;
    v.v.arr.strs = s;
    loom_status st = loom_gguf_writer_add_value(w, key, &v);
    free(s);
    return st;
}

/* ---- tensors ---- */

static loom_status add_tensor(loom_gguf_writer *w, const char *name, loom_type type, uint32_t n_dims,
                              const int64_t *ne, const void *data, loom_gguf_fill_fn fill, void *user) {
    if (!name) return loom_error(LOOM_ERR_INVALID, "gguf writer: tensor without a name");
    if (set_has(&w->names, name))
        return loom_error(LOOM_ERR_INVALID, "gguf writer: duplicate tensor name '%s'", name);
    const loom_type_traits *tt = loom_type_info((uint32_t)type);
    if (!tt) return loom_error(LOOM_ERR_INVALID, "gguf writer: tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > 4 || !ne)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: tensor '%s': n_dims %u, expected 1 to 4", name, n_dims);
    wtensor wt = {0};
    wt.t.n_dims = n_dims;
    wt.t.type = type;
    int64_t nel = 1;
    for (uint32_t j = 0; j < 4; j++) {
        wt.t.ne[j] = j < n_dims ? ne[j] : 1;
        if (wt.t.ne[j] < 0 || __builtin_mul_overflow(nel, wt.t.ne[j], &nel))
            return loom_error(LOOM_ERR_INVALID, "gguf writer: tensor '%s': bad dimension ne[%u] = %lld", name,
                              j, (long long)wt.t.ne[j]);
    }
    if (wt.t.ne[0] % tt->block_size)
        return loom_error(LOOM_ERR_INVALID,
                          "gguf writer: tensor '%s': ne[0] = %lld is not a multiple of the %s block size %u",
                          name, (long long)wt.t.ne[0], tt->name, tt->block_size);
    uint64_t nbytes = (uint64_t)(wt.t.ne[0] / tt->block_size);
    bool ovf = __builtin_mul_overflow(nbytes, (uint64_t)tt->type_size, &nbytes);
    for (int j = 1; j < 4; j++) ovf = ovf || __builtin_mul_overflow(nbytes, (uint64_t)wt.t.ne[j], &nbytes);
    if (ovf || nbytes > SIZE_MAX / 2)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: tensor '%s': size in bytes overflows", name);
    wt.t.nbytes = (size_t)nbytes;
    wt.data = data;
    wt.fill = fill;
    wt.user = user;
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        wtensor *p = realloc(w->tensors, (size_t)cap * sizeof *p);
        if (!p) return loom_error(LOOM_ERR_NOMEM, "gguf writer: out of memory");
        w->tensors = p;
        w->cap_tensors = cap;
    }
    wt.t.name = set_add(&w->names, name);
    if (!wt.t.name) return loom_error(LOOM_ERR_NOMEM, "gguf writer: out of memory");
    w->tensors[w->n_tensors++] = wt;
    return NULL;
}

loom_status loom_gguf_writer_add_tensor(loom_gguf_writer *w, const char *name, loom_type type, uint32_t n_dims,
                                        const int64_t *ne, const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

loom_status loom_gguf_writer_add_tensor_fill(loom_gguf_writer *w, const char *name, loom_type type,
                                             uint32_t n_dims, const int64_t *ne, loom_gguf_fill_fn fill,
                                             void *user) {
    if (!fill) return loom_error(LOOM_ERR_INVALID, "gguf writer: tensor '%s': NULL fill callback", name);
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, user);
}

int64_t loom_gguf_writer_n_tensors(const loom_gguf_writer *w) { return w->n_tensors; }

static uint64_t pad_to(uint64_t x, uint32_t a) { return x + (a - x % a) % a; }

/* Assigns offsets; returns the header size (padded) and the data size. */
static void layout(loom_gguf_writer *w, uint64_t *header, uint64_t *data) {
    uint64_t h = 24 + w->kv.len;
    uint64_t d = 0;
    for (int64_t i = 0; i < w->n_tensors; i++) {
        loom_gguf_tensor *t = &w->tensors[i].t;
        h += 8 + strlen(t->name) + 4 + 8 * (uint64_t)t->n_dims + 4 + 8;
        t->offset = d;
        d += pad_to(t->nbytes, w->alignment);
    }
    *header = pad_to(h, w->alignment);
    *data = d;
}

uint64_t loom_gguf_writer_header_size(const loom_gguf_writer *w) {
    uint64_t h, d;
    layout((loom_gguf_writer *)w, &h, &d);
    return h;
}

uint64_t loom_gguf_writer_file_size(const loom_gguf_writer *w) {
    uint64_t h, d;
    layout((loom_gguf_writer *)w, &h, &d);
    return h + d;
}

/* ---- output ---- */

typedef struct {
    FILE *f;           /* or */
    uint8_t *mem;      /* cap bytes */
    size_t cap;
    uint64_t pos;
    const char *name;
} sink;

static loom_status sink_put(sink *s, const void *p, size_t n) {
    if (s->f) {
        if (n && fwrite(p, 1, n, s->f) != n)
            return loom_error(LOOM_ERR_IO, "%s: write of %zu bytes at offset %llu failed: %s", s->name, n,
                              (unsigned long long)s->pos, strerror(errno));
    } else {
        if (n > s->cap - s->pos)
            return loom_error(LOOM_ERR_INVALID, "%s: internal: buffer overrun at offset %llu", s->name,
                              (unsigned long long)s->pos);
        if (n) memcpy(s->mem + s->pos, p, n);
    }
    s->pos += n;
    return NULL;
}

static loom_status sink_zeros(sink *s, uint64_t n, uint8_t *chunk, size_t chunk_size) {
    memset(chunk, 0, chunk_size);
    while (n) {
        size_t k = n < chunk_size ? (size_t)n : chunk_size;
        LOOM_TRY(sink_put(s, chunk, k));
        n -= k;
    }
    return NULL;
}

static loom_status build_header(loom_gguf_writer *w, bytes *b, uint64_t header) {
    bool ok = bytes_put(b, "GGUF", 4) && put_u32(b, w->version) && put_u64(b, (uint64_t)w->n_tensors) &&
              put_u64(b, (uint64_t)w->n_kv) && bytes_put(b, w->kv.p, w->kv.len);
    for (int64_t i = 0; ok && i < w->n_tensors; i++) {
        const loom_gguf_tensor *t = &w->tensors[i].t;
        ok = put_str(b, t->name, strlen(t->name)) && put_u32(b, t->n_dims);
        for (uint32_t j = 0; ok && j < t->n_dims; j++) ok = put_u64(b, (uint64_t)t->ne[j]);
        ok = ok && put_u32(b, (uint32_t)t->type) && put_u64(b, t->offset);
    }
    static const uint8_t zeros[256];
    while (ok && b->len < header) {
        size_t k = header - b->len < sizeof zeros ? (size_t)(header - b->len) : sizeof zeros;
        ok = bytes_put(b, zeros, k);
    }
    return ok ? NULL : loom_error(LOOM_ERR_NOMEM, "gguf writer: out of memory for the header");
}

static loom_status write_data(loom_gguf_writer *w, sink *s, uint64_t header) {
    uint8_t *chunk = malloc(FILL_CHUNK);
    if (!chunk) return loom_error(LOOM_ERR_NOMEM, "gguf writer: out of memory");
    loom_status st = NULL;
    for (int64_t i = 0; i < w->n_tensors && !st; i++) {
        const wtensor *wt = &w->tensors[i];
        const loom_gguf_tensor *t = &wt->t;
        if (wt->fill) {
            size_t bs = loom_type_info((uint32_t)t->type)->type_size;
            size_t step = FILL_CHUNK / bs * bs;
            for (uint64_t off = 0; off < t->nbytes && !st; off += step) {
                size_t n = t->nbytes - off < step ? (size_t)(t->nbytes - off) : step;
                st = wt->fill(wt->user, t, off, chunk, n);
                if (st) st = loom_error_wrap(st, "%s: tensor '%s'", s->name, t->name);
                else st = sink_put(s, chunk, n);
            }
        } else if (wt->data) {
            st = sink_put(s, wt->data, t->nbytes);
        } else {
            st = sink_zeros(s, t->nbytes, chunk, FILL_CHUNK);
        }
        if (!st) st = sink_zeros(s, pad_to(t->nbytes, w->alignment) - t->nbytes, chunk, FILL_CHUNK);
        if (!st && s->pos != header + t->offset + pad_to(t->nbytes, w->alignment))
            st = loom_error(LOOM_ERR_INVALID, "%s: internal: tensor '%s' ends at %llu", s->name, t->name,
                            (unsigned long long)s->pos);
    }
    free(chunk);
    return st;
}

loom_status loom_gguf_writer_write(loom_gguf_writer *w, FILE *f, const char *name, unsigned flags) {
    if (!name) name = "<stream>";
    uint64_t header, data;
    layout(w, &header, &data);
    if (flags & LOOM_GGUF_WRITE_HEADER_ONLY) {
        long at = ftell(f);
        if (at != 0)
            return loom_error(LOOM_ERR_INVALID, "%s: a header-only write needs a regular file at offset 0", name);
    }
    bytes b = {0};
    LOOM_TRY(build_header(w, &b, header));
    sink s = {.f = f, .name = name};
    loom_status st = sink_put(&s, b.p, b.len);
    free(b.p);
    if (st) return st;
    if (flags & LOOM_GGUF_WRITE_HEADER_ONLY) {
        if (fflush(f) != 0)
            return loom_error(LOOM_ERR_IO, "%s: write failed: %s", name, strerror(errno));
        if (ftruncate(fileno(f), (off_t)(header + data)) != 0)
            return loom_error(LOOM_ERR_IO, "%s: cannot extend to %llu bytes: %s", name,
                              (unsigned long long)(header + data), strerror(errno));
        if (fseek(f, 0, SEEK_END) != 0)
            return loom_error(LOOM_ERR_IO, "%s: cannot seek to the end: %s", name, strerror(errno));
        return NULL;
    }
    LOOM_TRY(write_data(w, &s, header));
    if (fflush(f) != 0) return loom_error(LOOM_ERR_IO, "%s: write failed: %s", name, strerror(errno));
    return NULL;
}

loom_status loom_gguf_writer_write_path(loom_gguf_writer *w, const char *path, unsigned flags) {
    FILE *f = fopen(path, "wb");
    if (!f) return loom_error(LOOM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    loom_status st = loom_gguf_writer_write(w, f, path, flags);
    if (fclose(f) != 0 && !st) st = loom_error(LOOM_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (st) unlink(path);
    return st;
}

loom_status loom_gguf_writer_write_memory(loom_gguf_writer *w, void **out, size_t *size) {
    *out = NULL;
    *size = 0;
    uint64_t header, data;
    layout(w, &header, &data);
    if (header + data > SIZE_MAX)
        return loom_error(LOOM_ERR_INVALID, "gguf writer: a file of %llu bytes does not fit in memory",
                          (unsigned long long)(header + data));
    bytes b = {0};
    LOOM_TRY(build_header(w, &b, header));
    uint8_t *mem = realloc(b.p, (size_t)(header + data) ? (size_t)(header + data) : 1);
    if (!mem) {
        free(b.p);
        return loom_error(LOOM_ERR_NOMEM, "gguf writer: out of memory for a %llu-byte file",
                          (unsigned long long)(header + data));
    }
    sink s = {.mem = mem, .cap = (size_t)(header + data), .pos = header, .name = "<memory>"};
    loom_status st = write_data(w, &s, header);
    if (st) {
        free(mem);
        return st;
    }
    *out = mem;
    *size = (size_t)(header + data);
    return NULL;
}
