/*
 * runtime/cpu/dispatch.c — ISA detection (cpuid + XGETBV), the active ISA
 * level, and the kernel table of each level (runtime/kernels.h), built from
 * the per-level kernel names of cpu_kernels.h.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/cpu/cpu_kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define LOOM_X86 1
#endif

static const char *const isa_names[LOOM_ISA_COUNT] = {"scalar", "avx2", "avx512"};

const char *loom_isa_name(loom_isa isa) {
    return (unsigned)isa < LOOM_ISA_COUNT ? isa_names[isa] : "?";
}

typedef struct {
    bool avx, avx2, fma, f16c, bmi2, avx512f, avx512bw, avx512vl, avx512dq, avx512vnni;
    bool os_ymm, os_zmm;
} cpu_features;

static cpu_features features_v;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;

static void features_probe(void) {
    cpu_features f;
    memset(&f, 0, sizeof f);
#ifdef LOOM_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return; /* features_v: all false */
    const bool osxsave = c & (1u << 27);
    f.avx = c & (1u << 28);
    f.fma = c & (1u << 12);
    f.f16c = c & (1u << 29);
    if (osxsave) {
        unsigned lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        f.os_ymm = (lo & 0x6u) == 0x6u;    /* SSE + AVX state */
        f.os_zmm = (lo & 0xe6u) == 0xe6u;  /* + opmask, ZMM_Hi256, Hi16_ZMM */
    }
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = b & (1u << 5);
        f.bmi2 = b & (1u << 8);
        f.avx512f = b & (1u << 16);
        f.avx512dq = b & (1u << 17);
        f.avx512bw = b & (1u << 30);
        f.avx512vl = b & (1u << 31);
        f.avx512vnni = c & (1u << 11);
    }
#endif
    features_v = f;
}

/* once per process: CPUID traps to the hypervisor in a VM (a few µs each;
 * 15 % of test_matmul's time, which asks before every kernel call) */
static cpu_features features_read(void) {
    pthread_once(&features_once, features_probe);
    return features_v;
}

static void append(char *buf, size_t cap, size_t *len, const char *name) {
    if (!buf || cap == 0) return;
    int w = snprintf(buf + *len, cap - *len, "%s%s", *len ? ", " : "", name);
    if (w > 0) *len = *len + (size_t)w < cap ? *len + (size_t)w : cap - 1;
}

bool loom_isa_supported(loom_isa isa, char *missing, size_t cap) {
    if (missing && cap) missing[0] = '\0';
    if ((unsigned)isa >= LOOM_ISA_COUNT) {
        if (missing && cap) snprintf(missing, cap, "unknown ISA level %d", (int)isa);
        return false;
    }
    if (isa == LOOM_ISA_SCALAR) return true;
    const cpu_features f = features_read();
    size_t len = 0;
    bool ok = true;
#define NEED(cond, name)                             \
    do {                                             \
        if (!(cond)) {                               \
            ok = false;                              \
            append(missing, cap, &len, name);        \
        }                                            \
    } while (0)
    NEED(f.avx, "avx");
    NEED(f.avx2, "avx2");
    NEED(f.fma, "fma");
    NEED(f.f16c, "f16c");
    NEED(f.bmi2, "bmi2");
    NEED(f.os_ymm, "OS support for YMM state (XCR0)");
    if (isa == LOOM_ISA_AVX512) {
        NEED(f.avx512f, "avx512f");
        NEED(f.avx512bw, "avx512bw");
        NEED(f.avx512vl, "avx512vl");
        NEED(f.avx512dq, "avx512dq");
        NEED(f.avx512vnni, "avx512vnni");
        NEED(f.os_zmm, "OS support for ZMM/opmask state (XCR0)");
    }
#undef NEED
    return ok;
}

loom_isa loom_isa_detect(void) {
    if (loom_isa_supported(LOOM_ISA_AVX512, NULL, 0)) return LOOM_ISA_AVX512;
    if (loom_isa_supported(LOOM_ISA_AVX2, NULL, 0)) return LOOM_ISA_AVX2;
    return LOOM_ISA_SCALAR;
}

static _Atomic int active_isa = -1;

