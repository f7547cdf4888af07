#!/usr/bin/env python3
"""launch/bench_serve_client.py — the load client of launch/bench-serve.sh.

Drives one OpenAI-compatible server (loom serve or llama-server) with one
workload and writes what `vllm bench serve` reports, as JSON: completed and
failed requests, request / output / total token throughput, mean, median and
p99 of time to first token (TTFT), time per output token (TPOT, per request:
(E2E - TTFT) / (output tokens - 1)), inter-token latency (ITL: every gap
between two streamed chunks that carry text, all requests together) and
end-to-end latency (E2E), and the longest stall (the largest ITL).

Prompts are token ids (`"prompt": [ids]` on /v1/completions), drawn with a
fixed seed from the ids the server's own /tokenize gives for a fixed English
text, so both servers get the same prompts of an exact length; every request
sets "ignore_eos": true and "temperature": 0, so outputs have exactly
max_tokens tokens (checked against the usage the server reports).

Workloads (subcommands):
  fixed     N requests of P prompt tokens / G output tokens, C at a time
  mixed     S short streams decoding in a closed loop while long prompts
            arrive one after another (a pause between them): the short
            streams' ITL p99 and longest stall
  prefix    a shared system prompt (token ids) + a different question each
  overload  Poisson arrivals at a fixed rate for a while: latency of the
            rejections (429) and of the accepted requests
  soak      C clients in a closed loop for a while, random lengths, a mix of
            streaming / whole completions, chat and client disconnects: RSS
            of the server's processes over time and protocol errors
  report    reads the runs' JSON files and prints the comparison tables

Every workload can poll GET /health from a side thread (--health-interval)
and samples the RSS of the server's processes (--pid, comma-separated).

Needs aiohttp (launch/bench-serve.sh installs it into a private venv). Not
run in CI.
"""
import argparse
import asyncio
import hashlib
import http.client
import json
import math
import os
import random
import sys
import threading
import time
import urllib.parse

TEXT = (
    "The history of the lighthouse is a story about people who lived at the edge of the map. Keepers trimmed "
    "wicks, wound clockwork, polished lenses and wrote the weather into logbooks every four hours, through "
    "storms that kept supply boats away for weeks. In 1822 Augustin Fresnel showed that a lens built from "
    "concentric rings of glass could throw a beam twenty miles while weighing a fraction of a solid lens. "
    "Within a few decades his design lit coasts from Brittany to Japan. Electric lamps, automatic gas "
    "valves and finally solar panels replaced the keepers one station at a time; the last keeper in the "
    "United States left Boston Light in 1998. Today satellites and radio beacons do most of the work, yet "
    "sailors still look for the flash: three seconds dark, one second bright, a signature every chart "
    "records. What would you pack for a month on a rock in the North Atlantic? Bread, tea, oil for the "
    "lamp, a violin, and perhaps a crate of books about mathematics, chemistry, 17th-century painting or "
    "the migration of eels across the Sargasso Sea. Numbers matter too: 42 steps to the lantern room, "
    "3.5 tonnes of glass, 1,000 candle-power in 1850 against 2,000,000 by 1930."
)


# ------------------------------------------------------------------ statistics

def pct(v, p):
    """The p-th percentile with linear interpolation (numpy's default)."""
    if not v:
        return None
    s = sorted(v)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def weighted_pct(v, p):
    """The gap that a random instant falls in, p-th percentile: each gap weighted by its length
    (a 22 s stall is one gap among hundreds, so under 1% of gaps, but 40% of a stream's time)."""
    if not v:
        return None
    s = sorted(v)
    total, acc = sum(s), 0.0
    for x in s:
        acc += x
        if acc >= total * p / 100.0:
            return x
    return s[-1]


def dist(v, scale=1000.0):
    """mean / median / p99 / max of seconds, in milliseconds."""
    if not v:
        return dict(n=0, mean=None, median=None, p99=None, max=None)
    return dict(n=len(v), mean=scale * sum(v) / len(v), median=scale * pct(v, 50), p99=scale * pct(v, 99),
                max=scale * max(v))


class Rec:
    """One request's record."""
    __slots__ = ("cls", "t0", "status", "ttft", "e2e", "chunks", "n_out", "n_prompt", "want_out", "want_prompt",
                 "error", "finish", "cached", "kind", "cancelled")

    def __init__(self, cls, want_prompt, want_out, kind="stream"):
        self.cls, self.want_prompt, self.want_out, self.kind = cls, want_prompt, want_out, kind
        self.t0 = self.ttft = self.e2e = None
        self.status, self.chunks, self.n_out, self.n_prompt = None, [], None, None
        self.error = self.finish = self.cached = None
        self.cancelled = False


