//! What a tracker and its clients share: the socket's name, the limits,
//! and how a segment is named on the wire.

use std::io;

use rustix::net::SocketAddrUnix;

pub(super) const PREFIX: &str = "multiproc-tracker-";

/// How long a client waits for a server just started to listen.
pub(super) const BIND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The longest message: an op byte and a name (at most 255 bytes).
pub(super) const MESSAGE_MAX: usize = 512;

pub(super) fn address(server_pid: u32) -> io::Result<SocketAddrUnix> {
    Ok(SocketAddrUnix::new_abstract_name(
        format!("{PREFIX}{server_pid}").as_bytes(),
    )?)
}

/// A segment's identity: the device and inode behind its name.
pub(super) type FileId = (u64, u64);
