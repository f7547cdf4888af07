/*
 * launch/serve/completions.c — /v1/chat/completions and /v1/completions:
 * from a request body to queued requests, and from their tokens to OpenAI's
 * responses, streamed (SSE) or whole. Also /tokenize, /detokenize and
 * /apply-template, which share the prompt preparation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "launch/serve/harmony.h"
#include "launch/serve/native.h"
#include "launch/serve/reasoning.h"
#include "launch/serve/responses.h"
#include "launch/serve/anthropic.h"
#include "launch/serve/server_internal.h"
#include "launch/serve/stop.h"
#include "launch/serve/tools.h"
#include "runtime/clock.h"

#define KEEPALIVE_S 5.0 /* an SSE comment after this long without output (long prefills) */
#define WAIT_MS 50      /* how often a waiting HTTP thread looks at its socket */

static bool oom(srv_error *e) { return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory"); }

/* ------------------------------------------------------------ prompts */

/* The chat template applied to a conversation (messages, and optionally
 * tools, documents and extra variables): the model's own Jinja template,
 * rendered as Hugging Face's apply_chat_template would. */
static bool render_chat(srv *s, json_t *messages, json_t *tools, json_t *documents, json_t *kwargs,
                        bool add_generation_prompt, loom_strbuf *out, srv_error *e) {
    if (!s->tmpl)
        return srv_fail(e, 400, "invalid_request_error", "messages", NULL,
                        "the model has no chat template; use /v1/completions");
    char *m = srv_dump(messages), *t = tools ? srv_dump(tools) : NULL, *d = documents ? srv_dump(documents) : NULL,
         *k = kwargs ? srv_dump(kwargs) : NULL;
    bool ok = m && (!tools || t) && (!documents || d) && (!kwargs || k) ? true : oom(e);
    if (ok) {
        loom_chat_request r = {m, strlen(m), t, t ? strlen(t) : 0, d, d ? strlen(d) : 0, k, k ? strlen(k) : 0,
                               add_generation_prompt, .openai_content = true};
        loom_status st = loom_chat_apply(s->tmpl, &r, NULL, out);
        if (st) ok = srv_fail(e, 400, "invalid_request_error", "messages", NULL, "%s", loom_status_message(st));
        loom_status_free(st);
    }
    free(m);
    free(t);
    free(d);
    free(k);
    return ok;
}

static bool tokenize(srv *s, const char *text, bool add_special, bool parse_special, loom_tokens *out, srv_error *e) {
    loom_status st = loom_tokenize(s->tok, text, strlen(text), add_special, parse_special, out);
    if (!st) return true;
    bool r = srv_fail(e, 400, "invalid_request_error", NULL, NULL, "cannot tokenize the prompt: %s", loom_status_message(st));
    loom_status_free(st);
    return r;
}

/* A fill-in-the-middle prompt (completions with `suffix`) in the
 * prefix-suffix-middle order code models are trained on and llama.cpp's
 * server builds: [BOS] FIM_PRE prefix FIM_SUF suffix FIM_MID; the model
 * writes the middle and ends it with an end-of-generation token. */
static bool fim_tokens(srv *s, const char *prefix, const char *suffix, bool add_special, loom_tokens *out,
                       srv_error *e) {
    const int32_t pre = loom_tokenizer_fim(s->tok, LOOM_FIM_PRE), suf = loom_tokenizer_fim(s->tok, LOOM_FIM_SUF),
                  mid = loom_tokenizer_fim(s->tok, LOOM_FIM_MID), bos = loom_tokenizer_bos(s->tok);
    if (pre < 0 || suf < 0 || mid < 0)
        return srv_fail(e, 400, "invalid_request_error", "suffix", NULL,
                        "this model has no fill-in-the-middle tokens (FIM prefix, suffix and middle): 'suffix' "
                        "needs a code model that has them");
    loom_status st = NULL;
    if (add_special && bos >= 0 && loom_tokenizer_adds_bos(s->tok)) st = loom_tokens_push(out, bos);
    if (!st) st = loom_tokens_push(out, pre);
    if (!st) st = loom_tokenize(s->tok, prefix, strlen(prefix), false, false, out);
    if (!st) st = loom_tokens_push(out, suf);
    if (!st) st = loom_tokenize(s->tok, suffix, strlen(suffix), false, false, out);
    if (!st) st = loom_tokens_push(out, mid);
    if (st) {
        loom_status_free(st);
        return oom(e);
    }
    return true;
}

/* Tokens of prompt i of the request (chat: the rendered conversation;
 * *opened: it ends inside a reasoning block). */
static bool prompt_tokens(srv *s, const srv_params *p, int i, loom_tokens *out, bool *opened, srv_error *e) {
    *opened = false;
    if (p->kind == SRV_CHAT) {
        loom_strbuf text = {0};
        bool ok = render_chat(s, p->messages, p->tools, p->documents, p->template_kwargs, p->add_generation_prompt,
                              &text, e) &&
                  tokenize(s, text.data ? text.data : "", !loom_chat_prompt_has_bos(s->tmpl, text.data, text.len),
                           p->parse_special, out, e);
        *opened = ok && srv_reasoning_opened(loom_chat_template_think_tags(s->tmpl), text.data, text.len);
        loom_strbuf_free(&text);
        return ok;
    }
    const srv_prompt *q = &p->prompts[i];
    if (p->suffix && !q->text)
        return srv_fail(e, 400, "invalid_request_error", "suffix", NULL, "'suffix' needs the prompt as text");
    if (p->suffix) return fim_tokens(s, q->text, p->suffix, p->add_special, out, e);
    if (q->text) return tokenize(s, q->text, p->add_special, p->parse_special, out, e);
    int32_t V = loom_tokenizer_n_vocab(s->tok);
    for (int k = 0; k < q->n_ids; k++)
        if (q->ids[k] >= V)
            return srv_fail(e, 400, "invalid_request_error", "prompt", NULL, "token id %d is outside the vocabulary (0..%d)",
                            q->ids[k], V - 1);
    out->n = 0;
    for (int k = 0; k < q->n_ids; k++) {
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 64;
            int32_t *ids = realloc(out->ids, cap * sizeof *ids);
            if (!ids) return oom(e);
            out->ids = ids, out->cap = cap;
        }
        out->ids[out->n++] = q->ids[k];
    }
    return true;
}

static bool check_length(srv *s, int n, srv_error *e) {
    if (n == 0) return srv_fail(e, 400, "invalid_request_error", "prompt", NULL, "the prompt is empty");
    if (n >= s->ctx_size)
        return srv_fail(e, 400, "invalid_request_error", "messages", "context_length_exceeded",
                        "This model's maximum context length is %d tokens. However, your prompt has %d tokens; "
                        "there is no room to generate.", s->ctx_size, n);
    return true;
}

/* ------------------------------------------------------------ one choice */

