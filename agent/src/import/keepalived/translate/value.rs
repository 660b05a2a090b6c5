//! keepalived's value syntax: unsigned and signed integers (`read_unsigned`,
//! `read_int`), times in seconds with up to six decimals (`read_decimal_unsigned`,
//! `read_timer`), and `true`/`on`/`yes` switches (`check_true_false`).

/// An integer in `min..=max` (decimal; leading blanks allowed, nothing after).
pub fn int(text: &str, min: i64, max: i64) -> Option<i64> {
    let v: i64 = text.trim_start().parse().ok()?;
    (min..=max).contains(&v).then_some(v)
}

/// A non-negative integer in `min..=max`.
pub fn unsigned(text: &str, min: u64, max: u64) -> Option<u64> {
    let t = text.trim_start();
    if t.starts_with('-') {
        return None;
    }
    let v: u64 = t.strip_prefix('+').unwrap_or(t).parse().ok()?;
    (min..=max).contains(&v).then_some(v)
}

/// Seconds with up to six decimals (`1`, `0.1`, `2.5`), in microseconds.
pub fn seconds_us(text: &str) -> Option<u64> {
    let t = text.trim();
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) => (w, f),
        None => (t, ""),
    };
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        unsigned(whole, 0, u64::MAX / 1_000_000)?
    };
    let frac_us: u64 = format!("{frac:0<6}").parse().ok()?;
    Some(whole * 1_000_000 + frac_us)
}

/// keepalived's switches: `true`/`on`/`yes` and `false`/`off`/`no`.
pub fn switch(text: &str) -> Option<bool> {
    match text {
        "true" | "on" | "yes" => Some(true),
        "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keepalived_numbers() {
        assert_eq!(seconds_us("1"), Some(1_000_000));
        assert_eq!(seconds_us("0.1"), Some(100_000));
        assert_eq!(seconds_us("2.000005"), Some(2_000_005));
        assert_eq!(seconds_us("1.0000001"), None);
        assert_eq!(seconds_us("x"), None);
        assert_eq!(unsigned("-1", 0, 10), None);
        assert_eq!(int("-4", -253, 253), Some(-4));
        assert_eq!(switch("on"), Some(true));
    }
}
