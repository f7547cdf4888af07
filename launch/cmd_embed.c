/*
 * launch/cmd_embed.c — `loom embed`: sentence embeddings of an encoder model
 * (bert, nomic-bert) or a decoder converted as one (a pooling type in its GGUF:
 * Qwen3-Embedding), on one rank or a cluster (--tp --pp under mpirun).
 *
 * Each text (--text, repeatable by a file of one text per line) is
 * tokenized as the model says (BOS/CLS and EOS/SEP when it adds them),
 * encoded in one batch (every token sees every other), pooled as the GGUF
 * says (<arch>.pooling_type; --pooling overrides) and scaled to unit length
 * unless --no-normalize. Output: one line of numbers per text, or with
 * --json {"model": ..., "pooling": ..., "data": [{"index": i, "tokens": n,
 * "embedding": [...]}, ...]}. Pooling "none" gives every token's vector
 * ("embedding" is then a list of lists).
 *
 * A reranker (rank pooling) with --query instead scores each text as a
 * document for the query, the pair built as llama-server builds it
 * (loom_tokenize_rerank): one score a line (its labels' outputs, where it
 * has several), or with --json {"model", "query", "data": [{"index",
 * "tokens", "score", "scores"}, ...]} in the texts' order.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launch/args.h"
#include "launch/commands.h"
#include "launch/launch_util.h"
#include "parallel/cluster.h"
#include "parallel/engine.h"
#include "runtime/pooling.h"
#include "runtime/threadpool.h"
#include "runtime/text/tokenizer.h"

/* Appends a float array (%.9g: round-trips): a JSON array, or numbers separated by spaces. */
static loom_status put_vec(loom_strbuf *b, const float *v, int n, bool json) {
    char num[32];
    if (json) LOOM_TRY(loom_strbuf_append(b, "[", 1));
    for (int d = 0; d < n; d++) {
        int k = snprintf(num, sizeof num, "%s%.9g", d ? (json ? "," : " ") : "", (double)v[d]);
        LOOM_TRY(loom_strbuf_append(b, num, (size_t)k));
    }
    return json ? loom_strbuf_append(b, "]", 1) : NULL;
}

typedef struct {
    const char *text, *file;
    char **texts; /* (n) */
    int n;
} embed_job;

/* Texts: --text, or the lines of --file (empty lines skipped). */
static loom_status read_texts(embed_job *j) {
    if (j->text) {
        j->texts = malloc(sizeof *j->texts);
        if (!j->texts || !(j->texts[0] = strdup(j->text))) return loom_error(LOOM_ERR_NOMEM, "out of memory");
        j->n = 1;
        return NULL;
    }
    loom_strbuf f = {0};
    LOOM_TRY(loom_read_file(j->file, &f));
    int cap = 0;
    loom_status st = NULL;
    for (char *p = f.data, *end = f.data + f.len; p < end && !st;) {
        char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
        if (le > p && le[-1] == '\r') le--;
        if (le > p) {
            if (j->n == cap) {
                cap = cap ? 2 * cap : 16;
                char **v = realloc(j->texts, sizeof *v * (size_t)cap);
                if (!v) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
                else j->texts = v;
            }
            if (!st && !(j->texts[j->n] = strndup(p, (size_t)(le - p)))) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
            if (!st) j->n++;
        }
        p = nl ? nl + 1 : end;
    }
    loom_strbuf_free(&f);
    if (!st && j->n == 0) st = loom_error(LOOM_ERR_INVALID, "%s: no texts (one per non-empty line)", j->file);
    return st;
}

