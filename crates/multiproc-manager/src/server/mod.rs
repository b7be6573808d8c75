//! The manager's server process: a table of objects, one thread per client
//! connection, and the objects' operations.
//!
//! Life of an object: a count of holders. A client session holds one per
//! proxy it decoded (its proxies' drops give them back, and the session's
//! end gives back all it still holds); a stored value holds one per proxy
//! inside it; a published name holds one. At zero the object is freed, and
//! the values it stored give back theirs.
//!
//! Blocking operations (a queue's get, a lock's acquire) wait in slices of
//! 100 ms and give up when the client's connection is gone, so a client
//! killed while waiting never takes a lock it cannot release.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::os::fd::AsFd;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use multiproc_channel::Connection;
use multiproc_process::handoff::{self, HandoffFd};
use multiproc_process::{RemoteFn, Result, codec, fdio};
use parking_lot::{Condvar, Mutex, MutexGuard};
use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::chan::Chan;
use crate::served::{ErasedServed, factory};
use crate::socket::{Listener, ListenerFd, ListenerOptions, SocketConnection};

mod python;
use crate::wire::{
    Holder, Init, Kind, ObjectId, ObjectInfo, Op, Reply, Request, Stored, Wait, WireError,
    WireResult,
};
pub(crate) use python::PYTHON_ITEMS;

/// The most items `l *= n` may make: a typo of a count must not take the
/// server's memory.
const MAX_REPEAT: usize = 1 << 28;

/// How often a blocked operation checks that its client is still there.
const SLICE: Duration = Duration::from_millis(100);

/// The largest request a client may send unless the builder says.
pub(crate) const MAX_REQUEST: u64 = 1 << 30;

/// How many authenticated remote connections (each a thread) a server
/// keeps unless the builder says; one beyond that is closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// How long a reply may take to go out to a remote client that does not
/// read it; then its connection is closed.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server needs to serve other programs: the bound socket, its
/// address, the key and the limits.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServedSocket {
    pub(crate) fd: ListenerFd,
    pub(crate) address: Address,
    pub(crate) authkey: Vec<u8>,
    pub(crate) options: ListenerOptions,
    pub(crate) max_connections: usize,
}

/// What the server process is started with.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ServerConfig {
    pub(crate) uid: u64,
    /// The server's end of the door: local clients send it one end of a
    /// fresh pipe each.
    pub(crate) door: HandoffFd,
    pub(crate) listener: Option<ServedSocket>,
    /// Python programs' socket: values are then stored as pickles.
    pub(crate) python: Option<ServedSocket>,
    /// Each installs one registered type.
    pub(crate) registry: Vec<RemoteFn>,
    /// The longest request a client may send.
    pub(crate) max_request: u64,
}

/// A listener's loop: Rust programs' or Python programs'.
type Serve = fn(Arc<Server>, &Listener, usize);

/// The server process's target.
pub(crate) fn serve(config: ServerConfig) {
    for install in &config.registry {
        install.call();
    }
    let server = Arc::new(Server::new(
        config.uid,
        config.max_request,
        config.python.is_some(),
    ));
    let door = config.door;
    {
        let server = server.clone();
        std::thread::Builder::new()
            .name("manager-door".into())
            .spawn(move || server.serve_door(door))
            .ok();
    }
    let served = [
        (
            config.listener,
            "manager-listener",
            Server::serve_listener as Serve,
        ),
        (
            config.python,
            "manager-python",
            Server::serve_python_listener,
        ),
    ];
    for (served, name, serve) in served {
        let Some(served) = served else { continue };
        let max = served.max_connections;
        let listener = Listener::from_fd(served.fd, served.address, served.authkey, served.options);
        let server = server.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || serve(server, &listener, max))
            .ok();
    }
    let mut done = server.shutdown.lock();
    while !*done {
        server.shutdown_cv.wait(&mut done);
    }
}

struct Slot {
    object: Arc<Object>,
    count: u64,
}

#[derive(Default)]
struct Session {
    conns: usize,
    refs: HashMap<ObjectId, u64>,
}

struct Server {
    uid: u64,
    max_request: u64,
    /// Values are pickles: Python programs are served too.
    pickle: bool,
    objects: Mutex<HashMap<ObjectId, Slot>>,
    names: Mutex<HashMap<String, ObjectId>>,
    sessions: Mutex<HashMap<u64, Session>>,
    /// Holds lent to proxies in transit: ticket -> (lender session, id).
    tickets: Mutex<HashMap<u64, (u64, ObjectId)>>,
    next_id: AtomicU64,
    /// Remote connections being served now.
    remote: Arc<AtomicUsize>,
    shutdown: Mutex<bool>,
    shutdown_cv: Condvar,
}

impl Server {
    fn new(uid: u64, max_request: u64, pickle: bool) -> Server {
        Server {
            uid,
            max_request,
            pickle,
            objects: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
            tickets: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            remote: Arc::new(AtomicUsize::new(0)),
            shutdown: Mutex::new(false),
            shutdown_cv: Condvar::new(),
        }
    }

    fn stop(&self) {
        *self.shutdown.lock() = true;
        self.shutdown_cv.notify_all();
    }

