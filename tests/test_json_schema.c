/*
 * tests/test_json_schema.c — structured output: the schema automaton
 * (runtime/text/json_schema.h) on documents that jansson (an independent
 * parser) takes or refuses and on schemas as Pydantic writes them, and the
 * sampler's constraint over the default model's vocabulary.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/sampler.h"
#include "runtime/text/json_schema.h"
#include "runtime/text/pattern.h"
#include "runtime/text/tokenizer.h"

#define DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

static loom_json_schema *schema_of(const char *text) {
    loom_json_schema *s = NULL;
    loom_status st = loom_json_schema_compile(text, strlen(text), &s);
    cr_assert_null(st, "%s: %s", text, st ? loom_status_message(st) : "");
    return s;
}

/* Fed in pieces of every size: a prefix (taken) or not, and complete or not. */
static void expect_doc(const loom_json_schema *schema, const char *doc, bool prefix, bool complete) {
    const size_t n = strlen(doc);
    for (size_t step = 1; step <= (n ? n : 1); step++) {
        loom_json_state s;
        loom_json_init(&s, schema);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i += step) ok = loom_json_feed(&s, doc + i, i + step < n ? step : n - i);
        cr_assert_eq(ok, prefix, "step %zu: '%s' %s", step, doc, prefix ? "refused" : "taken");
        if (ok) cr_assert_eq(loom_json_complete(&s), complete, "'%s': complete %d", doc, !complete);
    }
    if (complete) { /* the independent judge of whole documents */
        json_t *j = json_loads(doc, JSON_DECODE_ANY, NULL);
        cr_assert_not_null(j, "jansson refuses '%s'", doc);
        json_decref(j);
    }
}

/* Patterns (runtime/text/pattern.h) against Python's re.search on 882
 * strings (tests/fixtures/patterns.json, tests/fixtures/gen_patterns.py):
 * the automaton matches where re finds the pattern, and a schema's string
 * holding the pattern takes the same documents (fed whole and byte by byte). */
Test(json_schema, patterns_match_as_python_re) {
    json_error_t je;
    json_t *fx = json_load_file(LOOM_TEST_DATA "/fixtures/patterns.json", 0, &je);
    cr_assert_not_null(fx, "tests/fixtures/patterns.json: %s", je.text);
    size_t i, k, checked = 0;
    json_t *c;
    json_array_foreach(json_object_get(fx, "cases"), i, c) {
        const char *re = json_string_value(json_object_get(c, "pattern"));
        loom_pattern *p;
        loom_status st = loom_pattern_compile(re, strlen(re), &p);
        cr_assert_null(st, "%s: %s", re, st ? loom_status_message(st) : "");
        json_t *schema = json_pack("{s:s, s:s}", "type", "string", "pattern", re);
        char *text = json_dumps(schema, JSON_COMPACT);
        loom_json_schema *s = schema_of(text);
        json_t *pair;
        json_array_foreach(json_object_get(c, "strings"), k, pair) {
            const char *str = json_string_value(json_array_get(pair, 0));
            const bool want = json_is_true(json_array_get(pair, 1));
            cr_assert_eq(loom_pattern_match(p, str, strlen(str)), want, "/%s/ on '%s': %s expected", re, str,
                         want ? "a match" : "none");
            char doc[256];
            snprintf(doc, sizeof doc, "\"%s\"", str);
            loom_json_state js;
            loom_json_init(&js, s);
            const bool fed = loom_json_feed(&js, doc, strlen(doc));
            cr_assert_eq(fed && loom_json_complete(&js), want, "schema /%s/ on %s", re, doc);
            if (want) expect_doc(s, doc, true, true);
            checked++;
        }
        loom_json_schema_free(s);
        free(text);
        json_decref(schema);
        loom_pattern_free(p);
    }
    cr_assert_geq(checked, 800, "only %zu strings", checked);
    json_decref(fx);
    /* what a matched string may not hold: escapes (the model writes it unescaped) */
    loom_json_schema *s = schema_of("{\"type\": \"string\", \"pattern\": \"^a.c$\"}");
    expect_doc(s, "\"a\\nc\"", false, false);
    expect_doc(s, "\"abc\"", true, true);
    expect_doc(s, "\"ab", true, false);
    expect_doc(s, "\"abd", false, false);
    loom_json_schema_free(s);
}

/* String formats Pydantic writes (date, date-time, time, uuid, ipv4,
 * email) hold the text to their shape; an unknown format is an annotation. */
