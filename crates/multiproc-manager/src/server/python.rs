//! The server's side of CPython's manager protocol: Python programs (a
//! stock `BaseManager` subclass, a `SyncManager` client) use the objects
//! of this manager, the same ones Rust proxies use.
//!
//! Each message is a pickled `(ident, method, args, kwds)`, read by the
//! pickle reader that never imports or calls anything; each reply a
//! pickled `(kind, value)`. A call on the server (`ident` None) is one of
//! `create`, `incref`, `decref`, `accept_connection`, `dummy`,
//! `number_of_objects`, `debug_info`; a method call is mapped to the
//! object's operation, the same one a Rust proxy sends. Python's holds on
//! objects are counted explicitly, by `create`, `incref` and `decref` (as
//! CPython's server counts them), in one session of their own that no
//! connection ends. A request that cannot be served (an unknown method,
//! wrong arguments, a pickle of a class we do not read) is an `#ERROR` or
//! `#TRACEBACK` reply to its client, and the server goes on.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_pickle::{HashableValue, Value};

use super::{Cx, Server};
use crate::chan::Chan;
use crate::pickle;
use crate::socket::{Listener, SocketConnection};
use crate::wire::{Holder, Init, Kind, ObjectId, ObjectInfo, Op, Reply, Stored, WireError};

/// The session that counts Python programs' holds.
pub(super) const PYTHON_SESSION: u64 = u64::MAX;

/// The item type of an object a Python program made: Rust proxies of any
/// item type may use it.
pub(crate) const PYTHON_ITEMS: &str = "python";

/// A reply to a Python client.
enum PyReply {
    Return(Value),
    /// An exception instance: class (`module.Name`) and its argument.
    Error(&'static str, String),
    Traceback(String),
}

impl PyReply {
    fn to_pickle(&self) -> Vec<u8> {
        let tuple = |kind: &str, v: Value| Value::Tuple(vec![Value::String(kind.into()), v]);
        let plain = match self {
            PyReply::Return(v) => pickle::canonical_of(&tuple("#RETURN", v.clone())),
            PyReply::Traceback(text) => {
                pickle::canonical_of(&tuple("#TRACEBACK", Value::String(text.clone())))
            }
            PyReply::Error(class, arg) => {
                let args: Vec<&str> = if arg.is_empty() {
                    Vec::new()
                } else {
                    vec![arg]
                };
                return pickle::error_reply(class, &args);
            }
        };
        plain.unwrap_or_else(|e| {
            // A value serde-pickle cannot write (none of ours): say so.
            PyReply::Traceback(format!("the result could not be pickled: {e}")).to_pickle()
        })
    }
}

/// What a request could not be: the reply that says so.
type Refusal = PyReply;

fn invalid(why: impl Into<String>) -> Refusal {
    PyReply::Traceback(why.into())
}

impl Server {
    /// Serves Python programs: each connection that passes the handshake
    /// gets a thread, up to `max` with the Rust programs' ones.
    pub(super) fn serve_python_listener(self: Arc<Self>, listener: &Listener, max: usize) {
        self.sessions
            .lock()
            .entry(PYTHON_SESSION)
            .or_default()
            .conns += 1;
        self.accept_each(
            listener,
            max,
            "manager-python-conn",
            Server::serve_python_conn,
        );
    }

    fn serve_python_conn(&self, conn: SocketConnection) {
        /// Names each connection as a lock holder (a Python proxy has a
        /// connection per thread).
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let holder: Holder = (PYTHON_SESSION, NEXT.fetch_add(1, Ordering::Relaxed));
        let chan = Chan::Remote(conn);
        while let Ok(bytes) = chan.recv() {
            let reply = match pickle::loads_value(&bytes) {
                Ok(request) => self.python_request(&chan, holder, request),
                Err(e) => invalid(format!("the request could not be read: {e}")),
            };
            if chan.send(&reply.to_pickle()).is_err() {
                break;
            }
        }
    }

    fn python_request(&self, chan: &Chan, holder: Holder, request: Value) -> PyReply {
        let Value::Tuple(parts) = request else {
            return invalid("a request is a tuple (ident, method, args, kwds)");
        };
        let [ident, Value::String(method), args, kwds] = <[Value; 4]>::try_from(parts).unwrap_or([
            Value::None,
            Value::None,
            Value::None,
            Value::None,
        ]) else {
            return invalid("a request is a tuple (ident, method, args, kwds)");
        };
        let args = match args {
            Value::Tuple(a) | Value::List(a) => a,
            _ => return invalid("the arguments of a request are a tuple"),
        };
        let kwds = match kwds {
            Value::Dict(d) => d,
            _ => return invalid("the keyword arguments of a request are a dict"),
        };
        let args = match Args::new(args, kwds) {
            Ok(a) => a,
            Err(r) => return r,
        };
        let result = match ident {
            Value::None => self.python_server_call(&method, args),
            Value::String(ident) => self.python_method(chan, holder, &ident, &method, args),
            _ => Err(invalid("a request's ident is a str or None")),
        };
        result.unwrap_or_else(|refusal| refusal)
    }

