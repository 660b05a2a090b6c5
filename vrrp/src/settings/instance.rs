//! `[[vrrp]]`: one virtual router instance, with the addresses, routes and rules it
//! holds while Master.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ipnet::IpNet;

use super::track::{TrackFile, TrackInterface, TrackProcess, TrackScript};
use crate::config::{Gratuitous, InstanceConfig, OWNER_PRIORITY};
use crate::wire::{AddressFamily, Centiseconds, V2Auth, V3Ipv4Checksum, Version};
use crate::wire::{VirtualAddresses, Vrid};

/// The route protocol (`rtm_protocol`) of the virtual routes and rules VRRP installs:
/// `ip route show proto 248`. netcfg's own routes carry 249; each leaves the other's
/// alone.
pub const ROUTE_PROTOCOL: u8 = 248;

/// One `[[vrrp]]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct Instance {
    /// Instance name (`VI_1`), in logs, status and notify hooks.
    pub name: String,
    /// The interface the adverts use and the virtual IPs go on.
    pub interface: String,
    /// Virtual router id, 1..=255.
    pub vrid: u8,
    /// 1..=254; 255 for the address owner.
    #[cfg_attr(feature = "serde", serde(default = "default_priority"))]
    pub priority: u8,
    /// 2 (RFC 3768, IPv4 only) or 3 (RFC 5798/9568).
    #[cfg_attr(feature = "serde", serde(default = "default_version"))]
    pub version: Version,
    /// Advertisement interval: v2 whole seconds, v3 multiples of 10 ms.
    #[cfg_attr(feature = "serde", serde(default = "default_interval"))]
    pub advert_interval_ms: u32,
    /// The protected addresses, all of one family, sent in every advert.
    pub virtual_ips: Vec<VirtualIp>,
    /// More addresses held while Master but not sent in adverts (any family).
    #[cfg_attr(feature = "serde", serde(default))]
    pub virtual_ips_excluded: Vec<VirtualIp>,
    /// Routes installed while Master (route protocol [`ROUTE_PROTOCOL`]).
    #[cfg_attr(feature = "serde", serde(default))]
    pub virtual_routes: Vec<VirtualRoute>,
    /// Policy rules installed while Master.
    #[cfg_attr(feature = "serde", serde(default))]
    pub virtual_rules: Vec<VirtualRule>,
    /// Preempt a lower-priority Master (RFC 5798 §6.1).
    #[cfg_attr(feature = "serde", serde(default = "default_true"))]
    pub preempt: bool,
    /// After startup, accept a lower-priority Master this long before preempting it.
    #[cfg_attr(feature = "serde", serde(default))]
    pub preempt_delay_ms: u64,
    /// Accept_Mode (RFC 5798 §6.1): whether a Master that is not the address owner
    /// accepts packets addressed to the virtual IPs. Default: on, unless `strict`
    /// (keepalived's default); the owner always accepts.
    #[cfg_attr(feature = "serde", serde(default))]
    pub accept: Option<bool>,
    /// Follow the RFCs strictly (keepalived's `strict_mode`): no unicast peers, no
    /// password, no preempt delay, accept off by default, no advert in answer to a
    /// lower priority, and with IPv6 a link-local first virtual IP.
    #[cfg_attr(feature = "serde", serde(default))]
    pub strict: bool,
    /// Send adverts to these peers instead of the multicast group, and hear only them.
    #[cfg_attr(feature = "serde", serde(default))]
    pub unicast_peers: Vec<IpAddr>,
    /// The adverts' source address (the primary address); default: the interface's
    /// first address of the family that is not a virtual IP, or its IPv6 link-local.
    #[cfg_attr(feature = "serde", serde(default))]
    pub unicast_src_ip: Option<IpAddr>,
    /// VRRPv3 over IPv4: the checksum variant.
    #[cfg_attr(feature = "serde", serde(default))]
    pub checksum: V3Ipv4Checksum,
    /// VRRPv2 simple password (at most 8 bytes).
    #[cfg_attr(feature = "serde", serde(default))]
    pub password: Option<String>,
    /// Interfaces this instance depends on.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track: Vec<TrackInterface>,
    /// `[[vrrp_script]]`s this instance depends on, by name.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track_script: Vec<TrackScript>,
    /// Files holding a number that moves the priority.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track_file: Vec<TrackFile>,
    /// Processes that must be running.
    #[cfg_attr(feature = "serde", serde(default))]
    pub track_process: Vec<TrackProcess>,
    /// Run on becoming Master: argv, never a shell.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_master: Vec<String>,
    /// Run on becoming Backup.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_backup: Vec<String>,
    /// Run on entering Fault.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_fault: Vec<String>,
    /// Run when the instance stops.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify_stop: Vec<String>,
    /// Run on every state change, with keepalived's four arguments appended.
    #[cfg_attr(feature = "serde", serde(default))]
    pub notify: Vec<String>,
    /// A hook still running after this long is killed.
    #[cfg_attr(feature = "serde", serde(default = "default_notify_timeout"))]
    pub notify_timeout_ms: u64,
    /// Carry the virtual IPs on a macvlan with the virtual router MAC.
    #[cfg_attr(feature = "serde", serde(default))]
    pub use_vmac: bool,
    /// Delay of the second round of gratuitous ARPs / unsolicited NAs after becoming
    /// Master; 0: none.
    #[cfg_attr(feature = "serde", serde(default = "default_garp_delay"))]
    pub garp_master_delay_ms: u64,
    /// Messages per address in each of those two rounds.
    #[cfg_attr(feature = "serde", serde(default = "default_garp_repeat"))]
    pub garp_master_repeat: u32,
    /// While Master, announce again this often; 0: never.
    #[cfg_attr(feature = "serde", serde(default))]
    pub garp_master_refresh_ms: u64,
    /// Messages per address in each refresh.
    #[cfg_attr(feature = "serde", serde(default = "default_refresh_repeat"))]
    pub garp_master_refresh_repeat: u32,
}

