#!/usr/bin/env bash
# launch/bench-vs-llamacpp.sh — loom against llama.cpp on the same GGUF files,
# same thread counts, in the same minute. Not run in CI (minutes of CPU time).
#
# From a fresh clone, after launch/quickstart.sh (loom built in build/, the
# default model fetched):
#   (a) unpacks llama.cpp from the pinned llama-cpp-python sdist (downloaded
#       with pip if absent) into .cache/ and builds llama-bench and
#       llama-batched-bench once: CMake Release, CPU only, GGML_NATIVE=ON, no
#       CURL/OpenSSL (flags below, also printed and stored in the JSON);
#   (b) writes the random-weight models MODELS names with `loom synth` (once,
#       into .cache/models/): keys q4_0 q4_k_m q5_k_m q6_k q8_0 are the
#       TinyLlama-1.1B shape (22 layers, dim 2048, 32/4 heads, ffn 5632,
#       vocab 32000; 0.6-1.2 GB, far bigger than any cache; q3_k_m and q2_k
#       too, not in the default MODELS), llama32_1b the
#       Llama-3.2-1B shape in Q4_K_M (16 layers, dim 2048, 32/8 heads, ffn
#       8192, vocab 128256, tied), qwen25_05b the Qwen2.5-0.5B shape in Q8_0
#       (qwen2, 24 layers, dim 896, 14/2 heads, ffn 4864, vocab 151936, tied),
#       qwen3moe the Qwen3-30B-A3B shape in Q4_K_M with 8 of its 48 layers
#       (dim 2048, 32/4 heads of 128, 128 experts of 768, 8 used; 3.2 GB;
#       not in the default MODELS); gpt_oss the gpt-oss-20b shape in MXFP4_MOE
#       with 6 of its 24 layers (dim 2880, 64/8 heads of 64, 32 experts of
#       2880, 4 used, sinks, window 128, YaRN; 4.0 GB; not in the default);
#       deepseek2 DeepSeek-V2-Lite's whole shape in Q4_0 (27 layers, multi-head
#       latent attention, 64 experts of 1408, 6 used, 2 shared; 8.9 GB; not in
#       the default);
#       "default" is SmolLM2-135M-Instruct Q4_1; a path is used as it is;
#   (c) for every model and thread count runs `llama-bench -p PT -n GT -r REPS`
#       and `loom bench --prompt-tokens PT --gen-tokens GT --reps REPS` back
#       to back (order alternating between rounds), ROUNDS times;
#   (d) decode at depth, for DEPTH_MODELS at the largest thread count:
#       `llama-bench -p 0 -n GT -d DEPTH` against `loom bench --depth DEPTH`
#       (target >= 1.0x), with each KV cache type of DEPTH_KV (f16: both
#       programs' defaults; q8_0: llama-bench -fa 1 -ctk q8_0 -ctv q8_0 and
#       loom bench --kv-type q8_0);
#   (e) batched decode, for BATCH_MODELS at the largest thread count:
#       `llama-batched-bench -npp PT -ntg GT -npl BATCH_SEQS` (total generated
#       tokens/s, S_TG) against `loom bench --sequences BATCH_SEQS --depth PT
#       --gen-tokens GT` (each sequence a PT-token context, as there)
#       (target >= 1.2x);
#   (f) multi-rank rows: TP=2 (2 ranks x 1 thread) decode against 1 rank x 2
#       threads (target >= 0.95x), PP=2 (2 ranks x 1 thread, each of SEQS
#       sequence counts, total tokens/s) against 1 rank x 1 thread decoding
#       the same sequences batched (target >= 1.7x), each pair back to back.
#       Two stages on one host share its memory: each reads its half of the
#       weights once per micro-batch (SEQS/2 sequences), twice the one
#       rank's bytes per token, so the PP row also prints the ceiling the
#       measured read bandwidth puts on it;
#   (g) prints one table per part, with loom's decode bandwidth as a share of
#       the read bandwidth loom bench measured, and writes everything
#       (CPU model, family, model number and flags; commands, load averages,
#       raw outputs) as JSON.
#
# Speed numbers mean something only on a quiet machine: the script prints the
# load average before every pair of runs; keep it well under 1.
#
# Environment (defaults):
#   LOOM=build/loom  THREADS=1,2  REPS=5  ROUNDS=2  PT=128  GT=128  SEQS=4,8,16
#   MODELS="default q4_0 q4_k_m q5_k_m q6_k q8_0 llama32_1b qwen25_05b"
#   DEPTH=4096  DEPTH_MODELS=default  DEPTH_REPS=2  DEPTH_KV=f16   (DEPTH=0: skip (d))
#   BATCH_SEQS=4,16  BATCH_MODELS="default q4_k_m"      (BATCH_MODELS="": skip (e))
#   MULTI_MODELS="q4_k_m default"   MULTI=1 (0: skip (f))
#   OUT=.cache/bench/bench-vs-llamacpp.json  LOOM_CACHE=.cache
#   LLAMA_ISA=native (GGML_NATIVE) or avx2 (a second llama.cpp build without
#   AVX-512, to set against LOOM_ISA=avx2 on an AVX-512 machine)
# Options: --build-only (steps a and b only).
set -euo pipefail
case "${1:-}" in
  ""|--build-only) ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "bench-vs-llamacpp: unknown option $1 (see --help)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cache=${LOOM_CACHE:-$root/.cache}
