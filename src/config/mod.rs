//! Settings from flags, TOML files and the thesis's rsc.config format.
//!
//! Flow: [`ClientArgs`] (clap) → the `--config` file, else the default
//! `config.toml` in the config directory if there is one, parsed into
//! [`FileSettings`] → the `[server.NAME]` section `-S NAME` picks laid over
//! the file's top level → [`resolve`] overlays the flags and validates →
//! [`ClientSettings`]. Everything except [`resolve`] is pure: parsers take
//! the file's text and its name, and the environment comes in as [`Env`].
//!
//! Format of `--config` (see [`parse_config_file`]): a name ending in
//! `.toml` is always TOML. Otherwise, if the first line that is not blank or
//! a `#` comment starts with `socket_on`, `disk_on`, `local_path`,
//! `remote_path`, `REMOTE` or `remote_host` (followed by a value, not `=`), the file is
//! rsc.config; anything else is parsed as TOML.
//!
//! Precedence: a flag given on the command line wins over the file's
//! `[server.NAME]` section, which wins over the file's top level (as an
//! ssh `Host` block over its defaults). Boolean
//! flags can only switch a setting on (a file's `trace = true` cannot be
//! undone from the command line). `--mount` flags replace the file's mounts
//! as a whole, and a section's `mounts` the top level's. `--pure`/`--optimize` on the command line replace the file's
//! `pure`/`optimize` as a whole.
//!
//! Must not start anything: the result is plain data for the binaries.

mod cli;
mod error;
mod remotes;
mod rsc_config;
mod server_file;
mod toml_file;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

pub use cli::{ClientArgs, ClientCommand, FingerprintArgs, KeygenArgs};
pub use error::{ConfigError, Located, Origin};
pub use remotes::{Placement, RemoteDef, RemoteIndex, RemoteSpec};
pub use rsc_config::{canonical_syscall, looks_like_rsc_config, parse_rsc_config};
pub use server_file::{ServerFileSettings, parse_server_toml};
pub use toml_file::{line_col, parse_toml};
pub use types::{
    DEFAULT_IDLE_TIMEOUT, DEFAULT_PORT, Delay, DelayError, IdleTimeout, LogFormat,
    MAX_IDLE_TIMEOUT, MAX_STAT_TTL, MIN_IDLE_TIMEOUT, Mount, MountError, MountSide, NagleSettings,
    OPTIMIZATION_NAMES, Optimizations, OptimizeError, RemoteAddr, RemoteAddrError, StatTtl,
};
pub use types::{DEFAULT_NET_SEND_WINDOW, MAX_NET_SEND_WINDOW, MIN_NET_SEND_WINDOW};
pub use types::{DEFAULT_RECONNECT_GRACE, MAX_RECONNECT_GRACE, ReconnectGrace};

/// Everything the client needs to run, after merging file and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    /// `None`: start an embedded executor on loopback.
    pub remote: Option<RemoteAddr>,
    /// Validated: absolute, normalized, unique LOCAL, LOCAL not `/`.
    /// LOCALs may nest (`/r` and `/r/etc`); the longest prefix should win.
    pub mounts: Vec<Mount>,
    pub uname: bool,
    pub net: bool,
    pub optimizations: Optimizations,
    /// How the `nagle` layer holds socket writes (used when it is on).
    pub nagle: NagleSettings,
    /// How long prefetched stat answers stay valid.
    pub stat_ttl: std::time::Duration,
    /// The per-connection read-ahead window for sockets (QUIC stream
    /// window); `None` keeps the transport's default.
    pub readahead_window: Option<u32>,
    /// How far a program's sends on a remote TCP connection may be ahead
    /// of the server's socket (`--net-send-window`).
    pub net_send_window: u32,
    /// Silence from the server that ends the session.
    pub idle_timeout: std::time::Duration,
    /// How long a lost connection is tried again (zero: not at all).
    pub reconnect_grace: std::time::Duration,
    pub trace: bool,
    /// Where `--trace` lines go (`None`: stderr).
    pub trace_file: Option<PathBuf>,
    /// `--trace` lines start with the time of day.
    pub trace_time: bool,
    pub stats: bool,
    /// `-v` count: 0 quiet, 1 info, 2 or more debug.
    pub verbose: u8,
    /// How log lines are written.
    pub log_format: LogFormat,
    pub server_cert: Option<PathBuf>,
    pub identity_dir: PathBuf,
    pub known_servers: PathBuf,
    /// Non-empty: argv of the program to run.
    pub program: Vec<OsString>,
    /// The servers of the run and which serves each mount, `net` and
    /// `uname`; `remotes[0]` is `remote` with `server_cert`: the default
    /// remote, unless it serves nothing and another does (then that one).
    pub placement: Placement,
    /// Syscalls an rsc.config listed on `REMOTE` lines (kernel names, e.g.
    /// `pread64`). `None` when the settings did not come from rsc.config:
    /// the client then derives the set from `mounts`/`uname`/`net`.
    pub forwarded_syscalls: Option<BTreeSet<String>>,
}

