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
//!
//! Must not run the operations themselves; it only hands out confined fds.

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

    /// `openat2(2)` of a whole request path that must not go through any
    /// symlink (`RESOLVE_NO_SYMLINKS`: `ELOOP` if it does), so that its
    /// text names the object it reaches.
    pub(super) fn open_no_symlinks(
        &self,
        path: &RemotePath,
        flags: OFlags,
    ) -> Result<OwnedFd, Errno> {
        let bytes = checked(path)?;
        if bytes.len() >= MAX_PATH {
            return Err(Errno::ENAMETOOLONG);
        }
        let bytes: &[u8] = if bytes.is_empty() { b"." } else { bytes };
        let resolve =
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_SYMLINKS;
        retry_eagain(|| {
            rustix::fs::openat2(
                self.fd.as_fd(),
                bytes,
                flags | OFlags::CLOEXEC,
                Mode::empty(),
                resolve,
            )
        })
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
        if bytes.len() < MAX_PATH {
            return retry_eagain(|| rustix::fs::openat2(start, bytes, flags, mode, resolve));
        }
        // The mount's remote prefix made a path the program could name (a
        // relative one under a deep cwd) too long for one kernel walk: walk
        // a directory prefix in the root, then the rest beneath it.
        let (prefix, rest) = split_long(bytes).ok_or(Errno::ENAMETOOLONG)?;
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir =
            retry_eagain(|| rustix::fs::openat2(start, prefix, dir_flags, Mode::empty(), resolve))?;
        let beneath = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        match retry_eagain(|| rustix::fs::openat2(&dir, rest, flags, mode, beneath)) {
            // The rest leaves the prefix (`..` or a symlink out of it), which
            // only a walk from the root could follow: the path is too long.
            Err(Errno(libc::EXDEV)) => Err(Errno::ENAMETOOLONG),
            other => other,
        }
    }
}

