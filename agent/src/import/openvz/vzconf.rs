//! /etc/vz/vz.conf and /etc/vz/conf/CTID.conf as vzctl 4 reads them: vz.conf's
//! settings are the defaults of every container (`VE_PRIVATE=/vz/private/$VEID`),
//! each CTID.conf overrides them; `$VEID` expands to the id.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use netcfg::model::{ByteSize, Netif, VeConfig, Venet};

use super::netdef::At;
use super::shell::{self, Assignment};
use super::source::Root;
use crate::import::report::{Kind, Report};

/// User beancounters: OpenVZ's kernel accounting, with no cgroup equivalent
/// vznet sets (PHYSPAGES is the exception: memory_limit).
const UBC: &[&str] = &[
    "KMEMSIZE",
    "LOCKEDPAGES",
    "PRIVVMPAGES",
    "SHMPAGES",
    "NUMPROC",
    "VMGUARPAGES",
    "OOMGUARPAGES",
    "NUMTCPSOCK",
    "NUMFLOCK",
    "NUMPTY",
    "NUMSIGINFO",
    "TCPSNDBUF",
    "TCPRCVBUF",
    "OTHERSOCKBUF",
    "DGRAMRCVBUF",
    "NUMOTHERSOCK",
    "DCACHESIZE",
    "NUMFILE",
    "AVNUMPROC",
    "NUMIPTENT",
    "SWAPPAGES",
    "VM_OVERCOMMIT",
];

/// Disk quota settings.
const QUOTA: &[&str] = &[
    "DISKSPACE",
    "DISKINODES",
    "QUOTATIME",
    "QUOTAUGIDLIMIT",
    "DISK_QUOTA",
];

/// CPU and I/O scheduling beyond the weight.
const SCHED: &[&str] = &[
    "CPULIMIT",
    "CPUS",
    "CPUMASK",
    "NODEMASK",
    "IOPRIO",
    "IOLIMIT",
    "IOPSLIMIT",
];

/// vzctl's own bookkeeping: nothing a VE does depends on it.
const HOUSEKEEPING: &[&str] = &[
    "VIRTUOZZO",
    "LOCKDIR",
    "DUMPDIR",
    "LOGGING",
    "LOGFILE",
    "LOG_LEVEL",
    "VERBOSE",
    "TEMPLATE",
    "DEF_OSTEMPLATE",
    "CONFIGFILE",
    "VZFASTBOOT",
    "OSTEMPLATE",
    "ORIGIN_SAMPLE",
    "NAME",
    "DESCRIPTION",
    "VEID",
    "GOOD_PVS",
    "REMOVEMIGRATED",
    "VZWDOG",
    "SKIP_SYSCTL_SETUP",
    "MODULES_DISABLED",
    "VE_PARALLEL",
    "IPV6",
];

/// vz.conf: the defaults it gives each container, and `NEIGHBOUR_DEVS`.
#[derive(Debug, Default)]
pub struct Global {
    /// The file's assignments (values unexpanded, to expand with each VEID).
    text: Option<(String, PathBuf)>,
    /// `NEIGHBOUR_DEVS` and where.
    pub neighbour_devs: Option<(String, At)>,
}

/// Keys of vz.conf that are container defaults.
const DEFAULTS: &[&str] = &["VE_ROOT", "VE_PRIVATE", "VE_LAYOUT"];

/// Reads vz.conf, reporting its host-wide keys.
pub fn global(root: &Root, report: &mut Report) -> Global {
    let Some((text, file)) = root.read("etc/vz/vz.conf", report) else {
        return Global::default();
    };
    let parsed = shell::parse(&text, &BTreeMap::new());
    let mut g = Global::default();
    for (line, t) in &parsed.other {
        report.add(
            &file,
            *line,
            t.clone(),
            Kind::NotCarried,
            "not a KEY=value assignment",
        );
    }
    for a in &parsed.assignments {
        let key = a.key.as_str();
        match key {
            k if DEFAULTS.contains(&k) => {}
            "NEIGHBOUR_DEVS" => {
                g.neighbour_devs = Some((
                    a.value.clone(),
                    At {
                        file: file.clone(),
                        line: a.line,
                    },
                ))
            }
            k if HOUSEKEEPING.contains(&k) => report.add(
                &file,
                a.line,
                key,
                Kind::NoEffect,
                "vzctl's own bookkeeping",
            ),
            k => lost(&file, a, k, report),
        }
    }
    g.text = Some((text, file));
    g
}

