//! diff(desired, observed) -> ordered Plan of Ops.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::desired::Desired;
use crate::kernel::state::{LinkState, NsState, RouteState};
use crate::link::Kind;
use crate::op::{NsName, Op, Phase, RouteSpec};

/// The kernel's state in every netns the config names.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observed {
    /// The host netns.
    pub host: NsState,
    /// VE namespaces by config name.
    pub ves: BTreeMap<String, NsState>,
    /// Current values of the sysctl files the config names (`None`: no such file yet).
    pub sysctls: BTreeMap<std::path::PathBuf, Option<String>>,
}

/// Whether `end` (in another netns) is the far end of host veth `link`.
fn far_end_of(link: &LinkState, end: &LinkState) -> bool {
    matches!(end.kind, Kind::Veth(_))
        && end.link == Some(link.index)
        && link.link == Some(end.index)
}

/// The netns ids (as the host numbers them) of the namespaces that hold the
/// other end of a host veth vznet made, when that end is in no namespace read.
pub(crate) fn lost_far_ends(observed: &Observed) -> BTreeSet<i32> {
    let host = &observed.host;
    host.links
        .iter()
        .filter(|l| {
            matches!(l.kind, Kind::Veth(_))
                && l.is_managed()
                && !observed
                    .ves
                    .values()
                    .any(|st| st.links.iter().any(|p| far_end_of(l, p)))
        })
        .filter_map(|l| l.link_netnsid)
        .collect()
}

impl Observed {
    fn ns(&self, ns: &NsName) -> Option<&NsState> {
        match ns {
            None => Some(&self.host),
            Some(n) => self.ves.get(n),
        }
    }
}

/// Why no plan can be made (nothing was changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A link with a name vznet must create exists and is not vznet's.
    #[error("link {name:?}{} exists and was not created by vznet; rename it in the config or remove the link", in_ns(.ns))]
    NotOwned {
        /// Netns.
        ns: NsName,
        /// Name.
        name: String,
    },
    /// A port, slave or lower link the config names does not exist.
    #[error("{role} {name:?} does not exist")]
    Missing {
        /// "bridge port", "bond slave", "VLAN lower link", "route device".
        role: &'static str,
        /// Name.
        name: String,
    },
    /// The kernel lacks a feature the config needs.
    #[error("kernel has no {what} support ({option})")]
    NoKernelSupport {
        /// Feature.
        what: &'static str,
        /// Kernel config option.
        option: &'static str,
    },
    /// A link vznet owns must go, but it is of a kind vznet cannot make again
    /// (so no rollback could restore it).
    #[error("link {name:?} carries vznet's alias but is of kind {kind:?}, which vznet cannot make again; delete it (ip link del {name}) or clear its alias")]
    CannotRecreate {
        /// Name.
        name: String,
        /// Its kind.
        kind: String,
    },
    /// The config asks for an MTU the device does not take.
    #[error("mtu {mtu} of {name:?} is above the largest the device takes ({max})")]
    MtuTooLarge {
        /// Link.
        name: String,
        /// Asked for.
        mtu: u32,
        /// IFLA_MAX_MTU.
        max: u32,
    },
}

impl PlanError {
    /// True when the config asks for what this kernel or device cannot do
    /// (exit 2: invalid input, nothing changed).
    pub fn is_config_error(&self) -> bool {
        matches!(
            self,
            PlanError::NoKernelSupport { .. } | PlanError::MtuTooLarge { .. }
        )
    }
}

fn in_ns(ns: &NsName) -> String {
    ns.as_ref()
        .map_or(String::new(), |n| format!(" in netns {n}"))
}

/// An ordered list of ops.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The ops, sorted by phase.
    pub ops: Vec<Op>,
    /// VEs that have network config but no netns to wire (not running).
    pub unwired: Vec<u32>,
}

impl Plan {
    /// True when the kernel already matches the config.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Ops grouped by phase, in order.
    pub fn phases(&self) -> Vec<(Phase, Vec<&Op>)> {
        let mut out: Vec<(Phase, Vec<&Op>)> = Vec::new();
        for op in &self.ops {
            match out.last_mut() {
                Some((p, v)) if *p == op.phase() => v.push(op),
                _ => out.push((op.phase(), vec![op])),
            }
        }
        out
    }
}

