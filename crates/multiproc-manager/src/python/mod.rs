//! A client of CPython's managers: a Rust program reaching a Python
//! `BaseManager` or `SyncManager` served on a socket, as a Python client
//! would (`m = QueueManager(address, authkey); m.connect()`).
//!
//! The protocol is CPython's own (`multiprocessing/managers.py`): every
//! message a pickled tuple over an authenticated connection. A call on the
//! server itself (`create`, `decref`, `dummy`) goes on a connection of its
//! own, opened and closed for it, as CPython's client does; each proxy
//! keeps one connection, opened with `accept_connection`, for its method
//! calls `(ident, method, args, kwds)`. Replies are `(kind, value)`:
//! `#RETURN` is the value, `#ERROR` an exception instance (read by name,
//! never imported) and `#TRACEBACK` a text. A proxy holds the reference
//! its `create` counted and gives it back with `decref` when dropped, so
//! the server's count is one per proxy, as with CPython's proxies.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::Value;

use crate::address::Address;
use crate::pickle;
use crate::socket::{ClientOptions, SocketConnection};
use crate::{Error, Result};

mod proxies;

pub use proxies::{DictProxy, ListProxy, NamespaceProxy, QueueProxy, ValueProxy};

/// A connection to a CPython manager. Python:
/// `BaseManager(address, authkey)` followed by `connect()`.
#[derive(Clone)]
pub struct Manager {
    address: Address,
    authkey: Arc<[u8]>,
    options: ClientOptions,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("python::Manager")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Connects to a CPython manager served at `address` with `authkey`:
    /// the handshake of CPython's version (HMAC-SHA256 from 3.12, MD5
    /// before), then a `dummy` call, as Python's `connect()` makes.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if nothing listens there, [`Error::Auth`] for a wrong
    /// key, [`Error::Timeout`] for a silent peer.
    pub fn connect(address: &Address, authkey: &[u8]) -> Result<Manager> {
        Manager::connect_with(address, authkey, ClientOptions::default())
    }

    /// As [`connect`](Manager::connect), with `options`: its reply timeout
    /// bounds every call that does not wait by its nature (a queue's
    /// `get` and `join` wait as long as they take, as in Python).
    ///
    /// # Errors
    ///
    /// As [`connect`](Manager::connect).
    pub fn connect_with(
        address: &Address,
        authkey: &[u8],
        options: ClientOptions,
    ) -> Result<Manager> {
        let m = Manager {
            address: address.clone(),
            authkey: authkey.into(),
            options,
        };
        m.server_call::<Value>("dummy", Vec::new())?;
        Ok(m)
    }

    fn open(&self) -> Result<SocketConnection> {
        SocketConnection::connect_with(&self.address, &self.authkey, &self.options)
    }

    /// Calls a method of the server itself on a connection of its own.
    fn server_call<R: DeserializeOwned>(&self, method: &str, args: Vec<Value>) -> Result<R> {
        let conn = self.open()?;
        match exchange(&conn, None, method, args, Some(self.options.reply_timeout))? {
            Returned::Value(v) => decoded(v),
            Returned::Proxy(token) => {
                self.give_back(&token);
                Err(Error::Decode(format!(
                    "the manager's {method} returned a proxy"
                )))
            }
        }
    }

    /// Gives back the reference the server counted for a proxy nobody
    /// asked for: one `decref`, whatever it answers (so that a manager
    /// answering with more proxies cannot make this go on).
    fn give_back(&self, token: &Token) {
        if let Ok(conn) = self.open() {
            let ident = vec![Value::String(token.ident.clone())];
            let _ = exchange(
                &conn,
                None,
                "decref",
                ident,
                Some(self.options.reply_timeout),
            );
        }
    }

