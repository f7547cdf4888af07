/*
 * runtime/text/chat.c — recognising chat templates structurally and formatting
 * messages exactly as they render.
 *
 * The lexer follows jinja2's (3.1) with Hugging Face's settings:
 * trim_blocks (a newline right after a block or comment tag is dropped),
 * lstrip_blocks (spaces before a block or comment tag at the start of a line
 * are dropped), keep_trailing_newline off, "-" whitespace control on either
 * side of a tag, newlines normalised to "\n". The result is a token stream
 * in which only output-relevant differences remain.
 */
#include "runtime/text/chat.h"

#include <stdlib.h>
#include <string.h>

/* ---- Jinja lexer ---- */

typedef enum { J_DATA, J_BLOCK, J_BLOCK_END, J_VAR, J_VAR_END, J_NAME, J_STRING, J_NUMBER, J_OP } jkind;

typedef struct {
    jkind kind;
    size_t off, len; /* value bytes in the stream's arena */
} jtok;

typedef struct {
    jtok *t;
    size_t n, cap;
    loom_strbuf arena; /* token values */
} jstream;

static void jstream_free(jstream *s) {
    free(s->t);
    loom_strbuf_free(&s->arena);
    memset(s, 0, sizeof *s);
}

static loom_status jpush(jstream *s, jkind kind, const char *v, size_t n) {
    if (kind == J_DATA && n == 0) return NULL;
    if (kind == J_DATA && s->n && s->t[s->n - 1].kind == J_DATA) { /* data split by a comment */
        LOOM_TRY(loom_strbuf_append(&s->arena, v, n));
        s->t[s->n - 1].len += n;
        return NULL;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        jtok *p = realloc(s->t, cap * sizeof *p);
        if (!p) return loom_error(LOOM_ERR_NOMEM, "chat template: out of memory");
        s->t = p;
        s->cap = cap;
    }
    size_t off = s->arena.len;
    LOOM_TRY(loom_strbuf_append(&s->arena, v, n));
    s->t[s->n++] = (jtok){kind, off, n};
    return NULL;
}

static const char *jval(const jstream *s, size_t i) { return s->arena.data + s->t[i].off; }

static bool jis(const jstream *s, size_t i, jkind kind, const char *v) {
    return i < s->n && s->t[i].kind == kind && s->t[i].len == strlen(v) && !memcmp(jval(s, i), v, s->t[i].len);
}

/* Python's str.isspace() for one code point. */
static bool py_space(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Length of the leading / trailing Python whitespace of s[0..n). */
static size_t lead_space(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int k = loom_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (k <= 0 || !py_space(cp)) break;
        i += (size_t)k;
    }
    return i;
}

static size_t trail_space(const char *s, size_t n) {
    size_t end = n;
    while (end > 0) {
        size_t st = end - 1;
        while (st > 0 && ((uint8_t)s[st] & 0xC0) == 0x80 && end - st < 4) st--;
        uint32_t cp;
        int k = loom_utf8_decode((const uint8_t *)s + st, end - st, &cp);
        if (k <= 0 || (size_t)k != end - st || !py_space(cp)) break;
        end = st;
    }
    return n - end;
}

static int hexval(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Python's unicode-escape decoding of a string literal's body. */
static loom_status unescape(const char *s, size_t n, loom_strbuf *out) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\' || i + 1 >= n) {
            LOOM_TRY(loom_strbuf_append(out, s + i, 1));
            continue;
        }
        char c = s[++i], b = 0;
        switch (c) {
        case '\n': continue; /* line continuation */
        case '\\': b = '\\'; break;
        case '\'': b = '\''; break;
        case '"': b = '"'; break;
        case 'a': b = 7; break;
        case 'b': b = 8; break;
        case 'f': b = 12; break;
        case 'n': b = 10; break;
        case 'r': b = 13; break;
        case 't': b = 9; break;
        case 'v': b = 11; break;
        case 'x':
        case 'u':
        case 'U': {
            size_t digits = c == 'x' ? 2 : c == 'u' ? 4 : 8;
            uint32_t cp = 0;
            for (size_t k = 1; k <= digits; k++) {
                int h = i + k < n ? hexval(s[i + k]) : -1;
                if (h < 0) return loom_error(LOOM_ERR_UNSUPPORTED, "chat template: bad \\%c escape", c);
                cp = cp * 16 + (uint32_t)h;
            }
            i += digits;
            char u[4];
            LOOM_TRY(loom_strbuf_append(out, u, (size_t)loom_utf8_encode(cp, u)));
            continue;
        }
        default:
            if (c >= '0' && c <= '7') {
                uint32_t v = 0;
                size_t k = 0;
                while (k < 3 && i + k < n && s[i + k] >= '0' && s[i + k] <= '7') v = v * 8 + (uint32_t)(s[i + k++] - '0');
                i += k - 1;
                char u[4];
                LOOM_TRY(loom_strbuf_append(out, u, (size_t)loom_utf8_encode(v, u)));
                continue;
            }
            if (c == 'N') return loom_error(LOOM_ERR_UNSUPPORTED, "chat template: \\N{...} escapes are not supported");
            LOOM_TRY(loom_strbuf_append(out, s + i - 1, 2)); /* unknown escape: kept */
            continue;
        }
        LOOM_TRY(loom_strbuf_append(out, &b, 1));
    }
    return NULL;
}

static bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Tokens inside a {{ }} or {% %} tag, up to its end delimiter ("}}" or
 * "%}"); sets *pos after the delimiter and *strip_after when it was "-}}" /
 * "-%}", *plus_end for "+%}". */
static loom_status lex_tag(const char *s, size_t n, size_t *pos, char close, jstream *out, bool *strip_after,
                           bool *plus_end) {
    size_t i = *pos;
    *strip_after = *plus_end = false;
    while (i < n) {
        char c = s[i];
        if (c == ' ' || c == '\t' || c == '\n') {
            i++;
            continue;
        }
        if ((c == '-' || c == '+') && i + 2 < n && s[i + 1] == close && s[i + 2] == '}') {
            *strip_after = c == '-';
            *plus_end = c == '+';
            *pos = i + 3;
            return NULL;
        }
        if (c == close && i + 1 < n && s[i + 1] == '}') {
            *pos = i + 2;
            return NULL;
        }
        if (c == '\'' || c == '"') {
            size_t j = i + 1;
            while (j < n && s[j] != c) j += s[j] == '\\' ? 2 : 1;
            if (j >= n) return loom_error(LOOM_ERR_UNSUPPORTED, "chat template: unterminated string at byte %zu", i);
            loom_strbuf v = {0};
            loom_status st = unescape(s + i + 1, j - i - 1, &v);
            if (!st) st = jpush(out, J_STRING, v.data ? v.data : "", v.len);
            loom_strbuf_free(&v);
            LOOM_TRY(st);
            i = j + 1;
            continue;
        }
        if (is_name_start(c)) {
            size_t j = i;
            while (j < n && (is_name_start(s[j]) || is_digit(s[j]))) j++;
            LOOM_TRY(jpush(out, J_NAME, s + i, j - i));
            i = j;
            continue;
        }
        if (is_digit(c)) {
            size_t j = i;
            while (j < n && (is_digit(s[j]) || s[j] == '_' || s[j] == '.' || s[j] == 'e' || s[j] == 'E')) j++;
            LOOM_TRY(jpush(out, J_NUMBER, s + i, j - i));
            i = j;
            continue;
        }
        static const char *const two[] = {"//", "**", "==", "!=", ">=", "<="};
        size_t op = 0;
        for (size_t k = 0; k < sizeof two / sizeof two[0] && !op; k++)
            if (i + 1 < n && s[i] == two[k][0] && s[i + 1] == two[k][1]) op = 2;
        if (!op && strchr("+-/*%~[](){}><=.:|,;!", c)) op = 1;
        if (!op) return loom_error(LOOM_ERR_UNSUPPORTED, "chat template: unexpected character '%c' at byte %zu", c, i);
        LOOM_TRY(jpush(out, J_OP, s + i, op));
        i += op;
    }
    return loom_error(LOOM_ERR_UNSUPPORTED, "chat template: unterminated tag");
}

/* x['name'] → x.name (same lookup for the dicts a template sees). */
static loom_status normalise_subscripts(jstream *s) {
    size_t w = 0;
    for (size_t r = 0; r < s->n; r++) {
        if (r + 2 < s->n && jis(s, r, J_OP, "[") && s->t[r + 1].kind == J_STRING && jis(s, r + 2, J_OP, "]") && w > 0 &&
            (s->t[w - 1].kind == J_NAME || jis(s, w - 1, J_OP, "]") || jis(s, w - 1, J_OP, ")"))) {
            const char *v = jval(s, r + 1);
            size_t len = s->t[r + 1].len;
            bool ident = len > 0 && is_name_start(v[0]);
            for (size_t k = 1; k < len && ident; k++) ident = is_name_start(v[k]) || is_digit(v[k]);
            if (ident) {
                LOOM_TRY(loom_strbuf_append(&s->arena, ".", 1));
                s->t[w++] = (jtok){J_OP, s->arena.len - 1, 1};
                s->t[w] = s->t[r + 1];
                s->t[w++].kind = J_NAME;
                r += 2;
                continue;
            }
        }
        s->t[w++] = s->t[r];
    }
    s->n = w;
    return NULL;
}

