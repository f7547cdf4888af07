/*
 * launch/serve/embeddings.c — POST /v1/embeddings (OpenAI's shape) for
 * embedding models (bert, nomic-bert, decoders with a pooling type).
 *
 * Request: {"input": a string, a list of strings, a list of token ids, or a
 * list of such lists (at most SRV_MAX_PROMPTS inputs), "model",
 * "encoding_format": "float" (default) or "base64" (little-endian float32,
 * what OpenAI's Python client asks for), "dimensions": the model's width if
 * given}. Response: {"object": "list", "data": [{"object": "embedding",
 * "index": i, "embedding": [...] or "..."}], "model", "usage":
 * {"prompt_tokens", "total_tokens"}}. Embeddings are pooled as the model
 * says (mean for a model that declares none) and have unit length.
 *
 * The HTTP thread tokenizes and checks everything, then queues a job that
 * the scheduler thread runs between scheduler steps (srv_embed_run: it is
 * the only thread that touches the engine) and waits for it. Generation
 * requests are refused for encoders (srv_refuse_generation), so nothing
 * else runs through the engine meanwhile. The jobs queued share steps, as
 * llama-server's slots and vLLM's pooling batches do: each step takes as
 * many inputs as its rows and slots hold, every job's next input first,
 * jobs that arrive joining at the next step, and a job is answered as soon
 * as its last input is done.
 *
 * The same queue scores prompts for completions' echo (srv_score_prompt):
 * the scheduler's micro-batches in flight are collected first, then the
 * prompt goes through the spare KV slot a chunk of rows at a time, each
 * chunk's logits reduced to the next token's log-probability and the top
 * alternatives before the next (a row's full logits never pile up).
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "launch/serve/server_internal.h"
#include "runtime/pooling.h"
#include "runtime/sampler.h"

struct srv_embed_job {
    int n;
    int32_t **ids;   /* (n) token ids of each input */
    int *n_ids;      /* (n) */
    float *out;      /* (n, dim) pooled, normalised */
    int top;         /* >= 0: a prompt to score (n 1) with `top` alternatives a position, into lp */
    int taken;       /* scheduler thread: inputs done (they are taken in order) */
    int in_step;     /* scheduler thread: inputs in the step being built (gather) */
    srv_prompt_lp *lp;
    bool done;       /* shared */
    char *error;     /* shared: set with done on failure */
    loom_code code;  /* shared: the error's */
    pthread_cond_t cv;
    srv_embed_job *next;
};

static void job_free(srv_embed_job *j) {
    if (!j) return;
    for (int i = 0; i < j->n; i++) free(j->ids ? j->ids[i] : NULL);
    free(j->ids);
    free(j->n_ids);
    free(j->out);
    free(j->error);
    pthread_cond_destroy(&j->cv);
    free(j);
}

bool srv_refuse_generation(srv *s, srv_error *e) {
    const loom_model_config *c = loom_engine_model(s->e);
    if (!c->encoder) return false;
    return !srv_fail(e, 400, "invalid_request_error", "model", NULL,
                     "%s is an embedding model (%s): it makes embeddings (POST /v1/embeddings), not text", s->opt.model_name,
                     c->arch_name);
}

