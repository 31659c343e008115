//! A fast path for the common shape of outcome event: a flat JSON object whose strings carry no
//! escapes. It borrows every string and allocates nothing. Anything outside that shape (escapes,
//! a type mismatch, a duplicate field, deep nesting, bad syntax) returns `None`, and the caller
//! falls back to the general serde decoder, which accepts or rejects it with a precise error.
//! So this only ever has to agree with serde on what it accepts; the property test in
//! `event.rs` checks that it does.

use std::borrow::Cow;

use super::validate::{RawEvent, RawTime};

const MAX_DEPTH: usize = 32;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// Records a known field once; a second occurrence makes serde fail, so it makes us bail.
fn take<T>(seen: &mut u16, bit: u16, slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    *slot = value;
    Some(())
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.bump()? == byte).then_some(())
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end)? != word {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// A string without escapes or control characters, borrowed from the payload.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.pos;
        let rest = self.bytes.get(start..)?;
        let length = memchr::memchr2(b'"', b'\\', rest)?;
        let body = &rest[..length];
        if *rest.get(length)? == b'\\' || body.iter().any(|b| *b < 0x20) {
            return None;
        }
        self.pos = start + length + 1;
        self.text.get(start..start + length)
    }

    /// The extent of a JSON number, and whether it has a fraction or exponent.
    fn number(&mut self) -> Option<(&'a str, bool)> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.bump()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.one_or_more_digits()?;
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.one_or_more_digits()?;
            is_float = true;
        }
        Some((self.text.get(start..self.pos)?, is_float))
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
    }

    fn one_or_more_digits(&mut self) -> Option<()> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return None;
        }
        self.digits();
        Some(())
    }

    fn null_or<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        value(self).map(Some)
    }

    fn text_field(&mut self) -> Option<Option<Cow<'a, str>>> {
        self.null_or(|s| s.string().map(Cow::Borrowed))
    }

    fn integer(&mut self) -> Option<i64> {
        let (digits, is_float) = self.number()?;
        if is_float {
            return None;
        }
        digits.parse().ok()
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| true),
            b'f' => self.literal(b"false").map(|_| false),
            _ => None,
        }
    }

    fn float(&mut self) -> Option<f64> {
        let (digits, _) = self.number()?;
        digits.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    fn time(&mut self) -> Option<RawTime<'a>> {
        match self.peek()? {
            b'"' => self.string().map(|t| RawTime::Text(Cow::Borrowed(t))),
            _ => self.integer().map(RawTime::EpochMillis),
        }
    }

    /// Skips any JSON value, checking its syntax.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.skip_container(b'}', depth, true),
            b'[' => self.skip_container(b']', depth, false),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number().map(drop),
        }
    }

    fn skip_container(&mut self, close: u8, depth: usize, keyed: bool) -> Option<()> {
        self.pos += 1;
        self.whitespace();
        if self.peek()? == close {
            self.pos += 1;
            return Some(());
        }
        loop {
            if keyed {
                self.string()?;
                self.whitespace();
                self.expect(b':')?;
                self.whitespace();
            }
            self.skip_value(depth + 1)?;
            self.whitespace();
            match self.bump()? {
                b',' => self.whitespace(),
                byte if byte == close => return Some(()),
                _ => return None,
            }
        }
    }
}

pub(super) fn scan(payload: &[u8]) -> Option<RawEvent<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut raw = RawEvent::default();
    let mut seen = 0u16;
    s.whitespace();
    s.expect(b'{')?;
    s.whitespace();
    if s.peek()? == b'}' {
        s.pos += 1;
    } else {
        loop {
            let key = s.string()?;
            s.whitespace();
            s.expect(b':')?;
            s.whitespace();
            match key {
                "event_id" => take(&mut seen, 1, &mut raw.event_id, s.text_field()?)?,
                "tenant_id" => take(&mut seen, 1 << 1, &mut raw.tenant_id, s.text_field()?)?,
                "occurred_at" => take(
                    &mut seen,
                    1 << 2,
                    &mut raw.occurred_at,
                    s.null_or(Scanner::time)?,
                )?,
                "integration_type" => take(
                    &mut seen,
                    1 << 3,
                    &mut raw.integration_type,
                    s.text_field()?,
                )?,
                "integration_id" => {
                    take(&mut seen, 1 << 4, &mut raw.integration_id, s.text_field()?)?
                }
                "integration_name" => take(
                    &mut seen,
                    1 << 5,
                    &mut raw.integration_name,
                    s.text_field()?,
                )?,
                "outcome" => take(&mut seen, 1 << 6, &mut raw.outcome, s.text_field()?)?,
                "status_code" => take(
                    &mut seen,
                    1 << 7,
                    &mut raw.status_code,
                    s.null_or(Scanner::integer)?,
                )?,
                "error_message" => {
                    take(&mut seen, 1 << 8, &mut raw.error_message, s.text_field()?)?
                }
                "flow_id" => take(&mut seen, 1 << 9, &mut raw.flow_id, s.text_field()?)?,
                "flow_name" => take(&mut seen, 1 << 10, &mut raw.flow_name, s.text_field()?)?,
                "service_id" => take(&mut seen, 1 << 11, &mut raw.service_id, s.text_field()?)?,
                "service_name" => take(&mut seen, 1 << 12, &mut raw.service_name, s.text_field()?)?,
                "latency_ms" => take(
                    &mut seen,
                    1 << 13,
                    &mut raw.latency_ms,
                    s.null_or(Scanner::float)?,
                )?,
                "attempt" => take(
                    &mut seen,
                    1 << 14,
                    &mut raw.attempt,
                    s.null_or(Scanner::integer)?,
                )?,
                "final" => take(
                    &mut seen,
                    1 << 15,
                    &mut raw.final_attempt,
                    s.null_or(Scanner::boolean)?,
                )?,
                _ => s.skip_value(0)?,
            }
            s.whitespace();
            match s.bump()? {
                b',' => s.whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.whitespace();
    (s.pos == s.bytes.len()).then_some(raw)
}
