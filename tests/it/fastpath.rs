//! The fast path (`--optimize fastpath`, on by default): path calls that
//! resolve outside every mount run in the program's own thread, and a
//! remote path is never answered locally.
//!
//! Here the mount point `$T/tree` also exists locally, and the local copy
//! is made to differ from the remote one (a file of another size, a file
//! only on each side), so an answer taken from the wrong side shows. The
//! probe (`fastpath_probe.c`) makes each call through libc, which is what
//! the preload library replaces.

use std::fs;
use std::os::unix::fs::symlink;
use std::time::Duration;

use crate::harness::{Backend, Output, Pair, Running, build_c, cmd, each_mode, p, run};

/// Every optimization but the fast path: the same run with every local
/// path call stopping in the tracer.
const WITHOUT_FASTPATH: &str = "nagle,readahead,statcache,compound,dirmeta,bulkread,smallfile";

/// The pair, with `fp/` made to differ: remote `size` has 7 bytes and
/// local 3; `ronly` exists only remotely, `lonly` only locally; `$T/trep/fp/q`
/// is local while `$T/tree/fp/q` is remote-only (one byte apart).
fn differing_pair(mode: &[&str]) -> Pair {
    let pair = Pair::new(Backend::Remote, mode);
    let (local, remote) = (pair.tree.join("fp"), pair.remote_tree.join("fp"));
    fs::create_dir(&local).expect("mkdir local fp");
    fs::create_dir(&remote).expect("mkdir remote fp");
    fs::write(local.join("size"), b"3b\n").expect("local size");
    fs::write(remote.join("size"), b"seven!!").expect("remote size");
    fs::write(remote.join("ronly"), b"12345").expect("remote only");
    fs::write(local.join("lonly"), b"1234").expect("local only");
    fs::write(remote.join("q"), b"remote q").expect("remote q");
    let trep = pair.env.base.join("trep").join("fp");
    fs::create_dir_all(&trep).expect("mkdir trep");
    fs::write(trep.join("q"), b"local q").expect("local q");
    fs::write(pair.local.join("plain"), b"four").expect("plain");
    // A number as a name: judged with its directory's own path.
    fs::create_dir(pair.local.join("123")).expect("mkdir 123");
    fs::write(pair.local.join("123").join("plain"), b"four").expect("123/plain");
    // Local symlinks into the mount: as the last component, and on the way.
    symlink(
        pair.tree.join("fp").join("size"),
        pair.local.join("link_last"),
    )
    .expect("link");
    symlink(pair.tree.join("fp"), pair.local.join("link_dir")).expect("link");
    pair
}

/// Builds the probe once per pair, outside the mount.
fn probe(pair: &Pair) -> String {
    build_c(
        &pair.local,
        "probe",
        include_str!("fastpath_probe.c"),
        &["-pthread"],
    )
}

/// The probe's arguments: remote paths spelled every way the planner
/// resolves (absolute, `..` into the mount, from a remote cwd, from a
/// local cwd above it, through a remote dirfd and a local one above it,
/// `/proc/self/fd/N/`, local symlinks into it), and local ones.
fn probe_args(pair: &Pair) -> Vec<String> {
    let (t, l, base) = (pair.t(), p(&pair.local), p(&pair.env.base));
    vec![
        format!("{t}/fp/size"),
        format!("{t}/fp/ronly"),
        format!("{t}/fp/lonly"),
        format!("{l}/../tree/fp/size"),
        format!("{l}/link_last"),
        format!("{l}/link_dir/size"),
        format!("{l}/plain"),
        format!("@cd:{base}"),
        "tree/fp/size".into(),
        "./tree/fp/ronly".into(),
        "local/plain".into(),
        format!("@cd:{t}/fp"),
        "size".into(),
        "lonly".into(),
        format!("@cd:{l}"),
        "plain".into(),
        "../tree/fp/size".into(),
        "../local/plain".into(),
        "123/plain".into(),
        format!("@dirfd:{t}/fp"),
        "size".into(),
        "ronly".into(),
        "../fp/size".into(),
        "@procfd:size".into(),
        format!("@dirfd:{base}"),
        "tree/fp/size".into(),
        "local/plain".into(),
        format!("@dirfd:{l}"),
        "../tree/fp/size".into(),
        "../tree/fp/ronly".into(),
        "../local/plain".into(),
        "123/plain".into(),
        "@cwd".into(),
    ]
}

