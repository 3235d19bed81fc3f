//! Incoming connections: a program under rscq listens on the remote, and
//! clients in `web` connect to remote's address.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::harness::{
    MODES, Running, p, pattern, python, run, sha256, sha256_file, with_default_sigint,
};
use crate::netns::{Lab, Ns};

/// 9 + 11. `python3 -m http.server` under rscq --net in local; curl in web
///    fetches from remote's address and gets the served bytes.
#[test]
fn incoming_http_server() {
    let Some(lab) = Lab::new("incoming_http_server", &["curl"]) else {
        return;
    };
    let dir = lab.mkdir("served");
    let big = pattern(20 * 1024 * 1024, 0x1c0);
    fs::write(dir.join("big.bin"), &big).expect("write");
    fs::write(dir.join("hello.txt"), b"hello from local\n").expect("write");
    let py = python();
    let outdir = lab.mkdir("downloads");
    // A port per mode: the first server's socket may outlive its run.
    for (mode, port) in MODES.iter().zip([8000u16, 8001]) {
        let m = if mode.is_empty() { "default" } else { "--pure" };
        let port_s = port.to_string();
        let mut srv = Running::spawn(lab.rscq(
            mode,
            &[
                py.as_str(),
                "-u",
                "-m",
                "http.server",
                &port_s,
                "--bind",
                "0.0.0.0",
                "--directory",
                p(&dir),
            ],
        ));
        srv.wait_stdout("Serving HTTP", Duration::from_secs(30));

        let base = format!("http://{}:{port}", lab.net.remote_web_ip);
        let out = run(lab.exec(
            Ns::Web,
            &[
                "curl",
                "-sS",
                "--max-time",
                "30",
                &format!("{base}/hello.txt"),
            ],
        ));
        assert!(
            out.status.success() && out.out() == "hello from local\n",
            "({m}) curl from web to remote's address\n{}\n--- server under rscq ---\n{}",
            out.dump(),
            srv.snapshot().dump()
        );
        let file = outdir.join(format!("big{port}.bin"));
        let out = run(lab.exec(
            Ns::Web,
            &[
                "curl",
                "-sS",
                "--fail",
                "--max-time",
                "50",
                "-o",
                p(&file),
                &format!("{base}/big.bin"),
            ],
        ));
        assert!(
            out.status.success(),
            "({m}) big download\n{}\n--- server under rscq ---\n{}",
            out.dump(),
            srv.snapshot().dump()
        );
        assert_eq!(sha256_file(&file), sha256(&big), "({m}) downloaded bytes");
    }
}

const ACCEPT_PY: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(4)
print("PID", os.getpid(), flush=True)
try:
    s.accept()
    print("ACCEPTED", flush=True)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    raise
"#;

/// Whether something listens on TCP `port` in `ns`.
fn listening(lab: &Lab, ns: Ns, port: u16) -> bool {
    let out = run(lab.exec(ns, &["ss", "-Hltn", &format!("sport = :{port}")])).success();
    !out.out().trim().is_empty()
}

