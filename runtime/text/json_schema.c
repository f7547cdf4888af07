/*
 * runtime/text/json_schema.c — JSON schemas compiled to an automaton over
 * the bytes of a document, and the token constraint built on it (contract
 * in json_schema.h).
 */
#include "runtime/text/json_schema.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/pattern.h"

/* ------------------------------------------------------------ schema nodes */

enum { T_OBJ = 1, T_ARR = 2, T_STR = 4, T_NUM = 8, T_INT = 16, T_BOOL = 32, T_NULL = 64, T_ANY = 127 };
enum { N_TYPED, N_ANYOF, N_LITS };

typedef struct {
    uint8_t kind, types;
    uint32_t props_at, n_props; /* object: its properties in the schema's prop arrays */
    uint64_t required;          /* object: bits of required properties */
    int32_t additional;         /* object: the schema of other keys' values; -1: none allowed */
    int32_t items;              /* array: its items' schema */
    uint32_t min_items, max_items;
    uint32_t min_len, max_len;  /* string: characters (code units of \u escapes count one each) */
    uint32_t pat;               /* string: 1 + its pattern's index in the schema's patterns; 0: none */
    bool bounded;               /* integer: lo <= value <= hi (minimum, maximum, exclusive ones) */
    int64_t lo, hi;
    bool fbounded;              /* number: flo <= value <= fhi, strict where *_ex */
    bool flo_ex, fhi_ex;
    double flo, fhi;
    uint32_t alts_at, n_alts;   /* anyOf: its alternatives in the schema's alts */
    uint32_t lits_at, n_lits;   /* enum / const: literal texts in the schema's lits */
} node;

struct loom_json_schema {
    node *nodes;
    uint32_t n_nodes, cap_nodes;
    char **prop_name;  /* (n_props) a property's name (its JSON text between the quotes) */
    uint32_t *prop_len;
    int32_t *prop_node;
    uint32_t n_props, cap_props;
    int32_t *alts;
    uint32_t n_alts, cap_alts;
    char **lit;        /* (n_lits) an enum / const value's compact JSON text */
    uint32_t *lit_len;
    uint32_t n_lits, cap_lits;
    loom_pattern **pats; /* (n_pats) the strings' patterns */
    uint32_t n_pats, cap_pats;
    int32_t root, any;
};