/// Computes the ops that take `observed` to `desired`; the first object that cannot
/// be planned fails the whole plan.
pub fn plan(desired: &Desired, observed: &Observed) -> Result<Plan, PlanError> {
    let (plan, mut errors) = plan_all(desired, observed);
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors.swap_remove(0))
    }
}

/// Computes the ops that take `observed` to `desired` for every object that can be
/// planned, and why the others cannot (the agent repairs the rest and reports those).
pub fn plan_all(desired: &Desired, observed: &Observed) -> (Plan, Vec<PlanError>) {
    let mut errors = Vec::new();
    let mut ops = Vec::new();
    let fresh = crate::link::diff::plan(&mut ops, desired, observed, &mut errors);

    sysctl_ops(&mut ops, desired, observed, &fresh);
    route_ops(&mut ops, desired, observed, &mut errors);
    let host = &observed.host;
    crate::rule::plan(&mut ops, &desired.rules, &host.rules);
    if let Err(e) = crate::neighbour::plan(
        &mut ops,
        &desired.proxies,
        &host.proxies,
        &HostLinks { desired, host },
    ) {
        errors.push(e);
    }

    ops.sort_by_cached_key(Op::phase);
    (
        Plan {
            ops,
            unwired: desired.unwired.clone(),
        },
        errors,
    )
}

/// The sysctl writes. A global forwarding switch goes first and every
/// interface's `forwarding` the config names is written after it unless the
/// switch's new value is already that value: the kernel copies the switch to
/// every interface of its family (KERNEL-NOTES), so one left unwritten would
/// hold the switch's value, not its own.
fn sysctl_ops(ops: &mut Vec<Op>, desired: &Desired, observed: &Observed, fresh: &BTreeSet<String>) {
    use crate::kernel::sysctl::{normalise, overwritten_by, propagates_to};
    let (globals, rest): (Vec<_>, Vec<_>) = desired
        .sysctls
        .iter()
        .partition(|(path, _)| propagates_to(path).is_some());
    let mut switched: Vec<(&std::path::Path, String)> = Vec::new();
    for (path, value) in globals.into_iter().chain(rest) {
        let now = observed.sysctls.get(path).cloned().flatten();
        let want = normalise(value);
        // A link made (again) by this plan starts with the kernel's defaults.
        let reset = path
            .iter()
            .nth(6)
            .and_then(|s| s.to_str())
            .is_some_and(|ifname| fresh.contains(ifname));
        let overwritten = switched
            .iter()
            .any(|(g, v)| overwritten_by(g, path) && *v != want);
        if reset || overwritten || now.as_deref() != Some(want.as_str()) {
            if propagates_to(path).is_some() {
                switched.push((path, want));
            }
            ops.push(Op::Sysctl {
                path: path.clone(),
                value: value.clone(),
                old: now,
                propagated: BTreeMap::new(),
            });
        }
    }
}

/// The host's links as the proxy plan needs them.
struct HostLinks<'a> {
    desired: &'a Desired,
    host: &'a NsState,
}

impl crate::neighbour::Links for HostLinks<'_> {
    fn name_of(&self, index: u32) -> Option<&str> {
        self.host.link_by_index(index).map(|l| l.name.as_str())
    }

    fn exists(&self, name: &str) -> bool {
        self.host.link(name).is_some()
            || self
                .desired
                .links
                .iter()
                .any(|l| l.ns.is_none() && l.link.name == name)
    }
}

/// The links of `ns` that lose every IPv4 address in `ops` (their IPv4 routes go
/// with the last one).
fn readdressed(ops: &[Op], ns: &NsName, state: &NsState) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for l in &state.links {
        let current: Vec<ipnet::IpNet> = state
            .addrs_of(l.index)
            .filter(|a| a.addr().is_ipv4())
            .collect();
        if current.is_empty() {
            continue;
        }
        let all_go = current.iter().all(|a| {
            ops.iter().any(|op| {
                matches!(op, Op::AddrDel { ns: n, dev, addr, .. } if n == ns && *dev == l.name && addr == a)
            })
        });
        if all_go {
            out.insert(l.name.clone());
        }
    }
    out
}

