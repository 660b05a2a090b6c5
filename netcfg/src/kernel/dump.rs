//! Synchronous netlink dumps on plain threads, for reading many namespaces fast:
//! no async runtime, one reusable buffer per thread, and each thread `setns`es
//! from namespace to namespace (a socket belongs to the netns it was made in).

use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::address::AddressMessage;
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkMessage};
use netlink_packet_route::neighbour::{NeighbourFlags, NeighbourMessage};
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use nix::sched::{setns, CloneFlags};

use super::state::{AddrState, LinkState, NsState, RouteState};
use crate::link::port::PortVlans;
use crate::neighbour::ProxyState;
use crate::rule::RuleState;

/// A blocking netlink route socket with a receive buffer.
struct Dumper {
    socket: netlink_sys::Socket,
    buf: Vec<u8>,
    seq: u32,
}

impl Dumper {
    fn new() -> io::Result<Dumper> {
        let mut socket = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&netlink_sys::SocketAddr::new(0, 0))?;
        Ok(Dumper {
            socket,
            buf: vec![0; 32 * 1024],
            seq: 0,
        })
    }

    /// Sends a dump request and feeds every reply message to `each`.
    fn dump(
        &mut self,
        request: RouteNetlinkMessage,
        each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.exchange(request, NLM_F_REQUEST | NLM_F_DUMP, each)
    }

    /// Sends `request` with `flags` and feeds every reply message to `each` until the
    /// kernel's done or acknowledgement.
    fn exchange(
        &mut self,
        request: RouteNetlinkMessage,
        flags: u16,
        mut each: impl FnMut(RouteNetlinkMessage),
    ) -> io::Result<()> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut msg = NetlinkMessage::new(header, NetlinkPayload::from(request));
        msg.finalize();
        let mut out = vec![0u8; msg.buffer_len()];
        msg.serialize(&mut out);
        self.socket.send(&out, 0)?;
        loop {
            let n = {
                let mut slice = &mut self.buf[..];
                self.socket.recv(&mut slice, 0)?
            };
            let mut offset = 0;
            while offset < n {
                let bytes = &self.buf[offset..n];
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zero-length netlink message",
                    ));
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(()),
                    NetlinkPayload::Error(e) => match e.code {
                        Some(_) => return Err(e.to_io()),
                        None => return Ok(()),
                    },
                    NetlinkPayload::InnerMessage(inner) => each(inner),
                    _ => {}
                }
                offset += (len + 3) & !3;
            }
        }
    }

    /// Links, addresses and routes of the calling thread's netns; in the host's
    /// (`host`) also policy rules and proxy neighbour entries, which vznet only
    /// keeps there, and with `port_vlans` the bridge ports' VLANs (a second link
    /// dump, of AF_BRIDGE with the BRVLAN filter: not free with 1000 ports).
    fn read(&mut self, host: bool, port_vlans: bool) -> io::Result<NsState> {
        let mut st = NsState::default();
        let mut link_req = LinkMessage::default();
        link_req
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        self.dump(RouteNetlinkMessage::GetLink(link_req), |m| {
            if let RouteNetlinkMessage::NewLink(l) = m {
                st.links.extend(LinkState::from_message(&l));
            }
        })?;
        st.resolve();
        if port_vlans {
            let mut req = LinkMessage::default();
            req.header.interface_family = AddressFamily::Bridge;
            req.attributes
                .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
            self.dump(RouteNetlinkMessage::GetLink(req), |m| {
                if let RouteNetlinkMessage::NewLink(l) = m {
                    if let Some(vlans) = PortVlans::from_attributes(&l.attributes) {
                        st.set_port_vlans(l.header.index, vlans);
                    }
                }
            })?;
        }
        self.dump(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            |m| {
                if let RouteNetlinkMessage::NewAddress(a) = m {
                    st.addrs.extend(AddrState::from_message(&a));
                }
            },
        )?;
        let all = rtnetlink::RouteMessageBuilder::<IpAddr>::new().build();
        self.dump(RouteNetlinkMessage::GetRoute(all), |m| {
            if let RouteNetlinkMessage::NewRoute(r) = m {
                st.routes.extend(RouteState::from_message(&r));
            }
        })?;
        if host {
            self.dump(RouteNetlinkMessage::GetRule(RuleMessage::default()), |m| {
                if let RouteNetlinkMessage::NewRule(r) = m {
                    st.rules.extend(RuleState::from_message(&r));
                }
            })?;
            // ndm_flags = NTF_PROXY selects the proxy table (of every family).
            let mut proxies = NeighbourMessage::default();
            proxies.header.flags = NeighbourFlags::Proxy;
            self.dump(RouteNetlinkMessage::GetNeighbour(proxies), |m| {
                if let RouteNetlinkMessage::NewNeighbour(n) = m {
                    st.proxies.extend(ProxyState::from_message(&n));
                }
            })?;
        }
        Ok(st)
    }
}

/// One request (not a dump) in the calling thread's netns, acknowledged; every reply
/// message goes to `each`.
pub(crate) fn request(
    request: RouteNetlinkMessage,
    each: impl FnMut(RouteNetlinkMessage),
) -> io::Result<()> {
    Dumper::new()?.exchange(request, NLM_F_REQUEST | NLM_F_ACK, each)
}

/// Every message a dump `request` returns in the calling thread's netns,
/// undecoded beyond the netlink crates (for readers that judge the kernel's
/// state on their own, such as the lab's snapshots).
pub fn messages(request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut out = Vec::new();
    Dumper::new()?.dump(request, |m| out.push(m))?;
    Ok(out)
}

/// The replies to one acknowledged request in the calling thread's netns.
pub fn replies(request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
    let mut out = Vec::new();
    self::request(request, |m| out.push(m))?;
    Ok(out)
}

/// Reads each namespace in `namespaces` on `threads` threads; the one named ""
/// is the host's (rules and proxy entries are read there only). Results keep the
/// input order; a namespace that cannot be entered or read gives its error.
/// With `port_vlans`, the first namespace's (the host's, which holds the
/// bridges) port VLANs are read too.
pub fn read_namespaces(
    namespaces: &[(String, File)],
    threads: usize,
    port_vlans: bool,
) -> Vec<io::Result<NsState>> {
    let threads = threads.clamp(1, namespaces.len().max(1));
    let per = namespaces.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = namespaces
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|(name, file)| {
                            setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                                .map_err(io::Error::from)?;
                            Dumper::new()?.read(name.is_empty(), port_vlans && name.is_empty())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![Err(io::Error::other("netns reader thread panicked"))])
            })
            .collect()
    })
}
