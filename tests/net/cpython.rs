//! CPython's own socket regression tests (issue 10), run per test class
//! natively and under `rscq --net` with the embedded executor: every test
//! that passes natively must pass under rscq too, except the documented
//! ones in `tests/net/cpython_allow.txt`.
//!
//! Each class runs as `python3 -m test -v --timeout 60 MODULE -m CLASS` in
//! a network namespace of its own (`unshare -n`, loopback up), so its ports
//! and those of other tests never meet; four classes run at a time. The
//! verbose output gives each test's outcome; a test with none (a hang the
//! per-test timeout ended, or a test after it) counts as failed. `--pure`
//! runs `test_socket` only, which keeps the whole test within CI's budget.
//!
//! The allow-list names a test, the mode it fails in and a reason key;
//! every key must appear in the README's "What does not work yet" section,
//! so nothing is allowed to fail undocumented. Lines marked `skip` are not
//! run under rscq at all (`--ignore`): they hang until the per-test
//! timeout, which would cost minutes. An allowed test that passes is only
//! reported, as a hint that its line can go.
//!
//! A test that fails under rscq is run once more, alone (at most
//! `MAX_RERUNS` of them); only a failure that comes back counts. On a loaded
//! two-core machine some of these timing-bound tests fail now and then,
//! natively too; a real regression fails both times.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::{Output, RSCQ, Running, cmd, preconditions};

/// The modules of the issue: everything CPython 3.11 tests about sockets,
/// selectors and the servers built on them.
const MODULES: &[&str] = &[
    "test_socket",
    "test_selectors",
    "test_asyncio.test_sock_lowlevel",
    "test_asyncio.test_streams",
    "test_asyncio.test_events",
    "test_socketserver",
    "test_httplib",
    "test_urllib2_localnet",
    "test_poll",
    "test_select",
    "test_ssl",
];

/// The module whose classes also run with `--pure`.
const PURE_MODULE: &str = "test_socket";

/// Classes run at the same time (the CI machine has two cores; most of a
/// class's time is spent waiting on sockets and timeouts).
const WORKERS: usize = 4;
/// At most this many failures are run again alone; more is no accident.
const MAX_RERUNS: usize = 40;

/// The most one class may take before it is killed (its unfinished tests
/// then count as hung); the per-test timeout is 60 s.
const CLASS_DEADLINE: Duration = Duration::from_secs(240);

const ALLOW_LIST: &str = include_str!("cpython_allow.txt");
const README: &str = include_str!("../../README.md");

/// How a run is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Native,
    Default,
    Pure,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Default => "default",
            Mode::Pure => "pure",
        }
    }
}

/// One test's result as unittest's verbose output reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    Skip,
}

/// One allow-list line: `MODES ACTION TEST_ID REASON_KEY`.
#[derive(Debug)]
struct Allowed {
    modes: Vec<Mode>,
    skip: bool,
    test: String,
    reason: String,
}

fn parse_allow_list(text: &str) -> Vec<Allowed> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(
            fields.len() == 4,
            "cpython_allow.txt:{}: want `MODES ACTION TEST_ID REASON_KEY`: {line}",
            n + 1
        );
        let modes = match fields[0] {
            "default" => vec![Mode::Default],
            "pure" => vec![Mode::Pure],
            "both" => vec![Mode::Default, Mode::Pure],
            other => panic!("cpython_allow.txt:{}: unknown modes {other}", n + 1),
        };
        let skip = match fields[1] {
            "skip" => true,
            "fail" => false,
            other => panic!("cpython_allow.txt:{}: unknown action {other}", n + 1),
        };
        out.push(Allowed {
            modes,
            skip,
            test: fields[2].to_string(),
            reason: fields[3].to_string(),
        });
    }
    out
}

/// The README's "What does not work yet" section.
fn readme_limits() -> &'static str {
    let start = README
        .find("## What does not work yet")
        .expect("README has a \"What does not work yet\" section");
    let rest = &README[start + 2..];
    let end = rest.find("\n## ").map_or(rest.len(), |e| e);
    &rest[..end]
}

/// The outcome words unittest writes after ` ... `.
fn outcome_of(line: &str) -> Option<Outcome> {
    let line = line.trim();
    if line == "ok" || line == "expected failure" {
        Some(Outcome::Pass)
    } else if line == "FAIL" || line == "ERROR" || line == "unexpected success" {
        Some(Outcome::Fail)
    } else if line.starts_with("skipped") {
        Some(Outcome::Skip)
    } else {
        None
    }
}

/// The test id a verbose line starts, as in
/// `testFoo (test.test_socket.Class.testFoo) ... ok`.
fn test_started(line: &str) -> Option<(&str, &str)> {
    let open = line.find(" (")?;
    let name = &line[..open];
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let rest = &line[open + 2..];
    let close = rest.find(')')?;
    let id = &rest[..close];
    (id.starts_with("test.") && id.ends_with(&format!(".{name}")))
        .then_some((id, &rest[close + 1..]))
}