/// Settings read from one file, each optional so the flags can be laid
/// over them. Produced by [`parse_toml`] and [`parse_rsc_config`], which
/// have already checked everything that can be checked within the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSettings {
    pub path: PathBuf,
    pub remote: Option<RemoteAddr>,
    pub mounts: Vec<Located<Mount>>,
    pub uname: Option<bool>,
    pub net: Option<bool>,
    /// `uname = "HOST"`: the remote whose utsname is shown.
    pub uname_on: Option<Located<String>>,
    /// `net = "HOST"`: the remote whose network the sockets use.
    pub net_on: Option<Located<String>>,
    /// `[[remotes]]` tables (TOML only).
    pub remotes: Vec<RemoteDef>,
    /// `pure` and `optimize` of the file, already combined.
    pub optimizations: Option<Optimizations>,
    pub nagle_delay: Option<std::time::Duration>,
    pub nagle_bytes: Option<usize>,
    pub trace: Option<bool>,
    pub trace_file: Option<Located<PathBuf>>,
    pub trace_time: Option<bool>,
    pub stats: Option<bool>,
    /// Paths as written; `~` and relative paths are resolved by [`resolve`].
    pub server_cert: Option<Located<PathBuf>>,
    pub identity: Option<Located<PathBuf>>,
    pub known_servers: Option<Located<PathBuf>>,
    pub forwarded_syscalls: Option<BTreeSet<String>>,
    pub stat_ttl: Option<std::time::Duration>,
    pub readahead_window: Option<u32>,
    pub net_send_window: Option<u32>,
    pub idle_timeout: Option<std::time::Duration>,
    pub reconnect_grace: Option<std::time::Duration>,
    pub verbose: Option<u8>,
    pub log_format: Option<LogFormat>,
    /// `[server.NAME]` sections (TOML only), each with the keys it sets;
    /// their own `servers` are empty.
    pub servers: BTreeMap<String, FileSettings>,
}

