//! A blocking send into a full connection whose reader is the program
//! itself (it connects to its own remote listener and never reads): the
//! socket's send timeout, a signal handler, SIGTERM and SIGKILL end it as
//! they do natively, in every mode. Under `--pure` each send is a remote
//! call that may block on the server; the program must stay interruptible.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// `MODE`: connects to a listener of its own and sends without reading.
/// `settimeout`: Python's socket timeout of 1 s (a non-blocking socket and
/// poll). `sndtimeo`: `SO_SNDTIMEO` of 1 s on a blocking socket. `alarm`: a
/// SIGALRM handler that raises, 1 s later. `block`: fills the connection
/// (until `SO_SNDTIMEO` ends a send with EAGAIN), says FULL, then blocks
/// for good in a send without a timeout.
const FULL_PY: &str = r#"
import errno, os, signal, socket, struct, sys
what = sys.argv[1]
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
c = socket.create_connection(ls.getsockname())
a, _ = ls.accept()
print("PID", os.getpid(), flush=True)
chunk = b"x" * 65536
def sndtimeo(seconds):
    c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
def fill():
    try:
        while True:
            c.send(chunk)
    except OSError as e:
        return errno.errorcode[e.errno]
if what == "settimeout":
    c.settimeout(1)
    try:
        while True:
            c.send(chunk)
    except socket.timeout:
        print("socket.timeout", flush=True)
elif what == "sndtimeo":
    sndtimeo(1)
    print("send failed with", fill(), flush=True)
elif what == "alarm":
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(1)
    try:
        while True:
            c.send(chunk)
    except Alarm:
        print("interrupted by SIGALRM", flush=True)
else:
    sndtimeo(1)
    print("FULL after", fill(), flush=True)
    sndtimeo(0)
    while True:
        c.send(chunk)
print("DONE", flush=True)
"#;

fn pid_of(out: &Output) -> Option<i32> {
    out.out()
        .lines()
        .find_map(|l| l.strip_prefix("PID "))
        .and_then(|pid| pid.trim().parse().ok())
}

/// The output with the PID line taken out (it differs run to run).
fn without_pid(out: &Output) -> String {
    out.out()
        .lines()
        .filter(|l| !l.starts_with("PID "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[track_caller]
fn assert_ends_as(what: &str, native: &Output, under: &Output) {
    assert_eq!(
        (under.code(), without_pid(under)),
        (native.code(), without_pid(native)),
        "{what}: must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
        native.dump(),
        under.dump()
    );
}

/// The send timeout (Python's, and `SO_SNDTIMEO`) and a SIGALRM handler end
/// a send that waits for room, as natively.
#[test]
fn timeout_and_alarm_end_a_blocked_send() {
    let Some(lab) = Lab::new("timeout_and_alarm_end_a_blocked_send", &[]) else {
        return;
    };
    let script = lab.write("full.py", FULL_PY.as_bytes());
    let py = python();
    for (what, want) in [
        ("settimeout", "socket.timeout\nDONE\n"),
        ("sndtimeo", "send failed with EAGAIN\nDONE\n"),
        ("alarm", "interrupted by SIGALRM\nDONE\n"),
    ] {
        let argv = [py.as_str(), p(&script), what];
        let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
        assert_eq!(without_pid(&native), want, "natively\n{}", native.dump());
        for mode in MODES {
            let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
            assert_ends_as(&format!("({mode:?}) {what}"), &native, &out);
        }
    }
}

/// Starts `argv` (the `block` mode), waits until its connection is full
/// and it blocks in a send, then sends `sig` to the program (or to rscq,
/// which passes it on).
fn blocked_then(
    lab: &Lab,
    argv: &[&str],
    mode: Option<&[&str]>,
    sig: Signal,
    to_rscq: bool,
) -> Running {
    let c = match mode {
        None => lab.exec(Ns::Remote, argv),
        Some(mode) => lab.rscq(mode, argv),
    };
    let mut proc = Running::spawn(c);
    proc.wait_stdout("FULL after EAGAIN", TIMEOUT);
    if to_rscq {
        proc.signal(sig);
    } else {
        let pid = pid_of(&proc.snapshot()).expect("PID line");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).expect("kill program");
    }
    proc
}

/// SIGTERM ends a program blocked in a send, sent to the program or to
/// rscq; after SIGKILL of the program, rscq ends at once (a SIGTERM to it
/// then is not needed, and would end it too).
#[test]
fn sigterm_and_sigkill_end_a_blocked_send() {
    let Some(lab) = Lab::new("sigterm_and_sigkill_end_a_blocked_send", &[]) else {
        return;
    };
    let script = lab.write("full.py", FULL_PY.as_bytes());
    let py = python();
    let argv = [py.as_str(), p(&script), "block"];
    // Well below the 30 s rscq would wait for unsent bytes at exit.
    let prompt = Duration::from_secs(20);
    for sig in [Signal::SIGTERM, Signal::SIGKILL] {
        let native = blocked_then(&lab, &argv, None, sig, false).finish(prompt);
        assert_eq!(native.code(), 128 + sig as i32, "{}", native.dump());
        for mode in MODES {
            let targets: &[bool] = if sig == Signal::SIGTERM {
                &[false, true]
            } else {
                &[false]
            };
            for &to_rscq in targets {
                let what = format!(
                    "({mode:?}) {sig:?} to {}",
                    if to_rscq { "rscq" } else { "the program" }
                );
                let out = blocked_then(&lab, &argv, Some(mode), sig, to_rscq).finish(prompt);
                assert_ends_as(&what, &native, &out);
            }
        }
    }
    // rscq itself takes SIGTERM while it waits for bytes of a program that
    // SIGKILL ended.
    for mode in MODES {
        let proc = blocked_then(&lab, &argv, Some(mode), Signal::SIGKILL, false);
        proc.signal(Signal::SIGTERM);
        let out = proc.finish(prompt);
        assert_eq!(
            out.code(),
            128 + Signal::SIGKILL as i32,
            "({mode:?})\n{}",
            out.dump()
        );
    }
}
