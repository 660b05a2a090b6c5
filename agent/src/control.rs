//! The control protocol between `vznet` and `vznetd`: one JSON object per line over a
//! Unix socket, versioned. Both ends use these types; neither matches error text.
//!
//! Request: `{"v":2,"cmd":"status"}` (`apply`, `plan`, `reload`). Reply:
//! `{"v":2,"ok":true,"result":{"type":"status",...}}` or
//! `{"v":2,"ok":false,"error":{"kind":"invalid_config","message":"...",...}}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use netcfg::op::Op;
use netcfg::unit::Unit;
use serde::{Deserialize, Serialize};

use crate::status::Status;

/// The protocol version this build speaks.
pub const VERSION: u32 = 2;

/// The largest request line accepted, in bytes.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The largest reply line a client reads (a status of 1000 VRRP instances is large).
pub const MAX_REPLY: usize = 64 * MAX_MESSAGE;

/// Where `vznetd` listens by default.
pub const DEFAULT_SOCKET: &str = "/run/vznet/vznetd.sock";

/// What a client asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
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
    #[serde(flatten)]
    pub cmd: Command,
}

/// A successful answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// To `status`.
    Status(Box<Status>),
    /// To `apply` and `reload`.
    Applied(Applied),
    /// To `plan`.
    Plan(PlanReply),
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Ops that ran and were verified.
    pub ops: Vec<Op>,
    /// Units that failed and were rolled back (alone).
    #[serde(default)]
    pub failed: Vec<UnitFailure>,
    /// VEs with network config but no netns.
    #[serde(default)]
    pub unwired: Vec<u32>,
    /// The agent's time for the request, in microseconds.
    #[serde(default)]
    pub elapsed_us: u64,
}

/// What apply would change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PlanReply {
    /// The ops, in order.
    pub ops: Vec<Op>,
    /// Units that cannot be planned (a missing port, a link vznet did not make).
    #[serde(default)]
    pub blocked: Vec<UnitFailure>,
    /// VEs with network config but no netns.
    #[serde(default)]
    pub unwired: Vec<u32>,
}

/// One unit that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitFailure {
    /// Which.
    pub unit: Unit,
    /// Why.
    pub error: String,
}

/// A config error as it travels: where, which key, what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocatedError {
    /// File.
    pub file: PathBuf,
    /// Line (1-based).
    pub line: usize,
    /// Column (1-based).
    pub column: usize,
    /// Key path; empty for file-level errors.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LocatedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: ", self.file.display(), self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

impl From<&netcfg::model::ConfigError> for LocatedError {
    fn from(e: &netcfg::model::ConfigError) -> LocatedError {
        LocatedError {
            file: e.location.file.clone(),
            line: e.location.line,
            column: e.location.column,
            key: e.key.clone(),
            message: e.message.clone(),
        }
    }
}

/// Why the agent could not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentError {
    /// The config on disk is invalid; the agent keeps running the previous one.
    #[error("config rejected, running state kept: {} error(s)", errors.len())]
    InvalidConfig {
        /// Every error, located.
        errors: Vec<LocatedError>,
    },
    /// The config needs a kernel feature this kernel lacks; nothing changed.
    #[error("{message}")]
    MissingFeature {
        /// Which.
        message: String,
    },
    /// Some units could not be applied and were rolled back; the rest were.
    #[error("{} unit(s) failed and were rolled back", applied.failed.len())]
    UnitsFailed {
        /// What was applied and what failed.
        applied: Applied,
    },
    /// The kernel's state could not be read or planned.
    #[error("{message}")]
    Kernel {
        /// What failed.
        message: String,
    },
    /// The peer is not root.
    #[error("permission denied: vznetd answers root only")]
    PermissionDenied,
    /// A protocol version this agent does not speak.
    #[error("unsupported protocol version {got} (this agent speaks {VERSION})")]
    Version {
        /// The client's.
        got: u32,
    },
    /// Not a request.
    #[error("bad request: {message}")]
    BadRequest {
        /// What is wrong with it.
        message: String,
    },
    /// Over [`MAX_MESSAGE`] or not newline-terminated.
    #[error("request too long (over {MAX_MESSAGE} bytes) or not newline-terminated")]
    TooLong,
    /// The agent is stopping.
    #[error("agent is shutting down")]
    ShuttingDown,
}

