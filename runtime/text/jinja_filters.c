/*
 * runtime/text/jinja_filters.c — jinja2's built-in filters (filters.py,
 * 3.1) with a non-autoescaping environment, and transformers' tojson.
 *
 * Filters that are generators in jinja2 (map, select, reject, selectattr,
 * rejectattr, unique, items, batch, reverse of a list) return one-shot
 * generator values here too: they are truthy even when empty, have no
 * length, are not JSON serialisable, and a second pass over them is empty.
 *
 * Not provided (a template using them fails to parse, naming the filter):
 * filesizeformat, groupby, pprint, random, slice, striptags, urlencode,
 * urlize, wordwrap, xmlattr.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "runtime/text/jinja_internal.h"

jv jf_soft_str(jx *x, const jnode *at, jv v, bool *ok) {
    jv s;
    *ok = jv_stringify(x, at, v, &s);
    return s;
}

JFILTER(tojson) {
    BIND(0, "ensure_ascii", "indent", "separators", "sort_keys");
    jjson_opts o = {.item_sep = ", ", .item_sep_n = 2, .key_sep = ": ", .key_sep_n = 2};
    o.ensure_ascii = GIVEN(arg[0]) && jv_truthy(arg[0]);
    o.sort_keys = GIVEN(arg[3]) && jv_truthy(arg[3]);
    jv ind = arg[1];
    if (GIVEN(ind) && ind.t != JV_NONE) {
        if (ind.t == JV_STR) {
            o.indent = ind.u.s;
            o.indent_n = ind.n;
        } else if (ind.t == JV_INT || ind.t == JV_BOOL) {
            int64_t k = ind.t == JV_INT ? ind.u.i : ind.u.b;
            if (k > 256) return jx_fail(x, at, "tojson: indent %lld is too large", (long long)k);
            char *sp = ja_alloc(x->a, (size_t)(k > 0 ? k : 0) + 1);
            if (!sp) return jx_alloc_failed(x, at);
            memset(sp, ' ', (size_t)(k > 0 ? k : 0));
            o.indent = sp;
            o.indent_n = (size_t)(k > 0 ? k : 0);
        } else {
            return jx_fail(x, at, "can't multiply sequence by non-int of type '%s'", jv_type_name(ind));
        }
        o.item_sep = ",";
        o.item_sep_n = 1;
    }
    if (GIVEN(arg[2]) && arg[2].t != JV_NONE) {
        jv sep = arg[2];
        if (sep.t != JV_LIST || sep.u.l->n != 2 || sep.u.l->v[0].t != JV_STR || sep.u.l->v[1].t != JV_STR)
            return jx_fail(x, at, "tojson: separators must be a pair of strings");
        o.item_sep = sep.u.l->v[0].u.s;
        o.item_sep_n = sep.u.l->v[0].n;
        o.key_sep = sep.u.l->v[1].u.s;
        o.key_sep_n = sep.u.l->v[1].n;
    }
    jbuf b = {.a = x->a};
    if (!jjson_dump(x, at, v, &o, &b)) return false;
    *out = jb_str(&b, 0);
    return true;
}

static bool length_of(jx *x, const jnode *at, jv v, int64_t *n) {
    switch (v.t) {
    case JV_UNDEF: *n = 0; return true;
    case JV_STR: *n = (int64_t)u8_len(v.u.s, v.n); return true;
    case JV_LIST:
        if (v.fl & JF_GEN) break;
        *n = v.u.l->n;
        return true;
    case JV_DICT: *n = v.u.d->n; return true;
    case JV_OBJ:
        if (v.u.o->kind == JO_LOOP) {
            *n = v.u.o->u.loop->items->n;
            return true;
        }
        break;
    }
    return jx_fail(x, at, "object of type '%s' has no len()", jv_type_name(v));
}

JFILTER(length) {
    NOARGS();
    int64_t n = 0;
    if (!length_of(x, at, v, &n)) return false;
    *out = jv_int(n);
    return true;
}

JFILTER(trim) {
    BIND(0, "chars");
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    if (!ok) return false;
    if (GIVEN(arg[0]) && arg[0].t != JV_NONE && arg[0].t != JV_STR)
        return jx_fail(x, at, "strip arg must be None or str");
    return jstr_strip(x, s, arg[0], true, true, out);
}

JFILTER(string) {
    NOARGS();
    return jv_stringify(x, at, v, out);
}

JFILTER(default) {
    BIND(0, "default_value", "boolean");
    if (v.t == JV_UNDEF || (GIVEN(arg[1]) && jv_truthy(arg[1]) && !jv_truthy(v)))
        *out = GIVEN(arg[0]) ? arg[0] : jv_strv("", 0, 0);
    else
        *out = v;
    return true;
}

static bool case_filter(jx *x, const jnode *at, jv v, const jargs *a, jv *out, int mode) {
    NOARGS();
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    return ok && (jstr_case(x, s, mode, out) || jx_alloc_failed(x, at));
}
JFILTER(lower) { return case_filter(x, at, v, a, out, 0); }
JFILTER(upper) { return case_filter(x, at, v, a, out, 1); }
JFILTER(capitalize) { return case_filter(x, at, v, a, out, 3); }

JFILTER(title) { /* jinja2's own: words split at runs of "-", whitespace and opening brackets */
    NOARGS();
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    if (!ok) return false;
    jbuf b = {.a = x->a};
    bool start = true;
    for (size_t i = 0; i < s.n;) {
        size_t st = i;
        uint32_t c = u8_next(s.u.s, s.n, &i);
        bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
        jv ch = jv_strv(s.u.s + st, (uint32_t)(i - st), 0), m;
        if (sep) {
            jb_put(&b, ch.u.s, ch.n);
            start = true;
            continue;
        }
        if (!jstr_case(x, ch, start ? 1 : 0, &m)) return jx_alloc_failed(x, at);
        jb_put(&b, m.u.s, m.n);
        start = false;
    }
    *out = jb_str(&b, 0);
    return !b.fail || jx_alloc_failed(x, at);
}

