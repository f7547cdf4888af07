/*
 * launch/serve/server_internal.h — what the server's files share: the
 * server state, a request as the scheduler thread and an HTTP thread both
 * see it, and the functions that cross between server.c (the scheduler
 * thread and the life of the server), http.c (routing and the plain
 * endpoints) and completions.c (the generation endpoints).
 *
 * Locking: one mutex (srv->mu) guards the queue, the list of active
 * requests and every srv_req field marked "shared". Each request has a
 * condition variable its HTTP thread waits on; the scheduler thread waits
 * on srv->work.
 */
#ifndef LOOM_SERVE_INTERNAL_H
#define LOOM_SERVE_INTERNAL_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "launch/serve/metrics.h"
#include "launch/serve/openai.h"
#include "launch/serve/server.h"
#include "parallel/scheduler.h"

typedef struct srv_req srv_req;
typedef struct srv_embed_job srv_embed_job; /* embeddings.c */

struct srv_req {
    /* set before queueing, then read-only */
    loom_request r;            /* r.prompt points at prompt */
    int32_t *prompt;           /* (r.n_prompt) */
    char *schema;              /* r.sampling.json_schema's text, or NULL */
    char *grammar;             /* r.sampling.grammar's text, or NULL */
    char **dry_breakers;       /* r.sampling.dry_breakers, or NULL */
    int32_t *bias_token;       /* r.sampling's logit bias, or NULL */
    float *bias_value;
    int32_t *pred;             /* r.prediction, or NULL */
    float lora[SRV_MAX_LORA];  /* r.lora: its adapters' scales (the server's when the request gave none) */
    double t_arrive;
    /* shared */
    uint64_t id;               /* the scheduler's, once submitted */
    bool submitted, cancel, done;
    int32_t *toks;             /* (cap) generated ids */
    float *lp;                 /* (cap) log-probability of each, when asked */
    int32_t *top_ids;          /* (cap, top) alternatives */
    float *top_lp;             /* (cap, top) */
    int n, cap, top;
    char finish[16];           /* "stop", "length", "cancelled", "error" */
    int draft_tokens, draft_accepted; /* speculative decoding's proposals for it, the model's own among them */
    int n_cached;              /* prompt tokens the prefix cache held (from the scheduler's end of it) */
    double prompt_ms;          /* admission to the first token (the scheduler's), 0 when it did not say */
    char *error;
    double t_first, t_last;
    int refs;                  /* HTTP side + scheduler side */
    pthread_cond_t cv;
    srv_req *next;             /* queue link */
};

typedef struct {
    loom_server_options opt;
    loom_cluster *cluster;
    loom_engine *e;
    const loom_tokenizer *tok;
    const loom_chat_template *tmpl;
    bool harmony;              /* the template writes gpt-oss's harmony format (harmony.h) */
    uint8_t *keep;             /* (vocabulary) or NULL: control tokens rendered into the text anyway, the markers
                                * of the template's reasoning and tool-call formats the parsers read (llama-server's
                                * preserved tokens) */
    loom_scheduler *sched;
    int ctx_size;
    struct MHD_Daemon *mhd;
    pthread_t sched_thread;
    pthread_mutex_t mu;
    pthread_cond_t work;       /* the scheduler thread waits here */
    srv_req *queue_head, *queue_tail; /* shared: not yet submitted */
    int n_queued;
    srv_req **active;          /* shared: submitted, not finished */
    int n_active, cap_active;
    int sched_waiting;         /* shared: submitted, waiting for admission */
    int sched_pending;         /* shared: submitted, waiting or running */
    int http_jobs;             /* shared: generation requests an HTTP thread is serving */
    bool accepting;            /* shared: false once shutdown began */
    bool stop_sched;           /* shared: the scheduler thread ends */
    bool failed;               /* shared: the engine failed */
    char fail_msg[512];
    double last_step;          /* shared: when the scheduler last finished a step */
    uint64_t seed_counter;     /* shared */
    double last_report;        /* scheduler thread: when the ranks' figures were last asked for */
    double *figures;           /* scheduler thread: (world, 4) */
    srv_metrics metrics;
    srv_embed_job *embed_head, *embed_tail; /* shared: embedding jobs for the scheduler thread */
    /* LoRA adapters (engine.h): the scales of requests that give none (shared: POST /lora-adapters sets
     * them), and the names requests select one by ("model", as vLLM's --lora-modules: the file's stem) */
    float lora[SRV_MAX_LORA];
    char lora_name[SRV_MAX_LORA][64];
    int n_lora;
} srv;

/* ---- server.c ---- */

