//! Data and fd-state calls on remote fds: `read`, `write` and their
//! positioned and vectored forms, `lseek`, `fsync`, `fcntl`, the
//! in-kernel copies (`copy_file_range`, `splice`, `sendfile`) refused so
//! that programs fall back to read/write, and `epoll_ctl`, refused as for
//! a regular file.
//!
//! Each call is one request of at most `MAX_IO` bytes (a short count, as
//! the kernel may give); it must not loop over the program's buffer.

use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, Request};
use crate::syscall::describe::{SHOWN_BYTES, Shown, open_flags, quote, whence};
use crate::syscall::plan::{FdKind, Plan, Planner, RemoteFd, Then, Tracee, arg_i32, io_count};

/// `struct epoll_event` on x86_64 (packed: events, then 8 bytes of data).
const EPOLL_EVENT_SIZE: usize = 12;

impl<T: Tracee> Planner<'_, T> {
    /// `epoll_ctl(epfd, op, fd, event)` with a remote `fd`: EPERM for every
    /// `op`, as Linux answers for a regular file or a directory (always
    /// ready, so never watched; `poll` and `select` report them readable
    /// and writable, which the FIFO standing in for the file does too).
    /// An `epfd` that is no open fd is EBADF first, as the kernel checks.
    pub(super) fn epoll_ctl(&mut self, a: [u64; 6]) -> Plan {
        let FdKind::Remote(_) = self.fd(arg_i32(a[2])) else {
            return Plan::Native;
        };
        // As the kernel: the event is read before the fds are looked at.
        let op = arg_i32(a[1]);
        if (op == libc::EPOLL_CTL_ADD || op == libc::EPOLL_CTL_MOD)
            && let Err(e) = self.t.read_bytes(a[3], EPOLL_EVENT_SIZE)
        {
            return Plan::fail(e);
        }
        // Then `epfd` (EBADF), then whether the target can be polled.
        if !self.t.is_open(arg_i32(a[0])) {
            return Plan::fail(Errno::EBADF);
        }
        Plan::fail(Errno::EPERM)
    }

    /// `copy_file_range(fd_in, off_in, fd_out, ...)`, `splice` (same fd
    /// positions) and `sendfile(out_fd, in_fd, ...)` touching a remote fd:
    /// between two remote files the server copies; otherwise refused so
    /// that programs fall back to read/write.
    pub(super) fn copy_between(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd = arg_i32(a[0]);
        if nr == libc::SYS_sendfile {
            return match (self.fd(arg_i32(a[1])), self.fd(fd)) {
                (FdKind::Remote(from), FdKind::Remote(to))
                    if !from.is_dir && !to.is_dir && self.same_remote(&from, &to) =>
                {
                    self.server_copy(&from, a[2], &to, 0, a[3])
                }
                (FdKind::Local, FdKind::Local) => Plan::Native,
                _ => Plan::fail(Errno::EINVAL),
            };
        }
        if nr == libc::SYS_copy_file_range
            && let (FdKind::Remote(from), FdKind::Remote(to)) =
                (self.fd(fd), self.fd(arg_i32(a[2])))
            && !from.is_dir
            && !to.is_dir
            && self.same_remote(&from, &to)
        {
            if a[5] != 0 {
                return Plan::fail(Errno::EINVAL);
            }
            return self.server_copy(&from, a[1], &to, a[3], a[4]);
        }
        // The second fd is the third argument of both calls.
        let remote = matches!(self.fd(fd), FdKind::Remote(_))
            || matches!(self.fd(arg_i32(a[2])), FdKind::Remote(_));
        // Both make coreutils and python fall back to read/write.
        let e = if nr == libc::SYS_copy_file_range {
            Errno::EXDEV
        } else {
            Errno::EINVAL
        };
        if remote { Plan::fail(e) } else { Plan::Native }
    }

    /// Whether one server holds both files: it copies only between its
    /// own, so across remotes the call fails as across file systems
    /// (EXDEV, or EINVAL for `sendfile`) and the program reads and writes.
    fn same_remote(&self, from: &RemoteFd, to: &RemoteFd) -> bool {
        self.remote_of(from) == self.remote_of(to)
    }

    /// A copy the server makes between two remote files; `from_ptr` and
    /// `to_ptr` point at the program's offsets (0: the files' own).
    fn server_copy(
        &mut self,
        from: &RemoteFd,
        from_ptr: u64,
        to: &RemoteFd,
        to_ptr: u64,
        len: u64,
    ) -> Plan {
        let mut offset = |ptr: u64| -> Result<Option<i64>, Errno> {
            if ptr == 0 {
                return Ok(None);
            }
            let b = self.t.read_bytes(ptr, 8)?;
            let o = i64::from_ne_bytes(b.try_into().map_err(|_| Errno::EFAULT)?);
            if o < 0 {
                return Err(Errno::EINVAL);
            }
            Ok(Some(o))
        };
        let (from_offset, to_offset) = match (offset(from_ptr), offset(to_ptr)) {
            (Ok(f), Ok(t)) => (f, t),
            (Err(e), _) | (_, Err(e)) => return Plan::fail(e),
        };
        Plan::forward(
            Request::CopyRange {
                from: from.handle,
                from_offset,
                to: to.handle,
                to_offset,
                len,
            },
            Then::Copied {
                offsets: Box::new([
                    (from_ptr, from_offset.unwrap_or(0)),
                    (to_ptr, to_offset.unwrap_or(0)),
                ]),
            },
        )
    }

    /// `read(fd, buf, count)`.
    pub(super) fn read(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Read {
                handle,
                len: io_count(a[2]),
            },
            Then::Data {
                addr: a[1],
                cap: a[2],
                truncate: true,
            },
        )
    }

    /// `pread64(fd, buf, count, offset)`.
    pub(super) fn pread(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Pread {
                handle,
                len: io_count(a[2]),
                offset: a[3].cast_signed(),
            },
            Then::Data {
                addr: a[1],
                cap: a[2],
                truncate: true,
            },
        )
    }

    /// `write(fd, buf, count)` and `pwrite64(..., offset)`.
    pub(super) fn write(&mut self, nr: i64, handle: Handle, a: [u64; 6]) -> Plan {
        let data = match self
            .t
            .read_bytes(a[1], usize::try_from(io_count(a[2])).unwrap_or(0))
        {
            Ok(d) => d,
            Err(e) => return Plan::fail(e),
        };
        let request = if nr == libc::SYS_write {
            Request::Write { handle, data }
        } else {
            Request::Pwrite {
                handle,
                data,
                offset: a[3].cast_signed(),
            }
        };
        Plan::forward(request, Then::Number)
    }

    /// `readv`, `preadv` and `preadv2` (offset -1: the file position).
    pub(super) fn readv(&mut self, nr: i64, handle: Handle, a: [u64; 6]) -> Plan {
        let iov = match self.iovecs(a[1], a[2]) {
            Ok(v) => v,
            Err(e) => return Plan::fail(e),
        };
        let total = iov.iter().map(|&(_, l)| l).fold(0u64, u64::saturating_add);
        let len = io_count(total);
        let offset = a[3].cast_signed();
        let request = if nr == libc::SYS_readv || (nr == libc::SYS_preadv2 && offset == -1) {
            Request::Read { handle, len }
        } else {
            Request::Pread {
                handle,
                len,
                offset,
            }
        };
        Plan::forward(request, Then::DataIov { iov })
    }

    /// `writev`, `pwritev` and `pwritev2` (offset -1: the file position).
    pub(super) fn writev(&mut self, nr: i64, handle: Handle, a: [u64; 6]) -> Plan {
        let iov = match self.iovecs(a[1], a[2]) {
            Ok(v) => v,
            Err(e) => return Plan::fail(e),
        };
        let mut data = Vec::new();
        let limit = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
        for (base, len) in iov {
            let room = limit - data.len();
            let take = usize::try_from(len).unwrap_or(usize::MAX).min(room);
            match self.t.read_bytes(base, take) {
                Ok(b) => data.extend_from_slice(&b),
                Err(e) => return Plan::fail(e),
            }
            if data.len() == limit {
                break;
            }
        }
        let offset = a[3].cast_signed();
        let request = if nr == libc::SYS_writev || (nr == libc::SYS_pwritev2 && offset == -1) {
            Request::Write { handle, data }
        } else {
            Request::Pwrite {
                handle,
                data,
                offset,
            }
        };
        Plan::forward(request, Then::Number)
    }

    /// `lseek(fd, offset, whence)`.
    pub(super) fn lseek(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Lseek {
                handle,
                offset: a[1].cast_signed(),
                whence: arg_i32(a[2]),
            },
            Then::Number,
        )
    }

    /// `fsync(fd)` and `fdatasync(fd)` (`data_only`).
    pub(super) fn fsync(handle: Handle, data_only: bool) -> Plan {
        Plan::forward(Request::Fsync { handle, data_only }, Then::Zero)
    }

    /// `fallocate(fd, mode, offset, len)`.
    pub(super) fn fallocate(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Fallocate {
                handle,
                mode: arg_i32(a[1]),
                offset: a[2].cast_signed(),
                len: a[3].cast_signed(),
            },
            Then::Zero,
        )
    }

    /// `fcntl(fd, cmd, arg)`: the flags are answered from the placeholder
    /// and changed on the server; record locks are the server's
    /// ([`crate::syscall::locks`]).
    pub(super) fn fcntl(&mut self, rfd: &RemoteFd, cmd: i32, arg: u64) -> Plan {
        match cmd {
            libc::F_GETFL => Plan::Return(i64::from(rfd.flags | libc::O_LARGEFILE)),
            libc::F_SETFL => {
                let changeable =
                    libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME;
                let flags = (rfd.flags & !changeable) | (arg_i32(arg) & changeable);
                Plan::forward(
                    Request::SetFlags {
                        handle: rfd.handle,
                        flags: arg_i32(arg) & changeable,
                    },
                    Then::SetFlags {
                        key: rfd.key,
                        flags,
                    },
                )
            }
            libc::F_GETLK
            | libc::F_SETLK
            | libc::F_SETLKW
            | libc::F_OFD_GETLK
            | libc::F_OFD_SETLK
            | libc::F_OFD_SETLKW => {
                let tgid = self.t.tgid();
                crate::syscall::locks::record(self.t, rfd, tgid, cmd, arg)
            }
            _ => Plan::Native,
        }
    }
}

