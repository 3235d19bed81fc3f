//! Carries one TCP connection over one QUIC stream, both ways. The same pump
//! runs on both sides: on the server next to the real socket, in rscq next
//! to the program's socket. The stream holds records
//! ([`crate::proto::segment`]): data, and the urgent byte at its place, read
//! and sent again with [`super::urgent`].
//!
//! Must not decide when held bytes go: [`Nagle`] asks
//! [`crate::engine::coalesce`].

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::urgent::{Chunk, read_marked, send_urgent};
use crate::engine::coalesce::Coalescer;
use crate::proto::segment::{self, Deframer, Piece};

/// QUIC application error code on a stream whose TCP side was reset.
pub const STREAM_RESET: u32 = 0x10;

/// A `STOP_SENDING` code of `RESET_AFTER + n` on the stream that comes
/// back says: "my TCP socket was reset after I had put `n` bytes on my
/// stream to you; write them all into your socket, then reset it". A QUIC
/// reset of the stream would not do: it lets the receiver drop bytes it
/// has not read yet (quinn does), so the peer would see the TCP reset
/// without the bytes sent before it, which its kernel would have
/// delivered. The stream itself is left open (a finish would read as a
/// FIN) until the other side has stopped it.
pub const RESET_AFTER: u64 = 1 << 60;

const BUFFER: usize = 64 * 1024;

/// How the stream-to-socket direction ended.
enum Downstream {
    /// The peer finished its side: the socket got `shutdown(SHUT_WR)`.
    Finished,
    /// The peer reset or vanished: the socket must be reset too.
    Reset,
    /// Our socket was reset: the peer was told how many bytes to deliver
    /// before it resets its own, and stops our stream once it has.
    Aborted,
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
    /// Reading failed (the socket was reset): the peer delivers what was
    /// sent, then resets its socket.
    Failed,
    /// The stream refused more bytes.
    Closed,
}

/// The bytes the pumps of one run carried, each way, over all their
/// connections (`--stats`): they cross no syscall rscq sees.
#[derive(Debug, Default)]
pub struct Traffic {
    /// From the program's sockets to the server.
    pub sent: AtomicU64,
    /// From the server to the program's sockets.
    pub received: AtomicU64,
}

impl Traffic {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// A send stream that writes records and counts the bytes written to it
/// (`sent`: the stream's bytes, headers included, as the peer counts what
/// it received; `traffic`: the connection's bytes).
struct Counted<'a> {
    send: &'a mut quinn::SendStream,
    sent: u64,
    traffic: Option<&'a Traffic>,
}

impl Counted<'_> {
    /// One data record of `buf`.
    async fn write_data(&mut self, buf: &[u8]) -> Result<(), quinn::WriteError> {
        for part in buf.chunks(segment::MAX_PAYLOAD) {
            self.write_raw(&segment::data_header(part.len())).await?;
            self.write_raw(part).await?;
            if let Some(t) = self.traffic {
                Traffic::add(&t.sent, part.len());
            }
        }
        Ok(())
    }

    /// The urgent byte, after everything written so far.
    async fn write_urgent(&mut self, byte: u8) -> Result<(), quinn::WriteError> {
        self.write_raw(&segment::urgent_record(byte)).await?;
        if let Some(t) = self.traffic {
            Traffic::add(&t.sent, 1);
        }
        Ok(())
    }

    async fn write_raw(&mut self, buf: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.write_all(buf).await?;
        self.sent += u64::try_from(buf.len()).unwrap_or(u64::MAX);
        Ok(())
    }
}

/// Copies the socket to the stream as it comes.
async fn forward_at_once(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut Counted<'_>,
) -> Upstream {
    let mut buf = vec![0u8; BUFFER];
    loop {
        let written = match read_marked(rd.as_ref(), &mut buf).await {
            Ok(Chunk::End) => return Upstream::Eof,
            Ok(Chunk::Data(n)) => send.write_data(&buf[..n]).await,
            Ok(Chunk::Urgent(byte)) => send.write_urgent(byte).await,
            Err(_) => return Upstream::Failed,
        };
        if written.is_err() {
            return Upstream::Closed;
        }
    }
}

