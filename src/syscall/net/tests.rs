//! The TCP, socket-option, `--pure` and AF_UNIX planners on plain values,
//! through [`plan`] and a [`FakeTracee`]. Tests only (UDP's are in
//! `udp/tests.rs`).

use crate::errno::Errno;
use crate::proto::{Request, SockAddr, SockOption};
use crate::syscall::layout::encode_sockaddr;
use crate::syscall::plan::{AfterNative, Forwarding, Plan, PureWait, Then, plan};
use crate::syscall::sockets::RemoteSocket;
use crate::syscall::testutil::{FakeTracee, mounted, net};

const ADDR: u64 = 0x1000;
const LEN: u64 = 0x2000;
const BUF: u64 = 0x3000;

const WEB: SockAddr = SockAddr::V4 {
    ip: [10, 2, 0, 5],
    port: 80,
};

fn v6(ip: [u8; 16], port: u16) -> SockAddr {
    SockAddr::V6 {
        ip,
        port,
        flowinfo: 0,
        scope_id: 0,
    }
}

fn fail(e: i32) -> Plan {
    Plan::Return(-i64::from(e))
}

/// fd 3 an IPv4 TCP socket, 4 an IPv6 TCP one, 5 an AF_UNIX stream one;
/// `WEB` at `ADDR`.
fn program() -> FakeTracee {
    let mut t = FakeTracee::new();
    t.sockets.insert(3, (libc::AF_INET, libc::SOCK_STREAM));
    t.sockets.insert(4, (libc::AF_INET6, libc::SOCK_STREAM));
    t.sockets.insert(5, (libc::AF_UNIX, libc::SOCK_STREAM));
    t.put(ADDR, &encode_sockaddr(&WEB));
    t
}

/// A remote TCP connection on `fd`, with a `--pure` pump.
fn connected(t: &mut FakeTracee, fd: i32, pump: Option<u64>) {
    t.remote_sockets.insert(
        fd,
        RemoteSocket {
            local: SockAddr::V4 {
                ip: [10, 2, 0, 9],
                port: 4000,
            },
            peer: Some(WEB),
            pure_pump: pump,
            udp: None,
        },
    );
}

#[test]
fn connect_and_bind_of_a_tcp_socket_go_to_the_server() {
    let mut t = program();
    let a = [3, ADDR, 16, 0, 0, 0];
    assert_eq!(
        plan(libc::SYS_connect, a, &net(false), &mut t),
        Plan::connect_tcp(3, WEB)
    );
    assert_eq!(
        plan(libc::SYS_bind, a, &net(false), &mut t),
        Plan::bind_tcp(3, WEB)
    );
    // An AF_UNIX socket (no mount) and an unreadable address.
    assert_eq!(
        plan(
            libc::SYS_connect,
            [5, ADDR, 16, 0, 0, 0],
            &net(false),
            &mut t
        ),
        Plan::Native
    );
    assert_eq!(
        plan(
            libc::SYS_connect,
            [3, 0xdead, 16, 0, 0, 0],
            &net(false),
            &mut t
        ),
        fail(libc::EFAULT)
    );
}

#[test]
fn an_ipv6_only_socket_refuses_ipv4_peers() {
    let mut t = program();
    t.v6_only.insert(4);
    let a = [4, ADDR, 16, 0, 0, 0];
    assert_eq!(
        plan(libc::SYS_connect, a, &net(false), &mut t),
        fail(libc::EAFNOSUPPORT)
    );
    let mut mapped = [0u8; 16];
    mapped[10..12].copy_from_slice(&[0xff, 0xff]);
    mapped[12..].copy_from_slice(&[10, 2, 0, 5]);
    t.put(ADDR, &encode_sockaddr(&v6(mapped, 80)));
    assert_eq!(
        plan(
            libc::SYS_connect,
            [4, ADDR, 28, 0, 0, 0],
            &net(false),
            &mut t
        ),
        fail(libc::ENETUNREACH)
    );
    t.v6_only.clear();
    assert_eq!(
        plan(
            libc::SYS_connect,
            [4, ADDR, 28, 0, 0, 0],
            &net(false),
            &mut t
        ),
        Plan::connect_tcp(4, v6(mapped, 80))
    );
}

