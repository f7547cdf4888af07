"""End-to-end checks of `loom serve` with the openai client and raw HTTP.

Run by tests/e2e/serve.sh against a running server:
    serve_client.py MODE --base http://127.0.0.1:PORT [--reference-cmd "..."]
MODE:
  full     every endpoint on one rank: chat and completions, streaming or
           not, greedy output equal to `loom generate`, usage, logprobs,
           stop strings split across tokens, bad requests, 32 streams of
           which half disconnect (every KV block comes back)
  cluster  the same generation checks, fewer of them (a multi-rank server)
  auth     a server started with --api-key: 401 without it, 200 with it
  queue    a server with --sequences 1 --max-queue 2: overflow gives 429
  tools, tools-llama3, tools-mistral, think, think-off, harmony, harmony-off, harmony-call
           scripted models (tests/script_model.c): tool calls, reasoning and
           gpt-oss harmony replies parsed out of a model's text
  asan     a short mixed load on the sanitizer build
Exits non-zero with a message on the first failure.
"""
import argparse
import http.client
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

import openai

ARGS = None


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def ok(msg):
    print("ok: " + msg, flush=True)


def check(cond, msg):
    if not cond:
        fail(msg)


def at_once(fn, n):
    """[fn(0), ..., fn(n - 1)], each call on its own thread, all running together."""
    got = [None] * n

    def run(i):
        got[i] = fn(i)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(600)
    return got


def conn():
    u = urllib.parse.urlparse(ARGS.base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=600)


def raw(method, path, body=None, headers=None):
    """(status, headers dict, body bytes) of one request."""
    c = conn()
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def client(key="none"):
    return openai.OpenAI(base_url=ARGS.base + "/v1", api_key=key, max_retries=0, timeout=600)


def model_name():
    return client().models.list().data[0].id


def reference(prompt, chat, max_tokens, extra=()):
    """loom generate's greedy text for the same prompt (the reference command)."""
    cmd = ARGS.reference_cmd.split() + ["--prompt", prompt, "--temperature", "0", "--max-tokens",
                                        str(max_tokens), "--json"] + list(extra)
    if chat:
        cmd.append("--chat")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    check(out.returncode == 0, "reference generate failed: " + out.stderr[-300:])
    o = json.loads(out.stdout.splitlines()[0])
    return o["text"], o["stop_reason"], len(o["tokens"])


MSG = "Name three rivers in Europe."
PROMPT = "The capital of France is"


def test_greedy_equals_generate(cl, name, n=24):
    ref_text, ref_stop, ref_n = reference(MSG, True, n)
    r = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": MSG}], max_tokens=n,
                                   temperature=0)
    got = r.choices[0].message.content
    check(got == ref_text, "chat: %r, loom generate: %r" % (got, ref_text))
    check(r.choices[0].finish_reason == ref_stop, "finish %s vs %s" % (r.choices[0].finish_reason, ref_stop))
    check(r.usage.completion_tokens == ref_n, "completion_tokens %d vs %d" % (r.usage.completion_tokens, ref_n))
    check(r.choices[0].message.role == "assistant" and r.object == "chat.completion", "response shape")
    # content as text parts (the model's template concatenates strings): the texts joined by newlines
    words = MSG.split(" ", 1)
    parts = [{"type": "text", "text": words[0]}, {"type": "text", "text": words[1]}]
    st, _, d = raw("POST", "/apply-template", {"messages": [{"role": "user", "content": parts}]})
    check(st == 200 and words[0] + "\n" + words[1] in json.loads(d)["prompt"], "parts joined: %s %r" % (st, d[:200]))
    r = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": [{"type": "text", "text": MSG}]}],
                                   max_tokens=n, temperature=0)
    check(r.choices[0].message.content == ref_text, "one text part: %r vs %r" % (r.choices[0].message.content, ref_text))
    ref_c, _, _ = reference(PROMPT, False, n)
    c = cl.completions.create(model=name, prompt=PROMPT, max_tokens=n, temperature=0)
    check(c.choices[0].text == ref_c, "completion %r vs %r" % (c.choices[0].text, ref_c))
    check(c.usage.prompt_tokens > 0 and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens,
          "usage adds up")
    ok("greedy chat (content a string or a text part) and completion equal loom generate")
    return got, ref_c


def test_streams(cl, name, chat_text, comp_text, n=24):
    chunks = list(cl.chat.completions.create(model=name, messages=[{"role": "user", "content": MSG}], max_tokens=n,
                                             temperature=0, stream=True, stream_options={"include_usage": True}))
    check(chunks[0].choices[0].delta.role == "assistant", "first chunk carries the role")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == chat_text, "streamed chat %r vs %r" % (text, chat_text))
    fins = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(len(fins) == 1, "one chunk carries finish_reason: %s" % fins)
    check(chunks[-1].choices == [] and chunks[-1].usage is not None, "the usage chunk comes last, without choices")
    check(all(c.usage is None for c in chunks[:-1]), "other chunks have usage null")
    toks = list(cl.completions.create(model=name, prompt=PROMPT, max_tokens=n, temperature=0, stream=True))
    text = "".join(c.choices[0].text for c in toks)
    check(text == comp_text, "streamed completion %r vs %r" % (text, comp_text))
    ok("streams equal the whole responses; role, finish and usage chunks as OpenAI sends them")
    return [c.choices[0].text for c in toks]


def test_n_choices(cl, name):
    msgs = [{"role": "user", "content": MSG}]
    r = cl.chat.completions.create(model=name, messages=msgs, n=3, max_tokens=12, temperature=1.2, seed=11)
    texts = [c.message.content for c in r.choices]
    check([c.index for c in r.choices] == [0, 1, 2] and len(set(texts)) > 1, "n=3: %r" % texts)
    one = cl.chat.completions.create(model=name, messages=msgs, max_tokens=1).usage.prompt_tokens
    check(r.usage.prompt_tokens == one and 3 <= r.usage.completion_tokens <= 36,
          "usage: the prompt counts once, every choice's tokens: %r" % r.usage)
    again = cl.chat.completions.create(model=name, messages=msgs, n=3, max_tokens=12, temperature=1.2, seed=11)
    check([c.message.content for c in again.choices] == texts, "the same seed gives the same choices")
    chunks = list(cl.chat.completions.create(model=name, messages=msgs, n=2, max_tokens=6, temperature=1.0,
                                             stream=True))
    roles = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].delta.role)
    fins = sorted(c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason)
    check(roles == [0, 1] and fins == [0, 1], "stream n=2: roles %s, finishes %s" % (roles, fins))
    c = cl.completions.create(model=name, prompt=[PROMPT, "Once upon a time"], n=2, max_tokens=4, temperature=0)
    texts = [x.text for x in sorted(c.choices, key=lambda x: x.index)]
    check(len(texts) == 4 and texts[0] == texts[1] and texts[2] == texts[3], "2 prompts x n 2 greedy: %r" % texts)
    # a prompt's later choices start once the first has its first token: they find its KV blocks
    before = metric(metrics(), "loom_prefix_cache_hits_total")
    c = cl.completions.create(model=name, prompt="river " * 300, n=3, max_tokens=2, temperature=1)
    hits = metric(metrics(), "loom_prefix_cache_hits_total") - before
    check(hits >= 2 * (c.usage.prompt_tokens - 32), "n=3 over %d prompt tokens: %d prefix-cache hits"
          % (c.usage.prompt_tokens, hits))
    ok("n choices: chat and completions, whole and streamed, seeded; the prompt computed once")


def test_structured_output(cl, name):
    import typing
    import pydantic  # comes with the openai client

    # bounded strings, lists and integers: the reply ends even where another CPU's greedy path differs
    class Pet(pydantic.BaseModel):
        kind: typing.Literal["cat", "dog"]
        age: int = pydantic.Field(ge=0, le=30)

    class Person(pydantic.BaseModel):
        name: str = pydantic.Field(max_length=20)
        age: typing.Optional[int] = pydantic.Field(ge=0, le=120)
        pets: typing.List[Pet] = pydantic.Field(max_length=3)

    parse = getattr(cl.chat.completions, "parse", None) or cl.beta.chat.completions.parse
    r = parse(model=name, messages=[{"role": "user", "content": "Describe a person with pets as JSON."}],
              response_format=Person, max_tokens=600, temperature=0)
    check(r.choices[0].finish_reason == "stop" and isinstance(r.choices[0].message.parsed, Person),
          "parse(response_format=Person): %s %r" % (r.choices[0].finish_reason, r.choices[0].message.content))
    ok("structured output: the openai client's parse() with a Pydantic model: %r" % r.choices[0].message.parsed)

    # patterns (Pydantic's Field(pattern=...)): Pydantic validates the reply with its own regex engine
    import datetime
    import uuid

    class Flight(pydantic.BaseModel):
        code: str = pydantic.Field(pattern=r"^[A-Z]{2}\d{3,4}$")
        date: str = pydantic.Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])-\d{2}$")
        departs: datetime.datetime  # format date-time
        booking: uuid.UUID  # format uuid

    r = parse(model=name, messages=[{"role": "user", "content": "A flight as JSON."}], response_format=Flight,
              max_tokens=200, temperature=0)
    f = r.choices[0].message.parsed
    check(r.choices[0].finish_reason == "stop" and isinstance(f, Flight), "parse(Flight): %r" % r.choices[0].message.content)
    ok("structured output with patterns and formats (date-time, uuid): %r" % f)


def test_forced_tool_calls(cl, name):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
                 "type": "object", "properties": {"city": {"type": "string", "maxLength": 40},
                                                  "days": {"type": "integer", "minimum": 1, "maximum": 30}},
                 "required": ["city", "days"], "additionalProperties": False}}},
             {"type": "function", "function": {"name": "get_time", "parameters": {
                 "type": "object", "properties": {"zone": {"type": "string", "maxLength": 40}}, "required": ["zone"],
                 "additionalProperties": False}}}]
    msgs = [{"role": "user", "content": "What is the weather in Paris for 3 days?"}]

    def valid(call, want=None):
        args = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            return want in (None, "get_weather") and set(args) == {"city", "days"} and isinstance(args["days"], int)
        return want is None and call.function.name == "get_time" and set(args) == {"zone"}
    for tc, finish in (({"type": "function", "function": {"name": "get_weather"}}, "stop"), ("required", "tool_calls")):
        want = tc["function"]["name"] if isinstance(tc, dict) else None
        r = cl.chat.completions.create(model=name, messages=msgs, tools=tools, tool_choice=tc, temperature=0,
                                       max_tokens=400)
        m = r.choices[0].message
        check(r.choices[0].finish_reason == finish and m.content is None and m.tool_calls and
              all(valid(t, want) for t in m.tool_calls), "tool_choice %r: %s %r" % (tc, r.choices[0].finish_reason, m))
        chunks = list(cl.chat.completions.create(model=name, messages=msgs, tools=tools, tool_choice=tc, temperature=0,
                                                 max_tokens=400, stream=True))
        calls = [t for c in chunks if c.choices and c.choices[0].delta.tool_calls for t in c.choices[0].delta.tool_calls]
        check([(t.function.name, t.function.arguments) for t in calls] ==
              [(t.function.name, t.function.arguments) for t in m.tool_calls], "streamed %r" % calls)
    expect_error(400, "POST", "/v1/chat/completions", {"messages": msgs, "tools": tools, "tool_choice": {
        "type": "function", "function": {"name": "nope"}}}, "tool_choice")
    ok("tool_choice required / a named function: the reply held to the calls' schema, whole and streamed")


