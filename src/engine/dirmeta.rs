//! Directory-granular metadata (the `dirmeta` layer): a lookup that misses
//! brings, in the same round trip, its directory's listing with every
//! entry's `lstat` and symlink target ([`Request::LookupAndList`]); the
//! next lookups of any name in that directory are answered from it, as
//! many times as asked, until the TTL has passed since it was fetched. A
//! name the complete listing lacks is ENOENT (a cached negative), and so
//! is every path below it. Any change rscq makes drops, at once, the
//! listings it may have made stale.
//!
//! Keys are the text of plain paths (absolute, no empty, `.` or `..`
//! component), and the server lists a directory only when its path goes
//! through no symlink, so a cached directory's text names it alone. A
//! change through a path that is not known to be symlink-free may be a
//! change of a cached directory under another name: it drops everything.
//!
//! Pure: time comes in as `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::proto::{
    DirListing, Handle, ListedEntry, MAX_LISTED_ENTRIES, RemotePath, Reply, Request, Response, Stat,
};

/// The most entries cached over all directories; past it, stale
/// directories go first, then all.
pub const MAX_CACHED_ENTRIES: usize = 64 * MAX_LISTED_ENTRIES;

/// What to do with a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Answered from a listing.
    Answer(Response),
    /// A miss: send it with the listing of this directory.
    Fetch(RemotePath),
    /// Send it as it is.
    Pass,
}

#[derive(Debug)]
struct Known {
    lstat: Result<Stat, Errno>,
    link: Option<Vec<u8>>,
}

impl Known {
    fn kind(&self) -> Option<u32> {
        self.lstat.as_ref().ok().map(|s| s.mode & libc::S_IFMT)
    }

    fn is_link(&self) -> bool {
        self.kind() == Some(libc::S_IFLNK)
    }
}

#[derive(Debug)]
enum Listing {
    /// Every entry, by name.
    Complete(HashMap<Vec<u8>, Known>),
    /// Too large or not listable: its lookups go to the server alone.
    Unlisted,
}

#[derive(Debug)]
struct Dir {
    fetched: Instant,
    listing: Listing,
    /// Holds a non-directory with more than one name, whose stat a change
    /// through another name makes stale.
    hard_links: bool,
}

/// Listings by directory path.
#[derive(Debug)]
pub struct DirMeta {
    ttl: Duration,
    dirs: HashMap<Vec<u8>, Dir>,
    /// Directories known to be reached through no symlink, when learned.
    real: HashMap<Vec<u8>, Instant>,
    entries: usize,
    /// Directories whose listing is on its way: other misses in them are
    /// sent alone meanwhile, not with a listing of their own.
    fetching: std::collections::HashSet<Vec<u8>>,
    /// Bumped by every change: a listing asked for before it is not kept.
    epoch: u64,
    hits: u64,
    negative_hits: u64,
}

/// An absolute path with no empty, `.` or `..` component.
fn is_plain(path: &[u8]) -> bool {
    path == b"/"
        || path.strip_prefix(b"/").is_some_and(|rest| {
            rest.split(|&b| b == b'/')
                .all(|c| !matches!(c, b"" | b"." | b".."))
        })
}

/// The directory and last name of a plain path other than `/`.
fn split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path == b"/" || !is_plain(path) {
        return None;
    }
    let i = path.iter().rposition(|&b| b == b'/')?;
    let dir: &[u8] = if i == 0 { b"/" } else { &path[..i] };
    Some((dir, &path[i + 1..]))
}

/// Whether `path` is `dir` or below it.
fn is_under(path: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return path.starts_with(b"/");
    }
    path.starts_with(dir) && matches!(path.get(dir.len()), None | Some(&b'/'))
}

fn lookup_path(req: &Request) -> Option<&RemotePath> {
    match req {
        Request::Stat { path, .. }
        | Request::StatPlus { path, .. }
        | Request::Access { path, .. }
        | Request::Readlink { path }
        | Request::Open { path, .. } => Some(path),
        _ => None,
    }
}

