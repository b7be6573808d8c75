//! Functions that cross into long-lived processes of the program: a
//! [`TaskFn`] (a typed function with its argument and result types, how a
//! pool sends work to its workers) and a [`RemoteFn`] (a plain `fn()`).
//!
//! # Safety
//!
//! Each crosses as its place in the binary; turning it back into a function
//! pointer is argued at its block.
#![allow(unsafe_code)]

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::address::EntryAddress;
use crate::error::{Error, Result};
use crate::target::{Target, conjure};

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
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        EntryAddress::of_addr(self.0 as usize).serialize(s)
    }
}

impl<'de> Deserialize<'de> for RemoteFn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<RemoteFn, D::Error> {
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
type TaskEntry = fn(&[u8], Vec<u8>) -> Result<Vec<u8>>;

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
    pub fn new<F, A, K>(f: F) -> TaskFn
    where
        F: Target<A, K>,
        F::Output: Serialize,
        A: DeserializeOwned,
    {
        let _ = f;
        TaskFn(task_entry::<F, A, K>)
    }

    /// The task of calling `f` on every argument tuple of a chunk:
    /// [`call`](Self::call) takes an encoded `Vec<A>` and gives an encoded
    /// `Vec<F::Output>`, in order. The first item whose function returns an
    /// error fails the chunk, as in Python, where the chunk's exception is
    /// the call's.
    pub fn chunk<F, A, K>(f: F) -> TaskFn
    where
        F: Target<A, K>,
        F::Output: Serialize,
        A: DeserializeOwned,
    {
        let _ = f;
        TaskFn(chunk_entry::<F, A, K>)
    }

    /// Runs the task. A panic of the function unwinds out of this call.
    ///
    /// # Errors
    ///
    /// [`Error::TaskFailed`] if the function returned an error,
    /// [`Error::Decode`] if the input does not decode, [`Error::Encode`] if
    /// the result does not encode.
    pub fn call(self, input: &[u8]) -> Result<Vec<u8>> {
        (self.0)(input, Vec::new())
    }

    /// As [`call`](Self::call), encoding the result after the bytes already
    /// in `out` (a reply's header), which it returns.
    ///
    /// # Errors
    ///
    /// As [`call`](Self::call).
    pub fn call_into(self, input: &[u8], out: Vec<u8>) -> Result<Vec<u8>> {
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
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        EntryAddress::of_addr(self.0 as usize).serialize(s)
    }
}

impl<'de> Deserialize<'de> for TaskFn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<TaskFn, D::Error> {
        let addr = EntryAddress::deserialize_addr(d)?;
        // SAFETY: as for `EntryAddress::resolve`: the offset was taken from a
        // `TaskEntry` value in a process running this same binary, whose
        // image is relocated as a whole, as the layout check confirms.
        Ok(TaskFn(unsafe {
            std::mem::transmute::<usize, TaskEntry>(addr)
        }))
    }
}

fn decode_input<A: DeserializeOwned>(input: &[u8]) -> Result<A> {
    crate::codec::bulk::decode(input)
        .map_err(|e| Error::Decode(format!("cannot decode the arguments: {e}")))
}

fn encode_output<T: Serialize>(value: &T, out: Vec<u8>) -> Result<Vec<u8>> {
    crate::codec::bulk::encode_into(value, out).map_err(|e| match e {
        Error::Encode(why) => Error::Encode(format!("cannot encode the result: {why}")),
        other => other,
    })
}

fn task_entry<F, A, K>(input: &[u8], out: Vec<u8>) -> Result<Vec<u8>>
where
    F: Target<A, K>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let args: A = decode_input(input)?;
    let result = conjure::<F>()
        .call(args)
        .map_err(|message| Error::TaskFailed { message })?;
    encode_output(&result, out)
}

fn chunk_entry<F, A, K>(input: &[u8], out: Vec<u8>) -> Result<Vec<u8>>
where
    F: Target<A, K>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let items: Vec<A> = decode_input(input)?;
    let f = conjure::<F>();
    let results = items
        .into_iter()
        .map(|a| f.call(a))
        .collect::<std::result::Result<Vec<F::Output>, String>>()
        .map_err(|message| Error::TaskFailed { message })?;
    encode_output(&results, out)
}