def test_logit_bias(cl, name, n=6):
    tok = json.loads(raw("POST", "/tokenize", {"content": " river", "add_special_tokens": False})[2])["tokens"][0]
    piece = json.loads(raw("POST", "/detokenize", {"tokens": [tok]})[2])["content"]
    c = cl.completions.create(model=name, prompt=PROMPT, max_tokens=n, temperature=0, logit_bias={str(tok): 100})
    check(c.choices[0].text == piece * n, "+100 on %d (%r): %r" % (tok, piece, c.choices[0].text))
    first = cl.completions.create(model=name, prompt=PROMPT, max_tokens=1, temperature=0).choices[0].text
    ids = json.loads(raw("POST", "/tokenize", {"content": first, "add_special_tokens": False})[2])["tokens"]
    check(len(ids) == 1, "greedy's first token %r tokenizes as %s" % (first, ids))
    c = cl.completions.create(model=name, prompt=PROMPT, max_tokens=1, temperature=0, logit_bias={str(ids[0]): -100})
    check(c.choices[0].text != first, "-100 on greedy's first token %d (%r) left it" % (ids[0], first))
    expect_error(400, "POST", "/v1/completions", {"prompt": PROMPT, "logit_bias": {"99999999": 1}}, "logit_bias")
    ok("logit_bias: +100 forces a token, -100 bans it, ids outside the vocabulary 400")


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
RAW = 'Checking.<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}</tool_call>'


def test_tool_calls(cl, name):
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0)
    m, ch = r.choices[0].message, r.choices[0]
    check(ch.finish_reason == "tool_calls", "finish_reason %r" % ch.finish_reason)
    check(m.content == "Checking.", "content %r" % m.content)
    check(len(m.tool_calls) == 1 and m.tool_calls[0].type == "function" and m.tool_calls[0].id.startswith("call_"),
          "tool_calls %r" % m.tool_calls)
    f = m.tool_calls[0].function
    check(f.name == "get_weather" and json.loads(f.arguments) == {"city": "Paris", "days": 2}, "call %r" % f)
    chunks = list(cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    fins = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    check(text == "Checking." and fins == ["tool_calls"], "stream: content %r, finish %s" % (text, fins))
    check(len(calls) == 1 and calls[0].index == 0 and calls[0].id.startswith("call_") and
          calls[0].function.name == "get_weather" and
          json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 2}, "stream calls %r" % calls)
    # the call goes back into the conversation with its result
    msgs2 = msgs + [{"role": "assistant", "content": None, "tool_calls": [m.tool_calls[0].model_dump()]},
                    {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "{\"sky\": \"clear\"}"}]
    st, _, _ = raw("POST", "/v1/chat/completions", {"messages": msgs2, "tools": TOOLS, "max_tokens": 2})
    check(st == 200, "a conversation with the call and its result: %d" % st)
    # no tools, or tool_choice none: the text as the model wrote it
    for extra in ({}, {"tools": TOOLS, "tool_choice": "none"}):
        r = cl.chat.completions.create(model=name, messages=msgs, temperature=0, **extra)
        check(r.choices[0].message.content == RAW and not r.choices[0].message.tool_calls and
              r.choices[0].finish_reason == "stop", "%s: %r" % (extra, r.choices[0].message))
    ok("tool calls: parsed from a Hermes template's model (whole and streamed), text as written without tools")


def test_tool_calls_llama3(cl, name):
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0)
    m = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls" and m.content is None and len(m.tool_calls) == 1 and
          m.tool_calls[0].function.name == "get_weather" and
          json.loads(m.tool_calls[0].function.arguments) == {"city": "Paris", "days": 2}, "llama3: %r" % m)
    chunks = list(cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0, stream=True))
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == "" and len(calls) == 1 and calls[0].function.name == "get_weather", "llama3 stream: %r %r" % (text, calls))
    r = cl.chat.completions.create(model=name, messages=msgs, temperature=0)
    check(r.choices[0].message.content == '{"name": "get_weather", "parameters": {"city": "Paris", "days": 2}}' and
          r.choices[0].finish_reason == "stop", "llama3 without tools: %r" % r.choices[0].message)
    ok("tool calls: a Llama 3.1-style template's bare JSON reply, whole and streamed")


def test_tool_calls_mistral(cl, name):
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0)
    m = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls" and m.content == "Checking." and len(m.tool_calls) == 1 and
          m.tool_calls[0].function.name == "get_weather" and
          json.loads(m.tool_calls[0].function.arguments) == {"city": "Paris", "days": 2}, "mistral: %r" % m)
    chunks = list(cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0, stream=True))
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == "Checking." and len(calls) == 1 and calls[0].function.name == "get_weather",
          "mistral stream: %r %r" % (text, calls))
    ok("tool calls: a Mistral-style template's [TOOL_CALLS]NAME[ARGS]{...} (control tokens), whole and streamed")


