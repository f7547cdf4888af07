#include "runtime/text/utf8.h"

#include <stdlib.h>
#include <string.h>

static const char REPLACEMENT[3] = {(char)0xEF, (char)0xBF, (char)0xBD}; /* U+FFFD */

loom_status loom_strbuf_reserve(loom_strbuf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return loom_error(LOOM_ERR_NOMEM, "string buffer: size overflow");
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return NULL;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "string buffer: out of memory growing to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return NULL;
}

loom_status loom_strbuf_append(loom_strbuf *b, const void *bytes, size_t n) {
    LOOM_TRY(loom_strbuf_reserve(b, n));
    if (n) memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = 0;
    return NULL;
}

void loom_strbuf_clear(loom_strbuf *b) {
    b->len = 0;
    if (b->data) b->data[0] = 0;
}

void loom_strbuf_free(loom_strbuf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Table 3-7 of the Unicode standard: the allowed range of the second byte
 * depends on the first; later continuation bytes are always 80..BF. */
int loom_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    int len;
    uint8_t lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        v = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        v = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        v = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        return -1;
    }
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return 0;
        uint8_t c = s[i];
        if (c < lo || c > hi) return -i;
        lo = 0x80;
        hi = 0xBF;
        v = (v << 6) | (c & 0x3F);
    }
    *cp = v;
    return len;
}

int loom_utf8_encode(uint32_t cp, char out[4]) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

bool loom_utf8_valid(const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = loom_utf8_decode(p + i, n - i, &cp);
        if (k <= 0) return false;
        i += (size_t)k;
    }
    return true;
}

void loom_utf8_stream_init(loom_utf8_stream *s) { memset(s, 0, sizeof *s); }

bool loom_utf8_stream_pending(const loom_utf8_stream *s) { return s->n > 0; }

/* Appends the complete characters of p[0..n) with replacements; returns the
 * length of a trailing incomplete prefix that was not consumed. */
static loom_status emit_valid(const uint8_t *p, size_t n, loom_strbuf *out, size_t *rest) {
    LOOM_TRY(loom_strbuf_reserve(out, n + n / 2 + 4));
    size_t i = 0, run = 0; /* run: start of the pending well-formed stretch */
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        int k = loom_utf8_decode(p + i, n - i, &cp);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        LOOM_TRY(loom_strbuf_append(out, p + run, i - run));
        if (k == 0) { /* incomplete tail */
            *rest = n - i;
            return NULL;
        }
        LOOM_TRY(loom_strbuf_append(out, REPLACEMENT, 3));
        i += (size_t)(-k);
        run = i;
    }
    LOOM_TRY(loom_strbuf_append(out, p + run, n - run));
    *rest = 0;
    return NULL;
}

loom_status loom_utf8_stream_push(loom_utf8_stream *s, const char *bytes, size_t len, loom_strbuf *out) {
    const uint8_t *in = (const uint8_t *)bytes;
    if (s->n) {
        /* The held-back bytes are a well-formed prefix: the character they
         * start either completes, stays incomplete, or breaks at an input
         * byte (the ill-formed part is then the held-back bytes plus the
         * input bytes that still continued them). */
        uint8_t tmp[4];
        memcpy(tmp, s->pend, s->n);
        size_t take = len < (size_t)(4 - s->n) ? len : (size_t)(4 - s->n);
        memcpy(tmp + s->n, in, take);
        uint32_t cp;
        int k = loom_utf8_decode(tmp, s->n + take, &cp);
        if (k == 0) { /* still incomplete: every input byte joined the prefix */
            memcpy(s->pend + s->n, in, take);
            s->n = (uint8_t)(s->n + take);
            return NULL;
        }
        size_t used = (size_t)(k > 0 ? k : -k) - s->n;
        if (k > 0) LOOM_TRY(loom_strbuf_append(out, tmp, (size_t)k));
        else LOOM_TRY(loom_strbuf_append(out, REPLACEMENT, 3));
        in += used;
        len -= used;
        s->n = 0;
    }
    size_t rest = 0;
    LOOM_TRY(emit_valid(in, len, out, &rest));
    memcpy(s->pend, in + len - rest, rest);
    s->n = (uint8_t)rest;
    return NULL;
}

loom_status loom_utf8_stream_flush(loom_utf8_stream *s, loom_strbuf *out) {
    if (!s->n) return NULL;
    s->n = 0;
    return loom_strbuf_append(out, REPLACEMENT, 3);
}

loom_status loom_json_escape(const char *s, size_t len, loom_strbuf *out) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t *p = (const uint8_t *)s;
    LOOM_TRY(loom_strbuf_reserve(out, len + len / 8 + 2));
    LOOM_TRY(loom_strbuf_append(out, "\"", 1));
    size_t i = 0, run = 0;
    while (i < len) {
        uint8_t c = p[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            uint32_t cp;
            int k = loom_utf8_decode(p + i, len - i, &cp);
            if (k > 0) {
                i += (size_t)k;
                continue;
            }
            LOOM_TRY(loom_strbuf_append(out, p + run, i - run));
            LOOM_TRY(loom_strbuf_append(out, REPLACEMENT, 3));
            i += k == 0 ? len - i : (size_t)(-k); /* an incomplete tail is ill-formed here */
            run = i;
            continue;
        }
        LOOM_TRY(loom_strbuf_append(out, p + run, i - run));
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
        }
        LOOM_TRY(loom_strbuf_append(out, esc, n));
        i++;
        run = i;
    }
    LOOM_TRY(loom_strbuf_append(out, p + run, len - run));
    return loom_strbuf_append(out, "\"", 1);
}

void loom_json_fputs(FILE *f, const char *s) {
    loom_strbuf b = {0};
    loom_status st = loom_json_escape(s, strlen(s), &b);
    if (st || !b.data) fputs("\"\"", f);
    else fwrite(b.data, 1, b.len, f);
    loom_status_free(st);
    loom_strbuf_free(&b);
}
