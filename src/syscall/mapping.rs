//! `mmap(2)` of a remote file.
//!
//! Every mapping is a native mapping of the file's *shadow*, a local file
//! that every process of the run maps (see [`crate::engine::shadow`]): the
//! tracer has the thread open the shadow, runs the program's own `mmap` on
//! that fd, and closes it again.
//!
//! A shared mapping (`MAP_SHARED`, read-only or writable) shares the
//! shadow's pages: what mappings write reaches the server at `msync`,
//! `munmap` ([`shadows_in`] finds the shadows a range maps), fsync, close
//! and exit. A private mapping (`MAP_PRIVATE`, any protection) is the
//! kernel's copy-on-write mapping of the shadow, opened read-only: the
//! program's changes stay its own, pages it did not change show the
//! file's later changes made in the run, and pages past the file's end
//! after a truncation raise SIGBUS, as with a local file.
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
    if i64::try_from(offset).is_err() {
        return Plan::fail(Errno::EOVERFLOW);
    }
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
    if shared {
        if prot & libc::PROT_WRITE != 0 && access != libc::O_RDWR {
            return Plan::fail(Errno(libc::EACCES));
        }
        // Opened as the program's fd was, so a later `mprotect` may add
        // write access exactly when the kernel would allow it.
        return Plan::map_shared(rfd.handle, access == libc::O_RDWR);
    }
    Plan::map_private(rfd.handle)
}

/// The directory, inside the run's placeholder directory, that holds the
/// shadow files of remote N (for N > 0) is this followed by N; the
/// default remote's are in the placeholder directory itself.
pub const REMOTE_SHADOW_DIR: &str = "remote-";

/// Whether `path` is a shadow file: `prefix` is the placeholder directory
/// and the shadow files' name prefix (`DIR/shadow-`), and a shadow is
/// `DIR/shadow-…` (the default remote's) or `DIR/remote-N/shadow-…`
/// (remote N's, see [`REMOTE_SHADOW_DIR`]).
fn is_shadow(path: &[u8], prefix: &[u8]) -> bool {
    if path.starts_with(prefix) {
        return true;
    }
    let Some(slash) = prefix.iter().rposition(|&b| b == b'/') else {
        return false;
    };
    let (dir, name) = prefix.split_at(slash + 1);
    let Some(rest) = path
        .strip_prefix(dir)
        .and_then(|r| r.strip_prefix(REMOTE_SHADOW_DIR.as_bytes()))
    else {
        return false;
    };
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0
        && rest[digits..]
            .strip_prefix(b"/")
            .is_some_and(|file| file.starts_with(name))
}

