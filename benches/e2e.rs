//! End-to-end benchmarks of whole commands: **direct** (no rscq), **pure**
//! (`rscq --pure`, every forwarded call one stop-and-wait round trip) and
//! **optimized** (`rscq`, `--optimize all`), side by side, over emulated
//! links (netem/link.sh: two network namespaces joined by the user-space
//! delay line).
//!
//! Every iteration spawns the whole command; under rscq that includes
//! rscq's start, the QUIC handshake with the server and its teardown.
//!
//! Groups (select with
//! `RSCQ_BENCH_GROUPS=ls,download,overhead,work,connects,memory,scale`, default
//! all; `scale` is `connects` and `memory`):
//!
//! * `ls_27dirs`, `ls_1000files`, `ls_connect` — the thesis's Table 5.2:
//!   `ls -l` at RTT 0 (loopback), 2, 20 and 100 ms; `ls_connect` is
//!   `rscq -- true`, the fixed cost of a run.
//! * `download_rtt{20,100}_{100mbit,nocap}` — Table 5.1: an 8 MiB HTTP
//!   download read with `recv(B)` for several B.
//! * `overhead_stat`, `overhead_local` — per-call cost of a forwarded stat,
//!   and the cost rscq adds to programs that only make local calls.
//! * `work_*` — real metadata work and bulk reads in the mount at RTT 20 and
//!   100 ms (find, git status, python import, make -q, cat of many small
//!   files and of one 50 MB file), beside direct and sshfs cold.
//! * `net_connects` — `--net` connects per second at RTT 0 beside native.
//! * `memory` — [`scale`]'s one-shot figures: memory per idle `--net`
//!   connection, 50 clients on one server, a 1,000-run memory soak.
//!
//! Besides criterion's own files, side facts (round trips from `--stats`,
//! client-measured transfer and stat times) are appended as JSON lines to
//! `<criterion dir>/rscq-extra.jsonl`; `benches/report.py` reads both.
//!
//! Needs root (network namespaces); without it, prints so and exits 0.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[path = "e2e/scale.rs"]
mod scale;

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, measurement::WallTime};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

const RSCQ: &str = env!("CARGO_BIN_EXE_rscq");
const SERVER: &str = env!("CARGO_BIN_EXE_rscq-server");
const DELAYLINE: &str = env!("CARGO_BIN_EXE_rscq-delayline");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Address of side B (the server side) on an emulated link.
const B_ADDR: &str = "10.77.0.2";
const HTTP_PORT: u16 = 8080;
const DOWNLOAD_BYTES: usize = 8 << 20;
/// `--pure` downloads stop and wait once per `recv`: at 1500-byte reads and
/// 100 ms that is 15 s per 225 KB, so pure fetches a smaller file.
const PURE_DOWNLOAD_BYTES: usize = 128 << 10;
const BUFFERS: &[usize] = &[1500, 3000, 10_000, 50_000, 100_000, 200_000, 1_000_000];
const STAT_CALLS: usize = 2000;
const BIG_FILE_BYTES: usize = 200_000_000;
const STARTUP: Duration = Duration::from_secs(30);

fn main() {
    if !nix::unistd::geteuid().is_root() {
        println!("e2e benches need root (network namespaces, TUN); skipping");
        return;
    }
    for tool in [
        "ip",
        "python3",
        "ls",
        "sha256sum",
        "find",
        "make",
        "cc",
        "taskset",
    ] {
        if which(tool).is_none() {
            println!("e2e benches need `{tool}` on PATH; skipping");
            return;
        }
    }
    let groups = std::env::var("RSCQ_BENCH_GROUPS").unwrap_or_else(|_| "all".into());
    let want = |g: &str| groups == "all" || groups.split(',').any(|x| x.trim() == g);
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let lab = Lab::new();
    extra(&format!(
        "{{\"kind\":\"run\",\"unix_time\":{}}}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    ));
    if want("ls") {
        if !lab.sshfs {
            println!("sshfs or sshd missing: the ls groups have no sshfs rows");
        }
        bench_ls(&mut c, &lab);
    }
    if want("download") {
        bench_download(&mut c, &lab);
    }
    if want("overhead") {
        bench_overhead(&mut c, &lab);
    }
    if want("work") {
        bench_work(&mut c, &lab);
    }
    if want("connects") || want("scale") {
        bench_connects(&mut c, &lab);
    }
    if want("memory") || want("scale") {
        scale::bench_scale(&lab);
    }
    c.final_summary();
}

// ---------------------------------------------------------------------------
// Table 5.2: ls -l
// ---------------------------------------------------------------------------

/// (label, directory name under the export root, how many entries)
const LS_DIRS: &[(&str, &str)] = &[("27dirs", "d27"), ("1000files", "f1000")];
const LS_RTTS: &[u32] = &[0, 2, 20, 100];

fn bench_ls(c: &mut Criterion, lab: &Lab) {
    for &rtt in LS_RTTS {
        let site = Site::new(lab, rtt, None);
        let sshd = lab.sshfs.then(|| Sshd::start(&site, lab));
        for &(label, dir) in LS_DIRS {
            let remote = format!("/remote/{dir}");
            let local = lab.root.join(dir);
            let ls_remote = ["ls", "-l", "--color=never", remote.as_str()];
            let local_s = local.to_string_lossy().into_owned();
            let ls_local = ["ls", "-l", "--color=never", local_s.as_str()];
            // Pure ls of 1000 files costs >3000 round trips: 20 ms and
            // 100 ms would take minutes per iteration.
            let run_pure = !(label == "1000files" && rtt > 2);
            for (mode, flags) in [("pure", &["--pure"][..]), ("optimized", &[][..])] {
                if mode == "pure" && !run_pure {
                    continue;
                }
                let (calls, local_calls) =
                    site.stats(lab, flags, &["--mount", "/remote=/"], &ls_remote);
                extra(&format!(
                    "{{\"kind\":\"roundtrips\",\"group\":\"ls_{label}\",\"mode\":\"{mode}\",\"rtt_ms\":{rtt},\"calls\":{calls},\"local\":{local_calls}}}"
                ));
            }
            let mut g = group(c, &format!("ls_{label}"));
            let param = format!("rtt{rtt}ms");
            g.bench_function(BenchmarkId::new("direct", &param), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| run_timed(&site.server_ns, cmd(&ls_local)))
                        .sum()
                });
            });
            for (mode, flags) in [("pure", &["--pure"][..]), ("optimized", &[][..])] {
                if mode == "pure" && !run_pure {
                    continue;
                }
                g.bench_function(BenchmarkId::new(mode, &param), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| {
                                let c =
                                    site.rscq(lab, flags, &["--mount", "/remote=/"], &ls_remote);
                                run_timed(&site.client_ns, c)
                            })
                            .sum()
                    });
                });
            }
            if let Some(sshd) = &sshd {
                bench_sshfs(&mut g, &param, &site, sshd, lab, dir);
            }
            g.finish();
        }
        // The fixed cost of every run under rscq: start, QUIC handshake,
        // a program that forwards nothing, teardown.
        let mut g = group(c, "ls_connect");
        g.bench_function(BenchmarkId::new("optimized", format!("rtt{rtt}ms")), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let c = site.rscq(lab, &[], &["--mount", "/remote=/"], &["true"]);
                        run_timed(&site.client_ns, c)
                    })
                    .sum()
            });
        });
        g.finish();
    }
}

