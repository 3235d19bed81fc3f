//! The file-system planners on plain values, through [`plan`] and a
//! [`FakeTracee`] with `--mount /r=/srv`. Tests only.

mod fds;
mod links;

use super::proc_fd_reference;
use crate::errno::Errno;
use crate::proto::{Handle, RemotePath, Request, XattrTarget};
use crate::syscall::plan::{AfterNative, Forwarding, Plan, StatLayout, Then, plan};
use crate::syscall::testutil::{FakeTracee, mounted};

/// Where the tests put a path, a second path, and a buffer.
const P: u64 = 0x1000;
const P2: u64 = 0x2000;
const BUF: u64 = 0x3000;
/// `AT_FDCWD` as a register holds it (sign-extended).
const AT_FDCWD: u64 = (-100_i64).cast_unsigned();

fn rp(s: &str) -> RemotePath {
    RemotePath(s.as_bytes().to_vec())
}

fn forward(request: Request, then: Then) -> Plan {
    Plan::Forward { request, then }
}

fn fail(e: i32) -> Plan {
    Plan::Return(-i64::from(e))
}

/// Plans `nr` with `--mount /r=/srv` for a program whose path argument
/// at `P` is `path`.
fn plan_path(t: &mut FakeTracee, nr: i64, path: &str, a: [u64; 6]) -> Plan {
    t.put_str(P, path);
    plan(nr, a, &mounted(), t)
}

fn stat_then() -> Then {
    Then::Stat {
        addr: BUF,
        layout: StatLayout::Stat,
    }
}

#[test]
fn proc_fd_paths_name_the_fd() {
    assert_eq!(proc_fd_reference(b"/proc/self/fd/3"), Some((3, Vec::new())));
    assert_eq!(
        proc_fd_reference(b"/dev/fd/12/x/y"),
        Some((12, b"x/y".to_vec()))
    );
    assert_eq!(
        proc_fd_reference(b"/proc/thread-self/fd/0"),
        Some((0, Vec::new()))
    );
    assert_eq!(proc_fd_reference(b"/proc/self/fdinfo/3"), None);
    assert_eq!(proc_fd_reference(b"/proc/self/fd/x"), None);
}

#[test]
fn stat_in_a_mount_is_forwarded_and_outside_runs_natively() {
    let mut t = FakeTracee::new();
    let a = [P, BUF, 0, 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_stat, "/r/a", a),
        forward(
            Request::Stat {
                path: rp("/srv/a"),
                follow: true
            },
            stat_then()
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_lstat, "/r/a", a),
        forward(
            Request::Stat {
                path: rp("/srv/a"),
                follow: false
            },
            stat_then()
        )
    );
    assert_eq!(plan_path(&mut t, libc::SYS_stat, "/etc/a", a), Plan::Native);
    // A name that merely starts like the mount is not in it.
    assert_eq!(plan_path(&mut t, libc::SYS_stat, "/rr/a", a), Plan::Native);
}

#[test]
fn statx_lays_out_a_statx_and_relative_paths_start_at_the_cwd() {
    let mut t = FakeTracee::new();
    t.cwd = b"/r/d".to_vec();
    let a = [AT_FDCWD, P, 0, 0, BUF, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_statx, "x", a),
        forward(
            Request::Stat {
                path: rp("/srv/d/x"),
                follow: true
            },
            Then::Stat {
                addr: BUF,
                layout: StatLayout::Statx
            }
        )
    );
}

#[test]
fn empty_path_is_enoent_unless_at_empty_path() {
    let mut t = FakeTracee::new();
    t.remote_fd(5, 9, "/r/f", libc::O_RDONLY, false);
    let newfstatat = |flags: i32| [5, P, BUF, flags.cast_unsigned().into(), 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_newfstatat, "", newfstatat(0)),
        fail(libc::ENOENT)
    );
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_newfstatat,
            "",
            newfstatat(libc::AT_EMPTY_PATH)
        ),
        forward(Request::Fstat { handle: Handle(9) }, stat_then())
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlink, "", [P, 0, 0, 0, 0, 0]),
        fail(libc::ENOENT)
    );
}

