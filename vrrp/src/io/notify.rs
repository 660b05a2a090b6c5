//! Notify hooks: programs run on state changes (keepalived's `notify_master`,
//! `notify_backup`, `notify_fault`, `notify`), as argv arrays, never through a shell.
//!
//! `notify_stop` runs when the instance stops. They run one at a time, in the order of
//! the state changes, on a task of their own:
//! the protocol never waits for them. Each gets [`NotifyHooks::timeout`] and is killed
//! after it. The state comes in the environment:
//!
//! | variable | value |
//! |---|---|
//! | `VRRP_STATE` | `MASTER`, `BACKUP`, `FAULT` or `INITIALIZE` |
//! | `VRRP_PREVIOUS_STATE` | the state left |
//! | `VRRP_REASON` | why (`MasterDown`, `Fault`, `Shutdown`, ...) |
//! | `VRRP_INSTANCE`, `VRRP_INTERFACE`, `VRRP_VRID`, `VRRP_PRIORITY` | the instance |
//! | `VRRP_VIRTUAL_IPS` | the virtual addresses, space-separated |
//!
//! | `VRRP_GROUP` | the sync group, for a member of one |
//!
//! The generic `notify` hook also gets keepalived's four arguments appended: `INSTANCE`,
//! the instance name, the state (`STOP` at the end), the priority. A sync group's hooks
//! get `GROUP`, the group's name, its state and 0, and `VRRP_GROUP`, `VRRP_STATE`,
//! `VRRP_PREVIOUS_STATE` in their environment.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::machine::State;

/// Default time a hook may run before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Output of a hook kept for the log.
const OUTPUT_LOGGED: usize = 512;

/// The hooks of one instance; empty argv: none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyHooks {
    pub master: Vec<String>,
    pub backup: Vec<String>,
    pub fault: Vec<String>,
    /// Runs when the instance stops.
    pub stop: Vec<String>,
    /// Runs on every state change (and the stop), after the state's own hook.
    pub any: Vec<String>,
    pub timeout: Duration,
}

impl Default for NotifyHooks {
    fn default() -> NotifyHooks {
        NotifyHooks {
            master: Vec::new(),
            backup: Vec::new(),
            fault: Vec::new(),
            stop: Vec::new(),
            any: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl NotifyHooks {
    pub fn is_empty(&self) -> bool {
        self.master.is_empty()
            && self.backup.is_empty()
            && self.fault.is_empty()
            && self.stop.is_empty()
            && self.any.is_empty()
    }

    /// The argv arrays to run when entering `state`, in order.
    pub fn for_state(&self, state: State, instance: &str, priority: u8) -> Vec<Vec<String>> {
        let own = match state {
            State::Master => &self.master,
            State::Backup => &self.backup,
            State::Fault => &self.fault,
            State::Initialize => return self.generic(state, instance, priority),
        };
        let mut out = Vec::new();
        if !own.is_empty() {
            out.push(own.clone());
        }
        out.extend(self.generic(state, instance, priority));
        out
    }

    /// The argv arrays to run when the instance stops: `stop`, then the generic hook
    /// with `STOP`.
    pub fn for_stop(&self, instance: &str, priority: u8) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        if !self.stop.is_empty() {
            out.push(self.stop.clone());
        }
        out.extend(self.generic_named("INSTANCE", instance, "STOP", priority));
        out
    }

    fn generic(&self, state: State, instance: &str, priority: u8) -> Vec<Vec<String>> {
        self.generic_named("INSTANCE", instance, state_name(state), priority)
    }

    /// The generic hook with keepalived's four arguments: `INSTANCE`|`GROUP`, the
    /// name, the state, the priority.
    pub fn generic_named(
        &self,
        kind: &str,
        name: &str,
        state: &str,
        priority: u8,
    ) -> Vec<Vec<String>> {
        if self.any.is_empty() {
            return Vec::new();
        }
        let mut argv = self.any.clone();
        argv.extend([
            kind.to_owned(),
            name.to_owned(),
            state.to_owned(),
            priority.to_string(),
        ]);
        vec![argv]
    }

    /// The state's own hook.
    pub fn own(&self, state: &str) -> &[String] {
        match state {
            "MASTER" => &self.master,
            "BACKUP" => &self.backup,
            "FAULT" => &self.fault,
            "STOP" => &self.stop,
            _ => &[],
        }
    }
}

/// keepalived's spelling of a state.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Initialize => "INITIALIZE",
        State::Backup => "BACKUP",
        State::Master => "MASTER",
        State::Fault => "FAULT",
    }
}

