//! [`SharedMemoryManager`]: makes segments and lists, and unlinks them all
//! when it shuts down.

use std::sync::{Mutex, PoisonError};

use multiproc_process::Result;

use crate::named::SharedMemory;
use crate::shareable::{ShareableItem, ShareableList};

/// Makes named segments and [`ShareableList`]s and unlinks every one of
/// them at [`shutdown`](Self::shutdown) (or when dropped). Python:
/// `multiprocessing.managers.SharedMemoryManager`, whose `with` block is
/// this value's scope.
///
/// CPython runs a server process that owns the segments; here this process
/// creates them (so the resource tracker unlinks them should it die), and
/// they reach other processes as any segment does: as arguments, through a
/// connection, or by name.
///
/// ```
/// use multiproc as mp;
///
/// # fn main() -> mp::Result<()> {
/// let smm = mp::SharedMemoryManager::new();
/// let shm = smm.shared_memory(64)?;
/// let list = smm.shareable_list([1i64, 2, 3])?;
/// let name = shm.name().to_owned();
/// smm.shutdown();
/// assert!(mp::SharedMemory::open(&name).is_err());
/// # drop(list);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default)]
pub struct SharedMemoryManager {
    made: Mutex<Vec<SharedMemory>>,
}

impl SharedMemoryManager {
    /// A manager with nothing made yet. Python: `SharedMemoryManager()`
    /// and `start()`.
    pub fn new() -> SharedMemoryManager {
        SharedMemoryManager::default()
    }

    fn keep(&self, shm: &SharedMemory) {
        self.made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(shm.clone());
    }

    /// A new segment of `size` zero bytes, with a name made up. Python:
    /// `smm.SharedMemory(size)`.
    ///
    /// # Errors
    ///
    /// As [`SharedMemory::create`].
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        let shm = SharedMemory::create(None, size)?;
        self.keep(&shm);
        Ok(shm)
    }

    /// A new list of `items`. Python: `smm.ShareableList(sequence)`.
    ///
    /// # Errors
    ///
    /// As [`ShareableList::create`].
    pub fn shareable_list<I>(&self, items: I) -> Result<ShareableList>
    where
        I: IntoIterator,
        I::Item: Into<ShareableItem>,
    {
        let list = ShareableList::create(None, items)?;
        self.keep(list.shm());
        Ok(list)
    }

    /// Unlinks every segment made, now. Python: `smm.shutdown()`. The
    /// memory lives on in the handles that map it; no process can open it
    /// by name any more.
    pub fn shutdown(&self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap_or_else(PoisonError::into_inner));
        for shm in made {
            // Unlinked already by its holder: gone either way.
            let _ = shm.unlink();
        }
    }
}

impl Drop for SharedMemoryManager {
    fn drop(&mut self) {
        self.shutdown();
    }
}
