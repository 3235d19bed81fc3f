//! The `dirmeta` layer: a lookup that misses brings its directory's
//! listing with every entry's metadata, reused (hits and ENOENT) within the
//! stat TTL, and dropped by every change rscq makes. Each case runs real
//! programs under rscq against a real server and compares with the same
//! program run directly.

use std::fs;

use crate::harness::{Backend, MODES, Pair, Running, TIMEOUT, each_mode};

/// Files `f0`..`f{n-1}` (of `i` bytes each) in `dm` of both trees.
fn populate(pair: &Pair, n: usize) {
    for root in [&pair.tree, &pair.remote_tree] {
        let dir = root.join("dm");
        fs::create_dir_all(&dir).expect("mkdir dm");
        for i in 0..n {
            fs::write(dir.join(format!("f{i}")), vec![b'x'; i]).expect("write");
        }
        std::os::unix::fs::symlink("f1", dir.join("link")).expect("symlink");
    }
}

fn python(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec!["python3".to_string(), "-c".into(), script.into()];
    argv.extend(args.iter().map(|a| (*a).to_string()));
    argv
}

/// stat, lstat, exists, access and readlink of existing and missing names
/// (and of paths below missing names and below files), as python's import
/// system and `PATH` lookups do.
const PROBE: &str = r#"
import os, sys
d = sys.argv[1]
n = int(sys.argv[2])
lines = 0
for i in range(2 * n):
    for name in ["f%d" % i, "f%d.py" % i, "f%d/x" % i, "missing%d/y/z" % i]:
        p = os.path.join(d, name)
        out = [name]
        for f in (os.stat, os.lstat):
            try:
                s = f(p)
                out.append("%o:%d" % (s.st_mode, s.st_size))
            except OSError as e:
                out.append("E%d" % e.errno)
        out.append(str(os.path.exists(p)))
        out.append(str(os.access(p, os.R_OK)))
        try:
            out.append(os.readlink(p))
        except OSError as e:
            out.append("E%d" % e.errno)
        try:
            open(p).close()
            out.append("opened")
        except OSError as e:
            out.append("E%d" % e.errno)
        print(" ".join(out))
        lines += 1
print(os.readlink(os.path.join(d, "link")), os.stat(os.path.join(d, "link")).st_size)
print("lines", lines)
"#;

#[test]
fn stats_of_existing_and_missing_names_match_native() {
    for backend in [Backend::Remote, Backend::Embedded] {
        each_mode(|mode| {
            let pair = Pair::new(backend, mode);
            populate(&pair, 40);
            let dir = format!("{}/dm", pair.t());
            let (_, r) = pair.same(&python(PROBE, &[&dir, "40"]));
            assert!(r.out().contains("lines 320\n"), "{}", r.dump());
            assert!(r.out().contains("f1 1\n"), "{}", r.dump());
        });
    }
}

/// Round trips from `--stats` for `lstat` of every file of one directory,
/// and of as many missing names: about one with the layer, one per call
/// with `--pure`.
#[test]
fn one_round_trip_per_directory_not_per_file() {
    const N: usize = 200;
    let script = r#"
import os, sys
d = sys.argv[1]
n = int(sys.argv[2])
found = 0
for i in range(n):
    for name in ("f%d" % i, "absent%d" % i):
        try:
            os.lstat(os.path.join(d, name))
            found += 1
        except FileNotFoundError:
            pass
print("found", found)
"#;
    for backend in [Backend::Remote, Backend::Embedded] {
        for mode in MODES {
            let pair = Pair::new(backend, mode);
            populate(&pair, N);
            let dir = format!("{}/dm", pair.t());
            let n = N.to_string();
            let (_, r) = pair.same(&python(script, &[&dir, &n]));
            assert!(r.out().contains(&format!("found {N}\n")), "{}", r.dump());
            let trips = r.forwarded();
            if mode.contains(&"--pure") {
                assert!(trips >= 2 * N as u64, "{trips} round trips\n{}", r.dump());
            } else {
                assert!(trips <= 2, "{trips} round trips\n{}", r.dump());
                let stats = r.stats();
                assert!(
                    stats.get("newfstatat").copied().unwrap_or(0) <= 2,
                    "{}",
                    r.dump()
                );
            }
        }
    }
}

