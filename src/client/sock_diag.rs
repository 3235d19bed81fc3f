//! The kernel's TCP socket table through `NETLINK_SOCK_DIAG` (see
//! sock_diag(7)): one socket's state by its addresses, or the inodes of the
//! sockets in given states.
//!
//! Why not `/proc/net/tcp`: reading it walks every bucket of the kernel's
//! TCP hash (milliseconds on a machine with much memory, whatever the
//! number of sockets) and restarts the walk for each page of text, so a
//! look per connect cost several milliseconds and grew with every socket.
//! An exact lookup here is one hash probe, and a dump of listening sockets
//! walks only the listening table.
//!
//! The framing ([`lookup_request`], [`dump_request`], [`parse_replies`]) is
//! pure and tested on bytes; `query` does the I/O.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType, netlink};

/// `SOCK_DIAG_BY_FAMILY` (linux/sock_diag.h).
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `NLMSG_ERROR` and `NLMSG_DONE` (linux/netlink.h).
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// `NLM_F_REQUEST`, `NLM_F_DUMP` (`NLM_F_ROOT | NLM_F_MATCH`).
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
/// `struct nlmsghdr`.
const HEADER_LEN: usize = 16;
/// `struct inet_diag_req_v2`.
const REQUEST_LEN: usize = 56;
/// `struct inet_diag_msg`: family, state, timer, retrans, the 48-byte
/// socket id, expires, rqueue, wqueue, uid, inode.
const MESSAGE_LEN: usize = 72;
/// `INET_DIAG_NOCOOKIE`: the lookup is by addresses alone.
const NO_COOKIE: u32 = !0;

/// TCP states (include/net/tcp_states.h), as `/proc/net/tcp` numbers them.
pub const TCP_SYN_SENT: u8 = 2;
pub const TCP_SYN_RECV: u8 = 3;
pub const TCP_LISTEN: u8 = 10;
/// Bound but neither listening nor connected: a pseudo-state that only
/// sock_diag reports (Linux 6.8 and later; older kernels list no socket in
/// it).
pub const TCP_BOUND_INACTIVE: u8 = 13;

/// One socket in a reply: its TCP state and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub state: u8,
    pub inode: u64,
}

fn family_of(ip: IpAddr) -> u8 {
    let family = match ip {
        IpAddr::V4(_) => libc::AF_INET,
        IpAddr::V6(_) => libc::AF_INET6,
    };
    u8::try_from(family).unwrap_or(0)
}

/// The 16 bytes of an address field of `struct inet_diag_sockid`: network
/// order, an IPv4 address in the first four.
fn address_field(ip: IpAddr) -> [u8; 16] {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => out[..4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out = v6.octets(),
    }
    out
}

fn header(out: &mut Vec<u8>, flags: u16, seq: u32) {
    let len = u32::try_from(HEADER_LEN + REQUEST_LEN).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
}

/// `struct inet_diag_req_v2` for TCP, with the socket id's addresses and
/// ports (zero for a dump).
fn request(out: &mut Vec<u8>, family: u8, states: u32, ends: Option<(SocketAddr, SocketAddr)>) {
    out.push(family);
    out.push(u8::try_from(libc::IPPROTO_TCP).unwrap_or(6));
    out.push(0); // idiag_ext: no extensions
    out.push(0); // pad
    out.extend_from_slice(&states.to_ne_bytes());
    let (sport, dport, src, dst) = match ends {
        Some((local, remote)) => (
            local.port(),
            remote.port(),
            address_field(local.ip()),
            address_field(remote.ip()),
        ),
        None => (0, 0, [0; 16], [0; 16]),
    };
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&0u32.to_ne_bytes()); // idiag_if: any
    let cookie = if ends.is_some() { NO_COOKIE } else { 0 };
    out.extend_from_slice(&cookie.to_ne_bytes());
    out.extend_from_slice(&cookie.to_ne_bytes());
}

/// An exact lookup of the TCP socket bound to `local` and connected (or
/// connecting) to `remote`.
pub fn lookup_request(local: SocketAddr, remote: SocketAddr, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    header(&mut out, NLM_F_REQUEST, seq);
    request(&mut out, family_of(local.ip()), !0, Some((local, remote)));
    out
}

/// A dump of the `family` (`AF_INET`/`AF_INET6`) TCP sockets whose state is
/// in `states` (a mask of `1 << state`).
pub fn dump_request(family: u8, states: u32, seq: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + REQUEST_LEN);
    header(&mut out, NLM_F_REQUEST | NLM_F_DUMP, seq);
    request(&mut out, family, states, None);
    out
}

