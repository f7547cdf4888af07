/*
 * tests/fuzz_gguf.c — libFuzzer target for the GGUF reader.
 *
 * Parses the input with loom_gguf_open_memory(); on success walks every KV
 * (recursively into nested arrays, reading every element and string byte),
 * every tensor (first and last data byte), and looks each key and name up
 * through the typed getters and indexes, so the sanitizers see any read the
 * reader let through. A rejected input must come with a message that names
 * the buffer and an offset.
 *
 * Seeds: tests/fuzz/gguf/ (written by tests/test_gguf.c; see the test
 * `fuzz_seeds_are_current`).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf.h"

static volatile uint64_t sink;

static void walk_value(const loom_gguf_value *v) {
    switch (v->type) {
    case LOOM_GGUF_STRING:
        for (uint64_t i = 0; i < v->v.str.len; i++) sink += (uint8_t)v->v.str.ptr[i];
        break;
    case LOOM_GGUF_ARRAY:
        if (v->v.arr.elem == LOOM_GGUF_STRING) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                const loom_str *s = &v->v.arr.strs[i];
                if (s->len) sink += (uint8_t)s->ptr[0] + (uint8_t)s->ptr[s->len - 1];
            }
        } else if (v->v.arr.elem == LOOM_GGUF_ARRAY) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                if (v->v.arr.items[i].type != LOOM_GGUF_ARRAY) abort();
                walk_value(&v->v.arr.items[i]);
            }
        } else {
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                sink += (uint64_t)loom_gguf_arr_int(v, i) + (loom_gguf_arr_float(v, i) > 0);
        }
        break;
    default: sink += v->v.u64; break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    loom_gguf *g = NULL;
    loom_status st = loom_gguf_open_memory(data, size, "fuzz.gguf", &g);
    if (st) {
        if (g || strncmp(loom_status_message(st), "fuzz.gguf: offset ", 18) != 0) abort();
        loom_status_free(st);
        return 0;
    }
    sink += loom_gguf_header_hash(g) + loom_gguf_version(g) + loom_gguf_alignment(g);
    if (loom_gguf_data_offset(g) > loom_gguf_file_size(g)) abort();
    for (int64_t i = 0; i < loom_gguf_n_kv(g); i++) {
        const loom_gguf_kv *kv = loom_gguf_kv_at(g, i);
        if (loom_gguf_get(g, kv->key) != &kv->value) abort(); /* keys are unique */
        walk_value(&kv->value);
        int64_t iv;
        double fv;
        bool bv;
        loom_str sv;
        if (loom_gguf_get_int(g, kv->key, &iv)) sink += (uint64_t)iv;
        if (loom_gguf_get_float(g, kv->key, &fv)) sink += (uint64_t)(fv != fv);
        if (loom_gguf_get_bool(g, kv->key, &bv)) sink += bv;
        if (loom_gguf_get_str(g, kv->key, &sv)) sink += sv.len;
        if (loom_gguf_get_arr(g, kv->key, -1)) sink += 1;
    }
    const uint8_t *end = data + size;
    for (int64_t i = 0; i < loom_gguf_n_tensors(g); i++) {
        const loom_gguf_tensor *t = loom_gguf_tensor_at(g, i);
        if (loom_gguf_find_tensor(g, t->name) != t) abort();
        if (t->n_dims < 1 || t->n_dims > 4 || !loom_type_info((uint32_t)t->type)) abort();
        const uint8_t *p = t->data;
        if (p < data || p > end || t->nbytes > (size_t)(end - p)) abort();
        if (t->nbytes) sink += p[0] + p[t->nbytes - 1];
        sink += (uint64_t)loom_gguf_tensor_nelements(t);
    }
    if (loom_gguf_kv_at(g, loom_gguf_n_kv(g)) || loom_gguf_tensor_at(g, loom_gguf_n_tensors(g))) abort();
    loom_gguf_free(g);
    return 0;
}
