//! Policy routing in `host.toml`: route tables by number or by name, `[[rule]]`,
//! and the host's `[venet]` section (where routed VEs are announced).

use std::fmt;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A routing table id. Written as a number (`100`) or as a name that
/// `/etc/iproute2/rt_tables` (or `rt_tables.d/*.conf`) defines, resolved when
/// the config is read; `main` (254) and `default` (253) are always known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouteTable(pub u32);

impl RouteTable {
    /// The main table, where routes go unless they name one.
    pub const MAIN: RouteTable = RouteTable(254);
    /// The kernel's local table: addresses of this host; never vznet's.
    pub const LOCAL: RouteTable = RouteTable(255);

    fn check(id: u32, written: &str) -> Result<RouteTable, String> {
        match id {
            0 => Err(format!(
                "table {written} is 0 (unspec), which names no table: use 1..4294967295"
            )),
            255 => Err(format!(
                "table {written} is the kernel's local table (255): vznet does not manage it"
            )),
            _ => Ok(RouteTable(id)),
        }
    }
}

impl fmt::Display for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            254 => f.write_str("main"),
            253 => f.write_str("default"),
            n => write!(f, "{n}"),
        }
    }
}

impl Serialize for RouteTable {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for RouteTable {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RouteTable, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Id(i64),
            Name(String),
        }
        let raw = Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a table: a number or a name from rt_tables")
        })?;
        let table = match raw {
            Raw::Id(n) => match u32::try_from(n) {
                Ok(id) => RouteTable::check(id, &n.to_string()),
                Err(_) => Err(format!("table {n} is out of range 1..4294967295")),
            },
            Raw::Name(name) => match table_id(&name) {
                Some(id) => RouteTable::check(id, &format!("{name:?}")),
                None => Err(format!(
                    "unknown table {name:?}: not a number and not defined in {} (or {}/*.conf)",
                    RT_TABLES, RT_TABLES_D
                )),
            },
        };
        table.map_err(serde::de::Error::custom)
    }
}

/// iproute2's table names.
const RT_TABLES: &str = "/etc/iproute2/rt_tables";
/// Further names, one file each.
const RT_TABLES_D: &str = "/etc/iproute2/rt_tables.d";

/// The id of a table name: a number as written, a name iproute2 knows (its
/// files are read on each call: the config names few tables).
pub fn table_id(name: &str) -> Option<u32> {
    if let Some(n) = parse_number(name) {
        return Some(n);
    }
    match name {
        "main" => return Some(254),
        "default" => return Some(253),
        "local" => return Some(255),
        _ => {}
    }
    let mut files = vec![Path::new(RT_TABLES).to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(RT_TABLES_D) {
        let mut more: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "conf"))
            .collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|text| lookup_in(&text, name))
}

/// Finds `name` in rt_tables text: lines `ID NAME`, `#` comments.
pub fn lookup_in(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or("");
        let mut words = line.split_whitespace();
        let id = parse_number(words.next()?)?;
        (words.next()? == name).then_some(id)
    })
}

/// Decimal or `0x` hex.
fn parse_number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// An address or prefix a rule matches (`10.1.0.0/16`; a bare address is a /32
/// or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Selector(pub IpNet);

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Selector, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<IpNet>()
            .map(|n| Selector(n.trunc()))
            .or_else(|_| s.parse::<IpAddr>().map(|a| Selector(IpNet::from(a))))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid prefix {s:?}: expected an address or a CIDR prefix"
                ))
            })
    }
}

/// A firewall mark and the bits of it that count: `16`, `"0x10"` or
/// `"0x10/0xff"` (`ip rule ... fwmark 0x10/0xff`). Without a mask every bit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fwmark {
    /// The mark.
    pub mark: u32,
    /// The mask.
    pub mask: u32,
}

impl fmt::Display for Fwmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mask == u32::MAX {
            write!(f, "{:#x}", self.mark)
        } else {
            write!(f, "{:#x}/{:#x}", self.mark, self.mask)
        }
    }
}

/// Written as it is read: the mark alone, or `"0xMARK/0xMASK"`.
impl Serialize for Fwmark {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.mask == u32::MAX {
            s.serialize_u32(self.mark)
        } else {
            s.collect_str(self)
        }
    }
}

