#!/usr/bin/env python3
"""Soak: mixed traffic through a release aisbf for a long time, watching memory and fds.

Traffic (concurrent client threads, keep-alive): stream and not, every provider type (openai,
anthropic, google, ollama) and a rotation of two openai providers; agent-sized conversations
(50-400 KB, as coding agents send every turn) beside small ones; 10 % of requests with an
injected upstream fault (connection reset, 500, 429, stall, malformed body, reset
mid-stream) and some client disconnects mid-stream; every BIG_EVERY seconds one 3 MB request.
A rotation request's fault hits only its first provider, so it must still succeed.

Every SAMPLE seconds the aisbf process's RSS and open fds are sampled. At the end it prints:
  RSS flat / fds flat: mean of the last 10 minutes within 10 % of minutes 5-15 (for a run
                       shorter than an hour the windows scale: last 1/6, and 1/12..1/4)
  unexpected errors (must be 0): a no-fault request that did not complete, a stream that
                       neither completed nor ended in one error event, a transport error
  incomplete non-failed streams (must be 0)
and exits 1 when any check fails.

The upstream is a small asyncio HTTP/1.1 mock in this file (stdlib only) speaking each
provider's wire format (bodies from bench/providers.py): nginx cannot inject faults per request.

usage: bench/soak.py [--seconds 3600] [--clients 8] [--sample 5] [--big-every 300]
       (release binary: target/release/aisbf, or $AISBF_BIN)
"""
import argparse
import asyncio
import http.client
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import providers as P  # noqa: E402  (the native bodies of every provider type)

# SOAK_PORT moves both (two soaks side by side, e.g. two builds).
MOCK_PORT = int(os.environ.get("SOAK_PORT", 18190))
GW_PORT = MOCK_PORT + 1
WORK = os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), f"aisbf-soak-{MOCK_PORT}")
FAULTS = ["reset", "500", "429", "stall", "malformed", "midreset"]
STALL_SECONDS = 6  # longer than the gateway's first-byte / idle timeouts below (3 s)

O_FULL, O_SSE = P.openai_bodies()
A_FULL, A_SSE = P.anthropic_bodies()
G_FULL, G_SSE = P.gemini_bodies()
L_FULL, L_ND = P.ollama_bodies()


def events(text, sep):
    """A native stream cut into its events (each sent as one chunk)."""
    return [e + sep for e in text.split(sep) if e]


STREAMS = {
    "openai": ("text/event-stream", events(O_SSE, "\n\n")),
    "anthropic": ("text/event-stream", events(A_SSE, "\n\n")),
    "google": ("text/event-stream", events(G_SSE, "\n\n")),
    "ollama": ("application/x-ndjson", events(L_ND, "\n")),
}
FULL = {"openai": O_FULL, "anthropic": A_FULL, "google": G_FULL, "ollama": L_FULL}


# ---------------------------------------------------------------- mock upstream


def kind_of(path):
    if path.endswith("/chat/completions"):
        return "openai"
    if path.endswith("/v1/messages"):
        return "anthropic"
    if ":generateContent" in path or ":streamGenerateContent" in path:
        return "google"
    if path.endswith("/api/chat"):
        return "ollama"
    return None


def fault_of(body, path):
    """`FAULT:<kind>:<scope>` in the request (scope `a`: only the rotation's first provider)."""
    i = body.find(b"FAULT:")
    if i < 0:
        return None
    kind, scope = body[i + 6:i + 40].split(b'"')[0].decode(errors="replace").split(":")[:2]
    if scope == "a" and not path.startswith("/a/"):
        return None
    return kind


def head(status, ctype, extra=""):
    reason = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error", 404: "Not Found"}
    return (f"HTTP/1.1 {status} {reason.get(status, 'X')}\r\ncontent-type: {ctype}\r\n{extra}").encode()


