/*
 * runtime/text/jinja_value.c — the arena and Python's value semantics:
 * truth, equality, ordering, str() and repr() of values.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

/* ---- arena ---- */

struct jchunk {
    jchunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    jchunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 32768 ? n : 32768;
        if (a->limit && (a->total + cap + sizeof *c > a->limit || cap > a->limit)) {
            a->over = true;
            return NULL;
        }
        c = malloc(sizeof *c + cap);
        if (!c) {
            a->over = true;
            return NULL;
        }
        c->used = 0;
        c->cap = cap;
        a->total += cap + sizeof *c;
        /* a big allocation gets a chunk of its own behind the current one */
        if (a->head && n > 32768) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

void *ja_grow(jarena *a, void *old, size_t old_n, size_t new_n) {
    if (new_n <= old_n) return old;
    /* the last allocation of the head chunk grows in place */
    jchunk *c = a->head;
    size_t old_r = (old_n + 15) & ~(size_t)15, new_r = (new_n + 15) & ~(size_t)15;
    if (old && c && (unsigned char *)old + old_r == c->data + c->used && c->used - old_r + new_r <= c->cap) {
        memset(c->data + c->used, 0, new_r - old_r);
        c->used += new_r - old_r;
        return old;
    }
    void *p = ja_alloc(a, new_n);
    if (p && old_n) memcpy(p, old, old_n);
    return p;
}

char *ja_strndup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (p && n) memcpy(p, s, n);
    return p;
}

void ja_free(jarena *a) {
    for (jchunk *c = a->head, *nx; c; c = nx) {
        nx = c->next;
        free(c);
    }
    a->head = NULL;
    a->total = 0;
}

/* ---- byte buffers ---- */