/* A reranker's scores of each text as a document for the query. */
static loom_status rerank(loom_engine *e, const loom_gguf *g, const char *model, const embed_job *j, const char *query,
                          bool json) {
    const loom_model_config *c = loom_engine_model(e);
    const int W = c->n_cls_out, R = loom_engine_options_of(e)->batch_rows;
    loom_tokenizer *tok = NULL;
    loom_tokens ids = {0};
    loom_strbuf out = {0};
    float *rows = malloc(sizeof(float) * (size_t)R * W);
    loom_status st = rows ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) st = loom_tokenizer_create(g, &tok);
    loom_str tm;
    const bool has_tmpl = loom_gguf_get_str(g, "tokenizer.chat_template.rerank", &tm);
    const char *name = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    if (!st && json) {
        st = loom_strbuf_append(&out, "{\"model\":", 9);
        if (!st) st = loom_json_escape(name, strlen(name), &out);
        if (!st) st = loom_strbuf_append(&out, ",\"query\":", 9);
        if (!st) st = loom_json_escape(query, strlen(query), &out);
        if (!st) st = loom_strbuf_append(&out, ",\"data\":[", 9);
    }
    for (int i = 0; i < j->n && !st; i++) {
        ids.n = 0;
        st = loom_tokenize_rerank(tok, has_tmpl ? tm.ptr : NULL, has_tmpl ? (size_t)tm.len : 0, query, strlen(query),
                                  j->texts[i], strlen(j->texts[i]), &ids);
        if (!st && (ids.n == 0 || (int)ids.n > R))
            st = loom_error(LOOM_ERR_INVALID, "the query with text %d is %zu tokens (1..%d: --batch)", i, ids.n, R);
        if (!st) st = loom_engine_score(e, ids.ids, (int)ids.n, rows);
        if (st) break;
        const float *v = rows + (size_t)(c->bidirectional ? 0 : ids.n - 1) * W; /* a decoder's: the last row */
        char head[96];
        int k = json ? snprintf(head, sizeof head, "%s{\"index\":%d,\"tokens\":%zu,\"score\":%.9g,\"scores\":", i ? "," : "",
                                i, ids.n, (double)v[0])
                     : 0;
        if (k) st = loom_strbuf_append(&out, head, (size_t)k);
        if (!st) st = put_vec(&out, v, W, json);
        if (!st) st = loom_strbuf_append(&out, json ? "}" : "\n", 1);
    }
    if (!st && json) st = loom_strbuf_append(&out, "]}\n", 3);
    if (!st && (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0))
        st = loom_error(LOOM_ERR_IO, "cannot write to stdout");
    loom_strbuf_free(&out);
    loom_tokens_free(&ids);
    loom_tokenizer_free(tok);
    free(rows);
    return st;
}