def summarize(recs, duration):
    ok = [r for r in recs if r.status == 200 and not r.error and not r.cancelled]
    failed = [r for r in recs if r.error and r.status != 429]
    rejected = [r for r in recs if r.status == 429]
    out_tok = sum(r.n_out or 0 for r in ok)
    in_tok = sum(r.n_prompt or 0 for r in ok)
    ttft = [r.ttft for r in ok if r.ttft is not None]
    e2e = [r.e2e for r in ok]
    tpot = [(r.e2e - r.ttft) / (r.n_out - 1) for r in ok if r.ttft is not None and (r.n_out or 0) > 1]
    itl = [b - a for r in ok for a, b in zip(r.chunks, r.chunks[1:])]
    d = max(duration, 1e-9)
    s = dict(completed=len(ok), failed=len(failed), rejected_429=len(rejected),
             cancelled=sum(1 for r in recs if r.cancelled), duration_s=duration,
             request_throughput=len(ok) / d, output_throughput=out_tok / d, total_token_throughput=(in_tok + out_tok) / d,
             input_tokens=in_tok, output_tokens=out_tok,
             ttft_ms=dist(ttft), tpot_ms=dist(tpot), itl_ms=dist(itl), e2e_ms=dist(e2e),
             max_stall_ms=dist(itl)["max"],
             itl_p999_ms=None if not itl else 1000 * pct(itl, 99.9),
             itl_time_weighted_ms=dict(median=None if not itl else 1000 * weighted_pct(itl, 50),
                                       p99=None if not itl else 1000 * weighted_pct(itl, 99)),
             rejection_latency_ms=dist([r.e2e for r in rejected if r.e2e is not None]),
             wrong_prompt_len=sum(1 for r in ok if r.want_prompt is not None and r.n_prompt is not None
                                  and r.n_prompt != r.want_prompt),
             wrong_output_len=sum(1 for r in ok if r.want_out is not None and r.n_out != r.want_out))
    cached = [r.cached for r in ok if r.cached is not None]
    if cached:
        s["cached_prompt_tokens_mean"] = sum(cached) / len(cached)
    errs = {}
    for r in failed:
        key = "%s: %s" % (r.status, (r.error or "")[:160])
        errs[key] = errs.get(key, 0) + 1
    s["errors"] = dict(sorted(errs.items(), key=lambda kv: -kv[1])[:10])
    return s


# ------------------------------------------------------------------ the machine

def proc_cpu_s(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def loadavg():
    with open("/proc/loadavg") as f:
        return [float(x) for x in f.read().split()[:3]]


class Watch:
    """Side thread: GET /health every `interval` s (its latency and status) and
    the RSS of the server's processes every `rss_every` s."""

    def __init__(self, base, pids, interval, rss_every):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.pids, self.interval, self.rss_every = pids, interval, rss_every
        self.health, self.health_bad, self.rss = [], {}, []
        self.stop_ev = threading.Event()
        self.t_start = time.perf_counter()
        self.th = threading.Thread(target=self.run, daemon=True)

    def start(self):
        self.th.start()
        return self

    def sample_rss(self):
        vals = [proc_rss_mb(p) for p in self.pids]
        if vals and all(v is not None for v in vals):
            self.rss.append((time.perf_counter() - self.t_start, sum(vals)))

    def run(self):
        next_rss = 0.0
        while not self.stop_ev.is_set():
            now = time.perf_counter()
            if self.pids and now >= next_rss:
                self.sample_rss()
                next_rss = now + self.rss_every
            if self.interval > 0:
                # a new connection for every poll, as a load balancer's or Kubernetes' probe opens
                t0 = time.perf_counter()
                conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
                try:
                    conn.request("GET", "/health", headers={"Connection": "close"})
                    r = conn.getresponse()
                    r.read()
                    self.health.append(time.perf_counter() - t0)
                    if r.status != 200:
                        self.health_bad[str(r.status)] = self.health_bad.get(str(r.status), 0) + 1
                except (OSError, http.client.HTTPException) as e:
                    self.health.append(time.perf_counter() - t0)
                    k = type(e).__name__
                    self.health_bad[k] = self.health_bad.get(k, 0) + 1
                finally:
                    conn.close()
                self.stop_ev.wait(self.interval)
            else:
                self.stop_ev.wait(self.rss_every)

    def stop(self):
        self.stop_ev.set()
        self.th.join()
        if self.pids:
            self.sample_rss()
        out = {}
        if self.interval > 0:
            out["health_ms"] = dist(self.health)
            out["health_not_ok"] = self.health_bad
        if self.rss:
            v = [m for _, m in self.rss]
            out["rss_mb"] = dict(first=v[0], last=v[-1], max=max(v), min=min(v), samples=len(v))
            # growth over the second half (after warm-up allocations), MB per minute, least squares
            half = [(t, m) for t, m in self.rss if t >= self.rss[-1][0] / 2]
            if len(half) >= 3:
                n = len(half)
                mt = sum(t for t, _ in half) / n
                mm = sum(m for _, m in half) / n
                var = sum((t - mt) ** 2 for t, _ in half)
                if var > 0:
                    out["rss_mb"]["slope_mb_per_min_second_half"] = 60 * sum((t - mt) * (m - mm) for t, m in half) / var
            out["rss_series"] = [[round(t, 1), round(m, 1)] for t, m in self.rss]
        return out


# ------------------------------------------------------------------ requests

class Client:
    def __init__(self, args, session):
        self.base = args.base.rstrip("/")
        self.model = args.model
        self.session = session
        self.timeout = args.request_timeout

    async def completion(self, rec, prompt, max_tokens, stream=True, chat=False, cancel_after=None):
        """One request; fills rec. prompt: token ids, or a string for chat."""
        import aiohttp
        body = dict(model=self.model, max_tokens=max_tokens, temperature=0, ignore_eos=True, stream=stream)
        if chat:
            body["messages"] = [dict(role="user", content=prompt)]
            url = self.base + "/v1/chat/completions"
        else:
            body["prompt"] = prompt
            url = self.base + "/v1/completions"
        if stream:
            body["stream_options"] = dict(include_usage=True)
        rec.t0 = time.perf_counter()
        done = False
        try:
            async with self.session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)) as r:
                rec.status = r.status
                if r.status != 200:
                    txt = await r.text()
                    rec.e2e = time.perf_counter() - rec.t0
                    try:
                        msg = json.loads(txt)["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        msg = txt[:200]
                    rec.error = "HTTP %d: %s" % (r.status, msg)
                    return
                if not stream:
                    obj = json.loads(await r.read())
                    rec.e2e = time.perf_counter() - rec.t0
                    self._usage(rec, obj)
                    ch = (obj.get("choices") or [{}])[0]
                    rec.finish = ch.get("finish_reason")
                    text = ch.get("text") if not chat else (ch.get("message") or {}).get("content")
                    if not isinstance(text, str) or not rec.finish:
                        rec.error = "a whole response without text or finish_reason"
                    return
                async for raw in r.content:
                    line = raw.strip()
                    if not line or line.startswith(b":"):
                        continue  # event separator or keep-alive comment
                    if not line.startswith(b"data:"):
                        rec.error = "a stream line that is not 'data:': %r" % line[:80]
                        return
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        done = True
                        break
                    obj = json.loads(data)
                    if "error" in obj:
                        rec.error = "error event: %s" % json.dumps(obj["error"])[:200]
                        return
                    now = time.perf_counter()
                    for ch in obj.get("choices") or []:
                        text = ch.get("text") if not chat else (ch.get("delta") or {}).get("content")
                        if text:
                            if rec.ttft is None:
                                rec.ttft = now - rec.t0
                            rec.chunks.append(now)
                        if ch.get("finish_reason"):
                            rec.finish = ch["finish_reason"]
                    if obj.get("usage"):
                        self._usage(rec, obj)
                    if cancel_after is not None and len(rec.chunks) >= cancel_after:
                        rec.cancelled = True
                        rec.e2e = time.perf_counter() - rec.t0
                        r.close()  # drops the connection: the server must cancel the request
                        return
                rec.e2e = (rec.chunks[-1] if rec.chunks else time.perf_counter()) - rec.t0
                if not done:
                    rec.error = "the stream ended without [DONE]"
                elif rec.finish is None:
                    rec.error = "no chunk carried a finish_reason"
                elif rec.n_out is None:
                    rec.error = "no usage chunk"
        except asyncio.TimeoutError:
            rec.error = "timed out after %.0f s" % self.timeout
        except (OSError, ValueError, aiohttp.ClientError) as e:
            rec.error = "%s: %s" % (type(e).__name__, str(e)[:160])
        if rec.e2e is None:
            rec.e2e = time.perf_counter() - rec.t0

    @staticmethod
    def _usage(rec, obj):
        u = obj.get("usage") or {}
        rec.n_out = u.get("completion_tokens")
        rec.n_prompt = u.get("prompt_tokens")
        det = u.get("prompt_tokens_details") or {}
        if det.get("cached_tokens") is not None:
            rec.cached = det["cached_tokens"]
        elif isinstance(obj.get("timings"), dict) and "cache_n" in obj["timings"]:
            rec.cached = obj["timings"]["cache_n"]  # llama-server's own field


async def token_pool(base, session):
    async with session.post(base.rstrip("/") + "/tokenize", json=dict(content=TEXT)) as r:
        if r.status != 200:
            raise SystemExit("bench_serve_client: %s/tokenize answered %d: %s" % (base, r.status, await r.text()))
        ids = (await r.json())["tokens"]
    if len(ids) < 100:
        raise SystemExit("bench_serve_client: /tokenize gave only %d tokens" % len(ids))
    return [t if isinstance(t, int) else t["id"] for t in ids]


async def counters(base, session):
    """loom's counters from GET /metrics (prefix cache, preemptions, responses); {} elsewhere."""
    want = ("loom_prefix_cache_hits_total", "loom_prefix_cache_queries_total", "loom_num_preemptions_total",
            "loom_http_responses_total")
    out = {}
    try:
        async with session.get(base.rstrip("/") + "/metrics") as r:
            if r.status != 200:
                return out
            for line in (await r.text()).splitlines():
                if line.startswith(want):
                    name, _, val = line.rpartition(" ")
                    if "{" in name and not name.startswith("loom_http"):
                        name = name.split("{")[0]
                    out[name] = float(val)
    except (OSError, ValueError):
        pass
    return out


def draw(rng, pool, n):
    return [rng.choice(pool) for _ in range(n)]


# ------------------------------------------------------------------ workloads

async def closed_loop(a, cl, prompts, prompt_len):
    """a.concurrency clients sending PROMPTS one after another; the main summary."""
    recs = [Rec("main", prompt_len, a.output_len) for _ in prompts]
    it = iter(range(len(prompts)))

    async def worker():
        for i in it:
            await cl.completion(recs[i], prompts[i], a.output_len)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(a.concurrency)])
    return dict(main=summarize(recs, time.perf_counter() - t0))


