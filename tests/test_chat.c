/*
 * tests/test_chat.c — chat templates through runtime/text/chat.h.
 *
 * Every expected string below was rendered by hand with jinja2 3.1.6 set up
 * as Hugging Face's apply_chat_template does (ImmutableSandboxedEnvironment,
 * trim_blocks=True, lstrip_blocks=True, raise_exception defined), from the
 * template texts quoted here: SmolLM2-135M-Instruct's (as stored in the
 * model file), Qwen2's (llama.cpp's ggml-vocab-qwen2.gguf),
 * Meta-Llama-3-8B-Instruct's and Llama-2-chat's (their tokenizer_config.json)
 * and Mistral/Mixtral's (llama.cpp's tests/test-chat-template.cpp). The
 * whole corpus of llama.cpp's templates is compared by tests/template_corpus.c.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/text/chat.h"
#include "runtime/gguf.h"
#include "runtime/text/tokenizer.h"

#define OK(expr)                                                                   \
    do {                                                                           \
        loom_status s_ = (expr);                                                   \
        cr_assert_null(s_, "%s failed: %s", #expr, loom_status_message(s_));       \
    } while (0)

#define DEFAULT_MODEL LOOM_CACHE_DIR "/models/SmolLM2-135M-Instruct.Q4_1.gguf"

/* ---- template texts ---- */

static const char SMOLLM2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' "
    "+ message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|im_start|>assistant\n' }}{% endif %}";

