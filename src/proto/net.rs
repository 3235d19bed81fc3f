//! Sockets as the wire carries them (`--net`): addresses, the remote UDP
//! socket's stream messages, socket options, `--pure` stream operations and
//! accepted connections, and the system files name resolution reads.
//!
//! Pure: types only; a change here is a [`super::PROTOCOL_VERSION`] bump.

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// An IPv4 or IPv6 socket address, as `struct sockaddr_in`/`sockaddr_in6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SockAddr {
    V4 {
        ip: [u8; 4],
        port: u16,
    },
    V6 {
        ip: [u8; 16],
        port: u16,
        flowinfo: u32,
        scope_id: u32,
    },
}

impl From<std::net::SocketAddr> for SockAddr {
    fn from(a: std::net::SocketAddr) -> Self {
        match a {
            std::net::SocketAddr::V4(v4) => Self::V4 {
                ip: v4.ip().octets(),
                port: v4.port(),
            },
            std::net::SocketAddr::V6(v6) => Self::V6 {
                ip: v6.ip().octets(),
                port: v6.port(),
                flowinfo: v6.flowinfo(),
                scope_id: v6.scope_id(),
            },
        }
    }
}

impl From<SockAddr> for std::net::SocketAddr {
    fn from(a: SockAddr) -> Self {
        match a {
            SockAddr::V4 { ip, port } => (std::net::Ipv4Addr::from(ip), port).into(),
            SockAddr::V6 {
                ip,
                port,
                flowinfo,
                scope_id,
            } => std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope_id,
            )),
        }
    }
}

/// A system file the server reads from its own `/etc`, never beneath the
/// export root: with `--net`, name resolution must see the remote host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SystemFile {
    ResolvConf,
    Hosts,
    NsswitchConf,
    GaiConf,
    Services,
}

impl SystemFile {
    pub const ALL: [Self; 5] = [
        Self::ResolvConf,
        Self::Hosts,
        Self::NsswitchConf,
        Self::GaiConf,
        Self::Services,
    ];

    /// Its path on both machines.
    pub fn path(self) -> &'static str {
        match self {
            Self::ResolvConf => "/etc/resolv.conf",
            Self::Hosts => "/etc/hosts",
            Self::NsswitchConf => "/etc/nsswitch.conf",
            Self::GaiConf => "/etc/gai.conf",
            Self::Services => "/etc/services",
        }
    }
}

/// One operation on a remote UDP socket's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum UdpOp {
    /// `sendto(2)` to `peer`, or `send(2)` to the connected peer, with the
    /// IP header fields the program's send gave the datagram.
    Send {
        peer: Option<SockAddr>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        ip: IpFields,
    },
    /// `connect(2)`; answered by [`UdpEvent::Connected`].
    Connect { peer: SockAddr },
    /// `connect(2)` to `AF_UNSPEC`; answered by [`UdpEvent::Connected`].
    Disconnect,
    /// `--pure`: one `recvfrom(2)`; with `nonblocking`, EAGAIN instead of
    /// waiting. Answered by [`UdpEvent::Datagram`] or [`UdpEvent::RecvFailed`].
    Recv { nonblocking: bool },
}

/// What the server sends on a remote UDP socket's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum UdpEvent {
    /// A datagram the socket received from `peer`, with the IP header
    /// fields it arrived with.
    Datagram {
        peer: SockAddr,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        ip: IpFields,
    },
    RecvFailed(Errno),
    /// `--pure`: the answer to a [`UdpOp::Send`].
    Sent(Result<u64, Errno>),
    /// The answer to [`UdpOp::Connect`]: the socket's new local address.
    Connected(Result<SockAddr, Errno>),
    /// An ICMP error came back for a datagram the socket sent to `peer`
    /// (not with `--pure`), from `offender`; `quoted` is the part of the
    /// datagram's payload the message quoted.
    Unreachable {
        peer: SockAddr,
        icmp: IcmpError,
        offender: Option<SockAddr>,
        #[serde(with = "serde_bytes")]
        quoted: Vec<u8>,
    },
}

/// The per-datagram IP header fields a UDP datagram crosses with: its TTL
/// (IPv6: hop limit) and its TOS byte (IPv6: traffic class, both with the
/// ECN bits). A sent datagram carries a field only where the program's
/// send set its own value, and the server's send then sets it too
/// (`IP_TTL`, `IP_TOS`, `IPV6_HOPLIMIT`, `IPV6_TCLASS` control messages);
/// `None` leaves the server socket's default. A received one carries what
/// the server's kernel reported (`IP_RECVTTL` and the like), which the
/// client's delivery into the program's socket sets again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct IpFields {
    pub ttl: Option<u8>,
    pub tos: Option<u8>,
}

impl IpFields {
    /// Whether it sets no field.
    pub fn is_empty(self) -> bool {
        self.ttl.is_none() && self.tos.is_none()
    }
}

