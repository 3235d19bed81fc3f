//! POSIX semantics of path calls in a mount, each checked against the same
//! program run directly on an identical tree: `.` and `..` are resolved on
//! the server one component at a time, never collapsed as text.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::{Backend, Pair, each_mode, p};

/// Runs python `script` with the mount point as its first argument (then
/// `extra`), directly and under rscq, on every backend in `backends` and in
/// every mode, comparing output and trees; the direct run must print each
/// of `expected`, so that the comparison is about the cases that matter.
/// `traversable` opens `$T` to every user, for scripts that drop to nobody.
#[track_caller]
fn same_as_direct(
    script: &str,
    backends: &[Backend],
    traversable: bool,
    local_out: bool,
    expected: &[&str],
) {
    for &backend in backends {
        each_mode(|mode| {
            let pair = Pair::new(backend, mode);
            if traversable {
                fs::set_permissions(&pair.env.base, fs::Permissions::from_mode(0o711))
                    .expect("chmod base");
            }
            let file = pair.env.base.join("script.py");
            fs::write(&file, format!("{PRELUDE}{script}")).expect("write script");
            let out = pair.local.join("out");
            let mut argv = vec!["python3".to_string(), p(&file), pair.t()];
            let outs: Vec<&std::path::Path> = if local_out {
                argv.push(p(&out));
                vec![out.as_path()]
            } else {
                Vec::new()
            };
            let (d, _) = pair.same_writes(&argv, &outs);
            let text = d.out();
            for line in expected {
                assert!(text.contains(line), "direct run lacks {line:?}:\n{text}");
            }
        });
    }
}

const BOTH: &[Backend] = &[Backend::Remote, Backend::Embedded];

/// What every script starts with: `attempt` prints a call's result or its
/// errno's name, so a difference in either shows in the compared output.
const PRELUDE: &str = r#"
import errno, os, socket, stat, sys

def attempt(name, call):
    try:
        result = call()
        print(name, "ok", "" if result is None else result)
    except OSError as e:
        print(name, errno.errorcode[e.errno])
"#;

/// Every call prints its result or its errno's name, so a difference in
/// either shows in the compared output; the trees are compared after.
const DOTS_SCRIPT: &str = r#"
import errno, os, stat, sys


d = os.path.join(sys.argv[1], "dots")
os.makedirs(d + "/a/b")
os.makedirs(d + "/c/d")
open(d + "/f", "w").close()
os.symlink("c/d", d + "/s")

for base in (d, None):
    # The second round runs from a cwd inside the mount, with relative paths.
    if base is None:
        os.chdir(d)
        at = lambda rel: rel
    else:
        at = lambda rel: base + "/" + rel
    attempt("rmdir a/b/..", lambda: os.rmdir(at("a/b/..")))
    attempt("rmdir a/b/.", lambda: os.rmdir(at("a/b/.")))
    attempt("rmdir a/b/../b/.", lambda: os.rmdir(at("a/b/../b/.")))
    attempt("rename a/b/.. x", lambda: os.rename(at("a/b/.."), at("x")))
    attempt("rename a/b/. x", lambda: os.rename(at("a/b/."), at("x")))
    attempt("rename a x/..", lambda: os.rename(at("a"), at("x/..")))
    attempt("unlink a/b/..", lambda: os.unlink(at("a/b/..")))
    attempt("stat f/.", lambda: stat.S_IFMT(os.stat(at("f/.")).st_mode))
    attempt("stat f/..", lambda: stat.S_IFMT(os.stat(at("f/..")).st_mode))
    attempt("stat f/", lambda: stat.S_IFMT(os.stat(at("f/")).st_mode))
    attempt("open f/.", lambda: os.close(os.open(at("f/."), os.O_RDONLY)))
    attempt("listdir s/..", lambda: sorted(os.listdir(at("s/.."))))
    attempt("listdir a/b/..", lambda: sorted(os.listdir(at("a/b/.."))))
    attempt("lstat s/../d", lambda: stat.S_IFMT(os.lstat(at("s/../d")).st_mode))
    attempt("mkdir nope/..", lambda: os.mkdir(at("nope/..")))
    attempt("mkdir f/../g", lambda: os.mkdir(at("f/../g")))
    attempt("mkdir c/../g", lambda: os.mkdir(at("c/../g")))
    attempt("rmdir g/.", lambda: os.rmdir(at("g/.")))
    attempt("rmdir c/../g/", lambda: os.rmdir(at("c/../g/")))
    attempt("mkdir s/../n", lambda: os.mkdir(at("s/../n")))
    attempt("rmdir s/../n", lambda: os.rmdir(at("s/../n")))

