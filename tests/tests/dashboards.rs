//! The Grafana dashboard and the Prometheus alert rules in dist/ name only
//! metrics vznetd serves: a vznetd with a VRRP instance and a virtual server
//! runs in a lab host, its /metrics is scraped, and every `vznet_*` name in the
//! dashboard's queries and the rules must be one it exported. promtool checks
//! and unit-tests the rules.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{spawn_vznetd, ConfigDir};
use lab::{wait_until, Lab};

fn dist(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dist")
        .join(path)
}

/// Metric names (`vznet_...`) that appear in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("vznet_") {
        let before = rest[..i].chars().next_back();
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

/// Every `expr` string anywhere in a dashboard.
fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The metric families a vznetd with one VRRP instance and one virtual server
/// serves (`# TYPE` lines of its /metrics).
fn served() -> Result<BTreeSet<String>> {
    let lab = Lab::new("dash")?;
    let host = lab.host("h")?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        r#"
[[bridge]]
name = "br0"
addresses = ["10.73.0.1/24"]

[[vrrp]]
name = "VI_1"
interface = "br0"
vrid = 7
priority = 150
advert_interval_ms = 100
virtual_ips = ["10.73.0.100/24"]

[[virtual_server]]
name = "web"
vip = "10.73.0.100"
port = 80
check = { kind = "tcp", interval_ms = 100, timeout_ms = 50, fall = 1, rise = 1 }
backends = [ { address = "10.73.0.5", port = 8080 } ]
"#,
    )?;
    let state = tempfile::tempdir()?;
    let socket = state.path().join("vznetd.sock");
    let _agent = spawn_vznetd(
        &host,
        &cfg,
        &state.path().join("state"),
        &socket,
        &["--metrics", "127.0.0.1:9633"],
    )?;
    let netns = host.netns_path();
    let scrape = move || -> Result<String> {
        lab::in_netns(&netns, || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect("127.0.0.1:9633")?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
            let mut out = String::new();
            s.read_to_string(&mut out)?;
            Ok(out)
        })
    };
    let mut last = String::new();
    // VRRP and backend families appear once the instance and the checker report.
    let complete = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        last = scrape().unwrap_or_default();
        last.contains("vznet_vrrp_state{") && last.contains("vznet_lb_backend_up{")
    });
    ensure!(
        complete,
        "vznetd never served VRRP and backend metrics:\n{last}"
    );
    Ok(last
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

#[test]
fn dashboard_and_alert_rules_name_only_metrics_vznetd_serves() -> Result<()> {
    let served = served()?;
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dist("grafana/vznet.json"))?)
            .context("dist/grafana/vznet.json")?;
    let mut queries = Vec::new();
    exprs(&dashboard, &mut queries);
    ensure!(
        queries.len() > 10,
        "too few queries in the dashboard: {queries:?}"
    );
    let in_dashboard: BTreeSet<String> = queries.iter().flat_map(|q| names_in(q)).collect();
    let rules = std::fs::read_to_string(dist("prometheus/vznet-alerts.yml"))?;
    let in_rules = names_in(&rules);
    for (what, names) in [("dashboard", &in_dashboard), ("alert rules", &in_rules)] {
        let unknown: Vec<&String> = names.difference(&served).collect();
        ensure!(
            unknown.is_empty(),
            "the {what} names metrics vznetd does not serve: {unknown:?}\nserved: {served:?}"
        );
    }
    // What the dashboard is for: applies, drift repairs, VRRP state, backend
    // health and weights.
    for want in [
        "vznet_applies_total",
        "vznet_drift_repairs_total",
        "vznet_vrrp_state",
        "vznet_lb_backend_up",
        "vznet_lb_backend_weight",
    ] {
        ensure!(
            in_dashboard.contains(want),
            "the dashboard does not show {want}"
        );
    }
    for want in [
        "vznet_vrrp_master_transitions_total",
        "vznet_lb_below_quorum",
        "vznet_reconcile_failing",
    ] {
        ensure!(in_rules.contains(want), "no alert rule on {want}");
    }
    Ok(())
}

#[test]
fn promtool_checks_and_unit_tests_the_alert_rules() -> Result<()> {
    for args in [
        ["check", "rules", "vznet-alerts.yml"],
        ["test", "rules", "vznet-alerts.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(dist("prometheus"))
            .output()
            .context("running promtool (scripts/setup.sh installs Debian's prometheus)")?;
        ensure!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[test]
fn metric_names_are_found_in_queries() {
    let n = names_in("sum by (x) (rate(vznet_a_total{y=\"vznet_not\"}[5m])) / vznet_b");
    assert!(
        n.contains("vznet_a_total") && n.contains("vznet_b"),
        "{n:?}"
    );
}
