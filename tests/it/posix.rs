//! POSIX semantics of path calls in a mount, each checked against the same
//! program run directly on an identical tree: `.` and `..` are resolved on
//! the server one component at a time, never collapsed as text.

use std::fs;

use crate::harness::{Backend, Pair, each_mode, p};

/// Every call prints its result or its errno's name, so a difference in
/// either shows in the compared output; the trees are compared after.
const DOTS_SCRIPT: &str = r#"
import errno, os, stat, sys

def attempt(name, call):
    try:
        result = call()
        print(name, "ok", "" if result is None else result)
    except OSError as e:
        print(name, errno.errorcode[e.errno])

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
    for backend in [Backend::Remote, Backend::Embedded] {
        each_mode(|mode| {
            let pair = Pair::new(backend, mode);
            let script = pair.local.join("dots.py");
            fs::write(&script, DOTS_SCRIPT).expect("write script");
            let (d, _) = pair.same_writes(&["python3", &p(&script), &pair.t()], &[]);
            // The direct run is the reference; make sure it shows the cases
            // the bug got wrong, so the comparison is about them.
            let out = d.out();
            for line in [
                "rmdir a/b/.. ENOTEMPTY",
                "rmdir a/b/. EINVAL",
                "rename a/b/.. x EBUSY",
                "stat f/. ENOTDIR",
                "listdir s/.. ok ['d']",
                "rmdir s/../n ok",
            ] {
                assert!(out.contains(line), "direct run lacks {line:?}:\n{out}");
            }
        });
    }
}
