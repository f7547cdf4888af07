/*
 * runtime/kernels.h — the compute kernels behind one interface table: matrix
 * kernels over quantized weights, the attention work unit, row operations;
 * the CPU levels (scalar, AVX2, AVX-512) chosen at run time.
 *
 * Contract: weights are borrowed (views into an mmapped GGUF file in the
 * GGML block layouts of quant.h, rows at any alignment; or a level's own
 * layout, made once at load time: the r8 layout below) and never copied.
 * Kernels are single-threaded, allocate nothing (at most ~44 KiB of stack
 * for a prefill panel) and cannot fail: argument shapes are the caller's
 * contract (k a multiple of the weight type's block size, buffers large
 * enough); the caller splits rows between threads. Only loom_isa_set()
 * returns a status.
 *
 * Speed (one Sapphire Rapids core, AVX-512; tests/bench_matmul.c): decode
 * streams 4-bit weights at ~17 GB/s and 8-bit/float ones at ~30 GB/s;
 * prefill (n >= 4..20, see cpu/cpu_kernels.h) decodes 16-row panels once per
 * 1024 columns and runs VNNI outer products, ~350 GFLOP/s for quantized
 * weights and ~110 for float ones.
 *
 * AMD EPYC Zen 1 (family 23 model 1, AVX2 only; 2 cores of a VM): decode is
 * bound by instructions, not by memory. A plain AVX2 read streams 12.8-13.6
 * GB/s on one core (20-21 on two); the decode row tiles (bench_matmul,
 * 16384 x 4096, n = 1, one thread) stream Q4_0 at 6.0 GB/s, Q4_1 6.7, Q5_0
 * 4.6, Q4_K 6.5, Q6_K 8.0, Q8_0 9.5, F16 11. Zen 1 runs each 256-bit
 * operation as two 128-bit uops (VPERM2I128 as 8), so what counts is uops
 * per weight: reducing 4/5-bit pair sums in int16 (VPHADDW) instead of one
 * VPMADDWD per row, and joining 128-bit halves without VPERM2I128, gave
 * +20 % (Q4_0, Q4_1) and +7 % (Q5_0, Q5_1), and moving Q8_0 from per-(row,
 * token) register tiles with a horizontal sum each to the same row tiles
 * +10 % (8.6 -> 9.5 GB/s); one software prefetch per cache
 * line instead of per block changed nothing. llama.cpp is instruction-bound
 * here too (it repacks Q4_0 into 8-row interleaved blocks on AVX2) and
 * decodes slower than loom (launch/bench-results/).
 *
 * AMD EPYC Zen 4 (family 25 model 17, AVX-512 with VNNI; 2 cores of a VM,
 * loom bench's read probe 28-30 GB/s on one core, 34-56 on two, varying
 * between runs): decode was bound by how the rows were walked, not by
 * arithmetic. The register tiles read 4 rows side by side, and walking rows
 * r..r+3 then r+4..r+7 gave the memory system four streams that each end
 * after one row (1-5 KiB); Zen 4's prefetchers lose such streams at every
 * row, and even the software prefetch of the next tile left every weight
 * type at 10-15 GB/s on one core (bench_matmul 65536 x 2048 from DRAM; 6-7
 * without it; with k = 8192, i.e. longer rows, 17-18). A tile now reads rows
 * i, i+h, i+2h, i+3h, so each stream runs through h consecutive rows
 * (cpu/cpu_kernels.h): Q4_K 10.6 -> 20.1 GB/s, Q4_0 11.9 -> 18.9, Q6_K 10.3
 * -> 27.8, Q8_0 13.1 -> 34.1, F16 18.9 -> 27.7 on one core, where the
 * 4/5-bit types reach what their arithmetic allows from the L2 cache (Q4_K
 * 21.7, Q4_0 19.9, Q5_K 20.1, Q6_K 34.5, Q8_0 46.8) and Q8_0/Q6_K the
 * read bandwidth. On Zen 4 the software prefetch within those streams costs
 * (Q8_0 34.1 -> 26.9 GB/s) and is off (dispatch.c chooses by CPU); tiles of
 * several tokens keep it (Q4_K n = 4: 115 -> 125 GFLOP/s). Zen 4 runs a
 * 512-bit operation as two 256-bit halves, so AVX2 and AVX-512 tiles with
 * the same operation count run at the same speed from the cache (Q4_K 20.4
 * vs 20.3 GB/s); what counts is operations per weight: the super-block's
 * scale unpacking in vector registers (+10 % AVX2 Q4_K) and one F16
 * conversion for d and dmin (+4 % AVX-512 Q4_K) helped, VPSHUFB instead of
 * VPERMW for the scales did not (Q6_K -7 %). After the walk, 4-bit decode
 * on one core (0.90-0.94x llama.cpp, which repacks Q4_0/Q4_K into 8-row
 * interleaved blocks here) was arithmetic: about 44 vector operations per
 * Q4_K super-block and row, half of them scales, mins and float steps. Two
 * orders of the same bytes cut them (matmul_avx512.c): Q4_K/Q5_K by
 * 128-element halves (one load gives two chunks' nibbles, VPDPBUSD and a
 * lossless pack to int16 feed one VPDPWSSD of the scales, the scales and
 * mins of a tile's 4 rows unpacked in one 512-bit pass and spread by
 * in-lane VPSHUFB; VPERMT2W there was 5-8 % slower), about 30 operations:
 * Q4_K 20.6 -> 24.9 GB/s from DRAM, 21.7 -> 26.3 from L2; Q4_0/Q4_1/Q5_0/
 * Q5_1 by quads of blocks (a block per 128-bit lane, its 4 scales by one
 * conversion): Q4_0 18.6 -> 22.6. 1-thread decode is now 0.99-1.05x
 * llama.cpp for the 4-bit models (launch/bench-results/). What remained
 * was the per-row work (scales, horizontal sums, a stream per row), which
 * the r8 layout below shares across 8 rows: bench_matmul 65536 x 2048 from
 * DRAM, one core, Q4_0 / Q4_K: AVX-512 rows 22.8 / 24.1 GB/s, r8 (256-bit
 * VNNI) 31.7 / 33.4; the AVX2 level 16.5 / 16.2 -> 33.2 / 32.4, Q8_0 23.2
 * -> 32.2, Q6_K 20.0 -> 27.8 (32768 rows); 2-token tiles Q4_K 121 -> 184
 * GFLOP/s, 4-token 129 -> 215. Two groups per 512-bit vector read two
 * streams and fell to 16 GB/s from DRAM (52 from L3), so decode takes one
 * group per 256-bit vector and only prefill pairs them (the bytes are
 * reused from L1/L2 there): Q4_0 / Q4_K 329 / 311 GFLOP/s at 128 tokens
 * against the rows' panel GEMM's 307 / 313, once the 8 VPDPBUSD of a block
 * ran in two dependency chains (one chain: 300 / 305; they were
 * latency-bound). Q5_K's fifth bits cost prefill 250 GFLOP/s against its
 * rows' 280 while each 8-token pass unpacked the quants again; the
 * K-quants' prefill now unpacks 8 super-blocks of a pair once into a 43 KiB
 * panel that every pass reads (4 in 21 KiB: Q5_K 300, Q4_K 306-315; 8:
 * Q4_K / Q5_K / Q6_K 333 / 332 / 300 at k = 2048, 311 / 311 / 278 at 8192
 * where 4 gave 321 / 321 / 296 and 294 / 294 / 271); Q5_K decode (256-bit
 * VNNI) reads 38 GB/s from L3 where its rows read 23, n = 4 at 183-193
 * GFLOP/s against 120. Q6_K was arithmetic in the layout too (AVX2 r8: 30
 * GB/s from L3, 27 from DRAM; a VNNI kernel over it read 41 from L3 but
 * 22.5 from DRAM at k = 5632, slower than the rows' 25.8) until its bytes
 * changed: with the 6-bit quants of three quarters whole in a byte's low
 * bits and the fourth quarter's bits in their top two (11 operations per 4
 * vectors of quants where nibbles + high-bit pairs took 17, and the -32
 * offset as one sum shifted once instead of negated pairs per scale), the
 * AVX2 kernel reads 40 GB/s from L3 and 33 from DRAM, the 256-bit VNNI one
 * 46 and 36 (k = 5632; rows 26), n = 2 / 4 156 / 189 GFLOP/s from L3
 * against 116 / 138. TinyLlama Q6_K, one thread: decode 30.0 -> 33.8
 * tokens/s (LOOM_ISA=avx2 28.2 -> 31.8), prefill the same (the panel
 * prefill, 270-296 GFLOP/s against the rows' GEMM 285-297). The same for
 * Q5_K (five sub-blocks' 5-bit quants whole in a byte's low bits, the
 * other three's bits in the top three of the five, chunks stored in the
 * order read: 23 operations per 8 vectors where nibbles + fifth bits take
 * 36) lifts the AVX2 kernel from DRAM (k = 5632: 23.6 -> 28.0 GB/s; from L3
 * 28 -> 31; TinyLlama Q5_K_M LOOM_ISA=avx2 decode 33.4 -> 35.2 and 31.5
 * -> 33.7 tokens/s in two sets of three alternating rounds) but slowed the
 * 256-bit VNNI one (32.6 -> 29.5 GB/s from DRAM at k = 2048, 38 -> 37 from
 * L3; a software prefetch made it 19; stored group-major and read
 * sub-block-major both fell to 16-18): so the levels below AVX-512 hold
 * Q5_K whole and AVX-512 keeps the file's nibbles and fifth bits
 * (loom_r8_q5_whole; the repack writes what the active level reads). The
 * AVX2 level's K-quant prefill took each group's quants apart again for
 * every 4 tokens; a panel of 4 super-blocks unpacked once
 * (r8_kgroups, as AVX-512's r8_kpairs) gives, Zen 4, n = 128, Q4_K / Q5_K
 * / Q6_K 172 / 149 / 140 -> 206 / 203 / 178 GFLOP/s (the rows' GEMM 183 /
 * 149 / 130), TinyLlama prefill with LOOM_ISA=avx2, one thread: Q4_K_M
 * 81.8 -> 97.8, Q5_K_M 72.8 -> 94.2, Q6_K 64.3 -> 86.2 tokens/s.
 * Two threads (Zen 4, 2 cores of a VM): one thread decodes at 87-104 % of
 * the probe's read bandwidth, two at 62-92 %; the engine's caller thread
 * waits 5 % of a 2-thread decode at the pool's barriers, and the same 154
 * TinyLlama-shaped Q4_0 matmuls in a bare loop read 21-59 GB/s from one
 * repetition to the next whether each matrix's rows are split in halves,
 * whole matrices alternate between the threads or each thread takes half
 * the model (two processes at once: 55-69 GB/s in a good minute). What two
 * threads reach is this machine's bandwidth of the minute: the probe reads
 * ~36 GB/s in some minutes and ~55 in others, so loom bench now probes
 * before and after every decode repetition and sets each against the
 * probes beside it (two threads: 87-100 % of those, launch/bench-results/).
 * Weight copies sit in 2 MiB pages
 * (MADV_HUGEPAGE, runtime/model.c): TinyLlama Q4_0 one thread +7 %.
 * Batches of a few tokens from DRAM (batched decode, pipeline
 * micro-batches): a pass over a group's or a pair's bytes that does
 * arithmetic for 8 tokens per block leaves the hardware prefetchers behind,
 * and each block's first load waits on DRAM: at n = 16 (two 8-token passes)
 * the r8 kernels read 19-25 % slower from DRAM than from L3 until the first
 * pass fetched the next group / pair / panel into L2 (loom_prefetch_l2,
 * cpu_kernels.h: AVX-512 Q4_K 207 -> 255 GFLOP/s, Q4_0 254 -> 316; AVX2
 * Q6_K 134 -> 169; 16 TinyLlama Q4_K_M sequences, 2 threads, 176 -> 207
 * tokens/s); decode (one pass) streams and went without (a prefetch there
 * cost), but a walk over a model's matrices with one token (bench_matmul
 * --stream, not one big matrix called again and again) reads AVX-512 Q4_K
 * and Q5_K 10-16 % faster with the next group fetched into L2 while a group
 * is multiplied, in minutes when the host's memory answers slowly up to 25
 * % (TinyLlama Q5_K_M one thread), for 8 % from L3; Q4_0 and Q6_K gain
 * nothing and take none, Q4_K only on a core alone on its host (two threads
 * filling the memory system lost 4 % by it; Q5_K gained 2-18 % there too:
 * matmul_avx512.c: r8_matmul). On AVX-512 r8_group's 4-token chunks made n = 5..7 two passes, the
 * second of 1-3 tokens streaming the group again (Q4_K 131-151 GFLOP/s from
 * DRAM, 207-225 from L3), and Q4_0 at n = 2..4 gave 196-226: pairs of groups
 * take Q4_0/Q4_1 from 2 tokens (matmul_avx512.c: r8_pair_n; Q4_0 n = 4
 * 303); Q5_K's 4-token chunk fetches the next group too (159 -> 183 from
 * DRAM), 2-3 tokens go without (3-8 % slower with it). A K-quant panel (quants
 * split once, stored, read by every 8-token pass) pays its stores back only
 * over several passes: up to 8 / 16 / 24 tokens (Q5_K / Q6_K / Q4_K, by
 * the cost of splitting their bits) passes that split the r8 bytes in
 * registers each time win (Q4_K n = 8 222 -> 298 GFLOP/s from DRAM; 8
 * TinyLlama Q4_K_M sequences, one thread, 96 -> 127 tokens/s), and Q4_K's
 * and Q6_K's, splitting each chunk for two / four sub-blocks, from 2
 * tokens (4 TinyLlama Q6_K sequences 75 -> 84) — compiled in a
 * function of their own: inlined into the panels' function, the panels
 * lost a third (GCC's register allocation of the larger function).
 *
 * ISA levels (each includes the ones before it):
 *   scalar  plain C, the reference: simple and obviously right;
 *   avx2    AVX2 + FMA + F16C + BMI2 (and the OS saving YMM state);
 *   avx512  AVX-512 F/BW/VL/DQ + VNNI (and the OS saving ZMM/opmask state).
 * The active level is loom_isa_detect() unless the environment variable
 * LOOM_ISA=scalar|avx2|avx512 asks for a lower one, or loom_isa_set() forced
 * one. Every level computes the same integer dot products; only the order of
 * float accumulation differs, so results differ across levels by rounding.
 *
 * Batch invariance (what a row's result depends on). On one ISA level, the
 * output for a row — a matmul output row, an attention output row
 * (attention.h), an RMSNorm/SwiGLU row (rowops.h), a quantized activation
 * row — is a function of that row's inputs, the weights and the cache's
 * configuration (block size, context size), and not of the other tokens,
 * rows or sequences in the call, how rows are split between threads, or
 * the number of threads:
 *   scalar, AVX2  bit-identical, for every weight type and batch size
 *                 (tests/test_matmul.c and test_attention.c check it around
 *                 every switch of code path);
 *   AVX-512       bit-identical for attention, the row ops and weights in
 *                 the r8 layout (below); matmul over the file's rows not
 *                 yet: its register tiles (n < loom_gemm_min_n) and its
 *                 panel GEMM round differently, so a row changes by float
 *                 rounding (within 2e-5 of sum |w|·|a|, tested) when the
 *                 number of tokens in a call crosses that threshold.
 * Why it matters: the activations are quantized to 8 bits, so a difference
 * of one float ulp in one layer moves a few activations by a quantization
 * step in the next; over SmolLM2's 30 layers that grows to ~0.03σ of the
 * logits (the size of loom's distance to llama.cpp), enough to flip a
 * near-tie greedy token and most seeded samples within a few tokens. With
 * the promise, a sequence's tokens are the same whether it runs alone or
 * batched with others (tests/e2e/generate_cli.sh), like vLLM's
 * batch-invariant mode but always on. How: kernels whose lanes hold partial
 * sums of one (row, token) keep the same lanes and order for every tile
 * shape; AVX2's 4/5/6-bit kernels hold one row per lane in both their row
 * tiles and their GEMM and share the integer group sums and the float steps
 * (cpu/gemm_avx2.c); attention cuts every key range at fixed positions
 * (attention.h). Tensor parallelism splits sums across ranks and is outside
 * this promise.
 *
 * Activation rows (what loom_act_quantize writes, what loom_matmul reads; one
 * layout for every ISA):
 *   F32, F16, BF16 weights — float x[k] (plain copy).
 *   Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4 weights ("q8 32-blocks", nb = k/32):
 *       int8_t qs[k];    quants, x[j] ~ d[j/32] * qs[j], |qs| <= 127
 *       float  d[nb];    per-block scale: max|x| / 127
 *       float  s[nb];    d[b] * sum(qs[32b .. 32b+31]) (the block's sum)
 *     k + 8*nb bytes; float fields are read unaligned-safely.
 *   Q3_K, Q4_K, Q5_K, Q6_K weights: k/256 GGML Q8_K blocks (loom_block_q8_K:
 *       float d; int8_t qs[256]; int16_t bsums[16]), d = max|x| / 127.
 * Quantization rounds x/d to nearest (ties to even), so each dequantized
 * activation is within d/2 (plus a few float ulps) of its input.
 */
