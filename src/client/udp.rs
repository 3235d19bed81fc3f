//! The client's half of UDP under `--net`.
//!
//! The program's UDP socket stays a real local socket; rscq binds it (out
//! of band, through a `pidfd_getfd(2)` copy) to a loopback port, and binds
//! a socket on the server that carries its datagrams over one QUIC stream.
//!
//! Each remote peer the program talks to has a *relay*: a loopback UDP
//! socket of rscq's that stands for that peer. A datagram from peer X is
//! written into the program's socket from X's relay, so its local source
//! names X (the tracer turns it back into X at `recvfrom`'s exit), and a
//! connected program socket is connected to X's relay, so it accepts only
//! X's datagrams, as on the server. A `sendto(X)` runs natively with its
//! destination changed to X's relay; the relay knows the sending program
//! socket by its loopback source, and forwards the datagram with X as its
//! destination. Neither direction keeps per-datagram bookkeeping that a
//! lost, peeked or reordered datagram could put out of step.
//!
//! An ICMP error the server's socket gets about a datagram to X reaches
//! the program's socket as a real ICMP error about a datagram to X's relay
//! (see `icmp`), so the local kernel reports it where the remote one
//! would have.
//!
//! Each datagram's TTL and TOS cross with it (see `ipfields`): a relay
//! reads the ones the program's socket gave it, and sets the ones the
//! server's socket received on its way into the program's socket.
//!
//! Must not decide which calls are trapped or how addresses are rewritten
//! (that is [`crate::syscall::udp`]); it owns the relays and the socket's
//! stream.

pub(super) mod icmp;
mod ipfields;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::errno::Errno;
use crate::proto::{IcmpError, IpFields, Request, SockAddr, UdpEvent, UdpOp, frame};
use crate::syscall::sockets::{RemoteSocket, SocketRegistry};
use crate::transport::Link;

/// The most relays (distinct remote peers) one run keeps.
const MAX_RELAYS: usize = 4096;
/// How often rscq looks for program sockets that were closed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The longest a close waits for the server to close its socket.
const RELEASE_WAIT: Duration = Duration::from_secs(5);
/// The largest datagram.
const MAX_DATAGRAM: usize = 65536;

/// Every remote UDP socket of the program and every relay.
#[derive(Debug, Clone)]
pub struct UdpRelays {
    runtime: tokio::runtime::Handle,
    tables: Arc<Mutex<Tables>>,
    sockets: SocketRegistry,
    pure: bool,
    next_id: Arc<AtomicU64>,
    icmp: Arc<icmp::Injector>,
    /// The IP fields this host gives a socket that set none.
    defaults: ipfields::Defaults,
}

#[derive(Debug, Default)]
struct Tables {
    /// (program socket is IPv6, remote peer) → the relay's loopback address.
    relays: HashMap<(bool, SockAddr), Arc<Relay>>,
    /// A relay's loopback address → the remote peer it stands for.
    peers: HashMap<SocketAddr, SockAddr>,
    /// A program socket's loopback address → its remote socket.
    by_local: HashMap<SocketAddr, Arc<Session>>,
    by_id: HashMap<u64, Arc<Session>>,
}

#[derive(Debug)]
struct Relay {
    addr: SocketAddr,
    socket: Arc<UdpSocket>,
}

/// One program socket bound on the server.
#[derive(Debug)]
struct Session {
    /// Where the program's socket is bound on loopback.
    local: SocketAddr,
    inode: u64,
    v6: bool,
    /// The relay the program's socket is connected to.
    connected: Mutex<Option<SocketAddr>>,
    ops: mpsc::UnboundedSender<UdpOp>,
    /// Answers to `Send` (with `--pure`) and `Connect`, in request order.
    control: Mutex<VecDeque<oneshot::Sender<UdpEvent>>>,
    /// `--pure`: answers to `Recv`, in request order.
    receives: Mutex<VecDeque<oneshot::Sender<UdpEvent>>>,
    /// `--pure`: a `Recv` is on its way.
    in_flight: AtomicBool,
    fetched: Notify,
    /// Ends the stream (the program closed its socket: [`UdpRelays::release`]).
    close: Mutex<Option<oneshot::Sender<()>>>,
    /// Resolves once the server ended its side: its socket is closed.
    ended: Mutex<Option<oneshot::Receiver<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    }
}

