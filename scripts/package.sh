#!/usr/bin/env bash
# Builds the Debian package target/debian/vznet_VERSION-1_amd64.deb (cargo-deb):
# the release binaries, man pages and completions generated from the clap
# definitions (vznet-dist), the vznetd and vznet-ves units with /usr/sbin paths;
# then lintian.
# Prints the package's path last.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "package: $*" >&2; }
cargo deb --version >/dev/null 2>&1 || scripts/setup.sh >&2
say "cargo build --release (vznet, vznetd, vznet-vrrp, vznet-dist)"
cargo build --release -q -p agent -p vrrp -p dist --bins >&2
gen=target/dist
rm -rf "$gen"
target/release/vznet-dist man "$gen/man"
target/release/vznet-dist completions "$gen/completions"
mkdir -p "$gen/systemd"
for unit in vznetd vznet-ves; do
  sed 's|/usr/local/sbin/|/usr/sbin/|g' "dist/$unit.service" > "$gen/systemd/$unit.service"
done
say "cargo deb"
rm -f target/debian/vznet_*.deb
cargo deb -p dist --no-build --strip -q >&2
deb=$(ls target/debian/vznet_*.deb)
say "lintian $deb"
lintian --fail-on error,warning "$deb" >&2
say "$(du -k "$deb" | cut -f1) KiB, $(dpkg-deb -f "$deb" Installed-Size) KiB installed"
echo "$deb"