typedef struct {
    srv_req *req;
    int consumed;          /* tokens of req taken */
    loom_utf8_stream u;
    srv_stop stop;
    bool use_reasoning;    /* the text passes through `rs` (a thinking model's chat) */
    srv_reasoning rs;
    loom_strbuf reasoning; /* emitted reasoning: all of it (whole responses) or this round's (streams) */
    bool use_harmony;      /* the text passes through `hm` (a chat with a gpt-oss template) */
    srv_harmony hm;
    bool use_tools;        /* the text passes through `tools` (a chat with tools, a template whose calls it reads) */
    srv_tools tools;
    size_t calls_sent;     /* streams: calls already sent */
    bool pending;          /* not submitted yet: waits for its prompt's first choice (release_pending) */
    loom_strbuf text;      /* emitted text: all of it (whole responses) or this round's (streams) */
    size_t text_total;     /* bytes emitted so far (text_offset of completions' logprobs) */
    bool finished;
    char finish[16];
    char *error;
    json_t *lp;            /* chat: [entries]; completions: {tokens, token_logprobs, top_logprobs, text_offset};
                              native: completion_probabilities [entries] */
    const srv_native *native; /* llama-server's API (native.h), or NULL */
    bool line_start;       /* native n_indent: a line began and its indentation is being counted */
    int indent;
    bool has_new_line;     /* native: the text has a newline */
    bool limited;          /* native: ended by n_indent or t_max_predict_ms */
    int tokens_sent;       /* native streams: generated ids sent */
    double t_gen;          /* native: when its first token was taken */
} choice;

static json_t *token_json(srv *s, int32_t id) {
    size_t len;
    const char *piece = loom_token_piece(s->tok, id, false, &len);
    return srv_json_text(piece, len);
}

static json_t *bytes_json(srv *s, int32_t id) {
    size_t len;
    const uint8_t *piece = (const uint8_t *)loom_token_piece(s->tok, id, false, &len);
    json_t *a = json_array();
    for (size_t i = 0; a && i < len; i++) json_array_append_new(a, json_integer(piece[i]));
    return a;
}

/* Adds the log-probabilities of one token to c->lp. */
static void add_logprobs(srv *s, srv_kind kind, choice *c, int32_t tok, float lp, const int32_t *top_ids,
                         const float *top_lp, int top) {
    if (c->native) { /* llama-server's completion_probabilities */
        json_t *alts = json_array();
        for (int k = 0; k < top && top_ids[k] >= 0; k++)
            json_array_append_new(alts, json_pack("{s:i, s:o, s:o, s:f}", "id", top_ids[k], "token",
                                                  token_json(s, top_ids[k]), "bytes", bytes_json(s, top_ids[k]),
                                                  "logprob", (double)top_lp[k]));
        json_array_append_new(c->lp, json_pack("{s:i, s:o, s:o, s:f, s:o}", "id", tok, "token", token_json(s, tok),
                                               "bytes", bytes_json(s, tok), "logprob", (double)lp, "top_logprobs", alts));
        return;
    }
    if (kind == SRV_CHAT) {
        json_t *alts = json_array();
        for (int k = 0; k < top && top_ids[k] >= 0; k++)
            json_array_append_new(alts, json_pack("{s:o, s:f, s:o}", "token", token_json(s, top_ids[k]), "logprob",
                                                  (double)top_lp[k], "bytes", bytes_json(s, top_ids[k])));
        json_array_append_new(c->lp, json_pack("{s:o, s:f, s:o, s:o}", "token", token_json(s, tok), "logprob",
                                               (double)lp, "bytes", bytes_json(s, tok), "top_logprobs", alts));
        return;
    }
    json_t *alts = json_object();
    for (int k = 0; k < top && top_ids[k] >= 0; k++) {
        json_t *t = token_json(s, top_ids[k]);
        if (t) json_object_set_new(alts, json_string_value(t), json_real(top_lp[k]));
        json_decref(t);
    }
    json_array_append_new(json_object_get(c->lp, "tokens"), token_json(s, tok));
    json_array_append_new(json_object_get(c->lp, "token_logprobs"), json_real(lp));
    json_array_append_new(json_object_get(c->lp, "top_logprobs"), alts);
    json_array_append_new(json_object_get(c->lp, "text_offset"), json_integer((json_int_t)c->text_total));
}

/* echo: the prompt (its text, or its ids' text) leads c's text, and its
 * tokens lead c's log-probabilities when asked: the first token's
 * log-probability and alternatives null (nothing comes before it), the
 * others' as generated tokens' (plp: srv_score_prompt's). */
static bool add_echo(srv *s, choice *c, const srv_prompt *q, const int32_t *ids, int n, const srv_prompt_lp *plp,
                     int top) {
    loom_strbuf ids_text = {0};
    const char *text = q->text;
    size_t len = text ? strlen(text) : 0;
    if (!text) {
        loom_status st = loom_detokenize(s->tok, ids, (size_t)n, false, &ids_text);
        if (st) {
            loom_status_free(st);
            return false;
        }
        text = ids_text.data ? ids_text.data : "", len = ids_text.len;
    }
    for (int i = 0; c->lp && i < n; i++) {
        if (i > 0) {
            add_logprobs(s, SRV_COMPLETION, c, ids[i], plp->lp[i], plp->top_ids + (size_t)i * top,
                         plp->top_lp + (size_t)i * top, top);
        } else {
            json_array_append_new(json_object_get(c->lp, "tokens"), token_json(s, ids[0]));
            json_array_append_new(json_object_get(c->lp, "token_logprobs"), json_null());
            json_array_append_new(json_object_get(c->lp, "top_logprobs"), json_null());
            json_array_append_new(json_object_get(c->lp, "text_offset"), json_integer(0));
        }
        size_t piece;
        (void)loom_token_piece(s->tok, ids[i], false, &piece);
        c->text_total += piece; /* the next token's offset, at most the text's end */
        if (c->text_total > len) c->text_total = len;
    }
    loom_status st = loom_strbuf_append(&c->text, text, len);
    c->text_total = len;
    loom_strbuf_free(&ids_text);
    if (st) loom_status_free(st);
    return !st;
}

