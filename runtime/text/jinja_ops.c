/*
 * runtime/text/jinja_ops.c — what jinja2's ImmutableSandboxedEnvironment
 * does for attribute and item access, slicing, arithmetic and calls.
 *
 * obj.name tries Python's attribute first (str / dict / list methods), then
 * obj["name"]; obj[key] tries the item first, then the attribute for string
 * keys. Names starting with "_" and methods that mutate (list.append,
 * dict.pop, ...) give an undefined value that raises SecurityError when
 * used, as jinja2's sandbox does. A miss is an undefined value that names
 * what was missing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

static const char *const STR_METHODS[] = {
    "capitalize", "casefold", "center", "count", "endswith", "find", "format", "index", "isalnum", "isalpha",
    "isdecimal", "isdigit", "islower", "isnumeric", "isspace", "isupper", "join", "ljust", "lower", "lstrip",
    "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit",
    "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill", NULL};
static const char *const DICT_METHODS[] = {"items", "keys", "values", "get", "copy", NULL};
static const char *const DICT_UNSAFE[] = {"pop", "popitem", "setdefault", "update", "clear", NULL};
static const char *const LIST_METHODS[] = {"index", "count", "copy", NULL};
static const char *const LIST_UNSAFE[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL};

static bool in_names(const char *const *names, const char *s, size_t n) {
    for (; *names; names++)
        if (strlen(*names) == n && !memcmp(*names, s, n)) return true;
    return false;
}

static const char *owner_repr(jv obj) {
    switch (obj.t) {
    case JV_NONE: return "None";
    case JV_STR: return obj.fl & JF_MARKUP ? "markupsafe.Markup object" : "str object";
    case JV_INT: return "int object";
    case JV_FLOAT: return "float object";
    case JV_BOOL: return "bool object";
    case JV_LIST: return obj.fl & JF_GEN ? "generator object" : obj.fl & JF_TUPLE ? "tuple object" : "list object";
    case JV_DICT: return "dict object";
    case JV_OBJ:
        if (obj.u.o->kind == JO_NS) return "transformers.utils.chat_template_utils.TemplateNamespace object";
        if (obj.u.o->kind == JO_LOOP) return "jinja2.runtime.LoopContext object";
        if (obj.u.o->kind == JO_MACRO) return "jinja2.runtime.Macro object";
        return "builtin_function_or_method object";
    }
    return "object";
}

static jv missing_attr(jx *x, jv obj, const char *name, size_t n) {
    return jv_undef_msg(x, "'%s' has no attribute '%.*s'", owner_repr(obj), (int)n, name);
}

static jv unsafe(jx *x, jv obj, const char *name, size_t n) {
    const char *tn = obj.t == JV_DICT ? "dict" : obj.t == JV_STR ? "str" : jv_type_name(obj);
    jv u = jv_undef_msg(x, "access to attribute '%.*s' of '%s' object is unsafe.", (int)n, name, tn);
    u.fl |= JF_SECURITY;
    return u;
}

/* ---- methods ---- */

typedef struct {
    const char *name;
    jv self;
} bound;

static bool method_call(jx *x, const jnode *at, jv self, const jargs *a, jv *out);

bool jx_make_method(jx *x, const jnode *at, jv self, const char *name, size_t n, jv *out) {
    jobj *o = jo_new(x, JO_METHOD);
    char *nm = o ? ja_strndup(x->a, name, n) : NULL;
    if (!nm) return jx_alloc_failed(x, at);
    o->u.func.fn = method_call;
    o->u.func.name = nm;
    o->u.func.self = self;
    out->t = JV_OBJ;
    out->fl = 0;
    out->u.o = o;
    return true;
}