    fn serve_door(self: Arc<Self>, door: HandoffFd) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let mut fds = Vec::new();
            match fdio::recv_with_fds(door.as_fd(), &mut buf, &mut fds) {
                Ok(0) if fds.is_empty() => {
                    // Nobody holds the other end: no client can ever come.
                    self.stop();
                    return;
                }
                Ok(n) => {
                    let Ok(conn) = handoff::decode_with_fds::<Connection>(&buf[..n], fds) else {
                        continue;
                    };
                    conn.set_max_message_size(self.max_request);
                    self.spawn_conn(Chan::Local(conn));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stop();
                    return;
                }
            }
        }
    }

    /// Serves other programs: the listener runs the handshakes beside each
    /// other; each connection that passes gets a thread, up to `max`.
    fn serve_listener(self: Arc<Self>, listener: &Listener, max: usize) {
        self.accept_each(listener, max, "manager-conn", |server, conn| {
            server.serve_conn(&Chan::Remote(conn));
        });
    }

    /// Serves each connection that passed the handshake on a thread of its
    /// own, `name`, counted among the other programs served while fewer
    /// than `max` are; forever.
    fn accept_each(
        self: &Arc<Self>,
        listener: &Listener,
        max: usize,
        name: &str,
        serve: fn(&Server, SocketConnection),
    ) {
        loop {
            match listener.accept() {
                Ok(conn) => {
                    if self.remote.load(Ordering::Relaxed) >= max {
                        // Over the limit: closed, and the client sees it.
                        continue;
                    }
                    conn.set_max_message_size(self.max_request);
                    if conn.set_send_timeout(Some(SEND_TIMEOUT)).is_err() {
                        continue;
                    }
                    self.remote.fetch_add(1, Ordering::Relaxed);
                    let slot = RemoteSlot(self.remote.clone());
                    let server = self.clone();
                    let spawned = std::thread::Builder::new()
                        .name(name.into())
                        .spawn(move || {
                            let _slot = slot;
                            serve(&server, conn);
                        });
                    // Out of threads: the connection is dropped (with its
                    // slot) and the client sees it closed.
                    drop(spawned);
                }
                // The socket failed, or a thread could not be made: try
                // again later rather than stop serving other programs.
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    fn spawn_conn(self: &Arc<Self>, chan: Chan) {
        let server = self.clone();
        let spawned = std::thread::Builder::new()
            .name("manager-conn".into())
            .spawn(move || server.serve_conn(&chan));
        // Out of threads: the connection is dropped (with its slot) and
        // the client sees it closed.
        drop(spawned);
    }

    fn serve_conn(&self, chan: &Chan) {
        let Ok(bytes) = chan.recv() else { return };
        let Ok(Request::Hello { session, heartbeat }) = codec::decode::<Request>(&bytes) else {
            return;
        };
        // Only a remote client waits with a timeout for our replies.
        let heartbeat = heartbeat.filter(|_| matches!(chan, Chan::Remote(_)));
        self.sessions.lock().entry(session).or_default().conns += 1;
        let welcome = Reply::Welcome {
            uid: self.uid,
            pickle: self.pickle,
        };
        if self.reply(chan, &Ok(welcome)).is_ok() {
            while let Ok(bytes) = chan.recv() {
                // A request that does not decode ends this connection only.
                let Ok(request) = codec::decode::<Request>(&bytes) else {
                    break;
                };
                let shutdown = matches!(request, Request::Shutdown);
                let took = match &request {
                    Request::Call(id, Op::Acquire(who, _) | Op::CondWait(who, _)) => {
                        Some((*id, *who))
                    }
                    _ => None,
                };
                let taken_from = match &request {
                    Request::Call(id, Op::Take(_)) => Some(*id),
                    _ => None,
                };
                let Some(result) = self.handle(session, request, chan, heartbeat) else {
                    continue;
                };
                let sent = self.reply(chan, &result);
                if shutdown {
                    // After the reply: the process ends with the stop.
                    self.stop();
                }
                if sent.is_err() {
                    // The client gave up on this call (its reply timeout)
                    // or is gone: a lock it took here it never learned of,
                    // and its session may live on.
                    if let (Some((id, who)), Ok(_)) = (took, &result) {
                        let _ =
                            self.handle(session, Request::Call(id, Op::Release(who)), chan, None);
                    }
                    // An item it never received goes back where it was.
                    if let (Some(id), Ok(Reply::Value(item))) = (taken_from, result) {
                        self.unget(session, id, item);
                    }
                    break;
                }
            }
        }
        self.end_conn(session);
    }

    fn reply(&self, chan: &Chan, result: &WireResult) -> Result<()> {
        chan.send(&codec::encode(result)?)
    }

    /// A connection closed; the session ends with its last one.
    fn end_conn(&self, session: u64) {
        let ended = {
            let mut sessions = self.sessions.lock();
            let Some(s) = sessions.get_mut(&session) else {
                return;
            };
            s.conns -= 1;
            if s.conns > 0 {
                return;
            }
            sessions.remove(&session)
        };
        let Some(ended) = ended else { return };
        // Locks its threads held are released, as if each had let go.
        let objects: Vec<Arc<Object>> = self
            .objects
            .lock()
            .values()
            .map(|slot| slot.object.clone())
            .collect();
        for object in objects {
            object.release_session(session);
        }
        let mut gone: Vec<ObjectId> = Vec::new();
        self.tickets.lock().retain(|_, (lender, id)| {
            let keep = *lender != session;
            if !keep {
                gone.push(*id);
            }
            keep
        });
        for (id, n) in ended.refs {
            for _ in 0..n {
                gone.push(id);
            }
        }
        self.decref_all(gone);
    }

    fn handle(
        &self,
        session: u64,
        request: Request,
        chan: &Chan,
        heartbeat: Option<Duration>,
    ) -> Option<WireResult> {
        if let Err(e) = self.check_refs(&request) {
            return Some(Err(e));
        }
        Some(match request {
            Request::Hello { .. } => Err(WireError::Invalid("hello twice".into())),
            Request::Create { info, init } => self.create(session, info, init),
            Request::Lend(id) => {
                if !self.incref(id) {
                    return Some(Err(gone_object(id)));
                }
                // Unguessable: a ticket stands for a hold, and another
                // client that named it could take the hold or give it back.
                let Ok(ticket) = random_ticket() else {
                    return Some(Err(WireError::Invalid("no randomness for a ticket".into())));
                };
                self.tickets.lock().insert(ticket, (session, id));
                Ok(Reply::Len(ticket))
            }
            Request::Claim { ticket, id } => {
                let lent = self.tickets.lock().remove(&ticket);
                match lent {
                    Some((_, lent_id)) if lent_id == id => {
                        self.count_hold(session, id);
                        Ok(Reply::Unit)
                    }
                    other => {
                        if let Some((_, lent_id)) = other {
                            self.decref_all(vec![lent_id]);
                        }
                        if self.session_incref(session, id) {
                            Ok(Reply::Unit)
                        } else {
                            Err(gone_object(id))
                        }
                    }
                }
            }
            Request::Decref(id) => {
                self.session_decref(session, id);
                return None;
            }
            Request::Call(id, Op::PutFront(item)) => {
                self.unget(session, id, item);
                Ok(Reply::Unit)
            }
            Request::Call(id, op) => {
                let object = self.objects.lock().get(&id).map(|s| s.object.clone());
                match object {
                    Some(object) => {
                        let cx = Cx {
                            server: self,
                            session,
                            chan,
                            beat: Cell::new(Instant::now()),
                            heartbeat,
                        };
                        object.call(&cx, op)
                    }
                    None => Err(gone_object(id)),
                }
            }
            Request::Publish(name, id) => {
                if !self.incref(id) {
                    return Some(Err(gone_object(id)));
                }
                let old = self.names.lock().insert(name, id);
                if let Some(old) = old {
                    self.decref_all(vec![old]);
                }
                Ok(Reply::Unit)
            }
            Request::Lookup(name) => {
                let Some(id) = self.names.lock().get(&name).copied() else {
                    return Some(Err(WireError::NotFound(name)));
                };
                let info = self.objects.lock().get(&id).map(|s| s.object.info.clone());
                match info {
                    Some(info) if self.session_incref(session, id) => Ok(Reply::Found(id, info)),
                    _ => Err(WireError::NotFound(name)),
                }
            }
            Request::Count => Ok(Reply::Len(self.objects.lock().len() as u64)),
            // Stopped by `serve_conn` once the reply is sent.
            Request::Shutdown => Ok(Reply::Unit),
        })
    }

    /// A value may name only objects that exist. The server counts a hold
    /// for each one a container takes and gives it back when the value
    /// leaves; an id that does not exist yet (ids are sequential, so easy
    /// to guess) would be given back without having been taken, and free
    /// whatever object later gets that id.
    fn check_refs(&self, request: &Request) -> Result<(), WireError> {
        let mut refs = Vec::new();
        request.for_each_ref(|id| refs.push(id));
        if refs.is_empty() {
            // Most requests: no need to take the table's lock.
            return Ok(());
        }
        let missing = {
            let objects = self.objects.lock();
            refs.into_iter().find(|id| !objects.contains_key(id))
        };
        match missing {
            Some(id) => Err(WireError::Invalid(format!(
                "the value names managed object {id}, which does not exist"
            ))),
            None => Ok(()),
        }
    }

    fn create(&self, session: u64, info: ObjectInfo, init: Init) -> WireResult {
        let state = match init {
            Init::List(items) => State::Seq(self.adopt_all(items)),
            Init::Dict(items) => {
                State::Dict(items.into_iter().map(|(k, v)| (k, self.adopt(v))).collect())
            }
            Init::Namespace => State::Ns(IndexMap::new()),
            Init::Value(v) => State::Value(self.adopt(v)),
            Init::Queue { maxsize } => State::Queue {
                items: VecDeque::new(),
                maxsize,
                unfinished: 0,
            },
            Init::Lock => State::Lock { holder: None },
            Init::RLock => State::RLock {
                holder: None,
                count: 0,
            },
            Init::Semaphore { value, bounded } => State::Semaphore {
                value,
                bound: bounded.then_some(value),
            },
            Init::Condition => State::Condition {
                holder: None,
                count: 0,
                waiters: VecDeque::new(),
                signaled: HashSet::new(),
                next_ticket: 0,
            },
            Init::Event => State::Event(false),
            Init::Barrier { parties, timeout } => {
                if parties == 0 {
                    return Err(WireError::Invalid(
                        "a barrier needs at least one party".into(),
                    ));
                }
                State::Barrier {
                    parties,
                    count: 0,
                    generation: 0,
                    broken: false,
                    resets: BTreeSet::new(),
                    timeout,
                }
            }
            Init::User { name, init } => {
                let Some(make) = factory(&name) else {
                    return Err(WireError::NotFound(format!(
                        "type {name} (not registered with this manager)"
                    )));
                };
                State::User(make(&init)?)
            }
        };
        Ok(Reply::Created(self.insert_object(session, info, state)))
    }

    /// Adds an object, held once by `session`.
    fn insert_object(&self, session: u64, info: ObjectInfo, state: State) -> ObjectId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let object = Arc::new(Object {
            info,
            state: Mutex::new(state),
            cv: Condvar::new(),
        });
        self.objects.lock().insert(id, Slot { object, count: 1 });
        self.count_hold(session, id);
        id
    }

    /// Records that `session` holds `id` once more (the object's own count
    /// is already right: just created, or a lent hold claimed).
    fn count_hold(&self, session: u64, id: ObjectId) {
        *self
            .sessions
            .lock()
            .entry(session)
            .or_default()
            .refs
            .entry(id)
            .or_default() += 1;
    }

    /// Counts one more holder of `id`; false if it no longer exists.
    fn incref(&self, id: ObjectId) -> bool {
        match self.objects.lock().get_mut(&id) {
            Some(slot) => {
                slot.count += 1;
                true
            }
            None => false,
        }
    }

    fn session_incref(&self, session: u64, id: ObjectId) -> bool {
        let mut sessions = self.sessions.lock();
        if !self.incref(id) {
            return false;
        }
        *sessions
            .entry(session)
            .or_default()
            .refs
            .entry(id)
            .or_default() += 1;
        true
    }

    fn session_decref(&self, session: u64, id: ObjectId) {
        {
            let mut sessions = self.sessions.lock();
            let Some(refs) = sessions.get_mut(&session).map(|s| &mut s.refs) else {
                return;
            };
            match refs.get_mut(&id) {
                Some(n) if *n > 1 => *n -= 1,
                Some(_) => {
                    refs.remove(&id);
                }
                None => return,
            }
        }
        self.decref_all(vec![id]);
    }

    /// Gives back one hold on each id, freeing what drops to zero (and,
    /// through the values those held, what they kept alive).
    fn decref_all(&self, mut work: Vec<ObjectId>) {
        while let Some(id) = work.pop() {
            let freed = {
                let mut objects = self.objects.lock();
                match objects.get_mut(&id) {
                    Some(slot) if slot.count > 1 => {
                        slot.count -= 1;
                        None
                    }
                    Some(_) => objects.remove(&id),
                    None => None,
                }
            };
            if let Some(slot) = freed {
                let state = std::mem::replace(&mut *slot.object.state.lock(), State::Event(false));
                state.refs_into(&mut work);
                slot.object.cv.notify_all();
            }
        }
    }

    /// Puts an item that a client took from queue `id` but never received
    /// back at the queue's front: the queue holds its objects again, and
    /// `session` gives back the holds its copy had counted.
    fn unget(&self, session: u64, id: ObjectId, item: Stored) {
        let object = self.objects.lock().get(&id).map(|slot| slot.object.clone());
        let Some(object) = object else {
            // The queue is gone: so is the item, as if it had stayed there.
            for &r in &item.refs {
                self.session_decref(session, r);
            }
            return;
        };
        let item = self.adopt(item);
        for &r in &item.refs {
            self.session_decref(session, r);
        }
        let mut state = object.state.lock();
        if let State::Queue { items, .. } = &mut *state {
            items.push_front(item);
            object.cv.notify_all();
        }
    }

    /// Takes a value into a container: its proxies now hold their objects.
    /// An object gone meanwhile is dropped from its refs, so that what the
    /// value gives back later is exactly what it took.
    fn adopt(&self, mut stored: Stored) -> Stored {
        let mut objects = self.objects.lock();
        stored.refs.retain(|id| match objects.get_mut(id) {
            Some(slot) => {
                slot.count += 1;
                true
            }
            None => false,
        });
        stored
    }

    fn adopt_all(&self, items: Vec<Stored>) -> Vec<Stored> {
        items.into_iter().map(|s| self.adopt(s)).collect()
    }

    /// A value leaves a container: its proxies let go of their objects.
    fn release(&self, stored: &Stored) {
        if !stored.refs.is_empty() {
            self.decref_all(stored.refs.clone());
        }
    }

    /// A copy of a value goes to the client: its session holds each
    /// object the value's proxies name.
    fn hand_out(&self, session: u64, stored: &Stored) -> Stored {
        for &id in &stored.refs {
            self.session_incref(session, id);
        }
        stored.clone()
    }
}

fn random_ticket() -> std::result::Result<u64, getrandom::Error> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn gone_object(id: ObjectId) -> WireError {
    WireError::NotFound(format!("managed object {id}"))
}

/// Gives back a remote connection's place when its thread ends.
struct RemoteSlot(Arc<AtomicUsize>);

impl Drop for RemoteSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The context of one request.
struct Cx<'a> {
    server: &'a Server,
    session: u64,
    chan: &'a Chan,
    /// When the client last heard from us during this request.
    beat: Cell<Instant>,
    /// How often to tell it that the call is still waiting (none: a
    /// local client, which has no timeout).
    heartbeat: Option<Duration>,
}

