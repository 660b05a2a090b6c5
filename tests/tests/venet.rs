//! Routed ("venet") VEs: /32 host routes and proxy ARP; VEs in different subnets
//! reach each other through the host.

mod common;

use anyhow::Result;
use common::{sysctl, vznet_ok, ConfigDir};
use lab::Lab;

#[test]
fn routed_ves_in_different_subnets_reach_each_other_through_the_host() -> Result<()> {
    let lab = Lab::new("venet")?;
    let host = lab.host("host")?;
    let cfg = ConfigDir::new()?;
    cfg.host(
        r#"
[sysctl]
"net.ipv4.ip_forward" = 1

# The host's own address, which it answers from.
[[bridge]]
name = "br0"
addresses = ["192.168.50.1/24"]
"#,
    )?;
    let addrs = ["10.1.0.5", "10.2.0.7", "172.16.9.9"];
    let mut ves = Vec::new();
    for (n, addr) in addrs.iter().enumerate() {
        let id = 200 + n as u32;
        let ve = lab.host(&format!("ve{id}"))?;
        cfg.ve(
            id,
            &format!(
                "id = {id}\nnetns = \"{}\"\n[venet]\naddresses = [\"{addr}\"]\n",
                ve.name()
            ),
        )?;
        ves.push(ve);
    }
    vznet_ok(&host, &cfg, &["apply"])?;
    assert_eq!(vznet_ok(&host, &cfg, &["apply"])?.trim(), "0 changes");

    let routes = host.ip_json(["route", "show", "proto", "249"])?;
    for (n, addr) in addrs.iter().enumerate() {
        let dev = format!("venet{}", 200 + n);
        assert!(
            routes.as_array().is_some_and(|r| r
                .iter()
                .any(|x| x["dst"] == *addr && x["dev"] == dev.as_str())),
            "/32 route {addr} dev {dev} missing: {routes}"
        );
        assert_eq!(
            sysctl(&host, &format!("net/ipv4/conf/{dev}/proxy_arp"))?,
            "1"
        );
        assert_eq!(
            sysctl(&host, &format!("net/ipv4/conf/{dev}/forwarding"))?,
            "1"
        );
    }
    for (n, ve) in ves.iter().enumerate() {
        let a = ve.addresses("venet0")?;
        assert!(
            a.iter()
                .any(|x| x.addr.to_string() == addrs[n] && x.prefix_len == 32),
            "{a:?}"
        );
        for (m, addr) in addrs.iter().enumerate() {
            if m != n {
                assert!(ve.ping(addr), "VE {n} -> {addr} through the host");
            }
        }
    }
    assert!(host.ping(addrs[0]), "host -> routed VE");
    Ok(())
}