pub(crate) fn default_priority() -> u8 {
    crate::config::DEFAULT_PRIORITY
}

fn default_version() -> Version {
    Version::V3
}

fn default_interval() -> u32 {
    1000
}

fn default_true() -> bool {
    true
}

fn default_notify_timeout() -> u64 {
    10_000
}

fn default_garp_delay() -> u64 {
    5_000
}

fn default_garp_repeat() -> u32 {
    5
}

fn default_refresh_repeat() -> u32 {
    1
}

impl Instance {
    /// An instance with every default, protecting `virtual_ips`.
    pub fn new(
        name: impl Into<String>,
        interface: impl Into<String>,
        vrid: u8,
        virtual_ips: Vec<VirtualIp>,
    ) -> Instance {
        Instance {
            name: name.into(),
            interface: interface.into(),
            vrid,
            priority: default_priority(),
            version: default_version(),
            advert_interval_ms: default_interval(),
            virtual_ips,
            virtual_ips_excluded: Vec::new(),
            virtual_routes: Vec::new(),
            virtual_rules: Vec::new(),
            preempt: default_true(),
            preempt_delay_ms: 0,
            accept: None,
            strict: false,
            unicast_peers: Vec::new(),
            unicast_src_ip: None,
            checksum: V3Ipv4Checksum::default(),
            password: None,
            track: Vec::new(),
            track_script: Vec::new(),
            track_file: Vec::new(),
            track_process: Vec::new(),
            notify_master: Vec::new(),
            notify_backup: Vec::new(),
            notify_fault: Vec::new(),
            notify_stop: Vec::new(),
            notify: Vec::new(),
            notify_timeout_ms: default_notify_timeout(),
            use_vmac: false,
            garp_master_delay_ms: default_garp_delay(),
            garp_master_repeat: default_garp_repeat(),
            garp_master_refresh_ms: 0,
            garp_master_refresh_repeat: default_refresh_repeat(),
        }
    }

    /// The family of the virtual IPs (IPv4 when there are none).
    pub fn family(&self) -> AddressFamily {
        match self.virtual_ips.first() {
            Some(v) => AddressFamily::of(v.address.addr()),
            None => AddressFamily::Ipv4,
        }
    }

    /// Whether this router owns the virtual IPs (priority 255).
    pub fn is_owner(&self) -> bool {
        self.priority == OWNER_PRIORITY
    }

    /// Accept_Mode in effect: the owner always accepts; otherwise `accept`, by default
    /// on unless `strict` (keepalived 2.2.7's rule).
    pub fn accepts(&self) -> bool {
        self.is_owner() || self.accept.unwrap_or(!self.strict)
    }

    /// The notify timeout.
    pub fn notify_timeout(&self) -> Duration {
        Duration::from_millis(self.notify_timeout_ms)
    }

    /// The interface an address goes on when it names none.
    pub fn dev_of<'a>(&'a self, vip: &'a VirtualIp) -> &'a str {
        vip.dev.as_deref().unwrap_or(&self.interface)
    }

