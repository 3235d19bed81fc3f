//! Value types shared by the command line, the TOML file and rsc.config:
//! the server address, a mount, and the set of optimizations.
//!
//! Each parses from the string a user types, with a small error type of its
//! own; callers wrap that error with where the string came from.
//!
//! Pure: must not know where a string came from.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

/// Port used when `--remote` names only a host.
pub const DEFAULT_PORT: u16 = 4433;

/// A server address as the user wrote it. The host is kept as a string
/// because name resolution belongs to the transport, not to parsing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteAddr {
    /// Host name, IPv4 literal, or IPv6 literal without brackets.
    pub host: String,
    pub port: u16,
}

impl RemoteAddr {
    /// True when the host is an IPv6 literal (so it needs brackets when
    /// joined with a port).
    pub fn is_ipv6_literal(&self) -> bool {
        self.host.contains(':')
    }
}

impl fmt::Display for RemoteAddr {
    /// `host:port`, or `[v6]:port`: a string `ToSocketAddrs` accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ipv6_literal() {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteAddrError {
    #[error("empty address (expected HOST, HOST:PORT or [IPv6]:PORT)")]
    Empty,
    #[error("empty host before the port")]
    EmptyHost,
    #[error("port `{0}` is not a number between 1 and 65535")]
    BadPort(String),
    #[error("`{0}` looks like an IPv6 address: put it in brackets, e.g. [::1]:{DEFAULT_PORT}")]
    UnbracketedIpv6(String),
    #[error("`{0}` inside brackets is not an IPv6 address")]
    BadIpv6(String),
    #[error("expected `:PORT` or nothing after `]`, found `{0}`")]
    AfterBracket(String),
    #[error("host `{0}` contains characters not allowed in a host name")]
    BadHost(String),
}

impl FromStr for RemoteAddr {
    type Err = RemoteAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(RemoteAddrError::Empty);
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| RemoteAddrError::BadIpv6(rest.to_owned()))?;
            inside
                .parse::<Ipv6Addr>()
                .map_err(|_| RemoteAddrError::BadIpv6(inside.to_owned()))?;
            let port = match after {
                "" => DEFAULT_PORT,
                _ => match after.strip_prefix(':') {
                    Some(p) => parse_port(p)?,
                    None => return Err(RemoteAddrError::AfterBracket(after.to_owned())),
                },
            };
            return Ok(Self {
                host: inside.to_owned(),
                port,
            });
        }
        // More than one colon without brackets cannot be split reliably
        // (`::1:4433` is itself a valid IPv6 address), so refuse to guess.
        if s.matches(':').count() > 1 {
            return Err(RemoteAddrError::UnbracketedIpv6(s.to_owned()));
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, parse_port(p)?),
            None => (s, DEFAULT_PORT),
        };
        if host.is_empty() {
            return Err(RemoteAddrError::EmptyHost);
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(RemoteAddrError::BadHost(host.to_owned()));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

fn parse_port(p: &str) -> Result<u16, RemoteAddrError> {
    match p.parse::<u16>() {
        // Port 0 would mean "any port" to bind(2), never a server to reach.
        Ok(0) | Err(_) => Err(RemoteAddrError::BadPort(p.to_owned())),
        Ok(port) => Ok(port),
    }
}

/// One remote directory shown inside the local tree: paths under `local`
/// are served from `remote` on the server.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mount {
    pub local: PathBuf,
    pub remote: PathBuf,
    /// The server as written before REMOTE (`LOCAL=HOST:REMOTE`): a
    /// `[[remotes]]` name, a `[server.NAME]` section or HOST[:PORT],
    /// looked up by [`super::resolve`]. `None`: the default remote.
    pub host: Option<String>,
}

/// Which half of `LOCAL=REMOTE` an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountSide {
    Local,
    Remote,
}

impl fmt::Display for MountSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "LOCAL",
            Self::Remote => "REMOTE",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    #[error("`{0}` is not LOCAL=REMOTE (e.g. /remote=/)")]
    MissingEquals(String),
    #[error("{0} path is empty")]
    Empty(MountSide),
    #[error("{side} path `{path}` is not absolute")]
    NotAbsolute { side: MountSide, path: String },
    #[error("{side} path `{path}` contains `.` or `..`; write the normalized path")]
    NotNormalized { side: MountSide, path: String },
    #[error("{0} path contains a NUL byte")]
    Nul(MountSide),
    #[error("LOCAL must not be `/`: it would hide the whole local filesystem")]
    LocalIsRoot,
    #[error("empty HOST before `:` in LOCAL=HOST:REMOTE")]
    EmptyHost,
}

