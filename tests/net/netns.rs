//! The three-namespace lab: `local` (the program under rscq), `remote`
//! (rscq-server) and `web` (servers reachable only from `remote`), plus
//! the server's and client's credentials and the servers in `web`.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::harness::{Output, RSCQ, Running, SERVER, cmd, p, preconditions, python, run};

/// How long a server gets to come up.
const STARTUP: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ns {
    Local,
    Remote,
    Web,
}

/// Namespaces and veth links, deleted (with every process still in them)
/// when dropped.
pub struct Topology {
    names: [String; 3],
    created: Vec<String>,
    /// `local`'s end of the local↔remote link.
    pub local_ip: Ipv4Addr,
    /// `remote`'s end of the local↔remote link: the server listens here.
    pub remote_ip: Ipv4Addr,
    /// `remote`'s end of the remote↔web link: the address web sees.
    pub remote_web_ip: Ipv4Addr,
    /// `web`'s address.
    pub web_ip: Ipv4Addr,
    /// The same four ends' IPv6 addresses (ULA, one /64 per link).
    pub local_ip6: Ipv6Addr,
    pub remote_ip6: Ipv6Addr,
    pub remote_web_ip6: Ipv6Addr,
    pub web_ip6: Ipv6Addr,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

#[track_caller]
fn ip(args: &[&str]) {
    let mut argv = vec!["ip"];
    argv.extend_from_slice(args);
    run(cmd(&argv)).success();
}

impl Topology {
    /// Builds the topology; on any failure the part already built is torn
    /// down by Drop.
    #[track_caller]
    pub fn new() -> Self {
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let a = u8::try_from(16 + pid % 200).expect("fits");
        let b = u8::try_from((n * 2) % 240 + 1).expect("fits");
        let c = b + 1;
        let names = ["l", "r", "w"].map(|s| format!("rscqnet-{pid}-{n}-{s}"));
        let mut t = Self {
            names,
            created: Vec::new(),
            local_ip: Ipv4Addr::new(10, a, b, 1),
            remote_ip: Ipv4Addr::new(10, a, b, 2),
            remote_web_ip: Ipv4Addr::new(10, a, c, 1),
            web_ip: Ipv4Addr::new(10, a, c, 2),
            local_ip6: ula(a, b, 1),
            remote_ip6: ula(a, b, 2),
            remote_web_ip6: ula(a, c, 1),
            web_ip6: ula(a, c, 2),
        };
        for i in 0..3 {
            let name = t.names[i].clone();
            ip(&["netns", "add", &name]);
            t.created.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"]);
            // A new namespace may inherit forwarding from the host: off, so
            // remote can never route local's packets to web.
            run(cmd(&[
                "ip",
                "netns",
                "exec",
                &name,
                "sh",
                "-c",
                "echo 0 > /proc/sys/net/ipv4/ip_forward \
                 && echo 0 > /proc/sys/net/ipv6/conf/all/forwarding \
                 && echo 0 > /proc/sys/net/ipv6/conf/all/disable_ipv6 \
                 && echo 0 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
            ]))
            .success();
        }
        let [l, r, w] = t.names.clone();
        // The devices are created directly inside the namespaces, so their
        // names cannot clash with another test's.
        ip(&[
            "link",
            "add",
            "to-remote",
            "netns",
            &l,
            "type",
            "veth",
            "peer",
            "name",
            "to-local",
            "netns",
            &r,
        ]);
        ip(&[
            "link",
            "add",
            "to-web",
            "netns",
            &r,
            "type",
            "veth",
            "peer",
            "name",
            "to-remote",
            "netns",
            &w,
        ]);
        for (ns, dev, addr) in [
            (&l, "to-remote", t.local_ip),
            (&r, "to-local", t.remote_ip),
            (&r, "to-web", t.remote_web_ip),
            (&w, "to-remote", t.web_ip),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
        }
        // nodad: the addresses are usable at once, with no wait for
        // duplicate address detection. Like the IPv4 ones, each is on its
        // link's prefix only, with no default route, so web's address is
        // reachable from remote and from nowhere else.
        for (ns, dev, addr) in [
            (&l, "to-remote", t.local_ip6),
            (&r, "to-local", t.remote_ip6),
            (&r, "to-web", t.remote_web_ip6),
            (&w, "to-remote", t.web_ip6),
        ] {
            ip(&[
                "-n",
                ns,
                "-6",
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ]);
        }
        for (ns, dev) in [
            (&l, "to-remote"),
            (&r, "to-local"),
            (&r, "to-web"),
            (&w, "to-remote"),
        ] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        t
    }