/// `ls -l` of `dir` over sshfs on the same link: **sshfs_cold** on a fresh
/// mount each time (the mount itself is not timed; rscq's rows include its
/// start), **sshfs_warm** on one mount that has listed it before.
fn bench_sshfs(
    g: &mut BenchmarkGroup<'_, WallTime>,
    param: &str,
    site: &Site,
    sshd: &Sshd,
    lab: &Lab,
    dir: &str,
) {
    let at = lab.dir.join("sshfs");
    let listed = at.join(dir);
    let listed = s(&listed);
    let ls = ["ls", "-l", "--color=never", listed.as_str()];
    g.bench_function(BenchmarkId::new("sshfs_cold", param), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let _mount = sshd.mount(&site.client_ns, &at);
                    run_timed(&site.client_ns, cmd(&ls))
                })
                .sum()
        });
    });
    let _mount = sshd.mount(&site.client_ns, &at);
    run_timed(&site.client_ns, cmd(&ls));
    g.bench_function(BenchmarkId::new("sshfs_warm", param), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| run_timed(&site.client_ns, cmd(&ls)))
                .sum()
        });
    });
}

// ---------------------------------------------------------------------------
// Table 5.1: download with recv(B)
// ---------------------------------------------------------------------------

const CLIENT_PY: &str = r#"
import socket, sys, time
host, port, path, bufsize, expect = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
buf = bytearray(max(bufsize, 65536))
view = memoryview(buf)
t0 = time.perf_counter()
s = socket.create_connection((host, port))
s.sendall(("GET /%s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, host)).encode())
head = b""
while b"\r\n\r\n" not in head:
    n = s.recv_into(view, bufsize)
    if n == 0:
        sys.exit("connection closed in the header")
    head += bytes(view[:n])
status = head.split(b"\r\n", 1)[0]
if b" 200 " not in status:
    sys.exit("bad status: %r" % status)
got = len(head) - head.index(b"\r\n\r\n") - 4
while True:
    n = s.recv_into(view, bufsize)
    if n == 0:
        break
    got += n
t1 = time.perf_counter()
s.close()
if got != expect:
    sys.exit("got %d bytes, expected %d" % (got, expect))
print("TRANSFER %d %.6f" % (got, t1 - t0))
"#;

fn bench_download(c: &mut Criterion, lab: &Lab) {
    let client = lab.dir.join("client.py");
    fs::write(&client, CLIENT_PY).expect("write client.py");
    let client = client.to_string_lossy().into_owned();
    let expect = DOWNLOAD_BYTES.to_string();
    let port = HTTP_PORT.to_string();
    for &(rtt, rate) in &[(20, Some(100)), (100, Some(100)), (20, None), (100, None)] {
        let site = Site::new(lab, rtt, rate);
        let _http = site.http_server(lab);
        let name = format!(
            "download_rtt{rtt}_{}",
            rate.map_or("nocap".to_string(), |r| format!("{r}mbit"))
        );
        let mut g = group(c, &name);
        g.throughput(criterion::Throughput::Bytes(DOWNLOAD_BYTES as u64));
        for &bufsize in BUFFERS {
            let bs = bufsize.to_string();
            let pure_expect = PURE_DOWNLOAD_BYTES.to_string();
            // Pure only on the rate-capped links: it is slow by design.
            let modes: &[&str] = if rate.is_some() {
                &["direct", "pure", "optimized"]
            } else {
                &["direct", "optimized"]
            };
            for &mode in modes {
                let (file, bytes, want) = if mode == "pure" {
                    ("small.bin", PURE_DOWNLOAD_BYTES, pure_expect.as_str())
                } else {
                    ("big.bin", DOWNLOAD_BYTES, expect.as_str())
                };
                let argv = [
                    "python3",
                    client.as_str(),
                    B_ADDR,
                    port.as_str(),
                    file,
                    bs.as_str(),
                    want,
                ];
                let mut transfers: Vec<f64> = Vec::new();
                g.bench_function(BenchmarkId::new(mode, bufsize), |b| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let c = match mode {
                                "direct" => cmd(&argv),
                                "pure" => site.rscq(lab, &["--pure"], &["--net"], &argv),
                                _ => site.rscq(lab, &[], &["--net"], &argv),
                            };
                            let (elapsed, out) = run_output(&site.client_ns, c);
                            total += elapsed;
                            if let Some(t) = parse_tagged(&out, "TRANSFER", 2) {
                                transfers.push(t);
                            }
                        }
                        total
                    });
                });
                extra(&format!(
                    "{{\"kind\":\"transfer\",\"group\":\"{name}\",\"mode\":\"{mode}\",\"buf\":{bufsize},\"bytes\":{bytes},\"median_s\":{:.6},\"n\":{}}}",
                    median(&mut transfers),
                    transfers.len()
                ));
            }
        }
        g.finish();
    }
}