    /// A call on the server itself.
    fn python_server_call(&self, method: &str, mut args: Args) -> Result<PyReply, Refusal> {
        Ok(PyReply::Return(match method {
            "dummy" | "accept_connection" => Value::None,
            "create" => {
                let typeid = args.str(0, "typeid")?;
                let (id, kind) = self.python_create(&typeid, &mut args)?;
                Value::Tuple(vec![
                    Value::String(format!("{id:x}")),
                    Value::Tuple(
                        self.exposed_of(id, kind)
                            .iter()
                            .map(|m| Value::String((*m).into()))
                            .collect(),
                    ),
                ])
            }
            "incref" => {
                let id = parse_ident(&args.str(0, "ident")?)?;
                if !self.session_incref(PYTHON_SESSION, id) {
                    return Err(PyReply::Error("builtins.KeyError", format!("{id:x}")));
                }
                Value::None
            }
            "decref" => {
                let id = parse_ident(&args.str(0, "ident")?)?;
                self.session_decref(PYTHON_SESSION, id);
                Value::None
            }
            "number_of_objects" => Value::I64(self.objects.lock().len() as i64),
            "debug_info" => Value::String(format!("{} objects", self.objects.lock().len())),
            other => return Err(invalid(format!("the manager has no call {other:?}"))),
        }))
    }

    /// `create(typeid, *args)`: a name published here, or one of a
    /// `SyncManager`'s types, made anew.
    fn python_create(&self, typeid: &str, args: &mut Args) -> Result<(ObjectId, Kind), Refusal> {
        let published = self.names.lock().get(typeid).copied();
        if let Some(id) = published {
            let kind = self.objects.lock().get(&id).map(|s| s.object.info.kind);
            return match kind {
                Some(kind) if self.session_incref(PYTHON_SESSION, id) => Ok((id, kind)),
                _ => Err(PyReply::Error("builtins.KeyError", typeid.into())),
            };
        }
        if let Some(make) = crate::served::python_factory(typeid) {
            let init = args.get(1).cloned().unwrap_or(Value::None);
            let object = make(init).map_err(wire_error)?;
            let info = ObjectInfo {
                kind: Kind::User,
                type_name: typeid.into(),
            };
            let id = self.insert_object(PYTHON_SESSION, info, super::State::User(object));
            return Ok((id, Kind::User));
        }
        let (kind, init) = match typeid {
            "Queue" | "JoinableQueue" => {
                let maxsize = args.int_or(1, "maxsize", 0)?;
                let kind = if typeid == "Queue" {
                    Kind::Queue
                } else {
                    Kind::JoinableQueue
                };
                (
                    kind,
                    Init::Queue {
                        maxsize: usize::try_from(maxsize.max(0)).unwrap_or(usize::MAX),
                    },
                )
            }
            "dict" => {
                let items = match args.get(1) {
                    None => Vec::new(),
                    Some(Value::Dict(d)) => d
                        .iter()
                        .map(|(k, v)| Ok((stored_key(&k.clone().into_value())?, stored(v)?)))
                        .collect::<Result<_, Refusal>>()?,
                    Some(_) => return Err(invalid("dict() takes a dict here")),
                };
                (Kind::Dict, Init::Dict(items))
            }
            "list" => {
                let items = match args.get(1) {
                    None => Vec::new(),
                    Some(Value::List(l) | Value::Tuple(l)) => {
                        l.iter().map(stored).collect::<Result<_, Refusal>>()?
                    }
                    Some(_) => return Err(invalid("list() takes a list here")),
                };
                (Kind::List, Init::List(items))
            }
            "Value" => {
                // The typecode is Python's concern; the value is kept as is.
                let value = args
                    .get(2)
                    .ok_or_else(|| invalid("Value(typecode, value)"))?;
                (Kind::Value, Init::Value(stored(value)?))
            }
            "Namespace" => (Kind::Namespace, Init::Namespace),
            "Lock" => (Kind::Lock, Init::Lock),
            "RLock" => (Kind::RLock, Init::RLock),
            "Event" => (Kind::Event, Init::Event),
            "Condition" => {
                // Its lock is its own (an RLock, as Python's default); a
                // proxy of another lock is refused before this, as a
                // pickle that is not plain data.
                if !matches!(args.arg(1, "lock"), None | Some(Value::None)) {
                    return Err(invalid(
                        "Condition(lock) is not served: a Condition has a lock of its own",
                    ));
                }
                (Kind::Condition, Init::Condition)
            }
            "Barrier" => {
                let parties = args.int(1, "parties")?;
                // (A function for its action is refused before this, as a
                // pickle that is not plain data.)
                if !matches!(args.arg(2, "action"), None | Some(Value::None)) {
                    return Err(invalid("a Barrier's action is not served"));
                }
                if parties < 1 {
                    return Err(PyReply::Error(
                        "builtins.ValueError",
                        "parties must be > 0".into(),
                    ));
                }
                let parties = u32::try_from(parties).map_err(|_| {
                    PyReply::Error(
                        "builtins.ValueError",
                        format!("a Barrier of more than {} parties is not served", u32::MAX),
                    )
                })?;
                (
                    Kind::Barrier,
                    Init::Barrier {
                        parties,
                        timeout: args.seconds_or_now(3, "timeout")?,
                    },
                )
            }
            "Semaphore" | "BoundedSemaphore" => {
                let value = args.int_or(1, "value", 1)?;
                let bounded = typeid == "BoundedSemaphore";
                (
                    if bounded {
                        Kind::BoundedSemaphore
                    } else {
                        Kind::Semaphore
                    },
                    Init::Semaphore {
                        value: u32::try_from(value).map_err(|_| {
                            PyReply::Error("builtins.ValueError", value.to_string())
                        })?,
                        bounded,
                    },
                )
            }
            other => return Err(PyReply::Error("builtins.KeyError", other.into())),
        };
        let info = ObjectInfo {
            kind,
            type_name: PYTHON_ITEMS.into(),
        };
        match self.create(PYTHON_SESSION, info, init) {
            Ok(Reply::Created(id)) => Ok((id, kind)),
            Ok(other) => Err(invalid(format!("unexpected: {other:?}"))),
            Err(e) => Err(wire_error(e)),
        }
    }

