//! End-to-end tests over real loopback QUIC with a small fake session.
//!
//! Tests only.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::identity::{CLIENT_NAME, SERVER_NAME};
use super::*;
use crate::errno::Errno;
use crate::proto::{Handle, PROTOCOL_VERSION, RemotePath, Reply, Request, Response, Utsname};

/// Short, so the tests of a vanished server finish quickly; the default
/// (a minute) is for real links.
const TEST_IDLE_TIMEOUT: Duration = Duration::from_secs(2);

fn test_liveness() -> Liveness {
    Liveness::new(TEST_IDLE_TIMEOUT)
}

/// Answers a few requests without touching the file system.
struct Fake {
    /// How long `Fsync` blocks, to keep a call in flight.
    fsync_delay: Duration,
    live: Arc<AtomicUsize>,
}

impl Fake {
    fn new(live: &Arc<AtomicUsize>, fsync_delay: Duration) -> Self {
        live.fetch_add(1, Ordering::SeqCst);
        Self {
            fsync_delay,
            live: live.clone(),
        }
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Session for Fake {
    fn execute(&self, _caller: Option<&crate::proto::Credentials>, req: Request) -> Response {
        match req {
            Request::Uname => Ok(Reply::Uname(Utsname {
                nodename: b"fake".to_vec(),
                ..Utsname::default()
            })),
            Request::Readlink { path } => {
                // Long enough that concurrent calls really overlap.
                std::thread::sleep(Duration::from_millis(5));
                Ok(Reply::Data(path.0))
            }
            Request::Write { data, .. } => Ok(Reply::Count(u64::try_from(data.len()).unwrap())),
            Request::Pread { len, .. } => Ok(Reply::Data(vec![7; usize::try_from(len).unwrap()])),
            Request::Fsync { .. } => {
                std::thread::sleep(self.fsync_delay);
                Ok(Reply::Done)
            }
            _ => Err(Errno::ENOSYS),
        }
    }
}

/// Sessions whose `Fsync` blocks for 2 s: long enough to be in flight when
/// the server goes away, short enough not to hold up a runtime's shutdown.
fn fake_sessions(
    live: &Arc<AtomicUsize>,
) -> impl Fn(&Peer) -> Result<Fake, SessionError> + Send + Sync + 'static {
    slow_fake_sessions(live, Duration::from_secs(2))
}

fn slow_fake_sessions(
    live: &Arc<AtomicUsize>,
    fsync_delay: Duration,
) -> impl Fn(&Peer) -> Result<Fake, SessionError> + Send + Sync + 'static {
    let live = live.clone();
    move |_: &Peer| Ok(Fake::new(&live, fsync_delay))
}

