//! Message content receivers: DATA (dot-stuffed, ended by `<CRLF>.<CRLF>`)
//! and BDAT chunks (length-delimited).
//!
//! - DATA: RFC 5321 section 4.1.1.4 (the end of data is `<CRLF>.<CRLF>`)
//!   and 4.5.2 (a leading period is removed from every line). The body
//!   starts right after the CRLF of the DATA command, so `.<CRLF>` as the
//!   very first line ends an empty message.
//! - SMTP smuggling defence: only `<CR><LF>.<CR><LF>` ends the data. A bare
//!   LF or bare CR anywhere (RFC 5321 section 2.3.8: they must not appear
//!   outside CRLF) marks the message as rejected; after one, the next bytes
//!   are never treated as the start of a line, so `<LF>.<LF>`,
//!   `<LF>.<CR><LF>` and `<CR>.<CR>` can never end the data. The receiver
//!   keeps reading (and discarding) to the real terminator, so bytes a
//!   smuggler placed after a fake terminator never become commands.
//! - Limits: a line is at most 1000 octets including CRLF (RFC 5321 section
//!   4.5.3.1.6); a message is at most the configured size (RFC 1870, reply
//!   552). Exceeding either discards what was buffered and keeps reading to
//!   the terminator, so memory stays bounded.
//! - BDAT: RFC 3030 section 2. Chunk bytes are taken as they are (no dot
//!   handling), but the same bare CR/LF and line rules apply so sealpost
//!   never relays content another server could read differently.

use thiserror::Error;

use super::reply::Reply;

/// Longest text line including CRLF, RFC 5321 4.5.3.1.6.
pub(crate) const MAX_DATA_LINE: usize = 1000;

/// Why message content was rejected. The first problem found is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContentError {
    #[error("bare LF at content octet {offset}")]
    BareLf { offset: u64 },
    #[error("bare CR at content octet {offset}")]
    BareCr { offset: u64 },
    #[error("line {line} is longer than {MAX_DATA_LINE} octets")]
    LineTooLong { line: u64 },
    #[error("message exceeds the limit of {limit} octets")]
    TooBig { limit: u64 },
}

impl ContentError {
    /// The reply sent after the terminator (or the last chunk).
    pub fn reply(&self) -> Reply {
        match self {
            ContentError::BareLf { .. } | ContentError::BareCr { .. } => Reply::new(
                554,
                (5, 6, 0),
                "Message rejected: bare <CR> or <LF> in message content",
            ),
            ContentError::LineTooLong { .. } => Reply::new(
                554,
                (5, 6, 0),
                "Message rejected: line longer than 1000 octets",
            ),
            ContentError::TooBig { .. } => Reply::new(
                552,
                (5, 3, 4),
                "Message size exceeds fixed maximum message size",
            ),
        }
    }
}

/// Where the DATA scanner is in the line structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataState {
    /// Right after a CRLF (or the DATA command): a line starts here.
    LineStart,
    /// A line started with `.`.
    Dot,
    /// A line started with `.<CR>`.
    DotCr,
    /// Inside a line.
    InLine,
    /// Saw CR inside a line (or at a line start).
    Cr,
}

/// What [`DataReceiver::receive`] did with the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProgress {
    /// All input consumed; the terminator has not been seen yet.
    NeedMore,
    /// The terminator ended the data after `consumed` input bytes (the rest
    /// belongs to the next command). `Err` means reject the message.
    Done {
        consumed: usize,
        result: Result<(), ContentError>,
    },
}

/// Receives DATA content: removes dot-stuffing, finds the real end, checks
/// the limits. Feed input in any split: the result is the same.
#[derive(Debug, Clone)]
pub struct DataReceiver {
    state: DataState,
    max_size: u64,
    /// Content octets seen (unstuffed), counted even when discarding.
    size: u64,
    /// Octets of the current line on the wire, CRLF included.
    line_len: usize,
    line_no: u64,
    /// Wire octets seen, for error offsets.
    offset: u64,
    error: Option<ContentError>,
}

impl DataReceiver {
    /// A receiver for a message of at most `max_size` octets.
    pub fn new(max_size: u64) -> DataReceiver {
        DataReceiver {
            state: DataState::LineStart,
            max_size,
            size: 0,
            line_len: 0,
            line_no: 1,
            offset: 0,
            error: None,
        }
    }

    /// Content octets received so far (unstuffed; also those discarded).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first problem found so far, if any (content is being discarded).
    pub fn error(&self) -> Option<ContentError> {
        self.error
    }

    fn fail(&mut self, error: ContentError, body: &mut Vec<u8>) {
        if self.error.is_none() {
            self.error = Some(error);
            body.clear();
            body.shrink_to_fit();
        }
    }