    /// Every address this instance puts on an interface while Master (virtual IPs and
    /// excluded ones), with the interface named by the config. With `use_vmac`, those
    /// on the instance's interface go on its virtual MAC interface instead.
    pub fn held_addresses(&self) -> impl Iterator<Item = (&str, IpNet)> + '_ {
        self.virtual_ips
            .iter()
            .chain(&self.virtual_ips_excluded)
            .map(|v| (self.dev_of(v), v.address))
    }

    /// The protocol parameters of this instance; the primary address is unspecified
    /// (0.0.0.0 or ::) unless `unicast_src_ip` sets it, for the shell to fill in.
    /// Call after [`super::Settings::validate`]: invalid values are not reported here
    /// but by [`InstanceConfig::validate`].
    pub fn protocol_config(&self) -> InstanceConfig {
        let vrid = Vrid::new(self.vrid).unwrap_or(Vrid::MIN);
        let family = self.family();
        let virtual_addresses = match family {
            AddressFamily::Ipv4 => VirtualAddresses::V4(
                self.virtual_ips
                    .iter()
                    .filter_map(|v| match v.address.addr() {
                        IpAddr::V4(a) => Some(a),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
            ),
            AddressFamily::Ipv6 => VirtualAddresses::V6(
                self.virtual_ips
                    .iter()
                    .filter_map(|v| match v.address.addr() {
                        IpAddr::V6(a) => Some(a),
                        IpAddr::V4(_) => None,
                    })
                    .collect(),
            ),
        };
        let primary = self.unicast_src_ip.unwrap_or(match family {
            AddressFamily::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            AddressFamily::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        });
        let mut c = InstanceConfig::new(vrid, self.version, primary, virtual_addresses);
        c.priority = self.priority;
        c.advertisement_interval =
            Centiseconds(u16::try_from(self.advert_interval_ms / 10).unwrap_or(u16::MAX));
        c.preempt_mode = self.preempt;
        c.preempt_delay = Duration::from_millis(self.preempt_delay_ms);
        c.accept_mode = self.accepts();
        c.strict = self.strict;
        c.unicast = !self.unicast_peers.is_empty();
        c.v3_ipv4_checksum = self.checksum;
        if let Some(pw) = &self.password {
            c.auth = V2Auth::simple_password(pw.as_bytes()).unwrap_or(V2Auth::None);
        }
        c.gratuitous = Gratuitous {
            master_delay: (self.garp_master_delay_ms > 0)
                .then(|| Duration::from_millis(self.garp_master_delay_ms)),
            master_repeat: self.garp_master_repeat,
            refresh: (self.garp_master_refresh_ms > 0)
                .then(|| Duration::from_millis(self.garp_master_refresh_ms)),
            refresh_repeat: self.garp_master_refresh_repeat,
        };
        c
    }
}

/// A virtual IP: `"192.0.2.100/24"`, or a table with where and how it goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualIp {
    /// The address with its prefix length (a bare address is a host prefix).
    pub address: IpNet,
    /// The interface it goes on; default: the instance's.
    pub dev: Option<String>,
    /// IPv4 address label (`eth0:vip`); it must start with the interface's name.
    pub label: Option<String>,
    /// Address scope; default global.
    pub scope: Option<AddressScope>,
    /// IPv4 broadcast address.
    pub brd: Option<Ipv4Addr>,
}

impl VirtualIp {
    /// An address with nothing else set.
    pub fn new(address: IpNet) -> VirtualIp {
        VirtualIp {
            address,
            dev: None,
            label: None,
            scope: None,
            brd: None,
        }
    }

    /// Whether only the address is set (it serializes as a plain string).
    pub fn is_plain(&self) -> bool {
        self.dev.is_none() && self.label.is_none() && self.scope.is_none() && self.brd.is_none()
    }
}

/// `ip address add ... scope SCOPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum AddressScope {
    Global,
    Site,
    Link,
    Host,
    Nowhere,
}

impl AddressScope {
    /// The kernel's `rt_scope_t` value.
    pub fn number(self) -> u8 {
        match self {
            AddressScope::Global => 0,
            AddressScope::Site => 200,
            AddressScope::Link => 253,
            AddressScope::Host => 254,
            AddressScope::Nowhere => 255,
        }
    }
}

