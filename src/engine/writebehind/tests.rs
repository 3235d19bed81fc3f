//! Write-behind on plain values: a fake server answers the flushes.
//! Tests only.

use super::*;

const A: Handle = Handle(1);
const B: Handle = Handle(2);
const C: Handle = Handle(3);

fn wb(flush_bytes: usize, max_behind: usize) -> WriteBehind {
    let mut w = WriteBehind::new(WriteBehindConfig {
        flush_bytes,
        max_behind,
    });
    w.opened(A, (0, 1, 10), RemotePath(b"/a".to_vec()));
    w.opened(B, (0, 1, 10), RemotePath(b"/a".to_vec()));
    w.opened(C, (0, 1, 11), RemotePath(b"/c".to_vec()));
    w
}

/// Answers every flush in the outbox as a server writing into `file`.
fn serve(w: &mut WriteBehind, file: &mut Vec<u8>) -> usize {
    let mut sent = 0;
    loop {
        let flushes = w.take_flushes();
        if flushes.is_empty() {
            return sent;
        }
        for f in flushes {
            sent += 1;
            let at = usize::try_from(f.offset).unwrap();
            if file.len() < at + f.data.len() {
                file.resize(at + f.data.len(), 0);
            }
            file[at..at + f.data.len()].copy_from_slice(&f.data);
            let n = u64::try_from(f.data.len()).unwrap();
            w.on_flushed(WriteBehind::token(&f), Ok(n));
        }
    }
}

#[test]
fn sequential_small_writes_become_few_flushes() {
    let mut w = wb(4096, 1 << 20);
    let mut file = Vec::new();
    let mut expected = Vec::new();
    let mut sent = 0;
    for i in 0..100u8 {
        let block = vec![i; 512];
        let at = i64::try_from(expected.len()).unwrap();
        assert_eq!(w.write(A, at, &block), Write::Held);
        expected.extend_from_slice(&block);
        sent += serve(&mut w, &mut file);
    }
    assert!(w.barrier(Scope::Handle(A)), "the rest is in flight");
    sent += serve(&mut w, &mut file);
    assert_eq!(file, expected);
    assert_eq!(sent, 13, "51200 bytes in runs of 4096");
    assert!(w.is_idle());
}

#[test]
fn a_continuing_write_does_not_wait_for_the_flush_before_it() {
    let mut w = wb(4, 1 << 20);
    let mut file = Vec::new();
    assert_eq!(w.write(A, 0, b"1234"), Write::Held);
    assert_eq!(w.take_flushes().len(), 1);
    assert_eq!(w.write(A, 4, b"5678"), Write::Held);
    let second = w.take_flushes();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].offset, 4);
    for f in second {
        w.on_flushed(WriteBehind::token(&f), Ok(4));
    }
    let _ = serve(&mut w, &mut file);
    assert!(w.barrier(Scope::All), "the first is still in flight");
}

#[test]
fn calls_on_the_same_file_wait_and_others_do_not() {
    let mut w = wb(1 << 20, 1 << 20);
    assert_eq!(w.write(A, 0, b"abc"), Write::Held);
    // Another file is not held back.
    assert!(!w.barrier(Scope::FileOf(C)));
    assert!(w.take_flushes().is_empty());
    // The same file through another handle: the run goes, then wait.
    assert!(w.barrier(Scope::FileOf(B)));
    let flushes = w.take_flushes();
    assert_eq!(
        flushes,
        vec![Flush {
            handle: A,
            offset: 0,
            data: b"abc".to_vec(),
            append: false,
        }]
    );
    assert!(w.barrier(Scope::All), "still in flight");
    w.on_flushed(WriteBehind::token(&flushes[0]), Ok(3));
    assert!(!w.barrier(Scope::All));
    assert!(w.is_idle());
}

#[test]
fn a_failed_flush_surfaces_once_on_the_next_call() {
    let mut w = wb(1 << 20, 1 << 20);
    assert_eq!(w.write(A, 0, &[7; 100]), Write::Held);
    assert!(w.barrier(Scope::Handle(A)));
    let f = w.take_flushes().remove(0);
    // Short, then no space: the rest is retried and fails.
    w.on_flushed(WriteBehind::token(&f), Ok(60));
    let rest = w.take_flushes().remove(0);
    assert_eq!((rest.offset, rest.data.len()), (60, 40));
    assert!(w.barrier(Scope::Handle(A)));
    w.on_flushed(WriteBehind::token(&rest), Err(Errno(libc::ENOSPC)));
    assert!(!w.barrier(Scope::Handle(A)));
    assert_eq!(w.write(A, 100, b"x"), Write::Failed(Errno(libc::ENOSPC)));
    assert_eq!(w.take_error(A), None);
    assert!(w.is_idle());
}

