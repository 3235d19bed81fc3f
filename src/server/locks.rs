//! Advisory locks: `flock(2)` on an open handle, and `fcntl(2)` record locks
//! held either by the open file (`F_OFD_SETLK`) or by a process of the run
//! (`F_SETLK`).
//!
//! Every request reaches the server from one process, so the server cannot
//! hold POSIX locks *as* the program's processes. It holds each process's
//! record locks on one file on an open file description of their own (a
//! reopen of the handle, one per process and file) with OFD locks: those
//! conflict with every other description's locks and with POSIX locks of
//! processes on the server, and never with the same description's, which is
//! POSIX's rule for one process. Dropping that description drops the
//! process's locks on the file, as the kernel does when the process closes
//! any fd of the file or exits.
//!
//! A wait (`F_SETLKW`, `flock` without `LOCK_NB`) is a loop of non-blocking
//! attempts on the request's blocking thread, so it can end when the client
//! cancels it or the connection goes.
//!
//! Must not open a path: a process's lock file is a reopen of a handle.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::fcntl::{FcntlArg, fcntl};
use rustix::fs::{FlockOperation, Mode, OFlags, SeekFrom};

use super::executor::misrouted;
use super::handles::Handles;
use super::resolve::proc_fd_path;
use crate::errno::Errno;
use crate::proto::{FileLock, LockOwner, Reply, Request, Response};

/// The longest pause between two attempts of a waiting lock.
const MAX_PAUSE: Duration = Duration::from_millis(20);

/// Cancelled waits remembered before their request arrives (a cancel can
/// overtake it on another stream); beyond this the oldest are forgotten.
const MAX_CANCELLED: usize = 4096;

/// A process's lock file: by process, device and inode.
type OwnerKey = (u32, u64, u64);

/// One session's locks. Dropping it closes the processes' lock files, and
/// the handles' closing drops their `flock` and OFD locks: a client that
/// goes leaves no lock behind.
#[derive(Debug, Default)]
pub(super) struct Locks {
    owners: Mutex<HashMap<OwnerKey, Arc<OwnedFd>>>,
    cancelled: Mutex<BTreeSet<u64>>,
    /// The connection is gone: waits end (EIO).
    closed: AtomicBool,
}

impl Locks {
    /// Runs one lock request on the session's `handles` (routed here by
    /// the executor).
    pub(super) fn execute(&self, handles: &Handles, req: Request) -> Response {
        match req {
            Request::Flock { handle, op, wait } => {
                self.flock(handles.get(handle)?.as_fd(), op, wait)
            }
            Request::RecordLock {
                handle,
                owner,
                lock,
                set,
                wait,
            } => self.record(handles.get(handle)?.as_fd(), owner, lock, set, wait),
            Request::ReleaseLocks { owner, handle } => match handle {
                Some(handle) => self.release(owner, Some(handles.get(handle)?.as_fd())),
                None => self.release(owner, None),
            },
            Request::CancelWait { wait } => self.cancel(wait),
            other => misrouted(&other),
        }
    }

    /// `flock(2)` on `file`; with `wait`, waits for a conflicting lock.
    pub(super) fn flock(&self, file: BorrowedFd<'_>, op: i32, wait: Option<u64>) -> Response {
        let operation = match op {
            libc::LOCK_SH => FlockOperation::NonBlockingLockShared,
            libc::LOCK_EX => FlockOperation::NonBlockingLockExclusive,
            libc::LOCK_UN => FlockOperation::NonBlockingUnlock,
            _ => return Err(Errno::EINVAL),
        };
        self.attempt(wait, || {
            rustix::fs::flock(file, operation).map_err(Errno::from)
        })
        .map(|()| Reply::Done)
    }

