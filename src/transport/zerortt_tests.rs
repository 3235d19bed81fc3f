//! Resumption and 0-RTT over real loopback QUIC: a link connecting again
//! resumes with its `Hello` in 0-RTT; a restarted server, a changed
//! certificate, a removed client and a replayed first flight each get what
//! a full handshake would give them.
//!
//! Tests only.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::identity::{CLIENT_NAME, SERVER_NAME};
use super::setup::{Tickets, client_config};
use super::trust::Expectation;
use super::*;
use crate::errno::Errno;
use crate::proto::{Call, Hello, RemotePath, Reply, Request, Response, Utsname, frame};

fn liveness() -> Liveness {
    Liveness::new(Duration::from_secs(2))
}

/// Answers `Uname` and `Unlink`, and records every request it ran.
#[derive(Clone, Default)]
struct Recorder {
    ran: Arc<Mutex<Vec<Request>>>,
}

impl Recorder {
    fn ran(&self) -> Vec<Request> {
        self.ran.lock().unwrap().clone()
    }
}

impl Session for Recorder {
    fn execute(&self, _caller: Option<&crate::proto::Credentials>, req: Request) -> Response {
        self.ran.lock().unwrap().push(req.clone());
        match req {
            Request::Uname => Ok(Reply::Uname(Utsname::default())),
            Request::Unlink { .. } => Ok(Reply::Done),
            _ => Err(Errno::ENOSYS),
        }
    }
}

