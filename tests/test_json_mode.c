/*
 * tests/test_json_mode.c — JSON mode: the prefix automaton
 * (runtime/json_prefix.h) against documents jansson (an independent
 * parser) takes or refuses, and the sampler's constraint
 * (runtime/sampler.h) over the default model's vocabulary.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parallel/vocab_sampler.h"
#include "runtime/clock.h"
#include "runtime/json_prefix.h"
#include "runtime/sampler.h"
#include "runtime/text/tokenizer.h"

#define DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* Fed in pieces of every size: the whole text a prefix (accepted) or not,
 * and where the automaton stops taking bytes. */
static void expect_doc(const char *doc, bool prefix, bool complete) {
    const size_t n = strlen(doc);
    for (size_t step = 1; step <= n; step++) {
        loom_json_state s;
        loom_json_init(&s);
        bool ok = true;
        for (size_t i = 0; i < n && ok; i += step) ok = loom_json_feed(&s, doc + i, i + step < n ? step : n - i);
        cr_assert_eq(ok, prefix, "step %zu: '%s' %s", step, doc, prefix ? "refused" : "taken");
        if (ok) cr_assert_eq(loom_json_complete(&s), complete, "'%s' complete: %d", doc, !complete);
    }
    json_t *j = json_loads(doc, JSON_DECODE_ANY, NULL); /* the independent judge of whole documents */
    if (complete) cr_assert(json_is_object(j), "jansson refuses '%s'", doc);
    else if (!prefix) cr_assert(!json_is_object(j), "jansson takes '%s' as an object", doc);
    json_decref(j);
}

Test(json_prefix, objects_and_their_prefixes) {
    static const char *const whole[] = {
        "{}", " \n{ }", "{\"a\":1}", "{\"a\": -0.5e+10, \"b\": [true, false, null, \"x\\\"y\\u00e9\\n\"], \"c\": {}}",
        "{\"\":[[],[{}],0,-0,1.5E3,2e-2]}", "{\"k\":\"Z\xc3\xbcrich \xe2\x96\x81\"}", "{\"a\":[1,2,3] }"};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) expect_doc(whole[i], true, true);
    static const char *const open[] = {"", " ", "{", "{\"a", "{\"a\":", "{\"a\": 1", "{\"a\": tr", "{\"a\": [1, ",
                                       "{\"a\": \"\\u00", "{\"a\": -", "{\"a\": 1.", "{\"a\": 1e"};
    for (size_t i = 0; i < sizeof open / sizeof *open; i++) expect_doc(open[i], true, false);
    static const char *const bad[] = {"[]", "1", "\"x\"", "{}x", "{}{}", "{,}", "{\"a\" 1}", "{\"a\":}", "{\"a\":1,}",
                                      "{\"a\":[1,]}", "{\"a\":01}", "{\"a\":1.}", "{\"a\":+1}", "{\"a\":tru}",
                                      "{\"a\":\"\\x\"}", "{\"a\":\"\x01\"}", "{\"a\":[1}", "{\"a\":{]}", "{a:1}",
                                      "{\"a\":\"\\u12G4\"}", "{\"a\":1e}", "{\"a\":-}", "{\"a\":nul}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect_doc(bad[i], false, false);
    /* the limits: nothing after the object (end of generation only) */
    loom_json_state s;
    loom_json_init(&s);
    cr_assert(loom_json_feed(&s, "{}", 2) && loom_json_complete(&s));
    cr_assert_not(loom_json_feed(&s, " ", 1));
    char deep[2 * LOOM_JSON_MAX_DEPTH + 16] = "{\"a\":";
    size_t n = strlen(deep);
    for (int d = 1; d < LOOM_JSON_MAX_DEPTH; d++) deep[n++] = '[';
    deep[n] = 0;
    loom_json_init(&s);
    cr_assert(loom_json_feed(&s, deep, n), "nesting %d", LOOM_JSON_MAX_DEPTH);
    cr_assert_not(loom_json_feed(&s, "[", 1), "nesting past %d", LOOM_JSON_MAX_DEPTH);
    char ws[LOOM_JSON_MAX_WS + 2];
    memset(ws, ' ', sizeof ws);
    loom_json_init(&s);
    cr_assert(loom_json_feed(&s, ws, LOOM_JSON_MAX_WS));
    cr_assert_not(loom_json_feed(&s, " ", 1), "whitespace past %d in a row", LOOM_JSON_MAX_WS);
}

