/*
 * launch/serve/openai.c — OpenAI request parsing and JSON helpers
 * (contract in openai.h).
 */
#include "launch/serve/openai.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/dry_breakers.h"
#include "runtime/text/grammar.h"
#include "runtime/text/json_schema.h"
#include "runtime/text/utf8.h"

bool srv_fail(srv_error *e, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->param = param;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

#define BAD(param, ...) srv_fail(e, 400, "invalid_request_error", (param), NULL, __VA_ARGS__)

/* ------------------------------------------------------------ field readers */

/* Each reader leaves *out alone when the field is absent or null. */

bool srv_get_bool(json_t *o, const char *key, bool *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_boolean(v)) return BAD(key, "'%s' must be a boolean", key);
    *out = json_is_true(v);
    return true;
}

bool srv_get_number(json_t *o, const char *key, double lo, double hi, double *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_number(v)) return BAD(key, "'%s' must be a number", key);
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) return BAD(key, "'%s' is %g; it must be in [%g, %g]", key, d, lo, hi);
    *out = d;
    return true;
}

static bool get_int(json_t *o, const char *key, long long lo, long long hi, long long *out, srv_error *e) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return true;
    if (!json_is_integer(v)) return BAD(key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return BAD(key, "'%s' is %lld; it must be in [%lld, %lld]", key, x, lo, hi);
    *out = x;
    return true;
}

static bool get_float(json_t *o, const char *key, double lo, double hi, float *out, srv_error *e) {
    double d = *out;
    if (!srv_get_number(o, key, lo, hi, &d, e)) return false;
    *out = (float)d;
    return true;
}

/* ------------------------------------------------------------ pieces */

static bool parse_stop(json_t *o, srv_params *p, srv_error *e) {
    json_t *v = json_object_get(o, "stop");
    if (!v || json_is_null(v)) return true;
    json_t *one[1] = {v};
    json_t **items = one;
    size_t n = 1;
    if (json_is_array(v)) {
        n = json_array_size(v);
        if (n > SRV_MAX_STOP) return BAD("stop", "'stop' has %zu strings; at most %d are allowed", n, SRV_MAX_STOP);
        items = NULL;
    } else if (!json_is_string(v)) {
        return BAD("stop", "'stop' must be a string or a list of strings");
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = items ? items[i] : json_array_get(v, i);
        if (!json_is_string(s)) return BAD("stop", "'stop' must be a string or a list of strings");
        size_t len = json_string_length(s);
        if (len == 0) continue; /* an empty stop string stops nothing */
        if (len > SRV_MAX_STOP_LEN) return BAD("stop", "a stop string is longer than %d bytes", SRV_MAX_STOP_LEN);
        p->stop[p->n_stop] = strndup(json_string_value(s), len);
        if (!p->stop[p->n_stop]) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        p->n_stop++;
    }
    return true;
}

/* logit_bias: {"token id": bias, ...}, bias in [-100, 100]; a token named
 * twice ("7" and "07") keeps the last. The ids are checked against the
 * vocabulary where it is known (completions.c: start_job). */
static bool parse_logit_bias(json_t *o, srv_params *p, srv_error *e) {
    json_t *v = json_object_get(o, "logit_bias");
    if (!v || json_is_null(v) || (json_is_object(v) && !json_object_size(v))) return true;
    if (!json_is_object(v)) return BAD("logit_bias", "'logit_bias' must be an object of token ids and biases");
    if (json_object_size(v) > LOOM_LOGIT_BIAS_MAX)
        return BAD("logit_bias", "'logit_bias' has %zu tokens; at most %d are allowed", json_object_size(v),
                   LOOM_LOGIT_BIAS_MAX);
    p->bias_token = malloc(json_object_size(v) * sizeof *p->bias_token);
    p->bias_value = malloc(json_object_size(v) * sizeof *p->bias_value);
    if (!p->bias_token || !p->bias_value) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    loom_sampling_params *sp = &p->sampling;
    sp->bias_token = p->bias_token, sp->bias_value = p->bias_value;
    const char *key;
    json_t *b;
    json_object_foreach(v, key, b) {
        char *end;
        errno = 0;
        const long id = strtol(key, &end, 10);
        if (!*key || *end || errno || id < 0 || id > INT32_MAX || !(*key >= '0' && *key <= '9'))
            return BAD("logit_bias", "'logit_bias' keys must be token ids, not '%s'", key);
        if (!json_is_number(b) || !(json_number_value(b) >= -100 && json_number_value(b) <= 100))
            return BAD("logit_bias", "the bias of token %ld must be a number in [-100, 100]", id);
        int32_t i = 0;
        while (i < sp->n_logit_bias && p->bias_token[i] != (int32_t)id) i++;
        p->bias_token[i] = (int32_t)id;
        p->bias_value[i] = (float)json_number_value(b);
        if (i == sp->n_logit_bias) sp->n_logit_bias++;
    }
    return true;
}

