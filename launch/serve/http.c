/*
 * launch/serve/http.c — libmicrohttpd: listening, reading bodies, routing,
 * authentication, and the endpoints that need no generation (/health,
 * /metrics, /v1/models).
 *
 * libmicrohttpd (Debian's libmicrohttpd-dev) because it is a small, kept C
 * library with the limits a public server needs built in (connections,
 * per-connection memory, timeouts) and a thread-per-connection mode in
 * which a handler may block while tokens arrive, so /health and /metrics
 * are answered on their own connections whatever the scheduler is doing.
 */
#define _GNU_SOURCE /* POLLRDHUP */
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "launch/serve/anthropic.h"
#include "launch/serve/native.h"
#include "launch/serve/server_internal.h"
#include "runtime/clock.h"

typedef struct {
    loom_strbuf body;
    bool too_large;
} conn_state;

/* ------------------------------------------------------------ replies */

enum MHD_Result srv_reply(srv *s, struct MHD_Connection *c, int status, char *body, const char *const *headers) {
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,"
                              "\"code\":null}}";
    struct MHD_Response *r;
    if (!body) {
        status = 500;
        r = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom, MHD_RESPMEM_PERSISTENT);
    } else {
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    }
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json");
    for (int i = 0; headers && headers[i]; i += 2) MHD_add_response_header(r, headers[i], headers[i + 1]);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    srv_metrics_http(&s->metrics, status);
    return ok;
}

enum MHD_Result srv_reply_json(srv *s, struct MHD_Connection *c, int status, json_t *j) {
    char *body = j ? srv_dump(j) : NULL;
    json_decref(j);
    return srv_reply(s, c, status, body, NULL);
}

static const char *const RETRY[] = {"Retry-After", "1", NULL};

enum MHD_Result srv_reply_error(srv *s, struct MHD_Connection *c, const srv_error *e) {
    return srv_reply(s, c, e->status, srv_error_json(e), e->status == 429 ? RETRY : NULL);
}

enum MHD_Result srv_reply_error_anthropic(srv *s, struct MHD_Connection *c, const srv_error *e) {
    return srv_reply(s, c, e->status, srv_anthropic_error_json(e), e->status == 429 ? RETRY : NULL);
}

bool srv_client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return false;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* ------------------------------------------------------------ plain endpoints */

static enum MHD_Result health(srv *s, struct MHD_Connection *c) {
    char reason[600] = "";
    pthread_mutex_lock(&s->mu);
    double now = loom_now_s();
    if (s->failed) snprintf(reason, sizeof reason, "the engine failed: %s", s->fail_msg);
    else if (!s->accepting) snprintf(reason, sizeof reason, "shutting down");
    else if (s->sched_pending > 0 && now - s->last_step > 30)
        snprintf(reason, sizeof reason, "the scheduler has not finished a step for %.0f s", now - s->last_step);
    pthread_mutex_unlock(&s->mu);
    double silence = loom_cluster_peer_silence(s->cluster), limit = loom_cluster_watchdog_timeout(s->cluster);
    if (!reason[0] && limit > 0 && silence > limit / 2)
        snprintf(reason, sizeof reason, "a rank has not answered its heartbeat for %.1f s", silence);
    if (reason[0]) return srv_reply_json(s, c, 503, json_pack("{s:s, s:s}", "status", "error", "reason", reason));
    return srv_reply_json(s, c, 200, json_pack("{s:s}", "status", "ok"));
}

static enum MHD_Result metrics(srv *s, struct MHD_Connection *c) {
    loom_strbuf b = {0};
    loom_status st = srv_metrics_render(&s->metrics, s->opt.model_name, &b);
    if (st || !b.data) {
        loom_status_free(st);
        loom_strbuf_free(&b);
        return srv_reply(s, c, 500, NULL, NULL);
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        loom_strbuf_free(&b);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    enum MHD_Result ok = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    srv_metrics_http(&s->metrics, 200);
    return ok;
}

/* The model, then each LoRA adapter as vLLM lists its --lora-modules: a
 * model whose "parent" is the base (a request's "model" selects it). */
static enum MHD_Result models(srv *s, struct MHD_Connection *c) {
    const json_int_t now = (json_int_t)time(NULL);
    json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", s->opt.model_name, "object", "model", "created", now,
                          "owned_by", "loom", "max_model_len", s->ctx_size);
    json_t *list = json_pack("[o]", m);
    for (int i = 0; i < s->n_lora; i++)
        json_array_append_new(list, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:i}", "id", s->lora_name[i], "object",
                                              "model", "created", now, "owned_by", "loom", "root",
                                              loom_engine_lora_path(s->e, i), "parent", s->opt.model_name,
                                              "max_model_len", s->ctx_size));
    return srv_reply_json(s, c, 200, json_pack("{s:s, s:o}", "object", "list", "data", list));
}