impl Session {
    /// Sends `op` and waits for its answer on `queue`.
    async fn ask(
        &self,
        op: UdpOp,
        queue: &Mutex<VecDeque<oneshot::Sender<UdpEvent>>>,
    ) -> Result<UdpEvent, Errno> {
        let (tx, rx) = oneshot::channel();
        {
            // Queued and sent under one lock: answers come in send order.
            let mut q = lock(queue);
            q.push_back(tx);
            self.ops.send(op).map_err(|_| Errno::ECONNRESET)?;
        }
        rx.await.map_err(|_| Errno::ECONNRESET)
    }

    /// `--pure`: the waiter of the `Recv` an answer that came is for. Its
    /// fetch is over from now on, before its datagram reaches the
    /// program's socket: a `poll` may see the datagram, the program read
    /// it, and its next `poll` need a new fetch before the fetch's own task
    /// has run (which would otherwise find one still on its way and leave
    /// the poll waiting for ever).
    fn answered(&self) -> Option<oneshot::Sender<UdpEvent>> {
        let waiter = lock(&self.receives).pop_front();
        if waiter.is_some() {
            self.in_flight.store(false, Ordering::SeqCst);
        }
        waiter
    }

    fn readable(dup: &OwnedFd) -> bool {
        let mut fds = [rustix::event::PollFd::new(
            dup,
            rustix::event::PollFlags::IN,
        )];
        rustix::event::poll(&mut fds, Some(&rustix::event::Timespec::default())).unwrap_or(0) > 0
    }
}

