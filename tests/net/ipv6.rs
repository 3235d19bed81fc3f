//! IPv6 over the lab: outgoing TCP and UDP to web's IPv6 address, and a
//! listener on `::` whose `IPV6_V6ONLY` decides whether web's IPv4 clients
//! reach it. Each program runs directly in `remote` and under rscq in every
//! mode, and must give the same answers.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::harness::{MODES, Output, Running, TIMEOUT, compile_c, p, pattern, python, run, sha256};
use crate::netns::{Lab, Ns};

const HTTP_PORT: u16 = 8000;

/// The native run and then one run per mode: (label, `None` for native).
fn runs() -> [(&'static str, Option<&'static [&'static str]>); 3] {
    [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ]
}

/// `::ffff:A.B.C.D`, as Linux shows an IPv4 peer of a dual-stack socket.
fn mapped(ip: Ipv4Addr) -> String {
    format!("::ffff:{ip}")
}

/// web's IPv6 address is reachable from remote only, as its IPv4 one is.
#[track_caller]
fn assert_v6_topology(lab: &Lab, url: &str) {
    let out = lab.run_ok(lab.exec(Ns::Remote, &["curl", "-g", "-sS", "--max-time", "20", url]));
    assert_eq!(out.out(), "hello from web over IPv6\n", "{}", out.dump());
    let out = run(lab.exec(Ns::Local, &["curl", "-g", "-sS", "--max-time", "20", url])).failure();
    assert_eq!(
        out.code(),
        7,
        "curl from local must not connect\n{}",
        out.dump()
    );
    let web6 = lab.net.web_ip6.to_string();
    let out = run(lab.exec(Ns::Local, &["ip", "-6", "route", "get", &web6])).failure();
    assert!(
        out.err().contains("Network is unreachable"),
        "{}",
        out.dump()
    );
    let out = lab.run_ok(lab.exec(
        Ns::Remote,
        &["cat", "/proc/sys/net/ipv6/conf/all/forwarding"],
    ));
    assert_eq!(out.out().trim(), "0", "{}", out.dump());
}

/// A client over IPv6 to web's echo server, and one over an IPv4-mapped
/// address on an AF_INET6 socket: the names each side of the connection
/// has, and the echo.
const SOCKNAME6_PY: &str = r#"
import socket, sys
host, mapped, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
for target in (host, mapped):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect((target, port))
    peer = s.getpeername()
    name = s.getsockname()
    print("peer", peer[0], peer[1], "flowinfo", peer[2], "scope", peer[3])
    print("sock", name[0], "port nonzero", name[1] != 0)
    s.sendall(b"hi " + target.encode() + b"\n")
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    print("reply", data)
    s.close()
import errno
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
try:
    s.connect((mapped, port))
    print("v6only to mapped: connected")
except OSError as e:
    print("v6only to mapped:", errno.errorcode.get(e.errno))
"#;

/// Outgoing TCP over IPv6: curl fetches from web's IPv6 address, web sees
/// remote's IPv6 address, and getpeername/getsockname name web and remote,
/// also for an IPv4-mapped destination, under rscq as directly in remote.
#[test]
fn ipv6_outgoing_tcp() {
    let Some(lab) = Lab::new("ipv6_outgoing_tcp", &["curl"]) else {
        return;
    };
    let dir = lab.mkdir("www");
    let big = pattern(4 * 1024 * 1024 + 7, 0x6);
    fs::write(dir.join("big.bin"), &big).expect("write");
    fs::write(dir.join("hello.txt"), b"hello from web over IPv6\n").expect("write");
    let web6 = lab.net.web_ip6;
    let _web = lab.web_http_at(web6.into(), &dir, HTTP_PORT);
    let _whoami = lab.web_whoami_at(web6.into(), 8080);
    let _echo = lab.web_echo_at(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 7000, "E");
    let base = format!("http://[{web6}]:{HTTP_PORT}");
    assert_v6_topology(&lab, &format!("{base}/hello.txt"));

    let whoami = format!("http://[{web6}]:8080/");
    let script = lab.write("sockname6.py", SOCKNAME6_PY.as_bytes());
    let py = python();
    let web6_s = web6.to_string();
    let web4_mapped = mapped(lab.net.web_ip);
    let client = [py.as_str(), p(&script), &web6_s, &web4_mapped, "7000"];
    let expected_names = format!(
        "peer {web6} 7000 flowinfo 0 scope 0\n\
         sock {} port nonzero True\n\
         reply b'E:hi {web6}\\n'\n\
         peer {web4_mapped} 7000 flowinfo 0 scope 0\n\
         sock {} port nonzero True\n\
         reply b'E:hi {web4_mapped}\\n'\n\
         v6only to mapped: ENETUNREACH\n",
        lab.net.remote_web_ip6,
        mapped(lab.net.remote_web_ip),
    );
    let outdir = lab.mkdir("downloads");
    for (what, mode) in runs() {
        let command = |argv: &[&str]| match mode {
            None => lab.exec(Ns::Remote, argv),
            Some(mode) => lab.rscq(mode, argv),
        };
        let file = outdir.join(format!("big-{}.bin", what.trim_start_matches('-')));
        let out = lab.run_ok(command(&[
            "curl",
            "-g",
            "-sS",
            "--fail",
            "--max-time",
            "50",
            "-o",
            p(&file),
            &format!("{base}/big.bin"),
        ]));
        assert_eq!(
            crate::harness::sha256_file(&file),
            sha256(&big),
            "({what}) curl over IPv6: wrong bytes\n{}",
            out.dump()
        );

        let out = lab.run_ok(command(&["curl", "-g", "-sS", "--max-time", "30", &whoami]));
        assert_eq!(
            out.out(),
            format!("{}\n", lab.net.remote_web_ip6),
            "({what}) web must see remote's IPv6 address\n{}",
            out.dump()
        );

        let out = lab.run_ok(command(&client));
        assert_eq!(out.out(), expected_names, "({what})\n{}", out.dump());
    }
}

/// `PORT V6ONLY COUNT`: an AF_INET6 listener on `[::]:PORT`, with
/// IPV6_V6ONLY set to V6ONLY first (`-`: left alone); it prints the option
/// before and after bind, then serves COUNT connections one at a time,
/// printing the peer accept() and getpeername() give and the local name,
/// and answering each client's line with what it saw.
const LISTEN6_C: &str = r#"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *show(const struct sockaddr_in6 *a, char *buf) {
    if (a->sin6_family != AF_INET6)
        return "not-inet6";
    return inet_ntop(AF_INET6, &a->sin6_addr, buf, INET6_ADDRSTRLEN);
}

static int v6only(int s) {
    int v = -1;
    socklen_t l = sizeof v;
    if (getsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, &l) != 0)
        perror("getsockopt");
    return v;
}

