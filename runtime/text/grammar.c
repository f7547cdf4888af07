/*
 * runtime/text/grammar.c — GBNF grammars compiled to rules of character
 * classes and rule references, matched by a set of stacks of rule
 * positions (contract in grammar.h).
 *
 * A compiled grammar is one array of elements: rule r's alternatives start
 * at rule_start[r], each a run of CLASS and REF elements ended by ALT (the
 * next alternative follows) or END (the rule's last). A reading of the
 * text so far is a stack of positions in that array, the innermost last;
 * after expansion its top is always a CLASS (the character that may come
 * next) or the stack is empty (root is whole). Groups and repetitions
 * become rules of their own, as llama.cpp writes them: x* is R ::= x R | ,
 * x{2,4} is x x R2 with R2 ::= x R1 | and R1 ::= x | .
 */
#include "runtime/text/grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/utf8.h"

#define MAX_ELEMENTS 200000
#define MAX_REPEAT 2000
#define MAX_NEST 64

enum { E_END, E_ALT, E_REF, E_CLASS };

typedef struct {
    uint8_t t;
    uint32_t v; /* REF: the rule; CLASS: the class */
} gel;

typedef struct {
    uint64_t ascii[2]; /* membership of code points 0..127, negation applied */
    uint32_t off, n;   /* its ranges: rng[2 * off .. 2 * (off + n)) as lo, hi pairs */
    bool neg;
} gclass;

struct loom_grammar {
    gel *el;
    uint32_t n_el;
    uint32_t *alt_off; /* (n_rules + 1): rule r's alternatives start at alts[alt_off[r] .. alt_off[r + 1]) */
    uint32_t *alts;
    uint32_t n_rules, root;
    gclass *cls;
    uint32_t n_cls;
    uint32_t *rng;
};

/* ------------------------------------------------------------------ parse */

typedef struct {
    char *name;
    size_t len;
    gel *el;
    uint32_t n, cap;
    bool defined, synth;
} prule;

typedef struct {
    const char *start, *end;
    char err[256];
    uint32_t *names; /* named rules by hash of their name: index + 1, 0 empty */
    uint32_t names_cap, n_named;
    prule *r;
    uint32_t nr, capr;
    gclass *cls;
    uint32_t ncls, capcls;
    uint32_t *rng; /* pairs */
    uint32_t nrng, caprng;
    size_t total;
    int depth;
} gp;

static const char *fail(gp *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const char *fail(gp *p, const char *fmt, ...) {
    if (!p->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, sizeof p->err, fmt, ap);
        va_end(ap);
    }
    return NULL;
}

static bool grow(void **a, uint32_t *cap, uint32_t need, size_t elem) {
    if (need <= *cap) return true;
    uint32_t c = *cap ? *cap * 2 : 16;
    while (c < need) c *= 2;
    void *n = realloc(*a, (size_t)c * elem);
    if (!n) return false;
    *a = n, *cap = c;
    return true;
}

static bool push(gp *p, uint32_t r, uint8_t t, uint32_t v) {
    if (++p->total > MAX_ELEMENTS) {
        fail(p, "the grammar has more than %d elements once its repetitions are written out", MAX_ELEMENTS);
        return false;
    }
    prule *q = &p->r[r];
    if (!grow((void **)&q->el, &q->cap, q->n + 1, sizeof(gel))) {
        fail(p, "out of memory");
        return false;
    }
    q->el[q->n++] = (gel){t, v};
    return true;
}

static int64_t new_rule(gp *p, const char *name, size_t len, bool synth) {
    if (!grow((void **)&p->r, &p->capr, p->nr + 1, sizeof(prule))) return fail(p, "out of memory"), -1;
    char *n = malloc(len + 1);
    if (!n) return fail(p, "out of memory"), -1;
    memcpy(n, name, len);
    n[len] = 0;
    p->r[p->nr] = (prule){.name = n, .len = len, .synth = synth};
    return p->nr++;
}

static uint32_t name_hash(const char *s, size_t len) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int64_t named_rule(gp *p, const char *name, size_t len) {
    if (2 * (p->n_named + 1) > p->names_cap) { /* rehash into twice the slots */
        uint32_t cap = p->names_cap ? 2 * p->names_cap : 64;
        uint32_t *t = calloc(cap, sizeof *t);
        if (!t) return fail(p, "out of memory"), -1;
        for (uint32_t i = 0; i < p->names_cap; i++) {
            if (!p->names[i]) continue;
            const prule *q = &p->r[p->names[i] - 1];
            uint32_t h = name_hash(q->name, q->len) & (cap - 1);
            while (t[h]) h = (h + 1) & (cap - 1);
            t[h] = p->names[i];
        }
        free(p->names);
        p->names = t, p->names_cap = cap;
    }
    uint32_t h = name_hash(name, len) & (p->names_cap - 1);
    for (; p->names[h]; h = (h + 1) & (p->names_cap - 1)) {
        const prule *q = &p->r[p->names[h] - 1];
        if (q->len == len && !memcmp(q->name, name, len)) return p->names[h] - 1;
    }
    int64_t r = new_rule(p, name, len, false);
    if (r >= 0) p->names[h] = (uint32_t)r + 1, p->n_named++;
    return r;
}

static int64_t synth_rule(gp *p, uint32_t parent) {
    char name[96];
    int n = snprintf(name, sizeof name, "%.64s_%u", p->r[parent].name, p->nr);
    return new_rule(p, name, (size_t)n, true);
}

static int64_t new_class(gp *p, bool neg) {
    if (!grow((void **)&p->cls, &p->capcls, p->ncls + 1, sizeof(gclass))) return fail(p, "out of memory"), -1;
    p->cls[p->ncls] = (gclass){.off = p->nrng, .neg = neg};
    return p->ncls++;
}

static bool class_range(gp *p, uint32_t lo, uint32_t hi) {
    if (!grow((void **)&p->rng, &p->caprng, 2 * (p->nrng + 1), sizeof(uint32_t))) return fail(p, "out of memory"), false;
    p->rng[2 * p->nrng] = lo, p->rng[2 * p->nrng + 1] = hi;
    p->nrng++, p->cls[p->ncls - 1].n++;
    return true;
}

static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static const char *space(const char *s, bool newline_ok) {
    while (*s == ' ' || *s == '\t' || *s == '#' || (newline_ok && (*s == '\r' || *s == '\n'))) {
        if (*s == '#')
            while (*s && *s != '\r' && *s != '\n') s++;
        else
            s++;
    }
    return s;
}

