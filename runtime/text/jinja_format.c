/*
 * runtime/text/jinja_format.c — Python's string formatting: "fmt" % args
 * (and the |format filter), str.format (as jinja2's sandbox runs it:
 * attribute and item lookups go through the sandbox), and strftime_now.
 *
 * Format specs: fill, align, sign, "#", "0", width, "," and "_", precision
 * and the types s d i x X o b c e E f F g G % (str, int, float); others fail.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/text/jinja_internal.h"

/* c is one of the characters of set (never the terminating NUL) */
static bool in_set(const char *set, char c) { return c && strchr(set, c); }

typedef struct {
    uint32_t fill;
    char align, sign, type;
    bool alt, zero;
    char group;
    int64_t width, prec; /* -1: none */
} spec;

static bool parse_spec(jx *x, const jnode *at, const char *s, size_t n, spec *o) {
    *o = (spec){.fill = ' ', .width = -1, .prec = -1};
    size_t i = 0, j = 0;
    if (n) {
        uint32_t c = u8_next(s, n, &j);
        if (j < n && in_set("<>=^", s[j])) {
            o->fill = c;
            o->align = s[j];
            i = j + 1;
        } else if (in_set("<>=^", s[0])) {
            o->align = s[0];
            i = 1;
        }
    }
    if (i < n && in_set("+- ", s[i])) o->sign = s[i++];
    if (i < n && s[i] == '#') o->alt = true, i++;
    if (i < n && s[i] == '0') o->zero = true, i++;
    if (i < n && s[i] >= '0' && s[i] <= '9') {
        o->width = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && o->width < 100000) o->width = o->width * 10 + (s[i++] - '0');
    }
    if (i < n && (s[i] == ',' || s[i] == '_')) o->group = s[i++];
    if (i < n && s[i] == '.') {
        i++;
        o->prec = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9' && o->prec < 1000) o->prec = o->prec * 10 + (s[i++] - '0');
    }
    if (i < n) o->type = s[i++];
    if (i != n || o->width > 65536) return jx_fail(x, at, "Invalid format specifier '%.*s'", (int)n, s);
    return true;
}

static void put_padded(jbuf *b, const char *s, size_t n, const spec *sp, char dflt_align) {
    int64_t len = (int64_t)u8_len(s, n), w = sp->width;
    char al = sp->align ? sp->align : dflt_align;
    int64_t marg = w > len ? w - len : 0, left = al == '>' ? marg : al == '^' ? marg / 2 : 0;
    char f[4];
    size_t fn = (size_t)loom_utf8_encode(sp->fill, f);
    if (al == '=') { /* padding after the sign */
        size_t sg = n && in_set("+- ", s[0]) ? 1 : 0;
        jb_put(b, s, sg);
        for (int64_t i = 0; i < marg && !b->fail; i++) jb_put(b, f, fn);
        jb_put(b, s + sg, n - sg);
        return;
    }
    for (int64_t i = 0; i < left && !b->fail; i++) jb_put(b, f, fn);
    jb_put(b, s, n);
    for (int64_t i = left; i < marg && !b->fail; i++) jb_put(b, f, fn);
}

static void group_digits(char *num, char sep) {
    char *p = num + (num[0] == '-' || num[0] == '+' || num[0] == ' ');
    size_t nd = strspn(p, "0123456789");
    if (nd <= 3) return;
    char out[160];
    size_t o = 0;
    for (size_t i = 0; i < nd; i++) {
        if (i && (nd - i) % 3 == 0) out[o++] = sep;
        out[o++] = p[i];
    }
    snprintf(out + o, sizeof out - o, "%s", p + nd);
    strcpy(p, out);
}

