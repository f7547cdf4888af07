# End-to-end and multi-rank tests (plain executables and scripts; Criterion
# forks each test, which MPI does not survive).
set(LOOM_MODEL ${LOOM_CACHE_DIR}/models/SmolLM2-135M-Instruct.Q4_1.gguf)
set(LOOM_E2E_ENV "LOOM=$<TARGET_FILE:loom>" "MODEL=${LOOM_MODEL}" "TEMPLATES=${LOOM_CACHE_DIR}/templates"
    "SCRIPT_MODEL=$<TARGET_FILE:script_model>"
    "OMPI_ALLOW_RUN_AS_ROOT=1" "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")

foreach(script generate_cli chat_templates cluster_failures serve predict_validation embed perplexity)
  add_test(NAME e2e_${script} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/${script}.sh)
  set_tests_properties(e2e_${script} PROPERTIES LABELS e2e TIMEOUT 900 ENVIRONMENT "${LOOM_E2E_ENV}")
endforeach()
if(LOOM_SANITIZE)
  # the server under ASan+UBSan: a short mixed load, then no sanitizer report (run with the unit tests)
  add_test(NAME e2e_serve_sanitized COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/e2e/serve.sh)
  set_tests_properties(e2e_serve_sanitized PROPERTIES LABELS unit TIMEOUT 900 PROCESSORS 2
    ENVIRONMENT "${LOOM_E2E_ENV};SERVE_MODES=asan;LOOM_CACHE=${LOOM_CACHE_DIR}")
endif()

