//! ICMP errors of remote UDP sockets, passed on to the program's socket by
//! the local kernel itself.
//!
//! The program's socket is a loopback socket that talks to a relay
//! standing for the remote peer. When the server's socket gets an ICMP
//! error about a datagram to that peer, rscq sends the same ICMP message
//! over loopback through a raw socket, quoting a datagram from the
//! program's socket to the peer's relay. The kernel looks the quoted
//! datagram up exactly as for a real error (by the full 4-tuple for a
//! connected socket) and applies its own rules: a connected socket gets
//! the error (`POLLERR`, the next call fails once), one connected to
//! another peer does not, an unconnected socket only with `IP_RECVERR` (on
//! its error queue). No datagram is touched, and no relay changes.
//!
//! The message comes from the address the original one came from (its
//! `SO_EE_OFFENDER`), as rscq writes the IP header itself.
//!
//! Raw sockets need `CAP_NET_RAW`; without it the error is not passed on.
//!
//! Must not touch datagrams or relays; it only injects ICMP errors, and only
//! when a raw socket may be opened.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::errno::Errno;
use crate::proto::{IcmpError, SockAddr};

pub(in crate::client) const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;
const ICMP_PARAMETERPROB: u8 = 12;
pub(in crate::client) const ICMPV6_DEST_UNREACH: u8 = 1;
const ICMPV6_TIME_EXCEED: u8 = 3;
const ICMPV6_PARAMPROB: u8 = 4;
const ICMPV6_PORT_UNREACH: u8 = 4;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;

/// The ICMP type and code to send to a socket of the family `to_v6`, for
/// an error the server's socket got: the same message, or across families
/// the one the kernel turns into the same error. `None` for messages that
/// are not errors about a datagram, for path-MTU messages (they would
/// change the loopback route's MTU) and for those with no counterpart.
pub fn translate(icmp: IcmpError, to_v6: bool) -> Option<(u8, u8)> {
    let IcmpError { v6, kind, code } = icmp;
    match (v6, to_v6) {
        (false, false) => match kind {
            ICMP_DEST_UNREACH if code == ICMP_FRAG_NEEDED => None,
            ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAMETERPROB => Some((kind, code)),
            _ => None,
        },
        (true, true) => matches!(
            kind,
            ICMPV6_DEST_UNREACH | ICMPV6_TIME_EXCEED | ICMPV6_PARAMPROB
        )
        .then_some((kind, code)),
        // An IPv6 socket's IPv4-mapped peer: the IPv4 messages whose
        // ICMPv6 counterpart gives the same error with the same weight.
        (false, true) => match (kind, code) {
            (ICMP_DEST_UNREACH, 0) => Some((ICMPV6_DEST_UNREACH, 0)),
            (ICMP_DEST_UNREACH, 1) => Some((ICMPV6_DEST_UNREACH, 3)),
            (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH) => {
                Some((ICMPV6_DEST_UNREACH, ICMPV6_PORT_UNREACH))
            }
            (ICMP_TIME_EXCEEDED, c) => Some((ICMPV6_TIME_EXCEED, c)),
            (ICMP_PARAMETERPROB, _) => Some((ICMPV6_PARAMPROB, 0)),
            _ => None,
        },
        (true, false) => None,
    }
}

