/*
 * tests/test_grammar.c — GBNF grammars (runtime/text/grammar.h): the
 * matcher against PCRE2 (an independent engine: its full and partial
 * anchored matches say whether a string is whole or a prefix) on every
 * short string over small alphabets, JSON through a GBNF JSON grammar
 * judged by jansson, UTF-8 split across feeds, refusals, and the
 * sampler's constraint over the default model's vocabulary.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/clock.h"
#include "runtime/sampler.h"
#include "runtime/text/grammar.h"
#include "runtime/text/tokenizer.h"

#define DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* The default model's vocabulary text; returns its size. */
static int32_t vocab_of_default_model(loom_vocab_text *text) {
    loom_gguf *gg;
    loom_tokenizer *tok;
    cr_assert_null(loom_gguf_open(DEFAULT_MODEL, &gg), "needs %s (launch/fetch-model.sh)", DEFAULT_MODEL);
    cr_assert_null(loom_tokenizer_create(gg, &tok));
    const int32_t V = loom_tokenizer_n_vocab(tok);
    cr_assert_eq(loom_tokenizer_eos(tok), 2, "SmolLM2's end of turn");
    cr_assert_null(loom_vocab_text_build(tok, V, text));
    loom_tokenizer_free(tok);
    loom_gguf_free(gg);
    return V;
}

static loom_grammar *grammar_of(const char *text) {
    loom_grammar *g = NULL;
    loom_status st = loom_grammar_compile(text, strlen(text), &g);
    cr_assert_null(st, "%s: %s", text, st ? loom_status_message(st) : "");
    return g;
}

/* Fed in pieces of every size: whether it stays a prefix, and whether it is whole. */
static void expect(const loom_grammar *g, const char *s, size_t n, bool prefix, bool complete) {
    for (size_t step = 1; step <= (n ? n : 1); step++) {
        loom_grammar_matcher *m;
        cr_assert_null(loom_grammar_matcher_create(g, &m));
        bool ok = true;
        for (size_t i = 0; i < n && ok; i += step) {
            const size_t k = i + step < n ? step : n - i;
            const bool fits = loom_grammar_matcher_fits(m, s + i, k);
            ok = loom_grammar_matcher_feed(m, s + i, k);
            cr_assert_eq(fits, ok, "fits and feed disagree on '%.*s'", (int)n, s);
        }
        cr_assert_eq(ok, prefix, "step %zu: '%.*s' %s", step, (int)n, s, prefix ? "refused" : "taken");
        if (ok) cr_assert_eq(loom_grammar_matcher_complete(m), complete, "'%.*s': complete %d", (int)n, s, !complete);
        loom_grammar_matcher_free(m);
    }
}

/* Each GBNF grammar beside the same language as a PCRE2 pattern. */
static const struct {
    const char *gbnf, *re, *alphabet;
    int max_len;
} PAIRS[] = {
    {"root ::= \"ab\" | \"a\" \"c\"*", "ab|ac*", "abc", 7},
    {"root ::= [a-c]+ (\"x\" | \"yz\")*", "[a-c]+(?:x|yz)*", "abxyz", 7},
    {"root ::= item{2,4}\nitem ::= \"a\" | \"bb\"", "(?:a|bb){2,4}", "ab", 10},
    {"root ::= \"(\" root \")\" | \"x\"", "(\\((?1)\\)|x)", "()x", 9},
    {"# comment\nroot ::= ( \"a\"\n  | \"b\" )? [^ab]{1,} # trailing\n", "[ab]?[^ab]+", "abc", 6},
    {"root ::= x? y? \"z\"\nx ::= \"x\"+\ny ::= [y-y]{0,2}", "x*y{0,2}z", "xyz", 7},
    {"root ::= (\"a\" | \"a\" \"a\")* \"b\"", "(?:a|aa)*b", "ab", 9},
    {"root ::= [^\\n\\\\]* \"\\\\\" .", "[^\\n\\\\]*\\\\[\\s\\S]", "a\\\n", 6},
    {"root ::= ws \"[\" ws ( num ( \",\" ws num )* )? \"]\"\nnum ::= [0-9]+ ws\nws ::= \" \"?",
     " ?\\[ ?(?:[0-9]+ ?(?:, ?[0-9]+ ?)*)?\\]", "[], 1", 7},
};

