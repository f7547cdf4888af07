/*
 * launch/cmd_chat.c — `loom chat`: a conversation on the terminal (or on
 * stdin from a script) with the model's chat template, on one rank or a
 * cluster (rank 0 reads and writes, the other ranks work). Each turn
 * renders the whole conversation; the prefix cache finds the blocks of
 * earlier turns, so a turn computes about its own tokens only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "parallel/cluster.h"
#include "parallel/run.h"
#include "runtime/text/chat.h"
#include "runtime/threadpool.h"

typedef struct {
    const loom_tokenizer *tok;
    loom_utf8_stream u;
    loom_strbuf reply;
    loom_status err;
} chat_out;

static bool chat_eog(void *user, int32_t token) { return loom_tokenizer_is_eog(((chat_out *)user)->tok, token); }

static void chat_token(void *user, uint64_t id, int32_t token, const loom_token_logprobs *lp) {
    (void)id, (void)lp;
    chat_out *o = user;
    if (loom_tokenizer_is_eog(o->tok, token)) return; /* the end marker is not part of the reply */
    size_t len, before = o->reply.len;
    const char *piece = loom_token_piece(o->tok, token, false, &len);
    loom_status st = loom_utf8_stream_push(&o->u, piece, len, &o->reply);
    if (st && !o->err) o->err = st;
    else loom_status_free(st);
    fwrite(o->reply.data + before, 1, o->reply.len - before, stdout);
    fflush(stdout);
}

/* One turn of the user: a line, continued while it ends with a backslash.
 * Returns false at the end of the input. */
static bool read_turn(loom_strbuf *turn) {
    loom_strbuf_clear(turn);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    bool any = false;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        any = true;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        const bool more = n > 0 && line[n - 1] == '\\';
        loom_status_free(loom_strbuf_append(turn, line, (size_t)(more ? n - 1 : n)));
        if (!more) break;
        loom_status_free(loom_strbuf_append(turn, "\n", 1));
    }
    free(line);
    return any;
}

typedef struct {
    char **role, **content;
    size_t n, cap;
} history;

static void history_clear(history *h, size_t keep) {
    for (size_t i = keep; i < h->n; i++) free(h->role[i]), free(h->content[i]);
    h->n = keep;
}

static loom_status history_add(history *h, const char *role, const char *content, size_t len) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 16;
        char **r = realloc(h->role, cap * sizeof *r), **c = r ? realloc(h->content, cap * sizeof *c) : NULL;
        if (r) h->role = r;
        if (c) h->content = c;
        if (!r || !c) return loom_error(LOOM_ERR_NOMEM, "out of memory for the conversation");
        h->cap = cap;
    }
    h->role[h->n] = strdup(role);
    h->content[h->n] = strndup(content, len);
    if (!h->role[h->n] || !h->content[h->n]) return loom_error(LOOM_ERR_NOMEM, "out of memory for the conversation");
    h->n++;
    return NULL;
}

static loom_status converse(loom_engine *e, const loom_gguf *g, const char *chat_template, const char *system,
                            int max_tokens, loom_sampling_params sp, const loom_scheduler_options *sched) {
    loom_tokenizer *tok = NULL;
    loom_chat_template *tmpl = NULL;
    LOOM_TRY(loom_tokenizer_create(g, &tok));
    loom_status st = NULL;
    st = loom_load_chat_template(g, tok, chat_template, &tmpl);
    if (st && !chat_template)
        st = loom_error_wrap(st, "the model has no usable chat template (give --chat-template, or use loom generate)");
    history h = {0};
    if (!st && system) st = history_add(&h, "system", system, strlen(system));
    const size_t keep = h.n;
    const bool tty = isatty(0) && isatty(1);
    if (!st && tty) fprintf(stderr, "loom chat: a line is a turn (end it with \\ to go on), /clear forgets, /exit or Ctrl-D ends\n");
    loom_strbuf turn = {0}, prompt = {0};
    chat_out out = {.tok = tok};
    for (int n_turn = 0; !st; n_turn++) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        if (!read_turn(&turn)) break;
        const char *t = turn.data ? turn.data : "";
        if (!strcmp(t, "/exit")) break;
        if (!strcmp(t, "/clear")) {
            history_clear(&h, keep);
            fprintf(stderr, "(the conversation is forgotten)\n");
            continue;
        }
        if (!turn.len) continue;
        st = history_add(&h, "user", t, turn.len);
        loom_chat_msg *msgs = st ? NULL : calloc(h.n, sizeof *msgs);
        if (!st && !msgs) st = loom_error(LOOM_ERR_NOMEM, "out of memory for the conversation");
        for (size_t i = 0; msgs && i < h.n; i++) msgs[i] = (loom_chat_msg){h.role[i], h.content[i]};
        loom_strbuf_clear(&prompt);
        if (!st) st = loom_chat_format(tmpl, msgs, h.n, true, &prompt);
        free(msgs);
        loom_tokens ids = {0};
        if (!st) st = loom_tokenize(tok, prompt.data, prompt.len, !loom_chat_prompt_has_bos(tmpl, prompt.data, prompt.len),
                                    true, &ids);
        if (st) break;
        loom_request rq = {.prompt = ids.ids, .n_prompt = (int)ids.n, .max_tokens = max_tokens, .sampling = sp};
        rq.sampling.seed = sp.seed + (uint64_t)n_turn; /* each turn its own draws */
        loom_callbacks cb = {.on_token = chat_token, .is_eog = chat_eog, .user = &out};
        loom_result res;
        loom_run_stats rs;
        loom_utf8_stream_init(&out.u);
        loom_strbuf_clear(&out.reply);
        st = loom_engine_run(e, &rq, 1, &cb, sched, &res, &rs);
        if (!st) st = out.err;
        out.err = NULL;
        if (!st) st = loom_utf8_stream_flush(&out.u, &out.reply);
        if (!st && res.error) { /* this turn cannot run (the conversation outgrew the context): say so, go on */
            fprintf(stderr, "loom chat: %s (/clear starts over)\n", res.error);
            history_clear(&h, h.n - 1);
        } else if (!st) {
            fputs("\n", stdout);
            fflush(stdout);
            st = history_add(&h, "assistant", out.reply.data ? out.reply.data : "", out.reply.len);
            double tps = res.gen_ms > 0 && res.n_tokens > 1 ? (res.n_tokens - 1) / (res.gen_ms / 1e3) : 0;
            fprintf(stderr, "[%d tokens, %.1f tokens/s, %s; prompt %d tokens, %lld computed, the rest cached]\n",
                    res.n_tokens, tps, res.stop_reason, rq.n_prompt, (long long)rs.prompt_tokens);
        }
        loom_result_free(&res);
        loom_tokens_free(&ids);
    }
    history_clear(&h, 0);
    free(h.role);
    free(h.content);
    loom_strbuf_free(&turn);
    loom_strbuf_free(&prompt);
    loom_strbuf_free(&out.reply);
    loom_chat_template_free(tmpl);
    loom_tokenizer_free(tok);
    return st;
}