/// What the probe must print for [`probe_args`]: every remote path gives
/// the remote answer, every local one the local answer.
fn expected(pair: &Pair) -> String {
    let (t, l, base) = (pair.t(), p(&pair.local), p(&pair.env.base));
    let enoent = -libc::ENOENT;
    let einval = -libc::EINVAL;
    let line = |path: &str, size: i64, islink: i64, read: i64, readlink: &str| {
        let access = if size < 0 { size } else { 0 };
        let statx = size;
        format!(
            "{path} stat={size} islink={} statx={statx} access={access} read={read} readlink={readlink}\n",
            if size < 0 && islink == 0 {
                size
            } else {
                islink
            },
        )
    };
    let remote_size = |path: &str| line(path, 7, 0, 7, &einval.to_string());
    let remote_ronly = |path: &str| line(path, 5, 0, 5, &einval.to_string());
    let missing = |path: &str| {
        line(
            path,
            i64::from(enoent),
            0,
            i64::from(enoent),
            &enoent.to_string(),
        )
    };
    let plain = |path: &str| line(path, 4, 0, 4, &einval.to_string());
    let mut out = String::new();
    out += &remote_size(&format!("{t}/fp/size"));
    out += &remote_ronly(&format!("{t}/fp/ronly"));
    out += &missing(&format!("{t}/fp/lonly"));
    out += &remote_size(&format!("{l}/../tree/fp/size"));
    out += &line(&format!("{l}/link_last"), 7, 1, 7, &format!("{t}/fp/size"));
    out += &remote_size(&format!("{l}/link_dir/size"));
    out += &plain(&format!("{l}/plain"));
    out += &format!("chdir {base} = 0\n");
    out += &remote_size("tree/fp/size");
    out += &remote_ronly("./tree/fp/ronly");
    out += &plain("local/plain");
    out += &format!("chdir {t}/fp = 0\n");
    out += &remote_size("size");
    out += &missing("lonly");
    out += &format!("chdir {l} = 0\n");
    out += &plain("plain");
    out += &remote_size("../tree/fp/size");
    out += &plain("../local/plain");
    out += &plain("123/plain");
    out += &format!("dirfd {t}/fp = ok\n");
    out += &remote_size("size");
    out += &remote_ronly("ronly");
    out += &remote_size("../fp/size");
    // The fd number is the probe's; only its tail is compared.
    out += "@procfd\n";
    out += &format!("dirfd {base} = ok\n");
    out += &remote_size("tree/fp/size");
    out += &plain("local/plain");
    out += &format!("dirfd {l} = ok\n");
    out += &remote_size("../tree/fp/size");
    out += &remote_ronly("../tree/fp/ronly");
    out += &plain("../local/plain");
    out += &plain("123/plain");
    out
}

/// The probe's output with the `/proc/self/fd/N/size` line checked apart
/// (N is whatever fd the program got) and replaced by a marker.
#[track_caller]
fn normalized(r: &Output) -> String {
    let mut out = String::new();
    for l in r.out().lines() {
        if l.starts_with("/proc/self/fd/") {
            let tail = l.split_once(' ').map_or("", |(_, t)| t);
            assert_eq!(
                tail,
                format!(
                    "stat=7 islink=0 statx=7 access=0 read=7 readlink={}",
                    -libc::EINVAL
                ),
                "/proc/self/fd/N/size of a remote dirfd\n{}",
                r.dump()
            );
            out += "@procfd\n";
        } else {
            out += l;
            out += "\n";
        }
    }
    out
}

/// Runs the probe under rscq with `extra` flags.
fn probe_run(pair: &Pair, extra: &[&str], bin: &str, mode: &str, args: &[String]) -> Output {
    let mut argv = vec![bin.to_owned(), mode.to_owned()];
    argv.extend(args.iter().cloned());
    run(pair.rscq_cmd(extra, &argv))
}

/// Every remote spelling gets the remote answer and every local one the
/// local answer, in both modes, with the fast path on (default) and off.
#[test]
fn remote_paths_are_never_answered_locally() {
    each_mode(|mode| {
        let pair = differing_pair(mode);
        let bin = probe(&pair);
        let args = probe_args(&pair);
        let want = expected(&pair);
        for extra in [&[][..], &["--optimize", WITHOUT_FASTPATH][..]] {
            if !mode.is_empty() && !extra.is_empty() {
                continue; // --pure already has no fast path
            }
            let r = probe_run(&pair, extra, &bin, "plain", &args).success();
            assert_eq!(
                normalized(&r),
                want,
                "mode {mode:?} {extra:?}\n{}",
                r.dump()
            );
        }
    });
}