/* format(v, spec) */
static bool format_value(jx *x, const jnode *at, jv v, const char *fs, size_t fn, jbuf *b) {
    spec sp;
    if (!parse_spec(x, at, fs, fn, &sp)) return false;
    char num[160];
    if (v.t == JV_STR || (!sp.type && !jv_is_num(v)) || (v.t == JV_BOOL && fn == 0)) { /* format(True, '') is 'True' */
        if (sp.type && sp.type != 's') return jx_fail(x, at, "Unknown format code '%c' for object of type 'str'", sp.type);
        jv s;
        if (!jv_stringify(x, at, v, &s)) return false;
        size_t n = s.n;
        if (sp.prec >= 0) n = u8_offset(s.u.s, s.n, (size_t)sp.prec);
        put_padded(b, s.u.s, n, &sp, '<');
        return true;
    }
    if (!jv_is_num(v)) return jx_fail(x, at, "unsupported format string passed to %s.__format__", jv_type_name(v));
    bool is_int = v.t != JV_FLOAT;
    int64_t iv = v.t == JV_INT ? v.u.i : v.t == JV_BOOL ? v.u.b : 0;
    double dv = v.t == JV_FLOAT ? v.u.f : (double)iv;
    char t = sp.type;
    if (is_int && (!t || t == 'd' || t == 'n')) {
        snprintf(num, sizeof num, sp.sign == '+' ? "%+lld" : sp.sign == ' ' ? "% lld" : "%lld", (long long)iv);
    } else if (is_int && in_set("xXobc", t)) {
        if (t == 'c') {
            if (iv < 0 || iv > 0x10FFFF) return jx_fail(x, at, "%%c arg not in range(0x110000)");
            char u[4];
            put_padded(b, u, (size_t)loom_utf8_encode((uint32_t)iv, u), &sp, '<');
            return true;
        } else {
            unsigned long long m = iv < 0 ? 0ull - (unsigned long long)iv : (unsigned long long)iv;
            char digits[80];
            int k = 0;
            int base = t == 'o' ? 8 : t == 'b' ? 2 : 16;
            do {
                digits[k++] = "0123456789abcdef"[m % (unsigned)base];
                m /= (unsigned)base;
            } while (m);
            size_t o = 0;
            if (iv < 0) num[o++] = '-';
            if (sp.alt) num[o++] = '0', num[o++] = t == 'b' ? 'b' : t == 'o' ? 'o' : t;
            while (k) num[o++] = t == 'X' ? (char)((digits[--k] >= 'a') ? digits[k] - 32 : digits[k]) : digits[--k];
            num[o] = 0;
        }
    } else if (!t || in_set("eEfFgG%", t)) {
        if (!t && sp.prec < 0) {
            py_float_repr(dv, num);
        } else {
            int prec = sp.prec >= 0 ? (int)sp.prec : 6;
            char f[16];
            char tt = t ? t : 'g';
            double val = tt == '%' ? dv * 100 : dv;
            snprintf(f, sizeof f, "%%%s%s.%d%c", sp.sign == '+' ? "+" : sp.sign == ' ' ? " " : "", sp.alt ? "#" : "",
                     prec, tt == '%' ? 'f' : tt);
            snprintf(num, sizeof num - 2, f, val);
            if (tt == '%') strcat(num, "%");
        }
    } else {
        return jx_fail(x, at, "Unknown format code '%c' for object of type '%s'", t, jv_type_name(v));
    }
    if (sp.group) group_digits(num, sp.group);
    if (sp.zero && !sp.align) sp.fill = '0', sp.align = '=';
    put_padded(b, num, strlen(num), &sp, '>');
    return true;
}

/* ---- str.format ---- */

