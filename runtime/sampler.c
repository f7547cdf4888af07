#include "runtime/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct loom_sampler {
    loom_sampling_params p;
    int32_t n_vocab;
    uint64_t rng[4];         /* xoshiro256** state */
    int32_t *history;        /* ring of the last repeat_last_n tokens */
    int32_t n_hist, hist_pos;
    int32_t *out_tok, *out_cnt; /* (out_cap) open-addressing map: generated token -> count; -1 empty */
    int32_t out_cap, out_n;
    struct cand { float logit; int32_t id; } *cand; /* (n_vocab) */
    loom_sampler_constraint con; /* fits NULL: none */
    int32_t *bias_token;         /* (p.n_logit_bias) the sampler's copies of the logit bias */
    float *bias_value;
    loom_sampler_vocab voc;      /* the infill sampler's (n 0: not set) */
    double *prob;                /* (n_vocab) the infill sampler's probabilities, or NULL */
};

loom_sampling_params loom_sampling_defaults(void) {
    loom_sampling_params p = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                              .repeat_penalty = 1.0f, .repeat_last_n = 64};
    return p;
}

loom_status loom_sampling_check(const loom_sampling_params *p) {
    if (!isfinite(p->temperature)) return loom_error(LOOM_ERR_INVALID, "temperature must be a finite number");
    if (p->top_k < 0) return loom_error(LOOM_ERR_INVALID, "top-k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1)) return loom_error(LOOM_ERR_INVALID, "top-p %g must be in (0, 1]", p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1)) return loom_error(LOOM_ERR_INVALID, "min-p %g must be in [0, 1]", p->min_p);
    if (!(p->repeat_penalty > 0) || !isfinite(p->repeat_penalty))
        return loom_error(LOOM_ERR_INVALID, "repeat penalty %g must be > 0", p->repeat_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > (1 << 20))
        return loom_error(LOOM_ERR_INVALID, "repeat-last-n %d is out of range", p->repeat_last_n);
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2))
        return loom_error(LOOM_ERR_INVALID, "presence penalty %g must be in [-2, 2]", p->presence_penalty);
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2))
        return loom_error(LOOM_ERR_INVALID, "frequency penalty %g must be in [-2, 2]", p->frequency_penalty);
    if (p->n_logit_bias < 0 || p->n_logit_bias > LOOM_LOGIT_BIAS_MAX)
        return loom_error(LOOM_ERR_INVALID, "a logit bias has %d entries; at most %d are allowed", p->n_logit_bias,
                          LOOM_LOGIT_BIAS_MAX);
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        if (p->bias_token[i] < 0) return loom_error(LOOM_ERR_INVALID, "logit bias of token %d: not a token id", p->bias_token[i]);
        if (!(p->bias_value[i] >= -100 && p->bias_value[i] <= 100))
            return loom_error(LOOM_ERR_INVALID, "logit bias %g of token %d must be in [-100, 100]", p->bias_value[i],
                              p->bias_token[i]);
    }
    return NULL;
}