Test(json_schema, string_formats) {
    static const struct {
        const char *format, *doc;
        bool ok;
    } cases[] = {
        {"date", "\"2024-01-31\"", true},          {"date", "\"2024-13-01\"", false},
        {"date", "\"24-01-31\"", false},           {"date-time", "\"2024-01-31T12:30:00Z\"", true},
        {"date-time", "\"2024-01-31T12:30:00.123+02:00\"", true},
        {"date-time", "\"2024-01-31T12:30:00\"", true}, {"date-time", "\"2024-01-31 12:30:00\"", false},
        {"date-time", "\"2024-01-31T24:00:00\"", false}, {"time", "\"23:59:59\"", true},
        {"time", "\"23:60:00\"", false},
        {"uuid", "\"123e4567-e89b-12d3-a456-426614174000\"", true},
        {"uuid", "\"123e4567e89b12d3a456426614174000\"", false},
        {"ipv4", "\"192.168.0.255\"", true},       {"ipv4", "\"192.168.0.256\"", false},
        {"email", "\"ada.lovelace@example.org\"", true}, {"email", "\"ada@localhost\"", false},
        {"uri", "\"anything at all\"", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char schema[128];
        snprintf(schema, sizeof schema, "{\"type\": \"string\", \"format\": \"%s\"}", cases[i].format);
        loom_json_schema *s = schema_of(schema);
        loom_json_state js;
        loom_json_init(&js, s);
        const bool ok = loom_json_feed(&js, cases[i].doc, strlen(cases[i].doc)) && loom_json_complete(&js);
        cr_assert_eq(ok, cases[i].ok, "format %s: %s %s", cases[i].format, cases[i].doc, ok ? "taken" : "refused");
        loom_json_schema_free(s);
    }
}

Test(json_schema, any_object) {
    loom_json_schema *o = schema_of("{\"type\": \"object\"}");
    static const char *const whole[] = {
        "{}", " \n{ }", "{\"a\":1}", "{\"a\": -0.5e+10, \"b\": [true, false, null, \"x\\\"y\\u00e9\\n\"], \"c\": {}}",
        "{\"\":[[],[{}],0,-0,1.5E3,2e-2]}", "{\"k\":\"Z\xc3\xbcrich \xe2\x96\x81\"}", "{\"a\":[1,2,3] }"};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) expect_doc(o, whole[i], true, true);
    static const char *const open[] = {"", " ", "{", "{\"a", "{\"a\":", "{\"a\": 1", "{\"a\": tr", "{\"a\": [1, ",
                                       "{\"a\": \"\\u00", "{\"a\": -", "{\"a\": 1.", "{\"a\": 1e"};
    for (size_t i = 0; i < sizeof open / sizeof *open; i++) expect_doc(o, open[i], true, false);
    loom_json_state s;
    loom_json_init(&s, o);
    cr_assert(loom_json_feed(&s, "{}", 2) && loom_json_complete(&s));
    cr_assert_not(loom_json_feed(&s, " ", 1), "nothing after the document, whitespace neither");
    static const char *const bad[] = {"[]", "1", "\"x\"", "{}x", "{}{}", "{,}", "{\"a\" 1}", "{\"a\":}",
                                      "{\"a\":1,}", "{\"a\":[1,]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":+1}",
                                      "{\"a\":tru}", "{\"a\":\"\\x\"}", "{\"a\":\"\x01\"}", "{\"a\":[1}", "{\"a\":{]}",
                                      "{a:1}", "{\"a\":\"\\u12G4\"}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":nul}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        expect_doc(o, bad[i], false, false);
        json_t *j = json_loads(bad[i], 0, NULL);
        cr_assert(!json_is_object(j), "jansson takes '%s' as one object", bad[i]);
        json_decref(j);
    }
    /* the limits */
    char deep[2 * LOOM_JSON_MAX_DEPTH + 16] = "{\"a\":";
    size_t n = strlen(deep);
    for (int d = 1; d < LOOM_JSON_MAX_DEPTH; d++) deep[n++] = '[';
    loom_json_init(&s, o);
    cr_assert(loom_json_feed(&s, deep, n), "nesting %d", LOOM_JSON_MAX_DEPTH);
    cr_assert_not(loom_json_feed(&s, "[", 1), "nesting past %d", LOOM_JSON_MAX_DEPTH);
    char ws[LOOM_JSON_MAX_WS + 2];
    memset(ws, ' ', sizeof ws);
    loom_json_init(&s, o);
    cr_assert(loom_json_feed(&s, ws, LOOM_JSON_MAX_WS));
    cr_assert_not(loom_json_feed(&s, " ", 1), "whitespace past %d in a row", LOOM_JSON_MAX_WS);
    loom_json_schema_free(o);
}