impl Mount {
    /// Validates both paths. Repeated and trailing slashes are harmless
    /// spelling and are folded away; `.` and `..` are refused because
    /// folding them lexically could disagree with symlinks on the server.
    pub fn new(local: &str, remote: &str) -> Result<Self, MountError> {
        let local = normalize(local, MountSide::Local)?;
        if local.as_os_str() == "/" {
            return Err(MountError::LocalIsRoot);
        }
        let remote = normalize(remote, MountSide::Remote)?;
        Ok(Self {
            local,
            remote,
            host: None,
        })
    }

    /// The same mount served by `host` (`None`: the default remote).
    pub fn on_host(self, host: Option<String>) -> Result<Self, MountError> {
        match host {
            Some(h) if h.trim().is_empty() => Err(MountError::EmptyHost),
            host => Ok(Self { host, ..self }),
        }
    }
}

impl FromStr for Mount {
    type Err = MountError;

    /// `LOCAL=REMOTE` or `LOCAL=HOST:REMOTE`, split at the first `=` (so
    /// only REMOTE may contain one). REMOTE is absolute, so a right side
    /// that does not start with `/` is `HOST:REMOTE`, split at its first
    /// `:/` (HOST may be `name`, `name:port` or `[v6]:port`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (local, right) = s
            .split_once('=')
            .ok_or_else(|| MountError::MissingEquals(s.to_owned()))?;
        match split_host(right) {
            Some((host, remote)) => Self::new(local, remote)?.on_host(Some(host.to_owned())),
            None => Self::new(local, right),
        }
    }
}

/// `HOST:/path` into `HOST` and `/path`; `None` when `right` is a plain
/// path (or no path at all, which [`Mount::new`] then refuses).
fn split_host(right: &str) -> Option<(&str, &str)> {
    if right.starts_with('/') {
        return None;
    }
    let colon = right.find(":/")?;
    Some((&right[..colon], &right[colon.saturating_add(1)..]))
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(
                f,
                "{}={host}:{}",
                self.local.display(),
                self.remote.display()
            ),
            None => write!(f, "{}={}", self.local.display(), self.remote.display()),
        }
    }
}

fn normalize(path: &str, side: MountSide) -> Result<PathBuf, MountError> {
    if path.is_empty() {
        return Err(MountError::Empty(side));
    }
    if path.contains('\0') {
        return Err(MountError::Nul(side));
    }
    if !path.starts_with('/') {
        return Err(MountError::NotAbsolute {
            side,
            path: path.to_owned(),
        });
    }
    let mut out = PathBuf::from("/");
    // Path::components already drops repeated slashes and interior `.`, so
    // look at the raw segments to catch `.` as well as `..`.
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(MountError::NotNormalized {
            side,
            path: path.to_owned(),
        });
    }
    for c in Path::new(path).components() {
        if let Component::Normal(part) = c {
            out.push(part);
        }
    }
    Ok(out)
}

/// A short time written with its unit: `5ms`, `200us`, `1s`, or `0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delay(pub std::time::Duration);

/// The longest `nagle` hold accepted: past it a program would look hung.
pub const MAX_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

impl FromStr for Delay {
    type Err = DelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = parse_duration(s)?;
        if d > MAX_DELAY {
            return Err(DelayError::TooLong(MAX_DELAY));
        }
        Ok(Self(d))
    }
}

/// How long prefetched stat answers stay valid (`--stat-ttl`): a
/// duration with its unit, at most [`MAX_STAT_TTL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatTtl(pub std::time::Duration);

/// The longest `--stat-ttl` accepted.
pub const MAX_STAT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

impl FromStr for StatTtl {
    type Err = DelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = parse_duration(s)?;
        if d > MAX_STAT_TTL {
            return Err(DelayError::TooLong(MAX_STAT_TTL));
        }
        Ok(Self(d))
    }
}

