//! Tests of merging and validation in `resolve`, and of the shipped profiles.
//!
//! Tests only.

use super::*;
use clap::Parser;

fn args(a: &[&str]) -> ClientArgs {
    match ClientArgs::try_parse_from(std::iter::once("rscq").chain(a.iter().copied())) {
        Ok(a) => a,
        Err(e) => panic!("{a:?}: {e}"),
    }
}

fn env() -> Env {
    Env {
        home: Some("/home/u".into()),
        xdg_config_home: None,
    }
}

fn file(src: &str, name: &str) -> FileSettings {
    match parse_config_file(src, Path::new(name)) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    }
}

fn run(a: &[&str], f: Option<&FileSettings>) -> Result<ClientSettings, ConfigError> {
    resolve_with(&args(a), f, &env())
}

#[test]
fn defaults() {
    let s = run(&["--", "ls"], None).expect("resolve");
    assert_eq!(
        s,
        ClientSettings {
            remote: None,
            mounts: vec![],
            uname: false,
            net: false,
            optimizations: Optimizations::ALL,
            nagle: NagleSettings::default(),
            stat_ttl: crate::engine::DEFAULT_TTL,
            readahead_window: None,
            trace: false,
            stats: false,
            server_cert: None,
            identity_dir: "/home/u/.config/rscq".into(),
            known_servers: "/home/u/.config/rscq/known_servers".into(),
            program: vec!["ls".into()],
            forwarded_syscalls: None,
        }
    );
}

#[test]
fn every_flag_resolves() {
    let s = run(
        &[
            "--remote=[2001:db8::1]:9",
            "--mount=/remote=/",
            "--mount=/etc-r=/etc",
            "--uname",
            "--net",
            "--optimize=readahead",
            "--trace",
            "--stats",
            "--server-cert=~/srv.der",
            "--identity=/id",
            "--known-servers=/ks",
            "--",
            "cat",
            "/remote/etc/hostname",
        ],
        None,
    )
    .expect("resolve");
    assert_eq!(
        s.remote.as_ref().map(ToString::to_string),
        Some("[2001:db8::1]:9".into())
    );
    assert_eq!(s.mounts.len(), 2);
    assert!(s.uname && s.net && s.trace && s.stats);
    assert_eq!(s.optimizations.to_string(), "readahead");
    assert_eq!(s.server_cert, Some("/home/u/srv.der".into()));
    assert_eq!(s.identity_dir, PathBuf::from("/id"));
    assert_eq!(s.known_servers, PathBuf::from("/ks"));
    assert_eq!(s.program, vec!["cat", "/remote/etc/hostname"]);
}

#[test]
fn pure_flag_and_optimize() {
    assert!(
        run(&["--pure", "--", "x"], None)
            .expect("pure")
            .optimizations
            .is_pure()
    );
    assert!(
        run(&["--pure", "--optimize", "none", "--", "x"], None)
            .expect("pure + none")
            .optimizations
            .is_pure()
    );
    for list in ["all", "nagle", "readahead,compound"] {
        let e = run(&["--pure", "--optimize", list, "--", "x"], None).expect_err(list);
        assert!(
            matches!(e, ConfigError::PureConflictsWithOptimize { .. }),
            "{e}"
        );
        assert!(e.to_string().contains("--pure"), "{e}");
    }
    assert!(
        run(&["--optimize=none", "--", "x"], None)
            .expect("none")
            .optimizations
            .is_pure()
    );
}

#[test]
fn flags_override_toml_file() {
    let f = file(
        r#"
remote = "file-host:1000"
mounts = ["/from-file=/"]
optimize = "none"
server_cert = "certs/srv.der"
identity = "~/ids/rscq"
known_servers = "/etc/rscq/known"
trace = true
"#,
        "/profiles/p.toml",
    );
    // The file alone.
    let s = run(&["--", "x"], Some(&f)).expect("file");
    assert_eq!(
        s.remote.as_ref().map(|r| r.host.as_str()),
        Some("file-host")
    );
    assert_eq!(s.mounts[0].local, PathBuf::from("/from-file"));
    assert!(s.optimizations.is_pure());
    assert_eq!(
        s.server_cert,
        Some("/profiles/certs/srv.der".into()),
        "relative to the file"
    );
    assert_eq!(s.identity_dir, PathBuf::from("/home/u/ids/rscq"));
    assert_eq!(s.known_servers, PathBuf::from("/etc/rscq/known"));
    assert!(s.trace && !s.stats);

    // Flags win.
    let s = run(
        &[
            "--remote=flag-host",
            "--mount=/a=/x",
            "--mount=/b=/y",
            "--optimize=nagle",
            "--server-cert=rel.der",
            "--identity=/flag-id",
            "--known-servers=/flag-ks",
            "--stats",
            "--",
            "x",
        ],
        Some(&f),
    )
    .expect("flags");
    assert_eq!(
        s.remote.as_ref().map(ToString::to_string),
        Some("flag-host:4433".into())
    );
    let locals: Vec<_> = s.mounts.iter().map(|m| m.local.clone()).collect();
    assert_eq!(
        locals,
        vec![PathBuf::from("/a"), PathBuf::from("/b")],
        "flags replace file mounts"
    );
    assert!(s.optimizations.nagle && !s.optimizations.readahead);
    assert_eq!(
        s.server_cert,
        Some("rel.der".into()),
        "flag paths stay relative to cwd"
    );
    assert_eq!(s.identity_dir, PathBuf::from("/flag-id"));
    assert_eq!(s.known_servers, PathBuf::from("/flag-ks"));
    assert!(s.trace && s.stats, "booleans: file true stays, flag adds");

    // --pure on the command line replaces the file's optimize.
    let g = file("optimize = [\"nagle\"]\n", "g.toml");
    assert!(
        run(&["--pure", "--", "x"], Some(&g))
            .expect("pure")
            .optimizations
            .is_pure()
    );
}

