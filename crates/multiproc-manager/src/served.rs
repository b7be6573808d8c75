//! User types served by a manager: Python's `BaseManager.register`.
//!
//! A type opts in by implementing [`Served`]: its requests and replies are
//! its own serde types, so a client can call exactly the operations the
//! request type names, nothing else. The manager's builder lists the types
//! ([`ManagerBuilder::register`](crate::ManagerBuilder::register)); each
//! crosses to the server process as a function that installs it there.

use std::collections::HashMap;

use multiproc_process::codec;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::Value;

use crate::wire::WireError;

/// A type a manager can hold and serve: the twin of a class given to
/// Python's `BaseManager.register`, with its exposed methods as a request
/// enum.
///
/// ```
/// use multiproc as mp;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Counter { n: i64 }
///
/// #[derive(Serialize, Deserialize)]
/// enum CounterOp { Add(i64), Get }
///
/// impl mp::Served for Counter {
///     const NAME: &'static str = "Counter";
///     type Request = CounterOp;
///     type Reply = i64;
///     fn handle(&mut self, op: CounterOp) -> i64 {
///         if let CounterOp::Add(k) = op { self.n += k; }
///         self.n
///     }
/// }
///
/// # fn main() -> mp::Result<()> {
/// let manager = mp::Manager::builder().register::<Counter>().start()?;
/// let counter = manager.create(Counter { n: 1 })?;
/// assert_eq!(counter.call(CounterOp::Add(41))?, 42);
/// # Ok(())
/// # }
/// ```
pub trait Served: Serialize + DeserializeOwned + Send + 'static {
    /// The name the type is registered under; clients and server must
    /// agree on it (Python: the `typeid` given to `register`).
    const NAME: &'static str;
    /// What a client may ask.
    type Request: Serialize + DeserializeOwned;
    /// What the server answers.
    type Reply: Serialize + DeserializeOwned;
    /// Serves one request, in the server process. A panic here reaches the
    /// caller as [`Error::TaskPanicked`](crate::Error::TaskPanicked); the
    /// object and the server go on.
    fn handle(&mut self, request: Self::Request) -> Self::Reply;

    /// The methods Python programs may call, for a manager that
    /// [serves them](crate::ManagerBuilder::serve_python_on): the method
    /// table of a class given to Python's `register`. Each name is a
    /// variant of [`Request`](Served::Request) as serde names it (rename
    /// with `#[serde(rename = "add")]`): a unit variant for a method
    /// without arguments, a newtype variant for one argument, a tuple
    /// variant for several. A Python `m.NAME(init)` makes the object from
    /// `init` as serde-pickle reads it (a struct from a dict of its
    /// fields). Empty, the default: Python programs cannot make it.
    const PYTHON_METHODS: &'static [&'static str] = &[];
}

/// A served object with its types erased.
pub(crate) trait ErasedServed: Send {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, WireError>;
    /// A Python program's call of `method` with `args`.
    fn call_python(&mut self, method: &str, args: Vec<Value>) -> Result<Value, WireError>;
    /// What Python programs may call.
    fn python_methods(&self) -> &'static [&'static str];
}

impl<S: Served> ErasedServed for S {
    fn call(&mut self, request: &[u8]) -> Result<Vec<u8>, WireError> {
        let request: S::Request =
            codec::decode(request).map_err(|e| WireError::Decode(e.to_string()))?;
        let reply = self.handle(request);
        codec::encode(&reply).map_err(|e| WireError::Invalid(e.to_string()))
    }

    fn call_python(&mut self, method: &str, mut args: Vec<Value>) -> Result<Value, WireError> {
        if !S::PYTHON_METHODS.contains(&method) {
            return Err(WireError::Invalid(format!(
                "method {method:?} of {} is not exposed",
                S::NAME
            )));
        }
        // serde's external tagging: "name", {"name": arg}, {"name": (args)}.
        let name = Value::String(method.into());
        let request = match args.len() {
            0 => name,
            1 => Value::Dict([(name.into_hashable().map_err(bad)?, args.remove(0))].into()),
            _ => Value::Dict([(name.into_hashable().map_err(bad)?, Value::Tuple(args))].into()),
        };
        let request: S::Request = serde_pickle::from_value(request).map_err(|e| {
            WireError::Invalid(format!("the arguments of {method} do not fit: {e}"))
        })?;
        let reply = self.handle(request);
        serde_pickle::to_value(&reply).map_err(bad)
    }

    fn python_methods(&self) -> &'static [&'static str] {
        S::PYTHON_METHODS
    }
}

fn bad(e: impl std::fmt::Display) -> WireError {
    WireError::Invalid(e.to_string())
}

type Factory = fn(&[u8]) -> Result<Box<dyn ErasedServed>, WireError>;
type PythonFactory = fn(Value) -> Result<Box<dyn ErasedServed>, WireError>;

/// The types installed in this (server) process.
static REGISTRY: Mutex<Option<HashMap<&'static str, (Factory, PythonFactory)>>> = Mutex::new(None);

fn make<S: Served>(init: &[u8]) -> Result<Box<dyn ErasedServed>, WireError> {
    let value: S = codec::decode(init).map_err(|e| WireError::Decode(e.to_string()))?;
    Ok(Box::new(value))
}

fn make_python<S: Served>(init: Value) -> Result<Box<dyn ErasedServed>, WireError> {
    if S::PYTHON_METHODS.is_empty() {
        return Err(WireError::NotFound(format!(
            "type {} (not served to Python programs)",
            S::NAME
        )));
    }
    let value: S = serde_pickle::from_value(init)
        .map_err(|e| WireError::Invalid(format!("{} cannot be made from that: {e}", S::NAME)))?;
    Ok(Box::new(value))
}

/// Installs `S` in this process's registry; sent to the server process as
/// a [`RemoteFn`](multiproc_process::RemoteFn).
pub(crate) fn install<S: Served>() {
    REGISTRY
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(S::NAME, (make::<S>, make_python::<S>));
}

/// How to build the type registered as `name`.
pub(crate) fn factory(name: &str) -> Option<Factory> {
    REGISTRY
        .lock()
        .as_ref()
        .and_then(|r| r.get(name).map(|f| f.0))
}

/// How to build the type registered as `name` for a Python program.
pub(crate) fn python_factory(name: &str) -> Option<PythonFactory> {
    REGISTRY
        .lock()
        .as_ref()
        .and_then(|r| r.get(name).map(|f| f.1))
}
