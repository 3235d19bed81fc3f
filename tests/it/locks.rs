//! Advisory locks on remote files: `flock(1)`, python's `fcntl.lockf` and
//! sqlite3 with concurrent writers, each compared with the same program run
//! directly; and locks that conflict across two rscq runs, with a process
//! on the server itself, and that go away when a client dies.

use std::fs;
use std::time::Duration;

use crate::harness::{Backend, Pair, Running, cmd, each_mode, p, run_timeout, sh_c};

/// flock(1): a held lock makes `-n` fail and `-w 1` time out (a SIGALRM
/// ends the wait), and it is free again after its holder exits.
#[test]
fn flock_conflicts_times_out_and_is_released_at_exit() {
    let script = r#"
set -u
L="$1/lk"
flock "$L" sh -c 'flock -n "$0" true; echo "nonblocking while held: $?"; flock -w 1 "$0" true; echo "wait 1s while held: $?"' "$L"
flock -n "$L" sh -c 'echo "free after the holder exited"'
flock -s "$L" sh -c 'flock -s -n "$0" echo "two shared locks"; flock -x -n "$0" true; echo "exclusive while shared: $?"' "$L"
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let mut argv = sh_c(script);
        argv.extend(["sh".to_string(), pair.t()]);
        let (d, _) = pair.same_writes(&argv, &[]);
        let out = d.out();
        for line in [
            "nonblocking while held: 1",
            "wait 1s while held: 1",
            "free after the holder exited",
            "two shared locks",
            "exclusive while shared: 1",
        ] {
            assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
        }
    });
}

/// python `fcntl.lockf` (POSIX record locks) between two processes of one
/// run: the held lock blocks the other (EAGAIN without waiting), a close of
/// any fd of the file releases it, a signal interrupts a waiting lock, and
/// the holder's exit releases its locks; `F_GETLK` sees no conflict then.
#[test]
fn lockf_between_processes_close_signal_and_exit() {
    let script = r#"
import fcntl, os, signal, struct, sys, time
p = sys.argv[1] + "/data"
fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX, 10, 0)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    fd2 = os.open(p, os.O_RDWR)
    try:
        fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 5)
        print("child: locked a held range")
    except OSError as e:
        print("child: held range busy, errno", e.errno)
    fcntl.lockf(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 10)
    print("child: locked the range after it")
    os.write(w, b"x")
    fcntl.lockf(fd2, fcntl.LOCK_EX, 10, 0)
    print("child: got the range once the parent closed a dup of the file")
    os._exit(0)
os.read(r, 1)
time.sleep(0.3)
# Another fd of the same file: closing it releases the process's locks.
os.close(os.open(p, os.O_RDONLY))
os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    fd3 = os.open(p, os.O_RDWR)
    fcntl.lockf(fd3, fcntl.LOCK_EX)
    os.write(w, b"y")
    time.sleep(1.5)
    os._exit(0)
os.read(r, 1)
def on_alarm(s, f):
    raise TimeoutError("alarm")
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.3)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("parent: locked while the child held it")
except TimeoutError as e:
    print("parent: wait interrupted by the", e)
os.waitpid(pid, 0)
fcntl.lockf(fd, fcntl.LOCK_EX)
print("parent: locked after the child exited")
q = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0)
print("F_GETLK type:", struct.unpack("hhqqi4x", fcntl.fcntl(fd, fcntl.F_GETLK, q))[0])
os.write(fd, b"written under the lock\n")
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let file = pair.env.base.join("lockf.py");
        fs::write(&file, script).expect("write script");
        let (d, _) = pair.same_writes(&["python3".to_string(), p(&file), pair.t()], &[]);
        let out = d.out();
        for line in [
            "child: held range busy, errno 11",
            "child: locked the range after it",
            "child: got the range once the parent closed",
            "parent: wait interrupted by the alarm",
            "parent: locked after the child exited",
            "F_GETLK type: 2",
        ] {
            assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
        }
    });
}

