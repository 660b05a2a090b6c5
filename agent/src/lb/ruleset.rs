//! The nftables scripts: the tables' fixed part (chains, rules, maps) and
//! element edits. Pure: renders [`Script`]s, runs nothing.
//!
//! NAT virtual servers live in `inet vznet_lb`. Chain `services` (jumped to from
//! the nat prerouting and output hooks) sends a virtual server's packets to its
//! own chain `svc_K` (K: a hash of what it matches, so its chains and maps keep
//! their names, and their state, when other virtual servers change):
//!
//! ```text
//! ct mark set ip saddr map @persist_P                 # persistence: the client's backend
//! ct mark @live_ids update @persist_P { ip saddr : ct mark } dnat ...   # still live: use it
//! ct mark set numgen random mod M offset SLOT_BASE    # or jhash / numgen inc
//!     ct mark set ct mark map @slots_K                # slot -> backend id
//!     update @persist_P { ip saddr : ct mark }        # persistence: remember
//!     dnat ip to ct mark map @addr4 : ct mark map @ports
//! ```
//!
//! The conntrack mark then names the connection's backend: `forward` resets a
//! failed backend's connections (`ct mark @reset_ids`), `postrouting`
//! masquerades (`ct mark @masq_ids`), and chain `refresh` (filter, before DNAT) renews a
//! client's persistence entry on each of its packets, so it lasts until the
//! client has been idle for the timeout.
//!
//! Direct-routing virtual servers live in `ip vznet_lb_dr` and `ip6
//! vznet_lb_dr` (`dup` exists only there), at raw priority, untracked: a flow
//! map (client address and port -> backend id) keeps a connection on its
//! backend, and `dup to ADDR` sends the unchanged packet to the backend's MAC
//! (the next hop is the backend; the original is dropped).

use std::net::IpAddr;
use std::time::Duration;

use netcfg::model::lb::{LbKind, Matcher};
use netcfg::model::{LbProtocol, Scheduler};
use nft::script::{DataType, Elem, Expr, Family, Hook, Ident, IpFamily, Script, SetDecl, Stmt, L4};

/// The NAT table (family inet).
pub const TABLE: &str = "vznet_lb";
/// The direct-routing tables (families ip and ip6).
pub const DR_TABLE: &str = "vznet_lb_dr";
/// Slot keys are `SLOT_BASE + slot`.
pub const SLOT_BASE: u32 = 0x7a5e_0000;
/// Backend ids are `BACKEND_BASE + n`; the conntrack mark of a balanced
/// connection is its backend's id.
pub const BACKEND_BASE: u32 = 0x7a5f_0000;
/// Direct routing keeps an idle TCP flow this long (IPVS's established timeout).
pub const DR_TCP_FLOW_TIMEOUT: Duration = Duration::from_secs(900);
/// Direct routing keeps an idle UDP flow this long (IPVS's UDP timeout).
pub const DR_UDP_FLOW_TIMEOUT: Duration = Duration::from_secs(300);

/// Client persistence of a virtual server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistence {
    /// Idle time after which the client may move.
    pub timeout: Duration,
    /// Leading client-address bits that make a client.
    pub prefix: u8,
}

/// The fixed part of one virtual server: what changing it rewrites rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceShape {
    /// What traffic it takes.
    pub matchers: Vec<Matcher>,
    /// IPv4 (else IPv6).
    pub ipv4: bool,
    /// tcp or udp.
    pub protocol: LbProtocol,
    /// NAT or direct routing.
    pub kind: LbKind,
    /// How a slot is picked.
    pub scheduler: Scheduler,
    /// `source-hash` seed.
    pub seed: u32,
    /// Slot count (prime).
    pub slots: u32,
    /// Client persistence.
    pub persistence: Option<Persistence>,
    /// DNAT keeps the client's port (marks or members, backends without ports).
    pub keep_port: bool,
    /// Sorry server or masquerade present (set up at reshape).
    pub extras: (bool, bool),
}

