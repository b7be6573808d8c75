//! Process targets: plain functions of up to six arguments, returning a
//! value or a `Result`.
//!
//! A target must be a `fn` item or a closure that captures nothing, so that
//! its type alone says what to run: a child started by re-executing the
//! binary, or by a fork server forked before the target existed, can call it
//! without receiving any of its bytes. This is checked at compile time.
//!
//! What a target returns is one of a few kinds, each an implementation of
//! [`Target`] with its own marker type (see [`kind`]): a serde value, or a
//! `Result` whose error is turned into its message in the child, so that a
//! target can use `?` on any error.
//!
//! # Safety
//!
//! Conjuring a zero-sized target is argued at its block.
#![allow(unsafe_code)]

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::ops::Deref;
use std::os::fd::OwnedFd;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::outcome::Outcome;

/// A function a child process (or a pool's worker) can run: a `fn` item, or
/// a closure that captures nothing, taking 0 to 6 arguments given as a
/// tuple, and returning either a serde value or a `Result<T, E>` with a
/// serde `T`.
///
/// The error of a `Result` can be any [`std::error::Error`] (so
/// [`mp::Error`](crate::Error), `std::io::Error`, a `thiserror` type),
/// `Box<dyn Error>`, `Box<dyn Error + Send + Sync>` or an `anyhow::Error`
/// (anything that derefs to `dyn Error` or `dyn Error + Send + Sync`):
/// the child sends its message (with its chain of sources) and the parent
/// gets [`Error::ChildFailed`](crate::Error::ChildFailed) (or, from a pool,
/// [`Error::TaskFailed`](crate::Error::TaskFailed)), distinct from a panic.
/// A `Result` whose error is itself a serde type and not an `Error` (say
/// `Result<u64, String>`) is a plain value: it comes back whole, `Err` and
/// all. An error type that is both a serde type and an `Error` is
/// ambiguous, and the call does not compile ("type annotations needed"):
/// return `mp::Result<T>` then, converting with `?` or `map_err`.
///
/// `Kind` is one of the marker types of [`kind`]; it is inferred, never
/// written. Implemented for every such function; there is nothing to
/// implement by hand.
///
/// Python: the `target` and `args` of `multiprocessing.Process`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot run in another process with arguments `{Args}`",
    label = "not a process target",
    note = "a target is a `fn` item, or a closure that captures nothing, of 0 to 6 arguments, given as a tuple: `Process::new(f, (a, b))`",
    note = "a closure that captures a variable is not a target: pass the variable as an argument",
    note = "it returns a serde value (`Serialize + Deserialize`), or a `Result<T, E>` with a serde `T` and an `E` that is a `std::error::Error`, a `Box<dyn Error>` or an `anyhow::Error`"
)]
pub trait Target<Args, Kind = kind::Value>: Copy + Send + 'static {
    /// What the caller gets back: what the function returns, or the `T` of
    /// its `Result<T, E>`.
    type Output;

    /// Calls the function with its arguments unpacked from the tuple; `Err`
    /// is the message of the error it returned.
    ///
    /// # Errors
    ///
    /// The function's own error, as its message.
    fn call(self, args: Args) -> Result<Self::Output, String>;
}

/// The kinds of [`Target`]: one marker type for each shape of what a
/// target returns. They only select an implementation and are never
/// written.
pub mod kind {
    /// The target returns a serde value.
    #[derive(Debug)]
    pub struct Value;

    /// The target returns `Result<T, E>` with `E: std::error::Error`.
    #[derive(Debug)]
    pub struct Fallible;

    /// The target returns `Result<T, E>` where `E` derefs to
    /// `dyn Error + Send + Sync` (`Box<dyn Error + Send + Sync>`,
    /// `anyhow::Error`).
    #[derive(Debug)]
    pub struct FallibleDyn;

    /// The target returns `Result<T, Box<dyn Error>>`.
    #[derive(Debug)]
    pub struct FallibleLocalDyn;
}

/// The message of an error and of the chain of its sources, as
/// `top: cause: root`.
fn chain(error: &dyn StdError) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(message, ": {e}");
        source = e.source();
    }
    message
}