/// sqlite3 in its default rollback-journal mode: a fixed sequence of writes
/// leaves the same database file as a direct run, and 8 concurrent writers
/// with a busy timeout all get their rows in, with the file intact.
#[test]
fn sqlite_journal_mode_and_eight_concurrent_writers() {
    let sequence = r#"
set -eu
D="$1/db.sqlite"
sqlite3 "$D" "create table t(a integer primary key, b text); insert into t values (1, 'one');"
sqlite3 "$D" "begin; insert into t values (2, 'two'); update t set b = 'uno' where a = 1; commit;"
sqlite3 "$D" "select * from t; pragma integrity_check; pragma journal_mode;"
"#;
    let writers = r#"
set -eu
D="$1/many.sqlite"
sqlite3 "$D" "create table t(w integer, i integer);"
for w in 1 2 3 4 5 6 7 8; do
  ( for i in 1 2 3 4 5; do sqlite3 -cmd '.timeout 30000' "$D" "insert into t values ($w, $i);"; done ) &
done
wait
sqlite3 "$D" "select count(*), count(distinct w * 10 + i), sum(w * 10 + i) from t; pragma integrity_check;"
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let mut argv = sh_c(sequence);
        argv.extend(["sh".to_string(), pair.t()]);
        let (d, _) = pair.same_writes(&argv, &[]);
        assert_eq!(d.out(), "1|uno\n2|two\nok\ndelete\n", "{}", d.dump());

        // Rows land in a different order each run: compare what was stored.
        let mut argv = sh_c(writers);
        argv.extend(["sh".to_string(), pair.t()]);
        let direct = pair.direct(&argv).success();
        let remote = pair.rscq(&argv).success();
        assert_eq!(direct.out(), "40|40|1920\nok\n", "{}", direct.dump());
        assert_eq!(remote.out(), direct.out(), "{}", remote.dump());
    });
}

/// Two rscq runs (two clients of one server) and a process on the server
/// itself see each other's locks; a client that dies leaves none behind.
#[test]
fn locks_conflict_across_clients_and_with_the_server_and_die_with_a_client() {
    let pair = Pair::new(Backend::Remote, &[]);
    let (t, on_server) = (pair.t(), p(&pair.remote_tree.join("lk")));

    // A process on the server holds the lock: rscq's program sees it.
    let mut holder = Running::spawn(cmd(&["flock", &on_server, "-c", "echo held; sleep 30"]));
    holder.wait_stdout("held", Duration::from_secs(10));
    let busy = pair.rscq(&["flock", "-n", &format!("{t}/lk"), "-c", "true"]);
    assert_eq!(busy.code(), 1, "{}", busy.dump());
    let lockf = "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ntry:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('locked')\nexcept OSError as e:\n    print('busy', e.errno)\n";
    drop(holder);

    // One rscq run holds the lock: another run, and the server, see it.
    // A short idle timeout, which the server adopts for this connection
    // (QUIC takes the smaller of the two), so the client's death below is
    // noticed in seconds, and a short grace time, for which the server
    // keeps a lost client's session (and its locks) for it to come back.
    let mut first = Running::spawn(pair.rscq_cmd(
        &["--idle-timeout", "5s", "--reconnect-grace", "5s"],
        &sh_c(&format!("exec flock {t}/lk -c 'echo held; sleep 60'")),
    ));
    first.wait_stdout("held", Duration::from_secs(20));
    let second = pair.rscq(&["flock", "-n", &format!("{t}/lk"), "-c", "true"]);
    assert_eq!(second.code(), 1, "{}", second.dump());
    let native = run_timeout(
        cmd(&["flock", "-n", &on_server, "-c", "true"]),
        Duration::from_secs(10),
    );
    assert_eq!(native.code(), 1, "{}", native.dump());
    // A record lock too: lockf on the server meets the run's flock only if
    // the kernel says so (flock and fcntl locks are independent on Linux).
    let script = pair.env.base.join("lockf.py");
    fs::write(&script, lockf).expect("write script");
    let native = run_timeout(
        cmd(&["python3", &p(&script), &on_server]),
        Duration::from_secs(10),
    );
    assert_eq!(native.out(), "locked\n", "{}", native.dump());

    // A record lock held under rscq is seen by a process on the server.
    let hold = pair.env.base.join("hold.py");
    fs::write(
        &hold,
        "import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR)\nfcntl.lockf(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n",
    )
    .expect("write script");
    let mut holding =
        Running::spawn(pair.rscq_cmd(&[], &["python3", &p(&hold), &format!("{t}/lk")]));
    holding.wait_stdout("held", Duration::from_secs(20));
    let native = run_timeout(
        cmd(&["python3", &p(&script), &on_server]),
        Duration::from_secs(10),
    );
    assert_eq!(native.out(), "busy 11\n", "{}", native.dump());
    drop(holding);

    // The client dies (rscq and its program killed at once): the server
    // drops its session, and with it the lock, once the connection timed
    // out and the grace time it kept the session for is over.
    drop(first);
    let after = run_timeout(
        cmd(&["flock", "-w", "40", &on_server, "-c", "echo free"]),
        Duration::from_secs(60),
    );
    assert_eq!(after.out(), "free\n", "{}", after.dump());
}

