//! Link ops as netlink requests: making and deleting links, changing a kind's
//! attributes (with what the kernel needs around it: a bond down, its slaves
//! released), bridge-port attributes and VLANs, masters, MTU, MAC, up state.
//! The requests' contents come from the link kinds (`crate::link`).

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;

use netlink_packet_route::link::{InfoPortData, InfoPortKind, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkBridgePort, LinkBridgeVlan, LinkMessageBuilder, LinkUnspec};

use super::state::{self, LINK_GROUP};
use crate::link::port::PortVlans;
use crate::link::{Kind, LinkDef, LinkRef, Port, Resolve, Tier};
use crate::model::MacAddr;
use crate::op::NsName;

/// What link requests need from the engine: sockets and ifindexes by netns.
#[allow(async_fn_in_trait)]
pub trait Netns {
    /// The netlink handle of `ns`.
    fn handle(&self, ns: &NsName) -> io::Result<Handle>;
    /// The ifindex of `name` in `ns`.
    async fn ifindex(&self, ns: &NsName, name: &str) -> io::Result<u32>;
    /// An open file of a netns the config names.
    fn netns_fd(&self, ns: &str) -> Option<RawFd>;
    /// Drops a cached ifindex (the link was made or deleted).
    fn forget(&self, ns: &NsName, name: &str);
    /// Told that link `name` was just made and is not marked yet (a fault
    /// point for tests; an error fails the op there).
    fn created(&self, _ns: &NsName, _name: &str) -> io::Result<()> {
        Ok(())
    }
}

/// Maps netlink errors to I/O errors with the kernel's errno.
pub fn nl_err(e: rtnetlink::Error) -> io::Error {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io(),
        other => io::Error::other(other.to_string()),
    }
}

fn inval(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, e.to_string())
}

/// The ifindexes of the links a request names, looked up beforehand.
struct Resolved<'a, E: Netns> {
    index: HashMap<String, u32>,
    engine: &'a E,
}

impl<E: Netns> Resolve for Resolved<'_, E> {
    fn index(&self, link: &LinkRef) -> Option<u32> {
        match link {
            LinkRef::Name(n) => self.index.get(n).copied(),
            LinkRef::Index(i) => Some(*i),
        }
    }

    fn netns(&self, ns: &str) -> Option<RawFd> {
        self.engine.netns_fd(ns)
    }
}

async fn resolve<'a, E: Netns>(e: &'a E, ns: &NsName, kind: &Kind) -> io::Result<Resolved<'a, E>> {
    let mut index = HashMap::new();
    for r in kind.refs() {
        if let Some(n) = r.name() {
            index.insert(n.to_string(), e.ifindex(ns, n).await?);
        }
    }
    Ok(Resolved { index, engine: e })
}

/// Makes a link: its kind's attributes, MTU, MAC, lower link, up and vznet's
/// link group in one request; a veth with its peer in the peer's netns and
/// joined to its bridge; then vznet's alias, and for a recorded link
/// (rollback) its master and port attributes. All or nothing: a link whose
/// later steps fail is deleted again (the op failed, so no rollback would).
pub async fn add<E: Netns>(e: &E, ns: &NsName, def: &LinkDef) -> io::Result<()> {
    let h = e.handle(ns)?;
    let r = resolve(e, ns, &def.kind).await?;
    let (info_kind, data) = def.kind.created().info(&r).map_err(inval)?;
    let veth = def.kind.tier() == Some(Tier::Veth);
    // A bridge's MTU set at creation is replaced by its smallest port's as
    // soon as a port joins; set afterwards, it stays (BROPT_MTU_SET_BY_USER).
    let bridge = def.kind.as_bridge().is_some();
    let mut b =
        LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(info_kind).name(def.name.clone());
    if let Some(d) = data {
        b = b.set_info_data(d);
    }
    if let Some(lower) = def.kind.ifla_link() {
        let i = r
            .index(lower)
            .ok_or_else(|| inval(format!("lower link {lower} not found")))?;
        b = b.link(i);
    }
    if let (Some(mtu), false) = (def.mtu, bridge) {
        b = b.mtu(mtu);
    }
    if let Some(mac) = def.mac {
        b = b.address(mac.0.to_vec());
    }
    if let (Some(m), true) = (&def.master, veth) {
        b = b.controller(e.ifindex(ns, m).await?);
    }
    let mut msg = b.up().build();
    msg.attributes.push(LinkAttribute::Group(LINK_GROUP));
    h.link().add(msg).execute().await.map_err(nl_err)?;
    e.forget(ns, &def.name);
    let result = match e.created(ns, &def.name) {
        Ok(()) => finish(e, ns, def, bridge, veth).await,
        Err(err) => Err(err),
    };
    if let Err(err) = result {
        let gone = async {
            let idx = e.ifindex(ns, &def.name).await?;
            e.forget(ns, &def.name);
            h.link().del(idx).execute().await.map_err(nl_err)
        };
        if let Err(del) = gone.await {
            tracing::warn!(link = %def.name, error = %del, "deleting a link made half way");
        }
        return Err(err);
    }
    Ok(())
}

