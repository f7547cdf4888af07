/*
 * runtime/text/jinja_parse_expr.c — expressions, following jinja2's
 * parser.py (3.1) function by function: precedence and the odd corners
 * (filters binding tighter than arithmetic, "-x|f" filtering the negation,
 * tests taking one bare argument, adjacent string literals joining) are
 * the same.
 */
#include <stdio.h>
#include <string.h>

#include "runtime/text/jinja_parser.h"

static jnode *parse_postfix(parser *P, jnode *n);
static jnode *parse_filter_expr(parser *P, jnode *n);
static jnode *parse_unary(parser *P, bool with_filter);

/* ---- expressions ---- */

static jnode *parse_condexpr(parser *P);
static jnode *parse_or(parser *P);

jnode *jp_expression(parser *P, bool with_condexpr) {
    if (!jp_enter(P)) return NULL;
    return LEAVE(P, with_condexpr ? parse_condexpr(P) : parse_or(P));
}

static jnode *parse_condexpr(parser *P) {
    jnode *e1 = parse_or(P);
    while (e1 && is_name(P, "if")) {
        jtok *at = cur(P);
        adv(P);
        jnode *c = jp_node(P, E_COND, at);
        jnode *e2 = parse_or(P);
        jnode *e3 = NULL;
        if (skip_name(P, "else")) {
            if (!jp_enter(P)) return NULL;
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
        jnode *n = jp_node(P, E_AND, cur(P));
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
        jnode *n = jp_node(P, E_OR, cur(P));
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
        jnode *n = jp_node(P, E_NOT, cur(P));
        adv(P);
        if (!n || !jp_enter(P)) return NULL;
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
        jnode *o = jp_node(P, E_KW, t);
        if (!o) return NULL;
        o->op = (uint8_t)op;
        o->a = parse_math1(P);
        if (!o->a || !jp_push(P, &ops, o)) return NULL;
    }
    if (!ops.n) return e;
    jnode *c = jp_node(P, E_COMPARE, at);
    if (!c) return NULL;
    c->a = e;
    c->v = ops.v;
    c->nv = ops.n;
    return c;
}

static jnode *binary(parser *P, int op, jtok *at, jnode *l, jnode *r) {
    jnode *n = jp_node(P, E_BIN, at);
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
    jp_push(P, &args, first);
    while (is_op(P, P_TILDE)) {
        adv(P);
        if (!jp_push(P, &args, parse_math2(P))) return NULL;
    }
    jnode *n = jp_node(P, E_CONCAT, at);
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
    if (!jp_enter(P)) return NULL;
    jtok *t = cur(P);
    jnode *n;
    if (is_op(P, P_SUB) || is_op(P, P_ADD)) {
        adv(P);
        n = jp_node(P, t->op == P_SUB ? E_NEG : E_POS, t);
        jnode *x = parse_unary(P, false);
        if (!n || !x) return LEAVE(P, NULL);
        n->a = x;
    } else {
        n = jp_primary(P, false);
    }
    if (n) n = parse_postfix(P, n);
    if (n && with_filter) n = parse_filter_expr(P, n);
    return LEAVE(P, n);
}

static jnode *parse_list(parser *P);
static jnode *parse_dict(parser *P);

jnode *jp_primary(parser *P, bool with_namespace) {
    jtok *t = cur(P);
    jnode *n;
    char buf[64];
    switch (t->kind) {
    case T_NAME:
        adv(P);
        n = jp_node(P, E_CONST, t);
        if (!n) return NULL;
        if (!strcmp(t->s, "true") || !strcmp(t->s, "True")) n->value = jv_bool(true);
        else if (!strcmp(t->s, "false") || !strcmp(t->s, "False")) n->value = jv_bool(false);
        else if (!strcmp(t->s, "none") || !strcmp(t->s, "None")) n->value = jv_none();
        else if (with_namespace && is_op(P, P_DOT)) {
            adv(P);
            jtok *attr = cur(P);
            if (!jp_expect(P, T_NAME, 0, "name")) return NULL;
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
        n = jp_node(P, E_CONST, t);
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
        if (b.fail) return jp_fail(P, t, "out of memory");
        n->value = jv_strv(b.p, (uint32_t)b.n, 0);
        return n;
    }
    case T_INT:
    case T_FLOAT:
        adv(P);
        n = jp_node(P, E_CONST, t);
        if (n) n->value = t->kind == T_INT ? jv_int(t->i) : jv_float(t->f);
        return n;
    case T_OP:
        if (t->op == P_LPAREN) {
            adv(P);
            n = jp_tuple(P, false, true, NULL, true, false);
            if (!n || !EXPECT_OP(P, P_RPAREN, ")")) return NULL;
            return n;
        }
        if (t->op == P_LBRACKET) return parse_list(P);
        if (t->op == P_LBRACE) return parse_dict(P);
        break;
    }
    if (t->kind == T_EOF) return jp_fail(P, t, "unexpected end of template");
    return jp_fail(P, t, "unexpected '%s'", jp_describe(t, buf, sizeof buf));
}

static bool is_tuple_end(parser *P, const char *extra_end) {
    jtok *t = cur(P);
    if (t->kind == T_VAR_END || t->kind == T_BLOCK_END || (t->kind == T_OP && t->op == P_RPAREN)) return true;
    return extra_end && t->kind == T_NAME && !strcmp(t->s, extra_end);
}

jnode *jp_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                   bool with_namespace) {
    if (!jp_enter(P)) return NULL;
    jtok *at = cur(P);
    nlist args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n && !EXPECT_OP(P, P_COMMA, ",")) return LEAVE(P, NULL);
        if (is_tuple_end(P, extra_end)) break;
        jnode *x = simplified ? jp_primary(P, with_namespace) : jp_expression(P, with_condexpr);
        if (!jp_push(P, &args, x)) return LEAVE(P, NULL);
        if (is_op(P, P_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (args.n) return LEAVE(P, args.v[0]);
        if (!explicit_parens) {
            char buf[64];
            return LEAVE(P, jp_fail(P, cur(P), "Expected an expression, got '%s'", jp_describe(cur(P), buf, sizeof buf)));
        }
    }
    jnode *n = jp_node(P, E_TUPLE, at);
    if (n) n->v = args.v, n->nv = args.n;
    return LEAVE(P, n);
}

