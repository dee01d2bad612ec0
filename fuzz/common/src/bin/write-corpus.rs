//! `write-corpus DIR`: writes every fuzz target's seed corpus under `DIR/<target>/`.

fn main() {
    let dir = std::env::args_os().nth(1).expect("usage: write-corpus DIR");
    let n = vmsi_fuzz_common::corpus::write_all(std::path::Path::new(&dir))
        .expect("writing the seed corpus");
    println!("wrote {n} seed inputs under {}", dir.to_string_lossy());
}
