//! Helpers shared by the integration tests: an independent checksum, an IPv4 header
//! builder, a deterministic PRNG and a simulated LAN of VRRP routers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use vrrp::sync_group::{GroupSync, MemberReport};
use vrrp::{
    receive_ipv4, receive_ipv6, Action, Centiseconds, DropCounters, Endpoints, Event,
    InstanceConfig, Machine, State, Timestamp, TransitionReason, Version, VirtualAddresses, Vrid,
};

/// RFC 1071 checksum written independently of the crate's: a plain byte loop over the
/// concatenation of `parts`, folding on every step.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let hi = u32::from(bytes[i]);
        let lo = if i + 1 < bytes.len() {
            u32::from(bytes[i + 1])
        } else {
            0
        };
        sum += (hi << 8) | lo;
        sum = (sum & 0xffff) + (sum >> 16);
        i += 2;
    }
    !(sum as u16)
}

pub fn ipv4_pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&[0, 112]);
    p.extend_from_slice(&(len as u16).to_be_bytes());
    p
}

pub fn ipv6_pseudo_header(src: Ipv6Addr, dst: Ipv6Addr, len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 112]);
    p
}

/// An IPv4 datagram as a raw socket delivers it: header (with `options`, a multiple of
/// 4 bytes), then `payload`.
pub fn ipv4_datagram(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ttl: u8,
    protocol: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "options pad to 32-bit words");
    let header_len = 20 + options.len();
    let total = header_len + payload.len();
    let mut d = vec![0u8; header_len];
    d[0] = 0x40 | (header_len / 4) as u8;
    d[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    d[8] = ttl;
    d[9] = protocol;
    d[12..16].copy_from_slice(&src.octets());
    d[16..20].copy_from_slice(&dst.octets());
    d[20..].copy_from_slice(options);
    let sum = internet_checksum(&[&d]);
    d[10..12].copy_from_slice(&sum.to_be_bytes());
    d.extend_from_slice(payload);
    d
}

/// SplitMix64: small, deterministic, good enough to drive fuzzing and chaos.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

pub fn vrid(v: u8) -> Vrid {
    Vrid::new(v).expect("test VRIDs are non-zero")
}

pub const VIP4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);

/// A VRRP instance on 192.0.2.`host` protecting 192.0.2.100.
pub fn v4_config(version: Version, host: u8, priority: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new(
        vrid(51),
        version,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, host)),
        VirtualAddresses::V4(vec![VIP4]),
    );
    c.priority = priority;
    c
}

/// A VRRPv3 instance on fe80::`host` protecting 2001:db8::100.
pub fn v6_config(host: u16, priority: u8) -> InstanceConfig {
    let mut c = InstanceConfig::new(
        vrid(51),
        Version::V3,
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, host)),
        VirtualAddresses::V6(vec![Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100)]),
    );
    c.priority = priority;
    c
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn at(d: Duration) -> Timestamp {
    Timestamp::from_elapsed(d)
}

pub fn cs(n: u16) -> Centiseconds {
    Centiseconds(n)
}

/// A transition as a router saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub at: Timestamp,
    pub from: State,
    pub to: State,
    pub reason: TransitionReason,
}

#[derive(Debug)]
pub struct Router {
    pub machine: Machine,
    /// A dead router neither sends, receives nor runs timers (power cut, SIGKILL).
    pub alive: bool,
    pub vips_installed: bool,
    pub gratuitous_sent: u64,
    pub transitions: Vec<Transition>,
    pub drops: DropCounters,
    /// (time, priority) of every advert this router put on the wire.
    pub sent: Vec<(Timestamp, u8)>,
    /// Time of every advert delivered to this router's machine.
    pub accepted_at: Vec<Timestamp>,
}

impl Router {
    pub fn became_master_at(&self) -> Vec<Timestamp> {
        self.transitions
            .iter()
            .filter(|t| t.to == State::Master)
            .map(|t| t.at)
            .collect()
    }
}

#[derive(Debug)]
struct InFlight {
    to: usize,
    bytes: Vec<u8>,
    source: IpAddr,
}

