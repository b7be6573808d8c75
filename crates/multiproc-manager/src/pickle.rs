//! Pickles, for talking to CPython peers: a Python client of our manager,
//! or a Python manager we are a client of.
//!
//! [`dumps`] writes pickle protocol 3 (every CPython 3 reads it) through
//! serde-pickle. [`loads`] reads protocols 0 to 5: a small walker over the
//! opcodes first checks that the pickle holds plain data, or is one
//! exception instance (which becomes [`Error::Python`]), then serde-pickle
//! decodes the value. Nothing is ever imported or called: a class named in
//! a pickle is only a name to us. [`dumps_exception`] writes the exception
//! instances a Python client expects (`queue.Empty`, `KeyError`, ...).
//!
//! What a Rust value becomes in Python (checked against CPython 3.11):
//!
//! | Rust | Python |
//! |---|---|
//! | `()`, `None`, a unit struct | `None` |
//! | `bool` | `bool` |
//! | `i8` to `i64`, `u8` to `u64` | `int` (`u64::MAX` too) |
//! | `i128`, `u128` | refused, both ways (even `5u128`) |
//! | `f32`, `f64` | `float` |
//! | `char`, `&str`, `String` | `str` |
//! | `serde_bytes::ByteBuf`, `&serde_bytes::Bytes` | `bytes` |
//! | `Vec<u8>`, `[u8; N]` | `list` of `int` (not `bytes`) |
//! | `Vec<T>`, slices, `HashSet`, `BTreeSet` | `list` (serde has no set) |
//! | tuples, tuple structs | `tuple` |
//! | `HashMap`, `BTreeMap` | `dict` |
//! | a struct | `dict` of its fields by name |
//! | a unit enum variant | `str`, the variant's name |
//! | `E::V(x)`, `E::V { .. }` | `{'V': x}`, `{'V': {..}}` |
//!
//! A Python `set` cannot be written (serde has no set type). A map keyed by
//! `Vec`s is written with `list` keys, which Python refuses to load; key it
//! by tuples instead.
//!
//! Reading, a Python `set` or `frozenset` fills any Rust sequence (`Vec`,
//! `HashSet`, ...), `bytes` and `bytearray` fill a `ByteBuf` (not a
//! `Vec<u8>`), `tuple` and `list` a `Vec` or a tuple, `dict` a map or a
//! struct. A Python `int` outside `i64` is refused as [`Error::Decode`],
//! whatever the Rust type (`u64` too, so `u64::MAX` does not come back):
//! serde-pickle carries integers through serde as `i64` only.
//!
//! An exception instance at the top of a pickle becomes [`Error::Python`];
//! a class counts as an exception by its name (we never import it): one
//! ending in `Error`, `Exception`, `Warning` or `Exit`, the other builtin
//! exceptions, and `queue.Empty` and `queue.Full`. An instance of any other
//! class, or an exception inside other data (a manager's `('#ERROR', exc)`
//! reply), is [`Error::Decode`] naming the class. So is a pickle that
//! expands far beyond its own size (a shared object fetched from the memo
//! many times: serde-pickle copies each), nests deeper than [`MAX_DEPTH`],
//! has bytes after its `STOP`, or uses out-of-band buffers, persistent ids
//! or the extension registry.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::fmt::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_pickle::{DeOptions, HashableValue, SerOptions, Value};

use crate::{Error, Result};

/// Encodes `value` as a protocol 3 pickle.
///
/// # Errors
///
/// [`Error::Encode`] if serde-pickle cannot write the value (an `i128` or
/// a `u128`).
pub(crate) fn dumps<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_pickle::to_vec(&value, SerOptions::new()).map_err(|e| Error::Encode(e.to_string()))
}

/// Decodes a pickle of protocol 0 to 5 into a `T`.
///
/// # Errors
///
/// [`Error::Python`] if the pickle is an exception instance;
/// [`Error::Decode`] if it is malformed or truncated, holds an object of
/// another class (`datetime.datetime`, a user class), or is not a `T`.
pub(crate) fn loads<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let walked = Walker::new(bytes).walk()?;
    let patched = walked.patched(bytes);
    let plain = patched.as_deref().unwrap_or(bytes);
    match walked.top.kind {
        Kind::Instance(class) if is_exception(&class.module(bytes), class.name(bytes)) => {
            Err(exception(plain, class.full_name(bytes)))
        }
        Kind::Global(class) | Kind::Instance(class) => Err(not_plain(&class.full_name(bytes))),
        Kind::Data | Kind::EmptyTuple | Kind::Str(_) => {
            serde_pickle::from_slice(plain, DeOptions::new())
                .map_err(|e| Error::Decode(format!("pickle: {e}")))
        }
    }
}

/// Writes the pickle (protocol 3) of an instance of the exception class
/// `class`, given as `module.Name` (`_queue.Empty`, `builtins.KeyError`),
/// made with `args`: what `pickle.dumps(KeyError('k'))` gives, which a
/// Python peer unpickles into the exception. A class without a dot is
/// taken from `builtins`; it must not contain a newline.
#[cfg_attr(
    not(test),
    allow(dead_code, reason = "not yet called outside the tests")
)]
pub(crate) fn dumps_exception(class: &str, args: &[&str]) -> Vec<u8> {
    debug_assert!(
        !class.contains('\n'),
        "class name {class:?} holds a newline"
    );
    let (module, name) = class.rsplit_once('.').unwrap_or(("builtins", class));
    let mut out = Vec::with_capacity(32 + module.len() + name.len());
    out.extend_from_slice(&[op::PROTO, 3, op::GLOBAL]);
    for part in [module, name] {
        out.extend_from_slice(part.as_bytes());
        out.push(b'\n');
    }
    if args.len() > 3 {
        out.push(op::MARK);
    }
    for arg in args {
        match u32::try_from(arg.len()) {
            Ok(len) => {
                out.push(op::BINUNICODE);
                out.extend_from_slice(&len.to_le_bytes());
            }
            // Beyond 4 GiB: protocol 4's opcode, which CPython reads in any pickle.
            Err(_) => {
                out.push(op::BINUNICODE8);
                out.extend_from_slice(&(arg.len() as u64).to_le_bytes());
            }
        }
        out.extend_from_slice(arg.as_bytes());
    }
    out.push(match args.len() {
        0 => op::EMPTY_TUPLE,
        1 => op::TUPLE1,
        2 => op::TUPLE2,
        3 => op::TUPLE3,
        _ => op::TUPLE,
    });
    out.extend_from_slice(&[op::REDUCE, op::STOP]);
    out
}

/// How deeply containers may nest in a pickle [`loads`] reads, and how many
/// marks may be open at once: serde-pickle recurses once per level, and
/// CPython itself cannot pickle much deeper than 1000.
pub(crate) const MAX_DEPTH: u32 = 128;

/// What one decoded object is reckoned to cost in memory, in bytes, on top of
/// its payload: the limit on how far a pickle may expand is counted in these.
const NODE: u64 = 64;

/// How much more than `NODE` per byte of input a pickle may expand to, by
/// fetching shared objects from its memo: serde-pickle copies each one.
const MAX_EXPANSION: u64 = 64 << 20;

/// The opcodes [`dumps_exception`] writes and the walker's patches use.
mod op {
    pub(super) const MARK: u8 = b'(';
    pub(super) const STOP: u8 = b'.';
    pub(super) const POP: u8 = b'0';
    pub(super) const NONE: u8 = b'N';
    pub(super) const REDUCE: u8 = b'R';
    pub(super) const BINUNICODE: u8 = b'X';
    pub(super) const GLOBAL: u8 = b'c';
    pub(super) const TUPLE: u8 = b't';
    pub(super) const EMPTY_TUPLE: u8 = b')';
    pub(super) const SHORT_BINBYTES: u8 = b'C';
    pub(super) const PROTO: u8 = 0x80;
    pub(super) const TUPLE1: u8 = 0x85;
    pub(super) const TUPLE2: u8 = 0x86;
    pub(super) const TUPLE3: u8 = 0x87;
    pub(super) const BINUNICODE8: u8 = 0x8d;
}

/// How an opcode's argument follows it in the pickle.
#[derive(Debug, Clone, Copy)]
enum Arg {
    /// None.
    No,
    /// So many bytes.
    Fixed(usize),
    /// A line, ended by `\n`.
    Line,
    /// Two lines: a module and a name.
    TwoLines,
    /// A little-endian length of so many bytes, then that many bytes.
    Counted(usize),
}

/// Which objects an opcode takes from the stack.
#[derive(Debug, Clone, Copy)]
enum Items {
    /// The topmost so many.
    Top(usize),
    /// Those above the topmost mark, and the mark.
    ToMark,
}

