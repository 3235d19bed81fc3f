//! Send-side backpressure: a program that sends to a peer that never reads
//! must find its connection full after about as many bytes as natively
//! (its send buffer and the peer's receive buffer), plus rscq's documented
//! window (`--net-send-window`), so `SO_SNDBUF` and the socket timeout
//! keep their meaning (CPython's `testWithTimeoutTriggeredSend`).

use std::time::Duration;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// `send HOST PORT`: a small `SO_SNDBUF`, a socket timeout of 1 s, and
/// sends until the timeout ends a send; says how many bytes went.
/// `queue HOST PORT`: `SO_SNDBUF` 65536, non-blocking sends until `EAGAIN`
/// stays (no room opens within 2 s); says how many bytes went.
/// `sink HOST PORT`: accepts one connection and never reads it, until the
/// file `$FLAG` exists.
const SINK_PY: &str = r#"
import os, socket, sys, time
what, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what == "send":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect((host, port))
    s.settimeout(1)
    chunk = b"x" * 65536
    sent = 0
    try:
        while sent < 1 << 30:
            sent += s.send(chunk)
        print("never full", flush=True)
    except socket.timeout:
        print("socket.timeout", flush=True)
    print("SENT", sent, flush=True)
    sys.exit(0)
if what == "queue":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    s.connect((host, port))
    s.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    full_since = None
    while sent < 1 << 30:
        try:
            sent += s.send(chunk)
            full_since = None
        except BlockingIOError:
            # Full for now; full for good once no room opens for a while
            # (under rscq the pump drains the local socket after a delay).
            # Polled, not select()ed: see the test.
            full_since = full_since or time.time()
            if time.time() - full_since > 2:
                break
            time.sleep(0.05)
    print("SENT", sent, flush=True)
    sys.exit(0)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(1)
print("READY", flush=True)
c, _ = ls.accept()
deadline = time.time() + 120
while time.time() < deadline and not os.path.exists(os.environ["FLAG"]):
    time.sleep(0.05)
"#;

/// rscq's default `--net-send-window` (README, `--net`).
const WINDOW: u64 = 4 << 20;

/// What else may hold bytes under rscq: the loopback socket's receive
/// buffer between the program and the pump (256 KiB), the pump's read
/// buffer, and the kernel's rounding of each buffer.
const SLACK: u64 = 1 << 20;

