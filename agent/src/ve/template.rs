//! VE roots: the built-in busybox template, or a copy of a folder.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};

const BUSYBOX: &str = "/bin/busybox";

/// An init for the busybox template: waits, and exits on SIGTERM (a PID 1 gets
/// no default signal actions, so it must trap).
const BUSYBOX_INIT: &str =
    "#!/bin/sh\ntrap 'exit 0' TERM INT\nwhile :; do sleep 1 & wait $!; done\n";

fn private(state: &Path, id: u32) -> PathBuf {
    state.join("private").join(id.to_string())
}

/// Unpacks `template` (`busybox` or a folder) into the VE's private area and
/// writes `ve/ID.toml` if there is none. Returns the root.
pub fn create(
    config_dir: &Path,
    state: &Path,
    id: u32,
    template: &str,
    hostname: Option<&str>,
) -> Result<PathBuf> {
    let root = private(state, id);
    ensure!(
        !root.exists(),
        "VE {id} already has a root at {}",
        root.display()
    );
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let made = if template == "busybox" {
        busybox(&root)
    } else {
        copy_dir(Path::new(template), &root)
    };
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&root);
        return Err(e.context(format!("template {template}")));
    }
    let file = config_dir.join("ve").join(format!("{id}.toml"));
    if !file.exists() {
        std::fs::create_dir_all(config_dir.join("ve"))?;
        let host = hostname.map_or_else(|| format!("ve{id}"), str::to_string);
        let init = if template == "busybox" {
            "init = [\"/sbin/init\"]\n"
        } else {
            ""
        };
        std::fs::write(
            &file,
            format!(
                "id = {id}\nhostname = \"{host}\"\nroot = \"{}\"\n{init}",
                root.display()
            ),
        )?;
    }
    Ok(root)
}

fn busybox(root: &Path) -> Result<()> {
    ensure!(
        Path::new(BUSYBOX).exists(),
        "{BUSYBOX} is missing: apt-get install -y busybox-static"
    );
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var/run",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox"))?;
    let out = std::process::Command::new(BUSYBOX).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(root.join("sbin/init"), BUSYBOX_INIT)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        root.join("sbin/init"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n")?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    ensure!(
        from.is_dir(),
        "{} is not a folder (templates: busybox or a folder)",
        from.display()
    );
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let dst = to.join(entry.file_name());
        if ty.is_dir() {
            std::fs::create_dir_all(&dst)?;
            copy_dir(&entry.path(), &dst)?;
        } else if ty.is_symlink() {
            symlink(std::fs::read_link(entry.path())?, &dst)?;
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dst)?;
        }
    }
    Ok(())
}

/// Removes a stopped VE's private area and file.
pub fn destroy(config_dir: &Path, state: &Path, id: u32) -> Result<()> {
    if super::running(state, id).is_some() {
        bail!("VE {id} is running: stop it first");
    }
    let root = private(state, id);
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    let file = config_dir.join("ve").join(format!("{id}.toml"));
    if file.exists() {
        std::fs::remove_file(&file)?;
    }
    Ok(())
}
