//! The answers region: statcache answers the engine holds, offered to the
//! preload library so a program's `stat`/`lstat`/`statx`, `readlink` and
//! prefetched-xattr calls on a remote path are answered in its own thread.
//!
//! One shared memory file per run (a memfd rscq makes; the library maps it
//! again in every process after each exec, by the `/proc` path in
//! [`ANSWERS_VAR`]). It holds a fixed table of [`SLOTS`] slots of
//! [`SLOT_WORDS`] words, found by a hash of the entry's absolute local path
//! and probed [`MAX_PROBES`] slots on; the program maps the table
//! read-only. Bounded: at most [`SLOTS`] entries, a path of at most
//! [`PATH_CAP`] bytes and a symlink target of at most [`LINK_CAP`]; what does
//! not fit is not offered, and the call stops as before.
//!
//! Each slot is a seqlock with one writer (the engine, under its lock): an
//! odd sequence number while it is written, a new even one after, so a
//! reader never takes a torn `struct stat`. The one-use rule is kept with a
//! claim word per slot in a second, writable part: the library sets the
//! bit of the answer it gives with a compare-and-swap tagged with the
//! slot's sequence number, and the engine, before it answers from its own
//! cache or drops an entry, withdraws the slot first and then reads the
//! claim ([`Table::withdraw`]): a claim made before the withdrawal is seen,
//! one made after finds the sequence number changed and the library takes
//! the slow path.
//!
//! Pure: the layout and the protocol over a slice of atomics; the memory
//! itself is made and mapped elsewhere (`crate::sys`). Must not decide
//! what is offered or when (the statcache does).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering, fence};

/// The environment variable that names the region for the library: a
/// `/proc/PID/fd/N` path.
pub const ANSWERS_VAR: &str = "RSCQ_FASTPATH_ANSWERS";

/// "RSCQANS1", little-endian: the region's first word once it is ready.
pub const MAGIC: u64 = 0x3153_4e41_5143_5352;
/// How many entries the table holds at most.
pub const SLOTS: usize = 4096;
/// Words per slot (1 KiB).
pub const SLOT_WORDS: usize = 128;
/// The header: one page (magic, geometry), so slots stay page-aligned.
pub const HEADER_WORDS: usize = 512;
/// How many slots from its hash an entry may sit in.
pub const MAX_PROBES: usize = 8;
/// The longest path offered, in bytes.
pub const PATH_CAP: usize = 256;
/// The longest symlink target offered, in bytes.
pub const LINK_CAP: usize = 256;
/// How many prefetched xattrs a slot carries (the order of
/// `proto::PREFETCHED_XATTRS`).
pub const XATTRS: usize = 3;

/// Bytes of the read-only part: the header and the slots.
pub const TABLE_BYTES: usize = (HEADER_WORDS + SLOTS * SLOT_WORDS) * 8;
/// Words before the claims in the writable part: the count of answers
/// the library gave, alone on its cache line.
pub const CLAIMS_FIRST_WORD: usize = 8;
/// Bytes of the writable part (claims), rounded up to whole pages.
pub const CLAIMS_BYTES: usize = ((CLAIMS_FIRST_WORD + SLOTS) * 8).div_ceil(4096) * 4096;
/// The region's size.
pub const REGION_BYTES: usize = TABLE_BYTES + CLAIMS_BYTES;

// Word offsets inside a slot.
const W_SEQ: usize = 0;
const W_HASH: usize = 1;
const W_EXPIRES: usize = 2;
/// Path length (bits 0–15), link length (16–31), [`Shape`] flags (32–).
const W_SHAPE: usize = 3;
/// The stat errno (bits 0–15), then each xattr's errno (16 bits each).
const W_ERRNOS: usize = 4;
const W_PATH: usize = 5;
const W_STAT: usize = W_PATH + PATH_CAP / 8;
const W_STATX: usize = W_STAT + STAT_BYTES / 8;
const W_LINK: usize = W_STATX + STATX_BYTES / 8;
const _: () = assert!(W_LINK + LINK_CAP / 8 <= SLOT_WORDS);

