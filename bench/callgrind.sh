#!/usr/bin/env bash
# Userspace instructions per request, counted by valgrind's callgrind: repeatable on a noisy
# machine, unlike wall time. For each target (aisbf on /api/{provider} and on /v1 + rotation,
# and a plain nginx proxy hop as the floor) and each mode (non-stream, stream):
#   start the target under callgrind in front of the nginx mock upstream (bench/harness),
#   send WARM sequential keep-alive requests, dump (zeroes the counters), send N more, dump,
#   and report Ir of the second part / N.
# Usage: bench/callgrind.sh [N=1000] [WARM=200]      (needs valgrind and nginx; release build)
#        ONLY=aisbf bench/callgrind.sh ...             (one target; the others are skipped)
# Writes only under $BENCH_WORK/callgrind. Prints a markdown table.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
N=${1:-1000}
WARM=${2:-200}
BENCH_WORK=${BENCH_WORK:-/tmp/bench-work}
work=$BENCH_WORK/callgrind
mkdir -p "$work"
(umask 022 && mkdir -p "$work/mock")
for tool in valgrind callgrind_control nginx python3; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install valgrind nginx)" >&2; exit 1; }
done
# AISBF_BIN=/path/to/aisbf measures that build (e.g. one with line tables for
# callgrind_annotate, or an older one side by side) and skips the build.
if [[ -z ${AISBF_BIN:-} ]]; then
  (cd "$here/.." && cargo build --release --locked --quiet)
fi
bin=${AISBF_BIN:-$here/../target/release/aisbf}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

# The mock upstream, not measured.
python3 "$here/harness/gen-nginx-conf.py" "$work/mock" >/dev/null
nginx -c "$work/mock/nginx-mock.conf" -p "$work/mock/" >"$work/mock.log" 2>&1 &
pids+=($!)

wait_up() { # url
  for _ in $(seq 1 600); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "not up: $1" >&2; return 1
}
wait_up http://127.0.0.1:18080/health

# Sequential keep-alive client: COUNT requests of one mode to URL, each answer read to its end.
drive() { # url model stream count
  python3 - "$@" <<'PY'
import http.client, json, sys, urllib.parse
url, model, stream, count = sys.argv[1], sys.argv[2], sys.argv[3] == "1", int(sys.argv[4])
u = urllib.parse.urlsplit(url)
body = {"model": model, "messages": [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello."}], "max_tokens": 64, "temperature": 0}
if stream:
    body["stream"] = True
data = json.dumps(body).encode()
hdr = {"content-type": "application/json", "authorization": "Bearer sk-bench"}
conn = http.client.HTTPConnection(u.hostname, u.port)
for _ in range(count):
    conn.request("POST", u.path, data, hdr)
    r = conn.getresponse()
    out = r.read()
    if r.status != 200 or (stream and b"[DONE]" not in out):
        sys.exit(f"bad answer {r.status}: {out[:200]!r}")
PY
}

measure() { # name start_cmd health url model stream
  [[ -n ${ONLY:-} && $1 != "$ONLY" ]] && return 0
  local name=$1 cmd=$2 health=$3 url=$4 model=$5 stream=$6 out="$work/$1-$6"
  rm -f "$out".*
  # shellcheck disable=SC2086 # $cmd is a program and its arguments
  valgrind --tool=callgrind --callgrind-out-file="$out.%p" --dump-instr=no --compress-strings=no $cmd >"$out.log" 2>&1 &
  local vp=$!
  wait_up "$health"
  drive "$url" "$model" "$stream" "$WARM"
  callgrind_control -d "$vp" >/dev/null
  drive "$url" "$model" "$stream" "$N"
  callgrind_control -d "$vp" >/dev/null
  sleep 0.5
  local ir
  # Dump part 2 holds exactly the N measured requests (each dump zeroes the counters).
  ir=$(awk '/^(summary|totals):/ {print $2}' "$out".*.2 | tail -1)
  kill "$vp" 2>/dev/null || true
  wait "$vp" 2>/dev/null || true
  printf '%s\t%s\t%s\n' "$name" "$stream" "$ir" >>"$work/results.tsv"
}

: >"$work/results.tsv"
export RUST_LOG=warn
cfg=$work/aisbf-config
source "$here/write-config.sh" "$cfg"
# nginx-proxy with one process (no master), so callgrind sees the process that does the work.
sed -e 's/^master_process on;/master_process off;/' "$here/harness/nginx-proxy.conf" >"$work/nginx-proxy.conf"
mkdir -p "$work/nginx-proxy/logs" "$work/nginx-proxy/tmp"

for stream in 0 1; do
  if [[ $stream == 1 ]]; then p=mockstream; rot=bench-stream; np=/stream/v1; else p=mock; rot=bench; np=/v1; fi
  measure nginx-proxy "nginx -c $work/nginx-proxy.conf -p $work/nginx-proxy/" \
    http://127.0.0.1:18089/v1/models "http://127.0.0.1:18089$np/chat/completions" bench-model $stream
  measure aisbf "$bin --config-dir $cfg --port 18083" \
    http://127.0.0.1:18083/health "http://127.0.0.1:18083/api/$p/chat/completions" bench-model $stream
  measure aisbf-rot "$bin --config-dir $cfg --port 18083" \
    http://127.0.0.1:18083/health "http://127.0.0.1:18083/v1/chat/completions" "rotation/$rot" $stream
done

python3 - "$work/results.tsv" "$N" <<'PY'
import sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l.strip()]
n = int(sys.argv[2])
ir = {(r[0], r[1]): int(r[2].replace(",", "")) / n for r in rows if r[2].strip()}
print(f"instructions per request (callgrind, {n} sequential requests after warm-up)\n")
print("| target | non-stream Ir/req | vs nginx-proxy | stream Ir/req | vs nginx-proxy |")
print("|---|---|---|---|---|")
for t in ["nginx-proxy", "aisbf", "aisbf-rot"]:
    cells = []
    for m in ["0", "1"]:
        v, base = ir.get((t, m)), ir.get(("nginx-proxy", m))
        cells += [f"{v/1000:.1f}k" if v else "-", f"{v/base:.2f}x" if v and base else "-"]
    print(f"| {t} | " + " | ".join(cells) + " |")
PY
