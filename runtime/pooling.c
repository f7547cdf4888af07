/* runtime/pooling.c — pooling of an encoder's hidden states (contract in pooling.h). */
#include "runtime/pooling.h"

#include <math.h>
#include <string.h>

static const char *const names[] = {"none", "mean", "cls", "last", "rank"};

const char *loom_pooling_name(loom_pooling p) { return (unsigned)p < 5 ? names[p] : "?"; }

bool loom_pooling_parse(const char *name, loom_pooling *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) {
            *out = (loom_pooling)i;
            return true;
        }
    return false;
}

void loom_embedding_normalize(float *x, int dim) {
    double ss = 0;
    for (int d = 0; d < dim; d++) ss += (double)x[d] * x[d];
    if (ss > 0) {
        float inv = (float)(1.0 / sqrt(ss));
        for (int d = 0; d < dim; d++) x[d] *= inv;
    }
}

void loom_embedding_pool(loom_pooling p, const float *hidden, int n, int dim, bool normalize, float *out) {
    if (p == LOOM_POOL_MEAN) {
        for (int d = 0; d < dim; d++) {
            double s = 0;
            for (int i = 0; i < n; i++) s += hidden[(size_t)i * dim + d];
            out[d] = (float)(s / n);
        }
    } else {
        memcpy(out, hidden + (p == LOOM_POOL_LAST ? (size_t)(n - 1) * dim : 0), (size_t)dim * sizeof *out);
    }
    if (normalize) loom_embedding_normalize(out, dim);
}
