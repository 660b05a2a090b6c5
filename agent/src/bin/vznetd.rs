//! `vznetd`: the boot-time agent that keeps the host's network as declared.

fn main() -> std::process::ExitCode {
    agent::daemon::main()
}
