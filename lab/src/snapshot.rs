//! The full kernel state of a set of network namespaces, read independently of
//! vznet's own decoding, to compare before and after: every link with every
//! attribute (ifindexes replaced by names, a veth's peer by its netns and name),
//! addresses, routes of every table, policy rules, proxy neighbour entries, and
//! every IPv4/IPv6 sysctl of the namespace (global, `all`, `default` and per
//! interface).
//!
//! What moves on its own is left out: counters, timers, carrier and
//! operational state, offload limits a bridge recomputes as ports come and go,
//! ifindexes, a bridge port's number (given in the order ports join), STP
//! state, IPv6 address and route cache information, and the tentative flag of
//! an address still in duplicate address detection.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use netcfg::kernel::dump;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoPortData, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourFlags, NeighbourMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteAttribute, RouteMessage};
use netlink_packet_route::rule::RuleMessage;
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

/// Every namespace's state: object -> its attributes, by namespace label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Label -> (object -> attributes).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
}

/// A reference to a link, resolved once every namespace is read.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// An ifindex in this namespace (`nsid` None) or in the namespace with that
    /// id as this one knows it.
    Link {
        nsid: Option<i32>,
        index: u32,
    },
}

#[derive(Debug, Default)]
struct RawNs {
    names: HashMap<u32, String>,
    /// nsid (as this namespace numbers the others) -> label.
    nsids: HashMap<i32, String>,
    objects: Vec<(String, Vec<Part>)>,
    sysctls: Vec<(String, String)>,
}

