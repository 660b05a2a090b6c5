//! What starts and stops together: a sync group with its members, or one instance
//! outside any group. vznetd reloads unit by unit; `vznet-vrrp` runs them all.
//!
//! A sync group's members each run their own [`Instance`]; a task of the unit holds
//! the group's [`GroupSync`], takes the members' reports and hands them its events,
//! and runs the group's notify hooks.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::instance::{GroupLink, Instance, InstanceHandle, Status};
use super::notify::{state_name, Notification, Notifier, NotifyHooks};
use super::router::Router;
use super::Error;
use crate::machine::State;
use crate::settings::{Instance as InstanceSettings, Script, Settings, SyncGroup, Tracked};
use crate::sync_group::{GroupSync, MemberReport};

/// How long a unit's members get to stop gracefully, and its stop hooks to run.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// A unit of the settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// An instance in no sync group.
    Instance(String),
    /// A sync group and its members.
    SyncGroup(String),
}

/// Everything a unit runs from: a changed unit is restarted on reload, an unchanged
/// one keeps running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitSettings {
    instances: Vec<InstanceSettings>,
    group: Option<SyncGroup>,
    scripts: Vec<Script>,
}

impl UnitSettings {
    /// The member instances' settings, in the unit's order.
    pub fn instances(&self) -> &[InstanceSettings] {
        &self.instances
    }

    /// The sync group's name, for a group.
    pub fn group_name(&self) -> Option<&str> {
        self.group.as_ref().map(|g| g.name.as_str())
    }

    /// When `new` differs from these settings only in members' priorities, the
    /// new priority of each member (in the unit's order): a running unit takes
    /// them as it runs, keeping its state, as keepalived does on a reload. `None`
    /// for any other change, and for a change into or out of 255 (the address
    /// owner, which runs by other rules): those restart the unit.
    pub fn priority_changes(&self, new: &UnitSettings) -> Option<Vec<u8>> {
        if self.group != new.group
            || self.scripts != new.scripts
            || self.instances.len() != new.instances.len()
        {
            return None;
        }
        let mut out = Vec::with_capacity(new.instances.len());
        for (old, new) in self.instances.iter().zip(&new.instances) {
            let owner = |p: u8| p == 255;
            if old.priority != new.priority && (owner(old.priority) || owner(new.priority)) {
                return None;
            }
            let mut same = old.clone();
            same.priority = new.priority;
            if same != *new {
                return None;
            }
            out.push(new.priority);
        }
        Some(out)
    }
}

impl Unit {
    /// Every unit of `settings`: the sync groups, then the instances outside them.
    pub fn all(settings: &Settings) -> Vec<Unit> {
        let groups = settings
            .vrrp_sync_group
            .iter()
            .map(|g| Unit::SyncGroup(g.name.clone()));
        let alone = settings
            .vrrp
            .iter()
            .filter(|i| settings.sync_group_of(&i.name).is_none())
            .map(|i| Unit::Instance(i.name.clone()));
        groups.chain(alone).collect()
    }