// ---------------------------------------------------------------------------
// Real metadata work: find, git status, python import, make -q, cat
// ---------------------------------------------------------------------------

const WORK_RTTS: &[u32] = &[20, 100];
const BIG_CAT_BYTES: usize = 50_000_000;

/// The trees the work rows run in, under `<export>/work`: made once.
fn work_tree(lab: &Lab) -> PathBuf {
    let work = lab.root.join("work");
    if work.exists() {
        return work;
    }
    // 2,000 files in 50 directories; the same tree again as a git checkout.
    for name in ["tree2000", "git2000"] {
        for d in 0..50 {
            let dir = work.join(name).join(format!("d{d:02}"));
            fs::create_dir_all(&dir).expect("mkdir");
            for f in 0..40 {
                fs::write(dir.join(format!("f{f:02}.txt")), format!("{d} {f}\n")).expect("write");
            }
        }
    }
    let tree = work.join("git2000");
    let git = |args: &[&str]| {
        let mut argv = vec!["git", "-C"];
        let t = s(&tree);
        argv.push(&t);
        argv.extend_from_slice(args);
        check(cmd(&argv));
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&[
        "-c",
        "user.name=bench",
        "-c",
        "user.email=bench@localhost",
        "commit",
        "-q",
        "-m",
        "tree",
    ]);
    // 1,000 files of 4 KiB in one directory.
    let small = work.join("small1000");
    fs::create_dir_all(&small).expect("mkdir");
    for i in 0..1000 {
        fs::write(
            small.join(format!("s{i:04}")),
            vec![b"abcdefghijklmnopqrstuvwxyz"[i % 26]; 4096],
        )
        .expect("write");
    }
    // A package of 200 modules, compiled ahead so every mode reads .pyc.
    let pkg = work.join("py").join("pkg200");
    fs::create_dir_all(&pkg).expect("mkdir");
    let mut init = String::new();
    for i in 0..200 {
        fs::write(pkg.join(format!("m{i:03}.py")), format!("VALUE = {i}\n")).expect("write");
        let _ = writeln!(init, "from . import m{i:03}");
    }
    fs::write(pkg.join("__init__.py"), init).expect("write");
    check(cmd(&[
        "python3",
        "-m",
        "compileall",
        "-q",
        &s(&work.join("py")),
    ]));
    // 500 sources whose objects are up to date: `make -q` has nothing to do.
    let mk = work.join("make500");
    fs::create_dir_all(&mk).expect("mkdir");
    fs::write(
        mk.join("Makefile"),
        "SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\n.PHONY: all\nall: $(OBJS)\n%.o: %.c\n\t$(CC) -c -o $@ $<\n",
    )
    .expect("write");
    let old = SystemTime::now() - Duration::from_secs(3600);
    for i in 0..500 {
        let c = mk.join(format!("s{i:03}.c"));
        fs::write(&c, format!("int f{i}(void) {{ return {i}; }}\n")).expect("write");
        File::options()
            .write(true)
            .open(&c)
            .and_then(|f| f.set_modified(old))
            .expect("age the source");
        fs::write(mk.join(format!("s{i:03}.o")), b"").expect("write");
    }
    write_pattern(&work.join("big50.bin"), BIG_CAT_BYTES);
    work
}

/// One row of the work group: a label and the command, given where the
/// export's `work` directory is seen.
struct WorkRow {
    label: &'static str,
    argv: fn(&str) -> Vec<String>,
}

const WORK_ROWS: &[WorkRow] = &[
    WorkRow {
        label: "find2000",
        argv: |w| {
            vec![
                "find".into(),
                format!("{w}/tree2000"),
                "-printf".into(),
                "%s %m\\n".into(),
            ]
        },
    },
    WorkRow {
        label: "git_status2000",
        argv: |w| {
            vec![
                "git".into(),
                "-C".into(),
                format!("{w}/git2000"),
                "status".into(),
                "--porcelain".into(),
            ]
        },
    },
    WorkRow {
        label: "py_import200",
        argv: |w| {
            vec![
                "env".into(),
                format!("PYTHONPATH={w}/py"),
                "python3".into(),
                "-c".into(),
                "import pkg200".into(),
            ]
        },
    },
    WorkRow {
        label: "make_q500",
        argv: |w| {
            vec![
                "make".into(),
                "-q".into(),
                "-C".into(),
                format!("{w}/make500"),
            ]
        },
    },
    WorkRow {
        label: "cat_small1000",
        argv: |w| vec!["sh".into(), "-c".into(), format!("cat {w}/small1000/*")],
    },
    WorkRow {
        label: "cat_big50MB",
        argv: |w| vec!["cat".into(), format!("{w}/big50.bin")],
    },
];

/// A work row that takes longer than this once is timed once, not ten
/// times by criterion: at RTT 100 ms some take minutes per run. The single
/// time goes to rscq-extra.jsonl (`"kind":"single"`), and the report says so.
const SLOW_ROW: Duration = Duration::from_secs(8);
/// A row and mode slower than this once is not run again at a longer RTT
/// (`"kind":"skipped"`): sshfs `git status` takes minutes at 20 ms already.
const TOO_SLOW_ROW: Duration = Duration::from_secs(60);

/// Times `run` with criterion, or once if one run is slower than
/// [`SLOW_ROW`]. Returns the first run's time.
fn bench_or_once(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    mode: &str,
    param: &str,
    run: impl Fn() -> Duration,
) -> Duration {
    let first = run();
    if first > SLOW_ROW {
        extra(&format!(
            "{{\"kind\":\"single\",\"group\":\"{group}\",\"mode\":\"{mode}\",\"param\":\"{param}\",\"secs\":{:.6}}}",
            first.as_secs_f64()
        ));
        return first;
    }
    g.bench_function(BenchmarkId::new(mode, param), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run()).sum())
    });
    first
}

