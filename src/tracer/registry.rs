//! The remote files the program holds, keyed by their placeholder's key
//! (its FIFO's name, see [`super::placeholder`]). Shared between the tracer
//! thread (which installs and looks up placeholders) and the engine (which
//! drops them at the last close).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::syscall::plan::{FdKind, RemoteFd};

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

/// The program's sockets that live on the server, for `getsockname`,
/// `getpeername`, `listen` and `accept`. Keyed by socket inode, so dup'd
/// and inherited fds need no tracking.
#[derive(Debug, Clone, Default)]
pub struct SocketRegistry {
    tables: Arc<Mutex<SocketTables>>,
}

#[derive(Debug, Default)]
struct SocketTables {
    by_inode: HashMap<u64, RemoteSocket>,
    /// Listening (or bound) sockets: inode → the server's listener id.
    listeners: HashMap<u64, u64>,
    /// Listening sockets (a subset of `listeners`' inodes).
    listening: std::collections::HashSet<u64>,
    /// Listener id → where the program's socket listens on loopback.
    listener_addrs: HashMap<u64, std::net::SocketAddr>,
    /// Connections rscq made to a program listener, by rscq's own port,
    /// waiting for the program's `accept` to claim them.
    incoming: HashMap<u16, RemoteSocket>,
    /// Delivered connections the program accepted, by rscq's own port:
    /// `(tgid, fd, socket inode)` of the program's end.
    claimed: HashMap<u16, (i32, i32, u64)>,
    /// The server's errno for connects that failed after their caller had
    /// gone on; `SO_ERROR` reports it once.
    connect_errors: HashMap<u64, crate::errno::Errno>,
    /// IPv6 sockets bound dual-stack on the server whose local stand-in
    /// the kernel made IPv6-only (bound to `::1`).
    dual_stack: std::collections::HashSet<u64>,
}

/// A program socket whose other end is on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSocket {
    pub local: crate::proto::SockAddr,
    /// `None` for a bound or listening socket.
    pub peer: Option<crate::proto::SockAddr>,
    /// With `--pure`: the engine's stop-and-wait pump for this connection.
    pub pure_pump: Option<u64>,
    /// A UDP socket: its id among the engine's remote UDP sockets.
    pub udp: Option<u64>,
}

impl RemoteSocket {
    /// A socket whose remote connect is under way: no peer yet, and no
    /// local address to show but the unspecified one.
    pub fn connecting(v6: bool) -> Self {
        let local = if v6 {
            crate::proto::SockAddr::V6 {
                ip: [0; 16],
                port: 0,
                flowinfo: 0,
                scope_id: 0,
            }
        } else {
            crate::proto::SockAddr::V4 {
                ip: [0; 4],
                port: 0,
            }
        };
        Self {
            local,
            peer: None,
            pure_pump: None,
            udp: None,
        }
    }
}