/* Regular expressions (loom_grammar_compile_regex) beside PCRE2 on the same pattern text. */
static const struct {
    const char *re, *alphabet;
    int max_len;
} REGEXES[] = {
    {"\\d{2,3}-\\w+", "1a-_ ", 7},
    {"^(?:a|b)+?c$", "abc", 7},
    {"[^\\d\\s]x.", "1 xa\n", 4},
    {"(?P<y>\\d{2})-(0[1-9]|1[0-2])", "0129-", 6},
    {"\\s*\\.\\d+|[]a-]{2,}", " .1]a-", 5},
    {"(ab|a)(c|bcd)(d*)", "abcd", 7},
    {"x{2}y{1,}z{0,2}", "xyz", 8},
    {"[\\D\\s]+[^\\W_]", "a1_ \n", 5},
};

static loom_grammar *regex_of(const char *re) {
    loom_grammar *g = NULL;
    loom_status st = loom_grammar_compile_regex(re, strlen(re), &g);
    cr_assert_null(st, "%s: %s", re, st ? loom_status_message(st) : "");
    return g;
}

/* Every string over the alphabet up to max_len: prefix and whole as PCRE2 says. */
static void agree(const loom_grammar *g, const char *what, const char *re_text, const char *al, int max_len) {
    int err;
    PCRE2_SIZE eo;
    char anchored[256]; /* PCRE2's partial matching refuses PCRE2_ENDANCHORED */
    snprintf(anchored, sizeof anchored, "(?:%s)\\z", re_text);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)anchored, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &eo, NULL);
    cr_assert_not_null(re, "pcre2: %s", re_text);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    const int k = (int)strlen(al);
    int whole = 0, prefixes = 0, total = 0;
    loom_grammar_matcher *m; /* one, reset for each string (a fresh one each would be the same) */
    cr_assert_null(loom_grammar_matcher_create(g, &m));
    for (int len = 0; len <= max_len; len++) {
        long count = 1;
        for (int i = 0; i < len; i++) count *= k;
        for (long x = 0; x < count; x++) {
            char s[16];
            long y = x;
            for (int i = 0; i < len; i++, y /= k) s[i] = al[y % k];
            const int full = pcre2_match(re, (PCRE2_SPTR)s, (size_t)len, 0, 0, md, NULL);
            const int part = pcre2_match(re, (PCRE2_SPTR)s, (size_t)len, 0, PCRE2_PARTIAL_HARD, md, NULL);
            const bool complete = full >= 0, prefix = complete || part == PCRE2_ERROR_PARTIAL || len == 0; /* PCRE2 gives no partial match of nothing */
            loom_grammar_matcher_reset(m);
            const bool ok = loom_grammar_matcher_feed(m, s, (size_t)len);
            cr_assert_eq(ok, prefix, "%s: '%.*s' prefix %d", what, len, s, prefix);
            if (ok) cr_assert_eq(loom_grammar_matcher_complete(m), complete, "%s: '%.*s' whole %d", what, len, s, complete);
            whole += complete, prefixes += prefix, total++;
        }
    }
    cr_assert(whole > 3 && prefixes > whole && prefixes < total, "%s: %d whole, %d prefixes of %d", what, whole,
              prefixes, total);
    loom_grammar_matcher_free(m);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
}

