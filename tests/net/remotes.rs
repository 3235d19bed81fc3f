//! Several remotes in one run, over three real `rscq-server`s, each in a
//! network namespace of its own with its own hostname, certificate and
//! export:
//!
//! ```text
//!            ┌──veth── ns build    (rscq-server, hostname rscq-build)
//!  ns client ├──veth── ns store    (rscq-server, hostname rscq-store)
//!            └──veth── ns gateway  (rscq-server, hostname rscq-gateway,
//!                                   and a web server on an address only
//!                                   gateway has)
//! ```
//!
//! The program under rscq (in `client`) sees `/build` from one server,
//! `/store` from another, and the network and `uname` of the third; the
//! same steps run directly on each machine give the reference. Also: `mv`
//! across two remotes (EXDEV, then copy and unlink), one server killed
//! while the others keep serving (a file server: its files fail with EIO;
//! the `--net` one: the program's connection through it is reset), and a
//! wrong certificate for one remote (the program runs without it) or for
//! all (the run fails).

use std::ffi::OsString;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Output, RSCQ, Running, SERVER, cmd, p, preconditions, python, run};

const STARTUP: Duration = Duration::from_secs(30);
const RUN: Duration = Duration::from_secs(120);

/// The three servers, by name (also their `[[remotes]]` names) and
/// hostname.
const NAMES: [&str; 3] = ["build", "store", "gateway"];

/// The address only `gateway` has (on its loopback device): nothing in
/// `client` routes there.
const PRIVATE_WEB: Ipv4Addr = Ipv4Addr::new(192, 168, 213, 1);
const WEB_PORT: u16 = 8213;

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[track_caller]
fn ip(args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run(cmd(&argv)).success();
}

/// One server: its namespace, address, export, certificate and process.
struct Machine {
    ns: String,
    ip: Ipv4Addr,
    export: PathBuf,
    cert_dir: PathBuf,
    server: Option<Running>,
    port: u16,
}

