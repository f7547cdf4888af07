/*
 * runtime/text/jinja_eval.c — running the syntax tree.
 *
 * Scopes follow jinja2's frames: each loop iteration, macro call, call
 * block, filter block, block set and with-block gets a fresh scope whose
 * parent is the scope the construct was written in (macros: the scope of
 * their definition, read when called); if-blocks share their parent's. A
 * set writes to the current scope, so a set inside a loop does not outlive
 * the iteration (namespace() objects carry state out). Names resolve
 * through the scopes, then the render's variables, then the globals.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

bool jx_fail(jx *x, const jnode *at, const char *fmt, ...) {
    if (x->err) return false;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg) + 64;
    x->err = malloc(n);
    if (x->err) {
        if (at) snprintf(x->err, n, "%u:%u: %s", at->line, at->col, msg);
        else snprintf(x->err, n, "%s", msg);
    }
    return false;
}

bool jx_alloc_failed(jx *x, const jnode *at) {
    return jx_fail(x, at, "the template used more than the memory limit (%zu bytes)", x->lim.max_memory);
}

bool jx_step(jx *x, const jnode *at, uint64_t n) {
    x->steps += n;
    if (x->steps > x->lim.max_steps)
        return jx_fail(x, at, "the template ran too long (more than %llu loop iterations, calls and KiB scanned)",
                       (unsigned long long)x->lim.max_steps);
    return true;
}

static bool out_put(jx *x, const jnode *at, const char *s, size_t n) {
    if (x->out->n + n > x->lim.max_output)
        return jx_fail(x, at, "the output is longer than the limit (%zu bytes)", x->lim.max_output);
    jb_put(x->out, s, n);
    return !x->out->fail || jx_alloc_failed(x, at);
}

/* ---- scopes ---- */

static jscope *scope_new(jx *x, jscope *parent) {
    jscope *s = ja_alloc(x->a, sizeof *s);
    if (s) s->parent = parent;
    return s;
}

static bool scope_set(jx *x, const jnode *at, jscope *s, const char *name, jv v) {
    if (!s->vars && !(s->vars = jd_new(x->a, 4))) return jx_alloc_failed(x, at);
    if (!jd_set(x->a, s->vars, jv_strv(name, (uint32_t)strlen(name), 0), v)) return jx_alloc_failed(x, at);
    return true;
}

static jv lookup(jx *x, jscope *s, const char *name) {
    size_t n = strlen(name);
    jv v;
    for (; s; s = s->parent)
        if (s->vars && jd_get_str(s->vars, name, n, &v)) return v;
    if (jd_get_str(x->vars, name, n, &v)) return v;
    if (jglobal_lookup(x, name, &v)) return v;
    return jv_undef_msg(x, "'%s' is undefined", name);
}

static bool assign(jx *x, jscope *s, const jnode *t, jv v) {
    if (t->kind == E_NAME) return scope_set(x, t, s, t->name, v);
    if (t->kind == E_NSREF) {
        jv ns = lookup(x, s, t->name);
        if (!jv_is_obj(ns, JO_NS)) return jx_fail(x, t, "cannot assign attribute on non-namespace object");
        jv attr = t->value;
        if (attr.n && attr.u.s[0] == '_')
            return jx_fail(x, t, "Chat templates cannot store underscore-prefixed attributes on a namespace, but got '%s'. "
                                 "Please rename the attribute.", attr.u.s);
        if (!jd_set(x->a, ns.u.o->u.ns, attr, v)) return jx_alloc_failed(x, t);
        return true;
    }
    /* a tuple of targets */
    jlist *items;
    if (v.t != JV_STR && v.t != JV_LIST && v.t != JV_DICT && v.t != JV_UNDEF)
        return jx_fail(x, t, "cannot unpack non-iterable %s object", jv_type_name(v));
    if (!jv_iter(x, t, v, &items)) return false;
    if (items->n < t->nv) return jx_fail(x, t, "not enough values to unpack (expected %u, got %u)", t->nv, items->n);
    if (items->n > t->nv) return jx_fail(x, t, "too many values to unpack (expected %u)", t->nv);
    for (uint32_t i = 0; i < t->nv; i++)
        if (!assign(x, s, t->v[i], items->v[i])) return false;
    return true;
}

/* ---- expressions ---- */