bool loom_sampling_is_plain_greedy(const loom_sampling_params *p) {
    return p->temperature <= 0 && p->repeat_penalty == 1.0f && p->presence_penalty == 0 && p->frequency_penalty == 0 &&
           p->n_logit_bias == 0 && !p->json_object && !p->json_schema && !p->grammar;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t *s) {
    uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

loom_status loom_sampler_create(const loom_sampling_params *p, int32_t n_vocab, loom_sampler **out) {
    *out = NULL;
    LOOM_TRY(loom_sampling_check(p));
    if (n_vocab < 1) return loom_error(LOOM_ERR_INVALID, "vocabulary size %d must be positive", n_vocab);
    for (int32_t i = 0; i < p->n_logit_bias; i++)
        if (p->bias_token[i] >= n_vocab)
            return loom_error(LOOM_ERR_INVALID, "logit bias of token %d: the vocabulary has %d tokens", p->bias_token[i],
                              n_vocab);
    loom_sampler *s = calloc(1, sizeof *s);
    if (!s) return loom_error(LOOM_ERR_NOMEM, "out of memory creating a sampler");
    s->p = *p;
    s->p.json_schema = s->p.grammar = NULL; /* borrowed: the caller compiles them into a constraint and may free them */
    s->n_vocab = n_vocab;
    if (p->n_logit_bias > 0) { /* borrowed too: kept here */
        s->bias_token = malloc((size_t)p->n_logit_bias * sizeof *s->bias_token);
        s->bias_value = malloc((size_t)p->n_logit_bias * sizeof *s->bias_value);
        if (!s->bias_token || !s->bias_value) {
            loom_sampler_free(s);
            return loom_error(LOOM_ERR_NOMEM, "out of memory creating a sampler");
        }
        memcpy(s->bias_token, p->bias_token, (size_t)p->n_logit_bias * sizeof *s->bias_token);
        memcpy(s->bias_value, p->bias_value, (size_t)p->n_logit_bias * sizeof *s->bias_value);
    }
    s->p.bias_token = s->bias_token, s->p.bias_value = s->bias_value;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
    s->history = malloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1) * sizeof *s->history);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (p->infill) s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    if (!s->history || !s->cand || (p->infill && !s->prob)) {
        loom_sampler_free(s);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating a sampler");
    }
    *out = s;
    return NULL;
}

void loom_sampler_free(loom_sampler *s) {
    if (!s) return;
    free(s->prob);
    free(s->history);
    free(s->out_tok);
    free(s->out_cnt);
    free(s->cand);
    free(s->bias_token);
    free(s->bias_value);
    free(s);
}

void loom_sampler_accept(loom_sampler *s, int32_t token) {
    if (s->p.repeat_last_n <= 0) return;
    s->history[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->n_hist < s->p.repeat_last_n) s->n_hist++;
}

void loom_sampler_skip(loom_sampler *s, int64_t n) {
    for (int64_t i = 0; i < n; i++) (void)next_u64(s->rng);
}

/* Slot of token t in the output-count map (its own or the empty one it would take). */
static int32_t out_slot(const loom_sampler *s, int32_t t) {
    uint32_t h = ((uint32_t)t * 2654435761u) & (uint32_t)(s->out_cap - 1);
    while (s->out_tok[h] >= 0 && s->out_tok[h] != t) h = (h + 1) & (uint32_t)(s->out_cap - 1);
    return (int32_t)h;
}

void loom_sampler_set_constraint(loom_sampler *s, const loom_sampler_constraint *c) {
    s->con = c ? *c : (loom_sampler_constraint){0};
}

void loom_sampler_accept_output(loom_sampler *s, int32_t token) {
    loom_sampler_accept(s, token);
    if (s->con.accept) s->con.accept(s->con.user, token);
    if ((s->p.presence_penalty == 0 && s->p.frequency_penalty == 0) || token < 0 || token >= s->n_vocab) return;
    if (2 * (s->out_n + 1) > s->out_cap) { /* keep the map at most half full */
        int32_t cap = s->out_cap ? 2 * s->out_cap : 64, *ot = s->out_tok, *oc = s->out_cnt, old = s->out_cap;
        int32_t *nt = malloc((size_t)cap * sizeof *nt), *nc = malloc((size_t)cap * sizeof *nc);
        if (!nt || !nc) { /* out of memory: the penalty misses this token, nothing breaks */
            free(nt);
            free(nc);
            return;
        }
        for (int32_t i = 0; i < cap; i++) nt[i] = -1;
        s->out_tok = nt, s->out_cnt = nc, s->out_cap = cap;
        for (int32_t i = 0; i < old; i++)
            if (ot[i] >= 0) {
                int32_t h = out_slot(s, ot[i]);
                s->out_tok[h] = ot[i];
                s->out_cnt[h] = oc[i];
            }
        free(ot);
        free(oc);
    }
    int32_t h = out_slot(s, token);
    if (s->out_tok[h] < 0) {
        s->out_tok[h] = token;
        s->out_cnt[h] = 0;
        s->out_n++;
    }
    s->out_cnt[h]++;
}

