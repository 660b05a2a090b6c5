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
# certificates; arping asks ARP from a LAN peer in the neighbour proxy test;
# libc6-dev because rustc links through gcc (gcc only recommends it). Packaging:
# debootstrap (scripts/fresh-check.sh builds a bare Debian root), dpkg-dev
# (cargo-deb's dependency scan), lintian, systemd (systemd-analyze verify), prometheus
# (promtool checks the alert rules), graphviz (`vznet show --format svg`).
for pkg in iproute2 nftables libnftables1 iputils-ping iputils-arping procps kmod ca-certificates openssl gcc libc6-dev \
           file qemu-system-x86 linux-image-amd64 busybox-static python3-venv keepalived \
           etcd-server etcd-client debootstrap dpkg-dev lintian systemd prometheus graphviz; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get update"
  apt-get update -qq
  say "apt-get install ${need[*]} (a few minutes on a fresh machine)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# The Debian etcd and prometheus units start servers on install; vznet's tests
# start their own etcd and need only promtool.
for unit in etcd prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q "$unit" 2>/dev/null; then
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
  fi
done
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# cargo-deb builds the .deb (scripts/package.sh); it installs from source.
if ! cargo deb --version >/dev/null 2>&1; then
  say "cargo install cargo-deb (builds it from source: a few minutes)"
  cargo install --locked --quiet cargo-deb@3.8.0
fi
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
# What the VM tier runs (lab/src/scenario/vm.rs, `boot`), without the boot: vng
# resolves virtme-run, runs file(1) on the kernel, finds qemu and builds the
# initramfs. Seconds, where a boot takes a minute.
kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort | tail -n 1)
[ -n "$kernel" ] || { echo "setup: no kernel in /boot after installing linux-image-amd64" >&2; exit 1; }
if ! out=$(vng --dry-run --disable-kvm --memory 2G --cpus 2 -r "$kernel" --exec true 2>&1); then
  echo "setup: vng cannot start a VM with $kernel:" >&2
  echo "$out" >&2
  exit 1
fi
mkdir -p /run/netns
