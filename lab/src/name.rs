//! Names the lab gives to namespaces and interfaces.
//!
//! Every lab owns a prefix such as `vz0k3x9a`: the tag `vz` and six base-36 characters.
//! Namespaces are `<prefix>-<host>` and root-namespace interfaces are `<prefix><suffix>`,
//! so two labs never collide and a sweep can tell whose leftovers are whose. The prefix is
//! only a candidate here; [`crate::marker`] makes it unique across processes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};

/// Longest interface name Linux accepts: `IFNAMSIZ` (16) minus the terminating NUL.
pub const IFNAME_MAX: usize = 15;

/// Every lab prefix starts with this tag.
pub(crate) const PREFIX_TAG: &str = "vz";

/// Base-36 characters after the tag.
const PREFIX_RANDOM_LEN: usize = 6;

/// Length of a whole prefix, tag included.
pub(crate) const PREFIX_LEN: usize = PREFIX_TAG.len() + PREFIX_RANDOM_LEN;

/// Longest suffix [`crate::Lab::ifname`] accepts.
pub const IFNAME_SUFFIX_MAX: usize = IFNAME_MAX - PREFIX_LEN;

/// Longest host or switch name, to keep `ip netns` listings readable.
const HOST_NAME_MAX: usize = 64;

const BASE36: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh candidate prefix, mixed from the pid, a process-wide counter and the clock.
///
/// `RandomState` adds per-process random keys, so two processes that happen to share a pid
/// (in different pid namespaces) and a clock reading still draw different candidates.
pub(crate) fn candidate_prefix() -> String {
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.write_u64(count);
    hasher.write_u128(nanos);
    let space = 36u64.pow(PREFIX_RANDOM_LEN as u32);
    format!(
        "{PREFIX_TAG}{}",
        base36(hasher.finish() % space, PREFIX_RANDOM_LEN)
    )
}

/// `n` in base 36, left-padded with zeros to `width` characters.
fn base36(mut n: u64, width: usize) -> String {
    let mut digits = Vec::with_capacity(width);
    while n > 0 || digits.len() < width {
        digits.push(BASE36[(n % 36) as usize]);
        n /= 36;
    }
    digits.reverse();
    digits.into_iter().map(char::from).collect()
}

/// Whether `s` has the shape of a lab prefix (`vz` and six lowercase base-36 characters).
pub(crate) fn is_prefix(s: &str) -> bool {
    s.len() == PREFIX_LEN
        && s.starts_with(PREFIX_TAG)
        && s[PREFIX_TAG.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// Checks `name` against the kernel's rules for interface names (`dev_valid_name`).
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("interface name is empty");
    }
    if name.len() > IFNAME_MAX {
        bail!(
            "interface name {name:?} is {} bytes; Linux allows at most {IFNAME_MAX}",
            name.len()
        );
    }
    if name == "." || name == ".." {
        bail!("interface name {name:?} is reserved");
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
    {
        bail!("interface name {name:?} contains {c:?}, which Linux rejects");
    }
    Ok(())
}

/// Checks a host or switch name: it becomes part of a namespace name and a file under
/// `/run/netns`, so only a conservative character set is allowed.
pub(crate) fn check_host_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > HOST_NAME_MAX {
        bail!(
            "host name {name:?} must be 1 to {HOST_NAME_MAX} bytes, not {}",
            name.len()
        );
    }
    if name.starts_with(['.', '-']) {
        bail!("host name {name:?} must not start with '.' or '-'");
    }
    if let Some(c) = name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
    {
        bail!("host name {name:?} contains {c:?}; use ASCII letters, digits, '-', '_' or '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_pads_and_encodes() {
        assert_eq!(base36(0, 6), "000000");
        assert_eq!(base36(35, 6), "00000z");
        assert_eq!(base36(36, 6), "000010");
        assert_eq!(base36(36u64.pow(6) - 1, 6), "zzzzzz");
    }

    #[test]
    fn candidates_have_the_prefix_shape() {
        for _ in 0..100 {
            let p = candidate_prefix();
            assert!(is_prefix(&p), "{p}");
        }
        assert!(!is_prefix("vz12345"));
        assert!(!is_prefix("vz12345A"));
        assert!(!is_prefix("xx123456"));
    }

    #[test]
    fn interface_names_follow_kernel_rules() {
        assert!(check_ifname("eth0").is_ok());
        assert!(check_ifname("a23456789012345").is_ok());
        let long = check_ifname("a234567890123456").expect_err("16 bytes is too long");
        assert!(long.to_string().contains("at most 15"), "{long}");
        for bad in ["", ".", "..", "a/b", "a:b", "a b"] {
            assert!(check_ifname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn host_names_are_conservative() {
        assert!(check_host_name("vrrp-a_1.x").is_ok());
        for bad in ["", "-a", ".a", "a/b", "a b", "ä"] {
            assert!(check_host_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