    /// A method call on an object.
    fn python_method(
        &self,
        chan: &Chan,
        holder: Holder,
        ident: &str,
        method: &str,
        args: Args,
    ) -> Result<PyReply, Refusal> {
        let id = parse_ident(ident)?;
        let object = self.objects.lock().get(&id).map(|s| s.object.clone());
        let Some(object) = object else {
            return Err(PyReply::Error("builtins.KeyError", ident.into()));
        };
        let kind = object.info.kind;
        if kind == Kind::User {
            let mut state = object.state.lock();
            let super::State::User(served) = &mut *state else {
                return Err(invalid("a registered type's object without its state"));
            };
            if !served.python_methods().contains(&method) {
                return Err(invalid(format!(
                    "method {method:?} of {} is not exposed",
                    object.info.type_name
                )));
            }
            let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                served.call_python(method, args.positional)
            }));
            return match called {
                Ok(Ok(v)) => Ok(PyReply::Return(v)),
                Ok(Err(e)) => Err(wire_error(e)),
                Err(panic) => Err(PyReply::Traceback(format!(
                    "{method} panicked: {}",
                    multiproc_process::panic_message(&*panic)
                ))),
            };
        }
        if !exposed(kind).contains(&method) {
            return Err(invalid(format!(
                "method {method:?} of {kind:?} is not exposed"
            )));
        }
        let cx = Cx {
            server: self,
            session: PYTHON_SESSION,
            chan,
            beat: Cell::new(Instant::now()),
            heartbeat: None,
        };
        let call = |op: Op| object.call(&cx, op).map_err(wire_error);
        let value = |op: Op| call(op).and_then(reply_value);
        let unit = |op: Op| call(op).map(|_| PyReply::Return(Value::None));
        let ret = |v: Value| Ok(PyReply::Return(v));
        let mut args = args;
        match (kind, method) {
            // Queues.
            (Kind::Queue | Kind::JoinableQueue, "put") => {
                let item = stored(args.need(0, "item")?)?;
                unit(Op::Put(item, args.wait(1, 2)?))
            }
            (Kind::Queue | Kind::JoinableQueue, "put_nowait") => unit(Op::Put(
                stored(args.need(0, "item")?)?,
                Some(Duration::ZERO),
            )),
            (Kind::Queue | Kind::JoinableQueue, "get") => value(Op::Take(args.wait(0, 1)?)),
            (Kind::Queue | Kind::JoinableQueue, "get_nowait") => {
                value(Op::Take(Some(Duration::ZERO)))
            }
            (Kind::Queue | Kind::JoinableQueue, "qsize") => value(Op::QSize),
            (Kind::Queue | Kind::JoinableQueue, "empty") => {
                ret(Value::Bool(len_of(call(Op::QSize)?)? == 0))
            }
            (Kind::Queue | Kind::JoinableQueue, "full") => {
                let max = len_of(call(Op::MaxSize)?)?;
                ret(Value::Bool(max > 0 && len_of(call(Op::QSize)?)? >= max))
            }
            (Kind::JoinableQueue, "task_done") => unit(Op::TaskDone),
            (Kind::JoinableQueue, "join") => unit(Op::Join(None)),
            // Dicts.
            (Kind::Dict, "__setitem__") => {
                let key = stored_key(args.need(0, "key")?)?;
                unit(Op::DictInsert(key, stored(args.need(1, "value")?)?))
            }
            (Kind::Dict, "__getitem__") => {
                let k = args.need(0, "key")?.clone();
                match call(Op::DictGet(stored_key(&k)?))? {
                    Reply::Maybe(None) => Err(key_error(&k)),
                    other => reply_value(other),
                }
            }
            (Kind::Dict, "get") => {
                let key = stored_key(args.need(0, "key")?)?;
                match call(Op::DictGet(key))? {
                    Reply::Maybe(None) => ret(args.get(1).cloned().unwrap_or(Value::None)),
                    other => reply_value(other),
                }
            }
            (Kind::Dict, "pop" | "__delitem__") => {
                let k = args.need(0, "key")?.clone();
                match call(Op::DictRemove(stored_key(&k)?))? {
                    Reply::Maybe(None) => match args.get(1) {
                        Some(default) if method == "pop" => ret(default.clone()),
                        _ => Err(key_error(&k)),
                    },
                    _ if method == "__delitem__" => ret(Value::None),
                    other => reply_value(other),
                }
            }
            (Kind::Dict, "setdefault") => {
                let key = stored_key(args.need(0, "key")?)?;
                let default = stored(args.get(1).unwrap_or(&Value::None))?;
                value(Op::DictSetDefault(key, default))
            }
            (Kind::Dict, "__contains__") => {
                value(Op::DictContains(stored_key(args.need(0, "key")?)?))
            }
            (Kind::Dict | Kind::List, "__len__") => value(Op::Len),
            (Kind::Dict, "clear") => unit(Op::Clear),
            (Kind::Dict, "keys" | "values" | "items" | "copy" | "popitem") => {
                let op = match method {
                    "keys" => Op::DictKeys,
                    "values" => Op::DictValues,
                    "popitem" => Op::DictPopItem,
                    _ => Op::DictItems,
                };
                let got = call(op)?;
                let reply = reply_value(got)?;
                match (method, reply) {
                    ("copy", PyReply::Return(Value::List(items))) => {
                        let mut d = std::collections::BTreeMap::new();
                        for item in items {
                            if let Value::Tuple(mut kv) = item
                                && kv.len() == 2
                                && let (Some(v), Some(k)) = (kv.pop(), kv.pop())
                            {
                                let k = k
                                    .into_hashable()
                                    .map_err(|_| invalid("an unhashable key"))?;
                                d.insert(k, v);
                            }
                        }
                        ret(Value::Dict(d))
                    }
                    ("popitem", PyReply::Return(Value::List(mut items))) => match items.pop() {
                        Some(kv) => ret(kv),
                        None => Err(PyReply::Error(
                            "builtins.KeyError",
                            "popitem(): dictionary is empty".into(),
                        )),
                    },
                    (_, other) => Ok(other),
                }
            }
            (Kind::Dict, "update") => {
                let items = match args.need(0, "other")? {
                    Value::Dict(d) => d
                        .iter()
                        .map(|(k, v)| Ok((stored_key(&k.clone().into_value())?, stored(v)?)))
                        .collect::<Result<Vec<_>, Refusal>>()?,
                    _ => return Err(invalid("update() takes a dict here")),
                };
                unit(Op::DictUpdate(items))
            }
            // Lists.
            (Kind::List, "append") => unit(Op::Push(stored(args.need(0, "item")?)?)),
            (Kind::List, "extend") => match args.need(0, "items")? {
                Value::List(l) | Value::Tuple(l) => {
                    unit(Op::Extend(l.iter().map(stored).collect::<Result<_, _>>()?))
                }
                _ => Err(invalid("extend() takes a list here")),
            },
            (Kind::List, "insert") => {
                let i = args.int(0, "index")?;
                unit(Op::Insert(i, stored(args.need(1, "item")?)?))
            }
            (Kind::List, "__getitem__") => value(Op::Get(args.int(0, "index")?)),
            (Kind::List, "__setitem__") => {
                let i = args.int(0, "index")?;
                unit(Op::Set(i, stored(args.need(1, "item")?)?))
            }
            (Kind::List, "pop") => value(Op::Pop(args.get(0).map(int_of).transpose()?)),
            (Kind::List, "index") => value(Op::Index(stored_key(args.need(0, "item")?)?)),
            (Kind::List, "count") => value(Op::Count(stored_key(args.need(0, "item")?)?)),
            (Kind::List, "remove") => unit(Op::RemoveValue(stored_key(args.need(0, "item")?)?)),
            (Kind::List, "__contains__") => value(Op::Contains(stored_key(args.need(0, "item")?)?)),
            (Kind::List, "reverse") => unit(Op::Reverse),
            // Values and namespaces.
            (Kind::Value, "get") => value(Op::ValueGet),
            (Kind::Value, "set") => unit(Op::ValueSet(stored(args.need(0, "value")?)?)),
            (Kind::Namespace, "__getattribute__") => {
                let name = args.str(0, "name")?;
                match object.call(&cx, Op::NsGet(name.clone())) {
                    Err(WireError::NotFound(_)) => Err(PyReply::Error(
                        "builtins.AttributeError",
                        format!("'Namespace' object has no attribute '{name}'"),
                    )),
                    got => reply_value(got.map_err(wire_error)?),
                }
            }
            (Kind::Namespace, "__setattr__") => {
                let name = args.str(0, "name")?;
                unit(Op::NsSet(name, stored(args.need(1, "value")?)?))
            }
            (Kind::Namespace, "__delattr__") => unit(Op::NsRemove(args.str(0, "name")?)),
            // Locks and semaphores: `acquire(blocking=True, timeout=None)`.
            (
                Kind::Lock
                | Kind::RLock
                | Kind::Condition
                | Kind::Semaphore
                | Kind::BoundedSemaphore,
                "acquire",
            ) => {
                let wait = acquire_wait(kind, &args)?;
                match object.call(&cx, Op::Acquire(holder, wait)) {
                    Ok(_) => ret(Value::Bool(true)),
                    Err(WireError::Timeout | WireError::WouldBlock) => ret(Value::Bool(false)),
                    Err(e) => Err(wire_error(e)),
                }
            }
            (Kind::Lock | Kind::Semaphore | Kind::BoundedSemaphore, "release") => {
                unit(Op::Release(holder))
            }
            (Kind::RLock | Kind::Condition, "release") => {
                owned(object.call(&cx, Op::Release(holder)), "release")
            }
            // Conditions: the lock must be held, as in Python.
            (Kind::Condition, "wait") => {
                let wait = args.seconds_or_now(0, "timeout")?;
                owned(object.call(&cx, Op::CondWait(holder, wait)), "wait on")
            }
            (Kind::Condition, "notify" | "notify_all") => {
                let n = if method == "notify" {
                    u32::try_from(args.int_or(0, "n", 1)?.max(0)).unwrap_or(u32::MAX)
                } else {
                    u32::MAX
                };
                owned(object.call(&cx, Op::CondNotify(holder, n)), "notify on")
            }
            // Barriers: `parties`, `n_waiting` and `broken` are attributes.
            (Kind::Barrier, "wait") => value(Op::BarrierWait(args.seconds_or_now(0, "timeout")?)),
            (Kind::Barrier, "abort") => unit(Op::BarrierAbort),
            (Kind::Barrier, "reset") => unit(Op::BarrierReset),
            (Kind::Barrier, "__getattribute__") => {
                let name = args.str(0, "name")?;
                let Reply::Barrier {
                    parties,
                    waiting,
                    broken,
                } = call(Op::BarrierState)?
                else {
                    return Err(invalid("a barrier's state was not a barrier's"));
                };
                match name.as_str() {
                    "parties" => ret(Value::I64(i64::from(parties))),
                    // As CPython: none wait at a broken barrier.
                    "n_waiting" => ret(Value::I64(if broken { 0 } else { i64::from(waiting) })),
                    "broken" => ret(Value::Bool(broken)),
                    _ => Err(PyReply::Error(
                        "builtins.AttributeError",
                        format!("'Barrier' object has no attribute '{name}'"),
                    )),
                }
            }
            // Events.
            (Kind::Event, "set") => unit(Op::EventSet),
            (Kind::Event, "clear") => unit(Op::EventClear),
            (Kind::Event, "is_set") => value(Op::EventIsSet),
            (Kind::Event, "wait") => value(Op::EventWait(args.seconds_or_now(0, "timeout")?)),
            _ => Err(invalid(format!(
                "method {method:?} of {kind:?} is not served"
            ))),
        }
    }
}

