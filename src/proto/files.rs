//! Files, directories and their metadata as the wire carries them: handles,
//! paths, `stat`/`statfs`/`utsname`, directory entries and the listing a
//! lookup brings with it, xattr targets and record locks.
//!
//! Pure: types only; a change here is a [`super::PROTOCOL_VERSION`] bump.

use serde::{Deserialize, Serialize};

use super::{Reply, Request};

use crate::errno::Errno;

/// An opaque name the server gave an open file; only valid in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Handle(pub u64);

/// A path beneath the export root, as raw bytes with no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RemotePath(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// A point in time as in `struct timespec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// What `utimensat` sets one timestamp to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TimeUpdate {
    Now,
    Omit,
    At(Timespec),
}

/// Everything `statx(2)` reports that the client may need to answer
/// `stat`, `lstat`, `fstat`, `newfstatat` or `statx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Stat {
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    /// File type and permission bits, as `st_mode`.
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub size: u64,
    pub blksize: u32,
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Option<Timespec>,
    pub mnt_id: u64,
    pub attributes: u64,
    pub attributes_mask: u64,
}

/// `struct statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Statfs {
    pub fs_type: i64,
    pub bsize: i64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: [i32; 2],
    pub namelen: i64,
    pub frsize: i64,
    pub flags: i64,
}

/// `struct utsname`, each field without its NUL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Utsname {
    #[serde(with = "serde_bytes")]
    pub sysname: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub nodename: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub release: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub version: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub machine: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub domainname: Vec<u8>,
}

/// One entry of a directory, as `struct linux_dirent64` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DirEntry {
    pub ino: u64,
    pub off: i64,
    /// `d_type`: one of the `DT_*` values.
    pub kind: u8,
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
}

/// What a listing asks about each entry, fetched with the entry itself (the
/// thesis's stat prefetch). Each field is the answer the matching call on
/// `DIR/NAME` would give at the time of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct EntryMeta {
    /// `lstat(2)`.
    pub lstat: Result<Stat, Errno>,
    /// `readlink(2)`, for a symlink.
    #[serde(with = "serde_bytes")]
    pub link: Option<Vec<u8>>,
    /// `lgetxattr(2)` of each of [`PREFETCHED_XATTRS`].
    pub xattrs: Vec<Result<Vec<u8>, Errno>>,
}

/// The xattrs `ls -l` reads for every entry.
pub const PREFETCHED_XATTRS: [&[u8]; 3] = [
    b"security.selinux",
    b"system.posix_acl_access",
    b"system.posix_acl_default",
];

/// The lookup a [`Request::LookupAndList`] carries: each is the request
/// of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Lookup {
    Stat {
        path: RemotePath,
        follow: bool,
    },
    StatPlus {
        path: RemotePath,
        follow: bool,
    },
    Access {
        path: RemotePath,
        mode: i32,
        flags: i32,
    },
    Readlink {
        path: RemotePath,
    },
    Open {
        path: RemotePath,
        flags: i32,
        mode: u32,
    },
    OpenRead {
        path: RemotePath,
        flags: i32,
        mode: u32,
        max: u32,
    },
}

impl Lookup {
    /// The lookup `req` is, or `req` back when it is none.
    pub fn from_request(req: Request) -> Result<Self, Request> {
        match req {
            Request::Stat { path, follow } => Ok(Self::Stat { path, follow }),
            Request::StatPlus { path, follow } => Ok(Self::StatPlus { path, follow }),
            Request::Access { path, mode, flags } => Ok(Self::Access { path, mode, flags }),
            Request::Readlink { path } => Ok(Self::Readlink { path }),
            Request::Open { path, flags, mode } => Ok(Self::Open { path, flags, mode }),
            Request::OpenRead {
                path,
                flags,
                mode,
                max,
            } => Ok(Self::OpenRead {
                path,
                flags,
                mode,
                max,
            }),
            other => Err(other),
        }
    }

    pub fn into_request(self) -> Request {
        match self {
            Self::Stat { path, follow } => Request::Stat { path, follow },
            Self::StatPlus { path, follow } => Request::StatPlus { path, follow },
            Self::Access { path, mode, flags } => Request::Access { path, mode, flags },
            Self::Readlink { path } => Request::Readlink { path },
            Self::Open { path, flags, mode } => Request::Open { path, flags, mode },
            Self::OpenRead {
                path,
                flags,
                mode,
                max,
            } => Request::OpenRead {
                path,
                flags,
                mode,
                max,
            },
        }
    }
}

