/*
 * tests/test_serve.c — the server's pure parts: OpenAI request parsing,
 * stop strings over streamed pieces, the reasoning, harmony and tool-call
 * splits of a reply, the Responses and Messages APIs' requests and output, the
 * KV block pool and prefix cache,
 * and the sampler's penalties and log-probabilities.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "launch/serve/anthropic.h"
#include "launch/serve/harmony.h"
#include "launch/serve/native.h"
#include "launch/serve/openai.h"
#include "launch/serve/reasoning.h"
#include "launch/serve/responses.h"
#include "launch/serve/tools.h"
#include "launch/serve/stop.h"
#include "runtime/kv_blocks.h"
#include "runtime/sampler.h"

/* ------------------------------------------------------------ parsing */

static bool parse(srv_kind k, const char *body, srv_params *p, srv_error *e) {
    return srv_parse_request(k, body, strlen(body), 42, p, e);
}

Test(openai, chat_defaults_and_fields) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_CHAT,
                    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":7,"
                    "\"temperature\":0,\"stop\":\"\\n\",\"logprobs\":true,\"top_logprobs\":3,\"seed\":-1,"
                    "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"unknown_field\":[1,2]}",
                    &p, &e),
              "%s", e.message);
    cr_assert_str_eq(p.model, "m");
    cr_assert_eq(p.max_tokens, 7);
    cr_assert_eq(p.sampling.temperature, 0.0f);
    cr_assert_eq(p.sampling.top_p, 1.0f, "OpenAI's default top_p");
    cr_assert_eq(p.n_stop, 1);
    cr_assert_str_eq(p.stop[0], "\n");
    cr_assert(p.logprobs && p.top_logprobs == 3 && p.stream && p.include_usage);
    cr_assert_eq(p.sampling.seed, UINT64_MAX, "seed -1 is a seed like any other");
    srv_params_free(&p);
    cr_assert(parse(SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &p, &e));
    cr_assert_eq(p.max_tokens, -1);
    cr_assert_eq(p.sampling.temperature, 1.0f);
    cr_assert_eq(p.sampling.seed, 42u, "the server's seed when none is given");
    srv_params_free(&p);
}

/* llama-server's /completion (native.h): translated into the completions
 * request it asks for, with llama-server's defaults and names. */
static bool native(const char *body, srv_params *p, srv_native *n, srv_error *e) {
    char *oai = NULL;
    if (!srv_native_request(NULL, 4096, body, strlen(body), false, &oai, n, e)) return false;
    const bool ok = srv_parse_request(SRV_COMPLETION, oai, strlen(oai), 42, p, e);
    free(oai);
    return ok;
}

Test(native, completion_defaults_names_and_samplers) {
    srv_params p;
    srv_native n;
    srv_error e;
    cr_assert(native("{\"prompt\":\"hi\"}", &p, &n, &e), "%s", e.message);
    cr_assert(p.sampling.temperature == 0.8f && p.sampling.top_k == 40 && p.sampling.top_p == 0.95f &&
              p.sampling.min_p == 0.05f && !p.sampling.infill, "llama-server's defaults");
    cr_assert_eq(p.max_tokens, -1);
    cr_assert(!n.probs && !n.discard && n.n_indent == 0);
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(native("{\"prompt\":[1,2,3],\"n_predict\":5,\"repeat_penalty\":1.1,\"repeat_last_n\":32,"
                     "\"n_probs\":3,\"logit_bias\":[[5,false],[7,1.5]],\"stop\":[\"x\"],\"seed\":9,"
                     "\"samplers\":[\"top_k\",\"top_p\",\"infill\"],\"n_indent\":4,\"json_schema\":{\"type\":\"object\"}}",
                     &p, &n, &e),
              "%s", e.message);
    cr_assert(p.prompts[0].n_ids == 3 && p.max_tokens == 5 && p.sampling.repeat_last_n == 32 && p.sampling.seed == 9u);
    cr_assert(p.sampling.repeat_penalty == 1.0f, "penalties not among the samplers: none");
    cr_assert(p.logprobs && p.top_logprobs == 3 && n.probs && n.n_probs == 3 && n.n_indent == 4);
    cr_assert(p.sampling.infill && p.sampling.temperature == 1.0f && p.sampling.min_p == 0 && p.sampling.top_k == 40,
              "samplers: no temperature (1) and no min-p, top-k kept, infill last");
    cr_assert_eq(p.sampling.n_logit_bias, 2);
    cr_assert(p.bias_token[0] == 5 && p.bias_value[0] == -100 && p.bias_token[1] == 7 && p.bias_value[1] == 1.5f);
    cr_assert(p.schema != NULL, "json_schema is structured output");
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(native("{\"prompt\":\"hi\",\"n_predict\":0,\"samplers\":\"kt\"}", &p, &n, &e), "%s", e.message);
    cr_assert(n.discard && p.max_tokens == 1, "n_predict 0: the prompt into the cache, one token not sent");
    cr_assert(p.sampling.top_p == 1 && p.sampling.min_p == 0 && p.sampling.temperature == 0.8f,
              "letters: top-k and temperature only");
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(native("{\"prompt\":\"hi\",\"typical_p\":0.5,\"dry_multiplier\":0.8,\"dry_base\":0.5,\"xtc_probability\":0.3,"
                     "\"dry_sequence_breakers\":[\"x\",\"yz\"],\"samplers\":[\"dry\",\"top_k\",\"xtc\",\"temperature\"]}",
                     &p, &n, &e),
              "%s", e.message);
    cr_assert(p.sampling.typical_p == 1 && p.sampling.dry_multiplier == 0.8f && p.sampling.dry_base == 1.75f &&
                  p.sampling.xtc_probability == 0.3f && p.sampling.n_dry_breakers == 2 &&
                  !strcmp(p.sampling.dry_breakers[1], "yz"),
              "typical left out of 'samplers'; DRY and XTC taken; a base below 1 is llama-server's default");
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(!native("{\"prompt\":\"hi\",\"dry_sequence_breakers\":[1]}", &p, &n, &e));
    cr_assert(e.status == 400 && !strcmp(e.param, "dry_sequence_breakers"), "%s", e.message);
    srv_native_free(&n);
    cr_assert(native("{\"prompt\":\"hi\",\"dry_multiplier\":1}", &p, &n, &e), "%s", e.message);
    cr_assert(p.sampling.n_dry_breakers == 4 && !strcmp(p.sampling.dry_breakers[0], "\n"), "llama.cpp's breakers");
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(native("{\"prompt\":\"hi\",\"mirostat\":2,\"mirostat_tau\":3,\"mirostat_eta\":0.2}", &p, &n, &e), "%s",
              e.message);
    cr_assert(p.sampling.mirostat == 2 && p.sampling.mirostat_tau == 3 && p.sampling.mirostat_eta == 0.2f &&
                  json_integer_value(json_object_get(n.settings, "mirostat")) == 2 &&
                  json_number_value(json_object_get(n.settings, "mirostat_tau")) == 3,
              "mirostat taken, and echoed in generation_settings");
    srv_params_free(&p), srv_native_free(&n);
    static const char *const bad_miro[][2] = {{"{\"prompt\":\"a\",\"mirostat\":3}", "mirostat"},
                                              {"{\"prompt\":\"a\",\"mirostat\":2,\"mirostat_tau\":-1}", "mirostat_tau"}};
    for (size_t i = 0; i < 2; i++) {
        cr_assert(!native(bad_miro[i][0], &p, &n, &e), "%s accepted", bad_miro[i][0]);
        cr_assert(e.status == 400 && e.param && !strcmp(e.param, bad_miro[i][1]), "%s: %s", bad_miro[i][0], e.message);
        srv_native_free(&n);
    }
    cr_assert(native("{\"prompt\":\"hi\"}", &p, &n, &e), "%s", e.message);
    cr_assert(p.sampling.mirostat == 0 && json_integer_value(json_object_get(n.settings, "mirostat")) == 0 &&
                  fabs(json_number_value(json_object_get(n.settings, "mirostat_eta")) - 0.1) < 1e-6,
              "mirostat off by default, its defaults echoed");
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(native("{\"prompt\":\"hi\",\"grammar\":\"root ::= [a-z]+\"}", &p, &n, &e), "%s", e.message);
    cr_assert(p.sampling.grammar && !strcmp(p.sampling.grammar, "root ::= [a-z]+"), "grammar: GBNF");
    srv_params_free(&p), srv_native_free(&n);
    cr_assert(!native("{\"prompt\":\"hi\",\"grammar\":\"root ::= x\"}", &p, &n, &e));
    cr_assert(e.status == 400 && !strcmp(e.param, "grammar") && strstr(e.message, "'x' is used but not defined"), "%s",
              e.message);
    srv_native_free(&n);
    cr_assert(native("{\"prompt\":\"hi\",\"lora\":[{\"id\":1,\"scale\":0.5},{\"id\":0}]}", &p, &n, &e), "%s",
              e.message);
    cr_assert(p.lora_given && p.n_lora == 2 && p.lora_id[0] == 1 && p.lora_scale[0] == 0.5f && p.lora_id[1] == 0 &&
                  p.lora_scale[1] == 0,
              "lora: llama-server's list (an entry without a scale: 0)");
    srv_params_free(&p), srv_native_free(&n);
    static const char *const bad_lora[] = {"\"x\"", "[1]", "[{\"id\":-1}]", "[{\"id\":16}]", "[{\"id\":0,\"scale\":\"a\"}]"};
    for (size_t i = 0; i < sizeof bad_lora / sizeof bad_lora[0]; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"prompt\":\"hi\",\"lora\":%s}", bad_lora[i]);
        cr_assert(!native(body, &p, &n, &e), "%s accepted", body);
        cr_assert(e.status == 400 && e.param && !strcmp(e.param, "lora"), "%s: %s", body, e.message);
        srv_native_free(&n);
    }
    static const char *const bad[][2] = {
        {"{}", "prompt"},
        {"{\"prompt\":[1,\"a\"]}", "prompt"},
        {"{\"prompt\":\"a\",\"grammar\":\"root ::= x\",\"grammar_lazy\":true}", "grammar_lazy"},
        {"{\"prompt\":\"a\",\"samplers\":[\"temperature\",\"top_k\"]}", "samplers"},
        {"{\"prompt\":\"a\",\"samplers\":[\"infill\",\"top_k\"]}", "samplers"},
        {"{\"prompt\":\"a\",\"samplers\":[\"nope\"]}", "samplers"},
        {"{\"prompt\":\"a\",\"logit_bias\":[[\"Hello\",1]]}", "logit_bias"},
        {"{\"prompt\":\"a\",\"n_probs\":21}", "n_probs"},
        {"{\"prompt\":\"a\",\"n_predict\":-2}", "n_predict"},
        {"{\"prompt\":{\"prompt_string\":\"a\",\"multimodal_data\":[\"x\"]}}", "prompt"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *oai = NULL;
        cr_assert(!srv_native_request(NULL, 4096, bad[i][0], strlen(bad[i][0]), false, &oai, &n, &e), "%s accepted",
                  bad[i][0]);
        cr_assert(e.status == 400 && e.param && !strcmp(e.param, bad[i][1]), "%s: %d %s (%s)", bad[i][0], e.status,
                  e.param ? e.param : "-", e.message);
    }
}

