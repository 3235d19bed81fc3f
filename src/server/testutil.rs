//! A real export in a temporary directory, for the server's unit tests.
//!
//! Tests only.

use std::path::{Path, PathBuf};

use super::Executor;
use crate::proto::{Handle, RemotePath, Reply, Request, Response};

/// `<tmp>/root` is exported; `<tmp>/outside` is a sibling no request may
/// reach.
pub(super) struct Export {
    _dir: tempfile::TempDir,
    pub(super) root: PathBuf,
    pub(super) outside: PathBuf,
    pub(super) ex: Executor,
}

impl Export {
    pub(super) fn new() -> Self {
        Self::with_mode(false)
    }

    pub(super) fn read_only() -> Self {
        Self::with_mode(true)
    }

    fn with_mode(read_only: bool) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).expect("mkdir root");
        std::fs::create_dir(&outside).expect("mkdir outside");
        std::fs::write(outside.join("secret"), b"outside").expect("write secret");
        let policy = super::creds::Policy::of_this_process(None);
        let ex = Executor::new(&root, read_only, policy).expect("executor");
        Self {
            _dir: dir,
            root,
            outside,
            ex,
        }
    }

    pub(super) fn run(&self, req: Request) -> Response {
        self.ex.execute(None, req)
    }

    /// Runs `req` with the rights of `caller`.
    pub(super) fn run_as(&self, caller: &crate::proto::Credentials, req: Request) -> Response {
        self.ex.execute(Some(caller), req)
    }

    /// The host path of an export path.
    pub(super) fn host(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub(super) fn write(&self, path: &str, data: &[u8]) {
        std::fs::write(self.host(path), data).expect("write fixture");
    }

    pub(super) fn mkdir(&self, path: &str) {
        std::fs::create_dir_all(self.host(path)).expect("mkdir fixture");
    }

    pub(super) fn symlink(&self, target: &str, path: &str) {
        std::os::unix::fs::symlink(target, self.host(path)).expect("symlink fixture");
    }

    /// Opens through the executor and returns the handle.
    pub(super) fn open(&self, path: &str, flags: i32, mode: u32) -> Handle {
        match self.run(Request::Open {
            path: rp(path),
            flags,
            mode,
        }) {
            Ok(Reply::Opened { handle, .. }) => handle,
            other => panic!("open {path}: {other:?}"),
        }
    }

    /// The names directly inside the outside directory, to prove nothing
    /// was created or removed there.
    pub(super) fn outside_names(&self) -> Vec<String> {
        names_in(&self.outside)
    }
}

pub(super) fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

pub(super) fn rp(path: &str) -> RemotePath {
    RemotePath(path.as_bytes().to_vec())
}
