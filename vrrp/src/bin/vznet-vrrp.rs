//! `vznet-vrrp`: runs VRRP instances from command-line flags until SIGTERM or SIGINT,
//! then stops them gracefully (a Master sends priority 0 and drops its addresses).
//!
//! One instance per group of flags; `--and` starts the next group:
//!
//! ```text
//! vznet-vrrp --interface eth0 --vrid 51 --priority 150 --vip 192.0.2.100/24 \
//!        --and --interface eth0 --vrid 52 --version 3 --vip fd00::100/64
//! ```
//!
//! Logs go to stdout, one line per event; every state change is a line containing
//! `state changed` with `from=`, `to=` and `reason=` fields. `RUST_LOG` filters them
//! (default `info`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;
use vrrp::io::{Instance, InstanceSpec, NotifyHooks, Router, TrackedInterface};
use vrrp::{Centiseconds, InstanceConfig, V2Auth, V3Ipv4Checksum, Version, VirtualAddresses, Vrid};

/// What separates the flags of two instances.
const SEPARATOR: &str = "--and";

#[derive(Debug, Parser)]
#[command(
    name = "vznet-vrrp",
    about = "Run VRRP (v2/v3, IPv4/IPv6) virtual routers until SIGTERM or SIGINT.",
    after_help = "Several instances: separate their flags with `--and`. \
                  State changes are logged to stdout; RUST_LOG filters (default info)."
)]
pub(crate) struct InstanceArgs {
    /// Interface to run on.
    #[arg(long)]
    interface: String,
    /// Virtual Router Identifier, 1..=255.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..))]
    vrid: u8,
    /// Priority: 1..=254, or 255 for the address owner.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(1..))]
    priority: u8,
    /// Protocol version: 2 (RFC 3768, IPv4 only) or 3 (RFC 5798/9568).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(2..=3))]
    version: u8,
    /// Advertisement_Interval in milliseconds: v3 in steps of 10 ms up to 40950,
    /// v2 in whole seconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u32,
    /// A virtual address, with an optional prefix length (default /32 or /128).
    /// Repeat for more; all of one family.
    #[arg(long = "vip", required = true)]
    vips: Vec<String>,
    /// VRRPv3 over IPv4: whether the checksum covers the IPv4 pseudo-header
    /// (keepalived, FRR) or not (RFC 9568, Cisco, Juniper).
    #[arg(long, value_enum, default_value_t = Checksum::WithPseudoHeader)]
    checksum: Checksum,
    /// Do not take over from a lower-priority Master (Preempt_Mode false).
    #[arg(long)]
    no_preempt: bool,
    /// After startup, wait this long before preempting a lower-priority Master.
    #[arg(long, default_value_t = 0)]
    preempt_delay_ms: u64,
    /// Accept_Mode: a non-owner Master accepts traffic to the virtual addresses.
    /// (Recorded only: like keepalived without vrrp_strict, nothing is filtered.)
    #[arg(long)]
    accept: bool,
    /// Source of the adverts; default: the interface's first IPv4 address that is not
    /// a virtual address, or its IPv6 link-local address.
    #[arg(long)]
    primary_address: Option<IpAddr>,
    /// Send adverts to this peer instead of the multicast group, and accept adverts
    /// only from peers. Repeat for more.
    #[arg(long = "unicast-peer")]
    unicast_peers: Vec<IpAddr>,
    /// VRRPv2 simple password (RFC 2338 auth type 1, keepalived's `auth_type PASS`).
    #[arg(long)]
    password: Option<String>,
    /// Second round of gratuitous ARP / unsolicited NA after becoming Master, in
    /// milliseconds; 0: none.
    #[arg(long, default_value_t = 2000)]
    gratuitous_repeat_ms: u64,
    /// Name in logs (default: vridN@INTERFACE).
    #[arg(long)]
    name: Option<String>,
    /// Track an interface: `IF` (down: Fault state, no adverts, no VIPs) or
    /// `IF:WEIGHT` (keepalived's rule: a negative weight is added to the priority while
    /// IF is down, a positive one while it is up). Repeat for more.
    #[arg(long = "track")]
    track: Vec<String>,
    /// Run on becoming Master: a program and its arguments, split on whitespace (no
    /// shell, no quoting). The state is in the environment (VRRP_STATE, VRRP_INSTANCE,
    /// VRRP_VRID, ...).
    #[arg(long)]
    notify_master: Option<String>,
    /// Run on becoming Backup (as --notify-master).
    #[arg(long)]
    notify_backup: Option<String>,
    /// Run on entering Fault (as --notify-master).
    #[arg(long)]
    notify_fault: Option<String>,
    /// Run on every state change, with keepalived's arguments appended: INSTANCE,
    /// the name, the state, the priority.
    #[arg(long)]
    notify: Option<String>,
    /// A notify hook still running after this long is killed.
    #[arg(long, default_value_t = 10_000)]
    notify_timeout_ms: u64,
    /// Put the virtual addresses on a macvlan with the virtual router MAC
    /// 00:00:5e:00:01:VRID (IPv6: 00:00:5e:00:02:VRID), named vrVRID.IFINDEX.
    #[arg(long)]
    use_vmac: bool,
}

