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

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use multiproc_channel::PutError;
use multiproc_process::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::client::{ProxyRef, key, load, store};
use crate::served::Served;
use crate::wire::{Holder, Kind, ObjectInfo, Op, Reply, Stored};

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
                $name { r: self.r.clone(), _t: PhantomData }
            }
        }

        impl<$($g),*> fmt::Debug for $name<$($g),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.r)
            }
        }

        impl<$($g),*> Serialize for $name<$($g),*> {
            fn serialize<Ser: Serializer>(&self, s: Ser) -> std::result::Result<Ser::Ok, Ser::Error> {
                self.r.serialize(s)
            }
        }

        impl<'de, $($g),*> Deserialize<'de> for $name<$($g),*> {
            fn deserialize<De: Deserializer<'de>>(d: De) -> std::result::Result<Self, De::Error> {
                Ok($name { r: Arc::new(ProxyRef::deserialize(d)?), _t: PhantomData })
            }
        }

        // The sealed trait's items name crate types on purpose: no other
        // crate can implement or call them.
        #[allow(private_interfaces)]
        impl<$($g),*> sealed::Sealed for $name<$($g),*> {
            fn info() -> ObjectInfo {
                ObjectInfo { kind: $kind, type_name: std::any::type_name::<$tn>().to_string() }
            }
            fn from_ref(r: Arc<ProxyRef>) -> Self {
                $name { r, _t: PhantomData }
            }
            fn proxy_ref(&self) -> &Arc<ProxyRef> {
                &self.r
            }
        }

        impl<$($g),*> Managed for $name<$($g),*> {}
    };
}

impl ProxyRef {
    fn put<T: Serialize + ?Sized>(&self, value: &T) -> Result<Stored> {
        store(self.conn.uid, value)
    }

    fn get<T: DeserializeOwned>(&self, s: Stored) -> Result<T> {
        load(&self.conn, &s.bytes)
    }

    fn value<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        match self.call(op)? {
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
        match self.call(op)? {
            Reply::Unit => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    fn boolean(&self, op: Op) -> Result<bool> {
        match self.call(op)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    fn len(&self, op: Op) -> Result<usize> {
        match self.call(op)? {
            Reply::Len(n) => usize::try_from(n).map_err(|_| Error::Decode("length".into())),
            other => Err(unexpected(other)),
        }
    }
}

/// A managed list. Python: `manager.list()` (a `ListProxy`).
///
/// Indexes follow Python: negative ones count from the end, and one out of
/// range is [`Error::InvalidArgument`] (Python's `IndexError`).
pub struct ListProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(ListProxy[T], Kind::List, T);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends an item. Python: `append`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], or [`Error::Closed`] when the manager is gone (as
    /// for every call of every proxy).
    pub fn push(&self, item: &T) -> Result<()> {
        self.r.unit(Op::Push(self.r.put(item)?))
    }

    /// Appends an item, as Python spells it.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn append(&self, item: &T) -> Result<()> {
        self.push(item)
    }

    /// Appends every item, in one request. Python: `extend`.
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn extend<I: IntoIterator<Item = T>>(&self, items: I) -> Result<()> {
        let items: Vec<T> = items.into_iter().collect();
        let stored = items
            .iter()
            .map(|i| self.r.put(i))
            .collect::<Result<Vec<_>>>()?;
        // Kept until the server holds the proxies among them.
        let done = self.r.unit(Op::Extend(stored));
        drop(items);
        done
    }

    /// The item at `index`. Python: `l[i]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when out of range, [`Error::Decode`] if
    /// the item is not a `T`.
    pub fn get(&self, index: i64) -> Result<T> {
        self.r.value(Op::Get(index))
    }

    /// Replaces the item at `index`. Python: `l[i] = x`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when out of range.
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        self.r.unit(Op::Set(index, self.r.put(item)?))
    }

    /// Inserts before `index` (clamped to the list, as in Python).
    ///
    /// # Errors
    ///
    /// As [`push`](Self::push).
    pub fn insert(&self, index: i64, item: &T) -> Result<()> {
        self.r.unit(Op::Insert(index, self.r.put(item)?))
    }

    /// Removes the first item equal to `item`. Python: `remove`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if there is none (Python's `ValueError`).
    pub fn remove(&self, item: &T) -> Result<()> {
        self.r.unit(Op::RemoveValue(key(item)?))
    }

