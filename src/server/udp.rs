//! The server's UDP sockets for `rscq --net`: each program UDP socket is a
//! real socket on this host and one QUIC stream. The client sends
//! [`UdpOp`] frames (datagrams with their destination, `connect`, and with
//! `--pure` receive requests); the server sends [`UdpEvent`] frames back
//! (datagrams with their source, and answers).
//!
//! By default every datagram the socket receives is pushed to the client at
//! once; the stream's flow-control window bounds what is in flight, and
//! once it is full the kernel drops, as it would for a slow reader. The
//! socket has `IP_RECVERR` (`IPV6_RECVERR`) on, so every ICMP error about a
//! datagram it sent lands on its error queue with the destination it is
//! about, and goes to the client as [`UdpEvent::Unreachable`]; the client's
//! kernel then decides, as ours would have, whether the program's socket
//! hears of it. With `--pure` the socket is read only when the program
//! asks: one datagram per [`UdpOp::Recv`], and an error is what that
//! receive returns.
//!
//! Each datagram crosses with its IP header fields ([`IpFields`]): the
//! socket reports the TTL and TOS (hop limit and traffic class) of every
//! datagram it receives, whatever the program asked for (the client's
//! kernel gives the program only those it enabled), and a send sets the
//! fields the program's send set.
//!
//! Must not read frames itself: [`crate::transport::read_frame`] does.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};

use crate::errno::Errno;
use crate::proto::{
    DatagramKind, IcmpError, IpFields, Reply, Response, SockAddr, UdpEvent, UdpOp, frame,
};
use crate::syscall::cmsg;

/// The largest datagram a socket can receive (IPv4's limit is lower).
const MAX_DATAGRAM: usize = 65536;

/// What `bind(2)` needs besides the address.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    pub reuse_addr: bool,
    pub reuse_port: bool,
    pub v6_only: Option<bool>,
    pub pure: bool,
    /// UDP, or an ICMP echo ("ping") socket, opened with this server's
    /// rights (`net.ipv4.ping_group_range`: EACCES when they do not allow
    /// it), or UDP-Lite (EPROTONOSUPPORT from a kernel without it).
    pub kind: DatagramKind,
}

fn bind(addr: SockAddr, options: BindOptions) -> Result<UdpSocket, Errno> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with, sockopt};
    let target = SocketAddr::from(addr);
    let family = if target.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let protocol = match (options.kind, target.is_ipv6()) {
        (DatagramKind::Udp, _) => None,
        (DatagramKind::Ping, false) => Some(rustix::net::ipproto::ICMP),
        (DatagramKind::Ping, true) => Some(rustix::net::ipproto::ICMPV6),
        (DatagramKind::UdpLite, _) => Some(rustix::net::ipproto::UDPLITE),
    };
    let fd = socket_with(
        family,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        protocol,
    )?;
    sockopt::set_socket_reuseaddr(&fd, options.reuse_addr)?;
    sockopt::set_socket_reuseport(&fd, options.reuse_port)?;
    if let (true, Some(only)) = (target.is_ipv6(), options.v6_only) {
        sockopt::set_ipv6_v6only(&fd, only)?;
    }
    rustix::net::bind(&fd, &target)?;
    if !options.pure {
        receive_errors(&fd, target.is_ipv6())?;
    }
    report_fields(&fd, target.is_ipv6());
    UdpSocket::from_std(std::net::UdpSocket::from(fd)).map_err(|e| Errno::from_io(&e))
}

/// Turns on the error queue: ICMP errors about any destination, the
/// connected peer or not, are queued with the destination they are about.
/// An IPv6 socket also needs the IPv4 option for its IPv4-mapped peers.
fn receive_errors(fd: &std::os::fd::OwnedFd, v6: bool) -> Result<(), Errno> {
    use std::os::fd::AsFd;
    let on = 1i32.to_ne_bytes();
    let set = |level, name| {
        crate::sys::net::set_option(fd.as_fd(), level, name, &on).map_err(|e| Errno::from_io(&e))
    };
    if v6 {
        set(libc::SOL_IPV6, libc::IPV6_RECVERR)?;
    }
    set(libc::SOL_IP, libc::IP_RECVERR)
}

