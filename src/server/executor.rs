//! Executes one [`Request`] with real syscalls beneath the export root.
//!
//! This file only routes and applies `--read-only` and the caller's rights:
//! `route` says which family module runs a request (`files`, `dirs`,
//! `meta`, `names`, `xattr`, `locks`, `uname` for the host's own), and
//! `mutates` whether it changes the export (through
//! `Request::changes_files`); both end in a match with no catch-all arm,
//! so a new request cannot be forgotten. Confinement is `super::resolve`'s.
//!
//! Must not resolve paths or hold per-family logic itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use super::creds::{Checking, Policy};
use super::files::OpenFlags;
use super::handles::Handles;
use super::locks::Locks;
use super::resolve::Root;
use super::{dirs, files, meta, names, uname, xattr};
use crate::errno::Errno;
use crate::proto::{
    Credentials, DirListing, Handle, LookedUp, LookupAnswer, RemotePath, Reply, Request, Response,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot open export root {path}: {source}")]
    OpenRoot {
        path: String,
        source: std::io::Error,
    },
}

/// One session's view of the export: the root and the session's open handles.
/// Dropping it closes every handle of the session.
#[derive(Debug)]
pub struct Executor {
    root: Root,
    handles: Handles,
    read_only: bool,
    policy: Policy,
    /// Who opened each handle: the writes rscq flushes later on its own
    /// (write-behind) run with the opener's rights, so the kernel clears a
    /// setuid bit as the program's own write would have.
    openers: Mutex<HashMap<Handle, Credentials>>,
    locks: Locks,
}

impl Executor {
    /// Opens `root` as the export root of a new session whose calls run
    /// with the rights `policy` gives them.
    pub fn new(root: &Path, read_only: bool, policy: Policy) -> Result<Self, ExecutorError> {
        let opened = Root::new(root).map_err(|source| ExecutorError::OpenRoot {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Self {
            root: opened,
            handles: Handles::default(),
            read_only,
            policy,
            openers: Mutex::default(),
            locks: Locks::default(),
        })
    }

    /// Runs one request with the rights of `caller` (the server's own for
    /// `None`), as the session's policy allows. Blocking: call it from a
    /// blocking thread. Safe to call concurrently; requests on different
    /// handles do not serialise.
    pub fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response {
        if let Request::LookupAndList { dir, lookup } = req {
            let answer = self
                .execute(caller, lookup.into_request())
                .and_then(|r| LookupAnswer::from_reply(r).ok_or(Errno::EIO));
            let listing = self.listing(caller, &dir);
            return Ok(Reply::LookedUp(Box::new(LookedUp { answer, listing })));
        }
        if self.read_only && mutates(&req) {
            return Err(Errno::EROFS);
        }
        let opener = match (&req, caller) {
            (Request::Write { handle, .. } | Request::Pwrite { handle, .. }, None) => {
                self.openers().get(handle).cloned()
            }
            _ => None,
        };
        let caller = caller.or(opener.as_ref());
        let rights = match caller {
            Some(caller) => {
                let checking = match req {
                    Request::Access { flags, .. } if flags & libc::AT_EACCESS == 0 => {
                        Checking::RealIds
                    }
                    _ => Checking::FsIds,
                };
                Some(self.policy.rights(caller, checking).enter(&self.policy)?)
            }
            None => None,
        };
        let closed = match req {
            Request::Close { handle } => Some(handle),
            _ => None,
        };
        let response = self.dispatch(req);
        drop(rights);
        match (&response, caller, closed) {
            (Ok(Reply::Opened { handle, .. }), Some(caller), _) => {
                self.openers().insert(*handle, caller.clone());
            }
            (_, _, Some(handle)) => {
                self.openers().remove(&handle);
            }
            _ => {}
        }
        response
    }

    /// The listing half of a [`Request::LookupAndList`], with the
    /// caller's rights.
    fn listing(&self, caller: Option<&Credentials>, dir: &RemotePath) -> DirListing {
        let rights = match caller {
            Some(caller) => match self
                .policy
                .rights(caller, Checking::FsIds)
                .enter(&self.policy)
            {
                Ok(rights) => Some(rights),
                Err(e) => return DirListing::Unavailable(e),
            },
            None => None,
        };
        let listing = dirs::listing(&self.root, dir);
        drop(rights);
        listing
    }

    fn openers(&self) -> std::sync::MutexGuard<'_, HashMap<Handle, Credentials>> {
        self.openers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `req` in the family module it belongs to ([`route`]).
    fn dispatch(&self, req: Request) -> Response {
        let scope = Scope {
            root: &self.root,
            handles: &self.handles,
            read_only: self.read_only,
        };
        match route(&req) {
            Family::Files => files::execute(&scope, req),
            Family::Dirs => dirs::execute(&scope, req),
            Family::Meta => meta::execute(&scope, req),
            Family::Names => names::execute(&scope, req),
            Family::Xattr => xattr::execute(&scope, req),
            Family::Locks => self.locks.execute(&self.handles, req),
            Family::Host => uname::execute(req),
            // Taken apart by `execute`.
            Family::Compound => Err(Errno::EINVAL),
            // Connections are streams, served by `server::net`; one that
            // reaches the blocking executor was sent the wrong way.
            Family::Stream => Err(Errno::EINVAL),
        }
    }

    /// The connection is gone: requests still waiting (for a lock) end.
    pub fn close(&self) {
        self.locks.close();
    }

    /// The session goes on with a new connection: lock waits work again.
    /// Handles and locks were kept all along.
    pub fn reopen(&self) {
        self.locks.reopen();
    }
}

/// What a family module's requests run against: the export root and the
/// session's open handles.
pub(super) struct Scope<'a> {
    pub(super) root: &'a Root,
    pub(super) handles: &'a Handles,
    /// `--read-only`, which `access(W_OK)` reports as `EROFS`.
    pub(super) read_only: bool,
}