static loom_isa isa_from_env(void) {
    const loom_isa best = loom_isa_detect();
    const char *env = getenv("LOOM_ISA");
    if (!env || !*env) return best;
    for (int i = 0; i < LOOM_ISA_COUNT; i++) {
        if (strcmp(env, isa_names[i]) != 0) continue;
        if (i <= (int)best) return (loom_isa)i;
        fprintf(stderr, "loom: LOOM_ISA=%s is not supported by this CPU; using %s\n", env,
                isa_names[best]);
        return best;
    }
    fprintf(stderr, "loom: LOOM_ISA=%s names no ISA level (scalar, avx2, avx512); using %s\n",
            env, isa_names[best]);
    return best;
}

loom_isa loom_isa_get(void) {
    int isa = atomic_load_explicit(&active_isa, memory_order_acquire);
    if (isa >= 0) return (loom_isa)isa;
    int want = (int)isa_from_env();
    int expected = -1;
    /* first caller wins, so the stderr line (if any) names what is used */
    if (atomic_compare_exchange_strong(&active_isa, &expected, want)) return (loom_isa)want;
    return (loom_isa)expected;
}

loom_status loom_isa_set(loom_isa isa) {
    char missing[256];
    if (!loom_isa_supported(isa, missing, sizeof missing)) {
        if ((unsigned)isa >= LOOM_ISA_COUNT)
            return loom_error(LOOM_ERR_INVALID, "loom_isa_set: %s", missing);
        return loom_error(LOOM_ERR_UNSUPPORTED, "ISA level %s needs %s, which this CPU/OS lacks",
                          isa_names[isa], missing);
    }
    atomic_store_explicit(&active_isa, (int)isa, memory_order_release);
    return NULL;
}

/* Software prefetch in the decode walk (cpu_kernels.h): 1 = each stream
 * fetches its next row while reading this one, 0 = the hardware prefetchers
 * alone. Measured on AMD EPYC Zen 4 (bench_matmul 65536 x 2048, one thread,
 * from DRAM), the prefetch costs: AVX-512 Q8_0 34.1 -> 26.9 GB/s, Q6_K 27.8
 * -> 25.2, F16 27.7 -> 19.5, the 4-bit types within noise; so AMD from
 * family 0x19 (Zen 3, 4, 5) goes without. Elsewhere it stays on: Intel
 * needs it (Xeon family 6 model 167, loom bench, tokens/s with -> without,
 * one thread: TinyLlama Q4_0 25.4 -> 20.0, Q4_K_M 23.4 -> 19.8, Q6_K 17.9 ->
 * 15.8, Q8_0 13.9 -> 12.0; two threads 46.3 -> 37.1, 43.9 -> 38.0, 34.3 ->
 * 29.0, 26.4 -> 22.6); Zen 1 and 2 not measured with this walk.
 * LOOM_DECODE_PREFETCH=0|1 overrides. */
static _Atomic int decode_pf_mode = -1;

/* Who made the CPU and which it is, for the choices below that were
 * measured per kind: an AMD CPU's family (0x17 Zen 1/2, 0x19 Zen 3/4, 0x1A
 * Zen 5) and an Intel family-6 CPU's model number (as a KVM guest reports
 * it); 0 where the CPU is not of that vendor. Read once: CPUID leaves a
 * virtual machine for its hypervisor (asked per matmul call, SmolLM2's
 * decode ran at half speed). */
typedef struct {
    unsigned amd_family, intel_model;
} cpu_ident;

static cpu_ident ident_v;
static pthread_once_t ident_once = PTHREAD_ONCE_INIT;

static void ident_probe(void) {
#ifdef LOOM_X86
    unsigned a, b, c, d;
    char vendor[13] = {0};
    if (!__get_cpuid(0, &a, &b, &c, &d)) return;
    memcpy(vendor, &b, 4), memcpy(vendor + 4, &d, 4), memcpy(vendor + 8, &c, 4);
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const unsigned family = (a >> 8) & 0xF;
    if (!strcmp(vendor, "AuthenticAMD")) ident_v.amd_family = family == 0xF ? 0xF + ((a >> 20) & 0xFF) : family;
    if (!strcmp(vendor, "GenuineIntel") && family == 6) ident_v.intel_model = ((a >> 4) & 0xF) | ((a >> 12) & 0xF0);
#endif
}

static unsigned amd_family(void) {
    pthread_once(&ident_once, ident_probe);
    return ident_v.amd_family;
}

static unsigned intel_model(void) {
    pthread_once(&ident_once, ident_probe);
    return ident_v.intel_model;
}

static _Atomic int host_cores = 1;
void loom_set_host_cores(int n) { atomic_store_explicit(&host_cores, n < 1 ? 1 : n, memory_order_relaxed); }
int loom_host_cores(void) { return atomic_load_explicit(&host_cores, memory_order_relaxed); }

