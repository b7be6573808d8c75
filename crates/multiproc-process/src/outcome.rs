//! What a child reports to its parent about its target: the encoded return
//! value, a panic message, or a failure to decode its arguments.
//!
//! The child writes one or more frames `[tag: u8][len: u32 LE][payload]` to
//! its outcome pipe before it exits; the last complete frame wins. (A target
//! that catches a panic of its own reports the panic from the panic hook
//! first and its return value after it.)

/// The outcome of a child's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The target returned; the postcard bytes of its value.
    Returned(Vec<u8>),
    /// The target panicked with this message.
    Panicked(String),
    /// The child could not run the target (bad arguments, an unencodable
    /// result).
    Failed(String),
}

const RETURNED: u8 = 0;
const PANICKED: u8 = 1;
const FAILED: u8 = 2;

impl Outcome {
    /// Encodes this outcome as one frame.
    pub(crate) fn to_frame(&self) -> Vec<u8> {
        let (tag, payload): (u8, &[u8]) = match self {
            Outcome::Returned(b) => (RETURNED, b),
            Outcome::Panicked(m) => (PANICKED, m.as_bytes()),
            Outcome::Failed(m) => (FAILED, m.as_bytes()),
        };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let payload = &payload[..len as usize];
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(tag);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The last complete, well-formed frame in `bytes`.
    pub(crate) fn parse_last(mut bytes: &[u8]) -> Option<Outcome> {
        let mut last = None;
        while bytes.len() >= 5 {
            let tag = bytes[0];
            let len = u32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
            let Some(payload) = bytes.get(5..5 + len) else {
                break;
            };
            let text = || String::from_utf8_lossy(payload).into_owned();
            last = match tag {
                RETURNED => Some(Outcome::Returned(payload.to_vec())),
                PANICKED => Some(Outcome::Panicked(text())),
                FAILED => Some(Outcome::Failed(text())),
                _ => break,
            };
            bytes = &bytes[5 + len..];
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_complete_frame_wins() {
        let mut bytes = Outcome::Panicked("caught".into()).to_frame();
        bytes.extend(Outcome::Returned(vec![1, 2, 3]).to_frame());
        assert_eq!(
            Outcome::parse_last(&bytes),
            Some(Outcome::Returned(vec![1, 2, 3]))
        );
        // A truncated trailing frame is ignored, not misread.
        let mut cut = Outcome::Failed("x".into()).to_frame();
        cut.extend(&Outcome::Returned(vec![9; 10]).to_frame()[..8]);
        assert_eq!(Outcome::parse_last(&cut), Some(Outcome::Failed("x".into())));
        assert_eq!(Outcome::parse_last(&[]), None);
        assert_eq!(Outcome::parse_last(&[7, 0, 0, 0, 0]), None);
    }
}