#[track_caller]
fn wait_listening(lab: &Lab, port: u16, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if listening(lab, Ns::Remote, port) == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[derive(Debug, Clone, Copy)]
enum Target {
    /// SIGINT to the program's own process.
    Program,
    /// SIGINT to rscq, which passes it on.
    Rscq,
}

/// 10. A program blocked in accept() on a remote listening socket ends
///     within 1 s of SIGINT, sent either to it or to rscq; afterwards the
///     port on the remote is free again.
#[test]
fn sigint_while_blocked_in_accept() {
    let Some(lab) = Lab::new("sigint_while_blocked_in_accept", &["ss", "env"]) else {
        return;
    };
    let script = lab.write("accept.py", ACCEPT_PY.as_bytes());
    let py = python();
    let port: u16 = 8100;
    let port_s = port.to_string();
    let argv = [py.as_str(), p(&script), &port_s];

    // Reference: the same program run natively in remote.
    let mut native = Running::spawn(with_default_sigint(&lab.exec(Ns::Remote, &argv)));
    native.wait_stdout("PID ", Duration::from_secs(30));
    assert!(wait_listening(&lab, port, true, Duration::from_secs(10)));
    native.signal(Signal::SIGINT);
    let native = native.finish(Duration::from_secs(10));
    assert_eq!(native.code(), 130, "{}", native.dump());
    assert!(native.out().contains("INTERRUPTED"), "{}", native.dump());
    assert!(wait_listening(&lab, port, false, Duration::from_secs(5)));

    for target in [Target::Program, Target::Rscq] {
        // The same port each time: the run before must have freed it.
        let mut proc = Running::spawn(with_default_sigint(&lab.rscq(&[], &argv)));
        let pid: i32 = proc
            .wait_line("PID ", Duration::from_secs(30))
            .parse()
            .expect("PID line");
        assert!(
            wait_listening(&lab, port, true, Duration::from_secs(10)),
            "({target:?}) no listener on remote port {port}\n{}\n--- server ---\n{}",
            proc.snapshot().dump(),
            lab.server_log()
        );
        assert!(
            !listening(&lab, Ns::Web, port),
            "listener must not be in web"
        );
        // Give the program time to be blocked inside accept().
        thread::sleep(Duration::from_millis(300));
        assert!(
            !proc.has_exited(),
            "({target:?}) ended early\n{}",
            proc.snapshot().dump()
        );
        let sent = Instant::now();
        match target {
            Target::Program => {
                kill(Pid::from_raw(pid), Signal::SIGINT).expect("kill program");
            }
            Target::Rscq => proc.signal(Signal::SIGINT),
        }
        while !proc.has_exited() && sent.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(5));
        }
        let took = sent.elapsed();
        let out = proc.finish(Duration::from_secs(20));
        assert!(
            took <= Duration::from_secs(1),
            "({target:?}) still running {took:?} after SIGINT (limit 1 s)\n{}",
            out.dump()
        );
        assert_eq!(
            (out.code(), out.out().contains("INTERRUPTED")),
            (native.code(), true),
            "({target:?}) exit as the native run\n{}",
            out.dump()
        );
        assert!(
            wait_listening(&lab, port, false, Duration::from_secs(5)),
            "({target:?}) port {port} still listening on remote after the program ended\n--- server ---\n{}",
            lab.server_log()
        );
        // A fresh bind in remote succeeds.
        let bind = format!(
            "import socket; s = socket.socket(); s.bind(('0.0.0.0', {port})); s.listen(1); print('bound')"
        );
        let out = lab.run_ok(lab.exec(Ns::Remote, &[py.as_str(), "-c", &bind]));
        assert_eq!(out.out(), "bound\n");
    }
}

/// A server in C: binds port 0 on every address, `accept4` with
/// `SOCK_NONBLOCK | SOCK_CLOEXEC`, then a plain `accept`, each showing its
/// flags and the peer; the second connection is shut down for reading (a
/// `recv` then gives end of file) and answered, then shut down for writing
/// (the client sees end of file while the server still reads it).
const ACCEPT_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void show(const char *what, int c, struct sockaddr_in *peer) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &peer->sin_addr, ip, sizeof ip);
    printf("%s: nonblock %d cloexec %d peer %s\n", what, !!(fcntl(c, F_GETFL) & O_NONBLOCK),
           !!(fcntl(c, F_GETFD) & FD_CLOEXEC), ip);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4) != 0) { perror("listen"); return 1; }
    socklen_t len = sizeof a;
    getsockname(l, (struct sockaddr *)&a, &len);
    printf("PORT %d\n", ntohs(a.sin_port));
    struct sockaddr_in peer;
    len = sizeof peer;
    int c1 = accept4(l, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c1 < 0) { perror("accept4"); return 1; }
    show("accept4", c1, &peer);
    close(c1);
    len = sizeof peer;
    int c2 = accept(l, (struct sockaddr *)&peer, &len);
    if (c2 < 0) { perror("accept"); return 1; }
    show("accept", c2, &peer);
    char buf[64];
    ssize_t n = recv(c2, buf, sizeof buf, 0);
    printf("got %zd bytes\n", n);
    shutdown(c2, SHUT_RD);
    printf("recv after SHUT_RD: %zd\n", recv(c2, buf, sizeof buf, 0));
    send(c2, "bye\n", 4, 0);
    shutdown(c2, SHUT_WR);
    printf("send after SHUT_WR: %zd\n", send(c2, "x", 1, MSG_NOSIGNAL));
    close(c2);
    close(l);
    puts("done");
    return 0;
}
"#;

