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
