//! `lab`: the vznet lab. `lab demo` builds the seed's host in network namespaces
//! and proves it works; `lab bench apply` measures vznet against the shell way.

mod scenario;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// vznet's lab: network-namespace scenarios and benchmarks. Everything runs in
/// namespaces it creates and removes; nothing touches the machine's own network.
#[derive(Debug, Parser)]
#[command(name = "lab", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the seed's picture (a host with a bridge carrying its IP, VEs on veth,
    /// then routed venet VEs) with vznet, show it, prove reachability, clean up.
    Demo {
        /// Instead: a fleet of three hosts run from a three-member etcd cluster
        /// (push, status, a VE moved while a client pings it, a member killed).
        #[arg(long)]
        fleet: bool,
    },
    /// Benchmarks that print side-by-side ratios.
    Bench {
        #[command(subcommand)]
        what: scenario::bench::Bench,
    },
    /// Fault injection: run `vznet apply` for a host with two bridges and N VEs
    /// (veths, IPv4 and IPv6 addresses, gateways, host routes, sysctls), first
    /// from nothing, then to a reduced config that deletes a bridge and half the
    /// VEs, failing at fault point k and dying (SIGKILL) at point k for every k.
    /// A failure must roll back exactly (every namespace's full kernel state
    /// equals the one before); after a kill, the next apply must converge and an
    /// empty config must remove everything vznet made. Prints
    /// `kill points converged N/N, injected failures rolled back exactly N/N`
    /// and every point that did not hold; exits 1 if any did not.
    Faults {
        /// How many VEs.
        #[arg(long, default_value_t = 50)]
        ves: u32,
        /// Try every N-th fault point only (1: every one).
        #[arg(long, default_value_t = 1)]
        stride: usize,
        /// Print the counts and problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Soak: vznetd on a host of ~20 VEs, a routed VE, VRRP against a peer agent
    /// and a load balancer, churned for N minutes (links and VE namespaces
    /// deleted, VEs started again, valid and invalid reloads, failovers, backend
    /// flaps) while invariants are checked; exits 1 on any violation.
    Soak(scenario::soak::Soak),
    /// The VM tier: boot a kernel with bonding and 802.1Q and run scenarios in it.
    Vm {
        #[command(subcommand)]
        cmd: scenario::vm::Vm,
    },
    /// Run the vznetd agent (the lab runs itself as vznetd inside namespaces).
    #[command(hide = true, disable_help_flag = true)]
    Vznetd {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// A load-balancing test backend: `lab backend NAME ADDR:PORT [DOWN_FILE]`.
    #[command(hide = true)]
    Backend {
        /// Name it answers with.
        name: String,
        /// Listen address.
        listen: std::net::SocketAddr,
        /// While this file exists, health GETs answer 503.
        down_file: Option<std::path::PathBuf>,
    },
    /// Run the vznet command (the lab runs itself as vznet inside namespaces).
    #[command(hide = true, disable_help_flag = true)]
    Vznet {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// `lab faults`.
fn faults(ves: u32, stride: usize, json: bool) -> anyhow::Result<()> {
    let opts = lab::faults::Options {
        vznet: lab::faults::lab_as_vznet()?,
        ves,
        stride,
        max_points: None,
        tag: "faults".into(),
    };
    let counts = lab::faults::run(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&counts)?);
    } else {
        for (what, n) in &counts.points {
            println!("{what}: {n} fault points");
        }
        for p in &counts.problems {
            println!("{p}");
        }
        println!("{}", counts.summary());
    }
    anyhow::ensure!(
        counts.problems.is_empty(),
        "{} points did not hold",
        counts.problems.len()
    );
    Ok(())
}

fn main() -> ExitCode {
    // `lab vznet ve start` runs this binary again as the VE's `__ve-init`.
    if std::env::args_os().nth(1).is_some_and(|a| a == "__ve-init") {
        return agent::cli::main_from(std::env::args_os());
    }
    let cli = Cli::parse();
    let res = match cli.command {
        Command::Vznet { args } => {
            let argv = std::iter::once("vznet".into()).chain(args);
            return agent::cli::main_from(argv);
        }
        Command::Vznetd { args } => {
            let argv = std::iter::once("vznetd".into()).chain(args);
            return agent::daemon::main_from(argv);
        }
        Command::Backend {
            name,
            listen,
            down_file,
        } => lab::serve_backend(&name, listen, down_file),
        Command::Demo { fleet: false } => scenario::demo::run(),
        Command::Demo { fleet: true } => scenario::fleet_demo::run(),
        Command::Bench { what } => scenario::bench::run(what),
        Command::Vm { cmd } => scenario::vm::run(cmd),
        Command::Faults { ves, stride, json } => faults(ves, stride, json),
        Command::Soak(opts) => scenario::soak::run(opts),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
