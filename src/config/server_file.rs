//! `rscq-server --config FILE`: the server's flags as TOML, so a service
//! unit needs no long command line.
//!
//! ```toml
//! listen = "0.0.0.0:4433"
//! cert = "/etc/rscq/cert.pem"           # relative paths: to this file's directory
//! key = "/etc/rscq/key.pem"
//! root = "/srv/export"
//! authorized_clients = "/etc/rscq/clients.txt"
//! read_only = false
//! squash_root = "65534:65534"           # or true for 65534:65534
//! idle_timeout = "60s"                  # silence from a client that ends its session
//! log_format = "json"                   # log lines as JSON objects (default "text")
//! ```
//!
//! Pure: takes the file's text; the binary applies the precedence (flags
//! win) and checks the values it alone understands (`squash_root`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::error::{ConfigError, Origin};
use super::toml_file::line_col;

/// The settings of an `rscq-server` config file, each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerFileSettings {
    pub listen: Option<SocketAddr>,
    /// Paths already made absolute against the file's directory.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub authorized_clients: Option<PathBuf>,
    pub read_only: Option<bool>,
    /// `UID:GID` as written (`true` is the default squash), and where.
    pub squash_root: Option<(String, Origin)>,
    pub idle_timeout: Option<std::time::Duration>,
    pub log_format: Option<super::types::LogFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Schema {
    listen: Option<Spanned<String>>,
    cert: Option<String>,
    key: Option<String>,
    root: Option<String>,
    authorized_clients: Option<String>,
    read_only: Option<bool>,
    squash_root: Option<Spanned<SquashValue>>,
    idle_timeout: Option<Spanned<String>>,
    log_format: Option<super::types::LogFormat>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum SquashValue {
    On(bool),
    Ids(String),
}

/// Parses an `rscq-server` TOML config file; `path` names it in errors and
/// anchors relative paths.
pub fn parse_server_toml(src: &str, path: &Path) -> Result<ServerFileSettings, ConfigError> {
    let schema: Schema = toml::from_str(src).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        line_col: e.span().map(|s| line_col(src, s.start)),
        message: e.message().trim_end().to_owned(),
    })?;
    let at = |span: std::ops::Range<usize>| Origin::File {
        path: path.to_owned(),
        line: line_col(src, span.start).0,
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let file_path = |p: Option<String>| p.map(|p| dir.join(p));
    let listen = match schema.listen {
        Some(l) => {
            let origin = at(l.span());
            let text = l.into_inner();
            Some(
                text.parse::<SocketAddr>()
                    .map_err(|_| ConfigError::InvalidListen {
                        origin,
                        value: text,
                    })?,
            )
        }
        None => None,
    };
    let squash_root = match schema.squash_root {
        Some(s) => {
            let origin = at(s.span());
            match s.into_inner() {
                SquashValue::On(false) => None,
                SquashValue::On(true) => Some(("65534:65534".to_owned(), origin)),
                SquashValue::Ids(ids) => Some((ids, origin)),
            }
        }
        None => None,
    };
    let idle_timeout = super::toml_file::duration_key(
        schema.idle_timeout,
        &at,
        |t| t.parse::<super::types::IdleTimeout>().map(|d| d.0),
        |origin, value, source| ConfigError::InvalidIdleTimeout {
            origin,
            value,
            source,
        },
    )?;
    Ok(ServerFileSettings {
        listen,
        cert: file_path(schema.cert),
        key: file_path(schema.key),
        root: file_path(schema.root),
        authorized_clients: file_path(schema.authorized_clients),
        read_only: schema.read_only,
        squash_root,
        idle_timeout,
        log_format: schema.log_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_and_relative_paths() {
        let f = parse_server_toml(
            "listen = \"127.0.0.1:5000\"\ncert = \"cert.pem\"\nkey = \"/k.pem\"\nroot = \"/srv\"\n\
             authorized_clients = \"clients.txt\"\nread_only = true\nsquash_root = true\n\
             idle_timeout = \"90s\"\n",
            Path::new("/etc/rscq/server.toml"),
        )
        .expect("parse");
        assert_eq!(f.listen, Some("127.0.0.1:5000".parse().expect("addr")));
        assert_eq!(f.cert, Some(PathBuf::from("/etc/rscq/cert.pem")));
        assert_eq!(f.key, Some(PathBuf::from("/k.pem")));
        assert_eq!(
            f.authorized_clients,
            Some(PathBuf::from("/etc/rscq/clients.txt"))
        );
        assert_eq!(f.read_only, Some(true));
        assert_eq!(f.squash_root.map(|s| s.0), Some("65534:65534".to_owned()));
        assert_eq!(f.idle_timeout, Some(std::time::Duration::from_secs(90)));
    }

    #[test]
    fn errors_name_the_line() {
        let e =
            parse_server_toml("\nlisten = \"nowhere\"\n", Path::new("s.toml")).expect_err("addr");
        assert!(e.to_string().starts_with("s.toml:2: "), "{e}");
        let e = parse_server_toml("root = \"/\"\nrot = 1\n", Path::new("s.toml")).expect_err("key");
        assert!(e.to_string().starts_with("s.toml:2:"), "{e}");
        let e = parse_server_toml("\n\nidle_timeout = \"500ms\"\n", Path::new("s.toml"))
            .expect_err("too short");
        assert!(e.to_string().starts_with("s.toml:3: "), "{e}");
        assert!(e.to_string().contains("at least 1s"), "{e}");
    }
}
