/*
 * launch/serve/native.c — llama-server's own completion API translated
 * (contract in native.h).
 */
#include "launch/serve/native.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/text/dry_breakers.h"

#define BAD(param, ...) srv_fail(e, 400, "invalid_request_error", param, NULL, __VA_ARGS__)

#define INFILL_BATCH 2048 /* llama-server's n_batch (at most the context): the prefix and suffix share it 3:1 */

/* ------------------------------------------------------------ samplers */

/* llama.cpp's default chain, the order loom applies; a `samplers` list may
 * leave any out (its parameter then does nothing) and end with "infill". */
enum { S_PENALTIES, S_DRY, S_TOP_N_SIGMA, S_TOP_K, S_TYPICAL, S_TOP_P, S_MIN_P, S_XTC, S_TEMPERATURE, S_INFILL, S_N };
static const struct {
    const char *name, *alias;
    char letter;
} samplers[S_N] = {
    {"penalties", NULL, 'e'}, {"dry", NULL, 'd'},   {"top_n_sigma", "top-n-sigma", 's'}, {"top_k", "top-k", 'k'},
    {"typ_p", "typical_p", 'y'}, {"top_p", "top-p", 'p'}, {"min_p", "min-p", 'm'},       {"xtc", NULL, 'x'},
    {"temperature", "temp", 't'}, {"infill", NULL, 'i'},
};

static int sampler_named(const char *s, size_t n) {
    for (int k = 0; k < S_N; k++) {
        if (strlen(samplers[k].name) == n && !strncmp(s, samplers[k].name, n)) return k;
        if (samplers[k].alias && strlen(samplers[k].alias) == n && !strncmp(s, samplers[k].alias, n)) return k;
    }
    if (n == 7 && !strncmp(s, "nucleus", 7)) return S_TOP_P;
    return -1;
}