static const char *hex(gp *p, const char *s, int digits, uint32_t *cp) {
    uint32_t v = 0;
    for (int i = 0; i < digits; i++) {
        const char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return fail(p, "expecting %d hex digits at '%.20s'", digits, s);
        v = v << 4 | (uint32_t)d;
    }
    *cp = v;
    return s + digits;
}

/* One character of a literal or class: an escape or a UTF-8 character. */
static const char *parse_char(gp *p, const char *s, uint32_t *cp) {
    if (*s == '\\') {
        switch (s[1]) {
        case 'x': return hex(p, s + 2, 2, cp);
        case 'u': return hex(p, s + 2, 4, cp);
        case 'U': return hex(p, s + 2, 8, cp);
        case 't': *cp = '\t'; return s + 2;
        case 'r': *cp = '\r'; return s + 2;
        case 'n': *cp = '\n'; return s + 2;
        case '\\': case '"': case '[': case ']': case '-': *cp = (uint8_t)s[1]; return s + 2;
        default: return fail(p, "unknown escape '\\%c'", s[1] ? s[1] : ' ');
        }
    }
    if (!*s) return fail(p, "the grammar ends inside a literal or a character class");
    int n = loom_utf8_decode((const uint8_t *)s, (size_t)(p->end - s), cp);
    if (n <= 0) return fail(p, "the grammar is not valid UTF-8 at byte %td", s - p->start);
    return s + n;
}

static const char *parse_alternates(gp *p, const char *s, uint32_t r, bool nested);

/* Writes x{min,max} (max UINT32_MAX: unbounded) for x the elements from `last` on. */
static bool repeat(gp *p, uint32_t r, uint32_t last, uint32_t min, uint32_t max) {
    const uint32_t np = p->r[r].n - last;
    if (np == 0) return true; /* "" repeated: still nothing */
    gel *prev = malloc(np * sizeof(gel));
    if (!prev) return fail(p, "out of memory"), false;
    memcpy(prev, p->r[r].el + last, np * sizeof(gel));
    bool ok = true;
    if (min == 0) {
        p->total -= np;
        p->r[r].n = last;
    }
    for (uint32_t i = 1; ok && i < min; i++)
        for (uint32_t k = 0; ok && k < np; k++) ok = push(p, r, prev[k].t, prev[k].v);
    const bool unbounded = max == UINT32_MAX;
    const uint32_t n_opt = unbounded ? 1 : max - min;
    int64_t last_rec = -1;
    for (uint32_t i = 0; ok && i < n_opt; i++) {
        int64_t s = synth_rule(p, r);
        if (s < 0) {
            ok = false;
            break;
        }
        for (uint32_t k = 0; ok && k < np; k++) ok = push(p, (uint32_t)s, prev[k].t, prev[k].v);
        if (ok && (i > 0 || unbounded)) ok = push(p, (uint32_t)s, E_REF, (uint32_t)(unbounded ? s : last_rec));
        ok = ok && push(p, (uint32_t)s, E_ALT, 0) && push(p, (uint32_t)s, E_END, 0);
        last_rec = s;
    }
    if (ok && n_opt > 0) ok = push(p, r, E_REF, (uint32_t)last_rec);
    free(prev);
    return ok;
}

static const char *parse_count(gp *p, const char *s, uint32_t *v) {
    if (*s < '0' || *s > '9') return fail(p, "expecting a number at '%.20s'", s);
    uint64_t x = 0;
    while (*s >= '0' && *s <= '9') {
        x = x * 10 + (uint64_t)(*s++ - '0');
        if (x > 1000000) x = 1000000;
    }
    *v = (uint32_t)x;
    return s;
}

static const char *parse_sequence(gp *p, const char *s, uint32_t r, bool nested) {
    int64_t last = -1; /* where the last element (what a repetition repeats) starts */
    while (*s) {
        const uint32_t at = p->r[r].n;
        if (*s == '"') {
            s++;
            while (*s != '"') {
                uint32_t c;
                if (!(s = parse_char(p, s, &c))) return NULL;
                int64_t k = new_class(p, false);
                if (k < 0 || !class_range(p, c, c) || !push(p, r, E_CLASS, (uint32_t)k)) return NULL;
            }
            s = space(s + 1, nested);
            last = at;
        } else if (*s == '[') {
            s++;
            const bool neg = *s == '^';
            if (neg) s++;
            int64_t k = new_class(p, neg);
            if (k < 0) return NULL;
            while (*s != ']') {
                uint32_t lo, hi;
                if (!(s = parse_char(p, s, &lo))) return NULL;
                hi = lo;
                if (s[0] == '-' && s[1] && s[1] != ']' && !(s = parse_char(p, s + 1, &hi))) return NULL;
                if (hi < lo) return fail(p, "the class range U+%04X-U+%04X runs backwards", lo, hi);
                if (!class_range(p, lo, hi)) return NULL;
            }
            if (!push(p, r, E_CLASS, (uint32_t)k)) return NULL;
            s = space(s + 1, nested);
            last = at;
        } else if (*s == '.') {
            int64_t k = new_class(p, true);
            if (k < 0 || !push(p, r, E_CLASS, (uint32_t)k)) return NULL;
            s = space(s + 1, nested);
            last = at;
        } else if (*s == '<' || *s == '!') {
            return fail(p, "token references ('%.20s') are not supported: write the token's text as a literal", s);
        } else if (word_char(*s)) {
            const char *e = s;
            while (word_char(*e)) e++;
            int64_t q = named_rule(p, s, (size_t)(e - s));
            if (q < 0 || !push(p, r, E_REF, (uint32_t)q)) return NULL;
            s = space(e, nested);
            last = at;
        } else if (*s == '(') {
            if (++p->depth > MAX_NEST) return fail(p, "parentheses nest deeper than %d", MAX_NEST);
            int64_t g = synth_rule(p, r);
            if (g < 0) return NULL;
            if (!(s = parse_alternates(p, space(s + 1, true), (uint32_t)g, true))) return NULL;
            if (!push(p, (uint32_t)g, E_END, 0)) return NULL;
            if (*s != ')') return fail(p, "expecting ')' at '%.20s'", s);
            p->depth--;
            if (!push(p, r, E_REF, (uint32_t)g)) return NULL;
            s = space(s + 1, nested);
            last = at;
        } else if (*s == '*' || *s == '+' || *s == '?' || *s == '{') {
            if (last < 0) return fail(p, "'%c' repeats nothing", *s);
            uint32_t min = 0, max = UINT32_MAX;
            if (*s == '+') min = 1;
            if (*s == '?') max = 1;
            if (*s == '{') {
                if (!(s = parse_count(p, space(s + 1, nested), &min))) return NULL;
                s = space(s, nested);
                if (*s == '}') {
                    max = min;
                } else if (*s == ',') {
                    s = space(s + 1, nested);
                    if (*s >= '0' && *s <= '9') {
                        if (!(s = parse_count(p, s, &max))) return NULL;
                        s = space(s, nested);
                        if (max < min) return fail(p, "the repetition {%u,%u} has its bounds backwards", min, max);
                        if (max > MAX_REPEAT) max = UINT32_MAX; /* as llama.cpp: a large bound is none */
                    }
                    if (*s != '}') return fail(p, "expecting '}' at '%.20s'", s);
                } else {
                    return fail(p, "expecting ',' or '}' at '%.20s'", s);
                }
                if (min > MAX_REPEAT) return fail(p, "a repetition of at least %u exceeds %d", min, MAX_REPEAT);
            }
            if (!repeat(p, r, (uint32_t)last, min, max)) return NULL;
            s = space(s + 1, nested);
            last = -1;
        } else {
            break;
        }
    }
    return s;
}