/// A path too long for one walk, cut at a slash into a directory prefix
/// and a relative rest, each shorter than `PATH_MAX`; `None` if no cut
/// does.
fn split_long(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let cut = bytes[..MAX_PATH].iter().rposition(|&b| b == b'/')?;
    let prefix = &bytes[..cut.max(1)];
    let rest = &bytes[cut + 1..];
    let lead = rest.iter().take_while(|&&b| b == b'/').count();
    let rest = &rest[lead..];
    (rest.len() < MAX_PATH && !rest.is_empty()).then_some((prefix, rest))
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

/// Rejects what no request path can be: NUL bytes, or longer than a mount's
/// remote prefix and a path the program named (each under `PATH_MAX`).
pub(super) fn checked(path: &RemotePath) -> Result<&[u8], Errno> {
    without_nul(&path.0, 2 * MAX_PATH)
}

/// Rejects what no Linux path can be: NUL bytes, or `PATH_MAX` and beyond
/// (a symlink's target).
pub(super) fn checked_bytes(bytes: &[u8]) -> Result<&[u8], Errno> {
    // MAX_PATH counts the terminating NUL, as PATH_MAX does.
    without_nul(bytes, MAX_PATH)
}

fn without_nul(bytes: &[u8], limit: usize) -> Result<&[u8], Errno> {
    if bytes.contains(&0) {
        return Err(Errno::EINVAL);
    }
    if bytes.len() >= limit {
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
            checked(&RemotePath(vec![b'a'; 2 * MAX_PATH])),
            Err(Errno::ENAMETOOLONG)
        );
        assert!(checked(&RemotePath(vec![b'a'; MAX_PATH])).is_ok());
        assert_eq!(checked_bytes(&[b'a'; MAX_PATH]), Err(Errno::ENAMETOOLONG));
        assert!(checked_bytes(&[b'a'; MAX_PATH - 1]).is_ok());
    }

    #[test]
    fn long_paths_are_cut_at_a_slash_into_two_walks() {
        let mut long = vec![b'a'; 3000];
        long.push(b'/');
        long.extend_from_slice(&[b'b'; 3000]);
        let (prefix, rest) = split_long(&long).expect("cut");
        assert_eq!((prefix.len(), rest.len()), (3000, 3000));
        // No slash early enough, or a rest still too long: no cut.
        assert_eq!(split_long(&[b'a'; 5000]), None);
        let mut late = vec![b'/'];
        late.extend_from_slice(&[b'a'; 5000]);
        assert_eq!(split_long(&late), None);
    }

    /// Escape attempts, end to end through the executor.
    mod escapes {
        use std::os::unix::fs::MetadataExt;

        use super::super::super::Executor;
        use super::super::super::testutil::{Export, rp};
        use crate::errno::Errno;
        use crate::proto::{Reply, Request};

        fn read_all(export: &Export, path: &str) -> Result<Vec<u8>, Errno> {
            let handle = match export.run(Request::Open {
                path: rp(path),
                flags: libc::O_RDONLY,
                mode: 0,
            })? {
                Reply::Opened { handle, .. } => handle,
                other => panic!("unexpected {other:?}"),
            };
            let data = export.run(Request::Read {
                handle,
                len: 1 << 16,
            });
            export.run(Request::Close { handle }).expect("close");
            match data? {
                Reply::Data(data) => Ok(data),
                other => panic!("unexpected {other:?}"),
            }
        }

        fn ino(export: &Export, path: &str, follow: bool) -> Result<u64, Errno> {
            match export.run(Request::Stat {
                path: rp(path),
                follow,
            })? {
                Reply::Stat(stat) => Ok(stat.ino),
                other => panic!("unexpected {other:?}"),
            }
        }

        fn root_ino(export: &Export) -> u64 {
            std::fs::metadata(&export.root).expect("root").ino()
        }

        #[test]
        fn dotdot_stops_at_the_root() {
            let export = Export::new();
            for path in [
                "../outside/secret",
                "../../outside/secret",
                "/../../outside/secret",
                "a/../../outside/secret",
            ] {
                assert_eq!(read_all(&export, path), Err(Errno::ENOENT), "{path}");
            }
            for path in ["..", "/..", "/../..", "../../../..", "/", ""] {
                assert_eq!(ino(&export, path, true), Ok(root_ino(&export)), "{path}");
                assert_eq!(ino(&export, path, false), Ok(root_ino(&export)), "{path}");
            }
        }

        #[test]
        fn dotdot_leads_to_the_same_name_inside() {
            let export = Export::new();
            export.mkdir("outside");
            export.write("outside/secret", b"inside");
            assert_eq!(
                read_all(&export, "../../outside/secret"),
                Ok(b"inside".to_vec())
            );
        }

        #[test]
        fn absolute_symlinks_resolve_inside() {
            let export = Export::new();
            export.write("inside", b"inside");
            export.symlink("/inside", "abs");
            export.symlink("/etc", "host_etc");
            // Inside the root, `/etc` names this very link: a loop.
            export.symlink("/etc", "etc");
            assert_eq!(read_all(&export, "abs"), Ok(b"inside".to_vec()));
            assert_eq!(read_all(&export, "host_etc/passwd"), Err(Errno::ELOOP));
            assert_eq!(ino(&export, "etc/passwd", true), Err(Errno::ELOOP));
            std::fs::remove_file(export.host("etc")).expect("unlink etc");
            assert_eq!(read_all(&export, "host_etc/passwd"), Err(Errno::ENOENT));
            let outside = export.outside.join("secret");
            export.symlink(outside.to_str().expect("utf-8 tempdir"), "full");
            assert_eq!(read_all(&export, "full"), Err(Errno::ENOENT));
        }

        #[test]
        fn relative_symlinks_cannot_climb_out() {
            let export = Export::new();
            export.mkdir("a/b");
            export.symlink("../../..", "a/b/up");
            export.symlink("../../../../../../../..", "deep");
            assert_eq!(ino(&export, "a/b/up", true), Ok(root_ino(&export)));
            assert_eq!(ino(&export, "deep", true), Ok(root_ino(&export)));
            assert_eq!(
                read_all(&export, "a/b/up/outside/secret"),
                Err(Errno::ENOENT)
            );
            assert_eq!(read_all(&export, "deep/outside/secret"), Err(Errno::ENOENT));
        }

        #[test]
        fn proc_links_inside_the_export_are_just_paths() {
            let export = Export::new();
            export.symlink("/proc/self/root/etc", "p");
            export.symlink("/proc/self/cwd", "cwd");
            assert_eq!(read_all(&export, "p/passwd"), Err(Errno::ENOENT));
            assert_eq!(ino(&export, "cwd", true), Err(Errno::ENOENT));
        }

        #[test]
        fn magic_links_in_a_proc_mount_are_refused() {
            // An export of `/` holds a real procfs at /proc.
            let policy = crate::server::creds::Policy::of_this_process(None);
            let ex = Executor::new(std::path::Path::new("/"), true, policy).expect("executor");
            let stat = |path: &str, follow: bool| {
                ex.execute(
                    None,
                    Request::Stat {
                        path: rp(path),
                        follow,
                    },
                )
            };
            assert_eq!(stat("/proc/self/root/etc/passwd", true), Err(Errno::ELOOP));
            assert_eq!(stat("/proc/self/root", true), Err(Errno::ELOOP));
            assert_eq!(stat("/proc/self/cwd/x", true), Err(Errno::ELOOP));
            assert_eq!(stat("/proc/thread-self/root/etc", true), Err(Errno::ELOOP));
            let open_fd0 = ex.execute(
                None,
                Request::Open {
                    path: rp("/proc/self/fd/0"),
                    flags: libc::O_RDONLY,
                    mode: 0,
                },
            );
            assert_eq!(open_fd0.err(), Some(Errno::ELOOP));
            // lstat of the magic link itself names the link, not its target.
            let Ok(Reply::Stat(link)) = stat("/proc/self/root", false) else {
                panic!("lstat of a magic link");
            };
            assert_eq!(link.mode & libc::S_IFMT, libc::S_IFLNK);
        }

        #[test]
        fn create_through_dangling_absolute_symlink_lands_inside() {
            let export = Export::new();
            let before = export.outside_names();
            export.symlink("/created", "dangle");
            let outside = export.outside.join("made");
            export.symlink(outside.to_str().expect("utf-8 tempdir"), "dangle_full");
            export.symlink("../../outside/made2", "dangle_rel");
            export.mkdir("outside");

            let flags = libc::O_CREAT | libc::O_WRONLY;
            let handle = export.open("dangle", flags, 0o644);
            export.run(Request::Close { handle }).expect("close");
            assert!(export.host("created").is_file());
            assert!(!std::path::Path::new("/created").exists());

            let full = export.run(Request::Open {
                path: rp("dangle_full"),
                flags,
                mode: 0o644,
            });
            assert_eq!(full.err(), Some(Errno::ENOENT));

            let handle = export.open("dangle_rel", flags, 0o644);
            export.run(Request::Close { handle }).expect("close");
            assert!(export.host("outside/made2").is_file());
            assert_eq!(export.outside_names(), before);
        }

        #[test]
        fn names_outside_land_inside() {
            let export = Export::new();
            let before = export.outside_names();
            export.mkdir("outside");
            export.write("f", b"f");
            export.mkdir("a/b");
            export.symlink("../../..", "a/b/up");

            let rename = export.run(Request::Rename {
                from: rp("f"),
                to: rp("../../outside/renamed"),
                flags: 0,
            });
            assert_eq!(rename, Ok(Reply::Done));
            assert!(export.host("outside/renamed").is_file());

            let link = export.run(Request::Link {
                from: rp("/../outside/renamed"),
                to: rp("a/b/up/outside/linked"),
                follow: false,
            });
            assert_eq!(link, Ok(Reply::Done));
            assert!(export.host("outside/linked").is_file());

            let symlink = export.run(Request::Symlink {
                target: b"/etc/passwd".to_vec(),
                path: rp("../outside/sym"),
            });
            assert_eq!(symlink, Ok(Reply::Done));
            let mkdir = export.run(Request::Mkdir {
                path: rp("/../../outside/dir"),
                mode: 0o755,
            });
            assert_eq!(mkdir, Ok(Reply::Done));
            assert!(export.host("outside/dir").is_dir());

            let unlink = export.run(Request::Unlink {
                path: rp("../outside/secret"),
            });
            assert_eq!(unlink, Err(Errno::ENOENT));
            assert_eq!(export.outside_names(), before);
        }

        #[test]
        fn last_component_dotdot_never_reaches_the_parent_of_root() {
            let export = Export::new();
            let rmdir = export.run(Request::Rmdir { path: rp("/..") });
            assert_eq!(rmdir, Err(Errno::ENOTEMPTY));
            let unlink = export.run(Request::Unlink { path: rp("..") });
            assert_eq!(unlink, Err(Errno::EISDIR));
            let rename = export.run(Request::Rename {
                from: rp(".."),
                to: rp("x"),
                flags: 0,
            });
            assert_eq!(rename, Err(Errno(libc::EBUSY)));
            let link = export.run(Request::Link {
                from: rp("/.."),
                to: rp("x"),
                follow: false,
            });
            assert_eq!(link, Err(Errno::EPERM));
            assert!(std::fs::metadata(&export.outside).is_ok());
        }

        #[test]
        fn nofollow_still_follows_symlinks_before_the_last_name() {
            let export = Export::new();
            export.mkdir("real");
            export.write("real/f", b"x");
            export.symlink("/real", "dir");
            export.symlink("f", "real/l");
            let ino_f = std::fs::metadata(export.host("real/f")).expect("f").ino();
            let ino_l = std::fs::symlink_metadata(export.host("real/l"))
                .expect("l")
                .ino();
            assert_eq!(ino(&export, "dir/f", false), Ok(ino_f));
            assert_eq!(ino(&export, "dir/l", false), Ok(ino_l));
            assert_eq!(ino(&export, "dir/l", true), Ok(ino_f));
            // A trailing slash makes Linux follow even lstat's last name.
            export.symlink("/real", "real/back");
            let ino_real = std::fs::metadata(export.host("real")).expect("real").ino();
            assert_eq!(ino(&export, "real/back/", false), Ok(ino_real));
        }
    }
}
