//! Links, one module per kind. Each kind owns one spec type that holds both what
//! the config asks for (an attribute left `None` is not compared: vznet leaves it
//! as it is) and what the kernel reports (every attribute decoded), its decoding
//! from the kernel's link message, its diff into changes (or "recreate" where the
//! kernel allows no change in place) and its netlink attributes.
//!
//! Adding a kind is one new module implementing [`Spec`] and one line in the
//! `kinds!` registry below.

pub mod bond;
pub mod bridge;
pub(crate) mod diff;
pub mod dummy;
#[cfg(test)]
pub(crate) mod fixture;
pub mod macvlan;
pub mod port;
pub mod veth;
pub mod vlan;
pub mod vxlan;

use std::fmt;
use std::os::fd::RawFd;

use netlink_packet_route::link::{InfoData, InfoKind};
use serde::{Deserialize, Serialize};

use crate::kernel::features::Feature;
use crate::model::MacAddr;
use crate::op::NsName;
pub use port::{Port, PortVlan};

/// Another link, named by a kind's attribute (a VLAN's lower link, a bond's
/// primary slave): by name in the config, by ifindex in a dump until every
/// name of the netns is known.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LinkRef {
    /// By name.
    Name(String),
    /// By ifindex; 0 is "no link" (how the kernel clears a bond's primary).
    Index(u32),
}

/// "No link": a bond without a primary slave.
pub const NO_LINK: LinkRef = LinkRef::Index(0);

impl LinkRef {
    /// The name, once known.
    pub fn name(&self) -> Option<&str> {
        match self {
            LinkRef::Name(n) => Some(n),
            LinkRef::Index(_) => None,
        }
    }

    /// Replaces an ifindex by the name of that link in the same netns.
    fn resolve(&mut self, name_of: &dyn Fn(u32) -> Option<String>) {
        if let LinkRef::Index(i) = *self {
            if let Some(n) = (i != 0).then(|| name_of(i)).flatten() {
                *self = LinkRef::Name(n);
            }
        }
    }
}

impl From<&str> for LinkRef {
    fn from(name: &str) -> LinkRef {
        LinkRef::Name(name.to_string())
    }
}

impl fmt::Display for LinkRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkRef::Name(n) => f.write_str(n),
            LinkRef::Index(0) => f.write_str("none"),
            LinkRef::Index(i) => write!(f, "ifindex {i}"),
        }
    }
}

/// How a change of a kind's attributes must be carried out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChangeNeeds {
    /// The link must be down while it changes (a bond's lacp_rate, ad_select).
    pub down: bool,
    /// The link must have no slaves while it changes (a bond's mode): they are
    /// released and enslaved again.
    pub no_slaves: bool,
}

/// Where links of a kind are made in the apply order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Made on their own or stacked on other links (bonds, bridges, VLANs...),
    /// ordered by their depth in the stack.
    Stack,
    /// Veth pairs, made after the bridges they join.
    Veth,
}

/// What building a request needs from the netns it goes to.
pub trait Resolve {
    /// The ifindex of a link the request names.
    fn index(&self, link: &LinkRef) -> Option<u32>;
    /// An open file of a netns the config names (a veth peer's).
    fn netns(&self, _ns: &str) -> Option<RawFd> {
        None
    }
}

impl<F: Fn(&LinkRef) -> Option<u32>> Resolve for F {
    fn index(&self, link: &LinkRef) -> Option<u32> {
        self(link)
    }
}

/// See [`Resolve`].
pub type IndexOf<'a> = &'a dyn Resolve;

/// What each link kind provides.
pub trait Spec: Sized + Clone + PartialEq + Default + fmt::Debug {
    /// The kernel's name of the kind (`IFLA_INFO_KIND`).
    const KIND: &'static str;
    /// Where it is made in the apply order.
    const TIER: Tier = Tier::Stack;

    /// Decodes `IFLA_INFO_DATA`; `link` is the message's `IFLA_LINK`.
    fn decode(data: Option<&InfoData>, link: Option<u32>) -> Self;

    /// The attributes `self` (desired) sets that `have` (observed) does not
    /// match, as (change, old): each holds just those attributes. `None` when
    /// in sync.
    fn delta(&self, have: &Self) -> Option<(Self, Self)>;

    /// True when `have` can become `self` only by deleting and creating it.
    fn must_recreate(&self, _have: &Self) -> bool {
        false
    }