#ifndef LOOM_KERNELS_H
#define LOOM_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/status.h"
#include "runtime/types.h"

typedef enum { LOOM_ISA_SCALAR, LOOM_ISA_AVX2, LOOM_ISA_AVX512, LOOM_ISA_COUNT } loom_isa;

/* Best level the CPU and OS support (cpuid and XGETBV). */
loom_isa loom_isa_detect(void);

/* The active level: loom_isa_set()'s choice, else LOOM_ISA from the
 * environment (clamped to detect(), with one line on stderr if it asked for
 * more, or named no level), else detect(). Thread-safe. */
loom_isa loom_isa_get(void);

/* Forces a level for every later kernel call. Returns an error naming the
 * missing CPU/OS features if `isa` is not supported (the active level is
 * then unchanged). Not meant to race with kernel calls on other threads. */
loom_status loom_isa_set(loom_isa isa) LOOM_MUST_USE;

/* How many cores decode on this host at once (an engine's threads times
 * the ranks on its host; 1 until an engine says). A speed choice only, the
 * results are the same bits: one core alone streams its weights at what
 * DRAM's latency allows and gains from fetching ahead in software, several
 * can fill the memory system and then lose by it (AVX-512 Q4_K's one token,
 * matmul_avx512.c: r8_matmul). The
 * last engine created in the process sets it. */
