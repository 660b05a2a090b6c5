//! Invalid input: an error with file, line, column and key, exit code 2, and no
//! change to the kernel.

mod common;

use anyhow::Result;
use common::{snapshot, vznet, ConfigDir};
use lab::Lab;

struct Case {
    name: &'static str,
    host: &'static str,
    ve: &'static str,
    /// `FILE:LINE:COL: KEY` expected in the message.
    at: &'static str,
    says: &'static str,
}

const GOOD_HOST: &str = "[[bridge]]\nname = \"br0\"\n";

const CASES: &[Case] = &[
    Case { name: "unknown key", host: "[[bridge]]\nname = \"br0\"\ncolour = \"red\"\n", ve: "", at: "host.toml:3:1: bridge[0].colour", says: "unknown field `colour`" },
    Case { name: "bad CIDR", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/33\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "prefix length \"33\" is not a number in 0..=32" },
    Case { name: "duplicate name", host: "[[bridge]]\nname = \"br0\"\n[[bridge]]\nname = \"br0\"\n", ve: "", at: "host.toml:4:1: bridge[1].name", says: "duplicate interface name \"br0\"" },
    Case { name: "long name", host: "[[bridge]]\nname = \"bridge-with-a-long-name\"\n", ve: "", at: "host.toml:2:1: bridge[0].name", says: "at most 15" },
    Case { name: "vlan id", host: "[[vlan]]\nname = \"eth9.5000\"\nlink = \"eth9\"\nid = 5000\n", ve: "", at: "host.toml:4:1: vlan[0].id", says: "out of range 1..4094" },
    Case { name: "port on two bridges", host: "[[bridge]]\nname = \"br0\"\nports = [\"eth7\"]\n[[bridge]]\nname = \"br1\"\nports = [\"eth7\"]\n", ve: "", at: "host.toml:6:10: bridge[1].ports[0]", says: "already a port of bridge \"br0\"" },
    Case { name: "missing netns", host: GOOD_HOST, ve: "id = 7\nnetns = \"vznet-no-such-ns\"\n", at: "ve/7.toml:2:1: netns", says: "does not exist" },
    Case { name: "unknown bridge", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\nbridge = \"br9\"\n", at: "ve/7.toml:4:1: netif[0].bridge", says: "no bridge \"br9\"" },
    Case { name: "bad MAC", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\nmac = \"00:11:22\"\n", at: "ve/7.toml:4:7: netif[0].mac", says: "invalid MAC address" },
    Case { name: "unknown sysctl", host: "[sysctl]\n\"net.ipv4.no_such_knob\" = 1\n", ve: "", at: "host.toml:2:1: sysctl.\"net.ipv4.no_such_knob\"", says: "unknown sysctl" },
    Case { name: "id and file name differ", host: GOOD_HOST, ve: "id = 8\n", at: "ve/7.toml:1:1: id", says: "does not match the file name" },
    Case { name: "VRRP VRID 0", host: "[[vrrp]]\nname = \"VI_1\"\ninterface = \"br0\"\nvrid = 0\nvirtual_ips = [\"10.0.0.100/24\"]\n", ve: "", at: "host.toml:4:1: vrrp[0].vrid", says: "VRID 0 is reserved" },
    Case { name: "VRRPv3 interval", host: "[[vrrp]]\nname = \"VI_1\"\ninterface = \"br0\"\nvrid = 5\nadvert_interval_ms = 15\nvirtual_ips = [\"10.0.0.100/24\"]\n", ve: "", at: "host.toml:5:1: vrrp[0].advert_interval_ms", says: "centiseconds" },
    Case { name: "source-hash without a seed", host: "[[virtual_server]]\nvip = \"10.0.0.100\"\nport = 80\nscheduler = \"source-hash\"\nbackends = [ { address = \"10.0.0.5\" } ]\n", ve: "", at: "host.toml:4:1: virtual_server[0].scheduler", says: "explicit hash_seed" },
    Case { name: "backend VE unknown", host: "[[virtual_server]]\nvip = \"10.0.0.100\"\nport = 80\nbackends = [ { ve = 42 } ]\n", ve: "", at: "host.toml:4:16: virtual_server[0].backends[0].ve", says: "no VE 42" },
    Case { name: "backend weight 0", host: "[[virtual_server]]\nvip = \"10.0.0.100\"\nport = 80\nbackends = [ { address = \"10.0.0.5\", weight = 0 } ]\n", ve: "", at: "host.toml:4:38: virtual_server[0].backends[0].weight", says: "out of range 1..=1000" },
    Case { name: "check kind", host: "[[virtual_server]]\nvip = \"10.0.0.100\"\nport = 80\ncheck = { kind = \"icmp\" }\nbackends = [ { address = \"10.0.0.5\" } ]\n", ve: "", at: "host.toml:4:18: virtual_server[0].check.kind", says: "unknown variant `icmp`" },
    Case { name: "sysctl key climbing out of /proc/sys", host: "[sysctl]\n\"../../etc/hostname\" = \"x\"\n", ve: "", at: "host.toml:2:1: sysctl.\"../../etc/hostname\"", says: "contains \"..\"" },
    Case { name: "absolute sysctl key", host: "[sysctl]\n\"/etc/hostname\" = \"x\"\n", ve: "", at: "host.toml:2:1: sysctl./etc/hostname", says: "absolute path" },
    Case { name: "empty sysctl segment", host: "[sysctl]\n\"net..ipv4.ip_forward\" = 1\n", ve: "", at: "host.toml:2:1: sysctl.\"net..ipv4.ip_forward\"", says: "empty segment" },
    Case { name: "sysctl folder", host: "[sysctl]\n\"net.ipv4\" = 1\n", ve: "", at: "host.toml:2:1: sysctl.\"net.ipv4\"", says: "is a folder" },
    Case { name: "per-interface sysctl climbing out", host: "[[bridge]]\nname = \"br0\"\nsysctl = { \"../../../../etc/hostname\" = 1 }\n", ve: "", at: "host.toml:3:12: bridge[0].sysctl.\"../../../../etc/hostname\"", says: "one file name" },
    Case { name: "per-interface sysctl of a VE", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\nsysctl = { \"neigh.x/y\" = 1 }\n", at: "ve/7.toml:4:12: netif[0].sysctl.\"neigh.x/y\"", says: "one file name" },
    Case { name: "rule priority 0", host: "[[rule]]\npriority = 0\nfrom = \"10.1.0.0/16\"\ntable = 100\n", ve: "", at: "host.toml:2:1: rule[0].priority", says: "local rule" },
    Case { name: "rule without priority", host: "[[rule]]\nfrom = \"10.1.0.0/16\"\ntable = 100\n", ve: "", at: "host.toml:1:1: rule[0]", says: "missing field `priority`" },
    Case { name: "rule families", host: "[[rule]]\npriority = 5\nfrom = \"10.1.0.0/16\"\nto = \"fd00::/8\"\ntable = 100\n", ve: "", at: "host.toml:4:1: rule[0].to", says: "different families" },
    Case { name: "rule fwmark", host: "[[rule]]\npriority = 5\nfwmark = \"0x10/zz\"\ntable = 100\n", ve: "", at: "host.toml:3:10: rule[0].fwmark", says: "invalid fwmark" },
    Case { name: "unknown table name", host: "[[rule]]\npriority = 5\nfwmark = 1\ntable = \"vz-no-such-table\"\n", ve: "", at: "host.toml:4:9: rule[0].table", says: "unknown table \"vz-no-such-table\"" },
    Case { name: "route in the local table", host: "[[route]]\nto = \"10.9.0.0/16\"\ndev = \"lo\"\ntable = \"local\"\n", ve: "", at: "host.toml:4:9: route[0].table", says: "local table" },
    Case { name: "neighbour device name", host: "[venet]\nneighbour_devs = [\"br0\", \"a/b\"]\n", ve: "", at: "host.toml:2:26: venet.neighbour_devs[1]", says: "may not contain '/'" },
    Case { name: "gateway6 of IPv4", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\naddresses = [\"fd00::7/64\"]\ngateway6 = \"10.0.0.1\"\n", at: "ve/7.toml:5:1: netif[0].gateway6", says: "not an IPv6 address" },
    Case { name: "gateway6 without an IPv6 address", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\naddresses = [\"10.0.0.7/24\"]\ngateway6 = \"fd00::1\"\n", at: "ve/7.toml:5:1: netif[0].gateway6", says: "no address of its family" },
    Case { name: "name template", host: "[[bridge]]\nname = \"br%d\"\n", ve: "", at: "host.toml:2:1: bridge[0].name", says: "contains '%'" },
    Case { name: "reserved name", host: "[[dummy]]\nname = \"all\"\n", ve: "", at: "host.toml:2:1: dummy[0].name", says: "is reserved" },
    Case { name: "0xA0 byte in a name", host: "[[bridge]]\nname = \"br\u{00e0}\"\n", ve: "", at: "host.toml:2:1: bridge[0].name", says: "0xA0" },
    Case { name: "bond option of another mode", host: "[[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nlacp_rate = \"fast\"\n", ve: "", at: "host.toml:4:1: bond[0].lacp_rate", says: "used in mode \"802.3ad\" only" },
    Case { name: "bond primary not a slave", host: "[[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nslaves = [\"eth0\"]\nprimary = \"eth1\"\n", ve: "", at: "host.toml:5:1: bond[0].primary", says: "not one of the slaves" },
    Case { name: "bond delay not a multiple", host: "[[bond]]\nname = \"bond0\"\nmode = \"balance-rr\"\nupdelay_ms = 150\n", ve: "", at: "host.toml:4:1: bond[0].updelay_ms", says: "not a multiple of miimon_ms 100" },
    Case { name: "bond ARP and MII", host: "[[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nmiimon_ms = 100\narp_interval_ms = 200\narp_ip_targets = [\"10.0.0.1\"]\n", ve: "", at: "host.toml:4:1: bond[0].miimon_ms", says: "exclude each other" },
    Case { name: "bond hash policy", host: "[[bond]]\nname = \"bond0\"\nmode = \"802.3ad\"\nxmit_hash_policy = \"layer5\"\n", ve: "", at: "host.toml:4:20: bond[0].xmit_hash_policy", says: "unknown variant `layer5`" },
    Case { name: "VLAN protocol", host: "[[vlan]]\nname = \"eth9.5\"\nlink = \"eth9\"\nid = 5\nprotocol = \"802.1x\"\n", ve: "", at: "host.toml:5:12: vlan[0].protocol", says: "unknown variant `802.1x`" },
    Case { name: "VLAN MTU above its lower link's", host: "[[bond]]\nname = \"bond0\"\nmode = \"balance-rr\"\nmtu = 1500\n[[vlan]]\nname = \"bond0.5\"\nlink = \"bond0\"\nid = 5\nmtu = 9000\n", ve: "", at: "host.toml:9:1: vlan[0].mtu", says: "above the mtu of its lower link \"bond0\" (1500)" },
    Case { name: "MTU range", host: "[[bridge]]\nname = \"br0\"\nmtu = 20\n", ve: "", at: "host.toml:3:1: bridge[0].mtu", says: "out of range 68..65535" },
    Case { name: "STP timer range", host: "[[bridge]]\nname = \"br0\"\nforward_delay_s = 40\n", ve: "", at: "host.toml:3:1: bridge[0].forward_delay_s", says: "out of range 2..30" },
    Case { name: "port VLAN without filtering", host: "[[bridge]]\nname = \"br0\"\nports = [{ name = \"eth1\", pvid = 5 }]\n", ve: "", at: "host.toml:3:27: bridge[0].ports[0].pvid", says: "needs vlan_filtering = true" },
    Case { name: "port option typo", host: "[[bridge]]\nname = \"br0\"\nports = [{ name = \"eth1\", isolate = true }]\n", ve: "", at: "host.toml:3:", says: "unknown field `isolate`" },
    Case { name: "VXLAN VNI", host: "[[vxlan]]\nname = \"vx0\"\nid = 20000000\n", ve: "", at: "host.toml:3:1: vxlan[0].id", says: "out of range 0..16777215" },
    Case { name: "macvlan mode", host: "[[macvlan]]\nname = \"mv0\"\nlink = \"eth0\"\nmode = \"source\"\n", ve: "", at: "host.toml:4:8: macvlan[0].mode", says: "unknown variant `source`" },
    Case { name: "NIC port down", host: "[[ethernet]]\nname = \"eth1\"\nup = false\n[[bridge]]\nname = \"br0\"\nports = [\"eth1\"]\n", ve: "", at: "host.toml:3:1: ethernet[0].up", says: "must be up" },
    Case { name: "netif port option without a bridge", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\nisolated = true\n", at: "ve/7.toml:4:1: netif[0].isolated", says: "bridge port option" },
    Case { name: "unspecified address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/24\", \"0.0.0.0/24\"]\n", ve: "", at: "host.toml:3:29: bridge[0].addresses[1]", says: "0.0.0.0/24 cannot be an interface address: 0.0.0.0 is the unspecified address" },
    Case { name: "multicast address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"224.0.0.5/24\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "a multicast address (224.0.0.0/4) is joined, never assigned" },
    Case { name: "IPv6 multicast address", host: "[[dummy]]\nname = \"d0\"\naddresses = [\"ff02::5/64\"]\n", ve: "", at: "host.toml:3:14: dummy[0].addresses[0]", says: "ff00::/8" },
    Case { name: "link-local address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"fe80::5/64\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "IPv6 link-local addresses (fe80::/10) are the kernel's" },
    Case { name: "link-local venet address", host: GOOD_HOST, ve: "id = 7\n[venet]\naddresses = [\"10.1.0.7\", \"fe80::7\"]\n", at: "ve/7.toml:3:26: venet.addresses[1]", says: "link-local" },
    Case { name: "limited broadcast address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"255.255.255.255/32\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "limited broadcast address" },
    Case { name: "subnet broadcast address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.255/24\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "broadcast address of its /24 subnet" },
    Case { name: "loopback address on a bridge", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"127.0.0.2/8\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "loopback address: it belongs on lo only" },
    Case { name: "loopback address in a VE", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\naddresses = [\"::1/128\"]\n", at: "ve/7.toml:4:14: netif[0].addresses[0]", says: "loopback" },
    Case { name: "IPv4-mapped address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"::ffff:10.0.0.1/96\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "IPv4-mapped" },
    Case { name: "address twice", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/24\", \"10.0.0.1/16\"]\n", ve: "", at: "host.toml:3:29: bridge[0].addresses[1]", says: "10.0.0.1 is listed twice" },
    Case { name: "leading zero in an address", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"010.0.0.1/8\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "\"010\" has a leading zero" },
    Case { name: "leading zero in a prefix length", host: "[[bridge]]\nname = \"br0\"\naddresses = [\"10.0.0.1/08\"]\n", ve: "", at: "host.toml:3:14: bridge[0].addresses[0]", says: "prefix length \"08\" has a leading zero" },
    Case { name: "leading zero in a route", host: "[[route]]\nto = \"10.0.0.0/8\"\nvia = \"192.168.0.01\"\n", ve: "", at: "host.toml:3:7: route[0].via", says: "invalid IP address syntax" },
    Case { name: "leading zero in a route destination", host: "[[route]]\nto = \"010.0.0.0/8\"\ndev = \"lo\"\n", ve: "", at: "host.toml:2:6: route[0].to", says: "leading zero" },
    Case { name: "leading zero in a VRRP address", host: "[[vrrp]]\nname = \"VI_1\"\ninterface = \"br0\"\nvrid = 5\nvirtual_ips = [\"10.0.0.010/24\"]\n", ve: "", at: "host.toml:5:16: vrrp[0].virtual_ips[0]", says: "leading zero" },
    Case { name: "unspecified gateway", host: "[[route]]\nto = \"10.9.0.0/16\"\nvia = \"0.0.0.0\"\n", ve: "", at: "host.toml:3:1: route[0].via", says: "0.0.0.0 cannot be a gateway: it is the unspecified address" },
    Case { name: "multicast VE gateway", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\naddresses = [\"10.0.0.7/24\"]\ngateway = \"224.0.0.1\"\n", at: "ve/7.toml:5:1: netif[0].gateway", says: "multicast" },
    Case { name: "all-zero MAC", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\nmac = \"00:00:00:00:00:00\"\n", at: "ve/7.toml:4:1: netif[0].mac", says: "all zeros" },
    Case { name: "all-zero bridge MAC", host: "[[bridge]]\nname = \"br0\"\nmac = \"00:00:00:00:00:00\"\n", ve: "", at: "host.toml:3:1: bridge[0].mac", says: "all zeros" },
    Case { name: "NUL byte in a name", host: "[[vrrp]]\nname = \"VI\\u0000x\"\ninterface = \"br0\"\nvrid = 5\nvirtual_ips = [\"10.0.0.100/24\"]\n", ve: "", at: "host.toml:2:1: vrrp[0].name", says: "contains a NUL byte" },
    Case { name: "NUL byte in a hook argument", host: GOOD_HOST, ve: "id = 7\n[hooks]\npre_start = [\"/bin/echo\", \"a\\u0000b\"]\n", at: "ve/7.toml:3:27: hooks.pre_start[1]", says: "contains a NUL byte" },
    Case { name: "VE id 0", host: GOOD_HOST, ve: "id = 0\n", at: "ve/7.toml:1:1: id", says: "VE id 0 is the host itself" },
    Case { name: "host name", host: GOOD_HOST, ve: "id = 7\nhostname = \"web_1\"\n", at: "ve/7.toml:2:1: hostname", says: "host name \"web_1\" may hold only letters, digits" },
    Case { name: "host name too long", host: GOOD_HOST, ve: "id = 7\nhostname = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"\n", at: "ve/7.toml:2:1: hostname", says: "the kernel takes at most 64" },
    Case { name: "VE netns is the host's", host: GOOD_HOST, ve: "id = 7\nnetns = \"/proc/self/ns/net\"\n", at: "ve/7.toml:2:1: netns", says: "is the host's own network namespace" },
    Case { name: "VE netns is not a namespace", host: GOOD_HOST, ve: "id = 7\nnetns = \"/etc/hostname\"\n", at: "ve/7.toml:2:1: netns", says: "is not a namespace file" },
    Case { name: "VE netns of another kind", host: GOOD_HOST, ve: "id = 7\nnetns = \"/proc/self/ns/uts\"\n", at: "ve/7.toml:2:1: netns", says: "not a network namespace" },
    Case { name: "gateway and venet", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\naddresses = [\"10.0.0.7/24\"]\ngateway = \"10.0.0.1\"\n[venet]\naddresses = [\"10.1.0.7\"]\n", at: "ve/7.toml:5:1: netif[0].gateway", says: "the VE has an IPv4 default route already ([venet] routes IPv4 through venet0" },
    Case { name: "two IPv6 gateways", host: GOOD_HOST, ve: "id = 7\n[[netif]]\nname = \"eth0\"\ngateway6 = \"fe80::1\"\n[[netif]]\nname = \"eth1\"\ngateway = \"fe80::2\"\n", at: "ve/7.toml:7:1: netif[1].gateway", says: "IPv6 default route already (netif[0].gateway6 is one" },
    Case { name: "missing bridge port", host: "[[bridge]]\nname = \"br0\"\nports = [{ name = \"vz-no-such0\" }]\n", ve: "", at: "host.toml:3:12: bridge[0].ports[0].name", says: "no link \"vz-no-such0\" in this host's network namespace" },
    Case { name: "loopback as a bridge port", host: "[[bridge]]\nname = \"br0\"\nports = [\"lo\"]\n", ve: "", at: "host.toml:3:10: bridge[0].ports[0]", says: "the loopback link cannot be a bridge port" },
    Case { name: "missing NIC", host: "[[ethernet]]\nname = \"vz-no-such0\"\n", ve: "", at: "host.toml:2:1: ethernet[0].name", says: "no link \"vz-no-such0\"" },
    Case { name: "missing VLAN lower link", host: "[[vlan]]\nname = \"vz-no-such0.5\"\nlink = \"vz-no-such0\"\nid = 5\n", ve: "", at: "host.toml:3:1: vlan[0].link", says: "no link \"vz-no-such0\"" },
    Case { name: "missing route device", host: "[[route]]\nto = \"10.9.0.0/16\"\ndev = \"vz-no-such0\"\n", ve: "", at: "host.toml:3:1: route[0].dev", says: "no link \"vz-no-such0\"" },
    Case { name: "TOML syntax", host: "[[bridge]\nname = \"br0\"\n", ve: "", at: "host.toml:1:", says: "" },
];

#[test]
fn every_invalid_input_is_located_exits_2_and_changes_nothing() -> Result<()> {
    let lab = Lab::new("config_errors")?;
    let host = lab.host("host")?;
    let before = snapshot(&host)?;
    for case in CASES {
        let cfg = ConfigDir::new()?;
        cfg.host(case.host)?;
        if !case.ve.is_empty() {
            cfg.ve(7, case.ve)?;
        }
        for cmd in ["check", "plan", "apply"] {
            let out = vznet(&host, &cfg, &[cmd])?;
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{}: {cmd}: {err}", case.name);
            let want = format!("{}/{}", cfg.path().display(), case.at);
            assert!(
                err.contains(&want),
                "{}: expected {want:?} in:\n{err}",
                case.name
            );
            assert!(
                err.contains(case.says),
                "{}: expected {:?} in:\n{err}",
                case.name,
                case.says
            );
            assert!(err.contains("nothing changed"), "{err}");
        }
        let json = vznet(&host, &cfg, &["check", "--json"])?;
        let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
        assert_eq!(v["ok"], false, "{}", case.name);
        assert!(
            v["errors"][0]["line"].as_u64().is_some_and(|l| l >= 1),
            "{v}"
        );
    }
    assert_eq!(before, snapshot(&host)?);
    Ok(())
}

#[test]
fn bonds_and_vlans_on_a_kernel_without_them_fail_before_any_change() -> Result<()> {
    let probe = netcfg::kernel::features::probe(&[
        netcfg::link::bond::FEATURE,
        netcfg::link::vlan::FEATURE,
    ])?;
    let lab = Lab::new("no_bonding")?;
    let host = lab.host("host")?;
    host.run([
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n[[bond]]\nname = \"bond0\"\nmode = \"active-backup\"\nmiimon_ms = 100\nslaves = [\"eth0\", \"eth1\"]\n[[vlan]]\nname = \"bond0.136\"\nlink = \"bond0\"\nid = 136\n[[bridge]]\nname = \"br136\"\nports = [\"bond0.136\"]\n",
    )?;
    if probe == [true, true] {
        eprintln!("SKIP: this kernel has bonding and 802.1Q; the VM tier tests them working");
        return Ok(());
    }
    let before = snapshot(&host)?;
    let out = vznet(&host, &cfg, &["apply"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let want = if probe[0] {
        "kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)"
    } else {
        "kernel has no bonding support (CONFIG_BONDING)"
    };
    assert!(err.contains(want), "{err}");
    assert_eq!(
        before,
        snapshot(&host)?,
        "nothing changed (not even the sysctl)"
    );
    Ok(())
}

/// Refusals that involve a VE's real namespace: with the VE's netns named, each
/// config would reach both namespaces, and neither may change.
#[test]
fn ve_namespace_refusals_change_nothing_in_either_namespace() -> Result<()> {
    let lab = Lab::new("config_errors_ve")?;
    let host = lab.host("host")?;
    let ve = lab.host("ve")?;
    let (h, v) = (host.name(), ve.name());
    let wired = |extra: &str| {
        format!("id = 7\nnetns = \"{v}\"\n[[netif]]\nname = \"eth0\"\nbridge = \"br0\"\naddresses = [\"10.0.0.7/24\"]\n{extra}")
    };
    let cases: Vec<(&str, String, Option<String>, String, &str)> = vec![
        (
            "the host's netns by name",
            GOOD_HOST.into(),
            None,
            format!("id = 7\nnetns = \"{h}\"\n"),
            "ve/7.toml:2:1: netns: /run/netns/",
        ),
        (
            "one netns by two paths",
            GOOD_HOST.into(),
            Some(format!("id = 8\nnetns = \"/run/netns/{v}\"\n")),
            format!("id = 7\nnetns = \"{v}\"\n"),
            "ve/8.toml:2:1: netns: network namespace",
        ),
        (
            "gateway and venet",
            GOOD_HOST.into(),
            None,
            wired("gateway = \"10.0.0.1\"\n[venet]\naddresses = [\"10.1.0.7\"]\n"),
            "ve/7.toml:7:1: netif[0].gateway: the VE has an IPv4 default route already",
        ),
        (
            "a missing bridge port",
            "[[bridge]]\nname = \"br0\"\nports = [\"vz-gone0\"]\naddresses = [\"10.0.0.1/24\"]\n"
                .into(),
            None,
            wired(""),
            "host.toml:3:10: bridge[0].ports[0]: no link \"vz-gone0\"",
        ),
    ];
    let before = (snapshot(&host)?, snapshot(&ve)?);
    for (name, host_toml, other_ve, ve_toml, at) in cases {
        let cfg = ConfigDir::new()?;
        cfg.host(&host_toml)?;
        cfg.ve(7, &ve_toml)?;
        if let Some(text) = other_ve {
            cfg.ve(8, &text)?;
        }
        for cmd in ["check", "plan", "apply"] {
            let out = vznet(&host, &cfg, &[cmd])?;
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name}: {cmd}: {err}");
            let want = format!("{}/{at}", cfg.path().display());
            assert!(err.contains(&want), "{name}: expected {want:?} in:\n{err}");
            assert!(err.contains("nothing changed"), "{err}");
        }
    }
    assert_eq!(before, (snapshot(&host)?, snapshot(&ve)?));
    Ok(())
}

/// A file in `ve/` that looks like a VE file but is not read (`ve/101.TOML`, an
/// editor's backup) is named in a warning: never silently ignored, never fatal.
#[test]
fn lookalike_ve_files_are_warned_about() -> Result<()> {
    let lab = Lab::new("config_lookalike")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    cfg.host(GOOD_HOST)?;
    cfg.ve(7, "id = 7\n")?;
    std::fs::write(cfg.path().join("ve/101.TOML"), "id = 101\n")?;
    std::fs::write(cfg.path().join("ve/7.toml.bak"), "id = 7\n")?;
    std::fs::write(cfg.path().join("ve/README"), "notes\n")?;
    let out = vznet(&host, &cfg, &["check"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let dir = cfg.path().display();
    for want in [
        format!(
            "warning: {dir}/ve/101.TOML:1:1: skipped: VE files must end in \".toml\" (lower case)"
        ),
        format!(
            "warning: {dir}/ve/7.toml.bak:1:1: skipped: only files ending in \".toml\" are read"
        ),
    ] {
        assert!(err.contains(&want), "expected {want:?} in:\n{err}");
    }
    assert!(!err.contains("README"), "{err}");
    let json = vznet(&host, &cfg, &["check", "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(
        (v["ok"].as_bool(), v["ves"].as_u64()),
        (Some(true), Some(1)),
        "{v}"
    );
    let files: Vec<&str> = v["warnings"]
        .as_array()
        .map(|w| w.iter().filter_map(|w| w["file"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        files.len() == 2 && files.iter().any(|f| f.ends_with("ve/101.TOML")),
        "{v}"
    );
    // A config with an error still names them: a skipped file may be why.
    cfg.ve(7, "id = 7\nbogus = 1\n")?;
    let out = vznet(&host, &cfg, &["check"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("error: ") && err.contains("ve/101.TOML:1:1: skipped"),
        "{err}"
    );
    let json = vznet(&host, &cfg, &["check", "--json"])?;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout)?;
    assert_eq!(
        (v["ok"].as_bool(), v["warnings"].as_array().map(Vec::len)),
        (Some(false), Some(2)),
        "{v}"
    );
    Ok(())
}

/// `check --other-host`: a config for another host is not held to this host's
/// links (a migration, a fleet member); the rest is checked as ever.
#[test]
fn links_of_another_host_are_checked_only_on_it() -> Result<()> {
    let lab = Lab::new("config_other_host")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    cfg.host("[[bridge]]\nname = \"br0\"\nports = [\"vz-no-such0\"]\n")?;
    let out = vznet(&host, &cfg, &["check"])?;
    assert_eq!(out.status.code(), Some(2));
    let out = vznet(&host, &cfg, &["check", "--other-host"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    cfg.host(
        "[[bridge]]\nname = \"br0\"\nports = [\"vz-no-such0\"]\naddresses = [\"0.0.0.0/8\"]\n",
    )?;
    let out = vznet(&host, &cfg, &["check", "--other-host"])?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bridge[0].addresses[0]") && !err.contains("vz-no-such0"),
        "{err}"
    );
    Ok(())
}
