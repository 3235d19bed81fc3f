//! `mmap(2)` of a remote file.
//!
//! A private mapping (`MAP_PRIVATE`, any protection; also a read-only
//! `MAP_SHARED`) becomes an anonymous private mapping of the same size
//! that rscq fills with the file's bytes once the kernel made it: the
//! program's copy-on-write changes stay its own, as with a file mapping,
//! and later changes to the file are not seen (the kernel would show them
//! through a shared mapping; nothing can write through a read-only one).
//! A writable shared mapping is refused (ENODEV).
//!
//! Must not call ptrace: the tracer rewrites the call and fills the pages.

use super::plan::{Plan, RemoteFd};
use crate::errno::Errno;

/// The size of a page, which mapping offsets must be a multiple of.
const PAGE: u64 = 4096;

/// `MAP_TYPE`: the bits that say shared or private.
const MAP_TYPE: i32 = 0x0f;

/// Plans `mmap(addr, len, prot, flags, fd, offset)` of the remote file
/// `rfd` (arguments `a`).
pub fn plan(rfd: &RemoteFd, a: [u64; 6]) -> Plan {
    let len = a[1];
    let prot = low_i32(a[2]);
    let flags = low_i32(a[3]);
    let offset = a[5];
    if rfd.is_dir {
        // A directory has no `mmap` operation.
        return Plan::fail(Errno::ENODEV);
    }
    if len == 0 || !offset.is_multiple_of(PAGE) {
        return Plan::fail(Errno::EINVAL);
    }
    let Ok(offset) = i64::try_from(offset) else {
        return Plan::fail(Errno::EOVERFLOW);
    };
    let access = rfd.flags & libc::O_ACCMODE;
    if access == libc::O_WRONLY || rfd.flags & libc::O_PATH != 0 {
        return Plan::fail(if rfd.flags & libc::O_PATH != 0 {
            Errno::EBADF
        } else {
            Errno(libc::EACCES)
        });
    }
    let shared = match flags & MAP_TYPE {
        libc::MAP_PRIVATE => false,
        libc::MAP_SHARED | libc::MAP_SHARED_VALIDATE => true,
        _ => return Plan::fail(Errno::EINVAL),
    };
    if shared && prot & libc::PROT_WRITE != 0 {
        if access != libc::O_RDWR {
            return Plan::fail(Errno(libc::EACCES));
        }
        return Plan::fail(Errno::ENODEV);
    }
    let private = (flags & !MAP_TYPE & !libc::MAP_SYNC) | libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    Plan::MapRemote {
        handle: rfd.handle,
        offset,
        len,
        flags: u64::from(private.cast_unsigned()),
    }
}

/// The arguments that turn the program's `mmap` into an anonymous private
/// mapping with `flags`: no file (`-1`), offset 0.
pub fn anonymous_args(flags: u64) -> [Option<u64>; 6] {
    [None, None, None, Some(flags), Some(u64::MAX), Some(0)]
}

fn low_i32(v: u64) -> i32 {
    u32::try_from(v & 0xffff_ffff)
        .unwrap_or(u32::MAX)
        .cast_signed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Handle;

    fn rfd(flags: i32) -> RemoteFd {
        RemoteFd {
            key: 1,
            handle: Handle(4),
            path: b"/r/f".to_vec(),
            flags,
            is_dir: false,
        }
    }

    fn args(len: u64, prot: i32, flags: i32, offset: u64) -> [u64; 6] {
        [
            0,
            len,
            u64::from(prot.cast_unsigned()),
            u64::from(flags.cast_unsigned()),
            3,
            offset,
        ]
    }

    #[test]
    fn a_private_mapping_becomes_an_anonymous_one_to_fill() {
        let plan = plan(
            &rfd(libc::O_RDONLY),
            args(
                8192,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_POPULATE,
                4096,
            ),
        );
        let want = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE;
        assert_eq!(
            plan,
            Plan::MapRemote {
                handle: Handle(4),
                offset: 4096,
                len: 8192,
                flags: u64::from(want.cast_unsigned()),
            }
        );
        // A read-only shared mapping too.
        assert!(matches!(
            super::plan(
                &rfd(libc::O_RDONLY),
                args(1, libc::PROT_READ, libc::MAP_SHARED, 0)
            ),
            Plan::MapRemote { .. }
        ));
    }

    #[test]
    fn the_kernels_checks_come_first() {
        let e = |e: i32| Plan::fail(Errno(e));
        let rw = libc::PROT_READ | libc::PROT_WRITE;
        assert_eq!(
            plan(
                &rfd(libc::O_RDONLY),
                args(0, libc::PROT_READ, libc::MAP_PRIVATE, 0)
            ),
            e(libc::EINVAL)
        );
        assert_eq!(
            plan(
                &rfd(libc::O_RDONLY),
                args(10, libc::PROT_READ, libc::MAP_PRIVATE, 100)
            ),
            e(libc::EINVAL)
        );
        assert_eq!(
            plan(
                &rfd(libc::O_WRONLY),
                args(10, libc::PROT_READ, libc::MAP_PRIVATE, 0)
            ),
            e(libc::EACCES)
        );
        assert_eq!(
            plan(&rfd(libc::O_RDONLY), args(10, rw, libc::MAP_SHARED, 0)),
            e(libc::EACCES)
        );
        // Not yet: a writable shared mapping.
        assert_eq!(
            plan(&rfd(libc::O_RDWR), args(10, rw, libc::MAP_SHARED, 0)),
            e(libc::ENODEV)
        );
        let dir = RemoteFd {
            is_dir: true,
            ..rfd(libc::O_RDONLY)
        };
        assert_eq!(
            plan(&dir, args(10, libc::PROT_READ, libc::MAP_PRIVATE, 0)),
            e(libc::ENODEV)
        );
    }
}
