//! `lab bench apply --ves N`: wire N VEs with vznet, with the seed's shell way
//! (one `ip`/`echo` per step) and with `ip -batch`, each on fresh namespaces,
//! and print the times side by side.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::Subcommand;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Wire N VEs (veth into its netns, bridge port, up, forwarding/proxy_arp,
    /// address and default route inside) three ways and compare.
    Apply {
        /// Number of VEs.
        #[arg(long, default_value_t = 1000)]
        ves: u32,
        /// Turn IPv6 off in every namespace first (for all three methods): the
        /// VEs' IPv6 autoconfiguration (DAD, MLD, router solicitations) floods
        /// the bridge to every port, O(N^2) kernel work that competes with
        /// whichever method is running.
        #[arg(long)]
        no_ipv6: bool,
        /// Run the shell and `ip -batch` ways with the seed's exact commands. By
        /// default they also do what vznet does beyond them on each host end:
        /// IPv6 address generation off (`ip link set vethX addrgenmode none up`,
        /// the same command count) and `neigh.vethX.proxy_delay = 0` beside
        /// proxy_arp (a shell `echo`), so all three ask the kernel for the same work.
        #[arg(long)]
        seed_commands: bool,
    },
    /// Drift repair latency of vznetd (median, p99), and its idle RSS and CPU.
    Drift {
        /// Number of trials.
        #[arg(long, default_value_t = 100)]
        trials: usize,
    },
    /// VE runtime: start and wire N busybox VEs on a bridge with one call, one
    /// more alone, stop them; times per VE and total, peak RSS.
    Ve {
        /// Number of VEs.
        #[arg(long, default_value_t = 100)]
        count: u32,
    },
    /// VRRP failover time (median, p99) of vznet-vrrp and keepalived side by side:
    /// SIGKILL the Master, time until the VIP answers a client again; vznet-vrrp's
    /// graceful handover time, its CPU at 10 ms adverts, and CPU/RSS of many instances.
    Vrrp {
        /// Number of trials per implementation and advert interval.
        #[arg(long, default_value_t = 20)]
        trials: usize,
        /// Instances (VRIDs, 250 per interface) for the CPU/RSS measurement at 1 s;
        /// 0 skips it.
        #[arg(long, default_value_t = 1000)]
        instances: usize,
        /// Also measure the instance inside vznetd (`--via vznetd`): takeover and
        /// graceful handover rows, and the busy master.
        #[arg(long, value_parser = ["vznetd"])]
        via: Option<String>,
        /// VEs the busy master repairs drift on (with `--via vznetd`; 0 skips it).
        #[arg(long, default_value_t = 1000)]
        busy_ves: u32,
    },
    /// A fleet run from etcd: time from `fleet push` of a one-VE change to
    /// applied on the host (median, p99), and of a change to every host at
    /// once; agent RSS with etcd, beside one run from a folder.
    Fleet {
        /// Hosts (each a namespace running vznetd, with one routed VE).
        #[arg(long, default_value_t = 20)]
        hosts: usize,
        /// One-host changes timed (round robin over the hosts).
        #[arg(long, default_value_t = 100)]
        trials: usize,
        /// All-host changes timed.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
    },
    /// Load balancer: commit latency of a one-backend change at 10, 100 and
    /// 1000 backends, new connections/s through the VIP vs straight to the
    /// backend, and health-check reaction time.
    Lb {
        /// One-backend changes (each down then up) timed per backend count.
        #[arg(long, default_value_t = 100)]
        commits: usize,
        /// Seconds per connection-rate run (four runs).
        #[arg(long, default_value_t = 3)]
        rate_seconds: u64,
        /// Health reaction trials.
        #[arg(long, default_value_t = 20)]
        health_trials: usize,
    },
}

/// Runs a benchmark.
pub fn run(what: Bench) -> Result<()> {
    match what {
        Bench::Apply {
            ves,
            no_ipv6,
            seed_commands,
        } => apply(ves, no_ipv6, !seed_commands),
        Bench::Drift { trials } => super::drift::run(trials),
        Bench::Vrrp {
            trials,
            instances,
            via,
            busy_ves,
        } => super::vrrp_bench::run(trials, instances, via.is_some(), busy_ves),
        Bench::Ve { count } => super::ve_bench::run(count),
        Bench::Fleet {
            hosts,
            trials,
            rounds,
        } => super::fleet_bench::run(super::fleet_bench::Options {
            hosts,
            trials,
            rounds,
        }),
        Bench::Lb {
            commits,
            rate_seconds,
            health_trials,
        } => super::lb_bench::run(super::lb_bench::Options {
            commits,
            rate_seconds,
            health_trials,
        }),
    }
}

/// Namespaces made for one round; deleted on drop.
struct Namespaces {
    host: String,
    ves: Vec<String>,
}

