//! The server's network stack for `rscq --net`: each remote TCP connection
//! is one QUIC stream, pumped to and from a real socket on this host.
//!
//! The pump reads the socket ahead of the program as far as the client's
//! read-ahead window allows (its `--readahead-window`, which its pump
//! announces): that is the thesis's read-ahead. The other way, what the
//! socket has not taken yet waits in the pump, at most the client's send
//! window ([`crate::transport::pump::SERVER_WINDOWS`]).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::errno::Errno;
use crate::proto::{OptionTarget, PureOp, PureReply, Reply, Response, SockAddr, SockOption, frame};

/// How long a remote connect may take before the program sees ETIMEDOUT;
/// shorter than the kernel's ~2 minutes so a dead route fails visibly.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to `addr`, answers on `send`, then pumps bytes until both
/// directions are done.
pub async fn tcp_connect(
    net: &NetSession,
    addr: SockAddr,
    pure: bool,
    options: &[SockOption],
    bound: Option<u64>,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    let target = SocketAddr::from(addr);
    let socket = match bound {
        // The program bound its socket first: that socket connects, from
        // the address it is bound to.
        Some(id) => match net.take_bound(id) {
            Ok(bound) => Ok(bound),
            Err(e) => return answer(&mut send, Err(e)).await,
        },
        None if target.is_ipv6() => tokio::net::TcpSocket::new_v6(),
        None => tokio::net::TcpSocket::new_v4(),
    };
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            crate::limits::note_fd_exhaustion(&e, "rscq-server");
            return answer(&mut send, Err(Errno::from_io(&e))).await;
        }
    };
    // The program's own socket has no way to set nodelay on the server;
    // the pump writes whole chunks, so nodelay is the default here.
    let _ = socket.set_nodelay(true);
    if let Err(e) = super::sockopt::apply_all(&socket, options) {
        return answer(&mut send, Err(e)).await;
    }
    crate::transport::urgent::keep_urgent_inline(&socket);
    // The client gives up on a connect by dropping its end of the stream
    // (the program closed its socket, or died, while it was under way):
    // the half-made connection is dropped with it.
    let attempt = tokio::select! {
        attempt = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(target)) => Some(attempt),
        _ = send.stopped() => None,
    };
    let stream = match attempt {
        None => return,
        Some(Ok(Ok(s))) => s,
        Some(Ok(Err(e))) => return answer(&mut send, Err(Errno::from_io(&e))).await,
        Some(Err(_)) => return answer(&mut send, Err(Errno(libc::ETIMEDOUT))).await,
    };
    let _registered = net.connections.register(&stream);
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
    if pure {
        pure_pump(stream, send, recv).await;
    } else {
        crate::transport::pump::pump(stream, send, recv).await;
    }
}

async fn answer(send: &mut quinn::SendStream, response: Response) {
    if send.write_all(&frame::encode(&response)).await.is_ok() {
        let _ = send.finish();
    }
}

/// One connection's listening sockets. Dropped with the connection, which
/// closes every listener: a program that dies leaves no port behind.
#[derive(Debug)]
pub struct NetSession {
    conn: quinn::Connection,
    listeners: std::sync::Mutex<std::collections::HashMap<u64, Listener>>,
    next_id: std::sync::atomic::AtomicU64,
    connections: std::sync::Arc<super::sockopt::Connections>,
}

#[derive(Debug)]
enum Listener {
    Bound(std::net::TcpListener),
    /// Accepting; aborting the task (and dropping the copy, kept for
    /// socket options) closes the socket.
    Listening(tokio::task::AbortHandle, std::os::fd::OwnedFd),
}

impl NetSession {
    /// The connection its sockets' streams go on.
    pub fn connection(&self) -> quinn::Connection {
        self.conn.clone()
    }
}

impl Drop for NetSession {
    fn drop(&mut self) {
        let listeners = self
            .listeners
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, l) in listeners.drain() {
            if let Listener::Listening(task, _) = l {
                task.abort();
            }
        }
    }
}

/// The most listening sockets one client may hold.
const MAX_LISTENERS: usize = 1024;

impl NetSession {
    pub fn new(conn: quinn::Connection) -> Self {
        Self {
            conn,
            listeners: std::sync::Mutex::default(),
            next_id: std::sync::atomic::AtomicU64::new(1),
            connections: std::sync::Arc::default(),
        }
    }

