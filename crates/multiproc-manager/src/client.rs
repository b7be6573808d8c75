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
//! Encoding a proxy writes a token: `Same(id)` inside a value stored
//! through its own session (the server counts it as a holder), otherwise
//! the way to reach the manager and the id: the door's descriptor, or the
//! address alone. A remote token carries no key: the process that decodes
//! it must have connected to that manager itself (`Manager::connect`, with
//! a key it was given some other way). Decoding a token from anywhere but
//! a reply counts this process's session as a holder before the proxy is
//! returned.

use std::cell::RefCell;
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Weak};
use std::time::Duration;

use multiproc_channel::Pipe;
use multiproc_process::{Error, Result, codec, fdio, handoff};
use parking_lot::Mutex;
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::Address;
use crate::chan::Chan;
use crate::socket::{ClientOptions, SocketConnection};
use crate::wire::{Holder, ObjectId, Op, Reply, Request, Stored, WireResult};

/// The ring of each direction of a local manager connection.
const RING_BYTES: usize = 256 << 10;

/// How a process reaches a manager.
#[derive(Clone)]
pub(crate) enum Route {
    Local(Arc<OwnedFd>),
    Remote {
        address: Address,
        /// Never sent anywhere: it opens this process's connections.
        authkey: Arc<[u8]>,
        options: ClientOptions,
    },
}

