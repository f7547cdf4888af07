/*
 * launch/serve/reasoning.c — reasoning split from the answer (contract in
 * reasoning.h).
 */
#define _GNU_SOURCE /* memmem */
#include "launch/serve/reasoning.h"

#include <string.h>

static const loom_think_tags THINK = {"<think>", "</think>"};

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

void srv_reasoning_init(srv_reasoning *r, const loom_think_tags *tags, bool opened) {
    memset(r, 0, sizeof *r);
    r->tags = tags ? *tags : THINK;
    r->open_n = strlen(r->tags.open);
    r->close_n = strlen(r->tags.close);
    r->mode = opened ? 1 : 0;
}

void srv_reasoning_free(srv_reasoning *r) { loom_strbuf_free(&r->held); }

bool srv_reasoning_opened(const loom_think_tags *tags, const char *text, size_t len) {
    const char *open = (tags ? tags : &THINK)->open;
    const size_t n = strlen(open);
    while (len > 0 && is_ws(text[len - 1])) len--;
    return len >= n && !memcmp(text + len - n, open, n);
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
        const size_t m = n - i < r->open_n ? n - i : r->open_n;
        if (memcmp(h + i, r->tags.open, m) != 0) { /* not a reasoning block: all content */
            r->mode = 2;
            loom_status st = content(r, h, n, out);
            loom_strbuf_clear(&r->held);
            return st;
        }
        if (m < r->open_n) return NULL; /* still may be */
        r->mode = 1;
        memmove(r->held.data, h + i + r->open_n, n - i - r->open_n);
        r->held.len = n - i - r->open_n;
        r->held.data[r->held.len] = 0;
        h = r->held.data, n = r->held.len;
    }
    const char *tag = r->tags.close;
    const size_t tag_n = r->close_n;
    const char *at = n ? memmem(h, n, tag, tag_n) : NULL;
    if (at) {
        const size_t k = (size_t)(at - h);
        LOOM_TRY(loom_strbuf_append(reasoning, h, k));
        r->mode = 2, r->strip = true;
        loom_status st = content(r, at + tag_n, n - k - tag_n, out);
        loom_strbuf_clear(&r->held);
        return st;
    }
    size_t keep = 0; /* the longest tail that may begin the closing tag */
    for (size_t l = tag_n - 1 < n ? tag_n - 1 : n; l > 0 && !keep; l--)
        if (!memcmp(h + n - l, tag, l)) keep = l;
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
