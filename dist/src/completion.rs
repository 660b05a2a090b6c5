//! Completion scripts for bash, zsh and fish. vznet's scripts ask `vznet` itself
//! for candidates (VE ids and bridge names from the config folder: see
//! `agent::cli::completion`); vznetd's and vznet-vrrp's are static, from their
//! flags.

use std::path::Path;

use anyhow::Context;
use clap_complete::env::{Bash, EnvCompleter, Fish, Zsh};
use clap_complete::{generate, Shell};

/// Where Debian's shells look: `(shell, folder, file name of PROGRAM)`.
pub const LAYOUT: [(&str, &str, &str); 3] = [
    ("bash", "bash-completion/completions", "{}"),
    ("zsh", "zsh/vendor-completions", "_{}"),
    ("fish", "fish/vendor_completions.d", "{}.fish"),
];

/// Writes every program's script for every shell under `out` (as `out/bash/vznet`,
/// `out/zsh/_vznet`, `out/fish/vznet.fish`, ...).
pub fn write_all(out: &Path) -> anyhow::Result<()> {
    for (shell, _, pattern) in LAYOUT {
        let dir = out.join(shell);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, script) in scripts(shell)? {
            let path = dir.join(pattern.replace("{}", name));
            std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

/// `(program, script)` for one shell.
fn scripts(shell: &str) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let mut vznet = Vec::new();
    let dynamic: &dyn EnvCompleter = match shell {
        "bash" => &Bash,
        "zsh" => &Zsh,
        _ => &Fish,
    };
    dynamic.write_registration("COMPLETE", "vznet", "vznet", "vznet", &mut vznet)?;
    let fixed: Shell = shell.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = vec![("vznet", vznet)];
    for (name, mut cmd) in [
        (
            "vznetd",
            <agent::daemon::Options as clap::CommandFactory>::command(),
        ),
        ("vznet-vrrp", crate::vrrp_flags::command()),
    ] {
        let mut script = Vec::new();
        generate(fixed, &mut cmd, name, &mut script);
        out.push((name, script));
    }
    Ok(out)
}
