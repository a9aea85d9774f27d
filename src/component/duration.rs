//! Human durations (`"500ms"`, `"2s"`, `"10m"`, `"1h"`) as they are written in pipeline files.

use serde::{de, Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// A duration written as a number and a unit. Stored in milliseconds because
/// event time is in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// Parses `"<n><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(|| {
            format!("bad duration \"{text}\": a unit is required (ms, s, m, h, d)")
        })?;
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!(
                "bad duration \"{text}\": expected a whole number followed by ms, s, m, h or d"
            ));
        }
        let n: u64 = num
            .parse()
            .map_err(|_| format!("bad duration \"{text}\": number out of range"))?;
        let factor = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "bad duration \"{text}\": unknown unit \"{unit}\" (use ms, s, m, h or d)"
                ))
            }
        };
        n.checked_mul(factor)
            .map(Millis)
            .ok_or_else(|| format!("bad duration \"{text}\": out of range"))
    }

    /// As a std duration.
    pub fn as_duration(self) -> Duration {
        Duration::from_millis(self.0)
    }
}

/// A duration flag on the command line (`--wait 30s`), written as in pipeline files.
pub fn parse_flag(text: &str) -> Result<Duration, String> {
    Millis::parse(text).map(Millis::as_duration)
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0;
        if ms == 0 {
            write!(f, "0s")
        } else if ms % 3_600_000 == 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms % 60_000 == 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms % 1_000 == 0 {
            write!(f, "{}s", ms / 1_000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for Millis {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Millis::parse(&s).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::Millis;

    #[test]
    fn parses_units() {
        assert_eq!(Millis::parse("500ms"), Ok(Millis(500)));
        assert_eq!(Millis::parse("2s"), Ok(Millis(2_000)));
        assert_eq!(Millis::parse("10m"), Ok(Millis(600_000)));
        assert_eq!(Millis::parse("1h"), Ok(Millis(3_600_000)));
        assert_eq!(Millis::parse("0s"), Ok(Millis(0)));
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "2",
            "s",
            "2x",
            "-1s",
            "1.5s",
            "99999999999999999999s",
            "2 s",
        ] {
            assert!(Millis::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn display_round_trips() {
        for ms in [0, 1, 999, 1_000, 90_000, 3_600_000, 5_400_000] {
            let m = Millis(ms);
            assert_eq!(Millis::parse(&m.to_string()), Ok(m));
        }
    }
}