#define GROW(arr, n, cap, more)                                                                 \
    do {                                                                                        \
        if ((n) + (more) > (cap)) {                                                             \
            uint32_t c_ = (cap) ? 2 * (cap) : 16;                                               \
            while (c_ < (n) + (more)) c_ *= 2;                                                  \
            void *p_ = realloc((arr), (size_t)c_ * sizeof *(arr));                              \
            if (!p_) return loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");           \
            (arr) = p_;                                                                         \
            (cap) = c_;                                                                         \
        }                                                                                       \
    } while (0)

typedef struct {
    loom_json_schema *s;
    json_t *doc;
    json_t **memo_obj; /* schema objects compiled so far and their nodes (recursion through $ref) */
    int32_t *memo_node;
    uint32_t n_memo, cap_memo;
    int depth;
} compiler;

static loom_status new_node(compiler *c, node n, int32_t *out) {
    loom_json_schema *s = c->s;
    if (s->n_nodes >= 65535) return loom_error(LOOM_ERR_INVALID, "JSON schema: more than 65535 schemas");
    GROW(s->nodes, s->n_nodes, s->cap_nodes, 1);
    s->nodes[s->n_nodes] = n;
    *out = (int32_t)s->n_nodes++;
    return NULL;
}

static loom_status compile(compiler *c, json_t *o, const char *where, int32_t *out);

/* "#", "#/$defs/Name" or "#/definitions/Name". */
static loom_status resolve_ref(compiler *c, const char *ref, json_t **out) {
    if (!strcmp(ref, "#")) {
        *out = c->doc;
        return NULL;
    }
    static const char *const bases[] = {"#/$defs/", "#/definitions/"};
    for (int i = 0; i < 2; i++) {
        size_t n = strlen(bases[i]);
        if (strncmp(ref, bases[i], n) != 0) continue;
        json_t *defs = json_object_get(c->doc, i == 0 ? "$defs" : "definitions");
        json_t *t = json_object_get(defs, ref + n);
        if (t) {
            *out = t;
            return NULL;
        }
    }
    return loom_error(LOOM_ERR_INVALID, "JSON schema: $ref '%s' names no schema here (#/$defs/... or #/definitions/...)",
                      ref);
}

static const char *const UNSUPPORTED[] = {
    "patternProperties", "multipleOf", "allOf", "not", "if", "then", "else", "dependentRequired",
    "dependentSchemas", "dependencies", "uniqueItems", "contains", "minContains", "maxContains", "prefixItems",
    "minProperties", "maxProperties", "propertyNames", "unevaluatedProperties", "unevaluatedItems"};

/* A string `format` as the pattern that holds its text to it (what
 * Pydantic writes for date, datetime, time, UUID, IPv4 and email fields),
 * or NULL: other formats are annotations, as JSON Schema 2019+ takes them.
 * Times take an optional offset and fraction (Pydantic reads naive ones). */
static const char *format_pattern(const char *f) {
#define DATE "\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])"
#define TIME "([01]\\d|2[0-3]):[0-5]\\d:[0-5]\\d(\\.\\d{1,6})?(Z|[+-]([01]\\d|2[0-3]):[0-5]\\d)?"
#define OCTET "(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)"
    static const struct {
        const char *name, *re;
    } formats[] = {
        {"date", "^" DATE "$"},
        {"date-time", "^" DATE "T" TIME "$"},
        {"time", "^" TIME "$"},
        {"uuid", "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"},
        {"ipv4", "^(" OCTET "\\.){3}" OCTET "$"},
        {"email", "^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}$"},
    };
#undef DATE
#undef TIME
#undef OCTET
    for (size_t i = 0; f && i < sizeof formats / sizeof *formats; i++)
        if (!strcmp(f, formats[i].name)) return formats[i].re;
    return NULL;
}

static loom_status type_bits(json_t *t, uint8_t *out, const char *where) {
    static const char *const names[] = {"object", "array", "string", "number", "integer", "boolean", "null"};
    json_t *one[1] = {t};
    size_t n = json_is_array(t) ? json_array_size(t) : 1;
    *out = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_is_array(t) ? json_array_get(t, i) : one[0];
        int k = 0;
        while (k < 7 && !(json_is_string(v) && !strcmp(json_string_value(v), names[k]))) k++;
        if (k == 7) return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'type' must name JSON types", where);
        *out |= (uint8_t)(1u << k);
    }
    if (*out & T_NUM) *out |= T_INT; /* a number may be an integer */
    return *out ? NULL : loom_error(LOOM_ERR_INVALID, "JSON schema at %s: an empty 'type' list", where);
}

static loom_status add_lit(compiler *c, json_t *v) {
    loom_json_schema *s = c->s;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");
    if (s->n_lits == s->cap_lits) {
        uint32_t cap = s->cap_lits ? 2 * s->cap_lits : 16;
        char **l = realloc(s->lit, cap * sizeof *l);
        uint32_t *ll = l ? realloc(s->lit_len, cap * sizeof *ll) : NULL;
        if (l) s->lit = l;
        if (!ll) {
            free(text);
            return loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");
        }
        s->lit_len = ll, s->cap_lits = cap;
    }
    s->lit[s->n_lits] = text;
    s->lit_len[s->n_lits++] = (uint32_t)strlen(text);
    return NULL;
}

static loom_status compile_object(compiler *c, json_t *o, node *n, const char *where) {
    loom_json_schema *s = c->s;
    json_t *props = json_object_get(o, "properties"), *req = json_object_get(o, "required"),
           *add = json_object_get(o, "additionalProperties");
    if (props && !json_is_object(props))
        return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'properties' must be an object", where);
    if (json_object_size(props) > 64)
        return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: more than 64 properties", where);
    n->n_props = (uint32_t)json_object_size(props);
    n->props_at = s->n_props;
    if (s->n_props + n->n_props > s->cap_props) { /* the three property arrays share a capacity */
        uint32_t cap = s->cap_props ? 2 * s->cap_props : 16;
        while (cap < s->n_props + n->n_props) cap *= 2;
        char **pn = realloc(s->prop_name, cap * sizeof *pn);
        if (pn) s->prop_name = pn;
        uint32_t *pl = pn ? realloc(s->prop_len, cap * sizeof *pl) : NULL;
        if (pl) s->prop_len = pl;
        int32_t *pd = pl ? realloc(s->prop_node, cap * sizeof *pd) : NULL;
        if (!pd) return loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");
        s->prop_node = pd;
        s->cap_props = cap;
    }
    const uint32_t at = n->props_at;
    const char *key;
    json_t *v;
    uint32_t k = 0;
    json_object_foreach(props, key, v) {
        for (const char *q = key; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == '"' || *q == '\\')
                return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: property '%s' needs escapes (not supported)",
                                  where, key);
        s->prop_name[at + k] = strdup(key);
        s->prop_len[at + k] = (uint32_t)strlen(key);
        s->prop_node[at + k] = -1;
        if (!s->prop_name[at + k]) return loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");
        s->n_props = at + ++k; /* its slots are taken before any child's */
    }
    k = 0;
    json_object_foreach(props, key, v) {
        int32_t child;
        LOOM_TRY(compile(c, v, key, &child));
        c->s->prop_node[at + k++] = child;
    }
    if (req && !json_is_array(req))
        return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'required' must be a list of names", where);
    size_t i;
    json_array_foreach(req, i, v) {
        uint32_t p = 0;
        while (p < n->n_props && !(json_is_string(v) && !strcmp(c->s->prop_name[at + p], json_string_value(v)))) p++;
        if (p == n->n_props)
            return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: required '%s' is not among its properties", where,
                              json_is_string(v) ? json_string_value(v) : "?");
        n->required |= 1ull << p;
    }
    n->additional = c->s->any;
    if (json_is_false(add)) n->additional = -1;
    else if (json_is_object(add)) LOOM_TRY(compile(c, add, "additionalProperties", &n->additional));
    else if (add && !json_is_true(add))
        return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'additionalProperties' must be a boolean or a schema",
                          where);
    return NULL;
}

/* A count keyword (minItems, maxLength, ...) into *out when present. */
static loom_status count(json_t *o, const char *key, const char *where, uint32_t *out) {
    json_t *v = json_object_get(o, key);
    if (!v) return NULL;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: '%s' must be a count", where, key);
    *out = json_integer_value(v) > UINT32_MAX ? UINT32_MAX : (uint32_t)json_integer_value(v);
    return NULL;
}

/* minimum / maximum / exclusiveMinimum / exclusiveMaximum: an integer's
 * exactly, a number's in doubles (written without an exponent then). */
