/*
 * runtime/json_prefix.h — whether bytes are a prefix of a JSON object
 * (RFC 8259), fed incrementally: the automaton behind JSON mode
 * (`response_format: {"type": "json_object"}`), which keeps each sampled
 * token's bytes a prefix of one object and allows end of generation only
 * once the object is closed (runtime/sampler.h).
 *
 * The state is a small value (copy it to try bytes without committing).
 * Limits, as llama.cpp's JSON grammars set them so a model cannot loop in
 * whitespace: at most LOOM_JSON_MAX_WS whitespace bytes in a row, nesting
 * at most LOOM_JSON_MAX_DEPTH; nothing may follow the closing brace.
 * Strings take any byte from 0x20 but '"' and '\\' (UTF-8 is not checked
 * here: the text is checked as UTF-8 where it is emitted) and the escapes
 * \" \\ \/ \b \f \n \r \t \uXXXX.
 */
#ifndef LOOM_JSON_PREFIX_H
#define LOOM_JSON_PREFIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOOM_JSON_MAX_DEPTH 64
#define LOOM_JSON_MAX_WS 64

typedef struct {
    uint64_t arrays; /* bit d: the container at depth d (0 = the root object) is an array */
    uint8_t depth;   /* open containers */
    uint8_t st;      /* what may come next (json_prefix.c) */
    uint8_t sub;     /* within a literal: bytes matched; within \uXXXX: hex digits left */
    uint8_t lit;     /* the literal being matched (true, false, null) */
    uint8_t ws;      /* whitespace bytes in a row */
    bool key;        /* the string being read is an object key */
} loom_json_state;

/* Before any byte: an object must come (leading whitespace allowed). */
void loom_json_init(loom_json_state *s);

/* Feeds b[0..n); false when the bytes so far are no longer a prefix of a
 * JSON object (s is then unspecified: feed a copy to try). */
bool loom_json_feed(loom_json_state *s, const char *b, size_t n);

/* Whether the object is closed (only end of generation may follow). */
bool loom_json_complete(const loom_json_state *s);

#endif
