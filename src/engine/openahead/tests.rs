//! Tests of the open-ahead predictions and claims on plain values. Tests
//! only.

use std::time::{Duration, Instant};

use super::*;
use crate::errno::Errno;

fn rp(s: &str) -> RemotePath {
    RemotePath(s.as_bytes().to_vec())
}

fn me() -> Credentials {
    Credentials {
        fsuid: 1000,
        fsgid: 1000,
        ..Credentials::default()
    }
}

fn files(names: &[&str]) -> Vec<(Vec<u8>, Kind)> {
    names
        .iter()
        .map(|n| (n.as_bytes().to_vec(), Kind::SmallFile))
        .collect()
}

fn sent_paths(ahead: &mut OpenAhead) -> Vec<String> {
    ahead
        .take_sends()
        .into_iter()
        .map(|r| String::from_utf8(r.path.0).unwrap())
        .collect()
}

fn small_reply(handle: u64) -> Reply {
    Reply::OpenedRead {
        handle: Handle(handle),
        stat: Stat {
            mode: libc::S_IFREG | 0o644,
            size: 1,
            ..Stat::default()
        },
        data: b"x".to_vec(),
    }
}

const RO: i32 = libc::O_RDONLY;

#[test]
fn one_open_in_a_directory_opens_nothing_ahead_the_second_does() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["c", "a", "b", "d", "e"]));
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    assert!(a.take_sends().is_empty(), "one open is no pattern");
    a.opened(&rp("/d/c"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/d", "/d/e"], "in the names' order");
    assert_eq!(a.len(), 2);
}

#[test]
fn an_open_of_the_first_entry_in_either_order_is_a_pattern_at_once() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["c", "a", "b"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/b", "/d/c"], "a glob's first name");
    a.listed(b"/e", files(&["z", "x", "y"]));
    a.opened(&rp("/e/z"), Kind::SmallFile, &me());
    assert_eq!(
        sent_paths(&mut a),
        ["/e/x", "/e/y"],
        "a walker's first entry"
    );
}

#[test]
fn a_walker_following_the_listing_gets_the_listing_s_order() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["k", "q", "b", "z", "a", "m"]));
    a.opened(&rp("/d/q"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/z", "/d/a", "/d/m"]);
}

#[test]
fn only_entries_of_the_opened_kind_and_never_those_opened_are_opened_ahead() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(
        b"/d",
        vec![
            (b"a".to_vec(), Kind::Dir),
            (b"b".to_vec(), Kind::SmallFile),
            (b"c".to_vec(), Kind::Dir),
            (b"d".to_vec(), Kind::Dir),
        ],
    );
    a.opened(&rp("/d/d"), Kind::Dir, &me());
    a.opened(&rp("/d/a"), Kind::Dir, &me());
    assert_eq!(sent_paths(&mut a), ["/d/c"]);
}

/// The program opens the first `n` entries of `dir` (listed by
/// [`hundred_files`]) in order; what was sent ahead.
fn walk(a: &mut OpenAhead, dir: &str, n: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for i in 0..n {
        a.opened(&rp(&format!("{dir}/f{i:03}")), Kind::SmallFile, &me());
        sent.extend(sent_paths(a));
    }
    sent
}

