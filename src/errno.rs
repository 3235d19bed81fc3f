//! `Errno`: the one way a forwarded call fails.
//!
//! A remote failure is data, not a Rust error: the server captures the errno
//! its real syscall returned and the client hands it to the program unchanged.
//!
//! Must not carry Rust-side failures (transport, config): those have their own
//! error types.

use serde::{Deserialize, Serialize};

/// A positive Linux errno value, as in `errno(3)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Self = Self(libc::EPERM);
    pub const ENOENT: Self = Self(libc::ENOENT);
    pub const EINTR: Self = Self(libc::EINTR);
    pub const EIO: Self = Self(libc::EIO);
    pub const EBADF: Self = Self(libc::EBADF);
    pub const EAGAIN: Self = Self(libc::EAGAIN);
    pub const ENOMEM: Self = Self(libc::ENOMEM);
    pub const EACCES: Self = Self(libc::EACCES);
    pub const EFAULT: Self = Self(libc::EFAULT);
    pub const EEXIST: Self = Self(libc::EEXIST);
    pub const EXDEV: Self = Self(libc::EXDEV);
    pub const ENODEV: Self = Self(libc::ENODEV);
    pub const ENOTDIR: Self = Self(libc::ENOTDIR);
    pub const EISDIR: Self = Self(libc::EISDIR);
    pub const EINVAL: Self = Self(libc::EINVAL);
    pub const ENOSPC: Self = Self(libc::ENOSPC);
    pub const ESPIPE: Self = Self(libc::ESPIPE);
    pub const EROFS: Self = Self(libc::EROFS);
    pub const ERANGE: Self = Self(libc::ERANGE);
    pub const ENAMETOOLONG: Self = Self(libc::ENAMETOOLONG);
    pub const ENOSYS: Self = Self(libc::ENOSYS);
    pub const ENOTEMPTY: Self = Self(libc::ENOTEMPTY);
    pub const ELOOP: Self = Self(libc::ELOOP);
    pub const ENODATA: Self = Self(libc::ENODATA);
    pub const EOVERFLOW: Self = Self(libc::EOVERFLOW);
    pub const EOPNOTSUPP: Self = Self(libc::EOPNOTSUPP);
    pub const ECONNRESET: Self = Self(libc::ECONNRESET);
    pub const E2BIG: Self = Self(libc::E2BIG);

    /// The value a syscall returns in its result register for this error.
    pub fn as_syscall_return(self) -> i64 {
        -i64::from(self.0)
    }

    /// The errno of a std I/O error, or `EIO` when it carries none.
    pub fn from_io(err: &std::io::Error) -> Self {
        Self(err.raw_os_error().unwrap_or(libc::EIO))
    }
}

impl From<rustix::io::Errno> for Errno {
    fn from(e: rustix::io::Errno) -> Self {
        Self(e.raw_os_error())
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.0);
        write!(f, "errno {} ({text})", self.0)
    }
}
