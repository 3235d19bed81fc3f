//! The `rscq` command line.
//!
//! Values are parsed to their types here so a typo is reported by clap with
//! usage help, before anything starts. Cross-setting rules (duplicate mount
//! points, `--pure` against `--optimize`, merging with `--config`) live in
//! [`super::resolve`], because they also apply to settings from a file.
//!
//! Must not read files or the environment: that happens in [`super::resolve`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::types::{
    Delay, IdleTimeout, LogFormat, Mount, Optimizations, ReconnectGrace, RemoteAddr, StatTtl,
};

/// Run PROGRAM locally while chosen system calls run on a remote rscq-server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "rscq",
    version,
    about,
    // `rscq keygen` takes no run options: mixing them would silently ignore them.
    args_conflicts_with_subcommands = true,
    // PROGRAM is required only when running, not for `keygen`.
    subcommand_negates_reqs = true
)]
pub struct ClientArgs {
    #[command(subcommand)]
    pub command: Option<ClientCommand>,

    /// Use the settings of the settings file's [server.NAME] section (over
    /// its top level), as ssh uses a Host block.
    #[arg(short = 'S', long, value_name = "NAME")]
    pub server: Option<String>,

    /// Server address: HOST, HOST:PORT or [IPv6]:PORT (default port 4433).
    /// Without it rscq starts an embedded executor on loopback.
    // The text is clap's help, so `[IPv6]` stays as users type it.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(long, value_name = "HOST:PORT")]
    pub remote: Option<RemoteAddr>,

    /// Show the server's REMOTE directory at LOCAL (both absolute, LOCAL not
    /// "/"), e.g. /remote=/ or /remote=/etc; LOCAL=HOST:REMOTE names the
    /// server (a [[remotes]] name, a [server.NAME] section or HOST[:PORT]).
    /// Repeatable; replaces the mounts of --config.
    #[arg(long = "mount", value_name = "LOCAL=[HOST:]REMOTE")]
    pub mounts: Vec<Mount>,

    /// uname(2) returns the server's utsname (--uname=HOST: that server's).
    // `require_equals` keeps `rscq --uname prog` meaning the flag, then the program.
    #[arg(long, value_name = "HOST", num_args = 0..=1, require_equals = true)]
    pub uname: Option<Option<String>>,

    /// The program's TCP and UDP sockets and name resolution are the
    /// server's (--net=HOST: that server's).
    #[arg(long, value_name = "HOST", num_args = 0..=1, require_equals = true)]
    pub net: Option<Option<String>>,

    /// Every forwarded call is one stop-and-wait round trip (= --optimize none).
    #[arg(long)]
    pub pure: bool,

    /// Comma list of nagle,readahead,statcache,compound,dirmeta,bulkread,smallfile,openahead,fastpath,zerortt, or all, or none
    /// [default: all].
    #[arg(long, value_name = "LIST")]
    pub optimize: Option<Optimizations>,

    /// nagle: the longest a socket write is held before it is sent
    /// (us, ms or s; at most 1s) [default: 5ms].
    #[arg(long, value_name = "DELAY")]
    pub nagle_delay: Option<Delay>,

    /// nagle: held socket bytes that are sent at once [default: 16384].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    pub nagle_bytes: Option<u32>,

    /// statcache: how long a prefetched stat answer stays valid (us, ms or
    /// s; at most 3600s) [default: 1s].
    #[arg(long, value_name = "DURATION")]
    pub stat_ttl: Option<StatTtl>,

    /// readahead (sockets): the most bytes the server may send ahead of the
    /// program on each remote connection (the QUIC stream window)
    /// [default: 8388608].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(65536..=1073741824))]
    pub readahead_window: Option<u32>,

