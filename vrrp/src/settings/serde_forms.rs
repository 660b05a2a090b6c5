//! The short and long forms users write: a string or a table (`"eth1"` or
//! `{ interface = "eth1", weight = -60 }`), an argv or a shell line, a prefix or a bare
//! address. Written by hand so that a wrong value gets a precise message rather than
//! serde's "did not match any variant".

use std::fmt;
use std::marker::PhantomData;
use std::net::Ipv4Addr;

use ipnet::IpNet;
use serde::de::{self, value::MapAccessDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::instance::{AddressScope, VirtualIp};
use super::ip_literal::parse_prefix;
use super::track::{ScriptCommand, TrackInterface, TrackScript};

/// A value that is a string in its short form and a table in its long form.
trait ShortOrTable: Sized {
    /// What the value is, for error messages.
    const EXPECTING: &'static str;
    type Table: for<'de> Deserialize<'de>;
    fn from_short(text: &str) -> Result<Self, String>;
    fn from_table(table: Self::Table) -> Result<Self, String>;
}

struct ShortOrTableVisitor<T>(PhantomData<T>);

impl<'de, T: ShortOrTable> Visitor<'de> for ShortOrTableVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        T::from_short(v).map_err(E::custom)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        let table = T::Table::deserialize(MapAccessDeserializer::new(map))?;
        T::from_table(table).map_err(de::Error::custom)
    }
}

fn short_or_table<'de, D: Deserializer<'de>, T: ShortOrTable>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(ShortOrTableVisitor(PhantomData))
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct VirtualIpTable {
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<AddressScope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    brd: Option<Ipv4Addr>,
}

impl ShortOrTable for VirtualIp {
    const EXPECTING: &'static str =
        "an address (\"192.0.2.100/24\") or a table { address = ..., dev = ..., label = ..., scope = ..., brd = ... }";
    type Table = VirtualIpTable;

    fn from_short(text: &str) -> Result<Self, String> {
        parse_prefix(text).map(VirtualIp::new)
    }

    fn from_table(t: VirtualIpTable) -> Result<Self, String> {
        Ok(VirtualIp {
            address: parse_prefix(&t.address)?,
            dev: t.dev,
            label: t.label,
            scope: t.scope,
            brd: t.brd,
        })
    }
}

impl<'de> Deserialize<'de> for VirtualIp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_table(d)
    }
}

impl Serialize for VirtualIp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_plain() {
            return s.collect_str(&self.address);
        }
        VirtualIpTable {
            address: self.address.to_string(),
            dev: self.dev.clone(),
            label: self.label.clone(),
            scope: self.scope,
            brd: self.brd,
        }
        .serialize(s)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TrackInterfaceTable {
    interface: String,
    #[serde(default)]
    weight: i32,
    #[serde(default)]
    reverse: bool,
}

impl ShortOrTable for TrackInterface {
    const EXPECTING: &'static str =
        "an interface name or a table { interface = ..., weight = ..., reverse = ... }";
    type Table = TrackInterfaceTable;

    fn from_short(text: &str) -> Result<Self, String> {
        Ok(TrackInterface::new(text))
    }

    fn from_table(t: TrackInterfaceTable) -> Result<Self, String> {
        Ok(TrackInterface {
            interface: t.interface,
            weight: t.weight,
            reverse: t.reverse,
        })
    }
}

impl<'de> Deserialize<'de> for TrackInterface {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_table(d)
    }
}

impl Serialize for TrackInterface {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.weight == 0 && !self.reverse {
            return s.serialize_str(&self.interface);
        }
        TrackInterfaceTable {
            interface: self.interface.clone(),
            weight: self.weight,
            reverse: self.reverse,
        }
        .serialize(s)
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TrackScriptTable {
    script: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reverse: Option<bool>,
}

impl ShortOrTable for TrackScript {
    const EXPECTING: &'static str =
        "a [[vrrp_script]] name or a table { script = ..., weight = ..., reverse = ... }";
    type Table = TrackScriptTable;

    fn from_short(text: &str) -> Result<Self, String> {
        Ok(TrackScript::new(text))
    }

    fn from_table(t: TrackScriptTable) -> Result<Self, String> {
        Ok(TrackScript {
            script: t.script,
            weight: t.weight,
            reverse: t.reverse,
        })
    }
}

impl<'de> Deserialize<'de> for TrackScript {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        short_or_table(d)
    }
}

impl Serialize for TrackScript {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.weight.is_none() && self.reverse.is_none() {
            return s.serialize_str(&self.script);
        }
        TrackScriptTable {
            script: self.script.clone(),
            weight: self.weight,
            reverse: self.reverse,
        }
        .serialize(s)
    }
}

struct ScriptCommandVisitor;

impl<'de> Visitor<'de> for ScriptCommandVisitor {
    type Value = ScriptCommand;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an argv array ([\"/usr/bin/check\", \"arg\"]) or a shell line")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ScriptCommand, E> {
        Ok(ScriptCommand::Shell(v.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ScriptCommand, A::Error> {
        let mut argv = Vec::new();
        while let Some(arg) = seq.next_element::<String>()? {
            argv.push(arg);
        }
        Ok(ScriptCommand::Argv(argv))
    }
}

impl<'de> Deserialize<'de> for ScriptCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScriptCommandVisitor)
    }
}

impl Serialize for ScriptCommand {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ScriptCommand::Argv(argv) => argv.serialize(s),
            ScriptCommand::Shell(line) => s.serialize_str(line),
        }
    }
}

/// `#[serde(with = "prefix")]`: an [`IpNet`] written as a prefix or a bare address.
pub mod prefix {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        let text = String::deserialize(d)?;
        parse_prefix(&text).map_err(de::Error::custom)
    }

    pub fn serialize<S: Serializer>(net: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(net)
    }
}

/// `#[serde(with = "optional_prefix")]`: as [`prefix`], optional.
pub mod optional_prefix {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse_prefix(&t).map_err(de::Error::custom))
            .transpose()
    }

    pub fn serialize<S: Serializer>(net: &Option<IpNet>, s: S) -> Result<S::Ok, S::Error> {
        match net {
            Some(n) => s.collect_str(n),
            None => s.serialize_none(),
        }
    }
}
