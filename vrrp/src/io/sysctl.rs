//! The only place VRRP writes `/proc/sys`: per-interface settings that follow an
//! instance's life, not the host config (see docs/ARCHITECTURE.md, "What VRRP owns").
//!
//! - `accept_local = 1` on the interface of an IPv4 instance that is not the address
//!   owner (why: [`allow_local_sources`]). netcfg refuses a host config that pins
//!   `accept_local` on such an interface, so the two never fight over it.
//! - With a virtual MAC ([`super::virtual_mac`]): `arp_ignore`, `accept_local`,
//!   `rp_filter` on the macvlan, `arp_ignore`/`arp_announce` on its parent while one
//!   exists, restored after.
//!
//! Writes land in the netns of the thread that opens the file: the process's own.

use std::path::PathBuf;

use super::Error;

fn path(family: &str, interface: &str, key: &str) -> PathBuf {
    std::path::Path::new("/proc/sys/net")
        .join(family)
        .join("conf")
        .join(interface)
        .join(key)
}

/// Writes `net.FAMILY.conf.INTERFACE.KEY`.
pub fn write(family: &str, interface: &str, key: &str, value: &str) -> Result<(), Error> {
    std::fs::write(path(family, interface, key), value).map_err(|e| Error::Sysctl {
        key: format!("net.{family}.conf.{interface}.{key}"),
        source: e,
    })
}

/// Reads `net.FAMILY.conf.INTERFACE.KEY`, trimmed.
pub fn read(family: &str, interface: &str, key: &str) -> Result<String, Error> {
    std::fs::read_to_string(path(family, interface, key))
        .map(|s| s.trim().to_owned())
        .map_err(|e| Error::Sysctl {
            key: format!("net.{family}.conf.{interface}.{key}"),
            source: e,
        })
}

/// Sets `net.ipv4.conf.<interface>.accept_local` to 1.
///
/// A Backup that took over the address owner's address (its virtual address is the
/// owner's own) must still hear the owner's adverts when it returns, or both stay
/// Master: their source is then one of this host's addresses, and Linux drops such
/// packets as martians before any socket sees them, unless `accept_local` is set on the
/// interface. Nothing tells a Backup in advance whether a peer owns the address, so
/// every non-owner IPv4 instance sets it. The value is left as is at exit (other
/// instances may share the interface).
pub fn allow_local_sources(instance: &str, interface: &str) {
    if read("ipv4", interface, "accept_local").is_ok_and(|v| v == "1") {
        return;
    }
    match write("ipv4", interface, "accept_local", "1") {
        Ok(()) => {
            tracing::info!(instance, %interface, "set net.ipv4.conf.{interface}.accept_local = 1 (to hear an address owner's adverts)")
        }
        Err(e) => {
            tracing::warn!(instance, %interface, error = %e, "cannot set accept_local; an address owner's adverts will be dropped as martians while this host holds its address")
        }
    }
}