/// Rows and modes that took over [`TOO_SLOW_ROW`] at a shorter RTT: not run
/// again, said so in rscq-extra.jsonl.
#[derive(Default)]
struct TooSlow(Vec<(String, &'static str, String)>);

impl TooSlow {
    /// Runs `bench` unless `group`/`mode` was too slow before; remembers it
    /// if it is now.
    fn run(
        &mut self,
        group: &str,
        mode: &'static str,
        param: &str,
        bench: impl FnOnce() -> Duration,
    ) {
        if let Some((_, _, when)) = self.0.iter().find(|(g, m, _)| g == group && *m == mode) {
            extra(&format!(
                "{{\"kind\":\"skipped\",\"group\":\"{group}\",\"mode\":\"{mode}\",\"param\":\"{param}\",\"after\":\"{when}\"}}"
            ));
            return;
        }
        let first = bench();
        if first > TOO_SLOW_ROW {
            let when = format!("{:.0} s at {param}", first.as_secs_f64());
            self.0.push((group.to_owned(), mode, when));
        }
    }
}

/// Issue-17 rows: real metadata work and bulk reads in the mount, at RTT 20
/// and 100 ms, beside direct (in the server's namespace) and sshfs cold on
/// the same link. `--pure` runs where its round trips take under 2 s; its
/// round-trip count comes from one `--stats` run at RTT 0 in any case.
fn bench_work(c: &mut Criterion, lab: &Lab) {
    let work = work_tree(lab);
    let direct_at = s(&work);
    let pure_calls: Vec<u64> = {
        let site = Site::new(lab, 0, None);
        WORK_ROWS
            .iter()
            .map(|row| {
                let argv = (row.argv)("/remote/work");
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                let (calls, local) = site.stats(lab, &["--pure"], &["--mount", "/remote=/"], &argv);
                extra(&format!(
                    "{{\"kind\":\"roundtrips\",\"group\":\"work_{}\",\"mode\":\"pure\",\"rtt_ms\":0,\"calls\":{calls},\"local\":{local}}}",
                    row.label
                ));
                calls
            })
            .collect()
    };
    let mut too_slow = TooSlow::default();
    for &rtt in WORK_RTTS {
        let site = Site::new(lab, rtt, None);
        let _http = site.http_server(lab);
        let sshd = lab.sshfs.then(|| Sshd::start(&site, lab));
        let param = format!("rtt{rtt}ms");
        let at = lab.dir.join("sshfs");
        for (row, &pure) in WORK_ROWS.iter().zip(&pure_calls) {
            let remote_argv = (row.argv)("/remote/work");
            let remote_argv: Vec<&str> = remote_argv.iter().map(String::as_str).collect();
            let (calls, local) = site.stats(lab, &[], &["--mount", "/remote=/"], &remote_argv);
            extra(&format!(
                "{{\"kind\":\"roundtrips\",\"group\":\"work_{}\",\"mode\":\"optimized\",\"rtt_ms\":{rtt},\"calls\":{calls},\"local\":{local}}}",
                row.label
            ));
            let name = format!("work_{}", row.label);
            let mut g = group(c, &name);
            let direct_argv = (row.argv)(&direct_at);
            too_slow.run(&name, "direct", &param, || {
                bench_or_once(&mut g, &name, "direct", &param, || {
                    run_timed(&site.server_ns, cmd(&direct_argv))
                })
            });
            let mut modes = vec![("optimized", &[][..])];
            if pure.saturating_mul(u64::from(rtt)) <= 2000 {
                modes.push(("pure", &["--pure"][..]));
            }
            for (mode, flags) in modes {
                too_slow.run(&name, mode, &param, || {
                    bench_or_once(&mut g, &name, mode, &param, || {
                        let c = site.rscq(lab, flags, &["--mount", "/remote=/"], &remote_argv);
                        run_timed(&site.client_ns, c)
                    })
                });
            }
            if let Some(sshd) = &sshd {
                let sshfs_argv = (row.argv)(&s(&at.join("work")));
                too_slow.run(&name, "sshfs_cold", &param, || {
                    bench_or_once(&mut g, &name, "sshfs_cold", &param, || {
                        let _mount = sshd.mount(&site.client_ns, &at);
                        run_timed(&site.client_ns, cmd(&sshfs_argv))
                    })
                });
            }
            if row.label == "cat_big50MB" {
                // The link's plain TCP throughput, for the bulk-read target.
                let url = format!("http://{B_ADDR}:{HTTP_PORT}/work/big50.bin");
                let curl = ["curl", "-sSf", "-o", "/dev/null", url.as_str()];
                bench_or_once(&mut g, &name, "tcp", &param, || {
                    run_timed(&site.client_ns, cmd(&curl))
                });
            }
            g.finish();
        }
    }
}

// ---------------------------------------------------------------------------
// --net connects per second
// ---------------------------------------------------------------------------

/// Holds the connections it accepts on 127.0.0.1:PORT; only those older
/// than the last 6000 are closed, so no run's own connections are.
const HOLDER_PY: &str = r#"
import collections, resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < 6200:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 6200), hard))
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(sys.argv[1])))
ls.listen(4096)
print("READY", flush=True)
held = collections.deque()
while True:
    c, _ = ls.accept()
    held.append(c)
    while len(held) > 6000:
        held.popleft().close()
"#;

/// N non-blocking connects to 127.0.0.1:PORT, each waited for with poll and
/// kept open to the end (so the table grows as in a busy program).
const CONNECTS_PY: &str = r#"
import resource, select, socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if soft < n + 100:
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 100), hard))
held = []
t0 = time.perf_counter()
for i in range(n):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", port))
    p = select.poll()
    p.register(c, select.POLLOUT)
    p.poll(30000)
    err = c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        sys.exit("connect %d failed: errno %d" % (i, err))
    held.append(c)
