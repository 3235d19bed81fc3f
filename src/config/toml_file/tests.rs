//! Unit tests of the TOML config file: keys, types and error positions.

use super::*;

fn parse(src: &str) -> Result<FileSettings, ConfigError> {
    parse_toml(src, Path::new("test.toml"))
}

fn line_of(e: &ConfigError) -> Option<usize> {
    match e {
        ConfigError::Toml { line_col, .. } => line_col.map(|(l, _)| l),
        ConfigError::InvalidRemote { origin, .. }
        | ConfigError::InvalidMount { origin, .. }
        | ConfigError::InvalidOptimize { origin, .. }
        | ConfigError::PureConflictsWithOptimize { origin, .. }
        | ConfigError::EmptyPath { origin, .. } => match origin {
            Origin::File { line, .. } => Some(*line),
            Origin::CommandLine(_) => None,
        },
        ConfigError::DuplicateMount { second, .. } => match second {
            Origin::File { line, .. } => Some(*line),
            Origin::CommandLine(_) => None,
        },
        _ => None,
    }
}

#[test]
fn line_col_counts_chars() {
    let s = "ab\ncdé\nx";
    assert_eq!(line_col(s, 0), (1, 1));
    assert_eq!(line_col(s, 3), (2, 1));
    assert_eq!(line_col(s, 8), (3, 1));
    assert_eq!(line_col(s, 6), (2, 3), "inside é clamps back");
    assert_eq!(line_col(s, 7), (2, 4));
    assert_eq!(line_col(s, 999), (3, 2));
}

#[test]
fn every_key() {
    let f = parse(
        r#"
remote = "srv.example:7000"
mounts = ["/remote=/", { local = "/etc-r", remote = "/etc" }]
uname = true
net = true
optimize = ["nagle", "readahead"]
pure = false
trace = true
stats = true
server_cert = "certs/server.der"
identity = "/id"
known_servers = "/ks"
"#,
    )
    .expect("parse");
    let r = f.remote.as_ref().expect("remote");
    assert_eq!((r.host.as_str(), r.port), ("srv.example", 7000));
    assert_eq!(f.mounts.len(), 2);
    assert_eq!(f.mounts[0].value.to_string(), "/remote=/");
    assert_eq!(f.mounts[1].value.to_string(), "/etc-r=/etc");
    assert_eq!(
        f.mounts[1].origin,
        Origin::File {
            path: "test.toml".into(),
            line: 3
        }
    );
    assert_eq!(f.uname, Some(true));
    assert_eq!(f.net, Some(true));
    let o = f.optimizations.expect("optimize");
    assert!(o.nagle && o.readahead && !o.statcache && !o.compound);
    assert_eq!(f.trace, Some(true));
    assert_eq!(f.stats, Some(true));
    assert_eq!(
        f.server_cert.map(|p| p.value),
        Some(PathBuf::from("certs/server.der"))
    );
    assert_eq!(f.identity.map(|p| p.value), Some(PathBuf::from("/id")));
    assert_eq!(f.known_servers.map(|p| p.value), Some(PathBuf::from("/ks")));
    assert!(f.forwarded_syscalls.is_none());
}

#[test]
fn remotes_and_named_hosts() {
    let f = parse(
        r#"
net = "gw"
uname = "buildbox"
mounts = ["/b=buildbox:/srv", { local = "/d", remote = "/export", host = "nas" }]

[[remotes]]
name = "buildbox"
address = "10.0.0.1:9"

[[remotes]]
name = "nas"
address = "nas.example"
server_cert = "nas.der"
"#,
    )
    .expect("parse");
    assert_eq!((f.net, f.uname), (Some(true), Some(true)));
    assert_eq!(f.net_on.as_ref().map(|h| h.value.as_str()), Some("gw"));
    assert_eq!(
        f.uname_on.map(|h| (h.value, h.origin)),
        Some((
            "buildbox".into(),
            Origin::File {
                path: "test.toml".into(),
                line: 3
            }
        ))
    );
    assert_eq!(f.mounts[0].value.host.as_deref(), Some("buildbox"));
    assert_eq!(f.mounts[1].value.host.as_deref(), Some("nas"));
    assert_eq!(f.mounts[1].value.to_string(), "/d=nas:/export");
    assert_eq!(f.remotes.len(), 2);
    assert_eq!(f.remotes[0].address.to_string(), "10.0.0.1:9");
    assert_eq!(f.remotes[1].address.port, crate::config::DEFAULT_PORT);
    assert_eq!(
        f.remotes[1].server_cert.as_ref().map(|c| c.value.clone()),
        Some(PathBuf::from("nas.der"))
    );
    let f = parse("net = false\nuname = true").expect("bools");
    assert_eq!((f.net, f.uname), (Some(false), Some(true)));
    assert!(f.net_on.is_none() && f.uname_on.is_none());
}