impl Server {
    /// What `create` tells a Python proxy it may call.
    fn exposed_of(&self, id: ObjectId, kind: Kind) -> Vec<&'static str> {
        if kind != Kind::User {
            return exposed(kind).to_vec();
        }
        let object = self.objects.lock().get(&id).map(|s| s.object.clone());
        object.map_or_else(Vec::new, |o| match &*o.state.lock() {
            super::State::User(served) => served.python_methods().to_vec(),
            _ => Vec::new(),
        })
    }
}

/// The methods a Python proxy of `kind` may call (what `create` tells it).
fn exposed(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Queue => &[
            "empty",
            "full",
            "get",
            "get_nowait",
            "put",
            "put_nowait",
            "qsize",
        ],
        Kind::JoinableQueue => &[
            "empty",
            "full",
            "get",
            "get_nowait",
            "join",
            "put",
            "put_nowait",
            "qsize",
            "task_done",
        ],
        Kind::Dict => &[
            "__contains__",
            "__delitem__",
            "__getitem__",
            "__len__",
            "__setitem__",
            "clear",
            "copy",
            "get",
            "items",
            "keys",
            "pop",
            "popitem",
            "setdefault",
            "update",
            "values",
        ],
        Kind::List => &[
            "__contains__",
            "__getitem__",
            "__len__",
            "__setitem__",
            "append",
            "count",
            "extend",
            "index",
            "insert",
            "pop",
            "remove",
            "reverse",
        ],
        Kind::Value => &["get", "set"],
        Kind::Namespace => &["__getattribute__", "__setattr__", "__delattr__"],
        Kind::Lock | Kind::RLock | Kind::Semaphore | Kind::BoundedSemaphore => {
            &["acquire", "release"]
        }
        Kind::Event => &["is_set", "set", "clear", "wait"],
        Kind::Condition => &["acquire", "release", "wait", "notify", "notify_all"],
        Kind::Barrier => &["__getattribute__", "wait", "abort", "reset"],
        _ => &[],
    }
}

