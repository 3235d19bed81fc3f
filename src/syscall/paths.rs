//! Which paths belong to a mount.
//!
//! The local part of a path, up to where it enters a mount, is judged
//! lexically: a local symlink that points into a mount is not followed (README,
//! "What does not work yet"). From the mount on, the components are the
//! server's to resolve ([`MountTable::locate`]).
//!
//! Pure: must not resolve anything on either machine.

use crate::proto::RemotePath;

/// One `--mount LOCAL=REMOTE`, both absolute and normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    pub local: Vec<u8>,
    pub remote: Vec<u8>,
}

/// Which of the run's remotes serves a mount (0: the default one; the
/// client's list of connections is in the same order).
pub type RemoteIndex = usize;

/// All mounts, longest local prefix first so nested mounts win, each with
/// the remote that serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    mounts: Vec<MountPoint>,
    /// `on[i]` serves `mounts[i]`.
    on: Vec<RemoteIndex>,
}

impl MountTable {
    /// Mounts all served by the default remote.
    pub fn new(mounts: Vec<MountPoint>) -> Self {
        Self::placed(mounts.into_iter().map(|m| (m, 0)).collect())
    }

    /// Mounts each served by its remote.
    pub fn placed(mut mounts: Vec<(MountPoint, RemoteIndex)>) -> Self {
        for (m, _) in &mut mounts {
            m.local = normalize(&m.local);
            m.remote = normalize(&m.remote);
        }
        mounts.sort_by_key(|(m, _)| std::cmp::Reverse(m.local.len()));
        let (mounts, on) = mounts.into_iter().unzip();
        Self { mounts, on }
    }

    /// The remote serving the normalized absolute `local`, if a mount
    /// holds it (the longest prefix wins).
    pub fn remote_of(&self, local: &[u8]) -> Option<RemoteIndex> {
        self.holder(local).and_then(|i| self.on.get(i).copied())
    }

    /// The mounts remote `on` serves, alone: where that server's own
    /// absolute paths show (a symlink target it gives).
    pub fn only_on(&self, on: RemoteIndex) -> MountTable {
        let (mounts, served): (Vec<_>, Vec<_>) = self
            .mounts
            .iter()
            .zip(&self.on)
            .filter(|&(_, &r)| r == on)
            .map(|(m, &r)| (m.clone(), r))
            .unzip();
        Self { mounts, on: served }
    }

    /// Whether more than one remote serves the mounts.
    pub fn several_remotes(&self) -> bool {
        self.on.iter().any(|&r| Some(r) != self.on.first().copied())
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }

    /// Every mount's normalized local path.
    pub fn local_paths(&self) -> impl Iterator<Item = &[u8]> {
        self.mounts.iter().map(|m| m.local.as_slice())
    }

    /// Maps a normalized absolute local path to the remote path it names,
    /// or `None` when it lies outside every mount.
    pub fn to_remote(&self, local: &[u8]) -> Option<RemotePath> {
        self.mounts.iter().find_map(|m| {
            let rest = strip_dir_prefix(local, &m.local)?;
            let mut remote = m.remote.clone();
            if !rest.is_empty() {
                if remote.last() != Some(&b'/') {
                    remote.push(b'/');
                }
                remote.extend_from_slice(rest);
            }
            Some(RemotePath(remote))
        })
    }
}

impl MountTable {
    /// The mount holding the normalized absolute `local`, as an index.
    fn holder(&self, local: &[u8]) -> Option<usize> {
        self.mounts
            .iter()
            .position(|m| strip_dir_prefix(local, &m.local).is_some())
    }

    /// The remote path that `path` (relative to the absolute, normalized
    /// directory `base` unless it is absolute) names, or `None` when it ends
    /// outside every mount.
    ///
    /// The walk is lexical only up to the last point where it enters a mount
    /// (or leaves one by `..` at its root into another): from there on the
    /// components travel as spelled, `.`, `..` and trailing slashes included,
    /// so the server resolves them one at a time as the kernel would
    /// (`a/b/..` is `a` only when `b` is a directory, and a final `.` or `..`
    /// is not a name an `rmdir` or `rename` may act on).
    pub fn locate(&self, base: &[u8], path: &[u8]) -> Option<RemotePath> {
        self.locate_on(base, path).map(|(remote, _)| remote)
    }

