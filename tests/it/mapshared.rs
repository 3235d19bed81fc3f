//! Shared mappings (`MAP_SHARED`) of remote files, read and write: what a
//! mapping writes reaches the server (compared byte for byte with a direct
//! run), processes of one run that map one file share one memory, reads
//! and writes through fds agree with the mappings, sqlite's WAL mode works
//! with concurrent writers, and a write through a mapping is not lost when
//! the program exits without `msync` or `munmap`.

use std::fs;
use std::os::unix::fs::FileExt as _;
use std::time::Duration;

use crate::harness::{Backend, Pair, Running, cmd, each_mode, p, run, sh_c};

/// Builds the C program `source` into `$T/local/name` (outside the mount,
/// so both runs execute the same local binary).
fn build(pair: &Pair, name: &str, source: &str) -> String {
    crate::harness::build_c(&pair.local, name, source, &[])
}

/// python's `mmap` with `ACCESS_WRITE` on two files (one of them 3 MiB,
/// changed on its first, a middle and its last page), then a read through
/// the fd sees the mapping's bytes, a `pwrite` through the fd is seen in
/// the mapping, and the files on the server are what a direct run leaves.
#[test]
fn python_mmap_shared_write_reaches_the_server() {
    let script = r#"
import mmap, os, sys, hashlib
t = sys.argv[1]
with open(t + "/a.txt", "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[0:5] = b"ALPHA"
    m.flush()
    print("mapped:", bytes(m))
    m.close()
with open(t + "/big.dat", "r+b") as f:
    m = mmap.mmap(f.fileno(), 0)
    m[0:4] = b"HEAD"
    m[1500000:1500011] = b"middle page"
    m[len(m) - 4:] = b"TAIL"
    # Through the fd, without msync: the same bytes.
    print("read:", os.pread(f.fileno(), 4, 0), os.pread(f.fileno(), 11, 1500000))
    os.pwrite(f.fileno(), b"via pwrite", 2000000)
    print("seen in the map:", m[2000000:2000010])
    print("sha:", hashlib.sha256(m).hexdigest())
    m.close()
print("file:", open(t + "/a.txt", "rb").read())
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let argv = ["python3", "-c", script, &pair.t()];
        let (d, r) = pair.same_writes(&argv, &[]);
        assert!(d.out().contains("mapped: b'ALPHA\\n'"), "{}", d.dump());
        assert!(
            d.out()
                .contains("read: b'HEAD' b'middle page'\nseen in the map: b'via pwrite'"),
            "{}",
            d.dump()
        );
        assert!(
            r.stats().get("mmap").copied().unwrap_or(0) >= 2,
            "{}",
            r.dump()
        );
    });
}

/// Two processes (fork, each with its own open and mapping) map one remote
/// file shared and see each other's writes, a `pwrite` through an fd shows
/// in both mappings, `msync` and `munmap` write back; the file is then
/// byte for byte what a direct run leaves.
#[test]
fn two_processes_share_a_mapping_of_a_remote_file() {
    let source = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

/* Waits (at most about 60 s: a hang guard, not a timing check) until the
   string at `at` is `want`. */
static int await_text(const char *at, const char *want) {
    for (int i = 0; i < 60000; i++) {
        if (strcmp(at, want) == 0) return 1;
        usleep(1000);
    }
    fprintf(stderr, "never saw \"%s\" (have \"%.20s\")\n", want, at);
    return 0;
}

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, 8192)) { perror("open"); return 1; }
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    close(fd);
    pid_t c = fork();
    if (c == 0) {
        int fd2 = open(argv[1], O_RDWR);
        char *q = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 0);
        if (q == MAP_FAILED) { perror("child mmap"); _exit(1); }
        strcpy(q + 100, "written by the child");
        if (!await_text(q + 4096, "parent, page two")) _exit(2);
        if (pwrite(fd2, "via pwrite", 11, 300) != 11) { perror("pwrite"); _exit(3); }
        strcpy(q + 200, "the child saw it");
        if (msync(q, 8192, MS_SYNC)) { perror("msync"); _exit(4); }
        if (munmap(q, 8192)) { perror("munmap"); _exit(5); }
        close(fd2);
        _exit(0);
    }
    if (!await_text(p + 100, "written by the child")) return 2;
    strcpy(p + 4096, "parent, page two");
    int st;
    waitpid(c, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "child: %d\n", st); return 3; }
    printf("%s|%s|%s|%s\n", p + 100, p + 200, p + 300, p + 4096);
    /* A read through a new fd sees the mapping's bytes. */
    char buf[17] = {0};
    int fd3 = open(argv[1], O_RDONLY);
    if (pread(fd3, buf, 16, 4096) != 16) { perror("pread"); return 4; }
    printf("read: %s\n", buf);
    close(fd3);
    strcpy(p + 8000, "last words");
    if (munmap(p, 8192)) { perror("munmap"); return 5; }
    return 0;
}
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build(&pair, "shared", source);
        let file = p(&pair.tree.join("shared.bin"));
        let (d, _) = pair.same_writes(&[bin.as_str(), file.as_str()], &[]);
        assert_eq!(
            d.out(),
            "written by the child|the child saw it|via pwrite|parent, page two\nread: parent, page two\n",
            "{}",
            d.dump()
        );
        let server = fs::read(pair.remote_tree.join("shared.bin")).expect("server copy");
        assert_eq!(&server[8000..8010], b"last words");
    });
}