#[test]
fn fsync_or_close_get_the_error_and_an_untold_one_is_lost_loudly() {
    let mut w = wb(1 << 20, 1 << 20);
    let _ = w.write(A, 0, b"x");
    let _ = w.write(C, 0, b"y");
    assert!(w.barrier(Scope::All));
    for f in w.take_flushes() {
        w.on_flushed(WriteBehind::token(&f), Err(Errno(libc::EDQUOT)));
    }
    assert_eq!(w.take_error(A), Some(Errno(libc::EDQUOT)));
    w.closed(A);
    assert!(w.take_lost().is_empty(), "A's error was reported");
    w.closed(C);
    assert_eq!(
        w.take_lost(),
        vec![LostWrite {
            path: Some(RemotePath(b"/c".to_vec())),
            error: Errno(libc::EDQUOT)
        }]
    );
}

#[test]
fn a_jump_waits_for_its_file_in_flight_and_keeps_the_order() {
    let mut w = wb(8, 1 << 20);
    let mut file = Vec::new();
    assert_eq!(w.write(A, 0, b"12345678"), Write::Held);
    // The full run is in flight; a rewrite of its start must wait.
    assert_eq!(w.write(A, 0, b"ab"), Write::Wait);
    let _ = serve(&mut w, &mut file);
    assert_eq!(w.write(A, 0, b"ab"), Write::Held);
    assert!(w.barrier(Scope::FileOf(B)));
    let _ = serve(&mut w, &mut file);
    assert_eq!(file, b"ab345678");
}

#[test]
fn writes_through_two_handles_of_one_file_keep_their_order() {
    let mut w = wb(1 << 20, 1 << 20);
    let mut file = Vec::new();
    assert_eq!(w.write(A, 0, b"aaaa"), Write::Held);
    assert_eq!(w.write(B, 1, b"b"), Write::Wait);
    let _ = serve(&mut w, &mut file);
    assert_eq!(w.write(B, 1, b"b"), Write::Held);
    assert!(w.barrier(Scope::All));
    let _ = serve(&mut w, &mut file);
    assert_eq!(file, b"abaa");
}

#[test]
fn too_much_behind_makes_the_writer_wait() {
    let mut w = wb(1 << 20, 10);
    let mut file = Vec::new();
    assert_eq!(w.write(A, 0, b"123456"), Write::Held);
    assert_eq!(w.write(A, 6, b"789012"), Write::Wait);
    let _ = serve(&mut w, &mut file);
    assert_eq!(w.write(A, 6, b"789012"), Write::Held);
    assert!(w.barrier(Scope::Handle(A)));
    let _ = serve(&mut w, &mut file);
    assert_eq!(file, b"123456789012");
}

/// Answers the flushes in the outbox as a server would, appends at the
/// end of `file`; returns how many there were.
fn serve_once(w: &mut WriteBehind, file: &mut Vec<u8>) -> usize {
    let flushes = w.take_flushes();
    for f in &flushes {
        let at = if f.append {
            file.len()
        } else {
            usize::try_from(f.offset).unwrap()
        };
        if file.len() < at + f.data.len() {
            file.resize(at + f.data.len(), 0);
        }
        file[at..at + f.data.len()].copy_from_slice(&f.data);
        let n = u64::try_from(f.data.len()).unwrap();
        w.on_flushed(WriteBehind::token(f), Ok(n));
    }
    flushes.len()
}

/// Retries `write` as the driver does: after each `Wait`, the flushes
/// go and are answered.
fn until_held(
    w: &mut WriteBehind,
    file: &mut Vec<u8>,
    mut write: impl FnMut(&mut WriteBehind) -> Write,
) {
    for _ in 0..100 {
        match write(w) {
            Write::Held => return,
            Write::Wait => {
                let _ = serve_once(w, file);
            }
            Write::Failed(e) => panic!("write failed: {e:?}"),
        }
    }
    panic!("a write waited for ever");
}

#[test]
fn appends_gather_into_one_write_at_the_end() {
    let mut w = wb(1 << 20, 1 << 20);
    let mut file = b"already there\n".to_vec();
    for line in [b"one\n".as_slice(), b"two\n", b"three\n"] {
        assert_eq!(w.append(A, line), Write::Held);
    }
    assert!(w.take_flushes().is_empty(), "held");
    assert!(w.barrier(Scope::FileOf(B)), "a call on the file waits");
    let flushes = w.take_flushes();
    assert_eq!(flushes.len(), 1);
    assert!(flushes[0].append);
    assert_eq!(flushes[0].data, b"one\ntwo\nthree\n");
    w.on_flushed(WriteBehind::token(&flushes[0]), Ok(14));
    file.extend_from_slice(&flushes[0].data);
    assert!(!w.barrier(Scope::All));
    assert!(w.is_idle());
    assert_eq!(file, b"already there\none\ntwo\nthree\n");
}

