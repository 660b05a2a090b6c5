//! Kernel change notifications of the host netns and of every VE netns, on one
//! multicast netlink socket, turned into [`Delta`]s that keep an [`NsState`] current
//! without dumping it again.
//!
//! What the kernel does not announce is handled by the caller: IPv4 routes vanish
//! without an RTM_DELROUTE when their link goes down or away, so [`NsState::apply`]
//! says when a namespace's routes should be read again; an overrun (ENOBUFS: the
//! socket's buffer filled and events were lost) means the whole namespace must be
//! read again. Sysctls send no event vznet can decode (RTM_NEWNETCONF is not in
//! netlink-packet-route), so they are read from /proc/sys when a plan needs them.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use tokio::io::unix::AsyncFd;

use super::state::{AddrState, LinkState, NsState, RouteState};
use crate::link::Port;

/// rtnetlink multicast groups (linux/rtnetlink.h, `enum rtnetlink_groups`).
const GROUPS: [u32; 7] = [
    1,  // RTNLGRP_LINK
    5,  // RTNLGRP_IPV4_IFADDR
    7,  // RTNLGRP_IPV4_ROUTE
    8,  // RTNLGRP_IPV4_RULE
    9,  // RTNLGRP_IPV6_IFADDR
    11, // RTNLGRP_IPV6_ROUTE
    19, // RTNLGRP_IPV6_RULE
];
// Not RTNLGRP_NEIGH: it reports every ARP/ND cache change (a storm on a busy host)
// and the kernel does not report proxy entries there; their drift is found by the
// periodic read.

/// One change to the state of a namespace.
#[derive(Debug, Clone)]
pub enum Delta {
    /// A link appeared or changed (the message carries all of it).
    Link(LinkState),
    /// A bridge port's attributes, from the bridge's own notice about the port
    /// (family AF_BRIDGE): only what is set is news; the rest of the link is as
    /// it was.
    Port {
        /// ifindex of the port.
        index: u32,
        /// Its port attributes (VLANs never: the notice compresses them into
        /// ranges, which the dump does not).
        port: Port,
    },
    /// A link went away.
    LinkGone(u32),
    /// An address was added.
    Addr(AddrState),
    /// An address was removed.
    AddrGone(AddrState),
    /// A route was added or replaced.
    Route(RouteState),
    /// A route was removed.
    RouteGone(RouteState),
    /// A policy rule was added.
    Rule(crate::rule::RuleState),
    /// A policy rule was removed.
    RuleGone(crate::rule::RuleState),
    /// Events were lost: read the namespace again.
    Overrun,
}

impl Delta {
    /// What kind of object changed, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Delta::Link(_) | Delta::LinkGone(_) => "link",
            Delta::Port { .. } => "bridge port",
            Delta::Addr(_) | Delta::AddrGone(_) => "address",
            Delta::Route(_) | Delta::RouteGone(_) => "route",
            Delta::Rule(_) | Delta::RuleGone(_) => "rule",
            Delta::Overrun => "overrun",
        }
    }
}

/// What applying a delta requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The state is current.
    No,
    /// The routes may have changed without events (a link went down or away).
    Routes,
    /// Anything may have changed (events were lost).
    All,
}

fn same_route(a: &RouteState, b: &RouteState) -> bool {
    a.dst == b.dst && a.table == b.table && a.via == b.via && a.oif == b.oif && a.metric == b.metric
}

