//! Interfaces as `ip -j link` reports them, and the root-namespace links a lab deletes.

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::command::{self, ip};

/// One interface, as reported by `ip -d -j link show` in a lab host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface name, e.g. `eth0`.
    pub name: String,
    /// Kernel interface index (local to the namespace).
    pub ifindex: u32,
    /// Interface flags as `ip` prints them, e.g. `["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]`.
    pub flags: Vec<String>,
    /// MTU in bytes.
    pub mtu: u32,
    /// Operational state, e.g. `UP`, `DOWN`, `UNKNOWN`, `LOWERLAYERDOWN`.
    pub operstate: String,
    /// The bridge or bond this interface is enslaved to, if any.
    pub master: Option<String>,
    /// Link-layer address, e.g. `02:fc:00:00:00:01`.
    pub mac: Option<String>,
    /// Link kind (`veth`, `bridge`, ...), absent for plain devices such as `lo`.
    pub kind: Option<String>,
}

impl LinkInfo {
    /// Whether the interface is administratively up (the `UP` flag).
    pub fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }

    /// Whether it has carrier (the `LOWER_UP` flag).
    pub fn has_carrier(&self) -> bool {
        self.flags.iter().any(|f| f == "LOWER_UP")
    }
}

#[derive(Deserialize)]
struct RawLink {
    ifname: String,
    ifindex: u32,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: u32,
    #[serde(default)]
    operstate: String,
    master: Option<String>,
    address: Option<String>,
    linkinfo: Option<RawKind>,
}

#[derive(Deserialize)]
struct RawKind {
    info_kind: Option<String>,
}

/// Decodes the output of `ip -d -j link show`.
pub(crate) fn parse_links(json: Value) -> Result<Vec<LinkInfo>> {
    let raw: Vec<RawLink> =
        serde_json::from_value(json).context("unexpected `ip -j link` output")?;
    Ok(raw
        .into_iter()
        .map(|r| LinkInfo {
            name: r.ifname,
            ifindex: r.ifindex,
            flags: r.flags,
            mtu: r.mtu,
            operstate: r.operstate,
            master: r.master,
            mac: r.address,
            kind: r.linkinfo.and_then(|k| k.info_kind),
        })
        .collect())
}

/// Names of the interfaces in the current (root) namespace.
pub(crate) fn root_names() -> Result<Vec<String>> {
    let out = ip(["-j", "link", "show"])?;
    let json: Value = serde_json::from_str(&out).context("unexpected `ip -j link` output")?;
    Ok(parse_links(json)?.into_iter().map(|l| l.name).collect())
}

/// Deletes interface `name` from the current namespace; a missing one is fine (deleting one
/// end of a veth pair deletes the other too).
pub(crate) fn delete_root(name: &str) -> Result<()> {
    match ip(["link", "del", "dev", name]) {
        Err(e) if command::is_not_found(&e) => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ip_link_json() {
        let json: Value = serde_json::from_str(
            r#"[{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,
                 "operstate":"UNKNOWN","address":"00:00:00:00:00:00"},
                {"ifindex":3,"link_index":6,"ifname":"p1","flags":["BROADCAST","UP"],"mtu":1500,
                 "master":"br0","operstate":"LOWERLAYERDOWN","address":"f6:cc:d6:c6:35:cb",
                 "linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"}}]"#,
        )
        .expect("valid json");
        let links = parse_links(json).expect("parses");
        assert_eq!(links.len(), 2);
        assert_eq!(links[0].kind, None);
        assert!(links[0].is_up() && links[0].has_carrier());
        assert_eq!(links[1].master.as_deref(), Some("br0"));
        assert_eq!(links[1].kind.as_deref(), Some("veth"));
        assert!(links[1].is_up() && !links[1].has_carrier());
    }
}
