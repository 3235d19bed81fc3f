//! The session's table of open files, named by [`Handle`].
//!
//! Handles are numbered per session and never reused, so a stale or forged
//! handle finds nothing (`EBADF`) rather than someone else's file. After a
//! server restart a client gives its numbers again ([`Handles::insert_at`]);
//! a number whose file could not be found again names a stale file
//! (`ESTALE`) until it is closed.
//!
//! Must not resolve paths or run calls on the files it holds.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::errno::Errno;
use crate::proto::Handle;

/// Open handles one session may hold at once; beyond it, `open` fails with
/// `EMFILE` as a process at its fd limit would.
pub(super) const MAX_HANDLES: usize = 4096;

#[derive(Debug)]
pub(super) struct Handles {
    table: Mutex<Table>,
    cap: usize,
}

impl Default for Handles {
    fn default() -> Self {
        Self::with_cap(MAX_HANDLES)
    }
}

#[derive(Debug, Default)]
struct Table {
    last: u64,
    files: HashMap<u64, Arc<OwnedFd>>,
    /// Numbers a client gave again whose file is gone: `ESTALE`.
    stale: HashSet<u64>,
}

impl Handles {
    pub(super) fn with_cap(cap: usize) -> Self {
        Self {
            table: Mutex::default(),
            cap,
        }
    }

    /// Adds an open file and names it.
    pub(super) fn insert(&self, fd: OwnedFd) -> Result<Handle, Errno> {
        let mut table = self.lock();
        if table.files.len() >= self.cap {
            return Err(Errno(libc::EMFILE));
        }
        let id = table.last.checked_add(1).ok_or(Errno(libc::EMFILE))?;
        table.last = id;
        table.files.insert(id, Arc::new(fd));
        Ok(Handle(id))
    }

    /// Adds an open file under the number `handle` a client gave it in an
    /// earlier session of a restarted server. Later handles are numbered
    /// above it, so none is given twice; a number in use is `EEXIST`.
    pub(super) fn insert_at(&self, handle: Handle, fd: Option<OwnedFd>) -> Result<(), Errno> {
        let mut table = self.lock();
        if handle.0 == 0 || table.files.contains_key(&handle.0) || table.stale.contains(&handle.0) {
            return Err(Errno(libc::EEXIST));
        }
        if table.files.len() + table.stale.len() >= self.cap {
            return Err(Errno(libc::EMFILE));
        }
        table.last = table.last.max(handle.0);
        match fd {
            Some(fd) => table.files.insert(handle.0, Arc::new(fd)).map(drop),
            None => table.stale.insert(handle.0).then_some(()),
        };
        Ok(())
    }

    /// The file a handle names. The `Arc` keeps it open for the caller even
    /// if a concurrent `Close` removes it, so its fd number cannot be reused
    /// for another file under a running call.
    pub(super) fn get(&self, handle: Handle) -> Result<Arc<OwnedFd>, Errno> {
        let table = self.lock();
        match table.files.get(&handle.0) {
            Some(file) => Ok(file.clone()),
            None if table.stale.contains(&handle.0) => Err(Errno(libc::ESTALE)),
            None => Err(Errno::EBADF),
        }
    }

    /// Forgets a handle; the file closes once no running call still uses it.
    pub(super) fn remove(&self, handle: Handle) -> Result<(), Errno> {
        // Dropped outside the lock: close(2) can take a while (NFS flushes).
        let mut table = self.lock();
        if table.stale.remove(&handle.0) {
            return Ok(());
        }
        let removed = table.files.remove(&handle.0);
        drop(table);
        removed.map(drop).ok_or(Errno::EBADF)
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // Nothing panics while the lock is held, and the table stays
        // consistent even if something did.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some_fd() -> OwnedFd {
        rustix::fs::open(
            "/",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .expect("open /")
    }

    #[test]
    fn handles_are_unique_and_not_reused() {
        let handles = Handles::default();
        let a = handles.insert(some_fd()).expect("insert");
        handles.remove(a).expect("remove");
        let b = handles.insert(some_fd()).expect("insert");
        assert_ne!(a, b);
        assert_eq!(handles.get(a).err(), Some(Errno::EBADF));
        assert!(handles.get(b).is_ok());
    }

    #[test]
    fn unknown_handles_are_ebadf() {
        let handles = Handles::default();
        assert_eq!(handles.get(Handle(0)).err(), Some(Errno::EBADF));
        assert_eq!(handles.get(Handle(u64::MAX)).err(), Some(Errno::EBADF));
        assert_eq!(handles.remove(Handle(7)), Err(Errno::EBADF));
    }

    #[test]
    fn numbers_given_again_are_kept_and_new_ones_come_after_them() {
        let handles = Handles::default();
        handles.insert_at(Handle(5), Some(some_fd())).expect("free");
        handles.insert_at(Handle(3), None).expect("free");
        assert_eq!(
            handles.insert_at(Handle(5), Some(some_fd())),
            Err(Errno(libc::EEXIST))
        );
        assert_eq!(handles.insert_at(Handle(3), None), Err(Errno(libc::EEXIST)));
        assert_eq!(handles.insert_at(Handle(0), None), Err(Errno(libc::EEXIST)));
        assert!(handles.get(Handle(5)).is_ok());
        assert_eq!(handles.get(Handle(3)).err(), Some(Errno(libc::ESTALE)));
        assert_eq!(handles.insert(some_fd()), Ok(Handle(6)));
        assert_eq!(handles.remove(Handle(3)), Ok(()));
        assert_eq!(handles.get(Handle(3)).err(), Some(Errno::EBADF));
        assert_eq!(handles.remove(Handle(3)), Err(Errno::EBADF));
    }

    #[test]
    fn table_is_capped() {
        let handles = Handles::with_cap(16);
        let fd = some_fd();
        for _ in 0..16 {
            let dup = fd.try_clone().expect("dup");
            handles.insert(dup).expect("below the cap");
        }
        let over = handles.insert(fd);
        assert_eq!(over, Err(Errno(libc::EMFILE)));
    }
}
