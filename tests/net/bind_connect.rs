//! A TCP socket bound first and then connected (a client that picks its
//! source address or port, as CPython's `SendmsgTCPTest` and any
//! `source_address=` do): the connection leaves from the bound address on
//! the server, blocking and non-blocking, as when run directly there.

use crate::harness::{MODES, Running, p, python};
use crate::netns::{Lab, Ns};

/// Answers each connection with the address it came from.
const PEER_ECHO_PY: &str = r#"
import socket, sys
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((sys.argv[1], int(sys.argv[2])))
ls.listen(16)
print("READY", flush=True)
while True:
    c, peer = ls.accept()
    c.sendall(("%s:%d\n" % peer).encode())
    c.close()
"#;

/// Binds a given port (and then port 0), connects, and prints what both
/// ends see; non-blocking for the second.
const BIND_CONNECT_PY: &str = r#"
import select, socket, sys
host, port, source_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def read_line(s):
    data = b""
    while not data.endswith(b"\n"):
        d = s.recv(100)
        if not d:
            break
        data += d
    return data.decode()

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", source_port))
s.connect((host, port))
print("blocking: local port kept:", s.getsockname()[1] == source_port)
print("blocking: server saw port:", read_line(s).strip().split(":")[1] == str(source_port))
s.close()

t = socket.socket()
t.bind(("0.0.0.0", 0))
bound = t.getsockname()[1]
t.setblocking(False)
err = t.connect_ex((host, port))
print("non-blocking: in progress:", err in (0, 115))
select.select([], [t], [], 10)
print("non-blocking: error:", t.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
t.setblocking(True)
print("non-blocking: local port kept:", t.getsockname()[1] == bound)
print("non-blocking: server saw port:", read_line(t).strip().split(":")[1] == str(bound))
"#;

#[test]
fn bind_then_connect_leaves_from_the_bound_port() {
    let Some(lab) = Lab::new("bind_then_connect_leaves_from_the_bound_port", &[]) else {
        return;
    };
    let py = python();
    let echo = lab.write("peer_echo.py", PEER_ECHO_PY.as_bytes());
    let script = lab.write("bind_connect.py", BIND_CONNECT_PY.as_bytes());
    let web_ip = lab.net.web_ip.to_string();
    let mut server = Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&echo), &web_ip, "7300"]));
    server.wait_stdout("READY", std::time::Duration::from_secs(30));
    let argv = |source: &str| {
        vec![
            py.clone(),
            p(&script).to_owned(),
            web_ip.clone(),
            "7300".to_owned(),
            source.to_owned(),
        ]
    };
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv("47100")));
    assert!(
        !native.out().contains("False"),
        "the native run is the reference\n{}",
        native.dump()
    );
    for (mode, source) in MODES.iter().zip(["47101", "47102"]) {
        let out = lab.run_ok(lab.rscq(mode, &argv(source)));
        assert_eq!(out.out(), native.out(), "{mode:?}\n{}", out.dump());
    }
}
