//! The VRRP instances of `[[vrrp]]`, run by the agent with the vrrp crate's I/O
//! runner. A reload stops instances that went or changed (gracefully: priority
//! 0) and starts new ones; an instance that cannot start (its interface is not
//! there yet) is retried at every reconcile.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use netcfg::model::{Vrrp, VrrpChecksum};
use tokio::sync::oneshot;
use vrrp::io::{Instance, InstanceHandle, InstanceSpec, NotifyHooks, Router, TrackedInterface};
use vrrp::{Centiseconds, InstanceConfig, V2Auth, V3Ipv4Checksum, Version, VirtualAddresses, Vrid};

pub use crate::status::VrrpStatus;

struct Running {
    config: Vrrp,
    handle: InstanceHandle,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// The agent's VRRP instances.
#[derive(Default)]
pub struct Instances {
    /// One socket per interface and family and one netlink connection for all
    /// instances; made with the first.
    router: Option<Router>,
    running: BTreeMap<String, Running>,
    failed: BTreeMap<String, (Vrrp, String)>,
}

impl std::fmt::Debug for Instances {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("running", &self.running.keys().collect::<Vec<_>>())
            .finish()
    }
}

fn spec(v: &Vrrp) -> Result<InstanceSpec, String> {
    let vrid = Vrid::new(v.vrid).ok_or("VRID 0 is reserved")?;
    let version = if v.version == 2 {
        Version::V2
    } else {
        Version::V3
    };
    let v4: Vec<Ipv4Addr> = v
        .virtual_ips
        .iter()
        .filter_map(|a| match a.addr() {
            IpAddr::V4(x) => Some(x),
            _ => None,
        })
        .collect();
    let v6: Vec<Ipv6Addr> = v
        .virtual_ips
        .iter()
        .filter_map(|a| match a.addr() {
            IpAddr::V6(x) => Some(x),
            _ => None,
        })
        .collect();
    // An unspecified primary address means: discover it on the interface.
    let (addrs, primary) = if v6.is_empty() {
        (VirtualAddresses::V4(v4), IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    } else {
        (VirtualAddresses::V6(v6), IpAddr::V6(Ipv6Addr::UNSPECIFIED))
    };
    let mut c = InstanceConfig::new(vrid, version, primary, addrs);
    c.priority = v.priority;
    c.advertisement_interval =
        Centiseconds(u16::try_from(v.advert_interval_ms / 10).map_err(|_| "interval too large")?);
    c.preempt_mode = v.preempt;
    c.preempt_delay = Duration::from_millis(v.preempt_delay_ms);
    c.accept_mode = v.accept;
    c.v3_ipv4_checksum = match v.checksum {
        VrrpChecksum::WithPseudoHeader => V3Ipv4Checksum::WithPseudoHeader,
        VrrpChecksum::WithoutPseudoHeader => V3Ipv4Checksum::WithoutPseudoHeader,
    };
    if let Some(pw) = &v.password {
        c.auth = V2Auth::simple_password(pw.as_bytes()).map_err(|e| e.to_string())?;
    }
    let mut s = InstanceSpec::new(v.name.clone(), v.interface.clone(), c);
    s.prefix_lengths = v
        .virtual_ips
        .iter()
        .map(|a| (a.addr(), a.prefix_len()))
        .collect();
    s.unicast_peers = v.unicast_peers.clone();
    s.track = v
        .track
        .iter()
        .map(|t| TrackedInterface {
            name: t.interface().to_owned(),
            weight: t.weight(),
        })
        .collect();
    s.notify = NotifyHooks {
        master: v.notify_master.clone(),
        backup: v.notify_backup.clone(),
        fault: v.notify_fault.clone(),
        any: v.notify.clone(),
        timeout: Duration::from_millis(v.notify_timeout_ms),
    };
    s.use_vmac = v.use_vmac;
    Ok(s)
}

impl Instances {
    /// Makes the running set match `wanted`.
    pub async fn sync(&mut self, wanted: &[Vrrp]) {
        let names: Vec<String> = self.running.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .iter()
                .any(|w| w.name == name && self.running.get(&name).is_some_and(|r| &r.config == w));
            if !keep {
                if let Some(r) = self.running.remove(&name) {
                    tracing::info!(instance = %name, "stopping VRRP instance (priority 0)");
                    let _ = r.stop.send(());
                    let _ = tokio::time::timeout(Duration::from_secs(5), r.task).await;
                }
            }
        }
        self.failed
            .retain(|name, _| wanted.iter().any(|w| &w.name == name));
        for w in wanted {
            if self.running.contains_key(&w.name) {
                continue;
            }
            match self.start(w).await {
                Ok(r) => {
                    tracing::info!(instance = %w.name, interface = %w.interface, vrid = w.vrid, "VRRP instance started");
                    self.failed.remove(&w.name);
                    self.running.insert(w.name.clone(), r);
                }
                Err(e) => {
                    if self.failed.get(&w.name).is_none_or(|(_, old)| old != &e) {
                        tracing::error!(instance = %w.name, error = %e, "VRRP instance cannot start; retrying at each reconcile");
                    }
                    self.failed.insert(w.name.clone(), (w.clone(), e));
                }
            }
        }
    }

    async fn start(&mut self, v: &Vrrp) -> Result<Running, String> {
        let router = match &self.router {
            Some(r) => r.clone(),
            None => {
                let r = Router::new().map_err(|e| e.to_string())?;
                self.router = Some(r.clone());
                r
            }
        };
        let instance = Instance::with_router(&router, spec(v)?)
            .await
            .map_err(|e| e.to_string())?;
        let handle = instance.handle();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            instance
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Running {
            config: v.clone(),
            handle,
            stop,
            task,
        })
    }

    /// True when an instance could not start (and is worth trying again).
    pub fn has_failed(&self) -> bool {
        !self.failed.is_empty()
    }

    /// Stops every instance gracefully (priority 0, VIPs removed).
    pub async fn shutdown(&mut self) {
        self.sync(&[]).await;
    }

    /// Status of every instance, running or failed.
    pub fn status(&self) -> Vec<VrrpStatus> {
        let mut out: Vec<VrrpStatus> = self
            .running
            .values()
            .map(|r| {
                let s = r.handle.status();
                VrrpStatus {
                    name: s.name.clone(),
                    interface: r.config.interface.clone(),
                    vrid: r.config.vrid,
                    state: format!("{:?}", s.state),
                    priority: s.priority,
                    master: s.master_address,
                    adverts_sent: s.io.adverts_sent,
                    adverts_received: s.machine.adverts_received,
                    master_transitions: s.machine.master_transitions,
                    drops: s
                        .drops
                        .iter()
                        .filter(|(_, n)| *n > 0)
                        .map(|(r, n)| (r.name().to_string(), n))
                        .collect(),
                    tracked_down: s.tracked_down.clone(),
                    vmac_interface: s.vmac_interface.clone(),
                    error: None,
                }
            })
            .collect();
        out.extend(self.failed.values().map(|(v, e)| VrrpStatus {
            name: v.name.clone(),
            interface: v.interface.clone(),
            vrid: v.vrid,
            state: "Failed".into(),
            priority: v.priority,
            error: Some(e.clone()),
            ..VrrpStatus::default()
        }));
        out
    }
}
