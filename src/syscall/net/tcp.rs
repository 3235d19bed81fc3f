//! TCP with `--net`: `connect` and `bind` of an INET stream socket go to
//! the server, `listen` and `accept` on a socket bound there, and
//! `getsockname`/`getpeername` of a remote connection report the server's
//! addresses rather than rscq's loopback stand-ins.
//!
//! Plans only: the connection, the listener and the pump between the
//! program's socket and the stream are the engine's (`src/client/net.rs`).

use super::ipv4_peer_refused;
use crate::errno::Errno;
use crate::proto::SockAddr;
use crate::syscall::layout;
use crate::syscall::plan::{AfterNative, Plan, Planner, Tracee, arg_i32};

impl<T: Tracee> Planner<'_, T> {
    /// The IPv4/IPv6 address a `connect`/`bind` names on an INET socket,
    /// and whether the socket is TCP; `Err` with the plan for any other
    /// case (AF_UNIX, netlink and AF_UNSPEC stay local).
    fn inet_sockaddr(
        &mut self,
        fd: i32,
        addr: u64,
        len: u64,
    ) -> Result<(SockAddr, bool), Box<Plan>> {
        let len = usize::try_from(len.min(128)).unwrap_or(0);
        let bytes = self
            .t
            .read_bytes(addr, len)
            .map_err(|_| Box::new(Plan::fail(Errno::EFAULT)))?;
        let addr = layout::decode_sockaddr(&bytes).ok_or(Box::new(Plan::Native))?;
        match self.t.socket_kind(fd) {
            Some((domain, ty)) if domain == libc::AF_INET || domain == libc::AF_INET6 => {
                Ok((addr, ty == libc::SOCK_STREAM))
            }
            _ => Err(Box::new(Plan::Native)),
        }
    }

    /// `connect(fd, addr, len)` and `bind(fd, addr, len)`.
    pub(super) fn connect_or_bind(&mut self, nr: i64, fd: i32, a: [u64; 6]) -> Plan {
        match self.inet_sockaddr(fd, a[1], a[2]) {
            Err(plan) => *plan,
            Ok((addr, true)) if nr == libc::SYS_connect => {
                let v6 = matches!(self.t.socket_kind(fd), Some((libc::AF_INET6, _)));
                match ipv4_peer_refused(self.t, fd, v6, addr, true) {
                    Ok(()) => Plan::connect_tcp(fd, addr),
                    Err(e) => Plan::fail(e),
                }
            }
            Ok((addr, true)) => Plan::bind_tcp(fd, addr),
            // Remote UDP is not built yet; sending it from this host
            // instead would betray the program.
            Ok((_, false)) => Plan::fail(Errno(libc::ENETUNREACH)),
        }
    }

    /// `listen(fd, backlog)` on a socket bound on the server.
    pub(super) fn listen(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        match self.t.remote_listener(fd) {
            Some(listener) => Plan::listen_tcp(
                fd,
                listener,
                u32::try_from(arg_i32(a[1]).max(0)).unwrap_or(0),
            ),
            None => Plan::Native,
        }
    }

    /// `accept(fd, addr, len)` and `accept4` on a socket listening on the
    /// server.
    pub(super) fn accept(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        match self.t.remote_listener(fd) {
            // The program accepts natively from its loopback listener;
            // at the exit the peer address becomes the remote one.
            Some(_) => Plan::NativeRewritten {
                paths: Vec::new(),
                after: AfterNative::AcceptRemote {
                    addr: a[1],
                    len: a[2],
                },
            },
            None => Plan::Native,
        }
    }

    /// `getsockname(fd, addr, len)` and `getpeername` of a remote
    /// connection: answered with the server's addresses.
    pub(super) fn socket_name(&mut self, nr: i64, fd: i32, a: [u64; 6]) -> Plan {
        let Some(sock) = self.t.remote_socket(fd) else {
            return Plan::Native;
        };
        let addr = if nr == libc::SYS_getpeername {
            match sock.peer {
                Some(p) => p,
                None => return Plan::fail(Errno(libc::ENOTCONN)),
            }
        } else {
            sock.local
        };
        let encoded = layout::encode_sockaddr(&addr);
        let Ok(len_bytes) = self.t.read_bytes(a[2], 4) else {
            return Plan::fail(Errno::EFAULT);
        };
        let room = u32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let room = usize::try_from(room).unwrap_or(0);
        let actual = u32::try_from(encoded.len()).unwrap_or(0);
        let shown = encoded[..encoded.len().min(room)].to_vec();
        Plan::Answer {
            ret: 0,
            writes: vec![(a[1], shown), (a[2], actual.to_ne_bytes().to_vec())],
        }
    }
}
