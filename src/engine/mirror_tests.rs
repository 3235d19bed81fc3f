//! The statcache's [`Mirror`] (the fast path's answers region), through
//! [`FileEngine`]: what is offered, with which TTL, what a change
//! withdraws, and how the program's own uses and the engine's are kept to
//! one in all. Tests only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tests::{all, listed, meta, rp};
use super::*;

/// What one offered entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Offered {
    expires: Instant,
    lstat: bool,
    link: bool,
    xattrs: usize,
}

#[derive(Debug, Default)]
struct Log {
    offered: HashMap<Vec<u8>, Offered>,
    withdrawals: usize,
    cleared: usize,
    /// What the program gave itself, told at the next withdrawal.
    program_took: HashMap<Vec<u8>, Taken>,
}

#[derive(Debug, Clone, Default)]
struct Fake(Arc<Mutex<Log>>);

impl Mirror for Fake {
    fn offer(&mut self, path: &[u8], answers: &EntryAnswers<'_>) {
        self.0.lock().unwrap().offered.insert(
            path.to_vec(),
            Offered {
                expires: answers.expires,
                lstat: answers.lstat.is_some(),
                link: answers.link.is_some(),
                xattrs: answers.xattrs.iter().filter(|x| x.is_some()).count(),
            },
        );
    }

    fn withdraw(&mut self, path: &[u8]) -> Taken {
        let mut log = self.0.lock().unwrap();
        log.withdrawals += 1;
        log.offered.remove(path);
        log.program_took.remove(path).unwrap_or_default()
    }

    fn withdraw_all(&mut self) {
        let mut log = self.0.lock().unwrap();
        log.offered.clear();
        log.cleared += 1;
    }
}

fn engine() -> (FileEngine, Fake) {
    let fake = Fake::default();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    e.set_answers_mirror(Box::new(fake.clone()));
    (e, fake)
}

fn lstat(path: &str) -> Request {
    Request::Stat {
        path: rp(path),
        follow: false,
    }
}

#[test]
fn a_listing_is_offered_with_its_ttl_and_a_change_withdraws_its_directory() {
    let now = Instant::now();
    let (mut e, fake) = engine();
    let _ = listed(
        &mut e,
        now,
        &[
            ("a", meta(libc::S_IFREG | 0o644, None)),
            ("l", meta(libc::S_IFLNK | 0o777, Some("a"))),
        ],
    );
    {
        let log = fake.0.lock().unwrap();
        assert_eq!(
            log.offered.get(b"/d/a".as_slice()),
            Some(&Offered {
                expires: now + DEFAULT_TTL,
                lstat: true,
                link: false,
                xattrs: 2,
            })
        );
        assert!(log.offered[b"/d/l".as_slice()].link);
    }
    let chmod = Request::Chmod {
        path: rp("/d/a"),
        mode: 0o600,
        follow: true,
    };
    assert!(matches!(e.on_request(now, chmod), Action::Send(..)));
    assert!(
        fake.0.lock().unwrap().offered.is_empty(),
        "the change's directory is withdrawn before the change is sent"
    );
}

#[test]
fn an_answer_the_program_gave_is_not_given_again_by_the_engine() {
    let now = Instant::now();
    let (mut e, fake) = engine();
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG | 0o644, None))]);
    fake.0.lock().unwrap().program_took.insert(
        b"/d/a".to_vec(),
        Taken {
            lstat: true,
            ..Taken::default()
        },
    );
    assert!(
        matches!(e.on_request(now, lstat("/d/a")), Action::Send(..)),
        "the program used the lstat already"
    );
    // What is left (the xattrs) is offered again, without the lstat.
    let log = fake.0.lock().unwrap();
    let left = &log.offered[b"/d/a".as_slice()];
    assert!(!left.lstat);
    assert_eq!(left.xattrs, 2);
}

#[test]
fn the_engines_own_answer_is_taken_out_of_the_offer() {
    let now = Instant::now();
    let (mut e, fake) = engine();
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG | 0o644, None))]);
    assert!(matches!(
        e.on_request(now, lstat("/d/a")),
        Action::Answer(Ok(Reply::Stat(_)))
    ));
    assert!(!fake.0.lock().unwrap().offered[b"/d/a".as_slice()].lstat);
    // Used up on both sides: the entry goes once nothing is left.
    for name in crate::proto::PREFETCHED_XATTRS.iter().take(2) {
        let get = Request::GetXattr {
            target: crate::proto::XattrTarget::Path {
                path: rp("/d/a"),
                follow: false,
            },
            name: name.to_vec(),
            size: 0,
        };
        assert!(matches!(e.on_request(now, get), Action::Answer(Err(_))));
    }
    assert!(
        !fake
            .0
            .lock()
            .unwrap()
            .offered
            .contains_key(b"/d/a".as_slice())
    );
}

#[test]
fn an_expired_entry_is_withdrawn_and_a_relink_withdraws_everything() {
    let now = Instant::now();
    let (mut e, fake) = engine();
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG | 0o644, None))]);
    let later = now + DEFAULT_TTL + Duration::from_millis(1);
    assert!(matches!(
        e.on_request(later, lstat("/d/a")),
        Action::Send(..)
    ));
    assert!(fake.0.lock().unwrap().offered.is_empty());
    let _ = listed(&mut e, later, &[("b", meta(libc::S_IFREG | 0o644, None))]);
    let rename = Request::Rename {
        from: rp("/elsewhere/x"),
        to: rp("/elsewhere/y"),
        flags: 0,
    };
    assert!(matches!(e.on_request(later, rename), Action::Send(..)));
    let log = fake.0.lock().unwrap();
    assert!(log.offered.is_empty() && log.cleared >= 1);
}