    /// Removes and returns the last item. Python: `pop()`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] on an empty list.
    pub fn pop(&self) -> Result<T> {
        self.r.value(Op::Pop(None))
    }

    /// Removes and returns the item at `index`. Python: `pop(i)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when out of range.
    pub fn pop_at(&self, index: i64) -> Result<T> {
        self.r.value(Op::Pop(Some(index)))
    }

    /// The number of items. Python: `len(l)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn len(&self) -> Result<usize> {
        self.r.len(Op::Len)
    }

    /// Whether the list is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Whether an item equals `item`. Python: `x in l`.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn contains(&self, item: &T) -> Result<bool> {
        self.r.boolean(Op::Contains(key(item)?))
    }

    /// The position of the first item equal to `item`. Python: `index`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if there is none.
    pub fn index(&self, item: &T) -> Result<usize> {
        self.r.len(Op::Index(key(item)?))
    }

    /// Removes every item. Python: `l.clear()`.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn clear(&self) -> Result<()> {
        self.r.unit(Op::Clear)
    }

    /// A copy of the items. Python: `l[:]` or `list(l)`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an item is not a `T`.
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.r.values(Op::Snapshot)
    }

    /// Iterates over a snapshot taken now (one request). Python: `for x in l`.
    ///
    /// # Errors
    ///
    /// As [`to_vec`](Self::to_vec).
    pub fn iter(&self) -> Result<std::vec::IntoIter<T>> {
        Ok(self.to_vec()?.into_iter())
    }
}

/// A managed dict; keeps insertion order, as Python's does. Python:
/// `manager.dict()` (a `DictProxy`).
pub struct DictProxy<K, V> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> (K, V)>,
}

proxy_type!(DictProxy[K, V], Kind::Dict, (K, V));

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// Sets `key` to `value`, returning the value it had. Python:
    /// `d[k] = v`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], or [`Error::Closed`] when the manager is gone.
    pub fn insert(&self, key_: K, value: V) -> Result<Option<V>> {
        self.r
            .maybe(Op::DictInsert(key(&key_)?, self.r.put(&value)?))
    }

    /// The value of `key`. Python: `d.get(k)`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if the value is not a `V`.
    pub fn get<Q: Serialize + ?Sized>(&self, key_: &Q) -> Result<Option<V>>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.r.maybe(Op::DictGet(key(key_)?))
    }

    /// Removes `key`, returning its value. Python: `d.pop(k, None)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn remove<Q: Serialize + ?Sized>(&self, key_: &Q) -> Result<Option<V>>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.r.maybe(Op::DictRemove(key(key_)?))
    }

    /// Whether `key` is there. Python: `k in d`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key_: &Q) -> Result<bool>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.r.boolean(Op::DictContains(key(key_)?))
    }

    /// The number of entries. Python: `len(d)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn len(&self) -> Result<usize> {
        self.r.len(Op::Len)
    }

    /// Whether the dict is empty.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// The keys, in insertion order. Python: `d.keys()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if a key is not a `K`.
    pub fn keys(&self) -> Result<Vec<K>> {
        match self.r.call(Op::DictKeys)? {
            Reply::Keys(keys) => keys.iter().map(|k| load(&self.r.conn, k)).collect(),
            other => Err(unexpected(other)),
        }
    }

    /// The values, in insertion order. Python: `d.values()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if a value is not a `V`.
    pub fn values(&self) -> Result<Vec<V>> {
        self.r.values(Op::DictValues)
    }

    /// The entries, in insertion order. Python: `d.items()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`].
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        match self.r.call(Op::DictItems)? {
            Reply::Items(items) => items
                .into_iter()
                .map(|(k, v)| Ok((load(&self.r.conn, &k)?, self.r.get(v)?)))
                .collect(),
            other => Err(unexpected(other)),
        }
    }

    /// Sets every entry, in one request. Python: `d.update(other)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`].
    pub fn update<I: IntoIterator<Item = (K, V)>>(&self, entries: I) -> Result<()> {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let stored = entries
            .iter()
            .map(|(k, v)| Ok((key(k)?, self.r.put(v)?)))
            .collect::<Result<Vec<_>>>()?;
        // Kept until the server holds the proxies among them.
        let done = self.r.unit(Op::DictUpdate(stored));
        drop(entries);
        done
    }

    /// Removes every entry. Python: `d.clear()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn clear(&self) -> Result<()> {
        self.r.unit(Op::Clear)
    }

    /// The value of `key`, first setting it to `default` if it is missing,
    /// atomically. Python: `d.setdefault(k, default)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`], [`Error::Decode`].
    pub fn setdefault(&self, key_: K, default: V) -> Result<V> {
        self.r
            .value(Op::DictSetDefault(key(&key_)?, self.r.put(&default)?))
    }

    /// A copy of the entries. Python: `dict(d)` or `d.copy()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`].
    pub fn to_hashmap(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        Ok(self.items()?.into_iter().collect())
    }
}