/// The same answers when the program blocks every signal, and when it
/// installs a SIGSYS handler of its own (which must never run): the fast
/// path sends no signal.
#[test]
fn blocked_signals_and_an_own_sigsys_handler_change_nothing() {
    let pair = differing_pair(&[]);
    let bin = probe(&pair);
    let args = probe_args(&pair);
    let want = expected(&pair);
    let r = probe_run(&pair, &[], &bin, "blocked", &args).success();
    assert_eq!(normalized(&r), want, "{}", r.dump());
    let r = probe_run(&pair, &[], &bin, "sigsys", &args).success();
    assert_eq!(
        normalized(&r),
        format!("{want}own SIGSYS handler ran 0 times\n"),
        "{}",
        r.dump()
    );
}

/// `realpath(3)` (which the library makes itself, its readlinks judged one
/// by one) resolves a local symlink into the mount and then the remote
/// side's names, in both modes.
#[test]
fn realpath_follows_local_links_into_the_mount_and_sees_the_remote_side() {
    each_mode(|mode| {
        let pair = differing_pair(mode);
        let bin = probe(&pair);
        let (t, l) = (pair.t(), p(&pair.local));
        let args = [
            format!("{l}/link_dir/size"),
            format!("{l}/link_last"),
            format!("{t}/fp/ronly"),
            format!("{t}/fp/lonly"),
            format!("{l}/plain"),
            format!("{l}/../local/./plain"),
        ];
        let r = probe_run(&pair, &[], &bin, "realpath", &args).success();
        let want = format!(
            "{l}/link_dir/size -> {t}/fp/size\n{l}/link_last -> {t}/fp/size\n{t}/fp/ronly -> {t}/fp/ronly\n{t}/fp/lonly -> No such file or directory\n{l}/plain -> {l}/plain\n{l}/../local/./plain -> {l}/plain\nlibrary {}\n",
            // The library is in default mode's program, not in --pure's.
            if mode.is_empty() { "loaded" } else { "absent" }
        );
        assert_eq!(r.out(), want, "mode {mode:?}\n{}", r.dump());
    });
}

/// A program that execs itself 30 times gets the same answers in every
/// image (the library is loaded again after each exec).
#[test]
fn a_program_that_execs_in_a_loop_keeps_the_same_answers() {
    let pair = differing_pair(&[]);
    let bin = probe(&pair);
    let args = [
        format!("{}/fp/size", pair.t()),
        format!("{}/plain", p(&pair.local)),
    ];
    let r = probe_run(&pair, &[], &bin, "exec:30", &args).success();
    let remote = format!(
        "{}/fp/size stat=7 islink=0 statx=7 access=0 read=7 readlink={}",
        pair.t(),
        -libc::EINVAL
    );
    let local = format!(
        "{}/plain stat=4 islink=0 statx=4 access=0 read=4 readlink={}",
        p(&pair.local),
        -libc::EINVAL
    );
    let want = format!("{remote}\n{local}\n").repeat(30);
    assert_eq!(r.out(), want, "{}", r.dump());
}

/// Threads stat one buffer that another thread flips, one byte, between a
/// remote-only path and a local-only one: every stat finds its file, so no
/// path is judged on one spelling and run on the other. Default mode only:
/// without the library (`--pure`) the tracer reads the path at the stop
/// and the kernel reads it again, as with any ptrace tool (README, "What
/// does not work yet").
#[test]
fn threads_racing_on_one_path_buffer_get_consistent_answers() {
    let pair = differing_pair(&[]);
    let bin = probe(&pair);
    let remote = format!("{}/fp/q", pair.t());
    let local = format!("{}/trep/fp/q", p(&pair.env.base));
    let r = probe_run(&pair, &[], &bin, "threads", &[remote, local]).success();
    assert_eq!(r.out(), "stats that found nothing: 0\n", "{}", r.dump());
}

/// `--stats`' count of the program's stops.
#[track_caller]
fn stops(r: &Output) -> u64 {
    r.err()
        .lines()
        .find_map(|l| l.strip_prefix("rscq: program stops: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stop count\n{}", r.dump()))
}

