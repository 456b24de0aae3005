#!/usr/bin/env bash
# Soak test of a release aisbf (bench/soak.py has the details): mixed traffic with 10 %
# injected upstream faults for SOAK_SECONDS (default 3600), sampling RSS and fds; prints
# whether both stayed flat, the unexpected errors (must be 0) and the stream integrity.
#   bench/soak.sh                    # an hour
#   bench/soak.sh --seconds 1500     # or SOAK_SECONDS=1500 bench/soak.sh
# AISBF_BIN=/path/to/aisbf skips the build. Needs only python3 (stdlib).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ -z ${AISBF_BIN:-} ]]; then
  (cd "$here/.." && cargo build --release --locked --quiet)
  export AISBF_BIN="$here/../target/release/aisbf"
fi
exec python3 "$here/soak.py" "$@"
