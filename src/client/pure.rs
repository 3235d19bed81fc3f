//! `--pure` for sockets: stop-and-wait, as the thesis measured. A pump sends
//! one [`PureOp`] and waits for its [`PureReply`]; nothing is read ahead.
//!
//! Received bytes are still delivered through the program's local socket,
//! so `poll`, `select` and `epoll` see them as they would. What triggers a
//! fetch is the program itself: a trapped `recv` on an empty socket fetches
//! at most the size it asked for, and a trapped `poll` on an empty socket
//! fetches as much as the last `recv` asked for. Sends are never held:
//! a send that found the server's socket full makes the next `poll` for
//! `POLLOUT` wait there for room ([`PurePump::room`]), since the program's
//! own socket, whose buffer sends never enter, always polls writable.
//!
//! Must not read ahead or coalesce: every fetch and send is one round trip,
//! as `--pure` promises. Bytes the program writes through calls rscq does
//! not trap (`sendfile`, `splice`) reach the pump through the local socket
//! and go without a caller waiting; at most the send window of them is
//! unanswered at once, so they block the program as the kernel's full
//! buffer would. The window is measured on the connection
//! ([`AdaptiveWindow`], about twice its bandwidth-delay product) up to
//! `--net-send-window`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::engine::adaptive_window::AdaptiveWindow;
use crate::engine::sendwindow::INITIAL_WINDOW;
use crate::errno::Errno;
use crate::proto::{PureOp, PureReply, frame};
use crate::transport::pump::{Unsent, UnsentGuard};

/// What a `recv` asks for before rscq has seen one.
const DEFAULT_FETCH: u32 = 16 * 1024;

enum Command {
    /// Answers whether bytes (or the end of the stream) were delivered.
    Fetch {
        max: u32,
        nonblocking: bool,
        done: oneshot::Sender<Result<bool, Errno>>,
    },
    Send {
        data: Vec<u8>,
        /// `MSG_OOB`: the last byte is urgent.
        urgent: bool,
        done: oneshot::Sender<Result<u64, Errno>>,
        /// The send's number on the stream, for a cancel.
        numbered: oneshot::Sender<u64>,
    },
    /// Stop waiting for room for send number `n` (see [`PureOp::CancelSend`]).
    Cancel(u64),
    /// The program's last fd of the socket is being closed: once its end
    /// (read from the program's socket) is answered, the stream ends, and
    /// with it the server's socket.
    Release,
    /// Answers once the server's socket has room (see [`PureOp::WaitRoom`]).
    Room {
        done: oneshot::Sender<Result<u64, Errno>>,
        /// The wait's number on the stream, for a cancel.
        numbered: oneshot::Sender<u64>,
    },
}

/// The handle the engine keeps for one pure connection.
#[derive(Debug)]
pub struct PurePump {
    commands: mpsc::UnboundedSender<Command>,
    last_recv: AtomicU32,
    in_flight: AtomicBool,
    /// Whether the last fetch delivered bytes or the end of the stream.
    delivered: AtomicBool,
    /// A poll found the socket empty while a fetch was under way; if that
    /// fetch brings nothing, another must start.
    poll_waiting: AtomicBool,
    eof: AtomicBool,
    /// The connection to the server was lost with no call there to be told:
    /// the next send says `ECONNRESET`, as the kernel's first call after a
    /// reset does (later ones `EPIPE`).
    reset_untold: AtomicBool,
    fetched: Notify,
    /// The last send found the server's socket full (it took only part of
    /// the bytes, or none), and no wait for room has ended since: a `poll`
    /// for `POLLOUT` must wait (see [`PurePump::room`]).
    full: AtomicBool,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fetch { max, .. } => write!(f, "Fetch({max})"),
            Self::Send { data, .. } => write!(f, "Send({})", data.len()),
            Self::Cancel(n) => write!(f, "Cancel({n})"),
            Self::Room { .. } => write!(f, "Room"),
            Self::Release => write!(f, "Release"),
        }
    }
}