/// Every test's outcome in `python3 -m test -v` output. A test whose
/// outcome never came (it hung) is absent.
fn parse_verbose(out: &str) -> BTreeMap<String, Outcome> {
    let mut results = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut seen_dots = false;
    for line in out.lines() {
        if line.starts_with("======") || line.starts_with("------") {
            // The summary of failures follows: no more outcomes.
            current = None;
            continue;
        }
        if let Some((id, rest)) = test_started(line) {
            current = Some(id.to_string());
            seen_dots = false;
            if let Some(pos) = rest.find(" ... ") {
                seen_dots = true;
                if let Some(o) = outcome_of(&rest[pos + 5..]) {
                    results.insert(id.to_string(), o);
                    current = None;
                }
            }
            continue;
        }
        let Some(id) = current.clone() else { continue };
        // A docstring's first line comes before ` ... `; output the test
        // printed comes between ` ... ` and the outcome.
        let tail = if seen_dots {
            line
        } else if let Some(pos) = line.find(" ... ") {
            seen_dots = true;
            &line[pos + 5..]
        } else {
            continue;
        };
        let word = tail.rsplit(" ... ").next().unwrap_or(tail);
        if let Some(o) = outcome_of(word) {
            results.insert(id, o);
            current = None;
        }
    }
    results
}

/// The test classes of `module`, as `test.MODULE.CLASS`.
fn classes(python: &str, module: &str) -> Vec<String> {
    let out = crate::harness::run(cmd(&[python, "-m", "test", "--list-cases", module])).success();
    let set: BTreeSet<String> = out
        .out()
        .lines()
        .filter_map(|l| l.trim().rsplit_once('.').map(|(c, _)| c.to_string()))
        .collect();
    set.into_iter().collect()
}

/// One class run in one mode.
#[derive(Debug, Clone)]
struct Job {
    module: &'static str,
    class: String,
    mode: Mode,
    ignore: Vec<String>,
    /// Only this test (a full id), when a failure is run again alone.
    only: Option<String>,
}

/// The interpreter whose `test` package holds the suites: the real binary
/// behind `python3` on PATH (not a version manager's shim), else the
/// system one. None if neither has them (Debian ships them apart, in
/// libpython3.11-testsuite).
fn interpreter() -> Option<String> {
    ["python3", "/usr/bin/python3"].iter().find_map(|py| {
        let out = crate::harness::run(cmd(&[
            py,
            "-c",
            "import sys, test.test_socket; print(sys.executable)",
        ]));
        out.status
            .success()
            .then(|| out.out().trim().to_string())
            .filter(|exe| !exe.is_empty())
    })
}

fn command(job: &Job, python: &str, home: &Path) -> std::process::Command {
    let class = match &job.only {
        Some(test) => test.as_str(),
        None => job.class.rsplit('.').next().expect("class name"),
    };
    let mut argv: Vec<String> = vec![
        "unshare".into(),
        "-n".into(),
        "sh".into(),
        "-c".into(),
        "ip link set lo up && exec \"$@\"".into(),
        "sh".into(),
    ];
    match job.mode {
        Mode::Native => {}
        Mode::Default => argv.extend([RSCQ.into(), "--net".into()]),
        Mode::Pure => argv.extend([RSCQ.into(), "--net".into(), "--pure".into()]),
    }
    argv.extend(
        [
            python,
            "-m",
            "test",
            "-v",
            "--timeout",
            "60",
            job.module,
            "-m",
            class,
        ]
        .map(String::from),
    );
    for t in &job.ignore {
        argv.extend(["--ignore".into(), t.clone()]);
    }
    let mut c = cmd(&argv);
    c.env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("cfg"))
        .env_remove("PYTHONPATH");
    c
}

fn run_job(job: &Job, python: &str, home: &Path) -> Output {
    let mut proc = Running::spawn(command(job, python, home));
    let deadline = Instant::now() + CLASS_DEADLINE;
    while !proc.has_exited() {
        if Instant::now() > deadline {
            // Its unfinished tests count as hung; what it printed so far
            // still counts.
            proc.kill_group();
            thread::sleep(Duration::from_millis(200));
            return proc.snapshot();
        }
        thread::sleep(Duration::from_millis(50));
    }
    proc.finish(CLASS_DEADLINE + Duration::from_secs(30))
}