/// This process's session with one manager.
pub(crate) struct ClientConn {
    pub(crate) uid: u64,
    pub(crate) route: Route,
    session: u64,
    pid: u32,
    idle: Mutex<Vec<Chan>>,
    /// Holds to give back, kept when no connection was free to say so (a
    /// thread waits in a call on each): sent before the next request.
    decrefs: Mutex<Vec<ObjectId>>,
    /// A remote session's first connection, never used for calls: the
    /// server ends a session with its last connection, and a call's
    /// connection is dropped when the call fails (a reply timeout, a reply
    /// over the limit), which must not free every object the session holds.
    anchor: Option<Chan>,
    /// A local session's anchor, opened by its first async call: a call
    /// whose future is dropped drops its connection.
    async_anchor: std::sync::OnceLock<Chan>,
    /// The manager stores values as pickles (it serves Python programs):
    /// set by the first hello.
    pickle: std::sync::OnceLock<bool>,
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
            decrefs: Mutex::new(Vec::new()),
            anchor: None,
            async_anchor: std::sync::OnceLock::new(),
            pickle: std::sync::OnceLock::new(),
        });
        // Open one connection now: a dead manager shows here, not later.
        let chan = conn.open()?;
        conn.idle.lock().push(chan);
        conns.push(Arc::downgrade(&conn));
        Ok(conn)
    }

    /// This process's session with manager `uid`, if it has one.
    fn find(uid: u64) -> Option<Arc<ClientConn>> {
        let pid = std::process::id();
        CONNS
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|c| c.uid == uid && c.pid == pid)
    }

    /// Connects to a served manager: the server tells its uid.
    pub(crate) fn connect_remote(
        address: &Address,
        authkey: &[u8],
        options: &ClientOptions,
    ) -> Result<Arc<ClientConn>> {
        let sock = remote_socket(address, authkey, options)?;
        let session = random_u64()?;
        let chan = Chan::Remote(sock);
        let (uid, pickle) = hello(&chan, session, options.reply_timeout)?;
        let route = Route::Remote {
            address: address.clone(),
            authkey: authkey.into(),
            options: options.clone(),
        };
        let conn = Arc::new(ClientConn {
            uid,
            route,
            session,
            pid: std::process::id(),
            idle: Mutex::new(Vec::new()),
            decrefs: Mutex::new(Vec::new()),
            anchor: Some(chan),
            async_anchor: std::sync::OnceLock::new(),
            pickle: std::sync::OnceLock::from(pickle),
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
            Route::Remote {
                address,
                authkey,
                options,
            } => Chan::Remote(remote_socket(address, authkey, options)?),
        };
        let (_, pickle) = hello(&chan, self.session, self.reply_timeout())?;
        let _ = self.pickle.set(pickle);
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

    /// How long a remote server may stay silent during a call.
    fn reply_timeout(&self) -> Duration {
        match &self.route {
            Route::Remote { options, .. } => options.reply_timeout,
            Route::Local(_) => Duration::MAX,
        }
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
        self.flush_decrefs(&chan)?;
        // On failure the connection is dropped rather than pooled: it may
        // hold half an exchange.
        let reply = exchange(&chan, &bytes, self.reply_timeout())?;
        self.idle.lock().push(chan);
        reply.map_err(Error::from)
    }

    /// As [`call`](ClientConn::call), waiting for the reply without a
    /// thread. A future dropped after its request went out hands its
    /// connection to a short-lived thread that ends the exchange (see
    /// [`InFlight`]) and gives back what the call took (`undo`). Opening a
    /// connection, when none is free, blocks briefly.
    pub(crate) async fn call_async(
        self: &Arc<Self>,
        request: &Request,
        undo: Undo,
    ) -> Result<Reply> {
        self.check_pid()?;
        let bytes = codec::encode(request)?;
        if self.anchor.is_none() && self.async_anchor.get().is_none() {
            // A connection that fails mid-call is dropped: the session
            // must not end with it. Two calls may open one each: the spare
            // closes, harmlessly.
            let _ = self.async_anchor.set(self.open()?);
        }
        let idle = self.idle.lock().pop();
        let chan = match idle {
            Some(chan) => chan,
            None => self.open()?,
        };
        self.flush_decrefs(&chan)?;
        let mut flight = InFlight {
            conn: self.clone(),
            chan: None,
            undo,
        };
        chan.send_async(&bytes).await?;
        let chan = flight.chan.insert(chan);
        let reply = read_reply_async(chan, self.reply_timeout()).await;
        // Answered (or failed, then dropped with its half exchange): no
        // longer in flight.
        let chan = flight.chan.take();
        let reply = reply?;
        if let Some(chan) = chan {
            self.idle.lock().push(chan);
        }
        reply.map_err(Error::from)
    }

    /// Ends the exchange of an async call whose future was dropped after
    /// its request went out: a second request (`Count`) tells the server
    /// to stop waiting for the first (it sees the client sent more), the
    /// two replies are read, and what the first took is given back. The
    /// connection then goes back to the pool.
    fn finish_dropped_call(&self, chan: Chan, undo: Undo) {
        let silence = self.reply_timeout();
        let Ok(count) = codec::encode(&Request::Count) else {
            return;
        };
        if chan.send(&count).is_err() {
            return;
        }
        let Ok(first) = read_reply(&chan, silence) else {
            return;
        };
        if read_reply(&chan, silence).is_err() {
            return;
        }
        let give_back = match (undo, first) {
            (Undo::Item(id), Ok(Reply::Value(item))) => Some(Request::Call(id, Op::PutFront(item))),
            (Undo::Release(id, who), Ok(_)) => Some(Request::Call(id, Op::Release(who))),
            _ => None,
        };
        if let Some(request) = give_back {
            let Ok(bytes) = codec::encode(&request) else {
                return;
            };
            if chan.send(&bytes).is_err() || read_reply(&chan, silence).is_err() {
                return;
            }
        }
        self.idle.lock().push(chan);
    }

    /// Gives back a hold; failures are ignored (the manager is gone, and
    /// with it what the hold was on). With no connection free, it waits
    /// for the next request.
    fn decref(&self, id: ObjectId) {
        if self.pid != std::process::id() {
            return;
        }
        let idle = self.idle.lock().pop();
        match idle {
            Some(chan) => {
                self.decrefs.lock().push(id);
                if self.flush_decrefs(&chan).is_ok() {
                    self.idle.lock().push(chan);
                }
            }
            None => self.decrefs.lock().push(id),
        }
    }

    /// Sends the holds waiting to be given back (they have no reply).
    fn flush_decrefs(&self, chan: &Chan) -> Result<()> {
        let ids = std::mem::take(&mut *self.decrefs.lock());
        for id in ids {
            chan.send(&codec::encode(&Request::Decref(id))?)?;
        }
        Ok(())
    }
}

impl Drop for ClientConn {
    fn drop(&mut self) {
        if self.pid != std::process::id() {
            return;
        }
        // Shut the sockets down, not only closed: a child made by fork may
        // hold copies, and the server ends the session only when every
        // connection of it hangs up.
        let idle = std::mem::take(&mut *self.idle.lock());
        for chan in idle
            .iter()
            .chain(self.anchor.iter())
            .chain(self.async_anchor.get())
        {
            if let Chan::Remote(c) = chan {
                c.close();
            }
        }
    }
}

/// A connection to a served manager. Its sends are bounded by the reply
/// timeout too: a server that stopped reading fails a large request.
fn remote_socket(
    address: &Address,
    authkey: &[u8],
    options: &ClientOptions,
) -> Result<SocketConnection> {
    let sock = SocketConnection::connect_with(address, authkey, options)?;
    if multiproc_process::deadline(options.reply_timeout).is_some() {
        sock.set_send_timeout(Some(options.reply_timeout))?;
    }
    Ok(sock)
}

/// Sends a request and reads its reply, skipping the server's word that it
/// is still waiting; `silence` bounds the wait for each word.
fn exchange(chan: &Chan, request: &[u8], silence: Duration) -> Result<WireResult> {
    chan.send(request)?;
    read_reply(chan, silence)
}

/// Reads a reply, skipping the server's word that it is still waiting.
fn read_reply(chan: &Chan, silence: Duration) -> Result<WireResult> {
    loop {
        let reply = codec::decode::<WireResult>(&chan.recv_timeout(silence)?)?;
        if !matches!(reply, Ok(Reply::Waiting)) {
            return Ok(reply);
        }
    }
}

/// As [`read_reply`], waiting without a thread.
async fn read_reply_async(chan: &Chan, silence: Duration) -> Result<WireResult> {
    loop {
        let reply = codec::decode::<WireResult>(&chan.recv_timeout_async(silence).await?)?;
        if !matches!(reply, Ok(Reply::Waiting)) {
            return Ok(reply);
        }
    }
}

/// What an async call took that its dropped future must give back.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Undo {
    /// Nothing (a read, a put, a wait).
    Nothing,
    /// The item a `Take` of queue `id` took.
    Item(ObjectId),
    /// The hold an `Acquire` (or a condition's wait) of `id` took for the
    /// holder.
    Release(ObjectId, Holder),
}

