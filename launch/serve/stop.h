/*
 * launch/serve/stop.h — stop strings over streamed text.
 *
 * Generated text arrives in pieces; a stop string may span pieces. The
 * matcher emits text only once it is known not to be the start of a stop
 * string, and holds back the longest tail that still could be. When a stop
 * string appears, the text before it is emitted and the rest is dropped
 * (OpenAI: the stop sequence is not part of the output); of overlapping
 * ones, the one that ends first, as if the text came a byte at a time, so
 * where the pieces are cut never changes the output (tests/fuzz_serve.c). Text in is valid
 * UTF-8, so held-back tails start on character boundaries and nothing
 * emitted splits a character.
 */
#ifndef LOOM_SERVE_STOP_H
#define LOOM_SERVE_STOP_H

#include <stdbool.h>
#include <stddef.h>

#include "runtime/text/utf8.h"

typedef struct {
    char *const *stops; /* (n) borrowed, non-empty */
    int n;
    loom_strbuf held;   /* text that may begin a stop string */
    bool matched;
    int which;          /* once matched: the index of the stop string */
} srv_stop;

void srv_stop_init(srv_stop *s, char *const *stops, int n);
void srv_stop_free(srv_stop *s);

/* Adds text[0..len) and appends to *out what can be released. After a
 * match (s->matched) further text is ignored. On error (out of memory)
 * nothing is appended. */
loom_status srv_stop_push(srv_stop *s, const char *text, size_t len, loom_strbuf *out) LOOM_MUST_USE;

/* End of the text: releases what was held back (nothing after a match). */
loom_status srv_stop_flush(srv_stop *s, loom_strbuf *out) LOOM_MUST_USE;

#endif
