//! The `--trace` arguments of the in-kernel copies (`sendfile`,
//! `copy_file_range`) as the program called them: its own fds in its own
//! argument order, never rscq's remote handles (`#N`), which a
//! [`Request::CopyRange`](crate::proto::Request::CopyRange) alone would give.
//!
//! Pure: renders the argument words it is given; must not read the
//! program's memory (the offsets a forwarded copy read come with it).

use crate::syscall::plan::arg_i32;

/// An in-kernel copy as the program called it, from its argument words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyCall {
    /// `sendfile(out_fd, in_fd, offset, count)`.
    Sendfile {
        out_fd: i32,
        in_fd: i32,
        /// The address of the offset, 0 for NULL.
        offset: u64,
        count: u64,
    },
    /// `copy_file_range(fd_in, off_in, fd_out, off_out, len, flags)`.
    CopyFileRange {
        fd_in: i32,
        /// The address of the input offset, 0 for NULL.
        off_in: u64,
        fd_out: i32,
        /// The address of the output offset, 0 for NULL.
        off_out: u64,
        len: u64,
        flags: u64,
    },
}

/// The offsets rscq read for a forwarded copy, `(from, to)`, each `None`
/// where the program passed NULL.
pub type ReadOffsets = (Option<i64>, Option<i64>);

impl CopyCall {
    /// The copy that call `nr` with arguments `args` is; `None` for any
    /// other call.
    pub fn of(nr: i64, args: [u64; 6]) -> Option<Self> {
        match nr {
            libc::SYS_sendfile => Some(Self::Sendfile {
                out_fd: arg_i32(args[0]),
                in_fd: arg_i32(args[1]),
                offset: args[2],
                count: args[3],
            }),
            libc::SYS_copy_file_range => Some(Self::CopyFileRange {
                fd_in: arg_i32(args[0]),
                off_in: args[1],
                fd_out: arg_i32(args[2]),
                off_out: args[3],
                len: args[4],
                flags: args[5] & 0xffff_ffff,
            }),
            _ => None,
        }
    }

    /// Its arguments as strace prints them. An offset shows as `[N]` when
    /// `read` has it (a forwarded copy), as `NULL` when the program
    /// passed none, and otherwise as its address (a copy refused without
    /// reading it), as strace shows memory it did not read.
    pub fn args(&self, read: Option<ReadOffsets>) -> String {
        let offset = |addr: u64, value: Option<Option<i64>>| match (addr, value) {
            (0, _) => "NULL".to_string(),
            (_, Some(Some(v))) => format!("[{v}]"),
            (addr, _) => format!("{addr:#x}"),
        };
        let (from, to) = match read {
            Some((from, to)) => (Some(from), Some(to)),
            None => (None, None),
        };
        match *self {
            Self::Sendfile {
                out_fd,
                in_fd,
                offset: at,
                count,
            } => format!("{out_fd}, {in_fd}, {}, {count}", offset(at, from)),
            Self::CopyFileRange {
                fd_in,
                off_in,
                fd_out,
                off_out,
                len,
                flags,
            } => format!(
                "{fd_in}, {}, {fd_out}, {}, {len}, {flags}",
                offset(off_in, from),
                offset(off_out, to)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_copies_are_copy_calls() {
        assert_eq!(CopyCall::of(libc::SYS_read, [3, 0, 10, 0, 0, 0]), None);
        assert_eq!(CopyCall::of(libc::SYS_splice, [3, 0, 4, 0, 10, 0]), None);
    }

    #[test]
    fn sendfile_shows_out_fd_first_and_the_offset_read() {
        let call = CopyCall::of(libc::SYS_sendfile, [4, 3, 0x7ff0, 20, 0, 0]).expect("copy");
        assert_eq!(call.args(Some((Some(50), None))), "4, 3, [50], 20");
        assert_eq!(call.args(None), "4, 3, 0x7ff0, 20");
        let own = CopyCall::of(libc::SYS_sendfile, [4, 3, 0, 30, 0, 0]).expect("copy");
        assert_eq!(own.args(Some((None, None))), "4, 3, NULL, 30");
        assert_eq!(own.args(None), "4, 3, NULL, 30");
    }

    #[test]
    fn copy_file_range_shows_both_fds_and_offsets_in_its_order() {
        let args = [3, 0x7ff0, 5, 0x7ff8, 5, 0];
        let call = CopyCall::of(libc::SYS_copy_file_range, args).expect("copy");
        assert_eq!(
            call.args(Some((Some(1000), Some(10)))),
            "3, [1000], 5, [10], 5, 0"
        );
        assert_eq!(call.args(None), "3, 0x7ff0, 5, 0x7ff8, 5, 0");
        let own = CopyCall::of(libc::SYS_copy_file_range, [3, 0, 5, 0, 100, 0]).expect("copy");
        assert_eq!(own.args(Some((None, None))), "3, NULL, 5, NULL, 100, 0");
        // The fds are the low 32 bits of their words, as the kernel reads
        // an `int`.
        let high = CopyCall::of(libc::SYS_copy_file_range, [1 << 32 | 3, 0, 5, 0, 1, 0]);
        assert_eq!(high.expect("copy").args(None), "3, NULL, 5, NULL, 1, 0");
    }

    #[test]
    fn a_forwarded_copy_shows_the_programs_call_not_the_handles() {
        use crate::proto::{Handle, Request};
        use crate::syscall::describe::{Shown, describe, describe_as};
        let req = Request::CopyRange {
            from: Handle(1),
            from_offset: Some(50),
            to: Handle(2),
            to_offset: None,
            len: 20,
        };
        let sendfile = CopyCall::of(libc::SYS_sendfile, [4, 3, 0x7ff0, 20, 0, 0]);
        let shown = Shown {
            fd: Some(4),
            copy: sendfile,
            ..Shown::default()
        };
        assert_eq!(describe_as(&req, shown), "4, 3, [50], 20");
        // Without the call (a request alone), rscq's handles.
        assert_eq!(describe(&req), "#1, [50], #2, NULL, 20");
    }
}