static loom_status bounds(json_t *o, const char *where, node *n) {
    static const char *const keys[4] = {"minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"};
    n->lo = INT64_MIN, n->hi = INT64_MAX;
    n->flo = -INFINITY, n->fhi = INFINITY;
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(o, keys[k]);
        if (!v) continue;
        if (!(n->types & T_INT))
            return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: '%s' on a schema that is no number", where, keys[k]);
        if (!json_is_number(v)) return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: '%s' must be a number", where, keys[k]);
        const double x = json_number_value(v);
        if (n->types & T_NUM) { /* the tighter bound wins; at a tie the exclusive one */
            if (k < 2 && (x > n->flo || (x == n->flo && k == 1))) n->flo = x, n->flo_ex = k == 1;
            if (k >= 2 && (x < n->fhi || (x == n->fhi && k == 3))) n->fhi = x, n->fhi_ex = k == 3;
            n->fbounded = true;
            continue;
        }
        if (!(x > -9.2e18 && x < 9.2e18)) return loom_error(LOOM_ERR_UNSUPPORTED, "JSON schema at %s: '%s' is out of range", where, keys[k]);
        /* the integers the bound leaves: ceil / floor, one further when exclusive */
        int64_t b = k < 2 ? (int64_t)ceil(x) : (int64_t)floor(x);
        if (k == 1 && (double)b == x) b++;
        if (k == 3 && (double)b == x) b--;
        if (k < 2 && b > n->lo) n->lo = b;
        if (k >= 2 && b < n->hi) n->hi = b;
        n->bounded = true;
    }
    if (n->lo > n->hi) return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: no integer is within the bounds", where);
    if (n->flo > n->fhi || (n->flo == n->fhi && (n->flo_ex || n->fhi_ex)))
        return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: no number is within the bounds", where);
    return NULL;
}

static loom_status compile(compiler *c, json_t *o, const char *where, int32_t *out) {
    if (json_is_true(o)) {
        *out = c->s->any;
        return NULL;
    }
    if (!json_is_object(o)) return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: a schema must be an object", where);
    for (uint32_t i = 0; i < c->n_memo; i++)
        if (c->memo_obj[i] == o) {
            *out = c->memo_node[i];
            return NULL;
        }
    if (++c->depth > 64) return loom_error(LOOM_ERR_INVALID, "JSON schema: nested more than 64 deep");
    for (size_t i = 0; i < sizeof UNSUPPORTED / sizeof *UNSUPPORTED; i++)
        if (json_object_get(o, UNSUPPORTED[i]))
            return loom_error(LOOM_ERR_UNSUPPORTED, "JSON schema at %s: '%s' is not supported", where, UNSUPPORTED[i]);
    json_t *ref = json_object_get(o, "$ref");
    if (ref) {
        json_t *t = NULL;
        if (!json_is_string(ref)) return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: '$ref' must be a string", where);
        static const char *const other[] = {"type", "properties", "items", "enum", "const", "anyOf", "oneOf"};
        for (size_t i = 0; i < sizeof other / sizeof *other; i++)
            if (json_object_get(o, other[i]))
                return loom_error(LOOM_ERR_UNSUPPORTED, "JSON schema at %s: '$ref' beside '%s' is not supported", where,
                                  other[i]);
        LOOM_TRY(resolve_ref(c, json_string_value(ref), &t));
        loom_status st = compile(c, t, json_string_value(ref), out);
        c->depth--;
        return st;
    }
    node n = {.kind = N_TYPED, .types = T_ANY, .items = c->s->any, .max_items = UINT32_MAX, .max_len = UINT32_MAX};
    int32_t self;
    LOOM_TRY(new_node(c, n, &self));
    GROW(c->memo_obj, c->n_memo, c->cap_memo, 1);
    {
        void *p = realloc(c->memo_node, c->cap_memo * sizeof *c->memo_node);
        if (!p) return loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");
        c->memo_node = p;
    }
    c->memo_obj[c->n_memo] = o, c->memo_node[c->n_memo++] = self;
    json_t *en = json_object_get(o, "enum"), *cn = json_object_get(o, "const"), *any = json_object_get(o, "anyOf");
    if (!any) any = json_object_get(o, "oneOf");
    if (en || cn) {
        if (en && (!json_is_array(en) || !json_array_size(en) || json_array_size(en) > 64))
            return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'enum' must list 1 to 64 values", where);
        n.kind = N_LITS;
        n.lits_at = c->s->n_lits;
        size_t i;
        json_t *v;
        if (cn) LOOM_TRY(add_lit(c, cn));
        else
            json_array_foreach(en, i, v) LOOM_TRY(add_lit(c, v));
        n.n_lits = c->s->n_lits - n.lits_at;
    } else if (any) {
        if (!json_is_array(any) || !json_array_size(any))
            return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'anyOf' must list schemas", where);
        const uint32_t k = (uint32_t)json_array_size(any);
        n.kind = N_ANYOF;
        n.alts_at = c->s->n_alts;
        n.n_alts = k;
        GROW(c->s->alts, c->s->n_alts, c->s->cap_alts, k);
        c->s->n_alts += k;
        for (uint32_t i = 0; i < k; i++) {
            int32_t child;
            LOOM_TRY(compile(c, json_array_get(any, i), "anyOf", &child));
            c->s->alts[n.alts_at + i] = child;
        }
    } else {
        json_t *t = json_object_get(o, "type"), *items = json_object_get(o, "items");
        if (t) LOOM_TRY(type_bits(t, &n.types, where));
        if (n.types & T_OBJ) LOOM_TRY(compile_object(c, o, &n, where));
        if (items) LOOM_TRY(compile(c, items, "items", &n.items));
        LOOM_TRY(count(o, "minItems", where, &n.min_items));
        LOOM_TRY(count(o, "maxItems", where, &n.max_items));
        LOOM_TRY(count(o, "minLength", where, &n.min_len));
        LOOM_TRY(count(o, "maxLength", where, &n.max_len));
        json_t *pat = json_object_get(o, "pattern");
        const char *fmt = format_pattern(json_string_value(json_object_get(o, "format")));
        if (pat && !json_is_string(pat))
            return loom_error(LOOM_ERR_INVALID, "JSON schema at %s: 'pattern' must be a string", where);
        if ((pat || fmt) && n.types & T_STR) { /* (on other types a pattern says nothing) */
            const char *re = pat ? json_string_value(pat) : fmt; /* both: the pattern (no intersection) */
            loom_json_schema *s = c->s;
            GROW(s->pats, s->n_pats, s->cap_pats, 1);
            loom_status st = loom_pattern_compile(re, pat ? json_string_length(pat) : strlen(fmt), &s->pats[s->n_pats]);
            if (st) return loom_error_wrap(st, "JSON schema at %s", where);
            n.pat = ++s->n_pats;
        }
        LOOM_TRY(bounds(o, where, &n));
    }
    c->s->nodes[self] = n;
    *out = self;
    c->depth--;
    return NULL;
}

