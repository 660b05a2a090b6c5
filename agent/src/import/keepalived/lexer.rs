//! keepalived.conf's lines as keepalived 2.2.7 reads them (`lib/parser.c`,
//! `read_line`): `!` and `#` comments cut (outside double quotes, `\!` and `\#`
//! escaped), `@ID` / `@^ID` conditionals against the config id, `$NAME=VALUE`
//! definitions (a trailing `\` continues one onto the next lines) expanded as `$NAME`
//! or `${NAME}`, `~SEQ(VAR, START, STEP, END)` repeating a line, `include PATTERN`
//! with globs and braces (relative to the including file's folder), and every `{` and
//! `}` outside double quotes on a line of its own. Words are split as keepalived
//! splits them: at white space, a double-quoted string being one word.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::definition::{Definitions, Sequence};
use super::glob;
use crate::import::report::{Kind, Report};

/// Files nested deeper than this are refused (keepalived has no limit).
const MAX_INCLUDE_DEPTH: usize = 32;
/// Files read in all: includes that repeat each other could otherwise multiply
/// without end.
const MAX_FILES_READ: usize = 4096;
/// Lines produced in all (sequences and includes multiply them).
const MAX_LINES: usize = 1_000_000;
/// Expansions of one line; more is a definition that names itself.
const MAX_EXPANSIONS: usize = 256;
/// keepalived stops a `~SEQ` nowhere; the import stops at this many lines.
const MAX_SEQUENCE: i64 = 65_536;
/// The largest file read (keepalived reads any; a config is far smaller).
const MAX_FILE: u64 = 16 << 20;

/// Where a line comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file, as given or as the include pattern named it.
    pub file: Arc<Path>,
    /// 1-based physical line.
    pub line: u32,
}

/// One line after preprocessing: a `{`, a `}`, or a keyword with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Where it was read.
    pub at: Location,
    /// The text, comments cut and definitions expanded.
    pub text: String,
}

/// Reading failed: the top-level file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ReadError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub message: String,
}

struct Lexer<'a> {
    defs: Definitions,
    depth: usize,
    /// The files being read, outermost first (a file including itself is a loop).
    open: Vec<PathBuf>,
    files_read: usize,
    /// At most this many lines ([`MAX_LINES`]).
    max_lines: usize,
    /// Whether `max_lines` was reached (reported once).
    overflow: bool,
    lines: Vec<Line>,
    report: &'a mut Report,
}

/// Reads `path` and everything it includes into lines, reporting what keepalived
/// would have complained about (and skipped) into `report`.
pub fn read(path: &Path, config_id: &str, report: &mut Report) -> Result<Vec<Line>, ReadError> {
    read_limited(path, config_id, report, MAX_LINES)
}

fn read_limited(
    path: &Path,
    config_id: &str,
    report: &mut Report,
    max_lines: usize,
) -> Result<Vec<Line>, ReadError> {
    let text = read_file(path).map_err(|message| ReadError {
        path: path.to_path_buf(),
        message,
    })?;
    let mut lexer = Lexer {
        defs: Definitions::new(config_id),
        depth: 0,
        open: vec![identity(path)],
        files_read: 1,
        max_lines,
        overflow: false,
        lines: Vec::new(),
        report,
    };
    lexer.file(Arc::from(path), &text);
    Ok(lexer.lines)
}