t1 = time.perf_counter()
print("CONNECTS %d %.9f" % (n, t1 - t0))
# An abortive close leaves no TIME_WAIT behind: with a fixed destination,
# a few runs' worth of those would use up the ephemeral ports.
linger = struct.pack("ii", 1, 0)
for c in held:
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    c.close()
"#;

const CONNECTS: usize = 2000;
const CONNECT_PORT: u16 = 7400;

/// Issue 14's scale target: `--net` connects per second at RTT 0 on
/// loopback, beside native, with connections piling up.
fn bench_connects(c: &mut Criterion, lab: &Lab) {
    let holder = lab.dir.join("holder.py");
    fs::write(&holder, HOLDER_PY).expect("write holder.py");
    let connects = lab.dir.join("connects.py");
    fs::write(&connects, CONNECTS_PY).expect("write connects.py");
    let port = CONNECT_PORT.to_string();
    let n = CONNECTS.to_string();
    let argv = ["python3", &s(&connects), port.as_str(), n.as_str()];
    let mut g = group(c, "net_connects");
    g.throughput(criterion::Throughput::Elements(CONNECTS as u64));
    for mode in ["direct", "optimized", "pure"] {
        // A namespace of its own per mode: tens of thousands of
        // connections to one address leave the next mode's ports and
        // tables as they found them.
        let site = Site::new(lab, 0, None);
        let mut h = cmd(&["python3", &s(&holder), &port]);
        h.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut holder_proc = Proc::spawn(&site.server_ns, h);
        holder_proc.wait_stdout("READY");
        let mut rates: Vec<f64> = Vec::new();
        g.bench_function(BenchmarkId::new(mode, CONNECTS), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let c = match mode {
                        "direct" => cmd(&argv),
                        "pure" => site.rscq(lab, &["--pure"], &["--net"], &argv),
                        _ => site.rscq(lab, &[], &["--net"], &argv),
                    };
                    let (elapsed, out) = run_output(&site.client_ns, c);
                    total += elapsed;
                    if let Some(t) = parse_tagged(&out, "CONNECTS", 2) {
                        rates.push(CONNECTS as f64 / t);
                    }
                }
                total
            });
        });
        extra(&format!(
            "{{\"kind\":\"connects\",\"mode\":\"{mode}\",\"n\":{CONNECTS},\"median_per_s\":{:.1},\"runs\":{}}}",
            median(&mut rates),
            rates.len()
        ));
        drop(holder_proc);
        drop(site);
    }
    g.finish();
}

// ---------------------------------------------------------------------------
// Overheads
// ---------------------------------------------------------------------------

const STAT_PY: &str = r#"
import os, sys, time
path, n = sys.argv[1], int(sys.argv[2])
os.stat(path)
t0 = time.perf_counter()
for _ in range(n):
    os.stat(path)
t1 = time.perf_counter()
print("STAT %d %.9f" % (n, t1 - t0))
"#;

fn bench_overhead(c: &mut Criterion, lab: &Lab) {
    let site = Site::new(lab, 0, None);
    // (a) one forwarded stat, not answered by any cache, at RTT 0.
    let stat_py = lab.dir.join("stat.py");
    fs::write(&stat_py, STAT_PY).expect("write stat.py");
    let stat_py = stat_py.to_string_lossy().into_owned();
    let n = STAT_CALLS.to_string();
    let local_target = lab.root.join("statme").to_string_lossy().into_owned();
    let direct_argv = [
        "python3",
        stat_py.as_str(),
        local_target.as_str(),
        n.as_str(),
    ];
    let remote_argv = ["python3", stat_py.as_str(), "/remote/statme", n.as_str()];
    for (mode, flags) in [("pure", &["--pure"][..]), ("optimized", &[][..])] {
        let (calls, local_calls) = site.stats(lab, flags, &["--mount", "/remote=/"], &remote_argv);
        extra(&format!(
            "{{\"kind\":\"roundtrips\",\"group\":\"overhead_stat\",\"mode\":\"{mode}\",\"rtt_ms\":0,\"calls\":{calls},\"local\":{local_calls}}}"
        ));
    }
    let mut g = group(c, "overhead_stat");
    for mode in ["direct", "pure", "optimized"] {
        let mut per_run: Vec<f64> = Vec::new();
        // Criterion times the whole command; the program's own timing of
        // its stat loop is what the per-call figure is made of.
        g.bench_function(BenchmarkId::new(mode, format!("stat{STAT_CALLS}")), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let c = match mode {
                        "direct" => cmd(&direct_argv),
                        "pure" => {
                            site.rscq(lab, &["--pure"], &["--mount", "/remote=/"], &remote_argv)
                        }
                        _ => site.rscq(lab, &[], &["--mount", "/remote=/"], &remote_argv),
                    };
                    let (elapsed, out) = run_output(&site.client_ns, c);
                    total += elapsed;
                    if let Some(t) = parse_tagged(&out, "STAT", 2) {
                        per_run.push(t);
                    }
                }
                total
            });
        });
        extra(&format!(
            "{{\"kind\":\"stat_loop\",\"mode\":\"{mode}\",\"calls\":{STAT_CALLS},\"median_s\":{:.9},\"n\":{}}}",
            median(&mut per_run),
            per_run.len()
        ));
    }
    g.finish();

    // (b) programs that make only local calls, with and without a mount,
    // with the fast path (default) and without it, and pinned to one CPU
    // (the idle-vCPU effect: the fast path must not need `taskset`).
    let big = lab.dir.join("big-local.bin");
    write_pattern(&big, BIG_FILE_BYTES);
    let big_s = big.to_string_lossy().into_owned();
    let stat_target = lab.dir.join("stat-local");
    fs::write(&stat_target, b"x").expect("write stat-local");
    let pystat = format!(
        "import os\nfor i in range({LOCAL_STATS}): os.stat({:?})",
        stat_target.to_string_lossy()
    );
    let project = c_project(lab);
    let programs: [(&str, Vec<&str>); 4] = [
        ("sha256sum-200MB", vec!["sha256sum", big_s.as_str()]),
        ("find-usr", vec!["find", "/usr"]),
        ("pystat-100k", vec!["python3", "-c", pystat.as_str()]),
        (
            "make-j2",
            vec!["make", "-s", "-B", "-j2", "-C", project.as_str()],
        ),
    ];
    let mount: &[&str] = &["--mount", "/remote=/tmp"];
    let no_fastpath: &[&str] = &["--optimize", WITHOUT_FASTPATH];
    let mut g = group(c, "overhead_local");
    for (label, argv) in &programs {
        let rows: [(&str, CommandMaker); 6] = [
            ("native", Box::new(|| cmd(argv))),
            ("native-taskset0", Box::new(|| pinned(&cmd(argv)))),
            ("rscq-mount", Box::new(|| site.rscq(lab, &[], mount, argv))),
            (
                "rscq-mount-taskset0",
                Box::new(|| pinned(&site.rscq(lab, &[], mount, argv))),
            ),
            (
                "rscq-mount-nofastpath",
                Box::new(|| site.rscq(lab, no_fastpath, mount, argv)),
            ),
            ("rscq-nomount", Box::new(|| site.rscq(lab, &[], &[], argv))),
        ];
        for (row, make) in &rows {
            g.bench_function(BenchmarkId::new(*row, label), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| run_timed(&site.client_ns, make())).sum());
            });
        }
    }
    g.finish();
}

