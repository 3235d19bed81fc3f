//! Failures of the server or the network: nothing may hang.

use std::ffi::OsString;
use std::time::{Duration, Instant};

use crate::harness::{Backend, Env, Pair, RSCQ, Running, cmd, p, run_timeout, sh_c, unused_port};

/// A server that dies without a word (no close reaches the client) is
/// noticed after the idle timeout, short here as a user would set it with
/// `--idle-timeout` (the default, a minute, rides out stalls: see
/// `stalls.rs`).
/// Without connecting again (`--reconnect-grace 0`): what a lost server
/// means then (`restart.rs` has the server coming back).
const SHORT_IDLE: &[&str] = &["--idle-timeout", "3s", "--reconnect-grace", "0"];

/// Kill the server between two forwarded calls: the later one fails with
/// EIO once the idle timeout has passed, rscq says the connection was lost,
/// and the program carries on to the end.
#[test]
fn server_killed_mid_run() {
    let mut pair = Pair::new(Backend::Remote, &[]);
    let t = pair.t();
    let script = format!(
        "cat '{t}/a.txt'; echo first; sleep 2; cat '{t}/a.txt'; echo \"cat=$?\"; echo done"
    );
    let mut running = Running::spawn(pair.rscq_cmd(SHORT_IDLE, &sh_c(&script)));
    running.wait_stdout("first\n", Duration::from_secs(30));
    let killed_at = Instant::now();
    pair.server.as_mut().expect("server").kill();
    let r = running.finish(Duration::from_secs(60));
    let after_kill = killed_at.elapsed();
    assert!(
        after_kill < Duration::from_secs(15),
        "took {after_kill:?} after the kill\n{}",
        r.dump()
    );
    assert!(r.elapsed < Duration::from_secs(15), "{}", r.dump());
    assert_eq!(r.out(), "alpha\nfirst\ncat=1\ndone\n", "{}", r.dump());
    assert_eq!(r.code(), 0, "{}", r.dump());
    let err = r.err();
    assert!(
        err.contains("Input/output error"),
        "the second cat must fail with EIO\n{}",
        r.dump()
    );
    assert!(
        err.lines()
            .any(|l| l.starts_with("rscq:") && l.contains("connection") && l.contains("lost")),
        "rscq must say the connection was lost\n{}",
        r.dump()
    );
}

/// Kill the server while calls are in flight in a tight loop.
#[test]
fn server_killed_during_busy_loop() {
    let mut pair = Pair::new(Backend::Remote, &[]);
    let t = pair.t();
    let script = format!(
        "echo go; while cat '{t}/b.bin' > /dev/null && stat '{t}/sub' > /dev/null; do :; done; echo broke"
    );
    let mut running = Running::spawn(pair.rscq_cmd(SHORT_IDLE, &sh_c(&script)));
    running.wait_stdout("go\n", Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    let killed_at = Instant::now();
    pair.server.as_mut().expect("server").kill();
    let r = running.finish(Duration::from_secs(60));
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "{}",
        r.dump()
    );
    assert!(r.out().ends_with("broke\n"), "{}", r.dump());
    assert!(r.err().contains("lost"), "{}", r.dump());
}

/// Nothing listens on the port: a clear error in bounded time, and the
/// program never starts.
#[test]
fn no_server_fails_fast() {
    let env = Env::new();
    let port = unused_port();
    let marker = env.base.join("ran");
    let mut c = cmd(&[RSCQ]);
    c.env("XDG_CONFIG_HOME", &env.xdg);
    c.args([
        OsString::from("--remote"),
        format!("127.0.0.1:{port}").into(),
        "--server-cert".into(),
        env.server_dir.join("cert.pem").into(),
        "--identity".into(),
        env.client_dir.clone().into(),
        "--mount".into(),
        "/x=/".into(),
        "--".into(),
        "touch".into(),
        p(&marker).into(),
    ]);
    let started = Instant::now();
    let r = run_timeout(c, Duration::from_secs(40)).failure();
    assert!(started.elapsed() < Duration::from_secs(20), "{}", r.dump());
    let err = r.err();
    assert!(
        err.contains("rscq:") && err.contains(&format!("127.0.0.1:{port}")),
        "the error must name the server address\n{}",
        r.dump()
    );
    assert!(
        err.contains("no answer") || err.contains("cannot connect"),
        "the error must say the server could not be reached\n{}",
        r.dump()
    );
    assert!(!marker.exists(), "the program ran\n{}", r.dump());
}

/// A server stopped politely (SIGTERM) also ends the run cleanly (when
/// rscq does not wait for it to come back: `--reconnect-grace 0`).
#[test]
fn server_stopped_mid_run() {
    let pair = Pair::new(Backend::Remote, &[]);
    let t = pair.t();
    let script = format!(
        "cat '{t}/a.txt'; echo first; sleep 1.5; cat '{t}/a.txt' || echo failed; echo done"
    );
    let no_reconnect = ["--reconnect-grace", "0"];
    let mut running = Running::spawn(pair.rscq_cmd(&no_reconnect, &sh_c(&script)));
    running.wait_stdout("first\n", Duration::from_secs(30));
    let server = pair.server.as_ref().expect("server");
    let killed_at = Instant::now();
    server.signal(nix::sys::signal::Signal::SIGTERM);
    let r = running.finish(Duration::from_secs(60));
    assert!(
        killed_at.elapsed() < Duration::from_secs(15),
        "{}",
        r.dump()
    );
    assert_eq!(r.out(), "alpha\nfirst\nfailed\ndone\n", "{}", r.dump());
    assert!(r.err().contains("Input/output error"), "{}", r.dump());
}
