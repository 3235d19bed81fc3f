//! The open-file limit: rscq and rscq-server hold an fd (or two) for every
//! remote connection and open file, so they raise their own limit as far
//! as allowed, and say once, plainly, when it is the limit that stops them.

use std::sync::atomic::{AtomicBool, Ordering};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The kernel's ceiling for any process's limit (`fs.nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Raises this process's limit on open files (setrlimit(2),
/// `RLIMIT_NOFILE`): the hard limit to `fs.nr_open` where the process may
/// (`CAP_SYS_RESOURCE`, e.g. root), and the soft limit to the hard one.
/// Returns the new soft limit (`None`: unlimited). Children forked later
/// inherit it, so a caller that runs a program with the limit it was given
/// raises it only after forking that program.
pub fn raise_fd_limit() -> std::io::Result<Option<u64>> {
    let limit = getrlimit(Resource::Nofile);
    if let (Some(ceiling), Some(hard)) = (nr_open(), limit.maximum)
        && ceiling > hard
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(ceiling),
                maximum: Some(ceiling),
            },
        )
        .is_ok()
    {
        return Ok(Some(ceiling));
    }
    if limit.current != limit.maximum {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
    }
    Ok(limit.maximum)
}

static WARNED: AtomicBool = AtomicBool::new(false);

/// Whether `e` is the process (EMFILE) or the system (ENFILE) running out
/// of file descriptors; the first time, says so on stderr with the limit,
/// as `who` (`rscq`, `rscq-server`).
pub fn note_fd_exhaustion(e: &std::io::Error, who: &str) -> bool {
    let out = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
    if out && !WARNED.swap(true, Ordering::Relaxed) {
        let limit = getrlimit(Resource::Nofile)
            .current
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string());
        eprintln!(
            "{who}: out of file descriptors ({e}; open-file limit {limit}): further remote connections and files fail with EMFILE until some close; raise the hard limit (ulimit -Hn, LimitNOFILE=) to go further"
        );
    }
    out
}
