//! The planners of calls on remote fds (`src/syscall/fs/io.rs` and the
//! fd forms in the other families) on plain values. Tests only.

use super::{BUF, P, fail, forward, plan_path};
use crate::proto::{Handle, MAX_IO, Request, TimeUpdate};
use crate::syscall::plan::{AfterNative, Plan, Then, plan};
use crate::syscall::testutil::{FakeTracee, mounted};

#[test]
fn fcntl_on_a_remote_fd() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDWR | libc::O_APPEND, false);
    let fcntl = |t: &mut FakeTracee, cmd: i32, arg: i32| {
        let a = [
            5,
            cmd.cast_unsigned().into(),
            arg.cast_unsigned().into(),
            0,
            0,
            0,
        ];
        plan(libc::SYS_fcntl, a, &mounted(), t)
    };
    assert_eq!(
        fcntl(&mut t, libc::F_GETFL, 0),
        Plan::Return(i64::from(libc::O_RDWR | libc::O_APPEND | libc::O_LARGEFILE))
    );
    assert_eq!(
        fcntl(&mut t, libc::F_SETFL, libc::O_NONBLOCK | libc::O_TRUNC),
        forward(
            Request::SetFlags {
                handle: Handle(9),
                flags: libc::O_NONBLOCK
            },
            Then::SetFlags {
                key: 1009,
                flags: libc::O_RDWR | libc::O_NONBLOCK
            }
        )
    );
    // A record lock whose `struct flock` cannot be read.
    assert_eq!(fcntl(&mut t, libc::F_SETLK, 0), fail(libc::EFAULT));
    assert_eq!(fcntl(&mut t, libc::F_DUPFD, 0), Plan::Native);
}

#[test]
fn read_and_write_on_a_remote_fd_are_forwarded() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDWR, false);
    let big = u64::from(MAX_IO) + 1;
    assert_eq!(
        plan(libc::SYS_read, [5, BUF, big, 0, 0, 0], &mounted(), &mut t),
        forward(
            Request::Read {
                handle: Handle(9),
                len: MAX_IO
            },
            Then::Data {
                addr: BUF,
                cap: big,
                truncate: true
            }
        )
    );
    t.put(BUF, b"hello");
    assert_eq!(
        plan(libc::SYS_pwrite64, [5, BUF, 5, 7, 0, 0], &mounted(), &mut t),
        forward(
            Request::Pwrite {
                handle: Handle(9),
                data: b"hello".to_vec(),
                offset: 7
            },
            Then::Number
        )
    );
    // A local fd is the kernel's.
    assert_eq!(
        plan(libc::SYS_read, [3, BUF, 5, 0, 0, 0], &mounted(), &mut t),
        Plan::Native
    );
}

#[test]
fn vectored_io_on_a_remote_fd() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDWR, false);
    let mut iov = Vec::new();
    for (base, len) in [(0x5000u64, 3u64), (0x6000, 2)] {
        iov.extend_from_slice(&base.to_ne_bytes());
        iov.extend_from_slice(&len.to_ne_bytes());
    }
    t.put(BUF, &iov);
    t.put(0x5000, b"abc").put(0x6000, b"de");
    assert_eq!(
        plan(libc::SYS_readv, [5, BUF, 2, 0, 0, 0], &mounted(), &mut t),
        forward(
            Request::Read {
                handle: Handle(9),
                len: 5
            },
            Then::DataIov {
                iov: vec![(0x5000, 3), (0x6000, 2)]
            }
        )
    );
    // pwritev2 at offset -1 writes at the file position.
    assert_eq!(
        plan(
            libc::SYS_pwritev2,
            [5, BUF, 2, u64::MAX, 0, 0],
            &mounted(),
            &mut t
        ),
        forward(
            Request::Write {
                handle: Handle(9),
                data: b"abcde".to_vec()
            },
            Then::Number
        )
    );
    assert_eq!(
        plan(libc::SYS_readv, [5, BUF, 1025, 0, 0, 0], &mounted(), &mut t),
        fail(libc::EINVAL)
    );
}

#[test]
fn in_kernel_copies_with_a_remote_fd_fall_back() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDONLY, false);
    let fwd = mounted();
    assert_eq!(
        plan(libc::SYS_copy_file_range, [3, 0, 5, 0, 9, 0], &fwd, &mut t),
        fail(libc::EXDEV)
    );
    assert_eq!(
        plan(libc::SYS_splice, [5, 0, 3, 0, 9, 0], &fwd, &mut t),
        fail(libc::EINVAL)
    );
    assert_eq!(
        plan(libc::SYS_sendfile, [3, 5, 0, 9, 0, 0], &fwd, &mut t),
        fail(libc::EINVAL)
    );
    assert_eq!(
        plan(libc::SYS_copy_file_range, [3, 0, 4, 0, 9, 0], &fwd, &mut t),
        Plan::Native
    );
}

