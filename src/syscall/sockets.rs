//! The program's sockets whose other end is on the server (`--net`):
//! [`RemoteSocket`], what the planner learns about one through
//! [`super::plan::Tracee::remote_socket`], and [`SocketRegistry`], the table
//! of them that the tracer thread and the engine share.
//!
//! Plain shared state keyed by socket inode. Must not read `/proc` or touch
//! an fd: callers find the inode (the tracer from the fd's `/proc` link, the
//! engine by `fstat` of its copy of the socket).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::errno::Errno;
use crate::proto::{DatagramKind, SockAddr};

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
    listening: HashSet<u64>,
    /// Listener id → where the program's socket listens on loopback.
    listener_addrs: HashMap<u64, SocketAddr>,
    /// Connections rscq made to a program listener, by rscq's own port,
    /// waiting for the program's `accept` to claim them.
    incoming: HashMap<u16, RemoteSocket>,
    /// Delivered connections the program accepted, by rscq's own port:
    /// `(tgid, fd, socket inode)` of the program's end.
    claimed: HashMap<u16, (i32, i32, u64)>,
    /// The server's errno for connects that failed after their caller had
    /// gone on; `SO_ERROR` reports it once.
    connect_errors: HashMap<u64, Errno>,
    /// IPv6 sockets bound dual-stack on the server whose local stand-in
    /// the kernel made IPv6-only (bound to `::1`).
    dual_stack: HashSet<u64>,
    /// UDP sockets that stand for the program's ICMP echo ("ping") or
    /// UDP-Lite sockets: their server socket is of that kind.
    datagram_kinds: HashMap<u64, DatagramKind>,
}

