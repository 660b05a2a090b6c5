//! Typed nftables scripts in nft's native syntax.
//!
//! libnftables 1.0.6 (Debian 12) cannot read every statement from JSON: the map
//! statement (`update @m { ip saddr timeout 30s : ct mark }`, a dynamic map written
//! from the packet path) has no JSON form, nor do the `dynamic` set flag and
//! `dup` with a map. A [`Script`] is the same kind of transaction in the native
//! syntax, rendered from typed values only: addresses, numbers, durations and
//! [`Ident`]s checked against a fixed alphabet. No caller string reaches the
//! parser, so nothing in a config can become nft syntax.

use std::fmt::{self, Display, Write};
use std::net::IpAddr;
use std::time::Duration;

/// A table, chain, set or map name: `[a-z_][a-z0-9_]*`, at most 63 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// `name` if it is a valid identifier.
    pub fn new(name: impl Into<String>) -> Result<Ident, crate::Error> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() < 64
            && name
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Ident(name))
        } else {
            Err(crate::Error::Refused(format!(
                "{name:?} is not an nftables identifier"
            )))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `ip`.
    Ip,
    /// `ip6`.
    Ip6,
    /// `inet`.
    Inet,
}

impl Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
            Family::Inet => "inet",
        })
    }
}

/// A key or value type of a set or map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `ipv4_addr`.
    Ipv4Addr,
    /// `ipv6_addr`.
    Ipv6Addr,
    /// `mark` (32 bits).
    Mark,
    /// `inet_service` (a port).
    InetService,
    /// A 32-bit hash (`jhash ... mod N`); as a map key its data must be a
    /// mark (declared with `typeof numgen random mod 2 : meta mark`).
    Hash32,
}

impl Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataType::Ipv4Addr => "ipv4_addr",
            DataType::Ipv6Addr => "ipv6_addr",
            DataType::Mark => "mark",
            DataType::InetService => "inet_service",
            DataType::Hash32 => "integer",
        })
    }
}

/// Transport protocol of a payload match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    /// `tcp`.
    Tcp,
    /// `udp`.
    Udp,
}

impl Display for L4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            L4::Tcp => "tcp",
            L4::Udp => "udp",
        })
    }
}

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// `ip saddr` / `ip6 saddr`.
    Saddr(IpFamily),
    /// `ip daddr` / `ip6 daddr`.
    Daddr(IpFamily),
    /// `tcp sport` / `udp sport`.
    Sport(L4),
    /// `tcp dport` / `udp dport`.
    Dport(L4),
    /// `ct mark`.
    CtMark,
    /// `meta mark`.
    MetaMark,
    /// `meta nfproto`.
    NfProto,
    /// `meta l4proto`.
    L4Proto,
    /// `ct status`.
    CtStatus,
    /// `ct state`.
    CtState,
    /// A number (rendered in hex).
    Num(u32),
    /// An address.
    Addr(IpAddr),
    /// A port.
    Port(u16),
    /// A bare keyword from a fixed set (`ipv4`, `tcp`, `dnat`, `new`, ...).
    Word(&'static str),
    /// `numgen random|inc mod M offset O`.
    Numgen {
        /// `inc` (round robin) rather than `random`.
        inc: bool,
        /// Modulus.
        modulus: u32,
        /// Offset.
        offset: u32,
    },
    /// `jhash EXPR mod M seed S offset O`.
    Jhash {
        /// What is hashed.
        of: Box<Expr>,
        /// Modulus.
        modulus: u32,
        /// Seed.
        seed: u32,
        /// Offset.
        offset: u32,
    },
    /// `EXPR & MASK`.
    And(Box<Expr>, Box<Expr>),
    /// `A . B . ...`.
    Concat(Vec<Expr>),
    /// `KEY map @NAME`.
    Lookup(Box<Expr>, Ident),
    /// `@NAME`.
    SetRef(Ident),
    /// `{ A, B, ... }`.
    Anon(Vec<Expr>),
}

/// `ip` or `ip6` for payload expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// The family of `a`.
    pub fn of(a: IpAddr) -> IpFamily {
        if a.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        }
    }

    fn word(self) -> &'static str {
        match self {
            IpFamily::V4 => "ip",
            IpFamily::V6 => "ip6",
        }
    }
}

