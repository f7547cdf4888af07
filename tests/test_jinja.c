/*
 * tests/test_jinja.c — the Jinja interpreter.
 *
 * Feature by feature (whitespace control, loops and loop.*, macros and
 * call blocks, namespace, expressions, slicing, tests, filters, tojson,
 * string methods, globals, syntax errors), small templates are rendered
 * and compared with what jinja2 rendered in transformers' environment
 * (tests/fixtures/jinja_cases.json, made by tests/fixtures/gen_jinja_cases.py).
 * Where jinja2 raised, loom must fail too; for the template's own errors
 * (raise_exception) with the same message, for syntax errors at parse time
 * and on the same line.
 *
 * Then what jinja2 does not decide: error positions (line:column), the
 * limits that bound a hostile template, and the variables API.
 */
#include <criterion/criterion.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/jinja.h"

#define OK(expr)                                                             \
    do {                                                                     \
        loom_status s_ = (expr);                                             \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_)); \
    } while (0)

#define CASES LOOM_TEST_DATA "/fixtures/jinja_cases.json"

/* Renders src with the variables of the JSON object vars; returns the
 * status (NULL on success) with the output in *out. */
static loom_status render(const char *src, const char *vars_json, const loom_jinja_limits *lim, loom_strbuf *out,
                          bool *parse_failed) {
    loom_jinja_template *t = NULL;
    loom_status st = loom_jinja_parse(src, strlen(src), NULL, &t);
    if (parse_failed) *parse_failed = st != NULL;
    if (st) return st;
    loom_jinja_vars *v;
    st = loom_jinja_vars_create(&v);
    if (!st && vars_json) st = loom_jinja_vars_set_object(v, vars_json, strlen(vars_json));
    if (!st) st = loom_jinja_render(t, v, lim, out);
    loom_jinja_vars_free(v);
    loom_jinja_free(t);
    return st;
}