impl Snapshot {
    /// Reads the namespaces `(label, netns file path)` on two threads.
    pub fn read(namespaces: &[(String, PathBuf)]) -> Result<Snapshot> {
        let files: Vec<(String, File)> = namespaces
            .iter()
            .map(|(l, p)| {
                Ok((
                    l.clone(),
                    File::open(p).with_context(|| p.display().to_string())?,
                ))
            })
            .collect::<Result<_>>()?;
        let per = files.len().div_ceil(2).max(1);
        let raws: Vec<Result<(String, RawNs)>> = std::thread::scope(|scope| {
            let workers: Vec<_> = files
                .chunks(per)
                .map(|chunk| {
                    let all = &files;
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .map(|(label, f)| {
                                nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
                                Ok((label.clone(), read_here(all)?))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| {
                    w.join()
                        .unwrap_or_else(|_| vec![Err(anyhow::anyhow!("snapshot thread panicked"))])
                })
                .collect()
        });
        let raws: BTreeMap<String, RawNs> = raws.into_iter().collect::<Result<_>>()?;
        let mut out = Snapshot::default();
        for (label, raw) in &raws {
            let resolve = |p: &Part| match p {
                Part::Text(t) => t.clone(),
                Part::Link { nsid: None, index } => raw
                    .names
                    .get(index)
                    .cloned()
                    .unwrap_or_else(|| format!("ifindex {index}")),
                Part::Link {
                    nsid: Some(id),
                    index,
                } => match raw.nsids.get(id).and_then(|l| raws.get(l).map(|r| (l, r))) {
                    Some((l, r)) => format!(
                        "{}@{l}",
                        r.names
                            .get(index)
                            .cloned()
                            .unwrap_or_else(|| format!("ifindex {index}"))
                    ),
                    None => format!("ifindex {index}@nsid {id} (not in the snapshot)"),
                },
            };
            let mut objects: BTreeMap<String, String> = BTreeMap::new();
            let mut resolved: Vec<(&String, String)> = raw
                .objects
                .iter()
                .map(|(key, parts)| (key, parts.iter().map(resolve).collect()))
                .collect();
            // Rules and the like may repeat: count them, in the order of what
            // they say rather than of the dump (which follows ifindexes, and a
            // link made again has a new one).
            resolved.sort();
            for (key, text) in resolved {
                let mut k = key.clone();
                let mut n = 1;
                while objects.contains_key(&k) {
                    n += 1;
                    k = format!("{key} #{n}");
                }
                objects.insert(k, text);
            }
            for (k, v) in &raw.sysctls {
                objects.insert(format!("sysctl {k}"), v.clone());
            }
            out.namespaces.insert(label.clone(), objects);
        }
        Ok(out)
    }

    /// What differs from `other`, one line per object (empty: equal).
    pub fn diff(&self, other: &Snapshot) -> Vec<String> {
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        let labels: std::collections::BTreeSet<&String> = self
            .namespaces
            .keys()
            .chain(other.namespaces.keys())
            .collect();
        for label in labels {
            let a = self.namespaces.get(label).unwrap_or(&empty);
            let b = other.namespaces.get(label).unwrap_or(&empty);
            for (k, v) in a {
                match b.get(k) {
                    None => out.push(format!("{label}: - {k}: {v}")),
                    Some(w) if w != v => out.push(format!("{label}: ~ {k}: {v}  ->  {w}")),
                    _ => {}
                }
            }
            for (k, w) in b {
                if !a.contains_key(k) {
                    out.push(format!("{label}: + {k}: {w}"));
                }
            }
        }
        out
    }

    /// The objects of namespace `label` whose key starts with `prefix`.
    pub fn objects<'a>(
        &'a self,
        label: &str,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a String)> + 'a {
        self.namespaces
            .get(label)
            .into_iter()
            .flat_map(move |m| m.iter().filter(move |(k, _)| k.starts_with(prefix)))
    }
}

/// Reads the calling thread's netns; `all` are the snapshot's namespaces (to
/// learn the ids this one gives them).
fn read_here(all: &[(String, File)]) -> Result<RawNs> {
    let mut raw = RawNs::default();
    let mut req = LinkMessage::default();
    req.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let links: Vec<LinkMessage> = dump::messages(RouteNetlinkMessage::GetLink(req))?
        .into_iter()
        .filter_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => Some(l),
            _ => None,
        })
        .collect();
    for l in &links {
        if let Some(n) = l.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        }) {
            raw.names.insert(l.header.index, n);
        }
    }
    for l in &links {
        let name = raw.names.get(&l.header.index).cloned().unwrap_or_default();
        raw.objects.push((format!("link {name}"), link_parts(l)));
    }
    // Port VLANs of bridge ports.
    let mut req = LinkMessage::default();
    req.header.interface_family = AddressFamily::Bridge;
    req.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
    for m in dump::messages(RouteNetlinkMessage::GetLink(req))? {
        if let RouteNetlinkMessage::NewLink(l) = m {
            let spec: Vec<String> = l
                .attributes
                .iter()
                .filter_map(|a| match a {
                    LinkAttribute::AfSpecBridge(v) => Some(format!("{v:?}")),
                    _ => None,
                })
                .collect();
            if !spec.is_empty() {
                let name = raw.names.get(&l.header.index).cloned().unwrap_or_default();
                raw.objects
                    .push((format!("vlans {name}"), vec![Part::Text(spec.join(" "))]));
            }
        }
    }
    for m in dump::messages(RouteNetlinkMessage::GetAddress(AddressMessage::default()))? {
        if let RouteNetlinkMessage::NewAddress(a) = m {
            let (key, parts) = address(&a, &raw.names);
            raw.objects.push((key, parts));
        }
    }
    let all_routes = RouteMessage::default();
    for m in dump::messages(RouteNetlinkMessage::GetRoute(all_routes))? {
        if let RouteNetlinkMessage::NewRoute(r) = m {
            if let Some(entry) = route(&r) {
                raw.objects.push(entry);
            }
        }
    }
    for m in dump::messages(RouteNetlinkMessage::GetRule(RuleMessage::default()))? {
        if let RouteNetlinkMessage::NewRule(r) = m {
            let text = format!("{:?} {:?}", r.header, r.attributes);
            raw.objects.push((format!("rule {text}"), vec![]));
        }
    }
    let mut proxies = NeighbourMessage::default();
    proxies.header.flags = NeighbourFlags::Proxy;
    for m in dump::messages(RouteNetlinkMessage::GetNeighbour(proxies))? {
        if let RouteNetlinkMessage::NewNeighbour(n) = m {
            if !n.header.flags.contains(NeighbourFlags::Proxy) {
                continue;
            }
            let dst = n.attributes.iter().find_map(|a| match a {
                NeighbourAttribute::Destination(d) => Some(format!("{d:?}")),
                _ => None,
            });
            let dev = raw
                .names
                .get(&n.header.ifindex)
                .cloned()
                .unwrap_or_default();
            let rest: Vec<String> = n
                .attributes
                .iter()
                .filter(|a| !matches!(a, NeighbourAttribute::CacheInfo(_)))
                .map(|a| format!("{a:?}"))
                .collect();
            raw.objects.push((
                format!("proxy {dev} {}", dst.unwrap_or_default()),
                vec![Part::Text(rest.join(" "))],
            ));
        }
    }
    for (label, f) in all {
        if let Some(id) = nsid_of(f)? {
            raw.nsids.insert(id, label.clone());
        }
    }
    for tree in ["/proc/sys/net/ipv4", "/proc/sys/net/ipv6"] {
        sysctls(Path::new(tree), &mut raw.sysctls);
    }
    Ok(raw)
}

