//! The opcode walker: checks that a pickle holds plain data or one
//! exception instance, names the classes it refers to, and notes the bytes
//! to patch so that serde-pickle can read the rest. It never imports or
//! calls anything.

use super::*;

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
pub(super) mod op {
    pub(in crate::pickle) const MARK: u8 = b'(';
    pub(in crate::pickle) const STOP: u8 = b'.';
    pub(in crate::pickle) const POP: u8 = b'0';
    pub(in crate::pickle) const NONE: u8 = b'N';
    pub(in crate::pickle) const REDUCE: u8 = b'R';
    pub(in crate::pickle) const BINUNICODE: u8 = b'X';
    pub(in crate::pickle) const GLOBAL: u8 = b'c';
    pub(in crate::pickle) const TUPLE: u8 = b't';
    pub(in crate::pickle) const EMPTY_TUPLE: u8 = b')';
    pub(in crate::pickle) const SHORT_BINBYTES: u8 = b'C';
    pub(in crate::pickle) const PROTO: u8 = 0x80;
    pub(in crate::pickle) const TUPLE1: u8 = 0x85;
    pub(in crate::pickle) const TUPLE2: u8 = 0x86;
    pub(in crate::pickle) const TUPLE3: u8 = 0x87;
    pub(in crate::pickle) const BINUNICODE8: u8 = 0x8d;
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
pub(super) struct Opcode {
    pub(super) code: u8,
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
pub(super) const OPCODES: &[Opcode] = {
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
pub(super) struct Span {
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
pub(super) struct Class {
    module: Span,
    name: Span,
}

impl Class {
    /// The module, with the Python 2 names CPython writes below protocol 3
    /// mapped back to Python 3's (`exceptions` to `builtins`), as its
    /// unpickler does.
    pub(super) fn module(&self, bytes: &[u8]) -> String {
        let module = String::from_utf8_lossy(self.module.of(bytes));
        match &*module {
            "exceptions" | "__builtin__" => "builtins".to_owned(),
            "Queue" => "queue".to_owned(),
            _ => module.into_owned(),
        }
    }

    pub(super) fn name<'a>(&self, bytes: &'a [u8]) -> &'a str {
        std::str::from_utf8(self.name.of(bytes)).unwrap_or("?")
    }

    /// Whether this is `multiprocessing.managers.Token`, which a manager's
    /// `#PROXY` reply carries.
    fn is_token(&self, bytes: &[u8]) -> bool {
        self.module.of(bytes) == b"multiprocessing.managers" && self.name.of(bytes) == b"Token"
    }

    /// `module.Name`.
    pub(super) fn full_name(&self, bytes: &[u8]) -> String {
        format!("{}.{}", self.module(bytes), self.name(bytes))
    }

    /// What serde-pickle makes of a reference to this class, if anything.
    fn known(&self, bytes: &[u8]) -> Known {
        let module = self.module.of(bytes);
        let name = self.name.of(bytes);
        match (module, name) {
            (b"builtins" | b"__builtin__", b"set" | b"frozenset" | b"bytearray" | b"list")
            | (b"_codecs", b"encode") => Known::Serde,
            (b"builtins" | b"__builtin__", b"bytes") => Known::Bytes,
            _ => Known::No,
        }
    }
}

/// How a class referred to by a pickle is handled.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Known {
    /// serde-pickle builds plain data from it (`set`, `_codecs.encode`, and
    /// `list` of a list, as CPython pickles a dict's views).
    Serde,
    /// `bytes`, which CPython calls with no argument for `b''` below
    /// protocol 3, and serde-pickle does not know.
    Bytes,
    /// Any other class: serde-pickle sees `None` in its place.
    No,
}

/// What the walker knows of an object on the stack.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
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
    /// A `multiprocessing.managers.Token` that `NEWOBJ` made, in a
    /// manager's reply, waiting for its `BUILD`.
    Token(Class),
}