static json_t *empty_logprobs(srv_kind kind) {
    if (kind == SRV_CHAT) return json_array();
    return json_pack("{s:[], s:[], s:[], s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* The tool calls c's text made (an array), or NULL when it is not parsed
 * for calls. */
static json_t *calls_of(const choice *c) {
    return c->use_harmony ? c->hm.calls : c->use_tools ? c->tools.calls : NULL;
}

/* Text out of the UTF-8 stream: through the stop strings, a thinking
 * model's reasoning split or a gpt-oss model's harmony split (reasoning
 * into c->reasoning, calls into c->hm.calls) and, for a chat with tools,
 * the tool-call parser, into c->text. end: the text is over. */
static loom_status put_text(choice *c, const char *t, size_t n, bool end) {
    loom_strbuf a = {0}, b = {0};
    loom_strbuf *after_stop = c->use_reasoning || c->use_harmony || c->use_tools ? &a : &c->text;
    loom_status st = n ? srv_stop_push(&c->stop, t, n, after_stop) : NULL;
    if (!st && end) st = srv_stop_flush(&c->stop, after_stop);
    loom_strbuf *answer = after_stop;
    if (!st && c->use_reasoning) {
        answer = c->use_tools ? &b : &c->text;
        if (a.len) st = srv_reasoning_push(&c->rs, a.data, a.len, &c->reasoning, answer);
        if (!st && end) st = srv_reasoning_flush(&c->rs, &c->reasoning, answer);
    } else if (!st && c->use_harmony) {
        answer = c->use_tools ? &b : &c->text;
        if (a.len) st = srv_harmony_push(&c->hm, a.data, a.len, &c->reasoning, answer);
        if (!st && end) st = srv_harmony_flush(&c->hm, &c->reasoning, answer);
    }
    if (!st && c->use_tools) {
        if (answer->len) st = srv_tools_push(&c->tools, answer->data, answer->len, &c->text);
        if (!st && end) st = srv_tools_flush(&c->tools, &c->text);
    }
    loom_strbuf_free(&a);
    loom_strbuf_free(&b);
    return st;
}

/* llama-server's limits after a token whose text is piece (c->text grew
 * from `before`): n_indent cuts a line indented less and ends the choice;
 * t_max_predict_ms ends it at a newline once generating took longer. */
static void native_limits(choice *c, size_t before, const char *piece, size_t n) {
    const bool nl = piece && memchr(piece, '\n', n) != NULL;
    if (c->native->n_indent > 0) {
        const long cut = srv_native_indent_cut(c->text.data + before, c->text.len - before, c->native->n_indent,
                                               &c->line_start, &c->indent);
        if (cut >= 0) {
            c->text_total -= c->text.len - before - (size_t)cut;
            c->text.len = before + (size_t)cut;
            c->text.data[c->text.len] = 0;
            c->limited = true;
        }
    }
    if (c->t_gen == 0) c->t_gen = loom_now_s();
    if (nl && c->native->t_max_predict_ms > 0 && 1e3 * (loom_now_s() - c->t_gen) > c->native->t_max_predict_ms)
        c->limited = true;
    c->has_new_line |= nl;
}

/* Takes the tokens that arrived for c: text through the UTF-8 stream and
 * the stop strings into c->text, log-probabilities into c->lp. Ends the
 * choice on a stop string (and cancels the request) or when the request is
 * done. Returns false when out of memory. */
static bool consume(srv *s, srv_kind kind, choice *c) {
    enum { CHUNK = 256 };
    int32_t toks[CHUNK], top_ids[CHUNK * 20];
    float lps[CHUNK], top_lp[CHUNK * 20];
    srv_req *q = c->req;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int n = q->n - c->consumed, top = q->top;
        if (n > CHUNK) n = CHUNK;
        if (n > 0) memcpy(toks, q->toks + c->consumed, (size_t)n * sizeof *toks);
        if (n > 0 && q->r.logprobs) {
            memcpy(lps, q->lp + c->consumed, (size_t)n * sizeof *lps);
            memcpy(top_ids, q->top_ids + (size_t)c->consumed * top, (size_t)n * top * sizeof *top_ids);
            memcpy(top_lp, q->top_lp + (size_t)c->consumed * top, (size_t)n * top * sizeof *top_lp);
        }
        bool done = q->done && c->consumed + n == q->n;
        char finish[16];
        snprintf(finish, sizeof finish, "%s", q->finish);
        char *error = done && q->error ? strdup(q->error) : NULL;
        pthread_mutex_unlock(&s->mu);
        loom_strbuf piece_text = {0};
        loom_status st = NULL;
        for (int i = 0; i < n && !st && !c->stop.matched && !c->limited; i++) {
            size_t len;
            const bool keep = s->keep && toks[i] >= 0 && toks[i] < loom_tokenizer_n_vocab(s->tok) && s->keep[toks[i]];
            const char *piece = loom_token_piece(s->tok, toks[i], keep, &len);
            size_t before = c->text.len;
            loom_strbuf_clear(&piece_text);
            st = loom_utf8_stream_push(&c->u, piece, len, &piece_text);
            if (!st && piece_text.len) st = put_text(c, piece_text.data, piece_text.len, false);
            if (c->lp) add_logprobs(s, kind, c, toks[i], lps[i], top_ids + (size_t)i * top, top_lp + (size_t)i * top, top);
            c->text_total += c->text.len - before;
            c->consumed++;
            if (c->native && !st) native_limits(c, before, piece_text.data, piece_text.len);
        }
        if (!st && done && !c->stop.matched && !c->limited) {
            loom_strbuf_clear(&piece_text);
            st = loom_utf8_stream_flush(&c->u, &piece_text);
            if (!st) st = put_text(c, piece_text.data, piece_text.len, true);
        }
        if (!st && c->stop.matched && (c->use_tools || c->use_reasoning || c->use_harmony))
            st = put_text(c, NULL, 0, true); /* the parsers' held text */
        loom_strbuf_free(&piece_text);
        if (st) {
            loom_status_free(st);
            free(error);
            return false;
        }
        if (c->stop.matched || c->limited) {
            c->finished = true;
            snprintf(c->finish, sizeof c->finish, c->limited ? "length" : json_array_size(calls_of(c)) ? "tool_calls" : "stop");
            srv_cancel(s, q);
            free(error);
            return true;
        }
        if (done) {
            c->finished = true;
            bool ok = !strcmp(finish, "stop") || !strcmp(finish, "length");
            const bool called = ok && !strcmp(finish, "stop") && json_array_size(calls_of(c)) &&
                                !(c->use_tools && c->tools.force_name); /* OpenAI: a named function's call ends as "stop" */
            snprintf(c->finish, sizeof c->finish, "%s", called ? "tool_calls" : ok ? finish : "error");
            c->error = ok ? NULL : error ? error : strdup("the request was cancelled");
            if (ok) free(error);
            return true;
        }
        free(error);
        if (n < CHUNK) return true;
    }
}

/* Waits (at most WAIT_MS) for news of c's request. */
static void wait_news(srv *s, choice *c) {
    pthread_mutex_lock(&s->mu);
    if (c->req->n == c->consumed && !c->req->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAIT_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&c->req->cv, &s->mu, &ts);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ------------------------------------------------------------ a job: one HTTP request */

typedef struct {
    srv *s;
    srv_params p;
    choice ch[SRV_MAX_PROMPTS];
    int n;
    int prompt_tokens;
    char id[48];
    long long created;
    struct MHD_Connection *conn;
    /* streaming */
    loom_strbuf out;
    size_t out_pos;
    bool role_sent, all_sent;
    double last_send;
    /* the chat's reply in another API's shape: POST /v1/responses (responses.h), /v1/messages (anthropic.h) */
    enum { API_OPENAI, API_RESPONSES, API_ANTHROPIC, API_NATIVE } api;
    srv_native native;         /* API_NATIVE: llama-server's request (native.h) */
    json_t *resp_req;
    srv_resp resp;
    srv_amsg amsg;
} job;

static void job_free(job *j) {
    for (int i = 0; i < j->n; i++) {
        choice *c = &j->ch[i];
        if (c->req) {
            srv_cancel(j->s, c->req); /* no-op when done */
            srv_req_unref(j->s, c->req);
        }
        srv_stop_free(&c->stop);
        srv_tools_free(&c->tools);
        srv_harmony_free(&c->hm);
        srv_reasoning_free(&c->rs);
        loom_strbuf_free(&c->reasoning);
        loom_strbuf_free(&c->text);
        free(c->error);
        json_decref(c->lp);
    }
    srv_params_free(&j->p);
    loom_strbuf_free(&j->out);
    if (j->api == API_RESPONSES) srv_resp_free(&j->resp);
    if (j->api == API_ANTHROPIC) srv_amsg_free(&j->amsg);
    srv_native_free(&j->native);
    json_decref(j->resp_req);
    pthread_mutex_lock(&j->s->mu);
    j->s->http_jobs--;
    pthread_mutex_unlock(&j->s->mu);
    free(j);
}

static int completion_tokens(job *j) {
    int n = 0;
    for (int i = 0; i < j->n; i++) n += j->ch[i].consumed;
    return n;
}

static json_t *usage_json(job *j) {
    int c = completion_tokens(j);
    json_t *u = json_pack("{s:i, s:i, s:i}", "prompt_tokens", j->prompt_tokens, "completion_tokens", c, "total_tokens",
                          j->prompt_tokens + c);
    if (u && j->p.prediction) { /* predicted outputs: proposals kept and refused, as OpenAI reports them */
        int made = 0, kept = 0;
        pthread_mutex_lock(&j->s->mu);
        for (int i = 0; i < j->n; i++) made += j->ch[i].req->draft_tokens, kept += j->ch[i].req->draft_accepted;
        pthread_mutex_unlock(&j->s->mu);
        json_object_set_new(u, "completion_tokens_details",
                            json_pack("{s:i, s:i, s:i}", "accepted_prediction_tokens", kept, "rejected_prediction_tokens",
                                      made - kept, "reasoning_tokens", 0));
    }
    return u;
}

static json_t *lp_field(job *j, choice *c) {
    if (!c->lp) return json_null();
    if (j->p.kind == SRV_CHAT) return json_pack("{s:O}", "content", c->lp);
    return json_incref(c->lp);
}

static bool any_error(job *j, srv_error *e) {
    for (int i = 0; i < j->n; i++)
        if (j->ch[i].error) {
            srv_fail(e, 500, "server_error", NULL, NULL, "%s", j->ch[i].error);
            return true;
        }
    return false;
}

/* A prompt's choices after its first are submitted once the first has its
 * first token: the prompt's KV blocks are in the prefix cache by then, so
 * they compute only the prompt's last partial block (submitted together,
 * each would compute the whole prompt). A choice the server cannot take
 * (a full queue) ends with its error. */
static void release_pending(job *j) {
    for (int i = 0; i < j->n; i++) {
        choice *c = &j->ch[i], *head = &j->ch[i - i % j->p.n];
        if (!c->pending || (!head->finished && head->consumed == 0)) continue;
        c->pending = false;
        srv_error e;
        if (!srv_submit(j->s, c->req, &e)) {
            c->finished = true;
            snprintf(c->finish, sizeof c->finish, "error");
            c->error = strdup(e.message);
        }
    }
}

/* The whole response of a finished job. */
static json_t *whole_response(job *j) {
    json_t *choices = json_array();
    for (int i = 0; i < j->n; i++) {
        choice *c = &j->ch[i];
        const bool calls = json_array_size(calls_of(c)) > 0;
        json_t *text = calls && !c->text.len ? json_null() : srv_json_text(c->text.data ? c->text.data : "", c->text.len);
        json_t *o = j->p.kind == SRV_CHAT
                        ? json_pack("{s:i, s:{s:s, s:o}, s:o, s:s}", "index", i, "message", "role", "assistant",
                                    "content", text, "logprobs", lp_field(j, c), "finish_reason", c->finish)
                        : json_pack("{s:i, s:o, s:o, s:s}", "index", i, "text", text, "logprobs", lp_field(j, c),
                                    "finish_reason", c->finish);
        if (o && calls) json_object_set(json_object_get(o, "message"), "tool_calls", calls_of(c));
        if (o && c->reasoning.len)
            json_object_set_new(json_object_get(o, "message"), "reasoning_content",
                                srv_json_text(c->reasoning.data, c->reasoning.len));
        json_array_append_new(choices, o);
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", j->id, "object",
                     j->p.kind == SRV_CHAT ? "chat.completion" : "text_completion", "created", (json_int_t)j->created,
                     "model", j->s->opt.model_name, "choices", choices, "usage", usage_json(j));
}

/* ------------------------------------------------------------ streaming */

static void sse(job *j, json_t *obj) {
    char *s = obj ? srv_dump(obj) : NULL;
    json_decref(obj);
    if (!s) return;
    loom_status st = loom_strbuf_append(&j->out, "data: ", 6);
    if (!st) st = loom_strbuf_append(&j->out, s, strlen(s));
    if (!st) st = loom_strbuf_append(&j->out, "\n\n", 2);
    loom_status_free(st);
    free(s);
}

static json_t *chunk(job *j, json_t *choices) {
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:o}", "id", j->id, "object",
                          j->p.kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                          (json_int_t)j->created, "model", j->s->opt.model_name, "choices", choices);
    if (o && j->p.include_usage) json_object_set_new(o, "usage", json_null());
    return o;
}

