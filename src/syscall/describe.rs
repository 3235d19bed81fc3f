//! strace-like rendering of forwarded requests for `--trace`.
//!
//! Pure: must not change what is forwarded; only renders it.

use std::fmt::Write as _;

use crate::proto::{Handle, LockOwner, RemotePath, Request, TimeUpdate, XattrTarget};

/// How many bytes of a data buffer `--trace` shows, as strace's `-s 32`.
const SHOWN_BYTES: usize = 32;

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

fn path(p: &RemotePath) -> String {
    quote(&p.0, usize::MAX)
}

fn h(handle: &Handle) -> String {
    format!("#{}", handle.0)
}

fn target(t: &XattrTarget) -> String {
    match t {
        XattrTarget::Path { path: p, .. } => path(p),
        XattrTarget::Handle(handle) => h(handle),
    }
}

fn time(t: &TimeUpdate) -> String {
    match t {
        TimeUpdate::Now => "UTIME_NOW".into(),
        TimeUpdate::Omit => "UTIME_OMIT".into(),
        TimeUpdate::At(ts) => format!("{}.{:09}", ts.sec, ts.nsec),
    }
}

/// The arguments of `req` as `--trace` prints them. Remote handles show as
/// `#N`; paths are the remote paths. Each family of requests is rendered by
/// its own function; this match has no catch-all arm, so a new request must
/// be given one.
pub fn describe(req: &Request) -> String {
    match req {
        Request::Open { .. }
        | Request::OpenPlus { .. }
        | Request::Close { .. }
        | Request::Read { .. }
        | Request::Pread { .. }
        | Request::Write { .. }
        | Request::Pwrite { .. }
        | Request::Lseek { .. }
        | Request::Fsync { .. }
        | Request::FlushWrites { .. }
        | Request::SetFlags { .. }
        | Request::Ftruncate { .. }
        | Request::Truncate { .. }
        | Request::Reopen { .. }
        | Request::Fallocate { .. }
        | Request::CopyRange { .. } => files(req),
        Request::Getdents { .. }
        | Request::GetdentsPlus { .. }
        | Request::Mkdir { .. }
        | Request::Rmdir { .. }
        | Request::CheckDir { .. } => dirs(req),
        Request::Fstat { .. }
        | Request::Fstatfs { .. }
        | Request::Fchmod { .. }
        | Request::Fchown { .. }
        | Request::Futimens { .. }
        | Request::Stat { .. }
        | Request::StatPlus { .. }
        | Request::Access { .. }
        | Request::Chmod { .. }
        | Request::Chown { .. }
        | Request::Utimens { .. }
        | Request::Statfs { .. } => meta(req),
        Request::Readlink { .. }
        | Request::Unlink { .. }
        | Request::Mknod { .. }
        | Request::Rename { .. }
        | Request::Link { .. }
        | Request::LinkHandle { .. }
        | Request::Symlink { .. } => names(req),
        Request::GetXattr { .. }
        | Request::ListXattr { .. }
        | Request::SetXattr { .. }
        | Request::RemoveXattr { .. } => xattrs(req),
        Request::Flock { .. }
        | Request::RecordLock { .. }
        | Request::ReleaseLocks { .. }
        | Request::CancelWait { .. } => locks(req),
        Request::TcpConnect { .. }
        | Request::TcpBind { .. }
        | Request::UdpBind { .. }
        | Request::TcpListen { .. }
        | Request::TcpUnbind { .. }
        | Request::TcpSetOption { .. } => sockets(req),
        Request::Uname => String::new(),
        Request::ReadSystemFile { file } => quote(file.path().as_bytes(), usize::MAX),
        Request::LookupAndList { dir, lookup } => format!(
            "{}, +listing {}",
            describe(&lookup.clone().into_request()),
            path(dir)
        ),
    }
}

