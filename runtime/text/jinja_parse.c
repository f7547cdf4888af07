/*
 * runtime/text/jinja_parse.c — tokens → syntax tree: statements (jinja2's
 * parser.py, 3.1), the checks after parsing (unknown filters and tests,
 * what macros use) and the entry point. Nesting is bounded so that hostile
 * input cannot exhaust the stack. Expressions: jinja_parse_expr.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_parser.h"

/* ---- helpers (jinja_parser.h) ---- */

void *jp_fail(parser *P, const jtok *t, const char *fmt, ...) {
    if (P->failed) return NULL;
    P->failed = true;
    int k = snprintf(P->err, sizeof P->err, "%u:%u: ", t->line, t->col);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < sizeof P->err) vsnprintf(P->err + k, sizeof P->err - (size_t)k, fmt, ap);
    va_end(ap);
    return NULL;
}

const char *jp_describe(const jtok *t, char *buf, size_t n) {
    static const char *ops[] = {"+", "-", "/", "//", "*", "**", "%", "~", "[", "]", "(", ")", "{",
                                "}", ".", ":", ",", "|", "=", "==", "!=", "<", "<=", ">", ">=", ";"};
    switch (t->kind) {
    case T_DATA: return "template data / text";
    case T_VAR_BEGIN: return "begin of print statement";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_BEGIN: return "begin of statement block";
    case T_BLOCK_END: return "end of statement block";
    case T_EOF: return "end of template";
    case T_STRING: return "string";
    case T_INT: return "integer";
    case T_FLOAT: return "float";
    case T_OP: return ops[t->op];
    case T_NAME: snprintf(buf, n, "%s", t->s); return buf;
    }
    return "?";
}

