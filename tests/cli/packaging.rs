//! Packaging: the man page and shell completions render, the systemd unit
//! is valid and hardened and runs the server from its config file, and
//! `cargo install` installs the tool and nothing else.

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

/// The bin targets `cargo install --path .` installs (with no `--features`):
/// the root package's bins whose required features the default features
/// turn on. Read from `cargo metadata`, which sees bins cargo discovers on
/// its own too; a real `cargo install` would rebuild the tree and wait for
/// the build lock this test run holds.
#[test]
fn cargo_install_installs_only_rscq_and_rscq_server() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let meta = output({
        let mut c = Command::new(cargo);
        c.args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
        c
    });
    assert_eq!(meta.code(), 0, "{meta}");
    let meta: serde_json::Value = serde_json::from_str(&meta.stdout).expect("metadata json");
    let package = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "rscq")
        .expect("package rscq");
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The default features and every feature they turn on.
    let features = &package["features"];
    let mut on = strings(&features["default"]);
    let mut i = 0;
    while let Some(name) = on.get(i).cloned() {
        for next in strings(&features[name.as_str()]) {
            if !on.contains(&next) {
                on.push(next);
            }
        }
        i += 1;
    }
    let bins: Vec<(String, Vec<String>)> = package["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|t| strings(&t["kind"]).iter().any(|k| k == "bin"))
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_owned(),
                strings(&t["required-features"]),
            )
        })
        .collect();
    let mut installed: Vec<&str> = bins
        .iter()
        .filter(|(_, required)| required.iter().all(|f| on.contains(f)))
        .map(|(name, _)| name.as_str())
        .collect();
    installed.sort_unstable();
    assert_eq!(
        installed,
        ["rscq", "rscq-server"],
        "bins: {bins:?}, default features: {on:?}"
    );

    // The delay line is still built for the tests and benches: a bin of
    // this package behind `delayline`, which the dev-dependency on the
    // package itself turns on.
    let delayline = bins
        .iter()
        .find(|(name, _)| name == "rscq-delayline")
        .expect("rscq-delayline is no longer a bin target");
    assert_eq!(delayline.1, ["delayline"], "{bins:?}");
    let self_dev = package["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .find(|d| d["name"] == "rscq" && d["kind"] == "dev")
        .expect("no dev-dependency on rscq itself");
    assert!(
        strings(&self_dev["features"])
            .iter()
            .any(|f| f == "delayline"),
        "{self_dev}"
    );
}
