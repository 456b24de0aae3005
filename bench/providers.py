#!/usr/bin/env python3
"""Added latency per provider type: aisbf in front of instant native mocks.

For each provider type (openai, anthropic, google, ollama), a rotation of two openai
providers, and the OpenAI Responses ingress (`responses`: `POST /v1/responses`, next to
`v1-chat`: the same request on `POST /v1/chat/completions`), in non-stream and stream mode, runs the same load (oha, c=16) once straight at a
native nginx mock and once through aisbf, and prints p50/p99 and the difference (what
aisbf's translation adds). The mocks are nginx `return 200` blocks with fixed native bodies
(JSON, SSE with `event:` lines for Anthropic, SSE for Gemini, NDJSON for Ollama), so the
upstream costs the same near-zero work in both runs.

usage: bench/providers.py [--seconds 5] [--conc 16] [--only responses,v1-chat]
       (release binary: target/release/aisbf, or $AISBF_BIN)
Needs nginx and oha (bench/harness/setup.sh installs both). Writes only under $BENCH_WORK.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), "aisbf-providers")
MOCK_PORT, GW_PORT = 18090, 18091
WORDS = ["Hello", "!", " This", " is", " a", " fixed", " streamed", " response", " from", " the",
         " benchmark", " mock", " upstream", ",", " sent", " as", " SSE", "."]
TEXT = "".join(WORDS)


def sse(events, named=False):
    out = ""
    for e in events:
        if named:
            out += f"event: {e['type']}\n"
        out += "data: " + json.dumps(e, separators=(",", ":")) + "\n\n"
    return out


def openai_bodies():
    full = {"id": "chatcmpl-b", "object": "chat.completion", "created": 1700000000, "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT, "refusal": None},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30}}
    ch = lambda d, f=None: {"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1700000000,
                            "model": "bench-model", "choices": [{"index": 0, "delta": d, "logprobs": None,
                                                                 "finish_reason": f}]}
    evs = [ch({"role": "assistant", "content": ""})] + [ch({"content": w}) for w in WORDS] + [ch({}, "stop")]
    evs.append({"id": "chatcmpl-b", "object": "chat.completion.chunk", "created": 1700000000,
                "model": "bench-model", "choices": [],
                "usage": {"prompt_tokens": 12, "completion_tokens": 18, "total_tokens": 30}})
    return json.dumps(full), sse(evs) + "data: [DONE]\n\n"


def anthropic_bodies():
    full = {"id": "msg_b", "type": "message", "role": "assistant", "model": "bench-model",
            "content": [{"type": "text", "text": TEXT}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 18}}
    evs = [{"type": "message_start", "message": {**full, "content": [], "stop_reason": None,
                                                 "usage": {"input_tokens": 12, "output_tokens": 1}}},
           {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
           {"type": "ping"}]
    evs += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in WORDS]
    evs += [{"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
             "usage": {"output_tokens": 18}},
            {"type": "message_stop"}]
    return json.dumps(full), sse(evs, named=True)


def gemini_bodies():
    usage = {"promptTokenCount": 12, "candidatesTokenCount": 18, "totalTokenCount": 30}
    full = {"candidates": [{"content": {"role": "model", "parts": [{"text": TEXT}]}, "finishReason": "STOP",
                            "index": 0}], "usageMetadata": usage, "modelVersion": "bench-model"}
    evs = [{"candidates": [{"content": {"role": "model", "parts": [{"text": w}]}, "index": 0}],
            "modelVersion": "bench-model"} for w in WORDS]
    evs[-1]["candidates"][0]["finishReason"] = "STOP"
    evs[-1]["usageMetadata"] = usage
    return json.dumps(full), sse(evs)


def ollama_bodies():
    base = {"model": "bench-model", "created_at": "2025-01-01T00:00:00Z"}
    full = {**base, "message": {"role": "assistant", "content": TEXT}, "done": True, "done_reason": "stop",
            "prompt_eval_count": 12, "eval_count": 18}
    lines = [{**base, "message": {"role": "assistant", "content": w}, "done": False} for w in WORDS]
    lines.append({**base, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                  "prompt_eval_count": 12, "eval_count": 18})
    return json.dumps(full), "".join(json.dumps(l, separators=(",", ":")) + "\n" for l in lines)


def ng(s):
    return s.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")


def nginx_conf(prefix):
    o_full, o_sse = openai_bodies()
    a_full, a_sse = anthropic_bodies()
    g_full, g_sse = gemini_bodies()
    l_full, l_nd = ollama_bodies()
    loc = lambda path, ctype, body: (f"        location = {path} {{ default_type {ctype}; "
                                     f"return 200 '{ng(body)}'; }}\n")
    return f"""worker_processes 1;