/// The answer to a [`Lookup`]: the [`Reply`] its request gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LookupAnswer {
    Done,
    Stat(Stat),
    StatPlus {
        stat: Stat,
        xattrs: Vec<Result<Vec<u8>, Errno>>,
    },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    Opened {
        handle: Handle,
        stat: Stat,
    },
    OpenedRead {
        handle: Handle,
        stat: Stat,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

impl LookupAnswer {
    /// The answer a reply is, if it can answer a lookup.
    pub fn from_reply(reply: Reply) -> Option<Self> {
        match reply {
            Reply::Done => Some(Self::Done),
            Reply::Stat(s) => Some(Self::Stat(s)),
            Reply::StatPlus { stat, xattrs } => Some(Self::StatPlus { stat, xattrs }),
            Reply::Data(d) => Some(Self::Data(d)),
            Reply::Opened { handle, stat } => Some(Self::Opened { handle, stat }),
            Reply::OpenedRead { handle, stat, data } => {
                Some(Self::OpenedRead { handle, stat, data })
            }
            _ => None,
        }
    }
}

impl From<LookupAnswer> for Reply {
    fn from(a: LookupAnswer) -> Self {
        match a {
            LookupAnswer::Done => Reply::Done,
            LookupAnswer::Stat(s) => Reply::Stat(s),
            LookupAnswer::StatPlus { stat, xattrs } => Reply::StatPlus { stat, xattrs },
            LookupAnswer::Data(d) => Reply::Data(d),
            LookupAnswer::Opened { handle, stat } => Reply::Opened { handle, stat },
            LookupAnswer::OpenedRead { handle, stat, data } => {
                Reply::OpenedRead { handle, stat, data }
            }
        }
    }
}

/// One entry of a [`DirListing`]: what `lstat` and `readlink` of
/// `DIR/name` gave when it was listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListedEntry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub lstat: Result<Stat, Errno>,
    #[serde(with = "serde_bytes")]
    pub link: Option<Vec<u8>>,
}

/// The lookup's own result and the directory's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LookedUp {
    pub answer: Result<LookupAnswer, Errno>,
    pub listing: DirListing,
}

/// The directory part of a [`Reply::LookedUp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DirListing {
    /// Every entry but `.` and `..`: the whole directory.
    Complete(Vec<ListedEntry>),
    /// More than [`MAX_LISTED_ENTRIES`](super::MAX_LISTED_ENTRIES) entries.
    TooLarge,
    /// The directory could not be listed as asked (missing, not a
    /// directory, reached through a symlink, not readable or searchable).
    Unavailable(Errno),
}

/// Which object an xattr call names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum XattrTarget {
    /// `follow` is false for the `l*xattr` calls.
    Path {
        path: RemotePath,
        follow: bool,
    },
    Handle(Handle),
}

/// Who holds a record lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LockOwner {
    /// A process of the run, by its thread-group id (`F_SETLK` and
    /// friends: the locks of one process on one file never conflict with
    /// each other, and any close of the file by it drops them).
    Process(u32),
    /// The open file itself (`F_OFD_SETLK` and friends).
    OpenFile,
}

/// `struct flock` (`fcntl(2)`), with its `l_pid` as the server's kernel
/// reports a conflicting holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileLock {
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub kind: i16,
    /// `SEEK_SET`, `SEEK_CUR` or `SEEK_END`.
    pub whence: i16,
    pub start: i64,
    /// 0 means "to the end of the file, however far it grows".
    pub len: i64,
    pub pid: i32,
}

impl FileLock {
    /// `l_type` values, as `struct flock` holds them (a `short`).
    pub const RDLCK: i16 = 0;
    pub const WRLCK: i16 = 1;
    pub const UNLCK: i16 = 2;
    /// `l_whence`'s `SEEK_SET`.
    pub const SEEK_SET: i16 = 0;
}

/// The answer to [`Request::OpenPlus`] on a directory: the open, and the
/// listing as [`Reply::DirentsPlus`] would bring it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenedDir {
    pub handle: Handle,
    pub stat: Stat,
    pub entries: Vec<(DirEntry, EntryMeta)>,
    pub complete: bool,
}
