//! Stalls: a server paused (SIGSTOP) for less than the idle timeout ends
//! nothing. The program's forwarded calls wait, then complete, and the
//! session goes on; only a pause longer than `--idle-timeout` ends it.

use std::fs;
use std::thread;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::{Backend, MODES, Pair, Running, p, pattern, sha256_hex};

/// Reads part of a big remote file, says so, waits a moment (the test
/// pauses the server then), and goes on: the rest of the file, a stat, a
/// listing, and a new file written and read back.
const READER: &str = r#"
import hashlib, os, sys, time
t = sys.argv[1]
h = hashlib.sha256()
with open(os.path.join(t, "big.bin"), "rb") as f:
    h.update(f.read(4 << 20))
    print("started", flush=True)
    time.sleep(1)
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        h.update(chunk)
print(h.hexdigest())
print(os.stat(os.path.join(t, "sub")).st_mode & 0o170000 == 0o040000)
print("big.bin" in os.listdir(t))
with open(os.path.join(t, "after.txt"), "w") as f:
    f.write("written after the pause\n")
with open(os.path.join(t, "after.txt")) as f:
    print(f.read(), end="")
"#;

const PAUSE: Duration = Duration::from_secs(15);

/// Starts the reader under rscq with `flags` and pauses the server for
/// `pause` once it has started reading.
fn reader_with_paused_server(flags: &[&str], pause: Duration) -> (Pair, crate::harness::Output) {
    let pair = Pair::new(Backend::Remote, flags);
    let script = pair.env.base.join("reader.py");
    fs::write(&script, READER).expect("write script");
    fs::write(pair.remote_tree.join("big.bin"), pattern(24 << 20, 0x5717)).expect("write big");
    let mut running = Running::spawn(pair.rscq_cmd(&[], &["python3", &p(&script), &pair.t()]));
    running.wait_stdout("started\n", Duration::from_secs(30));
    let server = pair.server.as_ref().expect("server");
    server.signal(Signal::SIGSTOP);
    thread::sleep(pause);
    server.signal(Signal::SIGCONT);
    let r = running.finish(Duration::from_secs(120));
    (pair, r)
}

/// A pause of 15 s, well inside the default idle timeout (60 s): the
/// program sees nothing but a slow call, in both modes.
#[test]
fn paused_server_during_remote_reads_and_writes() {
    let expected = format!(
        "started\n{}\nTrue\nTrue\nwritten after the pause\n",
        sha256_hex(&pattern(24 << 20, 0x5717))
    );
    let runs: Vec<_> = MODES
        .iter()
        .map(|mode| thread::spawn(move || reader_with_paused_server(mode, PAUSE)))
        .collect();
    for (mode, run) in MODES.iter().zip(runs) {
        let (pair, r) = run.join().expect("run thread");
        assert_eq!(r.out(), expected, "{mode:?}\n{}", r.dump());
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        assert!(!r.err().contains("lost"), "{mode:?}\n{}", r.dump());
        assert_eq!(
            fs::read_to_string(pair.remote_tree.join("after.txt")).expect("after.txt on server"),
            "written after the pause\n",
            "{mode:?}"
        );
    }
}

/// The same pause against a 3 s idle timeout ends the session when rscq
/// does not connect again (`--reconnect-grace 0`): the timeout is what the
/// test above rides on, not luck.
#[test]
fn pause_longer_than_the_idle_timeout_ends_the_session() {
    let flags = ["--idle-timeout", "3s", "--reconnect-grace", "0"];
    let (_pair, r) = reader_with_paused_server(&flags, Duration::from_secs(8));
    assert_ne!(r.code(), 0, "{}", r.dump());
    assert!(
        r.err()
            .lines()
            .any(|l| l.starts_with("rscq:") && l.contains("lost") && l.contains("3s")),
        "rscq must say the connection was lost after the idle timeout\n{}",
        r.dump()
    );
}

/// The same pause with rscq connecting again (the default
/// `--reconnect-grace`): the connection is lost after 3 s, a new one made
/// once the server runs again, and the program's open file given to the
/// new session at its offset; the program sees nothing but slow calls.
#[test]
fn pause_longer_than_the_idle_timeout_is_ridden_out_by_connecting_again() {
    let expected = format!(
        "started\n{}\nTrue\nTrue\nwritten after the pause\n",
        sha256_hex(&pattern(24 << 20, 0x5717))
    );
    let runs: Vec<_> = MODES
        .iter()
        .map(|mode| {
            thread::spawn(move || {
                let mut flags = vec!["--idle-timeout", "3s"];
                flags.extend_from_slice(mode);
                reader_with_paused_server(&flags, Duration::from_secs(8))
            })
        })
        .collect();
    for (mode, run) in MODES.iter().zip(runs) {
        let (_pair, r) = run.join().expect("run thread");
        assert_eq!(r.out(), expected, "{mode:?}\n{}", r.dump());
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        assert!(
            r.err().contains("connected again"),
            "{mode:?}\n{}",
            r.dump()
        );
    }
}
