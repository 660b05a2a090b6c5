#!/usr/bin/env bash
# Installs what vznet's build, lab and tests need on a fresh Debian 12 machine (as root).
# Every step says what it does before it does it: apt and pip run for minutes on a
# fresh machine.
set -euo pipefail
say() { echo "setup: $*"; }
need=()
# qemu + a kernel with bonding/8021q/dummy modules for the VM tier (the running
# kernel is untouched); busybox-static for minimal VE roots; file(1) because
# virtme-ng runs it on the kernel image; keepalived, FRR and etcd are the real peers
# the tests and benchmarks run against; openssl makes and serves the TLS-check test
# certificates; arping asks ARP from a LAN peer in the neighbour proxy test.
for pkg in iproute2 nftables libnftables1 iputils-ping iputils-arping procps kmod ca-certificates openssl gcc \
           file qemu-system-x86 linux-image-amd64 busybox-static python3-venv keepalived \
           etcd-server etcd-client debootstrap; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get update"
  apt-get update -qq
  say "apt-get install ${need[*]} (a few minutes on a fresh machine)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian etcd unit starts a server on install; vznet's tests start their own.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q etcd 2>/dev/null; then
  systemctl disable --now etcd >/dev/null 2>&1 || true
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# virtme-ng (vng) boots the VM tier's kernel with the host filesystem shared. It goes
# in its own venv (Debian's Python refuses system-wide pip installs). `vng` runs
# `virtme-run` (and friends) from the PATH, so every virtme entry point is linked,
# not only vng.
venv=/opt/vznet/venv
if [ ! -x "$venv/bin/vng" ] || [ ! -x "$venv/bin/virtme-run" ]; then
  say "pip install virtme-ng (into $venv)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q virtme-ng
fi
for tool in "$venv"/bin/vng "$venv"/bin/virtme-*; do
  [ -x "$tool" ] && ln -sf "$tool" "/usr/local/bin/$(basename "$tool")"
done
# Check what the tests run, not just that a name resolves.
for tool in vng virtme-run file; do
  command -v "$tool" >/dev/null || { echo "setup: $tool not on the PATH after installing it" >&2; exit 1; }
done
virtme-run --help >/dev/null 2>&1 || { echo "setup: virtme-run does not start (virtme-run --help failed)" >&2; exit 1; }
mkdir -p /run/netns
