//! The UDP socket under a QUIC endpoint, client or server, and its buffers.
//!
//! Owns how the socket is bound and how large its kernel buffers are. Must
//! not set QUIC's own parameters (that is `transport_config` in the parent
//! module) nor know what the connection carries.
//!
//! Why the buffers matter: the kernel's default receive buffer (about
//! 208 KiB, some 90 datagrams as the kernel counts them) holds about a
//! millisecond of a fast transfer. When the thread that reads the socket
//! is late by more than that, which a busy machine does all the time, the
//! kernel drops datagrams and QUIC's congestion control takes each burst
//! of drops for congestion on the path, halving its window again and
//! again: measured at RTT 20 ms, `cat` of a 50 MB remote file ran at
//! 10.7 MB/s with 260 such drops where TCP, whose buffers the kernel grows
//! by itself, ran at 71 MB/s; with these buffers, 55 MB/s and no drop
//! (`benches/quicspeed.sh`, `benches/REPORT-notes.md`).

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

/// The receive and send buffer each endpoint asks for. Linux doubles a
/// request for its own bookkeeping and counts each datagram's whole
/// allocation against it, so this is a 32 MiB buffer as `ss -m` shows it:
/// roughly 100–200 ms of a 70 MB/s stream, so a reader that falls behind
/// for a few scheduling slices loses nothing. Measured at RTT 20 ms under
/// load: a buffer shown as 8 MiB still overflowed in most runs, one shown
/// as 64 MiB never, at the same throughput; a larger buffer only delays the
/// loss that tells the sender the reader is slower than the link.
pub const SOCKET_BUFFER_BYTES: usize = 16 << 20;

/// What the kernel granted, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    pub receive: usize,
    pub send: usize,
}

/// Binds a UDP socket at `bind`, sizes its buffers and puts a QUIC endpoint
/// on it; a server endpoint when `server` is given. Needs a tokio runtime:
/// without one the error says so instead of panicking.
pub(crate) fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(std::io::Error::other("no async runtime found"));
    }
    let socket = UdpSocket::bind(bind)?;
    let sizes = size_buffers(&socket, SOCKET_BUFFER_BYTES);
    tracing::debug!(?sizes, %bind, "QUIC socket buffers");
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

/// Asks for `bytes` of receive and send buffer and returns the sizes the
/// kernel reports (Linux doubles a request, for its own bookkeeping).
///
/// The plain request is capped by `net.core.rmem_max`/`wmem_max` (4 MiB
/// here, 208 KiB on many distributions); when the reported size is below
/// `bytes` the request is repeated with `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE`,
/// which go past that cap for a process with `CAP_NET_ADMIN`, as quic-go
/// does. Failing to grow a buffer is not an error: the socket works, only
/// slower under load.
pub fn size_buffers(socket: &UdpSocket, bytes: usize) -> BufferSizes {
    use rustix::net::sockopt;
    let _ = sockopt::set_socket_recv_buffer_size(socket, bytes);
    if sockopt::socket_recv_buffer_size(socket).unwrap_or(0) < bytes {
        let _ = sockopt::set_socket_recv_buffer_size_force(socket, bytes);
    }
    let _ = sockopt::set_socket_send_buffer_size(socket, bytes);
    if sockopt::socket_send_buffer_size(socket).unwrap_or(0) < bytes {
        let _ = sockopt::set_socket_send_buffer_size_force(socket, bytes);
    }
    BufferSizes {
        receive: sockopt::socket_recv_buffer_size(socket).unwrap_or(0),
        send: sockopt::socket_send_buffer_size(socket).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_grow_past_the_kernel_default() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = BufferSizes {
            receive: rustix::net::sockopt::socket_recv_buffer_size(&socket).expect("get"),
            send: rustix::net::sockopt::socket_send_buffer_size(&socket).expect("get"),
        };
        let after = size_buffers(&socket, SOCKET_BUFFER_BYTES);
        assert!(after.receive >= before.receive, "{before:?} -> {after:?}");
        assert!(after.send >= before.send, "{before:?} -> {after:?}");
        // Without CAP_NET_ADMIN the grant is capped by rmem_max/wmem_max,
        // which may be the kernel default; with it, nothing caps it.
        let may_force = rustix::thread::capabilities(None).is_ok_and(|c| {
            c.effective
                .contains(rustix::thread::CapabilitySet::NET_ADMIN)
        });
        if may_force {
            assert!(after.receive >= SOCKET_BUFFER_BYTES, "{after:?}");
            assert!(after.send >= SOCKET_BUFFER_BYTES, "{after:?}");
        }
    }

    #[test]
    fn endpoint_needs_a_runtime() {
        let Err(err) = endpoint("127.0.0.1:0".parse().expect("addr"), None) else {
            panic!("an endpoint without a runtime");
        };
        assert!(err.to_string().contains("runtime"), "{err}");
    }
}
