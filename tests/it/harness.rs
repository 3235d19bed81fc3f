//! Shared machinery: running processes with a deadline, rscq-server
//! processes that die with their handle, client and server identities,
//! fixture trees, tree snapshots and direct-versus-rscq comparisons.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub const RSCQ: &str = env!("CARGO_BIN_EXE_rscq");
pub const SERVER: &str = env!("CARGO_BIN_EXE_rscq-server");

/// Deadline for one ordinary command. Generous: CI machines are slow and
/// tests run in parallel; a hang is still caught.
pub const TIMEOUT: Duration = Duration::from_secs(90);

/// The flag sets every file case runs with: the optimization layers must
/// give results identical to `--pure`.
pub const MODES: &[&[&str]] = &[&[], &["--pure"]];

// ---------------------------------------------------------------------------
// Processes with deadlines
// ---------------------------------------------------------------------------

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct Output {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Output {
    /// The exit code as a shell reports it: 128+N for a death by signal N.
    pub fn code(&self) -> i32 {
        match (self.status.code(), self.status.signal()) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => -1,
        }
    }

    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Everything about the run, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "command: {}\nexit: {} ({:?}) after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--------------",
            self.what,
            self.code(),
            self.status,
            self.elapsed,
            truncate(&self.out(), 6000),
            truncate(&self.err(), 6000)
        )
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert!(
            self.status.success(),
            "command failed unexpectedly\n{}",
            self.dump()
        );
        self
    }

    #[track_caller]
    pub fn failure(self) -> Self {
        assert!(
            !self.status.success(),
            "command succeeded unexpectedly\n{}",
            self.dump()
        );
        self
    }

    /// stderr without rscq's own lines (`rscq: ...`: stats, warnings), so it
    /// can be compared with a direct run.
    pub fn program_stderr(&self) -> String {
        let mut s = String::new();
        for line in self.err().lines() {
            if !line.starts_with("rscq: ") {
                s.push_str(line);
                s.push('\n');
            }
        }
        s
    }

    /// Calls per syscall from a `--stats` report on stderr.
    pub fn stats(&self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::new();
        let err = self.err();
        let Some(start) = err.find("rscq: forwarded calls") else {
            return map;
        };
        for line in err[start..].lines().skip(2) {
            let Some(rest) = line.strip_prefix("rscq: ") else {
                break;
            };
            let mut fields = rest.split_whitespace();
            let (Some(name), Some(calls)) = (fields.next(), fields.next()) else {
                break;
            };
            let Ok(calls) = calls.parse::<u64>() else {
                break;
            };
            map.insert(name.to_string(), calls);
        }
        map
    }

    /// Forwarded calls in total according to `--stats` (0 without a report).
    pub fn forwarded(&self) -> u64 {
        self.stats().get("total").copied().unwrap_or(0)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}\n... ({} more bytes)", &s[..cut], s.len() - cut)
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.contains([' ', '\'', '"', '$', ';', '&', '|', '>', '<', '*']) || a.is_empty() {
            let _ = write!(s, "'{}'", a.replace('\'', "'\\''"));
        } else {
            s.push_str(&a);
        }
    }
    s
}

