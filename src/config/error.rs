//! Configuration errors. Every message says where the bad value came from
//! (a flag, or file:line) and what is wrong with it.
//!
//! Errors only: must not parse.

use std::fmt;
use std::io;
use std::path::PathBuf;

use super::types::{DelayError, MountError, Optimizations, OptimizeError, RemoteAddrError};

/// Where a setting was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--mount`.
    CommandLine(&'static str),
    /// A line (1-based) of a settings file.
    File { path: PathBuf, line: usize },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::CommandLine(flag) => write!(f, "command line {flag}"),
            Self::File { path, line } => write!(f, "{}:{line}", path.display()),
        }
    }
}

/// A value together with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub origin: Origin,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// Malformed TOML, an unknown key, or a value of the wrong type.
    #[error("{}: {message}", toml_location(path, *line_col))]
    Toml {
        path: PathBuf,
        /// 1-based line and column (in characters), when toml gave a span.
        line_col: Option<(usize, usize)>,
        message: String,
    },

    #[error(
        "{}:{line}: unknown keyword `{keyword}` (rsc.config knows socket_on, disk_on, local_path, remote_path, REMOTE, remote_host)",
        path.display()
    )]
    RscUnknownKeyword {
        path: PathBuf,
        line: usize,
        keyword: String,
    },

    #[error("{}:{line}: unknown syscall `{name}` in REMOTE line", path.display())]
    RscUnknownSyscall {
        path: PathBuf,
        line: usize,
        name: String,
    },

    #[error("{}:{line}: `{keyword}` needs a value", path.display())]
    RscMissingValue {
        path: PathBuf,
        line: usize,
        keyword: &'static str,
    },

    #[error("{}:{line}: `{keyword}` expects {expected}, found `{value}`", path.display())]
    RscBadValue {
        path: PathBuf,
        line: usize,
        keyword: &'static str,
        expected: &'static str,
        value: String,
    },

    #[error("{}:{line}: `{keyword}` repeated (first given on line {first_line})", path.display())]
    RscDuplicate {
        path: PathBuf,
        line: usize,
        first_line: usize,
        keyword: &'static str,
    },

    #[error("{}:{line}: `disk_on 1` needs a `{missing}` line", path.display())]
    RscIncompleteMount {
        path: PathBuf,
        line: usize,
        missing: &'static str,
    },

    #[error(
        "{}:{line}: `{keyword}` given but there is no disk_on line; add `disk_on 1` (or `disk_on 0` to keep the mount off)",
        path.display()
    )]
    RscPathWithoutDiskOn {
        path: PathBuf,
        line: usize,
        keyword: &'static str,
    },

    #[error("{origin}: invalid remote `{value}`: {source}")]
    InvalidRemote {
        origin: Origin,
        value: String,
        #[source]
        source: RemoteAddrError,
    },

    #[error("{origin}: invalid nagle_delay `{value}`: {source}")]
    InvalidDelay {
        origin: Origin,
        value: String,
        #[source]
        source: DelayError,
    },

    #[error("{origin}: invalid nagle_bytes {value}: expected 1 to 4294967295")]
    InvalidNagleBytes { origin: Origin, value: i64 },

    #[error("{origin}: invalid mount: {source}")]
    InvalidMount {
        origin: Origin,
        #[source]
        source: MountError,
    },

    #[error("{}", duplicate_mount(local, first, second))]
    DuplicateMount {
        local: PathBuf,
        first: Origin,
        second: Origin,
    },

    #[error("{origin}: invalid optimize list: {source}")]
    InvalidOptimize {
        origin: Origin,
        #[source]
        source: OptimizeError,
    },

    #[error("{origin}: pure conflicts with optimize `{optimize}` (pure means optimize none)")]
    PureConflictsWithOptimize {
        origin: Origin,
        optimize: Optimizations,
    },

    #[error("{origin}: {setting} path is empty")]
    EmptyPath {
        origin: Origin,
        setting: &'static str,
    },

    #[error("{origin}: cannot expand `~` in {}: HOME is not set", path.display())]
    TildeWithoutHome { origin: Origin, path: PathBuf },

    #[error("no default for {setting}: neither XDG_CONFIG_HOME nor HOME is set; pass {flag}")]
    NoConfigDir {
        setting: &'static str,
        flag: &'static str,
    },

    #[error("no program to run: use rscq [OPTIONS] -- PROGRAM [ARGS...]")]
    MissingProgram,

    #[error("{}", unknown_server(name, file.as_deref(), known))]
    UnknownServer {
        name: String,
        /// The settings file looked in; `None` when there was none.
        file: Option<PathBuf>,
        known: Vec<String>,
    },

    #[error("{origin}: [server.{name}] cannot hold server sections of its own")]
    NestedServer { origin: Origin, name: String },

    #[error("{origin}: invalid stat_ttl `{value}`: {source}")]
    InvalidStatTtl {
        origin: Origin,
        value: String,
        #[source]
        source: DelayError,
    },

    #[error("{origin}: invalid reconnect_grace `{value}`: {source}")]
    InvalidReconnectGrace {
        origin: Origin,
        value: String,
        #[source]
        source: DelayError,
    },

    #[error("{origin}: invalid idle_timeout `{value}`: {source}")]
    InvalidIdleTimeout {
        origin: Origin,
        value: String,
        #[source]
        source: DelayError,
    },

    #[error("{origin}: invalid verbose {value}: expected 0, 1 (info) or 2 (debug)")]
    InvalidVerbose { origin: Origin, value: i64 },

    #[error("{origin}: invalid listen address `{value}` (expected IP:PORT, e.g. 0.0.0.0:4433)")]
    InvalidListen { origin: Origin, value: String },

    #[error("{origin}: invalid readahead_window {value}: expected 65536 to 1073741824")]
    InvalidReadaheadWindow { origin: Origin, value: i64 },

    #[error("{origin}: invalid net_send_window {value}: expected 65536 to 16777216")]
    InvalidNetSendWindow { origin: Origin, value: i64 },

    #[error(
        "{origin}: `{name}` is neither a [[remotes]] name, a [server.NAME] section nor a HOST[:PORT]: {source}"
    )]
    UnknownRemote {
        origin: Origin,
        name: String,
        #[source]
        source: RemoteAddrError,
    },

    #[error("{origin}: [server.{name}] is used as a remote but sets no `remote` address")]
    SectionWithoutRemote { origin: Origin, name: String },

    #[error("{origin}: [[remotes]] name `{name}` is given twice")]
    DuplicateRemoteName { origin: Origin, name: String },

    #[error("{origin}: a [[remotes]] table needs a non-empty `name`")]
    EmptyRemoteName { origin: Origin },
}

fn unknown_server(name: &str, file: Option<&std::path::Path>, known: &[String]) -> String {
    match (file, known) {
        (None, _) => format!(
            "-S {name}: no settings file to take [server.{name}] from (write it in ~/.config/rscq/config.toml or give --config)"
        ),
        (Some(f), []) => format!("-S {name}: {} has no [server.NAME] sections", f.display()),
        (Some(f), known) => format!(
            "-S {name}: {} has no [server.{name}]; known servers: {}",
            f.display(),
            known.join(", ")
        ),
    }
}

fn toml_location(path: &std::path::Path, line_col: Option<(usize, usize)>) -> String {
    match line_col {
        Some((line, col)) => format!("{}:{line}:{col}", path.display()),
        None => path.display().to_string(),
    }
}

fn duplicate_mount(local: &std::path::Path, first: &Origin, second: &Origin) -> String {
    if first == second {
        // Both from the command line, or both on one TOML line.
        format!("{second}: mount point {} is given twice", local.display())
    } else {
        format!(
            "{second}: mount point {} is already used by the mount at {first}",
            local.display()
        )
    }
}