static loom_status lex(const char *src, size_t len, jstream *out) {
    memset(out, 0, sizeof *out);
    /* newlines → "\n"; one trailing newline dropped (keep_trailing_newline off) */
    loom_strbuf nb = {0};
    loom_status st = loom_strbuf_reserve(&nb, len);
    for (size_t i = 0; !st && i < len; i++) {
        char c = src[i];
        if (c == '\r') {
            if (i + 1 < len && src[i + 1] == '\n') i++;
            c = '\n';
        }
        nb.data[nb.len++] = c;
    }
    if (st) return st;
    if (nb.len && nb.data[nb.len - 1] == '\n') nb.len--;
    const char *s = nb.data ? nb.data : "";
    size_t n = nb.len;

    /* after a tag: strip_next ("-%}" / "-}}": all whitespace), trim_nl
     * (trim_blocks: one newline); line_start: the text begins a line */
    size_t pos = 0;
    bool strip_next = false, trim_nl = false;
    while (!st) {
        size_t k = pos; /* the next tag start, or n */
        while (k + 1 < n && !(s[k] == '{' && (s[k + 1] == '{' || s[k + 1] == '%' || s[k + 1] == '#'))) k++;
        if (k + 1 >= n) k = n;
        size_t ds = pos, de = k;
        bool line_start = pos == 0;
        if (strip_next) {
            ds += lead_space(s + ds, de - ds);
            line_start = ds > pos && s[ds - 1] == '\n';
        } else if (trim_nl && ds < de && s[ds] == '\n') {
            ds++;
            line_start = true;
        }
        if (k == n) {
            st = jpush(out, J_DATA, s + ds, de - ds);
            break;
        }
        char type = s[k + 1], sign = k + 2 < n ? s[k + 2] : 0;
        if (sign == '-') {
            de -= trail_space(s + ds, de - ds);
        } else if (sign != '+' && type != '{') { /* lstrip_blocks */
            size_t l = de;
            while (l > ds && s[l - 1] != '\n') l--;
            if ((l > ds || line_start) && de > l && lead_space(s + l, de - l) == de - l) de = l;
        }
        if ((st = jpush(out, J_DATA, s + ds, de - ds))) break;
        pos = k + 2 + (sign == '-' || sign == '+');
        bool strip_after = false, plus_end = false;
        if (type == '#') {
            size_t e = pos;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) {
                st = loom_error(LOOM_ERR_UNSUPPORTED, "chat template: unterminated comment");
                break;
            }
            strip_after = e > pos && s[e - 1] == '-';
            plus_end = e > pos && s[e - 1] == '+';
            pos = e + 2;
        } else {
            if ((st = jpush(out, type == '{' ? J_VAR : J_BLOCK, "", 0))) break;
            size_t first = out->n;
            if ((st = lex_tag(s, n, &pos, type == '{' ? '}' : '%', out, &strip_after, &plus_end))) break;
            if (type == '%' && jis(out, first, J_NAME, "raw")) {
                st = loom_error(LOOM_ERR_UNSUPPORTED, "chat template: {%% raw %%} is not supported");
                break;
            }
            if (type == '{' && plus_end) {
                st = loom_error(LOOM_ERR_UNSUPPORTED, "chat template: '+}}' is not valid Jinja");
                break;
            }
            if ((st = jpush(out, type == '{' ? J_VAR_END : J_BLOCK_END, "", 0))) break;
        }
        strip_next = strip_after;
        trim_nl = type != '{' && !strip_after && !plus_end;
    }
    loom_strbuf_free(&nb);
    if (!st) st = normalise_subscripts(out);
    if (st) jstream_free(out);
    return st;
}

static uint64_t fingerprint(const jstream *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < s->n; i++) {
        uint8_t head[9] = {(uint8_t)s->t[i].kind};
        uint64_t len = s->t[i].len;
        memcpy(head + 1, &len, 8);
        for (int k = 0; k < 9; k++) h = (h ^ head[k]) * 0x100000001b3ull;
        const uint8_t *v = (const uint8_t *)jval(s, i);
        for (size_t k = 0; k < s->t[i].len; k++) h = (h ^ v[k]) * 0x100000001b3ull;
    }
    return h;
}