impl Cx<'_> {
    /// Whether the client is gone; a remote one is told, a few times per
    /// span of its reply timeout, that its call is still waiting.
    fn client_gone(&self) -> bool {
        if self.chan.gone() {
            return true;
        }
        if let Some(every) = self.heartbeat
            && self.beat.get().elapsed() >= every
        {
            self.beat.set(Instant::now());
            let Ok(bytes) = codec::encode(&WireResult::Ok(Reply::Waiting)) else {
                return false;
            };
            return self.chan.send(&bytes).is_err();
        }
        false
    }

    fn adopt(&self, s: Stored) -> Stored {
        self.server.adopt(s)
    }

    fn release(&self, s: &Stored) {
        self.server.release(s);
    }

    fn out(&self, s: &Stored) -> Stored {
        self.server.hand_out(self.session, s)
    }

    /// Moves a value out of a container to the client.
    fn take_out(&self, s: Stored) -> Stored {
        let out = self.out(&s);
        self.release(&s);
        out
    }
}

struct Object {
    info: ObjectInfo,
    state: Mutex<State>,
    cv: Condvar,
}

enum State {
    Seq(Vec<Stored>),
    Dict(IndexMap<Vec<u8>, Stored>),
    Ns(IndexMap<String, Stored>),
    Value(Stored),
    Queue {
        items: VecDeque<Stored>,
        maxsize: usize,
        unfinished: u64,
    },
    Lock {
        holder: Option<Holder>,
    },
    RLock {
        holder: Option<Holder>,
        count: u32,
    },
    Semaphore {
        value: u32,
        bound: Option<u32>,
    },
    Condition {
        holder: Option<Holder>,
        count: u32,
        waiters: VecDeque<u64>,
        signaled: HashSet<u64>,
        next_ticket: u64,
    },
    Event(bool),
    Barrier {
        parties: u32,
        count: u32,
        generation: u64,
        broken: bool,
        /// Generations ended by `reset` (their waiters see a broken barrier).
        resets: BTreeSet<u64>,
        timeout: Wait,
    },
    User(Box<dyn ErasedServed>),
}