/// An async call whose request went out and whose reply is not read:
/// dropped so (its future dropped), it hands the connection to a thread
/// that ends the exchange ([`ClientConn::finish_dropped_call`]), so that
/// nothing the call took is lost: the thread lives until the server's
/// next look at the connection (a slice of its wait).
struct InFlight {
    conn: Arc<ClientConn>,
    chan: Option<Chan>,
    undo: Undo,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let Some(chan) = self.chan.take() else { return };
        let (conn, undo) = (self.conn.clone(), self.undo);
        // Without a thread, the connection closes: the server gives back
        // what it could not send, and a reply sent already is lost.
        let _ = std::thread::Builder::new()
            .name("multiproc-cancel".into())
            .spawn(move || conn.finish_dropped_call(chan, undo));
    }
}

fn hello(chan: &Chan, session: u64, silence: Duration) -> Result<(u64, bool)> {
    // A few words of "still waiting" fit in each span of allowed silence.
    let heartbeat = (silence < Duration::MAX).then(|| silence / 4);
    let request = codec::encode(&Request::Hello { session, heartbeat })?;
    match exchange(chan, &request, silence)?.map_err(Error::from)? {
        Reply::Welcome { uid, pickle } => Ok((uid, pickle)),
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

    pub(crate) async fn call_async(&self, op: Op) -> Result<Reply> {
        let undo = match &op {
            Op::Take(_) => Undo::Item(self.id),
            Op::Acquire(who, _) | Op::CondWait(who, _) => Undo::Release(self.id, *who),
            _ => Undo::Nothing,
        };
        self.conn
            .call_async(&Request::Call(self.id, op), undo)
            .await
    }
}

impl Drop for ProxyRef {
    fn drop(&mut self) {
        self.conn.decref(self.id);
    }
}

impl fmt::Debug for ProxyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "object {} of manager {:016x}", self.id, self.conn.uid)
    }
}

