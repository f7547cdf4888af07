/*
 * runtime/text/jinja_builtins.c — jinja2's tests (tests.py, 3.1) and the
 * globals a chat template sees: range (the sandbox's, at most 100000
 * items), namespace and dict (transformers' versions), cycler, joiner,
 * raise_exception and strftime_now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

/* A counted jv string as a C string in buf, for the lookup of a test or
 * filter named at run time (select('odd'), is test): NULL where it cannot
 * name one (not a string, too long, or holding a NUL). Jinja strings are
 * not terminated, and the empty one may have no bytes at all. */
static const char *short_name(jv s, char *buf, size_t cap) {
    if (s.t != JV_STR || s.n >= cap || (s.n && memchr(s.u.s, 0, s.n))) return NULL;
    if (s.n) memcpy(buf, s.u.s, s.n);
    buf[s.n] = 0;
    return buf;
}

#define TEST(name) static bool t_##name(jx *x, const jnode *at, jv v, const jargs *a, jv *out)
#define ONE_ARG(tname)                                                                   \
    static const char *const ps_[] = {"other"};                                          \
    jv arg[1];                                                                           \
    if (!jargs_bind(x, at, tname, a, ps_, 1, 1, arg)) return false
#define RET(b) return (*out = jv_bool(b), true)

static bool no_args(jx *x, const jnode *at, const jargs *a) { return jargs_bind(x, at, at->name, a, NULL, 0, 0, NULL); }

TEST(defined) { return no_args(x, at, a) && (*out = jv_bool(v.t != JV_UNDEF), true); }
TEST(undefined) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_UNDEF), true); }
TEST(none) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_NONE), true); }
TEST(boolean) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_BOOL), true); }
TEST(true) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_BOOL && v.u.b), true); }
TEST(false) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_BOOL && !v.u.b), true); }
TEST(integer) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_INT), true); }
TEST(float) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_FLOAT), true); }
TEST(number) { return no_args(x, at, a) && (*out = jv_bool(jv_is_num(v)), true); }
TEST(string) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_STR), true); }
TEST(mapping) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_DICT), true); }
TEST(escaped) { return no_args(x, at, a) && (*out = jv_bool(v.t == JV_STR && (v.fl & JF_MARKUP)), true); }

TEST(sequence) {
    if (!no_args(x, at, a)) return false;
    RET(v.t == JV_STR || v.t == JV_DICT || v.t == JV_UNDEF || (v.t == JV_LIST && !(v.fl & JF_GEN)));
}

TEST(iterable) {
    if (!no_args(x, at, a)) return false;
    RET(v.t == JV_STR || v.t == JV_DICT || v.t == JV_UNDEF || v.t == JV_LIST || jv_is_obj(v, JO_LOOP));
}

TEST(callable) {
    if (!no_args(x, at, a)) return false;
    RET(v.t == JV_UNDEF || (v.t == JV_OBJ && v.u.o->kind != JO_NS && v.u.o->kind != JO_CYCLER));
}

static bool parity(jx *x, const jnode *at, jv v, const jargs *a, jv *out, int want) {
    if (!no_args(x, at, a)) return false;
    jv r;
    if (!jv_binop(x, at, OP_MOD, v, jv_int(2), &r)) return false;
    RET(jv_eq(r, jv_int(want)));
}
TEST(odd) { return parity(x, at, v, a, out, 1); }
TEST(even) { return parity(x, at, v, a, out, 0); }

TEST(divisibleby) {
    ONE_ARG("divisibleby");
    jv r;
    if (!jv_binop(x, at, OP_MOD, v, arg[0], &r)) return false;
    RET(jv_eq(r, jv_int(0)));
}

static bool case_test(jx *x, const jnode *at, jv v, const jargs *a, jv *out, bool upper) {
    if (!no_args(x, at, a)) return false;
    jv s;
    bool found;
    if (!jv_stringify(x, at, v, &s)) return false;
    jargs none = {0};
    return jstr_method(x, at, s, upper ? "isupper" : "islower", &none, out, &found);
}
TEST(lower) { return case_test(x, at, v, a, out, false); }
TEST(upper) { return case_test(x, at, v, a, out, true); }

static bool cmp_test(jx *x, const jnode *at, jv v, const jargs *a, jv *out, int op) {
    ONE_ARG(at->name);
    bool r;
    if (!jv_compare(x, at, op, v, arg[0], &r)) return false;
    RET(r);
}
TEST(eq) { return cmp_test(x, at, v, a, out, OP_EQ); }
TEST(ne) { return cmp_test(x, at, v, a, out, OP_NE); }
TEST(lt) { return cmp_test(x, at, v, a, out, OP_LT); }
TEST(le) { return cmp_test(x, at, v, a, out, OP_LE); }
TEST(gt) { return cmp_test(x, at, v, a, out, OP_GT); }
TEST(ge) { return cmp_test(x, at, v, a, out, OP_GE); }
TEST(in) {
    ONE_ARG("in");
    bool r;
    if (!jv_compare(x, at, OP_IN, v, arg[0], &r)) return false;
    RET(r);
}