impl State {
    /// The ids the values inside hold.
    fn refs_into(self, out: &mut Vec<ObjectId>) {
        let mut add = |s: Stored| out.extend(s.refs);
        match self {
            State::Seq(items) => items.into_iter().for_each(&mut add),
            State::Dict(map) => map.into_values().for_each(&mut add),
            State::Ns(map) => map.into_values().for_each(&mut add),
            State::Value(v) => add(v),
            State::Queue { items, .. } => items.into_iter().for_each(&mut add),
            _ => {}
        }
    }
}

/// Where a wait ends.
fn deadline_of(wait: Wait) -> Option<Instant> {
    wait.and_then(multiproc_process::deadline)
}

fn out_of_range(what: &str) -> WireError {
    WireError::Invalid(format!("{what} index out of range"))
}

/// Python's index rules: negative counts from the end.
fn position(i: i64, len: usize, what: &str) -> Result<usize, WireError> {
    let len_i = i64::try_from(len).map_err(|_| out_of_range(what))?;
    let j = if i < 0 { i + len_i } else { i };
    if (0..len_i).contains(&j) {
        usize::try_from(j).map_err(|_| out_of_range(what))
    } else {
        Err(out_of_range(what))
    }
}

impl Object {
    /// One slice of a blocking wait: false once the deadline passed or the
    /// client is gone (`Closed`).
    fn wait_slice(
        &self,
        cx: &Cx<'_>,
        guard: &mut MutexGuard<'_, State>,
        deadline: Option<Instant>,
    ) -> Result<bool, WireError> {
        let now = Instant::now();
        // A remote client that allows little silence is told more often.
        let slice = cx
            .heartbeat
            .map_or(SLICE, |h| h.clamp(Duration::from_millis(1), SLICE));
        let until = match deadline {
            Some(d) if d <= now => return Ok(false),
            Some(d) => d.min(now + slice),
            None => now + slice,
        };
        self.cv.wait_until(guard, until);
        if MutexGuard::unlocked(guard, || cx.client_gone()) {
            return Err(WireError::Closed);
        }
        Ok(true)
    }

