//! Packaging: the man page and shell completions render, the systemd unit
//! is valid and hardened and runs the server from its config file.

use std::path::Path;
use std::process::Command;

use clap::CommandFactory;
use rscq::config::ClientArgs;

use crate::run::{have, home, on_path, output, rscq};

/// Every long flag of rscq, from clap.
fn long_flags() -> Vec<String> {
    let flags: Vec<String> = ClientArgs::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    assert!(flags.len() > 15, "{flags:?}");
    flags
}

#[test]
fn man_page_renders_with_every_flag() {
    let home = home();
    let out = rscq(&["--generate", "man"], home.path());
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.contains(".TH rscq 1"), "{out}");
    let page = home.path().join("rscq.1");
    std::fs::write(&page, &out.stdout).expect("write");
    if !have("man") {
        return; // the roff text was checked above
    }
    let rendered = output({
        let mut c = Command::new("man");
        c.arg("-l")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .env("MAN_KEEP_FORMATTING", "0");
        c
    });
    assert_eq!(rendered.code(), 0, "{rendered}");
    // Strip overstrike (bold/underline) so flags read as typed.
    let mut plain = String::new();
    for c in rendered.stdout.chars() {
        if c == '\u{8}' {
            plain.pop();
        } else {
            plain.push(c);
        }
    }
    let plain = plain.replace(['\u{2010}', '\u{2212}'], "-");
    assert!(plain.contains("rscq(1)"), "{plain}");
    for flag in long_flags() {
        assert!(
            plain.contains(&flag),
            "{flag} missing from the man page:\n{plain}"
        );
    }
}

#[test]
fn completions_render_for_each_shell() {
    let home = home();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = rscq(&["--generate", "completions", shell], home.path());
        assert_eq!(out.code(), 0, "{out}");
        for flag in long_flags() {
            let bare = flag.trim_start_matches('-');
            assert!(out.stdout.contains(bare), "{shell}: no {flag}");
        }
    }
    // bash parses its script.
    let script = home.path().join("rscq.bash");
    std::fs::write(
        &script,
        rscq(&["--generate", "completions", "bash"], home.path()).stdout,
    )
    .expect("write");
    let check = output({
        let mut c = Command::new("bash");
        c.arg("-n").arg(&script);
        c
    });
    assert_eq!(check.code(), 0, "{check}");
    // The function is defined and registered when sourced.
    let loaded = output({
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!(". '{}' && complete -p rscq", script.display()));
        c
    });
    assert_eq!(loaded.code(), 0, "{loaded}");
    assert!(loaded.stdout.contains("rscq"), "{loaded}");

    let bad = rscq(&["--generate", "completions", "tcsh"], home.path());
    assert_ne!(bad.code(), 0, "{bad}");
    assert!(bad.stderr.contains("tcsh"), "{bad}");
    let bad = rscq(&["--generate", "manual"], home.path());
    assert_ne!(bad.code(), 0, "{bad}");
}

#[test]
fn systemd_unit_is_hardened_and_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("configs/rscq-server.service")).expect("unit");
    let has = |line: &str| unit.lines().any(|l| l.trim() == line);
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "User=rscq",
        "ReadWritePaths=/srv/export",
        "ExecStart=/usr/local/bin/rscq-server --config /etc/rscq/server.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(has(line), "no `{line}` in the unit");
    }
    // The User= is explained.
    assert!(unit.contains("# User=:"), "User= is not documented");
    // The example server config it names parses and sets root to the
    // ReadWritePaths= export.
    let toml = std::fs::read_to_string(root.join("configs/rscq-server.toml")).expect("toml");
    let parsed = rscq::config::parse_server_toml(&toml, Path::new("/etc/rscq/server.toml"))
        .expect("server.toml");
    assert_eq!(parsed.root.as_deref(), Some(Path::new("/srv/export")));

    // systemd's own check, where it is installed: no unknown or invalid
    // settings (the man: documentation link needs the page installed).
    let home = home();
    let copy = home.path().join("rscq-server.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/local/bin/rscq-server",
            env!("CARGO_BIN_EXE_rscq-server"),
        ),
    )
    .expect("write");
    if !on_path("systemd-analyze") {
        return;
    }
    let verify = output({
        let mut c = Command::new("systemd-analyze");
        c.arg("verify").arg(&copy);
        c
    });
    for line in verify.stderr.lines() {
        assert!(
            line.contains("Command 'man rscq(1)' failed") || line.contains("User rscq"),
            "systemd-analyze verify:\n{verify}"
        );
    }
}
