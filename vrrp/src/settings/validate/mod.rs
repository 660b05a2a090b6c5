//! Every check of VRRP settings, each naming its field: here what spans instances
//! (names, VRIDs), in [`instance`] one instance's own fields, in [`track`] tracking,
//! scripts and sync groups.

mod instance;
mod track;

use std::collections::BTreeMap;

use super::track::TrackInterface;
use super::{FieldPath, Settings, SettingsError};
use crate::wire::AddressFamily;
use instance::check_instance;
use track::{check_script, check_sync_group};

pub(super) struct Checker {
    errors: Vec<SettingsError>,
}

impl Checker {
    pub(super) fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.errors.push(SettingsError {
            path,
            message: message.into(),
        });
    }

    pub(super) fn range(&mut self, path: FieldPath, what: &str, value: i64, min: i64, max: i64) {
        if !(min..=max).contains(&value) {
            self.error(
                path,
                format!("{what} {value} is out of range: use {min}..{max}"),
            );
        }
    }
}

pub(super) fn validate(s: &Settings) -> Vec<SettingsError> {
    let mut c = Checker { errors: Vec::new() };
    let mut names: BTreeMap<&str, FieldPath> = BTreeMap::new();
    let mut vrids: BTreeMap<(&str, u8, bool), FieldPath> = BTreeMap::new();
    for (i, v) in s.vrrp.iter().enumerate() {
        let p = FieldPath::key("vrrp").i(i);
        let group = s.sync_group_of(&v.name);
        check_instance(&mut c, s, &p, v, group);
        if let Some(first) = names.insert(&v.name, p.k("name")) {
            c.error(
                p.k("name"),
                format!(
                    "duplicate VRRP instance name {:?} (also at {first})",
                    v.name
                ),
            );
        }
        if let Some(first) = vrids.insert(
            (&v.interface, v.vrid, v.family() == AddressFamily::Ipv4),
            p.k("vrid"),
        ) {
            c.error(
                p.k("vrid"),
                format!(
                    "VRID {} is already used on {} for this address family (at {first})",
                    v.vrid, v.interface
                ),
            );
        }
    }
    let mut script_names: BTreeMap<&str, FieldPath> = BTreeMap::new();
    for (i, script) in s.vrrp_script.iter().enumerate() {
        let p = FieldPath::key("vrrp_script").i(i);
        check_script(&mut c, &p, script);
        if let Some(first) = script_names.insert(&script.name, p.k("name")) {
            c.error(
                p.k("name"),
                format!(
                    "duplicate vrrp_script name {:?} (also at {first})",
                    script.name
                ),
            );
        }
    }
    let mut group_names: BTreeMap<&str, FieldPath> = BTreeMap::new();
    let mut membership: BTreeMap<&str, FieldPath> = BTreeMap::new();
    for (i, g) in s.vrrp_sync_group.iter().enumerate() {
        let p = FieldPath::key("vrrp_sync_group").i(i);
        check_sync_group(&mut c, s, &p, g, &mut membership);
        if let Some(first) = group_names.insert(&g.name, p.k("name")) {
            c.error(
                p.k("name"),
                format!("duplicate sync group name {:?} (also at {first})", g.name),
            );
        }
    }
    c.errors
}

