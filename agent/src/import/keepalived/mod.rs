//! `vznet import keepalived`: a keepalived.conf (keepalived 2.2.7's syntax and
//! meaning) into host.toml tables.
//!
//! [`lexer`] reads the files as keepalived does (comments, conditionals,
//! definitions, includes), [`parser`] builds the keyword tree, [`translate`] maps it
//! onto vznet's settings and reports what it cannot carry, [`host_toml`] writes the
//! tables and proves `vznet check` accepts them. Nothing here looks at the kernel:
//! interfaces named in the file need not exist where the import runs.

mod definition;
mod glob;
pub mod host_toml;
pub mod lexer;
pub mod parser;
pub mod translate;
pub mod words;

use std::path::Path;

use super::report::Report;
use super::Outcome;

/// How to read the file.
#[derive(Debug, Clone)]
pub struct Options {
    /// The config id `@ID` lines are matched against (keepalived's `-i`; its
    /// default is the host name up to the first dot).
    pub config_id: String,
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] lexer::ReadError),
    /// The importer produced something vznet cannot read (a bug).
    #[error(transparent)]
    Render(#[from] host_toml::RenderError),
}

/// keepalived's default config id: this host's name up to the first dot.
pub fn default_config_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.split('.').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// Imports `path` and everything it includes.
pub fn import(path: &Path, options: &Options) -> Result<Outcome, ImportError> {
    let mut report = Report::default();
    let lines = lexer::read(path, &options.config_id, &mut report)?;
    let tree = parser::parse(lines, &mut report);
    let mut imported = translate::translate(&tree, &mut report);
    let host_toml = host_toml::render_valid(path, &mut imported, &mut report)?;
    let summary = vec![
        ("vrrp_script", imported.vrrp_script.len()),
        ("vrrp", imported.vrrp.len()),
        ("vrrp_sync_group", imported.vrrp_sync_group.len()),
        ("virtual_server", imported.virtual_server.len()),
        ("route", imported.route.len()),
        ("rule", imported.rule.len()),
    ];
    Ok(Outcome {
        host_toml,
        report,
        counts: summary,
    })
}
