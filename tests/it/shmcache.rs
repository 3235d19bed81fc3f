//! Answers rscq holds, given in the program's own thread from the shared
//! answers region (`fastpath::shm`): a listing's `lstat`s, symlink targets
//! and absent xattrs. Each answer must be what rscq would have given at the
//! stop: the same bytes, used once, never past the TTL, never stale after a
//! change rscq made, from any process of the run.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::time::{Duration, SystemTime};

use crate::harness::{Backend, Output, Pair, Running, build_c, cmd, each_mode, p, run};

/// Every layer but the statcache: the fast path still runs local calls,
/// but no answer is offered in the region.
const WITHOUT_STATCACHE: &str =
    "nagle,readahead,compound,dirmeta,bulkread,smallfile,openahead,fastpath";

/// A `--stats` count: the number after `prefix`.
#[track_caller]
fn stat_count(r: &Output, prefix: &str) -> u64 {
    r.err()
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{prefix}` line\n{}", r.dump()))
}

fn stops(r: &Output) -> u64 {
    stat_count(r, "rscq: program stops: ")
}

fn answered_in_program(r: &Output) -> u64 {
    stat_count(r, "rscq: answered in the program from shared memory: ")
}

/// `$T/export/tree/many`: `files` regular files of different sizes and
/// modes, a few relative symlinks (one dangling) and a subdirectory, all
/// with one fixed mtime.
fn many_files(pair: &Pair, files: usize) -> String {
    let dir = pair.remote_tree.join("many");
    fs::create_dir(&dir).expect("mkdir many");
    let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (i, mode) in (0..files).zip([0o600, 0o640, 0o604].into_iter().cycle()) {
        let f = dir.join(format!("f{i:04}"));
        fs::write(&f, vec![b'x'; i % 37]).expect("write");
        fs::set_permissions(&f, fs::Permissions::from_mode(mode)).expect("chmod");
        fs::File::options()
            .write(true)
            .open(&f)
            .and_then(|h| h.set_modified(when))
            .expect("mtime");
    }
    symlink("f0001", dir.join("link1")).expect("link");
    symlink("nowhere", dir.join("dangling")).expect("link");
    fs::create_dir(dir.join("sub")).expect("mkdir sub");
    format!("{}/many", pair.t())
}

/// `ls -l` of a remote directory of many files (spelled absolute, and
/// relative to a local cwd) prints what it prints on the server's
/// directory, in both modes; in default mode most of its
/// calls are answered in the program (at least two per file: the `statx`
/// and an xattr), so the run stops that many times fewer than with the
/// region off (no statcache).
#[test]
fn ls_l_of_many_remote_files_is_answered_in_the_program() {
    const FILES: usize = 300;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let listed = many_files(&pair, FILES);
        let server_side = p(&pair.remote_tree.join("many"));
        let ls = |dir: &str| {
            vec![
                "ls".to_owned(),
                "-l".into(),
                "--color=never".into(),
                "--time-style=full-iso".into(),
                dir.to_owned(),
            ]
        };
        let direct = run(cmd(&ls(&server_side))).success();
        assert!(direct.out().lines().count() > FILES, "{}", direct.dump());
        let r = run(pair.rscq_cmd(&[], &ls(&listed))).success();
        assert_eq!(r.out(), direct.out(), "mode {mode:?}\n{}", r.dump());
        // Relative to a local cwd (rscq runs it in `$T`): the same.
        let relative = run(pair.rscq_cmd(&[], &ls("tree/many"))).success();
        assert_eq!(
            relative.out(),
            direct.out(),
            "mode {mode:?}\n{}",
            relative.dump()
        );
        if !mode.is_empty() {
            return;
        }
        for run in [&r, &relative] {
            let answered = answered_in_program(run);
            assert!(
                answered >= 2 * FILES as u64,
                "{answered} answers in the program\n{}",
                run.dump()
            );
        }
        let off = run(pair.rscq_cmd(&["--optimize", WITHOUT_STATCACHE], &ls(&listed))).success();
        assert_eq!(off.out(), direct.out(), "{}", off.dump());
        assert!(
            !off.err().contains("answered in the program"),
            "no region without the statcache\n{}",
            off.dump()
        );
        assert!(
            stops(&off) >= stops(&r) + 2 * FILES as u64,
            "the region should save at least {} stops\n{}\n{}",
            2 * FILES,
            r.dump(),
            off.dump()
        );
    });
}

/// What the change script prints, run directly on the server's tree or
/// under rscq on the mount: each change rscq makes (chmod, append,
/// fallocate, copy_file_range, rename, unlink), by this process or a child, is seen at once by this process
/// and by a child, though the directory was listed (its entries offered)
/// just before.
const CHANGES: &str = r#"
import os, subprocess, sys
d = sys.argv[1]
def relist():
    os.listdir(d)
def mode(p):
    return oct(os.lstat(p).st_mode & 0o777)
def child_mode(p):
    return subprocess.run(['stat', '-c', '%a', p], capture_output=True, text=True).stdout.strip()
relist(); print('listed', mode(d + '/a'), os.lstat(d + '/c').st_size)
relist(); os.chmod(d + '/a', 0o600); print('chmod', mode(d + '/a'))
relist(); os.chmod(d + '/a', 0o640); print('chmod, child sees', child_mode(d + '/a'))
relist(); subprocess.run(['chmod', '604', d + '/a']); print('child chmod', mode(d + '/a'))
relist()
with open(d + '/a', 'a') as f:
    f.write('more bytes')
print('append', os.lstat(d + '/a').st_size)
relist(); subprocess.run(['sh', '-c', 'echo x >> ' + d + '/a']); print('child append', os.lstat(d + '/a').st_size)
fd = os.open(d + '/a', os.O_RDWR); relist(); os.posix_fallocate(fd, 0, 8192); print('fallocate', os.lstat(d + '/a').st_size); os.close(fd)
src = os.open(d + '/c', os.O_RDONLY); dst = os.open(d + '/a', os.O_WRONLY); relist()
print('copied', os.copy_file_range(src, dst, 3, 0, 9000)); print('copy_file_range', os.lstat(d + '/a').st_size); os.close(src); os.close(dst)
relist(); os.rename(d + '/a', d + '/b'); print('rename', os.path.lexists(d + '/a'), mode(d + '/b'))
relist(); os.unlink(d + '/b'); print('unlink', os.path.lexists(d + '/b'))
relist(); subprocess.run(['rm', d + '/c']); print('child unlink', os.path.lexists(d + '/c'))
relist(); os.symlink('c', d + '/l'); print('symlink', os.readlink(d + '/l'))
relist(); os.unlink(d + '/l'); os.symlink('a', d + '/l'); print('relink', os.readlink(d + '/l'))
"#;

fn change_fixture(dir: &std::path::Path) {
    fs::create_dir(dir).expect("mkdir");
    fs::write(dir.join("a"), b"12345").expect("a");
    fs::set_permissions(dir.join("a"), fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::write(dir.join("c"), b"123").expect("c");
}

#[test]
fn changes_rscq_makes_are_never_answered_stale() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let direct_dir = pair.local.join("changes");
        change_fixture(&direct_dir);
        change_fixture(&pair.remote_tree.join("changes"));
        let direct = run(cmd(&["python3", "-c", CHANGES, &p(&direct_dir)])).success();
        assert!(direct.out().contains("relink a"), "{}", direct.dump());
        let mounted = format!("{}/changes", pair.t());
        let r = run(pair.rscq_cmd(&[], &["python3", "-c", CHANGES, &mounted])).success();
        assert_eq!(r.out(), direct.out(), "mode {mode:?}\n{}", r.dump());
        if mode.is_empty() {
            // The first lstat after each listing is the region's to give.
            assert!(answered_in_program(&r) > 0, "{}", r.dump());
        }
    });
}

/// One use: a file listed and `lstat`-ed (answered in the program) and then
/// changed on the server is seen changed by the next `lstat`, though the
/// TTL (an hour here) is far from over. And once the TTL is over, a file
/// listed and changed on the server before any `lstat` is seen changed.
#[test]
fn a_used_answer_and_an_expired_one_are_asked_again() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let dir = pair.remote_tree.join("once");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("f"), b"12345").expect("f");
        let (go_on, go_on_2) = (pair.local.join("go-on"), pair.local.join("go-on-2"));
        let script = format!(
            "import os, time\nd = '{t}/once'\nos.listdir(d)\nprint('first', os.lstat(d + '/f').st_size, flush=True)\nwhile not os.path.exists('{g}'): time.sleep(0.02)\nprint('second', os.lstat(d + '/f').st_size, flush=True)\n",
            t = pair.t(),
            g = p(&go_on),
        );
        let mut running = Running::spawn(pair.rscq_cmd(
            &["--stat-ttl", "3600s"],
            &["python3", "-c", script.as_str()],
        ));
        running.wait_stdout("first", Duration::from_secs(60));
        fs::write(dir.join("f"), b"1234567890").expect("change on the server");
        fs::write(&go_on, b"").expect("go on");
        let r = running.finish(Duration::from_secs(60)).success();
        assert_eq!(
            r.out(),
            "first 5\nsecond 10\n",
            "mode {mode:?}\n{}",
            r.dump()
        );
        if mode.is_empty() {
            assert!(answered_in_program(&r) >= 1, "{}", r.dump());
        }

        // Listed, changed on the server, asked after the TTL.
        let script = format!(
            "import os, time\nd = '{t}/once'\nos.listdir(d)\nprint('listed', flush=True)\nwhile not os.path.exists('{g}'): time.sleep(0.02)\ntime.sleep(0.5)\nprint('after', os.lstat(d + '/f').st_size, os.readlink(d + '/l'))\n",
            t = pair.t(),
            g = p(&go_on_2),
        );
        symlink("f", dir.join("l")).expect("link");
        let mut running = Running::spawn(pair.rscq_cmd(
            &["--stat-ttl", "200ms"],
            &["python3", "-c", script.as_str()],
        ));
        running.wait_stdout("listed", Duration::from_secs(60));
        fs::write(dir.join("f"), b"12").expect("change on the server");
        fs::remove_file(dir.join("l")).expect("unlink on the server");
        symlink("g", dir.join("l")).expect("relink on the server");
        fs::write(&go_on_2, b"").expect("go on");
        let r = running.finish(Duration::from_secs(60)).success();
        assert_eq!(
            r.out(),
            "listed\nafter 2 g\n",
            "mode {mode:?}\n{}",
            r.dump()
        );
    });
}

/// Threads `lstat` one file while another thread lists its directory and
/// chmods it round after round: no answer is torn (a mode, size or link
/// count no stat of the file had) or older than a chmod that had returned
/// before it was asked, in both modes, as when run directly.
#[test]
fn threads_racing_lstat_against_chmod_see_no_torn_or_stale_answer() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let bin = build_c(
            &pair.local,
            "race",
            include_str!("shmcache_race.c"),
            &["-pthread"],
        );
        let dir = pair.remote_tree.join("race");
        fs::create_dir(&dir).expect("mkdir");
        fs::write(dir.join("f"), b"12345").expect("f");
        fs::set_permissions(dir.join("f"), fs::Permissions::from_mode(0o400)).expect("chmod");
        let expected = "stale 0 torn 0\nreaders checked answers: yes\n";
        let (on_server, server_file) = (p(&dir), p(&dir.join("f")));
        let direct = run(cmd(&[
            bin.as_str(),
            "race",
            &on_server,
            &server_file,
            "120",
            "3",
        ]));
        assert_eq!(direct.success().out(), expected, "run directly");
        fs::set_permissions(dir.join("f"), fs::Permissions::from_mode(0o400)).expect("chmod");
        let listed = format!("{}/race", pair.t());
        let file = format!("{listed}/f");
        let r =
            run(pair.rscq_cmd(&[], &[bin.as_str(), "race", &listed, &file, "120", "3"])).success();
        assert_eq!(r.out(), expected, "mode {mode:?}\n{}", r.dump());
        if mode.is_empty() {
            assert!(answered_in_program(&r) > 0, "{}", r.dump());
        }
    });
}

/// Two remote directories with the same names (`a/fNNNN` and `b/fNNNN`,
/// different sizes), and a local one with a file `here`.
fn same_names_twice(root: &std::path::Path) {
    for (dir, extra) in [("a", 0), ("b", 50)] {
        let d = root.join(dir);
        fs::create_dir(&d).expect("mkdir");
        for i in 0..40 {
            fs::write(d.join(format!("f{i:04}")), vec![b'x'; i + extra]).expect("write");
        }
    }
}

/// Relative to a remote cwd, names the program lists and then `lstat`s
/// are answered in the program, keyed by the cwd rscq told the library;
/// after a `chdir` to another remote directory with the same names, or in
/// a forked child that moved, the same names are that directory's. The
/// output is what the script prints run directly in the server's tree.
const RELATIVE_TO_REMOTE_CWD: &str = r#"
import os, sys
root = sys.argv[1]
def sizes(tag):
    print(tag, [os.lstat(n).st_size for n in sorted(os.listdir("."))][:5],
          os.lstat("f0003").st_size, os.stat("./f0004").st_size)
os.chdir(root + "/a")
sizes("a")
os.listdir(".")
os.chdir("../b")
print("b", [os.lstat("f%04d" % i).st_size for i in range(40)][:5])
os.chdir(root + "/a")
os.listdir(".")
pid = os.fork()
if pid == 0:
    os.chdir(root + "/b")
    print("child b", os.lstat("f0007").st_size, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent a", os.lstat("f0007").st_size, os.lstat("f0008").st_size)
"#;

#[test]
fn paths_relative_to_a_remote_cwd_are_answered_for_that_cwd() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let direct_root = pair.local.join("twice");
        fs::create_dir(&direct_root).expect("mkdir");
        same_names_twice(&direct_root);
        let remote_root = pair.remote_tree.join("twice");
        fs::create_dir(&remote_root).expect("mkdir");
        same_names_twice(&remote_root);
        let direct = run(cmd(&[
            "python3",
            "-c",
            RELATIVE_TO_REMOTE_CWD,
            &p(&direct_root),
        ]))
        .success();
        assert!(direct.out().contains("parent a 7 8"), "{}", direct.dump());
        let mounted = format!("{}/twice", pair.t());
        let r = run(pair.rscq_cmd(
            &["--stat-ttl", "3600s"],
            &["python3", "-c", RELATIVE_TO_REMOTE_CWD, mounted.as_str()],
        ))
        .success();
        assert_eq!(r.out(), direct.out(), "mode {mode:?}\n{}", r.dump());
        if mode.is_empty() {
            // At least `a`'s listing, `lstat`-ed by name after its chdir.
            assert!(answered_in_program(&r) >= 40, "{}", r.dump());
        }

        // `ls -l` run in the remote directory: what it prints there on
        // the server, its `statx` of each name answered in the program.
        const FILES: usize = 200;
        let server_side = p(&pair.remote_tree.join("many"));
        let listed = many_files(&pair, FILES);
        let ls = "ls -l --color=never --time-style=full-iso";
        let direct = run(cmd(&["sh", "-c", &format!("cd {server_side} && {ls}")])).success();
        assert!(direct.out().lines().count() > FILES, "{}", direct.dump());
        let r = run(pair.rscq_cmd(&[], &["sh", "-c", &format!("cd {listed} && {ls}")])).success();
        assert_eq!(r.out(), direct.out(), "mode {mode:?}\n{}", r.dump());
        if mode.is_empty() {
            let answered = answered_in_program(&r);
            assert!(
                answered >= FILES as u64,
                "{answered} answers in the program\n{}",
                r.dump()
            );
        }
    });
}

/// A program that went into a mount and came back: its relative paths in
/// the local cwd run in the program again (rscq tells the library the cwd
/// is the kernel's), so a loop of `stat`s there stops no more than the
/// same loop in a program that never went in (with the cwd only marked
/// "may be remote", each would stop).
#[test]
fn relative_paths_after_leaving_a_remote_cwd_run_without_a_stop() {
    const CALLS: u64 = 2000;
    let pair = Pair::new(Backend::Remote, &[]);
    let local = pair.local.join("back-here");
    fs::create_dir(&local).expect("mkdir");
    fs::write(local.join("here"), b"123").expect("write");
    let script = |into: &str| {
        format!(
            "import os\nos.chdir('{into}')\nos.listdir('.')\nos.chdir('{l}')\nn = sum(os.stat('here').st_size for _ in range({CALLS}))\nprint(n, os.getcwd() == '{l}')\n",
            l = p(&local),
        )
    };
    let stayed = script(&p(&pair.local));
    let stayed = run(pair.rscq_cmd(&[], &["python3", "-c", stayed.as_str()])).success();
    let went = script(&pair.t());
    let went = run(pair.rscq_cmd(&[], &["python3", "-c", went.as_str()])).success();
    for r in [&stayed, &went] {
        assert_eq!(r.out(), format!("{} True\n", 3 * CALLS), "{}", r.dump());
    }
    assert!(
        stops(&went) < stops(&stayed) + CALLS / 2,
        "{} stops after leaving the mount, {} without entering it, for {CALLS} local stats\n{}\n{}",
        stops(&went),
        stops(&stayed),
        stayed.dump(),
        went.dump()
    );
}

/// `mk/`: a project of `sources` C files whose objects are newer, the
/// object of `stale` (if any) older than its source, in both trees.
fn make_project(pair: &Pair, sources: usize, stale: Option<usize>) {
    let old = SystemTime::now() - Duration::from_secs(3600);
    let older = old - Duration::from_secs(3600);
    for root in [&pair.tree, &pair.remote_tree] {
        let mk = root.join("mk");
        fs::create_dir_all(&mk).expect("mkdir mk");
        fs::write(
            mk.join("Makefile"),
            "SRCS := $(wildcard *.c)\nOBJS := $(SRCS:.c=.o)\nall: $(OBJS)\n%.o: %.c\n\t$(CC) -c -o $@ $<\n",
        )
        .expect("Makefile");
        for i in 0..sources {
            let c = mk.join(format!("s{i:03}.c"));
            let o = mk.join(format!("s{i:03}.o"));
            fs::write(&c, format!("int f{i}(void) {{ return {i}; }}\n")).expect("source");
            fs::write(&o, b"").expect("object");
            let age = |path: &std::path::Path, when| {
                fs::File::options()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_modified(when))
                    .expect("mtime");
            };
            age(&c, old);
            if stale == Some(i) {
                age(&o, older);
            }
        }
    }
}

/// GNU make (built against glibc's versioned `__xstat`) answers `-q` for
/// a remote project as directly, up to date or not; in default mode its
/// `stat`s of sources and objects are answered in the program from the
/// listing its wildcard read.
#[test]
fn make_q_of_a_remote_project_is_answered_in_the_program() {
    const SOURCES: usize = 200;
    for stale in [None, Some(150)] {
        each_mode(|mode| {
            let pair = Pair::new(Backend::Remote, mode);
            make_project(&pair, SOURCES, stale);
            let dir = format!("{}/mk", pair.t());
            let (d, r) = pair.same(&["make", "-q", "-C", dir.as_str()]);
            assert_eq!(d.code(), i32::from(stale.is_some()), "{}", d.dump());
            if mode.is_empty() {
                let answered = answered_in_program(&r);
                assert!(
                    answered >= SOURCES as u64,
                    "{answered} answers in the program\n{}",
                    r.dump()
                );
            }
        });
    }
}
