//! What the running kernel can do, found by trying: each probe creates a link in a
//! throw-away netns on a helper thread, so the host is never touched.

use std::io;

use netlink_packet_route::link::LinkMessage;
use serde::Serialize;

use super::netns;

/// The name probe links get in their throw-away netns.
pub const PROBE_NAME: &str = "vzprobe0";

/// Something a link kind needs from the kernel. Each kind's module defines its
/// own (`link::bond::FEATURE`...), with a message that makes a probe link.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Feature {
    /// A human name.
    pub name: &'static str,
    /// The kernel config option that provides it.
    pub option: &'static str,
    /// A request that makes a link needing the feature, named [`PROBE_NAME`];
    /// `lower` is an Ethernet link for kinds that need one.
    #[serde(skip)]
    pub probe: fn(lower: u32) -> LinkMessage,
}

impl PartialEq for Feature {
    fn eq(&self, other: &Feature) -> bool {
        (self.name, self.option) == (other.name, other.option)
    }
}

impl Eq for Feature {}

impl Feature {
    /// The kernel config option that provides it.
    pub fn config_option(self) -> &'static str {
        self.option
    }

    /// A human name.
    pub fn name(self) -> &'static str {
        self.name
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
                let res = handle.link().add((f.probe)(lower)).execute().await;
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
                if let Ok(Some(l)) = super::state::read_link(&handle, PROBE_NAME).await {
                    let _ = handle.link().del(l.index).execute().await;
                }
            }
            Ok(out)
        })
    })
    .join()
    .map_err(|_| io::Error::other("feature probe thread panicked"))?
}
