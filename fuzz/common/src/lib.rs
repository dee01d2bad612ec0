//! Inputs, harnesses and seed corpora for `vmsi`'s fuzz targets.
//!
//! Every target is a thin `fuzz_target!` shim over one module here: the module defines the
//! input (serde types, decoded with [`decode`]), `run` (the harness: drives the library and
//! panics on a broken invariant) and `seeds` (meaningful inputs for the seed corpus). Keeping
//! all of it in a normal crate means the harnesses and seeds are built and tested on stable
//! with `cargo test` in `fuzz/`, and a crash input can be replayed as a unit test.
//!
//! Encoding: serde + bincode (fixed-width little-endian integers, `u32` enum tags, `u64`
//! lengths), not `arbitrary`, because the seed corpus is written from typed values (Linux's
//! MSI-X programming sequence, the rig's real kernel answers, QEMU's firmware tables) and a
//! crash decodes back into a readable value; `arbitrary` has no inverse, so its seeds would
//! be opaque bytes whose meaning changes with the crate's consumption rules. Fixed-width
//! integers keep libFuzzer's in-place mutations of numbers valid; inputs that do not decode
//! are skipped cheaply. Raw-byte parsers (device tree, MADT, `reserved_regions`, PCI config
//! space) get raw bytes instead (see [`firmware`]), which is what they parse.

pub mod corpus;
pub mod firmware;
pub mod kernel_answers;
pub mod kernel_verbs;
pub mod sim_faults;
pub mod trap;

use bincode::Options;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Inputs larger than this are not decoded (bounds allocations a length prefix asks for).
pub const MAX_INPUT: u64 = 1 << 16;

fn codec() -> impl Options {
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .with_little_endian()
        .with_limit(MAX_INPUT)
        .allow_trailing_bytes()
}

/// Decodes a fuzz input; `None` when the bytes are not a `T` (the harness then returns).
pub fn decode<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    codec().deserialize(data).ok()
}

/// Encodes a seed.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    codec()
        .serialize(value)
        .expect("seed inputs are small, plain data")
}

/// Asserts that `e` is one of the library's typed errors and that formatting it works
/// (every variant's `Display` runs on hostile values too).
pub fn typed(e: &vmsi::Error) {
    let text = e.to_string();
    assert!(!text.is_empty(), "{e:?} displays as nothing");
}
