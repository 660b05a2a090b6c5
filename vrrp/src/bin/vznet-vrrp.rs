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
//! Or everything from a file: `vznet-vrrp --config vrrp.toml`, with `[[vrrp]]`,
//! `[[vrrp_script]]` and `[[vrrp_sync_group]]` tables as in vznet's host.toml (the same
//! settings types, `vrrp::settings`, and the same checks).
//!
//! Logs go to stdout, one line per event; every state change is a line containing
//! `state changed` with `from=`, `to=` and `reason=` fields. `RUST_LOG` filters them
//! (default `info`).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;
use vrrp::io::{Router, RunningUnit, Unit};
use vrrp::settings::{Instance, Settings, TrackInterface, VirtualIp};
use vrrp::{V3Ipv4Checksum, Version};

/// What separates the flags of two instances.
const SEPARATOR: &str = "--and";
/// Reads the settings from a file instead of flags.
const CONFIG: &str = "--config";

#[derive(Debug, Parser)]
#[command(
    name = "vznet-vrrp",
    about = "Run VRRP (v2/v3, IPv4/IPv6) virtual routers until SIGTERM or SIGINT.",
    override_usage = "vznet-vrrp --interface IF --vrid N --vip ADDR[/LEN] [OPTIONS] [--and --interface ...]\n       vznet-vrrp --config FILE",
    after_help = "Several instances: separate their flags with `--and`. Everything else \
                  (vrrp_script, track_file, track_process, sync groups, virtual routes \
                  and rules, per-address interfaces): `vznet-vrrp --config FILE`, a TOML \
                  file of [[vrrp]], [[vrrp_script]] and [[vrrp_sync_group]] tables with \
                  the keys of vznet's host.toml. State changes are logged to stdout; \
                  RUST_LOG filters (default info)."
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
    /// Accept_Mode on (the default unless --strict): a non-owner Master accepts
    /// traffic to the virtual addresses.
    #[arg(long, conflicts_with = "no_accept")]
    accept: bool,
    /// Accept_Mode off: a non-owner Master drops traffic to the virtual addresses
    /// (nftables), ARP, Neighbor Discovery and VRRP excepted (RFC 5798 6.4.3).
    #[arg(long)]
    no_accept: bool,
    /// RFC-strict mode (keepalived's strict_mode): no unicast, no password, no
    /// preempt delay, Accept_Mode off by default.
    #[arg(long)]
    strict: bool,
    /// Source of the adverts; default: the interface's first IPv4 address that is not
    /// a virtual address, or its IPv6 link-local address.
    #[arg(long, alias = "primary-address")]
    unicast_src_ip: Option<IpAddr>,
    /// Send adverts to this peer instead of the multicast group, and accept adverts
    /// only from peers. Repeat for more.
    #[arg(long = "unicast-peer")]
    unicast_peers: Vec<IpAddr>,
    /// VRRPv2 simple password (RFC 2338 auth type 1, keepalived's `auth_type PASS`).
    #[arg(long)]
    password: Option<String>,
    /// Second round of gratuitous ARP / unsolicited NA after becoming Master, in
    /// milliseconds; 0: none.
    #[arg(long, alias = "gratuitous-repeat-ms", default_value_t = 5000)]
    garp_master_delay_ms: u64,
    /// Messages per address in each of those rounds.
    #[arg(long, default_value_t = 5)]
    garp_master_repeat: u32,
    /// Announce again this often while Master, in milliseconds; 0: never.
    #[arg(long, default_value_t = 0)]
    garp_master_refresh_ms: u64,
    /// Messages per address in each refresh.
    #[arg(long, default_value_t = 1)]
    garp_master_refresh_repeat: u32,
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
    /// Run when the instance stops (as --notify-master).
    #[arg(long)]
    notify_stop: Option<String>,
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
fn parse_track(text: &str) -> Result<TrackInterface> {
    let (name, weight) = match text.split_once(':') {
        Some((n, w)) => (
            n,
            w.parse::<i32>()
                .with_context(|| format!("--track {text:?}: the weight must be a number"))?,
        ),
        None => (text, 0),
    };
    if name.is_empty() {
        bail!("--track {text:?}: no interface name");
    }
    Ok(TrackInterface {
        weight,
        ..TrackInterface::new(name)
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
    /// The instance these flags describe, in the settings' one definition.
    fn instance(&self) -> Result<Instance> {
        let vips = self
            .vips
            .iter()
            .map(|v| parse_vip(v).map(VirtualIp::new))
            .collect::<Result<Vec<_>>>()?;
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("vrid{}@{}", self.vrid, self.interface));
        let mut i = Instance::new(name, self.interface.clone(), self.vrid, vips);
        i.priority = self.priority;
        i.version = Version::try_from(self.version).context("--version: use 2 or 3")?;
        i.advert_interval_ms = self.interval_ms;
        i.checksum = match self.checksum {
            Checksum::WithPseudoHeader => V3Ipv4Checksum::WithPseudoHeader,
            Checksum::WithoutPseudoHeader => V3Ipv4Checksum::WithoutPseudoHeader,
        };
        i.preempt = !self.no_preempt;
        i.preempt_delay_ms = self.preempt_delay_ms;
        i.accept = match (self.accept, self.no_accept) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        };
        i.strict = self.strict;
        i.unicast_src_ip = self.unicast_src_ip;
        i.unicast_peers = self.unicast_peers.clone();
        i.password = self.password.clone();
        i.garp_master_delay_ms = self.garp_master_delay_ms;
        i.garp_master_repeat = self.garp_master_repeat;
        i.garp_master_refresh_ms = self.garp_master_refresh_ms;
        i.garp_master_refresh_repeat = self.garp_master_refresh_repeat;
        i.track = self
            .track
            .iter()
            .map(|t| parse_track(t))
            .collect::<Result<_>>()?;
        i.notify_master = argv(&self.notify_master);
        i.notify_backup = argv(&self.notify_backup);
        i.notify_fault = argv(&self.notify_fault);
        i.notify_stop = argv(&self.notify_stop);
        i.notify = argv(&self.notify);
        i.notify_timeout_ms = self.notify_timeout_ms;
        i.use_vmac = self.use_vmac;
        Ok(i)
    }
}