/* What Pydantic writes for
 *   class Pet(BaseModel): kind: Literal["cat", "dog"]; age: int = Field(ge=0, le=30)
 *   class Person(BaseModel): name: str; height: Annotated[float, Field(ge=0.5, le=2.5)] | None;
 *                            pets: list[Pet] (1-3); boss: Person | None = None
 * with OpenAI's strict additionalProperties false. */
static const char PERSON[] =
    "{\"$defs\": {\"Pet\": {\"type\": \"object\", \"title\": \"Pet\", \"additionalProperties\": false,"
    " \"properties\": {\"kind\": {\"enum\": [\"cat\", \"dog\"], \"type\": \"string\"}, \"age\": {\"type\": \"integer\","
    " \"minimum\": 0, \"maximum\": 30}},"
    " \"required\": [\"kind\", \"age\"]}},"
    " \"type\": \"object\", \"title\": \"Person\", \"additionalProperties\": false,"
    " \"properties\": {\"name\": {\"type\": \"string\", \"description\": \"full name\"},"
    " \"height\": {\"anyOf\": [{\"type\": \"number\", \"minimum\": 0.5, \"maximum\": 2.5}, {\"type\": \"null\"}]},"
    " \"pets\": {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/Pet\"}, \"minItems\": 1, \"maxItems\": 3},"
    " \"boss\": {\"anyOf\": [{\"$ref\": \"#\"}, {\"type\": \"null\"}], \"default\": null}},"
    " \"required\": [\"name\", \"height\", \"pets\"]}";

