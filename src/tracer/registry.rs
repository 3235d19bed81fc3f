//! The remote files the program holds, keyed by their placeholder pipe's
//! inode. Shared between the tracer thread (which installs and looks up
//! placeholders) and the engine (which drops them at the last close).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::syscall::plan::{FdKind, RemoteFd};

#[derive(Debug, Clone, Default)]
pub struct Registry {
    files: Arc<Mutex<HashMap<u64, RemoteFd>>>,
}

impl Registry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, RemoteFd>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, file: RemoteFd) {
        self.map().insert(file.key, file);
    }

    pub fn remove(&self, key: u64) -> Option<RemoteFd> {
        self.map().remove(&key)
    }

    pub fn is_empty(&self) -> bool {
        self.map().is_empty()
    }

    pub fn set_flags(&self, key: u64, flags: i32) {
        if let Some(f) = self.map().get_mut(&key) {
            f.flags = flags;
        }
    }

    /// What fd `fd` of thread `tid` is: the kernel's `/proc` link names the
    /// pipe inode, so dup'd, inherited and passed fds all resolve without
    /// rscq tracking them.
    pub fn lookup(&self, tid: i32, fd: i32) -> FdKind {
        let Ok(target) = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")) else {
            return FdKind::Local;
        };
        let Some(ino) = pipe_inode(target.as_os_str().as_encoded_bytes()) else {
            return FdKind::Local;
        };
        match self.map().get(&ino) {
            Some(f) => FdKind::Remote(f.clone()),
            None => FdKind::Local,
        }
    }
}

/// Remote addresses of the program's connected sockets, by socket inode, for
/// `getsockname`/`getpeername`.
#[derive(Debug, Clone, Default)]
pub struct SocketRegistry {
    sockets: Arc<Mutex<HashMap<u64, RemoteSocket>>>,
}

/// A program socket whose connection lives on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSocket {
    pub local: crate::proto::SockAddr,
    pub peer: crate::proto::SockAddr,
}

impl SocketRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, RemoteSocket>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, ino: u64, s: RemoteSocket) {
        self.map().insert(ino, s);
    }

    pub fn remove(&self, ino: u64) {
        self.map().remove(&ino);
    }

    /// The remote socket behind fd `fd` of thread `tid`, if it is one.
    pub fn lookup(&self, tid: i32, fd: i32) -> Option<RemoteSocket> {
        if self.map().is_empty() {
            return None;
        }
        let target = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
        let ino = link_inode(target.as_os_str().as_encoded_bytes(), b"socket:[")?;
        self.map().get(&ino).copied()
    }
}

/// The inode in a `/proc/PID/fd` link of the form `pipe:[INODE]`.
fn pipe_inode(link: &[u8]) -> Option<u64> {
    link_inode(link, b"pipe:[")
}

/// The inode in a `/proc/PID/fd` link of the form `KIND:[INODE]`.
fn link_inode(link: &[u8], kind: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(kind)?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipe_links_parse() {
        assert_eq!(pipe_inode(b"pipe:[12345]"), Some(12345));
        assert_eq!(pipe_inode(b"socket:[1]"), None);
        assert_eq!(pipe_inode(b"/etc/passwd"), None);
        assert_eq!(pipe_inode(b"pipe:[x]"), None);
    }
}
