//! Urgent data (issue 10, item 10): `send(MSG_OOB)`, `recv(MSG_OOB)`,
//! `SO_OOBINLINE` and `SIOCATMARK` on a remote connection, both ways,
//! with a real peer in `web`. The program and its peer end as the same
//! programs run directly in `remote` do, in both modes, whichever side
//! connects.

use std::time::Duration;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python};
use crate::netns::{Lab, Ns};

/// `urgent.py ROLE HOW HOST PORT`: ROLE `program` or `peer`; HOW `connect`
/// or `listen` (says READY once listening). The peer sends "abc", the
/// urgent "!", "def"; the program takes the urgent byte (`recv(MSG_OOB)`,
/// retried until it came: EINVAL before), then reads the rest noting where
/// `SIOCATMARK` says the mark is; then the program does the same the other
/// way ("xy", "Z", "w"); then, with `SO_OOBINLINE` on the program's socket,
/// the peer sends "12", "3" urgent, "45", which the program reads in line
/// once `FIONREAD` counts all five bytes.
const URGENT_PY: &str = r#"
import errno, fcntl, socket, struct, sys, time
role, how, host, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def ioctl_int(s, req):
    return struct.unpack("i", fcntl.ioctl(s.fileno(), req, b"\0\0\0\0"))[0]
def atmark(s):
    return ioctl_int(s, 0x8905)
def urgent(s):
    for _ in range(1500):
        try:
            return s.recv(1, socket.MSG_OOB)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EAGAIN):
                raise
        time.sleep(0.02)
    return None
def read_marked(s, n):
    got, mark = b"", None
    while len(got) < n:
        if mark is None and atmark(s):
            mark = len(got)
        d = s.recv(n - len(got))
        if not d:
            break
        got += d
    return "mark at %s of %r" % (mark, got)
def send_urgent(s, before, byte, after):
    s.send(before)
    s.send(byte, socket.MSG_OOB)
    s.send(after)
if how == "listen":
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(1)
    print("READY", flush=True)
    s, _ = ls.accept()
else:
    s = socket.create_connection((host, port))
if role == "peer":
    send_urgent(s, b"abc", b"!", b"def")
    print("peer urgent", urgent(s))
    print("peer", read_marked(s, 3))
    send_urgent(s, b"12", b"3", b"45")
    end = b""
    while True:
        d = s.recv(100)
        if not d:
            break
        end += d
    print("peer end", end)
else:
    print("urgent", urgent(s))
    print(read_marked(s, 6))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
    send_urgent(s, b"xy", b"Z", b"w")
    for _ in range(1500):
        if ioctl_int(s, 0x541B) >= 5:
            break
        time.sleep(0.02)
    print("inline", read_marked(s, 5))
    s.sendall(b"done")
    s.close()
"#;

const PROGRAM_SAYS: &str = "urgent b'!'\nmark at 3 of b'abcdef'\ninline mark at 2 of b'12345'\n";
const PEER_SAYS: &str = "peer urgent b'Z'\npeer mark at 2 of b'xyw'\npeer end b'done'\n";

#[track_caller]
fn assert_ends_as(what: &str, native: &Output, under: &Output) {
    assert_eq!(
        (under.code(), under.out()),
        (native.code(), native.out()),
        "{what}: must end as natively\n--- native ---\n{}\n--- under rscq ---\n{}",
        native.dump(),
        under.dump()
    );
}

/// Runs the conversation natively, then under rscq in both modes; the
/// program connects out to the peer (`program_connects`) or accepts it.
fn converse(test: &str, port: &str, program_connects: bool) {
    let Some(lab) = Lab::new(test, &[]) else {
        return;
    };
    let script = lab.write("urgent.py", URGENT_PY.as_bytes());
    let py = python();
    let (web, remote) = (
        lab.net.web_ip.to_string(),
        lab.net.remote_web_ip.to_string(),
    );
    let (program, peer) = if program_connects {
        (
            ["program", "connect", web.as_str()],
            ["peer", "listen", web.as_str()],
        )
    } else {
        (
            ["program", "listen", "0.0.0.0"],
            ["peer", "connect", remote.as_str()],
        )
    };
    let program: Vec<&str> = [py.as_str(), p(&script)]
        .into_iter()
        .chain(program)
        .chain([port])
        .collect();
    let peer: Vec<&str> = [py.as_str(), p(&script)]
        .into_iter()
        .chain(peer)
        .chain([port])
        .collect();
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    let mut native: Option<(Output, Output)> = None;
    for (what, mode) in runs {
        let program_cmd = match mode {
            None => lab.exec(Ns::Remote, &program),
            Some(mode) => lab.rscq(mode, &program),
        };
        let peer_cmd = lab.exec(Ns::Web, &peer);
        let (listening, connecting) = if program_connects {
            (peer_cmd, program_cmd)
        } else {
            (program_cmd, peer_cmd)
        };
        let mut listening = Running::spawn(listening);
        listening.wait_stdout("READY", Duration::from_secs(30));
        let connecting = Running::spawn(connecting).finish(TIMEOUT);
        let listening = listening.finish(TIMEOUT);
        let (program_out, peer_out) = if program_connects {
            (connecting, listening)
        } else {
            (listening, connecting)
        };
        match &native {
            None => {
                let ready = if program_connects { "" } else { "READY\n" };
                assert_eq!(
                    program_out.out(),
                    format!("{ready}{PROGRAM_SAYS}"),
                    "natively\n{}",
                    program_out.dump()
                );
                let ready = if program_connects { "READY\n" } else { "" };
                assert_eq!(
                    peer_out.out(),
                    format!("{ready}{PEER_SAYS}"),
                    "natively\n{}",
                    peer_out.dump()
                );
                native = Some((program_out, peer_out));
            }
            Some((native_program, native_peer)) => {
                assert_ends_as(
                    &format!("({what}) the program"),
                    native_program,
                    &program_out,
                );
                assert_ends_as(&format!("({what}) the peer"), native_peer, &peer_out);
            }
        }
    }
}

#[test]
fn urgent_data_on_a_connection_the_program_makes() {
    converse(
        "urgent_data_on_a_connection_the_program_makes",
        "7030",
        true,
    );
}

#[test]
fn urgent_data_on_a_connection_the_program_accepts() {
    converse(
        "urgent_data_on_a_connection_the_program_accepts",
        "7031",
        false,
    );
}