#[test]
fn listen_and_accept_on_a_socket_bound_on_the_server() {
    let mut t = program();
    let fwd = net(false);
    assert_eq!(
        plan(libc::SYS_listen, [3, 16, 0, 0, 0, 0], &fwd, &mut t),
        Plan::Native
    );
    t.listeners.insert(3, 7);
    assert_eq!(
        plan(
            libc::SYS_listen,
            [3, (-1_i64).cast_unsigned(), 0, 0, 0, 0],
            &fwd,
            &mut t
        ),
        Plan::listen_tcp(3, 7, 0)
    );
    assert_eq!(
        plan(libc::SYS_accept4, [3, ADDR, LEN, 0, 0, 0], &fwd, &mut t),
        Plan::NativeRewritten {
            paths: Vec::new(),
            after: AfterNative::AcceptRemote {
                addr: ADDR,
                len: LEN
            }
        }
    );
}

#[test]
fn names_of_a_remote_connection_are_the_servers() {
    let mut t = program();
    let fwd = net(false);
    t.put(LEN, &64u32.to_ne_bytes());
    let a = [3, BUF, LEN, 0, 0, 0];
    // Not remote: the kernel's.
    assert_eq!(plan(libc::SYS_getpeername, a, &fwd, &mut t), Plan::Native);
    connected(&mut t, 3, None);
    assert_eq!(
        plan(libc::SYS_getpeername, a, &fwd, &mut t),
        Plan::Answer {
            ret: 0,
            writes: vec![
                (BUF, encode_sockaddr(&WEB)),
                (LEN, 16u32.to_ne_bytes().to_vec())
            ]
        }
    );
    // A short buffer gets what fits, and the full length.
    t.put(LEN, &4u32.to_ne_bytes());
    let Plan::Answer { writes, .. } = plan(libc::SYS_getsockname, a, &fwd, &mut t) else {
        panic!("getsockname of a remote socket is answered")
    };
    assert_eq!(writes[0].1.len(), 4);
    assert_eq!(writes[1].1, 16u32.to_ne_bytes());
    let mut r = *t.remote_sockets.get(&3).unwrap();
    r.peer = None;
    t.remote_sockets.insert(3, r);
    assert_eq!(
        plan(libc::SYS_getpeername, a, &fwd, &mut t),
        fail(libc::ENOTCONN)
    );
}

#[test]
fn getsockopt_answers_a_late_connect_error_and_dual_stack_v6only() {
    let mut t = program();
    let fwd = net(false);
    t.put(LEN, &4i32.to_ne_bytes());
    let so_error = [
        3,
        libc::SOL_SOCKET.cast_unsigned().into(),
        libc::SO_ERROR.cast_unsigned().into(),
        BUF,
        LEN,
        0,
    ];
    assert_eq!(
        plan(libc::SYS_getsockopt, so_error, &fwd, &mut t),
        Plan::Native
    );
    t.connect_errors.insert(3, Errno(libc::ECONNREFUSED));
    assert_eq!(
        plan(libc::SYS_getsockopt, so_error, &fwd, &mut t),
        Plan::Answer {
            ret: 0,
            writes: vec![
                (BUF, libc::ECONNREFUSED.to_ne_bytes().to_vec()),
                (LEN, 4i32.to_ne_bytes().to_vec())
            ]
        }
    );
    // Reported once: the error is taken.
    assert_eq!(
        plan(libc::SYS_getsockopt, so_error, &fwd, &mut t),
        Plan::Native
    );
    t.dual_stack.insert(4);
    let v6only = [
        4,
        libc::IPPROTO_IPV6.cast_unsigned().into(),
        libc::IPV6_V6ONLY.cast_unsigned().into(),
        BUF,
        LEN,
        0,
    ];
    let Plan::Answer { writes, .. } = plan(libc::SYS_getsockopt, v6only, &fwd, &mut t) else {
        panic!("IPV6_V6ONLY of a dual-stack socket is answered")
    };
    assert_eq!(writes[0], (BUF, 0i32.to_ne_bytes().to_vec()));
    t.put(LEN, &(-1i32).to_ne_bytes());
    assert_eq!(
        plan(libc::SYS_getsockopt, v6only, &fwd, &mut t),
        fail(libc::EINVAL)
    );
}

