//! `execve(2)` of a remote file: what the kernel's `binfmt_script` does
//! with a `#!` line, so rscq can do the same for a script that lives on the
//! server (the interpreter runs with the script's path as the program gave
//! it, and opens the script through the mount).
//!
//! Must not read the program's memory or run anything: it lays out bytes.

use crate::errno::Errno;

/// How much of a file the kernel reads to recognise it (`BINPRM_BUF_SIZE`).
pub const HEAD: usize = 256;

/// How many `#!` interpreters may follow each other (the kernel's
/// `BINPRM_MAX_RECURSION` plus the first file).
pub const MAX_HOPS: u32 = 5;

/// A script's `#!` line: the interpreter and its one optional argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shebang {
    pub interpreter: Vec<u8>,
    pub argument: Option<Vec<u8>>,
}

/// The `#!` line at the start of `head`, `Ok(None)` if it has none, or
/// ENOEXEC for one with no interpreter or a name cut off by the limit.
pub fn shebang(head: &[u8]) -> Result<Option<Shebang>, Errno> {
    let Some(rest) = head.strip_prefix(b"#!") else {
        return Ok(None);
    };
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let (line, complete) = match rest.iter().position(|&b| b == b'\n') {
        Some(end) => (&rest[..end], true),
        None => (rest, head.len() < HEAD),
    };
    let start = line.iter().position(|b| !blank(b)).unwrap_or(line.len());
    let line = &line[start..];
    let end = line.iter().rposition(|b| !blank(b)).map_or(0, |i| i + 1);
    let line = &line[..end];
    if line.is_empty() {
        return Err(Errno(libc::ENOEXEC));
    }
    let name_end = line.iter().position(blank).unwrap_or(line.len());
    if !complete && name_end == line.len() {
        // The name may go on past what the kernel reads.
        return Err(Errno(libc::ENOEXEC));
    }
    let interpreter = line[..name_end].to_vec();
    let rest = &line[name_end..];
    let argument = rest
        .iter()
        .position(|b| !blank(b))
        .map(|i| rest[i..].to_vec());
    Ok(Some(Shebang {
        interpreter,
        argument,
    }))
}

/// A new `argv` laid out at `base`: its strings, then the NULL-terminated
/// pointer array. `kept` are pointers the program's own `argv` already
/// holds (its `argv[1..]`). Returns the bytes and the array's address.
pub fn script_argv(base: u64, shebang: &Shebang, script: &[u8], kept: &[u64]) -> (Vec<u8>, u64) {
    let mut bytes = Vec::new();
    let mut pointers = Vec::new();
    let strings = std::iter::once(shebang.interpreter.as_slice())
        .chain(shebang.argument.as_deref())
        .chain(std::iter::once(script));
    for s in strings {
        pointers.push(base + bytes.len() as u64);
        bytes.extend_from_slice(s);
        bytes.push(0);
    }
    while bytes.len() % 8 != 0 {
        bytes.push(0);
    }
    let array = base + bytes.len() as u64;
    for p in pointers.iter().chain(kept).chain(std::iter::once(&0)) {
        bytes.extend_from_slice(&p.to_ne_bytes());
    }
    (bytes, array)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(interpreter: &str, argument: Option<&str>) -> Option<Shebang> {
        Some(Shebang {
            interpreter: interpreter.as_bytes().to_vec(),
            argument: argument.map(|a| a.as_bytes().to_vec()),
        })
    }

    #[test]
    fn shebang_lines_as_the_kernel_reads_them() {
        assert_eq!(shebang(b"#!/bin/sh\necho"), Ok(sb("/bin/sh", None)));
        assert_eq!(shebang(b"#! /bin/sh -e \n"), Ok(sb("/bin/sh", Some("-e"))));
        // One argument: the rest of the line, inner blanks and all.
        assert_eq!(
            shebang(b"#!/usr/bin/env python3 -u  -v\t\n"),
            Ok(sb("/usr/bin/env", Some("python3 -u  -v")))
        );
        assert_eq!(shebang(b"#!/bin/sh"), Ok(sb("/bin/sh", None)));
        assert_eq!(shebang(b"\x7fELF\x02"), Ok(None));
        assert_eq!(shebang(b"#!  \n"), Err(Errno(libc::ENOEXEC)));
        // A name the 256-byte limit cuts off.
        let mut long = b"#!/".to_vec();
        long.resize(HEAD, b'x');
        assert_eq!(shebang(&long), Err(Errno(libc::ENOEXEC)));
        // A long argument is cut, not refused.
        let mut cut = b"#!/bin/sh ".to_vec();
        cut.resize(HEAD, b'a');
        assert_eq!(shebang(&cut).unwrap().unwrap().interpreter, b"/bin/sh");
    }

    #[test]
    fn script_argv_puts_the_interpreter_then_the_script_path_first() {
        let (bytes, array) = script_argv(
            1000,
            &sb("/bin/sh", Some("-e")).unwrap(),
            b"./x.sh",
            &[77, 88],
        );
        // "/bin/sh\0-e\0./x.sh\0" is 18 bytes, padded to 24.
        assert_eq!(array, 1024);
        assert_eq!(&bytes[..18], b"/bin/sh\0-e\0./x.sh\0");
        let ptr = |i: usize| u64::from_ne_bytes(bytes[24 + 8 * i..32 + 8 * i].try_into().unwrap());
        assert_eq!(
            (ptr(0), ptr(1), ptr(2), ptr(3), ptr(4), ptr(5)),
            (1000, 1008, 1011, 77, 88, 0)
        );
    }
}
