//! Configuration of one virtual router instance (RFC 5798 / RFC 9568 §6.1 parameters).

use std::net::IpAddr;
use std::time::Duration;

use crate::wire::{
    AddressFamily, Centiseconds, Endpoints, V2Auth, V3Ipv4Checksum, Version, VirtualAddresses,
    Vrid, MAX_ADVER_INT_V3,
};

/// Priority of the router that owns the virtual addresses (RFC 5798 §5.2.4).
pub const OWNER_PRIORITY: u8 = 255;
/// Default priority of a backup (RFC 5798 §6.1).
pub const DEFAULT_PRIORITY: u8 = 100;
/// Default Advertisement_Interval: 1 second (RFC 5798 §6.1, RFC 3768 §6.1).
pub const DEFAULT_ADVERTISEMENT_INTERVAL: Centiseconds = Centiseconds(100);

/// When a Master announces its virtual addresses (gratuitous ARP, unsolicited NA),
/// beyond the first round of RFC 5798 §6.4.1/§6.4.2. Defaults are keepalived's.
///
/// Linux ignores a gratuitous ARP for an entry it confirmed less than `locktime` (1 s)
/// before, which is exactly what a host that was talking to the old Master has: the
/// delayed second round lands after that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gratuitous {
    /// The second round after becoming Master; `None`: none (`garp_master_delay`, 5 s).
    pub master_delay: Option<Duration>,
    /// Messages per address in each of those rounds (`garp_master_repeat`, 5).
    pub master_repeat: u32,
    /// Announce again this often while Master; `None`: never (`garp_master_refresh`).
    pub refresh: Option<Duration>,
    /// Messages per address in each refresh (`garp_master_refresh_repeat`, 1).
    pub refresh_repeat: u32,
}

impl Default for Gratuitous {
    fn default() -> Gratuitous {
        Gratuitous {
            master_delay: Some(Duration::from_secs(5)),
            master_repeat: 5,
            refresh: None,
            refresh_repeat: 1,
        }
    }
}

/// Why an [`InstanceConfig`] cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("priority 0 is reserved for the Master giving up (RFC 5798 §5.2.4)")]
    PriorityZero,
    #[error("a virtual router needs at least one virtual address")]
    NoVirtualAddresses,
    #[error("{0} virtual addresses do not fit one advert (at most 255)")]
    TooManyVirtualAddresses(usize),
    #[error("VRRPv2 protects IPv4 addresses only (RFC 3768)")]
    V2WithIpv6,
    #[error("primary address and virtual addresses are of different families")]
    FamilyMismatch,
    #[error(
        "the IPv6 primary address must be the interface's link-local address (RFC 5798 §5.1.2.1)"
    )]
    Ipv6PrimaryNotLinkLocal,
    #[error("advertisement interval {0} is out of range (VRRPv3: 1..=4095 cs)")]
    AdvertisementIntervalOutOfRange(Centiseconds),
    #[error("VRRPv2 advertisement interval {0} is not 1..=255 whole seconds")]
    V2IntervalNotWholeSeconds(Centiseconds),
    #[error("authentication exists in VRRPv2 only (RFC 5798 §9 removed it)")]
    AuthenticationWithV3,
}

