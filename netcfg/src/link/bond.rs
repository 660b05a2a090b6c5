//! Bonds: mode and options. The kernel's rules (drivers/net/bonding/
//! bond_options.c): the mode changes only while the bond is down without
//! slaves; lacp_rate and ad_select only while it is down; some options are
//! refused outright in some modes (EACCES); up/downdelay are kept in units of
//! miimon and refused (EPERM) while miimon is 0.

use std::net::Ipv4Addr;

use netlink_packet_route::link::{
    BondAdSelect, BondLacpRate, BondMode as NlBondMode, BondXmitHashPolicy, InfoBond, InfoData,
    LinkMessage,
};
use serde::{Deserialize, Serialize};

use super::{delta_fields, describe_field, ChangeNeeds, IndexOf, LinkRef, Spec, NO_LINK};
use crate::kernel::features::Feature;
use crate::model::{self, AdSelect, BondMode, LacpRate, XmitHashPolicy};

/// A bond's attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bond {
    /// Mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<BondMode>,
    /// MII link monitoring interval (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miimon_ms: Option<u32>,
    /// Delay before a slave whose link came up is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updelay_ms: Option<u32>,
    /// Delay before a slave whose link went down is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downdelay_ms: Option<u32>,
    /// LACPDU rate asked of the partner (802.3ad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lacp_rate: Option<LacpRate>,
    /// Transmit hash (balance-xor, 802.3ad, balance-tlb).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xmit_hash_policy: Option<XmitHashPolicy>,
    /// Aggregator selection (802.3ad).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_select: Option<AdSelect>,
    /// Slaves that must be up for the bond to have carrier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_links: Option<u32>,
    /// Preferred slave (active-backup, balance-tlb, balance-alb); [`NO_LINK`]: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<LinkRef>,
    /// ARP monitoring interval (0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_interval_ms: Option<u32>,
    /// ARP monitoring targets, sorted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arp_ip_targets: Option<Vec<Ipv4Addr>>,
}

/// Bonding (CONFIG_BONDING).
pub const FEATURE: Feature = Feature {
    name: "bonding",
    option: "CONFIG_BONDING",
    probe,
};

fn probe(_: u32) -> LinkMessage {
    rtnetlink::LinkBond::new(crate::kernel::features::PROBE_NAME).build()
}

/// The bonding driver's own miimon default when the config gives none and ARP
/// monitoring is off (vznet's, not the kernel's 0: active-backup without a
/// link monitor never fails over).
pub const DEFAULT_MIIMON_MS: u32 = 100;

/// An option the kernel takes only in some modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeOption {
    /// `lacp_rate`, `ad_select`.
    Lacp,
    /// `primary`.
    Primary,
    /// `arp_interval_ms` (and its targets, which only matter then).
    Arp,
    /// `xmit_hash_policy`.
    XmitHash,
}

impl ModeOption {
    /// The modes the option means something in. The kernel refuses Lacp,
    /// Primary and Arp outside them; xmit_hash_policy it takes anywhere.
    pub fn modes(self) -> &'static [BondMode] {
        use BondMode::*;
        match self {
            ModeOption::Lacp => &[Lacp],
            ModeOption::Primary => &[ActiveBackup, BalanceTlb, BalanceAlb],
            ModeOption::Arp => &[BalanceRr, ActiveBackup, BalanceXor, Broadcast],
            ModeOption::XmitHash => &[BalanceXor, Lacp, BalanceTlb],
        }
    }

    /// True in `mode`.
    pub fn applies(self, mode: BondMode) -> bool {
        self.modes().contains(&mode)
    }
}