fn reader(mut pipe: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// A process started in its own process group, whose output is collected
/// while it runs. The whole group is killed when the handle is dropped.
pub struct Running {
    what: String,
    child: Child,
    started: Instant,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Running {
    pub fn spawn(mut cmd: Command) -> Self {
        let what = describe(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            reader(child.stdout.take().expect("stdout"), stdout.clone()),
            reader(child.stderr.take().expect("stderr"), stderr.clone()),
        ];
        Self {
            what,
            child,
            started: Instant::now(),
            stdout,
            stderr,
            readers,
            status: None,
        }
    }

    pub fn stdout_now(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits until stdout contains `needle`; fails the test on timeout or
    /// if the process ends first.
    #[track_caller]
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(needle, timeout, Self::stdout_now, "stdout");
    }

    /// [`Running::wait_stdout`] on stderr.
    #[track_caller]
    pub fn wait_stderr(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(needle, timeout, Self::stderr_now, "stderr");
    }

    #[track_caller]
    fn wait_for(&mut self, needle: &str, timeout: Duration, now: fn(&Self) -> String, which: &str) {
        let deadline = Instant::now() + timeout;
        loop {
            if now(self).contains(needle) {
                return;
            }
            let exited = self.child.try_wait().ok().flatten().is_some();
            if exited || Instant::now() > deadline {
                self.kill_group();
                let out = self.snapshot_output();
                panic!(
                    "{} while waiting for {needle:?} on {which}\n{}",
                    if exited { "process ended" } else { "timed out" },
                    out.dump()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn kill_group(&mut self) {
        if self.status.is_none() {
            if let Ok(pid) = i32::try_from(self.child.id()) {
                let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            }
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    fn snapshot_output(&self) -> Output {
        Output {
            what: self.what.clone(),
            status: self.status.unwrap_or_else(|| ExitStatus::from_raw(-1)),
            stdout: self
                .stdout
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            stderr: self
                .stderr
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Waits for the process to end and for its pipes to close; on timeout
    /// kills its process group and fails the test with what it printed.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = self.started + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.status = Some(status);
                    break;
                }
                Ok(None) => {}
                Err(e) => panic!("waiting for {}: {e}", self.what),
            }
            if Instant::now() > deadline {
                let threads = i32::try_from(self.child.id())
                    .map(crate::hang_report::describe_group)
                    .unwrap_or_default();
                self.kill_group();
                let out = self.snapshot_output();
                panic!("TIMEOUT after {timeout:?}\n{}{threads}", out.dump());
            }
            thread::sleep(Duration::from_millis(5));
        }
        let elapsed = self.started.elapsed();
        // Grandchildren may hold the pipes open; they get until the deadline.
        for r in std::mem::take(&mut self.readers) {
            while !r.is_finished() {
                if Instant::now() > deadline {
                    if let Ok(pid) = i32::try_from(self.child.id()) {
                        let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    let out = self.snapshot_output();
                    panic!(
                        "TIMEOUT: process exited but something kept its output open\n{}",
                        out.dump()
                    );
                }
                thread::sleep(Duration::from_millis(5));
            }
            let _ = r.join();
        }
        let mut out = self.snapshot_output();
        out.elapsed = elapsed;
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// Runs `cmd` to completion within `timeout` (stdin is /dev/null).
#[track_caller]
pub fn run_timeout(cmd: Command, timeout: Duration) -> Output {
    Running::spawn(cmd).finish(timeout)
}

#[track_caller]
pub fn run(cmd: Command) -> Output {
    run_timeout(cmd, TIMEOUT)
}

pub fn cmd<S: AsRef<OsStr>>(argv: &[S]) -> Command {
    let mut c = Command::new(argv[0].as_ref());
    c.args(&argv[1..]);
    c.env("LC_ALL", "C").env("TZ", "UTC");
    c
}

// ---------------------------------------------------------------------------
// Root-only tests
// ---------------------------------------------------------------------------

/// Whether a test that needs root may run. Without root it fails when
/// `RSCQ_REQUIRE_ROOT_TESTS=1` is set and is skipped (with a notice)
/// otherwise.
#[track_caller]
pub fn have_root(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("RSCQ_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
        "{test} needs root (unshare), and RSCQ_REQUIRE_ROOT_TESTS=1 is set"
    );
    eprintln!(
        "NOTICE: {test} skipped: needs root (set RSCQ_REQUIRE_ROOT_TESTS=1 to make this fatal)"
    );
    false
}

// ---------------------------------------------------------------------------
// Identities and servers
// ---------------------------------------------------------------------------

/// A UDP port on loopback that nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

/// `rscq-server --gen-cert DIR`: returns the fingerprint it prints.
#[track_caller]
pub fn gen_server_cert(dir: &Path) -> String {
    let out = run(cmd(&[
        SERVER.as_ref(),
        OsStr::new("--gen-cert"),
        dir.as_os_str(),
    ]))
    .success();
    let fp = out.out().trim().to_string();
    assert!(
        fp.starts_with("sha256:"),
        "unexpected fingerprint\n{}",
        out.dump()
    );
    assert!(dir.join("cert.pem").is_file() && dir.join("key.pem").is_file());
    fp
}

/// `rscq keygen --dir DIR`: returns the client fingerprint.
#[track_caller]
pub fn keygen(dir: &Path) -> String {
    let out = run(cmd(&[
        RSCQ.as_ref(),
        OsStr::new("keygen"),
        OsStr::new("--dir"),
        dir.as_os_str(),
    ]))
    .success();
    let fp = out.out().trim().to_string();
    assert!(
        fp.starts_with("sha256:"),
        "unexpected fingerprint\n{}",
        out.dump()
    );
    fp
}

/// How to start one rscq-server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub cert_dir: PathBuf,
    pub root: PathBuf,
    pub authorized: PathBuf,
    pub port: u16,
    pub read_only: bool,
    /// Run in a new UTS namespace with this hostname (needs root).
    pub hostname: Option<String>,
    /// Run in a new mount namespace where a tmpfs of this size (e.g.
    /// `64k`) is mounted on the root first (needs root).
    pub tmpfs_root: Option<String>,
    /// Further rscq-server flags.
    pub extra_args: Vec<String>,
}

/// A running rscq-server, killed (SIGKILL) when dropped.
pub struct Server {
    pub spec: ServerSpec,
    pub addr: SocketAddr,
    proc: Option<Running>,
}

impl Server {
    #[track_caller]
    pub fn start(spec: ServerSpec) -> Self {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(h) = &spec.hostname {
            for a in [
                "unshare",
                "-u",
                "sh",
                "-c",
                "hostname \"$0\" && exec \"$@\"",
            ] {
                argv.push(a.into());
            }
            argv.push(h.into());
        }
        if let Some(size) = &spec.tmpfs_root {
            for a in [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount -t tmpfs -o size=\"$0\" rscq-tiny \"$1\" && shift && exec \"$@\"",
            ] {
                argv.push(a.into());
            }
            argv.push(size.into());
            argv.push(spec.root.clone().into());
        }
        argv.push(SERVER.into());
        argv.push("--cert".into());
        argv.push(spec.cert_dir.join("cert.pem").into());
        argv.push("--key".into());
        argv.push(spec.cert_dir.join("key.pem").into());
        argv.push("--listen".into());
        argv.push(format!("127.0.0.1:{}", spec.port).into());
        argv.push("--root".into());
        argv.push(spec.root.clone().into());
        argv.push("--authorized-clients".into());
        argv.push(spec.authorized.clone().into());
        if spec.read_only {
            argv.push("--read-only".into());
        }
        argv.extend(spec.extra_args.iter().map(OsString::from));
        let mut c = cmd(&argv);
        c.env("RUST_LOG", "warn");
        let mut proc = Running::spawn(c);
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = loop {
            let err = proc.stderr_now();
            // Only whole lines: the address may still be arriving.
            let mut whole = err.split_inclusive('\n').filter(|l| l.ends_with('\n'));
            if let Some(line) = whole.find(|l| l.contains("listening on ")) {
                let text = line.rsplit("listening on ").next().unwrap_or("").trim();
                let addr: SocketAddr = text
                    .parse()
                    .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
                break addr;
            }
            let exited = proc.child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() > deadline {
                proc.status = exited;
                proc.kill_group();
                panic!(
                    "rscq-server did not come up\n{}",
                    proc.snapshot_output().dump()
                );
            }
            thread::sleep(Duration::from_millis(5));
        };
        Self {
            spec,
            addr,
            proc: Some(proc),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill_group();
        }
    }

    /// Sends `sig` to the server process.
    pub fn signal(&self, sig: Signal) {
        if let Some(p) = &self.proc
            && let Ok(pid) = i32::try_from(p.child.id())
        {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Where an rscq run sends its forwarded calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A real rscq-server process over loopback QUIC.
    Remote,
    /// rscq's embedded executor (no `--remote`).
    Embedded,
}

/// One test's private directory with a server identity, an authorized
/// client identity and a trust-on-first-use file.
pub struct Env {
    _tmp: TempDir,
    /// Canonical path of the private directory.
    pub base: PathBuf,
    pub server_dir: PathBuf,
    pub server_fp: String,
    pub client_dir: PathBuf,
    pub client_fp: String,
    pub authorized: PathBuf,
    pub known: PathBuf,
    pub xdg: PathBuf,
}

impl Env {
    #[track_caller]
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("rscq-it-")
            .tempdir()
            .expect("tempdir");
        let base = tmp.path().canonicalize().expect("canonicalize");
        let cfg = base.join("cfg");
        fs::create_dir(&cfg).expect("mkdir cfg");
        let server_dir = cfg.join("server");
        let client_dir = cfg.join("client");
        let server_fp = gen_server_cert(&server_dir);
        let client_fp = keygen(&client_dir);
        let authorized = cfg.join("authorized_clients");
        fs::write(
            &authorized,
            format!("# test client\n{client_fp} it-client\n"),
        )
        .expect("write authorized");
        let xdg = cfg.join("xdg");
        fs::create_dir(&xdg).expect("mkdir xdg");
        Self {
            _tmp: tmp,
            known: cfg.join("known_servers"),
            base,
            server_dir,
            server_fp,
            client_dir,
            client_fp,
            authorized,
            xdg,
        }
    }

    pub fn spec(&self, root: &Path) -> ServerSpec {
        ServerSpec {
            cert_dir: self.server_dir.clone(),
            root: root.to_path_buf(),
            authorized: self.authorized.clone(),
            port: 0,
            read_only: false,
            hostname: None,
            tmpfs_root: None,
            extra_args: Vec::new(),
        }
    }

    #[track_caller]
    pub fn server(&self, root: &Path) -> Server {
        Server::start(self.spec(root))
    }

    /// An rscq command line: connection flags for `server` (pinned
    /// certificate, this env's identity), then `args` (mounts, flags, `--`,
    /// program).
    pub fn rscq<S: AsRef<OsStr>>(&self, server: Option<&Server>, args: &[S]) -> Command {
        let mut c = cmd(&[RSCQ]);
        c.env("XDG_CONFIG_HOME", &self.xdg);
        if let Some(s) = server {
            c.arg("--remote")
                .arg(format!("127.0.0.1:{}", s.port()))
                .arg("--server-cert")
                .arg(s.spec.cert_dir.join("cert.pem"))
                .arg("--identity")
                .arg(&self.client_dir)
                .arg("--known-servers")
                .arg(&self.known);
        }
        c.args(args);
        c
    }
}

pub fn p(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_string()
}

// ---------------------------------------------------------------------------
// Fixture trees
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes.
pub fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn write_mode(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The standard fixture at `dir` (which must not exist), every timestamp
/// fixed:
///
/// ```text
/// a.txt  b.bin (100 KiB)  big.dat (3 MiB)  empty  exec.sh (755)  ro.txt (444)
/// "with space.txt"  link -> a.txt  dirlink -> sub  dangling -> nowhere
/// sub/c.txt  sub/deep/d/e.txt  sub/notes.md  emptydir/
/// ```
pub fn make_fixture(dir: &Path) {
    fs::create_dir(dir).expect("mkdir fixture");
    write_mode(&dir.join("a.txt"), b"alpha\n", 0o644);
    write_mode(&dir.join("b.bin"), &pattern(100 * 1024, 1), 0o644);
    write_mode(
        &dir.join("big.dat"),
        &pattern(3 * 1024 * 1024 + 17, 2),
        0o600,
    );
    write_mode(&dir.join("empty"), b"", 0o644);
    write_mode(&dir.join("exec.sh"), b"#!/bin/sh\necho exec\n", 0o755);
    write_mode(&dir.join("ro.txt"), b"read only\n", 0o444);
    write_mode(&dir.join("with space.txt"), b"spaced out\n", 0o640);
    symlink("a.txt", dir.join("link")).expect("symlink");
    symlink("sub", dir.join("dirlink")).expect("symlink");
    symlink("nowhere", dir.join("dangling")).expect("symlink");
    fs::create_dir_all(dir.join("sub/deep/d")).expect("mkdir");
    fs::create_dir(dir.join("emptydir")).expect("mkdir");
    write_mode(&dir.join("sub/c.txt"), b"charlie\nline two\n", 0o644);
    write_mode(
        &dir.join("sub/notes.md"),
        b"# notes\n\n- one\n- two\n",
        0o664,
    );
    write_mode(&dir.join("sub/deep/d/e.txt"), b"echo\n", 0o600);
    fixed_times(dir);
}

/// Sets every timestamp under `dir` (symlinks included) to a fixed instant.
pub fn fixed_times(dir: &Path) {
    run(cmd(&[
        OsStr::new("find"),
        dir.as_os_str(),
        OsStr::new("-depth"),
        OsStr::new("-exec"),
        OsStr::new("touch"),
        OsStr::new("-h"),
        OsStr::new("-d"),
        OsStr::new("@1700000000"),
        OsStr::new("{}"),
        OsStr::new("+"),
    ]))
    .success();
}

/// `cp -a from to`.
pub fn copy_tree(from: &Path, to: &Path) {
    run(cmd(&[
        OsStr::new("cp"),
        OsStr::new("-a"),
        from.as_os_str(),
        to.as_os_str(),
    ]))
    .success();
}

// ---------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File { size: u64, sha256: String },
    Dir,
    Symlink(String),
    Other(u32),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
}

/// Every entry under a directory, by relative path (the root is ".").
pub type Snapshot = BTreeMap<String, Entry>;

pub fn sha256_hex(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    d.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Names, types, sizes, permission bits, symlink targets and content hashes
/// of everything under `root` (an empty map if `root` does not exist).
pub fn snapshot(root: &Path) -> Snapshot {
    let mut map = Snapshot::new();
    if fs::symlink_metadata(root).is_ok() {
        walk(root, root, &mut map);
    }
    map
}

fn walk(root: &Path, path: &Path, map: &mut Snapshot) {
    let meta = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rel = path
        .strip_prefix(root)
        .expect("under root")
        .to_string_lossy()
        .into_owned();
    let rel = if rel.is_empty() { ".".to_string() } else { rel };
    let ft = meta.file_type();
    let kind = if ft.is_symlink() {
        Kind::Symlink(
            fs::read_link(path)
                .expect("readlink")
                .to_string_lossy()
                .into_owned(),
        )
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Kind::File {
            size: meta.len(),
            sha256: sha256_hex(&data),
        }
    } else {
        Kind::Other(meta.mode() & 0o170_000)
    };
    map.insert(
        rel,
        Entry {
            kind,
            mode: meta.mode() & 0o7777,
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(path)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        names.sort();
        for n in names {
            walk(root, &n, map);
        }
    }
}

/// Panics with a readable list of differences unless the snapshots match.
#[track_caller]
pub fn assert_same_tree(
    what: &str,
    left_name: &str,
    left: &Snapshot,
    right_name: &str,
    right: &Snapshot,
) {
    if left == right {
        return;
    }
    let mut diff = String::new();
    for (k, v) in left {
        match right.get(k) {
            None => {
                let _ = writeln!(diff, "  only in {left_name}: {k} {v:?}");
            }
            Some(w) if w != v => {
                let _ = writeln!(
                    diff,
                    "  differs: {k}\n    {left_name}: {v:?}\n    {right_name}: {w:?}"
                );
            }
            Some(_) => {}
        }
    }
    for (k, v) in right {
        if !left.contains_key(k) {
            let _ = writeln!(diff, "  only in {right_name}: {k} {v:?}");
        }
    }
    panic!("{what}: trees differ\n{diff}");
}

// ---------------------------------------------------------------------------
// Direct-versus-rscq comparisons
// ---------------------------------------------------------------------------

/// A fixture tree twice: `$T/tree` for direct runs and `$T/export/tree`
/// served by a server whose root is `$T/export`. rscq mounts the export's
/// `tree` at `$T/tree`, so the traced program sees the remote copy under
/// exactly the path the direct run uses, and outputs are byte-identical.
/// `$T/local` is a local directory outside the mount for copies in and out.
pub struct Pair {
    pub env: Env,
    pub backend: Backend,
    pub flags: Vec<String>,
    /// `$T/tree`: the direct run's copy, and the mount point.
    pub tree: PathBuf,
    /// `$T/export/tree`: what the mount shows.
    pub remote_tree: PathBuf,
    /// `$T/local`: local scratch outside the mount.
    pub local: PathBuf,
    pub server: Option<Server>,
}

impl Pair {
    #[track_caller]
    pub fn new(backend: Backend, flags: &[&str]) -> Self {
        let env = Env::new();
        let tree = env.base.join("tree");
        let export = env.base.join("export");
        let remote_tree = export.join("tree");
        let local = env.base.join("local");
        fs::create_dir(&local).expect("mkdir local");
        fs::create_dir(&export).expect("mkdir export");
        make_fixture(&tree);
        copy_tree(&tree, &remote_tree);
        assert_same_tree(
            "fixture copy",
            "direct",
            &snapshot(&tree),
            "export",
            &snapshot(&remote_tree),
        );
        let server = match backend {
            Backend::Remote => Some(env.server(&export)),
            Backend::Embedded => None,
        };
        Self {
            env,
            backend,
            flags: flags.iter().map(|s| (*s).to_string()).collect(),
            tree,
            remote_tree,
            local,
            server,
        }
    }

    /// `$T/tree`, as a string for command lines.
    pub fn t(&self) -> String {
        p(&self.tree)
    }

    /// The `--mount` argument.
    pub fn mount_arg(&self) -> String {
        let remote = match self.backend {
            Backend::Remote => PathBuf::from("/tree"),
            Backend::Embedded => self.remote_tree.clone(),
        };
        format!("{}={}", self.t(), p(&remote))
    }

    /// Runs `argv` directly.
    #[track_caller]
    pub fn direct<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        let mut c = cmd(argv);
        c.current_dir(&self.env.base);
        run(c)
    }

    /// The rscq command for `argv` with the mount, this pair's flags and
    /// `--stats`, plus `extra` flags.
    pub fn rscq_cmd<S: AsRef<OsStr>>(&self, extra: &[&str], argv: &[S]) -> Command {
        let mut args: Vec<OsString> =
            vec!["--mount".into(), self.mount_arg().into(), "--stats".into()];
        args.extend(self.flags.iter().map(OsString::from));
        args.extend(extra.iter().map(OsString::from));
        args.push("--".into());
        args.extend(argv.iter().map(|a| a.as_ref().to_os_string()));
        let mut c = self.env.rscq(self.server.as_ref(), &args);
        c.current_dir(&self.env.base);
        c
    }

    /// Runs `argv` under rscq with the mount.
    #[track_caller]
    pub fn rscq<S: AsRef<OsStr>>(&self, argv: &[S]) -> Output {
        run(self.rscq_cmd(&[], argv))
    }

    /// Runs `argv` directly and under rscq (read-only use of the tree) and
    /// asserts identical exit code, stdout and stderr, that calls were
    /// really forwarded, and that neither tree changed.
    #[track_caller]
    pub fn same<S: AsRef<OsStr>>(&self, argv: &[S]) -> (Output, Output) {
        self.same_with(argv, false)
    }

    /// As [`Pair::same`], comparing stdout and stderr as sorted lines (for
    /// programs that print in directory order, which differs between two
    /// copies of a tree).
    #[track_caller]
    pub fn same_sorted<S: AsRef<OsStr>>(&self, argv: &[S]) -> (Output, Output) {
        self.same_with(argv, true)
    }

    #[track_caller]
    fn same_with<S: AsRef<OsStr>>(&self, argv: &[S], sorted: bool) -> (Output, Output) {
        let before_local = snapshot(&self.tree);
        let before_remote = snapshot(&self.remote_tree);
        let d = self.direct(argv);
        let r = self.rscq(argv);
        compare_outputs(&d, &r, sorted);
        assert_forwarded(&r);
        assert_same_tree(
            "direct tree after read-only runs",
            "before",
            &before_local,
            "after",
            &snapshot(&self.tree),
        );
        assert_same_tree(
            "remote tree after read-only runs",
            "before",
            &before_remote,
            "after",
            &snapshot(&self.remote_tree),
        );
        (d, r)
    }

    /// Runs a command that modifies the tree: directly against `$T/tree`,
    /// then under rscq against the export. Asserts identical exit code,
    /// stdout and stderr, identical resulting trees, that the command did
    /// change the tree, that rscq's run changed only the export (the local
    /// `$T/tree` is exactly as the direct run left it), and that calls were
    /// forwarded. `local_out` directories (outside the mount) are compared
    /// too: each is emptied before each run.
    #[track_caller]
    pub fn same_writes<S: AsRef<OsStr>>(
        &self,
        argv: &[S],
        local_out: &[&Path],
    ) -> (Output, Output) {
        let initial = snapshot(&self.tree);
        let reset = |dirs: &[&Path]| {
            for d in dirs {
                let _ = fs::remove_dir_all(d);
                fs::create_dir_all(d).expect("mkdir out");
            }
        };
        reset(local_out);
        let d = self.direct(argv);
        let direct_tree = snapshot(&self.tree);
        let direct_out: Vec<Snapshot> = local_out.iter().map(|d| snapshot(d)).collect();
        reset(local_out);
        let r = self.rscq(argv);
        compare_outputs(&d, &r, false);
        assert_forwarded(&r);
        let remote_tree = snapshot(&self.remote_tree);
        assert_same_tree(
            &format!("after `{}`: direct tree vs export", r.what),
            "direct",
            &direct_tree,
            "remote",
            &remote_tree,
        );
        assert_same_tree(
            "local $T/tree must not be touched by the rscq run",
            "after direct run",
            &direct_tree,
            "after rscq run",
            &snapshot(&self.tree),
        );
        for (dir, want) in local_out.iter().zip(&direct_out) {
            assert_same_tree(
                &format!("local output {}", dir.display()),
                "direct",
                want,
                "rscq",
                &snapshot(dir),
            );
        }
        if local_out.is_empty() {
            assert!(
                initial != direct_tree,
                "the command changed nothing in the tree, so the test proves nothing\n{}",
                d.dump()
            );
        }
        (d, r)
    }
}

/// Same exit code, stdout and (apart from rscq's own lines) stderr.
#[track_caller]
pub fn compare_outputs(direct: &Output, remote: &Output, sorted: bool) {
    let norm = |s: &[u8]| -> Vec<u8> {
        if !sorted {
            return s.to_vec();
        }
        let mut lines: Vec<&[u8]> = s.split(|b| *b == b'\n').collect();
        lines.sort();
        lines.join(&b'\n')
    };
    let ok_code = direct.code() == remote.code();
    let ok_out = norm(&direct.stdout) == norm(&remote.stdout);
    let ok_err = norm(remote.program_stderr().as_bytes()) == norm(&direct.stderr);
    if !(ok_code && ok_out && ok_err) {
        let mut first_diff = String::new();
        if !ok_out {
            let (a, b) = (direct.out(), remote.out());
            let (mut la, mut lb) = (a.lines(), b.lines());
            for n in 1.. {
                match (la.next(), lb.next()) {
                    (None, None) => break,
                    (x, y) if x == y => {}
                    (x, y) => {
                        let _ = write!(
                            first_diff,
                            "first stdout difference at line {n}:\n  direct: {x:?}\n  rscq:   {y:?}\n"
                        );
                        break;
                    }
                }
            }
        }
        panic!(
            "direct and rscq runs differ (exit code same: {ok_code}, stdout same: {ok_out}, stderr same: {ok_err})\n{first_diff}\n=== DIRECT ===\n{}\n=== RSCQ ===\n{}",
            direct.dump(),
            remote.dump()
        );
    }
}

/// The run's `--stats` must show forwarded calls.
#[track_caller]
pub fn assert_forwarded(r: &Output) {
    assert!(
        r.forwarded() > 0,
        "rscq forwarded nothing (no --stats total), so the run proves nothing\n{}",
        r.dump()
    );
}

/// Builds the C program `source` with gcc into `dir/name` (`-O1 -Wall`,
/// then `flags`) and returns the binary's path; a failed build fails the
/// test with the compiler's output.
#[track_caller]
pub fn build_c(dir: &Path, name: &str, source: &str, flags: &[&str]) -> String {
    let src = dir.join(format!("{name}.c"));
    fs::write(&src, source).expect("write C source");
    let bin = dir.join(name);
    let mut argv = vec!["gcc", "-O1", "-Wall"];
    argv.extend_from_slice(flags);
    let (bin_s, src_s) = (p(&bin), p(&src));
    argv.extend(["-o", bin_s.as_str(), src_s.as_str()]);
    let built = run(cmd(&argv));
    assert!(built.status.success(), "{}", built.dump());
    bin_s
}

/// `sh -c SCRIPT` as argv.
pub fn sh_c(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// Runs `f` once per mode in [`MODES`].
pub fn each_mode(mut f: impl FnMut(&[&str])) {
    for mode in MODES {
        f(mode);
    }
}