    fn emit(&mut self, bytes: &[u8], body: &mut Vec<u8>) {
        self.size += bytes.len() as u64;
        if self.error.is_none() {
            if self.size > self.max_size {
                self.fail(
                    ContentError::TooBig {
                        limit: self.max_size,
                    },
                    body,
                );
            } else {
                body.extend_from_slice(bytes);
            }
        }
    }

    fn count_line(&mut self, n: usize, body: &mut Vec<u8>) {
        self.line_len += n;
        if self.line_len > MAX_DATA_LINE {
            let line = self.line_no;
            self.fail(ContentError::LineTooLong { line }, body);
        }
    }

    fn new_line(&mut self) {
        self.line_len = 0;
        self.line_no += 1;
    }

    /// Consumes `input`, appending unstuffed content to `body` (cleared and
    /// no longer appended to once an error is found).
    pub fn receive(&mut self, input: &[u8], body: &mut Vec<u8>) -> DataProgress {
        let mut i = 0;
        while i < input.len() {
            if self.state == DataState::InLine {
                // Fast path: copy up to the next CR or LF in one go.
                let run = input[i..]
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(input.len() - i);
                if run > 0 {
                    self.count_line(run, body);
                    self.emit(&input[i..i + run], body);
                    self.offset += run as u64;
                    i += run;
                    continue;
                }
            }
            let b = input[i];
            let at = self.offset;
            i += 1;
            self.offset += 1;
            self.count_line(1, body);
            match (self.state, b) {
                (DataState::LineStart, b'.') => self.state = DataState::Dot,
                (DataState::Dot, b'\r') => self.state = DataState::DotCr,
                (DataState::DotCr, b'\n') => {
                    let result = match self.error {
                        Some(e) => Err(e),
                        None => Ok(()),
                    };
                    return DataProgress::Done {
                        consumed: i,
                        result,
                    };
                }
                (DataState::DotCr, _) => {
                    // `.<CR>` then not LF: the CR was bare.
                    self.fail(ContentError::BareCr { offset: at - 1 }, body);
                    self.emit(b"\r", body);
                    self.after_bare_cr(b, at, body);
                }
                (DataState::LineStart | DataState::InLine, b'\r') => self.state = DataState::Cr,
                (DataState::Cr, b'\n') => {
                    self.emit(b"\r\n", body);
                    self.new_line();
                    self.state = DataState::LineStart;
                }
                (DataState::Cr, _) => {
                    self.fail(ContentError::BareCr { offset: at - 1 }, body);
                    self.emit(b"\r", body);
                    self.after_bare_cr(b, at, body);
                }
                (_, b'\n') => {
                    // Never a line start after a bare LF: `<LF>.<LF>` and
                    // `<LF>.<CR><LF>` must not end the data.
                    self.fail(ContentError::BareLf { offset: at }, body);
                    self.emit(b"\n", body);
                    self.state = DataState::InLine;
                }
                (DataState::Dot, b) => {
                    // The leading dot was stuffing (RFC 5321 4.5.2).
                    self.emit(&[b], body);
                    self.state = DataState::InLine;
                }
                (_, b) => {
                    self.emit(&[b], body);
                    self.state = DataState::InLine;
                }
            }
        }
        DataProgress::NeedMore
    }

    /// After a bare CR, `b` is ordinary content (or another CR, or a bare LF).
    fn after_bare_cr(&mut self, b: u8, at: u64, body: &mut Vec<u8>) {
        match b {
            b'\r' => self.state = DataState::Cr,
            b'\n' => {
                self.fail(ContentError::BareLf { offset: at }, body);
                self.emit(b"\n", body);
                self.state = DataState::InLine;
            }
            _ => {
                self.emit(&[b], body);
                self.state = DataState::InLine;
            }
        }
    }
}

/// Checks BDAT content across chunks: bare CR/LF, line length and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BdatReceiver {
    max_size: u64,
    size: u64,
    line_len: usize,
    line_no: u64,
    pending_cr: bool,
    error: Option<ContentError>,
}

impl BdatReceiver {
    pub fn new(max_size: u64) -> BdatReceiver {
        BdatReceiver {
            max_size,
            size: 0,
            line_len: 0,
            line_no: 1,
            pending_cr: false,
            error: None,
        }
    }

    /// Content octets received so far (also those discarded).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first problem found so far.
    pub fn error(&self) -> Option<ContentError> {
        self.error
    }

    fn fail(&mut self, error: ContentError, body: &mut Vec<u8>) {
        if self.error.is_none() {
            self.error = Some(error);
            body.clear();
            body.shrink_to_fit();
        }
    }