    /// What changing to `self` (a change from [`Spec::delta`]) from `old` needs.
    fn needs(&self, _old: &Self) -> ChangeNeeds {
        ChangeNeeds::default()
    }

    /// The requests a change is sent as, in order (one by default).
    fn steps(&self, _old: &Self) -> Vec<Self> {
        vec![self.clone()]
    }

    /// The link it is stacked on, if any.
    fn lower(&self) -> Option<&LinkRef> {
        None
    }

    /// The lower link as `IFLA_LINK` when it is created (VLAN, macvlan).
    fn ifla_link(&self) -> Option<&LinkRef> {
        None
    }

    /// Every link it names.
    fn refs(&self) -> Vec<&LinkRef> {
        self.lower().into_iter().collect()
    }

    /// Every link it names, to resolve after a dump.
    fn refs_mut(&mut self) -> Vec<&mut LinkRef> {
        Vec::new()
    }

    /// `IFLA_INFO_DATA` carrying the attributes set in `self`.
    fn info_data(&self, index: IndexOf) -> Result<Option<InfoData>, String>;

    /// What a create request carries: `self` without attributes that only
    /// restate the kernel's default where some kernels refuse them.
    fn created(&self) -> Self {
        self.clone()
    }

    /// The attributes set, as (key, value) for plans and logs.
    fn describe(&self) -> Vec<(&'static str, String)>;

    /// The attributes worth printing when the link is made (default: all set).
    fn notable(&self) -> Vec<(&'static str, String)> {
        self.describe()
    }

    /// Kernel features links with these attributes need.
    fn features(&self) -> Vec<Feature>;
}

/// `describe()` without the pairs in `defaults`.
pub(crate) fn without_defaults(
    attrs: Vec<(&'static str, String)>,
    defaults: &[(&str, &str)],
) -> Vec<(&'static str, String)> {
    attrs
        .into_iter()
        .filter(|(k, v)| !defaults.contains(&(k, v.as_str())))
        .collect()
}

/// Sets `change`/`old` to `want`/`have` when `want` is set and differs; true then.
pub(crate) fn delta_field<T: Clone + PartialEq>(
    want: &Option<T>,
    have: &Option<T>,
    change: &mut Option<T>,
    old: &mut Option<T>,
) -> bool {
    match want {
        Some(w) if have.as_ref() != Some(w) => {
            *change = Some(w.clone());
            *old = have.clone();
            true
        }
        _ => false,
    }
}

/// [`Spec::delta`] over the listed `Option` fields of a spec struct.
macro_rules! delta_fields {
    ($want:expr, $have:expr; $($field:ident),+ $(,)?) => {{
        let mut change = Self::default();
        let mut old = Self::default();
        let mut any = false;
        $(
            any |= $crate::link::delta_field(
                &$want.$field, &$have.$field, &mut change.$field, &mut old.$field,
            );
        )+
        any.then_some((change, old))
    }};
}
pub(crate) use delta_fields;

/// Pushes `(key, value)` when `value` is set.
pub(crate) fn describe_field<T: fmt::Display>(
    out: &mut Vec<(&'static str, String)>,
    key: &'static str,
    value: &Option<T>,
) {
    if let Some(v) = value {
        out.push((key, v.to_string()));
    }
}

/// On or off.
pub(crate) struct OnOff(pub bool);

impl fmt::Display for OnOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "on" } else { "off" })
    }
}

