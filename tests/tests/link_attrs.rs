//! Every link attribute this kernel has, through its life under vznet: declared,
//! changed in the config (plan shows exactly that op), changed behind vznet's
//! back (plan finds it, apply repairs it), removed from the config. Bonds,
//! VLANs, dummies and VLAN filtering run the same steps in the VM tier
//! (`lab vm run link-attributes`).

mod common;

use anyhow::Result;
use common::{vznet_ok, ConfigDir};
use lab::{AttributeCase, Lab, Read, Runner, Source};

/// A host with two NICs (veths whose far ends are up), a bridge `br0` and a VE
/// netns; runs `case` in it.
fn run(test: &str, case: AttributeCase) -> Result<()> {
    let lab = Lab::new(test)?;
    let host = lab.host("host")?;
    let ve = lab.host("ve")?;
    for nic in ["eth0", "eth1"] {
        let far = format!("{nic}p");
        host.run([
            "ip", "link", "add", nic, "type", "veth", "peer", "name", &far,
        ])?;
        host.run(["ip", "link", "set", &far, "up"])?;
    }
    let cfg = ConfigDir::new()?;
    let vznet = |args: &[&str]| vznet_ok(&host, &cfg, args);
    Runner {
        dir: cfg.path(),
        hosts: vec![("host", &host), ("ve", &ve)],
        vznet: &vznet,
        plan_first: true,
    }
    .run(&case)
}

