//! Whole-file reads: many small files (the smallfile layer) and big files
//! read in sequence (bulkread), each run directly on `$T/tree` and under
//! rscq on the export mounted at the same path, in every mode of
//! [`crate::harness::MODES`].

use std::fs;

use crate::harness::{Backend, Pair, each_mode, p, pattern, sh_c};

/// `small/`: 200 files from empty to past 64 KiB (one of exactly 64 KiB),
/// and `big.bin` of 24 MiB, in both trees.
fn add_files(pair: &Pair) {
    for root in [&pair.tree, &pair.remote_tree] {
        let dir = root.join("small");
        fs::create_dir(&dir).expect("mkdir small");
        for i in 0..200u32 {
            let len = usize::try_from(i * 353 % 70_000).unwrap();
            fs::write(dir.join(format!("f{i:03}")), pattern(len, i)).expect("write");
        }
        fs::write(dir.join("exact"), pattern(65_536, 7)).expect("write");
        fs::write(root.join("big.bin"), pattern(24 << 20, 3)).expect("write");
    }
}

#[test]
fn many_small_files_and_a_big_one() {
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        add_files(&pair);
        let t = pair.t();
        let (_, r) = pair.same(&sh_c(&format!(
            "cat {t}/small/* | sha256sum; sha256sum {t}/big.bin; \
             head -c 100000 {t}/big.bin | sha256sum; \
             tail -c 5000 {t}/big.bin | od -An -tx1 | tail -n 1; \
             dd if={t}/big.bin bs=3000 skip=1000 count=2000 status=none | sha256sum"
        )));
        let stats = r.stats();
        let reads = stats.get("read").copied().unwrap_or(0);
        let ahead = stats.get("read-ahead").copied().unwrap_or(0);
        if mode.is_empty() {
            // The small files come with their opens; the big one is read in
            // pipelined requests of up to 1 MiB.
            assert!(reads < 60, "{reads} forwarded reads\n{}", r.dump());
            assert!(ahead > 20, "{ahead} pipelined reads\n{}", r.dump());
        } else {
            assert!(reads > 3000, "{reads} forwarded reads\n{}", r.dump());
            assert_eq!(ahead, 0, "--pure fetched ahead\n{}", r.dump());
        }
    });
}

/// Bytes read ahead (those a small file's open brought, and those a
/// pipelined reader holds) are dropped by a write through another fd of
/// the same file: the next read sees the write.
#[test]
fn a_write_through_another_fd_is_seen_by_a_reader() {
    let script = r#"
import hashlib, os, sys
t = sys.argv[1]
small = t + "/small/f010"
a = os.open(small, os.O_RDONLY)
first = os.read(a, 10)
b = os.open(small, os.O_WRONLY)
os.pwrite(b, b"CHANGED", 2)
os.lseek(a, 0, os.SEEK_SET)
print(first.hex(), os.read(a, 12).hex())
os.close(b)
os.close(a)
big = os.open(t + "/big.bin", os.O_RDONLY)
for _ in range(40):
    os.read(big, 131072)
w = os.open(t + "/big.bin", os.O_RDWR)
os.pwrite(w, b"X" * 100000, 40 * 131072 + 200000)
os.ftruncate(w, 40 * 131072 + 3000000)
os.close(w)
rest = b""
while True:
    chunk = os.read(big, 131072)
    if not chunk:
        break
    rest += chunk
print(len(rest), hashlib.sha256(rest).hexdigest())
"#;
    each_mode(|mode| {
        let pair = Pair::new(Backend::Remote, mode);
        add_files(&pair);
        let file = pair.env.base.join("script.py");
        fs::write(&file, script).expect("write script");
        let (d, _) = pair.same_writes(&["python3".to_string(), p(&file), pair.t()], &[]);
        assert!(d.out().contains("3000000 "), "{}", d.dump());
    });
}