# Multi-rank output equals single-rank output, teacher-forced (DESIGN.md).
# Default model: (tp, pp) of issue 3; two fixture cases keep CI short.
set(LOOM_FX ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
# mpi_equivalence_NAME_tpT_ppP: tp x pp ranks of tests/mpi_equivalence.c with the other arguments given
# (ENV: extra environment, a ;-list, after the root permissions mpirun needs in CI)
function(loom_mpi_equivalence name tp pp)
  cmake_parse_arguments(PARSE_ARGV 3 opt "" "" "ENV")
  math(EXPR np "${tp} * ${pp}")
  add_test(NAME mpi_equivalence_${name}_tp${tp}_pp${pp}
    COMMAND ${LOOM_MPIRUN} -np ${np} $<TARGET_FILE:mpi_equivalence> --tp ${tp} --pp ${pp} ${opt_UNPARSED_ARGUMENTS})
  set(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 ${opt_ENV})
  set_tests_properties(mpi_equivalence_${name}_tp${tp}_pp${pp} PROPERTIES LABELS mpi TIMEOUT 900 ENVIRONMENT "${env}")
endfunction()
set(LOOM_SMOLLM2 --fixture ${LOOM_FX}/smollm2-q4_1.json --model ${LOOM_MODEL})
foreach(grid "1 1" "2 1" "3 1" "4 1" "1 2" "1 3" "2 2" "3 2" "1 4")
  separate_arguments(g UNIX_COMMAND "${grid}")
  loom_mpi_equivalence(smollm2 ${g} ${LOOM_SMOLLM2} --cases 2)
endforeach()
foreach(grid "2 1" "1 2")
  separate_arguments(g UNIX_COMMAND "${grid}")
  # a q8_0 KV cache (int8, a scale per 32 of a head: split by heads, so TP and PP hold the same bytes)
  loom_mpi_equivalence(smollm2_kv_q8_0 ${g} ${LOOM_SMOLLM2} --cases 2 --kv-type q8_0)
  # speculative decoding: TP (the vocabulary-parallel argmax of every row), PP (the proposals travel with the Step)
  loom_mpi_equivalence(smollm2_draft ${g} ${LOOM_SMOLLM2} --cases 1 --draft 4)
endforeach()
# Random K-quant model (width 512, heads in groups of 4 on 256-element blocks)
foreach(grid "2 1" "2 2" "1 3")
  separate_arguments(g UNIX_COMMAND "${grid}")
  loom_mpi_equivalence(synth_q4_k_m ${g} --fixture ${LOOM_FX}/synth-llama-q4_k_m.json --cases 2)
endforeach()

# The other families (tests/fixtures/gen_families.sh): per fixture three
# layouts, one with an uneven TP split (heads, KV heads or MLP blocks that
# do not divide evenly) and one pipeline; encoders take a prompt in one batch.
foreach(case
    "qwen3-q4_k_m 2 1" "qwen3-q4_k_m 2 2" "qwen3-q4_k_m 1 3"
    "qwen3-q8_0 4 1" "qwen3-q8_0 3 1" "qwen3-q8_0 1 2"
    "qwen3moe-q4_k_m 2 1" "qwen3moe-q4_k_m 1 3" "qwen3moe-q8_0 3 1" "qwen3moe-q8_0 2 2"
    "mixtral-q5_k_m 2 1" "mixtral-q5_k_m 1 2" "qwen2moe-q8_0 3 1" "qwen2moe-q8_0 1 2" "qwen2moe-q4_k_m 2 1"
    "gpt-oss-mxfp4 2 1" "gpt-oss-mxfp4 3 1" "gpt-oss-mxfp4 1 2" "gpt-oss-f32 2 2" "llama-q3_k_m 2 1" "llama-q2_k 1 2"
    "smollm3-q4_k_m 2 1" "smollm3-f16 1 2" "granite-q4_k_m 2 1" "granite-f32 1 3" "ernie4_5-q6_k 2 1"
    "mistral3-q8_0 3 1" "mistral3-q8_0 1 2"
    "glm4moe-f32 2 1" "glm4moe-f32 4 1" "glm4moe-f32 1 2" "glm4moe-q4_k_m 2 1" "glm4moe-q4_k_m 2 2"
    "deepseek2-f32 2 1" "deepseek2-f32 4 1" "deepseek2-f32 1 3" "deepseek2-q4_k_m 2 1" "deepseek2-q4_k_m 2 2"
    "deepseek2-lite-f16 3 1" "deepseek2-lite-f16 1 2" "deepseek2-legacy-q8_0 3 1" "deepseek2-legacy-q8_0 2 2"
    "gemma2-q5_k_m 2 1" "gemma2-q5_k_m 1 3" "gemma2-bf16 3 1" "gemma2-bf16 2 2"
    "gemma3-q4_k_m 2 1" "gemma3-q4_k_m 1 3" "gemma3-q8_0 3 1" "gemma3-q8_0 2 2"
    "phi3-q4_0 3 1" "phi3-q4_0 2 2" "phi3-q4_0 1 3" "phi3-q6_k 2 1"
    "gpt2-q5_1 3 1" "gpt2-q5_1 1 3" "gpt2-f16 4 1" "gpt2-f16 2 2"
    "bert-f16 4 1" "bert-f16 1 2" "bert-q8_0 3 1" "bert-q8_0 2 2" "bert-xlmr-q8_0 2 1" "bert-xlmr-q8_0 1 2"
    "nomic-bert-q8_0 3 1" "nomic-bert-q8_0 1 2" "nomic-bert-f16 4 1" "nomic-bert-f16 2 2"
    "nomic-bert-moe-q8_0 2 1" "nomic-bert-moe-q8_0 1 2" "nomic-bert-moe-f16 3 1" "nomic-bert-moe-f16 2 2"
    "qwen3-embed-q8_0 2 1" "qwen3-embed-f16 1 2"
    "llama-lora-q4_k_m 2 1" "llama-lora-q4_k_m 1 2" "phi3-lora-q8_0 3 1" "qwen2-lora-f16 2 2")
  separate_arguments(c UNIX_COMMAND "${case}")
  list(GET c 0 fx)
  set(batch 64)
  if(fx MATCHES "bert|embed")
    set(batch 1024)
  endif()
  list(SUBLIST c 1 2 g)
  loom_mpi_equivalence(${fx} ${g} --fixture ${LOOM_FX}/synth-${fx}.json --cases 3 --batch ${batch})
endforeach()

# Chat templates: llama.cpp's models/templates/*.jinja (unpacked by
# launch/fetch-model.sh --vocab) over the committed conversations, through
# `loom template`, byte for byte against transformers + jinja2 renders.
add_executable(template_corpus ${CMAKE_CURRENT_SOURCE_DIR}/template_corpus.c)
target_link_libraries(template_corpus PRIVATE PkgConfig::JANSSON)
add_dependencies(template_corpus loom)
add_test(NAME template_corpus
  COMMAND template_corpus $<TARGET_FILE:loom> ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/templates ${LOOM_CACHE_DIR}/templates)
set_tests_properties(template_corpus PROPERTIES LABELS unit TIMEOUT 900)
