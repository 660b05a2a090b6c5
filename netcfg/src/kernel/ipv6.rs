//! IPv6 on the links vznet makes.
//!
//! A veth's host end is a bridge port or a routed ("venet") uplink: it forwards,
//! it does not speak IPv6 itself. Left to the kernel's default it would make a
//! link-local address for itself, run duplicate address detection for it, join
//! its solicited-node group (MLD reports) and send router solicitations — per
//! VE, and each of those takes RTNL or floods the VE end. With the address
//! generation mode `none` (IFLA_INET6_ADDR_GEN_MODE, `ip link set DEV addrgenmode
//! none`) the interface keeps IPv6 enabled (it still forwards and answers for
//! addresses given to it explicitly) but invents no address of its own.
//!
//! The kernel refuses IFLA_AF_SPEC in RTM_NEWLINK (EAFNOSUPPORT, 6.18), so the
//! mode is set by the RTM_SETLINK that follows the create, and that must land
//! before the pair has carrier (the VE end up): addrconf makes the link-local
//! when the link comes up with carrier, with the mode in force at that moment.

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, LinkAttribute, LinkMessage,
};

/// Adds "generate no IPv6 address" to a RTM_SETLINK message.
pub fn no_address_generation(msg: &mut LinkMessage) {
    msg.attributes
        .push(LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(
            vec![AfSpecInet6::AddrGenMode(In6AddrGenMode::None)],
        )]));
}
