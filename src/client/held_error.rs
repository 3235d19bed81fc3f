//! The ICMP message that makes the local kernel fail a held connect (see
//! [`super::hold`]) with the server's errno, so that the program's first
//! `read`, `write` or `connect` on the socket gets that errno, as after a
//! connect of its own, and not the ECONNRESET a reset gives.
//!
//! A TCP socket that is connecting (SYN-SENT, or SYN-RECEIVED in a
//! simultaneous open) and gets an ICMP destination-unreachable error about
//! its own SYN fails at once with the errno the kernel maps that message
//! to (`tcp_v4_err`, `tcp_v6_err`). The message must quote the socket's
//! addresses and the sequence number of its SYN, which rscq reads off the
//! SYN-ACK the socket sends when a crossing SYN reaches it.
//!
//! Pure: which message gives which errno, the message's bytes, and the
//! reading of a captured segment. Sending and capturing (raw sockets,
//! `CAP_NET_RAW`) are `super::hold`'s.

use std::net::{IpAddr, SocketAddr};

use super::udp::icmp::{ICMP_DEST_UNREACH, ICMPV6_DEST_UNREACH, checksum};
use crate::errno::Errno;

const TCP: u8 = 6;

/// TCP's SYN and ACK flags, in the header's 14th byte.
const SYN_ACK: u8 = 0x12;

/// The ICMP type and code the kernel turns into `errno` for a connecting
/// TCP socket of the family `v6` (`icmp_err_convert`,
/// `icmpv6_err_convert`); `None` for an errno no message gives
/// (ETIMEDOUT, ECONNRESET, ...).
pub fn message_for(errno: Errno, v6: bool) -> Option<(u8, u8)> {
    let code = match (errno.0, v6) {
        (libc::ENETUNREACH, _) => 0,
        (libc::EHOSTUNREACH, false) => 1,
        (libc::ENOPROTOOPT, false) => 2,
        (libc::ECONNREFUSED, false) => 3,
        (libc::EOPNOTSUPP, false) => 5,
        (libc::EHOSTDOWN, false) => 7,
        (libc::ENONET, false) => 8,
        (libc::EACCES, true) => 1,
        (libc::EHOSTUNREACH, true) => 3,
        (libc::ECONNREFUSED, true) => 4,
        _ => return None,
    };
    Some((
        if v6 {
            ICMPV6_DEST_UNREACH
        } else {
            ICMP_DEST_UNREACH
        },
        code,
    ))
}

/// The ICMP message (the kernel adds the IP header, and an ICMPv6
/// checksum) `kind`/`code` about the SYN with sequence number `seq` from
/// `local` to `peer`, which are of one family.
pub fn message(
    kind: u8,
    code: u8,
    local: SocketAddr,
    peer: SocketAddr,
    seq: u32,
) -> Option<Vec<u8>> {
    let mut m = vec![kind, code, 0, 0, 0, 0, 0, 0];
    match (local.ip(), peer.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            // The SYN's IP header as the kernel checks it: addresses and
            // protocol (its length is that of a bare TCP header).
            let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, TCP, 0, 0];
            ip.extend_from_slice(&src.octets());
            ip.extend_from_slice(&dst.octets());
            let sum = checksum(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            m.extend_from_slice(&ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            m.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, TCP, 64]);
            m.extend_from_slice(&src.octets());
            m.extend_from_slice(&dst.octets());
        }
        _ => return None,
    }
    // The first eight bytes of the TCP header: ports and sequence number.
    m.extend_from_slice(&local.port().to_be_bytes());
    m.extend_from_slice(&peer.port().to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    if local.is_ipv4() {
        let sum = checksum(&m);
        m[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    Some(m)
}

/// The sequence number of a SYN-ACK from port `from` to port `to` in
/// `segment`, a packet a raw TCP socket received: with its IPv4 header
/// (`v6` false), or the bare TCP header (an IPv6 raw socket's).
pub fn syn_ack_seq(segment: &[u8], v6: bool, from: u16, to: u16) -> Option<u32> {
    let tcp = if v6 {
        segment
    } else {
        let ihl = usize::from(segment.first()? & 0x0f) * 4;
        segment.get(ihl..)?
    };
    let header = tcp.get(..14)?;
    let sport = u16::from_be_bytes([header[0], header[1]]);
    let dport = u16::from_be_bytes([header[2], header[3]]);
    (sport == from && dport == to && header[13] & SYN_ACK == SYN_ACK)
        .then(|| u32::from_be_bytes([header[4], header[5], header[6], header[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_errno_has_the_message_the_kernel_maps_to_it() {
        let refused = Errno(libc::ECONNREFUSED);
        assert_eq!(message_for(refused, false), Some((3, 3)));
        assert_eq!(message_for(refused, true), Some((1, 4)));
        assert_eq!(message_for(Errno(libc::EHOSTUNREACH), false), Some((3, 1)));
        assert_eq!(message_for(Errno(libc::EHOSTUNREACH), true), Some((1, 3)));
        assert_eq!(message_for(Errno(libc::ENETUNREACH), true), Some((1, 0)));
        assert_eq!(message_for(Errno(libc::ETIMEDOUT), false), None);
        assert_eq!(message_for(Errno(libc::EACCES), false), None);
    }

    #[test]
    fn an_ipv4_message_quotes_the_syn_with_valid_checksums() {
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let hold: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let m = message(3, 3, local, hold, 0xdead_beef).unwrap();
        assert_eq!(m.len(), 8 + 20 + 8);
        assert_eq!(checksum(&m), 0, "ICMP checksum");
        assert_eq!(checksum(&m[8..28]), 0, "quoted IP header checksum");
        assert_eq!(m[8 + 9], TCP);
        assert_eq!(&m[28..30], &40000u16.to_be_bytes());
        assert_eq!(&m[30..32], &5000u16.to_be_bytes());
        assert_eq!(&m[32..36], &0xdead_beefu32.to_be_bytes());
    }

    #[test]
    fn an_ipv6_message_quotes_the_syn() {
        let local: SocketAddr = "[::1]:40000".parse().unwrap();
        let hold: SocketAddr = "[::1]:5000".parse().unwrap();
        let m = message(1, 4, local, hold, 7).unwrap();
        assert_eq!(m.len(), 8 + 40 + 8);
        assert_eq!(m[8] >> 4, 6);
        assert_eq!(m[8 + 6], TCP);
        assert_eq!(&m[48..56], &[0x9c, 0x40, 0x13, 0x88, 0, 0, 0, 7]);
        assert!(message(1, 4, local, "127.0.0.1:1".parse().unwrap(), 7).is_none());
    }

    #[test]
    fn the_syn_ack_is_found_by_its_ports_and_flags() {
        let mut tcp = vec![0u8; 20];
        tcp[..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&99u32.to_be_bytes());
        tcp[13] = SYN_ACK;
        assert_eq!(syn_ack_seq(&tcp, true, 40000, 5000), Some(99));
        assert_eq!(syn_ack_seq(&tcp, true, 40001, 5000), None);
        let mut ip = vec![0x45; 1];
        ip.resize(20, 0);
        ip.extend_from_slice(&tcp);
        assert_eq!(syn_ack_seq(&ip, false, 40000, 5000), Some(99));
        // A bare ACK, or a cut header, is not it.
        ip[20 + 13] = 0x10;
        assert_eq!(syn_ack_seq(&ip, false, 40000, 5000), None);
        assert_eq!(syn_ack_seq(&ip[..25], false, 40000, 5000), None);
    }
}
