/*
 * runtime/text/jinja_filters_seq.c — jinja2's filters over sequences and
 * mappings: join, items, dictsort, sort, list, select / reject (and -attr),
 * map, unique, min, max, first, last, reverse, sum, batch. Those that are
 * generators in jinja2 return one-shot generator values (see
 * jinja_filters.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

static bool gen(jx *x, const jnode *at, jlist *l, jv *out) {
    (void)x;
    (void)at;
    *out = jv_list(l, JF_GEN);
    return true;
}

static bool map_attr(jx *x, const jnode *at, jlist *l, jv attribute, jv dflt, jlist **out) {
    jlist *m = jl_new(x, l->n);
    if (!m) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        jv item;
        if (!jv_attr_path(x, at, l->v[i], attribute, dflt, &item)) return false;
        m->v[m->n++] = item;
    }
    *out = m;
    return true;
}

JFILTER(join) {
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

JFILTER(items) {
    NOARGS();
    jlist *l;
    if (v.t == JV_UNDEF) {
        if (!(l = jl_new(x, 0))) return jx_alloc_failed(x, at);
        return gen(x, at, l, out);
    }
    if (v.t != JV_DICT) return jx_fail(x, at, "Can only get item pairs from a mapping.");
    return dict_items(x, at, v.u.d, &l) && gen(x, at, l, out);
}

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
        for (uint32_t k = 0; k < n; k++) idx[k] = tmp[k];
    }
    return true;
}

/* sorted(reverse=...) takes a bool or an int */
static bool reverse_ok(jx *x, const jnode *at, jv r) {
    if (!GIVEN(r) || r.t == JV_BOOL || r.t == JV_INT) return true;
    return jx_fail(x, at, "'%s' object cannot be interpreted as an integer", jv_type_name(r));
}

static bool fold(jx *x, jv v, bool case_sensitive, jv *out) {
    if (!case_sensitive && v.t == JV_STR) return jstr_case(x, v, 0, out);
    *out = v;
    return true;
}

JFILTER(dictsort) {
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
    if (!reverse_ok(x, at, arg[2])) return false;
    if (!sort_keys(x, at, keys, idx, l->n, GIVEN(arg[2]) && jv_truthy(arg[2]))) return false;
    jlist *r = jl_new(x, l->n);
    if (!r) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) r->v[i] = l->v[idx[i]];
    r->n = l->n;
    *out = jv_list(r, 0);
    return true;
}

JFILTER(sort) {
    BIND(0, "reverse", "case_sensitive", "attribute");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jv *keys = ja_alloc(x->a, (l->n + 1) * sizeof *keys);
    uint32_t *idx = ja_alloc(x->a, (l->n + 1) * sizeof *idx);
    if (!keys || !idx) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        idx[i] = i;
        jv k = l->v[i];
        if (GIVEN(arg[2]) && arg[2].t != JV_NONE && !jv_attr_path(x, at, k, arg[2], jv_undef(), &k)) return false;
        if (!fold(x, k, GIVEN(arg[1]) && jv_truthy(arg[1]), &k)) return jx_alloc_failed(x, at);
        jlist *one = jl_new(x, 1); /* make_multi_attrgetter: a list of one key */
        if (!one) return jx_alloc_failed(x, at);
        one->v[0] = k;
        one->n = 1;
        keys[i] = jv_list(one, 0);
    }
    if (!reverse_ok(x, at, arg[0])) return false;
    if (!sort_keys(x, at, keys, idx, l->n, GIVEN(arg[0]) && jv_truthy(arg[0]))) return false;
    jlist *r = jl_new(x, l->n);
    if (!r) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) r->v[i] = l->v[idx[i]];
    r->n = l->n;
    *out = jv_list(r, 0);
    return true;
}