    fn release_session(&self, session: u64) {
        let mut state = self.state.lock();
        let released = match &mut *state {
            State::Lock { holder } if holder.is_some_and(|h| h.0 == session) => {
                *holder = None;
                true
            }
            State::RLock { holder, count } | State::Condition { holder, count, .. }
                if holder.is_some_and(|h| h.0 == session) =>
            {
                *holder = None;
                *count = 0;
                true
            }
            _ => false,
        };
        if released {
            self.cv.notify_all();
        }
    }

    fn call(&self, cx: &Cx<'_>, op: Op) -> WireResult {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        match (state, op) {
            // Sequences.
            (State::Seq(v), Op::Len) => Ok(Reply::Len(v.len() as u64)),
            (State::Seq(v), Op::Snapshot) => {
                Ok(Reply::Values(v.iter().map(|s| cx.out(s)).collect()))
            }
            (State::Seq(v), Op::Clear) => {
                for s in v.drain(..) {
                    cx.release(&s);
                }
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Get(i)) => {
                let i = position(i, v.len(), "list")?;
                Ok(Reply::Value(cx.out(&v[i])))
            }
            (State::Seq(v), Op::Set(i, s)) => {
                let i = position(i, v.len(), "list")?;
                let old = std::mem::replace(&mut v[i], cx.adopt(s));
                cx.release(&old);
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Push(s)) if self.info.kind == Kind::List => {
                v.push(cx.adopt(s));
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Extend(items)) if self.info.kind == Kind::List => {
                v.extend(items.into_iter().map(|s| cx.adopt(s)));
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Insert(i, s)) if self.info.kind == Kind::List => {
                let len = i64::try_from(v.len()).unwrap_or(i64::MAX);
                let j = if i < 0 { (i + len).max(0) } else { i.min(len) };
                let j = usize::try_from(j).unwrap_or(v.len());
                v.insert(j, cx.adopt(s));
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Pop(i)) if self.info.kind == Kind::List => {
                if v.is_empty() {
                    return Err(WireError::Invalid("pop from empty list".into()));
                }
                let i = position(i.unwrap_or(-1), v.len(), "pop")?;
                Ok(Reply::Value(cx.take_out(v.remove(i))))
            }
            (State::Seq(v), Op::RemoveValue(bytes)) if self.info.kind == Kind::List => {
                let Some(i) = v.iter().position(|s| s.bytes == bytes) else {
                    return Err(WireError::Invalid("list.remove(x): x not in list".into()));
                };
                let old = v.remove(i);
                cx.release(&old);
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Contains(bytes)) => {
                Ok(Reply::Bool(v.iter().any(|s| s.bytes == bytes)))
            }
            (State::Seq(v), Op::Index(bytes)) => match v.iter().position(|s| s.bytes == bytes) {
                Some(i) => Ok(Reply::Len(i as u64)),
                None => Err(WireError::Invalid("x not in list".into())),
            },
            (State::Seq(v), Op::Count(bytes)) => Ok(Reply::Len(
                v.iter().filter(|s| s.bytes == bytes).count() as u64,
            )),
            (State::Seq(v), Op::GetRange(slice)) => {
                let (a, b) = slice.bounds(v.len());
                Ok(Reply::Values(v[a..b].iter().map(|s| cx.out(s)).collect()))
            }
            (State::Seq(v), Op::SetRange(slice, items)) if self.info.kind == Kind::List => {
                let (a, b) = slice.bounds(v.len());
                let new = cx.server.adopt_all(items);
                for old in v.splice(a..b, new) {
                    cx.release(&old);
                }
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::DeleteRange(slice)) if self.info.kind == Kind::List => {
                let (a, b) = slice.bounds(v.len());
                for old in v.drain(a..b) {
                    cx.release(&old);
                }
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Reverse) if self.info.kind == Kind::List => {
                v.reverse();
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::Repeat(n)) if self.info.kind == Kind::List => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let len = v.len();
                if len == 0 {
                    // Nothing to repeat, however often.
                } else if n == 0 {
                    for old in v.drain(..) {
                        cx.release(&old);
                    }
                } else {
                    let total =
                        len.checked_mul(n)
                            .filter(|&t| t <= MAX_REPEAT)
                            .ok_or_else(|| {
                                WireError::Invalid(format!(
                                    "a list of {len} items repeated {n} times"
                                ))
                            })?;
                    v.reserve(total - len);
                    for _ in 1..n {
                        for i in 0..len {
                            let copy = cx.adopt(v[i].clone());
                            v.push(copy);
                        }
                    }
                }
                Ok(Reply::Unit)
            }
            (State::Seq(v), Op::SnapshotDigest) => Ok(Reply::Digested(
                crate::slice::digest(v),
                v.iter().map(|s| cx.out(s)).collect(),
            )),
            (State::Seq(v), Op::Permute(expected, order)) if self.info.kind == Kind::List => {
                crate::slice::permute(v, expected, &order)?;
                Ok(Reply::Unit)
            }