impl Bond {
    /// What vznet keeps on a bond it makes: each option the config sets, and
    /// for each one it leaves out that applies to the mode, the kernel's
    /// default (removing a key from the config brings the default back).
    pub fn from_config(b: &model::Bond) -> Bond {
        let mode = b.mode;
        let arp = b.arp_interval_ms.unwrap_or(0);
        let miimon = b
            .miimon_ms
            .unwrap_or(if arp > 0 { 0 } else { DEFAULT_MIIMON_MS });
        let when = |o: ModeOption| o.applies(mode);
        let mut targets = b.arp_ip_targets.clone();
        targets.sort();
        targets.dedup();
        Bond {
            mode: Some(mode),
            miimon_ms: Some(miimon),
            // The kernel refuses delays while miimon is 0 (and reports 0).
            updelay_ms: (miimon > 0).then(|| b.updelay_ms.unwrap_or(0)),
            downdelay_ms: (miimon > 0).then(|| b.downdelay_ms.unwrap_or(0)),
            lacp_rate: when(ModeOption::Lacp).then(|| b.lacp_rate.unwrap_or_default()),
            xmit_hash_policy: when(ModeOption::XmitHash)
                .then(|| b.xmit_hash_policy.unwrap_or_default()),
            ad_select: when(ModeOption::Lacp).then(|| b.ad_select.unwrap_or_default()),
            min_links: Some(b.min_links.unwrap_or(0)),
            primary: when(ModeOption::Primary).then(|| {
                b.primary
                    .as_deref()
                    .map_or(NO_LINK, |p| LinkRef::Name(p.to_string()))
            }),
            arp_interval_ms: when(ModeOption::Arp).then_some(arp),
            arp_ip_targets: when(ModeOption::Arp).then_some(targets),
        }
    }

    /// Moves the fields of `o` from `self` into `to`.
    fn take(&mut self, o: ModeOption, to: &mut Bond) {
        match o {
            ModeOption::Lacp => {
                to.lacp_rate = self.lacp_rate.take();
                to.ad_select = self.ad_select.take();
            }
            ModeOption::Primary => to.primary = self.primary.take(),
            ModeOption::Arp => to.arp_interval_ms = self.arp_interval_ms.take(),
            ModeOption::XmitHash => to.xmit_hash_policy = self.xmit_hash_policy.take(),
        }
    }
}

/// Sets `old` to `have` unless it is set already.
fn keep<T: Clone>(old: &mut Option<T>, have: &Option<T>) {
    if old.is_none() {
        old.clone_from(have);
    }
}

impl Spec for Bond {
    const KIND: &'static str = "bond";

    fn decode(data: Option<&InfoData>, _: Option<u32>) -> Bond {
        let mut b = Bond {
            // Absent attributes: no primary slave, no ARP targets.
            primary: Some(NO_LINK),
            arp_ip_targets: Some(Vec::new()),
            ..Bond::default()
        };
        let Some(InfoData::Bond(attrs)) = data else {
            return b;
        };
        for a in attrs {
            match a {
                InfoBond::Mode(m) => b.mode = mode_from_nl(*m),
                InfoBond::MiiMon(v) => b.miimon_ms = Some(*v),
                InfoBond::UpDelay(v) => b.updelay_ms = Some(*v),
                InfoBond::DownDelay(v) => b.downdelay_ms = Some(*v),
                InfoBond::AdLacpRate(r) => {
                    b.lacp_rate = match r {
                        BondLacpRate::Slow => Some(LacpRate::Slow),
                        BondLacpRate::Fast => Some(LacpRate::Fast),
                        _ => None,
                    }
                }
                InfoBond::XmitHashPolicy(p) => b.xmit_hash_policy = xmit_from_nl(*p),
                InfoBond::AdSelect(s) => {
                    b.ad_select = match s {
                        BondAdSelect::Stable => Some(AdSelect::Stable),
                        BondAdSelect::Bandwidth => Some(AdSelect::Bandwidth),
                        BondAdSelect::Count => Some(AdSelect::Count),
                        _ => None,
                    }
                }
                InfoBond::MinLinks(v) => b.min_links = Some(*v),
                InfoBond::Primary(i) => b.primary = Some(LinkRef::Index(*i)),
                InfoBond::ArpInterval(v) => b.arp_interval_ms = Some(*v),
                InfoBond::ArpIpTarget(t) => {
                    let mut t = t.clone();
                    t.sort();
                    b.arp_ip_targets = Some(t);
                }
                _ => {}
            }
        }
        b
    }

