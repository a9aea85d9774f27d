//! The event-time domain: epoch milliseconds, parsed from RFC 3339 when an event gives its time
//! as text.

/// Parses an RFC 3339 timestamp (`2026-11-27T07:09:38.123Z`, `...+02:00`) to epoch
/// milliseconds. Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339(s: &str) -> Result<i64, &'static str> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err("too short for RFC 3339");
    }
    let num = |from: usize, len: usize| -> Result<i64, &'static str> {
        let mut v = 0i64;
        for &c in &b[from..from + len] {
            if !c.is_ascii_digit() {
                return Err("expected a digit");
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Ok(v)
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err("expected YYYY-MM-DDTHH:MM:SS");
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err("date out of range");
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err("time of day out of range");
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 3 {
                millis = millis * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return Err("empty fraction");
        }
        for _ in (i - start)..3 {
            millis *= 10;
        }
    }
    let offset_min = match b.get(i) {
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return Err("offset out of range");
            }
            let total = h * 60 + m;
            if sign == b'+' {
                total
            } else {
                -total
            }
        }
        _ => return Err("expected Z or an offset like +02:00"),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_min * 60;
    Ok(secs * 1_000 + millis)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_rfc3339("2000-02-29T12:00:00Z"), Ok(951_825_600_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T23:13:20+01:00"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456Z"),
            Ok(1_700_000_000_123)
        );
        assert!(parse_rfc3339("2023-02-29T00:00:00Z").is_err());
        assert!(parse_rfc3339("2023-11-14T22:13:20").is_err());
        assert!(parse_rfc3339("2023-11-14T25:13:20Z").is_err());
    }
}
