//! User hooks around start and stop: argv from the VE file, run on the host
//! without a shell, with the VE's facts in the environment.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A hook may run this long before it is killed and counted as failed.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// What a hook is told about its VE.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    /// VE id.
    pub id: u32,
    /// `starting`, `running`, `stopping` or `stopped`.
    pub state: &'static str,
    /// Root folder.
    pub root: &'a Path,
    /// Host name.
    pub hostname: &'a str,
    /// The VE file.
    pub config: &'a Path,
    /// Host pid of its init, while it runs.
    pub pid: Option<u32>,
}

/// The VE a hook runs for: what goes into its [`Env`] besides state and pid.
#[derive(Debug, Clone)]
pub struct Subject {
    /// VE id.
    pub id: u32,
    /// Root folder.
    pub root: std::path::PathBuf,
    /// Host name.
    pub hostname: String,
    /// The VE file.
    pub file: std::path::PathBuf,
}

impl Subject {
    /// The environment for a hook run in `state`.
    pub fn env(&self, state: &'static str, pid: Option<u32>) -> Env<'_> {
        Env {
            id: self.id,
            state,
            root: &self.root,
            hostname: &self.hostname,
            config: &self.file,
            pid,
        }
    }
}

/// Runs hook `name` (`pre_start`...) if set; an error if it cannot start, exits
/// non-zero, or outlives [`TIMEOUT`].
pub fn run(name: &str, argv: Option<&Vec<String>>, env: &Env) -> Result<()> {
    let Some(argv) = argv else {
        return Ok(());
    };
    let Some(prog) = argv.first() else {
        bail!("hook {name} is empty");
    };
    let mut cmd = Command::new(prog);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .env("VEID", env.id.to_string())
        .env("VE_STATE", env.state)
        .env("VE_ROOT", env.root)
        .env("VE_HOSTNAME", env.hostname)
        .env("VE_CONFIG", env.config)
        .env("VE_HOOK", name.replace('_', "-"));
    match env.pid {
        Some(p) => cmd.env("VE_PID", p.to_string()),
        None => cmd.env_remove("VE_PID"),
    };
    tracing::info!(hook = name, argv = ?argv, ve = env.id, "running hook");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("hook {name}: cannot run {prog}"))?;
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(st) = child.try_wait()? {
            if st.success() {
                return Ok(());
            }
            bail!("hook {name} ({prog}) failed: {st}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "hook {name} ({prog}) ran longer than {} s and was killed",
                TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
