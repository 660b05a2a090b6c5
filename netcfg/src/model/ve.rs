//! `ve/ID.toml`: one virtual environment's network (the seed's `ID.conf`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{KeyPath, MacAddr, SysctlValue};

/// One VE.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VeConfig {
    /// The VE id; must match the file name.
    pub id: u32,
    /// Host name inside the VE.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Root folder (used by the VE runtime).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Wire an existing network namespace: a name under /run/netns or an absolute path.
    #[serde(default)]
    pub netns: Option<String>,
    /// The VE's init, run by `vznet ve start` (default `/sbin/init`).
    #[serde(default)]
    pub init: Option<Vec<String>>,
    /// Bridged veth interfaces (`vzctl set --netif_add`).
    #[serde(default)]
    pub netif: Vec<Netif>,
    /// Routed mode (`vzctl set --ipadd`): /32 routes and proxy ARP on the host.
    #[serde(default)]
    pub venet: Option<Venet>,
    /// Relative CPU weight, 1..10000 (cgroup v2 `cpu.weight`; default 100). On a
    /// cgroup v1 cpu controller it becomes `cpu.shares = weight * 1024 / 100`.
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    /// Memory limit: bytes, or a number with K, M, G or T (binary: "256M").
    /// cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`.
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// Commands run around start and stop (argv, no shell).
    #[serde(default)]
    pub hooks: Hooks,
    /// nftables rules inside the VE's netns (applied by `vznet ve start`).
    #[serde(default)]
    pub firewall: Option<Firewall>,
    /// On the host, drop frames from the VE's bridged ports whose source MAC or
    /// IP is not the VE's own (applied by `vznet ve start` and `ve set`).
    #[serde(default = "yes")]
    pub anti_spoof: bool,
    /// Started at boot by `vznet ve start --onboot` (the `vznet-ves` unit);
    /// OpenVZ's `ONBOOT`.
    #[serde(default)]
    pub onboot: bool,
    /// Boot order among onboot VEs: higher starts first, VEs of one value
    /// start side by side, unset starts last; shutdown goes the other way.
    /// OpenVZ's `BOOTORDER`.
    #[serde(default)]
    pub boot_order: Option<u32>,
    /// Name servers written to the VE's /etc/resolv.conf at start and on
    /// `ve set` (OpenVZ's `NAMESERVER`); empty: the file is left alone.
    #[serde(default)]
    pub nameservers: Vec<IpAddr>,
    /// Search domains for /etc/resolv.conf (OpenVZ's `SEARCHDOMAIN`); empty:
    /// left alone.
    #[serde(default)]
    pub search: Vec<String>,
}

/// At most this many `nameservers`: the C library reads no more (MAXNS).
pub const MAX_NAMESERVERS: usize = 3;

impl VeConfig {
    /// Problems with the runtime keys that serde cannot see: (key, message).
    pub fn runtime_problems(&self) -> Vec<(KeyPath, String)> {
        let mut out = Vec::new();
        // Every IPv4 netif gateway and the venet link (with IPv4 addresses)
        // is an IPv4 default route of equal metric: the kernel refuses a
        // second one (IPv6 takes several as one multipath route).
        let mut first: Option<String> = self
            .venet
            .as_ref()
            .filter(|v| v.addresses.iter().any(IpAddr::is_ipv4))
            .map(|_| "[venet] (venet0 is its default route)".to_string());
        for (i, n) in self.netif.iter().enumerate() {
            if !n.gateway.is_some_and(|g| g.is_ipv4()) {
                continue;
            }
            match &first {
                Some(f) => out.push((
                    KeyPath::key("netif").i(i).k("gateway"),
                    format!("a second IPv4 default route: {f} has one already"),
                )),
                None => first = Some(format!("netif[{i}].gateway")),
            }
        }
        if let Some(h) = &self.hostname {
            if let Err(why) = check_hostname(h) {
                out.push((KeyPath::key("hostname"), why));
            }
        }
        if self.nameservers.len() > MAX_NAMESERVERS {
            out.push((
                KeyPath::key("nameservers"),
                format!(
                    "{} name servers: the C library reads the first {MAX_NAMESERVERS} only",
                    self.nameservers.len()
                ),
            ));
        }
        for (i, d) in self.search.iter().enumerate() {
            if let Err(why) = check_domain(d) {
                out.push((KeyPath::key("search").i(i), why));
            }
        }
        let line: usize = self.search.iter().map(|d| d.len() + 1).sum();
        if line > 1024 {
            out.push((
                KeyPath::key("search"),
                format!("the search line is {line} bytes; resolvers read at most 1024"),
            ));
        }
        out
    }
}