void loom_json_schema_free(loom_json_schema *s) {
    if (!s) return;
    for (uint32_t i = 0; i < s->n_props; i++) free(s->prop_name[i]);
    for (uint32_t i = 0; i < s->n_lits; i++) free(s->lit[i]);
    for (uint32_t i = 0; i < s->n_pats; i++) loom_pattern_free(s->pats[i]);
    free(s->pats);
    free(s->nodes), free(s->prop_name), free(s->prop_len), free(s->prop_node), free(s->alts), free(s->lit),
        free(s->lit_len);
    free(s);
}

loom_status loom_json_schema_compile(const char *text, size_t len, loom_json_schema **out) {
    *out = NULL;
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    if (!doc) return loom_error(LOOM_ERR_INVALID, "JSON schema: not JSON: %s", je.text);
    loom_json_schema *s = calloc(1, sizeof *s);
    compiler c = {.s = s, .doc = doc};
    loom_status st = s ? NULL : loom_error(LOOM_ERR_NOMEM, "JSON schema: out of memory");
    if (!st)
        st = new_node(&c, (node){.kind = N_TYPED, .types = T_ANY, .max_items = UINT32_MAX, .max_len = UINT32_MAX}, &s->any);
    if (!st) s->nodes[s->any].additional = s->nodes[s->any].items = s->any; /* any value: anything inside */
    if (!st) st = compile(&c, doc, "the root", &s->root);
    free(c.memo_obj);
    free(c.memo_node);
    json_decref(doc);
    if (st) {
        loom_json_schema_free(s);
        return st;
    }
    *out = s;
    return NULL;
}

/* ------------------------------------------------------------ the automaton */

enum { K_VAL, K_OBJ, K_ARR, K_KEY, K_STR, K_NUM, K_LITS, K_WORD };
enum { O_FIRST, O_KEY, O_COLON, O_AFTER };
enum { A_FIRST, A_AFTER };
enum { NUM_MINUS, NUM_ZERO, NUM_INT, NUM_DOT, NUM_FRAC, NUM_E, NUM_ESIGN, NUM_EXP };
enum { S_PLAIN, S_ESC, S_U1, S_U2, S_U3, S_U4 }; /* in a string: \uXXXX's digits left = S_U4 + 1 - st */
#define NO_PROP 0xFFFFFFFFu

static const char *const WORDS[3] = {"true", "false", "null"};
static const uint8_t WORD_LEN[3] = {4, 5, 4};

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

typedef struct {
    const loom_json_schema *s;
    loom_json_thread *out; /* threads made by one byte */
    int n_out;
} run;

static loom_json_frame *top(loom_json_thread *t) { return &t->f[t->depth - 1]; }

/* Each reading is worked on in place in the next free slot of r->out and
 * kept by emit (t is that slot); one that fails leaves the slot free. */
static void emit(run *r, const loom_json_thread *t) {
    (void)t;
    r->n_out++;
}

static void copy_thread(loom_json_thread *to, const loom_json_thread *from) {
    to->depth = from->depth, to->ws = from->ws, to->done = from->done;
    memcpy(to->f, from->f, from->depth * sizeof *from->f);
}

static bool push(loom_json_thread *t, loom_json_frame f) {
    if (t->depth == LOOM_JSON_MAX_DEPTH) return false;
    t->f[t->depth++] = f;
    return true;
}

/* The value on top is whole: pop it and tell its container. */
static void value_done(loom_json_thread *t) {
    t->depth--;
    if (t->depth == 0) {
        t->done = true;
        return;
    }
    loom_json_frame *p = top(t);
    if (p->kind == K_OBJ) p->st = O_AFTER;
    else if (p->kind == K_ARR) p->n++, p->st = A_AFTER;
}

/* An integer's digits so far: f->mask the magnitude (capped), f->n the
 * count of digits, NEG_BIT in f->n for a minus sign. */
#define NEG_BIT 0x80000000u

/* Whether some integer that begins with these digits is within [lo, hi]:
 * m alone, or m followed by k more digits, [m 10^k, (m+1) 10^k - 1]. */
static bool int_reachable(const node *n, const loom_json_frame *f) {
    const bool neg = f->n & NEG_BIT;
    const uint32_t d = f->n & ~NEG_BIT;
    const __int128 lo = n->lo, hi = n->hi, m = (__int128)f->mask;
    if (d == 0) return lo <= 0; /* "-": any value <= 0 */
    if (m == 0) return lo <= 0 && 0 <= hi; /* "0" and "-0" end there */
    __int128 p = 1;
    for (uint32_t k = 0; d + k <= 19; k++, p *= 10) {
        __int128 a = k ? m * p : m, b = k ? (m + 1) * p - 1 : m;
        if (neg) {
            const __int128 x = -b;
            b = -a, a = x;
        }
        if (a <= hi && b >= lo) return true;
    }
    return false;
}

static bool int_within(const node *n, const loom_json_frame *f) {
    const __int128 v = (f->n & NEG_BIT) ? -(__int128)f->mask : (__int128)f->mask;
    return (f->n & ~NEG_BIT) > 0 && v >= n->lo && v <= n->hi;
}

