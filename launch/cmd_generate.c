/*
 * launch/cmd_generate.c — `loom generate`: text from one prompt, or from many
 * (one per line of --prompt-file) run concurrently.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "runtime/text/chat.h"
#include "runtime/text/grammar.h"
#include "runtime/text/json_schema.h"
#include "launch/commands.h"
#include "parallel/cluster.h"
#include "parallel/engine.h"
#include "parallel/run.h"
#include "runtime/kernels.h"
#include "launch/launch_util.h"
#include "runtime/threadpool.h"
#include "runtime/text/tokenizer.h"

typedef struct {
    const loom_tokenizer *tok;
    int n;
    loom_utf8_stream *streams; /* (n) */
    loom_strbuf *texts;        /* (n) decoded completion of each sequence */
    bool stream_stdout;        /* print sequence 0 as it is generated */
    loom_status err;           /* first allocation failure in a callback */
} gen_out;

static bool is_eog(void *user, int32_t token) { return loom_tokenizer_is_eog(((gen_out *)user)->tok, token); }

static void on_token(void *user, uint64_t req, int32_t token, const loom_token_logprobs *lp) {
    (void)lp;
    gen_out *o = user;
    size_t len;
    const char *piece = loom_token_piece(o->tok, token, false, &len);
    size_t before = o->texts[req].len;
    loom_status st = loom_utf8_stream_push(&o->streams[req], piece, len, &o->texts[req]);
    if (st && !o->err) o->err = st;
    else loom_status_free(st);
    if (o->stream_stdout && o->texts[req].len > before) {
        fwrite(o->texts[req].data + before, 1, o->texts[req].len - before, stdout);
        fflush(stdout);
    }
}

/* Prompts of a file, one per line; "\n", "\t" and "\\" in a line stand for
 * a newline, a tab and a backslash. Empty lines are skipped. */
static loom_status read_prompts(const char *path, char ***out, int *n) {
    loom_strbuf file = {0};
    LOOM_TRY(loom_read_file(path, &file));
    char **v = NULL;
    int count = 0, cap = 0;
    char *p = file.data, *end = file.data + file.len;
    while (p < end) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *le = nl ? nl : end;
        if (le > p && le[-1] == '\r') le--;
        if (le > p) {
            char *s = malloc((size_t)(le - p) + 1), *d = s;
            if (!s) break;
            for (char *q = p; q < le; q++) {
                if (*q == '\\' && q + 1 < le && (q[1] == 'n' || q[1] == 't' || q[1] == '\\')) {
                    *d++ = q[1] == 'n' ? '\n' : q[1] == 't' ? '\t' : '\\';
                    q++;
                } else {
                    *d++ = *q;
                }
            }
            *d = 0;
            if (count == cap) {
                cap = cap ? 2 * cap : 16;
                v = realloc(v, sizeof *v * (size_t)cap);
            }
            v[count++] = s;
        }
        p = nl ? nl + 1 : end;
    }
    loom_strbuf_free(&file);
    if (count == 0) {
        free(v);
        return loom_error(LOOM_ERR_INVALID, "%s: no prompts (one prompt per non-empty line)", path);
    }
    *out = v;
    *n = count;
    return NULL;
}

/* What the coordinator reads before the cluster is planned: the prompts,
 * which also size the engine (one sequence per prompt, at most 64, unless
 * --sequences says otherwise). */
typedef struct {
    const char *prompt, *prompt_file;
    char **prompts; /* (n) */
    int n;
} gen_job;

static loom_status read_prompts_job(void *user, const loom_gguf *g, loom_engine_options *eo) {
    (void)g;
    gen_job *j = user;
    if (j->prompt_file) {
        LOOM_TRY(read_prompts(j->prompt_file, &j->prompts, &j->n));
    } else {
        j->prompts = malloc(sizeof *j->prompts);
        if (j->prompts) j->prompts[0] = strdup(j->prompt);
        if (!j->prompts || !j->prompts[0]) {
            free(j->prompts);
            j->prompts = NULL;
            return loom_error(LOOM_ERR_NOMEM, "out of memory");
        }
        j->n = 1;
    }
    if (eo->max_seqs <= 0) eo->max_seqs = j->n < 64 ? j->n : 64;
    return NULL;
}

