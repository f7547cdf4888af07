/*
 * runtime/text/pattern.h — a JSON Schema `pattern` (ECMA-262 regular
 * expression syntax, the subset below) compiled to a deterministic
 * automaton over the bytes of a string value's JSON text, for structured
 * output (json_schema.c): each byte the model writes inside the string
 * moves the automaton, and the string may close only in an accepting
 * state.
 *
 * Syntax: literals (UTF-8 text is its bytes), `.`, classes `[a-z0-9_]` and
 * `[^...]` (ASCII), escapes \d \D \w \W \s \S \n \r \t \f \v \0 \xHH
 * \uHHHH (ASCII) and escaped punctuation, groups `( )`, `(?: )` and
 * `(?<name> )`, alternation `|`, quantifiers `* + ?` `{n}` `{n,}` `{n,m}`
 * (lazy forms read as greedy: the same language), `^` at the start and `$`
 * at the end of a top-level branch (`^a|b$`: begins with a or ends with b).
 * As JSON Schema says, a pattern is not anchored: without `^` (`$`)
 * anything may come before (after) the match. Refused with a message:
 * backreferences, lookarounds, \b, non-ASCII inside a class, patterns of
 * more than 1000 bytes and those whose automaton passes
 * LOOM_PATTERN_MAX_STATES states (the work is bounded: a pattern comes in
 * a request).
 *
 * What the string may hold: the bytes a JSON string carries unescaped (no
 * '"', '\\' or control characters: the model writes a matched string
 * without escapes), and a non-ASCII character counts as its UTF-8 bytes
 * (`.` matches one byte of it).
 */
#ifndef LOOM_PATTERN_H
#define LOOM_PATTERN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"

#define LOOM_PATTERN_DEAD 0xFFFF
#define LOOM_PATTERN_MAX_STATES 1024

typedef struct loom_pattern loom_pattern;

loom_status loom_pattern_compile(const char *re, size_t len, loom_pattern **out) LOOM_MUST_USE;
void loom_pattern_free(loom_pattern *p);

/* The state after byte c from state s (the start state is 0);
 * LOOM_PATTERN_DEAD when no string the pattern accepts goes on so. */
uint16_t loom_pattern_next(const loom_pattern *p, uint16_t s, uint8_t c);
/* Whether the string may end in state s. */
bool loom_pattern_accepts(const loom_pattern *p, uint16_t s);
/* Whether the pattern matches the whole of s[0..n) (tests). */
bool loom_pattern_match(const loom_pattern *p, const char *s, size_t n);

#endif
