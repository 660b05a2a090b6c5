//! An optional Prometheus text-format listener (`--metrics 127.0.0.1:9633`):
//! GET /metrics answers from the same status the control socket serves. It reads
//! the snapshots; it runs on the control thread, never on the engine's.

use std::fmt::Write as _;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::control::Shared;
use crate::status::{Status, VrrpStatus};

/// Serves scrapes forever (at most 16 at once, each bounded in time).
pub async fn serve(listener: TcpListener, shared: Shared) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Too many scrapers at once: drop this one.
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = scrape(stream, shared).await {
                tracing::debug!(error = %e, "metrics request");
            }
            drop(permit);
        });
    }
}

async fn scrape(mut stream: TcpStream, shared: Shared) -> std::io::Result<()> {
    // The request head only; 8 KiB is plenty for a scraper and bounds a bad peer.
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    while n < buf.len() {
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            stream.read(&mut buf[n..]),
        )
        .await;
        match r {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(k)) => n += k,
            Ok(Err(e)) => return Err(e),
        }
        if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (code, body) =
        if head.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            ("200 OK", render(&shared.status().await))
        } else {
            ("404 Not Found", "try /metrics\n".to_string())
        };
    let resp = format!(
        "HTTP/1.1 {code}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(resp.as_bytes()).await?;
    stream.shutdown().await
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of a status.
pub fn render(s: &Status) -> String {
    let mut o = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            o,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "vznet_applies_total",
        "counter",
        "Reconciles that changed something.",
        s.applies as f64,
    );
    metric(
        "vznet_reconciles_total",
        "counter",
        "Full plans run.",
        s.reconciles as f64,
    );
    metric(
        "vznet_drift_repairs_total",
        "counter",
        "Ops that repaired drift.",
        s.drift_repairs as f64,
    );
    metric(
        "vznet_kernel_events_total",
        "counter",
        "Netlink events seen.",
        s.events as f64,
    );
    metric(
        "vznet_last_reconcile_seconds",
        "gauge",
        "Duration of the last reconcile.",
        s.last_reconcile_ms as f64 / 1000.0,
    );
    metric(
        "vznet_reconcile_failing",
        "gauge",
        "1 if the last reconcile failed.",
        f64::from(u8::from(s.last_error.is_some())),
    );
    metric(
        "vznet_config_rejected",
        "gauge",
        "1 if the config on disk was rejected.",
        f64::from(u8::from(s.config_error.is_some())),
    );
    metric(
        "vznet_unwired_ves",
        "gauge",
        "VEs with network config but no netns.",
        s.unwired.len() as f64,
    );
    metric(
        "vznet_full_reads_total",
        "counter",
        "Full reads of every namespace (start, periodic, lost events).",
        s.full_reads as f64,
    );
    metric(
        "vznet_units_failing",
        "gauge",
        "Units of reconciliation that cannot be repaired and are retried with backoff.",
        s.units.len() as f64,
    );
    metric(
        "vznet_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        s.uptime_s as f64,
    );
    if !s.vrrp.is_empty() {
        let _ = writeln!(o, "# HELP vznet_vrrp_state VRRP state per instance (1 for the current one).\n# TYPE vznet_vrrp_state gauge");
        for v in &s.vrrp {
            for state in ["Initialize", "Backup", "Master", "Fault", "Failed"] {
                let _ = writeln!(
                    o,
                    "vznet_vrrp_state{{vrrp_instance=\"{}\",state=\"{state}\"}} {}",
                    escape(&v.name),
                    u8::from(v.state == state)
                );
            }
        }
        for (name, help, get) in [
            (
                "vznet_vrrp_priority",
                "Effective priority.",
                (|v: &VrrpStatus| v.priority as u64) as fn(&VrrpStatus) -> u64,
            ),
            ("vznet_vrrp_adverts_sent_total", "Adverts sent.", |v| {
                v.adverts_sent
            }),
            (
                "vznet_vrrp_adverts_received_total",
                "Adverts received.",
                |v| v.adverts_received,
            ),
            (
                "vznet_vrrp_master_transitions_total",
                "Transitions to Master.",
                |v| v.master_transitions,
            ),
        ] {
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for v in &s.vrrp {
                let _ = writeln!(
                    o,
                    "{name}{{vrrp_instance=\"{}\"}} {}",
                    escape(&v.name),
                    get(v)
                );
            }
        }
        let _ = writeln!(o, "# HELP vznet_vrrp_drops_total Adverts dropped, by reason.\n# TYPE vznet_vrrp_drops_total counter");
        for v in &s.vrrp {
            for (reason, n) in &v.drops {
                let _ = writeln!(
                    o,
                    "vznet_vrrp_drops_total{{vrrp_instance=\"{}\",reason=\"{}\"}} {n}",
                    escape(&v.name),
                    escape(reason)
                );
            }
        }
    }
    lb_metrics(&mut o, &s.virtual_servers);
    o
}

/// Per virtual server and backend: health, weight in use, slots, checks.
fn lb_metrics(o: &mut String, services: &[crate::lb::ServiceStatus]) {
    if services.is_empty() {
        return;
    }
    let _ = writeln!(o, "# HELP vznet_lb_below_quorum 1 while a virtual server's live weight is below its quorum.\n# TYPE vznet_lb_below_quorum gauge");
    for vs in services {
        let _ = writeln!(
            o,
            "vznet_lb_below_quorum{{service=\"{}\"}} {}",
            escape(&vs.name),
            u8::from(vs.below_quorum)
        );
    }
    let _ = writeln!(o, "# HELP vznet_lb_commits_total nftables transactions that changed a virtual server.\n# TYPE vznet_lb_commits_total counter");
    for vs in services {
        let _ = writeln!(
            o,
            "vznet_lb_commits_total{{service=\"{}\"}} {}",
            escape(&vs.name),
            vs.commits
        );
    }
    type Get = fn(&crate::lb::BackendStatus) -> u64;
    let per_backend: [(&str, &str, Get); 7] = [
        (
            "vznet_lb_backend_up",
            "1 while the backend passes its health checks.",
            |b| u64::from(b.state == "up"),
        ),
        (
            "vznet_lb_backend_weight",
            "Weight in use (0 when down, ramping in slow start).",
            |b| u64::from(b.effective_weight),
        ),
        (
            "vznet_lb_backend_slots",
            "Slots the backend holds in the slot table.",
            |b| b.slots as u64,
        ),
        (
            "vznet_lb_backend_checks_ok_total",
            "Health checks passed.",
            |b| b.checks_ok,
        ),
        (
            "vznet_lb_backend_checks_failed_total",
            "Health checks failed.",
            |b| b.checks_failed,
        ),
        (
            "vznet_lb_backend_connections",
            "Conntrack entries of the backend's connections (lc and wlc only).",
            |b| b.connections,
        ),
        (
            "vznet_lb_backend_probe_late_max_microseconds",
            "The most a health probe of the backend started after its schedule.",
            |b| b.probe_late_max_us,
        ),
    ];
    for (name, help, get) in per_backend {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for vs in services {
            for b in &vs.backends {
                let _ = writeln!(
                    o,
                    "{name}{{service=\"{}\",backend=\"{}\"}} {}",
                    escape(&vs.name),
                    std::net::SocketAddr::new(b.address, b.port),
                    get(b)
                );
            }
        }
    }
}