    pub fn name(&self, ns: Ns) -> &str {
        match ns {
            Ns::Local => &self.names[0],
            Ns::Remote => &self.names[1],
            Ns::Web => &self.names[2],
        }
    }

    /// `ip netns exec NS argv...`
    pub fn exec<S: AsRef<OsStr>>(&self, ns: Ns, argv: &[S]) -> Command {
        let mut full: Vec<OsString> = vec!["ip".into(), "netns".into(), "exec".into()];
        full.push(self.name(ns).into());
        full.extend(argv.iter().map(|a| a.as_ref().to_owned()));
        cmd(&full)
    }
}

/// `fd00:0:A:B::HOST`: the ULA of host `host` on the link numbered `a.b`
/// in the IPv4 plan.
fn ula(a: u8, b: u8, host: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, u16::from(a), u16::from(b), 0, 0, 0, host)
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in self.created.drain(..) {
            // Every process in our namespace is one this test started.
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

/// Helper servers run in `web` (and, for reference runs, elsewhere).
const SERVERS_PY: &str = r#"
import socket, sys, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler

def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET

def whoami(host, port):
    class Server(ThreadingHTTPServer):
        address_family = family(host)
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (self.client_address[0] + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    srv = Server((host, port), H)
    print("READY", flush=True)
    srv.serve_forever()

def echo(host, port, name):
    ls = socket.socket(family(host))
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(16)
    print("READY", flush=True)
    def serve(c):
        with c:
            if name == "-":
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
            else:
                for line in c.makefile("rb"):
                    c.sendall(name.encode() + b":" + line)
            c.shutdown(socket.SHUT_WR)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()

kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind == "whoami":
    whoami(host, port)
else:
    echo(host, port, sys.argv[4])
"#;

/// `unshare -m sh -c 'mount --bind F1 T1 && ... && exec "$@"' --`: the
/// argv prefix that runs a command with private copies of files in /etc.
pub fn private_etc(etc: &[(&Path, &str)]) -> Vec<String> {
    let mounts: Vec<String> = etc
        .iter()
        .map(|(file, target)| format!("mount --bind '{}' '{target}'", p(file)))
        .collect();
    vec![
        "unshare".into(),
        "-m".into(),
        "sh".into(),
        "-c".into(),
        format!("{} && exec \"$@\"", mounts.join(" && ")),
        "private-etc".into(),
    ]
}

/// One test's lab: topology, credentials, a running rscq-server in
/// `remote`, and a private directory.
pub struct Lab {
    // Field order is drop order: the server dies before its namespace.
    server: Option<Running>,
    pub server_port: u16,
    pub net: Topology,
    pub dir: PathBuf,
    server_dir: PathBuf,
    client_dir: PathBuf,
    authorized: PathBuf,
    known: PathBuf,
    root: PathBuf,
    home: PathBuf,
    servers_py: PathBuf,
    _tmp: TempDir,
}

impl Lab {
    /// A lab with the server started, or `None` when the test must be
    /// skipped (see [`preconditions`]).
    #[track_caller]
    pub fn new(test: &str, tools: &[&str]) -> Option<Self> {
        let mut lab = Self::prepare(test, tools)?;
        lab.start_server(None);
        Some(lab)
    }

    /// Topology, credentials and directory, without the server (see
    /// [`Lab::start_server`]), or `None` when the test must be skipped.
    #[track_caller]
    pub fn prepare(test: &str, tools: &[&str]) -> Option<Self> {
        if !preconditions(test, tools) {
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("rscq-net-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().canonicalize().expect("canonicalize");
        let cfg = dir.join("cfg");
        let root = dir.join("root");
        let home = dir.join("home");
        for d in [&cfg, &root, &home] {
            fs::create_dir(d).expect("mkdir");
        }
        let server_dir = cfg.join("server");
        let client_dir = cfg.join("client");
        let out = run(cmd(&[SERVER, "--gen-cert", p(&server_dir)])).success();
        assert!(out.out().trim().starts_with("sha256:"), "{}", out.dump());
        let out = run(cmd(&[RSCQ, "keygen", "--dir", p(&client_dir)])).success();
        let client_fp = out.out().trim().to_string();
        assert!(client_fp.starts_with("sha256:"), "{}", out.dump());
        let authorized = cfg.join("authorized_clients");
        fs::write(&authorized, format!("# net test client\n{client_fp}\n")).expect("write");
        let servers_py = dir.join("servers.py");
        fs::write(&servers_py, SERVERS_PY).expect("write servers.py");

        Some(Self {
            server: None,
            server_port: 0,
            net: Topology::new(),
            dir,
            server_dir,
            client_dir,
            authorized,
            known: cfg.join("known_servers"),
            root,
            home,
            servers_py,
            _tmp: tmp,
        })
    }

    /// Starts rscq-server in `remote`, listening on `remote_ip`. With
    /// `hosts`, the server runs in a private mount namespace where the file
    /// `hosts` is bind-mounted on /etc/hosts.
    #[track_caller]
    pub fn start_server(&mut self, hosts: Option<&Path>) {
        match hosts {
            Some(h) => self.start_server_with_etc(&[(h, "/etc/hosts")]),
            None => self.start_server_with_etc(&[]),
        }
    }

    /// Starts rscq-server in `remote`; with `etc` files, in a private mount
    /// namespace where each file is bind-mounted on its target (the
    /// server's own /etc/hosts, /etc/resolv.conf, ...).
    #[track_caller]
    pub fn start_server_with_etc(&mut self, etc: &[(&Path, &str)]) {
        assert!(self.server.is_none(), "server already started");
        let mut argv: Vec<String> = Vec::new();
        if !etc.is_empty() {
            argv.extend(private_etc(etc));
        }
        argv.extend([
            SERVER.to_string(),
            "--cert".into(),
            p(&self.server_dir.join("cert.pem")).into(),
            "--key".into(),
            p(&self.server_dir.join("key.pem")).into(),
            "--listen".into(),
            format!("{}:0", self.net.remote_ip),
            "--root".into(),
            p(&self.root).into(),
            "--authorized-clients".into(),
            p(&self.authorized).into(),
        ]);
        let mut c = self.net.exec(Ns::Remote, &argv);
        c.env("RUST_LOG", "warn");
        let mut proc = Running::spawn(c);
        proc.wait_for("listening on ", true, STARTUP);
        let deadline = Instant::now() + STARTUP;
        let port = loop {
            // The line may still be arriving: parse only a complete one.
            let err = proc.stderr_now();
            if let Some(line) = err
                .split_inclusive('\n')
                .find(|l| l.contains("listening on ") && l.ends_with('\n'))
            {
                let addr = line.rsplit("listening on ").next().unwrap_or("").trim();
                let addr: std::net::SocketAddr = addr
                    .parse()
                    .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
                break addr.port();
            }
            assert!(
                Instant::now() < deadline,
                "no complete listening line\n{}",
                proc.snapshot().dump()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        self.server = Some(proc);
        self.server_port = port;
    }

    /// Sends `sig` to the rscq-server process (SIGSTOP/SIGCONT pause it).
    pub fn signal_server(&self, sig: nix::sys::signal::Signal) {
        if let Some(server) = &self.server {
            server.signal(sig);
        }
    }

    /// The server's output so far, for failure messages.
    pub fn server_log(&self) -> String {
        self.server
            .as_ref()
            .map(|s| s.stderr_now())
            .unwrap_or_default()
    }

    /// Writes a file into the lab's directory.
    #[track_caller]
    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        crate::harness::write_file(&self.dir, name, data)
    }

    /// A fresh directory in the lab's directory.
    #[track_caller]
    pub fn mkdir(&self, name: &str) -> PathBuf {
        let d = self.dir.join(name);
        fs::create_dir_all(&d).expect("mkdir");
        d
    }

    /// `ip netns exec LOCAL rscq <connection flags> --net MODE -- argv...`
    pub fn rscq<S: AsRef<OsStr>>(&self, mode: &[&str], argv: &[S]) -> Command {
        let mut full: Vec<OsString> = vec![
            RSCQ.into(),
            "--remote".into(),
            format!("{}:{}", self.net.remote_ip, self.server_port).into(),
            "--server-cert".into(),
            self.server_dir.join("cert.pem").into(),
            "--identity".into(),
            self.client_dir.clone().into(),
            "--known-servers".into(),
            self.known.clone().into(),
            "--net".into(),
        ];
        full.extend(mode.iter().map(OsString::from));
        full.push("--".into());
        full.extend(argv.iter().map(|a| a.as_ref().to_owned()));
        let mut c = self.net.exec(Ns::Local, &full);
        c.env("XDG_CONFIG_HOME", self.dir.join("cfg"))
            .env("HOME", &self.home);
        c
    }

    /// `ip netns exec NS argv...` with the lab's HOME.
    pub fn exec<S: AsRef<OsStr>>(&self, ns: Ns, argv: &[S]) -> Command {
        let mut c = self.net.exec(ns, argv);
        c.env("HOME", &self.home);
        c
    }

    /// Runs a command to completion, adding the server's log to the
    /// failure message if it fails.
    #[track_caller]
    pub fn run_ok(&self, c: Command) -> Output {
        let out = run(c);
        assert!(
            out.status.success(),
            "command failed unexpectedly\n{}\n--- rscq-server stderr ---\n{}",
            out.dump(),
            self.server_log()
        );
        out
    }

    /// `python3 -m http.server PORT` in `web`, serving `dir`.
    #[track_caller]
    pub fn web_http(&self, dir: &Path, port: u16) -> Running {
        self.web_http_at(self.net.web_ip.into(), dir, port)
    }

    /// `python3 -m http.server PORT` on web's address `web_ip` (IPv4 or
    /// IPv6), serving `dir`.
    #[track_caller]
    pub fn web_http_at(&self, web_ip: IpAddr, dir: &Path, port: u16) -> Running {
        let py = python();
        let port = port.to_string();
        let web_ip = web_ip.to_string();
        let c = self.exec(
            Ns::Web,
            &[
                py.as_str(),
                "-u",
                "-m",
                "http.server",
                &port,
                "--bind",
                &web_ip,
                "--directory",
                p(dir),
            ],
        );
        let mut r = Running::spawn(c);
        r.wait_stdout("Serving HTTP", STARTUP);
        r
    }

    /// An HTTP server in `web` whose every answer is the client's address.
    #[track_caller]
    pub fn web_whoami(&self, port: u16) -> Running {
        self.web_whoami_at(self.net.web_ip.into(), port)
    }

    /// [`Lab::web_whoami`] on web's address `web_ip` (IPv4 or IPv6).
    #[track_caller]
    pub fn web_whoami_at(&self, web_ip: IpAddr, port: u16) -> Running {
        self.web_helper(&["whoami", &web_ip.to_string(), &port.to_string()])
    }

    /// A TCP echo server in `web`: with `name` `-` it echoes bytes as they
    /// come; otherwise it answers each line with `NAME:line`. It half-closes
    /// after the client's EOF.
    #[track_caller]
    pub fn web_echo(&self, port: u16, name: &str) -> Running {
        self.web_echo_at(self.net.web_ip.into(), port, name)
    }

    /// [`Lab::web_echo`] on web's address `web_ip` (IPv4 or IPv6).
    #[track_caller]
    pub fn web_echo_at(&self, web_ip: IpAddr, port: u16, name: &str) -> Running {
        self.web_helper(&["echo", &web_ip.to_string(), &port.to_string(), name])
    }

    #[track_caller]
    fn web_helper(&self, args: &[&str]) -> Running {
        let py = python();
        let mut argv = vec![py.as_str(), p(&self.servers_py)];
        argv.extend_from_slice(args);
        let mut r = Running::spawn(self.exec(Ns::Web, &argv));
        r.wait_stdout("READY", STARTUP);
        r
    }
}
