//! The manager: starting its server process, creating objects, naming
//! them for remote programs, shutting down.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use multiproc_process::handoff::HandoffFd;
use multiproc_process::{Error, Process, RemoteFn, Result, StartMethod, fdio};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::address::Address;
use crate::client::{ClientConn, ProxyRef, Route, key, new_uid, store};
use crate::proxy::sealed::Sealed;
use crate::proxy::{
    ArrayProxy, BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, DictProxy, EventProxy,
    JoinableQueueProxy, ListProxy, LockProxy, Managed, Namespace, Proxy, QueueProxy, RLockProxy,
    SemaphoreProxy, ValueProxy,
};
use crate::served::{Served, install};
use crate::server::{MAX_CONNECTIONS, MAX_REQUEST, ServedSocket, ServerConfig, serve};
use crate::socket::{ClientOptions, Listener, ListenerOptions};
use crate::wire::{Init, Kind, ObjectInfo, Reply, Request, Stored};

/// How long `shutdown` waits for the server to exit before killing it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A server process that owns shared objects, and this program's access to
/// it. Python: `multiprocessing.Manager()` (a started `SyncManager`), or a
/// `BaseManager` that `connect`ed to a served one.
///
/// Objects are created through the manager and used through proxies:
/// handles that any process can be given. The server ends when the manager
/// that started it is dropped or [`shutdown`](Self::shutdown), and when the
/// process that started it dies (it is a daemon), so no server outlives its
/// program.
///
/// ```
/// use multiproc as mp;
///
/// fn add_record(records: mp::ListProxy<(String, u32)>) {
///     // A panic in a child reaches the parent's `join` as an error.
///     records.push(&("Jeff".to_string(), 8)).expect("manager gone");
/// }
///
/// # fn main() -> mp::Result<()> {
/// let manager = mp::Manager::start()?;
/// let records = manager.list([("Sam".to_string(), 10)])?;
/// let mut p = mp::Process::new(add_record, (records.clone(),));
/// p.start()?;
/// p.join()?;
/// assert_eq!(records.len()?, 2);
/// # Ok(())
/// # }
/// ```
pub struct Manager {
    conn: Arc<ClientConn>,
    /// The server, when this manager started it.
    server: Option<Process<()>>,
    listener: Option<Listener>,
    address: Option<Address>,
    /// The socket Python programs reach, when served.
    python_listener: Option<Listener>,
    python_address: Option<Address>,
}

/// Options for [`Manager::builder`].
#[derive(Debug, Default)]
pub struct ManagerBuilder {
    method: Option<StartMethod>,
    serve: Option<(Address, Vec<u8>)>,
    serve_python: Option<(Address, Vec<u8>)>,
    registry: Vec<RemoteFn>,
    max_request: Option<u64>,
    listener_options: ListenerOptions,
    max_connections: Option<usize>,
}

impl ManagerBuilder {
    /// Binds a socket to serve on, if asked: ours, and what the server
    /// process needs to serve it.
    fn bind(
        &self,
        serve: Option<(Address, Vec<u8>)>,
    ) -> Result<(Option<Listener>, Option<ServedSocket>)> {
        let Some((address, authkey)) = serve else {
            return Ok((None, None));
        };
        let listener = Listener::bind_with(&address, &authkey, self.listener_options.clone())?;
        let served = ServedSocket {
            fd: listener.to_fd()?,
            address: listener.address().clone(),
            authkey,
            options: self.listener_options.clone(),
            max_connections: self.max_connections.unwrap_or(MAX_CONNECTIONS),
        };
        Ok((Some(listener), Some(served)))
    }

    /// The longest request the server accepts (default 1 GiB); a client
    /// that sends a longer one is disconnected, and only that client.
    pub fn max_message_size(mut self, bytes: u64) -> ManagerBuilder {
        self.max_request = Some(bytes);
        self
    }

    /// The start method of the server process (default: the program's).
    pub fn start_method(mut self, method: StartMethod) -> ManagerBuilder {
        self.method = Some(method);
        self
    }

    /// Also serves other programs at `address` (TCP or a Unix socket),
    /// those that [`connect`](Manager::connect) with the same `authkey`.
    /// Python: `BaseManager(address=..., authkey=...)`.
    pub fn serve_on(mut self, address: Address, authkey: &[u8]) -> ManagerBuilder {
        self.serve = Some((address, authkey.to_vec()));
        self
    }

