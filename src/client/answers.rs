//! The fast path's answers region on the client side: one shared memory
//! region per run ([`crate::fastpath::shm`]), into which every remote's
//! statcache offers its entries under the local path the program names
//! them by, laid out exactly as the tracer would write them.
//!
//! Must not decide what is cached or for how long (the statcache does):
//! it translates remote paths, times and answers, and writes.

use std::collections::HashSet;
use std::ffi::OsString;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::engine::{EntryAnswers, Mirror, Taken};
use crate::fastpath::shm::{self, Offer, StatAnswer, Table};
use crate::proto::RemotePath;
use crate::sys::shm::{SharedWords, monotonic_ns};
use crate::syscall::layout;
use crate::syscall::paths::MountTable;

/// The run's answers region, shared by every engine.
#[derive(Debug, Clone)]
pub(super) struct AnswersRegion {
    table: Arc<Mutex<Table<SharedWords>>>,
    path: String,
}

impl AnswersRegion {
    /// A fresh, empty region; `None` (said at debug level) when it cannot
    /// be made: the run then goes without it.
    pub(super) fn create() -> Option<Self> {
        let memory = match SharedWords::create("rscq-answers", shm::REGION_BYTES) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%e, "cannot make the answers region; cached answers stop");
                return None;
            }
        };
        let path = memory.proc_path();
        let table = Table::new(memory)?;
        Some(Self {
            table: Arc::new(Mutex::new(table)),
            path,
        })
    }

    /// The environment entry that tells the library where it is.
    pub(super) fn env(&self) -> (OsString, OsString) {
        (shm::ANSWERS_VAR.into(), self.path.clone().into())
    }

    /// How many calls the library answered from it.
    pub(super) fn answered(&self) -> u64 {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answered()
    }

    /// The mirror remote `remote`'s statcache offers its entries through.
    pub(super) fn mirror_for(&self, mounts: &MountTable, remote: usize) -> Box<dyn Mirror> {
        let own = if mounts.several_remotes() {
            mounts.only_on(remote)
        } else {
            mounts.clone()
        };
        // Read in this order, the clock's value is at most the instant's:
        // expiry times come out early, never late.
        let clock_ns = monotonic_ns();
        let clock_at = Instant::now();
        Box::new(RegionMirror {
            table: self.table.clone(),
            mounts: mounts.clone(),
            own,
            remote,
            clock: (clock_at, clock_ns),
            offered: HashSet::new(),
        })
    }
}

/// One remote's statcache's view of the region.
#[derive(Debug)]
struct RegionMirror {
    table: Arc<Mutex<Table<SharedWords>>>,
    /// Every mount of the run: a local path is offered only if the planner
    /// would send it to this remote under this remote path.
    mounts: MountTable,
    /// This remote's own mounts, which spell its paths and absolute
    /// symlink targets locally (as the tracer's reply does).
    own: MountTable,
    remote: usize,
    /// An instant and the `CLOCK_MONOTONIC` nanoseconds it was.
    clock: (Instant, u64),
    /// The local paths this mirror offered (several remotes share the
    /// region; each takes back only its own).
    offered: HashSet<Vec<u8>>,
}

/// An absolute path with no empty, `.` or `..` component and no trailing
/// slash: the library offers only such spellings.
fn is_plain(path: &[u8]) -> bool {
    path.len() > 1
        && path.strip_prefix(b"/").is_some_and(|rest| {
            rest.split(|&b| b == b'/')
                .all(|c| !matches!(c, b"" | b"." | b".."))
        })
}

fn errno16(e: crate::errno::Errno) -> Option<u16> {
    u16::try_from(e.0).ok().filter(|&v| v > 0)
}

impl RegionMirror {
    fn ns(&self, t: Instant) -> u64 {
        let (at, ns) = self.clock;
        match t.checked_duration_since(at) {
            Some(d) => ns.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
            None => ns.saturating_sub(u64::try_from((at - t).as_nanos()).unwrap_or(u64::MAX)),
        }
    }

