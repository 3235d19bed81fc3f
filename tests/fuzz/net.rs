//! Target 3: the server's network request handlers (`server::net`,
//! `server::udp`, `server::sockopt`), driven as rscq drives them: through
//! the embedded server's real QUIC transport. A session (one QUIC
//! connection, its listeners) serves [`INPUTS_PER_SESSION`] inputs; a
//! failure's reproducer is every step since it opened.
//!
//! An input is a sequence of [`NetStep`] frames: requests, and ops or
//! bytes on the last socket stream a request opened. A server panic
//! (caught by tokio, so seen through a panic hook), a step without an
//! answer within [`STEP_TIME_BOUND`], or the server closing the connection
//! is a failure.
//!
//! Loopback only. Every address a step names is rewritten before it
//! leaves the harness: the IP to 127.0.0.1 or ::1, and the port to one of
//! the harness's own sockets (an echo server, a bound port nobody listens
//! on, a listener the same session bound) or, for a bind, to 0. So no
//! fuzzed packet reaches another address, or another test's socket.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rscq::proto::{
    Call, DatagramKind, IpFields, OptionTarget, PureOp, Reply, Request, SockAddr, UdpEvent, UdpOp,
    frame,
};
use rscq::transport::client::Link;
use rscq::transport::embedded::Embedded;
use rscq::transport::stream::read_frame_within;
use serde::{Deserialize, Serialize};

use crate::driver::Target;
use crate::mutate::{Dictionary, mutate_bytes, mutate_request};
use crate::rng::Rng;

/// One step of an input.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum NetStep {
    /// A request on a stream of its own.
    Call(Call),
    /// An op on the input's last UDP socket.
    Udp(UdpOp),
    /// An op on the last `--pure` TCP connection.
    Pure(PureOp),
    /// Bytes on the last streaming TCP connection.
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Far above any loopback exchange on a busy machine.
const STEP_TIME_BOUND: Duration = Duration::from_secs(10);
/// How long to listen for what a step on a stream brings back.
const ECHO_WAIT: Duration = Duration::from_millis(5);
const MAX_STEPS: usize = 24;

/// Panics on the server's runtime threads (a server task's panic is caught
/// by tokio and would otherwise only reset a stream). Other tests of this
/// binary run on threads of their own, so their panics do not count.
pub static PANICS: AtomicU64 = AtomicU64::new(0);

/// The name of the server runtime's threads (workers and blocking pool).
const SERVER_THREADS: &str = "rscq-fuzz-net";

pub fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(SERVER_THREADS) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

/// The harness's own loopback sockets, one set per address family.
pub struct Fixtures {
    /// TCP: an echo server, then a port bound but not listening (refused).
    pub tcp: [Vec<u16>; 2],
    /// UDP: an echo socket, then one that never reads.
    pub udp: [Vec<u16>; 2],
    /// Kept open for as long as the fixtures are used.
    pub _held: Vec<rustix::fd::OwnedFd>,
}

fn ip_of(v6: bool) -> std::net::IpAddr {
    if v6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    }
}

async fn fixtures() -> Fixtures {
    let mut tcp = [Vec::new(), Vec::new()];
    let mut udp = [Vec::new(), Vec::new()];
    let mut held = Vec::new();
    for v6 in [false, true] {
        let family = usize::from(v6);
        let Ok(echo) = tokio::net::TcpListener::bind((ip_of(v6), 0)).await else {
            continue; // no IPv6 here: v6 addresses then find nothing
        };
        tcp[family].push(echo.local_addr().expect("addr").port());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let af = if v6 {
            rustix::net::AddressFamily::INET6
        } else {
            rustix::net::AddressFamily::INET
        };
        let bound = rustix::net::socket(af, rustix::net::SocketType::STREAM, None).expect("socket");
        rustix::net::bind(&bound, &SocketAddr::new(ip_of(v6), 0)).expect("bind");
        let port = std::net::TcpListener::from(bound.try_clone().expect("dup"))
            .local_addr()
            .expect("addr")
            .port();
        tcp[family].push(port);
        held.push(bound);
        let echo = tokio::net::UdpSocket::bind((ip_of(v6), 0))
            .await
            .expect("udp");
        udp[family].push(echo.local_addr().expect("addr").port());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let quiet = std::net::UdpSocket::bind((ip_of(v6), 0)).expect("udp");
        udp[family].push(quiet.local_addr().expect("addr").port());
        held.push(quiet.into());
    }
    Fixtures {
        tcp,
        udp,
        _held: held,
    }
}

