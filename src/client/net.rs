//! The client's half of `--net`: a program's TCP socket becomes a real
//! local socket connected to a pump inside rscq, and the pump carries its
//! bytes over one QUIC stream to a socket on the server.
//!
//! rscq connects the program's own socket out of band: it takes a copy of
//! the fd with `pidfd_getfd(2)` (same open file description) and connects
//! that to a loopback listener of its own. The program's reads, writes,
//! polls and closes then never stop: they run on a kernel socket.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use rustix::net::AddressFamily;

use super::coalesce::{Claim, Owner, ProgramSocket};
use super::pure::PurePumps;
use crate::engine::coalesce::{CoalesceConfig, Coalescer};
use crate::engine::sendwindow::Windows;
use crate::errno::Errno;
use crate::proto::{Incoming, Reply, Request, SockAddr};
use crate::syscall::sockets::{RemoteSocket, SocketRegistry};
use crate::transport::Link;
use crate::transport::client::TcpStreams;
use crate::transport::pump::{Nagle, Traffic, Unsent, UnsentGuard, pump_with};
use crate::transport::urgent::keep_urgent_inline;

/// Pairs a connection accepted on rscq's listener with the program socket
/// that made it, by the program socket's local port. Either side may come
/// first.
#[derive(Debug, Default)]
struct Rendezvous {
    slots: Mutex<HashMap<(bool, u16), Slot>>,
}

#[derive(Debug)]
enum Slot {
    Waiting(oneshot::Sender<TcpStream>),
    Arrived(TcpStream),
}

impl Rendezvous {
    fn deliver(&self, key: (bool, u16), stream: TcpStream) {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.remove(&key) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(stream);
            }
            _ => {
                slots.insert(key, Slot::Arrived(stream));
            }
        }
    }

    fn expect(&self, key: (bool, u16)) -> oneshot::Receiver<TcpStream> {
        let (tx, rx) = oneshot::channel();
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        match slots.remove(&key) {
            Some(Slot::Arrived(stream)) => {
                let _ = tx.send(stream);
            }
            _ => {
                slots.insert(key, Slot::Waiting(tx));
            }
        }
        rx
    }
}

/// rscq's loopback listeners, one per address family.
#[derive(Debug)]
pub struct Pumps {
    v4: SocketAddr,
    v6: Option<SocketAddr>,
    /// Bound but never listening: a connect to them is refused at once,
    /// which is how a non-blocking program socket learns ECONNREFUSED.
    refusers: (std::net::TcpListener, Option<std::net::TcpListener>),
    rendezvous: Arc<Rendezvous>,
    sockets: SocketRegistry,
    /// With `--pure`: connections run stop-and-wait through these.
    pub pure: Option<PurePumps>,
    /// The `nagle` layer: how the program's writes are coalesced.
    nagle: Option<(CoalesceConfig, Link)>,
    /// What the pumps announce to the server's (default mode).
    windows: Windows,
    /// Where a program socket waits while its remote connect goes on.
    pub hold: super::hold::Hold,
    /// Connections still carrying what the program wrote to the server.
    unsent: Unsent,
    /// The bytes the pumps carried, for `--stats`.
    traffic: Arc<Traffic>,
}

/// How long rscq, once the program has ended, waits for the bytes it wrote
/// to reach the server: a peer that never reads must not keep rscq alive.
pub const DRAIN_AT_EXIT: Duration = Duration::from_secs(30);

