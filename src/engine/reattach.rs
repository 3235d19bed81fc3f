//! What the client must remember of every remote handle to give it again
//! in a new session after a server restart ([`Request::Reattach`]): the
//! path and flags it was opened with, the file's identity, and where its
//! offset on the server is, followed from the requests sent and the
//! replies that came.
//!
//! Pure: it watches requests and replies go by and says which requests to
//! send after a restart; must not send anything itself.

use std::collections::HashMap;

use crate::proto::{Handle, Lookup, RemotePath, Reply, Request, Response, Stat};

/// Where a handle's offset is on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    At(i64),
    /// The end of the file (an `O_APPEND` write), or of a directory's
    /// listing.
    End,
    /// Not known (past `i64`): the handle cannot be given again
    /// faithfully, so it becomes stale. A call whose reply was lost leaves
    /// the offset where the replies that came put it: the new session
    /// starts there, and the call is sent again there.
    Unknown,
}

/// One handle's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Held {
    /// `None` for a file with no name to find it by (`O_TMPFILE`).
    path: Option<RemotePath>,
    flags: i32,
    dev: (u32, u32),
    ino: u64,
    position: Position,
}

impl Held {
    fn advance(&mut self, n: u64) {
        if self.flags & libc::O_APPEND != 0 {
            self.position = Position::End;
        } else if let Position::At(at) = self.position {
            self.position = i64::try_from(n)
                .ok()
                .and_then(|n| at.checked_add(n))
                .map_or(Position::Unknown, Position::At);
        }
    }
}

/// Every remote handle the client holds, by number.
#[derive(Debug, Default)]
pub struct HandleBook {
    held: HashMap<Handle, Held>,
}

impl HandleBook {
    /// How many handles are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// `request` was sent and `response` came back.
    pub fn observe(&mut self, request: &Request, response: &Response) {
        if let Request::Close { handle } = request {
            self.held.remove(handle);
            return;
        }
        let Ok(reply) = response else {
            // The kernel moves no offset on a failed call.
            return;
        };
        if let Some((handle, stat)) = opened(reply) {
            self.opened(request, handle, stat, reply);
            return;
        }
        match (request, reply) {
            (Request::Read { handle, .. }, Reply::Data(data)) => {
                self.advance(*handle, len_of(data.len()));
            }
            (Request::Write { handle, .. }, Reply::Count(n)) => self.advance(*handle, *n),
            (Request::Lseek { handle, .. }, Reply::Offset(at)) => {
                self.set(*handle, Position::At(*at));
            }
            (Request::Getdents { handle, .. }, Reply::Dirents(entries)) => {
                let position = entries
                    .last()
                    .map_or(Position::End, |e| Position::At(e.off));
                self.set(*handle, position);
            }
            (Request::GetdentsPlus { handle }, Reply::DirentsPlus { entries, complete }) => {
                self.listed(*handle, entries.last().map(|(e, _)| e.off), *complete);
            }
            (Request::SetFlags { handle, flags }, Reply::Done) => {
                if let Some(held) = self.held.get_mut(handle) {
                    held.flags = held.flags & !libc::O_APPEND | flags & libc::O_APPEND;
                }
            }
            (
                Request::CopyRange {
                    from,
                    from_offset,
                    to,
                    to_offset,
                    ..
                },
                Reply::Count(n),
            ) => {
                if from_offset.is_none() {
                    self.advance(*from, *n);
                }
                if to_offset.is_none() {
                    self.advance(*to, *n);
                }
            }
            _ => {}
        }
    }

