//! The serde_json path: the reference decoder the scanner is tested against, and the extraction
//! of any one top-level field (what filters and `partition_by` read). Slower than the scanner,
//! and kept simple on purpose: its verdicts are the definition the scanner must match.

use super::decode::{check_size, check_utf8, classify, reject, FieldValue, Rejected};
use super::{Decoded, EventFormat, IdText, Reason};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The same verdicts as [`decode`](super::decode()), through serde_json. Slower; kept as the reference the
/// scanner is tested against.
pub fn decode_with_serde(bytes: &[u8], format: &EventFormat) -> Result<Decoded, Rejected> {
    precheck(bytes, format)?;
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
    classify(id, time, format, bytes)
}

fn precheck(bytes: &[u8], format: &EventFormat) -> Result<(), Rejected> {
    check_size(bytes, format)?;
    check_utf8(bytes)
}

enum Top {
    Object {
        id: Option<FieldValue>,
        time: Option<FieldValue>,
    },
    Other,
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
        Ok(FieldValue::Str(IdText::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<FieldValue, E> {
        Ok(FieldValue::Str(IdText::Owned(v)))
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
            FieldValue::Str(s) => Some(s.as_str(bytes).to_string()),
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
