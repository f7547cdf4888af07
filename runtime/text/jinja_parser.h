/*
 * runtime/text/jinja_parser.h — the parser's state and helpers, shared by
 * jinja_parse.c (statements, the entry point) and jinja_parse_expr.c
 * (expressions). Private to the interpreter.
 */
#ifndef LOOM_JINJA_PARSER_H
#define LOOM_JINJA_PARSER_H

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

static inline jtok *cur(parser *P) { return &P->t[P->i]; }
static inline jtok *peek(parser *P, size_t k) { return &P->t[P->i + k < P->n ? P->i + k : P->n - 1]; }
static inline void adv(parser *P) {
    if (P->i + 1 < P->n) P->i++;
}

static inline bool is_op(parser *P, int op) { return cur(P)->kind == T_OP && cur(P)->op == op; }
static inline bool is_name(parser *P, const char *name) { return cur(P)->kind == T_NAME && !strcmp(cur(P)->s, name); }
static inline bool skip_op(parser *P, int op) {
    if (!is_op(P, op)) return false;
    adv(P);
    return true;
}
static inline bool skip_name(parser *P, const char *name) {
    if (!is_name(P, name)) return false;
    adv(P);
    return true;
}

#define EXPECT_OP(P, op, s) jp_expect(P, T_OP, op, s)

/* A growable node list in the arena. */
typedef struct {
    jnode **v;
    uint32_t n, cap;
} nlist;

void *jp_fail(parser *P, const jtok *t, const char *fmt, ...) LOOM_PRINTF(3, 4); /* records the first error; NULL */
const char *jp_describe(const jtok *t, char *buf, size_t n); /* a token as jinja2 names it in errors */
jnode *jp_node(parser *P, int kind, const jtok *at);           /* a zeroed node at the token's position */
bool jp_expect(parser *P, int kind, int op, const char *what);
bool jp_push(parser *P, nlist *l, jnode *x);
bool jp_enter(parser *P); /* one more level of nesting; false past MAX_NEST */
#define LEAVE(P, x) (P->depth--, (x))

jnode *jp_expression(parser *P, bool with_condexpr);
jnode *jp_tuple(parser *P, bool simplified, bool with_condexpr, const char *extra_end, bool explicit_parens,
                   bool with_namespace);
jnode *jp_primary(parser *P, bool with_namespace);
jnode *jp_filter(parser *P, jnode *n, bool start_inline);

#endif