Test(json_schema, pydantic_models) {
    loom_json_schema *p = schema_of(PERSON);
    static const char *const whole[] = {
        "{\"name\": \"Ada\", \"height\": 1.7, \"pets\": [{\"kind\": \"cat\", \"age\": 3}]}",
        "{\"pets\":[{\"age\":1,\"kind\":\"dog\"},{\"kind\":\"cat\",\"age\":12}],\"height\":null,\"name\":\"\\\"B\\\"\"}",
        "{\"name\": \"C\", \"height\": 2, \"pets\": [{\"kind\": \"dog\", \"age\": 0}], \"boss\": null}",
        ("{\"name\": \"C\", \"height\": 2, \"pets\": [{\"kind\": \"dog\", \"age\": 0}], \"boss\": {\"name\": \"D\","
         " \"height\": null, \"pets\": [{\"kind\": \"cat\", \"age\": 9}], \"boss\": null}}")};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) expect_doc(p, whole[i], true, true);
    static const char *const open[] = {"{\"na", "{\"name\": \"Ada\", \"he", "{\"pets\": [{\"kind\": \"d",
                                       "{\"pets\": [{\"age\": 12", "{\"boss\": {\"boss\": {\"name\": \"x\""};
    for (size_t i = 0; i < sizeof open / sizeof *open; i++) expect_doc(p, open[i], true, false);
    static const char *const bad[] = {
        "{\"nombre\"",                                                   /* no such property */
        "{\"name\": \"A\", \"name\"",                                    /* twice */
        "{\"name\": 5",                                                  /* a string */
        "{\"height\": \"tall\"",                                         /* a number or null */
        "{\"pets\": []",                                                 /* minItems 1 */
        "{\"pets\": [{\"kind\": \"cow\"",                                /* the enum */
        "{\"pets\": [{\"kind\": \"cat\", \"age\": 1.5",                  /* an integer */
        "{\"pets\": [{\"kind\": \"cat\", \"age\": 1}, {\"kind\": \"cat\", \"age\": 1}, {\"kind\": \"cat\", \"age\": 1}, {",
        "{\"name\": \"A\", \"height\": 1}",                              /* pets is required */
        "{\"pets\": [{\"kind\": \"cat\"}]",                              /* age is required */
        "{\"name\": \"A\", \"height\": 1, \"pets\": [{\"kind\": \"cat\", \"age\": 1}], \"extra\": 1}",
        "[",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_doc(p, bad[i], false, false);
    loom_json_schema_free(p);
    /* type lists, const, enums of any JSON, a root that is not an object */
    loom_json_schema *e = schema_of("{\"type\": \"object\", \"properties\": {\"v\": {\"enum\": [1, 12, \"x\", null,"
                                    " {\"a\": [true]}]}, \"c\": {\"const\": \"k\"}, \"t\": {\"type\": [\"integer\","
                                    " \"boolean\"]}}}");
    expect_doc(e, "{\"v\": 1, \"c\": \"k\", \"t\": false}", true, true);
    expect_doc(e, "{\"v\": 12}", true, true);
    expect_doc(e, "{\"v\": {\"a\":[true]}}", true, true);
    expect_doc(e, "{\"v\": null, \"t\": -3}", true, true);
    expect_doc(e, "{\"v\": 2", false, false);
    expect_doc(e, "{\"v\": 123", false, false);
    expect_doc(e, "{\"c\": \"kk\"", false, false);
    expect_doc(e, "{\"t\": 1.0", false, false);
    loom_json_schema_free(e);
    loom_json_schema *len = schema_of("{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\","
                                      " \"minLength\": 2, \"maxLength\": 4}}}");
    expect_doc(len, "{\"s\": \"ab\"}", true, true);
    expect_doc(len, "{\"s\": \"\xc3\xa9t\xc3\xa9\\n\"}", true, true); /* 4 characters in 7 bytes */
    expect_doc(len, "{\"s\": \"a\"", false, false);
    expect_doc(len, "{\"s\": \"abcde", false, false);
    expect_doc(len, "{\"s\": \"abc\\u00e9x", false, false);
    loom_json_schema_free(len);
    loom_json_schema *age = schema_of("{\"type\": \"object\", \"properties\": {\"age\": {\"type\": \"integer\","
                                      " \"minimum\": 1, \"maximum\": 120}, \"t\": {\"type\": \"integer\","
                                      " \"exclusiveMinimum\": -3.5, \"exclusiveMaximum\": 0}}}");
    expect_doc(age, "{\"age\": 7, \"t\": -1}", true, true);
    expect_doc(age, "{\"age\": 120, \"t\": -3}", true, true);
    expect_doc(age, "{\"age\": 12", true, false);
    static const char *const out_of_bounds[] = {"{\"age\": 0", "{\"age\": 121", "{\"age\": -", "{\"age\": 1000",
                                                "{\"t\": 0", "{\"t\": -4", "{\"t\": 1"};
    for (size_t i = 0; i < sizeof out_of_bounds / sizeof *out_of_bounds; i++)
        expect_doc(age, out_of_bounds[i], false, false);
    loom_json_schema_free(age);
    loom_json_schema *price = schema_of("{\"type\": \"object\", \"properties\": {\"p\": {\"type\": \"number\","
                                        " \"minimum\": 0, \"exclusiveMaximum\": 10.5}, \"q\": {\"type\": \"number\","
                                        " \"exclusiveMinimum\": -1, \"maximum\": -0.25}}}");
    static const char *const priced[] = {"{\"p\": 0}", "{\"p\": 10.49}", "{\"p\": 3.25, \"q\": -0.5}",
                                         "{\"q\": -0.25}", "{\"q\": -0.999}", "{\"p\": 0.0}"};
    for (size_t i = 0; i < sizeof priced / sizeof *priced; i++) expect_doc(price, priced[i], true, true);
    static const char *const unpriced[] = {"{\"p\": -1", "{\"p\": 10.5", "{\"p\": 11", "{\"p\": 105",
                                           "{\"p\": 1e", "{\"q\": -1}", "{\"q\": -0.2}", "{\"q\": 0",
                                           "{\"q\": -2", "{\"q\": -0.1"};
    for (size_t i = 0; i < sizeof unpriced / sizeof *unpriced; i++) expect_doc(price, unpriced[i], false, false);
    expect_doc(price, "{\"p\": 10.4", true, false); /* 10.4 and 10.49... stay below 10.5 */
    expect_doc(price, "{\"q\": -0.2", true, false); /* -0.25 is still ahead */
    loom_json_schema_free(price);
    loom_json_schema *ten = schema_of("{\"type\": \"integer\", \"minimum\": 10}");
    expect_doc(ten, "5", true, false); /* 50 may follow */
    expect_doc(ten, "50", true, true);
    loom_json_schema_free(ten);
    loom_json_schema *arr = schema_of("{\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"maxItems\": 2}");
    expect_doc(arr, "[1, 2]", true, true);
    expect_doc(arr, "[1, 2, 3]", false, false);
    loom_json_schema_free(arr);
    loom_json_schema *num = schema_of("{\"enum\": [1, 10]}");
    expect_doc(num, "1", true, true); /* a root value that ends where the text does */
    expect_doc(num, "10", true, true);
    loom_json_schema_free(num);
}

