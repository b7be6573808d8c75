//! Typed proxies to a manager's objects.
//!
//! A proxy is a handle: clone it, pass it to a child as an argument (any
//! start method), send it through a `Connection`, or store it inside another
//! managed object, where it stays live (a dict of lists: a child appending
//! to `d.get(&k)?` changes the list in the manager). A plain value read from
//! a manager is a copy: changing the `Vec` that `list.get(0)?` returned does
//! not change the list. Python has the same two cases (nested proxies, and
//! "modifications to mutable values in a dict proxy are not propagated").
//!
//! Values cross as serde values. Equality on the server (`contains`,
//! `index`, `remove`, dict keys) compares encodings, which for the usual
//! types is equality of values (floats: `-0.0` and `0.0` differ, a NaN
//! equals itself).

use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{ProxyRef, load, store};
use crate::served::Served;
use crate::wire::{Kind, ObjectInfo, Op, Reply, Stored};

/// A proxy type: what [`Manager::publish`](crate::Manager::publish) and
/// [`Manager::lookup`](crate::Manager::lookup) take and give.
pub trait Managed: sealed::Sealed {}

pub(crate) mod sealed {
    use super::*;

    /// What the manager needs of a proxy type (sealed: only this crate's
    /// proxies are `Managed`).
    #[allow(private_interfaces)]
    pub trait Sealed: Sized {
        fn info() -> ObjectInfo;
        fn from_ref(r: Arc<ProxyRef>) -> Self;
        fn proxy_ref(&self) -> &Arc<ProxyRef>;
    }
}

fn unexpected(reply: Reply) -> Error {
    Error::Decode(format!("unexpected reply from the manager: {reply:?}"))
}

macro_rules! proxy_type {
    ($name:ident [$($g:ident),*], $kind:expr, $tn:ty) => {
        impl<$($g),*> Clone for $name<$($g),*> {
            fn clone(&self) -> Self {
                $name { r: self.r.clone(), _t: std::marker::PhantomData }
            }
        }

        impl<$($g),*> std::fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.r)
            }
        }

        impl<$($g),*> serde::Serialize for $name<$($g),*> {
            fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> std::result::Result<Ser::Ok, Ser::Error> {
                self.r.serialize(s)
            }
        }

        impl<'de, $($g),*> serde::Deserialize<'de> for $name<$($g),*> {
            fn deserialize<De: serde::Deserializer<'de>>(d: De) -> std::result::Result<Self, De::Error> {
                Ok($name {
                    r: std::sync::Arc::new(<crate::client::ProxyRef as serde::Deserialize>::deserialize(d)?),
                    _t: std::marker::PhantomData,
                })
            }
        }

        // The sealed trait's items name crate types on purpose: no other
        // crate can implement or call them.
        #[allow(private_interfaces)]
        impl<$($g),*> crate::proxy::sealed::Sealed for $name<$($g),*> {
            fn info() -> crate::wire::ObjectInfo {
                crate::wire::ObjectInfo { kind: $kind, type_name: std::any::type_name::<$tn>().to_string() }
            }
            fn from_ref(r: std::sync::Arc<crate::client::ProxyRef>) -> Self {
                $name { r, _t: std::marker::PhantomData }
            }
            fn proxy_ref(&self) -> &std::sync::Arc<crate::client::ProxyRef> {
                &self.r
            }
        }

        impl<$($g),*> crate::proxy::Managed for $name<$($g),*> {}
    };
}

// After the macro, which they use.
mod dict;
mod list;
mod queue;
mod sync;
mod value;

pub use dict::{DictProxy, Namespace};
pub use list::ListProxy;
pub use queue::{JoinableQueueProxy, QueueProxy};
pub use sync::{
    BarrierProxy, BoundedSemaphoreProxy, ConditionProxy, EventProxy, LockProxy,
    ManagedConditionGuard, ManagedGuard, RLockProxy, SemaphoreProxy,
};
pub use value::{ArrayProxy, ValueProxy};

