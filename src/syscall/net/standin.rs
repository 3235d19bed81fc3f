//! Datagram sockets under `--net` that rscq carries as UDP ones: ICMP echo
//! ("ping") sockets, `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)` and
//! `socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)`, and UDP-Lite sockets,
//! `socket(AF_INET or AF_INET6, SOCK_DGRAM, IPPROTO_UDPLITE)`.
//!
//! A relay's loopback cannot carry their datagrams: the local kernel would
//! answer an echo sent to a relay itself, and a UDP-Lite datagram to a
//! relay's UDP socket is never delivered. So the program's socket is made
//! a UDP socket at its `socket` call (a stand-in), and the UDP machinery
//! carries its datagrams unchanged: its server socket is of the program's
//! kind ([`DatagramKind`]), opened with the server's rights at the first
//! `bind`, `connect` or send. What leaves the server's host is an echo
//! request or a UDP-Lite datagram; what comes back enters the program's
//! socket from the peer's relay. Receives, `poll`, timeouts and signals
//! then behave as on any local socket. A ping socket's echo id is its
//! server socket's, which `getsockname` reports as its port, as for a
//! native ping socket.
//!
//! Pure: decides the `socket` call's plan only; the tracer marks the fd it
//! returned ([`AfterNative::DatagramStandIn`]) and the client opens the
//! server socket of that kind.

use crate::proto::DatagramKind;
use crate::syscall::plan::{AfterNative, Plan, Scratch};

/// The `type` bits that name the socket type (the rest are
/// `SOCK_NONBLOCK` and `SOCK_CLOEXEC`).
const TYPE_MASK: i32 = 0xf;

/// What `socket(domain, ty, protocol)` makes that rscq carries with a UDP
/// stand-in; `None` for a UDP socket (carried as it is) and for every
/// other socket.
pub fn stand_in_kind(domain: i32, ty: i32, protocol: i32) -> Option<DatagramKind> {
    if ty & TYPE_MASK != libc::SOCK_DGRAM {
        return None;
    }
    match (domain, protocol) {
        (libc::AF_INET, libc::IPPROTO_ICMP) | (libc::AF_INET6, libc::IPPROTO_ICMPV6) => {
            Some(DatagramKind::Ping)
        }
        (libc::AF_INET | libc::AF_INET6, libc::IPPROTO_UDPLITE) => Some(DatagramKind::UdpLite),
        _ => None,
    }
}

/// The plan for `socket(domain, ty, protocol)` with `--net`: an ICMP echo
/// or UDP-Lite socket is made a UDP socket (its protocol argument 0) and
/// marked as one standing for its kind; `None` for any other socket.
pub fn plan_socket(domain: i32, ty: i32, protocol: i32) -> Option<Plan> {
    stand_in_kind(domain, ty, protocol).map(|kind| {
        Plan::NativeScratch(Box::new(Scratch {
            scratch: Vec::new(),
            relocs: Vec::new(),
            args: Vec::new(),
            values: vec![(2, 0)],
            after: AfterNative::DatagramStandIn(kind),
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_datagram_echo_sockets_of_the_matching_family_are_ping_sockets() {
        let ping = Some(DatagramKind::Ping);
        assert_eq!(
            stand_in_kind(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
            ping
        );
        assert_eq!(
            stand_in_kind(
                libc::AF_INET6,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::IPPROTO_ICMPV6
            ),
            ping
        );
        // Raw sockets stay raw (and refused at their sends).
        assert_eq!(
            stand_in_kind(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
            None
        );
        // The kernel refuses a family's other ICMP itself.
        assert_eq!(
            stand_in_kind(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
            None
        );
        assert_eq!(
            stand_in_kind(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6),
            None
        );
        assert_eq!(stand_in_kind(libc::AF_INET, libc::SOCK_DGRAM, 0), None);
        assert_eq!(
            stand_in_kind(libc::AF_UNIX, libc::SOCK_DGRAM, libc::IPPROTO_ICMP),
            None
        );
    }

    #[test]
    fn udplite_datagram_sockets_of_either_family_are_carried() {
        let lite = Some(DatagramKind::UdpLite);
        for domain in [libc::AF_INET, libc::AF_INET6] {
            assert_eq!(
                stand_in_kind(domain, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE),
                lite
            );
            assert_eq!(
                stand_in_kind(
                    domain,
                    libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                    libc::IPPROTO_UDPLITE
                ),
                lite
            );
        }
        // UDP-Lite is a datagram protocol only; the kernel refuses the rest.
        assert_eq!(
            stand_in_kind(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_UDPLITE),
            None
        );
        assert_eq!(
            stand_in_kind(libc::AF_UNIX, libc::SOCK_DGRAM, libc::IPPROTO_UDPLITE),
            None
        );
    }

    #[test]
    fn a_stand_in_socket_is_made_udp_and_marked_with_its_kind() {
        for (domain, protocol, kind) in [
            (libc::AF_INET, libc::IPPROTO_ICMP, DatagramKind::Ping),
            (libc::AF_INET6, libc::IPPROTO_UDPLITE, DatagramKind::UdpLite),
        ] {
            let Some(Plan::NativeScratch(s)) = plan_socket(domain, libc::SOCK_DGRAM, protocol)
            else {
                panic!("not rewritten");
            };
            assert_eq!(s.values, vec![(2, 0)]);
            assert_eq!(s.after, AfterNative::DatagramStandIn(kind));
            assert!(s.scratch.is_empty() && s.args.is_empty());
        }
        assert_eq!(
            plan_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
            None
        );
    }
}
