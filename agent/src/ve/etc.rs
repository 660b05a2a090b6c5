//! The files vznet keeps inside a VE's root, as OpenVZ's distribution scripts
//! did: `/etc/hostname`, the VE's own line in `/etc/hosts`, and the
//! `nameserver` and `search` lines of `/etc/resolv.conf`. Everything else in
//! those files stays as the VE has it.
//!
//! The root belongs to the VE, and whoever runs inside may have made any path
//! in it a symbolic link to anywhere on the host. Every path is therefore
//! resolved with `openat2(RESOLVE_IN_ROOT)` from a descriptor of the root, so
//! a link (`/etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf`, or
//! `-> /etc/shadow` planted to hurt the host) resolves inside the root, as it
//! would for the VE itself. A file is replaced by writing a temporary file in
//! the same folder (created with `O_EXCL | O_NOFOLLOW`) and renaming it over
//! the name, so the VE never sees half a file, and a symbolic link in its place
//! is replaced, never followed, as `mv` in OpenVZ's scripts did.

use std::fs::File;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use netcfg::model::VeConfig;
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, renameat, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fchmod, fstat, Mode};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

/// Where an /etc/hosts line without an address of the VE points (Debian's
/// convention for the machine's own name).
const NO_ADDRESS: &str = "127.0.1.1";

/// Marks the /etc/hosts line vznet owns, so a changed host name replaces it.
const HOSTS_MARK: &str = "# vznet: this VE's name";

/// What the VE file asks of the files inside the VE.
#[derive(Debug, Clone, PartialEq)]
pub struct Wanted {
    /// `hostname` (none: /etc/hostname and /etc/hosts are left alone).
    pub hostname: Option<String>,
    /// The address the host name maps to in /etc/hosts.
    pub address: Option<IpAddr>,
    /// `nameservers` (empty: left alone).
    pub nameservers: Vec<IpAddr>,
    /// `search` (empty: left alone).
    pub search: Vec<String>,
}

impl Wanted {
    /// From a VE file: the address is the first of its netifs' (link-local
    /// ones aside), else its first venet address.
    pub fn of(ve: &VeConfig) -> Wanted {
        let address = ve
            .netif
            .iter()
            .flat_map(|n| n.addresses.iter().map(ipnet::IpNet::addr))
            .find(|a| !is_link_local(a))
            .or_else(|| ve.venet.as_ref().and_then(|v| v.addresses.first().copied()));
        Wanted {
            hostname: ve.hostname.clone(),
            address,
            nameservers: ve.nameservers.clone(),
            search: ve.search.clone(),
        }
    }

    /// Whether any file is to be kept.
    pub fn is_empty(&self) -> bool {
        self.hostname.is_none() && self.nameservers.is_empty() && self.search.is_empty()
    }
}

