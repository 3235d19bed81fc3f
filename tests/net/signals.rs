//! Signals during remote calls that block: a connect to a host that never
//! answers, an accept on a remote listener, a receive on a remote
//! connection. The program's signal handler runs and the call is
//! interrupted as it would be natively, and the remote side of an
//! abandoned connect is dropped.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{MODES, Output, Running, TIMEOUT, p, python, run, with_default_sigint};
use crate::netns::{Lab, Ns};

/// `WHAT HOST PORT DELAY`: blocks in `connect`, `accept` (on HOST:PORT) or
/// `recv` (from a server at HOST:PORT that says nothing) while a SIGALRM
/// fires after DELAY seconds (0: never); its handler raises. `nonblock`
/// starts a non-blocking connect and waits for the file `$FLAG`.
const BLOCKED_PY: &str = r#"
import os, signal, socket, sys
class Alarm(Exception):
    pass
def on_alarm(sig, frame):
    raise Alarm()
signal.signal(signal.SIGALRM, on_alarm)
what, host, port, delay = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket()
if what == "accept":
    s.bind((host, port))
    s.listen(4)
elif what == "recv":
    s.connect((host, port))
print("PID", os.getpid(), flush=True)
signal.setitimer(signal.ITIMER_REAL, delay)
try:
    if what == "connect":
        s.connect((host, port))
        print("CONNECTED", flush=True)
    elif what == "nonblock":
        import errno, time
        s.setblocking(False)
        print("CONNECT_EX", errno.errorcode.get(s.connect_ex((host, port))), flush=True)
        while not os.path.exists(os.environ["FLAG"]):
            time.sleep(0.05)
    elif what == "accept":
        s.accept()
        print("ACCEPTED", flush=True)
    else:
        print("RECEIVED", s.recv(100), flush=True)
except Alarm:
    print("ALARM", flush=True)
except KeyboardInterrupt:
    print("INTERRUPTED", flush=True)
    raise
s.close()
print("DONE", flush=True)
"#;

/// An address in web's subnet whose frames go to a MAC nobody has: every
/// SYN to it vanishes, so a connect to it stays in SYN-SENT.
pub fn silent_host(lab: &Lab) -> String {
    let [a, b, c, _] = lab.net.web_ip.octets();
    let host = format!("{a}.{b}.{c}.99");
    let remote = lab.net.name(Ns::Remote).to_string();
    lab.run_ok(lab.exec(
        Ns::Local,
        &[
            "ip",
            "-n",
            &remote,
            "neigh",
            "add",
            &host,
            "lladdr",
            "02:00:00:00:00:99",
            "dev",
            "to-web",
            "nud",
            "permanent",
        ],
    ));
    host
}

/// The connects to `host` half-made in `ns` (SYN-SENT sockets).
fn syn_sent(lab: &Lab, ns: Ns, host: &str) -> String {
    let out = run(lab.exec(ns, &["ss", "-Htn", "state", "syn-sent", "dst", host])).success();
    out.out().trim().to_string()
}

