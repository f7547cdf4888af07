/*
 * runtime/text/grammar.h — GBNF grammars (llama.cpp's grammar format) for
 * structured output: which text may come next so that the output stays a
 * prefix of a string the grammar derives from `root`, and when it is whole.
 * llama-server's `grammar`, vLLM's `guided_grammar` / `structured_outputs`
 * grammar and `guided_choice`, `loom generate --grammar`.
 *
 * Syntax, as llama.cpp parses it: rules `name ::= alternatives` (names of
 * letters, digits, '-' and '_'), one a line; a line break continues a rule
 * only inside parentheses or after `::=` or `|`. Elements: "literal"
 * strings, character classes `[a-z_]` and `[^...]`, `.` (any character),
 * rule names, groups `( ... )`, alternation `|`, repetition `*` `+` `?`
 * `{m}` `{m,}` `{m,n}` (m and n at most 2000; a larger n is unbounded, as
 * in llama.cpp). Escapes in literals and classes: \n \r \t \\ \" \[ \] \-
 * \xHH \uHHHH \UHHHHHHHH; `#` starts a comment. Text is matched as Unicode
 * code points (a class range is a range of code points), the output's
 * UTF-8 decoded as it comes; a token that ends inside a character fits
 * while some class may still take a character that begins so.
 *
 * Refused with a message (a grammar comes in a request): a rule used but
 * not defined or defined twice, no `root`, left recursion (a rule that can
 * reach itself before reading a character, which the matcher could not
 * expand — llama.cpp refuses it too), token references (`<[id]>`, `<name>`,
 * `!<...>`), grammars over 256 KiB of text or 200,000 elements once
 * repetitions are written out.
 *
 * Matching keeps every way the text so far can be read (a stack of rule
 * positions each, duplicates merged): at most LOOM_GRAMMAR_MAX_STACKS of
 * them, each at most LOOM_GRAMMAR_MAX_DEPTH deep; readings beyond those
 * bounds are dropped, which can narrow what an ambiguous or deeply nested
 * grammar lets through but never lets through what it does not derive.
 * Likewise the work between two pieces of text fed is bounded
 * (LOOM_GRAMMAR_STEP_BUDGET stack words moved: a fraction of a second): past
 * it, text whose steps are not known yet does not fit, so a grammar made
 * to be slow (a request's) narrows its own choices instead of stalling
 * every sequence the sampling rank serves.
 */
#ifndef LOOM_GRAMMAR_H
#define LOOM_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/text/json_schema.h"

#define LOOM_GRAMMAR_MAX_TEXT (256u << 10)
#define LOOM_GRAMMAR_MAX_STACKS 1024
#define LOOM_GRAMMAR_MAX_DEPTH 128
#define LOOM_GRAMMAR_STEP_BUDGET (64ull << 20)

typedef struct loom_grammar loom_grammar;

loom_status loom_grammar_compile(const char *text, size_t len, loom_grammar **out) LOOM_MUST_USE;
void loom_grammar_free(loom_grammar *g);

/* The text so far, fed incrementally. */
typedef struct loom_grammar_matcher loom_grammar_matcher;
loom_status loom_grammar_matcher_create(const loom_grammar *g, loom_grammar_matcher **out) LOOM_MUST_USE;
void loom_grammar_matcher_free(loom_grammar_matcher *m);
/* Whether b[0..n) may come next (nothing changes). */
bool loom_grammar_matcher_fits(loom_grammar_matcher *m, const char *b, size_t n);
/* Feeds b[0..n); false (and nothing changes) when they may not come next. */
bool loom_grammar_matcher_feed(loom_grammar_matcher *m, const char *b, size_t n);
/* Back to before any text (the tables it built are dropped). */
void loom_grammar_matcher_reset(loom_grammar_matcher *m);
/* Whether the text so far is a whole string of the grammar. */
bool loom_grammar_matcher_complete(const loom_grammar_matcher *m);

/* A regular expression the whole text must match (vLLM's guided_regex),
 * compiled to the same rules: Python's and ECMA's common syntax —
 * literals, `.` (not a line break), classes with ranges, \d \w \s and
 * their negations (not inside a class), \n \r \t \f \v \0 \xHH \uHHHH
 * and escaped punctuation, groups ( ), (?: ), (?P<name> ), (?<name> ),
 * alternation, * + ? {m} {m,} {m,n} (lazy and possessive forms read as
 * greedy: the same strings), ^ and $ at the ends. Refused: backreferences,
 * lookarounds, \b, inline flags. */
loom_status loom_grammar_compile_regex(const char *re, size_t len, loom_grammar **out) LOOM_MUST_USE;

/* GBNF for a choice among strings (vLLM's guided_choice): root ::= "a" | "b"
 * ... with each string's bytes escaped. malloc'd; NULL when out of memory. */
char *loom_grammar_choice(const char *const *choices, int n);

/* One sequence's output under a grammar (runtime/sampler.h's constraint):
 * takes the grammar (freed with the constraint, also on failure); v is
 * borrowed. */
typedef struct loom_grammar_constraint loom_grammar_constraint;
loom_status loom_grammar_constraint_create(const loom_vocab_text *v, loom_grammar *g,
                                           loom_grammar_constraint **out) LOOM_MUST_USE;
void loom_grammar_constraint_free(loom_grammar_constraint *c);
bool loom_grammar_constraint_fits(void *user, int32_t token);
void loom_grammar_constraint_accept(void *user, int32_t token);

#endif