/* response_fields (llama.vim's): the paths found, each flat under its path. */
Test(native, response_fields) {
    srv_params p;
    srv_native n;
    srv_error e;
    cr_assert(native("{\"prompt\":\"a\",\"response_fields\":[\"content\",\"timings/prompt_n\",\"timings/nope\","
                     "\"truncated\"]}",
                     &p, &n, &e),
              "%s", e.message);
    json_t *o = json_pack("{s:s, s:b, s:{s:i, s:f}, s:i}", "content", "x", "truncated", 0, "timings", "prompt_n", 7,
                          "prompt_ms", 1.5, "tokens_cached", 3);
    json_t *r = srv_native_fields(&n, o);
    cr_assert_eq(json_object_size(r), 3);
    cr_assert_str_eq(json_string_value(json_object_get(r, "content")), "x");
    cr_assert_eq(json_integer_value(json_object_get(r, "timings/prompt_n")), 7);
    cr_assert(json_is_false(json_object_get(r, "truncated")));
    json_decref(r);
    srv_params_free(&p), srv_native_free(&n);
    char *oai = NULL;
    cr_assert(!srv_native_request(NULL, 4096, "{\"prompt\":\"a\",\"response_fields\":[1]}", 35, false, &oai, &n, &e));
}

/* n_indent: the first character of a line indented less than asked ends
 * the reply there; the cursor's line never does; state carries across pieces. */
Test(native, indent_cut) {
    bool ls = false;
    int ind = 0;
    cr_assert_eq(srv_native_indent_cut("x = 1\n    y\n  z", 15, 4, &ls, &ind), 14);
    ls = false, ind = 0;
    cr_assert_eq(srv_native_indent_cut("a\n\tb", 4, 1, &ls, &ind), -1, "a tab counts one");
    ls = false, ind = 0;
    cr_assert_eq(srv_native_indent_cut("a\n  ", 4, 4, &ls, &ind), -1);
    cr_assert_eq(srv_native_indent_cut("  b", 3, 4, &ls, &ind), -1, "4 columns over two pieces");
    cr_assert_eq(srv_native_indent_cut("\nc", 2, 4, &ls, &ind), 1);
}

/* reasoning_effort reaches the template as a variable (gpt-oss), unless
 * chat_template_kwargs names it; other values are refused */
Test(openai, reasoning_effort_is_a_template_variable) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"reasoning_effort\":\"low\"}",
                    &p, &e),
              "%s", e.message);
    cr_assert_str_eq(json_string_value(json_object_get(p.template_kwargs, "reasoning_effort")), "low");
    srv_params_free(&p);
    cr_assert(parse(SRV_CHAT,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"reasoning_effort\":\"high\","
                    "\"chat_template_kwargs\":{\"reasoning_effort\":\"medium\",\"x\":1}}",
                    &p, &e),
              "%s", e.message);
    cr_assert_str_eq(json_string_value(json_object_get(p.template_kwargs, "reasoning_effort")), "medium");
    cr_assert_eq(json_integer_value(json_object_get(p.template_kwargs, "x")), 1);
    srv_params_free(&p);
    cr_assert(!parse(SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"reasoning_effort\":\"max\"}",
                     &p, &e));
    cr_assert_str_eq(e.param, "reasoning_effort");
}

Test(openai, max_completion_tokens_wins_and_content_parts) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_CHAT,
                    "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                    "{\"type\":\"text\",\"text\":\"b\"}]}],\"max_tokens\":5,\"max_completion_tokens\":9}",
                    &p, &e),
              "%s", e.message);
    cr_assert_eq(p.max_tokens, 9);
    cr_assert(srv_check_content(json_object_get(json_array_get(p.messages, 0), "content"), &e));
    srv_params_free(&p);
}

Test(openai, response_format_and_tool_choice_are_not_ignored) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_CHAT,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":\"text\"},"
                    "\"tool_choice\":\"auto\"}",
                    &p, &e),
              "%s", e.message);
    srv_params_free(&p);
    cr_assert_not(parse(SRV_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                        "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{}}}",
                        &p, &e));
    cr_assert(e.status == 400 && !strcmp(e.param, "response_format") && strstr(e.message, "json_schema"), "%s", e.message);
    cr_assert(parse(SRV_CHAT,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":\"json_object\"}}",
                    &p, &e),
              "%s", e.message);
    cr_assert(p.sampling.json_object && !loom_sampling_is_plain_greedy(&p.sampling));
    srv_params_free(&p);
    cr_assert(parse(SRV_CHAT,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":"
                    "\"json_schema\",\"json_schema\":{\"name\":\"n\",\"schema\":{\"type\":\"object\",\"properties\":"
                    "{\"a\":{\"type\":\"integer\"}}}}}}",
                    &p, &e),
              "%s", e.message);
    cr_assert(p.sampling.json_schema && strstr(p.sampling.json_schema, "\"integer\"") &&
              !loom_sampling_is_plain_greedy(&p.sampling));
    srv_params_free(&p);
    cr_assert_not(parse(SRV_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":"
                        "\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"integer\",\"multipleOf\":2}}}}",
                        &p, &e));
    cr_assert(e.status == 400 && strstr(e.message, "'multipleOf' is not supported"), "%s", e.message);
    cr_assert_not(parse(SRV_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"response_format\":{\"type\":"
                        "\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"string\",\"pattern\":\"(?!a)\"}}}}",
                        &p, &e));
    cr_assert(e.status == 400 && strstr(e.message, "lookahead"), "%s", e.message);
    /* a forced call: the reply is held to the function's parameters, or a list of calls */
    cr_assert_not(parse(SRV_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                        "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}",
                        &p, &e));
    cr_assert(e.status == 400 && !strcmp(e.param, "tool_choice") && strstr(e.message, "no 'tools'"), "%s", e.message);
#define TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"," \
              "\"properties\":{\"x\":{\"type\":\"integer\"}}}}},{\"type\":\"function\",\"function\":{\"name\":\"g\"}}]"
    cr_assert(parse(SRV_CHAT,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]," TOOLS
                    ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}}}",
                    &p, &e),
              "%s", e.message);
    cr_assert(p.tool_force && !strcmp(p.tool_force_name, "f") && strstr(p.sampling.json_schema, "\"integer\""));
    srv_params_free(&p);
    cr_assert(parse(SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]," TOOLS ",\"tool_choice\":\"required\"}",
                    &p, &e),
              "%s", e.message);
    cr_assert(p.tool_force && !p.tool_force_name && strstr(p.sampling.json_schema, "\"minItems\":1") &&
              strstr(p.sampling.json_schema, "\"const\":\"g\""));
    srv_params_free(&p);
    cr_assert_not(parse(SRV_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]," TOOLS
                        ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"h\"}}}",
                        &p, &e));
    cr_assert(e.status == 400 && strstr(e.message, "'h', which is not among the tools"), "%s", e.message);
    cr_assert_not(parse(SRV_CHAT,
                        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]," TOOLS
                        ",\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"}}",
                        &p, &e));
    cr_assert(e.status == 400 && strstr(e.message, "both constrain"), "%s", e.message);
#undef TOOLS
}

/* llama-server's grammar and vLLM's guided_* / structured_outputs: one constraint a request. */
Test(openai, grammars_and_guided_fields) {
    srv_params p;
    srv_error e;
#define MSG "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
    static const char *const good[][2] = {
        {MSG "\"grammar\":\"root ::= [a-z]+\"}", "root ::= [a-z]+"},
        {MSG "\"guided_grammar\":\"root ::= \\\"x\\\"\"}", "root ::= \"x\""},
        {MSG "\"guided_choice\":[\"a\",\"b \\\"c\\\"\"]}", "root ::= \"a\" | \"b \\\"c\\\"\""},
        {MSG "\"structured_outputs\":{\"choice\":[\"yes\"]}}", "root ::= \"yes\""},
        {MSG "\"structured_outputs\":{\"grammar\":\"root ::= \\\"y\\\"\",\"disable_any_whitespace\":true}}",
         "root ::= \"y\""},
        {MSG "\"grammar\":\"\",\"guided_choice\":null}", NULL},
        {MSG "\"guided_regex\":\"\\\\d+\"}", "\\d+"},
        {MSG "\"structured_outputs\":{\"regex\":\"[ab]\"}}", "[ab]"},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        cr_assert(parse(SRV_CHAT, good[i][0], &p, &e), "%s: %s", good[i][0], e.message);
        cr_assert(good[i][1] ? p.sampling.grammar && !strcmp(p.sampling.grammar, good[i][1]) : !p.sampling.grammar,
                  "%s: %s", good[i][0], p.sampling.grammar ? p.sampling.grammar : "(none)");
        cr_assert(!good[i][1] || !loom_sampling_is_plain_greedy(&p.sampling));
        cr_assert_eq(p.sampling.grammar_regex, strstr(good[i][0], "regex") != NULL, "%s", good[i][0]);
        srv_params_free(&p);
    }
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":\"x\",\"guided_json\":\"{\\\"type\\\":\\\"integer\\\"}\"}", &p, &e),
              "%s", e.message);
    cr_assert(p.sampling.json_schema && strstr(p.sampling.json_schema, "integer"), "guided_json as text");
    srv_params_free(&p);
    cr_assert(parse(SRV_CHAT, MSG "\"structured_outputs\":{\"json\":{\"type\":\"object\"}}}", &p, &e), "%s", e.message);
    cr_assert(p.sampling.json_schema && !p.sampling.grammar);
    srv_params_free(&p);
    cr_assert(parse(SRV_CHAT, MSG "\"structured_outputs\":{\"json_object\":true}}", &p, &e), "%s", e.message);
    cr_assert(p.sampling.json_object);
    srv_params_free(&p);
    static const char *const bad[][3] = {
        {MSG "\"grammar\":\"root ::= x\"}", "grammar", "'x' is used but not defined"},
        {MSG "\"grammar\":[1]}", "grammar", "a GBNF grammar"},
        {MSG "\"guided_grammar\":\"root ::= \\\"a\\\"\",\"response_format\":{\"type\":\"json_object\"}}",
         "guided_grammar", "'guided_grammar' and 'response_format' both constrain"},
        {MSG "\"grammar\":\"root ::= \\\"a\\\"\",\"guided_choice\":[\"a\"]}", "guided_choice", "both constrain"},
        {MSG "\"guided_choice\":[]}", "guided_choice", "1 to 4096 strings"},
        {MSG "\"guided_choice\":[\"a\",2]}", "guided_choice", "1 to 4096 strings"},
        {MSG "\"guided_regex\":\"(a)\\\\1\"}", "guided_regex", "regex: backreferences"},
        {MSG "\"guided_regex\":\"a\",\"guided_grammar\":\"root ::= \\\"a\\\"\"}", "guided_regex", "both constrain"},
        {MSG "\"guided_json\":\"[1\"}", "guided_json", "a JSON schema"},
        {MSG "\"structured_outputs\":{\"pattern\":\"a\"}}", "structured_outputs", "'structured_outputs.pattern'"},
        {MSG "\"structured_outputs\":[]}", "structured_outputs", "an object"},
        {MSG "\"structured_outputs\":{\"json_object\":1}}", "structured_outputs", "a boolean"},
        {MSG "\"structured_outputs\":{\"choice\":[\"a\"],\"grammar\":\"root ::= \\\"a\\\"\"}}", "structured_outputs",
         "both constrain"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_not(parse(SRV_CHAT, bad[i][0], &p, &e), "%s accepted", bad[i][0]);
        cr_assert(e.status == 400 && e.param && !strcmp(e.param, bad[i][1]) && strstr(e.message, bad[i][2]),
                  "%s: %d %s: %s", bad[i][0], e.status, e.param ? e.param : "-", e.message);
    }
#undef MSG
}

