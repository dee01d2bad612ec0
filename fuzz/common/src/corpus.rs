//! The seed-corpus writer: every target's seeds, encoded, one file each.

use std::io;
use std::path::Path;

/// The fuzz targets, as `cargo fuzz` names them.
pub const TARGETS: [&str; 5] = [
    "trap",
    "firmware",
    "kernel_answers",
    "sim_faults",
    "kernel_verbs",
];

/// The encoded seeds of `target`, by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    fn enc<T: serde::Serialize>(v: Vec<(impl Into<String>, T)>) -> Vec<(String, Vec<u8>)> {
        v.into_iter()
            .map(|(n, i)| (n.into(), crate::encode(&i)))
            .collect()
    }
    match target {
        "trap" => enc(crate::trap::seeds()),
        "firmware" => crate::firmware::seeds()
            .into_iter()
            .map(|(n, b)| (n.into(), b))
            .collect(),
        "kernel_answers" => enc(crate::kernel_answers::seeds()),
        "sim_faults" => enc(crate::sim_faults::seeds()),
        "kernel_verbs" => enc(crate::kernel_verbs::seeds()),
        other => panic!("no fuzz target {other}"),
    }
}

/// Runs one input through `target`'s harness (what the `fuzz_target!` shim does).
pub fn run(target: &str, data: &[u8]) {
    match target {
        "trap" => crate::trap::fuzz(data),
        "firmware" => crate::firmware::fuzz(data),
        "kernel_answers" => crate::kernel_answers::fuzz(data),
        "sim_faults" => crate::sim_faults::fuzz(data),
        "kernel_verbs" => crate::kernel_verbs::fuzz(data),
        other => panic!("no fuzz target {other}"),
    }
}

/// Writes `dir/<target>/seed-<name>` for every target; returns how many files.
pub fn write_all(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for t in TARGETS {
        let d = dir.join(t);
        std::fs::create_dir_all(&d)?;
        for (name, bytes) in seeds(t) {
            std::fs::write(d.join(format!("seed-{name}")), bytes)?;
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_seeds_that_decode_and_run() {
        for t in TARGETS {
            let seeds = seeds(t);
            assert!(seeds.len() >= 3, "{t}");
            for (name, bytes) in &seeds {
                run(t, bytes);
                assert!(!name.contains('/'), "{name}");
            }
        }
    }

    #[test]
    fn seeds_round_trip_through_the_codec() {
        for (_, i) in crate::trap::seeds() {
            let back: crate::trap::Input = crate::decode(&crate::encode(&i)).unwrap();
            assert_eq!(back, i);
        }
        for (_, i) in crate::sim_faults::seeds() {
            let back: crate::sim_faults::Input = crate::decode(&crate::encode(&i)).unwrap();
            assert_eq!(back, i);
        }
    }

    #[test]
    fn committed_regression_inputs_still_pass() {
        // fuzz/regressions/<target>/*: crash inputs the fuzzers found, kept after the fix.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../regressions");
        for t in TARGETS {
            let Ok(dir) = std::fs::read_dir(root.join(t)) else {
                continue;
            };
            for e in dir {
                let p = e.unwrap().path();
                run(t, &std::fs::read(&p).unwrap());
            }
        }
    }

    #[test]
    fn write_all_writes_one_file_per_seed() {
        let dir = std::env::temp_dir().join(format!("vmsi-seeds-{}", std::process::id()));
        let n = write_all(&dir).unwrap();
        let files: usize = TARGETS
            .iter()
            .map(|t| std::fs::read_dir(dir.join(t)).unwrap().count())
            .sum();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(n, files);
    }
}
