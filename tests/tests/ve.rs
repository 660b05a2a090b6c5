//! The VE runtime: VEs made from the busybox template or a tar, started (and
//! wired) by vznet, entered with `ve exec`/`ve enter`, changed live with
//! `ve set`, limited by cgroups, with user hooks, stopped (and unwired).

mod common;
mod ve_harness;

use anyhow::{Context, Result};
use common::{snapshot, VZNET};
use lab::Lab;
use ve_harness::{link_names, netif, plain_netif, routes, runtime, settled};

#[test]
fn three_busybox_ves_on_a_bridge_run_reach_each_other_and_unwire_on_stop() -> Result<()> {
    let lab = Lab::new("ve_runtime")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    // The bridge first, so that "before" and "after" differ only by the VEs.
    rt.ok(&["apply"])?;
    let links_before = link_names(&host)?;
    let routes_before = routes(&host)?;
    for n in 1..=3u32 {
        let id = 800 + n;
        rt.ok(&["ve", "create", &id.to_string(), "--template", "busybox"])?;
        let file = rt.cfg.path().join(format!("ve/{id}.toml"));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text + &netif(n, "10.60.0.1"))?;
        let out = rt.start(id)?;
        assert!(out.contains(&format!("VE {id} started")), "{out}");
    }
    let list = rt.ok(&["ve", "list", "-a"])?;
    for id in 801..=803 {
        assert!(
            list.lines()
                .any(|l| l.contains(&id.to_string()) && l.contains("running")),
            "{list}"
        );
    }
    let json: serde_json::Value = serde_json::from_str(&rt.ok(&["ve", "list", "--json"])?)?;
    for v in json.as_array().map_or(&[][..], Vec::as_slice) {
        assert!(v["nproc"].as_u64().is_some_and(|n| n >= 1), "{v}");
    }
    // Namespaces: its own host name and interfaces.
    assert_eq!(
        rt.ok(&["ve", "exec", "802", "--", "/bin/hostname"])?.trim(),
        "ve802"
    );
    let addrs = rt.ok(&["ve", "exec", "802", "--", "/bin/ip", "-4", "addr"])?;
    assert!(
        addrs.contains("10.60.0.12/24") && addrs.contains("127.0.0.1"),
        "{addrs}"
    );
    // Every namespace of an exec'd process is the VE init's, and so is its cgroup.
    let pid = rt.pid(802)?;
    for ns in ["net", "uts", "ipc", "mnt", "pid"] {
        let inside = rt.exec(802, &["/bin/readlink", &format!("/proc/self/ns/{ns}")])?;
        let init = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))?;
        assert_eq!(inside.trim(), init.to_string_lossy(), "{ns} namespace");
    }
    let cg = rt.exec(802, &["/bin/cat", "/proc/self/cgroup"])?;
    let init_cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let unified = |t: &str| t.lines().find(|l| l.starts_with("0::")).map(str::to_string);
    assert_eq!(
        unified(&cg),
        unified(&init_cg),
        "exec joins the VE's cgroup"
    );
    assert!(
        unified(&init_cg).is_some_and(|l| l.ends_with("/802")),
        "{init_cg}"
    );
    // NPROC is the VE's cgroup.procs (the init shell and its sleep, give or
    // take the sleep between two loops; never the host-side supervisor).
    let nproc = json
        .as_array()
        .and_then(|a| a.iter().find(|v| v["veid"] == 802))
        .and_then(|v| v["nproc"].as_u64())
        .context("nproc of 802")?;
    assert!((1..=2).contains(&nproc), "NPROC {nproc}");
    // Reachability: host <-> VEs, VE <-> VE.
    for n in 1..=3 {
        assert!(host.ping(format!("10.60.0.{}", 10 + n)), "host -> VE {n}");
    }
    let out = rt.vznet(&[
        "ve",
        "exec",
        "801",
        "--",
        "/bin/ping",
        "-c",
        "2",
        "-W",
        "2",
        "10.60.0.13",
    ])?;
    assert!(
        out.status.success(),
        "VE 801 -> VE 803: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // vznet apply sees running VEs as wired: nothing to do.
    assert_eq!(rt.ok(&["plan"])?.trim(), "0 changes");
    // Stop removes every link and route it made.
    rt.ok(&["ve", "stop", "802"])?;
    assert!(host.link("veth802.0").is_err(), "host end gone with the VE");
    assert!(rt
        .ok(&["ve", "list", "-a"])?
        .lines()
        .any(|l| l.contains("802") && l.contains("stopped")));
    assert!(
        rt.vznet(&["ve", "destroy", "801"])?.status.code() != Some(0),
        "destroy refuses a running VE"
    );
    rt.ok(&["ve", "stop", "801"])?;
    rt.ok(&["ve", "destroy", "801"])?;
    assert!(!rt.cfg.path().join("ve/801.toml").exists());
    rt.ok(&["ve", "stop", "803"])?;
    assert_eq!(
        links_before,
        link_names(&host)?,
        "every link it made is gone"
    );
    assert_eq!(routes_before, routes(&host)?, "every route it made is gone");
    Ok(())
}

