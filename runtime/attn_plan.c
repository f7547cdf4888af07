/* runtime/attn_plan.c — a batch's attention units for a device (contract
 * in attn_plan.h; the cut follows plan_units of runtime/attention.c). */
#include "runtime/attn_plan.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int32_t seq, pos, row;
} row_ref;

struct loom_attn_plan {
    int max_rows, n_q, n_kv, hd, bt, max_blocks, max_seqs;
    int32_t *hq;      /* (n_q) query heads grouped by KV head */
    int32_t *off;     /* (n_kv + 1) group k is hq[off[k] .. off[k+1]) */
    row_ref *rows;    /* (max_rows) */
    loom_attn_dunit *units;
    int n_units, cap_units;
    int32_t *tables;
    int n_tables, cap_tables;
    int32_t *slot;    /* (max_rows) */
};

loom_status loom_attn_plan_create(int max_rows, int n_q, int n_kv, int head_dim, const int *q_to_kv,
                                  const loom_kv_config *kc, loom_attn_plan **out) {
    *out = NULL;
    if (max_rows < 1 || n_q < 1 || n_kv < 1 || head_dim < 1)
        return loom_error(LOOM_ERR_INVALID, "attention plan: %d rows, %d query / %d KV heads of %d", max_rows, n_q,
                          n_kv, head_dim);
    for (int h = 0; h < n_q; h++)
        if (q_to_kv[h] < 0 || q_to_kv[h] >= n_kv)
            return loom_error(LOOM_ERR_INVALID, "attention plan: query head %d maps to KV head %d of %d", h,
                              q_to_kv[h], n_kv);
    loom_attn_plan *p = calloc(1, sizeof *p);
    if (!p) return loom_error(LOOM_ERR_NOMEM, "out of memory planning attention");
    p->max_rows = max_rows, p->n_q = n_q, p->n_kv = n_kv, p->hd = head_dim, p->bt = kc->block_tokens;
    p->max_seqs = kc->max_seqs;
    p->max_blocks = (kc->max_ctx + kc->block_tokens - 1) / kc->block_tokens;
    /* units <= rows × Σ_k ceil(G_k / NQ) <= rows × (n_kv + ceil(n_q / NQ)) */
    p->cap_units = max_rows * (n_kv + (n_q + LOOM_ATTN_UNIT_NQ - 1) / LOOM_ATTN_UNIT_NQ);
    const int seqs = max_rows < kc->max_seqs ? max_rows : kc->max_seqs;
    p->cap_tables = seqs * p->max_blocks;
    p->hq = malloc(sizeof(int32_t) * (size_t)n_q);
    p->off = calloc((size_t)n_kv + 1, sizeof(int32_t));
    p->rows = malloc(sizeof(row_ref) * (size_t)max_rows);
    p->units = malloc(sizeof(loom_attn_dunit) * (size_t)p->cap_units);
    p->tables = malloc(sizeof(int32_t) * (size_t)(p->cap_tables ? p->cap_tables : 1));
    p->slot = malloc(sizeof(int32_t) * (size_t)max_rows);
    if (!p->hq || !p->off || !p->rows || !p->units || !p->tables || !p->slot) {
        loom_attn_plan_free(p);
        return loom_error(LOOM_ERR_NOMEM, "out of memory planning attention for %d rows", max_rows);
    }
    for (int h = 0; h < n_q; h++) p->off[q_to_kv[h] + 1]++;
    for (int k = 0; k < n_kv; k++) p->off[k + 1] += p->off[k];
    for (int k = 0, i = 0; k < n_kv; k++)
        for (int h = 0; h < n_q; h++)
            if (q_to_kv[h] == k) p->hq[i++] = h;
    *out = p;
    return NULL;
}

void loom_attn_plan_free(loom_attn_plan *p) {
    if (!p) return;
    free(p->hq);
    free(p->off);
    free(p->rows);
    free(p->units);
    free(p->tables);
    free(p->slot);
    free(p);
}

static int row_less(const row_ref *a, const row_ref *b) {
    if (a->seq != b->seq) return a->seq < b->seq;
    if (a->pos != b->pos) return a->pos < b->pos;
    return a->row < b->row;
}