/// A server with its own identity, accepting the given clients.
struct TestServer {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    fn start<F, S>(clients: AuthorizedClients, read_only: bool, make_session: F) -> Self
    where
        F: Fn(&Peer) -> Result<S, SessionError> + Send + Sync + 'static,
        S: Session,
    {
        let identity = Identity::generate(SERVER_NAME).unwrap();
        let endpoint = server::endpoint(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            &identity,
            clients.clone(),
            test_liveness(),
        )
        .unwrap();
        let addr = endpoint.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            endpoint,
            read_only,
            clients,
            make_session,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            fingerprint: identity.fingerprint(),
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

fn uname_node(resp: Response) -> Vec<u8> {
    match resp {
        Ok(Reply::Uname(u)) => u.nodename,
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn authorized_client_calls_succeed() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(true, fake_sessions(&live)).unwrap();
    let link = server.connect().await.unwrap();
    assert!(link.read_only());
    assert_eq!(
        uname_node(link.call(&Request::Uname).await.unwrap()),
        b"fake"
    );
    // A remote errno is data, not a transport failure.
    let resp = link
        .call(&Request::Close { handle: Handle(1) })
        .await
        .unwrap();
    assert_eq!(resp, Err(Errno::ENOSYS));
    assert_eq!(live.load(Ordering::SeqCst), 1);
    link.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn session_is_dropped_when_the_connection_ends() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let a = server.connect().await.unwrap();
    let b = server.connect().await.unwrap();
    a.call(&Request::Uname).await.unwrap().unwrap();
    b.call(&Request::Uname).await.unwrap().unwrap();
    assert_eq!(live.load(Ordering::SeqCst), 2);
    a.close().await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while live.load(Ordering::SeqCst) != 1 {
        assert!(
            Instant::now() < deadline,
            "session of a closed connection still alive"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The other connection is unaffected.
    b.call(&Request::Uname).await.unwrap().unwrap();
}

#[tokio::test]
async fn large_payloads_round_trip() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let link = server.connect().await.unwrap();
    let max = crate::proto::MAX_IO;
    let resp = link
        .call(&Request::Write {
            handle: Handle(1),
            data: vec![1; usize::try_from(max).unwrap()],
        })
        .await
        .unwrap();
    assert_eq!(resp, Ok(Reply::Count(u64::from(max))));
    let resp = link
        .call(&Request::Pread {
            handle: Handle(1),
            len: max,
            offset: 0,
        })
        .await
        .unwrap();
    assert!(matches!(resp, Ok(Reply::Data(d)) if d.len() == usize::try_from(max).unwrap()));
    // Larger than any frame: refused before anything is sent.
    let too_big = Request::Write {
        handle: Handle(1),
        data: vec![0; crate::proto::frame::MAX_FRAME + 1],
    };
    assert!(matches!(
        link.call(&too_big).await,
        Err(TransportError::RequestTooLarge(_))
    ));
    link.call(&Request::Uname).await.unwrap().unwrap();
}

#[tokio::test]
async fn unauthorized_client_is_refused_clearly() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let stranger = Identity::generate(CLIENT_NAME).unwrap();
    let err = Link::connect(server.addr(), &stranger, &server.trust(), test_liveness())
        .await
        .unwrap_err();
    match &err {
        TransportError::NotAuthorized { fingerprint, .. } => {
            assert_eq!(*fingerprint, stranger.fingerprint());
        }
        other => panic!("expected NotAuthorized, got {other:?}: {other}"),
    }
    let text = err.to_string();
    assert!(text.contains("not authorized"), "{text}");
    assert!(text.contains(&stranger.fingerprint().to_string()), "{text}");
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn pinned_server_mismatch_is_refused() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let wrong = Fingerprint([9; 32]);
    let err = Link::connect(
        server.addr(),
        server.client_identity(),
        &ServerTrust::Pinned(wrong),
        test_liveness(),
    )
    .await
    .unwrap_err();
    match &err {
        TransportError::ServerCertificateMismatch {
            expected,
            presented,
            ..
        } => {
            assert_eq!(*expected, wrong);
            assert_eq!(*presented, server.server_fingerprint());
        }
        other => panic!("expected ServerCertificateMismatch, got {other:?}: {other}"),
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn trust_on_first_use_records_then_refuses_a_changed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rscq/known_servers");
    let trust = ServerTrust::KnownServers {
        file: file.clone(),
        host_label: "example.org:4433".to_owned(),
    };
    let client = Identity::generate(CLIENT_NAME).unwrap();
    let clients = AuthorizedClients::from_fingerprints([client.fingerprint()]);
    let live = Arc::new(AtomicUsize::new(0));

    let first = TestServer::start(clients.clone(), false, fake_sessions(&live));
    let link = Link::connect(first.addr, &client, &trust, test_liveness())
        .await
        .unwrap();
    link.close().await;
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text, format!("example.org:4433 {}\n", first.fingerprint));

    // Known and equal: accepted, nothing appended.
    let link = Link::connect(first.addr, &client, &trust, test_liveness())
        .await
        .unwrap();
    link.call(&Request::Uname).await.unwrap().unwrap();
    link.close().await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);

    // Same label, another certificate: refused loudly, naming file:line.
    let second = TestServer::start(clients, false, fake_sessions(&live));
    let err = Link::connect(second.addr, &client, &trust, test_liveness())
        .await
        .unwrap_err();
    match &err {
        TransportError::ServerCertificateChanged {
            line,
            expected,
            presented,
            ..
        } => {
            assert_eq!(*line, 1);
            assert_eq!(*expected, first.fingerprint);
            assert_eq!(*presented, second.fingerprint);
        }
        other => panic!("expected ServerCertificateChanged, got {other:?}: {other}"),
    }
    let message = err.to_string();
    assert!(message.contains("CERTIFICATE CHANGED"), "{message}");
    assert!(
        message.contains(&format!("{}:1", file.display())),
        "{message}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    first.stop().await;
    second.stop().await;
}

#[tokio::test]
async fn version_mismatch_names_both_versions() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let future = PROTOCOL_VERSION + 1;
    let err = Link::connect_as(
        server.addr(),
        server.client_identity(),
        &server.trust(),
        test_liveness(),
        future,
        None,
        &[],
    )
    .await
    .unwrap_err();
    match err {
        TransportError::VersionMismatch { client, server } => {
            assert_eq!((client, server), (future, PROTOCOL_VERSION));
        }
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    assert_eq!(live.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn failing_session_is_reported_to_the_client() {
    let server = Embedded::start_with(false, |_: &Peer| -> Result<Fake, SessionError> {
        Err("cannot open export root /srv/gone".into())
    })
    .unwrap();
    let err = server.connect().await.unwrap_err();
    match &err {
        TransportError::SessionRefused { reason } => {
            assert!(reason.contains("/srv/gone"), "{reason}");
        }
        other => panic!("expected SessionRefused, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_on_a_stream_fails_only_that_stream() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let link = server.connect().await.unwrap();
    let conn = link.connection();
    let garbage: [&[u8]; 4] = [
        // Length says 5, body is not a request.
        &[5, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff],
        // Length far beyond the limit.
        &u32::MAX.to_le_bytes(),
        // Truncated header.
        &[1, 0],
        // Nothing at all.
        &[],
    ];
    for bytes in garbage {
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let err = recv.read_to_end(1 << 20).await.unwrap_err();
        assert!(
            matches!(err, quinn::ReadToEndError::Read(quinn::ReadError::Reset(c))
                if c == quinn::VarInt::from_u32(code::MALFORMED_REQUEST)),
            "{bytes:?}: {err:?}"
        );
    }
    // A stream longer than any frame is cut off without buffering it all.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let big = vec![0u8; MAX_STREAM_BYTES + 1];
    let _ = send.write_all(&big).await;
    let _ = send.finish();
    assert!(recv.read_to_end(1 << 20).await.is_err());

    assert_eq!(
        uname_node(link.call(&Request::Uname).await.unwrap()),
        b"fake"
    );
    assert_eq!(live.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_on_one_connection() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let link = server.connect().await.unwrap();
    let started = Instant::now();
    let calls: Vec<_> = (0..200u32)
        .map(|i| {
            let link = link.clone();
            tokio::spawn(async move {
                let path = RemotePath(format!("/call/{i}").into_bytes());
                let resp = link
                    .call(&Request::Readlink { path: path.clone() })
                    .await
                    .unwrap();
                assert_eq!(resp, Ok(Reply::Data(path.0)));
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    // Serially this would take at least 200 × 5 ms.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(live.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn vanished_server_fails_pending_and_later_calls_within_seconds() {
    // The server runs in a runtime of its own, which is then dropped without
    // a word: as if the host crashed or the network went away.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let client = Identity::generate(CLIENT_NAME).unwrap();
    let clients = AuthorizedClients::from_fingerprints([client.fingerprint()]);
    let live = Arc::new(AtomicUsize::new(0));
    let server = {
        let _in_server_rt = server_rt.enter();
        // Longer than the idle timeout, so only the transport can end the call.
        TestServer::start(
            clients,
            false,
            slow_fake_sessions(&live, TEST_IDLE_TIMEOUT * 3),
        )
    };
    let link = Link::connect(
        server.addr,
        &client,
        &ServerTrust::Pinned(server.fingerprint),
        test_liveness(),
    )
    .await
    .unwrap();
    link.call(&Request::Uname).await.unwrap().unwrap();

    let pending = {
        let link = link.clone();
        tokio::spawn(async move {
            link.call(&Request::Fsync {
                handle: Handle(1),
                data_only: false,
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let vanished = Instant::now();
    server_rt.shutdown_background();

    let result = pending.await.unwrap();
    let waited = vanished.elapsed();
    assert!(
        matches!(result, Err(TransportError::ConnectionLost(_))),
        "{result:?}"
    );
    assert!(
        waited < TEST_IDLE_TIMEOUT + Duration::from_secs(3),
        "{waited:?}"
    );

    let later = Instant::now();
    let result = link.call(&Request::Uname).await;
    assert!(
        matches!(result, Err(TransportError::ConnectionLost(_))),
        "{result:?}"
    );
    assert!(later.elapsed() < Duration::from_secs(1));
    assert!(link.close_reason().is_some());
    drop(server);
}

#[tokio::test]
async fn server_shutdown_fails_calls_at_once() {
    let live = Arc::new(AtomicUsize::new(0));
    let server = Embedded::start_with(false, fake_sessions(&live)).unwrap();
    let link = server.connect().await.unwrap();
    let pending = {
        let link = link.clone();
        tokio::spawn(async move {
            link.call(&Request::Fsync {
                handle: Handle(1),
                data_only: true,
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    server.shutdown().await;
    let result = pending.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.to_string().contains("shutting down"), "{err}");
    assert!(stopped.elapsed() < Duration::from_secs(3));
    assert!(link.call(&Request::Uname).await.is_err());
}

#[tokio::test]
async fn nothing_listening_is_unreachable_not_a_hang() {
    // A bound socket that never answers: no ICMP either, like a firewall.
    let silent = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = silent.local_addr().unwrap();
    let client = Identity::generate(CLIENT_NAME).unwrap();
    let started = Instant::now();
    let err = Link::connect(
        addr,
        &client,
        &ServerTrust::Pinned(Fingerprint([0; 32])),
        test_liveness(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err:?}");
    assert!(started.elapsed() < TEST_IDLE_TIMEOUT + Duration::from_secs(3));
}
