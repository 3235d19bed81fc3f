//! Write-behind for remote files: sequential writes are answered at once
//! and reach the server in few large `pwrite`s, byte for byte what a
//! direct run writes; a write error the server reports later still reaches
//! the program, with the server's errno, by its `fsync` or `close`.

use std::fs;

use crate::harness::{
    Backend, Env, Output, Pair, cmd, each_mode, have_root, p, pattern, run, sh_c,
};

/// Write calls that needed the network, and writes rscq answered itself.
fn write_trips(out: &Output) -> (u64, u64, u64) {
    let err = out.err();
    let local = err
        .lines()
        .filter_map(|l| l.strip_prefix("rscq: "))
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("write")).then(|| {
                let _calls = f.next();
                f.next().and_then(|n| n.parse().ok()).unwrap_or(0)
            })
        })
        .unwrap_or(0);
    let stats = out.stats();
    (
        stats.get("write").copied().unwrap_or(0),
        local,
        stats.get("write-behind").copied().unwrap_or(0),
    )
}

#[test]
fn dd_cp_tar_onto_the_mount_write_the_same_bytes() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (t, l) = (pair.t(), p(&pair.local));
        let data = pattern(3_000_000, 77);
        fs::write(pair.local.join("src.bin"), &data).unwrap();
        // 512-byte writes: 5860 write calls.
        let (_, dd) = pair.same_writes(
            &[
                "dd",
                &format!("if={l}/src.bin"),
                &format!("of={t}/dd.bin"),
                "bs=512",
                "status=none",
            ],
            &[],
        );
        assert_eq!(fs::read(pair.remote_tree.join("dd.bin")).unwrap(), data);
        let (trips, local, behind) = write_trips(&dd);
        eprintln!(
            "dd bs=512 ({}): write round trips {trips}, answered locally {local}, write-behind pwrites {behind}",
            if mode.is_empty() { "default" } else { "--pure" }
        );
        if mode.is_empty() {
            // Flushes go by size (1 MiB) and at the close: deterministic.
            assert_eq!((trips, local), (0, 5860), "{}", dd.dump());
            assert!(behind <= 4, "{behind} pwrites for 3 MB\n{}", dd.dump());
        } else {
            assert_eq!((trips, local, behind), (5860, 0, 0), "{}", dd.dump());
        }

        pair.same_writes(
            &["cp", &format!("{l}/src.bin"), &format!("{t}/cp.bin")],
            &[],
        );
        assert_eq!(fs::read(pair.remote_tree.join("cp.bin")).unwrap(), data);

        // An archive of many small and a few large files, extracted onto
        // the mount into a fresh directory.
        let src = pair.env.base.join("tarsrc");
        fs::create_dir_all(src.join("d/e")).unwrap();
        for i in 0..40u32 {
            let len = usize::try_from(i * 997 % 5000).unwrap();
            fs::write(src.join(format!("d/small{i}.txt")), pattern(len, i)).unwrap();
        }
        fs::write(src.join("d/e/big1.bin"), pattern(2_500_000, 5)).unwrap();
        fs::write(src.join("d/e/big2.bin"), pattern(1_048_577, 6)).unwrap();
        let archive = pair.local.join("in.tar");
        run(cmd(&["tar", "cf", &p(&archive), "-C", &p(&src), "."])).success();
        fs::create_dir(pair.tree.join("x")).unwrap();
        fs::create_dir(pair.remote_tree.join("x")).unwrap();
        pair.same_writes(&["tar", "xf", &p(&archive), "-C", &format!("{t}/x")], &[]);
        // And python's small writes with seeks back over them.
        let script = format!(
            "import os\n\
             fd = os.open('{t}/py.bin', os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)\n\
             for i in range(3000):\n\
             \x20   os.write(fd, bytes([i % 256]) * 100)\n\
             os.lseek(fd, 150, os.SEEK_SET)\n\
             os.write(fd, b'patched')\n\
             os.pwrite(fd, b'PW', 299990)\n\
             os.lseek(fd, 0, os.SEEK_SET)\n\
             print(len(os.read(fd, 1 << 20)), os.read(fd, 10), os.fstat(fd).st_size)\n\
             os.close(fd)\n\
             print(os.stat('{t}/py.bin').st_size)\n"
        );
        let (_, py) = pair.same_writes(&["python3", "-c", &script], &[]);
        assert_eq!(py.out(), "300000 b'' 300000\n300000\n", "{}", py.dump());
    });
}

