/*
 * runtime/text/jinja_parse.c — tokens → syntax tree, following jinja2's
 * parser.py (3.1) function by function, so precedence and the odd corners
 * (filters binding tighter than arithmetic, "-x|f" filtering the negation,
 * tests taking one bare argument, adjacent string literals joining) are
 * the same. Nesting is bounded so that hostile input cannot exhaust the
 * stack.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

#define MAX_NEST 128

typedef struct {
    jarena *a;
    jtok *t;
    size_t n, i;
    int depth;
    char err[512];
    bool failed;
} parser;

static jtok *cur(parser *P) { return &P->t[P->i]; }
static jtok *peek(parser *P, size_t k) { return &P->t[P->i + k < P->n ? P->i + k : P->n - 1]; }
static void adv(parser *P) {
    if (P->i + 1 < P->n) P->i++;
}

static void *pfail_at(parser *P, const jtok *t, const char *fmt, ...) LOOM_PRINTF(3, 4);
static void *pfail_at(parser *P, const jtok *t, const char *fmt, ...) {
    if (P->failed) return NULL;
    P->failed = true;
    int k = snprintf(P->err, sizeof P->err, "%u:%u: ", t->line, t->col);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < sizeof P->err) vsnprintf(P->err + k, sizeof P->err - (size_t)k, fmt, ap);
    va_end(ap);
    return NULL;
}

static const char *describe(const jtok *t, char *buf, size_t n) {
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

static jnode *node(parser *P, int kind, const jtok *at) {
    jnode *n = ja_alloc(P->a, sizeof *n);
    if (!n) return pfail_at(P, at, "out of memory");
    n->kind = (uint8_t)kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static bool is_op(parser *P, int op) { return cur(P)->kind == T_OP && cur(P)->op == op; }
static bool is_name(parser *P, const char *name) { return cur(P)->kind == T_NAME && !strcmp(cur(P)->s, name); }
static bool skip_op(parser *P, int op) {
    if (!is_op(P, op)) return false;
    adv(P);
    return true;
}
static bool skip_name(parser *P, const char *name) {
    if (!is_name(P, name)) return false;
    adv(P);
    return true;
}

static bool expect_kind(parser *P, int kind, int op, const char *what) {
    jtok *t = cur(P);
    if (t->kind == kind && (kind != T_OP || t->op == op)) {
        adv(P);
        return true;
    }
    char buf[64];
    if (t->kind == T_EOF) pfail_at(P, t, "unexpected end of template, expected '%s'", what);
    else pfail_at(P, t, "expected token '%s', got '%s'", what, describe(t, buf, sizeof buf));
    return false;
}
#define EXPECT_OP(P, op, s) expect_kind(P, T_OP, op, s)

/* A growable node list in the arena. */
typedef struct {
    jnode **v;
    uint32_t n, cap;
} nlist;

static bool push(parser *P, nlist *l, jnode *x) {
    if (!x) return false;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        jnode **v = ja_grow(P->a, l->v, l->cap * sizeof *v, cap * sizeof *v);
        if (!v) return pfail_at(P, cur(P), "out of memory") != NULL;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = x;
    return true;
}

static bool enter(parser *P) {
    if (++P->depth > MAX_NEST) {
        pfail_at(P, cur(P), "the template nests too deeply (more than %d levels)", MAX_NEST);
        return false;
    }
    return true;
}
#define LEAVE(P, x) (P->depth--, (x))

static jnode *parse_expression(parser *P, bool with_condexpr);
static jnode *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                          bool with_namespace);
static jnode *parse_primary(parser *P, bool with_namespace);
static jnode *parse_postfix(parser *P, jnode *n);
static jnode *parse_filter_expr(parser *P, jnode *n);
static jnode *parse_unary(parser *P, bool with_filter);
static jnode *parse_filter(parser *P, jnode *n, bool start_inline);

/* ---- expressions ---- */

static jnode *parse_condexpr(parser *P);
static jnode *parse_or(parser *P);

static jnode *parse_expression(parser *P, bool with_condexpr) {
    if (!enter(P)) return NULL;
    return LEAVE(P, with_condexpr ? parse_condexpr(P) : parse_or(P));
}

