//! Sending to a peer that shut its sending side down
//! (`shutdown(SHUT_WR)`) and never reads: the sender must find its
//! connection full after about as many bytes as natively, plus rscq's
//! send window, as for any peer that does not read (tests/net
//! backpressure.rs). Before, the server's pump could no longer acknowledge
//! once its own direction had finished, so the window no longer held.

use std::time::Duration;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// `send HOST PORT`: reads the peer's end first, then sends until a
/// send times out (1 s); says how many bytes went. `sink HOST PORT`:
/// accepts one connection, shuts its sending side down and never reads,
/// until the file `$FLAG` exists.
const HALF_CLOSED_PY: &str = r#"
import os, socket, sys, time
what, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what == "send":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect((host, port))
    print("peer's end", s.recv(10), flush=True)
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
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(1)
print("READY", flush=True)
c, _ = ls.accept()
c.shutdown(socket.SHUT_WR)
deadline = time.time() + 120
while time.time() < deadline and not os.path.exists(os.environ["FLAG"]):
    time.sleep(0.05)
"#;

/// rscq's default `--net-send-window` (README, `--net`).
const WINDOW: u64 = 4 << 20;

/// As in backpressure.rs: the loopback socket's receive buffer, the pump's
/// read buffer, the kernel's rounding.
const SLACK: u64 = 1 << 20;

fn sent(out: &Output) -> u64 {
    out.out()
        .lines()
        .find_map(|l| l.strip_prefix("SENT "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no SENT line\n{}", out.dump()))
}

fn send_to_half_closed(lab: &Lab, script: &str, mode: Option<&[&str]>, port: &str) -> Output {
    let py = python();
    let web = lab.net.web_ip.to_string();
    let flag = lab.dir.join(format!("flag-{port}"));
    let sink = [py.as_str(), script, "sink", web.as_str(), port];
    let mut c = lab.exec(Ns::Web, &sink);
    c.env("FLAG", &flag);
    let mut peer = Running::spawn(c);
    peer.wait_stdout("READY", Duration::from_secs(30));
    let program = [py.as_str(), script, "send", web.as_str(), port];
    let out = match mode {
        None => Running::spawn(lab.exec(Ns::Remote, &program)).finish(TIMEOUT),
        Some(mode) => Running::spawn(lab.rscq(mode, &program)).finish(TIMEOUT),
    };
    std::fs::write(&flag, b"").expect("flag");
    peer.finish(TIMEOUT);
    out
}

#[test]
fn a_sender_to_a_half_closed_peer_that_never_reads_times_out() {
    let Some(lab) = Lab::new(
        "a_sender_to_a_half_closed_peer_that_never_reads_times_out",
        &[],
    ) else {
        return;
    };
    let script = lab.write("half_closed.py", HALF_CLOSED_PY.as_bytes());
    let native = send_to_half_closed(&lab, p(&script), None, "7070");
    assert!(
        native.out().starts_with("peer's end b''\nsocket.timeout\n"),
        "natively\n{}",
        native.dump()
    );
    let bound = sent(&native) + WINDOW + SLACK;
    for (i, mode) in MODES.iter().enumerate() {
        let port = (7071 + i).to_string();
        let out = send_to_half_closed(&lab, p(&script), Some(mode), &port);
        assert_eq!(
            (
                out.code(),
                out.out().lines().take(2).collect::<Vec<_>>().join("\n")
            ),
            (0, "peer's end b''\nsocket.timeout".to_owned()),
            "({mode:?}) must time out as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
        let under = sent(&out);
        assert!(
            under <= bound,
            "({mode:?}) sent {under} bytes before the timeout; natively {}, bound {bound}\n{}",
            sent(&native),
            out.dump()
        );
    }
}