impl<'de> Deserialize<'de> for Fwmark {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fwmark, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        let bad = |s: &str| {
            serde::de::Error::custom(format!(
                "invalid fwmark {s}: expected MARK or \"MARK/MASK\" (decimal or 0x hex, 32 bits)"
            ))
        };
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a fwmark: 16 or \"0x10/0xff\""))?
        {
            Raw::Int(n) => u32::try_from(n)
                .map(|mark| Fwmark {
                    mark,
                    mask: u32::MAX,
                })
                .map_err(|_| bad(&n.to_string())),
            Raw::Str(s) => {
                let (mark, mask) = match s.split_once('/') {
                    Some((m, k)) => (parse_number(m.trim()), parse_number(k.trim())),
                    None => (parse_number(s.trim()), Some(u32::MAX)),
                };
                match (mark, mask) {
                    (Some(mark), Some(mask)) => Ok(Fwmark { mark, mask }),
                    _ => Err(bad(&format!("{s:?}"))),
                }
            }
        }
    }
}

/// A policy routing rule (`ip rule`): packets that match every selector given
/// are looked up in `table`. vznet owns the rules it makes (protocol 249).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Order among all rules, lower first; 0 is the kernel's local rule. Required:
    /// without it the kernel numbers rules by creation order, which a concurrent
    /// apply does not fix.
    pub priority: u32,
    /// Source prefix.
    #[serde(default)]
    pub from: Option<Selector>,
    /// Destination prefix.
    #[serde(default)]
    pub to: Option<Selector>,
    /// Input interface (`lo` for locally generated traffic).
    #[serde(default)]
    pub iif: Option<String>,
    /// Output interface (for sockets bound to it).
    #[serde(default)]
    pub oif: Option<String>,
    /// Firewall mark, optionally masked.
    #[serde(default)]
    pub fwmark: Option<Fwmark>,
    /// The table to look up.
    pub table: RouteTable,
}

impl Rule {
    /// The address families the rule applies to: those of `from`/`to`, both
    /// when it names no address.
    pub fn families(&self) -> Vec<bool> {
        match (self.from, self.to) {
            (Some(s), _) | (None, Some(s)) => vec![s.0.addr().is_ipv4()],
            (None, None) => vec![true, false],
        }
    }

    /// Problems with the rule's fields, as (key, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.priority == 0 {
            out.push((
                "priority",
                "priority 0 is the kernel's local rule: use 1..4294967295".to_string(),
            ));
        }
        if let (Some(f), Some(t)) = (self.from, self.to) {
            if f.0.addr().is_ipv4() != t.0.addr().is_ipv4() {
                out.push((
                    "to",
                    format!("{} and from {} are of different families", t.0, f.0),
                ));
            }
        }
        if let Some(m) = self.fwmark {
            if m.mark == 0 && m.mask == u32::MAX {
                out.push((
                    "fwmark",
                    "fwmark 0 without a mask matches every packet: give \"0/MASK\" or leave it out"
                        .to_string(),
                ));
            }
            if m.mark & !m.mask != 0 {
                out.push((
                    "fwmark",
                    format!("fwmark {m}: the mark has bits outside its mask"),
                ));
            }
        }
        out
    }
}

/// `[venet]` in `host.toml`: how the LAN reaches routed VEs.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostVenet {
    /// Host interfaces (OpenVZ's NEIGHBOUR_DEVS) that answer ARP and neighbour
    /// solicitations for every venet address of every wired VE, through one
    /// proxy neighbour entry per address (not `proxy_arp`, which answers for
    /// everything routed elsewhere).
    #[serde(default)]
    pub neighbour_devs: Vec<String>,
}

