//! File-system commands, each run directly on `$T/tree` and under rscq on
//! the export mounted at the same path, in every mode of [`MODES`].

use std::fs;

use crate::harness::{Backend, Pair, each_mode, p, sh_c};

#[test]
fn ls_l() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same(&["ls", "-l", "--color=never", &t]);
        assert!(r.out().contains("big.dat"), "{}", r.dump());
        pair.same(&[
            "ls",
            "-l",
            "--color=never",
            &format!("{t}/sub"),
            &format!("{t}/sub/deep"),
        ]);
        pair.same(&["ls", "-lR", "--color=never", &t]);
        pair.same(&[
            "ls",
            "-ld",
            "--color=never",
            &t,
            &format!("{t}/link"),
            &format!("{t}/dirlink"),
        ]);
        pair.same(&["ls", "-lL", "--color=never", &format!("{t}/dirlink")]);
    });
}

/// `..` of the mount's root is the local parent `$T` (which is the same
/// directory in both runs, and unchanged between them), so whole outputs
/// compare, at the root and below it.
#[test]
fn ls_la() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same(&["ls", "-la", "--color=never", &t]);
        assert!(
            r.out().contains(" .\n") && r.out().contains(" ..\n"),
            "{}",
            r.dump()
        );
        pair.same(&["ls", "-la", "--color=never", &format!("{t}/sub")]);
        pair.same(&["ls", "-la", "--color=never", &format!("{t}/sub/deep/d")]);
        pair.same(&[
            "ls",
            "-laR",
            "--color=never",
            "--time-style=full-iso",
            &format!("{t}/emptydir"),
        ]);
    });
}

#[test]
fn stat() {
    // Everything but inode, device, atime and ctime, which no copy keeps.
    let fmt = "%n|%F|%s|%b|%a|%A|%h|%U|%G|%u|%g|%Y|%y|%N";
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let names = [
            "",
            "a.txt",
            "big.dat",
            "empty",
            "exec.sh",
            "ro.txt",
            "with space.txt",
            "link",
            "dirlink",
            "dangling",
            "sub",
            "sub/deep/d/e.txt",
            "emptydir",
        ];
        let paths: Vec<String> = names
            .iter()
            .map(|n| {
                if n.is_empty() {
                    t.clone()
                } else {
                    format!("{t}/{n}")
                }
            })
            .collect();
        let mut argv = vec!["stat".to_string(), "-c".into(), fmt.into()];
        argv.extend(paths.iter().cloned());
        let (_, r) = pair.same(&argv);
        assert_eq!(r.out().lines().count(), names.len(), "{}", r.dump());
        let mut argv = vec![
            "stat".to_string(),
            "-L".into(),
            "-c".into(),
            "%n|%F|%s|%a|%Y".into(),
        ];
        argv.extend(paths.iter().filter(|p| !p.ends_with("dangling")).cloned());
        pair.same(&argv);
        pair.same(&["stat", "-f", "-c", "%T", &t]);
        // A missing file: same message, same exit code.
        let (d, _) = pair.same(&["stat", &format!("{t}/missing")]);
        assert_eq!(d.code(), 1);
    });
}

#[test]
fn cat() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same(&[
            "cat",
            &format!("{t}/a.txt"),
            &format!("{t}/b.bin"),
            &format!("{t}/big.dat"),
            &format!("{t}/empty"),
            &format!("{t}/link"),
            &format!("{t}/with space.txt"),
            &format!("{t}/dirlink/c.txt"),
        ]);
        assert_eq!(
            r.stdout.len(),
            6 + 100 * 1024 + 3 * 1024 * 1024 + 17 + 6 + 11 + 17,
            "{}",
            r.dump()
        );
        assert!(
            r.stats().contains_key("read"),
            "no forwarded read\n{}",
            r.dump()
        );
        // Through a pipe and with `head`.
        pair.same(&sh_c(&format!(
            "cat '{t}/big.dat' | sha256sum; head -c 1000 '{t}/b.bin' | od -An -tx1 | tail -n 2"
        )));
    });
}

#[test]
fn cp_local_to_remote() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (t, l) = (pair.t(), p(&pair.local));
        fs::write(
            pair.local.join("in.bin"),
            crate::harness::pattern(1_500_000, 9),
        )
        .unwrap();
        fs::create_dir_all(pair.local.join("dir/inner")).unwrap();
        fs::write(pair.local.join("dir/inner/x.txt"), "x\n").unwrap();
        fs::write(pair.local.join("dir/y.txt"), "y\n").unwrap();
        pair.same_writes(
            &["cp", &format!("{l}/in.bin"), &format!("{t}/sub/copied.bin")],
            &[],
        );
        pair.same_writes(
            &["cp", "-r", &format!("{l}/dir"), &format!("{t}/newdir")],
            &[],
        );
        assert!(pair.remote_tree.join("newdir/inner/x.txt").is_file());
        assert!(!pair.tree.join("newdir/inner").exists() || pair.tree.join("newdir").exists());
    });
}