void loom_set_host_cores(int n);
int loom_host_cores(void);
/* The bytes of weights this host's cores read per step (an engine's times
 * the ranks on its host; 0 until an engine says), and the L3's size (sysfs;
 * -1 unknown). A speed choice as above: more weights than the L3 holds
 * stream from DRAM, where the r8 kernels read small batches too in several
 * streams (dispatch.c: loom_r8_stream_n). The last engine created sets it. */
void loom_set_host_weights(int64_t bytes);
int64_t loom_l3_bytes(void);

/* "scalar", "avx2", "avx512"; "?" for anything else. */
const char *loom_isa_name(loom_isa isa);

/* Whether this CPU/OS can run `isa`; when it cannot and `missing` is not
 * NULL, writes the names of the missing features there (NUL-terminated,
 * truncated to cap bytes). */
bool loom_isa_supported(loom_isa isa, char *missing, size_t cap);

/* dst[0..k) = the k elements of a row of type t (k a multiple of its block
 * size). Bit-equal to GGML's dequantization and to quant.h. Types with no
 * dequantizer (!loom_type_can_matmul and not Q8_K) leave dst untouched. */
void loom_dequant_row(loom_type t, const void *src, float *dst, int64_t k);

/* Bytes of one activation row of k elements for weight type wt (layouts
 * above); 0 if wt cannot matmul or k is not a multiple of its block size. */