loom=${LOOM:-$root/build/loom}
threads=${THREADS:-1,2}
reps=${REPS:-5}
rounds=${ROUNDS:-2}
pt=${PT:-128}
gt=${GT:-128}
seqs=${SEQS:-4,8,16}
models_sel=${MODELS:-"default q4_0 q4_k_m q5_k_m q6_k q8_0 llama32_1b qwen25_05b"}
depth=${DEPTH:-4096}
depth_sel=${DEPTH_MODELS:-default}
depth_reps=${DEPTH_REPS:-2}
depth_kv=${DEPTH_KV:-f16}
batch_seqs=${BATCH_SEQS:-4,16}
batch_sel=${BATCH_MODELS-"default q4_k_m"}
multi_sel=${MULTI_MODELS:-"q4_k_m default"}
multi=${MULTI:-1}
out=${OUT:-$cache/bench/bench-vs-llamacpp.json}
work=$cache/bench/run-$(date +%Y%m%d-%H%M%S)
mkdir -p "$cache/dl" "$cache/models" "$work" "$(dirname "$out")"

say() { printf '%s\n' "$*" >&2; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
# Interference: CPU seconds the whole machine spent busy (all CPUs, from
# /proc/stat) minus what our own runs used (bash's `times` for children).
hz=$(getconf CLK_TCK)
busy_s() { awk -v hz="$hz" '/^cpu /{printf "%.2f\n", ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat; }
# `times` must run in this shell (not in $(...), a subshell with its own counts)
kids_snap() { times > "$work/times.$1"; }
kids_s() { awk 'NR==2{t=0; for(i=1;i<=2;i++){split($i,b,"m"); sub("s","",b[2]); t+=b[1]*60+b[2]} printf "%.2f\n", t}' "$work/times.$1"; }

[ -x "$loom" ] || { say "bench-vs-llamacpp: $loom is missing: run launch/quickstart.sh (or set LOOM=)"; exit 1; }

# ---------------------------------------------------------------- (a) llama.cpp
. "$(dirname "$0")/llamacpp-build.sh"
case ${LLAMA_ISA:-native} in
  native) llama_dir=build-bench llama_isa=() ;;
  # what loom's LOOM_ISA=avx2 runs on: AVX2 + FMA + F16C + BMI2, no AVX-512
  avx2) llama_dir=build-bench-avx2
    llama_isa=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF) ;;
  *) say "bench-vs-llamacpp: LLAMA_ISA=$LLAMA_ISA: native or avx2"; exit 2 ;;
esac
llamacpp_build bench-vs-llamacpp "$llama_dir" llama-bench -DLLAMA_BUILD_SERVER=OFF ${llama_isa[@]+"${llama_isa[@]}"} || exit 1
llama_bench=$llamacpp_bin
llamacpp_build bench-vs-llamacpp "$llama_dir" llama-batched-bench -DLLAMA_BUILD_SERVER=OFF ${llama_isa[@]+"${llama_isa[@]}"} || exit 1
llama_batched=$llamacpp_bin

# ---------------------------------------------------------------- (b) models
default_model=$("$root/launch/fetch-model.sh")
tiny=(--arch llama --layers 22 --dim 2048 --heads 32 --kv-heads 4 --ffn 5632 --vocab 32000 --ctx 4096 --seed 1)
l32=(--arch llama --layers 16 --dim 2048 --heads 32 --kv-heads 8 --ffn 8192 --vocab 128256 --ctx 4096 --tied
  --rope-theta 500000 --seed 1)