/// A route installed while Master: `{ to = "10.1.0.0/16", via = "192.0.2.254" }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct VirtualRoute {
    /// Destination prefix (a bare address is a host route; `0.0.0.0/0` the default).
    #[cfg_attr(feature = "serde", serde(with = "super::serde_forms::prefix"))]
    pub to: IpNet,
    /// Gateway.
    #[cfg_attr(feature = "serde", serde(default))]
    pub via: Option<IpAddr>,
    /// Output interface.
    #[cfg_attr(feature = "serde", serde(default))]
    pub dev: Option<String>,
    /// Preferred source address.
    #[cfg_attr(feature = "serde", serde(default))]
    pub src: Option<IpAddr>,
    /// Route metric.
    #[cfg_attr(feature = "serde", serde(default))]
    pub metric: Option<u32>,
    /// Routing table; default main (254).
    #[cfg_attr(feature = "serde", serde(default))]
    pub table: Option<u32>,
    /// Route scope; default: link without a gateway, global with one.
    #[cfg_attr(feature = "serde", serde(default))]
    pub scope: Option<AddressScope>,
    /// Route type; default unicast.
    #[cfg_attr(feature = "serde", serde(default, rename = "type"))]
    pub kind: RouteKind,
}

/// The type of a virtual route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum RouteKind {
    #[default]
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
}

/// A policy rule installed while Master: `{ from = "10.1.0.0/16", table = 100 }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
pub struct VirtualRule {
    /// Source prefix.
    #[cfg_attr(
        feature = "serde",
        serde(default, with = "super::serde_forms::optional_prefix")
    )]
    pub from: Option<IpNet>,
    /// Destination prefix.
    #[cfg_attr(
        feature = "serde",
        serde(default, with = "super::serde_forms::optional_prefix")
    )]
    pub to: Option<IpNet>,
    /// The table to look up.
    pub table: u32,
    /// Rule priority (`ip rule ... priority N`); default: the kernel picks.
    #[cfg_attr(feature = "serde", serde(default))]
    pub priority: Option<u32>,
    /// Incoming interface.
    #[cfg_attr(feature = "serde", serde(default))]
    pub iif: Option<String>,
    /// Outgoing interface.
    #[cfg_attr(feature = "serde", serde(default))]
    pub oif: Option<String>,
    /// Firewall mark.
    #[cfg_attr(feature = "serde", serde(default))]
    pub fwmark: Option<u32>,
    /// Address family when neither `from` nor `to` says: 4 or 6 (default 4).
    #[cfg_attr(feature = "serde", serde(default))]
    pub family: Option<u8>,
}

impl VirtualRule {
    /// The rule's address family.
    pub fn family(&self) -> AddressFamily {
        match self.from.or(self.to) {
            Some(n) => AddressFamily::of(n.addr()),
            None if self.family == Some(6) => AddressFamily::Ipv6,
            None => AddressFamily::Ipv4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(s: &str) -> VirtualIp {
        VirtualIp::new(s.parse().expect("literal"))
    }

    #[test]
    fn accept_follows_keepalived_defaults() {
        let mut i = Instance::new("VI_1", "eth0", 51, vec![vip("192.0.2.100/24")]);
        assert!(i.accepts(), "keepalived accepts by default");
        i.strict = true;
        assert!(!i.accepts(), "strict turns the default off");
        i.accept = Some(true);
        assert!(i.accepts());
        i.accept = Some(false);
        i.strict = false;
        assert!(!i.accepts());
        i.priority = 255;
        assert!(i.accepts(), "the owner always accepts");
    }

    #[test]
    fn protocol_config_carries_every_protocol_field() {
        let mut i = Instance::new("VI_1", "eth0", 51, vec![vip("192.0.2.100/24")]);
        i.priority = 150;
        i.advert_interval_ms = 100;
        i.preempt = false;
        i.unicast_peers = vec!["192.0.2.2".parse().expect("literal")];
        i.garp_master_delay_ms = 0;
        i.garp_master_refresh_ms = 60_000;
        let c = i.protocol_config();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.priority, 150);
        assert_eq!(c.advertisement_interval, Centiseconds(10));
        assert!(!c.preempt_mode && c.unicast && c.accept_mode);
        assert!(c.primary_address.is_unspecified());
        assert_eq!(c.gratuitous.master_delay, None);
        assert_eq!(c.gratuitous.refresh, Some(Duration::from_secs(60)));
        i.unicast_src_ip = Some("192.0.2.11".parse().expect("literal"));
        assert_eq!(
            i.protocol_config().primary_address,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 11))
        );
    }
}
