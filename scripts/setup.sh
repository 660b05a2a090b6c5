#!/usr/bin/env bash
# Installs what vznet's build, lab and tests need on a fresh Debian 12 machine (as root).
set -euo pipefail
need=()
# qemu + a kernel with bonding/8021q/dummy modules for the VM tier (the running
# kernel is untouched); busybox-static for minimal VE roots.
for pkg in iproute2 nftables iputils-ping procps kmod ca-certificates gcc \
           qemu-system-x86 linux-image-amd64 busybox-static python3-venv keepalived; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# virtme-ng (vng) boots the VM tier's kernel with the host filesystem shared.
# It goes in its own venv (Debian's Python refuses system-wide pip installs).
if ! command -v vng >/dev/null 2>&1; then
  echo "setup: pip install virtme-ng (in /opt/vznet/venv)"
  python3 -m venv /opt/vznet/venv
  /opt/vznet/venv/bin/pip install -q virtme-ng
  ln -sf /opt/vznet/venv/bin/vng /usr/local/bin/vng
fi
command -v vng >/dev/null || { echo "setup: vng not found after pip install virtme-ng" >&2; exit 1; }
mkdir -p /run/netns