/// Makes one row's command afresh for each run.
type CommandMaker<'a> = Box<dyn Fn() -> Command + 'a>;

/// `c` under `taskset -c 0`, with its environment.
fn pinned(c: &Command) -> Command {
    let mut p = Command::new("taskset");
    p.args(["-c", "0"]).arg(c.get_program()).args(c.get_args());
    for (k, v) in c.get_envs() {
        match v {
            Some(v) => p.env(k, v),
            None => p.env_remove(k),
        };
    }
    p
}

/// Every optimization but the fast path.
const WITHOUT_FASTPATH: &str = "nagle,readahead,statcache,compound,dirmeta,bulkread,smallfile";
/// Calls of the local `os.stat` loop.
const LOCAL_STATS: usize = 100_000;

/// A small C project (24 sources, one header each, a Makefile) for a
/// local `make -j2`; returns its directory.
fn c_project(lab: &Lab) -> String {
    let dir = lab.dir.join("cproj");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("mkdir cproj");
    let mut objs = Vec::new();
    for i in 0..24 {
        fs::write(
            dir.join(format!("m{i}.h")),
            format!("#include <stdio.h>\n#include <string.h>\nint f{i}(const char *s);\n"),
        )
        .expect("write header");
        fs::write(
            dir.join(format!("m{i}.c")),
            format!(
                "#include \"m{i}.h\"\nint f{i}(const char *s) {{ return (int)strlen(s) + {i}; }}\n"
            ),
        )
        .expect("write source");
        objs.push(format!("m{i}.o"));
    }
    let calls: String = (0..24).map(|i| format!("f{i}(\"x\") + ")).collect();
    let includes: String = (0..24).map(|i| format!("#include \"m{i}.h\"\n")).collect();
    fs::write(
        dir.join("main.c"),
        format!("{includes}int main(void) {{ return ({calls}0) == 0; }}\n"),
    )
    .expect("write main");
    fs::write(
        dir.join("Makefile"),
        format!(
            "prog: main.o {objs}\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O1 -c -o $@ $<\n",
            objs = objs.join(" ")
        ),
    )
    .expect("write Makefile");
    dir.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------
// Lab: credentials, export tree, namespaces, servers
// ---------------------------------------------------------------------------

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    g
}

/// Credentials and the export tree, in a temporary directory removed on
/// drop.
struct Lab {
    dir: PathBuf,
    root: PathBuf,
    server_dir: PathBuf,
    client_dir: PathBuf,
    authorized: PathBuf,
    home: PathBuf,
    /// sshd and sshfs are installed: the ls groups get sshfs rows.
    sshfs: bool,
    _tmp: tempfile::TempDir,
}

impl Lab {
    fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("rscq-bench-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().canonicalize().expect("canonicalize");
        let root = dir.join("root");
        let home = dir.join("home");
        let server_dir = dir.join("server");
        let client_dir = dir.join("client");
        for d in [
            &root,
            &home,
            &root.join("tmp"),
            &root.join("d27"),
            &root.join("f1000"),
        ] {
            fs::create_dir_all(d).expect("mkdir");
        }
        for i in 0..27 {
            fs::create_dir(root.join("d27").join(format!("dir{i:02}"))).expect("mkdir");
        }
        for i in 0..1000 {
            fs::write(root.join("f1000").join(format!("file{i:04}")), b"x\n").expect("write");
        }
        fs::write(root.join("statme"), b"stat me\n").expect("write");
        write_pattern(&root.join("big.bin"), DOWNLOAD_BYTES);
        write_pattern(&root.join("small.bin"), PURE_DOWNLOAD_BYTES);
        check(cmd(&[SERVER, "--gen-cert", &s(&server_dir)]));
        let out = check(cmd(&[RSCQ, "keygen", "--dir", &s(&client_dir)]));
        let fp = String::from_utf8_lossy(&out).trim().to_string();
        let authorized = dir.join("authorized_clients");
        fs::write(&authorized, format!("{fp}\n")).expect("write authorized clients");
        Self {
            dir,
            root,
            server_dir,
            client_dir,
            authorized,
            home,
            sshfs: which("sshfs").is_some() && Path::new("/usr/sbin/sshd").exists(),
            _tmp: tmp,
        }
    }
}

