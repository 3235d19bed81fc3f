use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::*;

fn region() -> Vec<AtomicU64> {
    (0..REGION_BYTES / 8).map(|_| AtomicU64::new(0)).collect()
}

fn stat_bytes(fill: u8) -> (Vec<u8>, Vec<u8>) {
    (vec![fill; STAT_BYTES], vec![fill; STATX_BYTES])
}

fn offer<'a>(path: &'a [u8], stat: &'a (Vec<u8>, Vec<u8>), expires_ns: u64) -> Offer<'a> {
    Offer {
        expires_ns,
        path,
        stat: Some(StatAnswer::Bytes {
            stat: &stat.0,
            statx: &stat.1,
        }),
        is_link: false,
        link: None,
        xattr_errnos: [Some(61), None, Some(95)],
    }
}

#[test]
fn an_offered_entry_is_found_whole_and_others_are_not() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let st = stat_bytes(7);
    assert!(t.offer(10, &offer(b"/r/a", &st, 100)));
    let f = lookup(&words, b"/r/a").expect("offered");
    assert_eq!(
        (f.stat.as_slice(), f.statx.as_slice()),
        (&st.0[..], &st.1[..])
    );
    assert_eq!(f.shape >> 32, HAS_STAT | HAS_XATTR | (HAS_XATTR << 2));
    assert_eq!(f.errnos, (61 << 16) | (95 << 48));
    assert!(fresh(&f, 100) && !fresh(&f, 101));
    assert_eq!(lookup(&words, b"/r/b"), None);
    assert_eq!(lookup(&words, b"/r/a/"), None);
    assert_eq!(t.len(), 1);
}

#[test]
fn each_answer_is_claimed_once_and_the_engine_sees_the_claim() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let st = stat_bytes(1);
    t.offer(0, &offer(b"/r/a", &st, 100));
    let f = lookup(&words, b"/r/a").unwrap();
    assert!(claim(&words, &f, USED_STAT));
    assert!(
        !claim(&words, &f, USED_STAT),
        "a second stat must not be answered"
    );
    assert!(claim(&words, &f, USED_XATTR << 2));
    assert_eq!(t.withdraw(b"/r/a"), USED_STAT | (USED_XATTR << 2));
    assert_eq!(lookup(&words, b"/r/a"), None);
    assert_eq!(t.withdraw(b"/r/a"), 0);
    // A claim on what was withdrawn meanwhile is refused.
    t.offer(0, &offer(b"/r/a", &st, 100));
    let f = lookup(&words, b"/r/a").unwrap();
    t.withdraw(b"/r/a");
    assert!(!claim(&words, &f, USED_STAT));
}

#[test]
fn a_new_offer_of_a_path_has_fresh_uses() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let st = stat_bytes(1);
    t.offer(0, &offer(b"/r/a", &st, 100));
    let f = lookup(&words, b"/r/a").unwrap();
    assert!(claim(&words, &f, USED_STAT));
    let st2 = stat_bytes(2);
    t.offer(0, &offer(b"/r/a", &st2, 200));
    let g = lookup(&words, b"/r/a").unwrap();
    assert_ne!(f.seq, g.seq);
    assert_eq!(g.stat, st2.0);
    assert!(claim(&words, &g, USED_STAT));
    assert_eq!(t.len(), 1);
}

#[test]
fn the_table_is_bounded_and_reuses_slots_long_expired() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let st = stat_bytes(3);
    let paths: Vec<Vec<u8>> = (0..SLOTS + 500)
        .map(|i| format!("/r/f{i}").into_bytes())
        .collect();
    let placed = paths
        .iter()
        .filter(|p| t.offer(0, &offer(p, &st, 100)))
        .count();
    assert!(placed <= SLOTS && placed > SLOTS / 2, "{placed}");
    assert_eq!(t.len(), placed);
    // Once their TTL is long over, the slots take new paths.
    let late = 100 + EVICT_AFTER_NS + 1;
    assert!(t.offer(late, &offer(b"/r/new", &st, late + 100)));
    assert!(lookup(&words, b"/r/new").is_some());
    let long = vec![b'a'; PATH_CAP + 1];
    assert!(!t.offer(0, &offer(&long, &st, 100)));
}

#[test]
fn withdraw_all_empties_the_table() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let st = stat_bytes(3);
    for p in [&b"/r/a"[..], b"/r/b", b"/r/c"] {
        t.offer(0, &offer(p, &st, 100));
    }
    t.withdraw_all();
    assert!(t.is_empty());
    for p in [&b"/r/a"[..], b"/r/b", b"/r/c"] {
        assert_eq!(lookup(&words, p), None);
    }
}

