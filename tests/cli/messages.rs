//! Messages and exit statuses: a missing program, `--help`, errors that
//! must say each thing once, the program without `--`.

use crate::run::{Out, home, output, rscq};
use std::process::Command;

/// What `env PROGRAM` says and returns, the model for rscq.
fn env_says(program: &str) -> (i32, String) {
    let mut cmd = Command::new("env");
    cmd.arg(program);
    let out = output(cmd);
    // "env: 'nosuchcmd': No such file or directory"
    let reason = out
        .stderr
        .trim_end()
        .rsplit(": ")
        .next()
        .unwrap_or_default()
        .to_owned();
    (out.code(), reason)
}

#[test]
fn missing_or_unrunnable_program_says_what_env_says() {
    let home = home();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir_s = dir.path().to_str().expect("utf-8").to_owned();
    for program in ["/nonexistent", "nosuchcmd-rscq-test", dir_s.as_str()] {
        let (code, reason) = env_says(program);
        assert!(code == 126 || code == 127, "env {program}: {code}");
        for args in [vec!["--", program], vec![program]] {
            let out = rscq(&args, home.path());
            assert_eq!(out.code(), code, "{out}");
            assert_eq!(
                out.stderr,
                format!("rscq: cannot run '{program}': {reason}\n"),
                "{out}"
            );
            assert!(out.stdout.is_empty(), "{out}");
        }
    }
    let (code, _) = env_says("/nonexistent");
    assert_eq!(code, 127);
    let (code, reason) = env_says(&dir_s);
    assert_eq!((code, reason.as_str()), (126, "Permission denied"));
}

#[test]
fn program_found_through_path() {
    let home = home();
    let bin = tempfile::tempdir().expect("tempdir");
    let script = bin.path().join("say-hello-rscq");
    std::fs::write(&script, "#!/bin/sh\necho hello \"$@\"\n").expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = crate::run::command(crate::run::RSCQ, &["say-hello-rscq", "x"], home.path());
    cmd.env("PATH", path);
    let out = output(cmd);
    assert_eq!((out.code(), out.stdout.as_str()), (0, "hello x\n"), "{out}");
}

#[test]
fn program_without_double_dash_as_strace() {
    let home = home();
    // Everything from the program on is the program's, options included.
    let out = rscq(&["echo", "a", "-n", "--stats", "--"], home.path());
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, "a -n --stats --\n"),
        "{out}"
    );
    assert!(!out.stderr.contains("calls"), "{out}");
    let out = rscq(&["--", "echo", "b"], home.path());
    assert_eq!((out.code(), out.stdout.as_str()), (0, "b\n"), "{out}");
    let out = rscq(&["sh", "-c", "exit 3"], home.path());
    assert_eq!(out.code(), 3, "{out}");
    // An unknown option before the program is still an error.
    let out = rscq(&["--frobnicate", "echo"], home.path());
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("--frobnicate"), "{out}");
}

#[test]
fn help_describes_net_as_working() {
    let home = home();
    let out = rscq(&["--help"], home.path());
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains("--net"), "{out}");
    assert!(!out.stdout.contains("not yet implemented"), "{out}");
    let net_line = out
        .stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("--net"))
        .take(2)
        .collect::<String>();
    assert!(net_line.contains("sockets"), "{net_line}");
    for file in ["configs/pure-baseline.toml", "configs/rsc.config"] {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + file)
                .expect("read config");
        assert!(!text.contains("not yet"), "{file}");
        assert!(!text.contains("later feature"), "{file}");
    }
}

/// No part of `out`'s message may appear twice.
fn says_once(out: &Out, part: &str) {
    assert_eq!(
        out.stderr.matches(part).count(),
        1,
        "{part:?} once in:\n{out}"
    );
}

#[test]
fn errors_say_each_thing_once() {
    let home = home();
    let out = rscq(
        &["--config", "/nonexistent/c.toml", "--", "true"],
        home.path(),
    );
    assert_eq!(out.code(), 125, "{out}");
    says_once(&out, "No such file or directory");
    assert!(out.stderr.contains("/nonexistent/c.toml"), "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");

    let cfg = home.path().join("bad.toml");
    std::fs::write(&cfg, "\nremote = \"h:notaport\"\n").expect("write");
    let out = rscq(
        &["--config", cfg.to_str().expect("utf-8"), "true"],
        home.path(),
    );
    assert_eq!(out.code(), 125, "{out}");
    says_once(&out, "is not a number");
    assert!(out.stderr.contains("bad.toml:2"), "{out}");
}