loom_status loom_chat_template_fingerprint(const char *tmpl, size_t len, uint64_t *out) {
    jstream s;
    LOOM_TRY(lex(tmpl, len, &s));
    *out = fingerprint(&s);
    jstream_free(&s);
    return NULL;
}

/* ---- known templates ---- */

typedef enum {
    R_CHATML,         /* hole: default system block (optional) */
    R_LLAMA3,         /* Meta-Llama-3-Instruct */
    R_LLAMA31,        /* Llama-3.1/3.3-Instruct without tools */
    R_LLAMA2,         /* Llama-2-chat */
    R_MISTRAL_V0,     /* Mistral-7B-Instruct v0.1/v0.2, Mixtral-8x7B-Instruct */
    R_MISTRAL_V1,     /* with an optional system prompt in the first [INST] */
    R_MISTRAL_V3,     /* system prompt in the last [INST]; assistant " " + trimmed */
    R_MISTRAL_V3_TEKKEN,
    R_MISTRAL_V7,     /* [SYSTEM_PROMPT] */
    R_PHI3,
} renderer;

enum {
    GEN_ALWAYS = 1 << 0, /* the assistant header is added whatever add_generation_prompt says */
    EOS_IF_NO_GEN = 1 << 1,
};

/* A string literal whose value is this byte matches any literal (a hole). */
#define HOLE "\x01"

#define CHATML_BODY                                                                                    \
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" \
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
#define GEN_DEFAULT "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
#define LLAMA3_LOOP                                                                                          \
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' " \
    "+ message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{% if "          \
    "loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
#define LLAMA3_GEN "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
#define INST_ALTERNATE                                                                                       \
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must " \
    "alternate user/assistant/user/assistant/...') }}{% endif %}"

typedef struct {
    const char *name;
    renderer r;
    unsigned flags;
    const char *skeleton;  /* Jinja source, holes allowed; or NULL and: */
    uint64_t fingerprint;  /* of the whole template (long templates) */
} known;

static const known KNOWN[] = {
    /* generic ChatML (OpenHermes and many fine-tunes) */
    {"chatml", R_CHATML, 0, "{% for message in messages %}" CHATML_BODY, 0},
    {"chatml", R_CHATML, 0, GEN_DEFAULT "{% for message in messages %}" CHATML_BODY, 0},
    /* SmolLM2, Qwen2: a default system message when the first is not one */
    {"chatml", R_CHATML, 0,
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '" HOLE
     "' }}{% endif %}" CHATML_BODY,
     0},
    /* Meta-Llama-3-8B/70B-Instruct, and variants seen in the wild */
    {"llama3", R_LLAMA3, 0, LLAMA3_LOOP "{% if add_generation_prompt %}" LLAMA3_GEN "{% endif %}", 0},
    {"llama3", R_LLAMA3, GEN_ALWAYS, LLAMA3_LOOP LLAMA3_GEN, 0},
    {"llama3", R_LLAMA3, EOS_IF_NO_GEN,
     GEN_DEFAULT LLAMA3_LOOP "{% if add_generation_prompt %}" LLAMA3_GEN "{% else %}{{ eos_token }}{% endif %}", 0},
    /* Llama-3.1-8B-Instruct and Llama-3.3-70B-Instruct (same template) */
    {"llama3.1", R_LLAMA31, 0, NULL, 0x01050cf3ab550a2cull},
    /* Llama-2-7b/13b/70b-chat */
    {"llama2", R_LLAMA2, 0,
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
     "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
     "%}{% for message in loop_messages %}" INST_ALTERNATE
     "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
     "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
     "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
     0},
    /* Mistral-7B-Instruct v0.1/v0.2, Mixtral-8x7B-Instruct-v0.1 */
    {"mistral-v0", R_MISTRAL_V0, 0,
     "{{ bos_token }}{% for message in messages %}" INST_ALTERNATE
     "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
     "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
     "are supported!') }}{% endif %}{% endfor %}",
     0},
    /* mistralai's "v1" template with a system prompt (Mistral-7B-Instruct-v0.2/v0.3) */
    {"mistral-v1", R_MISTRAL_V1, 0,
     "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] %}{% set "
     "loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ bos_token }}{% for "
     "message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
     "raise_exception('After the optional system message, conversation roles must alternate "
     "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{% if loop.first and "
     "system_message is defined %}{{ ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}{% "
     "else %}{{ ' [INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% elif message['role'] == 'assistant' "
     "%}{{ ' ' + message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are "
     "supported, with the exception of an initial optional system message!') }}{% endif %}{% endfor %}",
     0},
    /* mistralai's "v3" (Mistral-Large-Instruct-2407) and "v3-tekken" (Mistral-Nemo-Instruct-2407) */
    {"mistral-v3", R_MISTRAL_V3, 0, NULL, 0x06749fd1aa9a4fc7ull},
    {"mistral-v3-tekken", R_MISTRAL_V3_TEKKEN, 0, NULL, 0x1d8f28193a3a7308ull},
    /* mistralai's "v7" (Mistral-Large-Instruct-2411) */
    {"mistral-v7", R_MISTRAL_V7, 0,
     "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + "
     "message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + "
     "message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + "
     "message['content'] + eos_token }}{% else %}{{ raise_exception('Only user, system and assistant roles are "
     "supported!') }}{% endif %}{% endfor %}",
     0},
    /* Phi-3-mini */
    {"phi3", R_PHI3, 0,
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\\n' + "
     "message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}{% elif (message['role'] == 'assistant') "
     "%}{{message['content'] + '<|end|>' + '\\n'}}{% endif %}{% endfor %}",
     0},
};