/// The registry: every kind, its variant in [`Kind`] and its module.
macro_rules! kinds {
    ($($variant:ident($module:ident :: $ty:ident)),+ $(,)?) => {
        /// A link's kind with its attributes.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        pub enum Kind {
            $(
                #[allow(missing_docs)]
                $variant($module::$ty),
            )+
            /// A kind vznet does not make (physical NICs, loopback...), by the
            /// kernel's name ("" when it gives none).
            Other {
                /// `IFLA_INFO_KIND`.
                kind: String,
            },
        }

        impl Kind {
            /// Decodes a link message's kind and attributes.
            pub(crate) fn decode(kind: &InfoKind, data: Option<&InfoData>, link: Option<u32>) -> Kind {
                let name = kind.to_string();
                $(
                    if name == <$module::$ty as Spec>::KIND {
                        return Kind::$variant(<$module::$ty as Spec>::decode(data, link));
                    }
                )+
                Kind::Other { kind: name }
            }

            /// The kernel's name of the kind.
            pub fn name(&self) -> &str {
                match self {
                    $(Kind::$variant(_) => <$module::$ty as Spec>::KIND,)+
                    Kind::Other { kind } => kind,
                }
            }

            /// Where it is made in the apply order (`None`: vznet does not make it).
            pub fn tier(&self) -> Option<Tier> {
                match self {
                    $(Kind::$variant(_) => Some(<$module::$ty as Spec>::TIER),)+
                    Kind::Other { .. } => None,
                }
            }

            /// The attributes of `self` that `have` lacks, as (change, old).
            pub fn delta(&self, have: &Kind) -> Option<(Kind, Kind)> {
                match (self, have) {
                    $(
                        (Kind::$variant(w), Kind::$variant(h)) => w
                            .delta(h)
                            .map(|(c, o)| (Kind::$variant(c), Kind::$variant(o))),
                    )+
                    _ => None,
                }
            }

            /// True when `have` (another kind, or one that cannot change in
            /// place) must be deleted and made again to become `self`.
            pub fn must_recreate(&self, have: &Kind) -> bool {
                match (self, have) {
                    $((Kind::$variant(w), Kind::$variant(h)) => w.must_recreate(h),)+
                    _ => true,
                }
            }

            /// What a change (from [`Kind::delta`]) from `old` needs.
            pub fn needs(&self, old: &Kind) -> ChangeNeeds {
                match (self, old) {
                    $((Kind::$variant(c), Kind::$variant(o)) => c.needs(o),)+
                    _ => ChangeNeeds::default(),
                }
            }

            /// The requests a change from `old` is sent as, in order.
            pub fn steps(&self, old: &Kind) -> Vec<Kind> {
                match (self, old) {
                    $(
                        (Kind::$variant(c), Kind::$variant(o)) => {
                            c.steps(o).into_iter().map(Kind::$variant).collect()
                        }
                    )+
                    _ => vec![self.clone()],
                }
            }

            /// The link it is stacked on.
            pub fn lower(&self) -> Option<&LinkRef> {
                match self {
                    $(Kind::$variant(s) => s.lower(),)+
                    Kind::Other { .. } => None,
                }
            }

            /// `IFLA_LINK` when it is created.
            pub fn ifla_link(&self) -> Option<&LinkRef> {
                match self {
                    $(Kind::$variant(s) => s.ifla_link(),)+
                    Kind::Other { .. } => None,
                }
            }

            /// Every link it names.
            pub fn refs(&self) -> Vec<&LinkRef> {
                match self {
                    $(Kind::$variant(s) => s.refs(),)+
                    Kind::Other { .. } => Vec::new(),
                }
            }

            pub(crate) fn resolve(&mut self, name_of: &dyn Fn(u32) -> Option<String>) {
                let refs = match self {
                    $(Kind::$variant(s) => s.refs_mut(),)+
                    Kind::Other { .. } => Vec::new(),
                };
                for r in refs {
                    r.resolve(name_of);
                }
            }

            /// What a create request carries (see [`Spec::created`]).
            pub fn created(&self) -> Kind {
                match self {
                    $(Kind::$variant(s) => Kind::$variant(s.created()),)+
                    Kind::Other { .. } => self.clone(),
                }
            }

            /// `IFLA_INFO_KIND` and `IFLA_INFO_DATA` for a request.
            pub fn info(&self, index: IndexOf) -> Result<(InfoKind, Option<InfoData>), String> {
                match self {
                    $(
                        Kind::$variant(s) => Ok((
                            InfoKind::from(<$module::$ty as Spec>::KIND),
                            s.info_data(index)?,
                        )),
                    )+
                    Kind::Other { kind } => Err(format!("vznet cannot make links of kind {kind:?}")),
                }
            }

            /// Its attributes as (key, value).
            pub fn describe(&self) -> Vec<(&'static str, String)> {
                match self {
                    $(Kind::$variant(s) => s.describe(),)+
                    Kind::Other { .. } => Vec::new(),
                }
            }

            /// The attributes worth printing when it is made.
            pub fn notable(&self) -> Vec<(&'static str, String)> {
                match self {
                    $(Kind::$variant(s) => s.notable(),)+
                    Kind::Other { .. } => Vec::new(),
                }
            }

            /// Kernel features it needs.
            pub fn features(&self) -> Vec<Feature> {
                match self {
                    $(Kind::$variant(s) => s.features(),)+
                    Kind::Other { .. } => Vec::new(),
                }
            }
        }
    };
}

