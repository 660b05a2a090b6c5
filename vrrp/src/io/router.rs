//! What the virtual routers of one process share (RFC 5798 §1.6: one "VRRP Router"
//! runs many virtual routers): one netlink connection, one stream of link
//! notifications, one raw socket per interface and address family, the tracking
//! sources (a script runs once for all its trackers) and the accept-mode filter.
//!
//! Without sharing, N instances on an interface meant N raw sockets: the kernel copies
//! every advert to each of them and wakes N tasks, of which N - 1 throw it away, and
//! 1000 instances held 3000 descriptors. With one socket per interface and family, a
//! reader task hands each datagram to the instance of its VRID only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use futures::StreamExt;
use netlink_packet_route::link::LinkAttribute;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::MulticastGroup;
use tokio::sync::{broadcast, mpsc};

use super::link::is_up;
use super::socket::{AdvertSocket, Datagram};
use super::warning_limit::WarningLimit;
use super::Error;
use crate::wire::{AddressFamily, Ipv4Packet};

/// Largest datagram read: an IPv4 header with options, the VRRP header, 255 IPv6
/// addresses, and room to spare.
const RECEIVE_BUFFER: usize = 8192;
/// Datagrams queued per instance before the reader drops (a stuck instance must not
/// hold the others up).
const INBOX_DEPTH: usize = 64;
/// Link notifications buffered per subscriber; a slower one resynchronises.
const LINK_EVENTS_DEPTH: usize = 1024;

/// A change of some interface, from RTNLGRP_LINK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkChange {
    pub index: u32,
    /// `None` when the message did not carry the name.
    pub name: Option<String>,
    /// IFF_UP and IFF_RUNNING; false for a deleted link.
    pub up: bool,
}

/// One received datagram, as read from the shared socket.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub bytes: Vec<u8>,
    pub datagram: Datagram,
}

/// The shared parts; cheap to clone. Must be made inside a tokio runtime (it spawns
/// the netlink tasks).
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    netlink: rtnetlink::Handle,
    link_changes: broadcast::Sender<LinkChange>,
    sockets: Mutex<HashMap<SocketKey, Weak<SharedSocket>>>,
    /// Gratuitous ARP, every interface.
    arp: Arc<socket2::Socket>,
    sources: super::track::Sources,
    /// Made on first use: a process whose instances all accept needs no nftables.
    accept_filter: tokio::sync::OnceCell<super::accept_filter::AcceptFilter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SocketKey {
    ifindex: u32,
    family: AddressFamily,
    multicast: bool,
}

impl Router {
    /// Opens the netlink connection and subscribes to link notifications.
    pub fn new() -> Result<Router, Error> {
        let (connection, netlink, _) = rtnetlink::new_connection()
            .map_err(|e| Error::socket("open netlink socket", "-", e))?;
        tokio::spawn(connection);
        let (events, _, mut messages) =
            rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
                .map_err(|e| Error::socket("open netlink link notifications", "-", e))?;
        tokio::spawn(events);
        let arp = Arc::new(
            super::gratuitous::arp_socket()
                .map_err(|e| Error::socket("open AF_PACKET socket", "-", e))?,
        );
        let (link_changes, _) = broadcast::channel(LINK_EVENTS_DEPTH);
        let sender = link_changes.clone();
        tokio::spawn(async move {
            while let Some((message, _)) = messages.next().await {
                if let Some(change) = link_change(&message) {
                    // No subscriber is fine.
                    let _ = sender.send(change);
                }
            }
            tracing::warn!("netlink link notifications ended");
        });
        Ok(Router {
            inner: Arc::new(Inner {
                netlink,
                link_changes,
                sockets: Mutex::new(HashMap::new()),
                arp,
                sources: super::track::Sources::default(),
                accept_filter: tokio::sync::OnceCell::new(),
            }),
        })
    }

    pub fn netlink(&self) -> &rtnetlink::Handle {
        &self.inner.netlink
    }