bool jstr_format(jx *x, const jnode *at, jv fmt, const jargs *a, jv *out) {
    jbuf b = {.a = x->a};
    const char *s = fmt.u.s;
    size_t n = fmt.n;
    uint32_t auto_idx = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '}' ) {
            if (i + 1 < n && s[i + 1] == '}') {
                jb_putc(&b, '}');
                i += 2;
                continue;
            }
            return jx_fail(x, at, "Single '}' encountered in format string");
        }
        if (c != '{') {
            jb_putc(&b, c);
            i++;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '{') {
            jb_putc(&b, '{');
            i += 2;
            continue;
        }
        size_t j = i + 1;
        int depth = 1;
        while (j < n && depth) {
            if (s[j] == '{') depth++;
            else if (s[j] == '}') depth--;
            if (depth) j++;
        }
        if (j >= n) return jx_fail(x, at, "expected '}' before end of string");
        const char *f = s + i + 1;
        size_t fl = j - i - 1;
        i = j + 1;
        /* field_name [!conv] [:spec] */
        size_t name_end = 0;
        while (name_end < fl && f[name_end] != '!' && f[name_end] != ':') name_end++;
        size_t first_end = 0;
        while (first_end < name_end && f[first_end] != '.' && f[first_end] != '[') first_end++;
        jv v;
        if (first_end == 0) {
            if (auto_idx >= a->npos) return jx_fail(x, at, "Replacement index %u out of range for positional args tuple", auto_idx);
            v = a->pos[auto_idx++];
        } else if (f[0] >= '0' && f[0] <= '9') {
            uint32_t k = (uint32_t)strtoul(f, NULL, 10);
            if (k >= a->npos) return jx_fail(x, at, "Replacement index %u out of range for positional args tuple", k);
            v = a->pos[k];
        } else {
            uint32_t k;
            for (k = 0; k < a->nkw; k++)
                if (strlen(a->kw_names[k]) == first_end && !memcmp(a->kw_names[k], f, first_end)) break;
            if (k == a->nkw) return jx_fail(x, at, "KeyError: '%.*s'", (int)first_end, f);
            v = a->kw[k];
        }
        for (size_t p = first_end; p < name_end;) {
            if (f[p] == '.') {
                size_t q = ++p;
                while (q < name_end && f[q] != '.' && f[q] != '[') q++;
                if (!jv_getattr(x, at, v, f + p, q - p, &v)) return false;
                p = q;
            } else {
                size_t q = ++p;
                while (q < name_end && f[q] != ']') q++;
                jv key = jv_str(x, f + p, q - p);
                bool digits = q > p;
                for (size_t d = p; d < q; d++) digits &= f[d] >= '0' && f[d] <= '9';
                if (digits) key = jv_int(strtoll(f + p, NULL, 10));
                if (!jv_getitem(x, at, v, key, &v)) return false;
                p = q + 1;
            }
        }
        size_t k = name_end;
        char conv = 0;
        if (k < fl && f[k] == '!') {
            conv = k + 1 < fl ? f[k + 1] : 0;
            k += 2;
        }
        if (v.t == JV_UNDEF) return jv_undef_fail(x, at, v);
        if (conv == 'r' || conv == 'a') {
            jbuf r = {.a = x->a};
            if (!jv_repr(x, at, v, &r, 0)) return false;
            v = jb_str(&r, 0);
        } else if (conv == 's') {
            if (!jv_stringify(x, at, v, &v)) return false;
        } else if (conv) {
            return jx_fail(x, at, "Unknown conversion specifier %c", conv);
        }
        const char *fs = k < fl && f[k] == ':' ? f + k + 1 : "";
        size_t fsn = k < fl && f[k] == ':' ? fl - k - 1 : 0;
        if (!format_value(x, at, v, fs, fsn, &b)) return false;
    }
    if (b.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&b, 0);
    return true;
}

/* ---- "fmt" % args ---- */