/// The type and code of an ICMP error message, as the server's kernel
/// queued it on the socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct IcmpError {
    /// ICMPv6 (else ICMPv4).
    pub v6: bool,
    pub kind: u8,
    pub code: u8,
}

/// A socket option that matters on the server's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SockOption {
    KeepAlive(bool),
    NoDelay(bool),
    /// `SO_RCVBUF` as the program gave it (the kernel doubles it).
    RecvBuffer(u32),
    SendBuffer(u32),
    /// `SO_LINGER`: the timeout in seconds when on.
    Linger(Option<u32>),
    KeepIdle(u32),
    KeepInterval(u32),
    KeepCount(u32),
    // New variants go last, so encoded requests (the fuzz corpus) keep
    // their meaning.
    /// `IP_TOS`: the TOS byte of the connection's packets.
    IpTos(u8),
    /// `TCP_CORK`.
    Cork(bool),
    /// `TCP_USER_TIMEOUT`, in milliseconds.
    UserTimeout(u32),
    /// `SO_BINDTODEVICE`: a device of the server's, by name (NUL-padded;
    /// all zeros unbinds).
    BindToDevice([u8; DEVICE_NAME]),
}

/// The room for a device name with its NUL (`IFNAMSIZ`).
pub const DEVICE_NAME: usize = 16;

impl SockOption {
    /// Whether the option names something of the server's only, so it
    /// must not be set on the program's local socket: the planner holds
    /// the call and the engine answers it.
    pub fn server_only(&self) -> bool {
        matches!(self, Self::BindToDevice(_))
    }
}

/// What a datagram socket of the program is on the server (see
/// [`Request::UdpBind`](super::Request::UdpBind)): its local stand-in is a
/// UDP socket in every case, whose datagrams the UDP machinery carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DatagramKind {
    /// A UDP socket.
    #[default]
    Udp,
    /// An ICMP echo ("ping") socket (`SOCK_DGRAM` with `IPPROTO_ICMP`, or
    /// `IPPROTO_ICMPV6` for IPv6): its datagrams are ICMP echo messages,
    /// its port the echo id.
    Ping,
    /// A UDP-Lite socket (`IPPROTO_UDPLITE`, RFC 3828), with the default
    /// checksum coverage (the whole datagram).
    UdpLite,
}

/// Which server socket a [`Request::TcpSetOption`](super::Request::TcpSetOption) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OptionTarget {
    /// A connection, by its addresses as the server sees them.
    Connection {
        local: SockAddr,
        peer: SockAddr,
    },
    Listener(u64),
}

/// One stop-and-wait operation on a `--pure` connection's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PureOp {
    /// One `recv(2)` of at most `max` bytes; with `nonblocking`, EAGAIN
    /// instead of waiting.
    Recv { max: u32, nonblocking: bool },
    /// One blocking `send(2)`: answered once every byte is in the server's
    /// socket, or, if a [`PureOp::CancelSend`] for it comes first, with the
    /// count of those that are (one more try without waiting included).
    Send(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `shutdown(SHUT_WR)`.
    ShutdownWrite,
    /// The program's socket was reset (an abortive close): after the sends
    /// before it, the server's socket is reset too.
    Reset,
    /// Stop waiting for room for the `n`-th `Send` of this stream (counted
    /// from 1): the program's call timed out, was interrupted, or does not
    /// block. It is answered with what went.
    CancelSend(u64),
    // New variants go last, so encoded ops (the fuzz corpus) keep their
    // meaning.
    /// A `send(MSG_OOB)`: as [`PureOp::Send`], its last byte sent as the
    /// urgent byte.
    SendUrgent(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Wait until the socket has room to send (it polls writable, or has
    /// failed), after the sends before it: answered `Sent(0)`. Counted as a
    /// `Send` for [`PureOp::CancelSend`], which ends the wait early. A
    /// program's `poll` for `POLLOUT` after a send found the socket full.
    WaitRoom,
}

/// The answer to one [`PureOp`]. Receives and sends are answered in
/// their own order, independently: a `send` never waits behind a `recv`
/// that waits for the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PureReply {
    /// Received bytes; empty at the end of the stream.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    RecvFailed(Errno),
    /// How many bytes of a `Send` went (fewer if it was cancelled).
    Sent(u64),
    /// `ShutdownWrite` or `Reset` done.
    Shut,
    SendFailed(Errno),
    /// Part of a `Recv`'s answer, before its `Data` or `RecvFailed`: the
    /// bytes before the urgent mark, then the urgent byte.
    Urgent {
        #[serde(with = "serde_bytes")]
        before: Vec<u8>,
        byte: u8,
    },
}

/// The first frame of a stream the server opens: one accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Incoming {
    pub listener: u64,
    pub local: SockAddr,
    pub peer: SockAddr,
}