impl UdpRelays {
    pub fn new(runtime: tokio::runtime::Handle, sockets: SocketRegistry, pure: bool) -> Self {
        let relays = Self {
            runtime,
            tables: Arc::default(),
            sockets,
            pure,
            next_id: Arc::new(AtomicU64::new(1)),
            icmp: Arc::default(),
            defaults: ipfields::Defaults::of_this_host(),
        };
        let sweeper = relays.clone();
        relays.runtime.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                sweeper.sweep();
            }
        });
        relays
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        lock(&self.tables)
    }

    /// The loopback address of the relay for `peer`, made on first use.
    /// Called from the tracer thread.
    pub fn relay_addr(&self, v6: bool, peer: SockAddr) -> Option<SocketAddr> {
        self.relay(v6, peer).map(|r| r.addr)
    }

    fn relay(&self, v6: bool, peer: SockAddr) -> Option<Arc<Relay>> {
        let mut t = self.tables();
        if let Some(r) = t.relays.get(&(v6, peer)) {
            return Some(r.clone());
        }
        if t.relays.len() >= MAX_RELAYS {
            return None;
        }
        let std_socket = std::net::UdpSocket::bind(loopback(v6)).ok()?;
        std_socket.set_nonblocking(true).ok()?;
        ipfields::report_on(&std_socket, v6);
        let addr = std_socket.local_addr().ok()?;
        let socket = {
            let _guard = self.runtime.enter();
            Arc::new(UdpSocket::from_std(std_socket).ok()?)
        };
        let relay = Arc::new(Relay {
            addr,
            socket: socket.clone(),
        });
        t.relays.insert((v6, peer), relay.clone());
        t.peers.insert(addr, peer);
        drop(t);
        let outgoing = Outgoing {
            v6,
            peer,
            tables: self.tables.clone(),
            defaults: self.defaults,
        };
        self.runtime.spawn(forward_outgoing(socket, outgoing));
        Some(relay)
    }

    /// The remote peer a relay stands for, by the relay's loopback address
    /// (the source the program's `recvfrom` got).
    pub fn peer_of(&self, relay: SocketAddr) -> Option<SockAddr> {
        self.tables().peers.get(&relay).copied()
    }

    /// `bind(2)` of the program's socket (`dup` is rscq's copy of it): on
    /// the server to `addr`, and locally to a loopback port.
    pub async fn bind(&self, link: &Link, dup: OwnedFd, addr: SockAddr) -> Result<(), Errno> {
        let flags = super::net::BindFlags::of(&dup)?;
        let v6 = flags.v6;
        let inode = rustix::fs::fstat(&dup).map_err(Errno::from)?.st_ino;
        let request = Request::UdpBind {
            addr,
            reuse_addr: flags.reuse_addr,
            reuse_port: flags.reuse_port,
            v6_only: flags.v6_only,
            pure: self.pure,
            kind: self.sockets.datagram_kind(inode),
        };
        let streams = match link.open_udp(&request).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Errno::EIO),
        };
        // Dropping the streams on a failure below closes the server socket.
        rustix::net::bind(&dup, &loopback(v6)).map_err(Errno::from)?;
        let local = rustix::net::getsockname(&dup)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok())
            .ok_or(Errno::EINVAL)?;
        // Bound to `::1`, the local stand-in of a socket that is dual-stack
        // on the server became IPv6-only; `getsockopt` answers for it.
        let dual_stack = match SocketAddr::from(addr) {
            SocketAddr::V6(a) => a.ip().is_unspecified() || a.ip().to_ipv4_mapped().is_some(),
            SocketAddr::V4(_) => false,
        };
        if v6 && flags.v6_only == Some(false) && dual_stack {
            self.sockets.set_dual_stack(inode);
        }
        let (ops, queue) = mpsc::unbounded_channel();
        let (close, closed) = oneshot::channel();
        let (end, ended) = oneshot::channel();
        let session = Arc::new(Session {
            local,
            inode,
            v6,
            connected: Mutex::default(),
            ops,
            control: Mutex::default(),
            receives: Mutex::default(),
            in_flight: AtomicBool::new(false),
            fetched: Notify::new(),
            close: Mutex::new(Some(close)),
            ended: Mutex::new(Some(ended)),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut t = self.tables();
            t.by_local.insert(local, session.clone());
            t.by_id.insert(id, session.clone());
        }
        self.sockets.insert(
            inode,
            RemoteSocket {
                local: streams.local,
                peer: None,
                pure_pump: None,
                udp: Some(id),
            },
        );
        tokio::spawn(write_ops(queue, streams.send, closed));
        tokio::spawn(read_events(
            self.clone(),
            Arc::downgrade(&session),
            streams.recv,
            end,
        ));
        Ok(())
    }

    fn session(&self, id: u64) -> Result<Arc<Session>, Errno> {
        self.tables().by_id.get(&id).cloned().ok_or(Errno::EBADF)
    }

    /// `connect(2)`: on the server, then the program's socket is connected
    /// to the peer's relay, so it hears only that peer, as on the server.
    /// `None` (`AF_UNSPEC`) dissolves the association on both sides.
    pub async fn connect(
        &self,
        dup: OwnedFd,
        id: u64,
        peer: Option<SockAddr>,
    ) -> Result<(), Errno> {
        let session = self.session(id)?;
        let op = match peer {
            Some(peer) => UdpOp::Connect { peer },
            None => UdpOp::Disconnect,
        };
        let local = match session.ask(op, &session.control).await? {
            UdpEvent::Connected(result) => result?,
            _ => return Err(Errno::EIO),
        };
        match peer {
            Some(peer) => {
                let relay = self.relay(session.v6, peer).ok_or(Errno(libc::ENOBUFS))?;
                rustix::net::connect(&dup, &relay.addr).map_err(Errno::from)?;
                *lock(&session.connected) = Some(relay.addr);
            }
            // The kernel drops a port it chose at a disconnect: the
            // socket takes its loopback port back, by which relays know it.
            None => {
                rustix::net::connect_unspec(&dup).map_err(Errno::from)?;
                *lock(&session.connected) = None;
                let now = rustix::net::getsockname(&dup)
                    .ok()
                    .and_then(|a| SocketAddr::try_from(a).ok());
                if now.is_none_or(|a| a.port() == 0) {
                    rustix::net::bind(&dup, &session.local).map_err(Errno::from)?;
                }
            }
        }
        self.sockets.insert(
            session.inode,
            RemoteSocket {
                local,
                peer,
                pure_pump: None,
                udp: Some(id),
            },
        );
        Ok(())
    }

    /// `--pure`: the IP fields a send on remote socket `id` (`socket`:
    /// rscq's copy of the program's) to `peer` (the connected peer if
    /// `None`) carries, its control messages having set `own`.
    pub fn pure_fields(
        &self,
        socket: std::os::fd::BorrowedFd<'_>,
        id: u64,
        peer: Option<SockAddr>,
        own: IpFields,
    ) -> IpFields {
        let Ok(session) = self.session(id) else {
            return own;
        };
        let connected = *lock(&session.connected);
        let peer = peer.or_else(|| connected.and_then(|relay| self.peer_of(relay)));
        ipfields::for_pure_send(socket, session.v6, peer, own, self.defaults)
    }

    /// `--pure`: one remote send, as one round trip.
    pub async fn send(
        &self,
        id: u64,
        peer: Option<SockAddr>,
        data: Vec<u8>,
        ip: IpFields,
    ) -> Result<u64, Errno> {
        let session = self.session(id)?;
        match session
            .ask(UdpOp::Send { peer, data, ip }, &session.control)
            .await?
        {
            UdpEvent::Sent(result) => result,
            _ => Err(Errno::EIO),
        }
    }

    /// `--pure`: makes a receive on the program's socket ready: fetches one
    /// datagram into it unless it holds one (a blocking receive fetches
    /// until one came; a non-blocking one tries once).
    pub async fn recv(&self, dup: OwnedFd, id: u64, nonblocking: bool) -> Result<(), Errno> {
        let session = self.session(id)?;
        while !Session::readable(&dup) {
            self.fetch(&session, nonblocking).await?;
            // The datagram crosses loopback into the program's socket.
            for _ in 0..1000 {
                if Session::readable(&dup) {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(50)).await;
            }
            if nonblocking {
                break;
            }
        }
        Ok(())
    }

    /// One `Recv` round trip, or waits for the one on its way.
    async fn fetch(&self, session: &Arc<Session>, nonblocking: bool) -> Result<(), Errno> {
        if session.in_flight.swap(true, Ordering::SeqCst) {
            let notified = session.fetched.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if session.in_flight.load(Ordering::SeqCst) {
                notified.await;
            }
            return Ok(());
        }
        // In a task of its own: a receive that times out (`SO_RCVTIMEO`)
        // drops its wait, not the fetch, whose datagram is kept.
        let fetching = session.clone();
        let answer = tokio::spawn(async move {
            let answer = fetching
                .ask(UdpOp::Recv { nonblocking }, &fetching.receives)
                .await;
            if answer.is_err() {
                // No answer came, so `read_events` did not end the fetch.
                fetching.in_flight.store(false, Ordering::SeqCst);
            }
            fetching.fetched.notify_waiters();
            answer
        })
        .await
        .unwrap_or(Err(Errno::EIO));
        match answer? {
            UdpEvent::RecvFailed(e) if e == Errno(libc::EAGAIN) && nonblocking => Ok(()),
            // The error an ICMP message left on the connected server
            // socket: left on the program's socket, where the receive (or
            // the `poll` that started this fetch) finds it.
            UdpEvent::RecvFailed(e) if self.refuse_locally(session, e) => Ok(()),
            UdpEvent::RecvFailed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// `--pure`: makes the program's connected socket hold the error `e`
    /// its server socket's receive returned. Whether it does.
    fn refuse_locally(&self, session: &Session, e: Errno) -> bool {
        let Some(relay) = *lock(&session.connected) else {
            return false;
        };
        icmp::behind(e).is_some_and(|icmp| self.icmp.inject(session.local, relay, icmp, &[], None))
    }

    /// An ICMP error about a datagram the program's socket sent to `peer`:
    /// the local kernel gets it as one about a datagram to `peer`'s relay.
    fn unreachable(
        &self,
        session: &Session,
        peer: SockAddr,
        icmp: IcmpError,
        offender: Option<SockAddr>,
        quoted: &[u8],
    ) {
        // The error queue names the destination without its flow label,
        // which the program's address may have had.
        let relays: Vec<SocketAddr> = self
            .tables()
            .relays
            .iter()
            .filter(|((v6, p), _)| *v6 == session.v6 && same_peer(*p, peer))
            .map(|(_, r)| r.addr)
            .collect();
        for relay in relays {
            self.icmp
                .inject(session.local, relay, icmp, quoted, offender);
        }
    }

    /// `--pure`: a `poll` on the empty socket starts one blocking fetch,
    /// unless one is on its way.
    pub fn prefetch(&self, id: u64) {
        let Ok(session) = self.session(id) else {
            return;
        };
        if session.in_flight.load(Ordering::SeqCst) {
            return;
        }
        let relays = self.clone();
        self.runtime.spawn(async move {
            let _ = relays.fetch(&session, false).await;
        });
    }

    /// The program's last close of remote socket `id`: its stream ends, and
    /// the server closes its socket. Returns once the server has (as far
    /// as it says within [`RELEASE_WAIT`]), so the port is free when the
    /// program's close returns, as the kernel frees it.
    pub async fn release(&self, id: u64) {
        let session = {
            let mut t = self.tables();
            let Some(session) = t.by_id.remove(&id) else {
                return;
            };
            t.by_local.remove(&session.local);
            session
        };
        self.sockets.remove(session.inode);
        let close = lock(&session.close).take();
        let ended = lock(&session.ended).take();
        if let Some(close) = close {
            let _ = close.send(());
        }
        if let Some(ended) = ended {
            let _ = tokio::time::timeout(RELEASE_WAIT, ended).await;
        }
        drop(session);
    }

    /// Forgets the program sockets that were closed without a close rscq
    /// saw (at an exit, under `dup2`): their server sockets close when
    /// their streams finish.
    fn sweep(&self) {
        if self.tables().by_local.is_empty() {
            return;
        }
        let open = open_udp_inodes();
        let closed: Vec<(SocketAddr, u64)> = {
            let t = self.tables();
            let known: Vec<(SocketAddr, u64)> =
                t.by_local.values().map(|s| (s.local, s.inode)).collect();
            known
                .into_iter()
                .filter(|(_, inode)| !open.contains(inode))
                .collect()
        };
        if closed.is_empty() {
            return;
        }
        let mut t = self.tables();
        for (local, inode) in closed {
            t.by_local.remove(&local);
            t.by_id.retain(|_, s| s.inode != inode);
            self.sockets.remove(inode);
        }
    }
}

/// Whether two destinations are one peer, flow labels aside.
fn same_peer(a: SockAddr, b: SockAddr) -> bool {
    match (a, b) {
        (
            SockAddr::V6 {
                ip, port, scope_id, ..
            },
            SockAddr::V6 {
                ip: ip2,
                port: port2,
                scope_id: scope2,
                ..
            },
        ) => ip == ip2 && port == port2 && scope_id == scope2,
        _ => a == b,
    }
}

/// The inodes of this network namespace's UDP sockets.
fn open_udp_inodes() -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        if let Ok(text) = std::fs::read_to_string(table) {
            inodes.extend(udp_table_inodes(&text));
        }
    }
    inodes
}