/// Without traffic for this long the connection is dead, unless set
/// otherwise (`--idle-timeout`). Both sides send keep-alives, so only a peer
/// that is gone or frozen goes quiet; a minute (ssh's `ServerAliveInterval`
/// and `ServerAliveCountMax` give minutes too) lets a paused server, a busy
/// client or a short link outage pass without ending the session.
pub const DEFAULT_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// The shortest idle timeout accepted: a few keep-alives must fit in it.
pub const MIN_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest idle timeout accepted.
pub const MAX_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// How many bytes a program's sends on a `--net` TCP connection may be
/// ahead of what the server's socket took, unless set otherwise
/// (`--net-send-window`): on top of the program's own send buffer, the
/// most the pump keeps unacknowledged. The window itself adapts
/// (`crate::engine::adaptive_window`, about twice the measured
/// bandwidth-delay product) up to this; an upload cannot go faster than
/// this per round trip: 4 MiB keeps bulk uploads at their speed at a 20 ms
/// round trip, where 256 KiB cut them fivefold (benches/REPORT-notes.md),
/// and is the kernel's own largest autotuned send buffer (`tcp_wmem`).
pub const DEFAULT_NET_SEND_WINDOW: u32 = 4 << 20;
/// The smallest send window accepted: a few pump reads.
pub const MIN_NET_SEND_WINDOW: u32 = 64 * 1024;
/// The largest send window accepted, and what the server buffers of a
/// connection's bytes that its socket has not taken.
pub const MAX_NET_SEND_WINDOW: u32 = 16 << 20;

/// How long rscq tries to connect again after losing its connection,
/// unless set otherwise (`--reconnect-grace`): long enough for a server to
/// be restarted or a link to come back.
pub const DEFAULT_RECONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(300);
/// The longest grace time accepted: a day.
pub const MAX_RECONNECT_GRACE: std::time::Duration = std::time::Duration::from_secs(86400);

/// How long rscq tries to connect again after losing its connection
/// (`--reconnect-grace`): a duration with its unit up to
/// [`MAX_RECONNECT_GRACE`], or `0` (never: the first loss ends remote
/// calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReconnectGrace(pub std::time::Duration);

impl FromStr for ReconnectGrace {
    type Err = DelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = parse_duration(s)?;
        if d > MAX_RECONNECT_GRACE {
            return Err(DelayError::TooLong(MAX_RECONNECT_GRACE));
        }
        Ok(Self(d))
    }
}

/// How long the connection to the server may stay silent before the
/// session ends (`--idle-timeout`): a duration with its unit, from
/// [`MIN_IDLE_TIMEOUT`] to [`MAX_IDLE_TIMEOUT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdleTimeout(pub std::time::Duration);

impl FromStr for IdleTimeout {
    type Err = DelayError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = parse_duration(s)?;
        if d > MAX_IDLE_TIMEOUT {
            return Err(DelayError::TooLong(MAX_IDLE_TIMEOUT));
        }
        if d < MIN_IDLE_TIMEOUT {
            return Err(DelayError::TooShort(MIN_IDLE_TIMEOUT));
        }
        Ok(Self(d))
    }
}

/// `5ms`, `200us`, `1s` or `0`.
fn parse_duration(s: &str) -> Result<std::time::Duration, DelayError> {
    {
        let s = s.trim();
        if s == "0" {
            return Ok(std::time::Duration::ZERO);
        }
        let split = s
            .find(|c: char| !c.is_ascii_digit())
            .ok_or(DelayError::NoUnit)?;
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits.parse().map_err(|_| DelayError::NotANumber)?;
        let d = match unit {
            "us" | "µs" => std::time::Duration::from_micros(n),
            "ms" => std::time::Duration::from_millis(n),
            "s" => std::time::Duration::from_secs(n),
            other => return Err(DelayError::UnknownUnit(other.to_owned())),
        };
        Ok(d)
    }
}

impl fmt::Display for Delay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}us", self.0.as_micros())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelayError {
    #[error("a delay needs a unit: us, ms or s (e.g. 5ms)")]
    NoUnit,
    #[error("a delay starts with a whole number (e.g. 5ms)")]
    NotANumber,
    #[error("unknown unit `{0}` (expected us, ms or s)")]
    UnknownUnit(String),
    #[error("at most {}s", .0.as_secs())]
    TooLong(std::time::Duration),
    #[error("at least {}s", .0.as_secs())]
    TooShort(std::time::Duration),
}

/// How the `nagle` layer coalesces the program's socket writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NagleSettings {
    /// The longest a written byte is held.
    pub delay: std::time::Duration,
    /// Held bytes that are sent at once.
    pub bytes: usize,
}

impl Default for NagleSettings {
    fn default() -> Self {
        Self {
            delay: crate::engine::coalesce::DEFAULT_DELAY,
            bytes: crate::engine::coalesce::DEFAULT_BYTES,
        }
    }
}

