/*
 * runtime/text/tokenizer.c — the vocabulary from GGUF metadata, special tokens,
 * end-of-generation set, output pieces, and loom_tokenize's outer loop
 * (special-token partition, BOS/EOS). The models are in tokenizer_bpe.c and
 * tokenizer_spm.c. Behaviour follows llama.cpp's src/llama-vocab.cpp.
 */
#include "runtime/text/tokenizer_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- building ---- */

static bool text_is(const loom_tokenizer *t, int32_t id, const char *s) {
    size_t len;
    const char *txt = tok_text(t, id, &len);
    return len == strlen(s) && !memcmp(txt, s, len);
}

static void copy_str(char *dst, size_t cap, loom_str s) {
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(dst, s.ptr, n);
    dst[n] = 0;
}

/* An optional token-id key: replaces *id when present and in range. */
static void read_id(const loom_gguf *g, const char *key, int32_t n_vocab, int32_t *id) {
    int64_t v;
    if (loom_gguf_get_int(g, key, &v) && v >= 0 && v < n_vocab) *id = (int32_t)v;
}

static loom_status load_vocab(loom_tokenizer *t, const loom_gguf *g) {
    const loom_gguf_value *toks = loom_gguf_get_arr(g, "tokenizer.ggml.tokens", LOOM_GGUF_STRING);
    if (!toks) {
        return loom_error(LOOM_ERR_FORMAT, loom_gguf_get(g, "tokenizer.ggml.tokens")
                                               ? "tokenizer.ggml.tokens is not an array of strings"
                                               : "tokenizer.ggml.tokens is missing (no vocabulary)");
    }
    uint64_t n = toks->v.arr.n;
    if (n == 0 || n >= (uint64_t)INT32_MAX / 2)
        return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries (expected 1 .. 2^30)",
                          (unsigned long long)n);
    t->n_vocab = (int32_t)n;

    const loom_gguf_value *scores = loom_gguf_get_arr(g, "tokenizer.ggml.scores", -1);
    if (loom_gguf_get(g, "tokenizer.ggml.scores")) {
        if (!scores || (scores->v.arr.elem != LOOM_GGUF_F32 && scores->v.arr.elem != LOOM_GGUF_I32))
            return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.scores is not an array of f32 or i32");
        if (scores->v.arr.n < n)
            return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.scores has %llu entries for %llu tokens",
                              (unsigned long long)scores->v.arr.n, (unsigned long long)n);
    }
    const loom_gguf_value *types = loom_gguf_get_arr(g, "tokenizer.ggml.token_type", -1);
    if (loom_gguf_get(g, "tokenizer.ggml.token_type")) {
        if (!types || types->v.arr.elem != LOOM_GGUF_I32)
            return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.token_type is not an array of i32");
        if (types->v.arr.n < n)
            return loom_error(LOOM_ERR_FORMAT, "tokenizer.ggml.token_type has %llu entries for %llu tokens",
                              (unsigned long long)types->v.arr.n, (unsigned long long)n);
    }

    /* an empty token text becomes "[EMPTY_<id>]", as in llama.cpp */
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) total += toks->v.arr.strs[i].len ? toks->v.arr.strs[i].len : 24;
    t->text = malloc(total ? total : 1);
    t->text_off = malloc((n + 1) * sizeof *t->text_off);
    t->score = malloc(n * sizeof *t->score);
    t->attr = malloc(n * sizeof *t->attr);
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    t->by_text.slot = calloc(cap, sizeof *t->by_text.slot);
    t->by_text.mask = cap - 1;
    if (!t->text || !t->text_off || !t->score || !t->attr || !t->by_text.slot)
        return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory for %llu tokens", (unsigned long long)n);

    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        const loom_str *s = &toks->v.arr.strs[i];
        t->text_off[i] = off;
        if (s->len) {
            memcpy(t->text + off, s->ptr, s->len);
            off += s->len;
        } else {
            off += (size_t)snprintf(t->text + off, 24, "[EMPTY_%llu]", (unsigned long long)i);
        }
        t->text_off[i + 1] = off;
        t->score[i] = scores ? (float)loom_gguf_arr_float(scores, i) : 0.0f;
        uint16_t a = TOK_NORMAL;
        if (types) {
            switch (loom_gguf_arr_int(types, i)) {
            case 1: a = TOK_NORMAL; break;
            case 2: a = TOK_UNKNOWN; break;
            case 3: a = TOK_CONTROL; break;
            case 4: a = TOK_USER_DEFINED; break;
            case 5: a = TOK_UNUSED; break;
            case 6: a = TOK_BYTE; break;
            default: a = 0; break; /* undefined */
            }
        }
        t->attr[i] = a;
        /* text → id; a repeated text maps to its last id */
        size_t len;
        const char *txt = tok_text(t, (int32_t)i, &len);
        uint64_t h = tok_hash(TOK_HASH_SEED, txt, len) & t->by_text.mask;
        for (;; h = (h + 1) & t->by_text.mask) {
            uint32_t slot = t->by_text.slot[h];
            if (!slot) break;
            size_t l2;
            const char *t2 = tok_text(t, (int32_t)(slot - 1), &l2);
            if (l2 == len && !memcmp(t2, txt, len)) break;
        }
        t->by_text.slot[h] = (uint32_t)i + 1;
    }
    return NULL;
}