static json_t *delta_choice(job *j, int i, const char *text, size_t len, json_t *lp, const char *finish) {
    json_t *t = srv_json_text(text, len);
    json_t *fin = finish ? json_string(finish) : json_null();
    if (j->p.kind == SRV_CHAT) {
        json_t *delta = finish && !len ? json_object() : json_pack("{s:o}", "content", t);
        if (finish && !len) json_decref(t);
        return json_pack("{s:i, s:o, s:o, s:o}", "index", i, "delta", delta, "logprobs", lp, "finish_reason", fin);
    }
    return json_pack("{s:i, s:o, s:o, s:o}", "index", i, "text", t, "logprobs", lp, "finish_reason", fin);
}

/* Choice c's reasoning, text and new calls as the Responses API's items or
 * the Messages API's blocks (events into out when not NULL), and at its
 * end the response (new reference; a Messages stream's error is an error
 * event). */
static json_t *api_items(job *j, choice *c, loom_strbuf *out) {
    const bool r = j->api == API_RESPONSES;
    if (c->reasoning.len) {
        if (r) srv_resp_reasoning(&j->resp, c->reasoning.data, c->reasoning.len, out);
        else srv_amsg_reasoning(&j->amsg, c->reasoning.data, c->reasoning.len, out);
    }
    if (c->text.len) {
        if (r) srv_resp_text(&j->resp, c->text.data, c->text.len, out);
        else srv_amsg_text(&j->amsg, c->text.data, c->text.len, out);
    }
    loom_strbuf_clear(&c->reasoning);
    loom_strbuf_clear(&c->text);
    for (; c->calls_sent < json_array_size(calls_of(c)); c->calls_sent++) {
        const json_t *call = json_array_get(calls_of(c), c->calls_sent);
        if (r) srv_resp_call(&j->resp, call, out);
        else srv_amsg_call(&j->amsg, call, out);
    }
    if (!c->finished) return NULL;
    if (r) return srv_resp_finish(&j->resp, c->finish, c->error, j->prompt_tokens, completion_tokens(j), out);
    if (c->error && out) {
        srv_error e;
        srv_fail(&e, 500, "server_error", NULL, NULL, "%s", c->error);
        srv_sse_event(out, "error", srv_anthropic_error_obj(&e));
        return json_object();
    }
    const char *stop = c->stop.matched && c->stop.which >= 0 ? j->p.stop[c->stop.which] : NULL;
    return srv_amsg_finish(&j->amsg, c->finish, stop, completion_tokens(j), out);
}