thread_local! {
    /// While a value for manager `uid` is encoded: the ids of its proxies
    /// (of any session of this process with that manager; the server
    /// counts a hold for each while the value is stored).
    static STORING: RefCell<Option<(u64, Vec<ObjectId>)>> = const { RefCell::new(None) };
    /// While a reply of this session is decoded: proxies named `Same` are
    /// already counted for it.
    static READING: RefCell<Option<Arc<ClientConn>>> = const { RefCell::new(None) };
}

impl ClientConn {
    fn pickles(&self) -> bool {
        self.pickle.get().copied().unwrap_or(false)
    }
}

/// Encodes a value to store into `conn`'s manager: postcard, or the
/// canonical pickle for a manager that serves Python programs (which
/// then read the value too; a proxy cannot go there).
pub(crate) fn store<T: Serialize + ?Sized>(conn: &ClientConn, value: &T) -> Result<Stored> {
    if conn.pickles() {
        return Ok(Stored {
            bytes: pickle_of(value)?,
            refs: Vec::new(),
        });
    }
    let outer = STORING.with(|s| s.borrow_mut().replace((conn.uid, Vec::new())));
    let bytes = codec::encode(value);
    let refs = STORING.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    Ok(Stored {
        bytes: bytes?,
        refs: refs.map(|(_, r)| r).unwrap_or_default(),
    })
}

/// The canonical pickle of a value for a manager that serves Python
/// programs, refusing a proxy (Python programs could not use it).
fn pickle_of<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let outer = STORING.with(|s| s.borrow_mut().replace((0, Vec::new())));
    let bytes = crate::pickle::canonical(value);
    let refs = STORING.with(|s| std::mem::replace(&mut *s.borrow_mut(), outer));
    if refs.is_some_and(|(_, r)| !r.is_empty()) {
        return Err(Error::Encode(
            "a value holding a proxy cannot be stored in a manager that serves Python programs"
                .into(),
        ));
    }
    bytes
}

/// Encodes a key: proxies in keys do not keep their objects alive.
pub(crate) fn key<T: Serialize + ?Sized>(conn: &ClientConn, value: &T) -> Result<Vec<u8>> {
    if conn.pickles() {
        return pickle_of(value);
    }
    codec::encode(value)
}

/// Decodes a value that came from `conn`'s manager.
pub(crate) fn load<T: serde::de::DeserializeOwned>(
    conn: &Arc<ClientConn>,
    bytes: &[u8],
) -> Result<T> {
    if conn.pickles() {
        return crate::pickle::loads(bytes);
    }
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
            Route::Remote { address, .. } => TokenRef::Remote {
                uid: self.conn.uid,
                id: self.id,
                ticket,
                address,
            },
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProxyRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ProxyRef, D::Error> {
        let (id, ticket, conn) = match Token::deserialize(d)? {
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
            } => {
                let conn = ClientConn::get(uid, Route::Local(Arc::new(door))).map_err(|e| {
                    D::Error::custom(codec::custom_error(format!(
                        "cannot reach the manager: {e}"
                    )))
                })?;
                (id, ticket, conn)
            }
            Token::Remote {
                uid,
                id,
                ticket,
                address,
            } => {
                let conn = ClientConn::find(uid).ok_or_else(|| {
                    D::Error::custom(codec::custom_error(format!(
                        "a proxy of the manager at {address} carries no key: connect this \
                         process to it first, with Manager::connect(address, key)"
                    )))
                })?;
                (id, ticket, conn)
            }
        };
        conn.call(&Request::Claim { ticket, id }).map_err(|e| {
            D::Error::custom(codec::custom_error(format!("manager object {id}: {e}")))
        })?;
        Ok(ProxyRef { id, conn })
    }
}
