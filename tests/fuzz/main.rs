//! A coverage-free, mutation-based fuzzer that runs on stable Rust, over
//! the frame and message decoders, the executor on a trap-filled root, and
//! the server's network request handlers.
//!
//! Each target runs for `RSCQ_FUZZ_SECS` (default a few seconds) from the
//! fixed seed, or `RSCQ_FUZZ_SEED`; a failure writes its input to a file
//! and says how to replay it with `RSCQ_FUZZ_REPLAY`. By hand, for longer:
//! `RSCQ_FUZZ_SECS=3600 cargo test --release --test fuzz`. The seeds are
//! committed under `tests/fuzz/corpus/<target>/`; after a protocol change,
//! `RSCQ_FUZZ_WRITE_CORPUS=1 cargo test --test fuzz corpus` writes them
//! again.

mod driver;
mod executor;
mod frames;
mod mutate;
mod net;
mod rng;
mod seeds;
mod trap_root;

use std::collections::BTreeSet;

#[test]
fn fuzz_frames() {
    driver::fuzz(&mut frames::Frames::new());
}

#[test]
fn fuzz_net() {
    driver::fuzz(&mut net::NetTarget::new());
}

#[test]
fn fuzz_executor() {
    driver::fuzz(&mut executor::ExecutorTarget::new());
}

/// Named seed files of one target.
type Seeds = Vec<(String, Vec<u8>)>;

/// The seeds the code builds, by target.
fn built_corpus() -> Vec<(&'static str, Seeds)> {
    vec![
        ("frames", seeds::frame_seeds()),
        ("executor", seeds::executor_seeds()),
        ("net", net::net_seeds()),
    ]
}

/// The committed corpus is what the code builds: a protocol change that
/// makes the seeds stale fails here (and `RSCQ_FUZZ_WRITE_CORPUS=1`
/// rewrites them).
#[test]
fn corpus_matches_the_seeds() {
    let write = std::env::var_os("RSCQ_FUZZ_WRITE_CORPUS").is_some();
    for (target, seeds) in built_corpus() {
        let dir = driver::corpus_dir(target);
        if write {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            for (name, bytes) in &seeds {
                std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("seed file");
            }
        }
        let on_disk = driver::load_corpus(target);
        let mut built: Vec<(String, Vec<u8>)> = seeds
            .into_iter()
            .map(|(name, bytes)| (format!("{name}.bin"), bytes))
            .collect();
        built.sort();
        assert_eq!(
            on_disk.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            built.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            "tests/fuzz/corpus/{target}: stale; RSCQ_FUZZ_WRITE_CORPUS=1 rewrites it"
        );
        assert!(
            on_disk == built,
            "tests/fuzz/corpus/{target}: a seed's bytes are stale; RSCQ_FUZZ_WRITE_CORPUS=1 rewrites them"
        );
    }
}

/// Every request variant has a seed, and every seed decodes.
#[test]
fn seeds_cover_every_request_variant() {
    let names: BTreeSet<&str> = seeds::every_request()
        .iter()
        .map(seeds::variant_name)
        .collect();
    assert_eq!(
        names.len(),
        seeds::every_request().len(),
        "one seed per variant"
    );
    let framed: BTreeSet<&str> = driver::load_corpus("frames")
        .iter()
        .flat_map(|(_, bytes)| mutate::decode_calls(bytes))
        .map(|call| seeds::variant_name(&call.request))
        .collect();
    assert_eq!(
        framed, names,
        "the frame corpus holds a call of every variant"
    );
}
