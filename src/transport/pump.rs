//! Carries one TCP connection over one QUIC stream, both ways. The same pump
//! runs on both sides: on the server next to the real socket, in rscq next
//! to the program's socket. The stream holds records
//! ([`crate::proto::segment`]): data, and the urgent byte at its place, read
//! and sent again with [`super::urgent`]; and the control records of the
//! send window, which bounds what each side may have taken from its socket
//! that the other has not yet written into its own.
//!
//! Must not decide when held bytes go or how far the window reaches:
//! [`Nagle`] asks [`crate::engine::coalesce`], and the window's counts are a
//! [`crate::engine::sendwindow::SendWindow`] (shared through `super::flow`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::flow::{Flow, Held, Pending, write_front};
use super::urgent::{Chunk, read_marked};
use crate::engine::coalesce::Coalescer;
use crate::engine::sendwindow::Windows;
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

pub(super) const BUFFER: usize = 64 * 1024;

/// What the server's pumps announce: no send limit of their own (the
/// client's receive window, its `--readahead-window`, bounds how far the
/// server reads a remote socket ahead of the program), and a buffer for
/// the largest `--net-send-window` a client may set.
pub const SERVER_WINDOWS: Windows = Windows {
    send: u64::MAX,
    receive: crate::config::MAX_NET_SEND_WINDOW as u64,
};

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
    /// The program's side ended: the end record goes, and the stream
    /// finishes once the peer's side has ended too.
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

    /// The window's control records that are due: our window announced
    /// again (before any byte is taken under it), and the acknowledgement.
    async fn acknowledge(&mut self, flow: &Flow) -> Result<(), quinn::WriteError> {
        let (announcement, due) = {
            let mut window = flow.lock();
            (window.take_announcement(), window.take_ack())
        };
        if let Some(own) = announcement {
            self.write_raw(&segment::window_record(own.send, own.receive))
                .await?;
        }
        match due {
            Some(n) => self.write_raw(&segment::ack_record(n)).await,
            None => Ok(()),
        }
    }

    async fn write_raw(&mut self, buf: &[u8]) -> Result<(), quinn::WriteError> {
        self.send.write_all(buf).await?;
        self.sent += u64::try_from(buf.len()).unwrap_or(u64::MAX);
        Ok(())
    }
}

/// Copies the socket to the stream as it comes, while the window has room.
async fn forward_at_once(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut Counted<'_>,
    flow: &Flow,
) -> Upstream {
    let mut buf = vec![0u8; BUFFER];
    loop {
        if send.acknowledge(flow).await.is_err() {
            return Upstream::Closed;
        }
        let room = flow.room();
        let read = tokio::select! {
            biased;
            () = flow.wake.notified() => continue,
            read = read_marked(rd.as_ref(), &mut buf[..room]), if room > 0 => read,
        };
        let written = match read {
            Ok(Chunk::End) => return Upstream::Eof,
            Ok(Chunk::Data(n)) => {
                flow.taken(n);
                send.write_data(&buf[..n]).await
            }
            Ok(Chunk::Urgent(byte)) => {
                flow.taken(1);
                send.write_urgent(byte).await
            }
            Err(_) => return Upstream::Failed,
        };
        if written.is_err() {
            return Upstream::Closed;
        }
    }
}

