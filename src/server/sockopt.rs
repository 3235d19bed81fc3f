//! Socket options on the server's sockets: those the program set before
//! `connect`/`bind` are applied to the real socket first, and those it sets
//! later reach the live connection or listener by its addresses.
//!
//! Must not decide which options travel: the client sends only those it
//! forwards.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustix::net::sockopt;

use crate::errno::Errno;
use crate::proto::SockOption;

/// Sets `option` on socket `fd`.
pub fn apply(fd: impl AsFd, option: SockOption) -> Result<(), Errno> {
    let fd = fd.as_fd();
    if let SockOption::BindToDevice(device) = option {
        return crate::sys::server::bind_to_device(fd, &device);
    }
    let size = |n: u32| usize::try_from(n).map_err(|_| Errno::EINVAL);
    match option {
        SockOption::KeepAlive(on) => sockopt::set_socket_keepalive(fd, on),
        SockOption::NoDelay(on) => sockopt::set_tcp_nodelay(fd, on),
        SockOption::RecvBuffer(n) => sockopt::set_socket_recv_buffer_size(fd, size(n)?),
        SockOption::SendBuffer(n) => sockopt::set_socket_send_buffer_size(fd, size(n)?),
        // A lingering close blocks the closing thread (even on a
        // non-blocking socket), here a runtime worker; the pump has sent
        // everything before it closes, so only the abortive close (RST)
        // and switching lingering off are passed on.
        SockOption::Linger(Some(secs)) if secs > 0 => Ok(()),
        SockOption::Linger(secs) => {
            sockopt::set_socket_linger(fd, secs.map(|s| Duration::from_secs(u64::from(s))))
        }
        SockOption::KeepIdle(secs) => {
            sockopt::set_tcp_keepidle(fd, Duration::from_secs(u64::from(secs)))
        }
        SockOption::KeepInterval(secs) => {
            sockopt::set_tcp_keepintvl(fd, Duration::from_secs(u64::from(secs)))
        }
        SockOption::KeepCount(n) => sockopt::set_tcp_keepcnt(fd, n),
        SockOption::IpTos(tos) => set_tos(fd, tos),
        SockOption::Cork(on) => sockopt::set_tcp_cork(fd, on),
        SockOption::UserTimeout(ms) => sockopt::set_tcp_user_timeout(fd, ms),
        SockOption::BindToDevice(_) => Ok(()),
    }
    .map_err(Errno::from)
}

/// `IP_TOS` on a socket of either family: an IPv6 socket's IPv4 traffic
/// (a mapped peer) takes it as well, and its own traffic class is
/// `IPV6_TCLASS`, which the program sets apart.
fn set_tos(fd: std::os::fd::BorrowedFd<'_>, tos: u8) -> rustix::io::Result<()> {
    match sockopt::set_ip_tos(fd, tos) {
        // An IPv6 socket that refuses it has no IPv4 traffic to mark.
        Err(rustix::io::Errno::NOPROTOOPT) => Ok(()),
        other => other,
    }
}

/// Sets every option in `options` on `fd`, stopping at the first failure.
pub fn apply_all(fd: impl AsFd, options: &[SockOption]) -> Result<(), Errno> {
    let fd = fd.as_fd();
    options.iter().try_for_each(|o| apply(fd, *o))
}

/// Where a live connection's socket is: its fd number in this process, and
/// its inode, which tells it from a file that reused the number.
#[derive(Debug, Clone, Copy)]
struct Located {
    fd: RawFd,
    ino: u64,
}

/// The live connections of one client, by (local, peer) address, so options
/// set later reach them. Holds no copy of the sockets: with tens of
/// thousands of connections a copy each would halve how many fit under the
/// open-file limit.
#[derive(Debug, Default)]
pub struct Connections {
    table: Mutex<HashMap<(SocketAddr, SocketAddr), Located>>,
}

