//! AF_UNIX `bind` and `connect` with a path in a mount (unix(7)).
//!
//! A socket's path is a name in the file system, and the name is the
//! server's: `bind` makes the socket file there (`mknod(S_IFSOCK)` with
//! mode 0777 and the caller's umask, as the kernel's `unix_bind`), then binds
//! the program's socket locally to an abstract name so that `listen` and
//! `accept` keep working. Nothing on the program's machine can reach a
//! socket on the server, so a `connect` to a path in a mount fails as one
//! to a socket file nobody listens on (ECONNREFUSED), after the server said
//! whether the path exists. Paths outside every mount are the kernel's, and
//! a relative one is rewritten when the program's cwd is a remote one.

use crate::errno::Errno;
use crate::proto::Request;
use crate::syscall::fs::Target;
use crate::syscall::plan::{Plan, Planner, Then, Tracee};

/// `offsetof(struct sockaddr_un, sun_path)`.
const SUN_PATH_OFFSET: usize = 2;
/// `sizeof(struct sockaddr_un)`.
const SOCKADDR_UN_LEN: usize = 110;

/// The path of a `sockaddr_un` of `len` bytes: `None` for another family,
/// an unnamed socket (autobind) or an abstract name (a leading NUL).
pub fn pathname(sockaddr: &[u8]) -> Option<&[u8]> {
    let family = u16::from_ne_bytes([*sockaddr.first()?, *sockaddr.get(1)?]);
    if i32::from(family) != libc::AF_UNIX {
        return None;
    }
    let path = sockaddr.get(SUN_PATH_OFFSET..)?;
    let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    (end > 0).then(|| &path[..end])
}

impl<T: Tracee> Planner<'_, T> {
    /// The plan for a `bind` or `connect` of an AF_UNIX socket to a path,
    /// or `None` for every other call and address.
    pub(in crate::syscall) fn unix_socket_call(&mut self, nr: i64, a: [u64; 6]) -> Option<Plan> {
        if nr != libc::SYS_bind && nr != libc::SYS_connect {
            return None;
        }
        let len = usize::try_from(a[2]).ok()?.min(SOCKADDR_UN_LEN);
        let bytes = self.t.read_bytes(a[1], len).ok()?;
        let path = pathname(&bytes)?.to_vec();
        let fd = i32::try_from(a[0] & 0xffff_ffff).ok()?;
        // A socket of another family gets the kernel's EAFNOSUPPORT/EINVAL.
        if self.t.socket_kind(fd).map(|(domain, _)| domain) != Some(libc::AF_UNIX) {
            return None;
        }
        Some(match self.resolve(libc::AT_FDCWD, &path) {
            Err(e) => Plan::fail(e),
            Ok(Target::Local { rewrite: None }) => return None,
            Ok(Target::Local {
                rewrite: Some(local),
            }) => {
                // Relative to the program's virtual cwd: spell it out.
                if local.len() >= SOCKADDR_UN_LEN - SUN_PATH_OFFSET {
                    return Some(Plan::fail(Errno::ENAMETOOLONG));
                }
                let mut sockaddr = bytes[..SUN_PATH_OFFSET].to_vec();
                sockaddr.extend_from_slice(&local);
                // With the NUL the rewrite adds.
                let len = u64::try_from(sockaddr.len() + 1).unwrap_or(u64::MAX);
                Plan::NativeWithArgs {
                    data: vec![(1, sockaddr)],
                    args: [None, None, Some(len), None, None, None],
                }
            }
            Ok(Target::Remote { remote, .. }) if nr == libc::SYS_bind => Plan::forward(
                Request::Mknod {
                    path: remote,
                    mode: libc::S_IFSOCK | 0o777,
                    dev: 0,
                },
                Then::BindSocketFile,
            ),
            Ok(Target::Remote { remote, .. }) => Plan::forward(
                Request::Stat {
                    path: remote,
                    follow: true,
                },
                Then::ConnectSocketFile,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sockaddr(family: i32, path: &[u8]) -> Vec<u8> {
        let mut b = u16::try_from(family).unwrap().to_ne_bytes().to_vec();
        b.extend_from_slice(path);
        b
    }

    #[test]
    fn only_named_unix_addresses_have_a_path() {
        assert_eq!(pathname(&sockaddr(libc::AF_UNIX, b"s\0")), Some(&b"s"[..]));
        assert_eq!(
            pathname(&sockaddr(libc::AF_UNIX, b"dir/sock")),
            Some(&b"dir/sock"[..])
        );
        assert_eq!(pathname(&sockaddr(libc::AF_UNIX, b"\0abstract")), None);
        assert_eq!(pathname(&sockaddr(libc::AF_UNIX, b"")), None);
        assert_eq!(
            pathname(&sockaddr(libc::AF_INET, b"\0\x50\x7f\0\0\x01")),
            None
        );
        assert_eq!(pathname(&[1]), None);
    }
}
