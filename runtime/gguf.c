/*
 * runtime/gguf.c — GGUF reader (see gguf.h for the format and the contract).
 *
 * Parsing is one forward pass over the header with a cursor that knows how
 * many bytes are left; every count is compared with those bytes before
 * anything is allocated for it. Everything the parse builds (keys, names,
 * string and array tables) lives in one arena, so failure and
 * loom_gguf_free() release it with a single walk.
 */
#include "runtime/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "loom's GGUF reader assumes a little-endian host"
#endif

/* Smallest encodings, used to reject counts before allocating:
 * a KV is a key (u64 length + >= 1 byte) + u32 type + >= 1 value byte;
 * a tensor entry is a name (u64 length) + u32 n_dims + >= one u64 dim +
 * u32 type + u64 offset; a nested array is u32 type + u64 count. */
#define MIN_KV_BYTES 14u
#define MIN_TENSOR_BYTES 32u
#define MIN_NESTED_ARRAY_BYTES 12u

/* ---- arena: every allocation of one parse, freed together ---- */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    max_align_t data[]; /* cap bytes */
} arena_chunk;

typedef struct {
    arena_chunk *head;
} arena;

#define ARENA_CHUNK (256u * 1024u)

static void *arena_alloc(arena *a, size_t n) {
    n = (n + 15u) & ~(size_t)15u;
    if (n == 0) n = 16;
    arena_chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        if (cap > SIZE_MAX - sizeof(arena_chunk)) return NULL;
        arena_chunk *nc = malloc(sizeof(arena_chunk) + cap);
        if (!nc) return NULL;
        nc->used = 0;
        nc->cap = cap;
        if (c && cap != ARENA_CHUNK) {
            /* a big one-off block goes behind the current chunk so the
             * current chunk's free space stays usable */
            nc->next = c->next;
            c->next = nc;
            nc->used = cap;
            return nc->data;
        }
        nc->next = c;
        a->head = c = nc;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
}

/* ---- hashing ---- */

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Index of names: open addressing, slot = entry index + 1 (0 = empty). */
typedef struct {
    size_t *slots;
    size_t mask;
} name_index;

static bool index_init(name_index *ix, arena *a, uint64_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap *= 2; /* n is bounded by the file size */
    ix->slots = arena_alloc(a, cap * sizeof(size_t));
    if (!ix->slots) return false;
    memset(ix->slots, 0, cap * sizeof(size_t));
    ix->mask = cap - 1;
    return true;
}

/* Finds `name`; `names(i)` returns the name of entry i. With insert >= 0,
 * adds entry `insert` when absent. Returns the existing entry or -1. */
#define INDEX_LOOKUP(fn, type, field)                                                         \
    static int64_t fn(const name_index *ix, const type *items, const char *name, size_t len, \
                      int64_t insert) {                                                       \
        if (!ix->slots) return -1;                                                            \
        size_t i = (size_t)fnv1a(name, len) & ix->mask;                                       \
        for (;; i = (i + 1) & ix->mask) {                                                     \
            size_t s = ix->slots[i];                                                          \
            if (!s) {                                                                         \
                if (insert >= 0) ix->slots[i] = (size_t)insert + 1;                           \
                return -1;                                                                    \
            }                                                                                 \
            const char *other = items[s - 1].field;                                           \
            if (!strncmp(other, name, len) && other[len] == 0) return (int64_t)(s - 1);       \
        }                                                                                     \
    }
INDEX_LOOKUP(kv_lookup, loom_gguf_kv, key)
INDEX_LOOKUP(tensor_lookup, loom_gguf_tensor, name)

/* ---- the handle ---- */

struct loom_gguf {
    char *name;              /* path or the name given to open_memory */
    const uint8_t *base;     /* size bytes */
    size_t size;
    bool mapped;             /* munmap(base, size) on free */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t hash;
    int64_t n_kv;
    int64_t n_tensors;
    loom_gguf_kv *kvs;         /* (n_kv) */
    loom_gguf_tensor *tensors; /* (n_tensors) */
    name_index kv_ix, tensor_ix;
    arena arena;
};

/* ---- the cursor ---- */

typedef struct {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *name;
    arena *arena;
} reader;

static loom_status fail(const reader *r, size_t off, loom_code code, const char *fmt, ...)
    LOOM_PRINTF(4, 5);
