//! The client side: this process's connections to a manager, and the
//! reference a proxy holds.
//!
//! A process has one [`ClientConn`] per manager it talks to: a session of
//! the server, with a pool of connections so that a thread blocked in a
//! call (a queue's get) never holds up another thread's call. A local
//! connection is a [`Pipe`] whose far end was sent to the server through
//! the manager's door (a socket whose descriptor only the manager's
//! processes hold); a remote one is a [`SocketConnection`] that passed the
//! key handshake.
//!
//! Encoding a proxy writes a token: `Same(id)` inside a value stored into
//! its own manager (the server counts it as a holder), otherwise the way to
//! reach the manager (the door's descriptor, or address and key) and the id.
//! Decoding a token from anywhere but a reply counts this process's session
//! as a holder before the proxy is returned.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};

use multiproc_channel::Pipe;
use multiproc_process::{Error, Result, codec, fdio, handoff};
use parking_lot::Mutex;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::Address;
use crate::chan::Chan;
use crate::socket::SocketConnection;
use crate::wire::{ObjectId, Reply, Request, Stored, WireResult};

/// The ring of each direction of a local manager connection.
const RING_BYTES: usize = 256 << 10;

/// How a process reaches a manager.
#[derive(Clone)]
pub(crate) enum Route {
    Local(Arc<OwnedFd>),
    Remote {
        address: Address,
        authkey: Arc<[u8]>,
    },
}

/// This process's session with one manager.
pub(crate) struct ClientConn {
    pub(crate) uid: u64,
    pub(crate) route: Route,
    session: u64,
    pid: u32,
    idle: Mutex<Vec<Chan>>,
}

/// The sessions of this process (and, after a fork, stale ones of the
/// parent, told apart by pid).
static CONNS: Mutex<Vec<Weak<ClientConn>>> = Mutex::new(Vec::new());

fn random_u64() -> Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| Error::Io(std::io::Error::other(e.to_string())))?;
    Ok(u64::from_le_bytes(b))
}

pub(crate) fn new_uid() -> Result<u64> {
    random_u64()
}

impl ClientConn {
    /// This process's session with manager `uid`, opened through `route`
    /// if there is none yet.
    pub(crate) fn get(uid: u64, route: Route) -> Result<Arc<ClientConn>> {
        let pid = std::process::id();
        let mut conns = CONNS.lock();
        conns.retain(|w| w.strong_count() > 0);
        if let Some(c) = conns
            .iter()
            .filter_map(Weak::upgrade)
            .find(|c| c.uid == uid && c.pid == pid)
        {
            return Ok(c);
        }
        let conn = Arc::new(ClientConn {
            uid,
            route,
            session: random_u64()?,
            pid,
            idle: Mutex::new(Vec::new()),
        });
        // Open one connection now: a dead manager shows here, not later.
        let chan = conn.open()?;
        conn.idle.lock().push(chan);
        conns.push(Arc::downgrade(&conn));
        Ok(conn)
    }

    /// Connects to a served manager: the server tells its uid.
    pub(crate) fn connect_remote(address: &Address, authkey: &[u8]) -> Result<Arc<ClientConn>> {
        let sock = SocketConnection::connect(address, authkey)?;
        let session = random_u64()?;
        let chan = Chan::Remote(sock);
        let uid = hello(&chan, session)?;
        let route = Route::Remote {
            address: address.clone(),
            authkey: authkey.into(),
        };
        let conn = Arc::new(ClientConn {
            uid,
            route,
            session,
            pid: std::process::id(),
            idle: Mutex::new(vec![chan]),
        });
        CONNS.lock().push(Arc::downgrade(&conn));
        Ok(conn)
    }

    fn open(&self) -> Result<Chan> {
        let chan = match &self.route {
            Route::Local(door) => {
                let (mine, theirs) = Pipe::with_capacity(RING_BYTES)?;
                let (bytes, fds) = handoff::encode_with_fds(&theirs)?;
                drop(theirs);
                fdio::send_with_fds(door.as_fd(), &bytes, &fds).map_err(|e| {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        Error::Closed
                    } else {
                        Error::Io(e)
                    }
                })?;
                Chan::Local(mine)
            }
            Route::Remote { address, authkey } => {
                Chan::Remote(SocketConnection::connect(address, authkey)?)
            }
        };
        hello(&chan, self.session)?;
        Ok(chan)
    }

    fn check_pid(&self) -> Result<()> {
        if self.pid != std::process::id() {
            return Err(Error::InvalidArgument(
                "this proxy was copied by fork without being passed to the process; pass it as \
                 an argument"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Sends a request and waits for the reply.
    pub(crate) fn call(&self, request: &Request) -> Result<Reply> {
        self.check_pid()?;
        let bytes = codec::encode(request)?;
        let idle = self.idle.lock().pop();
        let chan = match idle {
            Some(chan) => chan,
            None => self.open()?,
        };
        // On failure the connection is dropped rather than pooled: it may
        // hold half an exchange.
        let reply = chan.call(&bytes)?;
        self.idle.lock().push(chan);
        codec::decode::<WireResult>(&reply)?.map_err(Error::from)
    }

    /// Sends a request that has no reply; failures are ignored (the
    /// manager is gone, and with it what the request was about).
    fn tell(&self, request: &Request) {
        if self.pid != std::process::id() {
            return;
        }
        let Ok(bytes) = codec::encode(request) else {
            return;
        };
        let idle = self.idle.lock().pop();
        if let Some(chan) = idle
            && chan.send(&bytes).is_ok()
        {
            self.idle.lock().push(chan);
        }
    }
}

fn hello(chan: &Chan, session: u64) -> Result<u64> {
    let reply = chan.call(&codec::encode(&Request::Hello { session })?)?;
    match codec::decode::<WireResult>(&reply)?.map_err(Error::from)? {
        Reply::Len(uid) => Ok(uid),
        other => Err(Error::Decode(format!(
            "unexpected reply to hello: {other:?}"
        ))),
    }
}

/// One hold on a managed object, by this process's session. Dropping it
/// gives the hold back.
pub(crate) struct ProxyRef {
    pub(crate) id: ObjectId,
    pub(crate) conn: Arc<ClientConn>,
}

impl ProxyRef {
    pub(crate) fn call(&self, op: crate::wire::Op) -> Result<Reply> {
        self.conn.call(&Request::Call(self.id, op))
    }
}

impl Drop for ProxyRef {
    fn drop(&mut self) {
        self.conn.tell(&Request::Decref(self.id));
    }
}

impl fmt::Debug for ProxyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object {} of manager {:016x}", self.id, self.conn.uid)
    }
}

thread_local! {
    /// While a value for manager `uid` is encoded: the ids of its proxies.
    static STORING: RefCell<Option<(u64, Vec<ObjectId>)>> = const { RefCell::new(None) };
    /// While a reply of this session is decoded: proxies named `Same` are
    /// already counted for it.
    static READING: RefCell<Option<Arc<ClientConn>>> = const { RefCell::new(None) };
}

/// Encodes a value to store into manager `uid`.
pub(crate) fn store<T: Serialize + ?Sized>(uid: u64, value: &T) -> Result<Stored> {
    let outer = STORING.with(|s| s.borrow_mut().replace((uid, Vec::new())));
    let bytes = codec::encode(value);
    let refs = STORING.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    Ok(Stored {
        bytes: bytes?,
        refs: refs.map(|(_, r)| r).unwrap_or_default(),
    })
}

/// Encodes a key: proxies in keys do not keep their objects alive.
pub(crate) fn key<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    codec::encode(value)
}