    /// --net: the most bytes a program's sends on a remote TCP connection
    /// may be ahead of what the server's socket took, besides the
    /// program's own send buffer: the adaptive send window's maximum
    /// [default: 4194304].
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(65536..=16777216))]
    pub net_send_window: Option<u32>,

    /// How long the server may stay silent (paused, unreachable) before the
    /// session ends and forwarded calls fail with EIO (us, ms or s; 1s to
    /// 3600s) [default: 60s]. Keep-alives flow meanwhile, so an idle
    /// program never hits it.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<IdleTimeout>,

    /// How log lines (`-v`, RUST_LOG) are written on stderr: `text`, or
    /// `json` with one object a line [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// How long rscq tries to connect again after losing the connection to
    /// the server (us, ms or s; up to 86400s; 0: never, remote calls fail
    /// with EIO at once) [default: 300s]. File calls meanwhile wait; remote
    /// files are given again to a restarted server, remote sockets reset.
    #[arg(long, value_name = "DURATION")]
    pub reconnect_grace: Option<ReconnectGrace>,

    /// Print one line per forwarded syscall on stderr, as strace does.
    #[arg(long)]
    pub trace: bool,

    /// Write the --trace lines to FILE instead of stderr (implies
    /// --trace), as strace's -o.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,

    /// Start each --trace line with the wall-clock time in microseconds
    /// (HH:MM:SS.uuuuuu, UTC), as strace's -tt.
    #[arg(long)]
    pub trace_time: bool,

    /// Print a summary at exit.
    #[arg(long)]
    pub stats: bool,

    /// More log output on stderr: -v info, -vv debug. RUST_LOG, when set,
    /// decides instead.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Pin this server certificate (otherwise trust on first use).
    #[arg(long, value_name = "FILE")]
    pub server_cert: Option<PathBuf>,

    /// Client identity directory [default: $XDG_CONFIG_HOME/rscq or ~/.config/rscq].
    #[arg(long, value_name = "DIR")]
    pub identity: Option<PathBuf>,

    /// Trust-on-first-use store [default: ~/.config/rscq/known_servers].
    #[arg(long, value_name = "FILE")]
    pub known_servers: Option<PathBuf>,

    /// Settings file: TOML (same keys as the flags) or the umrsc rsc.config
    /// format. Command-line flags win over the file. Repeatable: each
    /// file's mounts are added, and stay on the file's own server
    /// [default: $XDG_CONFIG_HOME/rscq/config.toml or ~/.config/rscq/config.toml, if it exists].
    #[arg(long, value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Print a man page (`man`) or shell completions (`completions SHELL`:
    /// bash, elvish, fish, powershell or zsh) on stdout and exit.
    #[arg(
        long,
        num_args = 1..=2,
        value_names = ["man|completions", "SHELL"],
        exclusive = true
    )]
    pub generate: Option<Vec<String>>,

    /// The program to run and its arguments. Everything from the first word
    /// that is not an option on is the program's (as with strace); `--`
    /// before it is allowed and needed when the program's name starts with `-`.
    // OsString because argv need not be UTF-8 and is passed through untouched.
    #[arg(
        trailing_var_arg = true,
        required = true,
        num_args = 1..,
        value_name = "PROGRAM"
    )]
    pub program: Vec<OsString>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Create the client identity (key pair and certificate).
    Keygen(KeygenArgs),
    /// Print the client identity's fingerprint (= keygen --show).
    Fingerprint(FingerprintArgs),
}

#[derive(Debug, Clone, Args)]
pub struct KeygenArgs {
    /// Where to write the identity [default: $XDG_CONFIG_HOME/rscq or ~/.config/rscq].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,

    /// Print the existing identity's fingerprint instead, as `ssh-keygen
    /// -lf` does: `256 sha256:... FILE (ECDSA)`.
    #[arg(long)]
    pub show: bool,
}

