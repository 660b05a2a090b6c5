//! The `vznetd` agent, built inside the test package for the end-to-end tests.

fn main() -> std::process::ExitCode {
    agent::daemon::main()
}
