#!/usr/bin/env bash
# Builds the release binary when it is missing or older than the sources, then runs it with
# the given arguments:  ./aisbf.sh [--config-dir DIR] [daemon|status|stop|check-config]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$here/target/release/aisbf"
if [[ ! -x $bin ]] || [[ -n $(find "$here/src" "$here/config" "$here/Cargo.toml" -newer "$bin" -print -quit) ]]; then
  (cd "$here" && cargo build --release --locked --quiet)
fi
exec "$bin" "$@"