#[test]
fn stat_of_the_empty_path_at_a_remote_cwd_is_the_cwd() {
    let mut t = FakeTracee::new();
    t.cwd = b"/r/d".to_vec();
    t.virtual_cwd = true;
    let flags = u64::from(libc::AT_EMPTY_PATH.cast_unsigned());
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_newfstatat,
            "",
            [AT_FDCWD, P, BUF, flags, 0, 0]
        ),
        forward(
            Request::Stat {
                path: rp("/srv/d"),
                follow: true
            },
            stat_then()
        )
    );
}

#[test]
fn a_path_of_path_max_bytes_is_enametoolong() {
    let mut t = FakeTracee::new();
    let long = format!("/r/{}", "a".repeat(crate::proto::MAX_PATH));
    assert_eq!(
        plan_path(&mut t, libc::SYS_stat, &long, [P, BUF, 0, 0, 0, 0]),
        fail(libc::ENAMETOOLONG)
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_mkdir, &long, [P, 0o755, 0, 0, 0, 0]),
        fail(libc::ENAMETOOLONG)
    );
}

#[test]
fn unreadable_path_is_efault() {
    let mut t = FakeTracee::new();
    assert_eq!(
        plan(
            libc::SYS_stat,
            [0xdead, BUF, 0, 0, 0, 0],
            &mounted(),
            &mut t
        ),
        fail(libc::EFAULT)
    );
}

#[test]
fn rmdir_forwards_the_path_as_spelled() {
    let mut t = FakeTracee::new();
    t.cwd = b"/r".to_vec();
    // The server decides what `a/b/..` names: not collapsed to `a`.
    assert_eq!(
        plan_path(&mut t, libc::SYS_rmdir, "a/b/..", [P, 0, 0, 0, 0, 0]),
        forward(
            Request::Rmdir {
                path: rp("/srv/a/b/..")
            },
            Then::Zero
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_rmdir, "a/.", [P, 0, 0, 0, 0, 0]),
        forward(
            Request::Rmdir {
                path: rp("/srv/a/.")
            },
            Then::Zero
        )
    );
}

#[test]
fn relative_paths_from_a_remote_cwd() {
    let mut t = FakeTracee::new();
    t.cwd = b"/r/d".to_vec();
    t.virtual_cwd = true;
    let a = [P, BUF, 0, 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_stat, "x", a),
        forward(
            Request::Stat {
                path: rp("/srv/d/x"),
                follow: true
            },
            stat_then()
        )
    );
    // Out of the mount, the kernel gets the path spelled out: its own cwd
    // is not the program's.
    assert_eq!(
        plan_path(&mut t, libc::SYS_stat, "../../etc/", a),
        Plan::NativeRewritten {
            paths: vec![(0, b"/etc/".to_vec())],
            after: AfterNative::Nothing
        }
    );
    // An absolute path needs no rewrite.
    assert_eq!(plan_path(&mut t, libc::SYS_stat, "/etc", a), Plan::Native);
}

#[test]
fn a_remote_directory_fd_is_the_base_of_relative_paths() {
    let mut t = FakeTracee::new();
    t.remote_fd(7, 3, "/r/d", libc::O_RDONLY | libc::O_DIRECTORY, true);
    t.local_dirs.insert(8, b"/tmp".to_vec());
    let a = |fd: u64| [fd, P, 0, 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlinkat, "f", a(7)),
        forward(
            Request::Unlink {
                path: rp("/srv/d/f")
            },
            Then::Zero
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlinkat, "f", a(8)),
        Plan::Native
    );
    // A local fd without a path (a pipe): the kernel answers.
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlinkat, "f", a(9)),
        Plan::Native
    );
}