Test(openai, logit_bias) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":\"x\",\"logit_bias\":{\"7\":-100,\"12\":2.5,\"07\":3}}", &p, &e),
              "%s", e.message);
    cr_assert_eq(p.sampling.n_logit_bias, 2, "\"07\" names token 7 again: the last value stays");
    cr_assert(p.sampling.bias_token[0] == 7 && p.sampling.bias_value[0] == 3.0f);
    cr_assert(p.sampling.bias_token[1] == 12 && p.sampling.bias_value[1] == 2.5f);
    cr_assert(!loom_sampling_is_plain_greedy(&(loom_sampling_params){.n_logit_bias = 1}));
    srv_params_free(&p);
    static const char *const bad[] = {"{\"prompt\":\"x\",\"logit_bias\":[1]}",
                                      "{\"prompt\":\"x\",\"logit_bias\":{\"-1\":1}}",
                                      "{\"prompt\":\"x\",\"logit_bias\":{\" 1\":1}}",
                                      "{\"prompt\":\"x\",\"logit_bias\":{\"1x\":1}}",
                                      "{\"prompt\":\"x\",\"logit_bias\":{\"99999999999\":1}}",
                                      "{\"prompt\":\"x\",\"logit_bias\":{\"1\":100.5}}",
                                      "{\"prompt\":\"x\",\"logit_bias\":{\"1\":\"5\"}}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_not(parse(SRV_COMPLETION, bad[i], &p, &e), "%s was taken", bad[i]);
        cr_assert(e.status == 400 && e.param && !strcmp(e.param, "logit_bias"), "%s: %d %s", bad[i], e.status, e.message);
    }
    loom_strbuf big = {0};
    static const char head[] = "{\"prompt\":\"x\",\"logit_bias\":{";
    cr_assert_null(loom_strbuf_append(&big, head, sizeof head - 1));
    for (int i = 0; i <= LOOM_LOGIT_BIAS_MAX; i++) {
        char kv[32];
        int n = snprintf(kv, sizeof kv, "%s\"%d\":1", i ? "," : "", i);
        cr_assert_null(loom_strbuf_append(&big, kv, (size_t)n));
    }
    cr_assert_null(loom_strbuf_append(&big, "}}", 2));
    cr_assert_not(parse(SRV_COMPLETION, big.data, &p, &e));
    cr_assert(strstr(e.message, "at most 300"), "%s", e.message);
    loom_strbuf_free(&big);
}

/* Runs text through a tool-call parser in pieces of `step` bytes (on
 * character boundaries: the tests' texts are ASCII but for one), with the
 * request's tools in tools_given. */
static json_t *tools_given;
static char *tools_run(loom_tool_syntax syntax, const char *text, size_t step, json_t **calls) {
    srv_tools t;
    cr_assert(srv_tools_init(&t, syntax, 7, tools_given));
    loom_strbuf out = {0};
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i += step)
        cr_assert_null(srv_tools_push(&t, text + i, i + step < n ? step : n - i, &out));
    cr_assert_null(srv_tools_flush(&t, &out));
    *calls = json_incref(t.calls);
    srv_tools_free(&t);
    char *r = strdup(out.data ? out.data : "");
    loom_strbuf_free(&out);
    return r;
}

static void expect_tools(loom_tool_syntax syntax, const char *text, const char *content, int n_calls,
                         const char *const *names, const char *const *args) {
    for (size_t step = 1; step <= strlen(text); step += step < 16 ? 1 : 16) {
        json_t *calls;
        char *got = tools_run(syntax, text, step, &calls);
        cr_assert_str_eq(got, content, "step %zu: got [%s], want [%s]", step, got, content);
        cr_assert_eq((int)json_array_size(calls), n_calls, "step %zu: %s", step, text);
        for (int k = 0; k < n_calls; k++) {
            json_t *c = json_array_get(calls, (size_t)k), *f = json_object_get(c, "function");
            cr_assert_str_eq(json_string_value(json_object_get(c, "type")), "function");
            cr_assert(!strncmp(json_string_value(json_object_get(c, "id")), "call_", 5));
            cr_assert_eq(strlen(json_string_value(json_object_get(c, "id"))), 29);
            cr_assert_str_eq(json_string_value(json_object_get(f, "name")), names[k]);
            cr_assert_str_eq(json_string_value(json_object_get(f, "arguments")), args[k]);
        }
        if (n_calls == 2)
            cr_assert_str_neq(json_string_value(json_object_get(json_array_get(calls, 0), "id")),
                              json_string_value(json_object_get(json_array_get(calls, 1), "id")));
        json_decref(calls);
        free(got);
    }
}

Test(tools, hermes_calls_out_of_streamed_text) {
    /* Qwen2.5's way: content, then blocks on their own lines */
    expect_tools(LOOM_TOOLS_HERMES, "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\", "
                 "\"days\": 2}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>",
                 "Let me check.", 2, (const char *const[]){"get_weather", "get_time"},
                 (const char *const[]){"{\"location\":\"Paris\",\"days\":2}", "{}"});
    /* arguments as a string, "parameters", non-ASCII kept */
    expect_tools(LOOM_TOOLS_HERMES, "<tool_call>{\"name\":\"f\",\"arguments\":\"{\\\"a\\\": 1}\"}</tool_call>", "", 1,
                 (const char *const[]){"f"}, (const char *const[]){"{\"a\": 1}"});
    expect_tools(LOOM_TOOLS_HERMES, "<tool_call>{\"name\":\"g\",\"parameters\":{\"city\":\"Z\xc3\xbcrich\"}}</tool_call>", "", 1,
                 (const char *const[]){"g"}, (const char *const[]){"{\"city\":\"Z\xc3\xbcrich\"}"});
    /* the model stopped before the closing tag: a whole call still counts */
    expect_tools(LOOM_TOOLS_HERMES, "<tool_call>\n{\"name\":\"f\",\"arguments\":{\"a\":[1,2]}}\n", "", 1, (const char *const[]){"f"},
                 (const char *const[]){"{\"a\":[1,2]}"});
    /* not calls: the text stays as written */
    expect_tools(LOOM_TOOLS_HERMES, "Say <tool_call>not json</tool_call> here ", "Say <tool_call>not json</tool_call> here ", 0, NULL,
                 NULL);
    expect_tools(LOOM_TOOLS_HERMES, "<tool_call>{\"arguments\":{}}</tool_call>", "<tool_call>{\"arguments\":{}}</tool_call>", 0, NULL,
                 NULL);
    expect_tools(LOOM_TOOLS_HERMES, "x <tool_call>{\"na", "x <tool_call>{\"na", 0, NULL, NULL);
    expect_tools(LOOM_TOOLS_HERMES, "a <tool_ca", "a <tool_ca", 0, NULL, NULL);
    expect_tools(LOOM_TOOLS_HERMES, "Hello,\n world \n", "Hello,\n world \n", 0, NULL, NULL);
    expect_tools(LOOM_TOOLS_HERMES, "<tool_call>{\"name\":\"f\"}</tool_call> and more", "and more", 1, (const char *const[]){"f"},
                 (const char *const[]){"{}"});
}

Test(tools, glm45_calls_out_of_streamed_text) {
    /* GLM-4.5's way (its template's tool section): the name, then key / value pairs */
    expect_tools(LOOM_TOOLS_GLM, "I'll check.\n<tool_call>get_weather\n<arg_key>location</arg_key>\n<arg_value>Paris</arg_value>\n"
                 "<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n<arg_key>units</arg_key>\n<arg_value>{\"t\": \"C\"}</arg_value>\n"
                 "</tool_call>\n<tool_call>get_time\n</tool_call>",
                 "I'll check.", 2, (const char *const[]){"get_weather", "get_time"},
                 (const char *const[]){"{\"location\":\"Paris\",\"days\":2,\"units\":{\"t\":\"C\"}}", "{}"});
    /* not calls: the text stays as written */
    expect_tools(LOOM_TOOLS_GLM, "a <tool_call>two words</tool_call>", "a <tool_call>two words</tool_call>", 0, NULL, NULL);
    expect_tools(LOOM_TOOLS_GLM, "<tool_call>f\n<arg_key>x</arg_key>\n</tool_call>", "<tool_call>f\n<arg_key>x</arg_key>\n</tool_call>",
                 0, NULL, NULL);
    expect_tools(LOOM_TOOLS_GLM, "<tool_call>{\"name\":\"f\"}</tool_call>", "<tool_call>{\"name\":\"f\"}</tool_call>", 0, NULL, NULL);
}