q05=(--arch qwen2 --layers 24 --dim 896 --heads 14 --kv-heads 2 --ffn 4864 --vocab 151936 --ctx 4096 --tied
  --rope-theta 1000000 --norm-eps 1e-6 --seed 1)
# Qwen3-30B-A3B's shape (128 experts of 768, 8 used per token), 8 of its 48 layers
q3moe=(--arch qwen3moe --layers 8 --dim 2048 --heads 32 --kv-heads 4 --head-dim 128 --ffn 768 --experts 128
  --experts-used 8 --vocab 151936 --ctx 4096 --rope-theta 1000000 --norm-eps 1e-6 --seed 1)
# gpt-oss-20b's shape (32 experts of 2880, 4 used; sinks, window 128, YaRN), 6 of its 24 layers
oss20b=(--arch gpt-oss --layers 6 --dim 2880 --heads 64 --kv-heads 8 --head-dim 64 --ffn 2880 --experts 32
  --experts-used 4 --vocab 201088 --ctx 131072 --window 128 --yarn 32 --yarn-orig 4096 --rope-theta 150000 --seed 1)
# DeepSeek-V2-Lite's shape, whole (llama.cpp takes a deepseek2 without q_lora only at 27 layers): multi-head latent
# attention (16 heads, latent 512), 64 experts of 1408, 6 used, 2 shared, the first layer dense, YaRN
dsv2lite=(--arch deepseek2 --layers 27 --dim 2048 --heads 16 --head-dim 192 --rope-dim 64 --kv-lora 512 --v-head-dim 128
  --ffn 1408 --experts 64 --experts-used 6 --shared-ffn 2816 --dense-lead 1 --dense-ffn 10944 --softmax-gating
  --vocab 102400 --ctx 163840 --yarn 40 --yarn-orig 4096 --yarn-mscale 0.707 --seed 1)