/// What an opcode does, as far as the walker needs to know.
#[derive(Debug, Clone, Copy)]
enum Effect {
    /// Nothing to the stack (`PROTO`, `FRAME`).
    Nop,
    /// Pushes a scalar, or an empty list, dict or set.
    Push,
    /// Pushes a UTF-8 string, which `STACK_GLOBAL` may use as a name.
    PushStr,
    /// Builds a tuple of the items.
    Tuple(Items),
    /// Builds a list, dict or frozenset of the items.
    Container(Items),
    /// Adds the items to the list, dict or set below them.
    Extend(Items),
    Mark,
    Pop,
    PopMark,
    Dup,
    /// Stores the top in the memo under the id in the argument.
    Put,
    /// Stores the top in the memo under the next free id.
    Memoize,
    /// Pushes the memo's object of the id in the argument.
    Get,
    Global,
    StackGlobal,
    Reduce,
    /// `BUILD`: sets an object's state.
    SetState,
    /// Makes an instance of a class (`INST`, `OBJ`, `NEWOBJ`, `NEWOBJ_EX`).
    NewObject,
    /// An opcode we refuse, with the reason.
    Refuse(&'static str),
    Stop,
}

/// One opcode of pickletools' list: its byte, name, argument and effect.
struct Opcode {
    code: u8,
    name: &'static str,
    arg: Arg,
    effect: Effect,
}

/// Shorthand for a row of [`OPCODES`].
const fn row(code: u8, name: &'static str, arg: Arg, effect: Effect) -> Opcode {
    Opcode {
        code,
        name,
        arg,
        effect,
    }
}

/// Every opcode of protocols 0 to 5, as in CPython's `pickletools`.
const OPCODES: &[Opcode] = {
    use Arg::{Counted, Fixed, Line, No, TwoLines};
    use Effect::*;
    use Items::{ToMark, Top};
    &[
        // Protocol 0 and 1.
        row(b'(', "MARK", No, Mark),
        row(b'.', "STOP", No, Stop),
        row(b'0', "POP", No, Pop),
        row(b'1', "POP_MARK", No, PopMark),
        row(b'2', "DUP", No, Dup),
        row(b'F', "FLOAT", Line, Push),
        row(b'I', "INT", Line, Push),
        row(b'J', "BININT", Fixed(4), Push),
        row(b'K', "BININT1", Fixed(1), Push),
        row(b'L', "LONG", Line, Push),
        row(b'M', "BININT2", Fixed(2), Push),
        row(b'N', "NONE", No, Push),
        row(b'P', "PERSID", Line, Refuse("persistent ids")),
        row(b'Q', "BINPERSID", No, Refuse("persistent ids")),
        row(b'R', "REDUCE", No, Reduce),
        row(b'S', "STRING", Line, Push),
        row(b'T', "BINSTRING", Counted(4), Push),
        row(b'U', "SHORT_BINSTRING", Counted(1), Push),
        row(b'V', "UNICODE", Line, Push),
        row(b'X', "BINUNICODE", Counted(4), PushStr),
        row(b'a', "APPEND", No, Extend(Top(1))),
        row(b'b', "BUILD", No, SetState),
        row(b'c', "GLOBAL", TwoLines, Global),
        row(b'd', "DICT", No, Container(ToMark)),
        row(b'}', "EMPTY_DICT", No, Push),
        row(b'e', "APPENDS", No, Extend(ToMark)),
        row(b'g', "GET", Line, Get),
        row(b'h', "BINGET", Fixed(1), Get),
        row(b'i', "INST", TwoLines, NewObject),
        row(b'j', "LONG_BINGET", Fixed(4), Get),
        row(b'l', "LIST", No, Container(ToMark)),
        row(b']', "EMPTY_LIST", No, Push),
        row(b'o', "OBJ", No, NewObject),
        row(b'p', "PUT", Line, Put),
        row(b'q', "BINPUT", Fixed(1), Put),
        row(b'r', "LONG_BINPUT", Fixed(4), Put),
        row(b's', "SETITEM", No, Extend(Top(2))),
        row(b't', "TUPLE", No, Tuple(ToMark)),
        row(b')', "EMPTY_TUPLE", No, Tuple(Top(0))),
        row(b'u', "SETITEMS", No, Extend(ToMark)),
        row(b'G', "BINFLOAT", Fixed(8), Push),
        // Protocol 2.
        row(0x80, "PROTO", Fixed(1), Nop),
        row(0x81, "NEWOBJ", No, NewObject),
        row(0x82, "EXT1", Fixed(1), Refuse("extension codes")),
        row(0x83, "EXT2", Fixed(2), Refuse("extension codes")),
        row(0x84, "EXT4", Fixed(4), Refuse("extension codes")),
        row(0x85, "TUPLE1", No, Tuple(Top(1))),
        row(0x86, "TUPLE2", No, Tuple(Top(2))),
        row(0x87, "TUPLE3", No, Tuple(Top(3))),
        row(0x88, "NEWTRUE", No, Push),
        row(0x89, "NEWFALSE", No, Push),
        row(0x8a, "LONG1", Counted(1), Push),
        row(0x8b, "LONG4", Counted(4), Push),
        // Protocol 3.
        row(b'B', "BINBYTES", Counted(4), Push),
        row(b'C', "SHORT_BINBYTES", Counted(1), Push),
        // Protocol 4.
        row(0x8c, "SHORT_BINUNICODE", Counted(1), PushStr),
        row(0x8d, "BINUNICODE8", Counted(8), PushStr),
        row(0x8e, "BINBYTES8", Counted(8), Push),
        row(0x8f, "EMPTY_SET", No, Push),
        row(0x90, "ADDITEMS", No, Extend(ToMark)),
        row(0x91, "FROZENSET", No, Container(ToMark)),
        row(0x92, "NEWOBJ_EX", No, NewObject),
        row(0x93, "STACK_GLOBAL", No, StackGlobal),
        row(0x94, "MEMOIZE", No, Memoize),
        row(0x95, "FRAME", Fixed(8), Nop),
        // Protocol 5.
        row(0x96, "BYTEARRAY8", Counted(8), Push),
        row(0x97, "NEXT_BUFFER", No, Refuse("out-of-band buffers")),
        row(0x98, "READONLY_BUFFER", No, Refuse("out-of-band buffers")),
    ]
};

/// For each byte, its row in [`OPCODES`], or `u8::MAX` if it is no opcode.
const INDEX: [u8; 256] = {
    let mut index = [u8::MAX; 256];
    let mut i = 0;
    while i < OPCODES.len() {
        index[OPCODES[i].code as usize] = i as u8;
        i += 1;
    }
    index
};

/// A range of the pickle's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: usize,
    end: usize,
}

impl Span {
    fn of<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        bytes.get(self.start..self.end).unwrap_or_default()
    }
}

/// A class named by `GLOBAL` or `STACK_GLOBAL`: spans of its module and name.
#[derive(Debug, Clone, Copy)]
struct Class {
    module: Span,
    name: Span,
}

impl Class {
    /// The module, with the Python 2 names CPython writes below protocol 3
    /// mapped back to Python 3's (`exceptions` to `builtins`), as its
    /// unpickler does.
    fn module(&self, bytes: &[u8]) -> String {
        let module = String::from_utf8_lossy(self.module.of(bytes));
        match &*module {
            "exceptions" | "__builtin__" => "builtins".to_owned(),
            "Queue" => "queue".to_owned(),
            _ => module.into_owned(),
        }
    }

    fn name<'a>(&self, bytes: &'a [u8]) -> &'a str {
        std::str::from_utf8(self.name.of(bytes)).unwrap_or("?")
    }

    /// `module.Name`.
    fn full_name(&self, bytes: &[u8]) -> String {
        format!("{}.{}", self.module(bytes), self.name(bytes))
    }

    /// What serde-pickle makes of a reference to this class, if anything.
    fn known(&self, bytes: &[u8]) -> Known {
        let module = self.module.of(bytes);
        let name = self.name.of(bytes);
        match (module, name) {
            (b"builtins" | b"__builtin__", b"set" | b"frozenset" | b"bytearray")
            | (b"_codecs", b"encode") => Known::Serde,
            (b"builtins" | b"__builtin__", b"bytes") => Known::Bytes,
            _ => Known::No,
        }
    }
}

/// How a class referred to by a pickle is handled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    /// serde-pickle builds plain data from it (`set`, `_codecs.encode`).
    Serde,
    /// `bytes`, which CPython calls with no argument for `b''` below
    /// protocol 3, and serde-pickle does not know.
    Bytes,
    /// Any other class: serde-pickle sees `None` in its place.
    No,
}

/// What the walker knows of an object on the stack.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Plain data.
    Data,
    /// The empty tuple (the arguments of `bytes()`).
    EmptyTuple,
    /// A UTF-8 string: the span of its bytes.
    Str(Span),
    /// A class.
    Global(Class),
    /// What `REDUCE` made of a class and arguments: an instance.
    Instance(Class),
}

/// An object on the walker's stack or in its memo.
#[derive(Debug, Clone, Copy)]
struct Item {
    kind: Kind,
    /// What it costs once decoded, memo references expanded.
    size: u64,
    /// How deeply containers nest in it (a scalar is 0).
    depth: u32,
}

impl Item {
    fn data(size: u64, depth: u32) -> Item {
        Item {
            kind: Kind::Data,
            size,
            depth,
        }
    }
}

/// A stack slot: an object, or a reference to one in the memo (as
/// serde-pickle keeps it, resolving it only at the end).
#[derive(Debug, Clone, Copy)]
enum Slot {
    Item(Item),
    Memo(u32),
}

/// A memo entry: the object, and whether something took it in already (after
/// which it must not change, or our sizes would be stale).
#[derive(Debug)]
struct Memo {
    item: Item,
    used: bool,
}

/// A replacement of some bytes of the pickle before serde-pickle reads it.
#[derive(Debug)]
struct Patch {
    at: usize,
    len: usize,
    with: &'static [u8],
}

/// A pickle's walk: its top-level object and the patches for serde-pickle.
#[derive(Debug)]
struct Walked {
    top: Item,
    patches: Vec<Patch>,
}

impl Walked {
    /// The pickle with the patches applied, if there are any.
    fn patched(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if self.patches.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() + 4 * self.patches.len());
        let mut from = 0;
        for p in &self.patches {
            out.extend_from_slice(bytes.get(from..p.at).unwrap_or_default());
            out.extend_from_slice(p.with);
            from = p.at + p.len;
        }
        out.extend_from_slice(bytes.get(from..).unwrap_or_default());
        Some(out)
    }
}

/// Reads a pickle's opcodes without running them, tracking what each stack
/// slot is: enough to tell plain data from instances of classes, find the
/// exception at the top, and bound what serde-pickle will allocate.
///
/// Each class reference becomes `None` for serde-pickle, and a `REDUCE` of
/// one becomes `TUPLE2`, so an exception reaches it as `(None, args)`; a
/// `BUILD` on it becomes `POP`, dropping the state.
struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    stack: Vec<Slot>,
    /// The stack's length at each open mark.
    marks: Vec<usize>,
    memo: HashMap<u32, Memo>,
    /// The sizes of the copies serde-pickle makes along the way.
    copied: u64,
    /// The most `size` and `copied` may reach.
    limit: u64,
    patches: Vec<Patch>,
}

