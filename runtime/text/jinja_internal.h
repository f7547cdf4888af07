/*
 * runtime/text/jinja_internal.h — what the files of the Jinja interpreter
 * share: the arena, the value model, tokens, the syntax tree and the
 * evaluation state. Not a public interface (see jinja.h).
 *
 * Values follow Python's data model as jinja2 sees it: Undefined, None,
 * bool, int (64-bit; overflow is an error), float, str (UTF-8, indexed by
 * code point; a flag marks markupsafe's Markup), list (a flag marks tuples
 * and one-shot generators such as map() results), dict (insertion-ordered)
 * and objects (namespace, macro, loop, built-in functions and bound
 * methods). The sandbox is immutable, so lists and dicts never change after
 * they are built and may be shared freely; only namespaces are mutable.
 *
 * Memory: everything a render builds lives in one arena with a byte limit,
 * released at once when the render ends. The parsed template lives in its
 * own arena.
 */
#ifndef LOOM_JINJA_INTERNAL_H
#define LOOM_JINJA_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "runtime/text/jinja.h"
#include "runtime/text/utf8.h"

/* ---- arena ---- */

typedef struct jchunk jchunk;
typedef struct {
    jchunk *head;
    size_t total; /* bytes taken from malloc */
    size_t limit; /* 0 = none */
    bool over;    /* an allocation failed (limit or malloc) */
} jarena;

void *ja_alloc(jarena *a, size_t n); /* zeroed, 16-byte aligned; NULL when over the limit */
void *ja_grow(jarena *a, void *old, size_t old_n, size_t new_n);
char *ja_strndup(jarena *a, const char *s, size_t n); /* NUL-terminated copy */
void ja_free(jarena *a);

/* ---- values ---- */

enum { JV_UNDEF, JV_NONE, JV_BOOL, JV_INT, JV_FLOAT, JV_STR, JV_LIST, JV_DICT, JV_OBJ };
enum {
    JF_MARKUP = 1,   /* str: markupsafe.Markup */
    JF_TUPLE = 2,    /* list: a tuple */
    JF_GEN = 4,      /* list: a one-shot generator (map, select, items, ...) */
    JF_SECURITY = 8, /* undefined: an unsafe attribute (using it raises SecurityError) */
};

typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jobj jobj;

typedef struct jv {
    uint8_t t;
    uint8_t fl;
    uint32_t n; /* str: byte length */
    union {
        bool b;
        int64_t i;
        double f;
        const char *s; /* str bytes; undefined: the message used when it is used (NULL: none) */
        jlist *l;
        jdict *d;
        jobj *o;
    } u;
} jv;

struct jlist {
    uint32_t n, cap;
    uint32_t pos; /* generators: items before pos were consumed */
    jv *v;
};

struct jdict {
    uint32_t n, cap;
    jv *k, *v;
    uint32_t *index; /* open-addressing hash of positions + 1 (0 = empty); built when n grows past 8 */
    uint32_t index_cap;
};

enum { JO_NS, JO_MACRO, JO_LOOP, JO_FUNC, JO_METHOD, JO_CYCLER, JO_JOINER };

struct jnode;
struct jscope;
typedef struct jx jx;
typedef struct jloop jloop;

/* A built-in: a global function, a filter, a test or a method. `self` is the
 * bound object for methods, the filtered / tested value for filters and
 * tests. Positional and keyword arguments as given. */
typedef struct {
    const jv *pos;
    uint32_t npos;
    const char *const *kw_names;
    const jv *kw;
    uint32_t nkw;
} jargs;
typedef bool (*jbuiltin_fn)(jx *x, const struct jnode *at, jv self, const jargs *a, jv *out);

struct jobj {
    uint8_t kind;
    union {
        jdict *ns; /* JO_NS: attributes */
        struct {
            const struct jnode *def; /* S_MACRO or S_CALLBLOCK */
            struct jscope *closure;
            const char *name;
            jv caller; /* for call blocks: the caller passed on */
        } macro;
        jloop *loop;
        struct {
            jbuiltin_fn fn;
            const char *name;
            jv self;
        } func; /* JO_FUNC / JO_METHOD */
        struct {
            jlist *items;
            uint32_t pos;
        } cycler;
        struct {
            jv sep;
            bool used;
        } joiner;
    } u;
};

/* memcpy of n values, where n may be 0 and the pointers NULL */
static inline void jv_copy(jv *dst, const jv *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = src[i];
}

