//! strace-like rendering of forwarded requests for `--trace`: the
//! routing of one request to its family's rendering ([`describe_as`]; each
//! family's `trace_args` lives in its syscall module, beside its planner),
//! the flags and values strace spells symbolically, shared by those
//! families, and the whole line ([`TraceLine`]).
//!
//! Pure: must not change what is forwarded, read the clock or do I/O; it
//! only renders values it is given.

use std::fmt::Write as _;
use std::time::Duration;

use crate::proto::{Handle, RemotePath, Request};
use crate::syscall::paths::MountTable;
use crate::syscall::{fs, locks, net};

mod copy;

pub use copy::CopyCall;

/// How many bytes of a data buffer `--trace` shows, as strace's `-s 32`.
pub const SHOWN_BYTES: usize = 32;

/// Quotes bytes the way strace does: printable ASCII as is, the rest escaped.
pub fn quote(bytes: &[u8], limit: usize) -> String {
    let mut out = String::from("\"");
    for &b in bytes.iter().take(limit) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    if bytes.len() > limit {
        out.push_str("...");
    }
    out
}

/// `flags` rendered from `names` as strace does (`A|B`), with any bits no
/// name covers in hex at the end; `zero` when no bit is set.
fn bits(flags: u64, names: &[(u64, &str)], zero: &str) -> String {
    let mut parts = Vec::new();
    let mut left = flags;
    for &(bit, name) in names {
        if bit != 0 && left & bit == bit {
            parts.push(name.to_string());
            left &= !bit;
        }
    }
    if left != 0 {
        parts.push(format!("{left:#x}"));
    }
    if parts.is_empty() {
        zero.to_string()
    } else {
        parts.join("|")
    }
}

/// An `int` flag word as the `u64` [`bits`] takes (its bit pattern).
fn word(flags: i32) -> u64 {
    u64::from(flags.cast_unsigned())
}

/// `open(2)` flags as strace spells them: the access mode, then the other
/// bits (`O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY`).
pub fn open_flags(flags: i32) -> String {
    let access = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        libc::O_RDWR => "O_RDWR",
        _ => "O_ACCMODE",
    };
    let rest = word(flags & !libc::O_ACCMODE);
    // Composite flags first, so that their parts are not named again.
    let names = [
        (word(libc::O_CREAT), "O_CREAT"),
        (word(libc::O_EXCL), "O_EXCL"),
        (word(libc::O_NOCTTY), "O_NOCTTY"),
        (word(libc::O_TRUNC), "O_TRUNC"),
        (word(libc::O_APPEND), "O_APPEND"),
        (word(libc::O_NONBLOCK), "O_NONBLOCK"),
        (word(libc::O_SYNC), "O_SYNC"),
        (word(libc::O_DSYNC), "O_DSYNC"),
        (word(libc::O_ASYNC), "O_ASYNC"),
        (word(libc::O_DIRECT), "O_DIRECT"),
        (word(libc::O_LARGEFILE), "O_LARGEFILE"),
        (word(libc::O_NOFOLLOW), "O_NOFOLLOW"),
        (word(libc::O_NOATIME), "O_NOATIME"),
        (word(libc::O_CLOEXEC), "O_CLOEXEC"),
        (word(libc::O_TMPFILE), "O_TMPFILE"),
        (word(libc::O_DIRECTORY), "O_DIRECTORY"),
        (word(libc::O_PATH), "O_PATH"),
    ];
    if rest == 0 {
        access.to_string()
    } else {
        format!("{access}|{}", bits(rest, &names, ""))
    }
}

/// Whether an open with `flags` takes a mode (strace shows it only then).
pub(in crate::syscall) fn takes_mode(flags: i32) -> bool {
    flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE
}

/// `access(2)` modes: `F_OK` or `R_OK|W_OK|X_OK`.
pub fn access_mode(mode: i32) -> String {
    let names = [
        (word(libc::R_OK), "R_OK"),
        (word(libc::W_OK), "W_OK"),
        (word(libc::X_OK), "X_OK"),
    ];
    bits(word(mode), &names, "F_OK")
}

/// The `*at` flag for a call that does or does not follow a final symlink.
pub(in crate::syscall) fn follow_flag(follow: bool) -> &'static str {
    if follow { "0" } else { "AT_SYMLINK_NOFOLLOW" }
}