async def w_fixed(a, cl, pool, rng):
    return await closed_loop(a, cl, [draw(rng, pool, a.prompt_len) for _ in range(a.requests)], a.prompt_len)


async def w_mixed(a, cl, pool, rng):
    short, long_ = [], []
    t_end = time.perf_counter() + a.duration

    async def short_worker(k):
        r = random.Random(a.seed * 1000 + k)
        while time.perf_counter() < t_end:
            rec = Rec("short", a.prompt_len, a.output_len)
            short.append(rec)
            await cl.completion(rec, draw(r, pool, a.prompt_len), a.output_len)

    async def long_sender():
        r = random.Random(a.seed * 1000 + 999)
        # the first long prompt once every short stream decodes
        while sum(1 for x in short if x.ttft is not None or x.error) < a.streams:
            await asyncio.sleep(0.05)
        await asyncio.sleep(a.long_gap)
        while time.perf_counter() < t_end:
            rec = Rec("long", a.long_prompt, a.long_output)
            long_.append(rec)
            await cl.completion(rec, draw(r, pool, a.long_prompt), a.long_output)
            await asyncio.sleep(a.long_gap)

    t0 = time.perf_counter()
    await asyncio.gather(*[short_worker(k) for k in range(a.streams)], long_sender())
    d = time.perf_counter() - t0
    return dict(short=summarize(short, d), long=summarize(long_, d))