    /// The scripts, files and processes tracked by the process's instances.
    pub fn sources(&self) -> &super::track::Sources {
        &self.inner.sources
    }

    /// The process's accept-mode filter, set up on first use (on the blocking pool:
    /// loading libnftables must not stall the instances already running).
    pub async fn accept_filter(&self) -> Result<super::accept_filter::AcceptFilter, Error> {
        self.inner
            .accept_filter
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(super::accept_filter::AcceptFilter::new)
                    .await
                    .map_err(|e| Error::Nftables(nft::Error::NoBackend(e.to_string())))?
            })
            .await
            .cloned()
    }

    /// The process's socket for gratuitous ARP.
    pub fn arp_socket(&self) -> Arc<socket2::Socket> {
        self.inner.arp.clone()
    }

    /// Link changes from now on. Subscribe before querying a link's state, so that no
    /// change falls between the two.
    pub fn link_changes(&self) -> broadcast::Receiver<LinkChange> {
        self.inner.link_changes.subscribe()
    }

    /// The socket for `interface` and `family`, opened on first use; `multicast`
    /// (joined to the VRRP group) and unicast-only instances get separate sockets.
    pub fn socket(
        &self,
        interface: &str,
        ifindex: u32,
        family: AddressFamily,
        multicast: bool,
    ) -> Result<Arc<SharedSocket>, Error> {
        let key = SocketKey {
            ifindex,
            family,
            multicast,
        };
        let mut sockets = self
            .inner
            .sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = sockets.get(&key).and_then(Weak::upgrade) {
            return Ok(s);
        }
        sockets.retain(|_, s| s.strong_count() > 0);
        let socket = Arc::new(AdvertSocket::open(interface, ifindex, family, multicast)?);
        let routes = Arc::new(Mutex::new(Routes::default()));
        let reader = tokio::spawn(read_loop(
            socket.clone(),
            routes.clone(),
            interface.to_owned(),
        ));
        let shared = Arc::new(SharedSocket {
            socket,
            routes,
            reader,
        });
        sockets.insert(key, Arc::downgrade(&shared));
        Ok(shared)
    }
}

/// Who gets which datagram.
#[derive(Debug, Default)]
struct Routes {
    next_id: u64,
    by_vrid: HashMap<u8, Vec<(u64, mpsc::Sender<Inbound>)>>,
}

/// One raw socket shared by the instances on one interface and family; closed when the
/// last of them drops it.
#[derive(Debug)]
pub struct SharedSocket {
    socket: Arc<AdvertSocket>,
    routes: Arc<Mutex<Routes>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for SharedSocket {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SharedSocket {
    pub fn socket(&self) -> &AdvertSocket {
        &self.socket
    }

    /// Datagrams for `vrid`, plus those that name no VRID of this socket's instances
    /// (so that every instance counts what it drops, as with a socket of its own).
    pub fn subscribe(self: &Arc<Self>, vrid: u8) -> Inbox {
        let (tx, rx) = mpsc::channel(INBOX_DEPTH);
        let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
        let id = routes.next_id;
        routes.next_id += 1;
        routes.by_vrid.entry(vrid).or_default().push((id, tx));
        Inbox {
            receiver: rx,
            vrid,
            id,
            socket: self.clone(),
        }
    }
}

/// An instance's share of a [`SharedSocket`]; unsubscribes on drop.
#[derive(Debug)]
pub struct Inbox {
    receiver: mpsc::Receiver<Inbound>,
    vrid: u8,
    id: u64,
    socket: Arc<SharedSocket>,
}

impl Inbox {
    /// The next datagram; cancel-safe. Never ends while the socket lives.
    pub async fn recv(&mut self) -> Option<Inbound> {
        self.receiver.recv().await
    }

    pub fn socket(&self) -> &AdvertSocket {
        self.socket.socket()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let mut routes = self
            .socket
            .routes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = routes.by_vrid.get_mut(&self.vrid) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                routes.by_vrid.remove(&self.vrid);
            }
        }
    }
}