/// A file mode as strace prints it (`0644`).
pub(in crate::syscall) fn mode(mode: u32) -> String {
    format!("0{mode:o}")
}

/// `lseek(2)`'s whence.
pub(in crate::syscall) fn whence(whence: i32) -> String {
    match whence {
        libc::SEEK_SET => "SEEK_SET".into(),
        libc::SEEK_CUR => "SEEK_CUR".into(),
        libc::SEEK_END => "SEEK_END".into(),
        libc::SEEK_DATA => "SEEK_DATA".into(),
        libc::SEEK_HOLE => "SEEK_HOLE".into(),
        other => other.to_string(),
    }
}

/// The errno of a failed call as strace shows it: `ENOENT (No such file or
/// directory)`, without Rust's `(os error 2)`.
pub fn errno_text(e: i32) -> String {
    let errno = nix::errno::Errno::from_raw(e);
    if errno == nix::errno::Errno::UnknownErrno {
        return format!("E{e} (Unknown error {e})");
    }
    format!("{errno:?} ({})", errno.desc())
}

/// A call's return value as strace shows it: the number, or `-1 ENAME
/// (text)` for an error.
pub fn ret_text(ret: i64) -> String {
    if ret < 0 && ret > -4096 {
        let e = i32::try_from(-ret).unwrap_or(libc::EIO);
        format!("-1 {}", errno_text(e))
    } else {
        ret.to_string()
    }
}

/// The time of day of `since_epoch` (UTC) as strace's `-tt` prints it:
/// `HH:MM:SS.uuuuuu`.
pub fn time_of_day(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs() % 86_400;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since_epoch.subsec_micros()
    )
}

/// What a traced call's return is known as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned {
    /// The value the program gets.
    Value(i64),
    /// Not known when the line is printed (a mapping's address, a call
    /// that then runs natively): strace's `?`.
    Unknown,
}

/// Where a traced call's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Took {
    /// A round trip to the server that took this long.
    Remote(Duration),
    /// Answered by rscq itself (a cache, a refusal): no round trip.
    Local,
}

/// One `--trace` line, in one field order always:
/// `[pid N] name(args) = ret <N us> (note)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceLine<'a> {
    pub tid: i32,
    pub name: &'a str,
    pub args: &'a str,
    pub ret: Returned,
    pub took: Took,
    pub note: Option<&'a str>,
    /// The remote a forwarded call went to, named only when a run has
    /// several.
    pub remote: Option<&'a str>,
}

impl std::fmt::Display for TraceLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[pid {}] ", self.tid)?;
        if let Some(remote) = self.remote {
            write!(f, "[{remote}] ")?;
        }
        write!(f, "{}({}) = ", self.name, self.args)?;
        match self.ret {
            Returned::Value(ret) => f.write_str(&ret_text(ret))?,
            Returned::Unknown => f.write_str("?")?,
        }
        match self.took {
            Took::Remote(rtt) => write!(f, " <{} us>", rtt.as_micros())?,
            Took::Local => f.write_str(" <local>")?,
        }
        if let Some(note) = self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

/// The arguments of a `read`/`pread64` line once its data came: the data
/// read, as strace shows it, after the fd (`3, 131072` becomes
/// `3, "abc"..., 131072`).
pub fn with_data_read(args: &str, data: &[u8]) -> String {
    match args.split_once(", ") {
        Some((fd, rest)) => format!("{fd}, {}, {rest}", quote(data, SHOWN_BYTES)),
        None => args.to_string(),
    }
}

/// What a request's rendering needs besides the request: the program's fd
/// number for the handle it names, the mounts that turn remote paths back
/// into the program's own, and for a copy the call as the program made it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shown<'a> {
    /// The program's fd for the request's (first) handle, when known.
    pub fd: Option<i32>,
    /// The mounts; without them paths show as the server's.
    pub mounts: Option<&'a MountTable>,
    /// The `sendfile`/`copy_file_range` a [`Request::CopyRange`] carries
    /// out, whose fds it shows; without it the copy shows rscq's handles.
    pub copy: Option<CopyCall>,
}

/// The arguments of `req` as `--trace` prints them, with remote handles as
/// `#N` and paths as the server's (see [`describe_as`]).
pub fn describe(req: &Request) -> String {
    describe_as(req, Shown::default())
}