#[test]
fn cp_remote_to_local() {
    // `ls -lA`, not `-la`: the `..` of the copy is the fresh local `out`,
    // whose mtime is the minute the run made it, not a remote one.
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let out = pair.local.join("out");
        let o = p(&out);
        let (_, r) = pair.same_writes(
            &sh_c(&format!(
                "cp -a '{t}/sub' '{o}/' && cp '{t}/big.dat' '{t}/b.bin' '{t}/link' '{o}/' && cp -P '{t}/dangling' '{o}/' && ls -lA --color=never '{o}/sub' && ls -ld '{o}/sub'"
            )),
            &[&out],
        );
        assert!(
            r.stats().get("read").copied().unwrap_or(0) > 0,
            "{}",
            r.dump()
        );
        // cp -a kept the remote mtimes.
        let m = fs::metadata(out.join("sub/c.txt")).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&m), 1_700_000_000);
    });
}

#[test]
fn cp_within_mount() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        pair.same_writes(
            &sh_c(&format!(
                "cp -a '{t}/sub' '{t}/sub2' && cp '{t}/big.dat' '{t}/sub/big2' && cp -p '{t}/exec.sh' '{t}/emptydir/' && cp '{t}/link' '{t}/linkcopy'"
            )),
            &[],
        );
    });
}

#[test]
fn mv() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        pair.same_writes(
            &["mv", &format!("{t}/a.txt"), &format!("{t}/sub/moved.txt")],
            &[],
        );
        pair.same_writes(
            &["mv", &format!("{t}/sub/deep"), &format!("{t}/deep2")],
            &[],
        );
        pair.same_writes(
            &[
                "mv",
                &format!("{t}/b.bin"),
                &format!("{t}/ro.txt"),
                &format!("{t}/emptydir/"),
            ],
            &[],
        );
        // Replacing an existing file.
        pair.same_writes(
            &["mv", "-f", &format!("{t}/exec.sh"), &format!("{t}/empty")],
            &[],
        );
        // Moving a local file into the mount crosses "devices": copy + unlink.
        let (l, local_file) = (p(&pair.local), pair.local.join("m.txt"));
        let argv = ["mv".to_string(), format!("{l}/m.txt"), format!("{t}/m.txt")];
        fs::write(&local_file, "moving in\n").unwrap();
        let d = pair.direct(&argv).success();
        assert!(!local_file.exists());
        fs::write(&local_file, "moving in\n").unwrap();
        let r = pair.rscq(&argv).success();
        assert_eq!(d.program_stderr(), r.program_stderr());
        assert!(
            !local_file.exists(),
            "local source not removed\n{}",
            r.dump()
        );
        assert_eq!(
            fs::read(pair.remote_tree.join("m.txt")).unwrap(),
            b"moving in\n"
        );
        assert_eq!(fs::read(pair.tree.join("m.txt")).unwrap(), b"moving in\n");
    });
}

#[test]
fn rm_r() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        pair.same_writes(&["rm", "-r", &format!("{t}/sub")], &[]);
        pair.same_writes(
            &[
                "rm",
                "-rf",
                &format!("{t}/emptydir"),
                &format!("{t}/link"),
                &format!("{t}/missing"),
            ],
            &[],
        );
        pair.same_writes(
            &[
                "rm",
                &format!("{t}/dangling"),
                &format!("{t}/with space.txt"),
            ],
            &[],
        );
        // rm of a missing file: same error.
        let (d, _) = pair.same(&["rm", &format!("{t}/nope")]);
        assert_eq!(d.code(), 1);
    });
}

#[test]
fn mkdir_p() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        pair.same_writes(
            &[
                "mkdir",
                "-p",
                &format!("{t}/x/y/z"),
                &format!("{t}/sub/new"),
            ],
            &[],
        );
        pair.same_writes(&["mkdir", "-m", "700", &format!("{t}/private")], &[]);
        let (d, _) = pair.same(&["mkdir", &format!("{t}/sub")]);
        assert_eq!(d.code(), 1, "{}", d.dump());
        assert!(pair.remote_tree.join("x/y/z").is_dir());
    });
}