size_t loom_act_row_bytes(loom_type wt, int64_t k);

/* Quantizes the float row x[0..k) into dst (loom_act_row_bytes(wt, k) bytes,
 * any alignment) for weight type wt. Non-finite inputs give unspecified
 * (but memory-safe) results. */
void loom_act_quantize(loom_type wt, const float *x, void *dst, int64_t k);

/* Inverse of loom_act_quantize: dst[0..k) = the values the kernels actually
 * multiply with (for tests and error bounds). */
void loom_act_dequantize(loom_type wt, const void *src, float *dst, int64_t k);

/* y[t*ldy + (r - r0)] = sum_j W[r][j] * x_t[j]   for r in [r0, r1), t in [0, n)
 *   w:  row 0 of W, type wt, k columns; row r starts at w + r*w_stride bytes
 *       (any alignment);
 *   xq: n activation rows made by loom_act_quantize(wt, ...), row t at
 *       xq + t*xq_stride bytes;
 *   y:  n rows of at least r1-r0 floats, ldy floats apart (ldy >= r1-r0).
 * n = 1 streams each weight row once (decode); n > 1 reuses every loaded
 * weight block for several tokens (prefill). Nothing happens if r1 <= r0 or
 * n <= 0, or if wt cannot matmul. */
void loom_matmul(loom_type wt, const void *w, size_t w_stride, int64_t k, int64_t r0, int64_t r1,
                 const void *xq, size_t xq_stride, int64_t n, float *y, int64_t ldy);