#[test]
fn tcp_info_of_a_remote_connection_is_the_servers() {
    let mut t = program();
    let fwd = net(false);
    t.put(LEN, &104i32.to_ne_bytes());
    let tcp_info = [
        3,
        libc::IPPROTO_TCP.cast_unsigned().into(),
        libc::TCP_INFO.cast_unsigned().into(),
        BUF,
        LEN,
        0,
    ];
    // Not remote (or still connecting): the kernel's.
    assert_eq!(
        plan(libc::SYS_getsockopt, tcp_info, &fwd, &mut t),
        Plan::Native
    );
    connected(&mut t, 3, None);
    let local = t.remote_sockets[&3].local;
    assert_eq!(
        plan(libc::SYS_getsockopt, tcp_info, &fwd, &mut t),
        Plan::tcp_info(3, local, WEB, BUF, LEN, 104)
    );
    t.put(LEN, &(-1i32).to_ne_bytes());
    assert_eq!(
        plan(libc::SYS_getsockopt, tcp_info, &fwd, &mut t),
        fail(libc::EINVAL)
    );
    // The same number at another level is not TCP_INFO.
    let mut other = tcp_info;
    other[1] = libc::SOL_SOCKET.cast_unsigned().into();
    assert_eq!(
        plan(libc::SYS_getsockopt, other, &fwd, &mut t),
        Plan::Native
    );
}

#[test]
fn bind_to_device_names_a_server_device_and_never_runs_locally() {
    let mut t = program();
    t.put(BUF, b"to-web\0garbage");
    let bind = |fd: u64, len: u64| {
        [
            fd,
            libc::SOL_SOCKET.cast_unsigned().into(),
            libc::SO_BINDTODEVICE.cast_unsigned().into(),
            BUF,
            len,
            0,
        ]
    };
    let mut device = [0u8; crate::proto::DEVICE_NAME];
    device[..6].copy_from_slice(b"to-web");
    assert_eq!(
        plan(libc::SYS_setsockopt, bind(3, 14), &net(false), &mut t),
        Plan::server_option(3, None, SockOption::BindToDevice(device))
    );
    // The length cuts the name, as the kernel's copy does.
    let mut short = [0u8; crate::proto::DEVICE_NAME];
    short[..2].copy_from_slice(b"to");
    assert_eq!(
        plan(libc::SYS_setsockopt, bind(3, 2), &net(false), &mut t),
        Plan::server_option(3, None, SockOption::BindToDevice(short))
    );
    // A live connection gets it at once.
    connected(&mut t, 3, None);
    let Plan::Remote { .. } = plan(libc::SYS_setsockopt, bind(3, 14), &net(false), &mut t) else {
        panic!("held for the server")
    };
    assert_eq!(
        plan(
            libc::SYS_setsockopt,
            bind(3, u64::from(u32::MAX)),
            &net(false),
            &mut t
        ),
        fail(libc::EINVAL)
    );
    // AF_UNIX sockets are the kernel's.
    assert_eq!(
        plan(libc::SYS_setsockopt, bind(5, 14), &net(false), &mut t),
        Plan::Native
    );
}

