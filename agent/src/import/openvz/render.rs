//! host.toml and ve/ID.toml from the imported settings, through toml_edit (the
//! shared [`fragment`] layout: keys equal to vznet's defaults left out, each
//! object under a comment naming its source line), proven with netcfg's own
//! validation: an object vznet refuses is dropped, reported, and the rest
//! rendered again, so whatever is written `vznet check` accepts.

use std::path::{Path, PathBuf};

use netcfg::model::{HostConfig, VeConfig};
use toml_edit::Table;

use super::netdef::{At, Origins};
use super::vzconf::ImportedVe;
use crate::import::fragment::{self, Entry};
use crate::import::report::{Kind, Report};

pub use crate::import::fragment::RenderError;

/// Everything imported, before rendering.
#[derive(Debug)]
pub struct Imported {
    /// host.toml's settings.
    pub host: HostConfig,
    /// Where host objects come from (`bridge` -> one per bridge, `sysctl.KEY`).
    pub origins: Origins,
    /// Where `[venet] neighbour_devs` comes from.
    pub neighbour_at: Option<At>,
    /// The VEs.
    pub ves: Vec<ImportedVe>,
}

/// The rendered files.
#[derive(Debug)]
pub struct Rendered {
    /// host.toml.
    pub host_toml: String,
    /// ve/ID.toml by id.
    pub ves: Vec<(u32, String)>,
}

fn defaults<T: serde::de::DeserializeOwned + serde::Serialize>(
    text: &str,
) -> Result<Table, RenderError> {
    let v: T = toml::from_str(text).map_err(|e| RenderError::ReadBack(e.to_string()))?;
    Ok(fragment::table(&v)?)
}

fn comment(at: Option<&At>, what: &str) -> Vec<String> {
    at.map(|a| vec![format!("{}:{}: {what}", a.file.display(), a.line)])
        .unwrap_or_default()
}

/// host.toml's text.
fn host_toml(source: &Path, imported: &Imported) -> Result<String, RenderError> {
    let host = &imported.host;
    let mut arrays: Vec<(&str, Vec<Entry>)> = Vec::new();
    macro_rules! array {
        ($name:literal, $list:expr, $ty:ty, $default:literal, $keep:expr) => {{
            let d = defaults::<$ty>($default)?;
            let mut entries = Vec::new();
            for (n, v) in $list.iter().enumerate() {
                let mut t = fragment::table(v)?;
                fragment::prune(&mut t, &d, $keep);
                let at = imported.origins.get($name).and_then(|o| o.get(n));
                entries.push(Entry {
                    comment: comment(at, &v.name),
                    table: t,
                });
            }
            arrays.push(($name, entries));
        }};
    }
    array!(
        "bond",
        host.bond,
        netcfg::model::Bond,
        "name = \"\"\nmode = \"balance-rr\"",
        &["name", "mode"]
    );
    array!(
        "vlan",
        host.vlan,
        netcfg::model::Vlan,
        "name = \"\"\nlink = \"\"\nid = 1",
        &["name", "link", "id"]
    );
    array!(
        "bridge",
        host.bridge,
        netcfg::model::Bridge,
        "name = \"\"",
        &["name"]
    );
    array!(
        "ethernet",
        host.ethernet,
        netcfg::model::Ethernet,
        "name = \"\"",
        &["name"]
    );
    let mut routes = Vec::new();
    for (n, r) in host.route.iter().enumerate() {
        let at = imported.origins.get("route").and_then(|o| o.get(n));
        routes.push(Entry {
            comment: comment(at, "default gateway"),
            table: fragment::table(r)?,
        });
    }
    arrays.push(("route", routes));
    let mut sysctl = Table::new();
    for (k, v) in &host.sysctl {
        sysctl.insert(k, toml_edit::value(fragment_value(v)));
    }
    let mut venet = Table::new();
    if !host.venet.neighbour_devs.is_empty() {
        venet = fragment::table(&host.venet)?;
    }
    let header = vec![
        format!(
            "Imported from the OpenVZ host at {} by vznet import openvz.",
            source.display()
        ),
        "The import's report lists what was not carried over.".to_string(),
    ];
    let sysctl_comment = (!sysctl.is_empty())
        .then(|| "from the host's sysctl files".to_string())
        .into_iter()
        .collect();
    let doc = fragment::document_with(
        &header,
        vec![
            (
                "sysctl",
                Entry {
                    comment: sysctl_comment,
                    table: sysctl,
                },
            ),
            (
                "venet",
                Entry {
                    comment: comment(imported.neighbour_at.as_ref(), "NEIGHBOUR_DEVS"),
                    table: venet,
                },
            ),
        ],
        arrays,
    );
    let text = doc.to_string();
    Ok(if text.is_empty() {
        header
            .iter()
            .map(|h| format!("# {h}\n"))
            .collect::<String>()
    } else {
        text
    })
}

