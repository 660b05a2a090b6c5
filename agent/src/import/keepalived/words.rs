//! keepalived's word splits: a config line's words (`alloc_strvec_r`), a script
//! line's words with quotes and escapes (`alloc_strvec_quoted_escaped`), and C's
//! `strtol` for numbers.

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
