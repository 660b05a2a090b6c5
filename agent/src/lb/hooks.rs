//! Notify hooks of virtual servers and backends (keepalived's `notify_up`,
//! `notify_down`, `quorum_up`, `quorum_down`): argv arrays run without a
//! shell, as processes awaited asynchronously on the engine's runtime, each
//! killed after its time limit. Like keepalived, each starts at once; at
//! shutdown the agent waits for them (the `omega` hooks among them).
//!
//! Their environment: `VZNET_VS` (the virtual server's name),
//! `VZNET_BACKEND_ADDRESS`, `VZNET_BACKEND_PORT` and `VZNET_BACKEND_STATE`
//! (`UP`/`DOWN`) for backend hooks, `VZNET_QUORUM_STATE` (`UP`/`DOWN`) and
//! `VZNET_LIVE_WEIGHT` for quorum hooks.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::service::Event;

/// Output of a hook kept for the log.
const OUTPUT_LOGGED: usize = 512;

/// Hooks running now.
#[derive(Debug, Default)]
pub struct Hooks {
    running: JoinSet<()>,
}

fn updown(up: bool) -> &'static str {
    if up {
        "UP"
    } else {
        "DOWN"
    }
}

impl Hooks {
    /// Starts the hook of each event that has one (on the current runtime).
    pub fn run(&mut self, events: Vec<Event>) {
        // Finished ones leave the set.
        while self.running.try_join_next().is_some() {}
        for e in events {
            let (hook, timeout, env) = match e {
                Event::Backend {
                    service,
                    address,
                    port,
                    up,
                    hook,
                    timeout,
                } => (
                    hook,
                    timeout,
                    vec![
                        ("VZNET_VS", service),
                        ("VZNET_BACKEND_ADDRESS", address.to_string()),
                        ("VZNET_BACKEND_PORT", port.to_string()),
                        ("VZNET_BACKEND_STATE", updown(up).into()),
                    ],
                ),
                Event::Quorum {
                    service,
                    up,
                    live_weight,
                    hook,
                    timeout,
                } => (
                    hook,
                    timeout,
                    vec![
                        ("VZNET_VS", service),
                        ("VZNET_QUORUM_STATE", updown(up).into()),
                        ("VZNET_LIVE_WEIGHT", live_weight.to_string()),
                    ],
                ),
            };
            if let Some(argv) = hook.filter(|a| !a.is_empty()) {
                self.running.spawn(run(argv, env, timeout));
            }
        }
    }

    /// Waits for every running hook (each is bounded by its time limit).
    pub async fn wait(&mut self) {
        while self.running.join_next().await.is_some() {}
    }
}

async fn run(argv: Vec<String>, env: Vec<(&'static str, String)>, timeout: Duration) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let vs = env.first().map(|(_, v)| v.clone()).unwrap_or_default();
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(out)) => {
            let text = |b: &[u8]| -> String {
                String::from_utf8_lossy(b)
                    .trim()
                    .chars()
                    .take(OUTPUT_LOGGED)
                    .collect()
            };
            let took_ms = started.elapsed().as_millis() as u64;
            if out.status.success() {
                tracing::info!(vs, hook = %program, took_ms, stdout = %text(&out.stdout), "load balancer hook ran");
            } else {
                tracing::warn!(vs, hook = %program, took_ms, status = %out.status, stderr = %text(&out.stderr), "load balancer hook failed");
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(vs, hook = %program, error = %e, "load balancer hook cannot start")
        }
        // kill_on_drop: the child died with the dropped future.
        Err(_) => {
            tracing::warn!(vs, hook = %program, timeout_ms = timeout.as_millis() as u64, "load balancer hook timed out and was killed")
        }
    }
}
