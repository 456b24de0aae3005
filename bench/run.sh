#!/usr/bin/env bash
# Builds the release binary, then runs the shared side-by-side benchmark (../shared/bench,
# or $SHARED_BENCH) with aisbf beside a plain nginx proxy and LiteLLM, in one run:
#   bench/run.sh                       # direct, nginx-proxy, litellm, aisbf-rs, aisbf-rs-rot
#   bench/run.sh nginx-proxy bench/aisbf-rs.env     # any list of targets
# Run ../shared/bench/setup.sh once per machine first. Keep the machine idle while it runs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
shared=${SHARED_BENCH:-$here/../../shared/bench}
[[ -x $shared/run.sh ]] || { echo "no shared bench at $shared (set SHARED_BENCH)" >&2; exit 1; }
(cd "$here/.." && cargo build --release --locked --quiet)
export AISBF_BIN="$here/../target/release/aisbf"
export MAX_TOTAL=${MAX_TOTAL:-1200}
if [[ $# -eq 0 ]]; then
  set -- nginx-proxy litellm "$here/aisbf-rs.env" "$here/aisbf-rs-rotation.env"
fi
exec "$shared/run.sh" "$@"