#[test]
fn a_file_read_back_through_another_fd_sees_the_writes() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        // Written through one fd, read through a second one and by `cat`
        // before the first fd is closed.
        pair.same_writes(
            &sh_c(&format!(
                "exec 3>'{t}/w.txt'; for i in 1 2 3 4 5; do echo line$i >&3; done; \
                 cat '{t}/w.txt'; wc -c < '{t}/w.txt'; exec 3>&-; cat '{t}/w.txt' | tail -n 1"
            )),
            &[],
        );
    });
}

/// An rscq-server whose export is a 64 KiB tmpfs, and the same tmpfs for a
/// direct run; both in private mount namespaces.
struct Tiny {
    env: Env,
    server: crate::harness::Server,
    root: std::path::PathBuf,
}

impl Tiny {
    fn new() -> Self {
        let env = Env::new();
        let root = env.base.join("tiny");
        fs::create_dir(&root).unwrap();
        let mut spec = env.spec(&root);
        spec.tmpfs_root = Some("64k".into());
        let server = crate::harness::Server::start(spec);
        Self { env, server, root }
    }

    /// `script` run by `sh -c` under rscq, with `$M` the mount point.
    fn rscq(&self, script: &str) -> Output {
        let mount = format!("{}=/", p(&self.root));
        let c = self.env.rscq(
            Some(&self.server),
            &[
                "--mount",
                &mount,
                "--",
                "env",
                &format!("M={}", p(&self.root)),
                "sh",
                "-c",
                script,
            ],
        );
        run(c)
    }

    /// `script` run directly with `$M` a fresh 64 KiB tmpfs.
    fn direct(&self, script: &str) -> Output {
        let dir = self.env.base.join("direct");
        let _ = fs::create_dir(&dir);
        run(cmd(&[
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k rscq-tiny \"$0\" && M=\"$0\" exec sh -c \"$1\"",
            &p(&dir),
            script,
        ]))
    }
}

