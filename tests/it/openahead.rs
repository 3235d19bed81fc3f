//! The openahead layer: a program opening the entries of a listed
//! directory one after another finds the next ones opened ahead. Each test
//! runs real programs under rscq against the embedded server, in every
//! mode of [`crate::harness::MODES`], beside the same run done directly.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use crate::harness::{Backend, MODES, Pair, Running, TIMEOUT, each_mode, pattern, sh_c};

/// `walk/`: 12 directories of 30 small files, and 60 files of 1..4 KiB
/// at its top, in both trees.
fn populate(pair: &Pair) {
    for root in [&pair.tree, &pair.remote_tree] {
        let walk = root.join("walk");
        for d in 0..12u32 {
            let dir = walk.join(format!("d{d:02}"));
            fs::create_dir_all(&dir).expect("mkdir");
            for f in 0..30u32 {
                fs::write(
                    dir.join(format!("f{f:02}")),
                    pattern(100 + usize::try_from(f).unwrap(), d),
                )
                .expect("write");
            }
        }
        for i in 0..60u32 {
            let len = 1024 * (1 + usize::try_from(i % 4).unwrap());
            fs::write(walk.join(format!("s{i:02}")), pattern(len, i)).expect("write");
        }
    }
}

/// Calls of `name` answered without the network, from a `--stats` report.
fn local_calls(out: &crate::harness::Output, name: &str) -> u64 {
    let err = out.err();
    err.lines()
        .filter_map(|l| l.strip_prefix("rscq: "))
        .map(str::split_whitespace)
        .find_map(|mut f| {
            (f.next() == Some(name))
                .then(|| f.nth(1).and_then(|n| n.parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// `cat dir/*` (sorted names) and `find` (the listing's order) read and
/// list the same as directly; in default mode most of their opens are
/// answered from opens made ahead, and `--pure` makes none.
#[test]
fn walkers_and_globs_see_what_they_would_see_directly() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair);
        let t = pair.t();
        let (_, r) = pair.same(&sh_c(&format!(
            "cat {t}/walk/s* | sha256sum; \
             find {t}/walk -printf '%P %s %m\\n' | sort | sha256sum; \
             find {t}/walk -type f -exec cat {{}} + | wc -c; \
             find {t}/walk -type f | sort | xargs cat | sha256sum; \
             for d in {t}/walk/d*; do cat $d/* | wc -c; done"
        )));
        let stats = r.stats();
        let ahead = stats.get("open-ahead").copied().unwrap_or(0);
        let opens = stats.get("openat").copied().unwrap_or(0);
        let taken = local_calls(&r, "openat");
        if mode.is_empty() {
            assert!(ahead > 100, "{ahead} opens made ahead\n{}", r.dump());
            assert!(taken > 300, "{taken} opens taken from ahead\n{}", r.dump());
            assert!(opens < taken, "{opens} opens forwarded\n{}", r.dump());
        } else {
            assert_eq!(ahead, 0, "--pure opened ahead\n{}", r.dump());
            assert_eq!(taken, 0, "--pure answered opens\n{}", r.dump());
        }
    });
}

/// In a remote cwd, `find .` names its files `./d00/f00` while it lists
/// `d00` by a descriptor: the opens of `cat` spelled with `.` take what
/// was opened ahead of the entries `find` listed.
#[test]
fn a_walk_from_a_remote_cwd_takes_opens_spelled_with_dots() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair);
        let t = pair.t();
        let (_, r) = pair.same(&sh_c(&format!(
            "cd {t}/walk && find . -type f -exec cat {{}} + | sha256sum"
        )));
        let taken = local_calls(&r, "openat");
        if mode.is_empty() {
            // 420 files: most of cat's opens must come from ahead.
            assert!(taken > 300, "{taken} opens taken from ahead\n{}", r.dump());
        } else {
            assert_eq!(taken, 0, "--pure answered opens\n{}", r.dump());
        }
    });
}