fn fragment_value(v: &netcfg::model::SysctlValue) -> toml_edit::Value {
    match v {
        netcfg::model::SysctlValue::Int(i) => (*i).into(),
        netcfg::model::SysctlValue::Str(s) => s.as_str().into(),
    }
}

/// ve/ID.toml's text.
fn ve_toml(v: &ImportedVe) -> Result<String, RenderError> {
    let d = defaults::<VeConfig>("id = 0")?;
    let netif_d = defaults::<netcfg::model::Netif>("name = \"\"")?;
    let venet_d = defaults::<netcfg::model::Venet>("addresses = []")?;
    let mut t = fragment::table(&v.ve)?;
    fragment::prune(&mut t, &d, &["id"]);
    fragment::sub_table(&mut t, "venet");
    if let Some(venet) = t.get_mut("venet").and_then(|i| i.as_table_mut()) {
        fragment::prune(venet, &venet_d, &["addresses"]);
    }
    fragment::table_array(&mut t, "netif", |n| fragment::prune(n, &netif_d, &["name"]));
    let header = format!(
        "Imported from {} by vznet import openvz; no netns: `vznet ve start {}` runs and wires it.",
        v.file.display(),
        v.ve.id
    );
    Ok(fragment::top_level(&[header], t))
}

/// Renders every file.
fn render(source: &Path, imported: &Imported) -> Result<Rendered, RenderError> {
    let host_toml = host_toml(source, imported)?;
    let ves = imported
        .ves
        .iter()
        .map(|v| Ok((v.ve.id, ve_toml(v)?)))
        .collect::<Result<_, RenderError>>()?;
    Ok(Rendered { host_toml, ves })
}

