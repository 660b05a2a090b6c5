//! `vznet`: plan, apply, show and check a host's declared network.

fn main() -> std::process::ExitCode {
    agent::cli::main()
}
