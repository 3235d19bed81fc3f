//! Carries one TCP connection over one QUIC stream, both ways. The same pump
//! runs on both sides: on the server next to the real socket, in rscq next
//! to the program's socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engine::coalesce::Coalescer;

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

/// What the coalescing pump needs to know about the program behind its
/// socket.
pub trait ProgramSide: Send {
    /// The current round-trip estimate to the server.
    fn rtt(&self) -> Duration;
    /// The program's `TCP_NODELAY`, when its socket can be reached.
    fn nodelay(&mut self) -> Option<bool>;
    /// Whether a thread of the program waits for input right now.
    fn waiting_for_input(&mut self) -> bool;
}

/// Send coalescing for one connection's upstream.
pub struct Nagle {
    pub coalescer: Coalescer,
    pub program: Box<dyn ProgramSide>,
}

/// How often a pump holding bytes looks whether the program waits for
/// input (tokio's timer resolution).
const TURNAROUND_CHECK: Duration = Duration::from_millis(1);

/// How the upstream read loop ended.
enum Upstream {
    /// The program's side ended: finish the stream.
    Eof,
    /// Reading failed: reset the stream.
    Failed,
    /// The stream refused more bytes.
    Closed,
}

/// Copies the socket to the stream as it comes.
async fn forward_at_once(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut quinn::SendStream,
) -> Upstream {
    let mut buf = vec![0u8; BUFFER];
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => return Upstream::Eof,
            Ok(n) => {
                if send.write_all(&buf[..n]).await.is_err() {
                    return Upstream::Closed;
                }
            }
            Err(_) => return Upstream::Failed,
        }
    }
}

/// Copies the socket to the stream under a [`Coalescer`]. `answered` is
/// set by the other direction whenever bytes come back.
async fn forward_coalesced(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut quinn::SendStream,
    nagle: &mut Nagle,
    answered: &AtomicBool,
) -> Upstream {
    let mut buf = vec![0u8; BUFFER];
    let now = || tokio::time::Instant::now().into_std();
    loop {
        let rtt = nagle.program.rtt();
        let holding = nagle.coalescer.is_holding();
        let deadline = nagle
            .coalescer
            .deadline(rtt)
            .map(tokio::time::Instant::from_std);
        let ready = tokio::select! {
            biased;
            r = rd.read(&mut buf) => Some(r),
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if holding => {
                if let Some(out) = nagle.coalescer.on_timer(now(), rtt)
                    && send.write_all(&out).await.is_err()
                {
                    return Upstream::Closed;
                }
                None
            }
            () = tokio::time::sleep(TURNAROUND_CHECK), if holding => {
                if nagle.program.waiting_for_input()
                    && let Some(out) = nagle.coalescer.on_turnaround(now())
                    && send.write_all(&out).await.is_err()
                {
                    return Upstream::Closed;
                }
                None
            }
        };
        let Some(read) = ready else { continue };
        let n = match read {
            Ok(n) => n,
            Err(_) => {
                // What the program wrote before the failure still goes.
                if let Some(out) = nagle.coalescer.finish(now()) {
                    let _ = send.write_all(&out).await;
                }
                return Upstream::Failed;
            }
        };
        if n == 0 {
            if let Some(out) = nagle.coalescer.finish(now())
                && send.write_all(&out).await.is_err()
            {
                return Upstream::Closed;
            }
            return Upstream::Eof;
        }
        if answered.swap(false, Ordering::AcqRel) {
            nagle.coalescer.on_answer();
        }
        let was_holding = nagle.coalescer.is_holding();
        let mut out = nagle.coalescer.on_data(now(), rtt, &buf[..n]);
        // A hold starts: unless the program asked for no delay or already
        // waits for input; later, the timer looks again.
        if out.is_none() && !was_holding {
            if let Some(on) = nagle.program.nodelay() {
                nagle.coalescer.set_nodelay(on);
            }
            if nagle.coalescer.nodelay() || nagle.program.waiting_for_input() {
                out = nagle.coalescer.on_turnaround(now());
            }
        }
        if let Some(out) = out
            && send.write_all(&out).await.is_err()
        {
            return Upstream::Closed;
        }
    }
}

