//! vznet's binaries share this library: the `vznet` command's subcommands.

pub mod cli;
pub mod control;
pub mod daemon;
pub mod fleet;
pub mod import;
pub mod lb;
pub mod status;
pub mod ve;