def test_tool_calls_xml(cl, name):
    """Qwen3-Coder's calls: each value read as the tool declares it (days an integer, city a string)."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer"}}}}}]
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, tools=tools, temperature=0)
    m = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls" and m.content == "Checking." and len(m.tool_calls) == 1 and
          m.tool_calls[0].function.name == "get_weather" and
          json.loads(m.tool_calls[0].function.arguments) == {"city": "Paris", "days": 2}, "xml: %r" % m)
    chunks = list(cl.chat.completions.create(model=name, messages=msgs, tools=tools, temperature=0, stream=True))
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == "Checking." and len(calls) == 1 and json.loads(calls[0].function.arguments) == {"city": "Paris", "days": 2},
          "xml stream: %r %r" % (text, calls))
    untyped = cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0).choices[0].message
    check(json.loads(untyped.tool_calls[0].function.arguments) == {"city": "Paris", "days": "2"},
          "a parameter the tool does not declare stays text: %r" % untyped)
    ok("tool calls: a Qwen3-Coder-style template's <function=NAME><parameter=K>, typed by the tool's schema, whole and "
       "streamed")


def test_reasoning(cl, name, on, tags=("<think>", "</think>")):
    msgs = [{"role": "user", "content": "Weather?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, temperature=0)
    m = r.choices[0].message
    got = (getattr(m, "reasoning_content", None), m.content)
    want = ("Let me check the sky.", "It is sunny.") if on else (None, tags[0] + "Let me check the sky." + tags[1] +
                                                                   "It is sunny.")
    check(got == want, "reasoning %s: %r" % ("on" if on else "off", got))
    chunks = list(cl.chat.completions.create(model=name, messages=msgs, temperature=0, stream=True))
    rs = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check((rs or None, text) == want, "streamed reasoning %s: %r" % ("on" if on else "off", (rs, text)))
    ok("a thinking model (%s): %s" % (tags[0], "reasoning_content apart from content, whole and streamed" if on else
                                      "--no-reasoning keeps the block in the content"))


def test_json_mode(cl, name):
    # the scripted answer is not JSON: JSON mode makes the model leave it for the best tokens that keep the text
    # a prefix of one object (here: the lowest ids, whitespace then '{' then a string), ending at max_tokens
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=200,
                                   response_format={"type": "json_object"})
    text = r.choices[0].message.content
    check(text.lstrip().startswith('{') and "Checking" not in text and r.choices[0].finish_reason == "length",
          "json_object: %r (%s)" % (text[:80], r.choices[0].finish_reason))
    try:
        json.loads(text + '": 0}')  # here: inside the first key
    except ValueError:
        fail("json_object: %r is not the start of an object" % text)
    # a schema: the first key can only be "city", its value a string
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
              "additionalProperties": False}
    r = cl.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=300,
                                   response_format={"type": "json_schema",
                                                    "json_schema": {"name": "w", "schema": schema, "strict": True}})
    text = "".join(r.choices[0].message.content.split())
    check(text.startswith('{"city":"'), "json_schema: %r" % r.choices[0].message.content[:200])
    expect_error(400, "POST", "/v1/chat/completions",
                 {"messages": msgs, "response_format": {"type": "json_schema", "json_schema": {
                     "name": "w", "schema": {"type": "integer", "multipleOf": 3}}}}, "response_format")
    ok("response_format json_object / json_schema keep the reply a prefix of what they accept")


def test_logprobs(cl, name):
    r = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": MSG}], max_tokens=8,
                                   temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    check(len(content) == r.usage.completion_tokens, "one logprobs entry per token")
    for e in content:
        check(e.logprob <= 0 and len(e.top_logprobs) == 3, "logprob <= 0 and 3 alternatives")
        check(abs(e.top_logprobs[0].logprob - e.logprob) < 1e-4, "greedy picks the most likely token")
        check(e.top_logprobs[0].logprob >= e.top_logprobs[1].logprob >= e.top_logprobs[2].logprob, "sorted")
        check(bytes(e.bytes).decode("utf-8", "replace") == e.token or len(e.bytes) > 0, "bytes")
    c = cl.completions.create(model=name, prompt=PROMPT, max_tokens=5, temperature=0, logprobs=2)
    lp = c.choices[0].logprobs
    check(len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == 5,
          "completions logprobs: four lists of 5")
    check(all(len(t) <= 2 for t in lp.top_logprobs), "at most 2 alternatives each")
    ok("logprobs in the chat and completions shapes")


def test_echo(cl, name):
    """completions' echo: the prompt's text and log-probabilities lead the choice. lm-evaluation-harness's
    log-likelihood request (token ids, max_tokens 0, logprobs 1) first."""
    st, _, d = raw("POST", "/tokenize", {"prompt": PROMPT + " Paris, and that of Italy is Rome."})
    ids = json.loads(d)["tokens"]
    st, _, d = raw("POST", "/v1/completions", {"model": name, "prompt": ids, "max_tokens": 0, "echo": True,
                                               "logprobs": 1, "temperature": 0})
    check(st == 200, "echo of token ids: %d %r" % (st, d[:300]))
    r = json.loads(d)
    c, lp = r["choices"][0], r["choices"][0]["logprobs"]
    check(len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(ids),
          "one entry per prompt token: %d for %d" % (len(lp["tokens"]), len(ids)))
    check(lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None, "nothing comes before the first token")
    check(all(x <= 0 for x in lp["token_logprobs"][1:]), "log-probabilities <= 0")
    check(all(max(t.values()) >= x - 1e-4 for t, x in zip(lp["top_logprobs"][1:], lp["token_logprobs"][1:])),
          "the top alternative is at least as likely as the prompt's token")
    check(c["finish_reason"] == "length" and r["usage"]["completion_tokens"] == 0 and
          r["usage"]["prompt_tokens"] == len(ids), "echo alone: %r %r" % (c["finish_reason"], r["usage"]))
    # each position's log-probability is what generating that token after the tokens before it gives
    for k in (len(ids) // 2, len(ids) - 1):
        g = cl.completions.create(model=name, prompt=ids[:k], max_tokens=1, temperature=0, logprobs=1)
        top = max(lp["top_logprobs"][k].items(), key=lambda kv: kv[1])
        check(g.choices[0].text == top[0] and abs(g.choices[0].logprobs.token_logprobs[0] - top[1]) < 2e-3,
              "position %d: generated %r %.5f, echo's likeliest %r %.5f" % (
                  k, g.choices[0].text, g.choices[0].logprobs.token_logprobs[0], top[0], top[1]))
    # echo before generated text, whole and streamed
    plain = cl.completions.create(model=name, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=1)
    both = cl.completions.create(model=name, prompt=PROMPT, max_tokens=4, temperature=0, logprobs=1, echo=True)
    t = both.choices[0].text
    check(t == PROMPT + plain.choices[0].text, "echo + generation: %r vs %r" % (t, plain.choices[0].text))
    blp = both.choices[0].logprobs
    check(blp.token_logprobs[-4:] == plain.choices[0].logprobs.token_logprobs and blp.token_logprobs[0] is None,
          "the generated tokens' log-probabilities follow the prompt's")
    chunks = list(cl.completions.create(model=name, prompt=PROMPT, max_tokens=4, temperature=0, echo=True,
                                        stream=True))
    check(chunks[0].choices[0].text == PROMPT and "".join(ch.choices[0].text for ch in chunks) == t,
          "streamed echo: %r" % [ch.choices[0].text for ch in chunks])
    ok("echo: the prompt's log-probabilities (%d tokens, as generating each gives), before generated text, "
       "whole and streamed" % len(ids))


def test_stop(cl, name, pieces):
    """A stop string made of the end of one token and the start of the next."""
    k = next((i for i in range(2, len(pieces) - 1) if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2), None)
    check(k is not None, "no two long tokens in a row to build a stop string from: %r" % pieces)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    full = "".join(pieces)
    want = full[:full.index(stop)]
    for stream in (False, True):
        if stream:
            chunks = list(cl.completions.create(model=name, prompt=PROMPT, max_tokens=len(pieces), temperature=0,
                                                stop=[stop, "never-seen"], stream=True))
            got = "".join(c.choices[0].text for c in chunks)
            fin = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
            check(fin == ["stop"], "finish %s" % fin)
        else:
            c = cl.completions.create(model=name, prompt=PROMPT, max_tokens=len(pieces), temperature=0, stop=stop)
            got, fin = c.choices[0].text, c.choices[0].finish_reason
            check(fin == "stop", "finish %s" % fin)
        check(got == want, "stop %r (stream %s): %r, expected %r" % (stop, stream, got, want))
    ok("stop string %r split across tokens: text ends before it, streaming or not" % stop)


def expect_error(status, method, path, body, param=None, code=None, headers=None):
    st, h, data = raw(method, path, body, headers)
    check(st == status, "%s %s %r: status %d, expected %d (%s)" % (method, path, str(body)[:60], st, status, data[:200]))
    try:
        e = json.loads(data)["error"]
    except Exception:
        fail("%s %s: not an OpenAI error envelope: %r" % (method, path, data[:200]))
    check(isinstance(e.get("message"), str) and "type" in e and "param" in e and "code" in e, "envelope fields")
    if param:
        check(e["param"] == param, "param %r, expected %r" % (e["param"], param))
    if code:
        check(e["code"] == code, "code %r, expected %r" % (e["code"], code))
    return h


def test_bad_requests(name):
    chat = "/v1/chat/completions"
    m = [{"role": "user", "content": "hi"}]
    corpus = [
        (400, "POST", chat, "{not json", None, None),
        (400, "POST", chat, b'{"messages":[{"role":"user","content":"\xff\xfe"}]}', None, None),
        (400, "POST", chat, {"messages": "hi"}, "messages", None),
        (400, "POST", chat, {}, "messages", None),
        (400, "POST", chat, {"messages": m, "temperature": "warm"}, "temperature", None),
        (400, "POST", chat, {"messages": m, "temperature": -1}, "temperature", None),
        (400, "POST", chat, {"messages": m, "max_tokens": -5}, "max_tokens", None),
        (400, "POST", chat, {"messages": m, "n": 65}, "n", None),
        (400, "POST", chat, {"messages": m, "suffix": "x"}, "suffix", None),
        (400, "POST", "/v1/completions", {"prompt": "def f(", "suffix": "):"}, "suffix", None),  # no FIM tokens
        (400, "POST", "/v1/completions", {"prompt": [1, 2], "suffix": "x"}, "suffix", None),
        (400, "POST", chat, {"messages": m, "top_logprobs": 50, "logprobs": True}, "top_logprobs", None),
        (400, "POST", chat, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages", None),
        (400, "POST", chat, {"messages": m, "response_format": {"type": "json_schema"}}, "response_format", None),
        (400, "POST", chat, {"messages": m, "response_format": {"type": "xml"}}, "response_format", None),
        (400, "POST", chat, {"messages": m, "tool_choice": "required"}, "tool_choice", None),
        (400, "POST", chat, {"messages": m, "tool_choice": "always"}, "tool_choice", None),
        (404, "POST", chat, {"messages": m, "model": "no-such-model"}, "model", "model_not_found"),
        (400, "POST", chat, {"messages": [{"role": "user", "content": "word " * 3000}]}, None,
         "context_length_exceeded"),
        (400, "POST", "/v1/completions", {"prompt": [10 ** 9]}, "prompt", None),
        (400, "POST", "/v1/completions", {"prompt": ""}, "prompt", None),
        (400, "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 0}, "max_tokens", None),
        (400, "POST", chat, {"messages": m, "echo": True}, "echo", None),
        (404, "POST", "/v1/nothing", {}, None, None),
        (405, "GET", chat, None, None, None),
        (405, "POST", "/health", {}, None, None),
        (400, "POST", "/tokenize", {"nothing": 1}, None, None),
        (400, "POST", "/detokenize", {"tokens": [-1]}, "tokens", None),
    ]
    for status, method, path, body, param, code in corpus:
        expect_error(status, method, path, body, param, code)
        st, _, data = raw("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "temperature": 0})
        check(st == 200, "a normal request after a bad one: %d %r" % (st, data[:200]))
    expect_error(413, "POST", "/v1/completions", b'{"prompt":"' + b"a" * (9 << 20) + b'"}', None, "request_too_large")
    st, _, _ = raw("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2})
    check(st == 200, "a normal request after a 413")
    ok("%d bad requests answered with their status and OpenAI's envelope; the server kept serving" % (len(corpus) + 1))


def random_requests(n, seed):
    """n chat / completion / Responses API bodies mixing every request field with odd values (schemas, tools, biases, n,
    parts, junk of every JSON type), fixed seed: each must get 200 or 400, never a 5xx or a dropped
    connection."""
    rng = random.Random(seed)

    def junk(d=0):
        r = rng.random()
        if d > 2 or r < 0.3:
            return rng.choice([None, True, 0, -1, 2 ** 40, 1.5, 1e308, "", "x", "\u00e9", "<tool_call>", "}", "a" * 300])
        if r < 0.6:
            return [junk(d + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["type", "text", "name", "role", "content", "items", "$ref", "enum", "x"]): junk(d + 1)
                for _ in range(rng.randint(0, 3))}

    def schema(d=0):
        t = rng.choice(["object", "array", "string", "integer", "number", "boolean", "null", "enum", "anyOf", "ref"])
        t = t if d < 3 else rng.choice(["string", "integer", "null"])
        return {"object": lambda: {"type": "object", "properties": {"p%d" % i: schema(d + 1) for i in range(rng.randint(0, 3))},
                                   "additionalProperties": rng.choice([True, False, {"type": "integer"}])},
                "array": lambda: {"type": "array", "items": schema(d + 1), "minItems": rng.randint(0, 2),
                                  "maxItems": rng.randint(0, 4)},
                "enum": lambda: {"enum": [junk(2) for _ in range(rng.randint(1, 3))]},
                "anyOf": lambda: {"anyOf": [schema(d + 1) for _ in range(rng.randint(1, 3))]},
                "ref": lambda: {"$ref": "#"},
                "integer": lambda: {"type": "integer", "minimum": rng.randint(-50, 50), "maximum": rng.randint(-50, 99)},
                "string": lambda: {"type": "string", "minLength": rng.randint(0, 3), "maxLength": rng.randint(0, 6)},
                }.get(t, lambda: {"type": t})()
    codes = {}
    for _ in range(n):
        b = {"messages": [{"role": "user", "content": rng.choice(["hi", [{"type": "text", "text": "a"}], junk()])}],
             "prompt": rng.choice(["hi", [5, 6, 7], junk()]), "max_tokens": rng.choice([0, 1, 4, 12])}
        for k in rng.sample(["n", "logit_bias", "response_format", "tools", "tool_choice", "stream", "stop", "seed",
                             "logprobs", "echo", "grammar", "guided_choice", "dry_multiplier", "dry_sequence_breakers",
                             "xtc_probability", "typical_p"], rng.randint(0, 6)):
            b[k] = {"n": lambda: rng.choice([1, 2, 0, junk()]),
                    "logit_bias": lambda: rng.choice([{str(rng.randint(0, 60000)): rng.uniform(-100, 100)}, junk()]),
                    "response_format": lambda: rng.choice([{"type": "json_object"}, junk()] +
                                                          [{"type": "json_schema", "json_schema": {"schema": schema()}}] * 3),
                    "tools": lambda: rng.choice([[{"type": "function", "function": {"name": "f", "parameters": schema()}}],
                                                 junk()]),
                    "tool_choice": lambda: rng.choice(["auto", "none", "required", {"type": "function", "function": {
                        "name": "f"}}, junk()]),
                    "stream": lambda: rng.choice([True, False]),
                    "grammar": lambda: rng.choice(['root ::= [a-z]+ "."', 'root ::= "{" root? "}"', "root ::= r\nr ::= root",
                                                   'root ::= ("\u00e9" | [^a]){2,3}', "root ::= \"x", junk()]),
                    "guided_choice": lambda: rng.choice([["a", "\u00e9\"\\"], [junk()], junk()]),
                    "dry_multiplier": lambda: rng.choice([0.8, 3.0, junk()]),
                    "dry_sequence_breakers": lambda: rng.choice([["\n"], ["ab", "\u00e9", "x" * 60], junk()]),
                    "xtc_probability": lambda: rng.choice([0.5, 1.0, junk()]),
                    "typical_p": lambda: rng.choice([0.7, 0.01, junk()]),
                    "echo": lambda: rng.choice([True, True, False, junk()]),
                    "logprobs": lambda: rng.choice([True, 1, 3, junk()])}.get(k, junk)()
        path = rng.choice(["/v1/chat/completions", "/v1/completions", "/v1/responses"])
        if path == "/v1/responses":  # the same fields in the Responses API's shape
            b["input"] = rng.choice([b.pop("messages"), "hi", junk()])
            b["max_output_tokens"] = b.pop("max_tokens")
            if isinstance(b.get("tools"), list):
                b["tools"] = [dict(t.get("function", {}), type="function") if isinstance(t, dict) else t for t in b["tools"]]
            if isinstance(b.get("response_format"), dict):
                b["text"] = {"format": b.pop("response_format")}
        st, _, _ = raw("POST", path, b)
        codes[st] = codes.get(st, 0) + 1
        check(st in (200, 400), "a random request got %d: %s" % (st, json.dumps(b)[:300]))
    check(codes.get(200, 0) > n // 20, "too few random requests were served: %s" % codes)
    return codes


def test_token_endpoints():
    st, _, d = raw("POST", "/tokenize", {"content": "Hello world"})
    a = json.loads(d)
    st2, _, d2 = raw("POST", "/tokenize", {"prompt": "Hello world", "add_special_tokens": False})
    b = json.loads(d2)
    check(st == st2 == 200 and a["tokens"] == b["tokens"] and b["count"] == len(b["tokens"]), "tokenize shapes")
    st, _, d = raw("POST", "/detokenize", {"tokens": a["tokens"]})
    o = json.loads(d)
    check(st == 200 and o["content"] == "Hello world" and o["prompt"] == "Hello world", "detokenize: %r" % o)
    st, _, d = raw("POST", "/apply-template", {"messages": [{"role": "user", "content": "hi"}]})
    check(st == 200 and "hi" in json.loads(d)["prompt"], "apply-template")
    st, _, d = raw("GET", "/health")
    check(st == 200 and json.loads(d)["status"] == "ok", "health")
    ok("/tokenize and /detokenize in llama-server's and vLLM's shapes, /apply-template, /health")


def metrics():
    st, _, d = raw("GET", "/metrics")
    check(st == 200, "metrics")
    out = {}
    for line in d.decode().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        k, v = line.rsplit(" ", 1)
        out[k] = float(v)
    return out


def metric(m, name):
    return sum(v for k, v in m.items() if k == name or k.startswith(name + "{"))


def stream_client(name, prompt, drop_after, results, i):
    """Streams a completion with raw HTTP; closes the socket after drop_after events (0: read to the end)."""
    c = conn()
    body = json.dumps({"model": name, "prompt": prompt, "max_tokens": 40, "temperature": 0.7, "seed": i,
                       "stream": True, "ignore_eos": True})
    c.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        results[i] = "status %d" % r.status
        return
    events, finish = 0, None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        if line == b"data: [DONE]":
            break
        events += 1
        ch = json.loads(line[6:])["choices"]
        if ch and ch[0]["finish_reason"]:
            finish = ch[0]["finish_reason"]
        if drop_after and events >= drop_after:
            c.sock.shutdown(socket.SHUT_RDWR)
            c.close()
            results[i] = "dropped"
            return
    results[i] = finish


def test_disconnects(name, n=32):
    before = metrics()
    results = [None] * n
    threads = [threading.Thread(target=stream_client,
                                args=(name, "Story %d: once upon a time" % i, 3 if i % 2 else 0, results, i))
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    done = [r for i, r in enumerate(results) if i % 2 == 0]
    check(all(r == "length" for r in done), "the streams that stayed finished: %s" % done)
    check(all(r == "dropped" for i, r in enumerate(results) if i % 2), "droppers dropped: %s" % results)
    deadline = time.time() + 60
    while True:
        m = metrics()
        if metric(m, "loom_num_requests_running") == 0 and metric(m, "loom_kv_cache_usage_perc") == 0:
            break
        check(time.time() < deadline, "requests still running or KV blocks held 60 s after the clients left: %s" %
              {k: v for k, v in m.items() if "running" in k or "kv_cache" in k})
        time.sleep(0.2)
    aborted = metric(m, 'loom_request_success_total{model_name="%s",finished_reason="abort"}' % name) - \
        metric(before, 'loom_request_success_total{model_name="%s",finished_reason="abort"}' % name)
    check(aborted >= n // 2 - 2, "metrics count %d aborted requests, %d clients left" % (aborted, n // 2))
    ok("%d streams, half disconnected after 3 events: cancelled (metrics: %d aborts), every KV block back, the "
       "rest completed" % (n, aborted))


def test_metrics_names():
    m = metrics()
    for name in ("loom_num_requests_running", "loom_num_requests_waiting", "loom_kv_cache_usage_perc",
                 "loom_prompt_tokens_total", "loom_generation_tokens_total", "loom_num_preemptions_total",
                 "loom_prefix_cache_hits_total", "loom_time_to_first_token_seconds_count",
                 "loom_inter_token_latency_seconds_count", "loom_e2e_request_latency_seconds_count",
                 "loom_request_queue_time_seconds_count", "loom_rank_tp_collective_seconds_total",
                 "loom_rank_stage_transfer_seconds_total", "loom_rank_idle_ratio"):
        check(any(k == name or k.startswith(name + "{") for k in m), "/metrics lacks " + name)
    check(metric(m, "loom_generation_tokens_total") > 0, "tokens were counted")
    ok("/metrics has vLLM's serving metrics and loom's per-rank figures")


HARMONY_CALL_ARGS = '{"city": "Paris", "days": 2}'


def stream_parts(chunks):
    """(reasoning, content, tool calls, finish reasons, content deltas) of a streamed chat."""
    ch = [c.choices[0] for c in chunks if c.choices]
    rs = "".join(getattr(c.delta, "reasoning_content", None) or "" for c in ch)
    deltas = [c.delta.content for c in ch if c.delta.content]
    calls = [tc for c in ch if c.delta.tool_calls for tc in c.delta.tool_calls]
    return rs, "".join(deltas), calls, [c.finish_reason for c in ch if c.finish_reason], deltas


def test_harmony(cl, name, on):
    msgs = [{"role": "user", "content": "Weather?"}]
    want = (("Let me check the sky.", "It is sunny.") if on else
            (None, "<|channel|>analysis<|message|>Let me check the sky.<|end|>It is sunny."))
    r = cl.chat.completions.create(model=name, messages=msgs, temperature=0)
    m = r.choices[0].message
    got = (getattr(m, "reasoning_content", None), m.content, r.choices[0].finish_reason)
    check(got == want + ("stop",), "harmony %s: %r" % ("on" if on else "off", got))
    rs, text, calls, fins, deltas = stream_parts(
        list(cl.chat.completions.create(model=name, messages=msgs, temperature=0, stream=True)))
    check((rs or None, text, fins) == want + (["stop"],) and not calls,
          "harmony %s streamed: %r" % ("on" if on else "off", (rs, text, fins)))
    if on:
        check(not any("<|" in d for d in deltas), "a harmony tag in a content delta: %r" % deltas)
        # max_tokens inside the reasoning: reasoning so far, no tags in the content
        r = cl.chat.completions.create(model=name, messages=msgs, temperature=0, max_tokens=4)
        m = r.choices[0].message
        got = (getattr(m, "reasoning_content", None), m.content, r.choices[0].finish_reason)
        check(got == ("Let me check the sky.", "", "length"), "harmony cut short: %r" % (got,))
    ok("a gpt-oss (harmony) model: %s" % ("analysis as reasoning_content, final as content, whole, streamed and cut "
                                          "short" if on else "--no-reasoning keeps the analysis message in the content"))


def test_harmony_calls(cl, name):
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    r = cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0)
    m, ch = r.choices[0].message, r.choices[0]
    got = (getattr(m, "reasoning_content", None), m.content, ch.finish_reason)
    check(got == ("Need the weather.", "Checking.", "tool_calls"), "harmony call: %r" % (got,))
    check(len(m.tool_calls) == 1 and m.tool_calls[0].type == "function" and m.tool_calls[0].id.startswith("call_") and
          m.tool_calls[0].function.name == "get_weather" and m.tool_calls[0].function.arguments == HARMONY_CALL_ARGS,
          "harmony tool_calls %r" % m.tool_calls)
    rs, text, calls, fins, deltas = stream_parts(
        list(cl.chat.completions.create(model=name, messages=msgs, tools=TOOLS, temperature=0, stream=True)))
    check((rs, text, fins) == ("Need the weather.", "Checking.", ["tool_calls"]) and
          not any("<|" in d for d in deltas), "harmony call streamed: %r" % ((rs, deltas, fins),))
    check(len(calls) == 1 and calls[0].index == 0 and calls[0].id.startswith("call_") and
          calls[0].function.name == "get_weather" and calls[0].function.arguments == HARMONY_CALL_ARGS,
          "harmony stream calls %r" % calls)
    # without tools the call is not parsed: its text stays in the content
    r = cl.chat.completions.create(model=name, messages=msgs, temperature=0)
    m = r.choices[0].message
    check(m.content == "Checking." + HARMONY_CALL_ARGS and not m.tool_calls and r.choices[0].finish_reason == "stop",
          "harmony call without tools: %r" % m)
    ok("a gpt-oss (harmony) model's call to functions.get_weather: tool_calls after a preamble, whole and streamed")


def responses_stream(cl, name, **kw):
    """A streamed Responses API call: the event types, the text and reasoning deltas, the final response."""
    types, text, reasoning, final, seqs = [], "", "", None, []
    for ev in cl.responses.create(model=name, stream=True, **kw):
        types.append(ev.type)
        seqs.append(ev.sequence_number)
        if ev.type == "response.output_text.delta":
            text += ev.delta
        elif ev.type == "response.reasoning_text.delta":
            reasoning += ev.delta
        elif ev.type in ("response.completed", "response.incomplete", "response.failed"):
            final = ev.response
    check(seqs == list(range(len(seqs))), "sequence numbers %s" % seqs)
    check(types[:2] == ["response.created", "response.in_progress"] and final is not None, "events %s" % types)
    return types, text, reasoning, final


def test_responses(cl, name, chat_text):
    """POST /v1/responses with the openai client: the same greedy text as the chat endpoint, whole and
    streamed; input items, instructions, structured output, the limit as status incomplete; 400s."""
    r = cl.responses.create(model=name, input=MSG, max_output_tokens=24, temperature=0)
    check(r.output_text == chat_text, "responses: %r, chat: %r" % (r.output_text, chat_text))
    check(r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens" and r.usage.output_tokens == 24,
          "status %s %r usage %r" % (r.status, r.incomplete_details, r.usage))
    check(r.id.startswith("resp_") and r.object == "response" and r.output[0].type == "message" and
          r.output[0].role == "assistant" and r.usage.total_tokens == r.usage.input_tokens + 24, "shape %r" % r)
    types, text, _, final = responses_stream(cl, name, input=MSG, max_output_tokens=24, temperature=0)
    check(text == chat_text and final.output_text == chat_text and final.status == "incomplete", "streamed %r" % text)
    check(types[-1] == "response.incomplete" and "response.output_text.done" in types and
          "response.content_part.added" in types, "stream events %s" % types)
    # items: a text part, an earlier assistant turn, a developer message; instructions
    items = [{"role": "developer", "content": "Answer briefly."},
             {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
             {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
             {"role": "user", "content": "Name a river."}]
    r = cl.responses.create(model=name, input=items, instructions="You are terse.", max_output_tokens=8, temperature=0)
    check(r.status in ("completed", "incomplete") and r.output_text and r.instructions == "You are terse.", "items %r" % r)
    # structured output through text.format
    schema = {"type": "object", "properties": {"river": {"enum": ["Seine", "Loire", "Rhine"]}}, "required": ["river"],
              "additionalProperties": False}
    r = cl.responses.create(model=name, input="A river, as JSON.", temperature=0, max_output_tokens=64,
                            text={"format": {"type": "json_schema", "name": "r", "schema": schema, "strict": True}})
    check(r.status == "completed" and set(json.loads(r.output_text)) == {"river"}, "json_schema: %r" % r.output_text)
    for body, param in (({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id"),
                        ({"input": "x", "tools": [{"type": "web_search"}]}, "tools"),
                        ({"input": 3}, "input"),
                        ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "u"}]}]}, "input")):
        expect_error(400, "POST", "/v1/responses", body, param)
    ok("/v1/responses: the chat endpoint's greedy text whole and streamed (typed events), input items, "
       "instructions, text.format json_schema, max_output_tokens as incomplete; 400 for what it cannot do")


def test_responses_tools(cl, name):
    """A function call through /v1/responses, whole and streamed, and its output fed back."""
    tools = [{"type": "function", "name": t["function"]["name"], "parameters": t["function"]["parameters"]}
             for t in TOOLS]
    r = cl.responses.create(model=name, input="Weather in Paris?", tools=tools, temperature=0)
    kinds = [o.type for o in r.output]
    check(kinds == ["message", "function_call"] and r.output_text == "Checking.", "output %r" % r.output)
    fc = r.output[1]
    check(fc.name == "get_weather" and json.loads(fc.arguments) == {"city": "Paris", "days": 2} and fc.call_id,
          "call %r" % fc)
    types, text, _, final = responses_stream(cl, name, input="Weather in Paris?", tools=tools, temperature=0)
    check(text == "Checking." and [o.type for o in final.output] == kinds and
          "response.function_call_arguments.done" in types and types[-1] == "response.completed", "stream %s" % types)
    follow = [{"role": "user", "content": "Weather in Paris?"},
              {"type": "function_call", "call_id": fc.call_id, "name": fc.name, "arguments": fc.arguments},
              {"type": "function_call_output", "call_id": fc.call_id, "output": "{\"sky\": \"clear\"}"}]
    st, _, _ = raw("POST", "/v1/responses", {"input": follow, "tools": tools, "max_output_tokens": 2})
    check(st == 200, "a conversation with the call and its output: %d" % st)
    ok("/v1/responses: a function_call item after the message, whole and streamed; its output fed back")


def test_responses_reasoning(cl, name):
    r = cl.responses.create(model=name, input="Weather?", temperature=0)
    check([o.type for o in r.output] == ["reasoning", "message"] and r.output[0].content[0].text ==
          "Let me check the sky." and r.output_text == "It is sunny.", "reasoning %r" % r.output)
    types, text, reasoning, final = responses_stream(cl, name, input="Weather?", temperature=0)
    check(reasoning == "Let me check the sky." and text == "It is sunny." and
          [o.type for o in final.output] == ["reasoning", "message"], "streamed reasoning %r %r" % (reasoning, text))
    ok("/v1/responses: a thinking model's reasoning item before its message, whole and streamed")


GREEDY = {"temperature": 0}  # the anthropic client has no sampling parameters any more; the server takes them


def test_anthropic(name, chat_text):
    """POST /v1/messages with the anthropic client: the chat endpoint's greedy text, whole and streamed;
    system, stop_sequences, max_tokens as stop reasons; errors in Anthropic's envelope."""
    import anthropic
    ac = anthropic.Anthropic(base_url=ARGS.base, api_key="none")
    m = ac.messages.create(model=name, max_tokens=24, extra_body=GREEDY, messages=[{"role": "user", "content": MSG}])
    text = "".join(b.text for b in m.content if b.type == "text")
    check(text == chat_text and m.stop_reason == "max_tokens" and m.usage.output_tokens == 24 and
          m.role == "assistant" and m.type == "message", "messages: %r" % m)
    with ac.messages.stream(model=name, max_tokens=24, extra_body=GREEDY,
                            messages=[{"role": "user", "content": [{"type": "text", "text": MSG}]}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    check(streamed == chat_text and final.stop_reason == "max_tokens", "streamed %r (%s)" % (streamed, final.stop_reason))
    word = chat_text.split()[2] if len(chat_text.split()) > 2 else None
    if word:
        m = ac.messages.create(model=name, max_tokens=24, extra_body=GREEDY, stop_sequences=[word],
                               messages=[{"role": "user", "content": MSG}])
        check(m.stop_reason == "stop_sequence" and m.stop_sequence == word and word not in m.content[0].text,
              "stop_sequences: %r" % m)
    m = ac.messages.create(model=name, max_tokens=8, extra_body=GREEDY, system="Answer in one word.",
                           messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                     {"role": "user", "content": "Name a river."}])
    check(m.content and m.usage.input_tokens > 20, "system and turns: %r" % m)
    n = ac.messages.count_tokens(model=name, system="Answer in one word.",
                                 messages=[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                                           {"role": "user", "content": "Name a river."}])
    check(n.input_tokens == m.usage.input_tokens, "count_tokens %d, the message's usage %d" % (n.input_tokens,
                                                                                             m.usage.input_tokens))
    schema = {"type": "object", "properties": {"river": {"enum": ["Seine", "Loire"]}}, "required": ["river"],
              "additionalProperties": False}
    m = ac.messages.create(model=name, max_tokens=64, extra_body=GREEDY, messages=[{"role": "user", "content": "A river?"}],
                           output_config={"format": {"type": "json_schema", "schema": schema}})
    check(m.stop_reason == "end_turn" and set(json.loads(m.content[0].text)) == {"river"}, "output_config %r" % m)
    st, _, d = raw("POST", "/v1/messages", {"messages": [{"role": "user", "content": "x"}]})
    e = json.loads(d)
    check(st == 400 and e.get("type") == "error" and e["error"]["type"] == "invalid_request_error" and
          "max_tokens" in e["error"]["message"], "an Anthropic error: %d %r" % (st, d[:200]))
    ok("/v1/messages: the chat endpoint's greedy text whole and streamed (anthropic client), system and turns, "
       "count_tokens, stop_sequences and max_tokens as stop reasons, errors in Anthropic's envelope")


def test_anthropic_tools(name):
    import anthropic
    ac = anthropic.Anthropic(base_url=ARGS.base, api_key="none")
    tools = [{"name": t["function"]["name"], "description": t["function"]["description"],
              "input_schema": t["function"]["parameters"]} for t in TOOLS]
    msgs = [{"role": "user", "content": "Weather in Paris?"}]
    m = ac.messages.create(model=name, max_tokens=200, extra_body=GREEDY, tools=tools, messages=msgs)
    kinds = [b.type for b in m.content]
    check(kinds == ["text", "tool_use"] and m.content[0].text == "Checking." and m.stop_reason == "tool_use" and
          m.content[1].name == "get_weather" and m.content[1].input == {"city": "Paris", "days": 2}, "tool_use %r" % m)
    with ac.messages.stream(model=name, max_tokens=200, extra_body=GREEDY, tools=tools, messages=msgs) as s:
        final = s.get_final_message()
    check([b.type for b in final.content] == kinds and final.content[1].input == {"city": "Paris", "days": 2},
          "streamed tool_use %r" % final)
    follow = msgs + [{"role": "assistant", "content": [b.model_dump() for b in m.content]},
                     {"role": "user", "content": [{"type": "tool_result", "tool_use_id": m.content[1].id,
                                                   "content": "clear"}]}]
    st, _, _ = raw("POST", "/v1/messages", {"model": name, "max_tokens": 2, "tools": tools, "messages": follow})
    check(st == 200, "a conversation with the tool_use and its result: %d" % st)
    ok("/v1/messages: a tool_use block after the text, whole and streamed; its tool_result fed back")


def test_anthropic_thinking(name):
    import anthropic
    ac = anthropic.Anthropic(base_url=ARGS.base, api_key="none")
    m = ac.messages.create(model=name, max_tokens=200, extra_body=GREEDY, messages=[{"role": "user", "content": "Weather?"}])
    check([b.type for b in m.content] == ["thinking", "text"] and m.content[0].thinking == "Let me check the sky." and
          m.content[1].text == "It is sunny." and m.stop_reason == "end_turn", "thinking %r" % m)
    ok("/v1/messages: a thinking model's reasoning as a thinking block")


def test_fim(cl, name):
    """completions with `suffix` on a code model (FIM tokens): the middle, whole and streamed; the prompt is
    [BOS] <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>."""
    pre, suf = "def double(x):\n    return ", "\n\nprint(double(2))\n"
    c = cl.completions.create(model=name, prompt=pre, suffix=suf, max_tokens=16, temperature=0)
    check(c.choices[0].text == "x * 2" and c.choices[0].finish_reason == "stop", "fim: %r" % c.choices[0])
    st, _, d = raw("POST", "/tokenize", {"content": pre, "add_special": False})
    n_pre = len(json.loads(d)["tokens"])
    st, _, d = raw("POST", "/tokenize", {"content": suf, "add_special": False})
    n_suf = len(json.loads(d)["tokens"])
    check(c.usage.prompt_tokens == 1 + 3 + n_pre + n_suf, "fim prompt tokens %d, expected %d" % (
        c.usage.prompt_tokens, 4 + n_pre + n_suf))
    text = "".join(x.choices[0].text for x in cl.completions.create(model=name, prompt=pre, suffix=suf, max_tokens=16,
                                                                       temperature=0, stream=True))
    check(text == "x * 2", "fim streamed: %r" % text)
    ok("completions with suffix: a code model's middle between prefix and suffix, whole and streamed")


def native_events(path, body):
    """llama-server's stream of `path`: the event objects in order."""
    st, h, data = raw("POST", path, dict(body, stream=True))
    check(st == 200, "%s streamed: %d %s" % (path, st, data[:200]))
    return [json.loads(line[6:]) for line in data.decode().split("\n") if line.startswith("data: ")]


def test_native_infill(cl, name):
    """llama-server's /infill (what llama.vscode and llama.vim send) on a code model: the middle greedy, whole
    and streamed, the prompt llama-server builds (input_extra before BOS and the FIM tokens); llama.vscode's
    request as it sends it (samplers top_k, top_p, infill: sampled at temperature 1, the infill sampler last)."""
    pre, suf, extra = "def double(x):\n    return ", "\n\nprint(double(2))\n", "import os\n"
    body = {"input_prefix": pre, "input_suffix": suf, "input_extra": [{"filename": "util.py", "text": extra}],
            "n_predict": 16, "temperature": 0, "cache_prompt": True, "t_max_prompt_ms": 500}
    st, _, d = raw("POST", "/infill", body)
    check(st == 200, "infill: %d %s" % (st, d[:200]))
    o = json.loads(d)

    def ntok(t):
        return len(json.loads(raw("POST", "/tokenize", {"content": t, "add_special": False})[2])["tokens"])
    want = ntok("\n\n--- snippet ---\n\n") + ntok(extra) + 1 + 3 + ntok(pre) + ntok(suf)
    check(o["content"] == "x * 2" and o["stop"] and o["stop_type"] == "eos" and o["tokens_predicted"] == 4 and
          o["tokens_evaluated"] == want, "infill: %r (prompt tokens expected %d)" % (o, want))
    check(o["generation_settings"]["top_k"] == 40 and "timings" in o and "snippet" in o["prompt"],
          "infill's reply fields: %r" % o)
    ev = native_events("/infill", body)
    check("".join(e["content"] for e in ev) == "x * 2" and ev[-1]["stop"] and not any(e["stop"] for e in ev[:-1]) and
          ev[-1]["stop_type"] == "eos", "infill streamed: %r" % ev)
    vscode = dict(body, top_k=40, top_p=0.99, samplers=["top_k", "top_p", "infill"], n_indent=4, t_max_predict_ms=1000,
                  seed=1)
    del vscode["temperature"]
    st, _, d = raw("POST", "/infill", vscode)
    o = json.loads(d)
    check(st == 200 and o["content"] == "x * 2" and o["generation_settings"]["samplers"] == ["top_k", "top_p", "infill"]
          and o["generation_settings"]["temperature"] == 1.0, "llama.vscode's request (sampled, the infill sampler): %r" % o)
    vim = {"input_prefix": pre, "input_suffix": suf, "input_extra": [{"text": extra, "time": 1.5, "filename": "u.py"}],
           "prompt": "", "n_predict": 128, "n_indent": 4, "top_k": 40, "top_p": 0.99, "stream": False,
           "samplers": ["top_k", "top_p", "infill"], "cache_prompt": True, "t_max_prompt_ms": 500,
           "t_max_predict_ms": 500, "response_fields": ["content", "timings/prompt_n", "timings/prompt_ms",
                                                        "timings/predicted_n", "truncated", "tokens_cached"]}
    st, _, d = raw("POST", "/infill", vim)
    o = json.loads(d)
    check(st == 200 and sorted(o) == sorted(vim["response_fields"]) and o["content"] == "x * 2" and
          o["timings/predicted_n"] == 4, "llama.vim's request (response_fields): %r" % o)
    expect_error(400, "POST", "/infill", {"input_suffix": ""}, "input_prefix")
    expect_error(400, "POST", "/infill", dict(body, input_extra=[{"filename": "a"}]), "input_extra")
    ok("/infill: the middle whole and streamed, llama-server's prompt (%d tokens), llama.vscode's and llama.vim's "
       "requests, refusals"
       % want)


def test_grammar(cl, name):
    """GBNF grammars (llama-server's grammar, vLLM's guided_grammar / guided_choice / guided_json /
    structured_outputs) hold the real model's reply, whole and streamed; what they cannot do is a 400."""
    yes_no = 'root ::= ("yes" | "no") ", because " [a-z ]{1,40} "."'
    pat = re.compile(r"(yes|no), because [a-z ]{1,40}\.")
    msgs = [{"role": "user", "content": "Is the sky blue?"}]
    for extra in ({"grammar": yes_no}, {"guided_grammar": yes_no}, {"structured_outputs": {"grammar": yes_no}}):
        r = cl.chat.completions.create(model=name, messages=msgs, max_tokens=60, temperature=0.8, seed=5,
                                       extra_body=extra)
        check(pat.fullmatch(r.choices[0].message.content) and r.choices[0].finish_reason == "stop",
              "%s: %r" % (list(extra), r.choices[0].message.content))
    text = "".join(c.choices[0].delta.content or "" for c in cl.chat.completions.create(
        model=name, messages=msgs, max_tokens=60, temperature=0, stream=True, extra_body={"grammar": yes_no})
        if c.choices)
    check(pat.fullmatch(text), "streamed: %r" % text)
    colors = ["red", "green", "dark blue"]
    for extra in ({"guided_choice": colors}, {"structured_outputs": {"choice": colors}}):
        r = cl.completions.create(model=name, prompt="The color of the sea is", max_tokens=8, temperature=0.7,
                                  seed=1, n=3, extra_body=extra)
        check(all(c.text in colors for c in r.choices), "%s: %r" % (list(extra), [c.text for c in r.choices]))
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 99}}, "required": ["n"],
              "additionalProperties": False}  # (bounded: the document ends within the tokens given)
    for extra in ({"guided_json": schema}, {"guided_json": json.dumps(schema)}, {"structured_outputs": {"json": schema}}):
        r = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": "A number as JSON."}],
                                       max_tokens=100, temperature=0, extra_body=extra)
        check(set(json.loads(r.choices[0].message.content)) == {"n"}, "%s: %r" % (list(extra), r.choices[0].message.content))
    phone = r"\(\d{3}\) \d{3}-\d{4}"
    for extra in ({"guided_regex": phone}, {"structured_outputs": {"regex": phone}}):
        r = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": "A phone number?"}],
                                       max_tokens=30, temperature=0.9, seed=2, extra_body=extra)
        check(re.fullmatch(phone, r.choices[0].message.content), "%s: %r" % (list(extra), r.choices[0].message.content))
    o = json.loads(raw("POST", "/completion", {"prompt": "Is the sky blue? Answer:", "n_predict": 60, "grammar": yes_no,
                                               "temperature": 0})[2])
    check(pat.fullmatch(o["content"]) and o["stop_type"] == "eos", "/completion grammar: %r" % o)
    chat = "/v1/chat/completions"
    for body, param in (({"grammar": "root ::= x"}, "grammar"), ({"grammar": 'root ::= root "a" | "b"'}, "grammar"),
                        ({"grammar": "root ::= \"a\"", "response_format": {"type": "json_object"}}, "grammar"),
                        ({"guided_choice": []}, "guided_choice"), ({"guided_regex": "(?=a)"}, "guided_regex"),
                        ({"structured_outputs": {"pattern": "a+"}}, "structured_outputs"),
                        ({"guided_json": "not json"}, "guided_json"), ({"grammar": 7}, "grammar")):
        expect_error(400, "POST", chat, dict(body, messages=msgs), param)
    expect_error(400, "POST", "/completion", {"prompt": "x", "grammar": "root ::= \"a\"", "json_schema": schema},
                 "grammar")
    ok("GBNF grammars, regular expressions, choices and guided JSON hold the reply (chat, completions, /completion, "
       "streamed); 400s")