static loom_status coordinate(loom_engine *e, const loom_gguf *g, const char *model, const embed_job *j,
                              loom_pooling pool, bool normalize, bool json) {
    const loom_model_config *c = loom_engine_model(e);
    const int dim = c->dim, R = loom_engine_options_of(e)->batch_rows;
    loom_tokenizer *tok = NULL;
    loom_tokens ids = {0};
    loom_strbuf out = {0};
    float *hidden = malloc(sizeof(float) * (size_t)R * dim), *vec = malloc(sizeof(float) * (size_t)dim);
    loom_status st = hidden && vec ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory");
    if (!st) st = loom_tokenizer_create(g, &tok);
    const char *name = strrchr(model, '/') ? strrchr(model, '/') + 1 : model;
    if (!st && json) {
        st = loom_strbuf_append(&out, "{\"model\":", 9);
        if (!st) st = loom_json_escape(name, strlen(name), &out);
        char head[96];
        int k = snprintf(head, sizeof head, ",\"pooling\":\"%s\",\"normalized\":%s,\"data\":[", loom_pooling_name(pool),
                         normalize ? "true" : "false");
        if (!st) st = loom_strbuf_append(&out, head, (size_t)k);
    }
    /* every text's tokens, then as many texts a step as its rows and slots hold (loom_engine_score_texts) */
    int32_t **tk = calloc((size_t)(j->n > 0 ? j->n : 1), sizeof *tk);
    int *tn = calloc((size_t)(j->n > 0 ? j->n : 1), sizeof *tn);
    if (!st && (!tk || !tn)) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
    for (int i = 0; i < j->n && !st; i++) {
        ids.n = 0;
        st = loom_tokenize(tok, j->texts[i], strlen(j->texts[i]), true, true, &ids);
        if (!st && ids.n == 0) st = loom_error(LOOM_ERR_INVALID, "text %d is empty after tokenization", i);
        if (!st && !(tk[i] = malloc(ids.n * sizeof(int32_t)))) st = loom_error(LOOM_ERR_NOMEM, "out of memory");
        if (!st) memcpy(tk[i], ids.ids, ids.n * sizeof(int32_t)), tn[i] = (int)ids.n;
    }
    for (int i1 = 0, off = 0, i = 0; i < j->n && !st; i++, off += tn[i - 1]) {
        if (i == i1) { /* the next step's texts */
            i1 = i + loom_engine_step_texts(e, tn + i, j->n - i);
            st = loom_engine_score_texts(e, (const int32_t *const *)tk + i, tn + i, i1 - i, hidden);
            off = 0;
            if (st) break;
        }
        const int n = tn[i];
        float *h0 = hidden + (size_t)off * dim;
        if (json) {
            char head[64];
            int k = snprintf(head, sizeof head, "%s{\"index\":%d,\"tokens\":%d,\"embedding\":", i ? "," : "", i, n);
            st = loom_strbuf_append(&out, head, (size_t)k);
        }
        if (pool == LOOM_POOL_NONE) {
            if (json && !st) st = loom_strbuf_append(&out, "[", 1);
            for (int t = 0; t < n && !st; t++) {
                float *h = h0 + (size_t)t * dim;
                if (normalize) loom_embedding_normalize(h, dim);
                if (json && t) st = loom_strbuf_append(&out, ",", 1);
                if (!st) st = put_vec(&out, h, dim, json);
                if (!json && !st) st = loom_strbuf_append(&out, "\n", 1);
            }
            if (json && !st) st = loom_strbuf_append(&out, "]", 1);
        } else {
            loom_embedding_pool(pool, h0, n, dim, normalize, vec);
            if (!st) st = put_vec(&out, vec, dim, json);
        }
        if (!st && (json || pool != LOOM_POOL_NONE)) st = loom_strbuf_append(&out, json ? "}" : "\n", 1);
    }
    if (!st && json) st = loom_strbuf_append(&out, "]}\n", 3);
    if (!st) {
        if (fwrite(out.data, 1, out.len, stdout) != out.len || fflush(stdout) != 0)
            st = loom_error(LOOM_ERR_IO, "cannot write to stdout");
    }
    loom_strbuf_free(&out);
    loom_tokens_free(&ids);
    loom_tokenizer_free(tok);
    for (int i = 0; tk && i < j->n; i++) free(tk[i]);
    free(tk), free(tn);
    free(hidden);
    free(vec);
    return st;
}