static bool eval_args(jx *x, jscope *s, const jnode *n, jargs *a, jv extra_kw, const char *extra_name) {
    uint32_t npos = n->nv, nkw = n->nw + (extra_name ? 1 : 0);
    jlist *dyn = NULL;
    jv dynkw = jv_none();
    if (n->c) {
        jv d;
        if (!jx_eval(x, s, n->c, &d) || !jv_iter(x, n->c, d, &dyn)) return false;
        npos += dyn->n;
    }
    if (n->d) {
        if (!jx_eval(x, s, n->d, &dynkw)) return false;
        if (dynkw.t != JV_DICT) return jx_fail(x, n->d, "argument after ** must be a mapping, not %s", jv_type_name(dynkw));
        nkw += dynkw.u.d->n;
    }
    jv *pos = ja_alloc(x->a, (npos + 1) * sizeof *pos), *kw = ja_alloc(x->a, (nkw + 1) * sizeof *kw);
    const char **names = ja_alloc(x->a, (nkw + 1) * sizeof *names);
    if (!pos || !kw || !names) return jx_alloc_failed(x, n);
    for (uint32_t i = 0; i < n->nv; i++)
        if (!jx_eval(x, s, n->v[i], &pos[i])) return false;
    for (uint32_t i = 0; dyn && i < dyn->n; i++) pos[n->nv + i] = dyn->v[i];
    uint32_t k = 0;
    for (uint32_t i = 0; i < n->nw; i++, k++) {
        names[k] = n->w[i]->name;
        if (!jx_eval(x, s, n->w[i]->a, &kw[k])) return false;
    }
    for (uint32_t i = 0; dynkw.t == JV_DICT && i < dynkw.u.d->n; i++, k++) {
        jv key = dynkw.u.d->k[i];
        if (key.t != JV_STR) return jx_fail(x, n->d, "keywords must be strings");
        names[k] = key.u.s;
        kw[k] = dynkw.u.d->v[i];
    }
    if (extra_name) names[k] = extra_name, kw[k++] = extra_kw;
    for (uint32_t i = 0; i < k; i++)
        for (uint32_t j = 0; j < i; j++)
            if (!strcmp(names[i], names[j])) return jx_fail(x, n, "got multiple values for keyword argument '%s'", names[i]);
    *a = (jargs){pos, npos, names, kw, k};
    return true;
}

/* An expression jinja2's optimizer folds: literals and containers of them. */
static bool is_const(const jnode *n) {
    if (n->kind == E_CONST) return true;
    if (n->kind == E_NEG || n->kind == E_POS) return is_const(n->a);
    if (n->kind != E_LIST && n->kind != E_TUPLE && n->kind != E_DICT) return false;
    for (uint32_t i = 0; i < n->nv; i++)
        if (!is_const(n->v[i])) return false;
    for (uint32_t i = 0; i < n->nw; i++)
        if (!is_const(n->w[i])) return false;
    return true;
}

/* A filter chain whose innermost operand is NULL takes `input` there. */
static bool eval_filter(jx *x, jscope *s, const jnode *n, const jv *input, jv *out) {
    jv v;
    if (n->a) {
        if (n->a->kind == E_FILTER && input ? !eval_filter(x, s, n->a, input, &v) : !jx_eval(x, s, n->a, &v)) return false;
    } else {
        v = *input;
    }
    jargs a;
    if (!eval_args(x, s, n, &a, jv_none(), NULL)) return false;
    if (!n->fn) return jx_fail(x, n, "No filter named '%s' found.", n->name);
    if (!jx_step(x, n, 1)) return false;
    return n->fn(x, n, v, &a, out);
}

static bool eval_seq(jx *x, jscope *s, const jnode *n, jv *out, uint8_t fl) {
    jlist *l = jl_new(x, n->nv);
    if (!l) return jx_alloc_failed(x, n);
    for (uint32_t i = 0; i < n->nv; i++)
        if (!jx_eval(x, s, n->v[i], &l->v[i])) return false;
    l->n = n->nv;
    *out = jv_list(l, fl);
    return true;
}

static bool eval_node(jx *x, jscope *s, const jnode *n, jv *out);

/* Nesting of statements and expressions across macro calls is bounded so
 * that a render never needs more than about 1 MiB of stack. */
#define MAX_NEST_TOTAL 2000

bool jx_eval(jx *x, jscope *s, const jnode *n, jv *out) {
    if (++x->nest > MAX_NEST_TOTAL) {
        x->nest--;
        return jx_fail(x, n, "the template nests too deeply (more than %d levels across macro calls)", MAX_NEST_TOTAL);
    }
    bool ok = eval_node(x, s, n, out);
    x->nest--;
    return ok;
}