/* llama-server's reply object for choice i: its text and tokens since the
 * last one; `final`: with the whole reply's fields (stop_type, timings,
 * generation_settings, ...). */
static json_t *native_obj(job *j, int i, bool final) {
    srv *s = j->s;
    choice *c = &j->ch[i];
    const srv_native *n = &j->native;
    srv_req *q = c->req;
    json_t *ids = json_array();
    pthread_mutex_lock(&s->mu);
    for (int k = c->tokens_sent; n->return_tokens && !n->discard && k < c->consumed && k < q->n; k++)
        json_array_append_new(ids, json_integer(q->toks[k]));
    const double t_arrive = q->t_arrive, t_first = q->t_first, t_last = q->t_last, prompt_ms0 = q->prompt_ms;
    const int cached = q->n_cached;
    pthread_mutex_unlock(&s->mu);
    c->tokens_sent = c->consumed;
    const int predicted = n->discard ? 0 : c->consumed, n_prompt = q->r.n_prompt;
    json_t *o = json_pack("{s:i, s:o, s:o, s:b, s:i, s:i, s:i}", "index", i, "content",
                          n->discard ? json_string("") : srv_json_text(c->text.data ? c->text.data : "", c->text.len),
                          "tokens", ids, "stop", final, "id_slot", -1, "tokens_predicted", predicted, "tokens_evaluated",
                          n_prompt);
    if (!o) return NULL;
    if (c->lp && json_array_size(c->lp)) {
        json_object_set_new(o, "completion_probabilities", c->lp);
        c->lp = json_array();
    }
    const double prompt_ms = prompt_ms0 > 0 ? prompt_ms0 : t_first > 0 ? 1e3 * (t_first - t_arrive) : 0,
                 gen_ms = t_first > 0 && t_last > t_first ? 1e3 * (t_last - t_first) : 0;
    const int prompt_n = n_prompt - cached;
    json_t *timings = json_pack("{s:i, s:f, s:f, s:f, s:i, s:f, s:f, s:f}", "prompt_n", prompt_n, "prompt_ms", prompt_ms,
                                "prompt_per_token_ms", prompt_n > 0 ? prompt_ms / prompt_n : 0.0, "prompt_per_second",
                                prompt_ms > 0 ? 1e3 * prompt_n / prompt_ms : 0.0, "predicted_n", predicted,
                                "predicted_ms", gen_ms, "predicted_per_token_ms",
                                predicted > 1 ? gen_ms / (predicted - 1) : 0.0, "predicted_per_second",
                                gen_ms > 0 ? 1e3 * (predicted - 1) / gen_ms : 0.0);
    if (!final) {
        if (n->timings_per_token) json_object_set_new(o, "timings", timings);
        else json_decref(timings);
        return o;
    }
    const bool word = c->stop.matched && c->stop.which >= 0;
    const char *stop_type = !strcmp(c->finish, "length") ? "limit" : word ? "word" : !strcmp(c->finish, "stop") ? "eos" : "none";
    loom_strbuf prompt = {0};
    loom_status st = loom_detokenize(s->tok, q->prompt, (size_t)n_prompt, true, &prompt);
    loom_status_free(st);
    json_object_set_new(o, "model", json_string(s->opt.model_name));
    json_object_set_new(o, "generation_settings", json_incref(n->settings));
    json_object_set_new(o, "prompt", srv_json_text(prompt.data ? prompt.data : "", prompt.len));
    json_object_set_new(o, "has_new_line", json_boolean(c->has_new_line));
    json_object_set_new(o, "truncated", json_false());
    json_object_set_new(o, "stop_type", json_string(stop_type));
    json_object_set_new(o, "stopping_word", json_string(word ? j->p.stop[c->stop.which] : ""));
    json_object_set_new(o, "tokens_cached", json_integer(cached));
    json_object_set_new(o, "timings", timings);
    loom_strbuf_free(&prompt);
    return o;
}

/* The whole native reply: one object, or an array of one per prompt. */
static json_t *native_whole(job *j) {
    if (j->n == 1) return srv_native_fields(&j->native, native_obj(j, 0, true));
    json_t *a = json_array();
    for (int i = 0; a && i < j->n; i++) json_array_append_new(a, srv_native_fields(&j->native, native_obj(j, i, true)));
    return a;
}

/* Turns what arrived into llama-server's events in j->out ("data: {...}",
 * "stop": false until each prompt's last; no [DONE]). */
static bool produce_native(job *j) {
    bool all = true;
    for (int i = 0; i < j->n; i++) {
        choice *c = &j->ch[i];
        if (c->finished && !c->text.len) continue;
        const bool was = c->finished;
        if (!was && !consume(j->s, j->p.kind, c)) return false;
        if (!j->native.discard && (c->text.len || (c->lp && json_array_size(c->lp)))) {
            sse(j, srv_native_fields(&j->native, native_obj(j, i, false)));
            loom_strbuf_clear(&c->text);
        }
        if (c->finished && !was) {
            loom_strbuf_clear(&c->text);
            if (c->error) {
                srv_error e;
                srv_fail(&e, 500, "server_error", NULL, NULL, "%s", c->error);
                sse(j, srv_error_obj(&e));
            } else {
                sse(j, srv_native_fields(&j->native, native_obj(j, i, true)));
            }
        }
        all &= c->finished;
    }
    j->all_sent = all;
    return true;
}

/* Turns what arrived into the Responses or Messages API's events in j->out. */
static bool produce_other_api(job *j) {
    choice *c = &j->ch[0];
    if (!j->role_sent) {
        if (j->api == API_RESPONSES) srv_resp_start(&j->resp, &j->out);
        else srv_amsg_start(&j->amsg, &j->out);
    }
    j->role_sent = true;
    if (!c->finished && !consume(j->s, j->p.kind, c)) return false;
    json_t *done = api_items(j, c, &j->out);
    if (done) j->all_sent = true;
    json_decref(done);
    return true;
}