/* The samplers llama-server takes beyond OpenAI's (runtime/sampler.h):
 * typical_p, top_n_sigma, xtc_*, dynatemp_*, dry_* with its sequence
 * breakers (llama.cpp's defaults when DRY is on and none are given;
 * dry_base below 1 is the default 1.75, as llama-server reads it),
 * mirostat (1 or 2) with mirostat_tau and mirostat_eta. */
static bool parse_llama_samplers(json_t *o, srv_params *p, srv_error *e) {
    loom_sampling_params *sp = &p->sampling;
    long long allowed = sp->dry_allowed_length, last_n = sp->dry_penalty_last_n;
    if (!get_float(o, "typical_p", 0, 1, &sp->typical_p, e) || !get_float(o, "top_n_sigma", -1e9, 1e9, &sp->top_n_sigma, e) ||
        !get_float(o, "xtc_probability", 0, 1, &sp->xtc_probability, e) ||
        !get_float(o, "xtc_threshold", 0, 1, &sp->xtc_threshold, e) ||
        !get_float(o, "dynatemp_range", 0, 1e9, &sp->dynatemp_range, e) ||
        !get_float(o, "dynatemp_exponent", 0, 1e9, &sp->dynatemp_exponent, e) ||
        !get_float(o, "dry_multiplier", 0, 1e9, &sp->dry_multiplier, e) ||
        !get_float(o, "dry_base", 0, 1e9, &sp->dry_base, e) || !get_int(o, "dry_allowed_length", 0, 1 << 24, &allowed, e) ||
        !get_int(o, "dry_penalty_last_n", -1, INT32_MAX, &last_n, e))
        return false;
    if (sp->dry_base < 1) sp->dry_base = 1.75f;
    sp->dry_allowed_length = (int32_t)allowed;
    sp->dry_penalty_last_n = (int32_t)last_n;
    long long miro = 0;
    if (!get_int(o, "mirostat", 0, 2, &miro, e) || !get_float(o, "mirostat_tau", 0, 1e9, &sp->mirostat_tau, e) ||
        !get_float(o, "mirostat_eta", 0, 1e9, &sp->mirostat_eta, e))
        return false;
    sp->mirostat = (int32_t)miro;
    json_t *br = json_object_get(o, "dry_sequence_breakers");
    size_t n = LOOM_DRY_N_DEFAULT;
    if (br && !json_is_null(br)) {
        n = json_array_size(br);
        bool strings = json_is_array(br) && n && n <= LOOM_DRY_MAX_BREAKERS;
        for (size_t i = 0; strings && i < n; i++) strings = json_is_string(json_array_get(br, i));
        if (!strings)
            return BAD("dry_sequence_breakers", "'dry_sequence_breakers' must be a list of 1 to %d strings",
                       LOOM_DRY_MAX_BREAKERS);
    }
    if (sp->dry_multiplier == 0) return true;
    if (!(p->dry_breakers = calloc(n, sizeof *p->dry_breakers))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    p->n_dry_breakers = (int)n;
    for (size_t i = 0; i < n; i++) {
        const char *s = br && !json_is_null(br) ? json_string_value(json_array_get(br, i)) : loom_dry_default_breakers[i];
        if (!(p->dry_breakers[i] = strdup(s))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    sp->n_dry_breakers = (int32_t)n;
    sp->dry_breakers = (const char *const *)p->dry_breakers;
    return true;
}

/* The reply is held to `schema` (structured output): compiled once here to
 * answer 400 for what the automaton does not take (runtime/text/
 * json_schema.h); param names the field it came from. */
static bool constrain(const char *param, srv_params *p, srv_error *e) {
    if (p->constrained_by) return BAD(param, "'%s' and '%s' both constrain the reply; give one", param, p->constrained_by);
    p->constrained_by = param;
    return true;
}

static bool set_schema(json_t *schema, const char *param, srv_params *p, srv_error *e) {
    if (!constrain(param, p, e)) return false;
    p->schema = json_dumps(schema, JSON_COMPACT);
    if (!p->schema) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    loom_json_schema *c;
    loom_status st = loom_json_schema_compile(p->schema, strlen(p->schema), &c);
    if (st) {
        srv_fail(e, 400, "invalid_request_error", param, NULL, "%s", loom_status_message(st));
        loom_status_free(st);
        return false;
    }
    loom_json_schema_free(c);
    p->sampling.json_schema = p->schema;
    return true;
}

/* The reply is held to a GBNF grammar (runtime/text/grammar.h), compiled
 * once here to answer 400 for what it refuses. */
static bool set_grammar(const char *text, bool regex, const char *param, srv_params *p, srv_error *e) {
    if (!constrain(param, p, e)) return false;
    loom_grammar *g;
    loom_status st = regex ? loom_grammar_compile_regex(text, strlen(text), &g) : loom_grammar_compile(text, strlen(text), &g);
    if (st) {
        srv_fail(e, 400, "invalid_request_error", param, NULL, "%s", loom_status_message(st));
        loom_status_free(st);
        return false;
    }
    loom_grammar_free(g);
    if (!(p->grammar = strdup(text))) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    p->sampling.grammar = p->grammar;
    p->sampling.grammar_regex = regex;
    return true;
}

/* A list of strings the reply must be one of (vLLM's guided_choice). */
static bool set_choice(json_t *list, const char *param, srv_params *p, srv_error *e) {
    const size_t n = json_array_size(list);
    if (!n || n > 4096) return BAD(param, "'%s' must be a list of 1 to 4096 strings", param);
    const char **c = malloc(n * sizeof *c);
    if (!c) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++)
        if (!(c[i] = json_string_value(json_array_get(list, i)))) {
            free(c);
            return BAD(param, "'%s' must be a list of 1 to 4096 strings", param);
        }
    char *text = loom_grammar_choice(c, (int)n);
    free(c);
    if (!text) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    bool ok = set_grammar(text, false, param, p, e);
    free(text);
    return ok;
}

/* A schema given as an object or as its JSON text (vLLM takes both). */
static bool set_schema_value(json_t *v, const char *param, srv_params *p, srv_error *e) {
    json_t *own = json_is_string(v) ? json_loads(json_string_value(v), 0, NULL) : json_incref(v);
    if (!json_is_object(own)) {
        json_decref(own);
        return BAD(param, "'%s' must be a JSON schema (an object, or its text)", param);
    }
    bool ok = set_schema(own, param, p, e);
    json_decref(own);
    return ok;
}

/* Structured output as llama-server (`grammar`) and vLLM (`guided_json`,
 * `guided_grammar`, `guided_regex`, `guided_choice`, and since 0.10
 * `structured_outputs`) ask for it. Grammars are GBNF (vLLM's lark
 * dialect is not read). */
static bool parse_guided(json_t *o, srv_params *p, srv_error *e) {
    static const char *const strings[] = {"grammar", "guided_grammar", "guided_regex"};
    for (int i = 0; i < 3; i++) {
        json_t *g = json_object_get(o, strings[i]);
        if (!g || json_is_null(g) || (json_is_string(g) && !*json_string_value(g))) continue;
        if (!json_is_string(g))
            return BAD(strings[i], "'%s' must be %s (a string)", strings[i], i < 2 ? "a GBNF grammar" : "a regular expression");
        if (!set_grammar(json_string_value(g), i == 2, strings[i], p, e)) return false;
    }
    json_t *v = json_object_get(o, "guided_choice");
    if (v && !json_is_null(v) && !set_choice(v, "guided_choice", p, e)) return false;
    v = json_object_get(o, "guided_json");
    if (v && !json_is_null(v) && !set_schema_value(v, "guided_json", p, e)) return false;
    json_t *so = json_object_get(o, "structured_outputs");
    if (!so || json_is_null(so)) return true;
    if (!json_is_object(so)) return BAD("structured_outputs", "'structured_outputs' must be an object");
    const char *key;
    json_object_foreach(so, key, v) {
        if (json_is_null(v)) continue;
        if (!strcmp(key, "json")) {
            if (!set_schema_value(v, "structured_outputs", p, e)) return false;
        } else if (!strcmp(key, "grammar") || !strcmp(key, "regex")) {
            if (!json_is_string(v)) return BAD("structured_outputs", "'structured_outputs.%s' must be a string", key);
            if (!set_grammar(json_string_value(v), key[0] == 'r', "structured_outputs", p, e)) return false;
        } else if (!strcmp(key, "choice")) {
            if (!set_choice(v, "structured_outputs", p, e)) return false;
        } else if (!strcmp(key, "json_object")) {
            if (!json_is_boolean(v)) return BAD("structured_outputs", "'structured_outputs.json_object' must be a boolean");
            if (json_is_true(v) && constrain("structured_outputs", p, e)) p->sampling.json_object = true;
            else if (json_is_true(v)) return false;
        } else if (strcmp(key, "disable_any_whitespace") && strcmp(key, "disable_additional_properties") &&
                   strcmp(key, "whitespace_pattern")) {
            return BAD("structured_outputs", "'structured_outputs.%s' is not supported (json, grammar, regex, "
                       "choice, json_object)", key);
        }
    }
    return true;
}

/* response_format {"type": "json_schema", "json_schema": {"name", "schema", "strict"}}. */
static bool parse_schema(json_t *rf, srv_params *p, srv_error *e) {
    json_t *js = json_object_get(rf, "json_schema");
    json_t *schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
    if (!json_is_object(schema))
        return BAD("response_format", "'response_format' json_schema needs 'json_schema': {'schema': {...}}");
    return set_schema(schema, "response_format", p, e);
}

/* tool_choice "required" or {"type": "function", "function": {"name"}}: the
 * reply is held to the calls' schema, as vLLM does it — the named
 * function's parameters, or a list of {"name": one of the tools,
 * "parameters": its parameters} — and read back as calls (tools.c). */
static bool force_tools(json_t *tc, srv_params *p, srv_error *e) {
    const char *want = NULL;
    if (json_is_object(tc)) {
        want = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
        if (!want) return BAD("tool_choice", "'tool_choice' names a function as {\"type\": \"function\", "
                              "\"function\": {\"name\": ...}}");
    }
    if (!json_array_size(p->tools)) return BAD("tool_choice", "'tool_choice' forces a call, but there are no 'tools'");
    json_t *alts = json_array(), *schema = NULL;
    size_t i;
    json_t *tool;
    json_array_foreach(p->tools, i, tool) {
        json_t *f = json_object_get(tool, "function"), *params = json_object_get(f, "parameters");
        const char *name = json_string_value(json_object_get(f, "name"));
        if (!name) {
            json_decref(alts);
            return BAD("tools", "tools[%zu] needs 'function': {'name': ...}", i);
        }
        json_t *ps = json_is_object(params) ? json_incref(params) : json_pack("{s:s}", "type", "object");
        if (want && !strcmp(name, want) && !schema) schema = json_incref(ps);
        json_array_append_new(alts, json_pack("{s:s, s:{s:{s:s}, s:o}, s:[s, s], s:b}", "type", "object", "properties",
                                              "name", "const", name, "parameters", ps, "required", "name", "parameters",
                                              "additionalProperties", 0));
    }
    if (want && !schema) {
        json_decref(alts);
        return BAD("tool_choice", "'tool_choice' names '%s', which is not among the tools", want);
    }
    if (!want) schema = json_pack("{s:s, s:i, s:{s:o}}", "type", "array", "minItems", 1, "items", "anyOf", alts);
    else json_decref(alts);
    bool ok = schema ? set_schema(schema, "tool_choice", p, e) : srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    json_decref(schema);
    p->tool_force = ok;
    if (ok && want && !(p->tool_force_name = strdup(want))) ok = srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    return ok;
}

bool srv_check_content(json_t *content, srv_error *e) {
    if (!content || json_is_null(content) || json_is_string(content)) return true;
    if (!json_is_array(content)) return BAD("messages", "a message's 'content' must be a string or a list of parts");
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type");
        if (!json_is_object(part) || !json_is_string(type))
            return BAD("messages", "a content part must be an object with a 'type' and, for text, a string 'text'");
        if (strcmp(json_string_value(type), "text") != 0)
            return BAD("messages", "content parts of type '%s' are not supported (only 'text')", json_string_value(type));
        if (!json_is_string(json_object_get(part, "text")))
            return BAD("messages", "a content part must be an object with a 'type' and, for text, a string 'text'");
    }
    return true;
}

static bool parse_messages(json_t *o, srv_params *p, srv_error *e) {
    json_t *m = json_object_get(o, "messages");
    if (!m || json_is_null(m)) return BAD("messages", "'messages' is required");
    if (!json_is_array(m) || json_array_size(m) == 0) return BAD("messages", "'messages' must be a non-empty list");
    size_t i;
    json_t *msg;
    json_array_foreach(m, i, msg) {
        if (!json_is_object(msg)) return BAD("messages", "messages[%zu] must be an object", i);
        json_t *role = json_object_get(msg, "role");
        if (!json_is_string(role) || json_string_length(role) == 0)
            return BAD("messages", "messages[%zu] needs a string 'role'", i);
        if (!srv_check_content(json_object_get(msg, "content"), e)) return false;
    }
    p->messages = json_incref(m);
    static const char *const arrays[] = {"tools", "documents"};
    json_t **dst[] = {&p->tools, &p->documents};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(o, arrays[i]);
        if (!v || json_is_null(v)) continue;
        if (!json_is_array(v)) return BAD(arrays[i], "'%s' must be a list", arrays[i]);
        *dst[i] = json_incref(v);
    }
    json_t *tc = json_object_get(o, "tool_choice");
    const char *tcs = json_string_value(tc);
    if (tc && !json_is_null(tc) && !(tcs && (!strcmp(tcs, "auto") || !strcmp(tcs, "none")))) {
        if (!(tcs && !strcmp(tcs, "required")) && !json_is_object(tc))
            return BAD("tool_choice", "'tool_choice' must be \"auto\", \"none\", \"required\" or a function");
        if (!force_tools(tc, p, e)) return false;
    }
    p->tool_choice_none = tcs && !strcmp(tcs, "none");
    json_t *kw = json_object_get(o, "chat_template_kwargs");
    if (kw && !json_is_null(kw)) {
        if (!json_is_object(kw)) return BAD("chat_template_kwargs", "'chat_template_kwargs' must be an object");
        p->template_kwargs = json_deep_copy(kw);
        if (!p->template_kwargs) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    /* OpenAI's reasoning_effort reaches the template as the variable of
     * that name (gpt-oss's "Reasoning: low|medium|high"), as vLLM and
     * llama-server pass it; chat_template_kwargs' own value wins */
    json_t *re = json_object_get(o, "reasoning_effort");
    if (re && !json_is_null(re)) {
        const char *v = json_string_value(re);
        if (!v || (strcmp(v, "minimal") && strcmp(v, "low") && strcmp(v, "medium") && strcmp(v, "high")))
            return BAD("reasoning_effort", "'reasoning_effort' must be \"minimal\", \"low\", \"medium\" or \"high\"");
        if (!p->template_kwargs && !(p->template_kwargs = json_object()))
            return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        if (!json_object_get(p->template_kwargs, "reasoning_effort"))
            json_object_set_new(p->template_kwargs, "reasoning_effort", json_string(v));
    }
    return true;
}

static bool token_list(json_t *a, srv_prompt *out, srv_error *e) {
    size_t n = json_array_size(a);
    out->ids = malloc((n ? n : 1) * sizeof(int32_t));
    if (!out->ids) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(a, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > INT32_MAX)
            return BAD("prompt", "token ids in 'prompt' must be non-negative integers");
        out->ids[i] = (int32_t)json_integer_value(t);
    }
    out->n_ids = (int)n;
    return true;
}

