//! The server's UDP sockets for `rscq --net`: each program UDP socket is a
//! real socket on this host and one QUIC stream. The client sends
//! [`UdpOp`] frames (datagrams with their destination, `connect`, and with
//! `--pure` receive requests); the server sends [`UdpEvent`] frames back
//! (datagrams with their source, and answers).
//!
//! By default every datagram the socket receives is pushed to the client at
//! once; the stream's flow-control window bounds what is in flight, and
//! once it is full the kernel drops, as it would for a slow reader. With
//! `--pure` the socket is read only when the program asks: one datagram per
//! [`UdpOp::Recv`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};

use crate::errno::Errno;
use crate::proto::{Reply, Response, SockAddr, UdpEvent, UdpOp, frame};

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
    UdpSocket::from_std(std::net::UdpSocket::from(fd)).map_err(|e| Errno::from_io(&e))
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
            return;
        }
    };
    let answer: Response = Ok(Reply::UdpBound {
        local: local.into(),
    });
    if send.write_all(&frame::encode(&answer)).await.is_err() {
        return;
    }
    let socket = Arc::new(socket);
    let writer: Writer = Arc::new(Mutex::new(send));
    let (recv_requests, mut recv_queue) = mpsc::unbounded_channel::<bool>();
    let receiver = if options.pure {
        let (socket, writer) = (socket.clone(), writer.clone());
        tokio::spawn(async move {
            while let Some(nonblocking) = recv_queue.recv().await {
                let event = receive_one(&socket, nonblocking).await;
                if !emit(&writer, &event).await {
                    return;
                }
            }
        })
    } else {
        let (socket, writer) = (socket.clone(), writer.clone());
        tokio::spawn(async move {
            loop {
                let event = receive_one(&socket, false).await;
                // An error (an ICMP unreachable on a connected socket) is
                // the socket's business, not the client's: keep reading.
                if matches!(event, UdpEvent::RecvFailed(_)) {
                    continue;
                }
                if !emit(&writer, &event).await {
                    return;
                }
            }
        })
    };
    loop {
        let op = match crate::transport::read_frame::<UdpOp>(&mut recv).await {
            Ok(Some(op)) => op,
            // The program closed its socket, or the client sent garbage.
            Ok(None) | Err(_) => break,
        };
        match op {
            UdpOp::Send { peer, data } => {
                let sent = match peer {
                    Some(p) => socket.send_to(&data, SocketAddr::from(p)).await,
                    None => socket.send(&data).await,
                };
                if options.pure {
                    let sent = sent
                        .map(|n| u64::try_from(n).unwrap_or(u64::MAX))
                        .map_err(|e| Errno::from_io(&e));
                    if !emit(&writer, &UdpEvent::Sent(sent)).await {
                        break;
                    }
                }
            }
            UdpOp::Connect { peer } => {
                let connected = match socket.connect(SocketAddr::from(peer)).await {
                    Ok(()) => socket
                        .local_addr()
                        .map(SockAddr::from)
                        .map_err(|e| Errno::from_io(&e)),
                    Err(e) => Err(Errno::from_io(&e)),
                };
                if !emit(&writer, &UdpEvent::Connected(connected)).await {
                    break;
                }
            }
            UdpOp::Disconnect => {
                let disconnected = disconnect(&socket);
                if !emit(&writer, &UdpEvent::Connected(disconnected)).await {
                    break;
                }
            }
            UdpOp::Recv { nonblocking } => {
                if options.pure {
                    let _ = recv_requests.send(nonblocking);
                }
            }
        }
    }
    receiver.abort();
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
