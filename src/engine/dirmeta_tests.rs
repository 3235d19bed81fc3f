//! Tests of the dirmeta core ([`DirMeta`]) on plain values with explicit
//! times, and of its wiring through [`FileEngine`]. Tests only.

use std::time::{Duration, Instant};

use super::dirmeta::{DirMeta, Lookup, MAX_CACHED_ENTRIES};
use crate::errno::Errno;
use crate::proto::{
    DirListing, Handle, ListedEntry, MAX_LISTED_ENTRIES, RemotePath, Reply, Request, Stat,
    TimeUpdate, XattrTarget,
};

const TTL: Duration = Duration::from_secs(1);

fn rp(s: &str) -> RemotePath {
    RemotePath(s.as_bytes().to_vec())
}

fn st(mode: u32, size: u64) -> Stat {
    Stat {
        mode,
        size,
        nlink: 1,
        ..Stat::default()
    }
}

fn file(name: &str, size: u64) -> ListedEntry {
    ListedEntry {
        name: name.as_bytes().to_vec(),
        lstat: Ok(st(libc::S_IFREG | 0o644, size)),
        link: None,
    }
}

fn dir(name: &str) -> ListedEntry {
    ListedEntry {
        name: name.as_bytes().to_vec(),
        lstat: Ok(Stat {
            nlink: 2,
            ..st(libc::S_IFDIR | 0o755, 4096)
        }),
        link: None,
    }
}

fn link(name: &str, target: &str) -> ListedEntry {
    ListedEntry {
        name: name.as_bytes().to_vec(),
        lstat: Ok(st(libc::S_IFLNK | 0o777, target.len() as u64)),
        link: Some(target.as_bytes().to_vec()),
    }
}

fn lstat(path: &str) -> Request {
    Request::Stat {
        path: rp(path),
        follow: false,
    }
}

fn stat(path: &str) -> Request {
    Request::Stat {
        path: rp(path),
        follow: true,
    }
}

fn no_handles(_: Handle) -> Option<RemotePath> {
    None
}

/// A cache holding `/d` listed at `now` with `entries`.
fn listed(now: Instant, entries: Vec<ListedEntry>) -> DirMeta {
    let mut c = DirMeta::new(TTL);
    assert_eq!(c.lookup(now, &lstat("/d/a")), Lookup::Fetch(rp("/d")));
    let epoch = c.epoch();
    c.insert(now, &rp("/d"), DirListing::Complete(entries), epoch);
    c
}

fn standard(now: Instant) -> DirMeta {
    listed(
        now,
        vec![file("a", 5), file("b", 6), dir("sub"), link("l", "a")],
    )
}

fn answer_stat(size: u64, mode: u32) -> Lookup {
    Lookup::Answer(Ok(Reply::Stat(st(mode, size))))
}

#[test]
fn a_miss_asks_for_its_directory_and_hits_are_reused_within_the_ttl() {
    let now = Instant::now();
    let mut c = standard(now);
    for _ in 0..3 {
        assert_eq!(
            c.lookup(now, &lstat("/d/a")),
            answer_stat(5, libc::S_IFREG | 0o644)
        );
        assert_eq!(
            c.lookup(now, &stat("/d/b")),
            answer_stat(6, libc::S_IFREG | 0o644)
        );
    }
    assert_eq!(c.hits(), (6, 0));
    // Another directory is a miss of its own.
    assert_eq!(c.lookup(now, &lstat("/e/x")), Lookup::Fetch(rp("/e")));
}