impl ProxyRef {
    fn put<T: Serialize + ?Sized>(&self, value: &T) -> Result<Stored> {
        store(&self.conn, value)
    }

    fn get<T: DeserializeOwned>(&self, s: Stored) -> Result<T> {
        load(&self.conn, &s.bytes)
    }

    fn value<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        self.as_value(self.call(op)?)
    }

    async fn value_async<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        self.as_value(self.call_async(op).await?)
    }

    fn as_value<T: DeserializeOwned>(&self, reply: Reply) -> Result<T> {
        match reply {
            Reply::Value(s) => self.get(s),
            other => Err(unexpected(other)),
        }
    }

    fn maybe<T: DeserializeOwned>(&self, op: Op) -> Result<Option<T>> {
        match self.call(op)? {
            Reply::Maybe(s) => s.map(|s| self.get(s)).transpose(),
            other => Err(unexpected(other)),
        }
    }

    fn values<T: DeserializeOwned>(&self, op: Op) -> Result<Vec<T>> {
        match self.call(op)? {
            Reply::Values(v) => v.into_iter().map(|s| self.get(s)).collect(),
            other => Err(unexpected(other)),
        }
    }

    fn unit(&self, op: Op) -> Result<()> {
        as_unit(self.call(op)?)
    }

    async fn unit_async(&self, op: Op) -> Result<()> {
        as_unit(self.call_async(op).await?)
    }

    fn boolean(&self, op: Op) -> Result<bool> {
        as_bool(self.call(op)?)
    }

    async fn boolean_async(&self, op: Op) -> Result<bool> {
        as_bool(self.call_async(op).await?)
    }

    fn len(&self, op: Op) -> Result<usize> {
        match self.call(op)? {
            Reply::Len(n) => usize::try_from(n).map_err(|_| Error::Decode("length".into())),
            other => Err(unexpected(other)),
        }
    }
}

fn as_unit(reply: Reply) -> Result<()> {
    match reply {
        Reply::Unit => Ok(()),
        other => Err(unexpected(other)),
    }
}

fn as_bool(reply: Reply) -> Result<bool> {
    match reply {
        Reply::Bool(b) => Ok(b),
        other => Err(unexpected(other)),
    }
}

/// A proxy to an object of a registered type `S`. Python: the proxy
/// `manager.Maths()` returns after `register('Maths', MathsClass)`.
pub struct Proxy<S> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> S>,
}

proxy_type!(Proxy[S], Kind::User, S);

impl<S: Served> Proxy<S> {
    /// Sends a request to the object and returns its reply.
    ///
    /// # Errors
    ///
    /// [`Error::TaskPanicked`] if the object's `handle` panicked (the
    /// object stays), [`Error::Decode`], [`Error::Closed`].
    pub fn call(&self, request: S::Request) -> Result<S::Reply> {
        let bytes = multiproc_process::codec::encode(&request)?;
        user_reply(self.r.call(Op::User(bytes))?)
    }

    /// As [`call`](Proxy::call), awaiting the reply without blocking a
    /// thread, under any async runtime. Dropping the future before the
    /// reply drops its connection to the manager (the object may still
    /// run the request). Python (asyncio):
    /// `await loop.run_in_executor(None, proxy.method, *args)`.
    ///
    /// # Errors
    ///
    /// As [`call`](Proxy::call).
    pub async fn call_async(&self, request: S::Request) -> Result<S::Reply> {
        let bytes = multiproc_process::codec::encode(&request)?;
        user_reply(self.r.call_async(Op::User(bytes)).await?)
    }
}

fn user_reply<R: DeserializeOwned>(reply: Reply) -> Result<R> {
    match reply {
        Reply::Bytes(b) => multiproc_process::codec::decode(&b),
        other => Err(unexpected(other)),
    }
}
