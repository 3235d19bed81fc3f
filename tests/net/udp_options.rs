//! UDP per-datagram IP fields under `rscq --net`: the TTL and TOS (IPv6:
//! hop limit and traffic class) a program sets with `setsockopt` or with
//! `sendmsg` control messages are the ones its datagrams leave the server
//! with, and a program that asks for them (`IP_RECVTTL` and the like) sees
//! those the server's socket received, with the kernel's own control
//! buffer rules. In both modes, compared with the same programs run
//! directly in `remote`.

use std::time::Duration;

use crate::harness::{MODES, Running, p, python};
use crate::netns::{Lab, Ns};

const PORT: u16 = 7021;

fn mode_name(mode: &[&str]) -> String {
    if mode.is_empty() {
        "default".into()
    } else {
        mode.join(" ")
    }
}

/// `show` reads one datagram: its payload, the IP fields its control
/// messages reported, and `ctrunc` when they were cut short, as one line;
/// and its source.
const SHOW_PY: &str = r#"
import socket, struct

NAMES = {(0, 2): "ttl", (0, 1): "tos", (41, 52): "hoplimit", (41, 67): "tclass"}
IP_RECVTTL, IP_RECVTOS = 12, 13

def show(sock, ancbufsize=256):
    data, anc, flags, source = sock.recvmsg(1024, ancbufsize)
    parts = []
    for level, kind, value in anc:
        name = NAMES.get((level, kind), "%d/%d" % (level, kind))
        shown = struct.unpack("i", value)[0] if len(value) == 4 else list(value)
        parts.append("%s=%s" % (name, shown))
    if flags & socket.MSG_CTRUNC:
        parts.append("ctrunc")
    return " ".join([data.decode()] + parts), source
"#;

/// Receives what `SENDER_PY` sends: five datagrams on an IPv4 socket and
/// four on an IPv6 one, both reporting every field; prints them in order
/// of their payloads (datagrams of different sockets may overtake each
/// other), then answers each sending socket, so that the sender knows they
/// all arrived.
const RECEIVER_PY: &str = r#"
import socket, sys
host4, host6, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
r4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r4.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
r4.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
r4.bind((host4, port))
r6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
r6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
r6.bind((host6, port))
print("READY", flush=True)
lines, senders = [], []
for sock, count in ((r4, 5), (r6, 4)):
    sock.settimeout(20)
    for _ in range(count):
        line, source = show(sock)
        lines.append(line)
        if (sock, source) not in senders:
            senders.append((sock, source))
for line in sorted(lines):
    print(line, flush=True)
for sock, source in senders:
    sock.sendto(b"ok", source)
"#;

/// Sets the fields every way a program can, and sends malformed control
/// messages, which fail as Linux fails them.
const SENDER_PY: &str = r#"
import socket, struct, sys
host4, host6, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
IP, IP6 = socket.IPPROTO_IP, socket.IPPROTO_IPV6

def sendmsg(s, label, cmsgs, to):
    try:
        s.sendmsg([label.encode()], cmsgs, 0, to)
        print(label, "sent", flush=True)
    except OSError as e:
        print(label, "errno", e.errno, flush=True)

def i(v):
    return struct.pack("i", v)

to4 = (host4, port)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(b"v4-default", to4)
s.setsockopt(IP, socket.IP_TTL, 5)
s.setsockopt(IP, socket.IP_TOS, 0x28)
s.sendto(b"v4-options", to4)
sendmsg(s, "v4-cmsg", [(IP, socket.IP_TTL, i(9)), (IP, socket.IP_TOS, bytes([0x10]))], to4)
sendmsg(s, "v4-ttl-zero", [(IP, socket.IP_TTL, i(0))], to4)
sendmsg(s, "v4-short-ttl", [(IP, socket.IP_TTL, b"\x05\x00")], to4)
s.sendto(b"v4-options-again", to4)
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.setsockopt(IP, socket.IP_TTL, 7)
c.connect(to4)
c.send(b"v4-connected")

