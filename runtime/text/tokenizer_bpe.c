/*
 * runtime/text/tokenizer_bpe.c — byte-level BPE: pre-tokenizer regexes (run with
 * PCRE2), GPT-2's byte alphabet, and rank-ordered merges.
 *
 * The regexes are llama.cpp's (src/llama-vocab.cpp), one list per
 * `tokenizer.ggml.pre` value, applied as a sequence: each regex splits every
 * piece left by the previous one into its matches and the gaps between them
 * (both kept). Before compiling, `\s` / `\S` are rewritten to the Unicode
 * White_Space set (what llama.cpp and Hugging Face's tokenizers match; PCRE2's
 * own \s lacks U+0085).
 */
#include "runtime/text/tokenizer_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the regexes, verbatim from llama-vocab.cpp ---- */

static const char RE_LLAMA3[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_JAIS2[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s{512}(?!\\S)|\\s{256}(?!\\S)|\\s{128}(?!\\S)|\\s{64}(?!\\S)|\\s{32}(?!\\S)|\\s{16}(?!\\S)|\\s{8}(?!\\S)|\\s{4}(?!\\S)|\\s{1,2}(?!\\S)|\\s{1}";
static const char RE_DSLLM_1[] = "[\r\n]";
static const char RE_DSLLM_2[] = "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+";
static const char RE_DSLLM_3[] = "\\s?[!-/:-~！-／：-～‘-‟　-。]+";
static const char RE_DSLLM_4[] = "\\s+$";
static const char RE_DSLLM_5[] = "[一-龥ࠀ-一가-퟿]+";
static const char RE_DSLLM_6[] = "\\p{N}+";
static const char RE_DS3_2[] = "[一-龥぀-ゟ゠-ヿ]+";
static const char RE_DS3_3[] = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";
static const char RE_SPARK_3[] = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+|[\r\n]|\\s+(?!\\S)|\\s+";
static const char RE_YOUTU_1[] = "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+";
static const char RE_YOUTU_2[] = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_DSCODER_2[] = "\\s?\\p{L}+";
static const char RE_DSCODER_3[] = "\\s?\\p{P}+";
static const char RE_DSCODER_4[] = "[一-龥ࠀ-一가-퟿]+";
static const char RE_FALCON_1[] = "[\\p{P}\\$\\+<=>\\^~\\|`]+";
static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
static const char RE_DIGITS3[] = "[0-9][0-9][0-9]";
static const char RE_QWEN2[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN35[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_PORO[] = " ?[^(\\s|.,!?…。，、।۔،)]+";
static const char RE_TEKKEN[] = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_CHAM_1[] = "<sentinel:[0-9]+>";
static const char RE_CHAM_2[] = "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z";
static const char RE_CHAM_3[] = "([\\t\\n]|    |  )";
static const char RE_CHAM_5[] = "[\\p{P}!-/:-@\\[-`{-~]";
static const char RE_GPT4O[] = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_GRANITE_EMB[] = "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))*((?=[\\p{L}\\p{M}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}\\p{M}])([^a-z]))+((?=[\\p{L}\\p{M}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_AYA_1[] = "\\d{1,3}(?=(?:\\d{3})*\\b)";
static const char RE_AYA_2[] = "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_SUPERBPE_2[] = "(?=(\\d{3})+(?!\\d))";
static const char RE_BAILING[] = "'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
static const char RE_SEED_CODER[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_UFAKZEKA[] = "[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_NEWLINES[] = "[^\\n]+|[\\n]+";
static const char RE_EXAONE_MOE[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?(?:\\p{L}\\p{M}*(?: \\p{L}\\p{M}*)*)+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]?|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+";
static const char RE_MINICPM5_2[] = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}+| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_DEFAULT_1[] = "[\\p{P}\\$\\+<=>\\^~\\|]+";
static const char RE_DIGIT[] = "\\p{N}";
static const char RE_DIGITS[] = "\\p{N}+";
static const char RE_DIGITS_1_3[] = "\\p{N}{1,3}";

/* ---- `tokenizer.ggml.pre` → regex sequence (llama-vocab.cpp's mapping) ---- */

#define RX(...) ((const char *const[]){__VA_ARGS__, NULL})
#define RX_GPT2 RX(RE_GPT2)
#define RX_DIGIT_GPT2 RX(RE_DIGIT, RE_GPT2)
#define RX_LLAMA3 RX(RE_LLAMA3)
#define RX_QWEN2 RX(RE_QWEN2)
#define RX_DS3 RX(RE_DIGITS_1_3, RE_DS3_2, RE_DS3_3)
#define RX_GPT4O RX(RE_GPT4O)
#define RX_NEWLINES RX(RE_NEWLINES)
#define RX_PORO RX(RE_PORO)

static const tok_pretok PRETOKS[] = {
    {"default", RX(RE_DEFAULT_1, RE_GPT2, RE_DIGITS, RE_DIGITS3), 0},
    {"llama3", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"llama-v3", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"llama-bpe", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"falcon3", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"falcon-h1", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"pixtral", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"midm-2.0", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"lfm2", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"jina-v5-nano", RX_LLAMA3, PT_IGNORE_MERGES | PT_ADD_BOS},
    {"dbrx", RX_LLAMA3, 0},
    {"smaug-bpe", RX_LLAMA3, 0},
    {"jais-2", RX(RE_JAIS2), 0},
    {"deepseek-llm", RX(RE_DSLLM_1, RE_DSLLM_2, RE_DSLLM_3, RE_DSLLM_4, RE_DSLLM_5, RE_DSLLM_6), 0},
    {"deepseek-coder", RX(RE_DSLLM_1, RE_DSCODER_2, RE_DSCODER_3, RE_DSCODER_4, RE_DIGIT), 0},
    {"deepseek-v3", RX_DS3, 0},
    {"hunyuan-dense", RX_DS3, 0},
    {"hy_v4", RX_DS3, 0},
    {"joyai-llm", RX_DS3, 0},
    {"spark2_5", RX(RE_DIGITS_1_3, RE_DS3_2, RE_SPARK_3, RE_DIGIT), 0},
    {"youtu", RX(RE_YOUTU_1, RE_YOUTU_2), PT_IGNORE_MERGES},
    {"falcon", RX(RE_FALCON_1, RE_GPT2, RE_DIGITS3), 0},
    {"gpt-2", RX_GPT2, 0},
    {"mpt", RX_GPT2, 0},
    {"olmo", RX_GPT2, 0},
    {"jais", RX_GPT2, 0},
    {"phi-2", RX_GPT2, 0},
    {"jina-es", RX_GPT2, 0},
    {"jina-de", RX_GPT2, 0},
    {"jina-v2-es", RX_GPT2, 0},
    {"jina-v2-de", RX_GPT2, 0},
    {"jina-v1-en", RX_GPT2, 0},
    {"jina-v2-code", RX_GPT2, 0},
    {"roberta-bpe", RX_GPT2, 0},
    {"gigachat", RX_GPT2, 0},
    {"a.x-4.0", RX_GPT2, 0},
    {"mellum", RX_GPT2, 0},
    {"modern-bert", RX_GPT2, 0},
    {"exaone4", RX_GPT2, 0},
    {"trillion", RX_GPT2, 0},
    {"granite-docling", RX_GPT2, 0},
    {"starcoder", RX_DIGIT_GPT2, 0},
    {"refact", RX_DIGIT_GPT2, 0},
    {"command-r", RX_DIGIT_GPT2, 0},
    {"smollm", RX_DIGIT_GPT2, 0},
    {"codeshell", RX_DIGIT_GPT2, 0},
    {"exaone", RX_DIGIT_GPT2, 0},
    {"minerva-7b", RX_DIGIT_GPT2, 0},
    {"mellum2", RX_DIGIT_GPT2, 0},
    {"qwen2", RX_QWEN2, 0},
    {"deepseek-r1-qwen", RX_QWEN2, 0},
    {"kormo", RX_QWEN2, 0},
    {"f2llmv2", RX_QWEN2, 0},
    {"megrez", RX_QWEN2, 0},
    {"stablelm2", RX_QWEN2, 0},
    {"hunyuan", RX_QWEN2, 0},
    {"solar-open", RX_QWEN2, 0},
    {"grok-2", RX_QWEN2, 0},
    {"qwen35", RX(RE_QWEN35), 0},
    {"poro-chat", RX_PORO, 0},
    {"bloom", RX_PORO, 0},
    {"gpt3-finnish", RX_PORO, 0},
    {"viking", RX(RE_PORO, RE_DIGIT), 0},
    {"chatglm-bpe", RX_LLAMA3, PT_NO_BOS},
    {"glm4", RX_LLAMA3, PT_IGNORE_MERGES | PT_NO_BOS},
    {"glm5", RX_LLAMA3, PT_IGNORE_MERGES | PT_NO_BOS},
    {"tekken", RX(RE_TEKKEN), PT_IGNORE_MERGES | PT_ADD_BOS},
    {"chameleon", RX(RE_CHAM_1, RE_CHAM_2, RE_CHAM_3, RE_DIGIT, RE_CHAM_5, RE_GPT2), PT_ADD_BOS},
    {"gpt-4o", RX_GPT4O, 0},
    {"llama4", RX_GPT4O, 0},
    {"kanana2", RX_GPT4O, 0},
    {"talkie", RX_GPT4O, 0},
    {"minimax-m2", RX_GPT4O, 0},
    {"granite-embed-multi-97m", RX(RE_GRANITE_EMB), PT_IGNORE_MERGES},
    {"tiny_aya", RX(RE_AYA_1, RE_AYA_2), 0},
    {"cohere2moe", RX(RE_AYA_1, RE_AYA_2), 0},
    {"superbpe", RX(RE_DIGITS, RE_SUPERBPE_2), 0},
    {"bailingmoe", RX(RE_BAILING), 0},
    {"bailingmoe2", RX(RE_BAILING), 0},
    {"llada-moe", RX(RE_BAILING), 0},
    {"seed-coder", RX(RE_SEED_CODER), 0},
    {"ufakzeka", RX(RE_UFAKZEKA), 0},
    {"laguna", RX(RE_NEWLINES, RE_QWEN2), 0},
    {"exaone-moe", RX(RE_EXAONE_MOE), 0},
    {"minicpm5", RX(RE_DIGITS_1_3, RE_MINICPM5_2), PT_IGNORE_MERGES},
    /* SentencePiece-style BPE over raw UTF-8: "▁" for spaces, <0xXX> bytes */
    {"gemma4", RX_NEWLINES, PT_RAW_BYTES | PT_GEMMA4},
    {"granite-embed-multi-311m", RX_NEWLINES, PT_RAW_BYTES | PT_GEMMA4},
    {"sarvam-moe", RX_NEWLINES, PT_RAW_BYTES},
    /* known to llama.cpp, but it splits them with hand-written code */
    {"kimi-k2", NULL, 0},
    {"afmoe", NULL, 0},
    {"whitespace", NULL, 0},
};

const tok_pretok *tok_pretok_find(const char *name) {
    for (size_t i = 0; i < sizeof PRETOKS / sizeof PRETOKS[0]; i++)
        if (!strcmp(PRETOKS[i].name, name)) return &PRETOKS[i];
    return NULL;
}

/* ---- GPT-2's byte alphabet: the 188 printable Latin-1 bytes map to
 * themselves, the other 68 (0x00-0x20, 0x7F-0xA0, 0xAD) to U+0100.. in byte
 * order ---- */

uint32_t tok_byte_to_cp(uint8_t b) {
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7F && b <= 0xA0) return 256 + 33 + (b - 0x7F);
    if (b == 0xAD) return 256 + 67;
    return b;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return tok_byte_to_cp((uint8_t)cp) == cp ? (int)cp : -1;
    uint32_t n = cp - 256;
    if (n <= 32) return (int)n;
    if (n <= 66) return (int)(0x7F + n - 33);
    if (n == 67) return 0xAD;
    return -1;
}

/* ---- merges ---- */

static uint64_t pair_hash(const char *a, size_t la, const char *b, size_t lb) {
    uint64_t h = tok_hash(TOK_HASH_SEED, a, la);
    h = tok_hash(h ^ 0x9e3779b97f4a7c15ull, &la, sizeof la);
    return tok_hash(h, b, lb);
}

/* The rank of merge (a, b), or -1. */
static int64_t merge_rank(const loom_tokenizer *t, const char *a, size_t la, const char *b, size_t lb) {
    if (!t->merge_ix.slot) return -1;
    uint64_t i = pair_hash(a, la, b, lb) & t->merge_ix.mask;
    for (;; i = (i + 1) & t->merge_ix.mask) {
        uint32_t s = t->merge_ix.slot[i];
        if (!s) return -1;
        uint32_t m = s - 1;
        size_t off = t->merge_off[m], len = t->merge_off[m + 1] - off, sa = t->merge_split[m];
        if (sa == la && len - sa == lb && !memcmp(t->merge_text + off, a, la) &&
            !memcmp(t->merge_text + off + la, b, lb))
            return m;
    }
}

static loom_status load_merges(loom_tokenizer *t, const loom_gguf *g) {
    const loom_gguf_value *arr = loom_gguf_get_arr(g, "tokenizer.ggml.merges", LOOM_GGUF_STRING);
    if (!arr) {
        if (loom_gguf_get(g, "tokenizer.ggml.merges"))
            return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.merges is not an array of strings");
        return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.merges is missing (a '%s' tokenizer needs BPE merges)",
                          t->model_name);
    }
    if (arr->v.arr.n >= UINT32_MAX / 2) return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.merges: too many merges");
    uint32_t n = (uint32_t)arr->v.arr.n;
    size_t total = 0;
    for (uint32_t i = 0; i < n; i++) total += arr->v.arr.strs[i].len;
    t->merge_text = malloc(total ? total : 1);
    t->merge_off = malloc(((size_t)n + 1) * sizeof *t->merge_off);
    t->merge_split = malloc((n ? n : 1) * sizeof *t->merge_split);
    uint64_t cap = 16;
    while (cap < 2ull * n) cap *= 2;
    t->merge_ix.slot = calloc(cap, sizeof *t->merge_ix.slot);
    t->merge_ix.mask = cap - 1;
    if (!t->merge_text || !t->merge_off || !t->merge_split || !t->merge_ix.slot)
        return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory for %u merges", n);
    /* "a b": split at the first space after the first byte (a merge without
     * one is the pair ("", "") and never applies). The rank is the index in
     * the file; a repeated pair keeps its first (lowest) rank. */
    size_t off = 0;
    for (uint32_t m = 0; m < n; m++) {
        const loom_str *s = &arr->v.arr.strs[m];
        const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', s->len - 1) : NULL;
        size_t la = 0, lb = 0;
        if (sp) {
            la = (size_t)(sp - s->ptr);
            lb = s->len - la - 1;
            memcpy(t->merge_text + off, s->ptr, la);
            memcpy(t->merge_text + off + la, sp + 1, lb);
        }
        if (la > UINT32_MAX) return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.merges[%u] is too long", m);
        t->merge_off[m] = off;
        t->merge_split[m] = (uint32_t)la;
        off += la + lb;
        t->merge_off[m + 1] = off;
        const char *a = t->merge_text + t->merge_off[m];
        if (merge_rank(t, a, la, a + la, lb) >= 0) continue;
        uint64_t h = pair_hash(a, la, a + la, lb) & t->merge_ix.mask;
        while (t->merge_ix.slot[h]) h = (h + 1) & t->merge_ix.mask;
        t->merge_ix.slot[h] = m + 1;
    }
    t->merge_off[n] = off;
    t->n_merges = n;
    return NULL;
}

/* ---- regexes ---- */

/* llama.cpp's and Hugging Face's \s: the Unicode White_Space property. */
#define WS_SET "\\x{9}-\\x{d}\\x{20}\\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"

/* Rewrites \s and \S (outside and inside character classes) to WS_SET. */
static char *expand_ws(const char *re) {
    size_t n = strlen(re), cap = n * (sizeof WS_SET + 4) + 16;
    char *out = malloc(cap), *o = out;
    if (!out) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = re[i];
        if (c == '\\' && i + 1 < n) {
            char d = re[i + 1];
            i++;
            if (d == 's' || d == 'S') {
                const char *open = in_class ? "" : d == 's' ? "[" : "[^";
                if (in_class && d == 'S') { /* not expressible inside a class; none of the tables need it */
                    free(out);
                    return NULL;
                }
                o += sprintf(o, "%s%s%s", open, WS_SET, in_class ? "" : "]");
            } else {
                *o++ = c;
                *o++ = d;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            *o++ = c;
            if (re[i + 1] == '^') *o++ = re[++i];
            if (re[i + 1] == ']') *o++ = re[++i]; /* a leading ']' is literal */
            continue;
        }
        if (in_class && c == ']') in_class = false;
        *o++ = c;
    }
    *o = 0;
    return out;
}

static loom_status compile_regexes(loom_tokenizer *t) {
    for (const char *const *r = t->pre->regex; *r; r++) {
        if (t->n_regex == (int)(sizeof t->regex / sizeof t->regex[0]))
            return loom_error(LOOM_ERR_INVALID, "pre-tokenizer '%s': too many regexes", t->pre->name);
        char *pat = expand_ws(*r);
        if (!pat) return loom_error(LOOM_ERR_NOMEM, "pre-tokenizer '%s': cannot rewrite a regex", t->pre->name);
        int err;
        PCRE2_SIZE at;
        pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                                         PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &at, NULL);
        free(pat);
        if (!code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(err, msg, sizeof msg);
            return loom_error(LOOM_ERR_INVALID, "pre-tokenizer '%s': regex %d does not compile at %zu: %s",
                              t->pre->name, t->n_regex + 1, (size_t)at, (const char *)msg);
        }
        (void)pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
        t->regex[t->n_regex++] = code;
    }
    return NULL;
}

loom_status tok_bpe_init(loom_tokenizer *t, const loom_gguf *g) {
    LOOM_TRY(load_merges(t, g));
    return compile_regexes(t);
}

void tok_bpe_free(loom_tokenizer *t) {
    for (int i = 0; i < t->n_regex; i++) pcre2_code_free(t->regex[i]);
    t->n_regex = 0;
    free(t->merge_text);
    free(t->merge_off);
    free(t->merge_split);
    free(t->merge_ix.slot);
}

/* ---- encoding ---- */

typedef struct {
    size_t off, len;
} span;

/* llama.cpp reads text as code points with a lenient decoder (a lead byte
 * and the right number of continuation bytes make a code point, overlong
 * forms included; any other byte is U+FFFD) and works on their re-encoding.
 * Surrogates and values above U+10FFFF, which it cannot re-encode, become
 * U+FFFD here. The result is valid UTF-8. */
static loom_status sanitize(const char *text, size_t len, tok_vec *out) {
    /* every input byte yields at most 3 output bytes (an invalid byte → U+FFFD) */
    if (len > SIZE_MAX / 3 - 4) return loom_error(LOOM_ERR_INVALID, "tokenizer: text of %zu bytes is too long", len);
    LOOM_TRY(tok_vec_reserve(out, 3 * len + 4));
    const uint8_t *s = (const uint8_t *)text;
    char *o = out->p;
    size_t i = 0, n = 0;
    while (i < len) {
        uint8_t b = s[i];
        if (b < 0x80) {
            o[n++] = (char)b;
            i++;
            continue;
        }
        int k = (b & 0x40) == 0 ? 0 : (b & 0x20) == 0 ? 2 : (b & 0x10) == 0 ? 3 : (b & 0x08) == 0 ? 4 : 0;
        uint32_t cp = 0xFFFD;
        size_t used = 1;
        if (k && i + (size_t)k <= len) {
            uint32_t v = b & (0x7F >> k);
            int j = 1;
            for (; j < k && (s[i + j] & 0xC0) == 0x80; j++) v = (v << 6) | (s[i + j] & 0x3F);
            if (j == k) {
                cp = v;
                used = (size_t)k;
            }
        }
        i += used;
        n += (size_t)loom_utf8_encode(cp, o + n); /* <= used bytes, or 3 for one byte */
    }
    out->n = n;
    return NULL;
}

static size_t utf8_char_len(uint8_t b) {
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[b >> 4];
}

/* Splits every span of `in` with one regex: matches and the gaps between
 * them become spans of `out`. Zero-length matches split without adding. */
static loom_status regex_split(pcre2_code *re, const char *text, const tok_vec *in, tok_vec *out,
                               pcre2_match_data *md) {
    out->n = 0;
    const span *sp = in->p;
    for (size_t k = 0; k < in->n; k++) {
        PCRE2_SPTR subj = (PCRE2_SPTR)(text + sp[k].off);
        size_t len = sp[k].len, pos = 0, last = 0;
        uint32_t opts = 0;
        while (pos <= len) {
            int rc = pcre2_match(re, subj, len, pos, opts | PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
                rc = pcre2_match(re, subj, len, pos, opts | PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
            if (rc == PCRE2_ERROR_NOMATCH) {
                if (!opts) break;
                /* no non-empty match at an empty match's end: step one character */
                pos += pos < len ? utf8_char_len(subj[pos]) : 1;
                opts = 0;
                continue;
            }
            if (rc < 0) {
                PCRE2_UCHAR msg[160];
                pcre2_get_error_message(rc, msg, sizeof msg);
                return loom_error(LOOM_ERR_INVALID, "tokenizer: regex match failed: %s", (const char *)msg);
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            size_t s = ov[0], e = ov[1];
            if (s > last) LOOM_TRY(tok_vec_push(out, &(span){sp[k].off + last, s - last}));
            if (e > s) LOOM_TRY(tok_vec_push(out, &(span){sp[k].off + s, e - s}));
            last = e;
            pos = e;
            opts = e == s ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
        }
        if (last < len) LOOM_TRY(tok_vec_push(out, &(span){sp[k].off + last, len - last}));
    }
    return NULL;
}

typedef struct {
    tok_vec syms;  /* tok_sym */
    tok_vec heap;  /* tok_bigram */
} bpe_work;

static loom_status try_bigram(const loom_tokenizer *t, const char *w, tok_sym *s, int32_t l, int32_t r, bpe_work *wk) {
    if (l < 0 || r < 0) return NULL;
    int64_t rank = merge_rank(t, w + s[l].off, s[l].n, w + s[r].off, s[r].n);
    if (rank < 0) return NULL;
    return tok_heap_push(&wk->heap, (tok_bigram){tok_key_rank((uint32_t)rank, l), l, s[l].n, s[r].n});
}

/* Merges one word (already in the vocabulary's alphabet) and appends its ids. */
static loom_status bpe_word(const loom_tokenizer *t, const char *w, size_t n, bpe_work *wk, loom_tokens *out) {
    bool whole = t->pre->flags & PT_IGNORE_MERGES;
    if (t->pre->flags & PT_GEMMA4) { /* a run of newlines that is a token stays whole */
        size_t i = 0;
        while (i < n && w[i] == '\n') i++;
        whole = whole || i == n;
    }
    if (whole) {
        int32_t id = tok_find(t, w, n);
        if (id >= 0) return tok_push(out, id);
    }
    wk->syms.n = 0;
    wk->heap.n = 0;
    LOOM_TRY(tok_vec_reserve(&wk->syms, n));
    tok_sym *s = wk->syms.p;
    int32_t ns = 0;
    for (size_t off = 0; off < n;) {
        size_t cl = utf8_char_len((uint8_t)w[off]);
        if (cl > n - off) cl = n - off;
        s[ns] = (tok_sym){ns - 1, off + cl == n ? -1 : ns + 1, (uint32_t)off, (uint32_t)cl};
        ns++;
        off += cl;
    }
    for (int32_t i = 1; i < ns; i++) LOOM_TRY(try_bigram(t, w, s, i - 1, i, wk));
    while (wk->heap.n) {
        tok_bigram b = tok_heap_pop(&wk->heap);
        tok_sym *l = &s[b.left];
        if (l->n != b.ln || l->next < 0) continue;
        tok_sym *r = &s[l->next];
        if (r->n != b.rn || r->n == 0) continue; /* one side changed since queued */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) s[r->next].prev = b.left;
        LOOM_TRY(try_bigram(t, w, s, l->prev, b.left, wk));
        LOOM_TRY(try_bigram(t, w, s, b.left, l->next, wk));
    }
    for (int32_t i = 0; i >= 0 && ns > 0; i = s[i].next) {
        int32_t id = tok_find(t, w + s[i].off, s[i].n);
        if (id >= 0) {
            LOOM_TRY(tok_push(out, id));
            continue;
        }
        /* no token: per byte, the token for that byte (llama.cpp drops bytes without one) */
        for (uint32_t j = 0; j < s[i].n; j++) {
            uint8_t c = (uint8_t)w[s[i].off + j];
            int32_t bid = (t->pre->flags & PT_RAW_BYTES) ? t->byte_token[c] : tok_find(t, (const char *)&c, 1);
            if (bid >= 0) LOOM_TRY(tok_push(out, bid));
        }
    }
    return NULL;
}

loom_status tok_bpe_encode(const loom_tokenizer *t, const char *text, size_t len, loom_tokens *out) {
    loom_status st = NULL;
    tok_vec esc = {.elem = 1}, clean = {.elem = 1}, a = {.elem = sizeof(span)}, b = {.elem = sizeof(span)},
            word = {.elem = 1};
    bpe_work wk = {{.elem = sizeof(tok_sym)}, {.elem = sizeof(tok_bigram)}};
    pcre2_match_data *md = NULL;

    if (t->pre->flags & PT_RAW_BYTES) { /* " " → "▁" */
        if ((st = tok_vec_reserve(&esc, len * 3 + 1))) goto done;
        char *o = esc.p;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') {
                memcpy(o + esc.n, "\xE2\x96\x81", 3);
                esc.n += 3;
            } else {
                o[esc.n++] = text[i];
            }
        }
        text = esc.p;
        len = esc.n;
    }
    if ((st = sanitize(text, len, &clean))) goto done;
    const char *s = clean.p;
    if ((st = tok_vec_push(&a, &(span){0, clean.n}))) goto done;
    md = pcre2_match_data_create(8, NULL);
    if (!md) {
        st = loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
        goto done;
    }
    for (int r = 0; r < t->n_regex; r++) {
        if ((st = regex_split(t->regex[r], s, &a, &b, md))) goto done;
        tok_vec tmp = a;
        a = b;
        b = tmp;
    }
    char al[256][2]; /* each byte's code point in UTF-8 (1 or 2 bytes) */
    uint8_t aln[256];
    for (int c = 0; c < 256; c++) {
        char u[4];
        aln[c] = (uint8_t)loom_utf8_encode(tok_byte_to_cp((uint8_t)c), u);
        memcpy(al[c], u, 2);
    }
    const span *sp = a.p;
    for (size_t k = 0; k < a.n; k++) {
        const char *w = s + sp[k].off;
        size_t wn = sp[k].len;
        if (!(t->pre->flags & PT_RAW_BYTES)) { /* bytes → GPT-2 alphabet */
            word.n = 0;
            if ((st = tok_vec_reserve(&word, 2 * wn + 1))) goto done;
            char *o = word.p;
            for (size_t i = 0; i < wn; i++) {
                uint8_t c = (uint8_t)w[i];
                memcpy(o + word.n, al[c], aln[c]);
                word.n += aln[c];
            }
            o[word.n] = 0;
            w = o;
            wn = word.n;
        }
        if ((st = bpe_word(t, w, wn, &wk, out))) goto done;
    }
done:
    pcre2_match_data_free(md);
    tok_vec_free(&esc);
    tok_vec_free(&clean);
    tok_vec_free(&a);
    tok_vec_free(&b);
    tok_vec_free(&word);
    tok_vec_free(&wk.syms);
    tok_vec_free(&wk.heap);
    return st;
}
