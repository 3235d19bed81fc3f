//! [`plan`]'s order of families and [`finish`] of each reply shape, on
//! plain values. Tests only.

use super::*;
use crate::proto::{DirEntry, Statfs};
use crate::syscall::testutil::{FakeTracee, mounted, net};

const BUF: u64 = 0x3000;

fn stat(size: u64) -> Stat {
    Stat {
        mode: libc::S_IFREG | 0o644,
        size,
        ..Stat::default()
    }
}

fn entry(name: &str) -> DirEntry {
    DirEntry {
        ino: 1,
        off: 2,
        kind: libc::DT_REG,
        name: name.as_bytes().to_vec(),
    }
}

fn fin(then: Then, response: Response) -> Outcome {
    finish(then, response, &mounted().mounts)
}

fn returned(ret: i64, writes: Vec<(u64, Vec<u8>)>) -> Outcome {
    Outcome::Return { ret, writes }
}

#[test]
fn mmap_of_a_remote_file_maps_its_shadow() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDONLY, false);
    let a = |fd: u64| [0, 4096, 1, 2, fd, 0];
    assert!(matches!(
        plan(libc::SYS_mmap, a(5), &mounted(), &mut t),
        Plan::Remote {
            operation: Operation::MapShadow {
                handle: Handle(9),
                writable: false
            },
            ..
        }
    ));
    assert_eq!(plan(libc::SYS_mmap, a(3), &mounted(), &mut t), Plan::Native);
}

#[test]
fn close_of_a_remote_file_flushes_held_writes_first() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_WRONLY, false);
    t.remote_fd(6, 8, "/r/d", libc::O_RDONLY, true);
    let close = |t: &mut FakeTracee, fwd: &Forwarding, fd: u64| {
        plan(libc::SYS_close, [fd, 0, 0, 0, 0, 0], fwd, t)
    };
    let flush = Plan::Forward {
        request: Request::FlushWrites { handle: Handle(9) },
        then: Then::CloseAfterFlush,
    };
    // Also without write-behind (`--pure`): a close is where shared
    // mappings of the file write back.
    assert_eq!(close(&mut t, &mounted(), 5), flush);
    let fwd = Forwarding {
        write_behind: true,
        ..mounted()
    };
    assert_eq!(close(&mut t, &fwd, 5), flush);
    assert_eq!(close(&mut t, &fwd, 6), Plan::Native);
}

#[test]
fn uname_and_socket_calls_are_forwarded_only_when_asked() {
    let mut t = FakeTracee::new();
    let a = [BUF, 0, 0, 0, 0, 0];
    assert_eq!(plan(libc::SYS_uname, a, &mounted(), &mut t), Plan::Native);
    let fwd = Forwarding {
        uname: true,
        ..Forwarding::default()
    };
    assert_eq!(
        plan(libc::SYS_uname, a, &fwd, &mut t),
        Plan::Forward {
            request: Request::Uname,
            then: Then::Uname { addr: BUF }
        }
    );
    // Without --net, even a TCP connect is the kernel's.
    t.sockets.insert(3, (libc::AF_INET, libc::SOCK_STREAM));
    t.put(
        BUF,
        &layout::encode_sockaddr(&SockAddr::V4 {
            ip: [10, 0, 0, 1],
            port: 80,
        }),
    );
    let connect = [3, BUF, 16, 0, 0, 0];
    assert_eq!(
        plan(libc::SYS_connect, connect, &mounted(), &mut t),
        Plan::Native
    );
    assert!(matches!(
        plan(libc::SYS_connect, connect, &net(false), &mut t),
        Plan::Remote {
            operation: Operation::TcpConnect { .. },
            fd: Some(3),
            ..
        }
    ));
}

#[test]
fn finish_lays_out_stat_and_statx() {
    let then = |layout| Then::Stat { addr: BUF, layout };
    let Outcome::Return { ret: 0, writes } = fin(then(StatLayout::Stat), Ok(Reply::Stat(stat(7))))
    else {
        panic!("a stat returns 0")
    };
    assert_eq!(writes, vec![(BUF, layout::encode_stat(&stat(7)))]);
    // `st_size` of x86_64's `struct stat`.
    assert_eq!(writes[0].1.len(), 144);
    assert_eq!(writes[0].1[48..56], 7u64.to_ne_bytes());
    assert_eq!(
        fin(then(StatLayout::Statx), Ok(Reply::Stat(stat(7)))),
        returned(0, vec![(BUF, layout::encode_statx(&stat(7)))])
    );
    assert_eq!(
        fin(then(StatLayout::Stat), Err(Errno::ENOENT)),
        returned(-i64::from(libc::ENOENT), Vec::new())
    );
}

#[test]
fn finish_of_data_truncates_or_is_erange() {
    let data = |cap, truncate| Then::Data {
        addr: BUF,
        cap,
        truncate,
    };
    let reply = || Ok(Reply::Data(b"hello".to_vec()));
    assert_eq!(
        fin(data(3, true), reply()),
        returned(3, vec![(BUF, b"hel".to_vec())])
    );
    assert_eq!(
        fin(data(3, false), reply()),
        returned(-i64::from(libc::ERANGE), Vec::new())
    );
    assert_eq!(
        fin(data(10, false), reply()),
        returned(5, vec![(BUF, b"hello".to_vec())])
    );
    // Nothing to write for an empty read (end of file).
    assert_eq!(
        fin(data(10, true), Ok(Reply::Data(Vec::new()))),
        returned(0, Vec::new())
    );
}