/// The shadow files (of every remote: see [`is_shadow`] for what
/// `prefix` is) that the mappings of `maps` (a `/proc/PID/maps`) in
/// `[addr, addr + len)` map: what an `munmap` or `msync` of that range
/// writes back. Each path once.
pub fn shadows_in(maps: &[u8], prefix: &[u8], addr: u64, len: u64) -> Vec<Vec<u8>> {
    let end = addr.saturating_add(len.max(1));
    let mut found: Vec<Vec<u8>> = Vec::new();
    for line in maps.split(|&b| b == b'\n') {
        // start-end perms offset dev inode   path
        let mut fields = line.splitn(6, |&b| b == b' ');
        let Some(range) = fields.next() else { continue };
        let path = fields.nth(4).map(|p| p.trim_ascii_start()).unwrap_or(b"");
        if !is_shadow(path, prefix) {
            continue;
        }
        let path = path.strip_suffix(b" (deleted)").unwrap_or(path);
        let mut bounds = range.split(|&b| b == b'-').map(|h| {
            std::str::from_utf8(h)
                .ok()
                .and_then(|h| u64::from_str_radix(h, 16).ok())
        });
        let (Some(Some(start)), Some(Some(stop))) = (bounds.next(), bounds.next()) else {
            continue;
        };
        if start < end && addr < stop && !found.iter().any(|p| p == path) {
            found.push(path.to_vec());
        }
    }
    found
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
    fn every_mapping_maps_the_shadow() {
        // A private one on a read-only shadow, whatever the fd's access
        // and the protection (copy-on-write never writes the file).
        for access in [libc::O_RDONLY, libc::O_RDWR] {
            let plan = plan(
                &rfd(access),
                args(
                    8192,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_POPULATE,
                    4096,
                ),
            );
            assert_eq!(plan, Plan::map_private(Handle(4)));
            assert_eq!(plan, Plan::map_shared(Handle(4), false));
        }
        // A shared mapping maps the shadow, opened as the fd was.
        assert_eq!(
            plan(
                &rfd(libc::O_RDONLY),
                args(1, libc::PROT_READ, libc::MAP_SHARED, 0)
            ),
            Plan::map_shared(Handle(4), false)
        );
        assert_eq!(
            plan(
                &rfd(libc::O_RDWR),
                args(
                    1,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED_VALIDATE,
                    0
                )
            ),
            Plan::map_shared(Handle(4), true)
        );
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
        let dir = RemoteFd {
            is_dir: true,
            ..rfd(libc::O_RDONLY)
        };
        assert_eq!(
            plan(&dir, args(10, libc::PROT_READ, libc::MAP_PRIVATE, 0)),
            e(libc::ENODEV)
        );
    }

    #[test]
    fn an_unmapped_range_names_the_shadows_it_maps() {
        let maps = b"\
55d0a000-55d0b000 r--p 00000000 08:01 123 /usr/bin/cat
7f0000000000-7f0000002000 rw-s 00000000 00:1f 77 /tmp/rscq-1-a0/shadow-1
7f0000002000-7f0000003000 rw-s 00001000 00:1f 77 /tmp/rscq-1-a0/shadow-1
7f0000003000-7f0000004000 r--s 00000000 00:1f 78 /tmp/rscq-1-a0/shadow-2 (deleted)
7f0000004000-7f0000005000 rw-p 00000000 00:00 0 
";
        let dir = b"/tmp/rscq-1-a0/shadow-";
        let one = b"/tmp/rscq-1-a0/shadow-1".to_vec();
        let two = b"/tmp/rscq-1-a0/shadow-2".to_vec();
        assert_eq!(
            shadows_in(maps, dir, 0x7f00_0000_0000, 0x5000),
            vec![one.clone(), two.clone()]
        );
        assert_eq!(shadows_in(maps, dir, 0x7f00_0000_1000, 1), vec![one]);
        assert_eq!(shadows_in(maps, dir, 0x7f00_0000_3000, 0x1000), vec![two]);
        assert!(shadows_in(maps, dir, 0x7f00_0000_4000, 0x1000).is_empty());
        assert!(shadows_in(maps, dir, 0x55d0_a000, 0x1000).is_empty());
    }

    #[test]
    fn the_shadows_of_every_remote_are_found() {
        let maps = b"\
7f0000000000-7f0000001000 rw-s 00000000 00:1f 77 /tmp/rscq-1-a0/shadow-1
7f0000001000-7f0000002000 rw-s 00000000 00:1f 79 /tmp/rscq-1-a0/remote-2/shadow-1
7f0000002000-7f0000003000 rw-s 00000000 00:1f 80 /tmp/rscq-1-a0/remote-10/shadow-3 (deleted)
7f0000003000-7f0000004000 rw-s 00000000 00:1f 81 /tmp/rscq-1-a0/remote-/shadow-1
7f0000004000-7f0000005000 rw-s 00000000 00:1f 82 /tmp/rscq-1-a0/remote-2/other-1
7f0000005000-7f0000006000 rw-s 00000000 00:1f 83 /tmp/rscq-1-a0/remote-2x/shadow-1
7f0000006000-7f0000007000 rw-s 00000000 00:1f 84 /tmp/elsewhere/remote-2/shadow-1
";
        let prefix = b"/tmp/rscq-1-a0/shadow-";
        assert_eq!(
            shadows_in(maps, prefix, 0x7f00_0000_0000, 0x7000),
            vec![
                b"/tmp/rscq-1-a0/shadow-1".to_vec(),
                b"/tmp/rscq-1-a0/remote-2/shadow-1".to_vec(),
                b"/tmp/rscq-1-a0/remote-10/shadow-3".to_vec(),
            ]
        );
        assert!(shadows_in(maps, prefix, 0x7f00_0000_3000, 0x4000).is_empty());
    }
}
