//! The zerortt layer: a connection made again during a run (after the
//! server was silent for longer than `--idle-timeout`) resumes the TLS
//! session with its `Hello` in 0-RTT (`--stats` says so), and the program
//! sees what a direct run sees; `--pure` makes every connection a full
//! handshake. A restarted server refusing the ticket is in `restart.rs`.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::{Backend, MODES, Output, Pair, Running, p, run};

/// Reads a remote file, says `started`, waits for the `go` file (local),
/// and reads and lists the remote directory again.
const PROGRAM: &str = r#"
import os, sys, time
t, go = sys.argv[1], sys.argv[2]
def show():
    with open(os.path.join(t, "note.txt")) as f:
        print(f.read(), end="")
    print(sorted(n for n in os.listdir(t) if n.startswith("note")))
show()
print("started", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
show()
print(os.stat(os.path.join(t, "note.txt")).st_size)
"#;

/// The direct run, and the run under rscq with the server paused
/// (SIGSTOP) for longer than the idle timeout once the program started.
fn paused_run(mode: &'static [&'static str]) -> (Output, Output) {
    let mut flags = vec!["--idle-timeout", "3s", "--reconnect-grace", "60s"];
    flags.extend_from_slice(mode);
    let pair = Pair::new(Backend::Remote, &flags);
    for tree in [&pair.tree, &pair.remote_tree] {
        fs::write(tree.join("note.txt"), "resumed or not, the same bytes\n").expect("write note");
    }
    let script = pair.env.base.join("note.py");
    fs::write(&script, PROGRAM).expect("write script");
    let go_direct = pair.local.join("go-direct");
    fs::write(&go_direct, "").expect("go");
    let direct = pair.direct(&["python3", &p(&script), &pair.t(), &p(&go_direct)]);
    let go = pair.local.join("go");
    let argv = ["python3".to_string(), p(&script), pair.t(), p(&go)];
    let mut running = Running::spawn(pair.rscq_cmd(&[], &argv));
    running.wait_stdout("started\n", Duration::from_secs(30));
    let server = pair.server.as_ref().expect("server");
    server.signal(Signal::SIGSTOP);
    thread::sleep(Duration::from_secs(8));
    server.signal(Signal::SIGCONT);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !running.stderr_now().contains("connected again") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    fs::write(&go, "").expect("go");
    (direct, running.finish(Duration::from_secs(90)))
}

#[test]
fn a_connection_made_again_resumes_with_0rtt_and_the_program_sees_the_same() {
    let runs: Vec<_> = MODES
        .iter()
        .map(|mode| thread::spawn(move || paused_run(mode)))
        .collect();
    for (mode, run) in MODES.iter().zip(runs) {
        let (direct, r) = run.join().expect("run thread");
        assert_eq!(direct.code(), 0, "{}", direct.dump());
        assert_eq!(r.out(), direct.out(), "{mode:?}\n{}", r.dump());
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        let err = r.err();
        assert!(err.contains("connected again"), "{mode:?}\n{}", r.dump());
        let resumed = if mode.is_empty() { 1 } else { 0 };
        assert!(
            err.contains(&format!(
                "rscq: connections 2, resumed with 0-RTT {resumed}\n"
            )),
            "{mode:?}\n{}",
            r.dump()
        );
    }
}

/// The mount check (a stat of each mount's remote path) travels in the
/// Hello's flight: a real server's answer still makes the warning, in both
/// modes, and the program runs.
#[test]
fn a_missing_remote_path_is_warned_about_from_the_hello_flight() {
    for mode in MODES {
        let pair = Pair::new(Backend::Remote, mode);
        let warning = "rscq: warning: --mount /rscq-zz=/nonexistent: /nonexistent does not exist on the server\n";
        let r = run(pair.rscq_cmd(&["--mount", "/rscq-zz=/nonexistent"], &["true"]));
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        assert!(r.err().contains(warning), "{mode:?}\n{}", r.dump());
        let r = run(pair.rscq_cmd(&[], &["true"]));
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        assert!(
            !r.err().contains("does not exist"),
            "{mode:?}\n{}",
            r.dump()
        );
    }
}