/// Copies the socket to the stream under a [`Coalescer`]. `answered` is
/// set by the other direction whenever bytes come back.
async fn forward_coalesced(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut Counted<'_>,
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
            r = read_marked(rd.as_ref(), &mut buf) => Some(r),
            () = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            }, if holding => {
                if let Some(out) = nagle.coalescer.on_timer(now(), rtt)
                    && send.write_data(&out).await.is_err()
                {
                    return Upstream::Closed;
                }
                None
            }
            () = tokio::time::sleep(TURNAROUND_CHECK), if holding => {
                if nagle.program.waiting_for_input()
                    && let Some(out) = nagle.coalescer.on_turnaround(now())
                    && send.write_data(&out).await.is_err()
                {
                    return Upstream::Closed;
                }
                None
            }
        };
        let Some(read) = ready else { continue };
        let n = match read {
            Ok(Chunk::Data(n)) => n,
            Ok(Chunk::Urgent(byte)) => {
                // Urgent data waits for nothing, and comes after what the
                // program wrote before it.
                if let Some(out) = nagle.coalescer.on_urgent(now())
                    && send.write_data(&out).await.is_err()
                {
                    return Upstream::Closed;
                }
                if send.write_urgent(byte).await.is_err() {
                    return Upstream::Closed;
                }
                continue;
            }
            Err(_) => {
                // What the program wrote before the failure still goes.
                if let Some(out) = nagle.coalescer.finish(now()) {
                    let _ = send.write_data(&out).await;
                }
                return Upstream::Failed;
            }
            Ok(Chunk::End) => {
                if let Some(out) = nagle.coalescer.finish(now())
                    && send.write_data(&out).await.is_err()
                {
                    return Upstream::Closed;
                }
                return Upstream::Eof;
            }
        };
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
            && send.write_data(&out).await.is_err()
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
/// `shutdown`/stream finish; a reset on either side resets the other, after
/// the bytes sent before it (see [`RESET_AFTER`]).
pub async fn pump(socket: TcpStream, send: quinn::SendStream, recv: quinn::RecvStream) {
    pump_with(socket, send, recv, None, None, None).await;
}

/// Resets a socket whose read half is dropped after this: a zero linger
/// makes the close send a RST, and the write half must not send a FIN
/// first when it is dropped, or the other end reads EOF instead of the
/// reset.
fn reset_on_close(wr: tokio::net::tcp::OwnedWriteHalf) {
    let _ = rustix::net::sockopt::set_socket_linger(wr.as_ref(), Some(Duration::ZERO));
    wr.forget();
}

/// [`pump`], with the program's writes coalesced by `nagle` when given;
/// `unsent` is released once the socket-to-stream direction is done (the
/// socket ended and the peer acknowledged everything, or it failed and the
/// peer delivered what came before).
pub async fn pump_with(
    socket: TcpStream,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    mut nagle: Option<Nagle>,
    unsent: Option<UnsentGuard>,
    traffic: Option<std::sync::Arc<Traffic>>,
) {
    let _ = socket.set_nodelay(true);
    let traffic = traffic.as_deref();
    let (mut rd, wr) = socket.into_split();
    let answered = AtomicBool::new(false);
    // A write into the socket that failed with ECONNRESET took the reset:
    // a read then sees only the end of the stream.
    let reset_seen = AtomicBool::new(false);
    // The upstream's end, for the downstream, which owns the stream that
    // carries the news back: `Ok(n)` the socket was reset after `n` bytes.
    let (upstream_end, upstream_ended) = tokio::sync::oneshot::channel::<u64>();
    // The peer's STOP_SENDING of our stream: it may carry a reset.
    let peer_stopped = send.stopped();
    let upstream = upstream(
        &mut rd,
        &mut send,
        nagle.as_mut(),
        &answered,
        &reset_seen,
        upstream_end,
        unsent,
        traffic,
    );
    let downstream = downstream(
        recv,
        wr,
        peer_stopped,
        upstream_ended,
        &answered,
        &reset_seen,
        traffic,
    );
    tokio::pin!(upstream, downstream);
    let mut upstream_done = false;
    loop {
        tokio::select! {
            () = &mut upstream, if !upstream_done => upstream_done = true,
            end = &mut downstream => {
                match end {
                    Downstream::Reset => return,
                    Downstream::Finished | Downstream::Aborted => {}
                }
                if !upstream_done {
                    upstream.await;
                }
                return;
            }
        }
    }
}

/// The socket-to-stream direction of [`pump_with`]: copies until the
/// socket ends or fails, then ends the stream to match (a finish, or the
/// count of bytes sent before the reset, through `upstream_end`).
// One argument per piece of state the two directions share; a struct
// for them would only be unpacked again here.
#[allow(clippy::too_many_arguments)]
async fn upstream(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut quinn::SendStream,
    nagle: Option<&mut Nagle>,
    answered: &AtomicBool,
    reset_seen: &AtomicBool,
    upstream_end: tokio::sync::oneshot::Sender<u64>,
    unsent: Option<UnsentGuard>,
    traffic: Option<&Traffic>,
) {
    let mut counted = Counted {
        send,
        sent: 0,
        traffic,
    };
    let end = match nagle {
        Some(n) => forward_coalesced(rd, &mut counted, n, answered).await,
        None => forward_at_once(rd, &mut counted).await,
    };
    let sent = counted.sent;
    let end = match end {
        Upstream::Eof if reset_seen.load(Ordering::Acquire) => Upstream::Failed,
        end => end,
    };
    match end {
        Upstream::Eof => {
            drop(upstream_end);
            let _ = send.finish();
            // Keep the stream alive until the peer has everything.
            let _ = send.stopped().await;
        }
        Upstream::Failed => {
            if upstream_end.send(sent).is_ok() {
                // The peer stops the stream once it has delivered the
                // bytes and reset its socket.
                let _ = send.stopped().await;
            } else {
                // The peer has finished its direction: it no longer
                // looks for a STOP_SENDING, so only a reset reaches it.
                let _ = send.reset(quinn::VarInt::from_u32(STREAM_RESET));
            }
        }
        Upstream::Closed => drop(upstream_end),
    }
    drop(unsent);
}