#[test]
fn fchdir_and_getcwd_with_remote_directories() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/d", libc::O_RDONLY, true);
    t.remote_fd(6, 8, "/r/f", libc::O_RDONLY, false);
    let fwd = mounted();
    assert_eq!(
        plan(libc::SYS_fchdir, [5, 0, 0, 0, 0, 0], &fwd, &mut t),
        Plan::EnterRemoteDir {
            local_path: b"/r/d".to_vec()
        }
    );
    assert_eq!(
        plan(libc::SYS_fchdir, [6, 0, 0, 0, 0, 0], &fwd, &mut t),
        fail(libc::ENOTDIR)
    );
    assert_eq!(
        plan(libc::SYS_getcwd, [BUF, 100, 0, 0, 0, 0], &fwd, &mut t),
        Plan::Native
    );
    t.virtual_cwd = true;
    t.cwd = b"/r/d".to_vec();
    assert_eq!(
        plan(libc::SYS_getcwd, [BUF, 100, 0, 0, 0, 0], &fwd, &mut t),
        Plan::Answer {
            ret: 5,
            writes: vec![(BUF, b"/r/d\0".to_vec())]
        }
    );
    assert_eq!(
        plan(libc::SYS_getcwd, [BUF, 4, 0, 0, 0, 0], &fwd, &mut t),
        fail(libc::ERANGE)
    );
    // A local fchdir leaves the remote cwd.
    assert_eq!(
        plan(libc::SYS_fchdir, [3, 0, 0, 0, 0, 0], &fwd, &mut t),
        Plan::NativeRewritten {
            paths: Vec::new(),
            after: AfterNative::LeaveVirtualCwd
        }
    );
}

#[test]
fn getdents64_on_a_remote_directory() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/d", libc::O_RDONLY, true);
    assert_eq!(
        plan(
            libc::SYS_getdents64,
            [5, BUF, 4096, 0, 0, 0],
            &mounted(),
            &mut t
        ),
        forward(
            Request::Getdents {
                handle: Handle(9),
                bytes: 4096
            },
            Then::Dirents {
                addr: BUF,
                cap: 4096
            }
        )
    );
    assert_eq!(
        plan(
            libc::SYS_getdents,
            [5, BUF, 4096, 0, 0, 0],
            &mounted(),
            &mut t
        ),
        fail(libc::ENOSYS)
    );
}

#[test]
fn utimensat_with_a_null_path_is_futimens_of_the_fd() {
    let mut t = FakeTracee::new();
    t.remote_fd(6, 4, "/r/f", libc::O_WRONLY, false);
    assert_eq!(
        plan(libc::SYS_utimensat, [6, 0, 0, 0, 0, 0], &mounted(), &mut t),
        forward(
            Request::Futimens {
                handle: Handle(4),
                times: [TimeUpdate::Now, TimeUpdate::Now]
            },
            Then::Zero
        )
    );
    assert_eq!(
        plan(libc::SYS_utimensat, [3, 0, 0, 0, 0, 0], &mounted(), &mut t),
        Plan::Native
    );
}

#[test]
fn fchmodat2_with_at_empty_path_is_fchmod_of_the_fd() {
    let mut t = FakeTracee::new();
    t.remote_fd(6, 4, "/r/f", libc::O_RDONLY, false);
    let flags = u64::from(libc::AT_EMPTY_PATH.cast_unsigned());
    assert_eq!(
        plan_path(&mut t, libc::SYS_fchmodat2, "", [6, P, 0o640, flags, 0, 0]),
        forward(
            Request::Fchmod {
                handle: Handle(4),
                mode: 0o640
            },
            Then::Zero
        )
    );
}

#[test]
fn fchmodat2_with_at_empty_path_and_a_name_acts_on_the_fd_today() {
    // Recorded as found: the kernel ignores AT_EMPTY_PATH when the path is
    // not empty and changes `d/name`; the planner changes the directory fd
    // itself (fchownat checks that the path is empty; fchmodat2 does not).
    let mut t = FakeTracee::new();
    t.remote_fd(6, 4, "/r/d", libc::O_RDONLY, true);
    let flags = u64::from(libc::AT_EMPTY_PATH.cast_unsigned());
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_fchmodat2,
            "name",
            [6, P, 0o640, flags, 0, 0]
        ),
        forward(
            Request::Fchmod {
                handle: Handle(4),
                mode: 0o640
            },
            Then::Zero
        )
    );
}

#[test]
fn epoll_ctl_refuses_a_remote_fd_as_linux_refuses_a_regular_file() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDONLY, false);
    t.remote_fd(6, 10, "/r/d", libc::O_RDONLY | libc::O_DIRECTORY, true);
    t.put(BUF, &[0; 12]);
    let epoll_ctl = |t: &mut FakeTracee, op: i32, fd: u64, event: u64| {
        let a = [3, op.cast_unsigned().into(), fd, event, 0, 0];
        plan(libc::SYS_epoll_ctl, a, &mounted(), t)
    };
    for op in [
        libc::EPOLL_CTL_ADD,
        libc::EPOLL_CTL_MOD,
        libc::EPOLL_CTL_DEL,
    ] {
        assert_eq!(epoll_ctl(&mut t, op, 5, BUF), fail(libc::EPERM));
        assert_eq!(epoll_ctl(&mut t, op, 6, BUF), fail(libc::EPERM));
        // A local fd (a socket, a pipe) is the kernel's to judge.
        assert_eq!(epoll_ctl(&mut t, op, 7, BUF), Plan::Native);
    }
    // The event is read first, as the kernel does (not for a delete).
    assert_eq!(
        epoll_ctl(&mut t, libc::EPOLL_CTL_ADD, 5, 0x9000),
        fail(libc::EFAULT)
    );
    assert_eq!(
        epoll_ctl(&mut t, libc::EPOLL_CTL_DEL, 5, 0x9000),
        fail(libc::EPERM)
    );
    // Then `epfd` (3 here): EBADF when it is no open fd, before the
    // target's EPERM.
    t.closed.insert(3);
    for op in [libc::EPOLL_CTL_ADD, libc::EPOLL_CTL_DEL] {
        assert_eq!(epoll_ctl(&mut t, op, 5, BUF), fail(libc::EBADF));
    }
    assert_eq!(
        epoll_ctl(&mut t, libc::EPOLL_CTL_ADD, 5, 0x9000),
        fail(libc::EFAULT)
    );
}
