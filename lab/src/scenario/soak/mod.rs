//! `lab soak --minutes N`: vznetd (this binary run as the agent, the path users
//! run) on a host built in namespaces, churned for N minutes in bursts: VE links
//! and VE namespaces deleted by hand, VEs started again, reloads with valid and
//! invalid files, VRRP failovers (priority moved by reload, the peer agent
//! stopped and started), load-balancer backends stopped and started. After each
//! burst: the kernel matches the config (vznet's own plan, run directly) within
//! the limit, no VE lacks its links, the agent reports what the churn left
//! (unwired VEs, VRRP master, backend health), and all along: at most one VRRP
//! master on the wire, vznetd alive, its RSS bounded. Any violation is printed
//! when found and makes the exit status non-zero.

mod check;
mod churn;
mod mastership;
mod world;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;

use churn::{Churn, Event};
use mastership::Mastership;
use world::{Wanted, World, PRIORITY_HIGH};

/// `lab soak` options.
#[derive(Debug, Args)]
pub struct Soak {
    /// How long to churn, minutes.
    #[arg(long, default_value_t = 2)]
    pub minutes: u64,
    /// Bridged VEs (each its own namespace and veth); at least 4.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(4..=200))]
    pub ves: u32,
    /// Seed of the churn's choices (default: from the clock; printed, so a run
    /// can be repeated).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long after a burst the kernel may still differ from the config, ms.
    #[arg(long, default_value_t = 1000)]
    pub converge_ms: u64,
    /// How far vznetd's RSS may grow over its value after start-up, MiB.
    #[arg(long, default_value_t = 32)]
    pub rss_growth_mib: u64,
    /// Print the summary as JSON (burst lines go to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Violations found by the background monitor, and the RSS it sampled.
#[derive(Debug, Default)]
struct Monitored {
    violations: Vec<String>,
    rss_max_kib: u64,
}

/// Runs the soak; an error (exit 1) when any invariant was violated.
pub fn run(opts: Soak) -> Result<()> {
    let seed = opts.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let say = |line: String| {
        if opts.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    say(format!(
        "soak: {} minutes, {} bridged VEs + 1 routed, seed {seed}",
        opts.minutes, opts.ves
    ));
    let wanted = Wanted {
        priority: PRIORITY_HIGH,
        moved: false,
    };
    let world = World::build(opts.ves, &wanted)?;
    let agent = world.start_host_agent()?;
    let none = Default::default();
    if let Err(ops) = check::converge(&world, &none, Instant::now(), Duration::from_secs(30))? {
        anyhow::bail!("vznetd did not wire the host at start: {ops}");
    }
    // After the wiring: a backend listens on its VE's address.
    let backends = (0..world::BACKENDS)
        .map(|i| world.start_backend(i))
        .collect::<Result<Vec<_>>>()?;
    anyhow::ensure!(
        lab::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            check::vrrp_state(&world.socket()).as_deref() == Some("Master")
        }),
        "the host's vznetd never became VRRP master"
    );
    let peer = world.start_peer_agent()?;
    anyhow::ensure!(
        lab::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            check::vrrp_state(&world.peer_socket()).as_deref() == Some("Backup")
        }),
        "the peer's vznetd never settled as VRRP backup"
    );
    // The watch spans a few adverts: a handover is one change of sender.
    let watch = Mastership::start(
        world.observer.netns_path(),
        std::net::Ipv4Addr::new(10, 61, 0, 3),
        world::VRID,
        Duration::from_millis(3 * world::ADVERT_MS),
    )?;
    let rss_start = check::rss_kib(agent.pid())?;
    let monitored = Arc::new(Mutex::new(Monitored {
        rss_max_kib: rss_start,
        ..Monitored::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = spawn_monitor(
        agent.pid(),
        world.socket(),
        world.peer_socket(),
        rss_start + opts.rss_growth_mib * 1024,
        monitored.clone(),
        stop.clone(),
    );

    let mut churn = Churn::new(&world, agent.pid(), wanted, peer, backends, seed);
    let mut violations: Vec<String> = Vec::new();
    let report = |when: Duration, v: String, violations: &mut Vec<String>| {
        let line = format!("  VIOLATION at {:.1} s: {v}", when.as_secs_f64());
        eprintln!("{line}");
        violations.push(v);
    };
    let t0 = Instant::now();
    let limit = Duration::from_millis(opts.converge_ms);
    let mut converge_times = Vec::new();
    let mut bursts = 0u64;
    while t0.elapsed() < Duration::from_secs(opts.minutes * 60) {
        bursts += 1;
        let mut done = Vec::new();
        let first = churn.pick();
        if first == Event::InvalidReload {
            for v in churn.invalid_reload()? {
                report(t0.elapsed(), v, &mut violations);
            }
            done.push(first.kind());
        } else {
            let n = 1 + churn.below(4);
            let mut event = first;
            for k in 0..n {
                if k > 0 {
                    event = churn.pick();
                    if event == Event::InvalidReload {
                        continue;
                    }
                    std::thread::sleep(Duration::from_millis(u64::from(churn.below(200))));
                }
                churn.run(event)?;
                done.push(event.kind());
            }
        }
        let burst_end = Instant::now();
        for v in std::mem::take(&mut churn.violations) {
            report(t0.elapsed(), v, &mut violations);
        }
        let converged = match check::converge(&world, &churn.gone, burst_end, limit) {
            Ok(Ok(d)) => {
                converge_times.push(d);
                format!("converged in {} ms", d.as_millis())
            }
            Ok(Err(v)) => {
                report(t0.elapsed(), v, &mut violations);
                // Let it catch up, so the next burst starts from a matching kernel.
                match check::converge(&world, &churn.gone, burst_end, Duration::from_secs(30)) {
                    Ok(Ok(d)) => format!("converged LATE in {} ms", d.as_millis()),
                    Ok(Err(v)) => {
                        report(
                            t0.elapsed(),
                            format!("vznetd never caught up: {v}"),
                            &mut violations,
                        );
                        break;
                    }
                    Err(e) => {
                        report(t0.elapsed(), format!("{e:#}"), &mut violations);
                        break;
                    }
                }
            }
            Err(e) => {
                report(t0.elapsed(), format!("{e:#}"), &mut violations);
                break;
            }
        };
        for v in settle(&world, &churn)? {
            report(t0.elapsed(), v, &mut violations);
        }
        let (adverts, handovers, wire) = watch.take();
        for v in wire {
            report(t0.elapsed(), v, &mut violations);
        }
        for v in std::mem::take(&mut lock(&monitored).violations) {
            report(t0.elapsed(), v, &mut violations);
        }
        let rss = check::rss_kib(agent.pid()).unwrap_or(0);
        say(format!(
            "[{:6.1} s] burst {bursts}: {} -> {converged}; master {}; backends {}; adverts {adverts}, handovers {handovers}; rss {} KiB",
            t0.elapsed().as_secs_f64(),
            done.join(", "),
            if churn.host_should_be_master() { "host" } else { "peer" },
            churn.backend_states().join("/"),
            rss
        ));
        // Idle between bursts, so repairs and steady state both get time.
        std::thread::sleep(Duration::from_millis(200 + u64::from(churn.below(800))));
    }
    stop.store(true, Ordering::Relaxed);
    let _ = monitor.join();
    for v in std::mem::take(&mut lock(&monitored).violations) {
        report(t0.elapsed(), v, &mut violations);
    }
    let (adverts, handovers, wire) = watch.take();
    for v in wire {
        report(t0.elapsed(), v, &mut violations);
    }
    watch.stop()?;
    let rss_end = check::rss_kib(agent.pid())?;
    let rss_max = lock(&monitored).rss_max_kib.max(rss_end);
    let status = crate::scenario::status_of(&world.socket())?;
    churn.stop_all();
    let _ = agent.terminate(Duration::from_secs(5));
    if !violations.is_empty() {
        let log = agent.stderr().unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!("soak: the last lines of vznetd's log:");
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
    }
    converge_times.sort();
    let p50 = converge_times
        .get(converge_times.len() / 2)
        .copied()
        .unwrap_or_default();
    let worst = converge_times.last().copied().unwrap_or_default();
    let events: u64 = churn.counts.values().sum();
    let summary = serde_json::json!({
        "seconds": t0.elapsed().as_secs(),
        "seed": seed,
        "bursts": bursts,
        "events": events,
        "events_by_kind": churn.counts,
        "violations": violations,
        "converge_ms": { "p50": p50.as_millis() as u64, "max": worst.as_millis() as u64, "limit": opts.converge_ms },
        "rss_kib": { "start": rss_start, "max": rss_max, "end": rss_end },
        "adverts_seen": adverts,
        "vrrp_handovers_seen": handovers,
        "vznetd": { "reconciles": status.reconciles, "applies": status.applies, "drift_repairs": status.drift_repairs, "full_reads": status.full_reads },
    });
    if opts.json {
        println!("{summary}");
    } else {
        let kinds: Vec<String> = churn
            .counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        println!(
            "soak: {:.0} s, {bursts} bursts, {events} churn events ({})",
            t0.elapsed().as_secs_f64(),
            kinds.join(", ")
        );
        println!(
            "soak: converged after each burst: median {} ms, worst {} ms (limit {} ms)",
            p50.as_millis(),
            worst.as_millis(),
            opts.converge_ms
        );
        println!(
            "soak: vznetd RSS start {rss_start} KiB, max {rss_max} KiB, end {rss_end} KiB (limit start + {} MiB); {} reconciles, {} drift ops repaired",
            opts.rss_growth_mib, status.reconciles, status.drift_repairs
        );
        println!("soak: VRRP adverts seen {adverts}, sender changes {handovers}");
        println!("soak: {} violations", violations.len());
        if !violations.is_empty() && t0.elapsed() < Duration::from_secs(opts.minutes * 60) {
            println!("soak: stopped early: the kernel no longer converges");
        }
    }
    world.lab.close()?;
    anyhow::ensure!(
        violations.is_empty(),
        "{} invariant violations, the first: {}",
        violations.len(),
        violations[0]
    );
    Ok(())
}

/// The checks that wait for the agent's protocol state to follow the churn.
fn settle(world: &World, churn: &Churn<'_>) -> Result<Vec<String>> {
    let mut bad = check::ve_links(world, &churn.gone, churn.wanted.moved)?;
    let want_unwired: Vec<u32> = churn.gone.iter().copied().collect();
    let want_host = if churn.host_should_be_master() {
        "Master"
    } else {
        "Backup"
    };
    let want_backends = churn.backend_states();
    let mut last = String::new();
    let ok = lab::wait_until(Duration::from_secs(6), Duration::from_millis(50), || {
        let Ok(s) = agent::control::status(&world.socket(), Duration::from_secs(2)) else {
            last = "no status from vznetd".into();
            return false;
        };
        let mut unwired = s.unwired.clone();
        unwired.sort();
        let vrrp = s.vrrp.first().map(|v| v.state.as_str()).unwrap_or("none");
        let backends: Vec<&str> = s
            .virtual_servers
            .first()
            .map(|vs| vs.backends.iter().map(|b| b.state.as_str()).collect())
            .unwrap_or_default();
        last = format!(
            "unwired {unwired:?} (want {want_unwired:?}), VRRP {vrrp} (want {want_host}), backends {backends:?} (want {want_backends:?}), config_error {:?}, failing units {:?}, backend errors {:?}",
            s.config_error,
            s.units.iter().map(|u| format!("{:?}: {}", u.unit, u.error)).collect::<Vec<_>>(),
            s.virtual_servers
                .first()
                .map(|vs| vs.backends.iter().map(|b| b.last_error.clone()).collect::<Vec<_>>())
                .unwrap_or_default()
        );
        unwired == want_unwired
            && vrrp == want_host
            && backends == want_backends
            && s.config_error.is_none()
            && s.units.is_empty()
    });
    if !ok {
        bad.push(format!(
            "vznetd's state did not follow the churn within 6 s: {last}"
        ));
    }
    Ok(bad)
}

/// Every 250 ms: vznetd still runs, its RSS under `rss_limit_kib`, and the two
/// agents never both report Master in two samples in a row.
fn spawn_monitor(
    pid: u32,
    socket: std::path::PathBuf,
    peer_socket: std::path::PathBuf,
    rss_limit_kib: u64,
    out: Arc<Mutex<Monitored>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut both_before = false;
        let mut over_limit_told = false;
        while !stop.load(Ordering::Relaxed) {
            match check::rss_kib(pid) {
                Ok(rss) => {
                    let mut m = lock(&out);
                    m.rss_max_kib = m.rss_max_kib.max(rss);
                    if rss > rss_limit_kib && !over_limit_told {
                        over_limit_told = true;
                        m.violations.push(format!(
                            "vznetd RSS {rss} KiB over its limit {rss_limit_kib} KiB"
                        ));
                    }
                }
                Err(_) => {
                    lock(&out)
                        .violations
                        .push(format!("vznetd (pid {pid}) is gone"));
                    return;
                }
            }
            let both = check::vrrp_state(&socket).as_deref() == Some("Master")
                && check::vrrp_state(&peer_socket).as_deref() == Some("Master");
            if both && both_before {
                lock(&out).violations.push(
                    "both vznetd agents report VRRP Master in two samples 250 ms apart".into(),
                );
            }
            both_before = both;
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

fn lock(m: &Mutex<Monitored>) -> std::sync::MutexGuard<'_, Monitored> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
