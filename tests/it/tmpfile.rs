//! `O_TMPFILE` in a remote directory: the unnamed file takes writes, is
//! given a name by `linkat` in both the forms programs use (an fd with
//! `AT_EMPTY_PATH`, and `/proc/self/fd/N` with `AT_SYMLINK_FOLLOW`, glibc's
//! and python's), and vanishes at close when never named; compared with
//! the same program run directly. A name across the mount's edge is EXDEV,
//! as across file systems. `/proc/self/fd/N` of a remote file (unnamed or
//! renamed) is that open file for `stat`, `chmod` and `open`.

use std::fs;

use crate::harness::{Backend, Pair, each_mode, p, run};

/// Builds the C program `source` into `$T/local/name` (outside the mount,
/// so both runs execute the same local binary).
fn build(pair: &Pair, name: &str, source: &str) -> String {
    crate::harness::build_c(&pair.local, name, source, &[])
}

/// Each step prints its result; the files it names must be on the server
/// with their bytes and modes, and the one never named must be gone.
const LINK_TMPFILE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *result(int r) { return r ? strerror(errno) : "ok"; }

static void show(const char *what, int fd) {
    struct stat st;
    if (fstat(fd, &st)) { printf("%s: fstat %s\n", what, strerror(errno)); return; }
    printf("%s: nlink %ld size %ld mode %o\n", what, (long)st.st_nlink, (long)st.st_size,
           st.st_mode & 07777);
}

int main(int argc, char **argv) {
    const char *dir = argv[1];
    char name[4096], proc[64];

    int fd = open(dir, O_TMPFILE | O_RDWR, 0640);
    if (fd < 0) { printf("open: %s\n", strerror(errno)); return 1; }
    printf("write: %zd\n", write(fd, "named by AT_EMPTY_PATH\n", 23));
    show("unnamed", fd);
    snprintf(name, sizeof name, "%s/by-empty-path", dir);
    printf("linkat AT_EMPTY_PATH: %s\n", result(linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH)));
    show("named", fd);
    printf("again: %s\n", result(linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH)));
    /* Written after the name was given: the name sees it. */
    printf("pwrite: %zd\n", pwrite(fd, "NAMED", 5, 0));
    close(fd);

    fd = open(dir, O_TMPFILE | O_WRONLY, 0600);
    printf("write: %zd\n", write(fd, "named through /proc/self/fd\n", 28));
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    snprintf(name, sizeof name, "%s/by-proc-link", dir);
    printf("linkat /proc/self/fd: %s\n",
           result(linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW)));
    close(fd);

    fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    printf("write: %zd\n", write(fd, "never named\n", 12));
    close(fd);

    fd = open(dir, O_TMPFILE | O_RDWR | O_EXCL, 0600);
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    snprintf(name, sizeof name, "%s/excl", dir);
    printf("linkat O_EXCL: %s\n", result(linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH)));
    printf("linkat O_EXCL /proc: %s\n",
           result(linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW)));
    close(fd);

    snprintf(name, sizeof name, "%s/missing/x", dir);
    fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    printf("linkat into a missing dir: %s\n",
           result(linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH)));
    close(fd);
    return 0;
}
"#;

#[test]
fn o_tmpfile_is_named_by_linkat_in_both_forms_and_vanishes_unnamed() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build(&pair, "link_tmpfile", LINK_TMPFILE);
        let dir = pair.t();
        let (d, r) = pair.same_writes(&[bin.as_str(), dir.as_str()], &[]);
        assert_eq!(
            d.out(),
            "write: 23\n\
             unnamed: nlink 0 size 23 mode 640\n\
             linkat AT_EMPTY_PATH: ok\n\
             named: nlink 1 size 23 mode 640\n\
             again: File exists\n\
             pwrite: 5\n\
             write: 28\n\
             linkat /proc/self/fd: ok\n\
             write: 12\n\
             linkat O_EXCL: No such file or directory\n\
             linkat O_EXCL /proc: No such file or directory\n\
             linkat into a missing dir: No such file or directory\n",
            "{}",
            d.dump()
        );
        let named = fs::read(pair.remote_tree.join("by-empty-path")).expect("named file");
        assert_eq!(named, b"NAMED by AT_EMPTY_PATH\n");
        assert!(
            r.stats().get("linkat").copied().unwrap_or(0) >= 2,
            "{}",
            r.dump()
        );
    });
}

/// python's `os.open(dir, O_TMPFILE)` and `os.link` of its
/// `/proc/self/fd/N`: plain `link(2)` never follows that link (EXDEV,
/// procfs to the disk), `linkat` with `AT_SYMLINK_FOLLOW` names the file.
#[test]
fn python_publishes_a_tmpfile_with_os_link() {
    let script = r#"
import os, sys
d = sys.argv[1]
fd = os.open(d, os.O_TMPFILE | os.O_WRONLY, 0o644)
os.write(fd, b"complete before it has a name\n" * 1000)
print("listed before:", "published" in os.listdir(d))
try:
    os.link(f"/proc/self/fd/{fd}", d + "/published")
except OSError as e:
    print("link(2):", e.strerror)
root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
os.link(f"/proc/self/fd/{fd}", d + "/published", src_dir_fd=root, follow_symlinks=True)
os.close(fd)
print("listed after:", "published" in os.listdir(d))
print("size:", os.stat(d + "/published").st_size)
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (d, _) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        assert_eq!(
            d.out(),
            "listed before: False\n\
             link(2): Invalid cross-device link\n\
             listed after: True\n\
             size: 30000\n",
            "{}",
            d.dump()
        );
    });
}

