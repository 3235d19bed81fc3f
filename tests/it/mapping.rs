//! `mmap` of remote files: git (which reads its config, index and packs
//! through private mappings) runs a whole workflow in a mount, python's
//! `mmap` reads and copy-on-write maps a remote file, and a shared library
//! in a mount is loaded and called; each compared with a direct run.

use std::fs;

use crate::harness::{Backend, Pair, cmd, compare_outputs, each_mode, p, run};

/// init, add, commit, branch, merge, diff, status, gc, fsck, a bare clone,
/// a clone of it and a push back, all inside the mount.
#[test]
fn git_workflow_in_a_mount() {
    let script = r#"
set -eu
cd "$1"
export GIT_AUTHOR_DATE="2020-01-01T00:00:00Z" GIT_COMMITTER_DATE="2020-01-01T00:00:00Z"
export HOME=/nonexistent GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
git init -q -b main repo
cd repo
git config user.email t@example.com
git config user.name Tester
printf 'line %s\n' 1 2 3 > a.txt
mkdir d
echo x > d/b.txt
git add -A
git commit -qm first
git checkout -qb feature
echo 4 >> a.txt
git commit -qam feature
git checkout -q main
echo y > d/c.txt
git add d/c.txt
git commit -qm second
git merge -q --no-edit feature
git log --format='%h %s' | sort
git diff HEAD~1 --stat
git status --short
git branch --list
git gc -q
git fsck --no-progress 2>&1
git count-objects -v | grep -v size
cd ..
git clone -q --bare repo bare.git
git clone -q bare.git work
cd work
git config user.email t@example.com
git config user.name Tester
echo z > z.txt
git add z.txt
git commit -qm third
git push -q origin main
cd ..
git --git-dir=bare.git log --format='%s'
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let file = pair.env.base.join("git.sh");
        fs::write(&file, script).expect("write script");
        let argv = ["bash".to_string(), p(&file), pair.t()];
        // The index records inode numbers and times, so the trees differ;
        // what git says about them must not.
        let direct = pair.direct(&argv).success();
        let remote = pair.rscq(&argv).success();
        compare_outputs(&direct, &remote, false);
        let out = direct.out();
        assert!(
            out.contains("Merge branch 'feature'")
                && out.ends_with("third\nMerge branch 'feature'\nsecond\nfeature\nfirst\n"),
            "{}",
            direct.dump()
        );
        // The server's copy is a sound repository in its own right.
        let fsck = run(cmd(&[
            "git",
            "-C",
            &p(&pair.remote_tree.join("repo")),
            "fsck",
            "--no-progress",
        ]));
        assert!(fsck.status.success(), "{}", fsck.dump());
    });
}

/// python `mmap`: a read-only shared map, a private map at an offset, and
/// a copy-on-write map whose changes stay in memory.
#[test]
fn python_mmap_reads_and_copy_on_write() {
    let script = r#"
import mmap, os, sys, hashlib
t = sys.argv[1]
with open(t + "/big.dat", "rb") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    print("whole:", len(m), hashlib.sha256(m).hexdigest())
    print("slice:", m[1000:1010].hex(), m.find(m[2000000:2000016]))
    m.close()
    m = mmap.mmap(f.fileno(), 8192, access=mmap.ACCESS_READ, offset=mmap.PAGESIZE * 3)
    print("at offset:", hashlib.sha256(m).hexdigest())
    m.close()
with open(t + "/a.txt", "r+b") as f:
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    m[0:5] = b"ALPHA"
    print("copy:", bytes(m))
    m.close()
print("file:", open(t + "/a.txt", "rb").read())
try:
    mmap.mmap(os.open(t + "/empty", os.O_RDONLY), 0, access=mmap.ACCESS_READ)
except ValueError as e:
    print("empty:", e)
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (d, r) = pair.same(&["python3", "-c", script, &pair.t()]);
        assert!(d.out().contains("copy: b'ALPHA\\n'"), "{}", d.dump());
        assert!(
            r.stats().get("mmap").copied().unwrap_or(0) >= 3,
            "{}",
            r.dump()
        );
    });
}

/// A shared library built into the mount is loaded (its segments mapped
/// from the remote file) and called.
#[test]
fn a_shared_library_in_a_mount_is_loaded_and_called() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let src = pair.local.join("answer.c");
        fs::write(
            &src,
            "static const char text[] = \"from a remote library\";\nint answer(void) { return 42; }\nconst char *words(void) { return text; }\n",
        )
        .expect("write source");
        for dir in [&pair.tree, &pair.remote_tree] {
            let built = run(cmd(&[
                "gcc",
                "-shared",
                "-fPIC",
                "-o",
                &p(&dir.join("libanswer.so")),
                &p(&src),
            ]));
            assert!(built.status.success(), "{}", built.dump());
        }
        let script = "import ctypes, sys\nlib = ctypes.CDLL(sys.argv[1] + '/libanswer.so')\nlib.words.restype = ctypes.c_char_p\nprint(lib.answer(), lib.words().decode())\n";
        let (d, _) = pair.same(&["python3", "-c", script, &pair.t()]);
        assert_eq!(d.out(), "42 from a remote library\n", "{}", d.dump());
    });
}
