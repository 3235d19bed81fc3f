//! The TCP data calls the issue lists, on a remote connection: `sendfile`
//! from a local file, `splice` from a pipe, `MSG_PEEK`, `MSG_WAITALL`,
//! `MSG_DONTWAIT`, the poll bits of a remote half-close, and the socket
//! used by a forked child and by an exec'd program. Each runs against an
//! echo server in `web`; the output must equal the same program run
//! directly in `remote`.

use crate::harness::{MODES, p, python};
use crate::netns::{Lab, Ns};

const TCP_CALLS_PY: &str = r#"
import errno, os, select, socket, subprocess, sys, time
host, port, scratch = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def recv_exact(s, n, flags=0):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out), flags)
        if not d:
            break
        out += d
    return out

s = socket.create_connection((host, port))

# sendfile(2) from a local file into the remote socket.
path = os.path.join(scratch, "payload.bin")
payload = bytes((i * 7 + 3) % 251 for i in range(300000))
with open(path, "wb") as f:
    f.write(payload)
with open(path, "rb") as f:
    sent = 0
    while sent < len(payload):
        sent += os.sendfile(s.fileno(), f.fileno(), sent, len(payload) - sent)
print("sendfile", sent, recv_exact(s, len(payload)) == payload)

# splice(2) from a pipe into the socket.
r, w = os.pipe()
os.write(w, b"spliced bytes\n")
print("splice", os.splice(r, s.fileno(), 14), recv_exact(s, 14))

# MSG_DONTWAIT on an empty socket.
try:
    s.recv(10, socket.MSG_DONTWAIT)
    print("dontwait got data")
except BlockingIOError as e:
    print("dontwait", errno.errorcode[e.errno])

# MSG_PEEK leaves the bytes; MSG_WAITALL waits for all of them.
s.sendall(b"peek-me-please")
select.select([s], [], [], 30)
first = s.recv(1, socket.MSG_PEEK)
print("peek", first, recv_exact(s, 1, socket.MSG_PEEK) == first)
print("waitall", s.recv(14, socket.MSG_WAITALL))

# A forked child writes on the same connection; an exec'd program too.
pid = os.fork()
if pid == 0:
    s.sendall(b"from child\n")
    os._exit(0)
os.waitpid(pid, 0)
print("child", recv_exact(s, 11))
code = "import os, socket; s = socket.socket(fileno=int(os.environ['FD'])); s.sendall(b'from exec\\n')"
env = dict(os.environ, FD=str(s.fileno()))
subprocess.run([sys.executable, "-c", code], pass_fds=[s.fileno()], env=env, check=True)
print("exec", recv_exact(s, 10))

# Half-close: the server closes after our EOF; poll sees it.
s.shutdown(socket.SHUT_WR)
p = select.poll()
p.register(s, select.POLLIN | select.POLLRDHUP)
deadline = time.time() + 30
bits = 0
while time.time() < deadline and not bits & select.POLLRDHUP:
    for _, m in p.poll(1000):
        bits |= m
names = [n for n in ("POLLIN", "POLLRDHUP", "POLLHUP", "POLLERR") if bits & getattr(select, n)]
print("poll after remote close", names)
print("eof", s.recv(10))
"#;

#[test]
fn tcp_data_calls_on_a_remote_connection() {
    let Some(lab) = Lab::new("tcp_data_calls_on_a_remote_connection", &[]) else {
        return;
    };
    let _echo = lab.web_echo(7000, "-");
    let script = lab.write("tcp_calls.py", TCP_CALLS_PY.as_bytes());
    let scratch = lab.mkdir("scratch");
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let argv = [py.as_str(), p(&script), &web_ip, "7000", p(&scratch)];
    let expected = "sendfile 300000 True\n\
                    splice 14 b'spliced bytes\\n'\n\
                    dontwait EAGAIN\n\
                    peek b'p' True\n\
                    waitall b'peek-me-please'\n\
                    child b'from child\\n'\n\
                    exec b'from exec\\n'\n\
                    poll after remote close ['POLLIN', 'POLLRDHUP', 'POLLHUP']\n\
                    eof b''\n";
    // A small read-ahead window makes the 300 kB echo cross QUIC flow
    // control many times.
    let small_window: &[&str] = &["--readahead-window=65536"];
    let modes: Vec<&[&str]> = MODES.iter().copied().chain([small_window]).collect();
    same_as_native(&lab, &argv, expected, &modes);
}

const RESET_SERVER_PY: &str = r#"
import socket, struct, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(16)
print("READY", flush=True)
while True:
    c, _ = ls.accept()
    c.recv(100)
    # An abortive close: the peer gets a RST.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"#;