/* A bounded number's text so far: f->mask the bits of its magnitude (a
 * double), f->n NEG_BIT, DOT_BIT after '.', the integer digits in bits
 * 0-7 and the fraction's in 8-15. */
#define DOT_BIT 0x40000000u

static double num_value(const loom_json_frame *f) {
    double v;
    memcpy(&v, &f->mask, sizeof v);
    return v;
}

/* Whether an interval of values [a, b) (b > a) meets the bounds; a negated
 * one is (-b, -a]. */
static bool meets(const node *n, double a, double b, bool neg) {
    if (neg) {
        const double lo = -b, hi = -a; /* (lo, hi] */
        return lo < n->fhi && (n->flo_ex ? hi > n->flo : hi >= n->flo);
    }
    return (n->fhi_ex ? a < n->fhi : a <= n->fhi) && b > n->flo;
}

/* Whether some number that begins with this text is within the bounds:
 * V exactly and [V, V + 10^-m) after m fraction digits; V's integer part
 * continued by k more digits, [V 10^k, (V + 1) 10^k), before the '.'. */
static bool num_reachable(const node *n, const loom_json_frame *f) {
    const bool neg = f->n & NEG_BIT;
    const uint32_t d = f->n & 0xFF, m = (f->n >> 8) & 0xFF;
    const double v = num_value(f);
    if (d == 0) return neg ? meets(n, 0, INFINITY, true) || (!n->flo_ex && n->flo == 0) : true;
    if (f->n & DOT_BIT) return meets(n, v, v + pow(10, -(double)m), neg);
    if (v == 0) return meets(n, 0, 1, neg) || (neg && n->flo <= 0 && n->fhi >= 0 && !n->fhi_ex);
    double p = 1;
    for (uint32_t k = 0; d + k <= 300; k++, p *= 10)
        if (meets(n, v * p, (v + 1) * p, neg)) return true;
    return false;
}

static bool num_within(const node *n, const loom_json_frame *f) {
    const double v = (f->n & NEG_BIT) ? -num_value(f) : num_value(f);
    return (f->n & 0xFF) > 0 && (n->flo_ex ? v > n->flo : v >= n->flo) && (n->fhi_ex ? v < n->fhi : v <= n->fhi);
}

/* A digit (or the '.') of a bounded number: the text must still reach the bounds. */
static bool num_char(const node *n, loom_json_frame *f, char c) {
    if (!n->fbounded) return true;
    double v = num_value(f);
    if (c == '.') {
        f->n |= DOT_BIT;
    } else if (f->n & DOT_BIT) {
        const uint32_t m = ((f->n >> 8) & 0xFF) + 1;
        if (m > 200) return false;
        v += (c - '0') * pow(10, -(double)m);
        f->n = (f->n & ~0xFF00u) | m << 8;
    } else {
        const uint32_t d = (f->n & 0xFF) + 1;
        if (d > 200) return false;
        v = v * 10 + (c - '0');
        f->n = (f->n & ~0xFFu) | d;
    }
    memcpy(&f->mask, &v, sizeof v);
    return num_reachable(n, f);
}

/* A digit of a bounded integer: the prefix must still reach the bounds. */
static bool int_digit(const node *n, loom_json_frame *f, char c) {
    if (!n->bounded) return true;
    if ((f->n & ~NEG_BIT) >= 19) return false; /* past int64 */
    f->mask = f->mask * 10 + (uint64_t)(c - '0');
    f->n++;
    return int_reachable(n, f);
}

static void step(run *r, loom_json_thread *t, char c);

/* A value of (typed or literal) node nd starts with byte c in place of the
 * K_VAL frame on top. */
static void begin(run *r, loom_json_thread *t, int32_t nd, char c) {
    const node *n = &r->s->nodes[nd];
    loom_json_frame *f = top(t);
    *f = (loom_json_frame){.node = (uint16_t)nd};
    if (n->kind == N_LITS) {
        uint64_t m = 0;
        for (uint32_t i = 0; i < n->n_lits; i++)
            if (r->s->lit[n->lits_at + i][0] == c) m |= 1ull << i;
        if (!m) return;
        f->kind = K_LITS, f->n = 1, f->mask = m;
        emit(r, t);
        return;
    }
    const uint8_t ty = n->types;
    if (c == '{' && ty & T_OBJ) f->kind = K_OBJ, f->st = O_FIRST;
    else if (c == '[' && ty & T_ARR) f->kind = K_ARR, f->st = A_FIRST;
    else if (c == '"' && ty & T_STR) f->kind = K_STR, f->st = S_PLAIN, f->mask = 0; /* mask: the pattern's state */
    else if ((c == '-' || is_digit(c)) && ty & T_INT) {
        f->kind = K_NUM, f->st = c == '-' ? NUM_MINUS : c == '0' ? NUM_ZERO : NUM_INT;
        if (n->bounded || n->fbounded) {
            if (c == '-') f->n = NEG_BIT;
            const bool ok = n->fbounded ? (c == '-' ? num_reachable(n, f) : num_char(n, f, c))
                                        : (c == '-' ? int_reachable(n, f) : int_digit(n, f, c));
            if (!ok) return;
        }
    }
    else if ((c == 't' || c == 'f') && ty & T_BOOL) f->kind = K_WORD, f->st = c == 'f', f->n = 1;
    else if (c == 'n' && ty & T_NULL) f->kind = K_WORD, f->st = 2, f->n = 1;
    else return;
    emit(r, t);
}

/* The typed and literal nodes an anyOf node stands for. */
static void expand(const loom_json_schema *s, int32_t nd, int32_t *out, int *n, int depth) {
    const node *x = &s->nodes[nd];
    if (x->kind != N_ANYOF) {
        if (*n < 64) out[(*n)++] = nd;
        return;
    }
    for (uint32_t i = 0; i < x->n_alts && depth < 8; i++) expand(s, s->alts[x->alts_at + i], out, n, depth + 1);
}

