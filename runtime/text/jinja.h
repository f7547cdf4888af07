/*
 * runtime/text/jinja.h — a Jinja interpreter for chat templates.
 *
 * Renders a template byte for byte as Python's jinja2 (3.1) does when set up
 * as Hugging Face's apply_chat_template sets it up: an
 * ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the
 * loopcontrols extension (break, continue) and transformers' {% generation %}
 * tag; tojson as transformers defines it (json.dumps with ensure_ascii=False,
 * indent, separators, sort_keys); the globals raise_exception, strftime_now,
 * range (at most 100000 items, as the sandbox allows), namespace, dict,
 * cycler and joiner. Values follow Python's semantics (str, int, float,
 * None, list, tuple, dict, Undefined, markupsafe.Markup for |safe).
 *
 * Supported: whitespace control ("-", "+"), comments, raw blocks; if / elif /
 * else, for (tuple targets, if-filter, else, recursive, loop.*), set (also
 * block set and namespace attributes), macro (defaults, caller, varargs,
 * kwargs), call blocks, filter blocks, with, break / continue; all jinja2
 * expressions; the filters and tests of jinja2 that templates use (see
 * jinja_filters.c and jinja_tests.c) and the str / dict / list methods of
 * Python that the sandbox allows (mutating ones raise SecurityError, as in
 * jinja2). Not supported (a parse error names them): extends, block,
 * include, import, from, autoescape.
 *
 * Templates are untrusted: a render is bounded in nesting depth (macro
 * calls, recursive loops; statements and expressions nested across calls,
 * so a render needs less than 1 MiB of stack), work (loop iterations,
 * calls and bytes scanned), output size and memory, and fails with an
 * error instead of exceeding them. Nothing here reads files, the environment or the clock except
 * strftime_now (which uses limits.now when set). Errors name the template,
 * line and column: "template:3:15: 'foo' is undefined".
 *
 * A parsed template is immutable and may be rendered by several threads at
 * once; each render allocates its own memory and frees it before returning.
 */
#ifndef LOOM_JINJA_H
#define LOOM_JINJA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/text/utf8.h"

typedef struct loom_jinja_template loom_jinja_template;
typedef struct loom_jinja_vars loom_jinja_vars;

typedef struct {
    uint32_t max_depth;  /* nested macro calls, call blocks and recursive loops */
    uint64_t max_steps;  /* loop iterations + calls + KiB scanned by string operations */
    size_t max_output;   /* bytes of output */
    size_t max_memory;   /* bytes a render may allocate */
    const char *now;     /* "YYYY-MM-DDTHH:MM:SS" that strftime_now reports; NULL: the local time */
} loom_jinja_limits;

/* depth 64, 5M steps, 16 MiB output, 256 MiB memory, now = NULL */
loom_jinja_limits loom_jinja_limits_default(void);

/* Parses src[0..len) (UTF-8). `name` prefixes error messages ("template"
 * when NULL). Syntax errors, unknown tags and unknown filters or tests
 * (outside if-blocks, where jinja2 defers them to run time) fail with
 * LOOM_ERR_INVALID naming line and column. On error *out is NULL. */
loom_status loom_jinja_parse(const char *src, size_t len, const char *name, loom_jinja_template **out) LOOM_MUST_USE;
void loom_jinja_free(loom_jinja_template *t);

/* The variables a template sees (render's keyword arguments). A name not
 * set is undefined, as in jinja2. Values are copied in. */
loom_status loom_jinja_vars_create(loom_jinja_vars **out) LOOM_MUST_USE;
void loom_jinja_vars_free(loom_jinja_vars *v);
/* Sets `name` to the value of the JSON text json[0..len) (Python
 * json.loads semantics: key order kept, ints stay ints). */
loom_status loom_jinja_vars_set_json(loom_jinja_vars *v, const char *name, const char *json, size_t len) LOOM_MUST_USE;
/* Every key of a JSON object becomes a variable (later sets override). */
loom_status loom_jinja_vars_set_object(loom_jinja_vars *v, const char *json, size_t len) LOOM_MUST_USE;
loom_status loom_jinja_vars_set_str(loom_jinja_vars *v, const char *name, const char *s, size_t len) LOOM_MUST_USE;
loom_status loom_jinja_vars_set_bool(loom_jinja_vars *v, const char *name, bool b) LOOM_MUST_USE;
loom_status loom_jinja_vars_set_none(loom_jinja_vars *v, const char *name) LOOM_MUST_USE;
/* Chat messages as transformers passes them: a JSON array of objects; a
 * message with a reasoning field ("reasoning_content", "thinking" or
 * "reasoning", the first not null) gets it under "thinking" (first) and
 * "reasoning_content" too, as transformers 5 does. join_text_parts: a
 * message whose content is a list of OpenAI text parts ({"type": "text",
 * "text": ...}, every part) gets their texts joined by newlines as its
 * content (what vLLM and llama.cpp's servers hand a template that renders
 * string content). Sets `messages`. */
loom_status loom_jinja_vars_set_messages(loom_jinja_vars *v, const char *json, size_t len,
                                         bool join_text_parts) LOOM_MUST_USE;
/* True when `name` is set. */
bool loom_jinja_vars_has(const loom_jinja_vars *v, const char *name);

/* Appends the rendering to *out. On error (LOOM_ERR_INVALID for errors the
 * template raises or causes, with "line:col"; LOOM_ERR_NOMEM) *out keeps
 * what it held before the call. lim NULL: the defaults. */
loom_status loom_jinja_render(const loom_jinja_template *t, const loom_jinja_vars *vars, const loom_jinja_limits *lim,
                              loom_strbuf *out) LOOM_MUST_USE;

#endif
