//! The kernel's state as vznet reads it: links, addresses and routes of one
//! network namespace, decoded from netlink dumps.

use std::net::IpAddr;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::Handle;
use serde::Serialize;

use crate::link::port::PortVlans;
use crate::link::{Kind, Port};
use crate::model::MacAddr;

/// Routes vznet installs carry this `rtm_protocol`, so it knows them as its own
/// (`ip route show proto 249`).
pub const RTPROT_VZNET: u8 = 249;

/// Links vznet creates carry an alias starting with this.
pub const ALIAS_PREFIX: &str = "vznet:";

/// The link group vznet makes its links in (`ip link show group 1987735156`;
/// ASCII "vznt"). Unlike the alias, which the kernel takes only in a later
/// request, the group travels in the create request itself (both ends of a
/// veth), so no link is ever vznet's without a mark: a vznet killed between
/// making a link and setting its alias leaves a link in this group without
/// the alias, which the next apply deletes or makes again.
pub const LINK_GROUP: u32 = 0x767a_6e74;

/// One link.
#[derive(Debug, Clone, Serialize)]
pub struct LinkState {
    /// ifindex in its netns.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Kind and every attribute of it the kernel reports.
    pub kind: Kind,
    /// Alias (`ip link set ... alias`), vznet's ownership marker.
    pub alias: Option<String>,
    /// Link group (`IFLA_GROUP`): [`LINK_GROUP`] for links vznet made.
    pub group: u32,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// ifindex of its master (bridge or bond).
    pub master: Option<u32>,
    /// Administratively up.
    pub up: bool,
    /// IFLA_LINK: a veth's peer ifindex, a VLAN's lower link.
    pub link: Option<u32>,
    /// MTU.
    pub mtu: Option<u32>,
    /// The largest MTU the device takes.
    pub max_mtu: Option<u32>,
    /// Its attributes as a bridge port (VLANs only when they were dumped).
    pub port: Port,
    /// IFLA_LINK_NETNSID: the netns `link` is in, by its id in this one
    /// (`None`: this one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_netnsid: Option<i32>,
}

impl LinkState {
    /// True when vznet made this link: it carries vznet's alias, or vznet's
    /// group (a link made by a run that died before it set the alias).
    pub fn is_managed(&self) -> bool {
        self.is_marked() || self.group == LINK_GROUP
    }

    /// True when vznet finished making this link: it carries vznet's alias.
    pub fn is_marked(&self) -> bool {
        self.alias
            .as_deref()
            .is_some_and(|a| a.starts_with(ALIAS_PREFIX))
    }

    /// True for a bridge.
    pub fn is_bridge(&self) -> bool {
        matches!(self.kind, Kind::Bridge(_))
    }

    pub(crate) fn from_message(msg: &LinkMessage) -> Option<LinkState> {
        let mut link = LinkState {
            index: msg.header.index,
            name: String::new(),
            kind: Kind::Other {
                kind: String::new(),
            },
            alias: None,
            group: 0,
            mac: None,
            master: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            link: None,
            mtu: None,
            max_mtu: None,
            port: Port::default(),
            link_netnsid: None,
        };
        let mut infos: &[LinkInfo] = &[];
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name = n.clone(),
                LinkAttribute::IfAlias(a) => link.alias = Some(a.clone()),
                LinkAttribute::Group(g) => link.group = *g,
                LinkAttribute::Address(a) => link.mac = MacAddr::try_from(a.as_slice()).ok(),
                LinkAttribute::Controller(m) => link.master = Some(*m),
                LinkAttribute::Link(l) => link.link = Some(*l),
                LinkAttribute::LinkNetNsId(i) => link.link_netnsid = Some(*i),
                LinkAttribute::Mtu(m) => link.mtu = Some(*m),
                LinkAttribute::MaxMtu(m) => link.max_mtu = Some(*m),
                LinkAttribute::LinkInfo(i) => infos = i,
                _ => {}
            }
        }
        let kind = infos.iter().find_map(|i| match i {
            LinkInfo::Kind(k) => Some(k),
            _ => None,
        });
        let data = infos.iter().find_map(|i| match i {
            LinkInfo::Data(d) => Some(d),
            _ => None,
        });
        if let Some(kind) = kind {
            link.kind = Kind::decode(kind, data, link.link);
        }
        link.port = Port::decode(infos);
        (!link.name.is_empty()).then_some(link)
    }
}

/// One address.
#[derive(Debug, Clone, Serialize)]
pub struct AddrState {
    /// ifindex.
    pub index: u32,
    /// Address with prefix length.
    pub addr: IpNet,
    /// A secondary address (another in its subnet came first): the kernel removes
    /// it with its primary.
    pub secondary: bool,
    /// IFA_PROTO: who added it ([`RTPROT_VZNET`] for vznet).
    pub protocol: Option<u8>,
    /// Added without duplicate address detection (IFA_F_NODAD).
    pub nodad: bool,
}