for root, dirs, files in sorted(os.walk(d)):
    print(os.path.relpath(root, d), sorted(dirs), sorted(files))
"#;

/// The reported bug: `rmdir a/b/..` removed `a`, `rmdir a/b/.` removed `b`,
/// `rename a/b/.. x` renamed `a`, `stat file/.` succeeded, and `symlink/..`
/// was the symlink's parent instead of its target's.
#[test]
fn dot_and_dotdot_are_resolved_not_collapsed() {
    same_as_direct(
        DOTS_SCRIPT,
        BOTH,
        false,
        false,
        &[
            "rmdir a/b/.. ENOTEMPTY",
            "rmdir a/b/. EINVAL",
            "rename a/b/.. x EBUSY",
            "stat f/. ENOTDIR",
            "listdir s/.. ok ['d']",
            "rmdir s/../n ok",
        ],
    );
}

/// A root program that drops to `nobody` with `seteuid()`: every check is
/// the kernel's, with the program's rights, not rscq's or the server's.
const CREDS_SCRIPT: &str = r#"
import errno, os, stat, sys


d = os.path.join(sys.argv[1], "creds")
os.mkdir(d)
os.chmod(d, 0o777)
with open(d + "/rootfile", "w") as f:
    f.write("root's data\n")
os.chmod(d + "/rootfile", 0o644)
open(d + "/theirs", "w").close()
os.chown(d + "/theirs", 65534, 0)
os.umask(0o027)
attempt("root creates", lambda: os.close(os.open(d + "/byroot", os.O_CREAT | os.O_WRONLY, 0o666)))
print("byroot mode", oct(stat.S_IMODE(os.stat(d + "/byroot").st_mode)))

os.setgroups([])
os.setegid(65534)
os.seteuid(65534)
attempt("truncate rootfile", lambda: os.truncate(d + "/rootfile", 0))
attempt("open rootfile O_TRUNC", lambda: os.close(os.open(d + "/rootfile", os.O_WRONLY | os.O_TRUNC)))
attempt("chown rootfile", lambda: os.chown(d + "/rootfile", 65534, 65534))
attempt("chmod rootfile", lambda: os.chmod(d + "/rootfile", 0o666))
attempt("utime rootfile", lambda: os.utime(d + "/rootfile", (0, 0)))
attempt("access W real root", lambda: os.access(d + "/rootfile", os.W_OK))
attempt("access W effective", lambda: os.access(d + "/rootfile", os.W_OK, effective_ids=True))
def create_and_write():
    fd = os.open(d + "/mine", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o666)
    os.write(fd, b"nobody's data\n")
    os.fchmod(fd, 0o660)
    os.close(fd)
attempt("nobody creates and writes", create_and_write)
attempt("nobody mkdir", lambda: os.mkdir(d + "/mydir", 0o777))
attempt("setgid by non-member", lambda: os.chmod(d + "/theirs", 0o2755))
attempt("nobody unlinks byroot", lambda: os.unlink(d + "/byroot"))
attempt("nobody chmods its own", lambda: os.chmod(d + "/mine", 0o604))

os.seteuid(0)
os.setegid(0)
with open(d + "/rootfile") as f:
    print("rootfile holds", repr(f.read()))
for name in sorted(os.listdir(d)):
    st = os.lstat(d + "/" + name)
    print(name, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, st.st_size)
"#;

/// The reported bug: after `seteuid(65534)` a program under rscq still
/// truncated, chmodded and chowned root's files in the mount, created files
/// as root with the server's umask, and could not open what it created.
#[test]
fn calls_run_with_the_callers_credentials() {
    if !crate::harness::have_root("calls_run_with_the_callers_credentials") {
        return;
    }
    same_as_direct(
        CREDS_SCRIPT,
        BOTH,
        true,
        false,
        &[
            "byroot mode 0o640",
            "truncate rootfile EACCES",
            "open rootfile O_TRUNC EACCES",
            "chown rootfile EPERM",
            "chmod rootfile EPERM",
            "access W real root ok True",
            "access W effective ok False",
            "nobody creates and writes ok",
            "nobody unlinks byroot ok",
            "rootfile holds \"root's data\\n\"",
            "mine 0o604 65534 65534 14",
            "mydir 0o750 65534 65534",
            "theirs 0o755 65534 0 0",
        ],
    );
}

/// Credentials and umask changed after the thread's earlier forwarded
/// calls, by another thread and by one thread alone: each call must carry
/// what its own thread has at that moment.
const CREDS_LATER_SCRIPT: &str = r#"
import ctypes, threading

libc = ctypes.CDLL(None, use_errno=True)
SYS_setfsuid = 122

