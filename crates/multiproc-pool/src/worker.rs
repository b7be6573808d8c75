//! The worker's side: a process that runs tasks from its pipe until told
//! to stop.

use std::panic::AssertUnwindSafe;

use multiproc_channel::Connection;
use multiproc_process::{Error, TaskFn, codec, handoff};
use serde::{Deserialize, Serialize};

use crate::message::{
    Message, REPLY_DONE, REPLY_PANICKED, REPLY_RAISED, REPLY_UNDECODABLE, REPLY_UNENCODABLE,
    reply_text,
};

/// The largest buffer kept from one task to the next; a larger one is
/// freed after its task, so one huge chunk does not hold memory for good.
const KEEP_MAX: usize = 16 << 20;

/// `buf` emptied for the next task, or a new one if `buf` is too large to
/// keep.
pub(crate) fn recycle(mut buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() > KEEP_MAX {
        return Vec::new();
    }
    buf.clear();
    buf
}

/// What a worker starts with.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkerStart {
    pub(crate) conn: Connection,
    pub(crate) initializer: Option<(TaskFn, serde_bytes::ByteBuf)>,
}

/// Runs one task: decodes its input with the descriptors that came with
/// it, calls the function, encodes the result with the descriptors its
/// handles hold.
pub(crate) fn run(msg: &[u8], fds: Vec<std::os::fd::OwnedFd>, out: Vec<u8>) -> Message {
    let (func, input) = match codec::decode_prefix::<TaskFn>(msg) {
        Ok(parts) => parts,
        Err(e) => {
            return reply_text(
                REPLY_UNDECODABLE,
                &format!("a task that does not decode: {e}"),
            );
        }
    };
    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
        handoff::collect_fds(|| handoff::provide_fds(fds, || func.call_into(input, out)))
    }));
    match ran {
        Ok(Ok((bytes, fds))) => Message { bytes, fds },
        Ok(Err(Error::TaskFailed { message })) => reply_text(REPLY_RAISED, &message),
        // The reason alone: the handler makes it an error of its kind again.
        Ok(Err(Error::Decode(why))) => reply_text(REPLY_UNDECODABLE, &why),
        Ok(Err(Error::Encode(why))) => reply_text(REPLY_UNENCODABLE, &why),
        Ok(Err(why)) => reply_text(REPLY_UNDECODABLE, &why.to_string()),
        Err(panic) => reply_text(REPLY_PANICKED, &multiproc_process::panic_message(&*panic)),
    }
}

/// A worker process's target: runs tasks until its pipe closes.
pub(crate) fn worker_main(start: WorkerStart) {
    if let Some((init, args)) = start.initializer
        && let Err(why) = init.call(args.as_ref())
    {
        eprintln!("pool worker initializer failed: {why}");
        return;
    }
    // Both buffers are kept from task to task: a chunk after the first
    // touches no fresh memory.
    let mut msg = Vec::new();
    let mut done = Vec::new();
    while let Ok(fds) = start.conn.recv_bytes_into_vec_with_fds(&mut msg) {
        if msg.is_empty() {
            // Asked to stop. The end of the pipe alone is not enough: under
            // fork, this process (and any sibling forked after it) holds a
            // copy of the pool's end.
            return;
        }
        done = recycle(done);
        done.push(REPLY_DONE);
        let reply = run(&msg, fds, std::mem::take(&mut done));
        let sent = start.conn.send_bytes_with_fds(&reply.bytes, reply.fds);
        if reply.bytes.first() == Some(&REPLY_DONE) {
            done = reply.bytes;
        }
        if sent.is_err() {
            return;
        }
        msg = recycle(msg);
    }
}
