//! `vznet ve set`: change a VE's network live and/or in its file.

use std::process::ExitCode;

use anyhow::Context;
use netcfg::apply::{missing_features, Engine};
use netcfg::desired::Desired;
use netcfg::model::{Config, SourceFile};

use super::{agent, load, runtime, Cli, EXIT_INVALID};
use crate::ve::change::{scope, write_atomic, Change, Overlay};

fn invalid(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("vznet: {msg}; nothing changed");
    Ok(ExitCode::from(EXIT_INVALID))
}

fn print_errors(what: &str, errors: &netcfg::model::ConfigErrors) -> anyhow::Result<ExitCode> {
    for e in &errors.0 {
        eprintln!("error: {e}");
    }
    invalid(format!("ve set: {what}"))
}

/// Applies `changes` to VE `id`: checked against its current state, validated
/// with the whole config, applied live if it runs, saved with `save`.
pub(super) fn set(cli: &Cli, id: u32, changes: &[Change], save: bool) -> anyhow::Result<ExitCode> {
    let state = &cli.state_dir;
    if changes.is_empty() {
        return invalid("ve set: give --netif-add, --netif-del, --ipadd or --ipdel");
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
        // Stopped: only the file changes.
        if let Some(text) = &saved_text {
            write_atomic(&file, text)?;
            println!("VE {id}: saved to {} (not running)", file.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let old_overlay = Overlay::read(state, id, pid)?;
    let mut overlay = old_overlay.clone().unwrap_or_else(|| Overlay::new(pid));
    overlay.record(changes, save);
    // Loaders (vznetd among them) see the file and the overlay together.
    if let Some(text) = &saved_text {
        write_atomic(&file, text)?;
    }
    overlay.write(state, id)?;
    let applied = if agent::find(cli).is_some() {
        agent::reload(cli)
    } else {
        live_apply(&effective, &before, &after)
    };
    // The host's anti-spoofing rules follow the VE's netifs and addresses.
    let mut network_changed = false;
    let applied = applied.and_then(|ops| {
        network_changed = true;
        let ports = crate::ve::firewall::antispoof_ports(&after, pid)?;
        crate::ve::firewall::set_antispoof(&[(id, ports)])?;
        Ok(ops)
    });
    match applied {
        Ok(ops) => {
            for op in &ops {
                println!("{op}");
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
            } else if network_changed {
                // The network part went through: take it back to the state
                // the restored files describe.
                undone = match load(cli) {
                    Ok((config, _)) => live_apply(&config, &after, &before).is_ok(),
                    Err(_) => false,
                };
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

/// Plans the whole config and applies only VE `after.id`'s part of it.
fn live_apply(
    effective: &Config,
    before: &netcfg::model::VeConfig,
    after: &netcfg::model::VeConfig,
) -> anyhow::Result<Vec<netcfg::op::Op>> {
    let desired = Desired::from_config(effective);
    if let Some(missing) = missing_features(&desired)? {
        anyhow::bail!("{missing}");
    }
    let keep = scope(before, after);
    runtime()?.block_on(async {
        let engine = Engine::new(&desired).context("opening netlink sockets")?;
        let plan = engine.plan(&desired).await?;
        let report = engine.apply_plan_where(&desired, plan, &keep).await?;
        Ok(report.ops)
    })
}