Test(tools, qwen3_coder_xml_calls_out_of_streamed_text) {
    /* Qwen3-Coder's template's way; values read as the tool's parameters' types say */
    tools_given = json_loads("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":"
                             "\"object\",\"properties\":{\"location\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"},"
                             "\"metric\":{\"type\":\"boolean\"},\"zip\":{\"type\":\"string\"},\"units\":{\"type\":\"object\"},"
                             "\"hours\":{\"type\":[\"number\",\"null\"]}}}}}]",
                             0, NULL);
    cr_assert_not_null(tools_given);
    expect_tools(LOOM_TOOLS_XML, "I'll check.\n<tool_call>\n<function=get_weather>\n<parameter=location>\nSan Francisco\n"
                 "</parameter>\n<parameter=days>\n2\n</parameter>\n<parameter=metric>\nTrue\n</parameter>\n<parameter=zip>\n"
                 "02110\n</parameter>\n<parameter=units>\n{\"t\": \"C\"}\n</parameter>\n<parameter=hours>\n1.5\n</parameter>\n"
                 "<parameter=note>\ntwo\nlines\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=get_time>\n"
                 "</function>\n</tool_call>",
                 "I'll check.", 2, (const char *const[]){"get_weather", "get_time"},
                 (const char *const[]){"{\"location\":\"San Francisco\",\"days\":2,\"metric\":true,\"zip\":\"02110\","
                                       "\"units\":{\"t\":\"C\"},\"hours\":1.5,\"note\":\"two\\nlines\"}",
                                       "{}"});
    /* a value that is not of its type stays text; null is null */
    expect_tools(LOOM_TOOLS_XML, "<tool_call><function=get_weather><parameter=days>soon</parameter><parameter=hours>null"
                 "</parameter></function></tool_call>",
                 "", 1, (const char *const[]){"get_weather"}, (const char *const[]){"{\"days\":\"soon\",\"hours\":null}"});
    /* not calls: the text stays as written */
    expect_tools(LOOM_TOOLS_XML, "a <tool_call>{\"name\":\"f\"}</tool_call>", "a <tool_call>{\"name\":\"f\"}</tool_call>", 0, NULL,
                 NULL);
    expect_tools(LOOM_TOOLS_XML, "<tool_call><function=f><parameter=x>1</function></tool_call>",
                 "<tool_call><function=f><parameter=x>1</function></tool_call>", 0, NULL, NULL);
    json_decref(tools_given);
    tools_given = NULL;
}

Test(tools, deepseek_and_kimi_calls_out_of_streamed_text) {
    /* DeepSeek-V3.1 (the section's tags are control tokens the server does not render) */
    expect_tools(LOOM_TOOLS_DEEPSEEK, "Checking.<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{\"city\": \"Paris\"}<｜tool▁call▁end｜>"
                 "<｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜>",
                 "Checking.", 2, (const char *const[]){"get_weather", "get_time"},
                 (const char *const[]){"{\"city\":\"Paris\"}", "{}"});
    /* R1 / V3: the name after "function", the arguments fenced */
    expect_tools(LOOM_TOOLS_DEEPSEEK, "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": \"ZÃ¼rich\"}\n```"
                 "<｜tool▁call▁end｜>", "", 1, (const char *const[]){"get_weather"},
                 (const char *const[]){"{\"city\":\"ZÃ¼rich\"}"});
    expect_tools(LOOM_TOOLS_DEEPSEEK, "a <｜tool▁call▁begin｜>f {}<｜tool▁call▁end｜>", "a <｜tool▁call▁begin｜>f {}<｜tool▁call▁end｜>",
                 0, NULL, NULL);
    /* Kimi K2 */
    expect_tools(LOOM_TOOLS_KIMI, "<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\":\"Paris\"}"
                 "<|tool_call_end|><|tool_call_begin|>functions.get_time:1<|tool_call_argument_begin|>{}<|tool_call_end|>",
                 "", 2, (const char *const[]){"get_weather", "get_time"}, (const char *const[]){"{\"city\":\"Paris\"}", "{}"});
    expect_tools(LOOM_TOOLS_KIMI, "x<|tool_call_begin|>functions.f:0 no args<|tool_call_end|>",
                 "x<|tool_call_begin|>functions.f:0 no args<|tool_call_end|>", 0, NULL, NULL);
}

Test(tools, mistral_calls_out_of_streamed_text) {
    const loom_tool_syntax M = LOOM_TOOLS_MISTRAL;
    /* Mistral Small 3.2 / Devstral / Ministral 3: each call opened by [TOOL_CALLS], none closed */
    expect_tools(M, "Let me look.[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]get_time[ARGS]{}", "Let me look.",
                 2, (const char *const[]){"get_weather", "get_time"}, (const char *const[]){"{\"city\":\"Paris\"}", "{}"});
    /* a call id (Mistral Small 3.1's [CALL_ID]) is skipped; trailing whitespace dropped */
    expect_tools(M, "[TOOL_CALLS]f[CALL_ID]a1b2c3d4e[ARGS]{\"x\": [1, 2]}\n", "", 1, (const char *const[]){"f"},
                 (const char *const[]){"{\"x\":[1,2]}"});
    /* Mistral Nemo: one JSON list */
    expect_tools(M, "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"k\": \"v\"}, \"id\": \"abcdefghi\"}, {\"name\": \"b\", "
                 "\"arguments\": {}}]", "", 2, (const char *const[]){"a", "b"}, (const char *const[]){"{\"k\":\"v\"}", "{}"});
    /* not calls: the text stays as written */
    expect_tools(M, "x [TOOL_CALLS]f[ARGS]not json", "x [TOOL_CALLS]f[ARGS]not json", 0, NULL, NULL);
    expect_tools(M, "[TOOL_CALLS][ARGS]{}", "[TOOL_CALLS][ARGS]{}", 0, NULL, NULL);
    expect_tools(M, "[TOOL_CALLS][1, 2]", "[TOOL_CALLS][1, 2]", 0, NULL, NULL);
    expect_tools(M, "a [TOOL_CA", "a [TOOL_CA", 0, NULL, NULL);
    /* a call, then a block that is not one: the call stands, the rest is content */
    expect_tools(M, "[TOOL_CALLS]f[ARGS]{}[TOOL_CALLS]oops", "[TOOL_CALLS]oops", 1, (const char *const[]){"f"},
                 (const char *const[]){"{}"});
}

Test(tools, llama3_json_replies) {
    const loom_tool_syntax L = LOOM_TOOLS_LLAMA3;
    expect_tools(L, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", 1,
                 (const char *const[]){"get_weather"}, (const char *const[]){"{\"city\":\"Paris\"}"});
    expect_tools(L, " \n{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"arguments\": {\"x\": 1}}\n", "", 2,
                 (const char *const[]){"a", "b"}, (const char *const[]){"{}", "{\"x\":1}"});
    /* not calls: the reply as written */
    expect_tools(L, "The weather is {fine}.", "The weather is {fine}.", 0, NULL, NULL);
    expect_tools(L, "  {\"answer\": 42}", "  {\"answer\": 42}", 0, NULL, NULL);
    expect_tools(L, "{\"name\": \"a\", \"parameters\": {}} and then", "{\"name\": \"a\", \"parameters\": {}} and then",
                 0, NULL, NULL);
    expect_tools(L, "{\"name\": \"a\", \"parameters\": {", "{\"name\": \"a\", \"parameters\": {", 0, NULL, NULL);
    expect_tools(L, " \n ", " \n ", 0, NULL, NULL);
}

/* A reply through the reasoning split (tags: NULL for <think>) in pieces of every size. */
static void expect_tagged(const loom_think_tags *tags, bool opened, const char *text, const char *reasoning,
                          const char *content) {
    const size_t n = strlen(text);
    for (size_t step = 1; step <= n; step++) {
        srv_reasoning r;
        srv_reasoning_init(&r, tags, opened);
        loom_strbuf rs = {0}, out = {0};
        for (size_t i = 0; i < n; i += step)
            cr_assert_null(srv_reasoning_push(&r, text + i, i + step < n ? step : n - i, &rs, &out));
        cr_assert_null(srv_reasoning_flush(&r, &rs, &out));
        cr_assert_str_eq(rs.data ? rs.data : "", reasoning, "step %zu of '%s'", step, text);
        cr_assert_str_eq(out.data ? out.data : "", content, "step %zu of '%s'", step, text);
        loom_strbuf_free(&rs);
        loom_strbuf_free(&out);
        srv_reasoning_free(&r);
    }
}

static void expect_reasoning(bool opened, const char *text, const char *reasoning, const char *content) {
    expect_tagged(NULL, opened, text, reasoning, content);
}

Test(reasoning, think_blocks_out_of_streamed_text) {
    expect_reasoning(false, "<think>\nLet me see.\n</think>\n\nThe answer is 4.", "\nLet me see.\n", "The answer is 4.");
    expect_reasoning(false, " \n<think>x</think> y", "x", "y");
    expect_reasoning(true, "I think 4.</think>Four.", "I think 4.", "Four."); /* R1: the prompt opened it */
    expect_reasoning(false, "<think>unfinished", "unfinished", "");
    expect_reasoning(true, "all </thin", "all </thin", "");
    expect_reasoning(false, "Hello <think> no", "", "Hello <think> no");
    expect_reasoning(false, "<thin", "", "<thin");
    expect_reasoning(false, "\n", "", "\n");
    static const char opened[] = "<|Assistant|><think>\n", shut[] = "<think>x";
    cr_assert(srv_reasoning_opened(NULL, opened, strlen(opened)) && !srv_reasoning_opened(NULL, shut, strlen(shut)));
}

/* Mistral's [THINK]...[/THINK] (Magistral, Ministral 3 Reasoning) and Cohere's
 * <|START_THINKING|>...<|END_THINKING|>: the tags a template names, found
 * by the template, split as <think> is. */
Test(reasoning, other_tags_from_the_template) {
    static const char mistral[] = "{{ bos_token }}{% for m in messages %}[INST]{{ m.content }}[/INST]{% endfor %}"
                                  "{# [THINK]thoughts[/THINK]answer #}";
    static const char cohere[] = "<|START_OF_TURN_TOKEN|>{% for m in messages %}{{ m.content }}{% endfor %}"
                                 "{# <|START_THINKING|> plan <|END_THINKING|> #}";
    static const char both[] = "{# <think></think> [THINK][/THINK] #}{{ messages[0].content }}";
    const char *src[3] = {mistral, cohere, both}, *open[3] = {"[THINK]", "<|START_THINKING|>", "<think>"};
    for (int i = 0; i < 3; i++) {
        loom_chat_template *t;
        cr_assert_null(loom_chat_template_create(src[i], strlen(src[i]), NULL, NULL, &t));
        const loom_think_tags *tt = loom_chat_template_think_tags(t);
        cr_assert(tt && !strcmp(tt->open, open[i]), "template %d", i);
        loom_chat_template_free(t);
    }
    loom_chat_template *plain;
    static const char none[] = "{{ messages[0].content }}";
    cr_assert_null(loom_chat_template_create(none, strlen(none), NULL, NULL, &plain));
    cr_assert_null(loom_chat_template_think_tags(plain));
    loom_chat_template_free(plain);
    const loom_think_tags m = {"[THINK]", "[/THINK]"}, c = {"<|START_THINKING|>", "<|END_THINKING|>"};
    expect_tagged(&m, false, "[THINK]Two and two.[/THINK]\nFour.", "Two and two.", "Four.");
    expect_tagged(&m, false, "Four, [THINK]no", "", "Four, [THINK]no");
    expect_tagged(&m, true, "a [/THIN", "a [/THIN", "");
    expect_tagged(&m, false, "<think>x</think>y", "", "<think>x</think>y"); /* another model's tags: content */
    expect_tagged(&c, false, "<|START_THINKING|>Plan: answer.<|END_THINKING|><|START_RESPONSE|>Hi",
                  "Plan: answer.", "<|START_RESPONSE|>Hi");
    static const char opened[] = "[INST]hi[/INST][THINK]";
    cr_assert(srv_reasoning_opened(&m, opened, strlen(opened)) && !srv_reasoning_opened(NULL, opened, strlen(opened)));
}

