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

fn reject(reason: Reason, detail: impl Into<String>) -> Rejected {
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
    let (id, time) = scan::object_fields(bytes, format)?;
    classify(id, time, format, bytes)
}

/// The same verdicts as [`decode`], through serde_json. Slower; kept as the reference the
/// scanner is tested against.
#[doc(hidden)]
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

fn check_size(bytes: &[u8], format: &EventFormat) -> Result<(), Rejected> {
    let max = format.max_event_bytes.get() as usize;
    if bytes.len() > max {
        return Err(reject(
            Reason::TooLarge,
            format!("{} bytes, limit {max}", bytes.len()),
        ));
    }
    Ok(())
}

fn check_utf8(bytes: &[u8]) -> Result<(), Rejected> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(reject(
            Reason::NotUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        ));
    }
    Ok(())
}

fn classify(
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

/// The one-pass scanner behind [`decode`]: validates the whole document as JSON (RFC 8259
/// grammar and string escapes, judged as serde_json judges them) and extracts the id and
/// time fields of the top-level object. Strings are scanned eight bytes at a time for quotes,
/// backslashes and control bytes; UTF-8 was already checked for the whole input.
mod scan {
    use super::{reject, FieldValue, IdText, Rejected};
    use crate::config::EventFormat;
    use crate::record::Reason;

    type Fields = (Option<FieldValue>, Option<FieldValue>);

    struct Parser<'a> {
        b: &'a [u8],
        i: usize,
        /// Per 64-byte block of `b`, the bytes that end a plain run of string text: quotes,
        /// backslashes and bytes below 0x20, one bit each. Every block is classified in one
        /// vector pass before parsing; a string is then skipped by looking up the next set
        /// bit, a few bit operations rather than a search call per string.
        masks: &'a [u64],
    }

    /// Records up to this many bytes keep their block masks on the stack.
    const STACK_BLOCKS: usize = 16;

    #[cold]
    fn syntax(what: &str, at: usize) -> Rejected {
        reject(Reason::NotJson, format!("{what} at byte {at}"))
    }

    #[cold]
    fn expected(c: u8, at: usize) -> Rejected {
        syntax(&format!("expected '{}'", c as char), at)
    }

    /// Extracts the id and time of a top-level object, or says why the bytes are not one.
    pub(super) fn object_fields(b: &[u8], format: &EventFormat) -> Result<Fields, Rejected> {
        let blocks = b.len().div_ceil(64);
        let mut stack = [0u64; STACK_BLOCKS];
        let mut heap = Vec::new();
        let masks = if blocks <= STACK_BLOCKS {
            &mut stack[..blocks]
        } else {
            heap.resize(blocks, 0);
            &mut heap[..]
        };
        if !classify_blocks(b, masks) {
            super::check_utf8(b)?;
        }
        let mut p = Parser { b, i: 0, masks };
        p.ws();
        if p.peek() != Some(b'{') {
            p.value()?;
            p.end()?;
            return Err(reject(
                Reason::NotObject,
                "the document is not a JSON object",
            ));
        }
        p.i += 1;
        let (mut id, mut time) = (None, None);
        p.ws();
        if p.peek() == Some(b'}') {
            p.i += 1;
        } else {
            loop {
                if p.peek() != Some(b'"') {
                    return Err(syntax("expected a field name", p.i));
                }
                let key = p.key()?;
                p.ws();
                p.expect(b':')?;
                p.ws();
                let which = match &key {
                    IdText::Span(a, z) => {
                        let k = &b[*a..*z];
                        (
                            same(k, format.id_field.as_bytes()),
                            same(k, format.time_field.as_bytes()),
                        )
                    }
                    IdText::Owned(k) => (*k == format.id_field, *k == format.time_field),
                };
                match which {
                    (true, _) => id = Some(p.field()?),
                    (_, true) => time = Some(p.field()?),
                    // Most other fields are strings: skip them without the general walk.
                    _ if p.peek() == Some(b'"') => p.skip_string()?,
                    _ => p.value()?,
                }
                p.ws();
                match p.next() {
                    Some(b',') => p.ws(),
                    Some(b'}') => break,
                    _ => return Err(syntax("expected ',' or '}'", p.i.saturating_sub(1))),
                }
            }
        }
        p.end()?;
        Ok((id, time))
    }

    /// Field-name equality with cheap rejections first: most names differ in length or first
    /// byte, and a libc memcmp call per name would cost more than the rest of the check.
    #[inline]
    fn same(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
    }

    /// Fills `masks` (one per 64-byte block of `b`) and says whether `b` is all ASCII.
    fn classify_blocks(b: &[u8], masks: &mut [u64]) -> bool {
        let mut high = 0u64;
        let mut blocks = b.chunks_exact(64);
        for (mask, block) in masks.iter_mut().zip(&mut blocks) {
            let (m, h) = block_mask(block.try_into().expect("64 bytes"));
            *mask = m;
            high |= h;
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            // The last, partial block: padded with spaces, which are neither special nor high.
            let mut tail = [b' '; 64];
            tail[..rest.len()].copy_from_slice(rest);
            let (m, h) = block_mask(&tail);
            masks[masks.len() - 1] = m;
            high |= h;
        }
        high == 0
    }

    /// For the 64 bytes of `c`, one bit per quote, backslash or byte below 0x20, and one bit
    /// per byte above 0x7F.
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    #[inline]
    pub(super) fn block_mask(c: &[u8; 64]) -> (u64, u64) {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8,
            _mm_or_si128, _mm_set1_epi8,
        };
        let (mut m, mut h) = (0u64, 0u64);
        // SAFETY: SSE2 is part of the x86_64 baseline, so every x86_64 target has these
        // instructions; each unaligned load reads bytes 16k..16k+16 of the 64-byte array.
        unsafe {
            let quote = _mm_set1_epi8(b'"' as i8);
            let slash = _mm_set1_epi8(b'\\' as i8);
            let below = _mm_set1_epi8(0x1F);
            for k in 0..4 {
                let v = _mm_loadu_si128(c.as_ptr().add(16 * k).cast::<__m128i>());
                // Unsigned `v <= 0x1F` is `min(v, 0x1F) == v`.
                let control = _mm_cmpeq_epi8(_mm_min_epu8(v, below), v);
                let hit = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, slash)),
                    control,
                );
                m |= u64::from(_mm_movemask_epi8(hit) as u16) << (16 * k);
                h |= u64::from(_mm_movemask_epi8(v) as u16) << (16 * k);
            }
        }
        (m, h)
    }

    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub(super) fn block_mask(c: &[u8; 64]) -> (u64, u64) {
        block_mask_scalar(c)
    }

    /// The portable definition of [`block_mask`].
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    pub(super) fn block_mask_scalar(c: &[u8; 64]) -> (u64, u64) {
        c.iter().enumerate().fold((0, 0), |(m, h), (i, &b)| {
            (
                m | (u64::from(b == b'"' || b == b'\\' || b < 0x20) << i),
                h | (u64::from(b > 0x7F) << i),
            )
        })
    }

    impl Parser<'_> {
        /// The first quote, backslash or control byte at or after `from`, or the length.
        #[inline]
        fn next_special(&self, from: usize) -> usize {
            let mut block = from / 64;
            let mut hits = match self.masks.get(block) {
                Some(m) => m & (u64::MAX << (from % 64)),
                None => return self.b.len(),
            };
            while hits == 0 {
                block += 1;
                match self.masks.get(block) {
                    Some(m) => hits = *m,
                    None => return self.b.len(),
                }
            }
            block * 64 + hits.trailing_zeros() as usize
        }

        #[inline]
        fn peek(&self) -> Option<u8> {
            self.b.get(self.i).copied()
        }

        #[inline]
        fn next(&mut self) -> Option<u8> {
            let c = self.peek();
            self.i += 1;
            c
        }

        #[inline]
        fn ws(&mut self) {
            while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
                self.i += 1;
            }
        }

        #[inline]
        fn expect(&mut self, c: u8) -> Result<(), Rejected> {
            if self.next() == Some(c) {
                Ok(())
            } else {
                Err(expected(c, self.i - 1))
            }
        }

        fn end(&mut self) -> Result<(), Rejected> {
            self.ws();
            if self.i < self.b.len() {
                Err(syntax("trailing characters", self.i))
            } else {
                Ok(())
            }
        }

        /// A string starting at the opening quote; returns its content, unescaped only when it
        /// had escapes.
        #[inline]
        fn string(&mut self) -> Result<IdText, Rejected> {
            self.string_with(false)
        }

        /// A string that is skipped: its escapes are checked for syntax only (serde_json does
        /// not decode what it ignores, so a lone surrogate there is accepted).
        #[inline]
        fn skip_string(&mut self) -> Result<(), Rejected> {
            self.string_with(true).map(|_| ())
        }

        /// Most strings have no escapes: their end is the first special byte, if it is a
        /// quote. That path is inlined at every call; the rest is out of line.
        #[inline]
        fn string_with(&mut self, lenient: bool) -> Result<IdText, Rejected> {
            let open = self.i;
            let end = self.next_special(open + 1);
            if self.b.get(end) == Some(&b'"') {
                self.i = end + 1;
                return Ok(IdText::Span(open + 1, end));
            }
            self.string_escaped(lenient)
        }

        /// A string with escapes, or a bad one, from its opening quote at `self.i`.
        #[cold]
        #[inline(never)]
        fn string_escaped(&mut self, lenient: bool) -> Result<IdText, Rejected> {
            let open = self.i;
            self.i += 1;
            let start = self.i;
            let mut escaped = false;
            loop {
                self.i = self.next_special(self.i);
                match self.peek() {
                    None => return Err(syntax("unterminated string", open)),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        escaped = true;
                        self.i += 1;
                        match self.next() {
                            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                            Some(b'u') => {
                                let hex = self.b.get(self.i..self.i + 4).unwrap_or_default();
                                if hex.len() < 4 || !hex.iter().all(u8::is_ascii_hexdigit) {
                                    return Err(syntax("bad \\u escape", self.i));
                                }
                                self.i += 4;
                            }
                            _ => return Err(syntax("bad escape", self.i - 1)),
                        }
                    }
                    // Nothing else is marked in the mask.
                    Some(_) => return Err(syntax("control character in string", self.i)),
                }
            }
            let end = self.i;
            self.i += 1;
            if !escaped {
                return Ok(IdText::Span(start, end));
            }
            // Rare: let serde_json unescape (and reject lone surrogates).
            match serde_json::from_slice::<String>(&self.b[open..=end]) {
                Ok(text) => Ok(IdText::Owned(text)),
                Err(_) if lenient => Ok(IdText::Owned(String::new())),
                Err(e) => Err(reject(Reason::NotJson, e.to_string())),
            }
        }

        /// A field name. A name whose escapes do not decode (a lone surrogate) cannot equal the
        /// configured field names, so it is skipped rather than rejected, as serde_json does.
        #[inline]
        fn key(&mut self) -> Result<IdText, Rejected> {
            self.string_with(true)
        }

        /// A field whose value we keep: strings and numbers as values, the rest by kind.
        fn field(&mut self) -> Result<FieldValue, Rejected> {
            match self.peek() {
                Some(b'"') => self.string().map(FieldValue::Str),
                Some(b'1'..=b'9') => match self.plain_integer() {
                    Some(v) => Ok(v),
                    None => self.number(true),
                },
                Some(b'-' | b'0') => self.number(true),
                Some(b'{') => self.value().map(|_| FieldValue::Other("an object")),
                Some(b'[') => self.value().map(|_| FieldValue::Other("an array")),
                Some(b't' | b'f') => self.value().map(|_| FieldValue::Other("a boolean")),
                _ => self.value().map(|_| FieldValue::Other("null")),
            }
        }

        /// The common case of a kept number, epoch milliseconds: up to 19 digits with no sign,
        /// fraction or exponent after them, which cannot overflow a u64. Anything else is left
        /// to [`Parser::number`], from the same position.
        #[inline]
        fn plain_integer(&mut self) -> Option<FieldValue> {
            let digits = self.b[self.i..]
                .iter()
                .take(20)
                .take_while(|c| c.is_ascii_digit())
                .count();
            let after = self.b.get(self.i + digits).copied();
            if digits > 19 || matches!(after, Some(b'.' | b'e' | b'E')) {
                return None;
            }
            let value = self.b[self.i..self.i + digits]
                .iter()
                .fold(0u64, |v, c| v * 10 + u64::from(c - b'0'));
            self.i += digits;
            Some(FieldValue::Int(value))
        }

        /// A number, classified as serde_json would: u64, negative i64, or float (which includes
        /// integers out of range).
        /// `materialize`: the value is kept, so like serde_json refuse what f64 cannot hold;
        /// skipped numbers are only checked for syntax, as serde_json's IgnoredAny does.
        fn number(&mut self, materialize: bool) -> Result<FieldValue, Rejected> {
            let start = self.i;
            let neg = self.peek() == Some(b'-');
            if neg {
                self.i += 1;
            }
            let mut value: u64 = 0;
            let mut overflow = false;
            match self.peek() {
                Some(b'0') => self.i += 1,
                Some(b'1'..=b'9') => {
                    while let Some(c @ b'0'..=b'9') = self.peek() {
                        match value
                            .checked_mul(10)
                            .and_then(|v| v.checked_add(u64::from(c - b'0')))
                        {
                            Some(v) => value = v,
                            None => overflow = true,
                        }
                        self.i += 1;
                    }
                }
                _ => return Err(syntax("bad number", start)),
            }
            let mut float = false;
            if self.peek() == Some(b'.') {
                self.i += 1;
                float = true;
                self.digits(start)?;
            }
            if let Some(b'e' | b'E') = self.peek() {
                self.i += 1;
                float = true;
                if let Some(b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                self.digits(start)?;
            }
            let text = || {
                std::str::from_utf8(&self.b[start..self.i])
                    .unwrap_or_default()
                    .parse::<f64>()
                    .unwrap_or(f64::NAN)
            };
            if materialize && (float || overflow) && text().is_infinite() {
                // serde_json refuses numbers beyond f64 rather than reading infinity.
                return Err(syntax("number out of range", start));
            }
            Ok(match (neg, float || overflow) {
                (false, false) => FieldValue::Int(value),
                // serde_json reads "-0" as the float -0.0.
                (true, false) if value == 0 => FieldValue::Float(-0.0),
                (true, false) if value <= i64::MAX as u64 + 1 => {
                    FieldValue::Neg((value as i64).wrapping_neg())
                }
                _ => FieldValue::Float(text()),
            })
        }

        fn digits(&mut self, start: usize) -> Result<(), Rejected> {
            let from = self.i;
            while let Some(b'0'..=b'9') = self.peek() {
                self.i += 1;
            }
            if self.i == from {
                Err(syntax("bad number", start))
            } else {
                Ok(())
            }
        }

        fn literal(&mut self, word: &[u8]) -> Result<(), Rejected> {
            if self.b[self.i..].starts_with(word) {
                self.i += word.len();
                Ok(())
            } else {
                Err(syntax("unexpected literal", self.i))
            }
        }

        /// Any value, validated and skipped. Iterative, so no nesting depth can exhaust the
        /// stack; like serde_json's IgnoredAny, skipped values have no depth limit.
        fn value(&mut self) -> Result<(), Rejected> {
            // Closing brackets of the containers we are inside; allocated only when nested.
            let mut stack: Vec<u8> = Vec::new();
            loop {
                match self.peek() {
                    Some(b'"') => self.skip_string()?,
                    Some(b'-' | b'0'..=b'9') => {
                        self.number(false)?;
                    }
                    Some(b't') => self.literal(b"true")?,
                    Some(b'f') => self.literal(b"false")?,
                    Some(b'n') => self.literal(b"null")?,
                    Some(open @ (b'{' | b'[')) => {
                        self.i += 1;
                        self.ws();
                        let close = if open == b'{' { b'}' } else { b']' };
                        if self.peek() == Some(close) {
                            self.i += 1;
                        } else {
                            stack.push(close);
                            if open == b'{' {
                                self.member_name()?;
                            }
                            continue;
                        }
                    }
                    None => return Err(syntax("unexpected end", self.i)),
                    Some(_) => return Err(syntax("unexpected character", self.i)),
                }
                // A value is complete: close finished containers, or move to the next element.
                loop {
                    let Some(&close) = stack.last() else {
                        return Ok(());
                    };
                    self.ws();
                    match self.next() {
                        Some(b',') => {
                            self.ws();
                            if close == b'}' {
                                self.member_name()?;
                            }
                            break;
                        }
                        Some(c) if c == close => {
                            stack.pop();
                        }
                        _ => {
                            return Err(syntax(
                                "expected ',' or a closing bracket",
                                self.i.saturating_sub(1),
                            ))
                        }
                    }
                }
            }
        }

        /// `"name" :` inside a skipped object.
        fn member_name(&mut self) -> Result<(), Rejected> {
            if self.peek() != Some(b'"') {
                return Err(syntax("expected a field name", self.i));
            }
            self.skip_string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            Ok(())
        }
    }
}

