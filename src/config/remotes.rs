//! Which server serves what: the run's list of remotes and, for each
//! mount, `--net` and `--uname`, the index of the remote that serves it.
//!
//! A HOST (`--mount LOCAL=HOST:REMOTE`, `--net=HOST`, `--uname=HOST`, a
//! TOML mount's `host`, `net = "HOST"`, `uname = "HOST"`) is looked up in
//! this order: a `[[remotes]]` name, a `[server.NAME]` section (its
//! `remote` and `server_cert`), else HOST[:PORT] itself. Index 0 is the
//! default remote (`--remote`, or the embedded executor); a HOST whose
//! address is one already listed reuses that entry, so each server is
//! one connection.
//!
//! Pure: must not read files or the environment beyond [`Env`]; must not
//! connect.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{ConfigError, Located, Origin};
use super::types::{Mount, RemoteAddr};
use super::{Env, FileSettings, pick_path};

/// A `[[remotes]]` table of a TOML file: a name for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteDef {
    pub name: String,
    pub address: RemoteAddr,
    /// As written; relative to the file's directory.
    pub server_cert: Option<Located<PathBuf>>,
    /// Where the table starts.
    pub origin: Origin,
}

/// One server of a run, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSpec {
    /// How messages name it: the `[[remotes]]` or section name, HOST[:PORT]
    /// as written, or for the default remote its address (`embedded`
    /// without one).
    pub name: String,
    /// `None`: the embedded executor (only ever the default remote).
    pub address: Option<RemoteAddr>,
    /// The pinned certificate; `None`: trust on first use by host.
    pub server_cert: Option<PathBuf>,
}

impl RemoteSpec {
    /// The default remote: `--remote` (or the embedded executor) with
    /// `--server-cert`.
    pub fn default_remote(address: Option<RemoteAddr>, server_cert: Option<PathBuf>) -> Self {
        Self {
            name: address
                .as_ref()
                .map_or_else(|| "embedded".to_owned(), ToString::to_string),
            address,
            server_cert,
        }
    }
}

/// Index into [`Placement::remotes`].
pub type RemoteIndex = usize;

/// The remotes of a run and who is served by which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// `[0]` is the default remote.
    pub remotes: Vec<RemoteSpec>,
    /// For each mount, in the order of the settings' mounts.
    pub mounts: Vec<RemoteIndex>,
    pub net: RemoteIndex,
    pub uname: RemoteIndex,
}

impl Placement {
    /// Everything on the default remote.
    pub fn single(default: RemoteSpec, mounts: usize) -> Self {
        Self {
            remotes: vec![default],
            mounts: vec![0; mounts],
            net: 0,
            uname: 0,
        }
    }
}

/// Where the HOSTs of a run are looked up.
pub(super) struct Names<'a> {
    /// The file's `[[remotes]]`.
    pub defs: &'a [RemoteDef],
    /// The file's `[server.NAME]` sections.
    pub sections: &'a BTreeMap<String, FileSettings>,
    /// The file relative certificate paths are taken from.
    pub file: &'a FileSettings,
    pub env: &'a Env,
}

/// Resolves every HOST named by `mounts`, `net` and `uname`.
pub(super) fn place(
    default: RemoteSpec,
    mounts: &[Located<Mount>],
    net: Option<&Located<String>>,
    uname: Option<&Located<String>>,
    names: &Names<'_>,
) -> Result<Placement, ConfigError> {
    let mut placement = Placement::single(default, 0);
    for m in mounts {
        let index = match &m.value.host {
            Some(host) => placement.index_of(host, &m.origin, names)?,
            None => 0,
        };
        placement.mounts.push(index);
    }
    if let Some(host) = net {
        placement.net = placement.index_of(&host.value, &host.origin, names)?;
    }
    if let Some(host) = uname {
        placement.uname = placement.index_of(&host.value, &host.origin, names)?;
    }
    Ok(placement)
}

