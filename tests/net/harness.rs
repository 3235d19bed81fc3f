//! Processes with deadlines and process-group cleanup, root and tool
//! checks, and the data the tests serve.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

pub const RSCQ: &str = env!("CARGO_BIN_EXE_rscq");
pub const SERVER: &str = env!("CARGO_BIN_EXE_rscq-server");

/// Deadline for one command: generous (a shared 2-core machine, tests in
/// parallel), yet a hang is still caught.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The flag sets every download and echo case runs with: the default mode
/// and stop-and-wait (`--pure`) must give identical results.
pub const MODES: &[&[&str]] = &[&[], &["--pure"]];

/// Environment variables that would send curl/wget/w3m to a proxy instead
/// of the address under test.
const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "ftp_proxy",
    "FTP_PROXY",
];

// ---------------------------------------------------------------------------
// Processes
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
            truncate(&self.out(), 4000),
            truncate(&self.err(), 8000)
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

pub fn describe(cmd: &Command) -> String {
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
        let mut buf = vec![0u8; 65536];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => sink
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

/// A process started in its own process group, whose output is collected
/// while it runs. The whole group is killed (SIGKILL) when the handle is
/// dropped, so a failing test leaves nothing behind.
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
    /// Starts `cmd` with stdin from /dev/null.
    #[track_caller]
    pub fn spawn(cmd: Command) -> Self {
        Self::spawn_stdin(cmd, None)
    }

    /// Starts `cmd` with stdin from `stdin` (a file) or /dev/null.
    #[track_caller]
    pub fn spawn_stdin(mut cmd: Command, stdin: Option<&Path>) -> Self {
        let what = describe(&cmd);
        let input = match stdin {
            Some(p) => Stdio::from(
                fs::File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display())),
            ),
            None => Stdio::null(),
        };
        cmd.stdin(input)
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

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits i32"))
    }

    pub fn stdout_now(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }

    /// Whether the process has ended (and records its status).
    pub fn has_exited(&mut self) -> bool {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
        }
        self.status.is_some()
    }

    /// Waits until `stream` (stdout or stderr) contains `needle`; fails the
    /// test on timeout or if the process ends first.
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str, on_stderr: bool, timeout: Duration) {
        self.wait_until(&format!("{needle:?}"), on_stderr, timeout, |text| {
            text.contains(needle).then(String::new)
        });
    }

    /// Waits until stdout holds a whole line (ended by its newline) that
    /// starts with `prefix`, and returns the rest of that line: a line's
    /// bytes may arrive in more than one read.
    #[track_caller]
    pub fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        self.wait_until(&format!("a line {prefix:?}…"), false, timeout, |text| {
            text.split_inclusive('\n')
                .filter(|line| line.ends_with('\n'))
                .find_map(|line| line.strip_prefix(prefix))
                .map(|rest| rest.trim_end().to_owned())
        })
    }

    /// Waits until `found` finds what it looks for in `stream` (stdout or
    /// stderr), `what`; fails the test on timeout or if the process ends
    /// first.
    #[track_caller]
    fn wait_until(
        &mut self,
        what: &str,
        on_stderr: bool,
        timeout: Duration,
        found: impl Fn(&str) -> Option<String>,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = if on_stderr {
                self.stderr_now()
            } else {
                self.stdout_now()
            };
            if let Some(result) = found(&text) {
                return result;
            }
            let exited = self.has_exited();
            if exited || Instant::now() > deadline {
                let threads = if exited {
                    String::new()
                } else {
                    crate::hang_report::describe_group(self.pid().as_raw())
                };
                self.kill_group();
                panic!(
                    "{} while waiting for {what} on {}\n{}{threads}",
                    if exited { "process ended" } else { "timed out" },
                    if on_stderr { "stderr" } else { "stdout" },
                    self.snapshot().dump()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[track_caller]
    pub fn wait_stdout(&mut self, needle: &str, timeout: Duration) {
        self.wait_for(needle, false, timeout);
    }

    /// Sends `sig` to the process itself (not its group).
    pub fn signal(&self, sig: Signal) {
        let _ = kill(self.pid(), sig);
    }

    pub fn kill_group(&mut self) {
        if self.status.is_none() {
            let _ = killpg(self.pid(), Signal::SIGKILL);
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }

    pub fn snapshot(&self) -> Output {
        Output {
            what: self.what.clone(),
            status: self.status.unwrap_or_else(|| ExitStatus::from_raw(-1)),
            stdout: self
                .stdout
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            stderr: self
                .stderr
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
            elapsed: self.started.elapsed(),
        }
    }

    /// Waits for the process to end and its pipes to close; on timeout
    /// kills its process group and fails the test with what it printed.
    #[track_caller]
    pub fn finish(mut self, timeout: Duration) -> Output {
        let deadline = self.started + timeout;
        while !self.has_exited() {
            if Instant::now() > deadline {
                let threads = crate::hang_report::describe_group(self.pid().as_raw());
                self.kill_group();
                panic!(
                    "TIMEOUT after {timeout:?}\n{}{threads}",
                    self.snapshot().dump()
                );
            }
            thread::sleep(Duration::from_millis(5));
        }
        let elapsed = self.started.elapsed();
        // Grandchildren may hold the pipes open; they get until the deadline.
        for r in std::mem::take(&mut self.readers) {
            while !r.is_finished() {
                if Instant::now() > deadline {
                    let _ = killpg(self.pid(), Signal::SIGKILL);
                    panic!(
                        "TIMEOUT: process exited but something kept its output open\n{}",
                        self.snapshot().dump()
                    );
                }
                thread::sleep(Duration::from_millis(5));
            }
            let _ = r.join();
        }
        let mut out = self.snapshot();
        out.elapsed = elapsed;
        out
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Also the group of an exited leader: its children may live on.
        let _ = killpg(self.pid(), Signal::SIGKILL);
        self.kill_group();
    }
}

/// Runs `cmd` to completion within [`TIMEOUT`] (stdin is /dev/null).
#[track_caller]
pub fn run(cmd: Command) -> Output {
    Running::spawn(cmd).finish(TIMEOUT)
}

/// A command with a fixed locale and no proxy settings.
pub fn cmd<S: AsRef<OsStr>>(argv: &[S]) -> Command {
    let mut c = Command::new(argv[0].as_ref());
    c.args(&argv[1..]);
    c.env("LC_ALL", "C").env("TZ", "UTC");
    for v in PROXY_VARS {
        c.env_remove(v);
    }
    c
}

/// `cmd` run through `env --default-signal=INT`: a test started from a
/// background job inherits SIGINT ignored, and an ignored SIGINT would
/// never reach the program (nor rscq's forwarding).
pub fn with_default_sigint(c: &Command) -> Command {
    let mut w = Command::new("env");
    w.arg("--default-signal=INT")
        .arg(c.get_program())
        .args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => w.env(k, v),
            None => w.env_remove(k),
        };
    }
    w
}

// ---------------------------------------------------------------------------
// Preconditions
// ---------------------------------------------------------------------------

fn strict() -> bool {
    std::env::var("RSCQ_REQUIRE_ROOT_TESTS").as_deref() == Ok("1")
}

/// Whether the test may run: needs root and every tool in `tools` on PATH.
/// Otherwise fails when `RSCQ_REQUIRE_ROOT_TESTS=1` and skips with a
/// notice when not.
#[track_caller]
pub fn preconditions(test: &str, tools: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        assert!(
            !strict(),
            "{test} needs root (ip netns), and RSCQ_REQUIRE_ROOT_TESTS=1 is set"
        );
        eprintln!(
            "NOTICE: {test} skipped: needs root (set RSCQ_REQUIRE_ROOT_TESTS=1 to make this fatal)"
        );
        return false;
    }
    let missing: Vec<&str> = ["ip", "python3", "unshare", "sh"]
        .iter()
        .chain(tools)
        .copied()
        .filter(|t| which(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        !strict(),
        "{test} needs these programs, which are not installed: {} \
         (Debian packages: iproute2 curl wget w3m busybox-static python3 util-linux iputils-ping)",
        missing.join(" ")
    );
    eprintln!(
        "NOTICE: {test} skipped: missing programs: {}",
        missing.join(" ")
    );
    false
}

/// The full path of `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The python3 to run: the system one if there is one (a version-manager
/// shim on PATH would add a shell script to every run), else PATH's.
pub fn python() -> String {
    if Path::new("/usr/bin/python3").is_file() {
        "/usr/bin/python3".into()
    } else {
        "python3".into()
    }
}

// ---------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(data: &[u8]) -> String {
    let d = Sha256::digest(data);
    let mut s = String::with_capacity(64);
    for b in d {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[track_caller]
pub fn sha256_file(path: &Path) -> String {
    sha256(&fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())))
}

pub fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Writes `text` to `dir/name` and returns the path.
#[track_caller]
pub fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Compiles the C program `source` with gcc into `dir/name` (extra
/// arguments, such as `-pthread`, come last) and returns its path.
#[track_caller]
pub fn compile_c(dir: &Path, name: &str, source: &str, extra: &[&str]) -> PathBuf {
    let src = write_file(dir, &format!("{name}.c"), source.as_bytes());
    let bin = dir.join(name);
    let mut argv = vec!["gcc", "-O1", "-Wall", "-o", p(&bin), p(&src)];
    argv.extend_from_slice(extra);
    run(cmd(&argv)).success();
    bin
}