static _Atomic int64_t host_weights = 0;
void loom_set_host_weights(int64_t bytes) { atomic_store_explicit(&host_weights, bytes, memory_order_relaxed); }

static _Atomic long long l3_v = -2; /* -2: not read yet */
int64_t loom_l3_bytes(void) {
    long long v = atomic_load_explicit(&l3_v, memory_order_relaxed);
    if (v != -2) return v;
    v = -1;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    char unit = 0;
    if (f && fscanf(f, "%lld%c", &v, &unit) < 1) v = -1;
    if (f) fclose(f);
    if (v > 0 && (unit == 'K' || unit == 'k')) v <<= 10;
    else if (v > 0 && unit == 'M') v <<= 20;
    atomic_store_explicit(&l3_v, v, memory_order_relaxed);
    return v;
}

static int decode_pf_default(void) { return amd_family() >= 0x19 ? 0 : 1; }

size_t loom_decode_pf(size_t ws) {
    int m = atomic_load_explicit(&decode_pf_mode, memory_order_relaxed);
    if (m < 0) {
        const char *env = getenv("LOOM_DECODE_PREFETCH");
        m = env && (env[0] == '0' || env[0] == '1') && !env[1] ? env[0] - '0' : decode_pf_default();
        atomic_store_explicit(&decode_pf_mode, m, memory_order_relaxed);
    }
    return m ? ws : 0;
}

/* How decode walks r8 weights, and from how many tokens the r8 kernels of
 * Q4_0 / Q4_1 (and AVX-512's K-quants) hand over to the panel GEMM
 * (gemm_avx512.c: gemm_r8; gemm_avx2.c: g_gemm_r8).
 * On AMD (Zen 4: one sequential stream reads fastest, cpu_kernels.h at
 * loom_run_tiles; Q4_0 / Q4_1's r8 passes measured ahead of a panel) one
 * stream, and the GEMM for AVX-512's K-quants only (below). Elsewhere
 * (measured on a Xeon, family 6 model 167 as a KVM guest reports it) four
 * streams, each fetched LOOM_R8_STREAM_PF bytes
 * (cpu_kernels.h) ahead in software, as the row tiles walk
 * (loom_decode_pf): TinyLlama Q4_0, AVX-512, loom bench, tokens/s one / two threads: rows 26.7 / 51.9,
 * r8 in one stream 21.4 / 40.0, in four 27.1 / 51.3 (two streams 27.2 /
 * 50.7; 2048 bytes ahead 27.2 / 52.3); the AVX2 level, rows -> r8 in four
 * streams: SmolLM2 178 -> 205 / 327 -> 393, Q4_0 22.0 -> 27.1 / 40.6 ->
 * 50.1, Q4_K_M 20.0 -> 23.9 / 37.8 -> 45.2. And the GEMM from 24 tokens:
 * bench_matmul 8192 x 5632 Q4_0, GFLOP/s, pairs / GEMM: n = 16 339 / 325,
 * 20 335 / 295, 24 339 / 360, 32 335 / 382, 128 322 / 382 (the rows' GEMM
 * 327); 3072 x 576 Q4_1 n = 128 339 / 414 (rows 399). The AVX2 level's
 * from 12: bench_matmul -i avx2, GFLOP/s, r8 groups' 4-token passes / GEMM
 * over the layout: 3072 x 576 Q4_1 n = 4 185 / 163, 6 177 / 142, 8 182 /
 * 189, 12 183 / 194, 24 180 / 206, 128 178 / 212 (rows' GEMM 204); 8192 x
 * 5632 Q4_0 n = 8 189 / 185, 16 191 / 198, 128 180 / 209 (rows 188); loom
 * bench LOOM_ISA=avx2, 128-token prefill, one / two threads, two
 * alternations: SmolLM2 679-691 -> 812-827 / 1202-1237 -> 1438-1536,
 * TinyLlama Q4_0 86-88 -> 101-102 / 167-169 -> 196-199 tokens/s (the AVX2
 * r8 kernel splits the nibbles again for every 4-token pass). The
 * AVX-512 K-quants from 16 (gemm_avx512.c: unpack_r8k, the rows' GEMM's
 * panels filled from the layout without their transpose): bench_matmul,
 * GFLOP/s, r8 passes or panels / GEMM over the layout (rows' GEMM): 4096 x
 * 2048 Q4_K n = 8 373 / 342, 12 384 / 326, 16 390 / 427 (279), 32 410 /
 * 458 (348), 128 491 / 537 (449); Q6_K n = 16 268 / 348, 128 357 / 484
 * (440); Q5_K 16 297 / 333, 128 420 / 505 (472); 32768 x 2048 (DRAM) Q4_K
 * n = 10 340 / 263, 16 382 / 416, 24 386 / 454; loom bench TinyLlama
 * Q4_K_M, 128-token prefill, one thread, 184-190 -> 193-199 tokens/s. On
 * AMD (Zen 4, family 25 model 17) the K-quants from 24: bench_matmul 4096 x
 * 2048, passes / GEMM over the layout, GFLOP/s: Q4_K n = 16 312 / 299, 24
 * 313 / 315, 32 304 / 325, 128 311 / 326; Q5_K 24 289 / 296, 128 309 /
 * 334; Q6_K 24 272 / 282, 128 276 / 305; loom bench TinyLlama, 128-token
 * prefill, one thread, three alternations: Q4_K_M 142-148 -> 151-155,
 * Q5_K_M 141-146 -> 152-158, Q6_K 131-136 -> 145-147 tokens/s; Q4_0 and
 * Q4_1 keep their passes there at every level (AVX-512 n = 16 / 128: 321 /
 * 318 against the GEMM's 283 / 311). LOOM_R8_STREAMS=1|2|4 and LOOM_R8_GEMM=N
 * (0: never; both levels, the K-quants' on AVX-512) override. */