enum Top {
    Object {
        id: Option<FieldValue>,
        time: Option<FieldValue>,
    },
    Other,
}

enum FieldValue {
    Str(IdText),
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

    /// Both decoders must agree on every input: same reason, or same id and time.
    fn agree(bytes: &[u8]) {
        let f = fmt();
        let fast = decode(bytes, &f)
            .map(|d| (d.id.as_str(bytes).to_string(), d.time))
            .map_err(|r| r.reason);
        let slow = decode_with_serde(bytes, &f)
            .map(|d| (d.id.as_str(bytes).to_string(), d.time))
            .map_err(|r| r.reason);
        assert_eq!(
            fast,
            slow,
            "decoders disagree on {:?}",
            String::from_utf8_lossy(bytes)
        );
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_edge_cases() {
        let cases: &[&[u8]] = &[
            br#"{}"#,
            br#"  { "eventId" : "a" , "timestamp" : 1 }  "#,
            br#"{"eventId":"a","timestamp":1,}"#,
            br#"{"eventId":"a" "timestamp":1}"#,
            br#"{"eventId":"a","timestamp":01}"#,
            br#"{"eventId":"a","timestamp":-0}"#,
            br#"{"eventId":"a","timestamp":-0.0}"#,
            br#"{"eventId":"a","timestamp":1e3}"#,
            br#"{"eventId":"a","timestamp":1.}"#,
            br#"{"eventId":"a","timestamp":9999999999999999999}"#,
            br#"{"eventId":"a","timestamp":1E3}"#,
            br#"{"eventId":"a","timestamp":1700000000000.5}"#,
            br#"{"eventId":"a","timestamp":1700000000000e-2}"#,
            br#"{"eventId":"a","timestamp":17x}"#,
            br#"{"eventId":"a","timestamp":17-1}"#,
            br#"{"eventId":"a","timestamp":17"#,
            br#"{"eventId":"a","timestamp":18446744073709551615}"#,
            br#"{"eventId":"a","timestamp":18446744073709551616}"#,
            br#"{"eventId":"a","timestamp":-9223372036854775808}"#,
            br#"{"eventId":"a","timestamp":-9223372036854775809}"#,
            br#"{"eventId":"a\"b","timestamp":1}"#,
            br#"{"eventId":"\ud800","timestamp":1}"#,
            br#"{"eventId":"\ud83d\ude00","timestamp":1}"#,
            br#"{"x":"\ud800","eventId":"a","timestamp":1}"#,
            br#"{"\u0065ventId":"esc-key","timestamp":1}"#,
            br#"{"eventId":"a","timestamp":1,"x":[1,2,{"y":[true,false,null]}]}"#,
            br#"{"eventId":"a","timestamp":1,"x":tru}"#,
            br#"{"eventId":"a","timestamp":1,"x":"\q"}"#,
            br#"{"eventId":"a","timestamp":1,"x":"\u12"}"#,
            b"{\"eventId\":\"a\tb\",\"timestamp\":1}",
            br#"{"eventId":"a","timestamp":"2023-11-14T22:13:20Z"}"#,
            br#"{"eventId":null,"timestamp":1}"#,
            br#"{"eventId":[],"timestamp":1}"#,
            br#"{"eventId":"a","timestamp":{}}"#,
            br#"{"eventId":"a","eventId":"b","timestamp":1}"#,
            br#"[]"#,
            br#"null"#,
            br#"12"#,
            br#""s""#,
            br#""#,
            br#"   "#,
            br#"{"eventId":"a","timestamp":1}{}"#,
            br#"{"a":1 "#,
            br#"{"eventId":"a","timestamp":1,"n":-}"#,
        ];
        for c in cases {
            agree(c);
        }
        let deep = format!(
            r#"{{"eventId":"a","timestamp":1,"x":{}}}"#,
            "[".repeat(1 << 20)
        );
        assert_eq!(
            decode(
                deep.as_bytes(),
                &EventFormat {
                    max_event_bytes: std::num::NonZeroU32::new(1 << 21).unwrap(),
                    ..fmt()
                }
            )
            .unwrap_err()
            .reason,
            Reason::NotJson
        );
        for depth in [125, 126, 127, 128, 129] {
            let doc = format!(
                r#"{{"eventId":"a","timestamp":1,"x":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            );
            agree(doc.as_bytes());
            let doc = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            agree(doc.as_bytes());
        }
    }

    #[test]
    fn scanner_finds_a_special_byte_at_every_offset_of_a_string() {
        // Strings are searched through a bit mask per 64-byte block: put each kind of byte
        // that ends a plain run at each offset across the first three blocks, so it falls on
        // both sides of every block edge, with and without a control byte elsewhere (a tab
        // between tokens).
        for specials in [
            &b"\\n"[..],
            b"\\u00e9",
            b"\\q",
            b"\x01",
            b"\"",
            "\u{e9}".as_bytes(),
        ] {
            for at in 0..150 {
                for sep in [&b" "[..], b"\t"] {
                    let mut doc = b"{\"eventId\":\"".to_vec();
                    doc.extend(std::iter::repeat_n(b'a', at));
                    doc.extend_from_slice(specials);
                    doc.extend_from_slice(b"bcd\",");
                    doc.extend_from_slice(sep);
                    doc.extend_from_slice(b"\"timestamp\":1700000000000}");
                    agree(&doc);
                }
            }
        }
    }

    #[test]
    fn utf8_is_checked_wherever_the_first_non_ascii_byte_is() {
        // UTF-8 is validated only when the vector pass saw a byte above 0x7F: put valid and
        // invalid sequences in every block of a long record, in valid and broken JSON.
        let mut base = b"{\"eventId\":\"a\",\"timestamp\":1700000000000,\"m\":\"".to_vec();
        base.extend(std::iter::repeat_n(b'x', 200));
        base.extend_from_slice(b"\"}");
        for insert in [&b"\xc3\xa9"[..], b"\xff", b"\xc3", b"\xe2\x82"] {
            for at in (1..base.len()).step_by(7) {
                for broken in [false, true] {
                    let mut doc = base.clone();
                    doc.splice(at..at, insert.iter().copied());
                    if broken {
                        doc.pop();
                    }
                    agree(&doc);
                }
            }
        }
    }

    #[test]
    fn block_masks_match_their_portable_definition() {
        let mut rng = crate::sources::generator::SplitMix(3);
        let mut block = [0u8; 64];
        for round in 0..2_000 {
            for b in block.iter_mut() {
                // Mostly the bytes near the edges of each class, some anything at all.
                *b = match rng.below(4) {
                    0 => [b'"', b'\\', 0x1F, 0x20, 0x00, 0x7F, 0x80, 0xFF][rng.below(8) as usize],
                    _ => rng.below(256) as u8,
                };
            }
            if round == 0 {
                block = std::array::from_fn(|i| i as u8);
            }
            assert_eq!(
                scan::block_mask(&block),
                scan::block_mask_scalar(&block),
                "{block:?}"
            );
        }
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_mutated_events() {
        let mut rng = crate::sources::generator::SplitMix(99);
        let mut buf = Vec::new();
        let alphabet = b"{}[]\",:\\ -0123456789.eEtrufalsn\tu\x01";
        for i in 0..20_000u64 {
            crate::sources::generate_event(
                &mut buf,
                u128::from(rng.next_u64()),
                1_700_000_000_000 + i,
                "region-a",
                3,
                160,
            );
            for _ in 0..rng.below(4) {
                if buf.is_empty() {
                    break;
                }
                let at = rng.below(buf.len() as u64) as usize;
                let c = alphabet[rng.below(alphabet.len() as u64) as usize];
                match rng.below(3) {
                    0 => buf[at] = c,
                    1 => buf.insert(at, c),
                    _ => {
                        buf.truncate(at);
                    }
                }
            }
            agree(&buf);
        }
    }
}
