//! rscq across the delay line when the link misbehaves: cut for 10 s in the
//! middle of a transfer (SIGUSR1/SIGUSR2 to `rscq-delayline`, as
//! `netem/link.sh cut` sends), or losing 2% of its packets. A 20 MB `--net`
//! download and a 20 MB `cp` into the mount, in both modes at once, must
//! arrive byte-identical with exit status 0.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::{ADDR_B, Link, SERIAL, root_or_skip};

const RSCQ: &str = env!("CARGO_BIN_EXE_rscq");
const SERVER: &str = env!("CARGO_BIN_EXE_rscq-server");
const BIG: usize = 20 << 20;
const SERVER_PORT: u16 = 4433;
const HTTP_PORT: u16 = 8080;
const MODES: [&[&str]; 2] = [&[], &["--pure"]];

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn sha256_file(path: &Path) -> String {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    format!("{:x}", Sha256::digest(&data))
}

#[track_caller]
fn output(mut c: Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("spawn {c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn in_ns(ns: &str, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

/// A child killed (with everything it started in its group) on drop.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(mut c: Command) -> Spawned {
    use std::os::unix::process::CommandExt;
    c.process_group(0).stdin(Stdio::null());
    Spawned(c.spawn().unwrap_or_else(|e| panic!("spawn {c:?}: {e}")))
}

/// Waits until `port` accepts TCP (HTTP) or the server says it listens.
fn wait_for_log(log: &Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if std::fs::read_to_string(log).is_ok_and(|s| s.contains(needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!(
        "no {needle:?} in {} within 20 s:\n{}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// An rscq-server in side B exporting `root`, an HTTP server on B's
/// loopback (reachable only through the server's network), and the
/// client's credentials.
struct Remote {
    _server: Spawned,
    _http: Spawned,
    dir: PathBuf,
    served: PathBuf,
    root: PathBuf,
}

impl Remote {
    fn start(link: &Link, dir: &Path) -> Self {
        let (served, root, cfg) = (dir.join("served"), dir.join("root"), dir.join("cfg"));
        for d in [&served, &root, &cfg] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        output({
            let mut c = Command::new(SERVER);
            c.arg("--gen-cert").arg(cfg.join("server"));
            c
        });
        let client = output({
            let mut c = Command::new(RSCQ);
            c.args(["keygen", "--dir"]).arg(cfg.join("client"));
            c
        });
        let fingerprint = String::from_utf8_lossy(&client.stdout).trim().to_owned();
        std::fs::write(cfg.join("authorized"), format!("{fingerprint}\n")).expect("write");

        let server_log = dir.join("server.log");
        let mut c = in_ns(link.ns_b(), &[SERVER]);
        c.arg("--cert")
            .arg(cfg.join("server/cert.pem"))
            .arg("--key")
            .arg(cfg.join("server/key.pem"))
            .arg("--listen")
            .arg(format!("{ADDR_B}:{SERVER_PORT}"))
            .arg("--root")
            .arg(&root)
            .arg("--authorized-clients")
            .arg(cfg.join("authorized"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&server_log).expect("log"));
        let server = spawn(c);
        wait_for_log(&server_log, "listening on ");

        let http_log = dir.join("http.log");
        let mut c = in_ns(
            link.ns_b(),
            &[
                "python3",
                "-u",
                "-m",
                "http.server",
                &HTTP_PORT.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ],
        );
        c.arg(&served)
            .stdout(std::fs::File::create(&http_log).expect("log"))
            .stderr(Stdio::null());
        let http = spawn(c);
        wait_for_log(&http_log, "Serving HTTP");
        Self {
            _server: server,
            _http: http,
            dir: dir.to_owned(),
            served,
            root,
        }
    }

    /// rscq in side A with the export mounted on `/rscq-outage`, and `--net`.
    fn rscq(&self, link: &Link, mode: &[&str], script: &str) -> Command {
        let cfg = self.dir.join("cfg");
        let mut c = in_ns(link.ns_a(), &[RSCQ]);
        c.arg("--remote")
            .arg(format!("{ADDR_B}:{SERVER_PORT}"))
            .arg("--server-cert")
            .arg(cfg.join("server/cert.pem"))
            .arg("--identity")
            .arg(cfg.join("client"))
            .arg("--known-servers")
            .arg(cfg.join("known_servers"))
            .arg("--net")
            .arg("--mount")
            .arg("/rscq-outage=/")
            .args(mode)
            .args(["--", "sh", "-c", script]);
        c
    }
}

/// Both modes at once: a rate-limited 20 MB download through the remote's
/// network and a 20 MB copy into the mount; `disturb` runs once they are
/// under way. Checks every byte and every exit status.
fn transfers_survive(link: &Link, test: &str, disturb: impl FnOnce()) {
    let tmp = tempfile::Builder::new()
        .prefix("rscq-netem-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path().canonicalize().expect("canonicalize");
    let remote = Remote::start(link, &dir);
    let down = pattern(BIG, 0xd0);
    let up = pattern(BIG, 0x0b);
    std::fs::write(remote.served.join("big.bin"), &down).expect("write");
    let source = dir.join("source.bin");
    std::fs::write(&source, &up).expect("write");

    let runs: Vec<(PathBuf, Spawned, PathBuf)> = MODES
        .iter()
        .enumerate()
        .map(|(i, mode)| {
            let downloaded = dir.join(format!("downloaded{i}.bin"));
            let script = format!(
                "curl -sS --fail --max-time 300 -o '{}' http://127.0.0.1:{HTTP_PORT}/big.bin & \
                 cp '{}' /rscq-outage/copy{i}.bin && wait $!",
                downloaded.display(),
                source.display()
            );
            let log = dir.join(format!("rscq{i}.log"));
            let mut c = remote.rscq(link, mode, &script);
            c.stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"));
            (downloaded, spawn(c), log)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    disturb();

    for (i, (downloaded, mut run, log)) in runs.into_iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(300);
        let status = loop {
            if let Some(status) = run.0.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "{test}: run {i} hangs");
            std::thread::sleep(Duration::from_millis(50));
        };
        let err = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(status.success(), "{test}: run {i}: {status}\n{err}");
        assert_eq!(
            sha256_file(&downloaded),
            format!("{:x}", Sha256::digest(&down)),
            "{test}: run {i}: download differs\n{err}"
        );
        assert_eq!(
            sha256_file(&remote.root.join(format!("copy{i}.bin"))),
            format!("{:x}", Sha256::digest(&up)),
            "{test}: run {i}: copy differs\n{err}"
        );
    }
}

#[test]
fn transfers_survive_a_10s_link_cut() {
    if !root_or_skip("transfers_survive_a_10s_link_cut") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // 40 Mbit/s: each direction's 40 MB take about 8 s, so the cut at 2 s
    // lands in the middle.
    let link = Link::start(&["--rtt-ms", "10", "--rate-mbit", "40"]);
    let line = link.delay_line_pid();
    transfers_survive(&link, "link cut", || {
        nix::sys::signal::kill(line, nix::sys::signal::Signal::SIGUSR1).expect("cut");
        std::thread::sleep(Duration::from_secs(10));
        nix::sys::signal::kill(line, nix::sys::signal::Signal::SIGUSR2).expect("restore");
    });
}

#[test]
fn transfers_survive_2pct_loss() {
    if !root_or_skip("transfers_survive_2pct_loss") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let link = Link::start(&["--rtt-ms", "10", "--rate-mbit", "100", "--loss-pct", "2"]);
    transfers_survive(&link, "2% loss", || {});
}
