//! What the helper and the agent say over a workspace's credential socket: one JSON
//! line each way.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Longest line either side accepts; real ones are well under a kilobyte.
pub const MAX_LINE: usize = 8 * 1024;

/// The helper's question: credentials for this workspace, for a URL of this scheme and
/// host (with its port, as git spells it).
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ask {
    pub workspace: String,
    pub protocol: String,
    pub host: String,
}

/// The agent's answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Reply {
    /// What git sends as Basic credentials.
    Granted { username: String, password: String },
    /// Why there are none, for the person at the terminal.
    Refused { reason: String },
}

/// How much of a stream to read for one line: a line longer than [`MAX_LINE`] shows as
/// one byte more, which [`decode_line`] refuses.
pub const READ_LIMIT: u64 = MAX_LINE as u64 + 1;

/// `value` as one JSON line, newline included.
pub fn encode_line(value: &impl Serialize) -> anyhow::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).context("cannot encode a credential message")?;
    line.push(b'\n');
    Ok(line)
}

/// The message in one line read with at most [`READ_LIMIT`] bytes; a longer line is
/// refused.
pub fn decode_line<T: DeserializeOwned>(line: &[u8]) -> anyhow::Result<T> {
    if line.len() > MAX_LINE {
        bail!("credential message longer than {MAX_LINE} bytes");
    }
    serde_json::from_slice(line).context("malformed credential message")
}

/// Writes `value` as one JSON line.
pub fn write_line(out: &mut impl Write, value: &impl Serialize) -> anyhow::Result<()> {
    let line = encode_line(value)?;
    out.write_all(&line)
        .and_then(|()| out.flush())
        .context("cannot send a credential message")
}

/// Reads one JSON line; `None` when the other side closed without a line.
pub fn read_line<T: DeserializeOwned>(input: impl BufRead) -> anyhow::Result<Option<T>> {
    let mut line = Vec::new();
    let read = input
        .take(READ_LIMIT)
        .read_until(b'\n', &mut line)
        .context("cannot read a credential message")?;
    if read == 0 {
        return Ok(None);
    }
    decode_line(&line).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_single_lines() {
        let reply = Reply::Granted {
            username: "x-access-token".into(),
            password: "ghs_1".into(),
        };
        let mut buffer = Vec::new();
        write_line(&mut buffer, &reply).unwrap();
        assert_eq!(buffer.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(buffer.starts_with(br#"{"outcome":"granted""#));
        let back: Reply = read_line(buffer.as_slice()).unwrap().unwrap();
        assert_eq!(back, reply);
    }

    #[test]
    fn an_empty_stream_is_no_message() {
        assert_eq!(read_line::<Ask>(b"".as_slice()).unwrap(), None);
    }

    #[test]
    fn an_overlong_or_malformed_line_is_refused() {
        let long = vec![b'a'; MAX_LINE + 10];
        assert!(read_line::<Ask>(long.as_slice()).is_err());
        assert!(read_line::<Ask>(b"{\"workspace\":1}\n".as_slice()).is_err());
    }

    #[test]
    fn a_well_formed_line_past_the_limit_is_refused() {
        // Well-formed JSON whose padding takes the line past the limit: what is read of
        // it still parses, so only the length check refuses it.
        let mut line = encode_line(&Ask {
            workspace: "w".into(),
            protocol: "https".into(),
            host: "github.com".into(),
        })
        .unwrap();
        line.pop();
        line.resize(MAX_LINE + 10, b' ');
        line.push(b'\n');
        let error = read_line::<Ask>(line.as_slice()).unwrap_err();
        assert!(error.to_string().contains("longer than"), "{error:#}");
        assert!(decode_line::<Ask>(&line[..MAX_LINE]).is_ok());
    }
}
