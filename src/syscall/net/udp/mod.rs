//! UDP sockets under `--net`: which calls on an INET datagram socket go to
//! the server, and how the addresses in them are changed.
//!
//! A remote UDP socket is a local socket bound to loopback (see
//! `client::udp`): a destination becomes the loopback address of the
//! peer's relay before the send runs natively, and a source the kernel
//! reports (a relay's address) becomes the peer again at the call's exit.
//! With `--pure`, sends are one round trip each and a receive on an empty
//! socket first fetches one datagram.
//!
//! Pure: must not send or receive; the client's relays do.
//!
//! This module owns the socket and message-header helpers and the dispatch
//! ([`plan`]), with `bind` and `connect`; sends are planned in `send`,
//! receives in `recv`.

mod recv;
mod send;
#[cfg(test)]
mod tests;

use super::ipv4_peer_refused;
use crate::errno::Errno;
use crate::proto::SockAddr;
use crate::syscall::layout::{decode_sockaddr, encode_sockaddr};
use crate::syscall::plan::{Plan, Tracee};

/// `struct msghdr` and `struct mmsghdr` on x86_64.
const MSGHDR: usize = 56;
const MMSGHDR: u64 = 64;
/// `msg_len` within `struct mmsghdr`.
const MMSG_LEN: u64 = 56;
/// `msg_namelen` within `struct msghdr`.
const MSG_NAMELEN: u64 = 8;
/// The largest UDP payload any family can carry.
const MAX_PAYLOAD: u64 = 65535;
/// The most messages of one `sendmmsg` rewritten at once (the rest are
/// left for the program's next call, as a short count allows); it bounds
/// the scratch memory used below the program's stack pointer.
const MAX_MMSG: u64 = 64;
/// `UIO_MAXIOV`: the kernel's limit on vectors.
const MAX_VEC: u64 = 1024;
/// The largest control buffer a send may have: the kernel copies it into
/// socket memory, at most `net.core.optmem_max` (128 KiB by default since
/// Linux 6.9), and fails with ENOBUFS beyond.
const MAX_CONTROL: u64 = 128 * 1024;
const MSG_WAITFORONE: i32 = 0x10000;

/// Where a receive call reports one datagram's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceSlot {
    /// The address buffer (0: none was asked for).
    pub name: u64,
    /// The `socklen_t` the kernel updates.
    pub len_addr: u64,
    /// The buffer's size, as the program gave it.
    pub room: u32,
}

#[derive(Debug, Clone, Copy)]
struct Msghdr {
    name: u64,
    namelen: u32,
    iov: u64,
    iovlen: u64,
    control: u64,
    controllen: u64,
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(w)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(w)
}

fn parse_msghdr(b: &[u8]) -> Option<Msghdr> {
    (b.len() >= MSGHDR).then(|| Msghdr {
        name: u64_at(b, 0),
        namelen: u32_at(b, 8),
        iov: u64_at(b, 16),
        iovlen: u64_at(b, 24),
        control: u64_at(b, 32),
        controllen: u64_at(b, 40),
    })
}

fn arg_i32(v: u64) -> i32 {
    u32::try_from(v & 0xffff_ffff)
        .unwrap_or(u32::MAX)
        .cast_signed()
}

