//! The umrsc `rsc.config` format (thesis, chapter 3), so old profiles keep
//! working:
//!
//! ```text
//! socket_on 1          # 1/0: forward socket syscalls          -> net
//! disk_on 1            # 1/0: forward filesystem syscalls      -> mounts on/off
//! local_path /unreal   # where the remote tree appears locally -> mount LOCAL
//! remote_path /        # which remote directory is shown there -> mount REMOTE
//! REMOTE read          # one forwarded syscall per line
//! REMOTE uname         # also turns on `uname`
//! remote_host nas      # rscq's: the server of this configuration
//! ```
//!
//! `remote_host HOST` is rscq's addition (umrsc named one submodule per
//! configuration): the mount, the sockets and uname of this file are
//! HOST's, looked up as a `--mount LOCAL=HOST:REMOTE` is.
//!
//! Rules: one keyword per line, separated from its value by whitespace; `#`
//! at the start of a line or after whitespace starts a comment; blank lines
//! are ignored; each of socket_on, disk_on, local_path, remote_path may
//! appear once. A path is the rest of the line, so it may contain spaces.
//! `local_path`/`remote_path` become a mount only with `disk_on 1`; with
//! `disk_on 0` they are kept off, and without any disk_on line they are an
//! error (the intent is ambiguous).
//!
//! Pure: takes the file's text, must not read it.

use std::collections::BTreeSet;
use std::path::Path;

use super::FileSettings;
use super::error::{ConfigError, Located, Origin};
use super::types::{Mount, MountError, MountSide};

/// First words that mark a file as rsc.config (see [`looks_like_rsc_config`]).
pub const KEYWORDS: [&str; 6] = [
    "socket_on",
    "disk_on",
    "local_path",
    "remote_path",
    "REMOTE",
    "remote_host",
];

/// Syscall names accepted on `REMOTE` lines: the thesis's list plus the
/// x86_64 calls that newer libcs issue for the same operations (a profile
/// written today says `openat`, not `open`).
const SYSCALLS: &[&str] = &[
    // The umrsc list, in the thesis's order.
    "read",
    "write",
    "close",
    "fcntl",
    "open",
    "lstat",
    "readlink",
    "getdents",
    "access",
    "lseek",
    "mkdir",
    "rmdir",
    "lchown",
    "chmod",
    "unlink",
    "fsync",
    "fdatasync",
    "link",
    "symlink",
    "pread64",
    "pwrite64",
    "utimes",
    "statfs",
    "rename",
    "socket",
    "bind",
    "connect",
    "listen",
    "accept",
    "getsockname",
    "getpeername",
    "socketpair",
    "sendto",
    "recvfrom",
    "shutdown",
    "getsockopt",
    "setsockopt",
    "ioctl",
    "sendmsg",
    "recvmsg",
    "uname",
    "event_subscribe",
    // Modern equivalents.
    "openat",
    "openat2",
    "creat",
    "stat",
    "fstat",
    "newfstatat",
    "statx",
    "getdents64",
    "readv",
    "writev",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "readlinkat",
    "faccessat",
    "faccessat2",
    "mkdirat",
    "unlinkat",
    "linkat",
    "symlinkat",
    "renameat",
    "renameat2",
    "chown",
    "fchown",
    "fchownat",
    "fchmod",
    "fchmodat",
    "utime",
    "utimensat",
    "futimesat",
    "fstatfs",
    "truncate",
    "ftruncate",
    "fallocate",
    "dup",
    "dup2",
    "dup3",
    "getcwd",
    "chdir",
    "fchdir",
    "accept4",
    "sendmmsg",
    "recvmmsg",
    "getxattr",
    "lgetxattr",
    "fgetxattr",
    "listxattr",
    "llistxattr",
    "flistxattr",
];

/// Names that umrsc used for calls the x86_64 kernel spells differently,
/// mapped to the kernel name that is recorded. `fdatsync` is the spelling in
/// the thesis's own sample file.
const ALIASES: &[(&str, &str)] = &[
    ("pread", "pread64"),
    ("pwrite", "pwrite64"),
    ("fdatsync", "fdatasync"),
];

