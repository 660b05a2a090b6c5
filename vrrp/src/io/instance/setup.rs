//! From settings to a ready [`Instance`]: nothing here runs the protocol.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::{Instance, IoCounters, Status};
use crate::io::address_worker::{AddressWorker, Holdings};
use crate::io::gratuitous::Announcer;
use crate::io::link::{HardwareAddress, Link};
use crate::io::notify::{Notifier, NotifyHooks};
use crate::io::router::Router;
use crate::io::sysctl;
use crate::io::track::Feeds;
use crate::io::virtual_address::{HeldAddress, VirtualAddressSet};
use crate::io::virtual_mac::VirtualMacLink;
use crate::io::virtual_route::VirtualRouteSet;
use crate::io::warning_limit::WarningLimit;
use crate::io::Error;
use crate::machine::Machine;
use crate::reception::DropCounters;
use crate::settings::{self, Settings};
use crate::track::Reading;
use crate::wire::AddressFamily;

impl Instance {
    /// [`Instance::with_router`] on a [`Router`] of its own.
    pub async fn new(settings: &Settings, name: &str) -> Result<Instance, Error> {
        Instance::with_router(&Router::new()?, settings, name).await
    }

    /// Sets up instance `name` of `settings` (validated with
    /// [`Settings::validate`]): looks its interfaces up, completes and checks the
    /// protocol config, takes its share of `router`'s socket for the interface and
    /// starts its tracking. Many instances should share one router.
    pub async fn with_router(
        router: &Router,
        settings: &Settings,
        name: &str,
    ) -> Result<Instance, Error> {
        let spec = settings
            .instance(name)
            .ok_or_else(|| Error::UnknownInstance(name.to_owned()))?;
        let mut config = spec.protocol_config();
        let group = settings.sync_group_of(name);
        config.synchronized = group.is_some();
        let family = config.family();
        if let Some(peer) = spec
            .unicast_peers
            .iter()
            .find(|p| AddressFamily::of(**p) != family)
        {
            return Err(Error::PeerFamilyMismatch(*peer));
        }
        let handle = router.netlink().clone();
        // Subscribed before the queries, so no change falls between the two.
        let link_changes = router.link_changes();
        let link = Link::query(&handle, &spec.interface).await?;
        let mut feeds =
            Feeds::new(router.sources(), spec.priority, &settings.tracked(spec)).await?;
        let mut tracked_links = vec![None; feeds.tracking.trackers.len()];
        for (index, interface) in feeds.interfaces.clone() {
            let (ifindex, up) = match Link::query(&handle, &interface).await {
                Ok(l) => (Some(l.index), l.up),
                Err(Error::InterfaceNotFound(_)) => (None, false),
                Err(e) => return Err(e),
            };
            tracked_links[index] = ifindex;
            feeds.tracking.set(index, Reading::Up(up));
        }
        if config.primary_address.is_unspecified() {
            config.primary_address = link
                .primary_address(family, &config.virtual_addresses)
                .ok_or_else(|| Error::NoPrimaryAddress {
                    interface: spec.interface.clone(),
                    family,
                })?;
        }
        let machine = Machine::new(config)?;
        let config = machine.config();
        let mac = link
            .hardware_address
            .ok_or_else(|| Error::NoHardwareAddress(spec.interface.clone()))?;
        let receive_socket = router.socket(
            &spec.interface,
            link.index,
            family,
            spec.unicast_peers.is_empty(),
        )?;
        let inbox = receive_socket.subscribe(config.vrid.get());
        let others = OtherLinks::query(&handle, spec).await?;
        // Refuses bad prefix lengths before anything is created in the kernel.
        let primary = config.primary_address;
        VirtualAddressSet::new(handle.clone(), held(spec, primary, link.index, &others))?;
        let routes = routes(spec, link.index, &others);
        let routes = VirtualRouteSet::new(handle.clone(), &routes, &spec.virtual_rules)?;
        let vmac = if spec.use_vmac {
            let v = VirtualMacLink::create(
                &handle,
                &spec.interface,
                link.index,
                config.vrid,
                family,
                primary.is_ipv6().then_some(primary),
            )
            .await?;
            tracing::info!(instance = %name, interface = %v.name, mac = %format_mac(&v.mac), "virtual MAC interface created");
            Some(Arc::new(v))
        } else {
            None
        };
        let vmac_socket = match &vmac {
            Some(v) => match router.socket(&v.name, v.index, family, false) {
                Ok(s) => Some(s),
                Err(e) => {
                    v.remove().await;
                    return Err(e);
                }
            },
            None => None,
        };
        // IPv6 announcements (of an IPv6 instance, or excluded IPv6 addresses) come
        // from the primary or the interface's link-local address.
        let ipv6_source = match primary {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => link_local(&link),
        };
        // The instance's own interface, or its virtual MAC interface.
        let (home, send_socket, home_announcer) = match (&vmac, vmac_socket) {
            (Some(v), Some(socket)) => (
                v.index,
                socket,
                Announcer {
                    interface: v.name.clone(),
                    ifindex: v.index,
                    mac: v.mac,
                    ipv6_source,
                    arp: router.arp_socket(),
                },
            ),
            _ => (
                link.index,
                receive_socket,
                Announcer {
                    interface: spec.interface.clone(),
                    ifindex: link.index,
                    mac,
                    ipv6_source,
                    arp: router.arp_socket(),
                },
            ),
        };
        let addresses = VirtualAddressSet::new(handle.clone(), held(spec, primary, home, &others))?;
        let filter = if machine.config().accept_mode {
            None
        } else {
            let all = spec.held_addresses().map(|(_, a)| a.addr()).collect();
            Some((router.accept_filter().await?, all))
        };
        let holdings = Holdings {
            addresses,
            routes,
            filter,
            announcers: announcers(spec, home_announcer, &others, router),
            vmac: vmac.clone(),
        };
        let worker = AddressWorker::spawn(name.to_owned(), holdings);
        if vmac.is_none() && family == AddressFamily::Ipv4 && !spec.is_owner() {
            sysctl::allow_local_sources(name, &spec.interface);
        }
        let hooks = NotifyHooks {
            master: spec.notify_master.clone(),
            backup: spec.notify_backup.clone(),
            fault: spec.notify_fault.clone(),
            stop: spec.notify_stop.clone(),
            any: spec.notify.clone(),
            timeout: spec.notify_timeout(),
        };
        let notifier = (!hooks.is_empty()).then(|| Notifier::spawn(name.to_owned(), hooks.timeout));
        let status = Status {
            name: name.to_owned(),
            state: machine.state(),
            priority: machine.priority(),
            master_address: machine.master_address(),
            virtual_addresses_present: false,
            interface_up: machine.is_interface_up(),
            tracked_down: Vec::new(),
            vmac_interface: vmac.as_ref().map(|v| v.name.clone()),
            sync_group: group.map(|g| g.name.clone()),
            machine: *machine.counters(),
            drops: DropCounters::default(),
            io: IoCounters::default(),
        };
        let (status_tx, status_rx) = watch::channel(status);
        let (control_tx, control) = mpsc::unbounded_channel();
        Ok(Instance {
            name: name.to_owned(),
            interface: spec.interface.clone(),
            machine,
            inbox,
            send_socket,
            addresses: Some(worker),
            netlink: handle,
            ifindex: link.index,
            link_changes,
            feeds,
            tracked_links,
            started: false,
            hooks,
            notifier,
            vmac,
            link_up: link.up,
            wait_for_primary: None,
            unicast_peers: spec.unicast_peers.clone(),
            status: status_tx,
            status_rx,
            control_tx,
            control,
            drops: DropCounters::default(),
            io: IoCounters::default(),
            virtual_addresses_present: false,
            mismatch_warnings: WarningLimit::default(),
            send_warnings: WarningLimit::default(),
            io_address_errors: 0,
            group: None,
            reported_down: false,
        })
    }
}