static _Atomic int r8_streams_v = 0;       /* 0: not read yet */
static _Atomic int r8_stream_n_v = -1;     /* -1: not read yet, 0: the host's choice */
static _Atomic long r8_gemm_min_v = -1;    /* -1: not read yet, -2: the CPU's choice */
static _Atomic int r8_kmul_v = -1;         /* -1: the CPU's choice */

void loom_r8_walk_set(int streams, int stream_n, int64_t gemm_min_n, int kmul) {
    atomic_store_explicit(&r8_kmul_v, kmul == 0 || kmul == 1 ? kmul : -1, memory_order_relaxed);
    atomic_store_explicit(&r8_streams_v, streams == 1 || streams == 2 || streams == 4 ? streams : 0,
                          memory_order_relaxed);
    atomic_store_explicit(&r8_stream_n_v, stream_n >= 1 && stream_n <= 4 ? stream_n : -1, memory_order_relaxed);
    atomic_store_explicit(&r8_gemm_min_v, gemm_min_n >= 0 ? (long)gemm_min_n : -1, memory_order_relaxed);
}

int loom_r8_streams(void) {
    int v = atomic_load_explicit(&r8_streams_v, memory_order_relaxed);
    if (v == 0) {
        const char *env = getenv("LOOM_R8_STREAMS");
        v = env && (!strcmp(env, "1") || !strcmp(env, "2") || !strcmp(env, "4")) ? env[0] - '0'
                                                                                  : amd_family() == 0 ? 4 : 1;
        atomic_store_explicit(&r8_streams_v, v, memory_order_relaxed);
    }
    return v;
}

/* Up to how many tokens of wt the AVX-512 r8 kernels walk in loom_r8_streams()
 * streams (256-bit, r8_group) rather than by pairs of groups (512-bit):
 * decode's one token always; 2-4 where there are several streams and the
 * host's weights exceed its L3 (loom_set_host_weights), so they come from
 * DRAM. A Xeon (family 6 model 167), bench_matmul --stream 22 -n N (22
 * layers of dim 4096, 2 GiB), GB/s of the weights, pairs -> streams: Q4_0
 * n = 2 14.5 -> 16.2, 3 13.1 -> 13.9, 4 13.2 -> 13.9; Q4_K 12.4 -> 13.9,
 * 11.8 -> 11.8, 11.4 -> 12.2. From the L3 the pairs' 512-bit arithmetic
 * wins (3072 x 576 Q4_1, GFLOP/s, n = 2 255 -> 201-213, n = 4 309-325 ->
 * 241-254; 4096 x 2048 Q4_K n = 2 194 -> 147). Pairs of groups far apart
 * (two streams, 512-bit) gained nothing (Q4_0 n = 2 -5 %, Q4_K +1-4 %);
 * four streams as two such pairs did, at 3-4 tokens (matmul_avx512.c:
 * r8_far, which takes the four streams' 2-4 tokens but Q5_K's).
 * Not Q4_K's on the Xeon that reports family 6 model 207 (Emerald
 * Rapids): there its 2-4 tokens read faster by pairs of
 * adjacent groups in one stream (r8_kdirect). bench_matmul --stream 22
 * --r8 (2 GiB), one thread, GB/s, streams -> pairs, two alternations:
 * Q4_K n = 2 9.6-12.0 -> 12.6-12.9, n = 4 8.0-10.8 -> 11.4-11.8; loom
 * bench decode steps alternating between the two inside one run (the
 * same minute for both), step time: TinyLlama Q4_K_M one thread, 2 / 3 /
 * 4 sequences -3.9 / -5.8 / -8.3 %, two threads 2 / 4 -3.7 / -7.5 %,
 * Llama-3.2-1B Q4_K_M 4 sequences -7.6 %. Q4_0 keeps the streams there
 * (TinyLlama Q4_0 in the same test +8-10 % by pairs).
 * LOOM_R8_STREAM_N=1..4 overrides. */