#[test]
fn flags_override_rsc_config() {
    let f = file(
        "socket_on 0\ndisk_on 1\nlocal_path /unreal\nremote_path /\nREMOTE read\n",
        "rsc.config",
    );
    let s = run(&["--net", "--mount=/r=/etc", "--", "x"], Some(&f)).expect("resolve");
    assert!(s.net);
    assert_eq!(s.mounts, vec![Mount::new("/r", "/etc").expect("mount")]);
    assert_eq!(s.forwarded_syscalls.map(|x| x.len()), Some(1));
    assert!(!s.uname);
}

#[test]
fn mount_validation_on_command_line() {
    let e = run(&["--mount=/r=/", "--mount=/r/=/etc", "--", "x"], None).expect_err("dup");
    assert!(matches!(e, ConfigError::DuplicateMount { .. }));
    assert!(e.to_string().contains("/r"), "{e}");
    // Nesting is not duplication.
    let s = run(
        &["--mount=/r=/", "--mount=/r/etc=/srv/etc", "--", "x"],
        None,
    )
    .expect("nested");
    assert_eq!(s.mounts.len(), 2);
    for bad in [
        "--mount=/=/",
        "--mount=x=/",
        "--mount=/a=b",
        "--mount=/a/../b=/",
        "--mount=/a",
    ] {
        let r = ClientArgs::try_parse_from(["rscq", bad, "--", "x"]);
        assert!(r.is_err(), "{bad}");
    }
}

#[test]
fn xdg_and_missing_home() {
    let a = args(&["--", "x"]);
    let xdg = Env {
        home: Some("/home/u".into()),
        xdg_config_home: Some("/xdg".into()),
    };
    let s = resolve_with(&a, None, &xdg).expect("xdg");
    assert_eq!(s.identity_dir, PathBuf::from("/xdg/rscq"));
    assert_eq!(s.known_servers, PathBuf::from("/xdg/rscq/known_servers"));

    let relative_xdg = Env {
        home: Some("/home/u".into()),
        xdg_config_home: Some("rel".into()),
    };
    let s = resolve_with(&a, None, &relative_xdg).expect("relative xdg ignored");
    assert_eq!(s.identity_dir, PathBuf::from("/home/u/.config/rscq"));

    let e = resolve_with(&a, None, &Env::default()).expect_err("no home");
    assert!(matches!(
        e,
        ConfigError::NoConfigDir {
            flag: "--identity",
            ..
        }
    ));
    let a = args(&["--identity=/i", "--known-servers=/k", "--", "x"]);
    assert!(resolve_with(&a, None, &Env::default()).is_ok());
    let a = args(&["--identity=~/i", "--known-servers=/k", "--", "x"]);
    let e = resolve_with(&a, None, &Env::default()).expect_err("tilde, no home");
    assert!(matches!(e, ConfigError::TildeWithoutHome { .. }));
}

#[test]
fn keygen() {
    let a = args(&["keygen"]);
    let Some(ClientCommand::Keygen(k)) = &a.command else {
        panic!("keygen expected");
    };
    assert_eq!(
        keygen_dir(k, &env()).ok(),
        Some("/home/u/.config/rscq".into())
    );
    let k = KeygenArgs {
        dir: Some("~/other".into()),
    };
    assert_eq!(keygen_dir(&k, &env()).ok(), Some("/home/u/other".into()));
    assert!(matches!(
        resolve_with(&a, None, &env()),
        Err(ConfigError::MissingProgram)
    ));
}

#[test]
fn format_detection() {
    assert_eq!(
        detect_format(Path::new("a.toml"), "REMOTE read\n"),
        ConfigFormat::Toml
    );
    assert_eq!(
        detect_format(Path::new("a.TOML"), "REMOTE read\n"),
        ConfigFormat::Toml
    );
    assert_eq!(
        detect_format(Path::new("rsc.config"), "REMOTE read\n"),
        ConfigFormat::RscConfig
    );
    assert_eq!(
        detect_format(Path::new("profile"), "# x\nsocket_on 1\n"),
        ConfigFormat::RscConfig
    );
    assert_eq!(
        detect_format(Path::new("profile"), "uname = true\n"),
        ConfigFormat::Toml
    );
    // A .toml file in rsc.config syntax gets a TOML error naming the line.
    let e = parse_config_file("\nREMOTE read\n", Path::new("x.toml")).expect_err("toml");
    assert!(e.to_string().starts_with("x.toml:2:"), "{e}");
    // BOM is tolerated.
    assert!(parse_config_file("\u{feff}uname = true\n", Path::new("b.toml")).is_ok());
}