/// What one datagram of replies said.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replies {
    pub sockets: Vec<DiagSocket>,
    /// The reply is complete (`NLMSG_DONE`, or the answer to a lookup).
    pub done: bool,
    /// A negative errno from `NLMSG_ERROR` (0 is an acknowledgement).
    pub error: Option<i32>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Parses one datagram of netlink messages answering request `seq`;
/// messages of other sequence numbers are skipped. `None`: malformed.
pub fn parse_replies(bytes: &[u8], seq: u32) -> Option<Replies> {
    let mut out = Replies::default();
    let mut at = 0;
    while at + HEADER_LEN <= bytes.len() {
        let len = usize::try_from(u32_at(bytes, at)?).ok()?;
        if len < HEADER_LEN || at + len > bytes.len() {
            return None;
        }
        let kind = u16_at(bytes, at + 4)?;
        let body = &bytes[at + HEADER_LEN..at + len];
        if u32_at(bytes, at + 8)? == seq {
            match kind {
                NLMSG_DONE => out.done = true,
                NLMSG_ERROR => {
                    out.error = Some(i32::from_ne_bytes(body.get(..4)?.try_into().ok()?));
                    out.done = true;
                }
                SOCK_DIAG_BY_FAMILY if body.len() >= MESSAGE_LEN => out.sockets.push(DiagSocket {
                    state: body[1],
                    inode: u64::from(u32_at(body, 68)?),
                }),
                _ => return None,
            }
        }
        // Messages are padded to 4 bytes (NLMSG_ALIGN).
        at += (len + 3) & !3;
    }
    Some(out)
}

/// Sends `request` to the kernel and collects the sockets of its answer.
/// A lookup of a socket that does not exist is an empty list.
fn query(request: &[u8], seq: u32, single: bool) -> std::io::Result<Vec<DiagSocket>> {
    let socket = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        Some(netlink::SOCK_DIAG),
    )?;
    // An unconnected netlink socket sends to the kernel (port id 0).
    rustix::net::send(&socket, request, SendFlags::empty())?;
    let mut sockets = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    loop {
        let (n, _) = rustix::net::recv(&socket, &mut buf, RecvFlags::empty())?;
        let replies = parse_replies(buf.get(..n).unwrap_or_default(), seq)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
        sockets.extend(replies.sockets);
        match replies.error {
            Some(e) if e == -libc::ENOENT => return Ok(sockets),
            Some(e) if e < 0 => return Err(std::io::Error::from_raw_os_error(-e)),
            _ => {}
        }
        if replies.done || (single && !sockets.is_empty()) {
            return Ok(sockets);
        }
    }
}

/// The TCP socket bound to `local` and connecting or connected to
/// `remote`: `None` if there is none.
pub fn lookup(local: SocketAddr, remote: SocketAddr) -> std::io::Result<Option<DiagSocket>> {
    Ok(query(&lookup_request(local, remote, 1), 1, true)?
        .first()
        .copied())
}