/// With the fast path, 200 local `os.stat` calls cost no stop; without it,
/// each costs one (`--stats` counts the program's stops). The remote stat
/// is forwarded either way.
#[test]
fn local_path_calls_take_no_stop() {
    let pair = differing_pair(&[]);
    let script = format!(
        "import os\nfor i in range(200): os.stat('{l}/plain')\nprint(os.stat('{t}/fp/size').st_size)",
        l = p(&pair.local),
        t = pair.t()
    );
    let argv = ["python3", "-c", script.as_str()];
    let remote = format!("{}/fp/size", pair.t());
    let traced = |r: &Output| r.err().lines().filter(|l| l.contains(&remote)).count();
    let fast = run(pair.rscq_cmd(&["--trace"], &argv)).success();
    assert_eq!(fast.out(), "7\n", "{}", fast.dump());
    assert!(traced(&fast) >= 1, "{}", fast.dump());
    let slow = run(pair.rscq_cmd(&["--trace", "--optimize", WITHOUT_FASTPATH], &argv)).success();
    assert_eq!(slow.out(), "7\n", "{}", slow.dump());
    assert!(traced(&slow) >= 1, "{}", slow.dump());
    assert!(
        stops(&slow) >= stops(&fast) + 200,
        "200 local stats should cost 200 stops without the fast path and none with it\n{}\n{}",
        fast.dump(),
        slow.dump()
    );
}

/// A static binary (busybox) and a Go program have no libc to replace:
/// they keep the stops and get the same answers.
#[test]
fn static_and_go_programs_get_the_same_answers() {
    let pair = differing_pair(&[]);
    let (t, l) = (pair.t(), p(&pair.local));
    let r = run(pair.rscq_cmd(
        &[],
        &[
            "busybox",
            "stat",
            "-c",
            "%n %s",
            &format!("{t}/fp/size"),
            &format!("{l}/plain"),
            &format!("{t}/fp/ronly"),
        ],
    ))
    .success();
    assert_eq!(
        r.out(),
        format!("{t}/fp/size 7\n{l}/plain 4\n{t}/fp/ronly 5\n"),
        "{}",
        r.dump()
    );
    let go_dir = pair.local.join("gostat");
    fs::create_dir(&go_dir).expect("mkdir go");
    fs::write(
        go_dir.join("main.go"),
        "package main\nimport (\"fmt\"; \"os\")\nfunc main() {\n\tfor _, a := range os.Args[1:] {\n\t\tif fi, err := os.Stat(a); err != nil { fmt.Println(a, err) } else { fmt.Println(a, fi.Size()) }\n\t}\n}\n",
    )
    .expect("write go");
    fs::write(go_dir.join("go.mod"), "module gostat\ngo 1.19\n").expect("go.mod");
    let mut build = cmd(&["go", "build", "-o", "gostat", "."]);
    build
        .current_dir(&go_dir)
        .env("GOCACHE", pair.local.join("gocache"))
        .env("HOME", &pair.local)
        .env("GOFLAGS", "-mod=mod")
        .env("CGO_ENABLED", "0");
    let built = run(build);
    assert!(built.status.success(), "{}", built.dump());
    let gostat = p(&go_dir.join("gostat"));
    let r = run(pair.rscq_cmd(
        &[],
        &[
            gostat.as_str(),
            &format!("{t}/fp/size"),
            &format!("{l}/plain"),
            &format!("{t}/fp/lonly"),
        ],
    ))
    .success();
    assert_eq!(
        r.out(),
        format!(
            "{t}/fp/size 7\n{l}/plain 4\n{t}/fp/lonly stat {t}/fp/lonly: no such file or directory\n"
        ),
        "{}",
        r.dump()
    );
}

/// A listing and a stat answered from rscq's caches follow the server: a
/// file made on the server after the stat TTL is seen, with the fast path
/// on.
#[test]
fn a_file_made_on_the_server_after_the_ttl_is_seen() {
    let pair = differing_pair(&[]);
    let flag = pair.local.join("go-on");
    let script = format!(
        "import os, time, sys\nd = '{t}/fp'\nprint(sorted(os.listdir(d)), os.path.exists(d + '/late'), flush=True)\nwhile not os.path.exists('{f}'): time.sleep(0.05)\ntime.sleep(1.5)\nprint(sorted(os.listdir(d)), os.path.exists(d + '/late'), os.stat(d + '/late').st_size)",
        t = pair.t(),
        f = p(&flag)
    );
    let mut running = Running::spawn(pair.rscq_cmd(&[], &["python3", "-c", script.as_str()]));
    running.wait_stdout("False", Duration::from_secs(60));
    fs::write(pair.remote_tree.join("fp").join("late"), b"late!").expect("late");
    fs::write(&flag, b"").expect("flag");
    let r = running.finish(Duration::from_secs(60)).success();
    assert_eq!(
        r.out(),
        "['q', 'ronly', 'size'] False\n['late', 'q', 'ronly', 'size'] True 5\n",
        "{}",
        r.dump()
    );
}

