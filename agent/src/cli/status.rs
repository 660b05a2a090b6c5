//! `vznet status` as text: the agent's counters, failing units, VRRP instances and
//! virtual servers.

use crate::status::Status;

/// Prints a status for a person.
pub fn print(status: &Status) {
    println!(
        "vznetd pid {} up {} s, config {}",
        status.pid,
        status.uptime_s,
        status.config_dir.display()
    );
    println!(
        "  reconciles {}, applies {}, drift repairs {}, events {}, last reconcile {} ms",
        status.reconciles,
        status.applies,
        status.drift_repairs,
        status.events,
        status.last_reconcile_ms
    );
    if let Some(e) = &status.last_error {
        println!("  last error: {e}");
    }
    if let Some(e) = &status.config_error {
        println!("  config on disk rejected (running the previous one): {e}");
    }
    if let Some(f) = &status.fleet {
        print_fleet(f);
    }
    for id in &status.unwired {
        println!("  VE {id}: no netns, not wired");
    }
    if !status.vrrp.is_empty() {
        println!(
            "\n{:<12}{:<12}{:>5} {:<8}{:>5} {:<26}{:>8}{:>8}  drops",
            "instance", "interface", "vrid", "state", "prio", "master", "sent", "rcvd"
        );
        for v in &status.vrrp {
            let master = v.master.map_or_else(|| "-".to_string(), |m| m.to_string());
            let drops = if let Some(e) = &v.error {
                e.clone()
            } else if v.drops.is_empty() {
                "-".into()
            } else {
                v.drops
                    .iter()
                    .map(|(k, n)| format!("{k}={n}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            println!(
                "{:<12}{:<12}{:>5} {:<8}{:>5} {:<26}{:>8}{:>8}  {}",
                v.name,
                v.interface,
                v.vrid,
                v.state,
                v.priority,
                master,
                v.adverts_sent,
                v.adverts_received,
                drops
            );
        }
    }
    if !status.units.is_empty() {
        println!(
            "\n{:<24}{:>9}{:>12}{:>11}  error",
            "failing unit", "failures", "failing for", "retry in"
        );
        for u in &status.units {
            println!(
                "{:<24}{:>9}{:>11}s{:>9}ms  {}",
                u.unit.to_string(),
                u.failures,
                u.failing_for_s,
                u.retry_in_ms,
                u.error
            );
        }
    }
    print_virtual_servers(&status.virtual_servers);
}

/// The virtual-server part of `vznet status`, like `ipvsadm -L`.
fn print_virtual_servers(services: &[crate::lb::ServiceStatus]) {
    for vs in services {
        let persistence = if vs.persistence_timeout_ms > 0 {
            format!(", persistence {} ms", vs.persistence_timeout_ms)
        } else {
            String::new()
        };
        println!(
            "\nvirtual server {} ({} {}:{}), {} {}{persistence}, {} slots, {} commits{}",
            vs.name,
            vs.protocol,
            vs.vip,
            vs.port,
            vs.lb_kind,
            vs.scheduler,
            vs.slots,
            vs.commits,
            if vs.below_quorum {
                ", BELOW QUORUM"
            } else {
                ""
            }
        );
        println!(
            "  {:<28}{:<6}{:>7}{:>8}{:>7}{:>9}{:>9}  last error",
            "backend", "state", "weight", "in use", "slots", "checks", "failed"
        );
        for b in &vs.backends {
            let addr = std::net::SocketAddr::new(b.address, b.port).to_string();
            println!(
                "  {:<28}{:<6}{:>7}{:>8}{:>7}{:>9}{:>9}  {}",
                addr,
                b.state,
                b.weight,
                b.effective_weight,
                b.slots,
                b.checks_ok,
                b.checks_failed,
                b.last_error.as_deref().unwrap_or("-")
            );
        }
    }
}

/// The fleet part: where the config comes from and how etcd answers.
fn print_fleet(f: &crate::status::FleetStatus) {
    let etcd = match (&f.endpoint, &f.etcd_error) {
        (_, Some(e)) => format!("unreachable, retrying ({e})"),
        (Some(ep), None) => format!("watching on {ep}"),
        (None, None) => "connecting".into(),
    };
    println!(
        "  fleet host {}: running revision {} (latest seen {}), etcd {etcd}, {} reconnects, {} full reads",
        f.host, f.revision, f.seen_revision, f.reconnects, f.full_reads
    );
    if let Some(r) = &f.rejected {
        println!(
            "  revision {} from etcd rejected (running {}): {}",
            r.revision, f.revision, r.error
        );
    }
    for k in &f.ignored_keys {
        println!("  ignored key (not host.toml or ve/NAME.toml): {k}");
    }
}
