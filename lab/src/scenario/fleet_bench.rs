//! `lab bench fleet --hosts N`: N hosts run from etcd, each with one routed VE.
//! Times, from the admin host, a push of a one-VE change (the VE's address
//! toggled) until the host reports it applied, and a change pushed to all N
//! hosts until every one reports it; then each agent's RSS, beside an agent of the
//! same config shape run from a folder.

use std::time::{Duration, Instant};

use agent::fleet::change::{self, Outcome};
use agent::fleet::etcd::Client;
use agent::fleet::options::{self, Keys};
use agent::fleet::Files;
use anyhow::{ensure, Context, Result};
use lab::fleet::{host_toml, routed_ve, Fleet, Tools};
use lab::Lab;

/// How often the admin reads the hosts' status while waiting.
const POLL: Duration = Duration::from_millis(2);

/// Options.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Hosts.
    pub hosts: usize,
    /// One-host changes timed.
    pub trials: usize,
    /// All-host changes timed.
    pub rounds: usize,
}

struct Timings {
    one: Vec<Duration>,
    all: Vec<Duration>,
}

fn ve_file(i: usize, netns: &str, toggle: bool) -> (String, Vec<u8>) {
    let addr = format!("10.90.{i}.{}", if toggle { 6 } else { 5 });
    (
        format!("ve/{}.toml", 300 + i),
        routed_ve(300 + i as u32, netns, &addr).into_bytes(),
    )
}

/// Runs the benchmark.
pub fn run(o: Options) -> Result<()> {
    ensure!((1..=80).contains(&o.hosts), "--hosts is 1 to 80");
    let lab = Lab::new("bench_fleet")?;
    let me = std::env::current_exe()?.display().to_string();
    let tools = Tools {
        vznetd: vec![me.clone(), "vznetd".into()],
        vznet: vec![me, "vznet".into()],
    };
    println!(
        "fleet of {} hosts, 1 etcd member; {} one-host changes, {} all-host changes",
        o.hosts, o.trials, o.rounds
    );
    let mut f = Fleet::new(&lab, 1, o.hosts, tools)?;
    let mut configs: Vec<(String, Files, String)> = Vec::new();
    for i in 0..o.hosts {
        let ve = lab.host(&format!("ve{i}"))?;
        let mut files = Files::new();
        files.insert(
            "host.toml".into(),
            host_toml(&f.hosts[i].data_addr, "").into_bytes(),
        );
        let (k, v) = ve_file(i, ve.name(), false);
        files.insert(k, v);
        configs.push((f.hosts[i].name.clone(), files, ve.name().to_string()));
        f.start_agent(i, &[])?;
    }

    // The same shape run from a folder, for the RSS side by side.
    let plain = lab.host("plain")?;
    lab.link(&plain, "eth0", &f.data, "pplain")?;
    let plain_ve = lab.host("veplain")?;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("ve"))?;
    std::fs::write(dir.path().join("host.toml"), host_toml("10.80.0.250", ""))?;
    std::fs::write(
        dir.path().join("ve/399.toml"),
        routed_ve(399, plain_ve.name(), "10.90.99.5"),
    )?;
    let plain_agent = super::spawn_vznetd(&plain, dir.path())?;

    let endpoints = f.etcd.endpoints();
    let hosts = o.hosts;
    let timings = lab::in_netns(&f.admin.netns_path(), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(measure(&endpoints, configs, o))
    })?;

    let mut rss: Vec<u64> = f
        .hosts
        .iter()
        .filter_map(|h| super::drift::rss_kib(h.agent.as_ref()?.pid()).ok())
        .collect();
    rss.sort_unstable();
    ensure!(rss.len() == hosts, "could not read every agent's RSS");
    let plain_rss = super::drift::rss_kib(plain_agent.pid())?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |v: &[Duration], q: f64| {
        let mut s = v.to_vec();
        s.sort_unstable();
        s[((s.len() as f64 - 1.0) * q).round() as usize]
    };
    let row = |what: &str, value: String| println!("{what:<58}{value:>10}");
    println!();
    row(
        "push of a one-VE change -> applied, median (ms)",
        format!("{:.1}", ms(pct(&timings.one, 0.5))),
    );
    row(
        "push of a one-VE change -> applied, p99 (ms)",
        format!("{:.1}", ms(pct(&timings.one, 0.99))),
    );
    row(
        &format!("change pushed to all {hosts} hosts -> all applied, median (ms)"),
        format!("{:.1}", ms(pct(&timings.all, 0.5))),
    );
    row(
        &format!("change pushed to all {hosts} hosts -> all applied, max (ms)"),
        format!("{:.1}", ms(pct(&timings.all, 1.0))),
    );
    let mib = |k: u64| format!("{:.1}", k as f64 / 1024.0);
    row("agent RSS with etcd, median (MiB)", mib(rss[rss.len() / 2]));
    row("agent RSS with etcd, max (MiB)", mib(rss[rss.len() - 1]));
    row(
        "agent RSS from a folder, same config shape (MiB)",
        mib(plain_rss),
    );
    println!(
        "  (status polled every {} ms: times are at most that late)",
        POLL.as_millis()
    );
    println!();
    for (ok, what) in [
        (
            ms(pct(&timings.one, 0.99)) < 200.0,
            "one-host p99 under 200 ms",
        ),
        (
            ms(pct(&timings.all, 1.0)) < 1000.0,
            "all hosts applied in under 1 s",
        ),
        (
            rss[rss.len() - 1] < 15 * 1024,
            "agent RSS with etcd under 15 MB",
        ),
    ] {
        println!("  [{}] {what}", if ok { "met" } else { "MISSED" });
    }
    Ok(())
}

