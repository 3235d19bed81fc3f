//! Shared mappings of remote files: the pure half (no I/O, plain values).
//!
//! A `MAP_SHARED` mapping of a remote file is a native shared mapping of a
//! local *shadow* file: one per remote file (by the server's device and
//! inode) and per run, in rscq's private directory, filled from the server
//! when the first process maps the file. Every process of the run that
//! maps it maps the same shadow, so they share the kernel's page cache:
//! one coherent memory, as a local file gives (sqlite's WAL `-shm`). A
//! `MAP_PRIVATE` mapping is the kernel's copy-on-write mapping of the same
//! shadow, so a truncation pulled into the shadow raises SIGBUS in it too.
//!
//! Why a shadow file and not pages rscq copies in and out: the kernel then
//! does all the sharing (fork, several mappings, `mprotect`, `MAP_FIXED`
//! over part of one) and no write through a mapping ever stops the
//! program; rscq only compares the shadow with what the server holds at
//! the points listed below.
//!
//! [`Baseline`] is what rscq last knows the server holds. **Push**: the
//! bytes where the shadow differs from it are written to the server (then
//! they are the baseline). **Pull**: the bytes where the server differs
//! from it (a write or truncate the program made through an fd, or
//! another client's change seen at a new mapping) are written into the
//! shadow, leaving alone what the program changed through its mappings
//! and not pushed yet (a three-way merge).
//!
//! When ([`sync_point`]): a push before every call on an fd of the file
//! (read, write, fstat, fsync, lock, close ...), so that the server and
//! every fd of the run see what the mappings wrote; a pull after each call
//! that changed the file through an fd (write, pwrite, ftruncate,
//! fallocate, a copy into it), so the mappings see it. The tracer adds
//! pushes at `msync`, `munmap`, each process's exit and the end of the run.

use crate::proto::{Handle, Request};

/// Unchanged bytes shorter than this between two changed runs are sent
/// with them: one write instead of two.
const PUSH_GAP: usize = 64;

/// What a block compare skips at a time.
const BLOCK: usize = 4096;

/// Byte runs `(offset, len)` where `new` differs from `old` (bytes of
/// `new` past `old`'s end count as changed), in order; runs closer than
/// `gap` unchanged bytes are joined.
pub fn changed_runs(old: &[u8], new: &[u8], gap: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut add = |start: usize, end: usize| match runs.last_mut() {
        Some((s, l)) if start <= *s + *l + gap => *l = end - *s,
        _ => runs.push((start, end - start)),
    };
    let common = old.len().min(new.len());
    let mut block = 0;
    while block < common {
        let end = (block + BLOCK).min(common);
        if old[block..end] != new[block..end] {
            let mut i = block;
            while i < end {
                if old[i] == new[i] {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < end && old[i] != new[i] {
                    i += 1;
                }
                add(start, i);
            }
        }
        block = end;
    }
    if new.len() > common {
        add(common, new.len());
    }
    runs
}

/// Writes: `(offset, bytes)`.
pub type Writes = Vec<(u64, Vec<u8>)>;

fn writes_of(runs: &[(usize, usize)], from: &[u8]) -> Writes {
    runs.iter()
        .map(|&(at, len)| (at as u64, from[at..at + len].to_vec()))
        .collect()
}

/// What a pull does to the shadow.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pull {
    /// The shadow's new length, if it changes.
    pub len: Option<u64>,
    /// Bytes to write into the shadow, after the length is set.
    pub writes: Writes,
}

/// The content rscq last knows the server holds for one shadowed file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Baseline {
    synced: Vec<u8>,
}

impl Baseline {
    pub fn len(&self) -> u64 {
        self.synced.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.synced.is_empty()
    }

    /// A baseline of `synced`, what the server is known to hold: a
    /// read-only shadow's own bytes (nothing can write it but a pull).
    pub fn of(synced: Vec<u8>) -> Self {
        Self { synced }
    }