const RESET_CLIENT_PY: &str = r#"
import errno, select, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"x\n")
p = select.poll()
p.register(s, select.POLLIN)
bits = 0
deadline = time.time() + 30
while time.time() < deadline and not bits & (select.POLLERR | select.POLLHUP):
    for _, m in p.poll(1000):
        bits |= m
print("poll", [n for n in ("POLLERR", "POLLHUP") if bits & getattr(select, n)])
try:
    print("recv", s.recv(10))
except OSError as e:
    print("recv", errno.errorcode[e.errno])
"#;

/// A reset by the remote peer reaches the program: poll reports POLLERR and
/// POLLHUP, and the read fails with ECONNRESET.
#[test]
fn remote_reset_reaches_the_program() {
    let Some(lab) = Lab::new("remote_reset_reaches_the_program", &[]) else {
        return;
    };
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let server = lab.write("reset_server.py", RESET_SERVER_PY.as_bytes());
    let mut srv = crate::harness::Running::spawn(
        lab.exec(Ns::Web, &[py.as_str(), p(&server), &web_ip, "7002"]),
    );
    srv.wait_stdout("READY", std::time::Duration::from_secs(30));
    let client = lab.write("reset_client.py", RESET_CLIENT_PY.as_bytes());
    let argv = [py.as_str(), p(&client), &web_ip, "7002"];
    let expected = "poll ['POLLERR', 'POLLHUP']\nrecv ECONNRESET\n";
    same_as_native(&lab, &argv, expected, MODES);
}

/// `HOST PORT`: against a raw echo server, `ioctl(FIONBIO)` and
/// `ioctl(FIONREAD)`, then `ppoll`, `pselect6`, `select` and epoll in
/// level- and edge-triggered mode over a local pipe and the remote
/// connection.
const WAITS_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int s, pipefd[2];

/// ppoll on the pipe and the socket, up to `ms`: which are readable.
static void ppoll_both(int ms, int *pipe_ready, int *sock_ready) {
    struct pollfd fds[2] = {{.fd = pipefd[0], .events = POLLIN}, {.fd = s, .events = POLLIN}};
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    int n = ppoll(fds, 2, &t, NULL);
    *pipe_ready = n > 0 && (fds[0].revents & POLLIN);
    *sock_ready = n > 0 && (fds[1].revents & POLLIN);
}

static int unread(void) {
    int n = -1;
    ioctl(s, FIONREAD, &n);
    return n;
}

/// Waits until `want` bytes are queued on the socket.
static int wait_unread(int want) {
    for (int i = 0; i < 3000 && unread() < want; i++) {
        int p, k;
        ppoll_both(10, &p, &k);
    }
    return unread();
}