/// A shared segment: every advert reaches every other live router after `delay`, going
/// through emit, the IPv4 header (TTL 255) and the receive rules, as on a real wire.
#[derive(Debug)]
pub struct Lan {
    pub now: Timestamp,
    pub delay: Duration,
    pub routers: Vec<Router>,
    /// Keyed by (delivery time, sequence) so equal times keep sending order.
    in_flight: BTreeMap<(Timestamp, u64), InFlight>,
    seq: u64,
    /// Sync groups: routers that are one host's members of a group.
    pub groups: Vec<SyncGroupOnHost>,
}

/// One host's sync group: its coordinator and the routers that are its members.
#[derive(Debug)]
pub struct SyncGroupOnHost {
    pub sync: GroupSync,
    pub members: Vec<usize>,
    /// The last `is_down` reported per member.
    down: Vec<bool>,
    /// Every group state change, with its time.
    pub states: Vec<(Timestamp, State)>,
}

impl Lan {
    pub fn new(configs: Vec<InstanceConfig>) -> Lan {
        let routers = configs
            .into_iter()
            .map(|c| Router {
                machine: Machine::new(c).expect("test configs are valid"),
                alive: true,
                vips_installed: false,
                gratuitous_sent: 0,
                transitions: Vec::new(),
                drops: DropCounters::default(),
                sent: Vec::new(),
                accepted_at: Vec::new(),
            })
            .collect();
        Lan {
            now: Timestamp::ZERO,
            delay: ms(1),
            routers,
            in_flight: BTreeMap::new(),
            seq: 0,
            groups: Vec::new(),
        }
    }

    /// Makes routers `members` (their configs `synchronized`) one host's sync group.
    pub fn sync_group(&mut self, members: Vec<usize>) {
        for m in &members {
            assert!(
                self.routers[*m].machine.config().synchronized,
                "router {m} is not configured as a sync group member"
            );
        }
        self.groups.push(SyncGroupOnHost {
            sync: GroupSync::new(members.len()),
            down: vec![false; members.len()],
            members,
            states: Vec::new(),
        });
    }

    /// Router `i`'s group and member index.
    fn membership(&self, i: usize) -> Option<(usize, usize)> {
        self.groups.iter().enumerate().find_map(|(g, group)| {
            group
                .members
                .iter()
                .position(|m| *m == i)
                .map(|index| (g, index))
        })
    }

    /// Hands router `i`'s reports to its group; delivers the group's events.
    fn report(&mut self, i: usize, mut reports: Vec<MemberReport>) {
        let Some((g, index)) = self.membership(i) else {
            return;
        };
        let down = self.routers[i].machine.is_down();
        if self.groups[g].down[index] != down {
            self.groups[g].down[index] = down;
            reports.push(MemberReport::Down(down));
        }
        let mut deliveries = Vec::new();
        for report in reports {
            let group = &mut self.groups[g];
            let (events, changed) = group.sync.report(index, report);
            if let Some(state) = changed {
                group.states.push((self.now, state));
            }
            deliveries.extend(events.into_iter().map(|(m, e)| (group.members[m], e)));
        }
        for (router, event) in deliveries {
            self.event(router, event);
        }
    }

    /// Feeds `event` to router `i` now and carries out its actions.
    pub fn event(&mut self, i: usize, event: Event) {
        let actions = self.routers[i].machine.handle(self.now, event);
        self.apply(i, actions);
    }

    pub fn start(&mut self, i: usize) {
        self.routers[i].alive = true;
        self.event(i, Event::Startup);
    }

    /// Graceful stop: a Master sends priority 0.
    pub fn shutdown(&mut self, i: usize) {
        self.event(i, Event::Shutdown);
    }

    /// Hard stop: nothing more is sent, the host's addresses vanish with it.
    pub fn kill(&mut self, i: usize) {
        let r = &mut self.routers[i];
        r.alive = false;
        r.vips_installed = false;
        r.machine = Machine::new(r.machine.config().clone()).expect("config was valid");
    }