/// What [`add`] does once the link exists.
async fn finish<E: Netns>(
    e: &E,
    ns: &NsName,
    def: &LinkDef,
    bridge: bool,
    veth: bool,
) -> io::Result<()> {
    mark(e, ns, def).await?;
    if let (Some(mtu), true) = (def.mtu, bridge) {
        hold_mtu(e, ns, &def.name, mtu).await?;
    }
    if let (Some(m), false) = (&def.master, veth) {
        set_master(e, ns, &def.name, Some(m)).await?;
    }
    if let Some(m) = &def.master {
        restore_port(e, ns, &def.name, m, &def.port).await?;
    }
    if ns.is_none() {
        super::sysctl::restore_link(&def.name, &def.sysctls)?;
    }
    Ok(())
}

/// Gives `name`, which just joined bridge `master`, the port attributes
/// `port` (recorded when it left or was deleted).
pub async fn restore_port<E: Netns>(
    e: &E,
    ns: &NsName,
    name: &str,
    master: &str,
    port: &Port,
) -> io::Result<()> {
    if port.is_empty() {
        return Ok(());
    }
    let joined = Port::joined(match port.vlans {
        Some(_) => default_pvid(e, ns, master).await?,
        None => None,
    });
    if let Some((change, old)) = port.delta(&joined) {
        set_port(e, ns, name, &change, &old).await?;
    }
    Ok(())
}

/// The kernel ignores IFLA_IFALIAS on create: vznet marks its links with a
/// set (which also brings a veth's peer up: it could not be up before the pair
/// existed).
async fn mark<E: Netns>(e: &E, ns: &NsName, def: &LinkDef) -> io::Result<()> {
    let h = e.handle(ns)?;
    let mut own = LinkUnspec::new_with_name(&def.name)
        .alias(&def.alias)
        .build();
    let Kind::Veth(v) = &def.kind else {
        return h.link().set(own).execute().await.map_err(nl_err);
    };
    let Some(peer) = &v.peer else {
        return h.link().set(own).execute().await.map_err(nl_err);
    };
    // The host end first, alone: its IPv6 mode (no address of its own) must be
    // in force before the peer comes up and gives the pair carrier.
    super::ipv6::no_address_generation(&mut own);
    h.link().set(own).execute().await.map_err(nl_err)?;
    let pns = peer.ns.clone().or_else(|| ns.clone());
    e.forget(&pns, &peer.name);
    let ph = e.handle(&pns)?;
    ph.link()
        .set(
            LinkUnspec::new_with_name(&peer.name)
                .alias(&def.alias)
                .up()
                .build(),
        )
        .execute()
        .await
        .map_err(nl_err)
}

/// Deletes a link (a veth's peer goes with it).
pub async fn delete<E: Netns>(e: &E, ns: &NsName, def: &LinkDef) -> io::Result<()> {
    let h = e.handle(ns)?;
    let idx = e.ifindex(ns, &def.name).await?;
    e.forget(ns, &def.name);
    if let Kind::Veth(v) = &def.kind {
        if let Some(p) = &v.peer {
            e.forget(&p.ns.clone().or_else(|| ns.clone()), &p.name);
        }
    }
    h.link().del(idx).execute().await.map_err(nl_err)
}

/// The default PVID of bridge `name`, as the kernel has it now.
async fn default_pvid<E: Netns>(e: &E, ns: &NsName, name: &str) -> io::Result<Option<u16>> {
    let link = state::read_link(&e.handle(ns)?, name)
        .await
        .map_err(nl_err)?;
    Ok(link
        .as_ref()
        .and_then(|l| l.kind.as_bridge())
        .and_then(|b| b.default_pvid))
}