impl FileSettings {
    /// A file that sets nothing.
    pub fn empty(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            remote: None,
            mounts: Vec::new(),
            uname: None,
            net: None,
            uname_on: None,
            net_on: None,
            remotes: Vec::new(),
            optimizations: None,
            nagle_delay: None,
            nagle_bytes: None,
            trace: None,
            trace_file: None,
            trace_time: None,
            stats: None,
            server_cert: None,
            identity: None,
            known_servers: None,
            forwarded_syscalls: None,
            stat_ttl: None,
            readahead_window: None,
            net_send_window: None,
            idle_timeout: None,
            reconnect_grace: None,
            verbose: None,
            log_format: None,
            servers: BTreeMap::new(),
        }
    }

    /// The settings with `section`'s laid over them: each key the section
    /// sets wins, its `mounts` (when it has any) replace these.
    pub fn overlay(&self, section: &FileSettings) -> FileSettings {
        fn pick<T: Clone>(over: &Option<T>, under: &Option<T>) -> Option<T> {
            over.clone().or_else(|| under.clone())
        }
        FileSettings {
            path: self.path.clone(),
            remote: pick(&section.remote, &self.remote),
            mounts: if section.mounts.is_empty() {
                self.mounts.clone()
            } else {
                section.mounts.clone()
            },
            uname: pick(&section.uname, &self.uname),
            net: pick(&section.net, &self.net),
            // A section's `net`/`uname`, named or not, replaces the top
            // level's as a whole.
            uname_on: if section.uname.is_some() {
                section.uname_on.clone()
            } else {
                self.uname_on.clone()
            },
            net_on: if section.net.is_some() {
                section.net_on.clone()
            } else {
                self.net_on.clone()
            },
            remotes: if section.remotes.is_empty() {
                self.remotes.clone()
            } else {
                section.remotes.clone()
            },
            optimizations: pick(&section.optimizations, &self.optimizations),
            nagle_delay: pick(&section.nagle_delay, &self.nagle_delay),
            nagle_bytes: pick(&section.nagle_bytes, &self.nagle_bytes),
            trace: pick(&section.trace, &self.trace),
            trace_file: pick(&section.trace_file, &self.trace_file),
            trace_time: pick(&section.trace_time, &self.trace_time),
            stats: pick(&section.stats, &self.stats),
            server_cert: pick(&section.server_cert, &self.server_cert),
            identity: pick(&section.identity, &self.identity),
            known_servers: pick(&section.known_servers, &self.known_servers),
            forwarded_syscalls: pick(&section.forwarded_syscalls, &self.forwarded_syscalls),
            stat_ttl: pick(&section.stat_ttl, &self.stat_ttl),
            readahead_window: pick(&section.readahead_window, &self.readahead_window),
            net_send_window: pick(&section.net_send_window, &self.net_send_window),
            idle_timeout: pick(&section.idle_timeout, &self.idle_timeout),
            reconnect_grace: pick(&section.reconnect_grace, &self.reconnect_grace),
            verbose: pick(&section.verbose, &self.verbose),
            log_format: pick(&section.log_format, &self.log_format),
            servers: BTreeMap::new(),
        }
    }
}

/// The parts of the process environment that defaults depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub home: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
}

impl Env {
    pub fn from_process() -> Self {
        // Empty values count as unset, as the XDG spec asks.
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Self {
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
        }
    }

    /// The settings file read when `--config` is not given:
    /// `<config dir>/config.toml`.
    pub fn default_config_file(&self) -> Option<PathBuf> {
        self.config_dir().map(|d| d.join(DEFAULT_CONFIG_FILE))
    }

    /// `$XDG_CONFIG_HOME/rscq`, else `$HOME/.config/rscq`. A relative
    /// XDG_CONFIG_HOME is ignored, as the XDG spec requires.
    pub fn config_dir(&self) -> Option<PathBuf> {
        if let Some(x) = self.xdg_config_home.as_ref().filter(|p| p.is_absolute()) {
            return Some(x.join("rscq"));
        }
        self.home.as_ref().map(|h| h.join(".config").join("rscq"))
    }
}

/// The name of the settings file in the config directory.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// Which syntax a settings file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    Toml,
    RscConfig,
}

/// Applies the detection rule described in the module documentation.
pub fn detect_format(path: &Path, src: &str) -> ConfigFormat {
    let is_toml_ext = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if !is_toml_ext && looks_like_rsc_config(src) {
        ConfigFormat::RscConfig
    } else {
        ConfigFormat::Toml
    }
}

/// Parses a settings file in either format. Pure: `src` is the file's text.
pub fn parse_config_file(src: &str, path: &Path) -> Result<FileSettings, ConfigError> {
    // Editors on some systems write a BOM; neither format wants it.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    match detect_format(path, src) {
        ConfigFormat::Toml => parse_toml(src, path),
        ConfigFormat::RscConfig => parse_rsc_config(src, path),
    }
}