/// The `inode` column of a `/proc/net/udp` or `/proc/net/udp6` table.
fn udp_table_inodes(text: &str) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_whitespace().nth(9)?.parse().ok())
        .collect()
}

/// What a relay's outgoing task needs: the family of the program sockets
/// it serves, the peer it stands for, and where their sessions are.
struct Outgoing {
    v6: bool,
    peer: SockAddr,
    tables: Arc<Mutex<Tables>>,
    defaults: ipfields::Defaults,
}

/// Datagrams the program sent to `peer`'s relay go to the server socket of
/// the program socket they came from, with the IP fields they came with.
async fn forward_outgoing(socket: Arc<UdpSocket>, to: Outgoing) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, from, seen)) = ipfields::receive(&socket, &mut buf).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let session = lock(&to.tables).by_local.get(&from).cloned();
        if let Some(session) = session {
            let _ = session.ops.send(UdpOp::Send {
                peer: Some(to.peer),
                data: buf[..n].to_vec(),
                ip: ipfields::from_relay(to.v6, to.peer, seen, to.defaults),
            });
        }
    }
}

async fn write_ops(
    mut queue: mpsc::UnboundedReceiver<UdpOp>,
    mut send: quinn::SendStream,
    mut close: oneshot::Receiver<()>,
) {
    loop {
        // What was queued before the close goes first.
        let op = tokio::select! {
            biased;
            op = queue.recv() => op,
            _ = &mut close => None,
        };
        let Some(op) = op else { break };
        if send.write_all(&frame::encode(&op)).await.is_err() {
            return;
        }
    }
    // The program's socket is gone: the server closes its own.
    let _ = send.finish();
}