impl Pumps {
    /// Binds the listeners and starts accepting. Call inside the runtime.
    /// `send_window` bounds what a program's sends may be ahead of the
    /// server's socket (`--net-send-window`), in both modes.
    pub async fn start(
        sockets: SocketRegistry,
        pure: bool,
        nagle: Option<(CoalesceConfig, Link)>,
        send_window: u32,
        traffic: Arc<Traffic>,
    ) -> std::io::Result<Self> {
        let rendezvous = Arc::new(Rendezvous::default());
        // The pumps read urgent bytes in line: accepted sockets inherit
        // it from the listeners before the program can send one.
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        keep_urgent_inline(&v4);
        bound_pump_receive_buffer(&v4);
        let v4_addr = v4.local_addr()?;
        tokio::spawn(accept_loop(v4, false, rendezvous.clone()));
        // A host without IPv6 on loopback still serves IPv4 programs.
        let v6_addr = match TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await {
            Ok(l) => {
                keep_urgent_inline(&l);
                bound_pump_receive_buffer(&l);
                let a = l.local_addr()?;
                tokio::spawn(accept_loop(l, true, rendezvous.clone()));
                Some(a)
            }
            Err(_) => None,
        };
        Ok(Self {
            v4: v4_addr,
            v6: v6_addr,
            refusers: (refuser(false)?, refuser(true).ok()),
            rendezvous,
            sockets,
            pure: pure.then(|| PurePumps::new(u64::from(send_window))),
            nagle: nagle.filter(|_| !pure),
            windows: Windows {
                send: u64::from(send_window),
                // The server may read ahead of the program as far as the
                // stream window (`--readahead-window`) would let it.
                receive: u64::from(crate::transport::stream_window()),
            },
            hold: super::hold::Hold::bind()?,
            unsent: Unsent::default(),
            traffic,
        })
    }

    /// At exit: waits, at most [`DRAIN_AT_EXIT`], until what the program
    /// wrote to its remote connections has reached the server, so closing
    /// the link does not cut it off.
    pub async fn drain_at_exit(&self) {
        let pure = self.pure.as_ref().map(PurePumps::unsent);
        let settled = async {
            self.unsent.settled().await;
            if let Some(pure) = &pure {
                pure.settled().await;
            }
        };
        if tokio::time::timeout(DRAIN_AT_EXIT, settled).await.is_err() {
            let pending = self.unsent.pending() + pure.as_ref().map_or(0, Unsent::pending);
            eprintln!(
                "rscq: {pending} connection(s) still sending {}s after the program ended; \
                 their last bytes are lost",
                DRAIN_AT_EXIT.as_secs()
            );
        }
    }

    /// For a non-blocking program socket whose remote connect was refused:
    /// starts a local connect that the kernel refuses, so the program sees
    /// `EINPROGRESS`, then `POLLERR` and `SO_ERROR` = ECONNREFUSED, as it
    /// would for a refused connect of its own. Blocking sockets (and other
    /// errors) get the errno directly.
    pub fn refuse(&self, dup: &OwnedFd, err: Errno) -> Errno {
        let nonblocking =
            rustix::fs::fcntl_getfl(dup).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
        if !nonblocking || err != Errno(libc::ECONNREFUSED) {
            return err;
        }
        let v6 = rustix::net::sockopt::socket_domain(dup).is_ok_and(|d| d == AddressFamily::INET6);
        let target = if v6 {
            self.refusers.1.as_ref()
        } else {
            Some(&self.refusers.0)
        };
        let Some(addr) = target.and_then(|l| l.local_addr().ok()) else {
            return err;
        };
        match rustix::net::connect(dup, &addr) {
            Err(e) if e == rustix::io::Errno::INPROGRESS => Errno(libc::EINPROGRESS),
            _ => err,
        }
    }

    /// Connects the program's socket (`dup` is rscq's copy of it) to a
    /// pump and starts carrying `streams`. Returns once the program's
    /// socket is connected.
    pub async fn attach(
        &self,
        dup: OwnedFd,
        streams: TcpStreams,
        owner: (i32, i32),
    ) -> Result<(), Errno> {
        let ino = rustix::fs::fstat(dup.as_fd()).map_err(Errno::from)?.st_ino;
        // Registered before the socket connects: another thread of the
        // program that waits for input on it from that moment (its peer
        // may have accepted and written, or closed, already) finds its
        // remote side, and with `--pure` the pump its wait fetches from.
        let carrier = self.expect(ino, streams, owner);
        match self.connect_local(&dup).await {
            Ok(accepted) => {
                drop(dup);
                carrier.start(accepted);
                Ok(())
            }
            Err(e) => {
                carrier.abandon();
                Err(e)
            }
        }
    }

    /// The program sockets that have a remote side.
    pub fn sockets(&self) -> &SocketRegistry {
        &self.sockets
    }