#[test]
fn setsockopt_passes_on_options_of_inet_stream_sockets() {
    let mut t = program();
    t.put(BUF, &1i32.to_ne_bytes());
    let nodelay = |fd: u64| {
        [
            fd,
            libc::IPPROTO_TCP.cast_unsigned().into(),
            libc::TCP_NODELAY.cast_unsigned().into(),
            BUF,
            4,
            0,
        ]
    };
    assert_eq!(
        plan(libc::SYS_setsockopt, nodelay(3), &net(false), &mut t),
        Plan::set_sock_option(3, None, SockOption::NoDelay(true))
    );
    assert_eq!(
        plan(libc::SYS_setsockopt, nodelay(5), &net(false), &mut t),
        Plan::Native
    );
    let mut reuse = nodelay(3);
    reuse[1] = libc::SOL_SOCKET.cast_unsigned().into();
    reuse[2] = libc::SO_REUSEADDR.cast_unsigned().into();
    assert_eq!(
        plan(libc::SYS_setsockopt, reuse, &net(false), &mut t),
        Plan::Native
    );
}

#[test]
fn sendto_on_an_inet_datagram_socket_the_udp_planner_left_is_enetunreach() {
    let mut t = program();
    // A raw socket: not UDP's business, and not to be sent from here.
    t.sockets.insert(6, (libc::AF_INET, libc::SOCK_RAW));
    assert_eq!(
        plan(libc::SYS_sendto, [6, BUF, 1, 0, 0, 0], &net(false), &mut t),
        fail(libc::ENETUNREACH)
    );
    assert_eq!(
        plan(libc::SYS_sendto, [3, BUF, 1, 0, 0, 0], &net(false), &mut t),
        Plan::Native
    );
}

#[test]
fn an_icmp_datagram_socket_is_not_carried_as_udp() {
    for pure in [false, true] {
        let mut t = program();
        // `socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`: a ping socket, whose
        // echo a UDP relay would answer from loopback.
        t.sockets.insert(6, (libc::AF_INET, libc::SOCK_DGRAM));
        t.protocols.insert(6, libc::IPPROTO_ICMP);
        let to = [6, BUF, 16, 0, ADDR, 16];
        assert_eq!(
            plan(libc::SYS_sendto, to, &net(pure), &mut t),
            fail(libc::ENETUNREACH),
            "pure: {pure}"
        );
        for nr in [libc::SYS_connect, libc::SYS_bind] {
            assert_eq!(
                plan(nr, [6, ADDR, 16, 0, 0, 0], &net(pure), &mut t),
                fail(libc::ENETUNREACH),
                "{nr}, pure: {pure}"
            );
        }
        // Nor may its `sendmsg`/`sendmmsg` (whose address the filter
        // cannot see) leave from this host; nor a raw socket's.
        t.sockets.insert(7, (libc::AF_INET6, libc::SOCK_RAW));
        t.protocols.insert(7, libc::IPPROTO_ICMPV6);
        for fd in [6, 7] {
            for nr in [libc::SYS_sendmsg, libc::SYS_sendmmsg] {
                assert_eq!(
                    plan(nr, [fd, BUF, 1, 0, 0, 0], &net(pure), &mut t),
                    fail(libc::ENETUNREACH),
                    "fd {fd}, {nr}, pure: {pure}"
                );
            }
        }
        // A UDP socket still binds on the server at its first send.
        t.protocols.insert(6, libc::IPPROTO_UDP);
        let wildcard = SockAddr::V4 {
            ip: [0; 4],
            port: 0,
        };
        assert_eq!(
            plan(libc::SYS_sendto, to, &net(pure), &mut t),
            Plan::udp_bind(6, wildcard, true),
            "pure: {pure}"
        );
        // And a UDP `sendmsg` the UDP family leaves (no address, never
        // bound) is the kernel's, not refused.
        assert_eq!(
            plan(libc::SYS_sendmsg, [6, BUF, 0, 0, 0, 0], &net(pure), &mut t),
            Plan::Native,
            "pure: {pure}"
        );
    }
}