    /// Also serves Python programs at `address` (TCP or a Unix socket), on
    /// CPython's manager protocol: a stock `BaseManager` subclass that
    /// `register`s a name and `connect`s with `authkey` gets the object
    /// [`published`](Manager::publish) under that name (`get_queue`), and
    /// a `SyncManager` client makes `dict()`, `list()`, `Queue()`,
    /// `JoinableQueue()`, `Value()`, `Lock()`, `RLock()`, `Semaphore()`,
    /// `BoundedSemaphore()`, `Event()` and `Namespace()` here. Values are
    /// then stored as pickles, which Rust proxies read and write too: they
    /// must be plain data (see the crate's pickle table), and a proxy
    /// cannot be stored in a value. Python: `BaseManager(address=...,
    /// authkey=...).get_server().serve_forever()`.
    pub fn serve_python_on(mut self, address: Address, authkey: &[u8]) -> ManagerBuilder {
        self.serve_python = Some((address, authkey.to_vec()));
        self
    }

    /// The limits of the served socket: handshake deadline, handshakes at
    /// once, the socket file's mode (see [`ListenerOptions`]).
    pub fn listener_options(mut self, options: ListenerOptions) -> ManagerBuilder {
        self.listener_options = options;
        self
    }

    /// How many other programs' connections are served at once (default
    /// 1024; each is a thread of the server). One beyond that is closed at
    /// once.
    pub fn max_connections(mut self, n: usize) -> ManagerBuilder {
        self.max_connections = Some(n.max(1));
        self
    }

    /// Lets the manager hold objects of type `S`, created with
    /// [`Manager::create`]. Python: `BaseManager.register(typeid, callable)`.
    pub fn register<S: Served>(mut self) -> ManagerBuilder {
        self.registry.push(RemoteFn::new(install::<S>));
        self
    }

    /// Starts the server process and connects to it. Python:
    /// `manager.start()`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the address cannot be bound, the errors of
    /// [`Process::start`], [`Error::Closed`] if the server died at once.
    pub fn start(self) -> Result<Manager> {
        let uid = new_uid()?;
        let (door_client, door_server) = fdio::seqpacket_pair()?;
        let (listener, served) = self.bind(self.serve.clone())?;
        let (python_listener, python) = self.bind(self.serve_python.clone())?;
        let address = listener.as_ref().map(|l| l.address().clone());
        let python_address = python_listener.as_ref().map(|l| l.address().clone());
        let config = ServerConfig {
            uid,
            door: HandoffFd::from(door_server),
            listener: served,
            python,
            registry: self.registry,
            max_request: self.max_request.unwrap_or(MAX_REQUEST),
        };
        let mut builder = Process::builder(serve, (config,))
            .name(format!("SyncManager-{}", next_number()))
            .daemon(true);
        if let Some(m) = self.method {
            builder = builder.start_method(m);
        }
        let mut server = builder.build();
        server.start()?;
        let conn = match ClientConn::get(uid, Route::Local(Arc::new(door_client))) {
            Ok(conn) => conn,
            Err(e) => {
                // The server is useless to us: make sure it is gone.
                let _ = server.kill();
                let _ = server.join_timeout(SHUTDOWN_GRACE);
                return Err(e);
            }
        };
        Ok(Manager {
            conn,
            server: Some(server),
            listener,
            address,
            python_listener,
            python_address,
        })
    }
}

fn next_number() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

impl Manager {
    /// Starts a manager with the defaults. Python: `multiprocessing.Manager()`.
    ///
    /// # Errors
    ///
    /// As [`ManagerBuilder::start`].
    pub fn start() -> Result<Manager> {
        ManagerBuilder::default().start()
    }

    /// Options: start method, network address, registered types.
    pub fn builder() -> ManagerBuilder {
        ManagerBuilder::default()
    }