    fn listeners(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Listener>> {
        self.listeners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The bound (not listening) socket `id`, taken out of the listeners
    /// to connect: EISCONN if it listens (as connect(2) on a listening
    /// socket), EBADF if there is none.
    fn take_bound(&self, id: u64) -> Result<tokio::net::TcpSocket, Errno> {
        let mut listeners = self.listeners();
        match listeners.remove(&id) {
            Some(Listener::Bound(bound)) => {
                bound
                    .set_nonblocking(true)
                    .map_err(|e| Errno::from_io(&e))?;
                let fd = std::os::fd::OwnedFd::from(bound);
                Ok(tokio::net::TcpSocket::from_std_stream(
                    std::net::TcpStream::from(fd),
                ))
            }
            Some(listening) => {
                listeners.insert(id, listening);
                Err(Errno(libc::EISCONN))
            }
            None => Err(Errno::EBADF),
        }
    }

    /// `socket` + `setsockopt` + `bind(2)`, without `listen`.
    pub fn bind(
        &self,
        addr: SockAddr,
        reuse_addr: bool,
        reuse_port: bool,
        v6_only: Option<bool>,
        options: &[SockOption],
    ) -> Response {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, bind, socket_with, sockopt};
        if self.listeners().len() >= MAX_LISTENERS {
            return Err(Errno(libc::EMFILE));
        }
        let target = SocketAddr::from(addr);
        let family = if target.is_ipv6() {
            AddressFamily::INET6
        } else {
            AddressFamily::INET
        };
        let fd = socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
        sockopt::set_socket_reuseaddr(&fd, reuse_addr)?;
        sockopt::set_socket_reuseport(&fd, reuse_port)?;
        if let (true, Some(only)) = (target.is_ipv6(), v6_only) {
            sockopt::set_ipv6_v6only(&fd, only)?;
        }
        super::sockopt::apply_all(&fd, options)?;
        // Its accepted connections inherit it, before their first byte.
        crate::transport::urgent::keep_urgent_inline(&fd);
        bind(&fd, &target)?;
        let listener = std::net::TcpListener::from(fd);
        let local = listener.local_addr().map_err(|e| Errno::from_io(&e))?;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.listeners().insert(id, Listener::Bound(listener));
        Ok(Reply::TcpBound {
            listener: id,
            local: local.into(),
        })
    }

    /// `listen(2)`, then every accepted connection is sent to the client on
    /// a stream of its own.
    pub fn listen(&self, id: u64, backlog: u32, pure: bool) -> Response {
        let mut listeners = self.listeners();
        let backlog = i32::try_from(backlog.min(4096)).unwrap_or(128);
        let bound = match listeners.remove(&id) {
            Some(Listener::Bound(bound)) => bound,
            // Listening already: Linux takes a second listen(2) as a new
            // backlog (asyncio's `create_server(sock=...)` relies on it).
            Some(Listener::Listening(task, copy)) => {
                let relisten = rustix::net::listen(&copy, backlog);
                listeners.insert(id, Listener::Listening(task, copy));
                return relisten.map(|()| Reply::Done).map_err(Errno::from);
            }
            None => return Err(Errno::EBADF),
        };
        if let Err(e) = rustix::net::listen(&bound, backlog) {
            listeners.insert(id, Listener::Bound(bound));
            return Err(e.into());
        }
        let copy = match rustix::io::fcntl_dupfd_cloexec(&bound, 0) {
            Ok(c) => c,
            Err(e) => {
                listeners.insert(id, Listener::Bound(bound));
                return Err(e.into());
            }
        };
        let set_nonblocking = bound.set_nonblocking(true);
        let listener = match set_nonblocking.and_then(|()| tokio::net::TcpListener::from_std(bound))
        {
            Ok(l) => l,
            Err(e) => return Err(Errno::from_io(&e)),
        };
        let conn = self.conn.clone();
        let connections = self.connections.clone();
        let task = tokio::spawn(accept_loop(listener, id, pure, conn, connections));
        listeners.insert(id, Listener::Listening(task.abort_handle(), copy));
        Ok(Reply::Done)
    }

    /// `setsockopt(2)` on a live connection or listener.
    pub fn set_option(&self, target: OptionTarget, option: SockOption) -> Response {
        match target {
            OptionTarget::Connection { local, peer } => {
                self.connections.set(local.into(), peer.into(), option)?;
            }
            OptionTarget::Listener(id) => match self.listeners().get(&id) {
                Some(Listener::Bound(l)) => super::sockopt::apply(l, option)?,
                Some(Listener::Listening(_, copy)) => super::sockopt::apply(copy, option)?,
                None => return Err(Errno::EBADF),
            },
        }
        Ok(Reply::Done)
    }

    /// `getsockopt(TCP_INFO)` of a live connection.
    pub fn tcp_info(&self, local: SockAddr, peer: SockAddr) -> Response {
        let info = self.connections.tcp_info(local.into(), peer.into())?;
        Ok(Reply::Data(info))
    }

    pub fn unbind(&self, id: u64) -> Response {
        match self.listeners().remove(&id) {
            Some(Listener::Listening(task, copy)) => {
                // The aborted task drops its listener only when the runtime
                // next gets to it; a shutdown stops the listening now, so
                // a connect that follows the reply is refused, as after the
                // program's own close. (The port goes with the last fd, a
                // moment later.)
                let _ = rustix::net::shutdown(&copy, rustix::net::Shutdown::Both);
                task.abort();
                Ok(Reply::Done)
            }
            Some(Listener::Bound(_)) => Ok(Reply::Done),
            None => Err(Errno::EBADF),
        }
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    id: u64,
    pure: bool,
    conn: quinn::Connection,
    connections: std::sync::Arc<super::sockopt::Connections>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    crate::limits::note_fd_exhaustion(&e, "rscq-server");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = conn.closed() => return,
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let registered = connections.register(&stream);
        // Streams are opened in the order of the accepts, and the client
        // delivers them in stream order: the program accepts them in the
        // order this kernel did.
        let Ok((mut send, recv)) = conn.open_bi().await else {
            return;
        };
        tokio::spawn(async move {
            let _registered = registered;
            let header = crate::proto::Incoming {
                listener: id,
                local: local.into(),
                peer: peer.into(),
            };
            if send.write_all(&frame::encode(&header)).await.is_err() {
                return;
            }
            if pure {
                pure_pump(stream, send, recv).await;
            } else {
                crate::transport::pump::pump(stream, send, recv).await;
            }
        });
    }
}

/// Writes one [`PureReply`] frame on the connection's stream, shared by
/// its receive and send tasks; false once the stream is gone.
async fn send_reply(to: &tokio::sync::Mutex<quinn::SendStream>, reply: &PureReply) -> bool {
    to.lock()
        .await
        .write_all(&frame::encode(reply))
        .await
        .is_ok()
}

/// Serves a `--pure` connection: each [`PureOp`] frame is one syscall on
/// the socket and one [`PureReply`] frame back, nothing read ahead.
/// Receives and sends run in tasks of their own, so a send is never stuck
/// behind a receive waiting for the peer.
async fn pure_pump(stream: TcpStream, send: quinn::SendStream, mut recv: quinn::RecvStream) {
    use tokio::io::AsyncWriteExt;
    use tokio::sync::mpsc;
    let (rd, mut wr) = stream.into_split();
    let send = std::sync::Arc::new(tokio::sync::Mutex::new(send));
    let (recv_ops, mut recv_queue) = mpsc::unbounded_channel::<(u32, bool)>();
    let (send_ops, mut send_queue) = mpsc::unbounded_channel::<PureOp>();
    let reply_to = send.clone();
    let receiver = tokio::spawn(async move {
        while let Some((max, nonblocking)) = recv_queue.recv().await {
            let len = usize::try_from(max.min(crate::proto::MAX_IO)).unwrap_or(0);
            for reply in pure_receive(&rd, len, nonblocking).await {
                if !send_reply(&reply_to, &reply).await {
                    return;
                }
            }
        }
    });
    let reply_to = send.clone();
    let cancels = std::sync::Arc::new(Cancels::default());
    let cancelled = cancels.clone();
    let sender = tokio::spawn(async move {
        let mut sends = 0u64;
        while let Some(op) = send_queue.recv().await {
            let reply = match op {
                PureOp::Send(data) => {
                    sends += 1;
                    match write_until_cancelled(&mut wr, &data, &cancelled, sends).await {
                        (n, None) => PureReply::Sent(n),
                        (0, Some(e)) => PureReply::SendFailed(e),
                        // The bytes that went are the call's result; the
                        // error comes again at the next send.
                        (n, Some(_)) => PureReply::Sent(n),
                    }
                }
                PureOp::SendUrgent(data) => {
                    sends += 1;
                    send_urgent(&mut wr, &data, &cancelled, sends).await
                }
                PureOp::WaitRoom => {
                    sends += 1;
                    wait_room(wr.as_ref(), &cancelled, sends).await;
                    PureReply::Sent(0)
                }
                // Disconnecting the socket sends the RST now (its read
                // half lives on in the receiver).
                PureOp::Reset => match rustix::net::connect_unspec(wr.as_ref()) {
                    Ok(()) => PureReply::Shut,
                    Err(e) => PureReply::SendFailed(e.into()),
                },
                PureOp::ShutdownWrite | PureOp::Recv { .. } | PureOp::CancelSend(_) => {
                    match wr.shutdown().await {
                        Ok(()) => PureReply::Shut,
                        Err(e) => PureReply::SendFailed(Errno::from_io(&e)),
                    }
                }
            };
            if !send_reply(&reply_to, &reply).await {
                return;
            }
        }
    });
    loop {
        match crate::transport::read_frame::<PureOp>(&mut recv).await {
            Ok(Some(PureOp::Recv { max, nonblocking })) => {
                let _ = recv_ops.send((max, nonblocking));
            }
            // Not queued: the send it is for may be waiting for room.
            Ok(Some(PureOp::CancelSend(n))) => cancels.cancel(n),
            Ok(Some(op)) => {
                let _ = send_ops.send(op);
            }
            // The client closed the stream (the program closed its socket),
            // or sent garbage: drop the connection either way.
            Ok(None) | Err(_) => break,
        }
    }
    receiver.abort();
    sender.abort();
}

/// One `Recv` of a pure connection: the replies that answer it. The read
/// stops at the urgent mark (the socket keeps urgent bytes in line, see
/// `transport::urgent`); the bytes before it and the urgent byte go in an
/// [`PureReply::Urgent`], and the read goes on. A non-blocking one reads
/// on until nothing is left or `len` bytes came, so one fetch brings an
/// urgent byte behind ordinary bytes too (`recv(MSG_OOB)`, `SIOCATMARK`).
async fn pure_receive(
    rd: &tokio::net::tcp::OwnedReadHalf,
    len: usize,
    nonblocking: bool,
) -> Vec<PureReply> {
    use crate::transport::urgent::{Chunk, read_marked, read_marked_now};
    let mut replies = Vec::new();
    let mut got: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; len.max(1)];
    loop {
        let room = len.saturating_sub(got.len()).max(1);
        let read = if nonblocking {
            read_marked_now(rd.as_ref(), &mut buf[..room])
        } else {
            read_marked(rd.as_ref(), &mut buf[..room]).await
        };
        match read {
            Ok(Chunk::Urgent(byte)) => {
                let before = std::mem::take(&mut got);
                replies.push(PureReply::Urgent { before, byte });
            }
            Ok(Chunk::Data(n)) => {
                got.extend_from_slice(&buf[..n]);
                if !nonblocking || got.len() >= len {
                    break;
                }
            }
            // What came before the end or the error is the answer; the
            // end or error comes at the next receive.
            Ok(Chunk::End) | Err(_) if !got.is_empty() => break,
            Ok(Chunk::End) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if got.is_empty() {
                    replies.push(PureReply::RecvFailed(Errno::EAGAIN));
                    return replies;
                }
                break;
            }
            Err(e) => {
                replies.push(PureReply::RecvFailed(Errno::from_io(&e)));
                return replies;
            }
        }
    }
    replies.push(PureReply::Data(got));
    replies
}

