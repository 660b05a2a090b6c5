//! The imported settings as a host.toml fragment that `vznet check` accepts: keys
//! equal to vznet's defaults are left out, except those whose keepalived default
//! differs (VRRP version and interval, check timings, scheduler, protocol), and the
//! text is validated with netcfg's own checks before it is handed out. An object
//! vznet still refuses (a combination keepalived tolerates) is dropped and reported,
//! with what depended on it.

use std::path::{Path, PathBuf};

use netcfg::model::{Config, HealthCheck, HostConfig, LbBackend, SourceFile, VirtualServer};
use toml_edit::Table;
use vrrp::settings::{Instance, Script, ScriptCommand, SyncGroup};

use super::translate::{Imported, Sourced};
use crate::import::fragment::{self, Entry};
use crate::import::report::{Kind, Report};

/// Keys written even when they equal vznet's default.
const VRRP_KEEP: &[&str] = &[
    "name",
    "interface",
    "vrid",
    "priority",
    "version",
    "advert_interval_ms",
    "virtual_ips",
];
const SCRIPT_KEEP: &[&str] = &["name", "script", "interval_ms"];
const GROUP_KEEP: &[&str] = &["name", "group"];
const VS_KEEP: &[&str] = &["protocol", "scheduler", "backends", "check"];
const BACKEND_KEEP: &[&str] = &["address", "port", "weight"];
const CHECK_KEEP: &[&str] = &[
    "kind",
    "interval_ms",
    "timeout_ms",
    "fall",
    "rise",
    "retry_interval_ms",
];

/// The rendering failed: a bug of the importer, never the input's fault.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A value did not serialize.
    #[error("cannot write the settings as TOML: {0}")]
    Serialize(#[from] toml_edit::ser::Error),
    /// The text did not read back.
    #[error("the written TOML does not read back: {0}")]
    ReadBack(String),
}

struct Defaults {
    vrrp: Table,
    script: Table,
    group: Table,
    vs: Table,
    backend: Table,
    check: Table,
}

impl Defaults {
    fn new() -> Result<Defaults, RenderError> {
        let vs: VirtualServer =
            toml::from_str("backends = []").map_err(|e| RenderError::ReadBack(e.to_string()))?;
        let backend: LbBackend =
            toml::from_str("").map_err(|e| RenderError::ReadBack(e.to_string()))?;
        let check: HealthCheck =
            toml::from_str("kind = \"tcp\"").map_err(|e| RenderError::ReadBack(e.to_string()))?;
        Ok(Defaults {
            vrrp: fragment::table(&Instance::new("", "", 1, Vec::new()))?,
            script: fragment::table(&Script::new("", ScriptCommand::Shell(String::new())))?,
            group: fragment::table(&SyncGroup::new("", Vec::new()))?,
            vs: fragment::table(&vs)?,
            backend: fragment::table(&backend)?,
            check: fragment::table(&check)?,
        })
    }
}

/// Each object as a table under a comment naming where it comes from: keys equal
/// to `defaults` left out except `keep`, then laid out by `layout`.
fn entries<T: serde::Serialize>(
    list: &[Sourced<T>],
    defaults: &Table,
    keep: &[&str],
    layout: impl Fn(&mut Table),
) -> Result<Vec<Entry>, RenderError> {
    list.iter()
        .map(|s| {
            let mut table = fragment::table(&s.value)?;
            fragment::prune(&mut table, defaults, keep);
            layout(&mut table);
            let at = format!("{}:{}: {}", s.at.file.display(), s.at.line, s.origin);
            Ok(Entry {
                comment: vec![at],
                table,
            })
        })
        .collect()
}

/// The fragment's text.
pub fn render(source: &Path, imported: &Imported) -> Result<String, RenderError> {
    let d = Defaults::new()?;
    let scripts = entries(&imported.vrrp_script, &d.script, SCRIPT_KEEP, |_| {})?;
    let track = fragment::defaults("reverse = false");
    let track_file = fragment::defaults("weight = 1\nreverse = false\ninit_overwrite = false");
    let track_process = fragment::defaults(
        "args = []\nfull_command = false\nweight = 0\nreverse = false\nquorum = 1\nfork_delay_ms = 0\nterminate_delay_ms = 0",
    );
    let route = fragment::defaults("type = \"unicast\"");
    let tracking = |t: &mut Table| {
        fragment::prune_each(t, "track", &track);
        fragment::prune_each(t, "track_file", &track_file);
        fragment::prune_each(t, "track_process", &track_process);
    };
    let vrrp = entries(&imported.vrrp, &d.vrrp, VRRP_KEEP, |t| {
        tracking(t);
        fragment::prune_each(t, "virtual_routes", &route);
    })?;
    let groups = entries(&imported.vrrp_sync_group, &d.group, GROUP_KEEP, tracking)?;
    let url = fragment::defaults("status = []");
    let check_layout = |t: &mut Table| {
        fragment::prune(t, &d.check, CHECK_KEEP);
        fragment::prune_each(t, "urls", &url);
    };
    let servers = entries(&imported.virtual_server, &d.vs, VS_KEEP, |t| {
        fragment::sub_table(t, "check");
        if let Some(check) = t.get_mut("check").and_then(|c| c.as_table_mut()) {
            check_layout(check);
        }
        fragment::table_array(t, "backends", |b| {
            fragment::prune(b, &d.backend, BACKEND_KEEP);
            fragment::edit_each(b, "checks", check_layout);
        });
    })?;
    let routes = entries(&imported.route, &Table::new(), &[], |_| {})?;
    let rules = entries(&imported.rule, &Table::new(), &[], |_| {})?;
    let header = vec![
        format!("Imported from {} by vznet import keepalived (keepalived 2.2.7's meaning and defaults).", source.display()),
        "Add these tables to host.toml; the import's report lists what was not carried over.".to_string(),
    ];
    let doc = fragment::document(
        &header,
        vec![
            ("vrrp_script", scripts),
            ("vrrp", vrrp),
            ("vrrp_sync_group", groups),
            ("virtual_server", servers),
            ("route", routes),
            ("rule", rules),
        ],
    );
    Ok(doc.to_string())
}

