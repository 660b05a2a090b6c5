//! The interface an instance runs on, as rtnetlink reports it.

use std::net::IpAddr;

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};

use super::Error;
use crate::wire::{AddressFamily, VirtualAddresses};

/// An Ethernet (MAC) address.
pub type HardwareAddress = [u8; 6];

/// One address on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkAddress {
    pub address: IpAddr,
    pub prefix_len: u8,
    /// IPv6 duplicate address detection has not finished: the kernel refuses to send
    /// from it yet.
    pub tentative: bool,
}

/// What the shell needs to know about an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
    /// `None` for interfaces without an Ethernet address (e.g. tunnels).
    pub hardware_address: Option<HardwareAddress>,
    /// Administratively up with carrier (IFF_UP and IFF_RUNNING): VRRP can run.
    pub up: bool,
    /// In the kernel's order: for IPv4 the primary address of each subnet comes first.
    pub addresses: Vec<LinkAddress>,
}

/// Whether a link message says the link can carry VRRP.
pub fn is_up(message: &LinkMessage) -> bool {
    message
        .header
        .flags
        .contains(LinkFlags::Up | LinkFlags::Running)
}

/// What a link notification (RTNLGRP_LINK) says about the interface `index`: `Some(up)`
/// for a change or a repeat of its state (a deleted link is down), `None` for another
/// interface or another message.
pub fn link_notification(
    message: &NetlinkMessage<RouteNetlinkMessage>,
    index: u32,
) -> Option<bool> {
    match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link))
            if link.header.index == index =>
        {
            Some(is_up(link))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link))
            if link.header.index == index =>
        {
            Some(false)
        }
        _ => None,
    }
}

impl Link {
    /// Looks `name` up with one link request and one address dump.
    pub async fn query(handle: &rtnetlink::Handle, name: &str) -> Result<Link, Error> {
        let message = handle
            .link()
            .get()
            .match_name(name)
            .execute()
            .try_next()
            .await
            .map_err(|e| match &e {
                rtnetlink::Error::NetlinkError(m) if m.raw_code().abs() == libc::ENODEV => {
                    Error::InterfaceNotFound(name.to_owned())
                }
                _ => Error::Netlink {
                    op: format!("get link {name}"),
                    source: e,
                },
            })?
            .ok_or_else(|| Error::InterfaceNotFound(name.to_owned()))?;
        let index = message.header.index;
        let up = is_up(&message);
        let hardware_address = message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) => HardwareAddress::try_from(bytes.as_slice()).ok(),
            _ => None,
        });
        let messages: Vec<_> = handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(|e| Error::Netlink {
                op: format!("dump addresses of {name}"),
                source: e,
            })?;
        let addresses = messages
            .iter()
            .filter_map(|m| {
                // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on
                // point-to-point links); IPv6 sends only IFA_ADDRESS.
                let local = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Local(ip) => Some(*ip),
                    _ => None,
                });
                let address = local.or_else(|| {
                    m.attributes.iter().find_map(|a| match a {
                        AddressAttribute::Address(ip) => Some(*ip),
                        _ => None,
                    })
                })?;
                let flags = m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Flags(f) => Some(*f),
                    _ => None,
                });
                let tentative = match flags {
                    Some(f) => f.contains(AddressFlags::Tentative),
                    None => m.header.flags.contains(AddressHeaderFlags::Tentative),
                };
                Some(LinkAddress {
                    address,
                    prefix_len: m.header.prefix_len,
                    tentative,
                })
            })
            .collect();
        Ok(Link {
            name: name.to_owned(),
            index,
            hardware_address,
            up,
            addresses,
        })
    }

    /// The address to send adverts from (RFC 5798 §6.1 "Primary_IP_Address"): IPv4, the
    /// first address that is not one of `virtual_addresses` (which a crashed Master may
    /// have left behind), else the first at all (an owner's virtual address may be its
    /// only address); IPv6, the link-local address (§5.1.2.1).
    pub fn primary_address(
        &self,
        family: AddressFamily,
        virtual_addresses: &VirtualAddresses,
    ) -> Option<IpAddr> {
        let candidates = || {
            self.addresses
                .iter()
                .map(|a| a.address)
                .filter(move |address| match address {
                    IpAddr::V4(_) => family == AddressFamily::Ipv4,
                    IpAddr::V6(v6) => family == AddressFamily::Ipv6 && v6.is_unicast_link_local(),
                })
        };
        candidates()
            .find(|address| !virtual_addresses.iter().any(|v| v == *address))
            .or_else(|| candidates().next())
    }

    /// Whether `address` is on the interface and usable as a source (not tentative).
    pub fn has_usable_address(&self, address: IpAddr) -> bool {
        self.addresses
            .iter()
            .any(|a| a.address == address && !a.tentative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn link() -> Link {
        let a = |address: &str, prefix_len, tentative| LinkAddress {
            address: address.parse().expect("literal"),
            prefix_len,
            tentative,
        };
        Link {
            name: "eth0".into(),
            index: 2,
            hardware_address: Some([2, 0, 0, 0, 0, 1]),
            up: true,
            addresses: vec![
                a("192.0.2.100", 32, false),
                a("192.0.2.1", 24, false),
                a("2001:db8::1", 64, false),
                a("fe80::1", 64, true),
            ],
        }
    }

    #[test]
    fn primary_skips_virtual_addresses_and_picks_link_local() {
        let l = link();
        let vips = VirtualAddresses::V4(vec![Ipv4Addr::new(192, 0, 2, 100)]);
        assert_eq!(
            l.primary_address(AddressFamily::Ipv4, &vips),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
        let vips6 = VirtualAddresses::V6(vec![]);
        assert_eq!(
            l.primary_address(AddressFamily::Ipv6, &vips6),
            Some(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)))
        );
        assert!(!l.has_usable_address("fe80::1".parse().expect("literal")));
        // An owner whose virtual address is its only one.
        let owner = Link {
            addresses: vec![l.addresses[0]],
            ..l.clone()
        };
        assert_eq!(
            owner.primary_address(AddressFamily::Ipv4, &vips),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 100)))
        );
        assert!(l.has_usable_address("192.0.2.1".parse().expect("literal")));
    }
}