/// A remote `O_TMPFILE` file linked into a local directory, and a local one
/// into the mount: EXDEV, as between two file systems (the direct run has
/// both on one, so only rscq's run is looked at).
#[test]
fn linking_across_the_mount_edge_is_exdev() {
    let source = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void link_into(const char *what, int fd, const char *dir) {
    char name[4096], proc[64];
    snprintf(name, sizeof name, "%s/linked", dir);
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    int a = linkat(fd, "", AT_FDCWD, name, AT_EMPTY_PATH);
    printf("%s AT_EMPTY_PATH: %s\n", what, a ? strerror(errno) : "ok");
    int b = linkat(AT_FDCWD, proc, AT_FDCWD, name, AT_SYMLINK_FOLLOW);
    printf("%s /proc/self/fd: %s\n", what, b ? strerror(errno) : "ok");
}

int main(int argc, char **argv) {
    int remote = open(argv[1], O_TMPFILE | O_RDWR, 0600);
    int local = open(argv[2], O_TMPFILE | O_RDWR, 0600);
    if (remote < 0 || local < 0) { perror("open"); return 1; }
    link_into("remote into local", remote, argv[2]);
    link_into("local into remote", local, argv[1]);
    return 0;
}
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build(&pair, "link_across", source);
        let local = p(&pair.local);
        let r = run(pair.rscq_cmd(&[], &[bin.as_str(), &pair.t(), &local])).success();
        assert_eq!(
            r.out(),
            "remote into local AT_EMPTY_PATH: Invalid cross-device link\n\
             remote into local /proc/self/fd: Invalid cross-device link\n\
             local into remote AT_EMPTY_PATH: Invalid cross-device link\n\
             local into remote /proc/self/fd: Invalid cross-device link\n",
            "{}",
            r.dump()
        );
        assert!(!pair.local.join("linked").exists());
        assert!(!pair.remote_tree.join("linked").exists());
    });
}

/// `stat`, `chmod` and `open` (read, append, `O_TRUNC`, `O_EXCL`) of
/// `/proc/self/fd/N`, `/proc/PID/fd/N` and `/dev/fd/N` act on the open file,
/// as locally: an `O_TMPFILE` file (then named by `linkat`) and a file
/// renamed since it was opened. Output and files compared with a direct run.
#[test]
fn proc_self_fd_paths_reach_the_open_remote_file() {
    let script = r#"
import os, sys
d = sys.argv[1]
def show(what, st):
    print(what, oct(st.st_mode & 0o7777), st.st_size, st.st_nlink)
tmp = os.open(d, os.O_TMPFILE | os.O_RDWR, 0o600)
os.write(tmp, b"unnamed\n")
f = os.open(d + "/named.txt", os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"named file\n")
os.rename(d + "/named.txt", d + "/renamed.txt")
for name, fd in (("tmp", tmp), ("renamed", f)):
    for path in (f"/proc/self/fd/{fd}", f"/proc/{os.getpid()}/fd/{fd}", f"/dev/fd/{fd}"):
        show(name + " stat", os.stat(path))
    os.chmod(f"/proc/self/fd/{fd}", 0o640)
    show(name + " after chmod", os.fstat(fd))
    r = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
    print(name, "read", os.pread(r, 100, 0))
    os.close(r)
    w = os.open(f"/dev/fd/{fd}", os.O_WRONLY | os.O_APPEND)
    os.write(w, b"appended\n")
    os.close(w)
    print(name, "after append", os.pread(fd, 100, 0))
    try:
        os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except OSError as e:
        print(name, "O_EXCL", e.strerror)
w = os.open(f"/proc/self/fd/{f}", os.O_WRONLY | os.O_TRUNC)
os.write(w, b"fresh\n")
os.close(w)
print("renamed after O_TRUNC", os.pread(f, 100, 0))
root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
os.link(f"/proc/self/fd/{tmp}", d + "/tmp-named.txt", src_dir_fd=root, follow_symlinks=True)
os.close(tmp)
os.close(f)
for n in ("renamed.txt", "tmp-named.txt"):
    show(n, os.stat(d + "/" + n))
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (d, _) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        let out = d.out();
        for line in [
            "tmp stat 0o600 8 0\n",
            "tmp after chmod 0o640 8 0\n",
            "tmp after append b'unnamed\\nappended\\n'\n",
            "renamed after chmod 0o640 11 1\n",
            "renamed O_EXCL File exists\n",
            "renamed after O_TRUNC b'fresh\\n'\n",
            "tmp-named.txt 0o640 17 1\n",
        ] {
            assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
        }
    });
}