# key -> "file:type:shape array name"
spec_of() {
  case $1 in
    q4_0) echo "synth-tinyllama-1.1b.Q4_0.gguf:Q4_0:tiny" ;;
    q4_k_m) echo "synth-tinyllama-1.1b.Q4_K_M.gguf:Q4_K_M:tiny" ;;
    q5_k_m) echo "synth-tinyllama-1.1b.Q5_K_M.gguf:Q5_K_M:tiny" ;;
    q6_k) echo "synth-tinyllama-1.1b.Q6_K.gguf:Q6_K:tiny" ;;
    q8_0) echo "synth-tinyllama-1.1b.Q8_0.gguf:Q8_0:tiny" ;;
    q3_k_m) echo "synth-tinyllama-1.1b.Q3_K_M.gguf:Q3_K_M:tiny" ;;
    q2_k) echo "synth-tinyllama-1.1b.Q2_K.gguf:Q2_K:tiny" ;;
    iq4_xs) echo "synth-tinyllama-1.1b.IQ4_XS.gguf:IQ4_XS:tiny" ;;
    llama32_1b) echo "synth-llama-3.2-1b.Q4_K_M.gguf:Q4_K_M:l32" ;;
    qwen25_05b) echo "synth-qwen2.5-0.5b.Q8_0.gguf:Q8_0:q05" ;;
    qwen3moe) echo "synth-qwen3-30b-a3b-8-layers.Q4_K_M.gguf:Q4_K_M:q3moe" ;;
    gpt_oss) echo "synth-gpt-oss-20b-6-layers.MXFP4_MOE.gguf:MXFP4_MOE:oss20b" ;;
    deepseek2) echo "synth-deepseek-v2-lite.Q4_0.gguf:Q4_0:dsv2lite" ;;
    *) echo "" ;;
  esac
}
path_of() {
  local sp
  [ "$1" = default ] && { echo "$default_model"; return; }
  sp=$(spec_of "$1")
  if [ -n "$sp" ]; then echo "$cache/models/${sp%%:*}"; else echo "$1"; fi
}
for m in $models_sel $depth_sel $batch_sel $multi_sel; do
  sp=$(spec_of "$m")
  if [ -z "$sp" ]; then
    [ "$m" = default ] || [ -f "$m" ] || { say "bench-vs-llamacpp: model '$m' is neither a key nor a file (see --help)"; exit 2; }
    continue
  fi
  f=$cache/models/${sp%%:*} rest=${sp#*:}
  t=${rest%%:*} shape=${rest#*:}
  [ -f "$f" ] && continue
  eval "args=(\"\${$shape[@]}\")"
  say "bench-vs-llamacpp: loom synth ${args[*]} --type $t --out $f"
  "$loom" synth "${args[@]}" --type "$t" --out "$f.part" >&2
  mv "$f.part" "$f"
done

[ "${1:-}" = "--build-only" ] && { say "bench-vs-llamacpp: llama-bench at $llama_bench; models ready"; exit 0; }

# mpirun refuses to run as root unless told (containers)
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

# ---------------------------------------------------------------- (c) runs
runs=$work/runs.tsv # kind model threads round load other-cpu file command
: > "$runs"
n=0
record() { # kind model threads round command...
  local kind=$1 model=$2 th=$3 rnd=$4
  shift 4
  n=$((n + 1))
  local f=$work/$n-$kind.json l b0 k0 t0 other
  l=$(load)
  say "[$(date +%H:%M:%S) load $l] $*"
  kids_snap 0
  b0=$(busy_s) t0=$(date +%s.%N)
  if [ "${kind%llama}" != "$kind" ]; then # llama, depth-llama, batch-llama: their JSON on stdout
    "$@" > "$f" 2> "$work/$n.err" || { cat "$work/$n.err" >&2; exit 1; }
  else
    "$@" --json "$f" > "$work/$n.out" 2> "$work/$n.err" || { cat "$work/$n.err" >&2; exit 1; }
    cat "$work/$n.out" >&2
  fi
  # CPUs' worth of other processes' work during the run (0 = quiet machine)
  kids_snap 1
  other=$(awk -v b0="$b0" -v b1="$(busy_s)" -v k0="$(kids_s 0)" -v k1="$(kids_s 1)" -v t0="$t0" -v t1="$(date +%s.%N)" \
    'BEGIN{o=((b1-b0)-(k1-k0))/(t1-t0); if(o<0)o=0; printf "%.2f", o}')
  say "    other processes used $other CPUs during the run"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$model" "$th" "$rnd" "$l" "$other" "$f" "$*" >> "$runs"
}

# where the threads sit around a llama.cpp run of several threads (kind
# "place"): loom bench's hand-off probe, a cache line's round trip between
# two threads, right before and after (the host of a VM may move its vCPUs
# between one L3 and two; loom's own runs carry the probe)
placed() { # MODEL THREADS ROUND command...
  local m=$1 t=$2 r=$3
  shift 3
  local probe=("$loom" bench --model "$default_model" --threads "$t" --prompt-tokens 1 --gen-tokens 1 --reps 1
               --membw-size 256M --membw-runs 1)
  [ "$t" -ge 2 ] && record place "$m" "$t" "$r" "${probe[@]}"
  record "$@"
  [ "$t" -ge 2 ] && record place "$m" "$t" "$r" "${probe[@]}"
  return 0
}

# side_by_side KIND_PREFIX MODEL THREADS ROUND: records ${llama_cmd[@]} and
# ${loom_cmd[@]} back to back (kinds PREFIXllama, PREFIXloom), llama.cpp first
# in odd rounds and loom first in even ones; the main table's llama.cpp
# runs between two hand-off probes (placed)
side_by_side() {
  local lm=record
  [ -z "$1" ] && lm="placed $2 $3 $4"
  if [ $(($4 % 2)) -eq 1 ]; then
    $lm "${1}llama" "$2" "$3" "$4" "${llama_cmd[@]}"
    record "${1}loom" "$2" "$3" "$4" "${loom_cmd[@]}"
  else
    record "${1}loom" "$2" "$3" "$4" "${loom_cmd[@]}"
    $lm "${1}llama" "$2" "$3" "$4" "${llama_cmd[@]}"
  fi
}
max_of() { tr , '\n' <<< "$1" | sort -n | tail -1; } # largest of a comma-separated list

IFS=, read -r -a tlist <<< "$threads"
for rnd in $(seq 1 "$rounds"); do
  for m in $models_sel; do
    f=$(path_of "$m")
    for t in "${tlist[@]}"; do
      llama_cmd=("$llama_bench" -m "$f" -p "$pt" -n "$gt" -t "$t" -r "$reps" -o json)
      loom_cmd=("$loom" bench --model "$f" --prompt-tokens "$pt" --gen-tokens "$gt" --threads "$t" --reps "$reps")
      side_by_side "" "$m" "$t" "$rnd"
    done
  done
done

tmax=$(max_of "$threads")

# ---------------------------------------------------------------- (d) depth
if [ "$depth" -gt 0 ]; then
  for rnd in $(seq 1 "$rounds"); do
    for m in $depth_sel; do
      f=$(path_of "$m")
      for kv in ${depth_kv//,/ }; do
        kv_llama=() kind=depth-
        [ "$kv" = f16 ] || kv_llama=(-fa 1 -ctk "$kv" -ctv "$kv") kind=depth-$kv-
        llama_cmd=("$llama_bench" -m "$f" -p 0 -n "$gt" -d "$depth" -t "$tmax" -r "$depth_reps" "${kv_llama[@]}" -o json)
        loom_cmd=("$loom" bench --model "$f" --prompt-tokens 16 --gen-tokens "$gt" --depth "$depth" --threads "$tmax"
          --reps "$depth_reps" --membw-size 0 --kv-type "$kv")
        side_by_side "$kind" "$m" "$tmax" "$rnd"
      done
    done
  done
fi

# ---------------------------------------------------------------- (e) batched decode
bmax=$(max_of "$batch_seqs")
for rnd in $(seq 1 "$rounds"); do
  for m in $batch_sel; do
    f=$(path_of "$m")
    llama_cmd=("$llama_batched" -m "$f" -c $(((pt + gt + 16) * bmax)) -b 2048 -ub 512 -npp "$pt" -ntg "$gt"
      -npl "$batch_seqs" -t "$tmax" --output-format jsonl)
    loom_cmd=("$loom" bench --model "$f" --prompt-tokens 16 --gen-tokens "$gt" --depth "$pt" --sequences "$batch_seqs"
      --threads "$tmax" --reps 2 --membw-size 0)
    side_by_side batch- "$m" "$tmax" "$rnd"
  done
done

# ---------------------------------------------------------------- (f) several ranks
if [ "$multi" = 1 ]; then
  mpi=(mpirun -np 2 --bind-to core)
  for rnd in $(seq 1 "$rounds"); do
    for m in $multi_sel; do
      f=$(path_of "$m")
      common=(--model "$f" --prompt-tokens "$pt" --gen-tokens "$gt" --reps "$reps")
      record tp2 "$m" 1 "$rnd" "${mpi[@]}" "$loom" bench "${common[@]}" --tp 2 --threads 1
      record tp1 "$m" 2 "$rnd" "$loom" bench "${common[@]}" --threads 2
      record pp2 "$m" 1 "$rnd" "${mpi[@]}" "$loom" bench "${common[@]}" --pp 2 --threads 1 --sequences "$seqs"
      record pp1 "$m" 1 "$rnd" "$loom" bench "${common[@]}" --threads 1 --sequences "$seqs"
    done
  done
fi

# ---------------------------------------------------------------- (g) the tables
python3 - "$runs" "$out" "$stamp" "$llama_bench" <<'PY'
import json, os, platform, statistics as st, sys

runs_path, out_path, flags, llama_bench = sys.argv[1:5]
runs = []
for line in open(runs_path):
    kind, model, th, rnd, load, other, f, cmd = line.rstrip("\n").split("\t")
    if kind == "batch-llama":  # JSON lines, one per batch size
        data = [json.loads(l) for l in open(f) if l.startswith("{")]
    else:
        data = json.load(open(f))
    runs.append(dict(kind=kind, model=model, threads=int(th), round=int(rnd), load=load, other_cpus=float(other),
                     file=f, command=cmd, data=data))

def loom_row(d):
    r = d["results"][0]
    return dict(pp=r["prefill_tokens_per_s"]["mean"], tg=r["decode_tokens_per_s"]["mean"],
                pp_sd=r["prefill_tokens_per_s"]["sd"], tg_sd=r["decode_tokens_per_s"]["sd"],
                bw=r["decode_gb_per_s"], membw=r["membw_gb_per_s"], frac=r["membw_frac"],
                handoff=[h for h in r.get("handoff_ns", []) if h > 0])

def llama_row(d):
    pp = next(x for x in d if x["n_prompt"] > 0 and x["n_gen"] == 0)
    tg = next(x for x in d if x["n_gen"] > 0 and x["n_prompt"] == 0)
    return dict(pp=pp["avg_ts"], tg=tg["avg_ts"], pp_sd=pp["stddev_ts"], tg_sd=tg["stddev_ts"],
                build=pp.get("build_commit"), cpu=pp.get("cpu_info"), type=pp.get("model_type"))

mean = lambda v: sum(v) / len(v) if v else float("nan")
names = {"default": "SmolLM2-135M Q4_1", "q4_0": "TinyLlama-1.1B Q4_0", "q4_k_m": "TinyLlama-1.1B Q4_K_M",
         "q5_k_m": "TinyLlama-1.1B Q5_K_M", "q6_k": "TinyLlama-1.1B Q6_K", "q8_0": "TinyLlama-1.1B Q8_0",
         "llama32_1b": "Llama-3.2-1B Q4_K_M", "qwen25_05b": "Qwen2.5-0.5B Q8_0"}
order = []
for r in runs:
    if r["kind"] in ("loom", "llama") and (r["model"], r["threads"]) not in order:
        order.append((r["model"], r["threads"]))

rows = []
for model, th in order:
    lo = [loom_row(r["data"]) for r in runs if r["kind"] == "loom" and r["model"] == model and r["threads"] == th]
    ll = [llama_row(r["data"]) for r in runs if r["kind"] == "llama" and r["model"] == model and r["threads"] == th]
    row = dict(model=model, name=names.get(model, os.path.basename(model)), threads=th,
               loom_pp=mean([x["pp"] for x in lo]), llama_pp=mean([x["pp"] for x in ll]),
               loom_tg=mean([x["tg"] for x in lo]), llama_tg=mean([x["tg"] for x in ll]),
               loom_bw_gbs=mean([x["bw"] for x in lo]), membw_gbs=mean([x["membw"] for x in lo]),
               loom_bw_frac=mean([x["frac"] for x in lo]), rounds=len(lo),
               handoff_ns=[h for x in lo for h in x["handoff"]],
               llama_handoff_ns=[h for r in runs if r["kind"] == "place" and r["model"] == model and r["threads"] == th
                                 for h in r["data"]["results"][0].get("handoff_ns", []) if h > 0],
               other_cpus=max([r["other_cpus"] for r in runs if r["kind"] in ("loom", "llama") and r["model"] == model
                               and r["threads"] == th]),
               loom_pp_rounds=[x["pp"] for x in lo], llama_pp_rounds=[x["pp"] for x in ll],
               loom_tg_rounds=[x["tg"] for x in lo], llama_tg_rounds=[x["tg"] for x in ll])
    row["pp_ratio"] = row["loom_pp"] / row["llama_pp"]
    row["tg_ratio"] = row["loom_tg"] / row["llama_tg"]
    rows.append(row)

if rows:  # (MODELS=" ": no main table)
    print()
    print("loom vs llama.cpp (llama-bench), mean over %d round(s) of the means of each run's repetitions" %
          max(r["rounds"] for r in rows))
    hdr = "%-18s %3s | %9s %9s %6s | %8s %8s %6s | %-32s | %-23s | %s" % (
        "model", "thr", "pp loom", "pp llama", "ratio", "tg loom", "tg llama", "ratio",
        "loom decode GB/s (% of measured)", "handoff ns loom | llama", "other CPUs")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        bw = "%5.1f of %5.1f (%3.0f%%)" % (r["loom_bw_gbs"], r["membw_gbs"], 100 * r["loom_bw_frac"])
        rng = lambda v: "%.0f-%.0f" % (min(v), max(v)) if v else "-"
        ho = rng(r["handoff_ns"]) + " | " + rng(r["llama_handoff_ns"])
        print("%-18s %3d | %9.1f %9.1f %5.2fx | %8.2f %8.2f %5.2fx | %-32s | %-23s | %.2f" % (
            r["name"], r["threads"], r["loom_pp"], r["llama_pp"], r["pp_ratio"], r["loom_tg"], r["llama_tg"],
            r["tg_ratio"], bw, ho, r["other_cpus"]))
    print("(other CPUs: the most CPUs' worth of other processes' work during any run of the row; 0 = quiet;")
    print(" % of measured: each decode repetition against the bandwidth probed right before and after it;")
    print(" handoff: the round trip of a cache line between two threads, its range: with each of loom's probes,")
    print(" and right before and after each llama.cpp run; ~60-110 ns on one L3, 3-5x across L3s)")

def pairs_of(a, b):
    """(model, threads) -> [(loom run, llama run)] of the same round"""
    out = {}
    for r in runs:
        if r["kind"] != a:
            continue
        o = next((x for x in runs if x["kind"] == b and x["model"] == r["model"] and x["round"] == r["round"]), None)
        if o:
            out.setdefault((r["model"], r["threads"]), []).append((r["data"], o["data"]))
    return out

depth_rows = []
depth_kinds = sorted({r["kind"][:-len("loom")] for r in runs if r["kind"].startswith("depth-") and r["kind"].endswith("-loom")})
for kind in depth_kinds:  # depth- (f16), depth-q8_0-, ...
    for (model, th), ps in pairs_of(kind + "loom", kind + "llama").items():
        lo = mean([p[0]["results"][0]["decode_tokens_per_s"]["mean"] for p in ps])
        ll = mean([next(x["avg_ts"] for x in p[1] if x["n_gen"] > 0) for p in ps])
        depth_rows.append(dict(model=model, name=names.get(model, os.path.basename(model)), threads=th,
                               kv=kind[len("depth-"):-1] or "f16", depth=ps[0][0]["options"]["depth"], loom_tg=lo,
                               llama_tg=ll, ratio=lo / ll, target=1.0, rounds=len(ps)))
if depth_rows:
    print()
    print("decode at depth (tokens/s after a long context; llama-bench -d)")
    for r in depth_rows:
        print("%-22s %d threads, depth %d, %s KV: loom %.2f, llama.cpp %.2f = %.2fx (target >= %.1fx: %s)" % (
            r["name"], r["threads"], r["depth"], r["kv"], r["loom_tg"], r["llama_tg"], r["ratio"], r["target"],
            "meets" if r["ratio"] >= r["target"] else "BELOW"))

batch_rows = []
for (model, th), ps in pairs_of("batch-loom", "batch-llama").items():
    for res in ps[0][0]["results"]:
        n = res["sequences"]
        lo = mean([next(x for x in p[0]["results"] if x["sequences"] == n)["decode_tokens_per_s"]["mean"] for p in ps])
        ll = mean([next(x["speed_tg"] for x in p[1] if x["pl"] == n) for p in ps])
        batch_rows.append(dict(model=model, name=names.get(model, os.path.basename(model)), threads=th, sequences=n,
                               context=ps[0][0]["options"]["depth"], loom_tg=lo, llama_tg=ll, ratio=lo / ll,
                               target=1.2, rounds=len(ps)))
if batch_rows:
    print()
    print("batched decode (total generated tokens/s; llama-batched-bench S_TG, each sequence after a %d-token prompt)" %
          batch_rows[0]["context"])
    for r in batch_rows:
        print("%-22s %d threads, %2d sequences: loom %.2f, llama.cpp %.2f = %.2fx (target >= %.1fx: %s)" % (
            r["name"], r["threads"], r["sequences"], r["loom_tg"], r["llama_tg"], r["ratio"], r["target"],
            "meets" if r["ratio"] >= r["target"] else "BELOW"))

multi = []
def results_of(kind, model, rnd):
    for r in runs:
        if r["kind"] == kind and r["model"] == model and r["round"] == rnd:
            return r["data"]["results"]
    return []
for model in dict.fromkeys(r["model"] for r in runs if r["kind"] in ("tp2", "pp2")):
    for a, b, what, target in (("tp2", "tp1", "TP=2 (2 ranks x 1 thread) vs 1 rank x 2 threads, decode", 0.95),
                               ("pp2", "pp1", "PP=2 (2 ranks x 1 thread) vs 1 rank x 1 thread, batched decode", 1.7)):
        other = max([r["other_cpus"] for r in runs if r["kind"] in (a, b) and r["model"] == model] or [0])
        rounds = sorted({r["round"] for r in runs if r["kind"] == a and r["model"] == model})
        by_seqs = {}  # sequences -> [(cluster result, single result)] over rounds
        for rnd in rounds:
            single = {y["sequences"]: y for y in results_of(b, model, rnd)}
            for x in results_of(a, model, rnd):
                if x["sequences"] in single:
                    by_seqs.setdefault(x["sequences"], []).append((x, single[x["sequences"]]))
        for seqs, pairs in sorted(by_seqs.items()):
            xs = mean([p[0]["decode_tokens_per_s"]["mean"] for p in pairs])
            ys = mean([p[1]["decode_tokens_per_s"]["mean"] for p in pairs])
            # the most the host's read bandwidth (all ranks reading at once) allows at the cluster's bytes per token
            ceil = [p[0]["membw_gb_per_s"] * 1e9 / p[0]["weight_bytes_per_token"] for p in pairs
                    if p[0].get("membw_gb_per_s") and p[0].get("weight_bytes_per_token")]
            multi.append(dict(model=model, name=names.get(model, os.path.basename(model)), what=what, kind=a,
                              sequences=seqs, cluster_tps=xs, single_tps=ys, ratio=xs / ys, target=target,
                              cluster_rounds=[p[0]["decode_tokens_per_s"]["mean"] for p in pairs],
                              single_rounds=[p[1]["decode_tokens_per_s"]["mean"] for p in pairs],
                              bandwidth_ceiling_tps=mean(ceil) if ceil else None,
                              decode_ranks=pairs[-1][0]["decode_ranks"], other_cpus=other))
if multi:
    print()
    print("several ranks (loom only; per decoded token: TP collectives / stage transfers / busy, ms, per rank)")
    for m in multi:
        ok = "meets" if m["ratio"] >= m["target"] else "BELOW"
        ceil = ""
        if m["kind"] == "pp2" and m["bandwidth_ceiling_tps"]:
            c = m["bandwidth_ceiling_tps"]
            ceil = "; the host's read bandwidth allows at most %.1f tok/s = %.2fx" % (c, c / m["single_tps"])
        print("%-18s %s, %d seq: %.2f vs %.2f tok/s = %.2fx (target >= %.2gx: %s%s; other CPUs <= %.2f)" % (
            m["name"], m["what"], m["sequences"], m["cluster_tps"], m["single_tps"], m["ratio"], m["target"], ok,
            ceil, m["other_cpus"]))
        for k in m["decode_ranks"]:
            print("%22s rank %d (stage %d, tp %d): TP %.3f, transfers %.3f, busy %.3f ms/token, idle %.0f%%" % (
                "", k["rank"], k["stage"], k["tp_rank"], k["tp_ms_per_token"], k["transfer_ms_per_token"],
                k["busy_ms_per_token"], 100 * k["idle_frac"]))

llama_info = next((llama_row(r["data"]) for r in runs if r["kind"] == "llama"), {})
loom_machine = next((r["data"]["machine"] for r in runs  # any loom bench's JSON (a run may have no main table)
                     if "llama" not in r["kind"] and isinstance(r["data"], dict) and "machine" in r["data"]), {})
cpuinfo = {}
for line in open("/proc/cpuinfo"):
    if ":" in line:
        k, v = (x.strip() for x in line.split(":", 1))
        cpuinfo.setdefault(k, v)
    elif cpuinfo:
        break
cpu_flags = cpuinfo.get("flags", "").split()
cpu = dict(vendor=cpuinfo.get("vendor_id"), model_name=cpuinfo.get("model name"), family=cpuinfo.get("cpu family"),
           model=cpuinfo.get("model"), stepping=cpuinfo.get("stepping"),
           avx512=sorted(f for f in cpu_flags if f.startswith("avx512")), avx2="avx2" in cpu_flags,
           kind="%s family %s model %s (%s)" % (cpuinfo.get("vendor_id"), cpuinfo.get("cpu family"), cpuinfo.get("model"),
                                                "AVX-512" if "avx512f" in cpu_flags else "AVX2" if "avx2" in cpu_flags else "no AVX2"))
print("\nCPU: %s — %s; loom kernels %s (8-row interleaved: %s)" % (cpu["model_name"], cpu["kind"], loom_machine.get("isa"),
                                                                   loom_machine.get("r8_types", "?")))
doc = dict(tool="launch/bench-vs-llamacpp.sh", cpu=cpu, machine=dict(loom_machine, platform=platform.platform()),
           llama_cpp=dict(source="llama-cpp-python==0.3.36 sdist, vendor/llama.cpp", build_commit=llama_info.get("build"),
                          cmake_flags=flags, llama_bench=llama_bench),
           rows=rows, depth=depth_rows, batched=batch_rows, multi_rank=multi,
           runs=[dict(kind=r["kind"], model=r["model"], threads=r["threads"], round=r["round"], load=r["load"],
                      other_cpus=r["other_cpus"],
                      command=r["command"], output=r["data"]) for r in runs])
with open(out_path, "w") as f:
    json.dump(doc, f, indent=1)
print("\nllama.cpp build %s, flags: %s" % (llama_info.get("build") or "unknown", flags))
print("JSON: %s" % out_path)
PY
