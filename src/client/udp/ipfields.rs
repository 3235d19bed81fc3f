//! The IP header fields (TTL, TOS; IPv6: hop limit, traffic class) of the
//! program's datagrams on their way to the server, and of the server's
//! datagrams on their way into the program's socket.
//!
//! Outgoing, the local kernel has already set the fields the program asked
//! for (`IP_TTL`, `IP_TOS`, `IPV6_UNICAST_HOPS`, `IPV6_TCLASS`, or one
//! `sendmsg`'s control messages): a relay reads them off each datagram as
//! it receives it, so they travel with the datagram they belong to, in
//! order, with no bookkeeping. With `--pure` the planner read the control
//! messages and the socket's options are read from the program's socket.
//! A value equal to what this host gives a socket that set nothing is taken
//! as not set, so the server socket's own default applies, as it would to
//! a program on the server (a program that sets the default value
//! explicitly cannot be told from one that did not). A multicast
//! destination takes no socket-level TTL (the kernel uses the multicast
//! one there), and an IPv6 socket's IPv4-mapped destination takes nothing
//! through its relay (the loopback datagram crossed with IPv6 fields,
//! which an IPv4 send ignores).
//!
//! Incoming, the relay sets the fields the server's socket reported on its
//! datagram into the program's socket, and the local kernel reports them
//! to a program that enabled `IP_RECVTTL` and the like, with its own
//! control-buffer rules (`MSG_CTRUNC`).
//!
//! Must not decide which datagrams go where (the relays do).

use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use tokio::net::UdpSocket;

use crate::proto::{IpFields, SockAddr};
use crate::syscall::cmsg;

/// What this host gives a datagram whose socket set no field: the TTL
/// (`net.ipv4.ip_default_ttl`) and the IPv6 hop limits (`all` and `lo`
/// of `net.ipv6.conf.*.hop_limit`: the first is what an unconnected
/// socket reports, the second what loopback sends use). TOS and traffic
/// class are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Defaults {
    ttl: u8,
    hop_limits: [u8; 2],
}

/// Linux's own default for all three, where a setting cannot be read.
const KERNEL_DEFAULT: u8 = 64;

fn sysctl(path: &str) -> u8 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(KERNEL_DEFAULT)
}

impl Defaults {
    /// This network namespace's.
    pub(super) fn of_this_host() -> Self {
        Self {
            ttl: sysctl("/proc/sys/net/ipv4/ip_default_ttl"),
            hop_limits: [
                sysctl("/proc/sys/net/ipv6/conf/all/hop_limit"),
                sysctl("/proc/sys/net/ipv6/conf/lo/hop_limit"),
            ],
        }
    }

    fn is_default_ttl(self, path: cmsg::Path, ttl: u8) -> bool {
        match path {
            cmsg::Path::V4 => ttl == self.ttl,
            cmsg::Path::V6 => self.hop_limits.contains(&ttl),
        }
    }
}

fn is_mapped(addr: SockAddr) -> bool {
    matches!(addr, SockAddr::V6 { ip, .. } if Ipv6Addr::from(ip).to_ipv4_mapped().is_some())
}

fn is_multicast(addr: SockAddr) -> bool {
    SocketAddr::from(addr).ip().is_multicast()
}

/// The fields a datagram (to a `multicast` group or not) carries: those
/// its send set itself (`own`), else the socket's where they differ from
/// this host's defaults.
pub(super) fn carried(
    path: cmsg::Path,
    multicast: bool,
    own: IpFields,
    socket: IpFields,
    defaults: Defaults,
) -> IpFields {
    let socket_ttl = socket
        .ttl
        .filter(|&t| !multicast && !defaults.is_default_ttl(path, t));
    IpFields {
        ttl: own.ttl.or(socket_ttl),
        tos: own.tos.or(socket.tos.filter(|&t| t != 0)),
    }
}

/// The fields a datagram a relay of a socket of this family (`v6`)
/// received with (`seen`) carries to `peer`.
pub(super) fn from_relay(v6: bool, peer: SockAddr, seen: IpFields, defaults: Defaults) -> IpFields {
    if v6 && is_mapped(peer) {
        return IpFields::default();
    }
    let path = cmsg::Path::of(v6, false);
    carried(
        path,
        is_multicast(peer),
        IpFields::default(),
        seen,
        defaults,
    )
}

