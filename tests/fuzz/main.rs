//! A coverage-free, mutation-based fuzzer that runs on stable Rust, over
//! the frame and message decoders, the executor on a trap-filled root, and
//! the server's network request handlers.
//!
//! Each target runs for `RSCQ_FUZZ_SECS` (default a few seconds) from the
//! fixed seed, or `RSCQ_FUZZ_SEED`; a failure writes its input to a file
//! and says how to replay it with `RSCQ_FUZZ_REPLAY`. By hand, for longer:
//! `RSCQ_FUZZ_SECS=3600 cargo test --release --test fuzz`. The seeds are
//! committed under `tests/fuzz/corpus/<target>/`; after a protocol change,
//! `RSCQ_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz corpus` writes them
//! again.

mod driver;
mod executor;
mod frames;
mod mutate;
mod net;
mod rng;
mod seeds;
mod trap_root;

use std::collections::BTreeSet;
use std::os::unix::fs::OpenOptionsExt as _;

#[test]
fn fuzz_frames() {
    driver::fuzz(&mut frames::Frames::new());
}

#[test]
fn fuzz_net() {
    driver::fuzz(&mut net::NetTarget::new());
}

#[test]
fn fuzz_executor() {
    driver::fuzz(&mut executor::ExecutorTarget::new());
}

/// Named seed files of one target.
type Seeds = Vec<(String, Vec<u8>)>;

/// The seeds the code builds, by target.
fn built_corpus() -> Vec<(&'static str, Seeds)> {
    vec![
        ("frames", seeds::frame_seeds()),
        ("executor", seeds::executor_seeds()),
        ("net", net::net_seeds()),
    ]
}

/// The committed corpus is what the code builds: a protocol change that
/// makes the seeds stale fails here (and `RSCQ_FUZZ_WRITE_CORPUS=1`
/// rewrites them).
#[test]
fn corpus_matches_the_seeds() {
    let write = std::env::var_os("RSCQ_FUZZ_WRITE_CORPUS").is_some();
    for (target, seeds) in built_corpus() {
        let dir = driver::corpus_dir(target);
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("seed file");
            }
        }
        let on_disk = driver::load_corpus(target);
        let mut built: Vec<(String, Vec<u8>)> = seeds
            .into_iter()
            .map(|(name, bytes)| (format!("{name}.bin"), bytes))
            .collect();
        built.sort();
        assert_eq!(
            on_disk.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            built.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "tests/fuzz/corpus/{target}: stale; RSCQ_FUZZ_WRITE_CORPUS=1 rewrites it"
        );
        assert!(
            on_disk == built,
            "tests/fuzz/corpus/{target}: a seed's bytes are stale; RSCQ_FUZZ_WRITE_CORPUS=1 rewrites them"
        );
    }
}

/// Every request variant has a seed, and every seed decodes.
#[test]
fn seeds_cover_every_request_variant() {
    let names: BTreeSet<&str> = seeds::every_request()
        .iter()
        .map(seeds::variant_name)
        .collect();
    assert_eq!(
        names.len(),
        seeds::every_request().len(),
        "one seed per variant"
    );
    let framed: BTreeSet<&str> = driver::load_corpus("frames")
        .iter()
        .flat_map(|(_, bytes)| mutate::decode_calls(bytes))
        .map(|call| seeds::variant_name(&call.request))
        .collect();
    assert_eq!(
        framed, names,
        "the frame corpus holds a call of every variant"
    );
}

// The checks the targets rely on, each shown to fail when it should: a
// fuzzer whose detectors cannot fire finds nothing.

/// A file made beside the export, or a change to the canary, is seen.
#[test]
fn the_outside_check_sees_any_change() {
    let trap = trap_root::TrapRoot::new();
    trap.check_outside().expect("untouched");
    let base = trap.root.parent().expect("base").to_path_buf();
    std::fs::write(base.join("escaped"), b"x").expect("write");
    assert!(trap.check_outside().is_err(), "a new file beside the root");
    std::fs::remove_file(base.join("escaped")).expect("remove");
    assert!(
        trap.check_outside().is_err(),
        "made and removed again: the directory's times moved"
    );

    let trap = trap_root::TrapRoot::new();
    let secret = trap.canary.join("secret");
    let meta = std::fs::metadata(&secret).expect("stat");
    std::fs::set_permissions(&secret, meta.permissions()).expect("chmod to the same mode");
    assert!(trap.check_outside().is_err(), "a chmod moves the ctime");
}