#[test]
fn a_symlink_carries_its_target_and_a_too_long_one_is_left_out() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let mut o = Offer {
        expires_ns: 100,
        path: b"/r/l",
        stat: Some(StatAnswer::Errno(13)),
        is_link: true,
        link: Some(b"target"),
        xattr_errnos: [None; XATTRS],
    };
    t.offer(0, &o);
    let f = lookup(&words, b"/r/l").unwrap();
    assert_eq!(f.link, b"target");
    assert_eq!(f.shape >> 32, HAS_STAT | IS_LINK | HAS_LINK);
    assert_eq!(f.errnos & 0xffff, 13);
    let long = vec![b'x'; LINK_CAP + 1];
    o.link = Some(&long);
    t.offer(0, &o);
    let f = lookup(&words, b"/r/l").unwrap();
    assert_eq!(f.shape >> 32, HAS_STAT | IS_LINK);
}

/// Readers racing one writer that flips a slot between two contents never
/// see a mix of the two.
#[test]
fn readers_never_see_a_torn_slot() {
    let words = region();
    let mut t = Table::new(words.as_slice()).unwrap();
    let (a, b) = (stat_bytes(0xaa), stat_bytes(0x55));
    t.offer(0, &offer(b"/r/x", &a, u64::MAX));
    let stop = AtomicBool::new(false);
    // The writer goes on until the readers have looked often enough,
    // however the threads are scheduled (a loaded CI machine may run the
    // whole first 20,000 flips before a reader starts).
    let looked = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(f) = lookup(&words, b"/r/x") {
                            let first = f.stat[0];
                            assert!(f.stat.iter().all(|&x| x == first), "torn stat");
                            assert!(f.statx.iter().all(|&x| x == first), "torn statx");
                            seen += 1;
                            looked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut i = 0u64;
        while i < 20_000 || (looked.load(Ordering::Relaxed) < 3_000 && i < 200_000_000) {
            let st = if i.is_multiple_of(2) { &b } else { &a };
            t.offer(0, &offer(b"/r/x", st, u64::MAX));
            i += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let seen: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(seen >= 3_000, "the readers looked {seen} times only");
    });
}

/// Many threads claiming one answer while the engine withdraws it: the
/// answer is given at most once in all, counting the engine's own.
#[test]
fn one_answer_is_given_once_among_racing_claims_and_a_withdrawal() {
    for _ in 0..200 {
        let words = region();
        let mut t = Table::new(words.as_slice()).unwrap();
        let st = stat_bytes(1);
        t.offer(0, &offer(b"/r/a", &st, u64::MAX));
        let given = AtomicU64::new(0);
        let taken_by_program = std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    if let Some(f) = lookup(&words, b"/r/a")
                        && claim(&words, &f, USED_STAT)
                    {
                        given.fetch_add(1, Ordering::SeqCst);
                    }
                });
            }
            t.withdraw(b"/r/a")
        });
        let by_library = given.load(Ordering::SeqCst);
        assert!(by_library <= 1);
        // The engine answers only when it saw no claim: never both.
        if by_library == 1 {
            assert_eq!(taken_by_program & USED_STAT, USED_STAT);
        }
    }
}

#[test]
fn the_library_uses_the_same_layout() {
    let c = include_str!("../answers.h");
    let define = |name: &str| -> u64 {
        let line = c
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("preload.c has no {name}"));
        let v = line
            .split_whitespace()
            .nth(2)
            .unwrap()
            .trim_end_matches("UL");
        if let Some(hex) = v.strip_prefix("0x") {
            u64::from_str_radix(hex.trim_end_matches("ULL"), 16).unwrap()
        } else {
            v.parse().unwrap()
        }
    };
    assert_eq!(define("SHM_MAGIC"), MAGIC);
    assert_eq!(define("SHM_SLOTS"), SLOTS as u64);
    assert_eq!(define("SHM_SLOT_WORDS"), SLOT_WORDS as u64);
    assert_eq!(define("SHM_HEADER_WORDS"), HEADER_WORDS as u64);
    assert_eq!(define("SHM_MAX_PROBES"), MAX_PROBES as u64);
    assert_eq!(define("SHM_PATH_CAP"), PATH_CAP as u64);
    assert_eq!(define("SHM_LINK_CAP"), LINK_CAP as u64);
    assert_eq!(define("SHM_TABLE_BYTES"), TABLE_BYTES as u64);
    assert_eq!(define("SHM_CLAIMS_BYTES"), CLAIMS_BYTES as u64);
    assert_eq!(define("SHM_CLAIMS_FIRST_WORD"), CLAIMS_FIRST_WORD as u64);
    assert_eq!(define("SHM_W_PATH"), W_PATH as u64);
    assert_eq!(define("SHM_W_STAT"), W_STAT as u64);
    assert_eq!(define("SHM_W_STATX"), W_STATX as u64);
    assert_eq!(define("SHM_W_LINK"), W_LINK as u64);
    assert_eq!(c.matches("ANSWERS_VAR_NAME \"").count(), 1);
    assert!(c.contains(&format!("\"{ANSWERS_VAR}\"")));
}