/// A request's arguments: positional ones, and keyword ones by name.
struct Args {
    positional: Vec<Value>,
    named: std::collections::BTreeMap<HashableValue, Value>,
}

impl Args {
    fn new(
        positional: Vec<Value>,
        named: std::collections::BTreeMap<HashableValue, Value>,
    ) -> Result<Args, Refusal> {
        Ok(Args { positional, named })
    }

    fn get(&self, i: usize) -> Option<&Value> {
        self.positional.get(i)
    }

    /// Argument `i`, or the keyword `name`.
    fn arg(&self, i: usize, name: &str) -> Option<&Value> {
        self.positional
            .get(i)
            .or_else(|| self.named.get(&HashableValue::String(name.into())))
    }

    fn need(&self, i: usize, name: &str) -> Result<&Value, Refusal> {
        self.arg(i, name).ok_or_else(|| {
            PyReply::Error("builtins.TypeError", format!("missing argument '{name}'"))
        })
    }

    fn str(&mut self, i: usize, name: &str) -> Result<String, Refusal> {
        match self.need(i, name)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(PyReply::Error(
                "builtins.TypeError",
                format!("'{name}' must be a str"),
            )),
        }
    }

    fn int(&self, i: usize, name: &str) -> Result<i64, Refusal> {
        int_of(self.need(i, name)?)
    }

    fn int_or(&self, i: usize, name: &str, default: i64) -> Result<i64, Refusal> {
        self.arg(i, name).map_or(Ok(default), int_of)
    }

    fn bool_or(&self, i: usize, name: &str, default: bool) -> Result<bool, Refusal> {
        match self.arg(i, name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::I64(n)) => Ok(*n != 0),
            Some(_) => Err(PyReply::Error(
                "builtins.TypeError",
                format!("'{name}' must be a bool"),
            )),
        }
    }

    /// A timeout in seconds, at once if negative (as `Condition.wait`,
    /// `Event.wait` and `Barrier.wait` take one); `None` waits as long as it
    /// takes.
    fn seconds_or_now(&self, i: usize, name: &str) -> Result<Option<Duration>, Refusal> {
        match self.arg(i, name) {
            Some(Value::F64(s)) if *s < 0.0 => Ok(Some(Duration::ZERO)),
            Some(Value::I64(s)) if *s < 0 => Ok(Some(Duration::ZERO)),
            _ => self.seconds(i, name),
        }
    }

    /// A timeout in seconds: `None` (or a negative one, as `Lock.acquire`
    /// takes -1) waits as long as it takes.
    fn seconds(&self, i: usize, name: &str) -> Result<Option<Duration>, Refusal> {
        let secs = match self.arg(i, name) {
            None | Some(Value::None) => return Ok(None),
            Some(Value::F64(s)) => *s,
            Some(Value::I64(s)) => *s as f64,
            Some(_) => {
                return Err(PyReply::Error(
                    "builtins.TypeError",
                    format!("'{name}' must be a number"),
                ));
            }
        };
        if secs < 0.0 {
            return Ok(None);
        }
        Duration::try_from_secs_f64(secs)
            .map(Some)
            .map_err(|_| PyReply::Error("builtins.ValueError", format!("'{name}' is too large")))
    }

    /// A queue's `(block=True, timeout=None)` at positions `block` and
    /// `timeout`.
    fn wait(&self, block: usize, timeout: usize) -> Result<Option<Duration>, Refusal> {
        if !self.bool_or(block, "block", true)? {
            return Ok(Some(Duration::ZERO));
        }
        match self.seconds(timeout, "timeout")? {
            Some(t) => Ok(Some(t)),
            None if matches!(self.arg(timeout, "timeout"), Some(Value::F64(s)) if *s < 0.0) => {
                Err(PyReply::Error(
                    "builtins.ValueError",
                    "'timeout' must be a non-negative number".into(),
                ))
            }
            None => Ok(None),
        }
    }
}

