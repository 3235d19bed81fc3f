//! The program's last `close` of a socket releases the server's socket at
//! once, as the kernel frees its own: a UDP port can be bound again right
//! away, and a connection's peer finds it closed (its sends fail) while the
//! program goes on running, in every mode (`--pure` included).

use std::time::Duration;

use crate::harness::{MODES, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// Binds a UDP socket (port chosen by the system), closes it, and binds
/// that port again at once.
const UDP_PY: &str = r#"
import errno, socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
port = s.getsockname()[1]
s.close()
t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    t.bind(("0.0.0.0", port))
    print("bound again", flush=True)
except OSError as e:
    print("bind again failed with", errno.errorcode[e.errno], flush=True)
t.close()
print("DONE", flush=True)
"#;

/// A UDP socket's port is free once its last close returns.
#[test]
fn a_closed_udp_socket_frees_its_port_at_once() {
    let Some(lab) = Lab::new("a_closed_udp_socket_frees_its_port_at_once", &[]) else {
        return;
    };
    let script = lab.write("udp.py", UDP_PY.as_bytes());
    let py = python();
    let argv = [py.as_str(), p(&script)];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(native.out(), "bound again\nDONE\n", "{}", native.dump());
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert_eq!(
            (out.code(), out.out()),
            (native.code(), native.out()),
            "({mode:?}) must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
    }
}

/// Sends from a UDP socket never bound (its first send binds it), closes
/// it, and binds its port again at once; then the same with a socket its
/// `connect` bound. `argv[1]`: the peer's address (nothing listens there).
const UDP_SEND_PY: &str = r#"
import errno, socket, sys
peer = (sys.argv[1], 9)
def again(port):
    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        t.bind(("0.0.0.0", port))
        print("bound again", flush=True)
    except OSError as e:
        print("bind again failed with", errno.errorcode[e.errno], flush=True)
    t.close()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"x", peer)
port = s.getsockname()[1]
print("sent from a port", port != 0, flush=True)
s.close()
again(port)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect(peer)
port = c.getsockname()[1]
c.close()
again(port)
print("DONE", flush=True)
"#;

/// A UDP socket bound on the server only by its first send (or its
/// `connect`) frees its port at its last close too, as natively.
#[test]
fn a_udp_socket_bound_by_its_first_send_frees_its_port_at_close() {
    let name = "a_udp_socket_bound_by_its_first_send_frees_its_port_at_close";
    let Some(lab) = Lab::new(name, &[]) else {
        return;
    };
    let script = lab.write("udp_send.py", UDP_SEND_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    let argv = [py.as_str(), p(&script), web.as_str()];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    let expected = "sent from a port True\nbound again\nbound again\nDONE\n";
    assert_eq!(native.out(), expected, "{}", native.dump());
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert_eq!(
            (out.code(), out.out()),
            (native.code(), native.out()),
            "({mode:?}) must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
    }
}

/// `peer HOST PORT`: accepts a connection, reads it to its end, then sends
/// on it until a send fails (the program's socket is gone: reset) or 10 s
/// passed; then tells the program's second connection what it found.
/// `program HOST PORT`: connects, sends, closes, and asks the peer on a
/// second connection, staying alive meanwhile.
const TCP_PY: &str = r#"
import socket, sys, time
what, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if what == "peer":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(2)
    print("READY", flush=True)
    c, _ = ls.accept()
    got = b""
    while True:
        b = c.recv(100)
        if not b:
            break
        got += b
    verdict = b"open"
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            c.send(b"x")
        except OSError:
            verdict = b"closed"
            break
        time.sleep(0.05)
    d, _ = ls.accept()
    d.sendall(got + b", then " + verdict)
    d.close()
    sys.exit(0)
c = socket.create_connection((host, port))
c.sendall(b"hello")
c.close()
d = socket.create_connection((host, port))
print(d.recv(100).decode(), flush=True)
"#;

/// A connection's peer finds it closed after the program's close, while
/// the program still runs.
#[test]
fn a_closed_connection_is_closed_for_its_peer_at_once() {
    let Some(lab) = Lab::new("a_closed_connection_is_closed_for_its_peer_at_once", &[]) else {
        return;
    };
    let script = lab.write("tcp.py", TCP_PY.as_bytes());
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
        peer.finish(TIMEOUT);
        out
    };
    let native = run(None, "7060");
    assert_eq!(native.out(), "hello, then closed\n", "{}", native.dump());
    for (i, mode) in MODES.iter().enumerate() {
        let out = run(Some(mode), &(7061 + i).to_string());
        assert_eq!(
            (out.code(), out.out()),
            (native.code(), native.out()),
            "({mode:?}) must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
    }
}
