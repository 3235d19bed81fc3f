//! The fast path: path calls that resolve outside every mount run in the
//! program's own thread, with no ptrace stop.
//!
//! A ptrace stop costs 15–90 µs here (two threads, often two idle-vCPU
//! wake-ups); a path call that stays local should cost what it costs
//! natively. Under ptrace a signal is a stop too, so the call cannot be
//! trapped in-process (seccomp `RET_TRAP`, syscall user dispatch). Instead,
//! as rr's syscall buffer does, a small library rscq preloads into
//! dynamically linked programs (`preload.c`, built by `build.rs`) defines
//! the libc path functions, judges each path as the planner would, and
//! makes the local ones through one syscall instruction at a fixed address
//! that rscq's seccomp filters let through untraced ([`STUB_SYSCALL_IP`]).
//! Every other call it makes as libc would, and the filter traps it as
//! before. Static binaries, Go programs and calls made without libc keep
//! the stops, with identical results.
//!
//! The tracer tells the library two facts it cannot see, as flags in the
//! data page, sticky until the next exec: that the program's cwd is a
//! remote directory ([`FLAG_CWD_MAY_BE_REMOTE`]), and that its fd calls
//! stop ([`FLAG_FD_CALLS_STOP`]). Beside the flags it keeps the process's
//! cwd as the planner sees it ([`told_cwd`]), so that paths relative to a
//! remote cwd can find the answers rscq holds, and relative paths after
//! the program came back from a mount are judged in the program again.
//!
//! Answers rscq already holds (a listing's prefetched `lstat`s, symlink
//! targets and absent xattrs) are offered to the library in a shared
//! region ([`shm`]), so those calls on remote paths cost no stop either.
//!
//! This module holds the constants both sides share, the library's bytes,
//! the encoding of the routed paths and the layout of the answers region;
//! it does no I/O.

pub mod shm;

/// The stub page (the library maps it `MAP_FIXED_NOREPLACE`): its first
/// bytes are `syscall; ret`.
pub const STUB_PAGE: u64 = 0x7100_0000;
/// The address after the stub's syscall instruction: what seccomp sees as
/// `instruction_pointer` for a call the library makes on the fast path.
pub const STUB_SYSCALL_IP: u64 = STUB_PAGE + 2;
/// The page after the stub: the magic, then the flags the tracer sets.
pub const DATA_PAGE: u64 = STUB_PAGE + 4096;
/// "RSCQFAST", little-endian, at [`DATA_PAGE`] once the library is ready.
pub const MAGIC: u64 = 0x5453_4146_5143_5352;
/// Offset of the flags word in the data page.
pub const FLAGS_OFFSET: u64 = 8;
/// The program's cwd may be a remote directory: relative paths from the
/// cwd take the slow path.
pub const FLAG_CWD_MAY_BE_REMOTE: u32 = 1;
/// The process's fd calls stop (it holds or held a remote file, so the fd
/// filter is in): `opendir` and `fopen` are left to libc, whose own open
/// and `fstat` stop fewer times than the library's open plus
/// `fdopendir`/`fdopen` (an `fstat` and one or two `fcntl`) would.
pub const FLAG_FD_CALLS_STOP: u32 = 2;

/// Offset of the told cwd's sequence word: odd while the tracer writes
/// the block after it, so that the library (a seqlock reader) can tell a
/// torn copy from a whole one.
pub const CWD_SEQ_OFFSET: u64 = 16;
/// Offset of the block [`told_cwd`] encodes, after the sequence word.
pub const CWD_BLOCK_OFFSET: u64 = 24;
/// Room for the told cwd's path in the data page.
pub const CWD_PATH_CAP: usize = 4096 - 32;