/// The timed part, from the admin host's namespace.
async fn measure(
    endpoints: &str,
    mut configs: Vec<(String, Files, String)>,
    o: Options,
) -> Result<Timings> {
    let urls = options::parse_endpoints(&[endpoints.to_string()])?;
    let mut client = Client::new(urls.clone(), None, agent::fleet::ATTEMPT_TIMEOUT);
    let keys = Keys::new(options::DEFAULT_PREFIX);
    let names: Vec<String> = configs.iter().map(|c| c.0.clone()).collect();
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    // Every host configured first (not timed).
    let mut first = None;
    for (host, files, _) in &configs {
        let r = change::push(&mut client, &keys, host, files, 0)
            .await?
            .revision;
        first.get_or_insert(r);
    }
    // Each host's own push is at or after the first.
    let first = first.unwrap_or(0);
    let got = change::wait(
        &mut client,
        &keys,
        &all,
        first,
        Duration::from_secs(60),
        POLL,
    )
    .await?;
    ensure!(
        got.len() == all.len(),
        "hosts never applied their first config: {got:?}"
    );

    let mut t = Timings {
        one: Vec::new(),
        all: Vec::new(),
    };
    let mut toggle = vec![false; configs.len()];
    let mut change_one = |i: usize, configs: &mut Vec<(String, Files, String)>| {
        toggle[i] = !toggle[i];
        let (k, v) = ve_file(i, &configs[i].2, toggle[i]);
        configs[i].1.insert(k, v);
    };
    for n in 0..o.trials {
        let i = n % configs.len();
        change_one(i, &mut configs);
        let start = Instant::now();
        let pushed = change::push(&mut client, &keys, &configs[i].0, &configs[i].1, 0).await?;
        let got = change::wait(
            &mut client,
            &keys,
            &[&configs[i].0],
            pushed.revision,
            Duration::from_secs(10),
            POLL,
        )
        .await?;
        ensure!(
            matches!(got.get(&configs[i].0), Some(Outcome::Applied(_))),
            "{} did not apply revision {}: {got:?}",
            configs[i].0,
            pushed.revision
        );
        t.one.push(start.elapsed());
    }
    for _ in 0..o.rounds {
        for i in 0..configs.len() {
            change_one(i, &mut configs);
        }
        // All pushes at once, each host's its own transaction (as N admins, or
        // a deploy script, would): etcd commits them side by side.
        let start = Instant::now();
        let mut pushes = tokio::task::JoinSet::new();
        for (host, files, _) in &configs {
            let (host, files, keys, urls) =
                (host.clone(), files.clone(), keys.clone(), urls.clone());
            pushes.spawn(async move {
                let mut client = Client::new(urls, None, agent::fleet::ATTEMPT_TIMEOUT);
                change::push(&mut client, &keys, &host, &files, 0)
                    .await
                    .with_context(|| format!("pushing to {host}"))
            });
        }
        let mut revisions = Vec::new();
        while let Some(r) = pushes.join_next().await {
            revisions.push(r??.revision);
        }
        // Each host waits for its own revision; the first is the lowest.
        let first = revisions.iter().copied().min().unwrap_or(0);
        let got = change::wait(
            &mut client,
            &keys,
            &all,
            first,
            Duration::from_secs(20),
            POLL,
        )
        .await?;
        ensure!(got.len() == all.len(), "not every host applied: {got:?}");
        t.all.push(start.elapsed());
    }
    Ok(t)
}