#[test]
fn proc_self_fd_of_a_remote_file_names_that_file() {
    let mut t = FakeTracee::new();
    t.remote_fd(4, 2, "/r/f", libc::O_RDONLY, false);
    t.remote_fd(5, 3, "/r/d", libc::O_RDONLY | libc::O_DIRECTORY, true);
    // A file: the open file itself, by its handle (also once renamed).
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_chmod,
            "/proc/self/fd/4",
            [P, 0o600, 0, 0, 0, 0]
        ),
        forward(
            Request::Fchmod {
                handle: Handle(2),
                mode: 0o600,
            },
            Then::Zero
        )
    );
    // A directory: by its path.
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_chmod,
            "/proc/self/fd/5",
            [P, 0o600, 0, 0, 0, 0]
        ),
        forward(
            Request::Chmod {
                path: rp("/srv/d"),
                mode: 0o600,
                follow: true
            },
            Then::Zero
        )
    );
}

#[test]
fn openat_with_o_creat_forwards_the_mode() {
    let mut t = FakeTracee::new();
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC;
    let a = [AT_FDCWD, P, flags.cast_unsigned().into(), 0o10_644, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_openat, "/r/new", a),
        forward(
            Request::Open {
                path: rp("/srv/new"),
                flags: libc::O_CREAT | libc::O_WRONLY,
                mode: 0o644,
            },
            Then::Open {
                local_path: b"/r/new".to_vec(),
                flags: libc::O_CREAT | libc::O_WRONLY,
                cloexec: true,
            }
        )
    );
    // `creat` is an open with O_CREAT|O_WRONLY|O_TRUNC.
    let Plan::Forward {
        request: Request::Open { flags, mode, .. },
        ..
    } = plan_path(&mut t, libc::SYS_creat, "/r/new", [P, 0o600, 0, 0, 0, 0])
    else {
        panic!("creat in a mount is forwarded")
    };
    assert_eq!(
        (flags, mode),
        (libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 0o600)
    );
}

#[test]
fn openat2_reads_its_open_how() {
    let mut t = FakeTracee::new();
    let mut how = Vec::new();
    how.extend_from_slice(&u64::try_from(libc::O_RDONLY).unwrap().to_ne_bytes());
    how.extend_from_slice(&0o644u64.to_ne_bytes());
    how.extend_from_slice(&0u64.to_ne_bytes());
    t.put(BUF, &how);
    let Plan::Forward {
        request: Request::Open { path, .. },
        ..
    } = plan_path(
        &mut t,
        libc::SYS_openat2,
        "/r/f",
        [AT_FDCWD, P, BUF, 24, 0, 0],
    )
    else {
        panic!("openat2 in a mount is forwarded")
    };
    assert_eq!(path, rp("/srv/f"));
    // A `struct open_how` smaller than the first version's is EINVAL.
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_openat2,
            "/r/f",
            [AT_FDCWD, P, BUF, 16, 0, 0]
        ),
        fail(libc::EINVAL)
    );
}

#[test]
fn resolver_files_open_the_servers_copy_read_only() {
    let mut t = FakeTracee::new();
    let fwd = Forwarding {
        system_files: vec![
            (b"/etc/resolv.conf".to_vec(), Ok(b"/tmp/copy".to_vec())),
            (b"/etc/hosts".to_vec(), Err(Errno::ENOENT)),
        ],
        ..mounted()
    };
    t.put_str(P, "/etc/resolv.conf");
    let open = |flags: i32| [P, flags.cast_unsigned().into(), 0, 0, 0, 0];
    assert_eq!(
        plan(libc::SYS_open, open(libc::O_RDONLY), &fwd, &mut t),
        Plan::NativeRewritten {
            paths: vec![(0, b"/tmp/copy".to_vec())],
            after: AfterNative::Nothing
        }
    );
    assert_eq!(
        plan(libc::SYS_open, open(libc::O_RDWR), &fwd, &mut t),
        fail(libc::EROFS)
    );
    t.put_str(P, "/etc/hosts");
    assert_eq!(
        plan(libc::SYS_open, open(libc::O_RDONLY), &fwd, &mut t),
        fail(libc::ENOENT)
    );
}

