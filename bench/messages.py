#!/usr/bin/env python3
"""The /v1/messages row: what the Anthropic Messages ingress adds over /v1/chat/completions.

In one run, against the same instant OpenAI-format nginx mock (bench/providers.py's), the same
load (oha) goes straight to the mock, through aisbf's /v1/chat/completions and through aisbf's
/v1/messages (translated to Chat Completions and back), non-stream and stream, and the table
gives each p50, the p50 aisbf adds, and the ratio messages-added / chat-added (target: <= 1.2).

usage: bench/messages.py [--seconds 5] [--conc 16]   (release binary: target/release/aisbf,
       or AISBF_BIN). Needs nginx and oha (bench/harness/setup.sh). Writes under $BENCH_WORK.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import providers as P  # noqa: E402  (the mock, config and oha helpers of the provider bench)

P.WORK = os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), "aisbf-messages")
P.MOCK_PORT, P.GW_PORT = 18092, 18093


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conc", type=int, default=16)
    args = ap.parse_args()
    repo = os.path.dirname(HERE)
    binary = os.environ.get("AISBF_BIN", os.path.join(repo, "target", "release", "aisbf"))
    oha_bin = next((c for c in [os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), "oha/bin/oha"),
                                shutil.which("oha") or ""] if c and os.path.exists(c)), None)
    if not oha_bin or not shutil.which("nginx"):
        raise SystemExit("needs nginx and oha: run bench/harness/setup.sh")
    shutil.rmtree(P.WORK, ignore_errors=True)
    for sub in ["nginx/logs", "nginx/tmp", "cfg"]:
        os.makedirs(os.path.join(P.WORK, sub))
    with open(os.path.join(P.WORK, "nginx/nginx.conf"), "w") as f:
        f.write(P.nginx_conf(os.path.join(P.WORK, "nginx")))
    P.gateway_config(os.path.join(P.WORK, "cfg"))
    system, user = "You are a helpful assistant.", "Say hello in one short sentence."
    procs = []
    try:
        procs.append(subprocess.Popen(["nginx", "-c", os.path.join(P.WORK, "nginx/nginx.conf"), "-p",
                                       os.path.join(P.WORK, "nginx") + "/"], start_new_session=True))
        P.wait_http(f"http://127.0.0.1:{P.MOCK_PORT}/health")
        log = open(os.path.join(P.WORK, "aisbf.log"), "w")
        procs.append(subprocess.Popen([binary, "--config-dir", os.path.join(P.WORK, "cfg")], stderr=log,
                                      env={**os.environ, "RUST_LOG": "warn"}, start_new_session=True))
        P.wait_http(f"http://127.0.0.1:{P.GW_PORT}/health")
        rows = []
        for mode in ["nonstream", "stream"]:
            s = mode == "stream"
            model = "openai-s/bench-model" if s else "openai/bench-model"
            extra = {"stream": True} if s else {}
            chat = json.dumps({"model": model, "max_tokens": 64, "temperature": 0, **extra,
                               "messages": [{"role": "system", "content": system},
                                            {"role": "user", "content": user}]})
            msgs = json.dumps({"model": model, "max_tokens": 64, "temperature": 0, **extra,
                               "system": system, "messages": [{"role": "user", "content": user}]})
            mock = f"http://127.0.0.1:{P.MOCK_PORT}/openai{'-stream' if s else ''}/v1/chat/completions"
            gw = f"http://127.0.0.1:{P.GW_PORT}"
            row = {}
            for name, url, body in [("direct", mock, chat), ("chat", gw + "/v1/chat/completions", chat),
                                    ("messages", gw + "/v1/messages", msgs)]:
                P.oha(oha_bin, url, body, args.conc, 1)  # warm-up
                row[name] = P.oha(oha_bin, url, body, args.conc, args.seconds)
                r = row[name]
                print(f"{mode:9} {name:8} p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms  rps {r['rps']:.0f}  "
                      f"bad/err {r['bad']}/{r['errors']}", file=sys.stderr)
            rows.append((mode, row))
        print(f"\nc={args.conc}, {args.seconds}s per run, oha, instant OpenAI-format nginx mock\n")
        print("| mode | direct p50 ms | chat p50 ms | messages p50 ms | chat +p50 | messages +p50 | "
              "ratio | messages p99 | messages RPS | non2xx/err |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for mode, r in rows:
            d, c, m = r["direct"], r["chat"], r["messages"]
            added_c, added_m = c["p50"] - d["p50"], m["p50"] - d["p50"]
            ratio = added_m / added_c if added_c > 0 else float("nan")
            print(f"| {mode} | {d['p50']:.3f} | {c['p50']:.3f} | {m['p50']:.3f} | {added_c:+.3f} | "
                  f"{added_m:+.3f} | {ratio:.2f} | {m['p99']:.3f} | {m['rps']:.0f} | "
                  f"{m['bad'] + c['bad']}/{m['errors'] + c['errors']} |")
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
