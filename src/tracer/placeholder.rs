//! Placeholders: what a remote file is in the program's fd table.
//!
//! Each is the write end of a FIFO rscq made in a directory of its own
//! (`mkfifo(3)`, fifo(7)), which the program opens itself, with its own
//! credentials, by path. The kernel then owns dup, fork, exec and close, and
//! rscq learns of the last close when its read end hangs up.
//!
//! The FIFO is owned by the opening thread's fsuid and fsgid, with mode
//! 0600, in a directory of mode 0711, and is unlinked as soon as the program
//! has opened it. Opening rscq's own `/proc/PID/fd/N` instead would need the
//! program to pass ptrace's access check on rscq, which it fails after
//! `seteuid()` to another user.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use crate::errno::Errno;

/// The directory the run's placeholders are made in; removed on drop.
#[derive(Debug)]
pub struct PlaceholderDir {
    path: PathBuf,
    dir: OwnedFd,
    next: u64,
}

/// A FIFO made for one open, before and while the program opens it.
#[derive(Debug)]
pub struct Placeholder {
    /// Names the placeholder in the registry and in `/proc/PID/fd` links.
    pub key: u64,
    /// rscq's end; it hangs up when the program's last copy is closed.
    pub read_end: OwnedFd,
    /// The absolute path the program opens.
    pub path: Vec<u8>,
}

impl PlaceholderDir {
    /// Makes a new directory for placeholders under `parent`.
    pub fn create(parent: &Path) -> std::io::Result<Self> {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempt = 0u32;
        loop {
            let path = parent.join(format!("rscq-{pid}-{nanos:08x}{attempt}"));
            match rustix::fs::mkdir(&path, Mode::RWXU) {
                Ok(()) => {
                    // Every user may reach a FIFO it knows the name of; none
                    // may list them. The mode is set apart from the umask.
                    rustix::fs::chmod(&path, Mode::from_raw_mode(0o711))?;
                    let dir = rustix::fs::open(
                        &path,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    return Ok(Self { path, dir, next: 1 });
                }
                Err(rustix::io::Errno::EXIST) if attempt < 100 => attempt += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The directory's path, for the registry to recognise placeholders.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes a FIFO owned by `uid`:`gid` (when rscq may give it away) and
    /// opens its read end.
    pub fn make(&mut self, uid: u32, gid: u32) -> Result<Placeholder, Errno> {
        let key = self.next;
        self.next += 1;
        let name = key.to_string();
        let dir = self.dir.as_fd();
        rustix::fs::mknodat(dir, &name, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0)?;
        let ready = (|| {
            // mknod applied rscq's umask; a FIFO needs only its owner's bits.
            rustix::fs::chmodat(dir, &name, Mode::RUSR | Mode::WUSR, AtFlags::empty())?;
            let ids = (
                Some(rustix::process::Uid::from_raw(uid)),
                Some(rustix::process::Gid::from_raw(gid)),
            );
            match rustix::fs::chownat(dir, &name, ids.0, ids.1, AtFlags::empty()) {
                // An unprivileged rscq traces programs of its own user only.
                Ok(()) | Err(rustix::io::Errno::PERM) => {}
                Err(e) => return Err(e),
            }
            // Non-blocking: no writer exists yet; once one does, the program's
            // open finds this reader and does not block either.
            rustix::fs::openat(
                dir,
                &name,
                OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })();
        match ready {
            Ok(read_end) => {
                let mut path = self.path.as_os_str().as_encoded_bytes().to_vec();
                path.push(b'/');
                path.extend_from_slice(name.as_bytes());
                Ok(Placeholder {
                    key,
                    read_end,
                    path,
                })
            }
            Err(e) => {
                self.remove(key);
                Err(e.into())
            }
        }
    }

    /// A new path in the directory for a local copy of a remote file (an
    /// executable the program runs); removed with the directory.
    pub fn copy_path(&mut self) -> Vec<u8> {
        let key = self.next;
        self.next += 1;
        let mut path = self.path.as_os_str().as_encoded_bytes().to_vec();
        path.extend_from_slice(format!("/exec-{key}").as_bytes());
        path
    }

    /// Writes `bytes` as a file every user may read (the fast path's
    /// library, which the program's loader opens with its credentials);
    /// removed with the directory. Returns its path.
    pub fn write_shared(&self, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = self.path.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)?;
        file.write_all(bytes)?;
        // The umask may have taken bits the loader needs.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        Ok(path)
    }

    /// Unlinks placeholder `key`'s FIFO; the fds opened on it live on.
    pub fn remove(&self, key: u64) {
        let _ = rustix::fs::unlinkat(self.dir.as_fd(), key.to_string(), AtFlags::empty());
    }
}

impl Drop for PlaceholderDir {
    fn drop(&mut self) {
        // FIFOs whose open never ended (the program died in it), and the
        // directories of other remotes' shadow files.
        if let Ok(entries) = std::fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir_all(entry.path());
                } else {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The placeholder key in a `/proc/PID/fd` link, if the link names a FIFO
/// of directory `dir` (unlinked or not yet).
pub fn key_of(dir: &[u8], link: &[u8]) -> Option<u64> {
    let name = link.strip_prefix(dir)?.strip_prefix(b"/")?;
    let name = name.strip_suffix(b" (deleted)").unwrap_or(name);
    if name.first() == Some(&b'0') || name.is_empty() {
        return None;
    }
    std::str::from_utf8(name).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_name_their_key() {
        assert_eq!(key_of(b"/tmp/rscq-1-a0", b"/tmp/rscq-1-a0/12"), Some(12));
        assert_eq!(
            key_of(b"/tmp/rscq-1-a0", b"/tmp/rscq-1-a0/7 (deleted)"),
            Some(7)
        );
        assert_eq!(key_of(b"/tmp/rscq-1-a0", b"/tmp/rscq-1-a01/7"), None);
        assert_eq!(key_of(b"/tmp/rscq-1-a0", b"/tmp/rscq-1-a0/x"), None);
        assert_eq!(key_of(b"/tmp/rscq-1-a0", b"/tmp/rscq-1-a0/07"), None);
        assert_eq!(key_of(b"/tmp/rscq-1-a0", b"pipe:[12]"), None);
    }

    #[test]
    fn a_placeholder_hangs_up_when_its_writer_closes() {
        let parent = tempfile::tempdir().expect("tempdir");
        let mut dir = PlaceholderDir::create(parent.path()).expect("dir");
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let p = dir.make(uid, gid).expect("make");
        let st = rustix::fs::stat(
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&p.path),
        )
        .expect("stat");
        assert_eq!(st.st_mode & 0o7777, 0o600);
        assert_eq!((st.st_uid, st.st_gid), (uid, gid));
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .open(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&p.path))
            .expect("open writer");
        dir.remove(p.key);
        let link = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&writer)
        ))
        .expect("link");
        let dir_bytes = dir.path().as_os_str().as_encoded_bytes().to_vec();
        assert_eq!(
            key_of(&dir_bytes, link.as_os_str().as_encoded_bytes()),
            Some(p.key)
        );
        let hup = |fd: &OwnedFd| {
            let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let zero = rustix::event::Timespec::default();
            rustix::event::poll(&mut fds, Some(&zero)).expect("poll");
            fds[0].revents().contains(rustix::event::PollFlags::HUP)
        };
        assert!(!hup(&p.read_end));
        drop(writer);
        assert!(hup(&p.read_end));
        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists());
    }
}