/* constructors and access */
static inline jv jv_undef(void) { return (jv){.t = JV_UNDEF}; }
static inline jv jv_none(void) { return (jv){.t = JV_NONE}; }
static inline jv jv_bool(bool b) { return (jv){.t = JV_BOOL, .u.b = b}; }
static inline jv jv_int(int64_t i) { return (jv){.t = JV_INT, .u.i = i}; }
static inline jv jv_float(double f) { return (jv){.t = JV_FLOAT, .u.f = f}; }
static inline jv jv_strv(const char *s, uint32_t n, uint8_t fl) { return (jv){.t = JV_STR, .fl = fl, .n = n, .u.s = s}; }
static inline bool jv_is_str(jv v) { return v.t == JV_STR; }
/* whether v is the string lit (jv strings are counted, not terminated) */
static inline bool jv_str_is(jv v, const char *lit) {
    const size_t n = strlen(lit);
    return v.t == JV_STR && v.n == n && (n == 0 || !memcmp(v.u.s, lit, n));
}
static inline bool jv_is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
static inline bool jv_is_obj(jv v, int kind) { return v.t == JV_OBJ && v.u.o->kind == kind; }
jv jv_undef_msg(jx *x, const char *fmt, ...) LOOM_PRINTF(2, 3); /* undefined that names what is missing */

/* A growable byte string in the render arena (or malloc'd output). */
typedef struct {
    jarena *a;
    char *p;
    size_t n, cap;
    bool fail;
} jbuf;
void jb_put(jbuf *b, const char *s, size_t n);
void jb_puts(jbuf *b, const char *s);
void jb_putc(jbuf *b, char c);
void jb_printf(jbuf *b, const char *fmt, ...) LOOM_PRINTF(2, 3);
jv jb_str(jbuf *b, uint8_t fl); /* the bytes as a str value (the buffer stays usable) */

/* ---- evaluation state ---- */

typedef struct jscope {
    struct jscope *parent;
    jdict *vars;
} jscope;

struct jloop {
    jlist *items;  /* what the loop runs over (after its if-filter) */
    uint32_t i;
    uint32_t depth0;
    jv last_changed;
    bool changed_set;
    const struct jnode *stmt; /* recursive loops call it again */
    jscope *scope;            /* the scope around the loop */
};

struct jx {
    const loom_jinja_template *t;
    jarena *a;
    jbuf *out;        /* where output goes now */
    jdict *vars;      /* the render's variables */
    jscope *root;     /* top-level assignments */
    loom_jinja_limits lim;
    uint64_t steps;
    uint32_t depth;
    uint32_t nest;    /* statements and expressions being evaluated, across calls */
    int ctl;          /* 1 = break, 2 = continue pending */
    char *err;        /* first error, malloc'd, "line:col: message" */
    const void *repr_stack[260]; /* containers whose repr is being written (Python prints a cycle as [...]) */
    int repr_n;
};

/* Records an error at node `at` (NULL: no position) and returns false. */
bool jx_fail(jx *x, const struct jnode *at, const char *fmt, ...) LOOM_PRINTF(3, 4);
bool jx_step(jx *x, const struct jnode *at, uint64_t n); /* counts work against max_steps */
bool jx_alloc_failed(jx *x, const struct jnode *at);    /* when an arena allocation returned NULL */

/* ---- values: jinja_value.c ---- */

jv jv_str(jx *x, const char *s, size_t n); /* copies */
jlist *jl_new(jx *x, uint32_t cap);
bool jl_push(jx *x, jlist *l, jv v);
jv jv_list(jlist *l, uint8_t fl);
jdict *jd_new(jarena *a, uint32_t cap);
bool jd_set(jarena *a, jdict *d, jv k, jv v);           /* false on allocation failure */
bool jd_get(const jdict *d, jv k, jv *out);              /* false when absent */
bool jd_get_str(const jdict *d, const char *k, size_t n, jv *out);
jv jv_dict(jdict *d);
jobj *jo_new(jx *x, int kind);
bool jv_hashable(jv v);

bool jv_truthy(jv v);
const char *jv_type_name(jv v); /* Python's type name: "str", "int", "NoneType", ... */
bool jv_eq(jv a, jv b);
/* Python's a < b; false with an error for unorderable types */
bool jv_lt(jx *x, const struct jnode *at, jv a, jv b, bool *out);
/* Python's str(v) / repr(v) appended to b */
bool jv_to_str(jx *x, const struct jnode *at, jv v, jbuf *b);
bool jv_repr(jx *x, const struct jnode *at, jv v, jbuf *b, int depth);
bool jv_stringify(jx *x, const struct jnode *at, jv v, jv *out); /* str(v) as a value; strs unchanged */
void py_float_repr(double f, char out[32]);
/* Items of an iterable as a list (str: characters, dict: keys, generator: consumed) */
bool jv_iter(jx *x, const struct jnode *at, jv v, jlist **out);
/* Uses an undefined value: the error for it (attribute access, arithmetic, ...) */
bool jv_undef_fail(jx *x, const struct jnode *at, jv v);

/* ---- JSON: jinja_json.c ---- */