/// A file replaced on the server behind rscq's back after the program
/// started reading its directory is seen once the TTL has passed, even if
/// it was opened ahead before the change.
#[test]
fn a_change_on_the_server_is_seen_after_the_ttl() {
    let script = r#"
import os, sys, time
d = sys.argv[1]
names = sorted(os.listdir(d))
def head(n):
    with open(os.path.join(d, n), "rb") as f:
        return f.read(4)
print("first", head(names[0]), head(names[1]), flush=True)
deadline = time.time() + 30
while time.time() < deadline and not os.path.exists(d + ".go"):
    time.sleep(0.02)
time.sleep(0.5)
print("then", head(names[2]), head(names[3]), flush=True)
"#;
    for mode in MODES {
        let pair = Pair::new(Backend::Remote, mode);
        let remote = pair.remote_tree.join("few");
        fs::create_dir(&remote).expect("mkdir");
        for n in ["a", "b", "c", "d"] {
            fs::write(remote.join(n), format!("old{n}")).expect("write");
        }
        let dir = format!("{}/few", pair.t());
        let argv = ["python3", "-c", script, dir.as_str()];
        let mut run = Running::spawn(pair.rscq_cmd(&["--stat-ttl", "200ms"], &argv));
        run.wait_stdout("first b'olda' b'oldb'\n", TIMEOUT);
        fs::write(remote.join("c"), "NEWc").expect("rewrite c");
        fs::write(remote.join("d"), "NEWd").expect("rewrite d");
        fs::write(pair.remote_tree.join("few.go"), "").expect("go");
        let out = run.finish(TIMEOUT).success();
        assert!(
            out.out().contains("then b'NEWc' b'NEWd'\n"),
            "{mode:?}\n{}",
            out.dump()
        );
    }
}

/// A file rscq itself changed is never served from an open made before
/// the change: a program that reads entries in order, rewrites one ahead
/// of it, and reads on sees its own write, as directly.
#[test]
fn a_file_rscq_changed_is_never_served_from_ahead() {
    let script = r#"
set -e
d="$1/walk/d03"
cat "$d"/f00 "$d"/f01 | wc -c
printf NEW > "$d"/f05
cat "$d"/f02 "$d"/f03 "$d"/f04 | wc -c
cat "$d"/f05
echo
chmod 600 "$d"/f06
cat "$d"/f06 | wc -c
stat -c '%n %a' "$d"/f06
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair);
        let argv = vec![
            "sh".to_string(),
            "-c".into(),
            script.into(),
            "sh".into(),
            pair.t(),
        ];
        let (_, r) = pair.same_writes(&argv, &[]);
        assert!(r.out().contains("\nNEW\n"), "{}", r.dump());
    });
}

/// Another user's opens never take what was opened ahead with the
/// caller's rights: a file only root may read stays unreadable to a
/// process that dropped to another uid after root walked the directory.
#[test]
fn opens_made_ahead_serve_only_their_caller_s_rights() {
    if !crate::harness::have_root("opens_made_ahead_serve_only_their_caller_s_rights") {
        return;
    }
    let script = r#"
import os, sys
d = sys.argv[1]
names = sorted(os.listdir(d))
for n in names[:2]:
    with open(os.path.join(d, n), "rb") as f:
        f.read()
os.setgid(65534)
os.setuid(65534)
for n in names[2:]:
    try:
        with open(os.path.join(d, n), "rb") as f:
            print(n, "read", len(f.read()))
    except PermissionError:
        print(n, "denied")
"#;
    for mode in MODES {
        let pair = Pair::new(Backend::Remote, mode);
        for root in [&pair.tree, &pair.remote_tree] {
            let dir = root.join("secret");
            fs::create_dir(&dir).expect("mkdir");
            for n in ["a", "b", "c", "d"] {
                let f = dir.join(n);
                fs::write(&f, "only root").expect("write");
                let mode = if n == "d" { 0o644 } else { 0o600 };
                fs::set_permissions(&f, fs::Permissions::from_mode(mode)).expect("chmod");
            }
        }
        let dir = format!("{}/secret", pair.t());
        let argv = ["python3", "-c", script, dir.as_str()];
        let (_, r) = pair.same(&argv);
        assert!(r.out().contains("c denied\nd read 9\n"), "{}", r.dump());
    }
}

/// A copy within the mount reads its sources ahead while it writes its
/// copies (`cp` copies each file on the server, `copy_file_range`): a
/// write drops only what it may make stale, so the sources' opens are
/// still answered, and the copy is what it is directly.
#[test]
fn a_copy_within_the_mount_reads_ahead_while_it_writes() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair);
        let t = pair.t();
        let argv = sh_c(&format!("cp -r {t}/walk/d03 {t}/walk/copy"));
        let (_, r) = pair.same_writes(&argv, &[]);
        let taken = local_calls(&r, "openat");
        if mode.is_empty() {
            assert!(taken >= 20, "{taken} opens taken from ahead\n{}", r.dump());
        } else {
            assert_eq!(taken, 0, "--pure answered opens\n{}", r.dump());
        }
    });
}
