//! Send coalescing (the `nagle` layer): many small writes of a program under
//! rscq reach a server in `web` complete and in order, with the layer on,
//! off, and with `TCP_NODELAY` set by the program; request/response
//! traffic completes. How far the writes were coalesced depends on timing,
//! so it is printed as a measurement, never asserted.

use std::time::Duration;

use crate::harness::{Running, p, python};
use crate::netns::{Lab, Ns};

/// Counts the `recv` calls it needs for `N` bytes, then answers
/// `<bytes> <recvs> <sha256>` and closes; serves connections one by one.
const COUNTING_SERVER_PY: &str = r#"
import hashlib, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port))
srv.listen(8)
print("READY", flush=True)
while True:
    conn, _ = srv.accept()
    got, recvs = bytearray(), 0
    while len(got) < n:
        chunk = conn.recv(65536)
        if not chunk:
            break
        recvs += 1
        got += chunk
    conn.sendall(f"{len(got)} {recvs} {hashlib.sha256(got).hexdigest()}\n".encode())
    conn.close()
"#;

/// Writes `N` bytes one byte per `send` (optionally with `TCP_NODELAY`),
/// then waits for the server's answer and checks it.
const SMALL_WRITES_PY: &str = r#"
import hashlib, socket, sys
host, port, n, nodelay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
data = bytes((i * 7 + i // 251) % 256 for i in range(n))
s = socket.create_connection((host, port))
if nodelay:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
for i in range(n):
    s.send(data[i:i + 1])
answer = b""
while not answer.endswith(b"\n"):
    chunk = s.recv(100)
    if not chunk:
        break
    answer += chunk
total, recvs, digest = answer.decode().split()
ok = int(total) == n and digest == hashlib.sha256(data).hexdigest()
print(f"{'ok' if ok else 'MISMATCH'} bytes={total} recvs={recvs}")
"#;

/// Request/response: each request goes out in one write, or in two
/// (`split`: the second is held until the program turns around), each
/// answer is awaited.
const PING_PONG_PY: &str = r#"
import socket, sys, time
host, port, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
split = sys.argv[4] == "split"
s = socket.create_connection((host, port))
f = s.makefile("rb")
started = time.monotonic()
for i in range(rounds):
    if split:
        s.send(b"ping ")
        s.send(f"{i}\n".encode())
    else:
        s.send(f"ping {i}\n".encode())
    line = f.readline().decode()
    if line != f"P:ping {i}\n":
        print(f"BAD {line!r}")
        sys.exit(1)
took = time.monotonic() - started
print(f"{rounds} rounds")
print(f"{sys.argv[4]}: per round {took / rounds * 1e6:.0f} us", file=sys.stderr)
"#;

const COUNT_PORT: u16 = 7101;
const ECHO_PORT: u16 = 7102;
const SMALL_WRITES: usize = 20_000;

/// The modes of the coalescing tests: the layer on (default), every other
/// layer on but not `nagle`, and the layer on with the program's own
/// `TCP_NODELAY`.
const CASES: &[(&str, &[&str], bool)] = &[
    ("default", &[], false),
    (
        "without nagle",
        &["--optimize=readahead,statcache,compound"],
        false,
    ),
    ("TCP_NODELAY", &[], true),
    (
        "short delay",
        &["--nagle-delay=200us", "--nagle-bytes=512"],
        false,
    ),
];

#[test]
fn small_writes_arrive_whole_and_in_order() {
    let Some(lab) = Lab::new("small_writes_arrive_whole_and_in_order", &[]) else {
        return;
    };
    let server = lab.write("count_server.py", COUNTING_SERVER_PY.as_bytes());
    let client = lab.write("small_writes.py", SMALL_WRITES_PY.as_bytes());
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let (port, n) = (COUNT_PORT.to_string(), SMALL_WRITES.to_string());
    let mut srv = Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&server), &web_ip, &port, &n]));
    srv.wait_stdout("READY", Duration::from_secs(30));

    // Reference: the same program run directly in remote.
    let direct = lab.run_ok(lab.exec(
        Ns::Remote,
        &[py.as_str(), p(&client), &web_ip, &port, &n, "0"],
    ));
    assert!(direct.out().starts_with("ok "), "{}", direct.dump());
    eprintln!("small writes: direct: {}", direct.out().trim());

    for (name, mode, nodelay) in CASES {
        let flag = if *nodelay { "1" } else { "0" };
        let out = lab.run_ok(lab.rscq(mode, &[py.as_str(), p(&client), &web_ip, &port, &n, flag]));
        assert!(
            out.out().starts_with(&format!("ok bytes={SMALL_WRITES} ")),
            "({name}) bytes lost, reordered or no answer\n{}",
            out.dump()
        );
        // A measurement, not an assertion: it depends on scheduling.
        eprintln!(
            "small writes: {name}: {} ({SMALL_WRITES} sends)",
            out.out().trim()
        );
    }
}