Test(grammar, regex_agrees_with_pcre2) {
    for (size_t c = 0; c < sizeof REGEXES / sizeof REGEXES[0]; c++) {
        loom_grammar *g = regex_of(REGEXES[c].re);
        agree(g, REGEXES[c].re, REGEXES[c].re, REGEXES[c].alphabet, REGEXES[c].max_len);
        loom_grammar_free(g);
    }
    for (size_t c = 0; c < sizeof PAIRS / sizeof PAIRS[0]; c++) { /* the GBNF pairs' patterns too, but recursion */
        if (strstr(PAIRS[c].re, "(?1)")) continue;
        loom_grammar *g = regex_of(PAIRS[c].re);
        agree(g, PAIRS[c].re, PAIRS[c].re, PAIRS[c].alphabet, PAIRS[c].max_len);
        loom_grammar_free(g);
    }
    static const char *cases[][2] = {
        {"(a)\\1", "backreferences"}, {"(?=a)b", "lookarounds"}, {"\\bword", "word boundaries"},
        {"(?i)a", "'(?i'"}, {"(ab", "not closed"}, {"ab)", "unmatched ')'"},
        {"*a", "repeats nothing"}, {"a{3,2}", "backwards"}, {"\\q", "escape '\\q'"}, {"[b-a]", "backwards"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        loom_grammar *g = NULL;
        loom_status st = loom_grammar_compile_regex(cases[i][0], strlen(cases[i][0]), &g);
        cr_assert_not_null(st, "taken: %s", cases[i][0]);
        cr_assert(strstr(loom_status_message(st), cases[i][1]), "%s: %s", cases[i][0], loom_status_message(st));
        cr_assert(strncmp(loom_status_message(st), "regex: ", 7) == 0 && !g);
        loom_status_free(st);
    }
}

Test(grammar, agrees_with_pcre2_on_every_short_string) {
    for (size_t c = 0; c < sizeof PAIRS / sizeof PAIRS[0]; c++) {
        loom_grammar *g = grammar_of(PAIRS[c].gbnf);
        agree(g, PAIRS[c].gbnf, PAIRS[c].re, PAIRS[c].alphabet, PAIRS[c].max_len);
        loom_grammar_free(g);
    }
}

/* JSON in GBNF (the grammar users copy from llama.cpp's examples looks like this). */
static const char JSON_GBNF[] =
    "root   ::= object\n"
    "value  ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" ws\n"
    "array  ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
    "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
    "number ::= \"-\"? ([0-9] | [1-9] [0-9]{0,15}) (\".\" [0-9]+)? ([eE] [-+]? [0-9]{1,3})? ws\n"
    "ws     ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";

Test(grammar, json_documents) {
    loom_grammar *g = grammar_of(JSON_GBNF);
    static const char *whole[] = {"{}", "{\"a\": 1}", "{\"a\": [1, -2.5e10, \"x\\u00e9\\n\"], \"b\": {\"c\": null}}",
                                  "{\"é→\": true} ", "{\n  \"k\": false}"};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        expect(g, whole[i], strlen(whole[i]), true, true);
        json_t *j = json_loads(whole[i], 0, NULL);
        cr_assert_not_null(j, "jansson refuses '%s'", whole[i]);
        json_decref(j);
        for (size_t n = 0; n < strlen(whole[i]); n++) { /* every prefix is one; whole where jansson reads an object */
            json_t *pj = json_loadb(whole[i], n, 0, NULL);
            expect(g, whole[i], n, true, json_is_object(pj));
            json_decref(pj);
        }
    }
    static const char *bad[] = {"[]", "{,}", "{\"a\" 1}", "{\"a\":01}", "{\"a\":tru ", "{\"\x01\"", "{\"a\":\"\\q"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) expect(g, bad[i], strlen(bad[i]), false, false);
    loom_grammar_free(g);
}

