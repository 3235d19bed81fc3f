//! Non-blocking connects whose outcome comes late: a listener that starts
//! accepting late, one that closes, a host that never answers (ETIMEDOUT)
//! and one that does not exist (EHOSTUNREACH). Until the server knows, the program's socket must
//! look exactly like a kernel connect under way (poll reports nothing, a
//! send would block, getpeername fails, SO_ERROR is 0); then epoll reports
//! it, and SO_ERROR gives the remote result, once. Each case runs natively
//! in `remote` and under rscq in every mode, with the same output.

use std::time::Duration;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python, run};
use crate::netns::{Lab, Ns};

/// `HOST PORT`: a non-blocking connect, checked at once and then watched
/// with epoll; after the event, SO_ERROR twice, and the connection used
/// (or the failed socket's recv and send).
const CLIENT_C: &str = r#"
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *name(int e) {
    static char other[32];
    switch (e) {
    case 0: return "0";
    case EINPROGRESS: return "EINPROGRESS";
    case ENOTCONN: return "ENOTCONN";
    case EAGAIN: return "EAGAIN";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case ECONNRESET: return "ECONNRESET";
    case ECONNABORTED: return "ECONNABORTED";
    case EPIPE: return "EPIPE";
    }
    snprintf(other, sizeof other, "errno%d", e);
    return other;
}

static int so_error(int s) {
    int e = -1;
    socklen_t len = sizeof e;
    if (getsockopt(s, SOL_SOCKET, SO_ERROR, &e, &len) != 0 || len != sizeof e) return -1;
    return e;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    printf("connect %s\n", r == 0 ? "0" : name(errno));

    struct pollfd pfd = {.fd = s, .events = POLLIN | POLLOUT};
    int n = poll(&pfd, 1, 0);
    struct sockaddr_in peer;
    socklen_t plen = sizeof peer;
    int g = getpeername(s, (struct sockaddr *)&peer, &plen);
    const char *peer_err = g == 0 ? "0" : name(errno);
    char c = 'x';
    ssize_t w = send(s, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    const char *send_err = w < 0 ? name(errno) : "sent";
    printf("pending poll=%d revents=%#x getpeername=%s so_error=%s send=%s\n", n, pfd.revents,
           peer_err, name(so_error(s)), send_err);
    fflush(stdout);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.fd = s};
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    struct epoll_event got;
    memset(&got, 0, sizeof got);
    n = epoll_wait(ep, &got, 1, 60000);
    printf("ready n=%d events=%#x\n", n, got.events);
    int e = so_error(s);
    printf("so_error %s, then %s\n", name(e), name(so_error(s)));
    if (e == 0) {
        plen = sizeof peer;
        getpeername(s, (struct sockaddr *)&peer, &plen);
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        printf("peer %s:%d\n", ip, ntohs(peer.sin_port));
        send(s, "hi\n", 3, MSG_NOSIGNAL);
        char buf[200];
        struct pollfd in = {.fd = s, .events = POLLIN};
        poll(&in, 1, 30000);
        ssize_t k = recv(s, buf, sizeof buf - 1, 0);
        buf[k > 0 ? k : 0] = 0;
        printf("got %s", buf);
    } else {
        char buf[16];
        ssize_t k = recv(s, buf, sizeof buf, MSG_DONTWAIT);
        printf("recv %s\n", k < 0 ? name(errno) : (k == 0 ? "eof" : "data"));
        k = send(s, "x", 1, MSG_NOSIGNAL);
        printf("send %s\n", k < 0 ? name(errno) : "sent");
    }
    close(s);
    puts("done");
    return 0;
}
"#;

