//! UDP under `rscq --net`: the program's datagrams leave from the server's
//! sockets, and come back with their real sources, in both modes.

use std::time::Duration;

use crate::harness::{MODES, Output, Running, p, python, run};
use crate::netns::{Lab, Ns, private_etc};

/// A made-up name only the DNS responder in `web` knows, and its address.
const NAME: &str = "udp-only.rscq.test";
const NAME_IP: &str = "10.99.88.77";
const ECHO_PORT: u16 = 7007;

fn mode_name(mode: &[&str]) -> String {
    if mode.is_empty() {
        "default".into()
    } else {
        mode.join(" ")
    }
}

/// Helpers run in `web`: a DNS responder that knows one A record, and a
/// UDP echo server that answers each datagram with `IP:PORT payload`, the
/// sender's address as it saw it.
const UDP_SERVERS_PY: &str = r#"
import socket, struct, sys

def dns(host, name, ip):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 53))
    print("READY", flush=True)
    want = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    while True:
        q, peer = s.recvfrom(4096)
        ident, flags, qd = struct.unpack("!HHH", q[:6])
        end = q.index(b"\0", 12) + 1
        qname = q[12:end]
        qtype, qclass = struct.unpack("!HH", q[end:end + 4])
        question = q[12:end + 4]
        answers = b""
        rcode = 0
        if qname.lower() != want:
            rcode = 3
        elif qtype == 1:
            answers = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(ip)
        count = 1 if answers else 0
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, count, 0, 0)
        s.sendto(header + question + answers, peer)

