//! What a child reports to its parent on its channel: the encoded return
//! value, a panic message, the error its target returned, or a failure to
//! decode its arguments; and, for a
//! child of the fork server, the exit status the server reaped.
//!
//! Frames are `[tag: u8][len: u32 LE][payload]`. The child writes its
//! outcome before it exits; the fork server writes the exit status after it
//! reaped the child, so it always comes last. Of several outcome frames the
//! last wins (a target that catches a panic of its own reports the panic
//! from the panic hook first and its return value after it).

use crate::sys::ExitStatus;

/// The outcome of a child's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The target returned; the postcard bytes of its value.
    Returned(Vec<u8>),
    /// The target panicked with this message.
    Panicked(String),
    /// The target returned an error; its message.
    Errored(String),
    /// The child could not run the target (bad arguments, an unencodable
    /// result).
    Failed(String),
}

/// One frame on a child's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// The target's outcome, from the child.
    Outcome(Outcome),
    /// The child's exit status, from the fork server.
    Exit(ExitStatus),
}

const RETURNED: u8 = 0;
const PANICKED: u8 = 1;
const FAILED: u8 = 2;
const EXIT_CODE: u8 = 3;
const EXIT_SIGNAL: u8 = 4;
const ERRORED: u8 = 5;

impl Frame {
    /// Encodes this frame.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let exit;
        let (tag, payload): (u8, &[u8]) = match self {
            Frame::Outcome(Outcome::Returned(b)) => (RETURNED, b),
            Frame::Outcome(Outcome::Panicked(m)) => (PANICKED, m.as_bytes()),
            Frame::Outcome(Outcome::Failed(m)) => (FAILED, m.as_bytes()),
            Frame::Outcome(Outcome::Errored(m)) => (ERRORED, m.as_bytes()),
            Frame::Exit(ExitStatus::Code(c)) => {
                exit = c.to_le_bytes();
                (EXIT_CODE, &exit)
            }
            Frame::Exit(ExitStatus::Signal(s)) => {
                exit = s.to_le_bytes();
                (EXIT_SIGNAL, &exit)
            }
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let payload = &payload[..len as usize];
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(tag);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }
}

impl From<Outcome> for Frame {
    fn from(o: Outcome) -> Frame {
        Frame::Outcome(o)
    }
}

/// Splits a byte stream into frames as it arrives.
#[derive(Debug, Default)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    corrupt: bool,
}

impl FrameReader {
    /// Appends bytes read from the channel.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if !self.corrupt {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// The next complete frame, if one has arrived. A frame with an unknown
    /// tag ends the stream: nothing after it is trusted.
    pub(crate) fn next_frame(&mut self) -> Option<Frame> {
        if self.corrupt || self.buf.len() < 5 {
            return None;
        }
        let tag = self.buf[0];
        let len = u32::from_le_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        let payload = self.buf.get(5..5 + len)?;
        let text = || String::from_utf8_lossy(payload).into_owned();
        let int = || <[u8; 4]>::try_from(payload).ok().map(i32::from_le_bytes);
        let frame = match tag {
            RETURNED => Some(Frame::Outcome(Outcome::Returned(payload.to_vec()))),
            PANICKED => Some(Frame::Outcome(Outcome::Panicked(text()))),
            FAILED => Some(Frame::Outcome(Outcome::Failed(text()))),
            ERRORED => Some(Frame::Outcome(Outcome::Errored(text()))),
            EXIT_CODE => int().map(|c| Frame::Exit(ExitStatus::Code(c))),
            EXIT_SIGNAL => int().map(|s| Frame::Exit(ExitStatus::Signal(s))),
            _ => None,
        };
        match frame {
            Some(f) => {
                self.buf.drain(..5 + len);
                Some(f)
            }
            None => {
                self.corrupt = true;
                self.buf = Vec::new();
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(bytes: &[u8]) -> Vec<Frame> {
        let mut r = FrameReader::default();
        let mut out = Vec::new();
        // Fed one byte at a time: frames come out whole all the same.
        for b in bytes {
            r.extend(&[*b]);
            while let Some(f) = r.next_frame() {
                out.push(f);
            }
        }
        out
    }

    #[test]
    fn frames_come_out_whole_and_in_order() {
        let frames = vec![
            Frame::from(Outcome::Panicked("caught".into())),
            Frame::from(Outcome::Returned(vec![1, 2, 3])),
            Frame::from(Outcome::Errored("no such file".into())),
            Frame::Exit(ExitStatus::Signal(9)),
        ];
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::to_bytes).collect();
        assert_eq!(all(&bytes), frames);
    }

    #[test]
    fn a_truncated_frame_waits_and_a_corrupt_one_ends_the_stream() {
        let mut cut = Frame::from(Outcome::Failed("x".into())).to_bytes();
        cut.extend(&Frame::from(Outcome::Returned(vec![9; 10])).to_bytes()[..8]);
        assert_eq!(all(&cut), vec![Frame::from(Outcome::Failed("x".into()))]);
        let mut bad = vec![7, 0, 0, 0, 0];
        bad.extend(Frame::Exit(ExitStatus::Code(0)).to_bytes());
        assert_eq!(all(&bad), vec![]);
        // An exit frame with a short payload is corrupt too.
        assert_eq!(all(&[3, 1, 0, 0, 0, 0]), vec![]);
    }
}