/// Counts the connections whose socket-to-stream direction is still under
/// way: bytes written to the socket that the peer has not acknowledged yet.
/// A program that writes and exits leaves its last bytes in flight; rscq
/// waits for them before it closes the connection to the server (the
/// kernel would send them after the process was gone, too).
#[derive(Debug, Clone)]
pub struct Unsent {
    count: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

impl Default for Unsent {
    fn default() -> Self {
        Self {
            count: std::sync::Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

/// One connection's share of [`Unsent`], released when dropped.
#[derive(Debug)]
pub struct UnsentGuard {
    count: std::sync::Arc<tokio::sync::watch::Sender<usize>>,
}

impl Drop for UnsentGuard {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Unsent {
    /// Counts one more connection until the guard is dropped.
    pub fn track(&self) -> UnsentGuard {
        self.count.send_modify(|n| *n += 1);
        UnsentGuard {
            count: self.count.clone(),
        }
    }

    /// How many connections are counted now.
    pub fn pending(&self) -> usize {
        *self.count.borrow()
    }

    /// Waits until no connection is counted.
    pub async fn settled(&self) {
        let mut changes = self.count.subscribe();
        let _ = changes.wait_for(|n| *n == 0).await;
    }
}

/// Pumps until both directions are done. Half-closes pass through as
/// `shutdown`/stream finish; a reset on either side resets the other.
pub async fn pump(socket: TcpStream, send: quinn::SendStream, recv: quinn::RecvStream) {
    pump_with(socket, send, recv, None, None).await;
}

/// [`pump`], with the program's writes coalesced by `nagle` when given;
/// `unsent` is released once the socket-to-stream direction is done (the
/// socket ended and the peer acknowledged everything, or it failed).
pub async fn pump_with(
    socket: TcpStream,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    mut nagle: Option<Nagle>,
    unsent: Option<UnsentGuard>,
) {
    let _ = socket.set_nodelay(true);
    let (mut rd, wr) = socket.into_split();
    let answered = AtomicBool::new(false);
    let upstream = async {
        let end = match nagle.as_mut() {
            Some(n) => forward_coalesced(&mut rd, &mut send, n, &answered).await,
            None => forward_at_once(&mut rd, &mut send).await,
        };
        match end {
            Upstream::Eof => {
                let _ = send.finish();
                // Keep the stream alive until the peer has everything.
                let _ = send.stopped().await;
            }
            Upstream::Failed => {
                let _ = send.reset(quinn::VarInt::from_u32(STREAM_RESET));
            }
            Upstream::Closed => {}
        }
        drop(unsent);
    };
    let answered_by_peer = &answered;
    let downstream = async move {
        let mut wr = wr;
        let mut buf = vec![0u8; BUFFER];
        loop {
            match recv.read(&mut buf).await {
                Ok(Some(n)) => {
                    answered_by_peer.store(true, Ordering::Release);
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
                    // Dropping the socket with a zero linger sends a RST;
                    // the write half must not send a FIN first when it is
                    // dropped, or the program reads EOF instead of the reset.
                    let _ =
                        rustix::net::sockopt::set_socket_linger(wr.as_ref(), Some(Duration::ZERO));
                    wr.forget();
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

#[cfg(test)]
mod unsent_tests {
    use super::Unsent;

    #[tokio::test]
    async fn settles_when_every_guard_is_dropped() {
        let unsent = Unsent::default();
        unsent.settled().await;
        let a = unsent.track();
        let b = unsent.track();
        assert_eq!(unsent.pending(), 2);
        drop(a);
        assert_eq!(unsent.pending(), 1);
        let waiter = tokio::spawn({
            let unsent = unsent.clone();
            async move { unsent.settled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(b);
        waiter.await.expect("settled");
        assert_eq!(unsent.pending(), 0);
    }
}
