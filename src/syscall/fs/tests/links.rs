//! `link`/`linkat` of an open remote file (how an `O_TMPFILE` file gets
//! its name), and paths that must not reach such a file. Tests only.

use super::{AT_FDCWD, BUF, P, P2, fail, forward, plan_path, rp};
use crate::proto::{Handle, Request};
use crate::syscall::plan::{Plan, StatLayout, Then};
use crate::syscall::testutil::FakeTracee;

#[test]
fn linkat_gives_an_open_remote_file_a_name_by_its_handle() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/r/d", libc::O_TMPFILE | libc::O_RDWR, false);
    t.remote_fd(4, 8, "/r/f", libc::O_RDONLY, false);
    t.put_str(P2, "/r/d/name");
    let empty = |fd: u64| {
        [
            fd,
            P,
            AT_FDCWD,
            P2,
            libc::AT_EMPTY_PATH.cast_unsigned().into(),
            0,
        ]
    };
    let linked = |handle: u64, empty_path: bool| {
        forward(
            Request::LinkHandle {
                handle: Handle(handle),
                to: rp("/srv/d/name"),
                empty_path,
            },
            Then::Zero,
        )
    };
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", empty(3)),
        linked(7, true)
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", empty(4)),
        linked(8, true)
    );
    // glibc's and coreutils' form, which needs no privilege.
    let follow = [
        AT_FDCWD,
        P,
        AT_FDCWD,
        P2,
        libc::AT_SYMLINK_FOLLOW.cast_unsigned().into(),
        0,
    ];
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/proc/self/fd/3", follow),
        linked(7, false)
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/dev/fd/4", follow),
        linked(8, false)
    );
    // Not followed, `/proc/self/fd/3` is procfs's own symlink: `link(2)`
    // never follows.
    let nofollow = [AT_FDCWD, P, AT_FDCWD, P2, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/proc/self/fd/3", nofollow),
        fail(libc::EXDEV)
    );
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_link,
            "/proc/self/fd/3",
            [P, P2, 0, 0, 0, 0]
        ),
        fail(libc::EXDEV)
    );
    // An empty path without `AT_EMPTY_PATH` names nothing.
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", [3, P, AT_FDCWD, P2, 0, 0]),
        fail(libc::ENOENT)
    );
}

#[test]
fn linkat_across_the_mount_edge_is_exdev() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/r/d", libc::O_TMPFILE | libc::O_RDWR, false);
    let empty = |fd: u64| {
        [
            fd,
            P,
            AT_FDCWD,
            P2,
            libc::AT_EMPTY_PATH.cast_unsigned().into(),
            0,
        ]
    };
    // A remote file into a local directory.
    t.put_str(P2, "/tmp/name");
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", empty(3)),
        fail(libc::EXDEV)
    );
    let follow = [
        AT_FDCWD,
        P,
        AT_FDCWD,
        P2,
        libc::AT_SYMLINK_FOLLOW.cast_unsigned().into(),
        0,
    ];
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/proc/self/fd/3", follow),
        fail(libc::EXDEV)
    );
    // A local fd (5) into a mount, and into a local directory.
    t.put_str(P2, "/r/name");
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", empty(5)),
        fail(libc::EXDEV)
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/proc/self/fd/5", follow),
        fail(libc::EXDEV)
    );
    t.put_str(P2, "/tmp/name");
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", empty(5)),
        Plan::Native
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/proc/self/fd/5", follow),
        Plan::Native
    );
    // The remote working directory is a directory, never linked.
    t.virtual_cwd = true;
    t.cwd = b"/r/d".to_vec();
    t.put_str(P2, "/r/name");
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "", empty(AT_FDCWD)),
        fail(libc::EPERM)
    );
}