def echo(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    print("READY", flush=True)
    while True:
        d, peer = s.recvfrom(65536)
        s.sendto(("%s:%d " % peer).encode() + d, peer)

def echolite(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
    s.bind((host, port))
    print("READY", flush=True)
    while True:
        d, peer = s.recvfrom(65536)
        s.sendto(("%s:%d " % peer).encode() + d, peer)

def echo6(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    print("READY", flush=True)
    while True:
        d, peer = s.recvfrom(65536)
        s.sendto(("%s:%d " % peer[:2]).encode() + d, peer)

if sys.argv[1] == "dns":
    dns(sys.argv[2], sys.argv[3], sys.argv[4])
elif sys.argv[1] == "echolite":
    echolite(sys.argv[2], int(sys.argv[3]))
elif sys.argv[1] == "echo6":
    echo6(int(sys.argv[2]))
else:
    echo(sys.argv[2], int(sys.argv[3]))
"#;

#[track_caller]
fn web_udp(lab: &Lab, args: &[&str]) -> Running {
    let script = lab.write("udp_servers.py", UDP_SERVERS_PY.as_bytes());
    let py = python();
    let mut argv = vec![py.as_str(), p(&script)];
    argv.extend_from_slice(args);
    let mut r = Running::spawn(lab.exec(Ns::Web, &argv));
    r.wait_stdout("READY", Duration::from_secs(30));
    r
}

/// 1. DNS over UDP to a resolver only `web` can reach: glibc's resolver
///    (`getent`, connected socket, sendmmsg, poll, recvfrom) and static
///    busybox's `nslookup` answer as they do run directly in `remote`.
#[test]
fn dns_over_udp_resolves_through_the_server() {
    let Some(mut lab) = Lab::prepare(
        "dns_over_udp_resolves_through_the_server",
        &["getent", "busybox", "mount"],
    ) else {
        return;
    };
    let web_ip = lab.net.web_ip.to_string();
    let resolv = lab.write(
        "server-resolv.conf",
        format!("nameserver {web_ip}\noptions timeout:5 attempts:2\n").as_bytes(),
    );
    let hosts = lab.write("server-hosts", b"127.0.0.1 localhost\n");
    let etc = [
        (resolv.as_path(), "/etc/resolv.conf"),
        (hosts.as_path(), "/etc/hosts"),
    ];
    lab.start_server_with_etc(&etc);
    let _dns = web_udp(&lab, &["dns", &web_ip, NAME, NAME_IP]);

    let in_remote = |argv: &[&str]| -> Output {
        let mut full = private_etc(&etc);
        full.extend(argv.iter().map(|s| (*s).to_string()));
        lab.run_ok(lab.exec(Ns::Remote, &full))
    };
    let getent = ["getent", "ahostsv4", NAME];
    let nslookup = ["busybox", "nslookup", NAME, web_ip.as_str()];
    let reference_getent = in_remote(&getent);
    assert!(
        reference_getent.out().starts_with(&format!("{NAME_IP} ")),
        "{}",
        reference_getent.dump()
    );
    let reference_nslookup = in_remote(&nslookup);
    assert!(
        reference_nslookup.out().contains(NAME_IP),
        "{}",
        reference_nslookup.dump()
    );

    // Without rscq the resolver is out of reach.
    let out = run(lab.exec(Ns::Local, &nslookup)).failure();
    assert!(!out.out().contains(NAME_IP), "{}", out.dump());

    for mode in MODES {
        let m = mode_name(mode);
        let out = lab.run_ok(lab.rscq(mode, &getent));
        assert_eq!(
            out.out(),
            reference_getent.out(),
            "getent ({m})\n{}",
            out.dump()
        );
        let out = lab.run_ok(lab.rscq(mode, &nslookup));
        assert_eq!(
            out.out(),
            reference_nslookup.out(),
            "busybox nslookup ({m})\n{}",
            out.dump()
        );
        // A name the resolver does not know fails as it does remotely.
        let out = run(lab.rscq(mode, &["getent", "ahostsv4", "other.rscq.test"]));
        assert_eq!(out.code(), 2, "getent unknown name ({m})\n{}", out.dump());
    }
}

/// The C client of the echo tests: unconnected sendto/recvfrom,
/// sendmsg/recvmsg, sendmmsg/recvmmsg, and a connected socket. It prints
/// what it saw; the test compares with the lab's addresses.
const UDP_CLIENT_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static const char *fmt(const struct sockaddr_in *a, char *buf) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    sprintf(buf, "%s:%d", ip, ntohs(a->sin_port));
    return buf;
}

static int udp(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    struct timeval tv = {20, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

static void sockname(int s, const char *what) {
    struct sockaddr_in a; socklen_t len = sizeof a; char b[64];
    if (getsockname(s, (struct sockaddr *)&a, &len) < 0) die("getsockname");
    printf("%s sockname=%s\n", what, fmt(&a, b));
}

int main(int argc, char **argv) {
    struct sockaddr_in web = {0};
    web.sin_family = AF_INET;
    web.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &web.sin_addr);
    char buf[256], b1[64];

    /* sendto + recvfrom on a socket never bound */
    int s = udp();
    if (sendto(s, "one", 3, 0, (struct sockaddr *)&web, sizeof web) != 3) die("sendto");
    struct sockaddr_in from; socklen_t fl = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    if (n < 0) die("recvfrom");
    buf[n] = 0;
    printf("recvfrom from=%s len=%u reply=%s\n", fmt(&from, b1), fl, buf);
    sockname(s, "recvfrom");

    /* sendmsg + recvmsg */
    struct iovec iov = {"two", 3};
    struct msghdr msg = {0};
    msg.msg_name = &web; msg.msg_namelen = sizeof web;
    msg.msg_iov = &iov; msg.msg_iovlen = 1;
    if (sendmsg(s, &msg, 0) != 3) die("sendmsg");
    struct iovec riov = {buf, sizeof buf - 1};
    struct msghdr rmsg = {0};
    memset(&from, 0, sizeof from);
    rmsg.msg_name = &from; rmsg.msg_namelen = sizeof from;
    rmsg.msg_iov = &riov; rmsg.msg_iovlen = 1;
    n = recvmsg(s, &rmsg, 0);
    if (n < 0) die("recvmsg");
    buf[n] = 0;
    printf("recvmsg from=%s len=%u reply=%s\n", fmt(&from, b1), rmsg.msg_namelen, buf);

    /* sendmmsg + recvmmsg: two datagrams each way */
    struct mmsghdr out[2];
    struct iovec oiov[2] = {{"three", 5}, {"four", 4}};
    memset(out, 0, sizeof out);
    for (int i = 0; i < 2; i++) {
        out[i].msg_hdr.msg_name = &web; out[i].msg_hdr.msg_namelen = sizeof web;
        out[i].msg_hdr.msg_iov = &oiov[i]; out[i].msg_hdr.msg_iovlen = 1;
    }
    int sent = 0;
    while (sent < 2) {
        int k = sendmmsg(s, out + sent, 2 - sent, 0);
        if (k <= 0) die("sendmmsg");
        for (int i = sent; i < sent + k; i++)
            printf("sendmmsg msg_len[%d]=%u\n", i, out[i].msg_len);
        sent += k;
    }
    struct mmsghdr in[2];
    struct sockaddr_in ifrom[2];
    char ibuf[2][256];
    struct iovec iiov[2];
    int got = 0;
    while (got < 2) {
        memset(in, 0, sizeof in);
        for (int i = 0; i < 2; i++) {
            iiov[i].iov_base = ibuf[i]; iiov[i].iov_len = 255;
            in[i].msg_hdr.msg_name = &ifrom[i]; in[i].msg_hdr.msg_namelen = sizeof ifrom[i];
            in[i].msg_hdr.msg_iov = &iiov[i]; in[i].msg_hdr.msg_iovlen = 1;
        }
        int k = recvmmsg(s, in, 2 - got, MSG_WAITFORONE, NULL);
        if (k <= 0) die("recvmmsg");
        for (int i = 0; i < k; i++) {
            ibuf[i][in[i].msg_len] = 0;
            printf("recvmmsg from=%s reply=%s\n", fmt(&ifrom[i], b1), ibuf[i]);
        }
        got += k;
    }
    close(s);

    /* connected: connect, send, recv, read/write, getpeername, getsockname */
    int c = udp();
    if (connect(c, (struct sockaddr *)&web, sizeof web) < 0) die("connect");
    if (send(c, "five", 4, 0) != 4) die("send");
    n = recv(c, buf, sizeof buf - 1, 0);
    if (n < 0) die("recv");
    buf[n] = 0;
    printf("recv reply=%s\n", buf);
    if (write(c, "six", 3) != 3) die("write");
    n = read(c, buf, sizeof buf - 1);
    if (n < 0) die("read");
    buf[n] = 0;
    printf("read reply=%s\n", buf);
    struct sockaddr_in peer; socklen_t pl = sizeof peer;
    if (getpeername(c, (struct sockaddr *)&peer, &pl) < 0) die("getpeername");
    printf("connected peer=%s\n", fmt(&peer, b1));
    sockname(c, "connected");

    /* AF_UNSPEC dissolves the association: no peer, and sendto works */
    struct sockaddr unspec = {0};
    unspec.sa_family = AF_UNSPEC;
    if (connect(c, &unspec, sizeof unspec) < 0) die("connect AF_UNSPEC");
    pl = sizeof peer;
    printf("disconnected getpeername=%s\n",
           getpeername(c, (struct sockaddr *)&peer, &pl) < 0 && errno == ENOTCONN ? "ENOTCONN" : "?");
    if (sendto(c, "seven", 5, 0, (struct sockaddr *)&web, sizeof web) != 5) die("sendto after");
    fl = sizeof from;
    n = recvfrom(c, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &fl);
    if (n < 0) die("recvfrom after");
    buf[n] = 0;
    printf("disconnected from=%s reply=%s\n", fmt(&from, b1), buf);

    /* a receive timeout (SO_RCVTIMEO) with nothing to receive */
    int q = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval shortwait = {1, 0};
    setsockopt(q, SOL_SOCKET, SO_RCVTIMEO, &shortwait, sizeof shortwait);
    if (connect(q, (struct sockaddr *)&web, sizeof web) < 0) die("connect q");
    n = recv(q, buf, sizeof buf, 0);
    printf("timeout n=%zd %s\n", n, n < 0 && errno == EAGAIN ? "EAGAIN" : "?");
    return 0;
}
"#;

/// `IP:PORT` of a `sockname=` line.
fn sockname(out: &str, what: &str) -> String {
    let prefix = format!("{what} sockname=");
    out.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix} line in\n{out}"))
        .to_string()
}

/// 2. Datagrams to an echo server in `web` leave from the server's address,
///    and their replies come back from the echo server's address, through
///    every send and receive call, unconnected and connected.
#[test]
fn udp_echo_sources_and_destinations() {
    let Some(lab) = Lab::new("udp_echo_sources_and_destinations", &["gcc"]) else {
        return;
    };
    let web_ip = lab.net.web_ip.to_string();
    let src = lab.write("udp_client.c", UDP_CLIENT_C.as_bytes());
    let bin = lab.dir.join("udp_client");
    run(crate::harness::cmd(&["gcc", "-O1", "-o", p(&bin), p(&src)])).success();
    let _echo = web_udp(&lab, &["echo", &web_ip, &ECHO_PORT.to_string()]);
    let web = format!("{web_ip}:{ECHO_PORT}");
    let seen_ip = lab.net.remote_web_ip.to_string();
    for mode in MODES {
        let m = mode_name(mode);
        let out = lab.run_ok(lab.rscq(mode, &[p(&bin), web_ip.as_str(), &ECHO_PORT.to_string()]));
        let text = out.out();
        // The unconnected socket: bound on the server by its first send.
        let port = sockname(&text, "recvfrom")
            .strip_prefix("0.0.0.0:")
            .unwrap_or_else(|| panic!("({m}) wildcard sockname\n{}", out.dump()))
            .to_string();
        let me = format!("{seen_ip}:{port}");
        let want_unconnected = format!(
            "recvfrom from={web} len=16 reply={me} one\n\
             recvfrom sockname=0.0.0.0:{port}\n\
             recvmsg from={web} len=16 reply={me} two\n\
             sendmmsg msg_len[0]=5\n\
             sendmmsg msg_len[1]=4\n"
        );
        assert!(
            text.starts_with(&want_unconnected),
            "({m}) unconnected socket\n{}",
            out.dump()
        );
        let mut mm: Vec<&str> = text.lines().filter(|l| l.starts_with("recvmmsg")).collect();
        mm.sort_unstable();
        assert_eq!(
            mm,
            [
                format!("recvmmsg from={web} reply={me} four"),
                format!("recvmmsg from={web} reply={me} three"),
            ],
            "({m}) recvmmsg\n{}",
            out.dump()
        );
        // The connected socket: the server's route picks its address.
        let conn = sockname(&text, "connected");
        assert!(
            conn.starts_with(&format!("{seen_ip}:")),
            "({m}) connected sockname\n{}",
            out.dump()
        );
        let want_connected = format!(
            "recv reply={conn} five\nread reply={conn} six\nconnected peer={web}\nconnected sockname={conn}\n\
             disconnected getpeername=ENOTCONN\n\
             disconnected from={web} reply={conn} seven\n\
             timeout n=-1 EAGAIN\n"
        );
        assert!(
            text.ends_with(&want_connected),
            "({m}) connected socket\n{}",
            out.dump()
        );
    }
}

/// A UDP server under rscq: binds port 0 on the server, says its port,
/// answers one datagram to its source, and reports that source.
const UDP_SERVER_PY: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
print("PORT", s.getsockname()[1], flush=True)
d, peer = s.recvfrom(1000)
s.sendto(b"re:" + d, peer)
print("FROM %s:%d" % peer, flush=True)
"#;

const WEB_CLIENT_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.settimeout(20)
s.sendto(b"hello", (sys.argv[2], int(sys.argv[3])))
d, peer = s.recvfrom(1000)
print("%s from %s:%d me %s:%d" % ((d.decode(),) + peer + s.getsockname()), flush=True)
"#;

/// 3. A UDP server under rscq listens on the server's address; a client in
///    `web` reaches it there, and the answer comes from that address.
#[test]
fn udp_server_under_rscq() {
    let Some(lab) = Lab::new("udp_server_under_rscq", &[]) else {
        return;
    };
    let server = lab.write("udp_server.py", UDP_SERVER_PY.as_bytes());
    let client = lab.write("web_client.py", WEB_CLIENT_PY.as_bytes());
    let py = python();
    let remote_ip = lab.net.remote_web_ip.to_string();
    let web_ip = lab.net.web_ip.to_string();
    for mode in MODES {
        let m = mode_name(mode);
        let mut prog = Running::spawn(lab.rscq(mode, &[py.as_str(), p(&server)]));
        prog.wait_stdout("\n", Duration::from_secs(30));
        let first = prog.stdout_now();
        let port = first
            .strip_prefix("PORT ")
            .and_then(|l| l.lines().next())
            .unwrap_or_else(|| panic!("({m}) no port line: {first:?}"))
            .to_string();
        assert_ne!(port, "0", "({m}) a port must be assigned");
        let out = lab.run_ok(lab.exec(
            Ns::Web,
            &[
                py.as_str(),
                p(&client),
                web_ip.as_str(),
                remote_ip.as_str(),
                &port,
            ],
        ));
        let out_text = out.out();
        let client_port = out_text
            .trim_end()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            out_text,
            format!("re:hello from {remote_ip}:{port} me {web_ip}:{client_port}\n"),
            "({m}) web client\n{}",
            out.dump()
        );
        let done = prog.finish(Duration::from_secs(60));
        assert!(done.status.success(), "({m})\n{}", done.dump());
        assert_eq!(
            done.out(),
            format!("PORT {port}\nFROM {web_ip}:{client_port}\n"),
            "({m}) the program sees the web client's address\n{}",
            done.dump()
        );
    }
}

/// An asyncio datagram client (epoll) on a connected endpoint, then
/// selectors (epoll), poll and select on an unconnected socket.
const ASYNC_CLIENT_PY: &str = r#"
import asyncio, selectors, socket, sys
host, port = sys.argv[1], int(sys.argv[2])

class Client(asyncio.DatagramProtocol):
    def __init__(self, done):
        self.done, self.replies = done, []
    def connection_made(self, transport):
        self.transport = transport
        for word in (b"a1", b"a2"):
            transport.sendto(word)
    def datagram_received(self, data, addr):
        self.replies.append((data.split()[1].decode(), "%s:%d" % addr))
        if len(self.replies) == 2:
            self.done.set_result(sorted(self.replies))

async def main():
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    transport, _ = await loop.create_datagram_endpoint(lambda: Client(done), remote_addr=(host, port))
    print("asyncio", await asyncio.wait_for(done, 20))
    transport.close()

asyncio.run(main())

sel = selectors.DefaultSelector()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
sel.register(s, selectors.EVENT_READ)
s.sendto(b"s1", (host, port))
events = sel.select(timeout=20)
d, peer = s.recvfrom(1000)
print("selectors", len(events), d.split()[1].decode(), "%s:%d" % peer)

import select
s.sendto(b"p1", (host, port))
p = select.poll()
p.register(s, select.POLLIN)
ready = p.poll(20000)
d, peer = s.recvfrom(1000)
print("poll", ready == [(s.fileno(), select.POLLIN)], d.split()[1].decode(), "%s:%d" % peer)
s.sendto(b"x1", (host, port))
r, _, _ = select.select([s], [], [], 20)
d, peer = s.recvfrom(1000)
print("select", r == [s], d.split()[1].decode(), "%s:%d" % peer)
"#;

/// 4. poll/epoll/select readiness: a datagram that reaches the server's
///    socket makes the program's socket readable (asyncio, selectors, poll,
///    select).
#[test]
fn udp_readiness_asyncio_and_selectors() {
    let Some(lab) = Lab::new("udp_readiness_asyncio_and_selectors", &[]) else {
        return;
    };
    let web_ip = lab.net.web_ip.to_string();
    let script = lab.write("async_client.py", ASYNC_CLIENT_PY.as_bytes());
    let _echo = web_udp(&lab, &["echo", &web_ip, &ECHO_PORT.to_string()]);
    let py = python();
    let web = format!("{web_ip}:{ECHO_PORT}");
    for mode in MODES {
        let m = mode_name(mode);
        let out = lab.run_ok(lab.rscq(
            mode,
            &[
                py.as_str(),
                p(&script),
                web_ip.as_str(),
                &ECHO_PORT.to_string(),
            ],
        ));
        assert_eq!(
            out.out(),
            format!(
                "asyncio [('a1', '{web}'), ('a2', '{web}')]\nselectors 1 s1 {web}\n\
                 poll True p1 {web}\nselect True x1 {web}\n"
            ),
            "({m})\n{}",
            out.dump()
        );
    }
}

/// Datagram sockets that are not INET stay local: AF_UNIX with a path,
/// a datagram socketpair, and netlink.
const LOCAL_DGRAM_PY: &str = r#"
import os, socket, sys
path = sys.argv[1]
a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a.bind(path)
b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
b.bind(path + ".b")
b.sendto(b"unix", path)
d, peer = a.recvfrom(100)
print(d.decode(), peer == path + ".b")
x, y = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
x.send(b"pair")
print(y.recv(100).decode())
n = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
n.bind((0, 0))
print("netlink", n.getsockname()[0] == os.getpid())
"#;

/// 5. AF_UNIX, socketpair and netlink datagrams are untouched by --net.
#[test]
fn non_inet_datagrams_stay_local() {
    let Some(lab) = Lab::new("non_inet_datagrams_stay_local", &[]) else {
        return;
    };
    let script = lab.write("local_dgram.py", LOCAL_DGRAM_PY.as_bytes());
    let py = python();
    for (i, mode) in MODES.iter().enumerate() {
        let sock = lab.dir.join(format!("sock{i}"));
        let out = lab.run_ok(lab.rscq(mode, &[py.as_str(), p(&script), p(&sock)]));
        assert_eq!(
            out.out(),
            "unix True\npair\nnetlink True\n",
            "({})\n{}",
            mode_name(mode),
            out.dump()
        );
    }
}

/// Binds a UDP socket, says its port, closes it when `DIR/close` appears,
/// and ends when `DIR/exit` appears.
const CLOSE_PY: &str = r#"
import os, socket, sys, time
d = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
print("PORT", s.getsockname()[1], flush=True)
while not os.path.exists(os.path.join(d, "close")):
    time.sleep(0.05)
s.close()
print("CLOSED", flush=True)
while not os.path.exists(os.path.join(d, "exit")):
    time.sleep(0.05)
"#;

/// Whether a UDP socket is bound to `port` in `remote`.
fn remote_udp_bound(lab: &Lab, port: &str) -> bool {
    let out = lab.run_ok(lab.exec(Ns::Remote, &["ss", "-Huan"]));
    out.out().lines().any(|l| {
        l.split_whitespace()
            .nth(3)
            .is_some_and(|a| a.ends_with(&format!(":{port}")))
    })
}

/// 6. A UDP socket the program closes is released on the server while the
///    program runs on.
#[test]
fn closed_udp_socket_is_released_on_the_server() {
    let Some(lab) = Lab::new("closed_udp_socket_is_released_on_the_server", &["ss"]) else {
        return;
    };
    let script = lab.write("close.py", CLOSE_PY.as_bytes());
    let py = python();
    for (i, mode) in MODES.iter().enumerate() {
        let m = mode_name(mode);
        let dir = lab.mkdir(&format!("close{i}"));
        let mut prog = Running::spawn(lab.rscq(mode, &[py.as_str(), p(&script), p(&dir)]));
        prog.wait_stdout("\n", Duration::from_secs(30));
        let first = prog.stdout_now();
        let port = first
            .strip_prefix("PORT ")
            .and_then(|l| l.lines().next())
            .unwrap_or_else(|| panic!("({m}) no port line: {first:?}"))
            .to_string();
        assert!(
            remote_udp_bound(&lab, &port),
            "({m}) port {port} not bound in remote"
        );
        std::fs::write(dir.join("close"), b"").expect("write");
        prog.wait_stdout("CLOSED", Duration::from_secs(30));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while remote_udp_bound(&lab, &port) {
            assert!(
                std::time::Instant::now() < deadline,
                "({m}) port {port} still bound in remote after the program closed it\n{}",
                lab.server_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::write(dir.join("exit"), b"").expect("write");
        let done = prog.finish(Duration::from_secs(60));
        assert!(done.status.success(), "({m})\n{}", done.dump());
    }
}

/// An IPv6 client: a peer by IPv6 address, an IPv4 peer through its mapped
/// address, and a connected socket.
const V6_CLIENT_PY: &str = r#"
import socket, sys
web6, web4, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(20)
s.sendto(b"six", (web6, port))
d, peer = s.recvfrom(1000)
print("v6", d.decode(), "%s:%d" % peer[:2], "%s:%d" % s.getsockname()[:2])
s.sendto(b"mapped", ("::ffff:" + web4, port))
d, peer = s.recvfrom(1000)
print("mapped", d.decode(), "%s:%d" % peer[:2])
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.settimeout(20)
c.connect((web6, port))
c.send(b"c6")
print("connected", c.recv(1000).decode(), "%s:%d" % c.getpeername()[:2], "%s:%d" % c.getsockname()[:2])
"#;

/// 7. IPv6: datagrams to an IPv6 peer and, from the same IPv6 socket, to
///    an IPv4 peer by its mapped address, leave from the server's
///    addresses; a connected IPv6 socket reports the server's address.
#[test]
fn udp_over_ipv6_and_mapped_ipv4() {
    let Some(lab) = Lab::new("udp_over_ipv6_and_mapped_ipv4", &[]) else {
        return;
    };
    // IPv6 on the remote↔web link only (no duplicate address detection,
    // so the addresses are usable at once).
    let (remote6, web6) = ("fd00:7:7::1", "fd00:7:7::2");
    for (ns, dev, addr) in [
        (Ns::Remote, "to-web", remote6),
        (Ns::Web, "to-remote", web6),
    ] {
        run(crate::harness::cmd(&[
            "ip",
            "-n",
            lab.net.name(ns),
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            dev,
            "nodad",
        ]))
        .success();
    }
    let port = 7008;
    let _echo = web_udp(&lab, &["echo6", &port.to_string()]);
    let script = lab.write("v6_client.py", V6_CLIENT_PY.as_bytes());
    let py = python();
    let web4 = lab.net.web_ip.to_string();
    let remote4 = lab.net.remote_web_ip.to_string();
    for mode in MODES {
        let m = mode_name(mode);
        let out = lab.run_ok(lab.rscq(
            mode,
            &[
                py.as_str(),
                p(&script),
                web6,
                web4.as_str(),
                &port.to_string(),
            ],
        ));
        let text = out.out();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "({m})\n{}", out.dump());
        // v6 REMOTE6:P six WEB6:PORT [::]:P
        let first: Vec<&str> = lines[0].split(' ').collect();
        let p = first
            .get(1)
            .and_then(|a| a.strip_prefix(&format!("{remote6}:")))
            .unwrap_or_else(|| panic!("({m}) web must see {remote6}\n{}", out.dump()));
        assert_eq!(
            lines[0],
            format!("v6 {remote6}:{p} six {web6}:{port} :::{p}"),
            "({m})\n{}",
            out.dump()
        );
        assert_eq!(
            lines[1],
            format!("mapped ::ffff:{remote4}:{p} mapped ::ffff:{web4}:{port}"),
            "({m}) the same socket reaches an IPv4 peer\n{}",
            out.dump()
        );
        let conn = lines[2].rsplit(' ').next().unwrap_or_default().to_string();
        assert!(
            conn.starts_with(&format!("{remote6}:")),
            "({m})\n{}",
            out.dump()
        );
        assert_eq!(
            lines[2],
            format!("connected {conn} c6 {web6}:{port} {conn}"),
            "({m})\n{}",
            out.dump()
        );
    }
}

/// A C program that meets ICMP port-unreachable errors. Each argument
/// after the addresses names a part to run:
/// - `connected`: a connected socket sends to a closed port; `poll` says
///   POLLERR, the next `recv` fails with ECONNREFUSED and the one after
///   does not; connected to an open port, it works again;
/// - `send`: the error fails the next `send` instead, once;
/// - `unconnected`: an unconnected socket's send to a closed port leaves no
///   error; its next exchange works;
/// - `other`: a socket connected to an open port sends to a closed one by
///   address: the error is not its peer's, so it gets none;
/// - `mapped`: an IPv6 socket connected to the IPv4-mapped closed port;
/// - `v6`: an IPv6 socket connected to the closed port at `web`'s IPv6
///   address (the fourth argument);
/// - `brief`: a connected socket sends to the closed port and polls for a
///   second;
/// - `recverr`: an unconnected socket with `IP_RECVERR` finds the error on
///   its error queue, with the destination it is about, the ICMP message's
///   sender and the payload it quoted.
const UDP_ICMP_C: &str = r#"
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static struct sockaddr_in closed_port, open_port;
static struct sockaddr_in6 mapped_closed, v6_closed;

static void die(const char *what) { perror(what); exit(1); }

static const char *err(ssize_t n) {
    static char b[64];
    if (n >= 0) { sprintf(b, "ok %zd", n); return b; }
    return errno == ECONNREFUSED ? "ECONNREFUSED" : errno == EAGAIN ? "EAGAIN" : strerror(errno);
}

static int udp(int family) {
    int s = socket(family, SOCK_DGRAM, 0);
    if (s < 0) die("socket");
    struct timeval tv = {20, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return s;
}

/* poll for input: what came (POLLERR always reported), or "none". */
static void wait_for(int s, int ms, const char *what) {
    struct pollfd p = {s, POLLIN, 0};
    int r = poll(&p, 1, ms);
    printf("%s poll=%d%s%s\n", what, r, p.revents & POLLIN ? " IN" : "",
           p.revents & POLLERR ? " ERR" : "");
}

/* The echo server answers "IP:PORT payload": print the payload. */
static void echo_reply(int s, const char *what) {
    char buf[256];
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0) { printf("%s recv %s\n", what, err(n)); return; }
    buf[n] = 0;
    char *space = strchr(buf, ' ');
    printf("%s reply %s\n", what, space ? space + 1 : buf);
}

static void connected(void) {
    int c = udp(AF_INET);
    if (connect(c, (struct sockaddr *)&closed_port, sizeof closed_port) < 0) die("connect");
    printf("connected send %s\n", err(send(c, "x", 1, 0)));
    wait_for(c, 20000, "connected");
    char buf[16];
    printf("connected recv %s\n", err(recv(c, buf, sizeof buf, 0)));
    printf("connected again %s\n", err(recv(c, buf, sizeof buf, MSG_DONTWAIT)));
    if (connect(c, (struct sockaddr *)&open_port, sizeof open_port) < 0) die("connect open");
    printf("connected open send %s\n", err(send(c, "back", 4, 0)));
    echo_reply(c, "connected open");
    close(c);
}

static void brief(void) {
    int c = udp(AF_INET);
    if (connect(c, (struct sockaddr *)&closed_port, sizeof closed_port) < 0) die("connect");
    printf("brief send %s\n", err(send(c, "x", 1, 0)));
    wait_for(c, 1000, "brief");
    close(c);
}

static void send_fails(void) {
    int c = udp(AF_INET);
    if (connect(c, (struct sockaddr *)&closed_port, sizeof closed_port) < 0) die("connect");
    printf("send first %s\n", err(send(c, "x", 1, 0)));
    wait_for(c, 20000, "send");
    printf("send second %s\n", err(send(c, "y", 1, 0)));
    close(c);
}

static void unconnected(void) {
    int u = udp(AF_INET);
    printf("unconnected sendto %s\n",
           err(sendto(u, "x", 1, 0, (struct sockaddr *)&closed_port, sizeof closed_port)));
    wait_for(u, 1000, "unconnected");
    printf("unconnected open sendto %s\n",
           err(sendto(u, "fine", 4, 0, (struct sockaddr *)&open_port, sizeof open_port)));
    echo_reply(u, "unconnected open");
    close(u);
}

static void other(void) {
    int c = udp(AF_INET);
    if (connect(c, (struct sockaddr *)&open_port, sizeof open_port) < 0) die("connect");
    printf("other sendto %s\n",
           err(sendto(c, "x", 1, 0, (struct sockaddr *)&closed_port, sizeof closed_port)));
    wait_for(c, 1000, "other");
    printf("other send %s\n", err(send(c, "peer", 4, 0)));
    echo_reply(c, "other");
    close(c);
}

static void six(const struct sockaddr_in6 *to, const char *what) {
    int c = udp(AF_INET6);
    if (connect(c, (const struct sockaddr *)to, sizeof *to) < 0) die("connect6");
    printf("%s send %s\n", what, err(send(c, "x", 1, 0)));
    wait_for(c, 20000, what);
    char buf[16];
    printf("%s recv %s\n", what, err(recv(c, buf, sizeof buf, 0)));
    close(c);
}

static void recverr(void) {
    int u = udp(AF_INET);
    int on = 1;
    if (setsockopt(u, SOL_IP, IP_RECVERR, &on, sizeof on) < 0) die("IP_RECVERR");
    printf("recverr sendto %s\n",
           err(sendto(u, "quoted", 6, 0, (struct sockaddr *)&closed_port, sizeof closed_port)));
    wait_for(u, 20000, "recverr");
    struct sockaddr_in about = {0};
    char data[16], control[512];
    struct iovec iov = {data, sizeof data};
    struct msghdr m = {0};
    m.msg_name = &about; m.msg_namelen = sizeof about;
    m.msg_iov = &iov; m.msg_iovlen = 1;
    m.msg_control = control; m.msg_controllen = sizeof control;
    ssize_t n = recvmsg(u, &m, MSG_ERRQUEUE);
    if (n < 0) { printf("recverr errqueue %s\n", err(n)); return; }
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        if (c->cmsg_level != SOL_IP || c->cmsg_type != IP_RECVERR) continue;
        struct sock_extended_err *e = (struct sock_extended_err *)CMSG_DATA(c);
        char ip[INET_ADDRSTRLEN], sender[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &about.sin_addr, ip, sizeof ip);
        inet_ntop(AF_INET, &((struct sockaddr_in *)SO_EE_OFFENDER(e))->sin_addr, sender,
                  sizeof sender);
        printf("recverr errqueue errno=%s origin=%d type=%d code=%d about=%s:%d from=%s "
               "data=%.*s\n",
               e->ee_errno == ECONNREFUSED ? "ECONNREFUSED" : strerror(e->ee_errno),
               e->ee_origin, e->ee_type, e->ee_code, ip, ntohs(about.sin_port), sender,
               (int)n, data);
    }
    char buf[16];
    printf("recverr after %s\n", err(recv(u, buf, sizeof buf, MSG_DONTWAIT)));
    close(u);
}

int main(int argc, char **argv) {
    closed_port.sin_family = open_port.sin_family = AF_INET;
    inet_pton(AF_INET, argv[1], &closed_port.sin_addr);
    open_port.sin_addr = closed_port.sin_addr;
    closed_port.sin_port = htons(atoi(argv[2]));
    open_port.sin_port = htons(atoi(argv[3]));
    mapped_closed.sin6_family = AF_INET6;
    char m[64];
    snprintf(m, sizeof m, "::ffff:%s", argv[1]);
    inet_pton(AF_INET6, m, &mapped_closed.sin6_addr);
    mapped_closed.sin6_port = closed_port.sin_port;
    v6_closed.sin6_family = AF_INET6;
    inet_pton(AF_INET6, argv[4], &v6_closed.sin6_addr);
    v6_closed.sin6_port = closed_port.sin_port;
    setvbuf(stdout, NULL, _IONBF, 0);
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "connected")) connected();
        else if (!strcmp(argv[i], "send")) send_fails();
        else if (!strcmp(argv[i], "brief")) brief();
        else if (!strcmp(argv[i], "unconnected")) unconnected();
        else if (!strcmp(argv[i], "other")) other();
        else if (!strcmp(argv[i], "mapped")) six(&mapped_closed, "mapped");
        else if (!strcmp(argv[i], "v6")) six(&v6_closed, "v6");
        else if (!strcmp(argv[i], "recverr")) recverr();
        else { fprintf(stderr, "unknown part %s\n", argv[i]); return 2; }
    }
    return 0;
}
"#;

