//! Native-syntax scripts run in the executor's netns, atomically, and carry
//! what libnftables 1.0.6's JSON cannot: dynamic maps written from the packet
//! path and `dup`.

use std::time::Duration;

use nft::script::{DataType, Elem, Expr, Family, Hook, Ident, IpFamily, Script, SetDecl, Stmt};
use nft::{Error, Nft};

fn id(s: &str) -> Ident {
    Ident::new(s).expect("ident")
}

#[test]
fn a_script_applies_all_or_nothing_with_map_statements_and_dup() -> anyhow::Result<()> {
    let lab = lab::Lab::new("nft_script")?;
    let host = lab.host("h")?;
    let nft = Nft::new(Some(&host.netns_path()))?;
    let (t, fam) = (id("vznet_script_test"), Family::Ip);
    let mut s = Script::new();
    s.remove_table(fam, &t);
    s.add_table(fam, &t);
    s.add_set(
        fam,
        &t,
        &id("persist"),
        &SetDecl {
            key: vec![DataType::Ipv4Addr],
            data: Some(DataType::Mark),
            dynamic: true,
            timeout: Some(Duration::from_secs(30)),
        },
    );
    s.add_set(
        fam,
        &t,
        &id("addr"),
        &SetDecl::map(DataType::Mark, DataType::Ipv4Addr),
    );
    let chain = id("pre");
    s.add_chain(
        fam,
        &t,
        &chain,
        Some(Hook {
            nat: false,
            hook: "prerouting",
            priority: -300,
        }),
    );
    s.add_rule(
        fam,
        &t,
        &chain,
        &[
            Stmt::Is(Expr::Daddr(IpFamily::V4), Expr::Addr("10.9.0.1".parse()?)),
            Stmt::Set(
                Expr::MetaMark,
                Expr::lookup(Expr::Saddr(IpFamily::V4), &id("persist")),
            ),
            Stmt::Update {
                set: id("persist"),
                key: Expr::Saddr(IpFamily::V4),
                timeout: None,
                data: Some(Expr::MetaMark),
            },
            Stmt::Dup(Expr::lookup(Expr::MetaMark, &id("addr"))),
            Stmt::Drop,
        ],
    );
    s.add_elements(
        fam,
        &t,
        &id("addr"),
        &[Elem {
            key: Expr::Num(7),
            data: Some(Expr::Addr("10.9.1.7".parse()?)),
        }],
    );
    nft.apply_script(&s)?;
    let listing = host.run(["nft", "list", "table", "ip", "vznet_script_test"])?;
    for want in [
        "flags dynamic,timeout",
        "update @persist { ip saddr : meta mark }",
        "dup to meta mark map @addr",
        "0x00000007 : 10.9.1.7",
    ] {
        anyhow::ensure!(listing.contains(want), "{want:?} not in\n{listing}");
    }
    // A bad command fails the whole script: the element before it stays out.
    let mut bad = Script::new();
    bad.add_elements(
        fam,
        &t,
        &id("addr"),
        &[Elem {
            key: Expr::Num(8),
            data: Some(Expr::Addr("10.9.1.8".parse()?)),
        }],
    );
    bad.add_rule(fam, &t, &id("no_such_chain"), &[Stmt::Drop]);
    let err = nft.apply_script(&bad);
    anyhow::ensure!(matches!(err, Err(Error::Refused(_))), "{err:?}");
    let listing = host.run(["nft", "list", "table", "ip", "vznet_script_test"])?;
    anyhow::ensure!(!listing.contains("10.9.1.8"), "half-applied:\n{listing}");
    let mut gone = Script::new();
    gone.remove_table(fam, &t);
    nft.apply_script(&gone)?;
    Ok(())
}