#[test]
fn no_path_names_an_o_tmpfile_file() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/r/d", libc::O_TMPFILE | libc::O_RDWR, false);
    // Its path is the directory's: only `/proc/self/fd/3` itself, which
    // names the open file, reaches it (by its handle).
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_chmod,
            "/proc/self/fd/3",
            [P, 0o600, 0, 0, 0, 0]
        ),
        forward(
            Request::Fchmod {
                handle: Handle(7),
                mode: 0o600
            },
            Then::Zero
        )
    );
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_stat,
            "/proc/self/fd/3/x",
            [P, BUF, 0, 0, 0, 0]
        ),
        fail(libc::ENOTDIR)
    );
    // Nor is it a directory to start from.
    assert_eq!(
        plan_path(&mut t, libc::SYS_openat, "x", [3, P, 0, 0, 0, 0]),
        fail(libc::ENOTDIR)
    );
}

#[test]
fn proc_self_fd_of_a_remote_file_is_that_open_file() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/r/d", libc::O_TMPFILE | libc::O_RDWR, false);
    t.remote_fd(4, 8, "/r/f", libc::O_RDONLY, false);
    t.remote_fd(5, 9, "/r/dir", libc::O_RDONLY | libc::O_DIRECTORY, true);
    let stat = |layout| Then::Stat { addr: BUF, layout };
    // Every spelling of the program's own fd: its handle's fstat. The
    // fake's pid is 1.
    for path in [
        "/proc/self/fd/3",
        "/proc/thread-self/fd/3",
        "/dev/fd/3",
        "/proc/1/fd/3",
        "/proc/self/../self/fd/3",
    ] {
        assert_eq!(
            plan_path(&mut t, libc::SYS_stat, path, [P, BUF, 0, 0, 0, 0]),
            forward(Request::Fstat { handle: Handle(7) }, stat(StatLayout::Stat)),
            "{path}"
        );
    }
    let statx = [AT_FDCWD, P, 0, 0x7ff, BUF, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_statx, "/dev/fd/4", statx),
        forward(
            Request::Fstat { handle: Handle(8) },
            stat(StatLayout::Statx)
        )
    );
    // Another process's fd N is not the caller's.
    assert_eq!(
        plan_path(&mut t, libc::SYS_stat, "/proc/2/fd/3", [P, BUF, 0, 0, 0, 0]),
        Plan::Native
    );
    // fchmodat follows it; an open reopens the file with the open's
    // flags, keeping a tmpfile's mark.
    let fchmodat = [AT_FDCWD, P, 0o640, 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_fchmodat, "/proc/self/fd/4", fchmodat),
        forward(
            Request::Fchmod {
                handle: Handle(8),
                mode: 0o640
            },
            Then::Zero
        )
    );
    let flags = libc::O_WRONLY | libc::O_APPEND | libc::O_CLOEXEC;
    let openat = |flags: i32| [AT_FDCWD, P, flags.cast_unsigned().into(), 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_openat, "/proc/self/fd/3", openat(flags)),
        forward(
            Request::Reopen {
                handle: Handle(7),
                flags: libc::O_WRONLY | libc::O_APPEND
            },
            Then::Open {
                local_path: b"/r/d".to_vec(),
                flags: libc::O_WRONLY | libc::O_APPEND | libc::O_TMPFILE,
                cloexec: true
            }
        )
    );
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_openat,
            "/dev/fd/4",
            openat(libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY)
        ),
        fail(libc::EEXIST)
    );
    // Not followed, or a directory: a path as before.
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_newfstatat,
            "/proc/self/fd/4",
            [
                AT_FDCWD,
                P,
                BUF,
                libc::AT_SYMLINK_NOFOLLOW.cast_unsigned().into(),
                0,
                0
            ]
        ),
        forward(
            Request::Stat {
                path: rp("/srv/f"),
                follow: false
            },
            stat(StatLayout::Stat)
        )
    );
    assert!(!matches!(
        plan_path(
            &mut t,
            libc::SYS_stat,
            "/proc/self/fd/5",
            [P, BUF, 0, 0, 0, 0]
        ),
        Plan::Remote {
            operation: crate::syscall::operation::Operation::File(Request::Fstat { .. }),
            ..
        }
    ));
}