to6 = (host6, port)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s6.sendto(b"v6-default", to6)
s6.setsockopt(IP6, socket.IPV6_UNICAST_HOPS, 7)
s6.setsockopt(IP6, socket.IPV6_TCLASS, 0x20)
s6.sendto(b"v6-options", to6)
sendmsg(s6, "v6-cmsg", [(IP6, socket.IPV6_HOPLIMIT, i(3)), (IP6, socket.IPV6_TCLASS, i(0x40))], to6)
sendmsg(s6, "v6-odd-tclass", [(IP6, socket.IPV6_TCLASS, i(0x40) + b"\0")], to6)
s6.sendto(b"v6-options-again", to6)
for sock in (s, c, s6):
    sock.settimeout(20)
    print("answer", sock.recv(16).decode(), flush=True)
"#;

/// What the receiver sees from the sender run directly in `remote`.
const EXPECTED_SEEN: &str = "\
v4-cmsg ttl=9 tos=[16]
v4-connected ttl=7 tos=[0]
v4-default ttl=64 tos=[0]
v4-options ttl=5 tos=[40]
v4-options-again ttl=5 tos=[40]
v6-cmsg hoplimit=3 tclass=64
v6-default hoplimit=64 tclass=0
v6-options hoplimit=7 tclass=32
v6-options-again hoplimit=7 tclass=32
";

const EXPECTED_SENDER: &str = "\
v4-cmsg sent
v4-ttl-zero errno 22
v4-short-ttl errno 22
v6-cmsg sent
v6-odd-tclass errno 22
answer ok
answer ok
answer ok
";

/// Runs `receiver` (a command in `remote`, or under rscq) and the sender
/// (`sender`), and returns what each printed.
fn exchange(receiver: std::process::Command, sender: std::process::Command) -> (String, String) {
    let mut r = Running::spawn(receiver);
    r.wait_stdout("READY", Duration::from_secs(30));
    let sent = Running::spawn(sender).finish(Duration::from_secs(60));
    assert!(sent.status.success(), "sender\n{}", sent.dump());
    let seen = r.finish(Duration::from_secs(60));
    assert!(seen.status.success(), "receiver\n{}", seen.dump());
    let seen = seen.out();
    (
        seen.strip_prefix("READY\n").unwrap_or(&seen).to_string(),
        sent.out(),
    )
}

/// A sender under rscq: the datagrams it sends leave the server with the
/// TTL and TOS it set, as the same sender's do run in `remote`.
#[test]
fn udp_ip_fields_a_program_sets_reach_the_receiver() {
    let Some(lab) = Lab::new("udp_ip_fields_a_program_sets_reach_the_receiver", &[]) else {
        return;
    };
    let receiver = lab.write("receiver.py", format!("{SHOW_PY}{RECEIVER_PY}").as_bytes());
    let sender = lab.write("sender.py", SENDER_PY.as_bytes());
    let py = python();
    let host4 = lab.net.remote_web_ip.to_string();
    let host6 = lab.net.remote_web_ip6.to_string();
    let port = PORT.to_string();
    let args = |script: &std::path::Path| {
        [
            py.clone(),
            p(script).into(),
            host4.clone(),
            host6.clone(),
            port.clone(),
        ]
    };
    let native = exchange(
        lab.exec(Ns::Remote, &args(&receiver)),
        lab.exec(Ns::Remote, &args(&sender)),
    );
    assert_eq!(
        native,
        (EXPECTED_SEEN.into(), EXPECTED_SENDER.into()),
        "run in remote"
    );
    for mode in MODES {
        let m = mode_name(mode);
        let under_rscq = exchange(
            lab.exec(Ns::Remote, &args(&receiver)),
            lab.rscq(mode, &args(&sender)),
        );
        assert_eq!(under_rscq, native, "({m}) sender under rscq");
    }
}

