//! "At most one VRRP master at any time", seen from the wire: a watcher on a third
//! host records every advert of the virtual router with its source, and a run of
//! alternating senders means two routers believe they are master.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

/// IANA protocol number of VRRP.
const VRRP: i32 = 112;

/// Sender changes in a row (each within [`Mastership::window`] of the last) that
/// only two masters explain. A handover is one change; a preemption that races
/// the old master's next advert is at most three (A B A B).
const ALTERNATIONS: u32 = 4;

/// What the watcher found so far.
#[derive(Debug, Default)]
struct Seen {
    adverts: u64,
    last_source: Option<Ipv4Addr>,
    last_change: Option<Instant>,
    changes_in_row: u32,
    handovers: u64,
    violations: Vec<String>,
}

/// A running watch of one VRID's adverts.
#[derive(Debug)]
pub struct Mastership {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Mastership {
    /// Starts watching adverts for `vrid` that reach the netns at `netns`; changes
    /// of sender closer together than `window` count as one episode.
    /// `local` is the watching host's address on the LAN.
    pub fn start(
        netns: std::path::PathBuf,
        local: Ipv4Addr,
        vrid: u8,
        window: Duration,
    ) -> Result<Mastership> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (flag, record) = (stop.clone(), seen.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || -> Result<()> {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&ns),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .context("setns")?;
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(VRRP)))
                .context("raw VRRP socket")?;
            // The kernel delivers 224.0.0.18 only to hosts that joined the group.
            socket
                .join_multicast_v4(&Ipv4Addr::new(224, 0, 0, 18), &local)
                .context("joining 224.0.0.18")?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = ready_tx.send(());
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
            while !flag.load(Ordering::Relaxed) {
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock
                                | std::io::ErrorKind::TimedOut
                                | std::io::ErrorKind::Interrupted
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                };
                let now = Instant::now();
                // SAFETY: recv initialised the first n bytes.
                let bytes: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                let Some((source, id, priority)) = parse(&bytes) else {
                    continue;
                };
                if id != vrid {
                    continue;
                }
                let mut s = record.lock().unwrap_or_else(|p| p.into_inner());
                s.note(source, priority, now, window);
            }
            Ok(())
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("advert watch did not start")?;
        Ok(Mastership {
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// Adverts seen, handovers seen, and the violations found since the last call.
    pub fn take(&self) -> (u64, u64, Vec<String>) {
        let mut s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        (s.adverts, s.handovers, std::mem::take(&mut s.violations))
    }

    /// Stops the watcher; an error if its thread failed.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => anyhow::bail!("advert watch panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for Mastership {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Seen {
    fn note(&mut self, source: Ipv4Addr, priority: u8, now: Instant, window: Duration) {
        self.adverts += 1;
        let previous = self.last_source.replace(source);
        if previous.is_none() || previous == Some(source) {
            return;
        }
        self.handovers += 1;
        let close = self
            .last_change
            .is_some_and(|t| now.duration_since(t) < window);
        self.changes_in_row = if close { self.changes_in_row + 1 } else { 1 };
        self.last_change = Some(now);
        // Priority 0 is a master resigning (RFC 5798 6.4.3): it is not a master.
        if self.changes_in_row == ALTERNATIONS && priority != 0 {
            self.violations.push(format!(
                "two VRRP masters: adverts alternated between senders {ALTERNATIONS} times, each within {} ms of the last (latest from {source})",
                window.as_millis()
            ));
        }
    }
}

/// (source address, VRID, priority) of an IPv4 VRRP packet, header included.
fn parse(packet: &[u8]) -> Option<(Ipv4Addr, u8, u8)> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let src = Ipv4Addr::new(
        *packet.get(12)?,
        *packet.get(13)?,
        *packet.get(14)?,
        *packet.get(15)?,
    );
    Some((src, *packet.get(ihl + 1)?, *packet.get(ihl + 2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seq: &[(u8, u64)]) -> Seen {
        let t0 = Instant::now();
        let mut s = Seen::default();
        for &(who, ms) in seq {
            s.note(
                Ipv4Addr::new(10, 0, 0, who),
                100,
                t0 + Duration::from_millis(ms),
                Duration::from_millis(300),
            );
        }
        s
    }

    #[test]
    fn a_handover_and_a_preemption_race_are_not_two_masters() {
        let s = feed(&[(1, 0), (1, 100), (2, 150), (1, 200), (2, 250), (2, 350)]);
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(s.handovers, 3);
    }

    #[test]
    fn two_routers_advertising_together_are_caught() {
        let s = feed(&[(1, 0), (2, 50), (1, 100), (2, 150), (1, 200), (2, 250)]);
        assert_eq!(s.violations.len(), 1, "{:?}", s.violations);
    }

    #[test]
    fn handovers_far_apart_are_fine() {
        let s = feed(&[(1, 0), (2, 1000), (1, 2000), (2, 3000), (1, 4000)]);
        assert!(s.violations.is_empty());
    }
}