JFILTER(safe) {
    NOARGS();
    if (!jv_stringify(x, at, v, out)) return false;
    out->fl |= JF_MARKUP;
    return true;
}

JFILTER(escape) {
    NOARGS();
    if (v.t == JV_STR && (v.fl & JF_MARKUP)) {
        *out = v;
        return true;
    }
    jv s;
    if (!jv_stringify(x, at, v, &s)) return false;
    *out = jstr_escape(x, s);
    return true;
}

/* Stable merge sort of items by keys; `cmp` may fail. */
JFILTER(replace) {
    BIND(2, "old", "new", "count");
    jv s, o, n;
    if (!jv_stringify(x, at, v, &s) || !jv_stringify(x, at, arg[0], &o) || !jv_stringify(x, at, arg[1], &n)) return false;
    int64_t count = -1;
    if (GIVEN(arg[2]) && arg[2].t != JV_NONE) {
        if (arg[2].t != JV_INT) return jx_fail(x, at, "'%s' object cannot be interpreted as an integer", jv_type_name(arg[2]));
        count = arg[2].u.i;
    }
    return jstr_replace(x, at, s, o, n, count, out);
}

/* select / reject / selectattr / rejectattr */
JFILTER(indent) {
    BIND(0, "width", "first", "blank");
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    if (!ok) return false;
    jv ind;
    if (!GIVEN(arg[0])) {
        ind = jv_strv("    ", 4, 0);
    } else if (arg[0].t == JV_STR) {
        ind = arg[0];
    } else if (arg[0].t == JV_INT || arg[0].t == JV_BOOL) {
        int64_t w = arg[0].t == JV_INT ? arg[0].u.i : arg[0].u.b;
        if (w > 4096) return jx_fail(x, at, "indent width %lld is too large", (long long)w);
        char *sp = ja_alloc(x->a, (size_t)(w > 0 ? w : 0) + 1);
        if (!sp) return jx_alloc_failed(x, at);
        memset(sp, ' ', (size_t)(w > 0 ? w : 0));
        ind = jv_strv(sp, (uint32_t)(w > 0 ? w : 0), 0);
    } else {
        return jx_fail(x, at, "can't multiply sequence by non-int of type '%s'", jv_type_name(arg[0]));
    }
    /* s += "\n"; lines = s.splitlines() */
    jbuf t = {.a = x->a};
    jb_put(&t, s.u.s, s.n);
    jb_putc(&t, '\n');
    if (t.fail) return jx_alloc_failed(x, at);
    jlist *lines;
    if (!jstr_splitlines(x, jb_str(&t, 0), false, &lines)) return jx_alloc_failed(x, at);
    jbuf b = {.a = x->a};
    if (GIVEN(arg[1]) && jv_truthy(arg[1])) jb_put(&b, ind.u.s, ind.n);
    bool blank = GIVEN(arg[2]) && jv_truthy(arg[2]);
    for (uint32_t i = 0; i < lines->n; i++) {
        jv line = lines->v[i];
        if (i) {
            jb_putc(&b, '\n');
            if (blank || line.n) jb_put(&b, ind.u.s, ind.n);
        }
        jb_put(&b, line.u.s, line.n);
    }
    if (b.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&b, s.fl & JF_MARKUP);
    return true;
}

