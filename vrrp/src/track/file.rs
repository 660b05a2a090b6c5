//! The number a tracked file holds, read as keepalived reads it (`process_track_file`):
//! C's `strtol(buf, NULL, 0)` over the first 127 bytes.

/// How much of the file keepalived reads.
pub const READ_LIMIT: usize = 127;

/// What a tracked file's content means.
///
/// Leading blanks, an optional sign, then a decimal, `0x` hexadecimal or `0` octal
/// number; whatever follows is ignored, and no digits at all read as 0 (so an empty
/// or missing file is 0). `None` for a number outside -2^31..=2^31, which keepalived
/// ignores, keeping the previous value.
pub fn parse_value(content: &[u8]) -> Option<i64> {
    let text = content.get(..content.len().min(READ_LIMIT)).unwrap_or(&[]);
    let mut rest = text;
    while let Some((c, tail)) = rest.split_first() {
        if c.is_ascii_whitespace() {
            rest = tail;
        } else {
            break;
        }
    }
    let negative = match rest.first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    let (radix, digits) = match rest {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &rest[2..]),
        [b'0', ..] => (8, rest),
        _ => (10, rest),
    };
    let mut value: i64 = 0;
    for &b in digits {
        let Some(d) = char::from(b).to_digit(radix) else {
            break;
        };
        value = value
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(d));
    }
    let value = if negative { -value } else { value };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&value)
        .then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_strtol_base_zero() {
        assert_eq!(parse_value(b"42\n"), Some(42));
        assert_eq!(parse_value(b"  -17 trailing"), Some(-17));
        assert_eq!(parse_value(b"+5"), Some(5));
        assert_eq!(parse_value(b"0x1f"), Some(31));
        assert_eq!(parse_value(b"010"), Some(8), "leading 0 is octal");
        assert_eq!(parse_value(b"09"), Some(0), "9 is no octal digit");
        assert_eq!(parse_value(b""), Some(0));
        assert_eq!(parse_value(b"junk"), Some(0));
        assert_eq!(parse_value(b"0x"), Some(0));
        assert_eq!(parse_value(b"2147483648"), Some(2_147_483_648));
        assert_eq!(parse_value(b"2147483649"), None, "out of range: ignored");
        assert_eq!(parse_value(b"-2147483649"), None);
        assert_eq!(parse_value(b"99999999999999999999999"), None);
    }
}