void jb_put(jbuf *b, const char *s, size_t n) {
    if (b->fail || n == 0) return;
    if (b->cap - b->n < n + 1) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n + 1) cap *= 2;
        char *p = ja_grow(b->a, b->p, b->cap, cap);
        if (!p) {
            b->fail = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jb_puts(jbuf *b, const char *s) { jb_put(b, s, strlen(s)); }
void jb_putc(jbuf *b, char c) { jb_put(b, &c, 1); }

void jb_printf(jbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof tmp) {
        jb_put(b, tmp, (size_t)k);
        return;
    }
    char *big = malloc((size_t)k + 1);
    if (!big) {
        b->fail = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    jb_put(b, big, (size_t)k);
    free(big);
}

jv jb_str(jbuf *b, uint8_t fl) { return jv_strv(b->p ? b->p : "", (uint32_t)b->n, fl); }

/* ---- construction ---- */

jv jv_str(jx *x, const char *s, size_t n) {
    char *p = ja_strndup(x->a, s, n);
    return p ? jv_strv(p, (uint32_t)n, 0) : jv_strv("", 0, 0);
}

jv jv_undef_msg(jx *x, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    jv u = jv_undef();
    u.u.s = ja_strndup(x->a, tmp, strlen(tmp));
    return u;
}

jlist *jl_new(jx *x, uint32_t cap) {
    jlist *l = ja_alloc(x->a, sizeof *l);
    if (!l) return NULL;
    if (cap) {
        l->v = ja_alloc(x->a, cap * sizeof *l->v);
        if (!l->v) return NULL;
        l->cap = cap;
    }
    return l;
}

bool jl_push(jx *x, jlist *l, jv v) {
    if (l->n == l->cap) {
        if (l->cap >= UINT32_MAX / 4) return false;
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        jv *p = ja_grow(x->a, l->v, l->cap * sizeof *p, cap * sizeof *p);
        if (!p) return false;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return true;
}

jv jv_list(jlist *l, uint8_t fl) { return (jv){.t = JV_LIST, .fl = fl, .u.l = l}; }
jv jv_dict(jdict *d) { return (jv){.t = JV_DICT, .u.d = d}; }

jobj *jo_new(jx *x, int kind) {
    jobj *o = ja_alloc(x->a, sizeof *o);
    if (o) o->kind = (uint8_t)kind;
    return o;
}

/* ---- dicts: insertion-ordered, hashed once they grow ---- */

bool jv_hashable(jv v) { return v.t != JV_LIST || (v.fl & JF_TUPLE); }

static uint64_t jv_hash_depth(jv v, int depth);
static uint64_t jv_hash(jv v) { return jv_hash_depth(v, 0); }

static uint64_t jv_hash_depth(jv v, int depth) {
    if (depth > 256) return 0;
    switch (v.t) {
    case JV_NONE: return 0x9e3779b97f4a7c15ull;
    case JV_BOOL: return (uint64_t)v.u.b;
    case JV_INT: return (uint64_t)v.u.i;
    case JV_FLOAT:
        if (v.u.f == floor(v.u.f) && fabs(v.u.f) < 9e18) return (uint64_t)(int64_t)v.u.f;
        {
            uint64_t h;
            memcpy(&h, &v.u.f, sizeof h);
            return h * 0x9e3779b97f4a7c15ull;
        }
    case JV_STR: {
        uint64_t h = 1469598103934665603ull;
        for (uint32_t i = 0; i < v.n; i++) h = (h ^ (unsigned char)v.u.s[i]) * 1099511628211ull;
        return h;
    }
    case JV_LIST: {
        uint64_t h = 7;
        for (uint32_t i = 0; i < v.u.l->n; i++) h = h * 31 + jv_hash_depth(v.u.l->v[i], depth + 1);
        return h;
    }
    default: return (uint64_t)(uintptr_t)v.u.o;
    }
}

jdict *jd_new(jarena *a, uint32_t cap) {
    jdict *d = ja_alloc(a, sizeof *d);
    if (!d) return NULL;
    if (cap) {
        d->k = ja_alloc(a, cap * sizeof *d->k);
        d->v = ja_alloc(a, cap * sizeof *d->v);
        if (!d->k || !d->v) return NULL;
        d->cap = cap;
    }
    return d;
}

static bool jd_reindex(jarena *a, jdict *d) {
    uint32_t cap = 16;
    while (cap < d->n * 2) cap *= 2;
    uint32_t *ix = ja_alloc(a, cap * sizeof *ix);
    if (!ix) return false;
    for (uint32_t i = 0; i < d->n; i++) {
        uint32_t h = (uint32_t)jv_hash(d->k[i]) & (cap - 1);
        while (ix[h]) h = (h + 1) & (cap - 1);
        ix[h] = i + 1;
    }
    d->index = ix;
    d->index_cap = cap;
    return true;
}

static int64_t jd_find(const jdict *d, jv k) {
    if (d->index) {
        uint32_t h = (uint32_t)jv_hash(k) & (d->index_cap - 1);
        for (; d->index[h]; h = (h + 1) & (d->index_cap - 1))
            if (jv_eq(d->k[d->index[h] - 1], k)) return d->index[h] - 1;
        return -1;
    }
    for (uint32_t i = 0; i < d->n; i++)
        if (jv_eq(d->k[i], k)) return i;
    return -1;
}

bool jd_get(const jdict *d, jv k, jv *out) {
    int64_t i = jd_find(d, k);
    if (i < 0) return false;
    *out = d->v[i];
    return true;
}

bool jd_get_str(const jdict *d, const char *k, size_t n, jv *out) { return jd_get(d, jv_strv(k, (uint32_t)n, 0), out); }

bool jd_set(jarena *a, jdict *d, jv k, jv v) {
    int64_t i = jd_find(d, k);
    if (i >= 0) {
        d->v[i] = v;
        return true;
    }
    if (d->n == d->cap) {
        if (d->cap >= UINT32_MAX / 4) return false;
        uint32_t cap = d->cap ? d->cap * 2 : 4;
        jv *nk = ja_grow(a, d->k, d->cap * sizeof *nk, cap * sizeof *nk);
        jv *nv = nk ? ja_grow(a, d->v, d->cap * sizeof *nv, cap * sizeof *nv) : NULL;
        if (!nv) return false;
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    if (d->n > 8 && (!d->index || d->n * 2 > d->index_cap)) return jd_reindex(a, d);
    if (d->index) {
        uint32_t h = (uint32_t)jv_hash(k) & (d->index_cap - 1);
        while (d->index[h]) h = (h + 1) & (d->index_cap - 1);
        d->index[h] = d->n;
    }
    return true;
}

/* ---- Python semantics ---- */

bool jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0;
    case JV_STR: return v.n > 0;
    case JV_LIST: return (v.fl & JF_GEN) || v.u.l->n > 0;
    case JV_DICT: return v.u.d->n > 0;
    default: return true;
    }
}

const char *jv_type_name(jv v) {
    switch (v.t) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return v.fl & JF_MARKUP ? "Markup" : "str";
    case JV_LIST: return v.fl & JF_GEN ? "generator" : v.fl & JF_TUPLE ? "tuple" : "list";
    case JV_DICT: return "dict";
    }
    switch (v.u.o->kind) {
    case JO_NS: return "Namespace";
    case JO_MACRO: return "Macro";
    case JO_LOOP: return "LoopContext";
    case JO_CYCLER: return "Cycler";
    case JO_JOINER: return "Joiner";
    case JO_METHOD: return "builtin_function_or_method";
    default: return "function";
    }
}

