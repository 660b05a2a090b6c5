//! Health checks: what is probed (a [`Target`]), the probes themselves (no
//! forked process except the `command` kind), and the fall/rise hysteresis.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use netcfg::model::{CheckKind, HealthCheck};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One thing to probe. Virtual servers whose backends share an address, port
/// and check settings share one probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// Check kind.
    pub kind: CheckKindKey,
    /// Backend address.
    pub address: IpAddr,
    /// Port probed.
    pub port: u16,
    /// HTTP path.
    pub path: Option<String>,
    /// HTTP status expected.
    pub expect_status: u16,
    /// Command argv.
    pub command: Option<Vec<String>>,
    /// Interval, ms.
    pub interval_ms: u64,
    /// Timeout, ms.
    pub timeout_ms: u64,
    /// Failures to go down.
    pub fall: u32,
    /// Successes to come up.
    pub rise: u32,
}

/// [`CheckKind`] with `Ord`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKindKey {
    /// TCP connect.
    Tcp,
    /// HTTP GET.
    Http,
    /// Command.
    Command,
}

impl Target {
    /// The probe for a backend at `address:port` under `check`.
    pub fn new(check: &HealthCheck, address: IpAddr, port: u16) -> Target {
        Target {
            kind: match check.kind {
                CheckKind::Tcp => CheckKindKey::Tcp,
                CheckKind::Http => CheckKindKey::Http,
                CheckKind::Command => CheckKindKey::Command,
            },
            address,
            port: check.port.unwrap_or(port),
            path: (check.kind == CheckKind::Http)
                .then(|| check.path.clone().unwrap_or_else(|| "/".into())),
            expect_status: check.expect_status.unwrap_or(200),
            command: check.command.clone(),
            interval_ms: check.interval_ms,
            timeout_ms: check.timeout_ms,
            fall: check.fall.max(1),
            rise: check.rise.max(1),
        }
    }

    /// The interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// Probes once; `Err` says why it failed.
    pub async fn probe(&self) -> Result<(), String> {
        let timeout = Duration::from_millis(self.timeout_ms);
        match tokio::time::timeout(timeout, self.probe_inner()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", self.timeout_ms)),
        }
    }

    async fn probe_inner(&self) -> Result<(), String> {
        let addr = SocketAddr::new(self.address, self.port);
        match self.kind {
            CheckKindKey::Tcp => TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("connect {addr}: {e}")),
            CheckKindKey::Http => {
                let path = self.path.as_deref().unwrap_or("/");
                let status = http_get_status(addr, path).await?;
                if status == self.expect_status {
                    Ok(())
                } else {
                    Err(format!(
                        "GET {path}: status {status}, want {}",
                        self.expect_status
                    ))
                }
            }
            CheckKindKey::Command => {
                let argv = self.command.as_deref().unwrap_or_default();
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
    }
}

/// An HTTP/1.0 GET; the status code of the answer.
async fn http_get_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let host = match addr.ip() {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vznetd\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 1024 {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&buf).ok_or_else(|| "no HTTP status line in the answer".to_string())
}

/// `HTTP/1.x NNN ...` -> NNN.
fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split_whitespace();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3).then(|| code.parse().ok())?
}

/// Fall/rise hysteresis of one target. Starts up: a backend is trusted until
/// `fall` checks in a row fail (keepalived's default too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    /// Current verdict.
    pub up: bool,
    /// Consecutive results against the verdict.
    pub streak: u32,
}

impl Default for Hysteresis {
    fn default() -> Self {
        Hysteresis {
            up: true,
            streak: 0,
        }
    }
}

impl Hysteresis {
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
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Busy\r\nx"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20x\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
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
        let check = HealthCheck {
            kind: CheckKind::Http,
            interval_ms: 100,
            timeout_ms: 1000,
            fall: 1,
            rise: 1,
            path: Some("/health".into()),
            expect_status: None,
            command: None,
            port: None,
        };
        let t = Target::new(&check, "127.0.0.1".parse().expect("ip"), port);
        assert_eq!(t.probe().await, Ok(()));
        let second = t.probe().await;
        assert!(
            second.as_ref().is_err_and(|e| e.contains("500")),
            "{second:?}"
        );
        server.await.expect("server");
        // Nothing listens there any more.
        let tcp = Target::new(
            &HealthCheck {
                kind: CheckKind::Tcp,
                path: None,
                ..check
            },
            t.address,
            port,
        );
        assert!(tcp.probe().await.is_err());
    }
}