/// The arguments of `req` as `--trace` prints them. The handle shows as the
/// program's fd when `shown` knows it (`#N`, rscq's remote handle, when
/// not); paths show as the program names them through its mounts (the
/// server's path when no mount maps it back). Each family of requests is
/// rendered by its own function; this match has no catch-all arm, so a new
/// request must be given one.
pub fn describe_as(req: &Request, shown: Shown<'_>) -> String {
    let shown = &shown;
    match req {
        Request::Open { .. }
        | Request::OpenPlus { .. }
        | Request::OpenRead { .. }
        | Request::Reopen { .. }
        | Request::Reattach { .. } => fs::open::trace_args(shown, req),
        Request::Close { .. }
        | Request::Read { .. }
        | Request::Pread { .. }
        | Request::Write { .. }
        | Request::Pwrite { .. }
        | Request::Lseek { .. }
        | Request::Fsync { .. }
        | Request::FlushWrites { .. }
        | Request::SetFlags { .. }
        | Request::Ftruncate { .. }
        | Request::Fallocate { .. }
        | Request::CopyRange { .. } => fs::io::trace_args(shown, req),
        Request::Getdents { .. } | Request::GetdentsPlus { .. } | Request::CheckDir { .. } => {
            fs::dirs::trace_args(shown, req)
        }
        Request::Fstat { .. }
        | Request::Fstatfs { .. }
        | Request::Stat { .. }
        | Request::StatPlus { .. }
        | Request::Access { .. }
        | Request::Statfs { .. } => fs::stat::trace_args(shown, req),
        Request::Fchmod { .. }
        | Request::Fchown { .. }
        | Request::Futimens { .. }
        | Request::Chmod { .. }
        | Request::Chown { .. }
        | Request::Utimens { .. }
        | Request::Truncate { .. } => fs::meta::trace_args(shown, req),
        Request::Readlink { .. }
        | Request::Unlink { .. }
        | Request::Mkdir { .. }
        | Request::Rmdir { .. }
        | Request::Mknod { .. }
        | Request::Rename { .. }
        | Request::Link { .. }
        | Request::LinkHandle { .. }
        | Request::Symlink { .. } => fs::names::trace_args(shown, req),
        Request::GetXattr { .. }
        | Request::ListXattr { .. }
        | Request::SetXattr { .. }
        | Request::RemoveXattr { .. } => fs::xattr::trace_args(shown, req),
        Request::Flock { .. }
        | Request::RecordLock { .. }
        | Request::ReleaseLocks { .. }
        | Request::CancelWait { .. } => locks::trace_args(shown, req),
        Request::TcpConnect { .. }
        | Request::TcpBind { .. }
        | Request::UdpBind { .. }
        | Request::TcpListen { .. }
        | Request::TcpUnbind { .. }
        | Request::TcpSetOption { .. }
        | Request::TcpGetInfo { .. } => net::trace_args(req),
        Request::Uname => String::new(),
        Request::ReadSystemFile { file } => quote(file.path().as_bytes(), usize::MAX),
        Request::LookupAndList { dir, lookup } => format!(
            "{}, +listing {}",
            describe_as(&lookup.clone().into_request(), *shown),
            shown.path(dir)
        ),
    }
}