impl AgentError {
    /// The exit status `vznet` gives for this error: 2 for invalid input (nothing
    /// changed), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::InvalidConfig { .. } | AgentError::MissingFeature { .. } => 2,
            _ => 1,
        }
    }
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
    pub result: Option<Response>,
    /// What went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AgentError>,
    /// The error in words, for a person reading the socket by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Reply {
    /// The reply for a result.
    pub fn of(r: Result<Response, AgentError>) -> Reply {
        match r {
            Ok(result) => Reply {
                v: VERSION,
                ok: true,
                result: Some(result),
                error: None,
                message: None,
            },
            Err(e) => Reply {
                v: VERSION,
                ok: false,
                result: None,
                message: Some(e.to_string()),
                error: Some(e),
            },
        }
    }

    /// Back to a result.
    pub fn into_result(self) -> Result<Response, ClientError> {
        match (self.ok, self.result, self.error) {
            (true, Some(r), _) => Ok(r),
            (false, _, Some(e)) => Err(ClientError::Agent(e)),
            _ => Err(ClientError::BadReply(
                "neither a result nor an error".into(),
            )),
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
    /// The agent answered with an error.
    #[error("vznetd: {0}")]
    Agent(AgentError),
}

/// Sends one request and waits for its reply (up to `timeout`).
pub fn request(socket: &Path, cmd: Command, timeout: Duration) -> Result<Response, ClientError> {
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
    let mut reader = BufReader::new(stream).take(MAX_REPLY as u64);
    let mut reply = String::new();
    reader.read_line(&mut reply)?;
    let reply: Reply = serde_json::from_str(&reply).map_err(|e| {
        ClientError::BadReply(format!(
            "{e}: {:?}",
            reply.chars().take(200).collect::<String>()
        ))
    })?;
    reply.into_result()
}

/// `status`, typed.
pub fn status(socket: &Path, timeout: Duration) -> Result<Status, ClientError> {
    match request(socket, Command::Status, timeout)? {
        Response::Status(s) => Ok(*s),
        other => Err(ClientError::BadReply(format!("not a status: {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_with_typed_errors() {
        let line = serde_json::to_string(&Request {
            v: VERSION,
            cmd: Command::Plan,
        })
        .expect("encodes");
        assert_eq!(line, r#"{"v":2,"cmd":"plan"}"#);
        let bad: Result<Request, _> = serde_json::from_str(r#"{"v":2,"cmd":"format-disk"}"#);
        assert!(bad.is_err());

        let err = AgentError::InvalidConfig {
            errors: vec![LocatedError {
                file: "/etc/vznet/host.toml".into(),
                line: 3,
                column: 1,
                key: "bridge[0].name".into(),
                message: "empty".into(),
            }],
        };
        let reply = serde_json::to_string(&Reply::of(Err(err.clone()))).expect("encodes");
        let back: Reply = serde_json::from_str(&reply).expect("decodes");
        match back.into_result() {
            Err(ClientError::Agent(e)) => {
                assert_eq!(e, err);
                assert_eq!(e.exit_code(), 2);
            }
            other => panic!("{other:?}"),
        }
        let ok = serde_json::to_string(&Reply::of(Ok(Response::Applied(Applied::default()))))
            .expect("encodes");
        assert!(ok.contains(r#""type":"applied""#), "{ok}");
        assert!(matches!(
            serde_json::from_str::<Reply>(&ok)
                .expect("decodes")
                .into_result(),
            Ok(Response::Applied(_))
        ));
    }
}
