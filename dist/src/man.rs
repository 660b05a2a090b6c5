//! Man pages in roff, from the clap definitions the binaries parse with, so a
//! flag's page text is its `--help` text. One page per program; every subcommand
//! (with its own options) is a subsection of its program's page.

use std::fmt::Write as _;

use clap::{Arg, ArgAction, Command};

/// What a page adds to the clap definition: sections clap does not know.
#[derive(Debug, Default)]
pub struct Extra {
    /// Extra sections, `(HEADING, roff body)`, after the commands.
    pub sections: Vec<(&'static str, String)>,
    /// `name(section)` entries for SEE ALSO.
    pub see_also: Vec<&'static str>,
}

/// The whole page of `cmd` in man section `section`.
pub fn page(cmd: &Command, section: &str, extra: &Extra) -> String {
    let mut cmd = cmd.clone();
    cmd.build();
    let name = cmd.get_name().to_string();
    let version = cmd.get_version().unwrap_or_default().to_string();
    let mut o = String::new();
    let _ = writeln!(
        o,
        ".TH {} {section} \"\" \"vznet {version}\" \"vznet\"",
        name.to_uppercase().replace('-', "\\-")
    );
    o.push_str(".SH NAME\n");
    let about = cmd.get_about().map(|a| a.to_string()).unwrap_or_default();
    let _ = writeln!(
        o,
        "{} \\- {}",
        escape(&name),
        escape(first_sentence(&about))
    );
    o.push_str(".SH SYNOPSIS\n");
    o.push_str(&synopsis(&cmd, &name, true));
    o.push_str(".SH DESCRIPTION\n");
    let long = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    o.push_str(&paragraphs(&long));
    let options: Vec<&Arg> = visible_options(&cmd).collect();
    if !options.is_empty() {
        o.push_str(".SH OPTIONS\n");
        for arg in options {
            o.push_str(&option(arg));
        }
    }
    let subs: Vec<&Command> = visible_subcommands(&cmd).collect();
    if !subs.is_empty() {
        o.push_str(".SH COMMANDS\n");
        for sub in subs {
            commands(&mut o, sub, &name);
        }
    }
    if let Some(after) = cmd.get_after_long_help().or(cmd.get_after_help()) {
        o.push_str(&headed_text(&after.to_string()));
    }
    let env: Vec<&Arg> = all_args(&cmd).filter(|a| a.get_env().is_some()).collect();
    for (heading, body) in &extra.sections {
        let _ = writeln!(o, ".SH {heading}");
        o.push_str(body);
        if !body.ends_with('\n') {
            o.push('\n');
        }
        if *heading == "ENVIRONMENT" {
            for arg in &env {
                if let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) {
                    let _ = writeln!(
                        o,
                        ".TP\n.B {}\nThe default of \\fB\\-\\-{}\\fR.",
                        escape(&var.to_string_lossy()),
                        escape(long)
                    );
                }
            }
        }
    }
    if !extra.see_also.is_empty() {
        o.push_str(".SH SEE ALSO\n");
        let refs: Vec<String> = extra
            .see_also
            .iter()
            .map(|r| match r.split_once('(') {
                Some((n, s)) => format!(".BR {} ({}", escape(n), s),
                None => format!(".B {}", escape(r)),
            })
            .collect();
        o.push_str(&refs.join(" ,\n"));
        o.push('\n');
    }
    o
}

/// Each subcommand: a subsection with its synopsis, its text and its options;
/// nested subcommands follow their parent.
fn commands(o: &mut String, cmd: &Command, parent: &str) {
    let path = format!("{parent} {}", cmd.get_name());
    let subs: Vec<&Command> = visible_subcommands(cmd).collect();
    let _ = writeln!(o, ".SS \"{}\"", escape(&path));
    if visible_options(cmd).any(|a| !a.is_global_set()) || !subs.is_empty() {
        o.push_str(&synopsis(cmd, &path, false));
    }
    let text = cmd
        .get_long_about()
        .or(cmd.get_about())
        .map(|a| a.to_string())
        .unwrap_or_default();
    o.push_str(&paragraphs(&text));
    let options: Vec<&Arg> = visible_options(cmd)
        .filter(|a| !a.is_global_set())
        .collect();
    if !options.is_empty() {
        o.push_str(".RS\n");
        for arg in options {
            o.push_str(&option(arg));
        }
        o.push_str(".RE\n");
    }
    for sub in subs {
        commands(o, sub, &path);
    }
}