jnode *jp_node(parser *P, int kind, const jtok *at) {
    jnode *n = ja_alloc(P->a, sizeof *n);
    if (!n) return jp_fail(P, at, "out of memory");
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

bool jp_expect(parser *P, int kind, int op, const char *what) {
    jtok *t = cur(P);
    if (t->kind == kind && (kind != T_OP || t->op == op)) {
        adv(P);
        return true;
    }
    char buf[64];
    if (t->kind == T_EOF) jp_fail(P, t, "unexpected end of template, expected '%s'", what);
    else jp_fail(P, t, "expected token '%s', got '%s'", what, jp_describe(t, buf, sizeof buf));
    return false;
}

bool jp_push(parser *P, nlist *l, jnode *x) {
    if (!x) return false;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        jnode **v = ja_grow(P->a, l->v, l->cap * sizeof *v, cap * sizeof *v);
        if (!v) return jp_fail(P, cur(P), "out of memory") != NULL;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

bool jp_enter(parser *P) {
    if (++P->depth > MAX_NEST) {
        jp_fail(P, cur(P), "the template nests too deeply (more than %d levels)", MAX_NEST);
        return false;
    }
    return true;
}

/* ---- statements ---- */

static bool body_until(parser *P, const char *const *ends, int nends, nlist *out);

static bool is_end(parser *P, const char *const *ends, int nends) {
    for (int i = 0; i < nends; i++)
        if (is_name(P, ends[i])) return true;
    return false;
}

/* jinja2's parse_statements: optional ":", "%}", the body up to one of the
 * end tags (current token left on the tag's name, or past it with drop). */
static bool statements(parser *P, const char *const *ends, int nends, bool drop, nlist *out) {
    skip_op(P, P_COLON);
    if (!jp_expect(P, T_BLOCK_END, 0, "end of statement block")) return false;
    if (!jp_enter(P)) return false;
    bool ok = body_until(P, ends, nends, out);
    P->depth--;
    if (!ok) return false;
    if (cur(P)->kind == T_EOF) {
        char want[256] = "";
        for (int i = 0; i < nends; i++) {
            size_t k = strlen(want);
            snprintf(want + k, sizeof want - k, "%s'%s'", i ? " or " : "", ends[i]);
        }
        return jp_fail(P, cur(P), "Unexpected end of template. Jinja was looking for the following tags: %s.", want) !=
               NULL;
    }
    if (drop) adv(P);
    return true;
}

static bool can_assign(const jnode *n) {
    if (n->kind == E_NAME || n->kind == E_NSREF) return true;
    if (n->kind != E_TUPLE) return false;
    for (uint32_t i = 0; i < n->nv; i++)
        if (!can_assign(n->v[i])) return false;
    return true;
}

static jnode *assign_target(parser *P, const char *extra_end, bool with_namespace) {
    jtok *at = cur(P);
    jnode *t = jp_tuple(P, true, true, extra_end, false, with_namespace);
    if (!t) return NULL;
    if (!can_assign(t)) {
        const char *what = t->kind == E_CONST ? "const" : t->kind == E_CALL ? "call" : "expression";
        return jp_fail(P, at, "can't assign to '%s'", what);
    }
    return t;
}

static bool signature(parser *P, jnode *n) {
    if (!EXPECT_OP(P, P_LPAREN, "(")) return false;
    nlist params = {0}, defaults = {0};
    while (!is_op(P, P_RPAREN)) {
        if (params.n && !EXPECT_OP(P, P_COMMA, ",")) return false;
        jtok *t = cur(P);
        if (!jp_expect(P, T_NAME, 0, "name")) return false;
        jnode *p = jp_node(P, E_NAME, t);
        if (!p) return false;
        p->name = t->s;
        if (skip_op(P, P_ASSIGN)) {
            if (!jp_push(P, &defaults, jp_expression(P, true))) return false;
        } else if (defaults.n) {
            return jp_fail(P, t, "non-default argument follows default argument") != NULL;
        }
        if (!jp_push(P, &params, p)) return false;
    }
    if (!EXPECT_OP(P, P_RPAREN, ")")) return false;
    n->v = params.v;
    n->nv = params.n;
    n->w = defaults.v; /* the defaults of the last nw parameters */
    n->nw = defaults.n;
    return true;
}

static jnode *stmt_body(parser *P, jnode *n, const char *end) {
    nlist body = {0};
    const char *ends[] = {end};
    if (!statements(P, ends, 1, true, &body)) return NULL;
    n->b = jp_node(P, S_SCOPE, cur(P));
    if (!n->b) return NULL;
    n->b->v = body.v;
    n->b->nv = body.n;
    return n;
}

static jnode *parse_statement(parser *P) {
    jtok *t = cur(P);
    if (t->kind != T_NAME) return jp_fail(P, t, "tag name expected");
    const char *w = t->s;
    if (!strcmp(w, "if")) {
        /* S_IF: a = test, v = body, c = the next elif (an S_IF), w = the else body (on the first) */
        adv(P);
        jnode *n = jp_node(P, S_IF, t), *top = n;
        static const char *const ends[] = {"elif", "else", "endif"};
        static const char *const endif[] = {"endif"};
        while (n) {
            nlist body = {0};
            if (!(n->a = jp_tuple(P, false, false, NULL, false, false))) return NULL;
            if (!statements(P, ends, 3, false, &body)) return NULL;
            n->v = body.v;
            n->nv = body.n;
            jtok *e = cur(P);
            adv(P);
            if (!strcmp(e->s, "elif")) {
                n = n->c = jp_node(P, S_IF, e);
                continue;
            }
            if (!strcmp(e->s, "else")) {
                nlist els = {0};
                if (!statements(P, endif, 1, true, &els)) return NULL;
                top->w = els.v;
                top->nw = els.n;
            }
            break;
        }
        return n ? top : NULL;
    }
    if (!strcmp(w, "for")) {
        adv(P);
        jnode *n = jp_node(P, S_FOR, t);
        if (!n || !(n->a = assign_target(P, "in", false))) return NULL;
        if (!skip_name(P, "in")) {
            char buf[64];
            return jp_fail(P, cur(P), "expected token 'in', got '%s'", jp_describe(cur(P), buf, sizeof buf));
        }
        if (!(n->b = jp_tuple(P, false, false, "recursive", false, false))) return NULL;
        if (skip_name(P, "if") && !(n->c = jp_expression(P, true))) return NULL;
        if (skip_name(P, "recursive")) n->flags |= NF_RECURSIVE;
        static const char *const ends[] = {"endfor", "else"};
        static const char *const endfor[] = {"endfor"};
        nlist body = {0}, els = {0};
        if (!statements(P, ends, 2, false, &body)) return NULL;
        bool has_else = !strcmp(cur(P)->s, "else");
        adv(P);
        if (has_else && !statements(P, endfor, 1, true, &els)) return NULL;
        n->v = body.v;
        n->nv = body.n;
        n->w = els.v;
        n->nw = els.n;
        return n;
    }
    if (!strcmp(w, "set")) {
        adv(P);
        jnode *n = jp_node(P, S_SET, t);
        if (!n || !(n->a = assign_target(P, NULL, true))) return NULL;
        if (skip_op(P, P_ASSIGN)) {
            n->b = jp_tuple(P, false, true, NULL, false, false);
            return n->b ? n : NULL;
        }
        n->kind = S_SETBLOCK;
        /* filters with no operand, applied to the body's output */
        if (is_op(P, P_PIPE) && !(n->c = jp_filter(P, NULL, false))) return NULL;
        nlist body = {0};
        static const char *const ends[] = {"endset"};
        if (!statements(P, ends, 1, true, &body)) return NULL;
        n->v = body.v;
        n->nv = body.n;
        return n;
    }
    if (!strcmp(w, "macro")) {
        adv(P);
        jnode *n = jp_node(P, S_MACRO, t);
        jtok *nt = cur(P);
        if (!n || !jp_expect(P, T_NAME, 0, "name")) return NULL;
        n->name = nt->s;
        if (!signature(P, n)) return NULL;
        return stmt_body(P, n, "endmacro");
    }
    if (!strcmp(w, "call")) {
        adv(P);
        jnode *n = jp_node(P, S_CALLBLOCK, t);
        if (!n) return NULL;
        if (is_op(P, P_LPAREN) && !signature(P, n)) return NULL;
        jtok *ct = cur(P);
        if (!(n->a = jp_expression(P, true))) return NULL;
        if (n->a->kind != E_CALL) return jp_fail(P, ct, "expected call");
        n->name = "caller";
        return stmt_body(P, n, "endcall");
    }
    if (!strcmp(w, "filter")) {
        adv(P);
        jnode *n = jp_node(P, S_FILTERBLOCK, t);
        if (!n || !(n->a = jp_filter(P, NULL, true))) return NULL;
        return stmt_body(P, n, "endfilter");
    }
    if (!strcmp(w, "with")) {
        adv(P);
        jnode *n = jp_node(P, S_WITH, t);
        nlist targets = {0}, values = {0};
        while (n && cur(P)->kind != T_BLOCK_END) {
            if (targets.n && !EXPECT_OP(P, P_COMMA, ",")) return NULL;
            jtok *at = cur(P);
            jnode *tg = jp_primary(P, false);
            if (!tg) return NULL;
            if (!can_assign(tg)) return jp_fail(P, at, "can't assign to this expression");
            if (!jp_push(P, &targets, tg) || !EXPECT_OP(P, P_ASSIGN, "=")) return NULL;
            if (!jp_push(P, &values, jp_expression(P, true))) return NULL;
        }
        if (!n) return NULL;
        n->v = targets.v;
        n->nv = targets.n;
        n->w = values.v;
        n->nw = values.n;
        return stmt_body(P, n, "endwith");
    }
    if (!strcmp(w, "generation")) { /* transformers' AssistantTracker: renders its body */
        adv(P);
        jnode *n = jp_node(P, S_WITH, t);
        return n ? stmt_body(P, n, "endgeneration") : NULL;
    }
    if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        adv(P);
        return jp_node(P, w[0] == 'b' ? S_BREAK : S_CONTINUE, t);
    }
    if (!strcmp(w, "print")) {
        adv(P);
        jnode *n = jp_node(P, S_PRINT, t);
        if (n) n->a = jp_tuple(P, false, true, NULL, false, false);
        return n && n->a ? n : NULL;
    }
    static const char *const unsupported[] = {"extends", "block", "include", "import", "from", "autoescape"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (!strcmp(w, unsupported[i]))
            return jp_fail(P, t, "the tag '%s' is not supported (chat templates cannot load other templates)", w);
    return jp_fail(P, t, "Encountered unknown tag '%s'.", w);
}

static bool body_until(parser *P, const char *const *ends, int nends, nlist *out) {
    for (;;) {
        jtok *t = cur(P);
        switch (t->kind) {
        case T_DATA: {
            jnode *n = jp_node(P, S_DATA, t);
            if (!n) return false;
            n->value = jv_strv(t->s, t->n, 0);
            adv(P);
            if (!jp_push(P, out, n)) return false;
            break;
        }
        case T_VAR_BEGIN: {
            adv(P);
            jnode *n = jp_node(P, S_PRINT, t);
            if (!n || !(n->a = jp_tuple(P, false, true, NULL, false, false))) return false;
            if (!jp_expect(P, T_VAR_END, 0, "end of print statement")) return false;
            if (!jp_push(P, out, n)) return false;
            break;
        }
        case T_BLOCK_BEGIN: {
            adv(P);
            if (nends && is_end(P, ends, nends)) return true;
            jnode *n = parse_statement(P);
            if (!n || !jp_push(P, out, n)) return false;
            if (!jp_expect(P, T_BLOCK_END, 0, "end of statement block")) return false;
            break;
        }
        case T_EOF: return true;
        default: {
            char buf[64];
            return jp_fail(P, t, "unexpected '%s'", jp_describe(t, buf, sizeof buf)) != NULL;
        }
        }
    }
}

/* ---- after parsing: filters and tests, macro flags ---- */

static bool uses_name(const jnode *n, const char *name, int depth) {
    if (!n || depth > 4 * MAX_NEST) return false;
    if (n->kind == E_NAME && !strcmp(n->name, name)) return true;
    if (uses_name(n->a, name, depth + 1) || uses_name(n->b, name, depth + 1) || uses_name(n->c, name, depth + 1) ||
        uses_name(n->d, name, depth + 1))
        return true;
    for (uint32_t i = 0; i < n->nv; i++)
        if (uses_name(n->v[i], name, depth + 1)) return true;
    for (uint32_t i = 0; i < n->nw; i++)
        if (uses_name(n->w[i], name, depth + 1)) return true;
    return false;
}

#define MAX_TREE 256

/* Resolves filters and tests; an unknown one fails here unless it sits in
 * an if-statement or conditional expression ("soft" frame in jinja2), where
 * it fails only when run. break / continue must sit in a loop body of the
 * same macro (jinja2 compiles them to Python's, which fails otherwise). */
static bool resolve(parser *P, jnode *n, bool soft, bool in_loop, int depth) {
    if (!n) return true;
    jtok at = {.line = n->line, .col = n->col};
    if (depth > MAX_TREE) return jp_fail(P, &at, "the template nests too deeply (more than %d levels)", MAX_TREE) != NULL;
    depth++;
    switch (n->kind) {
    case E_FILTER:
    case E_TEST:
        n->fn = n->kind == E_FILTER ? jfilter_lookup(n->name) : jtest_lookup(n->name);
        if (!n->fn && !soft)
            return jp_fail(P, &at, "No %s named '%s'.", n->kind == E_FILTER ? "filter" : "test", n->name) != NULL;
        break;
    case S_BREAK:
    case S_CONTINUE:
        if (!in_loop)
            return jp_fail(P, &at, "'%s' not properly in loop", n->kind == S_BREAK ? "break" : "continue") != NULL;
        break;
    case S_IF:
    case E_COND: soft = true; break;
    case S_FOR: { /* the iterable and the else-body in the outer frame, the rest in the loop's */
        if (!resolve(P, n->b, soft, in_loop, depth)) return false;
        for (uint32_t i = 0; i < n->nw; i++)
            if (!resolve(P, n->w[i], false, in_loop, depth)) return false;
        if (!resolve(P, n->a, false, true, depth) || !resolve(P, n->c, false, true, depth)) return false;
        for (uint32_t i = 0; i < n->nv; i++)
            if (!resolve(P, n->v[i], false, true, depth)) return false;
        return true;
    }
    case S_MACRO:
    case S_CALLBLOCK:
        if (uses_name(n->b, "caller", 0)) n->flags |= NF_CALLER;
        if (uses_name(n->b, "varargs", 0)) n->flags |= NF_VARARGS;
        if (uses_name(n->b, "kwargs", 0)) n->flags |= NF_KWARGS;
        if (n->kind == S_CALLBLOCK && !resolve(P, n->a, soft, in_loop, depth)) return false;
        soft = false;
        in_loop = false; /* a macro is a function of its own */
        break;
    case S_WITH: /* values in the outer frame, the body in an inner one */
        for (uint32_t i = 0; i < n->nw; i++)
            if (!resolve(P, n->w[i], soft, in_loop, depth)) return false;
        for (uint32_t i = 0; i < n->nv; i++)
            if (!resolve(P, n->v[i], false, in_loop, depth)) return false;
        return resolve(P, n->b, false, in_loop, depth);
    case S_SETBLOCK:
    case S_FILTERBLOCK: soft = false; break;
    }
    if (!resolve(P, n->a, soft, in_loop, depth) || !resolve(P, n->b, soft, in_loop, depth) ||
        !resolve(P, n->c, soft, in_loop, depth) || !resolve(P, n->d, soft, in_loop, depth))
        return false;
    for (uint32_t i = 0; i < n->nv; i++)
        if (!resolve(P, n->v[i], soft, in_loop, depth)) return false;
    for (uint32_t i = 0; i < n->nw; i++)
        if (!resolve(P, n->w[i], soft, in_loop, depth)) return false;
    return true;
}

loom_status loom_jinja_parse(const char *src, size_t len, const char *name, loom_jinja_template **out) {
    *out = NULL;
    if (!name) name = "template";
    if (len > (size_t)UINT32_MAX / 2) return loom_error(LOOM_ERR_INVALID, "%s: template too large (%zu bytes)", name, len);
    if (!loom_utf8_valid(src, len)) {
        size_t i = 0;
        while (i < len) {
            uint32_t cp;
            int k = loom_utf8_decode((const uint8_t *)src + i, len - i, &cp);
            if (k <= 0) break;
            i += (size_t)k;
        }
        return loom_error(LOOM_ERR_INVALID, "%s: the template is not valid UTF-8 (byte %zu)", name, i);
    }
    loom_jinja_template *t = calloc(1, sizeof *t);
    if (!t) return loom_error(LOOM_ERR_NOMEM, "%s: out of memory", name);
    t->name = strdup(name);
    parser P = {.a = &t->arena};
    if (!t->name || !jlex(&t->arena, src, len, &P.t, &P.n, P.err, sizeof P.err)) {
        loom_status st = loom_error(t->name ? LOOM_ERR_INVALID : LOOM_ERR_NOMEM, "%s:%s", name, P.err);
        loom_jinja_free(t);
        return st;
    }
    nlist body = {0};
    jtok start = {.line = 1, .col = 1};
    if (body_until(&P, NULL, 0, &body) && cur(&P)->kind != T_EOF) jp_fail(&P, cur(&P), "unexpected end tag");
    if (!P.failed) {
        t->root = jp_node(&P, S_SCOPE, &start);
        if (t->root) {
            t->root->v = body.v;
            t->root->nv = body.n;
            resolve(&P, t->root, false, false, 0);
        }
    }
    if (P.failed) {
        loom_status st = loom_error(t->arena.over ? LOOM_ERR_NOMEM : LOOM_ERR_INVALID, "%s:%s", name, P.err);
        loom_jinja_free(t);
        return st;
    }
    *out = t;
    return NULL;
}

void loom_jinja_free(loom_jinja_template *t) {
    if (!t) return;
    ja_free(&t->arena);
    free(t->name);
    free(t);
}
