//! Validation and extraction: bytes in, an event's id and time out, or the reason it is invalid.
//!
//! The whole document is checked (syntax and UTF-8) in one pass by [`super::scan`], but only the
//! id and time fields are materialised: everything else is skipped, so the cost does not grow
//! with unrelated fields. The checks on those two values are here, shared by the scanner and the
//! serde reference ([`super::reference`]) so the two can only differ in parsing.

use super::time::parse_rfc3339;
use super::{EventFormat, Reason};

/// Longest accepted event id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// The parts of an event the pipeline needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The id.
    pub id: IdText,
    /// Event time, epoch milliseconds.
    pub time: u64,
}

/// Where an id's text is: in the payload as is (the common case, no allocation), or unescaped
/// into a string of its own when the JSON string had escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdText {
    /// Bytes `start..end` of the payload.
    Span(usize, usize),
    /// The unescaped text.
    Owned(String),
}

impl IdText {
    /// The id as text, given the payload it was decoded from.
    pub fn as_str<'a>(&'a self, payload: &'a [u8]) -> &'a str {
        match self {
            IdText::Span(a, b) => std::str::from_utf8(&payload[*a..*b]).unwrap_or_default(),
            IdText::Owned(s) => s,
        }
    }

    fn len(&self) -> usize {
        match self {
            IdText::Span(a, b) => b - a,
            IdText::Owned(s) => s.len(),
        }
    }
}

/// Why decoding failed, with a detail for the dead-letter record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The reason, as counted and put in the `tidemark-reason` header.
    pub reason: Reason,
    /// What exactly was wrong.
    pub detail: String,
}

pub(super) fn reject(reason: Reason, detail: impl Into<String>) -> Rejected {
    Rejected {
        reason,
        detail: detail.into(),
    }
}

/// Decodes one record: size, UTF-8, a one-pass JSON validation that extracts only the id and
/// time fields, then the checks on their values.
pub fn decode(bytes: &[u8], format: &EventFormat) -> Result<Decoded, Rejected> {
    check_size(bytes, format)?;
    // The scanner checks UTF-8 itself, and only when a byte is not ASCII.
    let (id, time) = super::scan::object_fields(bytes, format)?;
    classify(id, time, format, bytes)
}

pub(super) fn check_size(bytes: &[u8], format: &EventFormat) -> Result<(), Rejected> {
    let max = format.max_event_bytes.get() as usize;
    if bytes.len() > max {
        return Err(reject(
            Reason::TooLarge,
            format!("{} bytes, limit {max}", bytes.len()),
        ));
    }
    Ok(())
}

pub(super) fn check_utf8(bytes: &[u8]) -> Result<(), Rejected> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(reject(
            Reason::NotUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        ));
    }
    Ok(())
}

pub(super) fn classify(
    id: Option<FieldValue>,
    time: Option<FieldValue>,
    format: &EventFormat,
    bytes: &[u8],
) -> Result<Decoded, Rejected> {
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
        Some(FieldValue::Str(s)) if s.len() == 0 => {
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
        Some(FieldValue::Str(text)) => match parse_rfc3339(text.as_str(bytes)) {
            Ok(ms) if ms < 0 => {
                let s = text.as_str(bytes);
                return Err(reject(
                    Reason::TimeNegative,
                    format!("\"{s}\" is before 1970"),
                ));
            }
            Ok(ms) => ms as u64,
            Err(why) => {
                let s = text.as_str(bytes);
                return Err(reject(Reason::TimeUnparseable, format!("\"{s}\": {why}")));
            }
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

/// A field's value as far as the checks need it.
pub(super) enum FieldValue {
    /// A string, where its text is.
    Str(IdText),
    /// A non-negative integer.
    Int(u64),
    /// A negative integer.
    Neg(i64),
    /// Any other number.
    Float(f64),
    /// Anything else, named for the message ("an object", "null").
    Other(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;

    fn fmt() -> EventFormat {
        EventFormat::default()
    }

    fn reason(bytes: &[u8]) -> Reason {
        decode(bytes, &fmt()).expect_err("should be invalid").reason
    }

    #[test]
    fn extracts_id_and_time() {
        let bytes = br#"{"eventId":"a-1","timestamp":1700000000123,"x":[1,{"y":null}]}"#;
        let d = decode(bytes, &fmt()).expect("valid");
        assert_eq!((d.id.as_str(bytes), d.time), ("a-1", 1_700_000_000_123));
        assert!(
            matches!(d.id, IdText::Span(..)),
            "no escapes: no allocation"
        );
        let d = decode(
            br#"{"timestamp":"2023-11-14T22:13:20.5Z","eventId":"caf\u00e9"}"#,
            &fmt(),
        )
        .expect("valid");
        assert_eq!(d.id, IdText::Owned("café".into()));
        assert_eq!(d.time, 1_700_000_000_500);
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
            (d.id.as_str(br#"{"id":"z","ts":5,"eventId":7}"#), d.time),
            ("z", 5)
        );
    }
}
