//! Anti-spoofing of VEs on the host: bridged ports (MAC, IPv4, ARP, IPv6),
//! routed (venet) links, and IPv6 link-local sources; and the VEs' own
//! firewalls.

mod common;
mod ve_harness;

use anyhow::Result;
use lab::Lab;
use ve_harness::{in_echos, mac_netif, runtime};

#[test]
fn a_ve_that_spoofs_another_ves_ip_or_mac_reaches_nobody_and_ve_firewalls_filter() -> Result<()> {
    let lab = Lab::new("ve_spoof")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    // 861 has no anti-spoofing (the control), 862 the default; 863 the target.
    rt.create(861, &("anti_spoof = false\n".to_string() + &mac_netif(61)))?;
    rt.create(862, &mac_netif(62))?;
    rt.create(863, &mac_netif(63))?;
    // 864 filters: only the host may ping it.
    rt.create(
        864,
        &(mac_netif(64)
            + "\n[firewall]\ninput = \"drop\"\n[[firewall.allow]]\nproto = \"icmp\"\nfrom = [\"10.60.0.1/32\"]\n"),
    )?;
    rt.ok(&["ve", "start", "861", "862", "863", "864"])?;
    for id in [861, 862, 863, 864] {
        rt.started.borrow_mut().push(id);
    }
    // One shared host table; 861 (anti_spoof = false) has no elements in it.
    let table = host.run(["nft", "list", "table", "bridge", "vznet_antispoof"])?;
    assert!(
        table.contains("veth862.0") && !table.contains("veth861.0"),
        "{table}"
    );
    let echos_863 = || -> Result<u64> { in_echos(&rt.exec(863, &["/bin/cat", "/proc/net/snmp"])?) };
    let echos_host = || -> Result<u64> { in_echos(&host.run(["cat", "/proc/net/snmp"])?) };
    let ping = |id: u32, args: &[&str]| -> Result<bool> {
        let mut a = vec!["ve", "exec"];
        let ids = id.to_string();
        a.push(&ids);
        a.extend_from_slice(&["--", "/bin/ping", "-c", "2", "-W", "1"]);
        a.extend_from_slice(args);
        Ok(rt.vznet(&a)?.status.success())
    };
    // Honest traffic passes (and fills the ARP caches used below).
    for id in [861, 862] {
        assert!(ping(id, &["10.60.0.63"])?, "VE {id} -> 863");
        assert!(ping(id, &["10.60.0.1"])?, "VE {id} -> host");
    }
    // IP spoofing: 862 sends as 861, 861 as 862.
    rt.exec(
        862,
        &["/bin/ip", "addr", "add", "10.60.0.61/32", "dev", "eth0"],
    )?;
    rt.exec(
        861,
        &["/bin/ip", "addr", "add", "10.60.0.62/32", "dev", "eth0"],
    )?;
    let (t0, h0) = (echos_863()?, echos_host()?);
    ping(862, &["-I", "10.60.0.61", "10.60.0.63"])?;
    ping(862, &["-I", "10.60.0.61", "10.60.0.1"])?;
    assert_eq!(echos_863()?, t0, "862's spoofed IP reached 863");
    assert_eq!(echos_host()?, h0, "862's spoofed IP reached the host");
    ping(861, &["-I", "10.60.0.62", "10.60.0.63"])?;
    assert!(
        echos_863()? > t0,
        "control: without anti-spoofing the spoofed ping arrives"
    );
    rt.exec(
        862,
        &["/bin/ip", "addr", "del", "10.60.0.61/32", "dev", "eth0"],
    )?;
    // MAC spoofing: 862 takes 861's MAC.
    rt.exec(
        862,
        &[
            "/bin/ip",
            "link",
            "set",
            "dev",
            "eth0",
            "address",
            "02:00:00:00:00:3d",
        ],
    )?;
    let (t1, h1) = (echos_863()?, echos_host()?);
    ping(862, &["10.60.0.63"])?;
    ping(862, &["10.60.0.1"])?;
    assert_eq!(echos_863()?, t1, "862 with a foreign MAC reached 863");
    assert_eq!(echos_host()?, h1, "862 with a foreign MAC reached the host");
    rt.exec(
        861,
        &[
            "/bin/ip",
            "link",
            "set",
            "dev",
            "eth0",
            "address",
            "02:00:00:00:00:3e",
        ],
    )?;
    assert!(
        ping(861, &["10.60.0.63"])?,
        "control: 861 with another MAC still reaches 863"
    );

    // 864's own firewall: the host may ping it, 863 may not.
    assert!(host.ping("10.60.0.64"), "host -> 864 is allowed");
    assert!(
        !ping(863, &["10.60.0.64"])?,
        "863 -> 864 is dropped by 864's firewall"
    );

    // The host's rules follow `ve set` (a venet address may leave by the
    // bridged port too); stop removes them.
    rt.ok(&["ve", "set", "862", "--ipadd", "10.70.2.62"])?;
    let table = host.run(["nft", "list", "table", "bridge", "vznet_antispoof"])?;
    assert!(table.contains("\"veth862.0\" . 10.70.2.62"), "{table}");
    rt.ok(&["ve", "stop", "862"])?;
    let table = host.run(["nft", "list", "table", "bridge", "vznet_antispoof"])?;
    assert!(
        !table.contains("veth862.0") && table.contains("veth863.0"),
        "stop must take out 862's elements and only those: {table}"
    );
    Ok(())
}

