//! The control socket server: root-only (SO_PEERCRED), mode 0600, one JSON
//! request per line, bounded in size. Requests go to the main loop, which owns
//! all state; a connection task only frames and checks.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::control::{Command, Reply, Request, MAX_MESSAGE, VERSION};

/// A request on its way to the main loop, with where to send the reply.
pub type Pending = (Command, oneshot::Sender<Reply>);

/// Binds the socket (replacing a stale one) with mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts connections forever, handing requests to `tx`.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Pending>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, tx).await {
                        tracing::debug!(error = %e, "control connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accepting a control connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(stream: UnixStream, tx: mpsc::Sender<Pending>) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (read, mut write) = stream.into_split();
    if cred.uid() != 0 {
        tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "refused a control connection from a non-root peer");
        send(
            &mut write,
            &Reply::err("permission denied: vznetd answers root only"),
        )
        .await?;
        return Ok(());
    }
    let mut reader = BufReader::new(read).take(MAX_MESSAGE as u64 + 1);
    let mut line = String::new();
    loop {
        line.clear();
        let n = match reader.read_line(&mut line).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                send(&mut write, &Reply::err("request is not UTF-8")).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        if n > MAX_MESSAGE || !line.ends_with('\n') {
            send(
                &mut write,
                &Reply::err(format!(
                    "request too long (over {MAX_MESSAGE} bytes) or not newline-terminated"
                )),
            )
            .await?;
            return Ok(());
        }
        // Each request gets a fresh budget.
        reader.set_limit(MAX_MESSAGE as u64 + 1);
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(req) if req.v != VERSION => Reply::err(format!(
                "unsupported protocol version {} (this agent speaks {VERSION})",
                req.v
            )),
            Ok(req) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx.send((req.cmd, reply_tx)).await.is_err() {
                    Reply::err("agent is shutting down")
                } else {
                    reply_rx
                        .await
                        .unwrap_or_else(|_| Reply::err("agent dropped the request"))
                }
            }
            Err(e) => Reply::err(format!("bad request: {e}")),
        };
        send(&mut write, &reply).await?;
    }
}

async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply)
        .unwrap_or_else(|_| r#"{"v":1,"ok":false,"error":"reply encoding failed"}"#.to_string());
    line.push('\n');
    write.write_all(line.as_bytes()).await
}
