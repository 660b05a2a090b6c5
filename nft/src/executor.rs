//! The executor: a thread parked in one netns that owns the nftables context and
//! runs documents sent to it, one transaction each.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use nftables::schema::Nftables;

use crate::libnftables::Context;
use crate::Error;

/// How documents reach the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-process libnftables (the normal case).
    Libnftables,
    /// `nft -j -f -`, when libnftables.so.1 could not be loaded.
    NftBinary,
}

type Reply = Result<String, String>;

struct Job {
    /// A JSON document, or a native-syntax script.
    text: String,
    json: bool,
    reply: mpsc::SyncSender<Reply>,
}

/// A handle to an executor thread. Cloning shares the thread; the thread ends
/// when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Nft {
    jobs: mpsc::Sender<Job>,
    backend: Backend,
    netns: Option<PathBuf>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("bytes", &self.text.len())
            .field("json", &self.json)
            .finish()
    }
}

impl Nft {
    /// Starts an executor in the netns at `netns` (a `/run/netns/NAME` or
    /// `/proc/PID/ns/net` file), or in the caller's netns when `None`.
    pub fn new(netns: Option<&Path>) -> Result<Nft, Error> {
        let ns = netns
            .map(|p| {
                File::open(p).map_err(|source| Error::Netns {
                    path: p.to_path_buf(),
                    source,
                })
            })
            .transpose()?;
        // The caller's netns, captured now: a tokio worker may have been moved
        // since, but the thread we spawn starts in the spawning thread's netns.
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Backend, Error>>(1);
        let path = netns.map(Path::to_path_buf);
        std::thread::Builder::new()
            .name("nft".into())
            .spawn(move || {
                if let Some(ns) = ns {
                    if let Err(e) = nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    {
                        let _ = ready_tx.send(Err(Error::Netns {
                            path: path.unwrap_or_default(),
                            source: e.into(),
                        }));
                        return;
                    }
                }
                let mut ctx = match Context::new() {
                    Ok(ctx) => Some(ctx),
                    Err(why) => {
                        tracing::debug!(%why, "libnftables unavailable; using the nft binary");
                        None
                    }
                };
                let backend = if ctx.is_some() {
                    Backend::Libnftables
                } else if which_nft().is_some() {
                    Backend::NftBinary
                } else {
                    let _ = ready_tx.send(Err(Error::NoBackend(
                        "libnftables.so.1 not loadable and no nft binary on PATH (install Debian's nftables)".into(),
                    )));
                    return;
                };
                let _ = ready_tx.send(Ok(backend));
                for job in rx {
                    let reply = match ctx.as_mut() {
                        Some(ctx) => ctx.run(&job.text),
                        None => run_binary(&job.text, job.json),
                    };
                    let _ = job.reply.send(reply);
                }
            })
            .map_err(|e| Error::NoBackend(format!("spawning the executor thread: {e}")))?;
        let backend = ready_rx.recv().map_err(|_| Error::Stopped)??;
        Ok(Nft {
            jobs,
            backend,
            netns: netns.map(Path::to_path_buf),
        })
    }

    /// Which backend this executor uses.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The netns this executor works in (`None`: the creator's).
    pub fn netns(&self) -> Option<&Path> {
        self.netns.as_deref()
    }

    /// Runs `doc` as one transaction: every command in it applies, or none does.
    pub fn apply(&self, doc: &Nftables<'_>) -> Result<(), Error> {
        self.run(&serde_json::to_string(doc)?)?;
        Ok(())
    }

    /// Runs a document of `list` commands and returns libnftables' JSON answer.
    pub fn query(&self, doc: &Nftables<'_>) -> Result<serde_json::Value, Error> {
        let out = self.run(&serde_json::to_string(doc)?)?;
        if out.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_str(&out)?)
    }

    /// Runs a native-syntax script as one transaction (libnftables reads
    /// native syntax when the text is not JSON).
    pub fn apply_script(&self, script: &crate::script::Script) -> Result<(), Error> {
        if script.is_empty() {
            return Ok(());
        }
        self.send(script.text(), false)?;
        Ok(())
    }

    fn run(&self, json: &str) -> Result<String, Error> {
        self.send(json, true)
    }

    fn send(&self, text: &str, json: bool) -> Result<String, Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.jobs
            .send(Job {
                text: text.to_owned(),
                json,
                reply,
            })
            .map_err(|_| Error::Stopped)?;
        answer
            .recv()
            .map_err(|_| Error::Stopped)?
            .map_err(Error::Refused)
    }
}

fn which_nft() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/sbin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("nft"))
        .find(|p| p.is_file())
}

/// The fallback: the child inherits this thread's netns.
fn run_binary(text: &str, json: bool) -> Reply {
    let nft = which_nft().ok_or("nft binary not found")?;
    // `nft -j -f -` reads stdin as JSON and, when that fails, finds it empty
    // for the native parser: scripts go without -j (they print nothing).
    let args: &[&str] = if json {
        &["-j", "-f", "-"]
    } else {
        &["-f", "-"]
    };
    let mut child = Command::new(nft)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("running nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("writing to nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("waiting for nft: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