            // Dicts.
            (State::Dict(m), Op::Len) => Ok(Reply::Len(m.len() as u64)),
            (State::Dict(m), Op::Clear) => {
                for (_, s) in m.drain(..) {
                    cx.release(&s);
                }
                Ok(Reply::Unit)
            }
            (State::Dict(m), Op::DictInsert(k, s)) => {
                let old = m.insert(k, cx.adopt(s));
                Ok(Reply::Maybe(old.map(|o| cx.take_out(o))))
            }
            (State::Dict(m), Op::DictGet(k)) => Ok(Reply::Maybe(m.get(&k).map(|s| cx.out(s)))),
            (State::Dict(m), Op::DictRemove(k)) => {
                Ok(Reply::Maybe(m.shift_remove(&k).map(|s| cx.take_out(s))))
            }
            (State::Dict(m), Op::DictContains(k)) => Ok(Reply::Bool(m.contains_key(&k))),
            (State::Dict(m), Op::DictKeys) => Ok(Reply::Keys(m.keys().cloned().collect())),
            (State::Dict(m), Op::DictValues) => {
                Ok(Reply::Values(m.values().map(|s| cx.out(s)).collect()))
            }
            (State::Dict(m), Op::DictItems) => Ok(Reply::Items(
                m.iter().map(|(k, s)| (k.clone(), cx.out(s))).collect(),
            )),
            (State::Dict(m), Op::DictUpdate(items)) => {
                for (k, s) in items {
                    if let Some(old) = m.insert(k, cx.adopt(s)) {
                        cx.release(&old);
                    }
                }
                Ok(Reply::Unit)
            }
            (State::Dict(m), Op::DictPopItem) => Ok(Reply::Items(
                m.pop()
                    .map(|(k, s)| (k, cx.take_out(s)))
                    .into_iter()
                    .collect(),
            )),
            (State::Dict(m), Op::DictSetDefault(k, s)) => {
                let entry = m.entry(k).or_insert_with(|| cx.adopt(s));
                Ok(Reply::Value(cx.out(entry)))
            }

            // Namespaces.
            (State::Ns(m), Op::NsGet(name)) => match m.get(&name) {
                Some(s) => Ok(Reply::Value(cx.out(s))),
                None => Err(WireError::NotFound(format!("attribute {name}"))),
            },
            (State::Ns(m), Op::NsSet(name, s)) => {
                if let Some(old) = m.insert(name, cx.adopt(s)) {
                    cx.release(&old);
                }
                Ok(Reply::Unit)
            }
            (State::Ns(m), Op::NsRemove(name)) => match m.shift_remove(&name) {
                Some(old) => {
                    cx.release(&old);
                    Ok(Reply::Unit)
                }
                None => Err(WireError::NotFound(format!("attribute {name}"))),
            },
            (State::Ns(m), Op::NsItems) => Ok(Reply::Named(
                m.iter().map(|(k, s)| (k.clone(), cx.out(s))).collect(),
            )),

            // Values.
            (State::Value(v), Op::ValueGet) => Ok(Reply::Value(cx.out(v))),
            (State::Value(v), Op::ValueSet(s)) => {
                let old = std::mem::replace(v, cx.adopt(s));
                cx.release(&old);
                Ok(Reply::Unit)
            }

            // Queues.
            (State::Queue { .. }, Op::Put(s, wait)) => {
                let deadline = deadline_of(wait);
                loop {
                    let State::Queue {
                        items,
                        maxsize,
                        unfinished,
                    } = &mut *guard
                    else {
                        return Err(gone_object(0));
                    };
                    if *maxsize == 0 || items.len() < *maxsize {
                        items.push_back(cx.adopt(s));
                        *unfinished += 1;
                        self.cv.notify_all();
                        return Ok(Reply::Unit);
                    }
                    if wait == Some(Duration::ZERO) {
                        return Err(WireError::Full);
                    }
                    if !self.wait_slice(cx, &mut guard, deadline)? {
                        return Err(WireError::Timeout);
                    }
                }
            }
            (State::Queue { .. }, Op::Take(wait)) => {
                let deadline = deadline_of(wait);
                loop {
                    let State::Queue { items, .. } = &mut *guard else {
                        return Err(gone_object(0));
                    };
                    if let Some(s) = items.pop_front() {
                        self.cv.notify_all();
                        return Ok(Reply::Value(cx.take_out(s)));
                    }
                    if wait == Some(Duration::ZERO) {
                        return Err(WireError::Empty);
                    }
                    if !self.wait_slice(cx, &mut guard, deadline)? {
                        return Err(WireError::Timeout);
                    }
                }
            }
            (State::Queue { items, .. }, Op::QSize) => Ok(Reply::Len(items.len() as u64)),
            (State::Queue { maxsize, .. }, Op::MaxSize) => Ok(Reply::Len(*maxsize as u64)),
            (State::Queue { unfinished, .. }, Op::TaskDone)
                if self.info.kind == Kind::JoinableQueue =>
            {
                if *unfinished == 0 {
                    return Err(WireError::TooManyTaskDone);
                }
                *unfinished -= 1;
                self.cv.notify_all();
                Ok(Reply::Unit)
            }
            (State::Queue { .. }, Op::Join(wait)) if self.info.kind == Kind::JoinableQueue => {
                let deadline = deadline_of(wait);
                loop {
                    let State::Queue { unfinished, .. } = &*guard else {
                        return Err(gone_object(0));
                    };
                    if *unfinished == 0 {
                        return Ok(Reply::Unit);
                    }
                    if !self.wait_slice(cx, &mut guard, deadline)? {
                        return Err(WireError::Timeout);
                    }
                }
            }