/* prompt: a string, a list of strings, a list of token ids, or a list of
 * lists of token ids. */
static bool parse_prompts(json_t *o, srv_params *p, srv_error *e) {
    json_t *v = json_object_get(o, "prompt");
    if (!v || json_is_null(v)) return BAD("prompt", "'prompt' is required");
    if (json_is_string(v)) {
        p->prompts[0].text = strndup(json_string_value(v), json_string_length(v));
        p->n_prompts = 1;
        return p->prompts[0].text ? true : srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return BAD("prompt", "'prompt' must be a string, a list of strings or a list of token ids");
    json_t *first = json_array_get(v, 0);
    if (json_is_integer(first)) {
        p->n_prompts = 1;
        return token_list(v, &p->prompts[0], e);
    }
    if (json_array_size(v) > SRV_MAX_PROMPTS)
        return BAD("prompt", "'prompt' has %zu prompts; at most %d are allowed", json_array_size(v), SRV_MAX_PROMPTS);
    size_t i;
    json_t *item;
    json_array_foreach(v, i, item) {
        srv_prompt *q = &p->prompts[p->n_prompts++];
        if (json_is_string(item)) {
            q->text = strndup(json_string_value(item), json_string_length(item));
            if (!q->text) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        } else if (json_is_array(item) && json_array_size(item) > 0) {
            if (!token_list(item, q, e)) return false;
        } else {
            return BAD("prompt", "'prompt' must be a string, a list of strings or a list of token ids");
        }
    }
    return true;
}

/* ------------------------------------------------------------ the request */

static bool parse_object(srv_kind kind, json_t *o, uint64_t seed_default, srv_params *p, srv_error *e) {
    json_t *model = json_object_get(o, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) return BAD("model", "'model' must be a string");
        p->model = strdup(json_string_value(model));
    }
    long long n = 1, max_tokens = -1, mct = -1, seed = -1, top_k = 0, top_lp = 0;
    if (!get_int(o, "n", 1, SRV_MAX_PROMPTS, &n, e)) return false;
    p->n = (int)n;
    json_t *best_of = json_object_get(o, "best_of");
    if (best_of && !json_is_null(best_of) && !(json_is_integer(best_of) && json_integer_value(best_of) == n))
        return BAD("best_of", "'best_of' must equal 'n' (no ranking of extra choices)");
    json_t *lora = json_object_get(o, "lora");
    p->lora_given = lora && !json_is_null(lora);
    if (p->lora_given && !srv_parse_lora(lora, "lora", p->lora_id, p->lora_scale, &p->n_lora, e)) return false;
    json_t *pred = json_object_get(o, "prediction");
    if (pred && !json_is_null(pred)) { /* OpenAI's predicted outputs: {"type": "content", "content": text or parts} */
        const char *type = json_string_value(json_object_get(pred, "type"));
        json_t *content = json_object_get(pred, "content");
        if (!type || strcmp(type, "content") != 0)
            return BAD("prediction", "'prediction' must be {\"type\": \"content\", \"content\": ...}");
        loom_strbuf b = {0};
        loom_status st = NULL;
        bool ok = json_is_string(content) || json_is_array(content);
        if (json_is_string(content)) st = loom_strbuf_append(&b, json_string_value(content), json_string_length(content));
        size_t i;
        json_t *part;
        if (json_is_array(content)) json_array_foreach(content, i, part) {
            json_t *text = json_object_get(part, "text");
            const char *pt = json_string_value(json_object_get(part, "type"));
            if (!pt || strcmp(pt, "text") != 0 || !json_is_string(text)) {
                ok = false;
                break;
            }
            if (!st) st = loom_strbuf_append(&b, json_string_value(text), json_string_length(text));
        }
        if (ok && !st) p->prediction = strdup(b.data ? b.data : "");
        loom_strbuf_free(&b);
        if (st || (ok && !p->prediction)) {
            loom_status_free(st);
            return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        }
        if (!ok) return BAD("prediction", "the prediction's content must be a string or a list of text parts");
    }
    if (!srv_get_bool(o, "echo", &p->echo, e)) return false;
    if (p->echo && kind == SRV_CHAT) return BAD("echo", "'echo' is a completions parameter (POST /v1/completions)");
    /* OpenAI fields whose meaning loom cannot give: refused, not ignored */
    json_t *modalities = json_object_get(o, "modalities");
    size_t mi;
    json_t *mv;
    if (json_is_array(modalities)) json_array_foreach(modalities, mi, mv) if (!json_is_string(mv) || strcmp(json_string_value(mv), "text") != 0)
        return BAD("modalities", "only text output is supported ('modalities': [\"text\"])");
    static const char *const unsupported[][2] = {
        {"audio", "audio output is not supported"},
        {"web_search_options", "web search is not supported"},
        {"functions", "'functions' is the deprecated form of 'tools': send tools"},
        {"function_call", "'function_call' is the deprecated form of 'tool_choice': send tool_choice"},
    };
    for (size_t k = 0; k < sizeof unsupported / sizeof unsupported[0]; k++) {
        json_t *v = json_object_get(o, unsupported[k][0]);
        if (v && !json_is_null(v)) return BAD(unsupported[k][0], "%s", unsupported[k][1]);
    }
    json_t *suffix = json_object_get(o, "suffix");
    if (suffix && !json_is_null(suffix)) {
        if (kind == SRV_CHAT) return BAD("suffix", "'suffix' is a completions parameter (POST /v1/completions)");
        if (!json_is_string(suffix)) return BAD("suffix", "'suffix' must be a string");
        if (p->echo) return BAD("suffix", "'suffix' and 'echo' do not go together");
        p->suffix = strdup(json_string_value(suffix));
    }
    /* echo: 0 tokens is the prompt's log-probabilities alone (lm-evaluation-harness's log-likelihoods) */
    if (!get_int(o, "max_tokens", p->echo ? 0 : 1, INT32_MAX, &max_tokens, e)) return false;
    if (!get_int(o, "max_completion_tokens", p->echo ? 0 : 1, INT32_MAX, &mct, e)) return false;
    p->max_tokens = (int)(mct >= 0 ? mct : max_tokens);
    p->sampling = loom_sampling_defaults();
    p->sampling.temperature = 1.0f;
    p->sampling.top_k = 0;
    p->sampling.top_p = 1.0f;
    p->sampling.min_p = 0.0f;
    loom_sampling_params *sp = &p->sampling;
    if (!get_float(o, "temperature", 0, 2, &sp->temperature, e)) return false;
    if (!get_float(o, "top_p", 0, 1, &sp->top_p, e)) return false;
    if (sp->top_p <= 0) return BAD("top_p", "'top_p' must be greater than 0");
    if (!get_int(o, "top_k", -1, INT32_MAX, &top_k, e)) return false;
    sp->top_k = top_k < 0 ? 0 : (int32_t)top_k;
    if (!get_float(o, "min_p", 0, 1, &sp->min_p, e)) return false;
    if (!get_float(o, "presence_penalty", -2, 2, &sp->presence_penalty, e)) return false;
    if (!get_float(o, "frequency_penalty", -2, 2, &sp->frequency_penalty, e)) return false;
    if (!get_float(o, "repetition_penalty", 1e-6, 100, &sp->repeat_penalty, e)) return false;
    long long last_n = sp->repeat_last_n; /* llama-server's: the tokens the repetition penalty looks back on */
    if (!get_int(o, "repeat_last_n", 0, 65536, &last_n, e)) return false;
    sp->repeat_last_n = (int32_t)last_n;
    if (!parse_logit_bias(o, p, e)) return false;
    if (!get_int(o, "seed", INT64_MIN, INT64_MAX, &seed, e)) return false;
    json_t *sv = json_object_get(o, "seed");
    sp->seed = sv && !json_is_null(sv) ? (uint64_t)seed : seed_default;
    if (!srv_get_bool(o, "ignore_eos", &p->ignore_eos, e)) return false;
    if (!srv_get_bool(o, "infill_sampler", &sp->infill, e)) return false; /* llama.cpp's (sampler.h); native.h sets it */
    if (!parse_llama_samplers(o, p, e)) return false;
    json_t *rf = json_object_get(o, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *t = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        if (!json_is_string(t)) return BAD("response_format", "'response_format' must be an object with a string 'type'");
        if (!strcmp(json_string_value(t), "json_object") && !constrain("response_format", p, e)) return false;
        sp->json_object = !strcmp(json_string_value(t), "json_object");
        if (!strcmp(json_string_value(t), "json_schema")) {
            if (!parse_schema(rf, p, e)) return false;
        } else if (strcmp(json_string_value(t), "text") != 0 && !sp->json_object) { /* not silently ignored */
            return BAD("response_format", "'response_format' of type '%s' is not supported ('text', 'json_object', "
                       "'json_schema')", json_string_value(t));
        }
    }
    if (!parse_guided(o, p, e)) return false;
    if (!srv_get_bool(o, "stream", &p->stream, e)) return false;
    json_t *so = json_object_get(o, "stream_options");
    if (so && !json_is_null(so)) {
        if (!p->stream) return BAD("stream_options", "'stream_options' is only allowed with 'stream': true");
        if (!json_is_object(so)) return BAD("stream_options", "'stream_options' must be an object");
        if (!srv_get_bool(so, "include_usage", &p->include_usage, e)) return false;
    }
    p->parse_special = true;
    if (!srv_get_bool(o, "parse_special", &p->parse_special, e)) return false;
    if (!parse_stop(o, p, e)) return false;
    if (kind == SRV_CHAT) {
        if (!srv_get_bool(o, "logprobs", &p->logprobs, e)) return false;
        if (!get_int(o, "top_logprobs", 0, 20, &top_lp, e)) return false;
        json_t *tl = json_object_get(o, "top_logprobs");
        if (tl && !json_is_null(tl) && !p->logprobs)
            return BAD("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        p->top_logprobs = (int)top_lp;
        p->add_generation_prompt = true;
        if (!srv_get_bool(o, "add_generation_prompt", &p->add_generation_prompt, e)) return false;
        return parse_messages(o, p, e);
    }
    long long lp = -1;
    if (!get_int(o, "logprobs", 0, 20, &lp, e)) return false; /* completions: the number of alternatives */
    p->logprobs = lp >= 0;
    p->top_logprobs = lp > 0 ? (int)lp : 0;
    p->add_special = true;
    if (!srv_get_bool(o, "add_special_tokens", &p->add_special, e)) return false;
    if (!parse_prompts(o, p, e)) return false;
    if (p->n_prompts * p->n > SRV_MAX_PROMPTS)
        return BAD("n", "%d prompts x 'n' %d is %d choices; at most %d are allowed", p->n_prompts, p->n,
                   p->n_prompts * p->n, SRV_MAX_PROMPTS);
    return true;
}

json_t *srv_parse_body(const char *body, size_t len, srv_error *e) {
    json_error_t je;
    json_t *o = json_loadb(body, len, 0, &je);
    if (!o) {
        BAD(NULL, "the body is not valid JSON: %s (line %d, column %d)", je.text, je.line, je.column);
    } else if (!json_is_object(o)) {
        json_decref(o);
        o = NULL;
        BAD(NULL, "the body must be a JSON object");
    }
    return o;
}

bool srv_parse_lora(json_t *list, const char *param, int *ids, float *scales, int *n, srv_error *e) {
    *n = 0;
    if (!json_is_array(list))
        return srv_fail(e, 400, "invalid_request_error", param, NULL,
                        "'%s' must be a list of {\"id\": adapter, \"scale\": number}", param);
    size_t i;
    json_t *it;
    json_array_foreach(list, i, it) {
        json_t *id = json_object_get(it, "id"), *sc = json_object_get(it, "scale");
        if (!json_is_object(it) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= SRV_MAX_LORA || (sc && !json_is_null(sc) && !json_is_number(sc)))
            return srv_fail(e, 400, "invalid_request_error", param, NULL,
                            "'%s' item %zu must be {\"id\": 0..%d, \"scale\": number}", param, i, SRV_MAX_LORA - 1);
        const double v = sc && json_is_number(sc) ? json_number_value(sc) : 0.0; /* llama-server: no scale, 0 */
        if (!isfinite(v) || fabs(v) > 1e6)
            return srv_fail(e, 400, "invalid_request_error", param, NULL, "'%s' item %zu: the scale is out of range",
                            param, i);
        int k = 0;
        while (k < *n && ids[k] != (int)json_integer_value(id)) k++;
        ids[k] = (int)json_integer_value(id); /* a repeated id: the last scale, as llama-server's map keeps */
        scales[k] = (float)v;
        if (k == *n) (*n)++;
    }
    return true;
}

bool srv_parse_request(srv_kind kind, const char *body, size_t len, uint64_t seed_default, srv_params *out,
                       srv_error *e) {
    memset(out, 0, sizeof *out);
    out->kind = kind;
    json_t *o = srv_parse_body(body, len, e);
    if (!o) return false;
    bool ok = parse_object(kind, o, seed_default, out, e);
    json_decref(o);
    if (!ok) srv_params_free(out);
    return ok;
}

void srv_params_free(srv_params *p) {
    free(p->model);
    free(p->suffix);
    free(p->prediction);
    free(p->schema);
    free(p->grammar);
    for (int i = 0; i < p->n_dry_breakers; i++) free(p->dry_breakers[i]);
    free(p->dry_breakers);
    free(p->bias_token);
    free(p->bias_value);
    free(p->tool_force_name);
    for (int i = 0; i < p->n_stop; i++) free(p->stop[i]);
    json_decref(p->messages);
    json_decref(p->tools);
    json_decref(p->documents);
    json_decref(p->template_kwargs);
    for (int i = 0; i < p->n_prompts; i++) {
        free(p->prompts[i].text);
        free(p->prompts[i].ids);
    }
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------ output */

char *srv_dump(const json_t *j) { return json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8)); }

