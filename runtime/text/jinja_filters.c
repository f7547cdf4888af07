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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

#define GIVEN(v) (!((v).t == JV_UNDEF && !(v).u.s))
#define BIND(req, ...)                                                                                   \
    static const char *const ps_[] = {__VA_ARGS__};                                                      \
    jv arg[sizeof ps_ / sizeof ps_[0]];                                                                  \
    if (!jargs_bind(x, at, at->name, a, ps_, sizeof ps_ / sizeof ps_[0], req, arg)) return false
#define NOARGS()                                                                                         \
    if (!jargs_bind(x, at, at->name, a, NULL, 0, 0, NULL)) return false
#define FILTER(name) static bool f_##name(jx *x, const jnode *at, jv v, const jargs *a, jv *out)

static jv soft_str(jx *x, const jnode *at, jv v, bool *ok) {
    jv s;
    *ok = jv_stringify(x, at, v, &s);
    return s;
}

static bool gen(jx *x, const jnode *at, jlist *l, jv *out) {
    (void)x;
    (void)at;
    *out = jv_list(l, JF_GEN);
    return true;
}

FILTER(tojson) {
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

FILTER(length) {
    NOARGS();
    int64_t n = 0;
    if (!length_of(x, at, v, &n)) return false;
    *out = jv_int(n);
    return true;
}

FILTER(trim) {
    BIND(0, "chars");
    bool ok;
    jv s = soft_str(x, at, v, &ok);
    if (!ok) return false;
    if (GIVEN(arg[0]) && arg[0].t != JV_NONE && arg[0].t != JV_STR)
        return jx_fail(x, at, "strip arg must be None or str");
    return jstr_strip(x, s, arg[0], true, true, out);
}

FILTER(string) {
    NOARGS();
    return jv_stringify(x, at, v, out);
}

FILTER(default) {
    BIND(0, "default_value", "boolean");
    if (v.t == JV_UNDEF || (GIVEN(arg[1]) && jv_truthy(arg[1]) && !jv_truthy(v)))
        *out = GIVEN(arg[0]) ? arg[0] : jv_strv("", 0, 0);
    else
        *out = v;
    return true;
}

static bool map_attr(jx *x, const jnode *at, jlist *l, jv attribute, jv dflt, jlist **out) {
    jlist *m = jl_new(x, l->n);
    if (!m) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        jv item;
        if (!jv_attr_path(x, at, l->v[i], attribute, &item)) return false;
        if (item.t == JV_UNDEF && GIVEN(dflt) && dflt.t != JV_NONE) item = dflt;
        m->v[m->n++] = item;
    }
    *out = m;
    return true;
}

FILTER(join) {
    BIND(0, "d", "attribute");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !map_attr(x, at, l, arg[1], jv_undef(), &l)) return false;
    jv sep = jv_strv("", 0, 0);
    if (GIVEN(arg[0]) && !jv_stringify(x, at, arg[0], &sep)) return false;
    jbuf b = {.a = x->a};
    for (uint32_t i = 0; i < l->n; i++) {
        if (i) jb_put(&b, sep.u.s, sep.n);
        if (!jv_to_str(x, at, l->v[i], &b)) return false;
    }
    if (b.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&b, 0);
    return true;
}

static bool dict_items(jx *x, const jnode *at, jdict *d, jlist **out) {
    jlist *l = jl_new(x, d->n);
    if (!l) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < d->n; i++) {
        jlist *p = jl_new(x, 2);
        if (!p) return jx_alloc_failed(x, at);
        p->v[0] = d->k[i];
        p->v[1] = d->v[i];
        p->n = 2;
        l->v[l->n++] = jv_list(p, JF_TUPLE);
    }
    *out = l;
    return true;
}

FILTER(items) {
    NOARGS();
    jlist *l;
    if (v.t == JV_UNDEF) {
        if (!(l = jl_new(x, 0))) return jx_alloc_failed(x, at);
        return gen(x, at, l, out);
    }
    if (v.t != JV_DICT) return jx_fail(x, at, "Can only get item pairs from a mapping.");
    return dict_items(x, at, v.u.d, &l) && gen(x, at, l, out);
}

static bool case_filter(jx *x, const jnode *at, jv v, const jargs *a, jv *out, int mode) {
    NOARGS();
    bool ok;
    jv s = soft_str(x, at, v, &ok);
    return ok && (jstr_case(x, s, mode, out) || jx_alloc_failed(x, at));
}
FILTER(lower) { return case_filter(x, at, v, a, out, 0); }
FILTER(upper) { return case_filter(x, at, v, a, out, 1); }
FILTER(capitalize) { return case_filter(x, at, v, a, out, 3); }