/* ------------------------------------------------------------ harmony (gpt-oss) */

typedef struct {
    char *reasoning, *content;
    json_t *calls;
} harmony_out;

/* text through a harmony split, cut at the given offsets (cuts[0..n_cuts), ascending). */
static harmony_out harmony_run(const char *text, const size_t *cuts, size_t n_cuts, bool calls, bool raw) {
    srv_harmony h;
    cr_assert(srv_harmony_init(&h, calls, raw, 7));
    loom_strbuf rs = {0}, out = {0};
    size_t at = 0;
    for (size_t k = 0; k <= n_cuts; k++) {
        const size_t to = k < n_cuts ? cuts[k] : strlen(text);
        cr_assert_null(srv_harmony_push(&h, text + at, to - at, &rs, &out));
        at = to;
    }
    cr_assert_null(srv_harmony_flush(&h, &rs, &out));
    harmony_out r = {strdup(rs.data ? rs.data : ""), strdup(out.data ? out.data : ""), json_incref(h.calls)};
    loom_strbuf_free(&rs);
    loom_strbuf_free(&out);
    srv_harmony_free(&h);
    return r;
}

static void harmony_check(const harmony_out *r, const char *how, const char *text, const char *reasoning,
                          const char *content, int n_calls, const char *const *names, const char *const *args) {
    cr_assert_str_eq(r->reasoning, reasoning, "%s of [%s]: reasoning [%s]", how, text, r->reasoning);
    cr_assert_str_eq(r->content, content, "%s of [%s]: content [%s]", how, text, r->content);
    cr_assert_eq((int)json_array_size(r->calls), n_calls, "%s of [%s]: %zu calls", how, text, json_array_size(r->calls));
    for (int k = 0; k < n_calls; k++) {
        json_t *c = json_array_get(r->calls, (size_t)k), *f = json_object_get(c, "function");
        cr_assert_str_eq(json_string_value(json_object_get(c, "type")), "function");
        cr_assert_eq(strlen(json_string_value(json_object_get(c, "id"))), 29);
        cr_assert_str_eq(json_string_value(json_object_get(f, "name")), names[k], "%s of [%s]", how, text);
        cr_assert_str_eq(json_string_value(json_object_get(f, "arguments")), args[k], "%s of [%s]", how, text);
    }
    if (n_calls == 2)
        cr_assert_str_neq(json_string_value(json_object_get(json_array_get(r->calls, 0), "id")),
                          json_string_value(json_object_get(json_array_get(r->calls, 1), "id")));
}

static void harmony_out_free(harmony_out *r) {
    free(r->reasoning);
    free(r->content);
    json_decref(r->calls);
}

/* A reply through the harmony split whole, byte by byte, cut once at every
 * offset and cut into pieces of every size up to 16: always the same split. */
static void expect_harmony_opts(bool calls, bool raw, const char *text, const char *reasoning, const char *content,
                                int n_calls, const char *const *names, const char *const *args) {
    const size_t n = strlen(text);
    harmony_out r = harmony_run(text, NULL, 0, calls, raw);
    harmony_check(&r, "whole", text, reasoning, content, n_calls, names, args);
    harmony_out_free(&r);
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t i = 1; i <= n; i++) {
        cuts[0] = i;
        r = harmony_run(text, cuts, 1, calls, raw);
        char how[64];
        snprintf(how, sizeof how, "cut at %zu", i);
        harmony_check(&r, how, text, reasoning, content, n_calls, names, args);
        harmony_out_free(&r);
    }
    for (size_t step = 1; step <= 16 && step <= n; step++) {
        size_t m = 0;
        for (size_t i = step; i < n; i += step) cuts[m++] = i;
        r = harmony_run(text, cuts, m, calls, raw);
        char how[64];
        snprintf(how, sizeof how, "pieces of %zu", step);
        harmony_check(&r, how, text, reasoning, content, n_calls, names, args);
        harmony_out_free(&r);
    }
    free(cuts);
}

static void expect_harmony(const char *text, const char *reasoning, const char *content, int n_calls,
                           const char *const *names, const char *const *args) {
    expect_harmony_opts(true, false, text, reasoning, content, n_calls, names, args);
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__})

Test(harmony, analysis_then_final) {
    expect_harmony("<|channel|>analysis<|message|>The user asks 2+2. Easy.<|end|><|start|>assistant<|channel|>final"
                   "<|message|>2 + 2 = 4.",
                   "The user asks 2+2. Easy.", "2 + 2 = 4.", 0, NULL, NULL);
    /* a final constrained to a type, non-ASCII text, and no reasoning at all */
    expect_harmony("<|channel|>final <|constrain|>json<|message|>{\"a\": \"Gr\xc3\xbc\xc3\x9f" "e\"}", "",
                   "{\"a\": \"Gr\xc3\xbc\xc3\x9f" "e\"}", 0, NULL, NULL);
    /* a body keeps "<" and "<|" that begin no tag it ends at */
    expect_harmony("<|channel|>final<|message|>a < b, <|x|> and <|en", "", "a < b, <|x|> and <|en", 0, NULL, NULL);
}

Test(harmony, tool_calls_with_either_recipient_placement) {
    /* the recipient in the channel, as gpt-oss writes it */
    expect_harmony("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary "
                   "to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"Paris\"}",
                   "Need the weather.", "", 1, NAMES("get_weather"), NAMES("{\"location\":\"Paris\"}"));
    /* in the role, as the template renders past calls; arguments as written */
    expect_harmony("<|channel|>analysis<|message|>x<|end|><|start|>assistant to=functions.get_weather<|channel|>"
                   "commentary json<|message|>{\"location\": \"Paris\", \"days\": 2}",
                   "x", "", 1, NAMES("get_weather"), NAMES("{\"location\": \"Paris\", \"days\": 2}"));
    /* in the role the prompt opened */
    expect_harmony(" to=functions.f<|channel|>commentary json<|message|>{}", "", "", 1, NAMES("f"), NAMES("{}"));
    /* two calls (the first ended by <|end|>, the next by a <|start|> without one), analysis-channel calls */
    expect_harmony("<|channel|>commentary to=functions.a<|message|> {\"x\": [1, 2]}\n<|end|><|start|>assistant"
                   "<|channel|>analysis to=functions.b <|constrain|>json<|message|>{}<|start|>assistant<|channel|>final"
                   "<|message|>done",
                   "", "done", 2, NAMES("a", "b"), NAMES("{\"x\": [1, 2]}", "{}"));
    /* a type that is not JSON: the body as it is */
    expect_harmony("<|channel|>commentary to=functions.run code<|message|>print(1)", "", "", 1, NAMES("run"),
                   NAMES("print(1)"));
}

Test(harmony, commentary_preamble_is_content) {
    expect_harmony("<|channel|>analysis<|message|>Look it up.<|end|><|start|>assistant<|channel|>commentary<|message|>"
                   "Let me check the tides.<|end|><|start|>assistant<|channel|>commentary to=functions.search "
                   "<|constrain|>json<|message|>{\"q\":\"tides\"}",
                   "Look it up.", "Let me check the tides.", 1, NAMES("search"), NAMES("{\"q\":\"tides\"}"));
}