fn sent(out: &Output) -> u64 {
    out.out()
        .lines()
        .find_map(|l| l.strip_prefix("SENT "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SENT line\n{}", out.dump()))
}

/// What rscq may let a program queue beyond what it could natively, with
/// the same send buffer: rscq's end of the loopback connection
/// (256 KiB), a pump read (64 KiB), and the adaptive send window, which
/// between network namespaces on one machine stays well below 1 MiB
/// (README, "The remote network stack"). A fixed window of the default
/// maximum (4 MiB) would pass it.
const ADAPTIVE_EXTRA: u64 = 2 << 20;

/// Sends (natively in `remote`, or under rscq with `mode`) to a peer in
/// `web` that never reads; `role` is the script's sender (`send` or
/// `queue`).
fn send_to_sink(lab: &Lab, script: &str, role: &str, mode: Option<&[&str]>, port: &str) -> Output {
    let py = python();
    let web = lab.net.web_ip.to_string();
    let flag = lab.dir.join(format!("flag-{port}"));
    let sink = [py.as_str(), script, "sink", web.as_str(), port];
    let mut c = lab.exec(Ns::Web, &sink);
    c.env("FLAG", &flag);
    let mut peer = Running::spawn(c);
    peer.wait_stdout("READY", Duration::from_secs(30));
    let program = [py.as_str(), script, role, web.as_str(), port];
    let out = match mode {
        None => Running::spawn(lab.exec(Ns::Remote, &program)).finish(TIMEOUT),
        Some(mode) => Running::spawn(lab.rscq(mode, &program)).finish(TIMEOUT),
    };
    std::fs::write(&flag, b"").expect("flag");
    peer.finish(TIMEOUT);
    out
}

/// The send times out, as natively, after at most the native amount plus
/// the window (and slack), in both modes.
#[test]
fn a_sender_to_a_peer_that_never_reads_times_out() {
    let Some(lab) = Lab::new("a_sender_to_a_peer_that_never_reads_times_out", &[]) else {
        return;
    };
    let script = lab.write("sink.py", SINK_PY.as_bytes());
    let native = send_to_sink(&lab, p(&script), "send", None, "7030");
    assert!(
        native.out().starts_with("socket.timeout\n"),
        "natively\n{}",
        native.dump()
    );
    let bound = sent(&native) + WINDOW + SLACK;
    for (i, mode) in MODES.iter().enumerate() {
        let port = (7031 + i).to_string();
        let out = send_to_sink(&lab, p(&script), "send", Some(mode), &port);
        assert_eq!(
            (out.code(), out.out().lines().next().map(str::to_owned)),
            (0, Some("socket.timeout".to_owned())),
            "({mode:?}) must time out as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
        let under = sent(&out);
        eprintln!(
            "({mode:?}) sent {under} bytes before the timeout; natively {}",
            sent(&native)
        );
        assert!(
            under <= bound,
            "({mode:?}) sent {under} bytes before the timeout; natively {}, bound {bound}\n{}",
            sent(&native),
            out.dump()
        );
    }
}

/// Non-blocking sends to a peer that never reads: what a program can queue
/// before `EAGAIN` stays is at most the native amount plus
/// [`ADAPTIVE_EXTRA`], in both modes. It fails with the window fixed at
/// its maximum (the 4 MiB default, or 16 MiB). The send buffer is fixed:
/// under rscq the program's socket is on loopback, where the kernel
/// autotunes it to `tcp_wmem`'s maximum (4 MiB; about 0.7 MB over the
/// namespaces' link natively), which is the program's own buffer, not
/// rscq's. The sender polls with sleeps instead of `select` for room:
/// with `--pure`, a `select` for writing on a remote socket whose buffer
/// is full does not return at its timeout (main too; a separate issue).
#[test]
fn a_nonblocking_sender_queues_about_as_much_as_natively() {
    let Some(lab) = Lab::new("a_nonblocking_sender_queues_about_as_much_as_natively", &[]) else {
        return;
    };
    let script = lab.write("sink.py", SINK_PY.as_bytes());
    let native = send_to_sink(&lab, p(&script), "queue", None, "7060");
    let bound = sent(&native) + ADAPTIVE_EXTRA;
    for (i, mode) in MODES.iter().enumerate() {
        let port = (7061 + i).to_string();
        let out = send_to_sink(&lab, p(&script), "queue", Some(mode), &port);
        assert_eq!(out.code(), 0, "({mode:?})\n{}", out.dump());
        let under = sent(&out);
        eprintln!(
            "({mode:?}) queued {under} bytes before EAGAIN stayed; natively {}",
            sent(&native)
        );
        assert!(
            under <= bound,
            "({mode:?}) queued {under} bytes; natively {}, bound {bound}\n{}",
            sent(&native),
            out.dump()
        );
    }
}

/// `peer HOST PORT`: accepts one connection, reads it to the end in a
/// thread while it sends `N` bytes; says what it read. `program HOST PORT`:
/// connects, sends `N` bytes without reading, then reads `N` bytes; says
/// what it read. Natively the peer's reading lets the program's sends
/// finish while the peer's own sends wait for the program.
const BOTH_WAYS_PY: &str = r#"
import hashlib, socket, sys, threading
what, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
N = 12 << 20
block = bytes(range(256)) * 4096
def read(s, want):
    h, n = hashlib.sha256(), 0
    while n < want:
        b = s.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    return n, h.hexdigest()[:16]
if what == "peer":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1)
    print("READY", flush=True)
    c, _ = ls.accept()
    got = []
    t = threading.Thread(target=lambda: got.append(read(c, N)))
    t.start()
    for _ in range(N // len(block)):
        c.sendall(block)
    t.join()
    print("peer read", *got[0], flush=True)
    c.close()
    sys.exit(0)
s = socket.create_connection((host, port))
for _ in range(N // len(block)):
    s.sendall(block)
print("sent", N, flush=True)
print("read", *read(s, N), flush=True)
"#;

/// Both directions full at once: the program sends more than every window
/// on the way while the peer sends as much back, and reads only once its
/// sends are done. The window's acknowledgements share each stream with
/// the bytes flowing the other way; they must still get through, as the
/// kernel's do, in every mode (and with the smallest read-ahead window).
#[test]
fn sending_while_the_peer_sends_back_finishes_as_natively() {
    let Some(lab) = Lab::new(
        "sending_while_the_peer_sends_back_finishes_as_natively",
        &[],
    ) else {
        return;
    };
    let script = lab.write("both.py", BOTH_WAYS_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    let run = |mode: Option<&[&str]>, port: &str| {
        let peer = [py.as_str(), p(&script), "peer", web.as_str(), port];
        let mut peer = Running::spawn(lab.exec(Ns::Web, &peer));
        peer.wait_stdout("READY", Duration::from_secs(30));
        let program = [py.as_str(), p(&script), "program", web.as_str(), port];
        let out = match mode {
            None => Running::spawn(lab.exec(Ns::Remote, &program)).finish(TIMEOUT),
            Some(mode) => Running::spawn(lab.rscq(mode, &program)).finish(TIMEOUT),
        };
        (out, peer.finish(TIMEOUT))
    };
    let (native, native_peer) = run(None, "7040");
    assert!(
        native.out().starts_with("sent 12582912\nread 12582912 "),
        "natively\n{}",
        native.dump()
    );
    let small_window: &[&str] = &["--readahead-window=65536"];
    let modes: Vec<&[&str]> = MODES.iter().copied().chain([small_window]).collect();
    for (i, mode) in modes.iter().enumerate() {
        let port = (7041 + i).to_string();
        let (out, peer) = run(Some(mode), &port);
        assert_eq!(
            (out.code(), out.out(), peer.out()),
            (0, native.out(), native_peer.out()),
            "({mode:?}) under rscq\n{}\n--- peer ---\n{}",
            out.dump(),
            peer.dump()
        );
    }
}
