//! The UDP planner on plain values, through its own fake program. Tests
//! only.

use super::*;
use crate::proto::IpFields;
use crate::syscall::cmsg;
use crate::syscall::plan::FdKind;
use crate::syscall::plan::{AfterNative, Scratch, Then};
use crate::syscall::sockets::RemoteSocket;
use std::collections::HashMap;

/// A program with a few sockets and memory.
#[derive(Default)]
struct Fake {
    mem: HashMap<u64, Vec<u8>>,
    remote: HashMap<i32, RemoteSocket>,
    kinds: HashMap<i32, (i32, i32)>,
    protocols: HashMap<i32, i32>,
    unread: usize,
}

impl Tracee for Fake {
    fn local_link(&mut self, _path: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn tgid(&mut self) -> i32 {
        1
    }
    fn holds_record_locks(&mut self) -> bool {
        false
    }
    fn read_path(&mut self, _: u64) -> Result<Vec<u8>, Errno> {
        Err(Errno::EFAULT)
    }
    fn read_bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let b = self.mem.get(&addr).ok_or(Errno::EFAULT)?;
        Ok(b[..len.min(b.len())].to_vec())
    }
    fn cwd(&mut self) -> Result<Vec<u8>, Errno> {
        Ok(b"/".to_vec())
    }
    fn has_virtual_cwd(&mut self) -> bool {
        false
    }
    fn fd(&mut self, _: i32) -> FdKind {
        FdKind::Local
    }
    fn local_fd_path(&mut self, _: i32) -> Option<Vec<u8>> {
        None
    }
    fn socket_kind(&mut self, fd: i32) -> Option<(i32, i32)> {
        self.kinds.get(&fd).copied()
    }
    fn socket_protocol(&mut self, fd: i32) -> Option<i32> {
        self.protocols.get(&fd).copied()
    }
    fn dual_stack(&mut self, _fd: i32) -> bool {
        false
    }
    fn v6_only(&mut self, _fd: i32) -> bool {
        false
    }
    fn socket_readable(&mut self, _fd: i32) -> bool {
        false
    }
    fn connect_error(&mut self, _fd: i32) -> Option<Errno> {
        None
    }
    fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket> {
        self.remote.get(&fd).copied()
    }
    fn remote_listener(&mut self, _: i32) -> Option<u64> {
        None
    }
    fn socket_shared(&mut self, _: i32) -> bool {
        false
    }
    fn socket_unread(&mut self, _: i32) -> Option<usize> {
        Some(self.unread)
    }
    fn epoll_inputs(&mut self, _: i32) -> Vec<(i32, bool)> {
        Vec::new()
    }
    fn udp_relay(&mut self, _: bool, peer: SockAddr) -> Option<SockAddr> {
        // Each peer's relay: a loopback port derived from the peer's.
        match peer {
            SockAddr::V4 { port, .. } => Some(SockAddr::V4 {
                ip: [127, 0, 0, 1],
                port: port + 1000,
            }),
            SockAddr::V6 { .. } => None,
        }
    }
}

const WEB: SockAddr = SockAddr::V4 {
    ip: [10, 0, 0, 2],
    port: 53,
};

fn fake() -> Fake {
    let mut f = Fake::default();
    f.kinds.insert(3, (libc::AF_INET, libc::SOCK_DGRAM));
    f.kinds.insert(4, (libc::AF_INET, libc::SOCK_STREAM));
    f.kinds.insert(5, (libc::AF_INET6, libc::SOCK_DGRAM));
    f.mem.insert(0x1000, encode_sockaddr(&WEB));
    f.mem.insert(0x2000, b"query".to_vec());
    f
}

fn make_remote(f: &mut Fake, fd: i32) {
    f.remote.insert(
        fd,
        RemoteSocket {
            local: SockAddr::V4 {
                ip: [0; 4],
                port: 4000,
            },
            peer: None,
            pure_pump: None,
            udp: Some(7),
        },
    );
}

#[test]
fn first_send_on_a_socket_binds_it_remotely_then_replans() {
    let mut f = fake();
    let a = [3, 0x2000, 5, 0, 0x1000, 16];
    assert_eq!(
        plan(libc::SYS_sendto, a, false, false, &mut f),
        Some(Plan::udp_bind(3, wildcard(false), true))
    );
    make_remote(&mut f, 3);
    let relay = encode_sockaddr(&SockAddr::V4 {
        ip: [127, 0, 0, 1],
        port: 1053,
    });
    assert_eq!(
        plan(libc::SYS_sendto, a, false, false, &mut f),
        Some(Plan::NativeScratch(Box::new(Scratch {
            scratch: relay,
            relocs: vec![],
            args: vec![(4, 0)],
            values: vec![(5, 16)],
            after: AfterNative::Nothing
        })))
    );
    // Stop-and-wait: the datagram itself goes as one round trip.
    assert_eq!(
        plan(libc::SYS_sendto, a, true, false, &mut f),
        Some(Plan::udp_pure_send(
            3,
            7,
            Some(WEB),
            b"query".to_vec(),
            IpFields::default(),
            Then::Number
        ))
    );
}

