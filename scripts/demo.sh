#!/usr/bin/env bash
# The README's main command: set up, build, run the lab demo. Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: run as root (the demo creates network namespaces)" >&2; exit 1; }
scripts/setup.sh
# The first release build takes minutes: cargo names each crate as it compiles it.
echo "demo: cargo build --release -p lab (a few minutes the first time)"
cargo build --release -p lab
cargo run --release -q -p lab -- demo
