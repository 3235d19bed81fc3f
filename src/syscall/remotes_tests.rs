//! Planning with several remotes: each forwarded call names the remote of
//! the mount or remote fd it acts on, and a call that would join two
//! remotes' files (rename, link, copy_file_range, sendfile) fails as
//! across file systems.

use crate::errno::Errno;
use crate::proto::Request;
use crate::syscall::dispatch::plan_on;
use crate::syscall::paths::{MountPoint, MountTable};
use crate::syscall::plan::{Forwarding, Plan};
use crate::syscall::testutil::FakeTracee;

const A: u64 = 0x10_0000;
const B: u64 = 0x20_0000;
const OFF: u64 = 0x30_0000;
/// `AT_FDCWD` as a register holds it.
const CWD: u64 = (-100_i64).cast_unsigned();

/// `/build` on remote 1, `/data` on remote 2, `/build/cache` (nested) on
/// remote 2 too, `/home/r` on the default remote.
fn forwarding() -> Forwarding {
    let mount = |local: &str, remote: &str| MountPoint {
        local: local.as_bytes().to_vec(),
        remote: remote.as_bytes().to_vec(),
    };
    Forwarding {
        mounts: MountTable::placed(vec![
            (mount("/build", "/srv/src"), 1),
            (mount("/data", "/export"), 2),
            (mount("/build/cache", "/export/cache"), 2),
            (mount("/home/r", "/"), 0),
        ]),
        ..Forwarding::default()
    }
}

fn two_paths(nr: i64, from: &str, to: &str) -> (Plan, Option<usize>) {
    let mut t = FakeTracee::new();
    t.put_str(A, from).put_str(B, to);
    let args = match nr {
        libc::SYS_renameat2 | libc::SYS_linkat => [CWD, A, CWD, B, 0, 0],
        _ => [A, B, 0, 0, 0, 0],
    };
    plan_on(nr, args, &forwarding(), &mut t)
}

fn is_forward(plan: &Plan) -> bool {
    matches!(plan, Plan::Forward { .. })
}

#[test]
fn a_path_call_goes_to_the_remote_of_its_mount() {
    let mut t = FakeTracee::new();
    t.put_str(A, "/build/x");
    let (plan, on) = plan_on(libc::SYS_stat, [A, B, 0, 0, 0, 0], &forwarding(), &mut t);
    assert!(is_forward(&plan));
    assert_eq!(on, Some(1));
    // The nested mount is the longest prefix.
    t.put_str(A, "/build/cache/o");
    let (_, on) = plan_on(libc::SYS_stat, [A, B, 0, 0, 0, 0], &forwarding(), &mut t);
    assert_eq!(on, Some(2));
    t.put_str(A, "/home/r/f");
    let (_, on) = plan_on(libc::SYS_stat, [A, B, 0, 0, 0, 0], &forwarding(), &mut t);
    assert_eq!(on, Some(0));
    // Outside every mount: native, no remote.
    t.put_str(A, "/etc/passwd");
    assert_eq!(
        plan_on(libc::SYS_stat, [A, B, 0, 0, 0, 0], &forwarding(), &mut t),
        (Plan::Native, None)
    );
}

#[test]
fn a_path_relative_to_a_remote_dirfd_goes_where_it_ends() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/build/sub", libc::O_RDONLY | libc::O_DIRECTORY, true);
    t.put_str(A, "../../data/f");
    let (plan, on) = plan_on(
        libc::SYS_newfstatat,
        [3, A, B, 0, 0, 0],
        &forwarding(),
        &mut t,
    );
    assert!(is_forward(&plan));
    assert_eq!(on, Some(2));
}

#[test]
fn an_fd_call_goes_to_the_remote_its_file_was_opened_on() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/data/f", libc::O_RDONLY, false);
    t.remote_fd(4, 7, "/build/f", libc::O_RDONLY, false);
    let (plan, on) = plan_on(libc::SYS_fstat, [3, A, 0, 0, 0, 0], &forwarding(), &mut t);
    assert!(is_forward(&plan));
    assert_eq!(on, Some(2));
    // The same server handle on another remote is another file.
    let (_, on) = plan_on(libc::SYS_fstat, [4, A, 0, 0, 0, 0], &forwarding(), &mut t);
    assert_eq!(on, Some(1));
}