Test(harmony, replies_cut_short) {
    /* max_tokens inside the reasoning, the next header, the answer, a call */
    expect_harmony("<|channel|>analysis<|message|>Thinking about it", "Thinking about it", "", 0, NULL, NULL);
    expect_harmony("<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>fin", "a", "", 0, NULL, NULL);
    expect_harmony("<|channel|>analysis<|message|>a<|end|><|start|>assis", "a", "", 0, NULL, NULL);
    expect_harmony("<|channel|>analysis<|message|>a<|en", "a<|en", "", 0, NULL, NULL); /* the held tail too */
    expect_harmony("<|channel|>analysis<|message|>a<|end|><|start|>assistant<|channel|>final<|message|>Partial answ",
                   "a", "Partial answ", 0, NULL, NULL);
    expect_harmony("<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"loc", "", "{\"loc", 0, NULL,
                   NULL);
    expect_harmony("", "", "", 0, NULL, NULL);
}

Test(harmony, what_is_not_harmony_stays_content) {
    /* no header: the reply as written */
    expect_harmony("Hello there", "", "Hello there", 0, NULL, NULL);
    expect_harmony("<3 you", "", "<3 you", 0, NULL, NULL);
    expect_harmony("{\"answer\": 42}", "", "{\"answer\": 42}", 0, NULL, NULL);
    /* a channel it does not know, a role other than assistant, text between messages */
    expect_harmony("<|channel|>bogus<|message|>text", "", "<|channel|>bogus<|message|>text", 0, NULL, NULL);
    expect_harmony("<|channel|>final<|message|>a<|end|><|start|>user<|message|>b", "", "a<|start|>user<|message|>b", 0,
                   NULL, NULL);
    expect_harmony("<|channel|>analysis<|message|>r<|end|>stray<|start|>assistant<|channel|>final<|message|>ok", "r",
                   "strayok", 0, NULL, NULL);
    expect_harmony("<|channel|>final junk more<|message|>x", "", "<|channel|>final junk more<|message|>x", 0, NULL,
                   NULL);
    /* tags inside a body stay in it */
    expect_harmony("<|channel|>final<|message|>A<|message|>B<|channel|>C", "", "A<|message|>B<|channel|>C", 0, NULL,
                   NULL);
    /* a call whose body is not JSON, a recipient that is not a function: their text is content */
    expect_harmony("<|channel|>commentary to=functions.f <|constrain|>json<|message|>not json", "", "not json", 0, NULL,
                   NULL);
    expect_harmony("<|channel|>analysis to=python code<|message|>1+1", "", "1+1", 0, NULL, NULL);
    /* without tools (or tool_choice none) a call is not parsed: its text is content */
    expect_harmony_opts(false, false, "<|channel|>commentary to=functions.f json<|message|>{\"a\":1}", "", "{\"a\":1}",
                        0, NULL, NULL);
}

/* Header edges where the cut once mattered (tests/fuzz_serve.c): a header
 * that starts with <|constrain|>, and one of exactly SRV_HARMONY_HEAD_MAX
 * bytes whose <|message|> arrives in pieces; one byte longer is not one. */
Test(harmony, header_edges_cut_anywhere) {
    expect_harmony("<|constrain|>json<|channel|>final<|message|>{\"a\":1}", "", "{\"a\":1}", 0, NULL, NULL);
    char head[SRV_HARMONY_HEAD_MAX + 64], text[SRV_HARMONY_HEAD_MAX + 128];
    for (int extra = 0; extra <= 1; extra++) {
        const int xs = SRV_HARMONY_HEAD_MAX - (int)strlen("<|channel|>final to=") + extra;
        snprintf(head, sizeof head, "<|channel|>final to=%.*s", xs, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        cr_assert_eq(strlen(head), (size_t)SRV_HARMONY_HEAD_MAX + extra);
        snprintf(text, sizeof text, "%s<|message|>ok", head);
        expect_harmony(text, "", extra ? text : "ok", 0, NULL, NULL);
    }
}

Test(harmony, no_reasoning_keeps_analysis_in_content) {
    expect_harmony_opts(true, true, "<|channel|>analysis<|message|>R<|end|><|start|>assistant<|channel|>final"
                        "<|message|>A",
                        "", "<|channel|>analysis<|message|>R<|end|>A", 0, NULL, NULL);
    expect_harmony_opts(true, true, "<|channel|>analysis<|message|>R<|end|><|start|>assistant<|channel|>commentary "
                        "to=functions.f json<|message|>{}",
                        "", "<|channel|>analysis<|message|>R<|end|>", 1, NAMES("f"), NAMES("{}"));
}

Test(harmony, content_streams_as_it_arrives) {
    srv_harmony h;
    cr_assert(srv_harmony_init(&h, true, false, 1));
    loom_strbuf rs = {0}, out = {0};
    cr_assert_null(srv_harmony_push(&h, "<|channel|>analysis<|message|>Hmm", 33, &rs, &out));
    cr_assert(rs.len == 3 && !memcmp(rs.data, "Hmm", 3) && out.len == 0);
    cr_assert_null(srv_harmony_push(&h, " ok<|e", 6, &rs, &out)); /* "<|e" may begin <|end|>: held */
    cr_assert_str_eq(rs.data, "Hmm ok");
    cr_assert_null(srv_harmony_push(&h, "nd|><|start|>assistant<|channel|>final<|message|>Fo", 51, &rs, &out));
    cr_assert(out.len == 2 && !memcmp(out.data, "Fo", 2));
    cr_assert_null(srv_harmony_push(&h, "ur.", 3, &rs, &out));
    cr_assert_str_eq(out.data, "Four.");
    cr_assert_null(srv_harmony_flush(&h, &rs, &out));
    cr_assert_str_eq(out.data, "Four.");
    cr_assert_str_eq(rs.data, "Hmm ok");
    loom_strbuf_free(&rs);
    loom_strbuf_free(&out);
    srv_harmony_free(&h);
}

Test(harmony, template_probe) {
    static const char *const yes = "{% for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>"
                                   "{% endfor %}{% if add_generation_prompt %}<|start|>assistant{% endif %}",
                                 *no = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
                                       "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    loom_chat_template *t;
    cr_assert_null(loom_chat_template_create(yes, strlen(yes), NULL, NULL, &t));
    cr_assert(srv_harmony_template(t));
    loom_chat_template_free(t);
    cr_assert_null(loom_chat_template_create(no, strlen(no), NULL, NULL, &t));
    cr_assert(!srv_harmony_template(t));
    loom_chat_template_free(t);
    /* gpt-oss's own, where the cache has it */
    FILE *f = fopen(LOOM_CACHE_DIR "/templates/openai-gpt-oss-120b.jinja", "rb");
    if (!f) return;
    char *src = malloc(1 << 16);
    const size_t n = fread(src, 1, 1 << 16, f);
    fclose(f);
    cr_assert_null(loom_chat_template_create(src, n, "<|startoftext|>", "<|return|>", &t));
    cr_assert(srv_harmony_template(t));
    loom_chat_template_free(t);
    free(src);
}

Test(openai, completions_prompt_shapes) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":[\"x\",\"y\"],\"logprobs\":2}", &p, &e), "%s", e.message);
    cr_assert_eq(p.n_prompts, 2);
    cr_assert_str_eq(p.prompts[1].text, "y");
    cr_assert(p.logprobs && p.top_logprobs == 2);
    srv_params_free(&p);
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":[1,2,3]}", &p, &e), "%s", e.message);
    cr_assert(p.n_prompts == 1 && p.prompts[0].n_ids == 3 && p.prompts[0].ids[2] == 3);
    srv_params_free(&p);
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":[[1],[2,3]]}", &p, &e), "%s", e.message);
    cr_assert(p.n_prompts == 2 && p.prompts[1].n_ids == 2 && !p.echo);
    srv_params_free(&p);
    /* echo: max_tokens 0 (the prompt's log-probabilities alone) is allowed, as either name */
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":[1,2],\"echo\":true,\"max_tokens\":0,\"logprobs\":1}", &p, &e),
              "%s", e.message);
    cr_assert(p.echo && p.max_tokens == 0 && p.logprobs && p.top_logprobs == 1);
    srv_params_free(&p);
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\":\"a\",\"echo\":true,\"max_completion_tokens\":0,\"max_tokens\":5}",
                    &p, &e), "%s", e.message);
    cr_assert(p.echo && p.max_tokens == 0);
    srv_params_free(&p);
}

/* Each bad body is refused with 400 and names the field where there is one. */
Test(openai, bad_requests) {
    static const struct {
        srv_kind k;
        const char *body, *param;
    } cases[] = {
        {SRV_CHAT, "{", NULL},
        {SRV_CHAT, "[]", NULL},
        {SRV_CHAT, "{\"messages\":\"hi\"}", "messages"},
        {SRV_CHAT, "{\"messages\":[]}", "messages"},
        {SRV_CHAT, "{}", "messages"},
        {SRV_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "messages"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", "temperature"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", "temperature"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":0}", "top_p"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", "max_tokens"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":65}", "n"},
        {SRV_COMPLETION, "{\"prompt\":[\"a\",\"b\",\"c\"],\"n\":22}", "n"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2,\"best_of\":3}", "best_of"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"presence_penalty\":2.5}", "presence_penalty"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", "stop"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_logprobs\":2}", "top_logprobs"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true,\"top_logprobs\":21}",
         "top_logprobs"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{}}", "stream_options"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", "stream"},
        {SRV_COMPLETION, "{}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":[]}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":[-1]}", "prompt"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"logprobs\":true}", "logprobs"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"echo\":1}", "echo"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":0}", "max_tokens"}, /* 0 only with echo */
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"echo\":true,\"max_tokens\":-1}", "max_tokens"},
        {SRV_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"echo\":true}", "echo"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"best_of\":3}", "best_of"},
        {SRV_COMPLETION, "{\"prompt\":\"x\",\"model\":7}", "model"},
        {SRV_COMPLETION, "{\"prompt\":\"\xff\"}", NULL}, /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_params p;
        srv_error e;
        cr_assert(!parse(cases[i].k, cases[i].body, &p, &e), "accepted %s", cases[i].body);
        cr_assert_eq(e.status, 400, "%s: status %d", cases[i].body, e.status);
        if (cases[i].param) cr_assert(e.param && !strcmp(e.param, cases[i].param), "%s: param %s", cases[i].body, e.param);
        char *j = srv_error_json(&e);
        json_t *o = j ? json_loads(j, 0, NULL) : NULL;
        cr_assert(o && json_is_string(json_object_get(json_object_get(o, "error"), "message")), "envelope %s", j);
        json_decref(o);
        free(j);
    }
}

/* ------------------------------------------------------------ stop strings */

static char *run_stop(const char *const *pieces, int n, char *const *stops, int n_stops, bool *matched) {
    srv_stop s;
    srv_stop_init(&s, stops, n_stops);
    loom_strbuf out = {0};
    for (int i = 0; i < n; i++) cr_assert_null(srv_stop_push(&s, pieces[i], strlen(pieces[i]), &out));
    cr_assert_null(srv_stop_flush(&s, &out));
    *matched = s.matched;
    srv_stop_free(&s);
    char *r = strdup(out.data ? out.data : "");
    loom_strbuf_free(&out);
    return r;
}

Test(stop, split_across_pieces_and_held_back) {
    char *stops[] = {"END", "\n\n"};
    bool m;
    const char *a[] = {"Hello E", "N", "D more"};
    char *r = run_stop(a, 3, stops, 2, &m);
    cr_assert(m);
    cr_assert_str_eq(r, "Hello ");
    free(r);
    const char *b[] = {"Hello E", "Nx"}; /* a false start is released */
    r = run_stop(b, 2, stops, 2, &m);
    cr_assert(!m);
    cr_assert_str_eq(r, "Hello ENx");
    free(r);
    const char *c[] = {"a\n", "\nb"};
    r = run_stop(c, 2, stops, 2, &m);
    cr_assert(m);
    cr_assert_str_eq(r, "a");
    free(r);
    const char *d[] = {"tail E"}; /* held back until the end, then released */
    r = run_stop(d, 1, stops, 2, &m);
    cr_assert(!m);
    cr_assert_str_eq(r, "tail E");
    free(r);
}

/* Overlapping stop strings: the one that ends first wins, in one piece as
 * byte by byte (found by tests/fuzz_serve.c: one piece took the one that
 * began first). */
Test(stop, overlapping_stops_end_first_wins) {
    char *stops[] = {"abcd", "c"};
    bool m;
    const char *whole[] = {"xabcdy"}, *bytes[] = {"x", "a", "b", "c", "d", "y"};
    char *r = run_stop(whole, 1, stops, 2, &m), *r2 = run_stop(bytes, 6, stops, 2, &m);
    cr_assert(m);
    cr_assert_str_eq(r, "xab");
    cr_assert_str_eq(r2, "xab");
    free(r);
    free(r2);
}

Test(stop, holds_back_only_what_could_match) {
    char *stops[] = {"abc"};
    srv_stop s;
    srv_stop_init(&s, stops, 1);
    loom_strbuf out = {0};
    cr_assert_null(srv_stop_push(&s, "xxab", 4, &out));
    cr_assert_eq(out.len, 2, "'ab' may start 'abc': held");
    cr_assert_null(srv_stop_push(&s, "x", 1, &out));
    cr_assert_str_eq(out.data, "xxabx");
    srv_stop_free(&s);
    loom_strbuf_free(&out);
}

/* ------------------------------------------------------------ the block pool */