static void apply_penalty(loom_sampler *s, float *logits) {
    for (int32_t i = 0; i < s->p.n_logit_bias; i++) logits[s->p.bias_token[i]] += s->p.bias_value[i];
    if (s->p.repeat_penalty != 1.0f) {
        /* each distinct token in the window is penalised once */
        for (int i = 0; i < s->n_hist; i++) {
            int32_t t = s->history[i];
            if (t < 0 || t >= s->n_vocab) continue;
            bool seen = false;
            for (int j = 0; j < i && !seen; j++) seen = s->history[j] == t;
            if (seen) continue;
            float l = logits[t];
            logits[t] = l > 0 ? l / s->p.repeat_penalty : l * s->p.repeat_penalty;
        }
    }
    for (int32_t i = 0; i < s->out_cap; i++) /* presence and frequency, over generated tokens */
        if (s->out_tok[i] >= 0)
            logits[s->out_tok[i]] -= s->p.presence_penalty + s->p.frequency_penalty * (float)s->out_cnt[i];
}

int32_t loom_argmax(const float *x, int32_t n) {
    /* the maximum first, 16 independent lanes (vectorises without
     * -ffast-math), then the lowest index holding it; NaNs are skipped */
    float lane[16];
    for (int j = 0; j < 16; j++) lane[j] = -INFINITY;
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) lane[j] = x[i + j] > lane[j] ? x[i + j] : lane[j];
    float m = -INFINITY;
    for (int j = 0; j < 16; j++) m = lane[j] > m ? lane[j] : m;
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    for (i = 0; i < n; i++)
        if (x[i] == m) return i;
    return 0;
}

