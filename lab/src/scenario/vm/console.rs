//! vng's console, passed through line by line: the guest's output reaches the
//! user as it comes, and the boot can tell "the VM never started" (vng, qemu or
//! the kernel failed: the cause is in vng's last stderr lines) from "a scenario
//! failed inside it".

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// vng's stderr lines kept for an error message.
const TAIL: usize = 20;

/// How a vng run ended.
#[derive(Debug)]
pub struct Run {
    /// vng's exit status (the guest command's, once the guest ran).
    pub status: ExitStatus,
    /// Whether the guest printed its first line.
    pub guest_started: bool,
    /// The last lines vng wrote to stderr.
    pub stderr_tail: Vec<String>,
}

/// Runs `cmd`, copying its stdout and stderr through; `started` is the guest's
/// first stdout line.
pub fn run(mut cmd: Command, started: &'static str) -> std::io::Result<Run> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let seen = Arc::new(AtomicBool::new(false));
    let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL)));
    let out = child.stdout.take().map(|pipe| {
        let seen = Arc::clone(&seen);
        std::thread::spawn(move || {
            copy_lines(pipe, std::io::stdout(), |line| {
                if line.trim_end() == started {
                    seen.store(true, Ordering::Relaxed);
                }
            })
        })
    });
    let err = child.stderr.take().map(|pipe| {
        let tail = Arc::clone(&tail);
        std::thread::spawn(move || {
            copy_lines(pipe, std::io::stderr(), |line| {
                if let Ok(mut t) = tail.lock() {
                    if t.len() == TAIL {
                        t.pop_front();
                    }
                    t.push_back(line.trim_end().to_string());
                }
            })
        })
    });
    let status = child.wait()?;
    for t in [out, err].into_iter().flatten() {
        let _ = t.join();
    }
    let stderr_tail = tail
        .lock()
        .map(|t| t.iter().cloned().collect())
        .unwrap_or_default();
    Ok(Run {
        status,
        guest_started: seen.load(Ordering::Relaxed),
        stderr_tail,
    })
}

/// `: its last output:\n  ...` for an error message, or a hint when vng said nothing.
pub fn tail_for_error(tail: &[String]) -> String {
    let lines: Vec<&String> = tail.iter().filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        return " and printed nothing (check `vng --dry-run -r KERNEL --exec true`)".into();
    }
    let mut s = String::from("; its last output:");
    for l in lines {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}

fn copy_lines(pipe: impl Read, mut to: impl Write, mut each: impl FnMut(&str)) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let _ = to.write_all(&line);
                let _ = to.flush();
                each(&String::from_utf8_lossy(&line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_fails_before_the_guest_is_told_apart_with_its_stderr() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'sh: 1: virtme-run: not found' >&2; exit 127"]);
        let run = run(cmd, "vm: guest up").expect("sh runs");
        assert!(!run.guest_started);
        assert_eq!(run.status.code(), Some(127));
        let msg = tail_for_error(&run.stderr_tail);
        assert!(msg.contains("virtme-run: not found"), "{msg}");
    }

    #[test]
    fn the_guest_line_marks_a_started_vm_even_when_it_fails_later() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo 'vm: guest up'; echo scenario failed; exit 1"]);
        let run = run(cmd, "vm: guest up").expect("sh runs");
        assert!(run.guest_started);
        assert_eq!(run.status.code(), Some(1));
    }
}