/* Whitespace where the grammar allows it (between tokens). */
static bool ws(loom_json_thread *t, char c) {
    if (!is_ws(c)) {
        t->ws = 0;
        return false;
    }
    return true;
}

static void string_byte(run *r, loom_json_thread *t, loom_json_frame *f, char c, bool key) {
    const node *obj = &r->s->nodes[f->node];
    if (f->st == S_PLAIN) {
        const loom_pattern *pat = !key && obj->pat ? r->s->pats[obj->pat - 1] : NULL;
        if (c == '"') {
            if (!key) {
                if (f->n < obj->min_len) return; /* minLength */
                if (pat && !loom_pattern_accepts(pat, (uint16_t)f->mask)) return;
                value_done(t);
                emit(r, t);
                return;
            }
            uint32_t found = NO_PROP;
            for (uint32_t p = 0; p < obj->n_props; p++)
                if (f->mask >> p & 1 && r->s->prop_len[obj->props_at + p] == f->n) found = p;
            if (found == NO_PROP && obj->additional < 0) return;
            t->depth--; /* the key is read: its object waits for ':' */
            loom_json_frame *o = top(t);
            if (found != NO_PROP) o->mask |= 1ull << found;
            o->n = found, o->st = O_COLON;
            emit(r, t);
            return;
        }
        if ((unsigned char)c < 0x20) return;
        if (!key && ((unsigned char)c & 0xC0) != 0x80 && ++f->n > obj->max_len) return; /* a character begins */
        if (pat) { /* a matched string is written without escapes (pattern.h) */
            const uint16_t q = c == '\\' ? LOOM_PATTERN_DEAD : loom_pattern_next(pat, (uint16_t)f->mask, (uint8_t)c);
            if (q == LOOM_PATTERN_DEAD) return;
            f->mask = q;
        }
        if (c == '\\') {
            f->st = S_ESC;
            if (key) f->mask = 0; /* known names have no escapes */
        } else if (key) {
            uint64_t m = 0;
            for (uint32_t p = 0; p < obj->n_props; p++)
                if (f->mask >> p & 1 && r->s->prop_len[obj->props_at + p] > f->n &&
                    r->s->prop_name[obj->props_at + p][f->n] == c)
                    m |= 1ull << p;
            f->mask = m, f->n++;
        }
        if (key && !f->mask && obj->additional < 0) return;
        emit(r, t);
        return;
    }
    if (f->st == S_ESC) {
        if (c == 'u') f->st = S_U1;
        else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't')
            f->st = S_PLAIN;
        else return;
        emit(r, t);
        return;
    }
    if (!is_hex(c)) return;
    f->st = f->st == S_U4 ? S_PLAIN : f->st + 1;
    emit(r, t);
}

/* A number or a literal ends at a byte that cannot continue it: the value
 * is whole and the byte goes to its container. */
static void end_and_step(run *r, loom_json_thread *t, char c) {
    value_done(t);
    if (t->done) return; /* nothing may follow the document */
    step(r, t, c);
}

static void number_byte(run *r, loom_json_thread *t, loom_json_frame *f, char c) {
    const node *nd = &r->s->nodes[f->node];
    const bool ints = !(nd->types & T_NUM);
    switch (f->st) {
    case NUM_MINUS:
        if (!is_digit(c) || !int_digit(nd, f, c) || !num_char(nd, f, c)) return;
        f->st = c == '0' ? NUM_ZERO : NUM_INT;
        emit(r, t);
        return;
    case NUM_ZERO:
    case NUM_INT:
        if (is_digit(c) && f->st == NUM_INT) {
            if (int_digit(nd, f, c) && num_char(nd, f, c)) emit(r, t);
            return;
        }
        if (c == '.' && !ints) {
            if (num_char(nd, f, c)) {
                f->st = NUM_DOT;
                emit(r, t);
            }
            return;
        }
        if ((c == 'e' || c == 'E') && !ints) {
            if (!nd->fbounded) { /* a bounded number is written without an exponent */
                f->st = NUM_E;
                emit(r, t);
            }
            return;
        }
        if ((nd->bounded && !int_within(nd, f)) || (nd->fbounded && !num_within(nd, f))) return; /* ends out of bounds */
        end_and_step(r, t, c);
        return;
    case NUM_DOT:
        if (!is_digit(c) || !num_char(nd, f, c)) return;
        f->st = NUM_FRAC;
        emit(r, t);
        return;
    case NUM_FRAC:
        if (is_digit(c)) {
            if (num_char(nd, f, c)) emit(r, t);
            return;
        }
        if (c == 'e' || c == 'E') {
            if (!nd->fbounded) {
                f->st = NUM_E;
                emit(r, t);
            }
            return;
        }
        if (nd->fbounded && !num_within(nd, f)) return;
        end_and_step(r, t, c);
        return;
    case NUM_E:
        if (c == '+' || c == '-') {
            f->st = NUM_ESIGN;
            emit(r, t);
            return;
        }
        /* fall through */
    case NUM_ESIGN:
        if (!is_digit(c)) return;
        f->st = NUM_EXP;
        emit(r, t);
        return;
    default: /* NUM_EXP */
        if (is_digit(c)) {
            emit(r, t);
            return;
        }
        end_and_step(r, t, c);
        return;
    }
}

static bool number_can_end(const loom_json_frame *f) {
    return f->st == NUM_ZERO || f->st == NUM_INT || f->st == NUM_FRAC || f->st == NUM_EXP;
}

static bool lits_can_end(const loom_json_schema *s, const loom_json_frame *f) {
    const node *n = &s->nodes[f->node];
    for (uint32_t i = 0; i < n->n_lits; i++)
        if (f->mask >> i & 1 && s->lit_len[n->lits_at + i] == f->n) return true;
    return false;
}