/// A `send(MSG_OOB)` (send number `n`): all but the last byte as a
/// [`PureOp::Send`], then the last one as the urgent byte.
async fn send_urgent(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    data: &[u8],
    cancels: &Cancels,
    n: u64,
) -> PureReply {
    let Some((&last, ordinary)) = data.split_last() else {
        return PureReply::Sent(0);
    };
    match write_until_cancelled(wr, ordinary, cancels, n).await {
        (0, Some(e)) if !ordinary.is_empty() => return PureReply::SendFailed(e),
        (k, Some(_)) => return PureReply::Sent(k),
        (k, None) if k < u64::try_from(ordinary.len()).unwrap_or(u64::MAX) => {
            return PureReply::Sent(k);
        }
        _ => {}
    }
    let urgent = tokio::select! {
        biased;
        sent = crate::transport::urgent::send_urgent(wr.as_ref(), last) => sent.map(|()| 1),
        () = cancels.cancelled(n) => Ok(0),
    };
    let total = u64::try_from(ordinary.len()).unwrap_or(u64::MAX);
    match urgent {
        Ok(k) => PureReply::Sent(total + k),
        Err(e) if total == 0 => PureReply::SendFailed(Errno::from_io(&e)),
        Err(_) => PureReply::Sent(total),
    }
}