/* self is the JO_METHOD object's bound value; the name picks the method */
static bool dict_method(jx *x, const jnode *at, jv d, const char *m, const jargs *a, jv *out) {
    static const char *const p_get[] = {"key", "default"};
    jv arg[2] = {jv_undef(), jv_undef()};
    if (!strcmp(m, "get")) {
        if (!jargs_bind(x, at, "get", a, p_get, 2, 1, arg)) return false;
        if (!jv_hashable(arg[0])) return jx_fail(x, at, "unhashable type: '%s'", jv_type_name(arg[0]));
        if (!jd_get(d.u.d, arg[0], out)) *out = arg[1].t == JV_UNDEF && !arg[1].u.s ? jv_none() : arg[1];
        return true;
    }
    if (!jargs_bind(x, at, m, a, NULL, 0, 0, arg)) return false;
    if (!strcmp(m, "copy")) {
        jdict *c = jd_new(x->a, d.u.d->n);
        for (uint32_t i = 0; c && i < d.u.d->n; i++)
            if (!jd_set(x->a, c, d.u.d->k[i], d.u.d->v[i])) c = NULL;
        if (!c) return jx_alloc_failed(x, at);
        *out = jv_dict(c);
        return true;
    }
    jlist *l = jl_new(x, d.u.d->n);
    if (!l) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < d.u.d->n; i++) {
        if (m[0] == 'k') {
            l->v[i] = d.u.d->k[i];
        } else if (m[0] == 'v') {
            l->v[i] = d.u.d->v[i];
        } else {
            jlist *pair = jl_new(x, 2);
            if (!pair) return jx_alloc_failed(x, at);
            pair->v[0] = d.u.d->k[i];
            pair->v[1] = d.u.d->v[i];
            pair->n = 2;
            l->v[i] = jv_list(pair, JF_TUPLE);
        }
    }
    l->n = d.u.d->n;
    *out = jv_list(l, 0);
    return true;
}

static bool list_method(jx *x, const jnode *at, jv l, const char *m, const jargs *a, jv *out) {
    static const char *const p_x[] = {"value"};
    jv arg[1] = {jv_undef()};
    if (!strcmp(m, "copy")) {
        if (!jargs_bind(x, at, m, a, NULL, 0, 0, arg)) return false;
        *out = l;
        return true;
    }
    if (!jargs_bind(x, at, m, a, p_x, 1, 1, arg)) return false;
    int64_t count = 0;
    for (uint32_t i = 0; i < l.u.l->n; i++) {
        if (!jv_eq(l.u.l->v[i], arg[0])) continue;
        if (m[0] == 'i') {
            *out = jv_int(i);
            return true;
        }
        count++;
    }
    if (m[0] == 'i') return jx_fail(x, at, "list.index(x): x not in list");
    *out = jv_int(count);
    return true;
}

static bool method_call(jx *x, const jnode *at, jv fn, const jargs *a, jv *out) {
    jobj *o = fn.u.o;
    jv self = o->u.func.self;
    const char *m = o->u.func.name;
    if (self.t == JV_STR) {
        bool found;
        if (!jstr_method(x, at, self, m, a, out, &found)) return false;
        if (found) return true;
    } else if (self.t == JV_DICT) {
        return dict_method(x, at, self, m, a, out);
    } else if (self.t == JV_LIST) {
        return list_method(x, at, self, m, a, out);
    } else if (jv_is_obj(self, JO_LOOP) || jv_is_obj(self, JO_CYCLER)) {
        return jloop_method(x, at, self, m, a, out);
    }
    return jx_fail(x, at, "'%s' object has no method '%s'", jv_type_name(self), m);
}

/* ---- attribute and item access ---- */

static bool attr_only(jx *x, const jnode *at, jv obj, const char *name, size_t n, jv *out, bool *found) {
    *found = true;
    if (n && name[0] == '_') {
        *out = unsafe(x, obj, name, n);
        return true;
    }
    switch (obj.t) {
    case JV_STR:
        if (in_names(STR_METHODS, name, n)) return jx_make_method(x, at, obj, name, n, out);
        break;
    case JV_DICT:
        if (in_names(DICT_METHODS, name, n)) return jx_make_method(x, at, obj, name, n, out);
        if (in_names(DICT_UNSAFE, name, n)) {
            *out = unsafe(x, obj, name, n);
            return true;
        }
        break;
    case JV_LIST:
        if (obj.fl & JF_GEN) break;
        if (in_names(LIST_METHODS, name, n) && !((obj.fl & JF_TUPLE) && name[0] == 'c' && name[1] == 'o' && n == 4))
            return jx_make_method(x, at, obj, name, n, out);
        if (!(obj.fl & JF_TUPLE) && in_names(LIST_UNSAFE, name, n)) {
            *out = unsafe(x, obj, name, n);
            return true;
        }
        break;
    case JV_OBJ:
        if (obj.u.o->kind == JO_NS) {
            if (jd_get_str(obj.u.o->u.ns, name, n, out)) return true;
            break;
        }
        if (obj.u.o->kind == JO_MACRO && n == 4 && !memcmp(name, "name", 4)) {
            *out = jv_str(x, obj.u.o->u.macro.name, strlen(obj.u.o->u.macro.name));
            return true;
        }
        return jloop_attr(x, at, obj, name, n, out, found);
    }
    *found = false;
    return true;
}