/// Why a key is not carried.
fn lost(file: &Path, a: &Assignment, key: &str, report: &mut Report) {
    let why = if UBC.contains(&key) {
        "a user beancounter: vznet limits VEs by cgroup cpu_weight and memory_limit only"
    } else if QUOTA.contains(&key) {
        "disk quota: vznet sets none (use the file system's project quota)"
    } else if SCHED.contains(&key) {
        "vznet sets the CPU weight only"
    } else {
        match key {
            "IPTABLES" | "IPTABLES_MODULES" | "NETFILTER" => {
                "a VE's netns has the host kernel's netfilter; vznet restricts no module"
            }
            "FEATURES" | "CAPABILITY" | "DEVICES" | "DEVNODES" | "BINDMOUNT" | "MEMINFO" => {
                "vznet has no per-VE setting for it"
            }
            "VE_STOP_MODE" | "STOP_TIMEOUT" => {
                "vznet stops a VE with SIGTERM, SIGKILL after --timeout"
            }
            "DISABLED" => "vznet has no disabled VEs: remove onboot or the file",
            "VE0CPUUNITS" => "the host's own CPU weight is systemd's",
            "VE_ROUTE_SRC_DEV" => "vznet's venet routes have no source address",
            _ => "vznet has no equivalent",
        }
    };
    report.add(file, a.line, key, Kind::NotCarried, why);
}

/// The ids of /etc/vz/conf/ID.conf files, sorted by id.
pub fn ids(root: &Root) -> Vec<u32> {
    let mut ids: Vec<u32> = root
        .list("etc/vz/conf")
        .iter()
        .filter_map(|n| n.strip_suffix(".conf")?.parse().ok())
        .filter(|id| *id != 0)
        .collect();
    ids.sort_unstable();
    ids
}

/// One imported VE and where its parts come from.
#[derive(Debug)]
pub struct ImportedVe {
    /// The VE.
    pub ve: VeConfig,
    /// Where `netif[i]` comes from.
    pub netif_at: Vec<At>,
    /// Where each top-level key comes from.
    pub key_at: BTreeMap<String, At>,
    /// The CTID.conf.
    pub file: PathBuf,
}

/// Reads /etc/vz/conf/ID.conf on top of vz.conf's defaults.
pub fn ve(root: &Root, id: u32, global: &Global, report: &mut Report) -> Option<ImportedVe> {
    let (text, file) = root.read(&format!("etc/vz/conf/{id}.conf"), report)?;
    let env = BTreeMap::from([("VEID".to_string(), id.to_string())]);
    let defaults = global
        .text
        .as_ref()
        .map(|(t, f)| (shell::parse(t, &env), f.clone()));
    let parsed = shell::parse(&text, &env);
    for (line, t) in &parsed.other {
        report.add(
            &file,
            *line,
            t.clone(),
            Kind::NotCarried,
            "not a KEY=value assignment",
        );
    }
    let mut out = ImportedVe {
        ve: VeConfig {
            id,
            hostname: None,
            root: None,
            netns: None,
            init: None,
            netif: Vec::new(),
            venet: None,
            cpu_weight: None,
            memory_limit: None,
            hooks: Default::default(),
            firewall: None,
            anti_spoof: true,
            onboot: false,
            boot_order: None,
            nameservers: Vec::new(),
            search: Vec::new(),
        },
        netif_at: Vec::new(),
        key_at: BTreeMap::new(),
        file: file.clone(),
    };
    // VE_PRIVATE / VE_LAYOUT from vz.conf unless the CT's file sets them.
    if let Some((d, dfile)) = &defaults {
        for key in ["VE_PRIVATE", "VE_LAYOUT"] {
            if parsed.get(key).is_none() {
                if let Some(a) = d.get(key) {
                    assign(&mut out, dfile, a, report);
                }
            }
        }
    }
    for a in &parsed.assignments {
        assign(&mut out, &file, a, report);
    }
    Some(out)
}

