//! A list's slices, as Python takes them, and the digest that lets a
//! client sort a list it cannot compare on the server (which holds only
//! bytes): the order comes back with the digest of what was sorted, and is
//! applied only if the list still holds that.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::{Bound, RangeBounds};

use serde::{Deserialize, Serialize};

use crate::wire::{Stored, WireError};

/// A slice `[start:end]` as Python writes it: `None` for an end left out,
/// negative counting from the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Slice {
    pub(crate) start: Option<i64>,
    pub(crate) end: Option<i64>,
}

impl Slice {
    /// The slice of a Rust range over Python indexes (`-2..`, `1..=3`).
    pub(crate) fn of(range: &impl RangeBounds<i64>) -> Slice {
        let start = match range.start_bound() {
            Bound::Included(&s) => Some(s),
            Bound::Excluded(&s) => Some(s.saturating_add(1)),
            Bound::Unbounded => None,
        };
        let end = match range.end_bound() {
            // `..=-1` ends with the last item: to the end.
            Bound::Included(&-1) => None,
            Bound::Included(&e) => Some(e.saturating_add(1)),
            Bound::Excluded(&e) => Some(e),
            Bound::Unbounded => None,
        };
        Slice { start, end }
    }

    /// The positions it covers in a list of `len`, clamped as Python
    /// clamps them (a slice is never out of range; an inverted one is
    /// empty, at its start).
    pub(crate) fn bounds(self, len: usize) -> (usize, usize) {
        let clamp = |i: i64| -> usize {
            let len_i = i64::try_from(len).unwrap_or(i64::MAX);
            let j = if i < 0 { i.saturating_add(len_i) } else { i };
            usize::try_from(j.clamp(0, len_i)).unwrap_or(len)
        };
        let start = self.start.map_or(0, clamp);
        let end = self.end.map_or(len, clamp);
        (start, end.max(start))
    }
}

/// The digest of a list's items (their bytes, in order).
pub(crate) fn digest(items: &[Stored]) -> u64 {
    let mut h = DefaultHasher::new();
    items.len().hash(&mut h);
    for s in items {
        s.bytes.hash(&mut h);
    }
    h.finish()
}

/// Puts `items` in `order` (a permutation of their positions), if their
/// digest is still `expected`.
///
/// # Errors
///
/// [`WireError::Changed`] if the list changed since it was read,
/// [`WireError::Invalid`] if `order` is not a permutation.
pub(crate) fn permute(
    items: &mut Vec<Stored>,
    expected: u64,
    order: &[u64],
) -> Result<(), WireError> {
    if digest(items) != expected {
        return Err(WireError::Changed);
    }
    if order.len() != items.len() {
        return Err(WireError::Invalid("an order of another length".into()));
    }
    let mut taken: Vec<Option<Stored>> = items.drain(..).map(Some).collect();
    let mut out = Vec::with_capacity(taken.len());
    for &i in order {
        let slot = usize::try_from(i).ok().and_then(|i| taken.get_mut(i));
        match slot.and_then(Option::take) {
            Some(s) => out.push(s),
            None => {
                // Not a permutation: put back what was there, as it was.
                let mut back: Vec<Stored> = out;
                back.extend(taken.into_iter().flatten());
                *items = back;
                return Err(WireError::Invalid("not an order of the list".into()));
            }
        }
    }
    *items = out;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_clamp_as_python_does() {
        let b = |r: Slice| r.bounds(5);
        assert_eq!(b(Slice::of(&(..))), (0, 5));
        assert_eq!(b(Slice::of(&(1..3))), (1, 3));
        assert_eq!(b(Slice::of(&(-2..))), (3, 5));
        assert_eq!(b(Slice::of(&(..=-1))), (0, 5));
        assert_eq!(b(Slice::of(&(..=-2))), (0, 4));
        assert_eq!(b(Slice::of(&(1..=2))), (1, 3));
        let inverted = Slice {
            start: Some(3),
            end: Some(1),
        };
        assert_eq!(b(inverted), (3, 3));
        assert_eq!(b(Slice::of(&(-100..100))), (0, 5));
        assert_eq!(b(Slice::of(&(7..))), (5, 5));
    }

    fn stored(b: u8) -> Stored {
        Stored {
            bytes: vec![b],
            refs: Vec::new(),
        }
    }

    #[test]
    fn permute_applies_only_to_what_was_sorted() {
        let mut v: Vec<Stored> = [3, 1, 2].into_iter().map(stored).collect();
        let d = digest(&v);
        permute(&mut v, d, &[1, 2, 0]).unwrap();
        assert_eq!(v.iter().map(|s| s.bytes[0]).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(matches!(
            permute(&mut v, d, &[0, 1, 2]),
            Err(WireError::Changed)
        ));
        let d = digest(&v);
        assert!(matches!(
            permute(&mut v, d, &[0, 0, 1]),
            Err(WireError::Invalid(_))
        ));
        assert_eq!(v.iter().map(|s| s.bytes[0]).collect::<Vec<_>>(), [1, 2, 3]);
    }
}
