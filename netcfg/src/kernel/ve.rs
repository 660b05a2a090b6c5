//! What the VE runtime asks of the kernel about its VEs' links: deleting the
//! host ends a stopped VE leaves to the kernel's (late) netns cleanup, and
//! reading the links inside a running VE (their MACs, for anti-spoofing).
//! Ownership is told by the alias netcfg gives every VE link
//! ([`crate::desired::ve_alias`], read back by [`crate::unit::ve_of_alias`]).
//!
//! These calls block: each runs a small runtime of its own on the calling
//! thread, so call them from plain threads, never from inside an async runtime.

use std::io;
use std::path::Path;

use super::netns;
use super::state::{read_links, LinkState};
use crate::unit::ve_of_alias;

/// Why a VE's links could not be read or deleted.
#[derive(Debug, thiserror::Error)]
pub enum VeLinkError {
    /// A namespace, socket or runtime could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: io::Error,
    },
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> VeLinkError {
    let what = what.into();
    move |source| VeLinkError::Io { what, source }
}

fn block_on<T>(
    f: impl std::future::Future<Output = Result<T, VeLinkError>>,
) -> Result<T, VeLinkError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err("starting a netlink runtime"))?
        .block_on(f)
}

/// Deletes the links in the calling thread's netns that vznet made for these
/// VEs (a veth's host end: deleting it deletes the pair, and the routes on
/// it go with it). A link already gone is no error. Returns the names deleted.
pub fn delete_host_links(ids: &[u32]) -> Result<Vec<String>, VeLinkError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    block_on(async {
        let h = netns::handle(netns::route_socket().map_err(io_err("netlink socket"))?)
            .map_err(io_err("netlink socket"))?;
        let links = read_links(&h)
            .await
            .map_err(|source| VeLinkError::Netlink {
                what: "listing links".into(),
                source,
            })?;
        let mut deleted = Vec::new();
        for l in links.iter().filter(|l| {
            l.alias
                .as_deref()
                .and_then(ve_of_alias)
                .is_some_and(|id| ids.contains(&id))
        }) {
            match h.link().del(l.index).execute().await {
                Ok(()) => deleted.push(l.name.clone()),
                // Already gone with the netns.
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => {}
                Err(source) => {
                    return Err(VeLinkError::Netlink {
                        what: format!("deleting {}", l.name),
                        source,
                    })
                }
            }
        }
        Ok(deleted)
    })
}

/// The links in the netns at `path` (`/proc/PID/ns/net`).
pub fn links_in(path: &Path) -> Result<Vec<LinkState>, VeLinkError> {
    let what = format!("opening {}", path.display());
    let file = netns::open(path).map_err(io_err(what.clone()))?;
    let fd = netns::route_sockets(vec![file])
        .map_err(io_err(what.clone()))?
        .pop()
        .ok_or_else(|| io_err(what.clone())(io::Error::other("no netlink socket")))?
        .map_err(io_err(what))?;
    block_on(async {
        let h = netns::handle(fd).map_err(io_err("netlink socket"))?;
        read_links(&h).await.map_err(|source| VeLinkError::Netlink {
            what: format!("listing links in {}", path.display()),
            source,
        })
    })
}
