//! The command line as a user meets it: the real `rscq` and `rscq-server`
//! binaries run with the flags, files and mistakes a user would make, and
//! what they print and return compared with what `env`, `ssh-keygen` and
//! friends would say.
//!
//! Programs run under rscq here use the embedded executor (no `--remote`),
//! so these tests need ptrace rights but no server.

mod run;

mod config;
mod keys;
mod logging;
mod messages;
mod packaging;
mod trace;
