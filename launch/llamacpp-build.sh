# launch/llamacpp-build.sh — sourced by the side-by-side benchmarks
# (bench-vs-llamacpp.sh, bench-serve.sh): llama.cpp from the pinned
# llama-cpp-python sdist (downloaded once from PyPI into $cache/dl, unpacked
# once into $cache/llama.cpp-VERSION), CPU only, GGML_NATIVE, nothing fetched
# at build or run time (no OpenSSL, so no model downloads; no web UI assets),
# built once per set of flags. Needs the caller's $cache, $work and say().
LLAMACPP_VER=0.3.36

# llamacpp_build WHO BUILD_DIR TARGET [CMAKE FLAGS...]: builds TARGET into
# $cache/llama.cpp-VERSION/BUILD_DIR with the common flags plus the given
# ones; sets llama_flags (the array), stamp (the flags as one string) and
# llamacpp_bin (the binary).
llamacpp_build() {
  local who=$1 name=$2 target=$3
  shift 3
  local sdist=$cache/dl/llama_cpp_python-$LLAMACPP_VER.tar.gz src=$cache/llama.cpp-$LLAMACPP_VER
  local bld=$src/$name
  llama_flags=(-DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CPU=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF
    -DGGML_VULKAN=OFF -DGGML_OPENCL=OFF -DGGML_HIP=OFF -DGGML_SYCL=OFF -DGGML_RPC=OFF -DLLAMA_OPENSSL=OFF
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "$@")
  # On a CPU with AMX, GGML_NATIVE compiles ggml's AMX matmul, and this
  # version's crashes at its first prompt (SIGSEGV at LDTILECFG in
  # ggml_backend_amx_mul_mat: Intel Xeon family 6 model 167 under KVM, every
  # model tried; llama.cpp issue 20824, closed without a fix). So unless
  # LLAMA_AMX=1, AMX is left out there (the compiler's -mno-amx-* win over
  # -march=native): llama.cpp keeps every other native path, its repacked
  # AVX-512 kernels included, the best of it that runs.
  if [ "${LLAMA_AMX:-0}" != 1 ] && grep -qw amx_int8 /proc/cpuinfo 2>/dev/null; then
    llama_flags+=("-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
      "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
  fi
  # (this llama.cpp has no CURL dependency left: LLAMA_CURL is deprecated and ignored)
  if [ ! -f "$sdist" ]; then
    say "$who: downloading llama-cpp-python==$LLAMACPP_VER (sdist) from PyPI"
    python3 -m pip download --quiet --no-deps --no-binary :all: --dest "$cache/dl" "llama-cpp-python==$LLAMACPP_VER" >&2
  fi
  if [ ! -f "$src/.unpacked" ]; then
    say "$who: unpacking llama.cpp from $sdist"
    rm -rf "$src"
    mkdir -p "$src"
    tar -xzf "$sdist" -C "$src" --strip-components=3 "llama_cpp_python-$LLAMACPP_VER/vendor/llama.cpp"
    touch "$src/.unpacked"
  fi
  llamacpp_bin=$bld/bin/$target
  stamp="${llama_flags[*]}"
  # one stamp per target: a build dir's targets are built one call at a time, and a target built with
  # older flags must not pass for one built with these
  if [ ! -x "$llamacpp_bin" ] || [ "$(cat "$bld/.flags-$target" 2>/dev/null)" != "$stamp" ]; then
    say "$who: building $target (several minutes): cmake ${llama_flags[*]}"
    cmake -S "$src" -B "$bld" "${llama_flags[@]}" > "$work/llama-cmake.log" 2>&1 ||
      { cat "$work/llama-cmake.log" >&2; return 1; }
    cmake --build "$bld" --target "$target" -j "$(nproc)" > "$work/llama-build.log" 2>&1 ||
      { tail -50 "$work/llama-build.log" >&2; return 1; }
    echo "$stamp" > "$bld/.flags-$target"
  fi
}