/// The `Send`s of a pure connection the client has cancelled, by number.
#[derive(Debug, Default)]
struct Cancels {
    numbers: std::sync::Mutex<std::collections::HashSet<u64>>,
    /// The number of the send under way (or last done).
    current: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

/// More than any client has sends in flight on one connection: older
/// cancels are of sends long done.
const MAX_CANCELS: usize = 4096;

impl Cancels {
    fn numbers(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<u64>> {
        self.numbers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cancel(&self, n: u64) {
        // A cancel of a send already answered has nothing left to do.
        if n < self.current.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let mut numbers = self.numbers();
        if numbers.len() < MAX_CANCELS {
            numbers.insert(n);
        }
        drop(numbers);
        self.changed.notify_waiters();
    }

    /// Starts send `n`: cancels of earlier ones are forgotten.
    fn start(&self, n: u64) {
        self.current.store(n, std::sync::atomic::Ordering::Release);
        self.numbers().retain(|&m| m >= n);
    }

    fn is_cancelled(&self, n: u64) -> bool {
        self.numbers().contains(&n)
    }

    /// Waits until send `n` is cancelled.
    async fn cancelled(&self, n: u64) {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled(n) {
                return;
            }
            notified.await;
        }
    }
}

/// A [`PureOp::WaitRoom`] (send number `n`): until the socket polls
/// writable (or failed), or the client cancels the wait.
async fn wait_room(socket: &TcpStream, cancels: &Cancels, n: u64) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    cancels.start(n);
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let room = async {
        // The runtime's readiness may be stale (it is cleared only by a
        // write that found no room): the kernel has the last word.
        while socket.writable().await.is_ok() {
            let mut fds = [PollFd::new(socket, PollFlags::OUT)];
            if rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|n| n > 0) {
                return;
            }
            let _ = socket.try_io(tokio::io::Interest::WRITABLE, || {
                Err::<(), _>(std::io::ErrorKind::WouldBlock.into())
            });
        }
    };
    tokio::select! {
        () = room => {}
        () = cancels.cancelled(n) => {}
    }
}