/// A regular file's text, at most [`MAX_FILE`] bytes (a FIFO is refused, not waited
/// on). Invalid UTF-8 is replaced: keepalived reads bytes.
fn read_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(format!("more than {MAX_FILE} bytes"));
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Lexer<'_> {
    fn file(&mut self, file: Arc<Path>, text: &str) {
        self.report.file_read(&file);
        for (n, raw) in text.split('\n').enumerate() {
            let at = Location {
                file: file.clone(),
                line: u32::try_from(n + 1).unwrap_or(u32::MAX),
            };
            let raw = raw.trim_end_matches(['\r', '\n']);
            if raw.is_empty() {
                // An empty line ends a multi-line definition.
                self.defs.end_continuation();
                continue;
            }
            let text = decomment(raw, &at, self.report);
            if text.is_empty() {
                // A comment line: keepalived reads on, even inside a definition.
                continue;
            }
            if self.defs.continuing() {
                self.defs.continue_with(&text);
                continue;
            }
            self.text(&at, text, 0);
        }
        // A definition never continues into the next file.
        self.defs.end_continuation();
    }

    /// One line after comments are cut: conditionals, definitions, sequences,
    /// expansion, includes, then braces.
    fn text(&mut self, at: &Location, mut text: String, expansions: usize) {
        if self.lines.len() >= self.max_lines {
            if !self.overflow {
                self.overflow = true;
                self.report.add(
                    &at.file,
                    at.line,
                    first_word(&text),
                    Kind::NotCarried,
                    format!("more than {} lines: the rest is not read", self.max_lines),
                );
            }
            return;
        }
        let mut follow: Vec<String> = Vec::new();
        let mut rounds = 0;
        loop {
            rounds += 1;
            if rounds > MAX_EXPANSIONS || expansions > MAX_EXPANSIONS {
                self.report.add(
                    &at.file,
                    at.line,
                    first_word(&text),
                    Kind::NotCarried,
                    "definitions expand without end (a definition names itself): line skipped",
                );
                return;
            }
            if text.starts_with('@') {
                match self.conditional(&text) {
                    Some(rest) => text = rest,
                    None => return,
                }
            }
            if text.starts_with('$') && self.defs.define(&text) {
                return;
            }
            if text.starts_with("~SEQ") || text.starts_with("~LST") {
                self.sequence(at, &text, expansions);
                return;
            }
            if text.starts_with('~') || !text.contains('$') {
                break;
            }
            match self.defs.expand(&text) {
                Some((line, more)) => {
                    text = decomment(&line, at, self.report);
                    // Lines of a multi-line definition follow this one.
                    if !more.is_empty() {
                        more.into_iter().rev().for_each(|l| follow.insert(0, l));
                    }
                    if !(text.starts_with('@') || text.contains('$')) {
                        break;
                    }
                }
                None => break,
            }
        }
        if !text.is_empty() && !self.include(at, &text) {
            self.braces(at, &text);
        }
        for line in follow {
            self.text(at, line, expansions + 1);
        }
    }

    /// `@ID rest` keeps `rest` when ID is the config id, `@^ID rest` when it is not.
    fn conditional(&self, text: &str) -> Option<String> {
        let (negate, rest) = match text.strip_prefix("@^") {
            Some(r) => (true, r),
            None => (false, &text[1..]),
        };
        let end = rest.find([' ', '\t'])?;
        let matches = &rest[..end] == self.defs.config_id();
        (matches != negate).then(|| rest[end..].trim_start_matches([' ', '\t']).to_string())
    }

    /// A `~SEQ` line repeats its text with the variable set to each value
    /// ([`Sequence`]); `~LST` lists are not read.
    fn sequence(&mut self, at: &Location, text: &str, expansions: usize) {
        let Some(seq) = Sequence::parse(text) else {
            let (word, why) = if text.starts_with("~LST") {
                (
                    "~LST",
                    "~LST lists are not supported by the import: write the lines out",
                )
            } else {
                ("~SEQ", "invalid ~SEQ (keepalived skips it too)")
            };
            self.report
                .add(&at.file, at.line, word, Kind::NotCarried, why);
            return;
        };
        if seq.len() > MAX_SEQUENCE {
            self.report.add(
                &at.file,
                at.line,
                "~SEQ",
                Kind::NotCarried,
                format!(
                    "{} lines: more than the import expands ({MAX_SEQUENCE})",
                    seq.len()
                ),
            );
            return;
        }
        for value in seq.values() {
            self.defs.set(&seq.var, value);
            self.text(at, seq.body.clone(), expansions + 1);
        }
    }

    /// `include PATTERN` (and keepalived's `includer`, `includem`, ... variants, which
    /// differ only in what they complain about): reads every match in order.
    fn include(&mut self, at: &Location, text: &str) -> bool {
        let Some(pattern) = include_pattern(text) else {
            return false;
        };
        if self.depth >= MAX_INCLUDE_DEPTH {
            self.report.add(
                &at.file,
                at.line,
                "include",
                Kind::NotCarried,
                format!(
                    "{pattern}: includes nest deeper than {MAX_INCLUDE_DEPTH} (an include loop?)"
                ),
            );
            return true;
        }
        let base = at.file.parent().unwrap_or(Path::new(""));
        let matches = glob::expand(base, pattern);
        if matches.is_empty() {
            self.report.add(
                &at.file,
                at.line,
                "include",
                Kind::NotCarried,
                format!("no file matches {pattern:?} here"),
            );
        }
        for path in matches {
            if let Err(why) = includable(&path) {
                self.report.add(
                    &at.file,
                    at.line,
                    "include",
                    Kind::NotCarried,
                    format!("{}: {why} (keepalived skips it too)", path.display()),
                );
                continue;
            }
            let id = identity(&path);
            let why = if self.open.contains(&id) {
                Some(format!("{} includes itself (keepalived would read it until it runs out of files): not read again", path.display()))
            } else if self.files_read >= MAX_FILES_READ {
                Some(format!(
                    "{}: more than {MAX_FILES_READ} files read in all: not read",
                    path.display()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                self.report
                    .add(&at.file, at.line, "include", Kind::NotCarried, why);
                continue;
            }
            match read_file(&path) {
                Ok(text) => {
                    self.depth += 1;
                    self.files_read += 1;
                    self.open.push(id);
                    self.file(Arc::from(path.as_path()), &text);
                    self.open.pop();
                    self.depth -= 1;
                }
                Err(why) => self.report.add(
                    &at.file,
                    at.line,
                    "include",
                    Kind::NotCarried,
                    format!("{}: cannot read: {why}", path.display()),
                ),
            }
        }
        true
    }

    /// Puts every `{` and `}` outside double quotes on a line of its own.
    fn braces(&mut self, at: &Location, text: &str) {
        let mut rest = text.trim_matches([' ', '\t']);
        while !rest.is_empty() {
            let split = if rest.starts_with(['{', '}']) {
                1
            } else {
                first_brace(rest).unwrap_or(rest.len())
            };
            let (head, tail) = rest.split_at(split);
            let head = head.trim_end_matches([' ', '\t']);
            if !head.is_empty() {
                self.lines.push(Line {
                    at: at.clone(),
                    text: head.to_string(),
                });
            }
            rest = tail.trim_matches([' ', '\t']);
        }
    }
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or(text)
}

/// The position of the first `{` or `}` not inside double quotes.
fn first_brace(text: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '{' | '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// keepalived's `decomment`: leading blanks go; a `!` or `#` outside double quotes
/// starts a comment; `\!` and `\#` outside quotes are the characters themselves; a
/// trailing `\` is kept (it continues a definition).
fn decomment(line: &str, at: &Location, report: &mut Report) -> String {
    let line = line.trim_start_matches([' ', '\t']);
    let mut out = String::with_capacity(line.len());
    let mut quoted = false;
    let mut comment = false;
    let mut continued = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                if !comment {
                    quoted = !quoted;
                }
                if !comment {
                    out.push(c);
                }
            }
            '\\' => match chars.next() {
                None => {
                    continued = true;
                    break;
                }
                Some(n @ ('#' | '!')) if !quoted => {
                    if !comment {
                        out.push(n);
                    }
                }
                Some(n) => {
                    if !comment {
                        out.push('\\');
                        out.push(n);
                    }
                }
            },
            '!' | '#' if !quoted => comment = true,
            _ => {
                if !comment {
                    out.push(c);
                }
            }
        }
    }
    if quoted {
        report.add(
            &at.file,
            at.line,
            first_word(line),
            Kind::NoEffect,
            "unterminated double quote (keepalived reads the line as it is)",
        );
    }
    let mut out = out.trim_end_matches([' ', '\t']).to_string();
    if continued {
        out.push('\\');
    }
    out
}