def abort(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:  # RST, not FIN: what a crashed upstream or a middlebox does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def send_full(writer, status, ctype, body, extra=""):
    b = body.encode()
    writer.write(head(status, ctype, extra) + f"content-length: {len(b)}\r\n\r\n".encode() + b)
    await writer.drain()


async def send_chunk(writer, data):
    b = data.encode() if isinstance(data, str) else data
    writer.write(f"{len(b):x}\r\n".encode() + b + b"\r\n")
    await writer.drain()


async def answer(writer, path, body):
    kind = kind_of(path)
    if kind is None:
        await send_full(writer, 404, "application/json", '{"error":{"message":"no route"}}')
        return True
    try:
        req = json.loads(body)
    except ValueError:
        req = {}
    stream = {"openai": req.get("stream") is True, "anthropic": req.get("stream") is True,
              "google": ":streamGenerateContent" in path, "ollama": req.get("stream", True) is not False}[kind]
    fault = fault_of(body, path)
    if fault == "reset":
        abort(writer)
        return False
    if fault == "500":
        await send_full(writer, 500, "application/json",
                        '{"error":{"message":"injected","type":"server_error","code":500}}')
        return True
    if fault == "429":
        await send_full(writer, 429, "application/json",
                        '{"error":{"message":"slow down","type":"rate_limit_error","code":429}}',
                        # 0 s: a 429 cools the provider at once for Retry-After (by design);
                        # with 10 % faults a longer window would turn healthy traffic into 503s.
                        "retry-after: 0\r\n")
        return True
    if fault == "stall" and not stream:
        await asyncio.sleep(STALL_SECONDS)
        abort(writer)
        return False
    if fault == "malformed" and not stream:
        await send_full(writer, 200, "application/json", "<html>definitely not JSON")
        return True
    if not stream:
        await send_full(writer, 200, "application/json", FULL[kind])
        return True
    ctype, evs = STREAMS[kind]
    writer.write(head(200, ctype, "transfer-encoding: chunked\r\n") + b"\r\n")
    for n, e in enumerate(evs):
        if n == 2 and fault in ("stall", "malformed", "midreset"):
            if fault == "stall":
                await asyncio.sleep(STALL_SECONDS)
            elif fault == "malformed":
                await send_chunk(writer, "data: {\"choices\": [ broken\n\n" if kind != "ollama" else "{broken\n")
                await asyncio.sleep(0.05)
            abort(writer)
            return False
        await send_chunk(writer, e)
        await asyncio.sleep(0.001)
    await send_chunk(writer, b"")
    return True


async def handle(reader, writer):
    try:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = raw.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if l)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if not await answer(writer, path, body):
                return
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.transport.abort() if writer.transport.is_closing() else writer.close()


def run_mock(ready):
    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", MOCK_PORT, backlog=1024,
                                            limit=1 << 20)
        ready.set()
        async with server:
            await server.serve_forever()
    asyncio.run(main())


# ---------------------------------------------------------------- gateway


def gateway_config(d):
    m = f"http://127.0.0.1:{MOCK_PORT}"
    p = lambda kind, ep: {"type": kind, "endpoint": ep, "api_key": "sk-soak-upstream",
                          "models": [{"name": "bench-model"}]}
    providers = {"openai": p("openai", m + "/o/v1"), "anthropic": p("anthropic", m + "/o"),
                 "google": p("google", m + "/o"), "ollama": p("ollama", m + "/o"),
                 "rot-a": p("openai", m + "/a/v1"), "rot-b": p("openai", m + "/b/v1")}
    rot = {"providers": [{"provider_id": "rot-a", "models": [{"name": "bench-model"}]},
                         {"provider_id": "rot-b", "models": [{"name": "bench-model"}]}]}
    files = {
        "aisbf.json": {
            "server": {"host": "127.0.0.1", "port": GW_PORT},
            # Faults are injected at 10 %: a cooldown would turn the healthy 90 % into 503s,
            # and this run is about memory, fds and stream integrity, not the cooldown policy.
            "error_tracking": {"max_failures": 1000000000, "cooldown_seconds": 1},
            "timeouts": {"connect_seconds": 3, "first_byte_seconds": 3, "idle_seconds": 3},
        },
        "providers.json": {"providers": providers},
        "rotations.json": {"rotations": {"rot": rot}},
        "autoselect.json": {"autoselect": {}},
    }
    os.makedirs(d, exist_ok=True)
    for name, v in files.items():
        with open(os.path.join(d, name), "w") as f:
            json.dump(v, f)


