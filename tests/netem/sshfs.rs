//! The sshfs peer the benches compare rscq with (`netem/sshfs.sh`): sshd in one namespace
//! of an emulated link, sshfs mounted from the other, and what it shows equal to the
//! directory itself. A bench row against a peer that silently failed would mean nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ADDR_B, Link, SERIAL, root_or_skip};

fn sshfs_sh(args: &[&str], paths: &[&Path]) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("netem/sshfs.sh");
    let mut c = Command::new(script);
    c.args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().expect("run netem/sshfs.sh")
}

/// Stops sshd and unmounts, also when the test panics.
struct Peer {
    state: PathBuf,
    mnt: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        sshfs_sh(&["umount"], &[&self.mnt]);
        sshfs_sh(&["stop"], &[&self.state]);
    }
}

fn listing(dir: &Path) -> Vec<(String, u64, bool)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            let m = e.metadata().expect("metadata");
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.is_dir(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sshfs_over_the_delay_line_shows_the_export() {
    if !root_or_skip("sshfs_over_the_delay_line_shows_the_export") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let link = Link::start(&["--rtt-ms", "2"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let export = tmp.path().join("export");
    fs::create_dir_all(export.join("sub")).expect("mkdir");
    for i in 0..20 {
        fs::write(export.join(format!("f{i:02}")), vec![b'x'; i * 100]).expect("write");
    }
    let peer = Peer {
        state: tmp.path().join("state"),
        mnt: tmp.path().join("mnt"),
    };
    let addr = ADDR_B.to_string();
    let out = sshfs_sh(
        &["serve"],
        &[&peer.state, Path::new(link.ns_b()), Path::new(&addr)],
    );
    assert!(
        out.status.success(),
        "serve: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sshfs_sh(
        &["mount"],
        &[
            &peer.state,
            Path::new(link.ns_a()),
            Path::new(&addr),
            &export,
            &peer.mnt,
        ],
    );
    assert!(
        out.status.success(),
        "mount: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(listing(&peer.mnt), listing(&export));
    assert_eq!(
        fs::read(peer.mnt.join("f07")).expect("read"),
        vec![b'x'; 700]
    );
    fs::write(peer.mnt.join("sub/new"), b"written through sshfs\n").expect("write");
    assert_eq!(
        fs::read(export.join("sub/new")).expect("read back"),
        b"written through sshfs\n"
    );
}