/// The pattern of an `include` line.
fn include_pattern(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("include")?;
    let rest = match rest.chars().next() {
        Some(' ' | '\t') => rest,
        Some('r' | 'm' | 'w' | 'b' | 'a') if rest[1..].starts_with([' ', '\t']) => &rest[1..],
        _ => return None,
    };
    Some(rest.trim_matches([' ', '\t']))
}

/// A file's identity for loop detection: its canonical path, or the path itself.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// keepalived reads only regular files without an execute bit.
fn includable(path: &Path) -> Result<(), &'static str> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|_| "cannot be read")?;
    if !meta.is_file() {
        return Err("not a regular file");
    }
    if meta.permissions().mode() & 0o111 != 0 {
        return Err("executable, which keepalived refuses to read as config");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lex(files: &[(&str, &str)], config_id: &str) -> (Vec<String>, String) {
        lex_limited(files, config_id, MAX_LINES)
    }

    fn lex_limited(files: &[(&str, &str)], config_id: &str, max: usize) -> (Vec<String>, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, text) in files {
            let p = dir.path().join(name);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        let mut report = Report::default();
        let lines =
            read_limited(&dir.path().join(files[0].0), config_id, &mut report, max).expect("read");
        let text = report
            .to_text()
            .replace(&format!("{}/", dir.path().display()), "");
        (
            lines
                .into_iter()
                .map(|l| format!("{}:{}", l.at.line, l.text))
                .collect(),
            text,
        )
    }

    #[test]
    fn comments_quotes_and_braces() {
        let (lines, report) = lex(
            &[(
                "k.conf",
                "! header\nvrrp_instance VI_1 { # c\n  script \"a # b\" ! c\n  x \\# y\n}}\n\n",
            )],
            "h",
        );
        assert_eq!(
            lines,
            [
                "2:vrrp_instance VI_1",
                "2:{",
                "3:script \"a # b\"",
                "4:x # y",
                "5:}",
                "5:}"
            ]
        );
        assert_eq!(report, "");
    }

    #[test]
    fn conditionals_definitions_and_sequences() {
        let (lines, _) = lex(
            &[(
                "k.conf",
                "@high priority 170\n@low priority 85\n@^low x 1\n\
                 $IF=eth0\ninterface $IF\ninterface ${IF}x\n\
                 $BLOCK=a 1 \\\n  b 2\n\nstart $BLOCK\n\
                 ~SEQ(i, 1, 2) vip 10.0.0.$i\n",
            )],
            "high",
        );
        assert_eq!(
            lines,
            [
                "1:priority 170",
                "3:x 1",
                "5:interface eth0",
                "6:interface eth0x",
                "10:start a 1",
                "10:b 2",
                "11:vip 10.0.0.1",
                "11:vip 10.0.0.2"
            ]
        );
    }

    #[test]
    fn standard_definitions_expand_without_user_ones() {
        let (lines, _) = lex(
            &[(
                "k.conf",
                "script /run/${_INSTANCE}.up $_HASH\nx \"${_HASH}\" $unknown\n",
            )],
            "r1",
        );
        // An expanded `#` starts a comment, as in keepalived, unless it is quoted.
        assert_eq!(lines, ["1:script /run/r1.up", "2:x \"#\" $unknown"]);
    }

    #[test]
    fn includes_follow_globs_relative_to_the_including_file() {
        let (lines, report) = lex(
            &[
                (
                    "main.conf",
                    "a 1\ninclude conf.d/*.conf\ninclude missing/{x,y}.conf\nb 2\n",
                ),
                ("conf.d/2.conf", "c 3\n"),
                ("conf.d/1.conf", "d 4\n"),
            ],
            "h",
        );
        assert_eq!(lines, ["1:a 1", "1:d 4", "1:c 3", "4:b 2"]);
        assert_eq!(
            report,
            "main.conf:3: include: not carried: no file matches \"missing/{x,y}.conf\" here\n"
        );
    }

    #[test]
    fn include_loops_and_nested_sequences_end() {
        let (lines, report) = lex(
            &[
                ("a.conf", "a 1\ninclude b.conf\n"),
                ("b.conf", "b 2\ninclude a.conf\ninclude b.conf\n"),
            ],
            "h",
        );
        assert_eq!(lines, ["1:a 1", "1:b 2"]);
        assert!(report.contains("a.conf includes itself"), "{report}");
        assert!(report.contains("b.conf includes itself"), "{report}");
        let (lines, report) = lex_limited(
            &[("s.conf", "~SEQ(i, 1, 60000) ~SEQ(j, 1, 60000) x $i $j\n")],
            "h",
            1000,
        );
        assert_eq!(lines.len(), 1000);
        assert!(report.contains("more than 1000 lines"), "{report}");
    }
}