/// Changes a kind's attributes from `old` to `change`. A bond whose mode
/// changes goes down and releases its slaves first (the kernel changes the
/// mode only then) and gets them, its MAC and its up state back after; if a
/// step fails, what was undone around it is restored before the error returns.
pub async fn change<E: Netns>(
    e: &E,
    ns: &NsName,
    name: &str,
    change: &Kind,
    old: &Kind,
) -> io::Result<()> {
    let h = e.handle(ns)?;
    let idx = e.ifindex(ns, name).await?;
    let needs = change.needs(old);
    let before = if needs.down || needs.no_slaves {
        state::read_link(&h, name).await.map_err(nl_err)?
    } else {
        None
    };
    let was_up = before.as_ref().is_some_and(|l| l.up);
    let mac = before.as_ref().and_then(|l| l.mac);
    let slaves: Vec<String> = if needs.no_slaves {
        state::read_links(&h)
            .await
            .map_err(nl_err)?
            .into_iter()
            .filter(|l| l.master == Some(idx))
            .map(|l| l.name)
            .collect()
    } else {
        Vec::new()
    };
    if needs.down && was_up {
        set_up(e, ns, name, false).await?;
    }
    let mut released = Vec::new();
    let mut result = Ok(());
    for s in &slaves {
        result = set_master(e, ns, s, None).await;
        if result.is_err() {
            break;
        }
        released.push(s);
    }
    if result.is_ok() {
        for step in change.steps(old) {
            result = send_change(e, ns, idx, &step).await;
            if result.is_err() {
                break;
            }
        }
    }
    // Put back what was taken away, whatever happened.
    for s in released {
        let r = set_master(e, ns, s, Some(name)).await;
        result = result.and(r);
    }
    if let (Some(mac), false) = (mac, slaves.is_empty()) {
        // The first slave to join gives a bond its MAC; the slaves may come
        // back in another order.
        let r = set_mac(e, ns, name, mac).await;
        result = result.and(r);
    }
    if needs.down && was_up {
        let r = set_up(e, ns, name, true).await;
        result = result.and(r);
    }
    result
}

async fn send_change<E: Netns>(e: &E, ns: &NsName, idx: u32, step: &Kind) -> io::Result<()> {
    let r = resolve(e, ns, step).await?;
    let (info_kind, data) = step.info(&r).map_err(inval)?;
    let mut b = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(info_kind).index(idx);
    if let Some(d) = data {
        b = b.set_info_data(d);
    }
    // RTM_NEWLINK without NLM_F_CREATE: the kind's changelink (RTM_SETLINK
    // ignores IFLA_LINKINFO).
    e.handle(ns)?
        .link()
        .change(b.build())
        .execute()
        .await
        .map_err(nl_err)
}

/// Changes a bridge port's attributes and VLANs from `old` to `change`.
pub async fn set_port<E: Netns>(
    e: &E,
    ns: &NsName,
    name: &str,
    change: &Port,
    old: &Port,
) -> io::Result<()> {
    let h = e.handle(ns)?;
    let idx = e.ifindex(ns, name).await?;
    let attrs = change.attributes();
    if !attrs.is_empty() {
        let msg = LinkBridgePort::new(idx)
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(attrs))
            .build();
        h.link().set_port(msg).execute().await.map_err(nl_err)?;
    }
    if let Some(new) = &change.vlans {
        let before = old.vlans.clone().unwrap_or_default();
        // New entries first (a new PVID takes over from the old one), then the
        // ones that go.
        let adds: Vec<_> = new.missing_from(&before).copied().collect();
        if !adds.is_empty() {
            h.link()
                .set(vlan_message(idx, &adds))
                .execute()
                .await
                .map_err(nl_err)?;
        }
        let dels: Vec<_> = before
            .0
            .iter()
            .filter(|v| !new.0.iter().any(|n| n.vid == v.vid))
            .copied()
            .collect();
        if !dels.is_empty() {
            h.link()
                .del_with_message(vlan_message(idx, &dels))
                .execute()
                .await
                .map_err(nl_err)?;
        }
    }
    Ok(())
}

fn vlan_message(idx: u32, vlans: &[crate::link::PortVlan]) -> LinkMessage {
    let mut b = LinkBridgeVlan::new(idx);
    for v in vlans {
        b = b.vlan(v.vid, PortVlans::flags(v));
    }
    b.build()
}