    /// Takes chunk bytes (any part of a chunk), appending them to `body`
    /// while no error has been found.
    pub fn receive(&mut self, input: &[u8], body: &mut Vec<u8>) {
        let start = self.size;
        self.size += input.len() as u64;
        if self.error.is_none() && self.size > self.max_size {
            let limit = self.max_size;
            self.fail(ContentError::TooBig { limit }, body);
        }
        for (k, &b) in input.iter().enumerate() {
            let at = start + k as u64;
            self.line_len += 1;
            if self.line_len > MAX_DATA_LINE {
                let line = self.line_no;
                self.fail(ContentError::LineTooLong { line }, body);
            }
            match (self.pending_cr, b) {
                (true, b'\n') => {
                    self.pending_cr = false;
                    self.line_len = 0;
                    self.line_no += 1;
                }
                (true, _) => {
                    self.fail(ContentError::BareCr { offset: at - 1 }, body);
                    self.pending_cr = b == b'\r';
                }
                (false, b'\r') => self.pending_cr = true,
                (false, b'\n') => self.fail(ContentError::BareLf { offset: at }, body),
                _ => {}
            }
            if self.error.is_some() {
                // Nothing more to learn; the rest is discarded.
                return;
            }
        }
        if self.error.is_none() {
            body.extend_from_slice(input);
        }
    }

    /// Called after the LAST chunk: a trailing CR is bare; a last line
    /// without CRLF gets one, so the stored message ends in CRLF.
    pub fn finish(&mut self, body: &mut Vec<u8>) -> Result<(), ContentError> {
        if self.pending_cr {
            let offset = self.size - 1;
            self.fail(ContentError::BareCr { offset }, body);
        }
        if let Some(e) = self.error {
            return Err(e);
        }
        if !body.is_empty() && !body.ends_with(b"\r\n") {
            body.extend_from_slice(b"\r\n");
        }
        Ok(())
    }
}