/// The other interfaces an instance names (a virtual IP's or a route's `dev`).
struct OtherLinks(BTreeMap<String, Link>);

impl OtherLinks {
    async fn query(
        handle: &rtnetlink::Handle,
        spec: &settings::Instance,
    ) -> Result<OtherLinks, Error> {
        let names = spec
            .virtual_ips
            .iter()
            .chain(&spec.virtual_ips_excluded)
            .filter_map(|v| v.dev.as_deref())
            .chain(spec.virtual_routes.iter().filter_map(|r| r.dev.as_deref()))
            .filter(|d| *d != spec.interface);
        let mut links = BTreeMap::new();
        for name in names {
            if !links.contains_key(name) {
                links.insert(name.to_owned(), Link::query(handle, name).await?);
            }
        }
        Ok(OtherLinks(links))
    }

    fn index(&self, name: &str) -> Option<u32> {
        self.0.get(name).map(|l| l.index)
    }
}

/// What a Master puts on interfaces: the virtual IPs and excluded ones, on the
/// instance's interface (`home`: itself or its virtual MAC interface) unless they
/// name another. The primary address belongs to the interface, not to VRRP: an
/// owner's virtual IP that is also its own is never added nor removed.
fn held(
    spec: &settings::Instance,
    primary: IpAddr,
    home: u32,
    others: &OtherLinks,
) -> Vec<HeldAddress> {
    spec.virtual_ips
        .iter()
        .chain(&spec.virtual_ips_excluded)
        .filter(|v| !(v.dev.is_none() && v.address.addr() == primary))
        .map(|v| {
            let ifindex = match v.dev.as_deref() {
                Some(dev) if dev != spec.interface => others.index(dev).unwrap_or(home),
                _ => home,
            };
            // A virtual IP written without a prefix has a host prefix, as in keepalived.
            let (address, prefix_len) = (v.address.addr(), v.address.prefix_len());
            HeldAddress {
                label: v.label.clone(),
                scope: v.scope.map(|s| s.number()),
                broadcast: v.brd,
                ..HeldAddress::new(address, prefix_len, ifindex)
            }
        })
        .collect()
}

