//! The wire protocol between `rscq` and `rscq-server`.
//!
//! Every forwarded syscall is one [`Request`] on its own QUIC bidirectional
//! stream, answered by one [`Response`] on the same stream. Messages are
//! encoded with postcard (see [`frame`]). The first stream of a connection
//! carries the [`Hello`]/[`Welcome`] handshake, which fixes the version.
//!
//! Paths are byte strings (Linux paths need not be UTF-8). A [`RemotePath`]
//! is always interpreted beneath the server's export root, whatever it says.
//!
//! Pure: types and their encoding only; must not do I/O. A change to any
//! message is a [`PROTOCOL_VERSION`] bump.

mod files;
pub mod frame;
mod net;
mod request;
pub mod segment;

pub use files::*;
pub use net::*;
pub use request::*;

use serde::{Deserialize, Serialize};

/// Bumped on every incompatible change to any message in this module.
pub const PROTOCOL_VERSION: u32 = 20;

/// The TLS ALPN token both sides require.
pub const ALPN: &[u8] = b"rscq/1";

/// The largest payload of one read or write. Larger program requests are
/// clamped, exactly as a short read or write would be by the kernel.
pub const MAX_IO: u32 = 1 << 20;
/// The longest path accepted, including the remote mount prefix (`PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// The longest xattr name (`XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// The largest xattr value or list (`XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: u32 = 65536;
/// The largest `getdents64` buffer served in one call.
pub const MAX_DIRENTS_BYTES: u32 = 1 << 20;
/// The most entries a [`Request::LookupAndList`] brings back: a larger
/// directory comes back as [`DirListing::TooLarge`], with the asked
/// answer alone, so one `stat` never fetches a huge directory whole.
pub const MAX_LISTED_ENTRIES: usize = 4096;

/// Sent by the client on the first stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    /// First, so that a server of any version reads it ([`HelloVersion`]).
    pub version: u32,
    /// How long the server is to keep this session after the connection
    /// is lost, for the client to take it up again (its reconnect grace,
    /// in seconds); 0: end it with the connection.
    pub keep_secs: u32,
    /// The session of an earlier connection of this client to take up
    /// again, with its open files and locks.
    pub resume: Option<SessionToken>,
}

/// The part of a [`Hello`] every version shares: a server reads this
/// first, so a client of another version is told [`Welcome::VersionMismatch`]
/// whatever else its `Hello` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloVersion {
    pub version: u32,
}

/// Names a session on its server: a secret only the client it was given
/// to knows, good only with that client's certificate.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SessionToken(pub [u8; 16]);

impl std::fmt::Debug for SessionToken {
    // A secret: logs show only that there is one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(..)")
    }
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Welcome {
    Accepted {
        version: u32,
        read_only: bool,
        /// This connection's session, to name in a later [`Hello`].
        session: SessionToken,
        /// Whether it is the session the `Hello` asked to take up again
        /// (its files, directories and locks as they were), not a new one.
        resumed: bool,
    },
    VersionMismatch {
        server_version: u32,
    },
}

/// The first frame of every request stream: the operation, and the rights
/// of the thread that made it (NFS's AUTH_SYS, with the umask and the
/// capabilities the kernel would check too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Call {
    /// `None` for rscq's own calls (closing a handle, sockets, flushes of
    /// held writes): they run with the server's own rights.
    pub creds: Option<Credentials>,
    pub request: Request,
    /// The program's calls are numbered, so that one sent again on a new
    /// connection to a session the server kept runs at most once (the
    /// server answers it again from its record); `None` for rscq's own.
    pub once: Option<Once>,
}

/// A call's number in its session, and what the client already holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Once {
    /// Unique among the client's calls in one run.
    pub id: u64,
    /// The client holds the answer of every call numbered below this: the
    /// server may forget them.
    pub acked_below: u64,
}

/// A thread's credentials as `/proc/TID/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Credentials {
    /// Real ids: `access(2)` checks with them.
    pub ruid: u32,
    pub rgid: u32,
    /// File-system ids: every other permission check and new files' owner.
    pub fsuid: u32,
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub umask: u32,
    /// Effective and permitted capability sets, as bit masks.
    pub cap_effective: u64,
    pub cap_permitted: u64,
}
