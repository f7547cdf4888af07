/*
 * runtime/text/pattern.c — JSON Schema patterns as automata over bytes
 * (contract in pattern.h): the pattern is parsed into a tree, the tree
 * built into a Thompson automaton (back to front: each piece is built
 * knowing the state after it, so nothing needs patching), and that made
 * deterministic by subset construction; last, states from which no
 * accepting state can be reached are cut, so the model is never led into a
 * string it cannot close.
 */
#include "runtime/text/pattern.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NFA 4000
#define MAX_AST 8064
#define MAX_REPEAT 1000
#define MAX_PATTERN 1000
/* Closure steps a compilation may take, and a pattern's bytes at most (a
 * pattern comes in a request: its cost must stay bounded, ~10 ms) */
#define MAX_WORK 2000000

typedef struct {
    uint64_t w[4];
} bset;

static void bset_add(bset *s, int c) { s->w[c >> 6] |= 1ull << (c & 63); }
static bool bset_has(const bset *s, int c) { return s->w[c >> 6] >> (c & 63) & 1; }
static void bset_range(bset *s, int a, int b) {
    for (int c = a; c <= b; c++) bset_add(s, c);
}

enum { A_SET, A_CAT, A_ALT, A_REP, A_EMPTY };
typedef struct {
    uint8_t kind;
    int a, b;     /* children (CAT, ALT; REP: a) */
    int min, max; /* REP: max -1 = unbounded */
    bset set;     /* SET */
} ast;

typedef struct {
    const char *re;
    size_t len, pos;
    ast *nodes;
    int n, cap;
    const char *err;
} parser;

static int node_new(parser *p, ast a) {
    if (p->err) return -1;
    if (p->n >= p->cap) {
        p->err = "it is too long";
        return -1;
    }
    p->nodes[p->n] = a;
    return p->n++;
}

static int set_node(parser *p, const bset *s) { return node_new(p, (ast){.kind = A_SET, .set = *s}); }

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* An escape after '\' (p->pos at its letter) into *s; in a class, \b is not allowed either. */
static bool parse_escape(parser *p, bset *s) {
    if (p->pos >= p->len) {
        p->err = "it ends with a lone '\\'";
        return false;
    }
    const char c = p->re[p->pos++];
    bset t = {{0}};
    switch (c) {
    case 'd': bset_range(&t, '0', '9'); break;
    case 'w': bset_range(&t, '0', '9'), bset_range(&t, 'a', 'z'), bset_range(&t, 'A', 'Z'), bset_add(&t, '_'); break;
    case 's':
        bset_add(&t, ' '), bset_add(&t, '\t'), bset_add(&t, '\n'), bset_add(&t, '\r'), bset_add(&t, '\f'), bset_add(&t, '\v');
        break;
    case 'D':
    case 'W':
    case 'S': { /* the complement of \d, \w, \s */
        const char low = (char)(c - 'A' + 'a');
        parser q = {.re = &low, .len = 1};
        parse_escape(&q, &t);
        for (int i = 0; i < 4; i++) t.w[i] = ~t.w[i];
        break;
    }
    case 'n': bset_add(&t, '\n'); break;
    case 'r': bset_add(&t, '\r'); break;
    case 't': bset_add(&t, '\t'); break;
    case 'f': bset_add(&t, '\f'); break;
    case 'v': bset_add(&t, '\v'); break;
    case '0': bset_add(&t, 0); break;
    case 'x':
    case 'u': {
        const size_t nd = c == 'x' ? 2 : 4;
        int v = 0;
        for (size_t i = 0; i < nd; i++) {
            const int h = p->pos < p->len ? hexval(p->re[p->pos]) : -1;
            if (h < 0) {
                p->err = c == 'x' ? "\\x needs two hex digits" : "\\u needs four hex digits";
                return false;
            }
            v = v * 16 + h, p->pos++;
        }
        if (v > 127) {
            p->err = "\\x and \\u escapes beyond ASCII are not supported";
            return false;
        }
        bset_add(&t, v);
        break;
    }
    default:
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '1' && c <= '9')) {
            p->err = "backreferences, \\b and escapes other than \\d \\w \\s \\D \\W \\S \\n \\r \\t \\f \\v \\0 \\x \\u "
                     "are not supported";
            return false;
        }
        bset_add(&t, (unsigned char)c); /* escaped punctuation stands for itself */
    }
    *s = t;
    return true;
}