/// 8. An ICMP port unreachable the server's socket gets reaches the
///    program's socket as the kernel would report it there: a connected
///    socket sees POLLERR and its next call fails once with ECONNREFUSED
///    (IPv4, IPv6, and IPv6 to an IPv4-mapped peer); an unconnected socket, or
///    one connected to another peer, sees nothing; one with `IP_RECVERR`
///    finds the error on its error queue. Compared with the program run
///    directly in `remote`, in both modes (`--pure` does not pass errors on
///    to unconnected sockets, nor make a send fail: those parts run in the
///    default mode only).
#[test]
fn udp_icmp_unreachable_reaches_the_program() {
    let Some(lab) = Lab::new(
        "udp_icmp_unreachable_reaches_the_program",
        &["gcc", "sysctl", "setpriv"],
    ) else {
        return;
    };
    let web_ip = lab.net.web_ip.to_string();
    let src = lab.write("udp_icmp.c", UDP_ICMP_C.as_bytes());
    let bin = lab.dir.join("udp_icmp");
    run(crate::harness::cmd(&["gcc", "-O1", "-o", p(&bin), p(&src)])).success();
    let _echo = web_udp(&lab, &["echo", &web_ip, &ECHO_PORT.to_string()]);
    // `web` answers with one port unreachable a second per peer once a
    // burst of six is spent; the runs below need more, closer together.
    for limit in ["net.ipv4.icmp_ratelimit=0", "net.ipv6.icmp.ratelimit=0"] {
        lab.run_ok(lab.exec(Ns::Web, &["sysctl", "-q", "-w", limit]));
    }
    // IPv6 on the remote↔web link (no duplicate address detection, so the
    // addresses are usable at once).
    let web6 = "fd00:7:9::2";
    for (ns, dev, addr) in [
        (Ns::Remote, "to-web", "fd00:7:9::1"),
        (Ns::Web, "to-remote", web6),
    ] {
        run(crate::harness::cmd(&[
            "ip",
            "-n",
            lab.net.name(ns),
            "addr",
            "add",
            &format!("{addr}/64"),
            "dev",
            dev,
            "nodad",
        ]))
        .success();
    }
    // Nothing listens on this port in `web`.
    let closed = "7009";
    let echo = ECHO_PORT.to_string();
    let both = ["connected", "unconnected", "other", "mapped", "v6"];
    let default_only = ["send", "recverr"];
    let argv = |parts: &[&str]| -> Vec<String> {
        let mut v = vec![
            p(&bin).to_string(),
            web_ip.clone(),
            closed.into(),
            echo.clone(),
            web6.into(),
        ];
        v.extend(parts.iter().map(|s| (*s).to_string()));
        v
    };
    let all: Vec<&str> = both.iter().chain(default_only.iter()).copied().collect();
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv(&all)));
    let want = format!(
        "connected send ok 1\nconnected poll=1 ERR\nconnected recv ECONNREFUSED\n\
         connected again EAGAIN\nconnected open send ok 4\nconnected open reply back\n\
         unconnected sendto ok 1\nunconnected poll=0\nunconnected open sendto ok 4\n\
         unconnected open reply fine\n\
         other sendto ok 1\nother poll=0\nother send ok 4\nother reply peer\n\
         mapped send ok 1\nmapped poll=1 ERR\nmapped recv ECONNREFUSED\n\
         v6 send ok 1\nv6 poll=1 ERR\nv6 recv ECONNREFUSED\n\
         send first ok 1\nsend poll=1 ERR\nsend second ECONNREFUSED\n\
         recverr sendto ok 6\nrecverr poll=1 ERR\n\
         recverr errqueue errno=ECONNREFUSED origin=2 type=3 code=3 about={web_ip}:{closed} \
         from={web_ip} data=quoted\n\
         recverr after EAGAIN\n"
    );
    assert_eq!(native.out(), want, "native run\n{}", native.dump());
    for mode in MODES {
        let m = mode_name(mode);
        let parts: Vec<&str> = if mode.is_empty() {
            all.clone()
        } else {
            both.to_vec()
        };
        let out = lab.run_ok(lab.rscq(mode, &argv(&parts)));
        let reference = if mode.is_empty() {
            native.out()
        } else {
            lab.run_ok(lab.exec(Ns::Remote, &argv(&parts))).out()
        };
        assert_eq!(out.out(), reference, "({m})\n{}", out.dump());
    }
    // Without CAP_NET_RAW rscq cannot send the ICMP message: it says so
    // once, and the program runs on without the error.
    let with_raw = lab.rscq(&[], &argv(&["brief", "brief"]));
    let args: Vec<&std::ffi::OsStr> = with_raw.get_args().collect();
    assert_eq!(
        args[..2],
        ["netns", "exec"],
        "{}",
        crate::harness::describe(&with_raw)
    );
    let mut without_raw = std::process::Command::new(with_raw.get_program());
    without_raw
        .args(&args[..3])
        .args(["setpriv", "--bounding-set", "-net_raw", "--"])
        .args(&args[3..]);
    for (key, value) in with_raw.get_envs() {
        if let Some(value) = value {
            without_raw.env(key, value);
        }
    }
    let out = lab.run_ok(without_raw);
    assert_eq!(
        out.out(),
        "brief send ok 1\nbrief poll=0\nbrief send ok 1\nbrief poll=0\n",
        "without CAP_NET_RAW\n{}",
        out.dump()
    );
    assert_eq!(
        out.err().matches("rscq: no raw ICMP socket").count(),
        1,
        "without CAP_NET_RAW\n{}",
        out.dump()
    );
}