/* One input: text to tokenize, or a list of token ids. */
static bool add_input(srv *s, json_t *in, int i, srv_embed_job *j, srv_error *e) {
    const int V = loom_tokenizer_n_vocab(s->tok), limit = loom_engine_options_of(s->e)->batch_rows;
    if (json_is_string(in)) {
        loom_tokens t = {0};
        loom_status st = loom_tokenize(s->tok, json_string_value(in), json_string_length(in), true, false, &t);
        if (st) {
            srv_fail(e, 500, "server_error", NULL, NULL, "tokenizing input %d: %s", i, loom_status_message(st));
            loom_status_free(st);
            return false;
        }
        j->ids[i] = t.ids, j->n_ids[i] = (int)t.n;
    } else {
        size_t n = json_array_size(in);
        j->ids[i] = malloc((n ? n : 1) * sizeof(int32_t));
        if (!j->ids[i]) return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
        for (size_t k = 0; k < n; k++) {
            json_t *v = json_array_get(in, k);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= V)
                return srv_fail(e, 400, "invalid_request_error", "input", NULL,
                                "input %d: token ids must be integers in 0..%d", i, V - 1);
            j->ids[i][k] = (int32_t)json_integer_value(v);
        }
        j->n_ids[i] = (int)n;
    }
    if (j->n_ids[i] < 1) return srv_fail(e, 400, "invalid_request_error", "input", NULL, "input %d is empty", i);
    if (j->n_ids[i] > limit)
        return srv_fail(e, 400, "invalid_request_error", "input", "context_length_exceeded",
                        "input %d has %d tokens; this server encodes at most %d (--batch)", i, j->n_ids[i], limit);
    return true;
}

/* The inputs of a request as a job (not yet queued). */
static srv_embed_job *parse(srv *s, json_t *o, bool *b64, srv_error *e) {
    json_t *input = json_object_get(o, "input"), *fmt = json_object_get(o, "encoding_format");
    json_t *dims = json_object_get(o, "dimensions");
    const int dim = loom_engine_model(s->e)->dim;
    *b64 = false;
    if (fmt && !json_is_null(fmt)) {
        if (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "float") && strcmp(json_string_value(fmt), "base64")))
            return srv_fail(e, 400, "invalid_request_error", "encoding_format", NULL,
                            "'encoding_format' must be \"float\" or \"base64\""), NULL;
        *b64 = !strcmp(json_string_value(fmt), "base64");
    }
    if (dims && !json_is_null(dims) && (!json_is_integer(dims) || json_integer_value(dims) != dim))
        return srv_fail(e, 400, "invalid_request_error", "dimensions", NULL, "this model's embeddings have %d dimensions",
                        dim), NULL;
    /* a string, ids, or a list of either */
    bool one = json_is_string(input) || (json_is_array(input) && json_array_size(input) > 0 &&
                                         json_is_integer(json_array_get(input, 0)));
    int n = one ? 1 : (int)json_array_size(input);
    if (!one && (!json_is_array(input) || n == 0))
        return srv_fail(e, 400, "invalid_request_error", "input", NULL,
                        "'input' must be a string, a list of strings, a list of token ids or a list of such lists"), NULL;
    if (n > SRV_MAX_PROMPTS)
        return srv_fail(e, 400, "invalid_request_error", "input", NULL, "at most %d inputs per request", SRV_MAX_PROMPTS),
               NULL;
    srv_embed_job *j = calloc(1, sizeof *j);
    if (j) {
        j->top = -1; /* embeddings */
        j->ids = calloc((size_t)n, sizeof *j->ids);
        j->n_ids = calloc((size_t)n, sizeof *j->n_ids);
        j->out = malloc(sizeof(float) * (size_t)n * dim);
        pthread_cond_init(&j->cv, NULL);
    }
    if (!j || !j->ids || !j->n_ids || !j->out) {
        if (j) j->n = 0;
        job_free(j);
        return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory"), NULL;
    }
    j->n = n;
    for (int i = 0; i < n; i++) {
        json_t *in = one ? input : json_array_get(input, (size_t)i);
        if (!json_is_string(in) && !json_is_array(in)) {
            srv_fail(e, 400, "invalid_request_error", "input", NULL, "input %d must be a string or a list of token ids", i);
            job_free(j);
            return NULL;
        }
        if (!add_input(s, in, i, j, e)) {
            job_free(j);
            return NULL;
        }
    }
    return j;
}

/* One chunk of a scored prompt's rows: row r (position p0 + r) predicts
 * token p0 + r + 1. */
typedef struct {
    const int32_t *ids;
    int n, V, top;
    srv_prompt_lp *out;
} lp_pass;