/// Open files: opening, data, offsets, sizes, copies.
fn files(req: &Request) -> String {
    match req {
        Request::Open {
            path: p,
            flags,
            mode,
        } => format!("{}, {flags:#o}, {mode:#o}", path(p)),
        Request::OpenPlus {
            path: p,
            flags,
            mode,
        } => format!("{}, {flags:#o}, {mode:#o}, +listing", path(p)),
        Request::Close { handle } | Request::Fsync { handle, .. } => h(handle),
        Request::Read { handle, len } => format!("{}, {len}", h(handle)),
        Request::Pread {
            handle,
            len,
            offset,
        } => format!("{}, {len}, {offset}", h(handle)),
        Request::Write { handle, data } => {
            format!(
                "{}, {}, {}",
                h(handle),
                quote(data, SHOWN_BYTES),
                data.len()
            )
        }
        Request::Pwrite {
            handle,
            data,
            offset,
        } => {
            format!(
                "{}, {}, {}, {offset}",
                h(handle),
                quote(data, SHOWN_BYTES),
                data.len()
            )
        }
        Request::Lseek {
            handle,
            offset,
            whence,
        } => format!("{}, {offset}, {whence}", h(handle)),
        Request::FlushWrites { handle } => format!("{}, flush", h(handle)),
        Request::SetFlags { handle, flags } => format!("{}, F_SETFL, {flags:#o}", h(handle)),
        Request::Ftruncate { handle, len } => format!("{}, {len}", h(handle)),
        Request::Truncate { path: p, len } => format!("{}, {len}", path(p)),
        Request::Reopen { handle, flags } => format!("{}, {flags:#o}", h(handle)),
        Request::Fallocate {
            handle,
            mode,
            offset,
            len,
        } => format!("{}, {mode:#x}, {offset}, {len}", h(handle)),
        Request::CopyRange {
            from,
            from_offset,
            to,
            to_offset,
            len,
        } => {
            let at = |o: &Option<i64>| o.map_or_else(|| "NULL".to_string(), |o| format!("[{o}]"));
            format!(
                "{}, {}, {}, {}, {len}",
                h(from),
                at(from_offset),
                h(to),
                at(to_offset)
            )
        }
        _ => String::new(),
    }
}

/// Directories: listings, mkdir, rmdir, the chdir check.
fn dirs(req: &Request) -> String {
    match req {
        Request::Getdents { handle, bytes } => format!("{}, {bytes}", h(handle)),
        Request::GetdentsPlus { handle } => format!("{}, +stat", h(handle)),
        Request::Mkdir { path: p, mode } => format!("{}, {mode:#o}", path(p)),
        Request::Rmdir { path: p } | Request::CheckDir { path: p } => path(p),
        _ => String::new(),
    }
}

/// Metadata: stat, access, chmod, chown, times, statfs.
fn meta(req: &Request) -> String {
    match req {
        Request::Fstat { handle } | Request::Fstatfs { handle } => h(handle),
        Request::Fchmod { handle, mode } => format!("{}, {mode:#o}", h(handle)),
        Request::Fchown { handle, uid, gid } => format!("{}, {uid}, {gid}", h(handle)),
        Request::Futimens { handle, times } => {
            format!("{}, [{}, {}]", h(handle), time(&times[0]), time(&times[1]))
        }
        Request::Stat { path: p, .. }
        | Request::StatPlus { path: p, .. }
        | Request::Statfs { path: p } => path(p),
        Request::Access { path: p, mode, .. } => format!("{}, {mode:#o}", path(p)),
        Request::Chmod { path: p, mode, .. } => format!("{}, {mode:#o}", path(p)),
        Request::Chown {
            path: p, uid, gid, ..
        } => format!("{}, {uid}, {gid}", path(p)),
        Request::Utimens { path: p, times, .. } => {
            format!("{}, [{}, {}]", path(p), time(&times[0]), time(&times[1]))
        }
        _ => String::new(),
    }
}