/// The program's UDP-Lite client: an unconnected and a connected socket
/// talk to web's UDP-Lite echo; a UDP-Lite datagram to a port where web
/// has only a UDP socket is refused (ICMP port unreachable), as UDP-Lite
/// and UDP are different protocols; and a UDP-Lite socket the program
/// binds receives what web sends it.
const UDPLITE_CLIENT_PY: &str = r#"
import socket, sys
web, lite_port, udp_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def lite():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDPLITE)
    s.settimeout(20)
    return s
def seen(data, s):
    who, payload = data.split(b" ", 1)
    ip, port = who.decode().rsplit(":", 1)
    return "from %s own-port=%s %s" % (ip, int(port) == s.getsockname()[1], payload.decode())
s = lite()
s.sendto(b"one", (web, lite_port))
data, peer = s.recvfrom(200)
print("unconnected", seen(data, s), "peer", peer)
c = lite()
c.connect((web, lite_port))
c.send(b"two")
print("connected", seen(c.recv(200), c))
r = lite()
r.connect((web, udp_port))
r.send(b"three")
try:
    print("to a UDP port: answered", r.recv(200))
except OSError as e:
    print("to a UDP port:", type(e).__name__, e.errno)
b = lite()
b.bind(("0.0.0.0", 0))
b.sendto(b"four", (web, lite_port))
data, peer = b.recvfrom(200)
print("bound", seen(data, b), "peer", peer)
"#;

