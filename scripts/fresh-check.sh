#!/usr/bin/env bash
# Proves the README's set-up on a machine that has never seen vznet, so that a
# missing install step fails CI instead of hiding behind what this machine already
# has. In a bare Debian bookworm root (debootstrap, minbase) in a temporary folder:
#   1. the package: apt-get install ./vznet_*.deb (its Depends must be enough),
#      vznet --version, vznet check on the example config, systemd-analyze verify
#      on the units; in an overlay that is thrown away afterwards, so step 2 starts
#      from the bare root again;
#   2. scripts/setup.sh, the demo (the README's first command) and the VM-tier test.
# The Rust toolchain (~/.cargo, ~/.rustup) and this checkout are bind-mounted at
# their own paths, so target/ is reused and nothing is rebuilt; the host's CA
# certificates too (some networks intercept TLS). Downloaded .debs and the bare
# root are kept in /var/cache/vznet-fresh between runs: they hold nothing of vznet.
# Usage: scripts/fresh-check.sh [PATH/TO/vznet_*.deb]   (default: scripts/package.sh)
# Must run as root. Prints the time of each step.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "fresh-check: run as root" >&2; exit 1; }
repo=$(pwd)
start=$SECONDS
say() { echo "fresh-check: $*"; }
timed() {
  local name=$1 t=$SECONDS
  shift
  say "$name ..."
  "$@"
  say "$name: $((SECONDS - t)) s"
}

deb=${1:-}
if [ -z "$deb" ]; then
  deb=$(scripts/package.sh | tail -n 1)
fi
deb=$(realpath "$deb")

cache=/var/cache/vznet-fresh
mkdir -p "$cache/debootstrap" "$cache/apt"
work=$(mktemp -d /var/tmp/vznet-fresh.XXXXXX)
base=$work/base
mounted=()

# Mounts what a root needs to run the project, in order; undone in reverse.
enter() {
  local root=$1
  # A mount point of its own: `ip netns` makes / rslave, and / must be this root,
  # not the host's. Private, so nothing mounted below propagates to the host.
  mount --bind "$root" "$root" && mounted+=("$root")
  mount --make-rprivate "$root"
  mount -t proc proc "$root/proc" && mounted+=("$root/proc")
  for d in sys dev; do
    mount --rbind "/$d" "$root/$d" && mounted+=("$root/$d")
    mount --make-rslave "$root/$d"
  done
  mount -t tmpfs tmpfs "$root/run" && mounted+=("$root/run")
  mount -t tmpfs tmpfs "$root/tmp" && mounted+=("$root/tmp")
  for d in "$HOME/.cargo" "$HOME/.rustup" "$repo"; do
    mkdir -p "$root$d"
    mount --bind "$d" "$root$d" && mounted+=("$root$d")
  done
  mount --bind "$cache/apt" "$root/var/cache/apt/archives" && mounted+=("$root/var/cache/apt/archives")
  # Read-only: a package in the root must never rewrite the host's certificates.
  mount --bind /etc/ssl/certs "$root/etc/ssl/certs" && mounted+=("$root/etc/ssl/certs")
  mount -o remount,bind,ro "$root/etc/ssl/certs"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
}

leave() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
    umount -R "${mounted[i]}" 2>/dev/null || umount -R -l "${mounted[i]}" || true
  done
  mounted=()
}

cleanup() {
  leave
  mountpoint -q "$work/pkg/merged" 2>/dev/null && umount "$work/pkg/merged"
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap "exit 130" INT TERM

# A login shell's environment, nothing of this one's: what a new root user has.
inside() {
  local root=$1
  shift
  chroot "$root" /usr/bin/env -i HOME="$HOME" TERM=dumb CARGO_TERM_COLOR=never \
    PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    bash -c "cd '$repo' && $*"
}

# The bare root is pure Debian (nothing of vznet is in it), so a copy of the last
# one, at most a week old, stands in for a new debootstrap (2 minutes here).
bare_root() {
  local saved=$cache/bookworm-minbase.tar
  if [ -z "$(find "$saved" -mtime -7 2>/dev/null)" ]; then
    rm -rf "$work/new"
    debootstrap --variant=minbase --include=ca-certificates --cache-dir="$cache/debootstrap" \
      bookworm "$work/new" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -n 20 "$work/debootstrap.log" >&2; return 1; }
    tar -C "$work/new" --numeric-owner -cf "$saved.part" . && mv "$saved.part" "$saved"
    rm -rf --one-file-system "$work/new"
  fi
  mkdir -p "$base"
  tar -C "$base" --numeric-owner -xf "$saved"
}
timed "bare bookworm root (debootstrap --variant=minbase, or its copy of this week)" bare_root
# The only host-side trace the package test leaves goes to a throw-away upper layer.
package_test() {
  local m=$work/pkg/merged
  mkdir -p "$work/pkg/upper" "$work/pkg/work" "$m"
  mount -t overlay overlay -o "lowerdir=$base,upperdir=$work/pkg/upper,workdir=$work/pkg/work" "$m"
  enter "$m"
  cp "$deb" "$m/tmp/"
  inside "$m" "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends /tmp/$(basename "$deb") >/dev/null"
  inside "$m" "vznet --version && vznet check --config-dir /etc/vznet/examples"
  # No config on install, so vznetd's ConditionPathExists keeps it idle.
  inside "$m" "! test -e /etc/vznet/host.toml && ls /usr/share/man/man8/vznet.8.gz /usr/share/man/man8/vznetd.8.gz /usr/share/man/man8/vznet-vrrp.8.gz /usr/share/man/man5/vznet.toml.5.gz /usr/share/bash-completion/completions/vznet >/dev/null"
  # systemd-analyze is not vznet's dependency: installed here for the check only.
  inside "$m" "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null && systemd-analyze verify /usr/lib/systemd/system/vznetd.service /usr/lib/systemd/system/vznet-ves.service"
  leave
  umount "$m"
}
timed "package: install into the bare root, vznet --version, check, systemd-analyze verify" package_test

enter "$base"
timed "scripts/setup.sh in the bare root" inside "$base" scripts/setup.sh
timed "scripts/demo.sh in the bare root" inside "$base" scripts/demo.sh
timed "the VM-tier test in the bare root (lab/tests/vm.rs)" inside "$base" "cargo test -q -p lab --test vm"
leave
say "passed in $((SECONDS - start)) s"
