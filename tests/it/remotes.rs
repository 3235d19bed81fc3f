//! Remotes named per mount (`LOCAL=HOST:REMOTE`, `--uname=HOST`, TOML
//! `[[remotes]]`): a run whose every mount and `--uname` name one server
//! talks to that server alone, with its pinned certificate; a run that
//! names two servers talks to each (tests/net/remotes.rs has the
//! three-machine cases).

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::harness::{Env, Output, Server, have_root, p, run_timeout};

const BOX_HOST: &str = "rscq-named-box";

/// A settings file naming `server` `box` (and `other` when given), each
/// pinned to its certificate.
fn config(env: &Env, box_server: &Server, other: Option<&Server>) -> std::path::PathBuf {
    let mut text = String::new();
    for (name, s) in std::iter::once(("box", box_server)).chain(other.map(|o| ("other", o))) {
        text.push_str(&format!(
            "[[remotes]]\nname = \"{name}\"\naddress = \"127.0.0.1:{}\"\nserver_cert = \"{}\"\n\n",
            s.port(),
            p(&s.spec.cert_dir.join("cert.pem"))
        ));
    }
    let path = env.base.join("remotes.toml");
    fs::write(&path, text).expect("write config");
    path
}

fn rscq(env: &Env, config: &Path, args: &[&str]) -> Output {
    let mut c = env.rscq(None, &[] as &[&str]);
    c.arg("--config")
        .arg(config)
        .arg("--identity")
        .arg(&env.client_dir)
        .arg("--known-servers")
        .arg(&env.known)
        .args(args);
    run_timeout(c, Duration::from_secs(60))
}

fn export(env: &Env, name: &str, text: &str) -> std::path::PathBuf {
    let dir = env.base.join(name);
    fs::create_dir(&dir).expect("mkdir export");
    fs::write(dir.join("f"), text).expect("write");
    dir
}

#[test]
fn a_named_remote_serves_its_mounts_and_uname() {
    if !have_root("a_named_remote_serves_its_mounts_and_uname") {
        return;
    }
    let env = Env::new();
    let root = export(&env, "box-export", "from the box\n");
    let mut spec = env.spec(&root);
    spec.hostname = Some(BOX_HOST.into());
    let server = Server::start(spec);
    let cfg = config(&env, &server, None);
    let script = "cat /b/f && echo new > /b/g && cat /b/g && uname -n";
    for mode in crate::harness::MODES {
        fs::remove_file(root.join("g")).ok();
        let mut args = vec!["--mount", "/b=box:/", "--uname=box"];
        args.extend_from_slice(mode);
        args.extend(["--", "sh", "-c", script]);
        let out = rscq(&env, &cfg, &args).success();
        assert_eq!(
            out.out(),
            format!("from the box\nnew\n{BOX_HOST}\n"),
            "{mode:?}"
        );
        assert_eq!(fs::read_to_string(root.join("g")).expect("g"), "new\n");
    }
}

#[test]
fn two_servers_in_one_run_each_serve_their_mount() {
    if !have_root("two_servers_in_one_run_each_serve_their_mount") {
        return;
    }
    let env = Env::new();
    let (a_root, b_root) = (export(&env, "a", "a\n"), export(&env, "b", "b\n"));
    let a = env.server(&a_root);
    let b = env.server(&b_root);
    let cfg = config(&env, &a, Some(&b));
    let script = "cat /a/f /b/f && echo to-a > /a/g && echo to-b > /b/g \
                  && mv /a/g /b/moved && cat /b/moved && ! test -e /a/g";
    for mode in crate::harness::MODES {
        for f in [a_root.join("g"), b_root.join("g"), b_root.join("moved")] {
            fs::remove_file(f).ok();
        }
        let mut args = vec!["--mount", "/a=box:/", "--mount", "/b=other:/", "--trace"];
        args.extend_from_slice(mode);
        args.extend(["--", "sh", "-c", script]);
        let out = rscq(&env, &cfg, &args).success();
        assert_eq!(out.out(), "a\nb\nto-a\n", "{mode:?}");
        assert!(!a_root.join("g").exists(), "{mode:?}: moved away from a");
        assert_eq!(fs::read_to_string(b_root.join("g")).expect("b/g"), "to-b\n");
        assert_eq!(
            fs::read_to_string(b_root.join("moved")).expect("b/moved"),
            "to-a\n"
        );
        // Each trace line of a forwarded call names its server, and a
        // rename across them is EXDEV (then mv copies).
        let err = out.err();
        assert!(err.contains("] [box] "), "{mode:?}\n{err}");
        assert!(err.contains("] [other] "), "{mode:?}\n{err}");
        assert!(
            err.lines()
                .any(|l| l.contains("rename") && l.contains("EXDEV")),
            "{mode:?}\n{err}"
        );
    }
}