/// The VRID a datagram names, if it is long enough to name one.
fn vrid_of(bytes: &[u8], datagram: &Datagram) -> Option<u8> {
    match datagram {
        Datagram::V4 { .. } => Ipv4Packet::new_checked(bytes)
            .ok()
            .and_then(|ip| ip.payload().get(1).copied()),
        Datagram::V6 { .. } => bytes.get(1).copied(),
    }
}

async fn read_loop(socket: Arc<AdvertSocket>, routes: Arc<Mutex<Routes>>, interface: String) {
    let mut buf = vec![0u8; RECEIVE_BUFFER];
    let mut warnings = WarningLimit::<Option<i32>>::default();
    loop {
        let datagram = match socket.recv(&mut buf).await {
            Ok(d) => d,
            Err(e) => {
                if let Some(left_out) = warnings.admit(std::time::Instant::now(), &e.raw_os_error())
                {
                    tracing::warn!(%interface, error = %e, suppressed = left_out.this_cause, other_suppressed = left_out.other_causes, "receive failed");
                }
                // A persistent error must not spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let len = match datagram {
            Datagram::V4 { len } | Datagram::V6 { len, .. } => len,
        };
        let Some(bytes) = buf.get(..len) else {
            continue;
        };
        let inbound = Inbound {
            bytes: bytes.to_vec(),
            datagram,
        };
        let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        let targets: Vec<&mpsc::Sender<Inbound>> =
            match vrid_of(bytes, &datagram).and_then(|v| routes.by_vrid.get(&v)) {
                Some(list) => list.iter().map(|(_, tx)| tx).collect(),
                // Unattributable or for nobody here: everyone judges (and counts) it.
                None => routes
                    .by_vrid
                    .values()
                    .flatten()
                    .map(|(_, tx)| tx)
                    .collect(),
            };
        for tx in targets {
            if tx.try_send(inbound.clone()).is_err() {
                tracing::debug!(%interface, "instance inbox full or closed; datagram dropped");
            }
        }
    }
}

/// What a link notification says, if it is about a link.
pub fn link_change(message: &NetlinkMessage<RouteNetlinkMessage>) -> Option<LinkChange> {
    let (link, deleted) = match &message.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => (l, false),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => (l, true),
        _ => return None,
    };
    let name = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    });
    Some(LinkChange {
        index: link.header.index,
        name,
        up: !deleted && is_up(link),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[test]
    fn vrid_is_read_past_the_ipv4_header_and_its_options() {
        let v4 = |ihl: u8, vrrp: &[u8]| {
            let mut d = vec![0u8; usize::from(ihl) * 4];
            d[0] = 0x40 | ihl;
            let total = u16::try_from(d.len() + vrrp.len()).expect("small");
            d[2..4].copy_from_slice(&total.to_be_bytes());
            d[8] = 255;
            d[9] = 112;
            d.extend_from_slice(vrrp);
            d
        };
        let advert = [0x31, 51, 100, 1, 0, 100, 0, 0, 10, 0, 0, 100];
        let d = v4(5, &advert);
        assert_eq!(vrid_of(&d, &Datagram::V4 { len: d.len() }), Some(51));
        let d = v4(6, &advert);
        assert_eq!(vrid_of(&d, &Datagram::V4 { len: d.len() }), Some(51));
        let d = v4(5, &[0x31]);
        assert_eq!(vrid_of(&d, &Datagram::V4 { len: d.len() }), None);
        assert_eq!(vrid_of(&[0x45], &Datagram::V4 { len: 1 }), None);
        let v6 = Datagram::V6 {
            len: 2,
            source: Ipv6Addr::LOCALHOST,
            destination: Ipv6Addr::LOCALHOST,
            hop_limit: 255,
        };
        assert_eq!(vrid_of(&[0x31, 7], &v6), Some(7));
        assert_eq!(vrid_of(&[0x31], &v6), None);
    }
}