#[test]
fn one_append_flush_of_a_handle_is_in_flight_at_a_time() {
    let mut w = wb(4, 1 << 20);
    let mut file = Vec::new();
    assert_eq!(w.append(A, b"aaaa"), Write::Held);
    let first = w.take_flushes();
    assert_eq!(first.len(), 1, "a full run goes");
    // The next ones are held while it is in flight, even when full.
    assert_eq!(w.append(A, b"bbbb"), Write::Held);
    assert_eq!(w.append(A, b"cc"), Write::Held);
    assert!(w.take_flushes().is_empty());
    assert!(w.barrier(Scope::Handle(A)));
    assert!(w.take_flushes().is_empty(), "still one at a time");
    // Answered: the held run goes at once, whole.
    file.extend_from_slice(&first[0].data);
    w.on_flushed(WriteBehind::token(&first[0]), Ok(4));
    let _ = serve_once(&mut w, &mut file);
    assert!(!w.barrier(Scope::All));
    assert_eq!(file, b"aaaabbbbcc");
    // A short append sends its rest, at the end again.
    assert_eq!(w.append(A, b"dddddd"), Write::Held);
    let f = w.take_flushes().remove(0);
    w.on_flushed(WriteBehind::token(&f), Ok(2));
    let rest = w.take_flushes().remove(0);
    assert!(rest.append);
    assert_eq!(rest.data, b"dddd");
}

#[test]
fn appends_through_two_handles_land_in_program_order() {
    let mut w = wb(1 << 20, 1 << 20);
    let mut file = Vec::new();
    for i in 0..6u8 {
        let (h, byte) = if i % 2 == 0 { (A, b'a') } else { (B, b'b') };
        until_held(&mut w, &mut file, |w| w.append(h, &[byte, b'0' + i]));
    }
    while w.barrier(Scope::All) {
        let _ = serve_once(&mut w, &mut file);
    }
    assert_eq!(file, b"a0b1a2b3a4b5");
}

#[test]
fn writes_at_an_offset_and_appends_to_one_file_keep_their_order() {
    let mut w = wb(1 << 20, 1 << 20);
    let mut file = Vec::new();
    // B writes past the end, then A appends after it, then B again.
    until_held(&mut w, &mut file, |w| w.write(B, 0, b"12345"));
    until_held(&mut w, &mut file, |w| w.append(A, b"end"));
    assert_eq!(w.write(B, 5, b"x"), Write::Wait, "the append goes first");
    until_held(&mut w, &mut file, |w| w.write(B, 5, b"x"));
    while w.barrier(Scope::All) {
        let _ = serve_once(&mut w, &mut file);
    }
    assert_eq!(file, b"12345xnd");
    // A new append run waits for another handle's flush in flight.
    until_held(&mut w, &mut file, |w| w.write(B, 8, &[b'y'; 4]));
    assert!(w.barrier(Scope::Handle(B)));
    assert_eq!(w.append(A, b"!"), Write::Wait);
    let _ = serve_once(&mut w, &mut file);
    assert_eq!(w.append(A, b"!"), Write::Held);
    while w.barrier(Scope::All) {
        let _ = serve_once(&mut w, &mut file);
    }
    assert_eq!(file, b"12345xndyyyy!");
}

#[test]
fn held_appends_go_on_the_timer_one_at_a_time() {
    let mut w = wb(1 << 20, 1 << 20);
    let mut file = Vec::new();
    assert!(!w.send_appends(), "nothing held");
    assert_eq!(w.append(A, b"first\n"), Write::Held);
    assert_eq!(w.write(C, 0, b"not an append"), Write::Held);
    assert!(!w.send_appends(), "sent");
    let sent = w.take_flushes();
    assert_eq!(sent.len(), 1, "only the append goes");
    assert_eq!(w.append(A, b"second\n"), Write::Held);
    assert!(w.send_appends(), "held behind the one in flight");
    assert!(w.take_flushes().is_empty());
    file.extend_from_slice(&sent[0].data);
    w.on_flushed(WriteBehind::token(&sent[0]), Ok(6));
    assert!(!w.send_appends());
    let _ = serve_once(&mut w, &mut file);
    assert_eq!(file, b"first\nsecond\n");
}

#[test]
fn a_failed_append_surfaces_on_the_next_one() {
    let mut w = wb(1 << 20, 1 << 20);
    assert_eq!(w.append(A, b"x"), Write::Held);
    assert!(w.barrier(Scope::Handle(A)));
    let f = w.take_flushes().remove(0);
    w.on_flushed(WriteBehind::token(&f), Err(Errno(libc::EFBIG)));
    assert_eq!(w.append(A, b"y"), Write::Failed(Errno(libc::EFBIG)));
    assert_eq!(w.append(A, b"y"), Write::Held);
}

#[test]
fn the_end_of_the_run_reports_errors_of_open_handles() {
    let mut w = wb(1 << 20, 1 << 20);
    let _ = w.write(C, 0, b"z");
    assert!(w.barrier(Scope::All));
    for f in w.take_flushes() {
        w.on_flushed(WriteBehind::token(&f), Err(Errno::EIO));
    }
    let lost = w.finish();
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].error, Errno::EIO);
}
