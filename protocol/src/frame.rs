//! The binary frames of the terminal wire (`docs/terminal-protocol.md`).
//!
//! One WebSocket binary message carries exactly one frame: a type byte, a fixed
//! big-endian header for that type, then the payload if the type has one. The
//! browser's `assets/terminal.js` implements the same table, so any change here is
//! a change of the wire and must be made there too.

use bytes::Bytes;
use thiserror::Error;

/// The largest message either end accepts, type byte included. Output is sent in
/// chunks far below it, so only a broken or hostile peer ever reaches it.
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// The smallest column or row count that reaches a PTY.
pub const MIN_DIMENSION: u16 = 1;

/// The largest column or row count that reaches a PTY; more is a mistake or an
/// attempt to make the shell allocate absurd screens.
pub const MAX_DIMENSION: u16 = 1000;

/// The most sessions (shells) one workspace runs at once. The agent refuses a new
/// session past it, and the terminal page offers no more tabs than this.
pub const MAX_SESSIONS_PER_WORKSPACE: usize = 8;

/// WebSocket close codes the terminal wire uses, so both ends name them alike.
pub mod close_code {
    /// The session ended normally: the shell exited, or another socket took over.
    pub const NORMAL: u16 = 1000;
    /// The peer broke the protocol: unknown type, short header, text message, or a
    /// first message other than `hello`.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A message was larger than [`super::MAX_MESSAGE`].
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The agent could not serve the session (for example the shell failed to start).
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Type bytes, kept in one place so encode and decode cannot drift apart.
mod kind {
    pub const INPUT: u8 = 0x01;
    pub const OUTPUT: u8 = 0x02;
    pub const RESIZE: u8 = 0x03;
    pub const ACK: u8 = 0x04;
    pub const PING: u8 = 0x05;
    pub const PONG: u8 = 0x06;
    pub const HELLO: u8 = 0x07;
    pub const READY: u8 = 0x08;
    pub const EXIT: u8 = 0x09;
    pub const ERROR: u8 = 0x0a;
    pub const CLOSE: u8 = 0x0b;
}

/// One message of the terminal wire, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Bytes typed or pasted in the browser, written to the PTY as they are.
    Input(Bytes),
    /// Bytes the shell wrote, starting at `offset` in the session's whole output.
    Output { offset: u64, data: Bytes },
    /// The browser's terminal size changed.
    Resize { cols: u16, rows: u16 },
    /// Every output byte before this offset has been rendered.
    Ack(u64),
    /// A round-trip probe; the other end answers with [`Frame::Pong`] and the same nonce.
    Ping(u64),
    /// The answer to a [`Frame::Ping`].
    Pong(u64),
    /// The browser's first message: the output offset it already holds and its size.
    Hello { offset: u64, cols: u16, rows: u16 },
    /// The agent's answer to `hello`: output follows from `offset`; `lost` bytes
    /// between the browser's offset and `offset` are gone.
    Ready { offset: u64, lost: u64 },
    /// The shell exited with this status (-1 when a signal killed it).
    Exit(i32),
    /// A message for the person at the terminal.
    Error(String),
    /// The browser is done with the session: the agent ends the shell now instead of
    /// waiting out the grace period, then sends `exit` as for any other ending.
    Close,
}

/// Why a message is not a frame. Each variant maps to one close code, so the
/// agent can answer a broken peer the way the protocol document says.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The message had no bytes at all.
    #[error("empty message")]
    Empty,
    /// The type byte is not one the protocol defines.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The header is shorter than its type needs.
    #[error("{kind} frame needs {needed} bytes, got {got}")]
    Truncated {
        kind: &'static str,
        needed: usize,
        got: usize,
    },
    /// A fixed-size frame carried bytes after its header.
    #[error("{kind} frame has {extra} bytes after its header")]
    TrailingBytes { kind: &'static str, extra: usize },
    /// The message is larger than [`MAX_MESSAGE`].
    #[error("message of {0} bytes is larger than {MAX_MESSAGE}")]
    TooLarge(usize),
    /// An `error` frame whose text is not UTF-8.
    #[error("error frame text is not UTF-8")]
    InvalidText,
}

