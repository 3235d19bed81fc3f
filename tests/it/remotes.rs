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
