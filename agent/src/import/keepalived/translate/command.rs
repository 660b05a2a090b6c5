//! Scripts and hooks. keepalived splits a script line twice (`notify_script_init`):
//! the line with quotes and escapes, whose second word is the command, split again
//! into an argv; words after it are a user and a group. It execs the argv when its
//! program is a file it can run (searching PATH for a bare name, with a warning), and
//! otherwise hands the words, joined by spaces, to `system()`, i.e. `/bin/sh -c`.
//!
//! vznet's hooks are argvs with an absolute program; its `[[vrrp_script]]` takes an
//! argv or a shell line. The conversion keeps keepalived's meaning: an absolute
//! program stays an argv; a bare program name is found through PATH (`/usr/bin/env`
//! for hooks, a shell line for scripts, each word quoted); anything else is the shell
//! line keepalived's `system()` runs.

use vrrp::settings::ScriptCommand;

use super::super::parser::Node;
use super::super::words::script_words;

/// What a hook runs and how keepalived's line was carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// The argv vznet runs.
    pub argv: Vec<String>,
    /// How the argv differs from keepalived's, if it does.
    pub changed: Option<String>,
}

/// The command of a script keyword (`notify_master "/bin/x a b" user group`) and the
/// words after it; `None` when keepalived could not split the line either.
pub fn command_words(node: &Node) -> Option<(Vec<String>, Vec<String>)> {
    let line = script_words(&node.text)?;
    let argv = script_words(line.get(1)?)?;
    if argv.is_empty() {
        return None;
    }
    Some((argv, line.get(2..).unwrap_or_default().to_vec()))
}

/// A word PATH can find: no slash, nothing the shell would read.
fn is_program_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._+-".contains(&b))
}

/// A shell word for `word`: as it is when safe, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./:=+,@%-".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The argv of a hook (notify, notify_up, quorum_up, misc_path).
pub fn hook(argv: Vec<String>) -> Hook {
    let program = argv.first().cloned().unwrap_or_default();
    if program.starts_with('/') {
        return Hook {
            argv,
            changed: None,
        };
    }
    if is_program_name(&program) {
        let mut out = vec!["/usr/bin/env".to_string()];
        out.extend(argv);
        return Hook {
            argv: out,
            changed: Some(format!(
                "{program:?} is not an absolute path: run through /usr/bin/env, which searches PATH as keepalived does"
            )),
        };
    }
    Hook {
        argv: vec!["/bin/sh".into(), "-c".into(), argv.join(" ")],
        changed: Some(format!(
            "{program:?} is no program: run by /bin/sh -c, as keepalived's system() runs it"
        )),
    }
}

/// The command of a `vrrp_script`.
pub fn check(argv: Vec<String>) -> ScriptCommand {
    let program = argv.first().cloned().unwrap_or_default();
    if program.starts_with('/') {
        ScriptCommand::Argv(argv)
    } else if is_program_name(&program) {
        ScriptCommand::Shell(
            argv.iter()
                .map(|w| shell_word(w))
                .collect::<Vec<_>>()
                .join(" "),
        )
    } else {
        ScriptCommand::Shell(argv.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn programs_keep_keepalived_meaning() {
        assert_eq!(hook(words(&["/bin/x", "a"])).argv, ["/bin/x", "a"]);
        let h = hook(words(&["notify.sh", "MASTER"]));
        assert_eq!(h.argv, ["/usr/bin/env", "notify.sh", "MASTER"]);
        assert!(h.changed.is_some());
        assert_eq!(
            hook(words(&["</dev/tcp/127.0.0.1/80"])).argv,
            ["/bin/sh", "-c", "</dev/tcp/127.0.0.1/80"]
        );
        assert_eq!(
            check(words(&["killall", "-0", "it's"])),
            ScriptCommand::Shell("killall -0 'it'\\''s'".into())
        );
        assert_eq!(
            check(words(&["/usr/bin/test", "-e", "/x y"])),
            ScriptCommand::Argv(words(&["/usr/bin/test", "-e", "/x y"]))
        );
    }
}
