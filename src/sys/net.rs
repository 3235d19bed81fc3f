//! Socket calls `--net` needs that rustix does not wrap: options given as
//! raw bytes (`IP_RECVERR`, `ICMP_FILTER`), a socket filter, messages with
//! any control messages (`IP_TTL` and the like) and the error queue, and
//! whether a TCP socket is at its urgent mark.
//!
//! Wrappers only: must not decide when they are used.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::errno::Errno;

/// `setsockopt(2)` with `value` as the option's bytes.
pub fn set_option(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> std::io::Result<()> {
    let len = libc::socklen_t::try_from(value.len())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `value` is a live allocation of `len` bytes the kernel only
    // reads; the fd is borrowed, so it stays open for the call.
    let ret = unsafe { libc::setsockopt(fd.as_raw_fd(), level, name, value.as_ptr().cast(), len) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How much of one message [`recv_message`] got.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    pub name: usize,
    pub control: usize,
    pub payload: usize,
}

/// One message of the socket's error queue (`MSG_ERRQUEUE`, never
/// waiting): the original destination goes to `name`, the quoted payload
/// to `payload` and the control messages to `control`.
pub fn recv_error_queue(
    fd: BorrowedFd<'_>,
    name: &mut [u8],
    payload: &mut [u8],
    control: &mut [u8],
) -> std::io::Result<Received> {
    recv_message(
        fd,
        name,
        payload,
        control,
        libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
    )
}

/// `recvmsg(2)` of one message: its source goes to `name`, its bytes to
/// `payload` and its control messages to `control`.
pub fn recv_message(
    fd: BorrowedFd<'_>,
    name: &mut [u8],
    payload: &mut [u8],
    control: &mut [u8],
    flags: libc::c_int,
) -> std::io::Result<Received> {
    let mut iov = libc::iovec {
        iov_base: payload.as_mut_ptr().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: `msghdr` is plain old data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = name.as_mut_ptr().cast();
    msg.msg_namelen = libc::socklen_t::try_from(name.len()).unwrap_or(0);
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len();
    // SAFETY: every pointer in `msg` points to a live, exclusively borrowed
    // buffer of the length given beside it, which outlives the call; the
    // kernel writes at most those lengths. The fd is borrowed.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &raw mut msg, flags) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Received {
        name: usize::try_from(msg.msg_namelen)
            .unwrap_or(0)
            .min(name.len()),
        control: msg.msg_controllen.min(control.len()),
        payload: usize::try_from(ret).unwrap_or(0).min(payload.len()),
    })
}

/// `sendmsg(2)` of `payload` to `name` (a `struct sockaddr_in` or
/// `sockaddr_in6` as bytes; empty: the connected peer) with the control
/// messages `control`. Returns the count sent.
pub fn send_message(
    fd: BorrowedFd<'_>,
    payload: &[u8],
    name: &[u8],
    control: &[u8],
) -> std::io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr().cast_mut().cast(),
        iov_len: payload.len(),
    };
    // SAFETY: `msghdr` is plain old data; all-zero is a valid empty value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if !name.is_empty() {
        msg.msg_name = name.as_ptr().cast_mut().cast();
        msg.msg_namelen = libc::socklen_t::try_from(name.len())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    }
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if !control.is_empty() {
        msg.msg_control = control.as_ptr().cast_mut().cast();
        msg.msg_controllen = control.len();
    }
    // SAFETY: every pointer in `msg` points to a live buffer of the length
    // given beside it, which outlives the call; `sendmsg` only reads
    // through them (the casts to `*mut` are the C API's, not writes). The
    // fd is borrowed.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
    usize::try_from(ret).map_err(|_| std::io::Error::last_os_error())
}

/// Attaches a classic BPF filter that drops every packet: the socket still
/// sends, but nothing reaches it (`SO_ATTACH_FILTER`, socket(7)). Needs no
/// privilege.
pub fn drop_all_incoming(socket: impl AsFd) -> Result<(), Errno> {
    // BPF_RET | BPF_K with k = 0: keep 0 bytes of each packet.
    let mut program = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    attach_filter(socket, &mut program)
}

/// `setsockopt(SO_ATTACH_FILTER)` (socket(7)) of the classic BPF `program`.
fn attach_filter(socket: impl AsFd, program: &mut [libc::sock_filter]) -> Result<(), Errno> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?,
        filter: program.as_mut_ptr(),
    };
    let len =
        libc::socklen_t::try_from(size_of::<libc::sock_fprog>()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `fprog` points at `program`, both live across the call, and
    // `len` is the size of `fprog`; the kernel copies the filter in.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::from_ref(&fprog).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_io(&std::io::Error::last_os_error()))
    }
}

/// `SIOCATMARK` (`asm-generic/sockios.h`), which the libc crate does not
/// define for Linux.
pub const SIOCATMARK: libc::Ioctl = 0x8905;

/// `ioctl(SIOCATMARK)`: whether the next byte a read of this TCP socket
/// returns is the urgent byte (the mark), tcp(7).
pub fn at_urgent_mark(socket: impl AsFd) -> std::io::Result<bool> {
    let mut at_mark: libc::c_int = 0;
    // SAFETY: SIOCATMARK writes one `int` through the pointer, which points
    // at a live, exclusively borrowed `c_int`; the fd is borrowed.
    let rc = unsafe { libc::ioctl(socket.as_fd().as_raw_fd(), SIOCATMARK, &raw mut at_mark) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(at_mark != 0)
}

/// Attaches a classic BPF filter to a raw TCP socket so that only SYN-ACKs
/// to port `port` reach it: the segment starts after an IPv4 header
/// (`after_ipv4`) or at the TCP header (an IPv6 raw socket's). Needs no
/// privilege beyond the raw socket's own.
pub fn accept_only_syn_acks_to(
    socket: impl AsFd,
    after_ipv4: bool,
    port: u16,
) -> Result<(), Errno> {
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // BPF_LD|BPF_H|BPF_IND, BPF_LD|BPF_B|BPF_IND against X (the IPv4 header's
    // length, BPF_LDX|BPF_B|BPF_MSH), or BPF_ABS from the TCP header.
    let (load_port, load_flags) = if after_ipv4 {
        (0x48, 0x50)
    } else {
        (0x28, 0x30)
    };
    let mut program = vec![
        op(load_port, 0, 0, 2),
        op(0x15, 0, 4, u32::from(port)),
        op(load_flags, 0, 0, 13),
        op(0x54, 0, 0, 0x12),
        op(0x15, 0, 1, 0x12),
        op(0x06, 0, 0, 0xffff),
        op(0x06, 0, 0, 0),
    ];
    if after_ipv4 {
        program.insert(0, op(0xb1, 0, 0, 0));
    }
    attach_filter(socket, &mut program)
}