impl Namespaces {
    fn create(tag: &str, n: u32, no_ipv6: bool) -> Result<Namespaces> {
        let prefix = format!("vzb{}{tag}", std::process::id() % 100_000);
        let ns = Namespaces {
            host: format!("{prefix}-h"),
            ves: (0..n).map(|i| format!("{prefix}-{i}")).collect(),
        };
        let mut batch = format!("netns add {}\n", ns.host);
        for v in &ns.ves {
            let _ = writeln!(batch, "netns add {v}");
        }
        ip_batch(None, &batch).context("creating namespaces")?;
        if no_ipv6 {
            let all: Vec<String> = std::iter::once(ns.host.clone())
                .chain(ns.ves.iter().cloned())
                .collect();
            disable_ipv6(&all)?;
        }
        settle()?;
        Ok(ns)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let mut batch = format!("netns del {}\n", self.host);
        for v in &self.ves {
            let _ = writeln!(batch, "netns del {v}");
        }
        if let Err(e) = ip_batch(None, &batch) {
            eprintln!("bench: deleting namespaces: {e:#}");
        }
    }
}

/// Sets disable_ipv6 for all and default inside each namespace, from one thread
/// that enters them in turn (/proc/sys/net resolves in the opener's netns).
fn disable_ipv6(names: &[String]) -> Result<()> {
    let names = names.to_vec();
    std::thread::spawn(move || -> Result<()> {
        use std::os::fd::AsFd;
        for n in &names {
            let f = std::fs::File::open(format!("/run/netns/{n}"))?;
            nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            for which in ["all", "default"] {
                std::fs::write(format!("/proc/sys/net/ipv6/conf/{which}/disable_ipv6"), "1")?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("disable_ipv6 thread panicked"))?
}

/// Waits until the kernel is idle: netns teardown runs asynchronously and holds
/// RTNL for seconds, and new VEs' IPv6 DAD/MLD work floods the bridge for a while;
/// a round timed during either measures the previous round. Idle means 20 RTNL
/// requests (a no-op link change in a scratch netns) take under 20 ms, twice in a
/// row. (Link deletion would wait for RCU grace periods, which stretch whenever
/// softirqs are busy, so it is not a fair probe.)
pub(super) fn settle() -> Result<()> {
    let ns = format!("vzb{}-idle", std::process::id() % 100_000);
    ip_batch(None, &format!("netns add {ns}\n"))?;
    let mut batch = String::new();
    for _ in 0..20 {
        batch.push_str("link set dev lo mtu 65536\n");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    while quiet < 2 && Instant::now() < deadline {
        let t = Instant::now();
        ip_batch(Some(&ns), &batch)?;
        if t.elapsed() < Duration::from_millis(20) {
            quiet += 1;
        } else {
            quiet = 0;
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    ip_batch(None, &format!("netns del {ns}\n"))?;
    Ok(())
}

fn ip_batch(ns: Option<&str>, batch: &str) -> Result<()> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), batch)?;
    let mut cmd = Command::new("ip");
    if let Some(ns) = ns {
        cmd.args(["-n", ns]);
    }
    let out = cmd.arg("-batch").arg(file.path()).output()?;
    ensure!(
        out.status.success(),
        "ip -batch failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn ve_addr(i: u32) -> String {
    format!("10.200.{}.{}", (i + 2) / 256, (i + 2) % 256)
}

fn host_ifname(i: u32) -> String {
    format!("veth{}.0", 1000 + i)
}

/// What the shell ways add to bringing a host end up: vznet's IPv6 setting
/// for host ends (see netcfg's kernel::ipv6), or nothing (the seed's commands).
fn host_end_up(like_vznet: bool) -> &'static str {
    if like_vznet {
        "addrgenmode none up"
    } else {
        "up"
    }
}

/// The sysctl vznet sets beside proxy_arp (proxied ARP replies not held back),
/// as a shell line for host end `h`; nothing for the seed's commands.
fn proxy_delay_line(h: &str, like_vznet: bool) -> String {
    if like_vznet {
        format!("echo 0 > /proc/sys/net/ipv4/neigh/{h}/proxy_delay\n")
    } else {
        String::new()
    }
}

/// The seed's way: one command per step, as an admin's script would.
fn shell_script(ns: &Namespaces, like_vznet: bool) -> String {
    let mut s = String::from("set -e\nip link add br0 type bridge\nip addr add 10.200.0.1/16 dev br0\nip link set br0 up\n");
    for (i, ve) in ns.ves.iter().enumerate() {
        let i = i as u32;
        let h = host_ifname(i);
        let _ = write!(
            s,
            "ip link add {h} type veth peer name eth0 netns {ve}\n\
             ip link set {h} master br0\n\
             ip link set {h} {up}\n\
             echo 1 > /proc/sys/net/ipv4/conf/{h}/forwarding\n\
             echo 1 > /proc/sys/net/ipv4/conf/{h}/proxy_arp\n\
             {delay}\
             ip -n {ve} link set eth0 up\n\
             ip -n {ve} addr add {a}/16 dev eth0\n\
             ip -n {ve} route add default via 10.200.0.1\n",
            a = ve_addr(i),
            up = host_end_up(like_vznet),
            delay = proxy_delay_line(&h, like_vznet)
        );
    }
    s
}

fn run_shell(ns: &Namespaces, like_vznet: bool) -> Result<Duration> {
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), shell_script(ns, like_vznet))?;
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.host, "sh"])
        .arg(file.path())
        .output()?;
    let d = t.elapsed();
    ensure!(
        out.status.success(),
        "shell way failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(d)
}

