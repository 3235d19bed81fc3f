//! Waiting on remote files: `poll`, `select` and `epoll` on a remote
//! regular file and directory answer as Linux does for local ones (always
//! readable and writable; `epoll_ctl` refuses them with EPERM), compared
//! with the same program run directly; and `tail -f` follows a remote file
//! another process appends to.

use std::fs;
use std::time::Duration;

use crate::harness::{Backend, Pair, Running, each_mode, p};

/// Every access mode of a file, and a directory, through `poll`, `select`
/// and each `epoll_ctl` operation; an `epoll_ctl` whose `epfd` is no open
/// fd is EBADF before the file's EPERM.
#[test]
fn poll_select_and_epoll_on_remote_files_answer_as_linux() {
    let script = r#"
import errno, os, select, sys
d = sys.argv[1]
with open(d + "/ready.txt", "w") as f:
    f.write("hello\n")
fds = {
    "rdonly": os.open(d + "/ready.txt", os.O_RDONLY),
    "wronly": os.open(d + "/ready.txt", os.O_WRONLY | os.O_APPEND),
    "rdwr": os.open(d + "/ready.txt", os.O_RDWR),
    "dir": os.open(d, os.O_RDONLY | os.O_DIRECTORY),
}
for name, fd in fds.items():
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLOUT | select.POLLPRI)
    print(name, "poll:", [ev for _, ev in p.poll(0)])
    r, w, x = select.select([fd], [fd], [fd], 0)
    print(name, "select:", len(r), len(w), len(x))
    ep = select.epoll()
    for op in ("register", "modify", "unregister"):
        try:
            if op == "register":
                ep.register(fd, select.EPOLLIN | select.EPOLLOUT)
            elif op == "modify":
                ep.modify(fd, select.EPOLLIN)
            else:
                ep.unregister(fd)
            print(name, "epoll", op + ":", "ok")
        except OSError as e:
            print(name, "epoll", op + ":", errno.errorcode[e.errno])
    print(name, "epoll wait:", ep.poll(0))
    ep.close()
    # Still the file after all that.
    if name in ("rdonly", "rdwr"):
        print(name, "read:", os.pread(fd, 5, 0))
# The kernel looks at epfd first (EBADF), then at the target (EPERM for a
# file, even when epfd is no epoll instance).
fd = fds["rdonly"]
for name, epfd in (("closed", 999), ("pipe", os.pipe()[0])):
    ep = select.epoll.fromfd(epfd)
    try:
        ep.register(fd, select.EPOLLIN)
        print("bad epfd", name + ":", "ok")
    except OSError as e:
        print("bad epfd", name + ":", errno.errorcode[e.errno])
# A pipe beside them is still the kernel's to watch.
r, w = os.pipe()
ep = select.epoll()
ep.register(r, select.EPOLLIN)
os.write(w, b"x")
print("pipe:", [ev for _, ev in ep.poll(1)])
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (d, _) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        let out = d.out();
        for line in [
            "rdonly poll: [5]",
            "wronly select: 1 1 0",
            "rdwr epoll register: EPERM",
            "dir epoll modify: EPERM",
            "dir epoll unregister: EPERM",
            "rdonly read: b'hello'",
            "bad epfd closed: EBADF",
            "bad epfd pipe: EPERM",
            "pipe: [1]",
        ] {
            assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
        }
    });
}

/// `tail -f` in one run follows a file another run appends to through an
/// fd it keeps open: held appends reach the server without a call that
/// needs them (and tail, refused inotify, polls).
#[test]
fn tail_f_follows_appends_of_another_run_that_keeps_its_fd_open() {
    let writer = r#"
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
for line in (b"second\n", b"third\n"):
    os.write(fd, line)
    print("wrote", line.decode().strip(), flush=True)
    # Waits (a hang guard, not a timing check) until a reader saw it.
    while line.strip() not in open(sys.argv[2], "rb").read():
        time.sleep(0.05)
time.sleep(60)
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let log = format!("{}/app.log", pair.t());
        fs::write(pair.remote_tree.join("app.log"), "first\n").expect("write log");
        let seen = pair.local.join("seen");
        fs::write(&seen, "").expect("seen");
        let mut tail =
            Running::spawn(pair.rscq_cmd(&[], &["timeout", "60", "tail", "-n", "+1", "-f", &log]));
        tail.wait_stdout("first\n", Duration::from_secs(20));
        let mut writer =
            Running::spawn(pair.rscq_cmd(&[], &["python3", "-c", writer, &log, &p(&seen)]));
        for line in ["second", "third"] {
            writer.wait_stdout(&format!("wrote {line}"), Duration::from_secs(20));
            tail.wait_stdout(&format!("{line}\n"), Duration::from_secs(20));
            fs::write(&seen, tail.stdout_now()).expect("seen");
        }
        assert_eq!(tail.stdout_now(), "first\nsecond\nthird\n");
    });
}
