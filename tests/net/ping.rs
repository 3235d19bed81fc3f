//! ICMP echo ("ping") sockets under `--net`: an unprivileged ping socket
//! (`SOCK_DGRAM`, `IPPROTO_ICMP` or `IPPROTO_ICMPV6`) is carried to a ping
//! socket on the server, so an echo to an address only the server reaches
//! gets that address's reply, as on the server's host, never one that
//! rscq's loopback made up (an ICMP datagram socket once went the UDP
//! way, and its echo to a relay's loopback address was answered by the
//! local kernel). Raw sockets stay refused (README, "What does not work
//! yet").

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python, run};
use crate::netns::{Lab, Ns};

/// Ping sockets for every group, on both hosts (namespaces start with
/// none allowed; the IPv4 setting counts for IPv6 ping sockets too).
fn allow_ping_sockets(lab: &Lab) {
    let allow = "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range";
    for ns in [Ns::Local, Ns::Remote] {
        lab.run_ok(lab.exec(ns, &["sh", "-c", allow]));
    }
}

/// One echo request on an unprivileged ICMP socket of family `argv[1]`
/// (`SOCK_DGRAM`; the kernel sets its id and checksum) to `argv[2]`, and
/// who answered it, with what: the reply's id is the socket's own (the
/// port `getsockname` reports), whatever id the request had.
const ECHO_PY: &str = r#"
import errno, socket, struct, sys
v6 = sys.argv[1] == "6"
family, proto, reply = (socket.AF_INET6, socket.IPPROTO_ICMPV6, 129) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP, 0)
s = socket.socket(family, socket.SOCK_DGRAM, proto)
s.settimeout(5)
try:
    s.sendto(struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 4321, 1) + b"rscqping", (sys.argv[2], 0))
    data, source = s.recvfrom(1000)
    kind, code, _, ident, seq = struct.unpack("!BBHHH", data[:8])
    print("type", kind, "code", code, "from", source[0], "port", source[1], flush=True)
    print("id is the socket's", ident == s.getsockname()[1], "seq", seq, "data", data[8:], flush=True)
except OSError as e:
    print("failed with", errno.errorcode.get(e.errno, e), flush=True)
"#;

/// An echo on a ping socket to an address only the server reaches is
/// answered by that address as on the server's host, IPv4 and IPv6;
/// never by loopback.
#[test]
fn an_icmp_echo_is_never_answered_by_loopback() {
    let Some(lab) = Lab::new("an_icmp_echo_is_never_answered_by_loopback", &[]) else {
        return;
    };
    allow_ping_sockets(&lab);
    let script = lab.write("echo.py", ECHO_PY.as_bytes());
    let py = python();
    for (family, web) in [
        ("4", lab.net.web_ip.to_string()),
        ("6", lab.net.web_ip6.to_string()),
    ] {
        let argv = [py.as_str(), p(&script), family, web.as_str()];
        let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
        let reply = if family == "4" { 0 } else { 129 };
        assert_eq!(
            native.out(),
            format!(
                "type {reply} code 0 from {web} port 0\nid is the socket's True seq 1 data b'rscqping'\n"
            ),
            "{}",
            native.dump()
        );
        each_mode_as_natively(&lab, &argv, &native, "must be answered as natively");
    }
}

/// Runs `argv` under rscq in each mode: it must exit 0 and print what it
/// printed natively (`native`); `what` says what that means.
#[track_caller]
fn each_mode_as_natively(lab: &Lab, argv: &[&str], native: &Output, what: &str) {
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, argv)).finish(TIMEOUT);
        assert!(
            out.code() == 0 && out.out() == native.out(),
            "({mode:?}) {what}\n--- native ---\n{}\n--- under rscq ---\n{}\n--- server ---\n{}",
            native.dump(),
            out.dump(),
            lab.server_log()
        );
    }
}

/// A receive on a ping socket that nothing answers, ended by `argv[1]`:
/// `alarm` (SIGALRM, whose handler raises) or `timeout` (`SO_RCVTIMEO`).
/// One echo to `argv[2]` is answered first.
const WAIT_PY: &str = r#"
import signal, socket, struct, sys
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"rscqping", (sys.argv[2], 0))
print("reply type", s.recvfrom(1000)[0][0], flush=True)
if sys.argv[1] == "timeout":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 1, 0))
else:
    signal.alarm(1)
try:
    s.recvfrom(1000)
    print("got a second reply", flush=True)
except Alarm:
    print("interrupted by SIGALRM", flush=True)
except OSError as e:
    print("failed with errno", e.errno, flush=True)
"#;