int loom_r8_stream_n(loom_type wt) {
    int v = atomic_load_explicit(&r8_stream_n_v, memory_order_relaxed);
    if (v < 0) {
        const char *env = getenv("LOOM_R8_STREAM_N");
        v = env && env[0] >= '1' && env[0] <= '4' && !env[1] ? env[0] - '0' : 0;
        atomic_store_explicit(&r8_stream_n_v, v, memory_order_relaxed);
    }
    if (v) return v;
    if (wt == LOOM_TYPE_Q4_K && intel_model() == 207) return 1; /* by pairs there (above) */
    const int64_t l3 = loom_l3_bytes();
    return loom_r8_streams() > 1 && l3 > 0 && atomic_load_explicit(&host_weights, memory_order_relaxed) > l3 ? 4 : 1;
}

int64_t loom_r8_gemm_min_n(bool avx512, bool kquant) {
    long v = atomic_load_explicit(&r8_gemm_min_v, memory_order_relaxed);
    if (v == -1) {
        const char *env = getenv("LOOM_R8_GEMM");
        char *end = NULL;
        const long e = env ? strtol(env, &end, 10) : -1;
        v = env && end != env && !*end && e >= 0 ? e : -2;
        atomic_store_explicit(&r8_gemm_min_v, v, memory_order_relaxed);
    }
    if (v >= 0) return !kquant || avx512 ? v : 0;
    if (amd_family() != 0) return avx512 && kquant ? 24 : 0;
    return !avx512 ? (kquant ? 0 : 12) : kquant ? 16 : 24;
}

bool loom_r8_kmul(void) {
    const int v = atomic_load_explicit(&r8_kmul_v, memory_order_relaxed);
    return v >= 0 ? v == 1 : amd_family() != 0;
}

int64_t loom_r8_gemm_bits_from(loom_type wt) {
    return loom_isa_get() == LOOM_ISA_AVX512 && loom_r8_rows_gemm_bits(wt) ? loom_r8_gemm_min_n(true, true) : 0;
}

/* A level's table: its kernels (cpu_kernels.h names them), the level below
 * for head sizes its attention kernel does not take, and its optional exp2. */