    /// [`MountTable::locate`], with the remote that serves the mount the
    /// path ends in.
    pub fn locate_on(&self, base: &[u8], path: &[u8]) -> Option<(RemotePath, RemoteIndex)> {
        let mut parts: Vec<&[u8]> = Vec::new();
        if path.first() != Some(&b'/') {
            parts.extend(base.split(|&b| b == b'/').filter(|c| !c.is_empty()));
        }
        let joined = |parts: &[&[u8]]| -> Vec<u8> {
            if parts.is_empty() {
                return b"/".to_vec();
            }
            let mut out = Vec::new();
            for p in parts {
                out.push(b'/');
                out.extend_from_slice(p);
            }
            out
        };
        let mut holder = self.holder(&joined(&parts));
        // Where the spelled rest starts, and the lexical path up to there.
        let mut anchor = (0, joined(&parts));
        let mut start = 0;
        for comp in path.split(|&b| b == b'/') {
            let end = start + comp.len();
            match comp {
                b"" | b"." => {}
                b".." => {
                    parts.pop();
                }
                name => parts.push(name),
            }
            if matches!(comp, b"" | b".") {
                start = end + 1;
                continue;
            }
            let here = joined(&parts);
            let now = self.holder(&here);
            if now != holder {
                holder = now;
                anchor = (end, here);
            }
            start = end + 1;
        }
        let mut remote = self.to_remote(&anchor.1)?;
        let on = self.remote_of(&anchor.1).unwrap_or(0);
        let rest = &path[anchor.0.min(path.len())..];
        let rest_trimmed = {
            let lead = rest.iter().take_while(|&&b| b == b'/').count();
            &rest[lead..]
        };
        if !rest_trimmed.is_empty() {
            if remote.0.last() != Some(&b'/') {
                remote.0.push(b'/');
            }
            remote.0.extend_from_slice(rest_trimmed);
        } else if path.ends_with(b"/") && remote.0.last() != Some(&b'/') {
            remote.0.push(b'/');
        }
        Some((remote, on))
    }

    /// The local path that names `remote` through a mount: the inverse of
    /// [`MountTable::to_remote`], through the mount with the longest remote
    /// prefix whose local path is not shadowed by a nested mount.
    pub fn to_local(&self, remote: &[u8]) -> Option<Vec<u8>> {
        let mut best: Option<(usize, Vec<u8>)> = None;
        for m in &self.mounts {
            let Some(rest) = strip_dir_prefix(remote, &m.remote) else {
                continue;
            };
            let mut local = m.local.clone();
            if !rest.is_empty() {
                local.push(b'/');
                local.extend_from_slice(rest);
            }
            let maps_back = self.to_remote(&local).is_some_and(|r| r.0 == remote);
            if maps_back && best.as_ref().is_none_or(|(len, _)| m.remote.len() > *len) {
                best = Some((m.remote.len(), local));
            }
        }
        best.map(|(_, local)| local)
    }

    /// Whether walking `path` component by component (from `base` when it
    /// is relative) ever stands inside a mount, even if `..` leads back out.
    /// Such a path cannot be handed to the kernel as spelled: the mount
    /// directory does not exist locally.
    pub fn passes_through(&self, base: &[u8], path: &[u8]) -> bool {
        let mut parts: Vec<&[u8]> = Vec::new();
        let start: &[u8] = if path.first() == Some(&b'/') {
            b""
        } else {
            base
        };
        let comps = start
            .split(|&b| b == b'/')
            .chain(path.split(|&b| b == b'/'));
        for comp in comps {
            match comp {
                b"" | b"." => continue,
                b".." => {
                    parts.pop();
                    continue;
                }
                c => parts.push(c),
            }
            let joined: Vec<u8> = parts
                .iter()
                .flat_map(|p| [b"/".as_slice(), p].concat())
                .collect();
            if self.to_remote(&joined).is_some() {
                return true;
            }
        }
        false
    }
}

/// `path` with `prefix` removed when `prefix` is a whole-component ancestor
/// (or equal); the rest has no leading slash.
fn strip_dir_prefix<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if prefix == b"/" {
        return path.strip_prefix(b"/");
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        return Some(rest);
    }
    rest.strip_prefix(b"/")
}

/// The kernel's limit on symlinks followed in one lookup (`MAXSYMLINKS`).
pub const MAX_SYMLINKS: usize = 40;