async def w_prefix(a, cl, pool, rng):
    system = draw(rng, pool, a.system_len)
    prompts = [system + draw(rng, pool, a.prompt_len) for _ in range(a.requests)]
    return await closed_loop(a, cl, prompts, a.system_len + a.prompt_len)


async def w_overload(a, cl, pool, rng):
    recs, tasks = [], []
    t0 = time.perf_counter()
    t_next = t0
    inflight = [0, 0]

    async def one(rec, p):
        inflight[0] += 1
        inflight[1] = max(inflight[1], inflight[0])
        await cl.completion(rec, p, a.output_len)
        inflight[0] -= 1

    while t_next < t0 + a.duration:
        delay = t_next - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        rec = Rec("main", a.prompt_len, a.output_len)
        recs.append(rec)
        tasks.append(asyncio.ensure_future(one(rec, draw(rng, pool, a.prompt_len))))
        t_next += rng.expovariate(a.rate)
    sent = time.perf_counter() - t0
    await asyncio.gather(*tasks)
    s = summarize(recs, time.perf_counter() - t0)
    s.update(offered_rate=a.rate, sent=len(recs), sending_s=sent, max_in_flight=inflight[1])
    return dict(main=s)


async def fill(a, cl, pool, rng):
    """Before a soak: every sequence slot's KV cache written once (a.concurrency prompts of
    a.fill tokens), so that RSS growth during the soak is not KV pages touched the first time."""
    recs = [Rec("fill", a.fill, 1) for _ in range(a.concurrency)]
    await asyncio.gather(*[cl.completion(r, draw(rng, pool, a.fill), 1) for r in recs])
    bad = [r.error for r in recs if r.error]
    if bad:
        raise SystemExit("bench_serve_client: the soak's fill requests failed: %s" % bad[0])


async def w_soak(a, cl, pool, rng):
    recs = []
    t_end = time.perf_counter() + a.duration
    words = TEXT.split()

    async def worker(k):
        r = random.Random(a.seed * 1000 + k)
        while time.perf_counter() < t_end:
            plen, olen, x = r.randint(16, a.prompt_len), r.randint(16, a.output_len), r.random()
            if x < 0.15:
                rec = Rec("whole", plen, olen, kind="whole")
                recs.append(rec)
                await cl.completion(rec, draw(r, pool, plen), olen, stream=False)
            elif x < 0.30:
                rec = Rec("chat", None, olen, kind="chat")
                recs.append(rec)
                start = r.randrange(len(words) - 40)
                await cl.completion(rec, " ".join(words[start:start + r.randint(5, 40)]), olen, chat=True)
            elif x < 0.35:
                rec = Rec("disconnect", plen, None, kind="disconnect")
                recs.append(rec)
                await cl.completion(rec, draw(r, pool, plen), olen, cancel_after=r.randint(1, 8))
            else:
                rec = Rec("stream", plen, olen)
                recs.append(rec)
                await cl.completion(rec, draw(r, pool, plen), olen)

    t0 = time.perf_counter()
    await asyncio.gather(*[worker(k) for k in range(a.concurrency)])
    d = time.perf_counter() - t0
    out = dict(main=summarize([r for r in recs if r.kind != "disconnect"], d))
    disc = [r for r in recs if r.kind == "disconnect"]
    out["main"]["disconnects"] = len(disc)
    out["main"]["disconnect_errors"] = sum(1 for r in disc if r.error)
    return out


WORKLOADS = dict(fixed=w_fixed, mixed=w_mixed, prefix=w_prefix, overload=w_overload, soak=w_soak)


async def run(a):
    import aiohttp
    # a new connection for every request: a kept-alive one that the server closed while idle
    # (llama-server's keep-alive timeout is 5 s) would fail a POST that aiohttp does not retry
    conn = aiohttp.TCPConnector(limit=0, force_close=True)
    pids = [int(p) for p in a.pid.split(",") if p] if a.pid else []
    async with aiohttp.ClientSession(connector=conn) as session:
        pool = await token_pool(a.base, session)
        if not a.model:
            async with session.get(a.base.rstrip("/") + "/v1/models") as r:
                a.model = (await r.json())["data"][0]["id"]
        cl = Client(a, session)
        rng = random.Random(a.seed)
        load = loadavg()
        busy0, cpu0, self0, t0 = machine_busy_s(), sum(proc_cpu_s(p) for p in pids), os.times(), time.time()
        if a.workload == "soak" and a.fill > 0:
            await fill(a, cl, pool, rng)
        c0 = await counters(a.base, session)
        watch = Watch(a.base, pids, a.health_interval, a.rss_every).start()
        res = await WORKLOADS[a.workload](a, cl, pool, rng)
        side = watch.stop()
        c1 = await counters(a.base, session)
        side["server_counters"] = {k: v - c0.get(k, 0) for k, v in c1.items()}
        wall = time.time() - t0
        busy1, cpu1, self1 = machine_busy_s(), sum(proc_cpu_s(p) for p in pids), os.times()
    mine = (self1.user + self1.system) - (self0.user + self0.system)
    params = {k: v for k, v in vars(a).items() if k not in ("out", "func")}
    doc = dict(params=params, label=a.label, load_before=load, load_after=loadavg(), wall_s=wall,
               server_cpus=(cpu1 - cpu0) / wall if pids else None, client_cpus=mine / wall,
               other_cpus=max(0.0, ((busy1 - busy0) - (cpu1 - cpu0) - mine) / wall) if pids else None,
               token_pool_sha=hashlib.sha256(json.dumps(pool).encode()).hexdigest()[:16],
               results=res, **side)
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    brief(doc)


def fmt(x, f="%.1f"):
    return "-" if x is None else f % x