static void lp_chunk(void *user, int p0, int rows, const float *logits) {
    const lp_pass *a = user;
    for (int r = 0; r < rows; r++) {
        const int p = p0 + r + 1;
        if (p >= a->n) break;
        int32_t *ti = a->out->top_ids + (size_t)p * a->top;
        for (int k = 0; k < a->top; k++) ti[k] = -1; /* (fewer tokens than alternatives asked) */
        loom_logprobs(logits + (size_t)r * a->V, a->V, a->ids[p], a->top, &a->out->lp[p], ti,
                      a->out->top_lp + (size_t)p * a->top);
    }
}

/* s->mu held: the queue's first job, taken off it. */
static srv_embed_job *pop(srv *s) {
    srv_embed_job *j = s->embed_head;
    s->embed_head = j->next;
    if (!s->embed_head) s->embed_tail = NULL;
    j->next = NULL;
    return j;
}

/* s->mu held: ends job j (an error from st, if any); its HTTP thread frees it. */
static void job_done(srv *s, srv_embed_job *j, loom_status st) {
    if (st) {
        j->error = strdup(loom_status_message(st));
        j->code = loom_status_code(st);
        if (j->code != LOOM_ERR_CONTEXT && j->code != LOOM_ERR_INVALID && j->code != LOOM_ERR_KV_FULL &&
            j->code != LOOM_ERR_NOMEM && !s->failed) {
            s->failed = true; /* the cluster may be out of step: the engine failed */
            snprintf(s->fail_msg, sizeof s->fail_msg, "%s", loom_status_message(st));
        }
    }
    j->done = true;
    pthread_cond_broadcast(&j->cv);
}

/* A prompt to score (completions' echo): the pipeline emptied first. */
static loom_status score_job(srv *s, srv_embed_job *j) {
    const int V = loom_engine_model(s->e)->vocab, R = loom_engine_options_of(s->e)->batch_rows;
    float *buf = malloc(sizeof(float) * (size_t)R * V);
    lp_pass a = {j->ids[0], j->n_ids[0], V, j->top, j->lp};
    loom_status st = buf ? loom_scheduler_drain(s->sched) : loom_error(LOOM_ERR_NOMEM, "out of memory scoring a prompt");
    if (!st) st = loom_engine_score_chunks(s->e, j->ids[0], j->n_ids[0], buf, lp_chunk, &a);
    free(buf);
    return st;
}

/* The next step's inputs from the embedding jobs in flight: each job's
 * next input first (in arrival order), so a request of one text is not
 * held behind a long list that came before it, then the rest of each
 * job's inputs; an input that would take the step past `rows` rows is left
 * for a later step with the rest of its job, and shorter ones behind it
 * still fill the step. A job's inputs in the step are its next ones, in
 * order. At most `cap`. */
static int gather(srv_embed_job *const *act, int n_act, int cap, int rows, srv_embed_job **job, int *input, int *n_tok,
                  const int32_t **ids) {
    int k = 0, used = 0;
    for (int a = 0; a < n_act; a++) act[a]->in_step = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int a = 0; a < n_act && k < cap; a++) {
            srv_embed_job *j = act[a];
            for (int i = j->taken + j->in_step; i < j->n && k < cap && used + j->n_ids[i] <= rows; i++) {
                job[k] = j, input[k] = i, n_tok[k] = j->n_ids[i], ids[k] = j->ids[i];
                used += n_tok[k++];
                j->in_step++;
                if (pass == 0) break;
            }
        }
    return k;
}

