//! A small container runtime: a VE is a root folder plus its own mount, UTS, IPC,
//! network and PID namespaces. Starting one wires its network with netcfg (the
//! VE's netns is `/proc/PID/ns/net` of its init); stopping it ends the netns, and
//! with it every veth pair and route that hung on it.
//!
//! State lives in `STATE/run/ID.pid` (the init's host pid and start time),
//! `STATE/run/ID.cgroup` (its cgroup folders), `STATE/run/ID.live.toml` (live
//! changes by `vznet ve set` without `--save`) and `STATE/private/ID` (the
//! default root).

pub mod antispoof;
pub mod boot;
pub mod cgroup;
pub mod change;
mod enter;
pub mod etc;
pub mod firewall;
pub mod hook;
mod info;
mod init;
pub mod overlay;
mod runtime;
mod template;

pub use enter::{enter, exec};
pub use info::{list, presence, Presence, VeInfo};
pub use init::init_main;
pub use runtime::{overlay_running, root_of, running, start, stop, ve_file};
pub use template::{create, destroy};