#[test]
fn resolve_reads_file_and_reports_missing_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let path = dir.join("p.toml");
    std::fs::write(&path, "uname = true\nmounts = [\"/remote=/\"]\n").expect("write");
    let mut a = args(&["--identity=/i", "--known-servers=/k", "--", "x"]);
    a.config = Some(path.clone());
    let s = resolve(&a).expect("resolve");
    assert!(s.uname);
    assert_eq!(s.mounts.len(), 1);

    a.config = Some(dir.join("does-not-exist.toml"));
    let e = resolve(&a).expect_err("missing");
    assert!(matches!(e, ConfigError::Read { .. }));
    assert!(e.to_string().contains("does-not-exist.toml"), "{e}");
}

#[test]
fn shipped_profiles_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let entries = std::fs::read_dir(&dir).expect("configs/ exists");
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if !path.is_file() {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("readable");
        let f = match parse_config_file(&src, &path) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        // And it must survive merging with an ordinary command line.
        if let Err(e) = run(&["--", "true"], Some(&f)) {
            panic!("{}: {e}", path.display());
        }
        names.push(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
    }
    names.sort();
    for expected in [
        "embedded.toml",
        "pure-baseline.toml",
        "remote-dir.toml",
        "rsc.config",
        "uname.toml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing configs/{expected}"
        );
    }
    let rsc = dir.join("rsc.config");
    let src = std::fs::read_to_string(&rsc).expect("rsc.config");
    assert_eq!(detect_format(&rsc, &src), ConfigFormat::RscConfig);
}

#[test]
fn nagle_settings_come_from_flags_over_the_file() {
    let f = file("nagle_delay = \"2ms\"\nnagle_bytes = 4096\n", "n.toml");
    let s = run(&["--", "ls"], Some(&f)).expect("resolve");
    assert_eq!(
        s.nagle,
        NagleSettings {
            delay: std::time::Duration::from_millis(2),
            bytes: 4096
        }
    );
    let s = run(&["--nagle-delay=300us", "--", "ls"], Some(&f)).expect("resolve");
    assert_eq!(s.nagle.delay, std::time::Duration::from_micros(300));
    assert_eq!(s.nagle.bytes, 4096);
    let s = run(&["--nagle-bytes=10", "--nagle-delay=0", "--", "ls"], None).expect("resolve");
    assert_eq!(
        s.nagle,
        NagleSettings {
            delay: std::time::Duration::ZERO,
            bytes: 10
        }
    );
}

#[test]
fn bad_nagle_settings_are_refused_with_their_line() {
    let e = parse_config_file("\nnagle_delay = \"5\"\n", Path::new("n.toml")).expect_err("no unit");
    assert!(
        e.to_string()
            .starts_with("n.toml:2: invalid nagle_delay `5`"),
        "{e}"
    );
    let e = parse_config_file("nagle_bytes = 0\n", Path::new("n.toml")).expect_err("zero");
    assert!(
        e.to_string().contains("n.toml:1: invalid nagle_bytes 0"),
        "{e}"
    );
    for bad in [
        &["--nagle-bytes=0", "--", "ls"][..],
        &["--nagle-delay=5", "--", "ls"],
        &["--nagle-delay=2s", "--", "ls"],
    ] {
        assert!(
            ClientArgs::try_parse_from(std::iter::once("rscq").chain(bad.iter().copied())).is_err(),
            "{bad:?}"
        );
    }
}

#[test]
fn stat_ttl_and_readahead_window_come_from_flags() {
    let s = run(
        &["--stat-ttl=250ms", "--readahead-window=1048576", "--", "ls"],
        None,
    )
    .expect("resolve");
    assert_eq!(s.stat_ttl, std::time::Duration::from_millis(250));
    assert_eq!(s.readahead_window, Some(1 << 20));
    let s = run(&["--", "ls"], None).expect("resolve");
    assert_eq!(s.stat_ttl, crate::engine::DEFAULT_TTL);
    assert_eq!(s.readahead_window, None);
    for bad in [
        &["--stat-ttl=5", "--", "ls"][..],
        &["--stat-ttl=2h", "--", "ls"],
        &["--stat-ttl=3601s", "--", "ls"],
        &["--readahead-window=1024", "--", "ls"],
    ] {
        let parsed = ClientArgs::try_parse_from(std::iter::once("rscq").chain(bad.iter().copied()));
        assert!(parsed.is_err(), "{bad:?} must be refused");
    }
}
