//! The `vznet` command, built inside the test package for the end-to-end tests.

fn main() -> std::process::ExitCode {
    agent::cli::main()
}