int main(int argc, char **argv) {
    int port = atoi(argv[1]), count = atoi(argv[3]);
    char buf[INET6_ADDRSTRLEN];
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    if (strcmp(argv[2], "-") != 0) {
        int v = atoi(argv[2]);
        if (setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &v, sizeof v) != 0) {
            perror("setsockopt");
            return 1;
        }
    }
    printf("v6only before bind %d\n", v6only(s));
    struct sockaddr_in6 any = {0};
    any.sin6_family = AF_INET6;
    any.sin6_port = htons(port);
    any.sin6_addr = in6addr_any;
    if (bind(s, (struct sockaddr *)&any, sizeof any) != 0 || listen(s, 8) != 0) {
        perror("bind/listen");
        return 1;
    }
    struct sockaddr_in6 name;
    socklen_t len = sizeof name;
    getsockname(s, (struct sockaddr *)&name, &len);
    printf("bound %s port %s len %u\n", show(&name, buf),
           ntohs(name.sin6_port) == port ? "ok" : "WRONG", len);
    printf("v6only after bind %d\n", v6only(s));
    printf("READY\n");
    fflush(stdout);
    for (int i = 0; i < count; i++) {
        struct sockaddr_in6 peer;
        len = sizeof peer;
        int c = accept(s, (struct sockaddr *)&peer, &len);
        if (c < 0) {
            perror("accept");
            return 1;
        }
        printf("accept %s len %u port nonzero %d\n", show(&peer, buf), len, peer.sin6_port != 0);
        len = sizeof peer;
        getpeername(c, (struct sockaddr *)&peer, &len);
        printf("getpeername %s\n", show(&peer, buf));
        len = sizeof name;
        getsockname(c, (struct sockaddr *)&name, &len);
        printf("getsockname %s port %s\n", show(&name, buf),
               ntohs(name.sin6_port) == port ? "ok" : "WRONG");
        char line[256];
        ssize_t n = 0, r;
        while (n < (ssize_t)sizeof line - 1 && (r = read(c, line + n, 1)) == 1 && line[n] != '\n')
            n++;
        line[n] = 0;
        printf("line %s\n", line);
        fflush(stdout);
        char reply[512];
        int m = snprintf(reply, sizeof reply, "server saw %s: %s\n", show(&peer, buf), line);
        write(c, reply, m);
        close(c);
    }
    return 0;
}
"#;

