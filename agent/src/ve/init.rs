//! The VE's first process. `vznet ve start` runs `vznet __ve-init ...` with new
//! mount, UTS, IPC, network and PID namespaces unshared; this process stays in
//! the host's PID namespace, forks the VE's PID 1, records its host pid once
//! PID 1 has exec'd the VE's init, and waits for it. PID 1 pivots into the root, mounts /proc, /sys and a minimal
//! /dev, sets the hostname and execs the VE's init.

use std::ffi::CString;
use std::path::Path;

use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, execv, fork, pivot_root, sethostname, ForkResult, Pid};

/// The `cgroup.procs` files (one per line) the VE's PID 1 is moved into
/// before it runs anything, so that it and everything it starts is counted
/// and limited; the `__ve-init` supervisor itself stays out.
pub const CGROUP_ENV: &str = "VZNET_VE_CGROUP_PROCS";

/// `vznet __ve-init ROOT HOSTNAME PIDFILE INIT [ARGS...]`; never returns on success
/// of the VE's PID 1; returns the exit code the VE's init exited with.
pub fn init_main(args: &[String]) -> i32 {
    let [root, hostname, pidfile, init @ ..] = args else {
        eprintln!("__ve-init: usage: ROOT HOSTNAME PIDFILE INIT [ARGS...]");
        return 2;
    };
    if init.is_empty() {
        eprintln!("__ve-init: no init command");
        return 2;
    }
    // PID 1 shares this process's mount namespace: once it pivots, this
    // process's root is the VE's too, and the pid file's path (and the host's
    // /proc) are gone from its view. PID 1 therefore waits on `gate` until
    // this process has joined it to its cgroups, read its start time and
    // opened the run folder.
    let (gate_r, gate_w) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("__ve-init: pipe: {e}");
            return 1;
        }
    };
    // Its write end is close-on-exec in PID 1: EOF here once PID 1 has exec'd
    // the VE's init (its root, mounts and host name are all in place) or died.
    // The pid file is written only then, so `vznet ve start` (and `ve exec`
    // after it) never sees a VE that is still being set up.
    let (exec_r, exec_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("__ve-init: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: single-threaded here (a fresh exec), so fork is sound.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(gate_w);
            drop(exec_r);
            let mut gate = std::fs::File::from(gate_r);
            let mut buf = [0u8; 1];
            // EOF when the parent is done (or died: then the start fails anyway).
            let _ = std::io::Read::read(&mut gate, &mut buf);
            drop(gate);
            std::env::remove_var(CGROUP_ENV);
            if let Err(e) = pid1(Path::new(root), hostname, init) {
                eprintln!("VE init: {e:#}");
            }
            drop(exec_w);
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(gate_r);
            drop(exec_w);
            supervise(child, Path::new(pidfile), gate_w, exec_r)
        }
        Err(e) => {
            eprintln!("__ve-init: fork: {e}");
            1
        }
    }
}

/// The supervisor's side: PID 1 into its cgroups, released, its exec awaited,
/// its pid file written, then waited for. Returns PID 1's exit code.
fn supervise(child: Pid, pidfile: &Path, gate: OwnedFd, exec: OwnedFd) -> i32 {
    let fail = |what: String| {
        eprintln!("__ve-init: {what}");
        let _ = kill(child, Signal::SIGKILL);
        1
    };
    // Into its cgroups before the pid file exists: once `start` sees the VE
    // running, its limits hold and NPROC counts it.
    if let Err(e) = join_cgroups(child.as_raw() as u32) {
        return fail(format!("{e:#}"));
    }
    let start = super::runtime::start_time(child.as_raw() as u32).unwrap_or(0);
    let (Some(dir), Some(name)) = (pidfile.parent(), pidfile.file_name()) else {
        return fail(format!("bad pid file path {}", pidfile.display()));
    };
    let run = match nix::fcntl::open(
        dir,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) => return fail(format!("opening {}: {e}", dir.display())),
    };
    drop(gate);
    let mut exec = std::fs::File::from(exec);
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut exec, &mut rest);
    // A PID 1 that failed before its exec has exited: no pid file then.
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => {}
        Ok(WaitStatus::Exited(_, code)) => return code,
        Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
        Ok(_) => {}
        Err(e) => return fail(format!("waiting for the VE's init: {e}")),
    }
    // Written whole, then renamed: readers never see half a pid file.
    let tmp = format!("{}.tmp", name.to_string_lossy());
    let written = nix::fcntl::openat(
        &run,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(std::io::Error::from)
    .and_then(|fd| {
        std::io::Write::write_all(
            &mut std::fs::File::from(fd),
            format!("{} {start}\n", child.as_raw()).as_bytes(),
        )
    })
    .and_then(|()| {
        nix::fcntl::renameat(&run, tmp.as_str(), &run, name).map_err(std::io::Error::from)
    });
    if let Err(e) = written {
        return fail(format!("writing {}: {e}", pidfile.display()));
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 1,
        }
    }
}