    /// Whether `request`, sent once already with its answer lost, may be
    /// sent again: it changes no file, or doing it twice does what doing
    /// it once does (a positioned write, not on an `O_APPEND` file, where
    /// Linux appends; setting a size, mode or owner).
    pub fn resendable(&self, request: &Request) -> bool {
        match request {
            Request::Pwrite { handle, .. } => self
                .held
                .get(handle)
                .is_some_and(|held| held.flags & libc::O_APPEND == 0),
            Request::Ftruncate { .. }
            | Request::Truncate { .. }
            | Request::Fchmod { .. }
            | Request::Chmod { .. }
            | Request::Fchown { .. }
            | Request::Chown { .. } => true,
            other => !other.changes_files(),
        }
    }

    /// The requests that give every held handle again in a new session,
    /// in handle order.
    pub fn reattach_requests(&self) -> Vec<Request> {
        let mut handles: Vec<_> = self.held.keys().copied().collect();
        handles.sort_unstable_by_key(|h| h.0);
        handles
            .into_iter()
            .filter_map(|handle| {
                let held = self.held.get(&handle)?;
                let offset = match held.position {
                    Position::At(at) => Some(at),
                    Position::End => None,
                    Position::Unknown => return Some(stale(handle, held)),
                };
                Some(Request::Reattach {
                    handle,
                    path: held.path.clone(),
                    flags: held.flags,
                    dev: held.dev,
                    ino: held.ino,
                    offset,
                })
            })
            .collect()
    }

    fn opened(&mut self, request: &Request, handle: Handle, stat: &Stat, reply: &Reply) {
        let (path, flags) = match request {
            Request::Open { path, flags, .. }
            | Request::OpenPlus { path, flags, .. }
            | Request::OpenRead { path, flags, .. }
            | Request::LookupAndList {
                lookup: Lookup::Open { path, flags, .. } | Lookup::OpenRead { path, flags, .. },
                ..
            } => {
                let named = flags & libc::O_TMPFILE != libc::O_TMPFILE;
                (named.then(|| path.clone()), *flags)
            }
            Request::Reopen { handle: of, flags } => {
                (self.held.get(of).and_then(|h| h.path.clone()), *flags)
            }
            _ => return,
        };
        let position = match reply {
            Reply::OpenedDir(dir) if dir.complete => Position::End,
            Reply::OpenedDir(dir) => dir
                .entries
                .last()
                .map_or(Position::At(0), |(e, _)| Position::At(e.off)),
            _ => Position::At(0),
        };
        self.held.insert(
            handle,
            Held {
                path,
                flags,
                dev: (stat.dev_major, stat.dev_minor),
                ino: stat.ino,
                position,
            },
        );
    }

    fn listed(&mut self, handle: Handle, last: Option<i64>, complete: bool) {
        let position = match (complete, last) {
            (true, _) | (false, None) => Position::End,
            (false, Some(off)) => Position::At(off),
        };
        self.set(handle, position);
    }

    fn advance(&mut self, handle: Handle, n: u64) {
        if let Some(held) = self.held.get_mut(&handle) {
            held.advance(n);
        }
    }

    fn set(&mut self, handle: Handle, position: Position) {
        if let Some(held) = self.held.get_mut(&handle) {
            held.position = position;
        }
    }
}

/// A handle that cannot be given again faithfully: named stale.
fn stale(handle: Handle, held: &Held) -> Request {
    Request::Reattach {
        handle,
        path: None,
        flags: held.flags,
        dev: held.dev,
        ino: held.ino,
        offset: None,
    }
}

/// The handle and stat of any reply to an open.
fn opened(reply: &Reply) -> Option<(Handle, &Stat)> {
    match reply {
        Reply::Opened { handle, stat } | Reply::OpenedRead { handle, stat, .. } => {
            Some((*handle, stat))
        }
        Reply::OpenedDir(dir) => Some((dir.handle, &dir.stat)),
        Reply::LookedUp(looked) => match &looked.answer {
            Ok(
                crate::proto::LookupAnswer::Opened { handle, stat }
                | crate::proto::LookupAnswer::OpenedRead { handle, stat, .. },
            ) => Some((*handle, stat)),
            _ => None,
        },
        _ => None,
    }
}

fn len_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
