//! Where a function sits in the binary: how a target, a task or a plain
//! function crosses into another process of the same program, which finds
//! it at the same offset in its own copy of the image.
//!
//! # Safety
//!
//! Turning an address sent by another process back into a function pointer
//! is argued at its block.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// The type-erased form of a target with its argument and result types:
/// decodes the arguments (claiming the descriptors their handles need),
/// calls the target, encodes what it returned. Its address is what reaches
/// a spawned or fork-server child; the same binary maps it back.
pub(crate) type EntryFn = fn(&[u8], Vec<OwnedFd>) -> Outcome;

/// Two statics whose addresses anchor the position-independent image of
/// the binary; their distance checks that a child runs the same layout.
static ANCHOR: u8 = 0;
static ANCHOR_END: u8 = 0;

fn anchor(a: &'static u8) -> i64 {
    // Addresses of a 64-bit image fit in i64.
    (std::ptr::from_ref(a) as usize) as i64
}

/// Where an entry function sits in the binary, relative to [`ANCHOR`], so
/// that a child whose image is loaded at another base finds it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct EntryAddress {
    layout: i64,
    offset: i64,
}

impl EntryAddress {
    pub(crate) fn of(entry: EntryFn) -> EntryAddress {
        EntryAddress::of_addr(entry as usize)
    }

    /// The place of any function whose address is `addr`.
    pub(crate) fn of_addr(addr: usize) -> EntryAddress {
        EntryAddress {
            layout: anchor(&ANCHOR_END) - anchor(&ANCHOR),
            offset: addr as i64 - anchor(&ANCHOR),
        }
    }

    /// The address in this process, or `None` if this binary's layout is
    /// not the one the address was taken in.
    fn addr(self) -> Option<usize> {
        (self.layout == anchor(&ANCHOR_END) - anchor(&ANCHOR))
            .then(|| (anchor(&ANCHOR) + self.offset) as usize)
    }

    /// The entry in this process, or `None` if this binary's layout is not
    /// the one the address was taken in.
    pub(crate) fn resolve(self) -> Option<EntryFn> {
        let addr = self.addr()?;
        // SAFETY: the address was computed by `of` from a value of type
        // `EntryFn` in the parent, which runs this same binary: spawn and
        // the fork server execute `/proc/self/exe` of the parent (a
        // fork-server child is a copy of the server), and a setuid
        // program's forked server is a copy of the program. The image is relocated as a whole,
        // so offsets from `ANCHOR` are the same in both, as the layout check
        // in `addr` confirms for two statics of this crate.
        Some(unsafe { std::mem::transmute::<usize, EntryFn>(addr) })
    }

    /// Reads an address written by another process of this program, as a
    /// serde value (how `RemoteFn` and `TaskFn` travel).
    pub(crate) fn deserialize_addr<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<usize, D::Error> {
        EntryAddress::deserialize(d)?.addr().ok_or_else(|| {
            serde::de::Error::custom(crate::codec::custom_error(
                "a function from a different binary".into(),
            ))
        })
    }
}