static double num(jv v) { return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b; }

static int jv_depth_eq(jv a, jv b, int depth);

bool jv_eq(jv a, jv b) { return jv_depth_eq(a, b, 0) > 0; }

static int jv_depth_eq(jv a, jv b, int depth) {
    if (depth > 256) return 0;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) return num(a) == num(b);
        int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b;
        return x == y;
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case JV_UNDEF:
    case JV_NONE: return 1;
    case JV_STR: return a.n == b.n && !memcmp(a.u.s, b.u.s, a.n);
    case JV_LIST:
        if ((a.fl & (JF_TUPLE | JF_GEN)) != (b.fl & (JF_TUPLE | JF_GEN))) return 0;
        if (a.fl & JF_GEN) return a.u.l == b.u.l;
        if (a.u.l->n != b.u.l->n) return 0;
        for (uint32_t i = 0; i < a.u.l->n; i++)
            if (jv_depth_eq(a.u.l->v[i], b.u.l->v[i], depth + 1) <= 0) return 0;
        return 1;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (uint32_t i = 0; i < a.u.d->n; i++) {
            jv o;
            if (!jd_get(b.u.d, a.u.d->k[i], &o) || jv_depth_eq(a.u.d->v[i], o, depth + 1) <= 0) return 0;
        }
        return 1;
    case JV_OBJ:
        if (a.u.o->kind == JO_METHOD && b.u.o->kind == JO_METHOD)
            return a.u.o->u.func.fn == b.u.o->u.func.fn && jv_depth_eq(a.u.o->u.func.self, b.u.o->u.func.self, depth + 1);
        return a.u.o == b.u.o;
    }
    return 0;
}

static const char *op_sym(int op) { return op == OP_LT ? "<" : op == OP_LE ? "<=" : op == OP_GT ? ">" : ">="; }

static bool lt_depth(jx *x, const jnode *at, jv a, jv b, bool *out, int depth) {
    if (depth > 256) return jx_fail(x, at, "maximum recursion depth exceeded in comparison");
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t == JV_FLOAT || b.t == JV_FLOAT) *out = num(a) < num(b);
        else *out = (a.t == JV_INT ? a.u.i : a.u.b) < (b.t == JV_INT ? b.u.i : b.u.b);
        return true;
    }
    if (a.t == JV_STR && b.t == JV_STR) { /* UTF-8 byte order is code point order */
        size_t m = a.n < b.n ? a.n : b.n;
        int c = memcmp(a.u.s, b.u.s, m);
        *out = c < 0 || (c == 0 && a.n < b.n);
        return true;
    }
    if (a.t == JV_LIST && b.t == JV_LIST && !((a.fl | b.fl) & JF_GEN) && (a.fl & JF_TUPLE) == (b.fl & JF_TUPLE)) {
        jlist *p = a.u.l, *q = b.u.l;
        for (uint32_t i = 0; i < p->n && i < q->n; i++) {
            if (jv_eq(p->v[i], q->v[i])) continue;
            return lt_depth(x, at, p->v[i], q->v[i], out, depth + 1);
        }
        *out = p->n < q->n;
        return true;
    }
    if (a.t == JV_UNDEF || b.t == JV_UNDEF) return jv_undef_fail(x, at, a.t == JV_UNDEF ? a : b);
    return jx_fail(x, at, "'<' not supported between instances of '%s' and '%s'", jv_type_name(a), jv_type_name(b));
}

