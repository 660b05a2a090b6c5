//! `vznet import openvz`: an OpenVZ host's files (vzctl's vz.conf and CTID.conf,
//! the host's network files, its sysctl files) into host.toml and ve/ID.toml.
//!
//! [`source`] reads files under `--root`, [`shell`] the shell-assignment files;
//! [`ifcfg`] (RHEL), [`ifupdown`] (Debian), [`modprobe`] and [`sysctl_conf`]
//! describe the host's interfaces ([`netdef`]), [`vzconf`] the VEs, and
//! [`render`] writes them and proves `vznet check` accepts them. Nothing here
//! looks at the kernel: the files may be a copy of another host's.

pub mod bonding;
pub mod ifcfg;
pub mod ifupdown;
pub mod modprobe;
pub mod netdef;
pub mod render;
pub mod shell;
pub mod source;
pub mod sysctl_conf;
pub mod vzconf;

use std::net::IpAddr;
use std::path::Path;

use netdef::{HostNet, IfKind};
use render::Imported;
use source::Root;

use super::report::{Kind, Report};
use super::Outcome;

pub use render::RenderError;

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// None of the files an OpenVZ host has is under the root.
    #[error("{0}: no OpenVZ or network files under it (etc/vz/vz.conf, etc/vz/conf/*.conf, etc/sysconfig/network-scripts, etc/network/interfaces, etc/sysctl.conf): is --root the host's root folder?")]
    Nothing(std::path::PathBuf),
    /// The importer produced something vznet cannot read (a bug).
    #[error(transparent)]
    Render(#[from] RenderError),
}

/// Imports the OpenVZ host whose files are under `root`.
pub fn import(root_dir: &Path) -> Result<Outcome, ImportError> {
    let mut report = Report::default();
    let root = Root::new(root_dir);
    let global = vzconf::global(&root, &mut report);
    let mut net = HostNet::default();
    ifupdown::read(&root, &mut net, &mut report);
    ifcfg::read(&root, &mut net, &mut report);
    modprobe::read(&root, &mut net, &mut report);
    net.find_bonds();
    unused_bond_options(&net, &mut report);
    sysctl_conf::read(&root, &mut net, &mut report);
    let ves: Vec<vzconf::ImportedVe> = vzconf::ids(&root)
        .into_iter()
        .filter_map(|id| vzconf::ve(&root, id, &global, &mut report))
        .collect();
    if root.files_read() == 0 {
        return Err(ImportError::Nothing(root.dir().to_path_buf()));
    }
    let (mut host, origins) = netdef::host_config(&net, &mut report);
    let neighbour_at = global.neighbour_devs.as_ref().map(|(_, at)| at.clone());
    if let Some((value, at)) = &global.neighbour_devs {
        host.venet.neighbour_devs = neighbour_devs(value, at, &host, &ves, &mut report);
    }
    let mut imported = Imported {
        host,
        origins,
        neighbour_at,
        ves,
    };
    let rendered = render::render_valid(&root.shown(""), &mut imported, &mut report)?;
    Ok(Outcome {
        host_toml: rendered.host_toml,
        ve_files: rendered.ves,
        report,
        counts: render::counts(&imported),
    })
}

/// modprobe options for a bond no interface file declares.
fn unused_bond_options(net: &HostNet, report: &mut Report) {
    for (name, options) in &net.named_module_options {
        let declared = net
            .ifaces
            .iter()
            .any(|i| i.name == *name && i.kind == IfKind::Bond);
        if declared {
            continue;
        }
        if let Some(o) = options.first() {
            report.add(
                &o.at.file,
                o.at.line,
                format!("options {name}"),
                Kind::NotCarried,
                format!("no network file declares a bond {name}"),
            );
        }
    }
}

/// vzctl's `NEIGHBOUR_DEVS`: `detect` (the devices whose subnet holds a VE's
/// venet address), `all` (every device with an IPv4 address) or a list.
fn neighbour_devs(
    value: &str,
    at: &netdef::At,
    host: &netcfg::model::HostConfig,
    ves: &[vzconf::ImportedVe],
    report: &mut Report,
) -> Vec<String> {
    let venet: Vec<IpAddr> = ves
        .iter()
        .filter_map(|v| v.ve.venet.as_ref())
        .flat_map(|v| v.addresses.iter().copied())
        .collect();
    let devices = host
        .bridge
        .iter()
        .map(|b| (&b.name, &b.addresses))
        .chain(host.bond.iter().map(|b| (&b.name, &b.addresses)))
        .chain(host.vlan.iter().map(|b| (&b.name, &b.addresses)))
        .chain(host.ethernet.iter().map(|b| (&b.name, &b.addresses)));
    let out: Vec<String> = match value.trim() {
        "detect" => devices
            .filter(|(_, addrs)| addrs.iter().any(|n| venet.iter().any(|a| n.contains(a))))
            .map(|(name, _)| name.clone())
            .collect(),
        "all" => devices
            .filter(|(_, addrs)| addrs.iter().any(|n| n.addr().is_ipv4()))
            .map(|(name, _)| name.clone())
            .collect(),
        list => list.split_whitespace().map(String::from).collect(),
    };
    if venet.is_empty() {
        report.add(
            &at.file,
            at.line,
            "NEIGHBOUR_DEVS",
            Kind::NoEffect,
            "no VE has venet addresses",
        );
        return Vec::new();
    }
    report.add(
        &at.file,
        at.line,
        "NEIGHBOUR_DEVS",
        Kind::Changed,
        format!(
            "neighbour_devs = {out:?}: vznet answers there for every venet address of every VE, where vzctl chose devices per address"
        ),
    );
    out
}