FILTER(title) { /* jinja2's own: words split at runs of "-", whitespace and opening brackets */
    NOARGS();
    bool ok;
    jv s = soft_str(x, at, v, &ok);
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

FILTER(safe) {
    NOARGS();
    if (!jv_stringify(x, at, v, out)) return false;
    out->fl |= JF_MARKUP;
    return true;
}

FILTER(escape) {
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
static bool sort_keys(jx *x, const jnode *at, jv *keys, uint32_t *idx, uint32_t n, bool reverse) {
    uint32_t *tmp = ja_alloc(x->a, (n + 1) * sizeof *tmp);
    if (!tmp) return jx_alloc_failed(x, at);
    if (!jx_step(x, at, n / 16)) return false;
    for (uint32_t w = 1; w < n; w *= 2) {
        for (uint32_t lo = 0; lo < n; lo += 2 * w) {
            uint32_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                bool lt;
                /* take the right one first only when it is strictly before the left one */
                if (!(reverse ? jv_lt(x, at, keys[idx[i]], keys[idx[j]], &lt) : jv_lt(x, at, keys[idx[j]], keys[idx[i]], &lt)))
                    return false;
                tmp[k++] = lt ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
    return true;
}

static bool fold(jx *x, jv v, bool case_sensitive, jv *out) {
    if (!case_sensitive && v.t == JV_STR) return jstr_case(x, v, 0, out);
    *out = v;
    return true;
}

FILTER(dictsort) {
    BIND(0, "case_sensitive", "by", "reverse");
    if (v.t != JV_DICT) return jx_fail(x, at, "'%s' object has no attribute 'items'", jv_type_name(v));
    int pos = 0;
    if (GIVEN(arg[1])) {
        if (arg[1].t == JV_STR && arg[1].n == 5 && !memcmp(arg[1].u.s, "value", 5)) pos = 1;
        else if (!(arg[1].t == JV_STR && arg[1].n == 3 && !memcmp(arg[1].u.s, "key", 3)))
            return jx_fail(x, at, "You can only sort by either \"key\" or \"value\"");
    }
    jlist *l;
    if (!dict_items(x, at, v.u.d, &l)) return false;
    jv *keys = ja_alloc(x->a, (l->n + 1) * sizeof *keys);
    uint32_t *idx = ja_alloc(x->a, (l->n + 1) * sizeof *idx);
    if (!keys || !idx) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        idx[i] = i;
        if (!fold(x, l->v[i].u.l->v[pos], GIVEN(arg[0]) && jv_truthy(arg[0]), &keys[i])) return jx_alloc_failed(x, at);
    }
    if (!sort_keys(x, at, keys, idx, l->n, GIVEN(arg[2]) && jv_truthy(arg[2]))) return false;
    jlist *r = jl_new(x, l->n);
    if (!r) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) r->v[i] = l->v[idx[i]];
    r->n = l->n;
    *out = jv_list(r, 0);
    return true;
}

FILTER(sort) {
    BIND(0, "reverse", "case_sensitive", "attribute");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jv *keys = ja_alloc(x->a, (l->n + 1) * sizeof *keys);
    uint32_t *idx = ja_alloc(x->a, (l->n + 1) * sizeof *idx);
    if (!keys || !idx) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        idx[i] = i;
        jv k = l->v[i];
        if (GIVEN(arg[2]) && arg[2].t != JV_NONE && !jv_attr_path(x, at, k, arg[2], &k)) return false;
        if (!fold(x, k, GIVEN(arg[1]) && jv_truthy(arg[1]), &k)) return jx_alloc_failed(x, at);
        jlist *one = jl_new(x, 1); /* make_multi_attrgetter: a list of one key */
        if (!one) return jx_alloc_failed(x, at);
        one->v[0] = k;
        one->n = 1;
        keys[i] = jv_list(one, 0);
    }
    if (!sort_keys(x, at, keys, idx, l->n, GIVEN(arg[0]) && jv_truthy(arg[0]))) return false;
    jlist *r = jl_new(x, l->n);
    if (!r) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) r->v[i] = l->v[idx[i]];
    r->n = l->n;
    *out = jv_list(r, 0);
    return true;
}

FILTER(list) {
    NOARGS();
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jlist *c = jl_new(x, l->n);
    if (!c) return jx_alloc_failed(x, at);
    memcpy(c->v, l->v, l->n * sizeof(jv));
    c->n = l->n;
    *out = jv_list(c, 0);
    return true;
}