#[test]
fn two_config_files_keep_the_mount_on_its_own_server() {
    if !have_root("two_config_files_keep_the_mount_on_its_own_server") {
        return;
    }
    let env = Env::new();
    let root = export(&env, "box-export", "from the box\n");
    let mut spec = env.spec(&root);
    spec.hostname = Some(BOX_HOST.into());
    let server = Server::start(spec);
    // The box's file, in the thesis's format, pins nothing; its own
    // profile next to it is TOML and pins the certificate.
    let cert_dir = env.base.join("profiles");
    fs::create_dir(&cert_dir).expect("mkdir");
    fs::copy(
        server.spec.cert_dir.join("cert.pem"),
        cert_dir.join("box.pem"),
    )
    .expect("cert");
    let box_toml = cert_dir.join("box.toml");
    fs::write(
        &box_toml,
        format!(
            "remote = \"127.0.0.1:{}\"\nserver_cert = \"box.pem\"\nmounts = [\"/b=/\"]\nuname = true\n",
            server.port()
        ),
    )
    .expect("write");
    let counted = env.base.join("counted.toml");
    fs::write(&counted, "stats = true\n").expect("write");
    let counted = p(&counted);
    for mode in crate::harness::MODES {
        let mut args = vec!["--config", counted.as_str()];
        args.extend_from_slice(mode);
        args.extend(["--", "sh", "-c", "cat /b/f && uname -n"]);
        let out = rscq(&env, &box_toml, &args).success();
        assert_eq!(out.out(), format!("from the box\n{BOX_HOST}\n"), "{mode:?}");
        assert!(out.err().contains("rscq: total"), "{}", out.err());
    }
}

/// A settings file naming each `(name, port, pinned certificate)`; a
/// remote without a certificate is trusted through `known_servers`.
fn config_of(env: &Env, file: &str, remotes: &[(&str, u16, Option<&Path>)]) -> std::path::PathBuf {
    let mut text = String::new();
    for (name, port, cert) in remotes {
        text.push_str(&format!(
            "[[remotes]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\n"
        ));
        if let Some(cert) = cert {
            text.push_str(&format!("server_cert = \"{}\"\n", p(cert)));
        }
        text.push('\n');
    }
    let path = env.base.join(file);
    fs::write(&path, text).expect("write config");
    path
}

/// The script of the runs with one remote left out: `/a` works, `/b`
/// fails (its `cat` says why on stderr), and the program's own exit
/// status is rscq's.
const WITHOUT_B: &str = "cat /a/f && echo new > /a/g && cat /a/g; cat /b/f; echo \"b=$?\"; exit 7";