/// `HOST PORT LINE`: connects, sends LINE, prints the answer, or the
/// connect's errno.
const CLIENT_PY: &str = r#"
import errno, socket, sys
host, port, line = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    s = socket.create_connection((host, port), timeout=30)
except OSError as e:
    print("connect", errno.errorcode.get(e.errno, e.errno))
    sys.exit(0)
s.sendall(line.encode() + b"\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print("reply", data.decode().strip())
"#;

/// A listener on `::` under rscq: with IPV6_V6ONLY=0 web reaches it over
/// IPv4 (the peer shows as `::ffff:a.b.c.d`) and over IPv6; with
/// IPV6_V6ONLY=1 web's IPv4 connect is refused and IPv6 still works; the
/// option reads back as set. As directly in remote.
#[test]
fn ipv6_listener_v6only() {
    let Some(lab) = Lab::new("ipv6_listener_v6only", &["gcc"]) else {
        return;
    };
    let server = compile_c(&lab.dir, "listen6", LISTEN6_C, &[]);
    let client = lab.write("client.py", CLIENT_PY.as_bytes());
    let py = python();
    let (web4, web6) = (lab.net.web_ip, lab.net.web_ip6);
    let (remote4, remote6) = (lab.net.remote_web_ip, lab.net.remote_web_ip6);
    let connect = |host: String, port: u16, line: &str| -> Output {
        lab.run_ok(lab.exec(
            Ns::Web,
            &[py.as_str(), p(&client), &host, &port.to_string(), line],
        ))
    };
    let mut port = 8200u16;
    for v6only in ["0", "1"] {
        let mut reference: Option<String> = None;
        for (what, mode) in runs() {
            // A port per run: nothing of the run before can be in the way.
            port += 1;
            let port_s = port.to_string();
            let count = if v6only == "0" { "2" } else { "1" };
            let argv = [p(&server), port_s.as_str(), v6only, count];
            let c = match mode {
                None => lab.exec(Ns::Remote, &argv),
                Some(mode) => lab.rscq(mode, &argv),
            };
            let mut srv = Running::spawn(c);
            srv.wait_stdout("READY", Duration::from_secs(30));
            let context = |srv: &Running| {
                format!(
                    "(V6ONLY={v6only}, {what})\n{}\n--- rscq-server ---\n{}",
                    srv.snapshot().dump(),
                    lab.server_log()
                )
            };
            let over_v4 = connect(remote4.to_string(), port, "hello-v4");
            let want_v4 = if v6only == "0" {
                format!("reply server saw {}: hello-v4\n", mapped(web4))
            } else {
                "connect ECONNREFUSED\n".to_string()
            };
            assert_eq!(
                over_v4.out(),
                want_v4,
                "IPv4 client {}\n{}",
                over_v4.dump(),
                context(&srv)
            );
            let over_v6 = connect(remote6.to_string(), port, "hello-v6");
            assert_eq!(
                over_v6.out(),
                format!("reply server saw {web6}: hello-v6\n"),
                "IPv6 client {}\n{}",
                over_v6.dump(),
                context(&srv)
            );
            let ctx = context(&srv);
            let out = srv.finish(TIMEOUT);
            assert!(out.status.success(), "{ctx}");
            let mut want = format!(
                "v6only before bind {v6only}\nbound :: port ok len 28\nv6only after bind {v6only}\nREADY\n"
            );
            if v6only == "0" {
                want.push_str(&format!(
                    "accept {m} len 28 port nonzero 1\ngetpeername {m}\ngetsockname {r} port ok\nline hello-v4\n",
                    m = mapped(web4),
                    r = mapped(remote4)
                ));
            }
            want.push_str(&format!(
                "accept {web6} len 28 port nonzero 1\ngetpeername {web6}\ngetsockname {remote6} port ok\nline hello-v6\n"
            ));
            assert_eq!(out.out(), want, "{ctx}");
            match &reference {
                None => reference = Some(out.out()),
                Some(native) => assert_eq!(&out.out(), native, "{ctx}"),
            }
        }
    }
}

/// UDP over IPv6: sendto/recvfrom with web's echo server, then a connected
/// socket, with the names each side has.
const UDP6_PY: &str = r#"
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
V6ONLY = (socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
for want in (0, 1):
    b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    b.setsockopt(*V6ONLY, want)
    b.bind(("::", 0))
    print("bound to :: with IPV6_V6ONLY", want, "reads", b.getsockopt(*V6ONLY))
    b.close()
import errno
o = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
o.setsockopt(*V6ONLY, 1)
for what, call in (
    ("IPv6-only sendto mapped", lambda: o.sendto(b"x", (sys.argv[3], port))),
    ("IPv6-only connect mapped", lambda: o.connect((sys.argv[3], port))),
):
    try:
        call()
        print(what, "went through")
    except OSError as e:
        print(what, errno.errorcode[e.errno])
o.close()
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(30)
s.sendto(b"ping one", (host, port))
data, addr = s.recvfrom(2048)
print("recvfrom", data, addr[0], addr[1])
print("sock port nonzero", s.getsockname()[1] != 0)
print("bound by sendto, IPV6_V6ONLY reads", s.getsockopt(*V6ONLY))
s.close()
c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
c.settimeout(30)
c.connect((host, port))
print("peer", c.getpeername()[:2])
c.send(b"x" * 1200)
print("echo length", len(c.recv(4096)))
c.send(b"ping two")
print("recv", c.recv(2048))
"#;

/// `HOST PORT`: echoes every datagram to its sender.
const UDP6_ECHO_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("READY", flush=True)
while True:
    data, addr = s.recvfrom(65536)
    s.sendto(data, addr)
"#;

/// A UDP echo over IPv6 to web, under rscq as directly in remote.
#[test]
fn ipv6_udp_echo() {
    let Some(lab) = Lab::new("ipv6_udp_echo", &[]) else {
        return;
    };
    let py = python();
    let web6 = lab.net.web_ip6.to_string();
    let echo = lab.write("udp6_echo.py", UDP6_ECHO_PY.as_bytes());
    let mut srv = Running::spawn(lab.exec(Ns::Web, &[py.as_str(), p(&echo), &web6, "7100"]));
    srv.wait_stdout("READY", Duration::from_secs(30));
    let script = lab.write("udp6.py", UDP6_PY.as_bytes());
    let web4_mapped = mapped(lab.net.web_ip);
    let argv = [py.as_str(), p(&script), &web6, "7100", &web4_mapped];
    let expected = format!(
        "bound to :: with IPV6_V6ONLY 0 reads 0\nbound to :: with IPV6_V6ONLY 1 reads 1\n\
         IPv6-only sendto mapped ENETUNREACH\nIPv6-only connect mapped ENETUNREACH\n\
         recvfrom b'ping one' {web6} 7100\nsock port nonzero True\n\
         bound by sendto, IPV6_V6ONLY reads 0\npeer ('{web6}', 7100)\n\
         echo length 1200\nrecv b'ping two'\n"
    );
    for (what, mode) in runs() {
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let out = lab.run_ok(c);
        assert_eq!(out.out(), expected, "({what})\n{}", out.dump());
    }
    drop(srv);
}