/// Writes `body` as DATA content for the client side: a period is added
/// before every line that starts with one (RFC 5321 4.5.2), a missing final
/// CRLF is added, then the terminator `.<CRLF>`. `body` should use CRLF line
/// ends, as every body the server stores does.
pub fn encode_data(body: &[u8], out: &mut Vec<u8>) {
    out.reserve(body.len() + body.len() / 64 + 5);
    let mut at_line_start = true;
    let mut rest = body;
    while !rest.is_empty() {
        if at_line_start && rest[0] == b'.' {
            out.push(b'.');
        }
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        out.extend_from_slice(&rest[..line_end]);
        at_line_start = rest[..line_end].ends_with(b"\n");
        rest = &rest[line_end..];
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], max: u64) -> (DataProgress, Vec<u8>) {
        let mut rx = DataReceiver::new(max);
        let mut body = Vec::new();
        let progress = rx.receive(input, &mut body);
        (progress, body)
    }

    fn done(consumed: usize, result: Result<(), ContentError>) -> DataProgress {
        DataProgress::Done { consumed, result }
    }

    #[test]
    fn data_table() {
        let big = 1 << 20;
        let cases: &[(&[u8], DataProgress, &[u8])] = &[
            (b".\r\n", done(3, Ok(())), b""),
            (b"a\r\n.\r\n", done(6, Ok(())), b"a\r\n"),
            (b"a\r\n.\r\nMAIL", done(6, Ok(())), b"a\r\n"),
            (
                b"..x\r\n.x\r\n..\r\n.\r\n",
                done(16, Ok(())),
                b".x\r\nx\r\n.\r\n",
            ),
            (b"a\r\n", DataProgress::NeedMore, b"a\r\n"),
            (b"a\r\n.", DataProgress::NeedMore, b"a\r\n"),
            (b"a\r\n.\r", DataProgress::NeedMore, b"a\r\n"),
            // smuggling: none of these end the data
            (b"a\n.\nMAIL FROM:<x@y>\r\n", DataProgress::NeedMore, b""),
            (b"a\n.\r\nMAIL FROM:<x@y>\r\n", DataProgress::NeedMore, b""),
            (b"a\r\n.\nMAIL FROM:<x@y>\r\n", DataProgress::NeedMore, b""),
            (b"a\r.\rMAIL FROM:<x@y>\r\n", DataProgress::NeedMore, b""),
            (b"a\r.\r\nMAIL FROM:<x@y>\r\n", DataProgress::NeedMore, b""),
            // ... and the real end afterwards reports the bare LF/CR
            (
                b"a\n.\nX\r\n.\r\n",
                done(10, Err(ContentError::BareLf { offset: 1 })),
                b"",
            ),
            (
                b"a\r\n.\nX\r\n.\r\n",
                done(11, Err(ContentError::BareLf { offset: 4 })),
                b"",
            ),
            (
                b"a\rb\r\n.\r\n",
                done(8, Err(ContentError::BareCr { offset: 1 })),
                b"",
            ),
            (
                b".\rx\r\n.\r\n",
                done(8, Err(ContentError::BareCr { offset: 1 })),
                b"",
            ),
            (b"\n.\r\n", DataProgress::NeedMore, b""),
            (
                b"\r\r\n.\r\n",
                done(6, Err(ContentError::BareCr { offset: 0 })),
                b"",
            ),
        ];
        for (input, progress, body) in cases {
            let (got, got_body) = run(input, big);
            assert_eq!(got, *progress, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(got_body, *body, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn line_length_limit() {
        let ok = [vec![b'x'; MAX_DATA_LINE - 2], b"\r\n.\r\n".to_vec()].concat();
        assert_eq!(run(&ok, 1 << 20).0, done(ok.len(), Ok(())));
        let long = [vec![b'x'; MAX_DATA_LINE - 1], b"\r\n.\r\n".to_vec()].concat();
        let (progress, body) = run(&long, 1 << 20);
        assert_eq!(
            progress,
            done(long.len(), Err(ContentError::LineTooLong { line: 1 }))
        );
        assert!(body.is_empty());
        // a stuffed line counts its dot: 999 content + dot + CRLF is too long
        let stuffed = [
            b".".to_vec(),
            vec![b'.'; MAX_DATA_LINE - 2],
            b"\r\n.\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(
            run(&stuffed, 1 << 20).0,
            done(stuffed.len(), Err(ContentError::LineTooLong { line: 1 }))
        );
    }

    #[test]
    fn size_limit_discards_and_reads_to_the_end() {
        let mut rx = DataReceiver::new(10);
        let mut body = Vec::new();
        assert_eq!(
            rx.receive(b"0123456789\r\n", &mut body),
            DataProgress::NeedMore
        );
        assert!(body.is_empty(), "over the limit: nothing kept");
        assert_eq!(
            rx.receive(b"more\r\nlines\r\n", &mut body),
            DataProgress::NeedMore
        );
        assert_eq!(
            rx.receive(b".\r\nQUIT\r\n", &mut body),
            done(3, Err(ContentError::TooBig { limit: 10 }))
        );
        assert_eq!(rx.size(), 25);
        assert_eq!(ContentError::TooBig { limit: 10 }.reply().code, 552);
        // exactly at the limit is fine
        assert_eq!(run(b"01234567\r\n.\r\n", 10).0, done(13, Ok(())));
    }

    #[test]
    fn encode_data_stuffs_and_terminates() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b".\r\n"),
            (b"a\r\n", b"a\r\n.\r\n"),
            (b".a\r\n..b\r\nc.\r\n.", b"..a\r\n...b\r\nc.\r\n..\r\n.\r\n"),
            (b"no end", b"no end\r\n.\r\n"),
        ];
        for (body, wire) in cases {
            let mut out = Vec::new();
            encode_data(body, &mut out);
            assert_eq!(out, *wire);
            let mut back = Vec::new();
            let done = DataReceiver::new(1 << 20).receive(&out, &mut back);
            assert_eq!(
                done,
                DataProgress::Done {
                    consumed: out.len(),
                    result: Ok(())
                }
            );
        }
    }

    #[test]
    fn bdat_chunks() {
        let mut rx = BdatReceiver::new(100);
        let mut body = Vec::new();
        rx.receive(b"Subject: x\r", &mut body);
        rx.receive(b"\n\r\nbody", &mut body);
        assert_eq!(rx.finish(&mut body), Ok(()));
        assert_eq!(body, b"Subject: x\r\n\r\nbody\r\n");

        type Case<'a> = (&'a [&'a [u8]], Result<(), ContentError>);
        let cases: &[Case] = &[
            (&[b"a\nb"], Err(ContentError::BareLf { offset: 1 })),
            (&[b"a\r", b"b"], Err(ContentError::BareCr { offset: 1 })),
            (&[b"a\r"], Err(ContentError::BareCr { offset: 1 })),
            (
                &[b"0123456789", b"0123456789"],
                Err(ContentError::TooBig { limit: 15 }),
            ),
            (&[b".\r\n", b"..\r\n"], Ok(())),
        ];
        for (chunks, want) in cases {
            let mut rx = BdatReceiver::new(15);
            let mut body = Vec::new();
            for chunk in *chunks {
                rx.receive(chunk, &mut body);
            }
            assert_eq!(rx.finish(&mut body), *want, "{chunks:?}");
            if want.is_err() {
                assert!(body.is_empty());
            }
        }
    }
}