static bool eval_node(jx *x, jscope *s, const jnode *n, jv *out) {
    jv a, b;
    switch (n->kind) {
    case E_CONST: *out = n->value; return true;
    case E_NAME: *out = lookup(x, s, n->name); return true;
    case E_GETATTR:
        return jx_eval(x, s, n->a, &a) && jv_getattr(x, n, a, n->value.u.s, n->value.n, out);
    case E_GETITEM:
        if (!jx_eval(x, s, n->a, &a)) return false;
        if (n->b->kind == E_SLICE) {
            jv p[3] = {jv_undef(), jv_undef(), jv_undef()};
            const jnode *parts[3] = {n->b->a, n->b->b, n->b->c};
            bool konst = is_const(n->a);
            for (int i = 0; i < 3; i++) {
                if (parts[i] && !jx_eval(x, s, parts[i], &p[i])) return false;
                konst = konst && (!parts[i] || is_const(parts[i]));
            }
            /* jinja2 folds a slice of constants at compile time through the sandbox's getitem,
             * where a TypeError gives an undefined value; at run time a slice is Python's own */
            if (konst && !jv_sliceable(a, p[0], p[1], p[2])) {
                *out = jv_undef_msg(x, "'%s object' has no element slice", jv_type_name(a));
                return true;
            }
            return jv_slice(x, n, a, p[0], p[1], p[2], out);
        }
        return jx_eval(x, s, n->b, &b) && jv_getitem(x, n, a, b, out);
    case E_CALL: {
        jargs args;
        if (!jx_eval(x, s, n->a, &a) || !eval_args(x, s, n, &args, jv_none(), NULL)) return false;
        return jv_call(x, n, a, &args, out);
    }
    case E_FILTER: return eval_filter(x, s, n, NULL, out);
    case E_TEST: {
        jargs args;
        if (!jx_eval(x, s, n->a, &a) || !eval_args(x, s, n, &args, jv_none(), NULL)) return false;
        if (!n->fn) return jx_fail(x, n, "No test named '%s' found.", n->name);
        return n->fn(x, n, a, &args, out);
    }
    case E_LIST: return eval_seq(x, s, n, out, 0);
    case E_TUPLE: return eval_seq(x, s, n, out, JF_TUPLE);
    case E_DICT: {
        jdict *d = jd_new(x->a, n->nv);
        if (!d) return jx_alloc_failed(x, n);
        for (uint32_t i = 0; i < n->nv; i++) {
            if (!jx_eval(x, s, n->v[i], &a) || !jx_eval(x, s, n->w[i], &b)) return false;
            if (!jv_hashable(a)) return jx_fail(x, n->v[i], "unhashable type: '%s'", jv_type_name(a));
            if (!jd_set(x->a, d, a, b)) return jx_alloc_failed(x, n);
        }
        *out = jv_dict(d);
        return true;
    }
    case E_NEG:
    case E_POS:
        if (!jx_eval(x, s, n->a, &a)) return false;
        if (a.t == JV_UNDEF) return jv_undef_fail(x, n, a);
        if (a.t == JV_FLOAT) *out = jv_float(n->kind == E_NEG ? -a.u.f : a.u.f);
        else if (a.t == JV_INT || a.t == JV_BOOL) {
            int64_t i = a.t == JV_INT ? a.u.i : a.u.b;
            if (n->kind == E_NEG && i == INT64_MIN) return jx_fail(x, n, "integer overflow");
            *out = jv_int(n->kind == E_NEG ? -i : i);
        } else {
            return jx_fail(x, n, "bad operand type for unary %c: '%s'", n->kind == E_NEG ? '-' : '+', jv_type_name(a));
        }
        return true;
    case E_NOT:
        if (!jx_eval(x, s, n->a, &a)) return false;
        *out = jv_bool(!jv_truthy(a));
        return true;
    case E_BIN: return jx_eval(x, s, n->a, &a) && jx_eval(x, s, n->b, &b) && jv_binop(x, n, n->op, a, b, out);
    case E_CONCAT: {
        jbuf buf = {.a = x->a};
        for (uint32_t i = 0; i < n->nv; i++)
            if (!jx_eval(x, s, n->v[i], &a) || !jv_to_str(x, n->v[i], a, &buf)) return false;
        if (buf.fail) return jx_alloc_failed(x, n);
        *out = jb_str(&buf, 0);
        return true;
    }
    case E_COMPARE: {
        if (!jx_eval(x, s, n->a, &a)) return false;
        for (uint32_t i = 0; i < n->nv; i++) {
            bool r;
            if (!jx_eval(x, s, n->v[i]->a, &b) || !jv_compare(x, n->v[i], n->v[i]->op, a, b, &r)) return false;
            if (!r) {
                *out = jv_bool(false);
                return true;
            }
            a = b;
        }
        *out = jv_bool(true);
        return true;
    }
    case E_AND:
    case E_OR:
        if (!jx_eval(x, s, n->a, &a)) return false;
        if (jv_truthy(a) == (n->kind == E_OR)) {
            *out = a;
            return true;
        }
        return jx_eval(x, s, n->b, out);
    case E_COND:
        if (!jx_eval(x, s, n->a, &a)) return false;
        if (jv_truthy(a)) return jx_eval(x, s, n->b, out);
        if (n->c) return jx_eval(x, s, n->c, out);
        *out = jv_undef_msg(x, "the inline if-expression on line %u evaluated to false and no else section was defined.",
                            n->line);
        return true;
    case E_SLICE: { /* a slice inside a tuple subscript (x[1:2, 3]): no container takes it as a key */
        jlist *l = jl_new(x, 0);
        if (!l) return jx_alloc_failed(x, n);
        *out = jv_list(l, 0);
        return true;
    }
    }
    return jx_fail(x, n, "cannot evaluate this expression");
}