fn yes_no(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "yes" | "on" | "1" => Some(true),
        "no" | "off" | "0" | "" => Some(false),
        _ => None,
    }
}

/// Carries one CTID.conf (or vz.conf default) assignment into the VE.
fn assign(out: &mut ImportedVe, file: &Path, a: &Assignment, report: &mut Report) {
    let key = a.key.as_str();
    let at = At {
        file: file.to_path_buf(),
        line: a.line,
    };
    let bad =
        |report: &mut Report, why: String| report.add(file, a.line, key, Kind::NotCarried, why);
    let ve = &mut out.ve;
    let carried = |name: &str, out_at: &mut BTreeMap<String, At>| {
        out_at.insert(name.to_string(), at.clone());
    };
    match key {
        "ONBOOT" => match yes_no(&a.value) {
            Some(b) => {
                ve.onboot = b;
                carried("onboot", &mut out.key_at);
            }
            None => bad(report, format!("{:?} is neither yes nor no", a.value)),
        },
        "BOOTORDER" => match a.value.parse() {
            Ok(n) => {
                ve.boot_order = Some(n);
                carried("boot_order", &mut out.key_at);
            }
            Err(_) => bad(report, format!("{:?} is not a number", a.value)),
        },
        "HOSTNAME" => {
            if !a.value.is_empty() {
                ve.hostname = Some(a.value.clone());
                carried("hostname", &mut out.key_at);
            }
        }
        "NAMESERVER" => {
            for word in a.value.split_whitespace() {
                match word.parse::<IpAddr>() {
                    Ok(ip) => ve.nameservers.push(ip),
                    Err(_) if word == "inherit" => report.add(
                        file,
                        a.line,
                        "NAMESERVER=inherit",
                        Kind::NotCarried,
                        "vznet copies no host name servers: list them",
                    ),
                    Err(_) => bad(report, format!("{word:?} is not an IP address")),
                }
            }
            carried("nameservers", &mut out.key_at);
        }
        "SEARCHDOMAIN" => {
            for word in a.value.split_whitespace() {
                if word == "inherit" {
                    report.add(
                        file,
                        a.line,
                        "SEARCHDOMAIN=inherit",
                        Kind::NotCarried,
                        "vznet copies no host search domains: list them",
                    );
                } else {
                    ve.search.push(word.to_string());
                }
            }
            carried("search", &mut out.key_at);
        }
        "IP_ADDRESS" => {
            let mut addresses = Vec::new();
            for word in a.value.split_whitespace() {
                let (ip, mask) = word
                    .split_once('/')
                    .map_or((word, None), |(i, m)| (i, Some(m)));
                match ip.parse::<IpAddr>() {
                    Ok(addr) => {
                        if let Some(m) = mask {
                            report.add(file, a.line, format!("IP_ADDRESS {word}"), Kind::Changed, format!("venet addresses are host routes: /{m} is dropped, {addr} carried"));
                        }
                        if !addresses.contains(&addr) {
                            addresses.push(addr);
                        }
                    }
                    Err(_) => bad(report, format!("{word:?} is not an IP address")),
                }
            }
            if !addresses.is_empty() {
                ve.venet = Some(Venet {
                    addresses,
                    host_name: None,
                    mtu: None,
                });
                carried("venet", &mut out.key_at);
            }
        }
        "NETIF" => {
            for (n, spec) in a
                .value
                .split(';')
                .filter(|s| !s.trim().is_empty())
                .enumerate()
            {
                if let Some(netif) = netif(ve.id, spec.trim(), file, a.line, report) {
                    ve.netif.push(netif);
                    out.netif_at.push(at.clone());
                } else {
                    report.add(
                        file,
                        a.line,
                        format!("NETIF #{}", n + 1),
                        Kind::NotCarried,
                        "it has no ifname",
                    );
                }
            }
        }
        "VE_PRIVATE" => {
            ve.root = Some(PathBuf::from(&a.value));
            carried("root", &mut out.key_at);
        }
        "VE_ROOT" => report.add(
            file,
            a.line,
            key,
            Kind::NoEffect,
            "vznet mounts the root in the VE's own mount namespace, not on the host",
        ),
        "VE_LAYOUT" => {
            if a.value.starts_with("ploop") {
                report.add(file, a.line, "VE_LAYOUT=ploop", Kind::NotCarried, "root is a ploop image: vznet runs VEs from a folder (convert it with vzctl convert... or copy the mounted tree)");
            }
        }
        "CPUUNITS" => match a.value.parse::<u64>() {
            Ok(u) => {
                let w = (u / 10).clamp(1, 10000);
                ve.cpu_weight = Some(u32::try_from(w).unwrap_or(10000));
                carried("cpu_weight", &mut out.key_at);
                if u % 10 != 0 || u / 10 != w {
                    report.add(
                        file,
                        a.line,
                        key,
                        Kind::Changed,
                        format!("cpu_weight = {w} (CPUUNITS / 10 within 1..10000)"),
                    );
                }
            }
            Err(_) => bad(report, format!("{:?} is not a number", a.value)),
        },
        "PHYSPAGES" => {
            let limit = a.value.rsplit(':').next().unwrap_or_default();
            if matches!(limit, "unlimited" | "9223372036854775807" | "") {
                return;
            }
            let bytes = match limit.parse::<u64>() {
                Ok(pages) => pages
                    .checked_mul(4096)
                    .map(ByteSize)
                    .ok_or_else(|| format!("{pages} pages is beyond any memory size")),
                Err(_) => limit.parse::<ByteSize>(),
            };
            // TOML integers are i64: a larger limit is no limit in practice.
            let bytes = bytes.and_then(|b| {
                if b.0 > i64::MAX as u64 {
                    Err(format!("{limit:?} is beyond any memory size"))
                } else {
                    Ok(b)
                }
            });
            match bytes {
                Ok(b) => {
                    ve.memory_limit = Some(b);
                    carried("memory_limit", &mut out.key_at);
                }
                Err(why) => bad(report, why),
            }
        }
        k if HOUSEKEEPING.contains(&k) => {
            report.add(file, a.line, key, Kind::NoEffect, "vzctl's own bookkeeping")
        }
        k => lost(file, a, k, report),
    }
}