JFILTER(list) {
    NOARGS();
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jlist *c = jl_new(x, l->n);
    if (!c) return jx_alloc_failed(x, at);
    jv_copy(c->v, l->v, l->n);
    c->n = l->n;
    *out = jv_list(c, 0);
    return true;
}

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
        if (by_attr && !jv_attr_path(x, at, item, attr, jv_undef(), &item)) return false;
        bool t;
        if (a->npos > off) {
            jv name = a->pos[off];
            if (name.t != JV_STR) return jx_fail(x, at, "test name must be a string");
            jargs rest = {a->pos + off + 1, a->npos - off - 1, a->kw_names, a->kw, a->nkw};
            if (!jtest_run(x, at, name, item, &rest, &t)) return false;
        } else {
            t = jv_truthy(item);
        }
        if (t == keep && !jl_push(x, r, l->v[i])) return jx_alloc_failed(x, at);
    }
    return gen(x, at, r, out);
}
JFILTER(select) { return select_common(x, at, v, a, out, true, false); }
JFILTER(reject) { return select_common(x, at, v, a, out, false, false); }
JFILTER(selectattr) { return select_common(x, at, v, a, out, true, true); }
JFILTER(rejectattr) { return select_common(x, at, v, a, out, false, true); }

JFILTER(map) {
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

JFILTER(unique) {
    BIND(0, "case_sensitive", "attribute");
    jlist *l, *r = jl_new(x, 0), *seen = jl_new(x, 0);
    if (!r || !seen) return jx_alloc_failed(x, at);
    if (!jv_iter(x, at, v, &l)) return false;
    jdict *set = jd_new(x->a, 0);
    if (!set) return jx_alloc_failed(x, at);
    for (uint32_t i = 0; i < l->n; i++) {
        jv k = l->v[i], dummy;
        if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, k, arg[1], jv_undef(), &k)) return false;
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
    if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, best, arg[1], jv_undef(), &best)) return false;
    best = l->v[0];
    bk = best;
    if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, l->v[0], arg[1], jv_undef(), &bk)) return false;
    if (!fold(x, bk, GIVEN(arg[0]) && jv_truthy(arg[0]), &bk)) return jx_alloc_failed(x, at);
    for (uint32_t i = 1; i < l->n; i++) {
        jv k = l->v[i];
        if (GIVEN(arg[1]) && arg[1].t != JV_NONE && !jv_attr_path(x, at, k, arg[1], jv_undef(), &k)) return false;
        if (!fold(x, k, GIVEN(arg[0]) && jv_truthy(arg[0]), &k)) return jx_alloc_failed(x, at);
        bool lt;
        if (!(want_max ? jv_lt(x, at, bk, k, &lt) : jv_lt(x, at, k, bk, &lt))) return false;
        if (lt) best = l->v[i], bk = k;
    }
    *out = best;
    return true;
}
JFILTER(min) { return min_max(x, at, v, a, out, false); }
JFILTER(max) { return min_max(x, at, v, a, out, true); }

JFILTER(first) {
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

JFILTER(last) {
    NOARGS();
    if (v.t == JV_LIST && (v.fl & JF_GEN)) return jx_fail(x, at, "'generator' object is not reversible");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    *out = l->n ? l->v[l->n - 1] : jv_undef_msg(x, "No last item, sequence was empty.");
    return true;
}

JFILTER(reverse) {
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

JFILTER(sum) {
    BIND(0, "attribute", "start");
    jlist *l;
    if (!jv_iter(x, at, v, &l)) return false;
    jv acc = GIVEN(arg[1]) ? arg[1] : jv_int(0);
    for (uint32_t i = 0; i < l->n; i++) {
        jv item = l->v[i];
        if (GIVEN(arg[0]) && arg[0].t != JV_NONE && !jv_attr_path(x, at, item, arg[0], jv_undef(), &item)) return false;
        if (!jv_binop(x, at, OP_ADD, acc, item, &acc)) return false;
    }
    *out = acc;
    return true;
}

JFILTER(batch) {
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