bool jv_lt(jx *x, const jnode *at, jv a, jv b, bool *out) { return lt_depth(x, at, a, b, out, 0); }

bool jv_compare(jx *x, const jnode *at, int op, jv a, jv b, bool *out) {
    switch (op) {
    case OP_EQ:
    case OP_NE:
        /* comparing big containers is work too */
        if ((a.t == JV_LIST || a.t == JV_DICT) && a.t == b.t &&
            !jx_step(x, at, (a.t == JV_LIST ? a.u.l->n : a.u.d->n) / 64))
            return false;
        *out = jv_eq(a, b) == (op == OP_EQ);
        return true;
    case OP_IN:
    case OP_NOTIN: {
        bool in = false;
        if (b.t == JV_STR) {
            if (a.t != JV_STR) {
                if (a.t == JV_UNDEF) return jv_undef_fail(x, at, a);
                return jx_fail(x, at, "'in <string>' requires string as left operand, not %s", jv_type_name(a));
            }
            if (!jstr_contains(x, at, b, a, &in)) return false;
        } else if (b.t == JV_DICT) {
            if (!jv_hashable(a)) return jx_fail(x, at, "unhashable type: '%s'", jv_type_name(a));
            jv o;
            in = jd_get(b.u.d, a, &o);
        } else if (b.t == JV_LIST || b.t == JV_UNDEF) {
            jlist *l;
            if (!jv_iter(x, at, b, &l)) return false;
            if (!jx_step(x, at, l->n / 64)) return false;
            for (uint32_t i = 0; i < l->n && !in; i++) in = jv_eq(l->v[i], a);
        } else {
            return jx_fail(x, at, "argument of type '%s' is not iterable", jv_type_name(b));
        }
        *out = op == OP_IN ? in : !in;
        return true;
    }
    }
    bool r;
    bool orderable = (jv_is_num(a) && jv_is_num(b)) || (a.t == JV_STR && b.t == JV_STR) ||
                     (a.t == JV_LIST && b.t == JV_LIST && !((a.fl | b.fl) & JF_GEN) && (a.fl & JF_TUPLE) == (b.fl & JF_TUPLE));
    if (!orderable && a.t != JV_UNDEF && b.t != JV_UNDEF)
        return jx_fail(x, at, "'%s' not supported between instances of '%s' and '%s'", op_sym(op), jv_type_name(a),
                       jv_type_name(b));
    if (op == OP_LT || op == OP_GE) {
        if (!jv_lt(x, at, a, b, &r)) return false;
        *out = op == OP_LT ? r : !r;
        /* Python: a >= b is b <= a; for numbers, strings and sequences this is !(a < b) except NaN */
        if (op == OP_GE && jv_is_num(a) && jv_is_num(b)) *out = num(a) >= num(b);
    } else {
        if (!jv_lt(x, at, b, a, &r)) return false;
        *out = op == OP_GT ? r : !r;
        if (op == OP_LE && jv_is_num(a) && jv_is_num(b)) *out = num(a) <= num(b);
    }
    return true;
}

/* ---- str() and repr() ---- */