#[test]
fn a_start_that_fails_half_way_leaves_nothing_behind() -> Result<()> {
    let lab = Lab::new("ve_start_fails")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.ok(&["ve", "create", "810", "--template", "busybox"])?;
    let file = rt.cfg.path().join("ve/810.toml");
    // An off-link gateway: the kernel refuses the default route after the veth,
    // its bridge port and its address were made.
    let text = std::fs::read_to_string(&file)?;
    std::fs::write(&file, text + &netif(0, "10.99.0.1"))?;
    // A running VE first, so the bridge already has a carrier (and with it
    // the kernel's IPv6 link-local address) before the failing start.
    rt.ok(&["ve", "create", "811", "--template", "busybox"])?;
    let file = rt.cfg.path().join("ve/811.toml");
    let text = std::fs::read_to_string(&file)?;
    std::fs::write(&file, text + &netif(1, "10.60.0.1"))?;
    rt.start(811)?;
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = snapshot(&host)?;
    let out = rt.vznet(&["ve", "start", "810"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "start should fail");
    assert!(
        err.contains("route default via 10.99.0.1") && err.contains("stopped again"),
        "{err}"
    );
    assert_eq!(before, snapshot(&host)?, "host unchanged");
    assert!(rt
        .ok(&["ve", "list", "-a"])?
        .lines()
        .any(|l| l.contains("810") && l.contains("stopped")));
    Ok(())
}

#[test]
fn enter_runs_a_shell_in_the_ve() -> Result<()> {
    let lab = Lab::new("ve_enter")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.create(815, "")?;
    rt.start(815)?;
    let pid = rt.pid(815)?;
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", host.name(), VZNET, "--config-dir"])
        .arg(rt.cfg.path())
        .arg("--state-dir")
        .arg(rt.state.path())
        .args(["ve", "enter", "815"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    use std::io::Write;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(b"hostname\nreadlink /proc/self/ns/net\necho pid=$$\nexit 7\n")?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(7),
        "the shell's exit code: {stdout}"
    );
    let net = std::fs::read_link(format!("/proc/{pid}/ns/net"))?;
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first().copied(), Some("ve815"), "{stdout}");
    assert_eq!(
        lines.get(1).copied(),
        Some(&*net.to_string_lossy()),
        "{stdout}"
    );
    // Forked into the VE's PID namespace: a small pid, not the host's.
    let shell_pid: u32 = lines
        .get(2)
        .and_then(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .context("pid line")?;
    assert!(shell_pid < 100, "pid {shell_pid} inside the VE");
    // A VE without the shell says so.
    let (code, _, err) = rt.run(&["ve", "enter", "815", "--shell", "/bin/nosuchshell"])?;
    assert!(
        code != 0 && err.contains("has no /bin/nosuchshell"),
        "{err}"
    );
    Ok(())
}

#[test]
fn ve_set_changes_a_running_ve_at_once_until_stop_unless_saved() -> Result<()> {
    let lab = Lab::new("ve_set")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    let file = rt.create(820, &plain_netif("10.60.0.20"))?;
    rt.start(820)?;
    let text0 = std::fs::read_to_string(&file)?;
    let overlay = rt.state.path().join("run/820.live.toml");

    // --ipadd: routed at once.
    let out = rt.ok(&["ve", "set", "820", "--ipadd", "10.70.0.5"])?;
    assert!(out.contains("live, until the VE stops"), "{out}");
    assert!(
        host.ping("10.70.0.5"),
        "host -> VE via the new venet address"
    );
    assert_eq!(std::fs::read_to_string(&file)?, text0, "file untouched");
    assert!(overlay.exists());
    assert!(rt.ok(&["ve", "list"])?.contains("10.70.0.5"));
    assert_eq!(
        rt.ok(&["plan"])?.trim(),
        "0 changes",
        "live state is the desired state"
    );

    // --netif-add: a second veth on the bridge with its MACs.
    rt.ok(&[
        "ve",
        "set",
        "820",
        "--netif-add",
        "eth1,02:00:00:00:08:20,veth820.9,02:00:00:00:18:20,br0",
    ])?;
    let link = rt.exec(820, &["/bin/ip", "link", "show", "eth1"])?;
    assert!(link.contains("02:00:00:00:08:20"), "{link}");
    let hl = host.ip(["-d", "link", "show", "veth820.9"])?;
    assert!(
        hl.contains("master br0") && hl.contains("02:00:00:00:18:20"),
        "{hl}"
    );

    // Bad input: named, exit 2, nothing changed.
    let before = settled(&host)?;
    let ov_before = std::fs::read_to_string(&overlay)?;
    for (args, want) in [
        (vec!["--ipadd", "10.0.0.300"], "--ipadd"),
        (vec!["--netif-add", "eth2,zz:00"], "MAC \"zz:00\""),
        (
            vec!["--netif-add", "eth2,,,,nobridge"],
            "no bridge \"nobridge\"",
        ),
        (
            vec!["--netif-add", "eth1"],
            "already has an interface \"eth1\"",
        ),
        (
            vec!["--ipdel", "10.99.9.9"],
            "has no venet address 10.99.9.9",
        ),
        (vec!["--netif-del", "eth7"], "has no interface \"eth7\""),
    ] {
        let mut a = vec!["ve", "set", "820"];
        a.extend(args.iter().copied());
        let (code, _, err) = rt.run(&a)?;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(before, settled(&host)?, "host unchanged by refused changes");
    assert_eq!(std::fs::read_to_string(&overlay)?, ov_before);
    assert_eq!(std::fs::read_to_string(&file)?, text0);

    // --save: the file too, its comment kept.
    rt.ok(&["ve", "set", "820", "--ipadd", "10.70.0.6", "--save"])?;
    assert!(host.ping("10.70.0.6"));
    let text1 = std::fs::read_to_string(&file)?;
    assert!(
        text1.contains("# the VE's only netif") && text1.contains("10.70.0.6"),
        "{text1}"
    );
    // --netif-del: gone at once.
    rt.ok(&["ve", "set", "820", "--netif-del", "eth1"])?;
    assert!(host.link("veth820.9").is_err(), "host end gone");
    // --ipdel of a live address.
    rt.ok(&["ve", "set", "820", "--ipdel", "10.70.0.5"])?;
    assert!(!host.ping("10.70.0.5"));

    // A restart forgets live changes and keeps saved ones.
    rt.ok(&["ve", "set", "820", "--ipadd", "10.70.0.7"])?;
    rt.ok(&["ve", "stop", "820"])?;
    assert!(!overlay.exists(), "live changes end with the VE");
    rt.start(820)?;
    assert!(host.ping("10.70.0.6"), "saved address back after restart");
    assert!(
        !host.ping("10.70.0.7"),
        "live-only address gone after restart"
    );
    // A stopped VE takes --save only.
    rt.ok(&["ve", "stop", "820"])?;
    let (code, _, err) = rt.run(&["ve", "set", "820", "--ipadd", "10.70.0.8"])?;
    assert!(code == 2 && err.contains("--save"), "{err}");
    rt.ok(&["ve", "set", "820", "--ipdel", "10.70.0.6", "--save"])?;
    assert!(!std::fs::read_to_string(&file)?.contains("[venet]"));
    Ok(())
}

#[test]
fn vznetd_keeps_live_changes_and_wires_ves_started_under_it() -> Result<()> {
    let lab = Lab::new("ve_vznetd")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.create(830, &plain_netif("10.60.0.30"))?;
    let agent = common::spawn_vznetd(
        &host,
        &rt.cfg,
        rt.state.path(),
        &rt.socket(),
        &["--interval", "200ms"],
    )?;
    // Started under the agent: wired through it (it must not take the new
    // veth for a stray of a stopped VE).
    let out = rt.start(830)?;
    assert!(out.contains("VE 830 started"), "{out}");
    assert!(
        host.ping("10.60.0.30"),
        "{out}\nvznetd: {}",
        agent.stderr().unwrap_or_default()
    );
    rt.ok(&["ve", "set", "830", "--ipadd", "10.70.1.5"])?;
    assert!(host.ping("10.70.1.5"));
    // Several periodic reconciles and the events of the change itself later,
    // the live change stands and nothing was repaired.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(host.ping("10.70.1.5"), "vznetd kept the live address");
    let status: serde_json::Value = serde_json::from_str(&rt.ok(&["status", "--json"])?)?;
    assert_eq!(status["drift_repairs"], 0, "{status}");
    assert!(status["last_error"].is_null(), "{status}");
    rt.ok(&["ve", "stop", "830"])?;
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert!(
        host.link("veth830.0").is_err(),
        "vznetd did not remake the host end"
    );
    let status: serde_json::Value = serde_json::from_str(&rt.ok(&["status", "--json"])?)?;
    assert!(status["last_error"].is_null(), "{status}");
    drop(agent);
    Ok(())
}

#[test]
fn hooks_run_in_order_with_the_ve_env_and_a_failing_pre_start_aborts_cleanly() -> Result<()> {
    let lab = Lab::new("ve_hooks")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    let log = rt.state.path().join("hooks.log");
    let hook = |_: &str| {
        format!(
            "[\"/bin/sh\", \"-c\", \"echo $VE_HOOK $VEID $VE_STATE $VE_ROOT ${{VE_PID:-none}} >> {}\"]",
            log.display()
        )
    };
    let hooks = format!(
        "\n[hooks]\npre-start = {}\npost-start = {}\npre-stop = {}\npost-stop = {}\n",
        hook("pre-start"),
        hook("post-start"),
        hook("pre-stop"),
        hook("post-stop")
    );
    rt.create(840, &(netif(40, "10.60.0.1") + &hooks))?;
    rt.start(840)?;
    let pid = rt.pid(840)?;
    rt.ok(&["ve", "stop", "840"])?;
    let root = rt.state.path().join("private/840");
    let want = format!(
        "pre-start 840 starting {r} none\npost-start 840 running {r} {pid}\npre-stop 840 stopping {r} {pid}\npost-stop 840 stopped {r} none\n",
        r = root.display()
    );
    assert_eq!(std::fs::read_to_string(&log)?, want);

    // A failing pre-start: the start fails, nothing is made, no cgroup.
    rt.ok(&["apply"])?;
    let before = settled(&host)?;
    rt.create(
        841,
        &(netif(41, "10.60.0.1") + "[hooks]\npre_start = [\"/bin/false\"]\n"),
    )?;
    let (code, _, err) = rt.run(&["ve", "start", "841"])?;
    assert!(code != 0 && err.contains("hook pre_start"), "{err}");
    assert!(err.contains("VE 841 not started"), "{err}");
    assert_eq!(before, settled(&host)?);
    assert!(!rt.state.path().join("run/841.pid").exists());
    assert!(!rt.state.path().join("run/841.cgroup").exists());
    // Hook programs must be absolute: a config error with file, line and key.
    rt.create(842, "[hooks]\npost_stop = [\"true\"]\n")?;
    let (code, _, err) = rt.run(&["ve", "start", "842"])?;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("842.toml:") && err.contains("hooks.post_stop[0]") && err.contains("absolute"),
        "{err}"
    );
    Ok(())
}

/// The cgroup2 mount and the v1 controller mounts as this process sees them.
fn cgroup_file(
    pid: u32,
    controller: &str,
    file_v2: &str,
    file_v1: &str,
) -> Result<Option<std::path::PathBuf>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mut unified = None;
    let mut v1 = None;
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mp = left.split(' ').nth(4).unwrap_or_default().to_string();
        let mut r = right.split(' ');
        match (r.next(), r.nth(1)) {
            (Some("cgroup2"), _) if unified.is_none() => unified = Some(mp),
            (Some("cgroup"), Some(opts)) if opts.split(',').any(|o| o == controller) => {
                v1 = Some(mp)
            }
            _ => {}
        }
    }
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path_in = |pred: &dyn Fn(&str) -> bool| {
        groups.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, c, path) = (p.next()?, p.next()?, p.next()?);
            pred(c).then(|| path.trim_start_matches('/').to_string())
        })
    };
    if let Some(u) = &unified {
        let controllers =
            std::fs::read_to_string(format!("{u}/cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == controller) {
            let path = path_in(&|c: &str| c.is_empty()).context("no unified group")?;
            return Ok(Some(std::path::Path::new(u).join(path).join(file_v2)));
        }
    }
    if let Some(m) = v1 {
        let path =
            path_in(&|c: &str| c.split(',').any(|x| x == controller)).context("no v1 group")?;
        return Ok(Some(std::path::Path::new(&m).join(path).join(file_v1)));
    }
    Ok(None)
}

