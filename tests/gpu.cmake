# GPU backend tests (issue 11): the device communicator backends under
# mpirun on the host device, and the GPU tests (label "gpu"), which report
# "not run" (exit 77, ctest's SKIP_RETURN_CODE) where no GPU exists.
foreach(np 1 2 3)
  add_test(NAME mpi_comm_backends_np${np} COMMAND ${LOOM_MPIRUN} -np ${np} $<TARGET_FILE:mpi_comm_backends>)
  set_tests_properties(mpi_comm_backends_np${np} PROPERTIES LABELS mpi TIMEOUT 300
    ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