static void step(run *r, loom_json_thread *t, char c) {
    if (t->done) return;
    loom_json_frame *f = top(t);
    const node *n = &r->s->nodes[f->node];
    switch (f->kind) {
    case K_VAL: {
        if (ws(t, c)) {
            if (++t->ws <= LOOM_JSON_MAX_WS) emit(r, t);
            return;
        }
        int32_t alts[64];
        int k = 0;
        expand(r->s, f->node, alts, &k, 0);
        if (k == 1) {
            begin(r, t, alts[0], c);
            return;
        }
        loom_json_thread base; /* t is its slot: each alternative starts from a copy */
        copy_thread(&base, t);
        for (int i = 0; i < k && r->n_out < LOOM_JSON_MAX_ALTS; i++) {
            copy_thread(&r->out[r->n_out], &base);
            begin(r, &r->out[r->n_out], alts[i], c);
        }
        return;
    }
    case K_OBJ:
        if (ws(t, c)) {
            if (++t->ws <= LOOM_JSON_MAX_WS) emit(r, t);
            return;
        }
        if (f->st == O_COLON) {
            if (c != ':') return;
            f->st = O_AFTER; /* where the value's end leaves it */
            const int32_t v = f->n == NO_PROP ? n->additional : r->s->prop_node[n->props_at + f->n];
            if (push(t, (loom_json_frame){.node = (uint16_t)v, .kind = K_VAL})) emit(r, t);
            return;
        }
        if (c == '}' && (f->st == O_FIRST || f->st == O_AFTER)) {
            if ((f->mask & n->required) != n->required) return;
            value_done(t);
            emit(r, t);
            return;
        }
        if (c == ',' && f->st == O_AFTER) {
            const uint64_t all = n->n_props == 64 ? ~0ull : (1ull << n->n_props) - 1;
            if (n->additional < 0 && (f->mask & all) == all) return; /* no key is left */
            f->st = O_KEY;
            emit(r, t);
            return;
        }
        if (c == '"' && (f->st == O_FIRST || f->st == O_KEY)) {
            const uint64_t all = n->n_props == 64 ? ~0ull : (1ull << n->n_props) - 1;
            if (n->additional < 0 && !(all & ~f->mask)) return;
            if (push(t, (loom_json_frame){.node = f->node, .kind = K_KEY, .st = S_PLAIN, .mask = all & ~f->mask}))
                emit(r, t);
        }
        return;
    case K_ARR:
        if (ws(t, c)) {
            if (++t->ws <= LOOM_JSON_MAX_WS) emit(r, t);
            return;
        }
        if (c == ']') {
            if (f->n < n->min_items) return;
            value_done(t);
            emit(r, t);
            return;
        }
        if (f->st == A_AFTER) {
            if (c != ',' || f->n >= n->max_items) return;
            if (push(t, (loom_json_frame){.node = (uint16_t)n->items, .kind = K_VAL})) emit(r, t);
            return;
        }
        if (n->max_items == 0) return; /* A_FIRST: a value begins */
        f->st = A_AFTER;
        if (push(t, (loom_json_frame){.node = (uint16_t)n->items, .kind = K_VAL})) step(r, t, c);
        return;
    case K_KEY:
        string_byte(r, t, f, c, true);
        return;
    case K_STR:
        string_byte(r, t, f, c, false);
        return;
    case K_NUM:
        number_byte(r, t, f, c);
        return;
    case K_LITS: {
        uint64_t m = 0;
        for (uint32_t i = 0; i < n->n_lits; i++)
            if (f->mask >> i & 1 && r->s->lit_len[n->lits_at + i] > f->n && r->s->lit[n->lits_at + i][f->n] == c)
                m |= 1ull << i;
        if (m) {
            f->mask = m, f->n++;
            emit(r, t);
            return;
        }
        if (lits_can_end(r->s, f)) end_and_step(r, t, c);
        return;
    }
    default: /* K_WORD */
        if (WORDS[f->st][f->n] != c) return;
        if (++f->n == WORD_LEN[f->st]) value_done(t);
        emit(r, t);
    }
}

void loom_json_init(loom_json_state *s, const loom_json_schema *schema) {
    s->schema = schema;
    s->n = 1;
    s->t[0] = (loom_json_thread){.depth = 1};
    s->t[0].f[0] = (loom_json_frame){.node = (uint16_t)schema->root, .kind = K_VAL};
}

static bool same(const loom_json_thread *a, const loom_json_thread *b);

/* Keeps one of readings that became the same; returns how many are left. */
static uint8_t dedupe(loom_json_thread *t, int n) {
    int m = 0;
    for (int k = 0; k < n; k++) {
        bool dup = false;
        for (int j = 0; j < m && !dup; j++) dup = same(&t[j], &t[k]);
        if (!dup && m != k) copy_thread(&t[m], &t[k]);
        m += !dup;
    }
    return (uint8_t)m;
}

static bool same(const loom_json_thread *a, const loom_json_thread *b) {
    return a->depth == b->depth && a->ws == b->ws && a->done == b->done &&
           !memcmp(a->f, b->f, a->depth * sizeof *a->f);
}

bool loom_json_feed(loom_json_state *s, const char *b, size_t len) {
    loom_json_thread out[LOOM_JSON_MAX_ALTS];
    for (size_t i = 0; i < len && s->n; i++) {
        if (s->n == 1) { /* one reading (the usual case): worked on in place, s->t[1..] free for forks */
            run r = {.s = s->schema, .out = s->t};
            step(&r, &s->t[0], b[i]);
            s->n = (uint8_t)r.n_out;
            if (s->n > 1) s->n = dedupe(s->t, s->n);
            continue;
        }
        run r = {.s = s->schema, .out = out};
        for (int k = 0; k < s->n && r.n_out < LOOM_JSON_MAX_ALTS; k++) { /* past the cap a reading is dropped */
            copy_thread(&out[r.n_out], &s->t[k]);
            step(&r, &out[r.n_out], b[i]);
        }
        s->n = 0;
        for (int k = 0; k < r.n_out; k++) { /* readings that became one are kept once */
            bool dup = false;
            for (int j = 0; j < s->n && !dup; j++) dup = same(&s->t[j], &out[k]);
            if (!dup) copy_thread(&s->t[s->n++], &out[k]);
        }
    }
    return s->n > 0;
}

