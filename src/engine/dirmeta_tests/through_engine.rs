//! Tests of the dirmeta layer wired through [`FileEngine`]: which request
//! goes out on a miss and what the reply answers. Tests only.

use std::time::Instant;

use super::{TTL, file, lstat, rp, st, stat};
use crate::engine::{Action, FileEngine, Layers, Pending};
use crate::errno::Errno;
use crate::proto::{DirListing, Handle, LookedUp, LookupAnswer, Reply, Request};

fn layers() -> Layers {
    Layers {
        statcache: true,
        compound: true,
        readahead: true,
        dirmeta: true,
        bulkread: false,
        smallfile: false,
        openahead: false,
    }
}

/// Sends `req` through `e`, which must ask for `/d`'s listing, and answers
/// with `answer` and the standard listing.
fn fetch(
    e: &mut FileEngine,
    now: Instant,
    req: Request,
    answer: Result<LookupAnswer, Errno>,
) -> crate::proto::Response {
    let Action::Send(sent, pending) = e.on_request(now, req.clone()) else {
        panic!("{req:?} must go to the server")
    };
    let Request::LookupAndList { dir, lookup } = sent else {
        panic!("{sent:?} must ask for the listing")
    };
    assert_eq!(dir, rp("/d"));
    assert!(matches!(pending, Pending::Lookup { .. }));
    let _ = lookup;
    let listing = DirListing::Complete(vec![file("a", 5), file("b", 6)]);
    e.on_reply(
        now,
        pending,
        Ok(Reply::LookedUp(Box::new(LookedUp { answer, listing }))),
    )
}

#[test]
fn engine_one_round_trip_answers_the_whole_directory() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    let a = st(libc::S_IFREG | 0o644, 5);
    let r = fetch(
        &mut e,
        now,
        lstat("/d/a"),
        Ok(LookupAnswer::StatPlus {
            stat: a,
            xattrs: vec![],
        }),
    );
    assert_eq!(r, Ok(Reply::Stat(a)));
    assert_eq!(
        e.on_request(now, lstat("/d/b")),
        Action::Answer(Ok(Reply::Stat(st(libc::S_IFREG | 0o644, 6))))
    );
    assert_eq!(
        e.on_request(now, stat("/d/zz.py")),
        Action::Answer(Err(Errno::ENOENT))
    );
}

#[test]
fn engine_an_open_miss_brings_the_listing_and_opens() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    let a = st(libc::S_IFREG | 0o644, 5);
    let open = Request::Open {
        path: rp("/d/a"),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let r = fetch(
        &mut e,
        now,
        open,
        Ok(LookupAnswer::Opened {
            handle: Handle(3),
            stat: a,
        }),
    );
    assert_eq!(
        r,
        Ok(Reply::Opened {
            handle: Handle(3),
            stat: a
        })
    );
    // The open's stat answers the first fstat (compound), as without dirmeta.
    assert_eq!(
        e.on_request(now, Request::Fstat { handle: Handle(3) }),
        Action::Answer(Ok(Reply::Stat(a)))
    );
}

#[test]
fn engine_create_after_a_cached_enoent_is_seen() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    let r = fetch(&mut e, now, lstat("/d/new"), Err(Errno::ENOENT));
    assert_eq!(r, Err(Errno::ENOENT));
    assert_eq!(
        e.on_request(now, lstat("/d/new")),
        Action::Answer(Err(Errno::ENOENT))
    );
    let create = Request::Open {
        path: rp("/d/new"),
        flags: libc::O_WRONLY | libc::O_CREAT,
        mode: 0o644,
    };
    let Action::Send(sent, pending) = e.on_request(now, create.clone()) else {
        panic!()
    };
    assert_eq!(sent, create);
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(4),
            stat: st(libc::S_IFREG | 0o644, 0),
        }),
    );
    let Action::Send(sent, _) = e.on_request(now, lstat("/d/new")) else {
        panic!("the negative entry must be gone")
    };
    assert!(matches!(sent, Request::LookupAndList { .. }), "{sent:?}");
}

#[test]
fn engine_a_listing_that_crosses_a_change_is_not_kept() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    let Action::Send(_, pending) = e.on_request(now, lstat("/d/a")) else {
        panic!()
    };
    // Another thread's mkdir is sent and answered meanwhile.
    let mkdir = Request::Mkdir {
        path: rp("/d/m"),
        mode: 0o755,
    };
    let Action::Send(_, mk) = e.on_request(now, mkdir) else {
        panic!()
    };
    let listing = DirListing::Complete(vec![file("a", 5)]);
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::LookedUp(Box::new(LookedUp {
            answer: Ok(LookupAnswer::Stat(st(libc::S_IFREG, 5))),
            listing,
        }))),
    );
    let _ = e.on_reply(now, mk, Ok(Reply::Done));
    assert!(e.dir_meta().is_empty());
}

#[test]
fn engine_without_the_layer_sends_plain_lookups() {
    let now = Instant::now();
    let mut e = FileEngine::new(
        Layers {
            dirmeta: false,
            ..layers()
        },
        TTL,
    );
    let Action::Send(sent, _) = e.on_request(now, lstat("/d/a")) else {
        panic!()
    };
    assert!(matches!(sent, Request::StatPlus { .. }), "{sent:?}");
    let mut pure = FileEngine::new(Layers::default(), TTL);
    let Action::Send(sent, _) = pure.on_request(now, lstat("/d/a")) else {
        panic!()
    };
    assert_eq!(sent, lstat("/d/a"));
}
