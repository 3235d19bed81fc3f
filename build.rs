//! Builds the fast path's preload library (`src/fastpath/preload.c`) with
//! the system C compiler; `rscq` embeds it and writes it out per run.
//!
//! Freestanding flags: the library links no libc (it takes the program's),
//! has no stack protector, and no red zone (its stub is reached by `call`).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "src/fastpath/preload.c";
    println!("cargo:rerun-if-changed={source}");
    println!("cargo:rerun-if-changed=src/fastpath/answers.h");
    println!("cargo:rerun-if-env-changed=CC");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let library = out.join("librscq_fastpath.so");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(&cc)
        .args([
            "-O2",
            "-fPIC",
            "-shared",
            "-nostdlib",
            "-ffreestanding",
            "-fno-builtin",
            "-fno-stack-protector",
            "-mno-red-zone",
            "-fvisibility=hidden",
            "-fno-asynchronous-unwind-tables",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wl,-z,now",
            "-Wl,--hash-style=both",
            "-o",
        ])
        .arg(&library)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` for {source}: {e}"));
    assert!(status.success(), "`{cc}` failed on {source}: {status}");
}
