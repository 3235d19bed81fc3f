//! The engine's `--pure` socket data (stop-and-wait receives and sends on
//! the pumps) and the UDP operations (bind, connect, and `--pure` datagrams
//! through the relays).
//!
//! Must not call ptrace: the program's socket comes as rscq's own copy
//! ([`ProgramFd`]), with the flags the tracer read during the stop.

use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, ReplyTo, lock};
use crate::errno::Errno;
use crate::proto::Reply;
use crate::tracer::{self, Event, ProgramFd};

/// One `--pure` datagram: remote UDP socket `id`, its destination (the
/// connected peer if `None`), its bytes and the IP fields its control
/// messages set.
pub(super) struct UdpSend {
    pub(super) id: u64,
    pub(super) peer: Option<crate::proto::SockAddr>,
    pub(super) data: Vec<u8>,
    pub(super) ip: crate::proto::IpFields,
}

/// `--pure` sends that may wait for room, by sleep number: a signal for
/// the sleeping thread ends the wait.
#[derive(Debug, Default)]
pub(super) struct SendInterrupts {
    waiting: std::sync::Mutex<std::collections::HashMap<u64, Arc<tokio::sync::Notify>>>,
}

impl SendInterrupts {
    pub(super) fn register(&self, op: u64) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        lock(&self.waiting).insert(op, notify.clone());
        notify
    }

    pub(super) fn interrupt(&self, op: u64) {
        if let Some(notify) = lock(&self.waiting).get(&op) {
            // Kept as a permit if the send does not wait yet.
            notify.notify_one();
        }
    }

    pub(super) fn forget(&self, op: u64) {
        lock(&self.waiting).remove(&op);
    }
}

