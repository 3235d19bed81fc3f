//! `link`/`linkat` of an open remote file (how an `O_TMPFILE` file gets
//! its name), and paths that must not reach such a file. Tests only.

use super::{AT_FDCWD, BUF, P, P2, fail, forward, plan_path, rp};
use crate::proto::{Handle, Request};
use crate::syscall::plan::{Plan, Then};
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
    // Its path is the directory's: `/proc/self/fd/3` must not reach it.
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_chmod,
            "/proc/self/fd/3",
            [P, 0o600, 0, 0, 0, 0]
        ),
        fail(libc::ENOENT)
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