TEST(sameas) {
    ONE_ARG("sameas");
    jv o = arg[0];
    bool same = v.t == o.t;
    if (same) {
        switch (v.t) {
        case JV_NONE:
        case JV_UNDEF: break;
        case JV_BOOL: same = v.u.b == o.u.b; break;
        case JV_INT: same = v.u.i == o.u.i && v.u.i >= -5 && v.u.i <= 256; break; /* CPython's small ints */
        case JV_FLOAT: same = false; break;
        case JV_STR: same = v.u.s == o.u.s && v.n == o.n; break;
        default: same = v.u.o == o.u.o; break;
        }
    }
    RET(same);
}

TEST(filter) {
    if (!no_args(x, at, a)) return false;
    char buf[64];
    const char *nm = short_name(v, buf, sizeof buf);
    RET(nm && jfilter_lookup(nm) != NULL);
}

TEST(test) {
    if (!no_args(x, at, a)) return false;
    char buf[64];
    const char *nm = short_name(v, buf, sizeof buf);
    RET(nm && jtest_lookup(nm) != NULL);
}

static const struct {
    const char *name;
    jbuiltin_fn fn;
} TESTS[] = {
    {"!=", t_ne},           {"<", t_lt},            {"<=", t_le},           {"==", t_eq},
    {">", t_gt},            {">=", t_ge},           {"boolean", t_boolean}, {"callable", t_callable},
    {"defined", t_defined}, {"divisibleby", t_divisibleby}, {"eq", t_eq},   {"equalto", t_eq},
    {"escaped", t_escaped}, {"even", t_even},       {"false", t_false},     {"filter", t_filter},
    {"float", t_float},     {"ge", t_ge},           {"greaterthan", t_gt},  {"gt", t_gt},
    {"in", t_in},           {"integer", t_integer}, {"iterable", t_iterable}, {"le", t_le},
    {"lessthan", t_lt},     {"lower", t_lower},     {"lt", t_lt},           {"mapping", t_mapping},
    {"ne", t_ne},           {"none", t_none},       {"number", t_number},   {"odd", t_odd},
    {"sameas", t_sameas},   {"sequence", t_sequence}, {"string", t_string}, {"test", t_test},
    {"true", t_true},       {"undefined", t_undefined}, {"upper", t_upper},
};

jbuiltin_fn jtest_lookup(const char *name) {
    for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++)
        if (!strcmp(TESTS[i].name, name)) return TESTS[i].fn;
    return NULL;
}

bool jtest_run(jx *x, const jnode *at, jv name, jv v, const jargs *a, bool *out) {
    char buf[64];
    const char *nm = short_name(name, buf, sizeof buf);
    jbuiltin_fn fn = nm ? jtest_lookup(nm) : NULL;
    if (!fn) return jx_fail(x, at, "No test named '%.*s'.", (int)(name.n > 64 ? 64 : name.n), name.n ? name.u.s : "");
    jnode tmp = *at;
    tmp.name = nm;
    jv r;
    if (!fn(x, &tmp, v, a, &r)) return false;
    *out = jv_truthy(r);
    return true;
}

/* ---- globals ---- */

#define GLOBAL(name) static bool g_##name(jx *x, const jnode *at, jv self, const jargs *a, jv *out)

