//! VM scenario `ve-cgroup-v2`: the VE runtime under pure cgroup v2 with its
//! controllers, which this machine's hybrid layout cannot show. A VE with
//! limits is started the way `vznet-ves.service` starts it (the starter alone
//! in a service's group): the starter moves into `vznet/supervisors`, so the
//! service's group can hand the memory and cpu controllers to the VE's group.
//! Its ExecStop runs in `.control` below the unit's group, as systemd does for
//! delegated units. And the case that is why: a starter that shares its group
//! cannot hand out controllers, and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

const CGROUP: &str = "/sys/fs/cgroup";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Runs `lab vznet ARGS` from a shell that first moves itself into `group`
/// (as systemd starts a service's process in its group).
fn vznet_in(group: &Path, cfg: &Path, state: &Path, args: &[&str]) -> Result<std::process::Output> {
    let me = std::env::current_exe()?;
    Command::new("/bin/sh")
        .arg("-c")
        .arg("echo $$ > \"$1/cgroup.procs\" && shift && exec \"$@\"")
        .arg("sh")
        .arg(group)
        .arg(me)
        .arg("vznet")
        .arg("--config-dir")
        .arg(cfg)
        .arg("--state-dir")
        .arg(state)
        .arg("--socket")
        .arg(state.join("none.sock"))
        .args(args)
        .output()
        .context("running vznet")
}

/// A cgroup folder, removed (after its processes) when dropped.
struct Group(PathBuf);

impl Drop for Group {
    fn drop(&mut self) {
        // Deepest first.
        let mut dirs = vec![self.0.clone()];
        let mut i = 0;
        while i < dirs.len() {
            if let Ok(rd) = std::fs::read_dir(&dirs[i]) {
                dirs.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
            i += 1;
        }
        for d in dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The scenario.
pub fn ve_cgroup_v2() -> Result<()> {
    let root = Path::new(CGROUP);
    if !root.join("cgroup.controllers").exists() {
        let st = Command::new("mount")
            .args(["-t", "cgroup2", "cgroup2", CGROUP])
            .status()?;
        ensure!(st.success(), "mounting cgroup2 at {CGROUP}");
    }
    let controllers = read(&root.join("cgroup.controllers"));
    ensure!(
        ["memory", "cpu"]
            .iter()
            .all(|c| controllers.split_whitespace().any(|x| x == *c)),
        "no memory and cpu controllers in cgroup v2 here: {controllers:?}"
    );
    std::fs::write(root.join("cgroup.subtree_control"), "+memory +cpu")?;
    let cfg = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    std::fs::write(cfg.path().join("host.toml"), "")?;
    let me = std::env::current_exe()?;
    for id in ["990", "991"] {
        let st = Command::new(&me)
            .arg("vznet")
            .arg("--config-dir")
            .arg(cfg.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(["ve", "create", id, "--template", "busybox"])
            .status()?;
        ensure!(st.success(), "ve create {id}");
        let file = cfg.path().join(format!("ve/{id}.toml"));
        let text = std::fs::read_to_string(&file)? + "memory_limit = \"64M\"\ncpu_weight = 50\n";
        std::fs::write(&file, text)?;
    }

    // As vznet-ves.service: the starter alone in the service's group.
    let svc = Group(root.join("vznet-ves-test.service"));
    std::fs::create_dir(&svc.0)?;
    let out = vznet_in(&svc.0, cfg.path(), state.path(), &["ve", "start", "990"])?;
    ensure!(
        out.status.success(),
        "ve start 990 as a service: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let parent = svc.0.join(agent::ve::cgroup::parent_name(state.path()));
    let ve = parent.join("990");
    println!(
        "  memory.max {} cpu.weight {} supervisors {:?} service procs {:?}",
        read(&ve.join("memory.max")),
        read(&ve.join("cpu.weight")),
        read(&parent.join("supervisors/cgroup.procs")),
        read(&svc.0.join("cgroup.procs"))
    );
    ensure!(read(&ve.join("memory.max")) == "67108864", "memory.max");
    ensure!(read(&ve.join("cpu.weight")) == "50", "cpu.weight");
    ensure!(
        read(&svc.0.join("cgroup.procs")).is_empty(),
        "the service's group holds no process of its own"
    );
    ensure!(
        read(&parent.join("supervisors/cgroup.procs"))
            .lines()
            .count()
            == 1,
        "the VE's supervisor lives in the supervisors leaf"
    );
    ensure!(
        !read(&ve.join("cgroup.procs")).is_empty(),
        "the VE runs in its group"
    );
    // systemd runs a delegated unit's ExecStop in `.control` below it (the
    // unit's group is an inner node by then).
    let control = svc.0.join(".control");
    std::fs::create_dir(&control)?;
    let out = vznet_in(&control, cfg.path(), state.path(), &["ve", "stop", "990"])?;
    ensure!(
        out.status.success(),
        "ve stop 990: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!ve.exists(), "the VE's group goes with it");

    // A starter that shares its group (a login shell's) cannot hand out
    // controllers, and says why.
    let shared = Group(root.join("vznet-shared-test.scope"));
    std::fs::create_dir(&shared.0)?;
    let mut other = Command::new("/bin/sh")
        .arg("-c")
        .arg("echo $$ > \"$1/cgroup.procs\" && exec sleep 60")
        .arg("sh")
        .arg(&shared.0)
        .spawn()?;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = vznet_in(&shared.0, cfg.path(), state.path(), &["ve", "start", "991"])?;
    let _ = other.kill();
    let _ = other.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    println!("  shared group: {}", err.trim());
    ensure!(
        !out.status.success() && err.contains("cgroup v2 allows it only in a group"),
        "a starter sharing its group: {err}"
    );
    Ok(())
}
