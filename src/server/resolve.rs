//! Confinement: every request path resolves beneath the export root.
//!
//! Two shapes of resolution exist, and every operation uses one of them:
//!
//! - **Whole path** ([`Root::open`], [`Root::target`] when following): one
//!   `openat2(2)` from the root fd with `RESOLVE_IN_ROOT |
//!   RESOLVE_NO_MAGICLINKS`. The kernel then treats the root fd as `/` for
//!   `..`, absolute symlinks and every symlink it follows, *including* the
//!   trailing one `O_CREAT` follows to a dangling target, and refuses the
//!   `/proc` magic links that would jump anywhere.
//! - **Parent plus one name** ([`Root::entry`]): the parent directory is
//!   resolved as above, and the operation runs as an `*at` call with a single
//!   final component. Calls that never follow their last component (mkdir,
//!   unlink, rename, link's new name, symlink) get that component directly,
//!   so nothing after the confined walk is resolved at all.
//!
//! A final `.` or `..` is not a name an `*at` call may see (`..` beside the
//! root fd *is* outside), so [`Entry::Special`] reports it instead and each
//! operation answers with the errno Linux gives for it.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::errno::Errno;
use crate::proto::{MAX_PATH, RemotePath};

/// How many times a walk is retried after `EAGAIN`, which `RESOLVE_IN_ROOT`
/// returns when a concurrent rename or mount could have made `..` unsafe.
const EAGAIN_RETRIES: usize = 8;

/// The export root, held open so that renaming its path does not move it.
#[derive(Debug)]
pub(super) struct Root {
    fd: OwnedFd,
}

/// A directory an `*at` call starts from.
#[derive(Debug)]
pub(super) enum Dir<'r> {
    Root(BorrowedFd<'r>),
    Sub(OwnedFd),
}

impl AsFd for Dir<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Dir::Root(fd) => *fd,
            Dir::Sub(fd) => fd.as_fd(),
        }
    }
}

/// A final component that is not an ordinary name, as the kernel's
/// `LAST_ROOT`, `LAST_DOT` and `LAST_DOTDOT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Special {
    Root,
    Dot,
    DotDot,
}

/// A request path split for an `*at` call.
#[derive(Debug)]
pub(super) enum Entry<'r> {
    Named(Named<'r>),
    /// The whole path resolved, to a directory; there is no name to act on.
    Special(Special),
}

/// An ordinary last component and the (confined) directory holding it.
#[derive(Debug)]
pub(super) struct Named<'r> {
    pub(super) dir: Dir<'r>,
    /// One component, with a single `/` appended when the request had
    /// trailing slashes, so that calls which never follow their last
    /// component still report `ENOTDIR`/`EISDIR` exactly as Linux does.
    pub(super) name: CString,
    /// The request had trailing slashes, which make Linux follow a final
    /// symlink; callers that could follow must take the whole-path route.
    pub(super) dir_only: bool,
}

/// The last component of a path, with the slashes around it removed.
#[derive(Debug, PartialEq, Eq)]
enum Last<'a> {
    Name(&'a [u8]),
    Special(Special),
}

#[derive(Debug, PartialEq, Eq)]
struct Split<'a> {
    parent: &'a [u8],
    last: Last<'a>,
    dir_only: bool,
}

impl Root {
    /// Opens the export root as an `O_PATH` directory fd.
    pub(super) fn new(path: &Path) -> std::io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self { fd })
    }

    /// `openat2(2)` of a whole request path with any open flags.
    pub(super) fn open(
        &self,
        path: &RemotePath,
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, Errno> {
        let bytes = checked(path)?;
        self.walk(self.fd.as_fd(), bytes, flags | OFlags::CLOEXEC, mode)
    }

    /// An `O_PATH` fd for the object a path names. With `follow` false a
    /// final symlink is not followed, as `lstat(2)` does, unless trailing
    /// slashes ask for it, as they do in Linux.
    ///
    /// `RESOLVE_NO_SYMLINKS` would refuse every symlink on the way, not just
    /// the last, so the last component is instead opened alone, relative to
    /// its confined parent, with `O_NOFOLLOW`.
    pub(super) fn target(&self, path: &RemotePath, follow: bool) -> Result<OwnedFd, Errno> {
        let bytes = checked(path)?;
        let split = split(bytes);
        match split.last {
            Last::Name(name) if !follow && !split.dir_only => {
                let dir = self.dir(split.parent)?;
                // BENEATH, not IN_ROOT: `name` is one ordinary component, so
                // the walk cannot leave `dir`; should that ever change, the
                // kernel fails the call instead of re-rooting at `dir`.
                let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
                retry_eagain(|| {
                    rustix::fs::openat2(
                        dir.as_fd(),
                        name,
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                        resolve,
                    )
                })
            }
            _ => self.walk(
                self.fd.as_fd(),
                bytes,
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            ),
        }
    }

    /// Splits a path into its confined parent directory and last name.
    pub(super) fn entry(&self, path: &RemotePath) -> Result<Entry<'_>, Errno> {
        let bytes = checked(path)?;
        let split = split(bytes);
        match split.last {
            Last::Name(name) => {
                let dir = self.dir(split.parent)?;
                let mut name = name.to_vec();
                if split.dir_only {
                    name.push(b'/');
                }
                let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
                Ok(Entry::Named(Named {
                    dir,
                    name,
                    dir_only: split.dir_only,
                }))
            }
            Last::Special(special) => {
                // Linux resolves the path before it rejects the last
                // component, so ENOENT and ENOTDIR come first.
                self.walk(
                    self.fd.as_fd(),
                    bytes,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                Ok(Entry::Special(special))
            }
        }
    }

    fn dir(&self, parent: &[u8]) -> Result<Dir<'_>, Errno> {
        if parent.is_empty() {
            return Ok(Dir::Root(self.fd.as_fd()));
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        self.walk(self.fd.as_fd(), parent, flags, Mode::empty())
            .map(Dir::Sub)
    }

    fn walk(
        &self,
        start: BorrowedFd<'_>,
        bytes: &[u8],
        flags: OFlags,
        mode: Mode,
    ) -> Result<OwnedFd, Errno> {
        // openat2 refuses an empty path; the empty request path is the root.
        let bytes: &[u8] = if bytes.is_empty() { b"." } else { bytes };
        let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        retry_eagain(|| rustix::fs::openat2(start, bytes, flags, mode, resolve))
    }
}

