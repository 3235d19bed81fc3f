//! Issue 14's scale and memory figures (`RSCQ_BENCH_GROUPS=scale`, which
//! also runs `net_connects`): memory per idle `--net` connection in rscq
//! and rscq-server, 50 clients at once on one server, and a soak of 1,000
//! client runs with the server's RSS sampled before, during and after.
//!
//! These are one-shot measurements, not criterion timings: each goes to
//! `rscq-extra.jsonl` (kinds `idle_mem`, `clients50`, `soak`) and
//! `report.py` renders them in "Scale and memory". A run that fails stops
//! the bench with its stderr; nothing here is a pass/fail test.
//!
//! Everything runs at RTT 0 (one namespace, loopback) against a fresh
//! standalone rscq-server per measurement, so one measurement's memory
//! does not carry into the next.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Accepts connections on 127.0.0.1:PORT, greets each with `hello\n` and
/// holds it (the oldest closed beyond 12,000, so a soak's connections do
/// not pile up without bound).
const LISTENER_PY: &str = r#"
import collections, resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = 12200 if hard == resource.RLIM_INFINITY else min(hard, 12200)
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(4096)
print("READY", flush=True)
held = collections.deque()
while True:
    c, _ = ls.accept()
    c.sendall(b"hello\n")
    held.append(c)
    while len(held) > 12000:
        held.popleft().close()
"#;

/// Opens N blocking connections to 127.0.0.1:PORT, keeps them, says
/// `IDLE N` and then sleeps until killed: N idle connections.
const IDLE_PY: &str = r#"
import resource, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 100 if hard == resource.RLIM_INFINITY else min(hard, n + 100)
if soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
held = []
for i in range(n):
    try:
        held.append(socket.create_connection(("127.0.0.1", port)))
    except OSError as e:
        sys.exit("connection %d of %d failed: %s" % (i, n, e))
print("IDLE %d" % len(held), flush=True)
while True:
    time.sleep(3600)
"#;