def wait_http(url, secs=30):
    end = time.time() + secs
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def rss_fds(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss / 1024.0, len(os.listdir(f"/proc/{pid}/fd"))


# ---------------------------------------------------------------- client traffic

FILLER = "The function reads the configuration, validates each field and returns the typed value. "


def conversation(kb, marker):
    """A coding agent's turn: system prompt, many earlier turns with tool calls, ~`kb` KB."""
    msgs = [{"role": "system", "content": "You are a coding agent. " + FILLER * 20}]
    n = 0
    while sum(len(m.get("content") or "") for m in msgs) < kb * 1024:
        n += 1
        msgs.append({"role": "user", "content": f"step {n}: " + FILLER * random.randint(5, 40)})
        msgs.append({"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{n}", "type": "function", "function": {"name": "read_file",
                                                                 "arguments": json.dumps({"path": f"src/m{n}.rs"})}}]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{n}", "content": FILLER * random.randint(10, 80)})
    msgs.append({"role": "user", "content": "continue " + marker})
    return msgs


TOOLS = [{"type": "function", "function": {"name": "read_file", "parameters": {
    "type": "object", "properties": {"path": {"type": "string"}}}}}]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {}
        self.unexpected = []

    def add(self, key, detail=None):
        with self.lock:
            self.c[key] = self.c.get(key, 0) + 1
            if key.startswith("UNEXPECTED") and self.c[key] <= 4:
                self.unexpected.append(f"{key}: {detail}")


def sse_datas(body):
    out = []
    for ev in body.split("\n\n"):
        d = [l[5:].lstrip() for l in ev.split("\n") if l.startswith("data:")]
        if d:
            out.append("\n".join(d))
    return out


def one_request(conn, stats, rng, big=False):
    target = rng.choice(["openai", "anthropic", "google", "ollama", "rot"])
    stream = rng.random() < 0.5 and not big
    fault = rng.choice(FAULTS) if rng.random() < 0.10 and not big else None
    if fault == "midreset" and not stream:
        fault = "reset"
    scope = "a" if target == "rot" else "x"
    marker = f"FAULT:{fault}:{scope}" if fault else ""
    if big:
        msgs = conversation(3 * 1024, "")
        model = "openai/bench-model"
    else:
        agent = rng.random() < 0.3
        msgs = conversation(rng.randint(50, 400), marker) if agent else [
            {"role": "user", "content": "hi " + marker}]
        model = "rot" if target == "rot" else f"{target}/bench-model"
    body = json.dumps({"model": model, "messages": msgs, "stream": stream, "tools": TOOLS})
    disconnect = stream and not fault and rng.random() < 0.05
    # A rotation fails over a fault before the answer started; one mid-stream (after the
    # first events went to the client) can only end in an error event.
    mid_stream = stream and fault in ("stall", "malformed", "midreset")
    expect_ok = fault is None or (target == "rot" and not mid_stream)
    label = f"{'stream' if stream else 'plain'} {model} fault={fault}"
    conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    if disconnect:
        resp.read(100)
        conn.close()  # the client goes away mid-stream
        stats.add("client disconnects")
        return
    text = resp.read().decode("utf-8", "replace")
    if resp.status != 200:
        try:
            err = json.loads(text)["error"]["message"]
        except Exception:
            err = None
        if expect_ok or err is None:
            stats.add("UNEXPECTED status", f"{label}: {resp.status} {text[:200]}")
        else:
            stats.add(f"expected failures ({resp.status})")
        return
    if not stream:
        try:
            ok = json.loads(text)["choices"][0]["message"] is not None
        except Exception:
            ok = False
        if ok:
            stats.add("complete (plain)")
        elif expect_ok:
            stats.add("UNEXPECTED body", f"{label}: {text[:200]}")
        else:
            stats.add("UNEXPECTED body", f"{label}: 200 with a broken body {text[:200]}")
        return
    datas = sse_datas(text)
    errors = [d for d in datas if d.startswith("{") and '"error"' in d[:12]]
    if datas and datas[-1] == "[DONE]" and not errors:
        stats.add("complete (stream)")
    elif len(errors) == 1 and datas and datas[-1] is errors[0] and not expect_ok:
        stats.add("failed streams (one error event)")
    elif expect_ok:
        stats.add("UNEXPECTED incomplete non-failed stream", f"{label}: ...{text[-300:]}")
    else:
        stats.add("UNEXPECTED broken stream end", f"{label}: ...{text[-300:]}")


def client(stop, stats, seed):
    rng = random.Random(seed)
    conn = None
    while not stop.is_set():
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", GW_PORT, timeout=60)
        try:
            one_request(conn, stats, rng)
        except (OSError, http.client.HTTPException) as e:
            stats.add("UNEXPECTED transport error", repr(e))
            conn.close()
            conn = None
        if conn is not None and conn.sock is None:
            conn = None


# ---------------------------------------------------------------- main


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 3600)))
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--sample", type=float, default=5.0)
    ap.add_argument("--big-every", type=int, default=300)
    a = ap.parse_args()

    binary = os.environ.get("AISBF_BIN", os.path.join(HERE, "..", "target", "release", "aisbf"))
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"no release binary at {binary} (cargo build --release, or set AISBF_BIN)")
    shutil.rmtree(WORK, ignore_errors=True)
    cfg = os.path.join(WORK, "config")
    gateway_config(cfg)
    ready = threading.Event()
    threading.Thread(target=run_mock, args=(ready,), daemon=True).start()
    ready.wait(10)
    log = open(os.path.join(WORK, "aisbf.log"), "w")
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "error")}
    gw = subprocess.Popen([binary, "--config-dir", cfg, "serve"], stdout=log, stderr=log, env=env)
    try:
        wait_http(f"http://127.0.0.1:{GW_PORT}/")
        stats, stop = Stats(), threading.Event()
        threads = [threading.Thread(target=client, args=(stop, stats, i), daemon=True)
                   for i in range(a.clients)]
        for t in threads:
            t.start()
        samples, bigs = [], []
        start = time.time()
        next_big = start + min(60, a.seconds / 10)
        while time.time() - start < a.seconds:
            time.sleep(a.sample)
            t = time.time() - start
            rss, fds = rss_fds(gw.pid)
            samples.append((t, rss, fds))
            if time.time() >= next_big:
                before = rss
                # A fresh connection: one idle since the last big request (minutes) has been
                # closed by the server's keep-alive timeout, which http.client does not notice.
                big_conn = http.client.HTTPConnection("127.0.0.1", GW_PORT, timeout=120)
                try:
                    one_request(big_conn, stats, random.Random(int(t)), big=True)
                except (OSError, http.client.HTTPException) as e:
                    stats.add("UNEXPECTED transport error", f"3 MB request: {e!r}")
                big_conn.close()
                after = rss_fds(gw.pid)[0]
                bigs.append((t, before, after))
                next_big += a.big_every
            if len(samples) % max(1, int(60 / a.sample)) == 0:
                done = sum(v for k, v in stats.c.items())
                print(f"[{t:6.0f}s] rss {rss:6.1f} MB  fds {fds:4d}  requests {done}", flush=True)
        stop.set()
        for th in threads:
            th.join(90)
        rss_end, fds_end = rss_fds(gw.pid)
    finally:
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(10)
        except subprocess.TimeoutExpired:
            gw.kill()

    d = a.seconds
    base = [s for s in samples if d * 5 / 60 <= s[0] <= d * 15 / 60]
    last = [s for s in samples if s[0] >= d - d * 10 / 60]
    rss_base, rss_last = mean([s[1] for s in base]), mean([s[1] for s in last])
    fds_base, fds_last = mean([s[2] for s in base]), mean([s[2] for s in last])
    rss_flat = abs(rss_last - rss_base) <= 0.10 * rss_base
    # An fd count of a few dozen moves by whole connections: 10 % or 3 fds, whichever is more.
    fds_flat = abs(fds_last - fds_base) <= max(0.10 * fds_base, 3)
    unexpected = sum(v for k, v in stats.c.items() if k.startswith("UNEXPECTED"))
    incomplete = stats.c.get("UNEXPECTED incomplete non-failed stream", 0)
    total = sum(stats.c.values())
    print()
    print(f"soak: {d} s, {a.clients} clients, {total} requests, {len(samples)} samples every {a.sample:g} s")
    for k in sorted(stats.c):
        print(f"  {k:45s} {stats.c[k]}")
    print(f"  window minutes {d*5/3600:.1f}-{d*15/3600:.1f} vs last {d*10/3600:.1f} minutes:")
    print(f"  RSS  {rss_base:7.1f} MB -> {rss_last:7.1f} MB  (max {max(s[1] for s in samples):.1f}, "
          f"end {rss_end:.1f})  flat: {'yes' if rss_flat else 'NO'}")
    print(f"  fds  {fds_base:7.1f}    -> {fds_last:7.1f}     (max {max(s[2] for s in samples)}, "
          f"end {fds_end})  flat: {'yes' if fds_flat else 'NO'}")
    for t, before, after in bigs:
        print(f"  3 MB request at {t:5.0f} s: RSS {before:.1f} -> {after:.1f} MB")
    print(f"  unexpected errors: {unexpected}")
    print(f"  incomplete non-failed streams: {incomplete}")
    for u in stats.unexpected:
        print("   ", u)
    with open(os.path.join(WORK, "samples.csv"), "w") as f:
        f.write("seconds,rss_mb,fds\n")
        f.writelines(f"{t:.1f},{r:.2f},{n}\n" for t, r, n in samples)
    ok = rss_flat and fds_flat and unexpected == 0
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
