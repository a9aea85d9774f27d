//! Request bodies to events: one JSON object, a JSON array of them, or NDJSON. Missing ids,
//! times and regions are filled in, and every event is checked with the same decoder the
//! pipelines use, so an event the gateway accepts is never an invalid record downstream.

use crate::event::decode;
use crate::event::EventFormat;
use crate::event::Reason;
use serde_json::{Map, Value};

/// How the body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: an object or an array of objects.
    Json,
    /// `application/x-ndjson`: one object per line.
    Ndjson,
}

impl Framing {
    /// The framing for a `Content-Type` value, or `None` when unsupported (415).
    pub fn from_content_type(value: Option<&str>) -> Option<Framing> {
        let media = value?.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" => Some(Framing::Json),
            "application/x-ndjson" | "application/ndjson" => Some(Framing::Ndjson),
            _ => None,
        }
    }
}

/// Why an item was refused, naming the field when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    /// The field at fault, or empty for the item as a whole.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A whole body that is not JSON (400, with nothing accepted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError(pub String);

/// One event, ready to send.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Its id (given or generated).
    pub id: String,
    /// The `service` field, which identifies a producer without `X-Producer-Id`.
    pub service: Option<String>,
    /// The fields; `region` is added once a region is chosen.
    pub object: Map<String, Value>,
    /// The event's own bytes, while nothing has been filled in: they are sent unchanged.
    raw: Option<Vec<u8>>,
}

/// One item of a body: its bytes and its value.
#[derive(Debug, Clone)]
pub struct Item {
    raw: Vec<u8>,
    value: Value,
}

impl Item {
    /// An event built here rather than sent (an OTLP record): nothing to pass through.
    pub fn from_object(object: Map<String, Value>) -> Item {
        Item {
            raw: Vec::new(),
            value: Value::Object(object),
        }
    }
}

fn item(raw: &[u8]) -> Result<Item, ItemError> {
    serde_json::from_slice::<Value>(raw)
        .map(|value| Item {
            raw: raw.to_vec(),
            value,
        })
        .map_err(|e| ItemError {
            field: String::new(),
            message: format!("invalid JSON: {e}"),
        })
}

/// Splits a body into items, each an event or the reason it is not JSON.
pub fn items(body: &[u8], framing: Framing) -> Result<Vec<Result<Item, ItemError>>, BodyError> {
    match framing {
        Framing::Json => {
            let invalid = |e: serde_json::Error| BodyError(format!("invalid JSON: {e}"));
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if first == Some(&b'[') {
                let raws: Vec<&serde_json::value::RawValue> =
                    serde_json::from_slice(body).map_err(invalid)?;
                Ok(raws.iter().map(|r| item(r.get().as_bytes())).collect())
            } else {
                let raw: &serde_json::value::RawValue =
                    serde_json::from_slice(body).map_err(invalid)?;
                Ok(vec![item(raw.get().as_bytes())])
            }
        }
        Framing::Ndjson => Ok(body
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| item(line.trim_ascii()))
            .collect()),
    }
}

/// Fills in a missing id (a UUIDv7) and time (`now`), and checks the id and time that were
/// given. The region is added later, by [`finish`].
pub fn prepare(item: Item, format: &EventFormat, now: u64) -> Result<Prepared, ItemError> {
    let Item { raw, value } = item;
    let Value::Object(mut object) = value else {
        return Err(ItemError {
            field: String::new(),
            message: "not a JSON object".into(),
        });
    };
    let mut filled = false;
    let id = match object.get(&format.id_field) {
        None => {
            filled = true;
            let id = uuid_v7(now);
            object.insert(format.id_field.clone(), Value::String(id.clone()));
            id
        }
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 128 => s.clone(),
        Some(Value::String(s)) if s.is_empty() => {
            return Err(field_error(&format.id_field, "must not be empty"))
        }
        Some(Value::String(_)) => {
            return Err(field_error(&format.id_field, "longer than 128 bytes"))
        }
        Some(_) => return Err(field_error(&format.id_field, "must be a string")),
    };
    if !object.contains_key(&format.time_field) {
        filled = true;
        object.insert(format.time_field.clone(), Value::from(now));
    }
    let service = object
        .get("service")
        .and_then(Value::as_str)
        .map(str::to_string);
    let raw = (!filled && object.contains_key("region")).then_some(raw);
    Ok(Prepared {
        id,
        service,
        object,
        raw,
    })
}

/// Adds the region (when the event has none) and serializes, checking the result with the
/// pipelines' decoder.
pub fn finish(p: &Prepared, region: &str, format: &EventFormat) -> Result<Vec<u8>, ItemError> {
    let bytes = if let Some(raw) = &p.raw {
        Ok(raw.clone())
    } else if p.object.contains_key("region") {
        serde_json::to_vec(&p.object)
    } else {
        let mut o = p.object.clone();
        o.insert("region".into(), Value::String(region.into()));
        serde_json::to_vec(&o)
    }
    .map_err(|e| ItemError {
        field: String::new(),
        message: format!("cannot serialize: {e}"),
    })?;
    match decode(&bytes, format) {
        Ok(_) => Ok(bytes),
        Err(r) => Err(ItemError {
            field: match r.reason {
                Reason::IdMissing | Reason::IdEmpty | Reason::IdNotString | Reason::IdTooLong => {
                    format.id_field.clone()
                }
                Reason::TimeMissing | Reason::TimeUnparseable | Reason::TimeNegative => {
                    format.time_field.clone()
                }
                _ => String::new(),
            },
            message: format!("{}: {}", r.reason.as_str(), r.detail),
        }),
    }
}