#[test]
fn rename_and_link_across_remotes_are_exdev() {
    let exdev = Plan::Return(Errno::EXDEV.as_syscall_return());
    for nr in [
        libc::SYS_rename,
        libc::SYS_renameat2,
        libc::SYS_link,
        libc::SYS_linkat,
    ] {
        assert_eq!(two_paths(nr, "/build/x", "/data/x").0, exdev, "nr {nr}");
        assert_eq!(two_paths(nr, "/data/x", "/build/cache/x").1, Some(2));
        assert!(is_forward(&two_paths(nr, "/data/x", "/build/cache/x").0));
        assert_eq!(two_paths(nr, "/build/cache/x", "/build/x").0, exdev);
        let (plan, on) = two_paths(nr, "/build/x", "/build/y");
        assert!(is_forward(&plan), "nr {nr}");
        assert_eq!(on, Some(1));
    }
}

#[test]
fn linking_an_open_file_into_another_remote_is_exdev() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/build/tmp", libc::O_TMPFILE | libc::O_RDWR, false);
    t.put_str(A, "").put_str(B, "/data/named");
    let args = [3, A, CWD, B, libc::AT_EMPTY_PATH as u64, 0];
    let (plan, _) = plan_on(libc::SYS_linkat, args, &forwarding(), &mut t);
    assert_eq!(plan, Plan::Return(Errno::EXDEV.as_syscall_return()));
    t.put_str(B, "/build/named");
    let (plan, on) = plan_on(libc::SYS_linkat, args, &forwarding(), &mut t);
    assert!(matches!(
        plan,
        Plan::Forward {
            request: Request::LinkHandle { .. },
            ..
        }
    ));
    assert_eq!(on, Some(1));
}

#[test]
fn copies_between_remotes_fall_back_to_read_and_write() {
    let mut t = FakeTracee::new();
    t.remote_fd(3, 7, "/build/x", libc::O_RDONLY, false);
    t.remote_fd(4, 8, "/data/y", libc::O_WRONLY, false);
    t.remote_fd(5, 9, "/build/z", libc::O_WRONLY, false);
    t.put(OFF, &0_i64.to_ne_bytes());
    let copy = |t: &mut FakeTracee, to: u64| {
        plan_on(
            libc::SYS_copy_file_range,
            [3, 0, to, 0, 4096, 0],
            &forwarding(),
            t,
        )
    };
    assert_eq!(
        copy(&mut t, 4).0,
        Plan::Return(Errno::EXDEV.as_syscall_return())
    );
    let (plan, on) = copy(&mut t, 5);
    assert!(matches!(
        plan,
        Plan::Forward {
            request: Request::CopyRange { .. },
            ..
        }
    ));
    assert_eq!(on, Some(1));
    let (plan, _) = plan_on(
        libc::SYS_sendfile,
        [4, 3, 0, 4096, 0, 0],
        &forwarding(),
        &mut t,
    );
    assert_eq!(plan, Plan::Return(Errno::EINVAL.as_syscall_return()));
}

#[test]
fn uname_and_sockets_name_no_mount() {
    let mut fwd = forwarding();
    fwd.uname = true;
    let mut t = FakeTracee::new();
    let (plan, on) = plan_on(libc::SYS_uname, [A, 0, 0, 0, 0, 0], &fwd, &mut t);
    assert!(is_forward(&plan));
    assert_eq!(on, None);
}

#[test]
fn a_trace_line_names_its_remote_only_when_given() {
    use crate::syscall::describe::{Returned, Took, TraceLine};
    let line = TraceLine {
        tid: 7,
        name: "openat",
        args: "AT_FDCWD, \"/data/x\", O_RDONLY",
        ret: Returned::Value(3),
        took: Took::Local,
        note: None,
        remote: None,
    };
    let plain = line.to_string();
    assert!(plain.starts_with("[pid 7] openat(AT_FDCWD"), "{plain}");
    let named = TraceLine {
        remote: Some("nas"),
        ..line
    }
    .to_string();
    assert_eq!(named, plain.replacen("[pid 7] ", "[pid 7] [nas] ", 1));
}
