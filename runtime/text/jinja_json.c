/*
 * runtime/text/jinja_json.c — JSON in and out with Python's json module
 * semantics: json.loads (ints stay ints, floats floats, object key order
 * kept, the last of duplicate keys wins in the first's place, NaN /
 * Infinity accepted) and json.dumps (what transformers' tojson calls:
 * ensure_ascii, indent, separators, sort_keys; floats as repr()).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

#define MAX_JSON_DEPTH 512

typedef struct {
    jarena *a;
    const char *s;
    size_t n, i;
    char *err;
    size_t errn;
} jparser;

static bool perr(jparser *p, const char *what) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n') line++, col = 1;
        else col++;
    }
    snprintf(p->err, p->errn, "%s: line %zu column %zu (char %zu)", what, line, col, p->i);
    return false;
}

static void ws(jparser *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int hex4(const char *s) {
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static bool parse_string(jparser *p, jv *out) {
    p->i++; /* opening quote */
    jbuf b = {.a = p->a};
    for (;;) {
        if (p->i >= p->n) return perr(p, "Unterminated string starting at");
        unsigned char c = (unsigned char)p->s[p->i];
        if (c == '"') {
            p->i++;
            break;
        }
        if (c < 0x20) return perr(p, "Invalid control character at");
        if (c != '\\') {
            size_t st = p->i;
            uint32_t cp;
            int k = loom_utf8_decode((const uint8_t *)p->s + st, p->n - st, &cp);
            if (k <= 0) return perr(p, "invalid UTF-8 at");
            jb_put(&b, p->s + st, (size_t)k);
            p->i += (size_t)k;
            continue;
        }
        if (p->i + 1 >= p->n) return perr(p, "Unterminated string starting at");
        char e = p->s[p->i + 1];
        p->i += 2;
        switch (e) {
        case '"': jb_putc(&b, '"'); break;
        case '\\': jb_putc(&b, '\\'); break;
        case '/': jb_putc(&b, '/'); break;
        case 'b': jb_putc(&b, 8); break;
        case 'f': jb_putc(&b, 12); break;
        case 'n': jb_putc(&b, 10); break;
        case 'r': jb_putc(&b, 13); break;
        case 't': jb_putc(&b, 9); break;
        case 'u': {
            int v = p->i + 4 <= p->n ? hex4(p->s + p->i) : -1;
            if (v < 0) return perr(p, "Invalid \\uXXXX escape");
            p->i += 4;
            uint32_t cp = (uint32_t)v;
            if (cp >= 0xD800 && cp <= 0xDBFF && p->i + 6 <= p->n && p->s[p->i] == '\\' && p->s[p->i + 1] == 'u') {
                int lo = hex4(p->s + p->i + 2);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                    p->i += 6;
                }
            }
            char u[4];
            jb_put(&b, u, (size_t)loom_utf8_encode(cp, u)); /* a lone surrogate becomes U+FFFD */
            break;
        }
        default: p->i -= 1; return perr(p, "Invalid \\escape");
        }
    }
    if (b.fail) return perr(p, "out of memory");
    *out = jb_str(&b, 0);
    return true;
}

static bool parse_value(jparser *p, jv *out, int depth);

static bool parse_number(jparser *p, jv *out) {
    size_t st = p->i;
    if (p->s[p->i] == '-') p->i++;
    if (p->i + 8 <= p->n && !memcmp(p->s + p->i, "Infinity", 8)) {
        p->i += 8;
        *out = jv_float(p->s[st] == '-' ? -INFINITY : INFINITY);
        return true;
    }
    if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return perr(p, "Expecting value");
    if (p->s[p->i] == '0') p->i++;
    else
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    bool is_float = false;
    if (p->i + 1 < p->n && p->s[p->i] == '.' && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9') {
        is_float = true;
        p->i++;
        while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
    }
    if (p->i < p->n && (p->s[p->i] == 'e' || p->s[p->i] == 'E')) {
        size_t e = p->i + 1;
        if (e < p->n && (p->s[e] == '+' || p->s[e] == '-')) e++;
        if (e < p->n && p->s[e] >= '0' && p->s[e] <= '9') {
            is_float = true;
            p->i = e;
            while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') p->i++;
        }
    }
    char buf[400];
    size_t len = p->i - st;
    if (len >= sizeof buf) return perr(p, "number too long");
    memcpy(buf, p->s + st, len);
    buf[len] = 0;
    if (is_float) {
        *out = jv_float(strtod(buf, NULL));
        return true;
    }
    char *end;
    long long v = strtoll(buf, &end, 10);
    if ((v == LLONG_MAX || v == LLONG_MIN) && strcmp(buf, v == LLONG_MAX ? "9223372036854775807" : "-9223372036854775808"))
        return perr(p, "integer out of the 64-bit range");
    *out = jv_int(v);
    return true;
}