impl<'a> Walker<'a> {
    fn new(bytes: &'a [u8]) -> Walker<'a> {
        Walker {
            bytes,
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            copied: 0,
            limit: (bytes.len() as u64)
                .saturating_mul(NODE + 1)
                .saturating_add(MAX_EXPANSION),
            patches: Vec::new(),
        }
    }

    fn walk(mut self) -> Result<Walked> {
        loop {
            let at = self.pos;
            let Some(&code) = self.bytes.get(at) else {
                return Err(decode("truncated pickle: no STOP"));
            };
            let Some(opcode) = OPCODES.get(usize::from(INDEX[usize::from(code)])) else {
                return Err(decode(format!(
                    "pickle opcode 0x{code:02x} at offset {at} is unknown"
                )));
            };
            self.pos += 1;
            let (arg, arg2) = self.arg(opcode)?;
            let arg_len = (arg.end - arg.start) as u64;
            match opcode.effect {
                Effect::Nop => self.nop(opcode, arg)?,
                Effect::Push => self.push(Item::data(NODE + arg_len, 0)),
                Effect::PushStr => self.push(Item {
                    kind: Kind::Str(arg),
                    size: NODE + arg_len,
                    depth: 0,
                }),
                Effect::Tuple(items) => {
                    let (size, depth, n) = self.take(items)?;
                    let mut item = self.container(size, depth)?;
                    if n == 0 {
                        item.kind = Kind::EmptyTuple;
                    }
                    self.push(item);
                }
                Effect::Container(items) => {
                    let (size, depth, _) = self.take(items)?;
                    let item = self.container(size, depth)?;
                    self.push(item);
                }
                Effect::Extend(items) => self.extend(opcode, items)?,
                Effect::Mark => {
                    if self.marks.len() >= MAX_DEPTH as usize {
                        return Err(too_deep());
                    }
                    self.marks.push(self.stack.len());
                }
                Effect::Pop => {
                    if self.stack.len() > self.fence() {
                        self.stack.pop();
                    } else {
                        self.pop_mark(opcode)?;
                    }
                }
                Effect::PopMark => {
                    let mark = self.pop_mark(opcode)?;
                    self.stack.truncate(mark);
                }
                Effect::Dup => {
                    let top = self.top(opcode)?;
                    let item = self.resolve(top, true)?;
                    self.copy(item.size)?;
                    self.push(item);
                }
                Effect::Put => {
                    let id = self.memo_id(opcode, arg, at)?;
                    self.put(opcode, id)?;
                }
                Effect::Memoize => {
                    let id = u32::try_from(self.memo.len())
                        .map_err(|_| decode("pickle memo too large"))?;
                    self.put(opcode, id)?;
                }
                Effect::Get => {
                    let id = self.memo_id(opcode, arg, at)?;
                    if !self.memo.contains_key(&id) {
                        return Err(decode(format!(
                            "pickle fetches memo entry {id} at offset {at}, which was never set"
                        )));
                    }
                    self.stack.push(Slot::Memo(id));
                }
                Effect::Global => {
                    let class = Class {
                        module: arg,
                        name: arg2,
                    };
                    if class.known(self.bytes) != Known::Serde {
                        self.patch(at, self.pos - at, &[op::NONE]);
                    }
                    self.push_global(class);
                }
                Effect::StackGlobal => {
                    let name = self.pop(opcode)?;
                    let module = self.pop(opcode)?;
                    let name = self.resolve(name, true)?;
                    let module = self.resolve(module, true)?;
                    let (Kind::Str(module_text), Kind::Str(name_text)) = (module.kind, name.kind)
                    else {
                        return Err(decode(format!(
                            "pickle's STACK_GLOBAL at offset {at} needs two strings"
                        )));
                    };
                    self.copy(module.size.saturating_add(name.size))?;
                    let class = Class {
                        module: module_text,
                        name: name_text,
                    };
                    if class.known(self.bytes) != Known::Serde {
                        self.patch(at, 1, &[op::POP, op::POP, op::NONE]);
                    }
                    self.push_global(class);
                }
                Effect::Reduce => self.reduce(opcode, at)?,
                Effect::SetState => {
                    self.pop(opcode)?;
                    let top = self.top(opcode)?;
                    match self.resolve(top, false)?.kind {
                        Kind::Instance(_) => self.patch(at, 1, &[op::POP]),
                        Kind::Global(class) => return Err(self.not_plain(class)),
                        _ => {
                            return Err(decode(format!(
                                "pickle's BUILD at offset {at} sets the state of plain data"
                            )));
                        }
                    }
                }
                Effect::NewObject => return Err(self.new_object(opcode, arg, arg2)),
                Effect::Refuse(what) => {
                    return Err(decode(format!(
                        "pickle uses {what} ({} at offset {at}), which are not supported",
                        opcode.name
                    )));
                }
                Effect::Stop => {
                    let top = self.pop(opcode)?;
                    if self.pos != self.bytes.len() {
                        return Err(decode(format!(
                            "{} bytes after the pickle's STOP",
                            self.bytes.len() - self.pos
                        )));
                    }
                    let top = self.resolve(top, true)?;
                    if top.size > self.limit {
                        return Err(self.too_large());
                    }
                    return Ok(Walked {
                        top,
                        patches: self.patches,
                    });
                }
            }
        }
    }

    /// Reads the argument of `opcode` at `self.pos`, checking it is all
    /// there; two spans for `TwoLines`.
    fn arg(&mut self, opcode: &Opcode) -> Result<(Span, Span)> {
        let at = self.pos;
        let rest = self.bytes.len() - at;
        let truncated = || {
            decode(format!(
                "truncated pickle: {} at offset {} lacks its argument",
                opcode.name,
                at - 1
            ))
        };
        let span = |start: usize, len: usize| Span {
            start,
            end: start + len,
        };
        let line = |from: usize| -> Result<Span> {
            let rest = self.bytes.get(from..).unwrap_or_default();
            let len = rest
                .iter()
                .position(|&b| b == b'\n')
                .ok_or_else(truncated)?;
            Ok(span(from, len))
        };
        let (first, second, end) = match opcode.arg {
            Arg::No => (span(at, 0), Span::default(), at),
            Arg::Fixed(n) => {
                if n > rest {
                    return Err(truncated());
                }
                (span(at, n), Span::default(), at + n)
            }
            Arg::Line => {
                let first = line(at)?;
                (first, Span::default(), first.end + 1)
            }
            Arg::TwoLines => {
                let first = line(at)?;
                let second = line(first.end + 1)?;
                (first, second, second.end + 1)
            }
            Arg::Counted(width) => {
                let len_bytes = self.bytes.get(at..at + width).ok_or_else(truncated)?;
                let mut le = [0u8; 8];
                le[..width].copy_from_slice(len_bytes);
                let len = u64::from_le_bytes(le);
                let data = at + width;
                if len > (self.bytes.len() - data) as u64 {
                    return Err(decode(format!(
                        "truncated pickle: {} at offset {} announces {len} bytes, {} are left",
                        opcode.name,
                        at - 1,
                        self.bytes.len() - data
                    )));
                }
                // At most the pickle's length, checked above.
                let len = len as usize;
                (span(data, len), Span::default(), data + len)
            }
        };
        self.pos = end;
        Ok((first, second))
    }

    /// `PROTO` (checks the version) or `FRAME` (checks the length).
    fn nop(&self, opcode: &Opcode, arg: Span) -> Result<()> {
        let arg = arg.of(self.bytes);
        if opcode.name == "PROTO" {
            let version = arg.first().copied().unwrap_or_default();
            if version > 5 {
                return Err(decode(format!("unsupported pickle protocol {version}")));
            }
        } else {
            let mut le = [0u8; 8];
            le.copy_from_slice(arg);
            let len = u64::from_le_bytes(le);
            if len > (self.bytes.len() - self.pos) as u64 {
                return Err(decode(format!(
                    "truncated pickle: a frame of {len} bytes at offset {}, {} are left",
                    self.pos - 9,
                    self.bytes.len() - self.pos
                )));
            }
        }
        Ok(())
    }

    fn push(&mut self, item: Item) {
        self.stack.push(Slot::Item(item));
    }

    fn push_global(&mut self, class: Class) {
        self.push(Item {
            kind: Kind::Global(class),
            size: NODE,
            depth: 0,
        });
    }

    fn patch(&mut self, at: usize, len: usize, with: &'static [u8]) {
        self.patches.push(Patch { at, len, with });
    }

    /// The stack's length at the topmost mark: what pops may not go below.
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn underflow(&self, opcode: &Opcode) -> Error {
        decode(format!(
            "pickle stack underflow: {} at offset {}",
            opcode.name,
            self.pos.saturating_sub(1)
        ))
    }

    fn pop(&mut self, opcode: &Opcode) -> Result<Slot> {
        if self.stack.len() > self.fence()
            && let Some(slot) = self.stack.pop()
        {
            return Ok(slot);
        }
        Err(self.underflow(opcode))
    }

    fn top(&self, opcode: &Opcode) -> Result<Slot> {
        match self.stack.last() {
            Some(&slot) if self.stack.len() > self.fence() => Ok(slot),
            _ => Err(self.underflow(opcode)),
        }
    }

    /// Closes the topmost mark, giving the stack's length there.
    fn pop_mark(&mut self, opcode: &Opcode) -> Result<usize> {
        self.marks.pop().ok_or_else(|| {
            decode(format!(
                "pickle's {} at offset {} has no mark",
                opcode.name,
                self.pos.saturating_sub(1)
            ))
        })
    }

    /// The object in `slot`, looked up in the memo if need be; `take` marks
    /// a memo entry as taken in by something.
    fn resolve(&mut self, slot: Slot, take: bool) -> Result<Item> {
        match slot {
            Slot::Item(item) => Ok(item),
            Slot::Memo(id) => match self.memo.get_mut(&id) {
                Some(memo) => {
                    memo.used |= take;
                    Ok(memo.item)
                }
                None => Err(decode(format!("pickle memo entry {id} is missing"))),
            },
        }
    }

    /// Takes `items` off the stack into a container: their total size, their
    /// deepest nesting, their number. Each must be plain data.
    fn take(&mut self, items: Items) -> Result<(u64, u32, usize)> {
        let from = match items {
            Items::Top(n) => {
                let from = self.stack.len().checked_sub(n);
                match from {
                    Some(from) if from >= self.fence() => from,
                    _ => {
                        return Err(decode(format!(
                            "pickle stack underflow at offset {}",
                            self.pos - 1
                        )));
                    }
                }
            }
            Items::ToMark => self.marks.pop().ok_or_else(|| {
                decode(format!(
                    "pickle's container at offset {} has no mark",
                    self.pos - 1
                ))
            })?,
        };
        let slots: Vec<Slot> = self.stack.drain(from..).collect();
        let (mut size, mut depth) = (0u64, 0u32);
        for &slot in &slots {
            let item = self.resolve(slot, true)?;
            if let Kind::Global(class) | Kind::Instance(class) = item.kind {
                return Err(self.not_plain(class));
            }
            size = size.saturating_add(item.size);
            depth = depth.max(item.depth);
        }
        Ok((size, depth, slots.len()))
    }

    /// A container of children of `size` and `depth`, if within the limits.
    fn container(&self, size: u64, depth: u32) -> Result<Item> {
        let item = Item::data(size.saturating_add(NODE), depth.saturating_add(1));
        if item.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        if item.size > self.limit {
            return Err(self.too_large());
        }
        Ok(item)
    }

    /// `APPEND(S)`, `SETITEM(S)`, `ADDITEMS`: adds items to the container
    /// below them.
    fn extend(&mut self, opcode: &Opcode, items: Items) -> Result<()> {
        let (size, depth, _) = self.take(items)?;
        let target = self.top(opcode)?;
        let current = self.resolve(target, false)?;
        match current.kind {
            Kind::Data => {}
            Kind::Global(class) | Kind::Instance(class) => return Err(self.not_plain(class)),
            Kind::EmptyTuple | Kind::Str(_) => {
                return Err(decode(format!(
                    "pickle's {} at offset {} adds to a tuple or string",
                    opcode.name,
                    self.pos - 1
                )));
            }
        }
        let grown = Item::data(
            current.size.saturating_add(size),
            current.depth.max(depth.saturating_add(1)),
        );
        if grown.depth > MAX_DEPTH {
            return Err(too_deep());
        }
        if grown.size > self.limit {
            return Err(self.too_large());
        }
        match target {
            Slot::Item(_) => {
                if let Some(last) = self.stack.last_mut() {
                    *last = Slot::Item(grown);
                }
            }
            Slot::Memo(id) => {
                if let Some(memo) = self.memo.get_mut(&id) {
                    if memo.used {
                        return Err(decode(format!(
                            "pickle's {} at offset {} changes memo entry {id} after its use \
                             (a recursive structure?)",
                            opcode.name,
                            self.pos - 1
                        )));
                    }
                    memo.item = grown;
                }
            }
        }
        Ok(())
    }

    /// The memo id in the argument of `opcode` (at offset `at`): decimal
    /// text for `PUT` and `GET`, one byte or four for the binary forms.
    fn memo_id(&self, opcode: &Opcode, arg: Span, at: usize) -> Result<u32> {
        let arg = arg.of(self.bytes);
        let id = match (opcode.arg, arg) {
            (Arg::Line, _) => std::str::from_utf8(arg).ok().and_then(|s| s.parse().ok()),
            (_, &[b]) => Some(u32::from(b)),
            (_, &[a, b, c, d]) => Some(u32::from_le_bytes([a, b, c, d])),
            _ => None,
        };
        id.ok_or_else(|| decode(format!("pickle has a bad memo id at offset {at}")))
    }

    /// Stores the top under `id` in the memo, leaving a reference on the stack.
    fn put(&mut self, opcode: &Opcode, id: u32) -> Result<()> {
        let top = self.top(opcode)?;
        let item = self.resolve(top, true)?;
        if let Slot::Memo(_) = top {
            // serde-pickle copies the entry.
            self.copy(item.size)?;
        }
        match self.memo.entry(id) {
            MapEntry::Occupied(_) => {
                return Err(decode(format!(
                    "pickle sets memo entry {id} twice (at offset {})",
                    self.pos - 1
                )));
            }
            MapEntry::Vacant(v) => {
                v.insert(Memo { item, used: false });
            }
        }
        if let Some(last) = self.stack.last_mut() {
            *last = Slot::Memo(id);
        }
        Ok(())
    }

    /// `REDUCE`: a class called with a tuple of arguments.
    fn reduce(&mut self, opcode: &Opcode, at: usize) -> Result<()> {
        let args = self.pop(opcode)?;
        let callable = self.pop(opcode)?;
        let args = self.resolve(args, true)?;
        let callable = self.resolve(callable, true)?;
        let Kind::Global(class) = callable.kind else {
            return Err(decode(format!(
                "pickle's REDUCE at offset {at} calls something other than a class"
            )));
        };
        match args.kind {
            Kind::Data | Kind::EmptyTuple => {}
            Kind::Str(_) => {
                return Err(decode(format!(
                    "pickle's REDUCE at offset {at} has a string for arguments"
                )));
            }
            Kind::Global(inner) | Kind::Instance(inner) => return Err(self.not_plain(inner)),
        }
        self.copy(args.size)?;
        let mut item = self.container(args.size, args.depth)?;
        match class.known(self.bytes) {
            Known::Serde => {}
            Known::Bytes => {
                let Kind::EmptyTuple = args.kind else {
                    return Err(decode(format!(
                        "pickle's REDUCE at offset {at} calls bytes with arguments"
                    )));
                };
                self.patch(at, 1, &[op::POP, op::POP, op::SHORT_BINBYTES, 0]);
            }
            Known::No => {
                item.kind = Kind::Instance(class);
                self.patch(at, 1, &[op::TUPLE2]);
            }
        }
        self.push(item);
        Ok(())
    }

    /// The refusal of `INST`, `OBJ`, `NEWOBJ` or `NEWOBJ_EX`, naming the
    /// class if it can.
    fn new_object(&self, opcode: &Opcode, arg: Span, arg2: Span) -> Error {
        // Where the class is: INST names it, the others find it on the stack.
        let on_stack = match opcode.name {
            "INST" => {
                return self.not_plain(Class {
                    module: arg,
                    name: arg2,
                });
            }
            "OBJ" => self.stack.get(self.fence()),
            "NEWOBJ" => self.stack.iter().nth_back(1),
            _ => self.stack.iter().nth_back(2),
        };
        let item = match on_stack {
            Some(Slot::Item(item)) => Some(*item),
            Some(Slot::Memo(id)) => self.memo.get(id).map(|m| m.item),
            None => None,
        };
        match item.map(|item| item.kind) {
            Some(Kind::Global(class)) => self.not_plain(class),
            _ => decode(format!(
                "pickle's {} at offset {} makes an instance of a class",
                opcode.name,
                self.pos - 1
            )),
        }
    }

    /// Counts a copy serde-pickle makes.
    fn copy(&mut self, size: u64) -> Result<()> {
        self.copied = self.copied.saturating_add(size);
        if self.copied > self.limit {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn not_plain(&self, class: Class) -> Error {
        not_plain(&class.full_name(self.bytes))
    }

    fn too_large(&self) -> Error {
        decode(format!(
            "a pickle of {} bytes would expand past {} bytes",
            self.bytes.len(),
            self.limit
        ))
    }
}

fn decode(message: impl Into<String>) -> Error {
    Error::Decode(message.into())
}

fn not_plain(class: &str) -> Error {
    decode(format!("a pickle of class {class} is not plain data"))
}

fn too_deep() -> Error {
    decode(format!("pickle nests deeper than {MAX_DEPTH}"))
}

/// Whether a class is taken for an exception, by its name (we never import
/// it): the builtins that do not end in `Error`, `Exception`, `Warning` or
/// `Exit`, any class that does, and `queue`'s `Empty` and `Full`.
fn is_exception(module: &str, name: &str) -> bool {
    ["Error", "Exception", "Warning", "Exit"]
        .iter()
        .any(|end| name.ends_with(end))
        || matches!(
            (module, name),
            (
                "builtins",
                "KeyboardInterrupt"
                    | "StopIteration"
                    | "StopAsyncIteration"
                    | "ExceptionGroup"
                    | "BaseExceptionGroup"
            ) | ("queue" | "_queue", "Empty")
                | ("queue", "Full")
                | (
                    "multiprocessing" | "multiprocessing.context",
                    "BufferTooShort"
                )
        )
}

/// The [`Error::Python`] for the (patched) pickle of an exception of
/// `class`, which serde-pickle reads as `(None, args)`.
fn exception(patched: &[u8], class: String) -> Error {
    let args = match serde_pickle::value_from_slice(patched, DeOptions::new()) {
        Ok(Value::Tuple(mut pair)) if pair.len() == 2 => match pair.pop() {
            Some(Value::Tuple(args)) => args,
            _ => return decode(format!("a pickle of {class} without an argument tuple")),
        },
        Ok(_) => return decode(format!("a pickle of {class} of an unexpected shape")),
        Err(e) => return decode(format!("pickle of {class}: {e}")),
    };
    let mut message = String::new();
    match &args[..] {
        [] => {}
        [Value::String(s)] if class != "builtins.KeyError" => message.push_str(s),
        [one] => repr(one, &mut message),
        _ => repr(&Value::Tuple(args.clone()), &mut message),
    }
    Error::Python { class, message }
}

/// Writes `value` as Python's `repr` shows it (sets in serde-pickle's order).
fn repr(value: &Value, out: &mut String) {
    let seq = |out: &mut String, items: &mut dyn Iterator<Item = Value>, open, close| {
        out.push_str(open);
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            repr(&item, out);
        }
        out.push_str(close);
    };
    let hashed = |set: &std::collections::BTreeSet<HashableValue>| {
        set.iter()
            .cloned()
            .map(HashableValue::into_value)
            .collect::<Vec<_>>()
    };
    match value {
        Value::None => out.push_str("None"),
        Value::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
        Value::I64(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F64(f) => float_repr(*f, out),
        Value::String(s) => str_repr(s, out),
        Value::Bytes(b) => bytes_repr(b, out),
        Value::List(items) => seq(out, &mut items.iter().cloned(), "[", "]"),
        Value::Tuple(items) if items.len() == 1 => {
            out.push('(');
            repr(&items[0], out);
            out.push_str(",)");
        }
        Value::Tuple(items) => seq(out, &mut items.iter().cloned(), "(", ")"),
        Value::Set(set) if set.is_empty() => out.push_str("set()"),
        Value::Set(set) => seq(out, &mut hashed(set).into_iter(), "{", "}"),
        Value::FrozenSet(set) if set.is_empty() => out.push_str("frozenset()"),
        Value::FrozenSet(set) => seq(out, &mut hashed(set).into_iter(), "frozenset({", "})"),
        Value::Dict(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(&k.clone().into_value(), out);
                out.push_str(": ");
                repr(v, out);
            }
            out.push('}');
        }
    }
}

/// Python's `repr` of a float: the shortest round-trip digits, with an
/// exponent below 1e-4 and from 1e16, written `1e+16`.
fn float_repr(f: f64, out: &mut String) {
    if f.is_nan() {
        out.push_str("nan");
    } else if f.is_infinite() {
        out.push_str(if f > 0.0 { "inf" } else { "-inf" });
    } else {
        let s = format!("{f:?}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
                let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
            }
            None => out.push_str(&s),
        }
    }
}

/// Python's `repr` of a str: single quotes unless it holds one and no
/// double quote; control characters escaped.
fn str_repr(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = match u32::from(c) {
                    n @ 0..=0xff => write!(out, "\\x{n:02x}"),
                    n => write!(out, "\\u{n:04x}"),
                };
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Python's `repr` of bytes.
fn bytes_repr(b: &[u8], out: &mut String) {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push('b');
    out.push(char::from(quote));
    for &c in b {
        match c {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(char::from(c));
            }
            0x20..=0x7e => out.push(char::from(c)),
            c => {
                let _ = write!(out, "\\x{c:02x}");
            }
        }
    }
    out.push(char::from(quote));
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
    use std::fmt::Debug;
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;

    use super::*;

    // Pickles written by CPython 3.11 (`pickle.dumps(value, protocol=N)`).
    /// `None`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const NONE: [&[u8]; 4] = [b"N.", b"\x80\x02N.", b"\x80\x04N.", b"\x80\x05N."];
    /// `True`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const TRUE: [&[u8]; 4] = [
        b"I01\x0a.",
        b"\x80\x02\x88.",
        b"\x80\x04\x88.",
        b"\x80\x05\x88.",
    ];
    /// `5`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const FIVE: [&[u8]; 4] = [
        b"I5\x0a.",
        b"\x80\x02K\x05.",
        b"\x80\x04K\x05.",
        b"\x80\x05K\x05.",
    ];
    /// `-7`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const MINUS7: [&[u8]; 4] = [
        b"I-7\x0a.",
        b"\x80\x02J\xf9\xff\xff\xff.",
        b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00J\xf9\xff\xff\xff.",
        b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00J\xf9\xff\xff\xff.",
    ];
    /// `1180591620717411303424`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const BIG: [&[u8]; 4] = [
        b"L1180591620717411303424L\x0a.",
        b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@.",
        b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@.",
        b"\x80\x05\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@.",
    ];
    /// `1.5`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const FLOAT: [&[u8]; 4] = [
        b"F1.5\x0a.",
        b"\x80\x02G?\xf8\x00\x00\x00\x00\x00\x00.",
        b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.",
        b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00G?\xf8\x00\x00\x00\x00\x00\x00.",
    ];
    /// `'héllo'`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const STR: [&[u8]; 4] = [
        b"Vh\xe9llo\x0ap0\x0a.",
        b"\x80\x02X\x06\x00\x00\x00h\xc3\xa9lloq\x00.",
        b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x8c\x06h\xc3\xa9llo\x94.",
        b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00\x8c\x06h\xc3\xa9llo\x94.",
    ];
    /// `b'\x00\x01'`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const BYTES: [&[u8]; 4] = [
        b"c_codecs\x0aencode\x0ap0\x0a(V\x5cu0000\x01\x0ap1\x0aVlatin1\x0ap2\x0atp3\x0aRp4\x0a.",
        b"\x80\x02c_codecs\x0aencode\x0aq\x00X\x02\x00\x00\x00\x00\x01q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.",
        b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00C\x02\x00\x01\x94.",
        b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00C\x02\x00\x01\x94.",
    ];
    /// `[1, 'a']`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const LIST: [&[u8]; 4] = [
        b"(lp0\x0aI1\x0aaVa\x0ap1\x0aa.",
        b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01e.",
        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.",
        b"\x80\x05\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.",
    ];
    /// `(1, 2)`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const TUPLE: [&[u8]; 4] = [
        b"(I1\x0aI2\x0atp0\x0a.",
        b"\x80\x02K\x01K\x02\x86q\x00.",
        b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86\x94.",
        b"\x80\x05\x95\x07\x00\x00\x00\x00\x00\x00\x00K\x01K\x02\x86\x94.",
    ];
    /// `{'a': 1}`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const DICT: [&[u8]; 4] = [
        b"(dp0\x0aVa\x0ap1\x0aI1\x0as.",
        b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.",
        b"\x80\x04\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",
        b"\x80\x05\x95\x0a\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01s.",
    ];
    /// `{1, 2}`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const SET: [&[u8]; 4] = [
        b"c__builtin__\x0aset\x0ap0\x0a((lp1\x0aI1\x0aaI2\x0aatp2\x0aRp3\x0a.",
        b"\x80\x02c__builtin__\x0aset\x0aq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
        b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.",
        b"\x80\x05\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.",
    ];
    /// `frozenset({1, 2})`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const FROZENSET: [&[u8]; 4] = [
        b"c__builtin__\x0afrozenset\x0ap0\x0a((lp1\x0aI1\x0aaI2\x0aatp2\x0aRp3\x0a.",
        b"\x80\x02c__builtin__\x0afrozenset\x0aq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
        b"\x80\x04\x95\x08\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02\x91\x94.",
        b"\x80\x05\x95\x08\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02\x91\x94.",
    ];
    /// `{'k': [(1, b'x'), {'s': None}], 't': (True, -1.5, 'é')}`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const NESTED: [&[u8]; 4] = [
        b"(dp0\x0aVk\x0ap1\x0a(lp2\x0a(I1\x0ac_codecs\x0aencode\x0ap3\x0a(Vx\x0ap4\x0aVlatin1\x0ap5\x0atp6\x0aRp7\x0atp8\x0aa(dp9\x0aVs\x0ap10\x0aNsasVt\x0ap11\x0a(I01\x0aF-1.5\x0aV\xe9\x0ap12\x0atp13\x0as.",
        b"\x80\x02}q\x00(X\x01\x00\x00\x00kq\x01]q\x02(K\x01c_codecs\x0aencode\x0aq\x03X\x01\x00\x00\x00xq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x86q\x08}q\x09X\x01\x00\x00\x00sq\x0aNseX\x01\x00\x00\x00tq\x0b\x88G\xbf\xf8\x00\x00\x00\x00\x00\x00X\x02\x00\x00\x00\xc3\xa9q\x0c\x87q\x0du.",
        b"\x80\x04\x952\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94]\x94(K\x01C\x01x\x94\x86\x94}\x94\x8c\x01s\x94Nse\x8c\x01t\x94\x88G\xbf\xf8\x00\x00\x00\x00\x00\x00\x8c\x02\xc3\xa9\x94\x87\x94u.",
        b"\x80\x05\x952\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01k\x94]\x94(K\x01C\x01x\x94\x86\x94}\x94\x8c\x01s\x94Nse\x8c\x01t\x94\x88G\xbf\xf8\x00\x00\x00\x00\x00\x00\x8c\x02\xc3\xa9\x94\x87\x94u.",
    ];
    /// `b''`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const EMPTY_BYTES: [&[u8]; 4] = [
        b"c__builtin__\x0abytes\x0ap0\x0a(tRp1\x0a.",
        b"\x80\x02c__builtin__\x0abytes\x0aq\x00)Rq\x01.",
        b"\x80\x04\x95\x04\x00\x00\x00\x00\x00\x00\x00C\x00\x94.",
        b"\x80\x05\x95\x04\x00\x00\x00\x00\x00\x00\x00C\x00\x94.",
    ];
    /// `Empty()`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const QUEUE_EMPTY: [&[u8]; 4] = [
        b"c_queue\x0aEmpty\x0ap0\x0a(tRp1\x0a.",
        b"\x80\x02c_queue\x0aEmpty\x0aq\x00)Rq\x01.",
        b"\x80\x04\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x06_queue\x94\x8c\x05Empty\x94\x93\x94)R\x94.",
        b"\x80\x05\x95\x17\x00\x00\x00\x00\x00\x00\x00\x8c\x06_queue\x94\x8c\x05Empty\x94\x93\x94)R\x94.",
    ];
    /// `KeyError('k')`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const KEY_ERROR: [&[u8]; 4] = [
        b"cexceptions\x0aKeyError\x0ap0\x0a(Vk\x0ap1\x0atp2\x0aRp3\x0a.",
        b"\x80\x02cexceptions\x0aKeyError\x0aq\x00X\x01\x00\x00\x00kq\x01\x85q\x02Rq\x03.",
        b"\x80\x04\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94R\x94.",
        b"\x80\x05\x95!\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94R\x94.",
    ];
    /// `ValueError('bad', 3)`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const VALUE_ERROR: [&[u8]; 4] = [
        b"cexceptions\x0aValueError\x0ap0\x0a(Vbad\x0ap1\x0aI3\x0atp2\x0aRp3\x0a.",
        b"\x80\x02cexceptions\x0aValueError\x0aq\x00X\x03\x00\x00\x00badq\x01K\x03\x86q\x02Rq\x03.",
        b"\x80\x04\x95'\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x0aValueError\x94\x93\x94\x8c\x03bad\x94K\x03\x86\x94R\x94.",
        b"\x80\x05\x95'\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x0aValueError\x94\x93\x94\x8c\x03bad\x94K\x03\x86\x94R\x94.",
    ];
    /// `datetime.datetime(2020, 1, 1, 0, 0)`, by CPython's `pickle.dumps` at protocols 0, 2, 4 and 5.
    const DATETIME: [&[u8]; 4] = [
        b"cdatetime\x0adatetime\x0ap0\x0a(c_codecs\x0aencode\x0ap1\x0a(V\x07\xe4\x01\x01\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x5cu0000\x0ap2\x0aVlatin1\x0ap3\x0atp4\x0aRp5\x0atp6\x0aRp7\x0a.",
        b"\x80\x02cdatetime\x0adatetime\x0aq\x00c_codecs\x0aencode\x0aq\x01X\x0b\x00\x00\x00\x07\xc3\xa4\x01\x01\x00\x00\x00\x00\x00\x00q\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.",
        b"\x80\x04\x95*\x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x08datetime\x94\x93\x94C\x0a\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x94\x85\x94R\x94.",
        b"\x80\x05\x95*\x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x08datetime\x94\x93\x94C\x0a\x07\xe4\x01\x01\x00\x00\x00\x00\x00\x00\x94\x85\x94R\x94.",
    ];
    /// a `KeyError('k')` with an attribute (`BUILD` with a dict), protocol 2.
    const KEY_ERROR_WITH_STATE: &[u8] = b"\x80\x02cexceptions\x0aKeyError\x0aq\x00X\x01\x00\x00\x00kq\x01\x85q\x02Rq\x03}q\x04X\x06\x00\x00\x00detailq\x05K\x01sb.";
    /// a `ValueError('v')` with a note, protocol 4.
    const VALUE_ERROR_WITH_NOTE: &[u8] = b"\x80\x04\x95:\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x0aValueError\x94\x93\x94\x8c\x01v\x94\x85\x94R\x94}\x94\x8c\x09__notes__\x94]\x94\x8c\x01n\x94asb.";
    /// `multiprocessing.managers.RemoteError('tb')`, protocol 2.
    const REMOTE_ERROR: &[u8] = b"\x80\x02cmultiprocessing.managers\x0aRemoteError\x0aq\x00X\x02\x00\x00\x00tbq\x01\x85q\x02Rq\x03.";
    /// `('#ERROR', KeyError('k'))`, a manager's reply, protocol 4.
    const ERROR_REPLY: &[u8] = b"\x80\x04\x95,\x00\x00\x00\x00\x00\x00\x00\x8c\x06#ERROR\x94\x8c\x08builtins\x94\x8c\x08KeyError\x94\x93\x94\x8c\x01k\x94\x85\x94R\x94\x86\x94.";
    /// `collections.OrderedDict(a=1)`, protocol 4.
    const ORDERED_DICT: &[u8] = b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94)R\x94\x8c\x01a\x94K\x01s.";
    /// an instance of a user class `__main__.Point`, protocol 0.
    const POINT_0: &[u8] = b"ccopy_reg\x0a_reconstructor\x0ap0\x0a(c__main__\x0aPoint\x0ap1\x0ac__builtin__\x0aobject\x0ap2\x0aNtp3\x0aRp4\x0a(dp5\x0aVx\x0ap6\x0aI1\x0asb.";
    /// an instance of a user class `__main__.Point`, protocol 2.
    const POINT_2: &[u8] =
        b"\x80\x02c__main__\x0aPoint\x0aq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00xq\x03K\x01sb.";
    /// an instance of a user class `__main__.Point`, protocol 4.
    const POINT_4: &[u8] = b"\x80\x04\x95#\x00\x00\x00\x00\x00\x00\x00\x8c\x08__main__\x94\x8c\x05Point\x94\x93\x94)\x81\x94}\x94\x8c\x01x\x94K\x01sb.";
    /// `[x, x, x]` for `x = [1, 2, 3]`: a list fetched from the memo, protocol 4.
    const SHARED: &[u8] =
        b"\x80\x04\x95\x13\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94(K\x01K\x02K\x03eh\x01h\x01e.";
    /// `l` after `l.append(l)`, protocol 4.
    const RECURSIVE: &[u8] = b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00a.";

    /// The payload of the 70 KiB pickles: `bytes(range(256)) * 280`.
    fn big_payload() -> Vec<u8> {
        (0..280).flat_map(|_| 0..=255u8).collect()
    }

    /// CPython's pickles of `bytes(range(256)) * 280` at protocols 2, 4 and
    /// 5 (their headers and tails pasted, the payload made here). Protocol 4
    /// and 5 write it as `BINBYTES` outside any frame, not `BINBYTES8`.
    fn big_pickles() -> [Vec<u8>; 3] {
        let payload = big_payload();
        let latin1: String = payload.iter().map(|&b| char::from(b)).collect();
        let mut p2 = b"\x80\x02c_codecs\nencode\nq\x00X".to_vec();
        p2.extend_from_slice(&(latin1.len() as u32).to_le_bytes());
        p2.extend_from_slice(latin1.as_bytes());
        p2.extend_from_slice(b"q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.");
        let binbytes = |proto: u8| {
            let mut p = vec![0x80, proto, b'B'];
            p.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            p.extend_from_slice(&payload);
            p.extend_from_slice(b"\x94.");
            p
        };
        [p2, binbytes(4), binbytes(5)]
    }

    /// Decodes each of a value's four pickles into a `T`, expecting `want`.
    fn each<T: DeserializeOwned + PartialEq + Debug>(pickles: [&[u8]; 4], want: T) {
        for (proto, bytes) in [0, 2, 4, 5].into_iter().zip(pickles) {
            let got: T = loads(bytes).unwrap_or_else(|e| panic!("protocol {proto}: {e}"));
            assert_eq!(got, want, "protocol {proto}");
        }
    }

    /// The message of an `Error::Decode`, failing on any other outcome.
    fn decode_error<T: DeserializeOwned + Debug>(bytes: &[u8]) -> String {
        match loads::<T>(bytes) {
            Err(Error::Decode(message)) => message,
            other => panic!("expected Error::Decode, got {other:?}"),
        }
    }

    /// The class and message of an `Error::Python`.
    fn python_error(bytes: &[u8]) -> (String, String) {
        match loads::<Value>(bytes) {
            Err(Error::Python { class, message }) => (class, message),
            other => panic!("expected Error::Python, got {other:?}"),
        }
    }

    #[test]
    fn scalars_from_cpython() {
        each(NONE, ());
        each(NONE, None::<i32>);
        each(TRUE, true);
        each(FIVE, 5i64);
        each(FIVE, 5u8);
        each(FIVE, Some(5u32));
        each(MINUS7, -7i32);
        each(FLOAT, 1.5f64);
        each(STR, "héllo".to_string());
        each(BYTES, ByteBuf::from(vec![0, 1]));
        each(EMPTY_BYTES, ByteBuf::new());
    }

    #[test]
    fn python_bytes_do_not_fill_a_vec_of_u8() {
        for bytes in BYTES {
            decode_error::<Vec<u8>>(bytes);
        }
    }

    #[test]
    fn big_ints_are_refused_through_serde_but_kept_as_values() {
        for bytes in BIG {
            assert!(decode_error::<i64>(bytes).contains("integer too large"));
            assert!(decode_error::<u64>(bytes).contains("integer too large"));
            decode_error::<u128>(bytes);
            decode_error::<i128>(bytes);
            decode_error::<Value>(bytes);
            // serde-pickle's own value reader keeps it.
            let value = serde_pickle::value_from_slice(bytes, DeOptions::new()).unwrap();
            assert_eq!(value.to_string(), "1180591620717411303424");
        }
    }

    #[test]
    fn containers_from_cpython() {
        each(LIST, (1i64, "a".to_string()));
        each(TUPLE, (1i32, 2i32));
        each(TUPLE, vec![1i32, 2]);
        each(DICT, HashMap::from([("a".to_string(), 1i32)]));
        each(SET, BTreeSet::from([1i32, 2]));
        each(SET, HashSet::from([1i32, 2]));
        each(FROZENSET, BTreeSet::from([1i32, 2]));
        each(FROZENSET, vec![1i32, 2]);

        #[derive(Debug, PartialEq, Deserialize)]
        struct Nested {
            k: ((i64, ByteBuf), HashMap<String, Option<i32>>),
            t: (bool, f64, String),
        }
        each(
            NESTED,
            Nested {
                k: (
                    (1, ByteBuf::from(b"x".to_vec())),
                    HashMap::from([("s".to_string(), None)]),
                ),
                t: (true, -1.5, "é".to_string()),
            },
        );
        assert_eq!(
            loads::<Vec<Vec<i32>>>(SHARED).unwrap(),
            vec![vec![1, 2, 3]; 3]
        );
    }

    #[test]
    fn seventy_kib_of_bytes() {
        for bytes in big_pickles() {
            let got: ByteBuf = loads(&bytes).unwrap();
            assert_eq!(got.into_vec(), big_payload());
        }
    }

    #[test]
    fn exceptions_from_cpython() {
        for bytes in QUEUE_EMPTY {
            assert_eq!(python_error(bytes), ("_queue.Empty".into(), "".into()));
        }
        for bytes in KEY_ERROR {
            assert_eq!(
                python_error(bytes),
                ("builtins.KeyError".into(), "'k'".into())
            );
        }
        for bytes in VALUE_ERROR {
            let want = ("builtins.ValueError".into(), "('bad', 3)".into());
            assert_eq!(python_error(bytes), want);
        }
        let key_error = ("builtins.KeyError".into(), "'k'".into());
        assert_eq!(python_error(KEY_ERROR_WITH_STATE), key_error);
        let value_error = ("builtins.ValueError".into(), "v".into());
        assert_eq!(python_error(VALUE_ERROR_WITH_NOTE), value_error);
        let remote = ("multiprocessing.managers.RemoteError".into(), "tb".into());
        assert_eq!(python_error(REMOTE_ERROR), remote);
        // Whatever T the caller wanted.
        assert!(matches!(
            loads::<()>(KEY_ERROR[0]),
            Err(Error::Python { .. })
        ));
        let shown = loads::<()>(QUEUE_EMPTY[2]).unwrap_err().to_string();
        assert_eq!(shown, "Python raised _queue.Empty: ");
    }

    #[test]
    fn other_classes_are_refused_by_name() {
        for bytes in DATETIME {
            let message = decode_error::<Value>(bytes);
            assert_eq!(
                message,
                "a pickle of class datetime.datetime is not plain data"
            );
        }
        let message = decode_error::<Value>(ORDERED_DICT);
        assert!(message.contains("collections.OrderedDict"), "{message}");
        for bytes in [POINT_0, POINT_2, POINT_4] {
            let message = decode_error::<Value>(bytes);
            assert!(message.contains("__main__.Point"), "{message}");
        }
        // An exception is only an error at the top; inside data it is refused.
        let message = decode_error::<(String, Value)>(ERROR_REPLY);
        assert!(message.contains("builtins.KeyError"), "{message}");
        let message = decode_error::<Value>(RECURSIVE);
        assert!(message.contains("recursive"), "{message}");
    }

    #[test]
    fn dumps_exception_reads_back() {
        let cases: [(&str, &[&str], &str); 5] = [
            ("_queue.Empty", &[], ""),
            ("builtins.KeyError", &["k"], "'k'"),
            (
                "IndexError",
                &["list index out of range"],
                "list index out of range",
            ),
            ("builtins.ValueError", &["a", "b"], "('a', 'b')"),
            (
                "builtins.ValueError",
                &["a", "b", "c", "d"],
                "('a', 'b', 'c', 'd')",
            ),
        ];
        for (class, args, message) in cases {
            let (got_class, got_message) = python_error(&dumps_exception(class, args));
            let want_class = if class.contains('.') {
                class.to_string()
            } else {
                format!("builtins.{class}")
            };
            assert_eq!((got_class, got_message.as_str()), (want_class, message));
        }
        let bytes = dumps_exception("_queue.Empty", &[]);
        assert_eq!(bytes, b"\x80\x03c_queue\nEmpty\n)R.");
    }

    #[test]
    fn dumps_refuses_what_python_lacks() {
        assert!(matches!(dumps(&1i128), Err(Error::Encode(_))));
        assert!(matches!(dumps(&u128::MAX), Err(Error::Encode(_))));
    }

    #[test]
    fn dumps_round_trips_through_loads() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        enum E {
            A,
            B(i32),
            C { x: i32 },
        }
        let value = (
            vec![E::A, E::B(1), E::C { x: 2 }],
            ByteBuf::from(vec![0, 1]),
            "é",
        );
        let back: (Vec<E>, ByteBuf, String) = loads(&dumps(&value).unwrap()).unwrap();
        assert_eq!((back.0, back.1, back.2.as_str()), value);
        let max: u64 = loads(&dumps(&i64::MAX).unwrap()).unwrap();
        assert_eq!(max, i64::MAX as u64);
        // Written, but beyond i64 when read back.
        assert!(matches!(
            loads::<u64>(&dumps(&u64::MAX).unwrap()),
            Err(Error::Decode(_))
        ));
    }

    /// Every pickle the tests hold.
    fn samples() -> Vec<Vec<u8>> {
        let fours = [
            NONE,
            TRUE,
            FIVE,
            MINUS7,
            BIG,
            FLOAT,
            STR,
            BYTES,
            LIST,
            TUPLE,
            DICT,
            SET,
            FROZENSET,
            NESTED,
            EMPTY_BYTES,
            QUEUE_EMPTY,
            KEY_ERROR,
            VALUE_ERROR,
            DATETIME,
        ];
        let ones = [
            KEY_ERROR_WITH_STATE,
            VALUE_ERROR_WITH_NOTE,
            REMOTE_ERROR,
            ERROR_REPLY,
            ORDERED_DICT,
            POINT_0,
            POINT_2,
            POINT_4,
            SHARED,
            RECURSIVE,
        ];
        let mut all: Vec<Vec<u8>> = fours.iter().flatten().map(|b| b.to_vec()).collect();
        all.extend(ones.iter().map(|b| b.to_vec()));
        all.push(dumps_exception(
            "builtins.ValueError",
            &["a", "b", "c", "d"],
        ));
        all
    }

    #[test]
    fn every_truncation_is_a_decode_error() {
        for sample in samples() {
            for len in 0..sample.len() {
                let cut = &sample[..len];
                assert!(
                    matches!(loads::<Value>(cut), Err(Error::Decode(_))),
                    "{cut:?} of {sample:?}"
                );
            }
        }
        for bytes in big_pickles() {
            for len in [
                0,
                1,
                2,
                3,
                7,
                100,
                bytes.len() / 2,
                bytes.len() - 2,
                bytes.len() - 1,
            ] {
                assert!(matches!(
                    loads::<ByteBuf>(&bytes[..len]),
                    Err(Error::Decode(_))
                ));
            }
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        for sample in samples() {
            for i in 0..sample.len() {
                for mask in [0x01, 0x02, 0x10, 0x40, 0x80, 0xff] {
                    let mut bytes = sample.clone();
                    bytes[i] ^= mask;
                    let _ = loads::<Value>(&bytes);
                    let _ = loads::<(String, i64)>(&bytes);
                }
            }
        }
    }

    #[test]
    fn random_opcodes_never_panic() {
        // xorshift64, seeded: the same inputs on every run.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 48) as usize;
            let mut bytes = vec![0x80, 4];
            for _ in 0..len {
                let r = next();
                bytes.push(if r % 4 == 0 {
                    (r >> 8) as u8
                } else {
                    OPCODES[(r >> 8) as usize % OPCODES.len()].code
                });
            }
            bytes.push(b'.');
            let _ = loads::<Value>(&bytes);
        }
    }

    #[test]
    fn forged_lengths_are_refused_before_reading() {
        let forged: [&[u8]; 7] = [
            b"\x80\x04\x8e\xff\xff\xff\xff\xff\xff\xff\xff.",
            b"\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x00\x01abc.",
            b"\x80\x04\x96\xff\xff\xff\xff\xff\xff\xff\x7f.",
            b"\x80\x02\x8b\xff\xff\xff\xff.",
            b"\x80\x02T\xff\xff\xff\xff.",
            b"\x80\x02X\x00\x00\x00\x80.",
            b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffN.",
        ];
        for bytes in forged {
            let message = decode_error::<Value>(bytes);
            assert!(message.starts_with("truncated pickle"), "{message}");
        }
        assert!(decode_error::<Value>(b"\x80\x06N.").contains("protocol 6"));
        assert!(decode_error::<Value>(b"N.x").contains("after the pickle's STOP"));
        assert!(decode_error::<Value>(b"\x80\x02\x99.").contains("0x99"));
    }

    #[test]
    fn expansion_through_the_memo_is_bounded() {
        // A list of two references to the list before it, 64 times over.
        let mut bomb = b"\x80\x02]q\x00".to_vec();
        for id in 1..64u8 {
            bomb.extend_from_slice(&[b'(', b'h', id - 1, b'h', id - 1, b'l', b'q', id]);
        }
        bomb.push(b'.');
        assert!(decode_error::<Value>(&bomb).contains("expand"));

        // A list of 1000 items copied by DUP 100 000 times.
        let mut dups = b"\x80\x02](".to_vec();
        dups.extend(std::iter::repeat_n(b'N', 1000));
        dups.push(b'e');
        dups.extend(std::iter::repeat_n(b'2', 100_000));
        dups.push(b'.');
        assert!(decode_error::<Value>(&dups).contains("expand"));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut marks = vec![0x80, 2];
        marks.extend(std::iter::repeat_n(b'(', 100_000));
        marks.push(b'.');
        assert!(decode_error::<Value>(&marks).contains("deeper"));

        let nested = |depth: usize| {
            let mut lists = vec![0x80, 2];
            lists.extend(std::iter::repeat_n(b']', depth));
            lists.extend(std::iter::repeat_n(b'a', depth - 1));
            lists.push(b'.');
            lists
        };
        assert!(decode_error::<Value>(&nested(100_000)).contains("deeper"));
        assert!(loads::<Value>(&nested(MAX_DEPTH as usize)).is_ok());
        assert!(decode_error::<Value>(&nested(MAX_DEPTH as usize + 2)).contains("deeper"));
    }

    #[test]
    fn reprs_follow_python() {
        let mut s = String::new();
        let cases = [
            (Value::F64(1e16), "1e+16"),
            (Value::F64(1.5e-5), "1.5e-05"),
            (Value::F64(100.0), "100.0"),
            (Value::F64(f64::NAN), "nan"),
            (Value::String("it's".into()), "\"it's\""),
            (Value::String("a'\"\n\u{1}".into()), "'a\\'\"\\n\\x01'"),
            (Value::Bytes(b"\x00'x".to_vec()), "b\"\\x00'x\""),
            (Value::Tuple(vec![Value::None]), "(None,)"),
            (Value::Set(Default::default()), "set()"),
        ];
        for (value, want) in cases {
            s.clear();
            repr(&value, &mut s);
            assert_eq!(s, want);
        }
    }

    /// Runs `python3 -c script args...` with `input` on its stdin, and gives
    /// its stdout; `None` (saying why) when there is no `python3` to run.
    /// Fails if it runs more than 20 s or exits with an error.
    fn python(script: &str, args: &[&str], input: Vec<u8>) -> Option<Vec<u8>> {
        let spawned = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                eprintln!("skipped: cannot run python3: {e}");
                return None;
            }
        };
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        let mut stderr = child.stderr.take().unwrap();
        let errors = std::thread::spawn(move || {
            let mut out = String::new();
            stderr.read_to_string(&mut out).map(|_| out)
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("python3 ran for more than 20 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        writer.join().unwrap().unwrap();
        let out = reader.join().unwrap().unwrap();
        let err = errors.join().unwrap().unwrap();
        assert!(status.success(), "python3 failed: {err}");
        Some(out)
    }

    /// Length-prefixed pickles, for the scripts.
    fn frames(pickles: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in pickles {
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    /// Prints, a line each, the repr of every pickle in its stdin's frames
    /// (`module.Name(args)` for an exception, the length for a long value).
    const SHOW: &str = r#"
import pickle, struct, sys
data = sys.stdin.buffer.read()
i = 0
while i < len(data):
    (n,) = struct.unpack_from('<I', data, i)
    v = pickle.loads(data[i + 4:i + 4 + n])
    i += 4 + n
    if isinstance(v, BaseException):
        r = f'{type(v).__module__}.{type(v).__qualname__}{v.args!r}'
    else:
        r = repr(v)
        if len(r) > 200:
            r = f'<{type(v).__name__} of {len(v)}>'
    sys.stdout.buffer.write(r.encode('utf-8') + b'\n')
"#;

    #[test]
    fn python_reads_what_dumps_writes() {
        #[derive(Serialize)]
        struct Unit;
        #[derive(Serialize)]
        struct Newtype(i32);
        #[derive(Serialize)]
        struct Pair(i32, i32);
        #[derive(Serialize)]
        struct S {
            x: i32,
            y: &'static str,
        }
        #[derive(Serialize)]
        enum E {
            A,
            B(i32),
            C { x: i32 },
            D(i32, i32),
        }
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (dumps(&()).unwrap(), "None"),
            (dumps(&None::<i32>).unwrap(), "None"),
            (dumps(&Some(5)).unwrap(), "5"),
            (dumps(&true).unwrap(), "True"),
            (dumps(&-7i64).unwrap(), "-7"),
            (dumps(&u64::MAX).unwrap(), "18446744073709551615"),
            (dumps(&i64::MIN).unwrap(), "-9223372036854775808"),
            (dumps(&1.5f64).unwrap(), "1.5"),
            (dumps(&0.1f32).unwrap(), "0.10000000149011612"),
            (dumps(&f64::NEG_INFINITY).unwrap(), "-inf"),
            (dumps("héllo").unwrap(), "'héllo'"),
            (dumps(&'é').unwrap(), "'é'"),
            (dumps(&ByteBuf::from(vec![0, 1])).unwrap(), "b'\\x00\\x01'"),
            (dumps(serde_bytes::Bytes::new(b"")).unwrap(), "b''"),
            (
                dumps(&ByteBuf::from(big_payload())).unwrap(),
                "<bytes of 71680>",
            ),
            (dumps(&vec![0u8, 1]).unwrap(), "[0, 1]"),
            (dumps(&[0u8; 3]).unwrap(), "(0, 0, 0)"),
            (dumps(&(1, "a")).unwrap(), "(1, 'a')"),
            (dumps(&(1,)).unwrap(), "(1,)"),
            (dumps(&Vec::<i32>::new()).unwrap(), "[]"),
            (dumps(&HashMap::from([("a", 1)])).unwrap(), "{'a': 1}"),
            (
                dumps(&BTreeMap::from([(1, "x"), (2, "y")])).unwrap(),
                "{1: 'x', 2: 'y'}",
            ),
            (dumps(&BTreeSet::from([1, 2])).unwrap(), "[1, 2]"),
            (dumps(&HashSet::from([7])).unwrap(), "[7]"),
            (dumps(&Unit).unwrap(), "None"),
            (dumps(&Newtype(1)).unwrap(), "1"),
            (dumps(&Pair(1, 2)).unwrap(), "(1, 2)"),
            (dumps(&S { x: 1, y: "z" }).unwrap(), "{'x': 1, 'y': 'z'}"),
            (dumps(&E::A).unwrap(), "'A'"),
            (dumps(&E::B(1)).unwrap(), "{'B': 1}"),
            (dumps(&E::C { x: 1 }).unwrap(), "{'C': {'x': 1}}"),
            (dumps(&E::D(1, 2)).unwrap(), "{'D': [1, 2]}"),
            (
                dumps(&vec![
                    (1, ByteBuf::from(b"x".to_vec())),
                    (2, ByteBuf::new()),
                ])
                .unwrap(),
                "[(1, b'x'), (2, b'')]",
            ),
        ];
        let exceptions = vec![
            (dumps_exception("_queue.Empty", &[]), "_queue.Empty()"),
            (dumps_exception("queue.Full", &[]), "queue.Full()"),
            (
                dumps_exception("builtins.KeyError", &["k"]),
                "builtins.KeyError('k',)",
            ),
            (
                dumps_exception("builtins.IndexError", &["list index out of range"]),
                "builtins.IndexError('list index out of range',)",
            ),
            (
                dumps_exception("multiprocessing.managers.RemoteError", &["tb\n"]),
                "multiprocessing.managers.RemoteError('tb\\n',)",
            ),
            (
                dumps_exception("builtins.ValueError", &["a", "b", "c", "d"]),
                "builtins.ValueError('a', 'b', 'c', 'd')",
            ),
        ];
        let all: Vec<_> = cases.into_iter().chain(exceptions).collect();
        let pickles: Vec<Vec<u8>> = all.iter().map(|(p, _)| p.clone()).collect();
        let Some(out) = python(SHOW, &[], frames(&pickles)) else {
            return;
        };
        let out = String::from_utf8(out).unwrap();
        let got: Vec<&str> = out.lines().collect();
        let want: Vec<&str> = all.iter().map(|(_, w)| *w).collect();
        assert_eq!(got, want);
    }

    /// Writes, as frames, the pickle at protocols 0 to 5 of each expression
    /// in its arguments.
    const WRITE: &str = r#"
import collections, datetime, decimal, fractions, pickle, queue, struct, sys
import multiprocessing.managers
class Point:
    pass
def point():
    p = Point()
    p.x = 1
    return p
for expr in sys.argv[1:]:
    v = eval(expr)
    for proto in range(6):
        p = pickle.dumps(v, protocol=proto)
        sys.stdout.buffer.write(struct.pack('<I', len(p)) + p)
"#;

    /// How a pickle from Python is checked.
    type Check = Box<dyn Fn(Result<()>, &[u8])>;

    /// A check that the pickle decodes into `want`.
    fn value<T: DeserializeOwned + PartialEq + Debug + 'static>(want: T) -> Check {
        Box::new(move |_, bytes| assert_eq!(loads::<T>(bytes).unwrap(), want))
    }

    /// A check that the pickle is the exception `class` with `message`.
    fn raised(class: &'static str, message: &'static str) -> Check {
        Box::new(move |result, _| match result {
            Err(Error::Python {
                class: c,
                message: m,
            }) => assert_eq!((&*c, &*m), (class, message)),
            other => panic!("expected {class}, got {other:?}"),
        })
    }

    /// A check that the pickle is refused as holding an object of `class`.
    fn refused(class: &'static str) -> Check {
        Box::new(move |result, _| match result {
            Err(Error::Decode(m)) => assert!(m.contains(class), "{m}"),
            other => panic!("expected {class} refused, got {other:?}"),
        })
    }

    #[test]
    fn loads_reads_what_python_writes() {
        let cases: Vec<(&str, Check)> = vec![
            ("None", value(())),
            ("(True, False)", value((true, false))),
            ("2**62", value(1i64 << 62)),
            ("-2**31 - 1", value(-(1i64 << 31) - 1)),
            ("1e300", value(1e300f64)),
            ("'h\\xe9llo\\n\\\\'", value("héllo\n\\".to_string())),
            ("'\\u20ac' * 70000", value("€".repeat(70_000))),
            ("b''", value(ByteBuf::new())),
            (
                "bytes(range(256)) * 280",
                value(ByteBuf::from(big_payload())),
            ),
            ("bytearray(b'xy')", value(ByteBuf::from(b"xy".to_vec()))),
            (
                "{1: [b'a', None], 2: []}",
                value(BTreeMap::from([
                    (1i64, vec![Some(ByteBuf::from(b"a".to_vec())), None]),
                    (2, vec![]),
                ])),
            ),
            (
                "{frozenset({1}), frozenset()}",
                value(BTreeSet::from([BTreeSet::new(), BTreeSet::from([1i64])])),
            ),
            ("list(range(2500))", value((0..2500i64).collect::<Vec<_>>())),
            (
                "{str(i): i for i in range(1500)}",
                value(
                    (0..1500i64)
                        .map(|i| (i.to_string(), i))
                        .collect::<HashMap<_, _>>(),
                ),
            ),
            ("[[1, 2, 3]] * 3", value(vec![vec![1i64, 2, 3]; 3])),
            ("queue.Empty()", raised("_queue.Empty", "")),
            ("queue.Full()", raised("queue.Full", "")),
            ("KeyError('k')", raised("builtins.KeyError", "'k'")),
            ("KeyError(1)", raised("builtins.KeyError", "1")),
            (
                "IndexError('list index out of range')",
                raised("builtins.IndexError", "list index out of range"),
            ),
            (
                "ValueError('bad', 3)",
                raised("builtins.ValueError", "('bad', 3)"),
            ),
            ("StopIteration()", raised("builtins.StopIteration", "")),
            (
                "multiprocessing.managers.RemoteError('tb')",
                raised("multiprocessing.managers.RemoteError", "tb"),
            ),
            (
                "datetime.datetime(2020, 1, 1)",
                refused("datetime.datetime"),
            ),
            (
                "collections.OrderedDict(a=1)",
                refused("collections.OrderedDict"),
            ),
            ("fractions.Fraction(1, 3)", refused("fractions.Fraction")),
            ("decimal.Decimal('1.5')", refused("decimal.Decimal")),
            ("point()", refused("__main__.Point")),
            ("('#ERROR', KeyError('k'))", refused("builtins.KeyError")),
        ];
        let exprs: Vec<&str> = cases.iter().map(|(e, _)| *e).collect();
        let Some(out) = python(WRITE, &exprs, Vec::new()) else {
            return;
        };
        let mut rest = &out[..];
        for (expr, check) in &cases {
            for proto in 0..6 {
                let (len, tail) = rest.split_at(4);
                let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
                let (bytes, tail) = tail.split_at(len);
                rest = tail;
                let result = loads::<serde::de::IgnoredAny>(bytes).map(|_| ());
                eprintln!("{expr} at protocol {proto}");
                check(result, bytes);
            }
        }
        assert!(rest.is_empty());
    }
}
