//! The hand-written CSV splitter that `csv-core` replaced, kept only as a
//! test oracle: the new splitter must agree with it byte for byte on every
//! input it was specified for.

use super::{MAX_FIELD_BYTES, MAX_FIELDS, RawRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: either the closing one or the first of `""`.
    QuoteInQuoted,
}

/// Splits CSV (RFC 4180: `,` separators, `"` quoting with `""` escapes,
/// LF or CRLF line ends, newlines allowed inside quotes) fed in arbitrary
/// chunks, so a large upload is never held in memory at once.
#[derive(Debug)]
pub struct OldSplitter {
    state: State,
    field: Vec<u8>,
    fields: Vec<String>,
    error: Option<String>,
    line: u64,
    record_line: u64,
    /// Anything seen since the record started (to skip blank lines).
    touched: bool,
}

impl Default for OldSplitter {
    fn default() -> Self {
        Self::new()
    }
}

impl OldSplitter {
    pub fn new() -> Self {
        Self {
            state: State::FieldStart,
            field: Vec::new(),
            fields: Vec::new(),
            error: None,
            line: 1,
            record_line: 1,
            touched: false,
        }
    }

    fn fail(&mut self, why: &str) {
        if self.error.is_none() {
            self.error = Some(why.to_owned());
        }
    }

    fn end_field(&mut self) {
        let bytes = std::mem::take(&mut self.field);
        if self.error.is_some() {
            return;
        }
        if self.fields.len() >= MAX_FIELDS {
            self.fail("too many fields");
            return;
        }
        match String::from_utf8(bytes) {
            Ok(s) => self.fields.push(s),
            Err(_) => self.fail("the line is not valid UTF-8"),
        }
    }

    fn end_record(&mut self, out: &mut Vec<RawRecord>) {
        self.end_field();
        let blank = !self.touched || (self.fields.len() == 1 && self.fields[0].trim().is_empty());
        let fields = std::mem::take(&mut self.fields);
        match self.error.take() {
            Some(e) => out.push(RawRecord {
                line: self.record_line,
                fields: Err(e),
            }),
            None if blank => {}
            None => out.push(RawRecord {
                line: self.record_line,
                fields: Ok(fields),
            }),
        }
        self.state = State::FieldStart;
        self.touched = false;
    }

    fn push_byte(&mut self, b: u8) {
        if self.field.len() >= MAX_FIELD_BYTES {
            self.fail("a field is longer than 4096 bytes");
        } else {
            self.field.push(b);
        }
    }

    /// Feeds bytes; returns the records completed by them.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<RawRecord> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\r' && b != b'\n' {
                if !self.touched {
                    self.record_line = self.line;
                }
                self.touched = true;
            }
            match self.state {
                State::FieldStart | State::Unquoted => match b {
                    b'"' if self.state == State::FieldStart => self.state = State::Quoted,
                    b'"' => {
                        self.fail("a quote inside an unquoted field");
                        self.push_byte(b);
                    }
                    b',' => {
                        self.end_field();
                        self.state = State::FieldStart;
                    }
                    b'\n' => {
                        if !self.touched {
                            self.record_line = self.line;
                        }
                        self.end_record(&mut out);
                        self.line += 1;
                    }
                    b'\r' => {}
                    _ => {
                        self.push_byte(b);
                        self.state = State::Unquoted;
                    }
                },
                State::Quoted => match b {
                    b'"' => self.state = State::QuoteInQuoted,
                    b'\n' => {
                        self.line += 1;
                        self.push_byte(b);
                    }
                    _ => self.push_byte(b),
                },
                State::QuoteInQuoted => match b {
                    b'"' => {
                        self.push_byte(b'"');
                        self.state = State::Quoted;
                    }
                    b',' => {
                        self.end_field();
                        self.state = State::FieldStart;
                    }
                    b'\n' => {
                        self.end_record(&mut out);
                        self.line += 1;
                    }
                    b'\r' => {}
                    _ => {
                        self.fail("text after a closing quote");
                        self.state = State::Unquoted;
                    }
                },
            }
        }
        out
    }

    /// Ends the input; returns the last record if the file did not end with
    /// a newline (or an unterminated quoted field, as malformed).
    pub fn finish(mut self) -> Vec<RawRecord> {
        let mut out = Vec::new();
        if self.state == State::Quoted {
            self.fail("a quoted field is never closed");
            self.touched = true;
        }
        if self.touched {
            self.end_record(&mut out);
        }
        out
    }
}
