//! Carries one TCP connection over one QUIC stream, both ways. The same pump
//! runs on both sides: on the server next to the real socket, in rscq next
//! to the program's socket.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// QUIC application error code on a stream whose TCP side was reset.
pub const STREAM_RESET: u32 = 0x10;

const BUFFER: usize = 64 * 1024;

/// How the stream-to-socket direction ended.
enum Downstream {
    /// The peer finished its side: the socket got `shutdown(SHUT_WR)`.
    Finished,
    /// The peer reset or vanished: the socket must be reset too.
    Reset,
}

/// Pumps until both directions are done. Half-closes pass through as
/// `shutdown`/stream finish; a reset on either side resets the other.
pub async fn pump(socket: TcpStream, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let _ = socket.set_nodelay(true);
    let (mut rd, mut wr) = socket.into_split();
    let upstream = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => {
                    let _ = send.finish();
                    // Keep the stream alive until the peer has everything.
                    let _ = send.stopped().await;
                    return;
                }
                Ok(n) => {
                    if send.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                Err(_) => {
                    let _ = send.reset(quinn::VarInt::from_u32(STREAM_RESET));
                    return;
                }
            }
        }
    };
    let downstream = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => {
                    if wr.write_all(&buf[..n]).await.is_err() {
                        let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                        return Downstream::Finished;
                    }
                }
                Ok(None) => {
                    let _ = wr.shutdown().await;
                    return Downstream::Finished;
                }
                Err(_) => {
                    // Dropping the socket with a zero linger sends a RST.
                    let _ =
                        rustix::net::sockopt::set_socket_linger(wr.as_ref(), Some(Duration::ZERO));
                    return Downstream::Reset;
                }
            }
        }
    };
    tokio::pin!(upstream, downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            () = &mut upstream, if !upstream_done => upstream_done = true,
            end = &mut downstream => {
                if let Downstream::Reset = end {
                    return;
                }
                if !upstream_done {
                    upstream.await;
                }
                return;
            }
        }
    }
}