/// The usage line; `top`: the program's own, with its global options.
fn synopsis(cmd: &Command, path: &str, top: bool) -> String {
    let mut words = vec![format!("\\fB{}\\fR", escape(path))];
    for arg in visible_options(cmd).filter(|a| top || !a.is_global_set()) {
        let mut w = flag_text(arg);
        if arg.is_positional() {
            w = value_names(arg);
        }
        if !arg.is_required_set() {
            w = format!("[{w}]");
        }
        if matches!(arg.get_action(), ArgAction::Append)
            || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
        {
            w.push_str("...");
        }
        words.push(w);
    }
    if visible_subcommands(cmd).next().is_some() {
        words.push("\\fICOMMAND\\fR".into());
    }
    format!(".nh\n.ad l\n{}\n.ad\n.hy\n", words.join(" "))
}

/// `.TP` entry for one flag or positional argument.
fn option(arg: &Arg) -> String {
    let head = if arg.is_positional() {
        value_names(arg)
    } else {
        flag_text(arg)
    };
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(|h| h.to_string())
        .unwrap_or_default();
    // clap drops the final period of a one-sentence help; the page adds sentences.
    if !help.is_empty() && !help.trim_end().ends_with(['.', ':']) {
        help.push('.');
    }
    let defaults: Vec<String> = arg
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if !defaults.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse)
    {
        let _ = write!(help, " Default: {}.", defaults.join(", "));
    }
    let values: Vec<String> = arg
        .get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_string())
        .collect();
    if !values.is_empty() && !matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        let _ = write!(help, " One of: {}.", values.join(", "));
    }
    format!(
        ".TP\n{head}\n{}",
        paragraphs(help.trim()).trim_start_matches(".PP\n")
    )
}

fn flag_text(arg: &Arg) -> String {
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("\\fB\\-{s}\\fR"));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("\\fB\\-\\-{}\\fR", escape(l)));
    }
    let mut t = names.join(", ");
    if arg.get_action().takes_values() {
        t.push(' ');
        t.push_str(&value_names(arg));
    }
    t
}

fn value_names(arg: &Arg) -> String {
    let names: Vec<String> = match arg.get_value_names() {
        Some(v) => v.iter().map(|s| s.to_string()).collect(),
        None => vec![arg.get_id().as_str().to_uppercase()],
    };
    names
        .iter()
        .map(|n| format!("\\fI{}\\fR", escape(n)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn visible_options(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set() && a.get_id() != "help" && a.get_id() != "version")
}

fn all_args(cmd: &Command) -> impl Iterator<Item = &Arg> {
    cmd.get_arguments().filter(|a| !a.is_hide_set())
}

fn visible_subcommands(cmd: &Command) -> impl Iterator<Item = &Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

fn first_sentence(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    line.split_once(": ")
        .map_or(line, |(a, _)| a)
        .trim_end_matches('.')
}

/// Text in paragraphs (blank lines separate them); indented lines (examples,
/// tables) keep their layout.
fn paragraphs(text: &str) -> String {
    let mut o = String::new();
    for para in text.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let verbatim = para.lines().any(|l| l.starts_with("  "));
        o.push_str(".PP\n");
        if verbatim {
            o.push_str(".nf\n");
            for l in para.lines() {
                o.push_str(&escape_line(l));
                o.push('\n');
            }
            o.push_str(".fi\n");
        } else {
            let joined: Vec<&str> = para.lines().map(str::trim).collect();
            o.push_str(&escape_line(&joined.join(" ")));
            o.push('\n');
        }
    }
    o
}

/// `after_long_help` text whose unindented upper-case lines are headings.
fn headed_text(text: &str) -> String {
    let mut o = String::new();
    let mut body = String::new();
    let flush = |o: &mut String, body: &mut String| {
        if !body.trim().is_empty() {
            o.push_str(".nf\n");
            for l in body.trim_end().lines() {
                o.push_str(&escape_line(l.strip_prefix("  ").unwrap_or(l)));
                o.push('\n');
            }
            o.push_str(".fi\n");
        }
        body.clear();
    };
    for line in text.lines() {
        let heading = !line.starts_with(' ')
            && !line.trim().is_empty()
            && line.chars().all(|c| c.is_ascii_uppercase() || c == ' ');
        if heading {
            flush(&mut o, &mut body);
            let _ = writeln!(o, ".SH {line}");
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    flush(&mut o, &mut body);
    o
}

/// Escapes roff's special characters in running text.
pub fn escape(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}

fn escape_line(line: &str) -> String {
    let e = escape(line);
    if e.starts_with('.') || e.starts_with('\'') {
        format!("\\&{e}")
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_of_roff_never_start_a_line() {
        assert_eq!(escape_line(".hidden"), "\\&.hidden");
        assert_eq!(escape_line("'quote"), "\\&'quote");
        assert_eq!(escape("a\\b-c"), "a\\eb\\-c");
    }

    #[test]
    fn upper_case_lines_become_sections_and_the_rest_keeps_its_layout() {
        let roff = headed_text("EXIT STATUS\n  0  success\n  2  invalid\n");
        assert_eq!(roff, ".SH EXIT STATUS\n.nf\n0  success\n2  invalid\n.fi\n");
    }
}