static const char *parse_alternates(gp *p, const char *s, uint32_t r, bool nested) {
    if (!(s = parse_sequence(p, s, r, nested))) return NULL;
    while (*s == '|') {
        if (!push(p, r, E_ALT, 0)) return NULL;
        if (!(s = parse_sequence(p, space(s + 1, true), r, nested))) return NULL;
    }
    return s;
}

static const char *parse_rule(gp *p, const char *s) {
    const char *e = s;
    while (word_char(*e)) e++;
    if (e == s) return fail(p, "expecting a rule name at '%.20s'", s);
    int64_t r = named_rule(p, s, (size_t)(e - s));
    if (r < 0) return NULL;
    if (p->r[r].defined) return fail(p, "rule '%.*s' is defined twice", (int)(e - s), s);
    p->r[r].defined = true;
    if (strncmp(space(e, false), "::=", 3) != 0) return fail(p, "expecting '::=' after '%.*s'", (int)(e - s), s);
    s = space(e, false);
    if (!(s = parse_alternates(p, space(s + 3, true), (uint32_t)r, false))) return NULL;
    if (!push(p, (uint32_t)r, E_END, 0)) return NULL;
    if (*s == '\r') s += s[1] == '\n' ? 2 : 1;
    else if (*s == '\n') s++;
    else if (*s) return fail(p, "expecting the end of the line at '%.20s'", s);
    return space(s, true);
}

/* ---------------------------------------------------------------- compile */

static bool left_recursive(const loom_grammar *g, const bool *nullable, uint8_t *color, uint32_t r, int depth,
                           uint32_t *bad) {
    if (color[r] == 2) return false;
    if (color[r] == 1 || depth > 10000) {
        *bad = r;
        return true;
    }
    color[r] = 1;
    for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1]; a++)
        for (uint32_t k = g->alts[a]; g->el[k].t == E_REF; k++) {
            if (left_recursive(g, nullable, color, g->el[k].v, depth + 1, bad)) return true;
            if (!nullable[g->el[k].v]) break;
        }
    color[r] = 2;
    return false;
}

static loom_status finish(gp *p, loom_grammar **out) {
    for (uint32_t i = 0; i < p->nr; i++)
        if (!p->r[i].synth && !p->r[i].defined)
            return loom_error(LOOM_ERR_INVALID, "grammar: rule '%s' is used but not defined", p->r[i].name);
    uint32_t root = UINT32_MAX;
    for (uint32_t i = 0; i < p->nr; i++)
        if (!p->r[i].synth && !strcmp(p->r[i].name, "root")) root = i;
    if (root == UINT32_MAX) return loom_error(LOOM_ERR_INVALID, "grammar: it has no 'root' rule");
    loom_grammar *g = calloc(1, sizeof *g);
    if (!g) return loom_error(LOOM_ERR_NOMEM, "out of memory for a grammar");
    uint32_t n_alts = 0;
    for (uint32_t i = 0; i < p->nr; i++) {
        g->n_el += p->r[i].n;
        for (uint32_t k = 0; k < p->r[i].n; k++) n_alts += p->r[i].el[k].t != E_REF && p->r[i].el[k].t != E_CLASS;
    }
    g->el = malloc(g->n_el * sizeof(gel));
    g->alt_off = malloc((p->nr + 1) * sizeof(uint32_t));
    g->alts = malloc((n_alts ? n_alts : 1) * sizeof(uint32_t));
    g->cls = p->cls, g->n_cls = p->ncls, g->rng = p->rng;
    p->cls = NULL, p->rng = NULL;
    g->n_rules = p->nr, g->root = root;
    bool *nullable = calloc(p->nr, sizeof(bool));
    uint8_t *color = calloc(p->nr, 1);
    if (!g->el || !g->alt_off || !g->alts || !nullable || !color) {
        free(nullable), free(color), loom_grammar_free(g);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a grammar");
    }
    uint32_t at = 0, na = 0;
    for (uint32_t i = 0; i < p->nr; i++) {
        g->alt_off[i] = na;
        g->alts[na++] = at;
        for (uint32_t k = 0; k < p->r[i].n; k++) {
            gel e = p->r[i].el[k];
            g->el[at + k] = e;
            if (e.t == E_ALT) g->alts[na++] = at + k + 1;
        }
        at += p->r[i].n;
    }
    g->alt_off[p->nr] = na;
    for (uint32_t c = 0; c < g->n_cls; c++) { /* ASCII membership, negation applied */
        gclass *k = &g->cls[c];
        for (uint32_t j = 0; j < k->n; j++)
            for (uint32_t cp = g->rng[2 * (k->off + j)]; cp <= g->rng[2 * (k->off + j) + 1] && cp < 128; cp++)
                k->ascii[cp >> 6] |= 1ull << (cp & 63);
        if (k->neg) k->ascii[0] = ~k->ascii[0], k->ascii[1] = ~k->ascii[1];
    }
    for (bool changed = true; changed;) { /* rules that can derive the empty string */
        changed = false;
        for (uint32_t r = 0; r < p->nr; r++) {
            if (nullable[r]) continue;
            for (uint32_t a = g->alt_off[r]; a < g->alt_off[r + 1] && !nullable[r]; a++) {
                uint32_t k = g->alts[a];
                while (g->el[k].t == E_REF && nullable[g->el[k].v]) k++;
                if (g->el[k].t == E_ALT || g->el[k].t == E_END) nullable[r] = changed = true;
            }
        }
    }
    loom_status st = NULL;
    for (uint32_t r = 0; r < p->nr && !st; r++) {
        uint32_t bad;
        if (left_recursive(g, nullable, color, r, 0, &bad)) {
            st = loom_error(LOOM_ERR_INVALID, /* a synthesized rule is named after the rule it came from */
                            "grammar: rule '%s' is left-recursive (it can reach itself before reading a character)",
                            p->r[bad].name);
        }
    }
    free(nullable), free(color);
    if (st) {
        loom_grammar_free(g);
        return st;
    }
    *out = g;
    return NULL;
}

