//! The manager's protocol: requests, replies and errors, encoded with the
//! workspace codec. A value held by the server is [`Stored`]: its encoded
//! bytes plus the managed objects it refers to, so the server keeps those
//! alive without understanding the bytes.

use std::time::Duration;

use multiproc_process::Error;
use serde::{Deserialize, Serialize};

pub(crate) use crate::slice::Slice;

/// An object's number in its manager.
pub(crate) type ObjectId = u64;

/// An encoded value, and the ids of the proxies (of the same manager) it
/// holds, one per occurrence.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Stored {
    #[serde(with = "serde_bytes")]
    pub(crate) bytes: Vec<u8>,
    pub(crate) refs: Vec<ObjectId>,
}

/// What a managed object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// [`ListProxy`](crate::ListProxy).
    List,
    /// [`DictProxy`](crate::DictProxy).
    Dict,
    /// [`Namespace`](crate::Namespace).
    Namespace,
    /// [`ValueProxy`](crate::ValueProxy).
    Value,
    /// [`ArrayProxy`](crate::ArrayProxy).
    Array,
    /// [`QueueProxy`](crate::QueueProxy).
    Queue,
    /// [`JoinableQueueProxy`](crate::JoinableQueueProxy).
    JoinableQueue,
    /// [`LockProxy`](crate::LockProxy).
    Lock,
    /// [`RLockProxy`](crate::RLockProxy).
    RLock,
    /// [`SemaphoreProxy`](crate::SemaphoreProxy).
    Semaphore,
    /// [`BoundedSemaphoreProxy`](crate::BoundedSemaphoreProxy).
    BoundedSemaphore,
    /// [`ConditionProxy`](crate::ConditionProxy).
    Condition,
    /// [`EventProxy`](crate::EventProxy).
    Event,
    /// [`BarrierProxy`](crate::BarrierProxy).
    Barrier,
    /// A registered type's [`Proxy`](crate::Proxy).
    User,
}

/// An object's kind and the Rust type of its values, checked when a proxy
/// is looked up by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ObjectInfo {
    pub(crate) kind: Kind,
    pub(crate) type_name: String,
}

/// How long a blocking call may wait: `None` as long as it takes.
pub(crate) type Wait = Option<Duration>;

/// Who holds a lock: the client session and its thread.
pub(crate) type Holder = (u64, u64);

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Request {
    /// First on every connection: the client's session.
    Hello {
        session: u64,
        /// How often a waiting call should say it is still waiting (a
        /// remote client's reply timeout allows for a few such words).
        heartbeat: Option<Duration>,
    },
    Create {
        info: ObjectInfo,
        init: Init,
    },
    /// A proxy is being sent to another process: hold the object under a
    /// ticket until that process claims it (or this session ends).
    Lend(ObjectId),
    /// Turns a lent hold into this session's; an unknown ticket (claimed
    /// already, or its lender gone) counts a new hold, if the object lives.
    Claim {
        ticket: u64,
        id: ObjectId,
    },
    /// No reply.
    Decref(ObjectId),
    Call(ObjectId, Op),
    Publish(String, ObjectId),
    Lookup(String),
    /// How many objects the server holds.
    Count,
    Shutdown,
}