/// Waits until `ns` has (`want`) or has no half-made connect to `host`.
fn wait_syn_sent(lab: &Lab, ns: Ns, host: &str, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if syn_sent(lab, ns, host).is_empty() != want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn assert_same_end(what: &str, native: &Output, under: &Output) {
    assert_eq!(
        (under.code(), under.out()),
        (
            native.code(),
            native.out().replace(&pid_line(native), &pid_line(under))
        ),
        "{what}: rscq's run must end as the native one\n--- native ---\n{}\n--- under rscq ---\n{}",
        native.dump(),
        under.dump()
    );
}

fn pid_line(out: &Output) -> String {
    out.out()
        .lines()
        .find(|l| l.starts_with("PID "))
        .unwrap_or("")
        .to_string()
}

/// A SIGALRM handler interrupts a blocking connect to a host that never
/// answers, in every mode, as natively; the server then holds no
/// half-made connection. The SYN-SENT socket on the server while the
/// program waits shows the connect really was under way there.
#[test]
fn alarm_interrupts_connect_to_silent_host() {
    let Some(lab) = Lab::new("alarm_interrupts_connect_to_silent_host", &["ss"]) else {
        return;
    };
    let host = silent_host(&lab);
    let script = lab.write("blocked.py", BLOCKED_PY.as_bytes());
    let py = python();
    let argv = [py.as_str(), p(&script), "connect", host.as_str(), "80", "3"];

    let native = run(lab.exec(Ns::Remote, &argv));
    assert!(native.out().contains("ALARM\nDONE"), "{}", native.dump());
    assert!(wait_syn_sent(
        &lab,
        Ns::Remote,
        &host,
        false,
        Duration::from_secs(10)
    ));

    for mode in MODES {
        let proc = Running::spawn(lab.rscq(mode, &argv));
        let seen = wait_syn_sent(&lab, Ns::Remote, &host, true, Duration::from_secs(30));
        let out = proc.finish(TIMEOUT);
        assert!(
            seen,
            "({mode:?}) the server never started the connect\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        assert_same_end(&format!("{mode:?} alarm in connect"), &native, &out);
        assert!(
            wait_syn_sent(&lab, Ns::Remote, &host, false, Duration::from_secs(10)),
            "({mode:?}) the server still tries to connect after the program gave up: {}\n--- server ---\n{}",
            syn_sent(&lab, Ns::Remote, &host),
            lab.server_log()
        );
    }
}

/// Ctrl-C (SIGINT to the program, or to rscq which passes it on) ends a
/// program blocked in a connect to a host that never answers, as natively,
/// and the server drops the half-made connection.
#[test]
fn sigint_interrupts_connect_to_silent_host() {
    let Some(lab) = Lab::new("sigint_interrupts_connect_to_silent_host", &["ss", "env"]) else {
        return;
    };
    let host = silent_host(&lab);
    let script = lab.write("blocked.py", BLOCKED_PY.as_bytes());
    let py = python();
    let argv = [py.as_str(), p(&script), "connect", host.as_str(), "80", "0"];

    let mut native = Running::spawn(with_default_sigint(&lab.exec(Ns::Remote, &argv)));
    native.wait_stdout("PID ", Duration::from_secs(30));
    assert!(wait_syn_sent(
        &lab,
        Ns::Remote,
        &host,
        true,
        Duration::from_secs(10)
    ));
    native.signal(Signal::SIGINT);
    let native = native.finish(Duration::from_secs(20));
    assert!(native.out().contains("INTERRUPTED"), "{}", native.dump());
    assert!(wait_syn_sent(
        &lab,
        Ns::Remote,
        &host,
        false,
        Duration::from_secs(10)
    ));

    for (mode, to_rscq) in [(MODES[0], false), (MODES[0], true), (MODES[1], false)] {
        let what = format!(
            "{mode:?}, SIGINT to {}",
            if to_rscq { "rscq" } else { "the program" }
        );
        let mut proc = Running::spawn(with_default_sigint(&lab.rscq(mode, &argv)));
        proc.wait_stdout("PID ", Duration::from_secs(30));
        assert!(
            wait_syn_sent(&lab, Ns::Remote, &host, true, Duration::from_secs(30)),
            "({what}) the server never started the connect\n{}\n--- server ---\n{}",
            proc.snapshot().dump(),
            lab.server_log()
        );
        if to_rscq {
            proc.signal(Signal::SIGINT);
        } else {
            let pid: i32 = pid_line(&proc.snapshot())
                .trim_start_matches("PID ")
                .trim()
                .parse()
                .expect("PID line");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT)
                .expect("kill program");
        }
        let out = proc.finish(Duration::from_secs(30));
        assert_same_end(&what, &native, &out);
        assert!(
            wait_syn_sent(&lab, Ns::Remote, &host, false, Duration::from_secs(10)),
            "({what}) the server still tries to connect after the program ended: {}\n--- server ---\n{}",
            syn_sent(&lab, Ns::Remote, &host),
            lab.server_log()
        );
    }
}

/// A SIGALRM handler interrupts a blocking accept on a remote listener
/// and a blocking receive on a remote connection, in every mode, as
/// natively.
#[test]
fn alarm_interrupts_accept_and_recv() {
    let Some(lab) = Lab::new("alarm_interrupts_accept_and_recv", &[]) else {
        return;
    };
    let script = lab.write("blocked.py", BLOCKED_PY.as_bytes());
    let py = python();
    let _quiet = lab.web_echo(7010, "quiet");
    let web = lab.net.web_ip.to_string();
    for (what, host, port) in [
        ("accept", "0.0.0.0", "8200"),
        ("recv", web.as_str(), "7010"),
    ] {
        let argv = [py.as_str(), p(&script), what, host, port, "1"];
        let native = run(lab.exec(Ns::Remote, &argv));
        assert!(native.out().contains("ALARM\nDONE"), "{}", native.dump());
        for mode in MODES {
            let out = run(lab.rscq(mode, &argv));
            assert_same_end(&format!("{mode:?} alarm in {what}"), &native, &out);
        }
    }
}

/// A non-blocking connect to a host that never answers reports
/// EINPROGRESS, as natively, while the server keeps trying; once the
/// program closes the socket, the server drops the half-made connection.
#[test]
fn nonblocking_connect_to_silent_host() {
    let Some(lab) = Lab::new("nonblocking_connect_to_silent_host", &["ss"]) else {
        return;
    };
    let host = silent_host(&lab);
    let script = lab.write("blocked.py", BLOCKED_PY.as_bytes());
    let py = python();
    let argv = [
        py.as_str(),
        p(&script),
        "nonblock",
        host.as_str(),
        "80",
        "0",
    ];
    let runs: [(&str, Option<&[&str]>); 3] = [
        ("native", None),
        ("default", Some(MODES[0])),
        ("--pure", Some(MODES[1])),
    ];
    let mut native: Option<Output> = None;
    for (i, (what, mode)) in runs.into_iter().enumerate() {
        let flag = lab.dir.join(format!("nonblock-{i}"));
        let mut c = match mode {
            None => lab.exec(Ns::Remote, &argv),
            Some(mode) => lab.rscq(mode, &argv),
        };
        c.env("FLAG", &flag);
        let mut proc = Running::spawn(c);
        proc.wait_stdout("CONNECT_EX", Duration::from_secs(30));
        let seen = wait_syn_sent(&lab, Ns::Remote, &host, true, Duration::from_secs(10));
        std::fs::write(&flag, b"").expect("flag");
        let out = proc.finish(TIMEOUT);
        assert!(
            seen,
            "({what}) no connect under way on the server\n{}\n--- server ---\n{}",
            out.dump(),
            lab.server_log()
        );
        assert!(
            out.out().contains("CONNECT_EX EINPROGRESS\nDONE"),
            "({what})\n{}",
            out.dump()
        );
        if let Some(native) = &native {
            assert_same_end(what, native, &out);
        } else {
            native = Some(out);
        }
        assert!(
            wait_syn_sent(&lab, Ns::Remote, &host, false, Duration::from_secs(10)),
            "({what}) the server still tries to connect after the program closed the socket: {}\n--- server ---\n{}",
            syn_sent(&lab, Ns::Remote, &host),
            lab.server_log()
        );
    }
}

/// `HOST PORT RESTART`: a blocking connect with a SIGALRM handler after
/// 1 s, installed with `SA_RESTART` or without; after EINTR, a second,
/// non-blocking connect on the same socket.
const CONNECT_C: &str = r#"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_alarm(int sig) {
    (void)sig;
    write(1, "HANDLER\n", 8);
}