fn route_ops(
    ops: &mut Vec<Op>,
    desired: &Desired,
    observed: &Observed,
    errors: &mut Vec<PlanError>,
) {
    // Every netns with desired routes, plus every VE netns read (stale managed
    // routes, and the routes on VE ends that go with their veth).
    let mut namespaces: BTreeSet<NsName> = desired.routes.keys().cloned().collect();
    namespaces.insert(None);
    namespaces.extend(observed.ves.keys().cloned().map(Some));
    let deleted = deleted_links(ops);
    let none = BTreeSet::new();
    for ns in &namespaces {
        let want = desired.routes.get(ns).map(Vec::as_slice).unwrap_or(&[]);
        let Some(state) = observed.ns(ns) else {
            for r in want {
                ops.push(Op::RouteAdd {
                    ns: ns.clone(),
                    route: r.clone(),
                });
            }
            continue;
        };
        let have: Vec<RouteSpec> = state
            .routes
            .iter()
            .filter(|r| r.is_managed())
            .map(|r| route_spec_of(r, state))
            .collect();
        let deleted = deleted.get(ns).unwrap_or(&none);
        // IPv4 routes of links that lose every IPv4 address go first, explicitly
        // (the kernel would flush them), and come back after the new addresses:
        // so the inverse restores them exactly. Routes of a link that goes (or
        // is made again) go first too, and come back when wanted.
        let renumbered = readdressed(ops, ns, state);
        let flushed = |r: &RouteSpec| {
            r.dst.addr().is_ipv4() && r.dev.as_deref().is_some_and(|d| renumbered.contains(d))
        };
        let on_deleted = |r: &RouteSpec| r.dev.as_deref().is_some_and(|d| deleted.contains(d));
        for r in &have {
            let unwanted = !want.iter().any(|w| route_matches(w, r));
            if unwanted || flushed(r) || on_deleted(r) {
                ops.push(Op::RouteDel {
                    ns: ns.clone(),
                    route: r.clone(),
                });
            }
        }
        for r in want {
            let dev_recreated = r.dev.as_deref().is_some_and(|d| deleted.contains(d));
            let comes_back = have
                .iter()
                .any(|h| route_matches(r, h) && (flushed(h) || on_deleted(h)));
            if !have.iter().any(|h| route_matches(r, h)) || dev_recreated || comes_back {
                if let Some(dev) = &r.dev {
                    let made = desired
                        .links
                        .iter()
                        .any(|l| &l.link.name == dev && &l.ns == ns)
                        || desired
                            .ve_ends
                            .iter()
                            .any(|e| &e.name == dev && Some(&e.ns) == ns.as_ref());
                    if !made && state.link(dev).is_none() {
                        errors.push(PlanError::Missing {
                            role: "route device",
                            name: dev.clone(),
                        });
                        continue;
                    }
                }
                ops.push(Op::RouteAdd {
                    ns: ns.clone(),
                    route: r.clone(),
                });
            }
        }
    }
}

/// The links `ops` delete, by netns: each `LinkDel`'s, and the VE end a
/// deleted veth takes with it.
fn deleted_links(ops: &[Op]) -> BTreeMap<NsName, BTreeSet<String>> {
    let mut out: BTreeMap<NsName, BTreeSet<String>> = BTreeMap::new();
    for op in ops {
        let Op::LinkDel { ns, link } = op else {
            continue;
        };
        out.entry(ns.clone()).or_default().insert(link.name.clone());
        if let crate::link::Kind::Veth(crate::link::veth::Veth { peer: Some(p) }) = &link.kind {
            let pns = p.ns.clone().or_else(|| ns.clone());
            out.entry(pns).or_default().insert(p.name.clone());
        }
    }
    out
}

/// A configured route without a device matches the kernel's whatever its device.
fn route_matches(want: &RouteSpec, have: &RouteSpec) -> bool {
    want.dst == have.dst
        && want.table == have.table
        && want.via == have.via
        && want.metric == have.metric
        && (want.dev.is_none() || want.dev == have.dev)
}