/// How an address is used, which decides the port it gets.
#[derive(Clone, Copy)]
pub enum Role {
    Bind,
    TcpPeer,
    UdpPeer,
}

/// The loopback address that stands for `addr`: the port is chosen
/// from the candidates by the fuzzed port's value, so a replay picks
/// the same one.
pub fn to_loopback(
    fixtures: &Fixtures,
    listeners: &[Vec<u16>; 2],
    addr: SockAddr,
    role: Role,
) -> SockAddr {
    let (v6, port) = match addr {
        SockAddr::V4 { port, .. } => (false, port),
        SockAddr::V6 { port, .. } => (true, port),
    };
    let family = usize::from(v6);
    let candidates: Vec<u16> = match role {
        // Mostly any free port; sometimes a taken one (EADDRINUSE).
        Role::Bind if port % 8 != 1 => vec![0],
        Role::Bind => fixtures.tcp[family].clone(),
        Role::TcpPeer => fixtures.tcp[family]
            .iter()
            .chain(&listeners[family])
            .copied()
            .collect(),
        Role::UdpPeer => fixtures.udp[family].clone(),
    };
    let port = if candidates.is_empty() {
        0
    } else {
        candidates[usize::from(port) % candidates.len()]
    };
    match addr {
        SockAddr::V4 { .. } => SockAddr::V4 {
            ip: [127, 0, 0, 1],
            port,
        },
        SockAddr::V6 { flowinfo, .. } => SockAddr::V6 {
            ip: Ipv6Addr::LOCALHOST.octets(),
            port,
            flowinfo,
            scope_id: 0,
        },
    }
}

struct Session {
    link: Link,
    /// Ports of listeners this session bound, by family: connects may go
    /// there too (the server then accepts on the client's behalf).
    listeners: [Vec<u16>; 2],
    tcp: Option<(quinn::SendStream, quinn::RecvStream, bool)>,
    udp: Option<(quinn::SendStream, quinn::RecvStream)>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Session {
    fn confine(&self, fixtures: &Fixtures, req: &mut Request) {
        match req {
            Request::TcpConnect { addr, .. } => {
                *addr = to_loopback(fixtures, &self.listeners, *addr, Role::TcpPeer)
            }
            Request::TcpBind { addr, .. } | Request::UdpBind { addr, .. } => {
                *addr = to_loopback(fixtures, &self.listeners, *addr, Role::Bind);
            }
            Request::TcpSetOption {
                target: OptionTarget::Connection { local, peer },
                ..
            }
            | Request::TcpGetInfo { local, peer } => {
                *local = to_loopback(fixtures, &self.listeners, *local, Role::TcpPeer);
                *peer = to_loopback(fixtures, &self.listeners, *peer, Role::TcpPeer);
            }
            _ => crate::executor::make_safe(req),
        }
    }

    fn confine_udp(&self, fixtures: &Fixtures, op: &mut UdpOp) {
        match op {
            UdpOp::Send {
                peer: Some(peer), ..
            }
            | UdpOp::Connect { peer } => {
                *peer = to_loopback(fixtures, &self.listeners, *peer, Role::UdpPeer)
            }
            _ => {}
        }
    }
}

async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(STEP_TIME_BOUND, f)
        .await
        .map_err(|_| format!("no answer within {STEP_TIME_BOUND:?} to {what}"))
}

