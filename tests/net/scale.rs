//! Scale: one program under rscq `--net` holds 10,000 TCP connections at
//! once, every one of them established on the server, in both modes.

use std::time::Duration;

use crate::harness::{MODES, Running, p, python};
use crate::netns::{Lab, Ns};

const CONNECTIONS: usize = 10_000;

/// The open-file limit both helpers raise themselves to: room for every
/// connection plus the interpreter's own files.
const RAISE_LIMIT: &str = r#"
import resource
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 12000 if hard == resource.RLIM_INFINITY else min(hard, 12000)
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 11000:
    raise SystemExit("the hard open-file limit (%d) is too low for this test" % hard)
"#;

/// Accepts N connections and holds them; once it has them all, reads the
/// byte each sent and answers each with one byte of its own.
const HOLDER: &str = r#"
import socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(4096)
n = int(sys.argv[3])
print("READY", flush=True)
held = []
while len(held) < n:
    c, _ = ls.accept()
    held.append(c)
for c in held:
    if c.recv(1) != b"x":
        raise SystemExit("a connection did not send its byte")
    c.sendall(b"y")
print("held", len(held), flush=True)
"#;

/// Opens N non-blocking connections, waits for each to be established,
/// sends one byte on each, and reads one back from each.
const OPENER: &str = r#"
import select, socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex((host, port))
    p = select.poll()
    p.register(c, select.POLLOUT)
    if not p.poll(30000):
        raise SystemExit("connection %d: no answer in 30 s" % i)
    err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise SystemExit("connection %d: errno %d" % (i, err))
    socks.append(c)
print("connected", len(socks), flush=True)
for c in socks:
    c.setblocking(True)
    c.sendall(b"x")
for c in socks:
    if c.recv(1) != b"y":
        raise SystemExit("a connection got no answer")
print("answered", len(socks), flush=True)
"#;

#[test]
fn ten_thousand_concurrent_connections() {
    let Some(lab) = Lab::new("ten_thousand_concurrent_connections", &[]) else {
        return;
    };
    let py = python();
    let holder = lab.write("holder.py", format!("{RAISE_LIMIT}{HOLDER}").as_bytes());
    let opener = lab.write("opener.py", format!("{RAISE_LIMIT}{OPENER}").as_bytes());
    let web_ip = lab.net.web_ip.to_string();
    let n = CONNECTIONS.to_string();
    for (mode, port) in MODES.iter().zip([9200u16, 9201]) {
        let port_s = port.to_string();
        let mut web =
            Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&holder), &web_ip, &port_s, &n]));
        web.wait_stdout("READY", Duration::from_secs(30));
        let out = Running::spawn(lab.rscq(mode, &[py.as_str(), p(&opener), &web_ip, &port_s, &n]))
            .finish(Duration::from_secs(300));
        assert!(
            out.status.success() && out.out() == format!("connected {n}\nanswered {n}\n"),
            "{mode:?}\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        let web = web.finish(Duration::from_secs(30));
        assert_eq!(web.out(), format!("READY\nheld {n}\n"), "{}", web.dump());
    }
}

/// More incoming connections than a QUIC connection first allows the
/// server to open streams for (`transport::INITIAL_STREAMS`, 1024): each
/// remote listener's connection is a stream the server opens to rscq, so
/// rscq must raise its allowance as they come, or the 1025th would wait
/// for ever.
const INCOMING: usize = 2_000;

#[test]
fn two_thousand_concurrent_incoming_connections() {
    let Some(lab) = Lab::new("two_thousand_concurrent_incoming_connections", &[]) else {
        return;
    };
    let py = python();
    let holder = lab.write("holder.py", format!("{RAISE_LIMIT}{HOLDER}").as_bytes());
    let opener = lab.write("opener.py", format!("{RAISE_LIMIT}{OPENER}").as_bytes());
    let remote_ip = lab.net.remote_web_ip.to_string();
    let n = INCOMING.to_string();
    for (mode, port) in MODES.iter().zip([9210u16, 9211]) {
        let port_s = port.to_string();
        let mut holder =
            Running::spawn(lab.rscq(mode, &[py.as_str(), p(&holder), "0.0.0.0", &port_s, &n]));
        holder.wait_stdout("READY", Duration::from_secs(30));
        let out =
            Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&opener), &remote_ip, &port_s, &n]))
                .finish(Duration::from_secs(300));
        assert!(
            out.status.success() && out.out() == format!("connected {n}\nanswered {n}\n"),
            "{mode:?}\n{}\n--- under rscq ---\n{}\n--- server ---\n{}",
            out.dump(),
            holder.snapshot().dump(),
            lab.server_log()
        );
        let holder = holder.finish(Duration::from_secs(30));
        assert_eq!(
            holder.out(),
            format!("READY\nheld {n}\n"),
            "{}",
            holder.dump()
        );
    }
}