/* A request of n_prompt tokens with the given parameters, refs = 1 (the
 * caller's); NULL when out of memory. */
srv_req *srv_req_new(const int32_t *prompt, int n_prompt, const loom_request *r);
/* Drops one reference (takes srv->mu). */
void srv_req_unref(srv *s, srv_req *q);
/* Queues q for the scheduler (takes a reference). Fails with 429 when the
 * queue is full, 503 when the server is stopping or failed. */
bool srv_submit(srv *s, srv_req *q, srv_error *e);
/* The adapter named `name` ("model" of a request), or -1. */
int srv_lora_by_name(const srv *s, const char *name);
/* Asks the scheduler to end q (no-op when done). */
void srv_cancel(srv *s, srv_req *q);
/* A fresh seed for a request without one. */
uint64_t srv_next_seed(srv *s);

/* ---- embeddings.c ---- */

/* POST /v1/embeddings. */
enum MHD_Result srv_handle_embeddings(srv *s, struct MHD_Connection *c, const char *body, size_t len);
enum MHD_Result srv_handle_rerank(srv *s, struct MHD_Connection *c, const char *body, size_t len);
/* Scheduler thread, s->mu held (released while computing): runs the queued embedding jobs. */
void srv_embed_run(srv *s);
/* s->mu held: ends the queued embedding jobs with an error. */
void srv_embed_fail_all(srv *s, const char *why);
/* For an encoder model, fills e (400) and returns true: it generates no text. */
bool srv_refuse_generation(srv *s, srv_error *e);

/* A prompt's log-probabilities (completions' echo): lp[i] is the
 * log-probability of token i after tokens 0..i-1 (lp[0] NaN: nothing comes
 * before it), top_ids / top_lp (n, top) the `top` likeliest tokens there
 * (row 0 unset). Owned by the caller (srv_prompt_lp_free). */
typedef struct {
    float *lp;
    int32_t *top_ids;
    float *top_lp;
} srv_prompt_lp;
/* Scores ids (n) through the cluster on the scheduler thread, between its
 * steps (the pipeline is drained first), like an embedding job, and waits.
 * Fails with 503 when the KV cache has no room for it now or the server
 * stops, 500 when the engine fails. */
bool srv_score_prompt(srv *s, const int32_t *ids, int n, int top, srv_prompt_lp *out, srv_error *e);
void srv_prompt_lp_free(srv_prompt_lp *p);

/* ---- completions.c ---- */

/* POST /v1/chat/completions and /v1/completions. */
enum MHD_Result srv_handle_generate(srv *s, struct MHD_Connection *c, srv_kind kind, const char *body, size_t len);
/* POST /v1/responses (responses.h), /v1/messages (anthropic.h). */
enum MHD_Result srv_handle_responses(srv *s, struct MHD_Connection *c, const char *body, size_t len);
enum MHD_Result srv_handle_anthropic(srv *s, struct MHD_Connection *c, const char *body, size_t len);
/* POST /v1/messages/count_tokens: the prompt's tokens as the template renders it. */
enum MHD_Result srv_handle_anthropic_count(srv *s, struct MHD_Connection *c, const char *body, size_t len);
/* POST /completion, /completions, /infill (native.h). */
enum MHD_Result srv_handle_native(srv *s, struct MHD_Connection *c, const char *body, size_t len, bool infill);
/* POST /tokenize, /detokenize, /apply-template. */
enum MHD_Result srv_handle_tokenize(srv *s, struct MHD_Connection *c, const char *body, size_t len);
enum MHD_Result srv_handle_detokenize(srv *s, struct MHD_Connection *c, const char *body, size_t len);
enum MHD_Result srv_handle_apply_template(srv *s, struct MHD_Connection *c, const char *body, size_t len);

/* ---- http.c ---- */

loom_status srv_http_start(srv *s) LOOM_MUST_USE;
/* Queues a JSON response (takes ownership of body, a malloc'd string;
 * NULL: out of memory, answered 500) with extra headers (name, value
 * pairs, NULL-terminated). */
enum MHD_Result srv_reply(srv *s, struct MHD_Connection *c, int status, char *body, const char *const *headers);
enum MHD_Result srv_reply_json(srv *s, struct MHD_Connection *c, int status, json_t *j); /* steals j */
enum MHD_Result srv_reply_error(srv *s, struct MHD_Connection *c, const srv_error *e);
/* The same in Anthropic's envelope (/v1/messages). */
enum MHD_Result srv_reply_error_anthropic(srv *s, struct MHD_Connection *c, const srv_error *e);
/* Whether the client of c has closed its connection. */
bool srv_client_gone(struct MHD_Connection *c);

#endif
