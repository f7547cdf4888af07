/*
 * launch/serve/stop.c — stop strings over streamed text (contract in stop.h).
 */
#define _GNU_SOURCE /* memmem */
#include "launch/serve/stop.h"

#include <string.h>

void srv_stop_init(srv_stop *s, char *const *stops, int n) {
    memset(s, 0, sizeof *s);
    s->stops = stops;
    s->n = n;
    s->which = -1;
}

void srv_stop_free(srv_stop *s) { loom_strbuf_free(&s->held); }

/* Length of the longest tail of t[0..n) that is a proper prefix of a stop string. */
static size_t open_tail(const srv_stop *s, const char *t, size_t n) {
    size_t best = 0;
    for (int k = 0; k < s->n; k++) {
        size_t sl = strlen(s->stops[k]);
        for (size_t l = sl - 1 < n ? sl - 1 : n; l > best; l--)
            if (!memcmp(t + n - l, s->stops[k], l)) {
                best = l;
                break;
            }
    }
    return best;
}

loom_status srv_stop_push(srv_stop *s, const char *text, size_t len, loom_strbuf *out) {
    if (s->matched || len == 0) return NULL;
    if (s->n == 0) return loom_strbuf_append(out, text, len);
    LOOM_TRY(loom_strbuf_append(&s->held, text, len));
    const char *h = s->held.data;
    size_t n = s->held.len, cut = n, end = n + 1;
    int which = -1;
    for (int k = 0; k < s->n; k++) { /* the stop string that ends first (as if the text came a byte at a time) */
        const size_t sl = strlen(s->stops[k]);
        const char *at = memmem(h, n, s->stops[k], sl);
        if (!at) continue;
        const size_t a = (size_t)(at - h);
        if (a + sl < end || (a + sl == end && a < cut)) cut = a, end = a + sl, which = k;
    }
    if (cut < n) {
        s->matched = true;
        s->which = which;
        loom_status st = loom_strbuf_append(out, h, cut);
        loom_strbuf_clear(&s->held);
        return st;
    }
    size_t keep = open_tail(s, h, n);
    LOOM_TRY(loom_strbuf_append(out, h, n - keep));
    memmove(s->held.data, h + n - keep, keep);
    s->held.len = keep;
    s->held.data[keep] = 0;
    return NULL;
}

loom_status srv_stop_flush(srv_stop *s, loom_strbuf *out) {
    if (s->matched || s->held.len == 0) return NULL;
    loom_status st = loom_strbuf_append(out, s->held.data, s->held.len);
    if (!st) loom_strbuf_clear(&s->held);
    return st;
}