impl SocketRegistry {
    fn tables(&self) -> std::sync::MutexGuard<'_, SocketTables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, ino: u64, s: RemoteSocket) {
        self.tables().by_inode.insert(ino, s);
    }

    /// The remote connect of socket `ino`, which went on asynchronously,
    /// failed with `errno`.
    pub fn set_connect_error(&self, ino: u64, errno: crate::errno::Errno) {
        self.tables().connect_errors.insert(ino, errno);
    }

    /// The failure of socket `ino`'s asynchronous connect, once.
    pub fn take_connect_error(&self, ino: u64) -> Option<crate::errno::Errno> {
        self.tables().connect_errors.remove(&ino)
    }

    /// Socket `ino` is bound dual-stack on the server (see the field).
    pub fn set_dual_stack(&self, ino: u64) {
        self.tables().dual_stack.insert(ino);
    }

    pub fn is_dual_stack(&self, ino: u64) -> bool {
        self.tables().dual_stack.contains(&ino)
    }

    pub fn contains(&self, ino: u64) -> bool {
        self.tables().by_inode.contains_key(&ino)
    }

    pub fn remove(&self, ino: u64) {
        let mut t = self.tables();
        t.by_inode.remove(&ino);
        t.connect_errors.remove(&ino);
        t.dual_stack.remove(&ino);
        t.listening.remove(&ino);
        if let Some(id) = t.listeners.remove(&ino) {
            t.listener_addrs.remove(&id);
        }
    }

    pub fn add_listener(&self, ino: u64, id: u64, local: std::net::SocketAddr) {
        let mut t = self.tables();
        t.listeners.insert(ino, id);
        t.listener_addrs.insert(id, local);
    }

    /// Socket `ino` is listening (locally and on the server).
    pub fn set_listening(&self, ino: u64) {
        let mut t = self.tables();
        if t.listeners.contains_key(&ino) {
            t.listening.insert(ino);
        }
    }

    /// The listening sockets: (inode, the server's listener id).
    pub fn listening(&self) -> Vec<(u64, u64)> {
        let t = self.tables();
        t.listening
            .iter()
            .filter_map(|ino| Some((*ino, *t.listeners.get(ino)?)))
            .collect()
    }

    /// The sockets bound on the server that do not listen: (inode, the
    /// server's listener id).
    pub fn bound_only(&self) -> Vec<(u64, u64)> {
        let t = self.tables();
        t.listeners
            .iter()
            .filter(|(ino, _)| !t.listening.contains(ino))
            .map(|(ino, id)| (*ino, *id))
            .collect()
    }

    /// The server's id of socket `ino` if it is bound there and does not
    /// listen.
    pub fn bound_id(&self, ino: u64) -> Option<u64> {
        let t = self.tables();
        t.listeners
            .get(&ino)
            .copied()
            .filter(|_| !t.listening.contains(&ino))
    }

    pub fn listener_addr(&self, id: u64) -> Option<std::net::SocketAddr> {
        self.tables().listener_addrs.get(&id).copied()
    }

    pub fn add_incoming(&self, port: u16, s: RemoteSocket) {
        self.tables().incoming.insert(port, s);
    }

    pub fn take_incoming(&self, port: u16) -> Option<RemoteSocket> {
        self.tables().incoming.remove(&port)
    }

    /// The program accepted the connection delivered from `port` as fd
    /// `fd` of process `tgid`.
    pub fn record_claim(&self, port: u16, tgid: i32, fd: i32, ino: u64) {
        self.tables().claimed.insert(port, (tgid, fd, ino));
    }

    /// Who accepted the connection delivered from `port`, once; forgotten
    /// after.
    pub fn owner_of_incoming(&self, port: u16) -> Option<(i32, i32, u64)> {
        self.tables().claimed.remove(&port)
    }

    fn inode_of(tid: i32, fd: i32) -> Option<u64> {
        let target = std::fs::read_link(format!("/proc/{tid}/fd/{fd}")).ok()?;
        link_inode(target.as_os_str().as_encoded_bytes(), b"socket:[")
    }

    /// The remote socket behind fd `fd` of thread `tid`, if it is one.
    pub fn lookup(&self, tid: i32, fd: i32) -> Option<RemoteSocket> {
        if self.tables().by_inode.is_empty() {
            return None;
        }
        let ino = Self::inode_of(tid, fd)?;
        self.tables().by_inode.get(&ino).copied()
    }

    /// The server listener behind fd `fd` of thread `tid`, if it is one.
    pub fn lookup_listener(&self, tid: i32, fd: i32) -> Option<u64> {
        if self.tables().listeners.is_empty() {
            return None;
        }
        let ino = Self::inode_of(tid, fd)?;
        self.tables().listeners.get(&ino).copied()
    }
}

/// The inode in a `/proc/PID/fd` link of the form `KIND:[INODE]`.
fn link_inode(link: &[u8], kind: &[u8]) -> Option<u64> {
    let digits = link.strip_prefix(kind)?.strip_suffix(b"]")?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