/// Names: readlink, unlink, mknod, rename, link, symlink.
fn names(req: &Request) -> String {
    match req {
        Request::Readlink { path: p } | Request::Unlink { path: p } => path(p),
        Request::Mknod { path: p, mode, dev } => format!("{}, {mode:#o}, {dev:#x}", path(p)),
        Request::Rename { from, to, .. } | Request::Link { from, to, .. } => {
            format!("{}, {}", path(from), path(to))
        }
        Request::LinkHandle {
            handle,
            to,
            empty_path,
        } => {
            let how = if *empty_path { ", AT_EMPTY_PATH" } else { "" };
            format!("{}, {}{how}", h(handle), path(to))
        }
        Request::Symlink { target: t, path: p } => {
            format!("{}, {}", quote(t, usize::MAX), path(p))
        }
        _ => String::new(),
    }
}

/// Extended attributes.
fn xattrs(req: &Request) -> String {
    match req {
        Request::GetXattr {
            target: t,
            name,
            size,
        } => {
            format!("{}, {}, {size}", target(t), quote(name, usize::MAX))
        }
        Request::ListXattr { target: t, size } => format!("{}, {size}", target(t)),
        Request::SetXattr {
            target: t,
            name,
            value,
            ..
        } => format!(
            "{}, {}, {}, {}",
            target(t),
            quote(name, usize::MAX),
            quote(value, SHOWN_BYTES),
            value.len()
        ),
        Request::RemoveXattr { target: t, name } => {
            format!("{}, {}", target(t), quote(name, usize::MAX))
        }
        _ => String::new(),
    }
}

/// Advisory locks, as `flock` and `fcntl` spell them.
fn locks(req: &Request) -> String {
    match req {
        Request::Flock { handle, op, wait } => {
            let op = match *op {
                libc::LOCK_SH => "LOCK_SH",
                libc::LOCK_EX => "LOCK_EX",
                libc::LOCK_UN => "LOCK_UN",
                _ => "?",
            };
            let nb = if wait.is_some() { "" } else { "|LOCK_NB" };
            format!("{}, {op}{nb}", h(handle))
        }
        Request::RecordLock {
            handle,
            owner,
            lock,
            set,
            wait,
        } => {
            let cmd = match (owner, set, wait) {
                (LockOwner::Process(_), false, _) => "F_GETLK",
                (LockOwner::Process(_), true, None) => "F_SETLK",
                (LockOwner::Process(_), true, Some(_)) => "F_SETLKW",
                (LockOwner::OpenFile, false, _) => "F_OFD_GETLK",
                (LockOwner::OpenFile, true, None) => "F_OFD_SETLK",
                (LockOwner::OpenFile, true, Some(_)) => "F_OFD_SETLKW",
            };
            let kind = match i32::from(lock.kind) {
                libc::F_RDLCK => "F_RDLCK",
                libc::F_WRLCK => "F_WRLCK",
                libc::F_UNLCK => "F_UNLCK",
                _ => "?",
            };
            format!(
                "{}, {cmd}, {{l_type={kind}, l_whence={}, l_start={}, l_len={}}}",
                h(handle),
                lock.whence,
                lock.start,
                lock.len
            )
        }
        Request::ReleaseLocks { owner, handle } => match handle {
            Some(handle) => format!("{}, release locks of pid {owner}", h(handle)),
            None => format!("release locks of pid {owner}"),
        },
        Request::CancelWait { wait } => format!("cancel wait {wait}"),
        _ => String::new(),
    }
}

/// Sockets (`--net`): connects, binds, listeners, options.
fn sockets(req: &Request) -> String {
    match req {
        Request::TcpConnect { addr, .. }
        | Request::TcpBind { addr, .. }
        | Request::UdpBind { addr, .. } => std::net::SocketAddr::from(*addr).to_string(),
        Request::TcpListen {
            listener, backlog, ..
        } => format!("L{listener}, {backlog}"),
        Request::TcpUnbind { listener } => format!("L{listener}"),
        Request::TcpSetOption { target, option } => format!("{target:?}, {option:?}"),
        _ => String::new(),
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
        assert_eq!(describe(&req), r#""/a \"b\"\n\xff", 0o101, 0o644"#);
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
