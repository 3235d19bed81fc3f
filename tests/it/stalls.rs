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

/// Writes numbered 4 KiB chunks through one fd (no `O_APPEND`, so each
/// `write` moves the offset) until the local file `argv[2]` appears; says
/// how many went and whether any failed.
const WRITER: &str = r#"
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
n, failed = 0, []
while not os.path.exists(sys.argv[2]):
    try:
        os.write(fd, (b"%07d\n" % n) * 512)
        n += 1
    except OSError as e:
        failed.append(e.errno)
    if n == 50:
        print("writing", flush=True)
os.close(fd)
print(n, failed, flush=True)
"#;

/// The server paused past the idle timeout while the program writes
/// without pause: a `write` is in flight when the connection is lost, and
/// may or may not have run on the server. rscq takes the kept session up
/// and sends it again under its number, so it runs exactly once: no write
/// fails, and the file holds each chunk once, in order. Before, that write
/// failed with EIO (it could not be sent again safely).
#[test]
fn a_write_in_flight_at_a_loss_runs_exactly_once() {
    let runs: Vec<_> = MODES
        .iter()
        .map(|mode| {
            thread::spawn(move || {
                let mut flags = vec!["--idle-timeout", "3s"];
                flags.extend_from_slice(mode);
                let pair = Pair::new(Backend::Remote, &flags);
                let script = pair.env.base.join("writer.py");
                fs::write(&script, WRITER).expect("write script");
                let stop = pair.local.join("stop");
                let target = format!("{}/written", pair.t());
                let mut running = Running::spawn(
                    pair.rscq_cmd(&[], &["python3", &p(&script), &target, &p(&stop)]),
                );
                running.wait_stdout("writing\n", Duration::from_secs(30));
                let server = pair.server.as_ref().expect("server");
                server.signal(Signal::SIGSTOP);
                thread::sleep(Duration::from_secs(8));
                server.signal(Signal::SIGCONT);
                running.wait_stderr("connected again", Duration::from_secs(60));
                // Some writes on the new connection too.
                thread::sleep(Duration::from_millis(500));
                fs::write(&stop, "").expect("write stop");
                let r = running.finish(Duration::from_secs(60));
                (mode, pair, r)
            })
        })
        .collect();
    for run in runs {
        let (mode, pair, r) = run.join().expect("run thread");
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        let last = r.out().lines().last().unwrap_or_default().to_owned();
        let (n, failed) = last.split_once(' ').expect("count and failures");
        assert_eq!(failed, "[]", "{mode:?}: no write may fail\n{}", r.dump());
        let n: usize = n.parse().expect("count");
        let expected: Vec<u8> = (0..n)
            .flat_map(|i| format!("{i:07}\n").repeat(512).into_bytes())
            .collect();
        let written = fs::read(pair.remote_tree.join("written")).expect("read written");
        assert!(
            written == expected,
            "{mode:?}: the file must hold each of the {n} chunks once, in order ({} bytes, expected {})\n{}",
            written.len(),
            expected.len(),
            r.dump()
        );
        assert!(
            r.err().contains("to the same session"),
            "{mode:?}\n{}",
            r.dump()
        );
    }
}
