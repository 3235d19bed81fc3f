#!/usr/bin/env bash
# Runs rscq's whole test suite: formatting, lints, the benchmark build, the
# unit tests and the integration suites (tests/it: real programs under the
# real rscq against a real rscq-server over loopback QUIC; tests/net: the
# remote network stack across network namespaces; tests/netem: the delay
# line). Extra arguments go to `cargo test` (e.g. a test name filter).
#
# On a fresh Debian machine run it as root: it installs the programs the
# tests run with apt first. Tests that need root (namespaces, unshare) are
# skipped without root unless RSCQ_REQUIRE_ROOT_TESTS=1 is set, which makes
# them fail instead; CI sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages of the programs the tests run.
packages=(iproute2 gcc libc6-dev curl w3m wget busybox-static tar gzip coreutils findutils
    util-linux procps psmisc file hostname golang-go openssh-client man-db sshfs openssh-server
    iputils-ping make)
tools=(ip gcc ss getent curl w3m wget busybox tar gzip sha256sum find unshare ps killall file hostname go
    ssh-keygen man sshfs sshd ping make)
missing=()
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -ne 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tests/run.sh: installing ${packages[*]} (missing: ${missing[*]})"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${packages[@]}"
    else
        echo "tests/run.sh: missing programs the tests need: ${missing[*]}" >&2
        echo "tests/run.sh: install them (as root: apt-get install ${packages[*]})" >&2
        exit 1
    fi
fi
# CPython's own socket suites (tests/net/cpython.rs) need the interpreter's
# `test` package; Debian ships it apart from python3.
if ! python3 -c 'import test.test_socket' >/dev/null 2>&1 &&
    ! /usr/bin/python3 -c 'import test.test_socket' >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ -x /usr/bin/python3 ]; then
        pyver=$(/usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        echo "tests/run.sh: installing libpython${pyver}-testsuite (CPython's socket suites)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "libpython${pyver}-testsuite" ||
            { apt-get update && apt-get install -y --no-install-recommends "libpython${pyver}-testsuite"; }
    else
        echo "tests/run.sh: python3 has no test package (install libpython3.X-testsuite)" >&2
        exit 1
    fi
fi
if command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi

# The POSIX file-system conformance suite pjdfstest (the crates.io Rust port
# of pjd/pjdfstest), pinned, for tests/it/pjdfstest.rs.
pjdfstest=target/pjdfstest/bin/pjdfstest
if [ ! -x "$pjdfstest" ]; then
    echo "tests/run.sh: installing pjdfstest 0.2.2 into target/pjdfstest"
    cargo install pjdfstest --version 0.2.2 --locked --root target/pjdfstest --quiet
fi

# cargo-deny, for the license and ban checks of deny.toml. Built from
# crates.io once if missing (pinned, so a new release cannot need a newer
# toolchain): about 12 minutes on a busy 2-core machine.
if ! cargo deny --version >/dev/null 2>&1; then
    echo "tests/run.sh: installing cargo-deny"
    cargo install --locked cargo-deny --version 0.20.2 --quiet
fi

start=$(date +%s)
cargo fmt --all -- --check
# Licenses and banned crates (deny.toml); offline: no advisory database.
cargo deny --offline check licenses bans
cargo clippy --all-targets -- -D warnings
# Benchmarks are compiled here so they never rot; running them is
# `cargo bench` (see benches/README.md).
cargo bench --no-run
cargo test --release --lib --bins --tests "$@"
echo "tests/run.sh: all tests passed in $(($(date +%s) - start))s"