void srv_sse_event(loom_strbuf *out, const char *name, json_t *data) {
    char *s = out && data ? srv_dump(data) : NULL;
    json_decref(data);
    if (!s) return;
    loom_status st = loom_strbuf_append(out, "event: ", 7);
    if (!st) st = loom_strbuf_append(out, name, strlen(name));
    if (!st) st = loom_strbuf_append(out, "\ndata: ", 7);
    if (!st) st = loom_strbuf_append(out, s, strlen(s));
    if (!st) st = loom_strbuf_append(out, "\n\n", 2);
    loom_status_free(st);
    free(s);
}

json_t *srv_error_obj(const srv_error *e) {
    json_t *err = json_pack("{s:{s:s, s:s, s:s?, s:s?}}", "error", "message", e->message, "type",
                            e->type ? e->type : "invalid_request_error", "param", e->param, "code", e->code);
    if (!err) { /* e.g. a message that is not UTF-8: say less */
        err = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", "invalid request", "type",
                        "invalid_request_error", "param", "code");
    }
    return err;
}

char *srv_error_json(const srv_error *e) {
    json_t *err = srv_error_obj(e);
    char *s = err ? srv_dump(err) : NULL;
    json_decref(err);
    return s;
}

json_t *srv_json_text(const char *s, size_t len) {
    if (loom_utf8_valid(s, len)) return json_stringn(s, len);
    loom_utf8_stream u;
    loom_utf8_stream_init(&u);
    loom_strbuf b = {0};
    loom_status st = loom_utf8_stream_push(&u, s, len, &b);
    if (!st) st = loom_utf8_stream_flush(&u, &b);
    json_t *j = st ? NULL : json_stringn(b.data ? b.data : "", b.len);
    loom_status_free(st);
    loom_strbuf_free(&b);
    return j;
}