#[test]
fn rename_and_link_need_both_paths_on_one_side() {
    let mut t = FakeTracee::new();
    t.put_str(P2, "/r/b");
    let a = [P, P2, 0, 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_rename, "/r/a", a),
        forward(
            Request::Rename {
                from: rp("/srv/a"),
                to: rp("/srv/b"),
                flags: 0
            },
            Then::Zero
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_link, "/tmp/a", a),
        fail(libc::EXDEV)
    );
    t.put_str(P2, "/tmp/b");
    assert_eq!(
        plan_path(&mut t, libc::SYS_rename, "/tmp/a", a),
        Plan::Native
    );
    // renameat2(olddirfd, old, newdirfd, new, flags).
    t.put_str(P2, "/r/b");
    let Plan::Forward {
        request: Request::Rename { flags, .. },
        ..
    } = plan_path(
        &mut t,
        libc::SYS_renameat2,
        "/r/a",
        [
            AT_FDCWD,
            P,
            AT_FDCWD,
            P2,
            u64::from(libc::RENAME_NOREPLACE),
            0,
        ],
    )
    else {
        panic!("renameat2 in a mount is forwarded")
    };
    assert_eq!(flags, libc::RENAME_NOREPLACE);
}

#[test]
fn linkat_follows_only_with_at_symlink_follow_and_ignores_at_empty_path_with_a_path() {
    let mut t = FakeTracee::new();
    t.put_str(P2, "/r/b");
    let a = |flags: i32| [AT_FDCWD, P, AT_FDCWD, P2, flags.cast_unsigned().into(), 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/r/a", a(libc::AT_SYMLINK_FOLLOW)),
        forward(
            Request::Link {
                from: rp("/srv/a"),
                to: rp("/srv/b"),
                follow: true
            },
            Then::Zero
        )
    );
    // `AT_EMPTY_PATH` only matters when the path is empty: this is a
    // link of `/r/a`, which only the server can make (the kernel would
    // look for `/r/a` on the local disk).
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/r/a", a(libc::AT_EMPTY_PATH)),
        forward(
            Request::Link {
                from: rp("/srv/a"),
                to: rp("/srv/b"),
                follow: false
            },
            Then::Zero
        )
    );
    // Outside the mount it stays the kernel's.
    t.put_str(P2, "/tmp/b");
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/tmp/a", a(libc::AT_EMPTY_PATH)),
        Plan::Native
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_linkat, "/r/a", a(0x8000)),
        fail(libc::EINVAL)
    );
}

#[test]
fn unlinkat_flags() {
    let mut t = FakeTracee::new();
    let a = |flags: i32| [AT_FDCWD, P, flags.cast_unsigned().into(), 0, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlinkat, "/r/d", a(libc::AT_REMOVEDIR)),
        forward(Request::Rmdir { path: rp("/srv/d") }, Then::Zero)
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlinkat, "/r/d", a(0x1000)),
        fail(libc::EINVAL)
    );
}

#[test]
fn symlink_targets_in_a_mount_are_stored_as_the_server_names_them() {
    let mut t = FakeTracee::new();
    t.put_str(P2, "/r/l");
    let symlink = |t: &mut FakeTracee, target: &str| {
        t.put_str(P, target);
        plan(libc::SYS_symlink, [P, P2, 0, 0, 0, 0], &mounted(), t)
    };
    assert_eq!(
        symlink(&mut t, "/r/t"),
        forward(
            Request::Symlink {
                target: b"/srv/t".to_vec(),
                path: rp("/srv/l")
            },
            Then::Zero
        )
    );
    assert_eq!(
        symlink(&mut t, "t/../u"),
        forward(
            Request::Symlink {
                target: b"t/../u".to_vec(),
                path: rp("/srv/l")
            },
            Then::Zero
        )
    );
    assert_eq!(symlink(&mut t, ""), fail(libc::ENOENT));
}