/// Loads `--config`, or else the default file when it exists, overlays
/// the flags and validates. The only function here that touches the
/// filesystem or the environment.
pub fn resolve(args: &ClientArgs) -> Result<ClientSettings, ConfigError> {
    let env = Env::from_process();
    let file = load_config(args, &env)?;
    resolve_with(args, file.as_ref(), &env)
}

/// The settings file of `args`: `--config FILE` (which must exist; several
/// are merged by `remotes::merge_files`), else
/// [`Env::default_config_file`] if it exists (a missing default file is no
/// error, a malformed one is).
pub fn load_config(args: &ClientArgs, env: &Env) -> Result<Option<FileSettings>, ConfigError> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })
    };
    match args.config.as_slice() {
        [path] => Ok(Some(parse_config_file(&read(path)?, path)?)),
        [] => match env.default_config_file() {
            Some(path) => match read(&path) {
                Ok(src) => Ok(Some(parse_toml(&src, &path)?)),
                Err(ConfigError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(e),
            },
            None => Ok(None),
        },
        several => {
            let files = several
                .iter()
                .map(|path| parse_config_file(&read(path)?, path))
                .collect::<Result<Vec<_>, _>>()?;
            remotes::merge_files(files).map(Some)
        }
    }
}

/// [`resolve`] with the file already parsed and the environment given.
pub fn resolve_with(
    args: &ClientArgs,
    file: Option<&FileSettings>,
    env: &Env,
) -> Result<ClientSettings, ConfigError> {
    if args.program.is_empty() {
        return Err(ConfigError::MissingProgram);
    }
    let empty;
    let file = match file {
        Some(f) => f,
        None => {
            empty = FileSettings::empty(Path::new(""));
            &empty
        }
    };
    let top = file;
    let chosen;
    let file = match &args.server {
        None => file,
        Some(name) => {
            chosen = server_section(file, name)?;
            &chosen
        }
    };

    let mounts: Vec<Located<Mount>> = if args.mounts.is_empty() {
        file.mounts.clone()
    } else {
        args.mounts
            .iter()
            .map(|m| Located {
                value: m.clone(),
                origin: Origin::CommandLine("--mount"),
            })
            .collect()
    };
    check_duplicate_mounts(&mounts)?;

    let optimizations = optimizations_of(args, file)?;

    let (identity_dir, known_servers) = key_paths(args, file, env)?;

    let remote = args.remote.clone().or_else(|| file.remote.clone());
    let server_cert = pick_path(
        args.server_cert.as_ref(),
        "--server-cert",
        file.server_cert.as_ref(),
        file,
        env,
    )?;
    let placement = remotes::place(
        RemoteSpec::default_remote(remote.clone(), server_cert.clone()),
        &mounts,
        named_host(args.net.as_ref(), "--net", file.net_on.as_ref()).as_ref(),
        named_host(args.uname.as_ref(), "--uname", file.uname_on.as_ref()).as_ref(),
        &remotes::Names {
            defs: &file.remotes,
            sections: &top.servers,
            file,
            env,
        },
    )?;

    let uname = args.uname.is_some() || file.uname.unwrap_or(false);
    let net = args.net.is_some() || file.net.unwrap_or(false);
    let placement = placement.without_unused(net, uname);
    // The one-remote client connects to `remote`: the first remote used.
    let (remote, server_cert) = match placement.remotes.first() {
        Some(first) => (first.address.clone(), first.server_cert.clone()),
        None => (remote, server_cert),
    };

    Ok(ClientSettings {
        remote,
        mounts: mounts.into_iter().map(|m| m.value).collect(),
        uname,
        net,
        optimizations,
        nagle: nagle_of(args, file),
        stat_ttl: args
            .stat_ttl
            .map(|t| t.0)
            .or(file.stat_ttl)
            .unwrap_or(crate::engine::DEFAULT_TTL),
        readahead_window: args.readahead_window.or(file.readahead_window),
        net_send_window: args
            .net_send_window
            .or(file.net_send_window)
            .unwrap_or(DEFAULT_NET_SEND_WINDOW),
        idle_timeout: args
            .idle_timeout
            .map(|t| t.0)
            .or(file.idle_timeout)
            .unwrap_or(DEFAULT_IDLE_TIMEOUT),
        reconnect_grace: args
            .reconnect_grace
            .map(|t| t.0)
            .or(file.reconnect_grace)
            .unwrap_or(DEFAULT_RECONNECT_GRACE),
        trace: args.trace
            || args.trace_file.is_some()
            || file.trace_file.is_some()
            || file.trace.unwrap_or(false),
        trace_file: pick_path(
            args.trace_file.as_ref(),
            "--trace-file",
            file.trace_file.as_ref(),
            file,
            env,
        )?,
        trace_time: args.trace_time || file.trace_time.unwrap_or(false),
        stats: args.stats || file.stats.unwrap_or(false),
        verbose: args.verbose.max(file.verbose.unwrap_or(0)),
        log_format: args.log_format.or(file.log_format).unwrap_or_default(),
        server_cert,
        identity_dir,
        known_servers,
        program: args.program.clone(),
        placement,
        forwarded_syscalls: file.forwarded_syscalls.clone(),
    })
}