    fn apply(&mut self, i: usize, actions: Vec<Action>) {
        let mut reports = Vec::new();
        for action in &actions {
            match action {
                Action::StateChanged { to, .. } => reports.push(MemberReport::State(*to)),
                Action::WantsMaster(w) => reports.push(MemberReport::WantsMaster(*w)),
                _ => {}
            }
        }
        self.carry_out(i, actions);
        self.report(i, reports);
    }

    fn carry_out(&mut self, i: usize, actions: Vec<Action>) {
        for action in actions {
            let now = self.now;
            let r = &mut self.routers[i];
            match action {
                Action::StateChanged { from, to, reason } => r.transitions.push(Transition {
                    at: now,
                    from,
                    to,
                    reason,
                }),
                Action::AddVirtualAddresses => {
                    assert!(!r.vips_installed, "router {i} adds VIPs twice at {now}");
                    r.vips_installed = true;
                }
                Action::RemoveVirtualAddresses => {
                    assert!(r.vips_installed, "router {i} removes absent VIPs at {now}");
                    r.vips_installed = false;
                }
                Action::SendGratuitous { .. } => r.gratuitous_sent += 1,
                Action::WantsMaster(_) => {}
                Action::SendAdvert(advert) => {
                    r.sent.push((now, advert.priority()));
                    let config = r.machine.config();
                    let endpoints = config.advert_endpoints();
                    let payload = advert
                        .to_bytes(&endpoints, config.v3_ipv4_checksum)
                        .expect("the machine's adverts always emit");
                    let bytes = match endpoints {
                        Endpoints::V4 {
                            source,
                            destination,
                        } => ipv4_datagram(source, destination, 255, 112, &[], &payload),
                        Endpoints::V6 { .. } => payload,
                    };
                    let source = endpoints.source();
                    for to in 0..self.routers.len() {
                        if to != i {
                            self.seq += 1;
                            self.in_flight.insert(
                                (now + self.delay, self.seq),
                                InFlight {
                                    to,
                                    bytes: bytes.clone(),
                                    source,
                                },
                            );
                        }
                    }
                }
            }
        }
    }

    fn deliver(&mut self, packet: InFlight) {
        let r = &mut self.routers[packet.to];
        if !r.alive {
            return;
        }
        let result = {
            let machine = &r.machine;
            let lookup = |v: Vrid| {
                let c = machine.config();
                (c.vrid == v).then_some(c)
            };
            match packet.source {
                IpAddr::V4(_) => receive_ipv4(&packet.bytes, lookup),
                IpAddr::V6(source) => {
                    receive_ipv6(&packet.bytes, source, vrrp::wire::MULTICAST_V6, 255, lookup)
                }
            }
        };
        match result {
            Ok(received) => {
                r.accepted_at.push(self.now);
                let actions = r.machine.handle(self.now, Event::from(received));
                self.apply(packet.to, actions);
            }
            Err(discard) => r.drops.record(discard.reason()),
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        let timers = self
            .routers
            .iter()
            .filter(|r| r.alive)
            .filter_map(|r| r.machine.poll_timeout());
        let packets = self.in_flight.keys().next().map(|(t, _)| *t);
        timers.chain(packets).min()
    }

    /// Runs every packet delivery and timer up to and including `until`.
    pub fn run_until(&mut self, until: Timestamp) {
        while let Some(next) = self.next_deadline().filter(|t| *t <= until) {
            self.now = next;
            while let Some(entry) = self.in_flight.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let packet = entry.remove();
                self.deliver(packet);
            }
            for i in 0..self.routers.len() {
                if self.routers[i].alive
                    && self.routers[i]
                        .machine
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                {
                    self.event(i, Event::Timeout);
                }
            }
        }
        self.now = until;
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    pub fn masters(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|i| self.routers[*i].alive && self.routers[*i].machine.state() == State::Master)
            .collect()
    }

    pub fn vip_holders(&self) -> Vec<usize> {
        (0..self.routers.len())
            .filter(|i| self.routers[*i].vips_installed)
            .collect()
    }
}
