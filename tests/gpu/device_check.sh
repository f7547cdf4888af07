#!/usr/bin/env bash
# tests/gpu/device_check.sh — the GPU device check, run from the repository
# root on a machine with an NVIDIA GPU and the CUDA toolkit (no MPI,
# protobuf-c, jansson, libmicrohttpd or PCRE2 needed): builds runtime/ with
# the CUDA backend for sm_90 (-DLOOM_RUNTIME_ONLY=ON, ninja) and runs
# tests/gpu/device_check.c (kernel entries and forward passes against the
# CPU, speed on a 1.1B shape). Prints everything; JSON summary to
# $OUT/gpu_check.json when $OUT is set. Exits nonzero if the build or any
# check failed. Every step has a timeout; about 3-5 minutes in all.
#
#   bash tests/gpu/device_check.sh              # sm_90 (H100/H200)
#   LOOM_CUDA_ARCHS=89 bash tests/gpu/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
T0=$(date +%s)
BUILD=${BUILD:-build-gpu}
ARCHS=${LOOM_CUDA_ARCHS:-90}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 8)}
STATUS=0
step() { echo; echo "=== $* ($(( $(date +%s) - T0 )) s)"; }

step "machine"
timeout 30 nvidia-smi || echo "nvidia-smi failed (rc $?)"
NVCC=$(command -v nvcc || true)
[ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
if [ -z "$NVCC" ]; then echo "FAIL: nvcc not found (PATH or /usr/local/cuda/bin)"; exit 1; fi
"$NVCC" --version | tail -n 2
cmake --version | head -n 1
GEN=()
if command -v ninja >/dev/null; then GEN=(-G Ninja); else echo "(ninja not found: make)"; fi

step "configure (runtime only, CUDA architectures $ARCHS)"
rc=0
timeout 120 cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release -DLOOM_RUNTIME_ONLY=ON \
  -DCMAKE_CUDA_COMPILER="$NVCC" -DLOOM_CUDA_ARCHS="$ARCHS" || rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: configure (rc $rc)"; exit 1; fi

step "build"
rc=0
timeout 300 cmake --build "$BUILD" -j "$JOBS" || rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: build (rc $rc)"; exit 1; fi

step "device check"
JSON=()
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; JSON=(--json "$OUT/gpu_check.json"); fi
rc=0
timeout 420 "$BUILD/device_check" --device cuda "${JSON[@]}" || rc=$?
case $rc in
  0) echo "device check: all checks passed" ;;
  77) echo "device check: NOT RUN (no GPU visible or no CUDA in the build)"; STATUS=1 ;;
  124) echo "FAIL: device check timed out"; STATUS=1 ;;
  *) echo "FAIL: device check (rc $rc)"; STATUS=1 ;;
esac

if command -v compute-sanitizer >/dev/null || [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
  step "compute-sanitizer, kernel entries only (informational)"
  CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  timeout 60 "$CS" --error-exitcode 3 "$BUILD/device_check" --device cuda --ops-only \
    || echo "compute-sanitizer: rc $?"
fi

step "done, status $STATUS"
exit $STATUS
