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
    uint64_t xtc_rng[4];         /* XTC's own random stream (one number a token while it is on) */
    float *aux;                  /* (n_vocab) probabilities for typical, XTC, dynamic temperature, or NULL */
    struct cand *cand2;          /* (n_vocab) typical's scores, or NULL */
    loom_dry_breakers dry;       /* DRY's sequence breakers (borrowed; n 0: none) */
    int32_t *dry_hist;           /* (dry_cap) every token so far while DRY is on */
    int32_t dry_n, dry_cap;
    int32_t *dry_cnt;            /* (dry_cnt_cap) DRY's scratch: n repeat lengths, then n (token, length) pairs */
    int32_t dry_cnt_cap;
    float mu;                    /* mirostat's running state */
    float miro_surprise;         /* the surprise of mirostat's last pick (applied to mu once the token stands) */
};

loom_sampling_params loom_sampling_defaults(void) {
    loom_sampling_params p = {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                              .repeat_penalty = 1.0f, .repeat_last_n = 64, .typical_p = 1.0f,
                              .xtc_threshold = 0.1f, .dynatemp_exponent = 1.0f, .dry_base = 1.75f,
                              .dry_allowed_length = 2, .dry_penalty_last_n = 64, .mirostat_tau = 5.0f,
                              .mirostat_eta = 0.1f};
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
    if (!(p->typical_p >= 0) || !isfinite(p->typical_p))
        return loom_error(LOOM_ERR_INVALID, "typical-p %g must be >= 0", p->typical_p);
    if (!isfinite(p->top_n_sigma)) return loom_error(LOOM_ERR_INVALID, "top-n-sigma must be a finite number");
    if (!(p->xtc_probability >= 0 && p->xtc_probability <= 1))
        return loom_error(LOOM_ERR_INVALID, "XTC probability %g must be in [0, 1]", p->xtc_probability);
    if (!(p->xtc_threshold >= 0 && p->xtc_threshold <= 1))
        return loom_error(LOOM_ERR_INVALID, "XTC threshold %g must be in [0, 1]", p->xtc_threshold);
    if (!isfinite(p->dynatemp_range) || !isfinite(p->dynatemp_exponent) || p->dynatemp_exponent < 0)
        return loom_error(LOOM_ERR_INVALID, "dynamic temperature: range %g and exponent %g must be finite, the exponent "
                          ">= 0", p->dynatemp_range, p->dynatemp_exponent);
    if (!isfinite(p->dry_multiplier) || !(p->dry_base >= 0) || !isfinite(p->dry_base) || p->dry_allowed_length < 0 ||
        p->dry_penalty_last_n < -1)
        return loom_error(LOOM_ERR_INVALID, "DRY: the multiplier and base must be finite numbers (base >= 0), the "
                          "allowed length >= 0 and the last n >= -1");
    if (p->mirostat < 0 || p->mirostat > 2 || !(p->mirostat_tau >= 0) || !isfinite(p->mirostat_tau) ||
        !(p->mirostat_eta >= 0) || !isfinite(p->mirostat_eta))
        return loom_error(LOOM_ERR_INVALID, "mirostat: version %d must be 0, 1 or 2, tau %g and eta %g finite numbers "
                          ">= 0", p->mirostat, p->mirostat_tau, p->mirostat_eta);
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

static bool typical_on(const loom_sampling_params *p);
static bool xtc_on(const loom_sampling_params *p);
static bool dynatemp_on(const loom_sampling_params *p);
static bool dry_on(const loom_sampling_params *p);
static bool plain_argmax(const loom_sampling_params *p);
static bool draws(const loom_sampling_params *p);

bool loom_sampling_is_plain_greedy(const loom_sampling_params *p) {
    return plain_argmax(p) && !p->mirostat && p->repeat_penalty == 1.0f && p->presence_penalty == 0 &&
           p->frequency_penalty == 0 && p->n_logit_bias == 0 && !dry_on(p) && !p->json_object && !p->json_schema &&
           !p->grammar;
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
    s->p.dry_breakers = NULL, s->p.n_dry_breakers = 0; /* likewise, into a table (loom_sampler_set_dry) */
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
    for (int i = 0; i < 4; i++) s->xtc_rng[i] = splitmix64(&x);
    s->history = malloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1) * sizeof *s->history);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    if (p->infill) s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    const bool aux = typical_on(p) || xtc_on(p) || dynatemp_on(p) || p->mirostat;
    if (aux) s->aux = malloc((size_t)n_vocab * sizeof *s->aux);
    if (typical_on(p)) s->cand2 = malloc((size_t)n_vocab * sizeof *s->cand2);
    if (!s->history || !s->cand || (p->infill && !s->prob) || (aux && !s->aux) || (typical_on(p) && !s->cand2)) {
        loom_sampler_free(s);
        return loom_error(LOOM_ERR_NOMEM, "out of memory creating a sampler");
    }
    s->mu = 2 * p->mirostat_tau;
    *out = s;
    return NULL;
}