/// A host name as `sethostname` and /etc/hosts take it: dot-separated labels
/// of letters, digits and `-` (RFC 1123), at most 64 bytes (the UTS field).
pub fn check_hostname(h: &str) -> Result<(), String> {
    if h.len() > 64 {
        return Err(format!(
            "host name {h:?} is {} bytes; the kernel takes at most 64",
            h.len()
        ));
    }
    check_domain(h).map_err(|why| why.replace("domain", "host name"))
}

/// A DNS name of labels of letters, digits and `-`, none starting or ending
/// with `-`, each 1..63 bytes (RFC 1123 section 2.1), at most 253 bytes.
pub fn check_domain(d: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("domain {d:?} {why}"));
    if d.is_empty() {
        return bad("is empty");
    }
    if d.len() > 253 {
        return bad("is longer than 253 bytes");
    }
    for label in d.strip_suffix('.').unwrap_or(d).split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("has a label that is empty or longer than 63 bytes");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("may hold only letters, digits, `-` and dots");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label that starts or ends with `-`");
        }
    }
    Ok(())
}

fn yes() -> bool {
    true
}

/// The VE's own packet filter, in its netns: traffic to the VE that no rule
/// accepts meets `input`. Established/related traffic and loopback are always
/// accepted.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Firewall {
    /// Policy for incoming traffic: "accept" (default) or "drop".
    #[serde(default)]
    pub input: FwPolicy,
    /// What is accepted.
    #[serde(default)]
    pub allow: Vec<FwRule>,
}

/// A chain policy.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FwPolicy {
    /// Accept.
    #[default]
    Accept,
    /// Drop.
    Drop,
}

/// One accept rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FwRule {
    /// Protocol: "tcp", "udp", "icmp", "icmpv6" or "any" (default).
    #[serde(default)]
    pub proto: FwProto,
    /// Destination ports (tcp and udp only); empty: all.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// Source prefixes; empty: any.
    #[serde(default)]
    pub from: Vec<IpNet>,
}

/// A protocol a rule matches.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FwProto {
    /// Any protocol.
    #[default]
    Any,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// ICMPv6.
    Icmpv6,
}

/// User hooks: argv arrays run by `vznet ve start`/`stop` on the host, with
/// `VEID`, `VE_STATE`, `VE_ROOT`, `VE_HOSTNAME`, `VE_CONFIG` (and `VE_PID`
/// while the VE runs) in their environment. No shell is involved.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Before anything is made; a failure aborts the start.
    #[serde(default, alias = "pre-start")]
    pub pre_start: Option<Vec<String>>,
    /// After the VE runs and is wired; a failure is reported, the VE keeps running.
    #[serde(default, alias = "post-start")]
    pub post_start: Option<Vec<String>>,
    /// Before the VE's init is signalled; a failure is reported, the stop goes on.
    #[serde(default, alias = "pre-stop")]
    pub pre_stop: Option<Vec<String>>,
    /// After the VE and its links and cgroups are gone; a failure is reported.
    #[serde(default, alias = "post-stop")]
    pub post_stop: Option<Vec<String>>,
}

