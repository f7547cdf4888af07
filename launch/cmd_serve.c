/*
 * launch/cmd_serve.c — `loom serve`: the OpenAI-compatible HTTP server on
 * the coordinator (launch/serve/), the worker loop on every other rank.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "launch/serve/server.h"
#include "parallel/cluster.h"
#include "runtime/threadpool.h"

int cmd_serve(int argc, char **argv) {
    const char *device_s = "auto";
    const char *model = NULL, *host = "127.0.0.1", *api_key = NULL, *name = NULL, *kv_type = "f16", *pid_file = NULL;
    int64_t port = 8080, threads = loom_cpu_count(), ctx = 4096, seqs = 16, batch = 256, tp = 1, pp = 1,
            max_queue = 256, max_body = 8 << 20, max_conn = 512, prefill_rows = 64, kv_blocks = 0;
    loom_draft_args da = loom_draft_args_defaults();
    double watchdog = 30, drain = 60;
    bool no_prefix = false, no_reasoning = false;
    static loom_lora_args lora; /* static: 8 KiB of paths */
    bool lora_off = false;
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model file (required; every rank opens its own copy)"},
        {"--host", LOOM_ARG_STR, &host, "ADDR", "address to listen on (0.0.0.0 or :: for every interface)"},
        {"--port", LOOM_ARG_INT, &port, "N", "TCP port"},
        {"--api-key", LOOM_ARG_STR, &api_key, "KEY", "require 'Authorization: Bearer KEY' (or $LOOM_API_KEY)"},
        {"--model-name", LOOM_ARG_STR, &name, "NAME", "the model id clients use (default: the file's base name)"},
        {"--threads", LOOM_ARG_INT, &threads, "N", "threads per rank"},
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "positions per sequence (prompt + generation)"},
        {"--sequences", LOOM_ARG_INT, &seqs, "N", "sequences running at once"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "rows per step at most (decode rows first, then prompt chunks)"},
        {"--prefill-rows", LOOM_ARG_INT, &prefill_rows, "N",
         "prompt rows per step while other sequences decode (bounds their inter-token stall); 0 = --batch"},
        {"--no-prefix-cache", LOOM_ARG_FLAG, &no_prefix, NULL, "do not reuse the KV blocks of earlier prompts"},
        LOOM_DRAFT_ARGS(da),
        {"--no-reasoning", LOOM_ARG_FLAG, &no_reasoning, NULL,
         "keep a thinking model's <think> blocks in the content (default: they become reasoning_content)"},
        {"--kv-type", LOOM_ARG_STR, &kv_type, "T", LOOM_KV_TYPE_HELP},
        {"--kv-blocks", LOOM_ARG_INT, &kv_blocks, "N",
         "KV cache blocks of 16 positions per rank (0: every sequence can fill its context); fewer admit\n"
         "more sequences than memory for all of them, preempting the newest when it runs out"},
        {"--max-queue", LOOM_ARG_INT, &max_queue, "N", "requests waiting for a sequence slot at most; then 429"},
        {"--max-body", LOOM_ARG_BYTES, &max_body, "BYTES", "request body size at most; then 413"},
        {"--max-connections", LOOM_ARG_INT, &max_conn, "N", "open HTTP connections at most"},
        {"--drain-timeout", LOOM_ARG_FLOAT, &drain, "S", "on SIGTERM, seconds running requests get to finish"},
        {"--pid-file", LOOM_ARG_STR, &pid_file, "PATH",
         "write the serving process's id here (under mpirun: rank 0's; send it SIGTERM to drain —\n"
         "mpirun itself ends the job at once on SIGTERM)"},
        LOOM_GRID_ARGS(tp, pp, watchdog),
        LOOM_LORA_ARGS(lora),
        {"--lora-init-without-apply", LOOM_ARG_FLAG, &lora_off, NULL,
         "load the LoRA adapters at scale 0 (set scales later with POST /lora-adapters or per request)"},
        LOOM_DEVICE_ARG(device_s),
    };
    loom_args_result ar = loom_args_parse(
        "serve --model PATH [--host 127.0.0.1] [--port 8080] [options]",
        "Serves the model over HTTP with OpenAI's API: POST /v1/chat/completions, /v1/completions,\n"
        "/v1/responses, and Anthropic's /v1/messages (streaming or not), GET /v1/models, POST\n"
        "/tokenize, /detokenize, /apply-template,\n"
        "GET /health, /metrics (Prometheus). Under mpirun -np N with --tp T --pp P the model is split\n"
        "across the ranks; rank 0 serves HTTP. SIGTERM stops accepting, finishes running requests, exits.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model) return loom_usage_error("serve: --model is required");
    if (port < 0 || port > 65535) return loom_usage_error("serve: --port must be 0..65535");
    if (threads < 1 || threads > 1024) return loom_usage_error("serve: --threads must be 1..1024");
    if (ctx < 2 || ctx > (1 << 24)) return loom_usage_error("serve: --ctx-size must be 2..16777216");
    if (seqs < 1 || seqs > 4096) return loom_usage_error("serve: --sequences must be 1..4096");
    if (batch < 1 || batch > 65536) return loom_usage_error("serve: --batch must be 1..65536");
    if (prefill_rows < 0 || prefill_rows > 65536) return loom_usage_error("serve: --prefill-rows must be 0..65536");
    if (kv_blocks < 0 || kv_blocks > (1 << 30)) return loom_usage_error("serve: --kv-blocks must be >= 0");
    if (max_queue < 1 || max_queue > (1 << 20)) return loom_usage_error("serve: --max-queue must be 1..1048576");
    if (max_body < 1024) return loom_usage_error("serve: --max-body must be at least 1K");
    if (max_conn < 1 || max_conn > 65536) return loom_usage_error("serve: --max-connections must be 1..65536");
    if (loom_grid_check("serve", tp, pp, watchdog)) return 2;
    if (loom_lora_options("serve", &lora, lora_off)) return 2;
    if (drain < 0) return loom_usage_error("serve: --drain-timeout must be >= 0");
    loom_type kvt;
    if (loom_parse_kv_type("serve", kv_type, &kvt)) return 2;
    loom_scheduler_options sched = {.prefill_rows = (int)prefill_rows};
    if (loom_draft_options("serve", &da, &sched)) return 2;
    if (!api_key) api_key = getenv("LOOM_API_KEY");
    if (api_key && !*api_key) api_key = NULL;
    if (!name) {
        const char *slash = strrchr(model, '/');
        name = slash ? slash + 1 : model;
    }

    /* before any thread exists, so that every thread inherits the mask: the
     * coordinator waits for the signals, the workers leave with the cluster */
    loom_server_block_signals();
    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.lora = lora.spec, co.n_lora = lora.n;
    co.engine.n_threads = (int)threads;
    co.engine.ctx_size = (int)ctx;
    co.engine.max_seqs = (int)seqs;
    co.engine.kv_type = kvt;
    co.engine.batch_rows = (int)batch;
    if (loom_parse_device("serve", device_s, &co.engine.device)) return 2;
    co.engine.prefix_cache = !no_prefix;
    co.engine.kv_blocks = (int)kv_blocks;
    loom_cluster *cluster = NULL;
    loom_status st = loom_cluster_start(&co, &cluster);
    if (st) return loom_fail("serve", st);
    bool coord = loom_cluster_is_coordinator(cluster);
    loom_engine *e = NULL;
    loom_progress prog;
    loom_progress_init(&prog, "loading model");
    st = loom_cluster_engine(cluster, NULL, coord ? loom_progress_update : NULL, &prog, &e);
    loom_progress_done(&prog);
    if (!st && loom_cluster_plan(cluster) && coord) loom_plan_print(loom_cluster_plan(cluster), stderr, false);
    int rc = 1;
    if (!st && coord) {
        loom_tokenizer *tok = NULL;
        loom_chat_template *tmpl = NULL;
        st = loom_draft_model_start(&da, e, loom_cluster_model(cluster), &sched);
        if (!st) st = loom_tokenizer_create(loom_cluster_model(cluster), &tok);
        if (!st) {
            loom_status ts = loom_chat_template_from_gguf(loom_cluster_model(cluster), tok, &tmpl);
            if (ts) fprintf(stderr, "loom serve: chat completions are off: %s\n", loom_status_message(ts));
            loom_status_free(ts);
            loom_print_config(stderr, model, loom_engine_model(e), loom_engine_options_of(e), tok);
            loom_server_options so = {.host = host, .port = (int)port, .api_key = api_key, .model_name = name,
                                      .max_queue = (int)max_queue, .max_body = max_body,
                                      .max_connections = (int)max_conn, .drain_timeout_s = drain,
                                      .sched = sched, .pid_file = pid_file,
                                      .no_reasoning = no_reasoning};
            st = loom_server_run(&so, cluster, e, tok, tmpl);
        }
        loom_chat_template_free(tmpl);
        loom_tokenizer_free(tok);
        if (st && loom_cluster_size(cluster) > 1) loom_cluster_abort(cluster, "serve", st);
        if (!st) st = loom_engine_shutdown(e);
        if (!st) rc = 0;
    } else if (!st) {
        st = loom_engine_work(e);
        if (st) loom_cluster_abort(cluster, "serve", st);
        rc = 0;
    }
    if (st) rc = loom_fail("serve", st);
    loom_drafter_free(sched.drafter);
    loom_engine_free(e);
    loom_cluster_free(cluster);
    return rc;
}
