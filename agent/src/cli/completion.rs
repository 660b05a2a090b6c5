//! Shell completion. `COMPLETE=bash vznet` (or zsh, fish) prints the script a
//! shell sources; the script asks `vznet` itself for candidates as the user
//! types, so VE ids and bridge names come from the config folder named on the
//! line being completed (`--config-dir`, else `$VZNET_CONFIG_DIR`, else
//! /etc/vznet). The package installs the scripts; nothing here runs unless
//! `COMPLETE` is set.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

use clap::CommandFactory;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use clap_complete::CompleteEnv;

use super::Cli;

/// Answers the shell and exits when `COMPLETE` is set; returns otherwise.
pub fn complete_if_asked() {
    CompleteEnv::with_factory(Cli::command)
        .bin("vznet")
        .completer("vznet")
        .complete();
}

/// VE ids: the `ve/ID.toml` files of the config folder.
pub fn ve_ids() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let current = current.to_string_lossy();
        let mut ids: Vec<u32> = std::fs::read_dir(config_dir().join("ve"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let path = e.path();
                let toml = path.extension().is_some_and(|x| x == "toml");
                toml.then(|| path.file_stem()?.to_str()?.parse().ok())
                    .flatten()
            })
            .collect();
        ids.sort_unstable();
        ids.into_iter()
            .map(|id| id.to_string())
            .filter(|id| id.starts_with(current.as_ref()))
            .map(CompletionCandidate::new)
            .collect()
    })
}

/// `--netif-add IF,MAC,HOST_IF,HOST_MAC,BRIDGE`: once four commas are typed,
/// the bridges of host.toml.
pub fn netif_bridge() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        let current = current.to_string_lossy();
        let Some((fields, partial)) = current.rsplit_once(',') else {
            return Vec::new();
        };
        if fields.matches(',').count() != 3 {
            return Vec::new();
        }
        bridges()
            .into_iter()
            .filter(|b| b.starts_with(partial))
            .map(|b| CompletionCandidate::new(format!("{fields},{b}")))
            .collect()
    })
}

/// Bridge names declared in host.toml (read loosely: a half-written file still
/// completes what it names).
fn bridges() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(config_dir().join("host.toml")) else {
        return Vec::new();
    };
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    doc.get("bridge")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("name")?.as_str().map(str::to_string))
        .collect()
}

/// The config folder of the command line being completed (the shell passes it
/// after `--`).
fn config_dir() -> PathBuf {
    config_dir_of(std::env::args_os())
}

fn config_dir_of(args: impl IntoIterator<Item = OsString>) -> PathBuf {
    let args: Vec<OsString> = args.into_iter().collect();
    for (n, arg) in args.iter().enumerate() {
        let text = arg.to_string_lossy();
        if let Some(dir) = text.strip_prefix("--config-dir=") {
            return PathBuf::from(dir);
        }
        if text == "--config-dir" {
            if let Some(dir) = args.get(n + 1) {
                return PathBuf::from(dir);
            }
        }
    }
    std::env::var_os("VZNET_CONFIG_DIR").map_or_else(|| PathBuf::from("/etc/vznet"), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_folder_comes_from_the_line_being_completed() {
        let line = |s: &str| s.split(' ').map(OsString::from).collect::<Vec<_>>();
        assert_eq!(
            config_dir_of(line("vznet -- vznet --config-dir /srv/c ve start")),
            PathBuf::from("/srv/c")
        );
        assert_eq!(
            config_dir_of(line("vznet -- vznet ve stop --config-dir=/x 1")),
            PathBuf::from("/x")
        );
    }
}