/* Python's str.strip() of ASCII whitespace bounds, then its int() / float()
 * grammar: digits may be separated by single underscores. */
static void trim_ws(jv s, size_t *from, size_t *to) {
    *from = 0;
    *to = s.n;
    while (*from < *to && py_isspace((unsigned char)s.u.s[*from])) (*from)++;
    while (*to > *from && py_isspace((unsigned char)s.u.s[*to - 1])) (*to)--;
}

/* digits of `base` with single underscores between them; copies them to d */
static bool py_digits(const char *s, size_t n, size_t *i, int base, char *d, size_t *dn, size_t dcap, bool lead_us) {
    size_t start = *i;
    bool prev_digit = false;
    if (lead_us && *i < n && s[*i] == '_') (*i)++; /* 0x_1f */
    while (*i < n) {
        char c = s[*i];
        int v = c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'z' ? (c | 32) - 'a' + 10 : 99;
        if (v < base) {
            if (*dn + 1 >= dcap) return false;
            d[(*dn)++] = c;
            prev_digit = true;
            (*i)++;
        } else if (c == '_' && prev_digit && *i + 1 < n) {
            prev_digit = false;
            (*i)++;
        } else {
            break;
        }
    }
    return prev_digit && *i > start;
}

static bool py_int(jv s, int64_t base, int64_t *out) {
    if (base != 0 && (base < 2 || base > 36)) return false;
    size_t i, n;
    trim_ws(s, &i, &n);
    const char *p = s.u.s;
    bool neg = false;
    if (i < n && (p[i] == '+' || p[i] == '-')) neg = p[i++] == '-';
    int b = (int)base;
    bool prefixed = false;
    if (i + 1 < n && p[i] == '0' && strchr("xXoObB", p[i + 1]) && p[i + 1]) {
        int pb = (p[i + 1] | 32) == 'x' ? 16 : (p[i + 1] | 32) == 'o' ? 8 : 2;
        if (b == 0 || b == pb) b = pb, i += 2, prefixed = true;
    }
    if (b == 0) b = 10;
    char d[80];
    size_t dn = 0;
    if (!py_digits(p, n, &i, b, d, &dn, sizeof d, prefixed) || i != n) return false;
    if (base == 0 && !prefixed && dn > 1 && d[0] == '0') { /* int("010", 0) is an error; "000" is fine */
        for (size_t k = 0; k < dn; k++)
            if (d[k] != '0') return false;
    }
    d[dn] = 0;
    errno = 0;
    unsigned long long v = strtoull(d, NULL, b);
    if (errno || v > (unsigned long long)INT64_MAX + (neg ? 1 : 0)) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool py_float(jv s, double *out) {
    size_t i, n;
    trim_ws(s, &i, &n);
    const char *p = s.u.s;
    char d[400];
    size_t dn = 0;
    if (i < n && (p[i] == '+' || p[i] == '-')) d[dn++] = p[i++];
    size_t rest = n - i;
    static const char *const words[] = {"inf", "infinity", "nan"};
    for (int k = 0; k < 3; k++) {
        if (rest == strlen(words[k]) && !strncasecmp(p + i, words[k], rest)) {
            double v = k == 2 ? NAN : INFINITY;
            *out = d[0] == '-' && dn ? -v : v;
            return true;
        }
    }
    bool intpart = py_digits(p, n, &i, 10, d, &dn, sizeof d, false), frac = false;
    if (i < n && p[i] == '.') {
        d[dn++] = p[i++];
        frac = i < n && p[i] >= '0' && p[i] <= '9' && py_digits(p, n, &i, 10, d, &dn, sizeof d, false);
    }
    if (!intpart && !frac) return false;
    if (i < n && (p[i] | 32) == 'e') {
        d[dn++] = 'e';
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-')) d[dn++] = p[i++];
        if (!py_digits(p, n, &i, 10, d, &dn, sizeof d, false)) return false;
    }
    if (i != n || dn >= sizeof d) return false;
    d[dn] = 0;
    *out = strtod(d, NULL);
    return true;
}

JFILTER(int) {
    BIND(0, "default", "base");
    jv dflt = GIVEN(arg[0]) ? arg[0] : jv_int(0);
    if (v.t == JV_UNDEF) return jv_undef_fail(x, at, v); /* int(Undefined) raises */
    int64_t base = 10, i;
    if (GIVEN(arg[1])) /* a base that is no int makes int(value, base) fail: the float fallback follows */
        base = arg[1].t == JV_INT ? arg[1].u.i : arg[1].t == JV_BOOL ? arg[1].u.b : -1;
    double d;
    if (v.t == JV_INT || v.t == JV_BOOL) *out = jv_int(v.t == JV_INT ? v.u.i : v.u.b);
    else if (v.t == JV_STR && py_int(v, base, &i)) *out = jv_int(i);
    else if (v.t == JV_FLOAT || (v.t == JV_STR && py_float(v, &d))) { /* int(float(value)) */
        d = v.t == JV_FLOAT ? v.u.f : d;
        if (isinf(d) || isnan(d)) *out = dflt; /* OverflowError / ValueError: the default */
        else if (fabs(d) >= 9.2233720368547758e18) return jx_fail(x, at, "integer out of the 64-bit range");
        else *out = jv_int((int64_t)d);
    } else {
        *out = dflt;
    }
    return true;
}

JFILTER(float) {
    BIND(0, "default");
    jv dflt = GIVEN(arg[0]) ? arg[0] : jv_float(0.0);
    double d;
    if (v.t == JV_UNDEF) return jv_undef_fail(x, at, v); /* float(Undefined) raises */
    if (v.t == JV_INT || v.t == JV_BOOL) *out = jv_float(v.t == JV_INT ? (double)v.u.i : v.u.b);
    else if (v.t == JV_FLOAT) *out = v;
    else if (v.t == JV_STR && py_float(v, &d)) *out = jv_float(d);
    else *out = dflt;
    return true;
}

JFILTER(abs) {
    NOARGS();
    if (v.t == JV_INT) *out = v.u.i == INT64_MIN ? jv_float(9.223372036854775808e18) : jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    else if (v.t == JV_BOOL) *out = jv_int(v.u.b);
    else if (v.t == JV_FLOAT) *out = jv_float(fabs(v.u.f));
    else return jx_fail(x, at, "bad operand type for abs(): '%s'", jv_type_name(v));
    return true;
}

JFILTER(round) {
    BIND(0, "precision", "method");
    int64_t prec = arg[0].t == JV_INT ? arg[0].u.i : 0;
    int method = 0;
    if (GIVEN(arg[1])) {
        if (jv_str_is(arg[1], "ceil")) method = 1;
        else if (jv_str_is(arg[1], "floor")) method = 2;
        else if (!jv_str_is(arg[1], "common"))
            return jx_fail(x, at, "method must be common, ceil or floor");
    }
    if (!jv_is_num(v)) return jx_fail(x, at, "type %s doesn't define __round__ method", jv_type_name(v));
    double d = v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : v.u.b;
    if (method) {
        double p = pow(10, (double)prec);
        *out = jv_float((method == 1 ? ceil(d * p) : floor(d * p)) / p);
    } else if (v.t != JV_FLOAT) {
        *out = v.t == JV_BOOL ? jv_int(v.u.b) : v; /* round(int, n) stays an int */
    } else {
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)(prec < 0 ? 0 : prec > 300 ? 300 : prec), d);
        *out = jv_float(strtod(buf, NULL));
    }
    return true;
}

