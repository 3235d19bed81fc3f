//! The fuzz loop shared by every target: seeds from the committed corpus,
//! mutation, a time budget, outcome feedback, failure files and replay.
//!
//! Coverage-free: an input is kept for further mutation when it produced
//! an outcome (request kind and answer) not seen before, a cheap stand-in
//! for coverage that steers towards inputs the server answers differently.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// The default time per target: short, so CI stays short; hours by hand.
const DEFAULT_SECS: f64 = 4.0;
/// The default seed: fixed, so a CI failure is reproducible.
const DEFAULT_SEED: u64 = 0x5eed_f022;
/// The most inputs kept in memory besides the seeds.
const MAX_KEPT: usize = 4096;

/// One thing to fuzz.
pub trait Target {
    fn name(&self) -> &'static str;
    /// A new input from `input` (and perhaps another from `corpus`).
    fn mutate(&mut self, rng: &mut Rng, input: &[u8], corpus: &[Vec<u8>]) -> Vec<u8>;
    /// Runs one input: `Ok` with a summary of what happened (the outcome
    /// feedback), `Err` with what went wrong.
    fn run(&mut self, input: &[u8]) -> Result<u64, String>;
    /// The bytes that reproduce a failure of `input` from a fresh start
    /// (a target with state across inputs gives its whole history).
    fn reproducer(&self, input: &[u8]) -> Vec<u8> {
        input.to_vec()
    }
}

pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/corpus")
        .join(target)
}

/// Every file of the target's committed corpus, in name order.
pub fn load_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("corpus entry");
            let bytes = std::fs::read(e.path()).expect("corpus file");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

fn env_secs() -> Duration {
    let secs = std::env::var("RSCQ_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(DEFAULT_SECS);
    Duration::from_secs_f64(secs.max(0.0))
}

fn env_seed() -> u64 {
    std::env::var("RSCQ_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

/// Writes a line past the test harness's output capture, so the figures
/// show in CI logs even when the test passes.
pub fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Fuzzes `target` for `RSCQ_FUZZ_SECS`, or replays `RSCQ_FUZZ_REPLAY`.
/// Panics with the failure file's path on the first failure.
pub fn fuzz(target: &mut dyn Target) {
    let name = target.name();
    if let Some(path) = std::env::var_os("RSCQ_FUZZ_REPLAY") {
        let path = PathBuf::from(path);
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if !file_name.is_some_and(|n| n.starts_with(&format!("{name}-"))) {
            report(&format!(
                "fuzz {name}: skipped, replaying {}",
                path.display()
            ));
            return;
        }
        let input = std::fs::read(&path).expect("replay file");
        match run_caught(target, &input) {
            Ok(_) => report(&format!("fuzz {name}: {} passes now", path.display())),
            Err(why) => panic!("fuzz {name}: {} still fails: {why}", path.display()),
        }
        return;
    }
    let budget = env_secs();
    let seed = env_seed();
    let mut rng = Rng::new(seed ^ hash(name.as_bytes()));
    let mut corpus: Vec<Vec<u8>> = load_corpus(name).into_iter().map(|(_, b)| b).collect();
    assert!(!corpus.is_empty(), "fuzz {name}: empty corpus");
    let seeds = corpus.len();
    let mut outcomes = HashSet::new();
    let mut executions: u64 = 0;
    let started = Instant::now();
    // Every seed once as it is, then mutants until the time is up.
    let mut next_seed = 0;
    while next_seed < seeds || started.elapsed() < budget {
        let input = if next_seed < seeds {
            next_seed += 1;
            corpus[next_seed - 1].clone()
        } else {
            let parent = rng.below(corpus.len());
            let parent = corpus[parent].clone();
            target.mutate(&mut rng, &parent, &corpus)
        };
        executions += 1;
        match run_caught(target, &input) {
            Ok(outcome) => {
                if outcomes.insert(outcome) && next_seed >= seeds && corpus.len() < seeds + MAX_KEPT
                {
                    corpus.push(input);
                }
            }
            Err(why) => fail(target, &input, seed, executions, &why),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    // The figure the README quotes: executions per second of this target.
    report(&format!(
        "fuzz {name}: {executions} executions in {secs:.1} s = {:.0}/s, seed {seed}, {} seeds, {} inputs kept, {} outcomes",
        executions as f64 / secs.max(1e-9),
        seeds,
        corpus.len() - seeds,
        outcomes.len()
    ));
}

fn run_caught(target: &mut dyn Target, input: &[u8]) -> Result<u64, String> {
    let run = std::panic::AssertUnwindSafe(|| target.run(input));
    match std::panic::catch_unwind(run) {
        Ok(result) => result,
        Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
    }
}

pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(not a string)".to_owned())
}

fn fail(target: &dyn Target, input: &[u8], seed: u64, executions: u64, why: &str) -> ! {
    let name = target.name();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz-failures");
    std::fs::create_dir_all(&dir).expect("failure dir");
    let path = dir.join(format!("{name}-{seed}-{executions}.bin"));
    std::fs::write(&path, target.reproducer(input)).expect("failure file");
    let line = format!(
        "fuzz {name}: FAILED after {executions} executions: {why}\n  input: {}\n  replay: RSCQ_FUZZ_REPLAY={} cargo test --release --test fuzz -- {name}",
        path.display(),
        path.display()
    );
    report(&line);
    panic!("{line}");
}

/// FNV-1a: a stable hash for outcome signatures and seeds.
pub fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