static jnode *parse_condexpr(parser *P) {
    jnode *e1 = parse_or(P);
    while (e1 && is_name(P, "if")) {
        jtok *at = cur(P);
        adv(P);
        jnode *c = node(P, E_COND, at);
        jnode *e2 = parse_or(P);
        jnode *e3 = NULL;
        if (skip_name(P, "else")) {
            if (!enter(P)) return NULL;
            e3 = LEAVE(P, parse_condexpr(P));
            if (!e3) return NULL;
        }
        if (!c || !e2) return NULL;
        c->a = e2; /* test */
        c->b = e1; /* then */
        c->c = e3; /* else (NULL: undefined) */
        e1 = c;
    }
    return e1;
}

static jnode *parse_not(parser *P);
static jnode *parse_and(parser *P) {
    jnode *l = parse_not(P);
    while (l && is_name(P, "and")) {
        jnode *n = node(P, E_AND, cur(P));
        adv(P);
        jnode *r = parse_not(P);
        if (!n || !r) return NULL;
        n->a = l;
        n->b = r;
        l = n;
    }
    return l;
}

static jnode *parse_or(parser *P) {
    jnode *l = parse_and(P);
    while (l && is_name(P, "or")) {
        jnode *n = node(P, E_OR, cur(P));
        adv(P);
        jnode *r = parse_and(P);
        if (!n || !r) return NULL;
        n->a = l;
        n->b = r;
        l = n;
    }
    return l;
}

static jnode *parse_compare(parser *P);
static jnode *parse_not(parser *P) {
    if (is_name(P, "not")) {
        jnode *n = node(P, E_NOT, cur(P));
        adv(P);
        if (!n || !enter(P)) return NULL;
        n->a = LEAVE(P, parse_not(P));
        return n->a ? n : NULL;
    }
    return parse_compare(P);
}

static jnode *parse_math1(parser *P);
static jnode *parse_compare(parser *P) {
    jtok *at = cur(P);
    jnode *e = parse_math1(P);
    if (!e) return NULL;
    nlist ops = {0};
    for (;;) {
        jtok *t = cur(P);
        int op = -1;
        if (t->kind == T_OP) {
            switch (t->op) {
            case P_EQ: op = OP_EQ; break;
            case P_NE: op = OP_NE; break;
            case P_LT: op = OP_LT; break;
            case P_LE: op = OP_LE; break;
            case P_GT: op = OP_GT; break;
            case P_GE: op = OP_GE; break;
            }
            if (op >= 0) adv(P);
        } else if (is_name(P, "in")) {
            op = OP_IN;
            adv(P);
        } else if (is_name(P, "not") && peek(P, 1)->kind == T_NAME && !strcmp(peek(P, 1)->s, "in")) {
            op = OP_NOTIN;
            adv(P);
            adv(P);
        }
        if (op < 0) break;
        jnode *o = node(P, E_KW, t);
        if (!o) return NULL;
        o->op = (uint8_t)op;
        o->a = parse_math1(P);
        if (!o->a || !push(P, &ops, o)) return NULL;
    }
    if (!ops.n) return e;
    jnode *c = node(P, E_COMPARE, at);
    if (!c) return NULL;
    c->a = e;
    c->v = ops.v;
    c->nv = ops.n;
    return c;
}

static jnode *binary(parser *P, int op, jtok *at, jnode *l, jnode *r) {
    jnode *n = node(P, E_BIN, at);
    if (!n || !l || !r) return NULL;
    n->op = (uint8_t)op;
    n->a = l;
    n->b = r;
    return n;
}

static jnode *parse_concat(parser *P);
static jnode *parse_math1(parser *P) {
    jnode *l = parse_concat(P);
    while (l && (is_op(P, P_ADD) || is_op(P, P_SUB))) {
        jtok *t = cur(P);
        adv(P);
        l = binary(P, t->op == P_ADD ? OP_ADD : OP_SUB, t, l, parse_concat(P));
    }
    return l;
}

static jnode *parse_math2(parser *P);
static jnode *parse_concat(parser *P) {
    jtok *at = cur(P);
    jnode *first = parse_math2(P);
    if (!first || !is_op(P, P_TILDE)) return first;
    nlist args = {0};
    push(P, &args, first);
    while (is_op(P, P_TILDE)) {
        adv(P);
        if (!push(P, &args, parse_math2(P))) return NULL;
    }
    jnode *n = node(P, E_CONCAT, at);
    if (!n) return NULL;
    n->v = args.v;
    n->nv = args.n;
    return n;
}