/* llama.cpp's end-of-turn markers and friends, matched by token text. */
static const char *const EOT_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                        "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
                                        "<end_of_utterance>", NULL};
static const char *const FIM_TEXTS[6][9] = {
    {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>", NULL},
    {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>", NULL},
    {"<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>", NULL},
    {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL},
    {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL},
    {"<|file_sep|>", NULL},
};
static const char *const FIM_KEYS[6][2] = {
    {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id"},
    {"tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id"},
    {"tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id"},
    {"tokenizer.ggml.fim_pad_token_id", NULL},
    {"tokenizer.ggml.fim_rep_token_id", NULL},
    {"tokenizer.ggml.fim_sep_token_id", NULL},
};
/* llama.cpp's list, and GLM-4.5's <|observation|>: what it writes after its tool calls, waiting for their
 * results (its generation_config ends a generation there, as vLLM does; llama.cpp does not and lets the model
 * go on to invent them) */
static const char *const EOG_TEXTS[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                        "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                        "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                        "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
                                        "<|observation|>", NULL};

/* The token whose text is in `list` (the lowest id when several are; llama.cpp
 * takes the first in hash-map order), marked control. */
static int32_t detect(loom_tokenizer *t, const char *const *list) {
    int32_t best = LOOM_TOKEN_NULL;
    for (; *list; list++) {
        int32_t id = tok_find(t, *list, strlen(*list));
        if (id >= 0 && (best < 0 || id < best)) best = id;
    }
    if (best >= 0) t->attr[best] |= TOK_CONTROL;
    return best;
}

static void build_eog(loom_tokenizer *t, const loom_gguf *g) {
    /* FIM prefix/suffix/middle/pad/repo/file-separator tokens: from the
     * keys, else by text (then marked control); the last three end a generation */
    int32_t fim[6];
    for (int k = 0; k < 6; k++) {
        fim[k] = LOOM_TOKEN_NULL;
        for (int j = 0; j < 2; j++)
            if (FIM_KEYS[k][j]) read_id(g, FIM_KEYS[k][j], t->n_vocab, &fim[k]);
    }
    if (t->eot < 0) t->eot = detect(t, EOT_TEXTS);
    if (t->eom < 0) t->eom = detect(t, (const char *const[]){"<|eom_id|>", NULL});
    for (int k = 0; k < 6; k++) {
        if (fim[k] < 0) fim[k] = detect(t, FIM_TEXTS[k]);
        t->fim[k] = fim[k];
    }

    /* control tokens named "unused…" are unused */
    for (int32_t i = 0; i < t->n_vocab; i++) {
        size_t len;
        const char *s = tok_text(t, i, &len);
        if ((t->attr[i] & TOK_CONTROL) && len >= 6) {
            for (size_t k = 0; k + 6 <= len; k++)
                if (!memcmp(s + k, "unused", 6)) {
                    t->attr[i] |= TOK_UNUSED;
                    break;
                }
        }
    }

    for (int k = 3; k < 6; k++)
        if (fim[k] >= 0) t->eog[fim[k]] = 1;
    for (const char *const *p = EOG_TEXTS; *p; p++) {
        int32_t id = tok_find(t, *p, strlen(*p));
        if (id >= 0) {
            t->eog[id] = 1;
            t->attr[id] |= TOK_CONTROL;
        }
    }
    /* gpt-oss: these always render */
    for (const char *const *p = (const char *const[]){"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL};
         *p; p++) {
        int32_t id = tok_find(t, *p, strlen(*p));
        if (id >= 0) t->attr[id] = TOK_USER_DEFINED;
    }
    if (t->eos >= 0) t->eog[t->eos] = 1;
    if (t->eot >= 0) t->eog[t->eot] = 1;
    if (t->eom >= 0) t->eog[t->eom] = 1;

    /* o200k_harmony / solar-open: with <|return|> and <|call|> (or <|calls|>
     * and <|flush|>), <|end|> ends a message, not the generation */
    bool has_return = false, has_call = false, has_flush = false;
    int32_t end_id = LOOM_TOKEN_NULL, s_id = LOOM_TOKEN_NULL;
    bool has_normal_s = false;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (!t->eog[i]) continue;
        if (text_is(t, i, "<|return|>")) has_return = true;
        else if (text_is(t, i, "<|call|>") || text_is(t, i, "<|calls|>")) has_call = true;
        else if (text_is(t, i, "<|flush|>")) has_flush = true;
        else if (text_is(t, i, "<|end|>")) end_id = i;
        if (text_is(t, i, "<|tool_response>") || text_is(t, i, "<|plamo:eos|>")) has_normal_s = true;
        else if (text_is(t, i, "</s>")) s_id = i;
    }
    if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
        t->eog[end_id] = 0;
        t->attr[end_id] = TOK_USER_DEFINED;
    }
    /* gemma4 / plamo: "</s>" is an ordinary token */
    if (has_normal_s && s_id >= 0) {
        t->eog[s_id] = 0;
        t->attr[s_id] = TOK_NORMAL;
    }
}

/* lstrip/rstrip attributes that llama.cpp sets by model name. */
static void strip_attrs(loom_tokenizer *t, const loom_gguf *g) {
    char name[256] = "", arch[64] = "";
    loom_str s;
    if (loom_gguf_get_str(g, "general.name", &s)) copy_str(name, sizeof name, s);
    if (loom_gguf_get_str(g, "general.architecture", &s)) copy_str(arch, sizeof arch, s);
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    const char *pre = t->pre_name;
    if (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code") ||
        strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
        int32_t id = tok_find(t, "<mask>", 6);
        if (id >= 0) t->attr[id] |= TOK_LSTRIP;
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t i = 0; i < t->n_special; i++) t->attr[t->special[i]] |= TOK_RSTRIP;
        int32_t id = tok_find(t, "</s>", 4);
        if (id >= 0) t->attr[id] |= TOK_RSTRIP;
        for (const char *const *p = (const char *const[]){"<unk>", "<s>", "<|endoftext|>", NULL}; *p; p++) {
            id = tok_find(t, *p, strlen(*p));
            if (id >= 0) t->attr[id] &= (uint16_t)~TOK_RSTRIP;
        }
    } else if (strstr(name, "modern-bert")) {
        int32_t id = tok_find(t, "[MASK]", 6);
        if (id >= 0) t->attr[id] |= TOK_LSTRIP;
    }
}

typedef struct {
    size_t len;
    int32_t id;
} len_id;

static int cmp_len_id(const void *pa, const void *pb) { /* longest first, then lowest id */
    const len_id *a = pa, *b = pb;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* Special tokens, longest first, and the trie over their texts. */
static loom_status build_specials(loom_tokenizer *t) {
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        n += (t->attr[i] & (TOK_CONTROL | TOK_USER_DEFINED | TOK_UNKNOWN)) != 0;
    t->special = malloc((size_t)(n ? n : 1) * sizeof *t->special);
    if (!t->special) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    len_id *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    t->n_special = 0;
    size_t nodes = 1;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->attr[i] & (TOK_CONTROL | TOK_USER_DEFINED | TOK_UNKNOWN)) {
            order[t->n_special++] = (len_id){t->text_off[i + 1] - t->text_off[i], i};
            nodes += t->text_off[i + 1] - t->text_off[i];
        }
    qsort(order, (size_t)t->n_special, sizeof *order, cmp_len_id);
    for (int32_t k = 0; k < t->n_special; k++) t->special[k] = order[k].id;
    free(order);

    if (nodes >= UINT32_MAX) return loom_error(LOOM_ERR_FORMAT, "tokenizer: special tokens too long");
    t->trie = malloc(nodes * sizeof *t->trie);
    if (!t->trie) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    t->n_trie = 0;
    memset(t->trie_root, 0, sizeof t->trie_root);
    for (int32_t k = 0; k < t->n_special; k++) {
        size_t len;
        const uint8_t *s = (const uint8_t *)tok_text(t, t->special[k], &len);
        uint32_t *link = &t->trie_root[s[0]];
        uint32_t node = 0;
        for (size_t j = 0; j < len; j++) {
            if (j > 0) link = &t->trie[node].child;
            while (*link && t->trie[*link - 1].byte != s[j]) link = &t->trie[*link - 1].sibling;
            if (!*link) {
                t->trie[t->n_trie] = (struct tok_trie_node){0, 0, -1, s[j]};
                *link = ++t->n_trie;
            }
            node = *link - 1;
        }
        if (t->trie[node].special < 0) t->trie[node].special = k;
    }
    return NULL;
}

/* What a token prints as (rendered as special), per llama.cpp's token_to_piece. */
static loom_status build_pieces(loom_tokenizer *t) {
    tok_vec buf = {.elem = 1};
    t->piece_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
    if (!t->piece_off) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    loom_status st = tok_vec_reserve(&buf, t->text_off[t->n_vocab] + 16);
    bool spaces = t->model != TOK_MODEL_BPE || (t->pre->flags & PT_RAW_BYTES);
    for (int32_t i = 0; i < t->n_vocab && !st; i++) {
        t->piece_off[i] = buf.n;
        size_t len;
        const char *s = tok_text(t, i, &len);
        uint16_t a = t->attr[i];
        if ((st = tok_vec_reserve(&buf, buf.n + len + 4))) break;
        char *o = buf.p;
        if (a & (TOK_UNKNOWN | TOK_CONTROL | TOK_USER_DEFINED)) {
            memcpy(o + buf.n, s, len);
            buf.n += len;
        } else if (a & TOK_NORMAL) {
            for (size_t j = 0; j < len;) {
                if (spaces) {
                    if (len - j >= 3 && !memcmp(s + j, "\xE2\x96\x81", 3)) {
                        o[buf.n++] = ' ';
                        j += 3;
                    } else {
                        o[buf.n++] = s[j++];
                    }
                    continue;
                }
                /* GPT-2 alphabet → bytes; what is not in it passes through */
                uint32_t cp;
                int k = loom_utf8_decode((const uint8_t *)s + j, len - j, &cp);
                int b = k > 0 ? tok_cp_to_byte(cp) : -1;
                if (b >= 0) {
                    o[buf.n++] = (char)b;
                    j += (size_t)k;
                } else {
                    size_t step = k > 0 ? (size_t)k : 1;
                    memcpy(o + buf.n, s + j, step);
                    buf.n += step;
                    j += step;
                }
            }
        } else if ((a & TOK_BYTE) && len == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && isxdigit((unsigned char)s[3]) &&
                   isxdigit((unsigned char)s[4])) {
            o[buf.n++] = (char)strtol((char[]){s[3], s[4], 0}, NULL, 16);
        }
    }
    if (!st) {
        t->piece_off[t->n_vocab] = buf.n;
        t->piece = buf.p;
        return NULL;
    }
    tok_vec_free(&buf);
    return st;
}

static loom_status build(loom_tokenizer *t, const loom_gguf *g) {
    loom_str s;
    if (!loom_gguf_get_str(g, "tokenizer.ggml.model", &s))
        return loom_error(LOOM_ERR_FORMAT, loom_gguf_get(g, "tokenizer.ggml.model")
                                               ? "tokenizer.ggml.model is not a string"
                                               : "tokenizer.ggml.model is missing (no tokenizer in this file)");
    copy_str(t->model_name, sizeof t->model_name, s);
    bool gemma4 = !strcmp(t->model_name, "gemma4");
    if (!strcmp(t->model_name, "gpt2") || gemma4) {
        t->model = TOK_MODEL_BPE;
    } else if (!strcmp(t->model_name, "llama")) {
        t->model = TOK_MODEL_SPM;
    } else if (!strcmp(t->model_name, "bert")) {
        t->model = TOK_MODEL_WPM;
    } else if (!strcmp(t->model_name, "t5")) {
        t->model = TOK_MODEL_UGM;
    } else {
        return loom_error(LOOM_ERR_UNSUPPORTED,
                          "unsupported tokenizer model '%.*s' (tokenizer.ggml.model): loom supports 'gpt2' "
                          "(byte-level BPE), 'llama' (SentencePiece BPE), 't5' (SentencePiece unigram) and "
                          "'bert' (WordPiece)",
                          (int)(s.len > 64 ? 64 : s.len), s.ptr);
    }

    strcpy(t->pre_name, "default");
    if (loom_gguf_get_str(g, "tokenizer.ggml.pre", &s)) copy_str(t->pre_name, sizeof t->pre_name, s);
    if (gemma4) strcpy(t->pre_name, "gemma4");
    if (t->model == TOK_MODEL_BPE) {
        t->pre = tok_pretok_find(t->pre_name);
        if (!t->pre)
            return loom_error(LOOM_ERR_UNSUPPORTED, "unknown pre-tokenizer '%s' (tokenizer.ggml.pre)", t->pre_name);
        if (!t->pre->regex)
            return loom_error(LOOM_ERR_UNSUPPORTED,
                              "pre-tokenizer '%s' (tokenizer.ggml.pre) is not supported by loom: llama.cpp splits "
                              "it with hand-written code, not a regex",
                              t->pre_name);
    }

    LOOM_TRY(load_vocab(t, g));
    if (t->model == TOK_MODEL_BPE) LOOM_TRY(tok_bpe_init(t, g));
    if (t->model == TOK_MODEL_WPM) LOOM_TRY(tok_wpm_init(t));
    if (t->model == TOK_MODEL_UGM) LOOM_TRY(tok_ugm_init(t, g));

    /* special ids: per-model defaults (dropped when out of range), then the keys */
    t->eot = t->eom = t->sep = LOOM_TOKEN_NULL;
    if (t->model == TOK_MODEL_WPM) { /* BERT's [CLS] 101, [UNK] 100, [SEP] 102 */
        t->bos = 101, t->eos = LOOM_TOKEN_NULL, t->unk = 100, t->sep = 102;
        t->add_bos = t->add_sep = true;
        t->add_space_prefix = true; /* decoding drops the first "▁"'s space */
        t->wpm_lowercase = true;
        bool b;
        if (loom_gguf_get_bool(g, "tokenizer.ggml.normalizer.lowercase", &b)) t->wpm_lowercase = b;
        t->wpm_strip_accents = t->wpm_lowercase;
        if (loom_gguf_get_bool(g, "tokenizer.ggml.normalizer.strip_accents", &b)) t->wpm_strip_accents = b;
    } else if (t->model == TOK_MODEL_SPM) {
        t->bos = 1, t->eos = 2, t->unk = 0;
        t->add_bos = true;
        t->add_space_prefix = true;
    } else if (t->model == TOK_MODEL_UGM) { /* T5's: </s> 1, <unk> 2, EOS added, no BOS, no "▁" prefix */
        t->bos = LOOM_TOKEN_NULL, t->eos = 1, t->unk = 2;
        t->add_eos = true;
    } else {
        t->bos = t->eos = 11, t->unk = LOOM_TOKEN_NULL; /* llama.cpp's BPE defaults (Falcon's newline) */
        if (gemma4) t->bos = t->eos = LOOM_TOKEN_NULL;
        if (t->pre->flags & PT_NO_BOS) t->bos = LOOM_TOKEN_NULL;
        t->add_bos = (t->pre->flags & (PT_ADD_BOS | PT_GEMMA4)) != 0;
    }
    if (t->bos >= t->n_vocab) t->bos = LOOM_TOKEN_NULL;
    if (t->eos >= t->n_vocab) t->eos = LOOM_TOKEN_NULL;
    if (t->unk >= t->n_vocab) t->unk = LOOM_TOKEN_NULL;
    if (t->sep >= t->n_vocab) t->sep = LOOM_TOKEN_NULL;
    read_id(g, "tokenizer.ggml.seperator_token_id", t->n_vocab, &t->sep);
    read_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos);
    read_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos);
    read_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot);
    read_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom);
    read_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk);
    bool b;
    if (loom_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b)) t->add_bos = b;
    if (loom_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b)) t->add_eos = b;
    if (loom_gguf_get_bool(g, "tokenizer.ggml.add_sep_token", &b)) t->add_sep = b;
    if (loom_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b)) t->add_space_prefix = b;
    if (t->model == TOK_MODEL_BPE && (t->pre->flags & PT_GEMMA4)) t->add_bos = true;
    if (t->model == TOK_MODEL_BPE) t->add_space_prefix = false; /* only SPM prefixes a space */
    /* llama.cpp asserts here; loom just has nothing to add */
    if (t->bos < 0) t->add_bos = false;
    if (t->eos < 0) t->add_eos = false;

    /* byte tokens: <0xXX>, else the single byte as text (SPM) */
    for (int c = 0; c < 256; c++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", c);
        t->byte_token[c] = tok_find(t, hex, 6);
        if (t->byte_token[c] < 0 && t->model == TOK_MODEL_SPM) t->byte_token[c] = tok_find(t, (char[]){(char)c}, 1);
    }

    t->eog = calloc((size_t)t->n_vocab, 1);
    if (!t->eog) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    build_eog(t, g);
    LOOM_TRY(build_specials(t));
    LOOM_TRY(build_pieces(t));
    strip_attrs(t, g);
    return NULL;
}