pub struct NetTarget {
    runtime: tokio::runtime::Runtime,
    server: Embedded,
    fixtures: Fixtures,
    _export: tempfile::TempDir,
    seeds: Vec<Request>,
    dict: Dictionary,
    session: Option<Session>,
    inputs_on_session: usize,
    /// Every step run since the session opened, as frames.
    history: Vec<u8>,
}

/// Inputs one session serves before a fresh one.
const INPUTS_PER_SESSION: usize = 32;

impl NetTarget {
    pub fn new() -> Self {
        count_panics();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREADS)
            .enable_all()
            .build()
            .expect("runtime");
        let export = tempfile::tempdir().expect("export");
        let root = export.path().to_path_buf();
        let (server, fixtures) = runtime.block_on(async {
            let server = Embedded::start_with(false, move |peer| {
                let policy = rscq::server::creds::Policy::of_this_process(None);
                let files = rscq::server::Executor::new(&root, false, policy)
                    .map_err(rscq::transport::server::SessionError::from)?;
                Ok(rscq::server::ClientSession::new(files, peer))
            })
            .expect("embedded server");
            (server, fixtures().await)
        });
        Self {
            runtime,
            server,
            fixtures,
            _export: export,
            seeds: crate::seeds::every_request()
                .into_iter()
                .filter(crate::seeds::is_network)
                .collect(),
            dict: Dictionary::new(std::path::Path::new("/nonexistent/canary")),
            session: None,
            inputs_on_session: 0,
            history: Vec::new(),
        }
    }

    async fn close_session(&mut self) {
        if let Some(session) = self.session.take() {
            session.accepting.abort();
            session.link.close().await;
        }
    }

    /// A new session: a QUIC connection to the embedded server (its
    /// handshake costs more than a whole input, so it serves several).
    async fn open_session(&self) -> Result<Session, String> {
        let link = bounded("connect", self.server.connect())
            .await?
            .map_err(|e| format!("cannot connect to the embedded server: {e}"))?;
        let incoming = link.clone();
        // Connections the session's listeners accept come as streams of
        // their own; take them so they do not pile up.
        let accepting = tokio::spawn(async move {
            while let Ok((_, mut send, _recv)) = incoming.accept_incoming().await {
                let _ = send.finish();
            }
        });
        Ok(Session {
            link,
            listeners: [Vec::new(), Vec::new()],
            tcp: None,
            udp: None,
            accepting,
        })
    }

    async fn run_steps(&self, session: &mut Session, steps: Vec<NetStep>) -> Result<u64, String> {
        // Each input starts without a socket stream of its own.
        session.tcp = None;
        session.udp = None;
        let mut outcome = 0u64;
        let verbose = std::env::var_os("RSCQ_FUZZ_VERBOSE").is_some();
        for step in steps {
            let shown = verbose.then(|| format!("{step:?}"));
            let name = self.step(session, step).await?;
            if let Some(shown) = shown {
                let shown: String = shown.chars().take(200).collect();
                crate::driver::report(&format!("net step {shown} -> {name}"));
            }
            outcome ^= crate::driver::hash(name.as_bytes());
        }
        if let Some(reason) = session.link.close_reason() {
            return Err(format!("the server closed the connection: {reason}"));
        }
        Ok(outcome)
    }

    async fn step(&self, session: &mut Session, step: NetStep) -> Result<String, String> {
        let fixtures = &self.fixtures;
        match step {
            NetStep::Call(Call {
                creds, mut request, ..
            }) => {
                session.confine(fixtures, &mut request);
                let kind = crate::seeds::variant_name(&request);
                let shown = crate::executor::shown(&request);
                match request {
                    Request::TcpConnect {
                        addr,
                        pure,
                        options,
                        bound,
                    } => {
                        let opened =
                            bounded(&shown, session.link.open_tcp(addr, pure, options, bound))
                                .await?
                                .map_err(|e| format!("{shown}: {e}"))?;
                        Ok(match opened {
                            Ok(streams) => {
                                session.tcp = Some((streams.send, streams.recv, pure));
                                format!("{kind} connected")
                            }
                            Err(errno) => format!("{kind} {errno:?}"),
                        })
                    }
                    Request::UdpBind { .. } => {
                        let opened = bounded(&shown, session.link.open_udp(&request))
                            .await?
                            .map_err(|e| format!("{shown}: {e}"))?;
                        Ok(match opened {
                            Ok(streams) => {
                                session.udp = Some((streams.send, streams.recv));
                                format!("{kind} bound")
                            }
                            Err(errno) => format!("{kind} {errno:?}"),
                        })
                    }
                    request => {
                        let response =
                            bounded(&shown, session.link.call_as(creds.as_ref(), &request)).await?;
                        let response = match response {
                            Ok(r) => r,
                            // Refused unread (too large), as the server should.
                            Err(e) => return Ok(format!("{kind} transport {e}")),
                        };
                        if let Ok(Reply::TcpBound { local, .. }) = &response {
                            let (family, port) = match local {
                                SockAddr::V4 { port, .. } => (0, *port),
                                SockAddr::V6 { port, .. } => (1, *port),
                            };
                            session.listeners[family].push(port);
                        }
                        Ok(format!("{kind} {}", crate::executor::reply_kind(&response)))
                    }
                }
            }
            NetStep::Udp(mut op) => {
                session.confine_udp(fixtures, &mut op);
                let Some((send, recv)) = session.udp.as_mut() else {
                    return Ok("udp none".to_owned());
                };
                if send.write_all(&frame::encode(&op)).await.is_err() {
                    return Ok("udp closed".to_owned());
                }
                let mut events = String::from("udp");
                while let Ok(event) =
                    tokio::time::timeout(ECHO_WAIT, read_frame_within::<UdpEvent>(recv, 1 << 17))
                        .await
                {
                    match event {
                        Ok(Some(event)) => {
                            events.push(' ');
                            events.push_str(match event {
                                UdpEvent::Datagram { .. } => "Datagram",
                                UdpEvent::RecvFailed(_) => "RecvFailed",
                                UdpEvent::Sent(_) => "Sent",
                                UdpEvent::Connected(_) => "Connected",
                                UdpEvent::Unreachable { .. } => "Unreachable",
                            });
                        }
                        _ => break,
                    }
                }
                Ok(events)
            }
            NetStep::Pure(op) => {
                let Some((send, recv, pure)) = session.tcp.as_mut() else {
                    return Ok("tcp none".to_owned());
                };
                let bytes = if *pure {
                    frame::encode(&op)
                } else {
                    format!("{op:?}").into_bytes()
                };
                Ok(exchange(send, recv, &bytes).await)
            }
            NetStep::Bytes(data) => {
                let Some((send, recv, _)) = session.tcp.as_mut() else {
                    return Ok("tcp none".to_owned());
                };
                Ok(exchange(send, recv, &data).await)
            }
        }
    }
}

