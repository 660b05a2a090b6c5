//! Raw IP protocol 112 sockets: one per instance, bound to its interface.
//!
//! The kernel builds the IP header on send (no IP_HDRINCL): TTL / hop limit 255 comes
//! from IP_TTL / IP_MULTICAST_TTL and IPV6_UNICAST_HOPS / IPV6_MULTICAST_HOPS, and the
//! source address from an IP_PKTINFO / IPV6_PKTINFO control message, so it is always the
//! primary address the checksum was computed over, even once a virtual address in the
//! same subnet is on the interface. Binding the socket to that address instead would
//! also filter what it receives by destination, and lose the multicast.
//!
//! IPv4 raw sockets deliver the IP header; IPv6 raw sockets never do, so the hop limit
//! and the destination come from IPV6_RECVHOPLIMIT and IPV6_RECVPKTINFO.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::Error;
use crate::wire::{AddressFamily, IPPROTO_VRRP, MULTICAST_V4, MULTICAST_V6, REQUIRED_HOP_LIMIT};

/// Receive buffer of a socket (the kernel doubles it for its bookkeeping).
const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// A received datagram's length and what the kernel said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// The whole IPv4 datagram, header included, is in the buffer.
    V4 { len: usize },
    /// The VRRP payload is in the buffer; the rest came as ancillary data.
    V6 {
        len: usize,
        source: Ipv6Addr,
        destination: Ipv6Addr,
        hop_limit: u8,
    },
}

/// A raw VRRP socket on one interface.
#[derive(Debug)]
pub struct AdvertSocket {
    fd: AsyncFd<Socket>,
    family: AddressFamily,
    ifindex: u32,
}

impl AdvertSocket {
    /// Opens a raw protocol-112 socket bound to `interface` (SO_BINDTODEVICE), with
    /// TTL / hop limit 255 and multicast loop off. With `join_multicast`, it joins
    /// 224.0.0.18 or ff02::12 on the interface (RFC 5798 §5.1.1.2, §5.1.2.2); without,
    /// it only sees adverts unicast to this host.
    pub fn open(
        interface: &str,
        ifindex: u32,
        family: AddressFamily,
        join_multicast: bool,
    ) -> Result<AdvertSocket, Error> {
        let fail = |op| move |e| Error::socket(op, interface, e);
        let domain = match family {
            AddressFamily::Ipv4 => Domain::IPV4,
            AddressFamily::Ipv6 => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW.nonblocking().cloexec(),
            Some(Protocol::from(i32::from(IPPROTO_VRRP))),
        )
        .map_err(fail("open raw VRRP socket"))?;
        socket
            .bind_device(Some(interface.as_bytes()))
            .map_err(fail("SO_BINDTODEVICE"))?;
        let hops = u32::from(REQUIRED_HOP_LIMIT);
        match family {
            AddressFamily::Ipv4 => {
                socket.set_ttl_v4(hops).map_err(fail("IP_TTL"))?;
                socket
                    .set_multicast_ttl_v4(hops)
                    .map_err(fail("IP_MULTICAST_TTL"))?;
                socket
                    .set_multicast_loop_v4(false)
                    .map_err(fail("IP_MULTICAST_LOOP"))?;
                // Only the groups this socket joined, not every socket's.
                socket
                    .set_multicast_all_v4(false)
                    .map_err(fail("IP_MULTICAST_ALL"))?;
                if join_multicast {
                    socket
                        .join_multicast_v4_n(
                            &MULTICAST_V4,
                            &InterfaceIndexOrAddress::Index(ifindex),
                        )
                        .map_err(fail("IP_ADD_MEMBERSHIP 224.0.0.18"))?;
                }
            }
            AddressFamily::Ipv6 => {
                socket
                    .set_unicast_hops_v6(hops)
                    .map_err(fail("IPV6_UNICAST_HOPS"))?;
                socket
                    .set_multicast_hops_v6(hops)
                    .map_err(fail("IPV6_MULTICAST_HOPS"))?;
                socket
                    .set_multicast_loop_v6(false)
                    .map_err(fail("IPV6_MULTICAST_LOOP"))?;
                socket
                    .set_multicast_all_v6(false)
                    .map_err(fail("IPV6_MULTICAST_ALL"))?;
                socket
                    .set_multicast_if_v6(ifindex)
                    .map_err(fail("IPV6_MULTICAST_IF"))?;
                socket
                    .set_recv_hoplimit_v6(true)
                    .map_err(fail("IPV6_RECVHOPLIMIT"))?;
                setsockopt(&socket, sockopt::Ipv6RecvPacketInfo, &true)
                    .map_err(|e| Error::socket("IPV6_RECVPKTINFO", interface, e))?;
                if join_multicast {
                    socket
                        .join_multicast_v6(&MULTICAST_V6, ifindex)
                        .map_err(fail("IPV6_ADD_MEMBERSHIP ff02::12"))?;
                }
            }
        }
        // One socket serves every instance on the interface: instances started
        // together send in bursts (1000 adverts within a millisecond), which overflow
        // the default 208 KiB. FORCE passes net.core.rmem_max with CAP_NET_ADMIN.
        if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER_BYTES).is_err() {
            let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER_BYTES);
        }
        // SAFETY: the Socket owns its descriptor, keeps it open until dropped and is
        // never swapped for another while inside the AsyncFd.
        let fd = unsafe { AsyncFd::register(socket) }
            .map_err(|e| Error::socket("register with the runtime", interface, e))?;
        Ok(AdvertSocket {
            fd,
            family,
            ifindex,
        })
    }

    pub fn family(&self) -> AddressFamily {
        self.family
    }

    /// Waits for the next datagram. Cancel-safe: nothing is read until one is there.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Datagram> {
        match self.family {
            AddressFamily::Ipv4 => {
                let len = self
                    .fd
                    .async_io(Interest::READABLE, |s| {
                        let mut iov = [IoSliceMut::new(buf)];
                        let msg = recvmsg::<SockaddrIn>(
                            s.as_raw_fd(),
                            &mut iov,
                            None,
                            MsgFlags::empty(),
                        )?;
                        Ok(msg.bytes)
                    })
                    .await?;
                Ok(Datagram::V4 { len })
            }
            AddressFamily::Ipv6 => {
                self.fd
                    .async_io(Interest::READABLE, |s| recv_v6(s, buf))
                    .await
            }
        }
    }

    /// Sends `packet` (a VRRP message) from `source` to `destination` on the interface.
    pub async fn send(&self, packet: &[u8], source: IpAddr, destination: IpAddr) -> io::Result<()> {
        self.fd
            .async_io(Interest::WRITABLE, |s| {
                send_from(s, packet, source, destination, self.ifindex)
            })
            .await
    }
}