/// Writes `data` (send number `n`) into the socket, waiting for room until
/// the client cancels the send; then one more try takes what fits. Returns
/// how many bytes went, and the error that stopped it, if any.
async fn write_until_cancelled(
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    data: &[u8],
    cancels: &Cancels,
    n: u64,
) -> (u64, Option<Errno>) {
    use tokio::io::AsyncWriteExt;
    cancels.start(n);
    let mut done = 0usize;
    let count = |done: usize| u64::try_from(done).unwrap_or(u64::MAX);
    while done < data.len() {
        let wrote = tokio::select! {
            biased;
            wrote = wr.write(&data[done..]) => wrote,
            () = cancels.cancelled(n) => {
                // What fits now still goes, as a call interrupted while it
                // copies; nothing more is waited for.
                match wr.as_ref().try_write(&data[done..]) {
                    Ok(k) => done += k,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return (count(done), Some(Errno::from_io(&e))),
                }
                return (count(done), None);
            }
        };
        match wrote {
            Ok(0) => return (count(done), Some(Errno(libc::EPIPE))),
            Ok(k) => done += k,
            Err(e) => return (count(done), Some(Errno::from_io(&e))),
        }
    }
    (count(done), None)
}

#[cfg(test)]
mod pump_end_order_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Panics raised in the pump's file (`transport/pump.rs`), by any task:
    /// the server's pump runs on a task whose panic tokio swallows.
    static PUMP_PANICS: AtomicUsize = AtomicUsize::new(0);

    fn count_pump_panics() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if info
                    .location()
                    .is_some_and(|l| l.file().ends_with("pump.rs"))
                {
                    PUMP_PANICS.fetch_add(1, Ordering::SeqCst);
                }
                previous(info);
            }));
        });
    }

    /// Found by the fuzzer (`tests/fuzz`): the client stops reading, the
    /// remote peer closes its end, then bytes from the client fail to go
    /// into the socket. The server's pump then had no branch left to wait
    /// on, and `select!` panicked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_after_both_ends_is_no_panic() {
        count_pump_panics();
        let peer = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = peer.local_addr().unwrap();
        let server = crate::server::start_embedded().unwrap();
        let link = server.connect().await.unwrap();
        let streams = link
            .open_tcp(addr.into(), false, Vec::new(), None)
            .await
            .unwrap()
            .unwrap();
        let (mut remote, _) = peer.accept().await.unwrap();
        let mut send = streams.send;
        // The client stops reading: STOP_SENDING, with no reset in it.
        drop(streams.recv);
        // The remote peer closes gracefully: the pump's upstream sees the
        // end of the socket.
        remote.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ =
            tokio::time::timeout(Duration::from_millis(200), remote.read_to_end(&mut rest)).await;
        drop(remote);
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Bytes for the closed socket: the first write draws a reset, a
        // later one fails.
        for _ in 0..5 {
            if send.write_all(b"late bytes").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(PUMP_PANICS.load(Ordering::SeqCst), 0, "the pump panicked");
        link.close().await;
        server.shutdown().await;
    }
}