impl Shown<'_> {
    /// A path as the program names it (through the mounts), quoted.
    pub fn path(&self, p: &RemotePath) -> String {
        match self.mounts.and_then(|m| m.to_local(&p.0)) {
            Some(local) => quote(&local, usize::MAX),
            None => quote(&p.0, usize::MAX),
        }
    }

    /// The request's handle: the program's fd when known, else `#N`.
    pub(in crate::syscall) fn h(&self, handle: &Handle) -> String {
        match self.fd {
            Some(fd) if fd >= 0 => fd.to_string(),
            _ => format!("#{}", handle.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_and_escaped() {
        let req = Request::Open {
            path: RemotePath(b"/a \"b\"\n\xff".to_vec()),
            flags: 0o101,
            mode: 0o644,
        };
        assert_eq!(
            describe(&req),
            r#""/a \"b\"\n\xff", O_WRONLY|O_CREAT, 0644"#
        );
    }

    #[test]
    fn open_flags_are_symbolic_in_straces_order() {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_DIRECTORY;
        assert_eq!(
            open_flags(flags),
            "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY"
        );
        assert_eq!(open_flags(libc::O_RDWR), "O_RDWR");
        assert_eq!(open_flags(libc::O_WRONLY | libc::O_SYNC), "O_WRONLY|O_SYNC");
        assert_eq!(
            open_flags(libc::O_RDWR | libc::O_TMPFILE),
            "O_RDWR|O_TMPFILE"
        );
        assert_eq!(open_flags(libc::O_RDONLY | 0o40000000), "O_RDONLY|0x800000");
        assert_eq!(access_mode(libc::F_OK), "F_OK");
        assert_eq!(access_mode(libc::R_OK | libc::X_OK), "R_OK|X_OK");
    }

    #[test]
    fn handles_show_as_the_programs_fd_and_paths_as_its_own() {
        let mounts = MountTable::new(vec![crate::syscall::paths::MountPoint {
            local: b"/remote".to_vec(),
            remote: b"/tmp/t3".to_vec(),
        }]);
        let shown = Shown {
            fd: Some(3),
            mounts: Some(&mounts),
            copy: None,
        };
        let open = Request::Open {
            path: RemotePath(b"/tmp/t3/d/".to_vec()),
            flags: libc::O_RDONLY | libc::O_DIRECTORY,
            mode: 0,
        };
        assert_eq!(
            describe_as(&open, shown),
            r#""/remote/d/", O_RDONLY|O_DIRECTORY"#
        );
        let stat = Request::Stat {
            path: RemotePath(b"/elsewhere".to_vec()),
            follow: false,
        };
        assert_eq!(
            describe_as(&stat, shown),
            r#""/elsewhere", AT_SYMLINK_NOFOLLOW"#
        );
        let read = Request::Read {
            handle: Handle(1),
            len: 131_072,
        };
        assert_eq!(describe_as(&read, shown), "3, 131072");
        assert_eq!(describe(&read), "#1, 131072");
        let close = Request::FlushWrites { handle: Handle(2) };
        assert_eq!(describe_as(&close, shown), "3, flush");
    }

    #[test]
    fn errors_are_named_without_rusts_suffix() {
        assert_eq!(ret_text(-2), "-1 ENOENT (No such file or directory)");
        assert_eq!(ret_text(-61), "-1 ENODATA (No data available)");
        assert_eq!(ret_text(4096), "4096");
    }

    #[test]
    fn every_line_has_one_field_order() {
        let mut line = TraceLine {
            tid: 7,
            name: "openat",
            args: r#""/r/a", O_RDONLY"#,
            ret: Returned::Value(3),
            took: Took::Remote(Duration::from_micros(608)),
            note: None,
            remote: None,
        };
        assert_eq!(
            line.to_string(),
            r#"[pid 7] openat("/r/a", O_RDONLY) = 3 <608 us>"#
        );
        line.ret = Returned::Value(-2);
        line.took = Took::Local;
        assert_eq!(
            line.to_string(),
            r#"[pid 7] openat("/r/a", O_RDONLY) = -1 ENOENT (No such file or directory) <local>"#
        );
        line.ret = Returned::Unknown;
        line.note = Some("then native");
        assert_eq!(
            line.to_string(),
            r#"[pid 7] openat("/r/a", O_RDONLY) = ? <local> (then native)"#
        );
    }

    #[test]
    fn time_of_day_is_straces_tt() {
        let t =
            Duration::from_secs(86_400 * 3 + 13 * 3600 + 5 * 60 + 9) + Duration::from_micros(42);
        assert_eq!(time_of_day(t), "13:05:09.000042");
    }

    #[test]
    fn data_read_goes_after_the_fd() {
        assert_eq!(
            with_data_read("3, 131072", b"abc\n"),
            r#"3, "abc\n", 131072"#
        );
        let long = with_data_read("3, 64, 0", &[b'y'; 40]);
        assert_eq!(long, format!("3, \"{}\"..., 64, 0", "y".repeat(32)));
    }

    #[test]
    fn data_is_cut_like_strace() {
        let req = Request::Write {
            handle: Handle(3),
            data: vec![b'x'; 40],
        };
        let text = describe(&req);
        assert!(text.starts_with("#3, \"xxxx"), "{text}");
        assert!(text.ends_with("\"..., 40"), "{text}");
    }
}
