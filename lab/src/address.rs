//! Interface addresses as `ip -j addr` reports them.

use std::fmt;
use std::net::IpAddr;

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// One address on an interface, as reported by `ip -j addr show dev IF` in a lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length, e.g. 24 for `10.0.0.1/24`.
    pub prefix_len: u8,
    /// Scope as `ip` prints it: `global`, `link`, `host`, ...
    pub scope: String,
    /// IPv6 duplicate address detection is still running; the address is not usable yet.
    pub tentative: bool,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

#[derive(Deserialize)]
struct RawInterface {
    #[serde(default)]
    addr_info: Vec<RawAddress>,
}

#[derive(Deserialize)]
struct RawAddress {
    local: IpAddr,
    prefixlen: u8,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    tentative: bool,
}

/// Decodes the output of `ip -j addr show`.
pub(crate) fn parse_addresses(json: Value) -> Result<Vec<Address>> {
    let raw: Vec<RawInterface> =
        serde_json::from_value(json).context("unexpected `ip -j addr` output")?;
    Ok(raw
        .into_iter()
        .flat_map(|i| i.addr_info)
        .map(|a| Address {
            addr: a.local,
            prefix_len: a.prefixlen,
            scope: a.scope,
            tentative: a.tentative,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_addr_json() {
        let json: Value = serde_json::from_str(
            r#"[{"ifindex":3,"ifname":"p1","addr_info":[
                 {"family":"inet","local":"10.0.0.1","prefixlen":24,"scope":"global","label":"p1"},
                 {"family":"inet6","local":"fe80::f4cc:d6ff:fec6:35cb","prefixlen":64,
                  "scope":"link","tentative":true}]}]"#,
        )
        .expect("valid json");
        let addrs = parse_addresses(json).expect("parses");
        assert_eq!(addrs.len(), 2);
        assert_eq!(addrs[0].to_string(), "10.0.0.1/24");
        assert!(!addrs[0].tentative);
        assert_eq!(addrs[1].scope, "link");
        assert!(addrs[1].tentative);
    }
}