Test(json_schema, what_is_not_taken) {
    static const char *const cases[][2] = {
        {"{\"type\": \"string\", \"pattern\": \"(?=a)\"}", "lookahead"},
        {"{\"type\": \"string\", \"pattern\": \"a(\"}", "not closed"},
        {"{\"type\": \"string\", \"pattern\": 5}", "'pattern' must be a string"},
        {"{\"type\": \"string\", \"pattern\": \"^\\\"$\"}", "matches no string"},
        {"{\"type\": \"string\", \"minimum\": 0}", "no number"},
        {"{\"type\": \"number\", \"minimum\": 1, \"exclusiveMaximum\": 1}", "no number is within"},
        {"{\"type\": \"integer\", \"minimum\": 5, \"maximum\": 4}", "no integer is within"},
        {"{\"type\": \"integer\", \"multipleOf\": 2}", "'multipleOf' is not supported"},
        {"{\"allOf\": [{\"type\": \"object\"}]}", "'allOf'"},
        {"{\"$ref\": \"#/$defs/Nope\"}", "names no schema"},
        {"{\"type\": \"object\", \"required\": [\"a\"]}", "required 'a'"},
        {"{\"type\": \"thing\"}", "JSON types"},
        {"[1]", "must be an object"},
        {"{\"type\": \"object\", \"properties\": {\"a\\\"b\": {}}}", "escapes"},
        {"{", "not JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        loom_json_schema *s = NULL;
        loom_status st = loom_json_schema_compile(cases[i][0], strlen(cases[i][0]), &s);
        cr_assert_not_null(st, "%s compiled", cases[i][0]);
        cr_assert(strstr(loom_status_message(st), cases[i][1]), "%s: %s", cases[i][0], loom_status_message(st));
        cr_assert_null(s);
        loom_status_free(st);
    }
}

/* A sampler constrained by a schema over the default model's vocabulary,
 * fed random logits that favour closing: every run ends with EOS, and the
 * text before it is a document jansson parses and the schema's checks
 * (written out here) accept. */
enum { RUN_OBJECT, RUN_PERSON, RUN_PATTERNS };

/* PATTERNED's strings checked by hand: a date as \d{4}-\d{2}-\d{2}, a code of three capitals. */
static const char PATTERNED[] =
    "{\"type\": \"object\", \"additionalProperties\": false, \"required\": [\"date\", \"code\"],"
    " \"properties\": {\"date\": {\"type\": \"string\", \"pattern\": \"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"},"
    " \"code\": {\"type\": \"string\", \"pattern\": \"^[A-Z]{3}$\"}}}";

static bool is_date(const char *s) {
    if (!s || strlen(s) != 10) return false;
    for (int i = 0; i < 10; i++)
        if (i == 4 || i == 7 ? s[i] != '-' : !(s[i] >= '0' && s[i] <= '9')) return false;
    return true;
}