static void print_json(FILE *f, int idx, const char *prompt, const loom_tokens *ids, const loom_result *r,
                       const loom_strbuf *text, uint64_t seed) {
    loom_strbuf b = {0};
    loom_status st = NULL;
    char num[64];
#define PUT(s) (st = st ? st : loom_strbuf_append(&b, (s), strlen(s)))
    snprintf(num, sizeof num, "{\"index\":%d,\"prompt\":", idx);
    PUT(num);
    if (!st) st = loom_json_escape(prompt, strlen(prompt), &b);
    PUT(",\"prompt_tokens\":[");
    for (size_t i = 0; i < ids->n; i++) {
        snprintf(num, sizeof num, "%s%d", i ? "," : "", ids->ids[i]);
        PUT(num);
    }
    PUT("],\"tokens\":[");
    for (int i = 0; i < r->n_tokens; i++) {
        snprintf(num, sizeof num, "%s%d", i ? "," : "", r->tokens[i]);
        PUT(num);
    }
    PUT("],\"text\":");
    if (!st) st = loom_json_escape(text->data ? text->data : "", text->len, &b);
    PUT(",\"stop_reason\":");
    if (!st) st = loom_json_escape(r->stop_reason, strlen(r->stop_reason), &b);
    if (r->error) {
        PUT(",\"error\":");
        if (!st) st = loom_json_escape(r->error, strlen(r->error), &b);
    }
    double gen_tps = r->gen_ms > 0 && r->n_tokens > 1 ? (r->n_tokens - 1) / (r->gen_ms / 1e3) : 0;
    double pr_tps = r->prompt_ms > 0 ? (double)ids->n / (r->prompt_ms / 1e3) : 0;
    snprintf(num, sizeof num, ",\"seed\":%llu", (unsigned long long)seed);
    PUT(num);
    char tim[256];
    snprintf(tim, sizeof tim,
             ",\"timings\":{\"prompt_ms\":%.3f,\"gen_ms\":%.3f,\"prompt_tokens_per_s\":%.2f,\"gen_tokens_per_s\":%.2f}}",
             r->prompt_ms, r->gen_ms, pr_tps, gen_tps);
    PUT(tim);
#undef PUT
    if (!st) fprintf(f, "%s\n", b.data);
    else loom_status_free(st);
    loom_strbuf_free(&b);
}