/* Which samplers `samplers` names (in *on), checked against the order. */
static bool parse_samplers(json_t *v, bool on[S_N], srv_error *e) {
    int order[64], n = 0;
    if (json_is_string(v)) { /* llama.cpp's letters, "edkypmxt" */
        const char *s = json_string_value(v);
        for (size_t i = 0; s[i]; i++) {
            int k = -1;
            for (int j = 0; j < S_N; j++)
                if (samplers[j].letter == s[i]) k = j;
            if (k < 0) return BAD("samplers", "'samplers': no sampler has the letter '%c'", s[i]);
            if (n == 64) return BAD("samplers", "'samplers' names too many samplers");
            order[n++] = k;
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *it;
        json_array_foreach(v, i, it) {
            if (!json_is_string(it)) return BAD("samplers", "'samplers' must be a list of names or a string of letters");
            const int k = sampler_named(json_string_value(it), json_string_length(it));
            if (k < 0) return BAD("samplers", "'samplers': no sampler is named '%s'", json_string_value(it));
            if (n == 64) return BAD("samplers", "'samplers' names too many samplers");
            order[n++] = k;
        }
    } else {
        return BAD("samplers", "'samplers' must be a list of names or a string of letters");
    }
    for (int k = 0; k < S_N; k++) on[k] = false;
    for (int i = 0; i < n; i++) {
        if (on[order[i]]) return BAD("samplers", "'samplers' names '%s' twice", samplers[order[i]].name);
        if (i > 0 && order[i] < order[i - 1])
            return BAD("samplers", "'samplers': '%s' after '%s' is not llama.cpp's default order, the one loom applies "
                       "(penalties, dry, top_n_sigma, top_k, typ_p, top_p, min_p, xtc, temperature; infill last)",
                       samplers[order[i]].name, samplers[order[i - 1]].name);
        on[order[i]] = true;
    }
    return true;
}

/* ------------------------------------------------------------ helpers */

static bool number(json_t *o, const char *key, double *out, srv_error *e) {
    return srv_get_number(o, key, -INFINITY, INFINITY, out, e);
}

/* A field loom cannot honour: refused unless it has the value that does nothing. */
static bool neutral(json_t *o, const char *key, double off, const char *why, srv_error *e) {
    double v = off;
    if (!number(o, key, &v, e)) return false;
    if (v != off) return BAD(key, "'%s' %g: %s", key, v, why);
    return true;
}

static bool oom(srv_error *e) { return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory"); }

static bool push(loom_tokens *t, int32_t id, srv_error *e) {
    loom_status st = loom_tokens_push(t, id);
    if (st) loom_status_free(st);
    return st ? oom(e) : true;
}

static bool tokens_of(const loom_tokenizer *tok, const char *text, size_t len, bool parse_special, loom_tokens *out,
                      srv_error *e) {
    loom_status st = loom_tokenize(tok, text, len, false, parse_special, out);
    if (!st) return true;
    bool r = BAD(NULL, "cannot tokenize: %s", loom_status_message(st));
    loom_status_free(st);
    return r;
}

/* ------------------------------------------------------------ /infill's prompt */

/* llama-server's format_prompt_infill: [extra] [BOS] FIM_PRE prefix prompt
 * FIM_SUF suffix FIM_MID, the extra chunks as
 * FIM_REP "myproject\n" (FIM_SEP filename "\n" text)* FIM_SEP "filename\n"
 * where the model has those tokens, else each chunk after a snippet line. */
static bool infill_prompt(const loom_tokenizer *tok, int ctx_size, json_t *o, json_t *req, srv_error *e) {
    const int32_t pre = loom_tokenizer_fim(tok, LOOM_FIM_PRE), suf = loom_tokenizer_fim(tok, LOOM_FIM_SUF),
                  mid = loom_tokenizer_fim(tok, LOOM_FIM_MID), rep = loom_tokenizer_fim(tok, LOOM_FIM_REP),
                  sep = loom_tokenizer_fim(tok, LOOM_FIM_SEP), bos = loom_tokenizer_bos(tok);
    if (pre < 0 || suf < 0 || mid < 0)
        return srv_fail(e, 501, "not_supported_error", NULL, NULL, /* llama-server's answer */
                        "Infill is not supported by this model: it has no fill-in-the-middle tokens (prefix, suffix and "
                        "middle)");
    json_t *jp = json_object_get(o, "input_prefix"), *js = json_object_get(o, "input_suffix"),
           *jx = json_object_get(o, "input_extra"), *jq = json_object_get(o, "prompt");
    if (!json_is_string(jp)) return BAD("input_prefix", "\"input_prefix\" is required (a string)");
    if (!json_is_string(js)) return BAD("input_suffix", "\"input_suffix\" is required (a string)");
    if (jq && !json_is_null(jq) && !json_is_string(jq)) return BAD("prompt", "\"prompt\" must be a string");
    if (jx && !json_is_null(jx) && !json_is_array(jx))
        return BAD("input_extra", "\"input_extra\" must be an array of {\"filename\": string, \"text\": string}");
    loom_tokens prefix = {0}, suffix = {0}, prompt = {0}, extra = {0}, out = {0};
    bool ok = tokens_of(tok, json_string_value(jp), json_string_length(jp), false, &prefix, e) &&
              tokens_of(tok, json_string_value(js), json_string_length(js), false, &suffix, e) &&
              (!json_is_string(jq) || tokens_of(tok, json_string_value(jq), json_string_length(jq), true, &prompt, e));
    if (ok && rep >= 0) ok = push(&extra, rep, e) && tokens_of(tok, "myproject\n", 10, false, &extra, e);
    size_t i;
    json_t *chunk;
    if (json_is_array(jx)) json_array_foreach(jx, i, chunk) {
        if (!ok) break;
        json_t *text = json_object_get(chunk, "text"), *file = json_object_get(chunk, "filename");
        if (!json_is_string(text)) {
            ok = BAD("input_extra", "an input_extra chunk must contain a \"text\" field with a string value");
            break;
        }
        if (file && !json_is_string(file)) {
            ok = BAD("input_extra", "an input_extra chunk's \"filename\" field must be a string");
            break;
        }
        if (sep >= 0) {
            const char *name = file ? json_string_value(file) : "tmp";
            size_t nl = strlen(name);
            char *line = malloc(nl + 2);
            if (!line) {
                ok = oom(e);
                break;
            }
            memcpy(line, name, nl);
            line[nl] = '\n';
            ok = push(&extra, sep, e) && tokens_of(tok, line, nl + 1, false, &extra, e);
            free(line);
        } else {
            ok = tokens_of(tok, "\n\n--- snippet ---\n\n", 19, false, &extra, e);
        }
        if (ok) ok = tokens_of(tok, json_string_value(text), json_string_length(text), false, &extra, e);
    }
    if (ok && sep >= 0) ok = push(&extra, sep, e) && tokens_of(tok, "filename\n", 9, false, &extra, e);
    if (ok) {
        /* the prefix's end and the suffix's start, as much as fits 3/4 and 1/4 of a batch; the extra
         * context's end in what the context leaves */
        const long batch = ctx_size < INFILL_BATCH ? ctx_size : INFILL_BATCH;
        const long n_pre = (long)prefix.n < 3 * (batch / 4) ? (long)prefix.n : 3 * (batch / 4);
        long room = batch / 4 - (2 + (long)prompt.n);
        if (room < 0) room = 0;
        const long n_suf = (long)suffix.n < room ? (long)suffix.n : room;
        long n_extra = ctx_size - batch + 2;
        if (n_extra < 0) n_extra = 0;
        if (n_extra > (long)extra.n) n_extra = (long)extra.n;
        for (long k = (long)extra.n - n_extra; ok && k < (long)extra.n; k++) ok = push(&out, extra.ids[k], e);
        if (ok && bos >= 0 && loom_tokenizer_adds_bos(tok)) ok = push(&out, bos, e);
        if (ok) ok = push(&out, pre, e);
        for (long k = (long)prefix.n - n_pre; ok && k < (long)prefix.n; k++) ok = push(&out, prefix.ids[k], e);
        for (size_t k = 0; ok && k < prompt.n; k++) ok = push(&out, prompt.ids[k], e);
        if (ok) ok = push(&out, suf, e);
        for (long k = 0; ok && k < n_suf; k++) ok = push(&out, suffix.ids[k], e);
        if (ok) ok = push(&out, mid, e);
    }
    json_t *ids = ok ? json_array() : NULL;
    for (size_t k = 0; ids && k < out.n; k++) json_array_append_new(ids, json_integer(out.ids[k]));
    if (ok && !ids) ok = oom(e);
    if (ok) json_object_set_new(req, "prompt", ids);
    loom_tokens_free(&prefix), loom_tokens_free(&suffix), loom_tokens_free(&prompt), loom_tokens_free(&extra);
    loom_tokens_free(&out);
    return ok;
}

/* /completion's prompt: a string, token ids, several of them, or {"prompt_string": ...}. */
static bool completion_prompt(json_t *o, json_t *req, srv_error *e) {
    json_t *p = json_object_get(o, "prompt");
    if (!p || json_is_null(p)) return BAD("prompt", "\"prompt\" is required");
    if (json_is_object(p)) {
        json_t *mm = json_object_get(p, "multimodal_data");
        if (mm && !json_is_null(mm)) return BAD("prompt", "multimodal data is not supported (a text model)");
        p = json_object_get(p, "prompt_string");
        if (!json_is_string(p)) return BAD("prompt", "a prompt object needs a string \"prompt_string\"");
    }
    if (json_is_array(p)) { /* a list of token ids, or of prompts; tokens and text mixed in one prompt: refused */
        size_t i;
        json_t *it;
        bool ints = false, others = false;
        json_array_foreach(p, i, it) {
            if (json_is_integer(it)) ints = true;
            else others = true;
            if (json_is_object(it)) return BAD("prompt", "prompt objects inside a list are not supported");
        }
        if (ints && others)
            return BAD("prompt", "a prompt mixing token ids and text is not supported: give ids or text");
    }
    json_object_set(req, "prompt", p);
    return true;
}

/* llama-server's logit_bias: [[id, bias or false], ...] or {"id": bias}; false bans. */
static bool logit_bias(json_t *o, json_t *req, srv_error *e) {
    json_t *v = json_object_get(o, "logit_bias");
    if (!v || json_is_null(v)) return true;
    json_t *out = json_object();
    if (!out) return oom(e);
    if (json_is_array(v)) {
        size_t i;
        json_t *pair;
        json_array_foreach(v, i, pair) {
            json_t *id = json_array_get(pair, 0), *b = json_array_get(pair, 1);
            if (!json_is_array(pair) || json_array_size(pair) != 2 || !json_is_integer(id) ||
                !(json_is_number(b) || json_is_false(b))) {
                json_decref(out);
                return BAD("logit_bias", "'logit_bias' entries must be [token id, bias or false] (tokens by their "
                           "text are not supported)");
            }
            char key[24];
            snprintf(key, sizeof key, "%lld", (long long)json_integer_value(id));
            json_object_set_new(out, key, json_real(json_is_false(b) ? -100.0 : json_number_value(b)));
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *b;
        json_object_foreach(v, key, b) json_object_set_new(out, key, json_is_false(b) ? json_real(-100.0) : json_incref(b));
    } else {
        json_decref(out);
        return BAD("logit_bias", "'logit_bias' must be a list of [token id, bias] pairs or an object");
    }
    json_object_set_new(req, "logit_bias", out);
    return true;
}

/* ------------------------------------------------------------ the request */

static bool translate(const loom_tokenizer *tok, int ctx_size, json_t *o, bool infill, json_t *req, srv_native *n,
                      srv_error *e) {
    /* what loom does not have: refused unless neutral */
    if (!neutral(o, "n_cmpl", 1, "several completions of a prompt: use POST /v1/completions with 'n'", e) ||
        !neutral(o, "id_slot", -1, "loom has no slots to choose", e))
        return false;
    bool lazy = false;
    if (!srv_get_bool(o, "grammar_lazy", &lazy, e)) return false;
    if (lazy) return BAD("grammar_lazy", "lazy grammars (applied from a trigger on) are not supported");
    static const char *const none_of[][2] = {
        {"image_data", "images are not supported (a text model)"},
        {"multimodal_data", "multimodal data is not supported (a text model)"},
    };
    for (size_t k = 0; k < sizeof none_of / sizeof none_of[0]; k++) {
        json_t *v = json_object_get(o, none_of[k][0]);
        if (v && !json_is_null(v) && !(json_is_array(v) && !json_array_size(v)))
            return BAD(none_of[k][0], "%s", none_of[k][1]);
    }
    bool flag = false;
    if (!srv_get_bool(o, "post_sampling_probs", &flag, e)) return false;
    if (flag) return BAD("post_sampling_probs", "'post_sampling_probs' is not supported: n_probs gives log-probabilities");
    flag = false;
    if (!srv_get_bool(o, "return_progress", &flag, e)) return false;
    if (flag) return BAD("return_progress", "'return_progress' is not supported");

    if (!(infill ? infill_prompt(tok, ctx_size, o, req, e) : completion_prompt(o, req, e))) return false;
    /* sampling, with llama-server's defaults */
    double temp = 0.8, top_k = 40, top_p = 0.95, min_p = 0.05, rep = 1.0, rep_n = 64, pres = 0, freq = 0;
    double n_predict = -1, n_probs = 0, n_indent = 0, t_max = 0, seed = -1;
    if (!number(o, "temperature", &temp, e) || !number(o, "top_k", &top_k, e) || !number(o, "top_p", &top_p, e) ||
        !number(o, "min_p", &min_p, e) || !number(o, "repeat_penalty", &rep, e) || !number(o, "repeat_last_n", &rep_n, e) ||
        !number(o, "presence_penalty", &pres, e) || !number(o, "frequency_penalty", &freq, e) ||
        !number(o, "n_predict", &n_predict, e) || !number(o, "max_tokens", &n_predict, e) ||
        !number(o, "n_probs", &n_probs, e) || !number(o, "n_indent", &n_indent, e) ||
        !number(o, "t_max_predict_ms", &t_max, e) || !number(o, "seed", &seed, e))
        return false;
    bool on[S_N];
    for (int k = 0; k < S_N; k++) on[k] = k != S_INFILL;
    json_t *sv = json_object_get(o, "samplers");
    if (sv && !json_is_null(sv) && !parse_samplers(sv, on, e)) return false;
    if (!on[S_PENALTIES]) rep = 1, pres = 0, freq = 0;
    if (!on[S_TOP_K]) top_k = 0;
    if (!on[S_TOP_P]) top_p = 1;
    if (!on[S_MIN_P]) min_p = 0;
    if (!on[S_TEMPERATURE]) temp = 1; /* llama.cpp draws from the logits as they are */
    if (temp < 0) temp = 0;           /* llama.cpp: a negative temperature is greedy */
    if (top_k < 0) top_k = 0;
    if (rep_n == -1) rep_n = ctx_size < 65536 ? ctx_size : 65536; /* llama.cpp: -1 is the context */
    if (n_probs < 0 || n_probs > 20 || n_probs != floor(n_probs)) return BAD("n_probs", "'n_probs' must be 0..20");
    if (n_indent < 0 || n_indent != floor(n_indent)) return BAD("n_indent", "'n_indent' must be a whole number >= 0");
    if (t_max < 0) return BAD("t_max_predict_ms", "'t_max_predict_ms' must be >= 0");
    if (n_predict != floor(n_predict) || n_predict < -1 || n_predict > INT32_MAX)
        return BAD("n_predict", "'n_predict' must be -1 (no limit) or a number of tokens");
    json_object_set_new(req, "temperature", json_real(temp));
    json_object_set_new(req, "top_k", json_integer((json_int_t)top_k));
    json_object_set_new(req, "top_p", json_real(top_p));
    json_object_set_new(req, "min_p", json_real(min_p));
    json_object_set_new(req, "repetition_penalty", json_real(rep));
    json_object_set_new(req, "repeat_last_n", json_integer((json_int_t)rep_n));
    json_object_set_new(req, "presence_penalty", json_real(pres));
    json_object_set_new(req, "frequency_penalty", json_real(freq));
    if (on[S_INFILL]) json_object_set_new(req, "infill_sampler", json_true());
    /* the other samplers of the chain, as given, unless `samplers` leaves them out */
    static const struct {
        const char *key;
        int sampler;
    } passed[] = {
        {"typical_p", S_TYPICAL},        {"top_n_sigma", S_TOP_N_SIGMA},    {"xtc_probability", S_XTC},
        {"xtc_threshold", S_XTC},        {"dynatemp_range", S_TEMPERATURE}, {"dynatemp_exponent", S_TEMPERATURE},
        {"dry_multiplier", S_DRY},       {"dry_base", S_DRY},               {"dry_allowed_length", S_DRY},
        {"dry_penalty_last_n", S_DRY},   {"dry_sequence_breakers", S_DRY},
    };
    for (size_t k = 0; k < sizeof passed / sizeof passed[0]; k++) {
        json_t *v = json_object_get(o, passed[k].key);
        if (v && !json_is_null(v) && on[passed[k].sampler]) json_object_set(req, passed[k].key, v);
    }
    static const char *const miro[] = {"mirostat", "mirostat_tau", "mirostat_eta"}; /* (it replaces the chain) */
    for (size_t k = 0; k < sizeof miro / sizeof miro[0]; k++) {
        json_t *v = json_object_get(o, miro[k]);
        if (v && !json_is_null(v)) json_object_set(req, miro[k], v);
    }
    if (seed >= 0) json_object_set_new(req, "seed", json_integer((json_int_t)seed));
    n->discard = n_predict == 0;
    if (n_predict >= 0) json_object_set_new(req, "max_tokens", json_integer(n->discard ? 1 : (json_int_t)n_predict));
    n->n_probs = (int)n_probs;
    n->probs = n_probs > 0;
    if (n->probs) json_object_set_new(req, "logprobs", json_integer((json_int_t)n_probs));
    n->n_indent = (int)n_indent;
    n->t_max_predict_ms = t_max;
    n->infill = infill;
    static const char *const same[] = {"stream", "stop", "ignore_eos", "model", "grammar", "lora"}; /* grammar: GBNF */
    for (size_t k = 0; k < sizeof same / sizeof same[0]; k++) {
        json_t *v = json_object_get(o, same[k]);
        if (v && !json_is_null(v)) json_object_set(req, same[k], v);
    }
    if (!logit_bias(o, req, e)) return false;
    json_t *schema = json_object_get(o, "json_schema");
    if (schema && !json_is_null(schema) && !(json_is_object(schema) && !json_object_size(schema)))
        json_object_set_new(req, "response_format",
                            json_pack("{s:s, s:{s:s, s:O}}", "type", "json_schema", "json_schema", "name", "schema",
                                      "schema", schema));
    if (!srv_get_bool(o, "return_tokens", &n->return_tokens, e) ||
        !srv_get_bool(o, "timings_per_token", &n->timings_per_token, e))
        return false;
    json_t *rf = json_object_get(o, "response_fields");
    if (rf && !json_is_null(rf)) {
        size_t i;
        json_t *it;
        if (!json_is_array(rf)) return BAD("response_fields", "'response_fields' must be a list of paths");
        json_array_foreach(rf, i, it) if (!json_is_string(it))
            return BAD("response_fields", "'response_fields' must be a list of paths (\"timings/prompt_n\")");
        if (json_array_size(rf)) n->fields = json_incref(rf);
    }
    /* the reply's generation_settings: what the request runs with */
    json_t *names = json_array();
    for (int k = 0; k < S_N; k++)
        if (on[k]) json_array_append_new(names, json_string(samplers[k].name));
    json_t *stops = json_object_get(o, "stop");
    stops = json_is_array(stops) ? json_incref(stops) : json_array();
    n->settings = json_pack("{s:I, s:f, s:I, s:f, s:f, s:f, s:I, s:f, s:f, s:I, s:b, s:o, s:o}", "n_predict",
                            (json_int_t)n_predict, "temperature", temp, "top_k", (json_int_t)top_k, "top_p", top_p,
                            "min_p", min_p, "repeat_penalty", rep, "repeat_last_n", (json_int_t)rep_n,
                            "presence_penalty", pres, "frequency_penalty", freq, "n_probs", (json_int_t)n_probs,
                            "ignore_eos", json_is_true(json_object_get(o, "ignore_eos")), "samplers", names, "stop",
                            stops);
    if (n->settings && seed >= 0) json_object_set_new(n->settings, "seed", json_integer((json_int_t)seed));
    for (size_t k = 0; n->settings && k < sizeof passed / sizeof passed[0]; k++) { /* as the request gives them */
        json_t *v = json_object_get(req, passed[k].key);
        if (v) json_object_set(n->settings, passed[k].key, v);
    }
    const loom_sampling_params d = loom_sampling_defaults(); /* mirostat's, as llama-server always echoes them */
    const double miro_d[] = {0, d.mirostat_tau, d.mirostat_eta};
    for (size_t k = 0; n->settings && k < sizeof miro / sizeof miro[0]; k++) {
        json_t *v = json_object_get(req, miro[k]);
        json_object_set_new(n->settings, miro[k], v ? json_incref(v) : k ? json_real(miro_d[k]) : json_integer(0));
    }
    return n->settings ? true : oom(e);
}

bool srv_native_request(const loom_tokenizer *tok, int ctx_size, const char *body, size_t len, bool infill, char **oai,
                        srv_native *n, srv_error *e) {
    memset(n, 0, sizeof *n);
    *oai = NULL;
    json_t *o = srv_parse_body(body, len, e);
    if (!o) return false;
    json_t *req = json_object();
    bool ok = req ? translate(tok, ctx_size, o, infill, req, n, e) : oom(e);
    if (ok && !(*oai = srv_dump(req))) ok = oom(e);
    json_decref(req);
    json_decref(o);
    if (!ok) srv_native_free(n);
    return ok;
}

void srv_native_free(srv_native *n) {
    json_decref(n->settings);
    json_decref(n->fields);
    memset(n, 0, sizeof *n);
}

json_t *srv_native_props(const char *model_name, int ctx_size, int slots, const char *chat_template) {
    json_t *names = json_array();
    for (int k = 0; k < S_INFILL; k++) json_array_append_new(names, json_string(samplers[k].name));
    json_t *props =
        json_pack("{s:{s:i, s:{s:i, s:f, s:i, s:f, s:f, s:f, s:i, s:f, s:f, s:o}}, s:i, s:s, s:s, s:{s:b, s:b}, s:s}",
                  "default_generation_settings", "n_ctx", ctx_size, "params", "n_predict", -1, "temperature", 0.8,
                  "top_k", 40, "top_p", 0.95, "min_p", 0.05, "repeat_penalty", 1.0, "repeat_last_n", 64,
                  "presence_penalty", 0.0, "frequency_penalty", 0.0, "samplers", names, "total_slots", slots,
                  "model_path", model_name, "chat_template", chat_template ? chat_template : "", "modalities",
                  "vision", 0, "audio", 0, "build_info", "loom");
    json_t *params = json_object_get(json_object_get(props, "default_generation_settings"), "params");
    const loom_sampling_params d = loom_sampling_defaults(); /* the other samplers' (off) */
    json_t *breakers = json_array();
    for (int k = 0; k < LOOM_DRY_N_DEFAULT; k++) json_array_append_new(breakers, json_string(loom_dry_default_breakers[k]));
    json_t *more = json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:i, s:o, s:i}", "typical_p", (double)d.typical_p,
                             "top_n_sigma", -1.0, "xtc_probability", (double)d.xtc_probability, "xtc_threshold",
                             (double)d.xtc_threshold, "dynatemp_range", (double)d.dynatemp_range, "dynatemp_exponent",
                             (double)d.dynatemp_exponent, "dry_multiplier", (double)d.dry_multiplier, "dry_base",
                             (double)d.dry_base, "dry_allowed_length", (int)d.dry_allowed_length, "dry_penalty_last_n",
                             (int)d.dry_penalty_last_n, "dry_sequence_breakers", breakers, "mirostat", 0);
    if (more) {
        json_object_set_new(more, "mirostat_tau", json_real(d.mirostat_tau));
        json_object_set_new(more, "mirostat_eta", json_real(d.mirostat_eta));
    }
    if (params && more) json_object_update(params, more);
    json_decref(more);
    return props;
}

json_t *srv_native_fields(const srv_native *n, json_t *o) {
    if (!n->fields || !o) return o;
    json_t *out = json_object();
    size_t i;
    json_t *it;
    json_array_foreach(n->fields, i, it) {
        const char *path = json_string_value(it);
        json_t *v = o;
        for (const char *p = path; v && *p;) { /* one segment of the path at a time */
            const char *slash = strchr(p, '/');
            const size_t len = slash ? (size_t)(slash - p) : strlen(p);
            v = json_is_object(v) ? json_object_getn(v, p, len) : NULL;
            p += len + (slash != NULL);
        }
        if (v && out) json_object_set(out, path, v);
    }
    json_decref(o);
    return out;
}

long srv_native_indent_cut(const char *text, size_t len, int n_indent, bool *line_start, int *indent) {
    for (size_t i = 0; i < len; i++) {
        const char c = text[i];
        if (c == '\n') {
            *line_start = true, *indent = 0;
        } else if (*line_start && (c == ' ' || c == '\t')) {
            ++*indent;
        } else if (*line_start) {
            *line_start = false;
            if (*indent < n_indent) return (long)i;
        }
    }
    return -1;
}