daemon off;
pid nginx.pid;
error_log logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off; keepalive_timeout 120s; keepalive_requests 10000000; server_tokens off; tcp_nodelay on;
    client_body_temp_path tmp/client_body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi; client_body_buffer_size 1m;
    server {{
        listen 127.0.0.1:{MOCK_PORT} backlog=4096;
{loc("/openai/v1/chat/completions", "application/json", o_full)}{loc("/openai-stream/v1/chat/completions", "text/event-stream", o_sse)}{loc("/anthropic/v1/messages", "application/json", a_full)}{loc("/anthropic-stream/v1/messages", "text/event-stream", a_sse)}{loc("/google/v1beta/models/bench-model:generateContent", "application/json", g_full)}{loc("/google/v1beta/models/bench-model:streamGenerateContent", "text/event-stream", g_sse)}{loc("/ollama/api/chat", "application/json", l_full)}{loc("/ollama-stream/api/chat", "application/x-ndjson", l_nd)}        location = /health {{ return 200 'ok'; }}
    }}
}}
"""


def gateway_config(d):
    m = f"http://127.0.0.1:{MOCK_PORT}"
    p = lambda kind, ep: {"type": kind, "endpoint": ep, "api_key": "sk-bench-upstream",
                          "models": [{"name": "bench-model"}]}
    providers = {"openai": p("openai", m + "/openai/v1"), "openai2": p("openai", m + "/openai/v1"),
                 "openai-s": p("openai", m + "/openai-stream/v1"), "openai-s2": p("openai", m + "/openai-stream/v1"),
                 "anthropic": p("anthropic", m + "/anthropic"), "anthropic-s": p("anthropic", m + "/anthropic-stream"),
                 "google": p("google", m + "/google"), "google-s": p("google", m + "/google"),
                 "ollama": p("ollama", m + "/ollama"), "ollama-s": p("ollama", m + "/ollama-stream")}
    rot = lambda a, b: {"providers": [{"provider_id": a, "models": [{"name": "bench-model"}]},
                                      {"provider_id": b, "models": [{"name": "bench-model"}]}]}
    files = {"aisbf.json": {"server": {"host": "127.0.0.1", "port": GW_PORT}},
             "providers.json": {"providers": providers},
             "rotations.json": {"rotations": {"rot": rot("openai", "openai2"), "rot-s": rot("openai-s", "openai-s2")}},
             "autoselect.json": {"autoselect": {}}}
    os.makedirs(d, exist_ok=True)
    for name, v in files.items():
        with open(os.path.join(d, name), "w") as f:
            json.dump(v, f)


def wait_http(url, secs=20):
    end = time.time() + secs
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def oha(oha_bin, url, body, conc, secs, headers=()):
    path = os.path.join(WORK, "body.json")
    with open(path, "w") as f:
        f.write(body)
    cmd = [oha_bin, "--no-tui", "-z", f"{secs}s", "-c", str(conc), "-m", "POST", "-T", "application/json",
           "-D", path, "--disable-compression", "--output-format", "json", "--worker-threads", "1"]
    for h in headers:
        cmd += ["-H", h]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=secs + 60)
    d = json.loads(out.stdout)
    codes = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    bad = sum(v for k, v in codes.items() if not 200 <= k < 300)
    errs = sum(v for k, v in (d.get("errorDistribution") or {}).items() if "deadline" not in k)
    lp = d["latencyPercentiles"]
    return {"rps": ok / d["summary"]["total"], "p50": lp["p50"] * 1000, "p99": lp["p99"] * 1000,
            "bad": bad, "errors": errs}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conc", type=int, default=16)
    ap.add_argument("--only", default="", help="comma-separated rows (default: all)")
    args = ap.parse_args()
    kinds = ["openai", "anthropic", "google", "ollama", "rotation", "v1-chat", "responses"]
    if args.only:
        kinds = [k for k in kinds if k in args.only.split(",")]
    repo = os.path.dirname(HERE)
    binary = os.environ.get("AISBF_BIN", os.path.join(repo, "target", "release", "aisbf"))
    # The same places ../shared/bench/setup.sh looks in.
    oha_bin = next((c for c in [os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), "oha/bin/oha"),
                                "/tmp/bench-work/oha/bin/oha", shutil.which("oha") or ""]
                    if c and os.path.exists(c)), None)
    if not oha_bin or not shutil.which("nginx"):
        raise SystemExit("needs nginx and oha: run bench/harness/setup.sh")
    shutil.rmtree(WORK, ignore_errors=True)
    for sub in ["nginx/logs", "nginx/tmp", "cfg"]:
        os.makedirs(os.path.join(WORK, sub))
    with open(os.path.join(WORK, "nginx/nginx.conf"), "w") as f:
        f.write(nginx_conf(os.path.join(WORK, "nginx")))
    gateway_config(os.path.join(WORK, "cfg"))
    procs = []
    try:
        procs.append(subprocess.Popen(["nginx", "-c", os.path.join(WORK, "nginx/nginx.conf"), "-p",
                                       os.path.join(WORK, "nginx") + "/"], start_new_session=True))
        wait_http(f"http://127.0.0.1:{MOCK_PORT}/health")
        log = open(os.path.join(WORK, "aisbf.log"), "w")
        procs.append(subprocess.Popen([binary, "--config-dir", os.path.join(WORK, "cfg")], stderr=log,
                                      env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True))
        wait_http(f"http://127.0.0.1:{GW_PORT}/health")
        msgs = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Say hello in one short sentence."}]
        oa = lambda stream: json.dumps({"model": "bench-model", "messages": msgs, "max_tokens": 64,
                                        "temperature": 0, **({"stream": True} if stream else {})})
        # The same request as the Responses API says it (what client.responses sends).
        resp_body = lambda s: json.dumps({"model": "openai" + ("-s" if s else "") + "/bench-model",
                                          "instructions": msgs[0]["content"], "input": msgs[1]["content"],
                                          "max_output_tokens": 64, "temperature": 0, "store": False,
                                          **({"stream": True} if s else {})})
        native = {
            "openai": (lambda s: f"/openai{'-stream' if s else ''}/v1/chat/completions", oa),
            "anthropic": (lambda s: f"/anthropic{'-stream' if s else ''}/v1/messages",
                          lambda s: json.dumps({"model": "bench-model", "system": msgs[0]["content"],
                                                "messages": msgs[1:], "max_tokens": 64, "temperature": 0,
                                                **({"stream": True} if s else {})})),
            "google": (lambda s: "/google/v1beta/models/bench-model:" +
                                 ("streamGenerateContent?alt=sse" if s else "generateContent"),
                       lambda s: json.dumps({"systemInstruction": {"parts": [{"text": msgs[0]["content"]}]},
                                             "contents": [{"role": "user", "parts": [{"text": msgs[1]["content"]}]}],
                                             "generationConfig": {"maxOutputTokens": 64, "temperature": 0}})),
            "ollama": (lambda s: f"/ollama{'-stream' if s else ''}/api/chat",
                       lambda s: json.dumps({"model": "bench-model", "messages": msgs, "stream": s,
                                             "options": {"num_predict": 64, "temperature": 0}})),
        }
        rows = []
        for mode in ["nonstream", "stream"]:
            s = mode == "stream"
            for kind in kinds:
                if kind == "rotation":
                    direct = native["openai"]
                    via = (f"/v1/chat/completions", json.dumps({**json.loads(oa(s)), "model": "rotation/rot" + ("-s" if s else "")}))
                elif kind == "v1-chat":
                    direct = native["openai"]
                    via = ("/v1/chat/completions",
                           json.dumps({**json.loads(oa(s)), "model": "openai" + ("-s" if s else "") + "/bench-model"}))
                elif kind == "responses":
                    direct = native["openai"]
                    via = ("/v1/responses", resp_body(s))
                else:
                    direct = native[kind]
                    pid = kind + ("-s" if s else "")
                    via = (f"/api/{pid}/chat/completions", oa(s))
                url_d = f"http://127.0.0.1:{MOCK_PORT}{direct[0](s)}"
                oha(oha_bin, url_d, direct[1](s), args.conc, 1)  # warm-up
                d = oha(oha_bin, url_d, direct[1](s), args.conc, args.seconds)
                url_g = f"http://127.0.0.1:{GW_PORT}{via[0]}"
                oha(oha_bin, url_g, via[1], args.conc, 1)
                g = oha(oha_bin, url_g, via[1], args.conc, args.seconds)
                rows.append((mode, kind, d, g))
                print(f"{mode:9} {kind:9} direct p50 {d['p50']:.3f} ms  aisbf p50 {g['p50']:.3f} ms "
                      f"(+{g['p50'] - d['p50']:.3f})  rps {g['rps']:.0f}  bad/err {g['bad']}/{g['errors']}",
                      file=sys.stderr)
        print(f"\nc={args.conc}, {args.seconds}s per run, oha, instant native nginx mocks\n")
        print(f"| mode | provider type | direct p50 ms | aisbf p50 ms | +p50 ms | direct p99 | aisbf p99 | aisbf RPS | non2xx/err |")
        print("|---|---|---|---|---|---|---|---|---|")
        for mode, kind, d, g in rows:
            print(f"| {mode} | {kind} | {d['p50']:.3f} | {g['p50']:.3f} | {g['p50'] - d['p50']:+.3f} | "
                  f"{d['p99']:.3f} | {g['p99']:.3f} | {g['rps']:.0f} | {g['bad']}/{g['errors']} |")
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
