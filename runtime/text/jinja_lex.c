/*
 * runtime/text/jinja_lex.c — jinja2's lexer (lexer.py, 3.1) with the settings
 * of Hugging Face's chat templates: trim_blocks (a newline right after a
 * block or comment tag is dropped), lstrip_blocks (spaces and tabs before a
 * block or comment tag at the start of a line are dropped; "+" after the
 * opening delimiter keeps them), keep_trailing_newline off, "-" strips all
 * whitespace on its side of a tag, newlines normalised to "\n".
 *
 * Whitespace is Python's (str.isspace: \s in jinja2's regexes). String
 * literals are decoded as jinja2 does: non-ASCII characters are
 * backslash-escaped, then the whole body goes through Python's
 * unicode-escape codec.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja_internal.h"

typedef struct {
    jarena *a;
    const char *s; /* normalised source */
    size_t n, pos;
    size_t cpos; /* line/col cursor */
    uint32_t line, col;
    jtok *t;
    size_t nt, cap;
    char *err;
    size_t errn;
    bool line_starting;
} lexer;

static void where(lexer *L, size_t p, uint32_t *line, uint32_t *col) {
    if (p < L->cpos) L->cpos = 0, L->line = 1, L->col = 1;
    for (; L->cpos < p; L->cpos++) {
        unsigned char c = (unsigned char)L->s[L->cpos];
        if (c == '\n') L->line++, L->col = 1;
        else if ((c & 0xC0) != 0x80) L->col++;
    }
    *line = L->line;
    *col = L->col;
}

static bool lfail(lexer *L, size_t p, const char *fmt, ...) LOOM_PRINTF(3, 4);
static bool lfail(lexer *L, size_t p, const char *fmt, ...) {
    uint32_t line, col;
    where(L, p, &line, &col);
    int k = snprintf(L->err, L->errn, "%u:%u: ", line, col);
    va_list ap;
    va_start(ap, fmt);
    if (k >= 0 && (size_t)k < L->errn) vsnprintf(L->err + k, L->errn - (size_t)k, fmt, ap);
    va_end(ap);
    return false;
}

static jtok *emit(lexer *L, int kind, size_t p) {
    if (L->nt == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 256;
        jtok *t = ja_grow(L->a, L->t, L->cap * sizeof *t, cap * sizeof *t);
        if (!t) return NULL;
        L->t = t;
        L->cap = cap;
    }
    jtok *t = &L->t[L->nt++];
    memset(t, 0, sizeof *t);
    t->kind = (uint8_t)kind;
    where(L, p, &t->line, &t->col);
    return t;
}

static bool emit_text(lexer *L, int kind, size_t p, const char *s, size_t n) {
    jtok *t = emit(L, kind, p);
    char *c = t ? ja_strndup(L->a, s, n) : NULL;
    if (!c) return lfail(L, p, "out of memory");
    t->s = c;
    t->n = (uint32_t)n;
    return true;
}

/* Length of the Python whitespace character at s[p] (0 when none). */
static size_t space_at(const char *s, size_t n, size_t p) {
    if (p >= n) return 0;
    size_t i = p;
    uint32_t c = u8_next(s, n, &i);
    return py_isspace(c) ? i - p : 0;
}

static size_t skip_space(const char *s, size_t n, size_t p) {
    size_t k;
    while ((k = space_at(s, n, p)) > 0) p += k;
    return p;
}

/* True when s[from..to) is non-empty and all Python whitespace. */
static bool all_space(const char *s, size_t from, size_t to) {
    if (from >= to) return false;
    return skip_space(s, to, from) == to;
}

/* Start of the trailing whitespace of s[from..to). */
static size_t rstrip_at(const char *s, size_t from, size_t to) {
    size_t end = to;
    while (end > from) {
        size_t st = end - 1;
        while (st > from && ((unsigned char)s[st] & 0xC0) == 0x80 && end - st < 4) st--;
        size_t i = st;
        uint32_t c = u8_next(s, end, &i);
        if (i != end || !py_isspace(c)) break;
        end = st;
    }
    return end;
}