/// `Icmp6InEchos` of /proc/net/snmp6, as read by a process in that netns.
fn in_echos6(snmp6: &str) -> Result<u64> {
    snmp6
        .lines()
        .find_map(|l| l.strip_prefix("Icmp6InEchos"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Icmp6InEchos in {snmp6}"))
}

#[test]
fn a_routed_ve_that_spoofs_another_ves_address_reaches_nobody() -> Result<()> {
    let lab = Lab::new("ve_spoof_routed")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.cfg.host(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n\n\
         [[bridge]]\nname = \"br0\"\naddresses = [\"10.60.0.1/24\"]\n",
    )?;
    // 871 is checked, 873 is not (the control); 872 is the victim, 874 the target.
    for (id, extra) in [
        (871, ""),
        (872, ""),
        (873, "anti_spoof = false\n"),
        (874, ""),
    ] {
        rt.create(
            id,
            &format!("{extra}\n[venet]\naddresses = [\"10.70.8.{}\"]\n", id - 800),
        )?;
    }
    rt.ok(&["ve", "start", "871", "872", "873", "874"])?;
    // The host's inet table lists the routed links that are checked.
    let table = host.run(["nft", "list", "table", "inet", "vznet_antispoof"])?;
    assert!(
        table.contains("venet871") && !table.contains("venet873"),
        "{table}"
    );
    let echos_874 = || -> Result<u64> { in_echos(&rt.exec(874, &["/bin/cat", "/proc/net/snmp"])?) };
    let echos_host = || -> Result<u64> { in_echos(&host.run(["cat", "/proc/net/snmp"])?) };
    let ping = |id: u32, args: &[&str]| -> Result<bool> {
        let ids = id.to_string();
        let mut a = vec!["ve", "exec", &ids, "--", "/bin/ping", "-c", "2", "-W", "1"];
        a.extend_from_slice(args);
        Ok(rt.vznet(&a)?.status.success())
    };
    // Honest traffic passes: to the host and, routed, to another VE.
    for id in [871, 873] {
        assert!(ping(id, &["10.70.8.74"])?, "VE {id} -> 874");
        assert!(ping(id, &["10.60.0.1"])?, "VE {id} -> host");
    }
    // 871 and 873 take 872's address.
    for id in [871, 873] {
        rt.exec(
            id,
            &["/bin/ip", "addr", "add", "10.70.8.72/32", "dev", "venet0"],
        )?;
    }
    let (t0, h0) = (echos_874()?, echos_host()?);
    ping(871, &["-I", "10.70.8.72", "10.70.8.74"])?;
    ping(871, &["-I", "10.70.8.72", "10.60.0.1"])?;
    assert_eq!(echos_874()?, t0, "871's spoofed address reached 874");
    assert_eq!(echos_host()?, h0, "871's spoofed address reached the host");
    ping(873, &["-I", "10.70.8.72", "10.60.0.1"])?;
    assert!(
        echos_host()? > h0,
        "control: without anti-spoofing the spoofed ping arrives"
    );
    Ok(())
}

#[test]
fn a_ve_cannot_send_from_another_ves_link_local_address() -> Result<()> {
    let lab = Lab::new("ve_spoof_ll")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    // 881 is checked, 883 is not (the control); 882 is the victim, 884 listens.
    for (id, extra) in [
        (881, ""),
        (882, ""),
        (883, "anti_spoof = false\n"),
        (884, ""),
    ] {
        rt.create(id, &(extra.to_string() + &mac_netif(id - 800)))?;
    }
    rt.ok(&["ve", "start", "881", "882", "883", "884"])?;
    let echos_884 =
        || -> Result<u64> { in_echos6(&rt.exec(884, &["/bin/cat", "/proc/net/snmp6"])?) };
    // All-nodes echo from eth0's link-local address.
    let ping_all = |id: u32| -> Result<()> {
        let ids = id.to_string();
        rt.vznet(&[
            "ve",
            "exec",
            &ids,
            "--",
            "/bin/ping",
            "-6",
            "-c",
            "2",
            "-W",
            "1",
            "-I",
            "eth0",
            "ff02::1",
        ])?;
        Ok(())
    };
    // Wait for DAD: a tentative address sends nothing.
    let settled = |id: u32| -> Result<bool> {
        Ok(!rt
            .exec(id, &["/bin/ip", "-6", "addr", "show", "dev", "eth0"])?
            .contains("tentative"))
    };
    anyhow::ensure!(
        lab::wait_until(
            std::time::Duration::from_secs(10),
            std::time::Duration::from_millis(100),
            || [881, 883, 884]
                .iter()
                .all(|id| settled(*id).unwrap_or(false))
        ),
        "link-local addresses stayed tentative"
    );
    // The address its MAC makes passes.
    let e0 = echos_884()?;
    ping_all(881)?;
    assert!(
        echos_884()? > e0,
        "881's own link-local address is let through"
    );
    // 881 and 883 swap theirs for 882's (02:00:00:00:00:52 -> fe80::ff:fe00:52).
    for id in [881, 883] {
        let own = format!("fe80::ff:fe00:{:x}/64", id - 800);
        for cmd in [
            vec![
                "/bin/sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv6/conf/eth0/accept_dad",
            ],
            vec!["/bin/ip", "-6", "addr", "del", own.as_str(), "dev", "eth0"],
            vec![
                "/bin/ip",
                "-6",
                "addr",
                "add",
                "fe80::ff:fe00:52/64",
                "dev",
                "eth0",
            ],
        ] {
            rt.exec(id, &cmd)?;
        }
    }
    let e1 = echos_884()?;
    ping_all(881)?;
    assert_eq!(echos_884()?, e1, "881 sent from 882's link-local address");
    ping_all(883)?;
    assert!(
        echos_884()? > e1,
        "control: without anti-spoofing the spoofed link-local source arrives"
    );
    Ok(())
}
