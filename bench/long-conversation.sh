#!/usr/bin/env bash
# Token counting that scales with new text: an agent resends its whole history every turn.
# R distinct ~50k-token conversations (so turn 1 is never counted before), each sent 20
# times with one more user message each turn, to aisbf (/api/mock, in front of the nginx
# mock upstream) and straight to the mock with the same bodies. Prints the added p50 (aisbf
# minus direct, per request) for turn 1 (whole history new) and turn 20 (one new message).
# Usage: bench/long-conversation.sh [R=15]        (needs nginx; release build)
# Wall clock: run it on a quiet machine. Writes only under $BENCH_WORK/long.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
R=${1:-15}
BENCH_WORK=${BENCH_WORK:-/tmp/bench-work}
work=$BENCH_WORK/long
mkdir -p "$work"
(umask 022 && mkdir -p "$work/mock")
(cd "$here/.." && cargo build --release --locked --quiet)
bin=${AISBF_BIN:-$here/../target/release/aisbf}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

python3 "$here/harness/gen-nginx-conf.py" "$work/mock" >/dev/null
nginx -c "$work/mock/nginx-mock.conf" -p "$work/mock/" >"$work/mock.log" 2>&1 &
pids+=($!)
cfg=$work/aisbf-config
source "$here/write-config.sh" "$cfg"
RUST_LOG=warn "$bin" --config-dir "$cfg" --port 18084 >"$work/aisbf.log" 2>&1 &
pids+=($!)

python3 - "$R" <<'PY'
import http.client, json, random, statistics, sys, time
R = int(sys.argv[1])
TURNS = 20

def wait_up(port, path):
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"not up: {port}{path}")

wait_up(18080, "/health")
wait_up(18084, "/health")
words = ("agent tool call result file line function error test build patch diff review "
         "context model token stream request answer history turn change commit branch").split()

def history(seed):
    rnd = random.Random(seed)
    msgs = [{"role": "system", "content": f"You are coding agent #{seed}."}]
    # ~1.1k tokens per message, 44 messages: ~50k tokens (o200k/cl100k: ~1 token a word).
    for i in range(44):
        text = " ".join(rnd.choice(words) for _ in range(1100))
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return msgs

def post(conn, path, body):
    t = time.perf_counter()
    conn.request("POST", path, body, {"content-type": "application/json",
                                      "authorization": "Bearer sk-bench"})
    r = conn.getresponse()
    out = r.read()
    dt = time.perf_counter() - t
    if r.status != 200:
        sys.exit(f"bad answer {r.status}: {out[:300]!r}")
    return dt, out

gw = http.client.HTTPConnection("127.0.0.1", 18084)
up = http.client.HTTPConnection("127.0.0.1", 18080)
added = {1: [], TURNS: []}
ctx = None
for c in range(R):
    msgs = history(1000 + c)
    for turn in range(1, TURNS + 1):
        msgs.append({"role": "user", "content": f"Turn {turn}: run the tests again please."})
        body = json.dumps({"model": "bench-model", "messages": msgs, "max_tokens": 64}).encode()
        if turn in added:
            d_up, _ = post(up, "/v1/chat/completions", body)
            d_gw, out = post(gw, "/api/mock/chat/completions", body)
            added[turn].append(d_gw - d_up)
            ctx = json.loads(out)["usage"].get("effective_context")
        else:
            post(gw, "/api/mock/chat/completions", body)
print(f"long conversation ({R} conversations of ~{ctx} tokens at turn {TURNS}, /api/mock, non-stream)\n")
print("| turn | added p50 (aisbf - direct) |")
print("|---|---|")
for t, v in added.items():
    print(f"| {t} | {statistics.median(v) * 1000:.2f} ms |")
PY
