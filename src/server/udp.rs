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
//! Must not read frames itself: [`crate::transport::read_frame`] does.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};

use crate::errno::Errno;
use crate::proto::{IcmpError, Reply, Response, SockAddr, UdpEvent, UdpOp, frame};

/// The largest datagram a socket can receive (IPv4's limit is lower).
const MAX_DATAGRAM: usize = 65536;

/// What `bind(2)` needs besides the address.
#[derive(Debug, Clone, Copy)]
pub struct BindOptions {
    pub reuse_addr: bool,
    pub reuse_port: bool,
    pub v6_only: Option<bool>,
    pub pure: bool,
}

fn bind(addr: SockAddr, options: BindOptions) -> Result<UdpSocket, Errno> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with, sockopt};
    let target = SocketAddr::from(addr);
    let family = if target.is_ipv6() {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    let fd = socket_with(
        family,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
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

/// The most of a datagram's payload an ICMP error quotes (it is at most
/// 576 bytes, IPv4; 1280, IPv6).
const MAX_QUOTED: usize = 1280;
/// `struct cmsghdr`'s size on x86_64: the data follows at this offset.
const CMSG_HEADER: usize = 16;
/// `struct sock_extended_err`: errno, origin, type, code, pad, info, data.
const EXTENDED_ERR: usize = 16;

/// The ICMP error one error-queue message reports: the destination it is
/// about (`name`, the message's address), and the ICMP type and code and
/// the message's sender from its `IP_RECVERR`/`IPV6_RECVERR` control
/// message. `None` for errors the kernel made up locally (a send that
/// could not leave), which the send itself returned.
fn icmp_error(name: &[u8], control: &[u8]) -> Option<IcmpReport> {
    let peer = crate::syscall::layout::decode_sockaddr(name)?;
    let mut rest = control;
    while rest.len() >= CMSG_HEADER {
        let len = usize::try_from(u64::from_ne_bytes(rest[0..8].try_into().ok()?)).ok()?;
        let level = i32::from_ne_bytes(rest[8..12].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[12..16].try_into().ok()?);
        if len < CMSG_HEADER || len > rest.len() {
            return None;
        }
        let is_err = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
            || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
        if is_err && len >= CMSG_HEADER + EXTENDED_ERR {
            let err = &rest[CMSG_HEADER..];
            let v6 = match err[4] {
                libc::SO_EE_ORIGIN_ICMP => false,
                libc::SO_EE_ORIGIN_ICMP6 => true,
                _ => return None,
            };
            // `SO_EE_OFFENDER`: the sender's address follows.
            let offender = err
                .get(EXTENDED_ERR..len - CMSG_HEADER)
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
        // The next header starts at the next multiple of 8.
        let next = len.checked_add(7)? & !7;
        rest = rest.get(next..)?;
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
        UdpOp::Send { peer, data } => {
            let send = || async {
                match peer {
                    Some(p) => socket.send_to(&data, SocketAddr::from(p)).await,
                    None => socket.send(&data).await,
                }
            };
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

/// One `recvfrom(2)`.
async fn receive_one(socket: &UdpSocket, nonblocking: bool) -> UdpEvent {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let received = if nonblocking {
        match socket.try_recv_from(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                Err(std::io::Error::from_raw_os_error(libc::EAGAIN))
            }
            other => other,
        }
    } else {
        socket.recv_from(&mut buf).await
    };
    match received {
        Ok((n, peer)) => {
            buf.truncate(n);
            UdpEvent::Datagram {
                peer: peer.into(),
                data: buf,
            }
        }
        Err(e) => UdpEvent::RecvFailed(Errno::from_io(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One control message: `struct cmsghdr` and its data, padded to 8.
    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let mut m = u64::try_from(CMSG_HEADER + data.len())
            .unwrap()
            .to_ne_bytes()
            .to_vec();
        m.extend_from_slice(&level.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(data);
        m.resize(m.len().next_multiple_of(8), 0);
        m
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
}