/// The `--trace` arguments of this family's requests (data, offsets,
/// sizes and copies on an open file), as
/// [`describe_as`](crate::syscall::describe::describe_as) routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    match req {
        Request::Close { handle } => shown.h(handle),
        Request::Fsync { handle, data_only } => {
            let what = if *data_only { ", data only" } else { "" };
            format!("{}{what}", shown.h(handle))
        }
        Request::Read { handle, len } => format!("{}, {len}", shown.h(handle)),
        Request::Pread {
            handle,
            len,
            offset,
        } => format!("{}, {len}, {offset}", shown.h(handle)),
        Request::Write { handle, data } => format!(
            "{}, {}, {}",
            shown.h(handle),
            quote(data, SHOWN_BYTES),
            data.len()
        ),
        Request::Pwrite {
            handle,
            data,
            offset,
        } => format!(
            "{}, {}, {}, {offset}",
            shown.h(handle),
            quote(data, SHOWN_BYTES),
            data.len()
        ),
        Request::Lseek {
            handle,
            offset,
            whence: w,
        } => format!("{}, {offset}, {}", shown.h(handle), whence(*w)),
        Request::FlushWrites { handle } => format!("{}, flush", shown.h(handle)),
        Request::SetFlags { handle, flags } => {
            format!("{}, F_SETFL, {}", shown.h(handle), open_flags(*flags))
        }
        Request::Ftruncate { handle, len } => format!("{}, {len}", shown.h(handle)),
        Request::Fallocate {
            handle,
            mode: m,
            offset,
            len,
        } => format!("{}, {m:#x}, {offset}, {len}", shown.h(handle)),
        Request::CopyRange {
            from,
            from_offset,
            to,
            to_offset,
            len,
        } => {
            if let Some(call) = shown.copy {
                return call.args(Some((*from_offset, *to_offset)));
            }
            let at = |o: &Option<i64>| o.map_or_else(|| "NULL".to_string(), |o| format!("[{o}]"));
            // Without the program's call, in `copy_file_range`'s order.
            format!(
                "#{}, {}, #{}, {}, {len}",
                from.0,
                at(from_offset),
                to.0,
                at(to_offset)
            )
        }
        _ => String::new(),
    }
}
