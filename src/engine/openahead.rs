//! Opens ahead of the program (the `openahead` layer): a program that
//! opens the entries of a listed directory one after another (`find`
//! walking a tree, `cat dir/*`, `cp -r`, python importing a package's
//! modules) finds the next entries already opened, their listing or small
//! file's bytes with them, so each open is answered without a round trip.
//!
//! When the program opens an entry of a directory whose listing rscq saw,
//! after it opened another entry of that directory, the next entries of
//! the same kind (directories, or regular files of at most
//! [`SMALL_FILE_MAX`](super::SMALL_FILE_MAX) bytes) are opened in the
//! background with the program's credentials: in the order of the
//! listing when the program follows it (walkers), else in the order of
//! the names (globs are sorted). A later open of one of them by the same
//! credentials, read-only and neither creating nor truncating, takes the
//! reply; an open that finds its entry still on its way waits for it.
//!
//! Consistency, as the statcache's: a reply answers one open, within the
//! TTL of when it came; a change rscq makes drops every reply it may make
//! stale (and those on their way when they come): of the changed path,
//! of anything below it, and of the two directories above it (whose
//! listings hold its stat and its directory's); a change whose paths are
//! not known drops them all, and a file with several names is never held.
//! What is dropped or expires is closed on the server. A directory's
//! first opens ahead are [`FIRST_WINDOW`], doubled by each open of the
//! program that follows the predicted order (a listing rscq made for its
//! own caches, not the program, does not start the walk anew). At most [`MAX_AHEAD`]
//! opens are held or on their way (server fds, and at most that many
//! small files' bytes or listings in memory), at most [`MAX_AHEAD_PER_DIR`]
//! of one directory, so that a walker's files ahead in one directory do
//! not starve the next directory it goes into.
//!
//! Pure: time comes in as `now`; it says what to send and close.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::proto::{Credentials, Handle, RemotePath, Reply, Request, Stat};

/// The most opens held or on their way at once.
pub const MAX_AHEAD: usize = 64;

/// The most opens of entries of one directory held or on their way.
pub const MAX_AHEAD_PER_DIR: usize = 32;

/// The most directories whose listings are kept to predict from.
pub const MAX_LISTINGS: usize = 16;

/// How many entries of a directory are opened ahead at first; each open
/// of the program that follows the predicted order doubles it, up to
/// [`MAX_AHEAD_PER_DIR`] (as TCP's slow start: a program that opens one
/// or two entries, `make` reading its `Makefile`, costs the server few
/// opens, and a walker soon has the whole share).
pub const FIRST_WINDOW: usize = 4;

/// What an entry is, as far as opening it ahead goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    /// A regular file small enough to come whole with its open.
    SmallFile,
}

impl Kind {
    /// The kind of an entry whose `lstat` is `stat`, if it is one opened
    /// ahead; `small` is the largest file that comes whole.
    pub fn of(stat: &Stat, small: u32) -> Option<Self> {
        match stat.mode & libc::S_IFMT {
            libc::S_IFDIR => Some(Kind::Dir),
            libc::S_IFREG if stat.size <= u64::from(small) => Some(Kind::SmallFile),
            _ => None,
        }
    }
}

/// One listed directory, kept to predict the program's next opens.
#[derive(Debug)]
struct Listing {
    dir: Vec<u8>,
    /// Names of the entries that may be opened ahead, in listing order.
    entries: Vec<(Vec<u8>, Kind)>,
    /// Names the program opened (or took from ahead) in it.
    opened: HashSet<Vec<u8>>,
    /// The last of them, to tell which order the program follows.
    last: Option<Vec<u8>>,
    /// How often the program's open was the entry right after its last
    /// one in the listing's order, and in the names' order.
    by_listing: u32,
    by_name: u32,
    /// How many of its entries may be held or on their way now.
    window: usize,
}

impl Listing {
    /// The entry of `kind` right after `name` (the first one after none)
    /// in the listing's order and in the names' order.
    fn successors(&self, name: Option<&[u8]>, kind: Kind) -> (Option<&[u8]>, Option<&[u8]>) {
        let same = || {
            self.entries
                .iter()
                .filter(move |(_, k)| *k == kind)
                .map(|(n, _)| n.as_slice())
        };
        match name {
            Some(name) => (
                same().skip_while(|n| *n != name).nth(1),
                same().filter(|n| *n > name).min(),
            ),
            None => (same().next(), same().min()),
        }
    }
}