/* text as a NUL-terminated copy parsed by body (NULL: p.err says why), then
 * compiled; what ("grammar", "regex") leads the messages. */
static loom_status compile(const char *text, size_t len, const char *what, const char *(*body)(gp *, const char *),
                           loom_grammar **out) {
    *out = NULL;
    if (len > LOOM_GRAMMAR_MAX_TEXT)
        return loom_error(LOOM_ERR_INVALID, "%s: %zu bytes is over the limit of %u", what, len, LOOM_GRAMMAR_MAX_TEXT);
    if (memchr(text, 0, len)) return loom_error(LOOM_ERR_INVALID, "%s: it contains a NUL byte", what);
    char *src = malloc(len + 1);
    gp p = {0};
    if (!src) return loom_error(LOOM_ERR_NOMEM, "out of memory for a %s", what);
    memcpy(src, text, len);
    src[len] = 0;
    p.start = src, p.end = src + len;
    loom_status st = body(&p, src) ? finish(&p, out) : loom_error(LOOM_ERR_INVALID, "%s: %s", what, p.err);
    for (uint32_t i = 0; i < p.nr; i++) free(p.r[i].name), free(p.r[i].el);
    free(p.r), free(p.cls), free(p.rng), free(p.names), free(src);
    return st;
}

static const char *gbnf_body(gp *p, const char *src) {
    const char *s = space(src, true);
    while (s && *s) s = parse_rule(p, s);
    return s;
}

loom_status loom_grammar_compile(const char *text, size_t len, loom_grammar **out) {
    return compile(text, len, "grammar", gbnf_body, out);
}

/* ------------------------------------------------------- regular expressions */

/* The classes \d \w \s (upper case: negated) as ranges; false for another letter. */
static bool re_class_escape(gp *p, char c, bool in_class, bool *handled) {
    static const uint32_t d[] = {'0', '9'}, w[] = {'0', '9', 'A', 'Z', '_', '_', 'a', 'z'},
                          sp[] = {'\t', '\r', ' ', ' '};
    const uint32_t *r = NULL;
    int n = 0;
    switch (c | 0x20) {
    case 'd': r = d, n = 1; break;
    case 'w': r = w, n = 4; break;
    case 's': r = sp, n = 2; break;
    default: *handled = false; return true;
    }
    *handled = true;
    const bool neg = c >= 'A' && c <= 'Z';
    if (!in_class) {
        if (new_class(p, neg) < 0) return false;
    } else if (neg) { /* inside a class: the ranges between (r is sorted) */
        uint32_t from = 0;
        for (int i = 0; i <= n; i++) {
            const uint32_t to = i < n ? r[2 * i] : 0x110000;
            if (to > from && !class_range(p, from, to - 1)) return false;
            if (i < n) from = r[2 * i + 1] + 1;
        }
        return true;
    }
    for (int i = 0; i < n; i++)
        if (!class_range(p, r[2 * i], r[2 * i + 1])) return false;
    return true;
}

/* One character of a regular expression (outside or inside a class). */
static const char *re_char(gp *p, const char *s, uint32_t *cp) {
    if (*s != '\\') return parse_char(p, s, cp);
    switch (s[1]) {
    case 'x': return hex(p, s + 2, 2, cp);
    case 'u': return hex(p, s + 2, 4, cp);
    case 'n': *cp = '\n'; return s + 2;
    case 'r': *cp = '\r'; return s + 2;
    case 't': *cp = '\t'; return s + 2;
    case 'f': *cp = '\f'; return s + 2;
    case 'v': *cp = '\v'; return s + 2;
    case '0': *cp = 0; return s + 2;
    case 'b': case 'B': return fail(p, "word boundaries ('\\%c') are not supported", s[1]);
    default:
        if (s[1] >= '1' && s[1] <= '9') return fail(p, "backreferences ('\\%c') are not supported", s[1]);
        if ((s[1] >= 'a' && s[1] <= 'z') || (s[1] >= 'A' && s[1] <= 'Z') || !s[1])
            return fail(p, "the escape '\\%c' is not supported", s[1] ? s[1] : ' ');
        *cp = (uint8_t)s[1]; /* escaped punctuation */
        return s + 2;
    }
}

static const char *re_alternates(gp *p, const char *s, uint32_t r);

