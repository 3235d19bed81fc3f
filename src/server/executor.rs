//! Executes one [`Request`] with real syscalls beneath the export root.
//!
//! This file only dispatches and applies `--read-only`; each syscall family
//! lives in its own module, and confinement in [`super::resolve`].

use std::os::fd::AsFd;
use std::path::Path;

use super::files::OpenFlags;
use super::handles::Handles;
use super::resolve::Root;
use super::{dirs, files, meta, names, uname, xattr};
use crate::errno::Errno;
use crate::proto::{Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot open export root {path}: {source}")]
    OpenRoot {
        path: String,
        source: std::io::Error,
    },
}

/// One session's view of the export: the root and the session's open handles.
/// Dropping it closes every handle of the session.
#[derive(Debug)]
pub struct Executor {
    root: Root,
    handles: Handles,
    read_only: bool,
}

impl Executor {
    /// Opens `root` as the export root of a new session.
    pub fn new(root: &Path, read_only: bool) -> Result<Self, ExecutorError> {
        let opened = Root::new(root).map_err(|source| ExecutorError::OpenRoot {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Self {
            root: opened,
            handles: Handles::default(),
            read_only,
        })
    }

    /// Runs one request. Blocking: call it from a blocking thread. Safe to
    /// call concurrently; requests on different handles do not serialise.
    pub fn execute(&self, req: Request) -> Response {
        if self.read_only && mutates(&req) {
            return Err(Errno::EROFS);
        }
        let root = &self.root;
        let handles = &self.handles;
        match req {
            Request::Open { path, flags, mode } => {
                files::open(root, handles, &path, OpenFlags::new(flags, mode))
            }
            Request::Close { handle } => {
                handles.remove(handle)?;
                Ok(crate::proto::Reply::Done)
            }
            Request::Read { handle, len } => files::read(handles.get(handle)?.as_fd(), len),
            Request::Pread {
                handle,
                len,
                offset,
            } => files::pread(handles.get(handle)?.as_fd(), len, offset),
            Request::Write { handle, data } => files::write(handles.get(handle)?.as_fd(), &data),
            Request::Pwrite {
                handle,
                data,
                offset,
            } => files::pwrite(handles.get(handle)?.as_fd(), &data, offset),
            Request::Lseek {
                handle,
                offset,
                whence,
            } => files::lseek(handles.get(handle)?.as_fd(), offset, whence),
            Request::Fsync { handle, data_only } => {
                files::fsync(handles.get(handle)?.as_fd(), data_only)
            }
            Request::Fstat { handle } => meta::fstat(handles.get(handle)?.as_fd()),
            Request::Getdents { handle, bytes } => {
                dirs::getdents(handles.get(handle)?.as_fd(), bytes)
            }
            Request::SetFlags { handle, flags } => {
                files::set_flags(handles.get(handle)?.as_fd(), flags)
            }
            Request::Ftruncate { handle, len } => {
                files::ftruncate(handles.get(handle)?.as_fd(), len)
            }
            Request::Fchmod { handle, mode } => meta::fchmod(handles.get(handle)?.as_fd(), mode),
            Request::Fchown { handle, uid, gid } => {
                meta::fchown(handles.get(handle)?.as_fd(), uid, gid)
            }
            Request::Futimens { handle, times } => {
                meta::futimens(handles.get(handle)?.as_fd(), times)
            }
            Request::Fstatfs { handle } => meta::fstatfs(handles.get(handle)?.as_fd()),
            Request::Stat { path, follow } => meta::stat(root, &path, follow),
            Request::Access { path, mode, flags } => {
                meta::access(root, &path, mode, flags, self.read_only)
            }
            Request::Readlink { path } => names::readlink(root, &path),
            Request::Mkdir { path, mode } => dirs::mkdir(root, &path, mode),
            Request::Rmdir { path } => dirs::rmdir(root, &path),
            Request::Unlink { path } => names::unlink(root, &path),
            Request::Rename { from, to, flags } => names::rename(root, &from, &to, flags),
            Request::Link { from, to, follow } => names::link(root, &from, &to, follow),
            Request::Symlink { target, path } => names::symlink(root, &target, &path),
            Request::Chmod { path, mode, follow } => meta::chmod(root, &path, mode, follow),
            Request::Chown {
                path,
                uid,
                gid,
                follow,
            } => meta::chown(root, &path, uid, gid, follow),
            Request::Utimens {
                path,
                times,
                follow,
            } => meta::utimens(root, &path, times, follow),
            Request::Truncate { path, len } => files::truncate(root, &path, len),
            Request::Statfs { path } => meta::statfs(root, &path),
            Request::CheckDir { path } => dirs::check_dir(root, &path),
            Request::GetXattr { target, name, size } => {
                xattr::get(root, handles, &target, &name, size)
            }
            Request::ListXattr { target, size } => xattr::list(root, handles, &target, size),
            Request::SetXattr {
                target,
                name,
                value,
                flags,
            } => xattr::set(root, handles, &target, &name, &value, flags),
            Request::RemoveXattr { target, name } => xattr::remove(root, handles, &target, &name),
            Request::Uname => uname::uname(),
        }
    }
}

/// Whether a request would change the export, and so fails with `EROFS`
/// under `--read-only` before anything is resolved or opened.
fn mutates(req: &Request) -> bool {
    match req {
        Request::Open { flags, mode, .. } => OpenFlags::new(*flags, *mode).writes(),
        Request::Write { .. }
        | Request::Pwrite { .. }
        | Request::Ftruncate { .. }
        | Request::Fchmod { .. }
        | Request::Fchown { .. }
        | Request::Futimens { .. }
        | Request::Mkdir { .. }
        | Request::Rmdir { .. }
        | Request::Unlink { .. }
        | Request::Rename { .. }
        | Request::Link { .. }
        | Request::Symlink { .. }
        | Request::Chmod { .. }
        | Request::Chown { .. }
        | Request::Utimens { .. }
        | Request::Truncate { .. }
        | Request::SetXattr { .. }
        | Request::RemoveXattr { .. } => true,
        Request::Close { .. }
        | Request::Read { .. }
        | Request::Pread { .. }
        | Request::Lseek { .. }
        | Request::Fsync { .. }
        | Request::Fstat { .. }
        | Request::Getdents { .. }
        | Request::SetFlags { .. }
        | Request::Fstatfs { .. }
        | Request::Stat { .. }
        | Request::Access { .. }
        | Request::Readlink { .. }
        | Request::Statfs { .. }
        | Request::CheckDir { .. }
        | Request::GetXattr { .. }
        | Request::ListXattr { .. }
        | Request::Uname => false,
    }
}