#[derive(Debug)]
enum State {
    /// Sent; `dropped` when a change came meanwhile.
    OnTheWay {
        dropped: bool,
    },
    Ready {
        fetched: Instant,
        reply: Box<Reply>,
    },
}

#[derive(Debug)]
struct Ahead {
    caller: Credentials,
    kind: Kind,
    state: State,
}

/// What an open of the program finds ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The reply of the open made ahead, fetched then: the program's open
    /// is answered.
    Ready { fetched: Instant, reply: Box<Reply> },
    /// Its open is on the way: wait for it.
    OnTheWay,
    /// Nothing: send the program's own.
    Nothing,
}

/// An open to make ahead, in the background.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAheadRequest {
    pub path: RemotePath,
    pub kind: Kind,
    pub caller: Credentials,
}

/// The flags of opens made ahead: never following a symlink, and never
/// blocking (an entry replaced by a FIFO since it was listed must not
/// hold the server's open; what it opened is then not taken).
pub fn flags_of(kind: Kind) -> i32 {
    let base = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    match kind {
        Kind::Dir => base | libc::O_DIRECTORY,
        Kind::SmallFile => base,
    }
}

/// Whether an open of the program with `flags` may take the reply of an
/// open made ahead of `kind` (the entry was no symlink when listed, and
/// the open made ahead did not follow one): read-only, and nothing whose
/// meaning differs from the open made ahead's.
pub fn takes(flags: i32, kind: Kind) -> bool {
    let harmless = libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | libc::O_NOCTTY
        | libc::O_LARGEFILE
        | libc::O_NOATIME;
    let allowed = match kind {
        Kind::Dir => harmless | libc::O_DIRECTORY,
        Kind::SmallFile => harmless,
    };
    flags & libc::O_ACCMODE == libc::O_RDONLY && flags & !(allowed | libc::O_ACCMODE) == 0
}

/// `path` without trailing `/` and `/.` (which name the directory
/// before them), and whether there were any: then it names a directory.
fn trimmed(path: &[u8]) -> (&[u8], bool) {
    let mut p = path;
    loop {
        if let Some(rest) = p.strip_suffix(b"/").filter(|r| !r.is_empty()) {
            p = rest;
        } else if let Some(rest) = p.strip_suffix(b"/.").filter(|r| !r.is_empty()) {
            p = rest;
        } else {
            return (p, p.len() != path.len());
        }
    }
}

/// The name under which an absolute `path` is held: without trailing
/// `/` and `/.` ([`trimmed`]), and without empty or `.` names inside,
/// which name the directory before them (`/t/./d/f` is `/t/d/f`: the
/// program's `./d/f` in a remote cwd, where `find` listed `/t/d`); and
/// whether it names a directory. `..` stays: through a symlink it goes
/// elsewhere than its text says.
fn canonical(path: &[u8]) -> (Vec<u8>, bool) {
    let (path, dir_only) = trimmed(path);
    if path.first() != Some(&b'/') {
        return (path.to_vec(), dir_only);
    }
    let mut out = Vec::with_capacity(path.len());
    for name in path.split(|&b| b == b'/') {
        if !matches!(name, b"" | b".") {
            out.push(b'/');
            out.extend_from_slice(name);
        }
    }
    if out.is_empty() {
        out.push(b'/');
    }
    (out, dir_only)
}

/// The directory and last name of a plain absolute path.
fn split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = path.iter().rposition(|&b| b == b'/')?;
    let name = &path[i + 1..];
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    let dir: &[u8] = if i == 0 { b"/" } else { &path[..i] };
    Some((dir, name))
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if !path.ends_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// The opens made ahead, and the listings they are predicted from.
#[derive(Debug)]
pub struct OpenAhead {
    ttl: Duration,
    listings: VecDeque<Listing>,
    ahead: HashMap<Vec<u8>, Ahead>,
    to_send: Vec<OpenAheadRequest>,
    to_close: Vec<Handle>,
    taken: u64,
}

