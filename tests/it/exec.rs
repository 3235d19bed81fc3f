//! `execve` of remote files: scripts (with `$0` and arguments as the
//! program gave them, nested `#!` interpreters, `env`), binaries built in
//! the mount, a `./configure && make && make check` project, and a python
//! venv made and used in the mount; each compared with a direct run.

use std::fs;

use crate::harness::{Backend, Pair, cmd, each_mode, p, run, sh_c};

fn write_exec(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text).expect("write executable");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod");
}

#[test]
fn scripts_and_binaries_in_a_mount_run() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let t = pair.t();
        let src = pair.local.join("args.c");
        fs::write(
            &src,
            "#include <stdio.h>\nint main(int argc, char **argv) { for (int i = 0; i < argc; i++) printf(\"[%s]\", argv[i]); printf(\"\\n\"); return 3; }\n",
        )
        .expect("write source");
        for dir in [&pair.tree, &pair.remote_tree] {
            let built = run(cmd(&["gcc", "-o", &p(&dir.join("args")), &p(&src)]));
            assert!(built.status.success(), "{}", built.dump());
            write_exec(
                &dir.join("show.sh"),
                "#!/bin/sh -u\necho \"script [$0] [$*]\"\n",
            );
            write_exec(
                &dir.join("nested.sh"),
                &format!("#!{t}/show.sh from-line\nnot run\n"),
            );
            write_exec(
                &dir.join("py"),
                "#!/usr/bin/env python3\nimport sys\nprint('python', sys.argv)\n",
            );
            fs::write(dir.join("plain.txt"), "not executable\n").expect("write");
        }
        let script = format!(
            r#"
cd "{t}"
./show.sh one "two words"
"{t}/show.sh" abs
sub/../show.sh dotted
./nested.sh x
./py a b
./args first second; echo "args exit $?"
"{t}/exec.sh"
./plain.txt; echo "plain exit $?"
./missing; echo "missing exit $?"
./sub; echo "directory exit $?"
"#
        );
        let (d, _) = pair.same_writes(&sh_c(&script), &[pair.local.as_path()]);
        let out = d.out();
        for line in [
            "script [./show.sh] [one two words]",
            &format!("script [{t}/show.sh] [from-line ./nested.sh x]"),
            "python ['./py', 'a', 'b']",
            "[./args][first][second]",
            "args exit 3",
            "exec",
            "plain exit 126",
            "missing exit 127",
            "directory exit 126",
        ] {
            assert!(
                out.contains(line),
                "direct run lacks {line:?}:\n{}",
                d.dump()
            );
        }
    });
}

#[test]
fn configure_and_make_in_a_mount() {
    let configure = r##"#!/bin/sh
# An autoconf-style configure: build and run a probe, write config.h and a
# Makefile.
set -e
CC=${CC:-cc}
echo "checking whether $CC works..."
cat > conftest.c <<'X'
#include <stdio.h>
int main(void) { printf("%d\n", (int)sizeof(long)); return 0; }
X
$CC -o conftest conftest.c
SIZEOF_LONG=$(./conftest)
echo "checking size of long... $SIZEOF_LONG"
rm -f conftest conftest.c
echo "#define SIZEOF_LONG $SIZEOF_LONG" > config.h
printf 'CC = %s\nall: hello\nhello: hello.o util.o\n\t$(CC) -o hello hello.o util.o\n%%.o: %%.c config.h\n\t$(CC) -c -o $@ $<\ncheck: hello\n\t./hello world\n' "$CC" > Makefile
echo "config.status: creating Makefile"
"##;
    let hello = "#include <stdio.h>\n#include \"config.h\"\nconst char *greet(const char *);\nint main(int argc, char **argv) { printf(\"%s (long is %d bytes)\\n\", greet(argc > 1 ? argv[1] : \"nobody\"), SIZEOF_LONG); return 0; }\n";
    let util = "#include <stdio.h>\nstatic char buf[64];\nconst char *greet(const char *who) { snprintf(buf, sizeof buf, \"hello, %s\", who); return buf; }\n";
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        for dir in [&pair.tree, &pair.remote_tree] {
            let proj = dir.join("proj");
            fs::create_dir(&proj).expect("mkdir proj");
            write_exec(&proj.join("configure"), configure);
            fs::write(proj.join("hello.c"), hello).expect("write");
            fs::write(proj.join("util.c"), util).expect("write");
        }
        let script = format!(
            "cd '{}/proj' && ./configure && make && make check && ./hello again",
            pair.t()
        );
        let (d, _) = pair.same_writes(&sh_c(&script), &[pair.local.as_path()]);
        assert!(
            d.out()
                .ends_with("hello, world (long is 8 bytes)\nhello, again (long is 8 bytes)\n"),
            "{}",
            d.dump()
        );
    });
}

#[test]
fn a_python_venv_is_made_and_used_in_a_mount() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        let venv = format!("{}/venv", pair.t());
        let script = format!(
            "python3 -m venv --without-pip '{venv}' && '{venv}/bin/python' -c 'import sys; print(sys.prefix, sys.prefix != sys.base_prefix)' && printf '#!{venv}/bin/python\\nimport sys\\nprint(\"tool in\", sys.prefix)\\n' > '{venv}/bin/tool' && chmod +x '{venv}/bin/tool' && '{venv}/bin/tool'"
        );
        let (d, _) = pair.same_writes(&sh_c(&script), &[pair.local.as_path()]);
        assert_eq!(
            d.out(),
            format!("{venv} True\ntool in {venv}\n"),
            "{}",
            d.dump()
        );
    });
}
