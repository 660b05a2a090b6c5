//! Every attribute of the link kinds the host kernel lacks (bonds, VLANs,
//! dummies, VLAN filtering), through the same four steps as the netns tests
//! (`lab::AttributeCase`): declared, changed in the config, changed by hand,
//! removed. Then a bond over two `[[dummy]]` slaves.

use anyhow::{ensure, Result};
use lab::{AttributeCase, Lab, Read, Runner, Source};

use super::{check, engine};
use crate::scenario::vznet_ok;

const BOND_AB: &str =
    "[[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nslaves = [\"eth0\", \"eth1\"]\n@ATTR@\n";
const BOND_LACP: &str =
    "[[bond]]\nname = \"bond0\"\nmode = \"802.3ad\"\nslaves = [\"eth0\", \"eth1\"]\n@ATTR@\n";
const VLAN: &str = "[[vlan]]\nname = \"eth0.5\"\nlink = \"eth0\"\nid = 5\n@ATTR@\n";
const DUMMY: &str = "[[dummy]]\nname = \"dum0\"\n@ATTR@\n";
const BRIDGE: &str = "[[bridge]]\nname = \"br0\"\n@ATTR@\n";
const BRIDGE_VF: &str = "[[bridge]]\nname = \"br0\"\nvlan_filtering = true\n@ATTR@\n";
const BRIDGE_VF_PORT: &str =
    "[[bridge]]\nname = \"br0\"\nvlan_filtering = true\nports = [{ @ATTR@ name = \"eth2\" }]\n";
const VE_ON_VF: &str =
    "id = 5\nnetns = \"@NS:ve@\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\n@ATTR@\n";

