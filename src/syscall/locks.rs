//! Advisory locks on remote files: `flock(2)`, `fcntl(2)`'s record-lock
//! commands (`F_SETLK`, `F_SETLKW`, `F_GETLK` and their `F_OFD_` forms), and
//! the release of a process's record locks when it closes a remote file.
//!
//! A lock that may wait (`F_SETLKW`, `flock` without `LOCK_NB`) is planned as
//! [`Plan::forward_wait`]: the thread sleeps interruptibly while the server
//! waits, as a local lock wait does.
//!
//! Must not call ptrace or keep state: the process's lock bookkeeping is the
//! tracer's, the locks themselves are the server's.

use super::plan::{Plan, RemoteFd, Then, Tracee};
use crate::errno::Errno;
use crate::proto::{FileLock, LockOwner, Request};
use crate::syscall::describe::{Shown, whence};

/// `sizeof(struct flock)` on x86_64.
pub const FLOCK_SIZE: usize = 32;

/// `struct flock` as the program laid it out.
pub fn decode_flock(b: &[u8]) -> Option<FileLock> {
    let i16_at = |o: usize| Some(i16::from_ne_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let i64_at = |o: usize| Some(i64::from_ne_bytes(b.get(o..o + 8)?.try_into().ok()?));
    Some(FileLock {
        kind: i16_at(0)?,
        whence: i16_at(2)?,
        start: i64_at(8)?,
        len: i64_at(16)?,
        pid: i32::from_ne_bytes(b.get(24..28)?.try_into().ok()?),
    })
}

/// `struct flock` for the program's memory (padding zeroed).
pub fn encode_flock(lock: &FileLock) -> Vec<u8> {
    let mut b = vec![0u8; FLOCK_SIZE];
    b[0..2].copy_from_slice(&lock.kind.to_ne_bytes());
    b[2..4].copy_from_slice(&lock.whence.to_ne_bytes());
    b[8..16].copy_from_slice(&lock.start.to_ne_bytes());
    b[16..24].copy_from_slice(&lock.len.to_ne_bytes());
    b[24..28].copy_from_slice(&lock.pid.to_ne_bytes());
    b
}

/// `flock(fd, op)` on a remote file.
pub fn flock(rfd: &RemoteFd, op: i32) -> Plan {
    let wait = op & libc::LOCK_NB == 0;
    let op = op & !libc::LOCK_NB;
    if !matches!(op, libc::LOCK_SH | libc::LOCK_EX | libc::LOCK_UN) {
        return Plan::fail(Errno::EINVAL);
    }
    let request = |wait| Request::Flock {
        handle: rfd.handle,
        op,
        wait,
    };
    if wait && op != libc::LOCK_UN {
        // The wait's number is the tracer's to give.
        Plan::forward_wait(request(Some(0)))
    } else {
        Plan::forward(request(None), Then::Zero)
    }
}

/// `fcntl(fd, cmd, arg)` for a record-lock `cmd` on a remote file, by
/// thread group `tgid`.
pub fn record(t: &mut impl Tracee, rfd: &RemoteFd, tgid: i32, cmd: i32, arg: u64) -> Plan {
    let (owner, set, wait) = match cmd {
        libc::F_GETLK => (process(tgid), false, false),
        libc::F_SETLK => (process(tgid), true, false),
        libc::F_SETLKW => (process(tgid), true, true),
        libc::F_OFD_GETLK => (LockOwner::OpenFile, false, false),
        libc::F_OFD_SETLK => (LockOwner::OpenFile, true, false),
        libc::F_OFD_SETLKW => (LockOwner::OpenFile, true, true),
        _ => return Plan::fail(Errno::EINVAL),
    };
    let lock = match t
        .read_bytes(arg, FLOCK_SIZE)
        .ok()
        .as_deref()
        .and_then(decode_flock)
    {
        Some(lock) => lock,
        None => return Plan::fail(Errno::EFAULT),
    };
    if owner == LockOwner::OpenFile && lock.pid != 0 {
        return Plan::fail(Errno::EINVAL);
    }
    let kind = i32::from(lock.kind);
    let kind_ok = match set {
        true => matches!(kind, libc::F_RDLCK | libc::F_WRLCK | libc::F_UNLCK),
        // Asking about an unlock makes no sense to the kernel either.
        false => matches!(kind, libc::F_RDLCK | libc::F_WRLCK),
    };
    if !kind_ok
        || !matches!(
            i32::from(lock.whence),
            libc::SEEK_SET | libc::SEEK_CUR | libc::SEEK_END
        )
    {
        return Plan::fail(Errno::EINVAL);
    }
    let request = |wait| Request::RecordLock {
        handle: rfd.handle,
        owner,
        lock,
        set,
        wait,
    };
    if !set {
        return Plan::forward(request(None), Then::Lock { addr: arg });
    }
    if wait && kind != libc::F_UNLCK {
        Plan::forward_wait(request(Some(0)))
    } else {
        Plan::forward(request(None), Then::Zero)
    }
}

fn process(tgid: i32) -> LockOwner {
    LockOwner::Process(tgid.cast_unsigned())
}

/// The bytes an `F_GETLK` answer writes at `addr`: the conflicting lock
/// whole, or only `l_type` (`F_UNLCK`) when none conflicts, as the kernel.
pub fn getlk_writes(addr: u64, lock: &FileLock) -> Vec<(u64, Vec<u8>)> {
    if i32::from(lock.kind) == libc::F_UNLCK {
        return vec![(addr, lock.kind.to_ne_bytes().to_vec())];
    }
    vec![(addr, encode_flock(lock))]
}

/// Gives a waiting request its wait number.
pub fn with_wait(request: Request, number: u64) -> Request {
    match request {
        Request::Flock { handle, op, .. } => Request::Flock {
            handle,
            op,
            wait: Some(number),
        },
        Request::RecordLock {
            handle,
            owner,
            lock,
            set,
            ..
        } => Request::RecordLock {
            handle,
            owner,
            lock,
            set,
            wait: Some(number),
        },
        other => other,
    }
}

/// The `--trace` arguments of the lock requests, as `flock` and `fcntl`
/// spell them ([`describe_as`](crate::syscall::describe::describe_as)
/// routes them here).
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    match req {
        Request::Flock { handle, op, wait } => {
            let op = match *op {
                libc::LOCK_SH => "LOCK_SH",
                libc::LOCK_EX => "LOCK_EX",
                libc::LOCK_UN => "LOCK_UN",
                _ => "?",
            };
            let nb = if wait.is_some() { "" } else { "|LOCK_NB" };
            format!("{}, {op}{nb}", shown.h(handle))
        }
        Request::RecordLock {
            handle,
            owner,
            lock,
            set,
            wait,
        } => {
            let cmd = match (owner, set, wait) {
                (LockOwner::Process(_), false, _) => "F_GETLK",
                (LockOwner::Process(_), true, None) => "F_SETLK",
                (LockOwner::Process(_), true, Some(_)) => "F_SETLKW",
                (LockOwner::OpenFile, false, _) => "F_OFD_GETLK",
                (LockOwner::OpenFile, true, None) => "F_OFD_SETLK",
                (LockOwner::OpenFile, true, Some(_)) => "F_OFD_SETLKW",
            };
            let kind = match i32::from(lock.kind) {
                libc::F_RDLCK => "F_RDLCK",
                libc::F_WRLCK => "F_WRLCK",
                libc::F_UNLCK => "F_UNLCK",
                _ => "?",
            };
            format!(
                "{}, {cmd}, {{l_type={kind}, l_whence={}, l_start={}, l_len={}}}",
                shown.h(handle),
                whence(i32::from(lock.whence)),
                lock.start,
                lock.len
            )
        }
        Request::ReleaseLocks { owner, handle } => match handle {
            Some(handle) => format!("{}, release locks of pid {owner}", shown.h(handle)),
            None => format!("release locks of pid {owner}"),
        },
        Request::CancelWait { wait } => format!("cancel wait {wait}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Handle;

    fn rfd() -> RemoteFd {
        RemoteFd {
            key: 1,
            handle: Handle(9),
            path: b"/r/f".to_vec(),
            flags: libc::O_RDWR,
            is_dir: false,
        }
    }

    #[test]
    fn lock_constants_are_the_kernels() {
        assert_eq!(i32::from(FileLock::RDLCK), libc::F_RDLCK);
        assert_eq!(i32::from(FileLock::WRLCK), libc::F_WRLCK);
        assert_eq!(i32::from(FileLock::UNLCK), libc::F_UNLCK);
        assert_eq!(i32::from(FileLock::SEEK_SET), libc::SEEK_SET);
    }

    #[test]
    fn flock_struct_round_trips_in_the_kernel_layout() {
        let lock = FileLock {
            kind: FileLock::WRLCK,
            whence: 2,
            start: -5,
            len: 1 << 40,
            pid: 77,
        };
        let b = encode_flock(&lock);
        assert_eq!(b.len(), size_of::<libc::flock>());
        assert_eq!(decode_flock(&b), Some(lock));
        assert_eq!(&b[0..2], &(FileLock::WRLCK).to_ne_bytes());
        assert_eq!(&b[24..28], &77i32.to_ne_bytes());
        assert_eq!(decode_flock(&b[..27]), None);
    }

    #[test]
    fn flock_plans() {
        assert_eq!(
            flock(&rfd(), libc::LOCK_EX | libc::LOCK_NB),
            Plan::forward(
                Request::Flock {
                    handle: Handle(9),
                    op: libc::LOCK_EX,
                    wait: None
                },
                Then::Zero
            )
        );
        assert!(matches!(
            flock(&rfd(), libc::LOCK_SH),
            Plan::Remote {
                operation: crate::syscall::operation::Operation::File(Request::Flock {
                    wait: Some(_),
                    ..
                }),
                wait: crate::syscall::operation::Waiting::Asleep,
                ..
            }
        ));
        // An unlock never waits.
        assert!(matches!(flock(&rfd(), libc::LOCK_UN), Plan::Forward { .. }));
        assert_eq!(flock(&rfd(), 0), Plan::fail(Errno::EINVAL));
        assert_eq!(
            flock(&rfd(), libc::LOCK_SH | libc::LOCK_EX),
            Plan::fail(Errno::EINVAL)
        );
    }

    #[test]
    fn getlk_of_no_conflict_writes_only_the_type() {
        let free = FileLock {
            kind: FileLock::UNLCK,
            whence: 0,
            start: 3,
            len: 4,
            pid: 0,
        };
        assert_eq!(getlk_writes(100, &free), vec![(100, vec![2, 0])]);
        let held = FileLock {
            kind: FileLock::RDLCK,
            ..free
        };
        assert_eq!(getlk_writes(100, &held)[0].1.len(), FLOCK_SIZE);
    }
}