/* A class after '[' up to its ']'. */
static int parse_class(parser *p) {
    bset s = {{0}};
    bool neg = p->pos < p->len && p->re[p->pos] == '^';
    if (neg) p->pos++;
    bool first = true;
    while (p->pos < p->len && (p->re[p->pos] != ']' || first)) {
        first = false;
        int lo;
        bset e = {{0}};
        bool single = true;
        if (p->re[p->pos] == '\\') {
            p->pos++;
            if (!parse_escape(p, &e)) return -1;
            int k = 0, only = -1;
            for (int c = 0; c < 256; c++)
                if (bset_has(&e, c)) k++, only = c;
            single = k == 1;
            lo = only;
        } else {
            lo = (unsigned char)p->re[p->pos++];
            if (lo >= 0x80) {
                p->err = "non-ASCII characters inside a class are not supported";
                return -1;
            }
            bset_add(&e, lo);
        }
        if (single && p->pos + 1 < p->len && p->re[p->pos] == '-' && p->re[p->pos + 1] != ']') {
            p->pos++;
            int hi;
            if (p->re[p->pos] == '\\') {
                p->pos++;
                bset h = {{0}};
                if (!parse_escape(p, &h)) return -1;
                hi = -1;
                for (int c = 0; c < 256; c++)
                    if (bset_has(&h, c)) hi = hi < 0 ? c : 256;
                if (hi < 0 || hi > 255) {
                    p->err = "a class range must end at one character";
                    return -1;
                }
            } else {
                hi = (unsigned char)p->re[p->pos++];
            }
            if (hi >= 0x80 || hi < lo) {
                p->err = hi >= 0x80 ? "non-ASCII characters inside a class are not supported" : "a class range is reversed";
                return -1;
            }
            bset_range(&e, lo, hi);
        }
        for (int i = 0; i < 4; i++) s.w[i] |= e.w[i];
    }
    if (p->pos >= p->len) {
        p->err = "a '[' is not closed";
        return -1;
    }
    p->pos++; /* ']' */
    if (neg)
        for (int i = 0; i < 4; i++) s.w[i] = ~s.w[i];
    return set_node(p, &s);
}

static int parse_alt(parser *p, int depth);

static int parse_atom(parser *p, int depth) {
    const unsigned char c = (unsigned char)p->re[p->pos++];
    bset s = {{0}};
    switch (c) {
    case '(': {
        if (p->pos < p->len && p->re[p->pos] == '?') {
            if (p->pos + 1 < p->len && p->re[p->pos + 1] == ':') {
                p->pos += 2;
            } else if (p->pos + 2 < p->len && p->re[p->pos + 1] == '<' && p->re[p->pos + 2] != '=' &&
                       p->re[p->pos + 2] != '!') {
                const char *gt = memchr(p->re + p->pos, '>', p->len - p->pos);
                if (!gt) {
                    p->err = "a group name is not closed";
                    return -1;
                }
                p->pos = (size_t)(gt - p->re) + 1;
            } else {
                p->err = "lookahead and lookbehind are not supported";
                return -1;
            }
        }
        const int a = parse_alt(p, depth + 1);
        if (a < 0) return -1;
        if (p->pos >= p->len || p->re[p->pos] != ')') {
            p->err = "a '(' is not closed";
            return -1;
        }
        p->pos++;
        return a;
    }
    case '[': return parse_class(p);
    case '.':
        for (int i = 0; i < 4; i++) s.w[i] = ~0ull;
        s.w[0] &= ~(1ull << '\n' | 1ull << '\r');
        return set_node(p, &s);
    case '\\': return parse_escape(p, &s) ? set_node(p, &s) : -1;
    case '^':
    case '$': p->err = "'^' and '$' are supported only at the pattern's start and end"; return -1;
    case '*':
    case '+':
    case '?':
    case '{': p->err = "a quantifier follows nothing"; return -1;
    case ')': p->err = "a ')' has no '('"; return -1;
    default: bset_add(&s, c); return set_node(p, &s);
    }
}

