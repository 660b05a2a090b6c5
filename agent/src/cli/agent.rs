//! `vznet` talking to `vznetd`: finding the agent that runs this config folder in this
//! netns, and forwarding `plan`, `apply` and reloads to it.

use std::process::ExitCode;
use std::time::Duration;

use netcfg::op::Op;

use super::{Cli, EXIT_INVALID};
use crate::control::{self, AgentError, ClientError, Command, Response};
use crate::status::Status;

/// How long a forwarded request may take (a first apply of 1000 VEs is seconds).
const REQUEST: Duration = Duration::from_secs(600);

/// The agent, if one answers on the socket for this config folder and netns.
pub fn find(cli: &Cli) -> Option<Status> {
    if cli.direct {
        return None;
    }
    let status = control::status(&cli.socket, Duration::from_secs(5)).ok()?;
    let same_netns = status.netns_inode == crate::status::netns_inode();
    // An agent run from etcd is this host's, whatever folder it caches into.
    if status.fleet.is_some() {
        return same_netns.then_some(status);
    }
    let ours = std::fs::canonicalize(&cli.config_dir).ok()?;
    (status.config_dir == ours && same_netns).then_some(status)
}

/// Runs `plan` or `apply` through the agent and prints its answer like the direct
/// path would.
pub fn forward(cli: &Cli, cmd: Command) -> anyhow::Result<ExitCode> {
    let reply = control::request(&cli.socket, cmd, REQUEST);
    let response = match reply {
        Ok(r) => r,
        Err(ClientError::Agent(e)) => return Ok(report(cli, &e)),
        Err(e) => return Err(e.into()),
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&response)?);
        return Ok(ExitCode::SUCCESS);
    }
    match response {
        Response::Applied(a) => {
            for op in &a.ops {
                println!("{op}");
            }
            println!("{} changes (via vznetd)", a.ops.len());
        }
        Response::Plan(p) => {
            for op in &p.ops {
                println!("{op}");
            }
            for id in &p.unwired {
                println!("  (VE {id} has no netns: not wired until it runs)");
            }
            for b in &p.blocked {
                println!("  {} cannot be planned: {}", b.unit, b.error);
            }
            println!("{} changes (via vznetd)", p.ops.len());
        }
        Response::Status(_) => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints an agent's error as the direct path would, and picks the exit status.
fn report(cli: &Cli, e: &AgentError) -> ExitCode {
    if cli.json {
        let v = serde_json::json!({ "ok": false, "error": e });
        println!("{v}");
    }
    match e {
        AgentError::InvalidConfig { errors } => {
            for err in errors {
                eprintln!("error: {err}");
            }
            eprintln!(
                "vznet: {} error(s) in {}; nothing changed (vznetd keeps running the previous config)",
                errors.len(),
                cli.config_dir.display()
            );
        }
        AgentError::UnitsFailed { applied } => {
            for op in &applied.ops {
                println!("{op}");
            }
            for f in &applied.failed {
                eprintln!("vznet: {} failed and was rolled back: {}", f.unit, f.error);
            }
            eprintln!(
                "vznet: {} changes applied, {} unit(s) failed (via vznetd; it retries them)",
                applied.ops.len(),
                applied.failed.len()
            );
        }
        other => eprintln!("vznet: vznetd: {other}"),
    }
    let code = e.exit_code();
    debug_assert!(code == 1 || code == EXIT_INVALID);
    ExitCode::from(code)
}

/// Asks vznetd to re-read the config (with the VEs that run now and their live
/// changes) and apply it; an error if it refused or a unit failed.
pub fn reload(cli: &Cli) -> anyhow::Result<Vec<Op>> {
    match control::request(&cli.socket, Command::Reload, REQUEST)? {
        Response::Applied(a) => Ok(a.ops),
        other => anyhow::bail!("vznetd answered a reload with {other:?}"),
    }
}