/// Canonical name of a syscall accepted on a REMOTE line, if known.
pub fn canonical_syscall(name: &str) -> Option<&'static str> {
    SYSCALLS
        .iter()
        .copied()
        .find(|s| *s == name)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, c)| *c))
}

/// Drops a `#` comment: at the start of the line or after whitespace, so a
/// `#` inside a path (`/tmp/a#b`) survives.
fn strip_comment(line: &str) -> &str {
    let mut prev_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_space {
            return &line[..i];
        }
        prev_space = c.is_whitespace();
    }
    line
}

/// The meaningful lines: (1-based line number, text without comment and
/// surrounding whitespace).
fn meaningful_lines(src: &str) -> impl Iterator<Item = (usize, &str)> {
    src.lines()
        .enumerate()
        .map(|(i, l)| (i.saturating_add(1), strip_comment(l).trim()))
        .filter(|(_, l)| !l.is_empty())
}

/// Format detection for files without a `.toml` extension: the first
/// meaningful line starts with an rsc.config keyword followed by whitespace
/// and something that is not `=` (so a TOML line like `local_path = "/x"`
/// still goes to the TOML parser, which then names the unknown key).
pub fn looks_like_rsc_config(src: &str) -> bool {
    let Some((_, first)) = meaningful_lines(src).next() else {
        return false;
    };
    let mut words = first.split_whitespace();
    let keyword = words.next().unwrap_or_default();
    let next = words.next().unwrap_or_default();
    KEYWORDS.contains(&keyword) && !next.starts_with('=')
}

/// Parses an rsc.config file. `path` is only used in error messages.
pub fn parse_rsc_config(src: &str, path: &Path) -> Result<FileSettings, ConfigError> {
    // (value, line) of each single-use keyword.
    let mut socket_on: Option<(bool, usize)> = None;
    let mut disk_on: Option<(bool, usize)> = None;
    let mut local_path: Option<(&str, usize)> = None;
    let mut remote_path: Option<(&str, usize)> = None;
    let mut remote_host: Option<(&str, usize)> = None;
    let mut syscalls = BTreeSet::new();

    for (line, text) in meaningful_lines(src) {
        let (keyword, value) = match text.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (text, ""),
        };
        match keyword {
            "socket_on" => set_once(
                &mut socket_on,
                parse_flag("socket_on", value, path, line)?,
                "socket_on",
                path,
                line,
            )?,
            "disk_on" => set_once(
                &mut disk_on,
                parse_flag("disk_on", value, path, line)?,
                "disk_on",
                path,
                line,
            )?,
            "local_path" => set_once(
                &mut local_path,
                need_value("local_path", value, path, line)?,
                "local_path",
                path,
                line,
            )?,
            "remote_path" => set_once(
                &mut remote_path,
                need_value("remote_path", value, path, line)?,
                "remote_path",
                path,
                line,
            )?,
            "remote_host" => set_once(
                &mut remote_host,
                need_value("remote_host", value, path, line)?,
                "remote_host",
                path,
                line,
            )?,
            "REMOTE" => {
                syscalls.insert(remote_syscall(value, path, line)?.to_owned());
            }
            other => {
                return Err(ConfigError::RscUnknownKeyword {
                    path: path.to_owned(),
                    line,
                    keyword: other.to_owned(),
                });
            }
        }
    }

    let host = remote_host.map(|(value, line)| Located {
        value: value.to_owned(),
        origin: Origin::File {
            path: path.to_owned(),
            line,
        },
    });
    let mut mounts = disk_mount(disk_on, local_path, remote_path, path)?;
    if let Some(host) = &host {
        for m in &mut mounts {
            m.value = m
                .value
                .clone()
                .on_host(Some(host.value.clone()))
                .map_err(|source| ConfigError::InvalidMount {
                    origin: host.origin.clone(),
                    source,
                })?;
        }
    }
    let net = socket_on.map(|(v, _)| v);
    // Listing uname among the forwarded calls is how umrsc showed the
    // remote kernel; only turn it on, never force it off.
    let uname = syscalls.contains("uname").then_some(true);

    Ok(FileSettings {
        path: path.to_owned(),
        mounts,
        net_on: host.clone().filter(|_| net == Some(true)),
        uname_on: host.filter(|_| uname.is_some()),
        net,
        uname,
        forwarded_syscalls: (!syscalls.is_empty()).then_some(syscalls),
        ..FileSettings::empty(path)
    })
}