/// `--pure`: the ICMP message behind an error the server's receive
/// returned, when only one message gives it (port unreachable).
pub fn behind(e: Errno) -> Option<IcmpError> {
    (e == Errno(libc::ECONNREFUSED)).then_some(IcmpError {
        v6: false,
        kind: ICMP_DEST_UNREACH,
        code: ICMP_PORT_UNREACH,
    })
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub(in crate::client) fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

/// The most of a datagram's payload a message quotes: what keeps an
/// ICMPv4 message within the 576 bytes every host accepts, an ICMPv6 one
/// within the 1280 of the minimum MTU (the server's kernel quotes as much).
const MAX_QUOTED_V4: usize = 576 - 20 - 8 - 20 - 8;
const MAX_QUOTED_V6: usize = 1280 - 40 - 8 - 40 - 8;

/// The ICMP message (without the outer IP header, which the kernel adds)
/// reporting `kind`/`code` about a datagram from `from` to `to`, which
/// are of one family, quoting `quoted` of its payload. An ICMPv6 checksum
/// is left to the kernel.
pub fn message(
    kind: u8,
    code: u8,
    from: SocketAddr,
    to: SocketAddr,
    quoted: &[u8],
) -> Option<Vec<u8>> {
    let most = if from.is_ipv6() {
        MAX_QUOTED_V6
    } else {
        MAX_QUOTED_V4
    };
    let quoted = &quoted[..quoted.len().min(most)];
    let mut m = vec![kind, code, 0, 0, 0, 0, 0, 0];
    let udp_len = u16::try_from(8 + quoted.len()).ok()?;
    match (from.ip(), to.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&(20 + udp_len).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, UDP, 0, 0]);
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            m.extend_from_slice(&ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            m.extend_from_slice(&[0x60, 0, 0, 0]);
            m.extend_from_slice(&udp_len.to_be_bytes());
            m.extend_from_slice(&[UDP, 64]);
            m.extend_from_slice(&src.octets());
            m.extend_from_slice(&dst.octets());
        }
        _ => return None,
    }
    m.extend_from_slice(&from.port().to_be_bytes());
    m.extend_from_slice(&to.port().to_be_bytes());
    m.extend_from_slice(&udp_len.to_be_bytes());
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(quoted);
    if from.is_ipv4() {
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    Some(m)
}

/// Where the message comes from, for a socket of the family `v6`: the
/// sender of the original message, else loopback.
pub fn sender(offender: Option<SockAddr>, v6: bool) -> IpAddr {
    let ip = offender.map(|a| SocketAddr::from(a).ip());
    match (ip, v6) {
        (Some(IpAddr::V4(ip)), false) => IpAddr::V4(ip),
        (Some(IpAddr::V6(ip)), false) => ip
            .to_ipv4_mapped()
            .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4),
        (Some(IpAddr::V6(ip)), true) => IpAddr::V6(ip),
        (Some(IpAddr::V4(ip)), true) => IpAddr::V6(ip.to_ipv6_mapped()),
        (None, false) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (None, true) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// The whole packet carrying `message` from `from` to loopback, IP header
/// first (the kernel fills in an IPv4 header's length and checksum).
pub fn packet(message: &[u8], from: IpAddr) -> Option<Vec<u8>> {
    let len = u16::try_from(message.len()).ok()?;
    let mut p = Vec::with_capacity(40 + message.len());
    match from {
        IpAddr::V4(src) => {
            p.extend_from_slice(&[0x45, 0]);
            p.extend_from_slice(&(20 + len).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0, 64, ICMP, 0, 0]);
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
            p.extend_from_slice(message);
        }
        IpAddr::V6(src) => {
            let dst = Ipv6Addr::LOCALHOST;
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&len.to_be_bytes());
            p.extend_from_slice(&[ICMPV6, 64]);
            p.extend_from_slice(&src.octets());
            p.extend_from_slice(&dst.octets());
            let mut icmp = message.to_vec();
            icmp[2..4].copy_from_slice(&[0, 0]);
            // The checksum covers a pseudo-header: addresses, length and
            // next header.
            let mut pseudo = Vec::with_capacity(40 + icmp.len());
            pseudo.extend_from_slice(&src.octets());
            pseudo.extend_from_slice(&dst.octets());
            pseudo.extend_from_slice(&u32::from(len).to_be_bytes());
            pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
            pseudo.extend_from_slice(&icmp);
            let sum = checksum(&pseudo);
            icmp[2..4].copy_from_slice(&sum.to_be_bytes());
            p.extend_from_slice(&icmp);
        }
    }
    Some(p)
}

