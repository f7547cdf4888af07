/*
 * parallel/predict_print.c — a prediction as an aligned table or as one
 * JSON object (contract in predict.h).
 */
#include <stdio.h>

#include "parallel/predict.h"

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

void loom_prediction_print(const loom_prediction *r, const loom_predict_cluster *c, const loom_predict_workload *w,
                           FILE *f) {
    fprintf(f, "prediction  %s: tp %d x pp %d on %d node(s) of %d device(s) (%s)\n", c->name, r->tp, r->pp,
            r->nodes_used, c->devices_per_node, c->dev.name);
    const loom_predict_device *d = &c->dev;
    fprintf(f, "device      %.1f GB/s read, ", r->mem_bw / 1e9);
    if (d->n_curve == 0) fprintf(f, "%.3g TFLOP/s", d->flops / 1e12);
    for (int i = 0; i < d->n_curve; i++)
        fprintf(f, "%s%.3g GFLOP/s at %g row%s", i ? ", " : "matmuls ", d->curve_flops[i] / 1e9, d->curve_rows[i],
                d->curve_rows[i] == 1 ? "" : "s");
    if (d->layer_overhead_s > 0) fprintf(f, "; %.0f us per layer per step", 1e6 * d->layer_overhead_s);
    fprintf(f, "\n");
    fprintf(f, "workload    %d sequence(s) decoding at a mean context of %d; %d prompt(s) of %d tokens in %d chunk(s) "
               "of %d rows\n",
            w->sequences, w->decode_context, w->prompts > 0 ? w->prompts : 1, w->prompt_tokens, r->prompt_chunks,
            r->chunk_rows);
    fprintf(f, "prefill     %10.1f tok/s   time to first token %9.2f ms\n", r->prefill_tps, 1e3 * r->ttft_s);
    fprintf(f, "decode      %10.1f tok/s   inter-token latency %9.2f ms (%.1f tok/s per sequence); %d micro-batch(es) "
               "of %d row(s)\n",
            r->decode_tps, 1e3 * r->round_s, r->round_s > 0 ? 1 / r->round_s : 0, r->micro_batches,
            r->micro_batch_rows);
    fprintf(f, "            a micro-batch's round trip %.2f ms, slowest stage %.2f ms; %.1f MB read per generated "
               "token\n",
            1e3 * r->round_trip_s, 1e3 * r->stage_max_s, r->decode_bytes_per_token / 1e6);
    fprintf(f, "\nrank node stage   tp     weights    KV cache   workspace  fits | decode ms per round: compute     TP "
               "transfers+wait  idle | prefill ms: compute     TP  transfers+wait\n");
    for (int i = 0; i < r->n_ranks; i++) {
        const loom_predict_rank *k = &r->ranks[i];
        char wb[32], kb[32], sb[32];
        loom_format_bytes(wb, sizeof wb, k->weight_bytes);
        loom_format_bytes(kb, sizeof kb, k->kv_bytes);
        loom_format_bytes(sb, sizeof sb, k->workspace_bytes);
        fprintf(f, "%4d %4d %5d %4d %11s %11s %11s  %4s | %28.2f %6.2f %15.2f %4.0f%% | %19.2f %6.2f %15.2f\n",
                k->world_rank, k->node, k->stage, k->tp_rank, wb, kb, sb, k->fits ? "yes" : "NO",
                1e3 * k->dec_compute_s, 1e3 * k->dec_tp_s, 1e3 * k->dec_pp_s, 100 * k->dec_idle,
                1e3 * k->pre_compute_s, 1e3 * k->pre_tp_s, 1e3 * k->pre_pp_s);
    }
    if (!r->fits) fprintf(f, "warning: some ranks need more memory than a device has (%.1f GiB)\n", c->dev.mem_bytes / 1073741824.0);
}

void loom_prediction_json(const loom_prediction *r, const loom_predict_cluster *c, const loom_predict_workload *w,
                          FILE *f) {
    fprintf(f, "{\"cluster\":");
    json_str(f, c->name);
    fprintf(f, ",\"device\":");
    json_str(f, c->dev.name);
    fprintf(f, ",\"tp\":%d,\"pp\":%d,\"world\":%d,\"nodes_used\":%d,\"sequences\":%d,\"prompt_tokens\":%d,"
               "\"decode_context\":%d,\"prompts\":%d,",
            r->tp, r->pp, r->world, r->nodes_used, w->sequences, w->prompt_tokens, w->decode_context,
            w->prompts > 0 ? w->prompts : 1);
    fprintf(f, "\"prefill_tokens_per_s\":%.4f,\"ttft_ms\":%.4f,\"decode_tokens_per_s\":%.4f,\"inter_token_ms\":%.4f,"
               "\"round_trip_ms\":%.4f,\"stage_max_ms\":%.4f,\"micro_batches\":%d,\"micro_batch_rows\":%d,"
               "\"prompt_chunks\":%d,\"chunk_rows\":%d,\"decode_bytes_per_token\":%.1f,\"fits\":%s,\"ranks\":[",
            r->prefill_tps, 1e3 * r->ttft_s, r->decode_tps, 1e3 * r->round_s, 1e3 * r->round_trip_s,
            1e3 * r->stage_max_s, r->micro_batches, r->micro_batch_rows, r->prompt_chunks, r->chunk_rows,
            r->decode_bytes_per_token, r->fits ? "true" : "false");
    for (int i = 0; i < r->n_ranks; i++) {
        const loom_predict_rank *k = &r->ranks[i];
        fprintf(f, "%s{\"rank\":%d,\"node\":%d,\"stage\":%d,\"tp_rank\":%d,\"weight_bytes\":%lld,\"kv_bytes\":%lld,"
                   "\"workspace_bytes\":%lld,\"fits\":%s,\"decode_compute_ms\":%.4f,\"decode_tp_ms\":%.4f,"
                   "\"decode_transfer_ms\":%.4f,\"decode_idle_frac\":%.4f,\"prefill_compute_ms\":%.4f,"
                   "\"prefill_tp_ms\":%.4f,\"prefill_transfer_ms\":%.4f}",
                i ? "," : "", k->world_rank, k->node, k->stage, k->tp_rank, (long long)k->weight_bytes,
                (long long)k->kv_bytes, (long long)k->workspace_bytes, k->fits ? "true" : "false",
                1e3 * k->dec_compute_s, 1e3 * k->dec_tp_s, 1e3 * k->dec_pp_s, k->dec_idle, 1e3 * k->pre_compute_s,
                1e3 * k->pre_tp_s, 1e3 * k->pre_pp_s);
    }
    fprintf(f, "]}\n");
}