GLOBAL(range) {
    (void)self;
    if (a->nkw) return jx_fail(x, at, "range() takes no keyword arguments");
    if (a->npos < 1 || a->npos > 3) return jx_fail(x, at, "range expected 1 to 3 arguments, got %u", a->npos);
    int64_t p[3] = {0, 0, 1};
    for (uint32_t i = 0; i < a->npos; i++) {
        jv v = a->pos[i];
        if (v.t != JV_INT && v.t != JV_BOOL)
            return jx_fail(x, at, "'%s' object cannot be interpreted as an integer", jv_type_name(v));
        p[a->npos == 1 ? 1 : i] = v.t == JV_INT ? v.u.i : v.u.b;
    }
    if (p[2] == 0) return jx_fail(x, at, "range() arg 3 must not be zero");
    double n = p[2] > 0 ? ((double)p[1] - (double)p[0]) / (double)p[2] : ((double)p[0] - (double)p[1]) / (double)-p[2];
    if (n > 100000) return jx_fail(x, at, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    jlist *l = jl_new(x, n > 0 ? (uint32_t)n + 1 : 0);
    if (!l) return jx_alloc_failed(x, at);
    for (int64_t i = p[0]; p[2] > 0 ? i < p[1] : i > p[1];) {
        l->v[l->n++] = jv_int(i);
        if (__builtin_add_overflow(i, p[2], &i)) break;
    }
    *out = jv_list(l, 0);
    return true;
}

/* dict(*args, **kwargs): a mapping or pairs, then keywords */
static bool make_dict(jx *x, const jnode *at, const char *fname, const jargs *a, jdict **out) {
    jdict *d = jd_new(x->a, 0);
    if (!d) return jx_alloc_failed(x, at);
    if (a->npos > 1) return jx_fail(x, at, "%s expected at most 1 argument, got %u", fname, a->npos);
    if (a->npos == 1) {
        jv src = a->pos[0];
        if (src.t == JV_DICT) {
            for (uint32_t i = 0; i < src.u.d->n; i++)
                if (!jd_set(x->a, d, src.u.d->k[i], src.u.d->v[i])) return jx_alloc_failed(x, at);
        } else {
            jlist *l;
            if (!jv_iter(x, at, src, &l)) return false;
            for (uint32_t i = 0; i < l->n; i++) {
                jlist *p;
                if (!jv_iter(x, at, l->v[i], &p)) return false;
                if (p->n != 2)
                    return jx_fail(x, at, "dictionary update sequence element #%u has length %u; 2 is required", i, p->n);
                if (!jv_hashable(p->v[0])) return jx_fail(x, at, "unhashable type: '%s'", jv_type_name(p->v[0]));
                if (!jd_set(x->a, d, p->v[0], p->v[1])) return jx_alloc_failed(x, at);
            }
        }
    }
    for (uint32_t k = 0; k < a->nkw; k++)
        if (!jd_set(x->a, d, jv_strv(a->kw_names[k], (uint32_t)strlen(a->kw_names[k]), 0), a->kw[k]))
            return jx_alloc_failed(x, at);
    *out = d;
    return true;
}

GLOBAL(dict) {
    (void)self;
    jdict *d;
    if (!make_dict(x, at, "dict", a, &d)) return false;
    *out = jv_dict(d);
    return true;
}

GLOBAL(namespace) {
    (void)self;
    jdict *d;
    if (!make_dict(x, at, "namespace", a, &d)) return false;
    for (uint32_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].n && d->k[i].u.s[0] == '_')
            return jx_fail(x, at, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got "
                                  "'%s'. Please rename the attribute.", d->k[i].u.s);
    jobj *o = jo_new(x, JO_NS);
    if (!o) return jx_alloc_failed(x, at);
    o->u.ns = d;
    *out = (jv){.t = JV_OBJ, .u.o = o};
    return true;
}

GLOBAL(raise_exception) {
    (void)self;
    (void)out;
    static const char *const p[] = {"message"};
    jv m;
    if (!jargs_bind(x, at, "raise_exception", a, p, 1, 1, &m)) return false;
    jv s;
    if (!jv_stringify(x, at, m, &s)) return false;
    return jx_fail(x, at, "%.*s", (int)s.n, s.u.s);
}

GLOBAL(strftime_now) {
    (void)self;
    static const char *const p[] = {"format"};
    jv f;
    if (!jargs_bind(x, at, "strftime_now", a, p, 1, 1, &f)) return false;
    return jx_strftime_now(x, at, f, out);
}

GLOBAL(cycler) {
    (void)self;
    if (a->nkw) return jx_fail(x, at, "cycler() takes no keyword arguments");
    jobj *o = jo_new(x, JO_CYCLER);
    jlist *l = jl_new(x, a->npos);
    if (!o || !l) return jx_alloc_failed(x, at);
    jv_copy(l->v, a->pos, a->npos);
    l->n = a->npos;
    o->u.cycler.items = l;
    *out = (jv){.t = JV_OBJ, .u.o = o};
    return true;
}

GLOBAL(joiner) {
    (void)self;
    static const char *const p[] = {"sep"};
    jv sep;
    if (!jargs_bind(x, at, "joiner", a, p, 1, 0, &sep)) return false;
    jobj *o = jo_new(x, JO_JOINER);
    if (!o) return jx_alloc_failed(x, at);
    o->u.joiner.sep = GIVEN(sep) ? sep : jv_strv(", ", 2, 0);
    *out = (jv){.t = JV_OBJ, .u.o = o};
    return true;
}

static const struct {
    const char *name;
    jbuiltin_fn fn;
} GLOBALS[] = {
    {"range", g_range},   {"dict", g_dict},     {"namespace", g_namespace}, {"raise_exception", g_raise_exception},
    {"strftime_now", g_strftime_now}, {"cycler", g_cycler}, {"joiner", g_joiner},
};

bool jglobal_lookup(jx *x, const char *name, jv *out) {
    for (size_t i = 0; i < sizeof GLOBALS / sizeof GLOBALS[0]; i++) {
        if (strcmp(GLOBALS[i].name, name)) continue;
        jobj *o = jo_new(x, JO_FUNC);
        if (!o) return false;
        o->u.func.fn = GLOBALS[i].fn;
        o->u.func.name = GLOBALS[i].name;
        o->u.func.self = jv_none();
        *out = (jv){.t = JV_OBJ, .u.o = o};
        return true;
    }
    return false;
}