/// A remote with nothing listening at start is left out of the run, not
/// waited for: the program runs, the other remote's files work, and the
/// missing one's fail with EIO, even with the default (long)
/// `--reconnect-grace`. With that remote alone the run fails before the
/// program starts, as it always did.
#[test]
fn an_unreachable_remote_fails_only_its_own_calls() {
    if !have_root("an_unreachable_remote_fails_only_its_own_calls") {
        return;
    }
    let env = Env::new();
    let a_root = export(&env, "a", "a\n");
    let a = env.server(&a_root);
    let cert = a.spec.cert_dir.join("cert.pem");
    let nobody = crate::harness::unused_port();
    let cfg = config_of(
        &env,
        "unreachable.toml",
        &[
            ("box", a.port(), Some(&cert)),
            ("other", nobody, Some(&cert)),
        ],
    );
    for mode in crate::harness::MODES {
        fs::remove_file(a_root.join("g")).ok();
        let mut args = vec![
            "--mount",
            "/a=box:/",
            "--mount",
            "/b=other:/",
            "--idle-timeout",
            "2s",
        ];
        args.extend_from_slice(mode);
        args.extend(["--", "sh", "-c", WITHOUT_B]);
        let out = rscq(&env, &cfg, &args);
        assert_eq!(
            out.code(),
            7,
            "{mode:?}: the program's status\n{}",
            out.dump()
        );
        assert_eq!(out.out(), "a\nnew\nb=1\n", "{mode:?}\n{}", out.dump());
        assert_eq!(fs::read_to_string(a_root.join("g")).expect("g"), "new\n");
        let err = out.err();
        let line = err
            .lines()
            .find(|l| l.contains(&format!("rscq-server at 127.0.0.1:{nobody} (remote other)")))
            .unwrap_or_else(|| panic!("{mode:?}: no line names the left-out remote\n{err}"));
        assert!(
            line.contains("runs without remote other"),
            "{mode:?}: {line}"
        );
        assert!(err.contains("Input/output error"), "{mode:?}\n{err}");
        assert!(
            !err.contains("remote box"),
            "{mode:?}: box is not blamed\n{err}"
        );
        assert!(!err.contains("connecting again"), "{mode:?}\n{err}");
    }
    // The missing remote alone: the run fails, and the program never runs.
    let alone = config_of(&env, "alone.toml", &[("other", nobody, Some(&cert))]);
    let out = rscq(
        &env,
        &alone,
        &[
            "--mount",
            "/b=other:/",
            "--idle-timeout",
            "2s",
            "--",
            "echo",
            "ran",
        ],
    );
    assert_eq!(out.code(), 125, "{}", out.dump());
    assert_eq!(out.out(), "", "{}", out.dump());
    assert!(
        out.err().contains(&format!("127.0.0.1:{nobody}")),
        "{}",
        out.dump()
    );
}

/// A remote whose certificate changed since `known_servers` recorded it
/// (it was generated again) is refused, and only it: the program runs
/// with the other remote, the changed one's files fail with EIO, the
/// message says which remote and which line of `known_servers`, and rscq
/// never tries it again (not even within `--reconnect-grace`).
#[test]
fn a_changed_certificate_refuses_only_that_remote() {
    if !have_root("a_changed_certificate_refuses_only_that_remote") {
        return;
    }
    let env = Env::new();
    let (a_root, b_root) = (export(&env, "a", "a\n"), export(&env, "b", "b\n"));
    let a = env.server(&a_root);
    let mut b = env.server(&b_root);
    let cert = a.spec.cert_dir.join("cert.pem");
    // `other` is trusted on first use: the first run records it.
    let cfg = config_of(
        &env,
        "known.toml",
        &[("box", a.port(), Some(&cert)), ("other", b.port(), None)],
    );
    let args = ["--mount", "/a=box:/", "--mount", "/b=other:/"];
    let mut first = args.to_vec();
    first.extend(["--", "cat", "/a/f", "/b/f"]);
    let out = rscq(&env, &cfg, &first).success();
    assert_eq!(out.out(), "a\nb\n", "{}", out.dump());
    let known = fs::read_to_string(&env.known).expect("known_servers written");
    // The same server, on the same port, with a new certificate.
    let mut spec = b.spec.clone();
    spec.port = b.port();
    spec.cert_dir = env.base.join("regenerated");
    crate::harness::gen_server_cert(&spec.cert_dir);
    b.kill();
    let _b = Server::start(spec);
    for mode in crate::harness::MODES {
        fs::remove_file(a_root.join("g")).ok();
        let mut again = args.to_vec();
        again.extend(["--reconnect-grace", "60s"]);
        again.extend_from_slice(mode);
        again.extend(["--", "sh", "-c", WITHOUT_B]);
        let out = rscq(&env, &cfg, &again);
        assert_eq!(
            out.code(),
            7,
            "{mode:?}: the program's status\n{}",
            out.dump()
        );
        assert_eq!(out.out(), "a\nnew\nb=1\n", "{mode:?}\n{}", out.dump());
        let err = out.err();
        let line = err
            .lines()
            .find(|l| l.contains("SERVER CERTIFICATE CHANGED"))
            .unwrap_or_else(|| panic!("{mode:?}: no warning\n{err}"));
        assert!(line.contains("(remote other)"), "{mode:?}: {line}");
        assert!(
            line.contains("runs without remote other"),
            "{mode:?}: {line}"
        );
        assert!(err.contains("Input/output error"), "{mode:?}\n{err}");
        assert!(
            !err.contains("connecting again"),
            "{mode:?}: never again\n{err}"
        );
        assert_eq!(
            fs::read_to_string(&env.known).expect("known_servers"),
            known,
            "{mode:?}: the recorded certificate stays"
        );
    }
}

