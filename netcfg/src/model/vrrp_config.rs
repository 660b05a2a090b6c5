//! The VRRP tables of `host.toml`: `[[vrrp]]`, `[[vrrp_script]]` and
//! `[[vrrp_sync_group]]`. Their types and their checks are the vrrp crate's
//! ([`vrrp::settings`]), the one definition vznetd and `vznet-vrrp` share; the host
//! config holds them and locates their errors.

use vrrp::settings::{FieldPath, Segment, Settings};

use super::{HostConfig, KeyPath};

impl HostConfig {
    /// The VRRP settings of this host.
    pub fn vrrp_settings(&self) -> Settings {
        Settings {
            vrrp: self.vrrp.clone(),
            vrrp_script: self.vrrp_script.clone(),
            vrrp_sync_group: self.vrrp_sync_group.clone(),
        }
    }
}

/// The key path of a VRRP settings field, for [`super::SourceFile::locate`].
pub(super) fn key_path(field: &FieldPath) -> KeyPath {
    let mut p = KeyPath::default();
    for s in &field.0 {
        p = match s {
            Segment::Key(k) => p.k(k),
            Segment::Index(i) => p.i(*i),
        };
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_become_key_paths() {
        let f = FieldPath::key("vrrp").i(2).k("track_script").i(0);
        assert_eq!(key_path(&f).to_string(), "vrrp[2].track_script[0]");
    }
}