/// `--nagle-delay`/`--nagle-bytes` if given, else the file's, else the defaults.
fn nagle_of(args: &ClientArgs, file: &FileSettings) -> NagleSettings {
    NagleSettings {
        delay: args
            .nagle_delay
            .map(|d| d.0)
            .or(file.nagle_delay)
            .unwrap_or(NagleSettings::default().delay),
        bytes: args
            .nagle_bytes
            .and_then(|b| usize::try_from(b).ok())
            .or(file.nagle_bytes)
            .unwrap_or(NagleSettings::default().bytes),
    }
}

/// The HOST of `--net`/`--uname`: the flag's when given (`--net` alone
/// means the default remote, over the file's), else the file's.
fn named_host(
    flag: Option<&Option<String>>,
    flag_name: &'static str,
    from_file: Option<&Located<String>>,
) -> Option<Located<String>> {
    match flag {
        Some(Some(host)) => Some(Located {
            value: host.clone(),
            origin: Origin::CommandLine(flag_name),
        }),
        Some(None) => None,
        None => from_file.cloned(),
    }
}

/// The file's settings with its `[server.NAME]` section laid over them.
fn server_section(file: &FileSettings, name: &str) -> Result<FileSettings, ConfigError> {
    match file.servers.get(name) {
        Some(section) => Ok(file.overlay(section)),
        None => Err(ConfigError::UnknownServer {
            name: name.to_owned(),
            file: (!file.path.as_os_str().is_empty()).then(|| file.path.clone()),
            known: file.servers.keys().cloned().collect(),
        }),
    }
}

/// `--pure`/`--optimize` if given, else the file's; `--pure` with an
/// `--optimize` that names a layer is a contradiction.
fn optimizations_of(args: &ClientArgs, file: &FileSettings) -> Result<Optimizations, ConfigError> {
    Ok(if args.pure || args.optimize.is_some() {
        match (args.pure, args.optimize) {
            (true, Some(o)) if !o.is_pure() => {
                return Err(ConfigError::PureConflictsWithOptimize {
                    origin: Origin::CommandLine("--pure"),
                    optimize: o,
                });
            }
            (true, _) => Optimizations::NONE,
            (false, o) => o.unwrap_or_default(),
        }
    } else {
        file.optimizations.unwrap_or_default()
    })
}