/// The canary's content is found in a real reply that carries it: an
/// executor exported one level too high reads it.
#[test]
fn a_reply_with_the_canary_is_seen() {
    let trap = trap_root::TrapRoot::new();
    let base = trap.root.parent().expect("base");
    let policy = rscq::server::creds::Policy::of_this_process(None);
    let too_high = rscq::server::Executor::new(base, false, policy).expect("executor");
    let opened = too_high.execute(
        None,
        rscq::proto::Request::Open {
            path: rscq::proto::RemotePath(b"canary/secret".to_vec()),
            flags: libc::O_RDONLY,
            mode: 0,
        },
    );
    let Ok(rscq::proto::Reply::Opened { handle, .. }) = opened else {
        panic!("open: {opened:?}");
    };
    let read = too_high.execute(None, rscq::proto::Request::Read { handle, len: 4096 });
    assert!(trap_root::leaks_canary(&rscq::proto::frame::encode(&read)));
    let inside = too_high.execute(None, rscq::proto::Request::Uname);
    assert!(!trap_root::leaks_canary(&rscq::proto::frame::encode(
        &inside
    )));
}

/// A request that does not come back in time is a failure: a blocking
/// open of the FIFO with no writer (which the targets prevent with
/// `O_NONBLOCK`) waits, as `open(2)` does.
#[test]
fn a_request_that_hangs_is_seen() {
    let trap = trap_root::TrapRoot::new();
    let policy = rscq::server::creds::Policy::of_this_process(None);
    let ex = rscq::server::Executor::new(&trap.root, false, policy).expect("executor");
    let session = executor::Session::new(ex, std::time::Duration::from_millis(300));
    let blocking = rscq::proto::Call {
        creds: None,
        request: rscq::proto::Request::Open {
            path: rscq::proto::RemotePath(b"fifo".to_vec()),
            flags: libc::O_RDONLY,
            mode: 0,
        },
        once: None,
    };
    let mut safe = blocking.clone();
    executor::make_safe(&mut safe.request);
    assert!(
        matches!(session.execute(safe), Ok(Ok(_))),
        "with O_NONBLOCK the open returns at once"
    );
    let hung = session.execute(blocking);
    assert!(
        hung.as_ref().is_err_and(|e| e.contains("no answer")),
        "{hung:?}"
    );
    // A writer lets the waiting open finish, so the thread ends.
    let _writer = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(trap.root.join("fifo"));
}

/// Whatever address a request names, what reaches a socket is loopback,
/// on one of the harness's own ports (or 0 for a bind).
#[test]
fn every_address_is_mapped_to_loopback() {
    let fixtures = net::Fixtures {
        tcp: [vec![1001, 1002], vec![1003]],
        udp: [vec![2001], vec![2002, 2003]],
        _held: Vec::new(),
    };
    let listeners = [vec![3001], Vec::new()];
    let mut rng = rng::Rng::new(7);
    for _ in 0..10_000 {
        let port = u16::try_from(rng.below(65536)).expect("port");
        let addr = if rng.one_in(2) {
            rscq::proto::SockAddr::V4 {
                ip: rng.next_u64().to_le_bytes()[..4].try_into().expect("4"),
                port,
            }
        } else {
            let mut ip = [0u8; 16];
            ip.iter_mut().for_each(|b| *b = rng.byte());
            rscq::proto::SockAddr::V6 {
                ip,
                port,
                flowinfo: 0,
                scope_id: 5,
            }
        };
        let role = *rng.pick(&[net::Role::Bind, net::Role::TcpPeer, net::Role::UdpPeer]);
        let mapped =
            std::net::SocketAddr::from(net::to_loopback(&fixtures, &listeners, addr, role));
        assert!(mapped.ip().is_loopback(), "{addr:?} became {mapped}");
        let family = usize::from(mapped.is_ipv6());
        let allowed: Vec<u16> = match role {
            net::Role::Bind => std::iter::once(0)
                .chain(fixtures.tcp[family].clone())
                .collect(),
            net::Role::TcpPeer => fixtures.tcp[family]
                .iter()
                .chain(&listeners[family])
                .copied()
                .collect(),
            net::Role::UdpPeer => fixtures.udp[family].clone(),
        };
        assert!(allowed.contains(&mapped.port()), "{addr:?} became {mapped}");
        if let std::net::SocketAddr::V6(v6) = mapped {
            assert_eq!(v6.scope_id(), 0);
        }
    }
}
