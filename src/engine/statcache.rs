//! Answers prefetched with a directory listing, each usable once within a
//! TTL, dropped at once when rscq changes the directory they describe.
//!
//! With a [`Mirror`] (the fast path's shared region) every entry is also
//! offered to the program, which may give an answer itself; each change to
//! an entry is told to the mirror as it happens (so before the call that
//! made it goes on), and before the cache answers from an entry it takes
//! the entry back and learns which answers the program already gave.
//!
//! Pure: time comes in as `now`; must not decide what to prefetch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::proto::{
    DirEntry, EntryMeta, Handle, PREFETCHED_XATTRS, RemotePath, Reply, Request, Response, Stat,
    XattrTarget,
};

#[derive(Debug)]
struct Entry {
    fetched: Instant,
    lstat: Option<Result<Stat, Errno>>,
    is_link: bool,
    link: Option<Vec<u8>>,
    xattrs: Vec<Option<Result<Vec<u8>, Errno>>>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.lstat.is_none() && self.link.is_none() && self.xattrs.iter().all(Option::is_none)
    }
}

/// Prefetched answers by remote path.
#[derive(Debug)]
pub struct StatCache {
    ttl: Duration,
    entries: HashMap<Vec<u8>, Entry>,
    hits: u64,
    mirror: Option<Box<dyn Mirror>>,
}

/// The answers of one entry, as offered to a [`Mirror`].
#[derive(Debug, Clone, Copy)]
pub struct EntryAnswers<'a> {
    /// After this the entry answers nothing (its fetch time plus the TTL).
    pub expires: Instant,
    /// The `lstat` answer, unless given already.
    pub lstat: Option<&'a Result<Stat, Errno>>,
    pub is_link: bool,
    /// The symlink's target, unless given already.
    pub link: Option<&'a [u8]>,
    /// Each of [`PREFETCHED_XATTRS`], unless given already.
    pub xattrs: &'a [Option<Result<Vec<u8>, Errno>>],
}

/// Which of an entry's one-use answers the program gave itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Taken {
    pub lstat: bool,
    pub link: bool,
    pub xattrs: [bool; PREFETCHED_XATTRS.len()],
}