/// The identity directory and the known-servers file: flag, file, or the
/// config directory's defaults.
fn key_paths(
    args: &ClientArgs,
    file: &FileSettings,
    env: &Env,
) -> Result<(PathBuf, PathBuf), ConfigError> {
    let config_dir = || env.config_dir();
    let identity_dir = match pick_path(
        args.identity.as_ref(),
        "--identity",
        file.identity.as_ref(),
        file,
        env,
    )? {
        Some(p) => p,
        None => config_dir().ok_or(ConfigError::NoConfigDir {
            setting: "the identity directory",
            flag: "--identity",
        })?,
    };
    let known_servers = match pick_path(
        args.known_servers.as_ref(),
        "--known-servers",
        file.known_servers.as_ref(),
        file,
        env,
    )? {
        Some(p) => p,
        None => config_dir()
            .map(|d| d.join("known_servers"))
            .ok_or(ConfigError::NoConfigDir {
                setting: "the known servers file",
                flag: "--known-servers",
            })?,
    };
    Ok((identity_dir, known_servers))
}

/// The `tracing` filter directive for a `-v` count: `RUST_LOG` (given as
/// `rust_log`) when it is set and not empty, else `quiet` for none, `info`
/// for one and `debug` for more.
pub fn log_directive(verbose: u8, rust_log: Option<&str>, quiet: &str) -> String {
    match (rust_log.filter(|v| !v.is_empty()), verbose) {
        (Some(directive), _) => directive.to_owned(),
        (None, 0) => quiet.to_owned(),
        (None, 1) => "info".to_owned(),
        (None, _) => "debug".to_owned(),
    }
}

/// Directory for `rscq keygen`: `--dir`, else the default identity dir.
pub fn keygen_dir(args: &KeygenArgs, env: &Env) -> Result<PathBuf, ConfigError> {
    match &args.dir {
        Some(dir) => expand_tilde(dir, env, &Origin::CommandLine("--dir")),
        None => env.config_dir().ok_or(ConfigError::NoConfigDir {
            setting: "the identity directory",
            flag: "--dir",
        }),
    }
}

/// The flag's path if given, else the file's. A file's relative path is
/// taken relative to the file's directory, so a profile can sit next to the
/// certificate it pins regardless of where rscq is started.
fn pick_path(
    flag: Option<&PathBuf>,
    flag_name: &'static str,
    from_file: Option<&Located<PathBuf>>,
    file: &FileSettings,
    env: &Env,
) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = flag {
        return expand_tilde(p, env, &Origin::CommandLine(flag_name)).map(Some);
    }
    let Some(p) = from_file else {
        return Ok(None);
    };
    let expanded = expand_tilde(&p.value, env, &p.origin)?;
    if expanded.is_relative() {
        let dir = file.path.parent().unwrap_or(Path::new(""));
        return Ok(Some(dir.join(expanded)));
    }
    Ok(Some(expanded))
}

/// Expands a leading `~` component to HOME. The shell does this for
/// `--identity ~/x` but not for `--identity=~/x` nor inside a file.
/// `~user` is left alone: looking up other users is not worth a dependency.
fn expand_tilde(path: &Path, env: &Env, origin: &Origin) -> Result<PathBuf, ConfigError> {
    let mut components = path.components();
    match components.next() {
        Some(Component::Normal(first)) if first == "~" => match &env.home {
            Some(home) => Ok(home.join(components.as_path())),
            None => Err(ConfigError::TildeWithoutHome {
                origin: origin.clone(),
                path: path.to_owned(),
            }),
        },
        _ => Ok(path.to_owned()),
    }
}

/// Two mounts on the same LOCAL would make lookups ambiguous.
pub(crate) fn check_duplicate_mounts(mounts: &[Located<Mount>]) -> Result<(), ConfigError> {
    let mut seen: HashMap<&Path, &Origin> = HashMap::new();
    for m in mounts {
        if let Some(first) = seen.insert(&m.value.local, &m.origin) {
            return Err(ConfigError::DuplicateMount {
                local: m.value.local.clone(),
                first: first.clone(),
                second: m.origin.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
