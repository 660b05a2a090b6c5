//! Routed (venet) VEs from the VE runtime's side: the first packet after
//! `ve start` is answered at once (the host's proxy ARP does not wait the
//! kernel's default proxy_delay of up to 0.8 s before answering for another
//! VE), and with `[venet] neighbour_devs` the LAN reaches a routed VE from
//! `ve start` to `ve stop`, its proxy entries following `ve set`.

mod common;
mod ve_harness;

use anyhow::{Context, Result};
use lab::Lab;
use ve_harness::runtime;

/// The round trip of the one reply of `ping -c 1`, in ms.
fn rtt_ms(out: &str) -> Option<f64> {
    let t = out.split("time=").nth(1)?;
    t.split_whitespace()
        .next()?
        .trim_end_matches("ms")
        .parse()
        .ok()
}

#[test]
fn a_routed_ves_first_packet_after_start_is_answered_at_once() -> Result<()> {
    let lab = Lab::new("ve_routed")?;
    let host = lab.host("host")?;
    let rt = runtime(&host)?;
    rt.cfg.host(
        "[sysctl]\n\"net.ipv4.ip_forward\" = 1\n\n\
         [[bridge]]\nname = \"br0\"\naddresses = [\"10.60.0.1/24\"]\n",
    )?;
    for id in [951, 952] {
        rt.create(
            id,
            &format!("\n[venet]\naddresses = [\"10.70.9.{}\"]\n", id - 900),
        )?;
    }
    rt.ok(&["ve", "start", "951", "952"])?;
    // The setting that makes it so, on every routed link `ve start` made.
    for id in [951, 952] {
        assert_eq!(
            common::sysctl(&host, &format!("net/ipv4/neigh/venet{id}/proxy_delay"))?,
            "0",
            "venet{id}"
        );
    }
    // VE to VE through the host: each side's first ARP request is answered by
    // the host's proxy ARP. With the kernel's default delay (a random wait of
    // up to 0.8 s per request, two requests a round) three first pings in a
    // row all under 300 ms
    // would happen about once in 100 runs; with no delay, every time.
    for round in 0..3 {
        for id in [951, 952] {
            rt.exec(id, &["/bin/ip", "neigh", "flush", "dev", "venet0"])?;
        }
        let out = rt.exec(951, &["/bin/ping", "-c", "1", "-W", "3", "10.70.9.52"])?;
        let ms = rtt_ms(&out).with_context(|| format!("no reply time in {out}"))?;
        assert!(
            ms < 300.0,
            "round {round}: first packet took {ms} ms:\n{out}"
        );
    }
    Ok(())
}

/// `ip neigh show proxy` lines as `DST dev DEV`, sorted.
fn proxies(host: &lab::Host) -> Result<Vec<String>> {
    let v = host.ip_json(["neigh", "show", "proxy"])?;
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{} dev {}",
                        e["dst"].as_str().unwrap_or(""),
                        e["dev"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    Ok(out)
}

#[test]
fn the_lan_reaches_a_routed_ve_from_ve_start_to_ve_stop_through_neighbour_devs() -> Result<()> {
    let lab = Lab::new("ve_routed_lan")?;
    let host = lab.host("host")?;
    let lan = common::lan_peer(&lab, &host)?;
    lan.add_address("eth0", "192.168.61.2/24")?;
    lan.ip(["route", "add", "default", "via", "192.168.61.1"])?;
    let rt = runtime(&host)?;
    rt.cfg
        .host(&(common::forwarding_host(61) + "\n[venet]\nneighbour_devs = [\"br0\"]\n"))?;
    // Addresses from the LAN's own subnet: the LAN asks for them by ARP.
    rt.create(961, "\n[venet]\naddresses = [\"192.168.61.61\"]\n")?;
    rt.create(962, "\n[venet]\naddresses = [\"192.168.61.62\"]\n")?;
    rt.ok(&["apply"])?;
    assert!(proxies(&host)?.is_empty(), "no VE runs: no proxy entry");
    rt.ok(&["ve", "start", "961", "962"])?;
    assert_eq!(
        proxies(&host)?,
        ["192.168.61.61 dev br0", "192.168.61.62 dev br0"]
    );
    assert!(lan.ping("192.168.61.61"), "LAN -> routed VE");
    let out = rt.exec(961, &["/bin/ping", "-c", "1", "-W", "2", "192.168.61.2"])?;
    assert!(
        out.contains("1 packets received"),
        "routed VE -> LAN: {out}"
    );
    // `ve set` moves the entry with the address.
    rt.ok(&[
        "ve",
        "set",
        "962",
        "--ipadd",
        "192.168.61.63",
        "--ipdel",
        "192.168.61.62",
    ])?;
    assert_eq!(
        proxies(&host)?,
        ["192.168.61.61 dev br0", "192.168.61.63 dev br0"]
    );
    assert!(lan.ping("192.168.61.63"));
    // `ve stop` takes the VE's entries away (no vznetd runs here), and only its.
    rt.ok(&["ve", "stop", "961"])?;
    assert_eq!(proxies(&host)?, ["192.168.61.63 dev br0"]);
    // And through vznetd, which re-plans on the stop.
    let agent = common::spawn_vznetd(&host, &rt.cfg, rt.state.path(), &rt.socket(), &[])?;
    rt.ok(&["ve", "start", "961"])?;
    assert_eq!(
        proxies(&host)?,
        ["192.168.61.61 dev br0", "192.168.61.63 dev br0"]
    );
    rt.ok(&["ve", "stop", "--all"])?;
    assert!(proxies(&host)?.is_empty(), "{:?}", proxies(&host)?);
    drop(agent);
    Ok(())
}