impl PurePump {
    /// Whether the remote side has ended: the program's socket holds the
    /// end-of-stream already.
    pub fn at_eof(&self) -> bool {
        self.eof.load(Ordering::SeqCst)
    }

    /// One round trip: fetches at most `max` bytes into the program's
    /// socket. If a fetch is already on its way, waits for it instead, so
    /// there is never more than one.
    /// Returns whether bytes (or the end of the stream) came.
    pub async fn fetch(self: &Arc<Self>, max: u32, nonblocking: bool) -> Result<bool, Errno> {
        self.last_recv.store(max.max(1), Ordering::SeqCst);
        while self.in_flight.swap(true, Ordering::SeqCst) {
            // A fetch on its way may wait for bytes the server does not
            // have yet: a non-blocking caller, as the kernel, does not wait
            // for them.
            if nonblocking {
                return Ok(false);
            }
            // Registered before the check, so a fetch that ends in between
            // still wakes this one (notify_waiters only wakes registered
            // waiters).
            let notified = self.fetched.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) {
                notified.await;
            }
            // That fetch brought bytes (or the end): this caller is served.
            // If it brought nothing (a non-blocking try), a blocking caller
            // goes on to fetch itself.
            if self.delivered.load(Ordering::SeqCst) {
                return Ok(true);
            }
        }
        let (done, result) = oneshot::channel();
        let sent = self.commands.send(Command::Fetch {
            max,
            nonblocking,
            done,
        });
        let outcome = match sent {
            Ok(()) => result.await.unwrap_or(Err(Errno::ECONNRESET)),
            Err(_) => Err(Errno::ECONNRESET),
        };
        self.delivered.store(outcome != Ok(false), Ordering::SeqCst);
        self.in_flight.store(false, Ordering::SeqCst);
        self.fetched.notify_waiters();
        // A poll came while this fetch was under way, after the program had
        // emptied its socket: that poll is still waiting for a fetch.
        if self.poll_waiting.swap(false, Ordering::SeqCst) {
            self.prefetch();
        }
        outcome
    }

    /// For a `poll` on an empty socket: starts a fetch of the last `recv`
    /// size unless one is on its way.
    pub fn prefetch(self: &Arc<Self>) {
        if self.at_eof() {
            return;
        }
        // Flag first, then look: a fetch finishing in between either sees
        // the flag or is seen as finished here.
        self.poll_waiting.store(true, Ordering::SeqCst);
        if self.in_flight.load(Ordering::SeqCst) {
            return;
        }
        self.poll_waiting.store(false, Ordering::SeqCst);
        let pump = self.clone();
        tokio::spawn(async move {
            let max = pump.last_recv.load(Ordering::SeqCst);
            let _ = pump.fetch(max, false).await;
        });
    }

    /// One round trip: `send(2)` on the server, which waits for room in
    /// its socket until `cancel` completes; then the count of the bytes
    /// that went (possibly 0) is the answer.
    pub async fn send(
        &self,
        data: Vec<u8>,
        urgent: bool,
        cancel: impl Future<Output = ()>,
    ) -> Result<u64, Errno> {
        let len = u64::try_from(data.len()).unwrap_or(u64::MAX);
        let (done, result) = oneshot::channel();
        let (numbered, number) = oneshot::channel();
        self.commands
            .send(Command::Send {
                data,
                urgent,
                done,
                numbered,
            })
            .map_err(|_| self.gone())?;
        tokio::pin!(result);
        let answer = tokio::select! {
            answer = &mut result => Some(answer.unwrap_or_else(|_| Err(self.gone()))),
            () = cancel => None,
        };
        let answer = match answer {
            Some(answer) => answer,
            None => {
                if let Ok(n) = number.await {
                    let _ = self.commands.send(Command::Cancel(n));
                }
                result.await.unwrap_or_else(|_| Err(self.gone()))
            }
        };
        if let Ok(sent) = answer
            && len > 0
        {
            self.full.store(sent < len, Ordering::SeqCst);
        }
        answer
    }

    /// The program is closing its last fd of the socket (see
    /// [`Command::Release`]).
    pub fn release(&self) {
        let _ = self.commands.send(Command::Release);
    }

    /// Whether the last send found the server's socket full.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::SeqCst)
    }

    /// For a `poll` for `POLLOUT`: if the last send found the server's
    /// socket full, waits (one round trip) until it has room again, or
    /// until `cancel` completes. Returns whether the socket may take bytes
    /// now as far as rscq knows (false: `cancel` came first).
    pub async fn room(&self, cancel: impl Future<Output = ()>) -> bool {
        if !self.full.load(Ordering::SeqCst) {
            return true;
        }
        let (done, result) = oneshot::channel();
        let (numbered, number) = oneshot::channel();
        if self
            .commands
            .send(Command::Room { done, numbered })
            .is_err()
        {
            // The pump has ended: the program's socket tells the rest.
            return true;
        }
        tokio::select! {
            // Room, or the connection failed: either way the poll answers.
            _ = result => {
                self.full.store(false, Ordering::SeqCst);
                true
            }
            () = cancel => {
                if let Ok(n) = number.await {
                    let _ = self.commands.send(Command::Cancel(n));
                }
                false
            }
        }
    }

    /// A send on a connection whose pump has ended.
    fn gone(&self) -> Errno {
        if self.reset_untold.swap(false, Ordering::SeqCst) {
            Errno::ECONNRESET
        } else {
            Errno(libc::EPIPE)
        }
    }
}