            // Locks and semaphores.
            (
                State::Lock { .. }
                | State::RLock { .. }
                | State::Condition { .. }
                | State::Semaphore { .. },
                Op::Acquire(who, wait),
            ) => {
                let who = (cx.session, who.1);
                let deadline = deadline_of(wait);
                loop {
                    if try_take(&mut guard, who) {
                        return Ok(Reply::Unit);
                    }
                    if wait == Some(Duration::ZERO) {
                        return Err(WireError::WouldBlock);
                    }
                    if !self.wait_slice(cx, &mut guard, deadline)? {
                        return Err(WireError::Timeout);
                    }
                }
            }
            (state, Op::Release(who)) => {
                let who = (cx.session, who.1);
                let result = match state {
                    State::Lock { holder } => match holder.take() {
                        Some(_) => Ok(Reply::Unit),
                        None => Err(WireError::NotHeld),
                    },
                    State::RLock { holder, count } | State::Condition { holder, count, .. } => {
                        if *holder != Some(who) {
                            return Err(WireError::NotHeld);
                        }
                        *count -= 1;
                        if *count == 0 {
                            *holder = None;
                        }
                        Ok(Reply::Unit)
                    }
                    State::Semaphore { value, bound } => {
                        if bound.is_some_and(|b| *value >= b) {
                            return Err(WireError::Invalid(
                                "semaphore released too many times".into(),
                            ));
                        }
                        *value += 1;
                        Ok(Reply::Unit)
                    }
                    _ => return Err(unsupported(&self.info)),
                };
                self.cv.notify_all();
                result
            }
            (State::Semaphore { value, .. }, Op::SemValue) => Ok(Reply::U32(*value)),

            // Conditions.
            (State::Condition { .. }, Op::CondWait(who, wait)) => {
                let who = (cx.session, who.1);
                let State::Condition {
                    holder,
                    count,
                    waiters,
                    next_ticket,
                    ..
                } = &mut *guard
                else {
                    return Err(gone_object(0));
                };
                if *holder != Some(who) {
                    return Err(WireError::NotHeld);
                }
                let saved = *count;
                *holder = None;
                *count = 0;
                let ticket = *next_ticket;
                *next_ticket += 1;
                waiters.push_back(ticket);
                self.cv.notify_all();
                let deadline = deadline_of(wait);
                let mut notified = false;
                let mut failure = None;
                loop {
                    if let State::Condition { signaled, .. } = &mut *guard
                        && signaled.remove(&ticket)
                    {
                        notified = true;
                        break;
                    }
                    match self.wait_slice(cx, &mut guard, deadline) {
                        Ok(true) => {}
                        Ok(false) => {
                            if let State::Condition { waiters, .. } = &mut *guard {
                                waiters.retain(|&t| t != ticket);
                            }
                            break;
                        }
                        Err(e) => {
                            failure = Some(e);
                            if let State::Condition {
                                waiters, signaled, ..
                            } = &mut *guard
                            {
                                waiters.retain(|&t| t != ticket);
                                signaled.remove(&ticket);
                            }
                            break;
                        }
                    }
                }
                if let Some(e) = failure {
                    return Err(e);
                }
                // Take the lock back, as long as it takes.
                loop {
                    if let State::Condition { holder, count, .. } = &mut *guard
                        && holder.is_none()
                    {
                        *holder = Some(who);
                        *count = saved;
                        return Ok(Reply::Bool(notified));
                    }
                    self.wait_slice(cx, &mut guard, None)?;
                }
            }
            (
                State::Condition {
                    holder,
                    waiters,
                    signaled,
                    ..
                },
                Op::CondNotify(who, n),
            ) => {
                if *holder != Some((cx.session, who.1)) {
                    return Err(WireError::NotHeld);
                }
                for _ in 0..n {
                    match waiters.pop_front() {
                        Some(t) => {
                            signaled.insert(t);
                        }
                        None => break,
                    }
                }
                self.cv.notify_all();
                Ok(Reply::Unit)
            }

            // Events.
            (State::Event(flag), Op::EventSet) => {
                *flag = true;
                self.cv.notify_all();
                Ok(Reply::Unit)
            }
            (State::Event(flag), Op::EventClear) => {
                *flag = false;
                Ok(Reply::Unit)
            }
            (State::Event(flag), Op::EventIsSet) => Ok(Reply::Bool(*flag)),
            (State::Event(_), Op::EventWait(wait)) => {
                let deadline = deadline_of(wait);
                loop {
                    if matches!(&*guard, State::Event(true)) {
                        return Ok(Reply::Bool(true));
                    }
                    if !self.wait_slice(cx, &mut guard, deadline)? {
                        return Ok(Reply::Bool(false));
                    }
                }
            }

            // Barriers.
            (State::Barrier { .. }, Op::BarrierWait(wait)) => self.barrier_wait(cx, guard, wait),
            (State::Barrier { broken, .. }, Op::BarrierAbort) => {
                *broken = true;
                self.cv.notify_all();
                Ok(Reply::Unit)
            }
            (
                State::Barrier {
                    count,
                    generation,
                    broken,
                    resets,
                    ..
                },
                Op::BarrierReset,
            ) => {
                if *count > 0 {
                    resets.insert(*generation);
                    *generation += 1;
                    *count = 0;
                }
                *broken = false;
                self.cv.notify_all();
                Ok(Reply::Unit)
            }
            (
                State::Barrier {
                    parties,
                    count,
                    broken,
                    ..
                },
                Op::BarrierState,
            ) => Ok(Reply::Barrier {
                parties: *parties,
                waiting: *count,
                broken: *broken,
            }),

