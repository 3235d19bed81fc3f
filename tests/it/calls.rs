//! File calls beyond open/read/write: `fallocate` (util-linux and python's
//! `posix_fallocate`) and `tail -f` following a remote file another
//! process appends to (inotify is refused for remote paths, so it polls).

use std::fs;
use std::io::Write as _;
use std::time::Duration;

use crate::harness::{Backend, Pair, Running, each_mode, sh_c};

#[test]
fn fallocate_reserves_and_punches_as_locally() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let script = format!(
            r#"
set -e
fallocate -l 2M "{t}/reserved"
printf 'abcdefgh' > "{t}/holes"
fallocate -l 1M -o 0 "{t}/holes"
fallocate --punch-hole -o 2 -l 3 "{t}/holes"
stat -c '%n %s' "{t}/reserved" "{t}/holes"
od -c -N 8 "{t}/holes"
python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); os.posix_fallocate(fd, 100, 5000); print(os.fstat(fd).st_size)' "{t}/posix"
"#
        );
        let (d, _) = pair.same_writes(&sh_c(&script), &[]);
        assert!(
            d.out().contains(&format!("{t}/reserved 2097152")),
            "{}",
            d.dump()
        );
        assert!(d.out().ends_with("5100\n"), "{}", d.dump());
    });
}

#[test]
fn tail_f_follows_a_remote_file_as_it_grows() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let log = pair.remote_tree.join("app.log");
        fs::write(&log, "first\n").expect("write log");
        let mut tail = Running::spawn(pair.rscq_cmd(
            &[],
            &[
                "timeout",
                "30",
                "tail",
                "-n",
                "+1",
                "-f",
                &format!("{}/app.log", pair.t()),
            ],
        ));
        tail.wait_stdout("first\n", Duration::from_secs(20));
        for line in ["second", "third"] {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open log");
            writeln!(f, "{line}").expect("append");
            drop(f);
            tail.wait_stdout(&format!("{line}\n"), Duration::from_secs(20));
        }
        assert_eq!(tail.stdout_now(), "first\nsecond\nthird\n");
    });
}

/// `cp` within a mount and python's `copy_file_range`/`sendfile` between
/// two remote files: the server copies (the bytes never cross the link),
/// offsets given and the files' own move as locally.
#[test]
fn copies_between_remote_files_run_on_the_server() {
    let script = r#"
import os, sys, hashlib
t = sys.argv[1]
src = os.open(t + "/big.dat", os.O_RDONLY)
dst = os.open(t + "/part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
print("with offsets", os.copy_file_range(src, dst, 1000, 10, 5))
print("positions", os.lseek(src, 0, os.SEEK_CUR), os.lseek(dst, 0, os.SEEK_CUR))
os.read(src, 7)
print("own offsets", os.copy_file_range(src, dst, 100))
print("positions", os.lseek(src, 0, os.SEEK_CUR), os.lseek(dst, 0, os.SEEK_CUR))
print("sendfile", os.sendfile(dst, src, 50, 20), os.lseek(src, 0, os.SEEK_CUR))
print("sendfile own", os.sendfile(dst, src, None, 30), os.lseek(src, 0, os.SEEK_CUR))
os.close(dst)
print(hashlib.sha256(open(t + "/part", "rb").read()).hexdigest())
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let file = pair.env.base.join("copy.py");
        fs::write(&file, script).expect("write script");
        let (d, _) = pair.same_writes(
            &["python3".to_string(), crate::harness::p(&file), t.clone()],
            &[],
        );
        assert!(d.out().contains("sendfile own 30 137"), "{}", d.dump());
        let (_, r) = pair.same_writes(
            &["cp", &format!("{t}/big.dat"), &format!("{t}/copy.dat")],
            &[],
        );
        let stats = r.stats();
        assert!(
            stats.get("copy_file_range").copied().unwrap_or(0) >= 1,
            "{}",
            r.dump()
        );
        // 3 MiB copied without a byte of it read or written by rscq.
        assert_eq!(stats.get("read").copied().unwrap_or(0), 0, "{}", r.dump());
        assert_eq!(stats.get("write").copied().unwrap_or(0), 0, "{}", r.dump());
    });
}

/// A local symlink whose target is in a mount is followed into it, at any
/// component and as the last one where the call follows links; removing
/// the link removes the local link, never what it points at.
#[test]
fn local_symlinks_into_a_mount_are_followed() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        // Only the server has it: reading it proves the link led there.
        fs::write(
            pair.remote_tree.join("only-remote.txt"),
            "from the server\n",
        )
        .expect("write");
        let link = pair.local.join("link");
        std::os::unix::fs::symlink(&pair.tree, &link).expect("symlink");
        let l = crate::harness::p(&link);
        let script = format!(
            "cat '{l}/only-remote.txt' && cat '{l}/sub/c.txt' && ls '{l}/' | grep -c only-remote && test -d '{l}' && echo dir && cd '{l}' && cat only-remote.txt && rm '{l}' && test ! -e '{l}' && echo unlinked"
        );
        let r = pair.rscq(&sh_c(&script)).success();
        assert_eq!(
            r.out(),
            "from the server\ncharlie\nline two\n1\ndir\nfrom the server\nunlinked\n",
            "{}",
            r.dump()
        );
        assert!(
            pair.remote_tree.join("only-remote.txt").is_file(),
            "the link's target must stay"
        );
    });
}

/// poll and select find a remote file readable and writable, as a regular
/// file always is (before and after reads, through a dup), and the file is
/// still closed on the server when the program's last fd goes.
#[test]
fn poll_and_select_see_a_remote_file_as_a_regular_file() {
    let script = r#"
import os, select, sys
t = sys.argv[1]
fd = os.open(t + "/a.txt", os.O_RDONLY)
print("select", select.select([fd], [fd], [], 0) == ([fd], [fd], []))
p = select.poll()
p.register(fd, select.POLLIN | select.POLLOUT)
print("poll", p.poll(0) == [(fd, select.POLLIN | select.POLLOUT)])
print("read", os.read(fd, 100))
print("select after read", select.select([fd], [], [], 0)[0] == [fd])
d = os.dup(fd)
os.close(fd)
print("dup read", os.pread(d, 5, 0))
os.close(d)
w = os.open(t + "/new.txt", os.O_WRONLY | os.O_CREAT, 0o644)
print("write select", select.select([], [w], [], 0)[1] == [w])
os.write(w, b"written")
os.close(w)
print(open(t + "/new.txt").read())
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let file = pair.env.base.join("poll.py");
        fs::write(&file, script).expect("write script");
        let (d, r) = pair.same_writes(
            &["python3".to_string(), crate::harness::p(&file), pair.t()],
            &[],
        );
        assert_eq!(
            d.out(),
            "select True\npoll True\nread b'alpha\\n'\nselect after read True\ndup read b'alpha'\nwrite select True\nwritten\n",
            "{}",
            d.dump()
        );
        // Each open file was closed on the server (its last fd went).
        let stats = r.stats();
        assert_eq!(stats.get("close"), stats.get("openat"), "{}", r.dump());
    });
}