impl OpenAhead {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            listings: VecDeque::new(),
            ahead: HashMap::new(),
            to_send: Vec::new(),
            to_close: Vec::new(),
            taken: 0,
        }
    }

    /// How many opens of the program were answered from ahead.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Opens held or on their way.
    pub fn len(&self) -> usize {
        self.ahead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ahead.is_empty()
    }

    /// The program listed `dir` (in listing order): its entries that may
    /// be opened ahead are kept, replacing what was kept for `dir`. A new
    /// listing by the program is a new walk of the directory: what was
    /// opened in it before may be opened again. Which order the program
    /// follows, and how far ahead it is followed, stay known.
    pub fn listed(&mut self, dir: &[u8], entries: impl IntoIterator<Item = (Vec<u8>, Kind)>) {
        self.keep_listing(dir, entries, true);
    }

    /// rscq listed `dir` for its own caches (a dirmeta fetch), not the
    /// program: the entries are replaced, and a walk under way goes on.
    pub fn listed_behind(
        &mut self,
        dir: &[u8],
        entries: impl IntoIterator<Item = (Vec<u8>, Kind)>,
    ) {
        self.keep_listing(dir, entries, false);
    }

    fn keep_listing(
        &mut self,
        dir: &[u8],
        entries: impl IntoIterator<Item = (Vec<u8>, Kind)>,
        new_walk: bool,
    ) {
        let (dir, _) = canonical(dir);
        let dir = dir.as_slice();
        let entries: Vec<_> = entries
            .into_iter()
            .filter(|(name, _)| name != b"." && name != b"..")
            .collect();
        let kept = self
            .listings
            .iter()
            .position(|l| l.dir == dir)
            .and_then(|i| self.listings.remove(i));
        let listing = match kept {
            Some(mut l) => {
                l.entries = entries;
                if new_walk {
                    l.opened.clear();
                    l.last = None;
                }
                l
            }
            None => Listing {
                dir: dir.to_vec(),
                entries,
                opened: HashSet::new(),
                last: None,
                by_listing: 0,
                by_name: 0,
                window: FIRST_WINDOW,
            },
        };
        if self.listings.len() >= MAX_LISTINGS {
            self.listings.pop_front();
        }
        self.listings.push_back(listing);
    }

    /// The program opens `path` with `flags` as `caller`: what is ahead
    /// for it. Expired replies found on the way are closed.
    pub fn claim(
        &mut self,
        now: Instant,
        path: &RemotePath,
        flags: i32,
        caller: &Credentials,
    ) -> Claim {
        // `dir/` and `dir/.` name `dir`, and only as a directory.
        let (key, dir_only) = canonical(&path.0);
        let key = key.as_slice();
        let Some(ahead) = self.ahead.get(key) else {
            return Claim::Nothing;
        };
        if ahead.caller != *caller
            || (dir_only && ahead.kind != Kind::Dir)
            || !takes(flags, ahead.kind)
        {
            return Claim::Nothing;
        }
        match &ahead.state {
            State::OnTheWay { dropped: true } => Claim::Nothing,
            State::OnTheWay { dropped: false } => Claim::OnTheWay,
            State::Ready { fetched, .. } => {
                let expired = now.saturating_duration_since(*fetched) > self.ttl;
                let Some(Ahead {
                    state: State::Ready { reply, fetched },
                    ..
                }) = self.ahead.remove(key)
                else {
                    return Claim::Nothing;
                };
                if expired {
                    self.to_close.extend(handle_of(&reply));
                    return Claim::Nothing;
                }
                self.taken += 1;
                Claim::Ready { fetched, reply }
            }
        }
    }

    /// The program opened `path` (of `kind`) as `caller`, from the server
    /// or from ahead: if it opened another entry of the same directory
    /// before, or this is the first entry of that kind in the listing's
    /// or the names' order, the next entries of that kind are to be
    /// opened ahead.
    pub fn opened(&mut self, path: &RemotePath, kind: Kind, caller: &Credentials) {
        let (path, _) = canonical(&path.0);
        let Some((dir, name)) = split(&path) else {
            return;
        };
        let Some(listing) = self.listings.iter_mut().find(|l| l.dir == dir) else {
            return;
        };
        listing.opened.insert(name.to_vec());
        let previous = listing.last.replace(name.to_vec());
        // Which order the program follows: the one in which its opens
        // came right after each other more often (the names' on a tie:
        // globs sort).
        let (after_in_listing, after_in_names) = listing.successors(previous.as_deref(), kind);
        let (step_listing, step_name) =
            (after_in_listing == Some(name), after_in_names == Some(name));
        listing.by_listing += u32::from(step_listing);
        listing.by_name += u32::from(step_name);
        if previous.is_none() && !step_listing && !step_name {
            return;
        }
        let in_listing_order = listing.by_listing > listing.by_name;
        let followed = if in_listing_order {
            step_listing
        } else {
            step_name
        };
        if previous.is_some() && followed {
            listing.window = listing.window.saturating_mul(2).min(MAX_AHEAD_PER_DIR);
        }
        let window = listing.window;
        let unopened = listing
            .entries
            .iter()
            .filter(|(n, k)| *k == kind && !listing.opened.contains(n))
            .map(|(n, _)| n.as_slice());
        let next: Vec<&[u8]> = if in_listing_order {
            let from = listing.entries.iter().position(|(e, _)| e == name);
            let after: HashSet<&[u8]> = listing
                .entries
                .iter()
                .skip(from.map_or(0, |i| i + 1))
                .map(|(n, _)| n.as_slice())
                .collect();
            unopened.filter(|n| after.contains(n)).collect()
        } else {
            let mut later: Vec<&[u8]> = unopened.filter(|n| *n > name).collect();
            later.sort_unstable();
            later
        };
        let dir = listing.dir.clone();
        let of_dir = self
            .ahead
            .keys()
            .filter(|p| split(p).is_some_and(|(d, _)| d == dir.as_slice()))
            .count();
        let room = MAX_AHEAD
            .saturating_sub(self.ahead.len())
            .min(window.saturating_sub(of_dir));
        let wanted: Vec<Vec<u8>> = next
            .into_iter()
            .map(|n| join(&dir, n))
            .filter(|p| !self.ahead.contains_key(p))
            .take(room)
            .collect();
        for path in wanted {
            self.ahead.insert(
                path.clone(),
                Ahead {
                    caller: caller.clone(),
                    kind,
                    state: State::OnTheWay { dropped: false },
                },
            );
            self.to_send.push(OpenAheadRequest {
                path: RemotePath(path),
                kind,
                caller: caller.clone(),
            });
        }
    }

    /// The reply to an open made ahead came.
    pub fn on_reply(
        &mut self,
        now: Instant,
        path: &RemotePath,
        reply: Result<Reply, crate::errno::Errno>,
    ) {
        let dropped = match self.ahead.get(&path.0) {
            // What the entry is now is not what it was listed as (the
            // reply's stat says): nobody takes it.
            Some(Ahead {
                state: State::OnTheWay { dropped },
                kind,
                ..
            }) => {
                *dropped
                    || reply
                        .as_ref()
                        .is_ok_and(|r| kind_of_reply(r) != Some(*kind) || has_other_names(r))
            }
            // Not asked for (or no longer): close what it opened.
            _ => true,
        };
        match reply {
            Ok(reply) if !dropped => {
                if let Some(ahead) = self.ahead.get_mut(&path.0) {
                    ahead.state = State::Ready {
                        fetched: now,
                        reply: Box::new(reply),
                    };
                }
            }
            Ok(reply) => {
                self.to_close.extend(handle_of(&reply));
                self.remove_on_the_way(path);
            }
            // The program's own open will learn the error itself.
            Err(_) => self.remove_on_the_way(path),
        }
    }

    fn remove_on_the_way(&mut self, path: &RemotePath) {
        if matches!(
            self.ahead.get(&path.0),
            Some(Ahead {
                state: State::OnTheWay { .. },
                ..
            })
        ) {
            self.ahead.remove(&path.0);
        }
    }

    /// rscq changed the files at `paths`: what was opened ahead of them,
    /// below them, or of the directories whose listings show them, answers
    /// no more. Paths with `..`, which do not name their file by their
    /// text alone, drop everything.
    pub fn drop_touching(&mut self, paths: &[Vec<u8>]) {
        let paths: Vec<Vec<u8>> = paths.iter().map(|p| canonical(p).0).collect();
        if paths.iter().any(|p| !is_plain(p)) {
            return self.drop_all();
        }
        let stale = |held: &[u8]| {
            paths.iter().any(|t| {
                let parent = parent_of(t);
                held == t.as_slice()
                    || (held.starts_with(t) && held.get(t.len()) == Some(&b'/'))
                    || Some(held) == parent
                    || parent.and_then(parent_of) == Some(held)
            })
        };
        self.drop_where(stale);
    }

    /// rscq changed a file (or may have): nothing held answers any more.
    pub fn drop_all(&mut self) {
        self.drop_where(|_| true);
    }

    /// Drops what is held of the paths that are `stale`; those on their
    /// way are not taken when they come.
    fn drop_where(&mut self, stale: impl Fn(&[u8]) -> bool) {
        let mut closes = Vec::new();
        self.ahead.retain(|path, ahead| {
            if !stale(path) {
                return true;
            }
            match &mut ahead.state {
                State::OnTheWay { dropped } => {
                    *dropped = true;
                    true
                }
                State::Ready { reply, .. } => {
                    closes.extend(handle_of(reply));
                    false
                }
            }
        });
        self.to_close.extend(closes);
    }

    /// Replies held past the TTL are closed.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        let mut closes = Vec::new();
        self.ahead.retain(|_, ahead| match &ahead.state {
            State::Ready { fetched, reply } if now.saturating_duration_since(*fetched) > ttl => {
                closes.extend(handle_of(reply));
                false
            }
            _ => true,
        });
        self.to_close.extend(closes);
    }

    /// The opens to make ahead now.
    pub fn take_sends(&mut self) -> Vec<OpenAheadRequest> {
        std::mem::take(&mut self.to_send)
    }

    /// The handles opened ahead that nothing will take: to close.
    pub fn take_closes(&mut self) -> Vec<Handle> {
        std::mem::take(&mut self.to_close)
    }
}