bool loom_json_try(const loom_json_state *from, const char *b, size_t n, loom_json_state *to) {
    to->schema = from->schema;
    to->n = from->n;
    for (int k = 0; k < from->n; k++) copy_thread(&to->t[k], &from->t[k]);
    return loom_json_feed(to, b, n);
}

bool loom_json_complete(const loom_json_state *s) {
    for (int k = 0; k < s->n; k++) {
        const loom_json_thread *t = &s->t[k];
        if (t->done) return true;
        const node *nd = &s->schema->nodes[t->f[0].node];
        if (t->depth == 1 && ((t->f[0].kind == K_NUM && number_can_end(&t->f[0]) &&
                               (!nd->bounded || int_within(nd, &t->f[0])) && (!nd->fbounded || num_within(nd, &t->f[0]))) ||
                              (t->f[0].kind == K_LITS && lits_can_end(s->schema, &t->f[0]))))
            return true;
    }
    return false;
}

/* ------------------------------------------------------------ the token constraint */

loom_status loom_vocab_text_build(const loom_tokenizer *tok, int32_t n, loom_vocab_text *out) {
    memset(out, 0, sizeof *out);
    const int32_t nt = loom_tokenizer_n_vocab(tok);
    uint32_t *off = malloc(((size_t)n + 1) * sizeof *off);
    uint8_t *kind = malloc(n > 0 ? (size_t)n : 1);
    size_t total = 0;
    for (int32_t i = 0; i < n && i < nt; i++) {
        size_t len;
        loom_token_piece(tok, i, false, &len);
        total += len;
    }
    char *bytes = malloc(total ? total : 1);
    if (!off || !kind || !bytes || total > UINT32_MAX) {
        free(off), free(kind), free(bytes);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for the vocabulary's text (%zu bytes)", total);
    }
    off[0] = 0;
    for (int32_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *p = i < nt ? loom_token_piece(tok, i, false, &len) : NULL;
        kind[i] = i >= nt || loom_tokenizer_is_control(tok, i) ? 2 : 0;
        if (i < nt && loom_tokenizer_is_eog(tok, i)) kind[i] = 1;
        if (kind[i]) len = 0;
        if (len) memcpy(bytes + off[i], p, len);
        off[i + 1] = off[i] + (uint32_t)len;
    }
    *out = (loom_vocab_text){.n = n, .off = off, .bytes = bytes, .kind = kind};
    return NULL;
}

void loom_vocab_text_free(loom_vocab_text *v) {
    free((void *)v->off);
    free((void *)v->bytes);
    free((void *)v->kind);
    memset(v, 0, sizeof *v);
}

bool loom_vocab_token_fits(const loom_vocab_text *v, int32_t t, loom_first_bytes *first,
                           bool (*fits)(void *user, const char *b, size_t n), bool (*whole)(void *user), void *user) {
    if (t < 0 || t >= v->n || v->kind[t] == 2) return false;
    if (v->kind[t] == 1) return whole(user);
    const uint32_t len = v->off[t + 1] - v->off[t];
    if (len == 0) return false;
    if (!first->known) {
        for (int b = 0; b < 256; b++) {
            const char ch = (char)b;
            first->ok[b] = fits(user, &ch, 1);
        }
        first->known = true;
    }
    const char *p = v->bytes + v->off[t];
    return first->ok[(uint8_t)p[0]] && (len == 1 || fits(user, p, len));
}

struct loom_json_constraint {
    const loom_vocab_text *v;
    loom_json_schema *owned;
    loom_json_state st, scratch;
    loom_first_bytes first; /* for st */
};

loom_status loom_json_constraint_create(const loom_vocab_text *v, loom_json_schema *schema,
                                        loom_json_constraint **out) {
    *out = NULL;
    loom_json_constraint *c = malloc(sizeof *c);
    if (!c) {
        loom_json_schema_free(schema);
        return loom_error(LOOM_ERR_NOMEM, "out of memory for a JSON constraint");
    }
    c->v = v, c->owned = schema, c->first.known = false;
    loom_json_init(&c->st, schema);
    *out = c;
    return NULL;
}

void loom_json_constraint_free(loom_json_constraint *c) {
    if (!c) return;
    loom_json_schema_free(c->owned);
    free(c);
}

static bool json_fits(void *user, const char *b, size_t n) {
    loom_json_constraint *c = user;
    return loom_json_try(&c->st, b, n, &c->scratch);
}

static bool json_whole(void *user) { return loom_json_complete(&((loom_json_constraint *)user)->st); }

bool loom_json_constraint_fits(void *user, int32_t t) {
    loom_json_constraint *c = user;
    return loom_vocab_token_fits(c->v, t, &c->first, json_fits, json_whole, c);
}

void loom_json_constraint_accept(void *user, int32_t t) {
    loom_json_constraint *c = user;
    const loom_vocab_text *v = c->v;
    if (t < 0 || t >= v->n || v->kind[t] != 0) return;
    loom_json_state next;
    /* a token that does not fit (only the sampler's fallback draws one) leaves the state */
    if (loom_json_try(&c->st, v->bytes + v->off[t], v->off[t + 1] - v->off[t], &next)) c->st = next;
    c->first.known = false;
}