struct loom_chat_template {
    const known *k;
    char *hole;      /* the captured literal (default system block), or NULL */
    size_t hole_len;
    char *bos, *eos;
};

/* Token-for-token equality with a skeleton; a hole literal captures. */
static bool match(const jstream *t, const jstream *sk, size_t *hole_tok) {
    if (t->n != sk->n) return false;
    *hole_tok = SIZE_MAX;
    for (size_t i = 0; i < t->n; i++) {
        if (t->t[i].kind != sk->t[i].kind) return false;
        if (sk->t[i].kind == J_STRING && jis(sk, i, J_STRING, HOLE)) {
            *hole_tok = i;
            continue;
        }
        if (t->t[i].len != sk->t[i].len || memcmp(jval(t, i), jval(sk, i), t->t[i].len)) return false;
    }
    return true;
}

static const char *family_of(const char *s, size_t n) {
    static const struct {
        const char *marker, *family;
    } F[] = {{"<|im_start|>", "ChatML"},      {"<|start_header_id|>", "Llama-3"}, {"[INST]", "Llama-2/Mistral [INST]"},
             {"<|user|>", "Phi-3/Zephyr"},    {"<start_of_turn>", "Gemma"},       {"<|START_OF_TURN_TOKEN|>", "Command-R"}};
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) {
        size_t m = strlen(F[i].marker);
        for (size_t k = 0; k + m <= n; k++)
            if (!memcmp(s + k, F[i].marker, m)) return F[i].family;
    }
    return NULL;
}