#[cfg(test)]
mod send_window_tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use crate::engine::sendwindow::Windows;
    use crate::proto::SockOption;

    /// Small buffers everywhere a kernel holds bytes (the program's send
    /// buffer, the pump's receive buffer, the server socket's send buffer,
    /// the peer's receive buffer): what the program gets to write to a
    /// peer that never reads is then about the pump's window. Before the
    /// window it was the stream's (8 MiB).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_peer_that_never_reads_holds_the_program_to_the_window() {
        const SMALL: usize = 16 * 1024;
        const WINDOW: u64 = 64 * 1024;
        let peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        rustix::net::sockopt::set_socket_recv_buffer_size(&peer, SMALL).unwrap();
        peer.set_nonblocking(true).unwrap();
        let peer = tokio::net::TcpListener::from_std(peer).unwrap();
        let server = crate::server::start_embedded().unwrap();
        let link = server.connect().await.unwrap();
        let options = vec![SockOption::SendBuffer(16 * 1024)];
        let addr = peer.local_addr().unwrap();
        let streams = link
            .open_tcp(addr.into(), false, options, None)
            .await
            .unwrap()
            .unwrap();
        // Accepted, and never read.
        let (_remote, _) = peer.accept().await.unwrap();
        let local = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        rustix::net::sockopt::set_socket_recv_buffer_size(&local, SMALL).unwrap();
        let mut program = tokio::net::TcpStream::connect(local.local_addr().unwrap())
            .await
            .unwrap();
        rustix::net::sockopt::set_socket_send_buffer_size(&program, SMALL).unwrap();
        let (pumped, _) = local.accept().await.unwrap();
        let windows = Windows {
            send: WINDOW,
            receive: 1 << 20,
        };
        let pump = tokio::spawn(crate::transport::pump::pump_with(
            pumped,
            streams.send,
            streams.recv,
            windows,
            None,
            None,
            None,
        ));
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0u64;
        // Writes until a write has waited for room for a while; the bound
        // below is on the bytes, whatever the while.
        while let Ok(wrote) =
            tokio::time::timeout(Duration::from_millis(500), program.write(&chunk)).await
        {
            sent += u64::try_from(wrote.expect("write")).unwrap();
            assert!(sent < 64 << 20, "the connection never filled");
        }
        // Each of the four small buffers is doubled by the kernel (and
        // loopback rounds up): twice that for them, and a pump read.
        let bound = WINDOW + 64 * 1024 + 8 * 2 * 16 * 1024;
        assert!(sent <= bound, "sent {sent} bytes, bound {bound}");
        pump.abort();
        link.close().await;
        server.shutdown().await;
    }
}