#[test]
fn cgroup_limits_land_in_the_kernel_files_and_groups_go_at_stop() -> Result<()> {
    let lab = Lab::new("ve_cgroup")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.create(845, "cpu_weight = 50\nmemory_limit = \"256M\"\n")?;
    rt.start(845)?;
    let pid = rt.pid(845)?;
    let mem = cgroup_file(pid, "memory", "memory.max", "memory.limit_in_bytes")?;
    let cpu = cgroup_file(pid, "cpu", "cpu.weight", "cpu.shares")?;
    let (Some(mem), Some(cpu)) = (mem, cpu) else {
        eprintln!("SKIP: this kernel has no memory or cpu cgroup controller");
        return Ok(());
    };
    assert_eq!(
        std::fs::read_to_string(&mem)?.trim(),
        "268435456",
        "{}",
        mem.display()
    );
    let want_cpu = if cpu.ends_with("cpu.weight") {
        "50"
    } else {
        "512"
    };
    assert_eq!(
        std::fs::read_to_string(&cpu)?.trim(),
        want_cpu,
        "{}",
        cpu.display()
    );
    // The VE's group is its own (named for its id), and an exec'd process joins it.
    assert!(
        mem.parent().is_some_and(|d| d.ends_with("845")),
        "{}",
        mem.display()
    );
    let procs = std::fs::read_to_string(mem.with_file_name("cgroup.procs"))?;
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "{procs}"
    );
    let inside = rt.exec(845, &["/bin/cat", "/proc/self/cgroup"])?;
    assert!(
        inside
            .lines()
            .any(|l| l.starts_with("0::") && l.ends_with("/845")),
        "{inside}"
    );
    // A bad size is a config error naming file, line and key.
    rt.create(846, "memory_limit = \"lots\"\n")?;
    let (code, _, err) = rt.run(&["ve", "start", "846"])?;
    assert!(
        code == 2
            && err.contains("846.toml:")
            && err.contains("memory_limit")
            && err.contains("invalid size \"lots\""),
        "{err}"
    );
    rt.ok(&["ve", "stop", "845"])?;
    assert!(
        !mem.parent().is_some_and(|d| d.exists()),
        "memory group removed"
    );
    assert!(
        !cpu.parent().is_some_and(|d| d.exists()),
        "cpu group removed"
    );
    Ok(())
}

