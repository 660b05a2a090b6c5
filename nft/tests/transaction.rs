//! Transactions run in the executor's netns, atomically.

use std::borrow::Cow;

use nft::schema::{
    batch::Batch,
    expr::Expression,
    schema::{Element, Map, NfListObject, SetType, SetTypeValue, Table},
    types::NfFamily,
};
use nft::{Error, Nft};

const TABLE: &str = "vznet_nft_test";

fn slot(n: u32, addr: &str) -> Expression<'static> {
    Expression::List(vec![
        Expression::Number(n),
        Expression::String(Cow::Owned(addr.to_string())),
    ])
}

fn element(elems: Vec<Expression<'static>>) -> NfListObject<'static> {
    NfListObject::Element(Element {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: "slots".into(),
        elem: elems.into(),
    })
}

fn listed_slots(host: &lab::Host) -> String {
    host.run(["nft", "list", "map", "ip", TABLE, "slots"])
        .unwrap_or_default()
}

#[test]
fn a_transaction_applies_in_its_netns_and_all_or_nothing() -> anyhow::Result<()> {
    let lab = lab::Lab::new("nft_transaction")?;
    let host = lab.host("h")?;
    let nft = Nft::new(Some(&host.netns_path()))?;

    let mut batch = Batch::new();
    batch.add(NfListObject::Table(Table {
        family: NfFamily::IP,
        name: TABLE.into(),
        handle: None,
    }));
    batch.add(NfListObject::Map(Box::new(Map {
        family: NfFamily::IP,
        table: TABLE.into(),
        name: "slots".into(),
        set_type: SetTypeValue::Single(SetType::Mark),
        map: SetTypeValue::Single(SetType::Ipv4Addr),
        ..Map::default()
    })));
    batch.add(element(vec![slot(0, "10.1.0.1"), slot(1, "10.1.0.2")]));
    nft.apply(&batch.to_nftables())?;

    let listed = listed_slots(&host);
    assert!(listed.contains("0x00000001 : 10.1.0.2"), "{listed}");
    // The root netns never saw the table.
    let root = std::process::Command::new("nft")
        .args(["list", "table", "ip", TABLE])
        .output()?;
    assert!(!root.status.success(), "table leaked into the root netns");

    // Second transaction: a valid add, then a delete of a missing element. The
    // kernel refuses the batch, so the valid add must not be there either.
    let mut batch = Batch::new();
    batch.add(element(vec![slot(2, "10.1.0.3")]));
    batch.delete(element(vec![Expression::Number(77)]));
    match nft.apply(&batch.to_nftables()) {
        Err(Error::Refused(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected a refused transaction, got {other:?}"),
    }
    let listed = listed_slots(&host);
    assert!(!listed.contains("10.1.0.3"), "half-applied: {listed}");

    // A query returns the kernel's view as JSON.
    let mut list = Batch::new();
    list.add_cmd(nft::schema::schema::NfCmd::List(NfListObject::Map(
        Box::new(Map {
            family: NfFamily::IP,
            table: TABLE.into(),
            name: "slots".into(),
            ..Map::default()
        }),
    )));
    let answer = nft.query(&list.to_nftables())?;
    let text = answer.to_string();
    assert!(
        text.contains("10.1.0.1") && text.contains("10.1.0.2"),
        "{text}"
    );
    Ok(())
}

#[test]
fn a_missing_netns_is_a_clear_error() {
    let err = Nft::new(Some(std::path::Path::new("/run/netns/vznet-no-such-ns")))
        .expect_err("a missing netns must fail");
    assert!(err.to_string().contains("vznet-no-such-ns"), "{err}");
}