impl Placement {
    /// Drops the remotes that serve nothing (the default remote when every
    /// mount, `net` and `uname` name another), so that the first one used
    /// is index 0. `net`/`uname` say whether those are on at all. With
    /// nothing used at all the default remote stays.
    pub(super) fn without_unused(self, net: bool, uname: bool) -> Self {
        let mut used = vec![false; self.remotes.len()];
        let wanted = self
            .mounts
            .iter()
            .chain(net.then_some(&self.net))
            .chain(uname.then_some(&self.uname));
        for &i in wanted {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
        }
        if !used.contains(&true) {
            return self;
        }
        let mut new_index = Vec::with_capacity(used.len());
        let mut remotes = Vec::new();
        for (spec, used) in self.remotes.into_iter().zip(&used) {
            new_index.push(remotes.len());
            if *used {
                remotes.push(spec);
            }
        }
        let moved = |i: RemoteIndex| new_index.get(i).copied().unwrap_or(0);
        Self {
            remotes,
            mounts: self.mounts.iter().map(|&i| moved(i)).collect(),
            net: if net { moved(self.net) } else { 0 },
            uname: if uname { moved(self.uname) } else { 0 },
        }
    }

    /// The index of `host`, adding a remote when its address is new.
    fn index_of(
        &mut self,
        host: &str,
        origin: &Origin,
        names: &Names<'_>,
    ) -> Result<RemoteIndex, ConfigError> {
        let spec = lookup(host, origin, names)?;
        if let Some(i) = self
            .remotes
            .iter()
            .position(|r| r.address.is_some() && r.address == spec.address)
        {
            return Ok(i);
        }
        self.remotes.push(spec);
        Ok(self.remotes.len().saturating_sub(1))
    }
}

/// One HOST as a remote, by the order in the module documentation.
fn lookup(host: &str, origin: &Origin, names: &Names<'_>) -> Result<RemoteSpec, ConfigError> {
    let cert = |c: Option<&Located<PathBuf>>| pick_path(None, "", c, names.file, names.env);
    if let Some(def) = names.defs.iter().find(|d| d.name == host) {
        return Ok(RemoteSpec {
            name: def.name.clone(),
            address: Some(def.address.clone()),
            server_cert: cert(def.server_cert.as_ref())?,
        });
    }
    if let Some(section) = names.sections.get(host) {
        let Some(address) = section.remote.clone() else {
            return Err(ConfigError::SectionWithoutRemote {
                origin: origin.clone(),
                name: host.to_owned(),
            });
        };
        return Ok(RemoteSpec {
            name: host.to_owned(),
            address: Some(address),
            server_cert: cert(section.server_cert.as_ref())?,
        });
    }
    match host.parse::<RemoteAddr>() {
        Ok(address) => Ok(RemoteSpec {
            name: host.to_owned(),
            address: Some(address),
            server_cert: None,
        }),
        Err(source) => Err(ConfigError::UnknownRemote {
            origin: origin.clone(),
            name: host.to_owned(),
            source,
        }),
    }
}

/// Several `--config` files as one, in order. Each file that sets
/// `remote` becomes a `[[remotes]]` entry named by its address (with its
/// `server_cert`), and its mounts, `net` and `uname` that name no server
/// name that one, so they stay on the file's own server (as umrsc's one
/// submodule per configuration). Mounts, `[[remotes]]`, sections and
/// rsc.config `REMOTE` lists add up; any other key of a later file wins.
/// Relative paths are made absolute against their own file's directory
/// first.
pub(super) fn merge_files(files: Vec<FileSettings>) -> Result<FileSettings, ConfigError> {
    let mut merged: Option<FileSettings> = None;
    for file in files {
        let file = bound_to_own_remote(with_absolute_paths(file))?;
        merged = Some(match merged {
            None => file,
            Some(earlier) => add_up(earlier, file)?,
        });
    }
    Ok(merged.unwrap_or_else(|| FileSettings::empty(std::path::Path::new(""))))
}

