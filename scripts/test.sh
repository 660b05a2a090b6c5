#!/usr/bin/env bash
# The README's test command: set up, build, run every test (unit, lab host tier,
# end-to-end in network namespaces). Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "test: run as root (the tests create network namespaces)" >&2; exit 1; }
scripts/setup.sh
echo "test: cargo test --no-run (builds every test; a few minutes the first time)"
cargo test --workspace --no-run
# Doctests run once, here: neither nextest nor `cargo test --tests` runs them.
cargo test --workspace --doc -q
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --tests --no-fail-fast
fi