/// An object on the walker's stack or in its memo.
#[derive(Debug, Clone, Copy)]
pub(super) struct Item {
    pub(super) kind: Kind,
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
pub(super) struct Walked {
    pub(super) top: Item,
    /// The exception inside the data, for a walk that allows one.
    pub(super) nested: Option<Class>,
    /// Whether the data holds a manager's token (only a `#PROXY` may).
    pub(super) tokens: bool,
    patches: Vec<Patch>,
}

impl Walked {
    /// The pickle with the patches applied, if there are any.
    pub(super) fn patched(&self, bytes: &[u8]) -> Option<Vec<u8>> {
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
pub(super) struct Walker<'a> {
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
    /// Whether one exception may sit inside the data.
    allow_nested: bool,
    nested: Option<Class>,
    /// Whether a token was built (and left as plain data).
    tokens: bool,
}

impl<'a> Walker<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Walker<'a> {
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
            allow_nested: false,
            nested: None,
            tokens: false,
        }
    }

    /// A walker that lets one exception instance sit inside the data (a
    /// manager's `('#ERROR', exc)` reply), reported in [`Walked::nested`].
    pub(super) fn allowing_an_exception(mut self) -> Walker<'a> {
        self.allow_nested = true;
        self
    }

    pub(super) fn walk(mut self) -> Result<Walked> {
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
                    let state = self.pop(opcode)?;
                    let top = self.top(opcode)?;
                    match self.resolve(top, false)?.kind {
                        Kind::Token(_) => self.token_state(opcode, at, state)?,
                        Kind::Instance(_) => self.patch(at, 1, &[op::POP]),
                        Kind::Global(class) => return Err(self.not_plain(class)),
                        _ => {
                            return Err(decode(format!(
                                "pickle's BUILD at offset {at} sets the state of plain data"
                            )));
                        }
                    }
                }
                Effect::NewObject => {
                    if !self.new_token(opcode, at)? {
                        return Err(self.new_object(opcode, arg, arg2));
                    }
                }
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
                        nested: self.nested,
                        tokens: self.tokens,
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
            match item.kind {
                Kind::Instance(class)
                    if self.allow_nested
                        && self.nested.is_none()
                        && super::is_exception(
                            &class.module(self.bytes),
                            class.name(self.bytes),
                        ) =>
                {
                    self.nested = Some(class);
                }
                Kind::Global(class) | Kind::Instance(class) | Kind::Token(class) => {
                    return Err(self.not_plain(class));
                }
                _ => {}
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
            Kind::Global(class) | Kind::Instance(class) | Kind::Token(class) => {
                return Err(self.not_plain(class));
            }
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
            Kind::Global(inner) | Kind::Instance(inner) | Kind::Token(inner) => {
                return Err(self.not_plain(inner));
            }
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

    /// `NEWOBJ` of `multiprocessing.managers.Token` with no arguments, in a
    /// manager's reply (a `#PROXY`): an instance whose `BUILD` keeps its
    /// state, so that serde-pickle reads `((None, ()), state)`. Nothing
    /// else is made this way; `false` for anything else.
    fn new_token(&mut self, opcode: &Opcode, at: usize) -> Result<bool> {
        if !self.allow_nested || opcode.name != "NEWOBJ" {
            return Ok(false);
        }
        let n = self.stack.len();
        if n < self.fence() + 2 {
            return Ok(false);
        }
        let (class, args) = (self.stack[n - 2], self.stack[n - 1]);
        let (class, args) = (self.resolve(class, false)?, self.resolve(args, false)?);
        let (Kind::Global(class), Kind::EmptyTuple) = (class.kind, args.kind) else {
            return Ok(false);
        };
        if !class.is_token(self.bytes) {
            return Ok(false);
        }
        self.pop(opcode)?;
        self.pop(opcode)?;
        let mut item = self.container(2 * NODE, 1)?;
        item.kind = Kind::Token(class);
        self.patch(at, 1, &[op::TUPLE2]);
        self.push(item);
        Ok(true)
    }

    /// `BUILD` of a token made by [`new_token`](Walker::new_token): its
    /// state, plain data, is kept beside it.
    fn token_state(&mut self, opcode: &Opcode, at: usize, state: Slot) -> Result<()> {
        let state = self.resolve(state, true)?;
        if let Kind::Global(class) | Kind::Instance(class) | Kind::Token(class) = state.kind {
            return Err(self.not_plain(class));
        }
        let token = self.pop(opcode)?;
        let token = self.resolve(token, true)?;
        let item = self.container(
            token.size.saturating_add(state.size),
            token.depth.max(state.depth),
        )?;
        self.patch(at, 1, &[op::TUPLE2]);
        self.push(item);
        self.tokens = true;
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
