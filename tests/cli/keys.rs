//! Keys as with ssh: fingerprints shown like `ssh-keygen -lf`, the
//! server's own with `--print-fingerprint`, and the authorized clients
//! file re-read while the server runs.

use std::path::Path;
use std::process::Command;

use crate::run::{Bg, RSCQ, SERVER, command, have, home, output, rscq};

fn keygen(home: &Path) -> String {
    let out = rscq(&["keygen"], home);
    assert_eq!(out.code(), 0, "{out}");
    out.stdout.trim().to_owned()
}

#[test]
fn fingerprint_is_shown_like_ssh_keygen() {
    let home = home();
    let fp = keygen(home.path());
    assert!(fp.starts_with("sha256:") && fp.len() == 71, "{fp}");
    let cert = home.path().join(".config/rscq/client.pem");
    let expected = format!("256 {fp} {} (ECDSA)\n", cert.display());
    for args in [&["keygen", "--show"][..], &["fingerprint"]] {
        let out = rscq(args, home.path());
        assert_eq!(
            (out.code(), out.stdout.as_str()),
            (0, expected.as_str()),
            "{out}"
        );
    }
    // The same layout as ssh-keygen's own, where it is installed.
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("k");
    let made = output({
        let mut c = Command::new(if have("ssh-keygen") {
            "ssh-keygen"
        } else {
            "false"
        });
        c.args(["-q", "-t", "ecdsa", "-N", "", "-C", "comment", "-f"])
            .arg(&key);
        c
    });
    if made.code() == 0 {
        let shown = output({
            let mut c = Command::new("ssh-keygen");
            c.arg("-lf").arg(&key);
            c
        });
        let theirs: Vec<&str> = shown.stdout.split_whitespace().collect();
        let ours: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(theirs.len(), ours.len(), "{shown}");
        assert_eq!((theirs[0], theirs[3]), (ours[0], ours[3]), "{shown}");
    }
    // And the fingerprint is the SHA-256 of the DER certificate.
    let der = output({
        let mut c = Command::new("sh");
        c.arg("-c").arg(format!(
            "openssl x509 -in '{}' -outform der | sha256sum",
            cert.display()
        ));
        c
    });
    if der.code() == 0 && der.stdout.len() >= 64 {
        assert_eq!(&fp["sha256:".len()..], &der.stdout[..64]);
    }
    // No identity: a clear error.
    let empty = crate::run::home();
    let out = rscq(&["fingerprint"], empty.path());
    assert_eq!(out.code(), 125, "{out}");
    assert!(out.stderr.contains("run `rscq keygen` first"), "{out}");
}

#[test]
fn server_prints_its_fingerprint() {
    let home = home();
    let dir = home.path().join("srv");
    let made = output(command(
        SERVER,
        &["--gen-cert", dir.to_str().expect("utf-8")],
        home.path(),
    ));
    assert_eq!(made.code(), 0, "{made}");
    let cert = dir.join("cert.pem");
    let out = output(command(
        SERVER,
        &[
            "--print-fingerprint",
            "--cert",
            cert.to_str().expect("utf-8"),
        ],
        home.path(),
    ));
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (0, made.stdout.as_str()),
        "{out}"
    );
    assert!(out.stdout.starts_with("sha256:"), "{out}");
    let out = output(command(SERVER, &["--print-fingerprint"], home.path()));
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("--cert is required"), "{out}");
}

/// Starts rscq-server on loopback for `clients` with `root` exported, and
/// returns it with its port.
fn server(home: &Path, root: &Path, clients: &Path) -> (Bg, u16) {
    server_with(home, root, clients, &["-v"])
}

/// [`server`] with the flags `flags` before `--config`.
pub fn server_with(home: &Path, root: &Path, clients: &Path, flags: &[&str]) -> (Bg, u16) {
    let dir = home.join("srv");
    let made = output(command(
        SERVER,
        &["--gen-cert", dir.to_str().expect("utf-8")],
        home,
    ));
    assert_eq!(made.code(), 0, "{made}");
    let config = home.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ncert = \"srv/cert.pem\"\nkey = \"srv/key.pem\"\nroot = \"{}\"\nauthorized_clients = \"{}\"\n",
            root.display(),
            clients.display()
        ),
    )
    .expect("write");
    let mut args = flags.to_vec();
    args.extend(["--config", config.to_str().expect("utf-8")]);
    let srv = Bg::spawn(command(SERVER, &args, home));
    let err = srv.wait_for("listening on ", true);
    let port = err
        .lines()
        .find_map(|l| l.strip_prefix("rscq-server: listening on "))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.trim().parse().ok())
        .expect("port");
    (srv, port)
}

#[test]
fn removed_client_loses_its_session_and_others_keep_theirs() {
    let top = home();
    let (a_home, b_home) = (top.path().join("a"), top.path().join("b"));
    let srv_home = top.path().join("s");
    let root = top.path().join("export");
    for d in [&a_home, &b_home, &srv_home, &root] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(root.join("f"), "data\n").expect("write");
    let a = keygen(&a_home);
    keygen(&b_home);
    // B's line as `rscq fingerprint` prints it: the file takes it as is.
    let b_line = rscq(&["fingerprint"], &b_home).stdout;
    let clients = srv_home.join("clients.txt");
    std::fs::write(&clients, format!("{a} a\n{b_line}")).expect("write");
    let (srv, port) = server(&srv_home, &root, &clients);

    let go = top.path().join("go");
    let script = format!(
        "cat /r/f; while [ ! -e {} ]; do sleep 0.05; done; cat /r/f",
        go.display()
    );
    let remote = format!("127.0.0.1:{port}");
    let client = |home: &Path| {
        Bg::spawn(command(
            RSCQ,
            &[
                "--remote", &remote, "--pure", "--mount", "/r=/", "sh", "-c", &script,
            ],
            home,
        ))
    };
    let (ca, cb) = (client(&a_home), client(&b_home));
    ca.wait_for("data\n", false);
    cb.wait_for("data\n", false);

    // Remove B: the change alone is noticed.
    std::fs::write(&clients, format!("# only a now\n{a} a\n")).expect("write");
    srv.wait_for("is no longer authorized", true);
    std::fs::write(&go, "").expect("write");
    let (oa, ob) = (ca.finish(), cb.finish());
    assert_eq!((oa.code(), oa.stdout.as_str()), (0, "data\ndata\n"), "{oa}");
    assert_eq!(ob.stdout, "data\n", "{ob}");
    assert_ne!(ob.code(), 0, "{ob}");
    assert!(
        ob.stderr
            .contains("this client was removed from the server's authorized clients file"),
        "{ob}"
    );
    // B cannot come back; A can.
    let again = |home: &Path| {
        output(command(
            RSCQ,
            &["--remote", &remote, "--mount", "/r=/", "cat", "/r/f"],
            home,
        ))
    };
    let out = again(&b_home);
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("client not authorized"), "{out}");
    let out = again(&a_home);
    assert_eq!((out.code(), out.stdout.as_str()), (0, "data\n"), "{out}");

    // SIGHUP re-reads the file even when it did not change.
    let before = srv.stderr().matches("re-read").count();
    let hup = output({
        let mut c = Command::new("kill");
        c.args(["-HUP", &srv.pid().to_string()]);
        c
    });
    assert_eq!(hup.code(), 0, "{hup}");
    srv.wait_for("(SIGHUP)", true);
    assert_eq!(srv.stderr().matches("re-read").count(), before + 1);
    // Each session was logged when it ended, with its client and count.
    let log = srv.stderr();
    assert!(log.contains("session ended"), "{log}");
    assert!(log.contains("requests="), "{log}");
}