impl FrameError {
    /// The WebSocket close code this error calls for.
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge(_) => close_code::MESSAGE_TOO_BIG,
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Clamps a column or row count to `MIN_DIMENSION..=MAX_DIMENSION`, so a zero or
/// absurd size from the browser never reaches the PTY.
pub fn clamp_dimension(value: u16) -> u16 {
    value.clamp(MIN_DIMENSION, MAX_DIMENSION)
}

impl Frame {
    /// The message bytes of this frame. Sizes are not checked against
    /// [`MAX_MESSAGE`]: senders keep output chunks small instead.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        match self {
            Frame::Input(data) => {
                out.push(kind::INPUT);
                out.extend_from_slice(data);
            }
            Frame::Output { offset, data } => {
                out.push(kind::OUTPUT);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::Resize { cols, rows } => {
                out.push(kind::RESIZE);
                out.extend_from_slice(&cols.to_be_bytes());
                out.extend_from_slice(&rows.to_be_bytes());
            }
            Frame::Ack(offset) => {
                out.push(kind::ACK);
                out.extend_from_slice(&offset.to_be_bytes());
            }
            Frame::Ping(nonce) => {
                out.push(kind::PING);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Frame::Pong(nonce) => {
                out.push(kind::PONG);
                out.extend_from_slice(&nonce.to_be_bytes());
            }
            Frame::Hello { offset, cols, rows } => {
                out.push(kind::HELLO);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&cols.to_be_bytes());
                out.extend_from_slice(&rows.to_be_bytes());
            }
            Frame::Ready { offset, lost } => {
                out.push(kind::READY);
                out.extend_from_slice(&offset.to_be_bytes());
                out.extend_from_slice(&lost.to_be_bytes());
            }
            Frame::Exit(status) => {
                out.push(kind::EXIT);
                out.extend_from_slice(&status.to_be_bytes());
            }
            Frame::Error(text) => {
                out.push(kind::ERROR);
                out.extend_from_slice(text.as_bytes());
            }
            Frame::Close => out.push(kind::CLOSE),
        }
        out
    }

    /// Parses one message. Never panics: every malformed input is a [`FrameError`].
    pub fn decode(message: &[u8]) -> Result<Frame, FrameError> {
        if message.len() > MAX_MESSAGE {
            return Err(FrameError::TooLarge(message.len()));
        }
        let (&kind, body) = message.split_first().ok_or(FrameError::Empty)?;
        let mut reader = Reader::new(kind_name(kind)?, body);
        let frame = match kind {
            kind::INPUT => Frame::Input(Bytes::copy_from_slice(reader.rest())),
            kind::OUTPUT => Frame::Output {
                offset: reader.u64()?,
                data: Bytes::copy_from_slice(reader.rest()),
            },
            kind::RESIZE => Frame::Resize {
                cols: reader.u16()?,
                rows: reader.u16()?,
            },
            kind::ACK => Frame::Ack(reader.u64()?),
            kind::PING => Frame::Ping(reader.u64()?),
            kind::PONG => Frame::Pong(reader.u64()?),
            kind::HELLO => Frame::Hello {
                offset: reader.u64()?,
                cols: reader.u16()?,
                rows: reader.u16()?,
            },
            kind::READY => Frame::Ready {
                offset: reader.u64()?,
                lost: reader.u64()?,
            },
            kind::EXIT => Frame::Exit(reader.i32()?),
            kind::ERROR => Frame::Error(
                String::from_utf8(reader.rest().to_vec()).map_err(|_| FrameError::InvalidText)?,
            ),
            kind::CLOSE => Frame::Close,
            other => return Err(FrameError::UnknownType(other)),
        };
        reader.finish()?;
        Ok(frame)
    }