bool jv_getattr(jx *x, const jnode *at, jv obj, const char *name, size_t n, jv *out) {
    if (obj.t == JV_UNDEF) return jv_undef_fail(x, at, obj);
    bool found;
    if (!attr_only(x, at, obj, name, n, out, &found)) return false;
    if (found) return true;
    if (obj.t == JV_DICT && jd_get_str(obj.u.d, name, n, out)) return true;
    *out = missing_attr(x, obj, name, n);
    return true;
}

static bool index_of(jv key, int64_t len, int64_t *i) {
    if (key.t != JV_INT && key.t != JV_BOOL) return false;
    int64_t k = key.t == JV_INT ? key.u.i : key.u.b;
    if (k < 0) k += len;
    if (k < 0 || k >= len) return false;
    *i = k;
    return true;
}

bool jv_getitem(jx *x, const jnode *at, jv obj, jv key, jv *out) {
    if (obj.t == JV_UNDEF) return jv_undef_fail(x, at, obj);
    int64_t i;
    switch (obj.t) {
    case JV_DICT:
        if (jv_hashable(key) && jd_get(obj.u.d, key, out)) return true;
        break;
    case JV_LIST:
        if (!(obj.fl & JF_GEN) && index_of(key, obj.u.l->n, &i)) {
            *out = obj.u.l->v[i];
            return true;
        }
        break;
    case JV_STR:
        if (index_of(key, (int64_t)u8_len(obj.u.s, obj.n), &i)) {
            size_t from = u8_offset(obj.u.s, obj.n, (size_t)i), to = from;
            u8_next(obj.u.s, obj.n, &to);
            *out = jv_strv(obj.u.s + from, (uint32_t)(to - from), obj.fl & JF_MARKUP);
            return true;
        }
        break;
    }
    if (key.t == JV_STR) {
        bool found;
        if (!attr_only(x, at, obj, key.u.s, key.n, out, &found)) return false;
        if (found) return true;
        *out = missing_attr(x, obj, key.u.s, key.n);
        return true;
    }
    jbuf b = {.a = x->a};
    if (!jv_repr(x, at, key, &b, 0)) return false;
    *out = jv_undef_msg(x, "%s has no element %s", owner_repr(obj), b.p ? b.p : "");
    return true;
}

static bool slice_index(jv v, bool *given, int64_t *out) {
    *given = false;
    if (v.t == JV_NONE || (v.t == JV_UNDEF && !v.u.s)) return true;
    if (v.t == JV_INT) *out = v.u.i;
    else if (v.t == JV_BOOL) *out = v.u.b;
    else return false;
    *given = true;
    return true;
}

static bool slice_index(jv v, bool *given, int64_t *out);

bool jv_sliceable(jv obj, jv start, jv stop, jv step) {
    bool g;
    int64_t i;
    return (obj.t == JV_STR || (obj.t == JV_LIST && !(obj.fl & JF_GEN))) && slice_index(start, &g, &i) &&
           slice_index(stop, &g, &i) && slice_index(step, &g, &i);
}

/* obj[a:b:c] is Python's own subscript in jinja2 (not the sandbox's
 * getitem), so its errors are raised, not turned into undefined values. */
