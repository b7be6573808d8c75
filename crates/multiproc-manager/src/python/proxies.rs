//! Typed proxies of a CPython manager's queues, dicts, lists, values and
//! namespaces: each a [`Proxy`] and the method names CPython exposes.

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::Value;

use super::Proxy;
use crate::Result;

macro_rules! typed {
    ($name:ident [$($t:ident),*]) => {
        impl<$($t),*> $name<$($t),*> {
            pub(super) fn new(proxy: Proxy) -> Self {
                $name {
                    proxy,
                    _t: PhantomData,
                }
            }

            /// The untyped proxy, for the object's other methods.
            pub fn proxy(&self) -> &Proxy {
                &self.proxy
            }
        }

        /// A typed proxy of the object a generic one reaches (a proxy that
        /// [`Proxy::call_proxy`] returned). Its methods are the type's; a
        /// call the object lacks is the server's error.
        impl<$($t),*> From<Proxy> for $name<$($t),*> {
            fn from(proxy: Proxy) -> Self {
                $name::new(proxy)
            }
        }

        impl<$($t),*> std::fmt::Debug for $name<$($t),*> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.proxy.fmt(f)
            }
        }
    };
}

/// A proxy of a queue in a CPython manager (`queue.Queue` behind
/// `get_queue`, or a `SyncManager`'s `Queue()`). Python: the `AutoProxy`
/// of a queue.
pub struct QueueProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed!(QueueProxy[T]);

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    /// Puts an item, waiting for room in a bounded queue. Python: `q.put(x)`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn put(&self, item: &T) -> Result<()> {
        self.proxy
            .call_within::<Value>("put", (item,), None)
            .map(drop)
    }

    /// Puts an item if there is room now. Python: `q.put_nowait(x)`.
    ///
    /// # Errors
    ///
    /// [`Error::Full`](crate::Error::Full), and as [`Proxy::call`].
    pub fn put_nowait(&self, item: &T) -> Result<()> {
        self.proxy.call::<Value>("put_nowait", (item,)).map(drop)
    }

    /// Takes the oldest item, waiting for one as long as it takes.
    /// Python: `q.get()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn get(&self) -> Result<T> {
        self.proxy.call_within("get", (), None)
    }

    /// Takes the oldest item, waiting at most `timeout` for one. Python:
    /// `q.get(timeout=t)`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`](crate::Error::Empty) when none came (Python's
    /// `queue.Empty`), and as [`Proxy::call`].
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        let silence = timeout.saturating_add(self.proxy.holder.manager.options.reply_timeout);
        self.proxy
            .call_within("get", (true, timeout.as_secs_f64()), Some(silence))
    }

    /// Takes the oldest item if there is one now. Python: `q.get_nowait()`.
    ///
    /// # Errors
    ///
    /// [`Error::Empty`](crate::Error::Empty), and as [`Proxy::call`].
    pub fn get_nowait(&self) -> Result<T> {
        self.proxy.call("get_nowait", ())
    }

    /// The number of items. Python: `q.qsize()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn qsize(&self) -> Result<usize> {
        self.proxy.call("qsize", ())
    }

    /// Whether the queue is empty. Python: `q.empty()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn empty(&self) -> Result<bool> {
        self.proxy.call("empty", ())
    }

    /// Whether a bounded queue is full. Python: `q.full()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn full(&self) -> Result<bool> {
        self.proxy.call("full", ())
    }

    /// Marks one item taken as done. Python: `q.task_done()`.
    ///
    /// # Errors
    ///
    /// [`Error::Python`](crate::Error::Python) `builtins.ValueError` when
    /// called more often than items were put, and as [`Proxy::call`].
    pub fn task_done(&self) -> Result<()> {
        self.proxy.call::<Value>("task_done", ()).map(drop)
    }

    /// Waits until every item put was marked done, as long as it takes.
    /// Python: `q.join()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn join(&self) -> Result<()> {
        self.proxy.call_within::<Value>("join", (), None).map(drop)
    }
}

/// A proxy of a dict in a CPython `SyncManager`. Python: `m.dict()`.
pub struct DictProxy<K, V> {
    proxy: Proxy,
    _t: PhantomData<fn() -> (K, V)>,
}

