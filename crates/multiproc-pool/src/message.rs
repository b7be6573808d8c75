//! What crosses the pipe between a handler thread and its worker.
//!
//! A task is one message: the encoded [`TaskFn`], then its input encoded
//! after it in the same buffer (no envelope to copy it into), with the
//! descriptors the input's handles hold (a `RawArray`, a `Segment`, a
//! proxy's door) sent alongside. A reply is a tag byte, then the result's
//! bytes (with its descriptors) or the failure's text.
//!
//! The users' `Serialize` and `Deserialize` run here, in the pool's own
//! threads; a panic in one is an error of the call ([`guarded`]), never a
//! lost thread.

use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;

use multiproc_process::{Error, Result, TaskFn, codec, handoff};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The task ran; the result follows.
pub(crate) const REPLY_DONE: u8 = 0;
/// The input did not decode; a reason follows.
pub(crate) const REPLY_UNDECODABLE: u8 = 1;
/// The task panicked; its message follows.
pub(crate) const REPLY_PANICKED: u8 = 2;
/// The task returned an error; its message follows.
pub(crate) const REPLY_RAISED: u8 = 3;
/// The result did not encode; a reason follows.
pub(crate) const REPLY_UNENCODABLE: u8 = 4;

/// Bytes and the descriptors that travel with them: a task, or a reply.
#[derive(Debug, Default)]
pub(crate) struct Message {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Message {
    /// A reply's result bytes (after its tag).
    pub(crate) fn payload(&self) -> &[u8] {
        self.bytes.get(1..).unwrap_or_default()
    }

    /// A reply's failure text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.payload()).into_owned()
    }

    /// Decodes a reply's result (in the fixed-width encoding), giving its
    /// handles duplicates of the descriptors that came with it, so that a
    /// result can be read more than once.
    pub(crate) fn decode<T: DeserializeOwned>(&self) -> Result<T> {
        guarded(Error::Decode, "decoding the result", || {
            if self.fds.is_empty() {
                return codec::bulk::decode(self.payload());
            }
            let fds = self
                .fds
                .iter()
                .map(|fd| fd.try_clone())
                .collect::<std::io::Result<Vec<_>>>()?;
            handoff::provide_fds(fds, || codec::bulk::decode(self.payload()))
        })
    }
}

/// A task message: `func`'s header, then `input` (in the fixed-width
/// encoding: a chunk of numbers costs a copy, not a varint loop), and the
/// descriptors the input's handles hold.
pub(crate) fn task_message<T: Serialize + ?Sized>(func: TaskFn, input: &T) -> Result<Message> {
    task_message_into(func, input, Vec::new())
}

/// As [`task_message`], in `buf` (emptied first), reusing its allocation.
pub(crate) fn task_message_into<T: Serialize + ?Sized>(
    func: TaskFn,
    input: &T,
    mut buf: Vec<u8>,
) -> Result<Message> {
    buf.clear();
    guarded(Error::Encode, "encoding the task's arguments", || {
        let (bytes, fds) = handoff::collect_fds(|| {
            codec::bulk::encode_into(input, codec::encode_into(&func, buf)?)
        })?;
        Ok(Message { bytes, fds })
    })
}

/// A failure reply: `tag`, then `text`.
pub(crate) fn reply_text(tag: u8, text: &str) -> Message {
    let mut bytes = Vec::with_capacity(1 + text.len());
    bytes.push(tag);
    bytes.extend_from_slice(text.as_bytes());
    Message {
        bytes,
        fds: Vec::new(),
    }
}

/// Runs `f`, a user's `Serialize` or `Deserialize` at work: a panic in it
/// becomes the error `kind` makes of "`what` panicked: message", so that it
/// fails the call instead of the thread that ran it.
pub(crate) fn guarded<T>(
    kind: fn(String) -> Error,
    what: &str,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        Err(kind(format!(
            "{what} panicked: {}",
            multiproc_process::panic_message(&*panic)
        )))
    })
}