bool jv_slice(jx *x, const jnode *at, jv obj, jv start, jv stop, jv step, jv *out) {
    if (obj.t == JV_UNDEF) return jv_undef_fail(x, at, obj);
    if (obj.t == JV_DICT) return jx_fail(x, at, "unhashable type: 'slice'");
    if (obj.t != JV_STR && !(obj.t == JV_LIST && !(obj.fl & JF_GEN)))
        return jx_fail(x, at, "'%s' object is not subscriptable", jv_type_name(obj));
    int64_t a = 0, b = 0, s = 1;
    bool ga, gb, gs;
    if (!slice_index(start, &ga, &a) || !slice_index(stop, &gb, &b) || !slice_index(step, &gs, &s))
        return jx_fail(x, at, "slice indices must be integers or None or have an __index__ method");
    if (gs && s == 0) return jx_fail(x, at, "slice step cannot be zero");
    int64_t len = obj.t == JV_STR ? (int64_t)u8_len(obj.u.s, obj.n) : obj.u.l->n;
    /* PySlice_AdjustIndices */
    if (!ga) a = s < 0 ? len - 1 : 0;
    else if (a < 0) a = a + len < 0 ? (s < 0 ? -1 : 0) : a + len;
    else if (a >= len) a = s < 0 ? len - 1 : len;
    if (!gb) b = s < 0 ? -1 : len;
    else if (b < 0) b = b + len < 0 ? (s < 0 ? -1 : 0) : b + len;
    else if (b >= len) b = s < 0 ? len - 1 : len;
    if (obj.t == JV_LIST) {
        jlist *l = jl_new(x, 0);
        if (!l) return jx_alloc_failed(x, at);
        if (s == 1 && a < b) { /* a view */
            l->v = obj.u.l->v + a;
            l->n = l->cap = (uint32_t)(b - a);
        } else {
            for (int64_t i = a; s > 0 ? i < b : i > b;) {
                if (!jl_push(x, l, obj.u.l->v[i])) return jx_alloc_failed(x, at);
                if (__builtin_add_overflow(i, s, &i)) break;
            }
        }
        *out = jv_list(l, obj.fl & JF_TUPLE);
        return true;
    }
    if (s == 1) {
        if (b < a) b = a;
        size_t from = u8_offset(obj.u.s, obj.n, (size_t)a), to = from + u8_offset(obj.u.s + from, obj.n - from, (size_t)(b - a));
        *out = jv_strv(obj.u.s + from, (uint32_t)(to - from), obj.fl & JF_MARKUP);
        return true;
    }
    jlist *chars;
    if (!jv_iter(x, at, obj, &chars)) return false;
    jbuf buf = {.a = x->a};
    for (int64_t i = a; s > 0 ? i < b : i > b;) {
        jb_put(&buf, chars->v[i].u.s, chars->v[i].n);
        if (__builtin_add_overflow(i, s, &i)) break;
    }
    if (buf.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&buf, obj.fl & JF_MARKUP);
    return true;
}

bool jv_attr_path(jx *x, const jnode *at, jv v, jv path, jv dflt, jv *out) {
    bool use_dflt = GIVEN(dflt) && dflt.t != JV_NONE; /* make_attrgetter's default, after each part */
    if (path.t != JV_STR) {
        if (!jv_getitem(x, at, v, path, out)) return false;
        if (use_dflt && out->t == JV_UNDEF) *out = dflt;
        return true;
    }
    const char *s = path.u.s;
    size_t n = path.n, p = 0;
    for (;;) {
        size_t q = p;
        while (q < n && s[q] != '.') q++;
        bool digits = q > p;
        for (size_t i = p; i < q; i++) digits &= s[i] >= '0' && s[i] <= '9';
        jv key = digits ? jv_int(strtoll(s + p, NULL, 10)) : jv_strv(s + p, (uint32_t)(q - p), 0);
        if (!jv_getitem(x, at, v, key, &v)) return false;
        if (use_dflt && v.t == JV_UNDEF) v = dflt;
        if (q >= n) break;
        p = q + 1;
    }
    *out = v;
    return true;
}

/* ---- arithmetic ---- */

static const char *OPS[] = {"+", "-", "*", "/", "//", "%", "**"};

static double fnum(jv v) { return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : (double)v.u.b; }
static int64_t inum(jv v) { return v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? v.u.b : 0; }

static bool repeat(jx *x, const jnode *at, jv seq, int64_t k, jv *out) {
    size_t unit = seq.t == JV_STR ? seq.n : seq.u.l->n * sizeof(jv);
    if (k < 0 || unit == 0) k = 0; /* an empty sequence stays empty, however often repeated */
    if (unit && (uint64_t)k > (uint64_t)x->lim.max_memory / unit) return jx_fail(x, at, "the result would exceed the memory limit");
    if (!jx_step(x, at, (uint64_t)k * unit / 1024)) return false;
    if (seq.t == JV_STR) {
        jbuf b = {.a = x->a};
        for (int64_t i = 0; i < k; i++) jb_put(&b, seq.u.s, seq.n);
        if (b.fail) return jx_alloc_failed(x, at);
        *out = jb_str(&b, seq.fl & JF_MARKUP);
        return true;
    }
    jlist *l = jl_new(x, (uint32_t)(seq.u.l->n * (uint64_t)k));
    if (!l) return jx_alloc_failed(x, at);
    for (int64_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < seq.u.l->n; j++) l->v[l->n++] = seq.u.l->v[j];
    *out = jv_list(l, seq.fl & JF_TUPLE);
    return true;
}