/// A `REMOTE` line's syscall, by its canonical name.
fn remote_syscall(value: &str, path: &Path, line: usize) -> Result<&'static str, ConfigError> {
    let name = need_value("REMOTE", value, path, line)?;
    if name.contains(char::is_whitespace) {
        return Err(ConfigError::RscBadValue {
            path: path.to_owned(),
            line,
            keyword: "REMOTE",
            expected: "one syscall name",
            value: name.to_owned(),
        });
    }
    let canonical = canonical_syscall(name).ok_or_else(|| ConfigError::RscUnknownSyscall {
        path: path.to_owned(),
        line,
        name: name.to_owned(),
    })?;
    Ok(canonical)
}

/// The mount `disk_on`, `local_path` and `remote_path` make together (each
/// with its line): none without `disk_on`, and a path without it is an error.
fn disk_mount(
    disk_on: Option<(bool, usize)>,
    local_path: Option<(&str, usize)>,
    remote_path: Option<(&str, usize)>,
    path: &Path,
) -> Result<Vec<Located<Mount>>, ConfigError> {
    let mut mounts = Vec::new();
    match disk_on {
        Some((true, disk_line)) => {
            let missing = |missing| ConfigError::RscIncompleteMount {
                path: path.to_owned(),
                line: disk_line,
                missing,
            };
            let (local, local_line) = local_path.ok_or_else(|| missing("local_path"))?;
            let (remote, remote_line) = remote_path.ok_or_else(|| missing("remote_path"))?;
            let origin = |line| Origin::File {
                path: path.to_owned(),
                line,
            };
            match Mount::new(local, remote) {
                Ok(value) => mounts.push(Located {
                    value,
                    origin: origin(local_line),
                }),
                Err(source) => {
                    // Point at the line holding the bad half.
                    let line = match &source {
                        MountError::Empty(MountSide::Remote)
                        | MountError::Nul(MountSide::Remote)
                        | MountError::NotAbsolute {
                            side: MountSide::Remote,
                            ..
                        }
                        | MountError::NotNormalized {
                            side: MountSide::Remote,
                            ..
                        } => remote_line,
                        _ => local_line,
                    };
                    return Err(ConfigError::InvalidMount {
                        origin: origin(line),
                        source,
                    });
                }
            }
        }
        Some((false, _)) => {}
        None => {
            let first_path = [("local_path", local_path), ("remote_path", remote_path)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|(_, line)| (k, line)))
                .min_by_key(|(_, line)| *line);
            if let Some((keyword, line)) = first_path {
                return Err(ConfigError::RscPathWithoutDiskOn {
                    path: path.to_owned(),
                    line,
                    keyword,
                });
            }
        }
    }
    Ok(mounts)
}

fn set_once<T>(
    slot: &mut Option<(T, usize)>,
    value: T,
    keyword: &'static str,
    path: &Path,
    line: usize,
) -> Result<(), ConfigError> {
    if let Some((_, first_line)) = slot {
        return Err(ConfigError::RscDuplicate {
            path: path.to_owned(),
            line,
            first_line: *first_line,
            keyword,
        });
    }
    *slot = Some((value, line));
    Ok(())
}

fn need_value<'a>(
    keyword: &'static str,
    value: &'a str,
    path: &Path,
    line: usize,
) -> Result<&'a str, ConfigError> {
    if value.is_empty() {
        Err(ConfigError::RscMissingValue {
            path: path.to_owned(),
            line,
            keyword,
        })
    } else {
        Ok(value)
    }
}