/// A lock wait whose server dies ends with an error once the idle timeout
/// (short here) has passed: no hang, and rscq says the connection was lost.
#[test]
fn a_lock_wait_ends_when_the_server_dies() {
    let mut pair = Pair::new(Backend::Remote, &[]);
    let (t, on_server) = (pair.t(), p(&pair.remote_tree.join("lk")));
    // A process on the server holds the lock, so the run's flock waits.
    let mut holder = Running::spawn(cmd(&["flock", &on_server, "-c", "echo held; sleep 60"]));
    holder.wait_stdout("held", Duration::from_secs(10));
    let script = format!("echo waiting; flock -w 60 '{t}/lk' -c true; echo \"flock=$?\"");
    // Without connecting again: that is `restart.rs`.
    let flags = ["--idle-timeout", "3s", "--reconnect-grace", "0"];
    let mut waiting = Running::spawn(pair.rscq_cmd(&flags, &sh_c(&script)));
    waiting.wait_stdout("waiting\n", Duration::from_secs(20));
    // Long enough for flock to be asleep in its wait on the server.
    std::thread::sleep(Duration::from_millis(1500));
    let killed_at = std::time::Instant::now();
    pair.server.as_mut().expect("server").kill();
    let r = waiting.finish(Duration::from_secs(60));
    drop(holder);
    assert!(
        killed_at.elapsed() < Duration::from_secs(20),
        "the wait outlived the server by {:?}\n{}",
        killed_at.elapsed(),
        r.dump()
    );
    assert!(
        r.out().starts_with("waiting\nflock=") && !r.out().contains("flock=0"),
        "flock must fail, not get the lock\n{}",
        r.dump()
    );
    assert!(r.err().contains("lost"), "{}", r.dump());
}

/// Holds a record lock and an open file on the remote path `argv[1]`
/// across whatever the test does meanwhile (`held`), until the local file
/// `argv[2]` appears; then writes again through the same fd.
const HOLD_ACROSS: &str = r#"
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)
os.write(fd, b"before;")
print("held", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.1)
os.write(fd, b"after")
os.close(fd)
print("done", flush=True)
"#;

/// The connection is lost (the server paused past a 3 s idle timeout) while
/// the program holds a record lock and an open file: rscq connects again,
/// the server still keeps the session, and rscq takes it up, so the lock
/// stays held throughout (a process on the server cannot take it after
/// the reconnect) and the file goes on at its offset. Before, a new session
/// got the file back by path and the lock was silently gone.
#[test]
fn a_lost_connection_keeps_the_session_its_locks_and_files() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (t, on_server) = (pair.t(), pair.remote_tree.join("lk"));
        let script = pair.env.base.join("hold.py");
        fs::write(&script, HOLD_ACROSS).expect("write script");
        let go = pair.local.join("go");
        let probe = pair.env.base.join("probe.py");
        fs::write(
            &probe,
            "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\ntry:\n    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n    print('locked')\nexcept OSError as e:\n    print('busy', e.errno)\n",
        )
        .expect("write probe");
        let mut holding = Running::spawn(pair.rscq_cmd(
            &["--idle-timeout", "3s"],
            &["python3", &p(&script), &format!("{t}/lk"), &p(&go)],
        ));
        holding.wait_stdout("held\n", Duration::from_secs(20));
        let server = pair.server.as_ref().expect("server");
        server.signal(nix::sys::signal::Signal::SIGSTOP);
        std::thread::sleep(Duration::from_secs(8));
        server.signal(nix::sys::signal::Signal::SIGCONT);
        // Until rscq is connected again and took the session up.
        holding.wait_stderr("connected again", Duration::from_secs(60));
        let native = run_timeout(
            cmd(&["python3", &p(&probe), &p(&on_server)]),
            Duration::from_secs(10),
        );
        fs::write(&go, "").expect("write go");
        let r = holding.finish(Duration::from_secs(60));
        assert_eq!(
            native.out(),
            "busy 11\n",
            "{mode:?}: the lock must still be held after the reconnect\n{}",
            r.dump()
        );
        assert_eq!(r.out(), "held\ndone\n", "{mode:?}\n{}", r.dump());
        assert_eq!(r.code(), 0, "{mode:?}\n{}", r.dump());
        assert!(
            r.err().contains("to the same session"),
            "{mode:?}\n{}",
            r.dump()
        );
        assert_eq!(
            fs::read_to_string(&on_server).expect("read lk"),
            "before;after",
            "{mode:?}"
        );
    });
}