impl Request {
    /// Calls `f` with each managed object the request's values name.
    pub(crate) fn for_each_ref(&self, mut f: impl FnMut(ObjectId)) {
        let mut each = |s: &Stored| s.refs.iter().copied().for_each(&mut f);
        match self {
            Request::Create { init, .. } => match init {
                Init::List(items) => items.iter().for_each(&mut each),
                Init::Dict(items) => items.iter().for_each(|(_, v)| each(v)),
                Init::Value(v) => each(v),
                _ => {}
            },
            Request::Call(_, op) => match op {
                Op::Set(_, v)
                | Op::Push(v)
                | Op::Insert(_, v)
                | Op::DictInsert(_, v)
                | Op::DictSetDefault(_, v)
                | Op::NsSet(_, v)
                | Op::ValueSet(v)
                | Op::Put(v, _)
                | Op::PutFront(v) => each(v),
                Op::Extend(items) | Op::SetRange(_, items) => items.iter().for_each(&mut each),
                Op::DictUpdate(items) => items.iter().for_each(|(_, v)| each(v)),
                _ => {}
            },
            _ => {}
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Init {
    List(Vec<Stored>),
    Dict(Vec<(Vec<u8>, Stored)>),
    Namespace,
    Value(Stored),
    Queue {
        maxsize: usize,
    },
    Lock,
    RLock,
    Semaphore {
        value: u32,
        bounded: bool,
    },
    Condition,
    Event,
    Barrier {
        parties: u32,
        timeout: Wait,
    },
    User {
        name: String,
        #[serde(with = "serde_bytes")]
        init: Vec<u8>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Op {
    // Sequences (list, array).
    Len,
    Snapshot,
    Clear,
    Get(i64),
    Set(i64, Stored),
    Push(Stored),
    Extend(Vec<Stored>),
    Insert(i64, Stored),
    Pop(Option<i64>),
    RemoveValue(Vec<u8>),
    Contains(Vec<u8>),
    Index(Vec<u8>),
    Count(Vec<u8>),
    GetRange(Slice),
    /// Replaces a slice with the items (which may be more or fewer).
    SetRange(Slice, Vec<Stored>),
    DeleteRange(Slice),
    Reverse,
    /// `l *= n`.
    Repeat(u64),
    /// The items and their digest, to sort.
    SnapshotDigest,
    /// Puts the items in this order if their digest is still this.
    Permute(u64, Vec<u64>),
    // Dicts.
    DictInsert(Vec<u8>, Stored),
    DictGet(Vec<u8>),
    DictRemove(Vec<u8>),
    DictContains(Vec<u8>),
    DictKeys,
    DictValues,
    DictItems,
    DictUpdate(Vec<(Vec<u8>, Stored)>),
    DictSetDefault(Vec<u8>, Stored),
    /// Removes the entry inserted last.
    DictPopItem,
    // Namespaces.
    NsGet(String),
    NsSet(String, Stored),
    NsRemove(String),
    NsItems,
    // Values.
    ValueGet,
    ValueSet(Stored),
    // Queues.
    Put(Stored, Wait),
    Take(Wait),
    /// Gives back an item a `Take` took for a caller that had gone: it
    /// goes back to the queue's front, and the session lets go of the
    /// holds its copy counted.
    PutFront(Stored),
    QSize,
    MaxSize,
    TaskDone,
    Join(Wait),
    // Locks, semaphores, conditions.
    Acquire(Holder, Wait),
    Release(Holder),
    SemValue,
    CondWait(Holder, Wait),
    CondNotify(Holder, u32),
    // Events.
    EventSet,
    EventClear,
    EventIsSet,
    EventWait(Wait),
    // Barriers.
    BarrierWait(Wait),
    BarrierAbort,
    BarrierReset,
    BarrierState,
    // Registered types.
    User(#[serde(with = "serde_bytes")] Vec<u8>),
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    Unit,
    Bool(bool),
    Len(u64),
    U32(u32),
    Value(Stored),
    Maybe(Option<Stored>),
    Values(Vec<Stored>),
    Digested(u64, Vec<Stored>),
    Keys(Vec<Vec<u8>>),
    Items(Vec<(Vec<u8>, Stored)>),
    Named(Vec<(String, Stored)>),
    Created(ObjectId),
    Found(ObjectId, ObjectInfo),
    Barrier {
        parties: u32,
        waiting: u32,
        broken: bool,
    },
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The reply to `Hello`: the manager's uid, and whether it stores
    /// values as pickles (it serves Python programs too).
    Welcome {
        uid: u64,
        pickle: bool,
    },
    /// Not a reply: sent to a remote client, a few times per span of its
    /// reply timeout, while its call waits (a queue's get), so that it can
    /// tell a waiting server from a silent one.
    Waiting,
}

/// Why a sort's order was refused (see [`WireError::Changed`]).
pub(crate) const CHANGED: &str = "the list changed while it was being sorted";

/// A failure the server reports; turned into an [`Error`] by the client.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum WireError {
    Timeout,
    WouldBlock,
    Empty,
    Full,
    NotHeld,
    TooManyTaskDone,
    BrokenBarrier,
    Closed,
    NotFound(String),
    Invalid(String),
    Panicked(String),
    Decode(String),
    /// The list changed since the client read it (a sort tries again).
    Changed,
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        match e {
            WireError::Timeout => Error::Timeout,
            WireError::WouldBlock => Error::WouldBlock,
            WireError::Empty => Error::Empty,
            WireError::Full => Error::Full,
            WireError::NotHeld => Error::NotHeld("release of a lock this thread does not hold"),
            WireError::TooManyTaskDone => Error::NotHeld("task_done() called too many times"),
            WireError::BrokenBarrier => Error::BrokenBarrier,
            WireError::Closed => Error::Closed,
            WireError::NotFound(what) => Error::NotFound(what),
            WireError::Invalid(why) => Error::InvalidArgument(why),
            WireError::Panicked(message) => Error::TaskPanicked { message },
            WireError::Decode(why) => Error::Decode(why),
            WireError::Changed => Error::InvalidArgument(CHANGED.into()),
        }
    }
}

pub(crate) type WireResult = Result<Reply, WireError>;