bool jstr_percent(jx *x, const jnode *at, jv fmt, jv args, jv *out) {
    jbuf b = {.a = x->a};
    const char *s = fmt.u.s;
    size_t n = fmt.n;
    jlist one = {.n = 1, .cap = 1, .v = &args};
    jlist *list = args.t == JV_LIST && (args.fl & JF_TUPLE) ? args.u.l : &one;
    uint32_t next = 0;
    bool used_mapping = false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            jb_putc(&b, s[i]);
            continue;
        }
        if (++i >= n) return jx_fail(x, at, "incomplete format");
        jv v = jv_undef();
        bool have = false;
        if (s[i] == '(') {
            size_t q = i + 1;
            while (q < n && s[q] != ')') q++;
            if (q < n && args.t == JV_UNDEF) return jv_undef_fail(x, at, args);
            if (q >= n || args.t != JV_DICT) return jx_fail(x, at, "format requires a mapping");
            if (!jd_get_str(args.u.d, s + i + 1, q - i - 1, &v)) return jx_fail(x, at, "KeyError: '%.*s'", (int)(q - i - 1), s + i + 1);
            have = used_mapping = true;
            i = q + 1;
        }
        spec sp = {.fill = ' ', .width = -1, .prec = -1};
        size_t spec_start = i;
        for (; i < n && in_set("-+ #0", s[i]); i++) {
            if (s[i] == '-') sp.align = '<';
            else if (s[i] == '+' || s[i] == ' ') sp.sign = sp.sign == '+' ? '+' : s[i];
            else if (s[i] == '#') sp.alt = true;
            else sp.zero = true;
        }
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++)
            if (sp.width < 1000000) sp.width = (sp.width < 0 ? 0 : sp.width * 10) + (s[i] - '0');
        if (i < n && s[i] == '.') {
            sp.prec = 0;
            for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++)
                if (sp.prec < 1000000) sp.prec = sp.prec * 10 + (s[i] - '0');
        }
        if (sp.width > 65536 || sp.prec > 1000) return jx_fail(x, at, "format width too large");
        if (i >= n) return jx_fail(x, at, "incomplete format");
        char t = s[i];
        if (t == '%') {
            if (i > spec_start && !have) { /* "%5%": Python takes an argument, then refuses the '%' */
                if (next >= list->n) return jx_fail(x, at, "not enough arguments for format string");
                return jx_fail(x, at, "unsupported format character '%%' (0x25) at index %zu", i);
            }
            jb_putc(&b, '%');
            continue;
        }
        if (!have) {
            if (next >= list->n) return jx_fail(x, at, "not enough arguments for format string");
            v = list->v[next++];
        }
        if (!sp.align) sp.align = '>';
        if (sp.zero && sp.align == '>') sp.fill = '0', sp.align = '=';
        char fs[8] = {0};
        if (t == 's' || t == 'r' || t == 'a') {
            jv str;
            if (t == 's') {
                if (!jv_stringify(x, at, v, &str)) return false;
            } else {
                jbuf r = {.a = x->a};
                if (!jv_repr(x, at, v, &r, 0)) return false;
                str = jb_str(&r, 0);
            }
            size_t len = sp.prec >= 0 ? u8_offset(str.u.s, str.n, (size_t)sp.prec) : str.n;
            sp.fill = ' ';
            put_padded(&b, str.u.s, len, &sp, '>');
            continue;
        }
        if (t == 'c' && v.t == JV_STR) {
            if (u8_len(v.u.s, v.n) != 1) return jx_fail(x, at, "%%c requires an int or a unicode character, not a string of length %zu", u8_len(v.u.s, v.n));
            put_padded(&b, v.u.s, v.n, &sp, '>');
            continue;
        }
        if (t == 'c' && v.t == JV_INT && (v.u.i < 0 || v.u.i > 0x10FFFF)) return jx_fail(x, at, "%%c arg not in range(0x110000)");
        if (t == 'c' && (v.t == JV_INT || v.t == JV_BOOL)) {
            char u[4];
            int k = loom_utf8_encode((uint32_t)(v.t == JV_INT ? v.u.i : v.u.b), u);
            put_padded(&b, u, (size_t)k, &sp, '>');
            continue;
        }
        if (v.t == JV_UNDEF) return jv_undef_fail(x, at, v);
        if (!jv_is_num(v)) return jx_fail(x, at, "%%%c format: a real number is required, not %s", t, jv_type_name(v));
        if (in_set("diu", t)) {
            if (v.t == JV_FLOAT) v = jv_int((int64_t)v.u.f);
            fs[0] = 'd';
        } else if (in_set("xXoeEfFgGc", t)) {
            if (in_set("xXoc", t) && v.t == JV_FLOAT) return jx_fail(x, at, "%%%c format: an integer is required, not float", t);
            if (in_set("eEfFgG", t) && v.t != JV_FLOAT) v = jv_float(v.t == JV_INT ? (double)v.u.i : (double)v.u.b);
            fs[0] = t;
        } else {
            return jx_fail(x, at, "unsupported format character '%c'", t);
        }
        if (sp.prec < 0 && in_set("eEfFgG", t)) sp.prec = 6;
        char fsbuf[32];
        if (sp.prec >= 0) snprintf(fsbuf, sizeof fsbuf, ".%lld%c", (long long)sp.prec, fs[0]);
        else snprintf(fsbuf, sizeof fsbuf, "%c", fs[0]);
        char pre[8] = "";
        size_t pn = 0;
        if (sp.sign) pre[pn++] = sp.sign;
        if (sp.alt) pre[pn++] = '#';
        char full[40];
        snprintf(full, sizeof full, "%.*s%s", (int)pn, pre, fsbuf);
        jbuf tmpb = {.a = x->a};
        if (!format_value(x, at, v, full, strlen(full), &tmpb)) return false;
        put_padded(&b, tmpb.p ? tmpb.p : "", tmpb.n, &sp, '>');
    }
    /* Python checks leftovers unless the argument is a mapping-like object (has __getitem__, is no tuple or str) */
    bool mapping_like = args.t == JV_DICT || args.t == JV_UNDEF || (args.t == JV_LIST && !(args.fl & (JF_TUPLE | JF_GEN)));
    if (!used_mapping && !mapping_like && next < list->n)
        return jx_fail(x, at, "not all arguments converted during string formatting");
    if (b.fail) return jx_alloc_failed(x, at);
    *out = jb_str(&b, 0);
    return true;
}