/// `--pure`: the fields a send on the program's socket (`socket`, rscq's
/// copy; `v6`: its family) to `peer` (`None`: a peer rscq does not know)
/// carries, its control messages having set `own`.
pub(super) fn for_pure_send(
    socket: BorrowedFd<'_>,
    v6: bool,
    peer: Option<SockAddr>,
    own: IpFields,
    defaults: Defaults,
) -> IpFields {
    use rustix::net::sockopt;
    let path = cmsg::Path::of(v6, peer.is_some_and(is_mapped));
    let options = match path {
        cmsg::Path::V4 => IpFields {
            ttl: sockopt::ip_ttl(socket)
                .ok()
                .and_then(|t| u8::try_from(t).ok()),
            tos: sockopt::ip_tos(socket).ok(),
        },
        cmsg::Path::V6 => IpFields {
            ttl: sockopt::ipv6_unicast_hops(socket).ok(),
            tos: sockopt::ipv6_tclass(socket)
                .ok()
                .and_then(|t| u8::try_from(t).ok()),
        },
    };
    carried(path, peer.is_some_and(is_multicast), own, options, defaults)
}

/// Has the kernel report the fields of each datagram a relay (of a socket
/// of this family) receives. A relay that cannot carries none.
pub(super) fn report_on(relay: &std::net::UdpSocket, v6: bool) {
    let on = 1i32.to_ne_bytes();
    let options = if v6 {
        [
            (libc::SOL_IPV6, libc::IPV6_RECVHOPLIMIT),
            (libc::SOL_IPV6, libc::IPV6_RECVTCLASS),
        ]
    } else {
        [
            (libc::SOL_IP, libc::IP_RECVTTL),
            (libc::SOL_IP, libc::IP_RECVTOS),
        ]
    };
    for (level, name) in options {
        let _ = crate::sys::net::set_option(relay.as_fd(), level, name, &on);
    }
}

/// One datagram the program sent to a relay: its bytes' length, the
/// program socket it came from, and the fields it came with.
pub(super) async fn receive(
    relay: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, IpFields)> {
    let mut name = [0u8; 128];
    let mut control = [0u8; 128];
    // As `UdpSocket::recv_from`: a pending error wakes the receive too.
    let interest = tokio::io::Interest::READABLE | tokio::io::Interest::ERROR;
    let got = relay
        .async_io(interest, || {
            crate::sys::net::recv_message(relay.as_fd(), &mut name, &mut *buf, &mut control, 0)
        })
        .await?;
    let from = crate::syscall::layout::decode_sockaddr(&name[..got.name])
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let seen = cmsg::received_fields(&control[..got.control]);
    Ok((got.payload, SocketAddr::from(from), seen))
}