    /// Whether the socket with inode `ino` is already connected (or bound)
    /// on the server.
    pub fn is_remote(&self, ino: u64) -> bool {
        self.sockets.contains(ino)
    }

    /// Connects the program's socket to rscq's loopback listener and
    /// returns rscq's end of that local connection.
    async fn connect_local(&self, dup: &OwnedFd) -> Result<TcpStream, Errno> {
        let domain = rustix::net::sockopt::socket_domain(dup).map_err(Errno::from)?;
        let v6 = domain == AddressFamily::INET6;
        let listener = if v6 {
            self.v6.ok_or(Errno(libc::EAFNOSUPPORT))?
        } else {
            self.v4
        };
        match rustix::net::connect(dup, &listener) {
            Ok(()) => {}
            Err(e) if e == rustix::io::Errno::INPROGRESS => {}
            Err(e) => return Err(e.into()),
        }
        let local = rustix::net::getsockname(dup).map_err(Errno::from)?;
        let port = SocketAddr::try_from(local)
            .map_err(|_| Errno::EINVAL)?
            .port();
        tokio::time::timeout(Duration::from_secs(5), self.rendezvous.expect((v6, port)))
            .await
            .map_err(|_| Errno(libc::ETIMEDOUT))?
            .map_err(|_| Errno::EIO)
    }

    /// Registers the remote connection of program socket `ino` before its
    /// local connection exists, so that the program finds its addresses
    /// (and with `--pure` its pump) the moment its socket is connected.
    pub fn expect(&self, ino: u64, streams: TcpStreams, owner: (i32, i32)) -> Carrier {
        let (pure_pump, starter) = match &self.pure {
            Some(pure) => {
                let (id, starter) = pure.prepare();
                (Some(id), Some(starter))
            }
            None => (None, None),
        };
        self.sockets.insert(
            ino,
            RemoteSocket {
                local: streams.local,
                peer: Some(streams.peer),
                pure_pump,
                udp: None,
            },
        );
        let nagle = self.nagle.as_ref().map(|(config, link)| Nagle {
            coalescer: Coalescer::new(*config),
            program: Box::new(ProgramSocket::connected(
                link.clone(),
                Owner {
                    tgid: owner.0,
                    fd: owner.1,
                    ino,
                },
            )),
        });
        Carrier {
            ino,
            streams,
            starter,
            windows: self.windows,
            nagle,
            unsent: self.pure.is_none().then(|| self.unsent.track()),
            sockets: self.sockets.clone(),
            traffic: self.traffic.clone(),
        }
    }
}

/// A remote connection registered for a program socket (see
/// [`Pumps::expect`]), waiting for rscq's end of the local connection.
pub struct Carrier {
    ino: u64,
    streams: TcpStreams,
    /// With `--pure`: the registered stop-and-wait pump.
    starter: Option<super::pure::Starter>,
    windows: Windows,
    nagle: Option<Nagle>,
    /// Counts the connection until what the program wrote reached the
    /// server (the pure pump counts its own).
    unsent: Option<UnsentGuard>,
    sockets: SocketRegistry,
    traffic: Arc<Traffic>,
}

impl Carrier {
    /// Carries the connection between `accepted` and the server.
    pub fn start(self, accepted: TcpStream) {
        let Self {
            ino,
            streams,
            starter,
            windows,
            nagle,
            unsent,
            sockets,
            traffic,
        } = self;
        match starter {
            Some(starter) => starter.start(accepted, streams.send, streams.recv),
            None => {
                tokio::spawn(async move {
                    let traffic = Some(traffic);
                    let (send, recv) = (streams.send, streams.recv);
                    pump_with(accepted, send, recv, windows, nagle, unsent, traffic).await;
                    sockets.remove(ino);
                });
            }
        }
    }

    /// The local connection could not be made: the remote one is dropped.
    pub fn abandon(self) {
        self.sockets.remove(self.ino);
        if let Some(starter) = self.starter {
            starter.cancel();
        }
    }
}