static jnode *parse_pow(parser *P);
static jnode *parse_math2(parser *P) {
    jnode *l = parse_pow(P);
    while (l && cur(P)->kind == T_OP &&
           (cur(P)->op == P_MUL || cur(P)->op == P_DIV || cur(P)->op == P_FLOORDIV || cur(P)->op == P_MOD)) {
        jtok *t = cur(P);
        adv(P);
        int op = t->op == P_MUL ? OP_MUL : t->op == P_DIV ? OP_DIV : t->op == P_FLOORDIV ? OP_FLOORDIV : OP_MOD;
        l = binary(P, op, t, l, parse_pow(P));
    }
    return l;
}

static jnode *parse_pow(parser *P) {
    jnode *l = parse_unary(P, true);
    while (l && is_op(P, P_POW)) {
        jtok *t = cur(P);
        adv(P);
        l = binary(P, OP_POW, t, l, parse_unary(P, true));
    }
    return l;
}

static jnode *parse_unary(parser *P, bool with_filter) {
    if (!enter(P)) return NULL;
    jtok *t = cur(P);
    jnode *n;
    if (is_op(P, P_SUB) || is_op(P, P_ADD)) {
        adv(P);
        n = node(P, t->op == P_SUB ? E_NEG : E_POS, t);
        jnode *x = parse_unary(P, false);
        if (!n || !x) return LEAVE(P, NULL);
        n->a = x;
    } else {
        n = parse_primary(P, false);
    }
    if (n) n = parse_postfix(P, n);
    if (n && with_filter) n = parse_filter_expr(P, n);
    return LEAVE(P, n);
}

static jnode *parse_list(parser *P);
static jnode *parse_dict(parser *P);

static jnode *parse_primary(parser *P, bool with_namespace) {
    jtok *t = cur(P);
    jnode *n;
    char buf[64];
    switch (t->kind) {
    case T_NAME:
        adv(P);
        n = node(P, E_CONST, t);
        if (!n) return NULL;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) n->value = jv_bool(true);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) n->value = jv_bool(false);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) n->value = jv_none();
        else if (with_namespace && is_op(P, P_DOT)) {
            adv(P);
            jtok *attr = cur(P);
            if (!expect_kind(P, T_NAME, 0, "name")) return NULL;
            n->kind = E_NSREF;
            n->name = t->s;
            n->value = jv_strv(attr->s, attr->n, 0);
        } else {
            n->kind = E_NAME;
            n->name = t->s;
        }
        return n;
    case T_STRING: {
        adv(P);
        n = node(P, E_CONST, t);
        if (!n) return NULL;
        if (cur(P)->kind != T_STRING) {
            n->value = jv_strv(t->s, t->n, 0);
            return n;
        }
        jbuf b = {.a = P->a};
        jb_put(&b, t->s, t->n);
        while (cur(P)->kind == T_STRING) {
            jb_put(&b, cur(P)->s, cur(P)->n);
            adv(P);
        }
        if (b.fail) return pfail_at(P, t, "out of memory");
        n->value = jv_strv(b.p, (uint32_t)b.n, 0);
        return n;
    }
    case T_INT:
    case T_FLOAT:
        adv(P);
        n = node(P, E_CONST, t);
        if (n) n->value = t->kind == T_INT ? jv_int(t->i) : jv_float(t->f);
        return n;
    case T_OP:
        if (t->op == P_LPAREN) {
            adv(P);
            n = parse_tuple(P, false, true, NULL, true, false);
            if (!n || !EXPECT_OP(P, P_RPAREN, ")")) return NULL;
            return n;
        }
        if (t->op == P_LBRACKET) return parse_list(P);
        if (t->op == P_LBRACE) return parse_dict(P);
        break;
    }
    if (t->kind == T_EOF) return pfail_at(P, t, "unexpected end of template");
    return pfail_at(P, t, "unexpected '%s'", describe(t, buf, sizeof buf));
}

static bool is_tuple_end(parser *P, const char *extra_end) {
    jtok *t = cur(P);
    if (t->kind == T_VAR_END || t->kind == T_BLOCK_END || (t->kind == T_OP && t->op == P_RPAREN)) return true;
    return extra_end && t->kind == T_NAME && !strcmp(t->s, extra_end);
}