int cmd_chat(int argc, char **argv) {
    const char *device_s = "auto";
    const char *model = NULL, *kv_type = "f16", *system = NULL, *chat_template = NULL;
    loom_sampling_args sa = loom_sampling_args_defaults();
    int64_t max_tokens = 1024, threads = loom_cpu_count(), ctx = 4096, tp = 1, pp = 1;
    loom_draft_args da = loom_draft_args_defaults();
    double watchdog = 30;
    static loom_lora_args lora; /* static: 8 KiB of paths */
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model file (required; every rank opens its own copy)"},
        {"--system", LOOM_ARG_STR, &system, "TEXT", "the system message"},
        {"--chat-template", LOOM_ARG_STR, &chat_template, "FILE", "this Jinja template instead of the model's"},
        {"--max-tokens", LOOM_ARG_INT, &max_tokens, "N", "tokens per reply at most"},
        LOOM_SAMPLING_ARGS(sa, "sampling seed (turn i draws from seed + i); -1 = from the clock"),
        {"--threads", LOOM_ARG_INT, &threads, "N", "threads per rank (default: the CPUs this process may use)"},
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "positions of the conversation"},
        {"--kv-type", LOOM_ARG_STR, &kv_type, "T", LOOM_KV_TYPE_HELP},
        LOOM_DRAFT_ARGS(da),
        LOOM_GRID_ARGS(tp, pp, watchdog),
        LOOM_LORA_ARGS(lora),
        LOOM_DEVICE_ARG(device_s),
    };
    loom_args_result ar = loom_args_parse(
        "chat --model PATH [options]",
        "A conversation with the model through its chat template: each line on stdin is a turn\n"
        "(end a line with \\ to go on), the reply streams to stdout, its speed to stderr. /clear\n"
        "forgets the conversation, /exit or the end of the input ends it. Earlier turns come from\n"
        "the prefix cache. Under mpirun -np N, --tp T --pp P (T x P = N) split the model.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model) return loom_usage_error("chat: --model is required");
    if (max_tokens < 1 || max_tokens > (1 << 24)) return loom_usage_error("chat: --max-tokens must be 1..16777216");
    if (threads < 1 || threads > 1024) return loom_usage_error("chat: --threads must be 1..1024");
    if (ctx < 2 || ctx > (1 << 24)) return loom_usage_error("chat: --ctx-size must be 2..16777216");
    if (loom_grid_check("chat", tp, pp, watchdog)) return 2;
    if (loom_lora_options("chat", &lora, false)) return 2;
    loom_type kvt;
    if (loom_parse_kv_type("chat", kv_type, &kvt)) return 2;
    loom_scheduler_options sched = {0};
    if (loom_draft_options("chat", &da, &sched)) return 2;
    loom_sampling_params sp;
    int bad = loom_sampling_from_args("chat", &sa, &sp);
    if (bad) return bad;

    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.lora = lora.spec, co.n_lora = lora.n;
    co.engine.n_threads = (int)threads;
    co.engine.ctx_size = (int)ctx;
    co.engine.max_seqs = 1;
    co.engine.kv_type = kvt;
    co.engine.prefix_cache = true;
    if (loom_parse_device("chat", device_s, &co.engine.device)) return 2;
    loom_cluster *cluster = NULL;
    loom_status st = loom_cluster_start(&co, &cluster);
    if (st) return loom_fail("chat", st);
    bool coord = loom_cluster_is_coordinator(cluster);
    loom_engine *e = NULL;
    loom_progress prog;
    loom_progress_init(&prog, "loading model");
    st = loom_cluster_engine(cluster, NULL, coord ? loom_progress_update : NULL, &prog, &e);
    loom_progress_done(&prog);
    int rc = 1;
    if (!st) {
        if (coord) {
            st = loom_draft_model_start(&da, e, loom_cluster_model(cluster), &sched);
            if (!st) st = converse(e, loom_cluster_model(cluster), chat_template, system, (int)max_tokens, sp, &sched);
        } else {
            st = loom_engine_work(e);
        }
        if (st && loom_cluster_size(cluster) > 1) loom_cluster_abort(cluster, "chat", st);
        if (!st && coord) st = loom_engine_shutdown(e);
        if (!st) rc = 0;
    }
    if (st) rc = loom_fail("chat", st);
    loom_drafter_free(sched.drafter);
    loom_engine_free(e);
    loom_cluster_free(cluster);
    return rc;
}
