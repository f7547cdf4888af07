/*
 * launch/serve/reasoning.c — reasoning split from the answer (contract in
 * reasoning.h).
 */
#define _GNU_SOURCE /* memmem */
#include "launch/serve/reasoning.h"

#include <string.h>

static const char OPEN[] = "<think>", CLOSE[] = "</think>";
#define OPEN_N (sizeof OPEN - 1)
#define CLOSE_N (sizeof CLOSE - 1)

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

void srv_reasoning_init(srv_reasoning *r, bool opened) {
    memset(r, 0, sizeof *r);
    r->mode = opened ? 1 : 0;
}

void srv_reasoning_free(srv_reasoning *r) { loom_strbuf_free(&r->held); }

bool srv_reasoning_opened(const char *text, size_t len) {
    while (len > 0 && is_ws(text[len - 1])) len--;
    return len >= OPEN_N && !memcmp(text + len - OPEN_N, OPEN, OPEN_N);
}

/* Content: whitespace right after </think> dropped. */
static loom_status content(srv_reasoning *r, const char *t, size_t n, loom_strbuf *out) {
    size_t i = 0;
    if (r->strip) {
        while (i < n && is_ws(t[i])) i++;
        if (i < n) r->strip = false;
    }
    return loom_strbuf_append(out, t + i, n - i);
}

loom_status srv_reasoning_push(srv_reasoning *r, const char *text, size_t len, loom_strbuf *reasoning,
                               loom_strbuf *out) {
    if (r->mode == 2) return content(r, text, len, out);
    LOOM_TRY(loom_strbuf_append(&r->held, text, len));
    const char *h = r->held.data;
    size_t n = r->held.len;
    if (r->mode == 0) {
        size_t i = 0;
        while (i < n && is_ws(h[i])) i++;
        const size_t m = n - i < OPEN_N ? n - i : OPEN_N;
        if (memcmp(h + i, OPEN, m) != 0) { /* not a think block: all content */
            r->mode = 2;
            loom_status st = content(r, h, n, out);
            loom_strbuf_clear(&r->held);
            return st;
        }
        if (m < OPEN_N) return NULL; /* still may be */
        r->mode = 1;
        memmove(r->held.data, h + i + OPEN_N, n - i - OPEN_N);
        r->held.len = n - i - OPEN_N;
        r->held.data[r->held.len] = 0;
        h = r->held.data, n = r->held.len;
    }
    const char *at = n ? memmem(h, n, CLOSE, CLOSE_N) : NULL;
    if (at) {
        const size_t k = (size_t)(at - h);
        LOOM_TRY(loom_strbuf_append(reasoning, h, k));
        r->mode = 2, r->strip = true;
        loom_status st = content(r, at + CLOSE_N, n - k - CLOSE_N, out);
        loom_strbuf_clear(&r->held);
        return st;
    }
    size_t keep = 0; /* the longest tail that may begin </think> */
    for (size_t l = CLOSE_N - 1 < n ? CLOSE_N - 1 : n; l > 0 && !keep; l--)
        if (!memcmp(h + n - l, CLOSE, l)) keep = l;
    LOOM_TRY(loom_strbuf_append(reasoning, h, n - keep));
    memmove(r->held.data, h + n - keep, keep);
    r->held.len = keep;
    r->held.data[keep] = 0;
    return NULL;
}

loom_status srv_reasoning_flush(srv_reasoning *r, loom_strbuf *reasoning, loom_strbuf *out) {
    loom_status st = NULL;
    if (r->held.len) st = r->mode == 1 ? loom_strbuf_append(reasoning, r->held.data, r->held.len)
                                       : loom_strbuf_append(out, r->held.data, r->held.len);
    loom_strbuf_clear(&r->held);
    return st;
}