/// A backend as the maps hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendEntry {
    /// `BACKEND_BASE + n`.
    pub id: u32,
    /// Address.
    pub address: IpAddr,
    /// Port (0: the client's).
    pub port: u16,
}

fn ident(name: &str) -> Ident {
    // Every name here is built from a fixed prefix and hex digits.
    Ident::new(name).unwrap_or_else(|_| unreachable!("bad built-in nftables name {name}"))
}

/// FNV-1a over a description: stable names for a virtual server's objects.
fn digest(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", h & 0xffff_ffff_ffff)
}

impl ServiceShape {
    /// The name suffix of its chain and slot map: what it matches and how.
    pub fn key(&self) -> String {
        digest(&format!(
            "{:?}/{:?}/{:?}/{}",
            self.matchers, self.protocol, self.kind, self.ipv4
        ))
    }

    /// Its persistence map: a new one when the timeout or granularity changes.
    fn persist_map(&self) -> Option<Ident> {
        self.persistence.map(|p| {
            ident(&format!(
                "persist_{}",
                digest(&format!("{}/{:?}/{}", self.key(), p.timeout, p.prefix))
            ))
        })
    }

    fn chain(&self) -> Ident {
        ident(&format!("svc_{}", self.key()))
    }

    fn slot_map(&self) -> Ident {
        ident(&format!("slots_{}", self.key()))
    }

    fn flow_map(&self) -> Ident {
        ident(&format!("flows_{}", self.key()))
    }

