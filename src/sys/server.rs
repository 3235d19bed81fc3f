//! Raw syscalls the server needs that rustix does not wrap.
//!
//! Wrappers only: must not resolve paths or decide rights.

use std::os::fd::{AsRawFd, BorrowedFd};

use crate::errno::Errno;

/// `getdents64(2)`: one call, filling `buf` with `struct linux_dirent64`
/// records and returning how many bytes it wrote (0 at end of directory).
///
/// rustix's `RawDir` refills its buffer by itself; the protocol needs
/// exactly one kernel call per request so the directory offset advances by
/// what the client is told, no more.
pub fn getdents64(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is a live, exclusively borrowed allocation of
    // `buf.len()` bytes and the kernel writes at most that many into it. The
    // fd is borrowed, so it stays open for the duration of the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            fd.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if ret < 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    usize::try_from(ret).map_err(|_| Errno::EIO)
}

/// The two words of `statfs(2)`'s `f_fsid`, which rustix keeps private.
pub fn fsid_words(fsid: rustix::fs::Fsid) -> [i32; 2] {
    // SAFETY: `Fsid` is `#[repr(C)]` with a single `[c_int; 2]` field (the
    // kernel's `__kernel_fsid_t`), and `c_int` is `i32` on Linux; transmute
    // checks at compile time that the sizes agree. Every bit pattern is a
    // valid `[i32; 2]`.
    unsafe { std::mem::transmute::<rustix::fs::Fsid, [i32; 2]>(fsid) }
}

/// `setfsuid(2)` of the calling thread only. Returns the file-system uid
/// in force afterwards: the call reports no error, so a change the thread
/// may not make shows as the old value.
pub fn set_thread_fsuid(uid: u32) -> u32 {
    // SAFETY: setfsuid takes one integer and touches no memory of ours; the
    // raw syscall (not a libc wrapper that broadcasts to every thread)
    // changes only the calling thread's credentials.
    unsafe { libc::syscall(libc::SYS_setfsuid, uid) };
    // SAFETY: as above; -1 is never a valid id, so this only reads back the
    // current value.
    let now = unsafe { libc::syscall(libc::SYS_setfsuid, u32::MAX) };
    u32::try_from(now).unwrap_or(u32::MAX)
}

/// `setfsgid(2)` of the calling thread only, as [`set_thread_fsuid`].
pub fn set_thread_fsgid(gid: u32) -> u32 {
    // SAFETY: setfsgid takes one integer and touches no memory of ours; the
    // raw syscall changes only the calling thread's credentials.
    unsafe { libc::syscall(libc::SYS_setfsgid, gid) };
    // SAFETY: as above; -1 only reads back the current value.
    let now = unsafe { libc::syscall(libc::SYS_setfsgid, u32::MAX) };
    u32::try_from(now).unwrap_or(u32::MAX)
}

/// `unshare(CLONE_FS)`: the calling thread gets its own umask, cwd and root
/// (copies of the process's), so a umask set for one call is its alone.
pub fn unshare_thread_fs() -> Result<(), Errno> {
    // SAFETY: the danger rustix names is `CLONE_FILES`, which would split the
    // fd table between threads; `CLONE_FS` only copies the umask, cwd and
    // root directory, which no fd depends on (every path the server opens is
    // relative to an fd it holds).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::FS) }.map_err(Errno::from)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, 0)` on an fd known by its number only: a
/// copy of whatever file `fd` names in this process now, or EBADF. The
/// number may have been closed, or reused for another file, since the
/// caller learnt it; the caller checks the copy is the file it means.
pub fn dup_number(fd: std::os::fd::RawFd) -> Result<std::os::fd::OwnedFd, Errno> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC takes no pointer; on a number that names no
    // open file the kernel fails with EBADF, and it never closes or changes
    // the file `fd` names, so no other owner of that number is affected.
    let ret = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if ret < 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    // SAFETY: `ret` is a new descriptor the kernel just made for this
    // process and nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(ret) })
}

/// The most of `struct tcp_info` rscq carries: the kernel's is 248 bytes
/// today and only grows at its end, so a program asking for more gets what
/// its kernel gives (`getsockopt` reports the length it wrote).
pub const TCP_INFO_MAX: usize = 512;

/// `getsockopt(fd, IPPROTO_TCP, TCP_INFO)`: the kernel's `struct tcp_info`
/// of a TCP socket, as many bytes as it wrote. rustix does not wrap it.
pub fn tcp_info(fd: BorrowedFd<'_>) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; TCP_INFO_MAX];
    let mut len = libc::socklen_t::try_from(buf.len()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `buf` is a live, exclusively borrowed allocation of `len`
    // bytes and the kernel writes at most `len` bytes into it, then the
    // length it wrote into `len`, a live `socklen_t`. The fd is borrowed,
    // so it stays open for the duration of the call.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    if ret < 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    buf.truncate(usize::try_from(len).map_err(|_| Errno::EIO)?);
    Ok(buf)
}

/// `setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name)`: `name` up to its
/// first NUL (an empty name unbinds). rustix does not wrap it.
pub fn bind_to_device(fd: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let len = name.iter().position(|b| *b == 0).unwrap_or(name.len());
    let len_arg = libc::socklen_t::try_from(len).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `name` is a live borrowed slice of at least `len` bytes,
    // which the kernel only reads. The fd is borrowed, so it stays open for
    // the duration of the call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            name.as_ptr().cast(),
            len_arg,
        )
    };
    if ret < 0 {
        return Err(Errno::from_io(&std::io::Error::last_os_error()));
    }
    Ok(())
}