/// `IF` or `IF:WEIGHT`.
fn parse_track(text: &str) -> Result<TrackedInterface> {
    let (name, weight) = match text.split_once(':') {
        Some((n, w)) => (
            n,
            w.parse::<i16>()
                .ok()
                .filter(|w| (-254..=254).contains(w))
                .with_context(|| format!("--track {text:?}: the weight must be -254..=254"))?,
        ),
        None => (text, 0),
    };
    if name.is_empty() {
        bail!("--track {text:?}: no interface name");
    }
    Ok(TrackedInterface {
        name: name.to_owned(),
        weight,
    })
}

fn argv(text: &Option<String>) -> Vec<String> {
    text.as_deref()
        .map(|t| t.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Checksum {
    WithPseudoHeader,
    WithoutPseudoHeader,
}

impl InstanceArgs {
    fn spec(&self) -> Result<InstanceSpec> {
        let vrid = Vrid::new(self.vrid).context("VRID 0 is reserved")?;
        let version = match self.version {
            2 => Version::V2,
            _ => Version::V3,
        };
        let mut prefix_lengths = BTreeMap::new();
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        for vip in &self.vips {
            let (address, prefix_len) = parse_vip(vip)?;
            if let Some(len) = prefix_len {
                prefix_lengths.insert(address, len);
            }
            match address {
                IpAddr::V4(a) => v4.push(a),
                IpAddr::V6(a) => v6.push(a),
            }
        }
        let (virtual_addresses, unspecified) = match (v4.is_empty(), v6.is_empty()) {
            (false, true) => (VirtualAddresses::V4(v4), IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            (true, false) => (VirtualAddresses::V6(v6), IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            _ => bail!("the virtual addresses of one instance must be all IPv4 or all IPv6"),
        };
        let interval = self.interval_ms / 10;
        if interval * 10 != self.interval_ms {
            bail!("--interval-ms {} is not a multiple of 10", self.interval_ms);
        }
        let mut config = InstanceConfig::new(
            vrid,
            version,
            self.primary_address.unwrap_or(unspecified),
            virtual_addresses,
        );
        config.priority = self.priority;
        config.advertisement_interval =
            Centiseconds(u16::try_from(interval).context("--interval-ms is too large for VRRP")?);
        config.preempt_mode = !self.no_preempt;
        config.preempt_delay = Duration::from_millis(self.preempt_delay_ms);
        config.accept_mode = self.accept;
        config.v3_ipv4_checksum = match self.checksum {
            Checksum::WithPseudoHeader => V3Ipv4Checksum::WithPseudoHeader,
            Checksum::WithoutPseudoHeader => V3Ipv4Checksum::WithoutPseudoHeader,
        };
        if let Some(password) = &self.password {
            config.auth = V2Auth::simple_password(password.as_bytes())?;
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("vrid{}@{}", self.vrid, self.interface));
        let mut spec = InstanceSpec::new(name, self.interface.clone(), config);
        spec.prefix_lengths = prefix_lengths;
        spec.unicast_peers = self.unicast_peers.clone();
        spec.gratuitous_repeat = (self.gratuitous_repeat_ms > 0)
            .then(|| Duration::from_millis(self.gratuitous_repeat_ms));
        spec.track = self
            .track
            .iter()
            .map(|t| parse_track(t))
            .collect::<Result<_>>()?;
        spec.notify = NotifyHooks {
            master: argv(&self.notify_master),
            backup: argv(&self.notify_backup),
            fault: argv(&self.notify_fault),
            any: argv(&self.notify),
            timeout: Duration::from_millis(self.notify_timeout_ms),
        };
        spec.use_vmac = self.use_vmac;
        Ok(spec)
    }
}

/// `ADDR` or `ADDR/LEN`.
fn parse_vip(text: &str) -> Result<(IpAddr, Option<u8>)> {
    let (address, len) = match text.split_once('/') {
        Some((a, l)) => (
            a,
            Some(
                l.parse::<u8>()
                    .with_context(|| format!("bad prefix length in {text:?}"))?,
            ),
        ),
        None => (text, None),
    };
    let address = address
        .parse::<IpAddr>()
        .with_context(|| format!("bad virtual address {text:?}"))?;
    Ok((address, len))
}

/// Splits the arguments (program name excluded) into one group per instance.
fn instance_groups(args: Vec<String>) -> Vec<Vec<String>> {
    args.split(|a| a == SEPARATOR)
        .map(<[String]>::to_vec)
        .collect()
}

fn main() -> ExitCode {
    let groups = instance_groups(std::env::args().skip(1).collect());
    let mut specs = Vec::new();
    for group in groups {
        let args = match InstanceArgs::try_parse_from(
            std::iter::once("vznet-vrrp".to_owned()).chain(group),
        ) {
            Ok(a) => a,
            Err(e) => e.exit(),
        };
        match args.spec() {
            Ok(s) => specs.push(s),
            Err(e) => {
                eprintln!("vznet-vrrp: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vznet-vrrp: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(specs)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vznet-vrrp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(specs: Vec<InstanceSpec>) -> Result<()> {
    // One socket per interface and family, one netlink connection, for all instances.
    let router = Router::new().context("opening netlink")?;
    // Every instance is set up before any starts: a typo fails the whole command.
    let mut instances = Vec::new();
    for spec in specs {
        let name = spec.name.clone();
        instances.push(
            Instance::with_router(&router, spec)
                .await
                .with_context(|| format!("setting up instance {name}"))?,
        );
    }
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for instance in instances {
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(instance.run(async move {
            // An error means the sender is gone: stop too.
            let _ = stop.wait_for(|stop| *stop).await;
        })));
    }
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
    stop_tx.send_replace(true);
    for task in tasks {
        let status = task.await.context("instance task")?;
        let drops: Vec<String> = status
            .drops
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason}:{n}"))
            .collect();
        tracing::info!(
            instance = %status.name,
            adverts_sent = status.io.adverts_sent,
            adverts_received = status.machine.adverts_received,
            dropped = status.drops.total(),
            drops = %if drops.is_empty() { "none".to_owned() } else { drops.join(",") },
            send_errors = status.io.send_errors,
            "final counters"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(args: &[&str]) -> Result<InstanceSpec> {
        let argv = std::iter::once("vznet-vrrp").chain(args.iter().copied());
        InstanceArgs::try_parse_from(argv)?.spec()
    }

    #[test]
    fn groups_split_on_and() {
        let args = ["--vrid", "1", "--and", "--vrid", "2"]
            .map(String::from)
            .to_vec();
        let groups = instance_groups(args);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1], ["--vrid", "2"]);
    }

    #[test]
    fn vips_with_and_without_prefix() -> Result<()> {
        assert_eq!(parse_vip("192.0.2.1/24")?, ("192.0.2.1".parse()?, Some(24)));
        assert_eq!(parse_vip("fd00::1")?, ("fd00::1".parse()?, None));
        assert!(parse_vip("192.0.2.1/x").is_err());
        assert!(parse_vip("nonsense").is_err());
        Ok(())
    }

    #[test]
    fn flags_make_a_spec() -> Result<()> {
        let s = spec(&[
            "--interface",
            "eth0",
            "--vrid",
            "51",
            "--priority",
            "150",
            "--interval-ms",
            "100",
            "--vip",
            "192.0.2.100/24",
            "--vip",
            "192.0.2.101",
            "--no-preempt",
            "--checksum",
            "without-pseudo-header",
        ])?;
        assert_eq!(s.name, "vrid51@eth0");
        assert_eq!(s.config.priority, 150);
        assert_eq!(s.config.advertisement_interval, Centiseconds(10));
        assert!(!s.config.preempt_mode);
        assert_eq!(
            s.config.v3_ipv4_checksum,
            V3Ipv4Checksum::WithoutPseudoHeader
        );
        assert!(s.config.primary_address.is_unspecified());
        assert_eq!(s.prefix_lengths.len(), 1);
        assert_eq!(s.config.virtual_addresses.len(), 2);
        assert!(s.track.is_empty() && s.notify.is_empty() && !s.use_vmac);

        let s = spec(&[
            "--interface",
            "eth0",
            "--vrid",
            "51",
            "--vip",
            "192.0.2.100",
            "--track",
            "eth1",
            "--track",
            "eth2:-60",
            "--notify-master",
            "/usr/bin/logger -t vrrp",
            "--notify",
            "/bin/true",
            "--notify-timeout-ms",
            "500",
            "--use-vmac",
        ])?;
        assert_eq!(
            s.track,
            [
                TrackedInterface {
                    name: "eth1".into(),
                    weight: 0
                },
                TrackedInterface {
                    name: "eth2".into(),
                    weight: -60
                }
            ]
        );
        assert_eq!(s.notify.master, ["/usr/bin/logger", "-t", "vrrp"]);
        assert_eq!(s.notify.any, ["/bin/true"]);
        assert!(s.notify.backup.is_empty());
        assert_eq!(s.notify.timeout, Duration::from_millis(500));
        assert!(s.use_vmac);
        Ok(())
    }

    #[test]
    fn bad_flags_are_refused() {
        let base = ["--interface", "eth0", "--vrid", "51"];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            spec(&a)
        };
        assert!(with(&["--vip", "192.0.2.1", "--vip", "fd00::1"]).is_err());
        assert!(with(&["--vip", "192.0.2.1", "--interval-ms", "105"]).is_err());
        assert!(with(&["--vip", "192.0.2.1", "--vrid", "0"]).is_err());
        assert!(with(&["--vip", "192.0.2.1", "--version", "4"]).is_err());
        assert!(with(&["--vip", "192.0.2.1", "--password", "far too long"]).is_err());
        assert!(with(&[]).is_err(), "a VIP is required");
        assert!(with(&["--vip", "192.0.2.1", "--track", "eth1:300"]).is_err());
        assert!(with(&["--vip", "192.0.2.1", "--track", ":10"]).is_err());
    }
}
