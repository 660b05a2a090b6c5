//! vznet's lab, host tier: test topologies made of network namespaces.
//!
//! A [`Lab`] builds [`Host`]s (namespaces) and [`Switch`]es (namespaces holding a bridge)
//! and joins them, or the root namespace, with veth links. It runs commands and background
//! processes inside them and tears everything down when dropped, even when the test panics.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let lab = lab::Lab::new("two_hosts_ping")?;
//! let sw = lab.switch("sw")?;
//! let (a, b) = (lab.host("a")?, lab.host("b")?);
//! lab.link(&a, "eth0", &sw, "p1")?;
//! lab.link(&b, "eth0", &sw, "p2")?;
//! a.add_address("eth0", "10.0.0.1/24")?;
//! b.add_address("eth0", "10.0.0.2/24")?;
//! assert!(a.ping("10.0.0.2"));
//! # Ok(()) }
//! ```
//!
//! Parallel test processes are safe: each lab reserves a unique prefix through a marker
//! file under `/run/vznet-lab`, and every namespace and root-namespace interface it makes
//! carries that prefix. Leftovers of crashed processes are removed by
//! [`Lab::sweep_stale`], which the first lab of each process runs.
//!
//! Requirements: root, iproute2 and iputils `ping`; tests must unwind on panic (no
//! `panic = "abort"`), or teardown never runs.

#![warn(missing_docs)]

mod address;
mod advert;
mod attribute;
mod command;
pub mod etcd;
pub mod faults;
pub mod fleet;
mod host;
mod keepalived;
mod lab;
mod link;
mod marker;
mod name;
mod netns;
mod process;
mod service;
mod snapshot;
mod sweep;

use std::time::{Duration, Instant};

pub use address::Address;
pub use advert::{AdvertWatch, Adverts};
pub use attribute::{AttributeCase, Read, Runner, Source};
pub use command::CommandError;
pub use host::{Endpoint, Host, Root, Switch};
pub use keepalived::{keepalived_path, spawn_keepalived, spawn_keepalived_with};
pub use lab::Lab;
pub use link::LinkInfo;
pub use name::{IFNAME_MAX, IFNAME_SUFFIX_MAX};
pub use process::Process;
pub use service::{ask_name, in_netns, serve_backend, KeepAlive};
pub use snapshot::Snapshot;
pub use sweep::SweepReport;

/// Calls `condition` every `poll_interval` until it returns true or `timeout` passes;
/// returns whether it did. The condition is always tried at least once, and once more at
/// the deadline.
pub fn wait_until(
    timeout: Duration,
    poll_interval: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(poll_interval.min(deadline - now));
    }
}

#[cfg(test)]
mod tests;