fn read(
    host: &'static str,
    dev: &'static str,
    pointer: &'static str,
    values: [&'static str; 3],
) -> Option<Read> {
    Some(Read {
        host,
        source: Source::Link { dev, pointer },
        first: values[0],
        second: values[1],
        removed: values[2],
    })
}

const BRIDGE: &str = "[[bridge]]\nname = \"br0\"\n@ATTR@\n";

fn ip_link_set(args: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["ip", "link", "set"];
    v.extend_from_slice(args);
    v
}

#[test]
fn bridge_stp() -> Result<()> {
    run(
        "attr_stp",
        AttributeCase::on_host(
            BRIDGE,
            "stp",
            ["stp = true", "stp = false"],
            "~ bridge br0 stp on -> off",
            ip_link_set(&["br0", "type", "bridge", "stp_state", "1"]),
            "~ bridge br0 stp on -> off",
            None,
            read(
                "host",
                "br0",
                "/linkinfo/info_data/stp_state",
                ["1", "0", "0"],
            ),
        ),
    )
}

#[test]
fn bridge_forward_delay() -> Result<()> {
    run(
        "attr_fwd_delay",
        AttributeCase::on_host(
            BRIDGE,
            "forward_delay_s",
            ["forward_delay_s = 4", "forward_delay_s = 6"],
            "~ bridge br0 forward_delay_s 4 -> 6",
            ip_link_set(&["br0", "type", "bridge", "forward_delay", "900"]),
            "~ bridge br0 forward_delay_s 9 -> 6",
            Some("~ bridge br0 forward_delay_s 6 -> 15"),
            read(
                "host",
                "br0",
                "/linkinfo/info_data/forward_delay",
                ["400", "600", "1500"],
            ),
        ),
    )
}

#[test]
fn bridge_hello_time() -> Result<()> {
    run(
        "attr_hello",
        AttributeCase::on_host(
            BRIDGE,
            "hello_time_s",
            ["hello_time_s = 3", "hello_time_s = 5"],
            "~ bridge br0 hello_time_s 3 -> 5",
            ip_link_set(&["br0", "type", "bridge", "hello_time", "700"]),
            "~ bridge br0 hello_time_s 7 -> 5",
            Some("~ bridge br0 hello_time_s 5 -> 2"),
            read(
                "host",
                "br0",
                "/linkinfo/info_data/hello_time",
                ["300", "500", "200"],
            ),
        ),
    )
}

#[test]
fn bridge_max_age() -> Result<()> {
    run(
        "attr_max_age",
        AttributeCase::on_host(
            BRIDGE,
            "max_age_s",
            ["max_age_s = 10", "max_age_s = 12"],
            "~ bridge br0 max_age_s 10 -> 12",
            ip_link_set(&["br0", "type", "bridge", "max_age", "3000"]),
            "~ bridge br0 max_age_s 30 -> 12",
            Some("~ bridge br0 max_age_s 12 -> 20"),
            read(
                "host",
                "br0",
                "/linkinfo/info_data/max_age",
                ["1000", "1200", "2000"],
            ),
        ),
    )
}

#[test]
fn bridge_priority() -> Result<()> {
    run(
        "attr_priority",
        AttributeCase::on_host(
            BRIDGE,
            "priority",
            ["priority = 4096", "priority = 8192"],
            "~ bridge br0 priority 4096 -> 8192",
            ip_link_set(&["br0", "type", "bridge", "priority", "100"]),
            "~ bridge br0 priority 100 -> 8192",
            Some("~ bridge br0 priority 8192 -> 32768"),
            read(
                "host",
                "br0",
                "/linkinfo/info_data/priority",
                ["4096", "8192", "32768"],
            ),
        ),
    )
}

/// An MTU the config stops declaring stays: vznet leaves MTUs it is not told.
#[test]
fn bridge_mtu() -> Result<()> {
    run(
        "attr_br_mtu",
        AttributeCase::on_host(
            BRIDGE,
            "bridge mtu",
            ["mtu = 9000", "mtu = 8000"],
            "~ link br0 mtu 9000 -> 8000",
            ip_link_set(&["br0", "mtu", "7000"]),
            "~ link br0 mtu 7000 -> 8000",
            None,
            read("host", "br0", "/mtu", ["9000", "8000", "8000"]),
        ),
    )
}

#[test]
fn bridge_port_isolated() -> Result<()> {
    run(
        "attr_isolated",
        AttributeCase {
            name: "isolated",
            host: "[[bridge]]\nname = \"br0\"\nports = [{ @ATTR@ name = \"eth1\" }]\n",
            ves: vec![],
            first: "isolated = true,",
            second: "isolated = false,",
            change: "~ port eth1 isolated on -> off",
            drift: (
                "host",
                ip_link_set(&["eth1", "type", "bridge_slave", "isolated", "on"]),
            ),
            repair: "~ port eth1 isolated on -> off",
            removed: None,
            read: read(
                "host",
                "eth1",
                "/linkinfo/info_slave_data/isolated",
                ["true", "false", "false"],
            ),
        },
    )
}

const VE_NETIF: &str =
    "id = 5\nnetns = \"@NS:ve@\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.5.0.5/24\"]\n@ATTR@\n";

#[test]
fn ve_netif_hairpin() -> Result<()> {
    run(
        "attr_hairpin",
        AttributeCase {
            name: "hairpin",
            host: "[[bridge]]\nname = \"br0\"\n",
            ves: vec![(5, VE_NETIF)],
            first: "hairpin = true",
            second: "hairpin = false",
            change: "~ port veth5.0 hairpin on -> off",
            drift: (
                "host",
                ip_link_set(&["veth5.0", "type", "bridge_slave", "hairpin", "on"]),
            ),
            repair: "~ port veth5.0 hairpin on -> off",
            removed: None,
            read: read(
                "host",
                "veth5.0",
                "/linkinfo/info_slave_data/hairpin",
                ["true", "false", "false"],
            ),
        },
    )
}

#[test]
fn ve_netif_learning() -> Result<()> {
    run(
        "attr_learning",
        AttributeCase {
            name: "learning",
            host: "[[bridge]]\nname = \"br0\"\n",
            ves: vec![(5, VE_NETIF)],
            first: "learning = false",
            second: "learning = true",
            change: "~ port veth5.0 learning off -> on",
            drift: (
                "host",
                ip_link_set(&["veth5.0", "type", "bridge_slave", "learning", "off"]),
            ),
            repair: "~ port veth5.0 learning off -> on",
            removed: None,
            read: read(
                "host",
                "veth5.0",
                "/linkinfo/info_slave_data/learning",
                ["false", "true", "true"],
            ),
        },
    )
}

/// Both ends of a VE's veth take the netif's MTU.
#[test]
fn ve_netif_mtu() -> Result<()> {
    run(
        "attr_netif_mtu",
        AttributeCase {
            name: "netif mtu",
            host: "[[bridge]]\nname = \"br0\"\n",
            ves: vec![(5, VE_NETIF)],
            first: "mtu = 9000",
            second: "mtu = 8000",
            change: "~ link veth5.0 mtu 9000 -> 8000\n~ link eth0 mtu 9000 -> 8000 (netns @NS:ve@)",
            drift: ("ve", ip_link_set(&["eth0", "mtu", "1400"])),
            repair: "~ link eth0 mtu 1400 -> 8000 (netns @NS:ve@)",
            removed: None,
            read: read("ve", "eth0", "/mtu", ["9000", "8000", "8000"]),
        },
    )
}

#[test]
fn venet_mtu() -> Result<()> {
    run(
        "attr_venet_mtu",
        AttributeCase {
            name: "venet mtu",
            host: "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n",
            ves: vec![(
                5,
                "id = 5\nnetns = \"@NS:ve@\"\n[venet]\naddresses = [\"10.9.0.5\"]\n@ATTR@\n",
            )],
            first: "mtu = 1400",
            second: "mtu = 1300",
            change:
                "~ link venet5 mtu 1400 -> 1300\n~ link venet0 mtu 1400 -> 1300 (netns @NS:ve@)",
            drift: ("host", ip_link_set(&["venet5", "mtu", "1200"])),
            repair: "~ link venet5 mtu 1200 -> 1300",
            removed: None,
            read: read("host", "venet5", "/mtu", ["1400", "1300", "1300"]),
        },
    )
}

const MACVLAN: &str = "[[macvlan]]\nname = \"mv0\"\nlink = \"eth0\"\n@ATTR@\n";

#[test]
fn macvlan_mode() -> Result<()> {
    run(
        "attr_mv_mode",
        AttributeCase::on_host(
            MACVLAN,
            "macvlan mode",
            ["mode = \"private\"", "mode = \"vepa\""],
            "~ macvlan mv0 mode private -> vepa",
            ip_link_set(&["mv0", "type", "macvlan", "mode", "private"]),
            "~ macvlan mv0 mode private -> vepa",
            Some("~ macvlan mv0 mode vepa -> bridge"),
            read(
                "host",
                "mv0",
                "/linkinfo/info_data/mode",
                ["\"private\"", "\"vepa\"", "\"bridge\""],
            ),
        ),
    )
}

#[test]
fn macvlan_mtu() -> Result<()> {
    run(
        "attr_mv_mtu",
        AttributeCase::on_host(
            MACVLAN,
            "macvlan mtu",
            ["mtu = 1400", "mtu = 1300"],
            "~ link mv0 mtu 1400 -> 1300",
            ip_link_set(&["mv0", "mtu", "1200"]),
            "~ link mv0 mtu 1200 -> 1300",
            None,
            read("host", "mv0", "/mtu", ["1400", "1300", "1300"]),
        ),
    )
}

#[test]
fn macvlan_mac() -> Result<()> {
    run(
        "attr_mv_mac",
        AttributeCase::on_host(
            MACVLAN,
            "macvlan mac",
            ["mac = \"02:00:00:00:00:01\"", "mac = \"02:00:00:00:00:02\""],
            "~ link mv0 mac 02:00:00:00:00:01 -> 02:00:00:00:00:02",
            ip_link_set(&["mv0", "address", "02:00:00:00:00:09"]),
            "~ link mv0 mac 02:00:00:00:00:09 -> 02:00:00:00:00:02",
            None,
            read(
                "host",
                "mv0",
                "/address",
                [
                    "\"02:00:00:00:00:01\"",
                    "\"02:00:00:00:00:02\"",
                    "\"02:00:00:00:00:02\"",
                ],
            ),
        ),
    )
}

const VXLAN: &str = "[[vxlan]]\nname = \"vx0\"\nid = 42\n@ATTR@\n";

#[test]
fn vxlan_learning() -> Result<()> {
    run(
        "attr_vx_learn",
        AttributeCase::on_host(
            VXLAN,
            "vxlan learning",
            ["learning = false", "learning = true"],
            "~ vxlan vx0 learning off -> on",
            ip_link_set(&["vx0", "type", "vxlan", "nolearning"]),
            "~ vxlan vx0 learning off -> on",
            None,
            read(
                "host",
                "vx0",
                "/linkinfo/info_data/learning",
                ["false", "true", "true"],
            ),
        ),
    )
}

/// A new remote makes the VXLAN again (so that a rollback restores it exactly).
#[test]
fn vxlan_remote() -> Result<()> {
    run(
        "attr_vx_remote",
        AttributeCase::on_host(
            VXLAN,
            "vxlan remote",
            ["remote = \"10.9.9.9\"", "remote = \"10.9.9.8\""],
            "- link vx0\n+ vxlan vx0 (id 42, remote 10.9.9.8)",
            ip_link_set(&["vx0", "type", "vxlan", "remote", "10.9.9.7"]),
            "- link vx0\n+ vxlan vx0 (id 42, remote 10.9.9.8)",
            Some("- link vx0\n+ vxlan vx0 (id 42)"),
            read(
                "host",
                "vx0",
                "/linkinfo/info_data/remote",
                ["\"10.9.9.9\"", "\"10.9.9.8\"", "(absent)"],
            ),
        ),
    )
}

/// The kernel refuses a new port on an existing VXLAN: drift is a VXLAN made
/// again by hand (with vznet's alias) on another port.
#[test]
fn vxlan_port() -> Result<()> {
    run(
        "attr_vx_port",
        AttributeCase::on_host(
            VXLAN,
            "vxlan port",
            ["port = 4790", "port = 4791"],
            "- link vx0\n+ vxlan vx0 (id 42, port 4791)",
            vec![
                "sh",
                "-c",
                "ip link del vx0 && ip link add vx0 type vxlan id 42 dstport 4700 && ip link set vx0 alias vznet:vxlan up",
            ],
            "- link vx0\n+ vxlan vx0 (id 42, port 4791)",
            Some("- link vx0\n+ vxlan vx0 (id 42)"),
            read(
                "host",
                "vx0",
                "/linkinfo/info_data/port",
                ["4790", "4791", "4789"],
            ),
        ),
    )
}

const ETHERNET: &str = "[[ethernet]]\nname = \"eth0\"\n@ATTR@\n";

#[test]
fn ethernet_mtu() -> Result<()> {
    run(
        "attr_nic_mtu",
        AttributeCase::on_host(
            ETHERNET,
            "ethernet mtu",
            ["mtu = 9000", "mtu = 8000"],
            "~ link eth0 mtu 9000 -> 8000",
            ip_link_set(&["eth0", "mtu", "1400"]),
            "~ link eth0 mtu 1400 -> 8000",
            None,
            read("host", "eth0", "/mtu", ["9000", "8000", "8000"]),
        ),
    )
}

/// Declared NICs are up unless the config says otherwise; a NIC the config no
/// longer declares keeps its state.
#[test]
fn ethernet_up() -> Result<()> {
    run(
        "attr_nic_up",
        AttributeCase::on_host(
            ETHERNET,
            "ethernet up",
            ["up = false", "up = true"],
            "~ link eth0 up",
            ip_link_set(&["eth0", "down"]),
            "~ link eth0 up",
            None,
            read(
                "host",
                "eth0",
                "/operstate",
                ["\"DOWN\"", "\"UP\"", "\"UP\""],
            ),
        ),
    )
}

/// vznet marks the addresses it adds (IFA_PROTO): it removes only those.
#[test]
fn ethernet_addresses() -> Result<()> {
    run(
        "attr_nic_addr",
        AttributeCase::on_host(
            ETHERNET,
            "ethernet addresses",
            [
                "addresses = [\"10.7.0.1/24\"]",
                "addresses = [\"10.8.0.1/24\"]",
            ],
            "- address 10.7.0.1/24 dev eth0\n+ address 10.8.0.1/24 dev eth0",
            vec!["ip", "addr", "del", "10.8.0.1/24", "dev", "eth0"],
            "+ address 10.8.0.1/24 dev eth0",
            Some("- address 10.8.0.1/24 dev eth0"),
            None,
        ),
    )
}

#[test]
fn ethernet_sysctl() -> Result<()> {
    run(
        "attr_nic_sysctl",
        AttributeCase::on_host(
            ETHERNET,
            "ethernet sysctl",
            ["sysctl = { proxy_arp = 1 }", "sysctl = { proxy_arp = 0 }"],
            "~ sysctl net/ipv4/conf/eth0/proxy_arp 1 -> 0",
            vec![
                "sh",
                "-c",
                "echo 1 > /proc/sys/net/ipv4/conf/eth0/proxy_arp",
            ],
            "~ sysctl net/ipv4/conf/eth0/proxy_arp 1 -> 0",
            None,
            None,
        ),
    )
}
