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
            net_send_window: DEFAULT_NET_SEND_WINDOW,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            trace: false,
            trace_file: None,
            trace_time: false,
            stats: false,
            verbose: 0,
            log_format: LogFormat::Text,
            server_cert: None,
            identity_dir: "/home/u/.config/rscq".into(),
            known_servers: "/home/u/.config/rscq/known_servers".into(),
            program: vec!["ls".into()],
            forwarded_syscalls: None,
            placement: Placement::single(RemoteSpec::default_remote(None, None), 0),
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
fn a_trace_file_implies_trace_and_is_found_like_other_paths() {
    let s = run(&["-o", "~/t.log", "--trace-time", "--", "x"], None).expect("flags");
    assert!(s.trace && s.trace_time);
    assert_eq!(s.trace_file, Some(PathBuf::from("/home/u/t.log")));
    let src = "trace_file = \"t.log\"\ntrace_time = true\n";
    let f = parse_toml(src, Path::new("/etc/rscq/c.toml")).expect("parse");
    let s = run(&["--", "x"], Some(&f)).expect("file");
    assert!(s.trace && s.trace_time);
    assert_eq!(s.trace_file, Some(PathBuf::from("/etc/rscq/t.log")));
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
        show: false,
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
    a.config = vec![path.clone()];
    let s = resolve(&a).expect("resolve");
    assert!(s.uname);
    assert_eq!(s.mounts.len(), 1);

    a.config = vec![dir.join("does-not-exist.toml")];
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
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        // The server's files are checked by its own parser.
        if name
            .as_deref()
            .is_some_and(|n| n.starts_with("rscq-server"))
        {
            if name.as_deref() == Some("rscq-server.toml") {
                let src = std::fs::read_to_string(&path).expect("readable");
                if let Err(e) = parse_server_toml(&src, &path) {
                    panic!("{e}");
                }
            }
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

#[test]
fn idle_timeout_from_flag_and_key() {
    let s = run(&["--", "ls"], None).expect("resolve");
    assert_eq!(s.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    let f = file("idle_timeout = \"90s\"\n", "p.toml");
    let s = run(&["--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.idle_timeout, std::time::Duration::from_secs(90));
    // The flag wins.
    let s = run(&["--idle-timeout", "3s", "--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.idle_timeout, std::time::Duration::from_secs(3));
    for bad in ["500ms", "3601s", "60", "0"] {
        let flag = format!("--idle-timeout={bad}");
        let parsed = ClientArgs::try_parse_from(["rscq", flag.as_str(), "--", "ls"]);
        assert!(parsed.is_err(), "{bad} must be refused");
        let src = format!("\nidle_timeout = \"{bad}\"\n");
        let e = parse_config_file(&src, Path::new("p.toml")).expect_err(bad);
        assert!(e.to_string().starts_with("p.toml:2: "), "{e}");
    }
}

#[test]
fn reconnect_grace_from_flag_and_key() {
    let s = run(&["--", "ls"], None).expect("resolve");
    assert_eq!(s.reconnect_grace, DEFAULT_RECONNECT_GRACE);
    let f = file("reconnect_grace = \"90s\"\n", "p.toml");
    let s = run(&["--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.reconnect_grace, std::time::Duration::from_secs(90));
    // The flag wins; 0 never connects again.
    let s = run(&["--reconnect-grace", "0", "--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.reconnect_grace, std::time::Duration::ZERO);
    for bad in ["86401s", "60", "-1s"] {
        let flag = format!("--reconnect-grace={bad}");
        let parsed = ClientArgs::try_parse_from(["rscq", flag.as_str(), "--", "ls"]);
        assert!(parsed.is_err(), "{bad} must be refused");
        let src = format!("\nreconnect_grace = \"{bad}\"\n");
        let e = parse_config_file(&src, Path::new("p.toml")).expect_err(bad);
        assert!(e.to_string().starts_with("p.toml:2: "), "{e}");
    }
}

/// Every flag of `rscq` can also be written in a settings file: the TOML
/// key is the long name with `_` for `-` (`--mount` is `mounts`). The list
/// comes from clap, so a new flag without a key fails here.
#[test]
fn every_flag_has_a_toml_key() {
    use clap::CommandFactory;
    // Flags that choose or describe the file itself, or print and exit.
    let not_in_a_file = ["help", "version", "config", "server", "generate"];
    let mut checked = 0;
    for arg in ClientArgs::command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if not_in_a_file.contains(&long) {
            continue;
        }
        let key = match long {
            "mount" => "mounts".to_owned(),
            other => other.replace('-', "_"),
        };
        // A value of no key's type: the error must be about the value, not
        // the key.
        let src = format!("{key} = 1979-05-27T07:32:00Z\n");
        match parse_toml(&src, Path::new("k.toml")) {
            Err(ConfigError::Toml { message, .. }) => assert!(
                !message.contains("unknown field"),
                "--{long} has no TOML key `{key}`: {message}"
            ),
            other => panic!("--{long}: a date for `{key}` gave {other:?}"),
        }
        // And the same key inside a server section.
        let src = format!("[server.s]\n{key} = 1979-05-27T07:32:00Z\n");
        match parse_toml(&src, Path::new("k.toml")) {
            Err(ConfigError::Toml { message, .. }) => assert!(
                !message.contains("unknown field"),
                "--{long}: no `{key}` in [server.NAME]: {message}"
            ),
            other => panic!("--{long}: a date for `{key}` gave {other:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} flags seen");
}

#[test]
fn stat_ttl_and_readahead_window_keys() {
    let f = file("stat_ttl = \"250ms\"\nreadahead_window = 65536\n", "p.toml");
    let s = run(&["--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.stat_ttl, std::time::Duration::from_millis(250));
    assert_eq!(s.readahead_window, Some(65536));
    // Flags win.
    let s = run(
        &[
            "--stat-ttl",
            "2s",
            "--readahead-window",
            "131072",
            "--",
            "x",
        ],
        Some(&f),
    )
    .expect("resolve");
    assert_eq!(s.stat_ttl, std::time::Duration::from_secs(2));
    assert_eq!(s.readahead_window, Some(131072));
    for (src, line) in [
        ("\nstat_ttl = \"2h\"\n", 2),
        ("stat_ttl = \"5\"\n", 1),
        ("\n\nreadahead_window = 1024\n", 3),
        ("readahead_window = 2000000000\n", 1),
    ] {
        let e = parse_config_file(src, Path::new("p.toml")).expect_err(src);
        assert!(
            e.to_string().starts_with(&format!("p.toml:{line}: ")),
            "{e}"
        );
    }
}

#[test]
fn net_send_window_comes_from_the_key_and_the_flag_within_its_range() {
    let f = file("net_send_window = 65536\n", "p.toml");
    let s = run(&["--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.net_send_window, 65536);
    let s = run(&["--net-send-window", "1048576", "--", "x"], Some(&f)).expect("resolve");
    assert_eq!(s.net_send_window, 1 << 20);
    for bad in ["1024", "16777217"] {
        let parsed = ClientArgs::try_parse_from(["rscq", "--net-send-window", bad, "--", "x"]);
        assert!(parsed.is_err(), "--net-send-window {bad} must be refused");
    }
    for (src, line) in [
        ("\nnet_send_window = 1024\n", 2),
        ("net_send_window = 16777217\n", 1),
    ] {
        let e = parse_config_file(src, Path::new("p.toml")).expect_err(src);
        assert!(
            e.to_string().starts_with(&format!("p.toml:{line}: ")),
            "{e}"
        );
    }
}

const SERVERS: &str = r#"
stats = true
mounts = ["/r=/"]
remote = "default.example"

[server.work]
remote = "work.example:5000"
net = true
mounts = ["/w=/srv"]

[server.home]
uname = true
"#;

#[test]
fn server_sections_are_chosen_with_dash_s() {
    let f = file(SERVERS, "/cfg/config.toml");
    assert_eq!(f.servers.keys().collect::<Vec<_>>(), vec!["home", "work"]);
    let s = run(&["-S", "work", "--", "x"], Some(&f)).expect("work");
    let r = s.remote.expect("remote");
    assert_eq!((r.host.as_str(), r.port), ("work.example", 5000));
    assert!(s.net && s.stats && !s.uname);
    assert_eq!(s.mounts.len(), 1);
    assert_eq!(s.mounts[0].to_string(), "/w=/srv");

    // A section that sets little keeps the top level's values.
    let s = run(&["--server", "home", "--", "x"], Some(&f)).expect("home");
    assert_eq!(s.remote.expect("remote").host, "default.example");
    assert!(s.uname && s.stats && !s.net);
    assert_eq!(s.mounts[0].to_string(), "/r=/");

    // Flags win over the section.
    let s = run(
        &[
            "-S", "work", "--remote", "other:1", "--mount", "/o=/", "--", "x",
        ],
        Some(&f),
    )
    .expect("flags");
    assert_eq!(s.remote.expect("remote").host, "other");
    assert_eq!(s.mounts[0].to_string(), "/o=/");

    // Without -S the sections are unused.
    let s = run(&["--", "x"], Some(&f)).expect("none");
    assert!(!s.net && !s.uname);
}

#[test]
fn unknown_server_lists_the_known_ones() {
    let f = file(SERVERS, "/cfg/config.toml");
    let e = run(&["-S", "wrok", "--", "x"], Some(&f)).expect_err("unknown");
    assert!(matches!(e, ConfigError::UnknownServer { .. }));
    assert_eq!(
        e.to_string(),
        "-S wrok: /cfg/config.toml has no [server.wrok]; known servers: home, work"
    );
    let none = file("stats = true\n", "/cfg/config.toml");
    let e = run(&["-S", "x", "--", "x"], Some(&none)).expect_err("no sections");
    assert!(
        e.to_string().contains("has no [server.NAME] sections"),
        "{e}"
    );
    let e = run(&["-S", "x", "--", "x"], None).expect_err("no file");
    assert!(e.to_string().contains("no settings file"), "{e}");
}

#[test]
fn server_section_errors_name_their_line() {
    let e = parse_config_file(
        "[server.a]\nremote = \"h\"\n\n[server.a.server.b]\nnet = true\n",
        Path::new("s.toml"),
    )
    .expect_err("nested");
    assert!(matches!(e, ConfigError::NestedServer { .. }), "{e}");
    let e = parse_config_file("[server.a]\n\nremot = \"h\"\n", Path::new("s.toml"))
        .expect_err("unknown key");
    assert!(e.to_string().starts_with("s.toml:3:"), "{e}");
    assert!(e.to_string().contains("remot"), "{e}");
    let e = parse_config_file("[server.a]\nmounts = [\"rel=/\"]\n", Path::new("s.toml"))
        .expect_err("bad mount");
    assert!(e.to_string().starts_with("s.toml:2: "), "{e}");
}

#[test]
fn default_config_file_is_optional_but_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let xdg = tmp.path().join("xdg");
    let env = Env {
        home: Some(tmp.path().join("home")),
        xdg_config_home: Some(xdg.clone()),
    };
    let a = args(&["--", "x"]);
    assert!(load_config(&a, &env).expect("missing is fine").is_none());
    let path = xdg.join("rscq").join("config.toml");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, "uname = true\n").expect("write");
    let f = load_config(&a, &env).expect("read").expect("found");
    assert_eq!(f.uname, Some(true));
    assert_eq!(f.path, path);
    std::fs::write(&path, "uname = true\nnet = maybe\n").expect("write");
    let e = load_config(&a, &env).expect_err("malformed");
    assert!(
        e.to_string().starts_with(&format!("{}:2:", path.display())),
        "{e}"
    );
    // HOME when XDG_CONFIG_HOME is unset; --config replaces the default.
    let env = Env {
        home: Some(tmp.path().join("home")),
        xdg_config_home: None,
    };
    assert_eq!(
        env.default_config_file(),
        Some(tmp.path().join("home/.config/rscq/config.toml"))
    );
    assert!(load_config(&a, &env).expect("no file").is_none());
}

#[test]
fn verbose_maps_to_log_levels_unless_rust_log() {
    assert_eq!(log_directive(0, None, "error"), "error");
    assert_eq!(log_directive(1, None, "error"), "info");
    assert_eq!(log_directive(2, None, "warn"), "debug");
    assert_eq!(log_directive(5, None, "warn"), "debug");
    assert_eq!(log_directive(2, Some("quinn=trace"), "warn"), "quinn=trace");
    assert_eq!(log_directive(1, Some(""), "warn"), "info");
    let f = file("verbose = 2\n", "v.toml");
    assert_eq!(run(&["true"], Some(&f)).expect("resolve").verbose, 2);
    assert_eq!(run(&["-v", "true"], None).expect("resolve").verbose, 1);
    assert_eq!(run(&["-vv", "true"], None).expect("resolve").verbose, 2);
    let e = parse_config_file("\nverbose = 3\n", Path::new("v.toml")).expect_err("3");
    assert!(e.to_string().starts_with("v.toml:2: "), "{e}");
}
