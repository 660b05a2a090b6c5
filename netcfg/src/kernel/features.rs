//! What the running kernel can do, found by trying: each probe creates a link in a
//! throw-away netns on a helper thread, so the host is never touched.

use std::io;

use netlink_packet_route::link::LinkMessage;
use serde::Serialize;

use super::netns;

/// A link type vznet may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Feature {
    /// Bonding driver.
    Bonding,
    /// 802.1Q VLANs.
    Vlan,
    /// Bridges.
    Bridge,
    /// veth pairs.
    Veth,
}

impl Feature {
    /// The kernel config option that provides it.
    pub fn config_option(self) -> &'static str {
        match self {
            Feature::Bonding => "CONFIG_BONDING",
            Feature::Vlan => "CONFIG_VLAN_8021Q",
            Feature::Bridge => "CONFIG_BRIDGE",
            Feature::Veth => "CONFIG_VETH",
        }
    }

    /// A human name.
    pub fn name(self) -> &'static str {
        match self {
            Feature::Bonding => "bonding",
            Feature::Vlan => "802.1Q VLAN",
            Feature::Bridge => "bridge",
            Feature::Veth => "veth",
        }
    }

    /// `lower` is an Ethernet link for probes that need one (loopback refuses
    /// VLANs with the same EOPNOTSUPP as a kernel without 8021q).
    fn probe_message(self, lower: u32) -> LinkMessage {
        match self {
            Feature::Bonding => rtnetlink::LinkBond::new("vzprobe0").build(),
            Feature::Vlan => rtnetlink::LinkVlan::new("vzprobe0", lower, 2).build(),
            Feature::Bridge => rtnetlink::LinkBridge::new("vzprobe0").build(),
            Feature::Veth => rtnetlink::LinkVeth::new("vzprobe0", "vzprobe1").build(),
        }
    }
}

/// Whether the kernel supports each of `features`, in order.
pub fn probe(features: &[Feature]) -> io::Result<Vec<bool>> {
    let features = features.to_vec();
    std::thread::spawn(move || -> io::Result<Vec<bool>> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        let fd = netns::route_socket()?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let handle = netns::handle(fd)?;
            let lower_msg = rtnetlink::LinkBridge::new("vzprobel").build();
            let lower = match handle.link().add(lower_msg).execute().await {
                Ok(()) => super::state::read_link(&handle, "vzprobel")
                    .await
                    .ok()
                    .flatten()
                    .map_or(1, |l| l.index),
                Err(_) => 1,
            };
            let mut out = Vec::new();
            for f in features {
                let res = handle.link().add(f.probe_message(lower)).execute().await;
                out.push(match res {
                    Ok(()) => true,
                    Err(rtnetlink::Error::NetlinkError(e))
                        if [-libc::EOPNOTSUPP, -libc::ENOENT, -libc::EINVAL]
                            .contains(&e.raw_code()) =>
                    {
                        // EOPNOTSUPP: "Unknown device type"; anything else here
                        // means the type exists but disliked the probe.
                        e.raw_code() != -libc::EOPNOTSUPP
                    }
                    Err(_) => true,
                });
                if let Ok(Some(l)) = super::state::read_link(&handle, "vzprobe0").await {
                    let _ = handle.link().del(l.index).execute().await;
                }
            }
            Ok(out)
        })
    })
    .join()
    .map_err(|_| io::Error::other("feature probe thread panicked"))?
}
