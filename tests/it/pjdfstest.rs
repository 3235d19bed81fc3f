//! The POSIX file-system conformance suite pjdfstest (the `pjdfstest`
//! crate, the Rust port of pjd/pjdfstest, which `tests/run.sh` installs from
//! crates.io into `target/pjdfstest`), run natively on a fresh directory and
//! under rscq with the directory inside a mount, in both modes, against a
//! root `rscq-server` and the embedded executor. Every test case that
//! passes natively must pass under rscq, except the ones listed in
//! [`KNOWN_GAPS`], which the README lists with the same reasons; a listed
//! case that starts passing fails the test too, so the list stays true.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{Backend, MODES, Pair, cmd, have_root, p, run_timeout};

/// Cases that pass natively and fail under rscq, with the reason (README,
/// "What does not work yet").
const KNOWN_GAPS: &[(&str, &str)] = &[
    // ETXTBSY needs the file to be running, and remote files cannot be
    // executed yet.
    ("open::etxtbsy", "exec of a remote file"),
    ("truncate::etxtbsy", "exec of a remote file"),
    // The case mounts a file system on a directory of the mount.
    ("rmdir::ebusy", "mount point in a mount"),
];

/// Where `tests/run.sh` installs the suite.
fn suite() -> Option<PathBuf> {
    let path = std::env::var_os("RSCQ_PJDFSTEST").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pjdfstest/bin/pjdfstest"),
        PathBuf::from,
    );
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("RSCQ_REQUIRE_ROOT_TESTS").as_deref() != Ok("1"),
        "pjdfstest is not at {} (tests/run.sh installs it)",
        path.display()
    );
    eprintln!(
        "NOTICE: pjdfstest skipped: {} is missing (tests/run.sh installs it)",
        path.display()
    );
    None
}

/// The suite's configuration: Debian's `nobody`/`nogroup` and
/// `daemon`/`daemon` as the users it switches to.
const CONFIG: &str = r#"
[features]
posix_fallocate = {}
[settings]
naptime = 0.01
allow_remount = false
[dummy_auth]
entries = [["nobody", "nogroup"], ["daemon", "daemon"]]
"#;

/// Case names by outcome, from the suite's report lines (`NAME   ok`).
fn outcomes(report: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut ok, mut failed) = (BTreeSet::new(), BTreeSet::new());
    for line in report.lines() {
        let mut words = line.split_whitespace();
        let (Some(name), Some(verdict), None) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        match verdict {
            "ok" => ok.insert(name.to_string()),
            "FAILED" => failed.insert(name.to_string()),
            _ => false,
        };
    }
    (ok, failed)
}

#[test]
fn pjdfstest_passes_under_rscq_as_natively() {
    if !have_root("pjdfstest_passes_under_rscq_as_natively") {
        return;
    }
    let Some(suite) = suite() else { return };
    let timeout = Duration::from_secs(600);
    let known: BTreeSet<String> = KNOWN_GAPS.iter().map(|(n, _)| (*n).to_string()).collect();
    for backend in [Backend::Remote, Backend::Embedded] {
        for mode in MODES {
            let pair = Pair::new(backend, mode);
            let config = pair.env.base.join("pjdfstest.toml");
            fs::write(&config, CONFIG).expect("write config");
            let native_dir = pair.local.join("pjd");
            fs::create_dir(&native_dir).expect("mkdir native");
            let native = run_timeout(
                cmd(&[
                    p(&suite),
                    "-c".into(),
                    p(&config),
                    "-p".into(),
                    p(&native_dir),
                ]),
                timeout,
            );
            let (native_ok, native_failed) = outcomes(&native.out());
            assert!(
                native_ok.len() > 300 && native_failed.is_empty(),
                "the native run is the reference and must pass\n{}",
                native.dump()
            );
            fs::create_dir(pair.remote_tree.join("pjd")).expect("mkdir remote");
            let inside = format!("{}/pjd", pair.t());
            let mut c = pair.rscq_cmd(
                &[],
                &[p(&suite), "-c".into(), p(&config), "-p".into(), inside],
            );
            c.current_dir(&pair.env.base);
            let under = run_timeout(c, timeout);
            let (rscq_ok, _) = outcomes(&under.out());
            let rscq_only: BTreeSet<String> = native_ok.difference(&rscq_ok).cloned().collect();
            let new: Vec<_> = rscq_only.difference(&known).collect();
            let fixed: Vec<_> = known.difference(&rscq_only).collect();
            assert!(
                new.is_empty() && fixed.is_empty(),
                "({backend:?} {mode:?}) pjdfstest under rscq: {} of {} native passes fail; \
                 not in KNOWN_GAPS: {new:?}; in KNOWN_GAPS but passing now (remove them \
                 here and in the README): {fixed:?}\n{}",
                rscq_only.len(),
                native_ok.len(),
                under.dump()
            );
        }
    }
}

#[test]
fn the_report_parser_reads_verdicts() {
    let report = "chmod::a                                ok\n\
                  chmod::b   FAILED\n\tassertion failed\n\
                  chmod::c   skipped\n\
                  Summary: 1 failed, 1 skipped, 1 passed";
    let (ok, failed) = outcomes(report);
    assert_eq!(ok.into_iter().collect::<Vec<_>>(), ["chmod::a"]);
    assert_eq!(failed.into_iter().collect::<Vec<_>>(), ["chmod::b"]);
}