def test_llama_samplers(cl, name):
    """llama.cpp's samplers beyond OpenAI's (DRY, XTC, typical, top-n-sigma, dynamic temperature) on both APIs:
    DRY's greedy reply equals loom generate --dry-multiplier's and differs from the plain one; the others run;
    mirostat's reply equals loom generate --mirostat's with the same seed; bad values are 400s."""
    rep = "Repeat after me ten times: I like cats. I like cats. I like cats."
    plain, _, _ = reference(rep, True, 40)
    want, _, _ = reference(rep, True, 40, ["--dry-multiplier", "0.8"])
    check(want != plain, "DRY changes nothing here: %r" % want)
    msgs = [{"role": "user", "content": rep}]
    r = cl.chat.completions.create(model=name, messages=msgs, max_tokens=40, temperature=0,
                                   extra_body={"dry_multiplier": 0.8})
    check(r.choices[0].message.content == want, "DRY over the chat API: %r, generate %r" % (
        r.choices[0].message.content, want))
    chat = json.loads(raw("POST", "/apply-template", {"messages": msgs})[2])["prompt"]  # the chat's prompt, as text
    o = json.loads(raw("POST", "/completion", {"prompt": chat, "n_predict": 40, "temperature": 0, "dry_multiplier": 0.8,
                                               "samplers": ["penalties", "dry", "top_k", "temperature"]})[2])
    check(o["content"] == want and o["generation_settings"]["dry_multiplier"] == 0.8, "DRY over /completion: %r" % o)
    o = json.loads(raw("POST", "/completion", {"prompt": chat, "n_predict": 40, "temperature": 0, "dry_multiplier": 0.8,
                                               "samplers": ["top_k", "temperature"]})[2])
    check(o["content"] == plain, "DRY left out of 'samplers' does nothing: %r" % o["content"])
    for extra in ({"xtc_probability": 0.5, "xtc_threshold": 0.1}, {"typical_p": 0.8}, {"top_n_sigma": 1.5},
                  {"dynatemp_range": 0.5, "dynatemp_exponent": 2}, {"dry_multiplier": 1.2, "dry_sequence_breakers": ["cats"]}):
        r = cl.completions.create(model=name, prompt=PROMPT, max_tokens=8, temperature=0.9, seed=3, extra_body=extra)
        check(r.choices[0].finish_reason in ("length", "stop"), "%s: %r" % (extra, r.choices[0]))
    # mirostat: the same reply as loom generate's with the same seed (chat), echoed by /completion
    want, _, _ = reference(rep, True, 24, ["--temperature", "0.9", "--mirostat", "2", "--mirostat-ent", "3", "--seed", "5"])
    r = cl.chat.completions.create(model=name, messages=msgs, max_tokens=24, temperature=0.9, seed=5,
                                   extra_body={"mirostat": 2, "mirostat_tau": 3})
    check(r.choices[0].message.content == want, "mirostat over the chat API: %r, generate %r" % (
        r.choices[0].message.content, want))
    o = json.loads(raw("POST", "/completion", {"prompt": chat, "n_predict": 24, "temperature": 0.9, "seed": 5,
                                               "mirostat": 2, "mirostat_tau": 3})[2])
    check(o["content"] == want and o["generation_settings"]["mirostat"] == 2 and
          o["generation_settings"]["mirostat_tau"] == 3, "mirostat over /completion: %r" % o)
    for body, param in (({"mirostat": 3}, "mirostat"), ({"xtc_probability": 2}, "xtc_probability"),
                        ({"dry_sequence_breakers": []}, "dry_sequence_breakers"), ({"typical_p": -1}, "typical_p"),
                        ({"dry_penalty_last_n": -5}, "dry_penalty_last_n")):
        expect_error(400, "POST", "/v1/chat/completions", dict(body, messages=msgs), param)
    pr = json.loads(raw("GET", "/props")[2])["default_generation_settings"]["params"]
    check(pr["dry_base"] == 1.75 and pr["xtc_threshold"] == 0.1 and pr["dry_sequence_breakers"] == ["\n", ":", "\"", "*"],
          "/props: %r" % pr)
    ok("llama.cpp's samplers: DRY's greedy reply equals generate's (chat, /completion, 'samplers' respected); XTC, "
       "typical, top-n-sigma, dynamic temperature run; mirostat's reply equals generate's; bad values 400")