static loom_status fail(const reader *r, size_t off, loom_code code, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return loom_error(code, "%s: offset %zu: %s", r->name, off, msg);
}

static loom_status nomem(const reader *r, const char *what) {
    return fail(r, r->pos, LOOM_ERR_NOMEM, "out of memory for %s", what);
}

static size_t left(const reader *r) { return r->size - r->pos; }

static loom_status need(const reader *r, size_t n, const char *what) {
    if (n > left(r))
        return fail(r, r->pos, LOOM_ERR_FORMAT,
                    "file truncated: expected %zu bytes of %s, found %zu bytes left", n, what, left(r));
    return NULL;
}

static loom_status rd_u32(reader *r, uint32_t *v, const char *what) {
    LOOM_TRY(need(r, 4, what));
    memcpy(v, r->p + r->pos, 4);
    r->pos += 4;
    return NULL;
}

static loom_status rd_u64(reader *r, uint64_t *v, const char *what) {
    LOOM_TRY(need(r, 8, what));
    memcpy(v, r->p + r->pos, 8);
    r->pos += 8;
    return NULL;
}

/* A string in place (not copied). */
static loom_status rd_str(reader *r, loom_str *s, const char *what) {
    size_t at = r->pos;
    uint64_t len;
    LOOM_TRY(rd_u64(r, &len, what));
    if (len > left(r))
        return fail(r, at, LOOM_ERR_FORMAT, "%s length %llu cannot fit in the %zu bytes left", what,
                    (unsigned long long)len, left(r));
    s->len = len;
    s->ptr = (const char *)r->p + r->pos;
    r->pos += (size_t)len;
    return NULL;
}

/* A key or tensor name: non-NUL bytes, copied and NUL-terminated. */
static loom_status rd_name(reader *r, const char **out, loom_str *raw, const char *what,
                           bool allow_empty) {
    size_t at = r->pos;
    LOOM_TRY(rd_str(r, raw, what));
    if (!allow_empty && raw->len == 0)
        return fail(r, at, LOOM_ERR_FORMAT, "%s is empty, expected at least one byte", what);
    const char *nul = memchr(raw->ptr, 0, (size_t)raw->len);
    if (nul)
        return fail(r, at, LOOM_ERR_FORMAT, "%s contains a NUL byte at position %zu, expected none",
                    what, (size_t)(nul - raw->ptr));
    char *copy = arena_alloc(r->arena, (size_t)raw->len + 1);
    if (!copy) return nomem(r, what);
    memcpy(copy, raw->ptr, (size_t)raw->len);
    copy[raw->len] = 0;
    *out = copy;
    return NULL;
}

/* ---- values ---- */



static loom_status check_bools(const reader *r, const uint8_t *p, uint64_t n, size_t at) {
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return fail(r, at + (size_t)i, LOOM_ERR_FORMAT, "bool value %u, expected 0 or 1", p[i]);
    return NULL;
}

static loom_status rd_value(reader *r, uint32_t type, loom_gguf_value *v, int depth);

/* Array body after its value type (9): u32 elem, u64 count, items. */
static loom_status rd_array(reader *r, loom_gguf_value *v, int depth) {
    if (depth > LOOM_GGUF_MAX_DEPTH)
        return fail(r, r->pos, LOOM_ERR_FORMAT, "arrays nested %d deep, expected at most %d", depth,
                    LOOM_GGUF_MAX_DEPTH);
    size_t at = r->pos;
    uint32_t elem;
    uint64_t n;
    LOOM_TRY(rd_u32(r, &elem, "array element type"));
    if (elem > LOOM_GGUF_F64)
        return fail(r, at, LOOM_ERR_FORMAT, "array element type %u, expected a value type 0..12", elem);
    size_t count_at = r->pos;
    LOOM_TRY(rd_u64(r, &n, "array count"));
    memset(v, 0, sizeof *v);
    v->type = LOOM_GGUF_ARRAY;
    v->v.arr.elem = (loom_gguf_vtype)elem;
    v->v.arr.n = n;
    size_t es = loom_gguf_vtype_size(elem);
    size_t min = es ? es : elem == LOOM_GGUF_STRING ? 8 : MIN_NESTED_ARRAY_BYTES;
    if (n > left(r) / min)
        return fail(r, count_at, LOOM_ERR_FORMAT,
                    "array count %llu of %s cannot fit in the %zu bytes left (%zu bytes each at least)",
                    (unsigned long long)n, loom_gguf_vtype_name(elem), left(r), min);
    if (es) {
        v->v.arr.raw = r->p + r->pos;
        if (elem == LOOM_GGUF_BOOL) LOOM_TRY(check_bools(r, r->p + r->pos, n, r->pos));
        r->pos += (size_t)n * es;
        return NULL;
    }
    if (n == 0) return NULL;
    if (elem == LOOM_GGUF_STRING) {
        loom_str *s = arena_alloc(r->arena, (size_t)n * sizeof *s);
        if (!s) return nomem(r, "a string array");
        for (uint64_t i = 0; i < n; i++) LOOM_TRY(rd_str(r, &s[i], "array string"));
        v->v.arr.strs = s;
        return NULL;
    }
    loom_gguf_value *items = arena_alloc(r->arena, (size_t)n * sizeof *items);
    if (!items) return nomem(r, "a nested array");
    for (uint64_t i = 0; i < n; i++) LOOM_TRY(rd_array(r, &items[i], depth + 1));
    v->v.arr.items = items;
    return NULL;
}

