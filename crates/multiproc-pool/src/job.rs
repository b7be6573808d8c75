//! A job on the pool's queue: one piece of one call, as the calls make it
//! and the handler threads run it.

use std::sync::Arc;

use multiproc_process::Result;
use serde::de::DeserializeOwned;

use crate::group::{Decoded, Group};
use crate::message::Message;

/// A job's input: encoded already, or encoded by the handler thread that
/// runs it, so that the chunks of a map are encoded in parallel.
pub(crate) enum Input {
    Bytes(Message),
    /// Encodes the message into the (empty) buffer it is given.
    Lazy(Box<dyn FnOnce(Vec<u8>) -> Result<Message> + Send>),
}

/// Decodes a reply on the handler thread (a chunk's `Vec<R>`).
pub(crate) type Decoder = fn(&Message) -> Option<Decoded>;

/// A job on the pool's queue: one piece of one call.
pub(crate) struct Job {
    /// The task message (see [`task_message`](crate::message::task_message)).
    pub(crate) input: Input,
    pub(crate) decode: Option<Decoder>,
    pub(crate) group: Arc<Group>,
    pub(crate) index: usize,
}

/// Decodes a chunk's results into a boxed `Vec<R>` (or leaves it to the
/// caller, who then reports why it does not decode).
pub(crate) fn decode_chunk<R: DeserializeOwned + Send + 'static>(
    reply: &Message,
) -> Option<Decoded> {
    reply
        .decode::<Vec<R>>()
        .ok()
        .map(|v| Box::new(v) as Decoded)
}