#[test]
fn find() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same_sorted(&["find", &t]);
        assert_eq!(r.out().lines().count(), 18, "{}", r.dump());
        pair.same_sorted(&["find", &t, "-type", "f", "-name", "*.txt"]);
        pair.same_sorted(&["find", &t, "-printf", "%p %y %s %m %T@ %l\n"]);
        pair.same_sorted(&["find", &format!("{t}/dirlink/"), "-follow", "-type", "f"]);
        pair.same_sorted(&["find", &t, "-empty"]);
        pair.same_sorted(&["find", &t, "-newer", &format!("{t}/a.txt")]);
    });
}

/// Tar headers embed mtimes, modes, owners and sizes, all of which the
/// copies share (cp -a); only member order follows the directory order, so
/// with `--sort=name` the archives themselves must be byte-identical.
#[test]
fn tar_c() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same(&["tar", "cf", "-", "--sort=name", "-C", &t, "."]);
        assert!(r.stdout.len() > 3 * 1024 * 1024, "{}", r.dump());
        pair.same(&sh_c(&format!(
            "tar cf - --sort=name -C '{t}' sub | tar tvf -"
        )));
        pair.same(&sh_c(&format!(
            "tar czf - --sort=name -C '{t}/..' tree/sub | tar xzOf - | sha256sum"
        )));
    });
}

#[test]
fn tar_x_into_mount() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        // The archive is local and made from the fixture, outside the mount.
        let src = pair.env.base.join("tarsrc");
        crate::harness::copy_tree(&pair.tree, &src);
        let archive = pair.local.join("in.tar");
        crate::harness::run(crate::harness::cmd(&[
            "tar".to_string(),
            "cf".into(),
            p(&archive),
            "-C".into(),
            p(&src),
            ".".into(),
        ]))
        .success();
        fs::create_dir(pair.tree.join("unpacked")).unwrap();
        fs::create_dir(pair.remote_tree.join("unpacked")).unwrap();
        pair.same_writes(
            &["tar", "xf", &p(&archive), "-C", &format!("{t}/unpacked")],
            &[],
        );
        // tar restored the archived mtimes on the remote side too.
        let (_, r) = pair.same_sorted(&sh_c(&format!(
            "cd '{t}/unpacked' && find . -printf '%p %T@\\n'"
        )));
        assert!(r.out().contains("./sub/c.txt 1700000000"), "{}", r.dump());
        // One member only, into a fresh directory (over the fixture's own
        // `sub` it would rewrite identical files and prove nothing).
        fs::create_dir(pair.tree.join("again")).unwrap();
        fs::create_dir(pair.remote_tree.join("again")).unwrap();
        pair.same_writes(
            &[
                "tar",
                "xvf",
                &p(&archive),
                "-C",
                &format!("{t}/again"),
                "./sub",
            ],
            &[],
        );
    });
}

#[test]
fn du() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        pair.same_sorted(&["du", "-a", &t]);
        pair.same(&["du", "-s", &t]);
        pair.same(&["du", "-sb", &t]);
        pair.same(&[
            "du",
            "-sh",
            "--apparent-size",
            &format!("{t}/big.dat"),
            &format!("{t}/sub"),
        ]);
    });
}

#[test]
fn python_walk_write_rename() {
    let script = r#"
import hashlib, os, sys
top = sys.argv[1]
for root, dirs, files in os.walk(top):
    dirs.sort()
    for f in sorted(files):
        path = os.path.join(root, f)
        if os.path.islink(path):
            print("L", path, os.readlink(path))
            continue
        with open(path, "rb") as fh:
            data = fh.read()
        st = os.lstat(path)
        print("F", path, len(data), oct(st.st_mode), hashlib.sha256(data).hexdigest()[:16])
new = os.path.join(top, "sub", "py.tmp")
with open(new, "w") as fh:
    for i in range(2000):
        fh.write("line %d\n" % i)
os.rename(new, os.path.join(top, "sub", "py.txt"))
with open(os.path.join(top, "sub", "py.txt")) as fh:
    lines = fh.readlines()
print(len(lines), lines[-1].strip())
with open(os.path.join(top, "a.txt"), "a") as fh:
    fh.write("appended\n")
os.makedirs(os.path.join(top, "pydir", "inner"))
os.replace(os.path.join(top, "pydir"), os.path.join(top, "pydir2"))
print(sorted(os.listdir(top)))
print(os.path.exists(new), os.path.isdir(os.path.join(top, "pydir2", "inner")))
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (_, r) = pair.same_writes(&["python3", "-c", script, &pair.t()], &[]);
        assert!(r.out().contains("2000 line 1999"), "{}", r.dump());
    });
}

#[test]
fn sh_echo_redirect() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same_writes(
            &sh_c(&format!(
                "echo hi > '{t}/f'; cat '{t}/f'; echo more >> '{t}/f'; cat '{t}/f' '{t}/a.txt'"
            )),
            &[],
        );
        assert_eq!(r.out(), "hi\nhi\nmore\nalpha\n");
        assert_eq!(fs::read(pair.remote_tree.join("f")).unwrap(), b"hi\nmore\n");
    });
}