/// `later` over `earlier`, adding up what several files each contribute.
fn add_up(earlier: FileSettings, later: FileSettings) -> Result<FileSettings, ConfigError> {
    let mut out = earlier.overlay(&later);
    out.path = later.path.clone();
    out.mounts = earlier
        .mounts
        .iter()
        .chain(&later.mounts)
        .cloned()
        .collect();
    out.remotes = earlier.remotes.clone();
    for def in later.remotes {
        match out.remotes.iter().find(|d| d.name == def.name) {
            Some(same) if same.address == def.address && same.server_cert == def.server_cert => {}
            Some(_) => {
                return Err(ConfigError::DuplicateRemoteName {
                    origin: def.origin,
                    name: def.name,
                });
            }
            None => out.remotes.push(def),
        }
    }
    out.servers = earlier.servers;
    out.servers.extend(later.servers);
    out.forwarded_syscalls = match (earlier.forwarded_syscalls, later.forwarded_syscalls) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        (a, b) => b.or(a),
    };
    Ok(out)
}

/// The file's mounts, `net` and `uname` that name no server name the
/// file's `remote`, recorded as a `[[remotes]]` entry.
fn bound_to_own_remote(mut file: FileSettings) -> Result<FileSettings, ConfigError> {
    let Some(address) = file.remote.clone() else {
        return Ok(file);
    };
    let origin = Origin::File {
        path: file.path.clone(),
        line: 1,
    };
    let name = address.to_string();
    if file.remotes.iter().any(|d| d.name == name) {
        return Err(ConfigError::DuplicateRemoteName { origin, name });
    }
    file.remotes.push(RemoteDef {
        name: name.clone(),
        address,
        server_cert: file.server_cert.clone(),
        origin: origin.clone(),
    });
    for m in &mut file.mounts {
        if m.value.host.is_none() {
            m.value.host = Some(name.clone());
        }
    }
    let named = Located {
        value: name,
        origin,
    };
    if file.net == Some(true) && file.net_on.is_none() {
        file.net_on = Some(named.clone());
    }
    if file.uname == Some(true) && file.uname_on.is_none() {
        file.uname_on = Some(named);
    }
    Ok(file)
}

/// The file's relative paths joined to its directory (`~` is left for
/// `resolve`), so they keep meaning the same file once merged.
fn with_absolute_paths(mut file: FileSettings) -> FileSettings {
    let dir = file.path.parent().map(std::path::Path::to_path_buf);
    let fix = |p: &mut Option<Located<PathBuf>>| {
        if let (Some(p), Some(dir)) = (p.as_mut(), &dir) {
            let tilde =
                p.value.components().next() == Some(std::path::Component::Normal("~".as_ref()));
            if p.value.is_relative() && !tilde {
                p.value = dir.join(&p.value);
            }
        }
    };
    fix(&mut file.server_cert);
    fix(&mut file.identity);
    fix(&mut file.known_servers);
    fix(&mut file.trace_file);
    for def in &mut file.remotes {
        fix(&mut def.server_cert);
    }
    file
}

#[cfg(test)]
mod tests {
    use super::super::{ClientArgs, parse_config_file, resolve_with};
    use super::*;
    use clap::Parser;
    use std::path::Path;

    fn env() -> Env {
        Env {
            home: Some("/home/u".into()),
            xdg_config_home: None,
        }
    }

    fn run(a: &[&str], toml: Option<&str>) -> Result<Placement, ConfigError> {
        let args = ClientArgs::try_parse_from(std::iter::once("rscq").chain(a.iter().copied()))
            .map_err(|e| panic!("{a:?}: {e}"))?;
        let file =
            toml.map(|src| parse_config_file(src, Path::new("/etc/rscq/work.toml")).expect("toml"));
        resolve_with(&args, file.as_ref(), &env()).map(|s| s.placement)
    }

    fn names(p: &Placement) -> Vec<&str> {
        p.remotes.iter().map(|r| r.name.as_str()).collect()
    }

    #[test]
    fn one_remote_is_everything_on_index_zero() {
        let p = run(
            &["--remote=srv", "--mount=/a=/", "--net", "--uname", "x"],
            None,
        )
        .expect("resolve");
        assert_eq!(names(&p), ["srv:4433"]);
        assert_eq!((p.mounts.as_slice(), p.net, p.uname), (&[0][..], 0, 0));
        assert_eq!(p.remotes.len(), 1, "one connection");
        let p = run(&["--", "x"], None).expect("embedded");
        assert_eq!(names(&p), ["embedded"]);
        assert_eq!(p.remotes[0].address, None);
    }

