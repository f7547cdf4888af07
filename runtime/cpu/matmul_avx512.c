/* runtime/cpu/matmul_avx512.c — AVX-512 kernels (work in progress: none yet). */
#include "cpu_kernels.h"
const loom_cpu_kernels loom_cpu_kernels_avx512 = {.matmul = {0}};