/// One hook run to do.
#[derive(Debug, Clone)]
pub struct Notification {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Runs notifications one by one on a task; dropping it lets the queue drain.
#[derive(Debug)]
pub struct Notifier {
    queue: mpsc::UnboundedSender<Notification>,
    task: tokio::task::JoinHandle<()>,
}

impl Notifier {
    /// Spawns the runner on the current runtime.
    pub fn spawn(instance: String, timeout: Duration) -> Notifier {
        let (queue, mut rx) = mpsc::unbounded_channel::<Notification>();
        let task = tokio::spawn(async move {
            while let Some(n) = rx.recv().await {
                run(&instance, n, timeout).await;
            }
        });
        Notifier { queue, task }
    }

    /// Lets the queued hooks run, for at most `wait` (the stop hooks at shutdown).
    pub async fn finish(self, wait: Duration) {
        drop(self.queue);
        let _ = tokio::time::timeout(wait, self.task).await;
    }

    /// Queues a run; never blocks.
    pub fn notify(&self, notification: Notification) {
        // The runner only ends when this sender is gone.
        let _ = self.queue.send(notification);
    }
}

async fn run(instance: &str, n: Notification, timeout: Duration) {
    let Some((program, args)) = n.argv.split_first() else {
        return;
    };
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(n.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let state = n
        .env
        .iter()
        .find(|(k, _)| k == "VRRP_STATE")
        .map_or("", |(_, v)| v.as_str());
    match tokio::time::timeout(timeout, command.output()).await {
        Ok(Ok(out)) => {
            let text = |b: &[u8]| {
                let s = String::from_utf8_lossy(b);
                let s = s.trim();
                s.chars().take(OUTPUT_LOGGED).collect::<String>()
            };
            let took_ms = started.elapsed().as_millis() as u64;
            if out.status.success() {
                tracing::info!(instance, state, hook = %program, took_ms, stdout = %text(&out.stdout), stderr = %text(&out.stderr), "notify hook ran");
            } else {
                tracing::warn!(instance, state, hook = %program, took_ms, status = %out.status, stdout = %text(&out.stdout), stderr = %text(&out.stderr), "notify hook failed");
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(instance, state, hook = %program, error = %e, "notify hook cannot start")
        }
        Err(_) => {
            // kill_on_drop: the child died with the dropped future.
            tracing::warn!(instance, state, hook = %program, timeout_ms = timeout.as_millis() as u64, "notify hook timed out and was killed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_per_state_and_generic_arguments() {
        let hooks = NotifyHooks {
            master: vec!["/bin/m".into(), "x".into()],
            fault: vec!["/bin/f".into()],
            any: vec!["/bin/any".into()],
            ..NotifyHooks::default()
        };
        assert!(!hooks.is_empty());
        assert!(NotifyHooks::default().is_empty());
        let m = hooks.for_state(State::Master, "VI_1", 150);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ["/bin/m", "x"]);
        assert_eq!(m[1], ["/bin/any", "INSTANCE", "VI_1", "MASTER", "150"]);
        // No backup hook: only the generic one.
        let b = hooks.for_state(State::Backup, "VI_1", 100);
        assert_eq!(b, [vec!["/bin/any", "INSTANCE", "VI_1", "BACKUP", "100"]]);
        assert_eq!(hooks.for_state(State::Fault, "VI_1", 1)[0], ["/bin/f"]);
        assert_eq!(hooks.for_state(State::Initialize, "VI_1", 1).len(), 1);
    }
}
