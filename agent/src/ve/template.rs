//! VE roots: the built-in busybox template, a copy of a folder, or a tar
//! archive (plain or gzip) unpacked.

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
    let file = config_dir.join("ve").join(format!("{id}.toml"));
    // Checked before anything is made: the file must be valid as written.
    let text = if file.exists() {
        None
    } else {
        Some(ve_file(id, hostname, &root, template == "busybox")?)
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let made = if template == "busybox" {
        busybox(&root)
    } else if Path::new(template).is_file() {
        unpack(Path::new(template), &root)
    } else {
        copy_dir(Path::new(template), &root)
    };
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&root);
        return Err(e.context(format!("template {template}")));
    }
    if let Some(text) = text {
        std::fs::create_dir_all(config_dir.join("ve"))?;
        std::fs::write(&file, text)?;
    }
    Ok(root)
}

/// A new `ve/ID.toml`, written by toml_edit (never by formatting strings: a
/// quote or a newline in a value would end it and start keys of its own).
fn ve_file(id: u32, hostname: Option<&str>, root: &Path, busybox: bool) -> Result<String> {
    let hostname = hostname.map_or_else(|| format!("ve{id}"), str::to_string);
    netcfg::model::check_hostname(&hostname).map_err(|e| anyhow::anyhow!("--hostname: {e}"))?;
    let root = root.to_str().with_context(|| {
        format!(
            "{} is not UTF-8: a config file cannot name it",
            root.display()
        )
    })?;
    let mut doc = toml_edit::DocumentMut::new();
    doc["id"] = toml_edit::value(i64::from(id));
    doc["hostname"] = toml_edit::value(hostname);
    doc["root"] = toml_edit::value(root);
    if busybox {
        let init: toml_edit::Array = ["/sbin/init"].into_iter().collect();
        doc["init"] = toml_edit::value(init);
    }
    Ok(doc.to_string())
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

/// Unpacks a tar archive (gzip-compressed or not, told by its first bytes)
/// into `root`. Every entry must stay inside: absolute paths and `..` are
/// refused (in names and in hard-link targets), before anything is written
/// for that entry. Symbolic links may point anywhere: they resolve inside the
/// VE once it runs.
pub fn unpack(archive: &Path, root: &Path) -> Result<()> {
    use std::io::Read;
    let mut file =
        std::fs::File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic)?;
    let file = std::fs::File::open(archive)?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_unpack_xattrs(false);
    let mut count = 0usize;
    for entry in tar
        .entries()
        .with_context(|| format!("reading {}", archive.display()))?
    {
        let mut entry = entry.with_context(|| format!("reading {}", archive.display()))?;
        let path = entry.path()?.into_owned();
        check_inside(&path)
            .with_context(|| format!("{}: entry {}", archive.display(), path.display()))?;
        if entry.header().entry_type().is_hard_link() {
            if let Some(target) = entry.link_name()? {
                check_inside(&target).with_context(|| {
                    format!(
                        "{}: hard link {} -> {}",
                        archive.display(),
                        path.display(),
                        target.display()
                    )
                })?;
            }
        }
        let ok = entry
            .unpack_in(root)
            .with_context(|| format!("{}: unpacking {}", archive.display(), path.display()))?;
        ensure!(
            ok,
            "{}: entry {} leaves the root",
            archive.display(),
            path.display()
        );
        count += 1;
    }
    ensure!(count > 0, "{} holds no entries", archive.display());
    Ok(())
}

/// An archive path must be relative and never climb.
fn check_inside(path: &Path) -> Result<()> {
    use std::path::Component;
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                bail!("is an absolute path: refused (a template's paths are relative to the VE's root)")
            }
            Component::ParentDir => {
                bail!("contains `..`: refused (it could write outside the VE's root)")
            }
            Component::CurDir | Component::Normal(_) => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with one regular file whose name is written raw (the tar crate's
    /// own builder refuses `..` and absolute names, as it should).
    fn tar_with(name: &str, link: Option<&str>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_old();
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        match link {
            Some(target) => {
                h.set_entry_type(tar::EntryType::Link);
                let l = &mut h.as_old_mut().linkname;
                l[..target.len()].copy_from_slice(target.as_bytes());
                h.set_size(0);
            }
            None => h.set_size(2),
        }
        h.set_mode(0o644);
        h.set_cksum();
        let data: &[u8] = if link.is_some() { b"" } else { b"x\n" };
        b.append(&h, data).expect("append");
        b.into_inner().expect("finish")
    }

    #[test]
    fn the_ve_file_is_toml_written_by_toml_edit_and_bad_host_names_make_nothing() {
        let text =
            ve_file(7, Some("web-1"), Path::new("/var/lib/vz/\"x\"\n[a]"), true).expect("valid");
        let ve: netcfg::model::VeConfig = toml::from_str(&text).expect("parses");
        assert_eq!(ve.id, 7);
        assert_eq!(ve.hostname.as_deref(), Some("web-1"));
        assert_eq!(ve.root, Some(PathBuf::from("/var/lib/vz/\"x\"\n[a]")));
        assert_eq!(ve.init, Some(vec!["/sbin/init".to_string()]));
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, state) = (dir.path().join("etc"), dir.path().join("state"));
        for bad in ["web\"1", "web\n[[netif]]", "-web"] {
            let e = create(&config, &state, 7, "busybox", Some(bad)).expect_err(bad);
            assert!(
                format!("{e:#}").contains("--hostname: host name"),
                "{bad}: {e:#}"
            );
        }
        assert!(!config.join("ve/7.toml").exists() && !private(&state, 7).exists());
    }

    #[test]
    fn archives_that_climb_or_are_absolute_are_refused_and_write_nothing_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        for (name, link, why) in [
            ("../evil", None, "`..`"),
            ("a/../../evil", None, "`..`"),
            ("/tmp/evil", None, "absolute"),
            ("ok-link", Some("../../etc/passwd"), "`..`"),
        ] {
            std::fs::create_dir_all(&root).expect("root");
            let archive = dir.path().join("t.tar");
            std::fs::write(&archive, tar_with(name, link)).expect("write");
            let e = unpack(&archive, &root).expect_err("must refuse");
            assert!(format!("{e:#}").contains(why), "{name}: {e:#}");
            assert!(!dir.path().join("evil").exists());
        }
    }

    #[test]
    fn a_gzipped_archive_unpacks_with_modes_and_symlinks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "bin/hello", &b"hi\n!\n"[..5])
            .expect("file");
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        l.set_uid(0);
        l.set_gid(0);
        l.set_mtime(0);
        l.set_cksum();
        b.append_link(&mut l, "bin/sh", "/bin/hello").expect("link");
        let raw = b.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).expect("gz");
        let archive = dir.path().join("t.tar.gz");
        std::fs::write(&archive, gz.finish().expect("gz")).expect("write");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        unpack(&archive, &root).expect("unpacks");
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(root.join("bin/hello")).expect("file there");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).expect("symlink"),
            Path::new("/bin/hello")
        );
    }
}
