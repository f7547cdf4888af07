/*
 * runtime/text/jinja_str.c — Python's str on UTF-8: code point indexing,
 * whitespace, strip / split / splitlines / replace / case mapping, the
 * methods templates call, and markupsafe's escape.
 *
 * Case mapping uses the C library's simple Unicode mapping (C.UTF-8), so
 * the few characters whose Python mapping changes length ("ß".upper() ==
 * "SS") map to themselves.
 */
#define _GNU_SOURCE
#include <locale.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "runtime/text/jinja_internal.h"

uint32_t u8_next(const char *s, size_t n, size_t *i) {
    uint32_t cp;
    int k = loom_utf8_decode((const uint8_t *)s + *i, n - *i, &cp);
    if (k <= 0) {
        *i += k < 0 ? (size_t)-k : n - *i;
        return 0xFFFD;
    }
    *i += (size_t)k;
    return cp;
}

size_t u8_len(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

size_t u8_offset(const char *s, size_t n, size_t idx) {
    size_t i = 0;
    while (idx > 0 && i < n) {
        u8_next(s, n, &i);
        idx--;
    }
    return i;
}

bool py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static bool py_linebreak(uint32_t c) {
    return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;
static void utf8_init(void) { utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

static uint32_t map_case(uint32_t c, bool upper) {
    if (c < 0x80) return upper ? (c >= 'a' && c <= 'z' ? c - 32 : c) : (c >= 'A' && c <= 'Z' ? c + 32 : c);
    pthread_once(&utf8_once, utf8_init);
    if (!utf8_locale) return c;
    return (uint32_t)(upper ? towupper_l((wint_t)c, utf8_locale) : towlower_l((wint_t)c, utf8_locale));
}

bool ju_ident(const char *s, size_t n, size_t i, bool start) {
    uint32_t c = u8_next(s, n, &i);
    if (c < 0x80) return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z') || (!start && c >= '0' && c <= '9');
    pthread_once(&utf8_once, utf8_init);
    if (!utf8_locale) return !py_isspace(c);
    return start ? iswalpha_l((wint_t)c, utf8_locale) : iswalnum_l((wint_t)c, utf8_locale) || (c >= 0x300 && c <= 0x36F);
}

static bool is_cased(uint32_t c) { return map_case(c, true) != c || map_case(c, false) != c; }

static bool u8_put(jbuf *b, uint32_t c) {
    char u[4];
    jb_put(b, u, (size_t)loom_utf8_encode(c, u));
    return !b->fail;
}

static jv substr(jv s, size_t from, size_t to) { return jv_strv(s.u.s + from, (uint32_t)(to - from), s.fl & JF_MARKUP); }

static bool in_set(uint32_t c, jv chars) {
    if (chars.t != JV_STR) return py_isspace(c);
    for (size_t i = 0; i < chars.n;)
        if (u8_next(chars.u.s, chars.n, &i) == c) return true;
    return false;
}

bool jstr_strip(jx *x, jv s, jv chars, bool left, bool right, jv *out) {
    (void)x;
    size_t from = 0, to = s.n;
    if (left) {
        while (from < to) {
            size_t i = from;
            if (!in_set(u8_next(s.u.s, to, &i), chars)) break;
            from = i;
        }
    }
    if (right) {
        while (to > from) {
            size_t st = to - 1;
            while (st > from && ((unsigned char)s.u.s[st] & 0xC0) == 0x80) st--;
            size_t i = st;
            if (!in_set(u8_next(s.u.s, to, &i), chars)) break;
            to = st;
        }
    }
    *out = substr(s, from, to);
    return true;
}

bool jstr_splitlines(jx *x, jv s, bool keepends, jlist **out) {
    jlist *l = jl_new(x, 0);
    if (!l) return false;
    size_t start = 0, i = 0;
    while (i < s.n) {
        size_t st = i;
        uint32_t c = u8_next(s.u.s, s.n, &i);
        if (!py_linebreak(c)) continue;
        if (c == '\r' && i < s.n && s.u.s[i] == '\n') i++;
        if (!jl_push(x, l, substr(s, start, keepends ? i : st))) return false;
        start = i;
    }
    if (start < s.n && !jl_push(x, l, substr(s, start, s.n))) return false;
    *out = l;
    return true;
}

bool jstr_case(jx *x, jv s, int mode, jv *out) {
    jbuf b = {.a = x->a};
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i), m;
        switch (mode) {
        case 0: m = map_case(c, false); break;
        case 1: m = map_case(c, true); break;
        case 2: /* title */
            m = prev_cased ? map_case(c, false) : map_case(c, true);
            prev_cased = is_cased(c);
            break;
        case 3: m = first ? map_case(c, true) : map_case(c, false); break; /* capitalize */
        default: m = map_case(c, true) != c ? map_case(c, true) : map_case(c, false); break; /* swapcase */
        }
        first = false;
        if (!u8_put(&b, m)) return false;
    }
    *out = jb_str(&b, s.fl & JF_MARKUP);
    return true;
}

/* Byte offset of needle in hay[from..), or -1; counts the work. */
static int64_t find_bytes(jx *x, const jnode *at, jv hay, size_t from, jv needle, bool *ok) {
    *ok = jx_step(x, at, hay.n / 1024);
    if (!*ok || needle.n > hay.n - (from < hay.n ? from : hay.n)) return needle.n == 0 && from <= hay.n ? (int64_t)from : -1;
    if (needle.n == 0) return (int64_t)from;
    const char *p = memmem(hay.u.s + from, hay.n - from, needle.u.s, needle.n);
    return p ? p - hay.u.s : -1;
}

static int64_t rfind_bytes(jx *x, const jnode *at, jv hay, jv needle, bool *ok) {
    *ok = jx_step(x, at, hay.n / 1024);
    if (!*ok || needle.n > hay.n) return -1;
    for (size_t i = hay.n - needle.n + 1; i-- > 0;)
        if (!memcmp(hay.u.s + i, needle.u.s, needle.n)) return (int64_t)i;
    return -1;
}

bool jstr_contains(jx *x, const jnode *at, jv hay, jv needle, bool *out) {
    bool ok;
    *out = find_bytes(x, at, hay, 0, needle, &ok) >= 0;
    return ok;
}

bool jstr_replace(jx *x, const jnode *at, jv s, jv old, jv new_, int64_t count, jv *out) {
    jbuf b = {.a = x->a};
    if (old.n == 0) { /* new before every character and at the end */
        int64_t k = 0;
        for (size_t i = 0; i < s.n;) {
            if (count < 0 || k < count) jb_put(&b, new_.u.s, new_.n), k++;
            size_t st = i;
            u8_next(s.u.s, s.n, &i);
            jb_put(&b, s.u.s + st, i - st);
        }
        if (count < 0 || k < count) jb_put(&b, new_.u.s, new_.n);
    } else {
        size_t pos = 0;
        int64_t k = 0;
        bool ok;
        while (count < 0 || k < count) {
            int64_t f = find_bytes(x, at, s, pos, old, &ok);
            if (!ok) return false;
            if (f < 0) break;
            jb_put(&b, s.u.s + pos, (size_t)f - pos);
            jb_put(&b, new_.u.s, new_.n);
            pos = (size_t)f + old.n;
            k++;
        }
        jb_put(&b, s.u.s + pos, s.n - pos);
    }
    if (b.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&b, 0);
    return true;
}

jv jstr_escape(jx *x, jv s) {
    jbuf b = {.a = x->a};
    for (size_t i = 0; i < s.n; i++) {
        switch (s.u.s[i]) {
        case '&': jb_puts(&b, "&amp;"); break;
        case '<': jb_puts(&b, "&lt;"); break;
        case '>': jb_puts(&b, "&gt;"); break;
        case '\'': jb_puts(&b, "&#39;"); break;
        case '"': jb_puts(&b, "&#34;"); break;
        default: jb_putc(&b, s.u.s[i]);
        }
    }
    return jb_str(&b, JF_MARKUP);
}

/* ---- split ---- */

static bool split_ws(jx *x, jv s, int64_t maxsplit, bool right, jlist *l) {
    if (!right) {
        size_t i = 0;
        int64_t k = 0;
        while (i < s.n) {
            size_t j = i;
            while (j < s.n) { /* skip whitespace */
                size_t t = j;
                if (!py_isspace(u8_next(s.u.s, s.n, &t))) break;
                j = t;
            }
            if (j >= s.n) break;
            if (maxsplit >= 0 && k >= maxsplit) {
                size_t e = s.n;
                return jl_push(x, l, substr(s, j, e));
            }
            size_t e = j;
            while (e < s.n) {
                size_t t = e;
                if (py_isspace(u8_next(s.u.s, s.n, &t))) break;
                e = t;
            }
            if (!jl_push(x, l, substr(s, j, e))) return false;
            k++;
            i = e;
        }
        return true;
    }
    /* rsplit: collect from the right, then reverse */
    jlist *tmp = jl_new(x, 0);
    if (!tmp) return false;
    size_t end = s.n;
    int64_t k = 0;
    for (;;) {
        while (end > 0) {
            size_t st = end - 1;
            while (st > 0 && ((unsigned char)s.u.s[st] & 0xC0) == 0x80) st--;
            size_t t = st;
            if (!py_isspace(u8_next(s.u.s, s.n, &t))) break;
            end = st;
        }
        if (end == 0) break;
        if (maxsplit >= 0 && k >= maxsplit) {
            if (!jl_push(x, tmp, substr(s, 0, end))) return false;
            break;
        }
        size_t st = end;
        while (st > 0) {
            size_t p = st - 1;
            while (p > 0 && ((unsigned char)s.u.s[p] & 0xC0) == 0x80) p--;
            size_t t = p;
            if (py_isspace(u8_next(s.u.s, s.n, &t))) break;
            st = p;
        }
        if (!jl_push(x, tmp, substr(s, st, end))) return false;
        k++;
        end = st;
    }
    for (uint32_t i = tmp->n; i-- > 0;)
        if (!jl_push(x, l, tmp->v[i])) return false;
    return true;
}

static bool split_sep(jx *x, const jnode *at, jv s, jv sep, int64_t maxsplit, bool right, jlist *l) {
    bool ok;
    if (!right) {
        size_t pos = 0;
        int64_t k = 0;
        while (maxsplit < 0 || k < maxsplit) {
            int64_t f = find_bytes(x, at, s, pos, sep, &ok);
            if (!ok) return false;
            if (f < 0) break;
            if (!jl_push(x, l, substr(s, pos, (size_t)f))) return jx_alloc_failed(x, at);
            pos = (size_t)f + sep.n;
            k++;
        }
        return jl_push(x, l, substr(s, pos, s.n)) || jx_alloc_failed(x, at);
    }
    jlist *tmp = jl_new(x, 0);
    if (!tmp) return jx_alloc_failed(x, at);
    size_t end = s.n;
    int64_t k = 0;
    while (maxsplit < 0 || k < maxsplit) {
        jv head = substr(s, 0, end);
        int64_t f = rfind_bytes(x, at, head, sep, &ok);
        if (!ok) return false;
        if (f < 0) break;
        if (!jl_push(x, tmp, substr(s, (size_t)f + sep.n, end))) return jx_alloc_failed(x, at);
        end = (size_t)f;
        k++;
    }
    if (!jl_push(x, tmp, substr(s, 0, end))) return jx_alloc_failed(x, at);
    for (uint32_t i = tmp->n; i-- > 0;)
        if (!jl_push(x, l, tmp->v[i])) return jx_alloc_failed(x, at);
    return true;
}

/* ---- the methods ---- */

static bool need_str(jx *x, const jnode *at, jv v, const char *what) {
    if (v.t == JV_STR) return true;
    if (v.t == JV_UNDEF && v.u.s) return jv_undef_fail(x, at, v);
    return jx_fail(x, at, "%s must be str, not %s", what, jv_type_name(v));
}

static bool need_int(jx *x, const jnode *at, jv v, int64_t dflt, int64_t *out) {
    if (v.t == JV_UNDEF && !v.u.s) *out = dflt;
    else if (v.t == JV_NONE) *out = dflt;
    else if (v.t == JV_INT) *out = v.u.i;
    else if (v.t == JV_BOOL) *out = v.u.b;
    else return jx_fail(x, at, "'%s' object cannot be interpreted as an integer", jv_type_name(v));
    return true;
}

#define MBIND(name, req, ...)                                                                              \
    do {                                                                                                  \
        static const char *const ps_[] = {__VA_ARGS__};                                                   \
        if (!jargs_bind(x, at, name, a, ps_, sizeof ps_ / sizeof ps_[0], req, arg)) return false;         \
    } while (0)

/* Python slice bounds [start, end) in code points → byte offsets */
static void bounds(jv s, jv start, jv end, size_t *from, size_t *to) {
    int64_t len = (int64_t)u8_len(s.u.s, s.n), a = 0, b = len;
    if (start.t == JV_INT) a = start.u.i < 0 ? start.u.i + len : start.u.i;
    if (end.t == JV_INT) b = end.u.i < 0 ? end.u.i + len : end.u.i;
    if (a < 0) a = 0;
    if (b > len) b = len;
    if (a > len) a = len;
    if (b < a) b = a;
    *from = u8_offset(s.u.s, s.n, (size_t)a);
    *to = u8_offset(s.u.s, s.n, (size_t)b);
}

static bool affix(jx *x, const jnode *at, jv s, jv what, jv start, jv end, bool suffix, bool *out) {
    size_t from, to;
    bounds(s, start, end, &from, &to);
    jv part = substr(s, from, to);
    jlist one = {.n = 1, .cap = 1, .v = &what};
    jlist *opts = &one;
    if (what.t == JV_LIST && (what.fl & JF_TUPLE)) opts = what.u.l;
    else if (!need_str(x, at, what, suffix ? "endswith first arg" : "startswith first arg")) return false;
    *out = false;
    for (uint32_t i = 0; i < opts->n; i++) {
        jv o = opts->v[i];
        if (!need_str(x, at, o, "tuple item")) return false;
        if (o.n <= part.n && !memcmp(suffix ? part.u.s + part.n - o.n : part.u.s, o.u.s, o.n)) *out = true;
    }
    return true;
}

static bool pad(jx *x, jv s, int64_t width, jv fill, int how, jv *out) {
    int64_t len = (int64_t)u8_len(s.u.s, s.n);
    if (width <= len) {
        *out = s;
        return true;
    }
    int64_t marg = width - len, left = how == 0 ? marg / 2 + (marg & width & 1) : how == 1 ? 0 : marg;
    const char *f = fill.t == JV_STR ? fill.u.s : " ";
    size_t fn = fill.t == JV_STR ? fill.n : 1;
    jbuf b = {.a = x->a};
    for (int64_t i = 0; i < left && !b.fail; i++) jb_put(&b, f, fn);
    jb_put(&b, s.u.s, s.n);
    for (int64_t i = left; i < marg && !b.fail; i++) jb_put(&b, f, fn);
    *out = jb_str(&b, s.fl & JF_MARKUP);
    return !b.fail;
}

static bool classify(jv s, int what) {
    if (s.n == 0) return false;
    bool any_cased = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        pthread_once(&utf8_once, utf8_init);
        bool alpha = c < 0x80 ? ((c | 32) >= 'a' && (c | 32) <= 'z') : utf8_locale && iswalpha_l((wint_t)c, utf8_locale);
        bool digit = c < 0x80 ? (c >= '0' && c <= '9') : utf8_locale && iswdigit_l((wint_t)c, utf8_locale);
        switch (what) {
        case 0: if (!alpha) return false; break;
        case 1: if (!digit) return false; break;
        case 2: if (!alpha && !digit) return false; break;
        case 3: if (!py_isspace(c)) return false; break;
        case 4: if (map_case(c, false) != c) return false; any_cased |= map_case(c, true) != c; break;
        case 5: if (map_case(c, true) != c) return false; any_cased |= map_case(c, false) != c; break;
        }
    }
    return what < 4 || any_cased;
}

