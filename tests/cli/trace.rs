//! `--trace` as strace prints it: symbolic flags, the program's fd and
//! path, errno names, one field order, the data read; `-o FILE`,
//! `--trace-time`; and the warning for a mount whose remote path is missing.

use crate::run::{Out, home, rscq};

/// The trace lines of `out`'s stderr with the pid and the round-trip times
/// replaced by `N`, so that they can be compared exactly.
fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter(|l| l.starts_with("[pid "))
        .map(normalize)
        .collect()
}

fn normalize(line: &str) -> String {
    let after_pid = line.split_once("] ").map_or(line, |(_, rest)| rest);
    let mut out = format!("[pid N] {after_pid}");
    if let Some(at) = out.rfind(" <")
        && let Some(end) = out[at..].find(" us>")
    {
        out.replace_range(at..at + end + 4, " <N us>");
    }
    out
}

fn run_cat(dir: &std::path::Path, extra: &[&str]) -> Out {
    let mount = format!("/remote={}", dir.display());
    let mut args = vec!["--mount", &mount];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "cat", "/remote/a", "/remote/missing"]);
    rscq(&args, home().path())
}

#[test]
fn trace_lines_read_like_strace() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a"), "hello\n").expect("write");
    for pure in [false, true] {
        let mut flags = vec!["--trace"];
        if pure {
            flags.push("--pure");
        }
        let out = run_cat(dir.path(), &flags);
        assert_eq!(out.code(), 1, "{out}");
        assert_eq!(out.stdout, "hello\n", "{out}");
        let got = lines(&out.stderr, "rscq: ");
        // Without --pure the listing rscq keeps of /remote answers the
        // missing file's open, and the open of a small file brings its
        // bytes (smallfile), so its reads are answered too; with it every
        // call is a round trip.
        let answered = if pure { "<N us>" } else { "<local>" };
        let want = [
            r#"[pid N] openat("/remote/a", O_RDONLY) = 3 <N us>"#.to_string(),
            format!("[pid N] newfstatat(3) = 0 {answered}"),
            format!(r#"[pid N] read(3, "hello\n", 131072) = 6 {answered}"#),
            format!(r#"[pid N] read(3, "", 131072) = 0 {answered}"#),
            // Nothing held to flush: the close needs no round trip.
            "[pid N] close(3, flush) = 0 <local>".to_string(),
            format!(
                r#"[pid N] openat("/remote/missing", O_RDONLY) = -1 ENOENT (No such file or directory) {answered}"#
            ),
        ];
        assert_eq!(got, want, "pure {pure}:\n{out}");
        assert!(!out.stderr.contains("os error"), "{out}");
    }
}

#[test]
fn trace_file_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a"), "hello\n").expect("write");
    let log = dir.path().join("trace.log");
    let log_arg = log.display().to_string();
    let out = run_cat(dir.path(), &["-o", &log_arg, "--trace-time"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        !out.stderr.contains("[pid "),
        "trace lines on stderr:\n{out}"
    );
    let text = std::fs::read_to_string(&log).expect("trace file");
    let first = text.lines().next().expect("a line");
    let (stamp, rest) = first.split_once(' ').expect("a stamp");
    let digits: Vec<bool> = stamp.chars().map(|c| c.is_ascii_digit()).collect();
    assert_eq!(stamp.len(), 15, "{first}");
    assert!(
        stamp.chars().enumerate().all(|(i, c)| match i {
            2 | 5 => c == ':',
            8 => c == '.',
            _ => digits[i],
        }),
        "{first}"
    );
    assert_eq!(
        normalize(rest),
        r#"[pid N] openat("/remote/a", O_RDONLY) = 3 <N us>"#
    );
    assert!(
        text.contains("ENOENT (No such file or directory)"),
        "{text}"
    );
}

#[test]
fn a_mount_of_a_missing_remote_path_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nonexistent");
    let bad = format!("/r={}", missing.display());
    let out = rscq(&["--mount", &bad, "--", "true"], home().path());
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.stderr,
        format!(
            "rscq: warning: --mount {bad}: {} does not exist on the server\n",
            missing.display()
        ),
        "{out}"
    );
    let good = format!("/r={}", dir.path().display());
    let out = rscq(&["--mount", &good, "--", "true"], home().path());
    assert_eq!((out.code(), out.stderr.as_str()), (0, ""), "{out}");
}

/// `sendfile` and `copy_file_range` between two remote files (the server
/// copies) and between a remote file and a local one (refused, so programs
/// read and write): every line shows the program's own fds in the call's
/// own order, never rscq's remote handles (`#N`).
#[test]
fn copies_show_the_programs_fds() {
    let script = r#"
import os, sys
remote, local = sys.argv[1], sys.argv[2]
src = os.open(remote + "/a", os.O_RDONLY)
dst = os.open(remote + "/copy", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
loc = os.open(local + "/copy", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("fds", src, dst, loc)
print(os.sendfile(dst, src, 0, 3))
print(os.copy_file_range(src, dst, 3, 2, 3))
for call in (lambda: os.sendfile(loc, src, None, 3), lambda: os.copy_file_range(src, loc, 3)):
    try:
        call()
    except OSError as e:
        print("errno", e.errno)
"#;
    let remote = tempfile::tempdir().expect("tempdir");
    let local = tempfile::tempdir().expect("tempdir");
    std::fs::write(remote.path().join("a"), "hello\n").expect("write");
    let file = local.path().join("copy.py");
    std::fs::write(&file, script).expect("write");
    let mount = format!("/remote={}", remote.path().display());
    let script_arg = file.display().to_string();
    let local_arg = local.path().display().to_string();
    for pure in [false, true] {
        let mut args = vec!["--trace", "--mount", &mount];
        if pure {
            args.push("--pure");
        }
        args.extend_from_slice(&["--", "python3", &script_arg, "/remote", &local_arg]);
        let out = rscq(&args, home().path());
        assert_eq!(out.code(), 0, "{out}");
        let printed: Vec<&str> = out.stdout.lines().collect();
        let fds: Vec<&str> = printed
            .first()
            .and_then(|l| l.strip_prefix("fds "))
            .unwrap_or_else(|| panic!("no fds line:\n{out}"))
            .split(' ')
            .collect();
        let [src, dst, loc] = fds[..] else {
            panic!("{out}")
        };
        assert_eq!(
            printed[1..],
            ["3", "3", "errno 22", "errno 18"],
            "pure {pure}:\n{out}"
        );
        let got: Vec<String> = lines(&out.stderr, "rscq: ")
            .into_iter()
            .filter(|l| {
                l.starts_with("[pid N] sendfile(") || l.starts_with("[pid N] copy_file_range(")
            })
            .collect();
        let want = [
            format!("[pid N] sendfile({dst}, {src}, [0], 3) = 3 <N us>"),
            format!("[pid N] copy_file_range({src}, [2], {dst}, [3], 3, 0) = 3 <N us>"),
            format!(
                "[pid N] sendfile({loc}, {src}, NULL, 3) = -1 EINVAL (Invalid argument) <local>"
            ),
            format!(
                "[pid N] copy_file_range({src}, NULL, {loc}, NULL, 3, 0) = -1 EXDEV (Cross-device link) <local>"
            ),
        ];
        assert_eq!(got, want, "pure {pure}:\n{out}");
        assert!(!out.stderr.contains('#'), "a remote handle shown:\n{out}");
        // The server copied "hel" at 0, then "llo" from offset 2 at 3.
        let copied = std::fs::read(remote.path().join("copy")).expect("copy");
        assert_eq!(copied, b"helllo", "pure {pure}");
    }
}
