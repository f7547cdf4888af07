#!/usr/bin/env bash
# tests/gpu/check.sh — the GPU device check, run from the repository
# root on a machine with an NVIDIA GPU and the CUDA toolkit (no MPI,
# protobuf-c, jansson, libmicrohttpd or PCRE2 needed): builds runtime/ with
# the CUDA backend for sm_90 (-DLOOM_RUNTIME_ONLY=ON, ninja) and runs
# tests/gpu/device_check.c (kernel entries and forward passes against the
# CPU, speed on a 1.1B shape). Prints everything; JSON summary to
# $OUT/gpu_check.json when $OUT is set. Exits nonzero if the build or any
# check failed. Every step has a timeout; about 3-5 minutes in all.
#
#   bash tests/gpu/check.sh              # sm_90 (H100/H200)
#   LOOM_CUDA_ARCHS=89 bash tests/gpu/check.sh
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
"$NVCC" --version | tail -n 2 || true
cmake --version | head -n 1 || true
GEN=()
if command -v ninja >/dev/null; then GEN=(-G Ninja); else echo "(ninja not found: make)"; fi

configure() {
  timeout 120 cmake -S . -B "$BUILD" ${GEN[@]+"${GEN[@]}"} -DCMAKE_BUILD_TYPE=Release -DLOOM_RUNTIME_ONLY=ON \
    -DCMAKE_CUDA_COMPILER="$NVCC" -DLOOM_CUDA_ARCHS="$ARCHS" "$@"
}
step "configure (runtime only, CUDA architectures $ARCHS)"
rc=0
configure -DLOOM_WERROR=ON || rc=$?
if [ $rc -ne 0 ]; then echo "FAIL: configure (rc $rc)"; exit 1; fi

step "build"
rc=0
timeout 240 cmake --build "$BUILD" -j "$JOBS" || rc=$?
if [ $rc -ne 0 ]; then
  # a compiler here may warn where the one it was written on did not: say
  # so (the run fails), and check the kernels all the same
  echo "FAIL: build with warnings as errors (rc $rc); again without -Werror"
  STATUS=1
  rc=0
  configure -DLOOM_WERROR=OFF >/dev/null && timeout 300 cmake --build "$BUILD" -j "$JOBS" || rc=$?
  if [ $rc -ne 0 ]; then echo "FAIL: build (rc $rc)"; exit 1; fi
fi

step "device check"
JSON=()
if [ -n "${OUT:-}" ]; then mkdir -p "$OUT"; JSON=(--json "$OUT/gpu_check.json"); fi
rc=0
timeout 240 "$BUILD/device_check" --device cuda ${JSON[@]+"${JSON[@]}"} || rc=$?
case $rc in
  0) echo "device check: all checks passed" ;;
  1) echo "FAIL: some device checks failed (the FAIL lines above)"; STATUS=1 ;;
  77) echo "device check: NOT RUN (no GPU visible or no CUDA in the build)"; STATUS=1 ;;
  124) echo "FAIL: device check timed out"; STATUS=1 ;;
  *) echo "FAIL: device check (rc $rc)"; STATUS=1 ;;
esac

CS=$(command -v compute-sanitizer || true)
[ -z "$CS" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ] && CS=/usr/local/cuda/bin/compute-sanitizer
if [ -n "$CS" ] && [ "${SANITIZER:-1}" = 1 ]; then
  step "compute-sanitizer memcheck, kernel entries only (informational; log: $BUILD/sanitizer.log)"
  rc=0
  timeout 60 "$CS" --error-exitcode 3 "$BUILD/device_check" --device cuda --ops-only >"$BUILD/sanitizer.log" 2>&1 || rc=$?
  grep -E "ERROR SUMMARY|^FAIL|Invalid|out of bounds" "$BUILD/sanitizer.log" | head -n 12 || true
  echo "compute-sanitizer: rc $rc (0: clean, 3: errors found, 124: timed out)"
  if [ -n "${OUT:-}" ]; then cp "$BUILD/sanitizer.log" "$OUT/" || true; fi
fi

step "done, status $STATUS"
exit $STATUS