FILTER(replace) {
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
static bool select_common(jx *x, const jnode *at, jv v, const jargs *a, jv *out, bool keep, bool by_attr) {
    jlist *r = jl_new(x, 0);
    if (!r) return jx_alloc_failed(x, at);
    if (!jv_truthy(v)) return gen(x, at, r, out);
    uint32_t off = 0;
    jv attr = jv_undef();
    if (by_attr) {
        if (a->npos < 1) return jx_fail(x, at, "Missing parameter for attribute name");
        attr = a->pos[0];
        off = 1;
    }
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    for (uint32_t i = 0; i < l->n; i++) {
        jv item = l->v[i];
        if (by_attr && !jv_attr_path(x, at, item, attr, &item)) return false;
        bool t;
        if (a->npos > off) {
            jv name = a->pos[off];
            if (name.t != JV_STR) return jx_fail(x, at, "test name must be a string");
            jargs rest = {a->pos + off + 1, a->npos - off - 1, a->kw_names, a->kw, a->nkw};
            if (!jtest_run(x, at, name.u.s, item, &rest, &t)) return false;
        } else {
            t = jv_truthy(item);
        }
        if (t == keep && !jl_push(x, r, l->v[i])) return jx_alloc_failed(x, at);
    }
    return gen(x, at, r, out);
}
FILTER(select) { return select_common(x, at, v, a, out, true, false); }
FILTER(reject) { return select_common(x, at, v, a, out, false, false); }
FILTER(selectattr) { return select_common(x, at, v, a, out, true, true); }
FILTER(rejectattr) { return select_common(x, at, v, a, out, false, true); }

FILTER(map) {
    jlist *r = jl_new(x, 0);
    if (!r) return jx_alloc_failed(x, at);
    if (!jv_truthy(v)) return gen(x, at, r, out);
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    if (!a->npos) {
        jv attribute = jv_undef(), dflt = jv_undef();
        for (uint32_t k = 0; k < a->nkw; k++) {
            if (!strcmp(a->kw_names[k], "attribute")) attribute = a->kw[k];
            else if (!strcmp(a->kw_names[k], "default")) dflt = a->kw[k];
            else return jx_fail(x, at, "Unexpected keyword argument '%s'", a->kw_names[k]);
        }
        if (!GIVEN(attribute)) return jx_fail(x, at, "map requires a filter argument");
        return map_attr(x, at, l, attribute, dflt, &r) && gen(x, at, r, out);
    }
    if (a->pos[0].t != JV_STR) return jx_fail(x, at, "filter name must be a string");
    jargs rest = {a->pos + 1, a->npos - 1, a->kw_names, a->kw, a->nkw};
    for (uint32_t i = 0; i < l->n; i++) {
        jv m;
        if (!jfilter_run(x, at, a->pos[0].u.s, l->v[i], &rest, &m)) return false;
        if (!jl_push(x, r, m)) return jx_alloc_failed(x, at);
    }
    return gen(x, at, r, out);
}

FILTER(indent) {
    BIND(0, "width", "first", "blank");
    bool ok;
    jv s = soft_str(x, at, v, &ok);
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

static bool parse_int_str(jv s, int64_t base, int64_t *out) {
    char buf[128];
    size_t m = 0;
    for (uint32_t i = 0; i < s.n && m + 1 < sizeof buf; i++)
        if (s.u.s[i] != '_') buf[m++] = s.u.s[i];
    if (m + 1 >= sizeof buf) return false;
    buf[m] = 0;
    char *p = buf;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r')) p++;
    if (!*p) return false;
    char *end;
    long long v = strtoll(p, &end, (int)base);
    while (*end == ' ' || (*end >= '\t' && *end <= '\r')) end++;
    if (*end || end == p) return false;
    *out = v;
    return true;
}

FILTER(int) {
    BIND(0, "default", "base");
    jv dflt = GIVEN(arg[0]) ? arg[0] : jv_int(0);
    int64_t base = arg[1].t == JV_INT ? arg[1].u.i : 10, i;
    if (v.t == JV_INT || v.t == JV_BOOL) *out = jv_int(v.t == JV_INT ? v.u.i : v.u.b);
    else if (v.t == JV_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) *out = jv_int((int64_t)v.u.f);
    else if (v.t == JV_STR && parse_int_str(v, base, &i)) *out = jv_int(i);
    else if (v.t == JV_STR) {
        char buf[128];
        snprintf(buf, sizeof buf, "%.*s", (int)(v.n < 127 ? v.n : 127), v.u.s);
        char *end;
        double d = strtod(buf, &end);
        *out = end != buf && !*end && isfinite(d) && fabs(d) < 9.2e18 ? jv_int((int64_t)d) : dflt;
    } else
        *out = dflt;
    return true;
}

FILTER(float) {
    BIND(0, "default");
    jv dflt = GIVEN(arg[0]) ? arg[0] : jv_float(0.0);
    if (v.t == JV_INT || v.t == JV_BOOL) *out = jv_float(v.t == JV_INT ? (double)v.u.i : v.u.b);
    else if (v.t == JV_FLOAT) *out = v;
    else if (v.t == JV_STR) {
        char buf[128];
        snprintf(buf, sizeof buf, "%.*s", (int)(v.n < 127 ? v.n : 127), v.u.s);
        char *end;
        double d = strtod(buf, &end);
        while (*end == ' ' || *end == '\n' || *end == '\t') end++;
        *out = end != buf && !*end ? jv_float(d) : dflt;
    } else
        *out = dflt;
    return true;
}

FILTER(unique) {
    BIND(0, "case_sensitive", "attribute");
    jlist *l, *r = jl_new(x, 0), *seen = jl_new(x, 0);
    if (!r || !seen) return jx_alloc_failed(x, at);
    if (!jv_iter(x, at, v, &l)) return false;
    jdict *set = jd_new(x->a, 0);
    if (!set) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        jv k = l->v[i], dummy;
        if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, k, arg[1], &k)) return false;
        if (!fold(x, k, GIVEN(arg[0]) && jv_truthy(arg[0]), &k)) return jx_alloc_failed(x, at);
        if (!jv_hashable(k)) return jx_fail(x, at, "unhashable type: '%s'", jv_type_name(k));
        if (jd_get(set, k, &dummy)) continue;
        if (!jd_set(x->a, set, k, jv_none()) || !jl_push(x, r, l->v[i])) return jx_alloc_failed(x, at);
    }
    (void)seen;
    return gen(x, at, r, out);
}

