//! A tiny backend service and its client, for load-balancing tests and benches.
//!
//! [`serve_backend`] answers on TCP: an HTTP `GET` gets `200` (or `503` while its
//! down-file exists) with the backend's name as the body, then the connection
//! closes; anything else is line mode: every line received is answered with the
//! name, so one connection can be kept open to see which backend it is on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

/// Serves forever on `listen` as `name`. While `down_file` exists, health GETs
/// answer 503.
pub fn serve_backend(name: &str, listen: SocketAddr, down_file: Option<PathBuf>) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let name = name.to_string();
        let down = down_file.clone();
        std::thread::spawn(move || {
            let _ = answer(conn, &name, down.as_deref());
        });
    }
    Ok(())
}

fn answer(conn: TcpStream, name: &str, down: Option<&Path>) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line.starts_with("GET ") {
            // Skip the request headers.
            let mut header = String::new();
            while reader.read_line(&mut header)? > 0 && header.trim() != "" {
                header.clear();
            }
            let status = if down.is_some_and(Path::exists) {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let reply = format!(
                "HTTP/1.0 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
            return writer.write_all(reply.as_bytes());
        }
        writer.write_all(format!("{name}\n").as_bytes())?;
    }
}

/// Runs `f` on a thread inside the netns at `netns` (a `/run/netns/NAME` file).
pub fn in_netns<T: Send + 'static>(
    netns: &Path,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let ns = std::fs::File::open(netns).with_context(|| format!("open {}", netns.display()))?;
    std::thread::spawn(move || {
        nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("netns thread panicked"))?
}

/// One line-mode exchange on a new connection: which backend answered.
pub fn ask_name(addr: SocketAddr, timeout: Duration) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    s.write_all(b"who\n")?;
    let mut buf = [0u8; 128];
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let n = s.read(&mut buf)?;
        anyhow::ensure!(n > 0, "connection closed before an answer");
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).trim().to_string())
}

/// A kept-open line-mode connection.
#[derive(Debug)]
pub struct KeepAlive {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl KeepAlive {
    /// Connects (call from inside the client's netns).
    pub fn connect(addr: SocketAddr, timeout: Duration) -> Result<KeepAlive> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok(KeepAlive { stream, reader })
    }

    /// Asks once; the backend's name.
    pub fn ask(&mut self) -> Result<String> {
        self.stream.write_all(b"who\n")?;
        let mut line = String::new();
        anyhow::ensure!(self.reader.read_line(&mut line)? > 0, "connection closed");
        Ok(line.trim().to_string())
    }
}
