//! Files of shell assignments (`KEY="value"`): vz.conf, CTID.conf, ifcfg-* and
//! /etc/sysconfig/network. vzctl and RHEL's initscripts source them with a shell,
//! so values follow the shell's quoting: `"..."` (with `\` escapes and `$VAR`
//! expansion), `'...'` (literal), bare words, adjacent pieces joined; a quoted
//! value may run over several lines. Anything else (commands, `if`) is returned
//! as a line the caller reports.

use std::collections::BTreeMap;

/// One `KEY=value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The variable.
    pub key: String,
    /// Its value after quote removal and expansion.
    pub value: String,
    /// The line the assignment starts on (1-based).
    pub line: u32,
}

/// What a file holds: its assignments in order, and the lines that are not
/// assignments (line, text).
#[derive(Debug, Default)]
pub struct Parsed {
    /// Assignments in file order.
    pub assignments: Vec<Assignment>,
    /// Lines that are neither assignments, comments nor blank.
    pub other: Vec<(u32, String)>,
}

impl Parsed {
    /// The last value assigned to `key`, with its line.
    pub fn get(&self, key: &str) -> Option<&Assignment> {
        self.assignments.iter().rev().find(|a| a.key == key)
    }
}

/// Reads `text`; `$NAME` and `${NAME}` expand to earlier assignments of the file
/// or, failing that, to `env` (vzctl sets `VEID`), else to nothing.
pub fn parse(text: &str, env: &BTreeMap<String, String>) -> Parsed {
    let mut out = Parsed::default();
    let mut vars = env.clone();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line: u32 = 1;
    while i < chars.len() {
        let start_line = line;
        let start = i;
        match statement(&chars, &mut i, &mut line, &vars) {
            Some((key, value)) => {
                vars.insert(key.clone(), value.clone());
                out.assignments.push(Assignment {
                    key,
                    value,
                    line: start_line,
                });
            }
            None => {
                // Not an assignment: skip to the end of the line.
                i = start;
                line = start_line;
                let mut text = String::new();
                while i < chars.len() && chars[i] != '\n' {
                    text.push(chars[i]);
                    i += 1;
                }
                let t = text.trim();
                if !t.is_empty() && !t.starts_with('#') {
                    out.other.push((start_line, t.to_string()));
                }
            }
        }
        if i < chars.len() && chars[i] == '\n' {
            i += 1;
            line += 1;
        }
    }
    out
}

/// One `[export] KEY=VALUE [# comment]` up to (not past) its final newline.
fn statement(
    chars: &[char],
    i: &mut usize,
    line: &mut u32,
    vars: &BTreeMap<String, String>,
) -> Option<(String, String)> {
    skip_blanks(chars, i);
    let mut word = name(chars, i);
    if word == "export" && chars.get(*i).is_some_and(|c| *c == ' ' || *c == '\t') {
        skip_blanks(chars, i);
        word = name(chars, i);
    }
    if word.is_empty() || chars.get(*i) != Some(&'=') {
        return None;
    }
    *i += 1;
    let value = value(chars, i, line, vars)?;
    skip_blanks(chars, i);
    match chars.get(*i) {
        None | Some('\n') => Some((word, value)),
        Some('#') => {
            while *i < chars.len() && chars[*i] != '\n' {
                *i += 1;
            }
            Some((word, value))
        }
        Some(';') => {
            // `KEY=v; other` is more than an assignment: let the caller report it.
            None
        }
        Some(_) => None,
    }
}

fn skip_blanks(chars: &[char], i: &mut usize) {
    while chars.get(*i).is_some_and(|c| *c == ' ' || *c == '\t') {
        *i += 1;
    }
}

fn name(chars: &[char], i: &mut usize) -> String {
    let mut out = String::new();
    while let Some(&c) = chars.get(*i) {
        let ok = c == '_' || c.is_ascii_alphabetic() || (!out.is_empty() && c.is_ascii_digit());
        if !ok {
            break;
        }
        out.push(c);
        *i += 1;
    }
    out
}