#define LEVEL(lv, below, head_multiple, exp2_fn, r8)                                                  \
    {.name = #lv,                                                                                     \
     .lower = below,                                                                                  \
     .matmul = LOOM_MATMUL_TABLE(loom_##lv##_mm_),                                                    \
     .matmul_r8 = {LOOM_R8_TYPES(LOOM_R8_ENTRY, loom_##lv##_r8_)},                                    \
     .r8_prefer = r8,                                                                                 \
     .attn_unit = loom_##lv##_attn_unit,                                                              \
     .attn_head_multiple = head_multiple,                                                             \
     .f16_row = loom_##lv##_f16_row,                                                                  \
     .rmsnorm = loom_##lv##_rmsnorm,                                                                  \
     .swiglu = loom_##lv##_swiglu,                                                                    \
     .act_q8_32 = loom_##lv##_act_q8_32,                                                              \
     .act_q8_K = loom_##lv##_act_q8_K,                                                                \
     .exp2 = exp2_fn,                                                                                 \
     .layernorm = loom_##lv##_layernorm,                                                              \
     .gelu = loom_##lv##_gelu,                                                                        \
     .lora_down = loom_##lv##_lora_down,                                                              \
     .lora_up = loom_##lv##_lora_up}

/* The types each level holds in the r8 layout (kernels.h).
 * AVX2: every type that has it, on AMD (measured there) and on Intel with
 * decode's walk in four streams (loom_r8_streams above; a Xeon, family 6
 * model 167, KVM guest, rows -> r8, tokens/s one / two threads: decode
 * SmolLM2 178 -> 205 / 327 -> 393, TinyLlama Q4_0 22.0 -> 27.1 / 40.6 ->
 * 50.1, Q4_K_M 20.0 -> 23.9 / 37.8 -> 45.2, Q5_K_M 18.6 -> 18.5 / 35.4 ->
 * 36.1, Q6_K 17.8 -> 17.4 / 33.4 -> 32.5, Q8_0 14.0 -> 14.7 / 26.0 -> 27.3;
 * prefill of 64 tokens 683 -> 637 / 1170 -> 1190, 77 -> 79, 73 -> 88, 64 ->
 * 84, 58 -> 76, 41 -> 48 at one thread). In one stream, as on AMD, its
 * decode had lost there (SmolLM2 two threads 295 -> 166).
 * AVX-512: Q4_0, Q4_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, MXFP4 and IQ4_NL (the types it has r8 kernels of
 * its own for; its Q8_0 rows read from DRAM as fast as the AVX2 r8 kernel
 * and prefill 2.5x faster) on AMD Zen 4 (family 0x19 with AVX-512) and
 * later, where one thread decodes TinyLlama Q4_0 at 34 -> 50 tokens/s,
 * Q4_K_M at 34 -> 40, Q5_K_M at 28 -> 34, Q6_K at 30 -> 34 and SmolLM2
 * (Q4_1) at 192 -> 262, and prefills as fast or faster (134 -> 149, 141 ->
 * 141, 138 -> 145, 132 -> 133, 1104 -> 1119). MXFP4 (family 25 model 17,
 * bench_matmul 32768 x 2880, one thread, GB/s at n = 1, rows -> r8: 17.5-18.2
 * -> 30.6-30.8; 4096 rows, GFLOP/s: n = 4 133 -> 273, 128 270 -> 294; the
 * AVX2 level's 11.2 -> 27.0 GB/s from DRAM): the gpt-oss-20b shape (6
 * layers) decodes at 21.3 -> 24.3-25.6 tokens/s one thread, 24.5-24.9 ->
 * 27.7-29.6 two, prefills at 108-112 -> 157-162 / 184-188 -> 281-288.
 * IQ4_NL (and so IQ4_XS, held as it): bench_matmul 4096 x 2048, rows ->
 * r8, GB/s at n = 1 20.9 -> 30.3 (32768 rows, DRAM: 20.1-20.4 -> 29.1-29.2),
 * GFLOP/s n = 4 135 -> 187, 24 249 -> 299 (the GEMM over the layout from
 * 24, as the K-quants'), 128 271 -> 304; the AVX2 level 14.0 -> 21.8 GB/s,
 * n = 128 71 -> 102 GFLOP/s; TinyLlama IQ4_XS decode 27.9-29.1 -> 40.2-40.4
 * tokens/s one thread (66 -> 95-99 % of the bandwidth), prefill 132 -> 144.
 * Q3_K: bench_matmul 4096 x 2048, rows -> r8, GMAC/s at n = 1 32.5 -> 57.5
 * (13.9 -> 24.4 GB/s; 32768 x 4096 from DRAM 14.2 -> 24.0), GFLOP/s n = 4
 * 130 -> 196, 16 146 -> 198, 24 179 -> 290 (the GEMM over the layout), 128
 * 276 -> 316; the AVX2 level n = 1 22.6 -> 39.8 GMAC/s, n = 128 153 -> 184
 * GFLOP/s; TinyLlama Q3_K_M decode 33.6-34.2 -> 44.3-45.7 tokens/s one
 * thread (65-69 -> 88-90 % of the bandwidth), prefill 133-137 -> 153-154.
 * Q2_K: bench_matmul 4096 x 2048, rows -> r8, GB/s at n = 1 13.1 -> 22.6
 * (32768 x 4096 from DRAM 13.3 -> 22.7), GFLOP/s n = 4 129 -> 226, 24 232
 * -> 296, 128 277 -> 309; the AVX2 level n = 1 12.2 -> 19.5 GB/s, n = 128
 * 149 -> 183 GFLOP/s; TinyLlama Q2_K decode 35.5-38.0 -> 47.1-48.9 tokens/s
 * one thread (63-69 -> 81-83 % of the bandwidth), prefill 132-136 -> 146.
 * Intel keeps MXFP4's, IQ4_NL's, Q3_K's and Q2_K's rows (MXFP4: 89-90 % of
 * its bandwidth there, Q3_K 86-87 %, Q2_K 75-76 %; the layout is not
 * measured on it). On Intel (LOOM_R8_AVX512_INTEL, cpu_kernels.h)
 * Q4_0 and Q4_1: on the Xeon, rows -> r8 (four streams, the panel GEMM
 * from 24 tokens), one / two threads, 128-token prompts: SmolLM2 decode
 * 145 -> 161-170 / 283-297 -> 346-355, prefill 1289-1323 -> 1330-1344 /
 * 2321 -> 2316-2392; TinyLlama Q4_0 decode 23.5 -> 26.2 / 42.4-43.9 ->
 * 48.8-49.3, prefill 141-144 -> 166-167 / 277-282 -> 316-336; bench_matmul
 * 3072 x 576 Q4_1, GFLOP/s, rows -> r8: n = 4 109 -> 304, 8 204 -> 390. And
 * Q4_K, once its scale steps left VPMULLD (matmul_avx512.c: r8_kscale;
 * before, TinyLlama Q4_K_M prefilled 128 tokens 4-10 % slower in the
 * layout): rows -> r8, three alternations, one / two threads, decode
 * 23.4-25.2 -> 22.9-24.9 / 44.8-48.3 -> 45.3-47.4, prefill 165-183 ->
 * 173-189 / 337-374 -> 328-363; batched decode, two threads, 4 / 8 / 16
 * sequences 100-102 -> 118-123, 105-112 -> 170-173, 149-163 -> 205-206
 * (bench_matmul 32768 x 2048 n = 4 / 8 129 -> 269-273, 127 -> 327-333
 * GFLOP/s). Q5_K and Q6_K keep the rows: their small batches gain in the
 * layout as Q4_K's (8 sequences +9 % more with Q6_K; bench_matmul 4096 x
 * 2048 n = 8, GFLOP/s, rows -> r8: Q6_K 169 -> 236, Q5_K 148 -> 226), and
 * with the GEMM over the layout so does their prefill (TinyLlama, 128
 * tokens, one thread: Q6_K 167-169 -> 183-185, Q5_K_M 167-178 -> 197-201
 * tokens/s), but their decode loses there: loom bench, tokens/s, Q6_K one
 * thread 18.4-19.0 -> 17.2-17.9, two 35.7-36.4 -> 33.9-35.7, Q5_K_M one
 * thread 21.0-21.1 -> 19.8-20.0; bench_matmul --stream 60 (2 GiB), GB/s,
 * four alternations: Q6_K 15.6-16.1 -> 15.3-15.6, Q5_K 15.8-16.1 ->
 * 15.1-15.5 (their quants overflow r8_kscale's int16, Q5_K's fifth bits
 * cost a 256-bit unpack; four streams of 512-bit pairs of far groups read
 * slower still, Q5_K 11.3). And Q8_0, once the AVX-512 level had r8
 * kernels of its own for it (matmul_avx512.c: q8_sum128; before, its rows'
 * small batches went by register tiles below 8 tokens and by the panel
 * GEMM from there): Xeon family 6 model 207, bench_matmul 4096 x 2048,
 * GFLOP/s, rows -> r8, two alternations on a quiet host: n = 2 87 ->
 * 103-105, 4 105-106 -> 199-208, 8 125-127 -> 240-245, 16 189 -> 262-279,
 * 128 332-344 -> 363-365 (the GEMM over the layout from 16); loom
 * bench TinyLlama Q8_0, two alternations, one / two threads: decode
 * 12.8-13.0 -> 12.5-13.3 / 22.5-24.8 -> 25.1-25.8 tokens/s (97-106 % ->
 * 105-110 % of the probe beside it), 128-token prefill 118-131 -> 135-145 /
 * 237-282 -> 280-284; batched, two threads, 4 / 16 sequences 73-86 ->
 * 91-94 / 133-145 -> 168-177; SmolLM2 (its Q8_0 lm head) 8 sequences
 * 1002-1083 -> 1120-1244. AMD keeps Q8_0's rows (not measured there). */
#define R8_AVX2 (0 LOOM_R8_TYPES(LOOM_R8_BIT, _))
#define R8_AVX512 (1ull << LOOM_TYPE_Q4_0 | 1ull << LOOM_TYPE_Q4_1 | 1ull << LOOM_TYPE_Q4_K | 1ull << LOOM_TYPE_Q5_K | 1ull << LOOM_TYPE_Q6_K | 1ull << LOOM_TYPE_MXFP4 | \
                   1ull << LOOM_TYPE_IQ4_NL | 1ull << LOOM_TYPE_Q3_K | 1ull << LOOM_TYPE_Q2_K)

static const loom_kernels level_tables[LOOM_ISA_COUNT] = {
    [LOOM_ISA_SCALAR] = LEVEL(scalar, NULL, 1, NULL, 0),
    [LOOM_ISA_AVX2] = LEVEL(avx2, &level_tables[LOOM_ISA_SCALAR], 8, loom_avx2_exp2, R8_AVX2),
    [LOOM_ISA_AVX512] = LEVEL(avx512, &level_tables[LOOM_ISA_AVX2], 16, loom_avx512_exp2, R8_AVX512),
};

const loom_kernels *loom_kernels_of(loom_isa isa) {
    return (unsigned)isa < LOOM_ISA_COUNT ? &level_tables[isa] : NULL;
}

const loom_kernels *loom_kernels_get(void) { return &level_tables[loom_isa_get()]; }

int loom_matmul_invariant_rows(void) {
    if (loom_isa_get() != LOOM_ISA_AVX512) return 1;
    int64_t n = 1;
    for (int t = 0; t < LOOM_TYPE_COUNT; t++)
        if (level_tables[LOOM_ISA_AVX512].matmul[t] && loom_gemm_min_n((loom_type)t) > n) n = loom_gemm_min_n((loom_type)t);
    if (loom_r8_gemm_min_n(true, true) > n) n = loom_r8_gemm_min_n(true, true); /* the K-quants' r8 GEMM */
    return (int)n;
}

void loom_matmul(loom_type wt, const void *w, size_t w_stride, int64_t k, int64_t r0, int64_t r1,
                 const void *xq, size_t xq_stride, int64_t n, float *y, int64_t ldy) {
    if (r1 <= r0 || n <= 0 || (unsigned)wt >= LOOM_TYPE_COUNT) return;
    loom_matmul_fn *fn = loom_kernels_get()->matmul[wt];
    if (!fn) return; /* a type without matmul */
    fn((const uint8_t *)w + (size_t)r0 * w_stride, w_stride, k, r1 - r0, (const uint8_t *)xq, xq_stride, n, y, ldy);
}

bool loom_r8_q5_whole(void) { return loom_isa_get() != LOOM_ISA_AVX512; }

bool loom_type_has_r8(loom_type wt) { return (unsigned)wt < LOOM_TYPE_COUNT && level_tables[0].matmul_r8[wt]; }

/* LOOM_R8=0 keeps every type in GGUF rows (for comparisons), 1 puts every
 * type that has the layout into it; unset: the level's choice. */
static _Atomic int r8_mode = -2;

bool loom_matmul_prefers_r8(loom_type wt) {
    int m = atomic_load_explicit(&r8_mode, memory_order_relaxed);
    if (m == -2) {
        const char *env = getenv("LOOM_R8");
        m = env && (env[0] == '0' || env[0] == '1') && !env[1] ? env[0] - '0' : -1;
        atomic_store_explicit(&r8_mode, m, memory_order_relaxed);
    }
    if (!loom_type_has_r8(wt)) return false;
    if (m >= 0) return m == 1;
    const unsigned fam = amd_family();
    const bool avx512 = loom_isa_get() == LOOM_ISA_AVX512;
    if (fam == 0 && avx512) return LOOM_R8_AVX512_INTEL >> wt & 1; /* Intel: see R8_AVX2 */
    if (avx512 && fam < 0x19) return false;                   /* see R8_AVX512 */
    return loom_kernels_get()->r8_prefer >> wt & 1;
}

void loom_matmul_r8(loom_type wt, const void *w, size_t w_stride, int64_t k, int64_t r0, int64_t r1,
                    const void *xq, size_t xq_stride, int64_t n, float *y, int64_t ldy) {
    if (r1 <= r0 || n <= 0 || !loom_type_has_r8(wt)) return;
    loom_kernels_get()->matmul_r8[wt]((const uint8_t *)w + (size_t)r0 * w_stride, w_stride, k, r1 - r0,
                                      (const uint8_t *)xq, xq_stride, n, y, ldy);
}