/// One NETIF entry: `ifname=eth0,mac=...,host_ifname=...,host_mac=...,bridge=...`.
fn netif(id: u32, spec: &str, file: &Path, line: u32, report: &mut Report) -> Option<Netif> {
    let mut n = Netif::default();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        let mac = |report: &mut Report| match v.parse() {
            Ok(m) => Some(m),
            Err(_) => {
                report.add(
                    file,
                    line,
                    format!("NETIF {k}={v}"),
                    Kind::NotCarried,
                    "not a MAC address",
                );
                None
            }
        };
        match k {
            "ifname" => n.name = v.to_string(),
            "mac" => n.mac = mac(report),
            "host_mac" => n.host_mac = mac(report),
            "host_ifname" => n.host_name = Some(v.to_string()).filter(|s| !s.is_empty()),
            "bridge" => n.bridge = Some(v.to_string()).filter(|s| !s.is_empty()),
            "mac_filter" if v == "on" || v == "yes" => {}
            "mac_filter" => report.add(file, line, format!("NETIF mac_filter={v}"), Kind::Changed, "vznet's anti-spoofing filters every port of the VE (anti_spoof = false turns it off for all)"),
            _ => report.add(file, line, format!("NETIF {k}"), Kind::NotCarried, "vznet's netif has no such field"),
        }
    }
    if n.name.is_empty() {
        return None;
    }
    // vzctl names a host end without host_ifname after the VE end's number
    // (eth1 -> vethID.1), vznet's default after the netif's position: write
    // vzctl's name so the host keeps the names it had.
    if n.host_name.is_none() {
        let digits: String = n
            .name
            .chars()
            .skip_while(|c| !c.is_ascii_digit())
            .take_while(char::is_ascii_digit)
            .collect();
        if !digits.is_empty() {
            n.host_name = Some(format!("veth{id}.{digits}"));
        }
    }
    Some(n)
}