    #[test]
    fn hosts_on_the_command_line() {
        let p = run(
            &[
                "--remote=buildbox",
                "--mount=/build=buildbox:/srv/src",
                "--mount=/data=nas:/export",
                "--mount=/more=nas:4433:/x",
                "--net=gateway:7000",
                "--uname=buildbox",
                "--",
                "make",
            ],
            None,
        )
        .expect("resolve");
        // buildbox is the default remote's address, nas and nas:4433 are one.
        assert_eq!(names(&p), ["buildbox:4433", "nas", "gateway:7000"]);
        assert_eq!(p.mounts, [0, 1, 1]);
        assert_eq!((p.net, p.uname), (2, 0));
        let addr = p.remotes[2].address.as_ref().expect("address");
        assert_eq!((addr.host.as_str(), addr.port), ("gateway", 7000));
        // Three connections, one per server.
        assert_eq!(p.remotes.len(), 3);
    }

    #[test]
    fn named_remotes_and_sections_from_the_file() {
        let toml = r#"
remote = "main.example"
net = "gw"
uname = "build"
mounts = ["/m=/", "/b=build:/srv", { local = "/d", remote = "/export", host = "nas" }]

[[remotes]]
name = "nas"
address = "10.0.0.2"
server_cert = "certs/nas.der"

[server.build]
remote = "10.0.0.1:9"
server_cert = "~/build.der"

[server.gw]
remote = "gw.example"
"#;
        let p = run(&["--", "x"], Some(toml)).expect("resolve");
        assert_eq!(names(&p), ["main.example:4433", "build", "nas", "gw"]);
        assert_eq!(p.mounts, [0, 1, 2]);
        assert_eq!((p.net, p.uname), (3, 1));
        assert_eq!(
            p.remotes[2].server_cert,
            Some("/etc/rscq/certs/nas.der".into())
        );
        assert_eq!(p.remotes[1].server_cert, Some("/home/u/build.der".into()));
        assert_eq!(p.remotes[3].server_cert, None);
        // Flags win: `--net` alone is the default remote's network, and
        // `--mount` replaces the file's mounts.
        let p = run(&["--net", "--mount=/z=/", "--", "x"], Some(toml)).expect("flags");
        assert_eq!(names(&p), ["main.example:4433", "build"]);
        assert_eq!((p.mounts.as_slice(), p.net, p.uname), (&[0][..], 0, 1));
    }

    #[test]
    fn a_default_remote_that_serves_nothing_is_dropped() {
        let p = run(&["--mount=/d=nas:/x", "--net=nas", "--", "x"], None).expect("resolve");
        assert_eq!(names(&p), ["nas"]);
        assert_eq!((p.mounts.as_slice(), p.net, p.uname), (&[0][..], 0, 0));
        assert_eq!(p.remotes.len(), 1, "one connection");
        // `uname` is off, so its HOST serves nothing.
        let toml = "uname = false\n";
        let p = run(&["--remote=a", "--mount=/d=b:/x", "--", "x"], Some(toml)).expect("resolve");
        assert_eq!(names(&p), ["b"]);
        // Nothing used: the default remote stays.
        let p = run(&["--remote=a", "--", "x"], None).expect("resolve");
        assert_eq!(names(&p), ["a:4433"]);
        // The default remote used by one mount stays first.
        let p = run(&["--mount=/a=/", "--mount=/d=b:/x", "--", "x"], None).expect("resolve");
        assert_eq!(names(&p), ["embedded", "b"]);
        assert_eq!(p.mounts, [0, 1]);
    }

