//! Process targets: plain functions of up to six arguments.
//!
//! A target must be a `fn` item or a closure that captures nothing, so that
//! its type alone says what to run: a child started by re-executing the
//! binary, or by a fork server forked before the target existed, can call it
//! without receiving any of its bytes. This is checked at compile time.

//!
//! # Safety
//!
//! Two unsafe operations live here: conjuring a zero-sized target, and
//! turning an entry's address, sent by the parent, back into a function
//! pointer in a child that runs the same binary. Each is argued at its block.
#![allow(unsafe_code)]

use std::os::fd::OwnedFd;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

/// A function a child process can run: a `fn` item, or a closure that
/// captures nothing, taking 0 to 6 arguments given as a tuple.
///
/// Python: the `target` and `args` of `multiprocessing.Process`. Implemented
/// for every such function; there is nothing to implement by hand.
pub trait Target<Args>: Copy + Send + 'static {
    /// What the function returns.
    type Output;

    /// Calls the function with its arguments unpacked from the tuple.
    fn call(self, args: Args) -> Self::Output;
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        impl<Func, Ret, $($arg,)*> Target<($($arg,)*)> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + 'static,
        {
            type Output = Ret;

            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Ret {
                self($($arg),*)
            }
        }
    };
}

impl_target!();
impl_target!(A1);
impl_target!(A1, A2);
impl_target!(A1, A2, A3);
impl_target!(A1, A2, A3, A4);
impl_target!(A1, A2, A3, A4, A5);
impl_target!(A1, A2, A3, A4, A5, A6);

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
    fn of_addr(addr: usize) -> EntryAddress {
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
        // `EntryFn` in the parent, which runs this same binary: spawn
        // executes `/proc/self/exe` of the parent, and a fork-server child
        // is a copy of the parent's image. The image is relocated as a whole,
        // so offsets from `ANCHOR` are the same in both, as the layout check
        // in `addr` confirms for two statics of this crate.
        Some(unsafe { std::mem::transmute::<usize, EntryFn>(addr) })
    }

    /// Reads an address written by another process of this program, as a
    /// serde value (how `RemoteFn` and `TaskFn` travel).
    fn deserialize_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
        EntryAddress::deserialize(d)?.addr().ok_or_else(|| {
            serde::de::Error::custom(crate::codec::custom_error(
                "a function from a different binary".into(),
            ))
        })
    }
}

/// Fails to compile for a target that is not zero-sized.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        size_of::<F>() == 0,
        "a process target must be a fn item or a closure that captures nothing"
    );
}

/// A plain function (`fn()`) that any process of the program can call: it
/// crosses process boundaries as its place in the binary, as a target does,
/// so a shared object can carry one (a barrier's action, say).
///
/// Python: a picklable module-level function.
#[derive(Clone, Copy)]
pub struct RemoteFn(fn());

impl RemoteFn {
    /// Wraps `f`.
    pub fn new(f: fn()) -> RemoteFn {
        RemoteFn(f)
    }

    /// Calls the function.
    pub fn call(self) {
        (self.0)();
    }
}

impl std::fmt::Debug for RemoteFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RemoteFn")
            .field(&(self.0 as usize as *const ()))
            .finish()
    }
}

impl Serialize for RemoteFn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EntryAddress::of_addr(self.0 as usize).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RemoteFn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RemoteFn, D::Error> {
        let addr = EntryAddress::deserialize_addr(d)?;
        // SAFETY: as for `EntryAddress::resolve`: the offset was taken from a
        // `fn()` value in a process running this same binary, whose image is
        // relocated as a whole, as the layout check confirms.
        Ok(RemoteFn(unsafe {
            std::mem::transmute::<usize, fn()>(addr)
        }))
    }
}

/// The erased form of a task: encoded arguments in, encoded result out
/// (both in [`codec::bulk`](crate::codec::bulk)'s encoding).
type TaskEntry = fn(&[u8], Vec<u8>) -> Result<Vec<u8>, String>;

/// A function with its argument and result types, erased so that any
/// process of the program can call it with arguments encoded by
/// [`codec::bulk`](crate::codec::bulk): how a pool
/// sends work to long-lived workers. It crosses process boundaries as its
/// place in the binary, as a target does.
///
/// Python: a picklable module-level function given to `Pool.apply` or
/// `Pool.map`.
#[derive(Clone, Copy)]
pub struct TaskFn(TaskEntry);

