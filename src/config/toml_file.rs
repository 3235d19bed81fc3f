//! TOML settings files: the same settings as the command-line flags.
//!
//! ```toml
//! remote = "server.example:4433"
//! mounts = ["/remote=/", { local = "/etc-r", remote = "/etc" }]
//! uname = true
//! net = false
//! optimize = ["nagle", "readahead"]   # or "all", "none", "nagle,readahead"
//! pure = false
//! nagle_delay = "5ms"                 # socket writes held at most this long
//! nagle_bytes = 16384                 # held socket bytes sent at once
//! trace = false
//! stats = true
//! server_cert = "server.der"          # relative paths: to this file's directory
//! identity = "~/.config/rscq"
//! known_servers = "~/.config/rscq/known_servers"
//! stat_ttl = "1s"                     # statcache, dirmeta: how long a stat answer stays valid
//! readahead_window = 8388608          # readahead for sockets (QUIC stream window)
//! net_send_window = 4194304           # --net: the most sends may be ahead of the server
//! idle_timeout = "60s"                # silence from the server that ends the session
//! reconnect_grace = "300s"            # how long a lost connection is tried again (0: never)
//! verbose = 1                         # as -v: 1 info, 2 debug (RUST_LOG wins)
//! log_format = "json"                 # log lines as JSON objects (default "text")
//!
//! [server.work]                       # `rscq -S work`: these keys win over the above
//! remote = "work.example:4433"
//! mounts = ["/w=/srv"]
//! net = true
//!
//! [[remotes]]                         # a name for another server
//! name = "nas"
//! address = "nas.example:4433"
//! server_cert = "nas.der"             # optional: pin it (else trust on first use)
//! ```
//!
//! A mount names its server as `"/d=nas:/export"` or `{ local = "/d",
//! remote = "/export", host = "nas" }`; `net = "HOST"` and `uname = "HOST"`
//! turn the setting on with that server's network or utsname. HOST is
//! looked up as `super::remotes` says. (`[[remotes]]`, not `[[remote]]`:
//! `remote` is already the default server's address.)
//!
//! Every key of the top level may appear in a `[server.NAME]` section; a
//! section's `mounts` replace the top level's.
//!
//! Values that need checking beyond their TOML type are kept with their span
//! so that a bad mount or address is reported at its own line.
//!
//! Pure: takes the file's text, must not read it or apply precedence (that is
//! [`super::resolve`]'s).

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::error::{ConfigError, Located, Origin};
use super::remotes::RemoteDef;
use super::types::{
    Delay, DelayError, IdleTimeout, LogFormat, MAX_NET_SEND_WINDOW, MIN_NET_SEND_WINDOW, Mount,
    Optimizations, ReconnectGrace, RemoteAddr, StatTtl,
};
use super::{FileSettings, check_duplicate_mounts};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Schema {
    remote: Option<Spanned<String>>,
    mounts: Option<Vec<Spanned<MountEntry>>>,
    uname: Option<Spanned<Switch>>,
    net: Option<Spanned<Switch>>,
    remotes: Option<Vec<Spanned<RemoteTable>>>,
    optimize: Option<Spanned<OptimizeValue>>,
    pure: Option<Spanned<bool>>,
    nagle_delay: Option<Spanned<String>>,
    nagle_bytes: Option<Spanned<i64>>,
    trace: Option<bool>,
    trace_file: Option<Spanned<String>>,
    trace_time: Option<bool>,
    stats: Option<bool>,
    server_cert: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    known_servers: Option<Spanned<String>>,
    stat_ttl: Option<Spanned<String>>,
    readahead_window: Option<Spanned<i64>>,
    net_send_window: Option<Spanned<i64>>,
    idle_timeout: Option<Spanned<String>>,
    log_format: Option<LogFormat>,
    reconnect_grace: Option<Spanned<String>>,
    verbose: Option<Spanned<i64>>,
    server: Option<BTreeMap<String, Spanned<Schema>>>,
}