    #[test]
    fn settings_name_the_one_remote_that_serves() {
        let args = ClientArgs::try_parse_from([
            "rscq",
            "--remote=a",
            "--server-cert=/a.der",
            "--mount=/d=b:9:/x",
            "--",
            "x",
        ])
        .expect("args");
        let s = resolve_with(&args, None, &env()).expect("resolve");
        assert_eq!(s.remote.map(|r| r.to_string()), Some("b:9".into()));
        assert_eq!(s.server_cert, None, "a's certificate is not b's");
    }

    #[test]
    fn an_rsc_config_names_its_server() {
        let args = ClientArgs::try_parse_from(["rscq", "--", "x"]).expect("args");
        let src = "disk_on 1\nlocal_path /d\nremote_path /\nsocket_on 1\nremote_host box:9\n";
        let file = parse_config_file(src, Path::new("rsc.config")).expect("rsc.config");
        let s = resolve_with(&args, Some(&file), &env()).expect("resolve");
        assert_eq!(names(&s.placement), ["box:9"]);
        assert_eq!(s.remote.map(|r| r.to_string()), Some("box:9".into()));
        assert!(s.net);
    }

    #[test]
    fn several_files_keep_their_mounts_on_their_own_servers() {
        let build = parse_config_file(
            "remote = \"build.example\"\nserver_cert = \"build.der\"\nmounts = [\"/b=/srv\"]\nuname = true\n",
            Path::new("/etc/rscq/build.toml"),
        )
        .expect("build");
        let nas = parse_config_file(
            "disk_on 1\nlocal_path /d\nremote_path /export\nremote_host nas:9\n",
            Path::new("/home/u/nas.config"),
        )
        .expect("nas");
        let plain = parse_config_file("mounts = [\"/p=/\"]\nstats = true\n", Path::new("/x.toml"))
            .expect("plain");
        let merged = merge_files(vec![build, nas, plain]).expect("merge");
        let args = ClientArgs::try_parse_from(["rscq", "--remote=main", "--", "x"]).expect("args");
        let s = resolve_with(&args, Some(&merged), &env()).expect("resolve");
        let hosts: Vec<String> = s.mounts.iter().map(ToString::to_string).collect();
        assert_eq!(
            hosts,
            ["/b=build.example:4433:/srv", "/d=nas:9:/export", "/p=/"]
        );
        assert_eq!(
            names(&s.placement),
            ["main:4433", "build.example:4433", "nas:9"]
        );
        assert_eq!(s.placement.mounts, [1, 2, 0]);
        assert_eq!(s.placement.uname, 1);
        assert!(s.uname && s.stats);
        // The certificate stays the one next to build.toml.
        assert_eq!(
            s.placement.remotes[1].server_cert,
            Some("/etc/rscq/build.der".into())
        );
        // Two files pinning one name differently is an error.
        let a = parse_config_file(
            "remote = \"h\"\nserver_cert = \"a.der\"",
            Path::new("/a.toml"),
        )
        .expect("a");
        let b = parse_config_file(
            "remote = \"h\"\nserver_cert = \"b.der\"",
            Path::new("/b.toml"),
        )
        .expect("b");
        let e = merge_files(vec![a.clone(), b]).expect_err("conflict");
        assert!(matches!(e, ConfigError::DuplicateRemoteName { .. }), "{e}");
        assert_eq!(
            merge_files(vec![a.clone(), a])
                .map(|m| m.remotes.len())
                .ok(),
            Some(1)
        );
    }

    #[test]
    fn unknown_hosts_are_errors_naming_their_origin() {
        let e = run(&["--mount=/d=a b:/x", "--", "x"], None).expect_err("bad host");
        assert!(matches!(e, ConfigError::UnknownRemote { .. }), "{e}");
        assert!(
            e.to_string().starts_with("command line --mount: `a b`"),
            "{e}"
        );
        let e = run(&["--net=::1", "--", "x"], None).expect_err("v6");
        assert!(e.to_string().contains("command line --net"), "{e}");
        let toml = "[server.s]\nnet = true\n\n[server.t]\nuname = \"s\"\n";
        let e = run(&["-S", "t", "--", "x"], Some(toml)).expect_err("section without remote");
        assert!(matches!(e, ConfigError::SectionWithoutRemote { .. }), "{e}");
    }
}