/// Fetched bytes cross loopback into the program's socket: waits (at most
/// 50 ms) until `arrived`.
pub(super) async fn until_crossed(arrived: impl Fn() -> bool) {
    for _ in 0..1000 {
        if arrived() {
            return;
        }
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
}

impl Engine {
    pub(super) fn pure_recv(
        &self,
        reply: ReplyTo,
        fd: Option<ProgramFd>,
        pump: u64,
        len: u32,
        wait: crate::syscall::plan::PureWait,
    ) {
        use crate::syscall::plan::PureWait;
        let pump = self.pumps.pure.as_ref().and_then(|p| p.get(pump));
        self.net_call(reply, "recv", move |engine: Engine| async move {
            let (Some(fd), Some(pump)) = (fd, pump) else {
                return Ok(());
            };
            let nonblocking = wait == PureWait::DontWait || fd.nonblocking;
            let dup = Arc::new(fd.copy);
            // The program's own receive timeout, as the kernel keeps it.
            let timeout = if nonblocking || wait == PureWait::Available {
                None
            } else {
                rustix::net::sockopt::socket_timeout(&*dup, rustix::net::sockopt::Timeout::Recv)
                    .ok()
                    .flatten()
            };
            let fill = fill_pure(dup.clone(), pump.clone(), len, wait, nonblocking);
            let Some(limit) = timeout else {
                return fill.await;
            };
            // A fetch goes on when the call gives up: what it brings later
            // waits in the program's socket, as bytes that arrive after a
            // timeout wait in the kernel's.
            let filling = engine.runtime.spawn(fill);
            match tokio::time::timeout(limit, filling).await {
                Ok(joined) => joined.unwrap_or(Ok(())),
                // Unless something came meanwhile: the call runs on it.
                Err(_) if pump.at_eof() || rustix::io::ioctl_fionread(&*dup).unwrap_or(0) > 0 => {
                    Ok(())
                }
                Err(_) => Err(Errno::EAGAIN),
            }
        });
    }

    pub(super) fn pure_send(
        &self,
        tid: i32,
        fd: Option<ProgramFd>,
        pump: u64,
        data: Vec<u8>,
        urgent: bool,
        op: Option<u64>,
    ) {
        let engine = self.clone();
        let pump = self.pumps.pure.as_ref().and_then(|p| p.get(pump));
        // Registered now: a signal may come before the task runs.
        let interrupted = op.map(|op| self.send_interrupts.register(op));
        // The program's send timeout, as the kernel keeps it.
        let timeout = op.and(fd).and_then(|fd| {
            rustix::net::sockopt::socket_timeout(&fd.copy, rustix::net::sockopt::Timeout::Send)
                .ok()
                .flatten()
        });
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let sent = data.len();
            let why = std::sync::Mutex::new(None);
            let stop_waiting = async {
                let Some(interrupted) = &interrupted else {
                    // Non-blocking: only what fits now.
                    *lock(&why) = Some(Errno::EAGAIN);
                    return;
                };
                let limit = async {
                    match timeout {
                        Some(limit) => tokio::time::sleep(limit).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = interrupted.notified() => {
                        // As the kernel: a restart, unless the socket has
                        // a timeout (then EINTR).
                        let e = if timeout.is_some() {
                            Errno(libc::EINTR)
                        } else {
                            Errno(tracer::ERESTARTSYS)
                        };
                        *lock(&why) = Some(e);
                    }
                    () = limit => *lock(&why) = Some(Errno::EAGAIN),
                }
            };
            let response = match pump {
                Some(pump) => match pump.send(data, urgent, stop_waiting).await {
                    // Nothing went before the call stopped waiting.
                    Ok(0) if sent > 0 => Err(lock(&why).unwrap_or(Errno::EAGAIN)),
                    other => other.map(Reply::Count),
                },
                None => Err(Errno(libc::EPIPE)),
            };
            if let Some(op) = op {
                engine.send_interrupts.forget(op);
            }
            let rtt = started.elapsed();
            engine.stats.record("send", sent, 0, rtt);
            let _ = engine.events.send(Event::reply(tid, op, response, rtt));
        });
    }

    /// `--pure`: a `poll` that waits only for room to send on `pump`. If
    /// its last send found the server's socket full, the thread sleeps
    /// until the server's socket has room (then the poll runs natively),
    /// `timeout` passes (then it returns 0) or a signal comes.
    pub(super) fn pure_room(&self, reply: ReplyTo, pump: u64, timeout: Option<Duration>) {
        let pump = self.pumps.pure.as_ref().and_then(|p| p.get(pump));
        // Registered now: a signal may come before the task runs.
        let interrupted = reply.sleep.map(|op| self.send_interrupts.register(op));
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let stop_waiting = async {
                let limit = async {
                    match timeout {
                        Some(limit) => tokio::time::sleep(limit).await,
                        None => std::future::pending().await,
                    }
                };
                match &interrupted {
                    Some(interrupted) => tokio::select! {
                        () = interrupted.notified() => {}
                        () = limit => {}
                    },
                    None => limit.await,
                }
            };
            let room = match pump {
                Some(pump) if pump.is_full() => {
                    let room = pump.room(stop_waiting).await;
                    engine.stats.record("poll", 0, 0, started.elapsed());
                    room
                }
                _ => {
                    engine.stats.record_local("poll");
                    true
                }
            };
            if let Some(op) = reply.sleep {
                engine.send_interrupts.forget(op);
            }
            // Without room the wait ended by its timeout (after a signal
            // nobody waits for the answer any more).
            let response = Ok(if room { Reply::Done } else { Reply::Count(0) });
            let rtt = started.elapsed();
            let _ = engine
                .events
                .send(Event::reply(reply.tid, reply.sleep, response, rtt));
        });
    }

    /// `--pure`: the program's last close of a connection: the server's
    /// socket closes once what the program sent before went (the close
    /// runs at once, as the kernel's, which keeps sending after it).
    pub(super) fn release_pure(&self, fd: Option<ProgramFd>, pump: u64) -> crate::proto::Response {
        if let Some(fd) = fd {
            self.pumps.sockets().remove(fd.ino);
        }
        if let Some(pump) = self.pumps.pure.as_ref().and_then(|p| p.get(pump)) {
            pump.release();
        }
        Ok(Reply::Done)
    }

    /// The program's last close of a remote UDP socket: the server's
    /// socket is closed before the close returns, so its port is free.
    pub(super) fn release_udp(&self, reply: ReplyTo, udp: u64) {
        self.net_call(reply, "close", move |engine: Engine| async move {
            engine.udp.release(udp).await;
            Ok(())
        });
    }

    pub(super) fn prefetch(&self, pumps: &[u64]) {
        let Some(pure) = &self.pumps.pure else { return };
        let _guard = self.runtime.enter();
        for id in pumps {
            if let Some(pump) = pure.get(*id) {
                pump.prefetch();
            }
        }
    }

    pub(super) fn bind_udp(
        &self,
        reply: ReplyTo,
        fd: Option<ProgramFd>,
        addr: crate::proto::SockAddr,
    ) {
        self.net_call(reply, "bind", move |engine: Engine| async move {
            match fd {
                None => Err(Errno::EBADF),
                Some(fd) => engine.udp.bind(&engine.link, fd.copy, addr).await,
            }
        });
    }

    pub(super) fn connect_udp(
        &self,
        reply: ReplyTo,
        fd: Option<ProgramFd>,
        id: u64,
        addr: Option<crate::proto::SockAddr>,
    ) {
        self.net_call(reply, "connect", move |engine: Engine| async move {
            match fd {
                None => Err(Errno::EBADF),
                Some(fd) => engine.udp.connect(fd.copy, id, addr).await,
            }
        });
    }

    /// `--pure`: one datagram sent on the server; `ip`: the fields its
    /// control messages set, to which the program socket's own are added.
    pub(super) fn udp_send(&self, tid: i32, fd: Option<ProgramFd>, send: UdpSend) {
        let UdpSend { id, peer, data, ip } = send;
        let ip = match &fd {
            Some(fd) => self.udp.pure_fields(fd.copy.as_fd(), id, peer, ip),
            None => ip,
        };
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let sent = data.len();
            let response = engine.udp.send(id, peer, data, ip).await.map(Reply::Count);
            let rtt = started.elapsed();
            engine.stats.record("send", sent, 0, rtt);
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }

    pub(super) fn udp_recv(&self, reply: ReplyTo, fd: Option<ProgramFd>, id: u64, dontwait: bool) {
        self.net_call(reply, "recv", move |engine: Engine| async move {
            let Some(fd) = fd else {
                return Ok(());
            };
            let nonblocking = dontwait || fd.nonblocking;
            let dup = fd.copy;
            let timeout =
                rustix::net::sockopt::socket_timeout(&dup, rustix::net::sockopt::Timeout::Recv)
                    .ok()
                    .flatten();
            let receive = engine.udp.recv(dup, id, nonblocking);
            match timeout {
                // The program's own receive timeout, as the kernel keeps it.
                Some(limit) if !nonblocking => tokio::time::timeout(limit, receive)
                    .await
                    .unwrap_or(Err(Errno::EAGAIN)),
                _ => receive.await,
            }
        });
    }

    pub(super) fn udp_prefetch(&self, ids: &[u64]) {
        for id in ids {
            self.udp.prefetch(*id);
        }
    }
}