/// `ADDR` or `ADDR/LEN`.
fn parse_vip(text: &str) -> Result<ipnet::IpNet> {
    if let Ok(net) = text.parse::<ipnet::IpNet>() {
        return Ok(net);
    }
    let address = text
        .parse::<IpAddr>()
        .with_context(|| format!("bad virtual address {text:?}"))?;
    Ok(ipnet::IpNet::from(address))
}

/// Splits the arguments (program name excluded) into one group per instance.
fn instance_groups(args: Vec<String>) -> Vec<Vec<String>> {
    args.split(|a| a == SEPARATOR)
        .map(<[String]>::to_vec)
        .collect()
}

/// The settings of the command line: `--config FILE`, or groups of flags.
fn settings(args: Vec<String>) -> Result<(Settings, Option<PathBuf>)> {
    if args.first().is_some_and(|a| a == CONFIG) {
        let [_, file] = args.as_slice() else {
            bail!("--config takes one file and nothing else");
        };
        let file = PathBuf::from(file);
        return Ok((read_config(&file)?, Some(file)));
    }
    let mut settings = Settings::default();
    for group in instance_groups(args) {
        let args = match InstanceArgs::try_parse_from(
            std::iter::once("vznet-vrrp".to_owned()).chain(group),
        ) {
            Ok(a) => a,
            Err(e) => e.exit(),
        };
        settings.vrrp.push(args.instance()?);
    }
    Ok((settings, None))
}

fn read_config(file: &Path) -> Result<Settings> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    toml::from_str(&text).with_context(|| format!("{}", file.display()))
}