#[test]
fn finish_of_a_sockopt_value_writes_what_fits_and_its_length() {
    let value = |room| Then::SockOptValue {
        addr: BUF,
        len_addr: 0x4000,
        room,
    };
    let info = || Ok(Reply::Data(vec![7u8; 232]));
    assert_eq!(
        fin(value(104), info()),
        returned(
            0,
            vec![
                (BUF, vec![7u8; 104]),
                (0x4000, 104u32.to_ne_bytes().to_vec())
            ]
        )
    );
    // More room than the structure: its own length.
    assert_eq!(
        fin(value(4096), info()),
        returned(
            0,
            vec![
                (BUF, vec![7u8; 232]),
                (0x4000, 232u32.to_ne_bytes().to_vec())
            ]
        )
    );
    assert_eq!(
        fin(value(8), Err(Errno(libc::ENOTCONN))),
        returned(-i64::from(libc::ENOTCONN), Vec::new())
    );
}

#[test]
fn finish_of_a_readlink_spells_absolute_targets_as_the_program_does() {
    let then = Then::Readlink { addr: BUF, cap: 64 };
    assert_eq!(
        fin(then.clone(), Ok(Reply::Data(b"/srv/t".to_vec()))),
        returned(4, vec![(BUF, b"/r/t".to_vec())])
    );
    assert_eq!(
        fin(then.clone(), Ok(Reply::Data(b"/etc/t".to_vec()))),
        returned(6, vec![(BUF, b"/etc/t".to_vec())])
    );
    assert_eq!(
        fin(
            Then::Readlink { addr: BUF, cap: 2 },
            Ok(Reply::Data(b"abc".to_vec()))
        ),
        returned(2, vec![(BUF, b"ab".to_vec())])
    );
}

#[test]
fn finish_scatters_data_over_iovecs() {
    let then = Then::DataIov {
        iov: vec![(0x10, 2), (0x20, 0), (0x30, 4)],
    };
    assert_eq!(
        fin(then, Ok(Reply::Data(b"abcd".to_vec()))),
        returned(4, vec![(0x10, b"ab".to_vec()), (0x30, b"cd".to_vec())])
    );
}

#[test]
fn finish_of_dirents_fits_what_the_buffer_holds() {
    let entries = vec![entry("a"), entry("bb")];
    let (all, fitted) = layout::encode_dirents(&entries, 4096);
    assert_eq!(fitted, 2);
    assert_eq!(
        fin(
            Then::Dirents {
                addr: BUF,
                cap: 4096
            },
            Ok(Reply::Dirents(entries.clone()))
        ),
        returned(i64::try_from(all.len()).unwrap(), vec![(BUF, all)])
    );
    // Not even one entry fits: EINVAL, as getdents64(2).
    assert_eq!(
        fin(
            Then::Dirents { addr: BUF, cap: 8 },
            Ok(Reply::Dirents(entries))
        ),
        returned(-i64::from(libc::EINVAL), Vec::new())
    );
    // The end of the directory.
    assert_eq!(
        fin(
            Then::Dirents { addr: BUF, cap: 8 },
            Ok(Reply::Dirents(Vec::new()))
        ),
        returned(0, Vec::new())
    );
}

#[test]
fn finish_of_the_other_shapes() {
    assert_eq!(fin(Then::Zero, Ok(Reply::Done)), returned(0, Vec::new()));
    assert_eq!(
        fin(Then::Number, Ok(Reply::Count(9))),
        returned(9, Vec::new())
    );
    assert_eq!(
        fin(Then::Number, Ok(Reply::Offset(-2))),
        returned(-2, Vec::new())
    );
    assert_eq!(
        fin(
            Then::Statfs { addr: BUF },
            Ok(Reply::Statfs(Statfs::default()))
        ),
        returned(0, vec![(BUF, layout::encode_statfs(&Statfs::default()))])
    );
    assert_eq!(
        fin(
            Then::Open {
                local_path: b"/r/f".to_vec(),
                flags: libc::O_RDONLY,
                cloexec: true
            },
            Ok(Reply::Opened {
                handle: Handle(3),
                stat: stat(1)
            })
        ),
        Outcome::Placeholder {
            handle: Handle(3),
            stat: stat(1),
            local_path: b"/r/f".to_vec(),
            flags: libc::O_RDONLY,
            cloexec: true
        }
    );
    assert_eq!(
        fin(
            Then::FirstMessageSent { len_addr: BUF },
            Ok(Reply::Count(5))
        ),
        returned(1, vec![(BUF, 5u32.to_ne_bytes().to_vec())])
    );
    // A reply of the wrong kind is EIO, never garbage.
    assert_eq!(
        fin(Then::Zero, Ok(Reply::Count(1))),
        returned(-i64::from(libc::EIO), Vec::new())
    );
}

#[test]
fn finish_of_the_calls_that_run_natively_afterwards() {
    assert_eq!(
        fin(Then::CloseAfterFlush, Err(Errno::EIO)),
        Outcome::RunNative {
            error: Some(Errno::EIO)
        }
    );
    assert_eq!(
        fin(Then::BindSocketFile, Err(Errno(libc::EEXIST))),
        returned(-i64::from(libc::EADDRINUSE), Vec::new())
    );
    assert_eq!(
        fin(Then::BindSocketFile, Ok(Reply::Done)),
        Outcome::RunNativeWith {
            args: [None, None, Some(2), None, None, None]
        }
    );
    assert_eq!(
        fin(Then::ConnectSocketFile, Ok(Reply::Stat(stat(0)))),
        returned(-i64::from(libc::ECONNREFUSED), Vec::new())
    );
}
