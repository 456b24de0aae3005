#!/usr/bin/env bash
# The whole test suite, as README.md gives it: formatting, lints, then every unit,
# integration and CLI test (including the ones that drive aisbf with the official openai
# Python SDK, installed here into target/py if it is missing, the anthropic SDK next to it, and
# Claude Code from npm into target/node).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

py=target/py/bin/python
# httpx: tests/python/sdk_messages.py reads raw SSE bytes with it (the SDKs now use httpx2).
if ! "$py" -c 'import openai, anthropic, httpx; assert anthropic.__version__ == "2.10.0"' 2>/dev/null; then
  echo "== installing the openai and anthropic Python SDKs into target/py"
  python3 -m venv target/py
  "$py" -m pip install --quiet --disable-pip-version-check 'openai>=1.40,<4' 'anthropic==2.10.0' 'httpx==0.28.1'
fi
export AISBF_TEST_PYTHON="$PWD/$py"

# Claude Code itself, pinned, in a project-local prefix (tests/claude_code.rs runs `claude -p`).
claude=target/node/node_modules/.bin/claude
if ! "$claude" --version 2>/dev/null | grep -q '^2\.1\.328 '; then
  echo "== installing Claude Code 2.1.328 into target/node"
  mkdir -p target/node
  npm install --prefix target/node --no-audit --no-fund --no-save '@anthropic-ai/claude-code@2.1.328'
fi
export AISBF_TEST_CLAUDE="$PWD/$claude"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --lib --bins --tests
