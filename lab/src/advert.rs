//! Watching a VRRP master from the wire: the arrival time of each advert one router
//! sends, seen from another host, so a test or bench can tell the longest silence.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Protocol, Socket, Type};

use crate::Host;

/// IANA protocol number of VRRP.
const VRRP: i32 = 112;

/// A running watch.
#[derive(Debug)]
pub struct AdvertWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Vec<Instant>>>,
}

/// The adverts a watch saw.
#[derive(Debug, Clone)]
pub struct Adverts {
    /// Arrival times, in order.
    pub times: Vec<Instant>,
}

impl AdvertWatch {
    /// Starts recording the IPv4 VRRP adverts from `source` that reach `host`.
    pub fn start(host: &Host, source: Ipv4Addr) -> Result<AdvertWatch> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let netns = host.netns_path();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || -> Result<Vec<Instant>> {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(
                std::os::fd::AsFd::as_fd(&ns),
                nix::sched::CloneFlags::CLONE_NEWNET,
            )
            .context("setns")?;
            // Real-time, so the watch itself is not late on a busy host (what it
            // measures is the sender's silence, not its own turn on the CPU).
            let param = libc::sched_param { sched_priority: 2 };
            // SAFETY: a live sched_param; 0 is the calling thread.
            unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
            let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(VRRP)))
                .context("raw VRRP socket")?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let _ = ready_tx.send(());
            let mut times = Vec::new();
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
            while !flag.load(Ordering::Relaxed) {
                let n = match socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue
                    }
                    Err(e) => return Err(e.into()),
                };
                let now = Instant::now();
                if n >= 20 {
                    // SAFETY: recv initialised the first n bytes.
                    let src = unsafe {
                        [
                            buf[12].assume_init(),
                            buf[13].assume_init(),
                            buf[14].assume_init(),
                            buf[15].assume_init(),
                        ]
                    };
                    if Ipv4Addr::from(src) == source {
                        times.push(now);
                    }
                }
            }
            Ok(times)
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .context("advert watch did not start")?;
        Ok(AdvertWatch { stop, thread })
    }

    /// Stops and returns what was seen.
    pub fn stop(self) -> Result<Adverts> {
        self.stop.store(true, Ordering::Relaxed);
        let times = self
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("advert watch panicked"))??;
        Ok(Adverts { times })
    }
}

impl Adverts {
    /// The silences between consecutive adverts.
    pub fn gaps(&self) -> Vec<Duration> {
        self.times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The longest silence (zero with fewer than two adverts).
    pub fn max_gap(&self) -> Duration {
        self.gaps().into_iter().max().unwrap_or_default()
    }

    /// The 99th percentile of the silences.
    pub fn p99_gap(&self) -> Duration {
        let mut g = self.gaps();
        if g.is_empty() {
            return Duration::ZERO;
        }
        g.sort();
        g[(g.len() * 99 / 100).min(g.len() - 1)]
    }
}
