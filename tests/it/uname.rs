//! `--uname`: the server runs in its own UTS namespace with another
//! hostname (needs root for `unshare -u`).

use std::fs;
use std::time::Duration;

use crate::harness::{Env, Output, Server, cmd, have_root, run, run_timeout};

const REMOTE_HOST: &str = "rscq-remote-test";

fn uname_server(env: &Env) -> Server {
    let export = env.base.join("export");
    fs::create_dir(&export).unwrap();
    fs::write(export.join("f"), "remote file\n").unwrap();
    let mut spec = env.spec(&export);
    spec.hostname = Some(REMOTE_HOST.into());
    Server::start(spec)
}

fn under(env: &Env, server: &Server, flags: &[&str], program: &[&str]) -> Output {
    let mut args: Vec<&str> = flags.to_vec();
    args.push("--");
    args.extend_from_slice(program);
    run_timeout(env.rscq(Some(server), &args), Duration::from_secs(60)).success()
}

#[test]
fn uname_comes_from_the_server() {
    if !have_root("uname_comes_from_the_server") {
        return;
    }
    let env = Env::new();
    let server = uname_server(&env);
    let local = run(cmd(&["uname", "-n"])).success().out();
    assert_ne!(
        local.trim(),
        REMOTE_HOST,
        "the test needs a different local hostname"
    );
    let expect = format!("{REMOTE_HOST}\n");

    for mode in crate::harness::MODES {
        let mut flags = vec!["--uname"];
        flags.extend_from_slice(mode);
        assert_eq!(under(&env, &server, &flags, &["uname", "-n"]).out(), expect);
        assert_eq!(under(&env, &server, &flags, &["hostname"]).out(), expect);
        assert_eq!(
            under(
                &env,
                &server,
                &flags,
                &["python3", "-c", "import os; print(os.uname().nodename)"]
            )
            .out(),
            expect
        );
        // With a mount too, and from a forked child.
        flags.extend(["--mount", "/r=/"]);
        let r = under(
            &env,
            &server,
            &flags,
            &["sh", "-c", "cat /r/f; (uname -n); hostname"],
        );
        assert_eq!(
            r.out(),
            format!("remote file\n{REMOTE_HOST}\n{REMOTE_HOST}\n"),
            "{}",
            r.dump()
        );
    }
    // Same kernel: every other field is the local one.
    let local_all = run(cmd(&["uname", "-srvmo"])).success().out();
    assert_eq!(
        under(&env, &server, &["--uname"], &["uname", "-srvmo"]).out(),
        local_all
    );
}

#[test]
fn without_uname_flag_hostname_is_local() {
    if !have_root("without_uname_flag_hostname_is_local") {
        return;
    }
    let env = Env::new();
    let server = uname_server(&env);
    let local = run(cmd(&["uname", "-n"])).success().out();
    let local_hostname = run(cmd(&["hostname"])).success().out();
    assert_eq!(
        under(&env, &server, &["--mount", "/r=/"], &["uname", "-n"]).out(),
        local
    );
    assert_eq!(
        under(&env, &server, &["--mount", "/r=/"], &["hostname"]).out(),
        local_hostname
    );
    let r = under(
        &env,
        &server,
        &["--mount", "/r=/"],
        &["sh", "-c", "cat /r/f; uname -n"],
    );
    assert_eq!(r.out(), format!("remote file\n{local}"));
    // The server really is in another UTS namespace.
    assert_ne!(local.trim(), REMOTE_HOST);
}