kinds! {
    Bridge(bridge::Bridge),
    Bond(bond::Bond),
    Vlan(vlan::Vlan),
    Veth(veth::Veth),
    Macvlan(macvlan::Macvlan),
    Vxlan(vxlan::Vxlan),
    Dummy(dummy::Dummy),
}

impl Kind {
    /// The bridge spec, if this is a bridge.
    pub fn as_bridge(&self) -> Option<&bridge::Bridge> {
        match self {
            Kind::Bridge(b) => Some(b),
            _ => None,
        }
    }

    /// True for a bond.
    pub fn is_bond(&self) -> bool {
        matches!(self, Kind::Bond(_))
    }
}

/// Everything needed to make a link, or to make it again exactly after
/// deleting it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinkDef {
    /// Name.
    pub name: String,
    /// Kind and its attributes.
    pub kind: Kind,
    /// MTU (`None`: the kernel's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// MAC (`None`: the kernel's choice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// Master (bridge or bond).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master: Option<String>,
    /// Bridge-port attributes, when the master is a bridge.
    #[serde(default, skip_serializing_if = "Port::is_empty")]
    pub port: Port,
    /// vznet's ownership marker.
    pub alias: String,
    /// How many links it is stacked on (0: none); orders creation and deletion.
    #[serde(default)]
    pub depth: u8,
    /// Of a deleted host link, its sysctls that differ from a new link's
    /// (`ipv4/conf/KEY` -> value): recorded by the engine before the deletion
    /// runs, put back when it is undone.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub sysctls: std::collections::BTreeMap<String, String>,
}

impl LinkDef {
    /// `kind name (attributes) mtu N mac M master B`, as plans print it.
    pub fn summary(&self) -> String {
        let mut s = match &self.kind {
            Kind::Veth(v) => v.summary(&self.name),
            kind => {
                let attrs = kind.notable();
                if attrs.is_empty() {
                    format!("{} {}", kind.name(), self.name)
                } else {
                    let list: Vec<String> = attrs.iter().map(|(k, v)| format!("{k} {v}")).collect();
                    format!("{} {} ({})", kind.name(), self.name, list.join(", "))
                }
            }
        };
        if let Some(mtu) = self.mtu {
            s.push_str(&format!(" mtu {mtu}"));
        }
        if let Some(mac) = self.mac {
            s.push_str(&format!(" mac {mac}"));
        }
        if let Some(m) = &self.master {
            s.push_str(&format!(" master {m}"));
        }
        let port = without_defaults(
            self.port.describe(),
            &[("isolated", "off"), ("hairpin", "off"), ("learning", "on")],
        );
        if !port.is_empty() {
            let list: Vec<String> = port.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s.push_str(&format!(" port {}", list.join(", ")));
        }
        s
    }
}

/// Each link's depth among `links`: 0 when it names no other link of the list
/// in its netns, else one more than the deepest one it names.
pub fn depths<'a>(links: impl Iterator<Item = (&'a NsName, &'a LinkDef)>) -> Vec<u8> {
    let links: Vec<(&NsName, &LinkDef)> = links.collect();
    let mut memo: Vec<Option<u8>> = vec![None; links.len()];
    fn depth(i: usize, links: &[(&NsName, &LinkDef)], memo: &mut [Option<u8>], guard: u8) -> u8 {
        if let Some(d) = memo[i] {
            return d;
        }
        let (ns, link) = links[i];
        let mut d = 0;
        // The kernel allows no cycles; the guard only bounds a bad input.
        if guard < 16 {
            for r in link.kind.refs() {
                if let Some(j) = links
                    .iter()
                    .position(|(n, l)| *n == ns && r.name() == Some(l.name.as_str()))
                {
                    d = d.max(depth(j, links, memo, guard + 1).saturating_add(1));
                }
            }
        }
        memo[i] = Some(d);
        d
    }
    (0..links.len())
        .map(|i| depth(i, &links, &mut memo, 0))
        .collect()
}

/// `key old -> new, ...` for a change (attributes sent again unchanged, such
/// as a bond's delays with a new miimon, are left out).
pub fn describe_change(
    change: &[(&'static str, String)],
    old: &[(&'static str, String)],
) -> String {
    change
        .iter()
        .filter_map(|(k, v)| {
            let before = old
                .iter()
                .find(|(ok, _)| ok == k)
                .map_or("-", |(_, ov)| ov.as_str());
            (before != v).then(|| format!("{k} {before} -> {v}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
