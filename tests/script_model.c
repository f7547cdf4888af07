/*
 * tests/script_model.c — writes a "scripted" llama model for end-to-end
 * tests of what the server does with a model's text (tool calls, ...):
 * after its chat template's generation prompt it answers, greedily, exactly
 * the given pieces and then EOS.
 *
 *     script_model [--llama3 | --think | --harmony | --mistral | --fim | --xml] OUT.gguf PIECE...
 *
 * How: one layer whose attention and MLP weights are zero, so the hidden
 * state is the current token's embedding; the embeddings of the trigger
 * token (the byte "\n" that ends the generation prompt) and of each piece
 * are distinct unit vectors, and the lm head's row of the token that
 * follows x is x's embedding, so the greedy next token is x's successor.
 * Each piece becomes one token of its own (spaces written as SentencePiece's
 * U+2581), so pieces must be distinct. The chat template is a short
 * Hermes-style one (it names <tool_call>, the way Qwen2.5's teaches calls),
 * or with --llama3 a Llama 3.1-style one (header tokens, the ipython role,
 * calls as {"name": ..., "parameters": ...}), or with --think the Hermes
 * one that also names <think> blocks (as Qwen3's does), or with --harmony a
 * gpt-oss-style one (messages as <|start|>ROLE<|message|>...<|end|>, the
 * generation prompt "<|start|>assistant", whose last token, the byte "t",
 * is then the trigger) with o200k_harmony's special tokens in the
 * vocabulary: a piece that is one of their texts is that token (so it
 * renders as the tokenizer renders it: <|return|> and <|call|> end the
 * generation), and pieces must still be distinct; or with --mistral a
 * Mistral-style one (it names [TOOL_CALLS], NAME[ARGS]{...} and
 * [THINK]...[/THINK], and ends its generation prompt with "\n"); or with
 * --fim the default template and the fill-in-the-middle tokens
 * <|fim_prefix|>, <|fim_suffix|>, <|fim_middle|>, the last the trigger (a
 * code model completing a middle); or with --xml the default one teaching
 * Qwen3-Coder's calls (<tool_call><function=NAME><parameter=K>V</parameter>
 * </function></tool_call>). The pieces
 * <think>, </think>, <tool_call>, </tool_call>, [TOOL_CALLS], [ARGS],
 * [THINK] and [/THINK] are control tokens (is_marker).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/gguf_write.h"

#define DIM 64
#define N_BASE 259 /* <unk> <s> </s> and 256 byte tokens */

static const char TEMPLATE[] =
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>\n{%- for t in tools %}{{ t | tojson }}\n{% endfor -%}"
    "</tools>\nCall a tool as <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call><|im_end|>\n{% endif -%}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static const char TEMPLATE_XML[] =
    "{%- if tools %}<|im_start|>system\n# Tools\n<tools>\n{%- for t in tools %}{{ t | tojson }}\n{% endfor -%}"
    "</tools>\nCall a tool as <tool_call>\n<function=NAME>\n<parameter=KEY>\nVALUE\n</parameter>\n</function>\n"
    "</tool_call><|im_end|>\n{% endif -%}"
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static const char TEMPLATE_LLAMA3[] =
    "{%- for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n{{ m.content }}<|eot_id|>"
    "{% endfor -%}{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\nRespond with {\"name\": function "
    "name, \"parameters\": dictionary of argument name and its value}; results come back as ipython.<|eot_id|>"
    "{% endif -%}{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}";

static const char TEMPLATE_THINK[] =
    "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor -%}"
    "{%- if false %}<tool_call></tool_call><think></think>{% endif -%}"
    "{%- if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

static const char TEMPLATE_MISTRAL[] =
    "{%- if tools %}[AVAILABLE_TOOLS]{{ tools | tojson }}[/AVAILABLE_TOOLS]{% endif -%}"
    "{%- for m in messages %}{%- if m.role == 'user' %}[INST]{{ m.content }}[/INST]{%- else %}{{ m.content }}"
    "{%- endif %}{% endfor -%}{%- if false %}[TOOL_CALLS]name[ARGS]{}[THINK][/THINK]{% endif %}{{ '\\n' }}";

static const char TEMPLATE_HARMONY[] =
    "{%- for m in messages %}<|start|>{{ m.role }}<|message|>{{ m.content }}<|end|>{% endfor -%}"
    "{%- if tools %}<|start|>developer<|message|># Tools\nnamespace functions {\n{%- for t in tools %}"
    "type {{ t.function.name }} = (_: any) => any;\n{% endfor %}}<|end|>{% endif -%}"
    "{%- if add_generation_prompt %}<|start|>assistant{% endif %}";

/* o200k_harmony's special tokens (control tokens here; the tokenizer
 * renders all but <|return|> and <|call|>) */