static const char *re_sequence(gp *p, const char *s, uint32_t r) {
    int64_t last = -1;
    while (*s && *s != '|' && *s != ')') {
        const uint32_t at = p->r[r].n;
        if (*s == '^' && at == 0) { /* the match is whole anyway */
            s++;
            continue;
        }
        if (*s == '$' && (s[1] == 0 || s[1] == '|' || s[1] == ')')) {
            s++;
            continue;
        }
        if (*s == '(') {
            s++;
            if (*s == '?') {
                if (s[1] == ':') s += 2;
                else if ((s[1] == 'P' && s[2] == '<') || (s[1] == '<' && s[2] != '=' && s[2] != '!')) {
                    s = strchr(s, '>');
                    if (!s) return fail(p, "a group name is not closed with '>'");
                    s++;
                } else {
                    return fail(p, "'(?%c' (lookarounds, flags) is not supported", s[1] ? s[1] : ' ');
                }
            }
            if (++p->depth > MAX_NEST) return fail(p, "parentheses nest deeper than %d", MAX_NEST);
            int64_t g = synth_rule(p, r);
            if (g < 0 || !(s = re_alternates(p, s, (uint32_t)g)) || !push(p, (uint32_t)g, E_END, 0)) return NULL;
            if (*s != ')') return fail(p, "a group is not closed with ')'");
            p->depth--;
            s++;
            if (!push(p, r, E_REF, (uint32_t)g)) return NULL;
        } else if (*s == '[') {
            s++;
            const bool neg = *s == '^';
            if (neg) s++;
            if (new_class(p, neg) < 0) return NULL;
            bool first = true;
            while (*s != ']' || first) {
                first = false;
                bool handled = false;
                if (*s == '\\' && !re_class_escape(p, s[1], true, &handled)) return NULL;
                if (handled) {
                    s += 2;
                    continue;
                }
                uint32_t lo, hi;
                if (!(s = re_char(p, s, &lo))) return NULL;
                hi = lo;
                if (s[0] == '-' && s[1] && s[1] != ']' && !(s = re_char(p, s + 1, &hi))) return NULL;
                if (hi < lo) return fail(p, "the class range U+%04X-U+%04X runs backwards", lo, hi);
                if (!class_range(p, lo, hi)) return NULL;
            }
            s++;
            if (!push(p, r, E_CLASS, p->ncls - 1)) return NULL;
        } else if (*s == '.') { /* any character but a line break, as Python's re */
            if (new_class(p, true) < 0 || !class_range(p, '\n', '\n') || !push(p, r, E_CLASS, p->ncls - 1)) return NULL;
            s++;
        } else if (*s == '*' || *s == '+' || *s == '?' || *s == '{') {
            uint32_t min = 0, max = UINT32_MAX;
            const char *q = s;
            if (*s == '+') min = 1;
            if (*s == '?') max = 1;
            if (*s == '{') {
                if (!(q = parse_count(p, s + 1, &min))) return NULL;
                max = min;
                if (*q == ',') {
                    max = UINT32_MAX;
                    q++;
                    if (*q >= '0' && *q <= '9' && !(q = parse_count(p, q, &max))) return NULL;
                }
                if (*q != '}') return fail(p, "expecting '}' at '%.20s'", q);
                if (max != UINT32_MAX && max < min) return fail(p, "the repetition {%u,%u} has its bounds backwards", min, max);
                if (min > MAX_REPEAT) return fail(p, "a repetition of at least %u exceeds %d", min, MAX_REPEAT);
                if (max != UINT32_MAX && max > MAX_REPEAT) max = UINT32_MAX;
            }
            if (last < 0) return fail(p, "'%c' repeats nothing", *s);
            if (!repeat(p, r, (uint32_t)last, min, max)) return NULL;
            s = q + 1;
            if (*s == '?' || *s == '+') s++; /* lazy and possessive forms: the same strings */
            last = -1;
            continue;
        } else {
            bool handled = false;
            if (*s == '\\' && !re_class_escape(p, s[1], false, &handled)) return NULL;
            if (handled) {
                s += 2;
                if (!push(p, r, E_CLASS, p->ncls - 1)) return NULL;
            } else {
                uint32_t c;
                if (!(s = re_char(p, s, &c))) return NULL;
                if (new_class(p, false) < 0 || !class_range(p, c, c) || !push(p, r, E_CLASS, p->ncls - 1)) return NULL;
            }
        }
        last = at;
    }
    return s;
}

static const char *re_alternates(gp *p, const char *s, uint32_t r) {
    if (!(s = re_sequence(p, s, r))) return NULL;
    while (*s == '|') {
        if (!push(p, r, E_ALT, 0) || !(s = re_sequence(p, s + 1, r))) return NULL;
    }
    return s;
}

/* The whole expression as root's alternatives. */
static const char *regex_body(gp *p, const char *src) {
    int64_t root = named_rule(p, "root", 4);
    const char *s = root < 0 ? NULL : re_alternates(p, src, (uint32_t)root);
    if (s && *s) s = fail(p, "an unmatched ')'");
    if (s && !push(p, (uint32_t)root, E_END, 0)) s = NULL;
    if (s) p->r[root].defined = true;
    return s;
}

loom_status loom_grammar_compile_regex(const char *re, size_t len, loom_grammar **out) {
    return compile(re, len, "regex", regex_body, out);
}

void loom_grammar_free(loom_grammar *g) {
    if (!g) return;
    free(g->el), free(g->alt_off), free(g->alts), free(g->cls), free(g->rng);
    free(g);
}

char *loom_grammar_choice(const char *const *choices, int n) {
    loom_strbuf b = {0};
    bool ok = !loom_strbuf_append(&b, "root ::= ", 9);
    for (int i = 0; ok && i < n; i++) {
        ok = !loom_strbuf_append(&b, i ? " | \"" : "\"", i ? 4 : 1);
        for (const unsigned char *c = (const unsigned char *)choices[i]; ok && *c; c++) {
            char esc[8];
            int k = *c == '"' || *c == '\\' ? snprintf(esc, sizeof esc, "\\%c", *c)
                    : *c < 0x20 || *c == 0x7F ? snprintf(esc, sizeof esc, "\\x%02X", *c)
                                               : (esc[0] = (char)*c, 1);
            ok = !loom_strbuf_append(&b, esc, (size_t)k);
        }
        ok = ok && !loom_strbuf_append(&b, "\"", 1);
    }
    if (!ok) {
        loom_strbuf_free(&b);
        return NULL;
    }
    return b.data;
}

/* ---------------------------------------------------------------- matcher */

/* The matcher builds a deterministic automaton as it goes: each set of
 * readings it meets is interned as a state (its stacks in a pool), and
 * each step from a state on a code point is remembered, so text that
 * comes back to a state it has seen (inside a string, a list's items) is
 * matched by table lookups. The tables are emptied, the current state
 * kept, when they pass the bounds below. */
#define MAX_STATES 4096
#define MAX_POOL (4u << 20)

typedef struct {
    uint32_t *buf; /* stacks, each its depth d then d positions (innermost last) */
    size_t len, cap;
    uint32_t n;
} gstate;

typedef struct {
    uint32_t off, len; /* its stacks: pool[off .. off + len) */
    uint32_t hash;
    bool complete;     /* an empty stack: the text is whole */
} sinfo;

#define TAB (4 * LOOM_GRAMMAR_MAX_STACKS)
#define SEEN 8192
#define MAX_WORK 200000
#define DEAD UINT32_MAX

typedef struct {
    uint32_t from, cp, to; /* from DEAD: empty */
} gtrans;

