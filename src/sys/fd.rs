//! Copies of another process's file descriptors (`pidfd_getfd(2)`), which
//! the tracer and the engine take to look at or drive a program's socket
//! or file without going through the program.
//!
//! Wrappers only: must not decide whose fd is copied or when.

use std::os::fd::OwnedFd;

/// A copy of fd `fd` of process `tgid` (which must be a thread-group
/// leader), sharing its open file description.
pub fn dup_fd(tgid: i32, fd: i32) -> Option<OwnedFd> {
    // A failed call's result (negative) names no fd; rustix asserts that.
    if fd < 0 {
        return None;
    }
    let pid = rustix::process::Pid::from_raw(tgid)?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).ok()
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::dup_fd;

    #[test]
    fn a_copy_shares_the_open_file() {
        let file = tempfile::tempfile().unwrap();
        let tgid = i32::try_from(std::process::id()).unwrap();
        let copy = dup_fd(tgid, file.as_raw_fd()).expect("pidfd_getfd of our own fd");
        let a = rustix::fs::fstat(&file).unwrap();
        let b = rustix::fs::fstat(&copy).unwrap();
        assert_eq!((a.st_dev, a.st_ino), (b.st_dev, b.st_ino));
        assert!(dup_fd(tgid, -1).is_none());
    }
}