    fn fam(&self) -> IpFamily {
        if self.ipv4 {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }

    fn l4(&self) -> L4 {
        match self.protocol {
            LbProtocol::Tcp => L4::Tcp,
            LbProtocol::Udp => L4::Udp,
        }
    }

    /// The table holding its chain and maps.
    pub fn table(&self) -> (Family, Ident) {
        match (self.kind, self.ipv4) {
            (LbKind::Nat, _) => (Family::Inet, ident(TABLE)),
            (LbKind::Dr, true) => (Family::Ip, ident(DR_TABLE)),
            (LbKind::Dr, false) => (Family::Ip6, ident(DR_TABLE)),
        }
    }

    /// The map from backend id to address in its table.
    fn addr_map(&self) -> Ident {
        match (self.kind, self.ipv4) {
            (LbKind::Dr, _) => ident("addr"),
            (LbKind::Nat, true) => ident("addr4"),
            (LbKind::Nat, false) => ident("addr6"),
        }
    }

    /// The client key persistence remembers: the address, masked.
    fn client_key(&self) -> Expr {
        let saddr = Expr::Saddr(self.fam());
        match self.persistence {
            Some(p) if p.prefix < if self.ipv4 { 32 } else { 128 } => Expr::And(
                Box::new(saddr),
                Box::new(Expr::Addr(mask(self.ipv4, p.prefix))),
            ),
            _ => saddr,
        }
    }

    fn addr_type(&self) -> DataType {
        if self.ipv4 {
            DataType::Ipv4Addr
        } else {
            DataType::Ipv6Addr
        }
    }

    fn pick(&self) -> Expr {
        match self.scheduler {
            Scheduler::SourceHash => Expr::Jhash {
                of: Box::new(Expr::Saddr(self.fam())),
                modulus: self.slots,
                seed: self.seed,
                offset: SLOT_BASE,
            },
            s => Expr::Numgen {
                inc: s == Scheduler::RoundRobin,
                modulus: self.slots,
                offset: SLOT_BASE,
            },
        }
    }

    /// The statements that match one of its matchers.
    fn matches(&self, m: Matcher) -> Vec<Stmt> {
        match m {
            Matcher::Address { vip, port } => vec![
                Stmt::Is(Expr::Daddr(IpFamily::of(vip)), Expr::Addr(vip)),
                Stmt::Is(Expr::Dport(self.l4()), Expr::Port(port)),
            ],
            Matcher::Mark(mark) => vec![
                Stmt::Is(Expr::MetaMark, Expr::Num(mark)),
                Stmt::Is(
                    Expr::NfProto,
                    Expr::Word(if self.ipv4 { "ipv4" } else { "ipv6" }),
                ),
                Stmt::Is(
                    Expr::L4Proto,
                    Expr::Word(match self.protocol {
                        LbProtocol::Tcp => "tcp",
                        LbProtocol::Udp => "udp",
                    }),
                ),
            ],
        }
    }
}

/// The netmask of a prefix length.
fn mask(ipv4: bool, prefix: u8) -> IpAddr {
    if ipv4 {
        let bits = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        IpAddr::from(bits.to_be_bytes())
    } else {
        let bits = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
        IpAddr::from(bits.to_be_bytes())
    }
}

fn hook(nat: bool, hook: &'static str, priority: i32) -> Option<Hook> {
    Some(Hook {
        nat,
        hook,
        priority,
    })
}

/// Removes every table (adding first makes the delete never fail).
pub fn remove(s: &mut Script) {
    s.remove_table(Family::Inet, &ident(TABLE));
    s.remove_table(Family::Ip, &ident(DR_TABLE));
    s.remove_table(Family::Ip6, &ident(DR_TABLE));
}

/// Makes the tables serve `services`, keeping the maps (and their dynamic
/// state: persistence, direct-routing flows) of virtual servers that stay.
/// Every rule is rewritten; the data maps (slots, addresses, ports, the id
/// sets) are emptied for the caller to refill in the same transaction.
/// `old` are the shapes served so far (their stale chains and maps go).
pub fn reshape(s: &mut Script, old: &[ServiceShape], services: &[ServiceShape]) {
    let nat = ident(TABLE);
    s.add_table(Family::Inet, &nat);
    s.flush_table(Family::Inet, &nat);
    let persistent = services
        .iter()
        .any(|v| v.kind == LbKind::Nat && v.persistence.is_some());
    nat_skeleton(s, &nat, persistent);
    for fam in [Family::Ip, Family::Ip6] {
        let wanted = services.iter().any(|v| v.table().0 == fam);
        let dr = ident(DR_TABLE);
        if wanted {
            s.add_table(fam, &dr);
            s.flush_table(fam, &dr);
            dr_skeleton(s, fam, &dr);
        } else {
            s.remove_table(fam, &dr);
        }
    }
    for svc in services {
        service(s, svc);
    }
    // Objects of virtual servers that are gone (their rules went with the flush).
    let live_tables: Vec<Family> = services.iter().map(|v| v.table().0).collect();
    for gone in old {
        let (fam, table) = gone.table();
        if fam != Family::Inet && !live_tables.contains(&fam) {
            continue; // the whole table went
        }
        let stays = |name: &Ident| {
            services.iter().any(|v| {
                v.table() == gone.table()
                    && (v.chain() == *name
                        || v.slot_map() == *name
                        || v.persist_map().as_ref() == Some(name)
                        || (v.kind == LbKind::Dr && v.flow_map() == *name))
            })
        };
        if !stays(&gone.chain()) {
            s.delete_chain(fam, &table, &gone.chain());
        }
        let mut maps = vec![gone.slot_map()];
        maps.extend(gone.persist_map());
        if gone.kind == LbKind::Dr {
            maps.push(gone.flow_map());
        }
        for m in maps {
            if !stays(&m) {
                s.delete_set(fam, &table, &m, true);
            }
        }
    }
}

fn nat_skeleton(s: &mut Script, t: &Ident, persistent: bool) {
    let fam = Family::Inet;
    for (name, key, data) in [
        ("addr4", DataType::Mark, DataType::Ipv4Addr),
        ("addr6", DataType::Mark, DataType::Ipv6Addr),
        ("ports", DataType::Mark, DataType::InetService),
    ] {
        s.add_set(fam, t, &ident(name), &SetDecl::map(key, data));
        s.flush_set(fam, t, &ident(name), true);
    }
    for name in ["reset_ids", "masq_ids", "live_ids"] {
        s.add_set(fam, t, &ident(name), &SetDecl::set(DataType::Mark));
        s.flush_set(fam, t, &ident(name), false);
    }
    // dstnat priority -100, srcnat 100, filter 0; persistence is renewed
    // before DNAT (-150), while the destination is still the VIP.
    let services = ident("services");
    let refresh = ident("refresh");
    for (name, h) in [
        ("prerouting", hook(true, "prerouting", -100)),
        ("output", hook(true, "output", -100)),
        ("postrouting", hook(true, "postrouting", 100)),
        ("forward", hook(false, "forward", 0)),
        ("services", None),
        ("refresh", None),
    ] {
        s.add_chain(fam, t, &ident(name), h);
    }
    for from in ["prerouting", "output"] {
        s.add_rule(fam, t, &ident(from), &[Stmt::Jump(services.clone())]);
    }
    // The per-packet renewal hooks exist only while some virtual server
    // persists: otherwise every packet would pay for two empty hooks.
    for (from, h) in [
        ("refresh_in", hook(false, "prerouting", -150)),
        ("refresh_out", hook(false, "output", -150)),
    ] {
        s.add_chain(fam, t, &ident(from), h);
        if persistent {
            s.add_rule(fam, t, &ident(from), &[Stmt::Jump(refresh.clone())]);
        } else {
            s.delete_chain(fam, t, &ident(from));
        }
    }
    let dnatted = Stmt::Is(Expr::CtStatus, Expr::Word("dnat"));
    s.add_rule(
        fam,
        t,
        &ident("postrouting"),
        &[
            dnatted.clone(),
            Stmt::Is(Expr::CtMark, Expr::SetRef(ident("masq_ids"))),
            Stmt::Masquerade,
        ],
    );
    s.add_rule(
        fam,
        t,
        &ident("forward"),
        &[
            dnatted,
            Stmt::Is(Expr::L4Proto, Expr::Word("tcp")),
            Stmt::Is(Expr::CtMark, Expr::SetRef(ident("reset_ids"))),
            Stmt::TcpReset,
        ],
    );
}

fn dr_skeleton(s: &mut Script, fam: Family, t: &Ident) {
    let addr = if fam == Family::Ip {
        DataType::Ipv4Addr
    } else {
        DataType::Ipv6Addr
    };
    s.add_set(fam, t, &ident("addr"), &SetDecl::map(DataType::Mark, addr));
    s.flush_set(fam, t, &ident("addr"), true);
    s.add_set(fam, t, &ident("live_ids"), &SetDecl::set(DataType::Mark));
    s.flush_set(fam, t, &ident("live_ids"), false);
    // Raw priority: before conntrack, which must not see these packets (it
    // would see only the client's half and call the rest invalid).
    s.add_chain(
        fam,
        t,
        &ident("prerouting"),
        hook(false, "prerouting", -300),
    );
}

/// One virtual server's dispatch rules, chain, maps and rules.
fn service(s: &mut Script, svc: &ServiceShape) {
    let (fam, t) = svc.table();
    let chain = svc.chain();
    s.add_chain(fam, &t, &chain, None);
    let slots = svc.slot_map();
    s.add_set(
        fam,
        &t,
        &slots,
        &SetDecl::map(DataType::Mark, DataType::Mark),
    );
    s.flush_set(fam, &t, &slots, true);
    let persist = svc.persist_map();
    if let (Some(p), Some(map)) = (svc.persistence, &persist) {
        s.add_set(
            fam,
            &t,
            map,
            &SetDecl {
                key: vec![svc.addr_type()],
                data: Some(DataType::Mark),
                dynamic: true,
                timeout: Some(p.timeout),
            },
        );
    }
    let dispatch = if svc.kind == LbKind::Nat {
        ident("services")
    } else {
        ident("prerouting")
    };
    for &m in &svc.matchers {
        let mut rule = svc.matches(m);
        rule.push(Stmt::Goto(chain.clone()));
        s.add_rule(fam, &t, &dispatch, &rule);
    }
    match svc.kind {
        LbKind::Nat => nat_service(s, svc, &t, &chain, persist.as_ref()),
        LbKind::Dr => dr_service(s, svc, fam, &t, &chain, persist.as_ref()),
    }
}

fn remember(svc: &ServiceShape, map: Option<&Ident>, mark: Expr) -> Option<Stmt> {
    map.map(|m| Stmt::Update {
        set: m.clone(),
        key: svc.client_key(),
        timeout: None,
        data: Some(mark),
    })
}

fn nat_service(
    s: &mut Script,
    svc: &ServiceShape,
    t: &Ident,
    chain: &Ident,
    persist: Option<&Ident>,
) {
    let fam = Family::Inet;
    let dnat = Stmt::Dnat {
        family: svc.fam(),
        addr: Expr::lookup(Expr::CtMark, &svc.addr_map()),
        port: (!svc.keep_port).then(|| Expr::lookup(Expr::CtMark, &ident("ports"))),
    };
    let live = Stmt::Is(Expr::CtMark, Expr::SetRef(ident("live_ids")));
    // nft maps ports only after a transport protocol match in the same rule.
    let l4 = Stmt::Is(
        Expr::L4Proto,
        Expr::Word(match svc.protocol {
            LbProtocol::Tcp => "tcp",
            LbProtocol::Udp => "udp",
        }),
    );
    if let Some(map) = persist {
        s.add_rule(
            fam,
            t,
            chain,
            &[Stmt::Set(Expr::CtMark, Expr::lookup(svc.client_key(), map))],
        );
        let mut hit = vec![l4.clone(), live.clone()];
        hit.extend(remember(svc, Some(map), Expr::CtMark));
        hit.push(dnat.clone());
        s.add_rule(fam, t, chain, &hit);
        // Renew on every packet of the client's live connections.
        for &m in &svc.matchers {
            let mut rule = svc.matches(m);
            rule.push(live.clone());
            rule.extend(remember(svc, Some(map), Expr::CtMark));
            s.add_rule(fam, t, &ident("refresh"), &rule);
        }
    }
    let mut pick = vec![
        l4,
        Stmt::Set(Expr::CtMark, svc.pick()),
        Stmt::Set(Expr::CtMark, Expr::lookup(Expr::CtMark, &svc.slot_map())),
    ];
    pick.extend(remember(svc, persist, Expr::CtMark));
    pick.push(dnat);
    s.add_rule(fam, t, chain, &pick);
}

fn dr_service(
    s: &mut Script,
    svc: &ServiceShape,
    fam: Family,
    t: &Ident,
    chain: &Ident,
    persist: Option<&Ident>,
) {
    let flows = svc.flow_map();
    // A hash of the client's address and port, not the pair itself:
    // libnftables 1.0.6 aborts on a map update keyed by an IPv6 address and a
    // port. Two flows with one hash share a backend, which is harmless (any
    // backend is right for a new connection; each stays on one).
    let flow_key = Expr::Jhash {
        of: Box::new(Expr::Concat(vec![
            Expr::Saddr(svc.fam()),
            Expr::Sport(svc.l4()),
        ])),
        modulus: u32::MAX,
        seed: 0x5eed_f10e,
        offset: 0,
    };
    s.add_set(
        fam,
        t,
        &flows,
        &SetDecl {
            key: vec![DataType::Hash32],
            data: Some(DataType::Mark),
            dynamic: true,
            timeout: Some(match svc.protocol {
                LbProtocol::Tcp => DR_TCP_FLOW_TIMEOUT,
                LbProtocol::Udp => DR_UDP_FLOW_TIMEOUT,
            }),
        },
    );
    let track = Stmt::Update {
        set: flows.clone(),
        key: flow_key.clone(),
        timeout: None,
        data: Some(Expr::MetaMark),
    };
    let send = [
        Stmt::Dup(Expr::lookup(Expr::MetaMark, &ident("addr"))),
        Stmt::Drop,
    ];
    let live = Stmt::Is(Expr::MetaMark, Expr::SetRef(ident("live_ids")));
    let known = Stmt::Set(Expr::MetaMark, Expr::lookup(flow_key, &flows));
    s.add_rule(fam, t, chain, &[Stmt::Notrack]);
    if let Some(map) = persist {
        // A known flow to a live backend renews the client's persistence.
        let mut renew = vec![known.clone(), live.clone()];
        renew.extend(remember(svc, Some(map), Expr::MetaMark));
        s.add_rule(fam, t, chain, &renew);
    }
    let mut flow = vec![known, track.clone()];
    flow.extend(send.clone());
    s.add_rule(fam, t, chain, &flow);
    if let Some(map) = persist {
        let mut hit = vec![
            Stmt::Set(Expr::MetaMark, Expr::lookup(svc.client_key(), map)),
            live,
            track.clone(),
        ];
        hit.extend(remember(svc, Some(map), Expr::MetaMark));
        hit.extend(send.clone());
        s.add_rule(fam, t, chain, &hit);
    }
    let mut pick = vec![
        Stmt::Set(Expr::MetaMark, svc.pick()),
        Stmt::Set(
            Expr::MetaMark,
            Expr::lookup(Expr::MetaMark, &svc.slot_map()),
        ),
        track,
    ];
    pick.extend(remember(svc, persist, Expr::MetaMark));
    pick.extend(send);
    s.add_rule(fam, t, chain, &pick);
    // No backend: nothing may reach the VIP's local stack in its place.
    s.add_rule(fam, t, chain, &[Stmt::Drop]);
}

/// Adds backends of `svc` to its table's address (and port) maps.
pub fn add_backends(s: &mut Script, svc: &ServiceShape, entries: &[BackendEntry]) {
    let (fam, t) = svc.table();
    let addrs: Vec<Elem> = entries
        .iter()
        .map(|e| Elem {
            key: Expr::Num(e.id),
            data: Some(Expr::Addr(e.address)),
        })
        .collect();
    s.add_elements(fam, &t, &svc.addr_map(), &addrs);
    if svc.kind == LbKind::Nat && !svc.keep_port {
        let ports: Vec<Elem> = entries
            .iter()
            .map(|e| Elem {
                key: Expr::Num(e.id),
                data: Some(Expr::Port(e.port)),
            })
            .collect();
        s.add_elements(fam, &t, &ident("ports"), &ports);
    }
}

/// Removes backends of `svc` from the address (and port) maps.
pub fn delete_backends(s: &mut Script, svc: &ServiceShape, entries: &[BackendEntry]) {
    let (fam, t) = svc.table();
    let ids: Vec<Expr> = entries.iter().map(|e| Expr::Num(e.id)).collect();
    s.delete_elements(fam, &t, &svc.addr_map(), &ids);
    if svc.kind == LbKind::Nat && !svc.keep_port {
        s.delete_elements(fam, &t, &ident("ports"), &ids);
    }
}

/// Rewrites slots of `svc`: `(slot, old id, new id)`. A changed slot is a
/// delete and an add in the same transaction.
pub fn set_slots(s: &mut Script, svc: &ServiceShape, changes: &[(u32, Option<u32>, Option<u32>)]) {
    let (fam, t) = svc.table();
    let map = svc.slot_map();
    let deletes: Vec<Expr> = changes
        .iter()
        .filter(|(_, old, _)| old.is_some())
        .map(|(slot, _, _)| Expr::Num(SLOT_BASE + slot))
        .collect();
    let adds: Vec<Elem> = changes
        .iter()
        .filter_map(|(slot, _, new)| {
            new.map(|id| Elem {
                key: Expr::Num(SLOT_BASE + slot),
                data: Some(Expr::Num(id)),
            })
        })
        .collect();
    s.delete_elements(fam, &t, &map, &deletes);
    s.add_elements(fam, &t, &map, &adds);
}

/// The id sets of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdSet {
    /// Backends holding slots (persistence honours only these).
    Live,
    /// NAT: connections answered with a TCP reset.
    Reset,
    /// NAT: connections masqueraded.
    Masquerade,
}

