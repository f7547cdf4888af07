/*
 * runtime/text/tokenizer.h — text ⇄ token ids, built from a GGUF's tokenizer.* metadata.
 *
 * Four tokenizer models, with llama.cpp's semantics (its test vectors pass):
 *
 *   "gpt2"  byte-level BPE. The text is split by the pre-tokenizer named in
 *           `tokenizer.ggml.pre` — a *sequence* of regexes, each splitting
 *           every piece the previous one left (llama-vocab.cpp's tables,
 *           run with PCRE2 in UTF + Unicode-property mode; `\s` means the
 *           Unicode White_Space set) — then each piece's bytes are mapped to
 *           GPT-2's printable byte alphabet and merged by `tokenizer.ggml.merges`
 *           rank (lowest rank first, leftmost on ties).
 *   "bert"  WordPiece (tokenizer_wpm.c): BERT's normaliser and pre-tokenizer,
 *           then the longest vocabulary pieces from the left of each word;
 *           [CLS] ... [SEP] around the text when adding special tokens.
 *   "llama" SentencePiece BPE: spaces become U+2581 "▁", a "▁" is prefixed
 *           when `add_space_prefix` (default on) and the text starts or follows
 *           a special token, pairs merge by `tokenizer.ggml.scores` (highest
 *           first, leftmost on ties), and what no token covers falls back to
 *           <0xXX> byte tokens (or the unknown token).
 *   "t5"    SentencePiece unigram (tokenizer_ugm.c: T5's, XLM-RoBERTa's):
 *           the text normalized by the file's precompiled charsmap (NFKC),
 *           spaces "▁" (runs of them one with `remove_extra_whitespaces`,
 *           one prefixed with `add_space_prefix`), then the split whose
 *           tokens' scores sum highest (Viterbi); EOS after the text by
 *           default, no BOS.
 *
 * Any other `tokenizer.ggml.model` (rwkv, plamo2, …) or an unknown `pre`
 * value is LOOM_ERR_UNSUPPORTED naming it.
 *
 * Special tokens: tokens of type control (3), user-defined (4) and unknown
 * (2) are cut out of the input before the model runs, longest text first
 * (llama.cpp's "parse_special"): user-defined tokens always, control and
 * unknown tokens only when parse_special is set. Their text is rendered on
 * output only when asked (user-defined tokens always render).
 *
 * BOS/EOS are added when add_special is set and `tokenizer.ggml.add_bos_token`
 * / `add_eos_token` say so, with llama.cpp's defaults when the keys are
 * absent (SPM: BOS yes; BPE: BOS only for the llama3/tekken/chameleon
 * pre-tokenizers; EOS no). End of generation: EOS, EOT, EOM, FIM pad/repo/
 * file-separator tokens and every token whose text is one of llama.cpp's end
 * markers (<|im_end|>, <|eot_id|>, <|endoftext|>, <end_of_turn>, <|end|>, …).
 *
 * The tokenizer copies what it needs from the GGUF (the GGUF may be freed
 * afterwards), is immutable after creation and may be shared by threads.
 *
 * Where loom knowingly differs from llama.cpp (all outside its test vectors):
 *   - a normal BPE token whose text is not in GPT-2's byte alphabet (e.g.
 *     command-r's raw emoji tokens) prints its UTF-8 as is, where llama.cpp
 *     prints "[UNK_BYTE_0x…]";
 *   - surrogates and code points above U+10FFFF in the input become U+FFFD
 *     before BPE (llama.cpp would pass on invalid UTF-8 or throw);
 *   - when several tokens carry an end-of-turn or FIM text, the lowest id is
 *     taken as EOT / FIM token (llama.cpp: the first in hash-map order);
 *   - pre-tokenizers llama.cpp splits with hand-written code instead of a
 *     regex (kimi-k2, afmoe, whitespace) are refused; tiny_aya's digit
 *     grouping runs its tokenizer.json regex, not llama.cpp's approximation.
 */
#ifndef LOOM_TOKENIZER_H
#define LOOM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime/gguf.h"
#include "runtime/status.h"
#include "runtime/text/utf8.h"

#define LOOM_TOKEN_NULL (-1)

typedef struct loom_tokenizer loom_tokenizer;

/* Builds the tokenizer described by g's tokenizer.* keys. On error *out is
 * NULL and the message names the key or value that was wrong. */
loom_status loom_tokenizer_create(const loom_gguf *g, loom_tokenizer **out) LOOM_MUST_USE;
void loom_tokenizer_free(loom_tokenizer *t);

/* A growable array of token ids. Zero-initialise it; loom_tokenize appends. */
typedef struct {
    int32_t *ids; /* (n) */
    size_t n;
    size_t cap;
} loom_tokens;