/// Writes `bytes` on a connection's stream and takes what comes back
/// within [`ECHO_WAIT`].
async fn exchange(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    bytes: &[u8],
) -> String {
    if send.write_all(bytes).await.is_err() {
        return "tcp closed".to_owned();
    }
    let mut buf = vec![0u8; 65536];
    match tokio::time::timeout(ECHO_WAIT, recv.read(&mut buf)).await {
        Ok(Ok(Some(n))) => format!("tcp got {}", n.min(1)),
        Ok(Ok(None)) => "tcp end".to_owned(),
        Ok(Err(_)) => "tcp reset".to_owned(),
        Err(_) => "tcp quiet".to_owned(),
    }
}

pub fn decode_steps(input: &[u8]) -> Vec<NetStep> {
    let mut steps = Vec::new();
    let mut rest = input;
    while let Ok(Some(range)) = frame::check(rest) {
        match frame::decode::<NetStep>(&rest[range.clone()]) {
            Ok(step) => steps.push(step),
            _ => break,
        }
        rest = &rest[range.end..];
    }
    steps
}

pub fn encode_steps(steps: &[NetStep]) -> Vec<u8> {
    steps.iter().flat_map(frame::encode).collect()
}

impl Target for NetTarget {
    fn name(&self) -> &'static str {
        "net"
    }

    fn mutate(&mut self, rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut steps = decode_steps(input);
        if steps.is_empty() || rng.one_in(4) {
            return mutate_bytes(rng, input, corpus);
        }
        let i = rng.below(steps.len());
        match rng.below(6) {
            0 if steps.len() > 1 => {
                steps.remove(i);
            }
            1 if steps.len() < MAX_STEPS => {
                let again = steps[i].clone();
                steps.insert(rng.below(steps.len() + 1), again);
            }
            2 if steps.len() < MAX_STEPS => steps.insert(
                rng.below(steps.len() + 1),
                NetStep::Call(Call {
                    creds: None,
                    request: rng.pick(&self.seeds).clone(),
                    once: None,
                }),
            ),
            _ => match &mut steps[i] {
                NetStep::Call(call) => mutate_request(rng, &mut call.request, &self.dict),
                NetStep::Bytes(data) => *data = mutate_bytes(rng, data, &[]),
                other => {
                    let mut bytes = frame::encode(&*other);
                    bytes = mutate_bytes(rng, &bytes, &[]);
                    if let Ok(step) = frame::decode_frame::<NetStep>(&bytes) {
                        *other = step;
                    }
                }
            },
        }
        encode_steps(&steps)
    }

    fn run(&mut self, input: &[u8]) -> Result<u64, String> {
        let steps = decode_steps(input);
        let panics = PANICS.load(Ordering::SeqCst);
        let runtime = self.runtime.handle().clone();
        let outcome = runtime.block_on(async {
            if self.session.is_none() || self.inputs_on_session >= INPUTS_PER_SESSION {
                self.close_session().await;
                self.session = Some(self.open_session().await?);
                self.inputs_on_session = 0;
                self.history.clear();
            }
            self.inputs_on_session += 1;
            self.history.extend(encode_steps(&steps));
            let mut session = self.session.take().expect("session");
            let outcome = self.run_steps(&mut session, steps).await;
            self.session = Some(session);
            outcome
        })?;
        if PANICS.load(Ordering::SeqCst) != panics {
            return Err("a panic while the server ran this input (see stderr)".to_owned());
        }
        Ok(outcome)
    }

    fn reproducer(&self, _input: &[u8]) -> Vec<u8> {
        self.history.clone()
    }
}

