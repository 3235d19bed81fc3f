//! Reading and writing the stopped program's memory with
//! `process_vm_readv(2)`/`process_vm_writev(2)`, and through
//! `/proc/PID/mem` where the program itself may not write.

use std::io::{IoSlice, IoSliceMut};

use nix::sys::uio::{RemoteIoVec, process_vm_readv, process_vm_writev};
use nix::unistd::Pid;

use crate::errno::Errno;
use crate::proto::MAX_PATH;

const PAGE: u64 = 4096;

/// Reads exactly `len` bytes at `addr`, or EFAULT.
pub fn read_bytes(pid: Pid, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; len];
    if len == 0 {
        return Ok(buf);
    }
    let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
    let remote = [RemoteIoVec { base, len }];
    let n = process_vm_readv(pid, &mut [IoSliceMut::new(&mut buf)], &remote)
        .map_err(|_| Errno::EFAULT)?;
    if n != len {
        return Err(Errno::EFAULT);
    }
    Ok(buf)
}

/// Reads a NUL-terminated string at `addr`, page by page so a string that
/// ends just before an unmapped page is still read.
pub fn read_cstring(pid: Pid, addr: u64) -> Result<Vec<u8>, Errno> {
    if addr == 0 {
        return Err(Errno::EFAULT);
    }
    let mut out = Vec::new();
    let mut at = addr;
    loop {
        let chunk = usize::try_from(PAGE - at % PAGE).unwrap_or(4096);
        let bytes = read_bytes(pid, at, chunk)?;
        if let Some(nul) = bytes.iter().position(|&b| b == 0) {
            out.extend_from_slice(&bytes[..nul]);
            // As the kernel's getname(): PATH_MAX counts the NUL.
            if out.len() >= MAX_PATH {
                return Err(Errno::ENAMETOOLONG);
            }
            return Ok(out);
        }
        out.extend_from_slice(&bytes);
        if out.len() >= MAX_PATH {
            return Err(Errno::ENAMETOOLONG);
        }
        at += PAGE - at % PAGE;
    }
}

/// Writes `bytes` at `addr`, or EFAULT.
pub fn write_bytes(pid: Pid, addr: u64, bytes: &[u8]) -> Result<(), Errno> {
    if bytes.is_empty() {
        return Ok(());
    }
    let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
    let remote = [RemoteIoVec {
        base,
        len: bytes.len(),
    }];
    let n = process_vm_writev(pid, &[IoSlice::new(bytes)], &remote).map_err(|_| Errno::EFAULT)?;
    if n != bytes.len() {
        return Err(Errno::EFAULT);
    }
    Ok(())
}