static void run_group(const char *group) {
    json_error_t jerr;
    json_t *doc = json_load_file(CASES, JSON_ALLOW_NUL, &jerr);
    cr_assert_not_null(doc, "cannot read %s: %s", CASES, jerr.text);
    char *vars = json_dumps(json_object_get(doc, "vars"), JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_t *cases = json_object_get(json_object_get(doc, "groups"), group);
    cr_assert(json_array_size(cases) > 0, "no cases for %s", group);
    loom_jinja_limits lim = loom_jinja_limits_default();
    lim.now = json_string_value(json_object_get(doc, "now"));
    size_t i;
    json_t *c;
    int bad = 0;
    json_array_foreach(cases, i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        json_t *want = json_object_get(c, "output"), *werr = json_object_get(c, "error");
        loom_strbuf out = {0};
        bool parse_failed;
        loom_status st = render(src, vars, &lim, &out, &parse_failed);
        const char *msg = loom_status_message(st);
        if (want) {
            const char *w = json_string_value(want);
            size_t wn = json_string_length(want);
            if (st) {
                bad++;
                cr_log_error("[%s %zu] %s\n  jinja2 rendered '%s'; loom failed: %s", group, i, src, w, msg);
            } else if (out.len != wn || memcmp(out.data ? out.data : "", w, wn)) {
                bad++;
                cr_log_error("[%s %zu] %s\n  want '%s'\n  got  '%s'", group, i, src, w, out.data ? out.data : "");
            }
        } else {
            const char *type = json_string_value(json_object_get(werr, "type"));
            const char *wmsg = json_string_value(json_object_get(werr, "message"));
            json_t *line = json_object_get(werr, "line");
            if (!st) {
                bad++;
                cr_log_error("[%s %zu] %s\n  jinja2 raised %s (%s); loom rendered '%s'", group, i, src, type, wmsg,
                             out.data ? out.data : "");
            } else if (!strcmp(type, "TemplateError") && !strstr(msg, wmsg)) {
                bad++;
                cr_log_error("[%s %zu] %s\n  want the message '%s', got '%s'", group, i, src, wmsg, msg);
            } else if (line && (strstr(type, "Syntax") || strstr(type, "Assertion"))) {
                char where[32];
                snprintf(where, sizeof where, "template:%lld:", (long long)json_integer_value(line));
                if (!parse_failed || !strstr(msg, where)) {
                    bad++;
                    cr_log_error("[%s %zu] %s\n  want a parse error on line %lld (%s), got %s'%s'", group, i, src,
                                 (long long)json_integer_value(line), wmsg, parse_failed ? "" : "a render error ", msg);
                }
            }
        }
        loom_status_free(st);
        loom_strbuf_free(&out);
    }
    free(vars);
    json_decref(doc);
    cr_assert_eq(bad, 0, "%d case(s) of '%s' differ from jinja2 (listed above)", bad, group);
}

Test(jinja2_cases, whitespace) { run_group("whitespace"); }
Test(jinja2_cases, loops) { run_group("loops"); }
Test(jinja2_cases, macros_call_filter_blocks) { run_group("macros"); }
Test(jinja2_cases, namespace_and_set) { run_group("namespace"); }
Test(jinja2_cases, scoping) { run_group("scoping"); }
Test(jinja2_cases, expressions) { run_group("expressions"); }
Test(jinja2_cases, slicing) { run_group("slicing"); }
Test(jinja2_cases, is_tests) { run_group("tests"); }
Test(jinja2_cases, filters) { run_group("filters"); }
Test(jinja2_cases, tojson) { run_group("tojson"); }
Test(jinja2_cases, string_methods) { run_group("strings"); }
Test(jinja2_cases, globals) { run_group("globals"); }
Test(jinja2_cases, corners) { run_group("corners"); }
Test(jinja2_cases, syntax_errors) { run_group("syntax_errors"); }

/* ---- errors name line and column ---- */

static void expect_error(const char *src, const loom_jinja_limits *lim, const char *want) {
    loom_strbuf out = {0};
    cr_assert(loom_strbuf_append(&out, "kept", 4) == NULL);
    loom_status st = render(src, NULL, lim, &out, NULL);
    cr_assert_not_null(st, "expected '%s' to fail with '%s'", src, want);
    cr_assert(strstr(loom_status_message(st), want), "message '%s' lacks '%s'", loom_status_message(st), want);
    cr_assert_eq(out.len, 4, "the output buffer must keep what it held");
    loom_status_free(st);
    loom_strbuf_free(&out);
}

Test(errors, name_line_and_column) {
    expect_error("line 1\n{{ 1 +* 2 }}", NULL, "template:2:7: unexpected '*'");
    expect_error("a\nb\n  {% for x in %}", NULL, "template:3:15: Expected an expression");
    expect_error("{% if true %}\n\n   {{ foo.bar }}{% endif %}", NULL, "template:3:10: 'foo' is undefined");
    expect_error("{{ 'x' }}\n{{ raise_exception('Conversation roles must alternate') }}", NULL,
                 "template:2:4: Conversation roles must alternate");
    expect_error("\n{% for x in [1] %}", NULL, "Jinja was looking for the following tags: 'endfor' or 'else'");
    expect_error("{{ \xc3\x28 }}", NULL, "not valid UTF-8 (byte 3)");
    expect_error("{{ '\\N{BULLET}' }}", NULL, "template:1:4:");
    expect_error("{% include 'other.jinja' %}", NULL, "cannot load other templates");
    expect_error("{{ messages[0].content }}", NULL, "'messages' is undefined");
}

/* ---- limits on hostile templates ---- */

/* Names of tests and filters given as strings at run time are counted
 * strings, the empty one without bytes: found by the fuzzer, select('')
 * passed NULL to strcmp. jinja2 raises on each of these as well. */
Test(errors, names_given_as_strings) {
    expect_error("{{ [1, 2]|select('')|list }}", NULL, "No test named ''.");
    expect_error("{{ [1, 2]|select('odd' ~ 'x')|list }}", NULL, "No test named 'oddx'.");
    expect_error("{{ 1.5|round(1, '') }}", NULL, "method must be common, ceil or floor");
    loom_strbuf out = {0};
    cr_assert_null(render("{{ '' is test }}{{ 'odd' is test }}{{ '' is filter }}{{ 'upper' is filter }}", NULL, NULL, &out,
                          NULL));
    cr_assert_str_eq(out.data, "FalseTrueFalseTrue");
    loom_strbuf_free(&out);
}

Test(limits, recursion_depth) {
    expect_error("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", NULL, "nests calls too deeply");
    loom_jinja_limits lim = loom_jinja_limits_default();
    lim.max_depth = 4; /* f(0) .. f(3) */
    expect_error("{% macro f(n) %}{% if n < 5 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}", &lim,
                 "more than 4 macro calls");
    loom_strbuf out = {0};
    OK(render("{% macro f(n) %}{% if n < 3 %}{{ n }}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(0) }}", NULL, &lim,
              &out, NULL));
    cr_assert_str_eq(out.data, "012");
    loom_strbuf_free(&out);
    /* recursive loops count too */
    expect_error("{% for x in [[[[[[[]]]]]]] recursive %}{{ loop(x) }}{% endfor %}", &lim, "nests calls too deeply");
}

Test(limits, loop_iterations_and_work) {
    loom_jinja_limits lim = loom_jinja_limits_default();
    lim.max_steps = 10000;
    expect_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", &lim, "ran too long");
    /* calls that branch: 2^30 calls without deep nesting */
    expect_error("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(30) }}", &lim,
                 "ran too long");
    /* scanning large strings counts */
    expect_error("{% set ns = namespace(s='x' * 1000000) %}{% for i in range(1000) %}{% if 'y' in ns.s %}{% endif %}"
                 "{% endfor %}",
                 &lim, "ran too long");
}

Test(limits, output_and_memory) {
    loom_jinja_limits lim = loom_jinja_limits_default();
    lim.max_output = 1000;
    expect_error("{% for i in range(2000) %}x{% endfor %}", &lim, "output is longer than the limit (1000 bytes)");
    lim = loom_jinja_limits_default();
    lim.max_memory = 1 << 20;
    expect_error("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 &lim, "memory limit");
    expect_error("{{ 'x' * 100000000 }}", &lim, "memory limit");
    /* values nested deeper than repr / tojson / comparisons follow fail cleanly */
    expect_error("{% set ns = namespace(v=[]) %}{% for i in range(2000) %}{% set ns.v = [ns.v] %}{% endfor %}"
                 "{{ ns.v|tojson }}",
                 NULL, "recursion");
    expect_error("{% set ns = namespace(v=[]) %}{% for i in range(2000) %}{% set ns.v = [ns.v] %}{% endfor %}{{ ns.v }}",
                 NULL, "recursion");
}

Test(limits, parser_nesting) {
    static char deep[20000];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int i = 0; i < 5000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 5000; i++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    expect_error(deep, NULL, "nests too deeply");
    n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{%% if 1 %%}");
    expect_error(deep, NULL, "nests too deeply");
    /* nesting multiplies across macro calls: bounded in total (the stack stays under 1 MiB) */
    n = (size_t)snprintf(deep, sizeof deep, "{%% macro f(n) %%}");
    for (int i = 0; i < 60; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{%% if true %%}");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ f(n + 1) }}");
    for (int i = 0; i < 60; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{%% endif %%}");
    snprintf(deep + n, sizeof deep - n, "{%% endmacro %%}{{ f(0) }}");
    expect_error(deep, NULL, "levels across macro calls");
    /* long chains are deep trees too */
    n = (size_t)snprintf(deep, sizeof deep, "{{ x");
    for (int i = 0; i < 3000; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, ".a");
    snprintf(deep + n, sizeof deep - n, " }}");
    expect_error(deep, NULL, "nests too deeply");
}

/* ---- the variables a render sees ---- */

Test(vars, json_values_and_reasoning_alias) {
    loom_jinja_template *t;
    static const char src[] = "{% for m in messages %}{{ m|tojson }}\n{% endfor %}{{ big }} {{ flag }} {{ n is none }}";
    OK(loom_jinja_parse(src, strlen(src), "t", &t));
    loom_jinja_vars *v;
    OK(loom_jinja_vars_create(&v));
    static const char msgs[] =
        "[{\"role\": \"user\", \"content\": \"q\"},"
        " {\"role\": \"assistant\", \"content\": \"a\", \"reasoning_content\": \"r\"},"
        " {\"role\": \"assistant\", \"thinking\": \"t\", \"content\": \"b\", \"reasoning_content\": null}]";
    OK(loom_jinja_vars_set_messages(v, msgs, strlen(msgs), false));
    OK(loom_jinja_vars_set_json(v, "big", "[1.0, 10000000000000000.0, 1e-7, 123]", 37));
    OK(loom_jinja_vars_set_bool(v, "flag", true));
    OK(loom_jinja_vars_set_none(v, "n"));
    cr_assert(loom_jinja_vars_has(v, "flag"));
    cr_assert_not(loom_jinja_vars_has(v, "other"));
    loom_strbuf out = {0};
    OK(loom_jinja_render(t, v, NULL, &out));
    /* transformers 5: {"thinking": r, **message, "reasoning_content": r} */
    cr_assert_str_eq(out.data, "{\"role\": \"user\", \"content\": \"q\"}\n"
                               "{\"thinking\": \"r\", \"role\": \"assistant\", \"content\": \"a\", \"reasoning_content\": \"r\"}\n"
                               "{\"thinking\": \"t\", \"role\": \"assistant\", \"content\": \"b\", \"reasoning_content\": \"t\"}\n"
                               "[1.0, 1e+16, 1e-07, 123] True True");
    loom_strbuf_free(&out);
    loom_status st = loom_jinja_vars_set_messages(v, "{\"role\": \"user\"}", 16, false);
    cr_assert_not_null(st);
    cr_assert(strstr(loom_status_message(st), "expected a JSON array"));
    loom_status_free(st);
    st = loom_jinja_vars_set_json(v, "x", "[1, 2", 5);
    cr_assert_not_null(st);
    cr_assert(strstr(loom_status_message(st), "x: invalid JSON"), "%s", loom_status_message(st));
    loom_status_free(st);
    loom_jinja_vars_free(v);
    loom_jinja_free(t);
}