/// `ip -batch`: one batch for the host side, one `ip -n VE -batch` per VE (an
/// address inside a netns needs a socket there), sysctls in one shell.
fn run_batch(ns: &Namespaces, like_vznet: bool) -> Result<Duration> {
    let mut host =
        String::from("link add br0 type bridge\naddr add 10.200.0.1/16 dev br0\nlink set br0 up\n");
    let mut sysctls = String::new();
    let mut files = Vec::new();
    for (i, ve) in ns.ves.iter().enumerate() {
        let i = i as u32;
        let h = host_ifname(i);
        let _ = writeln!(
            host,
            "link add {h} type veth peer name eth0 netns {ve}\nlink set {h} master br0 {}",
            host_end_up(like_vznet)
        );
        let _ = writeln!(sysctls, "echo 1 > /proc/sys/net/ipv4/conf/{h}/forwarding\necho 1 > /proc/sys/net/ipv4/conf/{h}/proxy_arp");
        sysctls.push_str(&proxy_delay_line(&h, like_vznet));
        let f = tempfile::NamedTempFile::new()?;
        std::fs::write(
            f.path(),
            format!(
                "link set eth0 up\naddr add {}/16 dev eth0\nroute add default via 10.200.0.1\n",
                ve_addr(i)
            ),
        )?;
        files.push(f);
    }
    let hf = tempfile::NamedTempFile::new()?;
    std::fs::write(hf.path(), &host)?;
    let sf = tempfile::NamedTempFile::new()?;
    std::fs::write(sf.path(), &sysctls)?;
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["-n", &ns.host, "-batch"])
        .arg(hf.path())
        .output()?;
    ensure!(
        out.status.success(),
        "ip -batch (host) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.host, "sh"])
        .arg(sf.path())
        .output()?;
    ensure!(
        out.status.success(),
        "sysctls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (ve, f) in ns.ves.iter().zip(&files) {
        let out = Command::new("ip")
            .args(["-n", ve, "-batch"])
            .arg(f.path())
            .output()?;
        ensure!(
            out.status.success(),
            "ip -batch in {ve} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(t.elapsed())
}

fn write_config(ns: &Namespaces, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("ve"))?;
    std::fs::write(
        dir.join("host.toml"),
        "[[bridge]]\nname = \"br0\"\naddresses = [\"10.200.0.1/16\"]\n",
    )?;
    for (i, ve) in ns.ves.iter().enumerate() {
        let i = i as u32;
        let id = 1000 + i;
        std::fs::write(
            dir.join(format!("ve/{id}.toml")),
            format!(
                "id = {id}\nnetns = \"{ve}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"{}/16\"]\ngateway = \"10.200.0.1\"\nsysctl = {{ forwarding = 1, proxy_arp = 1 }}\n",
                ve_addr(i)
            ),
        )?;
    }
    Ok(())
}

/// Runs vznet apply; returns wall time and the child's peak RSS in KiB.
fn timed_vznet(ns: &str, dir: &Path) -> Result<(Duration, i64, String)> {
    let me = std::env::current_exe()?;
    // Output goes to a file: a pipe nobody reads until the child exits would fill
    // up and block it (apply prints one line per op).
    let out_file = tempfile::NamedTempFile::new()?;
    let t = Instant::now();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(&me)
        .args(["vznet", "apply", "--config-dir"])
        .arg(dir)
        .stdout(out_file.reopen()?)
        .stderr(out_file.reopen()?)
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data the kernel fills; wait4 reaps our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let d = t.elapsed();
    ensure!(
        r == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    let stdout = std::fs::read_to_string(out_file.path())?;
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "vznet apply failed: {stdout}"
    );
    let last = stdout.lines().last().unwrap_or("").to_string();
    Ok((d, usage.ru_maxrss, last))
}

fn verify(ns: &Namespaces) -> Result<()> {
    // The last VE must reach the host: every method really wired everything.
    let last = ns.ves.last().context("no VEs")?;
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            last,
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "10.200.0.1",
        ])
        .output()?;
    ensure!(
        out.status.success(),
        "VE {last} cannot reach the host after wiring"
    );
    Ok(())
}