d = os.path.join(sys.argv[1], "later")
os.mkdir(d)
os.chmod(d, 0o777)
os.umask(0o022)
open(d + "/before", "w").close()
print("before mode", oct(stat.S_IMODE(os.stat(d + "/before").st_mode)))

# The umask belongs to every thread of the process: set by another thread.
t = threading.Thread(target=lambda: os.umask(0o077))
t.start()
t.join()
open(d + "/after", "w").close()
print("after mode", oct(stat.S_IMODE(os.stat(d + "/after").st_mode)))

# A raw setfsuid changes only its own thread.
def by_nobody(ready, done):
    libc.syscall(SYS_setfsuid, 65534)
    open(d + "/by-thread", "w").close()
    ready.set()
    done.wait()
    open(d + "/by-thread-again", "w").close()
ready, done = threading.Event(), threading.Event()
t = threading.Thread(target=by_nobody, args=(ready, done))
t.start()
ready.wait()
open(d + "/by-main", "w").close()
done.set()
t.join()
open(d + "/by-main-again", "w").close()
attempt("chmod others' file", lambda: os.chmod(d + "/by-thread", 0o600))

for name in sorted(os.listdir(d)):
    st = os.lstat(d + "/" + name)
    print(name, oct(stat.S_IMODE(st.st_mode)), st.st_uid)
"#;

/// The credentials a thread's calls carry are kept between calls: they
/// must be read again whenever a call that changes them returns.
#[test]
fn credentials_changed_later_or_by_another_thread_apply_at_once() {
    if !crate::harness::have_root("credentials_changed_later_or_by_another_thread_apply_at_once") {
        return;
    }
    same_as_direct(
        CREDS_LATER_SCRIPT,
        BOTH,
        true,
        false,
        &[
            "before mode 0o644",
            "after mode 0o600",
            "by-main 0o600 0",
            "by-main-again 0o600 0",
            "by-thread 0o600 65534",
            "by-thread-again 0o600 65534",
            "chmod others' file ok",
        ],
    );
}

/// `rscq-server --squash-root`: a remote root acts as nobody, with no
/// capabilities, while the server itself runs as root.
#[test]
fn squash_root_runs_a_root_caller_as_nobody() {
    if !crate::harness::have_root("squash_root_runs_a_root_caller_as_nobody") {
        return;
    }
    let env = crate::harness::Env::new();
    let export = env.base.join("export");
    fs::create_dir(&export).expect("mkdir export");
    fs::set_permissions(&export, fs::Permissions::from_mode(0o777)).expect("chmod export");
    fs::write(export.join("rootfile"), "root's data\n").expect("write");
    let mut spec = env.spec(&export);
    spec.extra_args = vec!["--squash-root".into()];
    let server = crate::harness::Server::start(spec);
    let mnt = env.base.join("mnt");
    let m = p(&mnt);
    let script = format!(
        "truncate -s 0 {m}/rootfile; chmod 666 {m}/rootfile; mkdir {m}/made; \
         echo new > {m}/new && cat {m}/new; stat -c '%n %u:%g %a' {m}/made {m}/new {m}/rootfile"
    );
    for mode in crate::harness::MODES {
        let mut args = vec!["--mount".to_string(), format!("{m}=/")];
        args.extend(mode.iter().map(|s| (*s).to_string()));
        args.extend(["--".into(), "sh".into(), "-c".into(), script.clone()]);
        let out = crate::harness::run(env.rscq(Some(&server), &args));
        let text = out.out();
        let err = out.program_stderr();
        assert!(err.contains("Permission denied"), "{}", out.dump());
        assert!(err.contains("Operation not permitted"), "{}", out.dump());
        assert!(text.contains("new\n"), "{}", out.dump());
        assert!(
            text.contains(&format!("{m}/made 65534:65534 755")),
            "{}",
            out.dump()
        );
        assert!(
            text.contains(&format!("{m}/new 65534:65534 644")),
            "{}",
            out.dump()
        );
        assert!(
            text.contains(&format!("{m}/rootfile 0:0 644")),
            "{}",
            out.dump()
        );
        assert_eq!(
            fs::read_to_string(export.join("rootfile")).expect("read"),
            "root's data\n"
        );
        fs::remove_dir(export.join("made")).expect("rmdir made");
        fs::remove_file(export.join("new")).expect("rm new");
    }
}

/// FIFOs, sockets, regular files and (with root's rights) device nodes made
/// with `mknod`/`mkfifo`, then checked by type, mode and device number.
const MKNOD_SCRIPT: &str = r#"
import errno, os, stat, sys


