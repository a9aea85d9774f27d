//! The event decoder against serde_json on generated JSON-like input: deep nesting, every
//! escape (surrogate pairs and lone surrogates too), numbers at the edges, duplicate keys, giant
//! strings, and random byte damage. The oracle is serde_json's deserializer with the rules of
//! the event format written out here: never the crate's own reference decoder, which shares its
//! field checks with the scanner. The format decodes only the id and time fields' strings and
//! numbers; what it does not read (other fields, keys, non-string ids) is checked for syntax
//! but not decoded, so a lone surrogate there passes, as in serde_json's `IgnoredAny`.
//!
//! A run is deterministic and bounded (`DECODE_CASES`, 1,000 cases by default). A longer one:
//!
//!     DECODE_CASES=200000 cargo test --release --test it decode_props

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use std::num::NonZeroU32;
use tidemark::event::{decode, EventFormat, Reason};

/// The events are bounded at this many bytes, so giant strings cross the limit.
const MAX_BYTES: u32 = 16_384;

/// A JSON-ish value, written out by [`write`] so whitespace, escapes and duplicate keys are
/// ours to choose.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    /// Number text as written.
    Num(String),
    /// String pieces, each raw text or an escape, written between quotes as they are.
    Str(Vec<String>),
    Arr(Vec<J>),
    Obj(Vec<(Vec<String>, J)>),
}

fn write(j: &J, out: &mut String) {
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(parts) => {
            out.push('"');
            parts.iter().for_each(|p| out.push_str(p));
            out.push('"');
        }
        J::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(" ,");
                }
                write(v, out);
            }
            out.push(']');
        }
        J::Obj(fields) => {
            out.push_str("{ ");
            for (i, (k, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(&J::Str(k.clone()), out);
                out.push_str(" :");
                write(v, out);
            }
            out.push('}');
        }
    }
}

fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("0".to_string()),
        Just("-0".to_string()),
        Just("18446744073709551615".to_string()),
        Just("18446744073709551616".to_string()),
        Just("-9223372036854775808".to_string()),
        Just("-9223372036854775809".to_string()),
        Just("1e3".to_string()),
        Just("1.5".to_string()),
        Just("1E-400".to_string()),
        Just("1e400".to_string()),
        Just("0.0".to_string()),
        Just("-1".to_string()),
        Just("01".to_string()),
        Just("1.".to_string()),
        Just("+1".to_string()),
        (0u64..4_000_000_000_000).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:e}")),
    ]
}

/// One piece of string content: plain text, any escape, or something a string may not hold.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 _.:-]{0,12}",
        1 => prop::sample::select(vec![
            "\\n", "\\t", "\\r", "\\b", "\\f", "\\/", "\\\\", "\\\"", "\\u0041", "\\u00e9",
            "\\u0000", "\\ud83d\\ude00", "\\ud800", "\\udc00", "\\ud800\\u0041", "\\x", "\\u12",
            "é", "日本", "😀", "\u{7f}", "\t", "\u{1}",
        ])
        .prop_map(str::to_string),
        1 => any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn string() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        8 => prop::collection::vec(piece(), 0..6),
        1 => (1usize..20_000).prop_map(|n| vec!["x".repeat(n)]),
    ]
}

fn value() -> impl Strategy<Value = J> {
    let leaf = prop_oneof![
        Just(J::Null),
        any::<bool>().prop_map(J::Bool),
        number().prop_map(J::Num),
        string().prop_map(J::Str),
    ];
    leaf.prop_recursive(8, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(J::Arr),
            prop::collection::vec((string(), inner), 0..6).prop_map(J::Obj),
        ]
    })
}

/// A time as RFC 3339 from epoch milliseconds, by the civil-from-days algorithm.
fn rfc3339(ms: u64) -> String {
    let (days, rem) = ((ms / 86_400_000) as i64, ms % 86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1_000 % 60,
        rem % 1_000
    )
}

/// The event's time field: a number, an RFC 3339 string, junk, or any value.
fn time_value() -> impl Strategy<Value = J> {
    prop_oneof![
        3 => number().prop_map(J::Num),
        2 => (0u64..253_402_300_799_999).prop_map(|ms| J::Str(vec![rfc3339(ms)])),
        1 => "[a-z]{1,8}".prop_map(|s| J::Str(vec![s])),
        1 => value(),
    ]
}