/// One virtual router on one interface.
///
/// Names follow RFC 5798 §6.1. A router whose `priority` is 255 is the address owner:
/// it goes straight to Master on startup and always preempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub vrid: Vrid,
    pub version: Version,
    /// 1..=254 for a backup, 255 for the address owner.
    pub priority: u8,
    /// Advertisement_Interval: how often the Master sends (v2: whole seconds only).
    pub advertisement_interval: Centiseconds,
    /// Preempt_Mode: whether a higher-priority Backup takes over from a lower-priority
    /// Master (RFC 5798 §6.1, default true).
    pub preempt_mode: bool,
    /// Not in the RFCs (keepalived's `preempt_delay`): after Startup, a Backup with
    /// Preempt_Mode true accepts lower-priority adverts for this long before it starts
    /// discarding them, giving the rest of the host time to converge.
    pub preempt_delay: Duration,
    /// Accept_Mode: whether a non-owner Master accepts packets addressed to the virtual
    /// addresses (RFC 5798 §6.1, default false). Enforced by the shell.
    pub accept_mode: bool,
    /// The interface's primary address: the source of adverts and the tie-breaker
    /// between equal priorities (§6.4.3). IPv6: the link-local address.
    pub primary_address: IpAddr,
    pub virtual_addresses: VirtualAddresses,
    /// VRRPv3 over IPv4 only: which checksum to send and require.
    pub v3_ipv4_checksum: V3Ipv4Checksum,
    /// VRRPv2 only.
    pub auth: V2Auth,
    /// Adverts go to unicast peers (the shell's business; it lets an IPv6 primary
    /// address be global, since no multicast rule applies).
    pub unicast: bool,
    /// RFC-strict behaviour (keepalived's `strict_mode`): a Master does not answer a
    /// lower-priority advert with one of its own (RFC 5798 §6.4.3, before RFC 9568).
    pub strict: bool,
    /// A member of a sync group: a Master_Down_Timer that fires asks the group
    /// ([`crate::Action::WantsMaster`]) instead of making this router Master.
    pub synchronized: bool,
    /// Announcement rounds while Master.
    pub gratuitous: Gratuitous,
}