loom_status loom_tokenizer_create(const loom_gguf *g, loom_tokenizer **out) {
    *out = NULL;
    if (!g) return loom_error(LOOM_ERR_INVALID, "loom_tokenizer_create: no GGUF");
    loom_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return loom_error(LOOM_ERR_NOMEM, "tokenizer: out of memory");
    loom_status st = build(t, g);
    if (st) {
        loom_tokenizer_free(t);
        return loom_error_wrap(st, "%s: tokenizer", loom_gguf_path(g) ? loom_gguf_path(g) : "gguf");
    }
    *out = t;
    return NULL;
}

void loom_tokenizer_free(loom_tokenizer *t) {
    if (!t) return;
    tok_bpe_free(t);
    tok_wpm_free(t);
    tok_ugm_free(t);
    free(t->text);
    free(t->text_off);
    free(t->score);
    free(t->attr);
    free(t->by_text.slot);
    free(t->piece);
    free(t->piece_off);
    free(t->special);
    free(t->trie);
    free(t->eog);
    free(t);
}

/* ---- encoding ---- */

typedef struct {
    size_t off, len; /* raw text, or */
    int32_t id;      /* a special token (>= 0) */
} frag;

static const uint8_t *find_bytes(const uint8_t *h, size_t hn, const uint8_t *n, size_t nn) {
    if (nn == 0 || nn > hn) return NULL;
    const uint8_t *end = h + (hn - nn);
    for (const uint8_t *p = h; p <= end;) {
        p = memchr(p, n[0], (size_t)(end - p) + 1);
        if (!p) return NULL;
        if (!memcmp(p, n, nn)) return p;
        p++;
    }
    return NULL;
}