static void report(const char *what, int r) {
    printf("%s %d %s\n", what, r, r ? strerror(errno) : "ok");
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sa.sa_flags = atoi(argv[3]) ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &a.sin_addr);
    printf("PID %d\n", (int)getpid());
    fflush(stdout);
    alarm(1);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    report("connect", r);
    if (r != 0 && errno == EINTR) {
        fcntl(s, F_SETFL, O_NONBLOCK);
        report("again", connect(s, (struct sockaddr *)&a, sizeof a));
    }
    close(s);
    puts("DONE");
    return 0;
}
"#;

/// A C program's blocking connect to a host that never answers, with a
/// SIGALRM handler: without `SA_RESTART` the connect fails with EINTR and
/// a second one finds it still under way (EALREADY); with `SA_RESTART` the
/// handler runs and the connect goes on waiting until SIGINT ends the
/// program. Both as natively, in every mode, and the server keeps no
/// half-made connection afterwards.
#[test]
fn connect_restart_semantics() {
    let Some(lab) = Lab::new("connect_restart_semantics", &["ss", "cc", "env"]) else {
        return;
    };
    let host = silent_host(&lab);
    let source = lab.write("connect.c", CONNECT_C.as_bytes());
    let binary = lab.dir.join("connect");
    run(crate::harness::cmd(&[
        "cc",
        "-O1",
        "-o",
        p(&binary),
        p(&source),
    ]))
    .success();
    for restart in ["0", "1"] {
        let argv = [p(&binary), host.as_str(), "80", restart];
        let runs: [(&str, Option<&[&str]>); 3] = [
            ("native", None),
            ("default", Some(MODES[0])),
            ("--pure", Some(MODES[1])),
        ];
        let mut native: Option<Output> = None;
        for (what, mode) in runs {
            let what = format!("{what}, SA_RESTART={restart}");
            let c = match mode {
                None => lab.exec(Ns::Remote, &argv),
                Some(mode) => lab.rscq(mode, &argv),
            };
            let mut proc = Running::spawn(with_default_sigint(&c));
            proc.wait_stdout("PID ", Duration::from_secs(30));
            let out = if restart == "1" {
                proc.wait_stdout("HANDLER", Duration::from_secs(30));
                assert!(
                    wait_syn_sent(&lab, Ns::Remote, &host, true, Duration::from_secs(10)),
                    "({what}) no connect under way after the handler\n{}",
                    proc.snapshot().dump()
                );
                let pid: i32 = pid_line(&proc.snapshot())
                    .trim_start_matches("PID ")
                    .trim()
                    .parse()
                    .expect("PID line");
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGINT)
                    .expect("kill program");
                proc.finish(TIMEOUT)
            } else {
                proc.finish(TIMEOUT)
            };
            match &native {
                None => {
                    let want = if restart == "1" {
                        "HANDLER\n"
                    } else {
                        "HANDLER\nconnect -1 Interrupted system call\nagain -1 Operation already in progress\nDONE\n"
                    };
                    assert!(out.out().ends_with(want), "({what})\n{}", out.dump());
                    native = Some(out);
                }
                Some(native) => assert_same_end(&what, native, &out),
            }
            assert!(
                wait_syn_sent(&lab, Ns::Remote, &host, false, Duration::from_secs(10)),
                "({what}) the server still tries to connect after the program gave up: {}\n--- server ---\n{}",
                syn_sent(&lab, Ns::Remote, &host),
                lab.server_log()
            );
        }
    }
}