/// Reads a bond's sysfs file.
fn bond_file(what: &str, values: [&'static str; 3]) -> Option<Read> {
    Some(Read {
        host: "host",
        source: Source::Command(vec![
            "cat".into(),
            format!("/sys/class/net/bond0/bonding/{what}"),
        ]),
        first: values[0],
        second: values[1],
        removed: values[2],
    })
}

fn link(dev: &'static str, pointer: &'static str, values: [&'static str; 3]) -> Option<Read> {
    Some(Read {
        host: "host",
        source: Source::Link { dev, pointer },
        first: values[0],
        second: values[1],
        removed: values[2],
    })
}

/// Drift that takes several commands (a bond down to change lacp_rate or
/// ad_select, a VLAN made again by hand).
fn shell(script: &'static str) -> Vec<&'static str> {
    vec!["sh", "-c", script]
}

fn cases() -> Vec<AttributeCase> {
    let set = |args: &[&'static str]| {
        let mut v = vec!["ip", "link", "set"];
        v.extend_from_slice(args);
        v
    };
    vec![
        AttributeCase::on_host(
            BOND_AB,
            "bond miimon_ms",
            ["miimon_ms = 200", "miimon_ms = 300"],
            "~ bond bond0 miimon_ms 200 -> 300",
            set(&["bond0", "type", "bond", "miimon", "50"]),
            "~ bond bond0 miimon_ms 50 -> 300",
            Some("~ bond bond0 miimon_ms 300 -> 100"),
            bond_file("miimon", ["200", "300", "100"]),
        ),
        AttributeCase::on_host(
            BOND_AB,
            "bond updelay_ms",
            ["updelay_ms = 200", "updelay_ms = 400"],
            "~ bond bond0 updelay_ms 200 -> 400",
            set(&["bond0", "type", "bond", "updelay", "100"]),
            "~ bond bond0 updelay_ms 100 -> 400",
            Some("~ bond bond0 updelay_ms 400 -> 0"),
            bond_file("updelay", ["200", "400", "0"]),
        ),
        AttributeCase::on_host(
            BOND_AB,
            "bond downdelay_ms",
            ["downdelay_ms = 200", "downdelay_ms = 400"],
            "~ bond bond0 downdelay_ms 200 -> 400",
            set(&["bond0", "type", "bond", "downdelay", "100"]),
            "~ bond bond0 downdelay_ms 100 -> 400",
            Some("~ bond bond0 downdelay_ms 400 -> 0"),
            bond_file("downdelay", ["200", "400", "0"]),
        ),
        AttributeCase::on_host(
            BOND_AB,
            "bond min_links",
            ["min_links = 1", "min_links = 2"],
            "~ bond bond0 min_links 1 -> 2",
            set(&["bond0", "type", "bond", "min_links", "0"]),
            "~ bond bond0 min_links 0 -> 2",
            Some("~ bond bond0 min_links 2 -> 0"),
            bond_file("min_links", ["1", "2", "0"]),
        ),
        AttributeCase::on_host(
            BOND_AB,
            "bond primary",
            ["primary = \"eth0\"", "primary = \"eth1\""],
            "~ bond bond0 primary eth0 -> eth1",
            set(&["bond0", "type", "bond", "primary", "eth0"]),
            "~ bond bond0 primary eth0 -> eth1",
            Some("~ bond bond0 primary eth1 -> none"),
            bond_file("primary", ["eth0", "eth1", ""]),
        ),
        AttributeCase::on_host(
            BOND_AB,
            "bond ARP monitoring",
            [
                "miimon_ms = 0\narp_interval_ms = 200\narp_ip_targets = [\"10.60.0.1\"]",
                "miimon_ms = 0\narp_interval_ms = 400\narp_ip_targets = [\"10.60.0.1\", \"10.60.0.3\"]",
            ],
            "~ bond bond0 arp_interval_ms 200 -> 400, arp_ip_targets 10.60.0.1 -> 10.60.0.1,10.60.0.3",
            set(&["bond0", "type", "bond", "arp_ip_target", "10.60.0.9"]),
            "~ bond bond0 arp_ip_targets 10.60.0.9 -> 10.60.0.1,10.60.0.3",
            Some("~ bond bond0 miimon_ms 0 -> 100, arp_interval_ms 400 -> 0, arp_ip_targets 10.60.0.1,10.60.0.3 -> none"),
            bond_file("arp_interval", ["200", "400", "0"]),
        ),
        AttributeCase::on_host(
            BOND_LACP,
            "bond lacp_rate",
            ["lacp_rate = \"slow\"", "lacp_rate = \"fast\""],
            "~ bond bond0 lacp_rate slow -> fast",
            shell("ip link set bond0 down && ip link set bond0 type bond lacp_rate slow && ip link set bond0 up"),
            "~ bond bond0 lacp_rate slow -> fast",
            Some("~ bond bond0 lacp_rate fast -> slow"),
            bond_file("lacp_rate", ["slow 0", "fast 1", "slow 0"]),
        ),
        AttributeCase::on_host(
            BOND_LACP,
            "bond ad_select",
            ["ad_select = \"bandwidth\"", "ad_select = \"count\""],
            "~ bond bond0 ad_select bandwidth -> count",
            shell("ip link set bond0 down && ip link set bond0 type bond ad_select stable && ip link set bond0 up"),
            "~ bond bond0 ad_select stable -> count",
            Some("~ bond bond0 ad_select count -> stable"),
            bond_file("ad_select", ["bandwidth 1", "count 2", "stable 0"]),
        ),
        AttributeCase::on_host(
            BOND_LACP,
            "bond xmit_hash_policy",
            ["xmit_hash_policy = \"layer3+4\"", "xmit_hash_policy = \"layer2+3\""],
            "~ bond bond0 xmit_hash_policy layer3+4 -> layer2+3",
            set(&["bond0", "type", "bond", "xmit_hash_policy", "encap3+4"]),
            "~ bond bond0 xmit_hash_policy encap3+4 -> layer2+3",
            Some("~ bond bond0 xmit_hash_policy layer2+3 -> layer2"),
            bond_file("xmit_hash_policy", ["layer3+4 1", "layer2+3 2", "layer2 0"]),
        ),
        AttributeCase::on_host(
            BOND_AB,
            "bond mtu",
            ["mtu = 9000", "mtu = 8000"],
            "~ link bond0 mtu 9000 -> 8000",
            set(&["bond0", "mtu", "1400"]),
            "~ link bond0 mtu 1400 -> 8000",
            None,
            link("eth0", "/mtu", ["9000", "8000", "8000"]),
        ),
        AttributeCase::on_host(
            VLAN,
            "vlan mtu",
            ["mtu = 1400", "mtu = 1300"],
            "~ link eth0.5 mtu 1400 -> 1300",
            set(&["eth0.5", "mtu", "1200"]),
            "~ link eth0.5 mtu 1200 -> 1300",
            None,
            link("eth0.5", "/mtu", ["1400", "1300", "1300"]),
        ),
        AttributeCase::on_host(
            VLAN,
            "vlan protocol",
            ["protocol = \"802.1Q\"", "protocol = \"802.1ad\""],
            "- link eth0.5\n+ vlan eth0.5 (link eth0, id 5, protocol 802.1ad)",
            shell("ip link del eth0.5 && ip link add link eth0 name eth0.5 type vlan proto 802.1Q id 5 && ip link set eth0.5 alias vznet:vlan up"),
            "- link eth0.5\n+ vlan eth0.5 (link eth0, id 5, protocol 802.1ad)",
            Some("- link eth0.5\n+ vlan eth0.5 (link eth0, id 5, protocol 802.1Q)"),
            link(
                "eth0.5",
                "/linkinfo/info_data/protocol",
                ["\"802.1Q\"", "\"802.1ad\"", "\"802.1Q\""],
            ),
        ),
        AttributeCase::on_host(
            DUMMY,
            "dummy mtu",
            ["mtu = 9000", "mtu = 8000"],
            "~ link dum0 mtu 9000 -> 8000",
            set(&["dum0", "mtu", "1400"]),
            "~ link dum0 mtu 1400 -> 8000",
            None,
            link("dum0", "/mtu", ["9000", "8000", "8000"]),
        ),
        AttributeCase::on_host(
            DUMMY,
            "dummy mac",
            ["mac = \"02:00:00:00:00:01\"", "mac = \"02:00:00:00:00:02\""],
            "~ link dum0 mac 02:00:00:00:00:01 -> 02:00:00:00:00:02",
            set(&["dum0", "address", "02:00:00:00:00:09"]),
            "~ link dum0 mac 02:00:00:00:00:09 -> 02:00:00:00:00:02",
            None,
            link(
                "dum0",
                "/address",
                [
                    "\"02:00:00:00:00:01\"",
                    "\"02:00:00:00:00:02\"",
                    "\"02:00:00:00:00:02\"",
                ],
            ),
        ),
        AttributeCase::on_host(
            BRIDGE,
            "bridge vlan_filtering",
            ["vlan_filtering = true", "vlan_filtering = false"],
            "~ bridge br0 vlan_filtering on -> off",
            set(&["br0", "type", "bridge", "vlan_filtering", "1"]),
            "~ bridge br0 vlan_filtering on -> off",
            None,
            link(
                "br0",
                "/linkinfo/info_data/vlan_filtering",
                ["1", "0", "0"],
            ),
        ),
        AttributeCase::on_host(
            BRIDGE_VF,
            "bridge default_pvid",
            ["default_pvid = 5", "default_pvid = 6"],
            "~ bridge br0 default_pvid 5 -> 6",
            set(&["br0", "type", "bridge", "vlan_default_pvid", "9"]),
            "~ bridge br0 default_pvid 9 -> 6",
            Some("~ bridge br0 default_pvid 6 -> 1"),
            link(
                "br0",
                "/linkinfo/info_data/vlan_default_pvid",
                ["5", "6", "1"],
            ),
        ),
        AttributeCase::on_host(
            BRIDGE_VF_PORT,
            "port pvid",
            ["pvid = 136,", "pvid = 137,"],
            "~ port eth2 vlans [136 pvid untagged] -> [137 pvid untagged]",
            vec!["bridge", "vlan", "add", "dev", "eth2", "vid", "200"],
            "~ port eth2 vlans [137 pvid untagged, 200] -> [137 pvid untagged]",
            Some("~ port eth2 vlans [137 pvid untagged] -> [1 pvid untagged]"),
            None,
        ),
        AttributeCase::on_host(
            BRIDGE_VF_PORT,
            "port vlans",
            ["vlans = [136],", "vlans = [136, 137],"],
            "~ port eth2 vlans [1 pvid untagged, 136] -> [1 pvid untagged, 136, 137]",
            vec!["bridge", "vlan", "del", "dev", "eth2", "vid", "137"],
            "~ port eth2 vlans [1 pvid untagged, 136] -> [1 pvid untagged, 136, 137]",
            Some("~ port eth2 vlans [1 pvid untagged, 136, 137] -> [1 pvid untagged]"),
            None,
        ),
        AttributeCase {
            ves: vec![(5, VE_ON_VF)],
            ..AttributeCase::on_host(
                "[[bridge]]\nname = \"br0\"\nvlan_filtering = true\n",
                "VE netif pvid",
                ["pvid = 136", "pvid = 137"],
                "~ port veth5.0 vlans [136 pvid untagged] -> [137 pvid untagged]",
                vec!["bridge", "vlan", "add", "dev", "veth5.0", "vid", "300"],
                "~ port veth5.0 vlans [137 pvid untagged, 300] -> [137 pvid untagged]",
                Some("~ port veth5.0 vlans [137 pvid untagged] -> [1 pvid untagged]"),
                None,
            )
        },
    ]
}

/// A host with three NICs (veths whose far ends are up) and a VE netns; every
/// case in turn, then a bond over two dummies.
pub(in crate::scenario) fn link_attributes() -> Result<()> {
    let lab = Lab::new("vm_attrs")?;
    let host = lab.host("host")?;
    let ve = lab.host("ve")?;
    for nic in ["eth0", "eth1", "eth2"] {
        let far = format!("{nic}p");
        host.run([
            "ip", "link", "add", nic, "type", "veth", "peer", "name", &far,
        ])?;
        host.run(["ip", "link", "set", &far, "up"])?;
    }
    let cfg = tempfile::tempdir()?;
    // Once through the CLI (which probes the kernel's features), then the
    // engine in this process.
    std::fs::write(cfg.path().join("host.toml"), BOND_AB.replace("@ATTR@", ""))?;
    vznet_ok(host.name(), &["apply"], cfg.path())?;
    let vznet = |args: &[&str]| engine(&host, cfg.path(), args.first().copied().unwrap_or("plan"));
    let runner = Runner {
        dir: cfg.path(),
        hosts: vec![("host", &host), ("ve", &ve)],
        vznet: &vznet,
        plan_first: false,
    };
    let mut failures = Vec::new();
    for c in cases() {
        let res = runner.run(&c);
        if let Err(e) = &res {
            println!("    {e:#}");
        }
        check(res.is_ok(), c.name, &mut failures);
    }
    // Dummies as bond slaves: made, made down, enslaved.
    std::fs::write(
        cfg.path().join("host.toml"),
        "[[dummy]]\nname = \"dum0\"\n[[dummy]]\nname = \"dum1\"\n[[bond]]\nname = \"bond0\"\nmode = \"balance-xor\"\nslaves = [\"dum0\", \"dum1\"]\n",
    )?;
    std::fs::remove_dir_all(cfg.path().join("ve"))?;
    vznet(&["apply"])?;
    let slaves = host.run(["cat", "/sys/class/net/bond0/bonding/slaves"])?;
    check(
        slaves.split_whitespace().collect::<Vec<_>>() == ["dum0", "dum1"],
        &format!("a bond over two [[dummy]] slaves ({})", slaves.trim()),
        &mut failures,
    );
    check(
        vznet(&["plan"])?.trim() == "0 changes",
        "and a second plan is 0 changes",
        &mut failures,
    );
    ensure!(failures.is_empty(), "{}", failures.join("; "));
    Ok(())
}