fn retry_eagain(mut call: impl FnMut() -> rustix::io::Result<OwnedFd>) -> Result<OwnedFd, Errno> {
    let mut result = call();
    for _ in 0..EAGAIN_RETRIES {
        match result {
            Err(rustix::io::Errno::AGAIN) => result = call(),
            _ => break,
        }
    }
    result.map_err(Errno::from)
}

/// Rejects what no Linux path can be: NUL bytes, or `PATH_MAX` and beyond.
pub(super) fn checked(path: &RemotePath) -> Result<&[u8], Errno> {
    checked_bytes(&path.0)
}

/// As [`checked`], for byte strings that are paths but not request paths
/// (a symlink's target).
pub(super) fn checked_bytes(bytes: &[u8]) -> Result<&[u8], Errno> {
    if bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    // MAX_PATH counts the terminating NUL, as PATH_MAX does.
    if bytes.len() >= MAX_PATH {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(bytes)
}

fn split(bytes: &[u8]) -> Split<'_> {
    let end = bytes
        .iter()
        .rposition(|&b| b != b'/')
        .map_or(0, |last| last + 1);
    let trimmed = &bytes[..end];
    let dir_only = end < bytes.len();
    let (parent, last) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(slash) => (&trimmed[..=slash], &trimmed[slash + 1..]),
        None => (&trimmed[..0], trimmed),
    };
    let last = match last {
        b"" => Last::Special(Special::Root),
        b"." => Last::Special(Special::Dot),
        b".." => Last::Special(Special::DotDot),
        name => Last::Name(name),
    };
    Split {
        parent,
        last,
        dir_only,
    }
}

/// The `/proc/self/fd/N` path of an fd, for calls with no `AT_EMPTY_PATH`
/// form. Following this magic link lands on exactly the inode the fd holds
/// and goes no further, so for an `O_PATH | O_NOFOLLOW` fd on a symlink it
/// addresses the symlink itself (glibc's `lchmod` relies on the same).
pub(super) fn proc_fd_path(fd: BorrowedFd<'_>) -> CString {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // A formatted integer holds no NUL; fall back to a path that fails.
    CString::new(path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_of(path: &[u8]) -> (Vec<u8>, Last<'_>, bool) {
        let split = split(path);
        (split.parent.to_vec(), split.last, split.dir_only)
    }

    #[test]
    fn split_names_the_last_component() {
        assert_eq!(split_of(b"a/b"), (b"a/".to_vec(), Last::Name(b"b"), false));
        assert_eq!(split_of(b"/a"), (b"/".to_vec(), Last::Name(b"a"), false));
        assert_eq!(split_of(b"a"), (b"".to_vec(), Last::Name(b"a"), false));
        assert_eq!(
            split_of(b"a//b//"),
            (b"a//".to_vec(), Last::Name(b"b"), true)
        );
    }

    #[test]
    fn split_reports_root_dot_and_dotdot() {
        assert_eq!(split_of(b"").1, Last::Special(Special::Root));
        assert_eq!(split_of(b"///").1, Last::Special(Special::Root));
        assert_eq!(split_of(b"a/.").1, Last::Special(Special::Dot));
        assert_eq!(split_of(b"/..").1, Last::Special(Special::DotDot));
        assert_eq!(split_of(b"a/../").1, Last::Special(Special::DotDot));
    }

    #[test]
    fn checked_rejects_nul_and_overlong() {
        assert_eq!(checked(&RemotePath(b"a\0b".to_vec())), Err(Errno::EINVAL));
        assert_eq!(
            checked(&RemotePath(vec![b'a'; MAX_PATH])),
            Err(Errno::ENAMETOOLONG)
        );
        assert!(checked(&RemotePath(vec![b'a'; MAX_PATH - 1])).is_ok());
    }
}