struct loom_grammar_matcher {
    const loom_grammar *g;
    uint32_t *pool;
    size_t pool_len, pool_cap;
    sinfo *states;
    uint32_t n_states, cap; /* the tables grow with the states (cap <= MAX_STATES) */
    uint32_t *by_hash;      /* (2 * cap) state + 1 by hash, 0 empty */
    gtrans *trans;          /* (4 * cap) steps seen, at most half full */
    uint32_t n_trans;
    uint32_t cur;          /* the text so far: a state, */
    uint8_t need, total;   /* a character begun: continuation bytes still to come, its length */
    uint32_t val;          /* and its bits so far */
    gstate tmp;            /* a step's readings before they are interned */
    uint32_t *scratch;     /* (MAX_DEPTH) one stack */
    uint32_t *wl;          /* stacks still to expand, each its positions then its depth */
    size_t wl_len, wl_cap;
    uint32_t gen;
    struct {
        uint32_t gen, off;
    } tab[TAB]; /* this expansion's stacks by hash (duplicates merged) */
    struct {
        uint32_t gen;
        uint64_t h;
    } seen[SEEN];  /* this expansion's stacks with a rule on top, by 64-bit hash: each expanded once */
    uint32_t work;  /* this expansion's steps (at most MAX_WORK) */
    uint64_t spent; /* stack words moved since the text last grew (at most LOOM_GRAMMAR_STEP_BUDGET) */
    bool feeding;   /* text being fed is computed whatever it costs */
};

static bool class_has(const loom_grammar *g, uint32_t c, uint32_t cp) {
    const gclass *k = &g->cls[c];
    if (cp < 128) return k->ascii[cp >> 6] >> (cp & 63) & 1;
    bool in = false;
    for (uint32_t j = 0; j < k->n && !in; j++) in = cp >= g->rng[2 * (k->off + j)] && cp <= g->rng[2 * (k->off + j) + 1];
    return in != k->neg;
}

/* Whether the class may take some code point in [lo, hi]. A negated class
 * is checked against each of its ranges alone (a union of ranges covering
 * [lo, hi] together is not seen: the answer is then yes). */
static bool class_meets(const loom_grammar *g, uint32_t c, uint32_t lo, uint32_t hi) {
    const gclass *k = &g->cls[c];
    for (uint32_t j = 0; j < k->n; j++) {
        const uint32_t a = g->rng[2 * (k->off + j)], b = g->rng[2 * (k->off + j) + 1];
        if (!k->neg && a <= hi && b >= lo) return true;
        if (k->neg && a <= lo && b >= hi) return false;
    }
    return k->neg;
}

static uint32_t hash_words(uint32_t h, const uint32_t *w, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ w[i]) * 16777619u;
    return h;
}

static void add_stack(loom_grammar_matcher *m, gstate *dst, const uint32_t *s, uint32_t d) {
    m->spent += d + 1;
    uint32_t slot = hash_words(2166136261u ^ d, s, d) & (TAB - 1);
    while (m->tab[slot].gen == m->gen) {
        const uint32_t *o = dst->buf + m->tab[slot].off;
        if (o[0] == d && !memcmp(o + 1, s, d * sizeof *s)) return;
        slot = (slot + 1) & (TAB - 1);
    }
    if (dst->n >= LOOM_GRAMMAR_MAX_STACKS) return;
    if (dst->len + d + 1 > dst->cap) {
        size_t c = dst->cap ? dst->cap * 2 : 256;
        while (c < dst->len + d + 1) c *= 2;
        uint32_t *nb = realloc(dst->buf, c * sizeof *nb);
        if (!nb) return; /* a reading dropped (grammar.h) */
        dst->buf = nb, dst->cap = c;
    }
    m->tab[slot].gen = m->gen, m->tab[slot].off = (uint32_t)dst->len;
    dst->buf[dst->len] = d;
    memcpy(dst->buf + dst->len + 1, s, d * sizeof *s);
    dst->len += d + 1;
    dst->n++;
}

/* Whether this expansion met stack s[0..d) with a rule on top before (and
 * notes it): a stack reached again through other alternatives (nullable
 * rules make that exponential) is expanded once. A full table or too many
 * steps drop the rest (grammar.h). */
static bool seen_before(loom_grammar_matcher *m, const uint32_t *s, uint32_t d) {
    if (++m->work > MAX_WORK) return true;
    uint64_t h = 1469598103934665603ull ^ d;
    for (uint32_t i = 0; i < d; i++) h = (h ^ s[i]) * 1099511628211ull;
    uint32_t slot = (uint32_t)(h ^ h >> 32) & (SEEN - 1);
    for (uint32_t probes = 0; m->seen[slot].gen == m->gen; slot = (slot + 1) & (SEEN - 1))
        if (m->seen[slot].h == h || ++probes == SEEN / 2) return true;
    m->seen[slot].gen = m->gen, m->seen[slot].h = h;
    return false;
}

/* Pushes stack s[0..d) onto the work list (false: out of memory). */
static bool push_work(loom_grammar_matcher *m, const uint32_t *s, uint32_t d) {
    m->spent += d + 1;
    if (m->wl_len + d + 1 > m->wl_cap) {
        size_t c = m->wl_cap ? 2 * m->wl_cap : 1024;
        while (c < m->wl_len + d + 1) c *= 2;
        uint32_t *n = realloc(m->wl, c * sizeof *n);
        if (!n) return false;
        m->wl = n, m->wl_cap = c;
    }
    memcpy(m->wl + m->wl_len, s, d * sizeof *s);
    m->wl[m->wl_len + d] = d; /* the depth last: popped from the end */
    m->wl_len += d + 1;
    return true;
}

/* Expands stack s[0..d) into dst: until its top is a class or it is empty,
 * every alternative of a rule on top taken (a work list, not recursion:
 * nullable rules in a row can chain any number of steps). */
static void expand(loom_grammar_matcher *m, gstate *dst, const uint32_t *s0, uint32_t d) {
    const loom_grammar *g = m->g;
    uint32_t *s = m->scratch;
    m->wl_len = 0;
    if (!push_work(m, s0, d)) return;
    while (m->wl_len) {
        d = m->wl[m->wl_len - 1];
        m->wl_len -= d + 1;
        memcpy(s, m->wl + m->wl_len, d * sizeof *s);
        for (;;) {
            if (d == 0) {
                add_stack(m, dst, s, 0);
                break;
            }
            const uint32_t p = s[d - 1];
            const gel e = g->el[p];
            if (e.t == E_END || e.t == E_ALT) {
                d--;
                continue;
            }
            if (e.t == E_CLASS) {
                add_stack(m, dst, s, d);
                break;
            }
            if (seen_before(m, s, d)) break;
            const uint8_t nt = g->el[p + 1].t; /* a rule last in its alternative: nothing to come back to */
            if (nt == E_END || nt == E_ALT) d--;
            else s[d - 1] = p + 1;
            if (d + 1 > LOOM_GRAMMAR_MAX_DEPTH) break; /* dropped (grammar.h) */
            for (uint32_t a = g->alt_off[e.v + 1]; a-- > g->alt_off[e.v];) { /* the first alternative on top */
                s[d] = g->alts[a];
                if (!push_work(m, s, d + 1)) break;
            }
            break;
        }
    }
}