impl Hooks {
    /// Each hook that is set, with its key.
    pub fn each(&self) -> impl Iterator<Item = (&'static str, &Vec<String>)> {
        [
            ("pre_start", &self.pre_start),
            ("post_start", &self.post_start),
            ("pre_stop", &self.pre_stop),
            ("post_stop", &self.post_stop),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
    }
}

/// A size in bytes, written as an integer or as "256M" (K, M, G, T: powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ByteSize, String> {
        let t = s.trim();
        let bad = || {
            format!(
                "invalid size {s:?}: use bytes or a number with K, M, G or T (\"256M\" is 256 MiB)"
            )
        };
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(digits);
        let n: u64 = num.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_uppercase();
        let shift = match unit.trim_end_matches("IB").trim_end_matches('B') {
            "" => 0,
            "K" => 10,
            "M" => 20,
            "G" => 30,
            "T" => 40,
            _ => return Err(bad()),
        };
        n.checked_mul(1u64 << shift).map(ByteSize).ok_or_else(bad)
    }
}

impl std::fmt::Display for ByteSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: bytes or a string such as \"256M\"")
        })? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// A veth pair: one end in the VE, the other on the host (usually a bridge port).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Netif {
    /// Name inside the VE (`eth0`).
    pub name: String,
    /// MAC inside the VE.
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// Host-side name; default `veth<ID>.<n>` (n = position in the file).
    #[serde(default)]
    pub host_name: Option<String>,
    /// Host-side MAC.
    #[serde(default)]
    pub host_mac: Option<MacAddr>,
    /// Bridge the host end joins.
    #[serde(default)]
    pub bridge: Option<String>,
    /// Addresses inside the VE.
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Default gateway inside the VE (either family).
    #[serde(default)]
    pub gateway: Option<IpAddr>,
    /// IPv6 default gateway inside the VE, next to an IPv4 `gateway`; a
    /// link-local one (`fe80::1`) needs no IPv6 address on the interface.
    #[serde(default)]
    pub gateway6: Option<IpAddr>,
    /// Sysctls on the host end (`forwarding`, `proxy_arp`...).
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlValue>,
    /// MTU of both ends (default: the kernel's, 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// On a VLAN-filtering bridge: the VLAN of the VE's untagged frames
    /// (default the bridge's default_pvid).
    #[serde(default)]
    pub pvid: Option<u16>,
    /// On a VLAN-filtering bridge: VLANs the VE sends and receives tagged.
    #[serde(default)]
    pub vlans: Vec<u16>,
    /// The host end forwards only to bridge ports that are not isolated
    /// (default false).
    #[serde(default)]
    pub isolated: Option<bool>,
    /// Frames may leave by the port they came in (default false).
    #[serde(default)]
    pub hairpin: Option<bool>,
    /// The bridge learns the VE's source MACs (default true).
    #[serde(default)]
    pub learning: Option<bool>,
}

impl Netif {
    /// Its options as a bridge port.
    pub fn port_options(&self) -> super::PortOptions {
        super::PortOptions {
            pvid: self.pvid,
            vlans: self.vlans.clone(),
            isolated: self.isolated,
            hairpin: self.hairpin,
            learning: self.learning,
        }
    }
}