/// Each way rscq can create a name drops the cached ENOENT for it at once.
#[test]
fn a_negative_entry_is_dropped_when_rscq_creates_the_name() {
    let script = r#"
import os, sys
d = sys.argv[1]
def probe(name):
    try:
        os.lstat(os.path.join(d, name))
        return "yes"
    except FileNotFoundError:
        return "no"
steps = [
    ("created", lambda p: open(p, "w").close()),
    ("made", lambda p: os.mkdir(p)),
    ("linked", lambda p: os.symlink("f1", p)),
    ("hard", lambda p: os.link(os.path.join(d, "f1"), p)),
    ("moved", lambda p: os.rename(os.path.join(d, "f2"), p)),
    ("fifo", lambda p: os.mkfifo(p)),
]
for name, make in steps:
    p = os.path.join(d, name)
    before = probe(name)
    make(p)
    print(name, before, probe(name), os.path.exists(p))
# And a name removed is gone at once, with the file moved away.
print("f2", probe("f2"))
os.unlink(os.path.join(d, "created"))
print("created", probe("created"))
os.rmdir(os.path.join(d, "made"))
print("made", probe("made"))
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair, 4);
        let dir = format!("{}/dm", pair.t());
        let (_, r) = pair.same_writes(&python(script, &[&dir]), &[]);
        for name in ["created", "made", "linked", "hard", "moved", "fifo"] {
            assert!(
                r.out().contains(&format!("{name} no yes True\n")),
                "{}",
                r.dump()
            );
        }
        assert!(
            r.out().contains("f2 no\ncreated no\nmade no\n"),
            "{}",
            r.dump()
        );
    });
}

/// What changes on the server behind rscq's back is seen once the TTL has
/// passed: a file's new size, and a name that appeared.
#[test]
fn a_change_on_the_server_is_seen_after_the_ttl() {
    let script = r#"
import os, sys, time
d = sys.argv[1]
f = os.path.join(d, "f3")
late = os.path.join(d, "late")
print("size", os.lstat(f).st_size, "late", os.path.exists(late), flush=True)
deadline = time.time() + 30
while time.time() < deadline:
    if os.path.exists(os.path.join(d, "go")):
        break
    time.sleep(0.02)
while time.time() < deadline:
    size = os.lstat(f).st_size
    seen = os.path.exists(late)
    if size == 100 and seen:
        break
    time.sleep(0.02)
print("now", size, "late", seen, flush=True)
"#;
    for mode in MODES {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair, 4);
        let dir = format!("{}/dm", pair.t());
        let mut run =
            Running::spawn(pair.rscq_cmd(&["--stat-ttl", "300ms"], &python(script, &[&dir])));
        run.wait_stdout("size 3 late False\n", TIMEOUT);
        let remote = pair.remote_tree.join("dm");
        fs::write(remote.join("f3"), vec![b'y'; 100]).expect("grow f3");
        fs::write(remote.join("late"), b"").expect("create late");
        fs::write(remote.join("go"), b"").expect("create go");
        let out = run.finish(TIMEOUT).success();
        assert!(out.out().contains("now 100 late True\n"), "{}", out.dump());
    }
}

/// A file rscq itself changed is never served stale: its size after each
/// write, truncate and chmod, seen by another process, at once.
#[test]
fn a_file_rscq_changed_is_never_served_stale() {
    let script = r#"
set -e
d="$1"
stat -c '%n %s %a' "$d"/f0 "$d"/f1 "$d"/f2
printf abcdef >> "$d"/f1
stat -c '%n %s' "$d"/f1
truncate -s 1 "$d"/f2
stat -c '%n %s' "$d"/f2
chmod 600 "$d"/f0
stat -c '%n %a' "$d"/f0
ln -s f1 "$d"/newlink
stat -c '%n %F' "$d"/newlink
readlink "$d"/newlink
mv "$d"/f1 "$d"/sub
stat -c '%n %s' "$d"/sub
ls "$d"
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        populate(&pair, 3);
        let dir = format!("{}/dm", pair.t());
        let argv = vec![
            "sh".to_string(),
            "-c".into(),
            script.into(),
            "sh".into(),
            dir,
        ];
        let (_, r) = pair.same_writes(&argv, &[]);
        assert!(r.out().contains("/f1 7\n"), "{}", r.dump());
    });
}

/// The layer can be turned off by name, and then lookups are forwarded
/// one by one as with `--pure`.
#[test]
fn optimize_without_dirmeta_forwards_each_lookup() {
    let pair = Pair::new(
        Backend::Remote,
        &["--optimize", "statcache,compound,readahead"],
    );
    populate(&pair, 20);
    let dir = format!("{}/dm", pair.t());
    let script = "import os,sys\nfor i in range(20): os.lstat(os.path.join(sys.argv[1], 'f%d' % i))\nprint('ok')";
    let (_, r) = pair.same(&python(script, &[&dir]));
    assert!(r.forwarded() >= 20, "{}", r.dump());
}