static const char QWEN2[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful assistant<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

static const char LLAMA3[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 "
    "%}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

static const char LLAMA2[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif "
    "%}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
    "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] "
    "== 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

/* Mistral-7B-Instruct-v0.2 (pre-v1) and Mixtral-8x7B-Instruct-v0.1 */
static const char MISTRAL_V0[] =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
    "raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
    "message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == "
    "'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles "
    "are supported!') }}{% endif %}{% endfor %}";

/* mistralai's "v1" template with a system prompt, multi-line as published */
static const char MISTRAL_V1[] =
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = messages[0]['content'] %}\n    {%- set "
    "loop_messages = messages[1:] %}\n{%- else %}\n    {%- set loop_messages = messages %}\n{%- endif %}\n\n{{- "
    "bos_token }}\n{%- for message in loop_messages %}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == "
    "0) %}\n        {{- raise_exception('After the optional system message, conversation roles must alternate "
    "user/assistant/user/assistant/...') }}\n    {%- endif %}\n    {%- if message['role'] == 'user' %}\n        {%- "
    "if loop.first and system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + "
    "message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + ' "
    "[/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == 'assistant' %}\n        {{- ' ' + "
    "message['content'] + eos_token}}\n    {%- else %}\n        {{- raise_exception('Only user and assistant roles "
    "are supported, with the exception of an initial optional system message!') }}\n    {%- endif %}\n{%- endfor "
    "%}\n";

/* mistralai's "v7" (Mistral-Large-Instruct-2411) */
static const char MISTRAL_V7[] =
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] "
    "+ '[/INST]' }}{% elif message['role'] == 'system' %}{{ '[SYSTEM_PROMPT] ' + message['content'] + "
    "'[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}{% else "
    "%}{{ raise_exception('Only user, system and assistant roles are supported!') }}{% endif %}{% endfor %}";

/* llama.cpp's test conversation */
static const loom_chat_msg CONV[] = {
    {"system", "You are a helpful assistant"},
    {"user", "Hello"},
    {"assistant", "Hi there"},
    {"user", "Who are you"},
    {"assistant", "   I am an assistant   "},
    {"user", "Another question"},
};

static loom_chat_template *make(const char *tmpl, const char *bos, const char *eos, const char *family) {
    (void)family;
    loom_chat_template *c = NULL;
    OK(loom_chat_template_create(tmpl, strlen(tmpl), bos, eos, &c));
    return c;
}

/* The template wrote BOS itself when its output starts with the BOS text. */
static bool renders_bos(const loom_chat_template *c, const loom_chat_msg *m, size_t n) {
    loom_strbuf out = {0};
    OK(loom_chat_format(c, m, n, true, &out));
    bool r = loom_chat_prompt_has_bos(c, out.data ? out.data : "", out.len);
    loom_strbuf_free(&out);
    return r;
}

static void expect_render(const loom_chat_template *c, const loom_chat_msg *m, size_t n, bool gen, const char *want) {
    loom_strbuf out = {0};
    OK(loom_chat_format(c, m, n, gen, &out));
    cr_assert_str_eq(out.data ? out.data : "", want);
    loom_strbuf_free(&out);
}

static void expect_raise(const loom_chat_template *c, const loom_chat_msg *m, size_t n, const char *what) {
    loom_strbuf out = {0};
    OK(loom_strbuf_append(&out, "kept", 4));
    loom_status st = loom_chat_format(c, m, n, true, &out);
    cr_assert_not_null(st, "expected the template to raise '%s'", what);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_INVALID);
    cr_assert(strstr(loom_status_message(st), what), "message '%s' lacks '%s'", loom_status_message(st), what);
    cr_assert_str_eq(out.data, "kept", "the output buffer must be left as it was");
    loom_status_free(st);
    loom_strbuf_free(&out);
}

/* ---- ChatML ---- */

#define SMOL_SYSTEM "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"

Test(chatml, smollm2_default_system_message) {
    loom_chat_template *c = make(SMOLLM2, NULL, NULL, "chatml");
    const loom_chat_msg hello[] = {{"user", "Hello"}};
    expect_render(c, hello, 1, true, SMOL_SYSTEM "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    expect_render(c, hello, 1, false, SMOL_SYSTEM "<|im_start|>user\nHello<|im_end|>\n");
    /* a system message of its own replaces the default */
    expect_render(c, CONV, 6, true,
                  "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
                  "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
                  "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
                  "question<|im_end|>\n<|im_start|>assistant\n");
    expect_render(c, CONV + 1, 5, true,
                  SMOL_SYSTEM "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n"
                              "<|im_start|>user\nWho are you<|im_end|>\n<|im_start|>assistant\n   I am an assistant   "
                              "<|im_end|>\n<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n");
    /* no messages: the default system block is inside the loop, so only the prompt */
    expect_render(c, NULL, 0, true, "<|im_start|>assistant\n");
    cr_assert_not(renders_bos(c, hello, 1));
    loom_chat_template_free(c);
}

Test(chatml, qwen2_default_system_message) {
    loom_chat_template *c = make(QWEN2, NULL, NULL, "chatml");
    const loom_chat_msg m[] = {{"user", "1+1?"}};
    expect_render(c, m, 1, true,
                  "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n"
                  "<|im_start|>assistant\n");
    loom_chat_template_free(c);
}

/* OpenAI clients send content as a list of text parts; a template that
 * concatenates strings gets their texts joined by newlines (as vLLM and
 * llama.cpp's servers hand it), one that only renders lists gets the list,
 * and without openai_content every template gets what was sent. */
static loom_status apply_parts(const loom_chat_template *c, bool openai, loom_strbuf *out) {
    static const char msgs[] = "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Describe \"},"
                               "{\"type\":\"text\",\"text\":\"a cat.\"}]},"
                               "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"},{\"type\":\"image\"}]}]";
    loom_chat_request r = {.messages_json = msgs, .messages_len = strlen(msgs), .openai_content = openai};
    return loom_chat_apply(c, &r, NULL, out);
}

Test(any_template, openai_content_parts) {
    static const char TYPED[] =
        "{% for m in messages %}[{% for p in m.content %}{% if p.type == 'text' %}{{ p.text }}|{% endif %}{% endfor %}]"
        "{% endfor %}";
    static const char BOTH[] =
        "{% for m in messages %}[{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}"
        "{{ p.text }}|{% endfor %}{% endif %}]{% endfor %}";
    loom_chat_template *smol = make(SMOLLM2, NULL, NULL, "chatml"), *typed = make(TYPED, NULL, NULL, "typed"),
                       *both = make(BOTH, NULL, NULL, "both");
    cr_assert_not(loom_chat_template_typed_only(smol));
    cr_assert(loom_chat_template_typed_only(typed));
    cr_assert_not(loom_chat_template_typed_only(both));
    loom_strbuf out = {0};
    /* a string template: text parts joined; a list with another part stays a list (and fails there) */
    loom_status st = apply_parts(smol, true, &out);
    cr_assert_not_null(st);
    cr_assert(strstr(loom_status_message(st), "can only concatenate str (not \"list\")"), "%s", loom_status_message(st));
    loom_status_free(st);
    static const char joined[] = "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Describe \"},"
                                 "{\"type\":\"text\",\"text\":\"a cat.\"}]}]";
    loom_chat_request r = {.messages_json = joined, .messages_len = strlen(joined), .openai_content = true};
    OK(loom_chat_apply(smol, &r, NULL, &out));
    cr_assert_str_eq(out.data, SMOL_SYSTEM "<|im_start|>user\nDescribe \na cat.<|im_end|>\n");
    loom_strbuf_clear(&out);
    r.openai_content = false; /* as transformers: the list reaches the template */
    st = loom_chat_apply(smol, &r, NULL, &out);
    cr_assert_not_null(st);
    loom_status_free(st);
    /* a template of lists keeps them; one of both takes the joined string */
    loom_strbuf_clear(&out);
    OK(apply_parts(typed, true, &out));
    cr_assert_str_eq(out.data, "[][Describe |a cat.|][x|]");
    loom_strbuf_clear(&out);
    OK(apply_parts(both, true, &out));
    cr_assert_str_eq(out.data, "[Be brief.][Describe \na cat.][x||]");
    loom_strbuf_clear(&out);
    OK(apply_parts(both, false, &out));
    cr_assert_str_eq(out.data, "[Be brief.][Describe |a cat.|][x||]");
    loom_strbuf_free(&out);
    loom_chat_template_free(smol);
    loom_chat_template_free(typed);
    loom_chat_template_free(both);
}

/* The template as the default model stores it, with bos/eos from its tokenizer. */
Test(chatml, from_the_default_model) {
    struct stat sb;
    cr_assert(stat(DEFAULT_MODEL, &sb) == 0, "missing %s: run launch/fetch-model.sh", DEFAULT_MODEL);
    loom_gguf *g;
    loom_tokenizer *tok;
    loom_chat_template *c;
    OK(loom_gguf_open(DEFAULT_MODEL, &g));
    OK(loom_tokenizer_create(g, &tok));
    loom_str s;
    cr_assert(loom_gguf_get_str(g, "tokenizer.chat_template", &s));
    cr_assert(s.len == strlen(SMOLLM2) && !memcmp(s.ptr, SMOLLM2, s.len), "the file's template differs from the one quoted here");
    OK(loom_chat_template_from_gguf(g, tok, &c));
    const loom_chat_msg m[] = {{"user", "What is 2+2?"}};
    loom_strbuf out = {0};
    OK(loom_chat_format(c, m, 1, true, &out));
    cr_assert_str_eq(out.data, SMOL_SYSTEM "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
    /* and it tokenizes with the special tokens as single ids */
    loom_tokens ids = {0};
    OK(loom_tokenize(tok, out.data, out.len, !loom_chat_prompt_has_bos(c, out.data, out.len), true, &ids));
    cr_assert_eq(ids.ids[0], 1, "<|im_start|>");
    cr_assert_eq(ids.ids[ids.n - 1], 198, "the prompt ends with a newline token");
    int im_end = 0;
    for (size_t i = 0; i < ids.n; i++) im_end += ids.ids[i] == 2;
    cr_assert_eq(im_end, 2);
    loom_tokens_free(&ids);
    loom_strbuf_free(&out);
    loom_chat_template_free(c);
    loom_tokenizer_free(tok);
    loom_gguf_free(g);
}

/* Formatting that jinja2 renders identically is recognised as the same template. */
Test(chatml, formatting_variants_are_the_same_template) {
    static const char reformatted[] =
        "{%- for message in messages -%}\n"
        "    {%- if loop.first and messages[0].role != \"system\" -%}\n"
        "        {{- \"<|im_start|>system\\nYou are a pirate.<|im_end|>\\n\" -}}\n"
        "    {%- endif -%}\n"
        "    {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' -}}\n"
        "{%- endfor -%}\n"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}\n";
    loom_chat_template *c = make(reformatted, NULL, NULL, "chatml");
    const loom_chat_msg m[] = {{"user", "Ahoy"}};
    expect_render(c, m, 1, true,
                  "<|im_start|>system\nYou are a pirate.<|im_end|>\n<|im_start|>user\nAhoy<|im_end|>\n"
                  "<|im_start|>assistant\n");
    loom_chat_template_free(c);
    static const char plain[] =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    static const char extra_newline[] =
        "{% for message in messages %}\n{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    static const char newline_after_var[] =
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
        "'<|im_end|>' + '\\n'}}\n{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
    /* trim_blocks removes the newline right after "%}" */
    c = make(plain, NULL, NULL, "chatml");
    expect_render(c, m, 1, true, "<|im_start|>user\nAhoy<|im_end|>\n<|im_start|>assistant\n");
    loom_chat_template_free(c);
    c = make(extra_newline, NULL, NULL, "chatml");
    expect_render(c, m, 1, true, "<|im_start|>user\nAhoy<|im_end|>\n<|im_start|>assistant\n");
    loom_chat_template_free(c);
    /* but not after "}}": that newline is output */
    c = make(newline_after_var, NULL, NULL, "chatml");
    expect_render(c, m, 1, true, "<|im_start|>user\nAhoy<|im_end|>\n\n<|im_start|>assistant\n");
    loom_chat_template_free(c);
}

/* ---- Llama-3, Llama-2, Mistral ---- */

Test(llama, llama3_trims_and_starts_with_bos) {
    loom_chat_template *c = make(LLAMA3, "<|begin_of_text|>", "<|eot_id|>", "llama3");
    expect_render(c, CONV, 6, true,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
                  "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>"
                  "assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
                  "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an "
                  "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
                  "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    expect_render(c, CONV + 1, 5, false,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>"
                  "assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho are "
                  "you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am an "
                  "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>");
    /* trim is Python's str.strip(): Unicode spaces go too */
    const loom_chat_msg m[] = {{"user", "\xE3\x80\x80 wide \xC2\xA0\n"}};
    expect_render(c, m, 1, false, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nwide<|eot_id|>");
    cr_assert(renders_bos(c, m, 1));
    loom_chat_template_free(c);
}

Test(llama, llama2_system_in_first_turn) {
    loom_chat_template *c = make(LLAMA2, "<s>", "</s>", "llama2");
    expect_render(c, CONV, 6, true,
                  "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s><s>[INST] "
                  "Who are you [/INST] I am an assistant </s><s>[INST] Another question [/INST]");
    const loom_chat_msg two_users[] = {{"user", "a"}, {"user", "b"}};
    expect_raise(c, two_users, 2, "Conversation roles must alternate user/assistant/user/assistant/...");
    loom_chat_template_free(c);
}

Test(mistral, v0_no_system_role) {
    loom_chat_template *c = make(MISTRAL_V0, "<s>", "</s>", "mistral-v0");
    expect_render(c, CONV + 1, 5, true,
                  "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   </s>[INST] "
                  "Another question [/INST]");
    expect_raise(c, CONV, 6, "Conversation roles must alternate user/assistant/user/assistant/...");
    cr_assert(renders_bos(c, CONV + 1, 5));
    loom_chat_template_free(c);
}

Test(mistral, v1_multiline_template_with_system) {
    loom_chat_template *c = make(MISTRAL_V1, "<s>", "</s>", "mistral-v1");
    expect_render(c, CONV, 6, true,
                  "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you [/INST]    "
                  "I am an assistant   </s> [INST] Another question [/INST]");
    /* the alternation check comes first, then the role check */
    const loom_chat_msg tool[] = {{"user", "a"}, {"assistant", "b"}, {"tool", "c"}};
    expect_raise(c, tool, 3, "After the optional system message, conversation roles must alternate");
    const loom_chat_msg tool2[] = {{"user", "a"}, {"tool", "c"}};
    expect_raise(c, tool2, 2, "Only user and assistant roles are supported");
    loom_chat_template_free(c);
}

Test(mistral, v7_system_prompt) {
    loom_chat_template *c = make(MISTRAL_V7, "<s>", "</s>", "mistral-v7");
    expect_render(c, CONV, 6, true,
                  "<s>[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi there</s>[INST] "
                  "Who are you[/INST]    I am an assistant   </s>[INST] Another question[/INST]");
    loom_chat_template_free(c);
}

/* ---- any template renders; errors name what was wrong ---- */

Test(any_template, other_families_and_features) {
    /* Gemma's template (not ChatML, Llama or Mistral) */
    static const char gemma[] =
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
        "supported') }}{% endif %}{% for message in messages %}<start_of_turn>{{ message['role'] }}\n"
        "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}";
    loom_chat_template *c = make(gemma, "<bos>", "<eos>", "gemma");
    const loom_chat_msg g[] = {{"user", " Hi "}, {"model", "Yo"}};
    expect_render(c, g, 2, true, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nYo<end_of_turn>\n");
    expect_raise(c, CONV, 6, "System role not supported");
    loom_chat_template_free(c);
    /* ChatML with a tools section: tools = None unless given */
    static const char tools[] =
        "{% if tools %}{{ '<|im_start|>system\\n' + tools | tojson + '<|im_end|>\\n' }}{% endif %}"
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] "
        "+ '<|im_end|>' + '\\n'}}{% endfor %}";
    c = make(tools, NULL, NULL, "chatml");
    const loom_chat_msg q[] = {{"user", "q"}};
    expect_render(c, q, 1, true, "<|im_start|>user\nq<|im_end|>\n");
    static const char msgs[] = "[{\"role\": \"user\", \"content\": \"q\"}]";
    static const char defs[] = "[{\"type\": \"function\", \"function\": {\"name\": \"f\", \"parameters\": {}}}]";
    loom_chat_request req = {.messages_json = msgs, .messages_len = strlen(msgs), .tools_json = defs,
                             .tools_len = strlen(defs), .add_generation_prompt = true};
    loom_strbuf out = {0};
    OK(loom_chat_apply(c, &req, NULL, &out));
    cr_assert_str_eq(out.data, "<|im_start|>system\n[{\"type\": \"function\", \"function\": {\"name\": \"f\", "
                               "\"parameters\": {}}}]<|im_end|>\n<|im_start|>user\nq<|im_end|>\n");
    loom_strbuf_free(&out);
    loom_chat_template_free(c);
    /* not a chat template at all, and an empty one, still render */
    c = make("Hello {{ name }}!", NULL, NULL, "");
    expect_render(c, q, 1, true, "Hello !");
    loom_chat_template_free(c);
    c = make("", NULL, NULL, "");
    expect_render(c, q, 1, true, "");
    loom_chat_template_free(c);
}

Test(any_template, errors) {
    loom_chat_template *c = (loom_chat_template *)&c;
    loom_status st = loom_chat_template_create("{{ 'unterminated }}", 19, "<s>", "</s>", &c);
    cr_assert_not_null(st);
    cr_assert_null(c);
    cr_assert(strstr(loom_status_message(st), "chat template:1:4: unexpected char"), "%s", loom_status_message(st));
    loom_status_free(st);

    /* a GGUF without one */
    char path[512];
    snprintf(path, sizeof path, "%s/vocab/ggml-vocab-gpt-2.gguf", LOOM_CACHE_DIR);
    struct stat sb;
    cr_assert(stat(path, &sb) == 0, "missing %s: run launch/fetch-model.sh --vocab", path);
    loom_gguf *g;
    OK(loom_gguf_open(path, &g));
    c = (loom_chat_template *)&c;
    st = loom_chat_template_from_gguf(g, NULL, &c);
    cr_assert_not_null(st);
    cr_assert_null(c);
    cr_assert(strstr(loom_status_message(st), "has no chat template (tokenizer.chat_template is absent)"), "%s",
              loom_status_message(st));
    loom_status_free(st);
    loom_gguf_free(g);

    /* bad messages */
    c = make(SMOLLM2, NULL, NULL, "chatml");
    const loom_chat_msg m[] = {{"user", NULL}};
    loom_strbuf out = {0};
    st = loom_chat_format(c, m, 1, true, &out);
    cr_assert_eq(loom_status_code(st), LOOM_ERR_INVALID);
    cr_assert_null(out.data);
    loom_status_free(st);
    loom_chat_request req = {.messages_json = "{\"role\": \"user\"}", .messages_len = 16};
    st = loom_chat_apply(c, &req, NULL, &out);
    cr_assert(strstr(loom_status_message(st), "messages: expected a JSON array"), "%s", loom_status_message(st));
    loom_status_free(st);
    loom_chat_template_free(c);
}

/* ---- long templates: Llama-3.1/3.3-Instruct and Mistral-Nemo-Instruct-2407
 * (llama.cpp's models/templates) and mistralai's "v3" (llama.cpp's
 * tests/test-chat-template.cpp); expected renders from jinja2 with
 * tools=None ---- */

static const char LLAMA31[] =
    "{{- bos_token }}\n"
    "{%- if custom_tools is defined %}\n"
    "    {%- set tools = custom_tools %}\n"
    "{%- endif %}\n"
    "{%- if not tools_in_user_message is defined %}\n"
    "    {%- set tools_in_user_message = true %}\n"
    "{%- endif %}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = \"26 Jul 2024\" %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- This block extracts the system message, so we can slot it into the right place. #}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "\n"
    "{#- System message + builtin tools #}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{%- if builtin_tools is defined or tools is not none %}\n"
    "    {{- \"Environment: ipython\\n\" }}\n"
    "{%- endif %}\n"
    "{%- if builtin_tools is defined %}\n"
    "    {{- \"Tools: \" + builtin_tools | reject('equalto', 'code_interpreter') | join(\", \") + \"\\n\\n"
    "\"}}\n"
    "{%- endif %}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{%- if tools is not none and not tools_in_user_message %}\n"
    "    {{- \"You have access to the following functions. To call a function, please respond with JSON fo"
    "r a function call.\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name "
    "and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "{%- endif %}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "\n"
    "{#- Custom tools are passed in a user message with some extra guidance #}\n"
    "{%- if tools_in_user_message and not tools is none %}\n"
    "    {#- Extract the first user message so we can plug it in here #}\n"
    "    {%- if messages | length != 0 %}\n"
    "        {%- set first_user_message = messages[0]['content']|trim %}\n"
    "        {%- set messages = messages[1:] %}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Cannot put tools in the first user message when there's no first user m"
    "essage!\") }}\n"
    "{%- endif %}\n"
    "    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}\n"
    "    {{- \"Given the following functions, please respond with a JSON for a function call \" }}\n"
    "    {{- \"with its proper arguments that best answers the given prompt.\\n\\n\" }}\n"
    "    {{- 'Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name "
    "and its value}.' }}\n"
    "    {{- \"Do not use variables.\\n\\n\" }}\n"
    "    {%- for t in tools %}\n"
    "        {{- t | tojson(indent=4) }}\n"
    "        {{- \"\\n\\n\" }}\n"
    "    {%- endfor %}\n"
    "    {{- first_user_message + \"<|eot_id|>\"}}\n"
    "{%- endif %}\n"
    "\n"
    "{%- for message in messages %}\n"
    "    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}\n"
    "        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] |"
    " trim + '<|eot_id|>' }}\n"
    "    {%- elif 'tool_calls' in message %}\n"
    "        {%- if not message.tool_calls|length == 1 %}\n"
    "            {{- raise_exception(\"This model only supports single tool-calls at once!\") }}\n"
    "        {%- endif %}\n"
    "        {%- set tool_call = message.tool_calls[0].function %}\n"
    "        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "            {{- \"<|python_tag|>\" + tool_call.name + \".call(\" }}\n"
    "            {%- for arg_name, arg_val in tool_call.arguments | items %}\n"
    "                {{- arg_name + '=\"' + arg_val + '\"' }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- endif %}\n"
    "                {%- endfor %}\n"
    "            {{- \")\" }}\n"
    "        {%- else  %}\n"
    "            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}\n"
    "            {{- '{\"name\": \"' + tool_call.name + '\", ' }}\n"
    "            {{- '\"parameters\": ' }}\n"
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- \"}\" }}\n"
    "        {%- endif %}\n"
    "        {%- if builtin_tools is defined %}\n"
    "            {#- This means we're in ipython mode #}\n"
    "            {{- \"<|eom_id|>\" }}\n"
    "        {%- else %}\n"
    "            {{- \"<|eot_id|>\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif message.role == \"tool\" or message.role == \"ipython\" %}\n"
    "        {{- \"<|start_header_id|>ipython<|end_header_id|>\\n\\n\" }}\n"
    "        {%- if message.content is mapping or message.content is iterable %}\n"
    "            {{- message.content | tojson }}\n"
    "        {%- else %}\n"
    "            {{- message.content }}\n"
    "        {%- endif %}\n"
    "        {{- \"<|eot_id|>\" }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n";

static const char LLAMA31_CONV_OUT[] =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "You are a helpful assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "Hi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Who are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "I am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Another question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n";

static const char LLAMA31_NOSYS_OUT[] =
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n"
    "\n"
    "Cutting Knowledge Date: December 2023\n"
    "Today Date: 26 Jul 2024\n"
    "\n"
    "<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Hello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "Hi there<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Who are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n"
    "I am an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n"
    "\n"
    "Another question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n"
    "\n";

static const char MISTRAL_NEMO[] =
    "{%- if messages[0][\"role\"] == \"system\" %}\n"
    "    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls i"
    "s defined and message.tool_calls is not none)) %}\n"
    "        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n"
    "            {{- raise_exception(\"After the optional system message, conversation roles must alternat"
    "e user/assistant/user/assistant/...\") }}\n"
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS][\" }}\n"
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    "                {{- '{\"type\": \"function\", \"function\": {' }}\n"
    "                {%- for key, val in tool.items() if key != \"return\" %}\n"
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    "                        {{- \", \" }}\n"
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    "                {{- \"}}\" }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- else %}\n"
    "                    {{- \"]\" }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n"
    "            {{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif (message.tool_calls is defined and message.tool_calls is not none) %}\n"
    "        {{- \"[TOOL_CALLS][\" }}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") "
    "}}\n"
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    "                {{- \", \" }}\n"
    "            {%- else %}\n"
    "                {{- \"]\" + eos_token }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- message[\"content\"] + eos_token}}\n"
    "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    "        {{- '[TOOL_RESULTS]{\"content\": ' + content|string + \", \" }}\n"
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an i"
    "nitial optional system message!\") }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

static const char MISTRAL_NEMO_CONV_OUT[] =
    "<s>[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]You are a h"
    "elpful assistant\n"
    "\n"
    "Another question[/INST]";

static const char MISTRAL_NEMO_NOSYS_OUT[] =
    "<s>[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>[INST]Another que"
    "stion[/INST]";

static const char MISTRAL_V3[] =
    "{%- if messages[0][\"role\"] == \"system\" %}\n"
    "    {%- set system_message = messages[0][\"content\"] %}\n"
    "    {%- set loop_messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set loop_messages = messages %}\n"
    "{%- endif %}\n"
    "{%- if not tools is defined %}\n"
    "    {%- set tools = none %}\n"
    "{%- endif %}\n"
    "{%- set user_messages = loop_messages | selectattr(\"role\", \"equalto\", \"user\") | list %}\n"
    "\n"
    "{#- This block checks for alternating user/assistant messages, skipping tool calling messages #}\n"
    "{%- set ns = namespace() %}\n"
    "{%- set ns.index = 0 %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if not (message.role == \"tool\" or message.role == \"tool_results\" or (message.tool_calls i"
    "s defined and message.tool_calls is not none)) %}\n"
    "        {%- if (message[\"role\"] == \"user\") != (ns.index % 2 == 0) %}\n"
    "            {{- raise_exception(\"After the optional system message, conversation roles must alternat"
    "e user/assistant/user/assistant/...\") }}\n"
    "        {%- endif %}\n"
    "        {%- set ns.index = ns.index + 1 %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "\n"
    "{{- bos_token }}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message[\"role\"] == \"user\" %}\n"
    "        {%- if tools is not none and (message == user_messages[-1]) %}\n"
    "            {{- \"[AVAILABLE_TOOLS] [\" }}\n"
    "            {%- for tool in tools %}\n"
    "                {%- set tool = tool.function %}\n"
    "                {{- '{\"type\": \"function\", \"function\": {' }}\n"
    "                {%- for key, val in tool.items() if key != \"return\" %}\n"
    "                    {%- if val is string %}\n"
    "                        {{- '\"' + key + '\": \"' + val + '\"' }}\n"
    "                    {%- else %}\n"
    "                        {{- '\"' + key + '\": ' + val|tojson }}\n"
    "                    {%- endif %}\n"
    "                    {%- if not loop.last %}\n"
    "                        {{- \", \" }}\n"
    "                    {%- endif %}\n"
    "                {%- endfor %}\n"
    "                {{- \"}}\" }}\n"
    "                {%- if not loop.last %}\n"
    "                    {{- \", \" }}\n"
    "                {%- else %}\n"
    "                    {{- \"]\" }}\n"
    "                {%- endif %}\n"
    "            {%- endfor %}\n"
    "            {{- \"[/AVAILABLE_TOOLS]\" }}\n"
    "            {%- endif %}\n"
    "        {%- if loop.last and system_message is defined %}\n"
    "            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- else %}\n"
    "            {{- \"[INST] \" + message[\"content\"] + \"[/INST]\" }}\n"
    "        {%- endif %}\n"
    "    {%- elif message.tool_calls is defined and message.tool_calls is not none %}\n"
    "        {{- \"[TOOL_CALLS] [\" }}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- set out = tool_call.function|tojson %}\n"
    "            {{- out[:-1] }}\n"
    "            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}\n"
    "                {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") "
    "}}\n"
    "            {%- endif %}\n"
    "            {{- ', \"id\": \"' + tool_call.id + '\"}' }}\n"
    "            {%- if not loop.last %}\n"
    "                {{- \", \" }}\n"
    "            {%- else %}\n"
    "                {{- \"]\" + eos_token }}\n"
    "            {%- endif %}\n"
    "        {%- endfor %}\n"
    "    {%- elif message[\"role\"] == \"assistant\" %}\n"
    "        {{- \" \" + message[\"content\"]|trim + eos_token}}\n"
    "    {%- elif message[\"role\"] == \"tool_results\" or message[\"role\"] == \"tool\" %}\n"
    "        {%- if message.content is defined and message.content.content is defined %}\n"
    "            {%- set content = message.content.content %}\n"
    "        {%- else %}\n"
    "            {%- set content = message.content %}\n"
    "        {%- endif %}\n"
    "        {{- '[TOOL_RESULTS] {\"content\": ' + content|string + \", \" }}\n"
    "        {%- if not message.tool_call_id is defined or message.tool_call_id|length != 9 %}\n"
    "            {{- raise_exception(\"Tool call IDs should be alphanumeric strings with length 9!\") }}\n"
    "        {%- endif %}\n"
    "        {{- '\"call_id\": \"' + message.tool_call_id + '\"}[/TOOL_RESULTS]' }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception(\"Only user and assistant roles are supported, with the exception of an i"
    "nitial optional system message!\") }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n";

static const char MISTRAL_V3_CONV_OUT[] =
    "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] You are a he"
    "lpful assistant\n"
    "\n"
    "Another question[/INST]";

static const char MISTRAL_V3_NOSYS_OUT[] =
    "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>[INST] Another ques"
    "tion[/INST]";

static void check_long(const char *tmpl, const char *bos, const char *eos, const char *name, const char *conv_out,
                       const char *nosys_out) {
    loom_chat_template *c = make(tmpl, bos, eos, name);
    expect_render(c, CONV, 6, true, conv_out);
    expect_render(c, CONV + 1, 5, true, nosys_out);
    cr_assert(renders_bos(c, CONV, 6));
    loom_chat_template_free(c);
}

Test(long_templates, llama31) {
    check_long(LLAMA31, "<|begin_of_text|>", "<|eot_id|>", "llama3.1", LLAMA31_CONV_OUT, LLAMA31_NOSYS_OUT);
    /* a tool result: the template writes a string content with tojson */
    loom_chat_template *c = make(LLAMA31, "<|begin_of_text|>", "<|eot_id|>", "llama3.1");
    const loom_chat_msg m[] = {{"user", "q"}, {"tool", "r"}};
    expect_render(c, m, 2, true,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December "
                  "2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nq<|eot_id|>"
                  "<|start_header_id|>ipython<|end_header_id|>\n\n\"r\"<|eot_id|><|start_header_id|>assistant"
                  "<|end_header_id|>\n\n");
    loom_chat_template_free(c);
}

Test(long_templates, mistral_v3_and_nemo) {
    check_long(MISTRAL_NEMO, "<s>", "</s>", "mistral-v3-tekken", MISTRAL_NEMO_CONV_OUT, MISTRAL_NEMO_NOSYS_OUT);
    check_long(MISTRAL_V3, "<s>", "</s>", "mistral-v3", MISTRAL_V3_CONV_OUT, MISTRAL_V3_NOSYS_OUT);
}

/* The tool-call syntax each template teaches (tools.h reads the replies so),
 * on llama.cpp's templates (launch/fetch-model.sh --vocab unpacks them). */
Test(tool_syntax, of_llama_cpp_templates) {
    static const struct {
        const char *file;
        loom_tool_syntax want;
    } cases[] = {
        {"Qwen3-Coder.jinja", LOOM_TOOLS_XML},
        {"Qwen3.5-4B.jinja", LOOM_TOOLS_XML},
        {"Qwen-Qwen2.5-7B-Instruct.jinja", LOOM_TOOLS_HERMES},
        {"Qwen-Qwen3-0.6B.jinja", LOOM_TOOLS_HERMES},
        {"GLM-4.6.jinja", LOOM_TOOLS_GLM},
        {"moonshotai-Kimi-K2.jinja", LOOM_TOOLS_KIMI},
        {"deepseek-ai-DeepSeek-V3.1.jinja", LOOM_TOOLS_DEEPSEEK},
        {"Mistral-Small-3.2-24B-Instruct-2506.jinja", LOOM_TOOLS_MISTRAL},
        {"meta-llama-Llama-3.1-8B-Instruct.jinja", LOOM_TOOLS_LLAMA3},
        {"google-gemma-2-2b-it.jinja", LOOM_TOOLS_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/templates/%s", LOOM_CACHE_DIR, cases[i].file);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "needs %s (launch/fetch-model.sh --vocab)", path);
        char *text = malloc(1 << 20);
        size_t n = fread(text, 1, (1 << 20) - 1, f);
        fclose(f);
        loom_chat_template *c = NULL;
        OK(loom_chat_template_create(text, n, "<s>", "</s>", &c));
        cr_assert_eq(loom_chat_template_tool_syntax(c), cases[i].want, "%s: syntax %d, want %d", cases[i].file,
                     loom_chat_template_tool_syntax(c), cases[i].want);
        loom_chat_template_free(c);
        free(text);
    }
}
