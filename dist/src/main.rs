//! `vznet-dist`: writes what the package ships that is generated from the code:
//! man pages (from the clap definitions) and shell completions.
//! `scripts/package.sh` runs it before `cargo deb`.

mod completion;
mod man;
mod vrrp_flags;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};

/// Writes vznet's generated files for packaging.
#[derive(Debug, Parser)]
#[command(name = "vznet-dist")]
struct Args {
    /// What to write.
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// vznet(8), vznetd(8), vznet-vrrp(8) into DIR (vznet.toml(5) is written by
    /// hand: dist/man/vznet.toml.5).
    Man {
        /// Output folder.
        dir: PathBuf,
    },
    /// bash, zsh and fish scripts into DIR/bash, DIR/zsh, DIR/fish.
    Completions {
        /// Output folder.
        dir: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().what {
        What::Man { dir } => write_man(&dir),
        What::Completions { dir } => completion::write_all(&dir),
    }
}

fn write_man(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, text) in pages() {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `(file name, roff)` of every generated page.
fn pages() -> Vec<(&'static str, String)> {
    let files = ".TP\n.I /etc/vznet/host.toml\nThe host: sysctls, bonds, VLANs, bridges, routes, VRRP instances, virtual servers (see \\fBvznet.toml\\fR(5)).\n\
.TP\n.I /etc/vznet/ve/ID.toml\nOne VE each: its veth interfaces, routed addresses, runtime keys.\n\
.TP\n.I /etc/vznet/examples/\nA commented example of both (copy it to start).\n\
.TP\n.I /var/lib/vznet/\nState: VE roots (private/ID) and running VEs (run/ID.pid, .cgroup, .log, .live.toml).\n\
.TP\n.I /run/vznet/vznetd.sock\nvznetd's control socket (root only).\n"
        .to_string();
    let log = ".TP\n.B VZNET_LOG\nLog filter (\\fBwarn\\fR by default for vznet, \\fBinfo\\fR for vznetd; \\fBdebug\\fR logs every netlink operation).\n".to_string();
    let vznet = man::page(
        &agent::cli::Cli::command(),
        "8",
        &man::Extra {
            sections: vec![
                ("COMPLETION", "The package installs bash, zsh and fish completions; they complete VE ids and bridge names from the config folder named by \\fB\\-\\-config\\-dir\\fR on the line (else \\fB$VZNET_CONFIG_DIR\\fR, else /etc/vznet).\n".into()),
                ("ENVIRONMENT", log.clone()),
                ("FILES", files.clone()),
            ],
            see_also: vec!["vznetd(8)", "vznet-vrrp(8)", "vznet.toml(5)", "ip(8)", "nft(8)"],
        },
    );
    let vznetd = man::page(
        &agent::daemon::Options::command(),
        "8",
        &man::Extra {
            sections: vec![
                ("SIGNALS", ".TP\n.B SIGHUP\nRe-read the config and apply it; an invalid config is rejected (\\fBvznet status\\fR shows why) and the running one kept.\n.TP\n.BR SIGTERM \", \" SIGINT\nStop: VRRP Masters hand over with priority 0; the network stays as it is.\n".into()),
                ("EXIT STATUS", ".TP\n.B 0\nStopped by a signal.\n.TP\n.B 1\nA runtime failure (the socket or a netlink connection could not be opened).\n.TP\n.B 2\nThe config is invalid at start (systemd does not restart it: RestartPreventExitStatus=2).\n".into()),
                ("ENVIRONMENT", log),
                ("FILES", files),
            ],
            see_also: vec!["vznet(8)", "vznet.toml(5)", "systemd.service(5)"],
        },
    );
    let vrrp = man::page(
        &vrrp_flags::command(),
        "8",
        &man::Extra {
            sections: vec![
                ("SEVERAL INSTANCES", ".PP\nThe flags above describe one instance. \\fB\\-\\-and\\fR starts the flags of the next one; all instances of one process share one raw socket per interface and address family:\n.PP\n.nf\nvznet\\-vrrp \\-\\-interface eth0 \\-\\-vrid 51 \\-\\-priority 150 \\-\\-vip 192.0.2.100/24 \\e\n       \\-\\-and \\-\\-interface eth0 \\-\\-vrid 52 \\-\\-vip fd00::100/64\n.fi\n".into()),
                ("NOTIFY HOOKS", ".PP\nHooks get \\fBVRRP_STATE\\fR (MASTER, BACKUP, FAULT, INITIALIZE), \\fBVRRP_PREVIOUS_STATE\\fR, \\fBVRRP_REASON\\fR, \\fBVRRP_INSTANCE\\fR, \\fBVRRP_INTERFACE\\fR, \\fBVRRP_VRID\\fR, \\fBVRRP_PRIORITY\\fR and \\fBVRRP_VIRTUAL_IPS\\fR in their environment, and run one at a time per instance.\n".into()),
                ("ENVIRONMENT", ".TP\n.B RUST_LOG\nLog filter (default \\fBinfo\\fR); every state change is one line with \\fIfrom=\\fR, \\fIto=\\fR and \\fIreason=\\fR.\n".into()),
            ],
            see_also: vec!["vznetd(8)", "vznet.toml(5)", "keepalived(8)"],
        },
    );
    vec![
        ("vznet.8", vznet),
        ("vznetd.8", vznetd),
        ("vznet-vrrp.8", vrrp),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subcommand, at every depth, has its subsection in vznet(8), and
    /// every flag of every program is on its page.
    #[test]
    fn pages_name_every_subcommand_and_every_flag() {
        let pages = pages();
        let page = |f: &str| &pages.iter().find(|(n, _)| *n == f).expect("page").1;
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for sub in cmd
                .get_subcommands()
                .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            {
                let p = format!("{path} {}", sub.get_name());
                out.push(p.clone());
                walk(sub, &p, out);
            }
        }
        let mut subs = Vec::new();
        walk(&agent::cli::Cli::command(), "vznet", &mut subs);
        assert!(subs.len() >= 14, "{subs:?}");
        for s in subs {
            let heading = format!(".SS \"{}\"", man::escape(&s));
            assert!(page("vznet.8").contains(&heading), "{heading} missing");
        }
        for (file, cmd) in [
            ("vznet.8", agent::cli::Cli::command()),
            ("vznetd.8", agent::daemon::Options::command()),
            ("vznet-vrrp.8", vrrp_flags::command()),
        ] {
            let mut longs = Vec::new();
            fn flags(cmd: &clap::Command, out: &mut Vec<String>) {
                out.extend(
                    cmd.get_arguments()
                        .filter(|a| !a.is_hide_set())
                        .filter_map(|a| a.get_long())
                        .filter(|l| *l != "help" && *l != "version")
                        .map(str::to_string),
                );
                for sub in cmd.get_subcommands() {
                    flags(sub, out);
                }
            }
            flags(&cmd, &mut longs);
            assert!(!longs.is_empty());
            for l in longs {
                let want = format!("\\fB\\-\\-{}\\fR", man::escape(&l));
                assert!(page(file).contains(&want), "{file}: --{l} missing");
            }
        }
    }
}