/// A managed set of named values. Python: `manager.Namespace()`, where
/// `ns.x = 1` is `ns.set("x", &1)` and `ns.x` is `ns.get::<i32>("x")`.
pub struct Namespace {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(Namespace[], Kind::Namespace, ());

impl Namespace {
    /// The value named `name`. Python: `ns.name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none (Python's `AttributeError`),
    /// [`Error::Decode`] if it is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.r.value(Op::NsGet(name.to_string()))
    }

    /// Sets `name`. Python: `ns.name = value`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`].
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.r.unit(Op::NsSet(name.to_string(), self.r.put(value)?))
    }

    /// Removes `name`. Python: `del ns.name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is none.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.r.unit(Op::NsRemove(name.to_string()))
    }

    /// Whether `name` is set. Python: `hasattr(ns, name)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.names()?.iter().any(|n| n == name))
    }

    /// The names set, in the order they were first set. Python: `vars(ns)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.r.call(Op::NsItems)? {
            Reply::Named(items) => Ok(items.into_iter().map(|(n, _)| n).collect()),
            other => Err(unexpected(other)),
        }
    }
}

/// A managed single value. Python: `manager.Value(typecode, value)`,
/// whose `.value` is `get`/`set`.
pub struct ValueProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(ValueProxy[T], Kind::Value, T);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value. Python: `v.value`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn get(&self) -> Result<T> {
        self.r.value(Op::ValueGet)
    }

    /// Sets the value. Python: `v.value = x`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`].
    pub fn set(&self, value: &T) -> Result<()> {
        self.r.unit(Op::ValueSet(self.r.put(value)?))
    }
}

/// A managed fixed-length array. Python: `manager.Array(typecode, seq)`.
pub struct ArrayProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(ArrayProxy[T], Kind::Array, T);

impl<T: Serialize + DeserializeOwned> ArrayProxy<T> {
    /// The item at `index`. Python: `a[i]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when out of range.
    pub fn get(&self, index: usize) -> Result<T> {
        self.r.value(Op::Get(index_of(index)?))
    }

    /// Sets the item at `index`. Python: `a[i] = x`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when out of range.
    pub fn set(&self, index: usize, item: &T) -> Result<()> {
        self.r.unit(Op::Set(index_of(index)?, self.r.put(item)?))
    }

    /// The length. Python: `len(a)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn len(&self) -> Result<usize> {
        self.r.len(Op::Len)
    }

    /// Whether the array has no items.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the items. Python: `a[:]`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        self.r.values(Op::Snapshot)
    }
}

fn index_of(index: usize) -> Result<i64> {
    i64::try_from(index).map_err(|_| Error::InvalidArgument("index out of range".into()))
}

fn put_error<T>(e: Error, item: T) -> PutError<T> {
    match e {
        Error::Full | Error::WouldBlock => PutError::Full(item),
        Error::Timeout => PutError::Timeout(item),
        Error::Closed => PutError::Closed(item),
        e => PutError::Encode(item, e),
    }
}

/// The operations queues share.
fn queue_put<T: Serialize>(
    r: &ProxyRef,
    item: T,
    wait: Option<Duration>,
) -> Result<(), PutError<T>> {
    let stored = match r.put(&item) {
        Ok(s) => s,
        Err(e) => return Err(PutError::Encode(item, e)),
    };
    r.unit(Op::Put(stored, wait))
        .map_err(|e| put_error(e, item))
}

