//! A stopped program on plain values, for the planners' tests: memory as
//! a map of addresses to bytes, a cwd, a table of fds and sockets.
//!
//! Tests only. It answers as `src/tracer` does where that matters to a
//! planner (a path of `MAX_PATH` bytes or more is ENAMETOOLONG, unmapped
//! memory is EFAULT) and must not grow behaviour of its own beyond that.

use std::collections::{HashMap, HashSet};

use crate::errno::Errno;
use crate::proto::{Handle, MAX_PATH, SockAddr};
use crate::syscall::paths::{MountPoint, MountTable};
use crate::syscall::plan::{FdKind, Forwarding, RemoteFd, Tracee};
use crate::syscall::sockets::RemoteSocket;

/// A program's view of the world, as the planner asks for it.
#[derive(Debug, Default)]
pub struct FakeTracee {
    /// Memory: each entry a run of bytes starting at its address. A read
    /// must start at the start of a run.
    pub mem: HashMap<u64, Vec<u8>>,
    pub cwd: Vec<u8>,
    pub virtual_cwd: bool,
    pub remote_fds: HashMap<i32, RemoteFd>,
    /// Local directory fds with a path.
    pub local_dirs: HashMap<i32, Vec<u8>>,
    /// `(SO_DOMAIN, SO_TYPE)` of socket fds.
    pub sockets: HashMap<i32, (i32, i32)>,
    /// `SO_PROTOCOL` of socket fds (none given: unknown).
    pub protocols: HashMap<i32, i32>,
    pub remote_sockets: HashMap<i32, RemoteSocket>,
    pub listeners: HashMap<i32, u64>,
    /// Socket fds another fd of the program also refers to.
    pub shared_sockets: HashSet<i32>,
    pub dual_stack: HashSet<i32>,
    pub v6_only: HashSet<i32>,
    pub connect_errors: HashMap<i32, Errno>,
    pub unread: HashMap<i32, usize>,
    pub readable: HashSet<i32>,
    pub epoll: HashMap<i32, Vec<(i32, bool)>>,
    /// Local symlinks: path → target.
    pub local_links: HashMap<Vec<u8>, Vec<u8>>,
    /// Fds that are not open (every other one is).
    pub closed: HashSet<i32>,
}

impl FakeTracee {
    /// A program in `/home` (a local directory).
    pub fn new() -> Self {
        Self {
            cwd: b"/home".to_vec(),
            ..Self::default()
        }
    }

    /// Puts `bytes` at `addr`.
    pub fn put(&mut self, addr: u64, bytes: &[u8]) -> &mut Self {
        self.mem.insert(addr, bytes.to_vec());
        self
    }

    /// Puts the C string `s` (with its NUL) at `addr`.
    pub fn put_str(&mut self, addr: u64, s: &str) -> &mut Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.put(addr, &b)
    }

    /// Makes `fd` a remote placeholder of `handle`, opened as `path`.
    pub fn remote_fd(&mut self, fd: i32, handle: u64, path: &str, flags: i32, is_dir: bool) {
        self.remote_fds.insert(
            fd,
            RemoteFd {
                key: 1000 + handle,
                handle: Handle(handle),
                path: path.as_bytes().to_vec(),
                flags,
                is_dir,
            },
        );
    }
}

impl Tracee for FakeTracee {
    fn local_link(&mut self, path: &[u8]) -> Option<Vec<u8>> {
        self.local_links.get(path).cloned()
    }
    fn tgid(&mut self) -> i32 {
        1
    }
    fn holds_record_locks(&mut self) -> bool {
        false
    }
    fn read_path(&mut self, addr: u64) -> Result<Vec<u8>, Errno> {
        let b = self.mem.get(&addr).ok_or(Errno::EFAULT)?;
        let end = b.iter().position(|&c| c == 0).ok_or(Errno::EFAULT)?;
        // As `tracer::mem::read_cstring`: PATH_MAX counts the NUL.
        if end >= MAX_PATH {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(b[..end].to_vec())
    }
    fn read_bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let b = self.mem.get(&addr).ok_or(Errno::EFAULT)?;
        b.get(..len).map(<[u8]>::to_vec).ok_or(Errno::EFAULT)
    }
    fn cwd(&mut self) -> Result<Vec<u8>, Errno> {
        Ok(self.cwd.clone())
    }
    fn has_virtual_cwd(&mut self) -> bool {
        self.virtual_cwd
    }
    fn fd(&mut self, fd: i32) -> FdKind {
        self.remote_fds
            .get(&fd)
            .map_or(FdKind::Local, |r| FdKind::Remote(r.clone()))
    }
    fn is_open(&mut self, fd: i32) -> bool {
        fd >= 0 && !self.closed.contains(&fd)
    }
    fn local_fd_path(&mut self, fd: i32) -> Option<Vec<u8>> {
        self.local_dirs.get(&fd).cloned()
    }
    fn socket_kind(&mut self, fd: i32) -> Option<(i32, i32)> {
        self.sockets.get(&fd).copied()
    }
    fn socket_protocol(&mut self, fd: i32) -> Option<i32> {
        self.protocols.get(&fd).copied()
    }
    fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket> {
        self.remote_sockets.get(&fd).copied()
    }
    fn remote_listener(&mut self, fd: i32) -> Option<u64> {
        self.listeners.get(&fd).copied()
    }
    fn socket_shared(&mut self, fd: i32) -> bool {
        self.shared_sockets.contains(&fd)
    }
    fn dual_stack(&mut self, fd: i32) -> bool {
        self.dual_stack.contains(&fd)
    }
    fn v6_only(&mut self, fd: i32) -> bool {
        self.v6_only.contains(&fd)
    }
    fn connect_error(&mut self, fd: i32) -> Option<Errno> {
        self.connect_errors.remove(&fd)
    }
    fn socket_unread(&mut self, fd: i32) -> Option<usize> {
        self.unread.get(&fd).copied()
    }
    fn socket_readable(&mut self, fd: i32) -> bool {
        self.readable.contains(&fd)
    }
    fn epoll_inputs(&mut self, epfd: i32) -> Vec<(i32, bool)> {
        self.epoll.get(&epfd).cloned().unwrap_or_default()
    }
    fn udp_relay(&mut self, _: bool, peer: SockAddr) -> Option<SockAddr> {
        // Each IPv4 peer's relay: a loopback port derived from the peer's.
        match peer {
            SockAddr::V4 { port, .. } => Some(SockAddr::V4 {
                ip: [127, 0, 0, 1],
                port: port.wrapping_add(1000),
            }),
            SockAddr::V6 { .. } => None,
        }
    }
}

/// `--mount /r=/srv`, nothing else forwarded.
pub fn mounted() -> Forwarding {
    Forwarding {
        mounts: MountTable::new(vec![MountPoint {
            local: b"/r".to_vec(),
            remote: b"/srv".to_vec(),
        }]),
        ..Forwarding::default()
    }
}

/// `--net` (with `--pure` when `pure`), no mounts.
pub fn net(pure: bool) -> Forwarding {
    Forwarding {
        net: true,
        pure_net: pure,
        ..Forwarding::default()
    }
}
