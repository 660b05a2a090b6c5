//! `vznet ve set`: change a VE live and/or in its file.

use std::net::IpAddr;
use std::process::ExitCode;

use anyhow::Context;
use ipnet::IpNet;
use netcfg::model::{Config, SourceFile, VeConfig};
use serde_json::json;

use super::{agent, apply_scoped, invalid, load, Cli, VeCommand};
use crate::ve::change::Change;
use crate::ve::overlay::{write_atomic, Overlay};
use crate::ve::{antispoof, etc};

/// `ve set`'s arguments as changes, in the order they apply: deletions,
/// additions, then the rest.
fn changes(cmd: &VeCommand, ve: Option<&VeConfig>) -> Result<Vec<Change>, String> {
    let VeCommand::Set {
        netif_add,
        netif_del,
        ifname,
        ipadd,
        ipdel,
        gateway,
        hostname,
        nameserver,
        searchdomain,
        onboot,
        bootorder,
        ..
    } = cmd
    else {
        return Ok(Vec::new());
    };
    let mut out: Vec<Change> = Vec::new();
    out.extend(
        netif_del
            .iter()
            .map(|n| Change::NetifDel { name: n.clone() }),
    );
    out.extend(
        netif_add
            .iter()
            .map(|n| Change::NetifAdd { netif: n.clone() }),
    );
    for d in ipdel {
        out.push(match (ifname, d.as_str()) {
            (None, "all") => Change::IpDelAll,
            (Some(n), "all") => Change::NetifIpDelAll { netif: n.clone() },
            (None, _) => Change::IpDel {
                ip: address(d, "--ipdel")?,
            },
            (Some(n), _) => Change::NetifIpDel {
                netif: n.clone(),
                ip: address(d.split('/').next().unwrap_or(d), "--ipdel")?,
            },
        });
    }
    for a in ipadd {
        out.push(match ifname {
            None if a.contains('/') => {
                return Err(format!(
                    "--ipadd {a}: a routed (venet) address is a single address; \
                     give --ifname IF for a netif's address with a prefix length"
                ))
            }
            None => Change::IpAdd {
                ip: address(a, "--ipadd")?,
            },
            Some(n) => Change::NetifIpAdd {
                netif: n.clone(),
                net: a.parse::<IpNet>().map_err(|_| {
                    format!("--ipadd {a:?}: a netif's address needs a prefix length (10.0.0.5/24)")
                })?,
            },
        });
    }
    if let Some(g) = gateway {
        let netif = match (ifname, ve) {
            (Some(n), _) => n.clone(),
            (None, Some(v)) if v.netif.len() == 1 => v.netif[0].name.clone(),
            _ => return Err("--gateway needs --ifname IF (the VE has no single netif)".into()),
        };
        if g == "none" {
            for ipv6 in [false, true] {
                out.push(Change::Gateway {
                    netif: netif.clone(),
                    ipv6,
                    gateway: None,
                });
            }
        } else {
            let gateway = address(g, "--gateway")?;
            out.push(Change::Gateway {
                netif,
                ipv6: gateway.is_ipv6(),
                gateway: Some(gateway),
            });
        }
    }
    if ifname.is_some() && ipadd.is_empty() && ipdel.is_empty() && gateway.is_none() {
        return Err("--ifname names the netif of --ipadd, --ipdel or --gateway; give one".into());
    }
    if let Some(h) = hostname {
        out.push(Change::Hostname {
            hostname: h.clone(),
        });
    }
    if !nameserver.is_empty() {
        out.push(Change::Nameservers {
            nameservers: nameserver.clone(),
        });
    }
    if !searchdomain.is_empty() {
        out.push(Change::Search {
            domains: searchdomain.clone(),
        });
    }
    if let Some(o) = onboot {
        out.push(Change::Onboot { onboot: *o });
    }
    if let Some(b) = bootorder {
        out.push(Change::BootOrder { boot_order: b.0 });
    }
    Ok(out)
}

fn address(s: &str, arg: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("{arg} {s:?} is not an IP address"))
}

/// `vznet ve set`.
pub(super) fn run(cli: &Cli, cmd: &VeCommand) -> anyhow::Result<ExitCode> {
    let VeCommand::Set { id, save, .. } = cmd else {
        return Ok(ExitCode::SUCCESS);
    };
    let file = crate::ve::ve_file(&cli.config_dir, *id);
    match changes(cmd, file.as_ref()) {
        Ok(c) => set(cli, *id, &c, *save),
        Err(e) => invalid(format!("ve set: {e}")),
    }
}

fn print_errors(what: &str, errors: &netcfg::model::ConfigErrors) -> anyhow::Result<ExitCode> {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    invalid(format!("ve set: {what}"))
}