fn route_spec_of(r: &RouteState, state: &NsState) -> RouteSpec {
    RouteSpec {
        dst: r.dst,
        via: r.via,
        // Gateway routes are matched on the gateway alone unless the config names a device.
        dev: r
            .oif
            .and_then(|i| state.link_by_index(i))
            .map(|l| l.name.clone()),
        metric: r
            .metric
            .filter(|m| *m != 0 && !(r.dst.addr().is_ipv6() && *m == 1024)),
        table: r.table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{Attachment, LinkSpec, VeEnd};
    use crate::kernel::state::{AddrState, LinkState, RouteState, RTPROT_VZNET};
    use crate::link::fixture;
    use crate::link::{Kind, Port};

    fn link(index: u32, name: &str, kind: Kind, alias: Option<&str>) -> LinkState {
        fixture::observed(index, name, kind, alias)
    }

    fn veth_kind() -> Kind {
        Kind::Veth(Default::default())
    }

    fn bridge_spec() -> LinkSpec {
        fixture::bridge("br0", &["10.0.0.1/24"])
    }

    fn veth_desired() -> Desired {
        let mut d = Desired::default();
        d.links.push(bridge_spec());
        d.links.push(fixture::veth(
            "veth1.0",
            "ve1",
            "eth0",
            Some("br0"),
            "vznet:ve1:eth0",
        ));
        d.ve_ends.push(VeEnd {
            ns: "ve1".into(),
            name: "eth0".into(),
            mac: None,
            mtu: None,
            host_name: "veth1.0".into(),
            alias: "vznet:ve1:eth0".into(),
            addrs: vec!["10.0.0.2/24".parse().expect("cidr")],
        });
        d.routes.insert(
            Some("ve1".into()),
            vec![RouteSpec {
                dst: "0.0.0.0/0".parse().expect("cidr"),
                via: Some("10.0.0.1".parse().expect("ip")),
                dev: Some("eth0".into()),
                metric: None,
                table: 254,
            }],
        );
        d
    }

    /// The kernel state that `veth_desired` produces.
    fn veth_observed() -> Observed {
        let mut host = NsState::default();
        host.links.push(link(
            2,
            "br0",
            fixture::observed_bridge(),
            Some("vznet:bridge"),
        ));
        let mut h = link(3, "veth1.0", veth_kind(), Some("vznet:ve1:eth0"));
        h.master = Some(2);
        h.link = Some(7);
        h.port = Port::joined(None);
        host.links.push(h);
        host.addrs.push(AddrState {
            index: 2,
            addr: "10.0.0.1/24".parse().expect("cidr"),
            secondary: false,
            protocol: Some(RTPROT_VZNET),
            nodad: false,
        });
        // The kernel's own IPv6 link-local address is not drift.
        host.addrs.push(AddrState {
            index: 3,
            addr: "fe80::1/64".parse().expect("cidr"),
            secondary: false,
            protocol: None,
            nodad: false,
        });
        let mut ve = NsState::default();
        let mut e = link(7, "eth0", veth_kind(), Some("vznet:ve1:eth0"));
        e.link = Some(3);
        ve.links.push(e);
        ve.addrs.push(AddrState {
            index: 7,
            addr: "10.0.0.2/24".parse().expect("cidr"),
            secondary: false,
            protocol: Some(RTPROT_VZNET),
            nodad: false,
        });
        ve.routes.push(RouteState {
            dst: "0.0.0.0/0".parse().expect("cidr"),
            via: Some("10.0.0.1".parse().expect("ip")),
            oif: Some(7),
            metric: None,
            protocol: RTPROT_VZNET,
            scope_link: false,
            table: 254,
        });
        // A kernel route vznet does not own.
        ve.routes.push(RouteState {
            dst: "10.0.0.0/24".parse().expect("cidr"),
            via: None,
            oif: Some(7),
            metric: None,
            protocol: 2,
            scope_link: true,
            table: 254,
        });
        let mut o = Observed {
            host,
            ..Observed::default()
        };
        o.ves.insert("ve1".into(), ve);
        o
    }

    #[test]
    fn empty_kernel_gets_everything_in_phase_order() {
        let d = veth_desired();
        let mut o = Observed::default();
        o.ves.insert("ve1".into(), NsState::default());
        let p = plan(&d, &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "+ bridge br0 (stp off)",
                "+ veth veth1.0 <-> ve1:eth0 master br0",
                "+ address 10.0.0.1/24 dev br0",
                "+ address 10.0.0.2/24 dev eth0 (netns ve1)",
                "+ route default via 10.0.0.1 dev eth0 (netns ve1)",
            ]
        );
        let phases: Vec<Phase> = p.ops.iter().map(Op::phase).collect();
        assert!(phases.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn matching_kernel_needs_nothing() {
        let p = plan(&veth_desired(), &veth_observed()).expect("plan");
        assert!(p.is_empty(), "{:?}", p.ops);
    }

    #[test]
    fn a_port_removed_by_hand_is_the_only_change() {
        let mut o = veth_observed();
        o.host.links[1].master = None;
        let p = plan(&veth_desired(), &o).expect("plan");
        assert_eq!(
            p.ops,
            vec![Op::SetMaster {
                ns: None,
                name: "veth1.0".into(),
                master: Some("br0".into()),
                old: None,
                port: Default::default(),
                old_port: Default::default(),
            }]
        );
    }

    #[test]
    fn extra_address_and_stale_managed_route_go_unmanaged_stay() {
        let mut o = veth_observed();
        o.host.addrs.push(AddrState {
            index: 2,
            addr: "10.9.9.9/32".parse().expect("cidr"),
            secondary: false,
            protocol: None,
            nodad: false,
        });
        o.host.routes.push(RouteState {
            dst: "10.8.0.0/16".parse().expect("cidr"),
            via: None,
            oif: Some(2),
            metric: None,
            protocol: RTPROT_VZNET,
            scope_link: true,
            table: 254,
        });
        o.host.routes.push(RouteState {
            dst: "10.7.0.0/16".parse().expect("cidr"),
            via: None,
            oif: Some(2),
            metric: None,
            protocol: 4,
            scope_link: true,
            table: 254,
        });
        o.host
            .links
            .push(link(9, "mine0", fixture::observed_bridge(), None));
        let p = plan(&veth_desired(), &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "- route 10.8.0.0/16 dev br0",
                "- address 10.9.9.9/32 dev br0"
            ]
        );
    }

    #[test]
    fn unpaired_veth_is_recreated() {
        let mut o = veth_observed();
        // The VE netns was recreated: its end is gone.
        o.ves.insert("ve1".into(), NsState::default());
        let p = plan(&veth_desired(), &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"- link veth1.0".to_string()), "{text:?}");
        assert!(
            text.contains(&"+ veth veth1.0 <-> ve1:eth0 master br0".to_string()),
            "{text:?}"
        );
        assert!(
            text.contains(&"+ route default via 10.0.0.1 dev eth0 (netns ve1)".to_string()),
            "{text:?}"
        );
        let del = text.iter().position(|t| t == "- link veth1.0");
        let add = text.iter().position(|t| t.starts_with("+ veth"));
        assert!(del < add);
    }

    #[test]
    fn a_link_vznet_did_not_make_is_never_taken_over() {
        let mut o = veth_observed();
        o.host.links[0].alias = None;
        o.host.links[0].group = 0;
        assert_eq!(
            plan(&veth_desired(), &o).err(),
            Some(PlanError::NotOwned {
                ns: None,
                name: "br0".into()
            })
        );
    }

    #[test]
    fn a_link_made_by_a_run_killed_before_marking_it_is_made_again_or_deleted() {
        // vznet's group came with the create request; the alias never did.
        let mut o = veth_observed();
        o.host.links[0].alias = None;
        let p = plan(&veth_desired(), &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"- link br0".to_string()), "{text:?}");
        assert!(
            text.contains(&"+ bridge br0 (stp off)".to_string()),
            "{text:?}"
        );
        // Not in the config: deleted like any link vznet made.
        let p = plan(&Desired::default(), &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"- link br0".to_string()), "{text:?}");
        // The VE end of a pair whose marking stopped half way: made again.
        let mut o = veth_observed();
        o.ves.get_mut("ve1").expect("ve1").links[0].alias = None;
        let p = plan(&veth_desired(), &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert!(text.contains(&"- link veth1.0".to_string()), "{text:?}");
    }

    #[test]
    fn missing_bridge_port_is_an_error_not_a_change() {
        let mut d = veth_desired();
        d.attachments.push(Attachment {
            name: "eth9".into(),
            master: "br0".into(),
            bond_slave: false,
            port: Port::joined(None),
        });
        assert_eq!(
            plan(&d, &veth_observed()).err(),
            Some(PlanError::Missing {
                role: "bridge port",
                name: "eth9".into()
            })
        );
    }

    #[test]
    fn managed_link_dropped_from_config_is_deleted_with_its_addresses() {
        let mut d = veth_desired();
        d.links.remove(1);
        d.ve_ends.clear();
        d.routes.clear();
        let p = plan(&d, &veth_observed()).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        // What hangs on the VE end goes explicitly, so that undoing puts it back.
        assert_eq!(
            text,
            [
                "- route default via 10.0.0.1 dev eth0 (netns ve1)",
                "- address 10.0.0.2/24 dev eth0 (netns ve1)",
                "- link veth1.0"
            ]
        );
        // Its inverse makes it again, with the VE end in the VE's netns and
        // back in its bridge; the address and route come back after it.
        match p.ops[2].inverse() {
            Op::LinkAdd { ns: None, link } => {
                assert_eq!(link.master.as_deref(), Some("br0"));
                match link.kind {
                    Kind::Veth(crate::link::veth::Veth { peer: Some(peer) }) => {
                        assert_eq!(peer.ns.as_deref(), Some("ve1"));
                        assert_eq!(peer.name, "eth0");
                    }
                    other => panic!("not a veth with its peer: {other:?}"),
                }
            }
            other => panic!("not a LinkAdd: {other}"),
        }
        let undo: Vec<String> = p
            .ops
            .iter()
            .rev()
            .map(|o| o.inverse().to_string())
            .collect();
        assert_eq!(
            undo[1..],
            [
                "+ address 10.0.0.2/24 dev eth0 (netns ve1)",
                "+ route default via 10.0.0.1 dev eth0 (netns ve1)"
            ]
        );
    }

    #[test]
    fn a_vznet_veth_whose_far_end_was_not_read_names_the_netns_to_read() {
        let mut o = veth_observed();
        assert!(lost_far_ends(&o).is_empty(), "its VE end was read");
        o.ves.clear();
        assert!(
            lost_far_ends(&o).is_empty(),
            "no netns id: the end is in no other netns"
        );
        o.host.links[1].link_netnsid = Some(4);
        assert_eq!(lost_far_ends(&o).into_iter().collect::<Vec<_>>(), [4]);
        // Not vznet's: none of its business.
        o.host.links[1].alias = None;
        o.host.links[1].group = 0;
        assert!(lost_far_ends(&o).is_empty());
    }

    #[test]
    fn a_bridge_and_its_port_go_port_first_so_undoing_makes_the_bridge_first() {
        let mut d = veth_desired();
        d.links.clear();
        d.ve_ends.clear();
        d.routes.clear();
        let p = plan(&d, &veth_observed()).expect("plan");
        let del = |name: &str| {
            p.ops
                .iter()
                .find(|o| matches!(o, Op::LinkDel { link, .. } if link.name == name))
                .unwrap_or_else(|| panic!("{name} is not deleted: {:?}", p.ops))
        };
        let (port, bridge) = (del("veth1.0"), del("br0"));
        assert!(
            port.phase() < bridge.phase(),
            "{:?} {:?}",
            port.phase(),
            bridge.phase()
        );
        // The bridge's inverse makes it up with its address (an op of its own);
        // the port's makes the veth in it again.
        let Op::LinkAdd { link, .. } = bridge.inverse() else {
            panic!("not a LinkAdd")
        };
        assert!(link.master.is_none());
        assert!(p
            .ops
            .iter()
            .any(|o| o.to_string() == "- address 10.0.0.1/24 dev br0"));
        let Op::LinkAdd { link, .. } = port.inverse() else {
            panic!("not a LinkAdd")
        };
        assert_eq!(link.master.as_deref(), Some("br0"));
    }

    #[test]
    fn bond_slaves_go_down_before_joining_and_bonds_join_bridges_after_they_exist() {
        let mut d = Desired::default();
        let mut bond = fixture::spec(
            "bond0",
            Kind::Bond(crate::link::bond::Bond {
                mode: Some(crate::model::BondMode::ActiveBackup),
                miimon_ms: Some(100),
                ..Default::default()
            }),
            "vznet:bond",
            &[],
        );
        bond.link.master = Some("br0".into());
        bond.link.port = Port::joined(None);
        d.links.push(bond);
        d.links.push(bridge_spec());
        d.attachments.push(Attachment {
            name: "eth0".into(),
            master: "bond0".into(),
            bond_slave: true,
            port: Port::default(),
        });
        let mut o = Observed::default();
        o.host.links.push(fixture::nic(5, "eth0"));
        let p = plan(&d, &o).expect("plan");
        let pos = |s: &str| {
            p.ops
                .iter()
                .position(|op| op.to_string() == s)
                .unwrap_or(usize::MAX)
        };
        assert!(pos("+ bond bond0 (mode active-backup, miimon_ms 100)") < pos("~ link eth0 down"));
        assert!(pos("~ link eth0 down") < pos("~ link eth0 master bond0"));
        assert!(pos("+ bridge br0 (stp off)") < pos("~ link bond0 master br0"));
        assert!(pos("~ link bond0 master br0") != usize::MAX, "{:?}", p.ops);
    }

    #[test]
    fn a_vrrp_virtual_ip_on_a_managed_link_is_not_drift() {
        let mut d = veth_desired();
        d.vips
            .push(("br0".into(), "10.0.0.100/24".parse().expect("cidr")));
        let mut o = veth_observed();
        o.host.addrs.push(AddrState {
            index: 2,
            addr: "10.0.0.100/24".parse().expect("cidr"),
            secondary: false,
            protocol: None,
            nodad: false,
        });
        assert!(plan(&d, &o).expect("plan").is_empty());
        // Without the VRRP instance it would go.
        assert_eq!(plan(&veth_desired(), &o).expect("plan").ops.len(), 1);
    }

    #[test]
    fn a_ve_that_changes_its_only_address_keeps_its_routes() {
        // The kernel disables IPv4 on a link that loses its last address and
        // flushes its routes: the plan takes them down and back up explicitly, so
        // that both the apply and its rollback end exactly where they should.
        let mut d = veth_desired();
        d.ve_ends[0].addrs = vec!["10.0.0.3/24".parse().expect("cidr")];
        let p = plan(&d, &veth_observed()).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "- route default via 10.0.0.1 dev eth0 (netns ve1)",
                "- address 10.0.0.2/24 dev eth0 (netns ve1)",
                "+ address 10.0.0.3/24 dev eth0 (netns ve1)",
                "+ route default via 10.0.0.1 dev eth0 (netns ve1)",
            ]
        );
    }

    #[test]
    fn removing_a_primary_address_renumbers_its_kept_secondaries() {
        // 10.0.0.1/24 is primary, 10.0.0.9/24 its secondary: deleting the primary
        // would take the secondary with it.
        let mut d = veth_desired();
        d.links[0].addrs = vec!["10.0.0.9/24".parse().expect("cidr")];
        let mut o = veth_observed();
        o.host.addrs.push(AddrState {
            index: 2,
            addr: "10.0.0.9/24".parse().expect("cidr"),
            secondary: true,
            protocol: None,
            nodad: false,
        });
        let p = plan(&d, &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "- address 10.0.0.1/24 dev br0",
                "- address 10.0.0.9/24 dev br0",
                "+ address 10.0.0.9/24 dev br0",
            ]
        );
        // A secondary that goes takes nothing with it.
        let mut d = veth_desired();
        d.links[0].addrs = vec!["10.0.0.1/24".parse().expect("cidr")];
        let p = plan(&d, &o).expect("plan");
        let text: Vec<String> = p.ops.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["- address 10.0.0.9/24 dev br0"]);
    }

    #[test]
    fn a_port_moving_off_a_bridge_that_goes_joins_the_new_one_from_no_master() {
        // br0 goes; its port veth1.0 moves to br1.
        let mut d = veth_desired();
        d.links[0] = fixture::bridge("br1", &["10.0.0.1/24"]);
        d.links[1].link.master = Some("br1".into());
        let mut o = veth_observed();
        o.host.links.push(link(
            4,
            "br1",
            fixture::observed_bridge(),
            Some("vznet:bridge"),
        ));
        let p = plan(&d, &o).expect("plan");
        let moves: Vec<&Op> = p
            .ops
            .iter()
            .filter(|op| matches!(op, Op::SetMaster { name, .. } if name == "veth1.0"))
            .collect();
        assert_eq!(moves.len(), 2, "{moves:#?}");
        let (
            Op::SetMaster {
                master: None,
                old: Some(from),
                ..
            },
            Op::SetMaster {
                master: Some(to),
                old: None,
                ..
            },
        ) = (moves[0], moves[1])
        else {
            panic!("not a departure then a join from no master: {moves:#?}");
        };
        assert_eq!((from.as_str(), to.as_str()), ("br0", "br1"));
        // Undoing runs backwards: leaving br1 (not joining br0, which is not
        // there yet), making br0 again, then joining it.
        let order = |f: &dyn Fn(&Op) -> bool| p.ops.iter().position(f).expect("op");
        let leave = order(&|op| matches!(op, Op::SetMaster { master: None, .. }));
        let delete = order(&|op| matches!(op, Op::LinkDel { link, .. } if link.name == "br0"));
        let join = order(&|op| {
            matches!(
                op,
                Op::SetMaster {
                    master: Some(_),
                    ..
                }
            )
        });
        assert!(leave < delete && delete < join, "{:#?}", p.ops);
        assert!(
            matches!(moves[1].inverse(), Op::SetMaster { master: None, old: Some(ref m), .. } if m == "br1")
        );
    }

    #[test]
    fn a_bridge_with_a_configured_mtu_holds_it_while_its_ports_change() {
        let mut d = veth_desired();
        d.links[0].link.mtu = Some(1500);
        let o = veth_observed();
        // Nothing changes: nothing held.
        assert!(plan(&d, &o).expect("plan").is_empty());
        // Its port goes: the bridge would follow to its own default.
        d.links.truncate(1);
        d.ve_ends.clear();
        d.routes.clear();
        let p = plan(&d, &o).expect("plan");
        let last = p
            .ops
            .iter()
            .filter(|op| op.phase() >= Phase::Up)
            .collect::<Vec<_>>();
        assert_eq!(
            last.iter().map(|op| op.to_string()).collect::<Vec<_>>(),
            ["~ link br0 mtu 1500 held as its ports change"],
            "{:#?}",
            p.ops
        );
        assert_eq!(last[0].inverse(), *last[0]);
    }

    #[test]
    fn an_interface_forwarding_is_written_after_the_global_switch_that_overwrites_it() {
        let key = |s: &str| std::path::PathBuf::from(format!("/proc/sys/net/{s}"));
        let mut d = veth_desired();
        d.sysctls = vec![
            (key("ipv4/conf/veth1.0/forwarding"), "0".into()),
            (key("ipv6/conf/veth1.0/forwarding"), "0".into()),
            (key("ipv4/conf/br0/forwarding"), "1".into()),
            (key("ipv4/ip_forward"), "1".into()),
        ];
        let mut o = veth_observed();
        o.sysctls = d
            .sysctls
            .iter()
            .map(|(p, _)| (p.clone(), Some("0".to_string())))
            .collect();
        o.sysctls
            .insert(key("ipv4/conf/br0/forwarding"), Some("1".into()));
        let p = plan(&d, &o).expect("plan");
        let writes: Vec<String> = p
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Sysctl { .. }))
            .map(Op::to_string)
            .collect();
        // veth1.0's IPv4 value is already 0, but the switch makes it 1; br0's
        // is the switch's value, and IPv6 is another family.
        assert_eq!(
            writes,
            [
                "~ sysctl net/ipv4/ip_forward 0 -> 1",
                "~ sysctl net/ipv4/conf/veth1.0/forwarding 0 -> 0",
            ]
        );
        // Without a switch change, nothing.
        o.sysctls.insert(key("ipv4/ip_forward"), Some("1".into()));
        let p = plan(&d, &o).expect("plan");
        assert!(
            !p.ops.iter().any(|op| matches!(op, Op::Sysctl { .. })),
            "{:#?}",
            p.ops
        );
    }

    #[test]
    fn every_op_inverts_to_its_opposite_and_back() {
        let d = veth_desired();
        let mut o = Observed::default();
        o.ves.insert("ve1".into(), NsState::default());
        for op in plan(&d, &o).expect("plan").ops {
            assert_eq!(op.inverse().inverse(), op);
        }
    }
}