static int cmp_int(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* llama.cpp's tokenizer_st_partition: for each special token, longest text
 * first, every occurrence in the remaining raw fragments (leftmost first)
 * becomes a token fragment. Only tokens whose text occurs in `text` at all
 * (found with the trie) are tried. */
static loom_status partition(const loom_tokenizer *t, const char *text, size_t len, bool parse_special, tok_vec *frags) {
    loom_status st = NULL;
    tok_vec found = {.elem = sizeof(int32_t)}, next = {.elem = sizeof(frag)};
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len; i++) {
        uint32_t link = t->trie_root[s[i]];
        for (size_t j = i; link; ) {
            const struct tok_trie_node *nd = &t->trie[link - 1];
            if (nd->special >= 0 && (st = tok_vec_push(&found, &nd->special))) goto done;
            if (++j >= len) break;
            link = nd->child;
            while (link && t->trie[link - 1].byte != s[j]) link = t->trie[link - 1].sibling;
        }
    }
    if (found.n) qsort(found.p, found.n, sizeof(int32_t), cmp_int);

    if ((st = tok_vec_push(frags, &(frag){0, len, LOOM_TOKEN_NULL}))) goto done;
    const int32_t *fk = found.p;
    for (size_t k = 0; k < found.n; k++) {
        if (k > 0 && fk[k] == fk[k - 1]) continue;
        int32_t id = t->special[fk[k]];
        uint16_t a = t->attr[id];
        if (!parse_special && (a & (TOK_CONTROL | TOK_UNKNOWN))) continue;
        size_t tl;
        const uint8_t *tt = (const uint8_t *)tok_text(t, id, &tl);
        next.n = 0;
        const frag *f = frags->p;
        for (size_t i = 0; i < frags->n; i++) {
            if (f[i].id >= 0) {
                if ((st = tok_vec_push(&next, &f[i]))) goto done;
                continue;
            }
            size_t off = f[i].off, rem = f[i].len;
            for (;;) {
                const uint8_t *m = find_bytes(s + off, rem, tt, tl);
                if (!m) break;
                size_t mo = (size_t)(m - s), left = mo - off;
                if (a & TOK_LSTRIP)
                    while (left > 0 && isspace(s[off + left - 1])) left--;
                if (left > 0 && (st = tok_vec_push(&next, &(frag){off, left, LOOM_TOKEN_NULL}))) goto done;
                if ((st = tok_vec_push(&next, &(frag){0, 0, id}))) goto done;
                rem -= mo + tl - off;
                off = mo + tl;
                if (a & TOK_RSTRIP)
                    while (rem > 0 && isspace(s[off])) off++, rem--;
            }
            if (rem > 0 && (st = tok_vec_push(&next, &(frag){off, rem, LOOM_TOKEN_NULL}))) goto done;
        }
        tok_vec tmp = *frags;
        *frags = next;
        next = tmp;
    }
done:
    tok_vec_free(&found);
    tok_vec_free(&next);
    return st;
}

