//! Announcing the virtual addresses when becoming Master (RFC 5798 §6.4.1, §6.4.2):
//! a gratuitous ARP per IPv4 address, an unsolicited Neighbor Advertisement per IPv6
//! address, so that hosts and learning bridges move to the new Master at once.
//!
//! The announcements carry the interface's own MAC address: without a virtual MAC
//! interface (keepalived's default, and this shell's), that is the address which will
//! answer for the virtual addresses.
//!
//! ARP goes out of one `AF_PACKET` socket that the process keeps (see
//! [`arp_socket`]): closing a packet socket waits for an RCU grace period (10 ms or
//! more) in the kernel, which would stall the whole runtime once per announcement. It
//! is opened with protocol 0, so it receives nothing. The ICMPv6 socket is opened per
//! call: it would queue every ICMPv6 packet if kept, and closing it does not wait.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::link::HardwareAddress;
use super::socket::send_from;
use super::Error;
use crate::wire::REQUIRED_HOP_LIMIT;

/// EtherType of ARP.
const ETH_P_ARP: u16 = 0x0806;
const BROADCAST: HardwareAddress = [0xff; 6];
/// All-nodes multicast, where unsolicited Neighbor Advertisements go (RFC 4861 §7.2.6).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// ICMPv6 type of a Neighbor Advertisement (RFC 4861 §4.4).
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// NA flags in the first octet after the checksum: Router and Override.
const NA_ROUTER: u8 = 0x80;
const NA_OVERRIDE: u8 = 0x20;
/// NDP option: Target Link-Layer Address, length in units of 8 octets.
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;

/// Length of an ARP packet for Ethernet and IPv4.
pub const ARP_LEN: usize = 28;
/// Length of a Neighbor Advertisement with a Target Link-Layer Address option.
pub const NA_LEN: usize = 32;

/// An ARP announcement (RFC 5227 §2.3): a request whose sender and target protocol
/// addresses are both `address`, target hardware address zero. Hosts with `address`
/// in their cache update it to `mac`; the frame goes to the broadcast address.
pub fn arp_announcement(mac: HardwareAddress, address: Ipv4Addr) -> [u8; ARP_LEN] {
    let mut p = [0u8; ARP_LEN];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol type: IPv4
    p[4] = 6; // hardware address length
    p[5] = 4; // protocol address length
    p[6..8].copy_from_slice(&1u16.to_be_bytes()); // operation: request
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&address.octets());
    // p[18..24]: target hardware address, zero.
    p[24..28].copy_from_slice(&address.octets());
    p
}

/// An unsolicited Neighbor Advertisement for `target` (RFC 4861 §4.4, §7.2.6): Router
/// and Override set, Solicited clear, with a Target Link-Layer Address option. The
/// checksum is left zero: the kernel computes it on raw ICMPv6 sockets.
pub fn unsolicited_neighbor_advertisement(mac: HardwareAddress, target: Ipv6Addr) -> [u8; NA_LEN] {
    let mut p = [0u8; NA_LEN];
    p[0] = NEIGHBOR_ADVERTISEMENT;
    // p[1]: code 0; p[2..4]: checksum.
    p[4] = NA_ROUTER | NA_OVERRIDE;
    p[8..24].copy_from_slice(&target.octets());
    p[24] = OPTION_TARGET_LINK_LAYER_ADDRESS;
    p[25] = 1;
    p[26..32].copy_from_slice(&mac);
    p
}

/// Where and as whom to announce.
#[derive(Debug, Clone)]
pub struct Announcer {
    pub interface: String,
    pub ifindex: u32,
    pub mac: HardwareAddress,
    /// Source of the Neighbor Advertisements: the interface's link-local address.
    /// `None`: IPv6 addresses are not announced.
    pub ipv6_source: Option<Ipv6Addr>,
    /// From [`arp_socket`], shared by every announcer of the process.
    pub arp: Arc<Socket>,
}

/// A packet socket that receives nothing (protocol 0) and sends ARP payloads on any
/// interface, the kernel adding the Ethernet header.
pub fn arp_socket() -> std::io::Result<Socket> {
    Socket::new(Domain::PACKET, Type::DGRAM.nonblocking().cloexec(), None)
}