/// sqlite in WAL mode (its `-shm` index is mapped shared by every
/// connection) with 8 concurrent writer processes and a busy timeout:
/// every row is there and the database is intact, in the run and when
/// read on the server afterwards.
#[test]
fn sqlite_wal_mode_with_eight_concurrent_writers() {
    let script = r#"
import os, sqlite3, sys
db = sys.argv[1] + "/wal.sqlite"
c = sqlite3.connect(db, timeout=60)
print("mode:", c.execute("PRAGMA journal_mode=WAL").fetchone()[0])
c.execute("CREATE TABLE t (w INTEGER, i INTEGER, v TEXT)")
c.commit()
c.close()
pids = []
for w in range(8):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            c = sqlite3.connect(db, timeout=60)
            for i in range(20):
                with c:
                    c.execute("INSERT INTO t VALUES (?, ?, ?)", (w, i, "x" * (100 + w)))
                c.execute("SELECT count(*) FROM t").fetchone()
            c.close()
        except Exception as e:
            print("writer", w, "failed:", e, file=sys.stderr)
            code = 1
        os._exit(code)
    pids.append(pid)
failed = sum(os.waitpid(pid, 0)[1] != 0 for pid in pids)
c = sqlite3.connect(db, timeout=60)
print("failed writers:", failed)
print("rows:", c.execute("SELECT count(*), count(DISTINCT w * 100 + i), sum(w * 100 + i) FROM t").fetchone())
print("integrity:", c.execute("PRAGMA integrity_check").fetchone()[0])
print("mode:", c.execute("PRAGMA journal_mode").fetchone()[0])
c.close()
"#;
    let want = "mode: wal\nfailed writers: 0\nrows: (160, 160, 57520)\nintegrity: ok\nmode: wal\n";
    let check = "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nprint(c.execute('SELECT count(*) FROM t').fetchone()[0], c.execute('PRAGMA integrity_check').fetchone()[0])\n";
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let argv = ["python3", "-c", script, &pair.t()];
        let direct = pair.direct(&argv).success();
        assert_eq!(direct.out(), want, "{}", direct.dump());
        let remote = pair.rscq(&argv).success();
        assert_eq!(remote.out(), want, "{}", remote.dump());
        // The server's copy, read there without rscq.
        let on_server = p(&pair.remote_tree.join("wal.sqlite"));
        let read = run(cmd(&["python3", "-c", check, &on_server])).success();
        assert_eq!(read.out(), "160 ok\n", "{}", read.dump());
    });
}

/// A write through a shared mapping whose fd was closed, by a program that
/// then exits at once (no `msync`, no `munmap`), is on the server after
/// the run, as on a local file; so is one by a process that is killed.
#[test]
fn a_mapping_write_is_not_lost_without_msync_or_munmap() {
    let source = r#"
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) return 1;
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return 2;
    close(fd);
    memcpy(p + 1, argv[2], strlen(argv[2]));
    if (argc > 3) kill(getpid(), SIGKILL);
    _exit(0);
}
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build(&pair, "noflush", source);
        let (a, b) = (p(&pair.tree.join("a.txt")), p(&pair.tree.join("b.bin")));
        let script = format!("{bin} {a} LPH && {bin} {b} 'killed, kept' kill; echo $?");
        let (d, _) = pair.same_writes(&sh_c(&script), &[]);
        assert_eq!(d.out(), "137\n", "{}", d.dump());
        let server = fs::read(pair.remote_tree.join("a.txt")).expect("server copy");
        assert_eq!(server, b"aLPHa\n");
    });
}