/// Latency-hiding techniques of the forwarding engine. All off is the
/// thesis's baseline: every forwarded call is one stop-and-wait round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Optimizations {
    pub nagle: bool,
    pub readahead: bool,
    pub statcache: bool,
    pub compound: bool,
    /// Directory-granular metadata: a lookup miss brings its directory's
    /// listing with every entry's stat, reused (hits and ENOENT) within
    /// the stat TTL.
    pub dirmeta: bool,
    /// Sequential reads of a remote file keep several reads in flight, up
    /// to a window that grows with the bytes read (needs `readahead`).
    pub bulkread: bool,
    /// A read-only open of a small regular file brings its bytes, so the
    /// program's reads to the end need no round trip (needs `readahead`).
    pub smallfile: bool,
    /// A program that opens entries of a listed directory one after
    /// another (a walker such as `find`, `cat dir/*`, imports) finds the
    /// next ones opened ahead, in the background (needs `compound`).
    pub openahead: bool,
    /// Path calls of dynamically linked programs that resolve outside
    /// every mount run in the program's own thread, with no stop
    /// (`crate::fastpath`).
    pub fastpath: bool,
    /// A connection made again after a lost one resumes the TLS session
    /// and sends its `Hello` in 0-RTT: one round trip instead of two.
    pub zerortt: bool,
}

/// Names accepted in an optimize list, in display order.
pub const OPTIMIZATION_NAMES: [&str; 10] = [
    "nagle",
    "readahead",
    "statcache",
    "compound",
    "dirmeta",
    "bulkread",
    "smallfile",
    "openahead",
    "fastpath",
    "zerortt",
];

impl Optimizations {
    pub const ALL: Self = Self {
        nagle: true,
        readahead: true,
        statcache: true,
        compound: true,
        dirmeta: true,
        bulkread: true,
        smallfile: true,
        openahead: true,
        fastpath: true,
        zerortt: true,
    };
    pub const NONE: Self = Self {
        nagle: false,
        readahead: false,
        statcache: false,
        compound: false,
        dirmeta: false,
        bulkread: false,
        smallfile: false,
        openahead: false,
        fastpath: false,
        zerortt: false,
    };

    /// True when nothing hides latency (`--pure`).
    pub fn is_pure(&self) -> bool {
        *self == Self::NONE
    }

    /// Builds the set from separate names (a TOML array or the pieces of a
    /// comma list). `all` and `none` must stand alone: mixed with names
    /// their meaning would be ambiguous.
    pub fn from_names<'a, I>(names: I) -> Result<Self, OptimizeError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let names: Vec<&str> = names.into_iter().map(str::trim).collect();
        match names.as_slice() {
            [] => return Err(OptimizeError::Empty),
            ["all"] => return Ok(Self::ALL),
            ["none"] => return Ok(Self::NONE),
            _ => {}
        }
        let mut out = Self::NONE;
        for name in names {
            match name {
                "nagle" => out.nagle = true,
                "readahead" => out.readahead = true,
                "statcache" => out.statcache = true,
                "compound" => out.compound = true,
                "dirmeta" => out.dirmeta = true,
                "bulkread" => out.bulkread = true,
                "smallfile" => out.smallfile = true,
                "openahead" => out.openahead = true,
                "fastpath" => out.fastpath = true,
                "zerortt" => out.zerortt = true,
                "all" | "none" => return Err(OptimizeError::AllNoneMixed(name.to_owned())),
                "" => return Err(OptimizeError::EmptyItem),
                other => return Err(OptimizeError::Unknown(other.to_owned())),
            }
        }
        Ok(out)
    }

    fn flags(&self) -> [bool; 10] {
        [
            self.nagle,
            self.readahead,
            self.statcache,
            self.compound,
            self.dirmeta,
            self.bulkread,
            self.smallfile,
            self.openahead,
            self.fastpath,
            self.zerortt,
        ]
    }
}

impl Default for Optimizations {
    fn default() -> Self {
        Self::ALL
    }
}

impl FromStr for Optimizations {
    type Err = OptimizeError;

    /// A comma list such as `nagle,readahead`, or `all`, or `none`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(OptimizeError::Empty);
        }
        Self::from_names(s.split(','))
    }
}