/// The server modules that run requests, one per syscall family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Files,
    Dirs,
    Meta,
    Names,
    Xattr,
    Locks,
    /// The server host's own: `uname`, resolver files.
    Host,
    /// Several requests in one, taken apart by `Executor::execute`.
    Compound,
    /// Connections and bound sockets: streams, never the executor's.
    Stream,
}

/// The family module `req` runs in. No catch-all arm: a new request must
/// be given a family here, as `mutates` (below) must know whether it
/// changes the export.
fn route(req: &Request) -> Family {
    match req {
        Request::Open { .. }
        | Request::OpenPlus { .. }
        | Request::OpenRead { .. }
        | Request::Close { .. }
        | Request::Read { .. }
        | Request::Pread { .. }
        | Request::Write { .. }
        | Request::Pwrite { .. }
        | Request::Lseek { .. }
        | Request::Fsync { .. }
        | Request::SetFlags { .. }
        | Request::Ftruncate { .. }
        | Request::Truncate { .. }
        | Request::FlushWrites { .. }
        | Request::Reopen { .. }
        | Request::Reattach { .. }
        | Request::Fallocate { .. }
        | Request::CopyRange { .. } => Family::Files,
        Request::Getdents { .. }
        | Request::GetdentsPlus { .. }
        | Request::Mkdir { .. }
        | Request::Rmdir { .. }
        | Request::CheckDir { .. } => Family::Dirs,
        Request::Fstat { .. }
        | Request::Fchmod { .. }
        | Request::Fchown { .. }
        | Request::Futimens { .. }
        | Request::Fstatfs { .. }
        | Request::Stat { .. }
        | Request::StatPlus { .. }
        | Request::Access { .. }
        | Request::Chmod { .. }
        | Request::Chown { .. }
        | Request::Utimens { .. }
        | Request::Statfs { .. } => Family::Meta,
        Request::Readlink { .. }
        | Request::Mknod { .. }
        | Request::Unlink { .. }
        | Request::Rename { .. }
        | Request::Link { .. }
        | Request::LinkHandle { .. }
        | Request::Symlink { .. } => Family::Names,
        Request::GetXattr { .. }
        | Request::ListXattr { .. }
        | Request::SetXattr { .. }
        | Request::RemoveXattr { .. } => Family::Xattr,
        Request::Flock { .. }
        | Request::RecordLock { .. }
        | Request::ReleaseLocks { .. }
        | Request::CancelWait { .. } => Family::Locks,
        Request::Uname | Request::ReadSystemFile { .. } => Family::Host,
        Request::LookupAndList { .. } => Family::Compound,
        Request::TcpConnect { .. }
        | Request::TcpBind { .. }
        | Request::TcpListen { .. }
        | Request::TcpUnbind { .. }
        | Request::UdpBind { .. }
        | Request::TcpSetOption { .. }
        | Request::TcpGetInfo { .. } => Family::Stream,
    }
}

/// A request `Executor::dispatch` sent to a family module that has no arm
/// for it: a bug in [`route`], answered as a request the server cannot
/// run.
pub(super) fn misrouted(req: &Request) -> Response {
    debug_assert!(false, "misrouted request: {req:?}");
    Err(Errno::EINVAL)
}

/// Whether a request would change the export, and so fails with `EROFS`
/// under `--read-only` before anything is resolved or opened.
fn mutates(req: &Request) -> bool {
    match req {
        // As the kernel normalises the flags (`O_PATH` ignores the rest).
        Request::Open { flags, mode, .. }
        | Request::OpenPlus { flags, mode, .. }
        | Request::OpenRead { flags, mode, .. } => OpenFlags::new(*flags, *mode).writes(),
        other => other.changes_files(),
    }
}

#[cfg(test)]
mod tests;