fn is_link_local(a: &IpAddr) -> bool {
    match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// /etc/hosts with the VE's own line: lines vznet wrote before go, the VE's
/// names are taken out of other lines (a line left without names goes), and
/// `ADDRESS FQDN [SHORT]` is added; a file that names no `localhost` gets
/// `127.0.0.1 localhost` first.
pub fn hosts_text(old: &str, hostname: &str, address: Option<IpAddr>) -> String {
    let short = hostname.split('.').next().unwrap_or(hostname);
    let ours = |name: &str| name == hostname || name == short;
    let mut out = String::new();
    let mut has_localhost = false;
    for line in old.lines() {
        if line.trim_end().ends_with(HOSTS_MARK) {
            continue;
        }
        let (entry, comment) = match line.find('#') {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let mut fields = entry.split_whitespace();
        let Some(addr) = fields.next() else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let names: Vec<&str> = fields.collect();
        has_localhost |= names.contains(&"localhost");
        if !names.iter().any(|n| ours(n)) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let kept: Vec<&str> = names.into_iter().filter(|n| !ours(n)).collect();
        if !kept.is_empty() {
            out.push_str(&format!("{addr}\t{}", kept.join(" ")));
            if !comment.is_empty() {
                out.push(' ');
                out.push_str(comment);
            }
            out.push('\n');
        }
    }
    if !has_localhost {
        out.insert_str(0, "127.0.0.1\tlocalhost\n");
    }
    let addr = address.map_or_else(|| NO_ADDRESS.to_string(), |a| a.to_string());
    let names = if short == hostname {
        hostname.to_string()
    } else {
        format!("{hostname} {short}")
    };
    out.push_str(&format!("{addr}\t{names}\t{HOSTS_MARK}\n"));
    out
}

/// /etc/resolv.conf with these name servers (when any) in place of its
/// `nameserver` lines, and these domains (when any) as its one `search` line
/// (in place of `search` and `domain`, which the resolver takes as one
/// setting: the last wins). The rest (options, sortlist, comments) stays, in
/// its place.
pub fn resolv_text(old: &str, nameservers: &[IpAddr], search: &[String]) -> String {
    let ns_block: String = nameservers
        .iter()
        .map(|a| format!("nameserver {a}\n"))
        .collect();
    let search_line = (!search.is_empty()).then(|| format!("search {}\n", search.join(" ")));
    let mut ns_done = nameservers.is_empty();
    let mut search_done = search_line.is_none();
    let mut out = String::new();
    for line in old.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        if !nameservers.is_empty() && key == "nameserver" {
            if !ns_done {
                out.push_str(&ns_block);
                ns_done = true;
            }
            continue;
        }
        if let Some(s) = &search_line {
            if key == "search" || key == "domain" {
                if !search_done {
                    out.push_str(s);
                    search_done = true;
                }
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    if let (false, Some(s)) = (search_done, &search_line) {
        out.push_str(s);
    }
    if !ns_done {
        out.push_str(&ns_block);
    }
    out
}

/// The VE's root, opened to resolve paths inside it.
struct Root {
    dir: OwnedFd,
}

fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

impl Root {
    fn open(root: &Path) -> Result<Root> {
        let dir = nix::fcntl::open(
            root,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .with_context(|| format!("opening the VE's root {}", root.display()))?;
        Ok(Root { dir })
    }

    /// `/etc` of the VE (made if missing), resolved inside the root.
    fn etc(&self) -> Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC)
            .resolve(in_root());
        match openat2(self.dir.as_fd(), "etc", how) {
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(self.dir.as_fd(), "etc", Mode::from_bits_truncate(0o755))
                    .context("making /etc in the VE")?;
                openat2(self.dir.as_fd(), "etc", how).context("opening /etc in the VE")
            }
            r => r.context("opening /etc in the VE"),
        }
    }

    /// The file's text and its descriptor (for its mode and owner), `None` if
    /// it does not exist (or is a link to nothing).
    fn read(&self, name: &str) -> Result<Option<(String, File)>> {
        let how = OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)
            .resolve(in_root());
        let fd = match openat2(self.dir.as_fd(), format!("etc/{name}").as_str(), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("opening /etc/{name} in the VE")),
        };
        let st = fstat(fd.as_fd())?;
        anyhow::ensure!(
            st.st_mode & libc::S_IFMT == libc::S_IFREG,
            "/etc/{name} in the VE is not a regular file: not changed"
        );
        let mut file = File::from(fd);
        let mut text = String::new();
        // A VE's resolv.conf is small; a huge one is not a resolver's.
        (&mut file)
            .take(1 << 20)
            .read_to_string(&mut text)
            .with_context(|| format!("reading /etc/{name} in the VE"))?;
        Ok(Some((text, file)))
    }

    /// Replaces `/etc/NAME` with `text` (temporary file and rename), keeping
    /// the old file's mode and owner.
    fn replace(&self, etc: &OwnedFd, name: &str, text: &str, like: Option<&File>) -> Result<()> {
        let tmp = format!(".{name}.vznet-{}", std::process::id());
        let _ = unlinkat(etc.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        let fd = openat(
            etc.as_fd(),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .with_context(|| format!("creating /etc/{tmp} in the VE"))?;
        let written = (|| -> Result<()> {
            if let Some(old) = like {
                let st = fstat(old.as_fd())?;
                fchown(
                    fd.as_fd(),
                    Some(Uid::from_raw(st.st_uid)),
                    Some(Gid::from_raw(st.st_gid)),
                )?;
                fchmod(fd.as_fd(), Mode::from_bits_truncate(st.st_mode & 0o7777))?;
            }
            let mut f = File::from(fd);
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            renameat(etc.as_fd(), tmp.as_str(), etc.as_fd(), name)?;
            Ok(())
        })();
        if written.is_err() {
            let _ = unlinkat(etc.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        written.with_context(|| format!("writing /etc/{name} in the VE"))
    }
}

/// One file to write.
struct Edit {
    name: &'static str,
    text: String,
    like: Option<File>,
}

/// The files' new texts, worked out and not yet written.
pub struct Pending {
    root: Root,
    etc: OwnedFd,
    edits: Vec<Edit>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.edits.iter().map(|e| e.name).collect();
        f.debug_struct("Pending").field("files", &names).finish()
    }
}

/// Reads the files and works out every new text (so that one unreadable file
/// changes none); nothing is written yet.
pub fn prepare(root: &Path, wanted: &Wanted) -> Result<Option<Pending>> {
    if wanted.is_empty() {
        return Ok(None);
    }
    let root = Root::open(root)?;
    let etc = root.etc()?;
    let mut edits = Vec::new();
    let mut plan = |name: &'static str, f: &dyn Fn(&str) -> String| -> Result<()> {
        let (old, like) = match root.read(name)? {
            Some((text, file)) => (Some(text), Some(file)),
            None => (None, None),
        };
        let text = f(old.as_deref().unwrap_or(""));
        if old.as_deref() != Some(text.as_str()) {
            edits.push(Edit { name, text, like });
        }
        Ok(())
    };
    if let Some(h) = &wanted.hostname {
        plan("hostname", &|_| format!("{h}\n"))?;
        plan("hosts", &|old| hosts_text(old, h, wanted.address))?;
    }
    if !wanted.nameservers.is_empty() || !wanted.search.is_empty() {
        plan("resolv.conf", &|old| {
            resolv_text(old, &wanted.nameservers, &wanted.search)
        })?;
    }
    Ok(Some(Pending { root, etc, edits }))
}

impl Pending {
    /// Replaces the files that differ. Returns the names written.
    pub fn commit(self) -> Result<Vec<&'static str>> {
        let mut written = Vec::new();
        for e in self.edits {
            self.root
                .replace(&self.etc, e.name, &e.text, e.like.as_ref())?;
            written.push(e.name);
        }
        Ok(written)
    }
}

/// [`prepare`] and [`Pending::commit`]. Returns the names written.
pub fn write(root: &Path, wanted: &Wanted) -> Result<Vec<&'static str>> {
    match prepare(root, wanted)? {
        Some(p) => p.commit(),
        None => Ok(Vec::new()),
    }
}