const PY_ENOSPC: &str = r#"
import errno, os, sys
fd = os.open(os.environ["M"] + "/py.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
where = "write"
try:
    for i in range(100):
        os.write(fd, b"x" * 4096)
    where = "fsync"
    os.fsync(fd)
    where = "close"
    os.close(fd)
    print("no error")
except OSError as e:
    print(where, errno.errorcode[e.errno])
"#;

#[test]
fn a_write_error_reaches_the_program_with_the_server_errno() {
    if !have_root("a_write_error_reaches_the_program_with_the_server_errno") {
        return;
    }
    let tiny = Tiny::new();
    let dd = "dd if=/dev/zero of=\"$M/dd.bin\" bs=512 count=1000 status=none; echo status=$?; \
              stat -c %s \"$M/dd.bin\"";
    let direct = tiny.direct(dd);
    let under = tiny.rscq(dd);
    for out in [&direct, &under] {
        assert!(
            out.out().starts_with("status=1\n"),
            "dd must fail\n{}",
            out.dump()
        );
        assert!(
            out.err().contains("No space left on device"),
            "dd must say ENOSPC\n{}",
            out.dump()
        );
    }
    // The file holds what fitted, exactly as directly.
    assert_eq!(
        under.out(),
        direct.out(),
        "{}\n{}",
        direct.dump(),
        under.dump()
    );
    // The program itself sees ENOSPC: at a write directly, at a later
    // write, the fsync or the close under rscq (write-behind).
    let py = format!(
        "rm -f \"$M\"/*; python3 -c '{}'",
        PY_ENOSPC.replace('\'', "\"")
    );
    let direct = tiny.direct(&py);
    assert_eq!(direct.out(), "write ENOSPC\n", "{}", direct.dump());
    // 400 KiB stay below the 1 MiB flush size: the writes are all held,
    // so the error comes deterministically at the fsync...
    let under = tiny.rscq(&py);
    assert_eq!(under.out(), "fsync ENOSPC\n", "{}", under.dump());
    // ... or, without one, at the close.
    let no_fsync = py.replace("os.fsync(fd)", "pass");
    let direct = tiny.direct(&no_fsync);
    assert_eq!(direct.out(), "write ENOSPC\n", "{}", direct.dump());
    let under = tiny.rscq(&no_fsync);
    assert_eq!(under.out(), "close ENOSPC\n", "{}", under.dump());
    // A program that never learns of the error (its fd is closed by exit)
    // makes rscq say so and fail.
    let quiet = "rm -f \"$M\"/*; exec python3 -c 'import os; os.write(os.open(os.environ[\"M\"] + \"/q\", os.O_WRONLY | os.O_CREAT), b\"y\" * 200000)'";
    let under = tiny.rscq(quiet);
    assert_eq!(under.code(), 1, "{}", under.dump());
    assert!(
        under.err().contains("No space left on device") && under.err().contains("data is lost"),
        "{}",
        under.dump()
    );
}

/// `O_APPEND` writes are written behind too: two fds appending in turn to
/// one file land in program order, `lseek(SEEK_END)`, `fstat` and a read
/// through another fd see every append, and a single appender's lines go
/// in few calls.
#[test]
fn appends_are_written_behind_in_order_and_seen_by_seek_and_fstat() {
    let script = r#"
import os, sys
t = sys.argv[1]
a = os.open(t + "/log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
b = os.open(t + "/log", os.O_RDWR | os.O_APPEND)
seen = []
for i in range(300):
    fd = b if i % 3 == 0 else a
    os.write(fd, b"line %d\n" % i)
    if i % 100 == 99:
        seen.append((os.lseek(fd, 0, os.SEEK_END), os.fstat(a).st_size, os.lseek(b, 0, os.SEEK_CUR)))
print(seen)
os.lseek(b, 0, os.SEEK_SET)
print(os.read(b, 20))
os.pwrite(b, b"pwrite appends too\n", 0)
with open(t + "/log", "rb") as r:
    print(r.read().count(b"\n"))
os.close(a)
os.close(b)
one = os.open(t + "/one", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
for i in range(2000):
    os.write(one, b"%d\n" % i)
os.close(one)
print(os.stat(t + "/one").st_size)
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (d, r) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        assert!(
            d.out()
                == "[(790, 790, 790), (1690, 1690, 1681), (2590, 2590, 2572)]\n\
                    b'line 0\\nline 1\\nline 2'\n301\n8890\n",
            "{}",
            d.dump()
        );
        let (trips, local, behind) = write_trips(&r);
        if mode.is_empty() {
            // 2000 appends through one fd, closed once: one `write`.
            assert_eq!(trips, 0, "{}", r.dump());
            assert!(local >= 2300, "{}", r.dump());
            assert!(behind <= 300 + 2, "{}", r.dump());
        } else {
            assert_eq!((local, behind), (0, 0), "{}", r.dump());
        }
    });
}

/// Processes of one run append to one file at once, through their own fds
/// and through one they share: no line is lost, torn or out of its
/// writer's order.
#[test]
fn processes_of_one_run_append_to_one_file_together() {
    let script = r#"
import os, sys
t = sys.argv[1]
path = t + "/shared.log"
shared = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
pids = []
for w in range(4):
    pid = os.fork()
    if pid == 0:
        fd = shared if w % 2 else os.open(path, os.O_WRONLY | os.O_APPEND)
        for i in range(400):
            os.write(fd, b"w%d %d\n" % (w, i))
        os._exit(0)
    pids.append(pid)
for pid in pids:
    os.waitpid(pid, 0)
print("size:", os.fstat(shared).st_size)
os.close(shared)
lines = open(path, "rb").read().split(b"\n")[:-1]
print("lines:", len(lines))
order = {}
for line in lines:
    w, i = line.split(b" ")
    if order.get(w, -1) + 1 != int(i):
        print("out of order:", line)
    order[w] = int(i)
print("writers:", sorted(order.items()))
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let argv = ["python3", "-c", script, &pair.t()];
        let direct = pair.direct(&argv).success();
        let remote = pair.rscq(&argv).success();
        crate::harness::compare_outputs(&direct, &remote, false);
        assert_eq!(
            direct.out(),
            "size: 10760\nlines: 1600\nwriters: [(b'w0', 399), (b'w1', 399), (b'w2', 399), (b'w3', 399)]\n",
            "{}",
            direct.dump()
        );
    });
}