impl Expr {
    /// `KEY map @NAME`.
    pub fn lookup(key: Expr, map: &Ident) -> Expr {
        Expr::Lookup(Box::new(key), map.clone())
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Saddr(fam) => write!(f, "{} saddr", fam.word()),
            Expr::Daddr(fam) => write!(f, "{} daddr", fam.word()),
            Expr::Sport(p) => write!(f, "{p} sport"),
            Expr::Dport(p) => write!(f, "{p} dport"),
            Expr::CtMark => f.write_str("ct mark"),
            Expr::MetaMark => f.write_str("meta mark"),
            Expr::NfProto => f.write_str("meta nfproto"),
            Expr::L4Proto => f.write_str("meta l4proto"),
            Expr::CtStatus => f.write_str("ct status"),
            Expr::CtState => f.write_str("ct state"),
            Expr::Num(n) => write!(f, "{n:#x}"),
            Expr::Addr(a) => write!(f, "{a}"),
            Expr::Port(p) => write!(f, "{p}"),
            Expr::Word(w) => f.write_str(w),
            Expr::Numgen {
                inc,
                modulus,
                offset,
            } => write!(
                f,
                "numgen {} mod {modulus} offset {offset:#x}",
                if *inc { "inc" } else { "random" }
            ),
            Expr::Jhash {
                of,
                modulus,
                seed,
                offset,
            } => write!(
                f,
                "jhash {of} mod {modulus} seed {seed:#x} offset {offset:#x}"
            ),
            Expr::And(a, b) => write!(f, "{a} & {b}"),
            Expr::Concat(parts) => join(f, parts, " . "),
            Expr::Lookup(key, map) => write!(f, "{key} map @{map}"),
            Expr::SetRef(name) => write!(f, "@{name}"),
            Expr::Anon(items) => {
                f.write_str("{ ")?;
                join(f, items, ", ")?;
                f.write_str(" }")
            }
        }
    }
}

fn join(f: &mut fmt::Formatter<'_>, items: &[Expr], sep: &str) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

/// A statement of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Stmt {
    /// `LEFT RIGHT` (equality or set membership).
    Is(Expr, Expr),
    /// `LEFT != RIGHT`.
    IsNot(Expr, Expr),
    /// `KEY set VALUE` (`ct mark set ...`, `meta mark set ...`).
    Set(Expr, Expr),
    /// `update @MAP { KEY [timeout T] [: DATA] }`: adds the element or refreshes
    /// its timeout (an existing element keeps its data).
    Update {
        /// The set or map.
        set: Ident,
        /// Key.
        key: Expr,
        /// Element timeout (None: the set's default).
        timeout: Option<Duration>,
        /// Data, for a map.
        data: Option<Expr>,
    },
    /// `dnat ip|ip6 to ADDR [: PORT]`.
    Dnat {
        /// Address family.
        family: IpFamily,
        /// Address.
        addr: Expr,
        /// Port (None: keep the packet's).
        port: Option<Expr>,
    },
    /// `dup to ADDR` (ip and ip6 tables only): a copy goes to ADDR as next hop.
    Dup(Expr),
    /// `jump CHAIN`.
    Jump(Ident),
    /// `goto CHAIN`.
    Goto(Ident),
    /// `notrack`.
    Notrack,
    /// `masquerade`.
    Masquerade,
    /// `reject with tcp reset`.
    TcpReset,
    /// `counter`.
    Counter,
    /// `drop`.
    Drop,
    /// `accept`.
    Accept,
}

impl Display for Stmt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stmt::Is(l, r) => write!(f, "{l} {r}"),
            Stmt::IsNot(l, r) => write!(f, "{l} != {r}"),
            Stmt::Set(k, v) => write!(f, "{k} set {v}"),
            Stmt::Update {
                set,
                key,
                timeout,
                data,
            } => {
                write!(f, "update @{set} {{ {key}")?;
                if let Some(t) = timeout {
                    write!(f, " timeout {}", duration(*t))?;
                }
                if let Some(d) = data {
                    write!(f, " : {d}")?;
                }
                f.write_str(" }")
            }
            Stmt::Dnat { family, addr, port } => {
                write!(f, "dnat {} to {addr}", family.word())?;
                if let Some(p) = port {
                    write!(f, " : {p}")?;
                }
                Ok(())
            }
            Stmt::Dup(addr) => write!(f, "dup to {addr}"),
            Stmt::Jump(c) => write!(f, "jump {c}"),
            Stmt::Goto(c) => write!(f, "goto {c}"),
            Stmt::Notrack => f.write_str("notrack"),
            Stmt::Masquerade => f.write_str("masquerade"),
            Stmt::TcpReset => f.write_str("reject with tcp reset"),
            Stmt::Counter => f.write_str("counter"),
            Stmt::Drop => f.write_str("drop"),
            Stmt::Accept => f.write_str("accept"),
        }
    }
}