    /// The instance names of the unit.
    pub fn members<'a>(&'a self, settings: &'a Settings) -> Vec<&'a str> {
        match self {
            Unit::Instance(name) => vec![name.as_str()],
            Unit::SyncGroup(name) => settings
                .vrrp_sync_group
                .iter()
                .find(|g| g.name == *name)
                .map(|g| g.group.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        }
    }

    /// What the unit runs from in `settings`.
    pub fn settings(&self, settings: &Settings) -> UnitSettings {
        let instances: Vec<InstanceSettings> = self
            .members(settings)
            .iter()
            .filter_map(|m| settings.instance(m).cloned())
            .collect();
        let group = match self {
            Unit::Instance(_) => None,
            Unit::SyncGroup(name) => settings
                .vrrp_sync_group
                .iter()
                .find(|g| g.name == *name)
                .cloned(),
        };
        let mut scripts: Vec<Script> = Vec::new();
        for i in &instances {
            for t in settings.tracked(i) {
                if let Tracked::Script { script, .. } = t {
                    if !scripts.contains(script) {
                        scripts.push(script.clone());
                    }
                }
            }
        }
        UnitSettings {
            instances,
            group,
            scripts,
        }
    }
}

/// A running unit.
#[derive(Debug)]
pub struct RunningUnit {
    handles: Vec<InstanceHandle>,
    stop: watch::Sender<bool>,
    members: Vec<tokio::task::JoinHandle<Status>>,
    group: Option<tokio::task::JoinHandle<()>>,
}

impl RunningUnit {
    /// Sets every member up, then runs them. If one cannot be set up, none runs and
    /// what the others made (virtual MAC interfaces) is removed.
    pub async fn start(
        router: &Router,
        settings: &Settings,
        unit: &Unit,
    ) -> Result<RunningUnit, Error> {
        let mut instances = Vec::new();
        for name in unit.members(settings) {
            match Instance::with_router(router, settings, name).await {
                Ok(i) => instances.push(i),
                Err(e) => {
                    for i in instances {
                        i.discard().await;
                    }
                    return Err(Error::Member {
                        instance: name.to_owned(),
                        source: Box::new(e),
                    });
                }
            }
        }
        let group = match unit {
            Unit::SyncGroup(name) => settings.vrrp_sync_group.iter().find(|g| g.name == *name),
            Unit::Instance(_) => None,
        };
        let group_task = group.map(|g| {
            let (reports, rx) = mpsc::unbounded_channel();
            for (index, i) in instances.iter_mut().enumerate() {
                i.join_group(GroupLink {
                    name: g.name.clone(),
                    index,
                    reports: reports.clone(),
                });
            }
            let handles = instances.iter().map(Instance::handle).collect();
            tokio::spawn(coordinate(g.clone(), handles, rx))
        });
        let handles: Vec<InstanceHandle> = instances.iter().map(Instance::handle).collect();
        let (stop, stopped) = watch::channel(false);
        let members = instances
            .into_iter()
            .map(|i| {
                let mut stopped = stopped.clone();
                tokio::spawn(i.run(async move {
                    // An error means the sender is gone: stop too.
                    let _ = stopped.wait_for(|s| *s).await;
                }))
            })
            .collect();
        Ok(RunningUnit {
            handles,
            stop,
            members,
            group: group_task,
        })
    }

    /// The members' handles, in the unit's order.
    pub fn handles(&self) -> &[InstanceHandle] {
        &self.handles
    }

    /// Stops every member gracefully (a Master sends priority 0 and gives back what it
    /// holds), then the group's stop hooks run; returns the members' final status.
    pub async fn stop(self) -> Vec<Status> {
        self.stop.send_replace(true);
        let mut statuses = Vec::new();
        for m in self.members {
            match tokio::time::timeout(STOP_WAIT, m).await {
                Ok(Ok(s)) => statuses.push(s),
                Ok(Err(e)) => tracing::error!(error = %e, "VRRP instance task failed"),
                Err(_) => tracing::error!("VRRP instance did not stop in time"),
            }
        }
        if let Some(g) = self.group {
            let _ = tokio::time::timeout(STOP_WAIT, g).await;
        }
        statuses
    }
}

/// The sync group's task: members' reports in, group events out, group hooks run.
/// Ends when every member has stopped, with the stop hooks.
async fn coordinate(
    group: SyncGroup,
    members: Vec<InstanceHandle>,
    mut reports: mpsc::UnboundedReceiver<(usize, MemberReport)>,
) {
    let hooks = NotifyHooks {
        master: group.notify_master.clone(),
        backup: group.notify_backup.clone(),
        fault: group.notify_fault.clone(),
        stop: group.notify_stop.clone(),
        any: group.notify.clone(),
        timeout: Duration::from_millis(group.notify_timeout_ms),
    };
    let notifier = (!hooks.is_empty()).then(|| Notifier::spawn(group.name.clone(), hooks.timeout));
    let notify = |from: &str, to: &str| {
        let Some(n) = &notifier else { return };
        let env = vec![
            ("VRRP_GROUP".to_owned(), group.name.clone()),
            ("VRRP_STATE".to_owned(), to.to_owned()),
            ("VRRP_PREVIOUS_STATE".to_owned(), from.to_owned()),
        ];
        let own = hooks.own(to);
        let argvs = (!own.is_empty())
            .then(|| own.to_vec())
            .into_iter()
            .chain(hooks.generic_named("GROUP", &group.name, to, 0));
        for argv in argvs {
            n.notify(Notification {
                argv,
                env: env.clone(),
            });
        }
    };
    let mut sync = GroupSync::new(members.len());
    // The senders live in the members: the channel closes once they all stopped.
    while let Some((index, report)) = reports.recv().await {
        let from = sync.state();
        let (events, changed) = sync.report(index, report);
        for (member, event) in events {
            if let Some(h) = members.get(member) {
                h.group_event(event);
            }
        }
        if let Some(to) = changed {
            tracing::info!(group = %group.name, from = ?from, to = ?to, "sync group state changed");
            if to != State::Initialize {
                notify(state_name(from), state_name(to));
            }
        }
    }
    notify(state_name(sync.state()), "STOP");
    if let Some(n) = notifier {
        n.finish(STOP_WAIT).await;
    }
}