static void new_expansion(loom_grammar_matcher *m) {
    m->tmp.len = 0, m->tmp.n = 0, m->work = 0;
    if (++m->gen == 0) {
        memset(m->tab, 0, sizeof m->tab);
        memset(m->seen, 0, sizeof m->seen);
        m->gen = 1;
    }
}

static uint32_t trans_slot(const loom_grammar_matcher *m, uint32_t from, uint32_t cp) {
    return (from * 2654435761u ^ cp * 40503u) & (4 * m->cap - 1);
}

/* Doubles the tables (run empties them before they pass MAX_STATES). */
static bool grow_tables(loom_grammar_matcher *m) {
    const uint32_t cap = m->cap ? 2 * m->cap : 64;
    if (cap > MAX_STATES) return false;
    sinfo *st = realloc(m->states, cap * sizeof *st);
    if (st) m->states = st;
    uint32_t *bh = calloc(2 * cap, sizeof *bh);
    gtrans *tr = malloc(4 * cap * sizeof *tr);
    if (!st || !bh || !tr) {
        free(bh), free(tr);
        return false;
    }
    memset(tr, 0xFF, 4 * cap * sizeof *tr);
    gtrans *old = m->trans;
    const uint32_t old_cap = m->cap;
    m->cap = cap;
    for (uint32_t i = 0; i < m->n_states; i++) {
        uint32_t slot = m->states[i].hash & (2 * cap - 1);
        while (bh[slot]) slot = (slot + 1) & (2 * cap - 1);
        bh[slot] = i + 1;
    }
    for (uint32_t i = 0; old && i < 4 * old_cap; i++) {
        if (old[i].from == DEAD) continue;
        uint32_t slot = trans_slot(m, old[i].from, old[i].cp);
        while (tr[slot].from != DEAD) slot = (slot + 1) & (4 * cap - 1);
        tr[slot] = old[i];
    }
    free(m->by_hash), free(old);
    m->by_hash = bh, m->trans = tr;
    return true;
}

/* The state holding m->tmp's readings (DEAD: none, or out of memory). */
static uint32_t intern(loom_grammar_matcher *m) {
    const gstate *t = &m->tmp;
    if (!t->n) return DEAD;
    const uint32_t h = hash_words(2166136261u ^ t->n, t->buf, t->len);
    uint32_t slot = h & (2 * m->cap - 1);
    for (; m->by_hash[slot]; slot = (slot + 1) & (2 * m->cap - 1)) {
        const sinfo *o = &m->states[m->by_hash[slot] - 1];
        if (o->hash == h && o->len == t->len && !memcmp(m->pool + o->off, t->buf, t->len * sizeof *t->buf))
            return m->by_hash[slot] - 1;
    }
    if (m->n_states == m->cap) {
        if (!grow_tables(m)) return DEAD;
        for (slot = h & (2 * m->cap - 1); m->by_hash[slot];) slot = (slot + 1) & (2 * m->cap - 1);
    }
    if (m->pool_len + t->len > m->pool_cap) {
        size_t c = m->pool_cap ? m->pool_cap * 2 : 1024;
        while (c < m->pool_len + t->len) c *= 2;
        uint32_t *np = realloc(m->pool, c * sizeof *np);
        if (!np) return DEAD;
        m->pool = np, m->pool_cap = c;
    }
    memcpy(m->pool + m->pool_len, t->buf, t->len * sizeof *t->buf);
    bool complete = false;
    for (size_t off = 0; off < t->len && !complete; off += 1 + t->buf[off]) complete = t->buf[off] == 0;
    m->states[m->n_states] = (sinfo){(uint32_t)m->pool_len, (uint32_t)t->len, h, complete};
    m->pool_len += t->len;
    m->by_hash[slot] = m->n_states + 1;
    return m->n_states++;
}

/* The state after code point cp from state `from` (DEAD: no reading takes it). */
static uint32_t step(loom_grammar_matcher *m, uint32_t from, uint32_t cp) {
    for (uint32_t slot = trans_slot(m, from, cp); m->trans[slot].from != DEAD; slot = (slot + 1) & (4 * m->cap - 1))
        if (m->trans[slot].from == from && m->trans[slot].cp == cp) return m->trans[slot].to;
    if (m->spent > LOOM_GRAMMAR_STEP_BUDGET && !m->feeding) return DEAD; /* (not remembered: may fit later) */
    const loom_grammar *g = m->g;
    new_expansion(m);
    const sinfo si = m->states[from];
    for (size_t off = si.off; off < si.off + si.len; off += 1 + m->pool[off]) {
        const uint32_t d = m->pool[off];
        if (d == 0) continue;
        const uint32_t *s = m->pool + off + 1;
        if (!class_has(g, g->el[s[d - 1]].v, cp)) continue;
        uint32_t *t = m->scratch + LOOM_GRAMMAR_MAX_DEPTH; /* (expand copies it before it uses scratch) */
        memcpy(t, s, d * sizeof *s);
        t[d - 1] = s[d - 1] + 1;
        expand(m, &m->tmp, t, d);
    }
    const uint32_t to = intern(m); /* (may grow the tables) */
    if (m->n_trans < 2 * m->cap) { /* at most half full, or the step is computed again next time */
        uint32_t slot = trans_slot(m, from, cp);
        while (m->trans[slot].from != DEAD) slot = (slot + 1) & (4 * m->cap - 1);
        m->trans[slot] = (gtrans){from, cp, to};
        m->n_trans++;
    }
    return to;
}

/* No states, no steps. */
static void clear_tables(loom_grammar_matcher *m) {
    m->n_states = 0, m->pool_len = 0, m->n_trans = 0;
    memset(m->by_hash, 0, 2 * m->cap * sizeof *m->by_hash);
    memset(m->trans, 0xFF, 4 * m->cap * sizeof *m->trans);
}

/* Empties the tables, keeping the current state (as state 0). */
static void reset_tables(loom_grammar_matcher *m) {
    new_expansion(m);
    const sinfo si = m->states[m->cur];
    for (size_t off = si.off; off < si.off + si.len; off += 1 + m->pool[off])
        add_stack(m, &m->tmp, m->pool + off + 1, m->pool[off]);
    clear_tables(m);
    m->cur = intern(m);
}

/* The least code point a UTF-8 character of `total` bytes encodes. */
static uint32_t utf8_min(uint8_t total) { return total == 2 ? 0x80 : total == 3 ? 0x800 : 0x10000; }