/* llama-server's GET /lora-adapters: [{id, path, scale}], the scales
 * requests without their own get; POST sets them from [{id, scale}] (the
 * adapters left out: 0) and answers {"success": true}. */
static enum MHD_Result lora_adapters(srv *s, struct MHD_Connection *c, bool post, const char *body, size_t len) {
    srv_error e;
    if (post) {
        json_error_t je;
        json_t *list = json_loadb(body ? body : "", len, 0, &je);
        int ids[SRV_MAX_LORA], n = 0;
        float scales[SRV_MAX_LORA];
        bool ok = list ? srv_parse_lora(list, "lora-adapters", ids, scales, &n, &e)
                       : srv_fail(&e, 400, "invalid_request_error", NULL, NULL, "the body is not valid JSON: %s", je.text);
        json_decref(list);
        for (int i = 0; ok && i < n; i++)
            if (ids[i] >= s->n_lora)
                ok = srv_fail(&e, 400, "invalid_request_error", NULL, NULL, "adapter %d: %d adapter%s loaded", ids[i],
                              s->n_lora, s->n_lora == 1 ? " is" : "s are");
        if (!ok) return srv_reply_error(s, c, &e);
        pthread_mutex_lock(&s->mu);
        for (int i = 0; i < s->n_lora; i++) s->lora[i] = 0;
        for (int i = 0; i < n; i++) s->lora[ids[i]] = scales[i];
        pthread_mutex_unlock(&s->mu);
        return srv_reply_json(s, c, 200, json_pack("{s:b}", "success", 1));
    }
    json_t *list = json_array();
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_lora; i++)
        json_array_append_new(list, json_pack("{s:i, s:s, s:f, s:s, s:s}", "id", i, "path", loom_engine_lora_path(s->e, i),
                                              "scale", (double)s->lora[i], "task_name",
                                              loom_lora_task_name(loom_engine_lora(s->e, i)), "prompt_prefix",
                                              loom_lora_prompt_prefix(loom_engine_lora(s->e, i))));
    pthread_mutex_unlock(&s->mu);
    return srv_reply_json(s, c, 200, list);
}

/* llama-server's GET /props (native.h). */
static enum MHD_Result props(srv *s, struct MHD_Connection *c) {
    const loom_gguf_value *t = loom_gguf_get(loom_cluster_model(s->cluster), "tokenizer.chat_template");
    char *tmpl = t && t->type == LOOM_GGUF_STRING ? strndup(t->v.str.ptr, t->v.str.len) : NULL;
    json_t *o = srv_native_props(s->opt.model_name, s->ctx_size, loom_engine_options_of(s->e)->max_seqs, tmpl);
    free(tmpl);
    return srv_reply_json(s, c, 200, o);
}

/* ------------------------------------------------------------ routing */

/* The key as OpenAI's clients send it ("Authorization: Bearer KEY") or
 * Anthropic's ("x-api-key: KEY"). */
static bool authorized(srv *s, struct MHD_Connection *c) {
    if (!s->opt.api_key) return true;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *x = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    if ((!h || strncmp(h, "Bearer ", 7) != 0) && !x) return false;
    const char *k = h && !strncmp(h, "Bearer ", 7) ? h + 7 : x, *want = s->opt.api_key;
    size_t n = strlen(want), m = strlen(k);
    unsigned diff = (unsigned)(n ^ m);
    for (size_t i = 0; i < n; i++) diff |= (unsigned)(want[i] ^ (i < m ? k[i] : 0)); /* time independent of where it differs */
    return diff == 0;
}

/* An error in the envelope of the endpoint's API (Anthropic's for /v1/messages). */
static enum MHD_Result reply_error_at(srv *s, struct MHD_Connection *c, const char *url, const srv_error *e) {
    return strncmp(url, "/v1/messages", 12) ? srv_reply_error(s, c, e) : srv_reply_error_anthropic(s, c, e);
}

