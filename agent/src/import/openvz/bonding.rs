//! Kernel bonding options (`mode=1 miimon=100`, from BONDING_OPTS, `bond-*` lines
//! or modprobe) as vznet's `[[bond]]` keys: names and numbers as the bonding
//! driver takes them, each value checked alone against the model so one bad
//! value costs only itself.

use std::collections::BTreeMap;

use netcfg::model::{Bond, BondMode};

use super::netdef::{BondOption, Iface};
use crate::import::report::{Kind, Report};

/// A bonding mode by the kernel's name or number.
pub fn bond_mode(v: &str) -> Option<BondMode> {
    let by_number = [
        "balance-rr",
        "active-backup",
        "balance-xor",
        "broadcast",
        "802.3ad",
        "balance-tlb",
        "balance-alb",
    ];
    let name = v
        .parse::<usize>()
        .ok()
        .and_then(|n| by_number.get(n).copied())
        .unwrap_or(v);
    BondMode::ALL.into_iter().find(|m| m.as_str() == name)
}

/// The vznet key and TOML value of a kernel bonding option; Err: why not.
fn bond_key(key: &str, value: &str) -> Result<(&'static str, toml::Value), String> {
    let number = || {
        value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("{value:?} is not a number"))
    };
    let named = |names: &[&str]| {
        let v = value
            .parse::<usize>()
            .ok()
            .and_then(|n| names.get(n).copied())
            .unwrap_or(value);
        toml::Value::String(v.to_string())
    };
    Ok(match key {
        "miimon" => ("miimon_ms", number()?),
        "updelay" => ("updelay_ms", number()?),
        "downdelay" => ("downdelay_ms", number()?),
        "arp_interval" => ("arp_interval_ms", number()?),
        "min_links" => ("min_links", number()?),
        "primary" => ("primary", toml::Value::String(value.to_string())),
        "lacp_rate" => ("lacp_rate", named(&["slow", "fast"])),
        "ad_select" => ("ad_select", named(&["stable", "bandwidth", "count"])),
        "xmit_hash_policy" => (
            "xmit_hash_policy",
            named(&[
                "layer2",
                "layer3+4",
                "layer2+3",
                "encap2+3",
                "encap3+4",
                "vlan+srcmac",
            ]),
        ),
        "arp_ip_target" => {
            let targets = value
                .split(',')
                .map(|t| t.trim().trim_start_matches('+'))
                .filter(|t| !t.is_empty())
                .map(|t| toml::Value::String(t.to_string()))
                .collect();
            ("arp_ip_targets", toml::Value::Array(targets))
        }
        "max_bonds" => return Err("no effect".into()),
        _ => return Err(format!("vznet's [[bond]] has no {key}")),
    })
}

/// The bond `iface` as host.toml's `[[bond]]`, its options checked one by one
/// against the model (a value it refuses is reported, not carried).
pub fn bond(
    iface: &Iface,
    options: &[BondOption],
    slaves: Vec<String>,
    report: &mut Report,
) -> Bond {
    let mut mode = BondMode::BalanceRr;
    let mut keys = toml::Table::new();
    for o in options {
        if o.key == "mode" {
            match bond_mode(&o.value) {
                Some(m) => mode = m,
                None => report.add(
                    &o.at.file,
                    o.at.line,
                    format!("mode={}", o.value),
                    Kind::NotCarried,
                    "not a bonding mode (balance-rr is carried, the kernel's default)",
                ),
            }
            continue;
        }
        match bond_key(&o.key, &o.value) {
            Ok((key, value)) => {
                let mut probe = toml::Table::new();
                probe.insert("name".into(), toml::Value::String(iface.name.clone()));
                probe.insert("mode".into(), toml::Value::String("balance-rr".into()));
                probe.insert(key.into(), value.clone());
                match probe.try_into::<Bond>() {
                    Ok(_) => {
                        keys.insert(key.into(), value);
                    }
                    Err(e) => report.add(
                        &o.at.file,
                        o.at.line,
                        format!("{}={}", o.key, o.value),
                        Kind::NotCarried,
                        format!("vznet refuses {key}: {}", e.message().trim()),
                    ),
                }
            }
            Err(why) if why == "no effect" => report.add(
                &o.at.file,
                o.at.line,
                format!("{}={}", o.key, o.value),
                Kind::NoEffect,
                "the number of bonds the module makes at load; vznet makes each bond it declares",
            ),
            Err(why) => report.add(
                &o.at.file,
                o.at.line,
                format!("{}={}", o.key, o.value),
                Kind::NotCarried,
                why,
            ),
        }
    }
    keys.insert("name".into(), toml::Value::String(iface.name.clone()));
    keys.insert("mode".into(), toml::Value::String(mode.as_str().into()));
    let mut bond: Bond = keys.try_into().unwrap_or(Bond {
        name: iface.name.clone(),
        mode,
        mtu: None,
        miimon_ms: None,
        updelay_ms: None,
        downdelay_ms: None,
        lacp_rate: None,
        xmit_hash_policy: None,
        ad_select: None,
        min_links: None,
        primary: None,
        arp_interval_ms: None,
        arp_ip_targets: Vec::new(),
        slaves: Vec::new(),
        addresses: Vec::new(),
        sysctl: BTreeMap::new(),
    });
    bond.slaves = slaves;
    bond.addresses = iface.addresses.clone();
    bond.mtu = iface.mtu;
    bond.sysctl = iface.sysctl.clone();
    bond
}