/// The virtual routes with the index of their `dev` (`interface`: the instance's).
fn routes(
    spec: &settings::Instance,
    interface: u32,
    others: &OtherLinks,
) -> Vec<(settings::VirtualRoute, Option<u32>)> {
    spec.virtual_routes
        .iter()
        .map(|r| {
            let index = r.dev.as_deref().and_then(|d| {
                if d == spec.interface {
                    Some(interface)
                } else {
                    others.index(d)
                }
            });
            (r.clone(), index)
        })
        .collect()
}

/// Where each address is announced: on its own interface, with that interface's MAC.
fn announcers(
    spec: &settings::Instance,
    home: Announcer,
    others: &OtherLinks,
    router: &Router,
) -> Vec<(Announcer, Vec<IpAddr>)> {
    let mut by_dev: BTreeMap<Option<&str>, Vec<IpAddr>> = BTreeMap::new();
    for v in spec.virtual_ips.iter().chain(&spec.virtual_ips_excluded) {
        let dev = v.dev.as_deref().filter(|d| *d != spec.interface);
        by_dev.entry(dev).or_default().push(v.address.addr());
    }
    let mut out = Vec::new();
    for (dev, addrs) in by_dev {
        if addrs.iter().any(IpAddr::is_ipv6) {
            let source = match dev {
                None => home.ipv6_source,
                Some(d) => others.0.get(d).and_then(link_local),
            };
            if source.is_none() {
                tracing::warn!(instance = %spec.name, interface = dev.unwrap_or(&spec.interface), "no IPv6 link-local address: IPv6 virtual addresses here are not announced");
            }
        }
        match dev {
            None => out.push((home.clone(), addrs)),
            Some(dev) => {
                let Some(link) = others.0.get(dev) else {
                    continue;
                };
                let Some(mac) = link.hardware_address else {
                    continue;
                };
                let ipv6_source = link_local(link);
                let announcer = Announcer {
                    interface: dev.to_owned(),
                    ifindex: link.index,
                    mac,
                    ipv6_source,
                    arp: router.arp_socket(),
                };
                out.push((announcer, addrs));
            }
        }
    }
    out
}

fn link_local(link: &Link) -> Option<std::net::Ipv6Addr> {
    link.addresses.iter().find_map(|a| match a.address {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(v6),
        _ => None,
    })
}

pub(super) fn format_mac(mac: &HardwareAddress) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
