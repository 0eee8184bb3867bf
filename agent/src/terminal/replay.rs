//! The most recent output of a session, addressed by offsets in its whole output,
//! so a browser that reconnects gets exactly the bytes it missed.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// How much recent output each session keeps for reconnects.
pub const REPLAY_CAPACITY: usize = 2 * 1024 * 1024;

/// A bounded window onto a session's output stream: everything from `start()` up
/// to `end()`, where `end()` counts every byte the shell ever wrote.
#[derive(Debug)]
pub struct Replay {
    bytes: VecDeque<u8>,
    capacity: usize,
    end: u64,
}

/// Where a reader resumes after asking for output from some offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The offset output will follow from.
    pub from: u64,
    /// Bytes between the requested offset and `from` that are no longer kept.
    pub lost: u64,
}

impl Replay {
    /// An empty window keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Replay {
            bytes: VecDeque::with_capacity(capacity.min(64 * 1024)),
            capacity,
            end: 0,
        }
    }

    /// The offset just past the newest byte.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// The offset of the oldest byte still kept.
    pub fn start(&self) -> u64 {
        self.end - self.bytes.len() as u64
    }

    /// Adds output, dropping the oldest bytes beyond the capacity.
    pub fn append(&mut self, data: &[u8]) {
        self.end += data.len() as u64;
        let kept = &data[data.len().saturating_sub(self.capacity)..];
        let overflow = (self.bytes.len() + kept.len()).saturating_sub(self.capacity);
        self.bytes.drain(..overflow);
        self.bytes.extend(kept);
    }

    /// Where output resumes for a reader that already holds everything before
    /// `offset`. An offset past the end belongs to some other stream (a session that
    /// ended and was started again), so that reader starts over from 0.
    pub fn resume(&self, offset: u64) -> Resume {
        let offset = if offset > self.end { 0 } else { offset };
        let from = offset.max(self.start());
        Resume {
            from,
            lost: from - offset,
        }
    }

    /// Up to `max` kept bytes from `offset` on, with the offset they really start
    /// at (later than `offset` when those bytes were already dropped).
    pub fn read(&self, offset: u64, max: usize) -> (u64, Bytes) {
        let from = offset.clamp(self.start(), self.end);
        let skip = usize::try_from(from - self.start()).unwrap_or(usize::MAX);
        let take = usize::try_from(self.end - from).map_or(max, |left| left.min(max));
        let mut out = BytesMut::with_capacity(take);
        // Walk both halves of the ring as one sequence of bytes.
        let (front, back) = self.bytes.as_slices();
        let mut remaining_skip = skip;
        for part in [front, back] {
            if out.len() == take {
                break;
            }
            if remaining_skip >= part.len() {
                remaining_skip -= part.len();
                continue;
            }
            let part = &part[remaining_skip..];
            remaining_skip = 0;
            let wanted = (take - out.len()).min(part.len());
            out.extend_from_slice(&part[..wanted]);
        }
        (from, out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(capacity: usize, chunks: &[&[u8]]) -> Replay {
        let mut replay = Replay::new(capacity);
        for chunk in chunks {
            replay.append(chunk);
        }
        replay
    }

    #[test]
    fn offsets_count_every_byte_ever_written() {
        let replay = filled(4, &[b"abc", b"defgh"]);
        assert_eq!(replay.end(), 8);
        assert_eq!(replay.start(), 4);
        assert_eq!(replay.read(0, 100), (4, Bytes::from_static(b"efgh")));
    }

    #[test]
    fn read_returns_exactly_the_bytes_after_the_offset() {
        let replay = filled(16, &[b"hello ", b"world"]);
        assert_eq!(replay.read(6, 100), (6, Bytes::from_static(b"world")));
        assert_eq!(replay.read(2, 3), (2, Bytes::from_static(b"llo")));
        assert_eq!(replay.read(11, 100), (11, Bytes::new()));
    }

    #[test]
    fn read_spans_the_wrap_of_the_ring() {
        let mut replay = filled(8, &[b"12345678"]);
        replay.append(b"9ab");
        assert_eq!(replay.read(3, 100), (3, Bytes::from_static(b"456789ab")));
        assert_eq!(replay.read(7, 3), (7, Bytes::from_static(b"89a")));
    }

    #[test]
    fn chunk_larger_than_capacity_keeps_its_tail() {
        let replay = filled(3, &[b"ab", b"cdefg"]);
        assert_eq!(replay.start(), 4);
        assert_eq!(replay.read(0, 100), (4, Bytes::from_static(b"efg")));
    }

    #[test]
    fn resume_within_the_window_loses_nothing() {
        let replay = filled(16, &[b"0123456789"]);
        assert_eq!(replay.resume(4), Resume { from: 4, lost: 0 });
        assert_eq!(replay.resume(10), Resume { from: 10, lost: 0 });
    }

    #[test]
    fn resume_before_the_window_reports_lost_bytes() {
        let replay = filled(4, &[b"0123456789"]);
        assert_eq!(replay.resume(2), Resume { from: 6, lost: 4 });
    }

    #[test]
    fn resume_past_the_end_starts_over() {
        let replay = filled(4, &[b"0123456789"]);
        assert_eq!(replay.resume(11), Resume { from: 6, lost: 6 });
        let fresh = filled(16, &[b"abc"]);
        assert_eq!(fresh.resume(50), Resume { from: 0, lost: 0 });
    }
}