impl NsState {
    /// Brings the state up to date with one event.
    pub fn apply(&mut self, delta: &Delta) -> Stale {
        match delta {
            Delta::Link(link) => {
                let went_down = match self.links.iter_mut().find(|l| l.index == link.index) {
                    Some(old) => {
                        let down = old.up && !link.up;
                        // A port's VLANs come only in the AF_BRIDGE dump: a
                        // link's own message leaves them as they were while it
                        // stays on the same master.
                        let vlans = match (&link.port.vlans, link.master == old.master) {
                            (None, true) => old.port.vlans.take(),
                            _ => None,
                        };
                        *old = link.clone();
                        if vlans.is_some() {
                            old.port.vlans = vlans;
                        }
                        down
                    }
                    None => {
                        self.links.push(link.clone());
                        false
                    }
                };
                if went_down {
                    return Stale::Routes;
                }
            }
            Delta::Port { index, port } => {
                // A port vznet does not know yet is announced by its own
                // RTM_NEWLINK, which comes first.
                if let Some(l) = self.links.iter_mut().find(|l| l.index == *index) {
                    l.port.isolated = port.isolated.or(l.port.isolated);
                    l.port.hairpin = port.hairpin.or(l.port.hairpin);
                    l.port.learning = port.learning.or(l.port.learning);
                }
            }
            Delta::LinkGone(index) => {
                self.links.retain(|l| l.index != *index);
                for l in &mut self.links {
                    if l.master == Some(*index) {
                        l.master = None;
                    }
                }
                self.addrs.retain(|a| a.index != *index);
                self.routes.retain(|r| r.oif != Some(*index));
                return Stale::Routes;
            }
            Delta::Addr(addr) => {
                if !self
                    .addrs
                    .iter()
                    .any(|a| a.index == addr.index && a.addr == addr.addr)
                {
                    self.addrs.push(addr.clone());
                }
            }
            Delta::AddrGone(addr) => {
                self.addrs
                    .retain(|a| !(a.index == addr.index && a.addr == addr.addr));
            }
            Delta::Route(route) => {
                self.routes.retain(|r| !same_route(r, route));
                self.routes.push(route.clone());
            }
            Delta::RouteGone(route) => self.routes.retain(|r| !same_route(r, route)),
            Delta::Rule(rule) => {
                self.rules.retain(|r| r.spec != rule.spec);
                self.rules.push(rule.clone());
            }
            Delta::RuleGone(rule) => self.rules.retain(|r| r.spec != rule.spec),
            Delta::Overrun => return Stale::All,
        }
        Stale::No
    }
}

/// Decodes the notifications in one datagram.
pub fn decode(buf: &[u8], out: &mut Vec<Delta>) {
    let mut offset = 0;
    while offset < buf.len() {
        let Ok(msg) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[offset..]) else {
            // An undecodable message: the state may miss something; read it again.
            out.push(Delta::Overrun);
            return;
        };
        let len = msg.header.length as usize;
        if len == 0 {
            return;
        }
        if let NetlinkPayload::InnerMessage(inner) = msg.payload {
            match inner {
                // The bridge tells of its ports on the same group, in messages
                // of family AF_BRIDGE (br_ifinfo_notify) that carry neither
                // the link's kind, nor its group, nor its alias: taken as the
                // link's state, they made a port of vznet's look like a link
                // someone else made (one is the last message after a port
                // joins its bridge, and the only one when the port's
                // forward-delay timer fires, 15 s after it came up).
                RouteNetlinkMessage::NewLink(m)
                    if m.header.interface_family == AddressFamily::Bridge =>
                {
                    out.push(Delta::Port {
                        index: m.header.index,
                        port: Port::decode_protinfo(&m.attributes),
                    })
                }
                // A port left its bridge (also as it is deleted): the link's
                // own RTM_NEWLINK or RTM_DELLINK follows.
                RouteNetlinkMessage::DelLink(m)
                    if m.header.interface_family == AddressFamily::Bridge => {}
                RouteNetlinkMessage::NewLink(m) => {
                    out.extend(LinkState::from_message(&m).map(Delta::Link))
                }
                RouteNetlinkMessage::DelLink(m) => out.push(Delta::LinkGone(m.header.index)),
                RouteNetlinkMessage::NewAddress(m) => {
                    out.extend(AddrState::from_message(&m).map(Delta::Addr))
                }
                RouteNetlinkMessage::DelAddress(m) => {
                    out.extend(AddrState::from_message(&m).map(Delta::AddrGone))
                }
                RouteNetlinkMessage::NewRoute(m) => {
                    out.extend(RouteState::from_message(&m).map(Delta::Route))
                }
                RouteNetlinkMessage::DelRoute(m) => {
                    out.extend(RouteState::from_message(&m).map(Delta::RouteGone))
                }
                RouteNetlinkMessage::NewRule(m) => {
                    out.extend(crate::rule::RuleState::from_message(&m).map(Delta::Rule))
                }
                RouteNetlinkMessage::DelRule(m) => {
                    out.extend(crate::rule::RuleState::from_message(&m).map(Delta::RuleGone))
                }
                _ => {}
            }
        }
        offset += (len + 3) & !3;
    }
}

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_LISTEN_ALL_NSID: libc::c_int = 8;

