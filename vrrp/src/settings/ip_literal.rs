//! Addresses and prefixes as users write them, read strictly: the one parser for
//! IP text in config files (the `[[vrrp]]` tables here, and all of netcfg's
//! `host.toml` and `ve/ID.toml`).
//!
//! The `ipnet` crate's parser takes `010.0.0.1/8` as 10.0.0.1 where inet_aton(3),
//! and so ping, ssh and the C library, read `010` as octal 8: the same text would
//! mean two addresses. Rust's own `IpAddr` refuses leading zeros; so does this.

use std::net::IpAddr;

use ipnet::IpNet;

/// `192.0.2.1` or `fd00::1`; an IPv4 part with a leading zero is refused with a
/// message that says why.
pub fn parse_address(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>().map_err(|_| match leading_zero(text) {
        Some(part) => format!(
            "{text:?}: {part:?} has a leading zero, which some tools read as octal: write the address without it"
        ),
        None => format!("invalid IP address syntax: {text:?}"),
    })
}

/// `192.0.2.0/24`: an address and a decimal prefix length within its family's
/// (no sign, no leading zero).
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let Some((addr, len)) = text.split_once('/') else {
        return Err(format!(
            "{text:?} has no prefix length: write ADDRESS/LENGTH (192.0.2.1/24, fd00::1/64)"
        ));
    };
    let addr = parse_address(addr)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bad_len = || format!("{text:?}: prefix length {len:?} is not a number in 0..={max}");
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) || len.len() > 3 {
        return Err(bad_len());
    }
    if len.len() > 1 && len.starts_with('0') {
        return Err(format!(
            "{text:?}: prefix length {len:?} has a leading zero: write it without"
        ));
    }
    let n: u8 = len.parse().map_err(|_| bad_len())?;
    IpNet::new(addr, n).map_err(|_| bad_len())
}

/// `192.0.2.0/24`, or a bare address as a host prefix (/32, /128).
pub fn parse_prefix(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        parse_network(text)
    } else {
        parse_address(text).map(IpNet::from).map_err(|e| {
            format!("{e} (an address or a prefix: 192.0.2.1, 192.0.2.0/24, fd00::1/64)")
        })
    }
}

/// The first dotted decimal part of `text` with a leading zero (`010` in
/// `010.0.0.1`, also in the IPv4 tail of `::ffff:10.0.00.1`), if the text would be
/// an address without it.
fn leading_zero(text: &str) -> Option<&str> {
    let v4 = text.rsplit(':').next().unwrap_or(text);
    let parts: Vec<&str> = v4.split('.').collect();
    if parts.len() != 4 || !parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    parts
        .iter()
        .find(|p| p.len() > 1 && p.starts_with('0'))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_refused_with_the_reason() {
        for bad in ["010.0.0.1", "10.0.0.01", "::ffff:10.0.00.1"] {
            let e = parse_address(bad).expect_err(bad);
            assert!(e.contains("leading zero"), "{bad}: {e}");
        }
        for bad in [
            "010.0.0.1/8",
            "10.0.0.1/08",
            "10.0.0.1/+8",
            "10.0.0.1/",
            "10.0.0.1/33",
        ] {
            assert!(parse_network(bad).is_err(), "{bad}");
        }
        assert!(parse_network("fd00::1/129").is_err());
        assert!(parse_network("10.0.0.1").is_err());
        assert!(parse_prefix("010.0.0.1")
            .expect_err("octal")
            .contains("leading zero"));
    }

    #[test]
    fn ordinary_literals_parse() {
        let ok = |t: &str| parse_prefix(t).expect(t).to_string();
        assert_eq!(ok("10.0.0.1/8"), "10.0.0.1/8");
        assert_eq!(ok("0.0.0.0/0"), "0.0.0.0/0");
        assert_eq!(ok("10.0.0.1"), "10.0.0.1/32");
        assert_eq!(ok("fd00::1/64"), "fd00::1/64");
        assert_eq!(ok("0fd0::1/128"), "fd0::1/128");
        assert_eq!(ok("::ffff:10.0.0.1/128"), "::ffff:10.0.0.1/128");
    }
}