static char *dup_str(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

static loom_status unrecognised(const char *tmpl, size_t len, uint64_t fp) {
    size_t cut = len < 60 ? len : 60;
    while (cut < len && cut > 0 && ((uint8_t)tmpl[cut] & 0xC0) == 0x80) cut--; /* whole characters */
    loom_strbuf head = {0};
    loom_status st = loom_json_escape(tmpl, cut, &head);
    if (st) return st;
    const char *fam = family_of(tmpl, len);
    if (fam) {
        st = loom_error(LOOM_ERR_UNSUPPORTED,
                        "chat template not recognised: it looks like a %s template but is not one of the variants "
                        "loom formats exactly (template starts %s%s, fingerprint 0x%016llx)",
                        fam, head.data, cut < len ? "..." : "", (unsigned long long)fp);
    } else {
        st = loom_error(LOOM_ERR_UNSUPPORTED,
                        "chat template not recognised (template starts %s%s, fingerprint 0x%016llx); loom formats "
                        "ChatML, Llama-3, Llama-2/Mistral [INST] and Phi-3 templates",
                        head.data, cut < len ? "..." : "", (unsigned long long)fp);
    }
    loom_strbuf_free(&head);
    return st;
}

loom_status loom_chat_template_create(const char *tmpl, size_t len, const char *bos_token, const char *eos_token,
                                      loom_chat_template **out) {
    *out = NULL;
    if (!tmpl || len == 0) return loom_error(LOOM_ERR_UNSUPPORTED, "no chat template (empty tokenizer.chat_template)");
    jstream t;
    loom_status st = lex(tmpl, len, &t);
    if (st) return loom_error_wrap(st, "chat template not recognised");
    uint64_t fp = fingerprint(&t);
    const known *hit = NULL;
    size_t hole = SIZE_MAX;
    for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0] && !hit && !st; i++) {
        if (!KNOWN[i].skeleton) {
            if (KNOWN[i].fingerprint == fp) hit = &KNOWN[i];
            continue;
        }
        jstream sk;
        if ((st = lex(KNOWN[i].skeleton, strlen(KNOWN[i].skeleton), &sk))) break;
        if (match(&t, &sk, &hole)) hit = &KNOWN[i];
        jstream_free(&sk);
    }
    if (!st && !hit) st = unrecognised(tmpl, len, fp);
    loom_chat_template *c = NULL;
    if (!st) {
        c = calloc(1, sizeof *c);
        if (!c) st = loom_error(LOOM_ERR_NOMEM, "chat template: out of memory");
    }
    if (!st) {
        c->k = hit;
        c->bos = dup_str(bos_token ? bos_token : "", bos_token ? strlen(bos_token) : 0);
        c->eos = dup_str(eos_token ? eos_token : "", eos_token ? strlen(eos_token) : 0);
        if (hole != SIZE_MAX) {
            c->hole = dup_str(jval(&t, hole), t.t[hole].len);
            c->hole_len = t.t[hole].len;
        }
        if (!c->bos || !c->eos || (hole != SIZE_MAX && !c->hole))
            st = loom_error(LOOM_ERR_NOMEM, "chat template: out of memory");
    }
    jstream_free(&t);
    if (st) {
        loom_chat_template_free(c);
        return st;
    }
    *out = c;
    return NULL;
}

loom_status loom_chat_template_from_gguf(const loom_gguf *g, const loom_tokenizer *tok, loom_chat_template **out) {
    *out = NULL;
    loom_str s;
    if (!loom_gguf_get_str(g, "tokenizer.chat_template", &s))
        return loom_error(LOOM_ERR_UNSUPPORTED, "%s: the model has no chat template (tokenizer.chat_template %s)",
                          loom_gguf_path(g) ? loom_gguf_path(g) : "gguf",
                          loom_gguf_get(g, "tokenizer.chat_template") ? "is not a string" : "is absent");
    char *bos = NULL, *eos = NULL;
    size_t n;
    const char *p;
    if (tok && loom_tokenizer_bos(tok) >= 0) {
        p = loom_token_text(tok, loom_tokenizer_bos(tok), &n);
        bos = dup_str(p, n);
    }
    if (tok && loom_tokenizer_eos(tok) >= 0) {
        p = loom_token_text(tok, loom_tokenizer_eos(tok), &n);
        eos = dup_str(p, n);
    }
    loom_status st = loom_chat_template_create(s.ptr, s.len, bos, eos, out);
    free(bos);
    free(eos);
    return st;
}

void loom_chat_template_free(loom_chat_template *c) {
    if (!c) return;
    free(c->hole);
    free(c->bos);
    free(c->eos);
    free(c);
}

const char *loom_chat_template_name(const loom_chat_template *c) { return c->k->name; }

bool loom_chat_template_adds_bos(const loom_chat_template *c) {
    return c->k->r != R_CHATML && c->bos[0] != 0;
}

/* ---- rendering ---- */

typedef struct {
    loom_strbuf *out;
    loom_status st;
} emitter;

static void put(emitter *e, const char *s) {
    if (!e->st) e->st = loom_strbuf_append(e->out, s, strlen(s));
}

static void put_n(emitter *e, const char *s, size_t n) {
    if (!e->st) e->st = loom_strbuf_append(e->out, s, n);
}

/* Python's str.strip() */
static void put_stripped(emitter *e, const char *s) {
    size_t n = strlen(s), a = lead_space(s, n);
    put_n(e, s + a, n - a - trail_space(s + a, n - a));
}

static bool role_is(const loom_chat_msg *m, const char *r) { return !strcmp(m->role, r); }

static loom_status raise(const char *msg) { return loom_error(LOOM_ERR_INVALID, "chat template: %s", msg); }

static const char *const ALTERNATE = "Conversation roles must alternate user/assistant/user/assistant/...";
static const char *const ALTERNATE_AFTER_SYSTEM =
    "After the optional system message, conversation roles must alternate user/assistant/user/assistant/...";