/// The key path's segments: `bridge[0].sysctl."ipv6.forwarding"` ->
/// ["bridge", "0", "sysctl", "ipv6.forwarding"].
fn segments(key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in key.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' | '[' | ']' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Renders, and while vznet refuses something, drops it (reporting why) and
/// renders again.
pub fn render_valid(
    source: &Path,
    imported: &mut Imported,
    report: &mut Report,
) -> Result<Rendered, RenderError> {
    loop {
        let rendered = render(source, imported)?;
        let errors = fragment::check(&rendered.host_toml, &rendered.ves)?;
        let Some(e) = errors.into_iter().next() else {
            return Ok(rendered);
        };
        let file = e.location.file.to_string_lossy().to_string();
        let why = format!("vznet refuses {}: {}", e.key, e.message);
        let seg = segments(&e.key);
        let dropped = match file
            .strip_prefix("ve/")
            .and_then(|f| f.strip_suffix(".toml"))
        {
            Some(id) => drop_ve_part(imported, id.parse().ok(), &seg, &why, report),
            None => drop_host_part(imported, &seg, &why, report),
        };
        if !dropped {
            return Err(RenderError::ReadBack(format!("cannot carry out: {e}")));
        }
    }
}

fn lost(report: &mut Report, at: Option<&At>, keyword: &str, why: &str) {
    let fallback = At {
        file: PathBuf::from("host.toml"),
        line: 0,
    };
    let at = at.unwrap_or(&fallback);
    report.add(&at.file, at.line, keyword, Kind::NotCarried, why);
}

/// Drops what `seg` names from host.toml; false when it names nothing known.
fn drop_host_part(imported: &mut Imported, seg: &[String], why: &str, report: &mut Report) -> bool {
    let host = &mut imported.host;
    let index = seg.get(1).and_then(|i| i.parse::<usize>().ok());
    let origin = |name: &str, i: usize, o: &mut Origins| -> Option<At> {
        let list = o.get_mut(name)?;
        (i < list.len()).then(|| list.remove(i))
    };
    match (seg.first().map(String::as_str), index) {
        (Some("sysctl"), _) => {
            let Some(key) = seg.get(1) else { return false };
            host.sysctl.remove(key);
            let at = imported
                .origins
                .get(&format!("sysctl.{key}"))
                .and_then(|o| o.first())
                .cloned();
            lost(report, at.as_ref(), key, why);
            true
        }
        (Some("venet"), _) => {
            host.venet.neighbour_devs.clear();
            lost(
                report,
                imported.neighbour_at.as_ref(),
                "NEIGHBOUR_DEVS",
                why,
            );
            true
        }
        (Some(array), Some(i)) if seg.get(2).map(String::as_str) == Some("sysctl") => {
            let Some(key) = seg.get(3) else { return false };
            let map = match array {
                "bond" => host
                    .bond
                    .get_mut(i)
                    .map(|b| (&mut b.sysctl, b.name.clone())),
                "vlan" => host
                    .vlan
                    .get_mut(i)
                    .map(|b| (&mut b.sysctl, b.name.clone())),
                "bridge" => host
                    .bridge
                    .get_mut(i)
                    .map(|b| (&mut b.sysctl, b.name.clone())),
                "ethernet" => host
                    .ethernet
                    .get_mut(i)
                    .map(|b| (&mut b.sysctl, b.name.clone())),
                _ => None,
            };
            let Some((map, name)) = map else { return false };
            map.remove(key);
            let at = imported.origins.get(array).and_then(|o| o.get(i)).cloned();
            lost(report, at.as_ref(), &format!("{name} {key}"), why);
            true
        }
        (Some(array), Some(i)) => {
            let name = match array {
                "bond" if i < host.bond.len() => host.bond.remove(i).name,
                "vlan" if i < host.vlan.len() => host.vlan.remove(i).name,
                "bridge" if i < host.bridge.len() => host.bridge.remove(i).name,
                "ethernet" if i < host.ethernet.len() => host.ethernet.remove(i).name,
                "route" if i < host.route.len() => {
                    host.route.remove(i);
                    "default route".to_string()
                }
                _ => return false,
            };
            let at = origin(array, i, &mut imported.origins);
            lost(report, at.as_ref(), &name, why);
            true
        }
        _ => false,
    }
}

/// Drops what `seg` names from VE `id`; false when it names nothing known.
fn drop_ve_part(
    imported: &mut Imported,
    id: Option<u32>,
    seg: &[String],
    why: &str,
    report: &mut Report,
) -> bool {
    let Some(v) = imported.ves.iter_mut().find(|v| Some(v.ve.id) == id) else {
        return false;
    };
    let key = seg.first().map(String::as_str).unwrap_or_default();
    let at = |name: &str, v: &ImportedVe| {
        v.key_at.get(name).cloned().unwrap_or(At {
            file: v.file.clone(),
            line: 0,
        })
    };
    match key {
        "netif" => {
            let Some(i) = seg.get(1).and_then(|i| i.parse::<usize>().ok()) else {
                return false;
            };
            if i >= v.ve.netif.len() {
                return false;
            }
            let n = v.ve.netif.remove(i);
            let at = if i < v.netif_at.len() {
                v.netif_at.remove(i)
            } else {
                at("netif", v)
            };
            lost(report, Some(&at), &format!("NETIF ifname={}", n.name), why);
        }
        "hostname" => {
            let a = at(key, v);
            v.ve.hostname = None;
            lost(report, Some(&a), "HOSTNAME", why);
        }
        "nameservers" => {
            let a = at(key, v);
            v.ve.nameservers.clear();
            lost(report, Some(&a), "NAMESERVER", why);
        }
        "search" => {
            let a = at(key, v);
            v.ve.search.clear();
            lost(report, Some(&a), "SEARCHDOMAIN", why);
        }
        "venet" => {
            let a = at(key, v);
            v.ve.venet = None;
            lost(report, Some(&a), "IP_ADDRESS", why);
        }
        "cpu_weight" | "memory_limit" | "boot_order" | "root" => {
            let a = at(key, v);
            match key {
                "cpu_weight" => v.ve.cpu_weight = None,
                "memory_limit" => v.ve.memory_limit = None,
                "boot_order" => v.ve.boot_order = None,
                _ => v.ve.root = None,
            }
            lost(report, Some(&a), key, why);
        }
        _ => {
            let id = v.ve.id;
            let file = v.file.clone();
            imported.ves.retain(|v| v.ve.id != id);
            report.add(
                &file,
                1,
                format!("VE {id}"),
                Kind::NotCarried,
                why.to_string(),
            );
        }
    }
    true
}

/// How many objects of each kind, for the summary.
pub fn counts(imported: &Imported) -> Vec<(&'static str, usize)> {
    let h = &imported.host;
    vec![
        ("bond", h.bond.len()),
        ("vlan", h.vlan.len()),
        ("bridge", h.bridge.len()),
        ("ethernet", h.ethernet.len()),
        ("route", h.route.len()),
        ("ve", imported.ves.len()),
    ]
}