    /// Makes a new object of the registered type `typeid` with `args`
    /// (`()` for none) and returns a proxy of it. Python: `m.typeid(*args)`
    /// (`m.get_queue()`, `m.dict()`, `m.Queue()`).
    ///
    /// # Errors
    ///
    /// [`Error::Python`] with the server's exception (an unknown `typeid`
    /// is a `KeyError`), [`Error::Closed`] if the manager is gone.
    pub fn create(&self, typeid: &str, args: impl Serialize) -> Result<Proxy> {
        let mut all = vec![Value::String(typeid.into())];
        all.extend(args_of(args)?);
        let (ident, exposed): (String, Vec<String>) = self.server_call("create", all)?;
        self.adopt(typeid, ident, exposed)
    }

    /// A proxy of the object `ident`, which the server counts once for
    /// us: the proxy gives that back when dropped, even if it cannot
    /// connect.
    fn adopt(&self, typeid: &str, ident: String, exposed: Vec<String>) -> Result<Proxy> {
        let holder = Holder {
            manager: self.clone(),
            ident,
        };
        let conn = self.open()?;
        let name = vec![Value::String(format!("multiproc-{}", std::process::id()))];
        let accepted = exchange(
            &conn,
            None,
            "accept_connection",
            name,
            Some(self.options.reply_timeout),
        )?;
        if let Returned::Proxy(token) = accepted {
            self.give_back(&token);
        }
        Ok(Proxy {
            holder,
            typeid: typeid.into(),
            exposed,
            conn: Mutex::new(conn),
        })
    }

    /// A proxy of the queue that `typeid` makes or returns: the
    /// `register("get_queue", callable=lambda: queue)` pattern
    /// (`m.queue("get_queue")`), or a `SyncManager`'s `m.queue("Queue")`.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub fn queue<T: Serialize + DeserializeOwned>(&self, typeid: &str) -> Result<QueueProxy<T>> {
        Ok(QueueProxy::new(self.create(typeid, ())?))
    }

    /// A new dict of a `SyncManager` (`typeid` `"dict"`), or of the type
    /// registered as `typeid`. Python: `m.dict()`.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub fn dict<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        typeid: &str,
    ) -> Result<DictProxy<K, V>> {
        Ok(DictProxy::new(self.create(typeid, ())?))
    }

    /// A new list of a `SyncManager` (`typeid` `"list"`). Python: `m.list()`.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub fn list<T: Serialize + DeserializeOwned>(&self, typeid: &str) -> Result<ListProxy<T>> {
        Ok(ListProxy::new(self.create(typeid, ())?))
    }

    /// A new `Value` of a `SyncManager`: `typecode` as Python's `array`
    /// names it (`"i"`, `"d"`, ...). Python: `m.Value(typecode, value)`.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub fn value<T: Serialize + DeserializeOwned>(
        &self,
        typecode: &str,
        value: &T,
    ) -> Result<ValueProxy<T>> {
        Ok(ValueProxy::new(self.create("Value", (typecode, value))?))
    }

    /// A new `Namespace` of a `SyncManager`. Python: `m.Namespace()`.
    ///
    /// # Errors
    ///
    /// As [`create`](Manager::create).
    pub fn namespace(&self) -> Result<NamespaceProxy> {
        Ok(NamespaceProxy::new(self.create("Namespace", ())?))
    }

    /// How many objects the server holds. Python: `m._number_of_objects()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the manager is gone.
    pub fn number_of_objects(&self) -> Result<usize> {
        self.server_call("number_of_objects", Vec::new())
    }
}

/// The reference a proxy holds on its object; given back when dropped.
struct Holder {
    manager: Manager,
    ident: String,
}

impl Drop for Holder {
    fn drop(&mut self) {
        // The manager gone: so is the object.
        let _ = self
            .manager
            .server_call::<Value>("decref", vec![Value::String(self.ident.clone())]);
    }
}