static loom_status rd_value(reader *r, uint32_t type, loom_gguf_value *v, int depth) {
    size_t es = loom_gguf_vtype_size(type);
    if (es) {
        LOOM_TRY(need(r, es, loom_gguf_vtype_name((loom_gguf_vtype)type)));
        if (type == LOOM_GGUF_BOOL) LOOM_TRY(check_bools(r, r->p + r->pos, 1, r->pos));
        memset(v, 0, sizeof *v);
        loom_gguf_scalar_decode(type, r->p + r->pos, v);
        r->pos += es;
        return NULL;
    }
    if (type == LOOM_GGUF_STRING) {
        memset(v, 0, sizeof *v);
        v->type = LOOM_GGUF_STRING;
        return rd_str(r, &v->v.str, "string value");
    }
    return rd_array(r, v, depth + 1);
}

/* ---- the whole header ---- */

static uint64_t load64(const uint8_t *p) {
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* FNV-1a over little-endian 64-bit words, then the tail bytes, then a
 * murmur3 finaliser; stable across machines. */
static uint64_t header_hash(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = (h ^ load64(p + i)) * 0x100000001b3ull;
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

static loom_status rd_kvs(reader *r, loom_gguf *g) {
    for (int64_t i = 0; i < g->n_kv; i++) {
        loom_gguf_kv *kv = &g->kvs[i];
        size_t at = r->pos;
        loom_str raw;
        LOOM_TRY(rd_name(r, &kv->key, &raw, "key", false));
        if (kv_lookup(&g->kv_ix, g->kvs, kv->key, (size_t)raw.len, i) >= 0)
            return fail(r, at, LOOM_ERR_FORMAT, "duplicate key '%s' (KV %lld), expected unique keys",
                        kv->key, (long long)i);
        size_t type_at = r->pos;
        uint32_t type;
        LOOM_TRY(rd_u32(r, &type, "value type"));
        if (type > LOOM_GGUF_F64)
            return fail(r, type_at, LOOM_ERR_FORMAT, "key '%s' has value type %u, expected 0..12",
                        kv->key, type);
        size_t val_at = r->pos;
        LOOM_TRY(rd_value(r, type, &kv->value, 0));
        if (!strcmp(kv->key, "general.alignment")) {
            if (type != LOOM_GGUF_U32)
                return fail(r, type_at, LOOM_ERR_FORMAT, "general.alignment has type %s, expected u32",
                            loom_gguf_vtype_name((loom_gguf_vtype)type));
            uint64_t a = kv->value.v.u64;
            if (a == 0 || (a & (a - 1)))
                return fail(r, val_at, LOOM_ERR_FORMAT,
                            "general.alignment is %llu, expected a nonzero power of two",
                            (unsigned long long)a);
            g->alignment = (uint32_t)a;
        }
    }
    return NULL;
}

static loom_status rd_tensor(reader *r, loom_gguf *g, int64_t i, uint64_t *offset_at) {
    loom_gguf_tensor *t = &g->tensors[i];
    size_t at = r->pos;
    loom_str raw;
    LOOM_TRY(rd_name(r, &t->name, &raw, "tensor name", true));
    if (tensor_lookup(&g->tensor_ix, g->tensors, t->name, (size_t)raw.len, i) >= 0)
        return fail(r, at, LOOM_ERR_FORMAT,
                    "duplicate tensor name '%s' (tensor %lld), expected unique names", t->name,
                    (long long)i);
    size_t dims_at = r->pos;
    LOOM_TRY(rd_u32(r, &t->n_dims, "tensor n_dims"));
    if (t->n_dims < 1 || t->n_dims > 4)
        return fail(r, dims_at, LOOM_ERR_FORMAT, "tensor '%s' has n_dims %u, expected 1 to 4", t->name,
                    t->n_dims);
    int64_t nel = 1;
    for (uint32_t j = 0; j < 4; j++) t->ne[j] = 1;
    for (uint32_t j = 0; j < t->n_dims; j++) {
        size_t ne_at = r->pos;
        uint64_t u;
        LOOM_TRY(rd_u64(r, &u, "tensor dimension"));
        t->ne[j] = (int64_t)u;
        if (t->ne[j] < 0)
            return fail(r, ne_at, LOOM_ERR_FORMAT, "tensor '%s' dimension %u is %lld, expected >= 0",
                        t->name, j, (long long)t->ne[j]);
        if (__builtin_mul_overflow(nel, t->ne[j], &nel))
            return fail(r, ne_at, LOOM_ERR_FORMAT,
                        "tensor '%s' shape overflows: the product of its dimensions up to ne[%u] = %lld "
                        "exceeds INT64_MAX",
                        t->name, j, (long long)t->ne[j]);
    }
    size_t type_at = r->pos;
    uint32_t type;
    LOOM_TRY(rd_u32(r, &type, "tensor type"));
    const loom_type_traits *tt = loom_type_info(type);
    if (!tt)
        return fail(r, type_at, LOOM_ERR_UNSUPPORTED,
                    "tensor '%s' has unknown type %u, expected a known GGML type id", t->name, type);
    t->type = (loom_type)type;
    if (t->ne[0] % tt->block_size)
        return fail(r, dims_at, LOOM_ERR_FORMAT,
                    "tensor '%s' of type %s has ne[0] = %lld, expected a multiple of the block size %u",
                    t->name, tt->name, (long long)t->ne[0], tt->block_size);
    /* bytes = (ne0 / block) * type_size * ne1 * ne2 * ne3 */
    uint64_t nbytes = (uint64_t)(t->ne[0] / tt->block_size);
    bool ovf = __builtin_mul_overflow(nbytes, (uint64_t)tt->type_size, &nbytes);
    for (int j = 1; j < 4; j++) ovf = ovf || __builtin_mul_overflow(nbytes, (uint64_t)t->ne[j], &nbytes);
    if (ovf || nbytes > SIZE_MAX)
        return fail(r, dims_at, LOOM_ERR_FORMAT, "tensor '%s' size in bytes overflows", t->name);
    t->nbytes = (size_t)nbytes;
    *offset_at = r->pos;
    LOOM_TRY(rd_u64(r, &t->offset, "tensor data offset"));
    return NULL;
}

static int cmp_by_offset(const void *a, const void *b) {
    const loom_gguf_tensor *x = *(const loom_gguf_tensor *const *)a;
    const loom_gguf_tensor *y = *(const loom_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Tensor data: aligned, inside the data section, no two tensors overlap. */
static loom_status check_data(reader *r, loom_gguf *g, const uint64_t *offset_at) {
    uint64_t data_size = g->size - g->data_offset;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const loom_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment)
            return fail(r, (size_t)offset_at[i], LOOM_ERR_FORMAT,
                        "tensor '%s' data offset %llu is misaligned, expected a multiple of %u", t->name,
                        (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return fail(r, (size_t)offset_at[i], LOOM_ERR_FORMAT,
                        "tensor '%s' data [%llu, +%zu) is out of range: the data section at %llu "
                        "holds %llu bytes",
                        t->name, (unsigned long long)t->offset, t->nbytes,
                        (unsigned long long)g->data_offset, (unsigned long long)data_size);
        g->tensors[i].data = g->base + g->data_offset + t->offset;
    }
    if (g->n_tensors < 2) return NULL;
    const loom_gguf_tensor **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) return nomem(r, "the tensor order");
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_by_offset);
    const loom_gguf_tensor *prev = NULL;
    loom_status st = NULL;
    for (int64_t i = 0; i < g->n_tensors && !st; i++) {
        const loom_gguf_tensor *t = order[i];
        if (t->nbytes == 0) continue;
        if (prev && prev->offset + prev->nbytes > t->offset)
            st = fail(r, (size_t)offset_at[t - g->tensors], LOOM_ERR_FORMAT,
                      "tensor '%s' data [%llu, +%zu) overlaps tensor '%s' data [%llu, +%zu), expected "
                      "disjoint tensors",
                      t->name, (unsigned long long)t->offset, t->nbytes, prev->name,
                      (unsigned long long)prev->offset, prev->nbytes);
        prev = t;
    }
    free(order);
    return st;
}

static loom_status parse(loom_gguf *g) {
    reader rd = {g->base, g->size, 0, g->name, &g->arena};
    reader *r = &rd;
    uint32_t magic;
    LOOM_TRY(rd_u32(r, &magic, "magic"));
    if (memcmp(g->base, "GGUF", 4)) {
        char shown[5];
        for (int i = 0; i < 4; i++) shown[i] = g->base[i] >= 32 && g->base[i] < 127 ? (char)g->base[i] : '?';
        shown[4] = 0;
        return fail(r, 0, LOOM_ERR_FORMAT, "bad magic '%s' (%02x %02x %02x %02x), expected 'GGUF'",
                    shown, g->base[0], g->base[1], g->base[2], g->base[3]);
    }
    LOOM_TRY(rd_u32(r, &g->version, "version"));
    if (g->version != 2 && g->version != 3) {
        if (g->version && !(g->version & 0xffff))
            return fail(r, 4, LOOM_ERR_UNSUPPORTED,
                        "version %u, expected 2 or 3 (a byte-swapped version: big-endian file?)",
                        g->version);
        return fail(r, 4, LOOM_ERR_UNSUPPORTED, "version %u, expected 2 or 3%s", g->version,
                    g->version == 1 ? " (version 1 is obsolete)" : "");
    }
    uint64_t n_tensors, n_kv;
    LOOM_TRY(rd_u64(r, &n_tensors, "tensor count"));
    LOOM_TRY(rd_u64(r, &n_kv, "KV count"));
    if (n_tensors > left(r) / MIN_TENSOR_BYTES)
        return fail(r, 8, LOOM_ERR_FORMAT,
                    "tensor count %llu cannot fit in the %zu bytes left (%u bytes each at least)",
                    (unsigned long long)n_tensors, left(r), MIN_TENSOR_BYTES);
    if (n_kv > left(r) / MIN_KV_BYTES)
        return fail(r, 16, LOOM_ERR_FORMAT,
                    "KV count %llu cannot fit in the %zu bytes left (%u bytes each at least)",
                    (unsigned long long)n_kv, left(r), MIN_KV_BYTES);

    g->alignment = LOOM_GGUF_DEFAULT_ALIGNMENT;
    if (n_kv) {
        g->kvs = arena_alloc(&g->arena, (size_t)n_kv * sizeof *g->kvs);
        if (!g->kvs || !index_init(&g->kv_ix, &g->arena, n_kv)) return nomem(r, "the KV table");
        memset(g->kvs, 0, (size_t)n_kv * sizeof *g->kvs);
    }
    g->n_kv = (int64_t)n_kv;
    LOOM_TRY(rd_kvs(r, g));

    if (n_tensors > left(r) / MIN_TENSOR_BYTES)
        return fail(r, 8, LOOM_ERR_FORMAT,
                    "tensor count %llu cannot fit in the %zu bytes left after the metadata (%u bytes "
                    "each at least)",
                    (unsigned long long)n_tensors, left(r), MIN_TENSOR_BYTES);
    uint64_t *offset_at = NULL;
    if (n_tensors) {
        g->tensors = arena_alloc(&g->arena, (size_t)n_tensors * sizeof *g->tensors);
        offset_at = arena_alloc(&g->arena, (size_t)n_tensors * sizeof *offset_at);
        if (!g->tensors || !offset_at || !index_init(&g->tensor_ix, &g->arena, n_tensors))
            return nomem(r, "the tensor table");
        memset(g->tensors, 0, (size_t)n_tensors * sizeof *g->tensors);
    }
    for (int64_t i = 0; i < (int64_t)n_tensors; i++) LOOM_TRY(rd_tensor(r, g, i, &offset_at[i]));
    g->n_tensors = (int64_t)n_tensors;

    /* the data section starts at the next multiple of the alignment; a file
     * without tensors may end before that padding */
    uint64_t end = r->pos;
    uint64_t padded = end + (g->alignment - end % g->alignment) % g->alignment;
    if (padded > g->size) {
        if (n_tensors)
            return fail(r, (size_t)end, LOOM_ERR_FORMAT,
                        "data section would start at %llu (padded to %u), beyond the end of the "
                        "%zu-byte file",
                        (unsigned long long)padded, g->alignment, g->size);
        padded = end;
    }
    g->data_offset = padded;
    LOOM_TRY(check_data(r, g, offset_at));
    g->hash = header_hash(g->base, (size_t)g->data_offset);
    return NULL;
}

/* ---- open / free ---- */

static loom_status open_common(loom_gguf *g, loom_gguf **out) {
    loom_status st = parse(g);
    if (st) {
        loom_gguf_free(g);
        return st;
    }
    *out = g;
    return NULL;
}

loom_status loom_gguf_open_memory(const void *data, size_t size, const char *name, loom_gguf **out) {
    *out = NULL;
    if (!name) name = "<memory>";
    if (!data && size)
        return loom_error(LOOM_ERR_INVALID, "%s: NULL buffer of %zu bytes", name, size);
    loom_gguf *g = calloc(1, sizeof *g);
    if (!g) return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    g->name = strdup(name);
    if (!g->name) {
        free(g);
        return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    }
    static const uint8_t empty[1];
    g->base = data ? data : empty;
    g->size = size;
    return open_common(g, out);
}

loom_status loom_gguf_open(const char *path, loom_gguf **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return loom_error(LOOM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        loom_status st = loom_error(LOOM_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return st;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return loom_error(LOOM_ERR_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return loom_error(LOOM_ERR_IO, "%s: file of %lld bytes does not fit in the address space", path,
                          (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *map = NULL;
    if (size) {
        map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            loom_status st = loom_error(LOOM_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size,
                                        strerror(errno));
            close(fd);
            return st;
        }
    }
    close(fd);
    loom_gguf *g = calloc(1, sizeof *g);
    char *name = strdup(path);
    if (!g || !name) {
        free(g);
        free(name);
        if (map) munmap(map, size);
        return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", path);
    }
    static const uint8_t empty[1];
    g->name = name;
    g->base = map ? map : empty;
    g->size = size;
    g->mapped = map != NULL;
    return open_common(g, out);
}

void loom_gguf_free(loom_gguf *g) {
    if (!g) return;
    arena_free(&g->arena);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g->name);
    free(g);
}

/* ---- accessors ---- */

const char *loom_gguf_path(const loom_gguf *g) { return g->name; }
uint32_t loom_gguf_version(const loom_gguf *g) { return g->version; }
size_t loom_gguf_file_size(const loom_gguf *g) { return g->size; }
const uint8_t *loom_gguf_base(const loom_gguf *g) { return g->base; }
bool loom_gguf_is_mapped(const loom_gguf *g) { return g->mapped; }
uint64_t loom_gguf_data_offset(const loom_gguf *g) { return g->data_offset; }
uint32_t loom_gguf_alignment(const loom_gguf *g) { return g->alignment; }
uint64_t loom_gguf_header_hash(const loom_gguf *g) { return g->hash; }

int64_t loom_gguf_n_kv(const loom_gguf *g) { return g->n_kv; }

const loom_gguf_kv *loom_gguf_kv_at(const loom_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL;
}

const loom_gguf_value *loom_gguf_get(const loom_gguf *g, const char *key) {
    if (!key) return NULL;
    int64_t i = kv_lookup(&g->kv_ix, g->kvs, key, strlen(key), -1);
    return i >= 0 ? &g->kvs[i].value : NULL;
}

int64_t loom_gguf_n_tensors(const loom_gguf *g) { return g->n_tensors; }

const loom_gguf_tensor *loom_gguf_tensor_at(const loom_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const loom_gguf_tensor *loom_gguf_find_tensor(const loom_gguf *g, const char *name) {
    if (!name) return NULL;
    int64_t i = tensor_lookup(&g->tensor_ix, g->tensors, name, strlen(name), -1);
    return i >= 0 ? &g->tensors[i] : NULL;
}

int64_t loom_gguf_tensor_nelements(const loom_gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}