void srv_embed_run(srv *s) {
    const loom_model_config *c = loom_engine_model(s->e);
    const int dim = c->dim, R = loom_engine_options_of(s->e)->batch_rows;
    const int cap = loom_engine_options_of(s->e)->max_seqs + 1; /* (loom_engine_step_texts cuts to the slots) */
    const bool rank = c->pooling == LOOM_POOL_RANK; /* a reranker: a pair's score, its first row's (a decoder's last) */
    const int width = rank ? c->n_cls_out : dim;
    loom_pooling pool = c->pooling == LOOM_POOL_NONE ? LOOM_POOL_MEAN : c->pooling;
    if (!s->embed_head) return;
    /* the embedding jobs in flight share steps: the inputs of several requests (as many as a step's rows and
     * slots hold, the weights read once for them all), requests joining between steps */
    srv_embed_job **act = NULL, **job = malloc(sizeof *job * (size_t)cap);
    int n_act = 0, cap_act = 0, *input = malloc(sizeof(int) * (size_t)cap), *n_tok = malloc(sizeof(int) * (size_t)cap);
    const int32_t **ids = malloc(sizeof *ids * (size_t)cap);
    float *hidden = malloc(sizeof(float) * (size_t)R * (size_t)width);
    const bool mem = job && input && n_tok && ids && hidden;
    while (s->embed_head || n_act > 0) {
        while (s->embed_head && (s->embed_head->top < 0 || n_act == 0)) { /* take the queue's jobs */
            if (s->embed_head->top >= 0) { /* a prompt to score, alone */
                srv_embed_job *j = pop(s);
                pthread_mutex_unlock(&s->mu);
                loom_status st = score_job(s, j);
                pthread_mutex_lock(&s->mu);
                job_done(s, j, st);
                loom_status_free(st);
                continue;
            }
            if (n_act == cap_act) {
                srv_embed_job **na = realloc(act, sizeof *act * (size_t)(cap_act ? 2 * cap_act : 16));
                if (!na) break; /* taken later */
                act = na, cap_act = cap_act ? 2 * cap_act : 16;
            }
            act[n_act++] = pop(s);
        }
        if (n_act == 0) {
            if (!s->embed_head) break;
            loom_status st = loom_error(LOOM_ERR_NOMEM, "out of memory");
            srv_embed_job *j = pop(s); /* (no room for it in the list) */
            job_done(s, j, st);
            loom_status_free(st);
            continue;
        }
        int k = 0;
        loom_status st = mem ? NULL : loom_error(LOOM_ERR_NOMEM, "out of memory");
        if (!st) {
            k = gather(act, n_act, cap, R, job, input, n_tok, ids); /* (every input fits a step alone: add_input) */
            k = loom_engine_step_texts(s->e, n_tok, k);
        }
        pthread_mutex_unlock(&s->mu);
        if (!st) st = loom_engine_score_texts(s->e, ids, n_tok, k, hidden);
        for (int t = 0, off = 0; t < k && !st; off += n_tok[t++]) {
            const float *h = hidden + (size_t)off * width;
            srv_embed_job *j = job[t];
            if (rank) j->out[input[t]] = h[(size_t)(c->bidirectional ? 0 : n_tok[t] - 1) * c->n_cls_out];
            else loom_embedding_pool(pool, h, n_tok[t], dim, true, j->out + (size_t)input[t] * dim);
        }
        if (!st) {
            int tokens = 0;
            for (int t = 0; t < k; t++) tokens += n_tok[t];
            pthread_mutex_lock(&s->metrics.mu);
            s->metrics.embed_steps++, s->metrics.embed_inputs += (uint64_t)k, s->metrics.prompt_tokens += (uint64_t)tokens;
            pthread_mutex_unlock(&s->metrics.mu);
        }
        pthread_mutex_lock(&s->mu);
        for (int t = 0; t < k && !st; t++) job[t]->taken++; /* (gather: a job's next inputs, in order) */
        int kept = 0;
        for (int a = 0; a < n_act; a++) {
            srv_embed_job *j = act[a];
            bool ran = false; /* inputs of j were in this step (gather's count may pass k: the slots' cut) */
            for (int t = 0; t < k && !ran; t++) ran = job[t] == j;
            if (st ? ran || s->failed || !mem : j->taken == j->n) job_done(s, j, st);
            else act[kept++] = j;
        }
        n_act = kept;
        loom_status_free(st);
    }
    free(act), free(job), free(input), free(n_tok), free(ids), free(hidden);
}