static enum MHD_Result route(srv *s, struct MHD_Connection *c, const char *url, const char *method, const char *body,
                             size_t len) {
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    srv_error e;
    bool open_path = !strcmp(url, "/health") || !strcmp(url, "/v1/health") || !strcmp(url, "/metrics");
    if (open_path && !get) {
        srv_fail(&e, 405, "invalid_request_error", NULL, NULL, "%s takes GET", url);
        return srv_reply_error(s, c, &e);
    }
    if (open_path) return url[1] == 'm' ? metrics(s, c) : health(s, c); /* no key needed, never waits */
    if (!authorized(s, c)) {
        srv_fail(&e, 401, "invalid_request_error", NULL, "invalid_api_key",
                 "a valid API key is required: 'Authorization: Bearer <key>' or 'x-api-key: <key>'");
        return reply_error_at(s, c, url, &e);
    }
    if (!strcmp(url, "/lora-adapters")) {
        if (get || post) return lora_adapters(s, c, post, body, len);
        srv_fail(&e, 405, "invalid_request_error", NULL, NULL, "%s takes GET or POST", url);
        return srv_reply_error(s, c, &e);
    }
    struct {
        const char *path;
        bool post;
    } routes[] = {{"/v1/chat/completions", true}, {"/v1/completions", true}, {"/v1/responses", true},
                  {"/v1/messages", true},         {"/v1/models", false},     {"/tokenize", true},
                  {"/detokenize", true},          {"/apply-template", true}, {"/v1/embeddings", true},
                  {"/v1/messages/count_tokens", true}, {"/completion", true}, {"/completions", true},
                  {"/infill", true},              {"/props", false},         {"/rerank", true},
                  {"/v1/rerank", true},           {"/reranking", true},      {"/v1/reranking", true}};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(url, routes[i].path) != 0) continue;
        if (routes[i].post ? !post : !get) {
            srv_fail(&e, 405, "invalid_request_error", NULL, NULL, "%s takes %s", url, routes[i].post ? "POST" : "GET");
            return reply_error_at(s, c, url, &e);
        }
        if ((i <= 3 || (i >= 10 && i <= 12)) && srv_refuse_generation(s, &e)) return reply_error_at(s, c, url, &e);
        switch (i) {
        case 0: return srv_handle_generate(s, c, SRV_CHAT, body, len);
        case 1: return srv_handle_generate(s, c, SRV_COMPLETION, body, len);
        case 2: return srv_handle_responses(s, c, body, len);
        case 3: return srv_handle_anthropic(s, c, body, len);
        case 4: return models(s, c);
        case 5: return srv_handle_tokenize(s, c, body, len);
        case 6: return srv_handle_detokenize(s, c, body, len);
        case 7: return srv_handle_apply_template(s, c, body, len);
        case 9: return srv_handle_anthropic_count(s, c, body, len);
        case 10:
        case 11:
        case 12: return srv_handle_native(s, c, body, len, i == 12);
        case 13: return props(s, c);
        case 14:
        case 15:
        case 16:
        case 17: return srv_handle_rerank(s, c, body, len);
        default: return srv_handle_embeddings(s, c, body, len);
        }
    }
    srv_fail(&e, 404, "invalid_request_error", NULL, NULL, "no endpoint %s %s", method, url);
    return srv_reply_error(s, c, &e);
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                      const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) { /* headers are in; the body follows in later calls */
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!cs->too_large && cs->body.len + *upload_size <= (size_t)s->opt.max_body) {
            loom_status st = loom_strbuf_append(&cs->body, upload, *upload_size);
            if (st) {
                loom_status_free(st);
                cs->too_large = true;
            }
        } else {
            cs->too_large = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (cs->too_large) {
        srv_error e;
        srv_fail(&e, 413, "invalid_request_error", NULL, "request_too_large", "the request body is larger than %lld bytes",
                 (long long)s->opt.max_body);
        return srv_reply_error(s, c, &e);
    }
    return route(s, c, url, method, cs->body.data ? cs->body.data : "", cs->body.len);
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)c, (void)toe;
    conn_state *cs = *con_cls;
    if (!cs) return;
    loom_strbuf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

loom_status srv_http_start(srv *s) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->opt.port);
    int gai = getaddrinfo(s->opt.host, port, &hints, &ai);
    if (gai) return loom_error(LOOM_ERR_INVALID, "cannot listen on %s:%d: %s", s->opt.host, s->opt.port, gai_strerror(gai));
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, (uint16_t)s->opt.port, NULL, NULL, access_handler, s, MHD_OPTION_SOCK_ADDR,
                              ai->ai_addr, MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->opt.max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                              (size_t)64 * 1024, MHD_OPTION_NOTIFY_COMPLETED, completed, s, MHD_OPTION_LISTENING_ADDRESS_REUSE,
                              (unsigned)1, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->mhd) return loom_error(LOOM_ERR_IO, "cannot listen on %s:%d (address in use, or not an address of this machine)",
                                   s->opt.host, s->opt.port);
    return NULL;
}