impl TaskFn {
    /// The task `f(args...)`: [`call`](Self::call) takes the encoded
    /// argument tuple `A` and gives the encoded result.
    pub fn new<F, A>(f: F) -> TaskFn
    where
        F: Target<A>,
        F::Output: Serialize,
        A: DeserializeOwned,
    {
        let _ = f;
        TaskFn(task_entry::<F, A>)
    }

    /// The task of calling `f` on every argument tuple of a chunk:
    /// [`call`](Self::call) takes an encoded `Vec<A>` and gives an encoded
    /// `Vec<F::Output>`, in order.
    pub fn chunk<F, A>(f: F) -> TaskFn
    where
        F: Target<A>,
        F::Output: Serialize,
        A: DeserializeOwned,
    {
        let _ = f;
        TaskFn(chunk_entry::<F, A>)
    }

    /// Runs the task. A panic of the function unwinds out of this call;
    /// `Err` says the input or output could not be encoded.
    ///
    /// # Errors
    ///
    /// The reason, as text.
    pub fn call(self, input: &[u8]) -> Result<Vec<u8>, String> {
        (self.0)(input, Vec::new())
    }

    /// As [`call`](Self::call), encoding the result after the bytes already
    /// in `out` (a reply's header), which it returns.
    ///
    /// # Errors
    ///
    /// The reason, as text.
    pub fn call_into(self, input: &[u8], out: Vec<u8>) -> Result<Vec<u8>, String> {
        (self.0)(input, out)
    }
}

impl std::fmt::Debug for TaskFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TaskFn")
            .field(&(self.0 as usize as *const ()))
            .finish()
    }
}

impl Serialize for TaskFn {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EntryAddress::of_addr(self.0 as usize).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TaskFn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TaskFn, D::Error> {
        let addr = EntryAddress::deserialize_addr(d)?;
        // SAFETY: as for `EntryAddress::resolve`: the offset was taken from a
        // `TaskEntry` value in a process running this same binary, whose
        // image is relocated as a whole, as the layout check confirms.
        Ok(TaskFn(unsafe {
            std::mem::transmute::<usize, TaskEntry>(addr)
        }))
    }
}

/// Conjures the zero-sized function `F`.
fn conjure<F: Copy>() -> F {
    const { assert_zero_sized::<F>() };
    // SAFETY: `F` is zero-sized (asserted at compile time above) and `Copy`;
    // the callers pass `Target` types, which are `Fn` types, so a fn item or
    // a closure that captures nothing. Such a value has no bytes and no
    // invariant: conjuring it is copying the one the task was made from.
    unsafe { std::mem::zeroed() }
}

fn task_entry<F, A>(input: &[u8], out: Vec<u8>) -> Result<Vec<u8>, String>
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let args: A = crate::codec::bulk::decode(input)
        .map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let result = conjure::<F>().call(args);
    crate::codec::bulk::encode_into(&result, out)
        .map_err(|e| format!("cannot encode the result: {e}"))
}

fn chunk_entry<F, A>(input: &[u8], out: Vec<u8>) -> Result<Vec<u8>, String>
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let items: Vec<A> = crate::codec::bulk::decode(input)
        .map_err(|e| format!("cannot decode the arguments: {e}"))?;
    let f = conjure::<F>();
    let results: Vec<F::Output> = items.into_iter().map(|a| f.call(a)).collect();
    crate::codec::bulk::encode_into(&results, out)
        .map_err(|e| format!("cannot encode the results: {e}"))
}

/// The entry of target `F` with arguments `A`.
pub(crate) fn entry<F, A>(args: &[u8], fds: Vec<OwnedFd>) -> Outcome
where
    F: Target<A>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let args: A = match crate::handoff::decode_with_fds(args, fds) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("cannot decode the arguments: {e}")),
    };
    let target: F = conjure::<F>();
    let out = target.call(args);
    match crate::codec::encode(&out) {
        Ok(bytes) => Outcome::Returned(bytes),
        Err(e) => Outcome::Failed(format!("cannot encode the result: {e}")),
    }
}
