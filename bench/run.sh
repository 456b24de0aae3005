#!/usr/bin/env bash
# Builds the release binary, then runs the side-by-side benchmark with aisbf beside a plain
# nginx proxy hop (and LiteLLM when bench/harness/setup.sh installed it), in one run:
#   bench/run.sh                       # direct, nginx-proxy, [litellm], aisbf-rs, aisbf-rs-rot
#   bench/run.sh nginx-proxy bench/aisbf-rs.env     # any list of targets
# The harness (nginx mock upstream, load generator driver, table) is bench/harness, a copy of
# the team's reference bench, so the figures can be reproduced from a clone of this project
# alone; SHARED_BENCH=/path/to/another/harness runs that one instead.
# Run bench/harness/setup.sh once per machine first. Keep the machine idle while it runs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
harness=${SHARED_BENCH:-$here/harness}
[[ -x $harness/run.sh ]] || { echo "no bench harness at $harness" >&2; exit 1; }
(cd "$here/.." && cargo build --release --locked --quiet)
export AISBF_BIN="$here/../target/release/aisbf"
export MAX_TOTAL=${MAX_TOTAL:-1200}
if [[ $# -eq 0 ]]; then
  set -- nginx-proxy "$here/aisbf-rs.env" "$here/aisbf-rs-rotation.env"
  if [[ -x ${BENCH_WORK:-/tmp/bench-work}/venv-litellm/bin/litellm ]]; then
    set -- "$@" litellm
  else
    echo "LiteLLM not installed (bench/harness/setup.sh installs it): measuring without it" >&2
  fi
fi
exec "$harness/run.sh" "$@"