/// The cwd block the tracer writes at [`CWD_BLOCK_OFFSET`] for process
/// `owner`: its process id (the page is shared by a `vfork` child, whose
/// cwd is its own, so the library trusts the block only in the process it
/// names), the path's length, and the path. `None` (the cwd is the
/// kernel's, and the planner routes no part of it) is length 0. A path
/// that does not fit names no process (owner 0): the library then judges
/// by its flags alone, as before it was told.
pub fn told_cwd(owner: i32, remote_cwd: Option<&[u8]>) -> Vec<u8> {
    let path = remote_cwd.unwrap_or_default();
    let fits = path.len() <= CWD_PATH_CAP && !path.contains(&0);
    let owner = if fits { owner } else { 0 };
    let path = if fits { path } else { &[] };
    let len = u32::try_from(path.len()).unwrap_or(0);
    let mut out = Vec::with_capacity(8 + path.len());
    out.extend_from_slice(&owner.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(path);
    out
}

/// The environment variable the library reads its routed paths from.
pub const CONFIG_VAR: &str = "RSCQ_FASTPATH";
/// The file name the library is written under, in the run's private
/// directory.
pub const LIBRARY_NAME: &str = "fastpath.so";

/// The preload library, built from `preload.c`.
pub static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/librscq_fastpath.so"));

/// The value of [`CONFIG_VAR`]: version `1`, then each routed absolute
/// path (every mount's local path and every system file rscq replaces) in
/// hex after a `:`. Hex, because a path may hold any byte but NUL.
/// `None` when there are too many for the library (it has room for 64
/// paths and 16 KiB): the run then goes without the fast path.
pub fn config_value<'a, I>(routed: I) -> Option<String>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    const MAX_PATHS: usize = 64;
    const MAX_BYTES: usize = 16 * 1024;
    let mut out = String::from("1");
    let (mut count, mut bytes) = (0, 0);
    for path in routed {
        if path.first() != Some(&b'/') || path.contains(&0) {
            return None;
        }
        count += 1;
        bytes += path.len() + 1;
        if count > MAX_PATHS || bytes > MAX_BYTES {
            return None;
        }
        out.push(':');
        for b in path {
            out.push_str(&format!("{b:02x}"));
        }
    }
    Some(out)
}

/// `LD_PRELOAD` with the library first, keeping the program's own list.
pub fn preload_value(library: &[u8], existing: Option<&[u8]>) -> Vec<u8> {
    let mut out = library.to_vec();
    if let Some(rest) = existing.filter(|r| !r.is_empty()) {
        out.push(b':');
        out.extend_from_slice(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_paths_travel_as_hex() {
        let v = config_value([b"/mnt/r".as_slice(), b"/etc/hosts".as_slice()]).unwrap();
        assert_eq!(v, "1:2f6d6e742f72:2f6574632f686f737473");
        assert_eq!(config_value(std::iter::empty()).unwrap(), "1");
    }

    #[test]
    fn odd_bytes_are_carried_and_relative_or_nul_paths_refused() {
        assert_eq!(
            config_value([b"/a:b\n".as_slice()]).unwrap(),
            "1:2f613a620a"
        );
        assert_eq!(config_value([b"rel".as_slice()]), None);
        assert_eq!(config_value([b"/a\0b".as_slice()]), None);
    }

    #[test]
    fn too_many_paths_turn_the_fast_path_off() {
        let many: Vec<Vec<u8>> = (0..65).map(|i| format!("/m{i}").into_bytes()).collect();
        assert_eq!(config_value(many.iter().map(Vec::as_slice)), None);
        assert!(config_value(many[..64].iter().map(Vec::as_slice)).is_some());
    }

    #[test]
    fn the_program_keeps_its_own_preloads_after_ours() {
        assert_eq!(preload_value(b"/r/fastpath.so", None), b"/r/fastpath.so");
        assert_eq!(preload_value(b"/r/f.so", Some(b"")), b"/r/f.so");
        assert_eq!(
            preload_value(b"/r/f.so", Some(b"libx.so")),
            b"/r/f.so:libx.so"
        );
    }

    #[test]
    fn the_told_cwd_names_its_process_and_says_local_with_no_path() {
        assert_eq!(
            told_cwd(7, Some(b"/mnt/r")),
            [7, 0, 0, 0, 6, 0, 0, 0, b'/', b'm', b'n', b't', b'/', b'r']
        );
        assert_eq!(told_cwd(7, None), [7, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_cwd_the_page_cannot_hold_is_told_as_no_one_s() {
        let long = vec![b'a'; CWD_PATH_CAP + 1];
        assert_eq!(told_cwd(7, Some(&long)), [0; 8]);
        let fits = vec![b'a'; CWD_PATH_CAP];
        assert_eq!(told_cwd(7, Some(&fits)).len(), 8 + CWD_PATH_CAP);
        assert_eq!(
            usize::try_from(CWD_BLOCK_OFFSET).unwrap() + 8 + CWD_PATH_CAP,
            4096
        );
    }

    #[test]
    fn the_library_is_an_elf_shared_object() {
        assert_eq!(&LIBRARY[..4], b"\x7fELF");
        // e_type ET_DYN
        assert_eq!(LIBRARY[16], 3);
    }
}