/// UDP-Lite (`IPPROTO_UDPLITE`) sockets are carried: their datagrams leave
/// from the server's host as UDP-Lite (web's UDP-Lite echo gets them, its
/// UDP socket on another port does not) and the replies come back, as
/// for the same script run directly in `remote`.
#[test]
fn udplite_datagrams_leave_and_arrive_as_udplite() {
    let Some(mut lab) = Lab::prepare("udplite_datagrams_leave_and_arrive_as_udplite", &[]) else {
        return;
    };
    lab.start_server(None);
    let web_ip = lab.net.web_ip.to_string();
    let lite_port = (ECHO_PORT + 1).to_string();
    let _echo = web_udp(&lab, &["echo", &web_ip, &ECHO_PORT.to_string()]);
    let _lite = web_udp(&lab, &["echolite", &web_ip, &lite_port]);
    let script = lab.write("udplite_client.py", UDPLITE_CLIENT_PY.as_bytes());
    let py = python();
    let argv = [
        py.as_str(),
        p(&script),
        web_ip.as_str(),
        lite_port.as_str(),
        &ECHO_PORT.to_string(),
    ];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    let remote_ip = lab.net.remote_web_ip;
    assert_eq!(
        native.out(),
        format!(
            "unconnected from {remote_ip} own-port=True one peer ('{web_ip}', {lite_port})\n\
             connected from {remote_ip} own-port=True two\n\
             to a UDP port: ConnectionRefusedError {}\n\
             bound from {remote_ip} own-port=True four peer ('{web_ip}', {lite_port})\n",
            libc::ECONNREFUSED
        ),
        "{}",
        native.dump()
    );
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            native.out(),
            "({})\n{}",
            mode_name(mode),
            out.dump()
        );
    }
}