macro_rules! queue_methods {
    () => {
        /// Puts an item, waiting for room in a bounded queue. Python:
        /// `put(x)`.
        ///
        /// # Errors
        ///
        /// The item comes back in the [`PutError`]: `Closed` when the
        /// manager is gone, `Encode`.
        pub fn put(&self, item: T) -> Result<(), PutError<T>> {
            queue_put(&self.r, item, None)
        }

        /// Puts an item if there is room now. Python: `put_nowait(x)`.
        ///
        /// # Errors
        ///
        /// `PutError::Full`, with the item.
        pub fn try_put(&self, item: T) -> Result<(), PutError<T>> {
            queue_put(&self.r, item, Some(Duration::ZERO))
        }

        /// Puts an item, waiting at most `timeout` for room. Python:
        /// `put(x, timeout=t)`.
        ///
        /// # Errors
        ///
        /// `PutError::Timeout`, with the item.
        pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutError<T>> {
            queue_put(&self.r, item, Some(timeout))
        }

        /// Takes the oldest item, waiting for one. Python: `get()`.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`] when the manager is gone, [`Error::Decode`].
        pub fn get(&self) -> Result<T> {
            self.r.value(Op::Take(None))
        }

        /// Takes the oldest item if there is one now. Python:
        /// `get_nowait()`.
        ///
        /// # Errors
        ///
        /// [`Error::Empty`] (Python's `queue.Empty`).
        pub fn try_get(&self) -> Result<T> {
            self.r.value(Op::Take(Some(Duration::ZERO)))
        }

        /// Takes the oldest item, waiting at most `timeout`. Python:
        /// `get(timeout=t)`.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`].
        pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
            self.r.value(Op::Take(Some(timeout)))
        }

        /// The number of items. Python: `qsize()`.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`] when the manager is gone.
        pub fn qsize(&self) -> Result<usize> {
            self.r.len(Op::QSize)
        }

        /// Whether the queue is empty. Python: `empty()`.
        ///
        /// # Errors
        ///
        /// As [`qsize`](Self::qsize).
        pub fn empty(&self) -> Result<bool> {
            Ok(self.qsize()? == 0)
        }

        /// Whether a bounded queue is full. Python: `full()`.
        ///
        /// # Errors
        ///
        /// As [`qsize`](Self::qsize).
        pub fn full(&self) -> Result<bool> {
            let max = self.r.len(Op::MaxSize)?;
            Ok(max > 0 && self.qsize()? >= max)
        }
    };
}

/// A managed queue. Python: `manager.Queue(maxsize)`.
///
/// Unlike [`Queue`](multiproc_channel::Queue) (shared memory, this machine
/// only), a manager's queue is reachable over the network, which is how
/// Python's distributed work queues are built.
pub struct QueueProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(QueueProxy[T], Kind::Queue, T);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    queue_methods!();
}

/// A managed queue that counts unfinished tasks. Python:
/// `manager.JoinableQueue()`.
pub struct JoinableQueueProxy<T> {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> T>,
}

proxy_type!(JoinableQueueProxy[T], Kind::JoinableQueue, T);

impl<T: Serialize + DeserializeOwned> JoinableQueueProxy<T> {
    queue_methods!();

    /// Marks one item taken as done. Python: `task_done()`.
    ///
    /// # Errors
    ///
    /// [`Error::NotHeld`] when called more often than items were put
    /// (Python's `ValueError`), as for [`JoinableQueue`](multiproc_channel::JoinableQueue).
    pub fn task_done(&self) -> Result<()> {
        self.r.unit(Op::TaskDone)
    }

    /// Waits until every item put was marked done. Python: `join()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn join(&self) -> Result<()> {
        self.r.unit(Op::Join(None))
    }

    /// As [`join`](Self::join), for at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        self.r.unit(Op::Join(Some(timeout)))
    }
}

/// This thread's number, naming it as a lock's holder.
fn holder() -> Holder {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static THREAD: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    (0, THREAD.with(|t| *t))
}

fn acquire(r: &ProxyRef, wait: Option<Duration>) -> Result<()> {
    r.unit(Op::Acquire(holder(), wait))
}

fn release(r: &ProxyRef) -> Result<()> {
    r.unit(Op::Release(holder()))
}

/// A held managed lock (or semaphore); released on drop.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ManagedGuard<'a> {
    r: &'a ProxyRef,
    held: bool,
}

impl ManagedGuard<'_> {
    /// Releases now, reporting a failure (the manager gone) that drop would
    /// ignore.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn release(mut self) -> Result<()> {
        self.held = false;
        release(self.r)
    }
}

