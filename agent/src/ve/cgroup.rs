//! A VE's control groups: one per hierarchy it needs, made at start and removed
//! at stop.
//!
//! Two layouts exist: pure cgroup v2 at /sys/fs/cgroup (current distributions),
//! and the hybrid one (controllers on cgroup v1 hierarchies under
//! /sys/fs/cgroup/<controller>, a controller-less cgroup2 at
//! /sys/fs/cgroup/unified). The VE always gets a group in the unified (v2)
//! hierarchy: its `cgroup.procs` is the VE's process list (NPROC). A limit goes
//! to the v2 controller when the unified hierarchy has it, else to the v1
//! controller's hierarchy.
//!
//! Groups are made below the starting process's own group in each hierarchy
//! (so a VE started from inside a delegated or limited group stays inside it),
//! in a folder `vznet` (`vznet-<hash of the state folder>` for a state folder
//! other than the default, so that several runtimes, as parallel tests, never
//! share a name). The folders made are recorded in `run/ID.cgroup`: `stop` and
//! `list` find them from any process.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use netcfg::model::VeConfig;

/// Where each hierarchy is mounted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Layout {
    /// The cgroup2 mount, if any.
    pub unified: Option<PathBuf>,
    /// v1 controller -> its hierarchy's mount.
    pub v1: BTreeMap<String, PathBuf>,
}

impl Layout {
    /// Reads /proc/self/mountinfo.
    pub fn detect() -> io::Result<Layout> {
        Ok(Layout::parse(&fs::read_to_string("/proc/self/mountinfo")?))
    }