/// `MODE HOST PORT FLAG`: a listener with backlog 0 whose queue one
/// connection of its own fills, so SYNs to it are dropped. Once the file
/// FLAG exists it either starts accepting (`accept`: the next connection
/// gets a greeting with the peer address it sees) or closes (`refuse`).
const LATE_SERVER_PY: &str = r#"
import os, socket, sys, time
mode, host, port, flag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
l = socket.socket()
l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((host, port))
l.listen(0)
filler = socket.create_connection((host, port))
print("READY", flush=True)
while True:
    while not os.path.exists(flag):
        time.sleep(0.02)
    os.unlink(flag)
    if mode == "refuse":
        filler.close()
        l.close()
        print("CLOSED", flush=True)
        while not os.path.exists(flag):
            time.sleep(0.02)
        os.unlink(flag)
        l = socket.socket()
        l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        l.bind((host, port))
        l.listen(0)
        filler = socket.create_connection((host, port))
        print("READY", flush=True)
        continue
    queued, _ = l.accept()
    queued.close()
    c, peer = l.accept()
    c.recv(100)
    c.sendall(("hello " + peer[0] + "\n").encode())
    c.close()
    filler = socket.create_connection((host, port))
    print("READY", flush=True)
"#;

const PORT: u16 = 8500;

/// Builds the client in the lab.
fn client(lab: &Lab) -> String {
    let src = lab.write("slowconnect.c", CLIENT_C.as_bytes());
    let bin = lab.dir.join("slowconnect");
    run(crate::harness::cmd(&["gcc", "-O1", "-o", p(&bin), p(&src)])).success();
    p(&bin).to_string()
}

/// The runs of every case: natively in `remote`, then under rscq in each
/// mode.
fn runs() -> Vec<(String, Option<&'static [&'static str]>)> {
    let mut all = vec![("native".to_string(), None)];
    for mode in MODES {
        let name = if mode.is_empty() {
            "default".to_string()
        } else {
            mode.join(" ")
        };
        all.push((name, Some(*mode)));
    }
    all
}

/// Runs the client to `host` once per run; `on_pending` is called once the
/// client reported its pending state, `after` once it ended, with the run's
/// index. Checks that every run printed what the native one did, and
/// returns that output.
fn compare(
    lab: &Lab,
    bin: &str,
    host: &str,
    port: u16,
    mut on_pending: impl FnMut(usize),
    mut after: impl FnMut(usize),
) -> String {
    let port = port.to_string();
    let argv = [bin, host, port.as_str()];
    let mut native: Option<Output> = None;
    for (i, (what, mode)) in runs().into_iter().enumerate() {
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut proc = Running::spawn(c);
        proc.wait_stdout("pending ", Duration::from_secs(30));
        on_pending(i);
        let out = proc.finish(TIMEOUT);
        after(i);
        assert_eq!(out.code(), 0, "({what})\n{}", out.dump());
        match &native {
            None => native = Some(out),
            Some(native) => assert_eq!(
                out.out(),
                native.out(),
                "({what}) the program must see what it sees natively\n--- native ---\n{}\n--- under rscq ---\n{}\n--- server ---\n{}",
                native.dump(),
                out.dump(),
                lab.server_log()
            ),
        }
    }
    native.map(|n| n.out()).unwrap_or_default()
}

/// The connecting sockets left in `remote` towards `host`.
fn syn_sent(lab: &Lab, host: &str) -> String {
    let out = run(lab.exec(
        Ns::Remote,
        &["ss", "-Htn", "state", "syn-sent", "dst", host],
    ))
    .success();
    out.out().trim().to_string()
}