    fn delta(&self, have: &Bond) -> Option<(Bond, Bond)> {
        let (mut change, mut old) = delta_fields!(self, have;
            mode, miimon_ms, updelay_ms, downdelay_ms, lacp_rate, xmit_hash_policy,
            ad_select, min_links, primary, arp_interval_ms, arp_ip_targets)?;
        // The kernel keeps the delays in units of miimon: a new miimon changes
        // them, so they are sent again with it (a request with miimon 0
        // leaves them out, see `info_data`).
        if change.miimon_ms.is_some() {
            if change.updelay_ms.is_none() && self.updelay_ms.is_some() {
                change.updelay_ms = self.updelay_ms;
                old.updelay_ms = have.updelay_ms;
            }
            if change.downdelay_ms.is_none() && self.downdelay_ms.is_some() {
                change.downdelay_ms = self.downdelay_ms;
                old.downdelay_ms = have.downdelay_ms;
            }
        }
        // A new mode resets what only the old mode used (ARP monitoring, for
        // one): keep the old mode's values so that undoing restores them.
        if let (Some(_), Some(from)) = (change.mode, have.mode) {
            if ModeOption::Lacp.applies(from) {
                keep(&mut old.lacp_rate, &have.lacp_rate);
                keep(&mut old.ad_select, &have.ad_select);
            }
            if ModeOption::Primary.applies(from) {
                keep(&mut old.primary, &have.primary);
            }
            if ModeOption::Arp.applies(from) {
                keep(&mut old.arp_interval_ms, &have.arp_interval_ms);
                keep(&mut old.arp_ip_targets, &have.arp_ip_targets);
            }
            keep(&mut old.updelay_ms, &have.updelay_ms);
            keep(&mut old.downdelay_ms, &have.downdelay_ms);
        }
        Some((change, old))
    }

    fn needs(&self, _old: &Bond) -> ChangeNeeds {
        ChangeNeeds {
            down: self.mode.is_some() || self.lacp_rate.is_some() || self.ad_select.is_some(),
            no_slaves: self.mode.is_some(),
        }
    }

    /// With a new mode: first the options the kernel takes only in some modes
    /// that the current mode takes, then the mode with the rest
    /// (bond_changelink applies the mode before the other options).
    fn steps(&self, old: &Bond) -> Vec<Bond> {
        let (Some(_), Some(from)) = (self.mode, old.mode) else {
            return vec![self.clone()];
        };
        let mut after = self.clone();
        let mut before = Bond::default();
        for o in [ModeOption::Lacp, ModeOption::Primary, ModeOption::Arp] {
            if o.applies(from) {
                after.take(o, &mut before);
            }
        }
        if before == Bond::default() {
            vec![after]
        } else {
            vec![before, after]
        }
    }

    /// A bond made again from what a dump reported carries every option; the
    /// kernel refuses (EACCES) the ones its mode does not take.
    fn created(&self) -> Bond {
        let mut b = self.clone();
        if let Some(mode) = self.mode {
            for o in [ModeOption::Lacp, ModeOption::Primary, ModeOption::Arp] {
                if !o.applies(mode) {
                    b.take(o, &mut Bond::default());
                }
            }
        }
        b
    }

    fn refs(&self) -> Vec<&LinkRef> {
        self.primary.iter().filter(|p| **p != NO_LINK).collect()
    }

    fn refs_mut(&mut self) -> Vec<&mut LinkRef> {
        self.primary.iter_mut().collect()
    }