fn parse_flag(
    keyword: &'static str,
    value: &str,
    path: &Path,
    line: usize,
) -> Result<bool, ConfigError> {
    match need_value(keyword, value, path, line)? {
        "1" => Ok(true),
        "0" => Ok(false),
        other => Err(ConfigError::RscBadValue {
            path: path.to_owned(),
            line,
            keyword,
            expected: "1 or 0",
            value: other.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The sample file from the thesis (chapter 3), verbatim, including its
    /// `fdatsync` spelling.
    const THESIS_SAMPLE: &str = "socket_on 1
disk_on 1
local_path /unreal
remote_path /
REMOTE read
REMOTE write
REMOTE close
REMOTE fcntl
REMOTE open
REMOTE lstat
REMOTE readlink
REMOTE getdents
REMOTE access
REMOTE lseek
REMOTE mkdir
REMOTE rmdir
REMOTE lchown
REMOTE chmod
REMOTE unlink
REMOTE fsync
REMOTE fdatsync
REMOTE link
REMOTE symlink
REMOTE pread
REMOTE pwrite
REMOTE utimes
REMOTE statfs
REMOTE rename
REMOTE socket
REMOTE bind
REMOTE connect
REMOTE listen
REMOTE accept
REMOTE getsockname
REMOTE getpeername
REMOTE socketpair
REMOTE sendto
REMOTE recvfrom
REMOTE shutdown
REMOTE getsockopt
REMOTE setsockopt
REMOTE ioctl
REMOTE sendmsg
REMOTE recvmsg
REMOTE uname
REMOTE event_subscribe
";

    fn parse(src: &str) -> Result<FileSettings, ConfigError> {
        parse_rsc_config(src, Path::new("conf/rsc.config"))
    }

    fn err_line(e: &ConfigError) -> Option<usize> {
        match e {
            ConfigError::RscUnknownKeyword { line, .. }
            | ConfigError::RscUnknownSyscall { line, .. }
            | ConfigError::RscMissingValue { line, .. }
            | ConfigError::RscBadValue { line, .. }
            | ConfigError::RscDuplicate { line, .. }
            | ConfigError::RscIncompleteMount { line, .. }
            | ConfigError::RscPathWithoutDiskOn { line, .. } => Some(*line),
            ConfigError::InvalidMount {
                origin: Origin::File { line, .. },
                ..
            } => Some(*line),
            _ => None,
        }
    }

    #[test]
    fn thesis_sample() {
        assert!(looks_like_rsc_config(THESIS_SAMPLE));
        let f = parse(THESIS_SAMPLE).expect("thesis sample");
        assert_eq!(f.net, Some(true));
        assert_eq!(f.uname, Some(true));
        assert_eq!(f.mounts.len(), 1);
        assert_eq!(f.mounts[0].value.local, PathBuf::from("/unreal"));
        assert_eq!(f.mounts[0].value.remote, PathBuf::from("/"));
        assert_eq!(
            f.mounts[0].origin,
            Origin::File {
                path: "conf/rsc.config".into(),
                line: 3
            }
        );
        let set = f.forwarded_syscalls.expect("syscalls");
        assert_eq!(set.len(), 42);
        for name in [
            "read",
            "fdatasync",
            "pread64",
            "pwrite64",
            "event_subscribe",
            "uname",
        ] {
            assert!(set.contains(name), "{name}");
        }
        assert!(!set.contains("fdatsync") && !set.contains("pread"));
        assert!(f.remote.is_none() && f.optimizations.is_none() && f.trace.is_none());
    }

    #[test]
    fn switches_off() {
        let f = parse("socket_on 0\ndisk_on 0\nlocal_path /unreal\nremote_path /\nREMOTE read\n")
            .expect("parse");
        assert_eq!(f.net, Some(false));
        assert!(f.mounts.is_empty(), "disk_on 0 keeps the mount off");
        assert_eq!(f.uname, None);
        assert_eq!(f.forwarded_syscalls.map(|s| s.len()), Some(1));
    }

    #[test]
    fn comments_blank_lines_and_spaces() {
        let f = parse(
            "# profile\n\n  disk_on 1   # on\nlocal_path /my dir#1\r\nremote_path\t/srv//x/ # trailing\nsocket_on 1\n",
        )
        .expect("parse");
        assert_eq!(f.mounts[0].value.local, PathBuf::from("/my dir#1"));
        assert_eq!(f.mounts[0].value.remote, PathBuf::from("/srv/x"));
        assert_eq!(f.net, Some(true));
        assert!(f.forwarded_syscalls.is_none());
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let cases: &[(&str, usize)] = &[
            ("socket_on 1\nfrobnicate 1\n", 2),
            (
                "disk_on 1\nlocal_path /a\nremote_path /\nREMOTE read\nREMOTE teleport\n",
                5,
            ),
            ("REMOTE\n", 1),
            ("REMOTE read write\n", 1),
            ("socket_on yes\n", 1),
            ("# c\ndisk_on 2\n", 2),
            ("socket_on\n", 1),
            ("socket_on 1\nsocket_on 0\n", 2),
            ("disk_on 1\nlocal_path /a\n", 1),
            ("disk_on 1\nremote_path /\n", 1),
            ("socket_on 1\n\nremote_path /\n", 3),
            ("disk_on 1\nlocal_path relative\nremote_path /\n", 2),
            ("disk_on 1\nlocal_path /r\nremote_path etc\n", 3),
            ("disk_on 1\nlocal_path /\nremote_path /\n", 2),
            ("read 1\n", 1),
            ("remote read\n", 1),
        ];
        for (src, line) in cases {
            let e = parse(src).expect_err(src);
            assert_eq!(err_line(&e), Some(*line), "{src:?}: {e}");
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("conf/rsc.config:{line}")), "{msg}");
        }
        let e = parse("REMOTE teleport\n").expect_err("unknown");
        assert!(e.to_string().contains("teleport"));
    }

    #[test]
    fn detection() {
        assert!(looks_like_rsc_config("# c\n\nREMOTE read\n"));
        assert!(looks_like_rsc_config("local_path /x\n"));
        assert!(!looks_like_rsc_config("local_path = \"/x\"\n"));
        assert!(!looks_like_rsc_config("local_path=/x\n"));
        assert!(!looks_like_rsc_config("remote = \"h:1\"\n"));
        assert!(!looks_like_rsc_config("# only comments\n"));
        assert!(!looks_like_rsc_config(""));
        assert!(!looks_like_rsc_config("[section]\nREMOTE read\n"));
    }

    #[test]
    fn remote_host_names_the_server_of_everything() {
        let f = parse(
            "remote_host nas:9\nsocket_on 1\ndisk_on 1\nlocal_path /d\nremote_path /x\nREMOTE uname\n",
        )
        .expect("parse");
        assert_eq!(f.mounts[0].value.to_string(), "/d=nas:9:/x");
        let on =
            |h: &Option<Located<String>>| h.as_ref().map(|h| (h.value.clone(), h.origin.clone()));
        let line1 = Some((
            "nas:9".to_owned(),
            Origin::File {
                path: "conf/rsc.config".into(),
                line: 1,
            },
        ));
        assert_eq!(on(&f.net_on), line1);
        assert_eq!(on(&f.uname_on), line1);
        assert!(looks_like_rsc_config("remote_host nas\n"));
        // Off settings name no server.
        let f = parse("remote_host nas\nsocket_on 0\n").expect("parse");
        assert!(f.net_on.is_none() && f.uname_on.is_none() && f.mounts.is_empty());
        let e = parse("remote_host a\nremote_host b\n").expect_err("twice");
        assert!(matches!(e, ConfigError::RscDuplicate { .. }), "{e}");
        let e = parse("remote_host\n").expect_err("no value");
        assert!(matches!(e, ConfigError::RscMissingValue { .. }), "{e}");
    }

    #[test]
    fn aliases_resolve() {
        assert_eq!(canonical_syscall("pread"), Some("pread64"));
        assert_eq!(canonical_syscall("openat"), Some("openat"));
        assert_eq!(canonical_syscall("fdatsync"), Some("fdatasync"));
        assert_eq!(canonical_syscall("nope"), None);
    }
}
