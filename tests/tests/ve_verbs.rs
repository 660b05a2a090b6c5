//! The vzctl/vzlist verbs: `ve status` (and its exit status), `ve list`'s
//! -o/-H/-a/-S/-s, `ve restart`, `ve set` of netif addresses, gateways,
//! `--ipdel all`, onboot and boot order, and `--json` on each.

mod common;
mod ve_harness;

use anyhow::{Context, Result};
use lab::Lab;
use serde_json::Value;
use ve_harness::{netif, runtime};

fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

#[test]
fn status_list_and_restart_answer_as_vzctl_and_vzlist_do() -> Result<()> {
    let lab = Lab::new("ve_verbs")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.create(
        931,
        &("onboot = true\nboot_order = 5\ncpu_weight = 50\n".to_string() + &netif(31, "10.60.0.1")),
    )?;
    rt.create(932, &netif(32, "10.60.0.1"))?;
    rt.create(933, "memory_limit = \"64M\"\n")?;

    // status: exit 4 for no VE, 3 for a stopped one, 0 for a running one.
    let (code, out, _) = rt.run(&["ve", "status", "939"])?;
    assert_eq!((code, out.trim()), (4, "VEID 939 deleted unmounted down"));
    let (code, out, _) = rt.run(&["ve", "status", "931"])?;
    assert_eq!((code, out.trim()), (3, "VEID 931 exist unmounted down"));
    let out = rt.ok(&["ve", "start", "931", "932", "--json"])?;
    let started = json(&out)?;
    assert_eq!(started["ok"], true);
    assert_eq!(started["started"][1]["veid"], 932, "{started}");
    rt.started.borrow_mut().extend([931, 932]);
    let (code, out, _) = rt.run(&["ve", "status", "931"])?;
    assert_eq!((code, out.trim()), (0, "VEID 931 exist mounted running"));
    let st = json(&rt.run(&["ve", "status", "931", "--json"])?.1)?;
    assert_eq!(
        (&st["exists"], &st["mounted"], &st["running"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Bool(true))
    );
    let pid = st["pid"].as_u64().context("pid")?;

    // list: running only by default, -a all, -S stopped, -H, -o, -s.
    let ids = |args: &[&str]| -> Result<Vec<String>> {
        let mut a = vec!["ve", "list", "-H", "-o", "veid"];
        a.extend_from_slice(args);
        Ok(rt.ok(&a)?.lines().map(|l| l.trim().to_string()).collect())
    };
    assert_eq!(ids(&[])?, ["931", "932"]);
    assert_eq!(ids(&["-a"])?, ["931", "932", "933"]);
    assert_eq!(ids(&["-S"])?, ["933"]);
    assert_eq!(ids(&["-a", "-s", "-veid"])?, ["933", "932", "931"]);
    // Unset sorts first; -bootorder reverses.
    assert_eq!(ids(&["-a", "-s", "-bootorder"])?, ["931", "932", "933"]);
    assert_eq!(ids(&["-a", "933", "931"])?, ["931", "933"]);
    let table = rt.ok(&[
        "ve",
        "list",
        "-a",
        "-o",
        "ctid,onboot,bootorder,cpu_weight,memory_limit,ip,status",
    ])?;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "VEID",
            "ONBOOT",
            "BOOTORDER",
            "CPU_WEIGHT",
            "MEMORY_LIMIT",
            "IP_ADDR",
            "STATUS"
        ]
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["931", "yes", "5", "50", "-", "10.60.0.41", "running"]
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["933", "no", "-", "-", "67108864", "-", "stopped"]
    );
    let default = rt.ok(&["ve", "list"])?;
    assert!(
        default.starts_with("  VEID  NPROC STATUS   IP_ADDR              HOSTNAME"),
        "{default}"
    );
    let root = rt.ok(&["ve", "list", "-H", "-o", "root", "932"])?;
    assert_eq!(
        root.trim(),
        rt.state.path().join("private/932").display().to_string()
    );
    let listed = json(&rt.ok(&["ve", "list", "-a", "-o", "veid,onboot,ip", "--json"])?)?;
    assert_eq!(
        listed[0],
        serde_json::json!({ "veid": 931, "onboot": true, "ip": ["10.60.0.41"] })
    );
    let full = json(&rt.ok(&["ve", "list", "--json"])?)?;
    assert_eq!(full[0]["cpu_weight"], 50, "{full}");
    for (args, want) in [
        (vec!["-o", "physpages"], "unknown field \"physpages\""),
        (vec!["-s", "nope"], "unknown field \"nope\""),
    ] {
        let mut a = vec!["ve", "list"];
        a.extend(args);
        let (code, _, err) = rt.run(&a)?;
        assert!(code == 2 && err.contains(want), "{err}");
    }

    // restart: a new init, wired again; a stopped VE just starts.
    let out = json(&rt.ok(&["ve", "restart", "931", "933", "--json"])?)?;
    assert_eq!(out["restarted"][0]["veid"], 931, "{out}");
    rt.started.borrow_mut().push(933);
    let st = json(&rt.run(&["ve", "status", "931", "--json"])?.1)?;
    assert!(st["pid"].as_u64().is_some_and(|p| p != pid), "{st}");
    assert!(host.ping("10.60.0.41"), "wired again after restart");
    assert_eq!(rt.run(&["ve", "status", "933"])?.0, 0);

    // stop --json
    let out = json(&rt.ok(&["ve", "stop", "933", "--json"])?)?;
    assert_eq!(out, serde_json::json!({ "ok": true, "stopped": [933] }));
    // A failing verb with --json says so on stdout too.
    let (code, out, _) = rt.run(&["ve", "stop", "933", "--json"])?;
    assert_ne!(code, 0);
    assert_eq!(json(&out)?["ok"], false);
    Ok(())
}