static const char *const ONLY_USER_ASSISTANT_SYSTEM =
    "Only user and assistant roles are supported, with the exception of an initial optional system message!";

static loom_status render(const loom_chat_template *c, const loom_chat_msg *m, size_t n, bool gen, emitter *e) {
    const char *bos = c->bos, *eos = c->eos;
    switch (c->k->r) {
    case R_CHATML:
        for (size_t i = 0; i < n; i++) {
            if (i == 0 && c->hole && !role_is(&m[0], "system")) put_n(e, c->hole, c->hole_len);
            put(e, "<|im_start|>");
            put(e, m[i].role);
            put(e, "\n");
            put(e, m[i].content);
            put(e, "<|im_end|>\n");
        }
        if (gen) put(e, "<|im_start|>assistant\n");
        return NULL;

    case R_LLAMA3:
        for (size_t i = 0; i < n; i++) {
            if (i == 0) put(e, bos);
            put(e, "<|start_header_id|>");
            put(e, m[i].role);
            put(e, "<|end_header_id|>\n\n");
            put_stripped(e, m[i].content);
            put(e, "<|eot_id|>");
        }
        if (gen || (c->k->flags & GEN_ALWAYS)) put(e, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        else if (c->k->flags & EOS_IF_NO_GEN) put(e, eos);
        return NULL;

    case R_LLAMA31: {
        if (n == 0) return raise("the template reads messages[0]; give at least one message");
        size_t first = 0;
        put(e, bos);
        put(e, "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
               "Today Date: 26 Jul 2024\n\n");
        if (role_is(&m[0], "system")) {
            put_stripped(e, m[0].content);
            first = 1;
        }
        put(e, "<|eot_id|>");
        for (size_t i = first; i < n; i++) {
            if (role_is(&m[i], "tool") || role_is(&m[i], "ipython"))
                return loom_error(LOOM_ERR_UNSUPPORTED, "chat template llama3.1: loom does not format '%s' messages",
                                  m[i].role);
            put(e, "<|start_header_id|>");
            put(e, m[i].role);
            put(e, "<|end_header_id|>\n\n");
            put_stripped(e, m[i].content);
            put(e, "<|eot_id|>");
        }
        if (gen) put(e, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        return NULL;
    }

    case R_LLAMA2: {
        if (n == 0) return raise("the template reads messages[0]; give at least one message");
        bool has_sys = role_is(&m[0], "system");
        const loom_chat_msg *loop = m + has_sys;
        size_t ln = n - has_sys;
        for (size_t i = 0; i < ln; i++) {
            if (role_is(&loop[i], "user") != (i % 2 == 0)) return raise(ALTERNATE);
            bool with_sys = i == 0 && has_sys;
            if (role_is(&loop[i], "user")) {
                put(e, bos);
                put(e, "[INST] ");
            } else if (role_is(&loop[i], "assistant")) {
                put(e, " ");
            } else {
                continue;
            }
            if (with_sys) { /* strip() applies to the whole "<<SYS>>…" + content */
                loom_strbuf tmp = {0};
                loom_status st = loom_strbuf_append(&tmp, "<<SYS>>\n", 8);
                if (!st) st = loom_strbuf_append(&tmp, m[0].content, strlen(m[0].content));
                if (!st) st = loom_strbuf_append(&tmp, "\n<</SYS>>\n\n", 11);
                if (!st) st = loom_strbuf_append(&tmp, loop[i].content, strlen(loop[i].content));
                if (!st) put_stripped(e, tmp.data);
                loom_strbuf_free(&tmp);
                if (st) return st;
            } else {
                put_stripped(e, loop[i].content);
            }
            if (role_is(&loop[i], "user")) put(e, " [/INST]");
            else {
                put(e, " ");
                put(e, eos);
            }
        }
        return NULL;
    }

    case R_MISTRAL_V0:
        put(e, bos);
        for (size_t i = 0; i < n; i++) {
            if (role_is(&m[i], "user") != (i % 2 == 0)) return raise(ALTERNATE);
            if (role_is(&m[i], "user")) {
                put(e, "[INST] ");
                put(e, m[i].content);
                put(e, " [/INST]");
            } else if (role_is(&m[i], "assistant")) {
                put(e, m[i].content);
                put(e, eos);
            } else {
                return raise("Only user and assistant roles are supported!");
            }
        }
        return NULL;

    case R_MISTRAL_V1: {
        if (n == 0) return raise("the template reads messages[0]; give at least one message");
        bool has_sys = role_is(&m[0], "system");
        const loom_chat_msg *loop = m + has_sys;
        size_t ln = n - has_sys;
        put(e, bos);
        for (size_t i = 0; i < ln; i++) {
            if (role_is(&loop[i], "user") != (i % 2 == 0)) return raise(ALTERNATE_AFTER_SYSTEM);
            if (role_is(&loop[i], "user")) {
                put(e, " [INST] ");
                if (i == 0 && has_sys) {
                    put(e, m[0].content);
                    put(e, "\n\n");
                }
                put(e, loop[i].content);
                put(e, " [/INST]");
            } else if (role_is(&loop[i], "assistant")) {
                put(e, " ");
                put(e, loop[i].content);
                put(e, eos);
            } else {
                return raise(ONLY_USER_ASSISTANT_SYSTEM);
            }
        }
        return NULL;
    }

    case R_MISTRAL_V3:
    case R_MISTRAL_V3_TEKKEN: {
        if (n == 0) return raise("the template reads messages[0]; give at least one message");
        bool tekken = c->k->r == R_MISTRAL_V3_TEKKEN;
        bool has_sys = role_is(&m[0], "system");
        const loom_chat_msg *loop = m + has_sys;
        size_t ln = n - has_sys, idx = 0;
        for (size_t i = 0; i < ln; i++) { /* alternation, tool messages skipped */
            if (role_is(&loop[i], "tool") || role_is(&loop[i], "tool_results")) continue;
            if (role_is(&loop[i], "user") != (idx % 2 == 0)) return raise(ALTERNATE_AFTER_SYSTEM);
            idx++;
        }
        put(e, bos);
        for (size_t i = 0; i < ln; i++) {
            if (role_is(&loop[i], "user")) {
                put(e, tekken ? "[INST]" : "[INST] ");
                if (i == ln - 1 && has_sys) {
                    put(e, m[0].content);
                    put(e, "\n\n");
                }
                put(e, loop[i].content);
                put(e, "[/INST]");
            } else if (role_is(&loop[i], "assistant")) {
                if (tekken) {
                    put(e, loop[i].content);
                } else {
                    put(e, " ");
                    put_stripped(e, loop[i].content);
                }
                put(e, eos);
            } else if (role_is(&loop[i], "tool") || role_is(&loop[i], "tool_results")) {
                return raise("Tool call IDs should be alphanumeric strings with length 9!");
            } else {
                return raise(ONLY_USER_ASSISTANT_SYSTEM);
            }
        }
        return NULL;
    }

    case R_MISTRAL_V7:
        put(e, bos);
        for (size_t i = 0; i < n; i++) {
            if (role_is(&m[i], "user")) {
                put(e, "[INST] ");
                put(e, m[i].content);
                put(e, "[/INST]");
            } else if (role_is(&m[i], "system")) {
                put(e, "[SYSTEM_PROMPT] ");
                put(e, m[i].content);
                put(e, "[/SYSTEM_PROMPT]");
            } else if (role_is(&m[i], "assistant")) {
                put(e, " ");
                put(e, m[i].content);
                put(e, eos);
            } else {
                return raise("Only user, system and assistant roles are supported!");
            }
        }
        return NULL;

    case R_PHI3:
        put(e, bos);
        for (size_t i = 0; i < n; i++) {
            if (role_is(&m[i], "user")) {
                put(e, "<|user|>\n");
                put(e, m[i].content);
                put(e, "<|end|>\n<|assistant|>\n");
            } else if (role_is(&m[i], "assistant")) {
                put(e, m[i].content);
                put(e, "<|end|>\n");
            }
        }
        return NULL;
    }
    return loom_error(LOOM_ERR_INVALID, "chat template: unknown renderer");
}

loom_status loom_chat_format(const loom_chat_template *c, const loom_chat_msg *msgs, size_t n,
                             bool add_generation_prompt, loom_strbuf *out) {
    if (!c || !out || (n && !msgs)) return loom_error(LOOM_ERR_INVALID, "loom_chat_format: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (!msgs[i].role || !msgs[i].content)
            return loom_error(LOOM_ERR_INVALID, "chat message %zu has no %s", i, msgs[i].role ? "content" : "role");
    size_t len0 = out->len;
    emitter e = {out, NULL};
    loom_status st = render(c, msgs, n, add_generation_prompt, &e);
    if (!st) st = e.st;
    if (st) {
        out->len = len0;
        if (out->data) out->data[len0] = 0;
    }
    return st;
}