/// Where the client and the server run: one namespace on loopback (RTT 0)
/// or the two ends of an emulated link. Dropping it kills the server and
/// removes the namespaces (field order is drop order).
struct Site {
    server: Proc,
    remote: String,
    /// The server side's address (sshd listens there too).
    server_ip: &'static str,
    client_ns: String,
    server_ns: String,
    _net: NetGuard,
}

impl Site {
    fn new(lab: &Lab, rtt_ms: u32, rate_mbit: Option<u32>) -> Self {
        let pid = std::process::id();
        let (net, client_ns, server_ns, listen_ip) = if rtt_ms == 0 {
            let name = format!("rscqb-{pid}-lo");
            ip(&["netns", "add", &name]);
            let guard = NetGuard::Plain(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            (guard, name.clone(), name, "127.0.0.1")
        } else {
            let a = format!("rscqb-{pid}-a");
            let b = format!("rscqb-{pid}-b");
            let rtt = rtt_ms.to_string();
            let mut argv = vec!["up", a.as_str(), b.as_str(), "--rtt", rtt.as_str()];
            let rate = rate_mbit.map(|r| r.to_string());
            if let Some(r) = &rate {
                argv.extend(["--rate", r.as_str()]);
            }
            let mut c = Command::new(Path::new(REPO).join("netem/link.sh"));
            c.args(&argv).env("RSCQ_DELAYLINE", DELAYLINE);
            // Registered before `up` so a half-built link is torn down too.
            let guard = NetGuard::Link(a.clone(), b.clone());
            check(c);
            (guard, a, b, B_ADDR)
        };
        let mut server = cmd(&[
            SERVER,
            "--cert",
            &s(&lab.server_dir.join("cert.pem")),
            "--key",
            &s(&lab.server_dir.join("key.pem")),
            "--listen",
            &format!("{listen_ip}:0"),
            "--root",
            &s(&lab.root),
            "--authorized-clients",
            &s(&lab.authorized),
        ]);
        server.env("RUST_LOG", "warn").stderr(Stdio::piped());
        let mut server = Proc::spawn(&server_ns, server);
        let port = server.wait_listening();
        Self {
            server,
            remote: format!("{listen_ip}:{port}"),
            server_ip: listen_ip,
            client_ns,
            server_ns,
            _net: net,
        }
    }

    /// `rscq <connection flags> FLAGS SCOPE -- ARGV`
    fn rscq(&self, lab: &Lab, flags: &[&str], scope: &[&str], argv: &[&str]) -> Command {
        let mut full: Vec<OsString> = vec![
            RSCQ.into(),
            "--remote".into(),
            self.remote.clone().into(),
            "--server-cert".into(),
            lab.server_dir.join("cert.pem").into(),
            "--identity".into(),
            lab.client_dir.clone().into(),
            "--known-servers".into(),
            lab.dir.join("known_servers").into(),
        ];
        full.extend(flags.iter().chain(scope).map(OsString::from));
        full.push("--".into());
        full.extend(argv.iter().map(OsString::from));
        let mut c = cmd(&full);
        c.env("HOME", &lab.home)
            .env("XDG_CONFIG_HOME", lab.dir.join("xdg"));
        c
    }

    /// Round trips ("calls") and locally answered calls of one `--stats`
    /// run.
    fn stats(&self, lab: &Lab, flags: &[&str], scope: &[&str], argv: &[&str]) -> (u64, u64) {
        let mut all = vec!["--stats"];
        all.extend_from_slice(flags);
        let mut c = self.rscq(lab, &all, scope, argv);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let out = in_ns(&self.client_ns, || c.output()).expect("run rscq --stats");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "rscq --stats failed: {err}");
        err.lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 4 && f[0] == "rscq:" && f[1] == "total")
                    .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no total line in --stats output: {err}"))
    }

    /// `python3 -m http.server` in the server's namespace, serving the
    /// export root on B_ADDR:HTTP_PORT.
    fn http_server(&self, lab: &Lab) -> Proc {
        let port = HTTP_PORT.to_string();
        let mut c = cmd(&[
            "python3",
            "-u",
            "-m",
            "http.server",
            port.as_str(),
            "--bind",
            B_ADDR,
            "--directory",
            &s(&lab.root),
        ]);
        c.stdout(Stdio::piped()).stderr(Stdio::null());
        let mut p = Proc::spawn(&self.server_ns, c);
        p.wait_stdout("Serving HTTP");
        p
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.server.kill();
    }
}

/// sshd in a site's server namespace (netem/sshfs.sh), stopped on drop:
/// sshfs is the peer rscq is measured against, on the same link.
struct Sshd {
    state: PathBuf,
    server_ip: &'static str,
    export: PathBuf,
}

impl Sshd {
    fn start(site: &Site, lab: &Lab) -> Self {
        let state = lab.dir.join(format!("sshd-{}", site.server_ns));
        let mut c = Command::new(Path::new(REPO).join("netem/sshfs.sh"));
        c.args(["serve"])
            .arg(&state)
            .args([site.server_ns.as_str(), site.server_ip]);
        check(c);
        Self {
            state,
            server_ip: site.server_ip,
            export: lab.root.clone(),
        }
    }

    /// A fresh sshfs mount of the export (nothing cached), made from the
    /// client's namespace.
    fn mount(&self, client_ns: &str, at: &Path) -> SshfsMount {
        let mut c = Command::new(Path::new(REPO).join("netem/sshfs.sh"));
        c.arg("mount")
            .arg(&self.state)
            .args([client_ns, self.server_ip])
            .arg(&self.export)
            .arg(at);
        check(c);
        SshfsMount(at.to_owned())
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(REPO).join("netem/sshfs.sh"))
            .arg("stop")
            .arg(&self.state)
            .status();
    }
}

/// An sshfs mount point, unmounted on drop.
struct SshfsMount(PathBuf);

impl Drop for SshfsMount {
    fn drop(&mut self) {
        let _ = Command::new(Path::new(REPO).join("netem/sshfs.sh"))
            .arg("umount")
            .arg(&self.0)
            .status();
    }
}