/* ---- weights with rows interleaved by eights (the "r8" layout) ----
 *
 * A level may hold a weight type in a layout of its own, made once at load
 * time (runtime/model.h: loom_weights_repack) from the GGUF rows: the rows in
 * groups of 8 (the last group padded with zero rows), group G at
 * G * 8 * loom_type_row_bytes(wt, k) bytes, and inside a group the 8 rows'
 * blocks side by side, so one stream serves 8 rows and a row's lane is fixed
 * (llama.cpp repacks Q4_0/Q4_K into 8-row blocks for the same reason).
 * Q4_0: 144 bytes per 32-element block of the 8 rows, at 144 b:
 *   uint16_t d[8];          the rows' F16 scales
 *   uint8_t  qs[4][8][4];   qs[j][r][i] = row r's qs[4j + i] (its element
 *                           4j+i in the low nibble, 16+4j+i in the high one)
 *   (18 bytes per row, as in the file);
 * Q4_1: 160 bytes per block of the 8 rows: uint16_t d[8], m[8]; then qs as
 *   Q4_0's (20 bytes per row, as in the file);
 * Q8_0: 272 bytes per block of the 8 rows: uint16_t d[8]; int8_t
 *   qs[8][8][4] (qs[j][r][i] = row r's element 4j+i) (34 bytes per row);
 * MXFP4: 136 bytes per block of the 8 rows: uint8_t e[8] (the rows' E8M0
 *   scales), then qs as Q4_0's (17 bytes per row, as in the file);
 * IQ4_NL: as Q4_0 (144 bytes; its nibbles index the grid, quant.h);
 * Q3_K: 912 bytes per super-block of the 8 rows: uint16_t d[8]; int8_t
 *   sc[16][8] (the 16 scales unpacked, less 32, as Q6_K's); uint8_t
 *   hm[8][8][4] (hm[g][r][i] = row r's hmask[4g + i]: bit 4h + j the third
 *   bit of element 128h + 32j + 4g + i); uint8_t qs[2][8][8][4] (qs[h][g][r][i]
 *   = row r's qs[32h + 4g + i]: bits 2j, 2j+1 that element's low two) (114
 *   bytes per row where the file has 110: the scales unpacked once); the
 *   kernels run it as Q6_K with 3-bit quants and an offset of 4;
 * Q2_K: 672 bytes per super-block of the 8 rows: uint16_t d[8], dmin[8];
 *   uint8_t sm[16][8] (the file's scale | min << 4 bytes); qs as Q3_K's
 *   (84 bytes per row, as in the file): Q6_K's paths with 2-bit quants and
 *   the mins as Q4_K's (a -dmin step);
 * Q4_K: 1184 bytes per 256-element super-block of the 8 rows, at 1184 b:
 *   uint16_t d[8], dmin[8];
 *   uint8_t  sc[8][8], m[8][8]; sc[s][r], m[s][r]: row r's 6-bit scale and
 *                           min of sub-block s, unpacked
 *   uint8_t  qs[32][8][4];  qs[j][r][i] = row r's qs[4j + i] (sub-block
 *                           2(j/8) in the low nibbles, 2(j/8)+1 in the high)
 *   (148 bytes per row where the file has 144: the scales unpacked once);
 * Q5_K: 1440 bytes per super-block of the 8 rows: Q4_K's d, dmin, sc, m,
 *   then on AVX-512 uint8_t qh[8][8][4] (qh[j][r][i] = row r's qh[4j + i]:
 *   bit s is element 32s + 4j + i's fifth bit), then qs as Q4_K's; on the
 *   other levels uint8_t q[5][8][8][4] (q[c][g][r][i], e = 4g + i: bits
 *   0-4 row r's quant of element 32c + e for c < 5; those of elements 160 +
 *   e, 192 + e, 224 + e in bits 5-7 of c = 0, 1, 2 (their low three) and of
 *   c = 3, 4 (bits 3-4 of 160 + e and 192 + e; bit 3 and bit 4 of 224 + e
 *   in bit 7), cpu_kernels.h: loom_r8_q5_get) (180 bytes per row where the
 *   file has 176 either way);
 * Q6_K: 1680 bytes per super-block of the 8 rows: uint16_t d[8]; int8_t
 *   sc[16][8]; then uint8_t q[2][8][3][8][4]: q[h][g][j][r][i], with e =
 *   128h + 4g + i, holds row r's 6-bit quant of element e + 32j in bits
 *   0-5 and bits 2j, 2j+1 of element e + 96's in bits 6-7 (one stream,
 *   read in order: with ql and qh in two regions Zen 4 fetched the rows
 *   from DRAM at 13 GB/s instead of 23) (210 bytes per row, as in the
 *   file).
 * The scalar level computes over it what it computes over the rows; the
 * SIMD levels compute the AVX2 level's integer sums and float steps for
 * every token count, so a row's result is the AVX2 level's bits for the
 * file's rows, whatever the call (tests/test_matmul.c) — but for the
 * AVX-512 K-quants and IQ4_NL from loom_r8_gemm_bits_from tokens, which are
 * its rows' GEMM's bits. */

