#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs missing packages,
# fetches the default model and llama.cpp's vocab tests, builds loom twice
# (Release, and an ASan+UBSan clang build with the fuzzers), runs every test.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

launch/install-deps.sh
launch/fetch-model.sh --vocab >/dev/null

# Open MPI refuses to run as root unless told; CI runs as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

echo "== Release build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
(cd build && ctest --output-on-failure -j 1)

echo "== ASan + UBSan build (clang), unit tests and fuzzers =="
CC=clang CXX=clang++ cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DLOOM_SANITIZE=ON -DLOOM_FUZZ=ON -DLOOM_CUDA=OFF >/dev/null
cmake --build build-asan -j "$jobs"
# two at a time (a test that takes both cores says so: PROCESSORS 2)
(cd build-asan && ctest --output-on-failure -j "$jobs" -L unit)
echo "tests: all passed"
