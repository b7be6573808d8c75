//! Who a process is, in Python's terms: its name, its place in the tree of
//! processes the program started, its daemon flag and its parent.

use serde::{Deserialize, Serialize};

/// Who this process is, in Python's terms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Identity {
    /// `None` in the main process ("MainProcess").
    pub(crate) name: Option<String>,
    /// Python's `_identity`: the counter of each ancestor, `[]` in the main
    /// process, `[1]` for its first child, `[1, 2]` for that child's second.
    pub(crate) ident: Vec<u32>,
    /// Whether this process is a daemon.
    pub(crate) daemon: bool,
    /// The parent's pid and name, `None` in the main process.
    pub(crate) parent: Option<(u32, String)>,
    /// How many `Process` objects this process has created.
    pub(crate) counter: u32,
    /// The pid of the fork server that tracks this process's named shared
    /// memory (see `tracker`): its program's, inherited, or its own.
    #[serde(default)]
    pub(crate) tracker: Option<u32>,
}

impl Identity {
    /// The identity of the program's first process.
    pub(crate) const MAIN: Identity = Identity {
        name: None,
        ident: Vec::new(),
        daemon: false,
        parent: None,
        counter: 0,
        tracker: None,
    };

    pub(crate) fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("MainProcess")
    }
}