/* ---- statements ---- */

static bool exec_body(jx *x, jscope *s, jnode *const *v, uint32_t n);

/* Runs body into a fresh buffer; the output as a str. */
static bool capture(jx *x, jscope *s, jnode *const *v, uint32_t n, jv *out) {
    jbuf buf = {.a = x->a}, *saved = x->out;
    x->out = &buf;
    bool ok = exec_body(x, s, v, n);
    x->out = saved;
    if (!ok) return false;
    if (buf.fail) return jx_alloc_failed(x, NULL);
    *out = jb_str(&buf, 0);
    return true;
}

static bool enter_call(jx *x, const jnode *at) {
    if (x->depth >= x->lim.max_depth)
        return jx_fail(x, at, "the template nests calls too deeply (more than %u macro calls or recursive loops)",
                       x->lim.max_depth);
    x->depth++;
    return jx_step(x, at, 1);
}

bool jx_call_macro(jx *x, const jnode *at, jobj *m, const jargs *a, jv *out) {
    const jnode *def = m->u.macro.def;
    const char *name = m->u.macro.name;
    if (!enter_call(x, at)) return false;
    jscope *s = scope_new(x, m->u.macro.closure);
    if (!s) return jx_alloc_failed(x, at);
    uint32_t np = def->nv, first_default = np - def->nw;
    bool *given = ja_alloc(x->a, np + 1);
    jlist *varargs = jl_new(x, 0);
    jdict *kwargs = jd_new(x->a, 0);
    if (!given || !varargs || !kwargs) return jx_alloc_failed(x, at);
    jv caller = m->u.macro.caller;
    bool have_caller = caller.t == JV_OBJ;
    for (uint32_t i = 0; i < a->npos; i++) {
        if (i < np) {
            if (!scope_set(x, at, s, def->v[i]->name, a->pos[i])) return false;
            given[i] = true;
        } else if (def->flags & NF_VARARGS) {
            if (!jl_push(x, varargs, a->pos[i])) return jx_alloc_failed(x, at);
        } else {
            return jx_fail(x, at, "macro '%s' takes not more than %u argument(s)", name, np);
        }
    }
    for (uint32_t k = 0; k < a->nkw; k++) {
        uint32_t i;
        for (i = 0; i < np; i++)
            if (!strcmp(def->v[i]->name, a->kw_names[k])) break;
        if (i < np) {
            if (given[i]) return jx_fail(x, at, "macro '%s' got multiple values for argument '%s'", name, def->v[i]->name);
            if (!scope_set(x, at, s, def->v[i]->name, a->kw[k])) return false;
            given[i] = true;
        } else if (!strcmp(a->kw_names[k], "caller") && (def->flags & NF_CALLER) && !have_caller) {
            caller = a->kw[k];
            have_caller = true;
        } else if (def->flags & NF_KWARGS) {
            if (!jd_set(x->a, kwargs, jv_strv(a->kw_names[k], (uint32_t)strlen(a->kw_names[k]), 0), a->kw[k]))
                return jx_alloc_failed(x, at);
        } else if (!strcmp(a->kw_names[k], "caller")) {
            return jx_fail(x, at, "macro '%s' was invoked with two values for the special caller argument. This is most "
                                  "likely a bug.", name);
        } else {
            return jx_fail(x, at, "macro '%s' takes no keyword argument '%s'", name, a->kw_names[k]);
        }
    }
    for (uint32_t i = 0; i < np; i++) {
        if (given[i]) continue;
        jv v;
        if (i >= first_default) {
            if (!jx_eval(x, s, def->w[i - first_default], &v)) return false;
        } else {
            v = jv_undef_msg(x, "parameter '%s' was not provided", def->v[i]->name);
        }
        if (!scope_set(x, at, s, def->v[i]->name, v)) return false;
    }
    if ((def->flags & NF_CALLER) &&
        !scope_set(x, at, s, "caller", have_caller ? caller : jv_undef_msg(x, "No caller defined")))
        return false;
    if ((def->flags & NF_VARARGS) && !scope_set(x, at, s, "varargs", jv_list(varargs, JF_TUPLE))) return false;
    if ((def->flags & NF_KWARGS) && !scope_set(x, at, s, "kwargs", jv_dict(kwargs))) return false;
    int ctl = x->ctl;
    bool ok = capture(x, s, def->b->v, def->b->nv, out);
    x->ctl = ctl;
    x->depth--;
    return ok;
}

