//! Managers for multiproc: a server process that owns shared objects
//! (lists, dicts, namespaces, values, queues, locks, ...), typed proxies to
//! them that any process can be handed, user types served by the manager,
//! and access from other programs over TCP or a Unix socket with a shared
//! key. Python: `multiprocessing.managers` and `multiprocessing.connection`.
//!
//! A process in the manager's own program talks to the server over a
//! shared-memory [`Pipe`](multiproc_channel::Pipe) whose far end was sent
//! through the manager's door (a socket only the program's processes hold),
//! so a request costs about a microsecond, not a kernel wake-up. Another
//! program connects with [`Manager::connect`] and talks over the socket
//! after an HMAC-SHA256 handshake in both directions.
//!
//! ```
//! use multiproc as mp;
//!
//! fn count_words(text: String, counts: mp::DictProxy<String, u32>) {
//!     for word in text.split_whitespace() {
//!         let n = counts.get(word).expect("manager gone").unwrap_or(0);
//!         counts.insert(word.to_string(), n + 1).expect("manager gone");
//!     }
//! }
//!
//! # fn main() -> mp::Result<()> {
//! let manager = mp::Manager::start()?;
//! let counts = manager.dict()?;
//! let mut p = mp::Process::new(count_words, ("a b a".to_string(), counts.clone()));
//! p.start()?;
//! p.join()?;
//! assert_eq!(counts.get("a")?, Some(2));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod address;
mod chan;
mod client;
mod manager;
mod pickle;
mod proxy;
pub mod python;
mod served;
mod server;
mod slice;
mod socket;
mod wire;

pub use address::Address;
pub use manager::{Manager, ManagerBuilder};
pub use multiproc_process::{Error, Result};
pub use proxy::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, Managed, ManagedConditionGuard, ManagedGuard,
    Namespace, Proxy, QueueProxy, RLockProxy, SemaphoreProxy, ValueProxy,
};
pub use served::Served;
pub use socket::{
    Client, ClientOptions, DEFAULT_MAX_SOCKET_MESSAGE, Listener, ListenerOptions, SocketConnection,
};
pub use wire::Kind;