#[test]
fn set_changes_netif_addresses_gateways_venet_and_boot_keys() -> Result<()> {
    let lab = Lab::new("ve_verbs_set")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.cfg.host(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n\n\
         [[bridge]]\nname = \"br0\"\naddresses = [\"10.60.0.1/24\", \"10.61.0.1/24\"]\n",
    )?;
    let file = rt.create(
        940,
        "[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.60.0.40/24\"]\n\n\
         [venet]\naddresses = [\"10.70.4.1\", \"10.70.4.2\"]\n",
    )?;
    rt.start(940)?;
    assert!(host.ping("10.70.4.2"));
    // A second address on the netif, live.
    let out = json(&rt.ok(&[
        "ve",
        "set",
        "940",
        "--ifname",
        "eth0",
        "--ipadd",
        "10.61.0.40/24",
        "--json",
    ])?)?;
    assert_eq!(
        (&out["ok"], &out["live"]),
        (&Value::Bool(true), &Value::Bool(true))
    );
    assert!(host.ping("10.61.0.40"));
    // A netif gateway beside venet's default route: refused, named.
    let (code, _, err) = rt.run(&[
        "ve",
        "set",
        "940",
        "--ifname",
        "eth0",
        "--gateway",
        "10.61.0.1",
    ])?;
    assert!(
        code == 2 && err.contains("netif[0].gateway: a second IPv4 default route"),
        "{err}"
    );
    // --ipdel all: every venet address (and the venet link) goes.
    rt.ok(&["ve", "set", "940", "--ipdel", "all"])?;
    assert!(!host.ping("10.70.4.1") && !host.ping("10.70.4.2"));
    assert!(host.link("venet940").is_err());
    // A gateway: the VE's default route (venet's went with it).
    rt.ok(&[
        "ve",
        "set",
        "940",
        "--ifname",
        "eth0",
        "--gateway",
        "10.61.0.1",
    ])?;
    let routes = rt.exec(940, &["/bin/ip", "route"])?;
    assert!(
        routes.contains("default via 10.61.0.1 dev eth0"),
        "{routes}"
    );
    // Removing one netif address, by address.
    rt.ok(&[
        "ve",
        "set",
        "940",
        "--ifname",
        "eth0",
        "--ipdel",
        "10.60.0.40",
    ])?;
    assert!(!host.ping("10.60.0.40") && host.ping("10.61.0.40"));
    // Nothing of that was saved.
    assert!(std::fs::read_to_string(&file)?.contains("10.70.4.2"));

    // Refused, exit 2, nothing changed.
    for (args, want) in [
        (
            vec!["--ipadd", "10.70.4.9/24"],
            "a routed (venet) address is a single address",
        ),
        (
            vec!["--ifname", "eth0", "--ipadd", "10.62.0.40"],
            "needs a prefix length",
        ),
        (
            vec!["--ifname", "eth9", "--ipadd", "10.62.0.40/24"],
            "has no interface \"eth9\"",
        ),
        (vec!["--ifname", "eth0"], "--ifname names the netif"),
        (
            vec!["--onboot", "yes"],
            "--onboot yes is kept in the VE file only: add --save",
        ),
        (vec!["--bootorder", "x"], "use a number"),
        (
            vec!["--gateway", "banana", "--ifname", "eth0"],
            "not an IP address",
        ),
    ] {
        let mut a = vec!["ve", "set", "940"];
        a.extend(args.iter().copied());
        let (code, _, err) = rt.run(&a)?;
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    // Boot keys, saved.
    rt.ok(&[
        "ve",
        "set",
        "940",
        "--onboot",
        "yes",
        "--bootorder",
        "7",
        "--save",
    ])?;
    let text = std::fs::read_to_string(&file)?;
    assert!(
        text.contains("onboot = true") && text.contains("boot_order = 7"),
        "{text}"
    );
    assert_eq!(
        rt.ok(&["ve", "list", "-H", "-o", "onboot,bootorder"])?
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["yes", "7"]
    );
    rt.ok(&["ve", "set", "940", "--bootorder", "none", "--save"])?;
    assert!(!std::fs::read_to_string(&file)?.contains("boot_order"));
    // A stopped VE: saved, applied at its next start.
    rt.ok(&["ve", "stop", "940"])?;
    rt.ok(&["ve", "set", "940", "--ipdel", "all", "--save"])?;
    rt.ok(&[
        "ve",
        "set",
        "940",
        "--ifname",
        "eth0",
        "--ipadd",
        "10.61.0.44/24",
        "--gateway",
        "10.61.0.1",
        "--save",
    ])?;
    rt.start(940)?;
    assert!(host.ping("10.61.0.44"));
    let routes = rt.exec(940, &["/bin/ip", "route"])?;
    assert!(
        routes.contains("default via 10.61.0.1 dev eth0"),
        "{routes}"
    );
    Ok(())
}