/* Whether a character of `total` bytes that begins with `val` and needs
 * `need` more bytes may come next from state `at`. */
static bool partial_fits(const loom_grammar_matcher *m, uint32_t at, uint8_t need, uint32_t val, uint8_t total) {
    uint32_t lo = val << (6 * need), hi = lo | ((1u << (6 * need)) - 1);
    if (lo < utf8_min(total)) lo = utf8_min(total);
    if (hi > 0x10FFFF) hi = 0x10FFFF;
    if (lo > hi) return false;
    const sinfo si = m->states[at];
    for (size_t off = si.off; off < si.off + si.len; off += 1 + m->pool[off]) {
        const uint32_t d = m->pool[off];
        if (d && class_meets(m->g, m->g->el[m->pool[off + d]].v, lo, hi)) return true;
    }
    return false;
}

/* 1: a whole character in *cp; 0: more bytes to come; -1: not UTF-8
 * (overlong forms and surrogates included). */
static int utf8_byte(uint8_t *need, uint32_t *val, uint8_t *total, uint8_t c, uint32_t *cp) {
    if (*need) {
        if ((c & 0xC0) != 0x80) return -1;
        *val = *val << 6 | (c & 0x3F);
        if (--*need) return 0;
        if (*val < utf8_min(*total) || (*val >= 0xD800 && *val <= 0xDFFF) || *val > 0x10FFFF) return -1;
        *cp = *val;
        return 1;
    }
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) *need = 1, *val = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF) *need = 2, *val = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4) *need = 3, *val = c & 0x07;
    else return -1;
    *total = (uint8_t)(*need + 1);
    return 0;
}

static bool run(loom_grammar_matcher *m, const char *b, size_t n, bool commit) {
    if (m->cur == DEAD) return false;
    if (m->n_states + n + 1 > MAX_STATES || m->pool_len > MAX_POOL) reset_tables(m);
    if (m->cur == DEAD) return false; /* (out of memory) */
    uint32_t at = m->cur, val = m->val, cp;
    uint8_t need = m->need, total = m->total;
    m->feeding = commit;
    for (size_t i = 0; i < n; i++) {
        int r = utf8_byte(&need, &val, &total, (uint8_t)b[i], &cp);
        if (r < 0) return false;
        if (r == 1 && (at = step(m, at, cp)) == DEAD) return false;
    }
    if (need && !partial_fits(m, at, need, val, total)) return false;
    if (commit) m->cur = at, m->need = need, m->val = val, m->total = total, m->spent = 0;
    return true;
}

/* The state before any text: root's alternatives, each on an empty stack;
 * false when out of memory. */
static bool start(loom_grammar_matcher *m) {
    const loom_grammar *g = m->g;
    new_expansion(m);
    for (uint32_t a = g->alt_off[g->root]; a < g->alt_off[g->root + 1]; a++) expand(m, &m->tmp, &g->alts[a], 1);
    m->need = 0, m->val = 0, m->total = 0, m->spent = 0;
    m->cur = intern(m);
    return m->cur != DEAD || !m->tmp.n;
}

loom_status loom_grammar_matcher_create(const loom_grammar *g, loom_grammar_matcher **out) {
    *out = NULL;
    loom_grammar_matcher *m = calloc(1, sizeof *m);
    if (m) m->scratch = malloc(2 * LOOM_GRAMMAR_MAX_DEPTH * sizeof(uint32_t));
    if (!m || !m->scratch || !grow_tables(m)) {
        loom_grammar_matcher_free(m);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a grammar's matcher");
    }
    m->g = g;
    if (!start(m)) {
        loom_grammar_matcher_free(m);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a grammar's matcher");
    }
    *out = m;
    return NULL;
}

void loom_grammar_matcher_reset(loom_grammar_matcher *m) {
    clear_tables(m);
    (void)start(m); /* (out of memory: the matcher takes nothing) */
}

void loom_grammar_matcher_free(loom_grammar_matcher *m) {
    if (!m) return;
    free(m->pool), free(m->states), free(m->by_hash), free(m->trans), free(m->tmp.buf), free(m->scratch), free(m->wl);
    free(m);
}

bool loom_grammar_matcher_fits(loom_grammar_matcher *m, const char *b, size_t n) { return run(m, b, n, false); }

bool loom_grammar_matcher_feed(loom_grammar_matcher *m, const char *b, size_t n) { return run(m, b, n, true); }

bool loom_grammar_matcher_complete(const loom_grammar_matcher *m) {
    return m->cur != DEAD && !m->need && m->states[m->cur].complete;
}

/* ------------------------------------------------------------- constraint */

struct loom_grammar_constraint {
    const loom_vocab_text *v;
    loom_grammar *g;
    loom_grammar_matcher *m;
    loom_first_bytes first; /* for the matcher's state */
};

loom_status loom_grammar_constraint_create(const loom_vocab_text *v, loom_grammar *g, loom_grammar_constraint **out) {
    *out = NULL;
    loom_grammar_constraint *c = calloc(1, sizeof *c);
    if (!c) {
        loom_grammar_free(g);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a grammar constraint");
    }
    c->v = v, c->g = g;
    loom_status st = loom_grammar_matcher_create(g, &c->m);
    if (st) {
        loom_grammar_constraint_free(c);
        return st;
    }
    *out = c;
    return NULL;
}

void loom_grammar_constraint_free(loom_grammar_constraint *c) {
    if (!c) return;
    loom_grammar_matcher_free(c->m);
    loom_grammar_free(c->g);
    free(c);
}

static bool grammar_fits(void *user, const char *b, size_t n) {
    return loom_grammar_matcher_fits(((loom_grammar_constraint *)user)->m, b, n);
}

static bool grammar_whole(void *user) { return loom_grammar_matcher_complete(((loom_grammar_constraint *)user)->m); }

bool loom_grammar_constraint_fits(void *user, int32_t t) {
    loom_grammar_constraint *c = user;
    return loom_vocab_token_fits(c->v, t, &c->first, grammar_fits, grammar_whole, c);
}

void loom_grammar_constraint_accept(void *user, int32_t t) {
    loom_grammar_constraint *c = user;
    const loom_vocab_text *v = c->v;
    if (t < 0 || t >= v->n || v->kind[t] != 0) return;
    /* a token that does not fit (only the sampler's fallback draws one) leaves the state */
    loom_grammar_matcher_feed(c->m, v->bytes + v->off[t], v->off[t + 1] - v->off[t]);
    c->first.known = false;
}
