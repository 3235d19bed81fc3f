//! Authentication, certificate pinning, trust on first use, confinement to
//! `--root`, and `--read-only`.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{
    Env, Output, RSCQ, Server, assert_same_tree, cmd, gen_server_cert, keygen, p, run_timeout,
    snapshot,
};

const SECRET: &str = "TOP-SECRET-7f3a9c-outside-the-export";

/// Bounded: a refused connection must not take long.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(30);

/// An rscq run with explicit connection flags (none added by the harness).
fn rscq_raw(env: &Env, args: &[OsString]) -> Output {
    let mut c = cmd(&[RSCQ]);
    c.env("XDG_CONFIG_HOME", &env.xdg).args(args);
    run_timeout(c, REFUSAL_TIMEOUT)
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

/// `touch MARKER` as the program: it must never run when rscq refuses.
fn marker_program(env: &Env) -> (PathBuf, Vec<OsString>) {
    let marker = env.base.join("program-ran");
    (marker.clone(), os(&["--", "touch", &p(&marker)]))
}

#[test]
fn unauthorized_client_is_refused() {
    let env = Env::new();
    let export = env.base.join("export");
    fs::create_dir(&export).unwrap();
    fs::write(export.join("f"), "data\n").unwrap();
    let server = env.server(&export);
    let stranger = env.base.join("cfg/stranger");
    let stranger_fp = keygen(&stranger);
    assert_ne!(stranger_fp, env.client_fp);
    let (marker, program) = marker_program(&env);
    let mut args = os(&[
        "--remote",
        &format!("127.0.0.1:{}", server.port()),
        "--server-cert",
        &p(&env.server_dir.join("cert.pem")),
        "--identity",
        &p(&stranger),
        "--known-servers",
        &p(&env.known),
        "--mount",
        "/x=/",
    ]);
    args.extend(program);
    let r = rscq_raw(&env, &args).failure();
    let err = r.err().to_lowercase();
    assert!(
        err.contains("not authorized") && err.contains(&stranger_fp),
        "the error must say the client is not authorized, and name its fingerprint\n{}",
        r.dump()
    );
    assert!(!marker.exists(), "the program ran\n{}", r.dump());
    assert!(r.elapsed < Duration::from_secs(15), "{}", r.dump());
    // The authorized identity works against the same server.
    let ok = run_timeout(
        env.rscq(Some(&server), &["--mount", "/x=/", "--", "cat", "/x/f"]),
        REFUSAL_TIMEOUT,
    )
    .success();
    assert_eq!(ok.stdout, b"data\n");
}

#[test]
fn changed_server_certificate_is_refused() {
    let env = Env::new();
    let export = env.base.join("export");
    fs::create_dir(&export).unwrap();
    fs::write(export.join("f"), "data\n").unwrap();
    let mut server = env.server(&export);
    let port = server.port();
    let label = format!("127.0.0.1:{port}");
    let tofu = |env: &Env, program: &[&str]| {
        let mut args = os(&[
            "--remote",
            &label,
            "--identity",
            &p(&env.client_dir),
            "--known-servers",
            &p(&env.known),
            "--mount",
            "/x=/",
            "--",
        ]);
        args.extend(os(program));
        rscq_raw(env, &args)
    };
    // First use: recorded.
    let r = tofu(&env, &["cat", "/x/f"]).success();
    assert_eq!(r.out(), "data\n");
    let known = fs::read_to_string(&env.known).unwrap_or_default();
    assert!(
        known.contains(&label) && known.contains(&env.server_fp),
        "known_servers does not record {label} {}:\n{known}\n{}",
        env.server_fp,
        r.dump()
    );
    // Second use: accepted from the file.
    tofu(&env, &["cat", "/x/f"]).success();

    // Same address, new certificate.
    server.kill();
    let new_dir = env.base.join("cfg/server2");
    let new_fp = gen_server_cert(&new_dir);
    let mut spec = env.spec(&export);
    spec.cert_dir = new_dir;
    spec.port = port;
    let _server2 = Server::start(spec);
    let (marker, _) = marker_program(&env);
    let r = tofu(&env, &["touch", &p(&marker)]).failure();
    assert!(
        r.err().to_lowercase().contains("certificate changed"),
        "the error must say the server certificate changed\n{}",
        r.dump()
    );
    assert!(r.err().contains(&new_fp), "{}", r.dump());
    assert!(!marker.exists(), "the program ran\n{}", r.dump());
    // The store still holds the original certificate only.
    let after = fs::read_to_string(&env.known).unwrap();
    assert!(
        after.contains(&env.server_fp) && !after.contains(&new_fp),
        "{after}"
    );
}

#[test]
fn wrong_pinned_certificate_is_refused() {
    let env = Env::new();
    let export = env.base.join("export");
    fs::create_dir(&export).unwrap();
    let server = env.server(&export);
    let other = env.base.join("cfg/other");
    gen_server_cert(&other);
    let (marker, program) = marker_program(&env);
    let mut args = os(&[
        "--remote",
        &format!("127.0.0.1:{}", server.port()),
        "--server-cert",
        &p(&other.join("cert.pem")),
        "--identity",
        &p(&env.client_dir),
        "--known-servers",
        &p(&env.known),
        "--mount",
        "/x=/",
    ]);
    args.extend(program);
    let r = rscq_raw(&env, &args).failure();
    let err = r.err().to_lowercase();
    assert!(
        err.contains("certificate") && err.contains("mismatch"),
        "the error must say the certificate does not match the pinned one\n{}",
        r.dump()
    );
    assert!(!marker.exists(), "the program ran\n{}", r.dump());
    assert!(
        !env.known.exists(),
        "a pinned connection must not write known_servers"
    );
}

/// Symlinks and `..` inside the export must resolve inside `--root`.
///
/// `..` of the mount's root is the local parent by design, so a path that
/// climbs out of the mount lexically is a local path. To tell such a
/// legitimate local access from a server-side escape, the mount point is
/// deeper locally (`$T/l1/l2/l3/l4/mnt`) than the export is on the server
/// (`$T/export`): the same number of `..` lands next to the secret only if
/// the server let it climb out of `--root`; locally it lands in
/// `$T/l1/l2/...`, where no secret exists.
#[test]
fn escapes_stay_inside_root() {
    let env = Env::new();
    let export = env.base.join("export");
    fs::create_dir_all(export.join("sub/deeper")).unwrap();
    let secret = env.base.join("secret.txt");
    fs::write(&secret, SECRET).unwrap();
    fs::write(export.join("inside.txt"), "inside\n").unwrap();
    let depth = export.components().count();
    symlink("/", export.join("abs")).unwrap();
    symlink("../".repeat(depth + 2), export.join("rel")).unwrap();
    symlink("/proc/self/root", export.join("magic")).unwrap();
    symlink("../../..", export.join("sub/up")).unwrap();
    symlink("../../secret.txt", export.join("sub/esc")).unwrap();
    symlink(&secret, export.join("absfile")).unwrap();
    symlink("/proc/self/cwd", export.join("cwd")).unwrap();
    let before = snapshot(&export);
    let server = env.server(&export);
    let m = p(&env.base.join("l1/l2/l3/l4/mnt"));
    let rel_secret = p(&secret).trim_start_matches('/').to_string();
    let base_name = env.base.file_name().unwrap().to_str().unwrap().to_string();
    let mount = format!("{m}=/");
    let run_under = |program: &[&str]| -> Output {
        let mut args = vec!["--mount", mount.as_str(), "--"];
        args.extend_from_slice(program);
        run_timeout(env.rscq(Some(&server), &args), Duration::from_secs(60))
    };
    // Sanity: the mount works, so refusals below are not an accident.
    let r = run_under(&["cat", &format!("{m}/inside.txt")]).success();
    assert_eq!(r.out(), "inside\n");

    let attempts: Vec<Vec<String>> = vec![
        vec!["cat".into(), format!("{m}/abs/{rel_secret}")],
        vec!["cat".into(), format!("{m}/rel/{rel_secret}")],
        vec!["cat".into(), format!("{m}/magic/{rel_secret}")],
        vec!["cat".into(), format!("{m}/cwd/secret.txt")],
        vec!["cat".into(), format!("{m}/cwd/../secret.txt")],
        vec!["cat".into(), format!("{m}/sub/up/{base_name}/secret.txt")],
        vec!["cat".into(), format!("{m}/sub/deeper/../up/{base_name}/secret.txt")],
        vec!["cat".into(), format!("{m}/sub/esc")],
        vec!["cat".into(), format!("{m}/absfile")],
        vec!["sh".into(), "-c".into(), format!("cd '{m}/abs' && cat '{rel_secret}'")],
        vec!["sh".into(), "-c".into(), format!("cd '{m}/rel' && cat '{rel_secret}'")],
        vec!["sh".into(), "-c".into(), format!("cd '{m}/sub/deeper' && cat ../../../secret.txt")],
        vec!["sh".into(), "-c".into(), format!("cd '{m}/sub/deeper' && cat ../../../../{base_name}/secret.txt")],
        // openat() relative to a remote directory descriptor.
        vec![
            "python3".into(),
            "-c".into(),
            "import os,sys\nfd=os.open(sys.argv[1],os.O_RDONLY|os.O_DIRECTORY)\nfor rel in sys.argv[2:]:\n  try:\n    f=os.open(rel,os.O_RDONLY,dir_fd=fd); print(os.read(f,100))\n  except OSError as e: print('refused', rel, e.errno)\n"
                .into(),
            format!("{m}/sub"),
            "../../secret.txt".into(),
            format!("../../../{base_name}/secret.txt"),
            format!("{}{rel_secret}", "../".repeat(depth + 3)),
            format!("up/{base_name}/secret.txt"),
        ],
        vec!["ls".into(), "-a".into(), format!("{m}/abs/")],
        vec!["ls".into(), "-a".into(), format!("{m}/rel/")],
        vec!["find".into(), format!("{m}/sub/up/"), "-maxdepth".into(), "2".into(), "-name".into(), "secret.txt".into()],
        vec!["tar".into(), "cf".into(), "-".into(), "-C".into(), format!("{m}/rel/{}", p(&env.base).trim_start_matches('/')), ".".into()],
    ];
    for argv in &attempts {
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let r = run_under(&argv);
        assert!(
            !r.out().contains(SECRET) && !r.err().contains(SECRET),
            "ESCAPE: the secret outside --root was read\n{}",
            r.dump()
        );
        // An `ls` of a clamped `/` may show the export root, but never the
        // real root.
        assert!(
            !r.out().lines().any(|l| l == "proc" || l == "usr"),
            "ESCAPE: real / listed\n{}",
            r.dump()
        );
        // The secret's directory must not be listed either.
        let lists = ["ls", "find", "tar"].contains(&argv[0]);
        assert!(
            !(lists && r.out().contains("secret.txt")),
            "ESCAPE: listed outside the root\n{}",
            r.dump()
        );
    }
    assert_same_tree(
        "export after escape attempts",
        "before",
        &before,
        "after",
        &snapshot(&export),
    );
}

#[test]
fn read_only_server_refuses_writes() {
    let env = Env::new();
    let export = env.base.join("export");
    fs::create_dir_all(export.join("dir/inner")).unwrap();
    fs::write(export.join("f.txt"), "content\n").unwrap();
    fs::write(export.join("dir/inner/g.txt"), "g\n").unwrap();
    fs::create_dir(export.join("empty")).unwrap();
    let before = snapshot(&export);
    let mut spec = env.spec(&export);
    spec.read_only = true;
    let server = Server::start(spec);
    let m = "/ro";
    let run_under = |program: &[&str]| -> Output {
        let mut args = vec!["--mount", "/ro=/", "--"];
        args.extend_from_slice(program);
        run_timeout(env.rscq(Some(&server), &args), Duration::from_secs(60))
    };
    // Reads work.
    assert_eq!(
        run_under(&["cat", "/ro/f.txt", "/ro/dir/inner/g.txt"])
            .success()
            .out(),
        "content\ng\n"
    );
    let r = run_under(&["ls", "-R", m]).success();
    assert!(r.out().contains("g.txt"), "{}", r.dump());
    run_under(&["stat", "/ro/f.txt"]).success();

    for argv in [
        vec!["touch", "/ro/new"],
        vec!["touch", "/ro/f.txt"],
        vec!["mkdir", "/ro/newdir"],
        vec!["mkdir", "-p", "/ro/dir/a/b"],
        vec!["rm", "/ro/f.txt"],
        vec!["rm", "-r", "/ro/dir"],
        vec!["rmdir", "/ro/empty"],
        vec!["mv", "/ro/f.txt", "/ro/moved.txt"],
        vec!["chmod", "600", "/ro/f.txt"],
        vec!["ln", "-s", "f.txt", "/ro/lnk"],
        vec!["truncate", "-s", "0", "/ro/f.txt"],
        vec!["sh", "-c", "echo x > /ro/f.txt"],
        vec!["sh", "-c", "echo x >> /ro/f.txt"],
        vec!["cp", "/etc/passwd", "/ro/copy"],
    ] {
        let r = run_under(&argv).failure();
        assert!(
            r.err().contains("Read-only file system"),
            "expected EROFS (\"Read-only file system\")\n{}",
            r.dump()
        );
    }
    assert_same_tree(
        "read-only export",
        "before",
        &before,
        "after",
        &snapshot(&export),
    );
}