    /// The writes that bring the server to `current` (the shadow's bytes
    /// now). The baseline moves only once they are on the server
    /// ([`Self::pushed`]): a failed push is tried again at the next point.
    pub fn push(&self, current: &[u8]) -> Writes {
        writes_of(&changed_runs(&self.synced, current, PUSH_GAP), current)
    }

    /// The server now holds `current`.
    pub fn pushed(&mut self, current: &[u8]) {
        current.clone_into(&mut self.synced);
    }

    /// The server holds `server` now: what to change in the shadow. Only
    /// the bytes the server changed since the baseline are written (byte
    /// runs, never joined), so changes the program made through its
    /// mappings elsewhere, not pushed yet, stay.
    pub fn pull(&mut self, server: &[u8]) -> Pull {
        let len = (server.len() != self.synced.len()).then_some(server.len() as u64);
        let mut old = std::mem::take(&mut self.synced);
        // Past the old end the shadow is zeros after a growth: bytes the
        // server holds there that are zero need no write.
        old.resize(server.len(), 0);
        let writes = writes_of(&changed_runs(&old, server, 0), server);
        server.clone_into(&mut self.synced);
        Pull { len, writes }
    }
}

/// What a request on an fd of a shadowed file needs around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPoint {
    /// Push the shadow first (the call must see what mappings wrote).
    Before,
    /// Push first, and pull once the call is done: it changes the file.
    BeforeAndAfter,
}