fn join_cgroups(pid: u32) -> Result<()> {
    let list = std::env::var(CGROUP_ENV).unwrap_or_default();
    for path in list.lines().filter(|l| !l.is_empty()) {
        std::fs::write(path, pid.to_string())
            .with_context(|| format!("moving the VE's init into cgroup {path}"))?;
    }
    Ok(())
}

nix::ioctl_readwrite_bad!(
    /// SIOCGIFFLAGS: an interface's flags into an `ifreq`.
    get_if_flags,
    libc::SIOCGIFFLAGS,
    libc::ifreq
);
nix::ioctl_write_ptr_bad!(
    /// SIOCSIFFLAGS: an interface's flags from an `ifreq`.
    set_if_flags,
    libc::SIOCSIFFLAGS,
    libc::ifreq
);

/// Brings the VE's loopback up (SIOCSIFFLAGS: PID 1 runs before anything
/// could open a netlink socket for it, and this needs no runtime).
fn loopback_up() -> Result<()> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    use std::os::fd::AsRawFd;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket for SIOCSIFFLAGS")?;
    // SAFETY: an all-zero ifreq is valid (a C struct of integers and arrays).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo\0".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: `req` is a live ifreq the kernel reads and fills; the socket is open.
    unsafe { get_if_flags(sock.as_raw_fd(), &mut req) }.context("reading lo's flags")?;
    // SAFETY: the union's flags member is what SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above.
    unsafe { set_if_flags(sock.as_raw_fd(), &req) }.context("bringing lo up")?;
    Ok(())
}

fn pid1(root: &Path, hostname: &str, init: &[String]) -> Result<()> {
    sethostname(hostname).context("sethostname")?;
    loopback_up()?;
    // Nothing mounted here may leak back to the host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .context("making / private")?;
    mount(
        Some(root),
        root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("binding the root")?;
    let old = root.join(".oldroot");
    std::fs::create_dir_all(&old)?;
    pivot_root(root, &old).context("pivot_root")?;
    chdir("/")?;
    umount2("/.oldroot", MntFlags::MNT_DETACH).context("detaching the old root")?;
    let _ = std::fs::remove_dir("/.oldroot");
    for d in ["/proc", "/sys", "/dev", "/tmp"] {
        std::fs::create_dir_all(d)?;
    }
    mount(
        Some("proc"),
        "/proc",
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting /proc")?;
    mount(
        Some("sysfs"),
        "/sys",
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .context("mounting /sys")?;
    mount(
        Some("tmpfs"),
        "/dev",
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=755,size=64k"),
    )
    .context("mounting /dev")?;
    for (name, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        mknod(
            format!("/dev/{name}").as_str(),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .with_context(|| format!("mknod /dev/{name}"))?;
    }
    mount(
        Some("tmpfs"),
        "/tmp",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .context("mounting /tmp")?;
    let argv: Vec<CString> = init
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()?;
    let prog = argv.first().context("empty init")?;
    execv(prog, &argv).with_context(|| format!("exec {}", init[0]))?;
    Ok(())
}