#[test]
fn absent_names_are_enoent_for_every_lookup_and_below() {
    let now = Instant::now();
    let mut c = standard(now);
    let enoent = Lookup::Answer(Err(Errno::ENOENT));
    assert_eq!(c.lookup(now, &lstat("/d/missing")), enoent);
    assert_eq!(c.lookup(now, &stat("/d/missing")), enoent);
    assert_eq!(
        c.lookup(
            now,
            &Request::Readlink {
                path: rp("/d/nope")
            }
        ),
        enoent
    );
    for mode in [libc::F_OK, libc::R_OK, libc::X_OK] {
        let access = Request::Access {
            path: rp("/d/missing"),
            mode,
            flags: 0,
        };
        assert_eq!(c.lookup(now, &access), enoent);
    }
    // Bad modes and flags are the kernel's EINVAL, before any lookup.
    let bad = Request::Access {
        path: rp("/d/missing"),
        mode: 0o10,
        flags: 0,
    };
    assert_eq!(c.lookup(now, &bad), Lookup::Pass);
    let open = Request::Open {
        path: rp("/d/missing.py"),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    assert_eq!(c.lookup(now, &open), enoent);
    // A path below a missing name, or below a file.
    assert_eq!(c.lookup(now, &stat("/d/missing/x/y")), enoent);
    assert_eq!(
        c.lookup(now, &stat("/d/a/x")),
        Lookup::Answer(Err(Errno::ENOTDIR))
    );
    // Below a listed directory: its own listing is needed.
    assert_eq!(
        c.lookup(now, &stat("/d/sub/x")),
        Lookup::Fetch(rp("/d/sub"))
    );
    // Below a symlink: the server follows it.
    assert_eq!(c.lookup(now, &stat("/d/l/x")), Lookup::Fetch(rp("/d/l")));
    assert_eq!(c.hits(), (9, 8));
}

#[test]
fn symlinks_answer_lstat_and_readlink_but_stat_goes_to_the_server() {
    let now = Instant::now();
    let mut c = standard(now);
    assert_eq!(
        c.lookup(now, &lstat("/d/l")),
        answer_stat(1, libc::S_IFLNK | 0o777)
    );
    assert_eq!(
        c.lookup(now, &Request::Readlink { path: rp("/d/l") }),
        Lookup::Answer(Ok(Reply::Data(b"a".to_vec())))
    );
    assert_eq!(
        c.lookup(now, &Request::Readlink { path: rp("/d/a") }),
        Lookup::Answer(Err(Errno::EINVAL))
    );
    assert_eq!(c.lookup(now, &stat("/d/l")), Lookup::Pass);
    let exists = |flags| Request::Access {
        path: rp("/d/l"),
        mode: libc::F_OK,
        flags,
    };
    assert_eq!(c.lookup(now, &exists(0)), Lookup::Pass);
    assert_eq!(
        c.lookup(now, &exists(libc::AT_SYMLINK_NOFOLLOW)),
        Lookup::Answer(Ok(Reply::Done))
    );
}

#[test]
fn existing_entries_send_permission_checks_and_opens() {
    let now = Instant::now();
    let mut c = standard(now);
    let access = Request::Access {
        path: rp("/d/a"),
        mode: libc::R_OK,
        flags: 0,
    };
    assert_eq!(c.lookup(now, &access), Lookup::Pass);
    let open = Request::Open {
        path: rp("/d/a"),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    assert_eq!(c.lookup(now, &open), Lookup::Pass);
    // A change is never a lookup.
    let create = Request::Open {
        path: rp("/d/new"),
        flags: libc::O_WRONLY | libc::O_CREAT,
        mode: 0o644,
    };
    assert_eq!(c.lookup(now, &create), Lookup::Pass);
}

#[test]
fn entries_expire_after_the_ttl() {
    let now = Instant::now();
    let mut c = standard(now);
    let later = now + TTL;
    assert_eq!(
        c.lookup(later, &lstat("/d/a")),
        answer_stat(5, libc::S_IFREG | 0o644)
    );
    let after = now + TTL + Duration::from_millis(1);
    assert_eq!(c.lookup(after, &lstat("/d/a")), Lookup::Fetch(rp("/d")));
    // The listing is on its way: another miss goes alone meanwhile.
    assert_eq!(c.lookup(after, &lstat("/d/missing")), Lookup::Pass);
    assert_eq!(
        c.lookup(after, &stat("/d/missing/x")),
        Lookup::Fetch(rp("/d/missing"))
    );
}

#[test]
fn not_plain_paths_and_the_root_are_passed_on() {
    let now = Instant::now();
    let mut c = standard(now);
    for p in ["/d/./a", "/d/../d/a", "/d//a", "/d/a/", "d/a", "/"] {
        assert_eq!(c.lookup(now, &lstat(p)), Lookup::Pass, "{p}");
    }
    assert_eq!(c.lookup(now, &lstat("/top")), Lookup::Fetch(rp("/")));
    assert_eq!(
        c.lookup(now, &Request::Fstat { handle: Handle(1) }),
        Lookup::Pass
    );
}

#[test]
fn a_listing_asked_before_a_change_is_not_kept() {
    let now = Instant::now();
    let mut c = DirMeta::new(TTL);
    assert_eq!(c.lookup(now, &lstat("/d/new")), Lookup::Fetch(rp("/d")));
    let epoch = c.epoch();
    // The program creates /d/new while the listing is on its way.
    c.invalidate(
        now,
        &Request::Mknod {
            path: rp("/d/new"),
            mode: libc::S_IFREG | 0o644,
            dev: 0,
        },
        no_handles,
    );
    c.insert(
        now,
        &rp("/d"),
        DirListing::Complete(vec![file("a", 1)]),
        epoch,
    );
    assert!(c.is_empty());
    assert_eq!(c.lookup(now, &lstat("/d/new")), Lookup::Fetch(rp("/d")));
}

#[test]
fn too_large_or_unavailable_directories_are_not_asked_again_within_the_ttl() {
    let now = Instant::now();
    for listing in [DirListing::TooLarge, DirListing::Unavailable(Errno::EACCES)] {
        let mut c = DirMeta::new(TTL);
        assert_eq!(c.lookup(now, &lstat("/big/a")), Lookup::Fetch(rp("/big")));
        let epoch = c.epoch();
        c.insert(now, &rp("/big"), listing, epoch);
        assert_eq!(c.lookup(now, &lstat("/big/a")), Lookup::Pass);
        assert_eq!(c.lookup(now, &lstat("/big/missing")), Lookup::Pass);
        let after = now + TTL + Duration::from_millis(1);
        assert_eq!(c.lookup(after, &lstat("/big/a")), Lookup::Fetch(rp("/big")));
    }
}

#[test]
fn the_bound_keeps_at_most_max_listed_entries_per_directory_and_in_all() {
    let now = Instant::now();
    let many: Vec<ListedEntry> = (0..MAX_LISTED_ENTRIES + 10)
        .map(|i| file(&format!("f{i}"), 1))
        .collect();
    let mut c = listed(now, many);
    assert_eq!(c.lookup(now, &lstat("/d/f1")), Lookup::Pass);
    assert_eq!(c.lookup(now, &lstat("/d/none")), Lookup::Pass);
    // Past MAX_CACHED_ENTRIES over all directories, the oldest go.
    let mut c = DirMeta::new(TTL);
    let dirs = MAX_CACHED_ENTRIES / MAX_LISTED_ENTRIES + 1;
    for d in 0..dirs {
        let t = now + Duration::from_millis(u64::try_from(d).unwrap() * 100);
        let entries = (0..MAX_LISTED_ENTRIES)
            .map(|i| file(&format!("f{i}"), 1))
            .collect();
        let epoch = c.epoch();
        c.insert(
            t,
            &rp(&format!("/d{d}")),
            DirListing::Complete(entries),
            epoch,
        );
    }
    assert!(c.len() < dirs, "{}", c.len());
    assert!(!c.is_empty());
}

/// The path calls that change a file, each naming `/d/sub/x`.
fn path_changes() -> Vec<Request> {
    vec![
        Request::Open {
            path: rp("/d/sub/x"),
            flags: libc::O_WRONLY | libc::O_CREAT,
            mode: 0o644,
        },
        Request::Open {
            path: rp("/d/sub/x"),
            flags: libc::O_RDONLY | libc::O_TRUNC,
            mode: 0,
        },
        Request::Mkdir {
            path: rp("/d/sub/x"),
            mode: 0o755,
        },
        Request::Mknod {
            path: rp("/d/sub/x"),
            mode: libc::S_IFIFO | 0o644,
            dev: 0,
        },
        Request::Rmdir {
            path: rp("/d/sub/x"),
        },
        Request::Unlink {
            path: rp("/d/sub/x"),
        },
        Request::Symlink {
            target: b"t".to_vec(),
            path: rp("/d/sub/x"),
        },
        Request::Chmod {
            path: rp("/d/sub/x"),
            mode: 0o600,
            follow: true,
        },
        Request::Chown {
            path: rp("/d/sub/x"),
            uid: 1,
            gid: 1,
            follow: true,
        },
        Request::Utimens {
            path: rp("/d/sub/x"),
            times: [TimeUpdate::Now, TimeUpdate::Now],
            follow: true,
        },
        Request::Truncate {
            path: rp("/d/sub/x"),
            len: 0,
        },
        Request::Rename {
            from: rp("/d/sub/x"),
            to: rp("/d/sub/y"),
            flags: 0,
        },
        Request::Link {
            from: rp("/d/sub/x"),
            to: rp("/d/sub/y"),
            follow: false,
        },
        Request::SetXattr {
            target: XattrTarget::Path {
                path: rp("/d/sub/x"),
                follow: true,
            },
            name: b"user.a".to_vec(),
            value: b"1".to_vec(),
            flags: 0,
        },
        Request::RemoveXattr {
            target: XattrTarget::Path {
                path: rp("/d/sub/x"),
                follow: true,
            },
            name: b"user.a".to_vec(),
        },
    ]
}

/// The fd calls that change a file, each on handle 7 (`/d/sub/x`).
fn handle_changes() -> Vec<Request> {
    vec![
        Request::Write {
            handle: Handle(7),
            data: b"x".to_vec(),
        },
        Request::Pwrite {
            handle: Handle(7),
            data: b"x".to_vec(),
            offset: 0,
        },
        Request::Ftruncate {
            handle: Handle(7),
            len: 0,
        },
        Request::Fchmod {
            handle: Handle(7),
            mode: 0o600,
        },
        Request::Fchown {
            handle: Handle(7),
            uid: 1,
            gid: 1,
        },
        Request::Futimens {
            handle: Handle(7),
            times: [TimeUpdate::Now, TimeUpdate::Now],
        },
        Request::Fallocate {
            handle: Handle(7),
            mode: 0,
            offset: 0,
            len: 1,
        },
    ]
}

/// Every call that changes a file drops the listings it touched: its
/// directory's and that directory's parent's (whose entry for it changes).
#[test]
fn each_change_drops_the_listings_it_touches() {
    let now = Instant::now();
    let changes = path_changes().into_iter().chain(handle_changes());
    let path_of = |h: Handle| (h == Handle(7)).then(|| rp("/d/sub/x"));
    for change in changes {
        assert!(change.changes_files(), "{change:?}");
        let mut c = standard(now);
        let epoch = c.epoch();
        c.insert(
            now,
            &rp("/d/sub"),
            DirListing::Complete(vec![file("z", 1)]),
            epoch,
        );
        let epoch = c.epoch();
        c.insert(
            now,
            &rp("/other"),
            DirListing::Complete(vec![file("o", 1)]),
            epoch,
        );
        assert_eq!(c.len(), 3);
        c.invalidate(now, &change, path_of);
        // The touched directory and its parent.
        assert_eq!(
            c.lookup(now, &lstat("/d/sub/x")),
            Lookup::Fetch(rp("/d/sub")),
            "{change:?}"
        );
        assert_eq!(
            c.lookup(now, &lstat("/d/sub")),
            Lookup::Fetch(rp("/d")),
            "{change:?}"
        );
        // Another directory stays.
        assert_eq!(
            c.lookup(now, &lstat("/other/o")),
            answer_stat(1, libc::S_IFREG | 0o644),
            "{change:?}"
        );
    }
}

#[test]
fn a_negative_entry_goes_when_rscq_creates_the_name() {
    let now = Instant::now();
    let mut c = standard(now);
    assert_eq!(
        c.lookup(now, &lstat("/d/new")),
        Lookup::Answer(Err(Errno::ENOENT))
    );
    let create = Request::Open {
        path: rp("/d/new"),
        flags: libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        mode: 0o644,
    };
    c.invalidate(now, &create, no_handles);
    assert_eq!(c.lookup(now, &lstat("/d/new")), Lookup::Fetch(rp("/d")));
}

#[test]
fn a_renamed_or_removed_directory_drops_every_listing_below_it() {
    let now = Instant::now();
    let mut c = standard(now);
    for d in ["/d/sub", "/d/sub/deep"] {
        let epoch = c.epoch();
        c.insert(now, &rp(d), DirListing::Complete(vec![file("f", 1)]), epoch);
    }
    c.invalidate(
        now,
        &Request::Rename {
            from: rp("/d/sub"),
            to: rp("/d/moved"),
            flags: 0,
        },
        no_handles,
    );
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn changes_through_unknown_paths_or_handles_drop_everything() {
    let now = Instant::now();
    // A path whose directory is not known to be free of symlinks may be a
    // cached directory under another name.
    let mut c = standard(now);
    let epoch = c.epoch();
    c.insert(
        now,
        &rp("/e"),
        DirListing::Complete(vec![file("f", 1)]),
        epoch,
    );
    c.invalidate(
        now,
        &Request::Unlink {
            path: rp("/elsewhere/link-to-d/a"),
        },
        no_handles,
    );
    assert!(c.is_empty());
    // A handle rscq cannot name.
    let mut c = standard(now);
    c.invalidate(
        now,
        &Request::Write {
            handle: Handle(9),
            data: vec![1],
        },
        no_handles,
    );
    assert!(c.is_empty());
    // A path the server resolves (`..`).
    let mut c = standard(now);
    c.invalidate(
        now,
        &Request::Unlink {
            path: rp("/d/sub/../a"),
        },
        no_handles,
    );
    assert!(c.is_empty());
    // A change in a directory known to be real (a listed directory's
    // subdirectory) keeps unrelated listings.
    let mut c = standard(now);
    let epoch = c.epoch();
    c.insert(
        now,
        &rp("/e"),
        DirListing::Complete(vec![file("f", 1)]),
        epoch,
    );
    c.invalidate(
        now,
        &Request::Unlink {
            path: rp("/d/sub/x"),
        },
        no_handles,
    );
    assert_eq!(c.len(), 1);
    assert_eq!(
        c.lookup(now, &lstat("/e/f")),
        answer_stat(1, libc::S_IFREG | 0o644)
    );
}

#[test]
fn hard_links_are_dropped_by_any_change() {
    let now = Instant::now();
    let mut c = DirMeta::new(TTL);
    let mut linked = file("h", 1);
    if let Ok(s) = linked.lstat.as_mut() {
        s.nlink = 2;
    }
    let epoch = c.epoch();
    c.insert(now, &rp("/h"), DirListing::Complete(vec![linked]), epoch);
    let epoch = c.epoch();
    c.insert(
        now,
        &rp("/d"),
        DirListing::Complete(vec![file("a", 1)]),
        epoch,
    );
    c.invalidate(
        now,
        &Request::Truncate {
            path: rp("/d/a"),
            len: 0,
        },
        no_handles,
    );
    assert!(c.is_empty(), "{c:?}");
}

#[test]
fn a_second_miss_while_the_listing_is_on_its_way_goes_alone() {
    let now = Instant::now();
    let mut c = DirMeta::new(TTL);
    assert_eq!(c.lookup(now, &lstat("/d/a")), Lookup::Fetch(rp("/d")));
    assert_eq!(c.lookup(now, &lstat("/d/b")), Lookup::Pass);
    c.fetch_failed(&rp("/d"));
    assert_eq!(c.lookup(now, &lstat("/d/b")), Lookup::Fetch(rp("/d")));
    let epoch = c.epoch();
    c.insert(
        now,
        &rp("/d"),
        DirListing::Complete(vec![file("a", 1)]),
        epoch,
    );
    assert_eq!(
        c.lookup(now, &lstat("/d/b")),
        Lookup::Answer(Err(Errno::ENOENT))
    );
}

mod through_engine;
