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

/// A `$NAME=` definition.
#[derive(Debug, Clone)]
struct Definition {
    name: String,
    /// One line, or several for a multi-line definition.
    lines: Vec<String>,
}

struct Lexer<'a> {
    config_id: &'a str,
    definitions: Vec<Definition>,
    /// The definition whose continuation lines are being read.
    continuing: Option<usize>,
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
        config_id,
        definitions: Vec::new(),
        continuing: None,
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
                self.continuing = None;
                continue;
            }
            let text = decomment(raw, &at, self.report);
            if text.is_empty() {
                // A comment line: keepalived reads on, even inside a definition.
                continue;
            }
            if let Some(d) = self.continuing {
                self.continue_definition(d, &text);
                continue;
            }
            self.text(&at, text, 0);
        }
        // A definition never continues into the next file.
        self.continuing = None;
    }

    /// Adds a continuation line to a multi-line definition.
    fn continue_definition(&mut self, d: usize, text: &str) {
        let (line, more) = match text.strip_suffix('\\') {
            Some(t) => (t.trim_end_matches([' ', '\t']), true),
            None => (text, false),
        };
        if !line.is_empty() {
            self.definitions[d].lines.push(line.to_string());
        }
        if !more {
            self.continuing = None;
        }
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
            if text.starts_with('$') {
                if let Some(d) = self.definition(&text) {
                    if self.definitions[d]
                        .lines
                        .last()
                        .is_some_and(|l| l.ends_with('\\'))
                    {
                        let first = self.definitions[d].lines.pop().unwrap_or_default();
                        let first = first.trim_end_matches('\\').trim_end_matches([' ', '\t']);
                        if !first.is_empty() {
                            self.definitions[d].lines.push(first.to_string());
                        }
                        self.continuing = Some(d);
                    }
                    return;
                }
            }
            if text.starts_with("~SEQ") || text.starts_with("~LST") {
                self.sequence(at, &text, expansions);
                return;
            }
            if text.starts_with('~') || !text.contains('$') {
                break;
            }
            match self.expand(&text) {
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
        let matches = &rest[..end] == self.config_id;
        (matches != negate).then(|| rest[end..].trim_start_matches([' ', '\t']).to_string())
    }

    /// `$NAME=VALUE` (no blank before `=`): sets the definition, returns its index.
    fn definition(&mut self, text: &str) -> Option<usize> {
        let body = &text[1..];
        let eq = body.find('=')?;
        let name = &body[..eq];
        if !valid_name(name) {
            return None;
        }
        let value = body[eq + 1..].trim_start_matches([' ', '\t']).to_string();
        let lines = if value.is_empty() {
            vec![]
        } else {
            vec![value]
        };
        match self.definitions.iter().position(|d| d.name == name) {
            Some(i) => {
                self.definitions[i].lines = lines;
                Some(i)
            }
            None => {
                self.definitions.push(Definition {
                    name: name.to_string(),
                    lines,
                });
                Some(self.definitions.len() - 1)
            }
        }
    }

    /// Expands the first `$NAME` / `${NAME}` that names a definition (keepalived
    /// rescans from there, so a definition may use others). A multi-line definition
    /// expands only at the end of a line; its further lines are returned.
    fn expand(&self, text: &str) -> Option<(String, Vec<String>)> {
        let mut from = 0;
        while let Some(off) = text[from..].find('$') {
            let start = from + off;
            if let Some((end, def)) = self.reference(text, start) {
                let at_end = text[end..].is_empty();
                if def.lines.len() > 1 && !at_end {
                    from = start + 1;
                    continue;
                }
                let mut line = text[..start].to_string();
                line.push_str(def.lines.first().map_or("", String::as_str));
                line.push_str(&text[end..]);
                let more = def.lines.iter().skip(1).cloned().collect();
                return Some((line, more));
            }
            from = start + 1;
        }
        None
    }

    /// The definition a `$` at `start` refers to, and where the reference ends.
    fn reference(&self, text: &str, start: usize) -> Option<(usize, Definition)> {
        let rest = &text[start + 1..];
        let (braced, name_from) = if rest.starts_with('{') {
            (true, 1)
        } else {
            (false, 0)
        };
        let name_len = rest[name_from..]
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count();
        let name = &rest[name_from..name_from + name_len];
        if !valid_name(name) {
            return None;
        }
        let after = name_from + name_len;
        let end = if braced {
            // `${_RANDOM 1 10}` takes parameters: digits and spaces.
            let params = rest[after..]
                .bytes()
                .take_while(|b| *b == b' ' || b.is_ascii_digit())
                .count();
            if !rest[after + params..].starts_with('}') {
                return None;
            }
            after + params + 1
        } else {
            match rest[after..].chars().next() {
                None | Some(' ' | '\t' | ',' | ')') => after,
                Some(_) => return None,
            }
        };
        let def = self.lookup(name, &rest[name_from..end])?;
        Some((start + 1 + end, def))
    }

    /// A user definition, or one of keepalived's standard ones.
    fn lookup(&self, name: &str, reference: &str) -> Option<Definition> {
        if let Some(d) = self.definitions.iter().find(|d| d.name == name) {
            return Some(d.clone());
        }
        let value = match name {
            "_INSTANCE" => self.config_id.to_string(),
            "_HASH" => "#".into(),
            "_BANG" => "!".into(),
            // The lower bound: an import must not draw numbers.
            "_RANDOM" => reference
                .trim_start_matches("_RANDOM")
                .split_whitespace()
                .next()
                .unwrap_or("0")
                .trim_end_matches('}')
                .to_string(),
            _ => return None,
        };
        Some(Definition {
            name: name.to_string(),
            lines: vec![value],
        })
    }

    /// `~SEQ(VAR, END)`, `~SEQ(VAR, START, END)`, `~SEQ(VAR, START, STEP, END)`
    /// (`~SEQx`: hexadecimal values) repeats the rest of the line with `$VAR` set.
    fn sequence(&mut self, at: &Location, text: &str, expansions: usize) {
        let parsed = parse_sequence(text);
        let Some((var, hex, start, step, end, body)) = parsed else {
            let word = if text.starts_with("~LST") {
                "~LST"
            } else {
                "~SEQ"
            };
            let why = if word == "~LST" {
                "~LST lists are not supported by the import: write the lines out"
            } else {
                "invalid ~SEQ (keepalived skips it too)"
            };
            self.report
                .add(&at.file, at.line, word, Kind::NotCarried, why);
            return;
        };
        let count = (end - start) / step + 1;
        if count > MAX_SEQUENCE {
            self.report.add(
                &at.file,
                at.line,
                "~SEQ",
                Kind::NotCarried,
                format!("{count} lines: more than the import expands ({MAX_SEQUENCE})"),
            );
            return;
        }
        let mut v = start;
        while (step > 0 && v <= end) || (step < 0 && v >= end) {
            let value = if hex { format!("{v:x}") } else { v.to_string() };
            match self.definitions.iter_mut().find(|d| d.name == var) {
                Some(d) => d.lines = vec![value],
                None => self.definitions.push(Definition {
                    name: var.clone(),
                    lines: vec![value],
                }),
            }
            self.text(at, body.clone(), expansions + 1);
            v += step;
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

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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

/// `~SEQ[x](VAR, ...) TEXT` -> (VAR, hex, start, step, end, TEXT).
fn parse_sequence(text: &str) -> Option<(String, bool, i64, i64, i64, String)> {
    let rest = text.strip_prefix("~SEQ")?;
    let (hex, rest) = match rest.strip_prefix('x') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start().strip_prefix('(')?;
    let close = rest.find(')')?;
    let mut parts = rest[..close].split(',').map(str::trim);
    let var = parts.next().filter(|v| valid_name(v))?.to_string();
    let numbers: Vec<i64> = parts.map(parse_c_long).collect::<Option<_>>()?;
    let (start, step, end) = match numbers.as_slice() {
        [end] => (
            if *end < 0 { -1 } else { 1 },
            if *end < 1 { -1 } else { 1 },
            *end,
        ),
        [start, end] => (*start, if start <= end { 1 } else { -1 }, *end),
        [start, step, end] => (*start, *step, *end),
        _ => return None,
    };
    if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
        return None;
    }
    if hex && (start < 0 || end < 0) {
        return None;
    }
    let body = rest[close + 1..]
        .trim_start_matches([' ', '\t'])
        .to_string();
    Some((var, hex, start, step, end, body))
}

/// C's `strtol(s, 0)` for a whole word: decimal, `0x` hex, `0` octal.
pub fn parse_c_long(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let v = if let Some(h) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i64::from_str_radix(h, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

/// keepalived's word split (`alloc_strvec_r`): white space separates words; a
/// double-quoted string is one word without its quotes.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_space);
        if rest.is_empty() {
            return out;
        }
        if let Some(q) = rest.strip_prefix('"') {
            match q.find('"') {
                Some(end) => {
                    out.push(q[..end].to_string());
                    rest = &q[end + 1..];
                }
                None => {
                    // Unmatched: keepalived stops there.
                    return out;
                }
            }
        } else {
            let end = rest
                .find(|c: char| is_space(c) || c == '"')
                .unwrap_or(rest.len());
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c' | '\n' | '\r' | '\x0b')
}

/// keepalived's split of a script line (`alloc_strvec_quoted_escaped`): words at
/// white space, `"..."` and `'...'` quote (inside the other kind too), backslash
/// escapes (`\n`, `\t`, `\xHH`, `\NNN` octal, `\cX`, others the character itself).
/// `None` for an unmatched quote or a trailing backslash (keepalived drops the line).
pub fn script_words(text: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| is_space(*c)) {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && is_space(c) {
                break;
            }
            chars.next();
            match (c, quote) {
                ('\\', _) => word.push(escape(&mut chars)?),
                ('"' | '\'', None) => quote = Some(c),
                (q, Some(open)) if q == open => quote = None,
                _ => word.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        out.push(word);
    }
}

fn escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<char> {
    let c = chars.next()?;
    Some(match c {
        'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
            let mut v: u32 = 0;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(16)) {
                v = (v << 4 | d) & 0xff;
                chars.next();
            }
            char::from_u32(v)?
        }
        'c' if chars.peek().is_some() => char::from_u32(u32::from(chars.next()?) & 0x1f)?,
        '0'..='7' => {
            let mut v = c.to_digit(8)?;
            for _ in 0..2 {
                match chars.peek().and_then(|c| c.to_digit(8)) {
                    Some(d) => {
                        v = v * 8 + d;
                        chars.next();
                    }
                    None => break,
                }
            }
            char::from_u32(v & 0xff)?
        }
        'a' => '\x07',
        'b' => '\x08',
        'E' => '\x1b',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        other => other,
    })
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

    #[test]
    fn words_and_script_words() {
        assert_eq!(
            words("notify \"/bin/a b\"  root"),
            ["notify", "/bin/a b", "root"]
        );
        assert_eq!(
            script_words(r#"/bin/sh -c 'echo "$X"' a\ b \x41"#),
            Some(vec![
                "/bin/sh".to_string(),
                "-c".into(),
                "echo \"$X\"".into(),
                "a b".into(),
                "A".into()
            ])
        );
        assert_eq!(script_words("'open"), None);
        assert_eq!(parse_c_long("0x1f"), Some(31));
        assert_eq!(parse_c_long("010"), Some(8));
    }
}