static bool min_max(jx *x, const jnode *at, jv v, const jargs *a, jv *out, bool want_max) {
    BIND(0, "case_sensitive", "attribute");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    if (!l->n) {
        *out = jv_undef_msg(x, "No aggregated item, sequence was empty.");
        return true;
    }
    jv best = l->v[0], bk;
    if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, best, arg[1], &best)) return false;
    best = l->v[0];
    bk = best;
    if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, l->v[0], arg[1], &bk)) return false;
    if (!fold(x, bk, GIVEN(arg[0]) && jv_truthy(arg[0]), &bk)) return jx_alloc_failed(x, at);
    for (uint32_t i = 1; i < l->n; i++) {
        jv k = l->v[i];
        if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, k, arg[1], &k)) return false;
        if (!fold(x, k, GIVEN(arg[0]) && jv_truthy(arg[0]), &k)) return jx_alloc_failed(x, at);
        bool lt;
        if (!(want_max ? jv_lt(x, at, bk, k, &lt) : jv_lt(x, at, k, bk, &lt))) return false;
        if (lt) best = l->v[i], bk = k;
    }
    *out = best;
    return true;
}
FILTER(min) { return min_max(x, at, v, a, out, false); }
FILTER(max) { return min_max(x, at, v, a, out, true); }

FILTER(first) {
    NOARGS();
    if (v.t == JV_LIST && (v.fl & JF_GEN)) {
        jlist *l = v.u.l;
        if (l->pos < l->n) {
            *out = l->v[l->pos++];
            return true;
        }
        *out = jv_undef_msg(x, "No first item, sequence was empty.");
        return true;
    }
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    *out = l->n ? l->v[0] : jv_undef_msg(x, "No first item, sequence was empty.");
    return true;
}

FILTER(last) {
    NOARGS();
    if (v.t == JV_LIST && (v.fl & JF_GEN)) return jx_fail(x, at, "'generator' object is not reversible");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    *out = l->n ? l->v[l->n - 1] : jv_undef_msg(x, "No last item, sequence was empty.");
    return true;
}

FILTER(reverse) {
    NOARGS();
    if (v.t == JV_STR) return jv_slice(x, at, v, jv_none(), jv_none(), jv_int(-1), out);
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jlist *r = jl_new(x, l->n);
    if (!r) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) r->v[i] = l->v[l->n - 1 - i];
    r->n = l->n;
    *out = jv_list(r, (v.t == JV_LIST && (v.fl & JF_GEN)) ? 0 : JF_GEN);
    return true;
}