#[test]
fn pure_receives_fetch_only_when_the_socket_has_nothing() {
    let mut t = program();
    connected(&mut t, 3, Some(11));
    let fwd = net(true);
    let read = [3, BUF, 100, 0, 0, 0];
    assert_eq!(
        plan(libc::SYS_read, read, &fwd, &mut t),
        Plan::pure_recv(3, 11, 100, PureWait::Any)
    );
    t.unread.insert(3, 10);
    assert_eq!(plan(libc::SYS_read, read, &fwd, &mut t), Plan::Native);
    // MSG_WAITALL for more than is there fetches the rest.
    let recv = [3, BUF, 100, libc::MSG_WAITALL.cast_unsigned().into(), 0, 0];
    assert_eq!(
        plan(libc::SYS_recvfrom, recv, &fwd, &mut t),
        Plan::pure_recv(3, 11, 100, PureWait::All)
    );
    // The end of the stream (or a local shutdown) answers natively.
    t.unread.clear();
    t.readable.insert(3);
    assert_eq!(plan(libc::SYS_read, read, &fwd, &mut t), Plan::Native);
    // Without --pure, reads are the kernel's.
    t.readable.clear();
    assert_eq!(
        plan(libc::SYS_read, read, &net(false), &mut t),
        Plan::Native
    );
}

#[test]
fn pure_sends_are_one_round_trip() {
    let mut t = program();
    connected(&mut t, 3, Some(11));
    t.put(BUF, b"GET /");
    let dontwait = libc::MSG_DONTWAIT.cast_unsigned().into();
    assert_eq!(
        plan(
            libc::SYS_sendto,
            [3, BUF, 5, dontwait, 0, 0],
            &net(true),
            &mut t
        ),
        Plan::pure_send(3, 11, b"GET /".to_vec(), true, false)
    );
    assert_eq!(
        plan(libc::SYS_write, [3, 0xdead, 5, 0, 0, 0], &net(true), &mut t),
        fail(libc::EFAULT)
    );
}

#[test]
fn pure_urgent_data_is_sent_urgent_and_fetched_without_waiting() {
    let mut t = program();
    connected(&mut t, 3, Some(11));
    t.put(BUF, b"ab!");
    let fwd = net(true);
    let oob: u64 = libc::MSG_OOB.cast_unsigned().into();
    assert_eq!(
        plan(libc::SYS_sendto, [3, BUF, 3, oob, 0, 0], &fwd, &mut t),
        Plan::pure_send(3, 11, b"ab!".to_vec(), false, true)
    );
    // recv(MSG_OOB) fetches what the server has, even with bytes already
    // in the socket (the urgent byte may be behind them), and never waits.
    t.unread.insert(3, 10);
    assert_eq!(
        plan(libc::SYS_recvfrom, [3, BUF, 1, oob, 0, 0], &fwd, &mut t),
        Plan::pure_recv(3, 11, crate::proto::MAX_IO, PureWait::Available)
    );
    assert_eq!(
        plan(libc::SYS_ioctl, [3, 0x8905, BUF, 0, 0, 0], &fwd, &mut t),
        Plan::pure_recv(3, 11, crate::proto::MAX_IO, PureWait::Available)
    );
    // Without --pure, urgent data is the kernel's.
    assert_eq!(
        plan(
            libc::SYS_recvfrom,
            [3, BUF, 1, oob, 0, 0],
            &net(false),
            &mut t
        ),
        Plan::Native
    );
}