    /// `fcntl(2)` `F_SETLK`/`F_SETLKW` (`set`) or `F_GETLK` on the file
    /// `file` (a handle) names, for `owner`.
    pub(super) fn record(
        &self,
        file: BorrowedFd<'_>,
        owner: LockOwner,
        lock: FileLock,
        set: bool,
        wait: Option<u64>,
    ) -> Response {
        let access = rustix::fs::fcntl_getfl(file)?;
        let readable = !access.contains(OFlags::WRONLY) && !access.contains(OFlags::PATH);
        let writable = access.contains(OFlags::WRONLY) || access.contains(OFlags::RDWR);
        // As the kernel checks the program's own fd.
        match i32::from(lock.kind) {
            libc::F_RDLCK if set && !readable => return Err(Errno::EBADF),
            libc::F_WRLCK if set && !writable => return Err(Errno::EBADF),
            libc::F_RDLCK | libc::F_WRLCK | libc::F_UNLCK => {}
            _ => return Err(Errno::EINVAL),
        }
        let mut flock = to_flock(lock, file)?;
        match owner {
            LockOwner::OpenFile => self.record_on(file, &mut flock, set, wait, lock),
            LockOwner::Process(tgid) => {
                let key = owner_key(tgid, file)?;
                if !set || i32::from(lock.kind) == libc::F_UNLCK {
                    // Nothing to test or drop on a file without locks of its
                    // own: test on the handle, which holds none of the
                    // process's.
                    let held = self.owners().get(&key).cloned();
                    return match held {
                        Some(owned) => self.record_on(owned.as_fd(), &mut flock, set, wait, lock),
                        None if set => Ok(Reply::Done),
                        None => self.record_on(file, &mut flock, set, wait, lock),
                    };
                }
                let owned = self.owner_file(key, file)?;
                self.record_on(owned.as_fd(), &mut flock, set, wait, lock)
            }
        }
    }

    fn record_on(
        &self,
        fd: BorrowedFd<'_>,
        flock: &mut libc::flock,
        set: bool,
        wait: Option<u64>,
        asked: FileLock,
    ) -> Response {
        if !set {
            fcntl(fd, FcntlArg::F_OFD_GETLK(flock)).map_err(|e| Errno(e as i32))?;
            return Ok(Reply::Lock(from_flock(flock, asked)));
        }
        let flock = *flock;
        self.attempt(wait, || {
            fcntl(fd, FcntlArg::F_OFD_SETLK(&flock))
                .map(drop)
                .map_err(|e| Errno(e as i32))
        })
        .map(|()| Reply::Done)
    }

    /// The process `tgid` closed the file `file` names (`Some`), or exited:
    /// its record locks there go.
    pub(super) fn release(&self, tgid: u32, file: Option<BorrowedFd<'_>>) -> Response {
        let gone: Vec<Arc<OwnedFd>> = match file {
            Some(file) => {
                let key = owner_key(tgid, file)?;
                self.owners().remove(&key).into_iter().collect()
            }
            None => {
                let mut owners = self.owners();
                let keys: Vec<OwnerKey> = owners.keys().filter(|k| k.0 == tgid).copied().collect();
                keys.iter().filter_map(|k| owners.remove(k)).collect()
            }
        };
        // Closed outside the lock.
        drop(gone);
        Ok(Reply::Done)
    }

    /// Ends the wait numbered `wait`, now or when it starts.
    pub(super) fn cancel(&self, wait: u64) -> Response {
        let mut cancelled = self.cancelled();
        cancelled.insert(wait);
        while cancelled.len() > MAX_CANCELLED {
            cancelled.pop_first();
        }
        Ok(Reply::Done)
    }

    /// The connection is gone: every wait ends.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// The session was taken up on a new connection: waits wait again (the
    /// locks held stayed held all along).
    pub(super) fn reopen(&self) {
        self.closed.store(false, Ordering::Relaxed);
    }