/* A number of a {n,m} quantifier. */
static bool parse_count(parser *p, int *v) {
    int n = 0, d = 0;
    while (p->pos < p->len && p->re[p->pos] >= '0' && p->re[p->pos] <= '9' && d < 6) n = n * 10 + (p->re[p->pos++] - '0'), d++;
    *v = n;
    return d > 0;
}

static int parse_rep(parser *p, int depth) {
    int a = parse_atom(p, depth);
    while (a >= 0 && p->pos < p->len) {
        const char c = p->re[p->pos];
        int min, max;
        if (c == '*') min = 0, max = -1, p->pos++;
        else if (c == '+') min = 1, max = -1, p->pos++;
        else if (c == '?') min = 0, max = 1, p->pos++;
        else if (c == '{') {
            p->pos++;
            if (!parse_count(p, &min)) {
                p->err = "a '{' quantifier needs a count ({n}, {n,} or {n,m})";
                return -1;
            }
            max = min;
            if (p->pos < p->len && p->re[p->pos] == ',') {
                p->pos++;
                if (!parse_count(p, &max)) max = -1;
            }
            if (p->pos >= p->len || p->re[p->pos] != '}') {
                p->err = "a '{' quantifier is not closed";
                return -1;
            }
            p->pos++;
            if (min > MAX_REPEAT || max > MAX_REPEAT || (max >= 0 && max < min)) {
                p->err = "a '{n,m}' quantifier must have n <= m <= 1000";
                return -1;
            }
        } else {
            break;
        }
        if (p->pos < p->len && p->re[p->pos] == '?') p->pos++; /* lazy: the same language */
        a = node_new(p, (ast){.kind = A_REP, .a = a, .min = min, .max = max});
    }
    return a;
}

/* A branch of an alternation; at the top level (end_anchor set) a '$'
 * ending the branch is taken as its anchor. */
static int parse_cat(parser *p, int depth, bool *end_anchor) {
    int a = node_new(p, (ast){.kind = A_EMPTY});
    while (a >= 0 && p->pos < p->len && p->re[p->pos] != '|' && p->re[p->pos] != ')') {
        if (end_anchor && p->re[p->pos] == '$' && (p->pos + 1 == p->len || p->re[p->pos + 1] == '|')) {
            *end_anchor = true;
            p->pos++;
            break;
        }
        const int b = parse_rep(p, depth);
        if (b < 0) return -1;
        a = node_new(p, (ast){.kind = A_CAT, .a = a, .b = b});
    }
    return a;
}

static int parse_alt(parser *p, int depth) {
    if (depth > 64) {
        p->err = "groups nest too deep";
        return -1;
    }
    int a = parse_cat(p, depth, NULL);
    while (a >= 0 && p->pos < p->len && p->re[p->pos] == '|') {
        p->pos++;
        const int b = parse_cat(p, depth, NULL);
        if (b < 0) return -1;
        a = node_new(p, (ast){.kind = A_ALT, .a = a, .b = b});
    }
    return a;
}

/* The whole pattern: its top-level branches, each searched for (anything
 * before it unless it begins with '^', after it unless it ends with '$'). */
static int parse_top(parser *p) {
    bset any;
    for (int i = 0; i < 4; i++) any.w[i] = ~0ull;
    int a = -1;
    for (;;) {
        const bool start = p->pos < p->len && p->re[p->pos] == '^';
        bool end = false;
        if (start) p->pos++;
        int b = parse_cat(p, 0, &end);
        if (b >= 0 && !start) {
            const int r = node_new(p, (ast){.kind = A_REP, .a = set_node(p, &any), .min = 0, .max = -1});
            b = node_new(p, (ast){.kind = A_CAT, .a = r, .b = b});
        }
        if (b >= 0 && !end) {
            const int r = node_new(p, (ast){.kind = A_REP, .a = set_node(p, &any), .min = 0, .max = -1});
            b = node_new(p, (ast){.kind = A_CAT, .a = b, .b = r});
        }
        if (b < 0) return -1;
        a = a < 0 ? b : node_new(p, (ast){.kind = A_ALT, .a = a, .b = b});
        if (p->pos >= p->len || p->re[p->pos] != '|') return a;
        p->pos++;
    }
}