/// The id field: ordinary, empty, at and over 128 bytes, escaped, or any value.
fn id_value() -> impl Strategy<Value = J> {
    prop_oneof![
        4 => "[a-z0-9-]{1,40}".prop_map(|s| J::Str(vec![s])),
        1 => Just(J::Str(vec![])),
        1 => (120usize..140).prop_map(|n| J::Str(vec!["i".repeat(n)])),
        1 => string().prop_map(J::Str),
        1 => value(),
    ]
}

/// A document: mostly event-shaped objects (the id and time each present or not, duplicated or
/// not, among other fields), sometimes any value, nested deeply, then damaged or not.
fn document() -> impl Strategy<Value = Vec<u8>> {
    let event = (
        prop::collection::vec(id_value(), 0..3),
        prop::collection::vec(time_value(), 0..3),
        prop::collection::vec((string(), value()), 0..5),
        any::<u64>(),
    )
        .prop_map(|(ids, times, others, order)| {
            let mut fields: Vec<(Vec<String>, J)> = others;
            for v in ids {
                fields.push((vec!["eventId".into()], v));
            }
            for v in times {
                fields.push((vec!["timestamp".into()], v));
            }
            // A seeded shuffle, so duplicates and other fields come in any order.
            let mut seed = order;
            for i in (1..fields.len()).rev() {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                fields.swap(i, (seed >> 33) as usize % (i + 1));
            }
            J::Obj(fields)
        });
    let top = prop_oneof![
        6 => event,
        1 => value(),
        1 => (1usize..300).prop_map(|depth| {
            let mut j = J::Obj(vec![
                (vec!["eventId".into()], J::Str(vec!["deep".into()])),
                (vec!["timestamp".into()], J::Num("1".into())),
            ]);
            for _ in 0..depth {
                j = J::Obj(vec![(vec!["n".into()], J::Arr(vec![j]))]);
            }
            j
        }),
    ];
    (
        top,
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..3),
    )
        .prop_map(|(j, damage)| {
            let mut text = String::new();
            write(&j, &mut text);
            let mut bytes = text.into_bytes();
            for (at, b, how) in damage {
                if bytes.is_empty() {
                    break;
                }
                let at = at % bytes.len();
                match how {
                    0 => bytes[at] = b,
                    1 => bytes.insert(at, b),
                    _ => bytes.truncate(at),
                }
            }
            bytes
        })
}

/// The top level of a document as the format reads it: an object's id and time fields (the
/// last of duplicate keys), or not an object. Other values are skipped with serde_json's
/// `IgnoredAny`, which has no nesting limit; the format sets none on fields it does not read.
enum Top {
    Object { id: Option<F>, time: Option<F> },
    Other,
}

/// A field the format reads, as far as its rules need: strings and numbers are decoded,
/// anything else is skipped (not decoded, so with the same leniency as any skipped value).
enum F {
    Str(String),
    Int(u64),
    Neg,
    Float,
    Other,
}