impl AddrState {
    pub(crate) fn from_message(msg: &AddressMessage) -> Option<AddrState> {
        // IFA_LOCAL is the interface's own address on point-to-point links; prefer it.
        let mut local = None;
        let mut address = None;
        let mut protocol = None;
        let mut nodad = false;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Local(a) => local = Some(*a),
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Protocol(p) => protocol = Some(u8::from(*p)),
                AddressAttribute::Flags(f) => {
                    nodad = f.contains(netlink_packet_route::address::AddressFlags::Nodad)
                }
                _ => {}
            }
        }
        let ip = local.or(address)?;
        let addr = IpNet::new(ip, msg.header.prefix_len).ok()?;
        Some(AddrState {
            index: msg.header.index,
            addr,
            secondary: msg
                .header
                .flags
                .contains(netlink_packet_route::address::AddressHeaderFlags::Secondary),
            protocol,
            nodad,
        })
    }

    /// IPv6 link-local addresses are the kernel's, not the config's.
    pub fn is_link_local(&self) -> bool {
        match self.addr.addr() {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
            IpAddr::V4(_) => false,
        }
    }
}

/// One route: every route of the main table, and vznet's own in any other
/// table (but the kernel's local one).
#[derive(Debug, Clone, Serialize)]
pub struct RouteState {
    /// Destination prefix.
    pub dst: IpNet,
    /// Gateway.
    pub via: Option<IpAddr>,
    /// Output ifindex.
    pub oif: Option<u32>,
    /// Metric.
    pub metric: Option<u32>,
    /// `rtm_protocol`.
    pub protocol: u8,
    /// Link scope (a device route with no gateway).
    pub scope_link: bool,
    /// Routing table.
    pub table: u32,
}

impl RouteState {
    pub(crate) fn from_message(msg: &RouteMessage) -> Option<RouteState> {
        if msg.header.kind != RouteType::Unicast {
            return None;
        }
        let mut table = u32::from(msg.header.table);
        let family = msg.header.address_family;
        let mut dst = None;
        let mut via = None;
        let mut oif = None;
        let mut metric = None;
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => dst = route_addr(a),
                RouteAttribute::Gateway(a) => via = route_addr(a),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Priority(p) => metric = Some(*p),
                RouteAttribute::Table(t) => table = *t,
                _ => {}
            }
        }
        let dst = match (dst, family) {
            (Some(a), _) => IpNet::new(a, msg.header.destination_prefix_length).ok()?,
            (None, AddressFamily::Inet) => IpNet::new(IpAddr::from([0u8; 4]), 0).ok()?,
            (None, AddressFamily::Inet6) => IpNet::new(IpAddr::from([0u16; 8]), 0).ok()?,
            _ => return None,
        };
        let protocol = u8::from(msg.header.protocol);
        // Other tables may be large (a full BGP feed) and are not vznet's
        // business beyond its own routes, which it must find to remove them.
        let main = table == u32::from(RouteHeader::RT_TABLE_MAIN);
        if table == crate::model::RouteTable::LOCAL.0 || (!main && protocol != RTPROT_VZNET) {
            return None;
        }
        Some(RouteState {
            dst,
            via,
            oif,
            metric,
            protocol,
            scope_link: msg.header.scope == RouteScope::Link,
            table,
        })
    }

    /// True when vznet installed this route.
    pub fn is_managed(&self) -> bool {
        self.protocol == RTPROT_VZNET
    }
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Everything vznet reads from one netns.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NsState {
    /// Links.
    pub links: Vec<LinkState>,
    /// Addresses.
    pub addrs: Vec<AddrState>,
    /// Unicast routes: the main table's, and vznet's in other tables.
    pub routes: Vec<RouteState>,
    /// Policy routing rules (read in the host netns only).
    pub rules: Vec<crate::rule::RuleState>,
    /// Proxy neighbour entries (read in the host netns only).
    pub proxies: Vec<crate::neighbour::ProxyState>,
}

impl NsState {
    /// Dumps links, addresses and routes over `handle`, one after the other: a
    /// netlink socket runs one dump at a time (EBUSY otherwise).
    pub async fn read(handle: &Handle) -> Result<NsState, rtnetlink::Error> {
        let links = read_links(handle).await?;
        let addrs = read_addrs(handle).await?;
        let routes = read_routes(handle).await?;
        let mut st = NsState {
            links,
            addrs,
            routes,
            ..NsState::default()
        };
        st.resolve();
        Ok(st)
    }