Test(kv_blocks, refcounts_cache_and_lru_eviction) {
    loom_kv_blocks *p;
    cr_assert_null(loom_kv_blocks_create(3, 2, true, &p));
    int32_t a = loom_kv_blocks_alloc(p), b = loom_kv_blocks_alloc(p), c = loom_kv_blocks_alloc(p);
    cr_assert(a == 0 && b == 1 && c == 2, "lowest ids first");
    cr_assert_eq(loom_kv_blocks_alloc(p), -1, "a dry pool says so");
    int32_t t1[2] = {5, 6}, t2[2] = {7, 8};
    uint64_t h1 = loom_kv_blocks_hash(p, 0, t1), h2 = loom_kv_blocks_hash(p, h1, t2);
    cr_assert_neq(h1, loom_kv_blocks_hash(p, 1, t1), "the parent is part of the hash");
    loom_kv_blocks_publish(p, a, h1, t1);
    loom_kv_blocks_publish(p, b, h2, t2);
    loom_kv_blocks_unref(p, a);
    loom_kv_blocks_unref(p, b);
    loom_kv_blocks_unref(p, c);
    cr_assert_eq(loom_kv_blocks_available(p), 3, "cached blocks without references count as available");
    cr_assert_eq(loom_kv_blocks_find(p, h1, t2), -1, "same hash, other tokens: no hit");
    cr_assert_eq(loom_kv_blocks_find(p, h1, t1), a);
    cr_assert_eq(loom_kv_blocks_available(p), 2);
    cr_assert_eq(loom_kv_blocks_alloc(p), c, "free blocks go before cached ones");
    cr_assert_eq(loom_kv_blocks_alloc(p), b, "then the least recently used cached one");
    cr_assert_eq(loom_kv_blocks_find(p, h2, t2), -1, "an evicted block is no longer found");
    loom_kv_blocks_unref(p, a);
    cr_assert_eq(loom_kv_blocks_find(p, h1, t1), a, "still cached after its references went");
    loom_kv_blocks_free(p);
}

Test(kv_blocks, no_cache_means_no_hits) {
    loom_kv_blocks *p;
    cr_assert_null(loom_kv_blocks_create(2, 4, false, &p));
    int32_t t[4] = {1, 2, 3, 4}, a = loom_kv_blocks_alloc(p);
    uint64_t h = loom_kv_blocks_hash(p, 0, t);
    loom_kv_blocks_publish(p, a, h, t);
    cr_assert_eq(loom_kv_blocks_find(p, h, t), -1);
    loom_kv_blocks_unref(p, a);
    cr_assert_eq(loom_kv_blocks_available(p), 2);
    loom_kv_blocks_free(p);
}

/* ------------------------------------------------------------ sampler extras */

Test(sampler_extra, presence_and_frequency_penalties_count_output_only) {
    loom_sampling_params sp = loom_sampling_defaults();
    sp.temperature = 0;
    sp.frequency_penalty = 1.0f;
    loom_sampler *s;
    cr_assert_null(loom_sampler_create(&sp, 4, &s));
    loom_sampler_accept(s, 0); /* a prompt token: not penalised */
    float l[4] = {3.0f, 2.5f, 0, 0};
    cr_assert_eq(loom_sampler_sample(s, l), 0);
    loom_sampler_accept_output(s, 0);
    float l2[4] = {3.0f, 2.5f, 0, 0};
    cr_assert_eq(loom_sampler_sample(s, l2), 1, "3 - 1 x 1 < 2.5");
    cr_assert_float_eq(l2[0], 2.0f, 1e-6);
    loom_sampler_free(s);
    cr_assert(!loom_sampling_is_plain_greedy(&sp));
    sp.frequency_penalty = 3;
    loom_status bad = loom_sampling_check(&sp);
    cr_assert_not_null(bad, "penalties are limited to [-2, 2]");
    loom_status_free(bad);
}

Test(sampler_extra, logprobs_are_a_log_softmax_with_sorted_alternatives) {
    float l[5] = {1, 3, 2, 3, NAN};
    float lp, top[3];
    int32_t ids[3];
    loom_logprobs(l, 5, 2, 3, &lp, ids, top);
    double lse = log(exp(1) + exp(3) + exp(2) + exp(3));
    cr_assert_float_eq(lp, 2 - lse, 1e-5);
    cr_assert(ids[0] == 1 && ids[1] == 3 && ids[2] == 2, "ties to the lower id: %d %d %d", ids[0], ids[1], ids[2]);
    cr_assert_float_eq(top[0], 3 - lse, 1e-5);
}

Test(sampler_extra, skip_continues_the_random_stream) {
    loom_sampling_params sp = loom_sampling_defaults();
    sp.top_k = 0, sp.top_p = 1, sp.min_p = 0, sp.seed = 9;
    float base[16];
    for (int i = 0; i < 16; i++) base[i] = (float)(i % 5);
    loom_sampler *a, *b;
    cr_assert_null(loom_sampler_create(&sp, 16, &a));
    cr_assert_null(loom_sampler_create(&sp, 16, &b));
    float l[16];
    int32_t seq[6];
    for (int k = 0; k < 6; k++) {
        memcpy(l, base, sizeof l);
        seq[k] = loom_sampler_sample(a, l);
    }
    loom_sampler_skip(b, 4);
    for (int k = 4; k < 6; k++) {
        memcpy(l, base, sizeof l);
        cr_assert_eq(loom_sampler_sample(b, l), seq[k], "draw %d after skipping 4", k);
    }
    loom_sampler_free(a);
    loom_sampler_free(b);
}

/* ------------------------------------------------------------ the Responses API */

/* got equals want, key order aside (both released). */
static void expect_json(json_t *got, json_t *want) {
    char *a = json_dumps(got, JSON_SORT_KEYS | JSON_COMPACT), *b = json_dumps(want, JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert_str_eq(a, b);
    free(a), free(b);
    json_decref(got), json_decref(want);
}

/* The chat body a Responses body becomes, parsed back (NULL when refused: *e). */
static json_t *responses_chat(const char *body, srv_error *e) {
    char *chat = NULL;
    json_t *req = NULL;
    if (!srv_responses_request(body, strlen(body), &chat, &req, e)) return NULL;
    json_t *o = json_loads(chat, 0, NULL);
    free(chat);
    json_decref(req);
    cr_assert(o);
    return o;
}

Test(responses, request_becomes_the_chat_request) {
    srv_error e;
    json_t *o = responses_chat(
        "{\"model\": \"m\", \"instructions\": \"Be brief.\", \"input\": [{\"role\": \"developer\", \"content\": \"Sys.\"},"
        " {\"role\": \"user\", \"content\": [{\"type\": \"input_text\", \"text\": \"Hi\"}]},"
        " {\"type\": \"reasoning\", \"summary\": []},"
        " {\"type\": \"function_call\", \"call_id\": \"c1\", \"name\": \"f\", \"arguments\": \"{}\"},"
        " {\"type\": \"function_call\", \"call_id\": \"c2\", \"name\": \"g\", \"arguments\": \"{\\\"x\\\": 1}\"},"
        " {\"type\": \"function_call_output\", \"call_id\": \"c1\", \"output\": \"ok\"}],"
        " \"max_output_tokens\": 7, \"temperature\": 0.5, \"stream\": true,"
        " \"tools\": [{\"type\": \"function\", \"name\": \"f\", \"parameters\": {\"type\": \"object\"}}],"
        " \"tool_choice\": {\"type\": \"function\", \"name\": \"f\"}, \"reasoning\": {\"effort\": \"low\"},"
        " \"text\": {\"format\": {\"type\": \"json_schema\", \"name\": \"s\", \"schema\": {\"type\": \"object\"}}}}",
        &e);
    cr_assert(o, "%s", e.message);
    json_t *want = json_loads(
        "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
        " {\"role\": \"system\", \"content\": \"Sys.\"}, {\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Hi\"}]},"
        " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": ["
        "   {\"id\": \"c1\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}},"
        "   {\"id\": \"c2\", \"type\": \"function\", \"function\": {\"name\": \"g\", \"arguments\": \"{\\\"x\\\": 1}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"c1\", \"content\": \"ok\"}],"
        " \"max_tokens\": 7, \"temperature\": 0.5, \"stream\": true,"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {\"type\": \"object\"}}}],"
        " \"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"f\"}}, \"reasoning_effort\": \"low\","
        " \"response_format\": {\"type\": \"json_schema\", \"json_schema\": {\"name\": \"s\", \"schema\": {\"type\": \"object\"}}}}",
        0, NULL);
    expect_json(o, want);
    o = responses_chat("{\"input\": \"Hello\"}", &e);
    want = json_loads("[{\"role\": \"user\", \"content\": \"Hello\"}]", 0, NULL);
    cr_assert(json_equal(json_object_get(o, "messages"), want));
    json_decref(o), json_decref(want);
    static const char *const refused[][2] = {
        {"{\"input\": \"x\", \"previous_response_id\": \"resp_1\"}", "previous_response_id"},
        {"{\"input\": \"x\", \"conversation\": \"c\"}", "conversation"},
        {"{\"input\": \"x\", \"background\": true}", "background"},
        {"{\"input\": \"x\", \"tools\": [{\"type\": \"file_search\"}]}", "tools"},
        {"{\"input\": \"x\", \"tool_choice\": {\"type\": \"mcp\"}}", "tool_choice"},
        {"{\"input\": \"x\", \"text\": {\"format\": {\"type\": \"grammar\"}}}", "text"},
        {"{\"input\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_image\", \"image_url\": \"u\"}]}]}", "input"},
        {"{\"input\": [{\"type\": \"web_search_call\"}]}", "input"},
        {"{\"input\": [{\"role\": \"robot\", \"content\": \"x\"}]}", "input"},
        {"{\"input\": 5}", "input"},
        {"{\"instructions\": 5, \"input\": \"x\"}", "instructions"},
        {"[1]", NULL},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        cr_assert_null(responses_chat(refused[i][0], &e), "%s", refused[i][0]);
        cr_assert_eq(e.status, 400);
        if (refused[i][1]) cr_assert_str_eq(e.param, refused[i][1], "%s", refused[i][0]);
    }
}

/* Named server-sent events: exactly `want`, in order, each data's type its
 * name (numbered from 0 when `numbered`). */
static void expect_events(const char *p, const char *const *want, size_t n, bool numbered) {
    for (size_t i = 0; i < n; i++) {
        char head[128];
        snprintf(head, sizeof head, "event: %s\ndata: ", want[i]);
        cr_assert(p && !strncmp(p, head, strlen(head)), "event %zu: %.60s", i, p ? p : "(end)");
        const char *data = p + strlen(head), *end = strstr(data, "\n\n");
        json_t *d = json_loadb(data, (size_t)(end - data), 0, NULL);
        cr_assert(d, "event %zu's data", i);
        cr_assert_str_eq(json_string_value(json_object_get(d, "type")), want[i]);
        if (numbered) cr_assert_eq(json_integer_value(json_object_get(d, "sequence_number")), (json_int_t)i);
        json_decref(d);
        p = end + 2;
    }
    cr_assert(!p || *p == 0, "no more events: %.60s", p);
}

/* The output items and events of a reply with reasoning, text and a call. */
Test(responses, items_and_events) {
    json_t *req = json_loads("{\"input\": \"x\", \"instructions\": \"I\", \"max_output_tokens\": 9}", 0, NULL);
    srv_resp r;
    loom_strbuf ev = {0};
    srv_resp_init(&r, "resp_1", "m", 5, req);
    srv_resp_start(&r, &ev);
    srv_resp_reasoning(&r, "Think", 5, &ev);
    srv_resp_reasoning(&r, "ing.", 4, &ev);
    srv_resp_text(&r, "Hel", 3, &ev);
    srv_resp_text(&r, "lo", 2, &ev);
    json_t *call = json_loads("{\"id\": \"call_7\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"{}\"}}",
                              0, NULL);
    srv_resp_call(&r, call, &ev);
    json_t *o = srv_resp_finish(&r, "length", NULL, 3, 9, &ev);
    json_t *out = json_object_get(o, "output");
    cr_assert_eq(json_array_size(out), 3);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "incomplete");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "incomplete_details"), "reason")),
                     "max_output_tokens");
    cr_assert_str_eq(json_string_value(json_object_get(o, "instructions")), "I");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "usage"), "total_tokens")), 12);
    json_t *rs = json_array_get(out, 0), *msg = json_array_get(out, 1), *fc = json_array_get(out, 2);
    cr_assert_str_eq(json_string_value(json_object_get(rs, "type")), "reasoning");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(rs, "content"), 0), "text")), "Thinking.");
    cr_assert_str_eq(json_string_value(json_object_get(msg, "status")), "completed");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(msg, "content"), 0), "text")), "Hello");
    cr_assert_str_eq(json_string_value(json_object_get(fc, "call_id")), "call_7");
    cr_assert_str_eq(json_string_value(json_object_get(fc, "arguments")), "{}");
    /* the events, in order, numbered from 0 */
    static const char *const want[] = {
        "response.created", "response.in_progress", "response.output_item.added", "response.reasoning_text.delta",
        "response.reasoning_text.delta", "response.reasoning_text.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.delta", "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.incomplete"};
    expect_events(ev.data, want, sizeof want / sizeof want[0], true);
    json_decref(o), json_decref(call), json_decref(req);
    loom_strbuf_free(&ev);
    srv_resp_free(&r);
    /* nothing generated: one empty message; an error: failed */
    srv_resp_init(&r, "resp_2", "m", 5, NULL);
    o = srv_resp_finish(&r, "stop", NULL, 1, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "completed");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(o, "output"), 0), "type")), "message");
    json_decref(o);
    srv_resp_free(&r);
    srv_resp_init(&r, "resp_3", "m", 5, NULL);
    o = srv_resp_finish(&r, "error", "a rank died", 1, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "status")), "failed");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "message")), "a rank died");
    json_decref(o);
    srv_resp_free(&r);
}

