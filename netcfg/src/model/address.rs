//! IP text in config files, read with the one strict parser
//! ([`vrrp::settings::parse_network`]: no leading zeros, which `010.0.0.1/8` would
//! otherwise be read as 10.0.0.1 here and as 8.0.0.1 by inet_aton). The helpers are
//! `#[serde(deserialize_with)]` functions that parse each element on its own, so that
//! an error names `addresses[1]`, not the whole list.

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

/// One `ADDRESS/LENGTH` element.
struct Network(IpNet);

impl<'de> Deserialize<'de> for Network {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Network, D::Error> {
        // Parsed inside the visitor, so that the error carries the element's span.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Network;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an address with its prefix length (\"192.0.2.1/24\")")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Network, E> {
                vrrp::settings::parse_network(text)
                    .map(Network)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(Text)
    }
}

/// A list of `ADDRESS/LENGTH`.
pub(super) fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Ok(Vec::<Network>::deserialize(d)?
        .into_iter()
        .map(|n| n.0)
        .collect())
}
