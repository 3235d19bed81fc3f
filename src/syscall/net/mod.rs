//! Socket calls: with `--net`, which calls on which sockets go to the
//! server (TCP in [`tcp`] and `sockopt`, UDP in [`udp`], ICMP echo and
//! UDP-Lite sockets made UDP ones in [`standin`], stop-and-wait data in
//! `pure`), and with a mount, AF_UNIX paths in it ([`unix`]).
//!
//! This module owns the dispatch of the address-carrying socket calls
//! (`Planner::net_call`) and the rule shared by TCP and UDP for IPv4 peers
//! of IPv6-only sockets. Pure, as all of `crate::syscall`: it must not
//! open, connect or read a socket; the engine and the tracer do.

mod pure;
mod sockopt;
pub mod standin;
mod tcp;
pub mod udp;
pub mod unix;

use crate::errno::Errno;
use crate::proto::{DatagramKind, Request, SockAddr};
use crate::syscall::plan::{Plan, Planner, Tracee, arg_i32};

/// Linux refuses an IPv4 peer to an IPv6-only socket (`tcp_v6_connect`,
/// `udpv6_sendmsg`, `ip6_datagram_connect`): ENETUNREACH for an IPv4-mapped address, and for
/// an `AF_INET` one EAFNOSUPPORT on `connect`, ENETUNREACH on a send.
pub(crate) fn ipv4_peer_refused(
    t: &mut impl Tracee,
    fd: i32,
    v6: bool,
    addr: SockAddr,
    connect: bool,
) -> Result<(), Errno> {
    let ipv4_peer = match addr {
        SockAddr::V4 { .. } => true,
        SockAddr::V6 { ip, .. } => std::net::Ipv6Addr::from(ip).to_ipv4_mapped().is_some(),
    };
    if !v6 || !ipv4_peer || !t.v6_only(fd) {
        return Ok(());
    }
    Err(match addr {
        SockAddr::V4 { .. } if connect => Errno(libc::EAFNOSUPPORT),
        _ => Errno(libc::ENETUNREACH),
    })
}

impl<T: Tracee> Planner<'_, T> {
    /// Socket calls that carry addresses, with `--net`.
    pub(in crate::syscall) fn net_call(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd = arg_i32(a[0]);
        match nr {
            libc::SYS_connect | libc::SYS_bind => self.connect_or_bind(nr, fd, a),
            libc::SYS_listen => self.listen(fd, a),
            libc::SYS_accept | libc::SYS_accept4 => self.accept(fd, a),
            libc::SYS_setsockopt => self.setsockopt(fd, a),
            libc::SYS_getsockopt => self.getsockopt(fd, a),
            // What the UDP family left: datagrams rscq cannot carry (raw
            // and ICMP sockets), which sent from this host instead would
            // betray the program. A UDP socket the UDP family declined (a
            // `sendmsg` with no address on an unbound socket) is the
            // kernel's to answer.
            libc::SYS_sendto | libc::SYS_sendmsg | libc::SYS_sendmmsg => {
                match self.t.socket_kind(fd) {
                    Some((domain, ty))
                        if (domain == libc::AF_INET || domain == libc::AF_INET6)
                            && ty != libc::SOCK_STREAM
                            && (nr == libc::SYS_sendto
                                || self.t.socket_protocol(fd) != Some(libc::IPPROTO_UDP)) =>
                    {
                        Plan::fail(Errno(libc::ENETUNREACH))
                    }
                    _ => Plan::Native,
                }
            }
            _ => self.socket_name(nr, fd, a),
        }
    }
}

/// The `--trace` arguments of the socket requests (`--net`): connects,
/// binds, listeners, options ([`describe_as`](crate::syscall::describe::describe_as)
/// routes them here).
pub(in crate::syscall) fn trace_args(req: &Request) -> String {
    match req {
        Request::TcpConnect { addr, .. }
        | Request::TcpBind { addr, .. }
        | Request::UdpBind {
            addr,
            kind: DatagramKind::Udp,
            ..
        } => std::net::SocketAddr::from(*addr).to_string(),
        Request::UdpBind {
            addr,
            kind: DatagramKind::Ping,
            ..
        } => format!("{}, ICMP echo", std::net::SocketAddr::from(*addr)),
        Request::UdpBind {
            addr,
            kind: DatagramKind::UdpLite,
            ..
        } => format!("{}, UDP-Lite", std::net::SocketAddr::from(*addr)),
        Request::TcpListen {
            listener, backlog, ..
        } => format!("L{listener}, {backlog}"),
        Request::TcpUnbind { listener } => format!("L{listener}"),
        Request::TcpSetOption { target, option } => format!("{target:?}, {option:?}"),
        Request::TcpGetInfo { local, peer } => format!(
            "{} -> {}, TCP_INFO",
            std::net::SocketAddr::from(*local),
            std::net::SocketAddr::from(*peer)
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
