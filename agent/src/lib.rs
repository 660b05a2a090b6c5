//! vznet's binaries share this library: the `vznet` command's subcommands.

pub mod cli;
