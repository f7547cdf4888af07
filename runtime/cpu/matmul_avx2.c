/* runtime/cpu/matmul_avx2.c — AVX2 kernels (work in progress: none yet). */
#include "cpu_kernels.h"
const loom_cpu_kernels loom_cpu_kernels_avx2 = {.matmul = {0}};