FILTER(abs) {
    NOARGS();
    if (v.t == JV_INT) *out = v.u.i == INT64_MIN ? jv_float(9.223372036854775808e18) : jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    else if (v.t == JV_BOOL) *out = jv_int(v.u.b);
    else if (v.t == JV_FLOAT) *out = jv_float(fabs(v.u.f));
    else return jx_fail(x, at, "bad operand type for abs(): '%s'", jv_type_name(v));
    return true;
}

FILTER(round) {
    BIND(0, "precision", "method");
    int64_t prec = arg[0].t == JV_INT ? arg[0].u.i : 0;
    int method = 0;
    if (GIVEN(arg[1])) {
        if (arg[1].t == JV_STR && !strcmp(arg[1].u.s, "ceil")) method = 1;
        else if (arg[1].t == JV_STR && !strcmp(arg[1].u.s, "floor")) method = 2;
        else if (!(arg[1].t == JV_STR && !strcmp(arg[1].u.s, "common")))
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

FILTER(sum) {
    BIND(0, "attribute", "start");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jv acc = GIVEN(arg[1]) ? arg[1] : jv_int(0);
    for (uint32_t i = 0; i < l->n; i++) {
        jv item = l->v[i];
        if (GIVEN(arg[0]) && arg[0].t != JV_NONE && !jv_attr_path(x, at, item, arg[0], &item)) return false;
        if (!jv_binop(x, at, OP_ADD, acc, item, &acc)) return false;
    }
    *out = acc;
    return true;
}

FILTER(center) {
    BIND(0, "width");
    bool ok, found;
    jv s = soft_str(x, at, v, &ok);
    jv w = GIVEN(arg[0]) ? arg[0] : jv_int(80);
    jargs ca = {&w, 1, NULL, NULL, 0};
    return ok && jstr_method(x, at, s, "center", &ca, out, &found);
}

FILTER(wordcount) {
    NOARGS();
    bool ok;
    jv s = soft_str(x, at, v, &ok);
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

FILTER(format) {
    bool ok;
    jv s = soft_str(x, at, v, &ok);
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
    memcpy(t->v, a->pos, a->npos * sizeof(jv));
    t->n = a->npos;
    return jstr_percent(x, at, s, jv_list(t, JF_TUPLE), out);
}

FILTER(truncate) {
    BIND(0, "length", "killwords", "end", "leeway");
    bool ok;
    jv s = soft_str(x, at, v, &ok);
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

FILTER(batch) {
    BIND(1, "linecount", "fill_with");
    if (arg[0].t != JV_INT || arg[0].u.i <= 0) return jx_fail(x, at, "batch: linecount must be a positive integer");
    jlist *l, *r = jl_new(x, 0), *cur = NULL;
    if (!r || !jv_iter(x, at, v, &l)) return r ? false : jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        if (!cur && !(cur = jl_new(x, 0))) return jx_alloc_failed(x, at);
        if (!jl_push(x, cur, l->v[i])) return jx_alloc_failed(x, at);
        if ((int64_t)cur->n == arg[0].u.i) {
            if (!jl_push(x, r, jv_list(cur, 0))) return jx_alloc_failed(x, at);
            cur = NULL;
        }
    }
    if (cur) {
        while (GIVEN(arg[1]) && arg[1].t != JV_NONE && (int64_t)cur->n < arg[0].u.i)
            if (!jl_push(x, cur, arg[1])) return jx_alloc_failed(x, at);
        if (!jl_push(x, r, jv_list(cur, 0))) return jx_alloc_failed(x, at);
    }
    return gen(x, at, r, out);
}

FILTER(attr) {
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
    {"abs", f_abs},         {"attr", f_attr},       {"batch", f_batch},       {"capitalize", f_capitalize},
    {"center", f_center},   {"count", f_length},    {"d", f_default},         {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape},      {"escape", f_escape},     {"first", f_first},
    {"float", f_float},     {"forceescape", f_escape}, {"format", f_format},  {"indent", f_indent},
    {"int", f_int},         {"items", f_items},     {"join", f_join},         {"last", f_last},
    {"length", f_length},   {"list", f_list},       {"lower", f_lower},       {"map", f_map},
    {"max", f_max},         {"min", f_min},         {"reject", f_reject},     {"rejectattr", f_rejectattr},
    {"replace", f_replace}, {"reverse", f_reverse}, {"round", f_round},       {"safe", f_safe},
    {"select", f_select},   {"selectattr", f_selectattr}, {"sort", f_sort},   {"string", f_string},
    {"sum", f_sum},         {"title", f_title},     {"tojson", f_tojson},     {"trim", f_trim},
    {"truncate", f_truncate}, {"unique", f_unique}, {"upper", f_upper},       {"wordcount", f_wordcount},
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