int cmd_embed(int argc, char **argv) {
    const char *model = NULL, *text = NULL, *file = NULL, *pooling = NULL, *query = NULL;
    int64_t threads = loom_cpu_count(), batch = 512, tp = 1, pp = 1;
    double watchdog = 30;
    bool json = false, no_normalize = false;
    const loom_arg args[] = {
        {"--model", LOOM_ARG_STR, &model, "PATH", "GGUF embedding model (bert, nomic-bert, or a decoder with a pooling type; every rank opens its own copy)"},
        {"--text", LOOM_ARG_STR, &text, "TEXT", "the text to embed"},
        {"--file", LOOM_ARG_STR, &file, "PATH", "texts to embed, one per line"},
        {"--pooling", LOOM_ARG_STR, &pooling, "P", "none, mean, cls or last (default: the model's pooling_type)"},
        {"--query", LOOM_ARG_STR, &query, "TEXT", "a reranker: score each text as a document for this query"},
        {"--no-normalize", LOOM_ARG_FLAG, &no_normalize, NULL, "keep the pooled vector's length (default: unit L2)"},
        {"--json", LOOM_ARG_FLAG, &json, NULL, "print one JSON object instead of lines of numbers"},
        {"--threads", LOOM_ARG_INT, &threads, "N", "threads per rank"},
        {"--batch", LOOM_ARG_INT, &batch, "N", "tokens of one text at most (a text is encoded in one batch)"},
        LOOM_GRID_ARGS(tp, pp, watchdog),
    };
    loom_args_result ar = loom_args_parse(
        "embed --model PATH (--text TEXT | --file PATH) [--pooling P | --query TEXT] [--json]",
        "Prints the embedding of each text by an embedding model (bert, nomic-bert, or a decoder\n"
        "with a pooling type, as Qwen3-Embedding): the last layer's hidden states (a decoder's after\n"
        "its output norm) pooled as the model says, scaled to unit length. A reranker (rank pooling)\n"
        "with --query: each text's score as a document for the query.",
        args, (int)(sizeof args / sizeof args[0]), argc, argv);
    if (ar != LOOM_ARGS_OK) return ar == LOOM_ARGS_HELP ? 0 : 2;
    if (!model) return loom_usage_error("embed: --model is required");
    if (!text == !file) return loom_usage_error("embed: give exactly one of --text and --file");
    if (threads < 1 || threads > 1024) return loom_usage_error("embed: --threads must be 1..1024");
    if (batch < 1 || batch > 65536) return loom_usage_error("embed: --batch must be 1..65536");
    if (loom_grid_check("embed", tp, pp, watchdog)) return 2;
    loom_pooling pool = LOOM_POOL_MEAN;
    if (pooling && !loom_pooling_parse(pooling, &pool))
        return loom_usage_error("embed: --pooling must be none, mean, cls or last");

    embed_job job = {text, file, NULL, 0};
    loom_status st = read_texts(&job);
    if (st) return loom_fail("embed", st);
    loom_cluster_options co = {.model = model, .tp = (int)tp, .pp = (int)pp, .watchdog_timeout_s = watchdog};
    co.engine = loom_engine_defaults();
    co.engine.n_threads = (int)threads;
    co.engine.ctx_size = (int)batch;
    co.engine.max_seqs = 16; /* texts a step at most (with --batch rows; coordinate) */
    co.engine.batch_rows = (int)batch;
    co.engine.kv_type = LOOM_TYPE_F32;
    loom_cluster *cluster = NULL;
    st = loom_cluster_start(&co, &cluster);
    int rc = 1;
    loom_engine *e = NULL;
    if (!st) st = loom_cluster_engine(cluster, NULL, NULL, NULL, &e);
    if (!st && !loom_engine_model(e)->encoder)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is a %s model without a pooling type, not an embedding model: use "
                        "loom generate",
                        model, loom_engine_model(e)->arch_name);
    const bool ranks = !st && loom_engine_model(e)->pooling == LOOM_POOL_RANK;
    if (ranks && !query)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is a reranker (pooling type rank): it scores documents for a query "
                        "(--query), not embeddings", model);
    if (!st && !ranks && query)
        st = loom_error(LOOM_ERR_UNSUPPORTED, "%s is not a reranker (no rank pooling): --query needs one", model);
    if (!st && ranks && pooling) st = loom_error(LOOM_ERR_INVALID, "--pooling does not apply to a reranker");
    if (!st) {
        bool coord = loom_cluster_is_coordinator(cluster);
        if (!pooling) pool = loom_engine_model(e)->pooling;
        if (coord && ranks) st = rerank(e, loom_cluster_model(cluster), model, &job, query, json);
        else if (coord) st = coordinate(e, loom_cluster_model(cluster), model, &job, pool, !no_normalize, json);
        else st = loom_engine_work(e);
        if (st && loom_cluster_size(cluster) > 1) loom_cluster_abort(cluster, "embed", st);
        if (!st && coord) st = loom_engine_shutdown(e);
        if (!st) rc = 0;
    }
    if (st) rc = loom_fail("embed", st);
    for (int i = 0; i < job.n; i++) free(job.texts[i]);
    free(job.texts);
    loom_engine_free(e);
    loom_cluster_free(cluster);
    return rc;
}
