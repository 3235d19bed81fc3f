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

use super::layout::{decode_sockaddr, encode_sockaddr};
use super::plan::{AfterNative, Plan, Scratch, Then, Tracee, ipv4_peer_refused};
use crate::errno::Errno;
use crate::proto::SockAddr;

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
    Remote {
        id: u64,
        v6: bool,
    },
    /// An INET datagram socket not yet bound on the server.
    Unbound {
        v6: bool,
    },
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
            if ty == libc::SOCK_DGRAM && (domain == libc::AF_INET || domain == libc::AF_INET6) =>
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
    let vecs = super::layout::decode_iovecs(&t.read_bytes(iov, usize_of(count) * 16)?);
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
            Sock::Remote { id, .. } => Some(Plan::UdpConnect {
                fd,
                udp: id,
                addr: None,
            }),
            _ => None,
        },
        libc::SYS_bind | libc::SYS_connect => {
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
                    None => Plan::UdpBind {
                        fd,
                        addr,
                        replan: false,
                    },
                });
            }
            let peer = match ipv4_peer_refused(t, fd, v6, addr, true).and(destination(v6, addr)) {
                Ok(p) => p,
                Err(e) => return Some(Plan::Return(e.as_syscall_return())),
            };
            Some(match remote {
                None => Plan::UdpBind {
                    fd,
                    addr: wildcard(v6),
                    replan: true,
                },
                Some(udp) => Plan::UdpConnect {
                    fd,
                    udp,
                    addr: Some(peer),
                },
            })
        }
        libc::SYS_sendto if a[4] != 0 => {
            let addr = read_addr(t, a[4], a[5])?;
            let (id, v6) = match sock(t, fd) {
                Sock::Remote { id, v6 } => (id, v6),
                Sock::Unbound { v6 } => {
                    return Some(Plan::UdpBind {
                        fd,
                        addr: wildcard(v6),
                        replan: true,
                    });
                }
                Sock::Other => return None,
            };
            Some(send_to(t, fd, id, v6, addr, pure, a).unwrap_or_else(fail))
        }
        libc::SYS_write | libc::SYS_sendto => {
            let id = remote_id(t, fd)?;
            if !pure {
                return Some(Plan::Native);
            }
            if a[2] > MAX_PAYLOAD {
                return Some(fail(Errno(libc::EMSGSIZE)));
            }
            Some(match t.read_bytes(a[1], usize_of(a[2])) {
                Ok(data) => pure_send(fd, id, None, data, Then::Number),
                Err(e) => fail(e),
            })
        }
        libc::SYS_writev => {
            let id = remote_id(t, fd)?;
            if !pure {
                return Some(Plan::Native);
            }
            Some(match gather(t, a[1], a[2]) {
                Ok(data) => pure_send(fd, id, None, data, Then::Number),
                Err(e) => fail(e),
            })
        }
        libc::SYS_sendmsg => {
            let msg = parse_msghdr(&t.read_bytes(a[1], MSGHDR).ok()?)?;
            let (id, v6) = match sock(t, fd) {
                Sock::Remote { id, v6 } => (id, v6),
                Sock::Unbound { v6 } if msg.name != 0 => {
                    return Some(Plan::UdpBind {
                        fd,
                        addr: wildcard(v6),
                        replan: true,
                    });
                }
                _ => return None,
            };
            let peer = if msg.name == 0 {
                None
            } else {
                Some(read_addr(t, msg.name, u64::from(msg.namelen))?)
            };
            Some(send_msg(t, fd, id, v6, a[1], msg, peer, pure).unwrap_or_else(fail))
        }
        libc::SYS_sendmmsg => send_mmsg(t, fd, a, pure),
        libc::SYS_read | libc::SYS_readv | libc::SYS_recvfrom => {
            let id = remote_id(t, fd)?;
            let flags = if nr == libc::SYS_recvfrom {
                arg_i32(a[3])
            } else {
                0
            };
            if let Some(p) = pure_recv(t, fd, id, flags, pure, ready) {
                return Some(p);
            }
            if nr != libc::SYS_recvfrom || a[4] == 0 || a[5] == 0 {
                return Some(Plan::Native);
            }
            let Ok(room) = t.read_bytes(a[5], 4) else {
                return Some(Plan::Native);
            };
            Some(Plan::NativeRewritten {
                paths: Vec::new(),
                after: AfterNative::UdpSources {
                    slots: vec![SourceSlot {
                        name: a[4],
                        len_addr: a[5],
                        room: u32_at(&room, 0),
                    }],
                    counted: false,
                },
            })
        }
        libc::SYS_recvmsg => {
            let id = remote_id(t, fd)?;
            if let Some(p) = pure_recv(t, fd, id, arg_i32(a[2]), pure, ready) {
                return Some(p);
            }
            let Some(msg) = t
                .read_bytes(a[1], MSGHDR)
                .ok()
                .and_then(|b| parse_msghdr(&b))
            else {
                return Some(Plan::Native);
            };
            if msg.name == 0 {
                return Some(Plan::Native);
            }
            Some(Plan::NativeRewritten {
                paths: Vec::new(),
                after: AfterNative::UdpSources {
                    slots: vec![SourceSlot {
                        name: msg.name,
                        len_addr: a[1] + MSG_NAMELEN,
                        room: msg.namelen,
                    }],
                    counted: false,
                },
            })
        }
        libc::SYS_recvmmsg => {
            let id = remote_id(t, fd)?;
            let flags = arg_i32(a[3]);
            if let Some(p) = pure_recv(t, fd, id, flags, pure, ready) {
                return Some(p);
            }
            let n = a[2].min(MAX_VEC);
            let slots = match t.read_bytes(a[1], usize_of(n * MMSGHDR)) {
                Ok(b) => b
                    .chunks_exact(usize_of(MMSGHDR))
                    .zip(0u64..)
                    .filter_map(|(entry, i)| {
                        let msg = parse_msghdr(entry)?;
                        Some(SourceSlot {
                            name: msg.name,
                            len_addr: a[1] + i * MMSGHDR + MSG_NAMELEN,
                            room: msg.namelen,
                        })
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            // Stop-and-wait fetches one datagram: the call must not wait
            // for a whole vector of them.
            let values = if pure {
                vec![(3, u64::from((flags | MSG_WAITFORONE).cast_unsigned()))]
            } else {
                Vec::new()
            };
            Some(Plan::NativeScratch(Box::new(Scratch {
                scratch: Vec::new(),
                relocs: Vec::new(),
                args: Vec::new(),
                values,
                after: AfterNative::UdpSources {
                    slots,
                    counted: true,
                },
            })))
        }
        _ => None,
    }
}

fn fail(e: Errno) -> Plan {
    Plan::Return(e.as_syscall_return())
}

fn pure_send(fd: i32, udp: u64, peer: Option<SockAddr>, data: Vec<u8>, then: Then) -> Plan {
    Plan::UdpPureSend {
        fd,
        udp,
        peer,
        data,
        then,
    }
}

/// `--pure`: a receive on an empty socket fetches first.
fn pure_recv(
    t: &mut impl Tracee,
    fd: i32,
    udp: u64,
    flags: i32,
    pure: bool,
    ready: bool,
) -> Option<Plan> {
    if !pure || ready || t.socket_unread(fd).unwrap_or(0) > 0 {
        return None;
    }
    Some(Plan::UdpPureRecv {
        fd,
        udp,
        dontwait: flags & libc::MSG_DONTWAIT != 0,
    })
}

fn send_to(
    t: &mut impl Tracee,
    fd: i32,
    id: u64,
    v6: bool,
    addr: SockAddr,
    pure: bool,
    a: [u64; 6],
) -> Result<Plan, Errno> {
    ipv4_peer_refused(t, fd, v6, addr, false)?;
    let peer = destination(v6, addr)?;
    if a[2] > MAX_PAYLOAD {
        return Err(Errno(libc::EMSGSIZE));
    }
    if pure {
        let data = t.read_bytes(a[1], usize_of(a[2]))?;
        return Ok(pure_send(fd, id, Some(peer), data, Then::Number));
    }
    let relay = relay_sockaddr(t, v6, peer)?;
    let len = len_u64(relay.len());
    Ok(Plan::NativeScratch(Box::new(Scratch {
        scratch: relay,
        relocs: Vec::new(),
        args: vec![(4, 0)],
        values: vec![(5, len)],
        after: AfterNative::Nothing,
    })))
}

#[allow(clippy::too_many_arguments)]
fn send_msg(
    t: &mut impl Tracee,
    fd: i32,
    id: u64,
    v6: bool,
    msg_addr: u64,
    msg: Msghdr,
    peer: Option<SockAddr>,
    pure: bool,
) -> Result<Plan, Errno> {
    if let Some(p) = peer {
        ipv4_peer_refused(t, fd, v6, p, false)?;
    }
    let peer = peer.map(|p| destination(v6, p)).transpose()?;
    if pure {
        let data = gather(t, msg.iov, msg.iovlen)?;
        return Ok(pure_send(fd, id, peer, data, Then::Number));
    }
    let Some(peer) = peer else {
        return Ok(Plan::Native);
    };
    let relay = relay_sockaddr(t, v6, peer)?;
    // A copy of the program's msghdr whose name is the relay's address.
    let mut scratch = t.read_bytes(msg_addr, MSGHDR)?;
    scratch[0..8].copy_from_slice(&len_u64(MSGHDR).to_ne_bytes());
    let namelen = u32::try_from(relay.len()).unwrap_or(0);
    scratch[8..12].copy_from_slice(&namelen.to_ne_bytes());
    scratch.extend_from_slice(&relay);
    Ok(Plan::NativeScratch(Box::new(Scratch {
        scratch,
        relocs: vec![0],
        args: vec![(1, 0)],
        values: Vec::new(),
        after: AfterNative::Nothing,
    })))
}

fn send_mmsg(t: &mut impl Tracee, fd: i32, a: [u64; 6], pure: bool) -> Option<Plan> {
    let n = a[2].min(if pure { 1 } else { MAX_MMSG });
    if n == 0 {
        return None;
    }
    let mut vec = t.read_bytes(a[1], usize_of(n * MMSGHDR)).ok()?;
    let msgs: Vec<Msghdr> = vec
        .chunks_exact(usize_of(MMSGHDR))
        .filter_map(parse_msghdr)
        .collect();
    let named = msgs.iter().any(|m| m.name != 0);
    let (id, v6) = match sock(t, fd) {
        Sock::Remote { id, v6 } => (id, v6),
        Sock::Unbound { v6 } if named => {
            return Some(Plan::UdpBind {
                fd,
                addr: wildcard(v6),
                replan: true,
            });
        }
        _ => return None,
    };
    if pure {
        // Stop-and-wait: one message per call, which a short count allows.
        let first = *msgs.first()?;
        let peer = if first.name == 0 {
            None
        } else {
            let named = read_addr(t, first.name, u64::from(first.namelen));
            match named.map(|p| ipv4_peer_refused(t, fd, v6, p, false).and(destination(v6, p))) {
                Some(Ok(p)) => Some(p),
                Some(Err(e)) => return Some(fail(e)),
                None => return None,
            }
        };
        return Some(match gather(t, first.iov, first.iovlen) {
            Ok(data) => pure_send(
                fd,
                id,
                peer,
                data,
                Then::FirstMessageSent {
                    len_addr: a[1] + MMSG_LEN,
                },
            ),
            Err(e) => fail(e),
        });
    }
    if !named {
        return Some(Plan::Native);
    }
    let mut relocs = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        if m.name == 0 {
            continue;
        }
        let relay = match read_addr(t, m.name, u64::from(m.namelen))
            .ok_or(Errno::EINVAL)
            .and_then(|p| ipv4_peer_refused(t, fd, v6, p, false).and(destination(v6, p)))
            .and_then(|p| relay_sockaddr(t, v6, p))
        {
            Ok(r) => r,
            Err(e) => return Some(fail(e)),
        };
        let at = i * usize_of(MMSGHDR);
        let name_at = len_u64(vec.len());
        vec[at..at + 8].copy_from_slice(&name_at.to_ne_bytes());
        let namelen = u32::try_from(relay.len()).unwrap_or(0);
        vec[at + 8..at + 12].copy_from_slice(&namelen.to_ne_bytes());
        vec.extend_from_slice(&relay);
        relocs.push(at);
    }
    Some(Plan::NativeScratch(Box::new(Scratch {
        scratch: vec,
        relocs,
        args: vec![(1, 0)],
        values: vec![(2, n)],
        after: AfterNative::MsgLens { vec: a[1] },
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::plan::FdKind;
    use crate::tracer::registry::RemoteSocket;
    use std::collections::HashMap;

    /// A program with a few sockets and memory.
    #[derive(Default)]
    struct Fake {
        mem: HashMap<u64, Vec<u8>>,
        remote: HashMap<i32, RemoteSocket>,
        kinds: HashMap<i32, (i32, i32)>,
        unread: usize,
    }

    impl Tracee for Fake {
        fn tgid(&mut self) -> i32 {
            1
        }
        fn holds_record_locks(&mut self) -> bool {
            false
        }
        fn read_path(&mut self, _: u64) -> Result<Vec<u8>, Errno> {
            Err(Errno::EFAULT)
        }
        fn read_bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
            let b = self.mem.get(&addr).ok_or(Errno::EFAULT)?;
            Ok(b[..len.min(b.len())].to_vec())
        }
        fn cwd(&mut self) -> Result<Vec<u8>, Errno> {
            Ok(b"/".to_vec())
        }
        fn has_virtual_cwd(&mut self) -> bool {
            false
        }
        fn fd(&mut self, _: i32) -> FdKind {
            FdKind::Local
        }
        fn local_fd_path(&mut self, _: i32) -> Option<Vec<u8>> {
            None
        }
        fn socket_kind(&mut self, fd: i32) -> Option<(i32, i32)> {
            self.kinds.get(&fd).copied()
        }
        fn dual_stack(&mut self, _fd: i32) -> bool {
            false
        }
        fn v6_only(&mut self, _fd: i32) -> bool {
            false
        }
        fn socket_readable(&mut self, _fd: i32) -> bool {
            false
        }
        fn connect_error(&mut self, _fd: i32) -> Option<Errno> {
            None
        }
        fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket> {
            self.remote.get(&fd).copied()
        }
        fn remote_listener(&mut self, _: i32) -> Option<u64> {
            None
        }
        fn socket_unread(&mut self, _: i32) -> Option<usize> {
            Some(self.unread)
        }
        fn epoll_inputs(&mut self, _: i32) -> Vec<(i32, bool)> {
            Vec::new()
        }
        fn udp_relay(&mut self, _: bool, peer: SockAddr) -> Option<SockAddr> {
            // Each peer's relay: a loopback port derived from the peer's.
            match peer {
                SockAddr::V4 { port, .. } => Some(SockAddr::V4 {
                    ip: [127, 0, 0, 1],
                    port: port + 1000,
                }),
                SockAddr::V6 { .. } => None,
            }
        }
    }

    const WEB: SockAddr = SockAddr::V4 {
        ip: [10, 0, 0, 2],
        port: 53,
    };

    fn fake() -> Fake {
        let mut f = Fake::default();
        f.kinds.insert(3, (libc::AF_INET, libc::SOCK_DGRAM));
        f.kinds.insert(4, (libc::AF_INET, libc::SOCK_STREAM));
        f.kinds.insert(5, (libc::AF_INET6, libc::SOCK_DGRAM));
        f.mem.insert(0x1000, encode_sockaddr(&WEB));
        f.mem.insert(0x2000, b"query".to_vec());
        f
    }

    fn make_remote(f: &mut Fake, fd: i32) {
        f.remote.insert(
            fd,
            RemoteSocket {
                local: SockAddr::V4 {
                    ip: [0; 4],
                    port: 4000,
                },
                peer: None,
                pure_pump: None,
                udp: Some(7),
            },
        );
    }

    #[test]
    fn first_send_on_a_socket_binds_it_remotely_then_replans() {
        let mut f = fake();
        let a = [3, 0x2000, 5, 0, 0x1000, 16];
        assert_eq!(
            plan(libc::SYS_sendto, a, false, false, &mut f),
            Some(Plan::UdpBind {
                fd: 3,
                addr: wildcard(false),
                replan: true
            })
        );
        make_remote(&mut f, 3);
        let relay = encode_sockaddr(&SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 1053,
        });
        assert_eq!(
            plan(libc::SYS_sendto, a, false, false, &mut f),
            Some(Plan::NativeScratch(Box::new(Scratch {
                scratch: relay,
                relocs: vec![],
                args: vec![(4, 0)],
                values: vec![(5, 16)],
                after: AfterNative::Nothing
            })))
        );
        // Stop-and-wait: the datagram itself goes as one round trip.
        assert_eq!(
            plan(libc::SYS_sendto, a, true, false, &mut f),
            Some(Plan::UdpPureSend {
                fd: 3,
                udp: 7,
                peer: Some(WEB),
                data: b"query".to_vec(),
                then: Then::Number
            })
        );
    }

    #[test]
    fn tcp_and_unix_sockets_are_not_udp_business() {
        let mut f = fake();
        assert_eq!(
            plan(
                libc::SYS_connect,
                [4, 0x1000, 16, 0, 0, 0],
                false,
                false,
                &mut f
            ),
            None
        );
        assert_eq!(
            plan(
                libc::SYS_sendto,
                [9, 0x2000, 5, 0, 0x1000, 16],
                false,
                false,
                &mut f
            ),
            None
        );
        assert_eq!(
            plan(
                libc::SYS_recvmsg,
                [3, 0x3000, 0, 0, 0, 0],
                false,
                false,
                &mut f
            ),
            None
        );
    }

    #[test]
    fn connect_to_af_unspec_dissolves_a_remote_association() {
        let mut f = fake();
        f.mem.insert(0x7000, vec![0u8; 16]);
        let a = [3, 0x7000, 16, 0, 0, 0];
        // A local socket's association is the kernel's business.
        assert_eq!(plan(libc::SYS_connect, a, false, false, &mut f), None);
        make_remote(&mut f, 3);
        assert_eq!(
            plan(libc::SYS_connect, a, false, false, &mut f),
            Some(Plan::UdpConnect {
                fd: 3,
                udp: 7,
                addr: None
            })
        );
    }

    #[test]
    fn bind_twice_or_across_families_fails_as_the_kernel_would() {
        let mut f = fake();
        assert_eq!(
            plan(
                libc::SYS_bind,
                [5, 0x1000, 16, 0, 0, 0],
                false,
                false,
                &mut f
            ),
            Some(Plan::Return(-i64::from(libc::EAFNOSUPPORT)))
        );
        make_remote(&mut f, 3);
        assert_eq!(
            plan(
                libc::SYS_bind,
                [3, 0x1000, 16, 0, 0, 0],
                false,
                false,
                &mut f
            ),
            Some(Plan::Return(-i64::from(libc::EINVAL)))
        );
    }

    #[test]
    fn ipv6_sockets_reach_ipv4_peers_mapped() {
        assert_eq!(
            destination(true, WEB),
            Ok(SockAddr::V6 {
                ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2],
                port: 53,
                flowinfo: 0,
                scope_id: 0
            })
        );
        assert_eq!(
            destination(false, destination(true, WEB).unwrap()),
            Err(Errno(libc::EAFNOSUPPORT))
        );
    }

    #[test]
    fn receives_rewrite_sources_and_pure_ones_fetch_first() {
        let mut f = fake();
        make_remote(&mut f, 3);
        f.mem.insert(0x4000, 16u32.to_ne_bytes().to_vec());
        let a = [3, 0x2000, 512, 0, 0x5000, 0x4000];
        let rewrite = Plan::NativeRewritten {
            paths: vec![],
            after: AfterNative::UdpSources {
                slots: vec![SourceSlot {
                    name: 0x5000,
                    len_addr: 0x4000,
                    room: 16,
                }],
                counted: false,
            },
        };
        assert_eq!(
            plan(libc::SYS_recvfrom, a, false, false, &mut f),
            Some(rewrite.clone())
        );
        assert_eq!(
            plan(libc::SYS_recvfrom, a, true, false, &mut f),
            Some(Plan::UdpPureRecv {
                fd: 3,
                udp: 7,
                dontwait: false
            })
        );
        // Once the fetch delivered, the call runs and is rewritten.
        assert_eq!(
            plan(libc::SYS_recvfrom, a, true, true, &mut f),
            Some(rewrite)
        );
        f.unread = 5;
        assert!(matches!(
            plan(libc::SYS_recvfrom, a, true, false, &mut f),
            Some(Plan::NativeRewritten { .. })
        ));
    }

    #[test]
    fn sources_name_the_peer_a_relay_stands_for() {
        let relay = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 1053,
        };
        let peer_of = |a: std::net::SocketAddr| (a.port() == 1053).then_some(WEB);
        assert_eq!(
            rewrite_source(&encode_sockaddr(&relay), 16, peer_of),
            Some((encode_sockaddr(&WEB), 16))
        );
        // A small buffer gets the start, and the full length is reported.
        assert_eq!(
            rewrite_source(&encode_sockaddr(&relay), 4, peer_of),
            Some((encode_sockaddr(&WEB)[..4].to_vec(), 16))
        );
        let stranger = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 9,
        };
        assert_eq!(
            rewrite_source(&encode_sockaddr(&stranger), 16, peer_of),
            None
        );
    }

    #[test]
    fn sendmmsg_with_names_runs_on_a_rewritten_copy() {
        let mut f = fake();
        make_remote(&mut f, 3);
        let mut entry = vec![0u8; 64];
        entry[0..8].copy_from_slice(&0x1000u64.to_ne_bytes());
        entry[8..12].copy_from_slice(&16u32.to_ne_bytes());
        let mut vec = entry.clone();
        vec.extend_from_slice(&[0u8; 64]);
        f.mem.insert(0x6000, vec);
        let Some(Plan::NativeScratch(s)) = plan(
            libc::SYS_sendmmsg,
            [3, 0x6000, 2, 0, 0, 0],
            false,
            false,
            &mut f,
        ) else {
            panic!("not rewritten");
        };
        let Scratch {
            scratch,
            relocs,
            args,
            values,
            after,
        } = *s;
        assert_eq!(relocs, vec![0]);
        assert_eq!(args, vec![(1, 0)]);
        assert_eq!(values, vec![(2, 2)]);
        assert_eq!(after, AfterNative::MsgLens { vec: 0x6000 });
        assert_eq!(u64_at(&scratch, 0), 128, "name points past the vector");
        assert_eq!(
            decode_sockaddr(&scratch[128..]),
            Some(SockAddr::V4 {
                ip: [127, 0, 0, 1],
                port: 1053
            })
        );
        // The second entry has no name: untouched.
        assert_eq!(&scratch[64..128], &[0u8; 64]);
    }
}