impl Announcer {
    /// Announces every address once; returns how many announcements went out, or the
    /// first failure.
    pub fn announce(&self, addresses: impl IntoIterator<Item = IpAddr>) -> Result<usize, Error> {
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = addresses.into_iter().partition(IpAddr::is_ipv4);
        let mut sent = 0;
        if !v4.is_empty() {
            let socket = &self.arp;
            let to = self.broadcast_arp_destination();
            for address in &v4 {
                if let IpAddr::V4(a) = address {
                    socket
                        .send_to(&arp_announcement(self.mac, *a), &to)
                        .map_err(|e| Error::socket("send gratuitous ARP", &self.interface, e))?;
                    sent += 1;
                }
            }
        }
        // Without a link-local address (an IPv4 instance's interface may have none),
        // IPv6 addresses go unannounced: setup warned.
        if let (false, Some(source)) = (v6.is_empty(), self.ipv6_source) {
            let socket = self.icmpv6_socket()?;
            for address in &v6 {
                if let IpAddr::V6(a) = address {
                    let na = unsolicited_neighbor_advertisement(self.mac, *a);
                    send_from(
                        &socket,
                        &na,
                        IpAddr::V6(source),
                        IpAddr::V6(ALL_NODES),
                        self.ifindex,
                    )
                    .map_err(|e| {
                        Error::socket(
                            "send unsolicited neighbor advertisement",
                            &self.interface,
                            e,
                        )
                    })?;
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    /// `sockaddr_ll` for an ARP frame to the Ethernet broadcast address on the interface.
    fn broadcast_arp_destination(&self) -> SockAddr {
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: sockaddr_ll is one of this platform's sockaddr types, as view_as
        // requires; the storage is zeroed, so every field not set below is valid.
        let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
        ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
        ll.sll_protocol = ETH_P_ARP.to_be();
        ll.sll_ifindex = i32::try_from(self.ifindex).unwrap_or(0);
        ll.sll_halen = 6;
        ll.sll_addr[..6].copy_from_slice(&BROADCAST);
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: the first `len` bytes of the storage hold the sockaddr_ll set above.
        unsafe { SockAddr::new(storage, len) }
    }

    fn icmpv6_socket(&self) -> Result<Socket, Error> {
        let fail = |op| move |e| Error::socket(op, &self.interface, e);
        let socket = Socket::new(
            Domain::IPV6,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::ICMPV6),
        )
        .map_err(fail("open ICMPv6 socket"))?;
        socket
            .bind_device(Some(self.interface.as_bytes()))
            .map_err(fail("SO_BINDTODEVICE"))?;
        // RFC 4861 §7.1.2: receivers drop Neighbor Advertisements with any other.
        let hops = u32::from(REQUIRED_HOP_LIMIT);
        socket
            .set_multicast_hops_v6(hops)
            .map_err(fail("IPV6_MULTICAST_HOPS"))?;
        socket
            .set_unicast_hops_v6(hops)
            .map_err(fail("IPV6_UNICAST_HOPS"))?;
        Ok(socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: HardwareAddress = [0x02, 0x00, 0x5e, 0x00, 0x01, 0x33];

    #[test]
    fn arp_announcement_bytes() {
        let p = arp_announcement(MAC, Ipv4Addr::new(192, 0, 2, 100));
        let expected: [u8; ARP_LEN] = [
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01, // Ethernet, IPv4, request
            0x02, 0x00, 0x5e, 0x00, 0x01, 0x33, 192, 0, 2, 100, // sender
            0, 0, 0, 0, 0, 0, 192, 0, 2, 100, // target
        ];
        assert_eq!(p, expected);
    }

    #[test]
    fn neighbor_advertisement_bytes() {
        let target: Ipv6Addr = "2001:db8::100".parse().expect("literal");
        let p = unsolicited_neighbor_advertisement(MAC, target);
        assert_eq!(p[0], 136);
        assert_eq!(p[1], 0);
        assert_eq!(&p[2..4], &[0, 0], "the kernel fills the checksum");
        assert_eq!(p[4], 0xa0, "R and O set, S clear");
        assert_eq!(&p[5..8], &[0, 0, 0]);
        assert_eq!(&p[8..24], &target.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &MAC);
    }
}
