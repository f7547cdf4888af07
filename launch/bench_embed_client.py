#!/usr/bin/env python3
"""launch/bench_embed_client.py — the load client of launch/bench-embed.sh.

C clients in a closed loop send N POST /v1/embeddings requests in all to one
server (loom serve or llama-server --embedding), each request a list of I
inputs of exactly P token ids (drawn with a fixed seed from 1000..V-1, so
both servers get the same inputs and neither adds special tokens); with
--tokens P1,P2,... request r's inputs have length P[r mod the count] (short
queries among long documents), and the latency is also given per length. Every
response is checked (I embeddings of the same width, unit length) and the
run is written as JSON: requests/s, inputs/s, tokens/s, latency mean /
median / p99 in ms, and the CPUs other processes used meanwhile.

Standard library only (threads, http.client).
"""
import argparse
import http.client
import json
import math
import os
import random
import threading
import time


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pids):
    t = 0.0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                v = f.read().rsplit(")", 1)[1].split()
            t += (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return t


def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(math.ceil(p / 100.0 * len(v))) - 1)] if v else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="http://host:port")
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--inputs", type=int, default=1, help="inputs per request")
    ap.add_argument("--tokens", default="32", help="token ids per input (a comma-separated list: by turns)")
    ap.add_argument("--vocab", type=int, required=True)
    ap.add_argument("--pid", default="", help="the server's process ids (comma-separated)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    host, port = a.base.split("//", 1)[1].rsplit(":", 1)
    rng = random.Random(7)
    lens = [int(x) for x in a.tokens.split(",")]
    plen = [lens[r % len(lens)] for r in range(a.requests)]
    bodies = [json.dumps({"input": [[rng.randrange(1000, a.vocab) for _ in range(plen[r])] for _ in range(a.inputs)],
                          "model": "m", "encoding_format": "float"}) for r in range(a.requests)]
    lat, lat_of, errors, dims, lock, nxt = [], {}, [], set(), threading.Lock(), [0]

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=600)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.requests:
                break
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/embeddings", bodies[i], {"Content-Type": "application/json"})
                r = conn.getresponse()
                doc = json.loads(r.read())
            except (OSError, http.client.HTTPException, ValueError) as ex:
                conn.close()
                conn = http.client.HTTPConnection(host, int(port), timeout=600)
                with lock:
                    errors.append("request %d: %s" % (i, ex))
                continue
            dt = time.perf_counter() - t0
            data = doc.get("data") if r.status == 200 else None
            bad = None
            if not data or len(data) != a.inputs:
                bad = "HTTP %d, %s" % (r.status, str(doc)[:200])
            else:
                for d in data:
                    e = d.get("embedding") or []
                    norm = math.sqrt(sum(x * x for x in e))
                    if not e or abs(norm - 1.0) > 1e-3:
                        bad = "an embedding of %d floats, norm %.4f" % (len(e), norm)
            with lock:
                if bad:
                    errors.append("request %d: %s" % (i, bad))
                else:
                    lat.append(dt)
                    lat_of.setdefault(plen[i], []).append(dt)
                    dims.update(len(d["embedding"]) for d in data)

    pids = [int(p) for p in a.pid.split(",") if p]
    busy0, own0, t0 = machine_busy_s(), proc_cpu_s(pids), time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    other = max(0.0, (machine_busy_s() - busy0) - (proc_cpu_s(pids) - own0)) / wall if pids else float("nan")
    ok = len(lat)
    res = {"label": a.label, "concurrency": a.concurrency, "requests": a.requests, "inputs": a.inputs,
           "tokens": a.tokens, "completed": ok, "errors": errors[:10], "n_errors": len(errors), "dims": sorted(dims),
           "wall_s": wall, "request_throughput": ok / wall, "input_throughput": ok * a.inputs / wall,
           "token_throughput": a.inputs * sum(plen[:ok]) / wall if ok == a.requests else float("nan"),
           "latency_ms": {"mean": 1000 * sum(lat) / ok if ok else float("nan"), "median": 1000 * pct(lat, 50),
                          "p99": 1000 * pct(lat, 99)},
           "latency_ms_by_tokens": {str(n): {"median": 1000 * pct(v, 50), "p99": 1000 * pct(v, 99)}
                                    for n, v in sorted(lat_of.items())},
           "other_cpus": other, "loadavg": open("/proc/loadavg").read().split()[:3]}
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print("%-6s c=%-3d %6.1f req/s %7.1f inputs/s  latency median %.1f p99 %.1f ms  errors %d" % (
        a.label, a.concurrency, res["request_throughput"], res["input_throughput"], res["latency_ms"]["median"],
        res["latency_ms"]["p99"], len(errors)))
    if len(lens) > 1:
        print("        " + "  ".join("%d tokens: median %.1f p99 %.1f ms" % (int(n), v["median"], v["p99"])
                                      for n, v in res["latency_ms_by_tokens"].items()))
    if errors:
        print("\n".join(errors[:5]))
    return 1 if errors or len(dims) > 1 else 0


if __name__ == "__main__":
    raise SystemExit(main())