/// Starts the late server in web; `flag` is the file that moves it on.
fn late_server(lab: &Lab, mode: &str, flag: &std::path::Path) -> Running {
    let script = lab.write("late_server.py", LATE_SERVER_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    let port = PORT.to_string();
    let mut server = Running::spawn(lab.exec(
        Ns::Web,
        &[
            py.as_str(),
            p(&script),
            mode,
            web.as_str(),
            port.as_str(),
            p(flag),
        ],
    ));
    server.wait_stdout("READY", Duration::from_secs(10));
    server
}

/// Waits until the late server printed `needle` `count` times.
fn wait_count(server: &mut Running, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.stdout_now().matches(needle).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the late server did not print {needle} {count} times\n{}",
            server.snapshot().dump()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A listener that starts accepting only after the program saw its connect
/// under way: epoll reports the socket writable once the server's
/// connect is made, SO_ERROR is 0, and the connection carries data from
/// the remote's address.
#[test]
fn late_accept_completes_the_connect() {
    let Some(lab) = Lab::new("late_accept_completes_the_connect", &["gcc"]) else {
        return;
    };
    let bin = client(&lab);
    let flag = lab.dir.join("late-flag");
    let mut server = late_server(&lab, "accept", &flag);
    let web = lab.net.web_ip.to_string();
    let out = compare(
        &lab,
        &bin,
        &web,
        PORT,
        |_| std::fs::write(&flag, b"").expect("flag"),
        |i| wait_count(&mut server, "READY", i + 2),
    );
    assert_eq!(
        out,
        format!(
            "connect EINPROGRESS\n\
             pending poll=0 revents=0 getpeername=ENOTCONN so_error=0 send=EAGAIN\n\
             ready n=1 events=0x4\n\
             so_error 0, then 0\n\
             peer {web}:{PORT}\n\
             got hello {}\n\
             done\n",
            lab.net.remote_web_ip
        )
    );
}

/// A listener that closes while the connect is under way: the next SYN is
/// refused, and the program learns ECONNREFUSED through epoll and SO_ERROR
/// (once), then reads EOF and cannot send.
#[test]
fn late_refusal_reaches_so_error() {
    let Some(lab) = Lab::new("late_refusal_reaches_so_error", &["gcc"]) else {
        return;
    };
    let bin = client(&lab);
    let flag = lab.dir.join("refuse-flag");
    let mut server = late_server(&lab, "refuse", &flag);
    let web = lab.net.web_ip.to_string();
    // The listener closes while the client waits, and opens again (full)
    // for the next run once the client ended.
    let server = std::cell::RefCell::new(&mut server);
    let out = compare(
        &lab,
        &bin,
        &web,
        PORT,
        |i| {
            std::fs::write(&flag, b"").expect("flag");
            wait_count(&mut server.borrow_mut(), "CLOSED", i + 1);
        },
        |i| {
            std::fs::write(&flag, b"").expect("flag");
            wait_count(&mut server.borrow_mut(), "READY", i + 2);
        },
    );
    assert_eq!(out, failed_output("ECONNREFUSED"));
    assert!(syn_sent(&lab, &web).is_empty());
}

/// A host that drops every SYN, with the remote's SYN retries cut to one
/// (3 s): the connect times out on the server while the program waits in
/// epoll, and SO_ERROR gives ETIMEDOUT.
#[test]
fn remote_timeout_reaches_so_error() {
    let Some(lab) = Lab::new("remote_timeout_reaches_so_error", &["gcc", "ss"]) else {
        return;
    };
    let bin = client(&lab);
    let host = crate::signals::silent_host(&lab);
    lab.run_ok(lab.exec(Ns::Remote, &["sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"]));
    let out = compare(&lab, &bin, &host, 80, |_| {}, |_| {});
    assert_eq!(out, failed_output("ETIMEDOUT"));
    assert!(syn_sent(&lab, &host).is_empty());
}

/// An address in web's subnet that nobody has: the server's neighbour
/// lookup fails after about 3 s, and SO_ERROR gives EHOSTUNREACH.
#[test]
fn unreachable_host_reaches_so_error() {
    let Some(lab) = Lab::new("unreachable_host_reaches_so_error", &["gcc", "ss"]) else {
        return;
    };
    let bin = client(&lab);
    // No neighbour answers for it: the server's ARP lookup fails.
    let [a, b, c, _] = lab.net.web_ip.octets();
    let host = format!("{a}.{b}.{c}.98");
    let out = compare(&lab, &bin, &host, 80, |_| {}, |_| {});
    assert_eq!(out, failed_output("EHOSTUNREACH"));
    assert!(syn_sent(&lab, &host).is_empty());
}

fn failed_output(errno: &str) -> String {
    format!(
        "connect EINPROGRESS\n\
         pending poll=0 revents=0 getpeername=ENOTCONN so_error=0 send=EAGAIN\n\
         ready n=1 events=0x201d\n\
         so_error {errno}, then 0\n\
         recv eof\n\
         send EPIPE\n\
         done\n"
    )
}
