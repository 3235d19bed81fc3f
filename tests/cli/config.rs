//! Settings files as a user keeps them: `~/.config/rscq/config.toml`
//! found by default (under `$XDG_CONFIG_HOME` when set), `[server.NAME]`
//! sections chosen with `-S NAME`.

use crate::run::{RSCQ, command, home, output, rscq};

const CONFIG: &str = r#"# defaults for every run
trace = false

[server.counted]
stats = true

[server.other]
uname = true
"#;

fn write_config(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("rscq").join("config.toml");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn default_file_and_server_sections() {
    let home = home();
    write_config(&home.path().join(".config"), CONFIG);
    // The section's `stats = true` gives the summary at exit.
    let out = rscq(&["-S", "counted", "echo", "hi"], home.path());
    assert_eq!((out.code(), out.stdout.as_str()), (0, "hi\n"), "{out}");
    assert!(out.stderr.contains("rscq: total"), "{out}");
    // Without -S the top level only: no summary.
    let out = rscq(&["echo", "hi"], home.path());
    assert_eq!((out.code(), out.stderr.as_str()), (0, ""), "{out}");
}

#[test]
fn xdg_config_home_wins_over_home() {
    let home = home();
    let xdg = tempfile::tempdir().expect("tempdir");
    write_config(&home.path().join(".config"), "[server.h]\n");
    write_config(xdg.path(), CONFIG);
    let mut cmd = command(RSCQ, &["-S", "counted", "true"], home.path());
    cmd.env("XDG_CONFIG_HOME", xdg.path());
    let out = output(cmd);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("rscq: total"), "{out}");
}

#[test]
fn unknown_server_lists_known_ones() {
    let home = home();
    let path = write_config(&home.path().join(".config"), CONFIG);
    let out = rscq(&["-S", "nosuch", "true"], home.path());
    assert_eq!(out.code(), 125, "{out}");
    assert_eq!(
        out.stderr,
        format!(
            "rscq: -S nosuch: {} has no [server.nosuch]; known servers: counted, other\n",
            path.display()
        ),
        "{out}"
    );
}

#[test]
fn malformed_default_file_is_an_error_with_its_line() {
    let home = home();
    let path = write_config(
        &home.path().join(".config"),
        "uname = true\n\nstats = yes\n",
    );
    let out = rscq(&["true"], home.path());
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr
            .starts_with(&format!("rscq: {}:3:", path.display())),
        "{out}"
    );
    // --config replaces the default file, which is then not read.
    let other = home.path().join("ok.toml");
    std::fs::write(&other, "stats = true\n").expect("write");
    let out = rscq(
        &["--config", other.to_str().expect("utf-8"), "true"],
        home.path(),
    );
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("rscq: total"), "{out}");
}

#[test]
fn an_unreachable_remote_of_several_fails_the_run_naming_it() {
    let home = home();
    write_config(
        &home.path().join(".config"),
        "[[remotes]]\nname = \"nas\"\naddress = \"nas.invalid\"\n",
    );
    // Two remotes (the embedded executor and nas): nas cannot be
    // resolved, so the run fails before the program starts, naming it.
    let out = rscq(
        &[
            "--mount",
            "/b=/",
            "--mount",
            "/d=nas:/export",
            "--",
            "echo",
            "ran",
        ],
        home.path(),
    );
    assert_eq!(out.code(), 125, "{out}");
    assert!(
        out.stderr
            .starts_with("rscq: cannot resolve server address nas.invalid:4433 (remote nas)"),
        "{out}"
    );
    assert!(!out.stderr.contains("remotes ("), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    // A name for the default remote's address is that remote: it is
    // tried (and here cannot be reached), not refused.
    let out = rscq(
        &["--remote=nas.invalid", "--net=nas", "--", "true"],
        home.path(),
    );
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("nas.invalid"), "{out}");
    assert!(!out.stderr.contains("remotes ("), "{out}");
    // `--net` alone still means the default remote, before the program.
    let out = rscq(&["--net", "true"], home.path());
    assert_eq!(out.code(), 0, "{out}");
}