def test_native_completion(cl, name, comp_text):
    """llama-server's /completion: greedy text equal to /v1/completions', whole and streamed; n_probs, return_tokens,
    several prompts, n_predict 0, stop words; samplers loom does not have and another order refused."""
    base = {"prompt": PROMPT, "n_predict": 24, "temperature": 0}
    st, _, d = raw("POST", "/completion", base)
    o = json.loads(d)
    check(st == 200 and o["content"] == comp_text and o["stop_type"] == "limit" and o["tokens_predicted"] == 24,
          "/completion: %r vs %r" % (o.get("content"), comp_text))
    ev = native_events("/completions", dict(base, n_probs=2, return_tokens=True))
    check("".join(e["content"] for e in ev) == comp_text and ev[-1]["stop"], "streamed: %r" % ev[-1])
    probs = [p for e in ev for p in e.get("completion_probabilities", [])]
    ids = [t for e in ev for t in e["tokens"]]
    check(len(probs) == 24 and len(ids) == 24 and [p["id"] for p in probs] == ids and
          all(len(p["top_logprobs"]) == 2 and p["top_logprobs"][0]["id"] == p["id"] for p in probs),
          "n_probs / return_tokens: %r" % probs[:2])
    o = json.loads(raw("POST", "/completion", {"prompt": [PROMPT, "Hello"], "n_predict": 4, "temperature": 0})[2])
    check(isinstance(o, list) and len(o) == 2 and o[0]["content"] == comp_text[:len(o[0]["content"])],
          "two prompts: %r" % o)
    o = json.loads(raw("POST", "/completion", dict(base, n_predict=0))[2])
    check(o["content"] == "" and o["tokens_predicted"] == 0, "n_predict 0: %r" % o)
    word = comp_text.split()[1]
    o = json.loads(raw("POST", "/completion", dict(base, stop=[word]))[2])
    check(o["stop_type"] == "word" and o["stopping_word"] == word and word not in o["content"], "stop word: %r" % o)
    for bad, param in (({"mirostat": 3}, "mirostat"), ({"samplers": ["temperature", "top_k"]}, "samplers"),
                       ({"grammar": "root ::= a"}, "grammar"), ({"grammar_lazy": True}, "grammar_lazy"),
                       ({"dry_base": "x"}, "dry_base"),
                       ({"prompt": None}, "prompt"), ({"prompt": [1, "a"]}, "prompt"), ({"lora": [{"id": 0}]}, "lora")):
        expect_error(400, "POST", "/completion", dict(base, **bad), param)
    expect_error(501, "POST", "/infill", {"input_prefix": "a", "input_suffix": "b"})  # no FIM tokens: llama-server's 501
    st, _, d = raw("GET", "/props")
    pr = json.loads(d)
    check(st == 200 and pr["default_generation_settings"]["n_ctx"] == 2048 and pr["total_slots"] in (8, 16) and
          "im_start" in pr["chat_template"] and pr["default_generation_settings"]["params"]["top_k"] == 40,
          "/props: %r" % {k: pr[k] for k in pr if k != "chat_template"})
    ok("/completion: llama-server's API, equal to /v1/completions greedy, streamed with n_probs and tokens, "
       "several prompts, n_predict 0, stop words, refusals; /props")