/// A program socket whose other end is on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteSocket {
    pub local: SockAddr,
    /// `None` for a bound or listening socket.
    pub peer: Option<SockAddr>,
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
            SockAddr::V6 {
                ip: [0; 16],
                port: 0,
                flowinfo: 0,
                scope_id: 0,
            }
        } else {
            SockAddr::V4 {
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
    fn tables(&self) -> MutexGuard<'_, SocketTables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, ino: u64, s: RemoteSocket) {
        self.tables().by_inode.insert(ino, s);
    }

    /// The remote connect of socket `ino`, which went on asynchronously,
    /// failed with `errno`.
    pub fn set_connect_error(&self, ino: u64, errno: Errno) {
        self.tables().connect_errors.insert(ino, errno);
    }

    /// The failure of socket `ino`'s asynchronous connect, once.
    pub fn take_connect_error(&self, ino: u64) -> Option<Errno> {
        self.tables().connect_errors.remove(&ino)
    }

    /// Socket `ino` is bound dual-stack on the server (see the field).
    pub fn set_dual_stack(&self, ino: u64) {
        self.tables().dual_stack.insert(ino);
    }

    pub fn is_dual_stack(&self, ino: u64) -> bool {
        self.tables().dual_stack.contains(&ino)
    }

    /// Socket `ino` is the local UDP stand-in of a socket of `kind`.
    pub fn set_datagram_kind(&self, ino: u64, kind: DatagramKind) {
        self.tables().datagram_kinds.insert(ino, kind);
    }

    /// What the server socket of UDP socket `ino` is.
    pub fn datagram_kind(&self, ino: u64) -> DatagramKind {
        self.tables()
            .datagram_kinds
            .get(&ino)
            .copied()
            .unwrap_or_default()
    }

    pub fn contains(&self, ino: u64) -> bool {
        self.tables().by_inode.contains_key(&ino)
    }

    pub fn remove(&self, ino: u64) {
        let mut t = self.tables();
        t.by_inode.remove(&ino);
        t.connect_errors.remove(&ino);
        t.dual_stack.remove(&ino);
        t.datagram_kinds.remove(&ino);
        t.listening.remove(&ino);
        if let Some(id) = t.listeners.remove(&ino) {
            t.listener_addrs.remove(&id);
        }
    }

    pub fn add_listener(&self, ino: u64, id: u64, local: SocketAddr) {
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

    pub fn listener_addr(&self, id: u64) -> Option<SocketAddr> {
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

    /// Whether any socket is registered: if none is, a caller need not
    /// find an fd's inode to know it is not remote.
    pub fn has_sockets(&self) -> bool {
        !self.tables().by_inode.is_empty()
    }

    /// Whether any socket is bound or listening on the server.
    pub fn has_listeners(&self) -> bool {
        !self.tables().listeners.is_empty()
    }

    /// The remote socket with inode `ino`, if it is one.
    pub fn socket(&self, ino: u64) -> Option<RemoteSocket> {
        self.tables().by_inode.get(&ino).copied()
    }

    /// The server listener of the socket with inode `ino`, if it is one.
    pub fn listener(&self, ino: u64) -> Option<u64> {
        self.tables().listeners.get(&ino).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(port: u16) -> RemoteSocket {
        RemoteSocket {
            local: SockAddr::V4 {
                ip: [127, 0, 0, 1],
                port,
            },
            peer: Some(SockAddr::V4 {
                ip: [10, 0, 0, 1],
                port: 80,
            }),
            pure_pump: None,
            udp: None,
        }
    }

    fn loopback(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn sockets_are_found_by_inode_until_removed() {
        let sockets = SocketRegistry::default();
        assert!(!sockets.has_sockets());
        sockets.insert(7, connected(1000));
        assert!(sockets.has_sockets() && sockets.contains(7));
        assert_eq!(sockets.socket(7), Some(connected(1000)));
        assert_eq!(sockets.socket(8), None);
        sockets.remove(7);
        assert_eq!(sockets.socket(7), None);
        assert!(!sockets.has_sockets());
    }

    #[test]
    fn a_bound_socket_listens_only_once_told() {
        let sockets = SocketRegistry::default();
        sockets.set_listening(3); // not bound: ignored
        assert!(sockets.listening().is_empty());
        sockets.add_listener(3, 30, loopback(4000));
        assert!(sockets.has_listeners());
        assert_eq!(sockets.bound_only(), [(3, 30)]);
        assert_eq!(sockets.bound_id(3), Some(30));
        sockets.set_listening(3);
        assert_eq!(sockets.listening(), [(3, 30)]);
        assert!(sockets.bound_only().is_empty());
        assert_eq!(sockets.bound_id(3), None);
        assert_eq!(sockets.listener(3), Some(30));
        assert_eq!(sockets.listener_addr(30), Some(loopback(4000)));
    }

    #[test]
    fn removing_a_socket_forgets_everything_about_it() {
        let sockets = SocketRegistry::default();
        sockets.insert(5, RemoteSocket::connecting(false));
        sockets.add_listener(5, 50, loopback(4001));
        sockets.set_listening(5);
        sockets.set_dual_stack(5);
        sockets.set_connect_error(5, Errno::ECONNRESET);
        sockets.remove(5);
        assert!(!sockets.contains(5) && !sockets.is_dual_stack(5));
        assert_eq!(sockets.take_connect_error(5), None);
        assert_eq!(sockets.listener(5), None);
        assert_eq!(sockets.listener_addr(50), None);
        assert!(sockets.listening().is_empty() && !sockets.has_listeners());
    }

    #[test]
    fn one_time_facts_are_given_once() {
        let sockets = SocketRegistry::default();
        sockets.set_connect_error(9, Errno::ECONNRESET);
        assert_eq!(sockets.take_connect_error(9), Some(Errno::ECONNRESET));
        assert_eq!(sockets.take_connect_error(9), None);
        sockets.add_incoming(40000, connected(40000));
        assert_eq!(sockets.take_incoming(40000), Some(connected(40000)));
        assert_eq!(sockets.take_incoming(40000), None);
        sockets.record_claim(40000, 100, 4, 11);
        assert_eq!(sockets.owner_of_incoming(40000), Some((100, 4, 11)));
        assert_eq!(sockets.owner_of_incoming(40000), None);
    }

    #[test]
    fn a_connecting_socket_shows_the_unspecified_address() {
        let v4 = RemoteSocket::connecting(false);
        assert_eq!(
            v4.local,
            SockAddr::V4 {
                ip: [0; 4],
                port: 0
            }
        );
        assert_eq!(v4.peer, None);
        assert!(matches!(
            RemoteSocket::connecting(true).local,
            SockAddr::V6 { port: 0, .. }
        ));
    }
}