/// rscq's raw sockets (`IPPROTO_RAW`: they only send, IP header
/// included), one per family, opened on first use.
#[derive(Debug, Default)]
pub struct Injector {
    v4: OnceLock<Option<OwnedFd>>,
    v6: OnceLock<Option<OwnedFd>>,
    warned: AtomicBool,
}

impl Injector {
    fn open(&self, v6: bool) -> Option<OwnedFd> {
        use rustix::net::{AddressFamily, SocketFlags, SocketType, ipproto, socket_with};
        let family = if v6 {
            AddressFamily::INET6
        } else {
            AddressFamily::INET
        };
        match socket_with(
            family,
            SocketType::RAW,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            Some(ipproto::RAW),
        ) {
            Ok(fd) => Some(fd),
            Err(e) => {
                if !self.warned.swap(true, Ordering::Relaxed) {
                    eprintln!(
                        "rscq: no raw ICMP socket ({e}; it needs CAP_NET_RAW): ICMP errors \
                         of remote UDP sockets are not passed on"
                    );
                }
                None
            }
        }
    }

    /// Makes the local kernel receive the ICMP error `icmp` about a
    /// datagram from the program's socket at `local` to the relay at
    /// `relay`, quoting `quoted` of its payload, from `offender`. Whether
    /// it did (false: no such message for this family, or no raw socket).
    pub fn inject(
        &self,
        local: SocketAddr,
        relay: SocketAddr,
        icmp: IcmpError,
        quoted: &[u8],
        offender: Option<SockAddr>,
    ) -> bool {
        let v6 = local.is_ipv6();
        let Some((kind, code)) = translate(icmp, v6) else {
            return false;
        };
        let Some(bytes) = message(kind, code, local, relay, quoted)
            .and_then(|m| packet(&m, sender(offender, v6)))
        else {
            return false;
        };
        let slot = if v6 { &self.v6 } else { &self.v4 };
        let Some(fd) = slot.get_or_init(|| self.open(v6)) else {
            return false;
        };
        let to: SocketAddr = if v6 {
            (Ipv6Addr::LOCALHOST, 0).into()
        } else {
            (Ipv4Addr::LOCALHOST, 0).into()
        };
        rustix::net::sendto(fd, &bytes, rustix::net::SendFlags::empty(), &to).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(v6: bool, kind: u8, code: u8) -> IcmpError {
        IcmpError { v6, kind, code }
    }

    #[test]
    fn errors_keep_their_meaning_and_path_mtu_never_passes() {
        assert_eq!(translate(err(false, 3, 3), false), Some((3, 3)));
        assert_eq!(translate(err(false, 3, 13), false), Some((3, 13)));
        assert_eq!(translate(err(false, 3, 4), false), None, "frag needed");
        assert_eq!(translate(err(false, 5, 1), false), None, "redirect");
        assert_eq!(translate(err(true, 1, 4), true), Some((1, 4)));
        assert_eq!(translate(err(true, 2, 0), true), None, "packet too big");
        assert_eq!(translate(err(true, 128, 0), true), None, "echo request");
        // An IPv6 socket's IPv4-mapped peer.
        assert_eq!(translate(err(false, 3, 3), true), Some((1, 4)));
        assert_eq!(translate(err(false, 11, 0), true), Some((3, 0)));
        assert_eq!(translate(err(false, 3, 2), true), None, "no counterpart");
        assert_eq!(translate(err(true, 1, 4), false), None);
    }

    #[test]
    fn only_a_refused_receive_has_one_message_behind_it() {
        assert_eq!(behind(Errno(libc::ECONNREFUSED)), Some(err(false, 3, 3)));
        assert_eq!(behind(Errno(libc::EHOSTUNREACH)), None);
    }

    #[test]
    fn ipv4_message_quotes_the_datagram_with_valid_checksums() {
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let to: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let m = message(3, 3, from, to, b"abc").unwrap();
        assert_eq!(m.len(), 8 + 20 + 8 + 3);
        assert_eq!(&m[..2], &[3, 3]);
        assert_eq!(checksum(&m), 0, "ICMP checksum");
        assert_eq!(checksum(&m[8..28]), 0, "quoted IP header checksum");
        assert_eq!(m[8 + 9], UDP);
        assert_eq!(&m[8 + 12..8 + 16], &[127, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([m[28], m[29]]), 40000);
        assert_eq!(u16::from_be_bytes([m[30], m[31]]), 50000);
        assert_eq!(u16::from_be_bytes([m[32], m[33]]), 8 + 3, "UDP length");
        assert_eq!(&m[36..], b"abc");
        let long = message(3, 3, from, to, &[7; 2000]).unwrap();
        assert_eq!(long.len(), 576 - 20, "an ICMPv4 message fits 576 bytes");
    }

    #[test]
    fn the_message_comes_from_the_original_sender_in_the_socket_family() {
        let web = SockAddr::V4 {
            ip: [10, 0, 0, 2],
            port: 0,
        };
        let web_v4: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(sender(Some(web), false), web_v4);
        assert_eq!(
            sender(Some(web), true),
            "::ffff:10.0.0.2".parse::<IpAddr>().unwrap()
        );
        let mapped = crate::syscall::udp::destination(true, web).unwrap();
        assert_eq!(sender(Some(mapped), false), web_v4);
        assert_eq!(sender(None, false), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(sender(None, true), IpAddr::V6(Ipv6Addr::LOCALHOST));
    }

    #[test]
    fn packets_carry_the_message_with_valid_checksums() {
        let from: SocketAddr = "[::1]:40000".parse().unwrap();
        let to: SocketAddr = "[::1]:50000".parse().unwrap();
        let m = message(1, 4, from, to, b"q").unwrap();
        let src: Ipv6Addr = "fd00::2".parse().unwrap();
        let p = packet(&m, IpAddr::V6(src)).unwrap();
        assert_eq!(p.len(), 40 + m.len());
        assert_eq!(p[6], ICMPV6);
        assert_eq!(&p[8..24], &src.octets());
        assert_eq!(&p[24..40], &Ipv6Addr::LOCALHOST.octets());
        let mut pseudo = p[8..40].to_vec();
        pseudo.extend_from_slice(&u32::try_from(m.len()).unwrap().to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, ICMPV6]);
        pseudo.extend_from_slice(&p[40..]);
        assert_eq!(checksum(&pseudo), 0, "ICMPv6 checksum");

        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let to: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let m = message(3, 3, from, to, b"q").unwrap();
        let p = packet(&m, "10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(p[9], ICMP);
        assert_eq!(&p[12..16], &[10, 0, 0, 2]);
        assert_eq!(&p[16..20], &[127, 0, 0, 1]);
        assert_eq!(&p[20..], &m[..]);
    }

    #[test]
    fn ipv6_message_quotes_the_datagram() {
        let from: SocketAddr = "[::1]:40000".parse().unwrap();
        let to: SocketAddr = "[::1]:50000".parse().unwrap();
        let m = message(1, 4, from, to, &[]).unwrap();
        assert_eq!(m.len(), 8 + 40 + 8);
        let long = message(1, 4, from, to, &[7; 2000]).unwrap();
        assert_eq!(long.len(), 1280 - 40, "an ICMPv6 message fits 1280 bytes");
        assert_eq!(m[8] >> 4, 6);
        assert_eq!(m[8 + 6], UDP);
        assert_eq!(u16::from_be_bytes([m[48], m[49]]), 40000);
        assert_eq!(u16::from_be_bytes([m[50], m[51]]), 50000);
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(message(1, 4, from, v4, &[]), None);
    }
}
