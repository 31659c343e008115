//! The fast path: one pass over a payload that validates each field as it reads it and builds the
//! `Event` directly, borrowing every string from the payload.
//!
//! It takes the common shape: a JSON object whose strings carry no escapes and whose fields all
//! pass the rules of docs/events.md. Anything else (an escape, a type mismatch, a duplicate or
//! null required field, a value out of range, deep nesting, bad syntax) returns `None`, and the
//! caller falls back to the general decoder, which accepts or rejects the payload with a precise
//! error. So this only has to agree with the general decoder on what it accepts; the property
//! tests in `scan_tests.rs` and the decode fuzz target check that it does.

use std::borrow::Cow;

use super::plain::plain_prefix;
use super::validate::{epoch_ms_in_range, is_tenant_char, rfc3339_ms, text_fits, MAX_ATTEMPT};
use super::{
    Event, IntegrationType, Outcome, MAX_ERROR_MESSAGE_CHARS, MAX_EVENT_ID_CHARS,
    MAX_INTEGRATION_ID_CHARS, MAX_NAME_CHARS, MAX_TENANT_ID_CHARS,
};

const MAX_DEPTH: usize = 32;

/// A string value and whether it is plain (printable ASCII: its length in bytes is its length in
/// characters, and it holds no control character).
type Text<'a> = (&'a str, bool);

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

/// The fields read so far, each already valid, and which have been seen.
#[derive(Default)]
struct Fields<'a> {
    seen: u16,
    event_id: Option<&'a str>,
    tenant_id: Option<&'a str>,
    occurred_at_ms: Option<i64>,
    integration_type: Option<IntegrationType>,
    integration_id: Option<&'a str>,
    integration_name: Option<&'a str>,
    outcome: Option<Outcome>,
    status_code: Option<u16>,
    error_message: Option<&'a str>,
    flow_id: Option<&'a str>,
    flow_name: Option<&'a str>,
    service_id: Option<&'a str>,
    service_name: Option<&'a str>,
    latency_ms: Option<f64>,
    attempt: Option<u32>,
    final_attempt: Option<bool>,
}