#[test]
fn waits_for_input_prefetch_empty_remote_sockets() {
    let mut t = program();
    connected(&mut t, 3, Some(11));
    connected(&mut t, 4, Some(12));
    t.unread.insert(4, 1);
    let mut pollfds = Vec::new();
    for fd in [3i32, 4, 7] {
        pollfds.extend_from_slice(&fd.to_ne_bytes());
        pollfds.extend_from_slice(&libc::POLLIN.to_ne_bytes());
        pollfds.extend_from_slice(&0i16.to_ne_bytes());
    }
    t.put(BUF, &pollfds);
    let fwd = net(true);
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 3, 0, 0, 0, 0], &fwd, &mut t),
        Plan::prefetch(vec![11], Vec::new())
    );
    // Edge-triggered: new bytes are needed even when some are there.
    t.epoll.insert(9, vec![(4, true)]);
    assert_eq!(
        plan(libc::SYS_epoll_wait, [9, BUF, 8, 0, 0, 0], &fwd, &mut t),
        Plan::prefetch(vec![12], Vec::new())
    );
    // select(nfds = 4, readfds = {3}).
    t.put(LEN, &[0b1000, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        plan(libc::SYS_select, [4, LEN, 0, 0, 0, 0], &fwd, &mut t),
        Plan::prefetch(vec![11], Vec::new())
    );
    assert_eq!(
        plan(
            libc::SYS_ioctl,
            [3, libc::FIONREAD, BUF, 0, 0, 0],
            &fwd,
            &mut t
        ),
        Plan::pure_recv(3, 11, crate::proto::MAX_IO, PureWait::Available)
    );
}

/// `struct pollfd`s for `fds` (fd, events) at `BUF`.
fn put_pollfds(t: &mut FakeTracee, fds: &[(i32, i16)]) {
    let mut bytes = Vec::new();
    for (fd, events) in fds {
        bytes.extend_from_slice(&fd.to_ne_bytes());
        bytes.extend_from_slice(&events.to_ne_bytes());
        bytes.extend_from_slice(&0i16.to_ne_bytes());
    }
    t.put(BUF, &bytes);
}

#[test]
fn a_pure_poll_for_room_alone_waits_for_room_on_the_server() {
    use std::time::Duration;
    let mut t = program();
    connected(&mut t, 3, Some(11));
    connected(&mut t, 4, Some(12));
    let fwd = net(true);
    put_pollfds(&mut t, &[(-1, libc::POLLIN), (3, libc::POLLOUT)]);
    let ms = |n: i32| u64::from(n.cast_unsigned());
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 2, ms(250), 0, 0, 0], &fwd, &mut t),
        Plan::pure_room(3, 11, Some(Duration::from_millis(250)))
    );
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 2, ms(-1), 0, 0, 0], &fwd, &mut t),
        Plan::pure_room(3, 11, None)
    );
    // ppoll: a timespec, or none.
    let mut ts = 1i64.to_ne_bytes().to_vec();
    ts.extend_from_slice(&500_000_000i64.to_ne_bytes());
    t.put(LEN, &ts);
    assert_eq!(
        plan(libc::SYS_ppoll, [BUF, 2, LEN, 0, 8, 0], &fwd, &mut t),
        Plan::pure_room(3, 11, Some(Duration::from_millis(1500)))
    );
    assert_eq!(
        plan(libc::SYS_ppoll, [BUF, 2, 0, 0, 8, 0], &fwd, &mut t),
        Plan::pure_room(3, 11, None)
    );
    // Also waiting for input: the fetch for it, as before.
    put_pollfds(&mut t, &[(3, libc::POLLIN | libc::POLLOUT)]);
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 1, 0, 0, 0, 0], &fwd, &mut t),
        Plan::prefetch(vec![11], Vec::new())
    );
    // Two sockets, or a local fd: natively, as before.
    put_pollfds(&mut t, &[(3, libc::POLLOUT), (4, libc::POLLOUT)]);
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 2, 0, 0, 0, 0], &fwd, &mut t),
        Plan::Native
    );
    put_pollfds(&mut t, &[(3, libc::POLLOUT), (7, libc::POLLOUT)]);
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 2, 0, 0, 0, 0], &fwd, &mut t),
        Plan::Native
    );
    // Without --pure, the kernel's.
    put_pollfds(&mut t, &[(3, libc::POLLOUT)]);
    assert_eq!(
        plan(libc::SYS_poll, [BUF, 1, 0, 0, 0, 0], &net(false), &mut t),
        Plan::Native
    );
}