/// Decodes a value that came from `conn`'s manager.
pub(crate) fn load<T: serde::de::DeserializeOwned>(
    conn: &Arc<ClientConn>,
    bytes: &[u8],
) -> Result<T> {
    let outer = READING.with(|r| r.borrow_mut().replace(conn.clone()));
    let value = codec::decode(bytes);
    READING.with(|r| *r.borrow_mut() = outer);
    value
}

/// A proxy on the wire (owned form, for decoding).
#[derive(Deserialize)]
enum Token {
    Same(ObjectId),
    Local {
        uid: u64,
        id: ObjectId,
        ticket: u64,
        #[serde(with = "multiproc_process::handoff::fd")]
        door: OwnedFd,
    },
    Remote {
        uid: u64,
        id: ObjectId,
        ticket: u64,
        address: Address,
        authkey: Vec<u8>,
    },
}

/// A proxy on the wire (borrowed form, for encoding; same layout).
#[derive(Serialize)]
enum TokenRef<'a> {
    Same(ObjectId),
    Local {
        uid: u64,
        id: ObjectId,
        ticket: u64,
        #[serde(serialize_with = "multiproc_process::handoff::fd::serialize")]
        door: &'a OwnedFd,
    },
    Remote {
        uid: u64,
        id: ObjectId,
        ticket: u64,
        address: &'a Address,
        authkey: &'a [u8],
    },
}

impl Serialize for ProxyRef {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let same = STORING.with(|st| match &mut *st.borrow_mut() {
            Some((uid, refs)) if *uid == self.conn.uid => {
                refs.push(self.id);
                true
            }
            _ => false,
        });
        if same {
            return TokenRef::Same(self.id).serialize(s);
        }
        // The object is held for the receiver until it claims the hold, so
        // that dropping this proxy right after sending cannot free it.
        let ticket = match self.conn.call(&Request::Lend(self.id)) {
            Ok(Reply::Len(ticket)) => ticket,
            Ok(other) => {
                return Err(S::Error::custom(codec::custom_error(format!(
                    "unexpected reply: {other:?}"
                ))));
            }
            Err(e) => {
                return Err(S::Error::custom(codec::custom_error(format!(
                    "manager object {}: {e}",
                    self.id
                ))));
            }
        };
        match &self.conn.route {
            Route::Local(door) => TokenRef::Local {
                uid: self.conn.uid,
                id: self.id,
                ticket,
                door,
            },
            Route::Remote { address, authkey } => TokenRef::Remote {
                uid: self.conn.uid,
                id: self.id,
                ticket,
                address,
                authkey,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProxyRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ProxyRef, D::Error> {
        let (uid, id, ticket, route) = match Token::deserialize(d)? {
            Token::Same(id) => {
                let conn = READING.with(|r| r.borrow().clone()).ok_or_else(|| {
                    D::Error::custom(codec::custom_error(
                        "a managed value's proxy decoded outside its manager".into(),
                    ))
                })?;
                return Ok(ProxyRef { id, conn });
            }
            Token::Local {
                uid,
                id,
                ticket,
                door,
            } => (uid, id, ticket, Route::Local(Arc::new(door))),
            Token::Remote {
                uid,
                id,
                ticket,
                address,
                authkey,
            } => (
                uid,
                id,
                ticket,
                Route::Remote {
                    address,
                    authkey: authkey.into(),
                },
            ),
        };
        let conn = ClientConn::get(uid, route).map_err(|e| {
            D::Error::custom(codec::custom_error(format!(
                "cannot reach the manager: {e}"
            )))
        })?;
        conn.call(&Request::Claim { ticket, id }).map_err(|e| {
            D::Error::custom(codec::custom_error(format!("manager object {id}: {e}")))
        })?;
        Ok(ProxyRef { id, conn })
    }
}
