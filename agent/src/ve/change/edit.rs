//! `--save`: a change applied to the VE file's document, keeping its
//! comments and layout.

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use toml_edit::{value, Array, ArrayOfTables, DocumentMut, Item, Table, Value};

use super::Change;

impl Change {
    /// Applies to a VE file's document, keeping its comments and layout.
    pub fn edit(&self, doc: &mut DocumentMut, id: u32) -> Result<()> {
        match self {
            Change::NetifAdd { netif } => {
                let n = netifs(doc).map_or(0, |a| a.len());
                let mut t = Table::new();
                t.insert("name", value(netif.name.as_str()));
                if let Some(m) = netif.mac {
                    t.insert("mac", value(m.to_string()));
                }
                let host = netif
                    .host_name
                    .clone()
                    .unwrap_or_else(|| format!("veth{id}.{n}"));
                t.insert("host_name", value(host));
                if let Some(m) = netif.host_mac {
                    t.insert("host_mac", value(m.to_string()));
                }
                if let Some(b) = &netif.bridge {
                    t.insert("bridge", value(b.as_str()));
                }
                if !netif.addresses.is_empty() {
                    let a: Array = netif.addresses.iter().map(ToString::to_string).collect();
                    t.insert("addresses", value(a));
                }
                if let Some(gw) = netif.gateway {
                    t.insert("gateway", value(gw.to_string()));
                }
                match doc.get_mut("netif") {
                    Some(Item::ArrayOfTables(a)) => a.push(t),
                    None => {
                        let mut a = ArrayOfTables::new();
                        a.push(t);
                        doc.insert("netif", Item::ArrayOfTables(a));
                    }
                    Some(_) => bail!("`netif` is not an array of tables ([[netif]])"),
                }
            }
            Change::NetifDel { name } => {
                let Some(Item::ArrayOfTables(a)) = doc.get_mut("netif") else {
                    return Ok(());
                };
                let pos = a
                    .iter()
                    .position(|t| t.get("name").and_then(Item::as_str) == Some(name.as_str()));
                if let Some(p) = pos {
                    for n in p + 1..a.len() {
                        if let Some(t) = a.get_mut(n) {
                            if !t.contains_key("host_name") {
                                t.insert("host_name", value(format!("veth{id}.{n}")));
                            }
                        }
                    }
                    a.remove(p);
                    if a.is_empty() {
                        doc.remove("netif");
                    }
                }
            }
            Change::IpAdd { ip } => {
                if doc.get("venet").is_none() {
                    doc.insert("venet", Item::Table(Table::new()));
                }
                let venet = doc
                    .get_mut("venet")
                    .and_then(Item::as_table_like_mut)
                    .context("`venet` is not a table")?;
                if venet.get("addresses").is_none() {
                    venet.insert("addresses", value(Array::new()));
                }
                let addrs = venet
                    .get_mut("addresses")
                    .and_then(Item::as_array_mut)
                    .context("`venet.addresses` is not an array")?;
                let s = ip.to_string();
                if !addrs.iter().any(|a| a.as_str() == Some(s.as_str())) {
                    addrs.push(s);
                }
            }
            Change::IpDelAll => {
                doc.remove("venet");
            }
            Change::NetifIpAdd { netif, net } => {
                let addrs = netif_array(doc, netif, "addresses")?;
                if !addrs.iter().any(|a| same_addr(a, net.addr())) {
                    addrs.push(net.to_string());
                }
            }
            Change::NetifIpDel { netif, ip } => {
                netif_array(doc, netif, "addresses")?.retain(|a| !same_addr(a, *ip));
            }
            Change::NetifIpDelAll { netif } => {
                netif_table(doc, netif)?.remove("addresses");
            }
            Change::Gateway {
                netif,
                ipv6,
                gateway,
            } => {
                let t = netif_table(doc, netif)?;
                let old = |k: &str| {
                    t.get(k)
                        .and_then(Item::as_str)
                        .and_then(|v| v.parse::<IpAddr>().ok())
                };
                let (g, g6) = super::gateways(old("gateway"), old("gateway6"), *ipv6, *gateway);
                for (key, v) in [("gateway", g), ("gateway6", g6)] {
                    match v {
                        Some(v) => set(t, key, v.to_string().into()),
                        None => {
                            t.remove(key);
                        }
                    }
                }
            }
            Change::Hostname { hostname } => set(doc, "hostname", hostname.as_str().into()),
            Change::Nameservers { nameservers } => {
                let a: Array = nameservers.iter().map(ToString::to_string).collect();
                set(doc, "nameservers", Value::Array(a));
            }
            Change::Search { domains } => {
                let a: Array = domains.iter().map(String::as_str).collect();
                set(doc, "search", Value::Array(a));
            }
            Change::Onboot { onboot } => set(doc, "onboot", (*onboot).into()),
            Change::BootOrder { boot_order } => match boot_order {
                Some(n) => set(doc, "boot_order", i64::from(*n).into()),
                None => {
                    doc.remove("boot_order");
                }
            },
            Change::IpDel { ip } => {
                let s = ip.to_string();
                let Some(venet) = doc.get_mut("venet").and_then(Item::as_table_like_mut) else {
                    return Ok(());
                };
                let empty = match venet.get_mut("addresses").and_then(Item::as_array_mut) {
                    Some(addrs) => {
                        addrs.retain(|a| {
                            a.as_str()
                                .and_then(|a| a.parse::<IpAddr>().ok())
                                .is_none_or(|a| a.to_string() != s)
                        });
                        addrs.is_empty()
                    }
                    None => true,
                };
                if empty {
                    doc.remove("venet");
                }
            }
        }
        Ok(())
    }
}

fn netifs(doc: &DocumentMut) -> Option<&ArrayOfTables> {
    doc.get("netif").and_then(Item::as_array_of_tables)
}

/// Sets `key` to `new`, keeping the comment and spacing an old value had.
fn set(t: &mut Table, key: &str, mut new: Value) {
    match t.get_mut(key).and_then(Item::as_value_mut) {
        Some(old) => {
            *new.decor_mut() = old.decor().clone();
            *old = new;
        }
        None => {
            t.insert(key, Item::Value(new));
        }
    }
}

/// The `[[netif]]` table named `name`.
fn netif_table<'a>(doc: &'a mut DocumentMut, name: &str) -> Result<&'a mut Table> {
    let Some(Item::ArrayOfTables(a)) = doc.get_mut("netif") else {
        bail!("the file has no [[netif]] {name:?}");
    };
    a.iter_mut()
        .find(|t| t.get("name").and_then(Item::as_str) == Some(name))
        .with_context(|| format!("the file has no [[netif]] {name:?}"))
}

/// An array key of the `[[netif]]` named `netif`, made if missing.
fn netif_array<'a>(doc: &'a mut DocumentMut, netif: &str, key: &str) -> Result<&'a mut Array> {
    let t = netif_table(doc, netif)?;
    if t.get(key).is_none() {
        t.insert(key, value(Array::new()));
    }
    t.get_mut(key)
        .and_then(Item::as_array_mut)
        .with_context(|| format!("`{key}` of [[netif]] {netif:?} is not an array"))
}

/// Whether an `addresses` element (`"10.0.0.5/24"`) holds this address.
fn same_addr(v: &Value, ip: IpAddr) -> bool {
    v.as_str()
        .and_then(|s| s.split('/').next())
        .and_then(|a| a.parse::<IpAddr>().ok())
        .is_some_and(|a| a == ip)
}
