//! The VE's first process. `vznet ve start` runs `vznet __ve-init ...` with new
//! mount, UTS, IPC, network and PID namespaces unshared; this process stays in
//! the host's PID namespace, forks the VE's PID 1, records its host pid, and
//! waits for it. PID 1 pivots into the root, mounts /proc, /sys and a minimal
//! /dev, sets the hostname and execs the VE's init.

use std::ffi::CString;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{chdir, execv, fork, pivot_root, sethostname, ForkResult};

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
    // /proc) are gone from its view. PID 1 therefore waits on this pipe until
    // the pid file is written.
    let (gate_r, gate_w) = match nix::unistd::pipe() {
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
            let mut gate = std::fs::File::from(gate_r);
            let mut buf = [0u8; 1];
            // EOF when the parent is done (or died: then the start fails anyway).
            let _ = std::io::Read::read(&mut gate, &mut buf);
            drop(gate);
            std::env::remove_var(CGROUP_ENV);
            if let Err(e) = pid1(Path::new(root), hostname, init) {
                eprintln!("VE init: {e:#}");
            }
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(127) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(gate_r);
            // Into its cgroups before the pid file exists: once `start` sees
            // the VE running, its limits hold and NPROC counts it.
            if let Err(e) = join_cgroups(child.as_raw() as u32) {
                eprintln!("__ve-init: {e:#}");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                return 1;
            }
            let start = super::runtime::start_time(child.as_raw() as u32).unwrap_or(0);
            // Written whole, then renamed: readers never see half a pid file.
            let tmp = format!("{pidfile}.tmp");
            let written = std::fs::write(&tmp, format!("{} {start}\n", child.as_raw()))
                .and_then(|()| std::fs::rename(&tmp, pidfile));
            drop(gate_w);
            if let Err(e) = written {
                eprintln!("__ve-init: writing {pidfile}: {e}");
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                return 1;
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
        Err(e) => {
            eprintln!("__ve-init: fork: {e}");
            1
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
