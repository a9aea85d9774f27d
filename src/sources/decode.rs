//! Validation and extraction: bytes in, an event's id and time out, or the reason it is invalid.
//!
//! The whole document is checked (syntax and UTF-8) in one pass, but only the id and time fields
//! are materialised: everything else is skipped, so the cost does not grow with unrelated fields.

use crate::config::EventFormat;
use crate::record::Reason;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Longest accepted event id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The parts of an event the pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The id, unescaped.
    pub id: String,
    /// Event time, epoch milliseconds.
    pub time: u64,
}

/// Why decoding failed, with a detail for the dead-letter record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The reason, as counted and put in the `tidemark-reason` header.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

fn reject(reason: Reason, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Decodes one record.
pub fn decode(bytes: &[u8], format: &EventFormat) -> Result<Decoded, Rejected> {
    let max = format.max_event_bytes.get() as usize;
    if bytes.len() > max {
        return Err(reject(
            Reason::TooLarge,
            format!("{} bytes, limit {max}", bytes.len()),
        ));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(reject(
            Reason::NotUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = de
        .deserialize_any(TopVisitor { format })
        .and_then(|top| de.end().map(|_| top));
    let top = match top {
        Ok(top) => top,
        Err(e) => return Err(reject(Reason::NotJson, e.to_string())),
    };
    let Top::Object { id, time } = top else {
        return Err(reject(
            Reason::NotObject,
            "the document is not a JSON object",
        ));
    };
    let id = match id {
        None => {
            return Err(reject(
                Reason::IdMissing,
                format!("no \"{}\" field", format.id_field),
            ))
        }
        Some(FieldValue::Other(kind)) => {
            return Err(reject(
                Reason::IdNotString,
                format!("\"{}\" is {kind}", format.id_field),
            ))
        }
        Some(FieldValue::Str(s)) if s.is_empty() => {
            return Err(reject(
                Reason::IdEmpty,
                format!("\"{}\" is empty", format.id_field),
            ))
        }
        Some(FieldValue::Str(s)) if s.len() > MAX_ID_BYTES => {
            return Err(reject(
                Reason::IdTooLong,
                format!(
                    "\"{}\" is {} bytes, limit {MAX_ID_BYTES}",
                    format.id_field,
                    s.len()
                ),
            ))
        }
        Some(FieldValue::Str(s)) => s,
        Some(FieldValue::Int(_) | FieldValue::Neg(_) | FieldValue::Float(_)) => {
            return Err(reject(
                Reason::IdNotString,
                format!("\"{}\" is a number", format.id_field),
            ))
        }
    };
    let time = match time {
        None => {
            return Err(reject(
                Reason::TimeMissing,
                format!("no \"{}\" field", format.time_field),
            ))
        }
        Some(FieldValue::Int(ms)) => ms,
        Some(FieldValue::Neg(ms)) => {
            return Err(reject(Reason::TimeNegative, format!("{ms} is before 1970")))
        }
        Some(FieldValue::Float(f)) => {
            return Err(reject(
                Reason::TimeUnparseable,
                format!("{f} is not whole epoch milliseconds"),
            ))
        }
        Some(FieldValue::Str(s)) => match parse_rfc3339(&s) {
            Ok(ms) if ms < 0 => {
                return Err(reject(
                    Reason::TimeNegative,
                    format!("\"{s}\" is before 1970"),
                ))
            }
            Ok(ms) => ms as u64,
            Err(why) => return Err(reject(Reason::TimeUnparseable, format!("\"{s}\": {why}"))),
        },
        Some(FieldValue::Other(kind)) => {
            return Err(reject(
                Reason::TimeUnparseable,
                format!("\"{}\" is {kind}", format.time_field),
            ))
        }
    };
    Ok(Decoded { id, time })
}

enum Top {
    Object {
        id: Option<FieldValue>,
        time: Option<FieldValue>,
    },
    Other,
}

enum FieldValue {
    Str(String),
    Int(u64),
    Neg(i64),
    Float(f64),
    Other(&'static str),
}

struct TopVisitor<'a> {
    format: &'a EventFormat,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let (mut id, mut time) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed {
            format: self.format,
        })? {
            match key {
                Key::Id => id = Some(map.next_value_seed(ValueSeed)?),
                Key::Time => time = Some(map.next_value_seed(ValueSeed)?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object { id, time })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Top, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Top::Other)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Top, E> {
        Ok(Top::Other)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Top, E> {
        Ok(Top::Other)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Top, E> {
        Ok(Top::Other)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Top, E> {
        Ok(Top::Other)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Top, E> {
        Ok(Top::Other)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Top, E> {
        Ok(Top::Other)
    }
}

enum Key {
    Id,
    Time,
    Other,
}

struct KeySeed<'a> {
    format: &'a EventFormat,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
        Ok(if key == self.format.id_field {
            Key::Id
        } else if key == self.format.time_field {
            Key::Time
        } else {
            Key::Other
        })
    }
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = FieldValue;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<FieldValue, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = FieldValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
        Ok(FieldValue::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Str(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldValue, E> {
        Ok(FieldValue::Int(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldValue, E> {
        Ok(if v < 0 {
            FieldValue::Neg(v)
        } else {
            FieldValue::Int(v as u64)
        })
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldValue, E> {
        Ok(FieldValue::Float(v))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("a boolean"))
    }
    fn visit_unit<E: de::Error>(self) -> Result<FieldValue, E> {
        Ok(FieldValue::Other("null"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an object"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(FieldValue::Other("an array"))
    }
}

/// The text of a top-level field: a string's contents, or a number, boolean or null as JSON
/// text. `None` when the field is absent, is an object or array, or the bytes are not JSON.
pub fn extract_field(bytes: &[u8], field: &str) -> Option<String> {
    let format = EventFormat {
        id_field: field.to_string(),
        time_field: String::new(),
        ..EventFormat::default()
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match de.deserialize_any(TopVisitor { format: &format }).ok()? {
        Top::Object { id: Some(v), .. } => match v {
            FieldValue::Str(s) => Some(s),
            FieldValue::Int(n) => Some(n.to_string()),
            FieldValue::Neg(n) => Some(n.to_string()),
            FieldValue::Float(f) => Some(f.to_string()),
            FieldValue::Other("a boolean") => None,
            FieldValue::Other("null") => Some("null".into()),
            FieldValue::Other(_) => None,
        },
        _ => None,
    }
}

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

    fn fmt() -> EventFormat {
        EventFormat::default()
    }

    fn reason(bytes: &[u8]) -> Reason {
        decode(bytes, &fmt()).expect_err("should be invalid").reason
    }

    #[test]
    fn extracts_id_and_time() {
        let d = decode(
            br#"{"eventId":"a-1","timestamp":1700000000123,"x":[1,{"y":null}]}"#,
            &fmt(),
        )
        .expect("valid");
        assert_eq!(
            d,
            Decoded {
                id: "a-1".into(),
                time: 1_700_000_000_123
            }
        );
        let d = decode(
            br#"{"timestamp":"2023-11-14T22:13:20.5Z","eventId":"caf\u00e9"}"#,
            &fmt(),
        )
        .expect("valid");
        assert_eq!(
            d,
            Decoded {
                id: "café".into(),
                time: 1_700_000_000_500
            }
        );
    }

    #[test]
    fn every_reason_is_reachable() {
        assert_eq!(reason(b"\xff\xfe{}"), Reason::NotUtf8);
        assert_eq!(reason(b"{\"eventId\":"), Reason::NotJson);
        assert_eq!(reason(b"{} trailing"), Reason::NotJson);
        assert_eq!(reason(b"[1,2]"), Reason::NotObject);
        assert_eq!(reason(b"\"str\""), Reason::NotObject);
        assert_eq!(reason(br#"{"timestamp":1}"#), Reason::IdMissing);
        assert_eq!(reason(br#"{"eventId":"","timestamp":1}"#), Reason::IdEmpty);
        assert_eq!(
            reason(br#"{"eventId":42,"timestamp":1}"#),
            Reason::IdNotString
        );
        assert_eq!(
            reason(br#"{"eventId":{"a":1},"timestamp":1}"#),
            Reason::IdNotString
        );
        let long = format!(r#"{{"eventId":"{}","timestamp":1}}"#, "x".repeat(129));
        assert_eq!(reason(long.as_bytes()), Reason::IdTooLong);
        let edge = format!(r#"{{"eventId":"{}","timestamp":1}}"#, "x".repeat(128));
        assert!(decode(edge.as_bytes(), &fmt()).is_ok());
        assert_eq!(reason(br#"{"eventId":"a"}"#), Reason::TimeMissing);
        assert_eq!(
            reason(br#"{"eventId":"a","timestamp":"yesterday"}"#),
            Reason::TimeUnparseable
        );
        assert_eq!(
            reason(br#"{"eventId":"a","timestamp":1.5}"#),
            Reason::TimeUnparseable
        );
        assert_eq!(
            reason(br#"{"eventId":"a","timestamp":true}"#),
            Reason::TimeUnparseable
        );
        assert_eq!(
            reason(br#"{"eventId":"a","timestamp":-5}"#),
            Reason::TimeNegative
        );
        assert_eq!(
            reason(br#"{"eventId":"a","timestamp":"1969-12-31T23:59:59Z"}"#),
            Reason::TimeNegative
        );
        let mut small = fmt();
        small.max_event_bytes = std::num::NonZeroU32::new(10).expect("non-zero");
        assert_eq!(
            decode(br#"{"eventId":"a","timestamp":1}"#, &small)
                .expect_err("too large")
                .reason,
            Reason::TooLarge
        );
    }

    #[test]
    fn field_names_are_configurable() {
        let f = EventFormat {
            id_field: "id".into(),
            time_field: "ts".into(),
            ..fmt()
        };
        let d = decode(br#"{"id":"z","ts":5,"eventId":7}"#, &f).expect("valid");
        assert_eq!(
            d,
            Decoded {
                id: "z".into(),
                time: 5
            }
        );
    }

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