static void drain(int fd, int n) {
    char buf[8192];
    while (n > 0) {
        ssize_t k = read(fd, buf, n < (int)sizeof buf ? n : (int)sizeof buf);
        if (k <= 0) { printf("short read\n"); exit(1); }
        n -= (int)k;
    }
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    setvbuf(stdout, NULL, _IONBF, 0);
    s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); return 1; }
    if (pipe(pipefd) != 0) return 1;

    int on = 1, off = 0;
    char c;
    ioctl(s, FIONBIO, &on);
    ssize_t r = recv(s, &c, 1, 0);
    printf("FIONBIO on: recv %s, O_NONBLOCK %d\n", r < 0 && errno == EAGAIN ? "EAGAIN" : "?",
           !!(fcntl(s, F_GETFL) & O_NONBLOCK));
    ioctl(s, FIONBIO, &off);
    printf("FIONBIO off: O_NONBLOCK %d\n", !!(fcntl(s, F_GETFL) & O_NONBLOCK));

    char block[5000];
    memset(block, 'A', sizeof block);
    send(s, block, sizeof block, 0);
    printf("FIONREAD %d\n", wait_unread(5000));
    drain(s, 5000);
    printf("FIONREAD after reading %d\n", unread());

    int p, k;
    write(pipefd[1], "p", 1);
    ppoll_both(5000, &p, &k);
    printf("ppoll: pipe %d socket %d\n", p, k);
    drain(pipefd[0], 1);
    send(s, "x", 1, 0);
    ppoll_both(30000, &p, &k);
    printf("ppoll: pipe %d socket %d\n", p, k);
    drain(s, 1);

    fd_set rd;
    struct timespec ts = {.tv_sec = 30};
    send(s, "y", 1, 0);
    FD_ZERO(&rd);
    FD_SET(s, &rd);
    FD_SET(pipefd[0], &rd);
    int n = pselect((s > pipefd[0] ? s : pipefd[0]) + 1, &rd, NULL, NULL, &ts, NULL);
    printf("pselect6: %d ready, socket %d pipe %d\n", n, FD_ISSET(s, &rd), FD_ISSET(pipefd[0], &rd));
    drain(s, 1);
    write(pipefd[1], "q", 1);
    FD_ZERO(&rd);
    FD_SET(s, &rd);
    FD_SET(pipefd[0], &rd);
    struct timeval tv = {.tv_sec = 30};
    n = (int)syscall(SYS_select, (s > pipefd[0] ? s : pipefd[0]) + 1, &rd, NULL, NULL, &tv);
    printf("select: %d ready, socket %d pipe %d\n", n, FD_ISSET(s, &rd), FD_ISSET(pipefd[0], &rd));
    drain(pipefd[0], 1);

    int et = epoll_create1(0), lt = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = s};
    epoll_ctl(et, EPOLL_CTL_ADD, s, &ev);
    ev.data.fd = pipefd[0];
    epoll_ctl(et, EPOLL_CTL_ADD, pipefd[0], &ev);
    ev = (struct epoll_event){.events = EPOLLIN, .data.fd = s};
    epoll_ctl(lt, EPOLL_CTL_ADD, s, &ev);
    struct epoll_event got[2];
    send(s, "ab", 2, 0);
    n = epoll_wait(et, got, 2, 30000);
    printf("epoll ET: %d event(s), socket %d\n", n, n > 0 && got[0].data.fd == s);
    wait_unread(2);
    drain(s, 1);
    // Edge-triggered: the byte left is not news; level-triggered: it is.
    printf("epoll ET, one byte left: %d event(s)\n", epoll_wait(et, got, 2, 300));
    printf("epoll LT, one byte left: %d event(s)\n", epoll_wait(lt, got, 2, 0));
    send(s, "c", 1, 0);
    n = epoll_wait(et, got, 2, 30000);
    printf("epoll ET, new byte: %d event(s), socket %d\n", n, n > 0 && got[0].data.fd == s);
    wait_unread(2);
    drain(s, 2);
    write(pipefd[1], "r", 1);
    n = epoll_wait(et, got, 2, 30000);
    printf("epoll ET, pipe: %d event(s), pipe %d\n", n, n > 0 && got[0].data.fd == pipefd[0]);
    close(s);
    return 0;
}
"#;

/// `ioctl(FIONBIO)`/`ioctl(FIONREAD)`, and every way to wait (`ppoll`,
/// `pselect6`, `select`, epoll level- and edge-triggered) over a mix of a
/// local pipe and a remote connection, as directly in `remote`.
#[test]
fn ioctls_and_waits_on_a_remote_connection() {
    let Some(lab) = Lab::new("ioctls_and_waits_on_a_remote_connection", &["gcc"]) else {
        return;
    };
    let _echo = lab.web_echo(7003, "-");
    let src = lab.write("waits.c", WAITS_C.as_bytes());
    let bin = lab.dir.join("waits");
    crate::harness::run(crate::harness::cmd(&["gcc", "-O1", "-o", p(&bin), p(&src)])).success();
    let web_ip = lab.net.web_ip.to_string();
    let argv = [p(&bin), web_ip.as_str(), "7003"];
    let expected = "FIONBIO on: recv EAGAIN, O_NONBLOCK 1\n\
                    FIONBIO off: O_NONBLOCK 0\n\
                    FIONREAD 5000\n\
                    FIONREAD after reading 0\n\
                    ppoll: pipe 1 socket 0\n\
                    ppoll: pipe 0 socket 1\n\
                    pselect6: 1 ready, socket 1 pipe 0\n\
                    select: 1 ready, socket 0 pipe 1\n\
                    epoll ET: 1 event(s), socket 1\n\
                    epoll ET, one byte left: 0 event(s)\n\
                    epoll LT, one byte left: 1 event(s)\n\
                    epoll ET, new byte: 1 event(s), socket 1\n\
                    epoll ET, pipe: 1 event(s), pipe 1\n";
    same_as_native(&lab, &argv, expected, MODES);
}

/// Runs `argv` directly in `remote`, which must print `expected`, then
/// under rscq in each of `modes`, which must print the same.
#[track_caller]
fn same_as_native(lab: &Lab, argv: &[&str], expected: &str, modes: &[&[&str]]) {
    let reference = lab.run_ok(lab.exec(Ns::Remote, argv));
    assert_eq!(reference.out(), expected, "{}", reference.dump());
    for mode in modes {
        let out = lab.run_ok(lab.rscq(mode, argv));
        assert_eq!(
            out.out(),
            expected,
            "({}) under rscq\n{}",
            mode.join(" "),
            out.dump()
        );
    }
}