/// Joins `name` to `master` (a bond slave goes down first: the kernel
/// refuses to enslave a link that is up, and the bond brings it up), or makes
/// it leave its master.
pub async fn set_master<E: Netns>(
    e: &E,
    ns: &NsName,
    name: &str,
    master: Option<&str>,
) -> io::Result<()> {
    let h = e.handle(ns)?;
    let msg = match master {
        Some(m) => {
            let midx = e.ifindex(ns, m).await?;
            let link = state::read_link(&h, name).await.map_err(nl_err)?;
            if link.is_some_and(|l| l.up) {
                let master = state::read_link(&h, m).await.map_err(nl_err)?;
                if master.is_some_and(|l| l.kind.is_bond()) {
                    set_up(e, ns, name, false).await?;
                }
            }
            LinkUnspec::new_with_name(name).controller(midx).build()
        }
        None => LinkUnspec::new_with_name(name).nocontroller().build(),
    };
    set(e, ns, msg).await
}

/// RTM_SETLINK in `ns`.
async fn set<E: Netns>(e: &E, ns: &NsName, msg: LinkMessage) -> io::Result<()> {
    e.handle(ns)?
        .link()
        .set(msg)
        .execute()
        .await
        .map_err(nl_err)
}

/// Sets a link up or down.
pub async fn set_up<E: Netns>(e: &E, ns: &NsName, name: &str, up: bool) -> io::Result<()> {
    let b = LinkUnspec::new_with_name(name);
    set(e, ns, if up { b.up() } else { b.down() }.build()).await
}

/// Sets a link's MAC.
pub async fn set_mac<E: Netns>(e: &E, ns: &NsName, name: &str, mac: MacAddr) -> io::Result<()> {
    let msg = LinkUnspec::new_with_name(name)
        .address(mac.0.to_vec())
        .build();
    set(e, ns, msg).await
}

/// Sets a link's MTU.
pub async fn set_mtu<E: Netns>(
    e: &E,
    ns: &NsName,
    name: &str,
    mtu: u32,
    old: Option<u32>,
) -> io::Result<()> {
    set(e, ns, LinkUnspec::new_with_name(name).mtu(mtu).build()).await?;
    if ns.is_none() && old.is_some_and(|o| o < IPV6_MIN_MTU) && mtu >= IPV6_MIN_MTU {
        regenerate_nothing(e, ns, name).await?;
    }
    Ok(())
}

/// Sets bridge `name`'s MTU so that the kernel keeps it as ports join, leave
/// or change theirs (BROPT_MTU_SET_BY_USER; without it a bridge follows its
/// smallest port). The kernel skips a write of the MTU a link already has (a
/// new bridge's is 1500) and so would not mark it: a step away first, up (a
/// step down would lower the MTU of VLANs on the bridge for good, and below
/// 1280 drop its IPv6 addresses).
pub async fn hold_mtu<E: Netns>(e: &E, ns: &NsName, name: &str, mtu: u32) -> io::Result<()> {
    let step = if mtu < 65535 { mtu + 1 } else { mtu - 1 };
    set(e, ns, LinkUnspec::new_with_name(name).mtu(step).build()).await?;
    set(e, ns, LinkUnspec::new_with_name(name).mtu(mtu).build()).await
}

/// The smallest MTU IPv6 runs on: below it the kernel drops a link's IPv6 state,
/// and above it makes that state anew with the defaults.
const IPV6_MIN_MTU: u32 = 1280;

/// A VE's host end back from an MTU under 1280 got a fresh IPv6 state, with the
/// default address generation and so a link-local address of its own: set the
/// mode vznet makes host ends with again and drop the addresses it generated
/// (vznet's own carry IFA_PROTO 249 and stay).
async fn regenerate_nothing<E: Netns>(e: &E, ns: &NsName, name: &str) -> io::Result<()> {
    use futures::TryStreamExt;
    let h = e.handle(ns)?;
    let Some(link) = state::read_link(&h, name).await.map_err(nl_err)? else {
        return Ok(());
    };
    if !(matches!(link.kind, Kind::Veth(_)) && link.is_managed()) {
        return Ok(());
    }
    let mut msg = LinkUnspec::new_with_name(name).build();
    super::ipv6::no_address_generation(&mut msg);
    h.link().set(msg).execute().await.map_err(nl_err)?;
    let addrs: Vec<_> = h
        .address()
        .get()
        .set_link_index_filter(link.index)
        .execute()
        .try_collect()
        .await
        .map_err(nl_err)?;
    for m in addrs {
        let generated = state::AddrState::from_message(&m)
            .is_some_and(|a| a.is_link_local() && a.protocol != Some(state::RTPROT_VZNET));
        if generated {
            h.address().del(m).execute().await.map_err(nl_err)?;
        }
    }
    Ok(())
}
