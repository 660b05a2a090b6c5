//! A small container runtime: a VE is a root folder plus its own mount, UTS, IPC,
//! network and PID namespaces. Starting one wires its network with netcfg (the
//! VE's netns is `/proc/PID/ns/net` of its init); stopping it ends the netns, and
//! with it every veth pair and route that hung on it.
//!
//! State lives in `STATE/run/ID.pid` (the init's host pid and start time) and
//! `STATE/private/ID` (the default root).

mod init;
mod runtime;
mod template;

pub use init::init_main;
pub use runtime::{exec, list, overlay_running, running, start, stop, VeInfo};
pub use template::{create, destroy};
