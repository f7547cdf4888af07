/*
 * parallel/draft.c — prompt-lookup proposals (contract in draft.h).
 */
#include "parallel/draft.h"

#include <string.h>

int loom_draft_lookup_in(const int32_t *toks, int n, const int32_t *corpus, int n_corpus, int ngram_min, int ngram_max,
                         int max_out, int32_t *out) {
    if (max_out < 1 || n_corpus < 1 || ngram_min < 1 || ngram_max < ngram_min) return 0;
    int best_len = 0, best_end = -1; /* the occurrence ends at corpus[best_end] */
    if (n == 0) {
        best_len = ngram_min; /* nothing written yet: the corpus from its start (best_end -1) */
    } else {
        /* an edit keeps the order: of equal matches the one nearest where the output's end would be */
        const int32_t last = toks[n - 1];
        int best_dist = 0;
        for (int j = n_corpus - 2; j >= 0; j--) {
            if (corpus[j] != last) continue;
            int len = 1;
            while (len < ngram_max && len < n && j - len >= 0 && corpus[j - len] == toks[n - 1 - len]) len++;
            const int dist = j > n - 1 ? j - (n - 1) : n - 1 - j;
            if (len > best_len || (len == best_len && dist < best_dist)) best_len = len, best_end = j, best_dist = dist;
        }
    }
    if (best_len < ngram_min && !(n > 0 && best_len == n)) return 0; /* a short output may match whole */
    int k = n_corpus - 1 - best_end;
    if (k > max_out) k = max_out;
    memcpy(out, corpus + best_end + 1, (size_t)k * sizeof(int32_t));
    return k;
}

int loom_draft_lookup(const int32_t *toks, int n, int ngram_min, int ngram_max, int max_out, int32_t *out) {
    if (n < 2 || max_out < 1 || ngram_min < 1 || ngram_max < ngram_min) return 0;
    const int32_t last = toks[n - 1];
    int best_len = 0, best_end = -1; /* the occurrence ends at toks[best_end] */
    /* every earlier position of the last token, newest first: how far the
     * match reaches back (ngram_max at most) */
    for (int j = n - 2; j >= 0; j--) {
        if (toks[j] != last) continue;
        int len = 1;
        while (len < ngram_max && j - len >= 0 && toks[j - len] == toks[n - 1 - len]) len++;
        if (len > best_len) {
            best_len = len, best_end = j;
            if (len == ngram_max) break;
        }
    }
    if (best_len < ngram_min) return 0;
    int k = n - 1 - best_end; /* tokens after the occurrence */
    if (k > max_out) k = max_out;
    memcpy(out, toks + best_end + 1, (size_t)k * sizeof(int32_t));
    return k;
}