    fn encoded_len(&self) -> usize {
        1 + match self {
            Frame::Input(data) => data.len(),
            Frame::Output { data, .. } => 8 + data.len(),
            Frame::Resize { .. } => 4,
            Frame::Ack(_) | Frame::Ping(_) | Frame::Pong(_) => 8,
            Frame::Hello { .. } => 12,
            Frame::Ready { .. } => 16,
            Frame::Exit(_) => 4,
            Frame::Error(text) => text.len(),
            Frame::Close => 0,
        }
    }
}

fn kind_name(kind: u8) -> Result<&'static str, FrameError> {
    Ok(match kind {
        kind::INPUT => "input",
        kind::OUTPUT => "output",
        kind::RESIZE => "resize",
        kind::ACK => "ack",
        kind::PING => "ping",
        kind::PONG => "pong",
        kind::HELLO => "hello",
        kind::READY => "ready",
        kind::EXIT => "exit",
        kind::ERROR => "error",
        kind::CLOSE => "close",
        other => return Err(FrameError::UnknownType(other)),
    })
}

/// Reads a frame body front to back, turning a short body into `Truncated`.
struct Reader<'a> {
    kind: &'static str,
    body: &'a [u8],
    pos: usize,
    /// Whether the payload (the rest of the body) was taken, which allows any length.
    took_rest: bool,
}