/// The small mixed job of the 50-client and soak runs: write, read back,
/// stat and list in the mount, remove, and one `--net` connect that reads
/// the listener's greeting. bash builtins (and `/dev/tcp`) where possible,
/// so the job is the calls, not interpreter start-up.
const JOB_SH: &str = r#"
set -e
trap 'echo "job $0 failed at line $LINENO: $BASH_COMMAND" >&2' ERR
f=/remote/tmp/scale-$1
printf '%0100d\n' 0 > "$f"
read -r line < "$f"
[ "${#line}" = 100 ] || { echo "read back ${#line} bytes" >&2; exit 1; }
[ -d /remote/d27/dir00 ]
set -- /remote/d27/*
[ "$#" = 27 ] || { echo "listed $# entries" >&2; exit 1; }
rm "$f"
exec 3<>/dev/tcp/127.0.0.1/PORT
read -r greeting <&3
[ "$greeting" = hello ] || { echo "greeting $greeting" >&2; exit 1; }
exec 3>&-
"#;

const LISTEN_PORT: u16 = 7410;
/// Idle connection counts; the last only when the one before took less
/// than [`IDLE_MAX_SETUP`] to open.
const IDLE_COUNTS: &[usize] = &[0, 1000, 5000, 10_000];
const IDLE_MAX_SETUP: Duration = Duration::from_secs(20);
/// How long N connections may take to be opened before the bench gives up.
const IDLE_DEADLINE: Duration = Duration::from_secs(180);
const CLIENTS: usize = 50;
const SOAK_RUNS: usize = 1000;
const SOAK_PARALLEL: usize = 4;
const SOAK_SAMPLE_EVERY: usize = 100;
/// Idle time after the soak before the last sample: past tokio's 10 s
/// keep-alive of idle blocking-pool threads (so they are gone) and the
/// server's second trim 11 s after its last session ended.
const SOAK_SETTLE: Duration = Duration::from_secs(15);

pub(crate) fn bench_scale(lab: &Lab) {
    let listener = lab.dir.join("scale-listener.py");
    fs::write(&listener, LISTENER_PY).expect("write scale-listener.py");
    let idle = lab.dir.join("scale-idle.py");
    fs::write(&idle, IDLE_PY).expect("write scale-idle.py");
    let job = lab.dir.join("scale-job.sh");
    fs::write(&job, JOB_SH.replace("PORT", &LISTEN_PORT.to_string())).expect("write job");
    let listener = s(&listener);
    idle_memory(lab, &listener, &s(&idle));
    clients_at_once(lab, &listener, &s(&job));
    soak(lab, &listener, &s(&job));
}

/// A fresh server at RTT 0 with the greeting listener beside it.
fn site_with_listener(lab: &Lab, listener: &str) -> (Site, Proc) {
    let site = Site::new(lab, 0, None);
    let port = LISTEN_PORT.to_string();
    let mut c = cmd(&["python3", listener, port.as_str()]);
    c.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut p = Proc::spawn(&site.server_ns, c);
    p.wait_stdout("READY");
    (site, p)
}

// ---------------------------------------------------------------------------
// Memory per idle connection
// ---------------------------------------------------------------------------

/// rscq's and rscq-server's memory with N idle `--net` connections held by
/// one program, for each N in [`IDLE_COUNTS`] (a fresh server each).
fn idle_memory(lab: &Lab, listener: &str, idle: &str) {
    let port = LISTEN_PORT.to_string();
    let mut last_setup = Duration::ZERO;
    for &n in IDLE_COUNTS {
        if last_setup > IDLE_MAX_SETUP {
            eprintln!(
                "scale: not measuring {n} idle connections: the previous count took {:.0} s to open",
                last_setup.as_secs_f64()
            );
            continue;
        }
        let (site, listener_proc) = site_with_listener(lab, listener);
        let server_pid = site.server.child.id();
        let server_before = Mem::of(server_pid);
        let count = n.to_string();
        let argv = ["python3", idle, port.as_str(), count.as_str()];
        let err_path = lab.dir.join(format!("scale-idle-{n}.err"));
        let mut c = site.rscq(lab, &[], &["--net"], &argv);
        c.stdout(Stdio::piped()).stderr(
            File::create(&err_path)
                .map(Stdio::from)
                .expect("create stderr file"),
        );
        let start = Instant::now();
        let mut program = Proc::spawn(&site.client_ns, c);
        wait_line_or_stderr(&mut program, "IDLE ", IDLE_DEADLINE, &err_path);
        last_setup = start.elapsed();
        // Let the last replies and buffers settle before reading.
        thread::sleep(Duration::from_secs(1));
        let client = Mem::of(program.child.id());
        let server = Mem::of(server_pid);
        let server_fds = fd_count(server_pid);
        extra(&format!(
            "{{\"kind\":\"idle_mem\",\"n\":{n},\"setup_s\":{:.3},\"client_rss_kib\":{},\"client_anon_kib\":{},\"server_rss_kib\":{},\"server_anon_kib\":{},\"server_before_rss_kib\":{},\"server_fds\":{server_fds}}}",
            last_setup.as_secs_f64(),
            client.rss_kib,
            client.anon_kib,
            server.rss_kib,
            server.anon_kib,
            server_before.rss_kib,
        ));
        drop(program);
        drop(listener_proc);
        drop(site);
    }
}

/// Waits for a stdout line containing `needle`; panics with the command's
/// stderr (from `err_path`) if it does not come in `deadline`.
fn wait_line_or_stderr(p: &mut Proc, needle: &str, deadline: Duration, err_path: &Path) {
    let rx = p.lines.as_ref().expect("stdout piped");
    let until = Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return,
            Ok(_) => {}
            Err(e) => {
                let status = p.child.try_wait();
                panic!(
                    "waiting for {needle:?} ({e}; exit status {status:?}); stderr: {}",
                    fs::read_to_string(err_path).unwrap_or_default()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 50 clients on one server
// ---------------------------------------------------------------------------

/// [`CLIENTS`] rscq runs at once against one server, each the mixed job;
/// every one must exit 0. Records the wall time and the server's peak RSS.
fn clients_at_once(lab: &Lab, listener: &str, job: &str) {
    let (site, _listener) = site_with_listener(lab, listener);
    let server_pid = site.server.child.id();
    let before = Mem::of(server_pid);
    let start = Instant::now();
    let mut children: Vec<Child> = (0..CLIENTS)
        .map(|i| {
            let id = format!("c{i}");
            let mut c = site.rscq(
                lab,
                &[],
                &["--net", "--mount", "/remote=/"],
                &["bash", job, id.as_str()],
            );
            c.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            in_ns(&site.client_ns, || c.spawn()).expect("spawn rscq")
        })
        .collect();
    // Sample while they run; the kernel's VmHWM gives the peak between
    // samples.
    let mut peak_sampled = before.rss_kib;
    while children
        .iter_mut()
        .any(|c| matches!(c.try_wait(), Ok(None)))
    {
        peak_sampled = peak_sampled.max(Mem::of(server_pid).rss_kib);
        thread::sleep(Duration::from_millis(20));
    }
    let wall = start.elapsed();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().expect("wait rscq");
        assert!(
            out.status.success(),
            "client {i} of {CLIENTS} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let after = Mem::of(server_pid);
    extra(&format!(
        "{{\"kind\":\"clients50\",\"clients\":{CLIENTS},\"ok\":{CLIENTS},\"wall_s\":{:.3},\"server_before_rss_kib\":{},\"server_peak_rss_kib\":{},\"server_sampled_peak_rss_kib\":{peak_sampled},\"server_after_rss_kib\":{}}}",
        wall.as_secs_f64(),
        before.rss_kib,
        after.hwm_kib,
        after.rss_kib,
    ));
}

// ---------------------------------------------------------------------------
// Memory soak
// ---------------------------------------------------------------------------

/// One sample of the server during the soak.
struct Sample {
    runs: usize,
    mem: Mem,
    fds: usize,
    threads: u64,
}

impl Sample {
    fn take(runs: usize, pid: u32) -> Self {
        Self {
            runs,
            mem: Mem::of(pid),
            fds: fd_count(pid),
            threads: status_field(pid, "Threads:"),
        }
    }

    fn json(&self) -> String {
        format!(
            "{{\"runs\":{},\"rss_kib\":{},\"anon_kib\":{},\"fds\":{},\"threads\":{}}}",
            self.runs, self.mem.rss_kib, self.mem.anon_kib, self.fds, self.threads
        )
    }
}

/// [`SOAK_RUNS`] client runs of the mixed job, [`SOAK_PARALLEL`] at a
/// time, against one server; its RSS, fds and threads sampled before,
/// every [`SOAK_SAMPLE_EVERY`] runs, right after, and after
/// [`SOAK_SETTLE`] idle.
fn soak(lab: &Lab, listener: &str, job: &str) {
    let (site, _listener) = site_with_listener(lab, listener);
    let server_pid = site.server.child.id();
    let before = Sample::take(0, server_pid);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let during = Mutex::new(Vec::new());
    // A Site is not Sync (its server's output channel): the workers get a
    // copy of the command line and the namespace's name.
    let template =
        Template::of(&site.rscq(lab, &[], &["--net", "--mount", "/remote=/"], &["bash", job]));
    let client_ns = site.client_ns.as_str();
    let start = Instant::now();
    thread::scope(|scope| {
        for _ in 0..SOAK_PARALLEL {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= SOAK_RUNS {
                        return;
                    }
                    run_timed(client_ns, template.command(&format!("s{i}")));
                    let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if finished.is_multiple_of(SOAK_SAMPLE_EVERY) {
                        let sample = Sample::take(finished, server_pid);
                        during
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push(sample);
                    }
                }
            });
        }
    });
    let wall = start.elapsed();
    let right_after = Sample::take(SOAK_RUNS, server_pid);
    thread::sleep(SOAK_SETTLE);
    let settled = Sample::take(SOAK_RUNS, server_pid);
    let mut during = during
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    during.sort_by_key(|s| s.runs);
    let during: Vec<String> = during.iter().map(Sample::json).collect();
    extra(&format!(
        "{{\"kind\":\"soak\",\"runs\":{SOAK_RUNS},\"parallel\":{SOAK_PARALLEL},\"wall_s\":{:.3},\"settle_s\":{},\"malloc_arena_max\":\"{}\",\"before\":{},\"during\":[{}],\"after\":{},\"settled\":{},\"peak_rss_kib\":{}}}",
        wall.as_secs_f64(),
        SOAK_SETTLE.as_secs(),
        std::env::var("MALLOC_ARENA_MAX").unwrap_or_default(),
        before.json(),
        during.join(","),
        right_after.json(),
        settled.json(),
        settled.mem.hwm_kib,
    ));
}

/// A command's program, arguments and environment, which threads can share.
struct Template {
    program: OsString,
    args: Vec<OsString>,
    envs: Vec<(OsString, Option<OsString>)>,
}

impl Template {
    fn of(c: &Command) -> Self {
        Self {
            program: c.get_program().to_owned(),
            args: c.get_args().map(ToOwned::to_owned).collect(),
            envs: c
                .get_envs()
                .map(|(k, v)| (k.to_owned(), v.map(ToOwned::to_owned)))
                .collect(),
        }
    }

    /// The command with `last` appended to its arguments.
    fn command(&self, last: &str) -> Command {
        let mut c = Command::new(&self.program);
        c.args(&self.args).arg(last);
        for (k, v) in &self.envs {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c
    }
}

// ---------------------------------------------------------------------------
// /proc readings
// ---------------------------------------------------------------------------

/// A process's memory from `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug)]
struct Mem {
    /// VmRSS: resident pages, file-backed (the binary) included.
    rss_kib: u64,
    /// RssAnon: resident anonymous pages (heap, stacks).
    anon_kib: u64,
    /// VmHWM: the peak VmRSS of the process's life.
    hwm_kib: u64,
}

impl Mem {
    fn of(pid: u32) -> Self {
        Self {
            rss_kib: status_field(pid, "VmRSS:"),
            anon_kib: status_field(pid, "RssAnon:"),
            hwm_kib: status_field(pid, "VmHWM:"),
        }
    }
}

/// The number after `field` in `/proc/PID/status`; panics if the process
/// is gone (a measurement of a dead server would be meaningless).
fn status_field(pid: u32, field: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/status: {e}"));
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .count()
}
