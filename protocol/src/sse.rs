//! Server-Sent Events (the WHATWG `text/event-stream` format) as OpenAI-style
//! streams use it: an incremental decoder that turns bytes, cut anywhere, into
//! each event's `data`, and the one-line encoding of an event.

/// Why a stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event is longer than {0} bytes")]
    TooLong(usize),
    #[error("an event is not UTF-8")]
    NotUtf8,
}

/// Decodes a byte stream into event payloads. Lines end in `\n`, `\r\n` or `\r`;
/// `data:` lines of one event are joined with `\n`; an empty line ends the event;
/// comments and the `event`, `id` and `retry` fields are skipped.
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    data: Vec<u8>,
    has_data: bool,
    /// The last byte seen was `\r`: a `\n` right after it ends nothing more.
    after_cr: bool,
    max_event: usize,
}

impl SseDecoder {
    pub fn new(max_event: usize) -> SseDecoder {
        SseDecoder {
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            after_cr: false,
            max_event,
        }
    }

    /// Feeds bytes; returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, SseError> {
        let mut events = Vec::new();
        for &byte in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, byte == b'\r');
            match byte {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => {
                    if let Some(event) = self.end_line()? {
                        events.push(event);
                    }
                }
                _ => {
                    if self.line.len() + self.data.len() >= self.max_event {
                        return Err(SseError::TooLong(self.max_event));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(events)
    }

    /// Is an event half-read (the stream must not end here)?
    pub fn is_mid_event(&self) -> bool {
        !self.line.is_empty() || self.has_data
    }

    fn end_line(&mut self) -> Result<Option<String>, SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if !std::mem::take(&mut self.has_data) {
                return Ok(None);
            }
            let data = std::mem::take(&mut self.data);
            return String::from_utf8(data)
                .map(Some)
                .map_err(|_| SseError::NotUtf8);
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(0) => return Ok(None), // a comment
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (&line[..], &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
        }
        Ok(None)
    }
}

/// One event carrying `data` (which must not contain line breaks: JSON does not).
pub fn event(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_come_out_whole_however_the_bytes_are_cut() {
        let stream =
            b": keep-alive\n\ndata: {\"a\":1}\r\n\r\nevent: x\ndata:b\ndata: c\r\rdata: [DONE]\n\n";
        let expected = vec!["{\"a\":1}", "b\nc", "[DONE]"];
        for cut in 1..stream.len() {
            let mut decoder = SseDecoder::new(1024);
            let mut got = decoder.push(&stream[..cut]).unwrap();
            got.extend(decoder.push(&stream[cut..]).unwrap());
            assert_eq!(got, expected, "cut at {cut}");
            assert!(!decoder.is_mid_event());
        }
    }

    #[test]
    fn a_half_event_and_an_oversized_one_are_seen() {
        let mut decoder = SseDecoder::new(16);
        assert!(decoder.push(b"data: {\"a\"").unwrap().is_empty());
        assert!(decoder.is_mid_event());
        assert_eq!(
            decoder.push(&[b'x'; 32]),
            Err(SseError::TooLong(16)),
            "an endless line is refused"
        );
        let mut decoder = SseDecoder::new(64);
        assert_eq!(decoder.push(b"data: \xff\n\n"), Err(SseError::NotUtf8));
    }

    #[test]
    fn encoding_is_one_data_line() {
        assert_eq!(event(b"{}"), b"data: {}\n\n");
    }
}