float loom_sampler_mirostat_mu(const loom_sampler *s) { return s->p.mirostat ? s->mu : NAN; }
void loom_sampler_set_mirostat_mu(loom_sampler *s, float mu) { s->mu = mu; }

void loom_sampler_free(loom_sampler *s) {
    if (!s) return;
    free(s->aux);
    free(s->cand2);
    free(s->dry_hist);
    free(s->dry_cnt);
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
    if (dry_on(&s->p)) {
        if (s->dry_n == s->dry_cap) { /* (out of memory: DRY misses this token, nothing breaks) */
            int32_t cap = s->dry_cap ? 2 * s->dry_cap : 256, *h = realloc(s->dry_hist, (size_t)cap * sizeof *h);
            if (h) s->dry_hist = h, s->dry_cap = cap;
        }
        if (s->dry_n < s->dry_cap) s->dry_hist[s->dry_n++] = token;
    }
    if (s->p.repeat_last_n <= 0) return;
    s->history[s->hist_pos] = token;
    s->hist_pos = (s->hist_pos + 1) % s->p.repeat_last_n;
    if (s->n_hist < s->p.repeat_last_n) s->n_hist++;
}

void loom_sampler_skip(loom_sampler *s, int64_t n) {
    for (int64_t i = 0; i < n && draws(&s->p); i++) (void)next_u64(s->rng);
    for (int64_t i = 0; i < n && xtc_on(&s->p); i++) (void)next_u64(s->xtc_rng);
}

void loom_sampler_set_dry(loom_sampler *s, const loom_dry_breakers *b) {
    s->dry = b ? *b : (loom_dry_breakers){0};
}

/* Entries of DRY's breakers whose head is token t: [*lo, return). */
static int32_t dry_heads(const loom_dry_breakers *b, int32_t t, int32_t *lo) {
    int32_t a = 0, z = b->n;
    while (a < z) {
        const int32_t mid = a + (z - a) / 2;
        if (b->head[mid] < t) a = mid + 1;
        else z = mid;
    }
    *lo = a;
    while (z < b->n && b->head[z] == t) z++;
    return z;
}

static int cmp_pair(const void *a, const void *b) {
    const int32_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] < y[0] ? -1 : 1) : (x[1] > y[1] ? -1 : x[1] < y[1]);
}

/* DRY (llama.cpp's, from koboldcpp): a token that would extend a sequence
 * repeated from earlier in the window (since the last sequence breaker)
 * by more than allowed_length tokens loses multiplier x base^(length -
 * allowed_length) of its logit. */