/* ------------------------------------------------------------ NFA */

typedef struct {
    int set; /* index into the AST node holding the set; -1: a split (out, out1), -2: the match */
    int out, out1;
} nstate;

typedef struct {
    const parser *p;
    nstate *s;
    int n, cap;
    bool full; /* past MAX_NFA states (or out of memory) */
} nfa;

static int st_new(nfa *m, nstate s) {
    if (m->n == m->cap) {
        const int cap = m->cap ? (2 * m->cap < MAX_NFA ? 2 * m->cap : MAX_NFA) : 64;
        nstate *x = m->n < MAX_NFA ? realloc(m->s, sizeof *x * (size_t)cap) : NULL;
        if (!x) {
            m->full = true;
            return 0;
        }
        m->s = x, m->cap = cap;
    }
    m->s[m->n] = s;
    return m->n++;
}

/* The entry state of node i followed by state `next`. */
static int build(nfa *m, int i, int next, int depth) {
    if (m->full || depth > 200) {
        m->full = true;
        return next;
    }
    const ast *a = &m->p->nodes[i];
    switch (a->kind) {
    case A_EMPTY: return next;
    case A_SET: return st_new(m, (nstate){i, next, -1});
    case A_CAT: return build(m, a->a, build(m, a->b, next, depth + 1), depth + 1);
    case A_ALT: {
        const int x = build(m, a->a, next, depth + 1), y = build(m, a->b, next, depth + 1);
        return st_new(m, (nstate){-1, x, y});
    }
    default: { /* A_REP */
        int e = next;
        if (a->max < 0) {
            const int loop = st_new(m, (nstate){-1, -1, next});
            if (m->full) return next;
            m->s[loop].out = build(m, a->a, loop, depth + 1);
            e = loop;
        } else {
            for (int k = a->min; k < a->max && !m->full; k++) e = st_new(m, (nstate){-1, build(m, a->a, e, depth + 1), next});
        }
        for (int k = 0; k < a->min && !m->full; k++) e = build(m, a->a, e, depth + 1);
        return e;
    }
    }
}

/* ------------------------------------------------------------ DFA */

struct loom_pattern {
    uint16_t (*next)[256];
    uint8_t *accept;
    int n;
};

typedef struct {
    int *items; /* sorted NFA states of one DFA state */
    int n;
} subset;

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* The closure of the states in (v, n) over splits: the set and match
 * states reached, sorted, without repeats, into out. seen (all clear) is
 * left clear; visited has room for every state. */
static int closure(const nfa *m, const int *v, int n, int *out, uint8_t *seen, int *stack, int *visited,
                   long *work) {
    int k = 0, sp = 0, nv = 0;
    *work += n;
    for (int i = 0; i < n; i++) stack[sp++] = v[i];
    while (sp) {
        const int s = stack[--sp];
        if (seen[s]) continue;
        seen[s] = 1;
        visited[nv++] = s;
        if (m->s[s].set == -1) {
            stack[sp++] = m->s[s].out1;
            stack[sp++] = m->s[s].out;
        } else {
            out[k++] = s;
        }
    }
    for (int i = 0; i < nv; i++) seen[visited[i]] = 0;
    qsort(out, (size_t)k, sizeof *out, cmp_int);
    *work += nv + k;
    return k;
}


/* Room for more DFA states (doubling, up to LOOM_PATTERN_MAX_STATES). */
static bool grow_states(loom_pattern *d, subset **sets, int *cap) {
    const int c = *cap ? 2 * *cap : 16;
    if (c > LOOM_PATTERN_MAX_STATES) return false;
    subset *s = realloc(*sets, sizeof *s * (size_t)c);
    if (s) *sets = s;
    uint16_t(*nx)[256] = s ? realloc(d->next, sizeof *nx * (size_t)c) : NULL;
    if (nx) d->next = nx;
    uint8_t *acc = nx ? realloc(d->accept, (size_t)c) : NULL;
    if (!acc) return false;
    d->accept = acc;
    memset(s + *cap, 0, sizeof *s * (size_t)(c - *cap));
    memset(acc + *cap, 0, (size_t)(c - *cap));
    *cap = c;
    return true;
}