/// A mount written as `"LOCAL=REMOTE"` or as `{ local = ..., remote = ... }`.
#[derive(Debug)]
enum MountEntry {
    Spec(String),
    Table(MountTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MountTable {
    local: String,
    remote: String,
    host: Option<String>,
}

/// A `[[remotes]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteTable {
    name: String,
    address: Spanned<String>,
    server_cert: Option<Spanned<String>>,
}

/// `net`/`uname`: `true`/`false`, or the HOST that serves it.
#[derive(Debug)]
enum Switch {
    Bool(bool),
    On(String),
}

impl<'de> Deserialize<'de> for Switch {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Switch;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"true, false, or the name of a remote (e.g. "nas")"#)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Switch, E> {
                Ok(Switch::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Switch, E> {
                if v.trim().is_empty() {
                    return Err(E::custom("empty remote name"));
                }
                // A quoted boolean is a slip, not a server named "true".
                if matches!(v, "true" | "false") {
                    return Err(E::invalid_type(de::Unexpected::Str(v), &self));
                }
                Ok(Switch::On(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `net`/`uname` key as the on/off setting and the HOST it names.
fn switch_key(
    key: Option<Spanned<Switch>>,
    at: &impl Fn(Range<usize>) -> Origin,
) -> (Option<bool>, Option<Located<String>>) {
    let Some(key) = key else { return (None, None) };
    let origin = at(key.span());
    match key.into_inner() {
        Switch::Bool(on) => (Some(on), None),
        Switch::On(host) => (
            Some(true),
            Some(Located {
                value: host,
                origin,
            }),
        ),
    }
}

/// `[[remotes]]`: each a unique name with an address.
fn remotes_key(
    tables: Vec<Spanned<RemoteTable>>,
    at: &impl Fn(Range<usize>) -> Origin,
) -> Result<Vec<RemoteDef>, ConfigError> {
    let mut defs: Vec<RemoteDef> = Vec::new();
    for table in tables {
        let origin = at(table.span());
        let table = table.into_inner();
        if table.name.trim().is_empty() {
            return Err(ConfigError::EmptyRemoteName { origin });
        }
        if defs.iter().any(|d| d.name == table.name) {
            return Err(ConfigError::DuplicateRemoteName {
                origin,
                name: table.name,
            });
        }
        let address_at = at(table.address.span());
        let text = table.address.into_inner();
        let address = text
            .parse::<RemoteAddr>()
            .map_err(|source| ConfigError::InvalidRemote {
                origin: address_at,
                value: text.clone(),
                source,
            })?;
        let server_cert = match table.server_cert {
            Some(c) => {
                let cert_at = at(c.span());
                let text = c.into_inner();
                if text.is_empty() {
                    return Err(ConfigError::EmptyPath {
                        origin: cert_at,
                        setting: "server_cert",
                    });
                }
                Some(Located {
                    value: PathBuf::from(text),
                    origin: cert_at,
                })
            }
            None => None,
        };
        defs.push(RemoteDef {
            name: table.name,
            address,
            server_cert,
            origin,
        });
    }
    Ok(defs)
}

// Hand-written rather than `#[serde(untagged)]`: untagged buffers the value
// and loses toml's spans, turning "unknown field `remot`" into "data did not
// match any variant" with no line.
impl<'de> Deserialize<'de> for MountEntry {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MountEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a mount: "LOCAL=REMOTE" or { local = "...", remote = "..." }"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MountEntry, E> {
                Ok(MountEntry::Spec(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MountEntry, A::Error> {
                MountTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(MountEntry::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// `optimize = "all" | "none" | "a,b"` or `optimize = ["a", "b"]`.
#[derive(Debug)]
enum OptimizeValue {
    Text(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for OptimizeValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OptimizeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""all", "none", or a list such as ["nagle", "readahead"]"#)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OptimizeValue, E> {
                Ok(OptimizeValue::Text(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OptimizeValue, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(OptimizeValue::List(names))
            }
        }
        d.deserialize_any(V)
    }
}

/// 1-based line and column (in characters) of a byte offset into `src`.
/// Offsets past the end or inside a character are clamped, since they come
/// from another crate and a slightly-off position beats a panic.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset = offset.saturating_sub(1);
    }
    let before = &src[..offset];
    let line = before.matches('\n').count().saturating_add(1);
    let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
    let column = before[line_start..].chars().count().saturating_add(1);
    (line, column)
}

/// Parses a TOML settings file. `path` is only used in error messages and
/// origins; nothing is read here.
pub fn parse_toml(src: &str, path: &Path) -> Result<FileSettings, ConfigError> {
    let mut schema: Schema = toml::from_str(src).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        line_col: e.span().map(|s| line_col(src, s.start)),
        message: e.message().trim_end().to_owned(),
    })?;
    let sections = schema.server.take().unwrap_or_default();
    let mut top = settings(schema, src, path)?;
    for (name, section) in sections {
        let origin = Origin::File {
            path: path.to_owned(),
            line: line_col(src, section.span().start).0,
        };
        let section = section.into_inner();
        if section.server.is_some() {
            return Err(ConfigError::NestedServer { origin, name });
        }
        let parsed = settings(section, src, path)?;
        top.servers.insert(name, parsed);
    }
    Ok(top)
}

/// The settings of one table (the top level or a section), whose nested
/// `server` sections were taken out.
/// A key holding a duration with its unit (`nagle_delay`, `stat_ttl`,
/// `idle_timeout`): `parse` reads and bounds it, `invalid` names what is
/// wrong and where (`at` turns the key's span into its line).
pub(super) fn duration_key(
    key: Option<Spanned<String>>,
    at: &dyn Fn(Range<usize>) -> Origin,
    parse: impl Fn(&str) -> Result<std::time::Duration, DelayError>,
    invalid: impl Fn(Origin, String, DelayError) -> ConfigError,
) -> Result<Option<std::time::Duration>, ConfigError> {
    let Some(key) = key else { return Ok(None) };
    let origin = at(key.span());
    let text = key.into_inner();
    match parse(&text) {
        Ok(d) => Ok(Some(d)),
        Err(source) => Err(invalid(origin, text, source)),
    }
}

/// An integer key that must fit `T` and satisfy `valid`.
fn int_key<T: TryFrom<i64>>(
    value: Option<Spanned<i64>>,
    at: &impl Fn(Range<usize>) -> Origin,
    valid: impl Fn(&T) -> bool,
    invalid: impl Fn(Origin, i64) -> ConfigError,
) -> Result<Option<T>, ConfigError> {
    value
        .map(|v| {
            let origin = at(v.span());
            let n = v.into_inner();
            T::try_from(n)
                .ok()
                .filter(|t| valid(t))
                .ok_or_else(|| invalid(origin, n))
        })
        .transpose()
}

/// `mounts`: each entry a `LOCAL=REMOTE` string or a table; no local path twice.
fn mounts_key(
    entries: Vec<Spanned<MountEntry>>,
    at: &impl Fn(Range<usize>) -> Origin,
) -> Result<Vec<Located<Mount>>, ConfigError> {
    let mut mounts = Vec::new();
    for entry in entries {
        let origin = at(entry.span());
        let parsed = match entry.into_inner() {
            MountEntry::Spec(s) => s.parse::<Mount>(),
            MountEntry::Table(t) => Mount::new(&t.local, &t.remote).and_then(|m| m.on_host(t.host)),
        };
        match parsed {
            Ok(value) => mounts.push(Located { value, origin }),
            Err(source) => return Err(ConfigError::InvalidMount { origin, source }),
        }
    }
    check_duplicate_mounts(&mounts)?;
    Ok(mounts)
}

/// `pure` and `optimize` into one set of layers; `pure = true` with an
/// `optimize` that names a layer is a contradiction.
fn optimizations_key(
    pure: Option<Spanned<bool>>,
    optimize: Option<Spanned<OptimizeValue>>,
    at: &impl Fn(Range<usize>) -> Origin,
) -> Result<Option<Optimizations>, ConfigError> {
    let optimize = match optimize {
        Some(o) => {
            let origin = at(o.span());
            let parsed = match o.into_inner() {
                OptimizeValue::Text(s) => s.parse::<Optimizations>(),
                OptimizeValue::List(v) => Optimizations::from_names(v.iter().map(String::as_str)),
            };
            let value = parsed.map_err(|source| ConfigError::InvalidOptimize {
                origin: origin.clone(),
                source,
            })?;
            Some(Located { value, origin })
        }
        None => None,
    };
    Ok(match (pure, optimize) {
        (Some(p), Some(o)) if *p.get_ref() && !o.value.is_pure() => {
            return Err(ConfigError::PureConflictsWithOptimize {
                origin: o.origin,
                optimize: o.value,
            });
        }
        (Some(p), _) if *p.get_ref() => Some(Optimizations::NONE),
        (_, Some(o)) => Some(o.value),
        _ => None,
    })
}

/// The `remote` key: a host, with an optional port.
fn remote_key(
    value: Option<Spanned<String>>,
    at: &impl Fn(Range<usize>) -> Origin,
) -> Result<Option<RemoteAddr>, ConfigError> {
    value
        .map(|r| {
            let origin = at(r.span());
            let text = r.into_inner();
            text.parse::<RemoteAddr>()
                .map_err(|source| ConfigError::InvalidRemote {
                    origin,
                    value: text.clone(),
                    source,
                })
        })
        .transpose()
}

/// A key naming a file (`trace_file`, `server_cert`, …): any non-empty path.
fn path_key(
    value: Option<Spanned<String>>,
    setting: &'static str,
    at: &impl Fn(Range<usize>) -> Origin,
) -> Result<Option<Located<PathBuf>>, ConfigError> {
    value
        .map(|s| {
            let origin = at(s.span());
            let text = s.into_inner();
            if text.is_empty() {
                Err(ConfigError::EmptyPath { origin, setting })
            } else {
                Ok(Located {
                    value: PathBuf::from(text),
                    origin,
                })
            }
        })
        .transpose()
}

fn settings(schema: Schema, src: &str, path: &Path) -> Result<FileSettings, ConfigError> {
    let at = |span: Range<usize>| Origin::File {
        path: path.to_owned(),
        line: line_col(src, span.start).0,
    };

    let remote = remote_key(schema.remote, &at)?;

    let mounts = mounts_key(schema.mounts.unwrap_or_default(), &at)?;
    let (uname, uname_on) = switch_key(schema.uname, &at);
    let (net, net_on) = switch_key(schema.net, &at);
    let remotes = remotes_key(schema.remotes.unwrap_or_default(), &at)?;

    let optimizations = optimizations_key(schema.pure, schema.optimize, &at)?;

    let nagle_delay = duration_key(
        schema.nagle_delay,
        &at,
        |t| t.parse::<Delay>().map(|d| d.0),
        |origin, value, source| ConfigError::InvalidDelay {
            origin,
            value,
            source,
        },
    )?;
    let nagle_bytes = int_key(
        schema.nagle_bytes,
        &at,
        |n: &usize| *n >= 1 && *n <= u32::MAX as usize,
        |origin, value| ConfigError::InvalidNagleBytes { origin, value },
    )?;

    let stat_ttl = duration_key(
        schema.stat_ttl,
        &at,
        |t| t.parse::<StatTtl>().map(|d| d.0),
        |origin, value, source| ConfigError::InvalidStatTtl {
            origin,
            value,
            source,
        },
    )?;
    let idle_timeout = duration_key(
        schema.idle_timeout,
        &at,
        |t| t.parse::<IdleTimeout>().map(|d| d.0),
        |origin, value, source| ConfigError::InvalidIdleTimeout {
            origin,
            value,
            source,
        },
    )?;
    let reconnect_grace = duration_key(
        schema.reconnect_grace,
        &at,
        |t| t.parse::<ReconnectGrace>().map(|d| d.0),
        |origin, value, source| ConfigError::InvalidReconnectGrace {
            origin,
            value,
            source,
        },
    )?;
    let readahead_window = int_key(
        schema.readahead_window,
        &at,
        |n: &u32| (65536..=1_073_741_824).contains(n),
        |origin, value| ConfigError::InvalidReadaheadWindow { origin, value },
    )?;
    let net_send_window = int_key(
        schema.net_send_window,
        &at,
        |n: &u32| (MIN_NET_SEND_WINDOW..=MAX_NET_SEND_WINDOW).contains(n),
        |origin, value| ConfigError::InvalidNetSendWindow { origin, value },
    )?;
    let verbose = int_key(
        schema.verbose,
        &at,
        |n: &u8| *n <= 2,
        |origin, value| ConfigError::InvalidVerbose { origin, value },
    )?;

    let path_setting = |v, setting| path_key(v, setting, &at);

    Ok(FileSettings {
        path: path.to_owned(),
        remote,
        mounts,
        uname,
        net,
        uname_on,
        net_on,
        remotes,
        optimizations,
        nagle_delay,
        nagle_bytes,
        trace: schema.trace,
        trace_file: path_setting(schema.trace_file, "trace_file")?,
        trace_time: schema.trace_time,
        stats: schema.stats,
        server_cert: path_setting(schema.server_cert, "server_cert")?,
        identity: path_setting(schema.identity, "identity")?,
        known_servers: path_setting(schema.known_servers, "known_servers")?,
        forwarded_syscalls: None,
        stat_ttl,
        readahead_window,
        net_send_window,
        idle_timeout,
        reconnect_grace,
        verbose,
        log_format: schema.log_format,
        servers: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests;