static jnode *parse_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                          bool with_namespace) {
    if (!enter(P)) return NULL;
    jtok *at = cur(P);
    nlist args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n && !EXPECT_OP(P, P_COMMA, ",")) return LEAVE(P, NULL);
        if (is_tuple_end(P, extra_end)) break;
        jnode *x = simplified ? parse_primary(P, with_namespace) : parse_expression(P, with_condexpr);
        if (!push(P, &args, x)) return LEAVE(P, NULL);
        if (is_op(P, P_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (args.n) return LEAVE(P, args.v[0]);
        if (!explicit_parens) {
            char buf[64];
            return LEAVE(P, pfail_at(P, cur(P), "Expected an expression, got '%s'", describe(cur(P), buf, sizeof buf)));
        }
    }
    jnode *n = node(P, E_TUPLE, at);
    if (n) n->v = args.v, n->nv = args.n;
    return LEAVE(P, n);
}

static jnode *parse_list(parser *P) {
    jtok *at = cur(P);
    adv(P);
    nlist items = {0};
    if (!enter(P)) return NULL;
    while (!is_op(P, P_RBRACKET)) {
        if (items.n && !EXPECT_OP(P, P_COMMA, ",")) return LEAVE(P, NULL);
        if (is_op(P, P_RBRACKET)) break;
        if (!push(P, &items, parse_expression(P, true))) return LEAVE(P, NULL);
    }
    if (!EXPECT_OP(P, P_RBRACKET, "]")) return LEAVE(P, NULL);
    jnode *n = node(P, E_LIST, at);
    if (n) n->v = items.v, n->nv = items.n;
    return LEAVE(P, n);
}

static jnode *parse_dict(parser *P) {
    jtok *at = cur(P);
    adv(P);
    nlist keys = {0}, vals = {0};
    if (!enter(P)) return NULL;
    while (!is_op(P, P_RBRACE)) {
        if (keys.n && !EXPECT_OP(P, P_COMMA, ",")) return LEAVE(P, NULL);
        if (is_op(P, P_RBRACE)) break;
        if (!push(P, &keys, parse_expression(P, true))) return LEAVE(P, NULL);
        if (!EXPECT_OP(P, P_COLON, ":")) return LEAVE(P, NULL);
        if (!push(P, &vals, parse_expression(P, true))) return LEAVE(P, NULL);
    }
    if (!EXPECT_OP(P, P_RBRACE, "}")) return LEAVE(P, NULL);
    jnode *n = node(P, E_DICT, at);
    if (n) n->v = keys.v, n->w = vals.v, n->nv = keys.n, n->nw = vals.n;
    return LEAVE(P, n);
}

/* (args, kwargs, *dyn_args, **dyn_kwargs) into n->v, n->w (E_KW nodes), n->c, n->d */
static bool parse_call_args(parser *P, jnode *n) {
    jtok *lp = cur(P);
    if (!EXPECT_OP(P, P_LPAREN, "(")) return false;
    nlist args = {0}, kwargs = {0};
    bool require_comma = false;
    while (!is_op(P, P_RPAREN)) {
        if (require_comma) {
            if (!EXPECT_OP(P, P_COMMA, ",")) return false;
            if (is_op(P, P_RPAREN)) break;
        }
        if (is_op(P, P_MUL)) {
            if (n->c || n->d) return pfail_at(P, lp, "invalid syntax for function call expression") != NULL;
            adv(P);
            if (!(n->c = parse_expression(P, true))) return false;
        } else if (is_op(P, P_POW)) {
            if (n->d) return pfail_at(P, lp, "invalid syntax for function call expression") != NULL;
            adv(P);
            if (!(n->d = parse_expression(P, true))) return false;
        } else if (cur(P)->kind == T_NAME && peek(P, 1)->kind == T_OP && peek(P, 1)->op == P_ASSIGN) {
            if (n->d) return pfail_at(P, lp, "invalid syntax for function call expression") != NULL;
            jnode *kw = node(P, E_KW, cur(P));
            if (!kw) return false;
            kw->name = cur(P)->s;
            adv(P);
            adv(P);
            if (!(kw->a = parse_expression(P, true)) || !push(P, &kwargs, kw)) return false;
        } else {
            if (n->c || n->d || kwargs.n) return pfail_at(P, lp, "invalid syntax for function call expression") != NULL;
            if (!push(P, &args, parse_expression(P, true))) return false;
        }
        require_comma = true;
    }
    if (!EXPECT_OP(P, P_RPAREN, ")")) return false;
    n->v = args.v;
    n->nv = args.n;
    n->w = kwargs.v;
    n->nw = kwargs.n;
    return true;
}

