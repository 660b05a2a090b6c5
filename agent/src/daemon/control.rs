//! The control socket, on a thread of its own: root-only (SO_PEERCRED), mode 0600,
//! one JSON request per line, bounded in size, in the number of connections and in
//! idle time. `status` is answered here from snapshots (the engine's, the protocol
//! thread's, the load balancer's), so it works while the engine is busy; `apply`,
//! `plan` and `reload` go to the engine over a bounded channel.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use super::protocol::Protocol;
use super::reconciler::LbSlot;
use super::{Pending, SharedStatus};
use crate::control::{AgentError, Reply, Request, Response, MAX_MESSAGE, VERSION};
use crate::status::Status;

/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(30);

/// Why the socket cannot be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Something that is not a socket is in the way; vznetd never deletes it.
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// Another agent answers there.
    #[error("another agent answers on {}; refusing to take its socket over", .0.display())]
    InUse(PathBuf),
    /// The system refused.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The bound control socket; its path is removed at stop only if it is still ours.
#[derive(Debug)]
pub struct ControlSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    inode: u64,
}

impl ControlSocket {
    /// Whether `path` can be bound: free, or a stale socket nobody answers on. Run
    /// before anything is applied, so a second agent changes nothing.
    pub fn check(path: &Path) -> Result<(), BindError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => Err(BindError::NotASocket(path.to_path_buf())),
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => Err(BindError::InUse(path.to_path_buf())),
                Err(_) => Ok(()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Binds `path` with mode 0600. A stale socket (nobody answers) is replaced; a
    /// live one or anything that is not a socket is refused. Its appearance tells
    /// clients the agent is ready.
    pub fn bind(path: &Path) -> Result<ControlSocket, BindError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        ControlSocket::check(path)?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let listener = std::os::unix::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let inode = std::fs::symlink_metadata(path)?.ino();
        Ok(ControlSocket {
            listener,
            path: path.to_path_buf(),
            inode,
        })
    }
}

/// What the control thread reads and where it sends requests.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The engine's snapshot.
    pub status: SharedStatus,
    /// The protocol thread (VRRP status).
    pub protocol: Protocol,
    /// The load balancer (virtual server status).
    pub lb: LbSlot,
    /// Requests for the engine.
    pub requests: mpsc::Sender<Pending>,
    /// The fleet side, when the config comes from etcd.
    pub fleet: Option<crate::fleet::SharedFleet>,
}

impl Shared {
    /// The whole status: the engine's snapshot with VRRP and virtual servers.
    pub async fn status(&self) -> Status {
        let mut s = self.status.lock().map(|g| g.clone()).unwrap_or_default();
        s.vrrp = self.protocol.status().await;
        let lb = self.lb.lock().ok().and_then(|g| g.clone());
        if let Some(lb) = lb {
            s.virtual_servers = lb.status().await;
        }
        if let Some(f) = &self.fleet {
            s.fleet = f.lock().ok().map(|g| g.clone());
        }
        s
    }
}

/// The running control thread.
#[derive(Debug)]
pub struct ControlThread {
    path: PathBuf,
    inode: u64,
}

impl ControlThread {
    /// Removes the socket path, if it is still the one this agent bound.
    pub fn stop(self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| m.file_type().is_socket() && m.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Starts the control thread: the socket, and the metrics listener if asked for.
pub fn spawn(
    socket: ControlSocket,
    metrics: Option<std::net::SocketAddr>,
    max_connections: usize,
    shared: Shared,
) -> anyhow::Result<ControlThread> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = ControlThread {
        path: socket.path.clone(),
        inode: socket.inode,
    };
    let metrics_listener = match metrics {
        Some(addr) => {
            let l = std::net::TcpListener::bind(addr)
                .map_err(|e| anyhow::anyhow!("metrics listener {addr}: {e}"))?;
            l.set_nonblocking(true)?;
            tracing::info!(%addr, "serving /metrics");
            Some(l)
        }
        None => None,
    };
    std::thread::Builder::new()
        .name("vznetd-control".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match UnixListener::from_std(socket.listener) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "control socket");
                        return;
                    }
                };
                if let Some(l) = metrics_listener {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tokio::spawn(super::metrics::serve(l, shared.clone()));
                        }
                        Err(e) => tracing::error!(error = %e, "metrics listener"),
                    }
                }
                serve(listener, max_connections.max(1), shared).await;
            });
        })?;
    Ok(handle)
}

