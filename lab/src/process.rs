//! Background processes started in lab hosts, and the table that kills them at teardown.
//!
//! Output goes to files rather than pipes: an agent that logs more than a pipe buffer while
//! nobody reads would block, and files can still be read after the process died.

use std::ffi::OsString;
use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::command::describe;

/// How often waits poll a child.
const POLL: Duration = Duration::from_millis(10);

/// Lines of each log shown when a lab is dropped during a panic.
const LOG_TAIL_LINES: usize = 20;

/// Every process a lab spawned. Shared by the lab and its hosts.
#[derive(Debug)]
pub(crate) struct ProcessTable {
    log_dir: PathBuf,
    entries: Mutex<Vec<Entry>>,
}

#[derive(Debug)]
struct Entry {
    child: Child,
    command: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Entry {
    /// Sends `signal` to the child's process group, unless the child was already reaped.
    ///
    /// Each child leads its own group, so this reaches its descendants too. Once the child
    /// is reaped its pid may be recycled, so the group is then left alone; the namespace
    /// sweep at teardown catches stragglers.
    fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.child.try_wait()?.is_some() {
            return Ok(());
        }
        let pgid = Pid::from_raw(i32::try_from(self.child.id()).context("pid out of range")?);
        match killpg(pgid, signal) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot signal `{}`", self.command)),
        }
    }

    fn kill(&mut self) -> Result<ExitStatus> {
        self.signal(Signal::SIGKILL)?;
        self.child
            .wait()
            .with_context(|| format!("cannot reap `{}`", self.command))
    }
}

impl ProcessTable {
    pub(crate) fn new(log_dir: PathBuf) -> Self {
        ProcessTable {
            log_dir,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// The table, even if a panicking thread poisoned it: teardown must still run.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts `argv` inside namespace `ns` in its own process group.
    pub(crate) fn spawn(self: &Arc<Self>, ns: &str, argv: Vec<OsString>) -> Result<Process> {
        if argv.is_empty() {
            return Err(anyhow!("cannot spawn an empty command in {ns}"));
        }
        fs::create_dir_all(&self.log_dir)
            .with_context(|| format!("cannot create {}", self.log_dir.display()))?;
        let mut entries = self.lock();
        let index = entries.len();
        let stdout = self.log_dir.join(format!("{ns}.{index}.stdout"));
        let stderr = self.log_dir.join(format!("{ns}.{index}.stderr"));
        let create =
            |p: &Path| File::create(p).with_context(|| format!("cannot create {}", p.display()));
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(create(&stdout)?)
            .stderr(create(&stderr)?)
            .process_group(0);
        let command = describe(&cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start `{command}`"))?;
        let pid = child.id();
        entries.push(Entry {
            child,
            command: command.clone(),
            stdout,
            stderr,
        });
        Ok(Process {
            table: Arc::clone(self),
            index,
            pid,
            command,
        })
    }

    /// Kills and reaps every child still running; returns what went wrong.
    pub(crate) fn kill_all(&self) -> Vec<anyhow::Error> {
        self.lock()
            .iter_mut()
            .filter_map(|e| e.kill().err())
            .collect()
    }

    /// Prints the end of every child's output to stderr, for a test that is failing.
    pub(crate) fn print_log_tails(&self) {
        for e in self.lock().iter() {
            for (what, path) in [("stdout", &e.stdout), ("stderr", &e.stderr)] {
                let text = fs::read_to_string(path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
                eprintln!("--- lab: last {what} of `{}` ---", e.command);
                for line in tail {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// Deletes the log directory; a missing one is fine.
    pub(crate) fn remove_logs(&self) -> Result<()> {
        remove_dir(&self.log_dir)
    }
}

/// Removes `dir` recursively; a missing directory is not an error.
pub(crate) fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// A background process in a lab host, started by [`crate::Host::spawn`].
///
/// The lab owns the process: dropping this handle does not stop it, dropping the
/// [`crate::Lab`] does (SIGKILL to its whole process group, then reaping it). Its stdout and
/// stderr go to files readable with [`Process::stdout`] and [`Process::stderr`]; when a lab
/// is dropped during a panic their last lines are printed to stderr.
#[derive(Debug, Clone)]
pub struct Process {
    table: Arc<ProcessTable>,
    index: usize,
    pid: u32,
    command: String,
}

impl Process {
    fn with<T>(&self, f: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let mut entries = self.table.lock();
        let entry = entries
            .get_mut(self.index)
            .ok_or_else(|| anyhow!("process table lost `{}`", self.command))?;
        f(entry)
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The command line as started, e.g. `ip netns exec vz0k3x9a-h1 sleep 10`.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its exit status if it has exited, without blocking.
    pub fn try_wait(&self) -> Result<Option<ExitStatus>> {
        self.with(|e| {
            e.child
                .try_wait()
                .with_context(|| format!("cannot poll `{}`", e.command))
        })
    }

    /// Whether it is still running.
    pub fn is_running(&self) -> Result<bool> {
        Ok(self.try_wait()?.is_none())
    }

    /// Waits up to `timeout` for it to exit; `None` if it is still running.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends SIGTERM to its process group and waits up to `grace` for it to exit, then
    /// kills it. Use this to test an agent's clean shutdown.
    pub fn terminate(&self, grace: Duration) -> Result<ExitStatus> {
        self.with(|e| e.signal(Signal::SIGTERM))?;
        match self.wait_timeout(grace)? {
            Some(status) => Ok(status),
            None => self.kill(),
        }
    }

    /// Sends SIGKILL to its process group and reaps it.
    pub fn kill(&self) -> Result<ExitStatus> {
        self.with(Entry::kill)
    }

    /// Everything it has written to stdout so far (lossily decoded).
    pub fn stdout(&self) -> Result<String> {
        self.read_log(|e| &e.stdout)
    }

    /// Everything it has written to stderr so far (lossily decoded).
    pub fn stderr(&self) -> Result<String> {
        self.read_log(|e| &e.stderr)
    }

    fn read_log(&self, which: fn(&Entry) -> &PathBuf) -> Result<String> {
        let path = self.with(|e| Ok(which(e).clone()))?;
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}