/* A sampler in JSON mode over the default model's vocabulary, fed random
 * logits that favour closing (EOS strongly): every run ends with EOS, and
 * the text before it is one object jansson takes. */
Test(json_mode, sampled_text_is_one_object) {
    loom_gguf *g;
    loom_tokenizer *tok;
    cr_assert_null(loom_gguf_open(DEFAULT_MODEL, &g), "needs %s (launch/fetch-model.sh)", DEFAULT_MODEL);
    cr_assert_null(loom_tokenizer_create(g, &tok));
    const int32_t V = loom_tokenizer_n_vocab(tok), eos = loom_tokenizer_eos(tok);
    /* the vocabulary's text, as the sampling rank builds it */
    uint32_t *off = malloc(((size_t)V + 1) * sizeof *off);
    uint8_t *kind = malloc((size_t)V);
    char *bytes = malloc((size_t)V * 256);
    off[0] = 0;
    for (int32_t i = 0; i < V; i++) {
        size_t len;
        const char *p = loom_token_piece(tok, i, false, &len);
        kind[i] = loom_tokenizer_is_eog(tok, i) ? 1 : loom_tokenizer_is_control(tok, i) ? 2 : 0;
        if (kind[i]) len = 0;
        cr_assert(len < 256);
        memcpy(bytes + off[i], p, len);
        off[i + 1] = off[i] + (uint32_t)len;
    }
    loom_vocab_text text = {.n = V, .off = off, .bytes = bytes, .kind = kind};
    int32_t close_obj = -1, quote = -1;
    for (int32_t i = 0; i < V; i++) {
        if (off[i + 1] - off[i] == 1 && bytes[off[i]] == '}') close_obj = i;
        if (off[i + 1] - off[i] == 1 && bytes[off[i]] == '"') quote = i;
    }
    cr_assert(close_obj >= 0 && quote >= 0);
    float *logits = malloc((size_t)V * sizeof *logits);
    double t_mask = 0;
    int masked = 0;
    for (int run = 0; run < 8; run++) {
        loom_sampling_params p = loom_sampling_defaults();
        p.temperature = run % 2 ? 0.9f : 0; /* greedy and sampled */
        p.seed = (uint64_t)run;
        p.json_object = true;
        loom_sampler *s;
        cr_assert_null(loom_sampler_create(&p, V, &s));
        cr_assert_null(loom_sampler_set_text(s, &text));
        uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(run + 1);
        char out[8192];
        size_t n = 0;
        int32_t t = -1;
        for (int k = 0; k < 600 && t != eos; k++) {
            for (int32_t i = 0; i < V; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                logits[i] = (float)((x >> 40) & 0xffff) / 65536.0f * 4.0f;
            }
            logits[eos] = 30; /* ends as soon as it may */
            logits[close_obj] += k > 8 ? 3.5f : 0;
            logits[quote] += 2.5f;
            const double t0 = loom_now_s();
            t = loom_sampler_sample(s, logits);
            t_mask += loom_now_s() - t0;
            masked++;
            loom_sampler_accept_output(s, t);
            if (t == eos) break;
            cr_assert(kind[t] == 0, "run %d: control token %d sampled", run, t);
            cr_assert(n + off[t + 1] - off[t] < sizeof out);
            memcpy(out + n, bytes + off[t], off[t + 1] - off[t]);
            n += off[t + 1] - off[t];
        }
        out[n] = 0;
        cr_assert_eq(t, eos, "run %d: no EOS after 600 tokens: %.200s", run, out);
        json_t *j = json_loads(out, 0, NULL);
        cr_assert(json_is_object(j), "run %d: not one object: '%s'", run, out);
        json_decref(j);
        loom_sampler_free(s);
    }
    printf("json_mode: %.3f ms a token (%d tokens, vocabulary %d)\n", 1e3 * t_mask / masked, masked, V);
    free(logits), free(off), free(kind), free(bytes);
    loom_tokenizer_free(tok);
    loom_gguf_free(g);
}