            // Registered types.
            (State::User(obj), Op::User(bytes)) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| obj.call(&bytes))) {
                    Ok(result) => result.map(Reply::Bytes),
                    Err(panic) => Err(WireError::Panicked(multiproc_process::panic_message(
                        &*panic,
                    ))),
                }
            }

            _ => Err(unsupported(&self.info)),
        }
    }

    fn barrier_wait(
        &self,
        cx: &Cx<'_>,
        mut guard: MutexGuard<'_, State>,
        wait: Wait,
    ) -> WireResult {
        let State::Barrier {
            parties,
            count,
            generation,
            broken,
            timeout,
            ..
        } = &mut *guard
        else {
            return Err(gone_object(0));
        };
        if *broken {
            return Err(WireError::BrokenBarrier);
        }
        let index = *count;
        *count += 1;
        if *count == *parties {
            *count = 0;
            *generation += 1;
            self.cv.notify_all();
            return Ok(Reply::U32(index));
        }
        let mine = *generation;
        let deadline = deadline_of(wait.or(*timeout));
        loop {
            let State::Barrier {
                generation,
                broken,
                resets,
                count,
                ..
            } = &mut *guard
            else {
                return Err(gone_object(0));
            };
            if *generation != mine {
                if resets.contains(&mine) {
                    return Err(WireError::BrokenBarrier);
                }
                return Ok(Reply::U32(index));
            }
            if *broken {
                *count = count.saturating_sub(1);
                return Err(WireError::BrokenBarrier);
            }
            match self.wait_slice(cx, &mut guard, deadline) {
                Ok(true) => {}
                // A timeout breaks the barrier for everyone, as in Python;
                // so does a party that went away while waiting.
                Ok(false) | Err(_) => {
                    if let State::Barrier { broken, count, .. } = &mut *guard {
                        *broken = true;
                        *count = count.saturating_sub(1);
                    }
                    self.cv.notify_all();
                    return Err(WireError::BrokenBarrier);
                }
            }
        }
    }
}

/// Takes a lock or a semaphore for `who` if it is free.
fn try_take(state: &mut State, who: Holder) -> bool {
    match state {
        State::Lock { holder } if holder.is_none() => {
            *holder = Some(who);
            true
        }
        State::RLock { holder, count } | State::Condition { holder, count, .. } => match holder {
            None => {
                *holder = Some(who);
                *count = 1;
                true
            }
            Some(h) if *h == who => {
                *count += 1;
                true
            }
            Some(_) => false,
        },
        State::Semaphore { value, .. } if *value > 0 => {
            *value -= 1;
            true
        }
        _ => false,
    }
}

fn unsupported(info: &ObjectInfo) -> WireError {
    WireError::Invalid(format!("not an operation of a {:?}", info.kind))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use multiproc_channel::Pipe;

    fn info(kind: Kind) -> ObjectInfo {
        ObjectInfo {
            kind,
            type_name: "u8".into(),
        }
    }

    impl Server {
        fn handle_test(&self, session: u64, request: Request, chan: &Chan) -> Option<WireResult> {
            self.handle(session, request, chan, None)
        }
    }

    fn created(result: Option<WireResult>) -> ObjectId {
        match result {
            Some(Ok(Reply::Created(id))) => id,
            other => panic!("expected Created, got {other:?}"),
        }
    }

    /// A client that names an object in a value (here one not made yet,
    /// whose id is easy to guess, then another client's) cannot later give
    /// back a hold that is not its own.
    #[test]
    fn a_client_cannot_release_what_it_does_not_hold() {
        let server = Server::new(1, MAX_REQUEST, false);
        let (chan, _other) = Pipe::new().unwrap();
        let chan = Chan::Local(chan);
        let (attacker, victim) = (10, 20);
        for session in [attacker, victim] {
            server.sessions.lock().entry(session).or_default().conns += 1;
        }
        let list = created(server.handle_test(
            attacker,
            Request::Create {
                info: info(Kind::List),
                init: Init::List(Vec::new()),
            },
            &chan,
        ));
        let guess = server.next_id.load(Ordering::Relaxed);
        let forged = Stored {
            bytes: Vec::new(),
            refs: vec![guess],
        };
        match server.handle_test(attacker, Request::Call(list, Op::Push(forged)), &chan) {
            Some(Err(WireError::Invalid(why))) => assert!(why.contains("does not exist"), "{why}"),
            other => panic!("the forged value was taken: {other:?}"),
        }
        let theirs = created(server.handle_test(
            victim,
            Request::Create {
                info: info(Kind::Event),
                init: Init::Event,
            },
            &chan,
        ));
        assert_eq!(theirs, guess);
        // Naming it now that it exists counts a hold for the list.
        let named = Stored {
            bytes: Vec::new(),
            refs: vec![theirs, theirs],
        };
        assert!(matches!(
            server.handle_test(attacker, Request::Call(list, Op::Push(named)), &chan),
            Some(Ok(_))
        ));
        // The attacker empties its list and ends its session.
        assert!(matches!(
            server.handle_test(attacker, Request::Call(list, Op::Clear), &chan),
            Some(Ok(_))
        ));
        server.end_conn(attacker);
        assert!(matches!(
            server.handle_test(victim, Request::Call(theirs, Op::EventIsSet), &chan),
            Some(Ok(Reply::Bool(false)))
        ));
        // A value naming what its client does hold is taken as before.
        let own = Stored {
            bytes: Vec::new(),
            refs: vec![theirs],
        };
        let vlist = created(server.handle_test(
            victim,
            Request::Create {
                info: info(Kind::List),
                init: Init::List(vec![own]),
            },
            &chan,
        ));
        assert!(matches!(
            server.handle_test(victim, Request::Call(vlist, Op::Len), &chan),
            Some(Ok(Reply::Len(1)))
        ));
    }
}
