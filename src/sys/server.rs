//! Raw syscalls the server needs that rustix does not wrap.

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