/// The id the calling thread's netns gives the netns `f` (none: never assigned).
fn nsid_of(f: &File) -> Result<Option<i32>> {
    let mut m = NsidMessage::default();
    m.attributes
        .push(NsidAttribute::Fd(u32::try_from(f.as_raw_fd()).unwrap_or(0)));
    let mut id = None;
    for r in dump::replies(RouteNetlinkMessage::GetNsId(m))? {
        if let RouteNetlinkMessage::NewNsId(r) = r {
            for a in &r.attributes {
                if let NsidAttribute::Id(i) = a {
                    id = Some(*i).filter(|i| *i >= 0);
                }
            }
        }
    }
    Ok(id)
}

/// Link attributes that move on their own (carrier, counters, offloads a
/// bridge recomputes, promiscuity a bridge port gets) or name things by index.
fn volatile_link(a: &LinkAttribute) -> bool {
    matches!(
        a,
        LinkAttribute::Stats(_)
            | LinkAttribute::Stats64(_)
            | LinkAttribute::Carrier(_)
            | LinkAttribute::CarrierChanges(_)
            | LinkAttribute::CarrierUpCount(_)
            | LinkAttribute::CarrierDownCount(_)
            | LinkAttribute::OperState(_)
            | LinkAttribute::Event(_)
            | LinkAttribute::GsoMaxSegs(_)
            | LinkAttribute::GsoMaxSize(_)
            | LinkAttribute::GroMaxSize(_)
            | LinkAttribute::TsoMaxSize(_)
            | LinkAttribute::TsoMaxSegs(_)
            | LinkAttribute::GsoIpv4MaxSize(_)
            | LinkAttribute::GroIpv4MaxSize(_)
            | LinkAttribute::Promiscuity(_)
            | LinkAttribute::AllMulticast(_)
            | LinkAttribute::AfSpecUnspec(_)
            | LinkAttribute::AfSpecUnknown(_)
            | LinkAttribute::Map(_)
            | LinkAttribute::ProtoDownReason(_)
            | LinkAttribute::LinkNetNsId(_)
            | LinkAttribute::Link(_)
            | LinkAttribute::Controller(_)
            | LinkAttribute::IfName(_)
            | LinkAttribute::LinkInfo(_)
    )
}

/// Bridge and bridge-port attributes that are state or timers, not settings.
const VOLATILE_KIND_ATTRS: &[&str] = &[
    "HelloTimer(",
    "TcnTimer(",
    "TopologyChangeTimer(",
    "GcTimer(",
    "TopologyChange(",
    "TopologyChangeDetected(",
    "RootId(",
    "RootPort(",
    "RootPathCost(",
    "MulticastQuerierState(",
    "FdbNLearned(",
    "State(",
    "PortId(",
    "PortNumber(",
    "DesignatedPort(",
    "DesignatedCost(",
    "BridgeId(",
    "TopologyChangeAck(",
    "ConfigPending(",
    "MessageAgeTimer(",
    "ForwardDelayTimer(",
    "HoldTimer(",
    "MulticastEhtHostsCnt(",
    "MulticastNGroups(",
];

