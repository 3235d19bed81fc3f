//! A non-blocking connect that the remote host refuses, then used as Linux
//! allows: the program learns the refusal from whichever call it makes
//! first (`SO_ERROR`, `recv`, `send`, or the next `connect`), a `connect`
//! after that is ECONNABORTED (the failure was taken) or the failure, and
//! the one after starts a new attempt, which connects. asyncio's
//! `sock_connect` retries this way (CPython's
//! `test_sock_client_connect_racing`). Compared with the same program run
//! directly in `remote`, in every mode.

use crate::harness::{MODES, python};
use crate::netns::{Lab, Ns};

/// `HOST REFUSING_PORT ECHO_PORT`: for each way of learning the failure, a
/// refused non-blocking connect, then a connect again to the refusing port,
/// then a new attempt to the echo port.
const FAILED_CONNECT_PY: &str = r#"
import errno, select, socket, sys
host, refusing, echo = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def name(e):
    return errno.errorcode.get(e, str(e)) if e else "0"

for first in ("connect", "so_error", "recv", "send"):
    s = socket.socket()
    s.setblocking(False)
    print(first, "connect", name(s.connect_ex((host, refusing))))
    select.select([], [s], [], 30)
    if first == "so_error":
        print("  so_error", name(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
    elif first == "recv":
        try:
            print("  recv", s.recv(10))
        except OSError as e:
            print("  recv", name(e.errno))
        try:
            print("  recv again", s.recv(10))
        except OSError as e:
            print("  recv again", name(e.errno))
    elif first == "send":
        try:
            print("  send", s.send(b"x"))
        except OSError as e:
            print("  send", name(e.errno))
    print("  connect again", name(s.connect_ex((host, refusing))))
    print("  new attempt", name(s.connect_ex((host, echo))))
    select.select([], [s], [], 30)
    print("  so_error", name(s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)))
    print("  peer", s.getpeername() == (host, echo))
    s.setblocking(True)
    s.sendall(b"ping\n")
    print("  echo", s.recv(100))
    s.close()
"#;

#[test]
fn a_refused_connect_is_learnt_first_hand_and_may_be_tried_again() {
    let Some(lab) = Lab::new(
        "a_refused_connect_is_learnt_first_hand_and_may_be_tried_again",
        &[],
    ) else {
        return;
    };
    let script = lab.write("failed_connect.py", FAILED_CONNECT_PY.as_bytes());
    let py = python();
    let _echo = lab.web_echo(7040, "-");
    let web = lab.net.web_ip.to_string();
    // Nothing listens on 7041 in web: its kernel refuses at once.
    let argv = [
        py.as_str(),
        crate::harness::p(&script),
        &web,
        "7041",
        "7040",
    ];
    let native = lab.run_ok(lab.exec(Ns::Remote, &argv));
    assert_eq!(
        native.out(),
        "connect connect EINPROGRESS\n  connect again ECONNREFUSED\n  new attempt EINPROGRESS\n  \
         so_error 0\n  peer True\n  echo b'ping\\n'\n\
         so_error connect EINPROGRESS\n  so_error ECONNREFUSED\n  connect again ECONNABORTED\n  \
         new attempt EINPROGRESS\n  so_error 0\n  peer True\n  echo b'ping\\n'\n\
         recv connect EINPROGRESS\n  recv ECONNREFUSED\n  recv again b''\n  connect again \
         ECONNABORTED\n  new attempt EINPROGRESS\n  so_error 0\n  peer True\n  echo b'ping\\n'\n\
         send connect EINPROGRESS\n  send ECONNREFUSED\n  connect again ECONNABORTED\n  \
         new attempt EINPROGRESS\n  so_error 0\n  peer True\n  echo b'ping\\n'\n",
        "the native run is the reference\n{}",
        native.dump()
    );
    for mode in MODES {
        let out = lab.run_ok(lab.rscq(mode, &argv));
        assert_eq!(
            out.out(),
            native.out(),
            "{mode:?}: the program must see what it sees natively\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
    }
}