/// `msync`, `munmap` and `fsync` each write what the mapping changed back
/// at once, while the program still holds the file open: the program
/// reads the server's copy (the export, outside the mount: a local path
/// its reads reach directly) right after each. The direct run reads its
/// own file instead. A mapping past the file's end gets the pages an
/// `ftruncate` through the fd adds.
#[test]
fn msync_munmap_and_fsync_write_back_at_once() {
    let source = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

/* What the server holds at `off` (the export path in an rscq run). */
static void show(const char *what, const char *path, off_t off, size_t n) {
    char buf[32] = {0};
    int fd = open(path, O_RDONLY);
    if (fd < 0 || pread(fd, buf, n, off) != (ssize_t)n) { perror(what); return; }
    close(fd);
    printf("%s: %s\n", what, buf);
}

int main(int argc, char **argv) {
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { perror("open"); return 1; }
    char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    memcpy(p + 10, "synced", 6);
    if (msync(p, 4096, MS_SYNC)) { perror("msync"); return 1; }
    show("after msync", argv[2], 10, 6);
    memcpy(p + 5000, "unmapped", 8);
    if (munmap(p, 8192)) { perror("munmap"); return 1; }
    show("after munmap", argv[2], 5000, 8);
    p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
    if (p == MAP_FAILED) { perror("mmap 2"); return 1; }
    memcpy(p + 100, "fsynced", 7);
    if (fsync(fd)) { perror("fsync"); return 1; }
    show("after fsync", argv[2], 4196, 7);
    /* A mapping past the end, then the file grows through the fd: the
       new pages are there (no SIGBUS), and a write to them is kept. */
    char *q = mmap(NULL, 200000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (q == MAP_FAILED) { perror("mmap 3"); return 1; }
    if (ftruncate(fd, 200000)) { perror("ftruncate"); return 1; }
    memcpy(q + 150000, "grown", 5);
    if (munmap(q, 200000)) { perror("munmap 3"); return 1; }
    show("after growth", argv[2], 150000, 5);
    close(fd);
    return 0;
}
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build(&pair, "writeback", source);
        let file = p(&pair.tree.join("b.bin"));
        let on_server = p(&pair.remote_tree.join("b.bin"));
        let direct = pair.direct(&[&bin, &file, &file]).success();
        let want = "after msync: synced\nafter munmap: unmapped\nafter fsync: fsynced\nafter growth: grown\n";
        assert_eq!(direct.out(), want, "{}", direct.dump());
        let remote = pair.rscq(&[&bin, &file, &on_server]).success();
        assert_eq!(remote.out(), want, "{}", remote.dump());
        assert_eq!(
            fs::read(pair.tree.join("b.bin")).expect("direct file"),
            fs::read(pair.remote_tree.join("b.bin")).expect("server file")
        );
    });
}

/// A file truncated under its mappings, shared and private, by `ftruncate`
/// of another fd, `truncate` and an `open` with `O_TRUNC` (and by another
/// process of the run): a page past the new end raises SIGBUS, as locally,
/// rather than reading the old bytes or zeros. A private mapping's page
/// the program changed stays its own, a page it did not change shows a
/// `pwrite` through an fd. Output and files compared with a direct run.
#[test]
fn a_file_truncated_under_a_mapping_raises_sigbus_as_locally() {
    let source = r#"
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/wait.h>

static sigjmp_buf env;
static void on_bus(int sig) { siglongjmp(env, sig); }

static void touch(const char *what, volatile char *at) {
    int sig = sigsetjmp(env, 1);
    if (sig == 0)
        printf("%s: read %d\n", what, *at);
    else
        printf("%s: %s\n", what, sig == SIGBUS ? "SIGBUS" : "another signal");
}

static void shrink(const char *path, const char *how) {
    if (!strcmp(how, "ftruncate")) {
        int other = open(path, O_RDWR);
        if (other < 0 || ftruncate(other, 0)) { perror("ftruncate"); exit(1); }
        close(other);
    } else if (!strcmp(how, "truncate")) {
        if (truncate(path, 0)) { perror("truncate"); exit(1); }
    } else if (!strcmp(how, "O_TRUNC")) {
        int other = open(path, O_WRONLY | O_TRUNC);
        if (other < 0) { perror("open O_TRUNC"); exit(1); }
        close(other);
    } else {
        /* Another process of the run. */
        pid_t c = fork();
        if (c == 0) { _exit(truncate(path, 4096) ? 1 : 0); }
        int st;
        waitpid(c, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) { fprintf(stderr, "child: %d\n", st); exit(1); }
    }
}

int main(int argc, char **argv) {
    char path[4096], buf[8192];
    snprintf(path, sizeof path, "%s/trunc.dat", argv[1]);
    struct sigaction sa = {0};
    sa.sa_handler = on_bus;
    sigaction(SIGBUS, &sa, NULL);
    const char *hows[] = {"ftruncate", "truncate", "O_TRUNC", "a child's truncate"};
    for (int i = 0; i < 4; i++) {
        for (int shared = 0; shared < 2; shared++) {
            memset(buf, 'a' + i, sizeof buf);
            int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
            if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("setup"); return 1; }
            char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, shared ? MAP_SHARED : MAP_PRIVATE, fd, 0);
            if (m == MAP_FAILED) { perror("mmap"); return 1; }
            printf("%s, %s: before %c %c\n", hows[i], shared ? "shared" : "private", m[0], m[4096]);
            shrink(path, hows[i]);
            touch("  page 2", m + 4096);
            touch("  page 1", m);
            munmap(m, 8192);
            close(fd);
        }
    }
    /* A private mapping: a changed page is the program's, an unchanged one
       is the file's. */
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    memset(buf, 'p', sizeof buf);
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror("setup"); return 1; }
    char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { perror("mmap"); return 1; }
    m[0] = 'M';
    if (pwrite(fd, "WW", 2, 1) != 2 || pwrite(fd, "NEW", 3, 4096) != 3) { perror("pwrite"); return 1; }
    printf("private after pwrite: %.3s %.3s\n", m, m + 4096);
    munmap(m, 8192);
    close(fd);
    return 0;
}
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build(&pair, "truncated", source);
        let (d, _) = pair.same_writes(&[bin.as_str(), &pair.t()], &[]);
        let out = d.out();
        for line in [
            "ftruncate, private: before a a\n  page 2: SIGBUS\n  page 1: SIGBUS\n",
            "truncate, shared: before b b\n  page 2: SIGBUS\n",
            "O_TRUNC, private: before c c\n  page 2: SIGBUS\n",
            "a child's truncate, private: before d d\n  page 2: SIGBUS\n  page 1: read 100\n",
            "private after pwrite: Mpp NEW\n",
        ] {
            assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
        }
    });
}