d = os.path.join(sys.argv[1], "nodes")
os.mkdir(d)
os.chmod(d, 0o777)
os.umask(0o022)
attempt("mkfifo", lambda: os.mkfifo(d + "/fifo", 0o666))
attempt("mkfifo again", lambda: os.mkfifo(d + "/fifo", 0o666))
attempt("mknod char", lambda: os.mknod(d + "/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
attempt("mknod block", lambda: os.mknod(d + "/blk", 0o640 | stat.S_IFBLK, os.makedev(7, 200)))
attempt("mknod socket", lambda: os.mknod(d + "/sock", 0o777 | stat.S_IFSOCK))
attempt("mknod regular", lambda: os.mknod(d + "/reg", 0o644))
attempt("mknod dir", lambda: os.mknod(d + "/dir", 0o755 | stat.S_IFDIR))
attempt("mknod bad type", lambda: os.mknod(d + "/bad", 0o755 | 0o110000))
attempt("mknod in a file", lambda: os.mknod(d + "/reg/x", 0o644))
attempt("mknod missing dir", lambda: os.mknod(d + "/nope/x", 0o644))
os.chdir(d)
attempt("mkfifo relative", lambda: os.mkfifo("fifo2", 0o600))
attempt("open fifo nonblocking", lambda: os.close(os.open("fifo2", os.O_RDONLY | os.O_NONBLOCK)))
os.setegid(65534)
os.seteuid(65534)
attempt("nobody mknod char", lambda: os.mknod(d + "/null2", 0o666 | stat.S_IFCHR, os.makedev(1, 3)))
os.seteuid(0)
os.setegid(0)
for name in sorted(os.listdir(d)):
    st = os.lstat(d + "/" + name)
    dev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    print(name, oct(st.st_mode), dev, st.st_uid, st.st_gid)
"#;

/// `mknod` and `mkfifo` used to fail with EPERM in a mount.
#[test]
fn mknod_and_mkfifo_make_every_file_type() {
    if !crate::harness::have_root("mknod_and_mkfifo_make_every_file_type") {
        return;
    }
    same_as_direct(
        MKNOD_SCRIPT,
        BOTH,
        true,
        false,
        &[
            "mkfifo again EEXIST",
            "mknod dir EPERM",
            "mknod bad type EINVAL",
            "nobody mknod char EPERM",
            "blk 0o60640 (7, 200) 0 0",
            "fifo 0o10644",
            "null 0o20644 (1, 3)",
            "sock 0o140755",
        ],
    );
}

/// AF_UNIX sockets bound to paths in a mount make their socket files on
/// the server; relative paths count from the program's cwd, even a remote
/// one, and lead out of the mount as the kernel's would.
const UNIX_SCRIPT: &str = r#"
import errno, os, socket, stat, sys


d = os.path.join(sys.argv[1], "unix")
local = sys.argv[2]
os.mkdir(d)
os.umask(0o027)
s = socket.socket(socket.AF_UNIX)
attempt("bind", lambda: s.bind(d + "/sock"))
attempt("listen", lambda: s.listen(1))
attempt("bind again", lambda: socket.socket(socket.AF_UNIX).bind(d + "/sock"))
attempt("bind in a file", lambda: socket.socket(socket.AF_UNIX).bind(d + "/sock/x"))
os.chdir(d)
attempt("bind relative", lambda: socket.socket(socket.AF_UNIX).bind("rel"))
attempt("bind missing dir", lambda: socket.socket(socket.AF_UNIX).bind("nope/x"))
out = os.path.relpath(local, d)
attempt("bind out of the mount", lambda: socket.socket(socket.AF_UNIX).bind(out + "/outside"))
attempt("chmod", lambda: os.chmod("rel", 0o700))
attempt("rename", lambda: os.rename("rel", "moved"))
for name in sorted(os.listdir(d)):
    print(name, oct(os.lstat(name).st_mode))
print("outside", oct(os.lstat(local + "/outside").st_mode))
"#;

#[test]
fn unix_socket_paths_in_a_mount_are_socket_files_on_the_server() {
    same_as_direct(
        UNIX_SCRIPT,
        BOTH,
        false,
        true,
        &[
            "bind again EADDRINUSE",
            "bind in a file ENOTDIR",
            "bind missing dir ENOENT",
            "moved 0o140700",
            "sock 0o140750",
            "outside 0o140750",
        ],
    );
}

/// What the README says of a `connect` to a socket path in a mount: the
/// server's socket cannot be reached from here, so it is refused as one
/// nobody listens on, after the server said whether the path exists.
#[test]
fn connect_to_a_socket_path_in_a_mount_is_refused() {
    let script = r#"
import errno, os, socket, sys
d = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(d + "/sock")
s.listen(1)
for name in ("sock", "missing"):
    try:
        socket.socket(socket.AF_UNIX).connect(d + "/" + name)
        print(name, "connected")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
os.unlink(d + "/sock")
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let r = pair.rscq(&["python3", "-c", script, &pair.t()]).success();
        assert_eq!(
            r.out(),
            "sock ECONNREFUSED\nmissing ENOENT\n",
            "{}",
            r.dump()
        );
    });
}