/// Sets the host name of a running VE in its UTS namespace (`pid`: its
/// init), from a short-lived thread that joins that namespace alone.
pub fn set_live_hostname(pid: u32, hostname: &str) -> Result<()> {
    use nix::sched::{setns, CloneFlags};
    let ns = File::open(format!("/proc/{pid}/ns/uts"))
        .with_context(|| format!("opening the UTS namespace of pid {pid}"))?;
    let name = hostname.to_string();
    std::thread::spawn(move || -> Result<()> {
        setns(ns.as_fd(), CloneFlags::CLONE_NEWUTS).context("joining the VE's UTS namespace")?;
        nix::unistd::sethostname(&name).context("sethostname")?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the UTS thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_keeps_other_lines_and_replaces_the_ves_own() {
        let old = "127.0.0.1\tlocalhost web\n# a comment\n10.0.0.9 db.example.org db # the database\n::1 ip6-localhost\n";
        let a: IpAddr = "10.0.0.7".parse().expect("ip");
        let text = hosts_text(old, "web.example.org", Some(a));
        assert_eq!(
            text,
            "127.0.0.1\tlocalhost\n# a comment\n10.0.0.9 db.example.org db # the database\n::1 ip6-localhost\n\
             10.0.0.7\tweb.example.org web\t# vznet: this VE's name\n"
        );
        // A new name replaces vznet's line, and nothing else moves.
        let again = hosts_text(&text, "www", Some(a));
        assert_eq!(
            again,
            "127.0.0.1\tlocalhost\n# a comment\n10.0.0.9 db.example.org db # the database\n::1 ip6-localhost\n\
             10.0.0.7\twww\t# vznet: this VE's name\n"
        );
        assert_eq!(hosts_text(&again, "www", Some(a)), again, "idempotent");
        // An empty file gets localhost, and no address gets 127.0.1.1.
        assert_eq!(
            hosts_text("", "a", None),
            "127.0.0.1\tlocalhost\n127.0.1.1\ta\t# vznet: this VE's name\n"
        );
    }

    #[test]
    fn resolv_conf_keeps_options_and_comments_in_place() {
        let old = "# from the template\nsearch old.example\nnameserver 192.0.2.1\noptions edns0 trust-ad\nnameserver 192.0.2.2\ndomain older.example\n";
        let ns: Vec<IpAddr> = vec![
            "10.0.0.53".parse().expect("ip"),
            "fd00::53".parse().expect("ip"),
        ];
        let search = vec!["example.org".to_string(), "corp.example".to_string()];
        assert_eq!(
            resolv_text(old, &ns, &search),
            "# from the template\nsearch example.org corp.example\nnameserver 10.0.0.53\nnameserver fd00::53\noptions edns0 trust-ad\n"
        );
        // Only name servers: the search line stays.
        assert_eq!(
            resolv_text(old, &ns[..1], &[]),
            "# from the template\nsearch old.example\nnameserver 10.0.0.53\noptions edns0 trust-ad\ndomain older.example\n"
        );
        // An empty file gets both.
        assert_eq!(
            resolv_text("", &ns[..1], &search[..1]),
            "search example.org\nnameserver 10.0.0.53\n"
        );
        let once = resolv_text(old, &ns, &search);
        assert_eq!(resolv_text(&once, &ns, &search), once, "idempotent");
    }

    fn wanted() -> Wanted {
        Wanted {
            hostname: Some("web.example.org".into()),
            address: Some("10.0.0.7".parse().expect("ip")),
            nameservers: vec!["10.0.0.53".parse().expect("ip")],
            search: vec!["example.org".into()],
        }
    }

    #[test]
    fn writes_resolve_links_inside_the_root_and_never_follow_one_out() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let dir = tempfile::tempdir().expect("tempdir");
        let outside = dir.path().join("host-secret");
        std::fs::write(&outside, "nameserver 1.2.3.4\nsecret\n").expect("outside");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("etc");
        std::fs::create_dir_all(root.join("run/resolve")).expect("run");
        // resolv.conf: an absolute link to a file inside the VE (read through
        // it, as the VE would); hosts: a link aimed at the host's file.
        std::fs::write(
            root.join("run/resolve/stub.conf"),
            "nameserver 127.0.0.53\noptions edns0\n",
        )
        .expect("stub");
        symlink("/run/resolve/stub.conf", root.join("etc/resolv.conf")).expect("link");
        symlink(&outside, root.join("etc/hosts")).expect("link");
        std::fs::write(root.join("etc/hostname"), "old\n").expect("hostname");
        std::fs::set_permissions(
            root.join("etc/hostname"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("mode");
        let written = write(&root, &wanted()).expect("writes");
        assert_eq!(written, ["hostname", "hosts", "resolv.conf"]);
        assert_eq!(
            std::fs::read_to_string(&outside).expect("outside"),
            "nameserver 1.2.3.4\nsecret\n",
            "the host's file is untouched"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/resolv.conf")).expect("resolv"),
            "nameserver 10.0.0.53\noptions edns0\nsearch example.org\n"
        );
        for f in ["resolv.conf", "hosts"] {
            let m = std::fs::symlink_metadata(root.join("etc").join(f)).expect("meta");
            assert!(
                m.file_type().is_file(),
                "{f}: the link was replaced by a file"
            );
        }
        assert!(std::fs::read_to_string(root.join("etc/hosts"))
            .expect("hosts")
            .contains("10.0.0.7\tweb.example.org web"));
        let m = std::fs::metadata(root.join("etc/hostname")).expect("meta");
        assert_eq!(m.permissions().mode() & 0o777, 0o600, "mode kept");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/hostname")).expect("hostname"),
            "web.example.org\n"
        );
        // Nothing left behind, and a second write changes nothing.
        let names: Vec<String> = std::fs::read_dir(root.join("etc"))
            .expect("etc")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(write(&root, &wanted()).expect("writes").is_empty());
    }

    #[test]
    fn an_etc_linked_out_of_the_root_resolves_inside_it() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().expect("tempdir");
        let host_etc = dir.path().join("host-etc");
        std::fs::create_dir(&host_etc).expect("host etc");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        // /etc -> the host's folder by absolute path: inside the root that
        // path does not exist, so nothing can be written through it.
        symlink(&host_etc, root.join("etc")).expect("link");
        assert!(write(&root, &wanted()).is_err());
        assert_eq!(std::fs::read_dir(&host_etc).expect("dir").count(), 0);
    }
}
