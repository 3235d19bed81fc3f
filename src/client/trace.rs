//! Where `--trace` lines go: stderr (with rscq's `rscq: ` prefix) or the
//! `--trace-file` (as strace's `-o`, without it), each line whole, with the
//! time of day first under `--trace-time`.
//!
//! Only writes lines the tracer rendered (`crate::syscall::describe`);
//! must not decide what is traced or how a call is shown.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::syscall::describe::time_of_day;

/// The destination of `--trace` lines, shared by the engine's clones.
#[derive(Debug)]
pub(super) struct TraceSink {
    /// `None`: stderr.
    file: Option<Mutex<BufWriter<File>>>,
    time: bool,
}

impl TraceSink {
    /// Lines to stderr.
    pub(super) fn stderr(time: bool) -> Self {
        Self { file: None, time }
    }

    /// Lines to `path`, created or truncated as strace's `-o` does.
    pub(super) fn file(path: &Path, time: bool) -> std::io::Result<Self> {
        let file = File::create(path)?;
        Ok(Self {
            file: Some(Mutex::new(BufWriter::new(file))),
            time,
        })
    }

    /// Writes one line. A trace file that cannot be written loses the
    /// line: the program must not fail because its trace did.
    pub(super) fn line(&self, line: &str) {
        let stamp = if self.time {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            format!("{} ", time_of_day(now))
        } else {
            String::new()
        };
        match &self.file {
            None => eprintln!("rscq: {stamp}{line}"),
            Some(file) => {
                if let Ok(mut out) = file.lock() {
                    let _ = writeln!(out, "{stamp}{line}");
                    // Whole lines, readable while the program runs (tail -f).
                    let _ = out.flush();
                }
            }
        }
    }
}
