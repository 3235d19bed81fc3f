//! A server killed (SIGKILL) and started again on the same port during a
//! run: rscq notices within `--idle-timeout`, connects again within
//! `--reconnect-grace`, and gives the new server every file the program
//! holds. A file still there goes on at its offset; one deleted meanwhile
//! reads `ESTALE`; a remote TCP connection is reset (`ECONNRESET`); files
//! opened afterwards work; nothing hangs. Both modes.

use std::fs;
use std::net::TcpListener;
use std::thread;
use std::time::Duration;

use crate::harness::{MODES, Pair, Running, Server, p, pattern};

/// Opens files and a remote connection, says `ready`, waits for the `go`
/// file (local), and uses them all again.
const PROGRAM: &str = r#"
import errno, os, socket, sys, time
t, go, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def name(e):
    return errno.errorcode.get(e.errno, str(e.errno))
kept = os.open(os.path.join(t, "kept.bin"), os.O_RDONLY)
gone = os.open(os.path.join(t, "gone.bin"), os.O_RDONLY)
out = os.open(os.path.join(t, "out.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(out, b"before\n")
s = socket.create_connection(("127.0.0.1", port), timeout=60)
s.sendall(b"ping\n")
print("echo", s.recv(100).decode().strip())
first = os.read(kept, 1000)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
rest = b""
while True:
    chunk = os.read(kept, 1 << 16)
    if not chunk:
        break
    rest += chunk
print("kept", len(first), len(rest), first + rest == open(sys.argv[4], "rb").read())
try:
    os.read(gone, 10)
    print("gone read")
except OSError as e:
    print("gone", name(e))
os.write(out, b"after\n")
os.close(out)
try:
    s.sendall(b"again\n")
    print("sock", s.recv(100))
except OSError as e:
    print("sock", name(e))
with open(os.path.join(t, "new.txt")) as f:
    print("new", f.read().strip())
"#;

/// Echoes each connection's first line back, for the program's remote
/// connection (the server connects to it over loopback).
fn echo_listener() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || {
                use std::io::{Read, Write};
                let mut conn = conn;
                let mut buf = [0u8; 100];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

const KEPT: usize = 300 << 10;

fn restart_during_run(mode: &'static [&'static str]) -> (crate::harness::Output, String) {
    let mut flags = vec!["--net", "--idle-timeout", "3s", "--reconnect-grace", "60s"];
    flags.extend_from_slice(mode);
    let mut pair = Pair::new(crate::harness::Backend::Remote, &flags);
    let kept = pattern(KEPT, 0x4e57);
    fs::write(pair.remote_tree.join("kept.bin"), &kept).expect("write kept");
    let expected = pair.env.base.join("kept.expected");
    fs::write(&expected, &kept).expect("write expected");
    fs::write(pair.remote_tree.join("gone.bin"), pattern(200 << 10, 7)).expect("write gone");
    let script = pair.env.base.join("restart.py");
    fs::write(&script, PROGRAM).expect("write script");
    let go = pair.local.join("go");
    let port = echo_listener();
    let argv = [
        "python3".to_string(),
        p(&script),
        pair.t(),
        p(&go),
        port.to_string(),
        p(&expected),
    ];
    let mut running = Running::spawn(pair.rscq_cmd(&[], &argv));
    running.wait_stdout("ready\n", Duration::from_secs(30));
    let mut server = pair.server.take().expect("server");
    let mut spec = server.spec.clone();
    spec.port = server.port();
    server.kill();
    fs::remove_file(pair.remote_tree.join("gone.bin")).expect("rm gone");
    fs::write(pair.remote_tree.join("new.txt"), "made during the outage\n").expect("write new");
    pair.server = Some(Server::start(spec));
    // The program goes on at once: its calls wait for the new connection.
    fs::write(&go, "").expect("go");
    let r = running.finish(Duration::from_secs(90));
    let out = fs::read_to_string(pair.remote_tree.join("out.txt")).unwrap_or_default();
    (r, out)
}

#[test]
fn server_restarted_during_a_run() {
    let runs: Vec<_> = MODES
        .iter()
        .map(|mode| thread::spawn(move || restart_during_run(mode)))
        .collect();
    let expected = format!(
        "echo ping\nready\nkept 1000 {} True\ngone ESTALE\nsock ECONNRESET\nnew made during the outage\n",
        KEPT - 1000
    );
    for (mode, run) in MODES.iter().zip(runs) {
        let (r, out) = run.join().expect("run thread");
        assert_eq!(r.out(), expected, "{mode:?}\n{}", r.dump());
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        assert_eq!(out, "before\nafter\n", "{mode:?}\n{}", r.dump());
        let err = r.err();
        assert!(err.contains("connecting again"), "{mode:?}\n{}", r.dump());
        assert!(
            err.contains("connected again, to a new session"),
            "{mode:?}\n{}",
            r.dump()
        );
        // The new server knows no ticket of the old one (default mode
        // offered one): a full handshake, and no error for the program.
        assert!(
            err.contains("rscq: connections 2, resumed with 0-RTT 0\n"),
            "{mode:?}\n{}",
            r.dump()
        );
    }
}
