//! What an interface address, a gateway and a MAC address may be. The kernel
//! refuses some of these only when apply reaches them (after other changes, which
//! are then rolled back: exit 1 instead of a located config error), and takes
//! others silently: `255.255.255.255/32` or `127.0.0.2/8` on a bridge, a
//! multicast address, `0.0.0.0` (accepted and dropped, so verification fails).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use super::{Checker, KeyPath, SourceFile};
use crate::model::MacAddr;

/// The one interface allowed loopback addresses.
const LOOPBACK_IFNAME: &str = "lo";

/// Why `net` cannot be an address of interface `ifname`, if it cannot.
pub fn check_interface_address(net: IpNet, ifname: &str) -> Result<(), String> {
    let addr = net.addr();
    let what = match addr {
        IpAddr::V4(a) => v4_problem(a, net.prefix_len()),
        IpAddr::V6(a) => v6_problem(a),
    };
    if let Some(what) = what {
        return Err(format!("{net} cannot be an interface address: {what}"));
    }
    if addr.is_loopback() && ifname != LOOPBACK_IFNAME {
        return Err(format!(
            "{net} is a loopback address: it belongs on lo only (the kernel takes it on {ifname:?} and answers for the whole prefix as if it were local)"
        ));
    }
    Ok(())
}

fn v4_problem(a: Ipv4Addr, prefix_len: u8) -> Option<String> {
    if a.is_unspecified() {
        return Some(
            "0.0.0.0 is the unspecified address (the kernel takes it and keeps nothing)".into(),
        );
    }
    if a.is_broadcast() {
        return Some("the limited broadcast address (RFC 919)".into());
    }
    if a.is_multicast() {
        return Some("a multicast address (224.0.0.0/4) is joined, never assigned".into());
    }
    // Below /31 (RFC 3021) the last address of a subnet is its broadcast address.
    if prefix_len < 31 {
        let host_bits = u32::MAX >> prefix_len;
        if u32::from(a) & host_bits == host_bits {
            return Some(format!(
                "it is the broadcast address of its /{prefix_len} subnet"
            ));
        }
    }
    None
}

fn v6_problem(a: Ipv6Addr) -> Option<String> {
    if a.is_unspecified() {
        return Some(":: is the unspecified address".into());
    }
    if a.is_multicast() {
        return Some("a multicast address (ff00::/8) is joined, never assigned".into());
    }
    if is_link_local6(a) {
        return Some(
            "IPv6 link-local addresses (fe80::/10) are the kernel's: it makes one per link, and vznet leaves them alone"
                .into(),
        );
    }
    if a.to_ipv4_mapped().is_some() {
        return Some(
            "an IPv4-mapped address (::ffff:0:0/96, RFC 4291 §2.5.5.2) stands for an IPv4 host and never matches IPv6 traffic"
                .into(),
        );
    }
    None
}

/// fe80::/10.
pub fn is_link_local6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

/// Why `gw` cannot be a next hop, if it cannot.
pub fn check_gateway_address(gw: IpAddr) -> Result<(), String> {
    let what = match gw {
        IpAddr::V4(a) if a.is_unspecified() => "the unspecified address",
        IpAddr::V4(a) if a.is_broadcast() => "the broadcast address",
        IpAddr::V6(a) if a.is_unspecified() => "the unspecified address",
        IpAddr::V6(a) if a.to_ipv4_mapped().is_some() => "an IPv4-mapped address",
        a if a.is_multicast() => "a multicast address",
        a if a.is_loopback() => "a loopback address",
        _ => return Ok(()),
    };
    Err(format!("{gw} cannot be a gateway: it is {what}"))
}

/// Why `mac` cannot be an interface's address, if it cannot.
pub fn check_mac(mac: MacAddr) -> Result<(), String> {
    if mac.is_multicast() {
        return Err(format!("{mac} is a multicast address"));
    }
    if mac.0 == [0; 6] {
        return Err(format!(
            "{mac} is all zeros, which no interface may carry (the kernel refuses it)"
        ));
    }
    Ok(())
}

impl Checker<'_> {
    /// Each address of interface `ifname`, listed at `path`.
    pub(super) fn interface_addresses(
        &mut self,
        s: &SourceFile,
        path: &KeyPath,
        ifname: &str,
        addresses: &[IpNet],
    ) {
        for (i, net) in addresses.iter().enumerate() {
            if let Err(why) = check_interface_address(*net, ifname) {
                self.error(s, &path.i(i), why);
            } else if addresses[..i].iter().any(|n| n.addr() == net.addr()) {
                self.error(s, &path.i(i), format!("{} is listed twice", net.addr()));
            }
        }
    }

    pub(super) fn mac(&mut self, s: &SourceFile, path: &KeyPath, mac: Option<MacAddr>) {
        if let Some(Err(why)) = mac.map(check_mac) {
            self.error(s, path, why);
        }
    }

    pub(super) fn gateway(&mut self, s: &SourceFile, path: &KeyPath, gw: Option<IpAddr>) {
        if let Some(Err(why)) = gw.map(check_gateway_address) {
            self.error(s, path, why);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test literal")
    }

    #[test]
    fn interface_addresses_that_no_link_may_hold() {
        for (bad, says) in [
            ("0.0.0.0/24", "unspecified"),
            ("255.255.255.255/32", "limited broadcast"),
            ("224.0.0.5/24", "multicast"),
            ("10.0.0.255/24", "broadcast address of its /24"),
            ("::/64", "unspecified"),
            ("ff02::5/64", "multicast"),
            ("fe80::5/64", "link-local"),
            ("::ffff:10.0.0.1/96", "IPv4-mapped"),
            ("127.0.0.2/8", "loopback"),
            ("::1/128", "loopback"),
        ] {
            let e = check_interface_address(net(bad), "br0").expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
        for good in [
            "10.0.0.1/24",
            "10.0.0.255/23",
            "10.0.0.1/31",
            "10.0.0.255/32",
            "169.254.3.3/16",
            "fd00::1/64",
            "2001:db8::ff/64",
        ] {
            assert_eq!(check_interface_address(net(good), "br0"), Ok(()), "{good}");
        }
        assert_eq!(check_interface_address(net("127.0.0.2/8"), "lo"), Ok(()));
    }

    #[test]
    fn gateways_and_macs() {
        for bad in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "127.0.0.1",
            "::",
            "ff02::1",
            "::1",
        ] {
            assert!(
                check_gateway_address(bad.parse().expect("literal")).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            check_gateway_address("fe80::1".parse().expect("literal")),
            Ok(())
        );
        assert!(check_mac(MacAddr([0; 6])).is_err());
        assert!(check_mac(MacAddr([1, 0, 0, 0, 0, 0])).is_err());
        assert_eq!(check_mac(MacAddr([2, 0, 0, 0, 0, 1])), Ok(()));
    }
}