fn settings<T: std::fmt::Debug>(attrs: &[T]) -> String {
    attrs
        .iter()
        .map(|a| format!("{a:?}"))
        .filter(|s| !VOLATILE_KIND_ATTRS.iter().any(|p| s.starts_with(p)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn link_parts(l: &LinkMessage) -> Vec<Part> {
    let mut parts = Vec::new();
    let up = l.header.flags.contains(LinkFlags::Up);
    parts.push(Part::Text(format!(
        "{:?} {} ",
        l.header.link_layer_type,
        if up { "up" } else { "down" }
    )));
    let nsid = l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkNetNsId(i) => Some(*i),
        _ => None,
    });
    for a in &l.attributes {
        match a {
            LinkAttribute::Link(i) => {
                parts.push(Part::Text("link ".into()));
                parts.push(Part::Link { nsid, index: *i });
                parts.push(Part::Text(" ".into()));
            }
            LinkAttribute::Controller(i) => {
                parts.push(Part::Text("master ".into()));
                parts.push(Part::Link {
                    nsid: None,
                    index: *i,
                });
                parts.push(Part::Text(" ".into()));
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    let text = match i {
                        LinkInfo::Data(InfoData::Bridge(b)) => format!("bridge [{}]", settings(b)),
                        LinkInfo::PortData(InfoPortData::BridgePort(p)) => {
                            format!("port [{}]", settings(p))
                        }
                        other => format!("{other:?}"),
                    };
                    let _ = write!(parts_text(&mut parts), "{text} ");
                }
            }
            a if volatile_link(a) => {}
            a => {
                let _ = write!(parts_text(&mut parts), "{a:?} ");
            }
        }
    }
    parts
}

/// The text part at the end of `parts` (a new one if the last is a link).
fn parts_text(parts: &mut Vec<Part>) -> &mut String {
    if !matches!(parts.last(), Some(Part::Text(_))) {
        parts.push(Part::Text(String::new()));
    }
    match parts.last_mut() {
        Some(Part::Text(t)) => t,
        _ => unreachable!("just pushed"),
    }
}

fn address(a: &AddressMessage, names: &HashMap<u32, String>) -> (String, Vec<Part>) {
    let dev = names.get(&a.header.index).cloned().unwrap_or_default();
    let ip = a
        .attributes
        .iter()
        .find_map(|x| match x {
            AddressAttribute::Local(ip) => Some(*ip),
            _ => None,
        })
        .or_else(|| {
            a.attributes.iter().find_map(|x| match x {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            })
        });
    let key = format!(
        "addr {dev} {}/{}",
        ip.map_or_else(String::new, |i| i.to_string()),
        a.header.prefix_len
    );
    let mut text = format!("scope {:?} ", a.header.scope);
    for x in &a.attributes {
        match x {
            AddressAttribute::CacheInfo(_) => {}
            // DAD runs on its own time.
            AddressAttribute::Flags(f) => {
                let mut f = *f;
                f.remove(AddressFlags::Tentative);
                f.remove(AddressFlags::Optimistic);
                let _ = write!(text, "Flags({f:?}) ");
            }
            x => {
                let _ = write!(text, "{x:?} ");
            }
        }
    }
    (key, vec![Part::Text(text)])
}

fn route(r: &RouteMessage) -> Option<(String, Vec<Part>)> {
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    let dst = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(d) => Some(format!("{d:?}")),
        _ => None,
    });
    let dst = format!(
        "{}/{}",
        dst.unwrap_or_else(|| "default".into()),
        r.header.destination_prefix_length
    );
    // The kernel's routes for IPv6 link-local addresses follow DAD on their own.
    if table == 255 && dst.contains("fe80:") {
        return None;
    }
    let metric = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    let key = format!(
        "route table {table} {:?} {dst} tos {} type {:?} metric {metric:?}",
        r.header.address_family, r.header.tos, r.header.kind
    );
    let mut parts = vec![Part::Text(format!(
        "proto {:?} scope {:?} ",
        r.header.protocol, r.header.scope
    ))];
    for a in &r.attributes {
        match a {
            RouteAttribute::Oif(i) => {
                parts.push(Part::Text("dev ".into()));
                parts.push(Part::Link {
                    nsid: None,
                    index: *i,
                });
                parts.push(Part::Text(" ".into()));
            }
            RouteAttribute::CacheInfo(_)
            | RouteAttribute::Expires(_)
            | RouteAttribute::MulticastExpires(_)
            | RouteAttribute::Table(_)
            | RouteAttribute::Destination(_)
            | RouteAttribute::Priority(_) => {}
            a => {
                let _ = write!(parts_text(&mut parts), "{a:?} ");
            }
        }
    }
    Some((key, parts))
}

/// Every readable file under `dir` (recursively), as (path below
/// /proc/sys/net, value).
fn sysctls(dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => sysctls(&path, out),
            Ok(_) => {
                if let Ok(v) = std::fs::read_to_string(&path) {
                    let key = path
                        .strip_prefix("/proc/sys/net")
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    out.push((key, v.trim().to_string()));
                }
            }
            Err(_) => {}
        }
    }
}