/// The seeds of the net target: every network request, and a session of
/// each kind of socket.
pub fn net_seeds() -> Vec<(String, Vec<u8>)> {
    let v4 = |port| SockAddr::V4 {
        ip: [127, 0, 0, 1],
        port,
    };
    let v6 = |port| SockAddr::V6 {
        ip: Ipv6Addr::LOCALHOST.octets(),
        port,
        flowinfo: 0,
        scope_id: 0,
    };
    let call = |request| {
        NetStep::Call(Call {
            creds: None,
            request,
            once: None,
        })
    };
    let mut seeds: Vec<(String, Vec<NetStep>)> = crate::seeds::every_request()
        .into_iter()
        .filter(crate::seeds::is_network)
        .map(|r| (crate::seeds::variant_name(&r).to_owned(), vec![call(r)]))
        .collect();
    let bind = |addr| Request::TcpBind {
        addr,
        reuse_addr: true,
        reuse_port: false,
        v6_only: None,
        options: vec![rscq::proto::SockOption::KeepAlive(true)],
    };
    seeds.push((
        "listen_and_connect_to_it".to_owned(),
        vec![
            call(bind(v4(0))),
            call(Request::TcpListen {
                listener: 1,
                backlog: 16,
                pure: false,
            }),
            // Port 2 stands for the session's first listener (after the
            // echo server and the refused port).
            call(Request::TcpConnect {
                addr: v4(2),
                pure: false,
                options: Vec::new(),
                bound: None,
            }),
            call(Request::TcpSetOption {
                target: OptionTarget::Listener(1),
                option: rscq::proto::SockOption::Linger(Some(0)),
            }),
            call(Request::TcpUnbind { listener: 1 }),
        ],
    ));
    seeds.push((
        "bind_then_connect".to_owned(),
        vec![
            call(bind(v4(0))),
            call(Request::TcpConnect {
                addr: v4(0),
                pure: false,
                options: Vec::new(),
                bound: Some(1),
            }),
        ],
    ));
    seeds.push((
        "v6_listener_relisten".to_owned(),
        vec![
            call(bind(v6(0))),
            call(Request::TcpListen {
                listener: 1,
                backlog: 1,
                pure: true,
            }),
            call(Request::TcpListen {
                listener: 1,
                backlog: 4096,
                pure: true,
            }),
            call(Request::TcpConnect {
                addr: v6(2),
                pure: true,
                options: Vec::new(),
                bound: None,
            }),
        ],
    ));
    seeds.push((
        "stream_to_echo".to_owned(),
        vec![
            call(Request::TcpConnect {
                addr: v4(0),
                pure: false,
                options: vec![rscq::proto::SockOption::NoDelay(true)],
                bound: None,
            }),
            NetStep::Bytes(b"hello".to_vec()),
            call(Request::TcpSetOption {
                target: OptionTarget::Connection {
                    local: v4(0),
                    peer: v4(0),
                },
                option: rscq::proto::SockOption::KeepIdle(10),
            }),
            NetStep::Bytes(vec![0; 4096]),
        ],
    ));
    seeds.push((
        "pure_to_echo".to_owned(),
        vec![
            call(Request::TcpConnect {
                addr: v4(0),
                pure: true,
                options: Vec::new(),
                bound: None,
            }),
            NetStep::Pure(PureOp::Send(b"ping".to_vec())),
            NetStep::Pure(PureOp::Recv {
                max: 100,
                nonblocking: false,
            }),
            NetStep::Pure(PureOp::CancelSend(1)),
            NetStep::Pure(PureOp::WaitRoom),
            NetStep::Pure(PureOp::ShutdownWrite),
            NetStep::Pure(PureOp::Reset),
        ],
    ));
    seeds.push((
        "connect_refused".to_owned(),
        vec![call(Request::TcpConnect {
            addr: v6(1),
            pure: false,
            options: vec![rscq::proto::SockOption::Linger(None)],
            bound: None,
        })],
    ));
    for pure in [false, true] {
        seeds.push((
            format!("udp_echo_pure_{pure}"),
            vec![
                call(Request::UdpBind {
                    addr: v4(0),
                    reuse_addr: false,
                    reuse_port: false,
                    v6_only: None,
                    pure,
                    kind: DatagramKind::Udp,
                }),
                NetStep::Udp(UdpOp::Send {
                    peer: Some(v4(0)),
                    data: b"ping".to_vec(),
                    ip: IpFields::default(),
                }),
                NetStep::Udp(UdpOp::Recv { nonblocking: true }),
                NetStep::Udp(UdpOp::Connect { peer: v4(1) }),
                NetStep::Udp(UdpOp::Send {
                    peer: None,
                    data: b"to the quiet one".to_vec(),
                    ip: IpFields {
                        ttl: Some(9),
                        tos: Some(0x10),
                    },
                }),
                NetStep::Udp(UdpOp::Disconnect),
            ],
        ));
    }
    seeds
        .into_iter()
        .map(|(name, steps)| (name, encode_steps(&steps)))
        .collect()
}