/// The handles of a request that concern a shadowed file, each with what
/// it needs (see the module's doc). Any call on an fd of the file is a
/// push point, including `close` (as `FlushWrites` or `ReleaseLocks`),
/// `fsync` and locks.
pub fn sync_point(req: &Request) -> Vec<(Handle, SyncPoint)> {
    use SyncPoint::{Before, BeforeAndAfter};
    match *req {
        Request::Write { handle, .. }
        | Request::Pwrite { handle, .. }
        | Request::Ftruncate { handle, .. }
        | Request::Fallocate { handle, .. } => vec![(handle, BeforeAndAfter)],
        Request::CopyRange { from, to, .. } => vec![(from, Before), (to, BeforeAndAfter)],
        Request::Read { handle, .. }
        | Request::Pread { handle, .. }
        | Request::Lseek { handle, .. }
        | Request::Fsync { handle, .. }
        | Request::Fstat { handle }
        | Request::FlushWrites { handle }
        | Request::Close { handle }
        | Request::Flock { handle, .. }
        | Request::RecordLock { handle, .. }
        | Request::ReleaseLocks {
            handle: Some(handle),
            ..
        } => vec![(handle, Before)],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_are_exact_and_joined_across_small_gaps() {
        let old = vec![0u8; 10_000];
        let mut new = old.clone();
        new[5] = 1;
        new[6] = 1;
        new[8000] = 2;
        assert_eq!(changed_runs(&old, &new, 0), vec![(5, 2), (8000, 1)]);
        new[40] = 3;
        assert_eq!(changed_runs(&old, &new, 64), vec![(5, 36), (8000, 1)]);
        assert!(changed_runs(&old, &old, 64).is_empty());
        // Growth counts as changed, shrinking writes nothing.
        assert_eq!(changed_runs(b"ab", b"abcd", 0), vec![(2, 2)]);
        assert!(changed_runs(b"abcd", b"ab", 0).is_empty());
        // A change on a block boundary.
        let mut edge = old.clone();
        edge[4095] = 9;
        edge[4096] = 9;
        assert_eq!(changed_runs(&old, &edge, 0), vec![(4095, 2)]);
    }

    #[test]
    fn a_push_sends_what_the_mappings_changed_and_moves_only_when_done() {
        let mut b = Baseline::default();
        assert!(b.is_empty());
        let _ = b.pull(b"hello world");
        let mut shadow = b"hello world".to_vec();
        assert!(b.push(&shadow).is_empty());
        shadow[0] = b'J';
        let writes = b.push(&shadow);
        assert_eq!(writes, vec![(0, b"J".to_vec())]);
        // Not pushed (the write failed): still there next time.
        assert_eq!(b.push(&shadow), writes);
        b.pushed(&shadow);
        assert!(b.push(&shadow).is_empty());
    }

    #[test]
    fn a_pull_keeps_changes_not_pushed_yet() {
        let mut b = Baseline::default();
        let first = b.pull(&[0u8; 8]);
        // The shadow starts empty: it is sized, and zeros need no write.
        assert_eq!(first.len, Some(8));
        assert!(first.writes.is_empty());
        let mut shadow = vec![0u8; 8];
        shadow[1] = 7; // written through a mapping, not pushed
        // Meanwhile the server got a pwrite at 4 and grew by two bytes.
        let server = [0, 0, 0, 0, 5, 0, 0, 0, 0, 6];
        let pull = b.pull(&server);
        assert_eq!(pull.len, Some(10));
        assert_eq!(pull.writes, vec![(4, vec![5]), (9, vec![6])]);
        shadow.resize(10, 0);
        for (at, bytes) in &pull.writes {
            let at = usize::try_from(*at).unwrap_or(usize::MAX);
            shadow[at..at + bytes.len()].copy_from_slice(bytes);
        }
        assert_eq!(shadow, [0, 7, 0, 0, 5, 0, 0, 0, 0, 6]);
        // The mapping's byte is still to push, and only it.
        assert_eq!(b.push(&shadow), vec![(1, vec![7])]);
        // A truncation shrinks the shadow.
        let pull = b.pull(&server[..3]);
        assert_eq!(pull.len, Some(3));
        assert!(pull.writes.is_empty());
        assert_eq!(b.len(), 3);
    }

    #[test]
    fn a_baseline_made_of_a_read_only_shadows_bytes_pulls_what_changed() {
        // A read-only shadow keeps no copy: its own bytes are the baseline.
        let mut b = Baseline::of(b"abcdefgh".to_vec());
        assert!(b.push(b"abcdefgh").is_empty());
        let pull = b.pull(b"abXd");
        assert_eq!(pull.len, Some(4));
        assert_eq!(pull.writes, vec![(2, b"X".to_vec())]);
        // Truncated to nothing: only the length changes.
        let pull = Baseline::of(b"abcd".to_vec()).pull(b"");
        assert_eq!(pull.len, Some(0));
        assert!(pull.writes.is_empty());
    }

    #[test]
    fn every_call_on_the_file_pushes_and_changes_pull() {
        let h = Handle(3);
        let data = vec![1];
        assert_eq!(
            sync_point(&Request::Pwrite {
                handle: h,
                data: data.clone(),
                offset: 0
            }),
            vec![(h, SyncPoint::BeforeAndAfter)]
        );
        assert_eq!(
            sync_point(&Request::Ftruncate { handle: h, len: 0 }),
            vec![(h, SyncPoint::BeforeAndAfter)]
        );
        for req in [
            Request::Pread {
                handle: h,
                len: 1,
                offset: 0,
            },
            Request::Fsync {
                handle: h,
                data_only: true,
            },
            Request::FlushWrites { handle: h },
            Request::Fstat { handle: h },
            Request::ReleaseLocks {
                owner: 1,
                handle: Some(h),
            },
        ] {
            assert_eq!(sync_point(&req), vec![(h, SyncPoint::Before)], "{req:?}");
        }
        assert_eq!(
            sync_point(&Request::CopyRange {
                from: Handle(1),
                from_offset: None,
                to: h,
                to_offset: None,
                len: 1
            }),
            vec![
                (Handle(1), SyncPoint::Before),
                (h, SyncPoint::BeforeAndAfter)
            ]
        );
        assert!(sync_point(&Request::Uname).is_empty());
        assert!(
            sync_point(&Request::ReleaseLocks {
                owner: 1,
                handle: None
            })
            .is_empty()
        );
    }
}