static jnode *parse_subscribed(parser *P) {
    jtok *at = cur(P);
    jnode *parts[3] = {NULL, NULL, NULL};
    if (is_op(P, P_COLON)) {
        adv(P);
    } else {
        jnode *x = parse_expression(P, true);
        if (!x) return NULL;
        if (!is_op(P, P_COLON)) return x;
        adv(P);
        parts[0] = x;
    }
    if (!is_op(P, P_COLON) && !is_op(P, P_RBRACKET) && !is_op(P, P_COMMA)) {
        if (!(parts[1] = parse_expression(P, true))) return NULL;
    }
    if (is_op(P, P_COLON)) {
        adv(P);
        if (!is_op(P, P_RBRACKET) && !is_op(P, P_COMMA) && !(parts[2] = parse_expression(P, true))) return NULL;
    }
    jnode *s = node(P, E_SLICE, at);
    if (s) s->a = parts[0], s->b = parts[1], s->c = parts[2];
    return s;
}

static jnode *parse_subscript(parser *P, jnode *obj) {
    jtok *t = cur(P);
    adv(P);
    if (t->op == P_DOT) {
        jtok *a = cur(P);
        adv(P);
        if (a->kind == T_NAME) {
            jnode *n = node(P, E_GETATTR, t);
            if (n) n->a = obj, n->name = a->s, n->value = jv_strv(a->s, a->n, 0);
            return n;
        }
        if (a->kind != T_INT) return pfail_at(P, a, "expected name or number");
        jnode *k = node(P, E_CONST, a), *n = node(P, E_GETITEM, t);
        if (!k || !n) return NULL;
        k->value = jv_int(a->i);
        n->a = obj;
        n->b = k;
        return n;
    }
    nlist args = {0};
    while (!is_op(P, P_RBRACKET)) {
        if (args.n && !EXPECT_OP(P, P_COMMA, ",")) return NULL;
        if (!push(P, &args, parse_subscribed(P))) return NULL;
    }
    if (!EXPECT_OP(P, P_RBRACKET, "]")) return NULL;
    jnode *n = node(P, E_GETITEM, t);
    if (!n) return NULL;
    n->a = obj;
    if (args.n == 1) {
        n->b = args.v[0];
    } else {
        jnode *tup = node(P, E_TUPLE, t);
        if (!tup) return NULL;
        tup->v = args.v;
        tup->nv = args.n;
        n->b = tup;
    }
    return n;
}

static jnode *parse_call(parser *P, jnode *callee) {
    jnode *n = node(P, E_CALL, cur(P));
    if (!n || !parse_call_args(P, n)) return NULL;
    n->a = callee;
    n->line = callee->line; /* errors of a call point at what is called */
    n->col = callee->col;
    return n;
}

static jnode *parse_postfix(parser *P, jnode *n) {
    while (n) {
        if (is_op(P, P_DOT) || is_op(P, P_LBRACKET)) n = parse_subscript(P, n);
        else if (is_op(P, P_LPAREN)) n = parse_call(P, n);
        else break;
    }
    return n;
}

/* "a.b.c" names of filters and tests */
static const char *dotted_name(parser *P) {
    jtok *t = cur(P);
    if (!expect_kind(P, T_NAME, 0, "name")) return NULL;
    if (!is_op(P, P_DOT)) return t->s;
    jbuf b = {.a = P->a};
    jb_puts(&b, t->s);
    while (is_op(P, P_DOT)) {
        adv(P);
        jtok *x = cur(P);
        if (!expect_kind(P, T_NAME, 0, "name")) return NULL;
        jb_putc(&b, '.');
        jb_puts(&b, x->s);
    }
    jb_putc(&b, 0);
    return b.fail ? pfail_at(P, t, "out of memory") : b.p;
}

