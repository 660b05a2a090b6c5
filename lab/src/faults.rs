//! The fault-injection harness behind `lab faults` and the fault test: a
//! realistic host (two bridges, VEs on veths with IPv4 and IPv6 addresses,
//! gateways, host routes and per-link sysctls) in lab namespaces, and the real
//! `vznet apply` run with `VZNET_FAULT` (agent feature `faults`) failing or
//! dying at a fault point k, for every k (or a sample):
//!
//! - an injected failure at k must roll back exactly: the [`Snapshot`] of every
//!   namespace equals the one read before the apply;
//! - a SIGKILL at k must leave a state the next apply converges from (after it
//!   the plan is empty), and from which an empty config removes everything
//!   vznet made (the snapshot equals the one before vznet ever ran).
//!
//! Two transitions are tried: nothing -> the full config (every op makes
//! something), and the full config -> a reduced one (one bridge and its VEs go,
//! other VEs change addresses: deletions whose inverses must make links again
//! in their VE namespaces, with addresses, routes, ports and sysctls).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{ensure, Context, Result};

use crate::{Host, Lab, Snapshot};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The vznet command (built with the agent's `faults` feature), argv
    /// before `apply`: `[vznet]` or `[lab, vznet]`.
    pub vznet: Vec<OsString>,
    /// How many VEs.
    pub ves: u32,
    /// Try every `stride`-th fault point (1: every one).
    pub stride: usize,
    /// At most about this many points per transition (the stride grows to
    /// fit); `None`: as `stride` says.
    pub max_points: Option<usize>,
    /// Lab name prefix (unique per caller).
    pub tag: String,
}

/// The outcome, per transition and mode.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Fault points of each transition's plan (`create`, `change`).
    pub points: Vec<(String, usize)>,
    /// Kill points tried.
    pub kill_total: usize,
    /// Kill points after which the next apply converged and an empty config
    /// left the kernel as before.
    pub kill_converged: usize,
    /// Injected failures tried.
    pub fail_total: usize,
    /// Injected failures whose rollback left every namespace exactly as before.
    pub fail_exact: usize,
    /// One line per point that did not hold, with what differed.
    pub problems: Vec<String>,
}

impl Counts {
    /// The line the issue asks for.
    pub fn summary(&self) -> String {
        format!(
            "kill points converged {}/{}, injected failures rolled back exactly {}/{}",
            self.kill_converged, self.kill_total, self.fail_exact, self.fail_total
        )
    }
}

/// A host namespace and one per VE, and the vznet command run in the host
/// one: what a fault harness applies configs on and reads states of (this
/// module's and tests/tests/faults_prop.rs's).
#[derive(Debug)]
pub struct Hosts {
    _lab: Lab,
    /// The host namespace, where vznet runs.
    pub host: Host,
    /// One namespace per VE.
    pub ves: Vec<Host>,
    vznet: Vec<OsString>,
}

impl Hosts {
    /// `ves` VE namespaces and the host one, in a lab named `tag`, running
    /// `vznet` (argv before the subcommand).
    pub fn new(tag: &str, ves: usize, vznet: Vec<OsString>) -> Result<Hosts> {
        let lab = Lab::new(tag)?;
        let host = lab.host("host")?;
        let ves = (0..ves)
            .map(|i| lab.host(&format!("v{i}")))
            .collect::<Result<Vec<_>>>()?;
        // IPv6 addresses skip duplicate address detection: its end (a local
        // route appearing a second later) would make snapshots taken right
        // after an apply differ for reasons that are not vznet's.
        for h in std::iter::once(&host).chain(&ves) {
            h.run(["sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0"])?;
        }
        Ok(Hosts {
            _lab: lab,
            host,
            ves,
            vznet,
        })
    }