fn int_of(v: &Value) -> Result<i64, Refusal> {
    match v {
        Value::I64(n) => Ok(*n),
        _ => Err(PyReply::Error(
            "builtins.TypeError",
            "an int is needed".into(),
        )),
    }
}

fn parse_ident(ident: &str) -> Result<ObjectId, Refusal> {
    ObjectId::from_str_radix(ident, 16)
        .map_err(|_| PyReply::Error("builtins.KeyError", ident.into()))
}

/// A Python value as a stored one: its canonical pickle.
fn stored(v: &Value) -> Result<Stored, Refusal> {
    Ok(Stored {
        bytes: stored_key(v)?,
        refs: Vec::new(),
    })
}

fn stored_key(v: &Value) -> Result<Vec<u8>, Refusal> {
    pickle::canonical_of(v).map_err(|e| PyReply::Error("builtins.TypeError", e.to_string()))
}

/// A stored value as a Python one (it is a pickle: see `stored`).
fn loaded(s: &Stored) -> Result<Value, Refusal> {
    pickle::loads_value(&s.bytes).map_err(|e| {
        invalid(format!(
            "a value stored by a Rust program cannot be read as a pickle: {e}"
        ))
    })
}

fn len_of(reply: Reply) -> Result<usize, Refusal> {
    match reply {
        Reply::Len(n) => usize::try_from(n).map_err(|_| invalid("a length")),
        other => Err(invalid(format!("unexpected: {other:?}"))),
    }
}