    /// Turns the ifindexes that kinds name (a VLAN's lower link) into names,
    /// once every link of the netns is known.
    pub fn resolve(&mut self) {
        let names: std::collections::HashMap<u32, String> = self
            .links
            .iter()
            .map(|l| (l.index, l.name.clone()))
            .collect();
        let name_of = |i: u32| names.get(&i).cloned();
        for l in &mut self.links {
            l.kind.resolve(&name_of);
        }
    }

    /// Records a port's VLANs (from an AF_BRIDGE dump).
    pub(crate) fn set_port_vlans(&mut self, index: u32, vlans: PortVlans) {
        if let Some(l) = self.links.iter_mut().find(|l| l.index == index) {
            l.port.vlans = Some(vlans);
        }
    }

    /// The name of the master of `link`.
    pub fn master_name(&self, link: &LinkState) -> Option<String> {
        link.master
            .and_then(|m| self.link_by_index(m))
            .map(|m| m.name.clone())
    }

    /// The link named `name`.
    pub fn link(&self, name: &str) -> Option<&LinkState> {
        self.links.iter().find(|l| l.name == name)
    }

    /// The link with ifindex `index`.
    pub fn link_by_index(&self, index: u32) -> Option<&LinkState> {
        self.links.iter().find(|l| l.index == index)
    }

    /// Secondary addresses of link `index` (removed by the kernel with their primary).
    pub fn secondaries_of(&self, index: u32) -> Vec<IpNet> {
        self.addrs
            .iter()
            .filter(|a| a.index == index && a.secondary)
            .map(|a| a.addr)
            .collect()
    }

    /// The addresses of link `index` that count against `want`: all but IPv6
    /// link-local ones, which are the kernel's unless the config names them or
    /// vznet owns every address of the link (`all`).
    pub fn addrs_for<'a>(
        &'a self,
        index: u32,
        want: &'a [IpNet],
        all: bool,
    ) -> impl Iterator<Item = IpNet> + 'a {
        self.addrs
            .iter()
            .filter(move |a| {
                a.index == index && (all || !a.is_link_local() || want.contains(&a.addr))
            })
            .map(|a| a.addr)
    }

    /// The addresses of link `index` that were added without duplicate address
    /// detection (an inverse adds them back so).
    pub fn nodad_of(&self, index: u32) -> Vec<IpNet> {
        self.addrs
            .iter()
            .filter(|a| a.index == index && a.nodad)
            .map(|a| a.addr)
            .collect()
    }

    /// The addresses that go with link `index` when it is deleted and that an
    /// undo must put back: all but the kernel's own IPv6 link-local ones
    /// (vznet's, marked with its protocol, count).
    pub fn addrs_made_on(&self, index: u32) -> impl Iterator<Item = &AddrState> + '_ {
        self.addrs.iter().filter(move |a| {
            a.index == index && (!a.is_link_local() || a.protocol == Some(RTPROT_VZNET))
        })
    }

    /// Non-link-local addresses of link `index`.
    pub fn addrs_of(&self, index: u32) -> impl Iterator<Item = IpNet> + '_ {
        self.addrs
            .iter()
            .filter(move |a| a.index == index && !a.is_link_local())
            .map(|a| a.addr)
    }
}

/// Dumps all links.
pub async fn read_links(handle: &Handle) -> Result<Vec<LinkState>, rtnetlink::Error> {
    // Counters are half of a link message and vznet never reads them. Each
    // message is reduced as it arrives: a parsed LinkMessage is ~10 KiB, and a
    // host with 1000 VEs has 1000 links.
    handle
        .link()
        .get()
        .set_filter_mask(AddressFamily::Unspec, vec![LinkExtentMask::SkipStats])
        .execute()
        .try_filter_map(|m| futures::future::ready(Ok(LinkState::from_message(&m))))
        .try_collect()
        .await
}

/// Reads one link by name, `None` if there is none.
pub async fn read_link(handle: &Handle, name: &str) -> Result<Option<LinkState>, rtnetlink::Error> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(LinkState::from_message(&msg)),
        Ok(None) => Ok(None),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

async fn read_addrs(handle: &Handle) -> Result<Vec<AddrState>, rtnetlink::Error> {
    handle
        .address()
        .get()
        .execute()
        .try_filter_map(|m| futures::future::ready(Ok(AddrState::from_message(&m))))
        .try_collect()
        .await
}

async fn read_routes(handle: &Handle) -> Result<Vec<RouteState>, rtnetlink::Error> {
    // AF_UNSPEC: one dump returns every family's routes.
    let all = rtnetlink::RouteMessageBuilder::<IpAddr>::new().build();
    handle
        .route()
        .get(all)
        .execute()
        .try_filter_map(|m| futures::future::ready(Ok(RouteState::from_message(&m))))
        .try_collect()
        .await
}

/// `RouteProtocol` for vznet's routes.
pub fn vznet_protocol() -> RouteProtocol {
    RouteProtocol::from(RTPROT_VZNET)
}
