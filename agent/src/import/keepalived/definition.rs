//! keepalived's `$NAME=VALUE` definitions (`check_definition`, `replace_param`):
//! set on a line of their own, continued onto the next lines by a trailing `\`,
//! used as `$NAME` (followed by a blank, `,`, `)` or the end of the line) or
//! `${NAME}`, plus the standard `${_INSTANCE}`, `$_HASH`, `$_BANG` and
//! `${_RANDOM}`; and `~SEQ(VAR, START, STEP, END)` sequences, which set one.

use super::words::parse_c_long;

/// One definition.
#[derive(Debug, Clone)]
struct Definition {
    name: String,
    /// One line, or several for a multi-line definition.
    lines: Vec<String>,
}

/// Every definition so far, and the config id `${_INSTANCE}` expands to.
#[derive(Debug)]
pub struct Definitions {
    list: Vec<Definition>,
    config_id: String,
    /// The multi-line definition whose next lines are being read.
    continuing: Option<usize>,
}

impl Definitions {
    /// No definitions yet.
    pub fn new(config_id: &str) -> Definitions {
        Definitions {
            list: Vec::new(),
            config_id: config_id.to_string(),
            continuing: None,
        }
    }

    /// The config id `@ID` lines are matched against.
    pub fn config_id(&self) -> &str {
        &self.config_id
    }

    /// Reads `$NAME=VALUE` (no blank before `=`); `false` when `text` is no
    /// definition. A trailing `\` makes the following lines part of it.
    pub fn define(&mut self, text: &str) -> bool {
        let Some(body) = text.strip_prefix('$') else {
            return false;
        };
        let Some(eq) = body.find('=') else {
            return false;
        };
        let name = &body[..eq];
        if !valid_name(name) {
            return false;
        }
        let mut value = body[eq + 1..].trim_start_matches([' ', '\t']);
        let continued = value.ends_with('\\');
        if continued {
            value = value.trim_end_matches('\\').trim_end_matches([' ', '\t']);
        }
        let lines = if value.is_empty() {
            vec![]
        } else {
            vec![value.to_string()]
        };
        let d = self.set_lines(name, lines);
        self.continuing = continued.then_some(d);
        true
    }

    /// Whether the next line continues a definition.
    pub fn continuing(&self) -> bool {
        self.continuing.is_some()
    }

    /// Ends a multi-line definition (an empty line, or the end of its file).
    pub fn end_continuation(&mut self) {
        self.continuing = None;
    }

    /// Adds the next line to the definition being continued.
    pub fn continue_with(&mut self, text: &str) {
        let Some(d) = self.continuing else { return };
        let (line, more) = match text.strip_suffix('\\') {
            Some(t) => (t.trim_end_matches([' ', '\t']), true),
            None => (text, false),
        };
        if !line.is_empty() {
            self.list[d].lines.push(line.to_string());
        }
        if !more {
            self.continuing = None;
        }
    }

    /// Sets `name` to one line (a sequence's variable).
    pub fn set(&mut self, name: &str, value: String) {
        self.set_lines(name, vec![value]);
    }

    fn set_lines(&mut self, name: &str, lines: Vec<String>) -> usize {
        match self.list.iter().position(|d| d.name == name) {
            Some(i) => {
                self.list[i].lines = lines;
                i
            }
            None => {
                self.list.push(Definition {
                    name: name.to_string(),
                    lines,
                });
                self.list.len() - 1
            }
        }
    }

    /// Expands the first `$NAME` / `${NAME}` that names a definition (keepalived
    /// rescans from there, so a definition may use others). A multi-line definition
    /// expands only at the end of a line; its further lines are returned.
    pub fn expand(&self, text: &str) -> Option<(String, Vec<String>)> {
        let mut from = 0;
        while let Some(off) = text[from..].find('$') {
            let start = from + off;
            if let Some((end, def)) = self.reference(text, start) {
                if def.lines.len() > 1 && !text[end..].is_empty() {
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
        if let Some(d) = self.list.iter().find(|d| d.name == name) {
            return Some(d.clone());
        }
        let value = match name {
            "_INSTANCE" => self.config_id.clone(),
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
}

/// A definition's name: a letter or `_`, then letters, digits and `_`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `~SEQ(VAR, END)`, `~SEQ(VAR, START, END)` or `~SEQ(VAR, START, STEP, END)`
/// (`~SEQx`: hexadecimal values) and the text it repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    /// The variable set for each line.
    pub var: String,
    /// Values in hexadecimal.
    pub hex: bool,
    pub start: i64,
    pub step: i64,
    pub end: i64,
    /// The text after the parenthesis.
    pub body: String,
}

impl Sequence {
    /// Parses a `~SEQ` line; `None` when keepalived would refuse it.
    pub fn parse(text: &str) -> Option<Sequence> {
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
        Some(Sequence {
            var,
            hex,
            start,
            step,
            end,
            body,
        })
    }

    /// The values in order, as text.
    pub fn values(&self) -> impl Iterator<Item = String> + '_ {
        let mut v = self.start;
        std::iter::from_fn(move || {
            let more = (self.step > 0 && v <= self.end) || (self.step < 0 && v >= self.end);
            if !more {
                return None;
            }
            let text = if self.hex {
                format!("{v:x}")
            } else {
                v.to_string()
            };
            v += self.step;
            Some(text)
        })
    }

    /// How many lines it makes.
    pub fn len(&self) -> i64 {
        (self.end - self.start) / self.step + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_keepalived_rules() {
        let mut d = Definitions::new("lb1");
        assert!(d.define("$IF=eth0"));
        assert!(!d.define("$IF =eth0"), "no blank before =");
        assert_eq!(
            d.expand("interface $IF"),
            Some(("interface eth0".into(), vec![]))
        );
        assert_eq!(d.expand("x ${IF}.1"), Some(("x eth0.1".into(), vec![])));
        assert_eq!(d.expand("x $IF.1"), None, "$NAME must end at a blank");
        assert_eq!(d.expand("id ${_INSTANCE}"), Some(("id lb1".into(), vec![])));
        assert!(d.define("$BLOCK=a \\"));
        assert!(d.continuing());
        d.continue_with("b");
        assert!(!d.continuing());
        assert_eq!(
            d.expand("x $BLOCK"),
            Some(("x a".into(), vec!["b".to_string()]))
        );
        assert_eq!(d.expand("$BLOCK y"), None, "multi-line only at the end");
    }

    #[test]
    fn sequences() {
        let s = Sequence::parse("~SEQx(i, 9, 3, 15) addr fd00::$i").expect("parses");
        assert_eq!(s.values().collect::<Vec<_>>(), ["9", "c", "f"]);
        assert_eq!(s.len(), 3);
        assert_eq!(s.body, "addr fd00::$i");
        let s = Sequence::parse("~SEQ(n, -2) x").expect("parses");
        assert_eq!(s.values().collect::<Vec<_>>(), ["-1", "-2"]);
        assert_eq!(Sequence::parse("~SEQ(n, 1, -1, 5) x"), None);
    }
}