    /// Runs `try_once` once, or with `wait` until it stops meeting a
    /// conflicting lock, the wait is cancelled (EINTR) or the connection
    /// goes (EIO).
    fn attempt(
        &self,
        wait: Option<u64>,
        mut try_once: impl FnMut() -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let Some(id) = wait else {
            return try_once();
        };
        let mut pause = Duration::from_millis(1);
        loop {
            match try_once() {
                Err(e) if e == Errno::EAGAIN || e == Errno(libc::EACCES) => {}
                done => {
                    self.cancelled().remove(&id);
                    return done;
                }
            }
            if self.cancelled().remove(&id) {
                return Err(Errno(libc::EINTR));
            }
            if self.closed.load(Ordering::Relaxed) {
                return Err(Errno(libc::EIO));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// The process's lock file for `key`, opened from `file` on first use.
    fn owner_file(&self, key: OwnerKey, file: BorrowedFd<'_>) -> Result<Arc<OwnedFd>, Errno> {
        if let Some(owned) = self.owners().get(&key) {
            return Ok(owned.clone());
        }
        let owned = Arc::new(reopen(file)?);
        Ok(self.owners().entry(key).or_insert(owned).clone())
    }

    fn owners(&self) -> MutexGuard<'_, HashMap<OwnerKey, Arc<OwnedFd>>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn cancelled(&self) -> MutexGuard<'_, BTreeSet<u64>> {
        self.cancelled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn owner_key(tgid: u32, file: BorrowedFd<'_>) -> Result<OwnerKey, Errno> {
    let st = rustix::fs::fstat(file)?;
    Ok((tgid, st.st_dev, st.st_ino))
}

/// A new open file description of the file `file` is open on: read-write
/// where the caller may (so both lock kinds can live on it), else with the
/// handle's own access.
fn reopen(file: BorrowedFd<'_>) -> Result<OwnedFd, Errno> {
    let path = proc_fd_path(file);
    let base = OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    match rustix::fs::open(path.as_c_str(), base | OFlags::RDWR, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(_) => {
            let access =
                rustix::fs::fcntl_getfl(file)? & (OFlags::RDONLY | OFlags::WRONLY | OFlags::RDWR);
            Ok(rustix::fs::open(
                path.as_c_str(),
                base | access,
                Mode::empty(),
            )?)
        }
    }
}

/// The kernel's `struct flock` for `lock`, with a `SEEK_CUR` start made
/// absolute from the handle's offset (the lock file's own offset is not the
/// program's).
fn to_flock(lock: FileLock, handle: BorrowedFd<'_>) -> Result<libc::flock, Errno> {
    let (whence, start) = match i32::from(lock.whence) {
        libc::SEEK_CUR => {
            let here = rustix::fs::seek(handle, SeekFrom::Current(0))?;
            let here = i64::try_from(here).map_err(|_| Errno::EOVERFLOW)?;
            let start = here.checked_add(lock.start).ok_or(Errno::EOVERFLOW)?;
            (libc::SEEK_SET, start)
        }
        w @ (libc::SEEK_SET | libc::SEEK_END) => (w, lock.start),
        _ => return Err(Errno::EINVAL),
    };
    Ok(libc::flock {
        l_type: lock.kind,
        l_whence: i16::try_from(whence).map_err(|_| Errno::EINVAL)?,
        l_start: start,
        l_len: lock.len,
        // OFD commands require 0.
        l_pid: 0,
    })
}

/// `F_GETLK`'s answer: the conflicting lock, or the question with `F_UNLCK`.
fn from_flock(flock: &libc::flock, asked: FileLock) -> FileLock {
    if i32::from(flock.l_type) == libc::F_UNLCK {
        return FileLock {
            kind: flock.l_type,
            ..asked
        };
    }
    FileLock {
        kind: flock.l_type,
        whence: flock.l_whence,
        start: flock.l_start,
        len: flock.l_len,
        pid: flock.l_pid,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    fn lock(kind: i32, start: i64, len: i64) -> FileLock {
        FileLock {
            kind: i16::try_from(kind).unwrap(),
            whence: FileLock::SEEK_SET,
            start,
            len,
            pid: 0,
        }
    }

    fn file() -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        (dir, f)
    }

    #[test]
    fn processes_conflict_and_one_process_does_not_conflict_with_itself() {
        let locks = Locks::default();
        let (_dir, f) = file();
        let other = reopen(f.as_fd()).unwrap();
        let (p1, p2) = (LockOwner::Process(1), LockOwner::Process(2));
        let w = lock(libc::F_WRLCK, 0, 10);
        assert_eq!(locks.record(f.as_fd(), p1, w, true, None), Ok(Reply::Done));
        // The same process, through another open of the file: no conflict.
        assert_eq!(
            locks.record(other.as_fd(), p1, w, true, None),
            Ok(Reply::Done)
        );
        assert_eq!(
            locks.record(other.as_fd(), p2, lock(libc::F_RDLCK, 5, 1), true, None),
            Err(Errno::EAGAIN)
        );
        // Outside the range: fine.
        assert_eq!(
            locks.record(other.as_fd(), p2, lock(libc::F_WRLCK, 10, 5), true, None),
            Ok(Reply::Done)
        );
        let Ok(Reply::Lock(held)) =
            locks.record(f.as_fd(), p2, lock(libc::F_WRLCK, 0, 0), false, None)
        else {
            panic!("F_GETLK answers a lock");
        };
        assert_eq!((held.kind, held.start, held.len), (FileLock::WRLCK, 0, 10));
        // Closing any fd of the file drops process 1's locks.
        assert_eq!(locks.release(1, Some(other.as_fd())), Ok(Reply::Done));
        assert_eq!(
            locks.record(f.as_fd(), p2, lock(libc::F_WRLCK, 0, 10), true, None),
            Ok(Reply::Done)
        );
        // Exit drops every lock of process 2.
        assert_eq!(locks.release(2, None), Ok(Reply::Done));
        let Ok(Reply::Lock(free)) =
            locks.record(f.as_fd(), p1, lock(libc::F_WRLCK, 0, 0), false, None)
        else {
            panic!("F_GETLK answers a lock");
        };
        assert_eq!(free.kind, FileLock::UNLCK);
    }

    #[test]
    fn a_read_only_handle_cannot_take_a_write_lock() {
        let locks = Locks::default();
        let (dir, _f) = file();
        let ro = std::fs::File::open(dir.path().join("f")).unwrap();
        assert_eq!(
            locks.record(
                ro.as_fd(),
                LockOwner::Process(1),
                lock(libc::F_WRLCK, 0, 0),
                true,
                None
            ),
            Err(Errno::EBADF)
        );
        assert_eq!(
            locks.record(
                ro.as_fd(),
                LockOwner::Process(1),
                lock(libc::F_RDLCK, 0, 0),
                true,
                None
            ),
            Ok(Reply::Done)
        );
    }

    #[test]
    fn flock_conflicts_between_open_files_and_a_cancelled_wait_ends() {
        let locks = Arc::new(Locks::default());
        let (_dir, f) = file();
        let other = reopen(f.as_fd()).unwrap();
        assert_eq!(locks.flock(f.as_fd(), libc::LOCK_EX, None), Ok(Reply::Done));
        assert_eq!(
            locks.flock(other.as_fd(), libc::LOCK_SH, None),
            Err(Errno::EAGAIN)
        );
        // A cancel that comes before its wait still ends it.
        locks.cancel(7).unwrap();
        assert_eq!(
            locks.flock(other.as_fd(), libc::LOCK_SH, Some(7)),
            Err(Errno(libc::EINTR))
        );
        // A wait gets the lock once it is free.
        let waiter = {
            let locks = locks.clone();
            let other = other.try_clone().unwrap();
            std::thread::spawn(move || locks.flock(other.as_fd(), libc::LOCK_SH, Some(8)))
        };
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(locks.flock(f.as_fd(), libc::LOCK_UN, None), Ok(Reply::Done));
        assert_eq!(waiter.join().unwrap(), Ok(Reply::Done));
        // A closed connection ends a wait.
        let (_dir2, g) = file();
        let g2 = reopen(g.as_fd()).unwrap();
        locks.flock(g.as_fd(), libc::LOCK_EX, None).unwrap();
        locks.close();
        assert_eq!(
            locks.flock(g2.as_fd(), libc::LOCK_EX, Some(9)),
            Err(Errno(libc::EIO))
        );
    }
}
