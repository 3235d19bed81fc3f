//! Processes under rscq: forks, threads, exit codes and deaths by signal.

use std::fs;

use crate::harness::{Backend, Pair, each_mode, sh_c};

/// sh spawns several children at once; each writes its own remote file and
/// reads a shared one. The parent waits, then prints them in order.
#[test]
fn sh_forks_children() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let script = format!(
            "for i in 1 2 3 4 5 6 7 8; do (seq $i 400 > '{t}/sub/child'$i.txt; cat '{t}/a.txt' >> '{t}/sub/child'$i.txt; sha256sum < '{t}/big.dat' > '{t}/sub/sum'$i) & done; wait; \
             for i in 1 2 3 4 5 6 7 8; do tail -n 1 '{t}/sub/child'$i.txt; cat '{t}/sub/sum'$i; done; ls '{t}/sub' | wc -l"
        );
        let (_, r) = pair.same_writes(&sh_c(&script), &[]);
        assert_eq!(r.out().matches("alpha").count(), 8, "{}", r.dump());
        assert!(pair.remote_tree.join("sub/child8.txt").is_file());
    });
}

/// Python os.fork: children write their own files (one also renames), the
/// parent reaps them and reports their exit codes and contents.
#[test]
fn python_fork() {
    let script = r#"
import os, sys
top = sys.argv[1]
pids = []
for i in range(5):
    pid = os.fork()
    if pid == 0:
        path = os.path.join(top, "sub", "fork%d.tmp" % i)
        with open(path, "w") as fh:
            fh.write(("child %d\n" % i) * (1000 * (i + 1)))
        os.rename(path, os.path.join(top, "sub", "fork%d.txt" % i))
        with open(os.path.join(top, "b.bin"), "rb") as fh:
            n = len(fh.read())
        os._exit(10 + i if n == 100 * 1024 else 99)
    pids.append(pid)
for i, pid in enumerate(pids):
    _, status = os.waitpid(pid, 0)
    print(i, os.waitstatus_to_exitcode(status))
for i in range(5):
    with open(os.path.join(top, "sub", "fork%d.txt" % i)) as fh:
        data = fh.read()
    print(i, len(data), data.splitlines()[0])
print(sorted(os.listdir(os.path.join(top, "sub"))))
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (_, r) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        assert!(r.out().starts_with("0 10\n1 11\n"), "{}", r.dump());
    });
}

/// Python threads, each reading and writing its own remote files at the
/// same time as the others.
#[test]
fn python_threads() {
    let script = r#"
import hashlib, os, sys, threading
top = sys.argv[1]
results = {}
def work(n):
    path = os.path.join(top, "sub", "thread%d.txt" % n)
    h = hashlib.sha256()
    for round in range(5):
        with open(path, "a") as fh:
            for k in range(200):
                fh.write("thread %d round %d line %d\n" % (n, round, k))
        with open(path) as fh:
            h.update(fh.read().encode())
        with open(os.path.join(top, "big.dat"), "rb") as fh:
            fh.seek(n * 4096)
            h.update(fh.read(65536))
        os.stat(os.path.join(top, "sub", "c.txt"))
    os.rename(path, path + ".done")
    results[n] = (os.path.getsize(path + ".done"), h.hexdigest())
threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for n in sorted(results):
    print(n, *results[n])
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (_, r) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        assert_eq!(r.out().lines().count(), 8, "{}", r.dump());
        assert!(pair.remote_tree.join("sub/thread7.txt.done").is_file());
    });
}

#[test]
fn exit_codes_propagate() {
    let pair = Pair::new(Backend::Remote, &[]);
    let t = pair.t();
    for (script, want) in [
        (format!("cat '{t}/a.txt' && exit 7"), 7),
        (format!("cat '{t}/a.txt' && exit 3"), 3),
        (format!("cat '{t}/missing'"), 1),
        (format!("cat '{t}/a.txt' && exit 0"), 0),
        (format!("cat '{t}/a.txt' && exit 255"), 255),
        // The last of several children decides nothing; the parent does.
        (format!("(cat '{t}/a.txt'; exit 4) & wait $!; exit $?"), 4),
    ] {
        let (d, r) = pair.same(&sh_c(&script));
        assert_eq!(d.code(), want, "{}", d.dump());
        assert_eq!(r.code(), want, "{}", r.dump());
    }
    // Commands that never touch the mount still run and exit normally.
    let r = pair.rscq(&sh_c("exit 7"));
    assert_eq!(r.code(), 7, "{}", r.dump());
}

#[test]
fn signal_death_is_128_plus_n() {
    let pair = Pair::new(Backend::Remote, &[]);
    let t = pair.t();
    for (script, want) in [
        ("kill -TERM $$".to_string(), 143),
        (format!("cat '{t}/a.txt'; kill -KILL $$"), 137),
        (format!("cat '{t}/a.txt'; kill -INT $$"), 130),
        (format!("cat '{t}/a.txt'; kill -SEGV $$"), 139),
    ] {
        // A shell started with SIGINT ignored (as a background job's child
        // is) cannot undo that: both runs start with the default action.
        let argv = ["env", "--default-signal=INT", "sh", "-c", script.as_str()];
        let d = pair.direct(&argv);
        let r = pair.rscq(&argv);
        assert_eq!(d.code(), want, "{}", d.dump());
        assert_eq!(r.code(), want, "{}", r.dump());
        // rscq itself exits normally with the code, rather than dying.
        assert_eq!(r.status.code(), Some(want), "{}", r.dump());
        assert_eq!(d.stdout, r.stdout);
    }
    let r = pair.rscq(&sh_c("kill -TERM $$"));
    assert_eq!(r.code(), 143, "{}", r.dump());
}

/// A background child keeps running after the traced shell is gone; rscq
/// must wait for its remote writes to finish.
#[test]
fn orphaned_child_finishes() {
    let pair = Pair::new(Backend::Remote, &[]);
    let t = pair.t();
    let script = format!("(sleep 0.3; echo late > '{t}/late.txt') & echo started");
    let r = pair.rscq(&sh_c(&script)).success();
    assert_eq!(r.out(), "started\n");
    // Whether rscq waits for it or not, the write lands remotely only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pair.remote_tree.join("late.txt").exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        fs::read(pair.remote_tree.join("late.txt")).ok().as_deref(),
        Some(&b"late\n"[..]),
        "{}",
        r.dump()
    );
    assert!(!pair.tree.join("late.txt").exists());
}