/* ------------------------------------------------------------ the Messages API (Anthropic) */

Test(anthropic, request_becomes_the_chat_request) {
    srv_error e;
    char *chat = NULL;
    static const char body[] =
        "{\"model\": \"m\", \"max_tokens\": 9, \"system\": [{\"type\": \"text\", \"text\": \"A\"}, {\"type\": \"text\", \"text\": \"B\"}],"
        " \"messages\": [{\"role\": \"user\", \"content\": \"Weather?\"},"
        "  {\"role\": \"assistant\", \"content\": [{\"type\": \"thinking\", \"thinking\": \"t\", \"signature\": \"s\"},"
        "    {\"type\": \"text\", \"text\": \"Checking.\"},"
        "    {\"type\": \"tool_use\", \"id\": \"toolu_1\", \"name\": \"w\", \"input\": {\"city\": \"Paris\"}}]},"
        "  {\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", \"tool_use_id\": \"toolu_1\", \"content\": \"sunny\"},"
        "    {\"type\": \"text\", \"text\": \"Thanks\"}]}],"
        " \"stop_sequences\": [\"END\"], \"temperature\": 0.2, \"top_k\": 5, \"stream\": true,"
        " \"tools\": [{\"name\": \"w\", \"description\": \"d\", \"input_schema\": {\"type\": \"object\"}}],"
        " \"tool_choice\": {\"type\": \"any\"}, \"thinking\": {\"type\": \"disabled\"}}";
    cr_assert(srv_anthropic_request(body, strlen(body), false, &chat, &e), "%s", e.message);
    json_t *got = json_loads(chat, 0, NULL);
    free(chat);
    json_t *want = json_loads(
        "{\"model\": \"m\", \"max_tokens\": 9, \"messages\": [{\"role\": \"system\", \"content\": \"A\\nB\"},"
        " {\"role\": \"user\", \"content\": \"Weather?\"},"
        " {\"role\": \"assistant\", \"content\": \"Checking.\", \"tool_calls\": [{\"id\": \"toolu_1\", \"type\": \"function\","
        "   \"function\": {\"name\": \"w\", \"arguments\": \"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        " {\"role\": \"tool\", \"tool_call_id\": \"toolu_1\", \"content\": \"sunny\"},"
        " {\"role\": \"user\", \"content\": \"Thanks\"}],"
        " \"stop\": [\"END\"], \"temperature\": 0.2, \"top_k\": 5, \"stream\": true,"
        " \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"w\", \"description\": \"d\", \"parameters\": {\"type\": \"object\"}}}],"
        " \"tool_choice\": \"required\", \"chat_template_kwargs\": {\"enable_thinking\": false}}",
        0, NULL);
    expect_json(got, want);
    static const char *const refused[][2] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", "max_tokens"},
        {"{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]}", "messages"},
        {"{\"max_tokens\": 5, \"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}", "messages"},
        {"{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"system\": [{\"type\": \"image\"}]}", "system"},
        {"{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tools\": [{\"type\": \"web_search_20250305\", \"name\": \"s\"}]}", "tools"},
        {"{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"tool_choice\": {\"type\": \"tool\"}}", "tool_choice"},
        {"{\"max_tokens\": 5, \"messages\": 3}", "messages"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        cr_assert(!srv_anthropic_request(refused[i][0], strlen(refused[i][0]), false, &chat, &e), "%s", refused[i][0]);
        cr_assert_eq(e.status, 400);
        cr_assert_str_eq(e.param, refused[i][1], "%s", refused[i][0]);
    }
    static const char count[] = "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}";
    cr_assert(srv_anthropic_request(count, strlen(count), true, &chat, &e), "count_tokens needs no max_tokens: %s", e.message);
    cr_assert_null(strstr(chat, "max_tokens"));
    free(chat);
    char *env = srv_anthropic_error_json(&e);
    json_t *o = json_loads(env, 0, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "type")), "error");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "error"), "type")), "invalid_request_error");
    json_decref(o);
    free(env);
}

Test(anthropic, blocks_and_events) {
    srv_amsg m;
    loom_strbuf ev = {0};
    srv_amsg_init(&m, "msg_1", "m", 4);
    srv_amsg_start(&m, &ev);
    srv_amsg_reasoning(&m, "Hm", 2, &ev);
    srv_amsg_text(&m, "Che", 3, &ev);
    srv_amsg_text(&m, "cking.", 6, &ev);
    json_t *call = json_loads("{\"id\": \"c\", \"function\": {\"name\": \"w\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}", 0, NULL);
    srv_amsg_call(&m, call, &ev);
    json_t *o = srv_amsg_finish(&m, "tool_calls", NULL, 7, &ev);
    cr_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "tool_use");
    json_t *content = json_object_get(o, "content");
    cr_assert_eq(json_array_size(content), 3);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(content, 0), "thinking")), "Hm");
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(content, 1), "text")), "Checking.");
    json_t *use = json_array_get(content, 2);
    cr_assert_str_eq(json_string_value(json_object_get(use, "type")), "tool_use");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(use, "input"), "city")), "Paris");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(o, "usage"), "output_tokens")), 7);
    static const char *const want[] = {"message_start", "content_block_start", "content_block_delta",
                                       "content_block_stop", "content_block_start", "content_block_delta",
                                       "content_block_delta", "content_block_stop", "content_block_start",
                                       "content_block_delta", "content_block_stop", "message_delta", "message_stop"};
    expect_events(ev.data, want, sizeof want / sizeof want[0], false);
    json_decref(o), json_decref(call);
    loom_strbuf_free(&ev);
    srv_amsg_free(&m);
    srv_amsg_init(&m, "msg_2", "m", 4);
    o = srv_amsg_finish(&m, "stop", "END", 3, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "stop_sequence");
    cr_assert_str_eq(json_string_value(json_object_get(o, "stop_sequence")), "END");
    json_decref(o);
    srv_amsg_free(&m);
    srv_amsg_init(&m, "msg_3", "m", 4);
    o = srv_amsg_finish(&m, "length", NULL, 3, NULL);
    cr_assert_str_eq(json_string_value(json_object_get(o, "stop_reason")), "max_tokens");
    json_decref(o);
    srv_amsg_free(&m);
}

Test(openai, suffix_is_a_completions_text_field) {
    srv_params p;
    srv_error e;
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\": \"def f(\", \"suffix\": \"):\\n\"}", &p, &e), "%s", e.message);
    cr_assert_str_eq(p.suffix, "):\n");
    srv_params_free(&p);
    cr_assert(parse(SRV_COMPLETION, "{\"prompt\": \"x\", \"suffix\": null}", &p, &e));
    cr_assert_null(p.suffix);
    srv_params_free(&p);
    static const char *const bad[] = {"{\"prompt\": \"x\", \"suffix\": 3}", "{\"prompt\": \"x\", \"suffix\": \"y\", \"echo\": true}"};
    for (int i = 0; i < 2; i++) {
        cr_assert(!parse(SRV_COMPLETION, bad[i], &p, &e), "%s", bad[i]);
        cr_assert_str_eq(e.param, "suffix");
    }
    cr_assert(!parse(SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"suffix\": \"y\"}", &p, &e));
    cr_assert_str_eq(e.param, "suffix");
}

/* What loom cannot do is refused naming the field, not ignored. */
Test(openai, unsupported_fields_are_refused) {
    static const char *const bad[][2] = {
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"modalities\": [\"text\", \"audio\"]}", "modalities"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"audio\": {\"voice\": \"alloy\"}}", "audio"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"web_search_options\": {}}", "web_search_options"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"functions\": [{\"name\": \"f\"}]}", "functions"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"function_call\": \"auto\"}", "function_call"},
    };
    srv_params p;
    srv_error e;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert(!parse(SRV_CHAT, bad[i][0], &p, &e), "%s", bad[i][0]);
        cr_assert_str_eq(e.param, bad[i][1]);
    }
    cr_assert(parse(SRV_CHAT, "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"modalities\": [\"text\"], \"audio\": null}",
                    &p, &e), "%s", e.message);
    srv_params_free(&p);
}