/// A file changed on the server while a run maps it (as the server's own
/// processes would: the test writes the export in place): close-to-open,
/// as NFS, and no hang. The run's mappings, shared and private, keep what
/// they pulled until the run maps the file again, which brings the
/// server's bytes into every mapping's pages (a private page the program
/// changed stays its own); a truncation on the server does not reach them
/// (no SIGBUS) until then.
#[test]
fn a_file_changed_on_the_server_while_mapped_is_close_to_open() {
    let script = r#"
import mmap, os, sys, time
p, flag = sys.argv[1], sys.argv[2]
def wait(n):
    # A hang guard, not a timing check.
    for _ in range(1200):
        if os.path.exists(flag + n):
            return
        time.sleep(0.05)
    sys.exit("no flag " + n)
f = open(p, "rb")
shared = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
private = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
private[8:10] = b"!!"
print("mapped:", shared[:5], private[:5], flush=True)
wait("1")
print("after the server's write:", shared[:5], private[:5], flush=True)
again = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
print("mapped again:", again[:5], shared[:5], private[:5], private[8:10], flush=True)
wait("2")
print("size:", os.fstat(f.fileno()).st_size)
print("after the server's truncate:", shared[:5], private[4096:4101], flush=True)
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let file = pair.remote_tree.join("changing.dat");
        let mut bytes = b"first".to_vec();
        bytes.resize(8192, b'.');
        fs::write(&file, &bytes).expect("write file");
        let flag = p(&pair.local.join("flag"));
        let path = format!("{}/changing.dat", pair.t());
        let argv = ["python3", "-c", script, path.as_str(), flag.as_str()];
        let mut run = Running::spawn(pair.rscq_cmd(&[], &argv));
        let wait = Duration::from_secs(30);
        run.wait_stdout("mapped: b'first' b'first'\n", wait);
        let server = fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .expect("open on the server");
        server
            .write_all_at(b"NEWER", 0)
            .expect("write on the server");
        fs::write(format!("{flag}1"), "").expect("flag");
        run.wait_stdout("mapped again:", wait);
        server.set_len(0).expect("truncate on the server");
        fs::write(format!("{flag}2"), "").expect("flag");
        // The whole output once the program ended: a line seen only in
        // part must not fail the check.
        let done = run.finish(wait);
        assert_eq!(done.code(), 0, "{}", done.dump());
        let out = done.out();
        for line in [
            "after the server's write: b'first' b'first'\n",
            "mapped again: b'NEWER' b'NEWER' b'first' b'!!'\n",
            "size: 0\n",
            "after the server's truncate: b'NEWER' b'.....'\n",
        ] {
            assert!(out.contains(line), "rscq's run lacks {line:?}:\n{out}");
        }
    });
}
