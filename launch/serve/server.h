/*
 * launch/serve/server.h — `loom serve`: an OpenAI-compatible HTTP server on
 * the coordinator.
 *
 * Threads (DESIGN.md, "Serving"):
 *   - HTTP: libmicrohttpd, one thread per connection. It reads the body
 *     (at most max_body bytes: 413), checks the API key (401), parses and
 *     validates the request completely — JSON, parameters, chat template,
 *     tokenization, context length — and only then queues it (429 when the
 *     waiting queue is full). It streams tokens out as they arrive (SSE),
 *     holding back text that may start a stop string, and watches its
 *     socket: a client that goes away has its request cancelled within one
 *     scheduler step. /health and /metrics are answered here without
 *     waiting for the scheduler.
 *   - scheduler: the only thread that touches engine state. Each round it
 *     takes new requests and cancellations, then runs one
 *     loom_scheduler_step(); its callbacks append tokens to per-request
 *     buffers and wake the HTTP threads.
 * The other ranks of the cluster run loom_engine_work() meanwhile.
 *
 * loom_server_run() returns when SIGTERM or SIGINT arrives (the server
 * stops accepting, lets running requests finish, then returns) or when the
 * engine failed (an error).
 */
#ifndef LOOM_SERVE_SERVER_H
#define LOOM_SERVE_SERVER_H

#include <stdint.h>

#include "parallel/cluster.h"
#include "parallel/engine.h"
#include "parallel/scheduler.h"
#include "runtime/text/chat.h"
#include "runtime/text/tokenizer.h"

typedef struct {
    const char *host;          /* address to listen on, e.g. "127.0.0.1", "::", "0.0.0.0" */
    int port;
    const char *api_key;       /* NULL: no authentication */
    const char *model_name;    /* the id clients send as "model" and /v1/models lists */
    int max_queue;             /* requests waiting for admission at most (then 429) */
    int64_t max_body;          /* request body bytes at most (then 413) */
    int max_connections;
    double drain_timeout_s;    /* at shutdown, running requests get this long to finish */
    loom_scheduler_options sched; /* prompt rows per step while others decode, speculative decoding */
    const char *pid_file;      /* written once listening, removed at exit; NULL: none */
    bool no_reasoning;         /* keep <think> blocks and harmony analysis messages in the content
                                  (no reasoning_content) */
} loom_server_options;

/* Serves until a shutdown signal; the engine, tokenizer and template (may
 * be NULL: chat requests then get an error) are borrowed. The caller blocks
 * SIGTERM and SIGINT in every thread before calling (loom_server_block_signals). */
loom_status loom_server_run(const loom_server_options *o, loom_cluster *cluster, loom_engine *e,
                            const loom_tokenizer *tok, const loom_chat_template *tmpl) LOOM_MUST_USE;

/* Blocks SIGTERM and SIGINT in the calling thread (and the threads it
 * creates later) so that loom_server_run() can wait for them. */
void loom_server_block_signals(void);

#endif
