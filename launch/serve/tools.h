/*
 * launch/serve/tools.h — tool calls parsed out of streamed text, in the
 * syntax the model's chat template teaches (runtime/text/chat.h:
 * loom_chat_template_tool_syntax).
 *
 * Hermes 2 Pro's (Qwen2.5/Qwen3, Hermes, SmolLM3; vLLM's `hermes` parser,
 * llama.cpp's "Hermes 2 Pro" format):
 *
 *     <tool_call>
 *     {"name": "get_weather", "arguments": {"location": "Paris"}}
 *     </tool_call>
 *
 * Text
 * arrives in pieces; what lies outside the tags is content, released once
 * it cannot be the start of a tag; each closed block whose body is a JSON
 * object with a string "name" (and "arguments" or "parameters", an object
 * or a string) becomes a call in OpenAI's shape. A block that is not such
 * a call stays in the content as written, tags included, and so does an
 * unclosed one at the end unless its body is a whole call (the model
 * stopped before the closing tag). Whitespace between and around calls is
 * dropped; content before the first call is kept.
 *
 * When tool_choice forces calls (srv_tools_force), the reply is held to a
 * JSON schema instead and read as vLLM reads it then.
 *
 * GLM-4.5's (GLM-4.5, 4.6; vLLM's `glm45`): the same tags around
 *
 *     get_weather
 *     <arg_key>location</arg_key>
 *     <arg_value>Paris</arg_value>
 *
 * the name, then key / value pairs (a value is JSON where it parses,
 * else a string), read into the same calls.
 *
 * Qwen3-Coder's and Qwen3.5's (vLLM's `qwen3_coder`; also Nemotron 3 Nano,
 * StepFun 3.5): the same tags around
 *
 *     <function=get_weather>
 *     <parameter=location>
 *     Paris
 *     </parameter>
 *     </function>
 *
 * each value read as the request's tool declares the parameter's type (a
 * string stays text, a number, boolean, object or array is parsed where
 * it can be; an undeclared one is text).
 *
 * DeepSeek's (V3.1: NAME<｜tool▁sep｜>{args}; R1, V3:
 * function<｜tool▁sep｜>NAME, then the arguments in a ```json fence) and
 * Kimi K2's (functions.NAME:INDEX<|tool_call_argument_begin|>{args})
 * between their begin / end tags, read into the same calls; the tags
 * around a whole section are control tokens the server does not render.
 *
 * Mistral's (vLLM's `mistral`): [TOOL_CALLS] opens each call and no tag
 * closes one — it ends at the next [TOOL_CALLS] or at the end of the reply
 * — whose body is NAME[ARGS]{args} (Mistral Small 3.2, Devstral, Ministral
 * 3; a [CALL_ID]id between them is skipped) or a JSON list of {"name",
 * "arguments"} objects (Mistral Nemo), read into the same calls.
 *
 * Llama 3.1-3.3's (vLLM's `llama3_json`): a reply whose first non-blank
 * character is '{' is held whole; at its end, one or more JSON objects
 * {"name": ..., "parameters": {...}} (or "arguments"), separated by ';' or
 * whitespace, are the calls; anything else, and a reply that starts
 * otherwise, is content as written (streamed as it comes).
 */
#ifndef LOOM_SERVE_TOOLS_H
#define LOOM_SERVE_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "runtime/text/chat.h"
#include "runtime/text/utf8.h"

typedef struct {
    loom_tool_syntax syntax;
    loom_strbuf held;  /* Hermes, outside a block: text that may begin a tag */
    loom_strbuf ws;    /* outside: a run of whitespace not yet released */
    loom_strbuf body;  /* inside a block (Llama 3: the held reply): its text so far */
    bool inside;       /* Hermes: in a block; Llama 3: the reply is held (it starts with '{') */
    bool after_call;   /* nothing but whitespace since the last call */
    bool decided;      /* Llama 3: the first non-blank character came */
    const char *force_name; /* tool_choice names this function: the reply is its arguments (borrowed) */
    bool force_list;   /* tool_choice "required": the reply is [{"name", "parameters"}, ...] */
    json_t *calls;     /* [{"id", "type": "function", "function": {"name", "arguments"}}, ...] */
    uint64_t id_state; /* the calls' ids: "call_" + 24 hex digits from this */
    json_t *tools;     /* the request's tools (borrowed; XML: their parameters' types), or NULL */
} srv_tools;

/* syntax: HERMES, GLM, XML, DEEPSEEK, KIMI, MISTRAL or LLAMA3; seed: makes the calls' ids (distinct
 * per request); tools: the request's (borrowed, may be NULL). Returns false when out of memory. */
bool srv_tools_init(srv_tools *t, loom_tool_syntax syntax, uint64_t seed, json_t *tools);
void srv_tools_free(srv_tools *t);

/* tool_choice forces calls: the reply, held to a schema (openai.c), is
 * held whole and becomes the calls. name: the function tool_choice names
 * (the reply is its arguments), or NULL for "required" (the reply is a
 * list of {"name", "parameters"}). A reply that is not so (cut short by
 * max_tokens) stays content. */
void srv_tools_force(srv_tools *t, const char *name);

/* Adds text[0..len) (valid UTF-8); appends the content it releases to
 * *out and the calls it closes to t->calls. */
loom_status srv_tools_push(srv_tools *t, const char *text, size_t len, loom_strbuf *out) LOOM_MUST_USE;

/* End of the text: releases what was held (an unclosed block as above). */
loom_status srv_tools_flush(srv_tools *t, loom_strbuf *out) LOOM_MUST_USE;

/* One call in OpenAI's shape, {"id": "call_" + 24 hex digits drawn from
 * *id_state, "type": "function", "function": {"name", "arguments"}}, of
 * name[0..name_len) and args[0..args_len) (valid UTF-8); NULL when out of
 * memory or not UTF-8. */
json_t *srv_tool_call_new(uint64_t *id_state, const char *name, size_t name_len, const char *args, size_t args_len);

#endif