static bool exec_for(jx *x, jscope *s, const jnode *n, jv iterable, uint32_t depth0);

bool jx_loop_call(jx *x, const jnode *at, jloop *l, const jargs *a, jv *out) {
    if (!(l->stmt->flags & NF_RECURSIVE)) return jx_fail(x, at, "Tried to call non recursive loop.  Maybe you forgot the 'recursive' modifier.");
    static const char *const p[] = {"iterable"};
    jv it;
    if (!jargs_bind(x, at, "loop", a, p, 1, 1, &it) || !enter_call(x, at)) return false;
    jbuf buf = {.a = x->a}, *saved = x->out;
    x->out = &buf;
    int ctl = x->ctl;
    bool ok = exec_for(x, l->scope, l->stmt, it, l->depth0 + 1);
    x->out = saved;
    x->ctl = ctl;
    x->depth--;
    if (!ok) return false;
    if (buf.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&buf, 0);
    return true;
}

static bool exec_for(jx *x, jscope *s, const jnode *n, jv iterable, uint32_t depth0) {
    jlist *items;
    if (!jv_iter(x, n->b, iterable, &items)) return false;
    if (n->c) { /* the loop's if-filter, with the target bound */
        jlist *kept = jl_new(x, items->n);
        if (!kept) return jx_alloc_failed(x, n);
        for (uint32_t i = 0; i < items->n; i++) {
            jscope *fs = scope_new(x, s);
            jv keep;
            if (!fs) return jx_alloc_failed(x, n);
            if (!jx_step(x, n, 1) || !assign(x, fs, n->a, items->v[i]) || !jx_eval(x, fs, n->c, &keep)) return false;
            if (jv_truthy(keep)) kept->v[kept->n++] = items->v[i];
        }
        items = kept;
    }
    if (items->n == 0) {
        jscope *es = scope_new(x, s);
        return es ? exec_body(x, es, n->w, n->nw) : jx_alloc_failed(x, n);
    }
    jloop *l = ja_alloc(x->a, sizeof *l);
    jobj *lo = jo_new(x, JO_LOOP);
    if (!l || !lo) return jx_alloc_failed(x, n);
    l->items = items;
    l->depth0 = depth0;
    l->stmt = n;
    l->scope = s;
    lo->u.loop = l;
    jv loopv = {.t = JV_OBJ, .u.o = lo};
    for (uint32_t i = 0; i < items->n; i++) {
        l->i = i;
        jscope *is = scope_new(x, s);
        if (!is) return jx_alloc_failed(x, n);
        if (!jx_step(x, n, 1) || !assign(x, is, n->a, items->v[i]) || !scope_set(x, n, is, "loop", loopv)) return false;
        if (!exec_body(x, is, n->v, n->nv)) return false;
        if (x->ctl == 1) {
            x->ctl = 0;
            break;
        }
        x->ctl = 0;
    }
    return true;
}