loom_status loom_pattern_compile(const char *re, size_t len, loom_pattern **out) {
    *out = NULL;
    if (len > MAX_PATTERN)
        return loom_error(LOOM_ERR_INVALID, "pattern of %zu bytes: at most %d are supported", len, MAX_PATTERN);
    parser p = {.re = re, .len = len};
    p.cap = len < (MAX_AST - 64) / 8 ? (int)(8 * len + 64) : MAX_AST; /* a byte of pattern makes 8 nodes at most */
    p.nodes = malloc(sizeof(ast) * (size_t)p.cap);
    if (!p.nodes) return loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
    const int root = parse_top(&p);
    if (!p.err && p.pos < p.len) p.err = "a ')' has no '('";
    if (p.err) {
        loom_status st = loom_error(LOOM_ERR_INVALID, "pattern '%.*s': %s (at byte %zu)", (int)(len > 200 ? 200 : len), re,
                                    p.err, p.pos);
        free(p.nodes);
        return st;
    }
    nfa m = {.p = &p};
    loom_pattern *d = calloc(1, sizeof *d);
    int *buf = NULL, *stack = NULL, *visited = NULL, cap_sets = 0;
    uint8_t *seen = NULL;
    subset *sets = NULL;
    loom_status st = d ? NULL : loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
    int match = -1, start = -1;
    long work = 0;
    /* bytes in exactly the same sets move alike: one closure per class of
     * them (the bytes no JSON string holds unescaped are never taken) */
    int cls[256], rep[256], n_cls = 0;
    if (!st) {
        int n_sets = 0;
        for (int i = 0; i < p.n; i++) n_sets += p.nodes[i].kind == A_SET;
        const size_t words = (size_t)(n_sets + 63) / 64 + 1;
        uint64_t *mem = calloc(256 * words, sizeof *mem);
        if (!mem) st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
        for (int i = 0, j = 0; mem && i < p.n; i++)
            if (p.nodes[i].kind == A_SET) {
                for (int c = 0; c < 256; c++)
                    if (bset_has(&p.nodes[i].set, c)) mem[(size_t)c * words + (size_t)j / 64] |= 1ull << (j % 64);
                j++;
            }
        for (int c = 0; mem && c < 256; c++) {
            cls[c] = -1;
            if (c == '"' || c == '\\' || c < 0x20) continue;
            int k = 0;
            while (k < n_cls && memcmp(mem + (size_t)rep[k] * words, mem + (size_t)c * words, words * sizeof *mem)) k++;
            if (k == n_cls) rep[n_cls++] = c;
            cls[c] = k;
        }
        free(mem);
    }
    if (!st) {
        match = st_new(&m, (nstate){-2, -1, -1});
        start = build(&m, root, match, 0);
        if (m.full) st = loom_error(LOOM_ERR_INVALID, "pattern '%.*s': too complex (more than %d automaton states)",
                                    (int)(len > 200 ? 200 : len), re, MAX_NFA);
    }
    /* buf: a closure's output [0, m.n), its input [m.n, 2 m.n) */
    if (!st) {
        buf = malloc(sizeof(int) * 2 * (size_t)m.n), stack = malloc(sizeof(int) * (3 * (size_t)m.n + 64));
        visited = malloc(sizeof(int) * (size_t)m.n), seen = calloc((size_t)m.n, 1);
        if (!buf || !stack || !visited || !seen) st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
    }
    /* subset construction; a DFA state's NFA states stay sorted for lookup */
    if (!st && !grow_states(d, &sets, &cap_sets)) st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
    if (!st) {
        int k = closure(&m, &start, 1, buf, seen, stack, visited, &work);
        sets[0].items = malloc(sizeof(int) * (size_t)(k ? k : 1));
        if (!sets[0].items) st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
        else memcpy(sets[0].items, buf, sizeof(int) * (size_t)k), sets[0].n = k, d->n = 1;
    }
    for (int ds = 0; !st && ds < d->n; ds++) {
        int to[256];
        for (int k = 0; k < n_cls && !st; k++) {
            const int c = rep[k];
            to[k] = LOOM_PATTERN_DEAD;
            int nv = 0;
            for (int i = 0; i < sets[ds].n; i++) {
                const nstate *x = &m.s[sets[ds].items[i]];
                if (x->set >= 0 && bset_has(&p.nodes[x->set].set, c)) buf[m.n + nv++] = x->out;
            }
            if (!nv) continue;
            const int n = closure(&m, buf + m.n, nv, buf, seen, stack, visited, &work);
            int found = -1;
            for (int j = 0; j < d->n && found < 0; j++)
                if (sets[j].n == n && !memcmp(sets[j].items, buf, sizeof(int) * (size_t)n)) found = j;
            work += d->n;
            if (found < 0 && (d->n >= LOOM_PATTERN_MAX_STATES || work > MAX_WORK)) {
                st = loom_error(LOOM_ERR_INVALID, "pattern '%.*s': too complex (more than %d automaton states)",
                                (int)(len > 200 ? 200 : len), re, LOOM_PATTERN_MAX_STATES);
                break;
            }
            if (found < 0 && d->n == cap_sets && !grow_states(d, &sets, &cap_sets)) {
                st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
                break;
            }
            if (found < 0) {
                sets[d->n].items = malloc(sizeof(int) * (size_t)(n ? n : 1));
                if (!sets[d->n].items) {
                    st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
                    break;
                }
                memcpy(sets[d->n].items, buf, sizeof(int) * (size_t)n);
                sets[d->n].n = n;
                found = d->n++;
            }
            to[k] = found;
        }
        for (int c = 0; c < 256; c++) d->next[ds][c] = st || cls[c] < 0 ? LOOM_PATTERN_DEAD : (uint16_t)to[cls[c]];
        for (int i = 0; i < sets[ds].n; i++) d->accept[ds] |= sets[ds].items[i] == match;
    }
    /* keep only the states from which an accepting one is reachable */
    if (!st) {
        uint8_t *live = calloc((size_t)d->n, 1);
        if (!live) st = loom_error(LOOM_ERR_NOMEM, "pattern: out of memory");
        for (int i = 0; live && i < d->n; i++) live[i] = d->accept[i];
        for (bool more = true; live && more;) { /* back to front: a chain of states settles in one pass */
            more = false;
            for (int i = d->n - 1; i >= 0; i--)
                for (int c = 0; c < 256 && !live[i]; c++)
                    if (d->next[i][c] != LOOM_PATTERN_DEAD && live[d->next[i][c]]) live[i] = 1, more = true;
        }
        for (int i = 0; live && i < d->n; i++)
            for (int c = 0; c < 256; c++)
                if (d->next[i][c] != LOOM_PATTERN_DEAD && !live[d->next[i][c]]) d->next[i][c] = LOOM_PATTERN_DEAD;
        if (live && !live[0])
            st = loom_error(LOOM_ERR_INVALID, "pattern '%.*s' matches no string a JSON string holds without escapes",
                            (int)(len > 200 ? 200 : len), re);
        free(live);
    }
    for (int i = 0; sets && i < cap_sets; i++) free(sets[i].items);
    free(sets);
    free(seen);
    free(visited);
    free(stack);
    free(buf);
    free(m.s);
    free(p.nodes);
    if (st) {
        loom_pattern_free(d);
        return st;
    }
    *out = d;
    return NULL;
}

void loom_pattern_free(loom_pattern *p) {
    if (!p) return;
    free(p->next);
    free(p->accept);
    free(p);
}

uint16_t loom_pattern_next(const loom_pattern *p, uint16_t s, uint8_t c) {
    return s < p->n ? p->next[s][c] : LOOM_PATTERN_DEAD;
}

bool loom_pattern_accepts(const loom_pattern *p, uint16_t s) { return s < p->n && p->accept[s]; }

bool loom_pattern_match(const loom_pattern *p, const char *s, size_t n) {
    uint16_t q = 0;
    for (size_t i = 0; i < n && q != LOOM_PATTERN_DEAD; i++) q = loom_pattern_next(p, q, (uint8_t)s[i]);
    return loom_pattern_accepts(p, q);
}