/// One `munmap` over a range that maps files of two remotes (side by
/// side, `MAP_FIXED`) writes both back before it returns: the servers
/// hold both changes while the program still runs.
#[test]
fn munmap_over_shadows_of_two_remotes_writes_back_both() {
    if !have_root("munmap_over_shadows_of_two_remotes_writes_back_both") {
        return;
    }
    let env = Env::new();
    let (a_root, b_root) = (export(&env, "a", "a\n"), export(&env, "b", "b\n"));
    let a = env.server(&a_root);
    let b = env.server(&b_root);
    let cfg = config(&env, &a, Some(&b));
    let bin = crate::harness::build_c(&env.base, "unmap2", UNMAP_TWO, &[]);
    let go = env.base.join("go");
    for mode in crate::harness::MODES {
        for root in [&a_root, &b_root] {
            fs::write(root.join("m"), "0123456789abcdef\n").expect("write");
        }
        fs::remove_file(&go).ok();
        let mut c = env.rscq(None, &[] as &[&str]);
        c.arg("--config")
            .arg(&cfg)
            .arg("--identity")
            .arg(&env.client_dir)
            .arg("--known-servers")
            .arg(&env.known)
            .args(["--mount", "/a=box:/", "--mount", "/b=other:/"])
            .args(*mode)
            .args(["--", bin.as_str(), "/a/m", "/b/m", &p(&go)]);
        let mut running = crate::harness::Running::spawn(c);
        running.wait_stdout("unmapped\n", Duration::from_secs(60));
        let on_a = fs::read_to_string(a_root.join("m")).expect("a/m");
        let on_b = fs::read_to_string(b_root.join("m")).expect("b/m");
        fs::write(&go, "").expect("go");
        let out = running.finish(Duration::from_secs(60));
        assert_eq!(out.code(), 0, "{mode:?}\n{}", out.dump());
        assert_eq!(on_a, "written-a9abcdef\n", "{mode:?}\n{}", out.dump());
        assert_eq!(on_b, "written-b9abcdef\n", "{mode:?}\n{}", out.dump());
    }
}

/// Maps `argv[1]` and `argv[2]` on two adjacent pages, writes into both,
/// unmaps both pages with one `munmap`, says `unmapped`, and waits for
/// the file `argv[3]` before it exits.
const UNMAP_TWO: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    long pg = sysconf(_SC_PAGESIZE);
    int a = open(argv[1], O_RDWR), b = open(argv[2], O_RDWR);
    if (a < 0 || b < 0) { perror("open"); return 1; }
    char *base = mmap(NULL, 2 * pg, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) { perror("reserve"); return 1; }
    char *pa = mmap(base, pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, a, 0);
    char *pb = mmap(base + pg, pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, b, 0);
    if (pa == MAP_FAILED || pb == MAP_FAILED) { perror("mmap"); return 1; }
    memcpy(pa, "written-a", 9);
    memcpy(pb, "written-b", 9);
    if (munmap(base, 2 * pg) != 0) { perror("munmap"); return 1; }
    printf("unmapped\n");
    fflush(stdout);
    struct stat st;
    while (stat(argv[3], &st) != 0) usleep(20000);
    return 0;
}
"#;
