//! `--pure` sockets against the kernel's own answers: a `poll` for room on
//! a full connection waits (so a signal ends it, and its timeout passes
//! with nothing), a `MSG_PEEK` after a shorter one shows all that arrived,
//! and `SO_RCVTIMEO` ends a receive. Each case runs natively and under
//! rscq in every mode; the program talks to a listener of its own, as
//! CPython's socket tests do (`InterruptedSendTimeoutTest`,
//! `testRecvmsgPeek`).

use crate::harness::{MODES, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// `MODE`: connects `c` to a listener of its own (accepted as `a`) and
/// does one thing. `alarm`: a socket timeout of 20 s and a SIGALRM handler
/// that raises; sends until the signal ends a send that waits for room.
/// `poll`: fills the connection, then polls it for room (nothing within
/// 300 ms), drains the peer and polls again (room). `peek`: peeks 3 bytes,
/// then 8, then reads. `rcvtimeo`: a receive with `SO_RCVTIMEO` of 300 ms
/// and nothing sent, then one after a send.
const PURE_PY: &str = r#"
import errno, select, signal, socket, struct, sys
what = sys.argv[1]
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
c = socket.create_connection(ls.getsockname())
a, _ = ls.accept()
chunk = b"x" * 65536
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
if what == "alarm":
    signal.signal(signal.SIGALRM, on_alarm)
    c.settimeout(20)
    try:
        while True:
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            c.send(chunk)
    except Alarm:
        print("interrupted by SIGALRM", flush=True)
    except socket.timeout:
        print("socket.timeout", flush=True)
    signal.setitimer(signal.ITIMER_REAL, 0)
elif what == "poll":
    c.settimeout(0.5)
    try:
        while True:
            c.send(chunk)
    except socket.timeout:
        print("full", flush=True)
    p = select.poll()
    p.register(c, select.POLLOUT)
    print("poll when full:", p.poll(300), flush=True)
    a.setblocking(False)
    while True:
        try:
            while a.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        # More may still be on its way from c's buffer.
        if not select.select([a], [], [], 0.5)[0]:
            break
    events = p.poll(10000)
    print("room after draining:", any(e & select.POLLOUT for _, e in events), flush=True)
elif what == "peek":
    c.send(b"abcdefgh")
    print(a.recv(3, socket.MSG_PEEK), flush=True)
    print(a.recv(8, socket.MSG_PEEK), flush=True)
    print(a.recv(8), flush=True)
elif what == "rcvtimeo":
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 300000))
    try:
        print("got", a.recv(10), flush=True)
    except OSError as e:
        print("recv failed with", errno.errorcode[e.errno], flush=True)
    c.send(b"late")
    print("then", a.recv(10), flush=True)
print("DONE", flush=True)
"#;

/// Each case ends as natively, in every mode.
#[test]
fn pure_sockets_poll_peek_and_time_out_as_natively() {
    let Some(lab) = Lab::new("pure_sockets_poll_peek_and_time_out_as_natively", &[]) else {
        return;
    };
    let script = lab.write("pure.py", PURE_PY.as_bytes());
    let py = python();
    for (what, want) in [
        ("alarm", "interrupted by SIGALRM\nDONE\n"),
        (
            "poll",
            "full\npoll when full: []\nroom after draining: True\nDONE\n",
        ),
        ("peek", "b'abc'\nb'abcdefgh'\nb'abcdefgh'\nDONE\n"),
        ("rcvtimeo", "recv failed with EAGAIN\nthen b'late'\nDONE\n"),
    ] {
        let argv = [py.as_str(), p(&script), what];
        let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
        assert_eq!(native.out(), want, "natively\n{}", native.dump());
        for mode in MODES {
            let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
            assert_eq!(
                (out.code(), out.out()),
                (native.code(), native.out()),
                "({mode:?}) {what}: must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
                native.dump(),
                out.dump()
            );
        }
    }
}