#[test]
fn request_response_completes() {
    let Some(lab) = Lab::new("request_response_completes", &[]) else {
        return;
    };
    let _echo = lab.web_echo(ECHO_PORT, "P");
    let client = lab.write("ping_pong.py", PING_PONG_PY.as_bytes());
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let port = ECHO_PORT.to_string();
    let rounds = "200";
    for shape in ["whole", "split"] {
        let argv = [py.as_str(), p(&client), &web_ip, &port, rounds, shape];
        let direct = lab.run_ok(lab.exec(Ns::Remote, &argv));
        assert_eq!(direct.out(), "200 rounds\n", "{}", direct.dump());
        eprintln!("ping-pong: direct: {}", direct.err().trim());
        for (name, mode, _) in CASES.iter().filter(|c| !c.2) {
            let out = lab.run_ok(lab.rscq(mode, &argv));
            assert_eq!(
                out.out(),
                "200 rounds\n",
                "({name}, {shape})\n{}",
                out.dump()
            );
            // Measured, not asserted: no timing asserts.
            eprintln!("ping-pong: {name}: {}", out.err().trim());
        }
    }
    let argv = [py.as_str(), p(&client), &web_ip, &port, "20", "split"];
    let out = lab.run_ok(lab.rscq(&["--pure"], &argv));
    assert_eq!(out.out(), "20 rounds\n", "(--pure)\n{}", out.dump());
}

/// Reads one byte, then resets the connection (`SO_LINGER` 0).
const RESETTING_SERVER_PY: &str = r#"
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port))
srv.listen(8)
print("READY", flush=True)
while True:
    conn, _ = srv.accept()
    conn.recv(1)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
"#;

/// Keeps sending small pieces until a send fails; prints the errno.
const SEND_UNTIL_ERROR_PY: &str = r#"
import errno, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for i in range(20000):
    try:
        s.send(b"x")
    except OSError as e:
        print(errno.errorcode[e.errno])
        sys.exit(0)
    time.sleep(0.001)
print("no error")
"#;

const RESET_PORT: u16 = 7103;

#[test]
fn a_remote_reset_surfaces_on_a_later_send() {
    let Some(lab) = Lab::new("a_remote_reset_surfaces_on_a_later_send", &[]) else {
        return;
    };
    let server = lab.write("reset_server.py", RESETTING_SERVER_PY.as_bytes());
    let client = lab.write("send_until_error.py", SEND_UNTIL_ERROR_PY.as_bytes());
    let py = python();
    let web_ip = lab.net.web_ip.to_string();
    let port = RESET_PORT.to_string();
    let mut srv = Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&server), &web_ip, &port]));
    srv.wait_stdout("READY", Duration::from_secs(30));
    let argv = [py.as_str(), p(&client), &web_ip, &port];
    let direct = lab.run_ok(lab.exec(Ns::Remote, &argv));
    let errors = ["ECONNRESET\n", "EPIPE\n"];
    assert!(errors.contains(&direct.out().as_str()), "{}", direct.dump());
    eprintln!("reset: direct: {}", direct.out().trim());
    for (name, mode, _) in CASES.iter().filter(|c| !c.2) {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert!(
            errors.contains(&out.out().as_str()),
            "({name}) the reset must reach a later send\n{}",
            out.dump()
        );
        eprintln!("reset: {name}: {}", out.out().trim());
    }
}