/// nft's duration syntax, in whole milliseconds.
fn duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A base chain's hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hook {
    /// `filter` or `nat`.
    pub nat: bool,
    /// `prerouting`, `output`, `postrouting`, `forward` or `input`.
    pub hook: &'static str,
    /// Priority.
    pub priority: i32,
}

/// A set or map declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetDecl {
    /// Key type (several: a concatenation).
    pub key: Vec<DataType>,
    /// Value type, for a map.
    pub data: Option<DataType>,
    /// Written from the packet path (`update`).
    pub dynamic: bool,
    /// Default element timeout (also sets the `timeout` flag).
    pub timeout: Option<Duration>,
}

impl SetDecl {
    /// A plain map `key : data`.
    pub fn map(key: DataType, data: DataType) -> SetDecl {
        SetDecl {
            key: vec![key],
            data: Some(data),
            dynamic: false,
            timeout: None,
        }
    }

    /// A plain set of `key`.
    pub fn set(key: DataType) -> SetDecl {
        SetDecl {
            key: vec![key],
            data: None,
            dynamic: false,
            timeout: None,
        }
    }
}

/// An element of a set or map.
#[derive(Debug, Clone, PartialEq)]
pub struct Elem {
    /// Key.
    pub key: Expr,
    /// Value, for a map.
    pub data: Option<Expr>,
}

/// One transaction: commands in nft's native syntax, one per line.
#[derive(Debug, Clone, Default)]
pub struct Script {
    text: String,
    commands: usize,
}

impl Script {
    /// An empty script.
    pub fn new() -> Script {
        Script::default()
    }

    /// Commands in it.
    pub fn len(&self) -> usize {
        self.commands
    }

    /// Whether it has no command.
    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    /// The text libnftables parses.
    pub fn text(&self) -> &str {
        &self.text
    }

    fn line(&mut self, args: fmt::Arguments<'_>) {
        let _ = self.text.write_fmt(args);
        self.text.push('\n');
        self.commands += 1;
    }

    /// `add table`.
    pub fn add_table(&mut self, family: Family, table: &Ident) {
        self.line(format_args!("add table {family} {table}"));
    }

    /// Removes the table if it exists (adding first makes the delete never fail).
    pub fn remove_table(&mut self, family: Family, table: &Ident) {
        self.add_table(family, table);
        self.line(format_args!("delete table {family} {table}"));
    }

    /// `flush table`: every rule of every chain goes; sets, maps and their
    /// elements stay.
    pub fn flush_table(&mut self, family: Family, table: &Ident) {
        self.line(format_args!("flush table {family} {table}"));
    }

    /// `delete chain` (it must be empty and unreferenced by then).
    pub fn delete_chain(&mut self, family: Family, table: &Ident, chain: &Ident) {
        self.line(format_args!("delete chain {family} {table} {chain}"));
    }

    /// `delete set` / `delete map`.
    pub fn delete_set(&mut self, family: Family, table: &Ident, set: &Ident, map: bool) {
        let kind = if map { "map" } else { "set" };
        self.line(format_args!("delete {kind} {family} {table} {set}"));
    }

    /// `add chain`, a base chain when `hook` is given (policy accept).
    pub fn add_chain(&mut self, family: Family, table: &Ident, chain: &Ident, hook: Option<Hook>) {
        match hook {
            Some(h) => self.line(format_args!(
                "add chain {family} {table} {chain} {{ type {} hook {} priority {}; policy accept; }}",
                if h.nat { "nat" } else { "filter" },
                h.hook,
                h.priority
            )),
            None => self.line(format_args!("add chain {family} {table} {chain}")),
        }
    }