static void apply_dry(loom_sampler *s, float *logits) {
    const loom_sampling_params *p = &s->p;
    int32_t n = s->dry_n;
    if (p->dry_penalty_last_n > 0 && n > p->dry_penalty_last_n) n = p->dry_penalty_last_n;
    if (n <= p->dry_allowed_length) return;
    const int32_t *h = s->dry_hist + (s->dry_n - n); /* the window, oldest first: the i-th from the end is h[n-1-i] */
#define RAT(i) h[n - 1 - (i)]
    /* 1: the nearest sequence breaker limits how long a repeat may count */
    int32_t rep_limit = n;
    for (int32_t i = 0; i < n; i++) {
        int32_t lo, hi = dry_heads(&s->dry, RAT(i), &lo), longest = -1;
        for (int32_t e = lo; e < hi; e++) {
            const int32_t len = (int32_t)(s->dry.tail_off[e + 1] - s->dry.tail_off[e]);
            if (len <= longest || len > i) continue;
            bool match = true;
            for (int32_t k = 0; k < len && match; k++) match = s->dry.tails[s->dry.tail_off[e] + k] == RAT(i - k - 1);
            if (match) longest = len;
        }
        if (longest >= 0) {
            rep_limit = i - longest;
            break;
        }
    }
    if (rep_limit < p->dry_allowed_length) return;
    if (3 * n > s->dry_cnt_cap) {
        int32_t *c = realloc(s->dry_cnt, (size_t)(3 * n) * sizeof *c);
        if (!c) return; /* (out of memory: no penalty this token) */
        s->dry_cnt = c, s->dry_cnt_cap = 3 * n;
    }
    /* 2: for each position, how long a suffix of the window ends there (the Z-algorithm run backwards) */
    int32_t *cnt = s->dry_cnt;
    memset(cnt, 0, (size_t)n * sizeof *cnt);
    const int32_t last = n - 1;
    for (int32_t k = 1, lt = 0, rt = 0; k < n; k++) {
        if (k > rt) {
            int32_t m = 0;
            while (m + k < n && RAT(m) == RAT(m + k)) m++;
            cnt[last - k] = m < rep_limit ? m : rep_limit;
            if (m > 0) lt = k, rt = k + m - 1;
        } else if (cnt[last - (k - lt)] < rt - k + 1) {
            const int32_t m = cnt[last - (k - lt)];
            cnt[last - k] = m < rep_limit ? m : rep_limit;
        } else {
            int32_t i = rt + 1;
            while (i < n && RAT(i) == RAT(i - k)) i++;
            cnt[last - k] = i - k < rep_limit ? i - k : rep_limit;
            lt = k, rt = i - 1;
        }
    }
    /* 3: the token after each repeat would extend it: the longest such repeat per token */
    int32_t *pair = cnt + n, np = 0;
    for (int32_t i = 0; i < n - 1; i++)
        if (cnt[i] >= p->dry_allowed_length) pair[2 * np] = h[i + 1], pair[2 * np + 1] = cnt[i], np++;
#undef RAT
    if (!np) return;
    qsort(pair, (size_t)np, 2 * sizeof *pair, cmp_pair);
    /* 4: the penalty, its exponent clamped so that base^exponent stays a float */
    const int max_exp = p->dry_base > 1.000001f ? (int)(88.7228391f / logf(p->dry_base)) : 0;
    for (int32_t i = 0; i < np; i++) {
        const int32_t t = pair[2 * i];
        if ((i > 0 && pair[2 * (i - 1)] == t) || t < 0 || t >= s->n_vocab) continue; /* the longest came first */
        int32_t lo, hi = dry_heads(&s->dry, t, &lo);
        bool breaker = false; /* a breaker of one token is never penalised */
        for (int32_t e = lo; e < hi && !breaker; e++) breaker = s->dry.tail_off[e + 1] == s->dry.tail_off[e];
        if (breaker) continue;
        int32_t x = pair[2 * i + 1] - p->dry_allowed_length;
        if (max_exp > 0 && x > max_exp) x = max_exp;
        logits[t] -= (float)((double)p->dry_multiplier * pow((double)p->dry_base, x));
    }
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
    if (s->p.mirostat) return; /* llama.cpp's chain with mirostat: the logit bias, the temperature, mirostat */
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
    if (dry_on(&s->p)) apply_dry(s, logits);
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

static bool typical_on(const loom_sampling_params *p) { return p->typical_p > 0 && p->typical_p < 1; }
static bool xtc_on(const loom_sampling_params *p) { return p->xtc_probability > 0 && p->xtc_threshold <= 0.5f; }
static bool dynatemp_on(const loom_sampling_params *p) { return p->dynatemp_range > 0; }
static bool dry_on(const loom_sampling_params *p) {
    return p->dry_multiplier != 0 && p->dry_base >= 1 && p->dry_penalty_last_n != 0;
}
/* Whether the draw is the argmax of the penalised logits (no cut can drop the best token). */
static bool plain_argmax(const loom_sampling_params *p) {
    return p->temperature <= 0 && !dynatemp_on(p) && !typical_on(p) && !xtc_on(p) && !p->mirostat;
}
/* Whether the draw takes a random number (dynamic temperature: 0 +- range samples, as llama.cpp's; mirostat
 * always). */
static bool draws(const loom_sampling_params *p) { return p->temperature > 0 || dynatemp_on(p) || p->mirostat; }

/* Probabilities at temperature 1 of c[0..m) (sorted: c[0] the largest), in
 * floats as llama.cpp's softmax computes them. */
static void softmax1(const struct cand *c, int32_t m, float *p) {
    float sum = 0;
    for (int32_t i = 0; i < m; i++) sum += p[i] = expf(c[i].logit - c[0].logit);
    for (int32_t i = 0; i < m; i++) p[i] /= sum;
}

static int cmp_score(const void *a, const void *b) {
    const struct cand *x = a, *y = b; /* (logit holds the score here) */
    if (x->logit != y->logit) return x->logit < y->logit ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

/* Locally typical sampling (llama.cpp's): the candidates whose surprise
 * -ln p is nearest the entropy, until they hold more than typical_p of
 * the mass; the kept ones sorted by logit again. Returns the new count. */
static int32_t typical(loom_sampler *s, struct cand *c, int32_t m) {
    float *p = s->aux, ent = 0;
    softmax1(c, m, p);
    for (int32_t i = 0; i < m; i++)
        if (p[i] > 0) ent += -p[i] * logf(p[i]); /* (llama.cpp's would be NaN where a probability underflows) */
    struct cand *sc = s->cand2;
    for (int32_t i = 0; i < m; i++) sc[i] = (struct cand){fabsf(-logf(p[i]) - ent), i};
    qsort(sc, (size_t)m, sizeof *sc, cmp_score);
    float cum = 0;
    int32_t keep = m;
    for (int32_t i = 0; i < m; i++) {
        cum += p[sc[i].id];
        if (cum > s->p.typical_p) {
            keep = i + 1;
            break;
        }
    }
    for (int32_t i = 0; i < keep; i++) sc[i] = c[sc[i].id];
    memcpy(c, sc, (size_t)keep * sizeof *c);
    qsort(c, (size_t)keep, sizeof *c, cmp_cand);
    return keep;
}

/* The chain's cuts after the penalties (not for plain_argmax): top-n-sigma,
 * top-k, typical, top-p, min-p and XTC (xu its random number in [0, 1)),
 * leaving the candidates in (*cp)[0 .. return), best first, and the
 * temperature to draw at in *temp (dynamic temperature's; <= 0: the best). */
static int32_t cut(loom_sampler *s, const float *logits, float xu, struct cand **cp, double *temp_out) {
    int32_t n = s->n_vocab;
    const loom_sampling_params *sp = &s->p;
    double sigma_cut = -INFINITY;
    if (sp->top_n_sigma > 0) { /* keep logits within top_n_sigma standard deviations of the largest */
        double mx = -INFINITY, sum = 0, acc = 0;
        int64_t cnt = 0;
        for (int32_t i = 0; i < n; i++)
            if (logits[i] > -INFINITY) { /* (NaN is not) */
                mx = logits[i] > mx ? logits[i] : mx;
                sum += logits[i], cnt++;
            }
        const double mean = cnt ? sum / (double)cnt : 0;
        for (int32_t i = 0; i < n; i++)
            if (logits[i] > -INFINITY) acc += ((double)logits[i] - mean) * ((double)logits[i] - mean);
        sigma_cut = mx - sp->top_n_sigma * (cnt ? sqrt(acc / (double)cnt) : 0);
    }
    struct cand *c = s->cand;
    int32_t m = n;
    if (sp->top_k > 0 && sp->top_k < m) m = sp->top_k;
    if (m <= n / 8) {
        top_k_scan(c, logits, n, m);
    } else {
        for (int32_t i = 0; i < n; i++) c[i] = (struct cand){isnan(logits[i]) ? -INFINITY : logits[i], i};
        top_k_sorted(c, n, m);
    }
    while (m > 1 && c[m - 1].logit < sigma_cut) m--;
    if (typical_on(sp) && m > 1) m = typical(s, c, m);

    /* probabilities at temperature 1 for the top-p / min-p cuts */
    double maxl = c[0].logit, sum = 0;
    for (int32_t i = 0; i < m; i++) sum += exp((double)c[i].logit - maxl);
    if (sp->top_p < 1.0f) {
        double acc = 0;
        for (int32_t i = 0; i < m; i++) {
            acc += exp((double)c[i].logit - maxl) / sum;
            if (acc >= sp->top_p) {
                m = i + 1;
                break;
            }
        }
    }
    if (sp->min_p > 0) {
        /* keep tokens whose probability is at least min_p × the top one's */
        double floor_l = maxl + log((double)sp->min_p);
        int32_t keep = 1;
        while (keep < m && c[keep].logit >= floor_l) keep++;
        m = keep;
    }
    if (xtc_on(sp) && m >= 2 && xu <= sp->xtc_probability) {
        /* XTC (exclude top choices): of the tokens at or above the threshold, all but the least likely go */
        float *p = s->aux;
        softmax1(c, m, p);
        int32_t last = 0;
        while (last + 1 < m && p[last + 1] >= sp->xtc_threshold) last++;
        if (last > 0 && p[0] >= sp->xtc_threshold) c += last, m -= last;
    }
    double temp = sp->temperature;
    if (dynatemp_on(sp) && m > 1) { /* the temperature from the candidates' entropy, within temperature +- range */
        const float lo = sp->temperature - sp->dynatemp_range > 0 ? sp->temperature - sp->dynatemp_range : 0;
        const float hi = sp->temperature + sp->dynatemp_range;
        float *p = s->aux, ent = 0;
        softmax1(c, m, p);
        for (int32_t i = 0; i < m; i++)
            if (p[i] > 0) ent -= p[i] * logf(p[i]);
        temp = lo + (hi - lo) * powf(ent / -logf(1.0f / (float)m), sp->dynatemp_exponent);
    }
    *cp = c, *temp_out = temp;
    return m;
}

/* Mirostat's candidates (sampler.h) from the biased logits: c = s->cand
 * [0 .. return), best first, their probabilities among them in p. */
static int32_t miro_cands(loom_sampler *s, const float *logits, float *p) {
    const loom_sampling_params *sp = &s->p;
    const int32_t n = s->n_vocab;
    struct cand *c = s->cand;
    const int32_t best = loom_argmax(logits, n);
    const double t = sp->temperature, mx = logits[best];
    if (t <= 0 || !(mx > -INFINITY)) { /* llama.cpp's temperature <= 0: the best token alone */
        c[0] = (struct cand){logits[best], best};
        p[0] = 1;
        return 1;
    }
    int32_t m = 0;
    if (sp->mirostat == 2) { /* -log2 p <= mu, p the softmax at t over every token: logit >= mx + t (ln z - mu ln 2) */
        double z = 0;
        for (int32_t i = 0; i < n; i++)
            if (!isnan(logits[i])) z += exp(((double)logits[i] - mx) / t);
        const double floor_l = mx + t * (log(z) - (double)s->mu * M_LN2);
        for (int32_t i = 0; i < n; i++)
            if (logits[i] >= floor_l) c[m++] = (struct cand){logits[i], i};
        if (m == 0) c[m++] = (struct cand){logits[best], best}; /* (none: the best, as llama.cpp keeps one) */
        qsort(c, (size_t)m, sizeof *c, cmp_cand);
    } else { /* Zipf's exponent s from the 100 best (least squares of ln(p_i / p_i+1) on ln((i + 2) / (i + 1))) */
        const int32_t top = n < 100 ? n : 100;
        top_k_scan(c, logits, n, top);
        double tb = 0, tt = 0;
        for (int32_t i = 0; i + 1 < top; i++) {
            const double ti = log((double)(i + 2) / (double)(i + 1));
            tb += ti * ((double)c[i].logit - c[i + 1].logit) / t, tt += ti * ti;
        }
        const double sh = tb / tt, eps = sh - 1;
        const double k = pow(eps * pow(2.0, (double)s->mu) / (1 - pow((double)n, -eps)), 1 / sh);
        m = !(k >= 1) ? 1 : k >= n ? n : (int32_t)k; /* (NaN: one, as llama.cpp's max(int(k), 1) comes to) */
        if (m > top) {
            for (int32_t i = 0; i < n; i++) c[i] = (struct cand){isnan(logits[i]) ? -INFINITY : logits[i], i};
            top_k_sorted(c, n, m);
        }
    }
    double z = 0;
    for (int32_t i = 0; i < m; i++) z += exp(((double)c[i].logit - c[0].logit) / t);
    for (int32_t i = 0; i < m; i++) p[i] = (float)(exp(((double)c[i].logit - c[0].logit) / t) / z);
    return m;
}

/* Mirostat's draw u in [0, 1) among its candidates; the drawn token's
 * surprise goes to s->miro_surprise (mu moves once the token stands). */
static int32_t miro_draw(loom_sampler *s, const float *logits, double u) {
    float *p = s->aux;
    const int32_t m = miro_cands(s, logits, p);
    int32_t j = 0;
    double acc = p[0];
    while (j + 1 < m && u >= acc) acc += p[++j];
    s->miro_surprise = -log2f(p[j]);
    return s->cand[j].id;
}

/* The chain after the penalties: the argmax (greedy), or the cuts, the
 * infill sampler and the draw u in [0, 1) at the temperature (or
 * mirostat's draw); xu is XTC's. */
static int32_t chain(loom_sampler *s, const float *logits, double u, float xu) {
    const loom_sampling_params *sp = &s->p;
    if (sp->mirostat) return miro_draw(s, logits, u);
    if (plain_argmax(sp)) return loom_argmax(logits, s->n_vocab);
    struct cand *c;
    double temp;
    int32_t m = cut(s, logits, xu, &c, &temp);
    if (temp <= 0 || m == 1) return c[0].id;
    double maxl = c[0].logit;
    if (sp->infill && s->voc.n && s->prob) {
        double z = 0;
        for (int32_t i = 0; i < m; i++) z += s->prob[i] = exp(((double)c[i].logit - maxl) / temp);
        for (int32_t i = 0; i < m; i++) s->prob[i] /= z;
        m = infill(s, c, s->prob, m);
        if (m < 0) return s->voc.end_token;
        if (m == 0) return c[0].id; /* (no candidate: cannot happen, the top one is kept) */
        maxl = c[0].logit;
    }
    /* temperature, then draw */
    double total = 0;
    for (int32_t i = 0; i < m; i++) total += exp(((double)c[i].logit - maxl) / temp);
    double r = u * total, acc = 0;
    for (int32_t i = 0; i < m; i++) {
        acc += exp(((double)c[i].logit - maxl) / temp);
        if (r < acc) return c[i].id;
    }
    return c[m - 1].id;
}

/* The masked draw without asking the constraint about every token: where
 * the chain keeps only its k best tokens (greedy: 1; top-k), the k best
 * that fit decide it. The best CHECKED tokens are asked in order; when k
 * of them fit and the k-th ranks strictly above every token not asked,
 * every other token is masked and the chain draws as over the whole mask
 * (the same k survive top-k, nothing after it sees the rest — but
 * top-n-sigma, which looks at every logit first). Returns -1 where that
 * cannot be settled so. */
#define CHECKED 256
static int32_t masked_top(loom_sampler *s, float *logits, double u, float xu) {
    const int32_t k = plain_argmax(&s->p) ? 1 : s->p.top_k;
    if (s->p.mirostat || k <= 0 || 4 * k > CHECKED || s->n_vocab <= CHECKED || s->p.top_n_sigma > 0) return -1;
    struct cand *c = s->cand;
    top_k_scan(c, logits, s->n_vocab, CHECKED);
    int32_t found = 0;
    for (int32_t i = 0; i < CHECKED && found < k; i++)
        if (s->con.fits(s->con.user, c[i].id)) c[found++] = c[i];
    if (found < k || !(c[found - 1].logit > c[CHECKED - 1].logit)) return -1; /* (c[i >= found] is stale: unused) */
    for (int32_t i = 0; i < s->n_vocab; i++) logits[i] = -INFINITY;
    for (int32_t i = 0; i < found; i++) logits[c[i].id] = c[i].logit;
    return chain(s, logits, u, xu);
}

void loom_sampler_penalize(loom_sampler *s, float *logits) { apply_penalty(s, logits); }

int32_t loom_sampler_distribution(loom_sampler *s, float *logits, int32_t *ids, float *probs) {
    apply_penalty(s, logits);
    const float xu = xtc_on(&s->p) ? (float)(next_u64(s->xtc_rng) >> 40) * (1.0f / 16777216.0f) : 0;
    if (s->p.mirostat) {
        const int32_t m = miro_cands(s, logits, s->aux);
        for (int32_t i = 0; i < m; i++) ids[i] = s->cand[i].id, probs[i] = s->aux[i];
        return m;
    }
    if (plain_argmax(&s->p)) {
        ids[0] = loom_argmax(logits, s->n_vocab), probs[0] = 1;
        return 1;
    }
    struct cand *c;
    double temp;
    int32_t m = cut(s, logits, xu, &c, &temp);
    if (temp <= 0) m = 1;
    double z = 0;
    for (int32_t i = 0; i < m; i++) z += exp(((double)c[i].logit - c[0].logit) / (m == 1 ? 1 : temp));
    for (int32_t i = 0; i < m; i++)
        ids[i] = c[i].id, probs[i] = (float)(exp(((double)c[i].logit - c[0].logit) / (m == 1 ? 1 : temp)) / z);
    return m;
}

static int32_t sample(loom_sampler *s, float *logits) {
    apply_penalty(s, logits);
    const double u = draws(&s->p) ? (double)(next_u64(s->rng) >> 11) * (1.0 / 9007199254740992.0) : 0;
    const float xu = xtc_on(&s->p) ? (float)(next_u64(s->xtc_rng) >> 40) * (1.0f / 16777216.0f) : 0;
    int32_t t = chain(s, logits, u, xu);
    if (!s->con.fits || s->con.fits(s->con.user, t)) return t;
    if ((t = masked_top(s, logits, u, xu)) >= 0) return t;
    int32_t any = -1;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (!s->con.fits(s->con.user, i)) logits[i] = -INFINITY;
        else if (any < 0) any = i;
    }
    return any < 0 ? t : chain(s, logits, u, xu); /* no token fits (a vocabulary without '{'): the unmasked draw */
}

int32_t loom_sampler_sample(loom_sampler *s, float *logits) {
    const int32_t t = sample(s, logits);
    if (s->p.mirostat) /* once, for the token drawn */
        s->mu -= s->p.mirostat_eta * (s->miro_surprise - s->p.mirostat_tau);
    return t;
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