/// The files a change names, by path (`path_of` names an open file's);
/// `None` when not all are known. Besides those every cache drops for
/// ([`super::changed::paths_changed_by`]): a handle opened again for
/// writing (a mapping's shadow) and the file a server-side copy writes.
pub fn touched_paths(
    req: &Request,
    path_of: impl Fn(Handle) -> Option<RemotePath>,
) -> Option<Vec<Vec<u8>>> {
    match req {
        Request::Reopen { handle, .. } | Request::CopyRange { to: handle, .. } => {
            path_of(*handle).map(|p| vec![p.0])
        }
        other => super::changed::paths_changed_by(other, path_of),
    }
}

/// An absolute path with no empty, `.` or `..` name: its text names it.
fn is_plain(path: &[u8]) -> bool {
    path == b"/"
        || path.strip_prefix(b"/").is_some_and(|rest| {
            rest.split(|&b| b == b'/')
                .all(|c| !matches!(c, b"" | b"." | b".."))
        })
}

/// The directory a plain path is in (`None` for `/`).
fn parent_of(path: &[u8]) -> Option<&[u8]> {
    match path.iter().rposition(|&b| b == b'/')? {
        0 if path.len() > 1 => Some(b"/"),
        0 => None,
        i => Some(&path[..i]),
    }
}

/// Whether a reply opened a non-directory with more than one name, which
/// a change through another name could make stale unseen.
fn has_other_names(reply: &Reply) -> bool {
    match reply {
        Reply::Opened { stat, .. } | Reply::OpenedRead { stat, .. } => {
            stat.nlink > 1 && stat.mode & libc::S_IFMT != libc::S_IFDIR
        }
        _ => false,
    }
}

/// The kind of what a reply opened.
fn kind_of_reply(reply: &Reply) -> Option<Kind> {
    let stat = match reply {
        Reply::Opened { stat, .. } | Reply::OpenedRead { stat, .. } => stat,
        Reply::OpenedDir(dir) => &dir.stat,
        _ => return None,
    };
    match stat.mode & libc::S_IFMT {
        libc::S_IFDIR => Some(Kind::Dir),
        libc::S_IFREG => Some(Kind::SmallFile),
        _ => None,
    }
}

/// The handle a reply opened.
fn handle_of(reply: &Reply) -> Option<Handle> {
    match reply {
        Reply::Opened { handle, .. } | Reply::OpenedRead { handle, .. } => Some(*handle),
        Reply::OpenedDir(dir) => Some(dir.handle),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
