#!/usr/bin/env bash
# The whole test suite, as README.md gives it: formatting, lints, then every unit,
# integration and CLI test (including the ones that drive aisbf with the official openai and
# anthropic Python SDKs, installed here into target/py, and with OpenAI's Codex CLI and
# Claude Code, installed from npm into target/node, when they are missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

py=target/py/bin/python
# The pinned openai SDK has client.responses (tests/python/sdk_responses.py); httpx is
# imported by tests/python/sdk_messages.py and pulled in by neither SDK (they use httpx2).
if ! "$py" -c 'import openai, anthropic, httpx, sys; sys.exit(openai.__version__ != "3.57.0" or anthropic.__version__ != "2.10.0")' 2>/dev/null; then
  echo "== installing the openai and anthropic Python SDKs into target/py"
  python3 -m venv target/py
  "$py" -m pip install --quiet --disable-pip-version-check 'openai==3.57.0' 'anthropic==2.10.0' 'httpx==0.28.1'
fi
export AISBF_TEST_PYTHON="$PWD/$py"

# Node CLIs the suite drives, pinned, installed project-local into target/node in one npm
# step: OpenAI's Codex CLI (tests/codex.rs) and Claude Code (tests/claude_code.rs).
npm_packages=("@openai/codex@0.169.0" "@anthropic-ai/claude-code@2.1.328")
node_prefix=target/node
bin=$node_prefix/node_modules/.bin
# Each CLI asked for its own version: `npm ls` with package arguments exits 0 even when one is
# missing, so it cannot tell an install is needed.
if ! { "$bin/codex" --version 2>/dev/null | grep -q '0\.169\.0' &&
       "$bin/claude" --version 2>/dev/null | grep -q '^2\.1\.328 '; }; then
  echo "== installing ${npm_packages[*]} into $node_prefix"
  mkdir -p "$node_prefix"
  npm install --prefix "$node_prefix" --no-audit --no-fund --loglevel=error "${npm_packages[@]}"
fi
export AISBF_TEST_CODEX="$PWD/$bin/codex"
export AISBF_TEST_CLAUDE="$PWD/$bin/claude"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked --lib --bins --tests