/// Joins `path` to the absolute directory `base` (ignored when `path` is
/// absolute) and normalizes the result.
pub fn join(base: &[u8], path: &[u8]) -> Vec<u8> {
    if path.first() == Some(&b'/') {
        return normalize(path);
    }
    let mut joined = base.to_vec();
    joined.push(b'/');
    joined.extend_from_slice(path);
    normalize(&joined)
}

/// Collapses `//`, `.` and `..` in an absolute path, as if no component were
/// a symlink. `..` at the root stays at the root, as the kernel does.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> MountTable {
        MountTable::new(vec![
            MountPoint {
                local: b"/remote".to_vec(),
                remote: b"/".to_vec(),
            },
            MountPoint {
                local: b"/remote/etc".to_vec(),
                remote: b"/srv/etc".to_vec(),
            },
            MountPoint {
                local: b"/data/".to_vec(),
                remote: b"/export/x".to_vec(),
            },
        ])
    }

    fn remote(p: &str) -> Option<String> {
        table()
            .to_remote(p.as_bytes())
            .map(|r| String::from_utf8(r.0).unwrap())
    }

    #[test]
    fn normalize_collapses_dots_and_slashes() {
        assert_eq!(normalize(b"/a//b/./c/"), b"/a/b/c");
        assert_eq!(normalize(b"/a/b/../c"), b"/a/c");
        assert_eq!(normalize(b"/../../x"), b"/x");
        assert_eq!(normalize(b"/"), b"/");
        assert_eq!(normalize(b"/a/.."), b"/");
    }

    #[test]
    fn join_uses_base_only_for_relative_paths() {
        assert_eq!(join(b"/home/u", b"f"), b"/home/u/f");
        assert_eq!(join(b"/home/u", b"../../remote/x"), b"/remote/x");
        assert_eq!(join(b"/home/u", b"/etc/passwd"), b"/etc/passwd");
        assert_eq!(join(b"/remote/a", b"."), b"/remote/a");
    }

    #[test]
    fn mount_prefix_must_match_whole_components() {
        assert_eq!(remote("/remote"), Some("/".into()));
        assert_eq!(remote("/remote/x/y"), Some("/x/y".into()));
        assert_eq!(remote("/remotex"), None);
        assert_eq!(remote("/etc/passwd"), None);
        assert_eq!(remote("/"), None);
    }

    #[test]
    fn nested_mount_wins_over_its_parent() {
        assert_eq!(remote("/remote/etc/hosts"), Some("/srv/etc/hosts".into()));
        assert_eq!(remote("/remote/etcetera"), Some("/etcetera".into()));
    }

    #[test]
    fn passing_through_a_mount_is_noticed() {
        let t = table();
        assert!(t.passes_through(b"/", b"/remote/.."));
        assert!(t.passes_through(b"/remote/a", b"../../etc"));
        assert!(!t.passes_through(b"/home", b"../etc/passwd"));
        assert!(!t.passes_through(b"/", b"/remotex/.."));
    }

    fn located(base: &str, path: &str) -> Option<String> {
        table()
            .locate(base.as_bytes(), path.as_bytes())
            .map(|r| String::from_utf8(r.0).unwrap())
    }

    #[test]
    fn dots_inside_a_mount_travel_as_spelled() {
        assert_eq!(located("/", "/remote/a/b/.."), Some("/a/b/..".into()));
        assert_eq!(located("/", "/remote/a/b/."), Some("/a/b/.".into()));
        assert_eq!(located("/", "/remote/file/."), Some("/file/.".into()));
        assert_eq!(located("/", "/remote/l/../x"), Some("/l/../x".into()));
        assert_eq!(located("/", "/remote//a//b/"), Some("/a//b/".into()));
        assert_eq!(located("/remote/a", "b/.."), Some("/a/b/..".into()));
        assert_eq!(located("/remote", "."), Some("/.".into()));
        assert_eq!(located("/", "/remote"), Some("/".into()));
        assert_eq!(located("/", "/remote/"), Some("/".into()));
    }

    #[test]
    fn entering_a_mount_is_judged_lexically() {
        // The local part before the mount is the kernel's, not the server's.
        assert_eq!(located("/tmp", "../remote/a/.."), Some("/a/..".into()));
        assert_eq!(located("/", "/x/../remote/a"), Some("/a".into()));
        assert_eq!(located("/", "/data/f"), Some("/export/x/f".into()));
    }

    #[test]
    fn nested_mounts_anchor_at_the_deepest_entry() {
        assert_eq!(
            located("/", "/remote/etc/hosts/."),
            Some("/srv/etc/hosts/.".into())
        );
        assert_eq!(located("/", "/remote/etc/"), Some("/srv/etc/".into()));
        // `..` at a mount's root leaves it, into the mount around it.
        assert_eq!(located("/", "/remote/etc/../x/.."), Some("/x/..".into()));
        assert_eq!(located("/remote/etc", "../y"), Some("/y".into()));
    }

    #[test]
    fn leaving_every_mount_is_local() {
        assert_eq!(located("/", "/remote/.."), None);
        assert_eq!(located("/remote/a", "../../etc"), None);
        assert_eq!(located("/", "/etc/passwd"), None);
        assert_eq!(located("/", "/remotex/a"), None);
        // Back in after leaving: anchored at the second entry.
        assert_eq!(located("/", "/remote/../remote/a/."), Some("/a/.".into()));
    }

    #[test]
    fn remote_paths_map_back_through_the_mount_that_shows_them() {
        let t = table();
        assert_eq!(t.to_local(b"/x/y"), Some(b"/remote/x/y".to_vec()));
        assert_eq!(t.to_local(b"/"), Some(b"/remote".to_vec()));
        assert_eq!(
            t.to_local(b"/srv/etc/hosts"),
            Some(b"/remote/etc/hosts".to_vec())
        );
        assert_eq!(t.to_local(b"/export/x/f"), Some(b"/data/f".to_vec()));
        // `/etc/x` of the server is hidden under the nested mount.
        assert_eq!(t.to_local(b"/etc/hosts"), None);
        let only_data = MountTable::new(vec![MountPoint {
            local: b"/data".to_vec(),
            remote: b"/export/x".to_vec(),
        }]);
        assert_eq!(only_data.to_local(b"/export/xy"), None);
        assert_eq!(only_data.to_local(b"/etc/passwd"), None);
    }

    #[test]
    fn each_mount_names_its_remote_and_the_longest_prefix_wins() {
        let mount = |local: &str, remote: &str| MountPoint {
            local: local.as_bytes().to_vec(),
            remote: remote.as_bytes().to_vec(),
        };
        let t = MountTable::placed(vec![
            (mount("/build", "/srv/src"), 1),
            (mount("/build/data", "/export"), 2),
            (mount("/home", "/"), 0),
        ]);
        assert!(t.several_remotes());
        assert!(!table().several_remotes());
        assert_eq!(t.remote_of(b"/build/x"), Some(1));
        assert_eq!(t.remote_of(b"/build/data/x"), Some(2));
        assert_eq!(t.remote_of(b"/build/datax"), Some(1));
        assert_eq!(t.remote_of(b"/home"), Some(0));
        assert_eq!(t.remote_of(b"/etc"), None);
        let on = |base: &str, path: &str| {
            t.locate_on(base.as_bytes(), path.as_bytes())
                .map(|(r, on)| (String::from_utf8(r.0).unwrap(), on))
        };
        assert_eq!(on("/", "/build/data/f"), Some(("/export/f".into(), 2)));
        // `..` at the nested mount's root is back on the outer remote.
        assert_eq!(on("/build/data", "../y"), Some(("/srv/src/y".into(), 1)));
        assert_eq!(on("/build", "data/../z"), Some(("/srv/src/z".into(), 1)));
        assert_eq!(on("/", "/etc/x"), None);
        // A server's own paths map back through its own mounts only.
        let two = MountTable::placed(vec![(mount("/a", "/"), 1), (mount("/b", "/"), 2)]);
        assert_eq!(two.to_local(b"/x"), Some(b"/a/x".to_vec()));
        assert_eq!(two.only_on(2).to_local(b"/x"), Some(b"/b/x".to_vec()));
        assert_eq!(two.only_on(2).remote_of(b"/a/x"), None);
    }

    #[test]
    fn dotdot_out_of_a_mount_is_local() {
        let t = table();
        assert_eq!(t.to_remote(&join(b"/remote/a", b"../../etc")), None);
        assert_eq!(
            t.to_remote(&join(b"/tmp", b"../data/f")).map(|r| r.0),
            Some(b"/export/x/f".to_vec())
        );
    }
}