bool jstr_method(jx *x, const jnode *at, jv s, const char *m, const jargs *a, jv *out, bool *found) {
    jv arg[4] = {jv_undef(), jv_undef(), jv_undef(), jv_undef()};
    *found = true;
    int64_t i1;
    if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
        MBIND(m, 0, "chars");
        if (GIVEN(arg[0]) && arg[0].t != JV_NONE && !need_str(x, at, arg[0], "strip arg")) return false;
        return jstr_strip(x, s, arg[0], m[0] != 'r', m[0] != 'l', out);
    }
    if (!strcmp(m, "split") || !strcmp(m, "rsplit")) {
        MBIND(m, 0, "sep", "maxsplit");
        if (!need_int(x, at, arg[1], -1, &i1)) return false;
        jlist *l = jl_new(x, 0);
        if (!l) return jx_alloc_failed(x, at);
        if (!GIVEN(arg[0]) || arg[0].t == JV_NONE) {
            if (!split_ws(x, s, i1, m[0] == 'r', l)) return jx_alloc_failed(x, at);
        } else {
            if (!need_str(x, at, arg[0], "sep")) return false;
            if (arg[0].n == 0) return jx_fail(x, at, "empty separator");
            if (!split_sep(x, at, s, arg[0], i1, m[0] == 'r', l)) return false;
        }
        *out = jv_list(l, 0);
        return true;
    }
    if (!strcmp(m, "splitlines")) {
        MBIND(m, 0, "keepends");
        jlist *l;
        if (!jstr_splitlines(x, s, jv_truthy(arg[0]), &l)) return jx_alloc_failed(x, at);
        *out = jv_list(l, 0);
        return true;
    }
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        MBIND(m, 1, "prefix", "start", "end");
        bool r;
        if (!affix(x, at, s, arg[0], arg[1], arg[2], m[0] == 'e', &r)) return false;
        *out = jv_bool(r);
        return true;
    }
    if (!strcmp(m, "replace")) {
        MBIND(m, 2, "old", "new", "count");
        if (!need_str(x, at, arg[0], "replace() argument 1") || !need_str(x, at, arg[1], "replace() argument 2") ||
            !need_int(x, at, arg[2], -1, &i1))
            return false;
        if (!jstr_replace(x, at, s, arg[0], arg[1], i1, out)) return false;
        out->fl |= s.fl & JF_MARKUP;
        return true;
    }
    int cm = !strcmp(m, "lower") ? 0 : !strcmp(m, "upper") ? 1 : !strcmp(m, "title") ? 2
             : !strcmp(m, "capitalize") ? 3 : !strcmp(m, "swapcase") ? 4 : !strcmp(m, "casefold") ? 0 : -1;
    if (cm >= 0) {
        if (!jargs_bind(x, at, m, a, NULL, 0, 0, NULL)) return false;
        return jstr_case(x, s, cm, out) || jx_alloc_failed(x, at);
    }
    if (!strcmp(m, "find") || !strcmp(m, "rfind") || !strcmp(m, "index") || !strcmp(m, "rindex") ||
        !strcmp(m, "count")) {
        MBIND(m, 1, "sub", "start", "end");
        if (!need_str(x, at, arg[0], "must be str")) return false;
        size_t from, to;
        bounds(s, arg[1], arg[2], &from, &to);
        jv part = substr(s, from, to);
        bool ok;
        if (m[0] == 'c') {
            int64_t k = 0;
            if (arg[0].n == 0) k = (int64_t)u8_len(part.u.s, part.n) + 1;
            else
                for (size_t p = 0;;) {
                    int64_t f = find_bytes(x, at, part, p, arg[0], &ok);
                    if (!ok) return false;
                    if (f < 0) break;
                    k++;
                    p = (size_t)f + arg[0].n;
                }
            *out = jv_int(k);
            return true;
        }
        int64_t f = m[0] == 'r' ? rfind_bytes(x, at, part, arg[0], &ok) : find_bytes(x, at, part, 0, arg[0], &ok);
        if (!ok) return false;
        if (f < 0 && strstr(m, "index")) return jx_fail(x, at, "substring not found");
        *out = jv_int(f < 0 ? -1 : (int64_t)u8_len(s.u.s, from + (size_t)f));
        return true;
    }
    if (!strcmp(m, "join")) {
        MBIND(m, 1, "iterable");
        jlist *l;
        if (!jv_iter(x, at, arg[0], &l)) return false;
        jbuf b = {.a = x->a};
        for (uint32_t i = 0; i < l->n; i++) {
            if (l->v[i].t != JV_STR)
                return jx_fail(x, at, "sequence item %u: expected str instance, %s found", i, jv_type_name(l->v[i]));
            if (i) jb_put(&b, s.u.s, s.n);
            jb_put(&b, l->v[i].u.s, l->v[i].n);
        }
        if (b.fail) return jx_alloc_failed(x, at);
        *out = jb_str(&b, s.fl & JF_MARKUP);
        return true;
    }
    if (!strcmp(m, "center") || !strcmp(m, "ljust") || !strcmp(m, "rjust")) {
        MBIND(m, 1, "width", "fillchar");
        if (!need_int(x, at, arg[0], 0, &i1)) return false;
        if (GIVEN(arg[1]) && (arg[1].t != JV_STR || u8_len(arg[1].u.s, arg[1].n) != 1))
            return jx_fail(x, at, "The fill character must be exactly one character long");
        if (!jx_step(x, at, (uint64_t)(i1 > 0 ? i1 : 0) / 1024)) return false;
        return pad(x, s, i1, arg[1], m[0] == 'c' ? 0 : m[0] == 'l' ? 1 : 2, out) || jx_alloc_failed(x, at);
    }
    if (!strcmp(m, "zfill")) {
        MBIND(m, 1, "width");
        if (!need_int(x, at, arg[0], 0, &i1)) return false;
        int64_t len = (int64_t)u8_len(s.u.s, s.n);
        jbuf b = {.a = x->a};
        size_t sign = s.n && (s.u.s[0] == '+' || s.u.s[0] == '-');
        jb_put(&b, s.u.s, sign);
        if (!jx_step(x, at, (uint64_t)(i1 > len ? i1 - len : 0) / 1024)) return false;
        for (int64_t i = len; i < i1 && !b.fail; i++) jb_putc(&b, '0');
        jb_put(&b, s.u.s + sign, s.n - sign);
        *out = jb_str(&b, 0);
        return !b.fail || jx_alloc_failed(x, at);
    }
    if (!strcmp(m, "removeprefix") || !strcmp(m, "removesuffix")) {
        MBIND(m, 1, "affix");
        if (!need_str(x, at, arg[0], m)) return false;
        jv p = arg[0];
        bool pre = m[6] == 'p';
        if (p.n <= s.n && !memcmp(pre ? s.u.s : s.u.s + s.n - p.n, p.u.s, p.n))
            *out = pre ? substr(s, p.n, s.n) : substr(s, 0, s.n - p.n);
        else
            *out = s;
        return true;
    }
    if (!strcmp(m, "partition") || !strcmp(m, "rpartition")) {
        MBIND(m, 1, "sep");
        if (!need_str(x, at, arg[0], "sep")) return false;
        if (arg[0].n == 0) return jx_fail(x, at, "empty separator");
        bool ok;
        int64_t f = m[0] == 'r' ? rfind_bytes(x, at, s, arg[0], &ok) : find_bytes(x, at, s, 0, arg[0], &ok);
        if (!ok) return false;
        jlist *l = jl_new(x, 3);
        if (!l) return jx_alloc_failed(x, at);
        jv e = substr(s, 0, 0);
        if (f < 0) {
            l->v[0] = m[0] == 'r' ? e : s, l->v[1] = e, l->v[2] = m[0] == 'r' ? s : e;
        } else {
            l->v[0] = substr(s, 0, (size_t)f);
            l->v[1] = arg[0];
            l->v[2] = substr(s, (size_t)f + arg[0].n, s.n);
        }
        l->n = 3;
        *out = jv_list(l, JF_TUPLE);
        return true;
    }
    static const char *const cls[] = {"isalpha", "isdigit", "isalnum", "isspace", "islower", "isupper"};
    for (int i = 0; i < 6; i++) {
        if (strcmp(m, cls[i]) && !(i == 1 && (!strcmp(m, "isdecimal") || !strcmp(m, "isnumeric")))) continue;
        if (!jargs_bind(x, at, m, a, NULL, 0, 0, NULL)) return false;
        *out = jv_bool(classify(s, i));
        return true;
    }
    if (!strcmp(m, "format")) return jstr_format(x, at, s, a, out);
    *found = false;
    return true;
}