def test_prediction(cl, name, chat_text):
    """Predicted outputs (OpenAI's `prediction`) on a server without --draft: the reply is the same whatever the
    prediction, and the usage counts the prediction's tokens kept and refused."""
    msgs = [{"role": "user", "content": MSG}]
    r = cl.chat.completions.create(model=name, messages=msgs, max_tokens=24, temperature=0,
                                   prediction={"type": "content", "content": chat_text})
    d = r.usage.completion_tokens_details
    check(r.choices[0].message.content == chat_text and d.accepted_prediction_tokens >= 16,
          "an exact prediction: %r, %r" % (r.choices[0].message.content, d))
    words = chat_text.split(" ")
    half = len(words) // 2  # the reply with a word changed halfway: kept up to it, refused there
    wrong = [{"type": "text", "text": " ".join(words[:half]) + " "},
             {"type": "text", "text": " ".join(["zebra"] + words[half + 1:])}]
    r = cl.chat.completions.create(model=name, messages=msgs, max_tokens=24, temperature=0,
                                   prediction={"type": "content", "content": wrong})
    d = r.usage.completion_tokens_details
    check(r.choices[0].message.content == chat_text and d.rejected_prediction_tokens > 0,
          "a wrong prediction: %r, %r" % (r.choices[0].message.content, d))
    c = cl.completions.create(model=name, prompt=PROMPT, max_tokens=24, temperature=0)
    c2 = cl.completions.create(model=name, prompt=PROMPT, max_tokens=24, temperature=0,
                               extra_body={"prediction": {"type": "content", "content": c.choices[0].text}})
    check(c2.choices[0].text == c.choices[0].text, "completions with a prediction: %r" % c2.choices[0].text)
    expect_error(400, "POST", "/v1/chat/completions", {"messages": msgs, "prediction": {"type": "audio"}}, "prediction")
    ok("predicted outputs: the same reply with an exact or a wrong prediction, its tokens kept (%d) and refused "
       "counted in the usage" % r.usage.completion_tokens_details.accepted_prediction_tokens)


