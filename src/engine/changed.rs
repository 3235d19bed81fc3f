//! Which files a change names, for the caches that drop what it makes
//! stale (dirmeta, openahead).
//!
//! Pure: it reads the request and asks `path_of` for an open file's path.

use crate::proto::{Handle, RemotePath, Request, XattrTarget};

/// The paths of the files `req` changes, by their text (`path_of` names
/// the file behind a handle); `None` when they are not all known: a
/// handle of unknown path, or a change whose files have other names too
/// (a file given a name through its handle, an `O_TMPFILE`, may be listed
/// under another name as well).
pub fn paths_changed_by(
    req: &Request,
    path_of: impl Fn(Handle) -> Option<RemotePath>,
) -> Option<Vec<Vec<u8>>> {
    match req {
        Request::Open { path, .. }
        | Request::OpenPlus { path, .. }
        | Request::OpenRead { path, .. }
        | Request::Mkdir { path, .. }
        | Request::Mknod { path, .. }
        | Request::Rmdir { path }
        | Request::Unlink { path }
        | Request::Symlink { path, .. }
        | Request::Chmod { path, .. }
        | Request::Chown { path, .. }
        | Request::Utimens { path, .. }
        | Request::Truncate { path, .. } => Some(vec![path.0.clone()]),
        Request::Rename { from, to, .. } | Request::Link { from, to, .. } => {
            Some(vec![from.0.clone(), to.0.clone()])
        }
        Request::SetXattr { target, .. } | Request::RemoveXattr { target, .. } => match target {
            XattrTarget::Path { path, .. } => Some(vec![path.0.clone()]),
            XattrTarget::Handle(h) => path_of(*h).map(|p| vec![p.0]),
        },
        Request::Write { handle, .. }
        | Request::Pwrite { handle, .. }
        | Request::Ftruncate { handle, .. }
        | Request::Fchmod { handle, .. }
        | Request::Fchown { handle, .. }
        | Request::Futimens { handle, .. }
        | Request::Fallocate { handle, .. }
        | Request::CopyRange { to: handle, .. } => path_of(*handle).map(|p| vec![p.0]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RemotePath {
        RemotePath(s.as_bytes().to_vec())
    }

    #[test]
    fn a_change_names_its_paths_or_says_they_are_unknown() {
        let path_of = |h: Handle| (h.0 == 7).then(|| rp("/d/open"));
        let paths = |req: &Request| paths_changed_by(req, path_of);
        assert_eq!(
            paths(&Request::Rename {
                from: rp("/a"),
                to: rp("/b"),
                flags: 0
            }),
            Some(vec![b"/a".to_vec(), b"/b".to_vec()])
        );
        assert_eq!(
            paths(&Request::Write {
                handle: Handle(7),
                data: vec![1]
            }),
            Some(vec![b"/d/open".to_vec()])
        );
        assert_eq!(
            paths(&Request::Write {
                handle: Handle(8),
                data: vec![1]
            }),
            None,
            "a file whose path is not known"
        );
        assert_eq!(
            paths(&Request::LinkHandle {
                handle: Handle(7),
                to: rp("/d/named"),
                empty_path: true
            }),
            None,
            "a file named through its handle may have other names"
        );
    }
}
