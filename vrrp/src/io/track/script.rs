//! Running a `[[vrrp_script]]`: the program in a process group of its own, waited for
//! asynchronously, killed at its timeout (SIGTERM to the group, SIGKILL two seconds
//! later, as keepalived does). The schedule and the counting are
//! [`crate::track::script::ScriptCheck`]'s; this task only starts, waits and kills.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::{Group, Pid, User};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::io::Error;
use crate::settings::Script;
use crate::time::Timestamp;
use crate::track::script::{ScriptAction, ScriptCheck, ScriptEvent, ScriptState};

/// Between SIGTERM and SIGKILL of a script that overran its timeout.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// A running script check; the task stops when the last clone of its handle goes.
#[derive(Debug)]
pub struct ScriptRunner {
    state: watch::Receiver<ScriptState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptRunner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Who the program runs as.
#[derive(Debug, Clone, Copy)]
struct Credentials {
    uid: u32,
    gid: u32,
}

fn credentials(script: &Script) -> Result<Option<Credentials>, Error> {
    let Some(user) = &script.user else {
        return Ok(None);
    };
    let unknown = |what: &str| Error::Script {
        script: script.name.clone(),
        reason: format!("no such {what}"),
    };
    let u = User::from_name(user)
        .ok()
        .flatten()
        .ok_or_else(|| unknown(&format!("user {user:?}")))?;
    let gid = match &script.group {
        Some(g) => {
            Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| unknown(&format!("group {g:?}")))?
                .gid
        }
        None => u.gid,
    };
    Ok(Some(Credentials {
        uid: u.uid.as_raw(),
        gid: gid.as_raw(),
    }))
}

impl ScriptRunner {
    /// Looks the user up and starts the check; the first run is due now.
    pub fn spawn(script: &Script) -> Result<ScriptRunner, Error> {
        let credentials = credentials(script)?;
        let (tx, state) = watch::channel(ScriptState::Pending);
        let script = script.clone();
        let task = tokio::spawn(run(script, credentials, tx));
        Ok(ScriptRunner { state, task })
    }

    /// The script's state from now on.
    pub fn subscribe(&self) -> watch::Receiver<ScriptState> {
        self.state.clone()
    }
}

async fn run(script: Script, credentials: Option<Credentials>, tx: watch::Sender<ScriptState>) {
    let epoch = Instant::now();
    let now = || Timestamp::from_elapsed(epoch.elapsed());
    let mut check = ScriptCheck::new(&script, now());
    if check.state() != ScriptState::Pending {
        tx.send_replace(check.state());
    }
    let argv = script.script.argv();
    let mut child: Option<Child> = None;
    loop {
        let due = epoch + check.poll_timeout().elapsed();
        let event = tokio::select! {
            () = tokio::time::sleep_until(due) => ScriptEvent::Timeout,
            status = wait(&mut child) => {
                child = None;
                ScriptEvent::Exited { success: status.is_some_and(|s| s.success()) }
            }
        };
        let mut pending = vec![event];
        while let Some(event) = pending.pop() {
            for action in check.handle(now(), event) {
                match action {
                    ScriptAction::Run => match start(&argv, credentials) {
                        Ok(c) => child = Some(c),
                        Err(e) => {
                            tracing::warn!(script = %script.name, error = %e, "vrrp_script cannot start");
                            pending.push(ScriptEvent::SpawnFailed);
                        }
                    },
                    ScriptAction::Kill => {
                        if let Some(c) = child.take() {
                            tracing::warn!(script = %script.name, timeout_ms = script.effective_timeout_ms(), "vrrp_script timed out; killing it");
                            tokio::spawn(terminate(c));
                        }
                    }
                    ScriptAction::Changed(state) => {
                        tracing::info!(script = %script.name, ?state, "vrrp_script state changed");
                        tx.send_replace(state);
                    }
                }
            }
        }
    }
}

/// The running child's exit status; pending forever without a child.
async fn wait(child: &mut Option<Child>) -> Option<std::process::ExitStatus> {
    match child {
        Some(c) => c.wait().await.ok(),
        None => std::future::pending().await,
    }
}

fn start(argv: &[String], credentials: Option<Credentials>) -> std::io::Result<Child> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty argv"))?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so a timeout kills what a shell line started too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(c) = credentials {
        command.uid(c.uid).gid(c.gid);
    }
    command.spawn()
}

/// SIGTERM to the script's process group, SIGKILL after [`TERM_GRACE`], reaped.
async fn terminate(mut child: Child) {
    let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait().await;
    } else {
        // Whatever the script left in its group goes too.
        let _ = killpg(group, Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ScriptCommand;

    async fn state_becomes(rx: &mut watch::Receiver<ScriptState>, want: ScriptState) -> bool {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| *s == want))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn a_shell_line_is_run_and_its_exit_status_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flag = dir.path().join("ok");
        std::fs::write(&flag, "").expect("write");
        let script = Script {
            interval_ms: 50,
            ..Script::new(
                "chk",
                ScriptCommand::Shell(format!("test -e {}", flag.display())),
            )
        };
        let runner = ScriptRunner::spawn(&script).expect("spawn");
        let mut rx = runner.subscribe();
        assert!(state_becomes(&mut rx, ScriptState::Good).await);
        std::fs::remove_file(&flag).expect("remove");
        assert!(state_becomes(&mut rx, ScriptState::Failed).await);
    }

    #[tokio::test]
    async fn a_hung_script_fails_at_its_timeout_and_its_children_are_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        // The shell starts a child that would outlive it, records its pid, waits.
        let line = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let script = Script {
            interval_ms: 10_000,
            timeout_ms: Some(200),
            ..Script::new("hang", ScriptCommand::Shell(line))
        };
        let started = std::time::Instant::now();
        let runner = ScriptRunner::spawn(&script).expect("spawn");
        let mut rx = runner.subscribe();
        assert!(state_becomes(&mut rx, ScriptState::Failed).await);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "failed after {took:?}");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid written")
            .trim()
            .parse()
            .expect("a pid");
        // SIGTERM went to the whole group: the grandchild dies too.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |s| s.contains(") Z "))
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !gone() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone(), "the script's child {pid} survived its timeout");
    }

    #[tokio::test]
    async fn an_unknown_user_is_refused() {
        let script = Script {
            user: Some("no-such-user-vznet".into()),
            ..Script::new("chk", ScriptCommand::Shell("true".into()))
        };
        assert!(matches!(
            ScriptRunner::spawn(&script),
            Err(Error::Script { .. })
        ));
    }
}