/// Has the kernel report each received datagram's TTL and TOS (an IPv6
/// socket: hop limit and traffic class, and for its IPv4-mapped peers the
/// IPv4 pair too). A socket that cannot still carries datagrams, without
/// them.
fn report_fields(fd: &std::os::fd::OwnedFd, v6: bool) {
    use std::os::fd::AsFd;
    let on = 1i32.to_ne_bytes();
    let mut options = vec![
        (libc::SOL_IP, libc::IP_RECVTTL),
        (libc::SOL_IP, libc::IP_RECVTOS),
    ];
    if v6 {
        options.push((libc::SOL_IPV6, libc::IPV6_RECVHOPLIMIT));
        options.push((libc::SOL_IPV6, libc::IPV6_RECVTCLASS));
    }
    for (level, name) in options {
        let _ = crate::sys::net::set_option(fd.as_fd(), level, name, &on);
    }
}

/// The most of a datagram's payload an ICMP error quotes (it is at most
/// 576 bytes, IPv4; 1280, IPv6).
const MAX_QUOTED: usize = 1280;
/// `struct sock_extended_err`: errno, origin, type, code, pad, info, data.
const EXTENDED_ERR: usize = 16;

/// The ICMP error one error-queue message reports: the destination it is
/// about (`name`, the message's address), and the ICMP type and code and
/// the message's sender from its `IP_RECVERR`/`IPV6_RECVERR` control
/// message. `None` for errors the kernel made up locally (a send that
/// could not leave), which the send itself returned.
fn icmp_error(name: &[u8], control: &[u8]) -> Option<IcmpReport> {
    let peer = crate::syscall::layout::decode_sockaddr(name)?;
    for message in cmsg::walk(control) {
        let m = message.ok()?;
        let is_err = (m.level == libc::SOL_IP && m.kind == libc::IP_RECVERR)
            || (m.level == libc::SOL_IPV6 && m.kind == libc::IPV6_RECVERR);
        if is_err && m.data.len() >= EXTENDED_ERR {
            let err = m.data;
            let v6 = match err[4] {
                libc::SO_EE_ORIGIN_ICMP => false,
                libc::SO_EE_ORIGIN_ICMP6 => true,
                _ => return None,
            };
            // `SO_EE_OFFENDER`: the sender's address follows.
            let offender = err
                .get(EXTENDED_ERR..)
                .and_then(crate::syscall::layout::decode_sockaddr);
            return Some(IcmpReport {
                peer,
                icmp: IcmpError {
                    v6,
                    kind: err[5],
                    code: err[6],
                },
                offender,
            });
        }
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IcmpReport {
    peer: SockAddr,
    icmp: IcmpError,
    offender: Option<SockAddr>,
}

/// Passes every ICMP error the socket's error queue receives on to the
/// client, until the client is gone.
async fn forward_errors(socket: &UdpSocket, writer: &Writer) {
    use std::os::fd::AsFd;
    loop {
        let mut name = [0u8; 128];
        let mut control = [0u8; 256];
        let mut quoted = vec![0u8; MAX_QUOTED];
        let queued = socket
            .async_io(tokio::io::Interest::ERROR, || {
                crate::sys::net::recv_error_queue(
                    socket.as_fd(),
                    &mut name,
                    &mut quoted,
                    &mut control,
                )
            })
            .await;
        let Ok(got) = queued else {
            // The queue cannot be read: datagrams still flow.
            return std::future::pending().await;
        };
        quoted.truncate(got.payload);
        let Some(IcmpReport {
            peer,
            icmp,
            offender,
        }) = icmp_error(&name[..got.name], &control[..got.control])
        else {
            continue;
        };
        let event = UdpEvent::Unreachable {
            peer,
            icmp,
            offender,
            quoted,
        };
        if !emit(writer, &event).await {
            return;
        }
    }
}

type Writer = Arc<Mutex<quinn::SendStream>>;

async fn emit(writer: &Writer, event: &UdpEvent) -> bool {
    writer
        .lock()
        .await
        .write_all(&frame::encode(event))
        .await
        .is_ok()
}

/// Binds, answers on `send`, then serves the socket until the client
/// finishes the stream (the program closed its socket) or the connection
/// ends.
pub async fn serve(
    addr: SockAddr,
    options: BindOptions,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let Some(socket) = bind_and_answer(addr, options, &mut send).await else {
        return;
    };
    let socket = Arc::new(socket);
    let writer: Writer = Arc::new(Mutex::new(send));
    let (recv_requests, recv_queue) = mpsc::unbounded_channel::<bool>();
    let receiver = spawn_receiver(&socket, &writer, options.pure, recv_queue);
    loop {
        let op = match crate::transport::read_frame::<UdpOp>(&mut recv).await {
            Ok(Some(op)) => op,
            // The program closed its socket, or the client sent garbage.
            Ok(None) | Err(_) => break,
        };
        if !carry_out(&socket, &writer, options, &recv_requests, op).await {
            break;
        }
    }
    receiver.abort();
    // The socket closes before the stream ends: a client that waits for
    // the end (the program's close) finds the port free.
    let _ = receiver.await;
    drop(socket);
    let _ = writer.lock().await.finish();
}

/// Binds the socket and answers on `send` with its address, or with why
/// not (and then finishes the stream: `None`).
async fn bind_and_answer(
    addr: SockAddr,
    options: BindOptions,
    send: &mut quinn::SendStream,
) -> Option<UdpSocket> {
    let bound = bind(addr, options).and_then(|s| {
        let local = s.local_addr().map_err(|e| Errno::from_io(&e))?;
        Ok((s, local))
    });
    let (socket, local) = match bound {
        Ok(b) => b,
        Err(e) => {
            let answer: Response = Err(e);
            if send.write_all(&frame::encode(&answer)).await.is_ok() {
                let _ = send.finish();
            }
            return None;
        }
    };
    let answer: Response = Ok(Reply::UdpBound {
        local: local.into(),
    });
    if send.write_all(&frame::encode(&answer)).await.is_err() {
        return None;
    }
    Some(socket)
}

/// The task that reads the socket: with `pure`, one datagram per request
/// on `recv_queue` (`true`: do not wait for one); otherwise every datagram
/// as it comes, and every error from the error queue.
fn spawn_receiver(
    socket: &Arc<UdpSocket>,
    writer: &Writer,
    pure: bool,
    mut recv_queue: mpsc::UnboundedReceiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (socket, writer) = (socket.clone(), writer.clone());
    if pure {
        tokio::spawn(async move {
            while let Some(nonblocking) = recv_queue.recv().await {
                let event = receive_one(&socket, nonblocking).await;
                if !emit(&writer, &event).await {
                    return;
                }
            }
        })
    } else {
        tokio::spawn(async move {
            let errors = forward_errors(&socket, &writer);
            let datagrams = async {
                loop {
                    let event = receive_one(&socket, false).await;
                    // An error (the pending error an ICMP message left)
                    // reaches the client through the error queue.
                    if matches!(event, UdpEvent::RecvFailed(_)) {
                        continue;
                    }
                    if !emit(&writer, &event).await {
                        return;
                    }
                }
            };
            tokio::select! {
                () = errors => {}
                () = datagrams => {}
            }
        })
    }
}

/// Carries out one of the client's operations on the socket; `false` once
/// the client can no longer be answered.
async fn carry_out(
    socket: &UdpSocket,
    writer: &Writer,
    options: BindOptions,
    recv_requests: &mpsc::UnboundedSender<bool>,
    op: UdpOp,
) -> bool {
    match op {
        UdpOp::Send { peer, data, ip } => {
            let send = || send_datagram(socket, peer, &data, ip);
            let mut sent = send().await;
            if sent.is_err() && !options.pure {
                // The program's send already succeeded: a pending
                // error an ICMP message left (which the client hears
                // of through the error queue) must not cost this
                // datagram, and the failed send cleared it.
                sent = send().await;
            }
            if options.pure {
                let sent = sent
                    .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
                    .map_err(|e| Errno::from_io(&e));
                return emit(writer, &UdpEvent::Sent(sent)).await;
            }
            true
        }
        UdpOp::Connect { peer } => {
            let connected = match socket.connect(SocketAddr::from(peer)).await {
                Ok(()) => socket
                    .local_addr()
                    .map(SockAddr::from)
                    .map_err(|e| Errno::from_io(&e)),
                Err(e) => Err(Errno::from_io(&e)),
            };
            emit(writer, &UdpEvent::Connected(connected)).await
        }
        UdpOp::Disconnect => {
            let disconnected = disconnect(socket);
            emit(writer, &UdpEvent::Connected(disconnected)).await
        }
        UdpOp::Recv { nonblocking } => {
            if options.pure {
                let _ = recv_requests.send(nonblocking);
            }
            true
        }
    }
}

/// `connect(2)` to `AF_UNSPEC`. A socket whose port the kernel chose
/// loses it (the kernel would choose another at the next send); it keeps
/// the same one instead, which the kernel could equally have chosen, so
/// the client's idea of the socket's address stays right.
fn disconnect(socket: &UdpSocket) -> Result<SockAddr, Errno> {
    let before = socket.local_addr().map_err(|e| Errno::from_io(&e))?;
    rustix::net::connect_unspec(socket)?;
    let mut after = socket.local_addr().map_err(|e| Errno::from_io(&e))?;
    if after.port() == 0 {
        after.set_port(before.port());
        rustix::net::bind(socket, &after)?;
    }
    Ok(after.into())
}

/// One datagram to `peer` (the connected peer if `None`), with the IP
/// fields `ip` sets. Fields the kernel refuses (a TTL of 0 an IPv4 peer
/// sent us) are left out rather than the datagram.
async fn send_datagram(
    socket: &UdpSocket,
    peer: Option<SockAddr>,
    data: &[u8],
    ip: IpFields,
) -> std::io::Result<usize> {
    let plain = || async {
        match peer {
            Some(p) => socket.send_to(data, SocketAddr::from(p)).await,
            None => socket.send(data).await,
        }
    };
    if ip.is_empty() {
        return plain().await;
    }
    let destination = peer
        .map(SocketAddr::from)
        .or_else(|| socket.peer_addr().ok());
    let mapped = match destination {
        Some(SocketAddr::V6(a)) => a.ip().to_ipv4_mapped().is_some(),
        _ => false,
    };
    let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
    let control = cmsg::encode_fields(cmsg::Path::of(v6, mapped), ip);
    let name = peer
        .map(|p| crate::syscall::layout::encode_sockaddr(&p))
        .unwrap_or_default();
    let sent = socket
        .async_io(tokio::io::Interest::WRITABLE, || {
            use std::os::fd::AsFd;
            crate::sys::net::send_message(socket.as_fd(), data, &name, &control)
        })
        .await;
    match sent {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => plain().await,
        other => other,
    }
}

/// One `recvmsg(2)`, with the IP fields the datagram arrived with.
async fn receive_one(socket: &UdpSocket, nonblocking: bool) -> UdpEvent {
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut name = [0u8; 128];
    let mut control = [0u8; 128];
    let recv =
        || crate::sys::net::recv_message(socket.as_fd(), &mut name, &mut buf, &mut control, 0);
    let received = if nonblocking {
        match socket.try_io(tokio::io::Interest::READABLE, recv) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
            }
            other => other,
        }
    } else {
        // As `UdpSocket::recv_from`: a pending error (an ICMP message's)
        // wakes the receive, which then returns it.
        let interest = tokio::io::Interest::READABLE | tokio::io::Interest::ERROR;
        socket.async_io(interest, recv).await
    };
    let got = match received {
        Ok(got) => got,
        Err(e) => return UdpEvent::RecvFailed(Errno::from_io(&e)),
    };
    let Some(peer) = crate::syscall::layout::decode_sockaddr(&name[..got.name]) else {
        return UdpEvent::RecvFailed(Errno::EIO);
    };
    buf.truncate(got.payload);
    UdpEvent::Datagram {
        peer,
        data: buf,
        ip: cmsg::received_fields(&control[..got.control]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One control message: `struct cmsghdr` and its data, padded to 8.
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        cmsg::encode(level, kind, data)
    }

    fn extended_err(origin: u8, kind: u8, code: u8) -> Vec<u8> {
        let mut e = libc::ECONNREFUSED.cast_unsigned().to_ne_bytes().to_vec();
        e.extend_from_slice(&[origin, kind, code, 0]);
        e.extend_from_slice(&[0; 8]);
        // The offender's address follows.
        e.extend_from_slice(&[2, 0, 0, 0, 10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        e
    }

    const WEB: SockAddr = SockAddr::V4 {
        ip: [10, 0, 0, 2],
        port: 7009,
    };

    #[test]
    fn an_icmp_error_names_its_destination_type_and_code() {
        let name = crate::syscall::layout::encode_sockaddr(&WEB);
        let mut control = cmsg(libc::SOL_SOCKET, libc::SO_TIMESTAMP, &[0; 16]);
        control.extend(cmsg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(libc::SO_EE_ORIGIN_ICMP, 3, 3),
        ));
        assert_eq!(
            icmp_error(&name, &control),
            Some(IcmpReport {
                peer: WEB,
                icmp: IcmpError {
                    v6: false,
                    kind: 3,
                    code: 3
                },
                offender: Some(SockAddr::V4 {
                    ip: [10, 0, 0, 2],
                    port: 0
                }),
            })
        );
        let v6 = cmsg(
            libc::SOL_IPV6,
            libc::IPV6_RECVERR,
            &extended_err(libc::SO_EE_ORIGIN_ICMP6, 1, 4),
        );
        assert_eq!(
            icmp_error(&name, &v6).map(|r| r.icmp),
            Some(IcmpError {
                v6: true,
                kind: 1,
                code: 4
            })
        );
    }

    #[test]
    fn local_errors_and_garbage_are_not_passed_on() {
        let name = crate::syscall::layout::encode_sockaddr(&WEB);
        let local = cmsg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(libc::SO_EE_ORIGIN_LOCAL, 0, 0),
        );
        assert_eq!(icmp_error(&name, &local), None);
        let good = cmsg(
            libc::SOL_IP,
            libc::IP_RECVERR,
            &extended_err(libc::SO_EE_ORIGIN_ICMP, 3, 3),
        );
        assert_eq!(icmp_error(&[], &good), None, "no destination");
        assert_eq!(icmp_error(&name, &good[..20]), None, "cut short");
        let mut huge = good.clone();
        huge[0..8].copy_from_slice(&u64::MAX.to_ne_bytes());
        assert_eq!(icmp_error(&name, &huge), None);
        assert_eq!(icmp_error(&name, &[]), None);
    }

    fn fields(ttl: Option<u8>, tos: Option<u8>) -> IpFields {
        IpFields { ttl, tos }
    }

    #[tokio::test]
    async fn datagrams_cross_with_their_ip_fields() {
        let options = BindOptions {
            reuse_addr: false,
            reuse_port: false,
            v6_only: None,
            pure: true,
            kind: DatagramKind::Udp,
        };
        let loopback = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 0,
        };
        let a = bind(loopback, options).expect("bind");
        let b = bind(loopback, options).expect("bind");
        let from = SockAddr::from(a.local_addr().expect("addr"));
        let to = Some(SockAddr::from(b.local_addr().expect("addr")));
        let received = |data: &[u8], ip| UdpEvent::Datagram {
            peer: from,
            data: data.to_vec(),
            ip,
        };
        let set = fields(Some(7), Some(0x28));
        send_datagram(&a, to, b"set", set).await.expect("send");
        assert_eq!(receive_one(&b, false).await, received(b"set", set));
        // None set: the socket's defaults, reported all the same.
        let ttl = rustix::net::sockopt::ip_ttl(&a).expect("ttl");
        let defaults = fields(u8::try_from(ttl).ok(), Some(0));
        send_datagram(&a, to, b"plain", IpFields::default())
            .await
            .expect("send");
        assert_eq!(receive_one(&b, false).await, received(b"plain", defaults));
        // A TTL the kernel refuses: the datagram goes without it.
        send_datagram(&a, to, b"zero", fields(Some(0), Some(4)))
            .await
            .expect("send");
        assert_eq!(receive_one(&b, false).await, received(b"zero", defaults));
        // The connected peer's send.
        a.connect(b.local_addr().expect("addr"))
            .await
            .expect("connect");
        send_datagram(&a, None, b"connected", set)
            .await
            .expect("send");
        assert_eq!(receive_one(&b, false).await, received(b"connected", set));
        assert_eq!(
            receive_one(&b, true).await,
            UdpEvent::RecvFailed(Errno(libc::EAGAIN))
        );
    }

    #[tokio::test]
    async fn a_waiting_receive_returns_the_error_an_icmp_message_left() {
        let options = BindOptions {
            reuse_addr: false,
            reuse_port: false,
            v6_only: None,
            pure: true,
            kind: DatagramKind::Udp,
        };
        let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let closed_port = closed.local_addr().expect("addr");
        drop(closed);
        let loopback = SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 0,
        };
        let socket = bind(loopback, options).expect("bind");
        socket.connect(closed_port).await.expect("connect");
        send_datagram(&socket, None, b"x", IpFields::default())
            .await
            .expect("send");
        // The port unreachable wakes the receive with its error (a bound
        // so that a receive that never wakes fails rather than hangs).
        let received = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            receive_one(&socket, false),
        )
        .await;
        assert_eq!(
            received,
            Ok(UdpEvent::RecvFailed(Errno(libc::ECONNREFUSED)))
        );
    }
}