fn recv_v6(socket: &Socket, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let source = msg
        .address
        .map(|a| a.ip())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without source"))?;
    let mut destination = None;
    let mut hop_limit = None;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv6PacketInfo(info) => {
                destination = Some(Ipv6Addr::from(info.ipi6_addr.s6_addr));
            }
            ControlMessageOwned::Ipv6HopLimit(h) => {
                // Out of range cannot happen; 0 fails the hop limit check anyway.
                hop_limit = Some(u8::try_from(h).unwrap_or(0));
            }
            _ => {}
        }
    }
    match (destination, hop_limit) {
        (Some(destination), Some(hop_limit)) => Ok(Datagram::V6 {
            len: msg.bytes,
            source,
            destination,
            hop_limit,
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "IPv6 datagram without IPV6_PKTINFO or IPV6_HOPLIMIT",
        )),
    }
}

/// `sendmsg` on a raw IPv4 or IPv6 socket, with the source address and the outgoing
/// interface in an IP_PKTINFO / IPV6_PKTINFO control message.
pub(crate) fn send_from(
    socket: &Socket,
    packet: &[u8],
    source: IpAddr,
    destination: IpAddr,
    ifindex: u32,
) -> io::Result<()> {
    let iov = [IoSlice::new(packet)];
    let fd = socket.as_raw_fd();
    let sent = match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: i32::try_from(ifindex).map_err(io::Error::other)?,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(source).to_be(),
                },
                ipi_addr: libc::in_addr {
                    s_addr: u32::from(Ipv4Addr::UNSPECIFIED),
                },
            };
            let to = SockaddrIn::from(SocketAddrV4::new(destination, 0));
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv4PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )?
        }
        (IpAddr::V6(source), IpAddr::V6(destination)) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: source.octets(),
                },
                ipi6_ifindex: ifindex,
            };
            let scope = if destination.is_unicast_link_local() || destination.is_multicast() {
                ifindex
            } else {
                0
            };
            let to = SockaddrIn6::from(SocketAddrV6::new(destination, 0, 0, scope));
            sendmsg(
                fd,
                &iov,
                &[ControlMessage::Ipv6PacketInfo(&info)],
                MsgFlags::empty(),
                Some(&to),
            )?
        }
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "source and destination of different families",
            ))
        }
    };
    if sent != packet.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", packet.len()),
        ));
    }
    Ok(())
}
