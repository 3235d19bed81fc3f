//! Executes one [`Request`] with real syscalls beneath the export root.

use std::path::Path;

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
#[derive(Debug)]
pub struct Executor {}

impl Executor {
    /// Opens `root` as the export root of a new session.
    pub fn new(_root: &Path, _read_only: bool) -> Result<Self, ExecutorError> {
        Ok(Self {})
    }

    /// Runs one request. Blocking: call it from a blocking thread.
    pub fn execute(&self, _req: Request) -> Response {
        Err(Errno::ENOSYS)
    }
}
