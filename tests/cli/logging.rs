//! Logging: `-v`/`-vv` are info/debug unless RUST_LOG says otherwise, and
//! colour codes only reach a terminal.

use std::process::Command;

use crate::run::{RSCQ, command, have, home, output};

#[test]
fn verbose_levels_and_no_colour_in_a_pipe() {
    let home = home();
    let run = |args: &[&str], rust_log: Option<&str>| {
        let mut cmd = command(RSCQ, args, home.path());
        if let Some(v) = rust_log {
            cmd.env("RUST_LOG", v);
        }
        output(cmd)
    };
    let quiet = run(&["true"], None);
    assert_eq!((quiet.code(), quiet.stderr.as_str()), (0, ""), "{quiet}");
    let info = run(&["-v", "true"], None);
    assert!(info.stderr.contains(" INFO "), "{info}");
    assert!(!info.stderr.contains(" DEBUG "), "{info}");
    let debug = run(&["-vv", "true"], None);
    assert!(debug.stderr.contains(" DEBUG "), "{debug}");
    for out in [&info, &debug] {
        assert_eq!(out.code(), 0, "{out}");
        assert!(
            !out.stderr.contains('\x1b'),
            "an escape code in a pipe:\n{out}"
        );
    }
    // RUST_LOG wins over -v.
    let off = run(&["-vv", "true"], Some("off"));
    assert_eq!(off.stderr, "", "{off}");
    let only_info = run(&["true"], Some("info"));
    assert!(only_info.stderr.contains(" INFO "), "{only_info}");

    // On a terminal (script(1) gives it one) the same run is coloured, so
    // the pipe check above is not vacuous.
    let mut tty = Command::new("script");
    tty.args(["-qec", &format!("{RSCQ} -vv true"), "/dev/null"])
        .env("HOME", home.path())
        .env_remove("RUST_LOG");
    if !have("script") {
        return;
    }
    let coloured = output(tty);
    if coloured.code() == 0 && !coloured.stdout.is_empty() {
        assert!(coloured.stdout.contains('\x1b'), "{coloured}");
    }
}

/// Every log line of `text` is one JSON object with a level and a message
/// or fields; returns how many there were.
fn json_lines(text: &str, prefix_of_messages: &str) -> usize {
    let mut n = 0;
    for line in text.lines().filter(|l| !l.starts_with(prefix_of_messages)) {
        let trimmed = line.trim();
        assert!(
            trimmed.starts_with('{') && trimmed.ends_with('}'),
            "not a JSON object: {line:?}\n{text}"
        );
        assert!(trimmed.contains("\"level\":\""), "no level: {line:?}");
        assert!(trimmed.contains("\"fields\":{"), "no fields: {line:?}");
        assert!(!line.contains('\x1b'), "an escape code: {line:?}");
        n += 1;
    }
    n
}

#[test]
fn log_format_json_on_both_binaries() {
    let home = home();
    let mut cmd = command(RSCQ, &["-v", "--log-format", "json", "true"], home.path());
    cmd.env_remove("RUST_LOG");
    let out = output(cmd);
    assert_eq!(out.code(), 0, "{out}");
    assert!(json_lines(&out.stderr, "rscq:") > 0, "no log line:\n{out}");
    // The same from the settings file.
    let cfg = home.path().join("log.toml");
    std::fs::write(&cfg, "log_format = \"json\"\nverbose = 1\n").expect("write");
    let mut cmd = command(
        RSCQ,
        &["--config", cfg.to_str().expect("utf-8"), "true"],
        home.path(),
    );
    cmd.env_remove("RUST_LOG");
    let out = output(cmd);
    assert_eq!(out.code(), 0, "{out}");
    assert!(json_lines(&out.stderr, "rscq:") > 0, "no log line:\n{out}");
    // Text stays the default: the same run without the key is not JSON.
    let mut cmd = command(RSCQ, &["-v", "true"], home.path());
    cmd.env_remove("RUST_LOG");
    let text = output(cmd);
    assert!(text.stderr.contains(" INFO "), "{text}");
    assert!(!text.stderr.contains("\"level\""), "{text}");
    let bad = output(command(RSCQ, &["--log-format", "xml", "true"], home.path()));
    assert_eq!(bad.code(), 2, "{bad}");
    assert!(bad.stderr.contains("xml"), "{bad}");

    // rscq-server: its info lines (limits, each session) as JSON.
    let root = home.path().join("export");
    std::fs::create_dir_all(&root).expect("mkdir");
    let clients = home.path().join("clients.txt");
    std::fs::write(&clients, "").expect("write");
    let (srv, _port) = crate::keys::server_with(
        home.path(),
        &root,
        &clients,
        &["-v", "--log-format", "json"],
    );
    // Started: the lines before "listening on" are all written.
    let err = srv.stderr();
    assert!(json_lines(&err, "rscq-server:") > 0, "no log line:\n{err}");
}