fn main() -> ExitCode {
    let (settings, file) = match settings(std::env::args().skip(1).collect()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vznet-vrrp: {e:#}");
            return ExitCode::from(2);
        }
    };
    let errors = settings.validate();
    if !errors.is_empty() {
        let prefix = file
            .map(|f| format!("{}: ", f.display()))
            .unwrap_or_default();
        for e in errors {
            eprintln!("vznet-vrrp: {prefix}{e}");
        }
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .init();
    // Adverts are timers: this thread runs ahead of the host's other work.
    vrrp::io::timer_thread::raise_priority("vznet-vrrp");
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
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vznet-vrrp: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(settings: Settings) -> Result<()> {
    // One socket per interface and family, one netlink connection, for all instances.
    let router = Router::new().context("opening netlink")?;
    // Every unit is set up before any runs: a typo fails the whole command.
    let mut running = Vec::new();
    for unit in Unit::all(&settings) {
        match RunningUnit::start(&router, &settings, &unit).await {
            Ok(r) => running.push(r),
            Err(e) => {
                for r in running {
                    r.stop().await;
                }
                return Err(e).with_context(|| format!("setting up {unit:?}"));
            }
        }
    }
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping"),
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
    }
    let stops = running.into_iter().map(RunningUnit::stop);
    for status in futures::future::join_all(stops).await.into_iter().flatten() {
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

    fn instance(args: &[&str]) -> Result<Instance> {
        let argv = std::iter::once("vznet-vrrp").chain(args.iter().copied());
        InstanceArgs::try_parse_from(argv)?.instance()
    }

    fn settings_of(args: &[&str]) -> Result<Settings> {
        Ok(Settings {
            vrrp: vec![instance(args)?],
            ..Settings::default()
        })
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
        assert_eq!(parse_vip("192.0.2.1/24")?, "192.0.2.1/24".parse()?);
        assert_eq!(parse_vip("fd00::1")?, "fd00::1/128".parse()?);
        assert!(parse_vip("192.0.2.1/x").is_err());
        assert!(parse_vip("nonsense").is_err());
        Ok(())
    }

    #[test]
    fn flags_make_an_instance() -> Result<()> {
        let i = instance(&[
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
        assert_eq!(i.name, "vrid51@eth0");
        assert_eq!(i.priority, 150);
        assert_eq!(i.advert_interval_ms, 100);
        assert!(!i.preempt);
        assert_eq!(i.checksum, V3Ipv4Checksum::WithoutPseudoHeader);
        assert_eq!(i.unicast_src_ip, None);
        assert_eq!(i.virtual_ips.len(), 2);
        assert_eq!(i.virtual_ips[1].address.prefix_len(), 32);
        assert!(i.track.is_empty() && i.notify.is_empty() && !i.use_vmac);
        assert_eq!(i.accept, None);
        assert_eq!((i.garp_master_delay_ms, i.garp_master_repeat), (5000, 5));

        let i = instance(&[
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
            "--notify-stop",
            "/bin/true",
            "--notify-timeout-ms",
            "500",
            "--use-vmac",
            "--no-accept",
            "--unicast-src-ip",
            "192.0.2.11",
            "--gratuitous-repeat-ms",
            "0",
        ])?;
        assert_eq!(
            i.track,
            [
                TrackInterface::new("eth1"),
                TrackInterface {
                    weight: -60,
                    ..TrackInterface::new("eth2")
                }
            ]
        );
        assert_eq!(i.notify_master, ["/usr/bin/logger", "-t", "vrrp"]);
        assert_eq!(i.notify_stop, ["/bin/true"]);
        assert!(i.notify_backup.is_empty());
        assert_eq!(i.notify_timeout_ms, 500);
        assert!(i.use_vmac);
        assert_eq!(i.accept, Some(false));
        assert_eq!(i.unicast_src_ip, Some("192.0.2.11".parse()?));
        assert_eq!(i.garp_master_delay_ms, 0);
        Ok(())
    }

    #[test]
    fn bad_flags_are_refused_by_the_parser_or_the_settings_checks() {
        let base = ["--interface", "eth0", "--vrid", "51"];
        let with = |extra: &[&str]| {
            let mut a = base.to_vec();
            a.extend_from_slice(extra);
            settings_of(&a).map(|s| s.validate())
        };
        let refused = |extra: &[&str]| match with(extra) {
            Err(_) => true,
            Ok(errors) => !errors.is_empty(),
        };
        assert!(refused(&["--vip", "192.0.2.1", "--vip", "fd00::1"]));
        assert!(refused(&["--vip", "192.0.2.1", "--interval-ms", "105"]));
        assert!(refused(&["--vip", "192.0.2.1", "--vrid", "0"]));
        assert!(refused(&["--vip", "192.0.2.1", "--version", "4"]));
        assert!(refused(&[
            "--vip",
            "192.0.2.1",
            "--version",
            "2",
            "--password",
            "far too long"
        ]));
        assert!(refused(&[]), "a VIP is required");
        assert!(refused(&["--vip", "192.0.2.1", "--track", "eth1:300"]));
        assert!(refused(&["--vip", "192.0.2.1", "--track", ":10"]));
        assert!(refused(&[
            "--vip",
            "192.0.2.1",
            "--strict",
            "--unicast-peer",
            "192.0.2.2"
        ]));
        assert!(!refused(&["--vip", "192.0.2.1"]));
    }

    #[test]
    fn config_files_hold_the_same_settings() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("vrrp.toml");
        std::fs::write(
            &file,
            r#"
[[vrrp]]
name = "VI_1"
interface = "eth0"
vrid = 51
virtual_ips = ["192.0.2.100/24"]
track_script = ["chk"]

[[vrrp_script]]
name = "chk"
script = "pidof haproxy"
"#,
        )?;
        let (s, f) = settings(vec!["--config".into(), file.display().to_string()])?;
        assert_eq!(f.as_deref(), Some(file.as_path()));
        assert!(s.validate().is_empty());
        assert_eq!(s.vrrp[0].track_script[0].script, "chk");
        std::fs::write(&file, "[[vrrp]]\nname = 1\n")?;
        let e = settings(vec!["--config".into(), file.display().to_string()]);
        assert!(e.is_err());
        Ok(())
    }
}