loom_status loom_tokenize(const loom_tokenizer *t, const char *text, size_t len, bool add_special,
                          bool parse_special, loom_tokens *out) {
    if (!t || !out || (!text && len)) return loom_error(LOOM_ERR_INVALID, "loom_tokenize: NULL argument");
    size_t n0 = out->n;
    loom_status st = NULL;
    tok_vec frags = {.elem = sizeof(frag)};
    if (len > 0 && (st = partition(t, text, len, parse_special, &frags))) goto done;
    if (add_special && t->add_bos && (st = tok_push(out, t->bos))) goto done;
    bool prev_special = true; /* SPM: a text fragment at the start or after a special token gets "▁" */
    const frag *f = frags.p;
    for (size_t i = 0; i < frags.n; i++) {
        if (f[i].id >= 0) {
            if ((st = tok_push(out, f[i].id))) goto done;
            prev_special = true;
        } else if (t->model == TOK_MODEL_SPM) {
            if ((st = tok_spm_encode(t, text + f[i].off, f[i].len, t->add_space_prefix && prev_special, out))) goto done;
            prev_special = false;
        } else if (t->model == TOK_MODEL_WPM) {
            if ((st = tok_wpm_encode(t, text + f[i].off, f[i].len, out))) goto done;
        } else if (t->model == TOK_MODEL_UGM) {
            if ((st = tok_ugm_encode(t, text + f[i].off, f[i].len, out))) goto done;
        } else {
            if ((st = tok_bpe_encode(t, text + f[i].off, f[i].len, out))) goto done;
        }
    }
    if (add_special && t->add_sep && t->sep >= 0 && (st = tok_push(out, t->sep))) goto done;
    if (add_special && t->add_eos && (st = tok_push(out, t->eos))) goto done;
done:
    tok_vec_free(&frags);
    if (st) out->n = n0;
    return st;
}