bool jv_binop(jx *x, const jnode *at, int op, jv a, jv b, jv *out) {
    if (op == OP_MOD && a.t == JV_STR) return jstr_percent(x, at, a, b, out); /* str % anything, even Undefined */
    if (a.t == JV_UNDEF) return jv_undef_fail(x, at, a);
    if (b.t == JV_UNDEF) return jv_undef_fail(x, at, b);
    bool nums = jv_is_num(a) && jv_is_num(b), ints = nums && a.t != JV_FLOAT && b.t != JV_FLOAT;
    int64_t i, p = inum(a), q = inum(b);
    switch (op) {
    case OP_ADD:
        if (ints) {
            if (__builtin_add_overflow(p, q, &i)) return jx_fail(x, at, "integer overflow");
            *out = jv_int(i);
            return true;
        }
        if (nums) {
            *out = jv_float(fnum(a) + fnum(b));
            return true;
        }
        if (a.t == JV_STR && b.t == JV_STR) {
            uint8_t fl = (a.fl | b.fl) & JF_MARKUP;
            if (fl && !(a.fl & JF_MARKUP)) a = jstr_escape(x, a);
            if (fl && !(b.fl & JF_MARKUP)) b = jstr_escape(x, b);
            jbuf buf = {.a = x->a};
            jb_put(&buf, a.u.s, a.n);
            jb_put(&buf, b.u.s, b.n);
            if (buf.fail) return jx_alloc_failed(x, at);
            *out = jb_str(&buf, fl);
            return true;
        }
        if (a.t == JV_LIST && b.t == JV_LIST && !((a.fl | b.fl) & JF_GEN) && (a.fl & JF_TUPLE) == (b.fl & JF_TUPLE)) {
            jlist *l = jl_new(x, a.u.l->n + b.u.l->n);
            if (!l) return jx_alloc_failed(x, at);
            jv_copy(l->v, a.u.l->v, a.u.l->n);
            if (b.u.l->n) jv_copy(l->v + a.u.l->n, b.u.l->v, b.u.l->n);
            l->n = a.u.l->n + b.u.l->n;
            *out = jv_list(l, a.fl & JF_TUPLE);
            return true;
        }
        if ((a.t == JV_STR && !(a.fl & JF_MARKUP)) || (a.t == JV_LIST && !(a.fl & JF_GEN)))
            return jx_fail(x, at, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a), jv_type_name(b),
                           jv_type_name(a));
        break;
    case OP_SUB:
        if (ints) {
            if (__builtin_sub_overflow(p, q, &i)) return jx_fail(x, at, "integer overflow");
            *out = jv_int(i);
            return true;
        }
        if (nums) {
            *out = jv_float(fnum(a) - fnum(b));
            return true;
        }
        break;
    case OP_MUL:
        if (ints) {
            if (__builtin_mul_overflow(p, q, &i)) return jx_fail(x, at, "integer overflow");
            *out = jv_int(i);
            return true;
        }
        if (nums) {
            *out = jv_float(fnum(a) * fnum(b));
            return true;
        }
        if ((a.t == JV_STR || (a.t == JV_LIST && !(a.fl & JF_GEN))) && (b.t == JV_INT || b.t == JV_BOOL))
            return repeat(x, at, a, inum(b), out);
        if ((b.t == JV_STR || (b.t == JV_LIST && !(b.fl & JF_GEN))) && (a.t == JV_INT || a.t == JV_BOOL))
            return repeat(x, at, b, inum(a), out);
        if ((a.t == JV_STR || a.t == JV_LIST) && b.t != JV_INT)
            return jx_fail(x, at, "can't multiply sequence by non-int of type '%s'", jv_type_name(b));
        break;
    case OP_DIV:
        if (nums) {
            if (fnum(b) == 0) return jx_fail(x, at, "division by zero");
            *out = jv_float(fnum(a) / fnum(b));
            return true;
        }
        break;
    case OP_FLOORDIV:
    case OP_MOD:
        if (ints) {
            if (q == 0) return jx_fail(x, at, "integer division or modulo by zero");
            if (p == INT64_MIN && q == -1) return jx_fail(x, at, "integer overflow");
            int64_t d = p / q, r = p % q;
            if (r != 0 && ((r < 0) != (q < 0))) d -= 1, r += q;
            *out = jv_int(op == OP_MOD ? r : d);
            return true;
        }
        if (nums) {
            /* CPython's float_divmod, signs of zeros included */
            double vx = fnum(a), wx = fnum(b);
            if (wx == 0) return jx_fail(x, at, op == OP_MOD ? "float modulo" : "float floor division by zero");
            double mod = fmod(vx, wx), div = (vx - mod) / wx, fd;
            if (mod) {
                if ((wx < 0) != (mod < 0)) mod += wx, div -= 1.0;
            } else {
                mod = copysign(0.0, wx);
            }
            if (div) {
                fd = floor(div);
                if (div - fd > 0.5) fd += 1.0;
            } else {
                fd = copysign(0.0, vx / wx);
            }
            *out = jv_float(op == OP_MOD ? mod : fd);
            return true;
        }
        break;
    case OP_POW:
        if (ints && q >= 0) {
            int64_t r = 1, base = p;
            for (int64_t e = q; e > 0; e >>= 1) {
                if ((e & 1) && __builtin_mul_overflow(r, base, &r)) return jx_fail(x, at, "integer overflow");
                if (e > 1 && __builtin_mul_overflow(base, base, &base)) return jx_fail(x, at, "integer overflow");
            }
            *out = jv_int(r);
            return true;
        }
        if (nums) {
            if (fnum(a) == 0 && fnum(b) < 0) return jx_fail(x, at, "0.0 cannot be raised to a negative power");
            *out = jv_float(pow(fnum(a), fnum(b)));
            return true;
        }
        break;
    }
    return jx_fail(x, at, "unsupported operand type(s) for %s: '%s' and '%s'", OPS[op], jv_type_name(a), jv_type_name(b));
}