    fn info_data(&self, index: IndexOf) -> Result<Option<InfoData>, String> {
        let mut v = Vec::new();
        if let Some(m) = self.mode {
            v.push(InfoBond::Mode(mode_to_nl(m)));
        }
        if let Some(x) = self.miimon_ms {
            v.push(InfoBond::MiiMon(x));
        }
        // The kernel refuses delays (EPERM) while miimon is 0, and reports
        // them as 0 then.
        if self.miimon_ms != Some(0) {
            if let Some(x) = self.updelay_ms {
                v.push(InfoBond::UpDelay(x));
            }
            if let Some(x) = self.downdelay_ms {
                v.push(InfoBond::DownDelay(x));
            }
        }
        if let Some(x) = self.arp_interval_ms {
            v.push(InfoBond::ArpInterval(x));
        }
        if let Some(t) = &self.arp_ip_targets {
            v.push(InfoBond::ArpIpTarget(t.clone()));
        }
        if let Some(p) = &self.primary {
            let idx = if *p == NO_LINK {
                0
            } else {
                index
                    .index(p)
                    .ok_or_else(|| format!("primary slave {p} does not exist"))?
            };
            v.push(InfoBond::Primary(idx));
        }
        if let Some(x) = self.xmit_hash_policy {
            v.push(InfoBond::XmitHashPolicy(xmit_to_nl(x)));
        }
        if let Some(x) = self.min_links {
            v.push(InfoBond::MinLinks(x));
        }
        if let Some(x) = self.lacp_rate {
            v.push(InfoBond::AdLacpRate(match x {
                LacpRate::Slow => BondLacpRate::Slow,
                LacpRate::Fast => BondLacpRate::Fast,
            }));
        }
        if let Some(x) = self.ad_select {
            v.push(InfoBond::AdSelect(match x {
                AdSelect::Stable => BondAdSelect::Stable,
                AdSelect::Bandwidth => BondAdSelect::Bandwidth,
                AdSelect::Count => BondAdSelect::Count,
            }));
        }
        Ok((!v.is_empty()).then_some(InfoData::Bond(v)))
    }

    fn describe(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        describe_field(&mut out, "mode", &self.mode.map(BondMode::as_str));
        describe_field(&mut out, "miimon_ms", &self.miimon_ms);
        describe_field(&mut out, "updelay_ms", &self.updelay_ms);
        describe_field(&mut out, "downdelay_ms", &self.downdelay_ms);
        describe_field(&mut out, "lacp_rate", &self.lacp_rate.map(LacpRate::as_str));
        describe_field(
            &mut out,
            "xmit_hash_policy",
            &self.xmit_hash_policy.map(XmitHashPolicy::as_str),
        );
        describe_field(&mut out, "ad_select", &self.ad_select.map(AdSelect::as_str));
        describe_field(&mut out, "min_links", &self.min_links);
        describe_field(&mut out, "primary", &self.primary);
        describe_field(&mut out, "arp_interval_ms", &self.arp_interval_ms);
        describe_field(
            &mut out,
            "arp_ip_targets",
            &self.arp_ip_targets.as_ref().map(|t| {
                if t.is_empty() {
                    "none".to_string()
                } else {
                    t.iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                }
            }),
        );
        out
    }

    fn notable(&self) -> Vec<(&'static str, String)> {
        super::without_defaults(
            self.describe(),
            &[
                ("updelay_ms", "0"),
                ("downdelay_ms", "0"),
                ("lacp_rate", "slow"),
                ("xmit_hash_policy", "layer2"),
                ("ad_select", "stable"),
                ("min_links", "0"),
                ("primary", "none"),
                ("arp_interval_ms", "0"),
                ("arp_ip_targets", "none"),
            ],
        )
    }

    fn features(&self) -> Vec<Feature> {
        vec![FEATURE]
    }
}

/// The netlink value of a bond mode.
pub fn mode_to_nl(mode: BondMode) -> NlBondMode {
    match mode {
        BondMode::BalanceRr => NlBondMode::BalanceRr,
        BondMode::ActiveBackup => NlBondMode::ActiveBackup,
        BondMode::BalanceXor => NlBondMode::BalanceXor,
        BondMode::Broadcast => NlBondMode::Broadcast,
        BondMode::Lacp => NlBondMode::Ieee8023Ad,
        BondMode::BalanceTlb => NlBondMode::BalanceTlb,
        BondMode::BalanceAlb => NlBondMode::BalanceAlb,
    }
}

