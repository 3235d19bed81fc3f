//! TCP options that live on the server's socket: `IP_TOS`, `TCP_CORK` and
//! `TCP_USER_TIMEOUT` set before or after the connect reach the server's
//! socket (read back there through `pidfd_getfd`, as natively from the
//! program's own socket), and `getsockopt(TCP_INFO)` describes the remote
//! connection (its MSS is that of the path to web, not of rscq's loopback).
//! Compared with the same program run directly in `remote`, in every mode.

use std::time::Duration;

use crate::harness::{MODES, Running, p, python, run};
use crate::netns::{Lab, Ns};

/// `HOST PORT FLAG`: two connections, one with options set before the
/// connect and one after; prints what `TCP_INFO` says of each, then waits
/// for FLAG.
const OPTIONS_PY: &str = r#"
import os, socket, struct, sys, time
from socket import IPPROTO_IP, IPPROTO_TCP
host, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
a = socket.socket()
a.setsockopt(IPPROTO_IP, socket.IP_TOS, 0x28)
a.setsockopt(IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 7000)
a.connect((host, port))
b = socket.socket()
b.connect((host, port))
b.setsockopt(IPPROTO_IP, socket.IP_TOS, 0x48)
b.setsockopt(IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 9000)
b.setsockopt(IPPROTO_TCP, socket.TCP_CORK, 1)
for name, s in (("a", a), ("b", b)):
    s.sendall(b"ping\n")
    print(name, "echo", s.recv(100))
    info = s.getsockopt(IPPROTO_TCP, socket.TCP_INFO, 104)
    state = info[0]
    snd_mss = struct.unpack("I", info[16:20])[0]
    print(name, "tcp_info", len(info), "state", state, "snd_mss", snd_mss, flush=True)
print("READY", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
"#;

/// `DST`: the options of each established socket to DST in this namespace,
/// read from a copy of it (`pidfd_getfd`) in the process that holds it.
const SERVER_SIDE_PY: &str = r#"
import ctypes, os, re, socket, subprocess, sys
from socket import IPPROTO_IP, IPPROTO_TCP
out = subprocess.run(["ss", "-Htnp", "state", "established", "dst", sys.argv[1]],
                     capture_output=True, text=True, check=True).stdout
libc = ctypes.CDLL(None, use_errno=True)
lines = []
for line in out.splitlines():
    m = re.search(r"pid=(\d+),fd=(\d+)", line)
    pidfd = os.pidfd_open(int(m.group(1)))
    fd = libc.syscall(438, pidfd, int(m.group(2)), 0)
    s = socket.socket(fileno=fd)
    lines.append("tos %#x user_timeout %d cork %d" % (
        s.getsockopt(IPPROTO_IP, socket.IP_TOS),
        s.getsockopt(IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        s.getsockopt(IPPROTO_TCP, socket.TCP_CORK)))
    s.close()
    os.close(pidfd)
print("\n".join(sorted(lines)))
"#;

#[test]
fn tos_cork_user_timeout_and_tcp_info_are_the_servers() {
    let Some(lab) = Lab::new(
        "tos_cork_user_timeout_and_tcp_info_are_the_servers",
        &["ss"],
    ) else {
        return;
    };
    let script = lab.write("tcp_options.py", OPTIONS_PY.as_bytes());
    let checker = lab.write("server_side.py", SERVER_SIDE_PY.as_bytes());
    let py = python();
    let _echo = lab.web_echo(7050, "-");
    let web = lab.net.web_ip.to_string();
    let dst = format!("{web}:7050");
    let mut reference: Option<(String, String)> = None;
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let flag = lab.dir.join(format!("tcp-options-done-{i}"));
        let argv = [py.as_str(), p(&script), web.as_str(), "7050", p(&flag)];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut proc = Running::spawn(c);
        proc.wait_stdout("READY", Duration::from_secs(30));
        let server_side = run(lab.exec(Ns::Remote, &[py.as_str(), p(&checker), &dst]));
        std::fs::write(&flag, b"").expect("flag");
        let out = proc.finish(crate::harness::TIMEOUT);
        let context = format!(
            "({what})\n--- server side ---\n{}\n{}\n--- server ---\n{}",
            server_side.dump(),
            out.dump(),
            lab.server_log()
        );
        assert!(out.status.success(), "{context}");
        assert!(server_side.status.success(), "{context}");
        let got = (out.out(), server_side.out());
        match &reference {
            None => {
                assert_eq!(
                    got.1, "tos 0x28 user_timeout 7000 cork 0\ntos 0x48 user_timeout 9000 cork 1\n",
                    "the native run is the reference\n{context}"
                );
                reference = Some(got);
            }
            Some(native) => {
                assert_eq!(&got.1, &native.1, "the server's sockets\n{context}");
                assert_eq!(&got.0, &native.0, "what the program sees\n{context}");
            }
        }
    }
}

/// `HOST PORT`: connections bound to a device of the server's (`to-web`,
/// which the program's own machine does not have) before and after the
/// connect, and one to a device nobody has.
const BIND_TO_DEVICE_PY: &str = r#"
import errno, socket, sys
host, port = sys.argv[1], int(sys.argv[2])

def name(e):
    return errno.errorcode.get(e, str(e)) if e else "0"

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"to-web")
s.connect((host, port))
s.sendall(b"before\n")
print("before connect", s.recv(100))
s.close()
s = socket.create_connection((host, port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"to-web\0")
s.sendall(b"after\n")
print("after connect", s.recv(100))
try:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"no-such-dev")
    print("unknown device 0")
except OSError as e:
    print("unknown device", name(e.errno))
s.close()
"#;

#[test]
fn bind_to_device_names_a_device_of_the_servers() {
    let Some(lab) = Lab::new("bind_to_device_names_a_device_of_the_servers", &[]) else {
        return;
    };
    let script = lab.write("bind_to_device.py", BIND_TO_DEVICE_PY.as_bytes());
    let py = python();
    let _echo = lab.web_echo(7060, "-");
    let web = lab.net.web_ip.to_string();
    let argv = [py.as_str(), p(&script), web.as_str(), "7060"];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(
        native.out(),
        "before connect b'before\\n'\nafter connect b'after\\n'\nunknown device ENODEV\n",
        "the native run is the reference\n{}",
        native.dump()
    );
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            native.out(),
            "{mode:?}\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
    }
}
