//! The one-pass scanner behind [`decode`]: validates the whole document as JSON (RFC 8259
//! grammar and string escapes, judged as serde_json judges them) and extracts the id and
//! time fields of the top-level object. Strings are scanned eight bytes at a time for quotes,
//! backslashes and control bytes; UTF-8 was already checked for the whole input.

use super::decode::{check_utf8, reject, FieldValue, Rejected};
use super::{EventFormat, IdText, Reason};

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
        check_utf8(b)?;
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
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::decode;
    use crate::event::reference::decode_with_serde;

    fn fmt() -> EventFormat {
        EventFormat::default()
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
        let mut rng = crate::runtime::SplitMix(3);
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
            assert_eq!(block_mask(&block), block_mask_scalar(&block), "{block:?}");
        }
    }

    #[test]
    fn scanner_agrees_with_serde_json_on_mutated_events() {
        let mut rng = crate::runtime::SplitMix(99);
        let mut buf = Vec::new();
        let alphabet = b"{}[]\",:\\ -0123456789.eEtrufalsn\tu\x01";
        for i in 0..20_000u64 {
            crate::event::sample::generate_event(
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