/// A proxy of an object in a CPython manager, for any method it exposes.
/// Python: the `BaseProxy` that `m.typeid()` returns.
///
/// Calls from several threads take turns on the proxy's connection.
pub struct Proxy {
    holder: Holder,
    typeid: String,
    exposed: Vec<String>,
    conn: Mutex<SocketConnection>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("python::Proxy")
            .field("typeid", &self.typeid)
            .field("ident", &self.holder.ident)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Calls `method` with `args` (a tuple, one value, or `()` for none)
    /// and decodes its result. Python: `proxy._callmethod(method, args)`.
    ///
    /// # Errors
    ///
    /// The server's exception: [`Error::Empty`] for `queue.Empty`,
    /// [`Error::Full`] for `queue.Full`, [`Error::NotFound`] for a
    /// `KeyError` (its text names the class), [`Error::Python`] for any
    /// other, with its class (a `#TRACEBACK`, such as a method the object
    /// does not expose, is `multiprocessing.managers.RemoteError` with the
    /// server's text); [`Error::Timeout`] when the server is silent past the
    /// reply timeout; [`Error::Decode`] if the result is not an `R`, or
    /// is a proxy (a method the type registered with `method_to_typeid`:
    /// [`call_proxy`](Proxy::call_proxy) takes it).
    pub fn call<R: DeserializeOwned>(&self, method: &str, args: impl Serialize) -> Result<R> {
        self.call_within(
            method,
            args,
            Some(self.holder.manager.options.reply_timeout),
        )
    }

    /// Calls a method that returns a proxy of another object (one named
    /// in the type's `method_to_typeid`). Python: `proxy._callmethod(method,
    /// args)` for such a method. The new proxy holds the reference the
    /// server counted for the reply, and reaches the object through this
    /// proxy's manager, as CPython's client does; make a typed one with
    /// `.into()` ([`QueueProxy`], [`DictProxy`], ...).
    ///
    /// # Errors
    ///
    /// As [`call`](Proxy::call); [`Error::Decode`] if the method returned
    /// a value rather than a proxy.
    pub fn call_proxy(&self, method: &str, args: impl Serialize) -> Result<Proxy> {
        let timeout = Some(self.holder.manager.options.reply_timeout);
        match self.exchange(method, args, timeout)? {
            Returned::Proxy(token) => {
                self.holder
                    .manager
                    .adopt(&token.typeid, token.ident, token.exposed)
            }
            Returned::Value(v) => {
                let mut text = String::new();
                pickle::repr_of(&v, &mut text);
                Err(Error::Decode(format!(
                    "{method} returned a value, not a proxy: {text}"
                )))
            }
        }
    }

    /// As [`call`](Proxy::call), with `silence` as the longest wait for
    /// the reply (`None`: as long as it takes).
    fn call_within<R: DeserializeOwned>(
        &self,
        method: &str,
        args: impl Serialize,
        silence: Option<Duration>,
    ) -> Result<R> {
        match self.exchange(method, args, silence)? {
            Returned::Value(v) => decoded(v),
            Returned::Proxy(token) => {
                // Not asked for: the server's count goes back at once.
                self.holder.manager.give_back(&token);
                Err(Error::Decode(format!(
                    "{method} returned a proxy of type {}: call_proxy takes it",
                    token.typeid
                )))
            }
        }
    }

    fn exchange(
        &self,
        method: &str,
        args: impl Serialize,
        silence: Option<Duration>,
    ) -> Result<Returned> {
        let args = args_of(args)?;
        let conn = self.conn.lock();
        let got = exchange(&conn, Some(&self.holder.ident), method, args, silence);
        if matches!(got, Err(Error::Timeout | Error::Io(_))) {
            // Half an exchange may be left on it.
            conn.close();
        }
        got
    }

    /// The registered type the object was made by (`"get_queue"`, `"dict"`).
    pub fn typeid(&self) -> &str {
        &self.typeid
    }

    /// The methods the object exposes. Python: `proxy._exposed_`.
    pub fn exposed(&self) -> &[String] {
        &self.exposed
    }
}

/// The arguments as the elements of a tuple: a tuple's, a list's, none
/// for `()`, or the one value.
fn args_of(args: impl Serialize) -> Result<Vec<Value>> {
    Ok(
        match serde_pickle::to_value(&args).map_err(|e| Error::Encode(e.to_string()))? {
            Value::Tuple(items) | Value::List(items) => items,
            Value::None => Vec::new(),
            one => vec![one],
        },
    )
}

/// What a call returned: a value, or a proxy of another object.
enum Returned {
    Value(Value),
    Proxy(Token),
}