/// Somewhere the cache's entries are also offered to the program itself,
/// by remote path, with the same TTL and one use each.
pub trait Mirror: std::fmt::Debug + Send {
    /// Offers `answers` for `path`, replacing what was offered for it.
    fn offer(&mut self, path: &[u8], answers: &EntryAnswers<'_>);
    /// Takes `path`'s answers back; says which the program gave meanwhile.
    fn withdraw(&mut self, path: &[u8]) -> Taken;
    /// Takes every answer back.
    fn withdraw_all(&mut self);
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    if p.last() != Some(&b'/') {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// The directory of a listing as its entries' paths start: without its
/// empty and `.` components, which a directory that was opened and listed
/// has only as names of itself (`ls` in a remote cwd lists `/m/d/.`,
/// while it asks for `/m/d/name`). A `..` stays: through a symlink it is
/// not the lexical parent.
fn listed_dir(dir: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len());
    for c in dir
        .split(|&b| b == b'/')
        .filter(|c| !matches!(*c, b"" | b"."))
    {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// An absolute path with no empty, `.` or `..` component: its text names
/// its directory.
fn is_plain(path: &[u8]) -> bool {
    path == b"/"
        || path.strip_prefix(b"/").is_some_and(|rest| {
            rest.split(|&b| b == b'/')
                .all(|c| !matches!(c, b"" | b"." | b".."))
        })
}

fn parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => &path[..i],
        None => b"",
    }
}

impl StatCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
            hits: 0,
            mirror: None,
        }
    }

    /// Offers every entry from now on to `mirror` as well.
    pub fn set_mirror(&mut self, mirror: Box<dyn Mirror>) {
        self.mirror = Some(mirror);
    }

    /// Tells the mirror what `path`'s entry now holds (or that it is gone).
    fn mirror_entry(&mut self, path: &[u8]) {
        let Some(mirror) = self.mirror.as_mut() else {
            return;
        };
        match self.entries.get(path) {
            Some(e) => mirror.offer(
                path,
                &EntryAnswers {
                    expires: e.fetched.checked_add(self.ttl).unwrap_or(e.fetched),
                    lstat: e.lstat.as_ref(),
                    is_link: e.is_link,
                    link: e.link.as_deref(),
                    xattrs: &e.xattrs,
                },
            ),
            None => {
                mirror.withdraw(path);
            }
        }
    }

    /// Takes `path`'s entry back from the mirror and drops from it what
    /// the program already used there.
    fn take_back(&mut self, path: &[u8]) {
        let (Some(mirror), Some(entry)) = (self.mirror.as_mut(), self.entries.get_mut(path)) else {
            return;
        };
        let taken = mirror.withdraw(path);
        if taken.lstat {
            entry.lstat = None;
        }
        if taken.link {
            entry.link = None;
        }
        for (slot, used) in entry.xattrs.iter_mut().zip(taken.xattrs) {
            if used {
                *slot = None;
            }
        }
    }

    /// How many calls were answered from the cache.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every entry.
    pub fn clear(&mut self) {
        self.entries.clear();
        if let Some(mirror) = self.mirror.as_mut() {
            mirror.withdraw_all();
        }
    }

    /// Stores what a listing of `dir` brought.
    pub fn insert_listing(
        &mut self,
        now: Instant,
        dir: &RemotePath,
        listing: &[(DirEntry, EntryMeta)],
    ) {
        let dir = listed_dir(&dir.0);
        for (entry, meta) in listing {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let is_link = meta
                .lstat
                .as_ref()
                .is_ok_and(|s| s.mode & libc::S_IFMT == libc::S_IFLNK);
            let path = join(&dir, &entry.name);
            self.entries.insert(
                path.clone(),
                Entry {
                    fetched: now,
                    lstat: Some(meta.lstat),
                    is_link,
                    link: meta.link.clone(),
                    xattrs: meta.xattrs.iter().cloned().map(Some).collect(),
                },
            );
            self.mirror_entry(&path);
        }
    }

    /// Stores `stat` as `path`'s answer, known not to be a symlink's (the
    /// fd of a directory opened with `O_NOFOLLOW`), for the `stat` or
    /// `lstat` of the path that usually follows such an open.
    pub fn insert_stat(&mut self, now: Instant, path: &RemotePath, stat: &Stat) {
        if stat.mode & libc::S_IFMT == libc::S_IFLNK || !is_plain(&path.0) {
            return;
        }
        // What the mirror offered for the path before is replaced whole.
        self.take_back(&path.0);
        self.entries.insert(
            path.0.clone(),
            Entry {
                fetched: now,
                lstat: Some(Ok(*stat)),
                is_link: false,
                link: None,
                xattrs: Vec::new(),
            },
        );
        self.mirror_entry(&path.0);
    }

    /// Stores the xattrs a `stat` of `path` brought. A symlink's are left
    /// out: whether they describe the link or its target depends on the
    /// call.
    pub fn insert_xattrs(
        &mut self,
        now: Instant,
        path: &RemotePath,
        stat: &Stat,
        xattrs: Vec<Result<Vec<u8>, Errno>>,
    ) {
        if stat.mode & libc::S_IFMT == libc::S_IFLNK {
            return;
        }
        self.entries.insert(
            path.0.clone(),
            Entry {
                fetched: now,
                lstat: None,
                is_link: false,
                link: None,
                xattrs: xattrs.into_iter().map(Some).collect(),
            },
        );
        self.mirror_entry(&path.0);
    }

    /// The prefetched answer to `req`, if there is a fresh, unused one. It
    /// is used up by this call.
    pub fn answer(&mut self, now: Instant, req: &Request) -> Option<Response> {
        let path = match req {
            Request::Stat { path, .. }
            | Request::Readlink { path }
            | Request::Access { path, .. } => path,
            Request::GetXattr {
                target: XattrTarget::Path { path, .. },
                ..
            } => path,
            _ => return None,
        };
        if !self.entries.contains_key(&path.0) {
            return None;
        }
        self.take_back(&path.0);
        let answer = self.answer_from_entry(now, path, req);
        if self.entries.get(&path.0).is_some_and(Entry::is_empty) {
            self.entries.remove(&path.0);
        }
        self.mirror_entry(&path.0);
        answer
    }

    /// [`StatCache::answer`] from `path`'s entry, once the program's own
    /// uses of it are known.
    fn answer_from_entry(
        &mut self,
        now: Instant,
        path: &RemotePath,
        req: &Request,
    ) -> Option<Response> {
        let entry = self.entries.get_mut(&path.0)?;
        if now.saturating_duration_since(entry.fetched) > self.ttl {
            self.entries.remove(&path.0);
            return None;
        }
        let answer = match req {
            // `stat` of a non-link is its `lstat`; of a link it is not.
            Request::Stat { follow, .. } if !*follow || !entry.is_link => {
                entry.lstat.take().map(|r| r.map(Reply::Stat))
            }
            // Existence (`F_OK`) is what the listing proves; permission
            // checks need the server's credentials, so they go there. The
            // stat answer stays for the `stat` that usually follows.
            Request::Access { mode, flags, .. }
                if *mode == libc::F_OK
                    && (!entry.is_link || flags & libc::AT_SYMLINK_NOFOLLOW != 0) =>
            {
                entry
                    .lstat
                    .as_ref()
                    .map(|r| r.as_ref().map(|_| Reply::Done).map_err(|e| *e))
            }
            Request::Readlink { .. } => {
                if entry.is_link {
                    entry.link.take().map(|l| Ok(Reply::Data(l)))
                } else if entry.lstat.as_ref().is_some_and(|r| r.is_ok()) {
                    Some(Err(Errno::EINVAL))
                } else {
                    None
                }
            }
            Request::GetXattr {
                target: XattrTarget::Path { follow, .. },
                name,
                size,
            } if !*follow || !entry.is_link => {
                let i = PREFETCHED_XATTRS
                    .iter()
                    .position(|n| *n == name.as_slice())?;
                let value = entry.xattrs.get_mut(i)?.take()?;
                Some(value.and_then(|v| {
                    let len = u64::try_from(v.len()).unwrap_or(u64::MAX);
                    if *size == 0 {
                        Ok(Reply::Count(len))
                    } else if len > u64::from(*size) {
                        Err(Errno::ERANGE)
                    } else {
                        Ok(Reply::Data(v))
                    }
                }))
            }
            _ => None,
        };
        if entry.is_empty() {
            self.entries.remove(&path.0);
        }
        if answer.is_some() {
            self.hits += 1;
        }
        answer
    }

    /// Whether a listed non-directory has more than one name.
    fn holds_hard_links(&self) -> bool {
        self.entries.values().any(|e| {
            e.lstat.as_ref().is_some_and(|r| {
                r.as_ref()
                    .is_ok_and(|s| s.nlink > 1 && s.mode & libc::S_IFMT != libc::S_IFDIR)
            })
        })
    }

    /// Drops what `req` may make stale: the entries of every directory it
    /// changes. `path_of` names the file behind a handle.
    pub fn invalidate_for(
        &mut self,
        req: &Request,
        path_of: impl Fn(Handle) -> Option<RemotePath>,
    ) {
        if self.entries.is_empty() {
            return;
        }
        // A read-only open changes nothing; a change whose files are not
        // all known by name (a handle of unknown path, a file given a name
        // through its handle) may have made any entry stale.
        if !req.changes_files() {
            return;
        }
        let Some(touched) = super::changed::paths_changed_by(req, path_of) else {
            self.clear();
            return;
        };
        // A path the server resolves with `.`, `..` or a trailing slash in
        // it names what only the server knows; and a file with several
        // names may be listed under another one, whose stat (nlink, mode,
        // times) the change makes stale too: forget everything.
        let relinks = matches!(
            req,
            Request::Link { .. }
                | Request::LinkHandle { .. }
                | Request::Unlink { .. }
                | Request::Rename { .. }
        );
        if relinks || touched.iter().any(|p| !is_plain(p)) || self.holds_hard_links() {
            self.clear();
            return;
        }
        let mut gone = Vec::new();
        for path in touched {
            let dir = parent(&path).to_vec();
            self.entries.retain(|p, _| {
                let in_dir = parent(p) == dir.as_slice();
                let under = p.starts_with(&path) && p.get(path.len()) == Some(&b'/');
                let stale = in_dir || *p == path || under;
                if stale {
                    gone.push(p.clone());
                }
                !stale
            });
        }
        if let Some(mirror) = self.mirror.as_mut() {
            for path in gone {
                mirror.withdraw(&path);
            }
        }
    }
}