/// A new TCP socket of rscq's own, IPv6 or IPv4, close-on-exec and with
/// `flags` besides.
pub fn tcp_socket(v6: bool, flags: rustix::net::SocketFlags) -> rustix::io::Result<OwnedFd> {
    let family = if v6 {
        AddressFamily::INET6
    } else {
        AddressFamily::INET
    };
    rustix::net::socket_with(
        family,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC | flags,
        None,
    )
}

/// The receive buffer of rscq's end of each loopback connection
/// (`SO_RCVBUF`; the kernel doubles it). Left to autotuning it grows to
/// `tcp_rmem`'s maximum (about 6 MB) when the server side is slower than
/// the program, and that would add to what a program can send before its
/// sends block: its `SO_SNDBUF` and send timeout would lose their meaning.
/// 128 KiB keeps the loopback window well above one pump read (64 KiB), so
/// uploads are not slowed.
const PUMP_RECEIVE_BUFFER: usize = 128 * 1024;

/// Fixes the receive buffer of `socket` (or of the sockets a listener
/// accepts: they inherit it) to [`PUMP_RECEIVE_BUFFER`]. Were it refused,
/// only the bound would be lost.
pub(super) fn bound_pump_receive_buffer(socket: impl AsFd) {
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size(socket, PUMP_RECEIVE_BUFFER);
}

/// A loopback TCP socket bound to a free port and never put in listen state
/// (std's `TcpListener` would listen; rustix binds without listening).
fn refuser(v6: bool) -> std::io::Result<std::net::TcpListener> {
    let fd = tcp_socket(v6, rustix::net::SocketFlags::empty())?;
    let addr: SocketAddr = if v6 {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    };
    rustix::net::bind(&fd, &addr)?;
    // Only `local_addr` is ever used on it; it is never accepted from.
    Ok(std::net::TcpListener::from(fd))
}

impl Pumps {
    /// `bind(2)`: on the server with the program socket's options, then
    /// locally to a loopback port where remote connections are delivered.
    pub async fn bind(
        &self,
        link: &Link,
        dup: OwnedFd,
        addr: SockAddr,
        options: Vec<crate::proto::SockOption>,
    ) -> Result<(), Errno> {
        let flags = BindFlags::of(&dup)?;
        let request = Request::TcpBind {
            addr,
            reuse_addr: flags.reuse_addr,
            reuse_port: flags.reuse_port,
            v6_only: flags.v6_only,
            options,
        };
        let mut answer = link.call(&request).await;
        // The port may still be held by a listener the program has just
        // closed: release those, then try once more.
        if matches!(answer, Ok(Err(Errno(libc::EADDRINUSE))))
            && super::listeners::release_closed(&self.sockets, link).await > Some(0)
        {
            answer = link.call(&request).await;
        }
        let (listener, local) = match answer {
            Ok(Ok(Reply::TcpBound { listener, local })) => (listener, local),
            Ok(Ok(_)) | Err(_) => return Err(Errno::EIO),
            Ok(Err(e)) => return Err(e),
        };
        let loopback = local_bind_addr(SocketAddr::from(addr), flags);
        let undo = || async {
            let _ = link.call(&Request::TcpUnbind { listener }).await;
        };
        if let Err(e) = rustix::net::bind(&dup, &loopback) {
            undo().await;
            return Err(e.into());
        }
        let bound = rustix::net::getsockname(&dup)
            .ok()
            .and_then(|a| SocketAddr::try_from(a).ok())
            .ok_or(Errno::EINVAL)?;
        let ino = rustix::fs::fstat(&dup).map_err(Errno::from)?.st_ino;
        self.sockets.insert(
            ino,
            RemoteSocket {
                local,
                peer: None,
                pure_pump: None,
                udp: None,
            },
        );
        self.sockets.add_listener(ino, listener, bound);
        Ok(())
    }

