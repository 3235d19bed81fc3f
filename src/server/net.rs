//! The server's network stack for `rscq --net`: each remote TCP connection
//! is one QUIC stream, pumped to and from a real socket on this host.
//!
//! The pump reads the socket ahead of the program as far as the stream's
//! flow-control window allows: that is the thesis's read-ahead, with memory
//! bounded by QUIC rather than by a buffer of our own.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::errno::Errno;
use crate::proto::{Reply, Response, SockAddr, frame};

/// How long a remote connect may take before the program sees ETIMEDOUT;
/// shorter than the kernel's ~2 minutes so a dead route fails visibly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to `addr`, answers on `send`, then pumps bytes until both
/// directions are done.
pub async fn tcp_connect(addr: SockAddr, mut send: quinn::SendStream, recv: quinn::RecvStream) {
    let target = SocketAddr::from(addr);
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return answer(&mut send, Err(Errno::from_io(&e))).await,
        Err(_) => return answer(&mut send, Err(Errno(libc::ETIMEDOUT))).await,
    };
    let _ = stream.set_nodelay(true);
    let (Ok(local), Ok(peer)) = (stream.local_addr(), stream.peer_addr()) else {
        return answer(&mut send, Err(Errno::ECONNRESET)).await;
    };
    let reply: Response = Ok(Reply::TcpConnected {
        local: local.into(),
        peer: peer.into(),
    });
    if send.write_all(&frame::encode(&reply)).await.is_err() {
        return;
    }
    crate::transport::pump::pump(stream, send, recv).await;
}

async fn answer(send: &mut quinn::SendStream, response: Response) {
    if send.write_all(&frame::encode(&response)).await.is_ok() {
        let _ = send.finish();
    }
}