Test(grammar, utf8_split_anywhere) {
    loom_grammar *g = grammar_of("root ::= [α-ω]+ \"!\" | \"€\" [^a-z]");
    expect(g, "αβγ!", strlen("αβγ!"), true, true);
    expect(g, "€€", strlen("€€"), true, true);
    expect(g, "€√", strlen("€√"), true, true);
    expect(g, "α", 1, true, false);       /* half a character that the class may take */
    expect(g, "€", 1, true, false);       /* the first byte of € */
    expect(g, "Ж", 1, false, false);      /* U+0416's lead byte: nothing in U+0400-U+043F is taken */
    expect(g, "αa", 3, false, false);
    expect(g, "€a", 4, false, false);
    expect(g, "\xce\x41", 2, false, false); /* not UTF-8 */
    loom_grammar_free(g);
}

Test(grammar, refusals_name_the_problem) {
    static const char *cases[][2] = {
        {"root ::= foo", "'foo' is used but not defined"},
        {"start ::= \"a\"", "no 'root' rule"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {"root ::= expr\nexpr ::= expr \"+\" \"1\" | \"1\"", "'expr' is left-recursive"},
        {"root ::= x root | \"a\"\nx ::= \"b\"?", "'root' is left-recursive"},
        {"root ::= \"a\" <[12]>", "token references"},
        {"root ::= \"abc", "ends inside a literal"},
        {"root ::= [a-", "ends inside a literal or a character class"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"\\x4\"", "hex digits"},
        {"root ::= (\"a\"", "expecting ')'"},
        {"root ::= * \"a\"", "repeats nothing"},
        {"root ::= \"a\"{3,1}", "backwards"},
        {"root ::= \"a\"{2001}", "exceeds 2000"},
        {"root ::= [z-a]", "runs backwards"},
        {"root = \"a\"", "expecting '::='"},
        {"root ::= \"a\" ) \"b\"", "expecting the end of the line"},
        {"root ::= \"\xff\"", "not valid UTF-8"},
    };
    char deep[256] = "root ::= ", big[256] = "root ::= "; /* 65 groups in one another; 11 x 20,000 elements */
    for (int i = 0; i < 65; i++) strcat(deep, "(");
    strcat(deep, "\"a\"");
    for (int i = 0; i < 65; i++) strcat(deep, ")");
    for (int i = 0; i < 11; i++) strcat(big, "\"0123456789\"{2000} ");
    const char *built[][2] = {{deep, "nest deeper than 64"}, {big, "more than 200000 elements"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases + 2; i++) {
        const char *const *c = i < sizeof cases / sizeof *cases ? cases[i] : built[i - sizeof cases / sizeof *cases];
        loom_grammar *g = NULL;
        loom_status st = loom_grammar_compile(c[0], strlen(c[0]), &g);
        cr_assert_not_null(st, "taken: %.80s", c[0]);
        cr_assert(strstr(loom_status_message(st), c[1]), "%.80s: %s", c[0], loom_status_message(st));
        cr_assert_null(g);
        loom_status_free(st);
    }
    /* what llama.cpp takes: multi-line groups, comments, CRLF, \r\n escapes, a large bound as none */
    loom_grammar *g = grammar_of("root ::= (\r\n  \"a\" # one\r\n  | \"b\"\r\n){1,5000} end\r\nend ::= \"\\r\\n\"\r\n");
    expect(g, "abab\r\n", 6, true, true);
    loom_grammar_free(g);
    /* nullable rules repeated: each stack is expanded once, however many ways lead to it (this took
     * 30^200 steps before; the fuzzer found it) */
    g = grammar_of("root ::= item{200}\nitem ::= \"- \"+ | | | | | | | | | | | | | | | | | | | | | | | | | | | | |\n");
    expect(g, "- - - ", 6, true, true);
    expect(g, "- -- ", 5, false, false);
    loom_grammar_free(g);
}

Test(grammar, choice_escapes_its_strings) {
    const char *choices[] = {"yes", "no \"way\"", "back\\slash", "tab\there", ""};
    char *text = loom_grammar_choice(choices, 5);
    cr_assert_not_null(text);
    loom_grammar *g = grammar_of(text);
    for (int i = 0; i < 5; i++) expect(g, choices[i], strlen(choices[i]), true, true);
    expect(g, "no", 2, true, false);
    expect(g, "yes!", 4, false, false);
    loom_grammar_free(g);
    free(text);
}

/* The constraint over SmolLM2's 49,152 tokens with random logits that
 * favour ending: every run ends with EOS and its text is whole for a
 * fresh matcher (and JSON for jansson where the grammar is JSON's). Each
 * token is the one the plain definition gives (sampler.h: the unmasked
 * draw where it fits, else the draw over the whole mask with the same
 * random number), worked out beside it by two unconstrained samplers of
 * the same seed: the sampler's shortcut (only its best tokens asked) must
 * not change a draw. */
Test(grammar, constrained_sampling_over_the_vocabulary) {
    loom_vocab_text text;
    const int32_t V = vocab_of_default_model(&text), eos = 2; /* SmolLM2's <|im_end|> */
    const char *grammars[] = {JSON_GBNF, "root ::= (\"- \" [a-zA-Z ]{1,20} \"\\n\"){2,3}",
                              "root ::= \"The answer is \" (\"yes\" | \"no\" | [0-9]{1,3}) \".\""};
    int32_t closers[5] = {-1, -1, -1, -1, -1}; /* so that strings, lists and lines end */
    for (int32_t i = 0; i < V; i++)
        for (int k = 0; k < 5; k++)
            if (text.off[i + 1] - text.off[i] == 1 && text.bytes[text.off[i]] == "\"}]\n."[k]) closers[k] = i;
    float *logits = malloc((size_t)V * sizeof *logits);
    double t_all = 0;
    int tokens = 0;
    for (int run = 0; run < 9; run++) {
        const char *gt = grammars[run % 3];
        loom_sampling_params p = loom_sampling_defaults();
        p.temperature = run % 2 ? 0.9f : 0;
        p.seed = (uint64_t)run;
        loom_sampler *s;
        loom_grammar_constraint *c;
        cr_assert_null(loom_sampler_create(&p, V, &s));
        cr_assert_null(loom_grammar_constraint_create(&text, grammar_of(gt), &c));
        loom_sampler_set_constraint(s, &(loom_sampler_constraint){loom_grammar_constraint_fits,
                                                                   loom_grammar_constraint_accept, c});
        loom_sampler *plain, *full; /* the definition, worked out beside */
        loom_grammar_constraint *judge;
        cr_assert_null(loom_sampler_create(&p, V, &plain));
        cr_assert_null(loom_sampler_create(&p, V, &full));
        cr_assert_null(loom_grammar_constraint_create(&text, grammar_of(gt), &judge));
        float *l1 = malloc((size_t)V * sizeof *l1), *l2 = malloc((size_t)V * sizeof *l2);
        uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(run + 1);
        char out[16384];
        size_t n = 0;
        int32_t t = -1;
        for (int k = 0; k < 1500; k++) {
            for (int32_t i = 0; i < V; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                logits[i] = (float)((x >> 40) & 0xffff) / 65536.0f * 4.0f;
            }
            logits[eos] = k > 30 ? 30 : 0;
            for (int q = 0; q < 5; q++) logits[closers[q]] += k > 8 ? 3.5f : 1.0f;
            memcpy(l1, logits, (size_t)V * sizeof *l1);
            for (int32_t i = 0; i < V; i++) l2[i] = loom_grammar_constraint_fits(judge, i) ? logits[i] : -INFINITY;
            const int32_t t1 = loom_sampler_sample(plain, l1), t2 = loom_sampler_sample(full, l2);
            const double t0 = loom_now_s();
            t = loom_sampler_sample(s, logits);
            t_all += loom_now_s() - t0;
            tokens++;
            cr_assert_eq(t, loom_grammar_constraint_fits(judge, t1) ? t1 : t2, "run %d token %d: %d, not %d", run, k,
                         t, loom_grammar_constraint_fits(judge, t1) ? t1 : t2);
            loom_sampler_accept_output(s, t);
            loom_sampler_accept_output(plain, t), loom_sampler_accept_output(full, t);
            loom_grammar_constraint_accept(judge, t);
            if (text.kind[t] == 1) break; /* EOS or another end of generation */
            cr_assert(text.kind[t] == 0, "run %d: control token %d sampled after '%.*s'", run, t, (int)n, out);
            const uint32_t len = text.off[t + 1] - text.off[t];
            cr_assert(n + len < sizeof out);
            memcpy(out + n, text.bytes + text.off[t], len);
            n += len;
        }
        cr_assert(t >= 0 && text.kind[t] == 1, "run %d: no end after 1500 tokens: %.300s", run, out);
        out[n] = 0;
        loom_grammar *g = grammar_of(gt);
        loom_grammar_matcher *m;
        cr_assert_null(loom_grammar_matcher_create(g, &m));
        cr_assert(loom_grammar_matcher_feed(m, out, n) && loom_grammar_matcher_complete(m), "run %d: '%s'", run, out);
        if (run % 3 == 0) {
            json_t *j = json_loads(out, JSON_DECODE_INT_AS_REAL, NULL);
            cr_assert(json_is_object(j), "run %d: not one object: '%s'", run, out);
            json_decref(j);
        }
        loom_grammar_matcher_free(m);
        loom_grammar_free(g);
        loom_sampler_free(s), loom_sampler_free(plain), loom_sampler_free(full);
        loom_grammar_constraint_free(c), loom_grammar_constraint_free(judge);
        free(l1), free(l2);
    }
    printf("grammar: %.3f ms a token (%d tokens, vocabulary %d)\n", 1e3 * t_all / tokens, tokens, V);
    free(logits);
    loom_vocab_text_free(&text);
}

/* A grammar made to be slow (deeper and more ambiguous with every
 * character) cannot stall the sampling rank: past the work budget between
 * two tokens, text whose steps are not known yet does not fit, so masks
 * stay bounded (the test's timeout would catch one that is not), and what
 * is taken is still a prefix of the grammar's language. */
Test(grammar, a_slow_grammar_narrows_instead_of_stalling) {
    loom_vocab_text text;
    const int32_t V = vocab_of_default_model(&text);
    static const char SLOW[] = "root ::= a\na ::= [a-z ] a [a-z ] | [a-z ] a | [a-z ]";
    loom_grammar_constraint *c;
    cr_assert_null(loom_grammar_constraint_create(&text, grammar_of(SLOW), &c));
    loom_grammar *g = grammar_of(SLOW);
    loom_grammar_matcher *judge;
    cr_assert_null(loom_grammar_matcher_create(g, &judge));
    double worst = 0;
    for (int step = 0; step < 6; step++) {
        const double t0 = loom_now_s();
        int32_t pick = -1, n = 0;
        for (int32_t t = 0; t < V; t++)
            if (loom_grammar_constraint_fits(c, t) && text.kind[t] == 0) {
                n++;
                if (pick < 0 && text.off[t + 1] - text.off[t] >= 3) pick = t;
            }
        const double dt = loom_now_s() - t0;
        worst = dt > worst ? dt : worst;
        cr_assert(pick >= 0 && n > 0, "step %d: nothing fits", step);
        cr_assert(loom_grammar_matcher_feed(judge, text.bytes + text.off[pick], text.off[pick + 1] - text.off[pick]),
                  "step %d: token %d taken but the text is no prefix", step, pick);
        loom_grammar_constraint_accept(c, pick);
    }
    printf("slow grammar: the worst mask over %d tokens took %.3f s\n", V, worst);
    loom_grammar_matcher_free(judge);
    loom_grammar_free(g);
    loom_grammar_constraint_free(c);
    loom_vocab_text_free(&text);
}