/// Binds where the sender sends, asks for the fields, and reads them with
/// full, short and no control buffers.
const RSCQ_RECEIVER_PY: &str = r#"
import socket, sys
port = int(sys.argv[1])
r4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r4.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
r4.setsockopt(socket.IPPROTO_IP, IP_RECVTOS, 1)
r4.bind(("0.0.0.0", port))
r6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
r6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
r6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
r6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
r6.bind(("::", port))
for s in (r4, r6):
    s.settimeout(20)
print("READY", flush=True)
for sock, ancbufsize in ((r4, 256), (r4, 256), (r4, socket.CMSG_LEN(4)), (r4, 0)):
    print(show(sock, ancbufsize)[0], flush=True)
r4.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 0)
for sock, ancbufsize in ((r4, 256), (r6, 256), (r6, 256), (r6, socket.CMSG_SPACE(4) + 8)):
    print(show(sock, ancbufsize)[0], flush=True)
"#;

const PLAIN_SENDER_PY: &str = r#"
import socket, struct, sys
port = int(sys.argv[1])
IP, IP6 = socket.IPPROTO_IP, socket.IPPROTO_IPV6
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
to4 = ("127.0.0.1", port)
s.sendto(b"a-default", to4)
s.setsockopt(IP, socket.IP_TTL, 5)
s.setsockopt(IP, socket.IP_TOS, 0x28)
s.sendto(b"b-options", to4)
s.sendmsg([b"c-cut-short"], [(IP, socket.IP_TTL, struct.pack("i", 9))], 0, to4)
s.sendto(b"d-no-room", to4)
s.sendto(b"e-tos-only", to4)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
to6 = ("::1", port)
s6.sendto(b"f-default", to6)
s6.sendmsg([b"g-cmsg"], [(IP6, socket.IPV6_HOPLIMIT, struct.pack("i", 3)),
                         (IP6, socket.IPV6_TCLASS, struct.pack("i", 0x40))], 0, to6)
s6.sendmsg([b"h-cut-short"], [(IP6, socket.IPV6_HOPLIMIT, struct.pack("i", 2))], 0, to6)
"#;

const EXPECTED_RECEIVED: &str = "\
a-default ttl=64 tos=[0]
b-options ttl=5 tos=[40]
c-cut-short ttl=9 ctrunc
d-no-room ctrunc
e-tos-only tos=[40]
f-default hoplimit=64 tclass=0
g-cmsg hoplimit=3 tclass=64
h-cut-short hoplimit=2 ctrunc
";

/// A receiver under rscq: the fields the server's socket received reach
/// the program's control buffer, only those it asked for, truncated as the
/// kernel truncates them, as for the same receiver run in `remote`.
#[test]
fn udp_ip_fields_the_server_received_reach_the_program() {
    let Some(lab) = Lab::new("udp_ip_fields_the_server_received_reach_the_program", &[]) else {
        return;
    };
    let receiver = lab.write(
        "rscq_receiver.py",
        format!("{SHOW_PY}{RSCQ_RECEIVER_PY}").as_bytes(),
    );
    let sender = lab.write("plain_sender.py", PLAIN_SENDER_PY.as_bytes());
    let py = python();
    let port = (PORT + 1).to_string();
    let args = |script: &std::path::Path| [py.clone(), p(script).into(), port.clone()];
    let native = exchange(
        lab.exec(Ns::Remote, &args(&receiver)),
        lab.exec(Ns::Remote, &args(&sender)),
    );
    assert_eq!(native.0, EXPECTED_RECEIVED, "run in remote");
    for mode in MODES {
        let m = mode_name(mode);
        let under_rscq = exchange(
            lab.rscq(mode, &args(&receiver)),
            lab.exec(Ns::Remote, &args(&sender)),
        );
        assert_eq!(under_rscq, native, "({m}) receiver under rscq");
    }
}
