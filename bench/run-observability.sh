#!/usr/bin/env bash
# Metrics and access log on vs off, in one run of the bench (bench/run.sh):
#   bench/run-observability.sh                   # aisbf-rs (log off) vs aisbf-rs-obs (info, to a file)
#   AISBF_BASELINE_BIN=/path/to/old/aisbf bench/run-observability.sh
#                                                # plus a build without metrics (aisbf-rs-base)
# The added p50 of aisbf-rs-obs over aisbf-rs (and over aisbf-rs-base) is the cost.
# After the run, $BENCH_WORK/aisbf-rs-obs/aisbf.log holds one access line per request.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
targets=("$here/aisbf-rs.env" "$here/aisbf-rs-observed.env")
if [[ -n ${AISBF_BASELINE_BIN:-} ]]; then
  targets=("$here/aisbf-rs-baseline.env" "${targets[@]}")
fi
exec "$here/run.sh" "${targets[@]}"