/* Parses JSON text (Python json.loads semantics: ints stay ints, floats floats,
 * object key order kept, NaN/Infinity accepted). On error returns false with
 * a message in err[0..errn). */
bool jjson_parse(jarena *a, const char *s, size_t n, jv *out, char *err, size_t errn);
typedef struct {
    const char *indent; /* NULL: no newlines */
    size_t indent_n;
    const char *item_sep, *key_sep;
    size_t item_sep_n, key_sep_n;
    bool sort_keys;
    bool ensure_ascii;
} jjson_opts;
/* Python's json.dumps(v, ...) appended to b. */
bool jjson_dump(jx *x, const struct jnode *at, jv v, const jjson_opts *o, jbuf *b);

/* ---- strings: jinja_str.c (Python str semantics on UTF-8) ---- */

size_t u8_len(const char *s, size_t n);              /* code points */
size_t u8_offset(const char *s, size_t n, size_t i); /* byte offset of code point i (n when past the end) */
bool py_isspace(uint32_t c);
/* The character at s[i] may start (or continue) a Python identifier (letters; digits too when continuing). */
bool ju_ident(const char *s, size_t n, size_t i, bool start);
uint32_t u8_next(const char *s, size_t n, size_t *i); /* decodes at *i, advances; invalid bytes give U+FFFD */
/* str methods; `at` names the call for errors. Return false on error. */
bool jstr_method(jx *x, const struct jnode *at, jv self, const char *name, const jargs *a, jv *out, bool *found);
bool jstr_strip(jx *x, jv s, jv chars, bool left, bool right, jv *out);
bool jstr_splitlines(jx *x, jv s, bool keepends, jlist **out);
bool jstr_case(jx *x, jv s, int mode, jv *out); /* 0 lower, 1 upper, 2 title, 3 capitalize */
bool jstr_replace(jx *x, const struct jnode *at, jv s, jv old, jv new_, int64_t count, jv *out);
bool jstr_contains(jx *x, const struct jnode *at, jv hay, jv needle, bool *out);
bool jstr_percent(jx *x, const struct jnode *at, jv fmt, jv args, jv *out); /* "fmt" % args */
bool jstr_format(jx *x, const struct jnode *at, jv fmt, const jargs *a, jv *out);  /* str.format */
jv jstr_escape(jx *x, jv s); /* markupsafe.escape: a Markup */

/* ---- tokens: jinja_lex.c ---- */

enum { T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF };
/* T_OP codes */
enum {
    P_ADD, P_SUB, P_DIV, P_FLOORDIV, P_MUL, P_POW, P_MOD, P_TILDE, P_LBRACKET, P_RBRACKET, P_LPAREN, P_RPAREN,
    P_LBRACE, P_RBRACE, P_DOT, P_COLON, P_COMMA, P_PIPE, P_ASSIGN, P_EQ, P_NE, P_LT, P_LE, P_GT, P_GE, P_SEMICOLON,
};

typedef struct {
    uint8_t kind, op;
    uint32_t line, col;
    const char *s; /* T_DATA, T_NAME, T_STRING: the text (NUL-terminated, in the template arena) */
    uint32_t n;
    int64_t i;
    double f;
} jtok;

/* Splits src into tokens with jinja2's lexer rules and HF's settings. On
 * error returns false with "line:col: message" in err. */
bool jlex(jarena *a, const char *src, size_t len, jtok **out, size_t *n, char *err, size_t errn);

/* ---- syntax tree: jinja_parse.c ---- */

enum {
    /* expressions */
    E_CONST, E_NAME, E_GETATTR, E_GETITEM, E_SLICE, E_CALL, E_FILTER, E_TEST, E_LIST, E_TUPLE, E_DICT,
    E_NEG, E_POS, E_NOT, E_BIN, E_CONCAT, E_COMPARE, E_AND, E_OR, E_COND, E_NSREF, E_KW,
    /* statements */
    S_DATA, S_PRINT, S_IF, S_FOR, S_SET, S_SETBLOCK, S_MACRO, S_CALLBLOCK, S_FILTERBLOCK, S_BREAK,
    S_CONTINUE, S_WITH, S_SCOPE,
};
/* E_BIN / E_COMPARE operators */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };
/* S_MACRO / S_CALLBLOCK flags: the body refers to these names */
enum { NF_CALLER = 1, NF_VARARGS = 2, NF_KWARGS = 4, NF_RECURSIVE = 8, NF_SOFT = 16 };

typedef struct jnode {
    uint8_t kind, op;
    uint16_t flags;
    uint32_t line, col;
    const char *name; /* NUL-terminated: names, attributes, filter / test names */
    struct jnode *a, *b, *c, *d;
    struct jnode **v; /* items, arguments, body */
    struct jnode **w; /* keyword arguments, else body */
    uint32_t nv, nw;
    jv value;         /* E_CONST, S_DATA */
    jbuiltin_fn fn;   /* E_FILTER / E_TEST: resolved at parse time (NULL: unknown, fails when run) */
} jnode;

