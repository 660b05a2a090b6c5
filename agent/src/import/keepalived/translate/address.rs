//! The lines of `virtual_ipaddress` and `virtual_ipaddress_excluded`, read as
//! keepalived's `alloc_ipaddress` reads them, and the address, scope and table
//! words routes and rules share.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use vrrp::settings::{AddressScope, VirtualIp};

use super::super::parser::Node;
use super::{value, Ctx};

/// keepalived's `parse_ipaddress`: `ADDR[/LEN]`, the family from a `:`.
pub(super) fn address(text: &str) -> Option<IpNet> {
    let (addr, len) = match text.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (text, None),
    };
    let addr: IpAddr = if text.contains(':') {
        IpAddr::V6(addr.parse().ok()?)
    } else {
        IpAddr::V4(addr.parse().ok()?)
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => u8::try_from(value::unsigned(l, 0, max)?).ok()?,
        None => u8::try_from(max).ok()?,
    };
    IpNet::new(addr, len).ok()
}

/// `scope` names and numbers (iproute2's rt_scopes).
pub(super) fn scope(text: &str) -> Option<AddressScope> {
    Some(match text {
        "global" | "universe" | "0" => AddressScope::Global,
        "site" | "200" => AddressScope::Site,
        "link" | "253" => AddressScope::Link,
        "host" | "254" => AddressScope::Host,
        "nowhere" | "255" => AddressScope::Nowhere,
        _ => return None,
    })
}

/// Routing table numbers and iproute2's standard names.
pub(super) fn table(text: &str) -> Option<u32> {
    match text {
        "main" => Some(254),
        "local" => Some(255),
        "default" => Some(253),
        t => value::unsigned(t, 1, u64::from(u32::MAX)).and_then(|v| u32::try_from(v).ok()),
    }
}

/// One `virtual_ipaddress` (or `_excluded`) line.
pub(super) fn virtual_ip(ctx: &mut Ctx<'_>, line: &Node) -> Option<VirtualIp> {
    let Some(net) = address(line.keyword()) else {
        ctx.invalid_address(line);
        return None;
    };
    let mut vip = VirtualIp::new(net);
    let mut brd: Option<&str> = None;
    let mut i = 1;
    while i < line.words.len() {
        let key = line.words[i].as_str();
        let arg = line.words.get(i + 1).map(String::as_str);
        let takes_value = matches!(
            key,
            "dev" | "scope" | "broadcast" | "brd" | "label" | "peer" | "preferred_lft"
        );
        if takes_value && arg.is_none() {
            ctx.no_effect(
                line,
                format!("{key} without a value (keepalived skips the address)"),
            );
            return None;
        }
        let arg = arg.unwrap_or_default();
        match key {
            "dev" => vip.dev = Some(arg.to_string()),
            "scope" => match scope(arg) {
                Some(s) if net.addr().is_ipv4() => vip.scope = Some(s),
                Some(_) => ctx.attr(line, key, "keepalived ignores the scope of IPv6 addresses"),
                None => ctx.attr(line, key, format!("unknown scope {arg:?} (keepalived ignores it too)")),
            },
            "broadcast" | "brd" if net.addr().is_ipv6() => {
                ctx.no_effect(line, "a broadcast address on an IPv6 address (keepalived skips the address)");
                return None;
            }
            "broadcast" | "brd" => brd = Some(arg),
            "label" if net.addr().is_ipv6() => {
                ctx.attr(line, key, "keepalived ignores labels of IPv6 addresses")
            }
            "label" => vip.label = Some(arg.to_string()),
            // vznet never leaves Master when an address is deleted behind its back.
            "no_track" => {}
            "peer" | "preferred_lft" => ctx.attr_lost(line, key, "vznet's virtual IPs have no peer address or preferred lifetime"),
            "home" | "-nodad" | "mngtmpaddr" | "noprefixroute" | "autojoin" => {
                ctx.attr_lost(line, key, "vznet sets no address flags")
            }
            "use_vmac" => ctx.attr_lost(line, key, "vznet puts an instance's addresses on its virtual MAC interface, or all on their dev"),
            other => ctx.attr(line, other, "unknown address option (keepalived ignores it too)"),
        }
        i += if takes_value { 2 } else { 1 };
    }
    if let Some(b) = brd {
        vip.brd = broadcast(net, b);
        if vip.brd.is_none() {
            ctx.no_effect(
                line,
                format!("broadcast {b:?} is not valid (keepalived skips the address)"),
            );
            return None;
        }
    }
    Some(vip)
}

/// `brd ADDR`, or `+` / `-` (all host bits set / clear) as `ip address` reads them.
fn broadcast(net: IpNet, text: &str) -> Option<Ipv4Addr> {
    let IpNet::V4(n) = net else { return None };
    match text {
        "+" if n.prefix_len() <= 30 => Some(n.broadcast()),
        "-" if n.prefix_len() <= 30 => Some(n.network()),
        t => t.parse().ok(),
    }
}