impl DirMeta {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            dirs: HashMap::new(),
            real: HashMap::new(),
            entries: 0,
            fetching: std::collections::HashSet::new(),
            epoch: 0,
            hits: 0,
            negative_hits: 0,
        }
    }

    /// Lookups answered from listings, and how many of them were ENOENT.
    pub fn hits(&self) -> (u64, u64) {
        (self.hits, self.negative_hits)
    }

    /// Cached directories (listed or not).
    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The epoch to give [`DirMeta::insert`] with a listing asked for now.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A listing asked for will not come (the request failed).
    pub fn fetch_failed(&mut self, dir: &RemotePath) {
        self.fetching.remove(&dir.0);
    }

    /// Forgets everything, and every listing on its way.
    pub fn clear(&mut self) {
        self.epoch += 1;
        self.dirs.clear();
        self.real.clear();
        self.entries = 0;
    }

    fn fresh(&self, now: Instant, fetched: Instant) -> bool {
        now.saturating_duration_since(fetched) <= self.ttl
    }

    fn listed(&self, now: Instant, dir: &[u8]) -> Option<&Listing> {
        self.dirs
            .get(dir)
            .filter(|d| self.fresh(now, d.fetched))
            .map(|d| &d.listing)
    }

    /// Answers `req` from a listing, or says what to send.
    pub fn lookup(&mut self, now: Instant, req: &Request) -> Lookup {
        let Some(path) = lookup_path(req) else {
            return Lookup::Pass;
        };
        if req.changes_files() {
            return Lookup::Pass;
        }
        let Some((dir, name)) = split(&path.0) else {
            return Lookup::Pass;
        };
        // The kernel refuses bad access modes and flags before it looks.
        if let Request::Access { mode, flags, .. } = req
            && (mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0
                || flags & !(libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW) != 0)
        {
            return Lookup::Pass;
        }
        let answer = match self.listed(now, dir) {
            Some(Listing::Complete(names)) => match names.get(name) {
                Some(known) => answer_known(req, known),
                None => Some(Err(Errno::ENOENT)),
            },
            Some(Listing::Unlisted) => return Lookup::Pass,
            None => match self.below_listed(now, dir) {
                Some(e) => Some(Err(e)),
                None => {
                    let dir = dir.to_vec();
                    self.remove(&dir);
                    if !self.fetching.insert(dir.clone()) {
                        return Lookup::Pass;
                    }
                    return Lookup::Fetch(RemotePath(dir));
                }
            },
        };
        match answer {
            Some(resp) => {
                self.hits += 1;
                if resp == Err(Errno::ENOENT) {
                    self.negative_hits += 1;
                }
                Lookup::Answer(resp)
            }
            None => Lookup::Pass,
        }
    }

    /// For a directory that is not listed itself: the error a listed
    /// ancestor proves for every path in it (a missing component, or one
    /// that is not a directory).
    fn below_listed(&self, now: Instant, dir: &[u8]) -> Option<Errno> {
        let mut child = dir;
        while let Some((parent, name)) = split(child) {
            match self.listed(now, parent) {
                Some(Listing::Complete(names)) => {
                    return match names.get(name).map(Known::kind) {
                        None => Some(Errno::ENOENT),
                        Some(Some(kind)) if kind != libc::S_IFDIR && kind != libc::S_IFLNK => {
                            Some(Errno::ENOTDIR)
                        }
                        Some(_) => None,
                    };
                }
                Some(Listing::Unlisted) => return None,
                None => child = parent,
            }
        }
        None
    }

    /// Stores the listing of `dir` asked for at `epoch`, unless something
    /// changed since.
    pub fn insert(&mut self, now: Instant, dir: &RemotePath, listing: DirListing, epoch: u64) {
        self.fetching.remove(&dir.0);
        if epoch != self.epoch || !is_plain(&dir.0) {
            return;
        }
        self.remove(&dir.0);
        let (listing, hard_links) = match listing {
            // More than the server ever sends: not trusted to be whole.
            DirListing::Complete(entries) if entries.len() > MAX_LISTED_ENTRIES => {
                (Listing::Unlisted, false)
            }
            DirListing::Complete(entries) => {
                let mut names = HashMap::with_capacity(entries.len());
                let mut hard_links = false;
                for ListedEntry { name, lstat, link } in
                    entries.into_iter().take(MAX_LISTED_ENTRIES)
                {
                    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
                        continue;
                    }
                    if let Ok(st) = &lstat {
                        hard_links |= st.nlink > 1 && st.mode & libc::S_IFMT != libc::S_IFDIR;
                        if st.mode & libc::S_IFMT == libc::S_IFDIR {
                            let mut sub = dir.0.clone();
                            if sub != b"/" {
                                sub.push(b'/');
                            }
                            sub.extend_from_slice(&name);
                            self.real.insert(sub, now);
                        }
                    }
                    names.insert(name, Known { lstat, link });
                }
                // The path went through no symlink: it and its ancestors
                // are real directories.
                let mut real: &[u8] = &dir.0;
                loop {
                    self.real.insert(real.to_vec(), now);
                    match split(real) {
                        Some((parent, _)) => real = parent,
                        None => break,
                    }
                }
                (Listing::Complete(names), hard_links)
            }
            DirListing::TooLarge | DirListing::Unavailable(_) => (Listing::Unlisted, false),
        };
        let count = match &listing {
            Listing::Complete(names) => names.len(),
            Listing::Unlisted => 0,
        };
        if self.entries + count > MAX_CACHED_ENTRIES {
            let ttl = self.ttl;
            self.dirs
                .retain(|_, d| now.saturating_duration_since(d.fetched) <= ttl);
            self.real
                .retain(|_, t| now.saturating_duration_since(*t) <= ttl);
            self.recount();
            if self.entries + count > MAX_CACHED_ENTRIES {
                self.dirs.clear();
                self.entries = 0;
            }
        }
        if self.real.len() > MAX_CACHED_ENTRIES {
            let ttl = self.ttl;
            self.real
                .retain(|_, t| now.saturating_duration_since(*t) <= ttl);
            if self.real.len() > MAX_CACHED_ENTRIES {
                // Forgetting what is real is safe only with the listings.
                self.dirs.clear();
                self.real.clear();
                self.entries = 0;
            }
        }
        self.entries += count;
        self.dirs.insert(
            dir.0.clone(),
            Dir {
                fetched: now,
                listing,
                hard_links,
            },
        );
    }

    fn recount(&mut self) {
        self.entries = self
            .dirs
            .values()
            .map(|d| match &d.listing {
                Listing::Complete(names) => names.len(),
                Listing::Unlisted => 0,
            })
            .sum();
    }

    fn remove(&mut self, dir: &[u8]) {
        if let Some(d) = self.dirs.remove(dir)
            && let Listing::Complete(names) = d.listing
        {
            self.entries = self.entries.saturating_sub(names.len());
        }
    }

    /// Whether `dir` is known, now, to be reached through no symlink.
    fn is_real(&self, now: Instant, dir: &[u8]) -> bool {
        dir == b"/"
            || self.real.get(dir).is_some_and(|t| self.fresh(now, *t))
            || self.dirs.get(dir).is_some_and(|d| {
                self.fresh(now, d.fetched) && matches!(d.listing, Listing::Complete(_))
            })
    }

    /// Drops what `req`, a change rscq makes, may make stale: the listing
    /// of the directory of each path it touches and of that directory's
    /// parent (whose entry for it changes), every listing at or below a
    /// path it touches, and the listings holding hard links. A change
    /// through a path not known to be symlink-free, or through a handle of
    /// unknown path, drops everything. `path_of` names the file behind a
    /// handle. Call it when such a request is sent and again when its
    /// reply comes, so that no listing taken in between is kept.
    pub fn invalidate(
        &mut self,
        now: Instant,
        req: &Request,
        path_of: impl Fn(Handle) -> Option<RemotePath>,
    ) {
        self.epoch += 1;
        if self.dirs.is_empty() {
            self.real.clear();
            return;
        }
        let Some(touched) = super::changed::paths_changed_by(req, path_of) else {
            self.clear();
            return;
        };
        // Every touched path must name what its text says.
        let aliased = touched.iter().any(|p| match split(p) {
            Some((dir, _)) => !self.is_real(now, dir),
            None => true,
        });
        if aliased {
            self.clear();
            return;
        }
        for path in &touched {
            let Some((dir, _)) = split(path) else {
                continue;
            };
            self.remove(dir);
            if let Some((grand, _)) = split(dir) {
                self.remove(grand);
            }
            let below: Vec<Vec<u8>> = self
                .dirs
                .keys()
                .filter(|d| is_under(d, path))
                .cloned()
                .collect();
            for d in below {
                self.remove(&d);
            }
            // A directory renamed or removed may come back as a symlink.
            if matches!(
                req,
                Request::Rename { .. } | Request::Rmdir { .. } | Request::Unlink { .. }
            ) {
                self.real.retain(|d, _| !is_under(d, path));
            }
        }
        let linked: Vec<Vec<u8>> = self
            .dirs
            .iter()
            .filter(|(_, d)| d.hard_links)
            .map(|(p, _)| p.clone())
            .collect();
        for d in linked {
            self.remove(&d);
        }
    }
}

/// The answer a listed entry gives `req`, if it gives one.
fn answer_known(req: &Request, known: &Known) -> Option<Response> {
    let is_link = known.is_link();
    match req {
        // `stat` of a non-link is its `lstat`; of a link it is its target's.
        Request::Stat { follow, .. } if !*follow || !is_link => Some(known.lstat.map(Reply::Stat)),
        // Existence is what the listing proves; permission checks need the
        // server's credentials.
        Request::Access { mode, flags, .. }
            if *mode == libc::F_OK
                && (!is_link || flags & libc::AT_SYMLINK_NOFOLLOW != 0)
                && known.lstat.is_ok() =>
        {
            Some(Ok(Reply::Done))
        }
        Request::Readlink { .. } => match (&known.link, is_link, &known.lstat) {
            (Some(target), true, _) => Some(Ok(Reply::Data(target.clone()))),
            (_, false, Ok(_)) => Some(Err(Errno::EINVAL)),
            _ => None,
        },
        _ => None,
    }
}