impl Fields<'_> {
    /// Marks field number `bit` seen; a second occurrence makes the general decoder fail, so it
    /// makes us bail.
    fn first_time(&mut self, bit: u16) -> Option<()> {
        let flag = 1 << bit;
        if self.seen & flag != 0 {
            return None;
        }
        self.seen |= flag;
        Some(())
    }
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

    /// A string without escapes or raw control bytes, borrowed from the payload.
    fn string(&mut self) -> Option<Text<'a>> {
        self.expect(b'"')?;
        let start = self.pos;
        let rest = self.bytes.get(start..)?;
        let plain = plain_prefix(rest);
        let (length, is_plain) = match *rest.get(plain)? {
            b'"' => (plain, true),
            b'\\' => return None,
            byte if byte < 0x20 => return None,
            // DEL or a multi-byte character: find the end the slow way.
            _ => {
                let length = plain + memchr::memchr2(b'"', b'\\', rest.get(plain..)?)?;
                if *rest.get(length)? == b'\\' || rest[plain..length].iter().any(|b| *b < 0x20) {
                    return None;
                }
                (length, false)
            }
        };
        self.pos = start + length + 1;
        Some((self.text.get(start..start + length)?, is_plain))
    }

    /// The end of a JSON number starting here, and whether it has a fraction or exponent.
    fn number(&mut self) -> Option<bool> {
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
        Some(is_float)
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

    /// An integer without fraction or exponent that fits an i64.
    fn integer(&mut self) -> Option<i64> {
        let start = self.pos;
        if self.number()? {
            return None;
        }
        let digits = self.bytes.get(start..self.pos)?;
        let (negative, digits) = match digits.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, digits),
        };
        let mut magnitude = 0u64;
        for digit in digits {
            magnitude = magnitude
                .checked_mul(10)?
                .checked_add(u64::from(digit - b'0'))?;
        }
        if negative {
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        }
    }

    fn float(&mut self) -> Option<f64> {
        let start = self.pos;
        let is_float = self.number()?;
        let digits = self.text.get(start..self.pos)?;
        // Up to 15 digits an integer is exact in an f64, and the general decoder agrees.
        if !is_float && digits.len() <= 15 {
            return digits.parse::<i64>().ok().map(|v| v as f64);
        }
        digits.parse::<f64>().ok().filter(|v| v.is_finite())
    }

    fn boolean(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|_| true),
            b'f' => self.literal(b"false").map(|_| false),
            _ => None,
        }
    }

    /// `Some(None)` for null, `Some(Some(value))` for a value `read` accepts, `None` otherwise.
    fn null_or<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        read(self).map(Some)
    }

    /// A text field whose length in characters lies in `min..=max`, without control characters.
    fn text(&mut self, min: usize, max: usize) -> Option<&'a str> {
        let (text, is_plain) = self.string()?;
        let fits = if is_plain {
            (min..=max).contains(&text.len())
        } else {
            text_fits(text, min, max)
        };
        fits.then_some(text)
    }

    fn optional_text(&mut self, max: usize) -> Option<Option<&'a str>> {
        self.null_or(|s| s.text(0, max))
    }

    fn tenant(&mut self) -> Option<&'a str> {
        let (text, is_plain) = self.string()?;
        let fits = is_plain && (1..=MAX_TENANT_ID_CHARS).contains(&text.len());
        (fits && text.bytes().all(|b| is_tenant_char(char::from(b)))).then_some(text)
    }

    fn time(&mut self) -> Option<i64> {
        if self.peek()? == b'"' {
            return rfc3339_ms(self.string()?.0);
        }
        self.integer().filter(|ms| epoch_ms_in_range(*ms))
    }

    fn integration_type(&mut self) -> Option<IntegrationType> {
        IntegrationType::parse(self.string()?.0)
    }

    fn outcome(&mut self) -> Option<Outcome> {
        match self.string()?.0 {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }

    fn status_code(&mut self) -> Option<Option<u16>> {
        self.null_or(|s| {
            let code = s.integer()?;
            u16::try_from(code).ok().filter(|c| (100..=999).contains(c))
        })
    }

    fn latency(&mut self) -> Option<Option<f64>> {
        self.null_or(|s| s.float().filter(|v| *v >= 0.0))
    }

    fn attempt(&mut self) -> Option<Option<u32>> {
        self.null_or(|s| {
            let n = s.integer()?;
            (1..=MAX_ATTEMPT).contains(&n).then_some(n as u32)
        })
    }

    /// Reads the value of `key` into `fields`, or skips it when the event does not know it.
    fn field(&mut self, key: &str, f: &mut Fields<'a>) -> Option<()> {
        match key {
            "event_id" => {
                f.first_time(0)?;
                f.event_id = Some(self.text(1, MAX_EVENT_ID_CHARS)?);
            }
            "tenant_id" => {
                f.first_time(1)?;
                f.tenant_id = Some(self.tenant()?);
            }
            "occurred_at" => {
                f.first_time(2)?;
                f.occurred_at_ms = Some(self.time()?);
            }
            "integration_type" => {
                f.first_time(3)?;
                f.integration_type = Some(self.integration_type()?);
            }
            "integration_id" => {
                f.first_time(4)?;
                f.integration_id = Some(self.text(1, MAX_INTEGRATION_ID_CHARS)?);
            }
            "integration_name" => {
                f.first_time(5)?;
                f.integration_name = Some(self.text(0, MAX_NAME_CHARS)?);
            }
            "outcome" => {
                f.first_time(6)?;
                f.outcome = Some(self.outcome()?);
            }
            "status_code" => {
                f.first_time(7)?;
                f.status_code = self.status_code()?;
            }
            "error_message" => {
                f.first_time(8)?;
                f.error_message = self.optional_text(MAX_ERROR_MESSAGE_CHARS)?;
            }
            "flow_id" => {
                f.first_time(9)?;
                f.flow_id = self.optional_text(MAX_NAME_CHARS)?;
            }
            "flow_name" => {
                f.first_time(10)?;
                f.flow_name = self.optional_text(MAX_NAME_CHARS)?;
            }
            "service_id" => {
                f.first_time(11)?;
                f.service_id = self.optional_text(MAX_NAME_CHARS)?;
            }
            "service_name" => {
                f.first_time(12)?;
                f.service_name = self.optional_text(MAX_NAME_CHARS)?;
            }
            "latency_ms" => {
                f.first_time(13)?;
                f.latency_ms = self.latency()?;
            }
            "attempt" => {
                f.first_time(14)?;
                f.attempt = self.attempt()?;
            }
            "final" => {
                f.first_time(15)?;
                f.final_attempt = self.null_or(Scanner::boolean)?;
            }
            _ => self.skip_value(0)?,
        }
        Some(())
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

    fn object(&mut self) -> Option<Fields<'a>> {
        let mut fields = Fields::default();
        self.whitespace();
        self.expect(b'{')?;
        self.whitespace();
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                let (key, _) = self.string()?;
                self.whitespace();
                self.expect(b':')?;
                self.whitespace();
                self.field(key, &mut fields)?;
                self.whitespace();
                match self.bump()? {
                    b',' => self.whitespace(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        self.whitespace();
        (self.pos == self.bytes.len()).then_some(fields)
    }
}

/// The event, when `payload` has the common shape and every field is valid.
pub(super) fn scan(payload: &[u8]) -> Option<Event<'_>> {
    let text = simdutf8::basic::from_utf8(payload).ok()?;
    let mut scanner = Scanner {
        text,
        bytes: payload,
        pos: 0,
    };
    let f = scanner.object()?;
    let outcome = f.outcome?;
    if outcome == Outcome::Failure && f.status_code.is_none() {
        return None;
    }
    Some(Event {
        event_id: Cow::Borrowed(f.event_id?),
        tenant_id: Cow::Borrowed(f.tenant_id?),
        occurred_at_ms: f.occurred_at_ms?,
        integration_type: f.integration_type?,
        integration_id: Cow::Borrowed(f.integration_id?),
        integration_name: Cow::Borrowed(f.integration_name?),
        outcome,
        status_code: f.status_code,
        error_message: f.error_message.map(Cow::Borrowed),
        flow_id: f.flow_id.map(Cow::Borrowed),
        flow_name: f.flow_name.map(Cow::Borrowed),
        service_id: f.service_id.map(Cow::Borrowed),
        service_name: f.service_name.map(Cow::Borrowed),
        latency_ms: f.latency_ms,
        attempt: f.attempt,
        final_attempt: f.final_attempt,
    })
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