/// Adds or removes backend ids in an id set of `svc`'s table.
pub fn mark_set_edit(s: &mut Script, svc: &ServiceShape, set: IdSet, add: bool, ids: &[u32]) {
    let (fam, t) = svc.table();
    let set = match set {
        IdSet::Live => "live_ids",
        IdSet::Reset => "reset_ids",
        IdSet::Masquerade => "masq_ids",
    };
    if add {
        let elems: Vec<Elem> = ids
            .iter()
            .map(|id| Elem {
                key: Expr::Num(*id),
                data: None,
            })
            .collect();
        s.add_elements(fam, &t, &ident(set), &elems);
    } else {
        let keys: Vec<Expr> = ids.iter().map(|id| Expr::Num(*id)).collect();
        s.delete_elements(fam, &t, &ident(set), &keys);
    }
}

/// Forgets persistence entries: `keys` of `svc`'s persistence map.
pub fn forget_clients(s: &mut Script, svc: &ServiceShape, keys: &[IpAddr]) {
    if let Some(map) = svc.persist_map() {
        let (fam, t) = svc.table();
        let keys: Vec<Expr> = keys.iter().map(|a| Expr::Addr(*a)).collect();
        s.delete_elements(fam, &t, &map, &keys);
    }
}

/// The JSON `list map` command for `svc`'s persistence map, if it has one.
pub fn list_persistence(svc: &ServiceShape) -> Option<nft::schema::schema::NfListObject<'static>> {
    let map = svc.persist_map()?;
    let (fam, t) = svc.table();
    let family = match fam {
        Family::Inet => nft::schema::types::NfFamily::INet,
        Family::Ip => nft::schema::types::NfFamily::IP,
        Family::Ip6 => nft::schema::types::NfFamily::IP6,
    };
    Some(nft::schema::schema::NfListObject::Map(Box::new(
        nft::schema::schema::Map {
            family,
            table: t.as_str().to_string().into(),
            name: map.as_str().to_string().into(),
            ..Default::default()
        },
    )))
}