/// The library's `realpath` against glibc's, with no tracer: the probe run
/// directly, once plain and once with the library preloaded (routing only
/// a path nothing here uses), over names that exercise each rule of the
/// algorithm (symlinks absolute and relative, loops, dangling, trailing
/// `/`, `/.` and `/..` after a file, `..` above the root, the cwd). The
/// outputs must be identical.
#[test]
fn the_librarys_realpath_gives_what_glibcs_does() {
    let pair = differing_pair(&[]);
    let bin = probe(&pair);
    let dir = pair.local.join("rp");
    fs::create_dir_all(dir.join("d").join("e")).expect("mkdir rp");
    fs::write(dir.join("d").join("f"), b"").expect("f");
    symlink("d/e", dir.join("l1")).expect("l1");
    symlink(dir.join("l1"), dir.join("l2")).expect("l2");
    symlink("loop2", dir.join("loop1")).expect("loop1");
    symlink("loop1", dir.join("loop2")).expect("loop2");
    symlink("nonexist", dir.join("dangling")).expect("dangling");
    symlink("../f", dir.join("d").join("e").join("up")).expect("up");
    let d = p(&dir);
    let names: Vec<String> = [
        ".",
        "..",
        "l1",
        "l2",
        "l2/",
        "l2/.",
        "l1/../f",
        "d/f",
        "d/f/",
        "d/f/.",
        "d/f/..",
        "d/nonexist",
        "d/nonexist/x",
        "loop1",
        "dangling",
        "dangling/",
        "d/e/up",
        "rel/../x",
        "/",
        "//",
        "/..",
        "/etc/passwd/",
        "/usr/bin/../lib",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        format!("{d}//d///e/"),
        format!("{d}/d/e/../../l1"),
        "../rp/l2/../f".to_owned(),
    ])
    .collect();
    let library = pair.local.join("fastpath.so");
    fs::write(&library, rscq::fastpath::LIBRARY).expect("write library");
    let config = rscq::fastpath::config_value([b"/nonexistent-mount".as_slice()]).expect("config");
    let run_probe = |preload: bool| {
        let mut c = cmd(&[bin.as_str(), "realpath"]);
        c.args(&names).current_dir(&dir);
        if preload {
            c.env("LD_PRELOAD", &library)
                .env(rscq::fastpath::CONFIG_VAR, &config);
        }
        run(c).success()
    };
    let (glibc, ours) = (run_probe(false), run_probe(true));
    assert!(
        glibc.out().ends_with("library absent\n"),
        "{}",
        glibc.dump()
    );
    assert!(ours.out().ends_with("library loaded\n"), "{}", ours.dump());
    assert!(ours.err().is_empty(), "{}", ours.dump());
    let answers = |o: &Output| {
        o.out()
            .lines()
            .filter(|l| !l.starts_with("library "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        answers(&ours),
        answers(&glibc),
        "{}\n{}",
        glibc.dump(),
        ours.dump()
    );
    assert!(
        glibc
            .out()
            .contains("loop1 -> Too many levels of symbolic links"),
        "{}",
        glibc.dump()
    );
}

/// `opendir` and `fopen` (libc opens their files inside libc, which the
/// library replaces too): each remote spelling lists and reads the remote
/// side, each local one the local side, in both modes, with the fast path
/// on and off, and also once the process holds a remote file (when the
/// library leaves both to libc). Each rscq line must say what the probe
/// run directly says of the path that holds the answer.
#[test]
fn opendir_and_fopen_give_the_remote_side() {
    each_mode(|mode| {
        let pair = differing_pair(mode);
        let bin = probe(&pair);
        let (t, l, base) = (pair.t(), p(&pair.local), p(&pair.env.base));
        let rt = p(&pair.remote_tree).to_owned();
        // (under rscq, run directly)
        let spellings: Vec<(String, String)> = vec![
            (format!("{t}/fp"), format!("{rt}/fp")),
            (format!("{t}/fp/size"), format!("{rt}/fp/size")),
            (format!("{t}/fp/lonly"), format!("{rt}/fp/lonly")),
            (format!("{l}/link_dir"), format!("{rt}/fp")),
            (format!("{l}/link_last"), format!("{rt}/fp/size")),
            (l.to_owned(), l.to_owned()),
            (format!("{l}/plain"), format!("{l}/plain")),
            (format!("@cd:{base}"), format!("@cd:{base}")),
            ("tree/fp".into(), format!("{rt}/fp")),
            ("local/plain".into(), format!("{l}/plain")),
            (format!("@cd:{t}/fp"), format!("@cd:{rt}/fp")),
            (".".into(), format!("{rt}/fp")),
            ("size".into(), format!("{rt}/fp/size")),
            (format!("@hold:{t}/fp/size"), format!("@hold:{rt}/fp/size")),
            (format!("{t}/fp"), format!("{rt}/fp")),
            (format!("{l}/link_dir"), format!("{rt}/fp")),
            (l.to_owned(), l.to_owned()),
            (format!("{l}/plain"), format!("{l}/plain")),
        ];
        let direct_args: Vec<&str> = spellings.iter().map(|(_, d)| d.as_str()).collect();
        let mut direct = vec!["streams"];
        direct.extend(direct_args);
        let direct = run(cmd(&std::iter::once(bin.as_str())
            .chain(direct)
            .collect::<Vec<_>>()));
        assert!(direct.status.success(), "{}", direct.dump());
        // The answer of each line: what follows the path (a chdir's or a
        // hold's line is compared whole, past its path).
        let answers = |out: &str| -> Vec<String> {
            out.lines()
                .map(|line| match line.split_once(' ') {
                    Some((first, rest)) if first == "chdir" || first == "hold" => {
                        rest.split_once(' ').map_or("", |(_, r)| r).to_owned()
                    }
                    Some((_, rest)) => rest.to_owned(),
                    None => line.to_owned(),
                })
                .collect()
        };
        let want = answers(&direct.out());
        assert_eq!(want.len(), spellings.len(), "{}", direct.dump());
        // The local and remote copies differ where it matters.
        assert_ne!(want[0], want[5], "{}", direct.dump());
        let args: Vec<String> = spellings.iter().map(|(r, _)| r.clone()).collect();
        for extra in [&[][..], &["--optimize", WITHOUT_FASTPATH][..]] {
            if !mode.is_empty() && !extra.is_empty() {
                continue; // --pure already has no fast path
            }
            let r = probe_run(&pair, extra, &bin, "streams", &args).success();
            assert_eq!(
                answers(&r.out()),
                want,
                "mode {mode:?} {extra:?}\n{}\n--- direct ---\n{}",
                r.dump(),
                direct.dump()
            );
        }
    });
}

/// With the fast path, `opendir` and `fopen` of local paths cost no stop
/// (libc's own opens inside them stopped before): 100 local `os.listdir`s,
/// and 100 probes that each `opendir` and twice `fopen` a local file.
#[test]
fn local_opendir_and_fopen_take_no_stop() {
    let pair = differing_pair(&[]);
    let bin = probe(&pair);
    let l = p(&pair.local).to_owned();
    let script = format!("import os\nfor i in range(100): os.listdir('{l}')\nprint('ok')");
    let python = ["python3", "-c", script.as_str()];
    let fast = run(pair.rscq_cmd(&[], &python)).success();
    let slow = run(pair.rscq_cmd(&["--optimize", WITHOUT_FASTPATH], &python)).success();
    assert_eq!((fast.out(), slow.out()), ("ok\n".into(), "ok\n".into()));
    assert!(
        stops(&slow) >= stops(&fast) + 100,
        "100 local listings should cost 100 stops without the fast path and none with it\n{}\n{}",
        fast.dump(),
        slow.dump()
    );
    // The probe's own stops (the loader's opens, and the library's) are
    // counted by a run with no path; each path then adds an opendir and two
    // fopens of a local file.
    let stops_of = |extra: &[&str], paths: usize| {
        let mut argv = vec![bin.clone(), "streams".into()];
        argv.extend(std::iter::repeat_n(format!("{l}/plain"), paths));
        let r = run(pair.rscq_cmd(extra, &argv)).success();
        assert_eq!(r.out().lines().count(), paths, "{}", r.dump());
        stops(&r)
    };
    let without = ["--optimize", WITHOUT_FASTPATH];
    let fast = stops_of(&[], 100) - stops_of(&[], 0);
    let slow = stops_of(&without, 100) - stops_of(&without, 0);
    assert_eq!(
        fast, 0,
        "100 local opendirs and 200 fopens stopped {fast} times"
    );
    assert!(
        slow >= 300,
        "without the fast path they stopped only {slow} times"
    );
}