/// The inodes of this network namespace's TCP sockets (IPv4 and IPv6) in
/// one of `states` (a mask of `1 << state`).
pub fn inodes_in_states(states: u32) -> std::io::Result<HashSet<u64>> {
    let mut out = HashSet::new();
    for family in [libc::AF_INET, libc::AF_INET6] {
        let family = u8::try_from(family).unwrap_or(0);
        let found = query(&dump_request(family, states, 2), 2, false)?;
        out.extend(found.into_iter().map(|s| s.inode));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn a_lookup_request_is_laid_out_as_the_kernel_reads_it() {
        let local = SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 0x1234));
        let remote = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 80));
        let r = lookup_request(local, remote, 7);
        assert_eq!(r.len(), 72);
        assert_eq!(u32_at(&r, 0), Some(72));
        assert_eq!(u16_at(&r, 4), Some(SOCK_DIAG_BY_FAMILY));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST));
        assert_eq!(u32_at(&r, 8), Some(7));
        assert_eq!(r[16], 2); // AF_INET
        assert_eq!(r[17], 6); // IPPROTO_TCP
        assert_eq!(&r[24..26], &[0x12, 0x34]); // sport, big-endian
        assert_eq!(&r[26..28], &[0, 80]);
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[32..44], &[0; 12]);
        assert_eq!(&r[44..48], &[10, 0, 0, 2]);
        assert_eq!(u32_at(&r, 60), Some(0)); // any interface
        assert_eq!(u32_at(&r, 64), Some(NO_COOKIE));
        assert_eq!(u32_at(&r, 68), Some(NO_COOKIE));
    }

    #[test]
    fn a_dump_request_asks_for_the_states_of_one_family() {
        let r = dump_request(10, 1 << TCP_LISTEN, 3);
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(r[16], 10); // AF_INET6
        assert_eq!(u32_at(&r, 20), Some(1 << 10));
        assert!(r[24..].iter().all(|&b| b == 0));
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let len = HEADER_LEN + body.len();
        let mut m = Vec::new();
        m.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn diag(state: u8, inode: u32) -> Vec<u8> {
        let mut body = vec![0u8; MESSAGE_LEN];
        body[0] = 2;
        body[1] = state;
        body[68..72].copy_from_slice(&inode.to_ne_bytes());
        body
    }

    #[test]
    fn replies_give_states_and_inodes_until_done() {
        let mut bytes = message(SOCK_DIAG_BY_FAMILY, 5, &diag(TCP_LISTEN, 621));
        bytes.extend(message(SOCK_DIAG_BY_FAMILY, 5, &diag(TCP_SYN_SENT, 4242)));
        // Another request's answer is skipped.
        bytes.extend(message(SOCK_DIAG_BY_FAMILY, 9, &diag(1, 1)));
        let r = parse_replies(&bytes, 5).unwrap();
        assert_eq!(
            r.sockets,
            vec![
                DiagSocket {
                    state: TCP_LISTEN,
                    inode: 621
                },
                DiagSocket {
                    state: TCP_SYN_SENT,
                    inode: 4242
                }
            ]
        );
        assert!(!r.done);
        let r = parse_replies(&message(NLMSG_DONE, 5, &0i32.to_ne_bytes()), 5).unwrap();
        assert!(r.done && r.sockets.is_empty());
        let r = parse_replies(&message(NLMSG_ERROR, 5, &(-libc::ENOENT).to_ne_bytes()), 5).unwrap();
        assert_eq!(r.error, Some(-libc::ENOENT));
    }

    #[test]
    fn malformed_replies_are_refused() {
        let mut m = message(SOCK_DIAG_BY_FAMILY, 5, &diag(1, 1));
        m[0] = 200; // longer than the datagram
        assert_eq!(parse_replies(&m, 5), None);
        let mut m = message(SOCK_DIAG_BY_FAMILY, 5, &diag(1, 1));
        m[0] = 4; // shorter than a header
        assert_eq!(parse_replies(&m, 5), None);
        assert_eq!(parse_replies(&message(77, 5, &[]), 5), None);
    }

    #[test]
    fn the_kernel_finds_a_connection_and_a_listener() {
        for any in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let Ok(listener) = std::net::TcpListener::bind((any, 0)) else {
                continue; // no IPv6 loopback here
            };
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let inode = |fd: &dyn std::os::fd::AsFd| rustix::fs::fstat(fd).unwrap().st_ino;
            let found = lookup(client.local_addr().unwrap(), client.peer_addr().unwrap())
                .unwrap()
                .expect("the connection is in the table");
            assert_eq!(found.inode, inode(&client));
            assert_eq!(found.state, 1); // ESTABLISHED
            let listening = inodes_in_states(1 << TCP_LISTEN).unwrap();
            assert!(listening.contains(&inode(&listener)));
            assert!(!listening.contains(&inode(&client)));
            let only_bound = rustix::net::socket(
                if any.is_ipv6() {
                    AddressFamily::INET6
                } else {
                    AddressFamily::INET
                },
                SocketType::STREAM,
                None,
            )
            .unwrap();
            rustix::net::bind(&only_bound, &SocketAddr::new(any, 0)).unwrap();
            let only_bound_ino = inode(&only_bound);
            let inactive = inodes_in_states(1 << TCP_BOUND_INACTIVE).unwrap();
            assert!(inactive.contains(&only_bound_ino));
            assert!(!inactive.contains(&inode(&listener)));
            drop(only_bound);
            let inactive = inodes_in_states(1 << TCP_BOUND_INACTIVE).unwrap();
            assert!(!inactive.contains(&only_bound_ino));
            let peer = client.peer_addr().unwrap();
            drop(client);
            // Gone: no socket with these ends (the server's end remains,
            // with the ends the other way round).
            let gone = lookup(SocketAddr::new(any, 1), peer).unwrap();
            assert_eq!(gone, None);
        }
    }
}
