//! How the tracer finds the remote objects behind a program's fd: the remote
//! files it holds ([`Registry`], keyed by their placeholder's key, its
//! FIFO's name, see [`super::placeholder`]), and the remote sockets of
//! [`crate::syscall::sockets`], through the fd's `/proc` link
//! ([`SocketsByFd`]). [`Registry`] is shared between the tracer thread
//! (which installs and looks up placeholders) and the engine (which drops
//! them at the last close).
//!
//! Must not hold socket state itself: the socket tables are the pure
//! [`SocketRegistry`], which the engine shares without the tracer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::syscall::plan::{FdKind, RemoteFd};
use crate::syscall::sockets::{RemoteSocket, SocketRegistry};

#[derive(Debug, Clone, Default)]
pub struct Registry {
    files: Arc<Mutex<HashMap<u64, RemoteFd>>>,
    /// The placeholders' directory, as `/proc/PID/fd` links spell it.
    placeholder_dir: Arc<Vec<u8>>,
}

impl Registry {
    /// A registry of the placeholders made in `placeholder_dir` (none
    /// without mounts).
    pub fn new(placeholder_dir: Option<&std::path::Path>) -> Self {
        Self {
            files: Arc::default(),
            placeholder_dir: Arc::new(
                placeholder_dir
                    .map(|d| d.as_os_str().as_encoded_bytes().to_vec())
                    .unwrap_or_default(),
            ),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, RemoteFd>> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, file: RemoteFd) {
        self.map().insert(file.key, file);
    }

    /// The remote file of placeholder `key`, if it is one.
    pub fn get(&self, key: u64) -> Option<RemoteFd> {
        self.map().get(&key).cloned()
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
    /// placeholder's FIFO, so dup'd, inherited and passed fds all resolve
    /// without rscq tracking them.
    pub fn lookup(&self, tid: i32, fd: i32) -> FdKind {
        if self.placeholder_dir.is_empty() {
            return FdKind::Local;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")) else {
            return FdKind::Local;
        };
        let link = target.as_os_str().as_encoded_bytes();
        let Some(ino) = super::placeholder::key_of(&self.placeholder_dir, link) else {
            return FdKind::Local;
        };
        match self.map().get(&ino) {
            Some(f) => FdKind::Remote(f.clone()),
            None => FdKind::Local,
        }
    }
}

/// The tracer's way to the [`SocketRegistry`]: by a thread's fd, whose
/// `/proc` link names the socket's inode, so dup'd, inherited and passed
/// fds need no tracking.
pub trait SocketsByFd {
    /// The remote socket behind fd `fd` of thread `tid`, if it is one.
    fn lookup(&self, tid: i32, fd: i32) -> Option<RemoteSocket>;
    /// The server listener behind fd `fd` of thread `tid`, if it is one.
    fn lookup_listener(&self, tid: i32, fd: i32) -> Option<u64>;
}

impl SocketsByFd for SocketRegistry {
    fn lookup(&self, tid: i32, fd: i32) -> Option<RemoteSocket> {
        if !self.has_sockets() {
            return None;
        }
        self.socket(socket_inode(tid, fd)?)
    }

    fn lookup_listener(&self, tid: i32, fd: i32) -> Option<u64> {
        if !self.has_listeners() {
            return None;
        }
        self.listener(socket_inode(tid, fd)?)
    }
}

/// The most open fds (of all traced processes) [`socket_shared`] scans.
const SCAN_LIMIT: u64 = 1024;

/// Whether a socket fd `fd` of thread `tid` is not the only fd of the
/// processes `tgids` that refers to its socket: reads each process's
/// `/proc/PID/fd` links (only at the close of a socket bound on the
/// server, a rare call). A socket passed to a process rscq does not trace
/// is not seen; the periodic sweep (`client::listeners`) still finds it
/// alive then.
pub fn socket_shared(tid: i32, fd: i32, tgids: impl Iterator<Item = i32>) -> bool {
    let Some(ino) = socket_inode(tid, fd) else {
        return false;
    };
    let tgids: Vec<i32> = tgids.collect();
    // The scan reads one link per fd, at every such close: a program that
    // closes thousands of sockets one by one (at its exit) would pay for
    // it quadratically (10,000 `--pure` connections: minutes). Past
    // SCAN_LIMIT open fds the socket counts as shared, which is always
    // safe: the close runs natively and the server's socket goes as for a
    // close rscq does not see (the sweep, or the run's end for `--pure`).
    // `st_size` of `/proc/PID/fd` is the number of open fds (Linux 6.2+;
    // 0 before, and the scan runs).
    let open_fds: u64 = tgids
        .iter()
        .filter_map(|tgid| std::fs::metadata(format!("/proc/{tgid}/fd")).ok())
        .map(|m| m.len())
        .sum();
    if open_fds > SCAN_LIMIT {
        return true;
    }
    let mut refs = 0;
    for tgid in tgids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{tgid}/fd")) else {
            continue;
        };
        for entry in dir.flatten() {
            let Ok(target) = std::fs::read_link(entry.path()) else {
                continue;
            };
            if link_inode(target.as_os_str().as_encoded_bytes(), b"socket:[") == Some(ino) {
                refs += 1;
                if refs > 1 {
                    return true;
                }
            }
        }
    }
    false
}

/// The inode of the socket that is fd `fd` of thread `tid`.
fn socket_inode(tid: i32, fd: i32) -> Option<u64> {
    let target = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
    link_inode(target.as_os_str().as_encoded_bytes(), b"socket:[")
}

/// The inode in a `/proc/PID/fd` link of the form `KIND:[INODE]`.
fn link_inode(link: &[u8], kind: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(kind)?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::link_inode;

    #[test]
    fn a_socket_link_names_its_inode() {
        assert_eq!(link_inode(b"socket:[12345]", b"socket:["), Some(12345));
        assert_eq!(link_inode(b"pipe:[12345]", b"socket:["), None);
        assert_eq!(link_inode(b"socket:[12x]", b"socket:["), None);
        assert_eq!(link_inode(b"/tmp/socket:[1]", b"socket:["), None);
    }
}