static void sampled_runs(const char *schema_text, int kind, int runs) {
    const bool person = kind == RUN_PERSON;
    loom_gguf *g;
    loom_tokenizer *tok;
    cr_assert_null(loom_gguf_open(DEFAULT_MODEL, &g), "needs %s (launch/fetch-model.sh)", DEFAULT_MODEL);
    cr_assert_null(loom_tokenizer_create(g, &tok));
    const int32_t V = loom_tokenizer_n_vocab(tok), eos = loom_tokenizer_eos(tok);
    loom_vocab_text text;
    cr_assert_null(loom_vocab_text_build(tok, V, &text));
    int32_t closers[4] = {-1, -1, -1, -1};
    for (int32_t i = 0; i < V; i++) {
        const char *p = text.bytes + text.off[i];
        if (text.off[i + 1] - text.off[i] != 1) continue;
        for (int k = 0; k < 4; k++)
            if (*p == "}\"]1"[k]) closers[k] = i;
    }
    float *logits = malloc((size_t)V * sizeof *logits);
    double t_all = 0;
    int tokens = 0;
    for (int run = 0; run < runs; run++) {
        loom_sampling_params p = loom_sampling_defaults();
        p.temperature = run % 2 ? 0.9f : 0;
        p.seed = (uint64_t)run;
        loom_sampler *s;
        loom_json_constraint *c;
        cr_assert_null(loom_sampler_create(&p, V, &s));
        cr_assert_null(loom_json_constraint_create(&text, schema_of(schema_text), &c));
        loom_sampler_set_constraint(s, &(loom_sampler_constraint){loom_json_constraint_fits, loom_json_constraint_accept, c});
        uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(run + 1);
        char out[16384];
        size_t n = 0;
        int32_t t = -1;
        for (int k = 0; k < 1500 && t != eos; k++) {
            for (int32_t i = 0; i < V; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                logits[i] = (float)((x >> 40) & 0xffff) / 65536.0f * 4.0f;
            }
            logits[eos] = 30; /* ends as soon as it may */
            for (int q = 0; q < 4; q++) logits[closers[q]] += k > 8 ? 3.5f : 1.0f;
            const double t0 = loom_now_s();
            t = loom_sampler_sample(s, logits);
            t_all += loom_now_s() - t0;
            tokens++;
            loom_sampler_accept_output(s, t);
            if (t == eos) break;
            cr_assert(text.kind[t] == 0, "run %d: control token %d sampled", run, t);
            const uint32_t len = text.off[t + 1] - text.off[t];
            cr_assert(n + len < sizeof out);
            memcpy(out + n, text.bytes + text.off[t], len);
            n += len;
        }
        out[n] = 0;
        cr_assert_eq(t, eos, "run %d: no EOS after 1500 tokens: %.300s", run, out);
        json_t *j = json_loads(out, JSON_DECODE_INT_AS_REAL, NULL); /* random digits outgrow jansson's integers */
        cr_assert(json_is_object(j), "run %d: not one object: '%s'", run, out);
        if (person) {
            json_t *pets = json_object_get(j, "pets"), *h = json_object_get(j, "height");
            cr_assert(json_is_string(json_object_get(j, "name")) &&
                          ((json_is_number(h) && json_number_value(h) >= 0.5 && json_number_value(h) <= 2.5) ||
                           json_is_null(h)) &&
                          json_array_size(pets) >= 1 && json_array_size(pets) <= 3,
                      "run %d: %s", run, out);
            const char *key;
            json_t *v;
            json_object_foreach(j, key, v) cr_assert(!strcmp(key, "name") || !strcmp(key, "height") ||
                                                         !strcmp(key, "pets") || !strcmp(key, "boss"),
                                                     "run %d: key '%s'", run, key);
            size_t i;
            json_array_foreach(pets, i, v) {
                const char *kind = json_string_value(json_object_get(v, "kind"));
                const double age = json_real_value(json_object_get(v, "age"));
                cr_assert(kind && (!strcmp(kind, "cat") || !strcmp(kind, "dog")) &&
                              json_is_real(json_object_get(v, "age")) && age == (double)(long long)age && age >= 0 &&
                              age <= 30 &&
                              json_object_size(v) == 2,
                          "run %d: pet %s", run, out);
            }
        }
        if (kind == RUN_PATTERNS) {
            const char *code = json_string_value(json_object_get(j, "code"));
            cr_assert(is_date(json_string_value(json_object_get(j, "date"))) && code && strlen(code) == 3 &&
                          code[0] >= 'A' && code[0] <= 'Z' && code[1] >= 'A' && code[1] <= 'Z' && code[2] >= 'A' &&
                          code[2] <= 'Z' && json_object_size(j) == 2,
                      "run %d: %s", run, out);
        }
        json_decref(j);
        loom_sampler_free(s);
        loom_json_constraint_free(c);
    }
    printf("structured output: %.3f ms a token (%d tokens, vocabulary %d)\n", 1e3 * t_all / tokens, tokens, V);
    free(logits);
    loom_vocab_text_free(&text);
    loom_tokenizer_free(tok);
    loom_gguf_free(g);
}

Test(json_schema, sampled_object) { sampled_runs("{\"type\": \"object\"}", RUN_OBJECT, 8); }
Test(json_schema, sampled_pydantic_model) { sampled_runs(PERSON, RUN_PERSON, 6); }
Test(json_schema, sampled_patterns) { sampled_runs(PATTERNED, RUN_PATTERNS, 6); }