#[test]
fn cd_then_relative_paths() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same(&sh_c(&format!(
            "cd '{t}/sub' && ls && cat ../a.txt && cat deep/d/e.txt && ls -l --color=never .."
        )));
        assert!(r.out().contains("alpha\necho\n"), "{}", r.dump());
        // getcwd() inside the mount, and relative writes.
        pair.same_writes(
            &sh_c(&format!(
                "cd '{t}/sub/deep' && pwd && pwd -P && /bin/pwd && echo rel > rel.txt && mkdir newd && mv rel.txt newd/ && cat newd/rel.txt && ls .. && cd .. && ls deep/newd"
            )),
            &[],
        );
        pair.same(&["python3", "-c", "import os,sys; os.chdir(sys.argv[1]); print(os.getcwd()); print(sorted(os.listdir('.'))); print(open('c.txt').read())", &format!("{t}/sub")]);
    });
}

#[test]
fn remote_errno_surfaces() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (d, r) = pair.same(&["cat", &format!("{t}/missing.txt")]);
        assert_eq!(d.code(), 1);
        assert!(
            r.err().contains("No such file or directory"),
            "{}",
            r.dump()
        );
        let (_, r) = pair.same(&["rmdir", &format!("{t}/sub")]);
        assert!(r.err().contains("Directory not empty"), "{}", r.dump());
        let (_, r) = pair.same(&["cat", &format!("{t}/sub")]);
        assert!(r.err().contains("Is a directory"), "{}", r.dump());
        let (_, r) = pair.same(&["ls", &format!("{t}/a.txt/x")]);
        assert!(r.err().contains("Not a directory"), "{}", r.dump());
        pair.same(&["cat", &format!("{t}/dangling")]);
        let (_, r) = pair.same(&sh_c(&format!("cat '{t}/missing' 2>&1; echo rc=$?")));
        assert!(r.out().contains("rc=1"), "{}", r.dump());
    });
}

/// A trailing slash makes the kernel follow a final symlink (`dirlink/` is
/// the directory `sub`, `link/` is ENOTDIR).
#[test]
fn trailing_slash_follows_symlink() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let (_, r) = pair.same(&["ls", "-l", "--color=never", &format!("{t}/dirlink/")]);
        assert!(r.out().contains("c.txt"), "{}", r.dump());
        pair.same(&[
            "stat",
            "-c",
            "%n %F",
            &format!("{t}/dirlink/"),
            &format!("{t}/dirlink"),
        ]);
        pair.same(&["stat", "-c", "%n %F", &format!("{t}/link/")]);
        pair.same(&[
            "ls",
            "-ld",
            "--color=never",
            &format!("{t}/sub/"),
            &format!("{t}/a.txt/"),
        ]);
    });
}

/// The fd calls stop a process only once it holds a remote file (rscq then
/// adds a second seccomp filter to it): a file opened in one thread is read
/// in another, by a forked child, by an exec'd program that inherits it, and
/// under a barrage of signals while the filter goes in.
#[test]
fn remote_fds_work_in_threads_children_and_exec() {
    let script = r#"
import os, signal, subprocess, sys, threading, time
t = sys.argv[1]
hits = 0
def on_alarm(s, f):
    global hits
    hits += 1
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
# Local reads and writes first: no remote file yet in this process.
with open("/proc/self/status") as f:
    f.read()
box = {}
def opener():
    # Open until an alarm has arrived during the opens: a direct open can be
    # faster than the first alarm, so one open alone would make the line
    # below depend on timing.
    deadline = time.monotonic() + 20
    while True:
        fd = os.open(t + "/a.txt", os.O_RDONLY)
        if hits > 0 or time.monotonic() > deadline:
            break
        os.close(fd)
    box["fd"] = fd
th = threading.Thread(target=opener)
th.start()
th.join()
signal.setitimer(signal.ITIMER_REAL, 0)
fd = box["fd"]
print("thread-opened, read here:", os.read(fd, 5))
pid = os.fork()
if pid == 0:
    print("child:", os.read(fd, 5), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
out = subprocess.run(["cat"], stdin=fd, capture_output=True).stdout
print("exec'd cat:", out)
print("after:", os.lseek(fd, 0, os.SEEK_CUR), os.fstat(fd).st_size)
print("alarms seen:", hits > 0)
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let (_, r) = pair.same(&["python3", "-c", script, &pair.t()]);
        assert!(r.out().contains("alarms seen: True"), "{}", r.dump());
    });
}
