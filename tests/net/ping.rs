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
