/*
 * runtime/text/json_schema.h — whether bytes are a prefix of a JSON document
 * that a JSON schema accepts, fed incrementally: the automaton behind
 * structured output (`response_format` json_object and json_schema), which
 * keeps each sampled token's bytes a prefix of such a document and allows
 * end of generation only once it is whole (runtime/sampler.h).
 *
 * The schemas taken are what OpenAI's structured outputs and Pydantic
 * write: "type" (a name or a list of "object", "array", "string",
 * "number", "integer", "boolean", "null"), "properties", "required",
 * "additionalProperties" (false, true or a schema; absent: true),
 * "items", "minItems", "maxItems", "minLength", "maxLength" (characters;
 * an escape counts one), "minimum" / "maximum" / "exclusiveMinimum" /
 * "exclusiveMaximum" (no digit is taken that leaves no way to end within
 * them: an integer's exactly, a number's in doubles and without an
 * exponent), "enum", "const", "anyOf" / "oneOf"
 * (as anyOf), "$ref" to "#/$defs/..." or "#/definitions/..." (recursion
 * allowed), and the annotations "title", "description", "default",
 * "examples", "format", "$schema", "$id", "strict", "name". A keyword that
 * constrains what this automaton cannot ("pattern", "multipleOf",
 * "allOf", ...) fails the compile naming it, so nothing is
 * promised that is not enforced. enum and const values match as their
 * compact JSON text ("red" as "\"red\"", {"a": 1} as {"a":1}).
 *
 * Whitespace: at most LOOM_JSON_MAX_WS bytes in a row (a model cannot loop
 * in it), nesting at most LOOM_JSON_MAX_DEPTH, nothing after the document.
 * Strings take any byte from 0x20 but '"' and '\\' and the escapes \" \\
 * \/ \b \f \n \r \t \uXXXX (UTF-8 is checked where the text is emitted).
 * Keys match a property's name byte for byte (no escapes in known names).
 */
#ifndef LOOM_JSON_SCHEMA_H
#define LOOM_JSON_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/text/tokenizer.h"

#define LOOM_JSON_MAX_DEPTH 32
#define LOOM_JSON_MAX_WS 64
#define LOOM_JSON_MAX_ALTS 8 /* readings of the bytes so far kept at once (anyOf alternatives) */

typedef struct loom_json_schema loom_json_schema;

/* Compiles a schema (JSON text). "{\"type\": \"object\"}" is JSON mode. */
loom_status loom_json_schema_compile(const char *json, size_t len, loom_json_schema **out) LOOM_MUST_USE;
void loom_json_schema_free(loom_json_schema *s);

/* One reading of the bytes so far: the stack of open values. */
typedef struct {
    uint16_t node;  /* the schema node of the value */
    uint8_t kind;   /* what is being read (json_schema.c) */
    uint8_t st;     /* where in it */
    uint32_t n;     /* array: items so far; literal / key: bytes matched; \u: hex digits left */
    uint64_t mask;  /* object: properties seen; key or enum: candidates left */
} loom_json_frame;

typedef struct {
    uint8_t depth, ws;
    bool done;
    loom_json_frame f[LOOM_JSON_MAX_DEPTH];
} loom_json_thread;

typedef struct {
    const loom_json_schema *schema;
    uint8_t n; /* readings alive; 0: the bytes are no prefix */
    loom_json_thread t[LOOM_JSON_MAX_ALTS];
} loom_json_state;

/* Before any byte. */
void loom_json_init(loom_json_state *s, const loom_json_schema *schema);

/* Feeds b[0..n) into *s; false when the bytes so far are no longer a
 * prefix of an accepted document (s is then unspecified). */
bool loom_json_feed(loom_json_state *s, const char *b, size_t n);

/* Feeds b[0..n) into a copy of *from (only the parts in use are copied);
 * true and *to set when they fit. */
bool loom_json_try(const loom_json_state *from, const char *b, size_t n, loom_json_state *to);

/* Whether the document is whole (only end of generation may follow). */
bool loom_json_complete(const loom_json_state *s);

/* ---- the constraint on sampled tokens (runtime/sampler.h) ---- */

/* The vocabulary's text: token i's bytes are bytes[off[i] .. off[i + 1]);
 * kind[i] 0 text, 1 end of generation, 2 control (never sampled under a
 * constraint). */
typedef struct {
    int32_t n;
    const uint32_t *off; /* (n + 1) */
    const char *bytes;
    const uint8_t *kind; /* (n) */
} loom_vocab_text;

/* n tokens (the model's vocabulary; ids the tokenizer lacks are control). */
loom_status loom_vocab_text_build(const loom_tokenizer *tok, int32_t n, loom_vocab_text *out) LOOM_MUST_USE;
void loom_vocab_text_free(loom_vocab_text *v);

/* What every byte-level constraint (this schema's, runtime/text/grammar.h's)
 * asks of a token: whether token t may come next for an automaton whose
 * fits(user, b, n) says whether bytes b[0..n) may follow and whole(user)
 * whether the text may end there (end of generation). Control tokens and
 * empty ones never fit. first caches fits of each single byte (most tokens
 * fail on their first); set first->known = false when the automaton moves. */
typedef struct {
    bool known;
    uint8_t ok[256];
} loom_first_bytes;
bool loom_vocab_token_fits(const loom_vocab_text *v, int32_t t, loom_first_bytes *first,
                           bool (*fits)(void *user, const char *b, size_t n), bool (*whole)(void *user), void *user);

/* One sequence's output under a schema: which token may come next, and
 * the output so far. Takes the schema (freed with the constraint, also on
 * failure); v is borrowed. */
typedef struct loom_json_constraint loom_json_constraint;
loom_status loom_json_constraint_create(const loom_vocab_text *v, loom_json_schema *schema,
                                        loom_json_constraint **out) LOOM_MUST_USE;
void loom_json_constraint_free(loom_json_constraint *c);
/* loom_sampler_constraint's callbacks (user: the constraint). */
bool loom_json_constraint_fits(void *user, int32_t token);
void loom_json_constraint_accept(void *user, int32_t token);

#endif