/// Namespaces this bench made; removed (with every process in them) on drop.
enum NetGuard {
    Plain(String),
    Link(String, String),
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        let names = match self {
            Self::Plain(n) => vec![n.clone()],
            Self::Link(a, b) => vec![a.clone(), b.clone()],
        };
        for n in &names {
            kill_ns_pids(n);
        }
        match self {
            Self::Plain(n) => {
                let _ = Command::new("ip")
                    .args(["netns", "del", n])
                    .stderr(Stdio::null())
                    .status();
            }
            Self::Link(a, b) => {
                let _ = Command::new(Path::new(REPO).join("netem/link.sh"))
                    .args(["down", a, b])
                    .status();
            }
        }
    }
}

/// Every process in a namespace this bench created is one it started.
fn kill_ns_pids(name: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

/// A background process in its own process group, killed on drop.
struct Proc {
    child: Child,
    lines: Option<mpsc::Receiver<String>>,
}

impl Proc {
    fn spawn(ns: &str, mut c: Command) -> Self {
        c.stdin(Stdio::null()).process_group(0);
        let mut child = in_ns(ns, || c.spawn()).expect("spawn background process");
        let (tx, rx) = mpsc::channel();
        let pipe: Option<Box<dyn Read + Send>> = match (child.stderr.take(), child.stdout.take()) {
            (Some(e), _) => Some(Box::new(e)),
            (None, Some(o)) => Some(Box::new(o)),
            (None, None) => None,
        };
        if let Some(pipe) = pipe {
            // Keeps draining after the line we wait for, so the process
            // never blocks on a full pipe.
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { return };
                    let _ = tx.send(line);
                }
            });
        }
        Self {
            child,
            lines: Some(rx),
        }
    }

    fn wait_line(&mut self, needle: &str) -> String {
        let rx = self.lines.as_ref().expect("output piped");
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!("waiting for {needle:?}: {e}"),
            }
        }
    }

    fn wait_listening(&mut self) -> u16 {
        let line = self.wait_line("listening on ");
        let addr = line.rsplit("listening on ").next().unwrap_or("").trim();
        let addr: std::net::SocketAddr = addr
            .parse()
            .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
        addr.port()
    }

    fn wait_stdout(&mut self, needle: &str) {
        self.wait_line(needle);
    }

    fn kill(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// Running commands inside a namespace
// ---------------------------------------------------------------------------

/// The network namespace this thread started in.
fn home_ns() -> &'static File {
    static HOME: OnceLock<File> = OnceLock::new();
    HOME.get_or_init(|| File::open("/proc/thread-self/ns/net").expect("open own netns"))
}

/// Runs `f` with this thread in network namespace `name` (children it
/// spawns are born there), and switches back even if `f` panics. Cheaper
/// and quieter than `ip netns exec`, which also remounts /sys.
fn in_ns<T>(name: &str, f: impl FnOnce() -> T) -> T {
    struct Back;
    impl Drop for Back {
        fn drop(&mut self) {
            nix::sched::setns(home_ns(), CloneFlags::CLONE_NEWNET).expect("back to own netns");
        }
    }
    let _ = home_ns();
    let ns = File::open(format!("/run/netns/{name}")).expect("open netns");
    nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
    let _back = Back;
    f()
}

/// Runs `c` to completion in namespace `ns` (stdout discarded) and returns
/// its wall time; a failure stops the bench with its stderr.
fn run_timed(ns: &str, mut c: Command) -> Duration {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = in_ns(ns, || c.output()).expect("spawn");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

/// Like [`run_timed`], also returning stdout.
fn run_output(ns: &str, mut c: Command) -> (Duration, String) {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let out = in_ns(ns, || c.output()).expect("spawn");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (elapsed, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command with a fixed locale.
fn cmd<S: AsRef<std::ffi::OsStr>>(argv: &[S]) -> Command {
    let mut c = Command::new(argv[0].as_ref());
    c.args(&argv[1..]).env("LC_ALL", "C").env("TZ", "UTC");
    for v in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        c.env_remove(v);
    }
    c
}

/// Runs `c` in this namespace and returns stdout; panics on failure.
fn check(mut c: Command) -> Vec<u8> {
    let out = c.output().expect("spawn");
    assert!(
        out.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn ip(args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    check(cmd(&argv));
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The number after `tag` at field `field` of the line starting with it.
fn parse_tagged(out: &str, tag: &str, field: usize) -> Option<f64> {
    out.lines()
        .find(|l| l.starts_with(tag))
        .and_then(|l| l.split_whitespace().nth(field))
        .and_then(|v| v.parse().ok())
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Deterministic pseudo-random bytes (xorshift).
fn write_pattern(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(File::create(path).expect("create"));
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut left = len;
    let mut chunk = Vec::with_capacity(1 << 16);
    while left > 0 {
        chunk.clear();
        while chunk.len() < (1 << 16) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.extend_from_slice(&x.to_le_bytes());
        }
        let n = left.min(chunk.len());
        f.write_all(&chunk[..n]).expect("write");
        left -= n;
    }
    f.flush().expect("flush");
}

// ---------------------------------------------------------------------------
// Side file
// ---------------------------------------------------------------------------

/// Where criterion writes (same rules as criterion: CRITERION_HOME,
/// CARGO_TARGET_DIR/criterion, else the target dir this binary is in).
fn criterion_dir() -> PathBuf {
    if let Some(h) = std::env::var_os("CRITERION_HOME") {
        return h.into();
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    // target/release/deps/e2e-HASH
    std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// Appends one JSON object (one line) to `rscq-extra.jsonl`.
fn extra(json: &str) {
    let dir = criterion_dir();
    let _ = fs::create_dir_all(&dir);
    let mut line = String::new();
    let _ = writeln!(line, "{json}");
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("rscq-extra.jsonl"))
        .expect("open rscq-extra.jsonl");
    f.write_all(line.as_bytes())
        .expect("write rscq-extra.jsonl");
    eprintln!("rscq-extra: {json}");
}