    /// `add set` or `add map`.
    pub fn add_set(&mut self, family: Family, table: &Ident, name: &Ident, decl: &SetDecl) {
        let key = decl
            .key
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" . ");
        // nft has no name for a plain 32-bit integer type: declare it by
        // an expression of that type.
        let hashed = decl.key == [DataType::Hash32];
        let mut body = match decl.data {
            Some(DataType::Mark) if hashed => "typeof numgen random mod 2 : meta mark;".to_string(),
            Some(d) => format!("type {key} : {d};"),
            None => format!("type {key};"),
        };
        let mut flags = Vec::new();
        if decl.dynamic {
            flags.push("dynamic");
        }
        if decl.timeout.is_some() {
            flags.push("timeout");
        }
        if !flags.is_empty() {
            let _ = write!(body, " flags {};", flags.join(","));
        }
        if let Some(t) = decl.timeout {
            let _ = write!(body, " timeout {};", duration(t));
        }
        let kind = if decl.data.is_some() { "map" } else { "set" };
        self.line(format_args!(
            "add {kind} {family} {table} {name} {{ {body} }}"
        ));
    }

    /// `add rule`.
    pub fn add_rule(&mut self, family: Family, table: &Ident, chain: &Ident, stmts: &[Stmt]) {
        let body = stmts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        self.line(format_args!("add rule {family} {table} {chain} {body}"));
    }

    /// `add element`; nothing for no elements.
    pub fn add_elements(&mut self, family: Family, table: &Ident, set: &Ident, elems: &[Elem]) {
        if elems.is_empty() {
            return;
        }
        let body = elems
            .iter()
            .map(|e| match &e.data {
                Some(d) => format!("{} : {d}", e.key),
                None => e.key.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ");
        self.line(format_args!(
            "add element {family} {table} {set} {{ {body} }}"
        ));
    }

    /// `delete element` by key; nothing for no keys.
    pub fn delete_elements(&mut self, family: Family, table: &Ident, set: &Ident, keys: &[Expr]) {
        if keys.is_empty() {
            return;
        }
        let body = keys
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.line(format_args!(
            "delete element {family} {table} {set} {{ {body} }}"
        ));
    }

    /// `flush set` / `flush map`: every element goes.
    pub fn flush_set(&mut self, family: Family, table: &Ident, set: &Ident, map: bool) {
        let kind = if map { "map" } else { "set" };
        self.line(format_args!("flush {kind} {family} {table} {set}"));
    }

    /// Appends another script's commands.
    pub fn extend(&mut self, other: Script) {
        self.text.push_str(&other.text);
        self.commands += other.commands;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Ident {
        Ident::new(s).expect("ident")
    }

    #[test]
    fn identifiers_take_only_a_fixed_alphabet() {
        assert!(Ident::new("slots_12").is_ok());
        for bad in [
            "",
            "Slots",
            "a b",
            "a;b",
            "1a",
            "x}",
            "a\"b",
            &"a".repeat(64),
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn renders_rules_sets_and_elements() {
        let (t, fam) = (id("vznet_lb"), Family::Inet);
        let mut s = Script::new();
        s.add_set(
            fam,
            &t,
            &id("persist_0"),
            &SetDecl {
                key: vec![DataType::Ipv4Addr],
                data: Some(DataType::Mark),
                dynamic: true,
                timeout: Some(Duration::from_secs(30)),
            },
        );
        s.add_rule(
            fam,
            &t,
            &id("svc_0"),
            &[
                Stmt::Set(
                    Expr::CtMark,
                    Expr::lookup(Expr::Saddr(IpFamily::V4), &id("persist_0")),
                ),
                Stmt::Is(Expr::CtMark, Expr::SetRef(id("live"))),
                Stmt::Update {
                    set: id("persist_0"),
                    key: Expr::Saddr(IpFamily::V4),
                    timeout: Some(Duration::from_millis(1500)),
                    data: Some(Expr::CtMark),
                },
                Stmt::Dnat {
                    family: IpFamily::V4,
                    addr: Expr::lookup(Expr::CtMark, &id("addr4")),
                    port: Some(Expr::lookup(Expr::CtMark, &id("port"))),
                },
            ],
        );
        s.add_elements(
            fam,
            &t,
            &id("addr4"),
            &[Elem {
                key: Expr::Num(0x7a5f_0001),
                data: Some(Expr::Addr("10.0.0.1".parse().expect("ip"))),
            }],
        );
        s.delete_elements(fam, &t, &id("addr4"), &[]);
        assert_eq!(s.len(), 3);
        assert_eq!(
            s.text(),
            "add map inet vznet_lb persist_0 { type ipv4_addr : mark; flags dynamic,timeout; timeout 30s; }\n\
             add rule inet vznet_lb svc_0 ct mark set ip saddr map @persist_0 ct mark @live update @persist_0 { ip saddr timeout 1500ms : ct mark } dnat ip to ct mark map @addr4 : ct mark map @port\n\
             add element inet vznet_lb addr4 { 0x7a5f0001 : 10.0.0.1 }\n"
        );
    }
}
