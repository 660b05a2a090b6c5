//! Running external commands (`ip`, `ping`, agents) with errors that say what ran and why
//! it failed.

use std::ffi::OsStr;
use std::process::{Command, ExitStatus, Output, Stdio};

use anyhow::{Context, Result};

/// A command that ran but exited unsuccessfully.
///
/// Returned (inside `anyhow::Error`) by [`crate::Host::run`] and the other helpers that
/// insist on success; downcast to inspect the exit status or the captured output.
#[derive(Debug, Clone, thiserror::Error)]
#[error("`{command}` failed ({status}): {}", summary(stderr, stdout))]
pub struct CommandError {
    /// The command line, shell-quoted for reading (not for pasting into a shell verbatim).
    pub command: String,
    /// How the command ended.
    pub status: ExitStatus,
    /// Its standard output, decoded lossily.
    pub stdout: String,
    /// Its standard error, decoded lossily.
    pub stderr: String,
}

/// The most useful output to show in a one-line error.
fn summary<'a>(stderr: &'a str, stdout: &'a str) -> &'a str {
    match (stderr.trim(), stdout.trim()) {
        ("", "") => "no output",
        ("", out) => out,
        (err, _) => err,
    }
}

/// A readable rendering of `cmd`'s program and arguments.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `cmd` to completion with stdin closed, capturing its output.
///
/// Fails only if the command cannot be started; a non-zero exit is returned as is.
pub(crate) fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))
}

/// Runs `cmd` to completion and fails with a [`CommandError`] unless it exits with 0.
pub(crate) fn checked(cmd: &mut Command) -> Result<Output> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(CommandError {
            command: describe(cmd),
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
        .into())
    }
}

/// Runs `ip ARGS` in the current namespace and returns its standard output.
pub(crate) fn ip<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = checked(Command::new("ip").args(args))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `err` is a failed command whose stderr says the object it named does not exist.
///
/// Teardown treats such failures as success: whatever it meant to delete is already gone.
pub(crate) fn is_not_found(err: &anyhow::Error) -> bool {
    err.downcast_ref::<CommandError>().is_some_and(|e| {
        let s = &e.stderr;
        s.contains("Cannot find device")
            || s.contains("does not exist")
            || s.contains("No such file or directory")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_with_quotes_only_where_needed() {
        let mut cmd = Command::new("ip");
        cmd.args(["-n", "vzabc-h1", "addr", "add", "10.0.0.1/24", "it's x", ""]);
        assert_eq!(
            describe(&cmd),
            r"ip -n vzabc-h1 addr add 10.0.0.1/24 'it'\''s x' ''"
        );
    }

    #[test]
    fn failure_names_the_command_and_its_stderr() {
        let err = checked(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]))
            .expect_err("exit 3 is a failure");
        let msg = err.to_string();
        assert!(msg.contains("`sh -c 'echo oops >&2; exit 3'`"), "{msg}");
        assert!(msg.contains("oops"), "{msg}");
        let typed = err
            .downcast_ref::<CommandError>()
            .expect("a CommandError inside");
        assert_eq!(typed.status.code(), Some(3));
    }

    #[test]
    fn missing_program_is_a_start_error() {
        let err = output(&mut Command::new("/nonexistent/vznet-lab-program"))
            .expect_err("no such program");
        assert!(err.to_string().contains("cannot start"), "{err}");
    }
}