impl<'de> serde::Deserialize<'de> for F {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<F, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> serde::de::Visitor<'de> for FieldVisitor {
    type Value = F;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_str<E>(self, s: &str) -> Result<F, E> {
        Ok(F::Str(s.to_string()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<F, E> {
        Ok(F::Int(n))
    }
    fn visit_i64<E>(self, _: i64) -> Result<F, E> {
        Ok(F::Neg)
    }
    fn visit_f64<E>(self, _: f64) -> Result<F, E> {
        Ok(F::Float)
    }
    fn visit_bool<E>(self, _: bool) -> Result<F, E> {
        Ok(F::Other)
    }
    fn visit_unit<E>(self) -> Result<F, E> {
        Ok(F::Other)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<F, A::Error> {
        // Keys as bytes, as at the top level: serde_json reads an ignored key as text.
        while map.next_key::<serde_bytes::ByteBuf>()?.is_some() {
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(F::Other)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<F, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(F::Other)
    }
}

struct TopVisitor;

impl<'de> serde::de::Visitor<'de> for TopVisitor {
    type Value = Top;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON document")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let (mut id, mut time) = (None, None);
        // Keys as serde_json's bytes: a key whose escapes do not decode to text (a lone
        // surrogate) is no field the format reads, and is skipped like any other.
        while let Some(key) = map.next_key::<serde_bytes::ByteBuf>()? {
            match key.as_slice() {
                b"eventId" => id = Some(map.next_value()?),
                b"timestamp" => time = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Top::Object { id, time })
    }
}

/// What the event format says of `bytes`, worked out with serde_json: the id and time, or the
/// reason it is refused.
fn oracle(bytes: &[u8]) -> Result<(String, u64), Reason> {
    use serde::{Deserialize as _, Deserializer as _};
    if bytes.len() > MAX_BYTES as usize {
        return Err(Reason::TooLarge);
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err(Reason::NotUtf8);
    }
    // JSON allows no raw control character in a string. serde_json's bytes keys (below) let
    // one through, so it is checked here: in a valid document, strings are exactly the spans
    // between unescaped quotes.
    let (mut in_string, mut escaped) = (false, false);
    for &b in bytes {
        if in_string && b < 0x20 {
            return Err(Reason::NotJson);
        }
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (_, false, b'"') => in_string = !in_string,
            _ => {}
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    // A document that is no object is not read either: it need only be JSON, as IgnoredAny
    // checks it (a number out of f64's range is still JSON).
    let object = bytes.iter().find(|b| !b" \t\r\n".contains(b)) == Some(&b'{');
    let top = if object {
        de.deserialize_map(TopVisitor)
    } else {
        serde::de::IgnoredAny::deserialize(&mut de).map(|_| Top::Other)
    }
    .and_then(|top| de.end().map(|()| top))
    .map_err(|_| Reason::NotJson)?;
    let Top::Object { id, time } = top else {
        return Err(Reason::NotObject);
    };
    let id = match id {
        None => return Err(Reason::IdMissing),
        Some(F::Str(s)) if s.is_empty() => return Err(Reason::IdEmpty),
        Some(F::Str(s)) if s.len() > 128 => return Err(Reason::IdTooLong),
        Some(F::Str(s)) => s,
        Some(_) => return Err(Reason::IdNotString),
    };
    let time = match time {
        None => return Err(Reason::TimeMissing),
        Some(F::Int(ms)) => ms,
        Some(F::Neg) => return Err(Reason::TimeNegative),
        // Only times written by `rfc3339` above are RFC 3339 here; anything else is junk.
        Some(F::Str(s)) => match parse_generated(&s) {
            Some(ms) => ms,
            None => return Err(Reason::TimeUnparseable),
        },
        Some(F::Float | F::Other) => return Err(Reason::TimeUnparseable),
    };
    Ok((id, time))
}

/// The epoch milliseconds of a string `rfc3339` could have written, or `None`.
fn parse_generated(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 24 || [4, 7, 10, 13, 16, 19, 23].map(|i| b[i]) != *b"--T::.Z" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        let digits = s.get(r)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse::<u64>().ok())?
    };
    let (y, mo, d) = (num(0..4)? as i64, num(5..7)? as i64, num(8..10)? as i64);
    let (h, mi, sec, ms) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let mp = if mo > 2 { mo - 3 } else { mo + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let ms_of_day = ((h * 60 + mi) * 60 + sec) * 1_000 + ms;
    (days >= 0).then(|| days as u64 * 86_400_000 + ms_of_day)
}

#[test]
fn the_decoder_agrees_with_serde_json_on_generated_documents() {
    let cases = std::env::var("DECODE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let format = EventFormat {
        max_event_bytes: NonZeroU32::new(MAX_BYTES).unwrap(),
        ..EventFormat::default()
    };
    let result = runner.run(&document(), |bytes| {
        let got = decode(&bytes, &format)
            .map(|d| (d.id.as_str(&bytes).to_string(), d.time))
            .map_err(|r| r.reason);
        let want = oracle(&bytes);
        prop_assert_eq!(
            &got,
            &want,
            "on {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        );
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn the_generated_times_are_the_ones_parsed_back() {
    for ms in [
        0,
        1,
        86_399_999,
        951_782_400_000,
        1_700_000_000_123,
        253_402_300_799_999,
    ] {
        let text = rfc3339(ms);
        assert_eq!(parse_generated(&text), Some(ms), "{text}");
        let event = format!(r#"{{"eventId":"a","timestamp":"{text}"}}"#);
        assert_eq!(
            decode(event.as_bytes(), &EventFormat::default())
                .unwrap()
                .time,
            ms
        );
    }
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
}
