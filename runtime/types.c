#include "runtime/types.h"

static const loom_type_traits type_table[LOOM_TYPE_COUNT] = {
    [LOOM_TYPE_F32] = {"F32", 1, 4, true},
    [LOOM_TYPE_F16] = {"F16", 1, 2, true},
    [LOOM_TYPE_Q4_0] = {"Q4_0", 32, 18, true},
    [LOOM_TYPE_Q4_1] = {"Q4_1", 32, 20, true},
    [LOOM_TYPE_Q5_0] = {"Q5_0", 32, 22, true},
    [LOOM_TYPE_Q5_1] = {"Q5_1", 32, 24, true},
    [LOOM_TYPE_Q8_0] = {"Q8_0", 32, 34, true},
    [LOOM_TYPE_Q8_1] = {"Q8_1", 32, 36, false},
    [LOOM_TYPE_Q2_K] = {"Q2_K", 256, 84, true},
    [LOOM_TYPE_Q3_K] = {"Q3_K", 256, 110, true},
    [LOOM_TYPE_Q4_K] = {"Q4_K", 256, 144, true},
    [LOOM_TYPE_Q5_K] = {"Q5_K", 256, 176, true},
    [LOOM_TYPE_Q6_K] = {"Q6_K", 256, 210, true},
    [LOOM_TYPE_Q8_K] = {"Q8_K", 256, 292, false},
    [LOOM_TYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, false},
    [LOOM_TYPE_IQ2_XS] = {"IQ2_XS", 256, 74, false},
    [LOOM_TYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, false},
    [LOOM_TYPE_IQ1_S] = {"IQ1_S", 256, 50, false},
    [LOOM_TYPE_IQ4_NL] = {"IQ4_NL", 32, 18, true},
    [LOOM_TYPE_IQ3_S] = {"IQ3_S", 256, 110, false},
    [LOOM_TYPE_IQ2_S] = {"IQ2_S", 256, 82, false},
    [LOOM_TYPE_IQ4_XS] = {"IQ4_XS", 256, 136, false},
    [LOOM_TYPE_I8] = {"I8", 1, 1, false},
    [LOOM_TYPE_I16] = {"I16", 1, 2, false},
    [LOOM_TYPE_I32] = {"I32", 1, 4, false},
    [LOOM_TYPE_I64] = {"I64", 1, 8, false},
    [LOOM_TYPE_F64] = {"F64", 1, 8, false},
    [LOOM_TYPE_IQ1_M] = {"IQ1_M", 256, 56, false},
    [LOOM_TYPE_BF16] = {"BF16", 1, 2, true},
    [LOOM_TYPE_TQ1_0] = {"TQ1_0", 256, 54, false},
    [LOOM_TYPE_TQ2_0] = {"TQ2_0", 256, 66, false},
    [LOOM_TYPE_MXFP4] = {"MXFP4", 32, 17, true},
};

const loom_type_traits *loom_type_info(uint32_t type) {
    if (type >= LOOM_TYPE_COUNT || !type_table[type].name) return NULL;
    return &type_table[type];
}

const char *loom_type_name(uint32_t type) {
    const loom_type_traits *t = loom_type_info(type);
    return t ? t->name : "?";
}

size_t loom_type_row_bytes(loom_type type, int64_t n) {
    const loom_type_traits *t = loom_type_info((uint32_t)type);
    if (!t || n < 0 || n % t->block_size) return 0;
    uint64_t blocks = (uint64_t)n / t->block_size;
    if (blocks > SIZE_MAX / t->type_size) return 0;
    return (size_t)(blocks * t->type_size);
}