/* ---- strftime_now ---- */

bool jx_strftime_now(jx *x, const jnode *at, jv fmt, jv *out) {
    if (fmt.t != JV_STR) return jx_fail(x, at, "strftime() argument 1 must be str, not %s", jv_type_name(fmt));
    struct tm tm = {0};
    if (x->lim.now) {
        int Y, M, D, h = 0, m = 0, s = 0;
        int k = sscanf(x->lim.now, "%d-%d-%d%*1[T ]%d:%d:%d", &Y, &M, &D, &h, &m, &s);
        if (k != 3 && k != 6) return jx_fail(x, at, "bad date-time '%s' (want YYYY-MM-DDTHH:MM:SS)", x->lim.now);
        tm.tm_year = Y - 1900;
        tm.tm_mon = M - 1;
        tm.tm_mday = D;
        tm.tm_hour = h;
        tm.tm_min = m;
        tm.tm_sec = s;
        time_t t = timegm(&tm);
        gmtime_r(&t, &tm); /* fills in the weekday and day of the year */
    } else {
        time_t t = time(NULL);
        localtime_r(&t, &tm);
    }
    /* Python handles %f itself (microseconds); the rest is the C library's */
    jbuf f = {.a = x->a};
    for (uint32_t i = 0; i < fmt.n; i++) {
        if (fmt.u.s[i] == '%' && i + 1 < fmt.n && fmt.u.s[i + 1] == 'f') {
            jb_puts(&f, "000000");
            i++;
        } else {
            jb_putc(&f, fmt.u.s[i]);
            if (fmt.u.s[i] == '%' && i + 1 < fmt.n) jb_putc(&f, fmt.u.s[++i]);
        }
    }
    jb_putc(&f, 0);
    if (f.fail) return jx_alloc_failed(x, at);
    size_t cap = 64 + 8 * f.n;
    char *buf = ja_alloc(x->a, cap);
    if (!buf) return jx_alloc_failed(x, at);
    size_t k = f.n > 1 ? strftime(buf, cap, f.p, &tm) : 0;
    *out = jv_strv(buf, (uint32_t)k, 0);
    return true;
}