fn key_error(key: &Value) -> Refusal {
    let mut text = String::new();
    pickle::repr_of(key, &mut text);
    PyReply::Error("builtins.KeyError", text)
}

/// An operation's reply as the value a Python caller gets.
fn reply_value(reply: Reply) -> Result<PyReply, Refusal> {
    let v = match reply {
        Reply::Unit => Value::None,
        Reply::Bool(b) => Value::Bool(b),
        Reply::Len(n) => Value::I64(i64::try_from(n).unwrap_or(i64::MAX)),
        Reply::U32(n) => Value::I64(i64::from(n)),
        Reply::Value(s) | Reply::Maybe(Some(s)) => loaded(&s)?,
        Reply::Maybe(None) => Value::None,
        Reply::Values(items) => Value::List(items.iter().map(loaded).collect::<Result<_, _>>()?),
        Reply::Keys(keys) => Value::List(
            keys.iter()
                .map(|k| pickle::loads_value(k).map_err(|e| invalid(format!("a key: {e}"))))
                .collect::<Result<_, _>>()?,
        ),
        Reply::Items(items) => Value::List(
            items
                .iter()
                .map(|(k, v)| {
                    let k = pickle::loads_value(k).map_err(|e| invalid(format!("a key: {e}")))?;
                    Ok(Value::Tuple(vec![k, loaded(v)?]))
                })
                .collect::<Result<_, Refusal>>()?,
        ),
        other => return Err(invalid(format!("a reply Python cannot take: {other:?}"))),
    };
    Ok(PyReply::Return(v))
}

