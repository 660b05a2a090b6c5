//! The protocol thread: a runtime of its own for the VRRP instances, so that adverts,
//! Master_Down timers and gratuitous ARP never wait for the engine (a netlink dump of
//! 1000 namespaces, a plan, an nftables commit, a config load). The engine talks to
//! it over a bounded channel and never waits for it while holding anything.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use vrrp::settings::Settings;

use super::vrrp::Instances;
use crate::status::VrrpStatus;

/// Failed instances (their interface is not there yet) are retried this often.
const RETRY: Duration = Duration::from_secs(1);

enum Msg {
    Sync(Box<Settings>, oneshot::Sender<()>),
    Status(oneshot::Sender<Vec<VrrpStatus>>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to the protocol thread.
#[derive(Debug, Clone)]
pub struct Protocol {
    tx: mpsc::Sender<Msg>,
}

impl Protocol {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Protocol> {
        let (tx, rx) = mpsc::channel(16);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("vznetd-protocol".into())
            .spawn(move || {
                // A busy 2-core host repairing 1000 VEs must still send its
                // adverts on time.
                vrrp::io::timer_thread::raise_priority("protocol");
                rt.block_on(serve(rx));
            })?;
        Ok(Protocol { tx })
    }

    /// Makes the running instances match `wanted`.
    pub async fn sync(&self, wanted: Settings) {
        let (reply, done) = oneshot::channel();
        if self
            .tx
            .send(Msg::Sync(Box::new(wanted), reply))
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    /// Every instance's state.
    pub async fn status(&self) -> Vec<VrrpStatus> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::Status(reply)).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Stops every instance gracefully (priority 0, VIPs removed) and the thread.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Msg::Shutdown(reply)).await.is_ok() {
            let _ = done.await;
        }
    }
}

async fn serve(mut rx: mpsc::Receiver<Msg>) {
    let mut instances = Instances::default();
    let mut wanted = Settings::default();
    let mut retry = tokio::time::interval(RETRY);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Sync(w, reply)) => {
                    wanted = *w;
                    instances.sync(&wanted).await;
                    let _ = reply.send(());
                }
                Some(Msg::Status(reply)) => {
                    let _ = reply.send(instances.status());
                }
                Some(Msg::Shutdown(reply)) => {
                    instances.shutdown().await;
                    let _ = reply.send(());
                    break;
                }
            },
            _ = retry.tick(), if instances.has_failed() => instances.sync(&wanted).await,
        }
    }
}
