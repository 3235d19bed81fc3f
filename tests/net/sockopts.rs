//! Socket options a program sets on remote sockets: it reads back what it
//! set, and the server's sockets carry them, whether they were set before
//! the connect or on the live connection.

use std::fs;
use std::time::Duration;

use crate::harness::{MODES, Running, p, python, run};
use crate::netns::{Lab, Ns};

/// `HOST PORT LISTEN_PORT FLAG`: two connections to HOST:PORT, one with
/// options set before connect and one after; two SO_REUSEPORT listeners
/// on LISTEN_PORT; prints what getsockopt says, then waits for FLAG.
const OPTIONS_PY: &str = r#"
import os, socket, struct, sys, time
from socket import SOL_SOCKET, IPPROTO_TCP
host, port, lport, flag = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
a = socket.socket()
a.setsockopt(SOL_SOCKET, socket.SO_KEEPALIVE, 1)
a.setsockopt(IPPROTO_TCP, socket.TCP_KEEPIDLE, 500)
a.setsockopt(SOL_SOCKET, socket.SO_RCVBUF, 40000)
a.setsockopt(SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 7))
a.connect((host, port))
b = socket.socket()
b.connect((host, port))
b.setsockopt(SOL_SOCKET, socket.SO_KEEPALIVE, 1)
b.setsockopt(IPPROTO_TCP, socket.TCP_KEEPIDLE, 400)
b.setsockopt(IPPROTO_TCP, socket.TCP_NODELAY, 1)
b.setsockopt(SOL_SOCKET, socket.SO_SNDBUF, 30000)
for name, s in (("a", a), ("b", b)):
    print(name,
          "keepalive", s.getsockopt(SOL_SOCKET, socket.SO_KEEPALIVE),
          "keepidle", s.getsockopt(IPPROTO_TCP, socket.TCP_KEEPIDLE),
          "nodelay", s.getsockopt(IPPROTO_TCP, socket.TCP_NODELAY),
          "rcvbuf", s.getsockopt(SOL_SOCKET, socket.SO_RCVBUF),
          "sndbuf", s.getsockopt(SOL_SOCKET, socket.SO_SNDBUF) == 60000,
          "linger", struct.unpack("ii", s.getsockopt(SOL_SOCKET, socket.SO_LINGER, 8)),
          "error", s.getsockopt(SOL_SOCKET, socket.SO_ERROR),
          flush=True)
    s.sendall(b"ping\n")
    print(name, "echo", s.recv(100), flush=True)
listeners = []
for i in range(2):
    l = socket.socket()
    l.setsockopt(SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.setsockopt(SOL_SOCKET, socket.SO_REUSEPORT, 1)
    l.bind(("0.0.0.0", lport))
    l.listen(4)
    listeners.append(l)
print("reuseport", [l.getsockopt(SOL_SOCKET, socket.SO_REUSEPORT) for l in listeners], flush=True)
print("READY", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
"#;

/// The server-side sockets in `remote` as `ss` shows them: the two
/// connections to `web:port` with their timers and memory, and the
/// listeners on `lport`.
fn remote_sockets(lab: &Lab, port: u16, lport: u16) -> (Vec<String>, usize) {
    let dst = format!("dst {}:{port}", lab.net.web_ip);
    let conns =
        run(lab.exec(Ns::Remote, &["ss", "-Htnom", "state", "established", &dst])).success();
    // ss puts a socket's details on continuation lines: join them.
    let joined = conns.out().replace("\n\t", " ").replace("\n ", " ");
    let lines: Vec<String> = joined.lines().map(str::to_string).collect();
    let listeners = run(lab.exec(Ns::Remote, &["ss", "-Hltn", &format!("sport = :{lport}")]))
        .success()
        .out()
        .lines()
        .count();
    (lines, listeners)
}

#[test]
fn socket_options_reach_the_server() {
    let Some(lab) = Lab::new("socket_options_reach_the_server", &["ss"]) else {
        return;
    };
    let script = lab.write("options.py", OPTIONS_PY.as_bytes());
    let py = python();
    let _echo = lab.web_echo(7020, "-");
    let web = lab.net.web_ip.to_string();
    let mut reference: Option<String> = None;
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let lport = (8500 + i).to_string();
        let flag = lab.dir.join(format!("options-done-{i}"));
        let argv = [
            py.as_str(),
            p(&script),
            web.as_str(),
            "7020",
            &lport,
            p(&flag),
        ];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut proc = Running::spawn(c);
        proc.wait_stdout("READY", Duration::from_secs(30));
        let (conns, listeners) = remote_sockets(&lab, 7020, lport.parse().expect("port"));
        fs::write(&flag, b"").expect("flag");
        let out = proc.finish(crate::harness::TIMEOUT);
        let context = format!(
            "({what}) server-side sockets:\n{}\n{}\n--- server ---\n{}",
            conns.join("\n"),
            out.dump(),
            lab.server_log()
        );
        assert!(out.status.success(), "{context}");
        assert_eq!(conns.len(), 2, "{context}");
        // Both connections keep alive (one set before connect, one after),
        // with their own idle times; one has the smaller receive buffer.
        assert!(
            conns.iter().all(|l| l.contains("timer:(keepalive,")),
            "{context}"
        );
        assert!(
            conns.iter().any(|l| l.contains("keepalive,8min")),
            "{context}"
        );
        assert!(
            conns.iter().any(|l| l.contains("keepalive,6min")),
            "{context}"
        );
        assert!(conns.iter().any(|l| l.contains("rb80000")), "{context}");
        assert!(conns.iter().any(|l| l.contains("tb60000")), "{context}");
        assert_eq!(listeners, 2, "two SO_REUSEPORT listeners\n{context}");
        match &reference {
            None => reference = Some(out.out()),
            Some(native) => assert_eq!(&out.out(), native, "{context}"),
        }
    }
}
