/*
 * launch/serve/harmony.c — gpt-oss harmony replies split into reasoning,
 * content and tool calls (contract in harmony.h).
 */
#define _GNU_SOURCE /* memmem */
#include "launch/serve/harmony.h"

#include <string.h>

#include "launch/serve/tools.h"

static const char START[] = "<|start|>", END[] = "<|end|>", MESSAGE[] = "<|message|>", CHANNEL[] = "<|channel|>",
                  CONSTRAIN[] = "<|constrain|>", ROLE[] = "assistant", FUNCTIONS[] = "functions.";
#define LEN(s) (sizeof s - 1)

static bool is_ws(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

static bool starts(const char *s, size_t n, const char *p, size_t pn) { return n >= pn && !memcmp(s, p, pn); }

/* Whether s[0..n) and p[0..pn) agree on their common length. */
static bool agrees(const char *s, size_t n, const char *p, size_t pn) { return !memcmp(s, p, n < pn ? n : pn); }

bool srv_harmony_init(srv_harmony *h, bool parse_calls, bool raw_reasoning, uint64_t seed) {
    memset(h, 0, sizeof *h);
    h->parse_calls = parse_calls;
    h->raw_reasoning = raw_reasoning;
    h->id_state = seed;
    h->calls = json_array();
    return h->calls != NULL;
}

void srv_harmony_free(srv_harmony *h) {
    loom_strbuf_free(&h->held);
    loom_strbuf_free(&h->body);
    json_decref(h->calls);
    h->calls = NULL;
}

/* Drops the first k bytes of h->held. */
static void drop(srv_harmony *h, size_t k) {
    if (!h->held.data) return;
    memmove(h->held.data, h->held.data + k, h->held.len - k);
    h->held.len -= k;
    h->held.data[h->held.len] = 0;
}

/* Length of the longest tail of s[0..n) that is a proper prefix of one of
 * the tags (nul-terminated list). */
static size_t tag_tail(const char *s, size_t n, const char *const *tags) {
    size_t best = 0;
    for (; *tags; tags++) {
        const size_t tn = strlen(*tags);
        for (size_t l = tn - 1 < n ? tn - 1 : n; l > best; l--)
            if (!memcmp(s + n - l, *tags, l)) {
                best = l;
                break;
            }
    }
    return best;
}

/* ------------------------------------------------------------ headers */

typedef struct {
    const char *channel, *to, *type; /* in the header's text; NULL when absent */
    size_t channel_n, to_n, type_n;
} header;

/* The end of the word at s[i..n): up to whitespace or a tag's '<'. */
static size_t word_end(const char *s, size_t n, size_t i) {
    while (i < n && !is_ws(s[i]) && s[i] != '<') i++;
    return i;
}

/* Reads " to=R", "<|channel|>C", " <|constrain|>T" or a bare " T" after the
 * channel, each at most once; false when s[0..n) is anything else. */
static bool parse_header(const char *s, size_t n, header *o) {
    memset(o, 0, sizeof *o);
    if (n > SRV_HARMONY_HEAD_MAX) return false;
    for (size_t i = 0; i < n;) {
        if (is_ws(s[i])) {
            i++;
            continue;
        }
        const char **v = &o->type;
        size_t *vn = &o->type_n, skip = 0;
        if (starts(s + i, n - i, CHANNEL, LEN(CHANNEL))) v = &o->channel, vn = &o->channel_n, skip = LEN(CHANNEL);
        else if (starts(s + i, n - i, CONSTRAIN, LEN(CONSTRAIN))) skip = LEN(CONSTRAIN);
        else if (starts(s + i, n - i, "to=", 3)) v = &o->to, vn = &o->to_n, skip = 3;
        else if (!o->channel) return false; /* a bare type comes after the channel */
        if (*v) return false;
        i += skip;
        if (v == &o->type)
            while (i < n && is_ws(s[i])) i++;
        const size_t e = word_end(s, n, i);
        if (e == i) return false;
        *v = s + i, *vn = e - i;
        i = e;
    }
    return o->channel != NULL;
}

/* Whether s[0..n) (after the role) may still become a header: at most
 * SRV_HARMONY_HEAD_MAX bytes besides a tail that may begin <|message|>
 * (as parse_header counts once the tag is whole: where the text is cut
 * must not change what it becomes). */
static bool may_be_header(const char *s, size_t n) {
    static const char *const message[] = {MESSAGE, NULL};
    if (n - tag_tail(s, n, message) > SRV_HARMONY_HEAD_MAX || memmem(s, n, START, LEN(START)) ||
        memmem(s, n, END, LEN(END)))
        return false;
    size_t i = 0;
    while (i < n && is_ws(s[i])) i++;
    return agrees(s + i, n - i, CHANNEL, LEN(CHANNEL)) || agrees(s + i, n - i, CONSTRAIN, LEN(CONSTRAIN)) ||
           agrees(s + i, n - i, "to=", 3); /* what parse_header takes first */
}

static bool is(const char *s, size_t n, const char *word) { return n == strlen(word) && !memcmp(s, word, n); }

/* The message a parsed header opens: its kind (and a call's name); false
 * when the header is not one this parser knows. */
static bool open_message(srv_harmony *h, const header *o) {
    const bool analysis = is(o->channel, o->channel_n, "analysis"),
               commentary = is(o->channel, o->channel_n, "commentary"), final = is(o->channel, o->channel_n, "final");
    if (!analysis && !commentary && !final) return false;
    const bool fn = o->to && o->to_n > LEN(FUNCTIONS) && starts(o->to, o->to_n, FUNCTIONS, LEN(FUNCTIONS));
    if (fn && h->parse_calls && !final) {
        h->kind = SRV_HARMONY_CALL;
        h->json_args = !o->type || memmem(o->type, o->type_n, "json", 4) != NULL;
        h->name_len = o->to_n - LEN(FUNCTIONS); /* < SRV_HARMONY_HEAD_MAX */
        memcpy(h->name, o->to + LEN(FUNCTIONS), h->name_len);
        loom_strbuf_clear(&h->body);
        return true;
    }
    /* a message to another recipient, or a call not parsed, is content */
    h->kind = analysis && !o->to ? SRV_HARMONY_REASONING : SRV_HARMONY_CONTENT;
    return true;
}

/* ------------------------------------------------------------ bodies */

/* Text of the open message to where its kind goes. */
static loom_status emit(srv_harmony *h, const char *s, size_t n, loom_strbuf *reasoning, loom_strbuf *content) {
    if (!n) return NULL;
    switch (h->kind) {
    case SRV_HARMONY_REASONING: return loom_strbuf_append(h->raw_reasoning ? content : reasoning, s, n);
    case SRV_HARMONY_CALL: return loom_strbuf_append(&h->body, s, n);
    default: return loom_strbuf_append(content, s, n);
    }
}

/* The open message ends: a call's body becomes a call, or content when it
 * is not the JSON object its type asks for. */
static loom_status close_message(srv_harmony *h, loom_strbuf *content) {
    if (h->kind != SRV_HARMONY_CALL) return NULL;
    const char *b = h->body.data ? h->body.data : "";
    size_t i = 0, n = h->body.len;
    while (i < n && is_ws(b[i])) i++;
    while (n > i && is_ws(b[n - 1])) n--;
    bool call = true;
    if (h->json_args) {
        json_t *o = json_loadb(b + i, n - i, 0, NULL);
        call = json_is_object(o);
        json_decref(o);
    }
    loom_status st = NULL;
    if (call) {
        json_t *c = srv_tool_call_new(&h->id_state, h->name, h->name_len, b + i, n - i);
        if (!c || json_array_append_new(h->calls, c)) st = loom_error(LOOM_ERR_NOMEM, "harmony: out of memory for a call");
    } else {
        st = loom_strbuf_append(content, b, h->body.len);
    }
    loom_strbuf_clear(&h->body);
    h->kind = SRV_HARMONY_CONTENT;
    return st;
}

/* ------------------------------------------------------------ the stream */

/* One step over h->held; *more: call again (the state changed). */
static loom_status step(srv_harmony *h, loom_strbuf *reasoning, loom_strbuf *content, bool *more) {
    const char *s = h->held.data ? h->held.data : "";
    const size_t n = h->held.len;
    *more = false;
    if (h->state == SRV_HARMONY_HEAD) {
        const size_t r = h->need_role ? LEN(ROLE) : 0;
        const char *at = memmem(s, n, MESSAGE, LEN(MESSAGE));
        bool ok = agrees(s, n, ROLE, r);
        if (ok && !at && (n < r || may_be_header(s + r, n - r))) return NULL; /* wait for the rest */
        header o;
        ok = ok && at && (size_t)(at - s) >= r && parse_header(s + r, (size_t)(at - s) - r, &o) && open_message(h, &o);
        if (!ok) { /* not harmony: as written, up to the next <|start|> */
            if (h->need_role) LOOM_TRY(loom_strbuf_append(content, START, LEN(START)));
            h->state = SRV_HARMONY_RAW;
            *more = true;
            return NULL;
        }
        const size_t k = (size_t)(at - s) + LEN(MESSAGE);
        if (h->kind == SRV_HARMONY_REASONING && h->raw_reasoning) LOOM_TRY(loom_strbuf_append(content, s + r, k - r));
        drop(h, k);
        h->state = SRV_HARMONY_BODY;
        *more = true;
        return NULL;
    }
    const char *st = memmem(s, n, START, LEN(START));
    const char *en = h->state == SRV_HARMONY_BODY ? memmem(s, n, END, LEN(END)) : NULL;
    const bool end = en && (!st || en < st);
    const char *at = end ? en : st;
    if (!at) {
        static const char *const body_tags[] = {START, END, NULL}, *const raw_tags[] = {START, NULL};
        const size_t keep = tag_tail(s, n, h->state == SRV_HARMONY_BODY ? body_tags : raw_tags);
        if (h->state == SRV_HARMONY_BODY) LOOM_TRY(emit(h, s, n - keep, reasoning, content));
        else LOOM_TRY(loom_strbuf_append(content, s, n - keep));
        drop(h, n - keep);
        return NULL;
    }
    const size_t k = (size_t)(at - s);
    if (h->state == SRV_HARMONY_BODY) {
        LOOM_TRY(emit(h, s, k, reasoning, content));
        if (end && h->kind == SRV_HARMONY_REASONING && h->raw_reasoning) LOOM_TRY(loom_strbuf_append(content, END, LEN(END)));
        LOOM_TRY(close_message(h, content));
    } else {
        LOOM_TRY(loom_strbuf_append(content, s, k));
    }
    drop(h, k + (end ? LEN(END) : LEN(START)));
    /* after <|end|>, a <|start|> is due: whatever comes first is content as written */
    h->state = end ? SRV_HARMONY_RAW : SRV_HARMONY_HEAD;
    h->need_role = !end;
    *more = true;
    return NULL;
}

loom_status srv_harmony_push(srv_harmony *h, const char *text, size_t len, loom_strbuf *reasoning,
                             loom_strbuf *content) {
    LOOM_TRY(loom_strbuf_append(&h->held, text, len));
    for (bool more = true; more;) LOOM_TRY(step(h, reasoning, content, &more));
    return NULL;
}

loom_status srv_harmony_flush(srv_harmony *h, loom_strbuf *reasoning, loom_strbuf *content) {
    loom_status st = NULL;
    const char *s = h->held.data ? h->held.data : "";
    if (h->state == SRV_HARMONY_BODY) {
        st = emit(h, s, h->held.len, reasoning, content);
        if (!st) st = close_message(h, content);
    } else if (h->state == SRV_HARMONY_RAW) {
        st = loom_strbuf_append(content, s, h->held.len);
    } /* a header cut short carries no text */
    loom_strbuf_clear(&h->held);
    h->state = SRV_HARMONY_RAW;
    return st;
}

bool srv_harmony_template(const loom_chat_template *t) {
    static const char M[] = "[{\"role\": \"user\", \"content\": \"Hi\"}]";
    loom_chat_request r = {.messages_json = M, .messages_len = LEN(M), .add_generation_prompt = true,
                           .openai_content = true};
    loom_strbuf out = {0};
    loom_status st = loom_chat_apply(t, &r, NULL, &out);
    static const char GEN[] = "<|start|>assistant";
    const bool yes = !st && out.len >= LEN(GEN) && !memcmp(out.data + out.len - LEN(GEN), GEN, LEN(GEN)) &&
                     memmem(out.data, out.len, MESSAGE, LEN(MESSAGE));
    loom_status_free(st);
    loom_strbuf_free(&out);
    return yes;
}