#[test]
fn readlink_needs_a_positive_size() {
    let mut t = FakeTracee::new();
    assert_eq!(
        plan_path(&mut t, libc::SYS_readlink, "/r/l", [P, BUF, 64, 0, 0, 0]),
        forward(
            Request::Readlink { path: rp("/srv/l") },
            Then::Readlink { addr: BUF, cap: 64 }
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_readlink, "/r/l", [P, BUF, 0, 0, 0, 0]),
        fail(libc::EINVAL)
    );
}

#[test]
fn mkdir_and_mknod_keep_only_the_bits_the_kernel_takes() {
    let mut t = FakeTracee::new();
    assert_eq!(
        plan_path(&mut t, libc::SYS_mkdir, "/r/d", [P, 0o41_777, 0, 0, 0, 0]),
        forward(
            Request::Mkdir {
                path: rp("/srv/d"),
                mode: 0o1777
            },
            Then::Zero
        )
    );
    let mode = u64::from(libc::S_IFIFO | 0o644) | 0x1_0000_0000;
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_mknod,
            "/r/p",
            [P, mode, 0x1_0000_0005, 0, 0, 0]
        ),
        forward(
            Request::Mknod {
                path: rp("/srv/p"),
                mode: libc::S_IFIFO | 0o644,
                dev: 5
            },
            Then::Zero
        )
    );
}

#[test]
fn access_forwards_mode_and_flags() {
    let mut t = FakeTracee::new();
    let a = [
        AT_FDCWD,
        P,
        4,
        u64::from(libc::AT_EACCESS.cast_unsigned()),
        0,
        0,
    ];
    assert_eq!(
        plan_path(&mut t, libc::SYS_faccessat2, "/r/f", a),
        forward(
            Request::Access {
                path: rp("/srv/f"),
                mode: 4,
                flags: libc::AT_EACCESS
            },
            Then::Zero
        )
    );
}

#[test]
fn exec_of_a_remote_file_is_copied_first() {
    let mut t = FakeTracee::new();
    assert_eq!(
        plan_path(&mut t, libc::SYS_execve, "/r/bin/sh", [P, 0, 0, 0, 0, 0]),
        Plan::ExecRemote {
            path: rp("/srv/bin/sh"),
            path_arg: 0,
            argv_arg: 1,
        }
    );
}

#[test]
fn chdir_into_a_mount_checks_the_directory_first() {
    let mut t = FakeTracee::new();
    assert_eq!(
        plan_path(&mut t, libc::SYS_chdir, "/r/d", [P, 0, 0, 0, 0, 0]),
        forward(
            Request::CheckDir { path: rp("/srv/d") },
            Then::Chdir {
                local_path: b"/r/d".to_vec()
            }
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_chdir, "/tmp", [P, 0, 0, 0, 0, 0]),
        Plan::Native
    );
    t.virtual_cwd = true;
    t.cwd = b"/r/d".to_vec();
    assert_eq!(
        plan_path(&mut t, libc::SYS_chdir, "/tmp", [P, 0, 0, 0, 0, 0]),
        Plan::NativeRewritten {
            paths: Vec::new(),
            after: AfterNative::LeaveVirtualCwd
        }
    );
}