void loom_tokens_free(loom_tokens *v); /* releases the memory; v is {0} again */
loom_status loom_tokens_push(loom_tokens *v, int32_t id) LOOM_MUST_USE; /* appends one id */

/* Appends the ids of text[0..len) to *out (which keeps what it held).
 * add_special: BOS/EOS as the model says. parse_special: control tokens
 * written in the text (e.g. "<|im_start|>") become their ids instead of
 * being tokenized as plain text. Fails only on allocation failure or a
 * regex engine error; on failure out->n is unchanged. */
loom_status loom_tokenize(const loom_tokenizer *t, const char *text, size_t len, bool add_special,
                          bool parse_special, loom_tokens *out) LOOM_MUST_USE;

/* The bytes token `id` stands for in output text: byte-level decoded (BPE),
 * "▁" → " " (SPM), one byte for <0xXX>. Control and unknown tokens give their
 * text only when render_special, else "". Sets *len; the pointer lives as
 * long as the tokenizer and is not NUL-terminated. An id out of range gives
 * "" (length 0). A piece may be part of a UTF-8 character: stream it through
 * a loom_utf8_stream. */
const char *loom_token_piece(const loom_tokenizer *t, int32_t id, bool render_special, size_t *len);

/* The token's vocabulary text as stored in the GGUF (e.g. "Ġthe", "<s>");
 * "" for an id out of range. */
const char *loom_token_text(const loom_tokenizer *t, int32_t id, size_t *len);

/* Appends the text of ids[0..n) to *out, pieces concatenated as
 * loom_token_piece gives them; when the model prefixes a space
 * (SPM add_space_prefix) the first text piece loses its leading space, so
 * decode(encode(s)) == s for valid UTF-8 s. Bytes are passed through as they
 * are (no UTF-8 repair: use a loom_utf8_stream for that). */
loom_status loom_detokenize(const loom_tokenizer *t, const int32_t *ids, size_t n, bool render_special,
                            loom_strbuf *out) LOOM_MUST_USE;

/* The id whose text is exactly text[0..len), or LOOM_TOKEN_NULL. */
int32_t loom_token_lookup(const loom_tokenizer *t, const char *text, size_t len);

int32_t loom_tokenizer_n_vocab(const loom_tokenizer *t);
int32_t loom_tokenizer_bos(const loom_tokenizer *t); /* LOOM_TOKEN_NULL when none */
int32_t loom_tokenizer_eos(const loom_tokenizer *t);
int32_t loom_tokenizer_sep(const loom_tokenizer *t); /* the separator (BERT's [SEP]); LOOM_TOKEN_NULL when none */
/* Fill-in-the-middle tokens (code models: Qwen2.5-Coder, CodeLlama,
 * StarCoder, DeepSeek-Coder, Codestral): from tokenizer.ggml.fim_*_token_id
 * (or the older prefix/suffix/middle keys), else found by their text;
 * LOOM_TOKEN_NULL when the model has none. */
typedef enum { LOOM_FIM_PRE, LOOM_FIM_SUF, LOOM_FIM_MID, LOOM_FIM_PAD, LOOM_FIM_REP, LOOM_FIM_SEP } loom_fim_kind;
int32_t loom_tokenizer_fim(const loom_tokenizer *t, loom_fim_kind k);
int32_t loom_tokenizer_eot(const loom_tokenizer *t);
bool loom_tokenizer_adds_bos(const loom_tokenizer *t); /* what add_special does */
bool loom_tokenizer_adds_eos(const loom_tokenizer *t);
bool loom_tokenizer_adds_sep(const loom_tokenizer *t); /* BERT's [SEP] (tokenizer.ggml.add_sep_token) */

/* A reranker's input for a query and a document, as llama-server builds it:
 * the rerank template tmpl (tokenizer.chat_template.rerank; NULL: none)
 * with {query} and {document} replaced, special tokens parsed; else BOS
 * (where the model adds one), query, EOS (SEP where there is no EOS; where
 * the model adds EOS), SEP (where it adds one), document, EOS (likewise).
 * Appends to *out. */
loom_status loom_tokenize_rerank(const loom_tokenizer *t, const char *tmpl, size_t tmpl_len, const char *q, size_t qn,
                                 const char *d, size_t dn, loom_tokens *out) LOOM_MUST_USE;
bool loom_tokenizer_is_eog(const loom_tokenizer *t, int32_t id);   /* end of generation */
bool loom_tokenizer_is_control(const loom_tokenizer *t, int32_t id); /* control or unknown */
const char *loom_tokenizer_model(const loom_tokenizer *t); /* "gpt2", "llama" or "bert" */
const char *loom_tokenizer_pre(const loom_tokenizer *t);   /* e.g. "smollm"; "default" when absent */

#endif