def test_draft(cl, name):
    """A server with --draft or --draft-model: greedy replies (whole, streamed, four at once) equal loom
    generate's without speculation, and the metrics count proposals, some kept."""
    msg = "Repeat this sentence exactly, twice: the quick brown fox jumps over the lazy dog."
    ref_text, ref_stop, ref_n = reference(msg, True, 64)
    ref_c, _, _ = reference(PROMPT, False, 32)
    before = metrics()
    r = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": msg}], max_tokens=64,
                                   temperature=0)
    check(r.choices[0].message.content == ref_text, "draft chat: %r, loom generate: %r" % (
        r.choices[0].message.content, ref_text))
    check(r.usage.completion_tokens == ref_n and r.choices[0].finish_reason == ref_stop, "usage / finish")
    chunks = list(cl.chat.completions.create(model=name, messages=[{"role": "user", "content": msg}], max_tokens=64,
                                             temperature=0, stream=True, logprobs=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    check(text == ref_text, "draft stream: %r vs %r" % (text, ref_text))
    lps = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    check(len(lps) == ref_n, "a log-probability per token: %d of %d" % (len(lps), ref_n))
    def one(i):
        if i % 2:
            return cl.completions.create(model=name, prompt=PROMPT, max_tokens=32, temperature=0).choices[0].text
        return cl.chat.completions.create(model=name, messages=[{"role": "user", "content": msg}],
                                          max_tokens=64, temperature=0).choices[0].message.content
    got = at_once(one, 4)
    check(got == [ref_text, ref_c, ref_text, ref_c], "four at once: %r" % got)
    m = metrics()
    drafted = metric(m, "loom_spec_decode_num_draft_tokens_total") - metric(before, "loom_spec_decode_num_draft_tokens_total")
    kept = metric(m, "loom_spec_decode_num_accepted_tokens_total") - metric(
        before, "loom_spec_decode_num_accepted_tokens_total")
    check(0 < kept <= drafted, "proposals %d, kept %d" % (drafted, kept))
    ok("speculative: greedy chat and completions (whole, streamed with logprobs, four at once) equal loom generate "
       "without it; %d of %d proposals kept" % (kept, drafted))


def test_lora(cl, name):
    """A server started with --lora FILE --lora-init-without-apply (ARGS.lora: FILE)."""
    st, _, d = raw("GET", "/lora-adapters")
    check(st == 200, "GET /lora-adapters: %d" % st)
    got = json.loads(d)
    check(len(got) == 1 and got[0]["id"] == 0 and got[0]["path"] == ARGS.lora and got[0]["scale"] == 0,
          "GET /lora-adapters: %r" % got)
    models = [m.id for m in cl.models.list().data]
    stem = os.path.basename(ARGS.lora)[:-5]
    check(models == [name, stem], "/v1/models: %r" % models)
    n = 16
    plain, _, _ = reference(PROMPT, False, n)
    adapted, _, _ = reference(PROMPT, False, n, ["--lora", ARGS.lora])
    half, _, _ = reference(PROMPT, False, n, ["--lora-scaled", ARGS.lora + ":0.5"])
    check(plain != adapted, "the adapter changes nothing: %r" % plain)

    def comp(**kw):
        return cl.completions.create(model=kw.pop("model", name), prompt=PROMPT, max_tokens=n, temperature=0,
                                     **kw).choices[0].text

    check(comp() == plain, "no lora: %r vs %r" % (comp(), plain))
    got = comp(extra_body={"lora": [{"id": 0, "scale": 1.0}]})
    check(got == adapted, "lora scale 1: %r vs loom generate --lora: %r" % (got, adapted))
    got = comp(extra_body={"lora": [{"id": 0, "scale": 0.5}]})
    check(got == half, "lora scale 0.5: %r vs --lora-scaled FILE:0.5: %r" % (got, half))
    got = comp(model=stem)
    check(got == adapted, "model %s: %r vs %r" % (stem, got, adapted))
    st, _, d = raw("POST", "/completion", {"prompt": PROMPT, "n_predict": n, "temperature": 0,
                                            "lora": [{"id": 0, "scale": 1.0}]})
    check(st == 200 and json.loads(d)["content"] == adapted, "/completion with lora: %d %r" % (st, d[:200]))
    # four at once, adapters on and off in one batch: each as alone
    results = at_once(lambda i: comp(extra_body={"lora": [{"id": 0, "scale": 1.0 if i % 2 else 0.0}]}), 4)
    check(results == [plain, adapted, plain, adapted], "mixed batch: %r" % results)
    # the server's scales for requests without their own
    st, _, d = raw("POST", "/lora-adapters", [{"id": 0, "scale": 1.0}])
    check(st == 200 and json.loads(d) == {"success": True}, "POST /lora-adapters: %d %r" % (st, d))
    check(json.loads(raw("GET", "/lora-adapters")[2])[0]["scale"] == 1.0, "scale set")
    check(comp() == adapted, "after POST /lora-adapters scale 1: %r" % comp())
    check(comp(extra_body={"lora": []}) == plain, "an empty lora list: every adapter at 0")
    raw("POST", "/lora-adapters", [])
    check(comp() == plain, "after POST /lora-adapters []")
    expect_error(400, "POST", "/v1/completions", {"prompt": "x", "lora": [{"id": 1, "scale": 1}]}, "lora")
    expect_error(400, "POST", "/v1/completions", {"prompt": "x", "lora": "all"}, "lora")
    expect_error(400, "POST", "/v1/completions", {"prompt": "x", "lora": [{"id": 0, "scale": "big"}]}, "lora")
    expect_error(400, "POST", "/lora-adapters", {"id": 0})
    expect_error(400, "POST", "/lora-adapters", [{"id": 2, "scale": 1}])
    expect_error(405, "PUT", "/lora-adapters", [])
    ok("LoRA: per request (lora, model), /completion, GET/POST /lora-adapters, a mixed batch, each equal to "
       "loom generate --lora / --lora-scaled; malformed lists refused")


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("mode")
    p.add_argument("--base", required=True)
    p.add_argument("--reference-cmd", default="")
    p.add_argument("--lora", default="")
    ARGS = p.parse_args()
    if ARGS.mode == "lora":
        cl = client()
        test_lora(cl, model_name())
        return
    if ARGS.mode == "auth":
        expect_error(401, "POST", "/v1/completions", {"prompt": "x"}, None, "invalid_api_key")
        expect_error(401, "POST", "/v1/completions", {"prompt": "x"}, None, "invalid_api_key",
                     {"Authorization": "Bearer wrong"})
        st, _, _ = raw("GET", "/health")
        check(st == 200, "health needs no key")
        c = client("sesame").completions.create(model=client("sesame").models.list().data[0].id, prompt="Hi",
                                                max_tokens=2)
        check(len(c.choices) == 1, "with the key")
        import anthropic
        m = anthropic.Anthropic(base_url=ARGS.base, api_key="sesame").messages.create(
            model=client("sesame").models.list().data[0].id, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
        check(m.type == "message", "x-api-key")
        st, _, d = raw("POST", "/v1/messages", {"max_tokens": 2, "messages": []}, {"x-api-key": "wrong"})
        check(st == 401 and json.loads(d)["error"]["type"] == "authentication_error", "x-api-key wrong: %d %r" % (st, d))
        ok("--api-key: 401 without or with a wrong key, 200 with it (Bearer or x-api-key); /health open")
        return
    if ARGS.mode == "queue":
        results = []

        def one():
            try:
                st, h, _ = raw("POST", "/v1/completions", {"prompt": "Tell me a long story", "max_tokens": 64,
                                                           "ignore_eos": True})
                results.append((st, h.get("retry-after")))
            except Exception as e:  # noqa: BLE001 - reported below
                results.append((str(e), None))
        ts = [threading.Thread(target=one) for _ in range(8)]
        for t in ts:
            t.start()
            time.sleep(0.05)
        for t in ts:
            t.join(600)
        codes = sorted(str(r[0]) for r in results)
        check(any(r[0] == 429 and r[1] for r in results), "no 429 with Retry-After among %s" % codes)
        check(all(r[0] in (200, 429) for r in results), "statuses %s" % codes)
        ok("a full queue answers 429 with Retry-After at once (%s)" % codes)
        return
    cl = client()
    name = model_name()
    # the modes of one scripted model or one server option: their tests, in order
    scripted = {
        "tools": [test_tool_calls, test_responses_tools, lambda cl, name: test_anthropic_tools(name), test_json_mode],
        "think": [lambda cl, name: test_reasoning(cl, name, True), test_responses_reasoning,
                  lambda cl, name: test_anthropic_thinking(name)],
        "think-off": [lambda cl, name: test_reasoning(cl, name, False)],
        "think-mistral": [lambda cl, name: test_reasoning(cl, name, True, ("[THINK]", "[/THINK]"))],
        "fim": [test_fim, test_native_infill],
        "harmony": [lambda cl, name: test_harmony(cl, name, True)],
        "harmony-off": [lambda cl, name: test_harmony(cl, name, False)],
        "harmony-call": [test_harmony_calls],
        "tools-llama3": [test_tool_calls_llama3],
        "tools-mistral": [test_tool_calls_mistral],
        "tools-xml": [test_tool_calls_xml],
        "draft": [test_draft],
    }
    if ARGS.mode in scripted:
        for test in scripted[ARGS.mode]:
            test(cl, name)
        return
    if ARGS.mode == "asan-draft":
        got = [None] * 4

        def one(i):
            if i % 2:
                got[i] = "".join(c.choices[0].delta.content or "" for c in cl.chat.completions.create(
                    model=name, messages=[{"role": "user", "content": "Count to %d." % (i + 3)}], max_tokens=24,
                    temperature=0, stream=True, logprobs=True, top_logprobs=2) if c.choices)
            else:
                got[i] = cl.chat.completions.create(model=name, messages=[{"role": "user", "content": "Say hi %d." % i}],
                                                    max_tokens=24, temperature=0.7, seed=i).choices[0].message.content
        ts = [threading.Thread(target=one, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(600)
        check(all(isinstance(g, str) for g in got), "draft-model chats under the sanitizers: %r" % got)
        ev = native_events("/completion", {"prompt": PROMPT, "n_predict": 12, "n_probs": 2, "return_tokens": True,
                                           "samplers": ["top_k", "top_p", "infill"], "seed": 3})
        check(ev and ev[-1]["stop"], "native stream with the infill sampler under the sanitizers: %r" % ev[-1:])
        st, _, _ = raw("POST", "/infill", {"input_prefix": "a", "input_suffix": "b"})
        check(st == 501, "/infill without FIM tokens: %d" % st)
        m = metrics()
        check(metric(m, "loom_spec_decode_num_draft_tokens_total") > 0, "the draft model proposed nothing")
        ok("a draft-model server under the sanitizers: four chats at once, llama-server's API with the infill sampler")
        return
    if ARGS.mode == "asan":
        cl.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                   logprobs=True, top_logprobs=2)
        list(cl.completions.create(model=name, prompt=PROMPT, max_tokens=4, stream=True, stop=["xyz"]))
        raw("POST", "/v1/chat/completions", "{broken")
        raw("POST", "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 2})
        st, _, _ = raw("POST", "/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 0, "echo": True, "logprobs": 3})
        check(st == 200, "echo under the sanitizers: %d" % st)
        # structured output, forced tool calls, several choices, a logit bias, text parts
        schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"anyOf": [{"type": "string"},
                  {"type": "null"}]}}, "required": ["a"], "additionalProperties": False}
        st, _, _ = raw("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi"}]}], "max_tokens": 8, "n": 2, "logit_bias": {"7": -100}, "stream": True,
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}})
        check(st == 200, "structured output under the sanitizers: %d" % st)
        st, _, _ = raw("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                                                        "tools": [{"type": "function", "function": {
                                                            "name": "f", "parameters": schema}}],
                                                        "tool_choice": "required"})
        check(st == 200, "forced tool call under the sanitizers: %d" % st)
        for stream in (False, True):  # the Responses API, with items, a function tool and structured output
            st, _, _ = raw("POST", "/v1/responses", {"input": [{"role": "user", "content": "hi"}], "instructions": "x",
                                                      "max_output_tokens": 6, "stream": stream, "tools": [
                                                          {"type": "function", "name": "f", "parameters": schema}],
                                                      "text": {"format": {"type": "json_object"}}})
            check(st == 200, "/v1/responses under the sanitizers: %d" % st)
            st, _, _ = raw("POST", "/v1/messages", {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                                                     "system": "x", "max_tokens": 6, "stream": stream, "stop_sequences": ["a"],
                                                     "tools": [{"name": "f", "input_schema": schema}],
                                                     "output_config": {"format": {"type": "json_schema", "schema": schema}}})
            check(st == 200, "/v1/messages under the sanitizers: %d" % st)
        for k in range(7):  # more DRY breaker sets than the server keeps unused: built, shared, dropped
            st, _, _ = raw("POST", "/v1/completions", {"prompt": "a b a b a", "max_tokens": 3, "dry_multiplier": 0.8,
                                                       "dry_sequence_breakers": ["x%d" % k, "\n"]})
            check(st == 200, "DRY breakers set %d under the sanitizers: %d" % (k, st))
        if ARGS.lora:  # a LoRA adapter: per request, in a mixed batch, the server's scales set and read back
            for k in range(4):
                st, _, _ = raw("POST", "/v1/completions", {"prompt": "x %d" % k, "max_tokens": 4, "n": 2,
                                                           "lora": [{"id": 0, "scale": 0.5 * k}]})
                check(st == 200, "lora under the sanitizers: %d" % st)
            check(raw("POST", "/lora-adapters", [{"id": 0, "scale": 1}])[0] == 200, "POST /lora-adapters")
            check(raw("GET", "/lora-adapters")[0] == 200, "GET /lora-adapters")
            check(raw("POST", "/lora-adapters", "[{")[0] == 400, "a broken POST /lora-adapters")
        codes = random_requests(300, 7)
        results = [None] * 6
        ts = [threading.Thread(target=stream_client, args=(name, "x %d" % i, 2 if i % 2 else 0, results, i))
              for i in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(600)
        test_token_endpoints()
        ok("mixed load on the sanitizer build (300 random requests: %s)" % codes)
        return
    chat_text, comp_text = test_greedy_equals_generate(cl, name)
    pieces = test_streams(cl, name, chat_text, comp_text)
    test_native_completion(cl, name, comp_text)
    test_logit_bias(cl, name)
    test_n_choices(cl, name)
    test_structured_output(cl, name)
    test_grammar(cl, name)
    if ARGS.mode == "full":
        test_llama_samplers(cl, name)
    test_forced_tool_calls(cl, name)
    if ARGS.mode == "cluster":
        results = [None] * 4
        ts = [threading.Thread(target=stream_client, args=(name, "Story %d" % i, 0, results, i)) for i in range(4)]
        for t in ts:
            t.start()
        test_echo(cl, name)  # scored between the streams' steps (the pipeline drained first)
        for t in ts:
            t.join(600)
        check(all(r == "length" for r in results), "4 concurrent streams: %s" % results)
        test_metrics_names()
        ok("4 concurrent streams through the cluster")
        return
    test_responses(cl, name, chat_text)
    test_anthropic(name, chat_text)
    test_prediction(cl, name, chat_text)
    test_logprobs(cl, name)
    test_echo(cl, name)
    test_stop(cl, name, pieces)
    test_token_endpoints()
    test_bad_requests(name)
    test_disconnects(name)
    test_metrics_names()


if __name__ == "__main__":
    main()