JFILTER(center) {
    BIND(0, "width");
    bool ok, found;
    jv s = jf_soft_str(x, at, v, &ok);
    jv w = GIVEN(arg[0]) ? arg[0] : jv_int(80);
    jargs ca = {&w, 1, NULL, NULL, 0};
    return ok && jstr_method(x, at, s, "center", &ca, out, &found);
}

JFILTER(wordcount) {
    NOARGS();
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    if (!ok) return false;
    int64_t n = 0;
    bool in = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        bool w = c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z') || (c >= 0xC0 && !py_isspace(c));
        if (w && !in) n++;
        in = w;
    }
    *out = jv_int(n);
    return true;
}

JFILTER(format) {
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    if (!ok) return false;
    if (a->npos && a->nkw) return jx_fail(x, at, "can't handle positional and keyword arguments at the same time");
    if (a->nkw) {
        jdict *d = jd_new(x->a, a->nkw);
        for (uint32_t i = 0; d && i < a->nkw; i++)
            if (!jd_set(x->a, d, jv_strv(a->kw_names[i], (uint32_t)strlen(a->kw_names[i]), 0), a->kw[i])) d = NULL;
        if (!d) return jx_alloc_failed(x, at);
        return jstr_percent(x, at, s, jv_dict(d), out);
    }
    jlist *t = jl_new(x, a->npos);
    if (!t) return jx_alloc_failed(x, at);
    jv_copy(t->v, a->pos, a->npos);
    t->n = a->npos;
    return jstr_percent(x, at, s, jv_list(t, JF_TUPLE), out);
}