impl Drop for ManagedGuard<'_> {
    fn drop(&mut self) {
        if self.held {
            // The manager gone: the lock went with it.
            let _ = release(self.r);
        }
    }
}

impl fmt::Debug for ManagedGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ManagedGuard({:?})", self.r)
    }
}

macro_rules! lock_methods {
    () => {
        /// Waits for the lock. Python: `acquire()`.
        ///
        /// # Errors
        ///
        /// [`Error::Closed`] when the manager is gone.
        pub fn acquire(&self) -> Result<ManagedGuard<'_>> {
            acquire(&self.r, None)?;
            Ok(ManagedGuard {
                r: &self.r,
                held: true,
            })
        }

        /// Takes the lock if it is free now. Python: `acquire(False)`.
        ///
        /// # Errors
        ///
        /// [`Error::WouldBlock`] when it is not.
        pub fn try_acquire(&self) -> Result<ManagedGuard<'_>> {
            acquire(&self.r, Some(Duration::ZERO))?;
            Ok(ManagedGuard {
                r: &self.r,
                held: true,
            })
        }

        /// Waits at most `timeout` for the lock. Python:
        /// `acquire(timeout=t)`.
        ///
        /// # Errors
        ///
        /// [`Error::Timeout`].
        pub fn acquire_timeout(&self, timeout: Duration) -> Result<ManagedGuard<'_>> {
            acquire(&self.r, Some(timeout))?;
            Ok(ManagedGuard {
                r: &self.r,
                held: true,
            })
        }

        /// Releases a hold taken without a guard (after
        /// [`std::mem::forget`] of one, or from another process, as
        /// Python's code sometimes does). Python: `release()`.
        ///
        /// # Errors
        ///
        /// [`Error::NotHeld`] when nobody (for an `RLock`: not this
        /// thread) holds it.
        pub fn release(&self) -> Result<()> {
            release(&self.r)
        }
    };
}

/// A managed lock. Python: `manager.Lock()`. If a process holding it dies,
/// or drops its connection, the manager releases it.
pub struct LockProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(LockProxy[], Kind::Lock, ());

impl LockProxy {
    lock_methods!();
}

/// A managed re-entrant lock, held by one thread of one process. Python:
/// `manager.RLock()`.
pub struct RLockProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(RLockProxy[], Kind::RLock, ());

impl RLockProxy {
    lock_methods!();
}

/// A managed semaphore. Python: `manager.Semaphore(n)`.
pub struct SemaphoreProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(SemaphoreProxy[], Kind::Semaphore, ());

impl SemaphoreProxy {
    lock_methods!();

    /// The counter now.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn value(&self) -> Result<u32> {
        match self.r.call(Op::SemValue)? {
            Reply::U32(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// A managed semaphore that refuses to go above its start value. Python:
/// `manager.BoundedSemaphore(n)`.
pub struct BoundedSemaphoreProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(BoundedSemaphoreProxy[], Kind::BoundedSemaphore, ());

impl BoundedSemaphoreProxy {
    lock_methods!();

    /// The counter now.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn value(&self) -> Result<u32> {
        match self.r.call(Op::SemValue)? {
            Reply::U32(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// A managed condition variable with its own re-entrant lock. Python:
/// `manager.Condition()`.
pub struct ConditionProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(ConditionProxy[], Kind::Condition, ());

/// A held [`ConditionProxy`]: wait and notify through it.
#[must_use = "the lock is released when the guard is dropped"]
#[derive(Debug)]
pub struct ManagedConditionGuard<'a> {
    guard: ManagedGuard<'a>,
}

impl ConditionProxy {
    /// Takes the condition's lock. Python: `with cond:`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn acquire(&self) -> Result<ManagedConditionGuard<'_>> {
        acquire(&self.r, None)?;
        Ok(ManagedConditionGuard {
            guard: ManagedGuard {
                r: &self.r,
                held: true,
            },
        })
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<ManagedConditionGuard<'_>> {
        acquire(&self.r, Some(timeout))?;
        Ok(ManagedConditionGuard {
            guard: ManagedGuard {
                r: &self.r,
                held: true,
            },
        })
    }
}

impl ManagedConditionGuard<'_> {
    fn wait_op(&self, wait: Option<Duration>) -> Result<bool> {
        self.guard.r.boolean(Op::CondWait(holder(), wait))
    }

    /// Releases the lock, waits for a notification, takes the lock back.
    /// Python: `cond.wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn wait(&mut self) -> Result<()> {
        self.wait_op(None).map(drop)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; false if it passed.
    /// Python: `cond.wait(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<bool> {
        self.wait_op(Some(timeout))
    }

    /// Waits until `predicate()` holds, or `timeout` passes (`None`: no
    /// limit); returns the predicate's last value. Python: `wait_for`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn wait_for(
        &mut self,
        mut predicate: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool> {
        let deadline = timeout.and_then(multiproc_process::deadline);
        loop {
            if predicate() {
                return Ok(true);
            }
            let left = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    Some(left)
                }
                None => None,
            };
            self.wait_op(left)?;
        }
    }