void py_float_repr(double f, char out[32]) {
    if (isnan(f)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(f)) {
        strcpy(out, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0) {
        strcpy(out, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    char e[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(e, sizeof e, "%.*e", prec - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e = "[-]d.ddde[+-]XX": digits and decimal exponent */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *p = e + neg;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = exp10 + 1; /* digits d1 d2 ... with the point after decpt of them */
    char *o = out;
    if (neg) *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        } else {
            for (int i = 0; i < decpt; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > decpt)
                for (int i = decpt; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        snprintf(o, 12, "e%c%02d", exp10 < 0 ? '-' : '+', (exp10 < 0 ? -exp10 : exp10) % 1000);
    }
}

/* Python's str.isprintable() for one code point (approximated outside the
 * common blocks: unassigned code points count as printable). */
static bool py_printable(uint32_t c) {
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
    if (c == 0x1680 || (c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x206F))
        return false;
    if (c == 0x3000 || c == 0xFEFF || (c >= 0xD800 && c <= 0xDFFF) || (c >= 0xE000 && c <= 0xF8FF)) return false;
    if (c == 0xFFF9 || c == 0xFFFA || c == 0xFFFB || c >= 0xF0000) return false;
    return true;
}

static void repr_str(jbuf *b, jv s) {
    bool sq = memchr(s.u.s, '\'', s.n) != NULL, dq = memchr(s.u.s, '"', s.n) != NULL;
    char q = sq && !dq ? '"' : '\'';
    if (s.fl & JF_MARKUP) jb_puts(b, "Markup(");
    jb_putc(b, q);
    for (size_t i = 0; i < s.n;) {
        size_t st = i;
        uint32_t c = u8_next(s.u.s, s.n, &i);
        if (c == (uint32_t)q || c == '\\') {
            jb_putc(b, '\\');
            jb_putc(b, (char)c);
        } else if (c == '\n') {
            jb_puts(b, "\\n");
        } else if (c == '\r') {
            jb_puts(b, "\\r");
        } else if (c == '\t') {
            jb_puts(b, "\\t");
        } else if (!py_printable(c)) {
            if (c < 0x100) jb_printf(b, "\\x%02x", c);
            else if (c < 0x10000) jb_printf(b, "\\u%04x", c);
            else jb_printf(b, "\\U%08x", c);
        } else {
            jb_put(b, s.u.s + st, i - st);
        }
    }
    jb_putc(b, q);
    if (s.fl & JF_MARKUP) jb_putc(b, ')');
}

static bool repr_inner(jx *x, const jnode *at, jv v, jbuf *b, int depth);

/* Python's repr with its guard against cycles (only namespaces make them) */
bool jv_repr(jx *x, const jnode *at, jv v, jbuf *b, int depth) {
    if (depth > 256) return jx_fail(x, at, "maximum recursion depth exceeded while getting the repr of an object");
    const void *c = v.t == JV_LIST && !(v.fl & JF_GEN) ? (const void *)v.u.l : v.t == JV_DICT ? (const void *)v.u.d : NULL;
    if (!c) return repr_inner(x, at, v, b, depth);
    for (int i = 0; i < x->repr_n; i++) {
        if (x->repr_stack[i] != c) continue;
        jb_puts(b, v.t == JV_DICT ? "{...}" : v.fl & JF_TUPLE ? "(...)" : "[...]");
        return true;
    }
    if (x->repr_n >= (int)(sizeof x->repr_stack / sizeof x->repr_stack[0]))
        return jx_fail(x, at, "maximum recursion depth exceeded while getting the repr of an object");
    x->repr_stack[x->repr_n++] = c;
    bool ok = repr_inner(x, at, v, b, depth);
    x->repr_n--;
    return ok;
}

static bool repr_inner(jx *x, const jnode *at, jv v, jbuf *b, int depth) {
    char tmp[64];
    switch (v.t) {
    case JV_UNDEF: jb_puts(b, "Undefined"); return true;
    case JV_NONE: jb_puts(b, "None"); return true;
    case JV_BOOL: jb_puts(b, v.u.b ? "True" : "False"); return true;
    case JV_INT: jb_printf(b, "%lld", (long long)v.u.i); return true;
    case JV_FLOAT: py_float_repr(v.u.f, tmp); jb_puts(b, tmp); return true;
    case JV_STR: repr_str(b, v); return true;
    case JV_LIST: {
        if (v.fl & JF_GEN) {
            jb_puts(b, "<generator object>");
            return true;
        }
        bool tup = v.fl & JF_TUPLE;
        jb_putc(b, tup ? '(' : '[');
        for (uint32_t i = 0; i < v.u.l->n; i++) {
            if (i) jb_puts(b, ", ");
            if (!jv_repr(x, at, v.u.l->v[i], b, depth + 1)) return false;
        }
        if (tup && v.u.l->n == 1) jb_putc(b, ',');
        jb_putc(b, tup ? ')' : ']');
        return true;
    }
    case JV_DICT:
        jb_putc(b, '{');
        for (uint32_t i = 0; i < v.u.d->n; i++) {
            if (i) jb_puts(b, ", ");
            if (!jv_repr(x, at, v.u.d->k[i], b, depth + 1)) return false;
            jb_puts(b, ": ");
            if (!jv_repr(x, at, v.u.d->v[i], b, depth + 1)) return false;
        }
        jb_putc(b, '}');
        return true;
    }
    jobj *o = v.u.o;
    switch (o->kind) {
    case JO_NS:
        jb_puts(b, "<Namespace ");
        if (!jv_repr(x, at, jv_dict(o->u.ns), b, depth + 1)) return false;
        jb_putc(b, '>');
        return true;
    case JO_MACRO: jb_printf(b, "<Macro '%s'>", o->u.macro.name); return true;
    case JO_LOOP: jb_printf(b, "<LoopContext %u/%u>", o->u.loop->i + 1, o->u.loop->items->n); return true;
    case JO_METHOD: jb_printf(b, "<built-in method %s of %s object>", o->u.func.name, jv_type_name(o->u.func.self)); return true;
    case JO_FUNC: jb_printf(b, "<function %s>", o->u.func.name); return true;
    default: jb_printf(b, "<%s object>", jv_type_name(v)); return true;
    }
}

bool jv_to_str(jx *x, const jnode *at, jv v, jbuf *b) {
    if (v.t == JV_STR) {
        jb_put(b, v.u.s, v.n);
        return true;
    }
    if (v.t == JV_UNDEF) return true;
    return jv_repr(x, at, v, b, 0);
}

bool jv_stringify(jx *x, const jnode *at, jv v, jv *out) {
    if (v.t == JV_STR) {
        *out = v;
        return true;
    }
    jbuf b = {.a = x->a};
    if (!jv_to_str(x, at, v, &b)) return false;
    if (b.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&b, 0);
    return true;
}

bool jv_iter(jx *x, const jnode *at, jv v, jlist **out) {
    switch (v.t) {
    case JV_UNDEF: {
        static jlist empty;
        *out = &empty;
        return true;
    }
    case JV_LIST:
        if (v.fl & JF_GEN) { /* consumed: a second pass sees nothing */
            jlist *l = jl_new(x, 0);
            if (!l) return jx_alloc_failed(x, at);
            l->v = v.u.l->v ? v.u.l->v + v.u.l->pos : NULL;
            l->n = l->cap = v.u.l->n - v.u.l->pos;
            v.u.l->pos = v.u.l->n;
            *out = l;
            return true;
        }
        *out = v.u.l;
        return true;
    case JV_DICT: {
        jlist *l = jl_new(x, 0);
        if (!l) return jx_alloc_failed(x, at);
        l->v = v.u.d->k;
        l->n = l->cap = v.u.d->n;
        *out = l;
        return true;
    }
    case JV_STR: {
        jlist *l = jl_new(x, (uint32_t)u8_len(v.u.s, v.n));
        if (!l) return jx_alloc_failed(x, at);
        for (size_t i = 0; i < v.n;) {
            size_t st = i;
            u8_next(v.u.s, v.n, &i);
            l->v[l->n++] = jv_strv(v.u.s + st, (uint32_t)(i - st), v.fl & JF_MARKUP);
        }
        *out = l;
        return true;
    }
    default: break;
    }
    if (v.t == JV_UNDEF) return jv_undef_fail(x, at, v);
    return jx_fail(x, at, "'%s' object is not iterable", jv_type_name(v));
}

bool jv_undef_fail(jx *x, const jnode *at, jv v) {
    if (v.u.s) return jx_fail(x, at, "%s", v.u.s);
    return jx_fail(x, at, "undefined value");
}