/* ---- decoding and accessors ---- */

const char *loom_token_piece(const loom_tokenizer *t, int32_t id, bool render_special, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab || (!render_special && (t->attr[id] & (TOK_CONTROL | TOK_UNKNOWN)))) {
        *len = 0;
        return "";
    }
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->piece + t->piece_off[id];
}

const char *loom_token_text(const loom_tokenizer *t, int32_t id, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) {
        *len = 0;
        return "";
    }
    return tok_text(t, id, len);
}

loom_status loom_detokenize(const loom_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                            loom_strbuf *out) {
    bool strip = t->add_space_prefix;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p = loom_token_piece(t, ids[i], render_special, &len);
        if (strip && len > 0 && !(t->attr[ids[i]] & (TOK_CONTROL | TOK_UNKNOWN | TOK_USER_DEFINED))) {
            if (p[0] == ' ') p++, len--;
            strip = false;
        }
        LOOM_TRY(loom_strbuf_append(out, p, len));
    }
    return NULL;
}

int32_t loom_token_lookup(const loom_tokenizer *t, const char *text, size_t len) {
    return t && text ? tok_find(t, text, len) : LOOM_TOKEN_NULL;
}

int32_t loom_tokenizer_n_vocab(const loom_tokenizer *t) { return t->n_vocab; }
int32_t loom_tokenizer_bos(const loom_tokenizer *t) { return t->bos; }
int32_t loom_tokenizer_eos(const loom_tokenizer *t) { return t->eos; }
int32_t loom_tokenizer_sep(const loom_tokenizer *t) { return t->sep; }
bool loom_tokenizer_adds_sep(const loom_tokenizer *t) { return t->add_sep; }