/// Runs every job on [`WORKERS`] threads; returns each job's outcomes.
fn run_all(
    jobs: Vec<Job>,
    python: &str,
    home: &Path,
) -> Vec<(Job, BTreeMap<String, Outcome>, Output)> {
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let done = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let queue = queue.clone();
            let done = done.clone();
            let home = home.to_path_buf();
            let python = python.to_string();
            thread::spawn(move || {
                loop {
                    let next = queue
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    let Some(job) = next else { return };
                    let out = run_job(&job, &python, &home);
                    let results = parse_verbose(&out.out());
                    done.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((job, results, out));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    let mut done = std::mem::take(&mut *done.lock().unwrap_or_else(PoisonError::into_inner));
    done.sort_by(|a, b| (&a.0.class, a.0.mode).cmp(&(&b.0.class, b.0.mode)));
    done
}

fn scratch_home() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rscq-cpython-{}", std::process::id()));
    fs::create_dir_all(dir.join("cfg")).expect("scratch home");
    dir
}

#[test]
fn allow_list_reasons_are_documented() {
    let limits = readme_limits();
    for a in parse_allow_list(ALLOW_LIST) {
        assert!(
            limits.contains(&format!("`{}`", a.reason)),
            "cpython_allow.txt: reason {} of {} is not in the README's \"What does not work yet\"",
            a.reason,
            a.test
        );
    }
}

#[test]
fn verbose_output_is_parsed() {
    let out = "\
testA (test.test_x.C.testA) ... ok
testB (test.test_x.C.testB) ... FAIL
testC (test.test_x.C.testC)
The doc line. ... skipped 'no'
testD (test.test_x.C.testD) ... printed by the test
ERROR
testE (test.test_x.C.testE) ... expected failure
testF (test.test_x.C.testF) ... Timeout (0:01:00)!
======================================================================
FAIL: testB (test.test_x.C.testB)
";
    let r = parse_verbose(out);
    assert_eq!(r.get("test.test_x.C.testA"), Some(&Outcome::Pass));
    assert_eq!(r.get("test.test_x.C.testB"), Some(&Outcome::Fail));
    assert_eq!(r.get("test.test_x.C.testC"), Some(&Outcome::Skip));
    assert_eq!(r.get("test.test_x.C.testD"), Some(&Outcome::Fail));
    assert_eq!(r.get("test.test_x.C.testE"), Some(&Outcome::Pass));
    assert_eq!(r.get("test.test_x.C.testF"), None);
    assert_eq!(r.len(), 5);
}

#[test]
fn a_timed_out_run_shows_where_its_threads_were() {
    use std::os::unix::process::ExitStatusExt;
    let run = |stdout: &str| Output {
        what: "python3 -m test".into(),
        status: std::process::ExitStatus::from_raw(0),
        stdout: stdout.as_bytes().to_vec(),
        stderr: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let hung = run("testF (test.test_x.C.testF) ... Timeout (0:01:00)!\n\
                    Thread 0x7f (most recent call first):\n  File \"socket.py\", line 1 in sendto\n");
    let traceback = timeout_traceback(&hung).expect("a traceback");
    assert!(traceback.starts_with("--- python3 -m test timed out here ---\nTimeout (0:01:00)!\n"));
    assert!(traceback.ends_with("line 1 in sendto"), "{traceback}");
    assert_eq!(timeout_traceback(&run("testA (t.C.testA) ... ok\n")), None);
}

#[test]
fn cpython_socket_suites_pass_under_rscq() {
    if !preconditions("cpython_socket_suites_pass_under_rscq", &["ip"]) {
        return;
    }
    let Some(python) = interpreter() else {
        assert!(
            std::env::var("RSCQ_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
            "cpython_socket_suites_pass_under_rscq: no python3 with the `test` package \
             (Debian: libpython3.11-testsuite; tests/run.sh installs it) and \
             RSCQ_REQUIRE_ROOT_TESTS=1 is set"
        );
        eprintln!(
            "NOTICE: cpython_socket_suites_pass_under_rscq skipped: python3 has no `test` \
             package with test_socket (Debian: libpython3.11-testsuite)"
        );
        return;
    };
    let started = Instant::now();
    let allowed = parse_allow_list(ALLOW_LIST);
    let skipped_in = |mode: Mode, class: &str| -> Vec<String> {
        allowed
            .iter()
            .filter(|a| {
                a.skip && a.modes.contains(&mode) && a.test.starts_with(&format!("{class}."))
            })
            .map(|a| a.test.clone())
            .collect()
    };
    let mut jobs = Vec::new();
    for &module in MODULES {
        for class in classes(&python, module) {
            let mut modes = vec![Mode::Native, Mode::Default];
            if module == PURE_MODULE {
                modes.push(Mode::Pure);
            }
            for mode in modes {
                jobs.push(Job {
                    module,
                    ignore: skipped_in(mode, &class),
                    class: class.clone(),
                    mode,
                    only: None,
                });
            }
        }
    }
    // Slow classes first, so the pool does not end on one long class.
    jobs.sort_by_key(|j| !j.module.starts_with("test_asyncio") && j.module != "test_ssl");
    let home = scratch_home();
    let done = run_all(jobs, &python, &home);
    let _ = fs::remove_dir_all(&home);

    let mut native: BTreeMap<String, Outcome> = BTreeMap::new();
    for (job, results, _) in &done {
        if job.mode == Mode::Native {
            native.extend(results.iter().map(|(k, v)| (k.clone(), *v)));
        }
    }
    let mut broken = Vec::new();
    let mut stale = Vec::new();
    let mut counts: BTreeMap<Mode, (usize, usize)> = BTreeMap::new();
    for (job, results, out) in &done {
        if job.mode == Mode::Native {
            continue;
        }
        let prefix = format!("{}.", job.class);
        for (test, _) in native
            .iter()
            .filter(|(t, o)| t.starts_with(&prefix) && **o == Outcome::Pass)
        {
            let entry = counts.entry(job.mode).or_default();
            entry.0 += 1;
            let got = results.get(test).copied();
            let allow = allowed
                .iter()
                .find(|a| a.test == *test && a.modes.contains(&job.mode));
            match (got, allow) {
                (Some(Outcome::Pass), Some(a)) if !a.skip => {
                    stale.push(format!("{} {test}", job.mode.name()));
                }
                (Some(Outcome::Pass), _) | (_, Some(_)) => {}
                (got, None) => {
                    entry.1 += 1;
                    let what = match got {
                        Some(Outcome::Fail) => "fails",
                        Some(Outcome::Skip) => "is skipped",
                        _ => "hangs or never ran",
                    };
                    broken.push((
                        format!("{} {test} {what}", job.mode.name()),
                        job.clone(),
                        test.clone(),
                        out.clone(),
                    ));
                }
            }
        }
    }
    for (mode, (passing, failing)) in &counts {
        eprintln!(
            "cpython: {}: {} of {passing} natively passing tests fail (beyond the allow-list)",
            mode.name(),
            failing
        );
    }
    eprintln!("cpython: {} runs in {:.0?}", done.len(), started.elapsed());
    if !stale.is_empty() {
        eprintln!(
            "cpython: these allowed tests pass now (their allow-list lines can go):\n  {}",
            stale.join("\n  ")
        );
    }
    // A test that failed under rscq runs once more, alone: on a loaded
    // machine a few of these suites' timing-bound tests fail now and then,
    // natively too. Only a failure that comes back counts.
    if !broken.is_empty() && broken.len() <= MAX_RERUNS {
        let again: Vec<Job> = broken
            .iter()
            .map(|(_, job, test, _)| Job {
                module: job.module,
                class: job.class.clone(),
                mode: job.mode,
                ignore: Vec::new(),
                only: Some(test.clone()),
            })
            .collect();
        let home = scratch_home();
        let rerun = run_all(again, &python, &home);
        let _ = fs::remove_dir_all(&home);
        let passed: BTreeSet<(Mode, String)> = rerun
            .iter()
            .filter_map(|(job, results, _)| {
                let test = job.only.clone()?;
                (results.get(&test) == Some(&Outcome::Pass)).then_some((job.mode, test))
            })
            .collect();
        let mut told = BTreeSet::new();
        broken.retain(|(line, job, test, out)| {
            let flaky = passed.contains(&(job.mode, test.clone()));
            if flaky {
                eprintln!("cpython: {line} once, then passed when run again alone");
                // Where it hung, once per run: the interpreter's own
                // traceback of every thread at its timeout.
                if let Some(traceback) = timeout_traceback(out)
                    && told.insert(out.what.clone())
                {
                    eprintln!("{traceback}");
                }
            }
            !flaky
        });
    }
    if !broken.is_empty() {
        let mut seen = BTreeSet::new();
        let mut dumps = String::new();
        for (_, _, _, out) in &broken {
            if seen.insert(out.what.clone()) && seen.len() <= 5 {
                dumps.push_str(&out.dump());
                dumps.push('\n');
            }
        }
        let list: Vec<&str> = broken.iter().map(|(l, _, _, _)| l.as_str()).collect();
        panic!(
            "{} tests pass natively but not under rscq:\n  {}\n\nfirst runs:\n{dumps}",
            list.len(),
            list.join("\n  ")
        );
    }
}

/// The traceback of every thread that `python -m test --timeout` prints
/// when a test overruns (faulthandler's "Timeout (h:mm:ss)!"), at most 80
/// lines; `None` when the run did not time out.
fn timeout_traceback(out: &Output) -> Option<String> {
    let text = format!("{}{}", out.out(), out.err());
    let start = text.find("Timeout (")?;
    let lines: Vec<&str> = text[start..].lines().take(80).collect();
    Some(format!(
        "--- {} timed out here ---\n{}",
        out.what,
        lines.join("\n")
    ))
}