def brief(doc):
    w = doc["params"]["workload"]
    for cls, s in doc["results"].items():
        print("  %-8s %-6s ok %d fail %d 429 %d | out %s tok/s | TTFT p50 %s p99 %s | ITL p50 %s p99 %s max %s | E2E p50 %s ms"
              % (w, cls, s["completed"], s["failed"], s["rejected_429"], fmt(s["output_throughput"]),
                 fmt(s["ttft_ms"]["median"]), fmt(s["ttft_ms"]["p99"]), fmt(s["itl_ms"]["median"]),
                 fmt(s["itl_ms"]["p99"]), fmt(s["itl_ms"]["max"]), fmt(s["e2e_ms"]["median"])), file=sys.stderr)
        if s["errors"]:
            print("  errors: %s" % json.dumps(s["errors"]), file=sys.stderr)
    if "health_ms" in doc:
        print("  /health p50 %s p99 %s max %s ms, not ok: %s" % (fmt(doc["health_ms"]["median"]), fmt(doc["health_ms"]["p99"]),
              fmt(doc["health_ms"]["max"]), doc["health_not_ok"] or 0), file=sys.stderr)
    if "rss_mb" in doc:
        print("  RSS %s" % json.dumps({k: round(v, 2) for k, v in doc["rss_mb"].items()}), file=sys.stderr)
    print("  load %s, other processes %s CPUs, server %s CPUs, client %.2f CPUs" % (
        doc["load_before"], fmt(doc["other_cpus"], "%.2f"), fmt(doc["server_cpus"], "%.2f"), doc["client_cpus"]),
        file=sys.stderr)


# ------------------------------------------------------------------ report
# ------------------------------------------------------------------ report