/// One datagram's worth of events and the namespace they come from: `None` is the
/// socket's own netns, `Some(nsid)` another one, by its id in the socket's netns (see
/// [`nsid`]).
#[derive(Debug)]
pub struct Batch {
    /// The peer netns id; `None` for the socket's own netns.
    pub nsid: Option<i32>,
    /// What changed.
    pub deltas: Vec<Delta>,
}

/// A socket subscribed to the link, address and route events of its own netns and of
/// every netns that has an id in it (`NETLINK_LISTEN_ALL_NSID`). Holding it pins no
/// other namespace: a VE's netns still dies with its last process.
#[derive(Debug)]
pub struct EventSocket {
    fd: AsyncFd<OwnedFd>,
}

impl EventSocket {
    /// Subscribes in the calling thread's netns. Must run on a tokio runtime with I/O.
    pub fn new() -> io::Result<EventSocket> {
        let socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        let mut socket = socket;
        socket.bind_auto()?;
        for g in GROUPS {
            socket.add_membership(g)?;
        }
        socket.set_non_blocking(true)?;
        // SAFETY: the fd was just created and is owned by `socket`, which is consumed.
        let fd = unsafe { OwnedFd::from_raw_fd(socket.into_raw_fd()) };
        setsockopt_int(&fd, SOL_NETLINK, NETLINK_LISTEN_ALL_NSID, 1)?;
        // A burst (1000 VEs wired at once) is tens of thousands of events; as root
        // the buffer may exceed net.core.rmem_max. An overrun is survivable (the
        // caller reads everything again), so a refusal is not an error.
        let _ = setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 16 << 20);
        // SAFETY: an OwnedFd keeps its descriptor open and the same for its whole life.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(EventSocket { fd })
    }

    /// Waits for events and returns every batch that is queued.
    pub async fn recv(&self) -> io::Result<Vec<Batch>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut out = Vec::new();
            loop {
                match guard.try_io(|fd| recv_batch(fd.get_ref())) {
                    Ok(Ok(Some(batch))) => out.push(batch),
                    Ok(Ok(None)) => break,
                    Ok(Err(e)) => return Err(e),
                    Err(_would_block) => break,
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}

fn setsockopt_int(
    fd: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a valid fd and a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One datagram: `Ok(None)` at end of stream; ENOBUFS becomes an overrun batch for the
/// socket's own netns (the caller cannot tell whose events were lost and reads all).
fn recv_batch(fd: &OwnedFd) -> io::Result<Option<Batch>> {
    let mut buf = vec![0u8; 64 * 1024];
    // Room for one cmsghdr carrying an int, aligned.
    let mut control = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is a valid starting point; pointers below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: msg points at live buffers of the stated sizes.
    let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOBUFS) {
            return Ok(Some(Batch {
                nsid: None,
                deltas: vec![Delta::Overrun],
            }));
        }
        return Err(e);
    }
    if n == 0 {
        return Ok(None);
    }
    let mut nsid = None;
    // SAFETY: walking the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == SOL_NETLINK && (*cmsg).cmsg_type == NETLINK_LISTEN_ALL_NSID {
                nsid = Some(std::ptr::read_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
                ));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let mut deltas = Vec::new();
    decode(&buf[..n as usize], &mut deltas);
    Ok(Some(Batch { nsid, deltas }))
}

/// The id of the netns `ns` in the calling thread's netns, assigning one if it has
/// none (ids only exist for namespaces the kernel has been told about, e.g. through
/// a veth whose peer lives there; events from a netns without an id never arrive).
pub fn nsid(ns: &File) -> io::Result<i32> {
    if let Some(id) = nsid_if_any(ns)? {
        return Ok(id);
    }
    ask_nsid(ns, true)?;
    nsid_if_any(ns)?.ok_or_else(|| io::Error::other("the kernel assigned no netns id"))
}