/// A server with the given identity on `listen` (port 0: any), accepting
/// the clients of `clients` (shared, so a test can remove one).
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(
        identity: &Identity,
        listen: SocketAddr,
        clients: &LiveClients,
        rec: &Recorder,
    ) -> Self {
        // The socket of a server stopped on this port may take a moment to
        // go.
        let mut tries = 0;
        let endpoint = loop {
            match server::endpoint(listen, identity, clients.clone(), liveness()) {
                Ok(endpoint) => break endpoint,
                Err(TransportError::Bind { .. }) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot start the server: {e}"),
            }
        };
        let addr = endpoint.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let rec = rec.clone();
        let task = tokio::spawn(server::serve(
            endpoint,
            false,
            clients.clone(),
            move |_: &Peer| Ok(rec.clone()),
            async {
                let _ = stopped.await;
            },
        ));
        Self { addr, stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn any_port() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

struct Setup {
    server_identity: Identity,
    client: Identity,
    clients: LiveClients,
    rec: Recorder,
}

fn setup() -> Setup {
    let client = Identity::generate(CLIENT_NAME).unwrap();
    Setup {
        server_identity: Identity::generate(SERVER_NAME).unwrap(),
        clients: LiveClients::new(AuthorizedClients::from_fingerprints([client.fingerprint()])),
        client,
        rec: Recorder::default(),
    }
}

/// Connects with tickets kept, and makes one call so the server's tickets
/// (sent after the handshake) have surely arrived.
async fn resuming_link(s: &Setup, addr: SocketAddr, trust: &ServerTrust) -> Link {
    let link = Link::connect_with(addr, &s.client, trust, liveness(), EarlyData::Resume)
        .await
        .unwrap();
    link.call(&Request::Uname).await.unwrap().unwrap();
    link
}

#[tokio::test]
async fn connecting_again_resumes_with_the_hello_in_0rtt() {
    let s = setup();
    let server = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let trust = ServerTrust::Pinned(s.server_identity.fingerprint());
    let link = resuming_link(&s, server.addr, &trust).await;
    assert!(!link.resumed(), "the first connection is a full handshake");
    let again = link.dial_again().await.unwrap();
    assert!(again.resumed(), "the second resumes with 0-RTT");
    again.call(&Request::Uname).await.unwrap().unwrap();
    link.adopt(&again);
    assert_eq!(link.connections(), (2, 1));
    // Without the layer every connection is a full one.
    let plain = Link::connect(server.addr, &s.client, &trust, liveness())
        .await
        .unwrap();
    plain.call(&Request::Uname).await.unwrap().unwrap();
    let plain_again = plain.dial_again().await.unwrap();
    assert!(!plain_again.resumed());
    for l in [link, again, plain, plain_again] {
        l.close().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_server_refuses_the_ticket_and_the_handshake_is_full() {
    let s = setup();
    let first = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let addr = first.addr;
    let trust = ServerTrust::Pinned(s.server_identity.fingerprint());
    let link = resuming_link(&s, addr, &trust).await;
    link.close().await;
    first.stop().await;
    // Same certificate and port, new process memory: no session to resume.
    let second = Server::start(&s.server_identity, addr, &s.clients, &s.rec).await;
    let again = link.dial_again().await.expect("a full handshake instead");
    assert!(!again.resumed());
    let node = again.call(&Request::Uname).await.unwrap();
    assert_eq!(node, Ok(Reply::Uname(Utsname::default())));
    again.close().await;
    second.stop().await;
}

#[tokio::test]
async fn a_changed_certificate_is_refused_though_a_ticket_is_kept() {
    let s = setup();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known_servers");
    let trust = ServerTrust::KnownServers {
        file: file.clone(),
        host_label: "example.org:4433".to_owned(),
    };
    let first = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let addr = first.addr;
    // First use records the certificate; from the next connection on it is
    // pinned, and the tickets of a pinned connection are kept.
    let link = resuming_link(&s, addr, &trust).await;
    let pinned = link.dial_again().await.unwrap();
    pinned.call(&Request::Uname).await.unwrap().unwrap();
    let resumed = link.dial_again().await.unwrap();
    assert!(
        resumed.resumed(),
        "a ticket is kept for the pinned certificate"
    );
    for l in [&link, &pinned, &resumed] {
        l.close().await;
    }
    first.stop().await;
    let impostor = Identity::generate(SERVER_NAME).unwrap();
    let second = Server::start(&impostor, addr, &s.clients, &s.rec).await;
    let err = link.dial_again().await.unwrap_err();
    match &err {
        TransportError::ServerCertificateChanged {
            expected,
            presented,
            ..
        } => {
            assert_eq!(*expected, s.server_identity.fingerprint());
            assert_eq!(*presented, impostor.fingerprint());
        }
        other => panic!("expected ServerCertificateChanged, got {other:?}: {other}"),
    }
    second.stop().await;
}

#[tokio::test]
async fn a_removed_client_cannot_resume() {
    let s = setup();
    let server = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let trust = ServerTrust::Pinned(s.server_identity.fingerprint());
    let link = resuming_link(&s, server.addr, &trust).await;
    // The live session ends, as before; its tickets must not bring it back.
    s.clients.replace(AuthorizedClients::default());
    let err = link.dial_again().await.unwrap_err();
    match &err {
        TransportError::NotAuthorized { fingerprint, .. } => {
            assert_eq!(*fingerprint, s.client.fingerprint());
        }
        other => panic!("expected NotAuthorized, got {other:?}: {other}"),
    }
    assert!(err.is_final());
    server.stop().await;
}

/// Everything `socket` receives within `for_`, datagram by datagram.
async fn capture(socket: &tokio::net::UdpSocket, for_: Duration) -> Vec<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + for_;
    while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
        seen.push(buf[..n].to_vec());
    }
    seen
}

/// A request stream opened in 0-RTT: the frame of `request`, finished.
/// The streams are returned so that they stay open.
async fn send_call(
    conn: &quinn::Connection,
    request: Request,
) -> (quinn::SendStream, quinn::RecvStream) {
    let (mut send, recv) = conn.open_bi().await.unwrap();
    let call = Call {
        creds: None,
        request,
        once: None,
    };
    send.write_all(&frame::encode(&call)).await.unwrap();
    let _ = send.finish();
    (send, recv)
}

#[tokio::test]
async fn a_replayed_first_flight_runs_only_what_may_run_twice() {
    let s = setup();
    let server = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let trust = ServerTrust::Pinned(s.server_identity.fingerprint());
    // A full connection through this configuration leaves it tickets.
    let tickets = Arc::new(Tickets::default());
    let (first, _) = Link::connect_as(
        server.addr,
        &s.client,
        &trust,
        liveness(),
        crate::proto::PROTOCOL_VERSION,
        Some(tickets.clone()),
        &[],
    )
    .await
    .unwrap();
    first.call(&Request::Uname).await.unwrap().unwrap();
    first.close().await;
    s.rec.ran.lock().unwrap().clear();

    // The client's first flight goes to a socket that only records it:
    // the Hello, an unlink and a uname, all in 0-RTT.
    let sink = tokio::net::UdpSocket::bind(any_port()).await.unwrap();
    let expectation = Expectation::resolve(&trust).unwrap();
    let (config, _) = client_config(Some(&tickets), &expectation, &s.client, liveness()).unwrap();
    let endpoint = socket::endpoint(any_port(), None).unwrap();
    let connecting = endpoint
        .connect_with(config, sink.local_addr().unwrap(), SERVER_NAME)
        .unwrap();
    let Ok((conn, _accepted)) = connecting.into_0rtt() else {
        panic!("the kept ticket allows 0-RTT");
    };
    let (mut hello, _welcome) = conn.open_bi().await.unwrap();
    hello
        .write_all(&frame::encode(&Hello {
            version: crate::proto::PROTOCOL_VERSION,
            keep_secs: 0,
            resume: None,
        }))
        .await
        .unwrap();
    let _ = hello.finish();
    let _unlink = send_call(
        &conn,
        Request::Unlink {
            path: RemotePath(b"/precious".to_vec()),
        },
    )
    .await;
    let _uname = send_call(&conn, Request::Uname).await;
    let flight = capture(&sink, Duration::from_millis(300)).await;
    assert!(!flight.is_empty(), "the client sent its first flight");
    endpoint.close(quinn::VarInt::from_u32(0), b"");

    // An attacker replays it: the server reads the 0-RTT data, but the
    // handshake can never complete.
    let attacker = tokio::net::UdpSocket::bind(any_port()).await.unwrap();
    for datagram in &flight {
        attacker.send_to(datagram, server.addr).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !s.rec.ran().contains(&Request::Uname) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a wrongly eager server the time to run the unlink too.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ran = s.rec.ran();
    assert!(
        ran.contains(&Request::Uname),
        "the 0-RTT data was read (a read ran): {ran:?}"
    );
    assert!(
        !ran.iter().any(|r| matches!(r, Request::Unlink { .. })),
        "a change ran on replayable data: {ran:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn requests_sent_with_the_hello_are_answered_in_full_and_in_0rtt_handshakes() {
    let s = setup();
    let server = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let trust = ServerTrust::Pinned(s.server_identity.fingerprint());
    let tickets = Arc::new(Tickets::default());
    let first = [
        Request::Uname,
        Request::Unlink {
            path: RemotePath(b"/a".to_vec()),
        },
    ];
    let expected = vec![
        Some(Ok(Reply::Uname(Utsname::default()))),
        Some(Ok(Reply::Done)),
    ];
    let version = crate::proto::PROTOCOL_VERSION;
    let connect = || {
        Link::connect_as(
            server.addr,
            &s.client,
            &trust,
            liveness(),
            version,
            Some(tickets.clone()),
            &first,
        )
    };
    let (full, answers) = connect().await.unwrap();
    assert!(!full.resumed());
    assert_eq!(answers, expected);
    // A round trip more, so the tickets (sent after the handshake) are in.
    full.call(&Request::Uname).await.unwrap().unwrap();
    // In 0-RTT the uname runs at once and the unlink once the handshake is
    // complete: both are answered, each run once.
    let (resumed, answers) = connect().await.unwrap();
    assert!(resumed.resumed());
    assert_eq!(answers, expected);
    let unlinks = s
        .rec
        .ran()
        .iter()
        .filter(|r| matches!(r, Request::Unlink { .. }))
        .count();
    assert_eq!(unlinks, 2, "{:?}", s.rec.ran());
    full.close().await;
    resumed.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_changed_pin_uses_no_old_ticket() {
    let s = setup();
    let server = Server::start(&s.server_identity, any_port(), &s.clients, &s.rec).await;
    let tickets = Arc::new(Tickets::default());
    let version = crate::proto::PROTOCOL_VERSION;
    let addr = server.addr;
    let connect = |trust: ServerTrust| {
        let tickets = tickets.clone();
        let client = s.client.clone();
        async move {
            Link::connect_as(
                addr,
                &client,
                &trust,
                liveness(),
                version,
                Some(tickets),
                &[],
            )
            .await
        }
    };
    let (link, _) = connect(ServerTrust::Pinned(s.server_identity.fingerprint()))
        .await
        .unwrap();
    link.call(&Request::Uname).await.unwrap().unwrap();
    // The same server, but the user now pins another certificate: a
    // resumed session would skip the check, so no ticket may be offered.
    let wrong = Fingerprint([7; 32]);
    let err = connect(ServerTrust::Pinned(wrong)).await.unwrap_err();
    match &err {
        TransportError::ServerCertificateMismatch { expected, .. } => assert_eq!(*expected, wrong),
        other => panic!("expected ServerCertificateMismatch, got {other:?}: {other}"),
    }
    link.close().await;
    server.stop().await;
}