/* ---- calls ---- */

bool jargs_bind(jx *x, const jnode *at, const char *fname, const jargs *a, const char *const *params, uint32_t np,
                uint32_t required, jv *slots) {
    for (uint32_t i = 0; i < np; i++) slots[i] = jv_undef();
    if (a->npos > np)
        return jx_fail(x, at, "%s() takes at most %u argument%s (%u given)", fname, np, np == 1 ? "" : "s", a->npos);
    bool set[16] = {false};
    for (uint32_t i = 0; i < a->npos; i++) slots[i] = a->pos[i], set[i] = true;
    for (uint32_t k = 0; k < a->nkw; k++) {
        uint32_t i;
        for (i = 0; i < np; i++)
            if (!strcmp(params[i], a->kw_names[k])) break;
        if (i == np) return jx_fail(x, at, "%s() got an unexpected keyword argument '%s'", fname, a->kw_names[k]);
        if (set[i]) return jx_fail(x, at, "%s() got multiple values for argument '%s'", fname, params[i]);
        slots[i] = a->kw[k];
        set[i] = true;
    }
    for (uint32_t i = 0; i < required; i++)
        if (!set[i]) return jx_fail(x, at, "%s() missing required argument '%s'", fname, params[i]);
    return true;
}

bool jv_call(jx *x, const jnode *at, jv fn, const jargs *a, jv *out) {
    if (fn.t == JV_UNDEF) return jv_undef_fail(x, at, fn);
    if (fn.t != JV_OBJ) return jx_fail(x, at, "'%s' object is not callable", jv_type_name(fn));
    jobj *o = fn.u.o;
    switch (o->kind) {
    case JO_MACRO: return jx_call_macro(x, at, o, a, out);
    case JO_LOOP: return jx_loop_call(x, at, o->u.loop, a, out);
    case JO_FUNC: return o->u.func.fn(x, at, o->u.func.self, a, out);
    case JO_METHOD: return o->u.func.fn(x, at, fn, a, out);
    case JO_JOINER: {
        if (!jargs_bind(x, at, "joiner", a, NULL, 0, 0, NULL)) return false;
        if (!o->u.joiner.used) {
            o->u.joiner.used = true;
            *out = jv_strv("", 0, 0);
        } else {
            *out = o->u.joiner.sep;
        }
        return true;
    }
    }
    return jx_fail(x, at, "'%s' object is not callable", jv_type_name(fn));
}