#[test]
fn xattr_sizes_and_names() {
    let mut t = FakeTracee::new();
    t.put_str(P2, "user.a");
    let get = |size: u64| [P, P2, BUF, size, 0, 0];
    assert_eq!(
        plan_path(&mut t, libc::SYS_lgetxattr, "/r/f", get(0)),
        forward(
            Request::GetXattr {
                target: XattrTarget::Path {
                    path: rp("/srv/f"),
                    follow: false
                },
                name: b"user.a".to_vec(),
                size: 0
            },
            Then::Number
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_getxattr, "/r/f", get(10)),
        forward(
            Request::GetXattr {
                target: XattrTarget::Path {
                    path: rp("/srv/f"),
                    follow: true
                },
                name: b"user.a".to_vec(),
                size: 10
            },
            Then::Data {
                addr: BUF,
                cap: 10,
                truncate: false
            }
        )
    );
    t.put_str(P2, "");
    assert_eq!(
        plan_path(&mut t, libc::SYS_getxattr, "/r/f", get(10)),
        fail(libc::ERANGE)
    );
    t.put_str(P2, "user.a");
    t.remote_fd(5, 9, "/r/f", libc::O_RDONLY, false);
    t.put(BUF, b"v");
    assert_eq!(
        plan(
            libc::SYS_fsetxattr,
            [5, P2, BUF, 1, 0, 0],
            &mounted(),
            &mut t
        ),
        forward(
            Request::SetXattr {
                target: XattrTarget::Handle(Handle(9)),
                name: b"user.a".to_vec(),
                value: b"v".to_vec(),
                flags: 0
            },
            Then::Zero
        )
    );
}

#[test]
fn truncate_and_statfs_in_a_mount() {
    let mut t = FakeTracee::new();
    assert_eq!(
        plan_path(&mut t, libc::SYS_truncate, "/r/f", [P, 10, 0, 0, 0, 0]),
        forward(
            Request::Truncate {
                path: rp("/srv/f"),
                len: 10
            },
            Then::Zero
        )
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_statfs, "/r", [P, BUF, 0, 0, 0, 0]),
        forward(
            Request::Statfs { path: rp("/srv") },
            Then::Statfs { addr: BUF }
        )
    );
}

#[test]
fn a_local_symlink_into_a_mount_is_followed_where_the_call_follows() {
    let mut t = FakeTracee::new();
    t.local_links
        .insert(b"/home/t".to_vec(), b"/r/tree".to_vec());
    // A relative link to the first one: two hops.
    t.local_links.insert(b"/home/u".to_vec(), b"t/sub".to_vec());
    let stat = |flags: i32| [AT_FDCWD, P, BUF, u64::from(flags.cast_unsigned()), 0, 0];
    let remote_stat = |path: &str, follow: bool| {
        forward(
            Request::Stat {
                path: rp(path),
                follow,
            },
            stat_then(),
        )
    };
    // Through the link, at any component before the last.
    assert_eq!(
        plan_path(&mut t, libc::SYS_newfstatat, "/home/t/f", stat(0)),
        remote_stat("/srv/tree/f", true)
    );
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_newfstatat,
            "/home/u/x",
            stat(libc::AT_SYMLINK_NOFOLLOW)
        ),
        remote_stat("/srv/tree/sub/x", false)
    );
    // The link itself: followed by stat, not by lstat or unlink.
    assert_eq!(
        plan_path(&mut t, libc::SYS_newfstatat, "/home/t", stat(0)),
        remote_stat("/srv/tree", true)
    );
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_newfstatat,
            "/home/t",
            stat(libc::AT_SYMLINK_NOFOLLOW)
        ),
        Plan::Native
    );
    assert_eq!(
        plan_path(&mut t, libc::SYS_unlink, "/home/t", [P, 0, 0, 0, 0, 0]),
        Plan::Native
    );
    // A trailing slash follows the last component too.
    assert_eq!(
        plan_path(
            &mut t,
            libc::SYS_newfstatat,
            "/home/t/",
            stat(libc::AT_SYMLINK_NOFOLLOW)
        ),
        remote_stat("/srv/tree", false)
    );
    // Paths without such a link stay local.
    assert_eq!(
        plan_path(&mut t, libc::SYS_newfstatat, "/home/v/f", stat(0)),
        Plan::Native
    );
}