/// Delivers what the server sends: datagrams into the program's socket
/// from their peer's relay, answers to their waiters.
async fn read_events(
    relays: UdpRelays,
    session: std::sync::Weak<Session>,
    mut recv: quinn::RecvStream,
    ended: oneshot::Sender<()>,
) {
    // Dropped when the server's side ends (or the session goes).
    let _ended = ended;
    while let Ok(Some(event)) = crate::transport::read_frame::<UdpEvent>(&mut recv).await {
        let Some(session) = session.upgrade() else {
            return;
        };
        match event {
            UdpEvent::Datagram { peer, data, ip } => {
                let waiter = if relays.pure {
                    session.answered()
                } else {
                    None
                };
                if let Some(relay) = relays.relay(session.v6, peer) {
                    let _ = ipfields::deliver(&relay.socket, session.v6, session.local, &data, ip)
                        .await;
                }
                if let Some(waiter) = waiter {
                    let _ = waiter.send(UdpEvent::Datagram {
                        peer,
                        data: Vec::new(),
                        ip,
                    });
                }
            }
            UdpEvent::RecvFailed(e) => {
                if let Some(waiter) = session.answered() {
                    let _ = waiter.send(UdpEvent::RecvFailed(e));
                }
            }
            UdpEvent::Unreachable {
                peer,
                icmp,
                offender,
                quoted,
            } => relays.unreachable(&session, peer, icmp, offender, &quoted),
            answer @ (UdpEvent::Sent(_) | UdpEvent::Connected(_)) => {
                if let Some(waiter) = lock(&session.control).pop_front() {
                    let _ = waiter.send(answer);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_the_same_whatever_its_flow_label() {
        let v6 = |flowinfo, port| SockAddr::V6 {
            ip: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            port,
            flowinfo,
            scope_id: 0,
        };
        assert!(same_peer(v6(7, 53), v6(0, 53)));
        assert!(!same_peer(v6(0, 53), v6(0, 54)));
        let v4 = |port| SockAddr::V4 {
            ip: [10, 0, 0, 2],
            port,
        };
        assert!(same_peer(v4(53), v4(53)));
        assert!(!same_peer(v4(53), v4(54)));
        assert!(!same_peer(v4(53), v6(0, 53)));
    }

    #[test]
    fn udp_tables_give_inodes() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
                    \x20 123: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 98765 2 0000000000000000 0\n";
        assert_eq!(udp_table_inodes(text), vec![98765]);
        assert!(udp_table_inodes("header only\n").is_empty());
    }
}