#[test]
fn tcp_and_unix_sockets_are_not_udp_business() {
    let mut f = fake();
    assert_eq!(
        plan(
            libc::SYS_connect,
            [4, 0x1000, 16, 0, 0, 0],
            false,
            false,
            &mut f
        ),
        None
    );
    assert_eq!(
        plan(
            libc::SYS_sendto,
            [9, 0x2000, 5, 0, 0x1000, 16],
            false,
            false,
            &mut f
        ),
        None
    );
    assert_eq!(
        plan(
            libc::SYS_recvmsg,
            [3, 0x3000, 0, 0, 0, 0],
            false,
            false,
            &mut f
        ),
        None
    );
}

#[test]
fn connect_to_af_unspec_dissolves_a_remote_association() {
    let mut f = fake();
    f.mem.insert(0x7000, vec![0u8; 16]);
    let a = [3, 0x7000, 16, 0, 0, 0];
    // A local socket's association is the kernel's business.
    assert_eq!(plan(libc::SYS_connect, a, false, false, &mut f), None);
    make_remote(&mut f, 3);
    assert_eq!(
        plan(libc::SYS_connect, a, false, false, &mut f),
        Some(Plan::udp_connect(3, 7, None))
    );
}

#[test]
fn bind_twice_or_across_families_fails_as_the_kernel_would() {
    let mut f = fake();
    assert_eq!(
        plan(
            libc::SYS_bind,
            [5, 0x1000, 16, 0, 0, 0],
            false,
            false,
            &mut f
        ),
        Some(Plan::Return(-i64::from(libc::EAFNOSUPPORT)))
    );
    make_remote(&mut f, 3);
    assert_eq!(
        plan(
            libc::SYS_bind,
            [3, 0x1000, 16, 0, 0, 0],
            false,
            false,
            &mut f
        ),
        Some(Plan::Return(-i64::from(libc::EINVAL)))
    );
}

#[test]
fn ipv6_sockets_reach_ipv4_peers_mapped() {
    assert_eq!(
        destination(true, WEB),
        Ok(SockAddr::V6 {
            ip: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 2],
            port: 53,
            flowinfo: 0,
            scope_id: 0
        })
    );
    assert_eq!(
        destination(false, destination(true, WEB).unwrap()),
        Err(Errno(libc::EAFNOSUPPORT))
    );
}

#[test]
fn receives_rewrite_sources_and_pure_ones_fetch_first() {
    let mut f = fake();
    make_remote(&mut f, 3);
    f.mem.insert(0x4000, 16u32.to_ne_bytes().to_vec());
    let a = [3, 0x2000, 512, 0, 0x5000, 0x4000];
    let rewrite = Plan::NativeRewritten {
        paths: vec![],
        after: AfterNative::UdpSources {
            slots: vec![SourceSlot {
                name: 0x5000,
                len_addr: 0x4000,
                room: 16,
            }],
            counted: false,
        },
    };
    assert_eq!(
        plan(libc::SYS_recvfrom, a, false, false, &mut f),
        Some(rewrite.clone())
    );
    assert_eq!(
        plan(libc::SYS_recvfrom, a, true, false, &mut f),
        Some(Plan::udp_pure_recv(3, 7, false))
    );
    // Once the fetch delivered, the call runs and is rewritten.
    assert_eq!(
        plan(libc::SYS_recvfrom, a, true, true, &mut f),
        Some(rewrite)
    );
    f.unread = 5;
    assert!(matches!(
        plan(libc::SYS_recvfrom, a, true, false, &mut f),
        Some(Plan::NativeRewritten { .. })
    ));
}

