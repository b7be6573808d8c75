//! [`ListProxy`]: a managed list.

use std::cmp::Ordering;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::sync::Arc;

use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::unexpected;
use crate::client::{ProxyRef, key};
use crate::wire::{CHANGED, Kind, Op, Reply, Slice};

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
        self.r.unit(Op::RemoveValue(key(&self.r.conn, item)?))
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
        self.r.boolean(Op::Contains(key(&self.r.conn, item)?))
    }

    /// The position of the first item equal to `item`. Python: `index`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if there is none.
    pub fn index(&self, item: &T) -> Result<usize> {
        self.r.len(Op::Index(key(&self.r.conn, item)?))
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

    /// The items of a slice, given as a range of Python indexes (negative
    /// ones count from the end; the range is clamped to the list, never out
    /// of it). Python: `l[1:3]` is `get_range(1..3)`, `l[-2:]` is
    /// `get_range(-2..)`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an item is not a `T`.
    pub fn get_range(&self, range: impl RangeBounds<i64>) -> Result<Vec<T>> {
        self.r.values(Op::GetRange(Slice::of(&range)))
    }

    /// Replaces a slice with `items`, which may be more or fewer than it
    /// held, in one request. Python: `l[1:3] = items`.
    ///
    /// # Errors
    ///
    /// [`Error::Encode`].
    pub fn set_range<I: IntoIterator<Item = T>>(
        &self,
        range: impl RangeBounds<i64>,
        items: I,
    ) -> Result<()> {
        let items: Vec<T> = items.into_iter().collect();
        let stored = items
            .iter()
            .map(|i| self.r.put(i))
            .collect::<Result<Vec<_>>>()?;
        // Kept until the server holds the proxies among them.
        let done = self.r.unit(Op::SetRange(Slice::of(&range), stored));
        drop(items);
        done
    }

    /// Removes a slice. Python: `del l[1:3]`.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the manager is gone.
    pub fn delete_range(&self, range: impl RangeBounds<i64>) -> Result<()> {
        self.r.unit(Op::DeleteRange(Slice::of(&range)))
    }

    /// How many items equal `item`. Python: `l.count(x)`.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn count(&self, item: &T) -> Result<usize> {
        self.r.len(Op::Count(key(&self.r.conn, item)?))
    }

    /// Reverses the list in place. Python: `l.reverse()`.
    ///
    /// # Errors
    ///
    /// As [`len`](Self::len).
    pub fn reverse(&self) -> Result<()> {
        self.r.unit(Op::Reverse)
    }

    /// Repeats the items `n` times in place (0 empties the list). Python:
    /// `l *= n`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] past 2^28 items.
    pub fn repeat(&self, n: usize) -> Result<()> {
        self.r.unit(Op::Repeat(n as u64))
    }

    /// Sorts the list in place, stably, by `T`'s order. Python: `l.sort()`.
    ///
    /// The server holds only encoded items, so this process sorts a
    /// snapshot and sends the order back; the server applies it only if
    /// the list still holds what was sorted, and otherwise the sort runs
    /// again: the sort is atomic, as CPython's (which runs in the server).
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] if an item is not a `T`.
    pub fn sort(&self) -> Result<()>
    where
        T: Ord,
    {
        self.sort_by(T::cmp)
    }

    /// As [`sort`](Self::sort), by the key `f` gives. Python:
    /// `l.sort(key=f)`.
    ///
    /// # Errors
    ///
    /// As [`sort`](Self::sort).
    pub fn sort_by_key<K: Ord>(&self, mut f: impl FnMut(&T) -> K) -> Result<()> {
        self.sort_by(|a, b| f(a).cmp(&f(b)))
    }

    /// As [`sort`](Self::sort), by `compare`.
    ///
    /// # Errors
    ///
    /// As [`sort`](Self::sort).
    pub fn sort_by(&self, mut compare: impl FnMut(&T, &T) -> Ordering) -> Result<()> {
        loop {
            let (digest, stored) = match self.r.call(Op::SnapshotDigest)? {
                Reply::Digested(d, v) => (d, v),
                other => return Err(unexpected(other)),
            };
            let items = stored
                .into_iter()
                .map(|s| self.r.get::<T>(s))
                .collect::<Result<Vec<T>>>()?;
            let mut order: Vec<u64> = (0..items.len() as u64).collect();
            order.sort_by(|&a, &b| compare(&items[a as usize], &items[b as usize]));
            match self.r.call(Op::Permute(digest, order)) {
                Err(Error::InvalidArgument(why)) if why == CHANGED => {}
                Err(e) => return Err(e),
                Ok(Reply::Unit) => return Ok(()),
                Ok(other) => return Err(unexpected(other)),
            }
        }
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