/// `sizeof(struct stat)` and `sizeof(struct statx)` on x86_64.
pub const STAT_BYTES: usize = 144;
pub const STATX_BYTES: usize = 256;

/// Shape flags: the slot holds an `lstat` answer (bytes, or an errno).
pub const HAS_STAT: u64 = 1;
/// The entry is a symlink (a following `stat` is not its `lstat`).
pub const IS_LINK: u64 = 2;
/// The slot holds the symlink's target.
pub const HAS_LINK: u64 = 4;
/// Xattr `i` is offered (its errno in [`W_ERRNOS`]): `HAS_XATTR << i`.
pub const HAS_XATTR: u64 = 8;

/// Claim bits: the `lstat` answer was given.
pub const USED_STAT: u64 = 1;
/// The symlink target was given.
pub const USED_LINK: u64 = 2;
/// Xattr `i`'s answer was given: `USED_XATTR << i`.
pub const USED_XATTR: u64 = 4;
/// Claim bits live below the sequence number in a claim word.
const CLAIM_SHIFT: u32 = 8;

/// The 64-bit FNV-1a hash of `path`, never 0 (0 marks an empty slot).
pub fn hash(path: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in path {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

/// An `lstat` answer to offer: the two layouts the tracer would write, or
/// the errno it would return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatAnswer<'a> {
    Bytes { stat: &'a [u8], statx: &'a [u8] },
    Errno(u16),
}

/// One entry to offer, under its absolute local path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer<'a> {
    /// `CLOCK_MONOTONIC` nanoseconds after which it answers nothing.
    pub expires_ns: u64,
    pub path: &'a [u8],
    pub stat: Option<StatAnswer<'a>>,
    pub is_link: bool,
    pub link: Option<&'a [u8]>,
    /// Each prefetched xattr whose answer is an errno (values are left to
    /// the slow path).
    pub xattr_errnos: [Option<u16>; XATTRS],
}

/// The writer's side of the region (`memory`, [`REGION_BYTES`] of words):
/// which slot holds which path, and the writes themselves. One per region,
/// used under one lock.
#[derive(Debug)]
pub struct Table<M> {
    memory: M,
    by_path: HashMap<Vec<u8>, usize>,
    /// Per slot: its path and expiry, when it holds one.
    held: Vec<Option<(Vec<u8>, u64)>>,
}

/// A slot whose entry expired this long ago may be given to another path:
/// by then no engine answer can be given from the entry either, whatever
/// thread's clock reading came first.
const EVICT_AFTER_NS: u64 = 1_000_000_000;

fn slot_base(i: usize) -> usize {
    HEADER_WORDS + i * SLOT_WORDS
}

fn claim_word(i: usize) -> usize {
    TABLE_BYTES / 8 + CLAIMS_FIRST_WORD + i
}

/// Little-endian bytes into words `at..`.
fn put_bytes(words: &[AtomicU64], at: usize, bytes: &[u8]) {
    for (k, chunk) in bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        words[at + k].store(u64::from_le_bytes(w), Ordering::Relaxed);
    }
}