typed!(DictProxy[K, V]);

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> DictProxy<K, V> {
    /// Sets `d[key] = value`. Python: `d[key] = value`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn insert(&self, key: &K, value: &V) -> Result<()> {
        self.proxy
            .call::<Value>("__setitem__", (key, value))
            .map(drop)
    }

    /// `d[key]`. Python: `d[key]`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing key
    /// (Python's `KeyError`), and as [`Proxy::call`].
    pub fn get(&self, key: &K) -> Result<V> {
        self.proxy.call("__getitem__", (key,))
    }

    /// `d.get(key)`: `None` for a missing key. Python: `d.get(key)`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn get_or_none(&self, key: &K) -> Result<Option<V>> {
        self.proxy.call("get", (key,))
    }

    /// Removes `key`, giving its value. Python: `d.pop(key)`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`](crate::Error::NotFound) for a missing key.
    pub fn pop(&self, key: &K) -> Result<V> {
        self.proxy.call("pop", (key,))
    }

    /// The number of entries. Python: `len(d)`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", ())
    }

    /// Whether the dict is empty. Python: `not d`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Whether `key` is there. Python: `key in d`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn contains_key(&self, key: &K) -> Result<bool> {
        self.proxy.call("__contains__", (key,))
    }

    /// A copy of the whole dict, as a map of the caller's choice
    /// (`HashMap`, `BTreeMap`, ...). Python: `d.copy()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn copy<M: DeserializeOwned>(&self) -> Result<M> {
        self.proxy.call("copy", ())
    }

    /// The keys, in the dict's order. Python: `d.keys()` (a list through a
    /// proxy).
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn keys(&self) -> Result<Vec<K>> {
        self.proxy.call("keys", ())
    }

    /// The values, in the dict's order. Python: `d.values()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn values(&self) -> Result<Vec<V>> {
        self.proxy.call("values", ())
    }

    /// The entries, in the dict's order. Python: `d.items()`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn items(&self) -> Result<Vec<(K, V)>> {
        self.proxy.call("items", ())
    }
}

/// A proxy of a list in a CPython `SyncManager`. Python: `m.list()`.
pub struct ListProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed!(ListProxy[T]);

impl<T: Serialize + DeserializeOwned> ListProxy<T> {
    /// Appends an item. Python: `l.append(x)`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn push(&self, item: &T) -> Result<()> {
        self.proxy.call::<Value>("append", (item,)).map(drop)
    }

    /// `l[i]`, negative indices from the end. Python: `l[i]`.
    ///
    /// # Errors
    ///
    /// [`Error::Python`](crate::Error::Python) `builtins.IndexError` out of
    /// range, and as [`Proxy::call`].
    pub fn get(&self, index: i64) -> Result<T> {
        self.proxy.call("__getitem__", (index,))
    }

    /// Sets `l[i] = x`. Python: `l[i] = x`.
    ///
    /// # Errors
    ///
    /// As [`get`](ListProxy::get).
    pub fn set(&self, index: i64, item: &T) -> Result<()> {
        self.proxy
            .call::<Value>("__setitem__", (index, item))
            .map(drop)
    }

    /// Removes and gives the last item. Python: `l.pop()`.
    ///
    /// # Errors
    ///
    /// [`Error::Python`](crate::Error::Python) `builtins.IndexError` for
    /// an empty list.
    pub fn pop(&self) -> Result<T> {
        self.proxy.call("pop", ())
    }

    /// The number of items. Python: `len(l)`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn len(&self) -> Result<usize> {
        self.proxy.call("__len__", ())
    }

    /// Whether the list is empty. Python: `not l`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// A copy of the whole list. Python: `l[:]`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn to_vec(&self) -> Result<Vec<T>> {
        let len = self.len()?;
        (0..len as i64).map(|i| self.get(i)).collect()
    }
}

/// A proxy of a `SyncManager`'s `Value`. Python: `m.Value(typecode, v)`.
pub struct ValueProxy<T> {
    proxy: Proxy,
    _t: PhantomData<fn() -> T>,
}

typed!(ValueProxy[T]);

impl<T: Serialize + DeserializeOwned> ValueProxy<T> {
    /// The value. Python: `v.value` (`v.get()`).
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn get(&self) -> Result<T> {
        self.proxy.call("get", ())
    }

    /// Sets the value. Python: `v.value = x` (`v.set(x)`).
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn set(&self, value: &T) -> Result<()> {
        self.proxy.call::<Value>("set", (value,)).map(drop)
    }
}

/// A proxy of a `SyncManager`'s `Namespace`. Python: `m.Namespace()`.
pub struct NamespaceProxy {
    proxy: Proxy,
    _t: PhantomData<fn()>,
}

typed!(NamespaceProxy[]);

impl NamespaceProxy {
    /// An attribute. Python: `ns.name`.
    ///
    /// # Errors
    ///
    /// [`Error::Python`](crate::Error::Python) `builtins.AttributeError`
    /// for a missing one, and as [`Proxy::call`].
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        self.proxy.call("__getattribute__", (name,))
    }

    /// Sets an attribute. Python: `ns.name = value`.
    ///
    /// # Errors
    ///
    /// As [`Proxy::call`].
    pub fn set<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        self.proxy
            .call::<Value>("__setattr__", (name, value))
            .map(drop)
    }
}