/* Whether the active level holds wt in the r8 layout (loom_weights_repack
 * asks); the environment variable LOOM_R8=0|1 overrides (never / wherever
 * the type has the layout). */
bool loom_matmul_prefers_r8(loom_type wt);
/* Whether some level has a kernel for wt in the r8 layout (Q4_0, Q4_1,
 * Q8_0, MXFP4, IQ4_NL, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K). */
bool loom_type_has_r8(loom_type wt);
/* Bytes per row of k columns in the r8 layout (a group is 8 of them); 0 if
 * wt has none or k is not a multiple of its block size. */
size_t loom_r8_row_bytes(loom_type wt, int64_t k);
/* Bytes of nr rows of k columns in the r8 layout: whole groups of 8 rows. */
size_t loom_r8_bytes(loom_type wt, int64_t nr, int64_t k);
/* dst (loom_r8_bytes) = rows [0, nr) of src (rows src_stride bytes apart,
 * k columns) in the r8 layout; wt must have it (loom_type_has_r8). */
void loom_repack_r8(loom_type wt, const void *src, size_t src_stride, int64_t nr, int64_t k, void *dst);
/* Row `row` of r8 weights (k columns) as floats, bit-equal to
 * loom_dequant_row on the row it came from (a tied embedding table held in
 * the layout for its lm head). */
void loom_r8_dequant_row(loom_type wt, const void *r8, int64_t row, int64_t k, float *dst);
/* Rows per thread of a matmul split over a pool (loom_split_range): a
 * multiple of this (the kernels' tiles, r8 groups and pairs), so a thread
 * always starts at a group; the parallel repack splits the same way, so
 * each thread first touches the pages it will read (NUMA). */
#define LOOM_MATMUL_ROW_ALIGN 16
/* loom_matmul over r8 weights: w the r8 copy (w_stride =
 * loom_r8_row_bytes(wt, k)), r0 a multiple of 8; otherwise as loom_matmul. */
void loom_matmul_r8(loom_type wt, const void *w, size_t w_stride, int64_t k, int64_t r0, int64_t r1,
                    const void *xq, size_t xq_stride, int64_t n, float *y, int64_t ldy);
/* How the r8 kernels walk (runtime/cpu/dispatch.c chooses by CPU): decode
 * reads its groups in `streams` streams (1, 2 or 4; anything else: the
 * CPU's choice), the AVX-512 level up to stream_n tokens so (1-4; anything
 * else: the CPU's and the host's choice), and its Q4_0 / Q4_1 (both levels)
 * and K-quants (AVX-512) go to a panel GEMM from gemm_min_n tokens (0:
 * never; negative: the CPU's choice); kmul 0 / 1 has the AVX-512 Q4_K
 * direct passes scale without / with VPMULLD (negative: the CPU's choice). The
 * same bits every way but the AVX-512 K-quants' GEMM
 * (loom_r8_gemm_bits_from); for tests and benchmarks. */
void loom_r8_walk_set(int streams, int stream_n, int64_t gemm_min_n, int kmul);
/* From how many tokens the active level's r8 kernels for wt give the bits
 * of its rows' panel GEMM (on AVX-512, loom_matmul over the file's rows
 * from loom_matmul_invariant_rows tokens) rather than the AVX2 level's:
 * the AVX-512 K-quants' (dispatch.c); 0: never. */
int64_t loom_r8_gemm_bits_from(loom_type wt);