/* Turns what arrived into SSE events in j->out. */
static bool produce(job *j) {
    srv *s = j->s;
    if (j->api == API_NATIVE) return produce_native(j);
    if (j->api != API_OPENAI) return produce_other_api(j);
    release_pending(j);
    for (int i = 0; j->p.kind == SRV_CHAT && !j->role_sent && i < j->n; i++) /* each choice's first chunk */
        sse(j, chunk(j, json_pack("[{s:i, s:{s:s, s:s}, s:n, s:n}]", "index", i, "delta", "role", "assistant",
                                  "content", "", "logprobs", "finish_reason")));
    j->role_sent = true;
    bool all = true;
    for (int i = 0; i < j->n; i++) {
        choice *c = &j->ch[i];
        if (c->finished && !c->text.len) continue;
        bool was = c->finished;
        if (!was && !consume(s, j->p.kind, c)) return false;
        if (c->reasoning.len) { /* before this round's content: it came first */
            sse(j, chunk(j, json_pack("[{s:i, s:{s:o}, s:n, s:n}]", "index", i, "delta", "reasoning_content",
                                      srv_json_text(c->reasoning.data, c->reasoning.len), "logprobs", "finish_reason")));
            loom_strbuf_clear(&c->reasoning);
        }
        json_t *lp = c->lp && json_array_size(j->p.kind == SRV_CHAT ? c->lp : json_object_get(c->lp, "tokens"))
                         ? lp_field(j, c)
                         : json_null();
        if (c->text.len || (c->lp && !json_is_null(lp))) {
            sse(j, chunk(j, json_pack("[o]", delta_choice(j, i, c->text.data ? c->text.data : "", c->text.len, lp,
                                                           NULL))));
            loom_strbuf_clear(&c->text);
            if (c->lp) {
                json_decref(c->lp);
                c->lp = empty_logprobs(j->p.kind);
            }
        } else {
            json_decref(lp);
        }
        for (; c->calls_sent < json_array_size(calls_of(c)); c->calls_sent++) {
            json_t *call = json_deep_copy(json_array_get(calls_of(c), c->calls_sent));
            json_object_set_new(call, "index", json_integer((json_int_t)c->calls_sent));
            sse(j, chunk(j, json_pack("[{s:i, s:{s:[o]}, s:n, s:n}]", "index", i, "delta", "tool_calls", call,
                                      "logprobs", "finish_reason")));
        }
        if (c->finished && !was) {
            if (c->error) {
                srv_error e;
                srv_fail(&e, 500, "server_error", NULL, NULL, "%s", c->error);
                sse(j, srv_error_obj(&e));
            } else {
                sse(j, chunk(j, json_pack("[o]", delta_choice(j, i, "", 0, json_null(), c->finish))));
            }
        }
        all &= c->finished;
    }
    if (all) {
        if (j->p.include_usage) {
            json_t *o = chunk(j, json_array());
            json_object_set_new(o, "usage", usage_json(j));
            sse(j, o);
        }
        loom_status_free(loom_strbuf_append(&j->out, "data: [DONE]\n\n", 14));
        j->all_sent = true;
    }
    return true;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    for (;;) {
        if (j->out_pos < j->out.len) {
            size_t n = j->out.len - j->out_pos < max ? j->out.len - j->out_pos : max;
            memcpy(buf, j->out.data + j->out_pos, n);
            j->out_pos += n;
            j->last_send = loom_now_s();
            return (ssize_t)n;
        }
        loom_strbuf_clear(&j->out);
        j->out_pos = 0;
        if (j->all_sent) return MHD_CONTENT_READER_END_OF_STREAM;
        if (!produce(j)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (j->out.len) continue;
        if (srv_client_gone(j->conn)) return MHD_CONTENT_READER_END_WITH_ERROR; /* job_free cancels */
        for (int i = 0; i < j->n; i++)
            if (!j->ch[i].finished) {
                wait_news(j->s, &j->ch[i]);
                break;
            }
        if (loom_now_s() - j->last_send > KEEPALIVE_S)
            loom_status_free(loom_strbuf_append(&j->out, ": keep-alive\n\n", 14));
    }
}

static void stream_free(void *cls) { job_free(cls); }

/* ------------------------------------------------------------ the endpoint */

/* Parses, prepares and queues every prompt of the request. */
static bool start_job(srv *s, srv_kind kind, const char *body, size_t len, job *j, srv_error *e) {
    if (!srv_parse_request(kind, body, len, srv_next_seed(s), &j->p, e)) return false;
    if (j->p.model && strcmp(j->p.model, s->opt.model_name) != 0 && srv_lora_by_name(s, j->p.model) < 0)
        return srv_fail(e, 404, "invalid_request_error", "model", "model_not_found",
                        "The model '%s' does not exist; this server serves '%s'", j->p.model, s->opt.model_name);
    const int32_t V = loom_tokenizer_n_vocab(s->tok);
    for (int i = 0; i < j->p.sampling.n_logit_bias; i++)
        if (j->p.sampling.bias_token[i] >= V)
            return srv_fail(e, 400, "invalid_request_error", "logit_bias", NULL,
                            "token id %d in 'logit_bias' is outside the vocabulary (0..%d)", j->p.sampling.bias_token[i],
                            V - 1);
    const int n_prompts = kind == SRV_CHAT ? 1 : j->p.n_prompts, per = j->p.n;
    const loom_tool_syntax syntax = s->tmpl ? loom_chat_template_tool_syntax(s->tmpl) : LOOM_TOOLS_NONE;
    const bool with_tools = kind == SRV_CHAT && j->p.tools && json_array_size(j->p.tools) && !j->p.tool_choice_none;
    /* a gpt-oss reply is split by the harmony parser, which reads its calls too; a reply that
     * tool_choice holds to a schema is bare JSON, read by the tool-call parser */
    const bool use_harmony = kind == SRV_CHAT && s->harmony && !j->p.tool_force;
    const bool use_tools = with_tools && (j->p.tool_force || (syntax != LOOM_TOOLS_NONE && !use_harmony));
    j->n = n_prompts * per; /* choice i: prompt i / per, its (i % per)-th sample */
    loom_tokens toks[SRV_MAX_PROMPTS];
    memset(toks, 0, sizeof toks);
    bool ok = true, opened = false;
    srv_prompt_lp plp[SRV_MAX_PROMPTS];
    memset(plp, 0, sizeof plp);
    for (int i = 0; ok && i < n_prompts; i++) {
        ok = prompt_tokens(s, &j->p, i, &toks[i], &opened, e) && check_length(s, (int)toks[i].n, e);
        if (ok) j->prompt_tokens += (int)toks[i].n;
        if (ok && j->p.echo && j->p.logprobs)
            ok = srv_score_prompt(s, toks[i].ids, (int)toks[i].n, j->p.top_logprobs, &plp[i], e);
    }
    /* LoRA: the request's list, else the adapter its "model" names at 1, else (n_lora 0) the server's scales */
    float lora[SRV_MAX_LORA] = {0};
    int n_lora = 0;
    const int by_name = srv_lora_by_name(s, j->p.model);
    if (j->p.lora_given || by_name >= 0) {
        n_lora = s->n_lora;
        for (int k = 0; ok && j->p.lora_given && k < j->p.n_lora; k++) {
            if (j->p.lora_id[k] >= s->n_lora)
                ok = srv_fail(e, 400, "invalid_request_error", "lora", NULL, "'lora': adapter %d: %d adapter%s loaded",
                              j->p.lora_id[k], s->n_lora, s->n_lora == 1 ? " is" : "s are");
            else
                lora[j->p.lora_id[k]] = j->p.lora_scale[k];
        }
        if (!j->p.lora_given) lora[by_name] = 1;
    }
    loom_tokens pred = {0}; /* predicted output: what speculative decoding proposes from */
    if (ok && j->p.prediction) ok = tokenize(s, j->p.prediction, false, false, &pred, e);
    for (int i = 0; ok && i < j->n; i++) {
        const loom_tokens *t = &toks[i / per];
        loom_request r = {.sampling = j->p.sampling, .ignore_eos = j->p.ignore_eos, .logprobs = j->p.logprobs,
                          .top_logprobs = j->p.top_logprobs, .prediction = pred.ids, .n_prediction = (int)pred.n};
        r.sampling.seed += (uint64_t)(i % per) * 0x9e3779b97f4a7c15ull; /* a prompt's choices draw apart */
        r.lora = lora, r.n_lora = n_lora;
        int room = s->ctx_size - (int)t->n;
        r.max_tokens = j->p.max_tokens < 0 || j->p.max_tokens > room ? room : j->p.max_tokens;
        choice *c = &j->ch[i];
        c->req = srv_req_new(t->ids, (int)t->n, &r);
        loom_utf8_stream_init(&c->u);
        srv_stop_init(&c->stop, j->p.stop, j->p.n_stop);
        c->use_tools = use_tools;
        const loom_think_tags *think = s->tmpl ? loom_chat_template_think_tags(s->tmpl) : NULL;
        c->use_reasoning = kind == SRV_CHAT && !s->opt.no_reasoning && think && !use_harmony;
        srv_reasoning_init(&c->rs, think, opened);
        c->use_harmony = use_harmony;
        if (use_harmony && !srv_harmony_init(&c->hm, with_tools, s->opt.no_reasoning, srv_next_seed(s))) ok = oom(e);
        if (use_tools && !srv_tools_init(&c->tools, syntax, srv_next_seed(s), j->p.tools)) ok = oom(e);
        if (use_tools && j->p.tool_force) srv_tools_force(&c->tools, j->p.tool_force_name);
        c->native = j->api == API_NATIVE ? &j->native : NULL;
        if (j->p.logprobs) c->lp = c->native ? json_array() : empty_logprobs(kind);
        if (!c->req || (j->p.logprobs && !c->lp)) ok = oom(e);
        if (ok && j->p.echo && !add_echo(s, c, &j->p.prompts[i / per], t->ids, (int)t->n, &plp[i / per], j->p.top_logprobs))
            ok = oom(e);
        if (ok && r.max_tokens == 0) { /* echo alone: nothing to generate */
            c->finished = true;
            snprintf(c->finish, sizeof c->finish, "length");
        }
    }
    for (int i = 0; i < n_prompts; i++) loom_tokens_free(&toks[i]), srv_prompt_lp_free(&plp[i]);
    loom_tokens_free(&pred);
    for (int i = 0; ok && i < j->n; i++) {
        j->ch[i].pending = i % per != 0 && !j->ch[i].finished;
        if (!j->ch[i].pending && !j->ch[i].finished) ok = srv_submit(s, j->ch[i].req, e);
    }
    return ok;
}

/* An error in the envelope of the request's API. */
static enum MHD_Result reply_error(srv *s, struct MHD_Connection *c, int api, const srv_error *e) {
    return api == API_ANTHROPIC ? srv_reply_error_anthropic(s, c, e) : srv_reply_error(s, c, e);
}

/* A generation request: chat, completions, or a Responses (resp_req, the
 * request: stolen) or Messages API request translated into the chat
 * request body. */
static enum MHD_Result generate(srv *s, struct MHD_Connection *c, srv_kind kind, const char *body, size_t len, int api,
                                json_t *resp_req, srv_native *native) {
    job *j = calloc(1, sizeof *j);
    srv_error e;
    if (!j) {
        json_decref(resp_req);
        if (native) srv_native_free(native);
        return srv_reply(s, c, 500, NULL, NULL);
    }
    j->s = s;
    j->conn = c;
    j->created = (long long)time(NULL);
    j->api = api;
    static const char *const prefix[] = {"chatcmpl-", "resp_", "msg_", "cmpl-"};
    snprintf(j->id, sizeof j->id, "%s%016llx", kind == SRV_COMPLETION ? "cmpl-" : prefix[api],
             (unsigned long long)srv_next_seed(s));
    j->resp_req = resp_req;
    if (native) j->native = *native; /* moved */
    if (api == API_RESPONSES) srv_resp_init(&j->resp, j->id, s->opt.model_name, j->created, resp_req);
    j->last_send = loom_now_s();
    pthread_mutex_lock(&s->mu);
    s->http_jobs++;
    pthread_mutex_unlock(&s->mu);
    if (!start_job(s, kind, body, len, j, &e)) {
        job_free(j);
        return reply_error(s, c, api, &e);
    }
    if (api == API_ANTHROPIC) srv_amsg_init(&j->amsg, j->id, s->opt.model_name, j->prompt_tokens);
    if (j->p.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, j,
                                                                   stream_free);
        if (!r) {
            job_free(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        enum MHD_Result ok = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        srv_metrics_http(&s->metrics, 200);
        return ok;
    }
    bool all = false;
    while (!all) {
        all = true;
        release_pending(j);
        for (int i = 0; i < j->n; i++) {
            if (!j->ch[i].finished && !consume(s, kind, &j->ch[i])) {
                job_free(j);
                return srv_reply(s, c, 500, NULL, NULL);
            }
            all &= j->ch[i].finished;
        }
        if (all) break;
        if (srv_client_gone(c)) { /* nobody to answer: job_free cancels */
            job_free(j);
            return MHD_NO;
        }
        for (int i = 0; i < j->n; i++)
            if (!j->ch[i].finished) {
                wait_news(s, &j->ch[i]);
                break;
            }
    }
    enum MHD_Result r = any_error(j, &e)       ? reply_error(s, c, api, &e)
                        : api == API_NATIVE    ? srv_reply_json(s, c, 200, native_whole(j))
                        : api != API_OPENAI    ? srv_reply_json(s, c, 200, api_items(j, &j->ch[0], NULL))
                                               : srv_reply_json(s, c, 200, whole_response(j));
    job_free(j);
    return r;
}

enum MHD_Result srv_handle_generate(srv *s, struct MHD_Connection *c, srv_kind kind, const char *body, size_t len) {
    return generate(s, c, kind, body, len, API_OPENAI, NULL, NULL);
}

enum MHD_Result srv_handle_native(srv *s, struct MHD_Connection *c, const char *body, size_t len, bool infill) {
    char *oai = NULL;
    srv_native n;
    srv_error e;
    if (!srv_native_request(s->tok, s->ctx_size, body, len, infill, &oai, &n, &e)) return srv_reply_error(s, c, &e);
    enum MHD_Result r = generate(s, c, SRV_COMPLETION, oai, strlen(oai), API_NATIVE, NULL, &n);
    free(oai);
    return r;
}

enum MHD_Result srv_handle_responses(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    char *chat = NULL;
    json_t *req = NULL;
    srv_error e;
    if (!srv_responses_request(body, len, &chat, &req, &e)) return srv_reply_error(s, c, &e);
    enum MHD_Result r = generate(s, c, SRV_CHAT, chat, strlen(chat), API_RESPONSES, req, NULL);
    free(chat);
    return r;
}

enum MHD_Result srv_handle_anthropic(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    char *chat = NULL;
    srv_error e;
    if (!srv_anthropic_request(body, len, false, &chat, &e)) return reply_error(s, c, API_ANTHROPIC, &e);
    enum MHD_Result r = generate(s, c, SRV_CHAT, chat, strlen(chat), API_ANTHROPIC, NULL, NULL);
    free(chat);
    return r;
}

enum MHD_Result srv_handle_anthropic_count(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    char *chat = NULL;
    srv_error e;
    srv_params p;
    loom_tokens t = {0};
    bool opened, ok = srv_anthropic_request(body, len, true, &chat, &e);
    bool parsed = ok && srv_parse_request(SRV_CHAT, chat, strlen(chat), 0, &p, &e);
    free(chat);
    ok = parsed && prompt_tokens(s, &p, 0, &t, &opened, &e);
    if (parsed) srv_params_free(&p);
    enum MHD_Result r = ok ? srv_reply_json(s, c, 200, json_pack("{s:i}", "input_tokens", (int)t.n))
                           : reply_error(s, c, API_ANTHROPIC, &e);
    loom_tokens_free(&t);
    return r;
}

/* ------------------------------------------------------------ tokens */

/* llama-server's {"content", "add_special", "parse_special"} and vLLM's
 * {"prompt", "add_special_tokens"} or {"messages"}. */
enum MHD_Result srv_handle_tokenize(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    srv_error e;
    json_t *o = srv_parse_body(body, len, &e);
    if (!o) return srv_reply_error(s, c, &e);
    json_t *text = json_object_get(o, "content");
    if (!text) text = json_object_get(o, "prompt");
    json_t *msgs = json_object_get(o, "messages");
    json_t *as = json_object_get(o, "add_special");
    if (!as) as = json_object_get(o, "add_special_tokens");
    json_t *ps = json_object_get(o, "parse_special");
    loom_tokens ids = {0};
    loom_strbuf rendered = {0};
    bool ok = true;
    if (json_is_array(msgs)) {
        ok = render_chat(s, msgs, json_object_get(o, "tools"), NULL, json_object_get(o, "chat_template_kwargs"), true,
                         &rendered, &e) &&
             tokenize(s, rendered.data ? rendered.data : "",
                      !loom_chat_prompt_has_bos(s->tmpl, rendered.data, rendered.len), true, &ids, &e);
    } else if (json_is_string(text)) {
        bool add = as ? json_is_true(as) : json_object_get(o, "content") ? false : true;
        ok = tokenize(s, json_string_value(text), add, ps ? json_is_true(ps) : true, &ids, &e);
    } else {
        ok = srv_fail(&e, 400, "invalid_request_error", "content", NULL,
                      "give the text as 'content' (or 'prompt'), or 'messages'");
    }
    json_decref(o);
    loom_strbuf_free(&rendered);
    if (!ok) {
        loom_tokens_free(&ids);
        return srv_reply_error(s, c, &e);
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < ids.n; i++) json_array_append_new(arr, json_integer(ids.ids[i]));
    json_t *r = json_pack("{s:o, s:i, s:i}", "tokens", arr, "count", (int)ids.n, "max_model_len", s->ctx_size);
    loom_tokens_free(&ids);
    return srv_reply_json(s, c, 200, r);
}

enum MHD_Result srv_handle_detokenize(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    srv_error e;
    json_t *o = srv_parse_body(body, len, &e);
    if (!o) return srv_reply_error(s, c, &e);
    json_t *t = json_object_get(o, "tokens");
    size_t n = json_array_size(t);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids), V = loom_tokenizer_n_vocab(s->tok);
    bool ok = ids && json_is_array(t);
    for (size_t i = 0; ok && i < n; i++) {
        json_t *v = json_array_get(t, i);
        ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < V;
        if (ok) ids[i] = (int32_t)json_integer_value(v);
    }
    json_decref(o);
    if (!ok) {
        free(ids);
        srv_fail(&e, 400, "invalid_request_error", "tokens", NULL, "'tokens' must be a list of token ids in 0..%d", V - 1);
        return srv_reply_error(s, c, &e);
    }
    loom_strbuf b = {0};
    loom_status st = loom_detokenize(s->tok, ids, n, false, &b);
    free(ids);
    json_t *r = NULL;
    if (!st) {
        json_t *text = srv_json_text(b.data ? b.data : "", b.len);
        r = json_pack("{s:O, s:o}", "content", text, "prompt", text);
    }
    loom_status_free(st);
    loom_strbuf_free(&b);
    return srv_reply_json(s, c, 200, r);
}

enum MHD_Result srv_handle_apply_template(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    srv_error e;
    json_t *o = srv_parse_body(body, len, &e);
    if (!o) return srv_reply_error(s, c, &e);
    json_t *msgs = json_object_get(o, "messages");
    loom_strbuf text = {0};
    bool agp = true;
    json_t *a = json_object_get(o, "add_generation_prompt");
    if (json_is_boolean(a)) agp = json_is_true(a);
    json_t *tools = json_object_get(o, "tools"), *kwargs = json_object_get(o, "chat_template_kwargs");
    bool ok = json_is_array(msgs) ? render_chat(s, msgs, json_is_array(tools) ? tools : NULL, NULL,
                                                json_is_object(kwargs) ? kwargs : NULL, agp, &text, &e)
                                  : srv_fail(&e, 400, "invalid_request_error", "messages", NULL, "'messages' is required");
    json_decref(o);
    if (!ok) {
        loom_strbuf_free(&text);
        return srv_reply_error(s, c, &e);
    }
    json_t *r = json_pack("{s:o}", "prompt", srv_json_text(text.data ? text.data : "", text.len));
    loom_strbuf_free(&text);
    return srv_reply_json(s, c, 200, r);
}
