#!/usr/bin/env bash
# Runs rscq's test suite: unit tests and the integration suite (tests/it),
# which runs real programs under the real rscq against a real rscq-server
# over loopback QUIC. Extra arguments go to `cargo test` (e.g. a test name
# filter, or `-- --test-threads=1`).
#
# Tests that need root (the server in its own UTS namespace) are skipped
# without root unless RSCQ_REQUIRE_ROOT_TESTS=1 is set, which makes them fail
# instead; CI sets it.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in sh ls stat cat cp mv rm rmdir mkdir touch chmod ln truncate find tar gzip \
    du sha256sum od seq head tail wc sort python3 unshare hostname uname; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -ne 0 ]; then
    echo "tests/run.sh: missing programs the tests need: ${missing[*]}" >&2
    exit 1
fi

start=$(date +%s)
cargo test --release --all-targets "$@"
echo "tests/run.sh: all tests passed in $(($(date +%s) - start))s"
