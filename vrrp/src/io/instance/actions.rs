//! Carrying out the machine's actions; the receive path; hooks and status.

use std::net::IpAddr;

use super::{Instance, Status};
use crate::io::address_worker::AddressJob;
use crate::io::notify::{state_name, Notification};
use crate::io::socket::Datagram;
use crate::io::Error;
use crate::machine::{Action, State};
use crate::reception::{receive_ipv4, receive_ipv6, Received};
use crate::sync_group::MemberReport;
use crate::track::TrackerKind;
use crate::wire::{Endpoints, VrrpRepr};

impl Instance {
    pub(super) async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::StateChanged { from, to, reason } => {
                    if let Some(v) = &self.vmac {
                        if to == State::Master {
                            if let Err(e) = v.activate().await {
                                self.count_address_errors("bringing the virtual MAC up", vec![e]);
                            }
                        }
                    }
                    self.notify(from, to, format!("{reason:?}"));
                    tracing::info!(
                        instance = %self.name,
                        interface = %self.interface,
                        vrid = self.config().vrid.get(),
                        ?from,
                        ?to,
                        ?reason,
                        priority = self.machine.priority(),
                        master = ?self.machine.master_address(),
                        "state changed"
                    );
                    self.report(MemberReport::State(to));
                }
                Action::SendAdvert(advert) => self.send_advert(&advert).await,
                Action::AddVirtualAddresses => {
                    self.address_job(AddressJob::Add);
                    self.virtual_addresses_present = true;
                }
                Action::RemoveVirtualAddresses => self.remove_virtual_addresses(),
                Action::SendGratuitous { count } => {
                    self.address_job(AddressJob::Announce(count));
                }
                Action::WantsMaster(wants) => {
                    tracing::info!(instance = %self.name, wants, "sync group: waiting for the other members to become Master");
                    self.report(MemberReport::WantsMaster(wants));
                }
            }
        }
    }

    async fn send_advert(&mut self, advert: &VrrpRepr) {
        let config = self.machine.config();
        let source = config.primary_address;
        let destinations: Vec<IpAddr> = if self.unicast_peers.is_empty() {
            vec![config.advert_endpoints().destination()]
        } else {
            self.unicast_peers.clone()
        };
        for destination in destinations {
            let endpoints = endpoints(source, destination);
            let bytes = match endpoints.and_then(|e| {
                advert
                    .to_bytes(&e, config.v3_ipv4_checksum)
                    .map_err(|e| e.to_string())
            }) {
                Ok(b) => b,
                Err(e) => {
                    self.io.send_errors += 1;
                    tracing::error!(instance = %self.name, error = %e, "cannot emit advert");
                    continue;
                }
            };
            match self
                .send_socket
                .socket()
                .send(&bytes, source, destination)
                .await
            {
                Ok(()) => self.io.adverts_sent += 1,
                Err(e) => {
                    self.io.send_errors += 1;
                    let cause = (destination, e.raw_os_error());
                    if let Some(left_out) =
                        self.send_warnings.admit(std::time::Instant::now(), &cause)
                    {
                        tracing::warn!(
                            instance = %self.name,
                            %destination,
                            error = %e,
                            suppressed = left_out.this_cause,
                            other_suppressed = left_out.other_causes,
                            "sending advert failed"
                        );
                    }
                }
            }
        }
    }

    /// The receive rules of §7.1, plus the unicast peer filter.
    pub(super) fn validate(&mut self, buf: &[u8], datagram: Datagram) -> Option<Received> {
        let config = self.machine.config();
        let lookup = |vrid| (vrid == config.vrid).then_some(config);
        let result = match datagram {
            Datagram::V4 { len } => receive_ipv4(buf.get(..len)?, lookup),
            Datagram::V6 {
                len,
                source,
                destination,
                hop_limit,
            } => receive_ipv6(buf.get(..len)?, source, destination, hop_limit, lookup),
        };
        let received = match result {
            Ok(r) => r,
            Err(discard) => {
                self.drops.record(discard.reason());
                tracing::debug!(instance = %self.name, reason = %discard, "advert discarded");
                return None;
            }
        };
        if !self.unicast_peers.is_empty() && !self.unicast_peers.contains(&received.source) {
            self.io.not_from_peer += 1;
            tracing::debug!(instance = %self.name, source = %received.source, "advert from a non-peer discarded");
            return None;
        }
        if received.address_list_mismatch {
            self.io.address_list_mismatches += 1;
            // RFC 5798 §7.1: "log the event" of a misconfiguration, and go on;
            // once per source and list per interval, however many adverts.
            let addresses = received.advert.addresses();
            let cause = (received.source, addresses);
            if let Some(left_out) = self
                .mismatch_warnings
                .admit(std::time::Instant::now(), &cause)
            {
                tracing::warn!(
                    instance = %self.name,
                    source = %received.source,
                    addresses = ?cause.1,
                    suppressed = left_out.this_cause,
                    other_suppressed = left_out.other_causes,
                    "advert's virtual addresses differ from ours"
                );
            }
        }
        Some(received)
    }

    pub(super) fn remove_virtual_addresses(&mut self) {
        self.address_job(AddressJob::Remove);
        self.virtual_addresses_present = false;
    }

    fn address_job(&self, job: AddressJob) {
        if let Some(w) = &self.addresses {
            w.push(job);
        }
    }

    fn count_address_errors(&mut self, what: &str, errors: Vec<Error>) {
        for e in errors {
            self.io_address_errors += 1;
            tracing::error!(instance = %self.name, error = %e, "{what} failed");
        }
    }

    /// The environment of this instance's hooks when it enters `to`.
    fn hook_environment(&self, from: &str, to: &str, reason: String) -> Vec<(String, String)> {
        let config = self.machine.config();
        let vips = config
            .virtual_addresses
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(" ");
        let mut env = vec![
            ("VRRP_STATE".to_owned(), to.to_owned()),
            ("VRRP_PREVIOUS_STATE".to_owned(), from.to_owned()),
            ("VRRP_REASON".to_owned(), reason),
            ("VRRP_INSTANCE".to_owned(), self.name.clone()),
            ("VRRP_INTERFACE".to_owned(), self.interface.clone()),
            ("VRRP_VRID".to_owned(), config.vrid.get().to_string()),
            (
                "VRRP_PRIORITY".to_owned(),
                self.machine.priority().to_string(),
            ),
            ("VRRP_VIRTUAL_IPS".to_owned(), vips),
        ];
        if let Some(g) = &self.group {
            env.push(("VRRP_GROUP".to_owned(), g.name.clone()));
        }
        env
    }

    /// Queues the notify hooks of a state change.
    fn notify(&mut self, from: State, to: State, reason: String) {
        let env = self.hook_environment(state_name(from), state_name(to), reason);
        let argvs = self
            .hooks
            .for_state(to, &self.name, self.machine.priority());
        self.queue_hooks(argvs, env);
    }

    /// Queues `notify_stop` and the generic hook with `STOP` (keepalived's stop).
    pub(super) fn notify_stop(&mut self) {
        let from = state_name(self.machine.state());
        let env = self.hook_environment(from, "STOP", "Shutdown".into());
        let argvs = self.hooks.for_stop(&self.name, self.machine.priority());
        self.queue_hooks(argvs, env);
    }

    fn queue_hooks(&mut self, argvs: Vec<Vec<String>>, env: Vec<(String, String)>) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        for argv in argvs {
            self.io.notifications += 1;
            notifier.notify(Notification {
                argv,
                env: env.clone(),
            });
        }
    }

    pub(super) fn publish(&mut self) {
        if let Some(w) = &self.addresses {
            use std::sync::atomic::Ordering::Relaxed;
            self.io.announcements_sent = w.counters.announcements_sent.load(Relaxed);
            self.io.address_errors = self.io_address_errors + w.counters.errors.load(Relaxed);
        }
        let tracked_down = self
            .feeds
            .tracking
            .failing()
            .map(|t| match t.kind {
                TrackerKind::Interface => t.name.clone(),
                TrackerKind::Script => format!("script {}", t.name),
                TrackerKind::File => format!("file {}", t.name),
                TrackerKind::Process => format!("process {}", t.name),
            })
            .collect();
        let status = Status {
            name: self.name.clone(),
            state: self.machine.state(),
            priority: self.machine.priority(),
            master_address: self.machine.master_address(),
            virtual_addresses_present: self.virtual_addresses_present,
            interface_up: self.machine.is_interface_up(),
            tracked_down,
            vmac_interface: self.vmac.as_ref().map(|v| v.name.clone()),
            sync_group: self.group.as_ref().map(|g| g.name.clone()),
            machine: *self.machine.counters(),
            drops: self.drops.clone(),
            io: self.io,
        };
        self.status.send_if_modified(|s| {
            if *s == status {
                false
            } else {
                *s = status;
                true
            }
        });
    }
}

/// The endpoints of an advert from `source` to `destination`, for the checksum.
fn endpoints(source: IpAddr, destination: IpAddr) -> Result<Endpoints, String> {
    match (source, destination) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => Ok(Endpoints::V4 {
            source,
            destination,
        }),
        (IpAddr::V6(source), IpAddr::V6(destination)) => Ok(Endpoints::V6 {
            source,
            destination,
        }),
        _ => Err(format!(
            "{source} and {destination} are of different families"
        )),
    }
}
