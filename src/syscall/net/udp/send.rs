//! UDP sends under `--net`: a destination becomes the loopback address of
//! the peer's relay (on a copy of the program's arguments in scratch
//! memory), or with `--pure` the datagram goes as one round trip, with the
//! IP fields (TTL, TOS) its control messages set. A send on a socket never
//! bound on the server binds it first, then is planned again.
//!
//! Must not send: it only says how the program's call is to run.

use super::{
    MAX_CONTROL, MAX_MMSG, MAX_PAYLOAD, MMSG_LEN, MMSGHDR, MSGHDR, Msghdr, Sock, destination, fail,
    gather, len_u64, parse_msghdr, read_addr, relay_sockaddr, remote_id, sock, usize_of, wildcard,
};
use crate::errno::Errno;
use crate::proto::{IpFields, SockAddr};
use crate::syscall::cmsg;
use crate::syscall::net::ipv4_peer_refused;
use crate::syscall::plan::{AfterNative, Plan, Scratch, Then, Tracee};

/// `sendto(fd, buf, len, flags, addr, addrlen)` with an address.
pub(super) fn send_to_addr(t: &mut impl Tracee, fd: i32, a: [u64; 6], pure: bool) -> Option<Plan> {
    let addr = read_addr(t, a[4], a[5])?;
    let (id, v6) = match sock(t, fd) {
        Sock::Remote { id, v6 } => (id, v6),
        Sock::Unbound { v6 } => {
            return Some(Plan::udp_bind(fd, wildcard(v6), true));
        }
        Sock::Other => return None,
    };
    Some(send_to(t, fd, id, v6, addr, pure, a).unwrap_or_else(fail))
}

/// `write` and `sendto` without an address, on a connected remote socket.
pub(super) fn send_plain(t: &mut impl Tracee, fd: i32, a: [u64; 6], pure: bool) -> Option<Plan> {
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

/// `writev` on a connected remote socket.
pub(super) fn writev(t: &mut impl Tracee, fd: i32, a: [u64; 6], pure: bool) -> Option<Plan> {
    let id = remote_id(t, fd)?;
    if !pure {
        return Some(Plan::Native);
    }
    Some(match gather(t, a[1], a[2]) {
        Ok(data) => pure_send(fd, id, None, data, Then::Number),
        Err(e) => fail(e),
    })
}

/// `sendmsg(fd, msg, flags)`.
pub(super) fn sendmsg(t: &mut impl Tracee, fd: i32, a: [u64; 6], pure: bool) -> Option<Plan> {
    let msg = parse_msghdr(&t.read_bytes(a[1], MSGHDR).ok()?)?;
    let (id, v6) = match sock(t, fd) {
        Sock::Remote { id, v6 } => (id, v6),
        Sock::Unbound { v6 } if msg.name != 0 => {
            return Some(Plan::udp_bind(fd, wildcard(v6), true));
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

fn pure_send(fd: i32, udp: u64, peer: Option<SockAddr>, data: Vec<u8>, then: Then) -> Plan {
    Plan::udp_pure_send(fd, udp, peer, data, IpFields::default(), then)
}

/// `--pure`: the IP fields a `sendmsg`'s control messages set on its
/// datagram to `peer` (the connected peer if `None`), or the error Linux
/// gives for its control buffer. Without `--pure` the send runs natively
/// and the kernel judges it (the relay reads the fields it set).
fn control_fields(
    t: &mut impl Tracee,
    fd: i32,
    v6: bool,
    peer: Option<SockAddr>,
    msg: &Msghdr,
) -> Result<IpFields, Errno> {
    if msg.controllen == 0 {
        return Ok(IpFields::default());
    }
    if msg.controllen > MAX_CONTROL {
        return Err(Errno(libc::ENOBUFS));
    }
    let control = t.read_bytes(msg.control, usize_of(msg.controllen))?;
    let destination = peer.or_else(|| t.remote_socket(fd).and_then(|s| s.peer));
    let mapped = matches!(
        destination,
        Some(SockAddr::V6 { ip, .. }) if std::net::Ipv6Addr::from(ip).to_ipv4_mapped().is_some()
    );
    cmsg::send_fields(cmsg::Path::of(v6, mapped), &control)
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
        let ip = control_fields(t, fd, v6, peer, &msg)?;
        return Ok(Plan::udp_pure_send(fd, id, peer, data, ip, Then::Number));
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

pub(super) fn send_mmsg(t: &mut impl Tracee, fd: i32, a: [u64; 6], pure: bool) -> Option<Plan> {
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
            return Some(Plan::udp_bind(fd, wildcard(v6), true));
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
        let sent = gather(t, first.iov, first.iovlen)
            .and_then(|data| Ok((data, control_fields(t, fd, v6, peer, &first)?)));
        return Some(match sent {
            Ok((data, ip)) => Plan::udp_pure_send(
                fd,
                id,
                peer,
                data,
                ip,
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