/// The JSON `list chain` of a direct-routing virtual server's chain (repair
/// checks it is there); `None` for NAT ones.
pub fn list_chain(svc: &ServiceShape) -> Option<nft::schema::schema::NfListObject<'static>> {
    let family = match svc.table().0 {
        Family::Inet => return None,
        Family::Ip => nft::schema::types::NfFamily::IP,
        Family::Ip6 => nft::schema::types::NfFamily::IP6,
    };
    Some(nft::schema::schema::NfListObject::Chain(
        nft::schema::schema::Chain {
            family,
            table: DR_TABLE.into(),
            name: svc.chain().as_str().to_string().into(),
            ..Default::default()
        },
    ))
}

/// The JSON `list chain` of the NAT dispatch chain (repair counts its rules).
pub fn services_chain() -> nft::schema::schema::NfListObject<'static> {
    nft::schema::schema::NfListObject::Chain(nft::schema::schema::Chain {
        family: nft::schema::types::NfFamily::INet,
        table: TABLE.into(),
        name: "services".into(),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask(true, 24).to_string(), "255.255.255.0");
        assert_eq!(mask(true, 32).to_string(), "255.255.255.255");
        assert_eq!(mask(false, 64).to_string(), "ffff:ffff:ffff:ffff::");
    }

    #[test]
    fn names_depend_only_on_what_a_service_matches() {
        let shape = |port: u16, slots: u32| ServiceShape {
            matchers: vec![Matcher::Address {
                vip: "10.0.0.1".parse().expect("ip"),
                port,
            }],
            ipv4: true,
            protocol: LbProtocol::Tcp,
            kind: LbKind::Nat,
            scheduler: Scheduler::WeightedRandom,
            seed: 0,
            slots,
            persistence: None,
            keep_port: false,
            extras: (false, false),
        };
        assert_eq!(shape(80, 1021).key(), shape(80, 2039).key());
        assert_ne!(shape(80, 1021).key(), shape(81, 1021).key());
        assert!(Ident::new(format!("persist_{}", shape(80, 1).key())).is_ok());
    }
}