/* The fewest tokens from which a loom_matmul call computes every row as a
 * call of more tokens does (batch invariance above): 1 on the scalar and
 * AVX2 levels; on AVX-512 the largest token count that still goes to the
 * register tiles, plus one. The prefix cache leaves at least this many of
 * a prompt's tokens to compute (parallel/scheduler.c), so that a prompt
 * whose start was cached computes its tail with the kernels a cold run of
 * it used and gives the same greedy tokens. */
int loom_matmul_invariant_rows(void);

/* Whether loom_matmul/loom_act_* handle weight type wt: F32, F16, BF16,
 * Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, MXFP4, Q3_K, Q4_K, Q5_K, Q6_K. */
bool loom_type_can_matmul(loom_type wt);

/* ======================= the kernel interface table =======================
 *
 * Every kernel is reached through a loom_kernels table: one per CPU level
 * (runtime/cpu/: scalar, avx2, avx512), and a device backend (CUDA) will be
 * one more table of the same shape. Modules call loom_kernels_get()'s
 * entries (or the wrappers loom_matmul, loom_row_*, loom_attention_*); the
 * kernel files include only this header and their helpers. Entries are
 * single-threaded, allocate nothing and cannot fail; shapes are the
 * caller's contract. Every entry is required unless marked optional. */

/* y[t*ldy + i] = dot(W row i, activation row t) for i in [0, nr), t in [0, n);
 * w is row 0 of the range (rows w_stride bytes apart, any alignment), xq
 * holds n activation rows (loom_act_quantize) xq_stride bytes apart;
 * nr >= 1, n >= 1. */
typedef void loom_matmul_fn(const uint8_t *w, size_t w_stride, int64_t k, int64_t nr, const uint8_t *xq,
                            size_t xq_stride, int64_t n, float *y, int64_t ldy);

/* One attention work unit (runtime/attention.h has the method): nq queries
 * attending to key positions [p_begin, p_end) of one sequence and KV head.
 * Query j sees position t iff lo[j] <= t <= lim[j] (lo NULL: 0 <= t; a
 * sliding window raises it). With softcap > 0 every score s (in the base-2
 * units below) becomes softcap·tanh(s/softcap) first (gemma2). The kernel first writes q (the
 * queries × qscale, transposed, so the score loop broadcasts q[d·16 + j] at
 * fixed offsets), then sets m[j] (running max, base-2 units; -inf if it saw
 * nothing), l[j] (sum of 2^(s - m)) and acc[j] (sum of 2^(s - m) · V[t]);
 * with `out`, it writes acc[j] · (1/l[j]) to out[j] instead (acc is then
 * scratch). Keys are visited in tiles of 16 positions of one block; the SIMD
 * kernels update the running max once per chunk of LOOM_ATTN_CHUNK tiles
 * (chunks depend only on p_begin and the block size, never on nq or p_end
 * beyond a query's last position, so a query's result does not depend on
 * its unit mates).
 *
 * Cache blocks (kv_cache.h layout) are reached by pointer arithmetic only:
 * block b of this layer's keys starts at k + b·block_bytes and holds
 * (KV head, head_dim, block_tokens) elements, its values at v + b·block_bytes
 * (KV head, block_tokens, head_dim). */
#define LOOM_ATTN_NQ_MAX 16 /* queries per unit */
#define LOOM_ATTN_TILE 16   /* key positions per tile */
#define LOOM_ATTN_CHUNK 4   /* tiles per online-softmax step */

typedef struct {
    const uint8_t *k, *v;   /* this layer's key / value block 0; v NULL: the values are the keys (a v_is_k
                             * cache, kv_cache.h): value element d of slot t is the key block's (d, t) */
    size_t block_bytes;     /* from one block to the next */
    int block_tokens, head_dim;
    int f16;                /* elements are F16 */
    int q8;                 /* elements are Q8_0 (kv_cache.h: int8, an F16 scale per 32 dimensions); else F32 */
    int kvh;                /* KV head */
    const int32_t *table;   /* block table of the sequence */
    int nq;                 /* 1..LOOM_ATTN_NQ_MAX */
    int p_begin, p_end;     /* p_begin a multiple of block_tokens; p_end <= the table's capacity */
    int p_pf;               /* >= p_end: blocks below it may be prefetched (the next segment's) */
    const float *const *qp; /* (nq) query rows, head_dim floats each */
    float qscale;           /* log2(e)/√head_dim */
    float *const *out;      /* (nq) output rows, or NULL (keep m, l, acc for a merge) */
    const int32_t *lim;     /* (nq) last position each query sees */
    float *q;               /* (head_dim, LOOM_ATTN_NQ_MAX) scratch, 64-byte aligned */
    float *m, *l;           /* (nq) */
    float *acc;             /* (nq, head_dim), 64-byte aligned */
    float *work;            /* LOOM_ATTN_WORK_FLOATS(head_dim) floats, 64-byte aligned */
    const int32_t *lo;      /* (nq) first position each query sees, or NULL (0) */
    float softcap;          /* 0, or the cap of the scores in base-2 units (cap·log2(e)) */
} loom_attn_unit;

/* The kernels' work area: running sums (NQM, TILE); scores and probabilities
 * (CHUNK, NQM, TILE) each; two (hd, TILE) areas (a tile's keys and values
 * as floats, a partial tile, outputs with the queries in the lanes); and
 * (CHUNK, 16, TILE) more (keys as floats, a few rows at a time). */