fn field_error(field: &str, message: &str) -> ItemError {
    ItemError {
        field: field.into(),
        message: message.into(),
    }
}

/// A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then a 12-bit counter that keeps ids from
/// one gateway sorted within a millisecond, then 62 random bits.
pub fn uuid_v7(now_ms: u64) -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<(u64, u64, u64)> = Cell::new((0, 0, seed()));
    }
    let (ms, counter, rand) = STATE.with(|s| {
        let (last, counter, mut rng) = s.get();
        let (ms, counter) = if now_ms > last {
            (now_ms, 0)
        } else if counter < 0xFFF {
            (last, counter + 1)
        } else {
            // 4096 ids in one millisecond: borrow the next one, keeping the order.
            (last + 1, 0)
        };
        let mut mix = crate::runtime::SplitMix(rng);
        let r = mix.next_u64();
        rng = mix.0;
        s.set((ms, counter, rng));
        (ms, counter, r)
    });
    let hi = (ms & 0xFFFF_FFFF_FFFF) << 16 | 0x7000 | counter;
    let lo = (rand & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

/// Per-thread randomness: std's hasher keys are random per process, mixed with the thread.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(crate::runtime::wall_ms());
    std::thread::current().id().hash(&mut h);
    h.finish()
}

use std::hash::Hash;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_v7_has_version_variant_and_sorts_by_time() {
        let a = uuid_v7(1_700_000_000_000);
        let b = uuid_v7(1_700_000_000_000);
        let c = uuid_v7(1_700_000_000_001);
        for id in [&a, &b, &c] {
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "7");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        }
        assert!(a < b && b < c, "{a} {b} {c}");
        assert_eq!(&a[..13], "018bcfe5-6800");
    }

    #[test]
    fn fills_what_is_missing_and_names_the_bad_field() {
        let f = EventFormat::default();
        let it = |v: Value| item(v.to_string().as_bytes()).unwrap();
        let p = prepare(
            it(serde_json::json!({"message": "hi", "service": "api"})),
            &f,
            5_000,
        )
        .unwrap();
        assert_eq!(p.service.as_deref(), Some("api"));
        let bytes = finish(&p, "region-b", &f).unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["timestamp"], 5_000);
        assert_eq!(v["region"], "region-b");
        assert_eq!(v["eventId"], p.id.as_str());

        let bad = |v: Value| {
            prepare(it(v), &f, 0)
                .and_then(|p| finish(&p, "r", &f))
                .unwrap_err()
        };
        assert_eq!(bad(serde_json::json!({"eventId": 7})).field, "eventId");
        assert_eq!(bad(serde_json::json!({"eventId": ""})).field, "eventId");
        assert_eq!(
            bad(serde_json::json!({"eventId": "x".repeat(129)})).field,
            "eventId"
        );
        let e = bad(serde_json::json!({"eventId": "a", "timestamp": "soon"}));
        assert_eq!(e.field, "timestamp");
        assert!(e.message.starts_with("time_unparseable"), "{}", e.message);
        assert_eq!(bad(serde_json::json!([1])).field, "");
        // A region the producer set is kept.
        let p = prepare(it(serde_json::json!({"region": "mine"})), &f, 1).unwrap();
        let v: Value = serde_json::from_slice(&finish(&p, "region-a", &f).unwrap()).unwrap();
        assert_eq!(v["region"], "mine");
        // Nothing to fill in: the bytes pass through as they came, key order and all.
        let given = br#"{"timestamp":5,"region":"r","eventId":"k"}"#;
        let p = prepare(item(given).unwrap(), &f, 1).unwrap();
        assert_eq!(finish(&p, "region-a", &f).unwrap(), given.to_vec());
    }

    #[test]
    fn framings() {
        assert_eq!(
            Framing::from_content_type(Some("application/json; charset=utf-8")),
            Some(Framing::Json)
        );
        assert_eq!(
            Framing::from_content_type(Some("application/x-ndjson")),
            Some(Framing::Ndjson)
        );
        assert_eq!(Framing::from_content_type(Some("text/plain")), None);
        assert_eq!(Framing::from_content_type(None), None);
        assert_eq!(items(br#"{"a":1}"#, Framing::Json).unwrap().len(), 1);
        assert_eq!(
            items(br#"[{"a":1},{"b":2},3]"#, Framing::Json)
                .unwrap()
                .len(),
            3
        );
        assert!(items(b"{", Framing::Json).is_err());
        let nd = items(b"{\"a\":1}\n\nnot json\n{\"b\":2}\n", Framing::Ndjson).unwrap();
        assert_eq!(nd.len(), 3);
        assert!(nd[1].is_err());
    }
}