loom_status loom_tokenize_rerank(const loom_tokenizer *t, const char *tmpl, size_t tmpl_len, const char *q, size_t qn,
                                 const char *d, size_t dn, loom_tokens *out) {
    loom_status st = NULL;
    if (tmpl) { /* {query} and {document} replaced, special tokens parsed */
        size_t need = tmpl_len + 1;
        for (size_t i = 0; i < tmpl_len; i++) {
            if (tmpl_len - i >= 7 && !memcmp(tmpl + i, "{query}", 7)) need += qn;
            if (tmpl_len - i >= 10 && !memcmp(tmpl + i, "{document}", 10)) need += dn;
        }
        char *text = malloc(need);
        if (!text) return loom_error(LOOM_ERR_NOMEM, "out of memory for a rerank prompt");
        size_t n = 0;
        for (size_t i = 0; i < tmpl_len;) {
            if (tmpl_len - i >= 7 && !memcmp(tmpl + i, "{query}", 7)) memcpy(text + n, q, qn), n += qn, i += 7;
            else if (tmpl_len - i >= 10 && !memcmp(tmpl + i, "{document}", 10)) memcpy(text + n, d, dn), n += dn, i += 10;
            else text[n++] = tmpl[i++];
        }
        st = loom_tokenize(t, text, n, false, true, out);
        free(text);
        return st;
    }
    const int32_t eos = t->eos >= 0 ? t->eos : t->sep;
    if (t->add_bos && t->bos >= 0) st = tok_push(out, t->bos);
    if (!st) st = loom_tokenize(t, q, qn, false, false, out);
    if (!st && t->add_eos && eos >= 0) st = tok_push(out, eos);
    if (!st && t->add_sep && t->sep >= 0) st = tok_push(out, t->sep);
    if (!st) st = loom_tokenize(t, d, dn, false, false, out);
    if (!st && t->add_eos && eos >= 0) st = tok_push(out, eos);
    return st;
}
int32_t loom_tokenizer_fim(const loom_tokenizer *t, loom_fim_kind k) {
    return (unsigned)k < 6 ? t->fim[k] : LOOM_TOKEN_NULL;
}
int32_t loom_tokenizer_eot(const loom_tokenizer *t) { return t->eot; }
bool loom_tokenizer_adds_bos(const loom_tokenizer *t) { return t->add_bos; }
bool loom_tokenizer_adds_eos(const loom_tokenizer *t) { return t->add_eos; }
const char *loom_tokenizer_model(const loom_tokenizer *t) { return t->model_name; }
const char *loom_tokenizer_pre(const loom_tokenizer *t) { return t->pre_name; }

bool loom_tokenizer_is_eog(const loom_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

bool loom_tokenizer_is_control(const loom_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && (t->attr[id] & (TOK_CONTROL | TOK_UNKNOWN));
}