    /// Every namespace's state.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let mut all = vec![("host".to_string(), self.host.netns_path())];
        all.extend(
            self.ves
                .iter()
                .map(|v| (v.name().to_string(), v.netns_path())),
        );
        Snapshot::read(&all)
    }

    /// Every namespace's state once the kernel has finished what it does on
    /// its own after links come up (IPv6 multicast routes, link-local
    /// addresses): two reads 200 ms apart that agree, for at most 5 s.
    pub fn settled(&self) -> Result<Snapshot> {
        let mut last = self.snapshot()?;
        for _ in 0..25 {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let now = self.snapshot()?;
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }

    /// `vznet apply` for `dir` in the host namespace, `fault` in VZNET_FAULT.
    pub fn apply(&self, dir: &Path, fault: Option<&str>) -> Result<Output> {
        let mut argv: Vec<OsString> = vec!["env".into()];
        if let Some(f) = fault {
            argv.push(format!("VZNET_FAULT={f}").into());
        }
        argv.extend(self.vznet.iter().cloned());
        argv.extend(["apply".into(), "--config-dir".into(), dir.into()]);
        self.host.exec(argv)
    }

    /// `vznet apply` for `dir`, which must succeed.
    pub fn apply_ok(&self, dir: &Path) -> Result<()> {
        let out = self.apply(dir, None)?;
        ensure!(
            out.status.success(),
            "vznet apply {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Applies `dir` counting fault points; leaves it applied.
    pub fn count(&self, dir: &Path) -> Result<usize> {
        let out = self.apply(dir, Some("count"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.success(), "vznet apply (count): {err}");
        err.lines()
            .find_map(|l| l.strip_prefix("fault points: "))
            .context("no fault count: is vznet built with the faults feature?")?
            .trim()
            .parse()
            .context("fault count")
    }
}

/// The hosts of the harness and three config folders.
struct Rig {
    hosts: Hosts,
    full: tempfile::TempDir,
    reduced: tempfile::TempDir,
    empty: tempfile::TempDir,
}

impl std::ops::Deref for Rig {
    type Target = Hosts;
    fn deref(&self) -> &Hosts {
        &self.hosts
    }
}

/// Runs the harness.
pub fn run(opts: &Options) -> Result<Counts> {
    let rig = Rig::new(opts)?;
    let mut counts = Counts::default();
    let pristine = rig.settled()?;

    // nothing -> full
    let n = rig.count(rig.full.path())?;
    rig.apply_ok(rig.empty.path())?;
    counts.points.push(("create".into(), n));
    let mut before = pristine.clone();
    for k in sample(n, opts) {
        let dirs = (rig.empty.path(), rig.full.path());
        rig.fail_at(k, dirs, &mut before, "create", &mut counts)?;
        rig.kill_at(k, rig.full.path(), &pristine, "create", &mut counts)?;
    }

    // full -> reduced
    rig.apply_ok(rig.full.path())?;
    let n = rig.count(rig.reduced.path())?;
    rig.apply_ok(rig.full.path())?;
    counts.points.push(("change".into(), n));
    let mut before = rig.settled()?;
    for k in sample(n, opts) {
        let dirs = (rig.full.path(), rig.reduced.path());
        rig.fail_at(k, dirs, &mut before, "change", &mut counts)?;
    }
    for k in sample(n, opts) {
        rig.apply_ok(rig.full.path())?;
        rig.kill_at(k, rig.reduced.path(), &pristine, "change", &mut counts)?;
    }
    Ok(counts)
}

/// Every `stride`-th point of `n` (fewer if `max_points` says so), and always
/// the last.
fn sample(n: usize, opts: &Options) -> Vec<usize> {
    let fit = opts.max_points.map_or(1, |m| n.div_ceil(m.max(1)));
    let stride = opts.stride.max(fit).max(1);
    let mut ks: Vec<usize> = (0..n).step_by(stride).collect();
    if n > 0 && ks.last() != Some(&(n - 1)) {
        ks.push(n - 1);
    }
    ks
}

impl Rig {
    fn new(opts: &Options) -> Result<Rig> {
        let rig = Rig {
            hosts: Hosts::new(&opts.tag, opts.ves as usize, opts.vznet.clone())?,
            full: config_dir()?,
            reduced: config_dir()?,
            empty: config_dir()?,
        };
        rig.write_configs()?;
        Ok(rig)
    }

    /// The full config: br0 and br1, VE i on br(i % 2), routes to five of
    /// them; the reduced one drops br1 with its VEs and the host routes through
    /// them, and renumbers every fourth VE.
    fn write_configs(&self) -> Result<()> {
        let mut full = String::from(
            "[[bridge]]\nname = \"br0\"\naddresses = [\"10.200.0.1/16\", \"fd20::1/64\"]\n\n\
             [[bridge]]\nname = \"br1\"\naddresses = [\"10.201.0.1/16\"]\n",
        );
        let mut reduced = String::from(
            "[[bridge]]\nname = \"br0\"\naddresses = [\"10.200.0.1/16\", \"fd20::1/64\"]\n",
        );
        for (i, _) in self.ves.iter().enumerate().take(6) {
            let (net, via) = (i % 2, 10 + i);
            let route =
                format!("\n[[route]]\nto = \"10.210.{i}.0/24\"\nvia = \"10.20{net}.0.{via}\"\n");
            full.push_str(&route);
            if net == 0 {
                reduced.push_str(&route);
            }
        }
        std::fs::write(self.full.path().join("host.toml"), full)?;
        std::fs::write(self.reduced.path().join("host.toml"), reduced)?;
        std::fs::write(self.empty.path().join("host.toml"), "")?;
        for (i, ve) in self.ves.iter().enumerate() {
            let id = 1000 + i;
            let net = i % 2;
            let file = format!("ve/{id}.toml");
            std::fs::write(
                self.full.path().join(&file),
                ve_config(id, ve, net, i, false),
            )?;
            if net == 0 {
                let text = ve_config(id, ve, net, i, i.is_multiple_of(4));
                std::fs::write(self.reduced.path().join(&file), text)?;
            }
        }
        Ok(())
    }

    /// Whether the plan for `dir` is empty.
    fn converged(&self, dir: &Path) -> Result<Option<String>> {
        let mut argv = self.vznet.clone();
        argv.extend(["plan".into(), "--config-dir".into(), dir.into()]);
        let out = self.host.exec(argv)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.lines().last() == Some("0 changes") {
            return Ok(None);
        }
        Ok(Some(format!(
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// An injected failure at point `k` of applying `dir` over state `before`
    /// (what `from` made). When it does not hold, `from` is applied again and
    /// `before` read again, so the next point starts where it expects.
    fn fail_at(
        &self,
        k: usize,
        (from, dir): (&Path, &Path),
        before: &mut Snapshot,
        what: &str,
        counts: &mut Counts,
    ) -> Result<()> {
        counts.fail_total += 1;
        let out = self.apply(dir, Some(&format!("fail:{k}")))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(1) || !err.contains("injected failure") {
            counts.problems.push(format!(
                "{what} fail:{k}: exit {:?}: {}",
                out.status.code(),
                err.trim()
            ));
            self.apply_ok(from)?;
            *before = self.settled()?;
            return Ok(());
        }
        let diff = before.diff(&self.settled()?);
        if diff.is_empty() {
            counts.fail_exact += 1;
        } else {
            counts.problems.push(format!(
                "{what} fail:{k}: not rolled back exactly ({}):\n  {}",
                err.trim(),
                diff.join("\n  ")
            ));
            self.apply_ok(from)?;
            *before = self.settled()?;
        }
        Ok(())
    }

    /// A SIGKILL at point `k` of applying `dir`: the next apply converges and
    /// an empty config brings back `pristine`.
    fn kill_at(
        &self,
        k: usize,
        dir: &Path,
        pristine: &Snapshot,
        what: &str,
        counts: &mut Counts,
    ) -> Result<()> {
        use std::os::unix::process::ExitStatusExt;
        counts.kill_total += 1;
        let out = self.apply(dir, Some(&format!("kill:{k}")))?;
        let mut problem = String::new();
        if out.status.signal() != Some(libc::SIGKILL) {
            let _ = write!(
                problem,
                "not killed ({:?}): {}; ",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let again = self.apply(dir, None)?;
        if !again.status.success() {
            let _ = write!(
                problem,
                "the next apply failed: {}",
                String::from_utf8_lossy(&again.stderr).trim()
            );
        } else if let Some(left) = self.converged(dir)? {
            let _ = write!(problem, "the next apply did not converge: {left}");
        }
        let emptied = self.apply(self.empty.path(), None)?;
        if !emptied.status.success() {
            let _ = write!(
                problem,
                "; an empty config failed: {}",
                String::from_utf8_lossy(&emptied.stderr).trim()
            );
        } else {
            let diff = pristine.diff(&self.settled()?);
            if !diff.is_empty() {
                let _ = write!(problem, "; an empty config left:\n  {}", diff.join("\n  "));
            }
        }
        if problem.is_empty() {
            counts.kill_converged += 1;
        } else {
            counts.problems.push(format!("{what} kill:{k}: {problem}"));
            self.sweep()?;
        }
        Ok(())
    }

    /// After a kill that did not converge: removes what is left by hand (every
    /// link but lo in every namespace) so the next point starts clean.
    fn sweep(&self) -> Result<()> {
        for h in std::iter::once(&self.host).chain(&self.ves) {
            for l in h.links()? {
                if l.name != "lo" {
                    // Gone with its peer already: not an error.
                    let _ = h.ip(["link", "del", &l.name]);
                }
            }
        }
        Ok(())
    }
}

fn config_dir() -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::create_dir(dir.path().join("ve"))?;
    Ok(dir)
}

/// VE `id` in namespace `ve` on bridge br`net`, number `i`; `moved` renumbers it.
fn ve_config(id: usize, ve: &Host, net: usize, i: usize, moved: bool) -> String {
    let host_part = if moved { 100 + i } else { 10 + i };
    let v6 = if net == 0 {
        format!(", \"fd20::{:x}/64\"", 10 + i)
    } else {
        String::new()
    };
    let mut text = format!(
        "id = {id}\nnetns = \"{}\"\n\n[[netif]]\nname = \"eth0\"\nbridge = \"br{net}\"\n\
         addresses = [\"10.20{net}.0.{host_part}/16\"{v6}]\ngateway = \"10.20{net}.0.1\"\n\
         sysctl = {{ forwarding = 1, proxy_arp = 1 }}\n",
        ve.name()
    );
    if i.is_multiple_of(5) {
        // A second address on its own (a routed service address).
        text = text.replace("/16\"", &format!("/16\", \"10.220.{}.{}/32\"", net, 10 + i));
    }
    text
}

/// The argv of this process as vznet (`lab vznet`).
pub fn lab_as_vznet() -> Result<Vec<OsString>> {
    let me: PathBuf = std::env::current_exe().context("finding the lab binary")?;
    Ok(vec![me.into(), "vznet".into()])
}