    /// `listen(2)` on both sides.
    pub async fn listen(
        &self,
        link: &Link,
        dup: OwnedFd,
        listener: u64,
        backlog: u32,
    ) -> Result<(), Errno> {
        rustix::net::listen(&dup, i32::try_from(backlog).unwrap_or(i32::MAX))
            .map_err(Errno::from)?;
        let pure = self.pure.is_some();
        match link
            .call(&Request::TcpListen {
                listener,
                backlog,
                pure,
            })
            .await
        {
            Ok(Ok(Reply::Done)) => {
                if let Ok(st) = rustix::fs::fstat(&dup) {
                    self.sockets.set_listening(st.st_ino);
                }
                Ok(())
            }
            Ok(Ok(_)) | Err(_) => Err(Errno::EIO),
            Ok(Err(e)) => Err(e),
        }
    }

    /// Hands a connection the server accepted to the program's listener;
    /// returns once the program's listener has it queued (its bytes are
    /// carried in a task of their own).
    pub async fn deliver_incoming(
        &self,
        link: &Link,
        incoming: Incoming,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) {
        let reset = quinn::VarInt::from_u32(crate::transport::pump::STREAM_RESET);
        // Our end is bound and registered before it connects: the program
        // may accept (and look the connection up) as soon as it does.
        let prepared = match self.sockets.listener_addr(incoming.listener) {
            Some(addr) => bound_socket(addr).ok(),
            None => None,
        };
        let Some((socket, port, addr)) = prepared else {
            let _ = send.reset(reset);
            return;
        };
        let (local, peer) = (incoming.local, Some(incoming.peer));
        let starter = self.pure.as_ref().map(PurePumps::prepare);
        let pure_pump = starter.as_ref().map(|(id, _)| *id);
        self.sockets.add_incoming(
            port,
            RemoteSocket {
                local,
                peer,
                pure_pump,
                udp: None,
            },
        );
        let Ok(stream) = socket.connect(addr).await else {
            // The program closed its listening socket (rscq does not trap
            // close): release the server's listener now, and reset the
            // connection as a closed port would.
            let _ = self.sockets.take_incoming(port);
            let _ = send.reset(reset);
            let _ = link
                .call(&Request::TcpUnbind {
                    listener: incoming.listener,
                })
                .await;
            return;
        };
        match starter {
            Some((_, starter)) => starter.start(stream, send, recv),
            None => {
                let nagle = self.nagle.as_ref().map(|(config, link)| Nagle {
                    coalescer: Coalescer::new(*config),
                    program: Box::new(ProgramSocket::delivered(
                        link.clone(),
                        Claim {
                            sockets: self.sockets.clone(),
                            port,
                        },
                    )),
                });
                let (sockets, unsent) = (self.sockets.clone(), self.unsent.track());
                let traffic = Some(self.traffic.clone());
                let windows = self.windows;
                tokio::spawn(async move {
                    pump_with(stream, send, recv, windows, nagle, Some(unsent), traffic).await;
                    let _ = sockets.owner_of_incoming(port);
                });
            }
        }
    }
}

/// A TCP socket bound to a free loopback port, to connect to the
/// program's listener at `target`; returns it with its port and the address
/// to connect to (an IPv4-mapped listener is reached over IPv4).
fn bound_socket(target: SocketAddr) -> std::io::Result<(tokio::net::TcpSocket, u16, SocketAddr)> {
    let target = unmapped(target);
    let (socket, loopback): (_, SocketAddr) = if target.is_ipv6() {
        (
            tokio::net::TcpSocket::new_v6()?,
            (Ipv6Addr::LOCALHOST, 0).into(),
        )
    } else {
        (
            tokio::net::TcpSocket::new_v4()?,
            (Ipv4Addr::LOCALHOST, 0).into(),
        )
    };
    socket.bind(loopback)?;
    keep_urgent_inline(&socket);
    bound_pump_receive_buffer(&socket);
    let port = socket.local_addr()?.port();
    Ok((socket, port, target))
}

/// `target` with an IPv4-mapped IPv6 address as the IPv4 address it maps.
fn unmapped(target: SocketAddr) -> SocketAddr {
    match target {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), a.port()),
            None => target,
        },
        SocketAddr::V4(_) => target,
    }
}