/// The fields that hold interface names.
pub(super) fn interface_names(s: &Settings) -> Vec<(FieldPath, &str)> {
    fn tracked<'a>(
        out: &mut Vec<(FieldPath, &'a str)>,
        p: &FieldPath,
        track: &'a [TrackInterface],
    ) {
        for (j, t) in track.iter().enumerate() {
            out.push((p.k("track").i(j), t.interface.as_str()));
        }
    }
    let mut out = Vec::new();
    for (i, v) in s.vrrp.iter().enumerate() {
        let p = FieldPath::key("vrrp").i(i);
        out.push((p.k("interface"), v.interface.as_str()));
        for (key, vips) in [
            ("virtual_ips", &v.virtual_ips),
            ("virtual_ips_excluded", &v.virtual_ips_excluded),
        ] {
            for (j, vip) in vips.iter().enumerate() {
                if let Some(dev) = &vip.dev {
                    out.push((p.k(key).i(j).k("dev"), dev.as_str()));
                }
            }
        }
        for (j, r) in v.virtual_routes.iter().enumerate() {
            if let Some(dev) = &r.dev {
                out.push((p.k("virtual_routes").i(j).k("dev"), dev.as_str()));
            }
        }
        for (j, r) in v.virtual_rules.iter().enumerate() {
            for (key, name) in [("iif", &r.iif), ("oif", &r.oif)] {
                if let Some(name) = name {
                    out.push((p.k("virtual_rules").i(j).k(key), name.as_str()));
                }
            }
        }
        tracked(&mut out, &p, &v.track);
    }
    for (i, g) in s.vrrp_sync_group.iter().enumerate() {
        tracked(&mut out, &FieldPath::key("vrrp_sync_group").i(i), &g.track);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{
        Instance, RouteKind, Script, ScriptCommand, Settings, SyncGroup, TrackScript, VirtualIp,
        VirtualRoute,
    };
    use super::*;
    use crate::wire::Version;

    fn vip(s: &str) -> VirtualIp {
        VirtualIp::new(s.parse().expect("literal"))
    }

    fn settings() -> Settings {
        Settings {
            vrrp: vec![Instance::new(
                "VI_1",
                "eth0",
                51,
                vec![vip("192.0.2.100/24")],
            )],
            ..Settings::default()
        }
    }

    fn paths(s: &Settings) -> Vec<String> {
        s.validate().iter().map(|e| e.path.to_string()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(settings().validate(), vec![]);
    }

    #[test]
    fn every_error_names_its_field() {
        let mut s = settings();
        s.vrrp[0].vrid = 0;
        s.vrrp[0].advert_interval_ms = 105;
        s.vrrp[0].virtual_ips.push(vip("fd00::1/128"));
        s.vrrp[0].virtual_ips_excluded.push(VirtualIp {
            label: Some("eth1:x".into()),
            ..vip("192.0.2.7/32")
        });
        s.vrrp[0].track_script.push(TrackScript::new("missing"));
        s.vrrp[0].notify_stop = vec!["stop.sh".into()];
        assert_eq!(
            paths(&s),
            [
                "vrrp[0].vrid",
                "vrrp[0].advert_interval_ms",
                "vrrp[0].virtual_ips",
                "vrrp[0].virtual_ips_excluded[0].label",
                "vrrp[0].track_script[0]",
                "vrrp[0].notify_stop",
            ]
        );
    }

    #[test]
    fn strict_mode_refuses_what_the_rfcs_do_not_have() {
        let mut s = settings();
        s.vrrp[0].strict = true;
        s.vrrp[0].unicast_peers = vec!["192.0.2.2".parse().expect("literal")];
        s.vrrp[0].preempt_delay_ms = 100;
        s.vrrp[0].version = Version::V2;
        s.vrrp[0].password = Some("pw".into());
        s.vrrp[0].accept = Some(true);
        assert_eq!(
            paths(&s),
            [
                "vrrp[0].unicast_peers",
                "vrrp[0].password",
                "vrrp[0].preempt_delay_ms",
                "vrrp[0].accept",
            ]
        );
        let mut s = settings();
        s.vrrp[0].strict = true;
        s.vrrp[0].virtual_ips = vec![vip("fd00::100/64"), vip("fe80::100/64")];
        assert_eq!(paths(&s), ["vrrp[0].virtual_ips[0]"]);
        s.vrrp[0].virtual_ips.reverse();
        assert_eq!(paths(&s), Vec::<String>::new());
    }

    #[test]
    fn scripts_and_groups_are_cross_checked() {
        let mut s = settings();
        let mut second = s.vrrp[0].clone();
        second.name = "VI_2".into();
        second.vrid = 52;
        second.track_script = vec![TrackScript {
            weight: Some(-20),
            ..TrackScript::new("chk")
        }];
        s.vrrp.push(second);
        s.vrrp_script
            .push(Script::new("chk", ScriptCommand::Shell("true".into())));
        s.vrrp_script.push(Script {
            rise: 0,
            ..Script::new("chk", ScriptCommand::Argv(vec!["true".into()]))
        });
        s.vrrp_sync_group.push(SyncGroup::new(
            "G",
            vec!["VI_1".into(), "VI_2".into(), "VI_9".into()],
        ));
        s.vrrp_sync_group
            .push(SyncGroup::new("H", vec!["VI_1".into()]));
        assert_eq!(
            paths(&s),
            [
                // A weighted script on a group member.
                "vrrp[1].track_script[0]",
                "vrrp_script[1].script",
                "vrrp_script[1].rise",
                "vrrp_script[1].name",
                "vrrp_sync_group[0].group[2]",
                "vrrp_sync_group[1].group[0]",
            ]
        );
        s.vrrp_sync_group[0].tracking_weight = true;
        assert_eq!(paths(&s).len(), 5);
    }

    #[test]
    fn owner_refuses_weights_and_routes_are_checked() {
        let mut s = settings();
        s.vrrp[0].priority = 255;
        s.vrrp[0].track = vec![TrackInterface {
            weight: -50,
            ..TrackInterface::new("eth1")
        }];
        s.vrrp[0].virtual_routes = vec![
            VirtualRoute {
                to: "10.1.0.1/16".parse().expect("literal"),
                via: Some("fd00::1".parse().expect("literal")),
                dev: None,
                src: None,
                metric: None,
                table: None,
                scope: None,
                kind: RouteKind::Unicast,
            },
            VirtualRoute {
                to: "10.2.0.0/16".parse().expect("literal"),
                via: None,
                dev: Some("eth0".into()),
                src: None,
                metric: None,
                table: Some(100),
                scope: None,
                kind: RouteKind::Blackhole,
            },
        ];
        assert_eq!(
            paths(&s),
            [
                "vrrp[0].track[0]",
                "vrrp[0].virtual_routes[0].to",
                "vrrp[0].virtual_routes[0].via",
                "vrrp[0].virtual_routes[1].type",
            ]
        );
        let names: Vec<String> = s
            .interface_names()
            .iter()
            .map(|(p, n)| format!("{p}={n}"))
            .collect();
        assert_eq!(
            names,
            [
                "vrrp[0].interface=eth0",
                "vrrp[0].virtual_routes[1].dev=eth0",
                "vrrp[0].track[0]=eth1",
            ]
        );
    }
}