/// `HOST PORT`: connects twice; the second time sends a line and reads to
/// the end.
const ACCEPT_CLIENT_PY: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
socket.create_connection((host, port), timeout=30).close()
s = socket.create_connection((host, port), timeout=30)
s.sendall(b"hello\n")
data = b""
while True:
    d = s.recv(100)
    if not d:
        break
    data += d
print("client got", data)
"#;

/// `bind` to port 0 reports the port the remote chose, `accept4` gives its
/// flags and a plain `accept` none, and `shutdown` works each way on an
/// accepted remote connection, in every mode, as directly in `remote`.
#[test]
fn accept_flags_and_shutdown() {
    let Some(lab) = Lab::new("accept_flags_and_shutdown", &["gcc"]) else {
        return;
    };
    let src = lab.write("accept.c", ACCEPT_C.as_bytes());
    let bin = lab.dir.join("accept");
    run(crate::harness::cmd(&["gcc", "-O1", "-o", p(&bin), p(&src)])).success();
    let client = lab.write("accept_client.py", ACCEPT_CLIENT_PY.as_bytes());
    let py = python();
    let remote_ip = lab.net.remote_web_ip.to_string();
    let web_ip = lab.net.web_ip;
    let expected = format!(
        "accept4: nonblock 1 cloexec 1 peer {web_ip}\n\
         accept: nonblock 0 cloexec 0 peer {web_ip}\n\
         got 6 bytes\n\
         recv after SHUT_RD: 0\n\
         send after SHUT_WR: -1\n\
         done\n"
    );
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    for (what, mode) in runs {
        let c = match mode {
            None => lab.exec(Ns::Remote, &[p(&bin)]),
            Some(mode) => lab.rscq(mode, &[p(&bin)]),
        };
        let mut server = Running::spawn(c);
        let port: u16 = server
            .wait_line("PORT ", Duration::from_secs(30))
            .parse()
            .expect("PORT line");
        assert_ne!(
            port, 0,
            "({what}) bind to port 0 must report the chosen port"
        );
        let port_s = port.to_string();
        let out = run(lab.exec(
            Ns::Web,
            &[py.as_str(), p(&client), remote_ip.as_str(), port_s.as_str()],
        ));
        let srv = server.finish(crate::harness::TIMEOUT);
        assert_eq!(
            out.out(),
            "client got b'bye\\n'\n",
            "({what})\n{}\n--- server ---\n{}",
            out.dump(),
            srv.dump()
        );
        assert_eq!(srv.code(), 0, "({what})\n{}", srv.dump());
        assert_eq!(
            srv.out(),
            format!("PORT {port}\n{expected}"),
            "({what}) the server must see what it sees natively\n{}",
            srv.dump()
        );
    }
}

const RELISTEN_PY: &str = r#"
import socket, sys, threading
ls = socket.socket()
ls.bind(("0.0.0.0", 0))
ls.listen(1)
# A second listen(2) sets a new backlog (asyncio's create_server(sock=...)).
ls.listen(8)
port = ls.getsockname()[1]
def serve():
    for _ in range(2):
        c, _ = ls.accept()
        c.sendall(c.recv(100).upper())
        c.close()
t = threading.Thread(target=serve)
t.start()
for word in (b"first", b"second"):
    c = socket.create_connection((sys.argv[1], port))
    c.sendall(word)
    print(c.recv(100).decode())
    c.close()
t.join()
"#;

/// Network II: a second `listen` on a listening socket failed with EBADF
/// under rscq (and dropped the server's listener).
#[test]
fn a_second_listen_sets_a_new_backlog() {
    let Some(lab) = Lab::new("a_second_listen_sets_a_new_backlog", &[]) else {
        return;
    };
    let script = lab.write("relisten.py", RELISTEN_PY.as_bytes());
    let py = python();
    let remote_ip = lab.net.remote_web_ip.to_string();
    let argv = [py.as_str(), p(&script), remote_ip.as_str()];
    let reference = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(reference.out(), "FIRST\nSECOND\n", "{}", reference.dump());
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(out.out(), "FIRST\nSECOND\n", "({mode:?})\n{}", out.dump());
    }
}