static int cmp_cand(const void *a, const void *b) {
    const struct cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Moves the k largest candidates (ties: lower id first) to the front, sorted. */
static void top_k_sorted(struct cand *c, int32_t n, int32_t k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, cmp_cand);
        return;
    }
    /* quickselect the k-th boundary, then sort the head */
    int32_t lo = 0, hi = n - 1;
    while (lo < hi) {
        struct cand pivot = c[lo + (hi - lo) / 2];
        int32_t i = lo, j = hi;
        while (i <= j) {
            while (cmp_cand(&c[i], &pivot) < 0) i++;
            while (cmp_cand(&c[j], &pivot) > 0) j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

/* Restores the heap order below slot i: every entry ranks after (is worse
 * than) neither of its children, so c[0] is the worst candidate kept. */
static void sift_down(struct cand *c, int32_t k, int32_t i) {
    for (;;) {
        int32_t w = i, l = 2 * i + 1, r = l + 1;
        if (l < k && cmp_cand(&c[l], &c[w]) > 0) w = l;
        if (r < k && cmp_cand(&c[r], &c[w]) > 0) w = r;
        if (w == i) return;
        struct cand t = c[i];
        c[i] = c[w];
        c[w] = t;
        i = w;
    }
}

/* The k best logits (k much smaller than n) into c[0..k), sorted, in one
 * pass: a heap of the best k so far with the worst at the root; a later id
 * enters only with a strictly larger logit (ids arrive in order, so an equal
 * logit with a higher id ranks after), which costs one comparison per id
 * once the heap is full. Same set and order as top_k_sorted: 49152 logits,
 * k = 40, many ties: 0.41 ms -> 0.05 ms. NaN logits count as -inf. */
static void top_k_scan(struct cand *c, const float *logits, int32_t n, int32_t k) {
    for (int32_t i = 0; i < k; i++) c[i] = (struct cand){isnan(logits[i]) ? -INFINITY : logits[i], i};
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int32_t i = k; i < n; i++)
        if (logits[i] > c[0].logit) {
            c[0] = (struct cand){logits[i], i};
            sift_down(c, k, 0);
        }
    qsort(c, (size_t)k, sizeof *c, cmp_cand);
}

void loom_sampler_set_vocab(loom_sampler *s, const loom_sampler_vocab *v) { s->voc = *v; }

static bool voc_eog(const loom_sampler_vocab *v, int32_t t) { return t < v->n && v->kind[t] == 1; }

/* Token t's text (none for control tokens and end of generation, as
 * llama.cpp renders them without `special`). */
static size_t voc_text(const loom_sampler_vocab *v, int32_t t, const char **out) {
    *out = v->text + (t < v->n ? v->off[t] : 0);
    return t < v->n && v->kind[t] == 0 ? v->off[t + 1] - v->off[t] : 0;
}

/* The infill sampler (sampler.h) on the m candidates c (sorted, their
 * probabilities in p): moves the kept ones to the front, in order, and
 * returns how many; -1: the end token is the draw. */
static int32_t infill(const loom_sampler *s, struct cand *c, double *p, int32_t m) {
    const loom_sampler_vocab *v = &s->voc;
    double p_txt = 0, p_eog = 0;
    for (int32_t i = 0; i < m; i++) {
        if (voc_eog(v, c[i].id)) p_eog += p[i];
        else p_txt += p[i];
    }
    int32_t k = 0;
    if (3 * p_eog * m > p_txt) { /* the end is likely enough: only end-of-generation tokens */
        for (int32_t i = 0; i < m; i++)
            if (voc_eog(v, c[i].id)) c[k] = c[i], p[k++] = p[i];
        return k;
    }
    for (int32_t i0 = 0; i0 < m; i0++) /* a token whose text begins another's takes its probability */
        for (int32_t i1 = 0; i1 < m && c[i0].logit != -INFINITY; i1++) {
            if (i0 == i1 || c[i1].logit == -INFINITY) continue;
            const char *t0, *t1;
            const size_t n0 = voc_text(v, c[i0].id, &t0), n1 = voc_text(v, c[i1].id, &t1);
            if (n0 == 0 || n0 > n1 || memcmp(t0, t1, n0) != 0) continue;
            const int32_t dst = p[i1] > p[i0] ? i1 : i0, src = dst == i0 ? i1 : i0;
            p[dst] += p[src];
            c[src].logit = -INFINITY;
            p[src] = 0;
        }
    int32_t n_text = 0;
    double sum = 0;
    for (int32_t i = 0; i < m; i++) {
        const bool eog = voc_eog(v, c[i].id);
        if (p[i] < 0.2 && !eog) continue;
        n_text += !eog;
        sum += p[i];
        c[k] = c[i], p[k++] = p[i];
    }
    if (n_text == 0) return -1;
    const double thold = 1.0 / (n_text + 1);
    int32_t kept = 0;
    for (int32_t i = 0; i < k; i++)
        if (p[i] / sum >= thold || voc_eog(v, c[i].id)) c[kept] = c[i], p[kept++] = p[i];
    return kept;
}

/* The chain after the penalties: the argmax (greedy), or top-k, top-p,
 * min-p and temperature (and the infill sampler), then the draw u in [0, 1). */
static int32_t chain(loom_sampler *s, const float *logits, double u) {
    int32_t n = s->n_vocab;
    if (s->p.temperature <= 0) return loom_argmax(logits, n);
    struct cand *c = s->cand;
    int32_t m = n;
    if (s->p.top_k > 0 && s->p.top_k < m) m = s->p.top_k;
    if (m <= n / 8) {
        top_k_scan(c, logits, n, m);
    } else {
        for (int32_t i = 0; i < n; i++) c[i] = (struct cand){isnan(logits[i]) ? -INFINITY : logits[i], i};
        top_k_sorted(c, n, m);
    }

    /* probabilities at temperature 1 for the top-p / min-p cuts */
    double maxl = c[0].logit, sum = 0;
    for (int32_t i = 0; i < m; i++) sum += exp((double)c[i].logit - maxl);
    if (s->p.top_p < 1.0f) {
        double acc = 0;
        for (int32_t i = 0; i < m; i++) {
            acc += exp((double)c[i].logit - maxl) / sum;
            if (acc >= s->p.top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (s->p.min_p > 0) {
        /* keep tokens whose probability is at least min_p × the top one's */
        double cut = maxl + log((double)s->p.min_p);
        int32_t keep = 1;
        while (keep < m && c[keep].logit >= cut) keep++;
        m = keep;
    }
    if (s->p.infill && s->voc.n && s->prob) {
        double z = 0;
        for (int32_t i = 0; i < m; i++) z += s->prob[i] = exp(((double)c[i].logit - maxl) / s->p.temperature);
        for (int32_t i = 0; i < m; i++) s->prob[i] /= z;
        m = infill(s, c, s->prob, m);
        if (m < 0) return s->voc.end_token;
        if (m == 0) return c[0].id; /* (no candidate: cannot happen, the top one is kept) */
        maxl = c[0].logit;
    }
    /* temperature, then draw */
    double total = 0;
    for (int32_t i = 0; i < m; i++) total += exp(((double)c[i].logit - maxl) / s->p.temperature);
    double r = u * total, acc = 0;
    for (int32_t i = 0; i < m; i++) {
        acc += exp(((double)c[i].logit - maxl) / s->p.temperature);
        if (r < acc) return c[i].id;
    }
    return c[m - 1].id;
}

/* The masked draw without asking the constraint about every token: where
 * the chain keeps only its k best tokens (greedy: 1; top-k), the k best
 * that fit decide it. The best CHECKED tokens are asked in order; when k
 * of them fit and the k-th ranks strictly above every token not asked,
 * every other token is masked and the chain draws as over the whole mask
 * (the same k survive top-k, nothing after it sees the rest). Returns -1
 * where that cannot be settled so. */
#define CHECKED 256
static int32_t masked_top(loom_sampler *s, float *logits, double u) {
    const int32_t k = s->p.temperature <= 0 ? 1 : s->p.top_k;
    if (k <= 0 || 4 * k > CHECKED || s->n_vocab <= CHECKED) return -1;
    struct cand *c = s->cand;
    top_k_scan(c, logits, s->n_vocab, CHECKED);
    int32_t found = 0;
    for (int32_t i = 0; i < CHECKED && found < k; i++)
        if (s->con.fits(s->con.user, c[i].id)) c[found++] = c[i];
    if (found < k || !(c[found - 1].logit > c[CHECKED - 1].logit)) return -1; /* (c[i >= found] is stale: unused) */
    for (int32_t i = 0; i < s->n_vocab; i++) logits[i] = -INFINITY;
    for (int32_t i = 0; i < found; i++) logits[c[i].id] = c[i].logit;
    return chain(s, logits, u);
}

int32_t loom_sampler_sample(loom_sampler *s, float *logits) {
    apply_penalty(s, logits);
    const double u = s->p.temperature > 0 ? (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) : 0;
    int32_t t = chain(s, logits, u);
    if (!s->con.fits || s->con.fits(s->con.user, t)) return t;
    if ((t = masked_top(s, logits, u)) >= 0) return t;
    int32_t any = -1;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (!s->con.fits(s->con.user, i)) logits[i] = -INFINITY;
        else if (any < 0) any = i;
    }
    return any < 0 ? t : chain(s, logits, u); /* no token fits (a vocabulary without '{'): the unmasked draw */
}

void loom_logprobs(const float *logits, int32_t n, int32_t chosen, int top_n, float *chosen_lp, int32_t *top_ids,
                   float *top_lps) {
    double m = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (logits[i] > m) m = logits[i];
    double sum = 0;
    for (int32_t i = 0; i < n; i++)
        if (!isnan(logits[i])) sum += exp((double)logits[i] - m);
    double lse = m + log(sum);
    float lc = chosen >= 0 && chosen < n && !isnan(logits[chosen]) ? logits[chosen] : -INFINITY;
    *chosen_lp = (float)((double)lc - lse);
    if (top_n > 20) top_n = 20;
    int k = 0; /* top_ids[0..k) sorted best first; a later id enters only when strictly larger */
    for (int32_t i = 0; i < n && top_n > 0; i++) {
        float v = isnan(logits[i]) ? -INFINITY : logits[i];
        if (k == top_n && !(v > top_lps[k - 1])) continue;
        int j = k < top_n ? k++ : k - 1;
        while (j > 0 && v > top_lps[j - 1]) {
            top_lps[j] = top_lps[j - 1];
            top_ids[j] = top_ids[j - 1];
            j--;
        }
        top_lps[j] = v;
        top_ids[j] = i;
    }
    for (int j = 0; j < k; j++) top_lps[j] = (float)((double)top_lps[j] - lse);
}