/// Copies the socket to the stream under a [`Coalescer`], while the window
/// has room (held bytes count as taken). `answered` is set by the other
/// direction whenever bytes come back.
async fn forward_coalesced(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut Counted<'_>,
    nagle: &mut Nagle,
    answered: &AtomicBool,
    flow: &Flow,
) -> Upstream {
    let mut buf = vec![0u8; BUFFER];
    let now = || tokio::time::Instant::now().into_std();
    loop {
        if send.acknowledge(flow).await.is_err() {
            return Upstream::Closed;
        }
        let room = flow.room();
        let rtt = nagle.program.rtt();
        let holding = nagle.coalescer.is_holding();
        let deadline = nagle
            .coalescer
            .deadline(rtt)
            .map(tokio::time::Instant::from_std);
        let ready = tokio::select! {
            biased;
            () = flow.wake.notified() => None,
            r = read_marked(rd.as_ref(), &mut buf[..room]), if room > 0 => Some(r),
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
            Ok(Chunk::Data(n)) => {
                flow.taken(n);
                n
            }
            Ok(Chunk::Urgent(byte)) => {
                flow.taken(1);
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
/// `shutdown`/end record (the stream stays open for the acknowledgements
/// of the other direction, and finishes once both ended); a reset on
/// either side resets the other, after the bytes sent before it (see
/// [`RESET_AFTER`]). The server's pumps announce [`SERVER_WINDOWS`].
pub async fn pump(socket: TcpStream, send: quinn::SendStream, recv: quinn::RecvStream) {
    pump_with(socket, send, recv, SERVER_WINDOWS, None, None, None).await;
}

/// Resets a socket whose read half is dropped after this: a zero linger
/// makes the close send a RST, and the write half must not send a FIN
/// first when it is dropped, or the other end reads EOF instead of the
/// reset.
fn reset_on_close(wr: tokio::net::tcp::OwnedWriteHalf) {
    let _ = rustix::net::sockopt::set_socket_linger(wr.as_ref(), Some(Duration::ZERO));
    wr.forget();
}

/// [`pump`], announcing `windows`, with the program's writes coalesced by
/// `nagle` when given; `unsent` is released once the socket-to-stream
/// direction is done (the socket ended and the peer acknowledged
/// everything, or it failed and the peer delivered what came before).
pub async fn pump_with(
    socket: TcpStream,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    windows: Windows,
    mut nagle: Option<Nagle>,
    unsent: Option<UnsentGuard>,
    traffic: Option<std::sync::Arc<Traffic>>,
) {
    let _ = socket.set_nodelay(true);
    let traffic = traffic.as_deref();
    let (mut rd, wr) = socket.into_split();
    let answered = AtomicBool::new(false);
    let flow = Flow::new(windows);
    // A write into the socket that failed with ECONNRESET took the reset:
    // a read then sees only the end of the stream.
    let reset_seen = AtomicBool::new(false);
    // The upstream's end, for the downstream, which owns the stream that
    // carries the news back: `Ok(n)` the socket was reset after `n` bytes.
    let (upstream_end, upstream_ended) = tokio::sync::oneshot::channel::<u64>();
    // The peer's STOP_SENDING of our stream: it may carry a reset.
    let peer_stopped = send.stopped();
    let shared = Shared {
        answered: &answered,
        reset_seen: &reset_seen,
        flow: &flow,
        traffic,
    };
    let upstream = upstream(
        &mut rd,
        &mut send,
        nagle.as_mut(),
        shared,
        upstream_end,
        unsent,
    );
    let downstream = downstream(recv, wr, peer_stopped, upstream_ended, shared);
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

/// The state the two directions of [`pump_with`] share.
#[derive(Clone, Copy)]
struct Shared<'a> {
    /// Set whenever the peer's bytes come back (the `nagle` layer's answer).
    answered: &'a AtomicBool,
    /// A write into the socket took a reset.
    reset_seen: &'a AtomicBool,
    flow: &'a Flow,
    traffic: Option<&'a Traffic>,
}

/// The socket-to-stream direction of [`pump_with`]: announces the windows,
/// copies until the socket ends or fails, then ends the stream to match (a
/// finish, or the count of bytes sent before the reset, through
/// `upstream_end`). It also writes the downstream's acknowledgements.
async fn upstream(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    send: &mut quinn::SendStream,
    nagle: Option<&mut Nagle>,
    shared: Shared<'_>,
    upstream_end: tokio::sync::oneshot::Sender<u64>,
    unsent: Option<UnsentGuard>,
) {
    let mut counted = Counted {
        send,
        sent: 0,
        traffic: shared.traffic,
    };
    let own = shared.flow.lock().own();
    let end = if counted
        .write_raw(&segment::window_record(own.send, own.receive))
        .await
        .is_err()
    {
        Upstream::Closed
    } else {
        match nagle {
            Some(n) => forward_coalesced(rd, &mut counted, n, shared.answered, shared.flow).await,
            None => forward_at_once(rd, &mut counted, shared.flow).await,
        }
    };
    let sent = counted.sent;
    let end = match end {
        Upstream::Eof if shared.reset_seen.load(Ordering::Acquire) => Upstream::Failed,
        end => end,
    };
    let mut unsent = unsent;
    match end {
        Upstream::Eof => {
            drop(upstream_end);
            // The peer shuts its socket down after our last bytes (the end
            // record); the stream stays open, so that what the peer still
            // sends is acknowledged, until it sends no more.
            let end_record = segment::end_record(counted.sent);
            if counted.write_raw(&end_record).await.is_ok() {
                acknowledge_after_end(&mut counted, shared.flow, &mut unsent).await;
            }
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

/// After our socket's end (the end record is out): writes the
/// acknowledgements of what the peer still sends, until it sends no more;
/// `unsent` is let go once the peer has written all we sent into its
/// socket.
async fn acknowledge_after_end(
    send: &mut Counted<'_>,
    flow: &Flow,
    unsent: &mut Option<UnsentGuard>,
) {
    loop {
        if send.acknowledge(flow).await.is_err() {
            return;
        }
        if unsent.is_some() && flow.all_acknowledged() {
            *unsent = None;
        }
        if flow.is_peer_data_over() {
            return;
        }
        flow.wake.notified().await;
    }
}

/// The stream-to-socket direction of [`pump_with`]: copies until the
/// stream ends or is reset, and follows the resets both ways (a reset the
/// peer announced in `peer_stopped` after its last bytes; the upstream's,
/// announced to the peer when `upstream_ended` says so). The stream is
/// read even while the socket takes nothing, up to the receive window, so
/// the peer's acknowledgements behind those bytes are never stuck.
async fn downstream(
    mut recv: quinn::RecvStream,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    peer_stopped: impl Future<Output = Result<Option<quinn::VarInt>, quinn::StoppedError>>,
    mut upstream_ended: tokio::sync::oneshot::Receiver<u64>,
    shared: Shared<'_>,
) -> Downstream {
    let mut buf = vec![0u8; BUFFER];
    let mut records = Deframer::default();
    let mut pending = Pending::default();
    let receive_window = shared.flow.lock().receive_window();
    let mut received: u64 = 0;
    // From the peer: its socket was reset after it had sent this much.
    let mut reset_after: Option<u64> = None;
    let mut peer_stopped = std::pin::pin!(peer_stopped);
    let mut watching = true;
    let mut upstream_open = true;
    // The peer finished its side: what is pending goes, then a shutdown.
    let mut finished = false;
    // The peer's socket ended (its end record): what is pending goes, then
    // a shutdown, and the stream is still read for the acknowledgements.
    let mut data_over = false;
    let mut shut = false;
    // Writing into the socket failed: it is gone, and the upstream's
    // end says how (reset, or closed).
    let mut writable = true;
    loop {
        if reset_after.is_some_and(|n| received >= n) && pending.is_empty() {
            reset_on_close(wr);
            return Downstream::Reset;
        }
        if (finished || data_over) && pending.is_empty() && !shut {
            let _ = wr.shutdown().await;
            shut = true;
            // All the peer sent is in the socket: it may know so.
            shared.flow.acknowledge_everything();
        }
        if finished && pending.is_empty() {
            return Downstream::Finished;
        }
        // A peer keeps at most our receive window unacknowledged, and we
        // acknowledge only what went into the socket: for it the stream is
        // always read (its acknowledgements and its finish come through).
        // A peer that sends more waits on QUIC's flow control.
        let write_failed = tokio::select! {
            read = recv.read(&mut buf), if writable && !finished && pending.bytes <= receive_window => {
                match read {
                    Ok(Some(n)) => {
                        received += u64::try_from(n).unwrap_or(u64::MAX);
                        match take_in(&mut records, &buf[..n], &mut pending, &mut data_over, &wr, shared) {
                            Ok(written) => written.err(),
                            Err(segment::Malformed(_)) => {
                                // Not a pump's stream: the connection is broken.
                                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                                reset_on_close(wr);
                                return Downstream::Reset;
                            }
                        }
                    }
                    Ok(None) => {
                        finished = true;
                        shared.flow.peer_finished();
                        None
                    }
                    Err(_) => {
                        reset_on_close(wr);
                        return Downstream::Reset;
                    }
                }
            },
            written = write_front(&mut wr, &pending), if writable && !pending.is_empty() => {
                match written {
                    Ok(n) => {
                        pending.advance(n);
                        delivered(n, shared);
                        None
                    }
                    Err(e) => Some(e),
                }
            },
            end = &mut upstream_ended, if upstream_open => {
                upstream_open = false;
                if let Some(over) = on_upstream_end(end.ok(), &mut recv, writable) {
                    return over;
                }
                None
            },
            stopped = &mut peer_stopped, if watching => {
                watching = false;
                // A reset the peer announced after its last bytes.
                if let Ok(Some(code)) = stopped {
                    reset_after = code.into_inner().checked_sub(RESET_AFTER);
                }
                None
            },
            else => {
                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                return Downstream::Finished;
            }
        };
        if let Some(e) = write_failed {
            if e.raw_os_error() == Some(libc::ECONNRESET) {
                shared.reset_seen.store(true, Ordering::Release);
            }
            writable = false;
            pending.clear();
            // The stream is no longer read, so no acknowledgement comes:
            // the upstream reads its socket to the end (or the reset)
            // unbounded, as it must to tell the peer.
            shared.flow.peer_finished();
            // The upstream ended already, without a reset: as when it
            // ends after a failed write, there is nothing left to wait
            // for (and no branch left to wait on once the peer has
            // stopped).
            if !upstream_open {
                let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
                return Downstream::Finished;
            }
        }
    }
}

/// The upstream ended (`sent`: its socket was reset after it had put this
/// many bytes on its stream): the peer is told to stop. Returns how the
/// downstream ends, unless it goes on (an orderly end while the socket
/// still takes bytes).
fn on_upstream_end(
    sent: Option<u64>,
    recv: &mut quinn::RecvStream,
    writable: bool,
) -> Option<Downstream> {
    match sent {
        Some(sent) => {
            // Below 2^62 for any stream quinn can carry.
            let code = quinn::VarInt::from_u64(RESET_AFTER + sent)
                .unwrap_or(quinn::VarInt::from_u32(STREAM_RESET));
            let _ = recv.stop(code);
            Some(Downstream::Aborted)
        }
        None if !writable => {
            let _ = recv.stop(quinn::VarInt::from_u32(STREAM_RESET));
            Some(Downstream::Finished)
        }
        None => None,
    }
}

/// `n` of the peer's payload bytes went into the socket.
fn delivered(n: usize, shared: Shared<'_>) {
    shared.flow.delivered(n);
    if let Some(t) = shared.traffic {
        Traffic::add(&t.received, n);
    }
}

/// Takes in the records in `received`: data goes into the socket at once
/// as far as it takes it without waiting, the rest (and the urgent byte,
/// sent with `MSG_OOB`) waits in `pending`; the end record sets
/// `data_over`; control records go to the window. The outer error: the
/// stream is not made of records; the inner one: writing into the socket
/// failed.
fn take_in(
    records: &mut Deframer,
    mut received: &[u8],
    pending: &mut Pending,
    data_over: &mut bool,
    wr: &tokio::net::tcp::OwnedWriteHalf,
    shared: Shared<'_>,
) -> Result<std::io::Result<()>, segment::Malformed> {
    while !received.is_empty() {
        let (piece, rest) = records.next(received)?;
        received = rest;
        match piece {
            None => {}
            Some(Piece::Data(mut data)) => {
                shared.answered.store(true, Ordering::Release);
                if pending.is_empty() {
                    match wr.try_write(data) {
                        Ok(n) => {
                            delivered(n, shared);
                            data = &data[n..];
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Ok(Err(e)),
                    }
                }
                if !data.is_empty() {
                    pending.push(Held::Data(data.to_vec(), 0));
                }
            }
            Some(Piece::Urgent(byte)) => {
                shared.answered.store(true, Ordering::Release);
                pending.push(Held::Urgent(byte));
            }
            Some(Piece::End(_)) => {
                *data_over = true;
                shared.flow.peer_data_over();
            }
            Some(control) => shared.flow.on_peer_record(control),
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