/// The engine's pure pumps by id; the id travels in the socket registry.
#[derive(Debug, Clone)]
pub struct PurePumps {
    pumps: Arc<Mutex<HashMap<u64, Arc<PurePump>>>>,
    next: Arc<AtomicU64>,
    /// Connections whose program side has not yet been shut down on the
    /// server (its close answered).
    unsent: Unsent,
    /// The most bytes of untrapped writes unanswered on one connection.
    send_window: u64,
}

impl PurePumps {
    /// Pumps that keep at most `send_window` bytes of untrapped writes
    /// unanswered per connection.
    pub fn new(send_window: u64) -> Self {
        Self {
            pumps: Arc::default(),
            next: Arc::default(),
            unsent: Unsent::default(),
            send_window,
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<PurePump>>> {
        self.pumps.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connections still carrying what the program wrote.
    pub fn unsent(&self) -> Unsent {
        self.unsent.clone()
    }

    pub fn get(&self, id: u64) -> Option<Arc<PurePump>> {
        self.map().get(&id).cloned()
    }

    /// Starts the pump for one connection; returns its id.
    pub fn start(&self, local: TcpStream, send: quinn::SendStream, recv: quinn::RecvStream) -> u64 {
        let (id, starter) = self.prepare();
        starter.start(local, send, recv);
        id
    }

    /// Registers a pump before its connection exists, so the program can
    /// find it the moment it accepts; commands wait until [`Starter::start`].
    pub fn prepare(&self) -> (u64, Starter) {
        let (commands, rx) = mpsc::unbounded_channel();
        let pump = Arc::new(PurePump {
            commands,
            last_recv: AtomicU32::new(DEFAULT_FETCH),
            in_flight: AtomicBool::new(false),
            delivered: AtomicBool::new(false),
            poll_waiting: AtomicBool::new(false),
            eof: AtomicBool::new(false),
            reset_untold: AtomicBool::new(false),
            fetched: Notify::new(),
            full: AtomicBool::new(false),
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map().insert(id, pump.clone());
        (
            id,
            Starter {
                id,
                pump,
                rx,
                pumps: self.clone(),
            },
        )
    }
}

/// A registered pump waiting for its connection.
#[derive(Debug)]
pub struct Starter {
    id: u64,
    pump: Arc<PurePump>,
    rx: mpsc::UnboundedReceiver<Command>,
    pumps: PurePumps,
}

impl Starter {
    /// The connection will not come: the pump is forgotten.
    pub fn cancel(self) {
        self.pumps.map().remove(&self.id);
    }

    pub fn start(self, local: TcpStream, send: quinn::SendStream, recv: quinn::RecvStream) {
        let Self {
            id,
            pump,
            rx,
            pumps,
        } = self;
        let unsent = pumps.unsent.track();
        let window = pumps.send_window;
        tokio::spawn(async move {
            run(local, send, recv, rx, &pump, unsent, window).await;
            pumps.map().remove(&id);
        });
    }
}

/// Who waits for the answer to a send: with its number, a program's call;
/// and how many bytes of an untrapped write it carries.
type SendWaiter = (Option<u64>, oneshot::Sender<Result<u64, Errno>>, u64);

/// Waiters for replies, in the order their operations were sent.
struct Waiters {
    recvs: std::collections::VecDeque<oneshot::Sender<Result<bool, Errno>>>,
    sends: std::collections::VecDeque<SendWaiter>,
    /// Bytes of untrapped writes sent and not yet answered.
    untrapped: u64,
    /// Bytes of untrapped writes answered, cumulative.
    untrapped_answered: u64,
    /// The window for untrapped writes, measured on their answers.
    window: AdaptiveWindow,
}

impl Waiters {
    fn new(send_window: u64) -> Self {
        Self {
            recvs: std::collections::VecDeque::new(),
            sends: std::collections::VecDeque::new(),
            untrapped: 0,
            untrapped_answered: 0,
            window: AdaptiveWindow::new(INITIAL_WINDOW, send_window),
        }
    }

    /// Whether another untrapped write may go.
    fn room(&self) -> bool {
        self.untrapped < self.window.window()
    }

    /// An untrapped write of `bytes` goes now; nobody waits for its answer.
    fn send_untrapped(&mut self, bytes: u64) {
        self.sends.push_back((None, oneshot::channel().0, bytes));
        self.untrapped += bytes;
        self.window.on_sent(bytes, now());
    }

    /// The answer to the oldest send: its waiter gets `result`, and its
    /// untrapped bytes no longer count.
    fn answer_send(&mut self, result: Result<u64, Errno>) {
        if let Some((_, done, bytes)) = self.sends.pop_front() {
            self.untrapped = self.untrapped.saturating_sub(bytes);
            if bytes > 0 {
                self.untrapped_answered += bytes;
                self.window.on_acknowledged(self.untrapped_answered, now());
            }
            let _ = done.send(result);
        }
    }
}

/// The window's clock (tokio's, as the pump's timers).
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

async fn run(
    local: TcpStream,
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    mut commands: mpsc::UnboundedReceiver<Command>,
    pump: &Arc<PurePump>,
    unsent: UnsentGuard,
    send_window: u64,
) {
    let mut unsent = Some(unsent);
    let (mut rd, wr) = local.into_split();
    let waiters = Arc::new(Mutex::new(Waiters::new(send_window)));
    // Told each time a send is answered: room for untrapped writes.
    let answered = Arc::new(Notify::new());
    let replies = tokio::spawn(route_replies(
        recv,
        wr,
        waiters.clone(),
        pump.clone(),
        answered.clone(),
    ));
    let mut from_program = vec![0u8; 64 * 1024];
    let mut program_done = false;
    // The program closed its last fd: the stream ends once its end went.
    let mut released = false;
    // The number of `Send`s on the stream so far, as the server counts.
    let mut sends = 0u64;
    loop {
        let mut ops = Vec::with_capacity(2);
        let room = lock(&waiters).room();
        tokio::select! {
            // The window is full: the next answer may make room.
            () = answered.notified(), if !program_done && !room => {}
            // Released: the next answer may be the end's.
            () = answered.notified(), if program_done && released => {}
            command = commands.recv() => match command {
                None => break,
                Some(Command::Fetch { max, nonblocking, done }) => {
                    lock(&waiters).recvs.push_back(done);
                    ops.push(PureOp::Recv { max, nonblocking });
                }
                Some(Command::Send { data, urgent, done, numbered }) => {
                    // A send after the program shut its socket down for
                    // writing must fail as the kernel's would (EPIPE),
                    // so the end it already made goes first, even if rscq
                    // has not read it yet.
                    if !program_done && shut_for_writing(&rd) {
                        program_done = true;
                        let end = end_of_program_writes(
                            false, &mut send, &waiters, &mut unsent,
                        ).await;
                        let Some(end) = end else { break };
                        ops.push(end);
                    }
                    sends += 1;
                    let _ = numbered.send(sends);
                    lock(&waiters).sends.push_back((Some(sends), done, 0));
                    ops.push(if urgent { PureOp::SendUrgent(data) } else { PureOp::Send(data) });
                }
                Some(Command::Cancel(n)) => ops.push(PureOp::CancelSend(n)),
                Some(Command::Release) => released = true,
                Some(Command::Room { done, numbered }) => {
                    sends += 1;
                    let _ = numbered.send(sends);
                    lock(&waiters).sends.push_back((Some(sends), done, 0));
                    ops.push(PureOp::WaitRoom);
                }
            },
            // Bytes the program wrote through a call rscq does not trap
            // (sendfile, splice), and its shutdown or close.
            read = rd.read(&mut from_program), if !program_done && room => {
                match read {
                    Ok(0) | Err(_) => {
                        program_done = true;
                        let end = end_of_program_writes(
                            read.is_err(), &mut send, &waiters, &mut unsent,
                        ).await;
                        let Some(end) = end else { break };
                        ops.push(end);
                    }
                    Ok(n) => {
                        // Nobody waits for this answer; its bytes count
                        // against the window until it comes.
                        sends += 1;
                        let bytes = u64::try_from(n).unwrap_or(u64::MAX);
                        lock(&waiters).send_untrapped(bytes);
                        ops.push(PureOp::Send(from_program[..n].to_vec()));
                    }
                }
            }
        };
        let mut failed = false;
        for op in ops {
            if send.write_all(&frame::encode(&op)).await.is_err() {
                failed = true;
                break;
            }
        }
        if failed {
            break;
        }
        // Everything the program sent, and its end, went: the server may
        // close its socket (the stream's end tells it).
        if released && program_done && lock(&waiters).sends.is_empty() {
            let _ = send.finish();
            break;
        }
    }
    replies.abort();
}

/// Whether the program's socket (the peer of `rd`) was shut down for
/// writing: its end of stream waits in `rd`, with no byte before it. Asked
/// of the kernel directly, since the runtime may not have seen it yet.
fn shut_for_writing(rd: &tokio::net::tcp::OwnedReadHalf) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        rustix::net::recv(
            rd.as_ref(),
            &mut byte,
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        ),
        Ok((0, _))
    )
}

/// The program shut its socket down for writing or closed it (`reset`: an
/// abortive close, or a close with unread bytes): the operation that ends
/// the server's direction too, after everything sent before it; `None` if
/// the stream failed.
async fn end_of_program_writes(
    reset: bool,
    send: &mut quinn::SendStream,
    waiters: &Arc<Mutex<Waiters>>,
    unsent: &mut Option<UnsentGuard>,
) -> Option<PureOp> {
    // A failed read is a reset: the server resets its socket too, after
    // the sends before it.
    let end = if reset {
        PureOp::Reset
    } else {
        PureOp::ShutdownWrite
    };
    // The calls still waiting for room are the program's no longer (it
    // closed the socket, or died): they stop waiting, or what the program
    // wrote before the close would wait behind them.
    let waiting: Vec<u64> = lock(waiters)
        .sends
        .iter()
        .filter_map(|(n, _, _)| *n)
        .collect();
    for n in waiting {
        if send
            .write_all(&frame::encode(&PureOp::CancelSend(n)))
            .await
            .is_err()
        {
            return None;
        }
    }
    // Answered once the server has sent everything before it: then nothing
    // the program wrote is left in flight.
    let (done, answered) = oneshot::channel();
    lock(waiters).sends.push_back((None, done, 0));
    if let Some(unsent) = unsent.take() {
        tokio::spawn(async move {
            let _ = answered.await;
            drop(unsent);
        });
    }
    Some(end)
}

fn lock(waiters: &Mutex<Waiters>) -> std::sync::MutexGuard<'_, Waiters> {
    waiters.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Delivers each reply: received bytes into the program's socket, results
/// to whoever waits for them.
async fn route_replies(
    mut recv: quinn::RecvStream,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    waiters: Arc<Mutex<Waiters>>,
    pump: Arc<PurePump>,
    answered: Arc<Notify>,
) {
    loop {
        let reply = match crate::transport::read_frame::<PureReply>(&mut recv).await {
            Ok(Some(reply)) => reply,
            ended => {
                // The server side is gone: fail everyone still waiting.
                pump.eof.store(true, Ordering::SeqCst);
                let mut w = lock(&waiters);
                let lost = matches!(&ended, Err(e) if e.connection_lost().is_some());
                if lost && w.recvs.is_empty() && w.sends.is_empty() {
                    pump.reset_untold.store(true, Ordering::SeqCst);
                }
                if lost && !w.recvs.is_empty() {
                    // A fetch was under way, maybe a `poll`'s that no call
                    // answers: the program's socket is reset, as the
                    // default mode's pump resets it, or the end of `wr`
                    // would read as the peer's orderly close (EOF).
                    let _ = rustix::net::sockopt::set_socket_linger(
                        wr.as_ref(),
                        Some(std::time::Duration::ZERO),
                    );
                    let _ = rustix::net::connect_unspec(wr.as_ref());
                }
                for done in w.recvs.drain(..) {
                    let _ = done.send(Err(Errno::ECONNRESET));
                }
                for (_, done, _) in w.sends.drain(..) {
                    let _ = done.send(Err(Errno::ECONNRESET));
                }
                w.untrapped = 0;
                drop(w);
                answered.notify_one();
                return;
            }
        };
        match reply {
            PureReply::Data(data) => {
                let result = if data.is_empty() {
                    pump.eof.store(true, Ordering::SeqCst);
                    let _ = wr.shutdown().await;
                    Ok(true)
                } else {
                    wr.write_all(&data)
                        .await
                        .map(|()| true)
                        .map_err(|e| Errno::from_io(&e))
                };
                if let Some(done) = lock(&waiters).recvs.pop_front() {
                    let _ = done.send(result);
                }
            }
            // The program's socket gets the urgent byte as its own
            // kernel would: `send(MSG_OOB)` on rscq's end puts the mark
            // there. The receive goes on.
            PureReply::Urgent { before, byte } => {
                // A socket that no longer takes bytes fails the `Data`
                // write that ends this receive too.
                if wr.write_all(&before).await.is_ok() {
                    let _ = crate::transport::urgent::send_urgent(wr.as_ref(), byte).await;
                }
            }
            PureReply::RecvFailed(e) => {
                let result = if e == Errno::EAGAIN {
                    Ok(false)
                } else {
                    // The remote connection failed: so does the local one.
                    pump.eof.store(true, Ordering::SeqCst);
                    let _ = rustix::net::sockopt::set_socket_linger(
                        wr.as_ref(),
                        Some(std::time::Duration::ZERO),
                    );
                    // The read half lives on in another task, so the socket
                    // is not closed here: disconnecting it sends the RST now.
                    let _ = rustix::net::connect_unspec(wr.as_ref());
                    Err(e)
                };
                if let Some(done) = lock(&waiters).recvs.pop_front() {
                    let _ = done.send(result);
                }
            }
            PureReply::Sent(n) => {
                lock(&waiters).answer_send(Ok(n));
                answered.notify_one();
            }
            PureReply::Shut => {
                lock(&waiters).answer_send(Ok(0));
                answered.notify_one();
            }
            PureReply::SendFailed(e) => {
                lock(&waiters).answer_send(Err(e));
                answered.notify_one();
            }
        }
    }
}