/// Removes its connection from the table when dropped.
#[derive(Debug)]
pub struct Registered {
    connections: Arc<Connections>,
    key: (SocketAddr, SocketAddr),
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections.table().remove(&self.key);
    }
}

/// The most connections one client may have options set on.
const MAX_CONNECTIONS: usize = 65536;

impl Connections {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<(SocketAddr, SocketAddr), Located>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers connection `socket` until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, socket: &tokio::net::TcpStream) -> Option<Registered> {
        let key = (socket.local_addr().ok()?, socket.peer_addr().ok()?);
        let located = Located {
            fd: socket.as_raw_fd(),
            ino: rustix::fs::fstat(socket).ok()?.st_ino,
        };
        let mut table = self.table();
        if table.len() >= MAX_CONNECTIONS {
            return None;
        }
        table.insert(key, located);
        Some(Registered {
            connections: self.clone(),
            key,
        })
    }

    /// Sets `option` on the connection from `local` to `peer`.
    pub fn set(
        &self,
        local: SocketAddr,
        peer: SocketAddr,
        option: SockOption,
    ) -> Result<(), Errno> {
        apply(&self.copy_of(local, peer)?, option)
    }

    /// The `struct tcp_info` of the connection from `local` to `peer`.
    pub fn tcp_info(&self, local: SocketAddr, peer: SocketAddr) -> Result<Vec<u8>, Errno> {
        crate::sys::server::tcp_info(self.copy_of(local, peer)?.as_fd())
    }

    /// A copy of the connection from `local` to `peer`'s socket.
    fn copy_of(&self, local: SocketAddr, peer: SocketAddr) -> Result<std::os::fd::OwnedFd, Errno> {
        let Some(located) = self.table().get(&(local, peer)).copied() else {
            return Err(Errno(libc::ENOTCONN));
        };
        // The connection may close (and its number be reused) at any time
        // until the registration is dropped: only a copy that is still the
        // same socket is used.
        let copy = crate::sys::server::dup_number(located.fd).map_err(|_| Errno(libc::ENOTCONN))?;
        if rustix::fs::fstat(&copy).map(|st| st.st_ino).ok() != Some(located.ino) {
            return Err(Errno(libc::ENOTCONN));
        }
        Ok(copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_reach_the_socket() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        apply_all(
            &socket,
            &[
                SockOption::KeepAlive(true),
                SockOption::RecvBuffer(65536),
                SockOption::Linger(Some(0)),
                SockOption::KeepIdle(77),
                SockOption::IpTos(0x28),
                SockOption::Cork(true),
                SockOption::UserTimeout(7000),
            ],
        )
        .expect("apply");
        assert_eq!(sockopt::ip_tos(&socket).expect("get"), 0x28);
        assert!(sockopt::tcp_cork(&socket).expect("get"));
        assert_eq!(sockopt::tcp_user_timeout(&socket).expect("get"), 7000);
        let mut lo = [0u8; crate::proto::DEVICE_NAME];
        lo[..2].copy_from_slice(b"lo");
        apply(&socket, SockOption::BindToDevice(lo)).expect("apply");
        let mut nothing = [0u8; crate::proto::DEVICE_NAME];
        nothing[..9].copy_from_slice(b"no-such-0");
        assert_eq!(
            apply(&socket, SockOption::BindToDevice(nothing)),
            Err(Errno(libc::ENODEV))
        );
        assert!(sockopt::socket_keepalive(&socket).expect("get"));
        // The kernel doubles the size for its bookkeeping.
        assert_eq!(
            sockopt::socket_recv_buffer_size(&socket).expect("get"),
            131072
        );
        assert_eq!(
            sockopt::socket_linger(&socket).expect("get"),
            Some(Duration::ZERO)
        );
        // A lingering timeout stays on the program's socket only.
        apply(&socket, SockOption::Linger(Some(5))).expect("apply");
        assert_eq!(
            sockopt::socket_linger(&socket).expect("get"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            sockopt::tcp_keepidle(&socket).expect("get"),
            Duration::from_secs(77)
        );
    }
}
