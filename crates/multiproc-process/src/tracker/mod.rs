//! The resource tracker: named shared memory whose creator dies by a signal
//! is unlinked all the same, as CPython's `resource_tracker` does.
//!
//! The program's fork server is the tracker: it outlives every process of
//! the program by a moment, and it learns the program's end from its
//! control socket. It listens on a `SOCK_SEQPACKET` socket in the abstract
//! namespace named after its pid; a process that creates a segment (or
//! takes on an existing one, `SharedMemory::track`) connects once and sends
//! `+name`; unlinking or keeping it sends `-name`. The kernel closes the
//! connection when the process ends, however it ends, after the messages it
//! sent, so the server reads them in order and then unlinks what is left
//! of that process's names: within moments of a SIGKILL. When the program
//! itself ends (the control socket closes), every name still registered by
//! any process is unlinked before the server exits.
//!
//! A name is unlinked only if it still names the segment that was
//! registered (the same inode): a name unlinked and made again since by
//! another process is left alone. The server accepts connections only from
//! its own user, and a client talks only to a socket held by the pid it
//! expects.
//!
//! Every process knows its program's tracker through its identity (a child
//! inherits its parent's). A process with none starts a fork server of its
//! own when it first creates a segment; if that cannot be done (a setuid
//! program with threads), its segments are unlinked at its normal exit
//! only, as before.

mod client;
mod serve;
mod wire;

pub use client::{track, untrack};
pub(crate) use serve::Tracker;