/// pjdfstest's `*/03.t`: a relative path of PATH_MAX - 1 bytes from a cwd
/// in the mount works (the server's path, with the mount's prefix, is
/// longer than one kernel walk takes), and one byte more is ENAMETOOLONG.
const LONG_SCRIPT: &str = r#"
import errno, os, sys


d = os.path.join(sys.argv[1], "long")
os.umask(0o022)
os.mkdir(d)
os.chdir(d)
comp = "c" * 127
parts = []
while len("/".join(parts + [comp])) < 4095 - 200:
    parts.append(comp)
os.makedirs("/".join(parts))
name = "/".join(parts) + "/" + "f" * (4095 - len("/".join(parts)) - 1)
print("length", len(name))
attempt("create", lambda: os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o642)))
attempt("stat", lambda: oct(os.stat(name).st_mode))
attempt("chmod", lambda: os.chmod(name, 0o600))
attempt("too long", lambda: os.stat(name + "x"))
attempt("unlink", lambda: os.unlink(name))
attempt("dotdot out of the long part", lambda: os.stat(name.rsplit("/", 1)[0] + "/../" + "c" * 120))
"#;

#[test]
fn relative_paths_up_to_path_max_work_from_a_cwd_in_the_mount() {
    same_as_direct(
        LONG_SCRIPT,
        &[Backend::Remote],
        false,
        false,
        &[
            "length 4095",
            "create ok",
            "stat ok 0o100640",
            "too long ENAMETOOLONG",
            "unlink ok",
        ],
    );
}

/// Absolute symlink targets in the mount lead where the program's kernel
/// would take them, loops included, and read back as spelled.
const SYMLINK_SCRIPT: &str = r#"
import errno, os, sys


t = sys.argv[1]
d = os.path.join(t, "links")
os.mkdir(d)
with open(d + "/a", "w") as f:
    f.write("through the link\n")
os.symlink(d + "/a", d + "/abs")
os.symlink(d + "/loop2", d + "/loop1")
os.symlink(d + "/loop1", d + "/loop2")
os.symlink(t + "/links", t + "/dirlink2")
attempt("readlink", lambda: os.readlink(d + "/abs") == d + "/a")
attempt("read", lambda: open(d + "/abs").read())
attempt("chmod through", lambda: os.chmod(d + "/abs", 0o600))
attempt("mode", lambda: oct(os.stat(d + "/a").st_mode))
attempt("loop", lambda: os.stat(d + "/loop1"))
attempt("loop component", lambda: os.stat(d + "/loop1/x"))
attempt("dir link", lambda: sorted(os.listdir(t + "/dirlink2")))
attempt("readlink dir link", lambda: os.readlink(t + "/dirlink2") == t + "/links")
os.unlink(t + "/dirlink2")
"#;

/// The trees differ on purpose here: the export holds the targets as the
/// server names them, so only the outputs are compared, and the stored
/// target is checked.
#[test]
fn absolute_symlinks_in_the_mount_lead_where_the_kernel_would() {
    for backend in BOTH {
        each_mode(|mode| {
            let pair = Pair::new(*backend, mode);
            let file = pair.env.base.join("script.py");
            fs::write(&file, format!("{PRELUDE}{SYMLINK_SCRIPT}")).expect("write script");
            let argv = ["python3".to_string(), p(&file), pair.t()];
            let d = pair.direct(&argv);
            let r = pair.rscq(&argv);
            crate::harness::compare_outputs(&d, &r, false);
            let text = d.out();
            for line in [
                "readlink ok True",
                "read ok through the link",
                "mode ok 0o100600",
                "loop ELOOP",
                "loop component ELOOP",
                "dir link ok ['a', 'abs', 'loop1', 'loop2']",
            ] {
                assert!(text.contains(line), "direct run lacks {line:?}:\n{text}");
            }
            let stored = fs::read_link(pair.remote_tree.join("links/abs")).expect("readlink");
            let server_name = match backend {
                Backend::Remote => "/tree/links/a".to_string(),
                Backend::Embedded => format!("{}/links/a", p(&pair.remote_tree)),
            };
            assert_eq!(p(&stored), server_name);
        });
    }
}
