//! Ethernet MAC addresses as written in configs (`00:0C:29:86:7E:54`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// True for group (multicast/broadcast) addresses, which no interface may carry.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }

    /// A bridge's default MAC: derived from this machine's identity
    /// (`/etc/machine-id`) and the bridge name, so it is stable on this host and
    /// differs from the same-named bridge of every other host on the segment
    /// (two VRRP peers both have `br104`).
    pub fn for_bridge(name: &str) -> MacAddr {
        static MACHINE_ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let id = MACHINE_ID.get_or_init(|| {
            std::fs::read_to_string("/etc/machine-id")
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        });
        MacAddr::derived(&format!("{id}/{name}"))
    }

    /// A stable locally administered unicast address derived from `seed`.
    ///
    /// Bridges get one so their MAC never follows the lowest port MAC (a VE port
    /// joining or leaving would otherwise change the host's MAC on the segment).
    pub fn derived(seed: &str) -> MacAddr {
        // FNV-1a: stable across releases and platforms, unlike std's hasher.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        let b = h.to_be_bytes();
        MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The text was not six colon-separated hex octets.
#[derive(Debug, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 00:19:bb:c8:0e:5a")]
pub struct MacParseError(String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in out.iter_mut() {
            let part = parts.next().ok_or_else(|| MacParseError(s.into()))?;
            if part.len() != 2 {
                return Err(MacParseError(s.into()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.into()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.into()));
        }
        Ok(MacAddr(out))
    }
}

impl TryFrom<&[u8]> for MacAddr {
    type Error = ();

    fn try_from(b: &[u8]) -> Result<Self, ()> {
        <[u8; 6]>::try_from(b).map(MacAddr).map_err(|_| ())
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let m: MacAddr = "00:0C:29:86:7E:54".parse().expect("valid mac");
        assert_eq!(m.to_string(), "00:0c:29:86:7e:54");
        assert!("00:0C:29:86:7E".parse::<MacAddr>().is_err());
        assert!("00:0C:29:86:7E:54:11".parse::<MacAddr>().is_err());
        assert!("zz:0C:29:86:7E:54".parse::<MacAddr>().is_err());
    }

    #[test]
    fn derived_is_stable_local_unicast() {
        let a = MacAddr::derived("br104");
        assert_eq!(a, MacAddr::derived("br104"));
        assert_ne!(a, MacAddr::derived("br136"));
        assert_eq!(a.0[0] & 0b11, 0b10);
    }
}