macro_rules! impl_target {
    ($($arg:ident),*) => {
        #[diagnostic::do_not_recommend]
        impl<Func, Ret, $($arg,)*> Target<($($arg,)*), kind::Value> for Func
        where
            Func: Fn($($arg),*) -> Ret + Copy + Send + 'static,
            Ret: Serialize,
        {
            type Output = Ret;

            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Result<Ret, String> {
                Ok(self($($arg),*))
            }
        }

        #[diagnostic::do_not_recommend]
        impl<Func, T, E, $($arg,)*> Target<($($arg,)*), kind::Fallible> for Func
        where
            Func: Fn($($arg),*) -> Result<T, E> + Copy + Send + 'static,
            T: Serialize,
            E: StdError,
        {
            type Output = T;

            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Result<T, String> {
                self($($arg),*).map_err(|e| chain(&e))
            }
        }

        #[diagnostic::do_not_recommend]
        impl<Func, T, E, $($arg,)*> Target<($($arg,)*), kind::FallibleDyn> for Func
        where
            Func: Fn($($arg),*) -> Result<T, E> + Copy + Send + 'static,
            T: Serialize,
            E: Deref<Target = dyn StdError + Send + Sync>,
        {
            type Output = T;

            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Result<T, String> {
                self($($arg),*).map_err(|e| chain(&*e))
            }
        }

        #[diagnostic::do_not_recommend]
        impl<Func, T, E, $($arg,)*> Target<($($arg,)*), kind::FallibleLocalDyn> for Func
        where
            Func: Fn($($arg),*) -> Result<T, E> + Copy + Send + 'static,
            T: Serialize,
            E: Deref<Target = dyn StdError>,
        {
            type Output = T;

            #[allow(non_snake_case, clippy::unused_unit)]
            fn call(self, ($($arg,)*): ($($arg,)*)) -> Result<T, String> {
                self($($arg),*).map_err(|e| chain(&*e))
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

/// The arguments of a target: a tuple of owned serde values, which is what
/// can be copied into another process.
///
/// Implemented for every such tuple; there is nothing to implement by hand.
/// A borrowed argument (`&str`, `&[T]`) is refused by the compiler with
/// serde's message that "implementation of `Deserialize` is not general
/// enough" (lifetimes are checked after traits, so no message of ours can
/// reach it): pass `String`, `Vec<T>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be sent to another process as a target's arguments",
    label = "not owned serde values",
    note = "arguments are a tuple of owned serde values (`Serialize + Deserialize`, no borrows): `String` rather than `&str`, `Vec<T>` rather than `&[T]`",
    note = "a file, socket or other descriptor travels as `mp::handoff::HandoffFd` (`HandoffFd::from(file)`), and shared objects (`Value`, `Queue`, `Lock`, a manager's proxies) as they are"
)]
pub trait Args: Serialize + DeserializeOwned + Send + 'static {}

#[diagnostic::do_not_recommend]
impl<A: Serialize + DeserializeOwned + Send + 'static> Args for A {}

/// Fails to compile for a target that is not zero-sized.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        size_of::<F>() == 0,
        "a process target must be a fn item or a closure that captures nothing: pass what it \
         captures as an argument"
    );
}

/// Conjures the zero-sized function `F`.
pub(crate) fn conjure<F: Copy>() -> F {
    const { assert_zero_sized::<F>() };
    // SAFETY: `F` is zero-sized (asserted at compile time above) and `Copy`;
    // the callers pass `Target` types, which are `Fn` types, so a fn item or
    // a closure that captures nothing. Such a value has no bytes and no
    // invariant: conjuring it is copying the one the task was made from.
    unsafe { std::mem::zeroed() }
}

/// The entry of target `F` with arguments `A`.
pub(crate) fn entry<F, A, K>(args: &[u8], fds: Vec<OwnedFd>) -> Outcome
where
    F: Target<A, K>,
    F::Output: Serialize,
    A: DeserializeOwned,
{
    let args: A = match crate::handoff::decode_with_fds(args, fds) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(format!("cannot decode the arguments: {e}")),
    };
    match conjure::<F>().call(args) {
        Ok(out) => match crate::codec::encode(&out) {
            Ok(bytes) => Outcome::Returned(bytes),
            Err(e) => Outcome::Failed(format!("cannot encode the result: {e}")),
        },
        Err(message) => Outcome::Errored(message),
    }
}