static const char *const HARMONY_SPECIAL[] = {"<|start|>", "<|end|>", "<|message|>", "<|channel|>",
                                              "<|constrain|>", "<|return|>", "<|call|>"};
#define N_HARMONY (int)(sizeof HARMONY_SPECIAL / sizeof *HARMONY_SPECIAL)
static const char *const FIM_SPECIAL[] = {"<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"};
#define N_FIM 3

/* Pieces that are control tokens, as a converter makes them where the
 * model's tokenizer calls them special (GLM-4.5's, DeepSeek's): the
 * server must still render them for its parsers. */
static int is_marker(const char *p) {
    static const char *const m[] = {"<think>", "</think>", "<tool_call>", "</tool_call>", "[TOOL_CALLS]", "[ARGS]",
                                    "[THINK]", "[/THINK]", NULL};
    for (int i = 0; m[i]; i++)
        if (!strcmp(p, m[i])) return 1;
    return 0;
}

static void die(loom_status st) {
    if (!st) return;
    fprintf(stderr, "script_model: %s\n", loom_status_message(st));
    exit(1);
}

/* The piece with every space as U+2581 (malloc'd). */
static char *spm_piece(const char *s) {
    char *r = malloc(3 * strlen(s) + 1), *o = r;
    if (!r) exit(1);
    for (; *s; s++) {
        if (*s == ' ') memcpy(o, "\xe2\x96\x81", 3), o += 3;
        else *o++ = *s;
    }
    *o = 0;
    return r;
}