#[test]
fn a_tar_template_unpacks_and_runs_and_a_climbing_one_is_refused() -> Result<()> {
    let lab = Lab::new("ve_tar")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.ok(&["ve", "create", "850", "--template", "busybox"])?;
    let tgz = rt.state.path().join("t.tar.gz");
    let out = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(rt.state.path().join("private/850"))
        .arg(".")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    rt.ok(&[
        "ve",
        "create",
        "851",
        "--template",
        &tgz.display().to_string(),
    ])?;
    rt.start(851)?;
    assert_eq!(rt.exec(851, &["/bin/hostname"])?.trim(), "ve851");
    // An absolute entry: refused, nothing left behind.
    let evil_dir = tempfile::tempdir()?;
    let evil = evil_dir.path().join("evil.tar");
    std::fs::write(evil_dir.path().join("x"), "x")?;
    let out = std::process::Command::new("tar")
        .arg("--absolute-names")
        .arg("-cf")
        .arg(&evil)
        .arg(evil_dir.path().join("x"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = rt.run(&[
        "ve",
        "create",
        "852",
        "--template",
        &evil.display().to_string(),
    ])?;
    assert!(code != 0 && err.contains("absolute path: refused"), "{err}");
    assert!(!rt.state.path().join("private/852").exists());
    assert!(!rt.cfg.path().join("ve/852.toml").exists());
    Ok(())
}