    /// Connects to a manager another program serves at `address`. Python:
    /// `BaseManager(address, authkey).connect()`. Dropping the result
    /// leaves that server running.
    ///
    /// Proxies from it may be sent to other processes; one that receives
    /// them must have connected to the same manager itself first (a proxy
    /// carries no key).
    ///
    /// # Errors
    ///
    /// [`Error::Auth`] for a wrong key, [`Error::Io`] if nothing listens,
    /// [`Error::Timeout`] if the connection or the handshake takes over
    /// 10 s.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager> {
        Manager::connect_with(address, authkey, &ClientOptions::default())
    }

    /// As [`connect`](Self::connect), with these timeouts and message
    /// limit (see [`ClientOptions`]; its `reply_timeout` bounds how long
    /// the server may stay silent during any call of this manager's
    /// proxies).
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub fn connect_with(
        address: &Address,
        authkey: &[u8],
        options: &ClientOptions,
    ) -> Result<Manager> {
        Ok(Manager {
            conn: ClientConn::connect_remote(address, authkey, options)?,
            server: None,
            listener: None,
            address: Some(address.clone()),
            python_listener: None,
            python_address: None,
        })
    }

    /// Where other programs can connect, if served. Python: `address`.
    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    /// Where Python programs reach the manager, if it
    /// [serves them](ManagerBuilder::serve_python_on).
    pub fn python_address(&self) -> Option<&Address> {
        self.python_address.as_ref()
    }

    /// The server's process id, for a manager this program started.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().and_then(Process::pid)
    }

    fn make<P: Sealed>(&self, init: Init) -> Result<P> {
        self.create_as::<P>(P::info(), init)
    }

    fn create_as<P: Sealed>(&self, info: ObjectInfo, init: Init) -> Result<P> {
        match self.conn.call(&Request::Create { info, init })? {
            Reply::Created(id) => Ok(P::from_ref(Arc::new(ProxyRef {
                id,
                conn: self.conn.clone(),
            }))),
            other => Err(Error::Decode(format!("unexpected reply: {other:?}"))),
        }
    }

    /// Encodes values to store. The caller keeps `items` until the request
    /// that stores them is answered: a proxy among them, dropped sooner,
    /// would give back its hold before the server takes the stored one.
    fn store_all<T: Serialize>(&self, items: &[T]) -> Result<Vec<Stored>> {
        items.iter().map(|i| store(&self.conn, i)).collect()
    }

    /// A list holding `items`. Python: `manager.list(items)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], [`Error::Closed`] when the server is gone.
    pub fn list<T, I>(&self, items: I) -> Result<ListProxy<T>>
    where
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        let items: Vec<T> = items.into_iter().collect();
        let list = self.make(Init::List(self.store_all(&items)?));
        drop(items);
        list
    }

    /// An empty dict. Python: `manager.dict()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn dict<K, V>(&self) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.dict_from(std::iter::empty())
    }

    /// A dict holding `entries`. Python: `manager.dict(entries)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], [`Error::Closed`] when the server is gone.
    pub fn dict_from<K, V, I>(&self, entries: I) -> Result<DictProxy<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
        I: IntoIterator<Item = (K, V)>,
    {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let stored = entries
            .iter()
            .map(|(k, v)| Ok((key(&self.conn, k)?, store(&self.conn, v)?)))
            .collect::<Result<Vec<_>>>()?;
        // Kept until the server holds what they refer to (see `store_all`).
        let dict = self.make(Init::Dict(stored));
        drop(entries);
        dict
    }

    /// An empty namespace. Python: `manager.Namespace()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn namespace(&self) -> Result<Namespace> {
        self.make(Init::Namespace)
    }

    /// A single value. Python: `manager.Value(typecode, value)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], [`Error::Closed`] when the server is gone.
    pub fn value<T: Serialize + DeserializeOwned>(&self, value: T) -> Result<ValueProxy<T>> {
        self.make(Init::Value(store(&self.conn, &value)?))
    }

    /// A fixed-length array. Python: `manager.Array(typecode, sequence)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], [`Error::Closed`] when the server is gone.
    pub fn array<T, I>(&self, items: I) -> Result<ArrayProxy<T>>
    where
        T: Serialize + DeserializeOwned,
        I: IntoIterator<Item = T>,
    {
        let items: Vec<T> = items.into_iter().collect();
        let array = self.make(Init::List(self.store_all(&items)?));
        drop(items);
        array
    }

    /// An unbounded queue. Python: `manager.Queue()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn queue<T: Serialize + DeserializeOwned>(&self) -> Result<QueueProxy<T>> {
        self.make(Init::Queue { maxsize: 0 })
    }

    /// A queue of at most `maxsize` items (0: unbounded). Python:
    /// `manager.Queue(maxsize)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn queue_bounded<T: Serialize + DeserializeOwned>(
        &self,
        maxsize: usize,
    ) -> Result<QueueProxy<T>> {
        self.make(Init::Queue { maxsize })
    }

    /// A joinable queue. Python: `manager.JoinableQueue()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn joinable_queue<T: Serialize + DeserializeOwned>(&self) -> Result<JoinableQueueProxy<T>> {
        self.make(Init::Queue { maxsize: 0 })
    }

    /// A lock. Python: `manager.Lock()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn lock(&self) -> Result<LockProxy> {
        self.make(Init::Lock)
    }

    /// A re-entrant lock. Python: `manager.RLock()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn rlock(&self) -> Result<RLockProxy> {
        self.make(Init::RLock)
    }

    /// A semaphore starting at `value`. Python: `manager.Semaphore(value)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn semaphore(&self, value: u32) -> Result<SemaphoreProxy> {
        self.make(Init::Semaphore {
            value,
            bounded: false,
        })
    }

    /// A bounded semaphore. Python: `manager.BoundedSemaphore(value)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphoreProxy> {
        self.make(Init::Semaphore {
            value,
            bounded: true,
        })
    }

    /// A condition variable with its own re-entrant lock. Python:
    /// `manager.Condition()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn condition(&self) -> Result<ConditionProxy> {
        self.make(Init::Condition)
    }

    /// An event. Python: `manager.Event()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the server is gone.
    pub fn event(&self) -> Result<EventProxy> {
        self.make(Init::Event)
    }

    /// A barrier for `parties` parties. Python: `manager.Barrier(parties)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 parties.
    pub fn barrier(&self, parties: u32) -> Result<BarrierProxy> {
        self.barrier_with_timeout(parties, None)
    }

    /// A barrier whose waits time out after `timeout` unless given their
    /// own. Python: `manager.Barrier(parties, timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for 0 parties.
    pub fn barrier_with_timeout(
        &self,
        parties: u32,
        timeout: Option<Duration>,
    ) -> Result<BarrierProxy> {
        self.make(Init::Barrier { parties, timeout })
    }

    /// An object of a registered type, starting as `value`. Python:
    /// `manager.TypeId(args)` after `register`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if `S` was not registered with this manager.
    pub fn create<S: Served>(&self, value: S) -> Result<Proxy<S>> {
        let mut info = Proxy::<S>::info();
        info.type_name = S::NAME.to_string();
        self.create_as(
            info,
            Init::User {
                name: S::NAME.to_string(),
                init: multiproc_process::codec::encode(&value)?,
            },
        )
    }

    /// Names `proxy`'s object, so another program can
    /// [`lookup`](Self::lookup) it; the name keeps it alive until the
    /// server ends or the name is published again. Python: the callables
    /// given to `register` on a served manager (`get_queue`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a proxy of another manager.
    pub fn publish<P: Managed>(&self, name: &str, proxy: &P) -> Result<()> {
        let r = proxy.proxy_ref();
        if r.conn.uid != self.conn.uid {
            return Err(Error::InvalidArgument(
                "the proxy belongs to another manager".into(),
            ));
        }
        match self.conn.call(&Request::Publish(name.to_string(), r.id))? {
            Reply::Unit => Ok(()),
            other => Err(Error::Decode(format!("unexpected reply: {other:?}"))),
        }
    }

    /// The object published as `name`, as a `P`. Python: calling a
    /// registered `get_queue()` on a connected manager.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if nothing has that name,
    /// [`Error::InvalidArgument`] if it is not a `P` (kind and item type are
    /// checked).
    pub fn lookup<P: Managed>(&self, name: &str) -> Result<P> {
        let (id, found) = match self.conn.call(&Request::Lookup(name.to_string()))? {
            Reply::Found(id, info) => (id, info),
            other => return Err(Error::Decode(format!("unexpected reply: {other:?}"))),
        };
        // The session holds the object from here: the proxy gives it back.
        let r = Arc::new(ProxyRef {
            id,
            conn: self.conn.clone(),
        });
        let mut want = P::info();
        // An object a Python program made holds whatever Python put in.
        if want.kind == Kind::User || found.type_name == crate::server::PYTHON_ITEMS {
            want.type_name = found.type_name.clone();
        }
        if found != want {
            return Err(Error::InvalidArgument(format!(
                "{name} is a {:?} of {}, not a {:?} of {}",
                found.kind, found.type_name, want.kind, want.type_name
            )));
        }
        Ok(P::from_ref(r))
    }

    /// How many objects the server holds now: each lives while a proxy,
    /// a stored value or a published name refers to it. Python:
    /// `manager._number_of_objects()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the server is gone.
    pub fn number_of_objects(&self) -> Result<usize> {
        match self.conn.call(&Request::Count)? {
            Reply::Len(n) => usize::try_from(n).map_err(|_| Error::Decode("count".into())),
            other => Err(Error::Decode(format!("unexpected reply: {other:?}"))),
        }
    }

    /// Stops the server; proxies then fail with [`Error::Closed`]. Python:
    /// `manager.shutdown()`. A connected (not started) manager asks the
    /// server it connected to to stop.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if it was already gone.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let asked = self.conn.call(&Request::Shutdown).map(drop);
        if let Some(server) = self.server.take() {
            match server.join_timeout(SHUTDOWN_GRACE) {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    server.kill()?;
                    server.join_timeout(SHUTDOWN_GRACE)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.listener = None;
        self.python_listener = None;
        asked
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.server.is_some() {
            // Dropping a started manager shuts its server down, as leaving
            // Python's `with Manager() as m:` does; errors mean it is gone.
            let _ = self.stop();
        }
    }
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("uid", &format_args!("{:016x}", self.conn.uid))
            .field("pid", &self.pid())
            .field("address", &self.address)
            .finish()
    }
}
