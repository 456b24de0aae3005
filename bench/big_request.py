#!/usr/bin/env python3
"""Does one multi-MB request leave RSS high for good? aisbf behind bench/soak.py's mock:
100 agent-sized requests (50-400 KB, half streamed, 4 clients), then BIGS times one 3 MB
conversation followed by 48 more agent requests, printing the gateway's RSS after each step.
Bounded means: after the first 3 MB request, RSS stops climbing.

usage: bench/big_request.py [BIGS=8]   (release binary: target/release/aisbf, or $AISBF_BIN;
       MALLOC_* variables are passed through, to compare allocator settings)
"""
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import soak as S  # noqa: E402  (the mock upstream, the config and the agent conversations)

S.MOCK_PORT, S.GW_PORT = 18290, 18291
S.WORK = os.path.join(os.environ.get("BENCH_WORK", "/tmp/bench-work"), "aisbf-big-request")


def main():
    bigs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    binary = os.environ.get("AISBF_BIN", os.path.join(HERE, "..", "target", "release", "aisbf"))
    cfg = os.path.join(S.WORK, "config")
    S.gateway_config(cfg)
    ready = threading.Event()
    threading.Thread(target=S.run_mock, args=(ready,), daemon=True).start()
    ready.wait(10)
    gw = subprocess.Popen([binary, "--config-dir", cfg, "serve"], env={**os.environ, "RUST_LOG": "error"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        S.wait_http(f"http://127.0.0.1:{S.GW_PORT}/")
        rss = lambda: f"{S.rss_fds(gw.pid)[0]:.1f} MB"

        def agent(per_client, clients=4):
            def work(seed):
                c = http.client.HTTPConnection("127.0.0.1", S.GW_PORT, timeout=60)
                r = random.Random(seed)
                for _ in range(per_client):
                    body = json.dumps({"model": "openai/bench-model", "stream": r.random() < 0.5,
                                       "messages": S.conversation(r.randint(50, 400), "")})
                    c.request("POST", "/v1/chat/completions", body=body,
                              headers={"content-type": "application/json"})
                    assert c.getresponse().read()
            ts = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        print(f"idle: {rss()}")
        agent(25)
        print(f"after 100 agent requests: {rss()}")
        c = http.client.HTTPConnection("127.0.0.1", S.GW_PORT, timeout=120)
        stats = S.Stats()
        for k in range(bigs):
            S.one_request(c, stats, random.Random(k), big=True)
            time.sleep(0.5)
            print(f"after 3 MB request {k + 1}: {rss()}", end="")
            agent(12)
            print(f", after 48 more agent requests: {rss()}")
        bad = {k: v for k, v in stats.c.items() if k.startswith("UNEXPECTED")}
        if bad:
            raise SystemExit(f"3 MB requests failed: {bad} {stats.unexpected}")
    finally:
        gw.send_signal(signal.SIGTERM)
        gw.wait(10)


if __name__ == "__main__":
    main()