#[test]
fn bad_remotes_name_their_line() {
    let e = parse("[[remotes]]\nname = \"a\"\naddress = \"::1\"\n").expect_err("v6");
    assert!(matches!(e, ConfigError::InvalidRemote { .. }), "{e}");
    assert!(e.to_string().contains("test.toml:3"), "{e}");
    let e = parse(
        "[[remotes]]\nname = \"a\"\naddress = \"h\"\n[[remotes]]\nname = \"a\"\naddress = \"g\"\n",
    )
    .expect_err("dup");
    assert!(matches!(e, ConfigError::DuplicateRemoteName { .. }), "{e}");
    let e = parse("[[remotes]]\nname = \"\"\naddress = \"h\"\n").expect_err("empty");
    assert!(matches!(e, ConfigError::EmptyRemoteName { .. }), "{e}");
    let e = parse("[[remotes]]\nname = \"a\"\n").expect_err("no address");
    assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
    let e = parse("[[remotes]]\nname = \"a\"\naddress = \"h\"\nadress = \"h\"\n")
        .expect_err("unknown key");
    assert!(e.to_string().contains("adress"), "{e}");
    let e = parse("net = \"\"").expect_err("empty host");
    assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
    let e = parse("net = 3").expect_err("wrong type");
    assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
    let e = parse("mounts = [{ local = \"/d\", remote = \"/\", host = \"\" }]")
        .expect_err("empty mount host");
    assert!(matches!(e, ConfigError::InvalidMount { .. }), "{e}");
}

#[test]
fn empty_file_sets_nothing() {
    let f = parse("# nothing\n").expect("parse");
    assert!(f.remote.is_none() && f.mounts.is_empty() && f.uname.is_none());
    assert!(f.optimizations.is_none());
}

#[test]
fn optimize_spellings() {
    let o = |s: &str| parse(s).map(|f| f.optimizations);
    assert_eq!(
        o("optimize = \"all\"").ok().flatten(),
        Some(Optimizations::ALL)
    );
    assert_eq!(
        o("optimize = \"none\"").ok().flatten(),
        Some(Optimizations::NONE)
    );
    assert_eq!(
        o("optimize = []").map_err(|e| line_of(&e)).err(),
        Some(Some(1))
    );
    assert_eq!(
        o("optimize = \"nagle,compound\"")
            .ok()
            .flatten()
            .map(|x| x.to_string()),
        Some("nagle,compound".into())
    );
    assert_eq!(o("pure = true").ok().flatten(), Some(Optimizations::NONE));
    assert_eq!(
        o("pure = true\noptimize = \"none\"").ok().flatten(),
        Some(Optimizations::NONE)
    );
    assert_eq!(o("pure = false").ok().flatten(), None);
    let e = parse("pure = true\noptimize = [\"nagle\"]\n").expect_err("conflict");
    assert!(matches!(e, ConfigError::PureConflictsWithOptimize { .. }));
    assert_eq!(line_of(&e), Some(2));
    let e = parse("\n\noptimize = [\"nagle\", \"warp\"]").expect_err("unknown name");
    assert!(matches!(e, ConfigError::InvalidOptimize { .. }));
    assert_eq!(line_of(&e), Some(3));
    assert!(e.to_string().contains("test.toml:3"), "{e}");
    let e = parse("optimize = 3").expect_err("wrong type");
    assert!(matches!(e, ConfigError::Toml { .. }));
}

#[test]
fn unknown_key_names_line() {
    let e = parse("uname = true\n\ntrcae = true\n").expect_err("unknown key");
    assert!(matches!(e, ConfigError::Toml { .. }));
    assert_eq!(line_of(&e), Some(3));
    let msg = e.to_string();
    assert!(msg.starts_with("test.toml:3:1: "), "{msg}");
    assert!(msg.contains("trcae"), "{msg}");
}

#[test]
fn unknown_key_in_mount_table_names_line() {
    let e = parse("mounts = [\n  { local = \"/r\", remot = \"/\" },\n]\n").expect_err("bad table");
    assert!(matches!(e, ConfigError::Toml { .. }), "{e}");
    assert_eq!(line_of(&e), Some(2), "{e}");
    assert!(e.to_string().contains("remot"), "{e}");
}

#[test]
fn malformed_toml_names_line() {
    let e = parse("uname = true\nremote = \"unterminated\n").expect_err("syntax");
    assert!(matches!(e, ConfigError::Toml { .. }));
    assert_eq!(line_of(&e), Some(2), "{e}");
    let e = parse("trace = yes\n").expect_err("bad bool");
    assert_eq!(line_of(&e), Some(1), "{e}");
    let e = parse("\n\nuname = \"true\"\n").expect_err("wrong type");
    assert_eq!(line_of(&e), Some(3), "{e}");
}

#[test]
fn bad_values_name_their_line() {
    let e = parse("\nremote = \"::1\"\n").expect_err("v6");
    assert!(matches!(e, ConfigError::InvalidRemote { .. }));
    assert_eq!(line_of(&e), Some(2));

    let e = parse("mounts = [\n  \"/a=/\",\n  \"rel=/\",\n]\n").expect_err("relative");
    assert!(matches!(e, ConfigError::InvalidMount { .. }));
    assert_eq!(line_of(&e), Some(3));

    let e = parse("mounts = [{ local = \"/\", remote = \"/\" }]").expect_err("root");
    assert!(e.to_string().contains("must not be `/`"), "{e}");

    let e = parse("mounts = [\n \"/a=/\",\n \"/a/=/etc\",\n]").expect_err("dup");
    assert!(matches!(e, ConfigError::DuplicateMount { .. }));
    assert_eq!(line_of(&e), Some(3));
    assert!(e.to_string().contains("test.toml:2"), "{e}");

    let e = parse("\nidentity = \"\"").expect_err("empty path");
    assert!(matches!(e, ConfigError::EmptyPath { .. }));
    assert_eq!(line_of(&e), Some(2));

    let e = parse("mounts = [42]").expect_err("wrong type");
    assert!(matches!(e, ConfigError::Toml { .. }));
}