/// The id of the netns `ns` in the calling thread's netns, if it has one.
pub fn nsid_if_any(ns: &File) -> io::Result<Option<i32>> {
    ask_nsid(ns, false)
}

/// Asks for the id of `ns` (`new`: assigns one first).
fn ask_nsid(ns: &File, new: bool) -> io::Result<Option<i32>> {
    use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
    let fd =
        u32::try_from(ns.as_raw_fd()).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    {
        let mut m = NsidMessage::default();
        m.attributes.push(NsidAttribute::Fd(fd));
        let req = if new {
            m.attributes.push(NsidAttribute::Id(-1));
            RouteNetlinkMessage::NewNsId(m)
        } else {
            RouteNetlinkMessage::GetNsId(m)
        };
        let mut id = None;
        super::dump::request(req, |reply| {
            if let RouteNetlinkMessage::NewNsId(r) = reply {
                for a in &r.attributes {
                    if let NsidAttribute::Id(i) = a {
                        id = Some(*i);
                    }
                }
            }
        })?;
        Ok(id.filter(|i| *i >= 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, up: bool) -> LinkState {
        let mut l = crate::link::fixture::observed(
            index,
            &format!("l{index}"),
            crate::link::fixture::observed_bridge(),
            None,
        );
        l.up = up;
        l
    }

    fn route(oif: u32) -> RouteState {
        RouteState {
            dst: "10.0.0.0/24".parse().expect("cidr"),
            via: None,
            oif: Some(oif),
            metric: None,
            protocol: 249,
            scope_link: true,
            table: 254,
        }
    }

    #[test]
    fn deltas_keep_the_state_current() {
        let mut st = NsState::default();
        assert_eq!(st.apply(&Delta::Link(link(2, true))), Stale::No);
        let mut port = link(3, true);
        port.master = Some(2);
        st.apply(&Delta::Link(port));
        st.apply(&Delta::Addr(AddrState {
            index: 2,
            addr: "10.0.0.1/24".parse().expect("cidr"),
            secondary: false,
            protocol: None,
            nodad: false,
        }));
        st.apply(&Delta::Route(route(2)));
        // The same route again replaces, never duplicates.
        st.apply(&Delta::Route(route(2)));
        assert_eq!(st.routes.len(), 1);
        // Down: IPv4 routes go without an event, so the caller must read them again.
        assert_eq!(st.apply(&Delta::Link(link(2, false))), Stale::Routes);
        assert_eq!(st.apply(&Delta::LinkGone(2)), Stale::Routes);
        assert!(st.addrs.is_empty() && st.routes.is_empty());
        assert_eq!(st.links.len(), 1);
        assert_eq!(
            st.links[0].master, None,
            "a port of a deleted bridge has no master"
        );
        assert_eq!(st.apply(&Delta::Overrun), Stale::All);
    }

    // What the kernel (6.18) sent about veth3002.0 (ifindex 5), made by vznet
    // (group and alias), a port of br0 (ifindex 2), as captured from an
    // RTNLGRP_LINK socket: RTM_NEWLINK of family AF_BRIDGE from the bridge
    // (br_ifinfo_notify) after `ip link set veth3002.0 master br0` (the bridge
    // sends the same, with nothing after it, when the port's forward-delay
    // timer fires, also with STP off), after `bridge link set
    // dev veth3002.0 hairpin on` (the only message that change makes), and
    // RTM_DELLINK of family AF_BRIDGE after `ip link set veth3002.0 nomaster`.
    // None of them carries IFLA_GROUP, IFLA_IFALIAS or IFLA_LINKINFO.
    const PORT_JOINED: &str = concat!(
        "ac010000100000000000000000000000070001000500000043100100000000000f0003007665746833303032",
        "2e30000008000a000200000008000400dc05000005001000060000000a0001002aad45a4430f000008000500",
        "0200000050010c80050001000300000006000200200000000800030002000000050004000000000005000500",
        "000000000500060000000000050007000000000005001c000000000005000800010000000500090001000000",
        "05001b000100000005001e000100000005000a000000000005000c00000000000c000d0080002aad45a4430f",
        "0c000e0080002aad45a4430f06000f0001800000060010000000000006001100018000000600120001000000",
        "0500130000000000050014000000000005001d000000000006001f0000000000050020000000000005002300",
        "00000000050024000000000005002100000000000500270000000000050028000000000005002b0000000000",
        "0c00150000000000000000000c001600dc050000000000000c00170000000000000000000500190001000000",
        "08002500000200000800260000000000080029000000000008002a0000000000",
    );
    const PORT_HAIRPIN: &str = concat!(
        "ac010000100000000000000000000000070001000500000043100100000000000f0003007665746833303032",
        "2e30000008000a000200000008000400dc05000005001000060000000a0001002aad45a4430f000008000500",
        "0200000050010c80050001000300000006000200200000000800030002000000050004000100000005000500",
        "000000000500060000000000050007000000000005001c000000000005000800010000000500090001000000",
        "05001b000100000005001e000100000005000a000000000005000c00000000000c000d0080002aad45a4430f",
        "0c000e0080002aad45a4430f06000f0001800000060010000000000006001100018000000600120001000000",
        "0500130000000000050014000000000005001d000000000006001f0000000000050020000000000005002300",
        "00000000050024000000000005002100000000000500270000000000050028000000000005002b0000000000",
        "0c00150000000000000000000c001600bc050000000000000c00170000000000000000000500190001000000",
        "08002500000200000800260000000000080029000000000008002a0000000000",
    );
    const PORT_LEFT: &str = concat!(
        "5c000000110000000000000000000000070001000500000043100100000000000f0003007665746833303032",
        "2e30000008000a000200000008000400dc05000005001000060000000a0001002aad45a4430f000008000500",
        "02000000",
    );

    fn bytes(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn vznet_port() -> LinkState {
        let mut l = crate::link::fixture::observed(
            5,
            "veth3002.0",
            crate::link::Kind::Veth(Default::default()),
            Some("vznet:ve3002:eth0"),
        );
        l.master = Some(2);
        l.port = crate::link::Port::joined(None);
        l
    }

    #[test]
    fn a_ports_own_message_keeps_its_vlans_while_it_stays_on_its_bridge() {
        let mut st = NsState::default();
        let mut dumped = vznet_port();
        dumped.port.vlans = Some(crate::link::port::PortVlans::new(10, &[20]));
        st.apply(&Delta::Link(dumped.clone()));
        // An event's message (AF_UNSPEC) carries no VLANs.
        let mut event = vznet_port();
        event.up = false;
        st.apply(&Delta::Link(event.clone()));
        let vlans = |st: &NsState| st.link("veth3002.0").and_then(|l| l.port.vlans.clone());
        assert_eq!(vlans(&st), dumped.port.vlans);
        // Off its bridge, it has none.
        event.master = None;
        st.apply(&Delta::Link(event));
        assert_eq!(vlans(&st), None);
    }

    #[test]
    fn a_bridge_notice_about_its_port_leaves_the_link_vznets() {
        let mut st = NsState::default();
        st.apply(&Delta::Link(vznet_port()));
        for (what, msg) in [
            ("joined", PORT_JOINED),
            ("hairpin on", PORT_HAIRPIN),
            ("left", PORT_LEFT),
        ] {
            let mut deltas = Vec::new();
            decode(&bytes(msg), &mut deltas);
            assert!(
                !deltas.iter().any(|d| matches!(d, Delta::Overrun)),
                "{what}: the notice decodes"
            );
            for d in &deltas {
                st.apply(d);
            }
            let l = st
                .link("veth3002.0")
                .unwrap_or_else(|| panic!("{what}: a port is not deleted with its bridge notice"));
            assert!(l.is_managed() && l.is_marked(), "{what}: {l:?}");
            assert!(
                matches!(l.kind, crate::link::Kind::Veth(_)),
                "{what}: {l:?}"
            );
            let hairpin = st.link("veth3002.0").and_then(|l| l.port.hairpin);
            assert_eq!(hairpin, Some(what != "joined"), "{what}");
        }
    }
}