    /// The plain local path the program reaches remote `path` by, through
    /// this remote's mounts, if the planner would send it back here.
    fn local_path(&self, path: &[u8]) -> Option<Vec<u8>> {
        if !is_plain(path) {
            return None;
        }
        let local = self.own.to_local(path)?;
        let back = self.mounts.locate_on(b"/", &local)?;
        (is_plain(&local) && back == (RemotePath(path.to_vec()), self.remote)).then_some(local)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table<SharedWords>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Mirror for RegionMirror {
    fn offer(&mut self, path: &[u8], answers: &EntryAnswers<'_>) {
        let Some(local) = self.local_path(path) else {
            return;
        };
        let encoded = match answers.lstat {
            Some(Ok(st)) => Some((layout::encode_stat(st), layout::encode_statx(st))),
            _ => None,
        };
        let stat = match (answers.lstat, &encoded) {
            (Some(Ok(_)), Some((stat, statx))) => Some(StatAnswer::Bytes {
                stat: stat.as_slice(),
                statx: statx.as_slice(),
            }),
            (Some(Err(e)), _) => errno16(*e).map(StatAnswer::Errno),
            _ => None,
        };
        // A target spelled by the server's absolute path is spelled as the
        // program sees it, as the tracer's reply does.
        let link = answers.link.map(|t| match t.first() {
            Some(b'/') => self.own.to_local(t).unwrap_or_else(|| t.to_vec()),
            _ => t.to_vec(),
        });
        let mut xattr_errnos = [None; shm::XATTRS];
        for (slot, answer) in xattr_errnos.iter_mut().zip(answers.xattrs) {
            if let Some(Err(e)) = answer {
                *slot = errno16(*e);
            }
        }
        let offer = Offer {
            expires_ns: self.ns(answers.expires),
            path: &local,
            stat,
            is_link: answers.is_link,
            link: link.as_deref(),
            xattr_errnos,
        };
        let nothing = offer.stat.is_none()
            && offer.link.is_none()
            && offer.xattr_errnos.iter().all(Option::is_none);
        let now_ns = monotonic_ns();
        let mut table = self.table();
        let placed = !nothing && table.offer(now_ns, &offer);
        if !placed {
            table.withdraw(&local);
        }
        drop(table);
        if placed {
            self.offered.insert(local);
        } else {
            self.offered.remove(&local);
        }
    }

    fn withdraw(&mut self, path: &[u8]) -> Taken {
        let Some(local) = self.local_path(path) else {
            return Taken::default();
        };
        if !self.offered.remove(&local) {
            return Taken::default();
        }
        let used = self.table().withdraw(&local);
        let mut taken = Taken {
            lstat: used & shm::USED_STAT != 0,
            link: used & shm::USED_LINK != 0,
            xattrs: [false; shm::XATTRS],
        };
        for (i, t) in taken.xattrs.iter_mut().enumerate() {
            *t = used & (shm::USED_XATTR << i) != 0;
        }
        taken
    }

    fn withdraw_all(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        for local in self.offered.drain() {
            table.withdraw(&local);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Stat;
    use crate::syscall::paths::MountPoint;

    fn mounts() -> MountTable {
        MountTable::placed(vec![
            (
                MountPoint {
                    local: b"/r".to_vec(),
                    remote: b"/srv".to_vec(),
                },
                0,
            ),
            (
                MountPoint {
                    local: b"/r/other".to_vec(),
                    remote: b"/srv/other".to_vec(),
                },
                1,
            ),
        ])
    }

    fn answers(lstat: &Result<Stat, crate::errno::Errno>) -> EntryAnswers<'_> {
        EntryAnswers {
            expires: Instant::now() + std::time::Duration::from_secs(5),
            lstat: Some(lstat),
            is_link: false,
            link: None,
            xattrs: &[],
        }
    }

    #[test]
    fn entries_are_offered_under_the_local_path_the_planner_maps_back() {
        let region = AnswersRegion::create().expect("memfd");
        let mut m = region.mirror_for(&mounts(), 0);
        let st = Ok(Stat {
            size: 7,
            mode: libc::S_IFREG | 0o644,
            ..Stat::default()
        });
        m.offer(b"/srv/a", &answers(&st));
        // Shadowed by a nested mount of another remote: not offered.
        m.offer(b"/srv/other/b", &answers(&st));
        m.offer(b"/srv/./c", &answers(&st));
        let table = region.table.lock().unwrap();
        let words = table.memory().words();
        let found = shm::lookup(words, b"/r/a").expect("offered");
        assert_eq!(found.stat, layout::encode_stat(st.as_ref().unwrap()));
        assert_eq!(found.statx, layout::encode_statx(st.as_ref().unwrap()));
        assert!(shm::lookup(words, b"/r/other/b").is_none());
        assert_eq!(table.len(), 1);
        drop(table);
        // The program's use comes back to the engine.
        let found = {
            let table = region.table.lock().unwrap();
            shm::lookup(table.memory().words(), b"/r/a").unwrap()
        };
        {
            let table = region.table.lock().unwrap();
            assert!(shm::claim(table.memory().words(), &found, shm::USED_STAT));
        }
        assert!(m.withdraw(b"/srv/a").lstat);
        assert_eq!(m.withdraw(b"/srv/a"), Taken::default());
    }

    #[test]
    fn each_remote_takes_back_only_its_own() {
        let region = AnswersRegion::create().expect("memfd");
        let mut zero = region.mirror_for(&mounts(), 0);
        let mut one = region.mirror_for(&mounts(), 1);
        let st = Ok(Stat::default());
        zero.offer(b"/srv/a", &answers(&st));
        one.offer(b"/srv/other/b", &answers(&st));
        one.withdraw_all();
        let table = region.table.lock().unwrap();
        assert!(shm::lookup(table.memory().words(), b"/r/a").is_some());
        assert!(shm::lookup(table.memory().words(), b"/r/other/b").is_none());
    }
}