/* Everything rank 0 does once the engine exists: tokenize, run, print. */
static loom_status coordinate(loom_engine *e, const loom_gguf *g, const char *model, char **prompts, int n, bool chat,
                              const char *chat_template, bool parse_special, const char *system, int max_tokens,
                              loom_sampling_params sp, bool ignore_eos, bool json, const loom_scheduler_options *sched,
                              int *rc) {
    loom_tokenizer *tok = NULL;
    loom_request *reqs = calloc((size_t)n, sizeof *reqs);
    loom_result *res = calloc((size_t)n, sizeof *res);
    loom_tokens *ids = calloc((size_t)n, sizeof *ids);
    gen_out out = {0};
    out.n = n;
    out.streams = calloc((size_t)n, sizeof *out.streams);
    out.texts = calloc((size_t)n, sizeof *out.texts);
    loom_status st = NULL;
    if (!reqs || !res || !ids || !out.streams || !out.texts) st = loom_error(LOOM_ERR_NOMEM, "out of memory for %d prompts", n);
    if (!st) st = loom_tokenizer_create(g, &tok);
    loom_chat_template *tmpl = NULL;
    if (!st && chat) st = loom_load_chat_template(g, tok, chat_template, &tmpl);
    loom_strbuf formatted = {0};
    for (int i = 0; i < n && !st; i++) {
        const char *text = prompts[i];
        bool add_special = true;
        if (chat) {
            loom_chat_msg msgs[2];
            size_t nm = 0;
            if (system) msgs[nm++] = (loom_chat_msg){"system", system};
            msgs[nm++] = (loom_chat_msg){"user", text};
            loom_strbuf_clear(&formatted);
            st = loom_chat_format(tmpl, msgs, nm, true, &formatted);
            if (st) break;
            text = formatted.data;
            add_special = !loom_chat_prompt_has_bos(tmpl, text, strlen(text)); /* the template wrote BOS */
        }
        /* special-token text (e.g. "<|im_start|>") becomes its token, as llama.cpp and HF tokenizers do */
        st = loom_tokenize(tok, text, strlen(text), add_special, chat || parse_special, &ids[i]);
        if (!st && ids[i].n == 0) st = loom_error(LOOM_ERR_INVALID, "prompt %d is empty after tokenization", i);
        reqs[i] = (loom_request){.prompt = ids[i].ids, .n_prompt = (int)ids[i].n, .max_tokens = max_tokens, .sampling = sp, .ignore_eos = ignore_eos};
    }
    loom_run_stats stats;
    if (!st) {
        loom_print_config(stderr, model, loom_engine_model(e), loom_engine_options_of(e), tok);
        out.tok = tok;
        out.stream_stdout = !json && n == 1;
        if (out.stream_stdout) {
            fputs(prompts[0], stdout);
            fflush(stdout);
        }
        loom_callbacks cb = {.on_token = on_token, .is_eog = is_eog, .user = &out};
        st = loom_engine_run(e, reqs, n, &cb, sched, res, &stats);
        if (!st) st = out.err;
        out.err = NULL;
    }
    for (int i = 0; i < n && !st; i++) st = loom_utf8_stream_flush(&out.streams[i], &out.texts[i]);
    if (!st) {
        if (out.stream_stdout) fputs("\n", stdout);
        *rc = 0;
        for (int i = 0; i < n; i++) {
            if (json) print_json(stdout, i, prompts[i], &ids[i], &res[i], &out.texts[i], sp.seed);
            else if (!out.stream_stdout) printf("[%d] %s%s\n", i, prompts[i], out.texts[i].data ? out.texts[i].data : "");
            if (res[i].error) {
                fprintf(stderr, "loom generate: prompt %d: %s\n", i, res[i].error);
                *rc = 1;
            }
        }
        fflush(stdout);
        double pps = stats.prefill_s > 0 ? stats.prompt_tokens / stats.prefill_s : 0;
        double gps = stats.decode_s > 0 ? stats.decode_tokens / stats.decode_s : 0;
        fprintf(stderr,
                "\nprompt:     %6lld tokens in %8.3f s  %9.2f tokens/s\n"
                "generation: %6lld tokens in %8.3f s  %9.2f tokens/s   (%s, %d sequence%s)\n",
                (long long)stats.prompt_tokens, stats.prefill_s, pps, (long long)stats.decode_tokens, stats.decode_s,
                gps, n == 1 ? res[0].stop_reason : "done", n, n == 1 ? "" : "s");
        if (stats.draft_tokens > 0 || stats.draft_model_s > 0) {
            fprintf(stderr, "speculation: %lld tokens proposed, %lld of them the model's own (%.1f %%)",
                    (long long)stats.draft_tokens, (long long)stats.draft_accepted,
                    stats.draft_tokens ? 100.0 * (double)stats.draft_accepted / (double)stats.draft_tokens : 0.0);
            if (stats.draft_model_s > 0) fprintf(stderr, "; the draft model took %.3f s of it", stats.draft_model_s);
            fputc('\n', stderr);
        }
        if (loom_engine_options_of(e) && (stats.comm_s > 0 || stats.transfer_s > 0))
            fprintf(stderr, "rank 0 communication: %.3f s in TP collectives, %.3f s in stage transfers\n", stats.comm_s,
                    stats.transfer_s);
    }
    for (int i = 0; i < n; i++) {
        if (res) loom_result_free(&res[i]);
        if (ids) loom_tokens_free(&ids[i]);
        if (out.texts) loom_strbuf_free(&out.texts[i]);
    }
    free(reqs);
    free(res);
    free(ids);
    free(out.streams);
    free(out.texts);
    loom_strbuf_free(&formatted);
    loom_chat_template_free(tmpl);
    loom_tokenizer_free(tok);
    return st;
}

