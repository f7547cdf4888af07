/*
 * runtime/text/utf8.h — UTF-8 for text that leaves loom: a growable byte string,
 * a streaming decoder that never splits a character, and a JSON string
 * escaper that emits valid JSON for any input bytes.
 *
 * Tokens are byte strings: one token may end in the middle of a UTF-8
 * character (byte-level BPE, <0xXX> byte tokens) and the next token completes
 * it. A loom_utf8_stream per sequence holds back such a partial character
 * until the bytes that complete it arrive, so streamed output and JSON
 * strings only ever carry whole characters.
 *
 * Invalid input is replaced, never passed on: each maximal ill-formed
 * subsequence (Unicode 15, §3.9, "U+FFFD substitution of maximal subparts",
 * the same rule as Python's bytes.decode(errors="replace")) becomes one
 * U+FFFD. Overlong forms, surrogates and code points above U+10FFFF are
 * ill-formed.
 *
 * Nothing here allocates except loom_strbuf growth; the only error is
 * LOOM_ERR_NOMEM, after which the buffer holds what was appended before.
 */
#ifndef LOOM_UTF8_H
#define LOOM_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "runtime/status.h"

/* A growable byte string. Zero-initialise it ({0}); `data` is
 * NUL-terminated whenever it is non-NULL (the NUL is not counted in len). */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} loom_strbuf;

loom_status loom_strbuf_append(loom_strbuf *b, const void *bytes, size_t n) LOOM_MUST_USE;
loom_status loom_strbuf_reserve(loom_strbuf *b, size_t extra) LOOM_MUST_USE;
void loom_strbuf_clear(loom_strbuf *b); /* len = 0, keeps the memory */
void loom_strbuf_free(loom_strbuf *b);  /* releases the memory; the buffer is {0} again */

/* Decodes one character at s[0..n). Returns its length (1..4) and sets *cp
 * when s starts with a complete well-formed character; returns 0 when s is a
 * well-formed but incomplete prefix (more bytes could complete it); returns
 * -k when the first k bytes (k >= 1) are a maximal ill-formed subpart that
 * stands for one U+FFFD. n must be >= 1. */
int loom_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

/* Appends the UTF-8 encoding of cp (U+FFFD for surrogates and values above
 * U+10FFFF). Returns the number of bytes written to out (1..4). */
int loom_utf8_encode(uint32_t cp, char out[4]);

/* True when s[0..n) is well-formed UTF-8. */
bool loom_utf8_valid(const char *s, size_t n);

/* Streaming decoder state, one per sequence. Fields are private; initialise
 * with loom_utf8_stream_init() (or zero it). */
typedef struct {
    uint8_t pend[4]; /* a well-formed incomplete prefix held back (n < 4) */
    uint8_t n;
} loom_utf8_stream;

void loom_utf8_stream_init(loom_utf8_stream *s);

/* Appends to `out` every complete character of (held-back bytes + bytes),
 * ill-formed subparts replaced by U+FFFD, and holds back a trailing
 * incomplete character (at most 3 bytes) for the next push. */
loom_status loom_utf8_stream_push(loom_utf8_stream *s, const char *bytes, size_t len,
                                  loom_strbuf *out) LOOM_MUST_USE;

/* End of the sequence: a held-back incomplete character becomes one U+FFFD.
 * The stream is empty (and reusable) afterwards. */
loom_status loom_utf8_stream_flush(loom_utf8_stream *s, loom_strbuf *out) LOOM_MUST_USE;

/* True when the stream holds back bytes. */
bool loom_utf8_stream_pending(const loom_utf8_stream *s);

/* Appends s[0..len) as a quoted JSON string: '"' and '\\' escaped, control
 * characters below U+0020 as \b \f \n \r \t or \u00XX, ill-formed UTF-8
 * replaced by U+FFFD; everything else passes through as UTF-8. */
loom_status loom_json_escape(const char *s, size_t len, loom_strbuf *out) LOOM_MUST_USE;

/* Writes the JSON string literal of the NUL-terminated s to f (loom_json_escape's
 * rules; "" if memory runs out). */
void loom_json_fputs(FILE *f, const char *s);

#endif
