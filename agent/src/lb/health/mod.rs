//! Health checks: what is probed (a [`Target`]), the probes themselves (no
//! forked process except the `command` kind) and the fall/rise hysteresis.
//! They run on the prober's own thread ([`prober`]).

mod http;
pub mod prober;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netcfg::model::{CheckKind, HealthCheck};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

pub use http::{body_digest, Response};

/// One thing to probe. Backends that share an address, port and check settings
/// (in any virtual server) share one probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// The check, as configured (`alpha` resolved, `fall`/`rise` at least 1).
    pub check: HealthCheck,
    /// Backend address.
    pub address: IpAddr,
    /// Port probed.
    pub port: u16,
}

impl Target {
    /// The probe for a backend at `address:port` under `check`; `alpha` is the
    /// virtual server's default.
    pub fn new(check: &HealthCheck, alpha: bool, address: IpAddr, port: u16) -> Target {
        let mut check = check.clone();
        check.alpha = Some(check.alpha.unwrap_or(alpha));
        check.fall = check.fall.max(1);
        check.rise = check.rise.max(1);
        Target {
            port: check.port.unwrap_or(port),
            check,
            address,
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.check.interval_ms)
    }

    /// The interval after a failure that has not (yet) changed the verdict.
    pub fn retry_interval(&self) -> Duration {
        Duration::from_millis(
            self.check
                .retry_interval_ms
                .unwrap_or(self.check.interval_ms),
        )
    }

    /// Whether its backends start down (keepalived's `alpha`).
    pub fn starts_down(&self) -> bool {
        self.check.alpha == Some(true)
    }

    /// Probes once; `Err` says why it failed.
    pub async fn probe(&self) -> Result<(), String> {
        let timeout = Duration::from_millis(self.check.timeout_ms);
        match tokio::time::timeout(timeout, self.probe_inner()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.check.timeout_ms)),
        }
    }

    async fn probe_inner(&self) -> Result<(), String> {
        let addr = SocketAddr::new(self.address, self.port);
        match self.check.kind {
            CheckKind::Tcp => TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("connect {addr}: {e}")),
            CheckKind::Http | CheckKind::Https => http::check_urls(&self.check, addr).await,
            CheckKind::Command => self.run_command().await,
        }
    }

    /// `command`: a spawned process, awaited without blocking the prober.
    async fn run_command(&self) -> Result<(), String> {
        let argv = self.check.command.as_deref().unwrap_or_default();
        let Some((prog, args)) = argv.split_first() else {
            return Err("empty command".into());
        };
        let status = tokio::process::Command::new(prog)
            .args(args)
            .env("VZNET_BACKEND_ADDRESS", self.address.to_string())
            .env("VZNET_BACKEND_PORT", self.port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .map_err(|e| format!("running {prog}: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{prog} exited with {status}"))
        }
    }
}

/// Fall/rise hysteresis of one target. Starts up (keepalived's default: a
/// backend is trusted until `fall` checks in a row fail), or down with `alpha`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Current verdict.
    pub up: bool,
    /// Consecutive results against the verdict.
    pub streak: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis::starting(true)
    }
}

impl Hysteresis {
    /// A fresh hysteresis with verdict `up`.
    pub fn starting(up: bool) -> Hysteresis {
        Hysteresis { up, streak: 0 }
    }

    /// Records one result; returns the new verdict when it flips.
    pub fn record(&mut self, ok: bool, fall: u32, rise: u32) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn goes_down_after_fall_failures_in_a_row_and_up_after_rise() {
        let mut h = Hysteresis::default();
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None, "a success resets the streak");
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(false, 3, 2), Some(false));
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), Some(true));
        assert!(h.up);
    }

    #[test]
    fn alpha_starts_down_and_needs_rise_successes() {
        let mut h = Hysteresis::starting(false);
        assert_eq!(h.record(false, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), None);
        assert_eq!(h.record(true, 3, 2), Some(true));
    }

    pub(crate) fn check(kind: CheckKind) -> HealthCheck {
        HealthCheck {
            kind,
            interval_ms: 100,
            timeout_ms: 1000,
            fall: 1,
            rise: 1,
            retry_interval_ms: None,
            alpha: None,
            path: None,
            expect_status: None,
            urls: Vec::new(),
            virtualhost: None,
            tls_verify: false,
            tls_ca: None,
            tls_server_name: None,
            command: None,
            port: None,
        }
    }

    #[tokio::test]
    async fn probes_a_local_http_server_and_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            for status in ["200 OK", "500 Oops"] {
                let (mut s, _) = listener.accept().await.expect("accept");
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let mut c = check(CheckKind::Http);
        c.path = Some("/health".into());
        let t = Target::new(&c, false, "127.0.0.1".parse().expect("ip"), port);
        assert_eq!(t.probe().await, Ok(()));
        let second = t.probe().await;
        assert!(
            second.as_ref().is_err_and(|e| e.contains("500")),
            "{second:?}"
        );
        server.await.expect("server");
        // Nothing listens there any more.
        let tcp = Target::new(&check(CheckKind::Tcp), false, t.address, port);
        assert!(tcp.probe().await.is_err());
    }
}
