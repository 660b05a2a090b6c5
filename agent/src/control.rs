//! The control protocol between `vznet` and `vznetd`: one JSON object per line
//! over a Unix socket, versioned. Requests: `{"v":1,"cmd":"status"}`, `apply`,
//! `plan`, `reload`. Replies: `{"v":1,"ok":true,"result":...}` or
//! `{"v":1,"ok":false,"error":"..."}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The largest request or reply line accepted, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// Where `vznetd` listens by default.
pub const DEFAULT_SOCKET: &str = "/run/vznet/vznetd.sock";

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// The agent's state and counters.
    Status,
    /// Re-read the config and apply it (an invalid config is rejected and the
    /// running state kept).
    Apply,
    /// Re-read the config and show what apply would change.
    Plan,
    /// Same as SIGHUP: re-read the config and apply it.
    Reload,
}

/// A request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version.
    pub v: u32,
    /// The command.
    pub cmd: Command,
}

/// A reply line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Protocol version.
    pub v: u32,
    /// Success.
    pub ok: bool,
    /// The command's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Reply {
    /// A success.
    pub fn ok(result: serde_json::Value) -> Reply {
        Reply {
            v: VERSION,
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(error: impl Into<String>) -> Reply {
        Reply {
            v: VERSION,
            ok: false,
            result: None,
            error: Some(error.into()),
        }
    }
}

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No agent listens there.
    #[error("no vznetd at {0}")]
    NotRunning(PathBuf),
    /// Transport or framing trouble.
    #[error("talking to vznetd: {0}")]
    Io(#[from] std::io::Error),
    /// The agent's reply was not valid.
    #[error("bad reply from vznetd: {0}")]
    BadReply(String),
}

/// Sends one request and waits for its reply (up to `timeout`).
pub fn request(socket: &Path, cmd: Command, timeout: Duration) -> Result<Reply, ClientError> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(ClientError::NotRunning(socket.to_path_buf()))
        }
        Err(e) => return Err(e.into()),
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_string(&Request { v: VERSION, cmd })
        .map_err(|e| ClientError::BadReply(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut reader = BufReader::new(stream).take(MAX_MESSAGE as u64 * 64);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    serde_json::from_str(&reply).map_err(|e| ClientError::BadReply(format!("{e}: {reply:?}")))
}