/* jinja2's OptionalLStrip: the data before a tag, given the tag's sign. */
static bool emit_data(lexer *L, size_t from, size_t to, char sign, bool is_var) {
    if (sign == '-') {
        to = rstrip_at(L->s, from, to);
    } else if (sign != '+' && !is_var) {
        size_t l = to;
        while (l > from && L->s[l - 1] != '\n') l--;
        if ((l > from || L->line_starting) && all_space(L->s, l, to)) to = l;
    }
    if (to > from) return emit_text(L, T_DATA, from, L->s + from, to - from);
    return true;
}

/* A block end at p: "+%}", "-%}" + whitespace, "%}" + an optional newline
 * (trim_blocks). Returns the end position, or 0 when none. */
static size_t block_end(const char *s, size_t n, size_t p, char close) {
    if (p + 2 < n + 0 && (s[p] == '-' || s[p] == '+') && s[p + 1] == close && p + 2 < n && s[p + 2] == '}') {
        if (s[p] == '+') return p + 3;
        return skip_space(s, n, p + 3);
    }
    if (p + 1 < n && s[p] == close && s[p + 1] == '}') return p + 2 < n && s[p + 2] == '\n' ? p + 3 : p + 2;
    return 0;
}

static size_t var_end(const char *s, size_t n, size_t p) {
    if (p + 2 < n && s[p] == '-' && s[p + 1] == '}' && s[p + 2] == '}') return skip_space(s, n, p + 3);
    if (p + 1 < n && s[p] == '}' && s[p + 1] == '}') return p + 2;
    return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

/* (\d+_)*\d+ at p: end position, or p when none */
static size_t digits_us(const char *s, size_t n, size_t p) {
    if (p >= n || !is_digit(s[p])) return p;
    while (p < n && is_digit(s[p])) p++;
    while (p + 1 < n && s[p] == '_' && is_digit(s[p + 1])) {
        p++;
        while (p < n && is_digit(s[p])) p++;
    }
    return p;
}

static size_t match_float(const char *s, size_t n, size_t p) {
    if (p > 0 && s[p - 1] == '.') return 0;
    size_t q = digits_us(s, n, p);
    if (q == p) return 0;
    /* (\.digits)? e[+-]?digits */
    size_t r = q;
    if (r < n && s[r] == '.') {
        size_t f = digits_us(s, n, r + 1);
        if (f > r + 1) r = f;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        size_t e = attempt == 0 ? r : q;
        if (e < n && (s[e] == 'e' || s[e] == 'E')) {
            size_t x = e + 1;
            if (x < n && (s[x] == '+' || s[x] == '-')) x++;
            size_t d = digits_us(s, n, x);
            if (d > x) return d;
        }
        if (r == q) break;
    }
    if (q < n && s[q] == '.') {
        size_t f = digits_us(s, n, q + 1);
        if (f > q + 1) return f;
    }
    return 0;
}

static int digit_value(char c) {
    if (is_digit(c)) return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 99;
}

/* integer_re at p; sets *end and *value (false on overflow with *end set). */
static bool match_int(const char *s, size_t n, size_t p, size_t *end, int64_t *value, bool *overflow) {
    *overflow = false;
    int base = 10;
    size_t q = p;
    if (s[p] == '0' && p + 1 < n && strchr("bBoOxX", s[p + 1]) && s[p + 1]) {
        char b = (char)(s[p + 1] | 0x20);
        base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
        q = p + 2;
        size_t k = q;
        for (;;) {
            size_t j = k < n && s[k] == '_' ? k + 1 : k;
            if (j < n && digit_value(s[j]) < base) k = j + 1;
            else break;
        }
        if (k == q) base = 10, q = p; /* "0" alone, then a name */
        else q = k;
    }
    if (base == 10) {
        if (s[p] == '0') {
            q = p + 1;
            for (;;) {
                size_t j = q < n && s[q] == '_' ? q + 1 : q;
                if (j < n && s[j] == '0') q = j + 1;
                else break;
            }
        } else if (s[p] >= '1' && s[p] <= '9') {
            q = p + 1;
            for (;;) {
                size_t j = q < n && s[q] == '_' ? q + 1 : q;
                if (j < n && is_digit(s[j])) q = j + 1;
                else break;
            }
        } else {
            return false;
        }
    }
    *end = q;
    uint64_t v = 0;
    for (size_t i = base == 10 ? p : p + 2; i < q; i++) {
        if (s[i] == '_') continue;
        uint64_t d = (uint64_t)digit_value(s[i]);
        if (v > (UINT64_MAX - d) / (uint64_t)base || v * (uint64_t)base + d > (uint64_t)INT64_MAX) *overflow = true;
        v = v * (uint64_t)base + d;
    }
    *value = (int64_t)v;
    return true;
}

/* Python's unicode-escape decoding of a literal body in which non-ASCII
 * characters were first written as \xNN / \uNNNN / \UNNNNNNNN
 * (encode("ascii", "backslashreplace")). */
static bool decode_string(lexer *L, size_t at, const char *s, size_t n, jtok *t) {
    jbuf b = {.a = L->a};
    /* step 1: backslashreplace */
    jbuf esc = {.a = L->a};
    for (size_t i = 0; i < n;) {
        if ((unsigned char)s[i] < 0x80) {
            jb_putc(&esc, s[i++]);
            continue;
        }
        uint32_t c = u8_next(s, n, &i);
        if (c < 0x100) jb_printf(&esc, "\\x%02x", c);
        else if (c < 0x10000) jb_printf(&esc, "\\u%04x", c);
        else jb_printf(&esc, "\\U%08x", c);
    }
    const char *e = esc.p ? esc.p : "";
    size_t en = esc.n;
    for (size_t i = 0; i < en; i++) {
        if (e[i] != '\\') {
            jb_putc(&b, e[i]);
            continue;
        }
        if (i + 1 >= en) return lfail(L, at, "\\ at end of string");
        char c = e[++i];
        switch (c) {
        case '\n': break;
        case '\\': jb_putc(&b, '\\'); break;
        case '\'': jb_putc(&b, '\''); break;
        case '"': jb_putc(&b, '"'); break;
        case 'a': jb_putc(&b, 7); break;
        case 'b': jb_putc(&b, 8); break;
        case 'f': jb_putc(&b, 12); break;
        case 'n': jb_putc(&b, 10); break;
        case 'r': jb_putc(&b, 13); break;
        case 't': jb_putc(&b, 9); break;
        case 'v': jb_putc(&b, 11); break;
        case 'x':
        case 'u':
        case 'U': {
            size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (size_t k = 1; k <= digits; k++) {
                int h = i + k < en ? digit_value(e[i + k]) : 99;
                if (h > 15) return lfail(L, at, "truncated \\%c%s escape", c, c == 'x' ? "XX" : c == 'u' ? "XXXX" : "XXXXXXXX");
                cp = cp * 16 + (uint32_t)h;
            }
            if (cp > 0x10FFFF) return lfail(L, at, "illegal Unicode character");
            i += digits;
            char u[4];
            jb_put(&b, u, (size_t)loom_utf8_encode(cp, u));
            break;
        }
        case 'N': return lfail(L, at, "\\N{...} escapes are not supported");
        default:
            if (c >= '0' && c <= '7') {
                uint32_t v = 0;
                size_t k = 0;
                while (k < 3 && i + k < en && e[i + k] >= '0' && e[i + k] <= '7') v = v * 8 + (uint32_t)(e[i + k++] - '0');
                i += k - 1;
                char u[4];
                jb_put(&b, u, (size_t)loom_utf8_encode(v, u));
            } else {
                jb_putc(&b, '\\');
                jb_putc(&b, c);
            }
        }
    }
    if (b.fail || esc.fail) return lfail(L, at, "out of memory");
    char *v = ja_strndup(L->a, b.p ? b.p : "", b.n);
    if (!v) return lfail(L, at, "out of memory");
    t->s = v;
    t->n = (uint32_t)b.n;
    return true;
}

static const struct {
    const char *s;
    uint8_t op;
} OPS[] = {
    {"**", P_POW}, {"//", P_FLOORDIV}, {"==", P_EQ}, {"!=", P_NE}, {"<=", P_LE}, {">=", P_GE}, {"+", P_ADD},
    {"-", P_SUB},  {"/", P_DIV},       {"*", P_MUL}, {"%", P_MOD}, {"~", P_TILDE}, {"[", P_LBRACKET},
    {"]", P_RBRACKET}, {"(", P_LPAREN}, {")", P_RPAREN}, {"{", P_LBRACE}, {"}", P_RBRACE}, {".", P_DOT},
    {":", P_COLON}, {",", P_COMMA},    {"|", P_PIPE}, {"=", P_ASSIGN}, {"<", P_LT}, {">", P_GT}, {";", P_SEMICOLON},
};

/* Tokens inside {{ }} or {% %} up to the end delimiter. */
static bool lex_tag(lexer *L, bool block) {
    const char *s = L->s;
    size_t n = L->n;
    char stack[256];
    size_t depth = 0;
    for (;;) {
        size_t p = L->pos;
        if (p >= n) return emit(L, T_EOF, p) != NULL || lfail(L, p, "out of memory");
        if (depth == 0) {
            size_t e = block ? block_end(s, n, p, '%') : var_end(s, n, p);
            if (e) {
                if (!emit(L, block ? T_BLOCK_END : T_VAR_END, p)) return lfail(L, p, "out of memory");
                L->pos = e;
                L->line_starting = s[e - 1] == '\n';
                return true;
            }
        }
        size_t k = skip_space(s, n, p);
        if (k > p) {
            L->pos = k;
            continue;
        }
        char c = s[p];
        size_t e;
        if ((e = match_float(s, n, p)) > 0) {
            jtok *t = emit(L, T_FLOAT, p);
            if (!t) return lfail(L, p, "out of memory");
            char num[128];
            size_t m = 0;
            for (size_t i = p; i < e && m + 1 < sizeof num; i++)
                if (s[i] != '_') num[m++] = s[i];
            num[m] = 0;
            t->f = strtod(num, NULL);
            L->pos = e;
            continue;
        }
        int64_t iv;
        bool ovf;
        if (is_digit(c) && match_int(s, n, p, &e, &iv, &ovf)) {
            if (ovf) return lfail(L, p, "integer literal out of the 64-bit range");
            jtok *t = emit(L, T_INT, p);
            if (!t) return lfail(L, p, "out of memory");
            t->i = iv;
            L->pos = e;
            continue;
        }
        if (is_alpha(c) || ((unsigned char)c >= 0x80 && ju_ident(s, n, p, true))) {
            size_t q = p;
            while (q < n) {
                if (is_alpha(s[q]) || is_digit(s[q])) {
                    q++;
                } else if ((unsigned char)s[q] >= 0x80 && ju_ident(s, n, q, false)) {
                    size_t i = q;
                    u8_next(s, n, &i);
                    q = i;
                } else {
                    break;
                }
            }
            if (!emit_text(L, T_NAME, p, s + p, q - p)) return false;
            L->pos = q;
            continue;
        }
        if (c == '\'' || c == '"') {
            size_t q = p + 1;
            while (q < n && s[q] != c) q += s[q] == '\\' ? 2 : 1;
            if (q < n) {
                jtok *t = emit(L, T_STRING, p);
                if (!t) return lfail(L, p, "out of memory");
                if (!decode_string(L, p, s + p + 1, q - p - 1, t)) return false;
                L->pos = q + 1;
                continue;
            }
        }
        size_t i;
        for (i = 0; i < sizeof OPS / sizeof OPS[0]; i++) {
            size_t m = strlen(OPS[i].s);
            if (p + m <= n && !memcmp(s + p, OPS[i].s, m)) break;
        }
        if (i == sizeof OPS / sizeof OPS[0]) {
            if ((unsigned char)c < 0x20 || c == 0x7f) return lfail(L, p, "unexpected char '\\x%02x' at %zu", (unsigned)c, p);
            return lfail(L, p, "unexpected char '%c' at %zu", c, p);
        }
        uint8_t op = OPS[i].op;
        if (op == P_LBRACE || op == P_LPAREN || op == P_LBRACKET) {
            if (depth == sizeof stack) return lfail(L, p, "the template nests too deeply (more than 256 brackets)");
            stack[depth++] = op == P_LBRACE ? '}' : op == P_LPAREN ? ')' : ']';
        } else if (op == P_RBRACE || op == P_RPAREN || op == P_RBRACKET) {
            if (depth == 0) return lfail(L, p, "unexpected '%c'", c);
            if (stack[--depth] != c) return lfail(L, p, "unexpected '%c', expected '%c'", c, stack[depth]);
        }
        jtok *t = emit(L, T_OP, p);
        if (!t) return lfail(L, p, "out of memory");
        t->op = op;
        L->pos = p + strlen(OPS[i].s);
    }
}

/* {%[-+]?\s*NAME\s*(?:+%}|-%}\s*|%}\n?) at p (NAME = "raw"/"endraw");
 * returns its end (0: no match) and the sign. */
static size_t raw_tag(const char *s, size_t n, size_t p, const char *name, char *sign, bool end_rules) {
    if (p + 1 >= n || s[p] != '{' || s[p + 1] != '%') return 0;
    size_t q = p + 2;
    *sign = 0;
    if (q < n && (s[q] == '-' || s[q] == '+')) *sign = s[q++];
    q = skip_space(s, n, q);
    size_t m = strlen(name);
    if (q + m > n || memcmp(s + q, name, m)) return 0;
    q = skip_space(s, n, q + m);
    if (end_rules) return block_end(s, n, q, '%');
    if (q + 2 < n && s[q] == '-' && s[q + 1] == '%' && s[q + 2] == '}') return skip_space(s, n, q + 3);
    if (q + 1 < n && s[q] == '%' && s[q + 1] == '}') return q + 2;
    return 0;
}

bool jlex(jarena *a, const char *src, size_t len, jtok **out, size_t *nout, char *err, size_t errn) {
    /* newlines normalised; one trailing newline dropped (keep_trailing_newline off) */
    char *s = ja_alloc(a, len + 1);
    if (!s) {
        snprintf(err, errn, "out of memory");
        return false;
    }
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = 0;
    lexer L = {.a = a, .s = s, .n = n, .line = 1, .col = 1, .err = err, .errn = errn, .line_starting = true};
    while (L.pos < n) {
        size_t p = L.pos, q = p;
        int kind = -1;
        char sign = 0;
        size_t raw_end = 0;
        for (; q + 1 < n; q++) {
            if (s[q] != '{') continue;
            char c = s[q + 1];
            if (c == '%' && (raw_end = raw_tag(s, n, q, "raw", &sign, false)) > 0) {
                kind = 'r';
                break;
            }
            if (c == '{' || c == '%' || c == '#') {
                kind = c;
                sign = q + 2 < n && (s[q + 2] == '-' || s[q + 2] == '+') ? s[q + 2] : 0;
                break;
            }
        }
        if (kind < 0) {
            if (!emit_text(&L, T_DATA, p, s + p, n - p)) return false;
            L.pos = n;
            break;
        }
        if (!emit_data(&L, p, q, sign, kind == '{')) return false;
        L.line_starting = false;
        if (kind == 'r') {
            L.line_starting = s[raw_end - 1] == '\n';
            size_t r = raw_end, e = 0;
            char esign = 0;
            for (; r < n; r++)
                if (s[r] == '{' && (e = raw_tag(s, n, r, "endraw", &esign, true)) > 0) break;
            if (r >= n && raw_end >= n) break; /* jinja2 stops quietly when nothing follows */
            if (r >= n) return lfail(&L, q, "Missing end of raw directive");
            if (!emit_data(&L, raw_end, r, esign, false)) return false;
            L.line_starting = s[e - 1] == '\n';
            L.pos = e;
        } else if (kind == '#') {
            size_t r = q + 2 + (sign ? 1 : 0), e = 0;
            for (; r + 1 < n; r++) {
                if ((s[r] == '+' || s[r] == '-') && r + 2 < n && s[r + 1] == '#' && s[r + 2] == '}') {
                    e = s[r] == '+' ? r + 3 : skip_space(s, n, r + 3);
                    break;
                }
                if (s[r] == '#' && s[r + 1] == '}') {
                    e = r + 2 < n && s[r + 2] == '\n' ? r + 3 : r + 2;
                    break;
                }
            }
            if (!e && q + 2 + (sign ? 1 : 0) >= n) break; /* nothing after "{#": jinja2 stops quietly */
            if (!e) return lfail(&L, q, "Missing end of comment tag");
            L.line_starting = s[e - 1] == '\n';
            L.pos = e;
        } else {
            if (!emit(&L, kind == '{' ? T_VAR_BEGIN : T_BLOCK_BEGIN, q)) return lfail(&L, q, "out of memory");
            L.pos = q + 2 + (sign ? 1 : 0);
            if (!lex_tag(&L, kind == '%')) return false;
            if (L.t[L.nt - 1].kind == T_EOF) {
                *out = L.t;
                *nout = L.nt;
                return true;
            }
        }
    }
    if (!emit(&L, T_EOF, n)) return lfail(&L, n, "out of memory");
    *out = L.t;
    *nout = L.nt;
    return true;
}