static bool exec_stmt(jx *x, jscope *s, const jnode *n) {
    jv v;
    switch (n->kind) {
    case S_DATA: return out_put(x, n, n->value.u.s, n->value.n);
    case S_PRINT: {
        if (!jx_eval(x, s, n->a, &v)) return false;
        if (v.t == JV_STR) return out_put(x, n, v.u.s, v.n);
        jbuf b = {.a = x->a};
        if (!jv_to_str(x, n, v, &b)) return false;
        if (b.fail) return jx_alloc_failed(x, n);
        return out_put(x, n, b.p ? b.p : "", b.n);
    }
    case S_IF:
        for (const jnode *c = n; c; c = c->c) {
            if (!jx_eval(x, s, c->a, &v)) return false;
            if (jv_truthy(v)) return exec_body(x, s, c->v, c->nv);
        }
        return exec_body(x, s, n->w, n->nw);
    case S_FOR: return jx_eval(x, s, n->b, &v) && exec_for(x, s, n, v, 0);
    case S_SET: return jx_eval(x, s, n->b, &v) && assign(x, s, n->a, v);
    case S_SETBLOCK: {
        jscope *bs = scope_new(x, s);
        if (!bs) return jx_alloc_failed(x, n);
        if (!capture(x, bs, n->v, n->nv, &v)) return false;
        if (n->c && !eval_filter(x, bs, n->c, &v, &v)) return false;
        return assign(x, s, n->a, v);
    }
    case S_FILTERBLOCK: {
        jscope *bs = scope_new(x, s);
        if (!bs) return jx_alloc_failed(x, n);
        if (!capture(x, bs, n->b->v, n->b->nv, &v) || !eval_filter(x, bs, n->a, &v, &v)) return false;
        jbuf b = {.a = x->a};
        if (!jv_to_str(x, n, v, &b)) return false;
        return out_put(x, n, b.p ? b.p : "", b.n);
    }
    case S_MACRO:
    case S_CALLBLOCK: {
        jobj *m = jo_new(x, JO_MACRO);
        if (!m) return jx_alloc_failed(x, n);
        m->u.macro.def = n;
        m->u.macro.closure = s;
        m->u.macro.name = n->name;
        m->u.macro.caller = jv_none();
        jv mv = {.t = JV_OBJ, .u.o = m};
        if (n->kind == S_MACRO) return scope_set(x, n, s, n->name, mv);
        jv fn;
        jargs a;
        const jnode *call = n->a;
        if (!jx_eval(x, s, call->a, &fn) || !eval_args(x, s, call, &a, mv, "caller")) return false;
        if (!jv_call(x, call, fn, &a, &v)) return false;
        jbuf b = {.a = x->a};
        if (!jv_to_str(x, n, v, &b)) return false;
        return out_put(x, n, b.p ? b.p : "", b.n);
    }
    case S_WITH: {
        jscope *ws = scope_new(x, s);
        if (!ws) return jx_alloc_failed(x, n);
        for (uint32_t i = 0; i < n->nv; i++)
            if (!jx_eval(x, s, n->w[i], &v) || !assign(x, ws, n->v[i], v)) return false;
        return exec_body(x, ws, n->b->v, n->b->nv);
    }
    case S_BREAK: x->ctl = 1; return true;
    case S_CONTINUE: x->ctl = 2; return true;
    case S_SCOPE: return exec_body(x, s, n->v, n->nv);
    }
    return jx_fail(x, n, "cannot run this statement");
}

static bool exec_body(jx *x, jscope *s, jnode *const *v, uint32_t n) {
    if (n && ++x->nest > MAX_NEST_TOTAL) {
        x->nest--;
        return jx_fail(x, v[0], "the template nests too deeply (more than %d levels across macro calls)", MAX_NEST_TOTAL);
    }
    bool ok = true;
    for (uint32_t i = 0; i < n && ok; i++) {
        ok = exec_stmt(x, s, v[i]);
        if (x->ctl) break;
    }
    if (n) x->nest--;
    return ok;
}

/* ---- loop objects ---- */