#[test]
fn sources_name_the_peer_a_relay_stands_for() {
    let relay = SockAddr::V4 {
        ip: [127, 0, 0, 1],
        port: 1053,
    };
    let peer_of = |a: std::net::SocketAddr| (a.port() == 1053).then_some(WEB);
    assert_eq!(
        rewrite_source(&encode_sockaddr(&relay), 16, peer_of),
        Some((encode_sockaddr(&WEB), 16))
    );
    // A small buffer gets the start, and the full length is reported.
    assert_eq!(
        rewrite_source(&encode_sockaddr(&relay), 4, peer_of),
        Some((encode_sockaddr(&WEB)[..4].to_vec(), 16))
    );
    let stranger = SockAddr::V4 {
        ip: [127, 0, 0, 1],
        port: 9,
    };
    assert_eq!(
        rewrite_source(&encode_sockaddr(&stranger), 16, peer_of),
        None
    );
}

#[test]
fn sendmmsg_with_names_runs_on_a_rewritten_copy() {
    let mut f = fake();
    make_remote(&mut f, 3);
    let mut entry = vec![0u8; 64];
    entry[0..8].copy_from_slice(&0x1000u64.to_ne_bytes());
    entry[8..12].copy_from_slice(&16u32.to_ne_bytes());
    let mut vec = entry.clone();
    vec.extend_from_slice(&[0u8; 64]);
    f.mem.insert(0x6000, vec);
    let Some(Plan::NativeScratch(s)) = plan(
        libc::SYS_sendmmsg,
        [3, 0x6000, 2, 0, 0, 0],
        false,
        false,
        &mut f,
    ) else {
        panic!("not rewritten");
    };
    let Scratch {
        scratch,
        relocs,
        args,
        values,
        after,
    } = *s;
    assert_eq!(relocs, vec![0]);
    assert_eq!(args, vec![(1, 0)]);
    assert_eq!(values, vec![(2, 2)]);
    assert_eq!(after, AfterNative::MsgLens { vec: 0x6000 });
    assert_eq!(u64_at(&scratch, 0), 128, "name points past the vector");
    assert_eq!(
        decode_sockaddr(&scratch[128..]),
        Some(SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port: 1053
        })
    );
    // The second entry has no name: untouched.
    assert_eq!(&scratch[64..128], &[0u8; 64]);
}

/// A `msghdr` at 0x3000 naming WEB (at 0x1000), one vector of "query"
/// (at 0x2000), and `control` at 0x5000.
fn sendmsg_with_control(f: &mut Fake, control: &[u8]) -> [u64; 6] {
    f.mem
        .insert(0x4000, [0x2000u64, 5].map(u64::to_ne_bytes).concat());
    f.mem.insert(0x5000, control.to_vec());
    let mut msg = 0x1000u64.to_ne_bytes().to_vec();
    msg.extend(16u64.to_ne_bytes());
    msg.extend(0x4000u64.to_ne_bytes());
    msg.extend(1u64.to_ne_bytes());
    msg.extend(0x5000u64.to_ne_bytes());
    msg.extend(u64::try_from(control.len()).unwrap().to_ne_bytes());
    msg.extend(0u64.to_ne_bytes());
    f.mem.insert(0x3000, msg);
    [3, 0x3000, 0, 0, 0, 0]
}

#[test]
fn pure_sendmsg_carries_the_ip_fields_its_control_messages_set() {
    let mut f = fake();
    make_remote(&mut f, 3);
    let mut control = cmsg::encode(libc::SOL_IP, libc::IP_TTL, &9i32.to_ne_bytes());
    control.extend(cmsg::encode(libc::SOL_IP, libc::IP_TOS, &[0x10]));
    let a = sendmsg_with_control(&mut f, &control);
    assert_eq!(
        plan(libc::SYS_sendmsg, a, true, false, &mut f),
        Some(Plan::udp_pure_send(
            3,
            7,
            Some(WEB),
            b"query".to_vec(),
            IpFields {
                ttl: Some(9),
                tos: Some(0x10)
            },
            Then::Number
        ))
    );
    // Without --pure the kernel sends it (and judges the control buffer).
    assert!(matches!(
        plan(libc::SYS_sendmsg, a, false, false, &mut f),
        Some(Plan::NativeScratch(_))
    ));
    // A TTL of 0 and a cut-short header are refused as Linux does.
    let zero = cmsg::encode(libc::SOL_IP, libc::IP_TTL, &0i32.to_ne_bytes());
    let a = sendmsg_with_control(&mut f, &zero);
    assert_eq!(
        plan(libc::SYS_sendmsg, a, true, false, &mut f),
        Some(fail(Errno::EINVAL))
    );
    let a = sendmsg_with_control(&mut f, &control[..40]);
    assert_eq!(
        plan(libc::SYS_sendmsg, a, true, false, &mut f),
        Some(fail(Errno::EINVAL))
    );
}