static bool parse_value(jparser *p, jv *out, int depth) {
    if (depth > MAX_JSON_DEPTH) return perr(p, "JSON nests too deeply");
    ws(p);
    if (p->i >= p->n) return perr(p, "Expecting value");
    char c = p->s[p->i];
    if (c == '"') return parse_string(p, out);
    if (c == '{') {
        p->i++;
        jdict *d = jd_new(p->a, 0);
        if (!d) return perr(p, "out of memory");
        ws(p);
        if (p->i < p->n && p->s[p->i] == '}') {
            p->i++;
            *out = jv_dict(d);
            return true;
        }
        for (;;) {
            ws(p);
            if (p->i >= p->n || p->s[p->i] != '"') return perr(p, "Expecting property name enclosed in double quotes");
            jv k, v;
            if (!parse_string(p, &k)) return false;
            ws(p);
            if (p->i >= p->n || p->s[p->i] != ':') return perr(p, "Expecting ':' delimiter");
            p->i++;
            if (!parse_value(p, &v, depth + 1)) return false;
            if (!jd_set(p->a, d, k, v)) return perr(p, "out of memory");
            ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->n && p->s[p->i] == '}') {
                p->i++;
                break;
            }
            return perr(p, "Expecting ',' delimiter");
        }
        *out = jv_dict(d);
        return true;
    }
    if (c == '[') {
        p->i++;
        jlist *l = ja_alloc(p->a, sizeof *l);
        if (!l) return perr(p, "out of memory");
        ws(p);
        if (p->i < p->n && p->s[p->i] == ']') {
            p->i++;
            *out = jv_list(l, 0);
            return true;
        }
        for (;;) {
            jv v;
            if (!parse_value(p, &v, depth + 1)) return false;
            if (l->n == l->cap) {
                uint32_t cap = l->cap ? l->cap * 2 : 4;
                jv *nv = ja_grow(p->a, l->v, l->cap * sizeof *nv, cap * sizeof *nv);
                if (!nv || cap > UINT32_MAX / 4) return perr(p, "out of memory");
                l->v = nv;
                l->cap = cap;
            }
            l->v[l->n++] = v;
            ws(p);
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                continue;
            }
            if (p->i < p->n && p->s[p->i] == ']') {
                p->i++;
                break;
            }
            return perr(p, "Expecting ',' delimiter");
        }
        *out = jv_list(l, 0);
        return true;
    }
    static const struct {
        const char *w;
        int t;
    } words[] = {{"true", 1}, {"false", 2}, {"null", 3}, {"NaN", 4}};
    for (size_t k = 0; k < 4; k++) {
        size_t m = strlen(words[k].w);
        if (p->i + m <= p->n && !memcmp(p->s + p->i, words[k].w, m)) {
            p->i += m;
            *out = words[k].t == 1 ? jv_bool(true) : words[k].t == 2 ? jv_bool(false) : words[k].t == 3 ? jv_none() : jv_float(NAN);
            return true;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9') || c == 'I') return parse_number(p, out);
    return perr(p, "Expecting value");
}

bool jjson_parse(jarena *a, const char *s, size_t n, jv *out, char *err, size_t errn) {
    jparser p = {.a = a, .s = s, .n = n, .err = err, .errn = errn};
    if (!parse_value(&p, out, 0)) return false;
    ws(&p);
    if (p.i != n) return perr(&p, "Extra data");
    return true;
}

/* ---- json.dumps ---- */

static void dump_string(jv s, bool ensure_ascii, jbuf *b) {
    jb_putc(b, '"');
    for (size_t i = 0; i < s.n;) {
        size_t st = i;
        uint32_t c = u8_next(s.u.s, s.n, &i);
        switch (c) {
        case '"': jb_puts(b, "\\\""); continue;
        case '\\': jb_puts(b, "\\\\"); continue;
        case '\n': jb_puts(b, "\\n"); continue;
        case '\r': jb_puts(b, "\\r"); continue;
        case '\t': jb_puts(b, "\\t"); continue;
        case '\b': jb_puts(b, "\\b"); continue;
        case '\f': jb_puts(b, "\\f"); continue;
        }
        if (c < 0x20) {
            jb_printf(b, "\\u%04x", c);
        } else if (ensure_ascii && c > 0x7E) {
            if (c >= 0x10000) {
                uint32_t v = c - 0x10000;
                jb_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                jb_printf(b, "\\u%04x", c);
            }
        } else {
            jb_put(b, s.u.s + st, i - st);
        }
    }
    jb_putc(b, '"');
}

static void newline(const jjson_opts *o, int level, jbuf *b) {
    jb_putc(b, '\n');
    for (int i = 0; i < level; i++) jb_put(b, o->indent, o->indent_n);
}

static bool dump(jx *x, const jnode *at, jv v, const jjson_opts *o, jbuf *b, int level) {
    if (level > MAX_JSON_DEPTH) return jx_fail(x, at, "maximum recursion depth exceeded while encoding a JSON object");
    char num[40];
    switch (v.t) {
    case JV_NONE: jb_puts(b, "null"); return true;
    case JV_BOOL: jb_puts(b, v.u.b ? "true" : "false"); return true;
    case JV_INT: jb_printf(b, "%lld", (long long)v.u.i); return true;
    case JV_FLOAT:
        if (isnan(v.u.f)) jb_puts(b, "NaN");
        else if (isinf(v.u.f)) jb_puts(b, v.u.f > 0 ? "Infinity" : "-Infinity");
        else py_float_repr(v.u.f, num), jb_puts(b, num);
        return true;
    case JV_STR: dump_string(v, o->ensure_ascii, b); return true;
    case JV_LIST:
        if (!(v.fl & JF_GEN)) {
            jlist *l = v.u.l;
            if (!l->n) {
                jb_puts(b, "[]");
                return true;
            }
            jb_putc(b, '[');
            for (uint32_t i = 0; i < l->n; i++) {
                if (i) jb_put(b, o->item_sep, o->item_sep_n);
                if (o->indent) newline(o, level + 1, b);
                if (!dump(x, at, l->v[i], o, b, level + 1)) return false;
            }
            if (o->indent) newline(o, level, b);
            jb_putc(b, ']');
            return true;
        }
        break;
    case JV_DICT: {
        jdict *d = v.u.d;
        if (!d->n) {
            jb_puts(b, "{}");
            return true;
        }
        uint32_t *order = ja_alloc(x->a, d->n * sizeof *order);
        if (!order) return jx_alloc_failed(x, at);
        for (uint32_t i = 0; i < d->n; i++) order[i] = i;
        if (o->sort_keys) { /* insertion sort keeps it stable; the work is counted */
            if (!jx_step(x, at, (uint64_t)d->n * d->n / 1024)) return false;
            for (uint32_t i = 1; i < d->n; i++) {
                uint32_t k = order[i], j = i;
                while (j > 0) {
                    bool lt;
                    if (!jv_lt(x, at, d->k[k], d->k[order[j - 1]], &lt)) return false;
                    if (!lt) break;
                    order[j] = order[j - 1];
                    j--;
                }
                order[j] = k;
            }
        }
        jb_putc(b, '{');
        for (uint32_t i = 0; i < d->n; i++) {
            jv k = d->k[order[i]];
            if (i) jb_put(b, o->item_sep, o->item_sep_n);
            if (o->indent) newline(o, level + 1, b);
            switch (k.t) {
            case JV_STR: dump_string(k, o->ensure_ascii, b); break;
            case JV_INT: jb_printf(b, "\"%lld\"", (long long)k.u.i); break;
            case JV_BOOL: jb_puts(b, k.u.b ? "\"true\"" : "\"false\""); break;
            case JV_NONE: jb_puts(b, "\"null\""); break;
            case JV_FLOAT:
                jb_putc(b, '"');
                if (!dump(x, at, k, o, b, level + 1)) return false;
                jb_putc(b, '"');
                break;
            default: return jx_fail(x, at, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
            }
            jb_put(b, o->key_sep, o->key_sep_n);
            if (!dump(x, at, d->v[order[i]], o, b, level + 1)) return false;
        }
        if (o->indent) newline(o, level, b);
        jb_putc(b, '}');
        return true;
    }
    default: break;
    }
    if (v.t == JV_UNDEF && v.u.s && (v.fl & JF_SECURITY)) return jv_undef_fail(x, at, v);
    return jx_fail(x, at, "Object of type %s is not JSON serializable", jv_type_name(v));
}

bool jjson_dump(jx *x, const jnode *at, jv v, const jjson_opts *o, jbuf *b) {
    if (!dump(x, at, v, o, b, 0)) return false;
    if (b->fail) return jx_alloc_failed(x, at);
    return true;
}