bool jloop_attr(jx *x, const jnode *at, jv obj, const char *name, size_t n, jv *out, bool *found) {
    *found = true;
    jobj *o = obj.u.o;
    if (o->kind == JO_CYCLER) {
        if ((n == 4 && !memcmp(name, "next", 4)) || (n == 5 && !memcmp(name, "reset", 5))) goto method;
        if (n == 7 && !memcmp(name, "current", 7)) {
            *out = o->u.cycler.items->n ? o->u.cycler.items->v[o->u.cycler.pos] : jv_none();
            return true;
        }
        *found = false;
        return true;
    }
    if (o->kind != JO_LOOP) {
        *found = false;
        return true;
    }
    jloop *l = o->u.loop;
    uint32_t len = l->items->n, i = l->i;
#define IS(s) (n == sizeof(s) - 1 && !memcmp(name, s, n))
    if (IS("index")) *out = jv_int(i + 1);
    else if (IS("index0")) *out = jv_int(i);
    else if (IS("revindex")) *out = jv_int(len - i);
    else if (IS("revindex0")) *out = jv_int(len - i - 1);
    else if (IS("first")) *out = jv_bool(i == 0);
    else if (IS("last")) *out = jv_bool(i + 1 == len);
    else if (IS("length")) *out = jv_int(len);
    else if (IS("depth")) *out = jv_int(l->depth0 + 1);
    else if (IS("depth0")) *out = jv_int(l->depth0);
    else if (IS("previtem")) *out = i > 0 ? l->items->v[i - 1] : jv_undef_msg(x, "there is no previous item");
    else if (IS("nextitem")) *out = i + 1 < len ? l->items->v[i + 1] : jv_undef_msg(x, "there is no next item");
    else if (IS("cycle") || IS("changed")) goto method;
    else *found = false;
#undef IS
    return true;
method:;
    return jx_make_method(x, at, obj, name, n, out);
}

bool jloop_method(jx *x, const jnode *at, jv self, const char *m, const jargs *a, jv *out) {
    jobj *o = self.u.o;
    if (o->kind == JO_CYCLER) {
        jlist *items = o->u.cycler.items;
        if (!jargs_bind(x, at, m, a, NULL, 0, 0, NULL)) return false;
        if (!strcmp(m, "reset")) {
            o->u.cycler.pos = 0;
            *out = jv_none();
            return true;
        }
        *out = items->n ? items->v[o->u.cycler.pos] : jv_none();
        if (items->n) o->u.cycler.pos = (o->u.cycler.pos + 1) % items->n;
        return true;
    }
    jloop *l = o->u.loop;
    if (!strcmp(m, "cycle")) {
        if (!a->npos) return jx_fail(x, at, "no items for cycling given");
        *out = a->pos[l->i % a->npos];
        return true;
    }
    /* changed(*values) */
    jlist *vals = jl_new(x, a->npos);
    if (!vals) return jx_alloc_failed(x, at);
    jv_copy(vals->v, a->pos, a->npos);
    vals->n = a->npos;
    jv now = jv_list(vals, JF_TUPLE);
    bool changed = !l->changed_set || !jv_eq(now, l->last_changed);
    l->last_changed = now;
    l->changed_set = true;
    *out = jv_bool(changed);
    return true;
}

/* ---- rendering ---- */

loom_jinja_limits loom_jinja_limits_default(void) {
    return (loom_jinja_limits){.max_depth = 64, .max_steps = 5000000, .max_output = 16u << 20, .max_memory = 256u << 20};
}

loom_status loom_jinja_render(const loom_jinja_template *t, const loom_jinja_vars *vars, const loom_jinja_limits *lim,
                              loom_strbuf *out) {
    jarena arena = {0};
    jx x = {.t = t, .a = &arena};
    x.lim = lim ? *lim : loom_jinja_limits_default();
    arena.limit = x.lim.max_memory;
    jbuf buf = {.a = &arena};
    x.out = &buf;
    x.vars = vars && vars->vars ? vars->vars : jd_new(&arena, 0);
    x.root = x.vars ? scope_new(&x, NULL) : NULL;
    bool ok = x.root && exec_body(&x, x.root, t->root->v, t->root->nv);
    if (ok && buf.fail) ok = jx_alloc_failed(&x, NULL);
    loom_status st = NULL;
    if (!ok) {
        if (x.err) st = loom_error(LOOM_ERR_INVALID, "%s:%s", t->name, x.err);
        else st = loom_error(LOOM_ERR_NOMEM, "%s: out of memory", t->name);
    } else {
        st = loom_strbuf_append(out, buf.p ? buf.p : "", buf.n);
    }
    free(x.err);
    ja_free(&arena);
    return st;
}