/// Connections by id: when they last did something, and how to close them.
type Registry = Arc<Mutex<BTreeMap<u64, (Instant, tokio::task::AbortHandle)>>>;

async fn serve(listener: UnixListener, max: usize, shared: Shared) {
    let registry: Registry = Arc::default();
    let mut next_id = 0u64;
    let mut last_warning: Option<Instant> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                next_id += 1;
                let id = next_id;
                if let Ok(mut reg) = registry.lock() {
                    if reg.len() >= max {
                        // Close the least recently active, so a flood of idle
                        // clients never locks `vznet status` out.
                        if let Some((&old, _)) = reg.iter().min_by_key(|(_, (t, _))| *t) {
                            if let Some((_, abort)) = reg.remove(&old) {
                                abort.abort();
                            }
                            warn_throttled(&mut last_warning, "control connections at their limit; closing the least recently active");
                        }
                    }
                }
                let shared = shared.clone();
                let reg = registry.clone();
                let task = tokio::spawn(async move {
                    if let Err(e) = connection(stream, shared, id, reg.clone()).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                    if let Ok(mut r) = reg.lock() {
                        r.remove(&id);
                    }
                });
                // This runtime has one thread: the task cannot have run (and
                // unregistered itself) before it is registered here.
                if let Ok(mut reg) = registry.lock() {
                    reg.insert(id, (Instant::now(), task.abort_handle()));
                }
            }
            Err(e) => {
                // EMFILE and friends: wait for descriptors to come back.
                warn_throttled(
                    &mut last_warning,
                    &format!("accepting a control connection: {e}"),
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A warning at most every 10 s.
fn warn_throttled(last: &mut Option<Instant>, what: &str) {
    if last.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
        tracing::warn!("{what} (repeats are silenced for 10 s)");
        *last = Some(Instant::now());
    }
}

fn touch(reg: &Registry, id: u64) {
    if let Ok(mut r) = reg.lock() {
        if let Some((t, _)) = r.get_mut(&id) {
            *t = Instant::now();
        }
    }
}

async fn connection(
    stream: UnixStream,
    shared: Shared,
    id: u64,
    reg: Registry,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if cred.uid() != 0 {
        tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "refused a control connection from a non-root peer");
        return send(&mut write, &Reply::of(Err(AgentError::PermissionDenied))).await;
    }
    let mut reader = BufReader::new(read).take(MAX_MESSAGE as u64 + 1);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match tokio::time::timeout(IDLE, reader.read_line(&mut line)).await {
            Err(_idle) => return Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                let bad = AgentError::BadRequest {
                    message: "request is not UTF-8".into(),
                };
                return send(&mut write, &Reply::of(Err(bad))).await;
            }
            Ok(Err(e)) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        if n > MAX_MESSAGE || !line.ends_with('\n') {
            return send(&mut write, &Reply::of(Err(AgentError::TooLong))).await;
        }
        touch(&reg, id);
        // Each request gets a fresh budget.
        reader.set_limit(MAX_MESSAGE as u64 + 1);
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) if req.v != VERSION => Reply::of(Err(AgentError::Version { got: req.v })),
            Ok(req) => answer(req.cmd, &shared).await,
            Err(e) => Reply::of(Err(AgentError::BadRequest {
                message: e.to_string(),
            })),
        };
        send(&mut write, &reply).await?;
        touch(&reg, id);
    }
}

async fn answer(cmd: crate::control::Command, shared: &Shared) -> Reply {
    if let crate::control::Command::Status = cmd {
        return Reply::of(Ok(Response::Status(Box::new(shared.status().await))));
    }
    let (reply_tx, reply_rx) = oneshot::channel();
    if shared.requests.send((cmd, reply_tx)).await.is_err() {
        return Reply::of(Err(AgentError::ShuttingDown));
    }
    reply_rx
        .await
        .unwrap_or_else(|_| Reply::of(Err(AgentError::ShuttingDown)))
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).unwrap_or_else(|_| {
        format!(r#"{{"v":{VERSION},"ok":false,"error":{{"kind":"kernel","message":"reply encoding failed"}}}}"#)
    });
    line.push('\n');
    write.write_all(line.as_bytes()).await
}