/// Applies `changes` to VE `id`: checked against its current state, validated
/// with the whole config, applied live if it runs, saved with `save`.
fn set(cli: &Cli, id: u32, changes: &[Change], save: bool) -> anyhow::Result<ExitCode> {
    let state = &cli.state_dir;
    if changes.is_empty() {
        return invalid(
            "ve set: give a change (--netif-add, --netif-del, --ipadd, --ipdel, --gateway, \
             --hostname, --nameserver, --searchdomain, --onboot, --bootorder)",
        );
    }
    if let Some(c) = changes.iter().find(|c| c.is_file_only() && !save) {
        return invalid(format!(
            "ve set: {} is kept in the VE file only: add --save",
            c.arg()
        ));
    }
    let (config, _) = match load(cli) {
        Ok(v) => v,
        Err(code) => return Ok(code),
    };
    let Some(before) = config.ve(id).cloned() else {
        return invalid(format!(
            "no VE {id}: {} is missing",
            cli.config_dir
                .join("ve")
                .join(format!("{id}.toml"))
                .display()
        ));
    };
    let pid = crate::ve::running(state, id);
    if pid.is_none() && !save {
        return invalid(format!(
            "VE {id} is not running: add --save to change its file"
        ));
    }
    let mut after = before.clone();
    for c in changes {
        if let Err(e) = c.check(&after) {
            return invalid(format!("{e:#}"));
        }
        c.apply(&mut after);
    }
    // The running state with the change must be a valid config.
    let mut effective = config;
    if let Some(f) = effective.ves.iter_mut().find(|f| f.ve.id == id) {
        f.ve = after.clone();
    }
    if let Err(errors) = effective.validate() {
        return print_errors("the change is not valid", &errors);
    }
    // And so must the file as --save would write it (validated on its own,
    // without other live changes).
    let file = cli.config_dir.join("ve").join(format!("{id}.toml"));
    let mut saved_text = None;
    let old_text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    if save {
        let mut doc: toml_edit::DocumentMut = old_text
            .parse()
            .with_context(|| format!("parsing {}", file.display()))?;
        for c in changes {
            c.edit(&mut doc, id)
                .with_context(|| format!("{}: {}", file.display(), c.arg()))?;
        }
        let text = doc.to_string();
        let mut on_disk = match Config::load(&cli.config_dir) {
            Ok(c) => c,
            Err(errors) => return print_errors("the config on disk is invalid", &errors),
        };
        if let Some(f) = on_disk.ves.iter_mut().find(|f| f.ve.id == id) {
            let source = SourceFile::new(&file, text.clone());
            match toml::from_str(&text) {
                Ok(ve) => f.ve = ve,
                Err(e) => {
                    return invalid(format!(
                        "{}: the edited file does not parse: {e}",
                        file.display()
                    ))
                }
            }
            f.source = source;
        }
        if let Err(errors) = on_disk.validate() {
            return print_errors("the file as --save would write it is not valid", &errors);
        }
        saved_text = Some(text);
    }

    let Some(pid) = pid else {
        // Stopped: only the file changes (the VE's own files follow at start).
        if let Some(text) = &saved_text {
            write_atomic(&file, text)?;
            if cli.json {
                println!(
                    "{}",
                    json!({ "ok": true, "veid": id, "live": false, "saved": true, "changes": 0 })
                );
            } else {
                println!("VE {id}: saved to {} (not running)", file.display());
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    // The files inside the VE, read and worked out before anything changes.
    let files = match etc::prepare(&crate::ve::root_of(&after, state), &etc::Wanted::of(&after)) {
        Ok(f) => f,
        Err(e) => return invalid(format!("ve set: VE {id}'s files: {e:#}")),
    };
    let old_overlay = Overlay::read(state, id, pid)?;
    let mut overlay = old_overlay.clone().unwrap_or_else(|| Overlay::new(pid));
    overlay.record(changes, save);
    // Loaders (vznetd among them) see the file and the overlay together.
    if let Some(text) = &saved_text {
        write_atomic(&file, text)?;
    }
    overlay.write(state, id)?;
    let network = changes.iter().any(Change::is_network);
    let mut network_applied = false;
    let applied = (|| -> anyhow::Result<(Vec<netcfg::op::Op>, Vec<&'static str>)> {
        let ops = if !network {
            Vec::new()
        } else if agent::find(cli).is_some() {
            agent::reload(cli)?
        } else {
            apply_scoped(&effective, &[(&before, &after)])?
        };
        network_applied = network;
        if network {
            // The host's anti-spoofing rules follow the VE's netifs and addresses.
            antispoof::set(&[(id, antispoof::ports(&after, pid)?)])?;
        }
        let written = match files {
            Some(f) => f.commit()?,
            None => Vec::new(),
        };
        Ok((ops, written))
    })();
    match applied {
        Ok((ops, written)) => {
            if let Some(Change::Hostname { hostname }) = changes
                .iter()
                .find(|c| matches!(c, Change::Hostname { .. }))
            {
                if let Err(e) = etc::set_live_hostname(pid, hostname) {
                    eprintln!("vznet: warning: VE {id}'s files name it {hostname}, but {e:#}");
                }
            }
            if cli.json {
                println!(
                    "{}",
                    json!({ "ok": true, "veid": id, "live": true, "saved": save,
                            "changes": ops.len(), "ops": ops, "files": written })
                );
                return Ok(ExitCode::SUCCESS);
            }
            for op in &ops {
                println!("{op}");
            }
            for f in &written {
                println!("wrote /etc/{f} in VE {id}");
            }
            let how = if save {
                format!("live and saved to {}", file.display())
            } else {
                "live, until the VE stops".to_string()
            };
            println!("VE {id}: {} changes ({how})", ops.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Put the files back as they were; vznetd, if any, re-reads them.
            if saved_text.is_some() {
                let _ = write_atomic(&file, &old_text);
            }
            let _ = old_overlay
                .unwrap_or_else(|| Overlay::new(pid))
                .write(state, id);
            let mut undone = true;
            if agent::find(cli).is_some() {
                undone = agent::reload(cli).is_ok();
            } else if network_applied {
                // The network part went through: take it back to the state
                // the restored files describe.
                undone = match load(cli) {
                    Ok((config, _)) => apply_scoped(&config, &[(&after, &before)]).is_ok(),
                    Err(_) => false,
                };
            }
            if network_applied {
                undone &= antispoof::ports(&before, pid)
                    .and_then(|p| antispoof::set(&[(id, p)]))
                    .is_ok();
            }
            if undone {
                eprintln!("vznet: ve set: {e:#}; nothing changed");
            } else {
                eprintln!(
                    "vznet: ve set: {e:#}; the files were restored but the running VE may \
                     differ: run `vznet apply`"
                );
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
