//! ICMP echo ("ping") sockets under `--net`: `socket(AF_INET, SOCK_DGRAM,
//! IPPROTO_ICMP)` and `socket(AF_INET6, SOCK_DGRAM, IPPROTO_ICMPV6)`.
//!
//! Such a socket's datagrams are ICMP echo messages (the kernel sets the
//! echo id to the socket's "port" and the checksum), and a relay's
//! loopback cannot carry them (the local kernel would answer an echo to a
//! relay itself). So the program's socket is made a UDP socket at its
//! `socket` call, and the UDP machinery carries its datagrams unchanged:
//! its server socket is a ping socket, opened with the server's rights at
//! the first `bind`, `connect` or send, whose echo requests leave from the
//! server's host and whose echo replies (with the server socket's id,
//! which `getsockname` reports as its port, as for a native ping socket)
//! come back into the program's socket from the peer's relay. Receives,
//! `poll`, timeouts and signals then behave as on any local socket.
//!
//! Pure: decides the `socket` call's plan only; the tracer marks the fd it
//! returned ([`AfterNative::PingSocket`]) and the client opens the ping
//! socket on the server.

use crate::syscall::plan::{AfterNative, Plan, Scratch};

/// The `type` bits that name the socket type (the rest are
/// `SOCK_NONBLOCK` and `SOCK_CLOEXEC`).
const TYPE_MASK: i32 = 0xf;

/// Whether `socket(domain, ty, protocol)` makes an ICMP echo socket.
pub fn is_ping_socket(domain: i32, ty: i32, protocol: i32) -> bool {
    ty & TYPE_MASK == libc::SOCK_DGRAM
        && matches!(
            (domain, protocol),
            (libc::AF_INET, libc::IPPROTO_ICMP) | (libc::AF_INET6, libc::IPPROTO_ICMPV6)
        )
}

/// The plan for `socket(domain, ty, protocol)` with `--net`: an ICMP echo
/// socket is made a UDP socket (its protocol argument 0) and marked as one
/// standing for a ping socket; `None` for any other socket.
pub fn plan_socket(domain: i32, ty: i32, protocol: i32) -> Option<Plan> {
    is_ping_socket(domain, ty, protocol).then(|| {
        Plan::NativeScratch(Box::new(Scratch {
            scratch: Vec::new(),
            relocs: Vec::new(),
            args: Vec::new(),
            values: vec![(2, 0)],
            after: AfterNative::PingSocket,
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_datagram_echo_sockets_of_the_matching_family_are_ping_sockets() {
        assert!(is_ping_socket(
            libc::AF_INET,
            libc::SOCK_DGRAM,
            libc::IPPROTO_ICMP
        ));
        assert!(is_ping_socket(
            libc::AF_INET6,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6
        ));
        // Raw sockets stay raw (and refused at their sends).
        assert!(!is_ping_socket(
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP
        ));
        // The kernel refuses a family's other ICMP itself.
        assert!(!is_ping_socket(
            libc::AF_INET6,
            libc::SOCK_DGRAM,
            libc::IPPROTO_ICMP
        ));
        assert!(!is_ping_socket(
            libc::AF_INET,
            libc::SOCK_DGRAM,
            libc::IPPROTO_ICMPV6
        ));
        assert!(!is_ping_socket(libc::AF_INET, libc::SOCK_DGRAM, 0));
        assert!(!is_ping_socket(
            libc::AF_UNIX,
            libc::SOCK_DGRAM,
            libc::IPPROTO_ICMP
        ));
    }

    #[test]
    fn a_ping_socket_is_made_udp_and_marked() {
        let Some(Plan::NativeScratch(s)) =
            plan_socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_ICMP)
        else {
            panic!("not rewritten");
        };
        assert_eq!(s.values, vec![(2, 0)]);
        assert_eq!(s.after, AfterNative::PingSocket);
        assert!(s.scratch.is_empty() && s.args.is_empty());
        assert_eq!(
            plan_socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP),
            None
        );
    }
}