fn apply(n: u32, no_ipv6: bool, like_vznet: bool) -> Result<()> {
    ensure!(n >= 1, "--ves must be at least 1");
    println!(
        "bench apply: {n} VEs, each: veth into its netns, bridge port, up, forwarding+proxy_arp, address and default route inside{}",
        if no_ipv6 { " (IPv6 off in every namespace)" } else { "" }
    );
    println!(
        "  shell and ip -batch {}",
        if like_vznet {
            "do what vznet does beyond the seed's commands: addrgenmode none and proxy_delay 0 on host ends (--seed-commands: the seed's)"
        } else {
            "run the seed's commands (host ends keep IPv6 address generation; vznet's do not)"
        }
    );

    eprintln!("  [1/3] vznet ...");
    let (vz, vz_noop, rss_kib, vz_changes, agent) = {
        let ns = Namespaces::create("v", n, no_ipv6)?;
        let dir = tempfile::tempdir()?;
        write_config(&ns, dir.path())?;
        let (d, rss1, changes) = timed_vznet(&ns.host, dir.path())?;
        verify(&ns)?;
        // A no-op re-apply is a steady-state figure: let the new VEs' IPv6
        // autoconfiguration (router solicitations repeat for ~12 s) die down,
        // then take the median of five.
        std::thread::sleep(Duration::from_secs(12));
        settle()?;
        let mut noops = Vec::new();
        let mut rss2 = 0;
        for _ in 0..5 {
            let (noop, rss, again) = timed_vznet(&ns.host, dir.path())?;
            ensure!(again == "0 changes", "re-apply was not a no-op: {again}");
            noops.push(noop);
            rss2 = rss2.max(rss);
        }
        noops.sort();
        let noop = noops[2];
        eprintln!("  [1/3] vznet through vznetd (no-op and one-VE change) ...");
        let agent = super::apply_agent::measure(&ns.host, dir.path(), 1000, &ve_addr(0))?;
        (d, noop, rss1.max(rss2), changes, agent)
    };
    eprintln!("  [2/3] shell, one command per step ...");
    let shell = {
        let ns = Namespaces::create("s", n, no_ipv6)?;
        let d = run_shell(&ns, like_vznet)?;
        verify(&ns)?;
        d
    };
    eprintln!("  [3/3] ip -batch ...");
    let batch = {
        let ns = Namespaces::create("b", n, no_ipv6)?;
        let d = run_batch(&ns, like_vznet)?;
        verify(&ns)?;
        d
    };

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("{:<34}{:>12}{:>16}", "method", "time (ms)", "vs vznet");
    println!(
        "{:<34}{:>12.1}{:>16}",
        format!("vznet apply ({vz_changes})"),
        ms(vz),
        "1.0x"
    );
    println!(
        "{:<34}{:>12.1}{:>15.1}x",
        "shell (ip/echo per step)",
        ms(shell),
        ms(shell) / ms(vz)
    );
    println!(
        "{:<34}{:>12.1}{:>15.1}x",
        "ip -batch",
        ms(batch),
        ms(batch) / ms(vz)
    );
    println!(
        "{:<34}{:>12.1}",
        "vznet no-op re-apply (median of 5)",
        ms(vz_noop)
    );
    println!(
        "{:<34}{:>12.1}",
        "vznet peak RSS (MiB)",
        rss_kib as f64 / 1024.0
    );
    println!(
        "{:<34}{:>12.1}",
        "via vznetd: no-op (median of 5)",
        ms(agent.noop)
    );
    println!(
        "{:<34}{:>12.1}",
        "via vznetd: one VE changed (med.)",
        ms(agent.one_ve)
    );
    println!(
        "{:<34}{:>12.1}",
        "vznetd RSS (MiB)",
        agent.agent_rss_kib as f64 / 1024.0
    );
    println!();
    let goals = [
        (
            ms(shell) / ms(vz) >= 20.0,
            "vznet >= 20x faster than the per-command script",
        ),
        (
            ms(batch) / ms(vz) >= 5.0,
            "vznet >= 5x faster than ip -batch",
        ),
        (ms(vz_noop) < 100.0, "no-op re-apply under 100 ms (direct)"),
        (
            ms(agent.noop) < 100.0,
            "no-op apply through vznetd under 100 ms",
        ),
        (
            ms(agent.one_ve) < 50.0,
            "one-VE change through vznetd under 50 ms",
        ),
        ((rss_kib as f64) < 30.0 * 1024.0, "peak RSS under 30 MB"),
    ];
    for (ok, what) in goals {
        println!("  [{}] {what}", if ok { "met" } else { "MISSED" });
    }
    Ok(())
}