/// Where the program's socket is bound locally, once the server has bound
/// its twin to `remote` (the address the program asked for): a loopback
/// port of the socket's family. The kernel makes an IPv6 socket bound to a
/// specific IPv6 address IPv6-only, so a socket that is dual-stack on the
/// server (wildcard or IPv4-mapped address, IPV6_V6ONLY off) is bound to
/// the IPv4-mapped loopback instead of `::1`, and reads IPV6_V6ONLY back
/// as the program set it.
pub(crate) fn local_bind_addr(remote: SocketAddr, flags: BindFlags) -> SocketAddr {
    if !flags.v6 {
        return (Ipv4Addr::LOCALHOST, 0).into();
    }
    let dual_stack = match remote {
        SocketAddr::V6(a) => {
            flags.v6_only == Some(false)
                && (a.ip().is_unspecified() || a.ip().to_ipv4_mapped().is_some())
        }
        SocketAddr::V4(_) => false,
    };
    if dual_stack {
        (Ipv4Addr::LOCALHOST.to_ipv6_mapped(), 0).into()
    } else {
        (Ipv6Addr::LOCALHOST, 0).into()
    }
}

async fn accept_loop(listener: TcpListener, v6: bool, rendezvous: Arc<Rendezvous>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => rendezvous.deliver((v6, peer.port()), stream),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// What a `bind` on the server copies from the program's socket (`dup` is
/// rscq's copy): its family and the options the kernel reads at bind time.
#[derive(Debug, Clone, Copy)]
pub struct BindFlags {
    pub v6: bool,
    pub reuse_addr: bool,
    pub reuse_port: bool,
    /// Only for an IPv6 socket.
    pub v6_only: Option<bool>,
}

impl BindFlags {
    pub fn of(dup: &OwnedFd) -> Result<Self, Errno> {
        use rustix::net::sockopt;
        let v6 = sockopt::socket_domain(dup).map_err(Errno::from)? == AddressFamily::INET6;
        Ok(Self {
            v6,
            reuse_addr: sockopt::socket_reuseaddr(dup).unwrap_or(false),
            reuse_port: sockopt::socket_reuseport(dup).unwrap_or(false),
            v6_only: if v6 {
                sockopt::ipv6_v6only(dup).ok()
            } else {
                None
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(v6: bool, v6_only: Option<bool>) -> BindFlags {
        BindFlags {
            v6,
            reuse_addr: false,
            reuse_port: false,
            v6_only,
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn ipv4_sockets_bind_ipv4_loopback() {
        assert_eq!(
            local_bind_addr(sa("0.0.0.0:80"), flags(false, None)),
            sa("127.0.0.1:0")
        );
        assert_eq!(
            local_bind_addr(sa("10.1.2.3:80"), flags(false, None)),
            sa("127.0.0.1:0")
        );
    }

    #[test]
    fn dual_stack_sockets_bind_the_mapped_loopback() {
        let dual = flags(true, Some(false));
        assert_eq!(
            local_bind_addr(sa("[::]:80"), dual),
            sa("[::ffff:127.0.0.1]:0")
        );
        assert_eq!(
            local_bind_addr(sa("[::ffff:10.1.2.3]:80"), dual),
            sa("[::ffff:127.0.0.1]:0")
        );
    }

    #[test]
    fn ipv6_only_or_specific_addresses_bind_ipv6_loopback() {
        assert_eq!(
            local_bind_addr(sa("[::]:80"), flags(true, Some(true))),
            sa("[::1]:0")
        );
        // Unknown: the IPv6 loopback, as before.
        assert_eq!(
            local_bind_addr(sa("[::]:80"), flags(true, None)),
            sa("[::1]:0")
        );
        assert_eq!(
            local_bind_addr(sa("[fd00::1]:80"), flags(true, Some(false))),
            sa("[::1]:0")
        );
    }

    #[test]
    fn mapped_listeners_are_reached_over_ipv4() {
        assert_eq!(unmapped(sa("[::ffff:127.0.0.1]:5")), sa("127.0.0.1:5"));
        assert_eq!(unmapped(sa("[::1]:5")), sa("[::1]:5"));
        assert_eq!(unmapped(sa("127.0.0.1:5")), sa("127.0.0.1:5"));
    }
}