fn usize_of(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn is_v6(a: &SockAddr) -> bool {
    matches!(a, SockAddr::V6 { .. })
}

/// The wildcard address a socket never bound gets on the server.
fn wildcard(v6: bool) -> SockAddr {
    if v6 {
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
    }
}

/// A destination as a socket of this family uses it: an IPv6 socket sends
/// to an IPv4 address through its mapped form; an IPv4 socket cannot reach
/// an IPv6 address.
pub fn destination(v6: bool, addr: SockAddr) -> Result<SockAddr, Errno> {
    match (v6, addr) {
        (true, SockAddr::V4 { ip, port }) => {
            let mapped = std::net::Ipv4Addr::from(ip).to_ipv6_mapped();
            Ok(SockAddr::V6 {
                ip: mapped.octets(),
                port,
                flowinfo: 0,
                scope_id: 0,
            })
        }
        (false, SockAddr::V6 { .. }) => Err(Errno(libc::EAFNOSUPPORT)),
        (_, a) => Ok(a),
    }
}

/// The address a relay's loopback source stands for, laid out for a buffer
/// of `room` bytes: `(bytes to write, length to report)`. `None` when the
/// source is no relay of ours.
pub fn rewrite_source(
    kernel: &[u8],
    room: u32,
    peer_of: impl FnOnce(std::net::SocketAddr) -> Option<SockAddr>,
) -> Option<(Vec<u8>, u32)> {
    let source = decode_sockaddr(kernel)?;
    let peer = peer_of(std::net::SocketAddr::from(source))?;
    let mut bytes = encode_sockaddr(&peer);
    let actual = u32::try_from(bytes.len()).ok()?;
    bytes.truncate(usize_of(u64::from(room)));
    Some((bytes, actual))
}

/// What the planner knows of a socket fd.
enum Sock {
    /// Bound on the server: its id and family.
    Remote { id: u64, v6: bool },
    /// An INET datagram socket not yet bound on the server.
    Unbound { v6: bool },
    /// Any other socket, an ICMP datagram (ping) socket among them: its
    /// datagrams are not UDP, which the relays and the server's UDP
    /// socket carry (a relay would answer an echo from loopback).
    Other,
}

fn sock(t: &mut impl Tracee, fd: i32) -> Sock {
    if let Some(s) = t.remote_socket(fd) {
        return match s.udp {
            Some(id) => Sock::Remote {
                id,
                v6: is_v6(&s.local),
            },
            None => Sock::Other,
        };
    }
    match t.socket_kind(fd) {
        Some((domain, ty))
            if ty == libc::SOCK_DGRAM
                && (domain == libc::AF_INET || domain == libc::AF_INET6)
                && t.socket_protocol(fd).is_none_or(|p| p == libc::IPPROTO_UDP) =>
        {
            Sock::Unbound {
                v6: domain == libc::AF_INET6,
            }
        }
        _ => Sock::Other,
    }
}

fn remote_id(t: &mut impl Tracee, fd: i32) -> Option<u64> {
    t.remote_socket(fd).and_then(|s| s.udp)
}

fn read_addr(t: &mut impl Tracee, addr: u64, len: u64) -> Option<SockAddr> {
    let bytes = t.read_bytes(addr, usize_of(len.min(128))).ok()?;
    decode_sockaddr(&bytes)
}

/// Whether a `connect` names `AF_UNSPEC` (dissolve the association).
fn is_unspec(t: &mut impl Tracee, addr: u64, len: u64) -> bool {
    len >= 2
        && t.read_bytes(addr, 2).is_ok_and(|b| {
            b.len() == 2 && i32::from(u16::from_ne_bytes([b[0], b[1]])) == libc::AF_UNSPEC
        })
}

fn gather(t: &mut impl Tracee, iov: u64, count: u64) -> Result<Vec<u8>, Errno> {
    if count > MAX_VEC {
        return Err(Errno::EINVAL);
    }
    let vecs = crate::syscall::layout::decode_iovecs(&t.read_bytes(iov, usize_of(count) * 16)?);
    let total = vecs.iter().map(|&(_, l)| l).fold(0u64, u64::saturating_add);
    if total > MAX_PAYLOAD {
        return Err(Errno(libc::EMSGSIZE));
    }
    let mut data = Vec::new();
    for (base, len) in vecs {
        data.extend_from_slice(&t.read_bytes(base, usize_of(len))?);
    }
    Ok(data)
}

/// The relay address for `peer`, encoded.
fn relay_sockaddr(t: &mut impl Tracee, v6: bool, peer: SockAddr) -> Result<Vec<u8>, Errno> {
    t.udp_relay(v6, peer)
        .map(|a| encode_sockaddr(&a))
        .ok_or(Errno(libc::ENOBUFS))
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Plans a call on a UDP socket; `None` when the call does not concern
/// one. `ready`: a `--pure` fetch made this receive ready, so it runs now.
pub fn plan(nr: i64, a: [u64; 6], pure: bool, ready: bool, t: &mut impl Tracee) -> Option<Plan> {
    let fd = arg_i32(a[0]);
    let plain_io = matches!(
        nr,
        libc::SYS_read | libc::SYS_write | libc::SYS_readv | libc::SYS_writev
    );
    if plain_io && !pure {
        // Only stop-and-wait looks at them; with a mount they also stop
        // for files, which must not pay for a socket lookup.
        return None;
    }
    match nr {
        libc::SYS_connect if is_unspec(t, a[1], a[2]) => match sock(t, fd) {
            Sock::Remote { id, .. } => Some(Plan::udp_connect(fd, id, None)),
            _ => None,
        },
        libc::SYS_bind | libc::SYS_connect => bind_or_connect(t, nr, fd, a),
        libc::SYS_sendto if a[4] != 0 => send::send_to_addr(t, fd, a, pure),
        libc::SYS_write | libc::SYS_sendto => send::send_plain(t, fd, a, pure),
        libc::SYS_writev => send::writev(t, fd, a, pure),
        libc::SYS_sendmsg => send::sendmsg(t, fd, a, pure),
        libc::SYS_sendmmsg => send::send_mmsg(t, fd, a, pure),
        libc::SYS_read | libc::SYS_readv | libc::SYS_recvfrom => {
            recv::recv_from(t, nr, fd, a, pure, ready)
        }
        libc::SYS_recvmsg => recv::recv_msg(t, fd, a, pure, ready),
        libc::SYS_recvmmsg => recv::recv_mmsg(t, fd, a, pure, ready),
        _ => None,
    }
}

/// `bind` and `connect` of a datagram socket to an address: a socket
/// never bound on the server is bound there first.
fn bind_or_connect(t: &mut impl Tracee, nr: i64, fd: i32, a: [u64; 6]) -> Option<Plan> {
    let addr = read_addr(t, a[1], a[2])?;
    let (remote, v6) = match sock(t, fd) {
        Sock::Remote { id, v6 } => (Some(id), v6),
        Sock::Unbound { v6 } => (None, v6),
        Sock::Other => return None,
    };
    if nr == libc::SYS_bind {
        return Some(match remote {
            Some(_) => Plan::Return(Errno::EINVAL.as_syscall_return()),
            None if is_v6(&addr) != v6 => {
                Plan::Return(Errno(libc::EAFNOSUPPORT).as_syscall_return())
            }
            None => Plan::udp_bind(fd, addr, false),
        });
    }
    let peer = match ipv4_peer_refused(t, fd, v6, addr, true).and(destination(v6, addr)) {
        Ok(p) => p,
        Err(e) => return Some(Plan::Return(e.as_syscall_return())),
    };
    Some(match remote {
        None => Plan::udp_bind(fd, wildcard(v6), true),
        Some(udp) => Plan::udp_connect(fd, udp, Some(peer)),
    })
}

fn fail(e: Errno) -> Plan {
    Plan::Return(e.as_syscall_return())
}