#define LOOM_ATTN_WORK_FLOATS(hd) \
    ((size_t)(1 + 3 * LOOM_ATTN_CHUNK) * LOOM_ATTN_NQ_MAX * LOOM_ATTN_TILE + 2 * (size_t)(hd) * LOOM_ATTN_TILE)

typedef void loom_attn_unit_fn(const loom_attn_unit *u);

/* dst[i] = loom_f32_to_f16(src[i]) for i in [0, n): the same bits as
 * quant.h (round to nearest even, overflow to inf, NaN kept). */
typedef void loom_f16_row_fn(const float *src, uint16_t *dst, int n);

/* out[i] = x[i] / rms(x) * w[i] for one row of n (out may alias x). */
typedef void loom_rmsnorm_fn(float *out, const float *x, const float *w, int n, float eps);

/* gate[i] = silu(gate[i]) * up[i] for one row of n. */
typedef void loom_swiglu_fn(float *gate, const float *up, int n);

/* Activation quantization (loom_act_quantize's bytes, every level the
 * same): blocks [b0, b1) of a row x[0..k) into dst, the row layouts above —
 * act_q8_32 the "q8 32-block" rows (quants, then the scales, then the
 * scaled sums: k is needed to place them), act_q8_K Q8_K blocks. */
typedef void loom_act_q8_fn(const float *x, uint8_t *dst, int64_t k, int64_t b0, int64_t b1);

/* ---- rows of the gpt2 / bert / gemma families (scalar: runtime/ops.h) ---- */

/* out[i] = (x[i] - mean) / sqrt(var + eps) * w[i] + b[i] for one row of n
 * (b may be NULL; out may alias x). */
typedef void loom_layernorm_fn(float *out, const float *x, const float *w, const float *b, int n, float eps);

/* gate[i] = gelu(gate[i]) * up[i] (GELU's tanh approximation) for one row of
 * n; with up NULL, gelu(gate[i]). */
typedef void loom_gelu_fn(float *gate, const float *up, int n);

/* y[i] = 2^x[i] for x <= 0, 0 below -126 and for -inf (what the attention
 * kernels use for the softmax; for the tests). */
typedef void loom_exp2_fn(const float *x, float *y, int n);

/* A LoRA adapter (runtime/lora.h), in two halves that split over threads
 * differently: lora_down t[i][kk] = s[i] · (a_kk · x[i]) for kk < nk <= 2
 * rows of A (a: nk rows of cols F16 values, one after the other) and n <= 4
 * rows x[i] (each A value loaded once for the rows, each x once for the
 * A rows); lora_up
 * y[o] += Σ_{k<r} t[k] · bt[k][o] for o in [o0, o1) (bt: r rows of `rows`
 * F16 values), y read and written once. */
#define LOOM_LORA_DOWN_ROWS 4
typedef void loom_lora_down_fn(const uint16_t *a, int nk, int64_t cols, const float *const *x, float *const *t,
                               const float *s, int n);
typedef void loom_lora_up_fn(float *y, const float *t, const uint16_t *bt, int r, int64_t rows, int64_t o0, int64_t o1);

typedef struct loom_kernels {
    const char *name;                    /* "scalar", "avx2", "avx512" */
    const struct loom_kernels *lower;    /* the level below (NULL for scalar): takes what this one cannot */
    loom_matmul_fn *matmul[LOOM_TYPE_COUNT]; /* per weight type; NULL exactly where !loom_type_can_matmul */
    loom_matmul_fn *matmul_r8[LOOM_TYPE_COUNT]; /* the same over r8 weights (w: the range's first group);
                                               NULL exactly where !loom_type_has_r8 */
    uint64_t r8_prefer;                  /* bit t: this level holds type t in the r8 layout (AVX-512:
                                            on AMD Zen 4 and later; dispatch.c) */
    loom_attn_unit_fn *attn_unit;
    int attn_head_multiple;              /* attn_unit needs head_dim % this == 0; else lower's */
    loom_f16_row_fn *f16_row;            /* the KV store's conversion */
    loom_rmsnorm_fn *rmsnorm;
    loom_swiglu_fn *swiglu;
    loom_act_q8_fn *act_q8_32, *act_q8_K;
    loom_exp2_fn *exp2;                  /* optional (NULL where the level has no vector exp2) */
    loom_layernorm_fn *layernorm;        /* gpt2, bert */
    loom_gelu_fn *gelu;                  /* gpt2, bert, gemma */
    loom_lora_down_fn *lora_down;
    loom_lora_up_fn *lora_up;
} loom_kernels;

/* The active level's table (loom_isa_get()). Never NULL; thread-safe. */
const loom_kernels *loom_kernels_get(void);

/* The table of level `isa`, whether or not this CPU can run it (calling its
 * entries then is the caller's fault); NULL for an unknown level. For tests
 * and benchmarks that look at a level's entries. */
const loom_kernels *loom_kernels_of(loom_isa isa);

#endif
