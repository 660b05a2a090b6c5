//! vznet-vrrp's flags are defined in its binary (`vrrp/src/bin/vznet-vrrp.rs`),
//! not in a library: the generator compiles that file as a module so that the
//! man page and completions come from the very definitions the binary parses.

#[allow(dead_code, unused_imports)]
#[path = "../../vrrp/src/bin/vznet-vrrp.rs"]
mod binary;

/// vznet-vrrp's clap command (one instance's flags; `--and` repeats them).
pub fn command() -> clap::Command {
    <binary::InstanceArgs as clap::CommandFactory>::command()
}