/* insertion sort: batches arrive grouped and ordered, so this is linear then */
static void sort_rows(row_ref *r, int n) {
    for (int i = 1; i < n; i++) {
        row_ref x = r[i];
        int j = i;
        for (; j > 0 && row_less(&x, &r[j - 1]); j--) r[j] = r[j - 1];
        r[j] = x;
    }
}

loom_status loom_attn_plan_build(loom_attn_plan *p, const loom_kv_cache *kv, int n, const int32_t *pos,
                                 const int32_t *seq) {
    p->n_units = p->n_tables = 0;
    if (n < 0 || n > p->max_rows)
        return loom_error(LOOM_ERR_INVALID, "attention plan: %d rows (planned for 1..%d)", n, p->max_rows);
    const int bt = p->bt, qdim = p->n_q * p->hd;
    for (int i = 0; i < n; i++) {
        if (seq[i] < 0 || seq[i] >= p->max_seqs)
            return loom_error(LOOM_ERR_INVALID, "attention plan: row %d, KV slot %d out of range (0..%d)", i, seq[i],
                              p->max_seqs - 1);
        if (pos[i] < 0 || pos[i] >= loom_kv_capacity(kv, seq[i]))
            return loom_error(LOOM_ERR_INVALID, "attention plan: row %d, position %d of slot %d has no KV block", i,
                              pos[i], seq[i]);
        p->rows[i] = (row_ref){seq[i], pos[i], i};
        p->slot[i] = loom_kv_table(kv, seq[i])[pos[i] / bt] * bt + pos[i] % bt;
    }
    sort_rows(p->rows, n);
    for (int r0 = 0, r1; r0 < n; r0 = r1) {
        for (r1 = r0 + 1; r1 < n && p->rows[r1].seq == p->rows[r0].seq;) r1++;
        const int nr = r1 - r0, len_max = p->rows[r1 - 1].pos + 1, nb = (len_max + bt - 1) / bt;
        if (p->n_tables + nb > p->cap_tables)
            return loom_error(LOOM_ERR_INVALID, "attention plan: block tables exceed %d entries", p->cap_tables);
        const int table = p->n_tables;
        memcpy(p->tables + table, loom_kv_table(kv, p->rows[r0].seq), sizeof(int32_t) * (size_t)nb);
        p->n_tables += nb;
        for (int k = 0; k < p->n_kv; k++) {
            const int g = p->off[k + 1] - p->off[k], ng = (g + LOOM_ATTN_UNIT_NQ - 1) / LOOM_ATTN_UNIT_NQ;
            for (int gi = 0; gi < ng; gi++) {
                const int h0 = p->off[k] + g * gi / ng, nh = p->off[k] + g * (gi + 1) / ng - h0;
                const int per = LOOM_ATTN_UNIT_NQ / nh, nc = (nr + per - 1) / per;
                for (int c = 0; c < nc; c++) {
                    const int c0 = r0 + nr * c / nc, c1 = r0 + nr * (c + 1) / nc;
                    loom_attn_dunit *u = &p->units[p->n_units++];
                    memset(u, 0, sizeof *u);
                    u->table = table, u->kvh = k, u->nq = (c1 - c0) * nh, u->len = p->rows[c1 - 1].pos + 1;
                    for (int j = 0; j < u->nq; j++) {
                        const row_ref *rr = &p->rows[c0 + j / nh];
                        u->q_off[j] = rr->row * qdim + p->hq[h0 + j % nh] * p->hd;
                        u->lim[j] = rr->pos;
                    }
                }
            }
        }
    }
    return NULL;
}

const loom_attn_dunit *loom_attn_plan_units(const loom_attn_plan *p, int *n_units) {
    *n_units = p->n_units;
    return p->units;
}

const int32_t *loom_attn_plan_tables(const loom_attn_plan *p, int *n_entries) {
    *n_entries = p->n_tables;
    return p->tables;
}

const int32_t *loom_attn_plan_slots(const loom_attn_plan *p) { return p->slot; }
int loom_attn_plan_max_units(const loom_attn_plan *p) { return p->cap_units; }
int loom_attn_plan_max_tables(const loom_attn_plan *p) { return p->cap_tables; }