/// The namespaces (deleted, with every process in them, when dropped), the
/// credentials and the three servers.
struct Fleet {
    // Field order is drop order: servers before their namespaces.
    machines: Vec<Machine>,
    web: Option<Running>,
    client_ns: String,
    created: Vec<String>,
    dir: PathBuf,
    client_dir: PathBuf,
    known: PathBuf,
    authorized: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Fleet {
    #[track_caller]
    fn new(test: &str) -> Option<Self> {
        if !preconditions(test, &["curl", "nsenter"]) {
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("rscq-remotes-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().canonicalize().expect("canonicalize");
        let client_dir = dir.join("client");
        let out = run(cmd(&[RSCQ, "keygen", "--dir", p(&client_dir)])).success();
        let client_fp = out.out().trim().to_string();
        let authorized = dir.join("authorized_clients");
        fs::write(&authorized, format!("{client_fp}\n")).expect("write");
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let a = u8::try_from(16 + pid % 200).expect("fits");
        let client_ns = format!("rscqrem-{pid}-{n}-c");
        let mut fleet = Self {
            machines: Vec::new(),
            web: None,
            client_ns: client_ns.clone(),
            created: Vec::new(),
            dir: dir.clone(),
            client_dir,
            known: dir.join("known_servers"),
            authorized,
            _tmp: tmp,
        };
        fleet.add_ns(&client_ns);
        for (i, name) in NAMES.iter().enumerate() {
            let ns = format!("rscqrem-{pid}-{n}-{i}");
            fleet.add_ns(&ns);
            // One /24 per link, numbered apart from tests/net's topology.
            let link =
                u8::try_from(241 + i + 3 * usize::try_from(n % 4).expect("fits")).expect("fits");
            let (here, there) = (Ipv4Addr::new(10, a, link, 1), Ipv4Addr::new(10, a, link, 2));
            ip(&[
                "link",
                "add",
                "to-server",
                "netns",
                &client_ns,
                "type",
                "veth",
                "peer",
                "name",
                "to-client",
                "netns",
                &ns,
            ]);
            // Each client end gets its own name once it is in place.
            ip(&[
                "-n",
                &client_ns,
                "link",
                "set",
                "to-server",
                "name",
                &format!("to-{name}"),
            ]);
            ip(&[
                "-n",
                &client_ns,
                "addr",
                "add",
                &format!("{here}/24"),
                "dev",
                &format!("to-{name}"),
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{there}/24"),
                "dev",
                "to-client",
            ]);
            ip(&["-n", &client_ns, "link", "set", &format!("to-{name}"), "up"]);
            ip(&["-n", &ns, "link", "set", "to-client", "up"]);
            let export = dir.join(format!("export-{name}"));
            fs::create_dir(&export).expect("mkdir export");
            fs::write(export.join("in.txt"), format!("input on {name}\n")).expect("write");
            let cert_dir = dir.join(format!("server-{name}"));
            run(cmd(&[SERVER, "--gen-cert", p(&cert_dir)])).success();
            fleet.machines.push(Machine {
                ns,
                ip: there,
                export,
                cert_dir,
                server: None,
                port: 0,
            });
        }
        ip(&[
            "-n",
            &fleet.machines[2].ns,
            "addr",
            "add",
            &format!("{PRIVATE_WEB}/32"),
            "dev",
            "lo",
        ]);
        for i in 0..NAMES.len() {
            fleet.start(i);
        }
        fleet.start_web();
        Some(fleet)
    }

    #[track_caller]
    fn add_ns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.created.push(name.to_owned());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// Starts server `i` in its namespace, with its hostname (a UTS
    /// namespace of its own).
    #[track_caller]
    fn start(&mut self, i: usize) {
        let m = &self.machines[i];
        let argv: Vec<String> = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            m.ns.clone(),
            "unshare".into(),
            "--uts".into(),
            "sh".into(),
            "-c".into(),
            "hostname \"$0\" && exec \"$@\"".into(),
            format!("rscq-{}", NAMES[i]),
            SERVER.into(),
            "--cert".into(),
            p(&m.cert_dir.join("cert.pem")).into(),
            "--key".into(),
            p(&m.cert_dir.join("key.pem")).into(),
            "--listen".into(),
            format!("{}:0", m.ip),
            "--root".into(),
            p(&m.export).into(),
            "--authorized-clients".into(),
            p(&self.authorized).into(),
        ];
        let mut c = cmd(&argv);
        c.env("RUST_LOG", "warn");
        let mut proc = Running::spawn(c);
        proc.wait_for("listening on ", true, STARTUP);
        let deadline = Instant::now() + STARTUP;
        let port = loop {
            let err = proc.stderr_now();
            if let Some(line) = err
                .split_inclusive('\n')
                .find(|l| l.contains("listening on ") && l.ends_with('\n'))
            {
                let addr = line.rsplit("listening on ").next().unwrap_or("").trim();
                let addr: std::net::SocketAddr = addr.parse().expect("listening address");
                break addr.port();
            }
            assert!(
                Instant::now() < deadline,
                "no listening line\n{}",
                proc.snapshot().dump()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let m = &mut self.machines[i];
        m.server = Some(proc);
        m.port = port;
    }

    /// A web server on gateway's private address, serving `page.txt`.
    #[track_caller]
    fn start_web(&mut self) {
        let site = self.dir.join("site");
        fs::create_dir(&site).expect("mkdir site");
        fs::write(site.join("page.txt"), "a page only the gateway reaches\n").expect("write");
        let py = python();
        let port = WEB_PORT.to_string();
        let web_ip = PRIVATE_WEB.to_string();
        let gateway = self.machines[2].ns.clone();
        let c = cmd(&[
            "ip",
            "netns",
            "exec",
            &gateway,
            &py,
            "-u",
            "-m",
            "http.server",
            &port,
            "--bind",
            &web_ip,
            "--directory",
            p(&site),
        ]);
        let mut r = Running::spawn(c);
        r.wait_stdout("Serving HTTP", STARTUP);
        self.web = Some(r);
    }

    fn url() -> String {
        format!("http://{PRIVATE_WEB}:{WEB_PORT}/page.txt")
    }

    /// A TOML file naming the three servers, each pinned to `certs[i]`.
    fn config(&self, name: &str, certs: [&Path; 3]) -> PathBuf {
        let mut text = String::new();
        for (i, m) in self.machines.iter().enumerate() {
            text.push_str(&format!(
                "[[remotes]]\nname = \"{}\"\naddress = \"{}:{}\"\nserver_cert = \"{}\"\n\n",
                NAMES[i],
                m.ip,
                m.port,
                p(certs[i])
            ));
        }
        let path = self.dir.join(name);
        fs::write(&path, text).expect("write config");
        path
    }

    fn cert(&self, i: usize) -> PathBuf {
        self.machines[i].cert_dir.join("cert.pem")
    }

    /// `rscq --config CONFIG --mount /build=build:/ --mount /store=store:/
    /// --net=gateway --uname=gateway MODE -- argv` in `client`.
    fn rscq(&self, config: &Path, mode: &[&str], argv: &[&str]) -> Command {
        let mut full: Vec<OsString> = vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.client_ns.clone().into(),
            RSCQ.into(),
            "--config".into(),
            config.into(),
            "--identity".into(),
            self.client_dir.clone().into(),
            "--known-servers".into(),
            self.known.clone().into(),
            "--idle-timeout".into(),
            "3s".into(),
            "--mount".into(),
            "/build=build:/".into(),
            "--mount".into(),
            "/store=store:/".into(),
            "--net=gateway".into(),
            "--uname=gateway".into(),
        ];
        full.extend(mode.iter().map(OsString::from));
        full.push("--".into());
        full.extend(argv.iter().map(OsString::from));
        let mut c = cmd(&full);
        c.env("HOME", &self.dir);
        c
    }

    fn good_config(&self) -> PathBuf {
        self.config(
            "remotes.toml",
            [&self.cert(0), &self.cert(1), &self.cert(2)],
        )
    }

    /// `nsenter` into server `i`'s network and UTS namespaces: the same
    /// command run on that machine directly.
    fn on_machine(&self, i: usize, argv: &[&str]) -> Output {
        let server = self.machines[i].server.as_ref().expect("server running");
        let pid = server.pid().as_raw().to_string();
        let mut full = vec!["nsenter", "-t", &pid, "-n", "-u"];
        full.extend_from_slice(argv);
        run(cmd(&full)).success()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for m in &mut self.machines {
            if let Some(mut s) = m.server.take() {
                s.kill_group();
            }
        }
        if let Some(mut w) = self.web.take() {
            w.kill_group();
        }
        for name in self.created.drain(..) {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &name]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            let _ = Command::new("ip")
                .args(["netns", "del", &name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

const MODES: [&[&str]; 2] = [&[], &["--pure"]];

#[test]
fn files_of_two_servers_the_network_and_uname_of_a_third() {
    let Some(fleet) = Fleet::new("files_of_two_servers_the_network_and_uname_of_a_third") else {
        return;
    };
    let config = fleet.good_config();
    let url = Fleet::url();
    // Nothing in the client's namespace reaches the page.
    let direct = run(cmd(&[
        "ip",
        "netns",
        "exec",
        &fleet.client_ns,
        "curl",
        "-sS",
        "--max-time",
        "5",
        &url,
    ]));
    assert!(!direct.status.success(), "{}", direct.dump());
    // The same steps on each machine.
    let expected = format!(
        "{}{}{}{}",
        fs::read_to_string(fleet.machines[0].export.join("in.txt")).expect("read"),
        fs::read_to_string(fleet.machines[1].export.join("in.txt")).expect("read"),
        fleet.on_machine(2, &["curl", "-sS", &url]).out(),
        fleet.on_machine(2, &["uname", "-n"]).out(),
    );
    assert!(expected.ends_with("rscq-gateway\n"), "{expected}");
    let script = format!(
        "cat /build/in.txt && cat /store/in.txt && curl -sS {url} && uname -n \
         && echo built > /build/out.txt && echo stored > /store/out.txt"
    );
    for mode in MODES {
        for m in &fleet.machines {
            fs::remove_file(m.export.join("out.txt")).ok();
        }
        let out = run(fleet.rscq(&config, mode, &["sh", "-c", &script]));
        assert!(out.status.success(), "{mode:?}\n{}", out.dump());
        assert_eq!(out.out(), expected, "{mode:?}");
        let written = |i: usize| fs::read_to_string(fleet.machines[i].export.join("out.txt"));
        assert_eq!(written(0).expect("out on build"), "built\n", "{mode:?}");
        assert_eq!(written(1).expect("out on store"), "stored\n", "{mode:?}");
        assert!(written(2).is_err(), "nothing written on the gateway");
    }
}

#[test]
fn mv_across_two_servers_copies_and_unlinks() {
    let Some(fleet) = Fleet::new("mv_across_two_servers_copies_and_unlinks") else {
        return;
    };
    let config = fleet.good_config();
    let (build, store) = (&fleet.machines[0].export, &fleet.machines[1].export);
    for mode in MODES {
        fs::write(build.join("moved.txt"), "moving across\n").expect("write");
        fs::remove_file(store.join("moved.txt")).ok();
        let out = run(fleet.rscq(
            &config,
            mode,
            &[
                "sh",
                "-c",
                "mv /build/moved.txt /store/moved.txt && cat /store/moved.txt \
                 && ! test -e /build/moved.txt && echo gone",
            ],
        ));
        assert!(out.status.success(), "{mode:?}\n{}", out.dump());
        assert_eq!(out.out(), "moving across\ngone\n", "{mode:?}");
        assert!(!build.join("moved.txt").exists(), "{mode:?}: left on build");
        assert_eq!(
            fs::read_to_string(store.join("moved.txt")).expect("on store"),
            "moving across\n",
            "{mode:?}"
        );
        // A rename is not a copy: EXDEV, as across file systems.
        fs::write(build.join("r.txt"), "r\n").expect("write");
        let py = python();
        let out = run(fleet.rscq(
            &config,
            mode,
            &[
                &py,
                "-c",
                "import os\ntry:\n    os.rename('/build/r.txt', '/store/r.txt')\nexcept OSError as e:\n    print(e.errno == __import__('errno').EXDEV)",
            ],
        ));
        assert_eq!(out.out(), "True\n", "{mode:?}\n{}", out.dump());
        assert!(build.join("r.txt").exists());
        assert!(!store.join("r.txt").exists());
    }
}

#[test]
fn a_killed_server_fails_only_its_own_calls() {
    let Some(mut fleet) = Fleet::new("a_killed_server_fails_only_its_own_calls") else {
        return;
    };
    let config = fleet.good_config();
    let go = fleet.dir.join("go");
    for (i, mode) in MODES.iter().enumerate() {
        if i > 0 {
            fleet.start(0);
        }
        let config = if i > 0 {
            fleet.good_config()
        } else {
            config.clone()
        };
        fs::remove_file(&go).ok();
        for m in &fleet.machines[..2] {
            fs::write(m.export.join("later.txt"), "read later\n").expect("write");
        }
        // What rscq fetched ahead before the kill (`later.txt`'s open and
        // bytes come with the open of `in.txt`: openahead) answers for the
        // TTL, as a cached stat does; the reads after the kill wait past
        // it, so that they must reach the dead server.
        let script = format!(
            "cat /build/in.txt /store/in.txt && echo ready \
             && while [ ! -e {go} ]; do sleep 0.05; done; sleep 0.3; \
             cat /build/later.txt; echo \"build=$?\"; \
             cat /store/later.txt; echo \"store=$?\"; uname -n",
            go = p(&go)
        );
        // A short grace: rscq tries the dead server again for 2 s, then
        // its calls fail (the default would wait 300 s for it).
        let flags: Vec<&str> = mode
            .iter()
            .copied()
            .chain(["--reconnect-grace", "2s", "--stat-ttl", "100ms"])
            .collect();
        let mut proc = Running::spawn(fleet.rscq(&config, &flags, &["sh", "-c", &script]));
        proc.wait_stdout("ready\n", RUN);
        if let Some(mut server) = fleet.machines[0].server.take() {
            server.kill_group();
        }
        fs::write(&go, "").expect("go");
        let out = proc.finish(RUN);
        assert_eq!(
            out.out(),
            "input on build\ninput on store\nready\nbuild=1\nread later\nstore=0\nrscq-gateway\n",
            "{mode:?}\n{}",
            out.dump()
        );
        assert!(
            out.err().contains("Input/output error"),
            "{mode:?}: the dead server's file fails with EIO\n{}",
            out.dump()
        );
        assert!(
            out.err().contains("rscq: build:"),
            "{mode:?}: the message names the lost remote\n{}",
            out.dump()
        );
    }
    // The `--net` remote killed in the middle: the program's connection
    // through it is reset (ECONNRESET), the file remotes go on.
    fleet.start(0);
    let hold = fleet.dir.join("hold.py");
    fs::write(&hold, HOLD_A_CONNECTION).expect("write script");
    let (py, web_ip, web_port) = (python(), PRIVATE_WEB.to_string(), WEB_PORT.to_string());
    for mode in MODES {
        if fleet.machines[2].server.is_none() {
            fleet.start(2);
        }
        let config = fleet.good_config();
        fs::remove_file(&go).ok();
        let flags: Vec<&str> = mode
            .iter()
            .copied()
            .chain(["--reconnect-grace", "2s"])
            .collect();
        let argv = [py.as_str(), p(&hold), p(&go), &web_ip, &web_port];
        let mut proc = Running::spawn(fleet.rscq(&config, &flags, &argv));
        proc.wait_stdout("ready\n", RUN);
        if let Some(mut server) = fleet.machines[2].server.take() {
            server.kill_group();
        }
        fs::write(&go, "").expect("go");
        let out = proc.finish(RUN);
        assert_eq!(
            out.out(),
            "input on build\nready\nsock ECONNRESET\nread later\nread later\n",
            "{mode:?}\n{}",
            out.dump()
        );
        assert_eq!(out.code(), 0, "{mode:?}\n{}", out.dump());
        assert!(
            out.err().contains("rscq: gateway:"),
            "{mode:?}: the message names the lost remote\n{}",
            out.dump()
        );
    }
}

/// Connects through the `--net` remote to `argv[2]:argv[3]` (a web server
/// that waits for a request), reads a file of `build`, says `ready`, waits
/// for the file `argv[1]`, then reads the connection (what the killed
/// remote left of it) and a file of each file remote.
const HOLD_A_CONNECTION: &str = r#"
import errno, os, socket, sys, time
go, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
print(open("/build/in.txt").read(), end="")
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
try:
    data = s.recv(100)
    print("sock", data if data else "EOF")
except OSError as e:
    print("sock", errno.errorcode.get(e.errno, str(e)))
for f in ("/build/later.txt", "/store/later.txt"):
    print(open(f).read(), end="")
"#;

/// Tries to connect through the `--net` remote to `argv[1]:argv[2]`, and
/// says how that ended.
const TRY_CONNECT: &str = r#"
import errno, socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
    print("connect ok")
except OSError as e:
    print("connect", errno.errorcode.get(e.errno, str(e)))
"#;

#[test]
fn a_wrong_certificate_refuses_that_remote_naming_it() {
    let Some(fleet) = Fleet::new("a_wrong_certificate_refuses_that_remote_naming_it") else {
        return;
    };
    // The gateway pinned to the build server's certificate: not its own.
    let config = fleet.config(
        "wrong.toml",
        [&fleet.cert(0), &fleet.cert(1), &fleet.cert(0)],
    );
    let gateway = format!("{}:{}", fleet.machines[2].ip, fleet.machines[2].port);
    let try_connect = fleet.dir.join("try_connect.py");
    fs::write(&try_connect, TRY_CONNECT).expect("write script");
    // The program runs without the gateway: the two file servers serve,
    // the gateway's `uname` fails with EIO and a connect through its
    // network with ENETUNREACH.
    let script = format!(
        "cat /build/in.txt /store/in.txt; uname -n; echo \"uname=$?\"; {} {} {PRIVATE_WEB} {WEB_PORT}; echo ran",
        python(),
        p(&try_connect)
    );
    for mode in MODES {
        let out = run(fleet.rscq(&config, mode, &["sh", "-c", &script]));
        assert_eq!(out.code(), 0, "{mode:?}\n{}", out.dump());
        assert_eq!(
            out.out(),
            "input on build\ninput on store\nuname=1\nconnect ENETUNREACH\nran\n",
            "{mode:?}\n{}",
            out.dump()
        );
        let line = out
            .err()
            .lines()
            .find(|l| l.contains(&format!("rscq-server at {gateway} (remote gateway)")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{mode:?}: the gateway is not named\n{}", out.dump()));
        assert!(
            line.contains("certificate mismatch") && line.contains("runs without remote gateway"),
            "{mode:?}: {line}"
        );
        for (i, name) in NAMES[..2].iter().enumerate() {
            let addr = format!("{}:{}", fleet.machines[i].ip, fleet.machines[i].port);
            assert!(
                !out.err().contains(&addr) && !out.err().contains(&format!("remote {name}")),
                "only the gateway is blamed\n{}",
                out.dump()
            );
        }
    }
    // Every remote refused: the run fails before the program starts, as a
    // run of one refused remote does.
    let config = fleet.config(
        "all-wrong.toml",
        [&fleet.cert(1), &fleet.cert(2), &fleet.cert(0)],
    );
    let out = run(fleet.rscq(&config, &[], &["sh", "-c", "echo ran"]));
    assert_eq!(out.code(), 125, "{}", out.dump());
    assert_eq!(out.out(), "", "the program must not run");
    assert!(
        out.err().contains("(remote build)") && out.err().contains("certificate mismatch"),
        "{}",
        out.dump()
    );
    // With its own certificate the same run works.
    let out = run(fleet.rscq(&fleet.good_config(), &[], &["sh", "-c", "echo ran"]));
    assert_eq!(out.out(), "ran\n", "{}", out.dump());
}