/// A program blocked in a ping socket's receive is interrupted by its
/// `alarm`, and a receive timeout ends it, as natively.
#[test]
fn a_ping_receive_ends_at_an_alarm_or_its_timeout() {
    let Some(lab) = Lab::new("a_ping_receive_ends_at_an_alarm_or_its_timeout", &[]) else {
        return;
    };
    allow_ping_sockets(&lab);
    let script = lab.write("wait.py", WAIT_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    for (how, want) in [
        ("alarm", "interrupted by SIGALRM"),
        ("timeout", "failed with errno 11"),
    ] {
        let argv = [py.as_str(), p(&script), how, web.as_str()];
        let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
        assert_eq!(
            native.out(),
            format!("reply type 0\n{want}\n"),
            "{}",
            native.dump()
        );
        each_mode_as_natively(
            &lab,
            &argv,
            &native,
            &format!("{how}: must end as natively"),
        );
    }
}

/// A server that may not open ping sockets (its `ping_group_range`
/// excludes it): the program's first send fails with the server's EACCES.
#[test]
fn a_ping_socket_the_server_may_not_open_fails_with_its_errno() {
    let Some(lab) = Lab::new(
        "a_ping_socket_the_server_may_not_open_fails_with_its_errno",
        &[],
    ) else {
        return;
    };
    let allow = "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range";
    lab.run_ok(lab.exec(Ns::Local, &["sh", "-c", allow]));
    let script = lab.write("echo.py", ECHO_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    let argv = [py.as_str(), p(&script), "4", web.as_str()];
    // Natively, the socket itself is refused: Python's `socket()` raises
    // outside the script's `try`.
    let native = run(lab.exec(Ns::Remote, &argv));
    assert!(
        native.err().contains("PermissionError"),
        "{}",
        native.dump()
    );
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert!(
            out.code() == 0 && out.out() == "failed with EACCES\n",
            "({mode:?}) must fail with the server's EACCES at the first send\n--- under rscq ---\n{}",
            out.dump()
        );
    }
}

/// A raw ICMP socket's `sendmsg` (whose address the seccomp filter cannot
/// see) to `argv[1]`: what it returned.
const RAW_SENDMSG_PY: &str = r#"
import errno, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
try:
    n = s.sendmsg([struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"rscqping"], [], 0, (sys.argv[1], 0))
    print("sent", n, flush=True)
except OSError as e:
    print("failed with", errno.errorcode.get(e.errno, e), flush=True)
"#;

/// An address the client's namespace routes (through its loopback) and
/// the server's does not: a raw `sendmsg` to it that left from the
/// client host would succeed there, while on the server's host (and under
/// rscq, which carries no ICMP) it fails with ENETUNREACH.
#[test]
fn a_raw_icmp_sendmsg_never_leaves_from_the_client_host() {
    let Some(lab) = Lab::new("a_raw_icmp_sendmsg_never_leaves_from_the_client_host", &[]) else {
        return;
    };
    let only_here = "10.99.77.1";
    lab.run_ok(lab.exec(
        Ns::Local,
        &["ip", "route", "add", "10.99.77.0/24", "dev", "lo"],
    ));
    let script = lab.write("raw_sendmsg.py", RAW_SENDMSG_PY.as_bytes());
    let py = python();
    let argv = [py.as_str(), p(&script), only_here];
    let here = lab.run_ok(lab.exec(Ns::Local, &argv));
    assert!(here.out().starts_with("sent"), "{}", here.dump());
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(
        native.out(),
        "failed with ENETUNREACH\n",
        "{}",
        native.dump()
    );
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert!(
            out.code() == 0 && out.out() == native.out(),
            "({mode:?}) must fail as on the server's host\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
    }
}

/// `ping`'s output without its times (the round trips differ).
fn without_times(out: &str) -> String {
    out.lines()
        .map(|line| {
            if line.starts_with("rtt ") {
                "rtt"
            } else if let Some(at) = line.find(" time=") {
                &line[..at]
            } else if let Some(at) = line.find(", time ") {
                &line[..at]
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// iputils `ping`, which opens ping sockets where `ping_group_range`
/// allows (root included), prints what it prints on the server's host,
/// times aside: three echoes answered by an address only the server
/// reaches, with that host's TTL.
#[test]
fn iputils_ping_prints_as_on_the_server_host() {
    let Some(lab) = Lab::new("iputils_ping_prints_as_on_the_server_host", &["ping"]) else {
        return;
    };
    allow_ping_sockets(&lab);
    let web = lab.net.web_ip.to_string();
    let argv = ["ping", "-c", "3", "-i", "0.2", "-W", "5", web.as_str()];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert!(
        native
            .out()
            .contains(&format!("64 bytes from {web}: icmp_seq=3 ttl=")),
        "{}",
        native.dump()
    );
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert!(
            out.code() == 0 && without_times(&out.out()) == without_times(&native.out()),
            "({mode:?}) must print as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
    }
}

/// busybox `ping` opens only raw sockets (1.35 has no ping-socket
/// fallback), which rscq does not carry: under rscq it fails at its first
/// send with ENETUNREACH, in both modes, and no echo is ever answered from
/// the client's host, though natively it is answered.
#[test]
fn busybox_ping_opens_a_raw_socket_which_is_refused() {
    let Some(lab) = Lab::new(
        "busybox_ping_opens_a_raw_socket_which_is_refused",
        &["busybox"],
    ) else {
        return;
    };
    allow_ping_sockets(&lab);
    let web = lab.net.web_ip.to_string();
    let argv = ["busybox", "ping", "-c", "3", "-W", "5", web.as_str()];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert!(
        native
            .out()
            .contains(&format!("64 bytes from {web}: seq=2 ttl=")),
        "{}",
        native.dump()
    );
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert!(
            out.code() == 1
                && !out.out().contains("bytes from")
                && out.err().contains("sendto: Network is unreachable"),
            "({mode:?}) must be refused as documented\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
            out.dump()
        );
    }
}
