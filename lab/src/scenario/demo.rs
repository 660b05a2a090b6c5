//! `lab demo`: the seed's host, wired by vznet, on this kernel.

use anyhow::{ensure, Result};
use lab::Lab;

use super::{vznet, vznet_ok};

const HOST_TOML: &str = r#"# VE0: the host. Its IP sits on the bridge, not on a port, so the host and the
# VEs never lose packets to ARP trouble.
[sysctl]
"net.ipv4.ip_forward" = 1

[[bridge]]
name = "br104"
addresses = ["192.168.17.52/24"]
sysctl = { forwarding = 1 }
"#;

fn bridged_ve(id: u32, ns: &str, n: u32) -> String {
    format!(
        r#"# As the seed's {id}.conf: vzctl set {id} --netif_add eth0,...,veth{id}.0,...,br104
id = {id}
hostname = "ve{id}"
netns = "{ns}"

[[netif]]
name = "eth0"
mac = "00:0C:29:86:7E:{n:02X}"
host_name = "veth{id}.0"
host_mac = "00:19:BB:C8:0E:{n:02X}"
bridge = "br104"
addresses = ["192.168.17.{a}/24"]
gateway = "192.168.17.52"
sysctl = {{ forwarding = 1, proxy_arp = 1 }}
"#,
        a = 53 + n
    )
}

fn routed_ve(id: u32, ns: &str, addr: &str) -> String {
    format!(
        "# Routed (venet) as vzctl set {id} --ipadd {addr}: a /32 host route and proxy ARP\nid = {id}\nnetns = \"{ns}\"\n\n[venet]\naddresses = [\"{addr}\"]\n"
    )
}

pub(super) fn step(title: &str) {
    println!("\n==> {title}");
}

pub(super) fn check(ok: bool, what: &str, failures: &mut Vec<String>) {
    println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
    if !ok {
        failures.push(what.to_string());
    }
}

/// Runs the demo; fails if any check fails.
pub fn run() -> Result<()> {
    let lab = Lab::new("demo")?;
    let cfg = tempfile::tempdir()?;
    let dir = cfg.path();
    std::fs::create_dir(dir.join("ve"))?;
    let mut failures = Vec::new();

    step("network namespaces: VE0 (the host) and five VEs");
    let host = lab.host("ve0")?;
    println!("  host netns {}", host.name());
    let mut bridged = Vec::new();
    for (n, id) in [112u32, 113, 114].into_iter().enumerate() {
        let ve = lab.host(&format!("ve{id}"))?;
        std::fs::write(
            dir.join(format!("ve/{id}.toml")),
            bridged_ve(id, ve.name(), n as u32),
        )?;
        println!(
            "  VE {id}: netns {} (bridged, 192.168.17.{})",
            ve.name(),
            53 + n
        );
        bridged.push(ve);
    }
    let routed_addrs = ["10.1.0.5", "10.2.0.7"];
    let mut routed = Vec::new();
    for (n, id) in [120u32, 121].into_iter().enumerate() {
        let ve = lab.host(&format!("ve{id}"))?;
        std::fs::write(
            dir.join(format!("ve/{id}.toml")),
            routed_ve(id, ve.name(), routed_addrs[n]),
        )?;
        println!(
            "  VE {id}: netns {} (routed, {})",
            ve.name(),
            routed_addrs[n]
        );
        routed.push(ve);
    }
    std::fs::write(dir.join("host.toml"), HOST_TOML)?;
    println!("\n  {}/host.toml:\n{}", dir.display(), indent(HOST_TOML));
    println!(
        "  {}/ve/112.toml:\n{}",
        dir.display(),
        indent(&std::fs::read_to_string(dir.join("ve/112.toml"))?)
    );

    step("vznet check");
    print!("{}", indent(&vznet_ok(host.name(), &["check"], dir)?));
    step("vznet plan (touches nothing)");
    print!("{}", indent(&vznet_ok(host.name(), &["plan"], dir)?));
    step("vznet apply");
    print!("{}", indent(&vznet_ok(host.name(), &["apply"], dir)?));
    step("vznet apply, again");
    let again = vznet_ok(host.name(), &["apply"], dir)?;
    print!("{}", indent(&again));
    check(
        again.trim() == "0 changes",
        "second apply changes nothing",
        &mut failures,
    );
    step("vznet show");
    print!("{}", indent(&vznet_ok(host.name(), &["show"], dir)?));

    step("reachability");
    for (n, ve) in bridged.iter().enumerate() {
        let ip = format!("192.168.17.{}", 53 + n);
        check(
            host.ping(&ip),
            &format!("host -> VE {} ({ip}) over br104", 112 + n),
            &mut failures,
        );
        check(
            ve.ping("192.168.17.52"),
            &format!("VE {} -> host (192.168.17.52)", 112 + n),
            &mut failures,
        );
        let other = format!("192.168.17.{}", 53 + (n + 1) % bridged.len());
        check(
            ve.ping(&other),
            &format!("VE {} -> {other} (VE to VE on the bridge)", 112 + n),
            &mut failures,
        );
    }
    check(
        routed[0].ping(routed_addrs[1]),
        "routed VE 120 -> VE 121 (different /32s, through the host)",
        &mut failures,
    );
    check(
        routed[1].ping(routed_addrs[0]),
        "routed VE 121 -> VE 120",
        &mut failures,
    );
    check(
        routed[0].ping("192.168.17.53"),
        "routed VE 120 -> bridged VE 112",
        &mut failures,
    );
    check(
        host.ping(routed_addrs[0]),
        "host -> routed VE 120",
        &mut failures,
    );

    step("drift: a port removed by hand");
    host.run(["ip", "link", "set", "veth113.0", "nomaster"])?;
    let plan = vznet_ok(host.name(), &["plan"], dir)?;
    print!("{}", indent(&plan));
    check(
        plan.contains("~ link veth113.0 master br104"),
        "plan sees the missing port",
        &mut failures,
    );
    print!("{}", indent(&vznet_ok(host.name(), &["apply"], dir)?));
    check(
        bridged[1].ping("192.168.17.52"),
        "VE 113 back on the bridge",
        &mut failures,
    );

    step("bad input changes nothing");
    std::fs::write(
        dir.join("ve/115.toml"),
        "id = 115\n[[netif]]\nname = \"eth0\"\nbridge = \"br999\"\n",
    )?;
    let out = vznet(host.name(), &["apply"], dir)?;
    print!("{}", indent(&String::from_utf8_lossy(&out.stderr)));
    check(
        out.status.code() == Some(2),
        "exit code 2 with file:line:column and key",
        &mut failures,
    );
    std::fs::remove_file(dir.join("ve/115.toml"))?;

    step("clean up");
    drop(lab);
    println!("  namespaces and links removed");
    ensure!(
        failures.is_empty(),
        "{} check(s) failed: {}",
        failures.len(),
        failures.join("; ")
    );
    println!("\ndemo: all checks passed");
    Ok(())
}

pub(super) fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}