static jnode *parse_test(parser *P, jnode *obj) {
    jtok *t = cur(P);
    adv(P); /* "is" */
    bool negated = skip_name(P, "not");
    jtok *nt = cur(P);
    const char *name = dotted_name(P);
    if (!name) return NULL;
    jnode *n = node(P, E_TEST, nt);
    if (!n) return NULL;
    n->a = obj;
    n->name = name;
    jtok *c = cur(P);
    if (is_op(P, P_LPAREN)) {
        if (!parse_call_args(P, n)) return NULL;
    } else if ((c->kind == T_NAME || c->kind == T_STRING || c->kind == T_INT || c->kind == T_FLOAT ||
                (c->kind == T_OP && (c->op == P_LPAREN || c->op == P_LBRACKET || c->op == P_LBRACE))) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) return pfail_at(P, c, "You cannot chain multiple tests with is");
        jnode *arg = parse_primary(P, false);
        if (arg) arg = parse_postfix(P, arg);
        if (!arg) return NULL;
        jnode **v = ja_alloc(P->a, sizeof *v);
        if (!v) return pfail_at(P, c, "out of memory");
        v[0] = arg;
        n->v = v;
        n->nv = 1;
    }
    if (!negated) return n;
    jnode *x = node(P, E_NOT, t);
    if (x) x->a = n;
    return x;
}

static jnode *parse_filter(parser *P, jnode *obj, bool start_inline) {
    while (is_op(P, P_PIPE) || start_inline) {
        if (!start_inline) adv(P);
        jtok *nt = cur(P);
        const char *name = dotted_name(P);
        if (!name) return NULL;
        jnode *n = node(P, E_FILTER, nt);
        if (!n) return NULL;
        n->a = obj;
        n->name = name;
        if (is_op(P, P_LPAREN) && !parse_call_args(P, n)) return NULL;
        obj = n;
        start_inline = false;
    }
    return obj;
}

