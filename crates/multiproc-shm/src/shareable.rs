//! [`ShareableList`]: a fixed-length list of ints, floats, bools, strings,
//! bytes and `None` in one named segment, laid out byte for byte as
//! CPython's `multiprocessing.shared_memory.ShareableList`, so that a
//! Python program can open ours by name and we can open its.
//!
//! The layout (native byte order, every field 8-byte aligned):
//!
//! - 8 bytes: the number of items, `n`;
//! - `(n + 1) * 8` bytes: each item's offset in the data area, and its end;
//! - the data area: 8 bytes per int, float, bool or `None`; a multiple of 8
//!   bytes for a string or bytes, room for its length and at least one NUL;
//! - `n * 8` bytes: each item's `struct` format (`q`, `d`, `xxxxxxx?`,
//!   `xxxxxx?x` for `None`, `16s`...), NUL-padded;
//! - `n` bytes: how to read each item back (0: as packed, 1: a string, 2:
//!   bytes, 3: `None`).

use std::fmt;

use multiproc_process::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::named::SharedMemory;

/// One item of a [`ShareableList`]: the types CPython's can hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ShareableItem {
    /// Python `int` (a 64-bit one, as CPython's `q` format).
    Int(i64),
    /// Python `float`.
    Float(f64),
    /// Python `bool`.
    Bool(bool),
    /// Python `str`, UTF-8.
    Str(String),
    /// Python `bytes`.
    Bytes(Vec<u8>),
    /// Python `None`.
    None,
}

impl From<i64> for ShareableItem {
    fn from(v: i64) -> ShareableItem {
        ShareableItem::Int(v)
    }
}

impl From<f64> for ShareableItem {
    fn from(v: f64) -> ShareableItem {
        ShareableItem::Float(v)
    }
}

impl From<bool> for ShareableItem {
    fn from(v: bool) -> ShareableItem {
        ShareableItem::Bool(v)
    }
}

impl From<&str> for ShareableItem {
    fn from(v: &str) -> ShareableItem {
        ShareableItem::Str(v.to_owned())
    }
}

impl From<String> for ShareableItem {
    fn from(v: String) -> ShareableItem {
        ShareableItem::Str(v)
    }
}

impl From<Vec<u8>> for ShareableItem {
    fn from(v: Vec<u8>) -> ShareableItem {
        ShareableItem::Bytes(v)
    }
}

impl From<&[u8]> for ShareableItem {
    fn from(v: &[u8]) -> ShareableItem {
        ShareableItem::Bytes(v.to_vec())
    }
}

impl<T: Into<ShareableItem>> From<Option<T>> for ShareableItem {
    fn from(v: Option<T>) -> ShareableItem {
        v.map_or(ShareableItem::None, Into::into)
    }
}

const WORD: usize = 8;
const BOOL_FORMAT: &str = "xxxxxxx?";
const NONE_FORMAT: &str = "xxxxxx?x";

/// How an item is read back (CPython's `_back_transforms_mapping`).
const AS_PACKED: u8 = 0;
const AS_STR: u8 = 1;
const AS_BYTES: u8 = 2;
const AS_NONE: u8 = 3;

impl ShareableItem {
    /// The slot a new list gives the item: 8 bytes, or for a string or
    /// bytes a multiple of 8 with room for one NUL (CPython counts a
    /// string's characters here, and so cuts a non-ASCII one short; this
    /// counts its bytes).
    fn slot(&self) -> usize {
        match self {
            ShareableItem::Str(s) => WORD * (s.len() / WORD + 1),
            ShareableItem::Bytes(b) => WORD * (b.len() / WORD + 1),
            _ => WORD,
        }
    }

    /// The item's format in a slot of `slot` bytes whose format is
    /// `current`, its read-back code, and its bytes.
    fn packed(&self, slot: usize, current: &str) -> (String, u8, Vec<u8>) {
        let text = |bytes: &[u8], code| {
            let format = if current.ends_with('s') {
                current.to_owned()
            } else {
                format!("{slot}s")
            };
            (format, code, bytes.to_vec())
        };
        match self {
            ShareableItem::Int(v) => ("q".into(), AS_PACKED, v.to_ne_bytes().to_vec()),
            ShareableItem::Float(v) => ("d".into(), AS_PACKED, v.to_ne_bytes().to_vec()),
            ShareableItem::Bool(v) => {
                let mut b = vec![0; WORD];
                b[7] = u8::from(*v);
                (BOOL_FORMAT.into(), AS_PACKED, b)
            }
            ShareableItem::None => (NONE_FORMAT.into(), AS_NONE, vec![0; WORD]),
            ShareableItem::Str(s) => text(s.as_bytes(), AS_STR),
            ShareableItem::Bytes(b) => text(b, AS_BYTES),
        }
    }
}