/// Fetches into the program's socket `dup` until a receive of `len` bytes
/// (as `wait` says, and `nonblocking`) can run natively on it.
async fn fill_pure(
    dup: Arc<std::os::fd::OwnedFd>,
    pump: Arc<crate::client::pure::PurePump>,
    len: u32,
    wait: crate::syscall::plan::PureWait,
    nonblocking: bool,
) -> Result<(), Errno> {
    use crate::syscall::plan::PureWait;
    // MSG_WAITALL on a blocking socket runs natively only once all
    // its bytes are in the socket, or the native call would wait
    // for bytes no fetch brings.
    let want = if wait == PureWait::All && !nonblocking {
        u64::from(len.max(1))
    } else {
        1
    };
    let unread = || rustix::io::ioctl_fionread(&dup).unwrap_or(0);
    if wait == PureWait::Available {
        let before = unread();
        if pump.fetch(len, true).await? {
            until_crossed(|| pump.at_eof() || unread() > before).await;
        }
        return Ok(());
    }
    let ready = || pump.at_eof() || unread() >= want;
    // A blocking call may only run natively once its socket holds
    // bytes or the end of the stream; a non-blocking one after one
    // try, as the kernel would answer EAGAIN.
    while !ready() {
        let missing = want.saturating_sub(unread()).max(1);
        let ask = if want > 1 {
            u32::try_from(missing).unwrap_or(len)
        } else {
            len
        };
        let before = unread();
        let came = pump.fetch(ask, nonblocking).await?;
        // Nothing came for a non-blocking try: EAGAIN at once, as
        // the kernel's (waiting for bytes that never cross took
        // about a second).
        if came || !nonblocking {
            until_crossed(|| ready() || unread() > before).await;
        }
        if nonblocking {
            break;
        }
    }
    Ok(())
}
