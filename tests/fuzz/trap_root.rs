//! A temporary export full of traps, beside a canary tree no request may
//! reach: `<tmp>/root` is exported, `<tmp>/canary` holds a secret whose
//! content must never appear in a reply and whose tree must never change,
//! and nothing may appear in `<tmp>` itself.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The names in the export that lead somewhere dangerous; the seeds walk
/// into each of them.
pub const TRAP_NAMES: [&str; 12] = [
    "up",
    "up1",
    "abs_canary",
    "abs_secret",
    "loop1",
    "selfloop",
    "fifo",
    "noperm",
    "sock",
    "hard",
    "proc",
    "deep",
];

/// Content no reply may ever carry: only the canary file holds it, and no
/// seed or dictionary entry does.
pub const CANARY_TOKEN: &[u8] = b"RSCQ-FUZZ-CANARY-5f1c9e0b7a2d4e83";

pub struct TrapRoot {
    dir: Option<tempfile::TempDir>,
    pub root: PathBuf,
    pub canary: PathBuf,
    before: [u8; 32],
}

impl TrapRoot {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rscq-fuzz-")
            .tempdir()
            .expect("tempdir");
        let base = dir.path();
        let root = base.join("root");
        let canary = base.join("canary");
        std::fs::create_dir_all(canary.join("sub")).expect("canary");
        std::fs::write(canary.join("secret"), CANARY_TOKEN).expect("secret");
        std::fs::write(canary.join("sub/file"), CANARY_TOKEN).expect("canary file");

        std::fs::create_dir_all(root.join("a")).expect("root");
        std::fs::write(root.join("a/f"), b"inside").expect("file");
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).expect("symlink");
        };
        link("../../..", "up");
        link("..", "up1");
        link(canary.to_str().expect("utf-8"), "abs_canary");
        link(canary.join("secret").to_str().expect("utf-8"), "abs_secret");
        link("loop2", "loop1");
        link("loop1", "loop2");
        link("selfloop", "selfloop");
        link("/proc/self/root", "proc");
        link("../canary/secret", "a/rel_secret");
        nix::unistd::mkfifo(
            &root.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .expect("mkfifo");
        std::fs::create_dir(root.join("noperm")).expect("noperm");
        std::fs::write(root.join("noperm/inner"), b"hidden").expect("inner");
        std::fs::set_permissions(root.join("noperm"), std::fs::Permissions::from_mode(0o000))
            .expect("chmod");
        // A socket file outlives its listener.
        drop(std::os::unix::net::UnixListener::bind(root.join("sock")).expect("socket file"));
        std::fs::hard_link(root.join("a/f"), root.join("hard")).expect("hard link");
        let long = "n".repeat(255);
        std::fs::write(root.join(&long), b"long").expect("long name");
        // Nested up to near PATH_MAX, so paths built on it cross the limit.
        let mut deep = root.join("deep");
        for _ in 0..15 {
            deep = deep.join(&long);
        }
        std::fs::create_dir_all(&deep).expect("deep tree");
        let before = tree_hash(base);
        Self {
            dir: Some(dir),
            root,
            canary,
            before,
        }
    }

    /// Whether anything outside the export changed: the canary tree's hash
    /// (names, types, modes, owners, sizes, times, contents, link targets)
    /// and the names in the temporary directory itself.
    pub fn check_outside(&self) -> Result<(), String> {
        let base = self.root.parent().expect("parent");
        let now = tree_hash(base);
        if now != self.before {
            return Err(format!(
                "something outside the export root changed: {}",
                describe(base)
            ));
        }
        Ok(())
    }
}

impl Drop for TrapRoot {
    fn drop(&mut self) {
        // The fuzzer may have taken every right away from directories in
        // the export: give them back so the temporary tree can go.
        restore_permissions(&self.root);
        drop(self.dir.take());
    }
}

fn restore_permissions(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                restore_permissions(&entry.path());
            }
        }
    }
}

/// The hash of everything outside `root` under `base`: `base`'s own names
/// and the canary tree. The export itself is left out (requests may change
/// it), but `base`'s entry for it is in (a rename or removal would show).
fn tree_hash(base: &Path) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut names: Vec<_> = std::fs::read_dir(base)
        .expect("read base")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for name in &names {
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
    }
    // An entry made and removed again still moves the directory's times.
    let meta = std::fs::symlink_metadata(base).expect("base");
    for field in [
        meta.mode().into(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ] {
        hasher.update(i64::to_le_bytes(field));
    }
    hash_tree(&base.join("canary"), &mut hasher);
    hasher.finalize().into()
}

fn hash_tree(path: &Path, hasher: &mut Sha256) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        hasher.update(b"missing");
        return;
    };
    hasher.update(path.as_os_str().as_encoded_bytes());
    for field in [
        u64::from(meta.mode()),
        u64::from(meta.uid()),
        u64::from(meta.gid()),
        meta.size(),
        meta.ino(),
        meta.nlink(),
    ] {
        hasher.update(field.to_le_bytes());
    }
    for time in [
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ] {
        hasher.update(time.to_le_bytes());
    }
    if meta.is_file() {
        hasher.update(std::fs::read(path).unwrap_or_default());
    } else if meta.is_symlink() {
        let target = std::fs::read_link(path).unwrap_or_default();
        hasher.update(target.as_os_str().as_encoded_bytes());
    } else if meta.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        names.sort();
        for name in names {
            hash_tree(&path.join(name), hasher);
        }
    }
}

fn describe(base: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(base)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    format!("{} now holds {names:?}", base.display())
}

/// Whether `haystack` holds the canary's content anywhere.
pub fn leaks_canary(haystack: &[u8]) -> bool {
    haystack
        .windows(CANARY_TOKEN.len())
        .any(|w| w == CANARY_TOKEN)
}
