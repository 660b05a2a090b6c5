//! The file names an `include` pattern matches, as glibc's `glob(3)` with
//! `GLOB_BRACE` finds them for keepalived: `{a,b}` alternatives first (each
//! alternative's matches in turn), then `*`, `?` and `[...]` per path component,
//! names sorted, hidden names only for a pattern that starts with a dot.

use std::path::{Path, PathBuf};

/// Every existing path `pattern` names; a relative pattern is taken from `base`.
pub fn expand(base: &Path, pattern: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for alternative in braces(pattern) {
        let (start, rest) = match alternative.strip_prefix('/') {
            Some(rest) => (PathBuf::from("/"), rest.to_string()),
            None => (base.to_path_buf(), alternative.clone()),
        };
        let components: Vec<&str> = rest.split('/').filter(|c| !c.is_empty()).collect();
        let mut found = vec![start];
        for component in &components {
            found = found
                .into_iter()
                .flat_map(|dir| step(&dir, component))
                .collect();
        }
        for path in found {
            if !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

/// The paths one component of a pattern reaches from `dir`.
fn step(dir: &Path, component: &str) -> Vec<PathBuf> {
    if !component.contains(['*', '?', '[']) {
        let p = dir.join(unescape(component));
        return if p.symlink_metadata().is_ok() {
            vec![p]
        } else {
            vec![]
        };
    }
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return vec![];
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') || component.starts_with('.'))
        .filter(|n| matches(component.as_bytes(), n.as_bytes()))
        .collect();
    names.sort();
    names.into_iter().map(|n| dir.join(n)).collect()
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// `{a,b{c,d}}` expanded in order; a `\` escapes the next character.
fn braces(pattern: &str) -> Vec<String> {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'{' => {
                let Some(close) = closing_brace(bytes, i) else {
                    return vec![pattern.to_string()];
                };
                let (head, tail) = (&pattern[..i], &pattern[close + 1..]);
                let mut out = Vec::new();
                for alt in split_top_level(&pattern[i + 1..close]) {
                    for expanded in braces(&format!("{head}{alt}{tail}")) {
                        out.push(expanded);
                    }
                }
                return out;
            }
            _ => i += 1,
        }
    }
    vec![pattern.to_string()]
}

fn closing_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut escaped) = (0, 0, false);
    for (i, b) in s.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'{' => depth += 1,
            b'}' => depth -= 1,
            b',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// fnmatch(3) without flags: `*`, `?`, `[abc]`, `[a-z]`, `[!x]` / `[^x]`, `\x`.
fn matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|k| matches(rest, &name[k..])),
        Some((b'?', rest)) => !name.is_empty() && matches(rest, &name[1..]),
        Some((b'[', rest)) => match (class(rest, name.first().copied()), name.split_first()) {
            (Some((true, after)), Some((_, tail))) => matches(after, tail),
            (None, Some((b'[', tail))) => matches(rest, tail),
            _ => false,
        },
        Some((b'\\', rest)) if !rest.is_empty() => {
            name.first() == rest.first() && matches(&rest[1..], &name[1..])
        }
        Some((c, rest)) => name.first() == Some(c) && matches(rest, &name[1..]),
    }
}

/// A `[...]` class after its `[`: whether `c` is in it, and the pattern after `]`.
/// `None` when there is no closing `]` (then `[` is literal).
fn class(p: &[u8], c: Option<u8>) -> Option<(bool, &[u8])> {
    let (negate, mut i) = match p.first() {
        Some(b'!' | b'^') => (true, 1),
        _ => (false, 0),
    };
    let mut found = false;
    let mut first = true;
    while i < p.len() {
        if p[i] == b']' && !first {
            let hit = c.is_some() && found != negate;
            return Some((hit, &p[i + 1..]));
        }
        first = false;
        let lo = p[i];
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let hi = p[i + 2];
            found |= c.is_some_and(|c| lo <= c && c <= hi);
            i += 3;
        } else {
            found |= c == Some(lo);
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_fnmatch() {
        assert!(matches(b"*.conf", b"a.conf"));
        assert!(!matches(b"*.conf", b"a.conf.bak"));
        assert!(matches(b"v[0-9]?.c*", b"v1x.conf"));
        assert!(matches(b"[!a]*", b"b"));
        assert!(!matches(b"[!a]*", b"a"));
        assert!(matches(b"a\\*", b"a*"));
        assert_eq!(braces("a/{x,y{1,2}}/b"), ["a/x/b", "a/y1/b", "a/y2/b"]);
        assert_eq!(braces("plain"), ["plain"]);
    }

    #[test]
    fn expansion_reads_the_folder_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in ["b.conf", "a.conf", ".hidden.conf", "c.txt"] {
            std::fs::write(dir.path().join(n), "").expect("write");
        }
        let got = expand(dir.path(), "*.conf");
        assert_eq!(got, [dir.path().join("a.conf"), dir.path().join("b.conf")]);
        let got = expand(
            Path::new("/"),
            &format!("{}/{{c.txt,a.conf}}", dir.path().display()),
        );
        assert_eq!(got, [dir.path().join("c.txt"), dir.path().join("a.conf")]);
        assert!(expand(dir.path(), "none/*.conf").is_empty());
    }
}