impl<'a> Reader<'a> {
    fn new(kind: &'static str, body: &'a [u8]) -> Self {
        Reader {
            kind,
            body,
            pos: 0,
            took_rest: false,
        }
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let end = self.pos + N;
        let bytes = self
            .body
            .get(self.pos..end)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or(FrameError::Truncated {
                kind: self.kind,
                // `needed` counts the type byte, like the message length does.
                needed: 1 + end,
                got: 1 + self.body.len(),
            })?;
        self.pos = end;
        Ok(bytes)
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        self.take().map(u16::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, FrameError> {
        self.take().map(u64::from_be_bytes)
    }

    fn i32(&mut self) -> Result<i32, FrameError> {
        self.take().map(i32::from_be_bytes)
    }

    fn rest(&mut self) -> &'a [u8] {
        self.took_rest = true;
        let rest = &self.body[self.pos..];
        self.pos = self.body.len();
        rest
    }

    fn finish(self) -> Result<(), FrameError> {
        let extra = self.body.len() - self.pos;
        if extra > 0 && !self.took_rest {
            return Err(FrameError::TrailingBytes {
                kind: self.kind,
                extra,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frame: Frame) {
        let encoded = frame.encode();
        assert_eq!(encoded.len(), frame.encoded_len());
        assert_eq!(Frame::decode(&encoded), Ok(frame));
    }

    #[test]
    fn every_frame_type_survives_a_round_trip() {
        round_trip(Frame::Input(Bytes::from_static(b"ls -la\r\x03")));
        round_trip(Frame::Input(Bytes::new()));
        round_trip(Frame::Output {
            offset: u64::MAX - 3,
            data: Bytes::from_static("ünï\x1b[0m".as_bytes()),
        });
        round_trip(Frame::Resize {
            cols: 132,
            rows: 43,
        });
        round_trip(Frame::Ack(1 << 40));
        round_trip(Frame::Ping(7));
        round_trip(Frame::Pong(u64::MAX));
        round_trip(Frame::Hello {
            offset: 12345,
            cols: 80,
            rows: 24,
        });
        round_trip(Frame::Ready {
            offset: 99,
            lost: 3,
        });
        round_trip(Frame::Exit(-1));
        round_trip(Frame::Exit(130));
        round_trip(Frame::Error("shell failed to start".into()));
        round_trip(Frame::Close);
    }

    #[test]
    fn integers_are_big_endian_after_the_type_byte() {
        let hello = Frame::Hello {
            offset: 0x0102_0304_0506_0708,
            cols: 0x0a0b,
            rows: 0x0c0d,
        };
        assert_eq!(
            hello.encode(),
            [7, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d]
        );
        assert_eq!(Frame::Exit(-1).encode(), [9, 0xff, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn close_is_the_type_byte_alone() {
        assert_eq!(Frame::Close.encode(), [0x0b]);
        assert_eq!(
            Frame::decode(&[0x0b, 0]),
            Err(FrameError::TrailingBytes {
                kind: "close",
                extra: 1
            })
        );
    }

    #[test]
    fn empty_message_is_refused() {
        assert_eq!(Frame::decode(&[]), Err(FrameError::Empty));
    }

    #[test]
    fn unknown_type_is_refused() {
        for kind in [0x00, 0x0c, 0x7f, 0xff] {
            assert_eq!(
                Frame::decode(&[kind, 0, 0]),
                Err(FrameError::UnknownType(kind))
            );
        }
    }

    #[test]
    fn short_header_is_truncated() {
        let cases: [&[u8]; 8] = [
            &[2, 0, 0, 0],
            &[3, 0, 80, 0],
            &[4, 1, 2, 3, 4, 5, 6, 7],
            &[5],
            &[6, 0],
            &[7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 80, 0],
            &[8, 0, 0, 0, 0, 0, 0, 0, 0],
            &[9, 0, 0, 0],
        ];
        for case in cases {
            assert!(
                matches!(Frame::decode(case), Err(FrameError::Truncated { .. })),
                "{case:?} should be truncated"
            );
        }
    }

    #[test]
    fn truncated_error_counts_the_whole_message() {
        assert_eq!(
            Frame::decode(&[3, 0, 80]),
            Err(FrameError::Truncated {
                kind: "resize",
                needed: 5,
                got: 3
            })
        );
    }

    #[test]
    fn bytes_after_a_fixed_header_are_refused() {
        assert_eq!(
            Frame::decode(&[3, 0, 80, 0, 24, 9]),
            Err(FrameError::TrailingBytes {
                kind: "resize",
                extra: 1
            })
        );
    }

    #[test]
    fn oversize_message_is_too_large() {
        let mut message = vec![0u8; MAX_MESSAGE + 1];
        message[0] = 1;
        assert_eq!(
            Frame::decode(&message),
            Err(FrameError::TooLarge(MAX_MESSAGE + 1))
        );
        message.pop();
        assert!(Frame::decode(&message).is_ok());
    }

    #[test]
    fn error_text_must_be_utf8() {
        assert_eq!(
            Frame::decode(&[0x0a, 0xff, 0xfe]),
            Err(FrameError::InvalidText)
        );
    }

    #[test]
    fn only_oversize_closes_with_message_too_big() {
        assert_eq!(
            FrameError::TooLarge(MAX_MESSAGE + 1).close_code(),
            close_code::MESSAGE_TOO_BIG
        );
        assert_eq!(
            FrameError::UnknownType(0).close_code(),
            close_code::PROTOCOL_ERROR
        );
        assert_eq!(FrameError::Empty.close_code(), close_code::PROTOCOL_ERROR);
    }

    #[test]
    fn dimensions_are_clamped_to_sane_sizes() {
        assert_eq!(clamp_dimension(0), 1);
        assert_eq!(clamp_dimension(1), 1);
        assert_eq!(clamp_dimension(80), 80);
        assert_eq!(clamp_dimension(1000), 1000);
        assert_eq!(clamp_dimension(u16::MAX), 1000);
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(message in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Frame::decode(&message);
        }

        #[test]
        fn decoded_frames_encode_back_to_the_same_bytes(
            kind in 1u8..=11,
            body in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut message = vec![kind];
            message.extend_from_slice(&body);
            if let Ok(frame) = Frame::decode(&message) {
                prop_assert_eq!(frame.encode(), message);
            }
        }
    }
}