def report(runs_path, out_path, meta):
    runs = []
    for line in open(runs_path):
        wl, var, kind, rnd, f, cmd = line.rstrip("\n").split("\t")
        runs.append(dict(workload=wl, variant=var, kind=kind, round=int(rnd), command=cmd, data=json.load(open(f))))

    def sel(wl, var, kind):
        return [r["data"] for r in runs if r["workload"] == wl and r["variant"] == var and r["kind"] == kind]

    def mean(v):
        v = [x for x in v if x is not None]
        return sum(v) / len(v) if v else None

    def m(docs, cls, *path):
        """mean over rounds of results[cls][path...]"""
        vals = []
        for d in docs:
            x = d["results"].get(cls)
            for k in path:
                x = None if x is None else x.get(k)
            vals.append(x)
        return mean(vals)

    def ratio(a, b):
        return None if a is None or b is None or b == 0 else a / b

    def other(docs):
        v = [d["other_cpus"] for d in docs if d.get("other_cpus") is not None]
        return max(v) if v else None

    def load(docs):
        return max([d["load_before"][0] for d in docs] or [0])

    def variants(wl):
        return list(dict.fromkeys(r["variant"] for r in runs if r["workload"] == wl))

    def verdict(x, ok):
        return "" if x is None else ("meets" if ok(x) else "MISSES")

    summary = dict(tool="launch/bench-serve.sh", meta=meta, tables={})
    P = print

    if any(r["workload"] == "fixed" for r in runs):
        P("\n== fixed: 64-token prompts, 128 output tokens (mean over rounds) ==")
        P("%-5s | %-23s | %-25s | %-15s | %-15s | %-15s | %s" % (
            "conc", "output tok/s loom llama", "TTFT p50 ms loom llama", "TPOT p50 ms", "ITL p99 ms", "E2E p50 ms",
            "load / other CPUs"))
        rows = []
        for var in variants("fixed"):
            lo, ll = sel("fixed", var, "loom"), sel("fixed", var, "llama")
            row = dict(concurrency=int(var[1:]))
            for name, docs in (("loom", lo), ("llama", ll)):
                row[name] = dict(output_throughput=m(docs, "main", "output_throughput"),
                                 request_throughput=m(docs, "main", "request_throughput"),
                                 ttft_p50=m(docs, "main", "ttft_ms", "median"), ttft_p99=m(docs, "main", "ttft_ms", "p99"),
                                 tpot_p50=m(docs, "main", "tpot_ms", "median"), itl_p99=m(docs, "main", "itl_ms", "p99"),
                                 itl_max=m(docs, "main", "itl_ms", "max"), e2e_p50=m(docs, "main", "e2e_ms", "median"),
                                 failed=sum(d["results"]["main"]["failed"] for d in docs),
                                 rounds=[d["results"]["main"]["output_throughput"] for d in docs])
            row["throughput_ratio"] = ratio(row["loom"]["output_throughput"], row["llama"]["output_throughput"])
            row["ttft_p50_ratio"] = ratio(row["loom"]["ttft_p50"], row["llama"]["ttft_p50"])
            row["load"], row["other_cpus"] = load(lo + ll), other(lo + ll)
            rows.append(row)
            a, b = row["loom"], row["llama"]
            P("%-5d | %7s %7s %5sx | %7s %7s %5sx | %7s %7s | %7s %7s | %7s %7s | %.1f / %s" % (
                row["concurrency"], fmt(a["output_throughput"]), fmt(b["output_throughput"]),
                fmt(row["throughput_ratio"], "%.2f"), fmt(a["ttft_p50"]), fmt(b["ttft_p50"]),
                fmt(row["ttft_p50_ratio"], "%.2f"), fmt(a["tpot_p50"]), fmt(b["tpot_p50"]), fmt(a["itl_p99"]),
                fmt(b["itl_p99"]), fmt(a["e2e_p50"]), fmt(b["e2e_p50"]), row["load"], fmt(row["other_cpus"], "%.2f")))
        for row in rows:
            P("  c=%d: output tok/s %sx (target >= 1.2x: %s), TTFT p50 %sx (target <= 1x: %s)%s" % (
                row["concurrency"], fmt(row["throughput_ratio"], "%.2f"),
                verdict(row["throughput_ratio"], lambda x: x >= 1.2), fmt(row["ttft_p50_ratio"], "%.2f"),
                verdict(row["ttft_p50_ratio"], lambda x: x <= 1.0),
                "" if not (row["loom"]["failed"] or row["llama"]["failed"]) else
                " FAILED requests: loom %d, llama %d" % (row["loom"]["failed"], row["llama"]["failed"])))
        summary["tables"]["fixed"] = rows

    if any(r["workload"] == "mixed" for r in runs):
        P("\n== mixed: short streams (64 / 128) decoding while 1,024-token prompts arrive ==")
        rows = []
        for var in variants("mixed"):
            lo, ll = sel("mixed", var, "loom"), sel("mixed", var, "llama")
            row = dict(variant=var)
            for name, docs in (("loom", lo), ("llama", ll)):
                row[name] = dict(short_itl_p50=m(docs, "short", "itl_ms", "median"),
                                 short_itl_p99=m(docs, "short", "itl_ms", "p99"),
                                 short_max_stall=m(docs, "short", "itl_ms", "max"),
                                 short_itl_p999=m(docs, "short", "itl_p999_ms"),
                                 short_itl_tw_p50=m(docs, "short", "itl_time_weighted_ms", "median"),
                                 short_itl_tw_p99=m(docs, "short", "itl_time_weighted_ms", "p99"),
                                 short_tpot_p50=m(docs, "short", "tpot_ms", "median"),
                                 short_output_throughput=m(docs, "short", "output_throughput"),
                                 long_ttft_p50=m(docs, "long", "ttft_ms", "median"),
                                 long_completed=m(docs, "long", "completed"),
                                 failed=sum(d["results"][c]["failed"] for d in docs for c in ("short", "long")))
            row["itl_p99_ratio"] = ratio(row["loom"]["short_itl_p99"], row["llama"]["short_itl_p99"])
            row["load"], row["other_cpus"] = load(lo + ll), other(lo + ll)
            rows.append(row)
            kinds = [k for k, docs in (("loom", lo), ("llama", ll)) if docs]
            P("%-6s %-22s %-22s %-22s %-22s %-22s %-22s" % (var, "short ITL p50 ms", "short ITL p99 ms",
              "longest stall ms", "short out tok/s", "long TTFT p50 ms", "long prompts done"))
            for name in kinds:
                x = row[name]
                P("%-6s %-22s %-22s %-22s %-22s %-22s %-22s" % (name, fmt(x["short_itl_p50"]), fmt(x["short_itl_p99"]),
                  fmt(x["short_max_stall"]), fmt(x["short_output_throughput"]), fmt(x["long_ttft_p50"]),
                  fmt(x["long_completed"])))
            for name in kinds:
                x = row[name]
                P("  %-5s short ITL p99.9 %s ms; time-weighted ITL (the gap a random instant of a stream falls in) "
                  "p50 %s p99 %s ms" % (name, fmt(x["short_itl_p999"]), fmt(x["short_itl_tw_p50"]),
                                        fmt(x["short_itl_tw_p99"])))
            row["itl_tw_p99_ratio"] = ratio(row["loom"]["short_itl_tw_p99"], row["llama"]["short_itl_tw_p99"])
            if not ll:
                P("  (loom alone; load %.1f, other CPUs %s)" % (row["load"], fmt(row["other_cpus"], "%.2f")))
                continue
            P("  short streams' ITL p99 loom/llama %sx (target <= 0.5x: %s), time-weighted p99 %sx; load %.1f, "
              "other CPUs %s%s" % (
                fmt(row["itl_p99_ratio"], "%.2f"), verdict(row["itl_p99_ratio"], lambda x: x <= 0.5),
                fmt(row["itl_tw_p99_ratio"], "%.2f"), row["load"],
                fmt(row["other_cpus"], "%.2f"),
                "" if not (row["loom"]["failed"] or row["llama"]["failed"]) else
                "; FAILED requests: loom %d, llama %d" % (row["loom"]["failed"], row["llama"]["failed"])))
        summary["tables"]["mixed"] = rows

    if any(r["workload"] == "prefix" for r in runs):
        P("\n== prefix: shared 512-token system prompt + 32-token question, 64 output tokens, concurrency 4 ==")
        rows = []
        for var in variants("prefix"):
            lo, ll = sel("prefix", var, "loom"), sel("prefix", var, "llama")
            row = dict(variant=var)
            P("%-6s %-16s %-16s %-16s %-16s %-16s %-18s" % ("", "TTFT p50 ms", "TTFT p99 ms", "E2E p50 ms",
              "out tok/s", "req/s", "cached tok/req"))
            for name, docs in (("loom", lo), ("llama", ll)):
                row[name] = dict(ttft_p50=m(docs, "main", "ttft_ms", "median"), ttft_p99=m(docs, "main", "ttft_ms", "p99"),
                                 e2e_p50=m(docs, "main", "e2e_ms", "median"),
                                 output_throughput=m(docs, "main", "output_throughput"),
                                 request_throughput=m(docs, "main", "request_throughput"),
                                 cached=m(docs, "main", "cached_prompt_tokens_mean") or mean(
                                     [d["server_counters"]["loom_prefix_cache_hits_total"] / max(1, d["results"]["main"]["completed"])
                                      for d in docs if "loom_prefix_cache_hits_total" in d.get("server_counters", {})]),
                                 failed=sum(d["results"]["main"]["failed"] for d in docs))
                x = row[name]
                P("%-6s %-16s %-16s %-16s %-16s %-16s %-18s" % (name, fmt(x["ttft_p50"]), fmt(x["ttft_p99"]),
                  fmt(x["e2e_p50"]), fmt(x["output_throughput"]), fmt(x["request_throughput"], "%.2f"),
                  fmt(x["cached"])))
            row["ttft_p50_ratio"] = ratio(row["loom"]["ttft_p50"], row["llama"]["ttft_p50"])
            row["load"], row["other_cpus"] = load(lo + ll), other(lo + ll)
            P("  TTFT p50 loom/llama %sx; load %.1f, other CPUs %s" % (fmt(row["ttft_p50_ratio"], "%.2f"), row["load"],
              fmt(row["other_cpus"], "%.2f")))
            rows.append(row)
        summary["tables"]["prefix"] = rows

    if any(r["workload"] == "overload" for r in runs):
        P("\n== overload: Poisson arrivals at twice the saturation rate (64 / 128) ==")
        rows = []
        for var in variants("overload"):
            lo, ll = sel("overload", var, "loom"), sel("overload", var, "llama")
            row = dict(variant=var)
            P("%-6s %-9s %-6s %-6s %-6s %-6s %-15s %-15s %-15s %-15s %-9s" % (
                "", "offered/s", "sent", "done", "429", "failed", "429 p50/p99 ms", "TTFT p50/p99 s", "E2E p50/p99 s",
                "E2E max s", "in flight"))
            for name, docs in (("loom", lo), ("llama", ll)):
                g = lambda *k: m(docs, "main", *k)
                row[name] = dict(offered_rate=g("offered_rate"), sent=g("sent"), completed=g("completed"),
                                 rejected=g("rejected_429"), failed=g("failed"),
                                 reject_p50=g("rejection_latency_ms", "median"), reject_p99=g("rejection_latency_ms", "p99"),
                                 ttft_p50=g("ttft_ms", "median"), ttft_p99=g("ttft_ms", "p99"),
                                 e2e_p50=g("e2e_ms", "median"), e2e_p99=g("e2e_ms", "p99"), e2e_max=g("e2e_ms", "max"),
                                 max_in_flight=g("max_in_flight"), output_throughput=g("output_throughput"))
                x = row[name]
                s1 = lambda v: None if v is None else v / 1000
                P("%-6s %-9s %-6s %-6s %-6s %-6s %-15s %-15s %-15s %-15s %-9s" % (
                    name, fmt(x["offered_rate"], "%.2f"), fmt(x["sent"], "%.0f"), fmt(x["completed"], "%.0f"),
                    fmt(x["rejected"], "%.0f"), fmt(x["failed"], "%.0f"),
                    "%s / %s" % (fmt(x["reject_p50"]), fmt(x["reject_p99"])),
                    "%s / %s" % (fmt(s1(x["ttft_p50"]), "%.2f"), fmt(s1(x["ttft_p99"]), "%.2f")),
                    "%s / %s" % (fmt(s1(x["e2e_p50"]), "%.2f"), fmt(s1(x["e2e_p99"]), "%.2f")),
                    fmt(s1(x["e2e_max"]), "%.2f"), fmt(x["max_in_flight"], "%.0f")))
            row["load"], row["other_cpus"] = load(lo + ll), other(lo + ll)
            P("  load %.1f, other CPUs %s" % (row["load"], fmt(row["other_cpus"], "%.2f")))
            rows.append(row)
        summary["tables"]["overload"] = rows

    if any(r["workload"] == "multi" for r in runs):
        P("\n== two ranks: fixed workload, loom --tp 2 / --pp 2 (mpirun, threads/2 a rank) vs llama-server ==")
        P("%-5s | %-30s | %-30s | %-13s | %s" % ("conc", "output tok/s tp2 pp2 llama", "TTFT p50 ms tp2 pp2 llama",
          "ratio tp2 pp2", "load / other CPUs"))
        rows = []
        for var in variants("multi"):
            t2, p2, ll = sel("multi", var, "tp2"), sel("multi", var, "pp2"), sel("multi", var, "llama")
            row = dict(concurrency=int(var[1:]))
            for name, docs in (("tp2", t2), ("pp2", p2), ("llama", ll)):
                row[name] = dict(output_throughput=m(docs, "main", "output_throughput"),
                                 ttft_p50=m(docs, "main", "ttft_ms", "median"), tpot_p50=m(docs, "main", "tpot_ms", "median"),
                                 itl_p99=m(docs, "main", "itl_ms", "p99"),
                                 failed=sum(d["results"]["main"]["failed"] for d in docs))
            row["tp2_ratio"] = ratio(row["tp2"]["output_throughput"], row["llama"]["output_throughput"])
            row["pp2_ratio"] = ratio(row["pp2"]["output_throughput"], row["llama"]["output_throughput"])
            row["load"], row["other_cpus"] = load(t2 + p2 + ll), other(t2 + p2 + ll)
            rows.append(row)
            P("%-5d | %9s %9s %9s | %9s %9s %9s | %5sx %5sx | %.1f / %s%s" % (
                row["concurrency"], fmt(row["tp2"]["output_throughput"]), fmt(row["pp2"]["output_throughput"]),
                fmt(row["llama"]["output_throughput"]), fmt(row["tp2"]["ttft_p50"]), fmt(row["pp2"]["ttft_p50"]),
                fmt(row["llama"]["ttft_p50"]), fmt(row["tp2_ratio"], "%.2f"), fmt(row["pp2_ratio"], "%.2f"), row["load"],
                fmt(row["other_cpus"], "%.2f"),
                "" if not any(row[k]["failed"] for k in ("tp2", "pp2", "llama")) else
                "  FAILED: tp2 %d pp2 %d llama %d" % tuple(row[k]["failed"] for k in ("tp2", "pp2", "llama"))))
        summary["tables"]["multi"] = rows

    P("\n== GET /health while serving (polled every 0.1 s; target p99 < 20 ms at full load) ==")
    P("%-10s %-6s %-6s | %9s %9s %9s | %s" % ("workload", "", "server", "p50 ms", "p99 ms", "max ms", "not ok"))
    rows = []
    for wl in dict.fromkeys(r["workload"] for r in runs):
        for var in variants(wl):
            for kind in dict.fromkeys(r["kind"] for r in runs if r["workload"] == wl):
                docs = [d for d in sel(wl, var, kind) if "health_ms" in d]
                if not docs:
                    continue
                bad = {}
                for d in docs:
                    for k, v in d["health_not_ok"].items():
                        bad[k] = bad.get(k, 0) + v
                row = dict(workload=wl, variant=var, server=kind, p50=mean([d["health_ms"]["median"] for d in docs]),
                           p99=mean([d["health_ms"]["p99"] for d in docs]),
                           max=max([d["health_ms"]["max"] or 0 for d in docs]), not_ok=bad)
                rows.append(row)
                P("%-10s %-6s %-6s | %9s %9s %9s | %s" % (wl, var, kind, fmt(row["p50"]), fmt(row["p99"]),
                  fmt(row["max"]), bad or "-"))
    summary["tables"]["health"] = rows

    if any(r["workload"] == "soak" for r in runs):
        P("\n== soak: N clients, random lengths, streaming / whole / chat / 5% disconnects ==")
        rows = []
        for r in runs:
            if r["workload"] != "soak":
                continue
            d = r["data"]
            s = d["results"]["main"]
            rss = d.get("rss_mb", {})
            row = dict(server=r["kind"], duration_s=s["duration_s"], completed=s["completed"], failed=s["failed"],
                       wrong_output_len=s["wrong_output_len"], disconnects=s.get("disconnects"),
                       disconnect_errors=s.get("disconnect_errors"), errors=s["errors"],
                       output_throughput=s["output_throughput"], rss_first=rss.get("first"), rss_last=rss.get("last"),
                       rss_max=rss.get("max"), rss_slope=rss.get("slope_mb_per_min_second_half"),
                       health_p99=(d.get("health_ms") or {}).get("p99"), load=d["load_before"][0],
                       other_cpus=d.get("other_cpus"))
            rows.append(row)
            P("%s: %.0f s, %d requests completed, %d failed (protocol errors), %d wrong output length, %s disconnects "
              "(%s errors), %.1f output tok/s; RSS %s -> %s MB (max %s, second half %s MB/min); /health p99 %s ms; "
              "load %.1f, other CPUs %s" % (
                  row["server"], row["duration_s"], row["completed"], row["failed"], row["wrong_output_len"],
                  row["disconnects"], row["disconnect_errors"], row["output_throughput"], fmt(row["rss_first"]),
                  fmt(row["rss_last"]), fmt(row["rss_max"]), fmt(row["rss_slope"], "%+.2f"), fmt(row["health_p99"]),
                  row["load"], fmt(row["other_cpus"], "%.2f")))
            if row["errors"]:
                P("  errors: %s" % json.dumps(row["errors"]))
        summary["tables"]["soak"] = rows

    summary["runs"] = [dict(workload=r["workload"], variant=r["variant"], server=r["kind"], round=r["round"],
                            command=r["command"], output=r["data"]) for r in runs]
    with open(out_path, "w") as f:
        json.dump(summary, f, indent=1)
    P("\n%s" % json.dumps(meta))
    P("JSON: %s (every run: %s)" % (out_path, os.path.dirname(os.path.abspath(runs_path))))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="workload", required=True)
    for name in WORKLOADS:
        q = sub.add_parser(name)
        q.add_argument("--base", required=True, help="server URL, e.g. http://127.0.0.1:8080")
        q.add_argument("--model", default="", help="the 'model' field sent (default: the first of GET /v1/models)")
        q.add_argument("--label", default="", help="stored in the JSON (e.g. loom, llama)")
        q.add_argument("--out", required=True, help="JSON file to write")
        q.add_argument("--pid", default="", help="server process ids (comma-separated): RSS and CPU time")
        q.add_argument("--seed", type=int, default=1)
        q.add_argument("--health-interval", type=float, default=0.0, help="seconds between /health polls (0: none)")
        q.add_argument("--rss-every", type=float, default=2.0, help="seconds between RSS samples")
        q.add_argument("--request-timeout", type=float, default=600.0)
        q.add_argument("--prompt-len", type=int, default=64)
        q.add_argument("--output-len", type=int, default=128)
        q.add_argument("--concurrency", type=int, default=1)
        q.add_argument("--requests", type=int, default=16)
        q.add_argument("--duration", type=float, default=30.0, help="seconds (mixed, overload, soak)")
        q.add_argument("--streams", type=int, default=4, help="mixed: short streams")
        q.add_argument("--long-prompt", type=int, default=1024, help="mixed: long prompt tokens")
        q.add_argument("--long-output", type=int, default=16, help="mixed: long requests' output tokens")
        q.add_argument("--long-gap", type=float, default=1.0, help="mixed: seconds between long requests")
        q.add_argument("--system-len", type=int, default=512, help="prefix: shared system prompt tokens")
        q.add_argument("--rate", type=float, default=1.0, help="overload: requests per second offered")
        q.add_argument("--fill", type=int, default=0,
                       help="soak: first send --concurrency prompts of this many tokens (max_tokens 1), unmeasured")
    rp = sub.add_parser("report")
    rp.add_argument("runs", help="TSV of the runs (written by bench-serve.sh)")
    rp.add_argument("--out", required=True, help="summary JSON to write")
    rp.add_argument("--meta", default="{}", help="JSON object stored with the summary")
    a = p.parse_args()
    if a.workload == "report":
        report(a.runs, a.out, json.loads(a.meta))
    else:
        asyncio.run(run(a))


if __name__ == "__main__":
    main()