/// What netcfg's validation says about `text`, as (array, index, key, message).
fn problems(text: &str) -> Result<Vec<(String, usize, String, String)>, RenderError> {
    let host: HostConfig =
        toml::from_str(text).map_err(|e| RenderError::ReadBack(e.to_string()))?;
    let config = Config {
        dir: PathBuf::from("."),
        host,
        host_source: SourceFile::new(Path::new("host.toml"), text.to_string()),
        ves: Vec::new(),
        warnings: Vec::new(),
    };
    let Err(errors) = config.validate() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in errors.0 {
        let (array, index) =
            object_of(&e.key).ok_or_else(|| RenderError::ReadBack(e.to_string()))?;
        out.push((array, index, e.key.clone(), e.message.clone()));
    }
    Ok(out)
}

/// `vrrp[3].track[0]` -> ("vrrp", 3).
fn object_of(key: &str) -> Option<(String, usize)> {
    let (array, rest) = key.split_once('[')?;
    let index = rest.split_once(']')?.0.parse().ok()?;
    Some((array.to_string(), index))
}

/// Renders, and while vznet refuses an object, drops it (reporting why) and
/// renders again.
pub fn render_valid(
    source: &Path,
    imported: &mut Imported,
    report: &mut Report,
) -> Result<String, RenderError> {
    loop {
        let text = render(source, imported)?;
        let found = problems(&text)?;
        let Some((array, index, key, message)) = found.into_iter().next() else {
            return Ok(text);
        };
        // The key within the object: its index is the rendered one, not the source's.
        let field = key.split_once("].").map_or("it", |(_, f)| f);
        let why = format!("vznet refuses {field}: {message}");
        drop_object(imported, report, &array, index, &why)?;
    }
}

fn refuse<T>(
    list: &mut Vec<Sourced<T>>,
    index: usize,
    report: &mut Report,
    why: &str,
) -> Result<Sourced<T>, RenderError> {
    if index >= list.len() {
        return Err(RenderError::ReadBack(format!(
            "no object {index} to drop ({why})"
        )));
    }
    let s = list.remove(index);
    report.add(
        &s.at.file,
        s.at.line,
        s.origin.split_whitespace().next().unwrap_or(""),
        Kind::NotCarried,
        format!("{why}: {} not carried", s.origin),
    );
    Ok(s)
}

fn drop_object(
    imported: &mut Imported,
    report: &mut Report,
    array: &str,
    index: usize,
    why: &str,
) -> Result<(), RenderError> {
    match array {
        "vrrp" => {
            let gone = refuse(&mut imported.vrrp, index, report, why)?;
            for g in &mut imported.vrrp_sync_group {
                g.value.group.retain(|m| *m != gone.value.name);
            }
            let empty: Vec<usize> = (0..imported.vrrp_sync_group.len())
                .filter(|i| imported.vrrp_sync_group[*i].value.group.is_empty())
                .collect();
            for i in empty.into_iter().rev() {
                refuse(
                    &mut imported.vrrp_sync_group,
                    i,
                    report,
                    &format!("its last member {} is not carried", gone.value.name),
                )?;
            }
        }
        "vrrp_script" => {
            let gone = refuse(&mut imported.vrrp_script, index, report, why)?;
            let name = gone.value.name;
            let untrack = |origin: &str, list: &mut Vec<vrrp::settings::TrackScript>| {
                let before = list.len();
                list.retain(|t| t.script != name);
                (list.len() != before)
                    .then(|| format!("{origin} does not track {name}, which is not carried"))
            };
            for i in &mut imported.vrrp {
                if let Some(why) = untrack(&i.origin, &mut i.value.track_script) {
                    report.add(&i.at.file, i.at.line, "track_script", Kind::NotCarried, why);
                }
            }
            for g in &mut imported.vrrp_sync_group {
                if let Some(why) = untrack(&g.origin, &mut g.value.track_script) {
                    report.add(&g.at.file, g.at.line, "track_script", Kind::NotCarried, why);
                }
            }
        }
        "vrrp_sync_group" => {
            refuse(&mut imported.vrrp_sync_group, index, report, why)?;
        }
        "virtual_server" => {
            refuse(&mut imported.virtual_server, index, report, why)?;
        }
        "route" => {
            refuse(&mut imported.route, index, report, why)?;
        }
        "rule" => {
            refuse(&mut imported.rule, index, report, why)?;
        }
        other => {
            return Err(RenderError::ReadBack(format!(
                "an error in {other}[{index}]: {why}"
            )))
        }
    }
    Ok(())
}