fn mode_from_nl(mode: NlBondMode) -> Option<BondMode> {
    Some(match mode {
        NlBondMode::BalanceRr => BondMode::BalanceRr,
        NlBondMode::ActiveBackup => BondMode::ActiveBackup,
        NlBondMode::BalanceXor => BondMode::BalanceXor,
        NlBondMode::Broadcast => BondMode::Broadcast,
        NlBondMode::Ieee8023Ad => BondMode::Lacp,
        NlBondMode::BalanceTlb => BondMode::BalanceTlb,
        NlBondMode::BalanceAlb => BondMode::BalanceAlb,
        _ => return None,
    })
}

fn xmit_to_nl(p: XmitHashPolicy) -> BondXmitHashPolicy {
    match p {
        XmitHashPolicy::Layer2 => BondXmitHashPolicy::Layer2,
        XmitHashPolicy::Layer34 => BondXmitHashPolicy::Layer34,
        XmitHashPolicy::Layer23 => BondXmitHashPolicy::Layer23,
        XmitHashPolicy::Encap23 => BondXmitHashPolicy::Encap23,
        XmitHashPolicy::Encap34 => BondXmitHashPolicy::Encap34,
        XmitHashPolicy::VlanSrcMac => BondXmitHashPolicy::VlanSrcMac,
    }
}

