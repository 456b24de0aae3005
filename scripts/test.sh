#!/usr/bin/env bash
# The whole test suite, as README.md gives it: formatting, lints, then every unit,
# integration and CLI test (including the ones that drive aisbf with the official openai
# Python SDK, installed here into target/py if it is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

py=target/py/bin/python
if ! "$py" -c 'import openai' 2>/dev/null; then
  echo "== installing the openai Python SDK into target/py"
  python3 -m venv target/py
  "$py" -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<4'
fi
export AISBF_TEST_PYTHON="$PWD/$py"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --lib --bins --tests
