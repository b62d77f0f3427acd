//! Incremental Server-Sent Events parser (the subset of the HTML spec that chat
//! completion streams use: `data:` and `event:` fields, comments, any line ending).
//!
//! Bytes arrive in arbitrary pieces: an event, a line, a CRLF pair or a UTF-8 character
//! may be split across reads. Lines are decoded only once complete, so splits anywhere
//! give the same events.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, when the server set one (for example `error`).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Upper bound on one line; a longer line is a broken stream, not a reason to
/// exhaust memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("SSE line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous piece ended with `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Feed the next piece of the body; complete events are passed to `on_event`.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        on_event: &mut impl FnMut(Event),
    ) -> Result<(), SseError> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.after_cr {
            self.after_cr = false;
            if let [b'\n', rest @ ..] = bytes {
                bytes = rest;
            }
        }
        while let Some(pos) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (head, tail) = bytes.split_at(pos);
            if self.line.is_empty() {
                self.process_line(head, on_event)?;
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                let done = self.process_line(&line, on_event);
                self.line = line;
                self.line.clear();
                done?;
            }
            let is_cr = tail[0] == b'\r';
            bytes = &tail[1..];
            if is_cr {
                match bytes.first() {
                    Some(b'\n') => bytes = &bytes[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// True when bytes of an unfinished line or event are buffered.
    pub fn has_pending(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn process_line(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(Event),
    ) -> Result<(), SseError> {
        if line.is_empty() {
            if self.has_data {
                on_event(Event {
                    event: self.event.take(),
                    data: std::mem::take(&mut self.data),
                });
                self.has_data = false;
            } else {
                self.event = None;
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(()); // comment (keep-alive)
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                // One event's data lines add up: the same bound as one line.
                if self.data.len() + value.len() > MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&String::from_utf8_lossy(value));
                self.has_data = true;
            }
            b"event" => self.event = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {} // id, retry, unknown fields: not used by chat streams
        }
        Ok(())
    }
}

/// Parse a whole body at once (tests and non-incremental callers).
pub fn parse_all(body: &[u8]) -> Result<Vec<Event>, SseError> {
    let mut events = Vec::new();
    let mut p = Parser::new();
    p.feed(body, &mut |e| events.push(e))?;
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.data.as_str()).collect()
    }

    #[test]
    fn lf_crlf_and_cr_line_endings_give_the_same_events() {
        let lf = parse_all(b"data: a\n\ndata: b\n\n").unwrap();
        let crlf = parse_all(b"data: a\r\n\r\ndata: b\r\n\r\n").unwrap();
        let cr = parse_all(b"data: a\r\rdata: b\r\r").unwrap();
        assert_eq!(data(&lf), ["a", "b"]);
        assert_eq!(lf, crlf);
        assert_eq!(lf, cr);
    }

    #[test]
    fn comments_and_unknown_fields_are_skipped_and_multiline_data_joined() {
        let ev = parse_all(b": keep-alive\n\nid: 7\ndata: one\ndata:two\n\n").unwrap();
        assert_eq!(data(&ev), ["one\ntwo"]);
    }

    #[test]
    fn event_field_is_kept_and_reset_after_dispatch() {
        let ev = parse_all(b"event: error\ndata: {}\n\ndata: x\n\n").unwrap();
        assert_eq!(ev[0].event.as_deref(), Some("error"));
        assert_eq!(ev[1].event, None);
    }

    #[test]
    fn unterminated_event_is_not_dispatched() {
        let mut p = Parser::new();
        let mut n = 0;
        p.feed(b"data: partial", &mut |_| n += 1).unwrap();
        assert_eq!(n, 0);
        assert!(p.has_pending());
    }

    #[test]
    fn cr_at_the_end_of_a_piece_then_lf_is_one_line_ending() {
        let mut p = Parser::new();
        let mut ev = Vec::new();
        p.feed(b"data: a\r", &mut |e| ev.push(e)).unwrap();
        p.feed(b"\n\r", &mut |e| ev.push(e)).unwrap();
        p.feed(b"\n", &mut |e| ev.push(e)).unwrap();
        assert_eq!(data(&ev), ["a"]);
        assert!(!p.has_pending());
    }

    #[test]
    fn a_line_beyond_the_limit_is_an_error_not_unbounded_memory() {
        let mut p = Parser::new();
        let big = vec![b'x'; MAX_LINE_BYTES / 2 + 1];
        p.feed(b"data: ", &mut |_| {}).unwrap();
        p.feed(&big, &mut |_| {}).unwrap();
        assert_eq!(p.feed(&big, &mut |_| {}), Err(SseError::LineTooLong));
    }

    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let line_end = prop_oneof![Just("\n"), Just("\r\n"), Just("\r")];
        let piece = (
            prop_oneof![
                "[a-z{}\":, ]{0,12}".prop_map(|s| format!("data: {s}")),
                Just("data: héllo wörld ✓ 日本".to_string()),
                Just(": comment".to_string()),
                Just("event: error".to_string()),
                Just("data: [DONE]".to_string()),
                Just(String::new()),
            ],
            line_end,
        )
            .prop_map(|(l, e)| format!("{l}{e}"));
        proptest::collection::vec(piece, 0..30).prop_map(|v| v.concat().into_bytes())
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(body in stream(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..20)) {
            let whole = parse_all(&body).unwrap();
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
            points.sort_unstable();
            let mut p = Parser::new();
            let mut got = Vec::new();
            let mut last = 0;
            for c in points.into_iter().chain(std::iter::once(body.len())) {
                p.feed(&body[last..c], &mut |e| got.push(e)).unwrap();
                last = c;
            }
            prop_assert_eq!(got, whole);
        }
    }
}
