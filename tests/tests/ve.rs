//! The VE runtime: VEs made from the busybox template, started (and wired) by
//! vznet, entered with `ve exec`, stopped (and unwired).

mod common;

use std::process::Output;

use anyhow::Result;
use common::{snapshot, ConfigDir, VZNET};
use lab::{Host, Lab};

struct Runtime<'a> {
    host: &'a Host,
    cfg: ConfigDir,
    state: tempfile::TempDir,
    started: std::cell::RefCell<Vec<u32>>,
}

impl Runtime<'_> {
    fn vznet(&self, args: &[&str]) -> Result<Output> {
        Ok(std::process::Command::new("ip")
            .args(["netns", "exec", self.host.name(), VZNET])
            .args(["--config-dir"])
            .arg(self.cfg.path())
            .arg("--state-dir")
            .arg(self.state.path())
            .args(args)
            .output()?)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.vznet(args)?;
        anyhow::ensure!(
            out.status.success(),
            "vznet {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn start(&self, id: u32) -> Result<String> {
        self.started.borrow_mut().push(id);
        self.ok(&["ve", "start", &id.to_string()])
    }
}

impl Drop for Runtime<'_> {
    /// VEs live in namespaces of their own, outside the lab's: stop them even
    /// when the test fails.
    fn drop(&mut self) {
        for id in self.started.borrow().iter() {
            let _ = self.vznet(&["ve", "stop", &id.to_string(), "--timeout", "2"]);
        }
    }
}

fn runtime<'a>(host: &'a Host) -> Result<Runtime<'a>> {
    let cfg = ConfigDir::new()?;
    cfg.host("[[bridge]]\nname = \"br0\"\naddresses = [\"10.60.0.1/24\"]\n")?;
    Ok(Runtime {
        host,
        cfg,
        state: tempfile::tempdir()?,
        started: Default::default(),
    })
}

fn netif(n: u32, gateway: &str) -> String {
    format!("\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.60.0.{}/24\"]\ngateway = \"{gateway}\"\nsysctl = {{ proxy_arp = 1 }}\n", 10 + n)
}

#[test]
fn three_busybox_ves_on_a_bridge_run_reach_each_other_and_unwire_on_stop() -> Result<()> {
    let lab = Lab::new("ve_runtime")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    for n in 1..=3u32 {
        let id = 800 + n;
        rt.ok(&["ve", "create", &id.to_string(), "--template", "busybox"])?;
        let file = rt.cfg.path().join(format!("ve/{id}.toml"));
        let text = std::fs::read_to_string(&file)?;
        std::fs::write(&file, text + &netif(n, "10.60.0.1"))?;
        let out = rt.start(id)?;
        assert!(out.contains(&format!("VE {id} started")), "{out}");
    }
    let list = rt.ok(&["ve", "list"])?;
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
        .ok(&["ve", "list"])?
        .lines()
        .any(|l| l.contains("802") && l.contains("stopped")));
    assert!(
        rt.vznet(&["ve", "destroy", "801"])?.status.code() != Some(0),
        "destroy refuses a running VE"
    );
    rt.ok(&["ve", "stop", "801"])?;
    rt.ok(&["ve", "destroy", "801"])?;
    assert!(!rt.cfg.path().join("ve/801.toml").exists());
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
        .ok(&["ve", "list"])?
        .lines()
        .any(|l| l.contains("810") && l.contains("stopped")));
    Ok(())
}
