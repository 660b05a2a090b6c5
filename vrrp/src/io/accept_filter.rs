//! Accept_Mode enforced (RFC 5798 §6.4.3): a Master that is not the address owner and
//! runs without `accept` "MUST NOT accept packets addressed to the IPvX address(es)
//! associated with the virtual router". It still answers ARP and Neighbor Discovery
//! for them (or nobody could reach it as a router), and hears VRRP.
//!
//! One nftables table per process, `inet vznet_vrrp`, holds static rules over two sets
//! of addresses; an instance adds its addresses before it puts them on an interface
//! and removes them after it took them off, so there is never a moment it accepts:
//!
//! ```text
//! chain input { type filter hook input priority -1; policy accept;
//!     meta l4proto 112 accept
//!     icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept
//!     ip daddr @drop4 drop
//!     ip6 daddr @drop6 drop }
//! ```
//!
//! ARP is not IP: the inet family never sees it. Priority -1 runs before a default
//! filter chain, as keepalived's table does. Transactions run on the `nft` crate's
//! thread (libnftables), reached through `spawn_blocking`: a Master's adverts never
//! wait for them.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use nft::matching::{
    anonymous_set, drop_table, elements, filter_chain, fresh_table, is, meta, named_set, number,
    payload, rule, set_ref, value,
};
use nft::schema::batch::Batch;
use nft::schema::expr::MetaKey;
use nft::schema::schema::SetType;
use nft::schema::stmt::Statement;
use nft::schema::types::{NfFamily, NfHook};

use super::Error;

/// The table's name.
pub const TABLE: &str = "vznet_vrrp";
const CHAIN: &str = "input";
const DROP4: &str = "drop4";
const DROP6: &str = "drop6";
/// IP protocol number of VRRP.
const VRRP: u32 = 112;

/// The process's filter; cheap to clone. The table goes when the last clone does.
#[derive(Debug, Clone)]
pub struct AcceptFilter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nft: nft::Nft,
    /// Addresses in the sets now (a delete of an absent element fails the batch).
    present: Mutex<BTreeSet<IpAddr>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let mut b = Batch::new();
        drop_table(&mut b, NfFamily::INet, TABLE);
        if let Err(e) = self.nft.apply(&b.to_nftables()) {
            tracing::warn!(table = TABLE, error = %e, "cannot remove the accept-mode table");
        }
    }
}

/// The table, empty, as a batch.
fn ruleset() -> Batch<'static> {
    let f = NfFamily::INet;
    let mut b = Batch::new();
    fresh_table(&mut b, f, TABLE);
    b.add(named_set(f, TABLE, DROP4, SetType::Ipv4Addr));
    b.add(named_set(f, TABLE, DROP6, SetType::Ipv6Addr));
    b.add(filter_chain(f, TABLE, CHAIN, NfHook::Input, -1));
    let accept = || Statement::Accept(None);
    b.add(rule(
        f,
        TABLE,
        CHAIN,
        vec![is(meta(MetaKey::L4proto), number(VRRP)), accept()],
    ));
    b.add(rule(
        f,
        TABLE,
        CHAIN,
        vec![
            is(
                payload("icmpv6", "type"),
                anonymous_set(vec![
                    value("nd-neighbor-solicit"),
                    value("nd-neighbor-advert"),
                ]),
            ),
            accept(),
        ],
    ));
    for (proto, set) in [("ip", DROP4), ("ip6", DROP6)] {
        b.add(rule(
            f,
            TABLE,
            CHAIN,
            vec![
                is(payload(proto, "daddr"), set_ref(set)),
                Statement::Drop(None),
            ],
        ));
    }
    b
}

impl AcceptFilter {
    /// Starts the nftables executor in the caller's netns and (re)creates the table
    /// empty: a table left by a killed run must not keep dropping.
    pub fn new() -> Result<AcceptFilter, Error> {
        let nft = nft::Nft::new(None).map_err(Error::Nftables)?;
        nft.apply(&ruleset().to_nftables())
            .map_err(Error::Nftables)?;
        Ok(AcceptFilter {
            inner: Arc::new(Inner {
                nft,
                present: Mutex::new(BTreeSet::new()),
            }),
        })
    }

    /// Drops traffic to `addresses` from now on.
    pub async fn drop_traffic_to(&self, addresses: Vec<IpAddr>) -> Result<(), Error> {
        self.edit(addresses, true).await
    }

    /// Accepts traffic to `addresses` again.
    pub async fn accept_traffic_to(&self, addresses: Vec<IpAddr>) -> Result<(), Error> {
        self.edit(addresses, false).await
    }

    async fn edit(&self, addresses: Vec<IpAddr>, add: bool) -> Result<(), Error> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.edit(&addresses, add))
            .await
            .map_err(|e| Error::Nftables(nft::Error::NoBackend(e.to_string())))?
    }
}

impl Inner {
    /// One transaction of element edits; the set of present addresses follows.
    fn edit(&self, addresses: &[IpAddr], add: bool) -> Result<(), Error> {
        let mut present = self.present.lock().unwrap_or_else(PoisonError::into_inner);
        let todo: Vec<IpAddr> = addresses
            .iter()
            .copied()
            .filter(|a| present.contains(a) != add)
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let mut b = Batch::new();
        for (set, v4) in [(DROP4, true), (DROP6, false)] {
            let items: Vec<_> = todo
                .iter()
                .filter(|a| a.is_ipv4() == v4)
                .map(|a| value(a.to_string()))
                .collect();
            if items.is_empty() {
                continue;
            }
            let e = elements(NfFamily::INet, TABLE, set, items);
            if add {
                b.add(e);
            } else {
                b.delete(e);
            }
        }
        self.nft.apply(&b.to_nftables()).map_err(Error::Nftables)?;
        for a in todo {
            if add {
                present.insert(a);
            } else {
                present.remove(&a);
            }
        }
        Ok(())
    }
}