#[test]
fn a_pure_peek_for_more_than_the_socket_holds_fetches_the_rest_first() {
    let mut t = program();
    connected(&mut t, 3, Some(11));
    t.unread.insert(3, 5);
    let fwd = net(true);
    let peek: u64 = libc::MSG_PEEK.cast_unsigned().into();
    assert_eq!(
        plan(libc::SYS_recvfrom, [3, BUF, 8, peek, 0, 0], &fwd, &mut t),
        Plan::pure_recv(3, 11, 3, PureWait::Available)
    );
    // What the socket holds answers a peek of no more.
    assert_eq!(
        plan(libc::SYS_recvfrom, [3, BUF, 5, peek, 0, 0], &fwd, &mut t),
        Plan::Native
    );
    // A read takes what is there, as before.
    assert_eq!(
        plan(libc::SYS_recvfrom, [3, BUF, 8, 0, 0, 0], &fwd, &mut t),
        Plan::Native
    );
}

#[test]
fn the_last_close_of_a_udp_socket_or_pure_connection_releases_it() {
    let mut t = program();
    connected(&mut t, 3, Some(11));
    connected(&mut t, 4, None);
    connected(&mut t, 5, Some(12));
    t.shared_sockets.insert(5);
    t.remote_sockets.insert(
        6,
        RemoteSocket {
            local: WEB,
            peer: None,
            pure_pump: None,
            udp: Some(7),
        },
    );
    let fwd = net(true);
    let close = |t: &mut FakeTracee, fd: u64| plan(libc::SYS_close, [fd, 0, 0, 0, 0, 0], &fwd, t);
    assert_eq!(close(&mut t, 3), Plan::release_pure(3, 11));
    assert_eq!(close(&mut t, 6), Plan::release_udp(6, 7));
    // A default-mode connection goes by its pump; a shared socket stays.
    assert_eq!(close(&mut t, 4), Plan::Native);
    assert_eq!(close(&mut t, 5), Plan::Native);
    assert_eq!(close(&mut t, 8), Plan::Native);
}

/// A `struct sockaddr_un` naming `path`, NUL-padded to its full size.
fn sockaddr_un(path: &[u8]) -> Vec<u8> {
    let mut b = u16::try_from(libc::AF_UNIX).unwrap().to_ne_bytes().to_vec();
    b.extend_from_slice(path);
    b.resize(110, 0);
    b
}

#[test]
fn unix_socket_paths_in_a_mount_are_the_servers() {
    let mut t = program();
    let fwd = mounted();
    t.put(ADDR, &sockaddr_un(b"/r/sock"));
    let a = [5, ADDR, 110, 0, 0, 0];
    assert_eq!(
        plan(libc::SYS_bind, a, &fwd, &mut t),
        Plan::Forward {
            request: Request::Mknod {
                path: crate::proto::RemotePath(b"/srv/sock".to_vec()),
                mode: libc::S_IFSOCK | 0o777,
                dev: 0
            },
            then: Then::BindSocketFile
        }
    );
    let Plan::Forward {
        request: Request::Stat { follow: true, .. },
        then: Then::ConnectSocketFile,
    } = plan(libc::SYS_connect, a, &fwd, &mut t)
    else {
        panic!("connect to a socket path in a mount asks the server")
    };
    // A relative path from a remote cwd, out of the mount: spelled out.
    t.cwd = b"/r/d".to_vec();
    t.virtual_cwd = true;
    t.put(ADDR, &sockaddr_un(b"../../tmp/s"));
    assert_eq!(
        plan(libc::SYS_connect, a, &fwd, &mut t),
        Plan::NativeWithArgs {
            data: vec![(1, sockaddr_un(b"/tmp/s")[..8].to_vec())],
            args: [None, None, Some(9), None, None, None]
        }
    );
    // Without mounts, AF_UNIX is the kernel's.
    assert_eq!(
        plan(libc::SYS_connect, a, &Forwarding::default(), &mut t),
        Plan::Native
    );
}
