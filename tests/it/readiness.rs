//! Waiting on remote files: `poll`, `select` and `epoll` on a remote
//! regular file and directory answer as Linux does for local ones (always
//! readable and writable; `epoll_ctl` refuses them with EPERM), compared
//! with the same program run directly; and `tail -f` follows a remote file
//! another process appends to.

use crate::harness::{Backend, Pair, each_mode};

/// Every access mode of a file, and a directory, through `poll`, `select`
/// and each `epoll_ctl` operation.
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
            "pipe: [1]",
        ] {
            assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
        }
    });
}