/// Problems with `[[rule]]` and `[venet]` of `host.toml`, located by key.
pub(super) fn host_problems(host: &super::HostConfig) -> Vec<(super::KeyPath, String)> {
    use super::KeyPath;
    let mut out = Vec::new();
    let mut seen: Vec<(&Rule, KeyPath)> = Vec::new();
    for (i, rule) in host.rule.iter().enumerate() {
        let p = KeyPath::key("rule").i(i);
        for (key, why) in rule.problems() {
            out.push((p.k(key), why));
        }
        for (key, name) in [("iif", &rule.iif), ("oif", &rule.oif)] {
            if let Some(Err(why)) = name.as_deref().map(super::validate::check_ifname) {
                out.push((p.k(key), why));
            }
        }
        if let Some((_, first)) = seen.iter().find(|(r, _)| *r == rule) {
            out.push((
                p.k("priority"),
                format!("the same rule is already at {first}: the kernel would refuse the second"),
            ));
        } else {
            seen.push((rule, p.clone()));
        }
    }
    let devs = &host.venet.neighbour_devs;
    for (i, dev) in devs.iter().enumerate() {
        let p = KeyPath::key("venet").k("neighbour_devs").i(i);
        if let Err(why) = super::validate::check_ifname(dev) {
            out.push((p, why));
        } else if devs[..i].contains(dev) {
            out.push((p, format!("{dev:?} is listed twice")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        table: Option<RouteTable>,
        fwmark: Option<Fwmark>,
        from: Option<Selector>,
    }

    fn parse(s: &str) -> Result<T, String> {
        toml::from_str::<T>(s).map_err(|e| e.message().to_string())
    }

    #[test]
    fn tables_by_number_and_builtin_name_and_refusals() {
        assert_eq!(
            parse("table = 100").map(|t| t.table),
            Ok(Some(RouteTable(100)))
        );
        assert_eq!(
            parse("table = \"main\"").map(|t| t.table),
            Ok(Some(RouteTable::MAIN))
        );
        assert_eq!(
            parse("table = \"0x10\"").map(|t| t.table),
            Ok(Some(RouteTable(16)))
        );
        for (bad, says) in [
            ("table = 0", "0 (unspec)"),
            ("table = \"local\"", "local table"),
            ("table = -1", "out of range"),
            ("table = \"no-such-table-anywhere\"", "unknown table"),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn rt_tables_lines_with_comments_and_hex() {
        let text = "# reserved\n255\tlocal\n254 main\n#1 inr.ruhep\n0x64 vzpriv # VEs\n 7  seven\n";
        assert_eq!(lookup_in(text, "vzpriv"), Some(100));
        assert_eq!(lookup_in(text, "seven"), Some(7));
        assert_eq!(lookup_in(text, "inr.ruhep"), None);
        assert_eq!(lookup_in(text, "vz"), None);
    }

    #[test]
    fn fwmarks_with_and_without_masks() {
        let m = |s: &str| parse(s).map(|t| t.fwmark.expect("fwmark"));
        assert_eq!(
            m("fwmark = 16"),
            Ok(Fwmark {
                mark: 16,
                mask: u32::MAX
            })
        );
        assert_eq!(
            m("fwmark = \"0x10/0xff\""),
            Ok(Fwmark {
                mark: 16,
                mask: 255
            })
        );
        assert_eq!(
            m("fwmark = \"3\""),
            Ok(Fwmark {
                mark: 3,
                mask: u32::MAX
            })
        );
        // Written as read.
        for text in ["fwmark = 16", "fwmark = \"0x10/0xff\""] {
            let f = m(text).expect("parses");
            #[derive(Serialize)]
            struct W {
                fwmark: Fwmark,
            }
            let again = toml::to_string(&W { fwmark: f }).expect("serializes");
            assert_eq!(m(&again), Ok(f), "{again}");
        }
        for bad in [
            "fwmark = \"x\"",
            "fwmark = \"1/\"",
            "fwmark = 4294967296",
            "fwmark = -2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let r = Rule {
            priority: 0,
            from: None,
            to: None,
            iif: None,
            oif: None,
            fwmark: Some(Fwmark {
                mark: 0x11,
                mask: 0x10,
            }),
            table: RouteTable(5),
        };
        let keys: Vec<&str> = r.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["priority", "fwmark"]);
        assert_eq!(r.families(), [true, false]);
    }

    #[test]
    fn selectors_take_addresses_and_prefixes() {
        let s = |x: &str| parse(x).map(|t| t.from.expect("from").0.to_string());
        assert_eq!(s("from = \"10.1.2.3\""), Ok("10.1.2.3/32".into()));
        assert_eq!(s("from = \"10.1.2.3/16\""), Ok("10.1.0.0/16".into()));
        assert_eq!(s("from = \"fd00::1\""), Ok("fd00::1/128".into()));
        assert!(parse("from = \"10.1\"").is_err());
    }
}