static jnode *parse_list(parser *P) {
    jtok *at = cur(P);
    adv(P);
    nlist items = {0};
    if (!jp_enter(P)) return NULL;
    while (!is_op(P, P_RBRACKET)) {
        if (items.n && !EXPECT_OP(P, P_COMMA, ",")) return LEAVE(P, NULL);
        if (is_op(P, P_RBRACKET)) break;
        if (!jp_push(P, &items, jp_expression(P, true))) return LEAVE(P, NULL);
    }
    if (!EXPECT_OP(P, P_RBRACKET, "]")) return LEAVE(P, NULL);
    jnode *n = jp_node(P, E_LIST, at);
    if (n) n->v = items.v, n->nv = items.n;
    return LEAVE(P, n);
}

static jnode *parse_dict(parser *P) {
    jtok *at = cur(P);
    adv(P);
    nlist keys = {0}, vals = {0};
    if (!jp_enter(P)) return NULL;
    while (!is_op(P, P_RBRACE)) {
        if (keys.n && !EXPECT_OP(P, P_COMMA, ",")) return LEAVE(P, NULL);
        if (is_op(P, P_RBRACE)) break;
        if (!jp_push(P, &keys, jp_expression(P, true))) return LEAVE(P, NULL);
        if (!EXPECT_OP(P, P_COLON, ":")) return LEAVE(P, NULL);
        if (!jp_push(P, &vals, jp_expression(P, true))) return LEAVE(P, NULL);
    }
    if (!EXPECT_OP(P, P_RBRACE, "}")) return LEAVE(P, NULL);
    jnode *n = jp_node(P, E_DICT, at);
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
            if (n->c || n->d) return jp_fail(P, lp, "invalid syntax for function call expression") != NULL;
            adv(P);
            if (!(n->c = jp_expression(P, true))) return false;
        } else if (is_op(P, P_POW)) {
            if (n->d) return jp_fail(P, lp, "invalid syntax for function call expression") != NULL;
            adv(P);
            if (!(n->d = jp_expression(P, true))) return false;
        } else if (cur(P)->kind == T_NAME && peek(P, 1)->kind == T_OP && peek(P, 1)->op == P_ASSIGN) {
            if (n->d) return jp_fail(P, lp, "invalid syntax for function call expression") != NULL;
            jnode *kw = jp_node(P, E_KW, cur(P));
            if (!kw) return false;
            kw->name = cur(P)->s;
            adv(P);
            adv(P);
            if (!(kw->a = jp_expression(P, true)) || !jp_push(P, &kwargs, kw)) return false;
        } else {
            if (n->c || n->d || kwargs.n) return jp_fail(P, lp, "invalid syntax for function call expression") != NULL;
            if (!jp_push(P, &args, jp_expression(P, true))) return false;
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
        jnode *x = jp_expression(P, true);
        if (!x) return NULL;
        if (!is_op(P, P_COLON)) return x;
        adv(P);
        parts[0] = x;
    }
    if (!is_op(P, P_COLON) && !is_op(P, P_RBRACKET) && !is_op(P, P_COMMA)) {
        if (!(parts[1] = jp_expression(P, true))) return NULL;
    }
    if (is_op(P, P_COLON)) {
        adv(P);
        if (!is_op(P, P_RBRACKET) && !is_op(P, P_COMMA) && !(parts[2] = jp_expression(P, true))) return NULL;
    }
    jnode *s = jp_node(P, E_SLICE, at);
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
            jnode *n = jp_node(P, E_GETATTR, t);
            if (n) n->a = obj, n->name = a->s, n->value = jv_strv(a->s, a->n, 0);
            return n;
        }
        if (a->kind != T_INT) return jp_fail(P, a, "expected name or number");
        jnode *k = jp_node(P, E_CONST, a), *n = jp_node(P, E_GETITEM, t);
        if (!k || !n) return NULL;
        k->value = jv_int(a->i);
        n->a = obj;
        n->b = k;
        return n;
    }
    nlist args = {0};
    while (!is_op(P, P_RBRACKET)) {
        if (args.n && !EXPECT_OP(P, P_COMMA, ",")) return NULL;
        if (!jp_push(P, &args, parse_subscribed(P))) return NULL;
    }
    if (!EXPECT_OP(P, P_RBRACKET, "]")) return NULL;
    jnode *n = jp_node(P, E_GETITEM, t);
    if (!n) return NULL;
    n->a = obj;
    if (args.n == 1) {
        n->b = args.v[0];
    } else {
        jnode *tup = jp_node(P, E_TUPLE, t);
        if (!tup) return NULL;
        tup->v = args.v;
        tup->nv = args.n;
        n->b = tup;
    }
    return n;
}

