//! A remote listening socket the program closes is released on the server
//! at once: the port is free again, for the program itself and for others.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{MODES, Running, p, python, run};
use crate::netns::{Lab, Ns};

/// `PORT FLAG`: listens on PORT, closes and binds it again at once (no
/// SO_REUSEADDR), then closes it and waits for the file FLAG.
const RELISTEN_PY: &str = r#"
import os, socket, sys, time
port, flag = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.bind(("0.0.0.0", port))
s.listen(4)
print("LISTENING", flush=True)
s.close()
t = socket.socket()
try:
    t.bind(("0.0.0.0", port))
    t.listen(4)
    print("REBOUND", flush=True)
except OSError as e:
    print("REBIND FAILED", e.errno, flush=True)
t.close()
print("CLOSED", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
print("DONE", flush=True)
"#;

/// Whether something listens on TCP `port` in `ns`.
fn listening(lab: &Lab, ns: Ns, port: u16) -> bool {
    let out = run(lab.exec(ns, &["ss", "-Hltn", &format!("sport = :{port}")])).success();
    !out.out().trim().is_empty()
}

/// Listen, close, bind the same port again at once, close: under rscq as
/// natively; and once the program has closed its listener (still running),
/// the port is free on the remote.
#[test]
fn closed_listener_frees_the_remote_port() {
    let Some(lab) = Lab::new("closed_listener_frees_the_remote_port", &["ss"]) else {
        return;
    };
    let script = lab.write("relisten.py", RELISTEN_PY.as_bytes());
    let py = python();
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let port = 8400 + u16::try_from(i).expect("fits");
        let flag = lab.dir.join(format!("done-{i}"));
        let port_s = port.to_string();
        let argv = [py.as_str(), p(&script), &port_s, p(&flag)];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut proc = Running::spawn(c);
        proc.wait_line("CLOSED", Duration::from_secs(30));
        assert!(
            proc.stdout_now().contains("LISTENING\nREBOUND\nCLOSED\n"),
            "({what}) the port must be free again right after close\n{}\n--- server ---\n{}",
            proc.snapshot().dump(),
            lab.server_log()
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while listening(&lab, Ns::Remote, port) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        let still = listening(&lab, Ns::Remote, port);
        fs::write(&flag, b"").expect("write flag");
        let out = proc.finish(crate::harness::TIMEOUT);
        assert!(
            !still,
            "({what}) port {port} still listening on remote while the program runs with it closed\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        assert_eq!(
            out.out(),
            "LISTENING\nREBOUND\nCLOSED\nDONE\n",
            "({what})\n{}",
            out.dump()
        );
    }
}

/// `FLAG`: binds port 0 without listening, prints the port, closes, and
/// binds it again (CPython's `find_unused_port`); then, with the second
/// socket closed too, waits for the file FLAG.
const UNUSED_PORT_PY: &str = r#"
import os, socket, sys, time
flag = sys.argv[1]
s = socket.socket()
s.bind(("0.0.0.0", 0))
port = s.getsockname()[1]
s.close()
t = socket.socket()
try:
    t.bind(("0.0.0.0", port))
    print("REBOUND", flush=True)
except OSError as e:
    print("REBIND FAILED", e.errno, flush=True)
t.close()
print("PORT", port, flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
print("DONE", flush=True)
"#;

/// Binds `port` in `ns` (no listen): whether it was free.
fn bind_is_free(lab: &Lab, ns: Ns, port: u16) -> bool {
    let py = python();
    let code = format!(
        "import socket\ns = socket.socket()\ntry:\n    s.bind(('0.0.0.0', {port}))\n    print('free')\nexcept OSError as e:\n    print('taken', e.errno)\n"
    );
    run(lab.exec(ns, &[py.as_str(), "-c", &code])).out() == "free\n"
}

/// A socket bound but never listened gives its port back when the program
/// closes it: at once for the program's next bind, and on the server for
/// everyone while the program still runs.
#[test]
fn closed_bound_socket_frees_the_remote_port() {
    let Some(lab) = Lab::new("closed_bound_socket_frees_the_remote_port", &[]) else {
        return;
    };
    let script = lab.write("unused_port.py", UNUSED_PORT_PY.as_bytes());
    let py = python();
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let flag = lab.dir.join(format!("unused-done-{i}"));
        let argv = [py.as_str(), p(&script), p(&flag)];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut proc = Running::spawn(c);
        let line = proc.wait_line("PORT ", Duration::from_secs(30));
        let port: u16 = line
            .parse()
            .unwrap_or_else(|_| panic!("({what}) no port: {line:?}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut free = bind_is_free(&lab, Ns::Remote, port);
        while !free && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            free = bind_is_free(&lab, Ns::Remote, port);
        }
        fs::write(&flag, b"").expect("write flag");
        let out = proc.finish(crate::harness::TIMEOUT);
        assert_eq!(
            out.out(),
            format!("REBOUND\nPORT {port}\nDONE\n"),
            "({what})\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        assert!(
            free,
            "({what}) port {port} still taken on remote while the program runs with it closed\n--- server ---\n{}",
            lab.server_log()
        );
    }
}

/// `FLAG`: a listener closed is refused at once, a listener another fd (a
/// dup, a forked child) still holds keeps accepting, and a bound port
/// closed can be bound again at once; then it prints the first port and
/// waits for FLAG.
const REFUSED_AT_ONCE_PY: &str = r#"
import os, socket, sys, time
flag = sys.argv[1]
def listener():
    s = socket.socket()
    s.bind(("0.0.0.0", 0))
    s.listen(4)
    return s, s.getsockname()[1]
def attempt(port):
    c = socket.socket()
    try:
        c.connect(("127.0.0.1", port))
        return "accepted"
    except ConnectionRefusedError:
        return "refused"
    finally:
        c.close()
results = []
first = None
for i in range(10):
    s, port = listener()
    first = first or port
    s.close()
    results.append(attempt(port))
print("closed:", " ".join(results), flush=True)
s, port = listener()
d = s.dup()
s.close()
print("dup held:", attempt(port), flush=True)
d.close()
print("dup closed:", attempt(port), flush=True)
s, port = listener()
pid = os.fork()
if pid == 0:
    time.sleep(1.0)
    os._exit(0)
s.close()
print("child held:", attempt(port), flush=True)
os.waitpid(pid, 0)
print("CLOSED", first, flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
print("DONE", flush=True)
"#;

/// The program's last close of a listener releases the server's before
/// the close returns: a connect right after it is refused (from the
/// program, and from another host at once, with no wait), while a
/// listener a dup or a child still holds keeps accepting; as natively.
#[test]
fn closed_listener_is_refused_at_once() {
    let Some(lab) = Lab::new("closed_listener_is_refused_at_once", &["ss"]) else {
        return;
    };
    let script = lab.write("refused.py", REFUSED_AT_ONCE_PY.as_bytes());
    let py = python();
    let expected = "closed: refused refused refused refused refused refused refused refused refused refused\n\
                    dup held: accepted\ndup closed: refused\nchild held: accepted\n";
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let flag = lab.dir.join(format!("refused-done-{i}"));
        let argv = [py.as_str(), p(&script), p(&flag)];
        let c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        let mut proc = Running::spawn(c);
        let line = proc.wait_line("CLOSED ", Duration::from_secs(60));
        let port: u16 = line
            .parse()
            .unwrap_or_else(|_| panic!("({what}) no port: {line:?}"));
        // Looked at once: the release is not left to a later sweep.
        let still = listening(&lab, Ns::Remote, port);
        fs::write(&flag, b"").expect("write flag");
        let out = proc.finish(crate::harness::TIMEOUT);
        assert_eq!(
            out.out(),
            format!("{expected}CLOSED {port}\nDONE\n"),
            "({what})\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        assert!(
            !still,
            "({what}) port {port} still listening on the remote right after the close\n--- server ---\n{}",
            lab.server_log()
        );
    }
}
