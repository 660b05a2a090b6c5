//! One config attribute's life under vznet, the same steps for every attribute
//! (netns tests on this kernel, VM scenarios for what it lacks):
//!
//! 1. declared: apply, and the kernel has the value;
//! 2. changed in the config: `plan` shows exactly one op, apply, the kernel has
//!    the new value;
//! 3. changed behind vznet's back: `plan` shows exactly the repair, apply, the
//!    kernel has the config's value again;
//! 4. removed from the config: `plan` shows exactly the op back to the default
//!    (or nothing, for attributes vznet leaves as they are), apply, and then
//!    `plan` is `0 changes`.

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::Host;

/// One attribute's steps. Texts may contain `@ATTR@` (where the attribute's
/// line goes in a config file) and `@NS:name@` (the netns of the lab host
/// called `name`).
#[derive(Debug, Clone)]
pub struct AttributeCase {
    /// What is tested, for messages.
    pub name: &'static str,
    /// `host.toml`.
    pub host: &'static str,
    /// VE files by id.
    pub ves: Vec<(u32, &'static str)>,
    /// The attribute's line when first declared (`"mtu = 9000"`).
    pub first: &'static str,
    /// Its line after the change.
    pub second: &'static str,
    /// The ops `plan` shows for the change, one a line.
    pub change: &'static str,
    /// The host (by lab name) and the command that changes the value behind
    /// vznet's back.
    pub drift: (&'static str, Vec<&'static str>),
    /// The ops `plan` shows to repair that.
    pub repair: &'static str,
    /// The ops `plan` shows once the line is removed (`None`: nothing changes).
    pub removed: Option<&'static str>,
    /// Where the value is read back (`None`: the plans are the check).
    pub read: Option<Read>,
}

impl AttributeCase {
    /// A case in `host.toml` alone whose drift runs in the lab host "host".
    #[allow(clippy::too_many_arguments)]
    pub fn on_host(
        host: &'static str,
        name: &'static str,
        [first, second]: [&'static str; 2],
        change: &'static str,
        drift: Vec<&'static str>,
        repair: &'static str,
        removed: Option<&'static str>,
        read: Option<Read>,
    ) -> AttributeCase {
        AttributeCase {
            name,
            host,
            ves: Vec::new(),
            first,
            second,
            change,
            drift: ("host", drift),
            repair,
            removed,
            read,
        }
    }
}

/// Where an attribute's value is read back, in a lab host, and the value
/// expected after each step.
#[derive(Debug, Clone)]
pub struct Read {
    /// The lab host's name.
    pub host: &'static str,
    /// What is read.
    pub source: Source,
    /// After step 1.
    pub first: &'static str,
    /// After steps 2 and 3.
    pub second: &'static str,
    /// After step 4.
    pub removed: &'static str,
}

/// What a [`Read`] reads.
#[derive(Debug, Clone)]
pub enum Source {
    /// A JSON pointer into `ip -d -j link show DEV` (`/linkinfo/info_data/
    /// forward_delay`), compared as `Value::to_string` prints it ("(absent)"
    /// when missing).
    Link {
        /// The link.
        dev: &'static str,
        /// The pointer.
        pointer: &'static str,
    },
    /// A command's output, trimmed (`cat /sys/class/net/bond0/bonding/miimon`).
    Command(Vec<String>),
}

/// What the runner needs from its caller.
#[allow(missing_debug_implementations)]
pub struct Runner<'a> {
    /// The config folder.
    pub dir: &'a std::path::Path,
    /// Lab hosts by the names the case uses.
    pub hosts: Vec<(&'static str, &'a Host)>,
    /// Runs `vznet ARGS --config-dir DIR` in the host netns; stdout on success.
    pub vznet: &'a dyn Fn(&[&str]) -> Result<String>,
    /// Each step runs `plan` (checked) then `apply`; without, the ops `apply`
    /// prints are checked (the same list: half the runs, for slow machines).
    pub plan_first: bool,
}

impl Runner<'_> {
    fn host(&self, name: &str) -> Result<&Host> {
        self.hosts
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, h)| *h)
            .with_context(|| format!("no lab host called {name:?}"))
    }

    /// `text` with `@NS:name@` replaced.
    fn expand(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (name, host) in &self.hosts {
            out = out.replace(&format!("@NS:{name}@"), host.name());
        }
        out
    }

    fn write(&self, case: &AttributeCase, attr: &str) -> Result<()> {
        let fill = |t: &str| self.expand(&t.replace("@ATTR@", attr));
        std::fs::write(self.dir.join("host.toml"), fill(case.host))?;
        std::fs::create_dir_all(self.dir.join("ve"))?;
        for (id, text) in &case.ves {
            std::fs::write(self.dir.join(format!("ve/{id}.toml")), fill(text))?;
        }
        Ok(())
    }

    /// The ops `plan` (or `apply`) shows, without the count line.
    fn ops(&self, command: &str) -> Result<Vec<String>> {
        let out = (self.vznet)(&[command])?;
        Ok(out
            .lines()
            .filter(|l| !l.ends_with(" changes") && !l.ends_with(" change") && !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    fn expect(
        &self,
        case: &AttributeCase,
        command: &str,
        step: &str,
        want: Option<&str>,
    ) -> Result<()> {
        let got = self
            .ops(command)
            .with_context(|| format!("{}: {step}: {command}", case.name))?;
        let want: Vec<String> = want
            .map(|w| self.expand(w))
            .iter()
            .flat_map(|w| w.lines().map(str::to_string))
            .collect();
        ensure!(
            got == want,
            "{}: {step}: {command} shows {got:#?}, expected exactly {want:#?}",
            case.name
        );
        Ok(())
    }

    fn read(
        &self,
        case: &AttributeCase,
        step: &str,
        want: fn(&Read) -> &'static str,
    ) -> Result<()> {
        let Some(r) = &case.read else {
            return Ok(());
        };
        let want = want(r);
        let host = self.host(r.host)?;
        let (what, got) = match &r.source {
            Source::Link { dev, pointer } => {
                let json = host.ip_json(["-d", "link", "show", "dev", dev])?;
                let got = json
                    .get(0)
                    .and_then(|l| l.pointer(pointer))
                    .map_or_else(|| "(absent)".to_string(), Value::to_string);
                (format!("{dev} {pointer}"), got)
            }
            Source::Command(argv) => (
                argv.join(" "),
                host.run(argv.iter().map(|a| self.expand(a)))?
                    .trim()
                    .to_string(),
            ),
        };
        ensure!(
            got == want,
            "{}: {step}: {what} gives {got:?}, expected {want:?}",
            case.name
        );
        Ok(())
    }

    /// Checks and applies one step's ops.
    fn step(&self, case: &AttributeCase, step: &str, want: Option<&str>) -> Result<()> {
        if self.plan_first {
            self.expect(case, "plan", step, want)?;
            (self.vznet)(&["apply"]).with_context(|| format!("{}: {step}: apply", case.name))?;
            Ok(())
        } else {
            self.expect(case, "apply", step, want)
        }
    }

    /// Runs the four steps; the first failure is the error.
    pub fn run(&self, case: &AttributeCase) -> Result<()> {
        self.write(case, case.first)?;
        (self.vznet)(&["apply"]).with_context(|| format!("{}: declared: apply", case.name))?;
        if self.plan_first {
            self.expect(case, "plan", "declared", None)?;
        }
        self.read(case, "declared", |r| r.first)?;

        self.write(case, case.second)?;
        self.step(case, "changed in the config", Some(case.change))?;
        self.read(case, "changed in the config", |r| r.second)?;

        let (on, argv) = &case.drift;
        let host = self.host(on)?;
        let argv: Vec<String> = argv.iter().map(|a| self.expand(a)).collect();
        if let Err(e) = host.run(&argv) {
            bail!("{}: drifting with {argv:?}: {e:#}", case.name);
        }
        self.step(case, "changed behind vznet's back", Some(case.repair))?;
        self.read(case, "repaired", |r| r.second)?;

        self.write(case, "")?;
        self.step(case, "removed from the config", case.removed)?;
        self.step(case, "after removal", None)?;
        self.read(case, "removed from the config", |r| r.removed)?;
        Ok(())
    }
}