    /// Parses mountinfo text: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS`.
    pub fn parse(mountinfo: &str) -> Layout {
        let mut layout = Layout::default();
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let Some(mountpoint) = left.split(' ').nth(4) else {
                continue;
            };
            let mut r = right.split(' ');
            let (Some(fstype), Some(_source), Some(opts)) = (r.next(), r.next(), r.next()) else {
                continue;
            };
            let mountpoint = PathBuf::from(unescape(mountpoint));
            match fstype {
                // The first cgroup2 mount wins (a container may see it twice).
                "cgroup2" if layout.unified.is_none() => layout.unified = Some(mountpoint),
                "cgroup" => {
                    for opt in opts.split(',') {
                        if matches!(
                            opt,
                            "cpu"
                                | "cpuacct"
                                | "memory"
                                | "pids"
                                | "cpuset"
                                | "blkio"
                                | "devices"
                                | "freezer"
                                | "hugetlb"
                                | "net_cls"
                                | "net_prio"
                                | "perf_event"
                                | "rdma"
                                | "misc"
                        ) {
                            layout
                                .v1
                                .entry(opt.to_string())
                                .or_insert_with(|| mountpoint.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// Controllers the unified hierarchy offers at `dir` (its `cgroup.controllers`).
    fn v2_controllers(dir: &Path) -> Vec<String> {
        fs::read_to_string(dir.join("cgroup.controllers"))
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

/// mountinfo escapes spaces and such as `\040`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        if let (b'\\', Some(d)) = (b[i], octal) {
            let v =
                u16::from(d[0] - b'0') * 64 + u16::from(d[1] - b'0') * 8 + u16::from(d[2] - b'0');
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes the cgroup hierarchies visible to this process. `ip netns exec`
/// mounts a fresh sysfs over /sys, which hides /sys/fs/cgroup: when no cgroup
/// hierarchy is mounted here although the process belongs to some (per
/// /proc/self/cgroup), this process moves to a mount namespace of its own
/// (a slave of the current one: nothing propagates back) and mounts them
/// again where the host has them: cgroup2 at /sys/fs/cgroup, or, when v1
/// hierarchies exist too, at /sys/fs/cgroup/unified beside
/// /sys/fs/cgroup/<controllers>. Call it before any thread starts.
pub fn ensure_visible() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    let layout = Layout::detect().context("reading /proc/self/mountinfo")?;
    if layout.unified.is_some() || !layout.v1.is_empty() {
        return Ok(());
    }
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut v2 = false;
    let mut v1: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        if let (Some(_), Some(ctrls), Some(_)) = (parts.next(), parts.next(), parts.next()) {
            if ctrls.is_empty() {
                v2 = true;
            } else if ctrls
                .split(',')
                .any(|c| matches!(c, "cpu" | "memory" | "pids"))
            {
                v1.push(ctrls.to_string());
            }
        }
    }
    if !v2 && v1.is_empty() {
        return Ok(());
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .context("a private mount namespace for the cgroup mounts")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .context("making / a slave mount")?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let top = Path::new("/sys/fs/cgroup");
    if v1.is_empty() {
        mount(Some("cgroup2"), top, Some("cgroup2"), flags, None::<&str>)
            .context("mounting cgroup2 at /sys/fs/cgroup")?;
        return Ok(());
    }
    mount(Some("tmpfs"), top, Some("tmpfs"), flags, Some("mode=755"))
        .context("mounting a tmpfs at /sys/fs/cgroup")?;
    if v2 {
        let dir = top.join("unified");
        fs::create_dir_all(&dir)?;
        mount(Some("cgroup2"), &dir, Some("cgroup2"), flags, None::<&str>)
            .with_context(|| format!("mounting cgroup2 at {}", dir.display()))?;
    }
    for ctrls in v1 {
        let dir = top.join(&ctrls);
        fs::create_dir_all(&dir)?;
        mount(
            Some("cgroup"),
            &dir,
            Some("cgroup"),
            flags,
            Some(ctrls.as_str()),
        )
        .with_context(|| {
            format!(
                "mounting the cgroup v1 hierarchy {ctrls} at {}",
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// The calling process's group in the unified hierarchy (`0::/path`) and in
/// each v1 hierarchy (`N:ctrl,ctrl:/path`), from /proc/self/cgroup.
fn own_groups() -> (PathBuf, BTreeMap<String, PathBuf>) {
    let text = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut unified = PathBuf::from("/");
    let mut v1 = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if ctrls.is_empty() {
            unified = PathBuf::from(path);
        } else {
            for c in ctrls.split(',') {
                v1.insert(c.to_string(), PathBuf::from(path));
            }
        }
    }
    (unified, v1)
}

/// The leaf a lone starter moves into (see [`settle_starter`]).
const SUPERVISORS: &str = "supervisors";

/// The group VE groups go below: the caller's own, or, for a starter that
/// [`settle_starter`] moved into `BASE/PARENT/supervisors`, that `BASE`.
fn base_of(own: &Path, parent: &str) -> PathBuf {
    if own.ends_with(Path::new(parent).join(SUPERVISORS)) {
        if let Some(base) = own.parent().and_then(Path::parent) {
            return base.to_path_buf();
        }
    }
    own.to_path_buf()
}

/// A starter alone in a cgroup v2 group that offers controllers (a service
/// unit such as `vznet-ves.service`) moves into a leaf `PARENT/supervisors`
/// below it before any VE group is made: cgroup v2 hands a controller to a
/// group's children only while the group holds no processes of its own, and
/// the starter and the VEs' `__ve-init` supervisors (its children, which stay
/// in its group) would be those processes. VE groups still go below the
/// original group ([`base_of`]). A starter that shares its group (a login
/// shell's) stays where it is: moving it would not empty the group.
pub fn settle_starter(state: &Path) -> Result<()> {
    let layout = Layout::detect().context("reading /proc/self/mountinfo")?;
    let Some(mount) = &layout.unified else {
        return Ok(());
    };
    let (own, _) = own_groups();
    let parent = parent_name(state);
    if own == Path::new("/") || base_of(&own, &parent) != own {
        return Ok(());
    }
    let base = under(mount, &own);
    if Layout::v2_controllers(&base).is_empty() {
        return Ok(());
    }
    let me = std::process::id().to_string();
    let procs = fs::read_to_string(base.join("cgroup.procs")).unwrap_or_default();
    if procs.split_whitespace().any(|p| p != me) {
        return Ok(());
    }
    let leaf = base.join(&parent).join(SUPERVISORS);
    fs::create_dir_all(&leaf).with_context(|| format!("creating cgroup {}", leaf.display()))?;
    fs::write(leaf.join("cgroup.procs"), &me)
        .with_context(|| format!("moving the starter into cgroup {}", leaf.display()))
}

/// `/mount` + `/own/group` (the own group is absolute inside the hierarchy).
fn under(mount: &Path, own: &Path) -> PathBuf {
    mount.join(own.strip_prefix("/").unwrap_or(own))
}

/// The folder name that groups this runtime's VEs.
pub fn parent_name(state: &Path) -> String {
    if state == Path::new("/var/lib/vznet") {
        return "vznet".into();
    }
    // FNV-1a: stable across runs and builds (std's hasher is not).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in state.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("vznet-{:08x}", h as u32)
}

fn record_file(state: &Path, id: u32) -> PathBuf {
    state.join("run").join(format!("{id}.cgroup"))
}

/// A VE's groups: the first is the one whose `cgroup.procs` lists the VE's
/// processes; every one of them is joined by the VE's processes.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Group folders, the tracking one first.
    pub dirs: Vec<PathBuf>,
}

impl Group {
    /// The groups recorded for a VE at its start.
    pub fn recorded(state: &Path, id: u32) -> Option<Group> {
        let text = fs::read_to_string(record_file(state, id)).ok()?;
        let dirs: Vec<PathBuf> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect();
        (!dirs.is_empty()).then_some(Group { dirs })
    }

    /// Every `cgroup.procs` file a VE process writes itself into.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Processes in the VE (the tracking group's `cgroup.procs`).
    pub fn nproc(&self) -> Option<usize> {
        let text = fs::read_to_string(self.dirs.first()?.join("cgroup.procs")).ok()?;
        Some(text.lines().filter(|l| !l.trim().is_empty()).count())
    }

    /// Makes the groups for VE `id` and writes its limits; on any failure
    /// removes what it made.
    pub fn create(state: &Path, id: u32, ve: &VeConfig) -> Result<Group> {
        let layout = Layout::detect().context("reading /proc/self/mountinfo")?;
        let mut made: Vec<PathBuf> = Vec::new();
        match Group::create_in(&layout, state, id, ve, &mut made) {
            Ok(g) => {
                let text: String = g
                    .dirs
                    .iter()
                    .map(|d| format!("{}\n", d.display()))
                    .collect();
                if let Err(e) = fs::write(record_file(state, id), text) {
                    remove_dirs(&made);
                    return Err(e).context("recording the VE's cgroups");
                }
                Ok(g)
            }
            Err(e) => {
                remove_dirs(&made);
                Err(e)
            }
        }
    }

    fn create_in(
        layout: &Layout,
        state: &Path,
        id: u32,
        ve: &VeConfig,
        made: &mut Vec<PathBuf>,
    ) -> Result<Group> {
        let (own_v2, own_v1) = own_groups();
        let parent = parent_name(state);
        let own_v2 = base_of(&own_v2, &parent);
        let leaf = id.to_string();
        let mut dirs = Vec::new();
        // cgroup v2: the tracking group, and limits where the controller is there.
        let mut v2_base = None;
        if let Some(mount) = &layout.unified {
            let base = under(mount, &own_v2);
            let group = base.join(&parent).join(&leaf);
            mkdir_p(&group, made)?;
            dirs.push(group);
            v2_base = Some(base);
        }
        let mut need: Vec<(&str, Limit)> = Vec::new();
        if let Some(w) = ve.cpu_weight {
            need.push(("cpu", Limit::CpuWeight(w)));
        }
        if let Some(m) = ve.memory_limit {
            need.push(("memory", Limit::Memory(m.0)));
        }
        for (controller, limit) in need {
            let v2_ok = v2_base
                .as_ref()
                .is_some_and(|b| Layout::v2_controllers(b).iter().any(|c| c == controller));
            if let (true, Some(base)) = (v2_ok, &v2_base) {
                // Enable the controller for our folder and for the VE's group.
                enable(base, controller)?;
                enable(&base.join(&parent), controller)?;
                limit.write_v2(&dirs[0])?;
            } else if let Some(mount) = layout.v1.get(controller) {
                let own = own_v1
                    .get(controller)
                    .cloned()
                    .unwrap_or_else(|| "/".into());
                let group = under(mount, &own).join(&parent).join(&leaf);
                mkdir_p(&group, made)?;
                limit.write_v1(&group)?;
                if !dirs.contains(&group) {
                    dirs.push(group);
                }
            } else {
                bail!(
                    "{}: this host has no {controller} cgroup controller (neither in cgroup v2 nor v1)",
                    limit.key()
                );
            }
        }
        if dirs.is_empty() {
            // No unified hierarchy and no limits: track in v1 pids if mounted.
            if let Some(mount) = layout.v1.get("pids") {
                let own = own_v1.get("pids").cloned().unwrap_or_else(|| "/".into());
                let group = under(mount, &own).join(&parent).join(&leaf);
                mkdir_p(&group, made)?;
                dirs.push(group);
            }
        }
        if dirs.is_empty() {
            bail!("no cgroup hierarchy is mounted (looked for cgroup2 and v1 pids in /proc/self/mountinfo)");
        }
        Ok(Group { dirs })
    }

    /// Removes the groups (waiting briefly for exiting processes to leave) and
    /// their `vznet` folders when empty, and the record.
    pub fn remove(&self, state: &Path, id: u32) -> Result<()> {
        let mut failed = Vec::new();
        for d in &self.dirs {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match fs::remove_dir(d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    // EBUSY while the last processes exit.
                    Err(e) if Instant::now() < deadline => {
                        let _ = e;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => {
                        failed.push(format!("{}: {e}", d.display()));
                        break;
                    }
                }
            }
            if let Some(p) = d.parent() {
                // Another VE may still use it: ENOTEMPTY/EBUSY is fine.
                let _ = fs::remove_dir(p);
            }
        }
        let _ = fs::remove_file(record_file(state, id));
        if failed.is_empty() {
            Ok(())
        } else {
            bail!("removing cgroups: {}", failed.join("; "))
        }
    }
}

/// One limit from the VE file.
#[derive(Debug, Clone, Copy)]
enum Limit {
    CpuWeight(u32),
    Memory(u64),
}

impl Limit {
    fn key(&self) -> &'static str {
        match self {
            Limit::CpuWeight(_) => "cpu_weight",
            Limit::Memory(_) => "memory_limit",
        }
    }

    fn write_v2(&self, group: &Path) -> Result<()> {
        match self {
            Limit::CpuWeight(w) => write(group, "cpu.weight", &w.to_string()),
            Limit::Memory(m) => write(group, "memory.max", &m.to_string()),
        }
    }

    fn write_v1(&self, group: &Path) -> Result<()> {
        match self {
            // v2's default weight 100 is v1's default 1024 shares.
            Limit::CpuWeight(w) => write(
                group,
                "cpu.shares",
                &(u64::from(*w) * 1024 / 100).max(2).to_string(),
            ),
            Limit::Memory(m) => write(group, "memory.limit_in_bytes", &m.to_string()),
        }
    }
}

fn write(group: &Path, file: &str, value: &str) -> Result<()> {
    let path = group.join(file);
    fs::write(&path, value).with_context(|| format!("writing {value} to {}", path.display()))
}

/// `+controller` in `dir/cgroup.subtree_control`, unless it is there already.
fn enable(dir: &Path, controller: &str) -> Result<()> {
    let path = dir.join("cgroup.subtree_control");
    let now = fs::read_to_string(&path).unwrap_or_default();
    if now.split_whitespace().any(|c| c == controller) {
        return Ok(());
    }
    fs::write(&path, format!("+{controller}")).with_context(|| {
        format!(
            "enabling the {controller} controller in {} (cgroup v2 allows it only in a group \
             without processes of its own: start VEs from a delegated, empty parent)",
            path.display()
        )
    })
}

/// Makes `dir` and its missing parents, recording each folder it made.
fn mkdir_p(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.exists() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for m in missing.into_iter().rev() {
        match fs::create_dir(&m) {
            Ok(()) => made.push(m),
            // Another VE's start made the shared parent just now.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating cgroup {}", m.display())),
        }
    }
    Ok(())
}

/// Removes folders made, deepest first, ignoring errors.
fn remove_dirs(made: &[PathBuf]) {
    for d in made.iter().rev() {
        let _ = fs::remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    const PURE_V2: &str = "\
22 1 0:21 / / rw - ext4 /dev/sda1 rw
29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn the_hybrid_layout_has_v1_controllers_and_a_unified_tracker() {
        let l = Layout::parse(HYBRID);
        assert_eq!(
            l.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            l.v1.get("cpu").map(PathBuf::as_path),
            Some(Path::new("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            l.v1.get("memory").map(PathBuf::as_path),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert!(!l.v1.contains_key("name=systemd") && !l.v1.contains_key("systemd"));
    }

    #[test]
    fn pure_v2_is_one_mount_and_no_v1() {
        let l = Layout::parse(PURE_V2);
        assert_eq!(l.unified.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert!(l.v1.is_empty());
    }

    #[test]
    fn a_settled_starter_still_makes_groups_below_its_original_group() {
        let own = Path::new("/system.slice/vznet-ves.service/vznet/supervisors");
        assert_eq!(
            base_of(own, "vznet"),
            Path::new("/system.slice/vznet-ves.service")
        );
        let shell = Path::new("/user.slice/user-0.slice/session-1.scope");
        assert_eq!(base_of(shell, "vznet"), shell);
        // Another state folder's supervisors are not ours.
        assert_eq!(base_of(own, "vznet-1234abcd"), own);
    }

    #[test]
    fn mountinfo_escapes_are_undone_and_parents_are_stable_per_state_folder() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(parent_name(Path::new("/var/lib/vznet")), "vznet");
        let a = parent_name(Path::new("/tmp/x"));
        assert_eq!(a, parent_name(Path::new("/tmp/x")));
        assert_ne!(a, parent_name(Path::new("/tmp/y")));
        assert_eq!(
            under(Path::new("/sys/fs/cgroup/memory"), Path::new("/a/b")),
            Path::new("/sys/fs/cgroup/memory/a/b")
        );
    }
}