/// A `#PROXY` reply: the object the server made of a method's result, and
/// counted once for the caller. Python: `multiprocessing.managers.Token`
/// (whose address the client ignores, as CPython's does: the object is in
/// the manager that answered).
struct Token {
    typeid: String,
    ident: String,
    exposed: Vec<String>,
}

impl Token {
    /// `(exposed, token)`, the token as the pickle reader leaves it:
    /// `((None, ()), (typeid, address, ident))`.
    fn of(value: Value) -> Result<Token> {
        let bad = || Error::Decode("a #PROXY reply that is not (exposed, Token)".into());
        let Value::Tuple(pair) = value else {
            return Err(bad());
        };
        let [exposed, Value::Tuple(token)] = <[Value; 2]>::try_from(pair).map_err(|_| bad())?
        else {
            return Err(bad());
        };
        let [_, Value::Tuple(state)] = <[Value; 2]>::try_from(token).map_err(|_| bad())? else {
            return Err(bad());
        };
        let [Value::String(typeid), _address, Value::String(ident)] =
            <[Value; 3]>::try_from(state).map_err(|_| bad())?
        else {
            return Err(bad());
        };
        let exposed = match exposed {
            Value::List(names) | Value::Tuple(names) => names
                .into_iter()
                .map(|n| match n {
                    Value::String(s) => Ok(s),
                    _ => Err(bad()),
                })
                .collect::<Result<_>>()?,
            Value::None => Vec::new(),
            _ => return Err(bad()),
        };
        Ok(Token {
            typeid,
            ident,
            exposed,
        })
    }
}

/// The value as an `R`.
fn decoded<R: DeserializeOwned>(value: Value) -> Result<R> {
    serde_pickle::from_value(value).map_err(|e| Error::Decode(format!("reply: {e}")))
}

/// Sends `(ident, method, args, {})` and reads the reply, waiting at most
/// `silence` for it to begin.
fn exchange(
    conn: &SocketConnection,
    ident: Option<&str>,
    method: &str,
    args: Vec<Value>,
    silence: Option<Duration>,
) -> Result<Returned> {
    let request = Value::Tuple(vec![
        ident.map_or(Value::None, |i| Value::String(i.into())),
        Value::String(method.into()),
        Value::Tuple(args),
        Value::Dict(Default::default()),
    ]);
    let bytes = serde_pickle::value_to_vec(&request, serde_pickle::SerOptions::new())
        .map_err(|e| Error::Encode(e.to_string()))?;
    conn.send_bytes(&bytes)?;
    let reply = match silence {
        Some(t) => conn.recv_bytes_timeout(t)?,
        None => conn.recv_bytes()?,
    };
    match pickle::loads_reply(&reply)? {
        (kind, Ok(value)) if kind == "#RETURN" => Ok(Returned::Value(value)),
        (kind, Err(Error::Python { class, message })) if kind == "#ERROR" => {
            Err(python_error(class, message))
        }
        (kind, Ok(value)) if kind == "#TRACEBACK" || kind == "#ERROR" => Err(Error::Python {
            class: "multiprocessing.managers.RemoteError".into(),
            message: match value {
                Value::String(text) => text,
                other => format!("{other:?}"),
            },
        }),
        (kind, Ok(value)) if kind == "#PROXY" => Ok(Returned::Proxy(Token::of(value)?)),
        (kind, Ok(Value::String(text))) if kind == "#UNSERIALIZABLE" => Err(Error::Decode(
            format!("the manager could not pickle the result: {text}"),
        )),
        (kind, got) => Err(Error::Decode(format!(
            "a manager's reply of kind {kind:?}: {got:?}"
        ))),
    }
}

/// The error for an exception a CPython manager raised.
fn python_error(class: String, message: String) -> Error {
    match class.as_str() {
        "_queue.Empty" | "queue.Empty" => Error::Empty,
        "queue.Full" => Error::Full,
        "builtins.KeyError" => Error::NotFound(format!("{class}: {message}")),
        _ => Error::Python { class, message },
    }
}