fn xmit_from_nl(p: BondXmitHashPolicy) -> Option<XmitHashPolicy> {
    Some(match p {
        BondXmitHashPolicy::Layer2 => XmitHashPolicy::Layer2,
        BondXmitHashPolicy::Layer34 => XmitHashPolicy::Layer34,
        BondXmitHashPolicy::Layer23 => XmitHashPolicy::Layer23,
        BondXmitHashPolicy::Encap23 => XmitHashPolicy::Encap23,
        BondXmitHashPolicy::Encap34 => XmitHashPolicy::Encap34,
        BondXmitHashPolicy::VlanSrcMac => XmitHashPolicy::VlanSrcMac,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(mode: BondMode) -> model::Bond {
        crate::link::fixture::bond_config(mode)
    }

    /// What the kernel reports for a bond made from `b` (every attribute).
    fn observed(b: &Bond) -> Bond {
        let data = b.info_data(&|_: &LinkRef| Some(7)).expect("data");
        let mut o = Bond::decode(data.as_ref(), None);
        if let Some(LinkRef::Index(7)) = o.primary {
            o.primary = Some(LinkRef::Name("eth0".into()));
        }
        o.lacp_rate.get_or_insert(LacpRate::Slow);
        o.ad_select.get_or_insert(AdSelect::Stable);
        o.xmit_hash_policy.get_or_insert(XmitHashPolicy::Layer2);
        o.arp_interval_ms.get_or_insert(0);
        o.updelay_ms.get_or_insert(0);
        o.downdelay_ms.get_or_insert(0);
        o
    }

    #[test]
    fn defaults_only_for_options_of_the_mode_and_none_when_in_sync() {
        let ab = Bond::from_config(&config(BondMode::ActiveBackup));
        assert_eq!(ab.lacp_rate, None);
        assert_eq!(ab.primary, Some(NO_LINK));
        assert_eq!(ab.arp_interval_ms, Some(0));
        assert_eq!(ab.miimon_ms, Some(100));
        let lacp = Bond::from_config(&config(BondMode::Lacp));
        assert_eq!(lacp.lacp_rate, Some(LacpRate::Slow));
        assert_eq!(lacp.primary, None);
        assert_eq!(lacp.arp_interval_ms, None);
        for b in [ab, lacp] {
            assert_eq!(b.delta(&observed(&b)), None, "{b:?}");
        }
    }

    #[test]
    fn a_new_miimon_sends_the_delays_again() {
        let mut c = config(BondMode::ActiveBackup);
        c.miimon_ms = Some(100);
        c.updelay_ms = Some(200);
        let have = observed(&Bond::from_config(&c));
        c.miimon_ms = Some(50);
        let (change, old) = Bond::from_config(&c).delta(&have).expect("differs");
        assert_eq!(change.miimon_ms, Some(50));
        assert_eq!(change.updelay_ms, Some(200));
        assert_eq!(old.miimon_ms, Some(100));
        assert_eq!(old.updelay_ms, Some(200));
        assert!(!change.needs(&old).down);
    }

    #[test]
    fn arp_monitoring_turns_miimon_off_and_a_mode_change_keeps_it_for_undo() {
        let mut c = config(BondMode::ActiveBackup);
        c.arp_interval_ms = Some(200);
        c.arp_ip_targets = vec![
            "10.0.0.2".parse().expect("ip"),
            "10.0.0.1".parse().expect("ip"),
        ];
        let arp = Bond::from_config(&c);
        assert_eq!(arp.miimon_ms, Some(0));
        assert_eq!(arp.updelay_ms, None, "no delays without miimon");
        assert_eq!(
            arp.arp_ip_targets.as_deref().map(|t| t[0].to_string()),
            Some("10.0.0.1".to_string())
        );
        let have = observed(&arp);
        let want = Bond::from_config(&config(BondMode::Lacp));
        let (change, old) = want.delta(&have).expect("differs");
        assert_eq!(change.mode, Some(BondMode::Lacp));
        assert_eq!(change.arp_interval_ms, None, "802.3ad refuses arp_interval");
        assert_eq!(old.arp_interval_ms, Some(200), "kept for the undo");
        let needs = change.needs(&old);
        assert!(needs.down && needs.no_slaves);
        // The undo sets the mode back, then ARP monitoring, in one request
        // (the kernel applies the mode first).
        let undo = old.steps(&change);
        assert_eq!(undo.len(), 1, "{undo:?}");
        assert_eq!(undo[0].mode, Some(BondMode::ActiveBackup));
        assert_eq!(undo[0].arp_interval_ms, Some(200));
    }

    #[test]
    fn options_only_the_old_mode_takes_go_before_the_mode() {
        let have = observed(&Bond::from_config(&config(BondMode::ActiveBackup)));
        let mut c = config(BondMode::Lacp);
        c.lacp_rate = Some(LacpRate::Fast);
        let (change, old) = Bond::from_config(&c).delta(&have).expect("differs");
        assert_eq!(change.steps(&old).len(), 1, "lacp_rate after the mode");
        // Undo: lacp_rate back to slow while still 802.3ad (active-backup
        // refuses it), then the mode.
        let undo = old.steps(&change);
        assert_eq!(undo.len(), 2, "{undo:?}");
        assert_eq!(undo[0].lacp_rate, Some(LacpRate::Slow));
        assert_eq!(undo[0].mode, None);
        assert_eq!(undo[1].mode, Some(BondMode::ActiveBackup));
    }

    #[test]
    fn a_bond_made_again_from_a_dump_carries_only_its_modes_options() {
        let dumped = observed(&Bond::from_config(&config(BondMode::ActiveBackup)));
        assert_eq!(
            dumped.lacp_rate,
            Some(LacpRate::Slow),
            "dumps report every option"
        );
        let made = dumped.created();
        assert_eq!(made.lacp_rate, None);
        assert_eq!(made.ad_select, None);
        assert_eq!(made.primary, Some(NO_LINK));
        assert_eq!(made.arp_interval_ms, Some(0));
    }

    #[test]
    fn lacp_rate_needs_the_bond_down_but_no_release() {
        let mut c = config(BondMode::Lacp);
        let have = observed(&Bond::from_config(&c));
        c.lacp_rate = Some(LacpRate::Fast);
        let (change, old) = Bond::from_config(&c).delta(&have).expect("differs");
        assert_eq!(
            crate::link::describe_change(&change.describe(), &old.describe()),
            "lacp_rate slow -> fast"
        );
        let needs = change.needs(&old);
        assert!(needs.down && !needs.no_slaves);
    }
}