void srv_embed_fail_all(srv *s, const char *why) {
    while (s->embed_head) {
        srv_embed_job *j = s->embed_head;
        s->embed_head = j->next;
        j->error = strdup(why);
        j->done = true;
        pthread_cond_broadcast(&j->cv);
    }
    s->embed_tail = NULL;
}

/* Queues j for the scheduler thread and waits for it; false (e filled)
 * when the server cannot take it or it failed. */
static bool run_job(srv *s, srv_embed_job *j, srv_error *e) {
    pthread_mutex_lock(&s->mu);
    bool queued = !s->failed && s->accepting;
    if (!queued) {
        srv_fail(e, 503, "server_error", NULL, NULL, s->failed ? "the engine failed: %s" : "the server is shutting down%s",
                 s->failed ? s->fail_msg : "");
    } else {
        if (s->embed_tail) s->embed_tail->next = j;
        else s->embed_head = j;
        s->embed_tail = j;
        pthread_cond_signal(&s->work);
        while (!j->done) pthread_cond_wait(&j->cv, &s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    if (!queued) return false;
    if (j->error) {
        if (j->code == LOOM_ERR_KV_FULL) /* room comes back as requests finish */
            return srv_fail(e, 503, "server_error", NULL, NULL, "no room in the KV cache to score the prompt now (%s); "
                            "retry", j->error);
        return srv_fail(e, j->code == LOOM_ERR_CONTEXT ? 400 : 500, j->code == LOOM_ERR_CONTEXT ? "invalid_request_error"
                        : "server_error", NULL, NULL, "%s", j->error);
    }
    return true;
}

void srv_prompt_lp_free(srv_prompt_lp *p) {
    free(p->lp);
    free(p->top_ids);
    free(p->top_lp);
    memset(p, 0, sizeof *p);
}

bool srv_score_prompt(srv *s, const int32_t *ids, int n, int top, srv_prompt_lp *out, srv_error *e) {
    memset(out, 0, sizeof *out);
    srv_embed_job *j = calloc(1, sizeof *j);
    if (j) {
        pthread_cond_init(&j->cv, NULL);
        j->ids = calloc(1, sizeof *j->ids);
        j->n_ids = calloc(1, sizeof *j->n_ids);
        if (j->ids) j->ids[0] = malloc(sizeof(int32_t) * (size_t)n);
        j->n = 1;
    }
    const size_t tn = (size_t)n * (size_t)(top > 0 ? top : 1);
    out->lp = malloc(sizeof(float) * (size_t)n);
    out->top_ids = malloc(sizeof(int32_t) * tn);
    out->top_lp = malloc(sizeof(float) * tn);
    if (!j || !j->ids || !j->n_ids || !j->ids[0] || !out->lp || !out->top_ids || !out->top_lp) {
        job_free(j);
        srv_prompt_lp_free(out);
        return srv_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    memcpy(j->ids[0], ids, sizeof(int32_t) * (size_t)n);
    j->n_ids[0] = n;
    j->top = top;
    j->lp = out;
    out->lp[0] = NAN;
    bool ok = run_job(s, j, e);
    job_free(j);
    if (!ok) srv_prompt_lp_free(out);
    return ok;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* The floats' little-endian bytes in base64. */
static json_t *base64_of(const float *v, int n) {
    size_t nb = (size_t)n * 4, len = (nb + 2) / 3 * 4;
    char *out = malloc(len + 1);
    uint8_t *b = malloc(nb ? nb : 1);
    if (!out || !b) {
        free(out);
        free(b);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++) b[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    size_t o = 0;
    for (size_t i = 0; i < nb; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16 | (i + 1 < nb ? (uint32_t)b[i + 1] << 8 : 0) | (i + 2 < nb ? b[i + 2] : 0);
        out[o++] = b64chars[x >> 18 & 63];
        out[o++] = b64chars[x >> 12 & 63];
        out[o++] = i + 1 < nb ? b64chars[x >> 6 & 63] : '=';
        out[o++] = i + 2 < nb ? b64chars[x & 63] : '=';
    }
    out[o] = 0;
    json_t *j = json_stringn(out, o);
    free(out);
    free(b);
    return j;
}

/* POST /rerank, /v1/rerank (llama-server's, Jina's and Cohere's shape, as
 * vLLM serves it too): {"query", "documents": [text, ...], "top_n",
 * "return_documents"} -> {"model", "object": "list", "results": [{"index",
 * "relevance_score", "document": {"text"}}, ...] best first, "usage"}.
 * Each pair is fed as llama-server feeds it (loom_tokenize_rerank, with the
 * model's rerank template where it has one); the score is
 * the classification head's first output, unbounded (a logit) as
 * llama-server gives it. */
enum MHD_Result srv_handle_rerank(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    srv_error e;
    const loom_model_config *mc = loom_engine_model(s->e);
    if (mc->pooling != LOOM_POOL_RANK) {
        srv_fail(&e, 400, "invalid_request_error", "model", NULL,
                 "%s is not a reranker (its GGUF has no rank pooling and classification head)", s->opt.model_name);
        return srv_reply_error(s, c, &e);
    }
    json_t *o = srv_parse_body(body, len, &e);
    if (!o) return srv_reply_error(s, c, &e);
    json_t *q = json_object_get(o, "query"), *docs = json_object_get(o, "documents");
    if (!docs) docs = json_object_get(o, "texts"); /* (TEI's name) */
    const int n = (int)json_array_size(docs);
    long long top_n = n;
    bool ret_docs = false, ok = true;
    json_t *tn = json_object_get(o, "top_n");
    if (!json_is_string(q)) ok = srv_fail(&e, 400, "invalid_request_error", "query", NULL, "'query' must be a string");
    else if (!json_is_array(docs) || n < 1 || n > SRV_MAX_PROMPTS)
        ok = srv_fail(&e, 400, "invalid_request_error", "documents", NULL, "'documents' must be a list of 1 to %d strings",
                      SRV_MAX_PROMPTS);
    else if (tn && !json_is_null(tn) && (!json_is_integer(tn) || json_integer_value(tn) < 1))
        ok = srv_fail(&e, 400, "invalid_request_error", "top_n", NULL, "'top_n' must be a positive integer");
    if (ok && tn && json_is_integer(tn) && json_integer_value(tn) < top_n) top_n = json_integer_value(tn);
    if (ok) ok = srv_get_bool(o, "return_documents", &ret_docs, &e);
    srv_embed_job *j = ok ? calloc(1, sizeof *j) : NULL;
    if (ok && j) {
        j->top = -1;
        j->ids = calloc((size_t)n, sizeof *j->ids);
        j->n_ids = calloc((size_t)n, sizeof *j->n_ids);
        j->out = malloc(sizeof(float) * (size_t)n);
        pthread_cond_init(&j->cv, NULL);
        j->n = n;
    }
    if (ok && (!j || !j->ids || !j->n_ids || !j->out)) ok = srv_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    const int limit = loom_engine_options_of(s->e)->batch_rows;
    loom_str tm;
    const bool has_tmpl = loom_gguf_get_str(loom_cluster_model(s->cluster), "tokenizer.chat_template.rerank", &tm);
    for (int i = 0; ok && i < n; i++) {
        json_t *d = json_array_get(docs, (size_t)i);
        if (!json_is_string(d)) {
            ok = srv_fail(&e, 400, "invalid_request_error", "documents", NULL, "document %d must be a string", i);
            break;
        }
        loom_tokens t = {0};
        loom_status st = loom_tokenize_rerank(s->tok, has_tmpl ? tm.ptr : NULL, has_tmpl ? (size_t)tm.len : 0,
                                              json_string_value(q), json_string_length(q), json_string_value(d),
                                              json_string_length(d), &t);
        if (st) {
            ok = srv_fail(&e, 500, "server_error", NULL, NULL, "tokenizing document %d: %s", i, loom_status_message(st));
            loom_status_free(st);
        } else if ((int)t.n > limit) {
            ok = srv_fail(&e, 400, "invalid_request_error", "documents", "context_length_exceeded",
                          "the query with document %d has %zu tokens; this server encodes at most %d (--batch)", i, t.n,
                          limit);
        }
        j->ids[i] = t.ids, j->n_ids[i] = (int)t.n; /* (the job owns them, also on failure) */
    }
    if (ok) ok = run_job(s, j, &e);
    if (!ok) {
        job_free(j);
        json_decref(o);
        return srv_reply_error(s, c, &e);
    }
    int *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; order && i < n; i++) order[i] = i;
    for (int i = 1; order && i < n; i++) /* best first (insertion sort: at most SRV_MAX_PROMPTS) */
        for (int k = i; k > 0 && j->out[order[k]] > j->out[order[k - 1]]; k--) {
            int t = order[k];
            order[k] = order[k - 1], order[k - 1] = t;
        }
    json_t *results = json_array();
    long long tokens = 0;
    for (int i = 0; i < n; i++) tokens += j->n_ids[i];
    for (int r = 0; order && r < top_n; r++) {
        json_t *it = json_pack("{s:i, s:f}", "index", order[r], "relevance_score", (double)j->out[order[r]]);
        if (ret_docs) json_object_set_new(it, "document", json_pack("{s:O}", "text", json_array_get(docs, (size_t)order[r])));
        json_array_append_new(results, it);
    }
    free(order);
    job_free(j);
    json_decref(o);
    json_t *r = json_pack("{s:s, s:s, s:o, s:{s:I, s:I}}", "model", s->opt.model_name, "object", "list", "results",
                          results, "usage", "prompt_tokens", tokens, "total_tokens", tokens);
    return srv_reply_json(s, c, 200, r);
}

enum MHD_Result srv_handle_embeddings(srv *s, struct MHD_Connection *c, const char *body, size_t len) {
    srv_error e;
    const loom_model_config *mc = loom_engine_model(s->e);
    if (!mc->encoder) {
        srv_fail(&e, 400, "invalid_request_error", "model", NULL,
                 "%s is a %s model without a pooling type, not an embedding model: it has no embeddings endpoint",
                 s->opt.model_name,
                 mc->arch_name);
        return srv_reply_error(s, c, &e);
    }
    if (mc->pooling == LOOM_POOL_RANK) {
        srv_fail(&e, 400, "invalid_request_error", "model", NULL,
                 "%s is a reranker: it scores query / document pairs (POST /v1/rerank), not embeddings", s->opt.model_name);
        return srv_reply_error(s, c, &e);
    }
    json_t *o = srv_parse_body(body, len, &e);
    if (!o) return srv_reply_error(s, c, &e);
    bool b64;
    srv_embed_job *j = parse(s, o, &b64, &e);
    json_decref(o);
    if (!j) return srv_reply_error(s, c, &e);
    if (!run_job(s, j, &e)) {
        job_free(j);
        return srv_reply_error(s, c, &e);
    }
    json_t *data = json_array();
    long long tokens = 0;
    for (int i = 0; i < j->n; i++) {
        const float *v = j->out + (size_t)i * mc->dim;
        json_t *emb = NULL;
        if (b64) {
            emb = base64_of(v, mc->dim);
        } else {
            emb = json_array();
            for (int d = 0; d < mc->dim; d++) json_array_append_new(emb, json_real(v[d]));
        }
        json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding", "index", i, "embedding", emb));
        tokens += j->n_ids[i];
    }
    job_free(j);
    json_t *r = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data, "model", s->opt.model_name,
                          "usage", "prompt_tokens", tokens, "total_tokens", tokens);
    return srv_reply_json(s, c, 200, r);
}