impl fmt::Display for Optimizations {
    /// The same spelling `FromStr` accepts, so it round-trips.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::ALL {
            return f.write_str("all");
        }
        if self.is_pure() {
            return f.write_str("none");
        }
        let on: Vec<&str> = OPTIMIZATION_NAMES
            .iter()
            .zip(self.flags())
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        f.write_str(&on.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptimizeError {
    #[error("empty list (use `none` to turn every optimization off)")]
    Empty,
    #[error("empty item in list")]
    EmptyItem,
    #[error(
        "unknown optimization `{0}` (expected nagle, readahead, statcache, compound, dirmeta, bulkread, smallfile, openahead, fastpath, zerortt, all or none)"
    )]
    Unknown(String),
    #[error("`{0}` must be used alone, not mixed with other names")]
    AllNoneMixed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Result<RemoteAddr, RemoteAddrError> {
        s.parse()
    }

    #[test]
    fn remote_host_port_forms() {
        assert_eq!(
            addr("example.org:7000"),
            Ok(RemoteAddr {
                host: "example.org".into(),
                port: 7000
            })
        );
        assert_eq!(
            addr("example.org"),
            Ok(RemoteAddr {
                host: "example.org".into(),
                port: DEFAULT_PORT
            })
        );
        assert_eq!(
            addr("10.0.0.1:1"),
            Ok(RemoteAddr {
                host: "10.0.0.1".into(),
                port: 1
            })
        );
        let v6 = addr("[::1]:5000").expect("bracketed v6");
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.port, 5000);
        assert_eq!(v6.to_string(), "[::1]:5000");
        assert_eq!(addr("[fe80::2]").map(|a| a.port), Ok(DEFAULT_PORT));
        assert_eq!(
            addr("host:65535").map(|a| a.to_string()),
            Ok("host:65535".into())
        );
    }

    #[test]
    fn remote_errors() {
        assert_eq!(addr(""), Err(RemoteAddrError::Empty));
        assert_eq!(addr(":4433"), Err(RemoteAddrError::EmptyHost));
        assert_eq!(addr("h:0"), Err(RemoteAddrError::BadPort("0".into())));
        assert_eq!(
            addr("h:65536"),
            Err(RemoteAddrError::BadPort("65536".into()))
        );
        assert_eq!(addr("h:"), Err(RemoteAddrError::BadPort(String::new())));
        assert_eq!(addr("h:x"), Err(RemoteAddrError::BadPort("x".into())));
        assert!(matches!(
            addr("::1"),
            Err(RemoteAddrError::UnbracketedIpv6(_))
        ));
        assert!(matches!(addr("[nope]:1"), Err(RemoteAddrError::BadIpv6(_))));
        assert!(matches!(addr("[::1"), Err(RemoteAddrError::BadIpv6(_))));
        assert!(matches!(
            addr("[::1]x"),
            Err(RemoteAddrError::AfterBracket(_))
        ));
        assert!(matches!(addr("a b:1"), Err(RemoteAddrError::BadHost(_))));
    }

    #[test]
    fn mount_parse_and_normalize() {
        let m: Mount = "/remote=/".parse().expect("mount");
        assert_eq!(m.local, PathBuf::from("/remote"));
        assert_eq!(m.remote, PathBuf::from("/"));
        let m: Mount = "//r//x/=/etc//".parse().expect("mount");
        assert_eq!(m.to_string(), "/r/x=/etc");
        let m: Mount = "/r=/a=b".parse().expect("mount");
        assert_eq!(m.remote, PathBuf::from("/a=b"));
    }

    #[test]
    fn mount_with_host() {
        let m: Mount = "/build=buildbox:/srv/src".parse().expect("mount");
        assert_eq!(m.host.as_deref(), Some("buildbox"));
        assert_eq!(m.remote, PathBuf::from("/srv/src"));
        assert_eq!(m.to_string(), "/build=buildbox:/srv/src");
        let m: Mount = "/d=nas:4433:/export".parse().expect("host:port");
        assert_eq!(m.host.as_deref(), Some("nas:4433"));
        let m: Mount = "/d=[::1]:9:/".parse().expect("v6");
        assert_eq!(m.host.as_deref(), Some("[::1]:9"));
        assert_eq!(m.remote, PathBuf::from("/"));
        // A plain REMOTE may hold `:/` after its first character.
        let m: Mount = "/d=/a:/b".parse().expect("plain");
        assert_eq!((m.host, m.remote), (None, PathBuf::from("/a:/b")));
        assert_eq!("/d=:/x".parse::<Mount>(), Err(MountError::EmptyHost));
        assert!(matches!(
            "/d=host:x".parse::<Mount>(),
            Err(MountError::NotAbsolute { .. })
        ));
        assert!(matches!(
            "/d=host:/a/../b".parse::<Mount>(),
            Err(MountError::NotNormalized { .. })
        ));
    }

    #[test]
    fn mount_errors() {
        let p = |s: &str| s.parse::<Mount>();
        assert!(matches!(p("/remote"), Err(MountError::MissingEquals(_))));
        assert_eq!(p("=/"), Err(MountError::Empty(MountSide::Local)));
        assert_eq!(p("/r="), Err(MountError::Empty(MountSide::Remote)));
        assert!(matches!(
            p("remote=/"),
            Err(MountError::NotAbsolute {
                side: MountSide::Local,
                ..
            })
        ));
        assert!(matches!(
            p("/r=etc"),
            Err(MountError::NotAbsolute {
                side: MountSide::Remote,
                ..
            })
        ));
        assert!(matches!(
            p("/r/../x=/"),
            Err(MountError::NotNormalized { .. })
        ));
        assert!(matches!(
            p("/r/./x=/"),
            Err(MountError::NotNormalized { .. })
        ));
        assert!(matches!(
            p("/r=/etc/.."),
            Err(MountError::NotNormalized { .. })
        ));
        assert_eq!(p("/=/"), Err(MountError::LocalIsRoot));
        assert_eq!(p("//=/"), Err(MountError::LocalIsRoot));
        assert_eq!(
            Mount::new("/a\0", "/"),
            Err(MountError::Nul(MountSide::Local))
        );
    }

    #[test]
    fn optimize_lists() {
        let o = |s: &str| s.parse::<Optimizations>();
        assert_eq!(o("all"), Ok(Optimizations::ALL));
        assert_eq!(o("none"), Ok(Optimizations::NONE));
        assert!(o("none").map(|x| x.is_pure()).unwrap_or(false));
        let some = o("nagle, statcache").expect("list");
        assert!(some.nagle && some.statcache && !some.readahead && !some.compound);
        assert_eq!(some.to_string(), "nagle,statcache");
        assert_eq!(
            o(
                "readahead,compound,nagle,statcache,dirmeta,bulkread,smallfile,openahead,fastpath,zerortt"
            ),
            Ok(Optimizations::ALL)
        );
        let no_zerortt =
            o("readahead,compound,nagle,statcache,dirmeta,bulkread,smallfile,fastpath");
        assert!(no_zerortt.is_ok_and(|x| !x.zerortt && x != Optimizations::ALL));
        assert_eq!(o("zerortt").map(|x| x.to_string()), Ok("zerortt".into()));
        let no_fastpath = o("readahead,compound,nagle,statcache,dirmeta,bulkread,smallfile");
        assert!(no_fastpath.is_ok_and(|x| !x.fastpath && x != Optimizations::ALL));
        assert_eq!(o("fastpath").map(|x| x.to_string()), Ok("fastpath".into()));
        assert_eq!(o(""), Err(OptimizeError::Empty));
        assert_eq!(o("nagle,,compound"), Err(OptimizeError::EmptyItem));
        assert_eq!(o("turbo"), Err(OptimizeError::Unknown("turbo".into())));
        assert_eq!(
            o("all,nagle"),
            Err(OptimizeError::AllNoneMixed("all".into()))
        );
        assert_eq!(Optimizations::default(), Optimizations::ALL);
        for s in ["all", "none", "compound", "nagle,readahead"] {
            assert_eq!(o(s).map(|x| x.to_string()), Ok(s.to_owned()));
        }
    }

    #[test]
    fn delays_need_a_unit_and_stay_short() {
        let d = |s: &str| s.parse::<Delay>().map(|d| d.0);
        assert_eq!(d("5ms"), Ok(std::time::Duration::from_millis(5)));
        assert_eq!(d("250us"), Ok(std::time::Duration::from_micros(250)));
        assert_eq!(d("1s"), Ok(std::time::Duration::from_secs(1)));
        assert_eq!(d("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(d("5"), Err(DelayError::NoUnit));
        assert_eq!(d("ms"), Err(DelayError::NotANumber));
        assert_eq!(d("5min"), Err(DelayError::UnknownUnit("min".into())));
        assert_eq!(d("2s"), Err(DelayError::TooLong(MAX_DELAY)));
    }
}

/// How log lines are written (`--log-format`): `text` for a person, `json`
/// (one object a line) for a log collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
