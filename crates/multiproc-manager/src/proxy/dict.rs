//! [`DictProxy`] and [`Namespace`]: managed maps.

use std::collections::HashMap;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_process::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::unexpected;
use crate::client::{ProxyRef, key, load};
use crate::wire::{Kind, Op, Reply};

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
    /// [`Error::Encode`](multiproc_process::Error::Encode), or [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn insert(&self, key_: K, value: V) -> Result<Option<V>> {
        self.r.maybe(Op::DictInsert(
            key(&self.r.conn, &key_)?,
            self.r.put(&value)?,
        ))
    }

    /// The value of `key`. Python: `d.get(k)`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](multiproc_process::Error::Decode) if the value is not a `V`.
    pub fn get<Q: Serialize + ?Sized>(&self, key_: &Q) -> Result<Option<V>>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.r.maybe(Op::DictGet(key(&self.r.conn, key_)?))
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
        self.r.maybe(Op::DictRemove(key(&self.r.conn, key_)?))
    }

    /// Whether `key` is there. Python: `k in d`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn contains_key<Q: Serialize + ?Sized>(&self, key_: &Q) -> Result<bool>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.r.boolean(Op::DictContains(key(&self.r.conn, key_)?))
    }

    /// The number of entries. Python: `len(d)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
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
    /// [`Error::Decode`](multiproc_process::Error::Decode) if a key is not a `K`.
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
    /// [`Error::Decode`](multiproc_process::Error::Decode) if a value is not a `V`.
    pub fn values(&self) -> Result<Vec<V>> {
        self.r.values(Op::DictValues)
    }

    /// The entries, in insertion order. Python: `d.items()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](multiproc_process::Error::Decode).
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
    /// [`Error::Encode`](multiproc_process::Error::Encode).
    pub fn update<I: IntoIterator<Item = (K, V)>>(&self, entries: I) -> Result<()> {
        let entries: Vec<(K, V)> = entries.into_iter().collect();
        let stored = entries
            .iter()
            .map(|(k, v)| Ok((key(&self.r.conn, k)?, self.r.put(v)?)))
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
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn clear(&self) -> Result<()> {
        self.r.unit(Op::Clear)
    }

    /// The value of `key`, first setting it to `default` if it is missing,
    /// atomically. Python: `d.setdefault(k, default)`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](multiproc_process::Error::Encode), [`Error::Decode`](multiproc_process::Error::Decode).
    pub fn setdefault(&self, key_: K, default: V) -> Result<V> {
        self.r.value(Op::DictSetDefault(
            key(&self.r.conn, &key_)?,
            self.r.put(&default)?,
        ))
    }

    /// Removes and returns the entry inserted last (`None` when the dict is
    /// empty; Python raises `KeyError`). Python: `d.popitem()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](multiproc_process::Error::Decode).
    pub fn popitem(&self) -> Result<Option<(K, V)>> {
        match self.r.call(Op::DictPopItem)? {
            Reply::Items(items) => match items.into_iter().next() {
                Some((k, s)) => Ok(Some((load(&self.r.conn, &k)?, self.r.get(s)?))),
                None => Ok(None),
            },
            other => Err(unexpected(other)),
        }
    }

    /// A copy of the entries, in this process: Python's `d.copy()`, which
    /// gives a plain dict. The same as [`to_hashmap`](Self::to_hashmap);
    /// [`items`](Self::items) keeps their order.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](multiproc_process::Error::Decode).
    pub fn copy(&self) -> Result<HashMap<K, V>>
    where
        K: Eq + Hash,
    {
        self.to_hashmap()
    }

    /// A copy of the entries. Python: `dict(d)` or `d.copy()`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`](multiproc_process::Error::Decode).
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
    /// [`Error::NotFound`](multiproc_process::Error::NotFound) if there is none (Python's `AttributeError`),
    /// [`Error::Decode`](multiproc_process::Error::Decode) if it is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.r.value(Op::NsGet(name.to_string()))
    }

    /// Sets `name`. Python: `ns.name = value`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`](multiproc_process::Error::Encode).
    pub fn set<T: Serialize + ?Sized>(&self, name: &str, value: &T) -> Result<()> {
        self.r.unit(Op::NsSet(name.to_string(), self.r.put(value)?))
    }

    /// Removes `name`. Python: `del ns.name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](multiproc_process::Error::NotFound) if there is none.
    pub fn remove(&self, name: &str) -> Result<()> {
        self.r.unit(Op::NsRemove(name.to_string()))
    }

    /// Whether `name` is set. Python: `hasattr(ns, name)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn contains(&self, name: &str) -> Result<bool> {
        Ok(self.names()?.iter().any(|n| n == name))
    }

    /// The names set, in the order they were first set. Python: `vars(ns)`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`](multiproc_process::Error::Closed) when the manager is gone.
    pub fn names(&self) -> Result<Vec<String>> {
        match self.r.call(Op::NsItems)? {
            Reply::Named(items) => Ok(items.into_iter().map(|(n, _)| n).collect()),
            other => Err(unexpected(other)),
        }
    }
}
