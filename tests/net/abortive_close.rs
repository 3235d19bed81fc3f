//! An abortive close (`SO_LINGER {1, 0}`, then `close`) right after a send:
//! the kernel sends the bytes, then a RST, and the other side reads the
//! bytes before the reset (CPython's ssl `TestPreHandshakeClose` relies on
//! it). Both ways: the program under rscq is the client that sends and
//! resets, and the program accepts a remote connection whose client does.
//! Each must end as the same programs run directly in `remote`.

use std::time::Duration;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python, run};
use crate::netns::{Lab, Ns};

/// `connect HOST PORT N`: sends N bytes of a pattern, then closes with
/// `SO_LINGER {1, 0}`.
/// `accept HOST PORT WAIT`: takes one connection, waits until it has been
/// reset (`pollerr`: poll reports POLLERR; `flag`: the file `$FLAG`
/// exists), then reads until the end and says what came.
const ABORT_PY: &str = r#"
import errno, os, select, socket, struct, sys, time
what, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
def pattern(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))
if what == "connect":
    n = int(sys.argv[4])
    s = socket.create_connection((host, port))
    s.sendall(pattern(n))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    print("sent", n, "then reset", flush=True)
    sys.exit(0)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(4)
print("READY", flush=True)
c, _ = ls.accept()
deadline = time.time() + 30
if sys.argv[4] == "pollerr":
    p = select.poll()
    p.register(c, select.POLLERR)
    while time.time() < deadline and not any(m & select.POLLERR for _, m in p.poll(1000)):
        pass
else:
    while time.time() < deadline and not os.path.exists(os.environ["FLAG"]):
        time.sleep(0.05)
got = b""
try:
    while True:
        d = c.recv(65536)
        if not d:
            print("read", len(got), "bytes, intact", got == pattern(len(got)), "then EOF")
            break
        got += d
except OSError as e:
    print("read", len(got), "bytes, intact", got == pattern(len(got)), "then", errno.errorcode[e.errno])
"#;

/// Small enough for the first flight of a fresh connection and for the
/// reader's receive window: natively every byte reaches the reader.
const BYTES: &str = "9000";

#[track_caller]
fn assert_ends_as(what: &str, native: &Output, under: &Output) {
    assert_eq!(
        (under.code(), under.out()),
        (native.code(), native.out()),
        "{what}: must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
        native.dump(),
        under.dump()
    );
}

/// The program sends, then resets its connection to a peer in `web`; the
/// peer waits for the reset, then reads every byte before it.
#[test]
fn bytes_sent_before_an_abortive_close_reach_the_peer() {
    let Some(lab) = Lab::new("bytes_sent_before_an_abortive_close_reach_the_peer", &[]) else {
        return;
    };
    let script = lab.write("abort.py", ABORT_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    let program = [
        py.as_str(),
        p(&script),
        "connect",
        web.as_str(),
        "7020",
        BYTES,
    ];
    let peer = [
        py.as_str(),
        p(&script),
        "accept",
        web.as_str(),
        "7020",
        "pollerr",
    ];
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    let mut native: Option<(Output, Output)> = None;
    for (what, mode) in runs {
        let mut reader = Running::spawn(lab.exec(Ns::Web, &peer));
        reader.wait_stdout("READY", Duration::from_secs(30));
        let sender = match mode {
            None => lab.run_ok(lab.exec(Ns::Remote, &program)),
            Some(mode) => lab.run_ok(lab.rscq(mode, &program)),
        };
        let reader = reader.finish(TIMEOUT);
        match &native {
            None => {
                assert_eq!(
                    reader.out(),
                    format!("READY\nread {BYTES} bytes, intact True then ECONNRESET\n"),
                    "natively\n{}",
                    reader.dump()
                );
                native = Some((sender, reader));
            }
            Some((native_sender, native_reader)) => {
                assert_ends_as(&format!("({what}) the sender"), native_sender, &sender);
                assert_ends_as(&format!("({what}) the peer"), native_reader, &reader);
            }
        }
    }
}

/// The program accepts a remote connection whose client in `web` sends,
/// then resets it; the program reads every byte before the reset.
#[test]
fn bytes_sent_before_an_abortive_close_reach_the_program() {
    let Some(lab) = Lab::new("bytes_sent_before_an_abortive_close_reach_the_program", &[]) else {
        return;
    };
    let script = lab.write("abort.py", ABORT_PY.as_bytes());
    let py = python();
    let remote = lab.net.remote_web_ip.to_string();
    let program = [py.as_str(), p(&script), "accept", "0.0.0.0", "7021", "flag"];
    let peer = [
        py.as_str(),
        p(&script),
        "connect",
        remote.as_str(),
        "7021",
        BYTES,
    ];
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    let mut native: Option<Output> = None;
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let flag = lab.dir.join(format!("reset-{i}"));
        let mut c = match mode {
            None => lab.exec(Ns::Remote, &program),
            Some(mode) => lab.rscq(mode, &program),
        };
        c.env("FLAG", &flag);
        let mut reader = Running::spawn(c);
        reader.wait_stdout("READY", Duration::from_secs(30));
        let sender = run(lab.exec(Ns::Web, &peer)).success();
        assert_eq!(sender.out(), format!("sent {BYTES} then reset\n"));
        std::fs::write(&flag, b"").expect("flag");
        let reader = reader.finish(TIMEOUT);
        match &native {
            None => {
                assert_eq!(
                    reader.out(),
                    format!("READY\nread {BYTES} bytes, intact True then ECONNRESET\n"),
                    "natively\n{}",
                    reader.dump()
                );
                native = Some(reader);
            }
            Some(native) => assert_ends_as(&format!("({what}) the program"), native, &reader),
        }
    }
}
