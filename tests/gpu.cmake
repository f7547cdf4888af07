# GPU backend tests (issue 11): the device communicator backends under
# mpirun on the host device, and the GPU tests (label "gpu"), which report
# "not run" (exit 77, ctest's SKIP_RETURN_CODE) where no GPU exists.
foreach(np 1 2 3)
  add_test(NAME mpi_comm_backends_np${np} COMMAND ${LOOM_MPIRUN} -np ${np} $<TARGET_FILE:mpi_comm_backends>)
  set_tests_properties(mpi_comm_backends_np${np} PROPERTIES LABELS mpi TIMEOUT 300
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()

# The GPU's code path on the CPU: ranks on the host device (device stage,
# device forward pass, staged TP communicator over MPI, hidden states to the
# next stage through the host), against one CPU rank: PP bit-exact, TP
# within mpi_equivalence's tolerances. The host device multiplies the file's
# rows, as a GPU does; LOOM_R8=0 keeps the CPU reference on them too (a CPU
# rank would otherwise interleave them where its level prefers, e.g. Q4_1
# on AVX-512 Zen 4, and round like the AVX2 level: up to 0.3 sigma apart
# over SmolLM2's 30 layers, both within test_reference's distance of
# llama.cpp).
foreach(grid "2 1" "1 2")
  separate_arguments(g UNIX_COMMAND "${grid}")
  loom_mpi_equivalence(device_host_smollm2 ${g} ${LOOM_SMOLLM2} --cases 2 --device host ENV LOOM_R8=0)
endforeach()
loom_mpi_equivalence(device_host_synth_q4_k_m 2 2 --fixture ${LOOM_FX}/synth-llama-q4_k_m.json --cases 2 --device host
  ENV LOOM_R8=0)

# The device check (tests/gpu/device_check.c, run on a GPU machine by
# tests/gpu/check.sh): here the harness on the host device (the CUDA
# part says NOT RUN), and --device cuda, which reports "not run" (77) in a
# build without the CUDA backend linked or without a GPU.
add_executable(device_check ${CMAKE_SOURCE_DIR}/tests/gpu/device_check.c ${CMAKE_SOURCE_DIR}/tests/gpu/check_ops.c
  ${CMAKE_SOURCE_DIR}/tests/gpu/check_util.c ${CMAKE_SOURCE_DIR}/tests/gpu/synth_model.c)
target_link_libraries(device_check PRIVATE loomrt)
add_test(NAME device_check_host COMMAND device_check --device host --quick)
set_tests_properties(device_check_host PROPERTIES LABELS "unit;gpu" TIMEOUT 600)
add_test(NAME device_check_cuda COMMAND device_check --device cuda)
set_tests_properties(device_check_cuda PROPERTIES LABELS gpu TIMEOUT 900 SKIP_RETURN_CODE 77)