int main(int argc, char **argv) {
    const bool llama3 = argc > 1 && !strcmp(argv[1], "--llama3"), think = argc > 1 && !strcmp(argv[1], "--think"),
               harmony = argc > 1 && !strcmp(argv[1], "--harmony"), mistral = argc > 1 && !strcmp(argv[1], "--mistral"),
               fim = argc > 1 && !strcmp(argv[1], "--fim"), xml = argc > 1 && !strcmp(argv[1], "--xml");
    if (llama3 || think || harmony || mistral || fim || xml) argv++, argc--;
    const int n_pieces = argc - 2;
    if (n_pieces < 1 || n_pieces > DIM - 1) {
        fprintf(stderr, "usage: script_model [--llama3 | --think | --harmony | --mistral | --fim | --xml] OUT.gguf PIECE... "
                        "(1 to %d pieces)\n",
                DIM - 1);
        return 2;
    }
    for (int i = 2; i < argc; i++)
        for (int k = 2; k < i; k++)
            if (!strcmp(argv[i], argv[k]) || !*argv[i]) {
                fprintf(stderr, "script_model: pieces must be distinct and not empty ('%s')\n", argv[i]);
                return 2;
            }
    const int n_special = harmony ? N_HARMONY : fim ? N_FIM : 0, V = N_BASE + n_special + n_pieces;
    const int trigger = fim ? N_BASE + 2 : 3 + (harmony ? 't' : '\n'), eos = 2; /* --fim: after <|fim_middle|> */
    char **toks = calloc((size_t)V, sizeof *toks);
    float *scores = calloc((size_t)V, sizeof *scores);
    int32_t *types = calloc((size_t)V, sizeof *types);
    float *embd = calloc((size_t)V * DIM, sizeof *embd), *head = calloc((size_t)V * DIM, sizeof *head);
    float *ones = malloc(DIM * sizeof *ones);
    if (!toks || !scores || !types || !embd || !head || !ones) return 1;
    char byte[N_BASE][8];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>";
    types[0] = 2, types[1] = types[2] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(byte[b], sizeof byte[b], "<0x%02X>", b);
        toks[3 + b] = byte[b];
        types[3 + b] = 6;
    }
    for (int i = 0; i < n_special; i++) {
        toks[N_BASE + i] = strdup(fim ? FIM_SPECIAL[i] : HARMONY_SPECIAL[i]);
        types[N_BASE + i] = 3;
    }
    /* piece i's token: a special token of the same text, or its own */
    int *piece_tok = malloc((size_t)n_pieces * sizeof *piece_tok);
    if (!piece_tok) return 1;
    for (int i = 0; i < n_pieces; i++) {
        const int at = N_BASE + n_special + i;
        toks[at] = spm_piece(argv[2 + i]);
        types[at] = is_marker(argv[2 + i]) ? 3 : 1;
        scores[at] = (float)-i;
        piece_tok[i] = at;
        for (int k = 0; k < n_special; k++)
            if (!strcmp(argv[2 + i], toks[N_BASE + k])) piece_tok[i] = N_BASE + k;
        if (piece_tok[i] != at) { /* the special token stands for it; its own slot is an unused filler */
            free(toks[at]);
            char filler[32];
            snprintf(filler, sizeof filler, "<unused_piece_%d>", i);
            toks[at] = strdup(filler);
        }
    }
    for (int d = 0; d < DIM; d++) ones[d] = 1.0f;
    /* the chain: trigger -> piece 0 -> ... -> piece n-1 -> EOS; link k's token has embedding e_k */
    for (int k = 0; k <= n_pieces; k++) {
        const int from = k == 0 ? trigger : piece_tok[k - 1], to = k == n_pieces ? eos : piece_tok[k];
        embd[(size_t)from * DIM + k] = 1.0f;
        head[(size_t)to * DIM + k] = 1.0f;
    }
    loom_gguf_writer *w;
    die(loom_gguf_writer_create(&w));
    die(loom_gguf_writer_add_str(w, "general.architecture", "llama"));
    die(loom_gguf_writer_add_str(w, "general.name", "loom-script-model"));
    die(loom_gguf_writer_add_uint(w, "general.file_type", LOOM_GGUF_U32, 0));
    die(loom_gguf_writer_add_uint(w, "llama.block_count", LOOM_GGUF_U32, 1));
    die(loom_gguf_writer_add_uint(w, "llama.context_length", LOOM_GGUF_U32, 4096));
    die(loom_gguf_writer_add_uint(w, "llama.embedding_length", LOOM_GGUF_U32, DIM));
    die(loom_gguf_writer_add_uint(w, "llama.feed_forward_length", LOOM_GGUF_U32, DIM));
    die(loom_gguf_writer_add_uint(w, "llama.attention.head_count", LOOM_GGUF_U32, 1));
    die(loom_gguf_writer_add_uint(w, "llama.attention.head_count_kv", LOOM_GGUF_U32, 1));
    die(loom_gguf_writer_add_uint(w, "llama.rope.dimension_count", LOOM_GGUF_U32, DIM));
    die(loom_gguf_writer_add_float(w, "llama.attention.layer_norm_rms_epsilon", LOOM_GGUF_F32, 1e-5));
    die(loom_gguf_writer_add_uint(w, "llama.vocab_size", LOOM_GGUF_U32, (uint64_t)V));
    die(loom_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"));
    die(loom_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, (uint64_t)V));
    die(loom_gguf_writer_add_arr(w, "tokenizer.ggml.scores", LOOM_GGUF_F32, scores, (uint64_t)V));
    die(loom_gguf_writer_add_arr(w, "tokenizer.ggml.token_type", LOOM_GGUF_I32, types, (uint64_t)V));
    die(loom_gguf_writer_add_uint(w, "tokenizer.ggml.unknown_token_id", LOOM_GGUF_U32, 0));
    die(loom_gguf_writer_add_uint(w, "tokenizer.ggml.bos_token_id", LOOM_GGUF_U32, 1));
    die(loom_gguf_writer_add_uint(w, "tokenizer.ggml.eos_token_id", LOOM_GGUF_U32, (uint64_t)eos));
    die(loom_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true));
    die(loom_gguf_writer_add_str(w, "tokenizer.chat_template",
                                 llama3 ? TEMPLATE_LLAMA3 : think ? TEMPLATE_THINK : harmony ? TEMPLATE_HARMONY
                                 : mistral ? TEMPLATE_MISTRAL : xml ? TEMPLATE_XML : TEMPLATE));
    const int64_t ne_embd[2] = {DIM, V}, ne_sq[2] = {DIM, DIM}, ne_v[1] = {DIM};
    die(loom_gguf_writer_add_tensor(w, "token_embd.weight", LOOM_TYPE_F32, 2, ne_embd, embd));
    static const char *const zero[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    die(loom_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", LOOM_TYPE_F32, 1, ne_v, ones));
    die(loom_gguf_writer_add_tensor(w, "blk.0.ffn_norm.weight", LOOM_TYPE_F32, 1, ne_v, ones));
    for (size_t i = 0; i < sizeof zero / sizeof *zero; i++) {
        char name[64];
        snprintf(name, sizeof name, "blk.0.%s.weight", zero[i]);
        die(loom_gguf_writer_add_tensor(w, name, LOOM_TYPE_F32, 2, ne_sq, NULL));
    }
    die(loom_gguf_writer_add_tensor(w, "output_norm.weight", LOOM_TYPE_F32, 1, ne_v, ones));
    die(loom_gguf_writer_add_tensor(w, "output.weight", LOOM_TYPE_F32, 2, ne_embd, head));
    die(loom_gguf_writer_write_path(w, argv[1], 0));
    loom_gguf_writer_free(w);
    for (int i = N_BASE; i < V; i++) free(toks[i]);
    free(piece_tok);
    free(toks), free(scores), free(types), free(embd), free(head), free(ones);
    return 0;
}