/// A fixed-length list in a named segment. Python:
/// `multiprocessing.shared_memory.ShareableList`, byte for byte: a Python
/// program opens ours with `ShareableList(name=...)`, and
/// [`open`](ShareableList::open) opens one a Python program made.
///
/// Like CPython's, it has no lock: a reader may see an item another
/// process is writing half written (never memory out of bounds). Guard
/// items written concurrently with a `Lock`.
/// Strings and bytes lose trailing NUL bytes on the way back, as in
/// CPython.
///
/// ```
/// use multiproc as mp;
/// use mp::ShareableItem as Item;
///
/// # fn main() -> mp::Result<()> {
/// let l = mp::ShareableList::create(None, [Item::Int(7), "howdy".into(), Item::None])?;
/// l.set(0, Item::Float(1.5))?;
/// assert_eq!(l.get(0)?, Item::Float(1.5));
/// let same = mp::ShareableList::open(l.name())?;
/// assert_eq!(same.get(-2)?, Item::Str("howdy".into()));
/// l.shm().unlink()?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    len: usize,
    /// Each item's offset in the data area, and the end.
    offsets: Vec<usize>,
}

impl ShareableList {
    /// A list of `items` in new named shared memory (`name: None` makes
    /// one up), created and unlinked as [`SharedMemory::create`].
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`].
    pub fn create<I>(name: Option<&str>, items: I) -> Result<ShareableList>
    where
        I: IntoIterator,
        I::Item: Into<ShareableItem>,
    {
        let items: Vec<ShareableItem> = items.into_iter().map(Into::into).collect();
        let n = items.len();
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0);
        for item in &items {
            let end = offsets.last().copied().unwrap_or(0) + item.slot();
            offsets.push(end);
        }
        let data = offsets.last().copied().unwrap_or(0);
        let size = (n + 2) * WORD + data + n * WORD + n;
        // CPython asks for the same size; a zero-sized segment is refused.
        let shm = SharedMemory::create(name, size.max(1))?;
        let list = ShareableList {
            shm,
            len: n,
            offsets,
        };
        let mut header = Vec::with_capacity((n + 2) * WORD);
        header.extend_from_slice(&(n as i64).to_ne_bytes());
        for &o in &list.offsets {
            header.extend_from_slice(&(o as i64).to_ne_bytes());
        }
        list.shm.write_at(0, &header)?;
        for (i, item) in items.iter().enumerate() {
            list.write(i, item, "")?;
        }
        Ok(list)
    }

    /// Opens the list in named shared memory `name`, made by this program
    /// or by a Python one.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::open`]; [`Error::Decode`] if the memory does not
    /// hold a list.
    pub fn open(name: &str) -> Result<ShareableList> {
        ShareableList::from_shm(SharedMemory::open(name)?)
    }

    fn from_shm(shm: SharedMemory) -> Result<ShareableList> {
        let bad = |why: &str| Error::Decode(format!("{}: not a ShareableList: {why}", shm.name()));
        let word = |at: usize| -> Result<i64> {
            let mut b = [0u8; WORD];
            shm.read_at(at, &mut b).map_err(|_| bad("too short"))?;
            Ok(i64::from_ne_bytes(b))
        };
        let n = usize::try_from(word(0)?).map_err(|_| bad("a negative length"))?;
        if n.checked_mul(3 * WORD).is_none_or(|b| b > shm.size()) {
            return Err(bad("a length past its size"));
        }
        let mut offsets = Vec::with_capacity(n + 1);
        for i in 0..=n {
            let o = usize::try_from(word((i + 1) * WORD)?).map_err(|_| bad("a negative offset"))?;
            if offsets.last().is_some_and(|&last| o < last) {
                return Err(bad("offsets out of order"));
            }
            offsets.push(o);
        }
        let data = offsets.last().copied().unwrap_or(0);
        let need = (n + 2) * WORD + data + n * WORD + n;
        if need > shm.size() {
            return Err(bad("items past its size"));
        }
        Ok(ShareableList {
            shm,
            len: n,
            offsets,
        })
    }

    /// The number of items. Python: `len(l)`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name of its segment. Python: `l.shm.name`.
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The segment. Python: `l.shm` (unlink it through this).
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    fn data_start(&self) -> usize {
        (self.len + 2) * WORD
    }

    fn formats_start(&self) -> usize {
        self.data_start() + self.offsets.last().copied().unwrap_or(0)
    }

    fn codes_start(&self) -> usize {
        self.formats_start() + self.len * WORD
    }

    fn position(&self, index: i64) -> Result<usize> {
        let len = i64::try_from(self.len).unwrap_or(i64::MAX);
        let i = if index < 0 { index + len } else { index };
        if (0..len).contains(&i) {
            usize::try_from(i).map_err(|_| Error::InvalidArgument("index out of range".into()))
        } else {
            Err(Error::InvalidArgument("index out of range".into()))
        }
    }

    fn format(&self, i: usize) -> Result<String> {
        let mut f = [0u8; WORD];
        self.shm.read_at(self.formats_start() + i * WORD, &mut f)?;
        let end = f.iter().position(|&b| b == 0).unwrap_or(WORD);
        String::from_utf8(f[..end].to_vec())
            .map_err(|_| Error::Decode("a format that is not text".into()))
    }

    /// ShareableItem `index` (negative counts from the end). Python: `l[i]`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] out of range (Python's `IndexError`),
    /// [`Error::Decode`] for a format this list does not know.
    pub fn get(&self, index: i64) -> Result<ShareableItem> {
        let i = self.position(index)?;
        let format = self.format(i)?;
        let mut code = [0u8];
        self.shm.read_at(self.codes_start() + i, &mut code)?;
        let at = self.data_start() + self.offsets[i];
        let word = || -> Result<[u8; WORD]> {
            let mut b = [0u8; WORD];
            self.shm.read_at(at, &mut b)?;
            Ok(b)
        };
        let unknown = || Error::Decode(format!("an item of format {format:?}, code {}", code[0]));
        match (format.as_str(), code[0]) {
            (_, AS_NONE) => Ok(ShareableItem::None),
            ("q", AS_PACKED) => Ok(ShareableItem::Int(i64::from_ne_bytes(word()?))),
            ("d", AS_PACKED) => Ok(ShareableItem::Float(f64::from_ne_bytes(word()?))),
            (BOOL_FORMAT, AS_PACKED) => Ok(ShareableItem::Bool(word()?[7] != 0)),
            (f, AS_STR | AS_BYTES) if f.ends_with('s') => {
                let n: usize = f[..f.len() - 1].parse().map_err(|_| unknown())?;
                let slot = self.offsets[i + 1] - self.offsets[i];
                let mut b = vec![0u8; n.min(slot)];
                self.shm.read_at(at, &mut b)?;
                while b.last() == Some(&0) {
                    b.pop();
                }
                if code[0] == AS_BYTES {
                    Ok(ShareableItem::Bytes(b))
                } else {
                    String::from_utf8(b)
                        .map(ShareableItem::Str)
                        .map_err(|_| Error::Decode("a string that is not UTF-8".into()))
                }
            }
            _ => Err(unknown()),
        }
    }

    /// Sets item `index`. Python: `l[i] = v`. Any item fits the 8 bytes
    /// every slot has; a string or bytes must fit the slot's room.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] out of range, or for a string or bytes
    /// longer than the slot ("bytes/str item exceeds available storage",
    /// as CPython's `ValueError` says).
    pub fn set(&self, index: i64, item: impl Into<ShareableItem>) -> Result<()> {
        let i = self.position(index)?;
        let current = self.format(i)?;
        self.write(i, &item.into(), &current)
    }

    fn write(&self, i: usize, item: &ShareableItem, current: &str) -> Result<()> {
        let slot = self.offsets[i + 1] - self.offsets[i];
        let (format, code, bytes) = item.packed(slot, current);
        if bytes.len() > slot {
            return Err(Error::InvalidArgument(
                "bytes/str item exceeds available storage".into(),
            ));
        }
        let mut f = [0u8; WORD];
        f[..format.len().min(WORD)].copy_from_slice(&format.as_bytes()[..format.len().min(WORD)]);
        self.shm.write_at(self.formats_start() + i * WORD, &f)?;
        self.shm.write_at(self.codes_start() + i, &[code])?;
        // The rest of a text slot is zeroed: it reads back to the NULs.
        let mut value = bytes;
        if format.ends_with('s') {
            value.resize(slot, 0);
        }
        self.shm
            .write_at(self.data_start() + self.offsets[i], &value)
    }

    /// A copy of the items. Python: `list(l)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> Result<Vec<ShareableItem>> {
        (0..self.len).map(|i| self.get(i as i64)).collect()
    }

    /// How many items equal `item`. Python: `l.count(v)`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub fn count(&self, item: &ShareableItem) -> Result<usize> {
        Ok(self.to_vec()?.iter().filter(|v| *v == item).count())
    }

    /// The position of the first item equal to `item`. Python: `l.index(v)`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if there is none (Python's `ValueError`).
    pub fn index(&self, item: &ShareableItem) -> Result<usize> {
        self.to_vec()?
            .iter()
            .position(|v| v == item)
            .ok_or_else(|| Error::InvalidArgument(format!("{item:?} not in this container")))
    }

    /// The `struct` formats of the items, joined. Python: `l.format`.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for a format that is not text.
    pub fn formats(&self) -> Result<String> {
        (0..self.len).map(|i| self.format(i)).collect()
    }
}

impl fmt::Debug for ShareableList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShareableList")
            .field("name", &self.name())
            .field("len", &self.len)
            .finish()
    }
}

/// A list crosses to a child as its segment, as CPython's pickles as its
/// name.
impl Serialize for ShareableList {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(d)?;
        ShareableList::from_shm(shm).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_cpython() {
        assert_eq!(ShareableItem::Int(1).slot(), 8);
        assert_eq!(ShareableItem::from("howdy").slot(), 8);
        assert_eq!(ShareableItem::from("exactly8").slot(), 16);
        assert_eq!(ShareableItem::Bytes(vec![]).slot(), 8);
        let (f, code, b) = ShareableItem::Bool(true).packed(8, "");
        assert_eq!((f.as_str(), code, b[7]), (BOOL_FORMAT, AS_PACKED, 1));
        let (f, _, _) = ShareableItem::from("hi").packed(16, "q");
        assert_eq!(f, "16s");
        let (f, _, _) = ShareableItem::from("hi").packed(16, "8s");
        assert_eq!(f, "8s");
    }
}