fn hundred_files() -> Vec<(Vec<u8>, Kind)> {
    let names: Vec<String> = (0..100).map(|i| format!("f{i:03}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    files(&refs)
}

#[test]
fn the_first_opens_ahead_are_few_and_each_followed_open_doubles_them() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", hundred_files());
    let first = walk(&mut a, "/d", 1);
    assert_eq!(first.len(), FIRST_WINDOW, "{first:?}");
    assert_eq!(first.first().map(String::as_str), Some("/d/f001"));
    // The program took f001 (claim removes it): the window is 8.
    assert_eq!(
        a.claim(Instant::now(), &rp("/d/f001"), RO, &me()),
        Claim::OnTheWay
    );
    a.on_reply(Instant::now(), &rp("/d/f001"), Ok(small_reply(1)));
    assert!(matches!(
        a.claim(Instant::now(), &rp("/d/f001"), RO, &me()),
        Claim::Ready { .. }
    ));
    a.opened(&rp("/d/f001"), Kind::SmallFile, &me());
    assert_eq!(
        sent_paths(&mut a),
        ["/d/f005", "/d/f006", "/d/f007", "/d/f008", "/d/f009"]
    );
    assert_eq!(a.len(), 8);
}

#[test]
fn an_open_off_the_predicted_order_does_not_grow_the_window() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", hundred_files());
    assert_eq!(walk(&mut a, "/d", 1).len(), FIRST_WINDOW);
    // A jump: f050 is not the next name after f000.
    a.opened(&rp("/d/f050"), Kind::SmallFile, &me());
    assert!(
        sent_paths(&mut a).is_empty(),
        "the window of {FIRST_WINDOW} is full"
    );
}

#[test]
fn at_most_max_ahead_are_held_or_on_their_way_and_fewer_of_one_directory() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    for dir in ["/d", "/e", "/f"] {
        a.listed(dir.as_bytes(), hundred_files());
    }
    let sent = walk(&mut a, "/d", 5);
    assert_eq!(sent.len(), MAX_AHEAD_PER_DIR);
    assert_eq!(sent.first().map(String::as_str), Some("/d/f001"));
    a.opened(&rp("/d/f005"), Kind::SmallFile, &me());
    assert!(
        a.take_sends().is_empty(),
        "the directory's share is on its way"
    );
    assert_eq!(walk(&mut a, "/e", 5).len(), MAX_AHEAD_PER_DIR);
    assert!(walk(&mut a, "/f", 5).is_empty(), "{MAX_AHEAD} in all");
    assert_eq!(a.len(), MAX_AHEAD);
}

/// The program takes `path` from ahead (its reply came) and opens it.
fn take(a: &mut OpenAhead, path: &str) {
    let now = Instant::now();
    a.on_reply(now, &rp(path), Ok(small_reply(1)));
    assert!(matches!(
        a.claim(now, &rp(path), RO, &me()),
        Claim::Ready { .. }
    ));
    a.opened(&rp(path), Kind::SmallFile, &me());
}

#[test]
fn a_listing_rscq_fetched_mid_walk_goes_on_with_the_walk() {
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&names));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/b", "/d/c", "/d/d", "/d/e"]);
    take(&mut a, "/d/b");
    assert_eq!(sent_paths(&mut a), ["/d/f", "/d/g", "/d/h", "/d/i", "/d/j"]);
    // A dirmeta fetch lists /d again (its TTL ran out) while the program
    // is at "b": the walk goes on, its window with it.
    a.listed_behind(b"/d", files(&names));
    take(&mut a, "/d/c");
    assert_eq!(sent_paths(&mut a), ["/d/k", "/d/l"]);
    // The program's own new listing is a new walk: "a" may come again.
    a.listed(b"/d", files(&names));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/b", "/d/c"]);
}

#[test]
fn a_reply_answers_one_open_of_the_same_caller_within_the_ttl() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["_", "a", "b", "c"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    let _ = a.take_sends();
    assert_eq!(a.claim(now, &rp("/d/c"), RO, &me()), Claim::OnTheWay);
    a.on_reply(now, &rp("/d/c"), Ok(small_reply(9)));
    let other = Credentials { fsuid: 0, ..me() };
    assert_eq!(
        a.claim(now, &rp("/d/c"), RO, &other),
        Claim::Nothing,
        "another caller's rights are not the opener's"
    );
    assert_eq!(
        a.claim(now, &rp("/d/c"), libc::O_RDWR, &me()),
        Claim::Nothing,
        "a writer opens the file itself"
    );
    assert_eq!(
        a.claim(now, &rp("/d/c"), RO | libc::O_CLOEXEC, &me()),
        Claim::Ready {
            fetched: now,
            reply: Box::new(small_reply(9))
        }
    );
    assert_eq!(a.claim(now, &rp("/d/c"), RO, &me()), Claim::Nothing, "once");
    assert!(a.take_closes().is_empty());
}

