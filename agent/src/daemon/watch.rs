//! Kernel events: a multicast netlink socket on the link, address, route and
//! netconf groups of the host netns. Each event only says "look again"; what
//! changed is found by a full plan, so a dropped or undecodable event costs
//! nothing but latency (the periodic reconcile catches up).

use futures::StreamExt;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::MulticastGroup;
use tokio::sync::mpsc;

/// One kernel notification.
#[derive(Debug, Clone)]
pub struct Event {
    /// What kind (`link`, `address`, `route`, `rule`, `overrun`).
    pub kind: &'static str,
    /// Netlink port id of the socket that made the change (0: the kernel itself).
    pub port_id: u32,
}

/// Subscribes and forwards events until the receiver is dropped.
pub fn spawn() -> std::io::Result<mpsc::UnboundedReceiver<Event>> {
    let groups = [
        MulticastGroup::Link,
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv6Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Ipv6Route,
        MulticastGroup::Ipv4Rule,
        MulticastGroup::Ipv6Rule,
    ];
    // Not the neighbour group either: it reports every ARP/ND cache change (a
    // storm on a busy host), and the kernel does not report proxy entries
    // there; their drift is found by the periodic reconcile too.
    // Not the netconf groups: netlink-packet-route cannot decode RTM_NEWNETCONF
    // (netlink-proto logs and drops each one), so sysctl drift is found by the
    // periodic reconcile instead.
    let (conn, _handle, mut messages) = rtnetlink::new_multicast_connection(&groups)?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        // Keep the handle alive: dropping it would end the connection.
        let _handle = _handle;
        while let Some((msg, _addr)) = messages.next().await {
            let kind = match &msg.payload {
                NetlinkPayload::InnerMessage(m) => match m {
                    RouteNetlinkMessage::NewLink(_) | RouteNetlinkMessage::DelLink(_) => "link",
                    RouteNetlinkMessage::NewAddress(_) | RouteNetlinkMessage::DelAddress(_) => {
                        "address"
                    }
                    RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_) => "route",
                    RouteNetlinkMessage::NewRule(_) | RouteNetlinkMessage::DelRule(_) => "rule",
                    _ => "other",
                },
                // ENOBUFS overrun: events were lost; a full plan resyncs anyway.
                NetlinkPayload::Overrun(_) => "overrun",
                _ => continue,
            };
            if tx
                .send(Event {
                    kind,
                    port_id: msg.header.port_number,
                })
                .is_err()
            {
                break;
            }
        }
    });
    Ok(rx)
}