/// The stream-to-socket direction of [`pump_with`]: copies until the
/// stream ends or is reset, and follows the resets both ways (a reset the
/// peer announced in `peer_stopped` after its last bytes; the upstream's,
/// announced to the peer when `upstream_ended` says so). `answered` is set
/// whenever bytes come back; `reset_seen` when a write took a reset.
async fn downstream(
    mut recv: quinn::RecvStream,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    peer_stopped: impl Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>>,
    mut upstream_ended: tokio::sync::oneshot::Receiver<u64>,
    answered_by_peer: &AtomicBool,
    reset_seen: &AtomicBool,
    traffic: Option<&Traffic>,
) -> Downstream {
    let mut buf = vec![0u8; BUFFER];
    let mut records = Deframer::default();
    let mut received: u64 = 0;
    // From the peer: its socket was reset after it had sent this much.
    let mut reset_after: Option<u64> = None;
    let mut peer_stopped = std::pin::pin!(peer_stopped);
    let mut watching = true;
    let mut upstream_open = true;
    // Writing into the socket failed: it is gone, and the upstream's
    // end says how (reset, or closed).
    let mut writable = true;
    loop {
        if reset_after.is_some_and(|n| received >= n) {
            reset_on_close(wr);
            return Downstream::Reset;
        }
        tokio::select! {
            read = recv.read(&mut buf), if writable => match read {
                Ok(Some(n)) => {
                    answered_by_peer.store(true, Ordering::Release);
                    received += u64::try_from(n).unwrap_or(u64::MAX);
                    let Ok(delivered) = deliver(&mut records, &buf[..n], &mut wr, traffic).await
                    else {
                        // Not a pump's stream: the connection is broken.
                        let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                        reset_on_close(wr);
                        return Downstream::Reset;
                    };
                    if let Err(e) = delivered {
                        if e.raw_os_error() == Some(libc::ECONNRESET) {
                            reset_seen.store(true, Ordering::Release);
                        }
                        writable = false;
                        // The upstream ended already, without a reset:
                        // as when it ends after a failed write, there
                        // is nothing left to wait for (and no branch
                        // left to wait on once the peer has stopped).
                        if !upstream_open {
                            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                            return Downstream::Finished;
                        }
                    }
                }
                Ok(None) => {
                    let _ = wr.shutdown().await;
                    return Downstream::Finished;
                }
                Err(_) => {
                    reset_on_close(wr);
                    return Downstream::Reset;
                }
            },
            end = &mut upstream_ended, if upstream_open => {
                upstream_open = false;
                match end {
                    Ok(sent) => {
                        // Below 2^62 for any stream quinn can carry.
                        let code = quinn::VarInt::from_u64(RESET_AFTER + sent)
                            .unwrap_or(quinn::VarInt::from_u32(STREAM_RESET));
                        let _ = recv.stop(code);
                        return Downstream::Aborted;
                    }
                    Err(_) if !writable => {
                        let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                        return Downstream::Finished;
                    }
                    // Ended without a reset; the socket still reads.
                    Err(_) => {}
                }
            },
            stopped = &mut peer_stopped, if watching => {
                watching = false;
                if let Ok(Some(code)) = stopped
                    && code.into_inner() >= RESET_AFTER
                {
                    reset_after = Some(code.into_inner() - RESET_AFTER);
                }
            },
        }
    }
}

/// Writes the records in `received` into the socket: data as it is, the
/// urgent byte with `MSG_OOB`. The outer error: the stream is not made of
/// records; the inner one: writing into the socket failed.
async fn deliver(
    records: &mut Deframer,
    mut received: &[u8],
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    traffic: Option<&Traffic>,
) -> Result<std::io::Result<()>, segment::Malformed> {
    while !received.is_empty() {
        let (piece, rest) = records.next(received)?;
        received = rest;
        let (written, len) = match piece {
            None => continue,
            Some(Piece::Data(data)) => (wr.write_all(data).await, data.len()),
            Some(Piece::Urgent(byte)) => (send_urgent(wr.as_ref(), byte).await, 1),
        };
        if let Err(e) = written {
            return Ok(Err(e));
        }
        if let Some(t) = traffic {
            Traffic::add(&t.received, len);
        }
    }
    Ok(Ok(()))
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
