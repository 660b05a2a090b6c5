//! A small container runtime: a VE is a root folder plus its own mount, UTS, IPC,
//! network and PID namespaces. Starting one wires its network with netcfg (the
//! VE's netns is `/proc/PID/ns/net` of its init); stopping it ends the netns, and
//! with it every veth pair and route that hung on it.
//!
//! State lives in `STATE/run/ID.pid` (the init's host pid and start time),
//! `STATE/run/ID.cgroup` (its cgroup folders), `STATE/run/ID.live.toml` (live
//! changes by `vznet ve set` without `--save`) and `STATE/private/ID` (the
//! default root).

pub mod cgroup;
pub mod change;
mod enter;
pub mod firewall;
pub mod hook;
mod init;
mod runtime;
mod template;

pub use enter::{enter, exec};
pub use init::init_main;
pub use runtime::{list, overlay_running, root_of, running, start, stop, ve_file, VeInfo};
pub use template::{create, destroy};