impl InstanceConfig {
    /// A config with the RFC defaults: priority 100, 1 s interval, preempt on without
    /// delay, accept mode off, no authentication, the keepalived checksum, multicast,
    /// keepalived's announcement rounds.
    pub fn new(
        vrid: Vrid,
        version: Version,
        primary_address: IpAddr,
        virtual_addresses: VirtualAddresses,
    ) -> InstanceConfig {
        InstanceConfig {
            vrid,
            version,
            priority: DEFAULT_PRIORITY,
            advertisement_interval: DEFAULT_ADVERTISEMENT_INTERVAL,
            preempt_mode: true,
            preempt_delay: Duration::ZERO,
            accept_mode: false,
            primary_address,
            virtual_addresses,
            v3_ipv4_checksum: V3Ipv4Checksum::default(),
            auth: V2Auth::None,
            unicast: false,
            strict: false,
            synchronized: false,
            gratuitous: Gratuitous::default(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.priority == 0 {
            return Err(ConfigError::PriorityZero);
        }
        let count = self.virtual_addresses.len();
        if count == 0 {
            return Err(ConfigError::NoVirtualAddresses);
        }
        if count > usize::from(u8::MAX) {
            return Err(ConfigError::TooManyVirtualAddresses(count));
        }
        let family = self.virtual_addresses.family();
        if AddressFamily::of(self.primary_address) != family {
            return Err(ConfigError::FamilyMismatch);
        }
        if let IpAddr::V6(primary) = self.primary_address {
            if !self.unicast && !primary.is_unicast_link_local() {
                return Err(ConfigError::Ipv6PrimaryNotLinkLocal);
            }
        }
        let interval = self.advertisement_interval;
        match self.version {
            Version::V2 => {
                if family == AddressFamily::Ipv6 {
                    return Err(ConfigError::V2WithIpv6);
                }
                if interval.0 == 0 || interval.0 % 100 != 0 || interval.0 > 25_500 {
                    return Err(ConfigError::V2IntervalNotWholeSeconds(interval));
                }
            }
            Version::V3 => {
                if interval.0 == 0 || interval.0 > MAX_ADVER_INT_V3 {
                    return Err(ConfigError::AdvertisementIntervalOutOfRange(interval));
                }
                if self.auth != V2Auth::None {
                    return Err(ConfigError::AuthenticationWithV3);
                }
            }
        }
        Ok(())
    }

    pub fn family(&self) -> AddressFamily {
        self.virtual_addresses.family()
    }

    /// Whether this router owns the virtual addresses (priority 255).
    pub fn is_owner(&self) -> bool {
        self.priority == OWNER_PRIORITY
    }

    /// Where this instance's adverts go: from the primary address to the VRRP multicast
    /// group (RFC 5798 §7.2).
    pub fn advert_endpoints(&self) -> Endpoints {
        Endpoints::to_multicast(self.primary_address)
    }

    /// VRRPv2's Adver Int in seconds; [`InstanceConfig::validate`] guarantees a whole
    /// number of seconds that fits.
    pub(crate) fn adver_int_secs(&self) -> u8 {
        u8::try_from(self.advertisement_interval.0 / 100).unwrap_or(u8::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4() -> InstanceConfig {
        InstanceConfig::new(
            Vrid::new(51).expect("non-zero"),
            Version::V3,
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            VirtualAddresses::V4(vec![Ipv4Addr::new(192, 0, 2, 100)]),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let c = v4();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.priority, 100);
        assert!(c.preempt_mode);
        assert!(!c.accept_mode);
        assert!(!c.is_owner());
        assert_eq!(c.family(), AddressFamily::Ipv4);
        assert_eq!(
            c.advert_endpoints().destination(),
            IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18))
        );
    }

    #[test]
    fn rejects_invalid() {
        let mut c = v4();
        c.priority = 0;
        assert_eq!(c.validate(), Err(ConfigError::PriorityZero));

        let mut c = v4();
        c.virtual_addresses = VirtualAddresses::V4(vec![]);
        assert_eq!(c.validate(), Err(ConfigError::NoVirtualAddresses));

        let mut c = v4();
        c.virtual_addresses = VirtualAddresses::V4(vec![Ipv4Addr::LOCALHOST; 256]);
        assert_eq!(c.validate(), Err(ConfigError::TooManyVirtualAddresses(256)));

        let mut c = v4();
        c.virtual_addresses = VirtualAddresses::V6(vec![Ipv6Addr::LOCALHOST]);
        assert_eq!(c.validate(), Err(ConfigError::FamilyMismatch));

        let mut c = v4();
        c.primary_address = IpAddr::V6("2001:db8::1".parse().expect("literal"));
        c.virtual_addresses = VirtualAddresses::V6(vec![Ipv6Addr::LOCALHOST]);
        assert_eq!(c.validate(), Err(ConfigError::Ipv6PrimaryNotLinkLocal));

        let mut c = v4();
        c.primary_address = IpAddr::V6("fe80::1".parse().expect("literal"));
        c.virtual_addresses = VirtualAddresses::V6(vec!["2001:db8::100".parse().expect("literal")]);
        assert_eq!(c.validate(), Ok(()));
        c.version = Version::V2;
        c.advertisement_interval = Centiseconds(100);
        assert_eq!(c.validate(), Err(ConfigError::V2WithIpv6));

        let mut c = v4();
        c.advertisement_interval = Centiseconds(0);
        assert_eq!(
            c.validate(),
            Err(ConfigError::AdvertisementIntervalOutOfRange(Centiseconds(
                0
            )))
        );
        c.advertisement_interval = Centiseconds(4096);
        assert_eq!(
            c.validate(),
            Err(ConfigError::AdvertisementIntervalOutOfRange(Centiseconds(
                4096
            )))
        );
        c.advertisement_interval = Centiseconds(4095);
        assert_eq!(c.validate(), Ok(()));

        let mut c = v4();
        c.version = Version::V2;
        c.advertisement_interval = Centiseconds(150);
        assert_eq!(
            c.validate(),
            Err(ConfigError::V2IntervalNotWholeSeconds(Centiseconds(150)))
        );
        c.advertisement_interval = Centiseconds(25_600);
        assert_eq!(
            c.validate(),
            Err(ConfigError::V2IntervalNotWholeSeconds(Centiseconds(25_600)))
        );
        c.advertisement_interval = Centiseconds(25_500);
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.adver_int_secs(), 255);

        let mut c = v4();
        c.auth = V2Auth::simple_password(b"pw").expect("short");
        assert_eq!(c.validate(), Err(ConfigError::AuthenticationWithV3));
        c.version = Version::V2;
        assert_eq!(c.validate(), Ok(()));
    }
}
