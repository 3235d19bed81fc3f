//! ICMP echo ("ping") sockets under `--net`: not carried yet (README,
//! "What does not work yet"), so an echo to an address only the server
//! reaches must get the real answer or the documented ENETUNREACH, never
//! a reply that rscq's loopback made up (an ICMP datagram socket once went
//! the UDP way, and its echo to a relay's loopback address was answered
//! by the local kernel).

use crate::harness::{MODES, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// One echo request on an unprivileged ICMP socket (`SOCK_DGRAM`,
/// `IPPROTO_ICMP`; the kernel sets its id and checksum) to `argv[1]`,
/// and who answered it.
const ECHO_PY: &str = r#"
import errno, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)
s.settimeout(5)
try:
    s.sendto(struct.pack("!BBHHH", 8, 0, 0, 0, 1) + b"rscqping", (sys.argv[1], 0))
    data, source = s.recvfrom(1000)
    print("type", data[0], "from", source[0], flush=True)
except OSError as e:
    print("failed with", errno.errorcode.get(e.errno, e), flush=True)
"#;

/// An echo on a ping socket to an address only the server reaches is
/// answered by that address, or refused as documented; never by loopback.
#[test]
fn an_icmp_echo_is_never_answered_by_loopback() {
    let Some(lab) = Lab::new("an_icmp_echo_is_never_answered_by_loopback", &[]) else {
        return;
    };
    // Ping sockets for every group, on both hosts (namespaces start with
    // none allowed).
    for ns in [Ns::Local, Ns::Remote] {
        let allow = "echo 0 2147483647 > /proc/sys/net/ipv4/ping_group_range";
        lab.run_ok(lab.exec(ns, &["sh", "-c", allow]));
    }
    let script = lab.write("echo.py", ECHO_PY.as_bytes());
    let py = python();
    let web = lab.net.web_ip.to_string();
    let argv = [py.as_str(), p(&script), web.as_str()];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(
        native.out(),
        format!("type 0 from {web}\n"),
        "{}",
        native.dump()
    );
    let refused = "failed with ENETUNREACH\n";
    for mode in MODES {
        let out = Running::spawn(lab.rscq(mode, &argv)).finish(TIMEOUT);
        assert!(
            out.code() == 0 && (out.out() == native.out() || out.out() == refused),
            "({mode:?}) must be answered as natively or refused\n--- native ---\n{}\n--- under rscq ---\n{}",
            native.dump(),
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