static jnode *parse_filter_expr(parser *P, jnode *n) {
    while (n) {
        if (is_op(P, P_PIPE)) n = parse_filter(P, n, false);
        else if (is_name(P, "is")) n = parse_test(P, n);
        else if (is_op(P, P_LPAREN)) n = parse_call(P, n);
        else break;
    }
    return n;
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
    if (!expect_kind(P, T_BLOCK_END, 0, "end of statement block")) return false;
    if (!enter(P)) return false;
    bool ok = body_until(P, ends, nends, out);
    P->depth--;
    if (!ok) return false;
    if (cur(P)->kind == T_EOF) {
        char want[256] = "";
        for (int i = 0; i < nends; i++) {
            size_t k = strlen(want);
            snprintf(want + k, sizeof want - k, "%s'%s'", i ? " or " : "", ends[i]);
        }
        return pfail_at(P, cur(P), "Unexpected end of template. Jinja was looking for the following tags: %s.", want) !=
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
    jnode *t = parse_tuple(P, true, true, extra_end, false, with_namespace);
    if (!t) return NULL;
    if (!can_assign(t)) {
        const char *what = t->kind == E_CONST ? "const" : t->kind == E_CALL ? "call" : "expression";
        return pfail_at(P, at, "can't assign to '%s'", what);
    }
    return t;
}

static bool signature(parser *P, jnode *n) {
    if (!EXPECT_OP(P, P_LPAREN, "(")) return false;
    nlist params = {0}, defaults = {0};
    while (!is_op(P, P_RPAREN)) {
        if (params.n && !EXPECT_OP(P, P_COMMA, ",")) return false;
        jtok *t = cur(P);
        if (!expect_kind(P, T_NAME, 0, "name")) return false;
        jnode *p = node(P, E_NAME, t);
        if (!p) return false;
        p->name = t->s;
        if (skip_op(P, P_ASSIGN)) {
            if (!push(P, &defaults, parse_expression(P, true))) return false;
        } else if (defaults.n) {
            return pfail_at(P, t, "non-default argument follows default argument") != NULL;
        }
        if (!push(P, &params, p)) return false;
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
    n->b = node(P, S_SCOPE, cur(P));
    if (!n->b) return NULL;
    n->b->v = body.v;
    n->b->nv = body.n;
    return n;
}

static jnode *parse_statement(parser *P) {
    jtok *t = cur(P);
    if (t->kind != T_NAME) return pfail_at(P, t, "tag name expected");
    const char *w = t->s;
    if (!strcmp(w, "if")) {
        /* S_IF: a = test, v = body, c = the next elif (an S_IF), w = the else body (on the first) */
        adv(P);
        jnode *n = node(P, S_IF, t), *top = n;
        static const char *const ends[] = {"elif", "else", "endif"};
        static const char *const endif[] = {"endif"};
        while (n) {
            nlist body = {0};
            if (!(n->a = parse_tuple(P, false, false, NULL, false, false))) return NULL;
            if (!statements(P, ends, 3, false, &body)) return NULL;
            n->v = body.v;
            n->nv = body.n;
            jtok *e = cur(P);
            adv(P);
            if (!strcmp(e->s, "elif")) {
                n = n->c = node(P, S_IF, e);
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
        jnode *n = node(P, S_FOR, t);
        if (!n || !(n->a = assign_target(P, "in", false))) return NULL;
        if (!skip_name(P, "in")) {
            char buf[64];
            return pfail_at(P, cur(P), "expected token 'in', got '%s'", describe(cur(P), buf, sizeof buf));
        }
        if (!(n->b = parse_tuple(P, false, false, "recursive", false, false))) return NULL;
        if (skip_name(P, "if") && !(n->c = parse_expression(P, true))) return NULL;
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
        jnode *n = node(P, S_SET, t);
        if (!n || !(n->a = assign_target(P, NULL, true))) return NULL;
        if (skip_op(P, P_ASSIGN)) {
            n->b = parse_tuple(P, false, true, NULL, false, false);
            return n->b ? n : NULL;
        }
        n->kind = S_SETBLOCK;
        /* filters with no operand, applied to the body's output */
        if (is_op(P, P_PIPE) && !(n->c = parse_filter(P, NULL, false))) return NULL;
        nlist body = {0};
        static const char *const ends[] = {"endset"};
        if (!statements(P, ends, 1, true, &body)) return NULL;
        n->v = body.v;
        n->nv = body.n;
        return n;
    }
    if (!strcmp(w, "macro")) {
        adv(P);
        jnode *n = node(P, S_MACRO, t);
        jtok *nt = cur(P);
        if (!n || !expect_kind(P, T_NAME, 0, "name")) return NULL;
        n->name = nt->s;
        if (!signature(P, n)) return NULL;
        return stmt_body(P, n, "endmacro");
    }
    if (!strcmp(w, "call")) {
        adv(P);
        jnode *n = node(P, S_CALLBLOCK, t);
        if (!n) return NULL;
        if (is_op(P, P_LPAREN) && !signature(P, n)) return NULL;
        jtok *ct = cur(P);
        if (!(n->a = parse_expression(P, true))) return NULL;
        if (n->a->kind != E_CALL) return pfail_at(P, ct, "expected call");
        n->name = "caller";
        return stmt_body(P, n, "endcall");
    }
    if (!strcmp(w, "filter")) {
        adv(P);
        jnode *n = node(P, S_FILTERBLOCK, t);
        if (!n || !(n->a = parse_filter(P, NULL, true))) return NULL;
        return stmt_body(P, n, "endfilter");
    }
    if (!strcmp(w, "with")) {
        adv(P);
        jnode *n = node(P, S_WITH, t);
        nlist targets = {0}, values = {0};
        while (n && cur(P)->kind != T_BLOCK_END) {
            if (targets.n && !EXPECT_OP(P, P_COMMA, ",")) return NULL;
            jtok *at = cur(P);
            jnode *tg = parse_primary(P, false);
            if (!tg) return NULL;
            if (!can_assign(tg)) return pfail_at(P, at, "can't assign to this expression");
            if (!push(P, &targets, tg) || !EXPECT_OP(P, P_ASSIGN, "=")) return NULL;
            if (!push(P, &values, parse_expression(P, true))) return NULL;
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
        jnode *n = node(P, S_WITH, t);
        return n ? stmt_body(P, n, "endgeneration") : NULL;
    }
    if (!strcmp(w, "break") || !strcmp(w, "continue")) {
        adv(P);
        return node(P, w[0] == 'b' ? S_BREAK : S_CONTINUE, t);
    }
    if (!strcmp(w, "print")) {
        adv(P);
        jnode *n = node(P, S_PRINT, t);
        if (n) n->a = parse_tuple(P, false, true, NULL, false, false);
        return n && n->a ? n : NULL;
    }
    static const char *const unsupported[] = {"extends", "block", "include", "import", "from", "autoescape"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (!strcmp(w, unsupported[i]))
            return pfail_at(P, t, "the tag '%s' is not supported (chat templates cannot load other templates)", w);
    return pfail_at(P, t, "Encountered unknown tag '%s'.", w);
}

static bool body_until(parser *P, const char *const *ends, int nends, nlist *out) {
    for (;;) {
        jtok *t = cur(P);
        switch (t->kind) {
        case T_DATA: {
            jnode *n = node(P, S_DATA, t);
            if (!n) return false;
            n->value = jv_strv(t->s, t->n, 0);
            adv(P);
            if (!push(P, out, n)) return false;
            break;
        }
        case T_VAR_BEGIN: {
            adv(P);
            jnode *n = node(P, S_PRINT, t);
            if (!n || !(n->a = parse_tuple(P, false, true, NULL, false, false))) return false;
            if (!expect_kind(P, T_VAR_END, 0, "end of print statement")) return false;
            if (!push(P, out, n)) return false;
            break;
        }
        case T_BLOCK_BEGIN: {
            adv(P);
            if (nends && is_end(P, ends, nends)) return true;
            jnode *n = parse_statement(P);
            if (!n || !push(P, out, n)) return false;
            if (!expect_kind(P, T_BLOCK_END, 0, "end of statement block")) return false;
            break;
        }
        case T_EOF: return true;
        default: {
            char buf[64];
            return pfail_at(P, t, "unexpected '%s'", describe(t, buf, sizeof buf)) != NULL;
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

/* Resolves filters and tests; an unknown one fails here unless it sits in
 * an if-statement or conditional expression ("soft" frame in jinja2), where
 * it fails only when run. */
#define MAX_TREE 256

static bool resolve(parser *P, jnode *n, bool soft, int depth) {
    if (!n) return true;
    if (depth > MAX_TREE) {
        jtok at = {.line = n->line, .col = n->col};
        return pfail_at(P, &at, "the template nests too deeply (more than %d levels)", MAX_TREE) != NULL;
    }
    depth++;
    switch (n->kind) {
    case E_FILTER:
    case E_TEST:
        n->fn = n->kind == E_FILTER ? jfilter_lookup(n->name) : jtest_lookup(n->name);
        if (!n->fn && !soft) {
            jtok at = {.line = n->line, .col = n->col};
            return pfail_at(P, &at, "No %s named '%s'.", n->kind == E_FILTER ? "filter" : "test", n->name) != NULL;
        }
        break;
    case S_IF:
    case E_COND: soft = true; break;
    case S_FOR: /* the iterable in the outer frame, the rest in the loop's */
        if (!resolve(P, n->b, soft, depth)) return false;
        soft = false;
        break;
    case S_MACRO:
    case S_CALLBLOCK:
        if (uses_name(n->b, "caller", 0)) n->flags |= NF_CALLER;
        if (uses_name(n->b, "varargs", 0)) n->flags |= NF_VARARGS;
        if (uses_name(n->b, "kwargs", 0)) n->flags |= NF_KWARGS;
        if (n->kind == S_CALLBLOCK && !resolve(P, n->a, soft, depth)) return false;
        soft = false;
        break;
    case S_WITH: /* values in the outer frame, the body in an inner one */
        for (uint32_t i = 0; i < n->nw; i++)
            if (!resolve(P, n->w[i], soft, depth)) return false;
        return resolve(P, n->b, false, depth);
    case S_SETBLOCK:
    case S_FILTERBLOCK: soft = false; break;
    }
    if (!resolve(P, n->a, soft, depth) || !resolve(P, n->b, soft, depth) || !resolve(P, n->c, soft, depth) ||
        !resolve(P, n->d, soft, depth))
        return false;
    for (uint32_t i = 0; i < n->nv; i++)
        if (!resolve(P, n->v[i], soft, depth)) return false;
    for (uint32_t i = 0; i < n->nw; i++)
        if (!resolve(P, n->w[i], soft, depth)) return false;
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
    if (body_until(&P, NULL, 0, &body) && cur(&P)->kind != T_EOF) pfail_at(&P, cur(&P), "unexpected end tag");
    if (!P.failed) {
        t->root = node(&P, S_SCOPE, &start);
        if (t->root) {
            t->root->v = body.v;
            t->root->nv = body.n;
            resolve(&P, t->root, false, 0);
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
