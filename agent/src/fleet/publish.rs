//! The status publisher: the host's status at `PREFIX/status/NAME`, under a lease
//! renewed every third of its TTL, written when it changes (at once after a
//! config verdict, else checked every second). A host that dies stops renewing
//! and its key goes when the lease expires; an agent that stops revokes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_rustls::rustls::ClientConfig;

use super::etcd::{Client, EtcdError};
use super::report::HostReport;
use super::{Backoff, Context, ATTEMPT_TIMEOUT};

/// How often the status is compared with what was published.
const CHECK: Duration = Duration::from_secs(1);

/// The publisher's state.
#[derive(Debug)]
pub struct Publisher {
    ctx: Arc<Context>,
    client: Client,
    changed: Arc<Notify>,
    lost: Arc<Notify>,
    lease: Option<i64>,
    renew_at: Instant,
    published: Option<Vec<u8>>,
}

impl Publisher {
    /// A publisher; nothing is sent until it runs.
    pub fn new(
        ctx: Arc<Context>,
        tls: Option<Arc<ClientConfig>>,
        changed: Arc<Notify>,
        lost: Arc<Notify>,
    ) -> Publisher {
        Publisher {
            client: Client::new(ctx.fleet.endpoints.clone(), tls, ATTEMPT_TIMEOUT),
            ctx,
            changed,
            lost,
            lease: None,
            renew_at: Instant::now(),
            published: None,
        }
    }

    /// Publishes until the agent stops.
    pub async fn run(&mut self) {
        let mut backoff = Backoff::new();
        loop {
            match self.once().await {
                Ok(()) => {
                    backoff.reset();
                    tokio::select! {
                        _ = self.changed.notified() => {}
                        _ = tokio::time::sleep(CHECK) => {}
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot publish the status");
                    self.lost.notify_waiters();
                    // Written again in full once etcd answers.
                    self.published = None;
                    tokio::time::sleep(backoff.step()).await;
                }
            }
        }
    }

    async fn once(&mut self) -> Result<(), EtcdError> {
        let ttl = self.ctx.fleet.status_ttl_s.max(2);
        let lease = match self.lease {
            Some(l) => l,
            None => {
                let l = self.client.lease_grant(ttl).await?;
                self.lease = Some(l);
                self.renew_at = Instant::now() + Duration::from_secs(ttl) / 3;
                self.published = None;
                l
            }
        };
        if Instant::now() >= self.renew_at {
            if self.client.lease_keepalive(lease).await? <= 0 {
                // Expired while etcd was away: a new lease, the key again.
                tracing::info!("status lease expired; taking a new one");
                self.lease = None;
                return Box::pin(self.once()).await;
            }
            self.renew_at = Instant::now() + Duration::from_secs(ttl) / 3;
        }
        let doc = self.document().await;
        if self.published.as_ref() != Some(&doc) {
            let key = self.ctx.fleet.keys.status(&self.ctx.host);
            self.client.put(key.as_bytes(), &doc, lease).await?;
            self.published = Some(doc);
        }
        Ok(())
    }

    async fn document(&self) -> Vec<u8> {
        let status = self.ctx.agent.status().await;
        let fleet = self
            .ctx
            .status
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        let report = HostReport::of(&status, &fleet, &fleet.ves, &self.ctx.state_dir);
        serde_json::to_vec(&report).unwrap_or_default()
    }

    /// Revokes the lease, so the status key goes now (bounded: etcd may be away).
    pub async fn retire(&mut self) {
        if let Some(l) = self.lease.take() {
            let _ = tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.lease_revoke(l)).await;
        }
    }
}
