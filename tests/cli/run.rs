//! Running the binaries with a deadline, in a private config directory.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const RSCQ: &str = env!("CARGO_BIN_EXE_rscq");
pub const SERVER: &str = env!("CARGO_BIN_EXE_rscq-server");

/// Long enough for a loaded CI machine; a hang still fails.
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Out {
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nexit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }
}

/// A command whose config directory (`HOME`, `XDG_CONFIG_HOME`) is `home`,
/// so the user's own files never take part, with `RUST_LOG` unset.
pub fn command<S: AsRef<OsStr>>(program: &str, args: &[S], home: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to the end (killing it after the deadline) and collects its output.
pub fn output(mut cmd: Command) -> Out {
    let what = format!("{cmd:?}");
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = |v: Vec<u8>| String::from_utf8_lossy(&v).into_owned();
    Out {
        what,
        status,
        stdout: text(out_reader.join().expect("reader")),
        stderr: text(err_reader.join().expect("reader")),
    }
}

/// `rscq ARGS` with `home` as its config directory.
pub fn rscq<S: AsRef<OsStr>>(args: &[S], home: &Path) -> Out {
    output(command(RSCQ, args, home))
}

pub fn home() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// A process running in the background whose output is collected as it
/// comes; killed when dropped.
pub struct Bg {
    pub what: String,
    child: std::process::Child,
    out: std::sync::Arc<std::sync::Mutex<String>>,
    err: std::sync::Arc<std::sync::Mutex<String>>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let sink = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let s = sink.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock()
                .expect("lock")
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    sink
}

impl Bg {
    pub fn spawn(mut cmd: Command) -> Self {
        let what = format!("{cmd:?}");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
        let out = collect(child.stdout.take().expect("stdout"));
        let err = collect(child.stderr.take().expect("stderr"));
        Self {
            what,
            child,
            out,
            err,
        }
    }

    pub fn stdout(&self) -> String {
        self.out.lock().expect("lock").clone()
    }

    pub fn stderr(&self) -> String {
        self.err.lock().expect("lock").clone()
    }

    /// Waits until `pick(self)` holds `needle`, returning that text.
    pub fn wait_for(&self, needle: &str, stderr: bool) -> String {
        let start = Instant::now();
        loop {
            let text = if stderr { self.stderr() } else { self.stdout() };
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{}: no {needle:?} after {TIMEOUT:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
                self.what,
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid")
    }

    /// Waits for the end (killing it after the deadline).
    pub fn finish(mut self) -> Out {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > TIMEOUT {
                let _ = self.child.kill();
                panic!("{}: still running after {TIMEOUT:?}", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Let the readers drain the pipes.
        std::thread::sleep(Duration::from_millis(100));
        Out {
            what: self.what.clone(),
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program` is installed (tests that compare with it skip that
/// part without it).
/// Whether `program` is on PATH. Where CI runs (`RSCQ_REQUIRE_ROOT_TESTS=1`,
/// after tests/run.sh installed the packages) a missing one fails the test
/// instead of skipping the comparison with it.
pub fn have(program: &str) -> bool {
    let found = on_path(program);
    assert!(
        found || std::env::var("RSCQ_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
        "`{program}` is not installed, and RSCQ_REQUIRE_ROOT_TESTS=1 makes its comparison required (tests/run.sh installs it)"
    );
    found
}

/// Whether `program` is on PATH, for comparisons with tools CI does not
/// install (`systemd-analyze`: systemd itself is no package to pull into a
/// test machine).
pub fn on_path(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