/// CPython's `threading.TIMEOUT_MAX` on Linux, in seconds.
const TIMEOUT_MAX: f64 = 9_223_372_036.0;

/// The wait of `acquire(blocking=True, timeout=None)`, checked as
/// CPython checks it: a lock's (C's `_thread` lock) takes -1 for "as long
/// as it takes" and no other negative, a semaphore's (`threading`'s) takes
/// a negative one as "at once"; neither takes a timeout without blocking.
fn acquire_wait(kind: Kind, args: &Args) -> Result<Option<Duration>, Refusal> {
    let semaphore = matches!(kind, Kind::Semaphore | Kind::BoundedSemaphore);
    let blocking = args.bool_or(0, "blocking", true)?;
    let timeout = match args.arg(1, "timeout") {
        None | Some(Value::None) => None,
        Some(Value::I64(t)) => Some(*t as f64),
        Some(Value::F64(t)) => Some(*t),
        Some(Value::Bool(t)) => Some(f64::from(u8::from(*t))),
        Some(_) => {
            return Err(PyReply::Error(
                "builtins.TypeError",
                "'timeout' must be a number".into(),
            ));
        }
    };
    if timeout.is_some_and(f64::is_nan) {
        return Err(PyReply::Error(
            "builtins.ValueError",
            "Invalid value NaN (not a number)".into(),
        ));
    }
    if !blocking {
        let default = if semaphore {
            timeout.is_none()
        } else {
            timeout.is_none_or(|t| t == -1.0)
        };
        if !default {
            let why = if semaphore {
                "can't specify timeout for non-blocking acquire"
            } else {
                "can't specify a timeout for a non-blocking call"
            };
            return Err(PyReply::Error("builtins.ValueError", why.into()));
        }
        return Ok(Some(Duration::ZERO));
    }
    match timeout {
        None => Ok(None),
        Some(t) if t < 0.0 && semaphore => Ok(Some(Duration::ZERO)),
        Some(-1.0) => Ok(None),
        Some(t) if t < 0.0 => Err(PyReply::Error(
            "builtins.ValueError",
            "timeout value must be a non-negative number".into(),
        )),
        // A lock refuses past `threading.TIMEOUT_MAX`; a semaphore only
        // looks at its timeout if it has to wait.
        Some(t) if t > TIMEOUT_MAX && !semaphore => Err(PyReply::Error(
            "builtins.OverflowError",
            "timeout value is too large".into(),
        )),
        Some(t) => Ok(Duration::try_from_secs_f64(t).ok()),
    }
}

/// The reply to a call on an owned lock (an `RLock`, a `Condition`'s):
/// Python's `RuntimeError` for one its caller does not hold.
fn owned(got: Result<Reply, WireError>, what: &str) -> Result<PyReply, Refusal> {
    match got {
        Err(WireError::NotHeld) => Err(PyReply::Error(
            "builtins.RuntimeError",
            format!("cannot {what} un-acquired lock"),
        )),
        got => reply_value(got.map_err(wire_error)?),
    }
}

/// A server error as the exception a Python client expects.
fn wire_error(e: WireError) -> Refusal {
    match e {
        WireError::Empty | WireError::Timeout => PyReply::Error("queue.Empty", String::new()),
        WireError::Full | WireError::WouldBlock => PyReply::Error("queue.Full", String::new()),
        WireError::NotHeld => {
            PyReply::Error("builtins.RuntimeError", "release unlocked lock".into())
        }
        WireError::TooManyTaskDone => PyReply::Error(
            "builtins.ValueError",
            "task_done() called too many times".into(),
        ),
        WireError::NotFound(what) => PyReply::Error("builtins.KeyError", what),
        WireError::BrokenBarrier => PyReply::Error("threading.BrokenBarrierError", String::new()),
        WireError::Invalid(why) if why.contains("out of range") || why.contains("empty list") => {
            PyReply::Error("builtins.IndexError", why)
        }
        WireError::Invalid(why) => PyReply::Error("builtins.ValueError", why),
        other => PyReply::Traceback(format!("{other:?}")),
    }
}