    /// Wakes up to `n` waiters. Python: `cond.notify(n)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn notify(&self, n: u32) -> Result<()> {
        self.guard.r.unit(Op::CondNotify(holder(), n))
    }

    /// Wakes every waiter. Python: `cond.notify_all()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u32::MAX)
    }
}

/// A managed event. Python: `manager.Event()`.
pub struct EventProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(EventProxy[], Kind::Event, ());

impl EventProxy {
    /// Sets the flag, waking every waiter. Python: `set()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn set(&self) -> Result<()> {
        self.r.unit(Op::EventSet)
    }

    /// Clears the flag. Python: `clear()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn clear(&self) -> Result<()> {
        self.r.unit(Op::EventClear)
    }

    /// Whether the flag is set. Python: `is_set()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn is_set(&self) -> Result<bool> {
        self.r.boolean(Op::EventIsSet)
    }

    /// Waits until the flag is set. Python: `wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn wait(&self) -> Result<()> {
        self.r.boolean(Op::EventWait(None)).map(drop)
    }

    /// Waits at most `timeout`; whether the flag was set. Python:
    /// `wait(timeout)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.r.boolean(Op::EventWait(Some(timeout)))
    }
}

/// A managed barrier. Python: `manager.Barrier(parties, timeout=...)`.
pub struct BarrierProxy {
    r: Arc<ProxyRef>,
    _t: PhantomData<fn() -> ()>,
}

proxy_type!(BarrierProxy[], Kind::Barrier, ());

impl BarrierProxy {
    fn wait_op(&self, wait: Option<Duration>) -> Result<u32> {
        match self.r.call(Op::BarrierWait(wait))? {
            Reply::U32(i) => Ok(i),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for all parties; returns this party's arrival index (0 for the
    /// first). Python: `wait()`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] if the barrier is or gets broken (aborted,
    /// reset while waiting, a wait timed out, a waiting party went away).
    pub fn wait(&self) -> Result<u32> {
        self.wait_op(None)
    }

    /// As [`wait`](Self::wait), for at most `timeout`; a timeout breaks the
    /// barrier, as in Python.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`].
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32> {
        self.wait_op(Some(timeout))
    }

    /// Breaks the barrier. Python: `abort()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn abort(&self) -> Result<()> {
        self.r.unit(Op::BarrierAbort)
    }

    /// Returns the barrier to empty and unbroken; current waiters get
    /// [`Error::BrokenBarrier`]. Python: `reset()`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn reset(&self) -> Result<()> {
        self.r.unit(Op::BarrierReset)
    }

    fn state(&self) -> Result<(u32, u32, bool)> {
        match self.r.call(Op::BarrierState)? {
            Reply::Barrier {
                parties,
                waiting,
                broken,
            } => Ok((parties, waiting, broken)),
            other => Err(unexpected(other)),
        }
    }

    /// Whether the barrier is broken. Python: `broken`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn is_broken(&self) -> Result<bool> {
        Ok(self.state()?.2)
    }

    /// The number of parties. Python: `parties`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn parties(&self) -> Result<u32> {
        Ok(self.state()?.0)
    }

    /// The number waiting now. Python: `n_waiting`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn n_waiting(&self) -> Result<u32> {
        Ok(self.state()?.1)
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
        match self.r.call(Op::User(bytes))? {
            Reply::Bytes(b) => multiproc_process::codec::decode(&b),
            other => Err(unexpected(other)),
        }
    }
}
