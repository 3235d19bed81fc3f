//! Socket calls rustix has no wrapper for.

use std::os::fd::{AsFd, AsRawFd};

use crate::errno::Errno;

/// Attaches a classic BPF filter that drops every packet: the socket still
/// sends, but nothing reaches it (`SO_ATTACH_FILTER`, socket(7)). Needs no
/// privilege.
pub fn drop_all_incoming(socket: impl AsFd) -> Result<(), Errno> {
    // BPF_RET | BPF_K with k = 0: keep 0 bytes of each packet.
    let mut program = [libc::sock_filter {
        code: 0x06,
        jt: 0,
        jf: 0,
        k: 0,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    let len =
        libc::socklen_t::try_from(size_of::<libc::sock_fprog>()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: `fprog` points at `program`, both live across the call, and
    // `len` is the size of `fprog`; the kernel copies the filter in.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::from_ref(&fprog).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_io(&std::io::Error::last_os_error()))
    }
}