#[derive(Debug, Clone, Args)]
pub struct FingerprintArgs {
    /// The identity directory [default: $XDG_CONFIG_HOME/rscq or ~/.config/rscq].
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<ClientArgs, clap::Error> {
        ClientArgs::try_parse_from(std::iter::once("rscq").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        ClientArgs::command().debug_assert();
    }

    #[test]
    fn every_flag() {
        let a = parse(&[
            "--remote",
            "srv.example:9000",
            "--mount",
            "/remote=/",
            "--mount=/etc-r=/etc",
            "--uname",
            "--net",
            "--optimize",
            "nagle,compound",
            "--trace",
            "--stats",
            "--server-cert",
            "srv.der",
            "--identity",
            "/id",
            "--known-servers",
            "/ks",
            "--config",
            "c.toml",
            "--",
            "ls",
            "-l",
            "--color",
        ])
        .expect("parse");
        assert!(a.command.is_none());
        let r = a.remote.expect("remote");
        assert_eq!((r.host.as_str(), r.port), ("srv.example", 9000));
        assert_eq!(a.mounts.len(), 2);
        assert_eq!(a.mounts[1].remote, PathBuf::from("/etc"));
        assert!(a.uname.is_some() && a.net.is_some() && a.trace && a.stats && !a.pure);
        let o = a.optimize.expect("optimize");
        assert!(o.nagle && o.compound && !o.readahead && !o.statcache);
        assert_eq!(a.server_cert, Some(PathBuf::from("srv.der")));
        assert_eq!(a.identity, Some(PathBuf::from("/id")));
        assert_eq!(a.known_servers, Some(PathBuf::from("/ks")));
        assert_eq!(a.config, vec![PathBuf::from("c.toml")]);
        assert_eq!(a.program, vec!["ls", "-l", "--color"]);
    }

    #[test]
    fn net_and_uname_take_an_optional_host() {
        let a = parse(&["--net", "--uname", "curl", "x"]).expect("bare flags");
        assert_eq!((a.net, a.uname), (Some(None), Some(None)));
        assert_eq!(a.program, vec!["curl", "x"]);
        let a = parse(&["--net", "--", "curl"]).expect("bare flag, --");
        assert_eq!(a.net, Some(None));
        assert_eq!(a.program, vec!["curl"]);
        let a = parse(&["--net=gw", "--uname=buildbox:9", "--", "x"]).expect("hosts");
        assert_eq!(a.net, Some(Some("gw".into())));
        assert_eq!(a.uname, Some(Some("buildbox:9".into())));
        let a = parse(&["--", "x"]).expect("none");
        assert_eq!((a.net, a.uname), (None, None));
        let a = parse(&["--mount", "/b=buildbox:/srv", "--", "x"]).expect("mount host");
        assert_eq!(a.mounts[0].host.as_deref(), Some("buildbox"));
    }

    #[test]
    fn pure_flag() {
        let a = parse(&["--pure", "--", "true"]).expect("parse");
        assert!(a.pure);
        assert!(a.optimize.is_none());
    }

    #[test]
    fn program_required_after_double_dash() {
        let e = parse(&["--trace"]).expect_err("no program");
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(parse(&["--trace", "--"]).is_err());
        // Without `--` the first free word starts the program, and the
        // words after it are its own, options included.
        let a = parse(&["--trace", "ls", "-l", "--trace", "--", "x"]).expect("strace style");
        assert!(a.trace);
        assert_eq!(a.program, vec!["ls", "-l", "--trace", "--", "x"]);
        assert!(parse(&["--nosuchflag", "ls"]).is_err());
    }

    #[test]
    fn keygen_subcommand() {
        let a = parse(&["keygen"]).expect("keygen");
        assert!(matches!(
            a.command,
            Some(ClientCommand::Keygen(KeygenArgs {
                dir: None,
                show: false
            }))
        ));
        assert!(a.program.is_empty());
        let a = parse(&["keygen", "--dir", "/tmp/id"]).expect("keygen dir");
        match a.command {
            Some(ClientCommand::Keygen(k)) => assert_eq!(k.dir, Some(PathBuf::from("/tmp/id"))),
            _ => panic!("expected keygen"),
        }
        // After a run option, "keygen" is the program to run.
        let a = parse(&["--trace", "keygen"]).expect("program named keygen");
        assert!(a.command.is_none() && a.trace);
        assert_eq!(a.program, vec!["keygen"]);
        assert!(parse(&["keygen", "--trace"]).is_err());
        // After `--`, "keygen" is just a program name.
        let a = parse(&["--", "keygen"]).expect("program named keygen");
        assert!(a.command.is_none());
        assert_eq!(a.program, vec!["keygen"]);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--remote", "::1", "--", "x"][..],
            &["--remote", "h:0", "--", "x"],
            &["--mount", "/=/", "--", "x"],
            &["--mount", "rel=/", "--", "x"],
            &["--mount", "/nolocal", "--", "x"],
            &["--optimize", "turbo", "--", "x"],
            &["--optimize", "", "--", "x"],
        ] {
            let e = parse(bad).expect_err("must fail");
            assert_eq!(e.kind(), ErrorKind::ValueValidation, "{bad:?}");
        }
    }

    #[test]
    fn remote_forms_on_command_line() {
        let port = |s: &str| parse(&["--remote", s, "--", "x"]).map(|a| a.remote.map(|r| r.port));
        assert_eq!(port("host").ok().flatten(), Some(4433));
        assert_eq!(port("host:1").ok().flatten(), Some(1));
        assert_eq!(port("[::1]:2").ok().flatten(), Some(2));
    }
}
