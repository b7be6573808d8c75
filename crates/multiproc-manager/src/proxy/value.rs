//! [`ValueProxy`] and [`ArrayProxy`]: a managed value and array.

use std::marker::PhantomData;
use std::sync::Arc;

use multiproc_process::{Error, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::ProxyRef;
use crate::wire::{Kind, Op};

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