fn get_bytes(words: &[AtomicU64], at: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    for k in 0..len.div_ceil(8) {
        out.extend_from_slice(&words[at + k].load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl<M: AsRef<[AtomicU64]>> Table<M> {
    /// Lays out an empty table in `memory` (all zero, [`REGION_BYTES`]
    /// long); `None` if it is not that long.
    pub fn new(memory: M) -> Option<Self> {
        let words = memory.as_ref();
        if words.len() * 8 != REGION_BYTES {
            return None;
        }
        words[1].store(SLOTS as u64, Ordering::Relaxed);
        words[2].store(SLOT_WORDS as u64, Ordering::Relaxed);
        words[0].store(MAGIC, Ordering::Release);
        Some(Self {
            memory,
            by_path: HashMap::new(),
            held: vec![None; SLOTS],
        })
    }

    /// The memory the table is laid out in.
    pub fn memory(&self) -> &M {
        &self.memory
    }

    fn words(&self) -> &[AtomicU64] {
        self.memory.as_ref()
    }

    /// How many answers the library gave from the region.
    pub fn answered(&self) -> u64 {
        self.words()[TABLE_BYTES / 8].load(Ordering::Relaxed)
    }

    /// How many entries are offered.
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// Offers `offer` (replacing what its path held, uses and all), at
    /// `now_ns`. False when it does not fit: too long a path, or every
    /// slot it may go to holds a live entry.
    pub fn offer(&mut self, now_ns: u64, offer: &Offer<'_>) -> bool {
        if offer.path.len() > PATH_CAP || offer.path.is_empty() {
            self.withdraw(offer.path);
            return false;
        }
        let h = hash(offer.path);
        let slot = match self.by_path.get(offer.path) {
            Some(&i) => i,
            None => match self.free_slot(now_ns, h) {
                Some(i) => i,
                None => return false,
            },
        };
        self.write(slot, h, offer);
        self.by_path.insert(offer.path.to_vec(), slot);
        self.held[slot] = Some((offer.path.to_vec(), offer.expires_ns));
        true
    }

    /// An empty slot among the entry's probes, or one whose entry expired
    /// long enough ago (its path forgotten).
    fn free_slot(&mut self, now_ns: u64, h: u64) -> Option<usize> {
        let start = usize::try_from(h % SLOTS as u64).unwrap_or(0);
        let probes = (0..MAX_PROBES).map(|p| (start + p) % SLOTS);
        let mut stale = None;
        for i in probes {
            match &self.held[i] {
                None => return Some(i),
                Some((_, expires)) if expires.saturating_add(EVICT_AFTER_NS) < now_ns => {
                    stale.get_or_insert(i);
                }
                Some(_) => {}
            }
        }
        let i = stale?;
        if let Some((path, _)) = self.held[i].take() {
            self.by_path.remove(&path);
        }
        Some(i)
    }

    fn write(&self, i: usize, h: u64, offer: &Offer<'_>) {
        let base = slot_base(i);
        let w = &self.words()[base..base + SLOT_WORDS];
        let seq = w[W_SEQ].load(Ordering::Relaxed);
        w[W_SEQ].store(seq | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let mut shape = offer.path.len() as u64;
        let mut errnos = 0u64;
        match offer.stat {
            Some(StatAnswer::Bytes { stat, statx }) => {
                shape |= HAS_STAT << 32;
                put_bytes(w, W_STAT, &stat[..STAT_BYTES.min(stat.len())]);
                put_bytes(w, W_STATX, &statx[..STATX_BYTES.min(statx.len())]);
            }
            Some(StatAnswer::Errno(e)) => {
                shape |= HAS_STAT << 32;
                errnos |= u64::from(e);
            }
            None => {}
        }
        if offer.is_link {
            shape |= IS_LINK << 32;
        }
        if let Some(link) = offer.link.filter(|l| l.len() <= LINK_CAP) {
            shape |= (HAS_LINK << 32) | ((link.len() as u64) << 16);
            put_bytes(w, W_LINK, link);
        }
        for (k, e) in offer.xattr_errnos.iter().enumerate() {
            if let Some(e) = e {
                shape |= (HAS_XATTR << k) << 32;
                errnos |= u64::from(*e) << (16 * (k + 1));
            }
        }
        put_bytes(w, W_PATH, offer.path);
        w[W_HASH].store(h, Ordering::Relaxed);
        w[W_EXPIRES].store(offer.expires_ns, Ordering::Relaxed);
        w[W_SHAPE].store(shape, Ordering::Relaxed);
        w[W_ERRNOS].store(errnos, Ordering::Relaxed);
        w[W_SEQ].store((seq | 1) + 1, Ordering::Release);
    }

    /// Takes `path` out of the region and says which of its answers the
    /// library gave ([`USED_STAT`] and the others), all 0 when it was not
    /// offered. The slot is marked changed before its claim is read, so a
    /// claim is either seen here or refused to the library.
    pub fn withdraw(&mut self, path: &[u8]) -> u64 {
        let Some(i) = self.by_path.remove(path) else {
            return 0;
        };
        self.held[i] = None;
        let words = self.memory.as_ref();
        let w = &words[slot_base(i)..slot_base(i) + SLOT_WORDS];
        let seq = w[W_SEQ].load(Ordering::Relaxed);
        w[W_SEQ].store(seq | 1, Ordering::SeqCst);
        let claim = words[claim_word(i)].load(Ordering::SeqCst);
        w[W_HASH].store(0, Ordering::Relaxed);
        w[W_SEQ].store((seq | 1) + 1, Ordering::Release);
        if claim >> CLAIM_SHIFT == seq {
            claim & ((1 << CLAIM_SHIFT) - 1)
        } else {
            0
        }
    }

    /// Takes every entry out.
    pub fn withdraw_all(&mut self) {
        let paths: Vec<Vec<u8>> = self.by_path.keys().cloned().collect();
        for path in paths {
            self.withdraw(&path);
        }
    }
}

/// What a reader found for one path: a consistent copy of its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub slot: usize,
    pub seq: u64,
    pub expires_ns: u64,
    pub shape: u64,
    pub errnos: u64,
    pub stat: Vec<u8>,
    pub statx: Vec<u8>,
    pub link: Vec<u8>,
}

/// The library's side, for tests and as its specification: the slot that
/// holds `path`, read under its seqlock (`preload.c: shm_find` does the
/// same).
pub fn lookup(words: &[AtomicU64], path: &[u8]) -> Option<Found> {
    if words.first()?.load(Ordering::Acquire) != MAGIC || path.len() > PATH_CAP {
        return None;
    }
    let h = hash(path);
    let start = usize::try_from(h % SLOTS as u64).unwrap_or(0);
    (0..MAX_PROBES).find_map(|p| {
        let i = (start + p) % SLOTS;
        let w = &words[slot_base(i)..slot_base(i) + SLOT_WORDS];
        let seq = w[W_SEQ].load(Ordering::Acquire);
        if seq & 1 == 1 || w[W_HASH].load(Ordering::Relaxed) != h {
            return None;
        }
        let shape = w[W_SHAPE].load(Ordering::Relaxed);
        let len = usize::try_from(shape & 0xffff).unwrap_or(0);
        let link_len = usize::try_from((shape >> 16) & 0xffff).unwrap_or(0);
        let found = Found {
            slot: i,
            seq,
            expires_ns: w[W_EXPIRES].load(Ordering::Relaxed),
            shape,
            errnos: w[W_ERRNOS].load(Ordering::Relaxed),
            stat: get_bytes(w, W_STAT, STAT_BYTES),
            statx: get_bytes(w, W_STATX, STATX_BYTES),
            link: get_bytes(w, W_LINK, link_len.min(LINK_CAP)),
        };
        let same_path = len == path.len() && get_bytes(w, W_PATH, len.min(PATH_CAP)) == path;
        fence(Ordering::Acquire);
        (w[W_SEQ].load(Ordering::Relaxed) == seq && same_path).then_some(found)
    })
}

/// The library's claim of answer `bit` of what it `found`: true when this
/// caller may give it (no one had, and the slot did not change meanwhile).
pub fn claim(words: &[AtomicU64], found: &Found, bit: u64) -> bool {
    let word = &words[claim_word(found.slot)];
    let mut current = word.load(Ordering::SeqCst);
    loop {
        let base = if current >> CLAIM_SHIFT == found.seq {
            current
        } else {
            found.seq << CLAIM_SHIFT
        };
        if base & bit != 0 {
            return false;
        }
        match word.compare_exchange(current, base | bit, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => break,
            Err(now) => current = now,
        }
    }
    words[slot_base(found.slot) + W_SEQ].load(Ordering::SeqCst) == found.seq
}

/// Whether `found` answers at `now_ns` (its TTL not over).
pub fn fresh(found: &Found, now_ns: u64) -> bool {
    now_ns <= found.expires_ns
}

#[cfg(test)]
mod tests;