struct loom_jinja_vars {
    jarena arena;
    jdict *vars;
};

struct loom_jinja_template {
    jarena arena;
    jnode *root; /* S_SCOPE holding the body */
    char *name;
};

/* ---- built-ins: jinja_filters.c, jinja_tests.c, jinja_globals.c ---- */

jbuiltin_fn jfilter_lookup(const char *name);
jbuiltin_fn jtest_lookup(const char *name);
bool jglobal_lookup(jx *x, const char *name, jv *out);
/* Attribute access obj.name (sandboxed, immutable): methods of str / dict /
 * list, namespace attributes, loop attributes, else obj[name], else undefined. */
bool jv_getattr(jx *x, const jnode *at, jv obj, const char *name, size_t n, jv *out);
/* obj[key] with jinja2's fallback to attributes for string keys. */
bool jv_getitem(jx *x, const jnode *at, jv obj, jv key, jv *out);
bool jv_slice(jx *x, const jnode *at, jv obj, jv start, jv stop, jv step, jv *out);
bool jv_sliceable(jv obj, jv start, jv stop, jv step); /* a slice of obj would not raise a TypeError */
/* Binds a built-in's arguments to parameter names (Python rules); missing
 * optional ones are undefined (t == JV_UNDEF with u.s == NULL means "not given"). */
bool jargs_bind(jx *x, const jnode *at, const char *fname, const jargs *a, const char *const *params, uint32_t nparams,
                uint32_t required, jv *slots);
/* Calls any callable value. */
bool jv_call(jx *x, const jnode *at, jv fn, const jargs *a, jv *out);
/* Runs a test by name (for select / reject) or a filter (for map). */
bool jtest_run(jx *x, const jnode *at, jv name, jv v, const jargs *a, bool *out);
bool jfilter_run(jx *x, const jnode *at, const char *name, jv v, const jargs *a, jv *out);
/* The attribute path "a.b.0" of v (selectattr, map, sort, ...). */
bool jv_attr_path(jx *x, const jnode *at, jv v, jv path, jv dflt, jv *out); /* dflt: after each part, if given */
bool jv_binop(jx *x, const jnode *at, int op, jv a, jv b, jv *out);
/* A bound method value: self.name (str / dict / list methods, loop.cycle, ...). */
bool jx_make_method(jx *x, const jnode *at, jv self, const char *name, size_t n, jv *out);
bool jloop_attr(jx *x, const jnode *at, jv obj, const char *name, size_t n, jv *out, bool *found);
bool jloop_method(jx *x, const jnode *at, jv self, const char *m, const jargs *a, jv *out);
bool jv_compare(jx *x, const jnode *at, int op, jv a, jv b, bool *out);

/* Writing built-ins: GIVEN(v) is false for an optional argument not given;
 * BIND binds a filter's arguments to named parameters (the first `req`
 * required) into jv arg[]; NOARGS rejects any; JFILTER declares a filter. */
#define GIVEN(v) (!((v).t == JV_UNDEF && !(v).u.s))
#define BIND(req, ...)                                                                                   \
    static const char *const ps_[] = {__VA_ARGS__};                                                      \
    jv arg[sizeof ps_ / sizeof ps_[0]];                                                                  \
    if (!jargs_bind(x, at, at->name, a, ps_, sizeof ps_ / sizeof ps_[0], req, arg)) return false
#define NOARGS()                                                                                         \
    if (!jargs_bind(x, at, at->name, a, NULL, 0, 0, NULL)) return false
#define JFILTER(name) bool jf_##name(jx *x, const jnode *at, jv v, const jargs *a, jv *out)
/* the filters of jinja_filters_seq.c (sequences and mappings) */
JFILTER(join);
JFILTER(items);
JFILTER(dictsort);
JFILTER(sort);
JFILTER(list);
JFILTER(select);
JFILTER(reject);
JFILTER(selectattr);
JFILTER(rejectattr);
JFILTER(map);
JFILTER(unique);
JFILTER(min);
JFILTER(max);
JFILTER(first);
JFILTER(last);
JFILTER(reverse);
JFILTER(sum);
JFILTER(batch);
jv jf_soft_str(jx *x, const jnode *at, jv v, bool *ok); /* soft_str(): str(v) unless v is a str */

/* ---- evaluator: jinja_eval.c ---- */

bool jx_eval(jx *x, jscope *s, const jnode *n, jv *out);
bool jx_call_macro(jx *x, const jnode *at, jobj *m, const jargs *a, jv *out);
bool jx_loop_call(jx *x, const jnode *at, jloop *l, const jargs *a, jv *out);
bool jx_strftime_now(jx *x, const jnode *at, jv fmt, jv *out);

#endif