/// Routed ("venet") networking: a veth with no bridge, /32 host routes to it, and
/// proxy ARP on it, so VEs in any subnet reach each other through the host.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Venet {
    /// The VE's addresses (host routes /32 or /128 point at them).
    pub addresses: Vec<IpAddr>,
    /// Host-side name; default `venet<ID>`.
    #[serde(default)]
    pub host_name: Option<String>,
    /// MTU of both ends (default: the kernel's, 1500).
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_binary_units_and_bad_ones_are_named() {
        assert_eq!("256M".parse::<ByteSize>(), Ok(ByteSize(256 << 20)));
        assert_eq!("1G".parse::<ByteSize>(), Ok(ByteSize(1 << 30)));
        assert_eq!("512KiB".parse::<ByteSize>(), Ok(ByteSize(512 << 10)));
        assert_eq!("4096".parse::<ByteSize>(), Ok(ByteSize(4096)));
        for bad in ["", "M", "12X", "-1M", "99999999999T"] {
            let e = bad.parse::<ByteSize>().expect_err("must fail");
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn hooks_take_both_spellings_and_sizes_both_forms() {
        let ve: VeConfig = toml::from_str(
            "id = 1\nmemory_limit = \"64M\"\ncpu_weight = 50\n[hooks]\npre-start = [\"/bin/true\"]\npost_stop = [\"/bin/echo\", \"x\"]\n",
        )
        .expect("test input");
        assert_eq!(ve.memory_limit, Some(ByteSize(64 << 20)));
        assert_eq!(
            ve.hooks.pre_start.as_deref(),
            Some(&["/bin/true".to_string()][..])
        );
        assert_eq!(ve.hooks.each().count(), 2);
        let e =
            toml::from_str::<VeConfig>("id = 1\nmemory_limit = \"lots\"\n").expect_err("must fail");
        assert!(e.to_string().contains("invalid size \"lots\""), "{e}");
    }

    #[test]
    fn runtime_keys_are_validated_with_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("host.toml"), "").expect("host");
        std::fs::create_dir(dir.path().join("ve")).expect("ve dir");
        std::fs::write(
            dir.path().join("ve/1.toml"),
            "id = 1\ncpu_weight = 0\n[hooks]\npre_start = [\"true\"]\n[firewall]\n[[firewall.allow]]\nproto = \"icmp\"\nports = [22]\n",
        )
        .expect("ve file");
        let errors = crate::model::Config::load(dir.path())
            .expect_err("invalid")
            .to_string();
        for want in [
            "1.toml:2:1: cpu_weight: cpu_weight 0 is out of range",
            "1.toml:4:14: hooks.pre_start[0]: hook program \"true\" must be an absolute path",
            "1.toml:8:1: firewall.allow[0].ports: ports need proto",
        ] {
            assert!(errors.contains(want), "{want}\nin:\n{errors}");
        }
    }

    #[test]
    fn boot_and_resolver_keys_are_validated_with_file_line_and_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("host.toml"), "").expect("host");
        std::fs::create_dir(dir.path().join("ve")).expect("ve dir");
        std::fs::write(
            dir.path().join("ve/2.toml"),
            "id = 2\nhostname = \"web_1\"\nonboot = true\nboot_order = 1\n\
             nameservers = [\"10.0.0.1\", \"10.0.0.2\", \"10.0.0.3\", \"10.0.0.4\"]\n\
             search = [\"example.org\", \"-bad.example\"]\n\
             [[netif]]\nname = \"eth0\"\naddresses = [\"10.0.0.5/24\"]\ngateway = \"10.0.0.1\"\n\
             [venet]\naddresses = [\"10.9.0.5\"]\n",
        )
        .expect("ve file");
        let errors = crate::model::Config::load(dir.path())
            .expect_err("invalid")
            .to_string();
        for want in [
            "2.toml:2:1: hostname: host name \"web_1\" may hold only letters",
            "2.toml:5:1: nameservers: 4 name servers",
            "2.toml:6:26: search[1]: domain \"-bad.example\" has a label that starts",
            "2.toml:10:1: netif[0].gateway: a second IPv4 default route: [venet]",
        ] {
            assert!(errors.contains(want), "{want}\nin:\n{errors}");
        }
        let ok: VeConfig =
            toml::from_str("id = 3\nonboot = true\nboot_order = 10\nsearch = [\"example.org.\"]\n")
                .expect("parses");
        assert!(ok.runtime_problems().is_empty() && ok.onboot && ok.boot_order == Some(10));
        assert!(check_hostname(&"a".repeat(65)).is_err());
        assert!(check_hostname("web-1.example.org").is_ok());
    }
}
