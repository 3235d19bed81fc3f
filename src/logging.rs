//! Log output of both binaries on stderr: the level from `-v` or
//! `RUST_LOG` ([`crate::config::log_directive`]), the format from
//! `--log-format`, and colours only for a terminal.
//!
//! Owns the one global `tracing` subscriber; must be started once, by a
//! binary's `main`, and not by library code.

use std::io::IsTerminal;

use crate::config::LogFormat;

/// Installs the subscriber: `directive` is an `EnvFilter` directive
/// (`"error"`, `"debug"`, `"rscq=info"`…). JSON lines carry the time,
/// level, target and fields as one object each, for a log collector; they
/// never carry colour codes.
pub fn start(directive: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::new(directive);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            // Colour codes only help a person at a terminal, not a log file.
            .with_ansi(std::io::stderr().is_terminal())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}
