//! UDP receives under `--net`: each source the kernel reports names a
//! relay, and becomes the remote peer it stands for at the call's exit
//! ([`AfterNative::UdpSources`]); with `--pure`, a receive on an empty
//! socket first fetches one datagram.
//!
//! Must not receive: it only says where the sources will be.

use super::{
    MAX_VEC, MMSGHDR, MSG_NAMELEN, MSG_WAITFORONE, MSGHDR, SourceSlot, arg_i32, parse_msghdr,
    remote_id, u32_at, usize_of,
};
use crate::syscall::plan::{AfterNative, Plan, Scratch, Tracee};

/// `read`, `readv` and `recvfrom(fd, buf, len, flags, addr, addrlen)`.
pub(super) fn recv_from(
    t: &mut impl Tracee,
    nr: i64,
    fd: i32,
    a: [u64; 6],
    pure: bool,
    ready: bool,
) -> Option<Plan> {
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

/// `recvmsg(fd, msg, flags)`.
pub(super) fn recv_msg(
    t: &mut impl Tracee,
    fd: i32,
    a: [u64; 6],
    pure: bool,
    ready: bool,
) -> Option<Plan> {
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

/// `recvmmsg(fd, vec, n, flags, timeout)`.
pub(super) fn recv_mmsg(
    t: &mut impl Tracee,
    fd: i32,
    a: [u64; 6],
    pure: bool,
    ready: bool,
) -> Option<Plan> {
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
    Some(Plan::udp_pure_recv(
        fd,
        udp,
        flags & libc::MSG_DONTWAIT != 0,
    ))
}