int cmd_generate(int argc, char **argv) {
    const char *device_s = "auto";
    const char *grammar = NULL, *grammar_file = NULL, *regex = NULL;
    const char *model = NULL, *schema_file = NULL, *prompt = NULL, *prompt_file = NULL, *kv_type = "f16", *system = NULL, *chat_template = NULL;
    loom_sampling_args sa = loom_sampling_args_defaults();
    int64_t max_tokens = 128, threads = loom_cpu_count(), ctx = 4096, seqs = 0,
            batch = 256, tp = 1, pp = 1;
    loom_draft_args da = loom_draft_args_defaults();
    double watchdog = 30;
    bool chat = false, ignore_eos = false, json = false, no_parse_special = false;
    static loom_lora_args lora; /* static: 8 KiB of paths */
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF model file (required; every rank opens its own copy)"},
        {"--prompt", LOOM_ARG_STR, &prompt, "TEXT", "the prompt"},
        {"--prompt-file", LOOM_ARG_STR, &prompt_file, "PATH", "prompts, one per line (\\n, \\t, \\\\ escapes); run concurrently"},
        {"--max-tokens", LOOM_ARG_INT, &max_tokens, "N", "tokens to generate per prompt at most"},
        LOOM_SAMPLING_ARGS(sa, "sampling seed; -1 = from the clock (printed with --json)"),
        {"--threads", LOOM_ARG_INT, &threads, "N", "threads per rank (default: the CPUs this process may use)"},
        {"--ctx-size", LOOM_ARG_INT, &ctx, "N", "positions per sequence (prompt + generation)"},
        {"--sequences", LOOM_ARG_INT, &seqs, "N", "sequences running at once (default: all prompts, at most 64)"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "rows per forward pass at most (prefill chunk)"},
        {"--kv-type", LOOM_ARG_STR, &kv_type, "T", LOOM_KV_TYPE_HELP},
        LOOM_DRAFT_ARGS(da),
        LOOM_GRID_ARGS(tp, pp, watchdog),
        LOOM_LORA_ARGS(lora),
        LOOM_DEVICE_ARG(device_s),
        {"--chat", LOOM_ARG_FLAG, &chat, NULL, "format the prompt with the model's chat template"},
        {"--system", LOOM_ARG_STR, &system, "TEXT", "system message for --chat"},
        {"--chat-template", LOOM_ARG_STR, &chat_template, "FILE", "with --chat: this Jinja template instead of the model's"},
        {"--no-parse-special", LOOM_ARG_FLAG, &no_parse_special, NULL,
         "tokenize special-token text in the prompt (e.g. <|im_start|>) as plain text"},
        {"--ignore-eos", LOOM_ARG_FLAG, &ignore_eos, NULL, "do not stop at end-of-generation tokens"},
        {"--json-schema", LOOM_ARG_STR, &schema_file, "FILE",
         "structured output: every reply is a document this JSON schema accepts ('object': any JSON object)"},
        {"--grammar", LOOM_ARG_STR, &grammar, "GBNF", "structured output: every reply is text this GBNF grammar derives"},
        {"--grammar-file", LOOM_ARG_STR, &grammar_file, "FILE", "--grammar, read from a file"},
        {"--regex", LOOM_ARG_STR, &regex, "RE", "structured output: every reply matches this regular expression whole"},
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print one JSON object per sequence instead of text"},
    };
    loom_args_result ar = loom_args_parse(
        "generate --model PATH (--prompt TEXT | --prompt-file PATH) [options]",
        "Generates text. The completion streams to stdout; prompt and generation speeds go to\n"
        "stderr. With --prompt-file every line is a prompt and all run concurrently. Under\n"
        "mpirun -np N, --tp T --pp P (T x P = N) split the model across the ranks.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model) return loom_usage_error("generate: --model is required");
    if (chat_template && !chat) return loom_usage_error("generate: --chat-template needs --chat");
    if (!prompt == !prompt_file) return loom_usage_error("generate: give exactly one of --prompt and --prompt-file");
    if (max_tokens < 0 || max_tokens > (1 << 24)) return loom_usage_error("generate: --max-tokens must be 0..16777216");
    if (threads < 1 || threads > 1024) return loom_usage_error("generate: --threads must be 1..1024");
    if (ctx < 1 || ctx > (1 << 24)) return loom_usage_error("generate: --ctx-size must be 1..16777216");
    if (batch < 1 || batch > 65536) return loom_usage_error("generate: --batch must be 1..65536");
    if (seqs < 0 || seqs > 4096) return loom_usage_error("generate: --sequences must be 0..4096");
    if (loom_grid_check("generate", tp, pp, watchdog)) return 2;
    if (loom_lora_options("generate", &lora, false)) return 2;
    loom_type kvt;
    if (loom_parse_kv_type("generate", kv_type, &kvt)) return 2;
    loom_scheduler_options sched = {0};
    if (loom_draft_options("generate", &da, &sched)) return 2;
    loom_sampling_params sp;
    int bad = loom_sampling_from_args("generate", &sa, &sp);
    if (bad) return bad;
    if (!!schema_file + !!grammar + !!grammar_file + !!regex > 1)
        return loom_usage_error("generate: give one of --json-schema, --grammar, --grammar-file and --regex");
    loom_status st = NULL;
    loom_strbuf schema = {0}; /* read and checked here; every rank's sampler compiles what the steps carry */
    if (grammar || grammar_file || regex) {
        if (grammar || regex) st = loom_strbuf_append(&schema, grammar ? grammar : regex, strlen(grammar ? grammar : regex));
        else st = loom_read_file(grammar_file, &schema);
        loom_grammar *g = NULL;
        if (!st) st = regex ? loom_grammar_compile_regex(schema.data, schema.len, &g)
                            : loom_grammar_compile(schema.data, schema.len, &g);
        loom_grammar_free(g);
        if (st) {
            loom_strbuf_free(&schema);
            return loom_fail("generate", grammar ? loom_error_wrap(st, "--grammar")
                                         : regex ? loom_error_wrap(st, "--regex")
                                                 : loom_error_wrap(st, "--grammar-file %s", grammar_file));
        }
        sp.grammar = schema.data;
        sp.grammar_regex = regex != NULL;
    } else if (schema_file && !strcmp(schema_file, "object")) {
        sp.json_object = true;
    } else if (schema_file) {
        loom_json_schema *js = NULL;
        st = loom_read_file(schema_file, &schema);
        if (!st) st = loom_json_schema_compile(schema.data, schema.len, &js);
        loom_json_schema_free(js);
        if (st) {
            loom_strbuf_free(&schema);
            return loom_fail("generate", loom_error_wrap(st, "--json-schema %s", schema_file));
        }
        sp.json_schema = schema.data;
    }

    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.lora = lora.spec, co.n_lora = lora.n;
    co.engine.n_threads = (int)threads;
    co.engine.ctx_size = (int)ctx;
    co.engine.max_seqs = (int)seqs; /* 0: set from the number of prompts in prepare */
    co.engine.kv_type = kvt;
    co.engine.batch_rows = (int)batch;
    if (loom_parse_device("generate", device_s, &co.engine.device)) return 2;
    gen_job job = {prompt, prompt_file, NULL, 0};
    co.prepare = read_prompts_job;
    co.prepare_user = &job;

    loom_cluster *cluster = NULL;
    st = loom_cluster_start(&co, &cluster);
    if (st) {
        loom_strbuf_free(&schema);
        return loom_fail("generate", st);
    }
    int rc = 1;
    loom_engine *e = NULL;
    bool coord = loom_cluster_is_coordinator(cluster);
    loom_progress prog;
    loom_progress_init(&prog, "loading model");
    st = loom_cluster_engine(cluster, NULL, coord ? loom_progress_update : NULL, &prog, &e);
    loom_progress_done(&prog);
    if (!st && loom_cluster_plan(cluster)) {
        if (coord) loom_plan_print(loom_cluster_plan(cluster), stderr, false);
        loom_cluster_report_memory(cluster, stderr);
    }
    if (!st) {
        /* from here on a failure anywhere must not leave ranks waiting */
        if (coord) {
            st = loom_draft_model_start(&da, e, loom_cluster_model(cluster), &sched);
            if (!st)
                st = coordinate(e, loom_cluster_model(cluster), model, job.prompts, job.n, chat, chat_template,
                                !no_parse_special, system, (int)max_tokens, sp, ignore_eos, json, &sched, &rc);
        } else {
            st = loom_engine_work(e);
        }
        if (st && loom_cluster_size(cluster) > 1) loom_cluster_abort(cluster, "generate", st);
        if (!st && coord) st = loom_engine_shutdown(e);
        if (!coord && !st) rc = 0;
    }
    if (st) rc = loom_fail("generate", st);
    for (int i = 0; i < job.n; i++) free(job.prompts[i]);
    free(job.prompts);
    loom_drafter_free(sched.drafter);
    loom_engine_free(e);
    loom_cluster_free(cluster);
    loom_strbuf_free(&schema);
    return rc;
}