/// A shell word: quoted and bare pieces up to a blank, newline, `;` or `#`.
fn value(
    chars: &[char],
    i: &mut usize,
    line: &mut u32,
    vars: &BTreeMap<String, String>,
) -> Option<String> {
    let mut out = String::new();
    while let Some(&c) = chars.get(*i) {
        match c {
            ' ' | '\t' | '\n' | ';' => break,
            '\'' => {
                *i += 1;
                loop {
                    let c = *chars.get(*i)?;
                    *i += 1;
                    if c == '\'' {
                        break;
                    }
                    if c == '\n' {
                        *line += 1;
                    }
                    out.push(c);
                }
            }
            '"' => {
                *i += 1;
                loop {
                    let c = *chars.get(*i)?;
                    match c {
                        '"' => {
                            *i += 1;
                            break;
                        }
                        '\\' if chars
                            .get(*i + 1)
                            .is_some_and(|n| matches!(n, '"' | '\\' | '$' | '`' | '\n')) =>
                        {
                            let n = chars[*i + 1];
                            *i += 2;
                            if n == '\n' {
                                *line += 1;
                            } else {
                                out.push(n);
                            }
                        }
                        '$' => expand(chars, i, vars, &mut out),
                        _ => {
                            if c == '\n' {
                                *line += 1;
                            }
                            out.push(c);
                            *i += 1;
                        }
                    }
                }
            }
            '\\' => {
                let n = *chars.get(*i + 1)?;
                *i += 2;
                if n == '\n' {
                    *line += 1;
                } else {
                    out.push(n);
                }
            }
            '$' => expand(chars, i, vars, &mut out),
            '`' | '(' | ')' | '<' | '>' | '|' | '&' => return None,
            _ => {
                out.push(c);
                *i += 1;
            }
        }
    }
    Some(out)
}

/// `$NAME` or `${NAME}` at `i` (a `$` followed by anything else stays a `$`).
fn expand(chars: &[char], i: &mut usize, vars: &BTreeMap<String, String>, out: &mut String) {
    *i += 1;
    let braced = chars.get(*i) == Some(&'{');
    let mut j = *i + usize::from(braced);
    let var = name(chars, &mut j);
    if var.is_empty() || (braced && chars.get(j) != Some(&'}')) {
        out.push('$');
        return;
    }
    *i = j + usize::from(braced);
    if let Some(v) = vars.get(&var) {
        out.push_str(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_expansion_follow_the_shell() {
        let env = BTreeMap::from([("VEID".to_string(), "112".to_string())]);
        let text = "# comment\n\
                    ONBOOT=\"yes\"\n\
                    VE_PRIVATE=/vz/private/$VEID\n\
                    VE_ROOT=\"/vz/root/${VEID}\"  # mount point\n\
                    IP_ADDRESS=\"10.0.0.1 10.0.0.2\"\n\
                    DESCRIPTION='it''s \"$x\"'\n\
                    export NAME=a\\ b\n\
                    MULTI=\"one\n\
                    two\"\n\
                    AFTER=$MULTI.x\n\
                    echo hi\n\
                    BAD=`date`\n";
        let p = parse(text, &env);
        let got: Vec<(String, String, u32)> = p
            .assignments
            .iter()
            .map(|a| (a.key.clone(), a.value.clone(), a.line))
            .collect();
        let want = [
            ("ONBOOT", "yes", 2),
            ("VE_PRIVATE", "/vz/private/112", 3),
            ("VE_ROOT", "/vz/root/112", 4),
            ("IP_ADDRESS", "10.0.0.1 10.0.0.2", 5),
            ("DESCRIPTION", "its \"$x\"", 6),
            ("NAME", "a b", 7),
            ("MULTI", "one\ntwo", 8),
            ("AFTER", "one\ntwo.x", 10),
        ];
        let want: Vec<(String, String, u32)> = want
            .iter()
            .map(|(k, v, l)| (k.to_string(), v.to_string(), *l))
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            p.other,
            vec![(11, "echo hi".to_string()), (12, "BAD=`date`".to_string())]
        );
    }
}
