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
    let reference = lab.run_ok(lab.exec(Ns::Remote, &argv));
    let expected = "sendfile 300000 True\n\
                    splice 14 b'spliced bytes\\n'\n\
                    dontwait EAGAIN\n\
                    peek b'p' True\n\
                    waitall b'peek-me-please'\n\
                    child b'from child\\n'\n\
                    exec b'from exec\\n'\n\
                    poll after remote close ['POLLIN', 'POLLRDHUP', 'POLLHUP']\n\
                    eof b''\n";
    assert_eq!(reference.out(), expected, "{}", reference.dump());
    // A small read-ahead window makes the 300 kB echo cross QUIC flow
    // control many times.
    let small_window: &[&str] = &["--readahead-window=65536"];
    for mode in MODES.iter().copied().chain([small_window]) {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            expected,
            "({}) under rscq\n{}",
            mode.join(" "),
            out.dump()
        );
    }
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
    let reference = lab.run_ok(lab.exec(Ns::Remote, &argv));
    let expected = "poll ['POLLERR', 'POLLHUP']\nrecv ECONNRESET\n";
    assert_eq!(reference.out(), expected, "{}", reference.dump());
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            expected,
            "({}) under rscq\n{}",
            mode.join(" "),
            out.dump()
        );
    }
}