JFILTER(truncate) {
    BIND(0, "length", "killwords", "end", "leeway");
    bool ok;
    jv s = jf_soft_str(x, at, v, &ok);
    if (!ok) return false;
    int64_t length = arg[0].t == JV_INT ? arg[0].u.i : 255, leeway = arg[3].t == JV_INT ? arg[3].u.i : 5;
    jv end = arg[2].t == JV_STR ? arg[2] : jv_strv("...", 3, 0);
    int64_t endn = (int64_t)u8_len(end.u.s, end.n), len = (int64_t)u8_len(s.u.s, s.n);
    if (length < endn) return jx_fail(x, at, "expected length >= %lld, got %lld", (long long)endn, (long long)length);
    if (len <= length + leeway) {
        *out = s;
        return true;
    }
    size_t cut = u8_offset(s.u.s, s.n, (size_t)(length - endn));
    if (!(GIVEN(arg[1]) && jv_truthy(arg[1]))) {
        size_t k = cut;
        while (k > 0 && s.u.s[k - 1] != ' ') k--;
        if (k > 0) cut = k - 1;
    }
    jbuf b = {.a = x->a};
    jb_put(&b, s.u.s, cut);
    jb_put(&b, end.u.s, end.n);
    *out = jb_str(&b, 0);
    return !b.fail || jx_alloc_failed(x, at);
}

JFILTER(attr) {
    BIND(1, "name");
    if (arg[0].t != JV_STR) return jx_fail(x, at, "attr: the name must be a string");
    if (v.t == JV_DICT) { /* only real attributes, not items */
        jv m;
        if (!jv_getattr(x, at, jv_dict(jd_new(x->a, 0)), arg[0].u.s, arg[0].n, &m)) return false;
        if (m.t != JV_UNDEF) return jv_getattr(x, at, v, arg[0].u.s, arg[0].n, out);
        *out = jv_undef_msg(x, "'dict object' has no attribute '%s'", arg[0].u.s);
        return true;
    }
    return jv_getattr(x, at, v, arg[0].u.s, arg[0].n, out);
}

static const struct {
    const char *name;
    jbuiltin_fn fn;
} FILTERS[] = {
    {"abs", jf_abs},         {"attr", jf_attr},       {"batch", jf_batch},       {"capitalize", jf_capitalize},
    {"center", jf_center},   {"count", jf_length},    {"d", jf_default},         {"default", jf_default},
    {"dictsort", jf_dictsort}, {"e", jf_escape},      {"escape", jf_escape},     {"first", jf_first},
    {"float", jf_float},     {"forceescape", jf_escape}, {"format", jf_format},  {"indent", jf_indent},
    {"int", jf_int},         {"items", jf_items},     {"join", jf_join},         {"last", jf_last},
    {"length", jf_length},   {"list", jf_list},       {"lower", jf_lower},       {"map", jf_map},
    {"max", jf_max},         {"min", jf_min},         {"reject", jf_reject},     {"rejectattr", jf_rejectattr},
    {"replace", jf_replace}, {"reverse", jf_reverse}, {"round", jf_round},       {"safe", jf_safe},
    {"select", jf_select},   {"selectattr", jf_selectattr}, {"sort", jf_sort},   {"string", jf_string},
    {"sum", jf_sum},         {"title", jf_title},     {"tojson", jf_tojson},     {"trim", jf_trim},
    {"truncate", jf_truncate}, {"unique", jf_unique}, {"upper", jf_upper},       {"wordcount", jf_wordcount},
};

jbuiltin_fn jfilter_lookup(const char *name) {
    for (size_t i = 0; i < sizeof FILTERS / sizeof FILTERS[0]; i++)
        if (!strcmp(FILTERS[i].name, name)) return FILTERS[i].fn;
    return NULL;
}

bool jfilter_run(jx *x, const jnode *at, const char *name, jv v, const jargs *a, jv *out) {
    jbuiltin_fn fn = jfilter_lookup(name);
    if (!fn) return jx_fail(x, at, "No filter named '%s'.", name);
    jnode tmp = *at;
    tmp.name = name;
    return jx_step(x, at, 1) && fn(x, &tmp, v, a, out);
}