#[test]
fn an_expired_reply_is_closed_not_taken() {
    let now = Instant::now();
    let ttl = Duration::from_secs(1);
    let mut a = OpenAhead::new(ttl);
    a.listed(b"/d", files(&["_", "a", "b", "c", "d"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    a.on_reply(now, &rp("/d/c"), Ok(small_reply(3)));
    a.on_reply(now, &rp("/d/d"), Ok(small_reply(4)));
    let later = now + ttl + Duration::from_millis(1);
    assert_eq!(a.claim(later, &rp("/d/c"), RO, &me()), Claim::Nothing);
    a.expire(later);
    let mut closed = a.take_closes();
    closed.sort_by_key(|h| h.0);
    assert_eq!(closed, [Handle(3), Handle(4)]);
    assert!(a.is_empty());
}

#[test]
fn a_change_drops_what_is_held_and_what_is_on_its_way() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["_", "a", "b", "c", "d"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    a.on_reply(now, &rp("/d/c"), Ok(small_reply(3)));
    a.drop_all();
    assert_eq!(a.take_closes(), [Handle(3)]);
    assert_eq!(a.claim(now, &rp("/d/c"), RO, &me()), Claim::Nothing);
    assert_eq!(
        a.claim(now, &rp("/d/d"), RO, &me()),
        Claim::Nothing,
        "an open on its way during a change may have seen the file before it"
    );
    a.on_reply(now, &rp("/d/d"), Ok(small_reply(4)));
    assert_eq!(a.take_closes(), [Handle(4)]);
    assert!(a.is_empty());
}

#[test]
fn a_failed_open_ahead_leaves_the_program_s_open_to_the_server() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["_", "a", "b", "c"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    a.on_reply(now, &rp("/d/c"), Err(Errno::EACCES));
    assert_eq!(a.claim(now, &rp("/d/c"), RO, &me()), Claim::Nothing);
    assert!(a.is_empty() && a.take_closes().is_empty());
}

#[test]
fn a_reply_nobody_asked_for_is_closed() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.on_reply(now, &rp("/d/x"), Ok(small_reply(7)));
    assert_eq!(a.take_closes(), [Handle(7)]);
}

#[test]
fn only_read_only_opens_that_change_nothing_take_a_reply() {
    for (flags, ok) in [
        (RO, true),
        (
            RO | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            true,
        ),
        (RO | libc::O_DIRECTORY, false),
        (RO | libc::O_TRUNC, false),
        (RO | libc::O_CREAT, false),
        (RO | libc::O_PATH, false),
        (RO | libc::O_APPEND, false),
        (libc::O_WRONLY, false),
        (libc::O_RDWR, false),
    ] {
        assert_eq!(takes(flags, Kind::SmallFile), ok, "{flags:#o}");
    }
    assert!(takes(RO | libc::O_DIRECTORY | libc::O_CLOEXEC, Kind::Dir));
}

#[test]
fn listings_kept_are_bounded() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    for i in 0..=MAX_LISTINGS {
        a.listed(format!("/d{i}").as_bytes(), files(&["_", "a", "b", "c"]));
    }
    // The first listing is gone: nothing is predicted from it.
    a.opened(&rp("/d0/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d0/b"), Kind::SmallFile, &me());
    assert!(a.take_sends().is_empty());
    a.opened(&rp("/d1/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d1/b"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d1/c"]);
}

#[test]
fn a_new_listing_is_a_new_walk() {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["_", "a", "b", "c"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/c"]);
    a.on_reply(Instant::now(), &rp("/d/c"), Err(Errno::EACCES));
    a.opened(&rp("/d/c"), Kind::SmallFile, &me());
    a.listed(b"/d", files(&["_", "a", "b", "c"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/c"], "opened in the walk before");
}

#[test]
fn an_entry_that_is_no_longer_what_was_listed_is_closed_not_taken() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["_", "a", "b", "c"]));
    a.opened(&rp("/d/a"), Kind::SmallFile, &me());
    a.opened(&rp("/d/b"), Kind::SmallFile, &me());
    let fifo = Reply::Opened {
        handle: Handle(5),
        stat: Stat {
            mode: libc::S_IFIFO | 0o644,
            ..Stat::default()
        },
    };
    a.on_reply(now, &rp("/d/c"), Ok(fifo));
    assert_eq!(a.take_closes(), [Handle(5)]);
    assert_eq!(a.claim(now, &rp("/d/c"), RO, &me()), Claim::Nothing);
    assert_eq!(
        flags_of(Kind::SmallFile) & libc::O_NONBLOCK,
        libc::O_NONBLOCK
    );
}

#[test]
fn a_directory_named_with_a_trailing_slash_or_dot_is_taken_a_file_is_not() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(
        b"/d/./",
        vec![
            (b"_".to_vec(), Kind::Dir),
            (b"a".to_vec(), Kind::Dir),
            (b"b".to_vec(), Kind::Dir),
            (b"f".to_vec(), Kind::SmallFile),
            (b"g".to_vec(), Kind::SmallFile),
        ],
    );
    a.opened(&rp("/d/_/"), Kind::Dir, &me());
    assert_eq!(sent_paths(&mut a), ["/d/a", "/d/b"]);
    a.on_reply(now, &rp("/d/b"), Ok(dir_reply(8)));
    let dir_flags = RO | libc::O_DIRECTORY;
    assert!(matches!(
        a.claim(now, &rp("/d/b/."), dir_flags, &me()),
        Claim::Ready { .. }
    ));
    a.opened(&rp("/d/f"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/g"]);
    a.on_reply(now, &rp("/d/g"), Ok(small_reply(9)));
    assert_eq!(
        a.claim(now, &rp("/d/g/"), RO, &me()),
        Claim::Nothing,
        "a file named as a directory is ENOTDIR, the server's to say"
    );
}

fn dir_reply(handle: u64) -> Reply {
    Reply::OpenedDir(Box::new(crate::proto::OpenedDir {
        handle: Handle(handle),
        stat: Stat {
            mode: libc::S_IFDIR | 0o755,
            ..Stat::default()
        },
        entries: vec![],
        complete: true,
    }))
}

/// Holds replies for `/d/a/x`, `/d/b` and `/e/c` (the first two of /d/a
/// and /d, the last of /e), opened ahead.
fn held_in_three_places(now: Instant) -> OpenAhead {
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d/a", files(&["w", "x"]));
    a.opened(&rp("/d/a/w"), Kind::SmallFile, &me());
    a.listed(
        b"/d",
        vec![(b"_".to_vec(), Kind::Dir), (b"b".to_vec(), Kind::Dir)],
    );
    a.opened(&rp("/d/_"), Kind::Dir, &me());
    a.listed(b"/e", files(&["_", "c"]));
    a.opened(&rp("/e/_"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/d/a/x", "/d/b", "/e/c"]);
    a.on_reply(now, &rp("/d/a/x"), Ok(small_reply(1)));
    a.on_reply(now, &rp("/d/b"), Ok(dir_reply(2)));
    a.on_reply(now, &rp("/e/c"), Ok(small_reply(3)));
    a
}

fn sorted_closes(a: &mut OpenAhead) -> Vec<u64> {
    let mut closes: Vec<u64> = a.take_closes().into_iter().map(|h| h.0).collect();
    closes.sort_unstable();
    closes
}

#[test]
fn a_change_drops_what_it_names_what_is_below_and_the_listings_above() {
    let now = Instant::now();
    let mut a = held_in_three_places(now);
    a.drop_touching(&[b"/e/other".to_vec()]);
    assert_eq!(
        sorted_closes(&mut a),
        Vec::<u64>::new(),
        "/e/c is another file"
    );
    // A file in /d/a changes /d/a's listing and /d's (/d/a's mtime).
    let mut a = held_in_three_places(now);
    a.drop_touching(&[b"/d/a/new".to_vec()]);
    assert_eq!(sorted_closes(&mut a), Vec::<u64>::new());
    assert_eq!(a.len(), 3, "no listing of /d/a or /d was held");
    a.drop_touching(&[b"/d/b/new".to_vec()]);
    assert_eq!(sorted_closes(&mut a), [2], "the listing of /d/b");
    a.drop_touching(&[b"/d".to_vec()]);
    assert_eq!(sorted_closes(&mut a), [1], "below a changed directory");
    assert_eq!(a.len(), 1);
    a.drop_touching(&[b"/e/./c".to_vec()]);
    assert_eq!(sorted_closes(&mut a), [3], "a path with dots drops all");
}

#[test]
fn a_change_of_unknown_paths_drops_everything() {
    let now = Instant::now();
    let mut a = held_in_three_places(now);
    a.drop_all();
    assert_eq!(sorted_closes(&mut a), [1, 2, 3]);
}

#[test]
fn a_file_with_several_names_is_never_held() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/d", files(&["_", "a"]));
    a.opened(&rp("/d/_"), Kind::SmallFile, &me());
    let linked = Reply::OpenedRead {
        handle: Handle(4),
        stat: Stat {
            mode: libc::S_IFREG | 0o644,
            nlink: 2,
            ..Stat::default()
        },
        data: vec![],
    };
    a.on_reply(now, &rp("/d/a"), Ok(linked));
    assert_eq!(a.take_closes(), [Handle(4)]);
    assert_eq!(a.claim(now, &rp("/d/a"), RO, &me()), Claim::Nothing);
}

#[test]
fn a_reopen_for_writing_and_a_copy_name_the_file_they_write() {
    let path_of = |h: Handle| (h.0 == 7).then(|| rp("/d/open"));
    let copy = Request::CopyRange {
        from: Handle(8),
        from_offset: None,
        to: Handle(7),
        to_offset: None,
        len: 10,
    };
    assert_eq!(
        touched_paths(&copy, path_of),
        Some(vec![b"/d/open".to_vec()])
    );
    let reopen = Request::Reopen {
        handle: Handle(9),
        flags: libc::O_RDWR,
    };
    assert_eq!(touched_paths(&reopen, path_of), None);
}

#[test]
fn dot_and_empty_names_inside_a_path_name_the_same_entry() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    // `find .` in a remote cwd lists /t/d; `cat ./d/b` opens /t/./d/b.
    a.listed(b"/t/d", files(&["a", "b", "c"]));
    a.opened(&rp("/t/./d/a"), Kind::SmallFile, &me());
    assert_eq!(sent_paths(&mut a), ["/t/d/b", "/t/d/c"]);
    a.on_reply(now, &rp("/t/d/b"), Ok(small_reply(2)));
    assert!(matches!(
        a.claim(now, &rp("/t/./d//b"), RO, &me()),
        Claim::Ready { .. }
    ));
    // A change spelled with dots drops what it touches, and only that.
    a.on_reply(now, &rp("/t/d/c"), Ok(small_reply(3)));
    a.drop_touching(&[b"/t/./d/./c".to_vec()]);
    assert_eq!(a.take_closes(), [Handle(3)]);
    assert_eq!(a.claim(now, &rp("/t/d/c"), RO, &me()), Claim::Nothing);
}

#[test]
fn a_path_through_dotdot_is_not_taken_for_its_text() {
    let now = Instant::now();
    let mut a = OpenAhead::new(Duration::from_secs(1));
    a.listed(b"/t/d", files(&["a", "b", "c"]));
    a.opened(&rp("/t/d/a"), Kind::SmallFile, &me());
    let _ = a.take_sends();
    a.on_reply(now, &rp("/t/d/b"), Ok(small_reply(2)));
    // /t/l may be a symlink: /t/l/../d/b need not be /t/d/b.
    assert_eq!(a.claim(now, &rp("/t/l/../d/b"), RO, &me()), Claim::Nothing);
}