/// Writes `data` into the program's socket at `to` from `relay` (of a
/// socket of this family), with the fields the server's socket received
/// it with. Fields the kernel refuses (a TTL of 0) are left out rather
/// than the datagram.
pub(super) async fn deliver(
    relay: &UdpSocket,
    v6: bool,
    to: SocketAddr,
    data: &[u8],
    ip: IpFields,
) -> std::io::Result<usize> {
    if !ip.is_empty() {
        let control = cmsg::encode_fields(cmsg::Path::of(v6, false), ip);
        let name = crate::syscall::layout::encode_sockaddr(&SockAddr::from(to));
        let sent = relay
            .async_io(tokio::io::Interest::WRITABLE, || {
                crate::sys::net::send_message(relay.as_fd(), data, &name, &control)
            })
            .await;
        if !matches!(&sent, Err(e) if e.raw_os_error() == Some(libc::EINVAL)) {
            return sent;
        }
    }
    relay.send_to(data, to).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: SockAddr = SockAddr::V4 {
        ip: [10, 0, 0, 2],
        port: 53,
    };

    fn f(ttl: Option<u8>, tos: Option<u8>) -> IpFields {
        IpFields { ttl, tos }
    }

    fn v6(ip: Ipv6Addr) -> SockAddr {
        SockAddr::V6 {
            ip: ip.octets(),
            port: 53,
            flowinfo: 0,
            scope_id: 0,
        }
    }

    const HOST: Defaults = Defaults {
        ttl: 64,
        hop_limits: [64, 255],
    };

    #[test]
    fn defaults_are_not_carried_and_own_values_always_are() {
        let v4 = cmsg::Path::V4;
        let none = IpFields::default();
        assert_eq!(carried(v4, false, none, f(Some(64), Some(0)), HOST), none);
        assert_eq!(
            carried(v4, false, none, f(Some(5), Some(0x28)), HOST),
            f(Some(5), Some(0x28))
        );
        // A send's own value wins, even the default one.
        assert_eq!(
            carried(v4, false, f(Some(64), None), f(Some(5), Some(4)), HOST),
            f(Some(64), Some(4))
        );
        // Either IPv6 default hop limit is a default.
        let p6 = cmsg::Path::V6;
        for hops in [64, 255] {
            assert_eq!(carried(p6, false, none, f(Some(hops), None), HOST), none);
        }
        assert_eq!(
            carried(p6, false, none, f(Some(7), None), HOST),
            f(Some(7), None)
        );
    }

    #[test]
    fn multicast_takes_no_socket_ttl_but_its_own() {
        let group = SockAddr::V4 {
            ip: [239, 1, 2, 3],
            port: 5000,
        };
        assert!(is_multicast(group) && !is_multicast(WEB));
        let v4 = cmsg::Path::V4;
        assert_eq!(
            carried(v4, true, IpFields::default(), f(Some(5), Some(8)), HOST),
            f(None, Some(8))
        );
        assert_eq!(
            carried(v4, true, f(Some(3), None), f(Some(5), None), HOST),
            f(Some(3), None)
        );
        assert_eq!(
            from_relay(false, group, f(Some(5), Some(8)), HOST),
            f(None, Some(8))
        );
    }

    #[test]
    fn relays_carry_what_they_saw_except_to_mapped_peers() {
        let seen = f(Some(5), Some(0x10));
        assert_eq!(from_relay(false, WEB, seen, HOST), seen);
        let web6 = v6("fd00::2".parse().unwrap());
        assert_eq!(from_relay(true, web6, seen, HOST), seen);
        let mapped = v6(std::net::Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped());
        assert_eq!(from_relay(true, mapped, seen, HOST), IpFields::default());
    }

    #[test]
    fn a_pure_send_reads_the_socket_options() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let none = IpFields::default();
        let host = Defaults::of_this_host();
        assert_eq!(
            for_pure_send(socket.as_fd(), false, Some(WEB), none, host),
            none
        );
        rustix::net::sockopt::set_ip_ttl(&socket, 9).expect("ttl");
        rustix::net::sockopt::set_ip_tos(&socket, 0x28).expect("tos");
        assert_eq!(
            for_pure_send(socket.as_fd(), false, Some(WEB), f(None, Some(4)), host),
            f(Some(9), Some(4))
        );
    }

    #[tokio::test]
    async fn fields_cross_a_relay_both_ways() {
        let relay = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        report_on(&relay, false);
        relay.set_nonblocking(true).expect("nonblocking");
        let relay = UdpSocket::from_std(relay).expect("tokio");
        let program = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        report_on(&program, false);
        program.set_nonblocking(true).expect("nonblocking");
        let program = UdpSocket::from_std(program).expect("tokio");
        rustix::net::sockopt::set_ip_ttl(&program, 5).expect("ttl");
        let to_relay = relay.local_addr().expect("addr");
        program.send_to(b"out", to_relay).await.expect("send");
        let mut buf = [0u8; 16];
        let (n, from, seen) = receive(&relay, &mut buf).await.expect("receive");
        assert_eq!(
            (&buf[..n], from, seen),
            (
                &b"out"[..],
                program.local_addr().expect("addr"),
                f(Some(5), Some(0))
            )
        );
        let to_program = program.local_addr().expect("addr");
        deliver(&relay, false, to_program, b"in", f(Some(3), Some(0x10)))
            .await
            .expect("deliver");
        let (n, _, seen) = receive(&program, &mut buf).await.expect("receive");
        assert_eq!((&buf[..n], seen), (&b"in"[..], f(Some(3), Some(0x10))));
    }
}