static jnode *parse_call(parser *P, jnode *callee) {
    jnode *n = jp_node(P, E_CALL, cur(P));
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
    if (!jp_expect(P, T_NAME, 0, "name")) return NULL;
    if (!is_op(P, P_DOT)) return t->s;
    jbuf b = {.a = P->a};
    jb_puts(&b, t->s);
    while (is_op(P, P_DOT)) {
        adv(P);
        jtok *x = cur(P);
        if (!jp_expect(P, T_NAME, 0, "name")) return NULL;
        jb_putc(&b, '.');
        jb_puts(&b, x->s);
    }
    jb_putc(&b, 0);
    return b.fail ? jp_fail(P, t, "out of memory") : b.p;
}

static jnode *parse_test(parser *P, jnode *obj) {
    jtok *t = cur(P);
    adv(P); /* "is" */
    bool negated = skip_name(P, "not");
    jtok *nt = cur(P);
    const char *name = dotted_name(P);
    if (!name) return NULL;
    jnode *n = jp_node(P, E_TEST, nt);
    if (!n) return NULL;
    n->a = obj;
    n->name = name;
    jtok *c = cur(P);
    if (is_op(P, P_LPAREN)) {
        if (!parse_call_args(P, n)) return NULL;
    } else if ((c->kind == T_NAME || c->kind == T_STRING || c->kind == T_INT || c->kind == T_FLOAT ||
                (c->kind == T_OP && (c->op == P_LPAREN || c->op == P_LBRACKET || c->op == P_LBRACE))) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) return jp_fail(P, c, "You cannot chain multiple tests with is");
        jnode *arg = jp_primary(P, false);
        if (arg) arg = parse_postfix(P, arg);
        if (!arg) return NULL;
        jnode **v = ja_alloc(P->a, sizeof *v);
        if (!v) return jp_fail(P, c, "out of memory");
        v[0] = arg;
        n->v = v;
        n->nv = 1;
    }
    if (!negated) return n;
    jnode *x = jp_node(P, E_NOT, t);
    if (x) x->a = n;
    return x;
}

jnode *jp_filter(parser *P, jnode *obj, bool start_inline) {
    while (is_op(P, P_PIPE) || start_inline) {
        if (!start_inline) adv(P);
        jtok *nt = cur(P);
        const char *name = dotted_name(P);
        if (!name) return NULL;
        jnode *n = jp_node(P, E_FILTER, nt);
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
        if (is_op(P, P_PIPE)) n = jp_filter(P, n, false);
        else if (is_name(P, "is")) n = parse_test(P, n);
        else if (is_op(P, P_LPAREN)) n = parse_call(P, n);
        else break;
    }
    return n;
}

